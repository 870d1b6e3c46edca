"""Statistics: the counters' totals and the rates computed from them over a sliding window.

The counters themselves live on the objects they count (``QueueStats`` on a queue,
``published_in`` on an exchange, ``matched`` on a binding, ``published`` on a channel...): an
integer increment each, no allocation per message. This module reads them:

- ``Totals`` keeps what deleted queues, channels and connections counted, so the broker-wide
  totals only ever grow (Prometheus counters must never go down);
- ``RateWindow`` remembers a few timestamped samples of one object's counters and turns them
  into per-second rates over the last ``window`` seconds;
- ``Rates`` holds the windows of every object that was sampled, keyed by kind and object.

Nothing here reads a clock: the caller passes ``now`` (the runtime samples every few seconds, and
again when the management API is asked, so a dashboard polling each second sees fresh rates).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Sequence
from typing import Any

# The fields a queue's, a channel's and the broker's message_stats carry, in RabbitMQ's names.
QUEUE_FIELDS = (
    "publish",
    "deliver_get",
    "redeliver",
    "ack",
    "reject",
    "expired",
    "dead_lettered",
)
EXCHANGE_FIELDS = ("publish_in", "publish_out", "unroutable")
CHANNEL_FIELDS = ("publish", "confirm", "return_unroutable", "deliver_get", "redeliver", "ack")
CONNECTION_FIELDS = ("recv_oct", "send_oct", "recv_cnt", "send_cnt")
OVERVIEW_FIELDS = (
    "publish",
    "confirm",
    "deliver_get",
    "redeliver",
    "ack",
    "return_unroutable",
    "drop_unroutable",
    "dead_lettered",
)


class RateWindow:
    """Timestamped samples of one object's counters, oldest first, spanning ``window`` seconds
    (plus the one just before it, so a rate always covers the whole window)."""

    __slots__ = ("samples",)

    def __init__(self) -> None:
        self.samples: deque[tuple[float, Sequence[int]]] = deque()

    def add(self, now: float, values: Sequence[int], window: float) -> None:
        samples = self.samples
        if samples and now - samples[-1][0] < 0.05:
            samples[-1] = (samples[-1][0], values)  # the same instant: keep the newer values
        else:
            samples.append((now, values))
        while len(samples) > 2 and now - samples[1][0] >= window:
            samples.popleft()

    def rates(self) -> list[float]:
        """Per-second rate of each counter between the oldest and the newest sample."""
        samples = self.samples
        if len(samples) < 2:
            return [0.0] * (len(samples[0][1]) if samples else 0)
        (t0, first), (t1, last) = samples[0], samples[-1]
        elapsed = t1 - t0
        return [max(0.0, (b - a) / elapsed) for a, b in zip(first, last, strict=False)]

    def history(self) -> list[tuple[float, Sequence[int]]]:
        return list(self.samples)


class Rates:
    """Rate windows by kind ("queue", "exchange", "binding", ...) and object."""

    def __init__(self, window: float = 5.0) -> None:
        self.window = window
        self._windows: dict[str, dict[object, RateWindow]] = {}

    def sample(self, kind: str, key: object, values: Sequence[int], now: float) -> RateWindow:
        windows = self._windows.setdefault(kind, {})
        rate = windows.get(key)
        if rate is None:
            rate = windows[key] = RateWindow()
        rate.add(now, values, self.window)
        return rate

    def sample_all(
        self, kind: str, items: Iterable[tuple[object, Sequence[int]]], now: float
    ) -> None:
        """Sample every object of a kind; objects not among them are forgotten (deleted)."""
        old = self._windows.get(kind, {})
        fresh: dict[object, RateWindow] = {}
        for key, values in items:
            rate = old.get(key)
            if rate is None:
                rate = RateWindow()
            rate.add(now, values, self.window)
            fresh[key] = rate
        self._windows[kind] = fresh

    def rates(self, kind: str, key: object) -> list[float] | None:
        rate = self._windows.get(kind, {}).get(key)
        return rate.rates() if rate is not None else None

    def count(self, kind: str) -> int:
        return len(self._windows.get(kind, {}))


class Totals:
    """What objects that are gone had counted, so broker-wide totals never go down."""

    def __init__(self) -> None:
        self.queue: dict[str, int] = dict.fromkeys(QUEUE_FIELDS, 0)
        self.channel: dict[str, int] = dict.fromkeys(CHANNEL_FIELDS, 0)
        self.connection: dict[str, int] = dict.fromkeys(CONNECTION_FIELDS, 0)
        self.connections_opened = 0
        self.connections_closed = 0
        self.channels_opened = 0
        self.channels_closed = 0
        self.queues_deleted = 0

    def retire(self, table: dict[str, int], values: Sequence[int]) -> None:
        for name, value in zip(table, values, strict=False):
            table[name] += value


def details(
    fields: Sequence[str], totals: Sequence[int], rates: Sequence[float] | None
) -> dict[str, Any]:
    """RabbitMQ's message_stats object: each counter, and ``<name>_details: {"rate": r}``."""
    result: dict[str, Any] = {}
    for index, name in enumerate(fields):
        result[name] = totals[index]
        rate = rates[index] if rates else 0.0
        result[f"{name}_details"] = {"rate": round(rate, 1)}
    return result
