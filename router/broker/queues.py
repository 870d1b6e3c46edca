"""Queues: the ready index, deadlines, limits, consumers and dispatch.

Ready index. One level per priority (``x-max-priority``; a plain queue has one level). Each level
is a deque in publish order plus a sorted side list for messages requeued to their *original*
position, as RabbitMQ does; the next message of a level is whichever head is older. A bit mask of
non-empty levels finds the highest in O(1), so 255 levels cost what 10 do. A message removed from
the middle (expired) is marked GONE and skipped when it reaches a head; heads are compacted at once
and the whole index is rebuilt when stale entries outnumber live ones.

Deadlines. One time index per queue holds message TTLs (a message expires at its deadline wherever
it sits, not only at the head as in RabbitMQ), scheduled and backed-off messages becoming visible,
consumer leases and the queue's own ``x-expires``. The queue tells its host the earliest deadline;
the host calls ``tick(now)``.

Time is read from the host's ``Clock``, which the runtime (or a test) sets; the queue never reads a
real clock.

Consumers are grouped by ``x-priority`` (highest first) and take turns within a level; lower levels
get messages only when every higher consumer is full (RabbitMQ's consumer priorities). With
``x-single-active-consumer`` only the earliest remaining consumer gets messages.
"""

from __future__ import annotations

import math
import random as _random
from collections import deque
from collections.abc import Iterable
from typing import TYPE_CHECKING, Protocol

from sortedcontainers import SortedList

from router.amqp.tables import FieldTable
from router.broker.arguments import QueueOptions
from router.broker.deadletter import DELIVERY_LIMIT, EXPIRED, MAXLEN, REJECTED
from router.broker.message import (
    GONE,
    PAGED,
    READY,
    UNACKED,
    UNWRITTEN,
    WAITING,
    WRITTEN,
    Message,
    QueuedMessage,
)
from router.broker.policies import Policy, effective_queue_arguments
from router.broker.ports import Clock, Store
from router.broker.timeindex import TimeIndex, Timer

if TYPE_CHECKING:
    from router.broker.channel import Consumer

# kinds of queue timers
_EXPIRE = 0  # a ready message's TTL
_DUE = 1  # a scheduled or backed-off message becomes ready
_LEASE = 2  # an unacked delivery's consumer timeout
_IDLE = 3  # x-expires: the queue has been unused this long

_COMPACT_MIN = 1024


class QueueHost(Protocol):
    """What a queue needs from its virtual host."""

    clock: Clock
    store: Store | None

    def random(self) -> float: ...

    def schedule(self, queue: Queue, deadline: float | None) -> None:
        """The queue's earliest deadline changed (None: it has none)."""

    def dead_letter(self, queue: Queue, entries: list[QueuedMessage], reason: str) -> None:
        """Route these messages, already removed from ``queue``, to its dead-letter exchange."""

    def lease_expired(self, queue: Queue, entry: QueuedMessage) -> None:
        """An unacked delivery outlived its consumer timeout."""

    def queue_expired(self, queue: Queue) -> None:
        """``x-expires``: the queue was unused for its whole expiry time."""


class DetachedHost:
    """A host for a queue outside a virtual host (tests): no dead-lettering, manual ticks."""

    def __init__(self, clock: Clock | None = None) -> None:
        self.clock = clock or Clock()
        self.store: Store | None = None
        self.dead: list[tuple[str, QueuedMessage]] = []
        self.deadline: float | None = None
        self.expired_queues: list[Queue] = []

    def random(self) -> float:
        return _random.random()

    def schedule(self, queue: Queue, deadline: float | None) -> None:
        self.deadline = deadline

    def dead_letter(self, queue: Queue, entries: list[QueuedMessage], reason: str) -> None:
        self.dead.extend((reason, entry) for entry in entries)

    def lease_expired(self, queue: Queue, entry: QueuedMessage) -> None:
        consumer = entry.consumer
        if consumer is not None and hasattr(consumer, "lease_expired"):
            consumer.lease_expired(queue, entry)

    def queue_expired(self, queue: Queue) -> None:
        self.expired_queues.append(queue)


_MARKS_MAX = 4096


