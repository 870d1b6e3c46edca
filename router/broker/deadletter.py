"""Dead-lettering: the ``x-death`` history exactly as RabbitMQ 3.10 writes it, and cycle detection.

Observed on RabbitMQ 3.10.8 (rabbit_dead_letter):

- The first death adds an ``x-death`` array with one table whose keys come in this order:
  ``count`` (long), ``reason``, ``queue``, ``time`` (timestamp, seconds), ``exchange``,
  ``routing-keys`` (array of longstr), and ``original-expiration`` when the message had an
  expiration; plus ``x-first-death-reason``, ``-queue`` and ``-exchange``. RabbitMQ 3.10 has no
  ``x-last-death-*``; router also writes ``x-last-death-reason``, ``-queue`` and ``-exchange`` on
  every death, as RabbitMQ 3.13 does, so a consumer can read the latest cause without parsing
  the array.
- A later death for a new (queue, reason) pair puts a new table at the front, its keys sorted;
  older tables stay exactly as they were. A death for a pair already present moves that table to
  the front with ``count`` + 1 and its keys sorted; its ``time`` is not updated.
- The top-level headers are sorted by key (bytewise) on every dead-lettering; the ``expiration``
  property is removed, and so is ``x-delivery-count``.
- A dead-lettered message is dropped for a target queue when that queue is already in the history
  and no death since then (that one included) was a rejection: an automatic cycle.
"""

from __future__ import annotations

from typing import Any

from router.amqp.tables import FieldArray, FieldTable

REJECTED = "rejected"
EXPIRED = "expired"
MAXLEN = "maxlen"
DELIVERY_LIMIT = "delivery_limit"


def _sorted(table: FieldTable) -> FieldTable:
    ordered = FieldTable()
    for key in sorted(table, key=lambda k: k.encode("utf-8", "surrogateescape")):
        ordered.set_typed(key, table.tag(key), table[key])
    return ordered


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def dead_letter_headers(
    headers: FieldTable | None,
    *,
    queue: str,
    reason: str,
    exchange: str,
    routing_keys: list[str],
    expiration: str | None,
    time_s: int,
) -> FieldTable:
    """The headers of a message dead-lettered from ``queue`` (a new table; ``headers`` is not
    changed, it may be shared by other messages)."""
    result = headers.copy() if headers is not None else FieldTable()
    result.pop("x-delivery-count", None)
    if "x-death" in result:
        result.tags.pop("x-death", None)
    deaths = result.get("x-death")
    if isinstance(deaths, list) and deaths:
        tables = [d for d in deaths if isinstance(d, dict)]
        match = None
        for table in tables:
            if _text(table.get("queue", "")) == queue and _text(table.get("reason", "")) == reason:
                match = table
                break
        if match is not None:
            updated = match.copy() if isinstance(match, FieldTable) else FieldTable(match)
            count = updated.get("count", 0)
            updated.set_typed("count", "l", (count if isinstance(count, int) else 0) + 1)
            rest = [t for t in tables if t is not match]
            entry = _sorted(updated)
        else:
            rest = tables
            entry = _sorted(_new_entry(queue, reason, exchange, routing_keys, expiration, time_s))
        history = FieldArray([entry, *rest], ["F"] * (1 + len(rest)))
        result.set_typed("x-death", "A", history)
    else:
        entry = _new_entry(queue, reason, exchange, routing_keys, expiration, time_s)
        result.set_typed("x-death", "A", FieldArray([entry], ["F"]))
        result.set_typed("x-first-death-reason", "S", reason)
        result.set_typed("x-first-death-queue", "S", queue)
        result.set_typed("x-first-death-exchange", "S", exchange)
    result.set_typed("x-last-death-reason", "S", reason)
    result.set_typed("x-last-death-queue", "S", queue)
    result.set_typed("x-last-death-exchange", "S", exchange)
    return _sorted(result)


def _new_entry(
    queue: str,
    reason: str,
    exchange: str,
    routing_keys: list[str],
    expiration: str | None,
    time_s: int,
) -> FieldTable:
    entry = FieldTable()
    entry.set_typed("count", "l", 1)
    entry.set_typed("reason", "S", reason)
    entry.set_typed("queue", "S", queue)
    entry.set_typed("time", "T", time_s)
    entry.set_typed("exchange", "S", exchange)
    entry.set_typed("routing-keys", "A", FieldArray(list(routing_keys), ["S"] * len(routing_keys)))
    if expiration is not None:
        entry.set_typed("original-expiration", "S", expiration)
    return entry


def is_cycle(queue: str, headers: FieldTable, reason: str) -> bool:
    """Whether delivering this dead-lettered message to ``queue`` closes an automatic cycle.

    ``headers`` are the message's new headers (with this death recorded). A rejection anywhere
    in the cycle means a client is in the loop, and the message goes round (RabbitMQ).
    """
    if reason == REJECTED:
        return False
    deaths = headers.get("x-death")
    if not isinstance(deaths, list):
        return False
    cycle: list[Any] = []
    for death in deaths:
        cycle.append(death)
        if isinstance(death, dict) and _text(death.get("queue", "")) == queue:
            return all(
                not (isinstance(d, dict) and _text(d.get("reason", "")) == REJECTED) for d in cycle
            )
    return False
