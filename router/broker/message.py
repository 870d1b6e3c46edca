"""Messages as the broker holds them.

A ``Message`` is built once per publish and shared by every queue it is routed to; its header frame
payload and the encoded exchange/routing-key pair are computed once and reused for every delivery.
A ``QueuedMessage`` is one queue's copy: its position (``seq``) and redelivery state.
"""

from __future__ import annotations

from router.amqp.fastpath import shortstr
from router.amqp.properties import encode_content_header, peek_headers
from router.amqp.tables import FieldTable

_UNSET = FieldTable()


class Message:
    """One published message: routing info, raw property bytes and body."""

    __slots__ = (
        "_headers",
        "body",
        "delivery_mode",
        "exchange",
        "exchange_rk",
        "expiration",
        "header_payload",
        "priority",
        "properties",
        "routing_key",
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
    ) -> None:
        self.exchange = exchange
        self.routing_key = routing_key
        self.properties = properties
        self.body = body
        self.delivery_mode = delivery_mode
        self.priority = priority
        self.expiration = expiration
        # the publisher's frames already hold both; encode only when they are not given
        self.header_payload = (
            header_payload
            if header_payload is not None
            else encode_content_header(60, len(body), properties)
        )
        self.exchange_rk = (
            exchange_rk if exchange_rk is not None else shortstr(exchange) + shortstr(routing_key)
        )
        # the decoded headers when the publisher's scan already has them, else decoded on use
        self._headers: FieldTable | None = headers  # type: ignore[assignment]

    @property
    def headers(self) -> FieldTable | None:
        """The headers table, decoded on first use (only headers exchanges need it)."""
        if self._headers is _UNSET:
            self._headers = peek_headers(self.properties)
        return self._headers

    @property
    def size(self) -> int:
        return len(self.body)

    @property
    def persistent(self) -> bool:
        return self.delivery_mode == 2


class QueuedMessage:
    """A message in one queue: its position there and whether it was delivered before."""

    __slots__ = ("delivery_count", "message", "redelivered", "seq")

    def __init__(self, message: Message, seq: int) -> None:
        self.message = message
        self.seq = seq
        self.redelivered = False
        self.delivery_count = 0

    def __lt__(self, other: QueuedMessage) -> bool:
        return self.seq < other.seq