class QueueStats:
    """Cheap counters; the management API reads them."""

    __slots__ = (
        "acked",
        "dead_lettered",
        "delivered",
        "duplicates",
        "expired",
        "published",
        "redelivered",
        "rejected",
        "rejected_publishes",
    )

    def __init__(self) -> None:
        self.published = 0
        self.delivered = 0
        self.redelivered = 0
        self.acked = 0
        self.expired = 0
        self.dead_lettered: dict[str, int] = {}
        self.rejected = 0  # nacked or rejected without requeue
        self.rejected_publishes = 0
        self.duplicates = 0

    def values(self) -> tuple[int, ...]:
        """The counters in ``stats.QUEUE_FIELDS`` order."""
        return (
            self.published,
            self.delivered,
            self.redelivered,
            self.acked,
            self.rejected,
            self.expired,
            sum(self.dead_lettered.values()),
        )


class _Level:
    """One priority level: publish-order deque plus requeued entries by original position."""

    __slots__ = ("nrequeued", "ready", "requeued")

    def __init__(self) -> None:
        self.ready: deque[QueuedMessage] = deque()
        self.requeued: SortedList = SortedList()
        # len(requeued), kept as a plain int: SortedList's __len__ is Python code, and the
        # emptiness test runs once per message
        self.nrequeued = 0

    def entries(self) -> list[QueuedMessage]:
        return sorted([*self.ready, *self.requeued], key=lambda e: e.seq)


