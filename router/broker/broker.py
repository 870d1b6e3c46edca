"""The broker: virtual hosts, users and the sessions connected to them.

Built from plain values (``BrokerConfig``) and an ``IdSource``; no I/O, so a whole broker runs in a
unit test.
"""

from __future__ import annotations

import platform
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from router import __version__
from router.amqp.tables import FieldTable
from router.broker.passwords import check_password, hash_password
from router.broker.ports import Clock, IdSource, RandomIds, RandomSource, Store
from router.broker.queues import Queue
from router.broker.stats import Totals
from router.broker.timeindex import TimeIndex, Timer
from router.broker.vhost import VirtualHost

if TYPE_CHECKING:
    from router.amqp.errors import ChannelError
    from router.broker.channel import Channel
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
    "direct_reply_to",
    "connection.blocked",
)

# connection.blocked's reason for each resource alarm, as RabbitMQ words them
ALARM_REASONS = {"memory": "low on memory", "disk": "low on disk"}


class Broker:
    def __init__(
        self,
        config: BrokerConfig | None = None,
        ids: IdSource | None = None,
        *,
        clock: Clock | None = None,
        random: RandomSource | None = None,
        store: Store | None = None,
    ) -> None:
        self.config = config or BrokerConfig()
        # durability (None: everything lives in memory, as in unit tests)
        self.store = store
        # what waits for a store batch to be on disk: (batch, action), in batch order
        self._after_commit: deque[tuple[int, Callable[[], None]]] = deque()
        self.committed_batch = 0  # every store batch up to this one is on disk
        self.ids: IdSource = ids or RandomIds()
        self.clock = clock if clock is not None else Clock()
        self._random = random
        # when each queue next needs a tick (TTL, scheduled messages, leases, x-expires)
        self._queue_timers: TimeIndex[Queue] = TimeIndex()
        self._queue_timer: dict[Queue, Timer[Queue]] = {}
        # the runtime's hook: a deadline earlier than any before was scheduled (wake the timer)
        self.on_earlier_deadline: Callable[[float], None] = lambda deadline: None
        # user name -> password hash (passwords.py); clear text is never kept
        self.users: dict[str, str] = {}
        for user, password in self.config.users:
            self.users[user] = hash_password(password)
        self.vhosts: dict[str, VirtualHost] = {}
        for name in self.config.vhosts:
            self.add_vhost(name)
        self.sessions: dict[int, Session] = {}
        # direct reply-to: "amq.rabbitmq.reply-to.<token>" -> the channel consuming replies
        self.reply_channels: dict[str, Channel] = {}
        self._session_ids = 0
        # resource alarms in force ("memory"): publishing connections are blocked while any is
        self.alarms: set[str] = set()
        # what deleted queues, closed channels and connections counted (stats.py)
        self.totals = Totals()
        # the runtime's hook: a channel was closed by an error (it logs one line)
        self.on_channel_error: Callable[[Session, int, ChannelError], None] = (
            lambda session, number, error: None
        )

    def add_vhost(self, name: str) -> VirtualHost:
        vhost = self.vhosts.get(name)
        if vhost is None:
            vhost = self.vhosts[name] = VirtualHost(
                name,
                self.ids,
                clock=self.clock,
                scheduler=self.schedule,
                random=self._random,
                store=self.store,
            )
            vhost.on_queue_deleted = self._queue_deleted
            if self.store is not None:
                self.store.vhost_added(name)
        return vhost

    def set_user(self, name: str, password: str | None = None, *, password_hash: str = "") -> None:
        """Add or change a user, from a clear-text password or a ready hash."""
        self.users[name] = hash_password(password) if password is not None else password_hash
        if self.store is not None:
            self.store.user_changed(name, self.users[name])

    # --- durability ----------------------------------------------------------------------------

    def after_commit(self, action: Callable[[], None]) -> None:
        """Run ``action`` once everything recorded in the store so far is on disk."""
        assert self.store is not None
        self._after_commit.append((self.store.batch, action))

    def store_committed(self, batch: int) -> None:
        """The store's batch ``batch`` (and every one before it) is on disk."""
        self.committed_batch = batch
        waiting = self._after_commit
        while waiting and waiting[0][0] <= batch:
            waiting.popleft()[1]()

    # --- time ----------------------------------------------------------------------------------

    def schedule(self, queue: Queue, deadline: float | None) -> None:
        """Queue ``queue`` for a tick at ``deadline`` (None: it needs none)."""
        old = self._queue_timer.pop(queue, None)
        if old is not None:
            self._queue_timers.cancel(old)
        if deadline is None:
            return
        earliest = self._queue_timers.next_deadline()
        self._queue_timer[queue] = self._queue_timers.add(deadline, queue)
        if earliest is None or deadline < earliest:
            self.on_earlier_deadline(deadline)

    def next_deadline(self) -> float | None:
        return self._queue_timers.next_deadline()

    def tick(self, now: float) -> None:
        """Run every queue deadline due at ``now`` (message TTL, scheduled delivery, ...)."""
        self.clock.now = now
        for queue in self._queue_timers.pop_due(now):
            if self._queue_timer.get(queue) is not None and self._queue_timer[queue].cancelled:
                del self._queue_timer[queue]
            queue.tick(now)

    def authenticate(self, user: str, password: str) -> bool:
        expected = self.users.get(user)
        return expected is not None and check_password(password, expected)

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

    # --- flow control --------------------------------------------------------------------------

    def set_alarm(self, resource: str, active: bool) -> None:
        """Raise or clear a resource alarm (the runtime's memory monitor calls this). While any
        alarm is raised, a connection that publishes is blocked (its reads pause); when the
        last one clears, every blocked connection resumes."""
        if active == (resource in self.alarms):
            return
        if active:
            self.alarms.add(resource)
            return  # connections block as they publish (Session._block)
        self.alarms.discard(resource)
        if not self.alarms:
            for session in list(self.sessions.values()):
                session.unblock()

    @property
    def alarm_reason(self) -> str:
        """connection.blocked's reason text for the alarms in force."""
        return " & ".join(ALARM_REASONS.get(name, f"low on {name}") for name in sorted(self.alarms))

    def next_session_id(self) -> int:
        self._session_ids += 1
        return self._session_ids

    def session_opened(self, session: Session) -> None:
        self.sessions[session.id] = session
        self.totals.connections_opened += 1

    def session_closed(self, session: Session) -> None:
        if self.sessions.pop(session.id, None) is not None:
            self.totals.connections_closed += 1
            self.totals.retire(self.totals.connection, session.counters())

    def channel_closed(self, channel: Channel) -> None:
        self.totals.channels_closed += 1
        self.totals.retire(self.totals.channel, channel.counters())

    def _queue_deleted(self, queue: Queue) -> None:
        self.totals.queues_deleted += 1
        self.totals.retire(self.totals.queue, queue.stats.values())
        for consumer in queue.consumers():
            queue.remove_consumer(consumer)
            consumer.channel.session.cancel_by_server(consumer)
