"""Moving messages from one queue to another at a bounded rate (a dead-letter queue redrive).

A ``Move`` takes ready messages from the source's head and publishes each, unchanged, to the
destination; the source lets go of a message only once the destination accepted it, so a message
is never in neither queue, and both changes land in the same store batch. ``step(now)`` moves
what the rate allows since the last step; the runtime calls it at ``next_step``.
"""

from __future__ import annotations

from typing import Any

from router.broker.queues import Queue

STEP = 0.1  # seconds between steps of a rate-limited move
UNLIMITED_BATCH = 1000  # messages per step without a rate limit (keeps each step short)


class Move:
    def __init__(
        self,
        ident: int,
        source: Queue,
        destination: Queue,
        *,
        rate: float | None,
        count: int | None,
        now: float,
    ) -> None:
        self.id = ident
        self.source = source
        self.destination = destination
        self.rate = rate
        self.count = count
        self.moved = 0
        self.state = "running"
        self.reason = ""
        self.started = now
        self._last = now
        self._credit = 0.0
        self.next_step = now

    @property
    def running(self) -> bool:
        return self.state == "running"

    def cancel(self) -> None:
        if self.running:
            self.state = "cancelled"

    def step(self, now: float) -> None:
        if not self.running:
            return
        if self.source.deleted or self.destination.deleted:
            self._finish("failed", "a queue was deleted while moving")
            return
        if self.rate is None:
            allowance = UNLIMITED_BATCH
        else:
            self._credit = min(self._credit + (now - self._last) * self.rate, max(1.0, self.rate))
            if self.moved == 0 and self._credit < 1:
                self._credit = 1.0  # the first message goes at once
            allowance = int(self._credit)
            self._credit -= allowance
        self._last = now
        if self.count is not None:
            allowance = min(allowance, self.count - self.moved)
        source, destination = self.source, self.destination
        for _ in range(allowance):
            entry = source.get(no_ack=False)
            if entry is None:
                self._finish("done", "the source queue is empty")
                break
            if not destination.publish(entry.message):
                source.requeue([entry])
                self._finish(
                    "stopped",
                    f"queue '{destination.name}' is full and refuses messages; "
                    "start the move again once it has room",
                )
                break
            source.ack(entry)
            self.moved += 1
        if self.running and self.count is not None and self.moved >= self.count:
            self._finish("done", f"moved the {self.count} messages asked for")
        source.dispatch()
        self.next_step = now + (STEP if self.rate is not None else 0.0)

    def fail(self, reason: str) -> None:
        self._finish("failed", reason)

    def _finish(self, state: str, reason: str) -> None:
        self.state = state
        self.reason = reason

    def json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "vhost": self.source.vhost,
            "source": self.source.name,
            "destination": self.destination.name,
            "rate": self.rate,
            "count": self.count,
            "moved": self.moved,
            "remaining": self.source.ready_count,
            "state": self.state,
            "reason": self.reason,
        }
