"""The broker: virtual hosts, users, their tags and permissions, policies, and the sessions
connected to them.

Built from plain values (``BrokerConfig``) and an ``IdSource``; no I/O, so a whole broker runs in a
unit test. The users of ``BrokerConfig`` are RabbitMQ's default user: tag ``administrator`` and
all permissions (".*") on every vhost of the config, at every start. Users added later have only
the permissions set for them.
"""

from __future__ import annotations

import platform
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from router import __version__
from router.amqp.tables import FieldTable
from router.broker.passwords import check_password, hash_password
from router.broker.permissions import FULL, Access, Permission
from router.broker.policies import Policy, validate_policy
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
        # user name -> tags (RabbitMQ's: "administrator", "management", ...), every user has one
        self.user_tags: dict[str, tuple[str, ...]] = {}
        # (user, vhost) -> what the user may configure, write and read there
        self.permissions: dict[tuple[str, str], Permission] = {}
        for user, password in self.config.users:
            self.users[user] = hash_password(password)
            self.user_tags[user] = ("administrator",)
        self.vhosts: dict[str, VirtualHost] = {}
        for name in self.config.vhosts:
            self.add_vhost(name)
            for user, _password in self.config.users:
                self.permissions[(user, name)] = FULL
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

    def delete_vhost(self, name: str) -> None:
        """Delete a vhost and everything in it: its connections are closed (320, as RabbitMQ),
        its queues with their messages, exchanges, bindings, policies and the permissions on
        it go. KeyError when there is no such vhost."""
        vhost = self.vhosts[name]
        for session in list(self.sessions.values()):
            if session.vhost is vhost:
                session.close_forced(f"vhost '{name}' is deleted")
        for queue in list(vhost.queues.values()):
            vhost.remove_queue(queue)
        del self.vhosts[name]
        for user, vhost_name in [key for key in self.permissions if key[1] == name]:
            del self.permissions[(user, vhost_name)]
        if self.store is not None:
            self.store.vhost_deleted(name)

    # --- users and permissions -----------------------------------------------------------------

    def set_user(
        self,
        name: str,
        password: str | None = None,
        *,
        password_hash: str = "",
        tags: Iterable[str] | None = None,
    ) -> None:
        """Add or change a user, from a clear-text password or a ready hash. ``tags`` None keeps
        the user's tags (a new user has none)."""
        self.users[name] = hash_password(password) if password is not None else password_hash
        if tags is not None:
            self.user_tags[name] = tuple(tags)
        else:
            self.user_tags.setdefault(name, ())
        if self.store is not None:
            self.store.user_changed(name, self.users[name], self.user_tags[name])

    def delete_user(self, name: str) -> None:
        """Delete a user and its permissions; its connections are closed (320, as RabbitMQ).
        KeyError when there is no such user."""
        del self.users[name]
        self.user_tags.pop(name, None)
        for key in [key for key in self.permissions if key[0] == name]:
            self._drop_permission(key)
        for session in list(self.sessions.values()):
            if session.user == name:
                session.close_forced(f"user '{name}' is deleted")
        if self.store is not None:
            self.store.user_changed(name, None)

    def set_permissions(
        self, user: str, vhost: str, configure: str, write: str, read: str
    ) -> Permission:
        """Give ``user`` these permissions (regular expressions) on ``vhost``. ValueError when
        the user or vhost is unknown or a pattern is not a valid regular expression. Open
        connections of the user on the vhost use them from their next method."""
        if user not in self.users:
            raise ValueError(f"no user '{user}'; create it first")
        if vhost not in self.vhosts:
            raise ValueError(f"no vhost '{vhost}'; create it first")
        permission = Permission(configure, write, read)
        self.permissions[(user, vhost)] = permission
        self._permissions_changed(user, vhost)
        if self.store is not None:
            self.store.permission_changed(user, vhost, permission)
        return permission

    def clear_permissions(self, user: str, vhost: str) -> bool:
        """Take away ``user``'s permissions on ``vhost``; False when it had none."""
        if (user, vhost) not in self.permissions:
            return False
        self._drop_permission((user, vhost))
        return True

    def _drop_permission(self, key: tuple[str, str]) -> None:
        del self.permissions[key]
        self._permissions_changed(*key)
        if self.store is not None:
            self.store.permission_changed(key[0], key[1], None)

    def _permissions_changed(self, user: str, vhost: str) -> None:
        """Connections of ``user`` on ``vhost`` check against the new permission from now on
        (and forget the exchanges they were allowed to publish to)."""
        for session in self.sessions.values():
            access = session.access
            if access is not None and access.user == user and access.vhost == vhost:
                session.access = Access(user, vhost, self.permissions.get((user, vhost)))

    def access(self, user: str, vhost: str) -> Access | None:
        """What ``user`` may do on ``vhost``; None when it may not even open it."""
        permission = self.permissions.get((user, vhost))
        return Access(user, vhost, permission) if permission is not None else None

    # --- policies ------------------------------------------------------------------------------

    def set_policy(self, policy: Policy) -> None:
        """Add or replace a policy. ValueError saying what is wrong (pattern, apply-to, a
        definition key or value, an unknown vhost). It applies at once to the vhost's queues
        and exchanges."""
        validate_policy(policy)
        vhost = self.vhosts.get(policy.vhost)
        if vhost is None:
            raise ValueError(f"no vhost '{policy.vhost}' for policy '{policy.name}'")
        vhost.set_policy(policy)
        if self.store is not None:
            self.store.policy_changed(policy.vhost, policy.name, policy)

    def clear_policy(self, vhost: str, name: str) -> bool:
        """Remove a policy; False when there was none."""
        host = self.vhosts.get(vhost)
        if host is None or not host.clear_policy(name):
            return False
        if self.store is not None:
            self.store.policy_changed(vhost, name, None)
        return True

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
