"""A time index: things that must happen at a deadline, earliest first.

One binary heap of ``(deadline, sequence, item)``; cancelling is lazy (the item is marked and
skipped when it reaches the top), so add, cancel and pop are O(log n) and ``next_deadline`` is O(1)
amortised. Used by queues for message TTL, scheduled and backed-off messages, consumer leases and
``x-expires``, and by the virtual host to know which queue needs a tick next.

Time is whatever the caller passes: the runtime's monotonic clock in production, plain numbers in
tests.
"""

from __future__ import annotations

import heapq
from typing import Generic, TypeVar

T = TypeVar("T")


class Timer(Generic[T]):
    """One scheduled item; ``cancel()`` it to make the index forget it."""

    __slots__ = ("cancelled", "deadline", "item")

    def __init__(self, deadline: float, item: T) -> None:
        self.deadline = deadline
        self.item = item
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True

    def __repr__(self) -> str:
        state = " cancelled" if self.cancelled else ""
        return f"<Timer {self.deadline} {self.item!r}{state}>"


class TimeIndex(Generic[T]):
    """Items by deadline."""

    __slots__ = ("_heap", "_sequence", "live")

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Timer[T]]] = []
        self._sequence = 0
        self.live = 0  # timers added and not yet cancelled or popped

    def __len__(self) -> int:
        return self.live

    def add(self, deadline: float, item: T) -> Timer[T]:
        timer = Timer(deadline, item)
        self._sequence += 1
        heapq.heappush(self._heap, (deadline, self._sequence, timer))
        self.live += 1
        return timer

    def cancel(self, timer: Timer[T]) -> None:
        if not timer.cancelled:
            timer.cancelled = True
            self.live -= 1

    def timers(self) -> list[Timer[T]]:
        """The live timers, in no particular order (for inspection: browsing, stats)."""
        return [timer for _deadline, _sequence, timer in self._heap if not timer.cancelled]

    def _prune(self) -> None:
        heap = self._heap
        while heap and heap[0][2].cancelled:
            heapq.heappop(heap)

    def next_deadline(self) -> float | None:
        self._prune()
        return self._heap[0][0] if self._heap else None

    def pop_due(self, now: float) -> list[T]:
        """Remove and return every item whose deadline is ``now`` or earlier, in deadline order."""
        due: list[T] = []
        heap = self._heap
        while heap:
            deadline, _sequence, timer = heap[0]
            if timer.cancelled:
                heapq.heappop(heap)
                continue
            if deadline > now:
                break
            heapq.heappop(heap)
            timer.cancelled = True
            self.live -= 1
            due.append(timer.item)
        return due
