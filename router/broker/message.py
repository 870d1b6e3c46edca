"""Messages as the broker holds them.

A ``Message`` is built once per publish and shared by every queue it is routed to; its header frame
payload and the encoded exchange/routing-key pair are computed once and reused for every delivery.
A ``QueuedMessage`` is one queue's copy: its position (``seq``) and redelivery state.
"""

from __future__ import annotations

import re
from typing import Any

from router.amqp.constants import PRECONDITION_FAILED
from router.amqp.errors import ChannelError
from router.amqp.fastpath import shortstr
from router.amqp.properties import decode_properties, encode_content_header, peek_headers
from router.amqp.tables import FieldTable
from router.broker.timeindex import Timer

_UNSET = FieldTable()

MAX_EXPIRATION = 315_360_000_000  # ms, ten years: RabbitMQ's upper bound
_INTEGER = re.compile(r"([+-]?)([0-9]+)(.*)", re.DOTALL)


def parse_expiration(text: str) -> int:
    """The ``expiration`` property in milliseconds, read as RabbitMQ reads it (Erlang's
    string:to_integer/1): an optional sign and digits, nothing after. Otherwise 406 with
    RabbitMQ's text."""
    match = _INTEGER.fullmatch(text)
    if match is None:
        raise ChannelError(PRECONDITION_FAILED, f"invalid expiration '{text}': no_integer")
    sign, digits, rest = match.groups()
    value = int(sign + digits)
    if rest:
        raise ChannelError(
            PRECONDITION_FAILED, f"invalid expiration '{text}': {{leftover_string,\"{rest}\"}}"
        )
    if value < 0:
        raise ChannelError(
            PRECONDITION_FAILED, f"invalid expiration '{text}': {{value_negative,{value}}}"
        )
    if value > MAX_EXPIRATION:
        raise ChannelError(
            PRECONDITION_FAILED, f"invalid expiration '{text}': {{value_too_large,{value}}}"
        )
    return value


class Message:
    """One published message: routing info, raw property bytes and body."""

    __slots__ = (
        "_headers",
        "bcc",
        "body",
        "cc",
        "delivery_mode",
        "due_at",
        "exchange",
        "exchange_rk",
        "expiration",
        "expiration_ms",
        "header_payload",
        "paged",
        "priority",
        "properties",
        "routing_key",
        "size",
    )

    def __init__(
        self,
        exchange: str,
        routing_key: str,
        properties: bytes,
        body: bytes,
        delivery_mode: int = 0,
        priority: int | None = None,
        expiration: str | None = None,
        *,
        exchange_rk: bytes | None = None,
        header_payload: bytes | None = None,
        headers: FieldTable | object | None = _UNSET,
        cc: tuple[str, ...] = (),
        bcc: tuple[str, ...] = (),
        due_at: float | None = None,
        size: int | None = None,
        paged: bool = False,
    ) -> None:
        self.exchange = exchange
        self.routing_key = routing_key
        self.properties = properties
        self.body = body
        self.size = len(body) if size is None else size
        # the body is on disk only (``body`` is empty): the queue reads it back to deliver it
        self.paged = paged
        self.delivery_mode = delivery_mode
        self.priority = priority
        self.expiration = expiration
        # the publisher's frames already hold both; encode only when they are not given
        self.header_payload = (
            header_payload
            if header_payload is not None
            else encode_content_header(60, self.size, properties)
        )
        self.exchange_rk = (
            exchange_rk if exchange_rk is not None else shortstr(exchange) + shortstr(routing_key)
        )
        # the decoded headers when the publisher's scan already has them, else decoded on use
        self._headers: FieldTable | None = headers  # type: ignore[assignment]
        # sender-selected distribution: extra routing keys from the CC and BCC headers (the BCC
        # header itself is stripped from the properties before the message is built)
        self.cc = cc
        self.bcc = bcc
        self.due_at = due_at  # scheduled delivery: when it becomes visible (monotonic seconds)
        self.expiration_ms = parse_expiration(expiration) if expiration is not None else None

    @property
    def routing_keys(self) -> tuple[str, ...]:
        """Every key the message is routed by: its routing key, then CC, then BCC."""
        if not self.cc and not self.bcc:
            return (self.routing_key,)
        return (self.routing_key, *self.cc, *self.bcc)

    @property
    def headers(self) -> FieldTable | None:
        """The headers table, decoded on first use (only headers exchanges need it)."""
        if self._headers is _UNSET:
            self._headers = peek_headers(self.properties)
        return self._headers

    def header_with(self, key: str, value: int) -> bytes:
        """The header frame payload with one (long) header set, for a single delivery."""
        properties = decode_properties(self.properties)
        headers = properties.headers.copy() if properties.headers is not None else FieldTable()
        headers.set_typed(key, "l", value)
        ordered = FieldTable()
        for name in sorted(headers, key=lambda k: k.encode("utf-8", "surrogateescape")):
            ordered.set_typed(name, headers.tag(name), headers[name])
        raw = properties.replace(headers=ordered).encode()
        return encode_content_header(60, self.size, raw)

    def paged_copy(self) -> Message:
        """This message without its body in memory (the store holds it)."""
        return self._copy(b"", paged=True)

    def with_body(self, body: bytes) -> Message:
        """A paged message made whole again with the body read from the store."""
        return self._copy(body, paged=False)

    def _copy(self, body: bytes, *, paged: bool) -> Message:
        copy = Message.__new__(Message)
        for name in Message.__slots__:
            setattr(copy, name, getattr(self, name))
        copy.body = body
        copy.paged = paged
        return copy

    @property
    def message_id(self) -> str | None:
        """The message_id property (decoded on use: only deduplication needs it)."""
        return decode_properties(self.properties).message_id

    @property
    def persistent(self) -> bool:
        return self.delivery_mode == 2


# States of a queued message
READY = 0  # in the ready index, deliverable
UNACKED = 1  # delivered, waiting for ack / nack / reject
WAITING = 2  # invisible until a due time: scheduled delivery or retry backoff
GONE = 3  # acked, dropped, dead-lettered or expired; a stale index entry is skipped


# Durability of a queued message (QueuedMessage.stored)
NOT_STORED = 0  # transient message or non-durable queue: lives in memory only
UNWRITTEN = 1  # persistent in a durable queue, its row not yet in a batch
WRITTEN = 2  # its row is in a batch (written, or being written)
PAGED = 3  # written, and its body dropped from memory: read back from the store to deliver it


class QueuedMessage:
    """A message in one queue: its position there, its state, and its deadlines."""

    __slots__ = (
        "consumer",
        "delivery_count",
        "delivery_tag",
        "expires_at",
        "lease",
        "level",
        "message",
        "redelivered",
        "seq",
        "state",
        "stored",
        "timer",
    )

    def __init__(self, message: Message, seq: int) -> None:
        self.message = message
        self.seq = seq
        self.redelivered = False
        self.delivery_count = 0
        self.state = READY
        self.level = 0  # priority level in the ready index
        self.expires_at: float | None = None  # monotonic deadline from x-message-ttl / expiration
        self.timer: Timer[Any] | None = None  # its expiry or due timer in the queue's index
        self.lease: Timer[Any] | None = None  # consumer-timeout timer while unacked
        self.consumer: object | None = None  # who holds it while unacked (for leases)
        self.delivery_tag = 0
        self.stored = NOT_STORED  # durability: see below

    def __lt__(self, other: QueuedMessage) -> bool:
        return self.seq < other.seq

    def __repr__(self) -> str:
        return f"<QueuedMessage #{self.seq} state={self.state}>"
