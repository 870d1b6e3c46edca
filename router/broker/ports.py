"""Interfaces the model needs from outside: names, time, randomness and the durable store.
Implementations come in through constructors, so tests can be deterministic."""

from __future__ import annotations

import base64
import os
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from router.broker.exchanges.base import Binding, Exchange
    from router.broker.message import Message, QueuedMessage
    from router.broker.permissions import Permission
    from router.broker.policies import Policy
    from router.broker.queues import Queue


class IdSource(Protocol):
    def token(self) -> str:
        """A fresh unique token of URL-safe characters (used for amq.gen-* and amq.ctag-*)."""
        ...


class RandomIds:
    """Tokens like RabbitMQ's: 16 random bytes, base64url, no padding (22 characters)."""

    def token(self) -> str:
        return base64.urlsafe_b64encode(os.urandom(16)).rstrip(b"=").decode("ascii")


class CountingIds:
    """Deterministic tokens for tests: ``t1``, ``t2``..."""

    def __init__(self) -> None:
        self._n = 0

    def token(self) -> str:
        self._n += 1
        return f"t{self._n}"


class Clock:
    """The broker's notion of now, set by whoever drives the model (the runtime before each step,
    tests by hand). ``now`` is monotonic seconds; ``wall_offset`` turns it into Unix time, for the
    few things that must be wall-clock (x-death ``time``, ``x-deliver-at``). The model reads
    these values; it never reads a real clock."""

    __slots__ = ("now", "wall_offset")

    def __init__(self, now: float = 0.0, wall_offset: float = 0.0) -> None:
        self.now = now
        self.wall_offset = wall_offset

    def wall(self) -> float:
        """Unix time in seconds."""
        return self.now + self.wall_offset


class RandomSource(Protocol):
    def random(self) -> float:
        """A float in [0, 1) (retry jitter)."""
        ...


class Store(Protocol):
    """Where durable things go (``router.store`` implements it; the model never imports that).

    Every call only *records* a change, at once and without waiting; the runtime writes what was
    recorded as one transaction (a batch) and tells the broker when it is on disk
    (``Broker.store_committed``). ``batch`` is the number of the batch collecting changes now;
    ``writes`` counts the changes recorded, so a caller can tell whether an action wrote anything
    (a publisher confirm then waits for that batch).

    Stored: vhosts, users (password hash, tags), permissions, policies, durable exchanges, queues
    and bindings, and the persistent messages of durable queues. A message is recorded by
    reference: the row written is the entry's state at the time the batch is cut, so a message
    published and acked within one batch is never written at all.
    """

    batch: int
    writes: int
    loading: bool  # True while recovery rebuilds the broker: nothing is recorded

    def message_changed(self, queue: Queue, entry: QueuedMessage) -> None:
        """A stored entry was enqueued, delivered, requeued or has left the queue (GONE)."""

    def load(self, queue: Queue, entry: QueuedMessage) -> Message:
        """The whole message of a PAGED entry, its body read back from disk."""
        ...

    def queue_declared(self, queue: Queue) -> None: ...

    def queue_deleted(self, queue: Queue) -> None:
        """The queue and every message in it are gone."""

    def exchange_declared(self, exchange: Exchange) -> None: ...

    def exchange_deleted(self, exchange: Exchange) -> None: ...

    def binding_added(self, binding: Binding) -> None: ...

    def binding_removed(self, binding: Binding) -> None: ...

    def vhost_added(self, name: str) -> None: ...

    def vhost_deleted(self, name: str) -> None:
        """The vhost and everything in it (exchanges, queues, bindings, policies, permissions
        on it) are gone."""

    def user_changed(
        self, name: str, password_hash: str | None, tags: tuple[str, ...] = ()
    ) -> None:
        """A user was added or changed (None: deleted)."""

    def permission_changed(self, user: str, vhost: str, permission: Permission | None) -> None:
        """A user's permissions on a vhost were set (None: cleared)."""

    def policy_changed(self, vhost: str, name: str, policy: Policy | None) -> None:
        """A policy was set (None: cleared)."""

    def dedup_remembered(self, exchange: Exchange, key: str, expires_at: float | None) -> None:
        """An exchange's deduplication cache remembered a key (until ``expires_at``, monotonic)."""
