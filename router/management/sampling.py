"""Sampling the broker's counters into rate windows, and the totals the overview shows.

``sample(broker, rates, now)`` walks every queue, exchange, active binding, channel and
connection once and records their counters in ``rates`` (``router.broker.stats.Rates``). The
runtime calls it every few seconds and the API again before answering (at most once a second),
so rates are fresh while someone watches and cost nothing more while nobody does.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from router.broker.stats import Rates

if TYPE_CHECKING:
    from router.broker.broker import Broker
    from router.broker.channel import Channel
    from router.broker.exchanges.base import Binding, Exchange
    from router.broker.queues import Queue


def queues(broker: Broker) -> Iterator[Queue]:
    for vhost in broker.vhosts.values():
        yield from vhost.queues.values()


def exchanges(broker: Broker) -> Iterator[tuple[str, Exchange]]:
    for vhost in broker.vhosts.values():
        for exchange in vhost.exchanges.values():
            yield vhost.name, exchange


def bindings(broker: Broker) -> Iterator[tuple[str, Binding]]:
    for vhost in broker.vhosts.values():
        for exchange in vhost.exchanges.values():
            for binding in exchange.bindings.values():
                yield vhost.name, binding


def channels(broker: Broker) -> Iterator[Channel]:
    for session in broker.sessions.values():
        yield from session.channels.values()


def overview_values(broker: Broker) -> tuple[int, ...]:
    """The broker-wide counters in ``stats.OVERVIEW_FIELDS`` order: live objects plus what
    deleted ones counted, so they never go down."""
    totals = broker.totals
    published = returned = unroutable = dead_lettered = 0
    for vhost in broker.vhosts.values():
        published += vhost.published
        returned += vhost.returned
        unroutable += vhost.unroutable
        dead_lettered += sum(vhost.dead_lettered.values())
    delivered = totals.queue["deliver_get"]
    redelivered = totals.queue["redeliver"]
    acked = totals.queue["ack"]
    for queue in queues(broker):
        stats = queue.stats
        delivered += stats.delivered
        redelivered += stats.redelivered
        acked += stats.acked
    confirmed = totals.channel["confirm"]
    for channel in channels(broker):
        confirmed += channel.confirmed
    return (
        published,
        confirmed,
        delivered,
        redelivered,
        acked,
        returned,
        unroutable - returned,
        dead_lettered,
    )


def queue_totals(broker: Broker) -> tuple[int, int, int]:
    ready = unacked = 0
    for queue in queues(broker):
        ready += queue.ready_count
        unacked += queue.unacked
    return ready + unacked, ready, unacked


def sample(broker: Broker, rates: Rates, now: float) -> None:
    """Record every object's counters at ``now``."""
    rates.sample_all("queue", ((q, q.stats.values()) for q in queues(broker)), now)
    rates.sample_all(
        "queue_depth",
        ((q, (q.ready_count + q.unacked, q.ready_count, q.unacked)) for q in queues(broker)),
        now,
    )
    rates.sample_all(
        "exchange",
        ((x, (x.published_in, x.routed_out, x.unroutable)) for _v, x in exchanges(broker)),
        now,
    )
    # only bindings that ever matched: a never-used binding's rate is 0 without a window
    rates.sample_all("binding", ((b, (b.matched,)) for _v, b in bindings(broker) if b.matched), now)
    rates.sample_all("channel", ((c, c.counters()) for c in channels(broker)), now)
    rates.sample_all("connection", ((s, s.counters()) for s in broker.sessions.values()), now)
    rates.sample("overview", "overview", overview_values(broker), now)
    rates.sample("overview_depth", "overview", queue_totals(broker), now)


class DeadLetterWatch:
    """Turns the queues' dead-letter counters into one log line per queue and burst: what was
    dead-lettered since the last look, by reason."""

    def __init__(self) -> None:
        self._seen: dict[Queue, dict[str, int]] = {}

    def bursts(self, broker: Broker) -> list[str]:
        lines: list[str] = []
        seen: dict[Queue, dict[str, int]] = {}
        for queue in queues(broker):
            counts = queue.stats.dead_lettered
            if not counts:
                continue
            before = self._seen.get(queue, {})
            seen[queue] = dict(counts)
            grown = {
                reason: count - before.get(reason, 0)
                for reason, count in counts.items()
                if count > before.get(reason, 0)
            }
            if grown:
                total = sum(grown.values())
                reasons = ", ".join(f"{reason} {n}" for reason, n in sorted(grown.items()))
                target = queue.options.dead_letter_exchange or ""
                lines.append(
                    f"dead-lettered {total} message{'s' if total != 1 else ''} from queue "
                    f"'{queue.name}' in vhost '{queue.vhost}' to exchange '{target}' ({reasons})"
                )
        self._seen = seen
        return lines