class Queue:
    """One queue in a virtual host."""

    def __init__(
        self,
        name: str,
        vhost: str,
        *,
        durable: bool = False,
        exclusive_owner: object | None = None,
        auto_delete: bool = False,
        arguments: FieldTable | None = None,
        host: QueueHost | None = None,
        policy: Policy | None = None,
    ) -> None:
        self.name = name
        self.vhost = vhost
        self.durable = durable
        self.exclusive_owner = exclusive_owner
        self.auto_delete = auto_delete
        # as the client declared them (redeclare equivalence compares these)
        self.arguments = arguments if arguments is not None else FieldTable()
        # the policy in force, and what the queue runs on: the arguments combined with it
        self.policy = policy
        self.effective_arguments = effective_queue_arguments(self.arguments, policy)
        self._set_options(QueueOptions(self.effective_arguments))
        self.host: QueueHost = host if host is not None else DetachedHost()
        self.clock = self.host.clock
        # durability: persistent messages of a durable queue are recorded in the store
        self._store: Store | None = self.host.store if durable else None
        self.store_id = 0  # the store's number for this queue (0: not stored)
        levels = (self.options.max_priority or 0) + 1
        self._levels: list[_Level | None] = [None] * levels
        self._mask = 0
        self._seq = 0
        self.ready_count = 0
        self.ready_bytes = 0
        self.unacked = 0
        self.waiting = 0  # scheduled or backing off: counted, not yet visible
        self._gone = 0  # stale entries still sitting in level deques
        self._timers: TimeIndex[tuple[int, QueuedMessage | None]] = TimeIndex()
        # scheduled and backed-off messages in an index of their own: next_due() is O(1)
        self._due: TimeIndex[tuple[int, QueuedMessage | None]] = TimeIndex()
        self._wake_at: float | None = None
        self.last_used = self.clock.now
        # consumers: priority -> deque, levels ordered highest first
        self._consumer_levels: dict[int, deque[Consumer]] = {}
        self._consumer_order: list[int] = []
        self._joined: list[Consumer] = []  # in the order they subscribed (single active)
        self.consumer_count = 0
        self.exclusive_consumer: Consumer | None = None
        self.had_consumers = False
        self.deleted = False
        self._dedup: dict[object, int] = {}  # x-message-deduplication: key -> copies held
        self.stats = QueueStats()
        # (seq, time) marks at most a second apart, for the age of the oldest ready message
        self._marks: deque[tuple[int, float]] = deque()
        self._next_mark = -math.inf
        self._idle_timer: Timer[tuple[int, QueuedMessage | None]] | None = None
        if self.options.expires is not None:
            self._idle_timer = self._add_timer(
                self.last_used + self.options.expires / 1000, _IDLE, None
            )

    def __repr__(self) -> str:
        return f"<Queue {self.name!r} ready={self.ready_count} unacked={self.unacked}>"

    def _set_options(self, options: QueueOptions) -> None:
        self.options = options
        # flags read on every message, kept as plain attributes
        self._limited = options.limited
        # only drop-head drops to make room; reject-publish queues refuse at the door, and a
        # requeued or newly due message they already accepted may take them over the limit
        self._drop_head = options.limited and options.overflow == "drop-head"
        self._sac = options.single_active_consumer
        self._consumer_timeout = options.consumer_timeout
        # a plain queue: none of the per-message work (TTL, limits, priorities, dedup) applies
        self._plain = not (
            options.limited
            or options.deduplication
            or options.max_priority
            or options.message_ttl is not None
        )

    def apply_policy(self, policy: Policy | None) -> None:
        """A policy now applies to the queue (None: none does). Its options are recomputed at
        once, as RabbitMQ's queue process does on ``policy_changed``: a lower max-length drops
        (or dead-letters) the oldest ready messages now; a new x-expires counts from the queue's
        last use; a message TTL, dead-letter exchange, delivery limit, consumer timeout or
        backoff applies to what happens from now on (a message already queued keeps the
        expiry it was given when it arrived, as in RabbitMQ). Priority levels never change:
        x-max-priority cannot come from a policy."""
        self.policy = policy
        self.effective_arguments = effective_queue_arguments(self.arguments, policy)
        old = self.options
        self._set_options(QueueOptions(self.effective_arguments))
        if self.deleted:
            return
        if self.options.expires != old.expires:
            if self._idle_timer is not None:
                self._timers.cancel(self._idle_timer)
                self._idle_timer = None
            if self.options.expires is not None and not self.consumer_count:
                self._idle_timer = self._add_timer(
                    self.last_used + self.options.expires / 1000, _IDLE, None
                )
        if self._drop_head:
            self._drop_over_limit()

    @property
    def exclusive(self) -> bool:
        return self.exclusive_owner is not None

    @property
    def message_count(self) -> int:
        """Ready messages (what queue.declare-ok and basic.get-ok report)."""
        return self.ready_count

    # --- deadlines -----------------------------------------------------------------------------

    def _add_timer(
        self, deadline: float, kind: int, entry: QueuedMessage | None
    ) -> Timer[tuple[int, QueuedMessage | None]]:
        index = self._due if kind == _DUE else self._timers
        timer = index.add(deadline, (kind, entry))
        if self._wake_at is None or deadline < self._wake_at:
            self._wake_at = deadline
            self.host.schedule(self, deadline)
        return timer

    def next_deadline(self) -> float | None:
        timers = self._timers.next_deadline()
        due = self._due.next_deadline()
        if timers is None or (due is not None and due < timers):
            return due
        return timers

    def next_due(self) -> float | None:
        """When the next scheduled or backed-off message becomes visible (for stats)."""
        return self._due.next_deadline()

    def tick(self, now: float) -> None:
        """Do what is due at ``now``: expire, make scheduled messages visible, end leases."""
        expired: list[QueuedMessage] = []
        due: list[QueuedMessage] = []
        leases: list[QueuedMessage] = []
        idle = False
        for kind, entry in [*self._timers.pop_due(now), *self._due.pop_due(now)]:
            if kind == _EXPIRE:
                assert entry is not None
                if entry.state == READY:
                    entry.timer = None
                    self._remove_ready(entry)
                    expired.append(entry)
                elif entry.state == WAITING:  # expired while held back by retry backoff
                    entry.timer = None
                    self.waiting -= 1
                    expired.append(entry)
            elif kind == _DUE:
                assert entry is not None
                if entry.state == WAITING:
                    entry.timer = None
                    self.waiting -= 1
                    due.append(entry)
            elif kind == _LEASE:
                assert entry is not None
                if entry.state == UNACKED:
                    entry.lease = None
                    leases.append(entry)
            else:
                idle = True
                self._idle_timer = None
        self._wake_at = None
        if expired:
            self._expire(expired)
        for entry in due:
            self._make_ready(entry)
        for entry in leases:
            self.host.lease_expired(self, entry)
        if due:
            self.dispatch()
        if idle and not self.deleted:
            self._check_idle(now)
        if not self.deleted:
            following = self.next_deadline()
            self._wake_at = following
            self.host.schedule(self, following)

    def _check_idle(self, now: float) -> None:
        expires = self.options.expires
        assert expires is not None
        if self.consumer_count:
            return  # re-armed when the last consumer leaves
        deadline = self.last_used + expires / 1000
        if now >= deadline:
            self.host.queue_expired(self)
        else:
            self._idle_timer = self._add_timer(deadline, _IDLE, None)

    def touch(self) -> None:
        """Used now (declare, get, consumer leaving): restart the x-expires countdown. One idle
        timer at most is pending; when it fires early it re-arms for the new deadline."""
        self.last_used = self.clock.now
        if (
            self.options.expires is not None
            and not self.consumer_count
            and self._idle_timer is None
            and not self.deleted  # a deleted queue losing its consumers needs no timer
        ):
            self._idle_timer = self._add_timer(
                self.last_used + self.options.expires / 1000, _IDLE, None
            )

    # --- consumers -----------------------------------------------------------------------------

    def add_consumer(self, consumer: Consumer) -> None:
        level = self._consumer_levels.get(consumer.priority)
        if level is None:
            level = self._consumer_levels[consumer.priority] = deque()
            self._consumer_order = sorted(self._consumer_levels, reverse=True)
        level.append(consumer)
        self._joined.append(consumer)
        self.consumer_count += 1
        self.had_consumers = True
        if consumer.exclusive:
            self.exclusive_consumer = consumer

    def remove_consumer(self, consumer: Consumer) -> None:
        level = self._consumer_levels.get(consumer.priority)
        if level is None or consumer not in level:
            return
        level.remove(consumer)
        self._joined.remove(consumer)
        if not level:
            del self._consumer_levels[consumer.priority]
            self._consumer_order = sorted(self._consumer_levels, reverse=True)
        self.consumer_count -= 1
        if self.exclusive_consumer is consumer:
            self.exclusive_consumer = None
        if not self.consumer_count:
            self.touch()

    def consumers(self) -> list[Consumer]:
        return [c for p in self._consumer_order for c in self._consumer_levels[p]]

    @property
    def active_consumer(self) -> Consumer | None:
        """With single active consumer: the one that gets messages."""
        return self._joined[0] if self._joined else None

    def _next_consumer(self) -> Consumer | None:
        if self._sac:
            active = self._joined[0] if self._joined else None
            return active if active is not None and active.can_take() else None
        for priority in self._consumer_order:
            level = self._consumer_levels[priority]
            for _ in range(len(level)):
                consumer = level[0]
                level.rotate(-1)
                if consumer.can_take():
                    return consumer
        return None

    # --- the ready index -----------------------------------------------------------------------

    def _insert(self, entry: QueuedMessage) -> None:
        level_no = entry.level
        level = self._levels[level_no]
        if level is None:
            level = self._levels[level_no] = _Level()
        ready = level.ready  # runs once per queued message: kept inline
        if not ready:
            # the level may be marked empty: mark it (only now, so the big-int mask arithmetic
            # of a many-level queue runs once per level that fills, not once per message)
            if not level.nrequeued:
                self._mask |= 1 << level_no
            ready.append(entry)
        elif entry.seq > ready[-1].seq:
            ready.append(entry)
        else:
            level.requeued.add(entry)
            level.nrequeued += 1
        entry.state = READY
        self.ready_count += 1
        self.ready_bytes += entry.message.size
        if entry.expires_at is not None:
            entry.timer = self._add_timer(entry.expires_at, _EXPIRE, entry)
        now = self.clock.now
        if now >= self._next_mark:  # at most one (seq, time) mark a second, for the age
            self._mark(entry.seq, now)

    def _mark(self, seq: int, now: float) -> None:
        marks = self._marks
        if marks and seq <= marks[-1][0]:
            return  # a requeued message: its position is already covered
        if len(marks) >= _MARKS_MAX:
            self._marks = marks = deque(list(marks)[::2])  # coarser, never unbounded
        marks.append((seq, now))
        self._next_mark = now + 1.0

    def waiting_messages(self) -> list[tuple[float, QueuedMessage]]:
        """Scheduled and backed-off messages, each with the time it becomes visible (or
        expires, when that comes first), soonest first."""
        found: list[tuple[float, QueuedMessage]] = []
        for index in (self._due, self._timers):
            for timer in index.timers():
                _kind, entry = timer.item
                if entry is not None and entry.state == WAITING and entry.timer is timer:
                    found.append((timer.deadline, entry))
        found.sort(key=lambda pair: (pair[0], pair[1].seq))
        return found

    def cancel_waiting(self, seq: int) -> bool:
        """Drop the scheduled or backed-off message with position ``seq`` (management API):
        it leaves the queue as if acked, without being dead-lettered."""
        for _deadline, entry in self.waiting_messages():
            if entry.seq != seq:
                continue
            timer = entry.timer
            assert timer is not None
            (self._due if timer.item[0] == _DUE else self._timers).cancel(timer)
            entry.timer = None
            entry.state = GONE
            self.waiting -= 1
            self._release_key(entry)
            if entry.stored:
                self._store.message_changed(self, entry)  # type: ignore[union-attr]
            return True
        return False

    def oldest_ready_age(self) -> float | None:
        """Seconds the oldest ready message has been in the queue (to within a second), or None
        when nothing is ready."""
        if not self.ready_count:
            return None
        oldest: int | None = None
        for level in self._levels:
            if level is None:
                continue
            for entry in level.ready:
                if entry.state == READY:
                    oldest = entry.seq if oldest is None else min(oldest, entry.seq)
                    break
            if level.nrequeued:
                seq = level.requeued[0].seq
                oldest = seq if oldest is None else min(oldest, seq)
        if oldest is None:
            return None
        marks = self._marks
        while len(marks) > 1 and marks[1][0] <= oldest:
            marks.popleft()  # marks older than the oldest ready message are no longer needed
        since = marks[0][1] if marks else self.clock.now
        return max(0.0, self.clock.now - since)

    def _pop_ready(self) -> QueuedMessage | None:
        """Take the next ready message: highest priority level, oldest position in it."""
        while self._mask:
            level_no = self._mask.bit_length() - 1
            level = self._levels[level_no]
            assert level is not None
            # the level's oldest entry; runs once per delivered message: kept inline
            ready = level.ready
            entry: QueuedMessage
            if level.nrequeued and (not ready or level.requeued[0].seq < ready[0].seq):
                entry = level.requeued.pop(0)
                level.nrequeued -= 1
            elif ready:
                entry = ready.popleft()
            else:
                self._mask &= ~(1 << level_no)
                continue
            if entry.state == GONE:
                self._gone -= 1
                continue
            self.ready_count -= 1
            self.ready_bytes -= entry.message.size
            if entry.timer is not None:
                self._timers.cancel(entry.timer)
                entry.timer = None
            return entry
        return None

    def _remove_ready(self, entry: QueuedMessage) -> None:
        """Take a ready message out from wherever it sits (expiry)."""
        entry.state = GONE
        self.ready_count -= 1
        self.ready_bytes -= entry.message.size
        if entry.timer is not None:
            self._timers.cancel(entry.timer)
            entry.timer = None
        level = self._levels[entry.level]
        assert level is not None
        if level.nrequeued and entry in level.requeued:
            level.requeued.remove(entry)
            level.nrequeued -= 1
            return
        self._gone += 1
        ready = level.ready
        while ready and ready[0].state == GONE:
            ready.popleft()
            self._gone -= 1
        if self._gone > _COMPACT_MIN and self._gone > self.ready_count:
            self._compact()

    def _compact(self) -> None:
        for level in self._levels:
            if level is not None:
                level.ready = deque(e for e in level.ready if e.state != GONE)
        self._gone = 0

    def pop(self) -> QueuedMessage | None:
        """The next deliverable message; expired ones met on the way are dead-lettered."""
        now = self.clock.now
        while True:
            entry = self._pop_ready()
            if entry is None:
                return None
            if entry.expires_at is not None and entry.expires_at <= now:
                self._expire([entry])
                continue
            return entry

    def ready_messages(self) -> list[QueuedMessage]:
        """The ready messages in delivery order (for browsing and tests)."""
        result: list[QueuedMessage] = []
        for level in reversed(self._levels):
            if level is not None:
                result.extend(e for e in level.entries() if e.state == READY)
        return result

    # --- publishing ----------------------------------------------------------------------------

    def _dedup_key(self, message: Message) -> object | None:
        headers = message.headers
        if headers is not None and "x-deduplication-header" in headers:
            return ("h", str(headers["x-deduplication-header"]))
        message_id = message.message_id
        return ("m", message_id) if message_id is not None else None

    def publish(self, message: Message) -> bool:
        """Enqueue a routed message. False when the queue refuses it (``x-overflow``
        reject-publish / reject-publish-dlx while full): the publisher gets a nack."""
        self.stats.published += 1
        if self._plain and message.expiration_ms is None and message.due_at is None:
            # the common case, kept short: straight to a consumer, else to the ready index
            self._seq += 1
            entry = QueuedMessage(message, self._seq)
            if self._store is not None and message.delivery_mode == 2:
                entry.stored = UNWRITTEN
                self._store.message_changed(self, entry)
            if self.consumer_count and not self.ready_count:
                consumer = self._next_consumer()
                if consumer is not None:
                    self._deliver(consumer, entry)
                    return True
            self._insert(entry)
            return True
        return self._publish_with_options(message)

    def _publish_with_options(self, message: Message) -> bool:
        options = self.options
        key = None
        if options.deduplication:
            key = self._dedup_key(message)
            if key is not None and key in self._dedup:
                self.stats.duplicates += 1
                return True  # dropped, and still confirmed (as the community plugin does)
        if options.limited and options.overflow != "drop-head" and self._would_overflow(message):
            self.stats.rejected_publishes += 1
            if options.overflow == "reject-publish-dlx":
                self._seq += 1
                self._dead_letter([QueuedMessage(message, self._seq)], MAXLEN)
            return False
        self._seq += 1
        entry = QueuedMessage(message, self._seq)
        if self._store is not None and message.delivery_mode == 2:
            entry.stored = UNWRITTEN
            self._store.message_changed(self, entry)
        if key is not None:
            self._dedup[key] = self._dedup.get(key, 0) + 1
        max_priority = options.max_priority
        if max_priority:
            priority = message.priority or 0
            entry.level = priority if priority <= max_priority else max_priority
        now = self.clock.now
        due = message.due_at
        ttl = options.message_ttl
        expiration = message.expiration_ms
        if ttl is not None or expiration is not None:
            if ttl is None or (expiration is not None and expiration < ttl):
                ttl = expiration
            assert ttl is not None
            # a scheduled message enters the queue when due, and its TTL counts from then (as
            # with RabbitMQ's delayed-message plugin)
            start = due if due is not None and due > now else now
            entry.expires_at = start + ttl / 1000
        if due is not None and due > now:
            entry.state = WAITING
            self.waiting += 1
            entry.timer = self._add_timer(due, _DUE, entry)
            return True
        self._make_ready(entry)
        return True

    def restore(
        self,
        message: Message,
        seq: int,
        *,
        level: int,
        delivery_count: int,
        redelivered: bool,
        expires_at: float | None,
        available_at: float | None,
    ) -> QueuedMessage:
        """Put back a message read from the store at start, in ``seq`` order, ready (a delivered
        one's ack never came). Deadlines already past fire on the first tick, once every queue
        is back (so dead-letter targets exist)."""
        entry = QueuedMessage(message, seq)
        entry.stored = PAGED if message.paged else WRITTEN
        entry.level = level if level < len(self._levels) else len(self._levels) - 1
        entry.delivery_count = delivery_count
        entry.redelivered = redelivered
        entry.expires_at = expires_at
        if seq > self._seq:
            self._seq = seq
        if self.options.deduplication:
            key = self._dedup_key(message)
            if key is not None:
                self._dedup[key] = self._dedup.get(key, 0) + 1
        if available_at is not None and available_at > self.clock.now:
            entry.state = WAITING
            self.waiting += 1
            if expires_at is not None and expires_at <= available_at:
                # it expires while held back (as ``requeue`` arranges it): at its deadline
                entry.timer = self._add_timer(expires_at, _EXPIRE, entry)
            else:
                entry.timer = self._add_timer(available_at, _DUE, entry)
        else:
            self._insert(entry)
        return entry

    @property
    def last_seq(self) -> int:
        """The position of the newest message ever enqueued (for the store)."""
        return self._seq

    def stored_available_at(self, entry: QueuedMessage) -> float | None:
        """When a held-back (scheduled, backing-off) entry becomes visible, for the store."""
        if entry.state == WAITING and entry.timer is not None:
            return entry.timer.deadline
        return None

    def _would_overflow(self, message: Message) -> bool:
        options = self.options
        return (options.max_length is not None and self.ready_count + 1 > options.max_length) or (
            options.max_length_bytes is not None
            and self.ready_bytes + message.size > options.max_length_bytes
        )

    def _make_ready(self, entry: QueuedMessage) -> None:
        """A new (or newly due) message: straight to a consumer that can take it, else ready."""
        expires_at = entry.expires_at
        if expires_at is not None and expires_at < self.clock.now:
            self._expire([entry])  # due after its deadline (a late tick): never delivered
            return
        if expires_at is not None and expires_at == self.clock.now:
            # TTL 0 (RabbitMQ): delivered only if a consumer can take it at once
            consumer = (
                self._next_consumer() if self.consumer_count and not self.ready_count else None
            )
            if consumer is None:
                self._expire([entry])
            else:
                self._deliver(consumer, entry)
            return
        if self.consumer_count and not self.ready_count:
            consumer = self._next_consumer()
            if consumer is not None:
                self._deliver(consumer, entry)
                return
        self._insert(entry)
        if self._drop_head:
            self._drop_over_limit()

    def _drop_over_limit(self) -> None:
        """x-overflow drop-head: the oldest ready messages go (dead-lettered with maxlen)."""
        options = self.options
        dropped: list[QueuedMessage] = []
        while self.ready_count and (
            (options.max_length is not None and self.ready_count > options.max_length)
            or (
                options.max_length_bytes is not None and self.ready_bytes > options.max_length_bytes
            )
        ):
            entry = self._pop_ready()
            if entry is None:
                break
            dropped.append(entry)
        if dropped:
            self._dead_letter(dropped, MAXLEN)

    # --- delivering ----------------------------------------------------------------------------

    def _deliver(self, consumer: Consumer, entry: QueuedMessage) -> None:
        entry.delivery_count += 1
        if entry.stored:
            if entry.message.paged:
                self._unpage(entry)
            self._store.message_changed(self, entry)  # type: ignore[union-attr]
        self.stats.delivered += 1
        if entry.redelivered:
            self.stats.redelivered += 1
        if consumer.no_ack:
            entry.state = GONE
            self._release_key(entry)
        else:
            entry.state = UNACKED
            entry.consumer = consumer
            self.unacked += 1
            timeout = consumer.timeout
            if timeout is None:
                timeout = self._consumer_timeout
            if timeout is not None:
                entry.lease = self._add_timer(self.clock.now + timeout / 1000, _LEASE, entry)
        consumer.deliver(self, entry)

    def _unpage(self, entry: QueuedMessage) -> None:
        """A paged entry is about to leave (delivery, dead-lettering): read its body back."""
        assert self._store is not None
        entry.message = self._store.load(self, entry)

    def restart_lease(self, entry: QueuedMessage) -> None:
        """An unacked delivery whose lease fired while its ack sat in an open transaction came
        back (tx.rollback): its consumer timeout starts again, so it cannot be held forever."""
        consumer = entry.consumer
        if entry.state != UNACKED or entry.lease is not None or consumer is None:
            return
        timeout = getattr(consumer, "timeout", None)
        if timeout is None:
            timeout = self._consumer_timeout
        if timeout is not None:
            entry.lease = self._add_timer(self.clock.now + timeout / 1000, _LEASE, entry)

    def get(self, no_ack: bool) -> QueuedMessage | None:
        """basic.get: the next message, counted as unacked unless ``no_ack``."""
        self.touch()
        entry = self.pop()
        if entry is None:
            return None
        entry.delivery_count += 1
        self.stats.delivered += 1
        if no_ack:
            entry.state = GONE
            self._release_key(entry)
        else:
            entry.state = UNACKED
            entry.consumer = None
            self.unacked += 1
        if entry.stored:
            if entry.message.paged:
                self._unpage(entry)
            self._store.message_changed(self, entry)  # type: ignore[union-attr]
        return entry

    def dispatch(self) -> None:
        """Deliver ready messages to consumers while any can take one."""
        if not self.consumer_count or not self.ready_count:
            return
        now = self.clock.now
        if self.consumer_count == 1 and not self._sac:
            # one consumer (the common case): no rotation, hand over until it is full
            only = self._consumer_levels[self._consumer_order[0]][0]
            while self.ready_count and only.can_take():
                entry = self._pop_ready()
                if entry is None:
                    return
                if entry.expires_at is not None and entry.expires_at <= now:
                    self._expire([entry])
                    continue
                self._deliver(only, entry)
            return
        while self.ready_count:
            consumer = self._next_consumer()
            if consumer is None:
                return
            entry = self._pop_ready()
            if entry is None:
                return
            if entry.expires_at is not None and entry.expires_at <= now:
                self._expire([entry])
                continue
            self._deliver(consumer, entry)

    # --- settling ------------------------------------------------------------------------------

    def _settle(self, entry: QueuedMessage) -> None:
        self.unacked -= 1
        entry.consumer = None
        if entry.lease is not None:
            self._timers.cancel(entry.lease)
            entry.lease = None

    def _release_key(self, entry: QueuedMessage) -> None:
        if self._dedup:
            key = self._dedup_key(entry.message)
            count = self._dedup.get(key, 0)
            if count <= 1:
                self._dedup.pop(key, None)
            else:
                self._dedup[key] = count - 1

    def ack(self, entry: QueuedMessage) -> None:
        """An unacked message was acked: it leaves the queue."""
        self.unacked -= 1
        entry.state = GONE
        entry.consumer = None
        if entry.lease is not None:
            self._timers.cancel(entry.lease)
            entry.lease = None
        self.stats.acked += 1
        if self._dedup:
            self._release_key(entry)
        if entry.stored:
            self._store.message_changed(self, entry)  # type: ignore[union-attr]

    def reject(self, entries: Iterable[QueuedMessage]) -> None:
        """Rejected or nacked without requeue: dead-lettered with reason ``rejected`` (or
        dropped when the queue has no dead-letter exchange)."""
        rejected = []
        for entry in entries:
            self._settle(entry)
            entry.state = GONE
            rejected.append(entry)
        self.stats.rejected += len(rejected)
        if rejected and not self.deleted:
            self._dead_letter(rejected, REJECTED)

    def requeue(self, entries: Iterable[QueuedMessage]) -> None:
        """Unacked messages come back: to their original positions marked redelivered, or held
        back by ``x-retry-backoff``, or dead-lettered past ``x-delivery-limit``."""
        options = self.options
        now = self.clock.now
        over_limit: list[QueuedMessage] = []
        expired: list[QueuedMessage] = []
        returned = False
        store = self._store
        for entry in entries:
            self._settle(entry)
            entry.redelivered = True
            if entry.stored:
                store.message_changed(self, entry)  # type: ignore[union-attr]
            if self.deleted:
                entry.state = GONE
                continue
            if options.delivery_limit is not None and entry.delivery_count > options.delivery_limit:
                entry.state = GONE
                over_limit.append(entry)
            elif entry.expires_at is not None and entry.expires_at <= now:
                entry.state = GONE
                expired.append(entry)
            elif options.retry_initial is not None:
                entry.state = WAITING
                self.waiting += 1
                due = now + options.retry_delay(entry.delivery_count, self.host.random())
                if entry.expires_at is not None and entry.expires_at <= due:
                    # it would expire while held back: it does so at its deadline
                    entry.timer = self._add_timer(entry.expires_at, _EXPIRE, entry)
                else:
                    entry.timer = self._add_timer(due, _DUE, entry)
            else:
                self._insert(entry)
                returned = True
        if over_limit:
            self._dead_letter(over_limit, DELIVERY_LIMIT)
        if expired:
            self._expire(expired)
        if returned and self._drop_head:
            self._drop_over_limit()

    # --- leaving the queue ---------------------------------------------------------------------

    def _expire(self, entries: list[QueuedMessage]) -> None:
        self.stats.expired += len(entries)
        self._dead_letter(entries, EXPIRED)

    def _dead_letter(self, entries: list[QueuedMessage], reason: str) -> None:
        # the source rows go in the same batch as the copies the host routes on: one transaction
        store = self._store
        for entry in entries:
            entry.state = GONE
            self._release_key(entry)
            if entry.stored:
                store.message_changed(self, entry)  # type: ignore[union-attr]
        if self.options.dead_letter_exchange is not None:
            for entry in entries:
                if entry.message.paged:
                    self._unpage(entry)
            counts = self.stats.dead_lettered
            counts[reason] = counts.get(reason, 0) + len(entries)
            self.host.dead_letter(self, entries, reason)

    def purge(self) -> int:
        """Drop every ready message; unacked ones stay (AMQP 0-9-1 §1.7.2.7)."""
        count = self.ready_count
        for level in self._levels:
            if level is None:
                continue
            for entry in (*level.ready, *level.requeued):
                if entry.state == READY:
                    entry.state = GONE
                    self._release_key(entry)
                    if entry.stored:
                        self._store.message_changed(self, entry)  # type: ignore[union-attr]
                    if entry.timer is not None:
                        self._timers.cancel(entry.timer)
                        entry.timer = None
        self._levels = [None] * len(self._levels)
        self._mask = 0
        self._gone = 0
        self.ready_count = 0
        self.ready_bytes = 0
        return count

    def delete(self) -> int:
        count = self.purge()
        self.deleted = True
        self.waiting = 0
        self._timers = TimeIndex()
        self._due = TimeIndex()
        self._wake_at = None
        self.host.schedule(self, None)
        return count
