"""The broker: virtual hosts, users and the sessions connected to them.

Built from plain values (``BrokerConfig``) and an ``IdSource``; no I/O, so a whole broker runs in a
unit test.
"""

from __future__ import annotations

import platform
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from router import __version__
from router.amqp.tables import FieldTable
from router.broker.ports import IdSource, RandomIds
from router.broker.queues import Queue
from router.broker.vhost import VirtualHost

if TYPE_CHECKING:
    from router.broker.session import Session


@dataclass(frozen=True)
class BrokerConfig:
    """Protocol limits proposed at tune, and the initial users and vhosts."""

    channel_max: int = 2047
    frame_max: int = 131072
    heartbeat: int = 60
    max_message_size: int = 128 * 1024 * 1024
    users: tuple[tuple[str, str], ...] = (("guest", "guest"),)
    vhosts: tuple[str, ...] = ("/",)
    cluster_name: str = "router@localhost"
    extra: dict[str, str] = field(default_factory=dict)


# What the broker can do, as it tells clients in connection.start (only what works).
CAPABILITIES = (
    "publisher_confirms",
    "exchange_exchange_bindings",
    "basic.nack",
    "consumer_cancel_notify",
    "consumer_priorities",
    "authentication_failure_close",
    "per_consumer_qos",
)


class Broker:
    def __init__(self, config: BrokerConfig | None = None, ids: IdSource | None = None) -> None:
        self.config = config or BrokerConfig()
        self.ids: IdSource = ids or RandomIds()
        self.users: dict[str, str] = dict(self.config.users)
        self.vhosts: dict[str, VirtualHost] = {}
        for name in self.config.vhosts:
            self.add_vhost(name)
        self.sessions: dict[int, Session] = {}
        self._session_ids = 0

    def add_vhost(self, name: str) -> VirtualHost:
        vhost = self.vhosts.get(name)
        if vhost is None:
            vhost = self.vhosts[name] = VirtualHost(name, self.ids)
            vhost.on_queue_deleted = self._queue_deleted
        return vhost

    def authenticate(self, user: str, password: str) -> bool:
        expected = self.users.get(user)
        return expected is not None and expected == password

    def server_properties(self) -> FieldTable:
        capabilities = FieldTable({name: True for name in CAPABILITIES})
        return FieldTable(
            {
                "capabilities": capabilities,
                "cluster_name": self.config.cluster_name,
                "copyright": "Copyright (c) the router authors",
                "information": "Licensed under the Apache License 2.0",
                "platform": f"Python {platform.python_version()} / trio",
                "product": "router",
                "version": __version__,
            }
        )

    def next_session_id(self) -> int:
        self._session_ids += 1
        return self._session_ids

    def session_opened(self, session: Session) -> None:
        self.sessions[session.id] = session

    def session_closed(self, session: Session) -> None:
        self.sessions.pop(session.id, None)

    def _queue_deleted(self, queue: Queue) -> None:
        for consumer in queue.consumers():
            queue.remove_consumer(consumer)
            consumer.channel.session.cancel_by_server(consumer)
