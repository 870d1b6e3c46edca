"""``x-delayed-message``: scheduled delivery, compatible with RabbitMQ's delayed-message plugin.

The exchange routes like its ``x-delayed-type`` (direct, fanout, topic or headers) and the message
is routed *at publish time*, so mandatory returns and publisher confirms mean something at once
(the plugin cannot: it routes only when the delay ends). The queues hold the message invisible
until it is due: ``x-delay`` (milliseconds from now) or ``x-deliver-at`` (Unix milliseconds).
"""

from __future__ import annotations

from typing import Any

from router.amqp.constants import PRECONDITION_FAILED
from router.amqp.errors import ChannelError
from router.amqp.tables import FieldTable
from router.broker.exchanges.base import Binding, Destination, Exchange
from router.broker.message import Message


class DelayedExchange(Exchange):
    TYPE = "x-delayed-message"
    INNER_TYPES: dict[str, type[Exchange]] = {}  # filled by exchanges/__init__ (no import cycle)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        inner = self.arguments.get("x-delayed-type")
        if isinstance(inner, bytes):
            inner = inner.decode("utf-8", "replace")
        cls = self.INNER_TYPES.get(inner) if isinstance(inner, str) else None
        if cls is None:
            raise ChannelError(
                PRECONDITION_FAILED,
                "Invalid argument, 'x-delayed-type' must be an existing exchange type: one of "
                f"{', '.join(sorted(self.INNER_TYPES))} (got {inner!r})",
            )
        self.delayed_type = inner
        self._inner = cls(self.name, self.vhost)

    def validate_binding(self, routing_key: str, arguments: FieldTable) -> None:
        self._inner.validate_binding(routing_key, arguments)

    def route(self, message: Message, routing_key: str | None = None) -> list[Destination]:
        return self._inner.route(message, routing_key)

    def _add(self, binding: Binding) -> None:
        self._inner._add(binding)

    def _remove(self, binding: Binding) -> None:
        self._inner._remove(binding)
