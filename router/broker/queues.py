"""Queues: the ready index, consumers and dispatch.

Ready messages sit in a deque in publish order. A message requeued (reject, nack, recover, channel
close) goes back to its *original* position, as RabbitMQ does: requeued entries wait in a small
sorted list keyed by their sequence number, and the next message is whichever head is older. So the
common path stays O(1) and a requeue costs O(log n).

Consumers are grouped by ``x-priority`` (highest first); within a level they take turns
(round-robin). A consumer takes a message only when its channel allows (prefetch, flow, output
buffer); lower levels get messages only when every higher consumer is full (RabbitMQ's consumer
priorities).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from typing import TYPE_CHECKING

from sortedcontainers import SortedList

from router.amqp.tables import FieldTable
from router.broker.message import Message, QueuedMessage

if TYPE_CHECKING:
    from router.broker.channel import Consumer


class QueueStats:
    """Cheap counters; the management API reads them."""

    __slots__ = ("acked", "delivered", "published", "redelivered")

    def __init__(self) -> None:
        self.published = 0
        self.delivered = 0
        self.redelivered = 0
        self.acked = 0


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
    ) -> None:
        self.name = name
        self.vhost = vhost
        self.durable = durable
        self.exclusive_owner = exclusive_owner
        self.auto_delete = auto_delete
        self.arguments = arguments if arguments is not None else FieldTable()
        self._ready: deque[QueuedMessage] = deque()
        self._requeued: SortedList = SortedList()
        self._seq = 0
        self.ready_bytes = 0
        self.unacked = 0
        # consumer levels: priority -> deque of consumers, levels ordered highest first
        self._levels: dict[int, deque[Consumer]] = {}
        self._level_order: list[int] = []
        self.consumer_count = 0
        self.exclusive_consumer: Consumer | None = None
        self.had_consumers = False
        self.deleted = False
        self.stats = QueueStats()

    def __repr__(self) -> str:
        return f"<Queue {self.name!r} ready={self.message_count} unacked={self.unacked}>"

    @property
    def exclusive(self) -> bool:
        return self.exclusive_owner is not None

    @property
    def message_count(self) -> int:
        """Ready messages (what queue.declare-ok and basic.get-ok report)."""
        return len(self._ready) + len(self._requeued)

    # --- consumers -----------------------------------------------------------------------------

    def add_consumer(self, consumer: Consumer) -> None:
        level = self._levels.get(consumer.priority)
        if level is None:
            level = self._levels[consumer.priority] = deque()
            self._level_order = sorted(self._levels, reverse=True)
        level.append(consumer)
        self.consumer_count += 1
        self.had_consumers = True
        if consumer.exclusive:
            self.exclusive_consumer = consumer

    def remove_consumer(self, consumer: Consumer) -> None:
        level = self._levels.get(consumer.priority)
        if level is None or consumer not in level:
            return
        level.remove(consumer)
        if not level:
            del self._levels[consumer.priority]
            self._level_order = sorted(self._levels, reverse=True)
        self.consumer_count -= 1
        if self.exclusive_consumer is consumer:
            self.exclusive_consumer = None

    def consumers(self) -> list[Consumer]:
        return [c for p in self._level_order for c in self._levels[p]]

    def _next_consumer(self) -> Consumer | None:
        for priority in self._level_order:
            level = self._levels[priority]
            for _ in range(len(level)):
                consumer = level[0]
                level.rotate(-1)
                if consumer.can_take():
                    return consumer
        return None

    # --- messages ------------------------------------------------------------------------------

    def publish(self, message: Message) -> None:
        """Enqueue a routed message and hand it to a consumer if one can take it now."""
        self._seq += 1
        entry = QueuedMessage(message, self._seq)
        self.stats.published += 1
        if self.consumer_count and not self._ready and not self._requeued:
            consumer = self._next_consumer()
            if consumer is not None:
                self._deliver(consumer, entry)
                return
        self._ready.append(entry)
        self.ready_bytes += len(message.body)

    def _deliver(self, consumer: Consumer, entry: QueuedMessage) -> None:
        entry.delivery_count += 1
        self.stats.delivered += 1
        if entry.redelivered:
            self.stats.redelivered += 1
        if not consumer.no_ack:
            self.unacked += 1
        consumer.deliver(self, entry)

    def pop(self) -> QueuedMessage | None:
        """Take the next ready message (oldest position first), or None."""
        ready = self._ready
        requeued = self._requeued
        if requeued and (not ready or requeued[0].seq < ready[0].seq):
            entry: QueuedMessage = requeued.pop(0)
        elif ready:
            entry = ready.popleft()
        else:
            return None
        self.ready_bytes -= len(entry.message.body)
        return entry

    def get(self, no_ack: bool) -> QueuedMessage | None:
        """basic.get: the next message, counted as unacked unless ``no_ack``."""
        entry = self.pop()
        if entry is None:
            return None
        entry.delivery_count += 1
        self.stats.delivered += 1
        if not no_ack:
            self.unacked += 1
        return entry

    def dispatch(self) -> None:
        """Deliver ready messages to consumers while any can take one."""
        if not self.consumer_count:
            return
        if self.consumer_count == 1 and not self._requeued:
            # One consumer, messages in publish order (the common case): no rotation to do and
            # no requeued head to compare, so hand over until it is full.
            only = self._levels[self._level_order[0]][0]
            ready = self._ready
            while ready and only.can_take():
                head = ready.popleft()
                self.ready_bytes -= len(head.message.body)
                self._deliver(only, head)
            return
        while self._ready or self._requeued:
            consumer = self._next_consumer()
            if consumer is None:
                return
            entry = self.pop()
            assert entry is not None
            self._deliver(consumer, entry)

    def ack(self, entry: QueuedMessage) -> None:
        """An unacked message was acked (or rejected without requeue): it leaves the queue."""
        self.unacked -= 1
        self.stats.acked += 1

    def requeue(self, entries: Iterable[QueuedMessage]) -> None:
        """Put unacked messages back at their original positions, marked redelivered."""
        if self.deleted:
            return
        for entry in entries:
            self.unacked -= 1
            entry.redelivered = True
            self.ready_bytes += len(entry.message.body)
            if not self._ready or entry.seq > self._ready[-1].seq:
                self._ready.append(entry)
            else:
                self._requeued.add(entry)

    def purge(self) -> int:
        """Drop every ready message; unacked ones stay (AMQP 0-9-1 §1.7.2.7)."""
        count = self.message_count
        self._ready.clear()
        self._requeued.clear()
        self.ready_bytes = 0
        return count

    def delete(self) -> int:
        count = self.purge()
        self.deleted = True
        return count

    def ready_messages(self) -> list[QueuedMessage]:
        """The ready messages in delivery order (for browsing and tests)."""
        return sorted([*self._ready, *self._requeued], key=lambda e: e.seq)
