"""Headers exchange: match the message's headers against the binding's arguments.

``x-match`` is ``all`` (the default), ``any``, ``all-with-x`` or ``any-with-x``; arguments starting
with ``x-`` take part only in the ``-with-x`` forms. A binding value of type void matches on the
key's presence alone. Values compare typed, as RabbitMQ compares them: same type class (all integer
widths are one class, float and double another) and equal value; so ``1`` never equals ``"1"`` or
``true``. A binding with nothing to compare matches every message under ``all`` and none under
``any``.
"""

from __future__ import annotations

from typing import Any

from router.amqp.constants import PRECONDITION_FAILED
from router.amqp.errors import ChannelError
from router.amqp.tables import FieldTable, type_class
from router.broker.exchanges.base import Binding, Destination, Exchange
from router.broker.message import Message

MATCH_KINDS = ("all", "any", "all-with-x", "any-with-x")


def parse_x_match(arguments: FieldTable) -> str:
    value = arguments.get("x-match", "all")
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if value not in MATCH_KINDS:
        raise ChannelError(
            PRECONDITION_FAILED,
            f"Invalid x-match field value {value!r}; expected all, any, all-with-x, or any-with-x",
        )
    return str(value)


class _Spec:
    __slots__ = ("any", "binding", "pairs")

    def __init__(self, binding: Binding) -> None:
        kind = parse_x_match(binding.arguments)
        with_x = kind.endswith("-with-x")
        self.any = kind.startswith("any")
        self.binding = binding
        args = binding.arguments
        self.pairs: list[tuple[str, str, Any]] = [
            (key, type_class(args.tag(key)), args[key])
            for key in args
            if key != "x-match" and (with_x or not key.startswith("x-"))
        ]


def _value_class(headers: FieldTable, key: str) -> str:
    return type_class(headers.tag(key))


def _matches(spec: _Spec, headers: FieldTable | None) -> bool:
    if not spec.pairs:
        return not spec.any
    for key, cls, value in spec.pairs:
        if headers is not None and key in headers:
            ok = cls == "V" or (_value_class(headers, key) == cls and headers[key] == value)
        else:
            ok = False
        if ok and spec.any:
            return True
        if not ok and not spec.any:
            return False
    return not spec.any


class HeadersExchange(Exchange):
    TYPE = "headers"

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self._specs: list[_Spec] = []

    def validate_binding(self, routing_key: str, arguments: FieldTable) -> None:
        parse_x_match(arguments)

    def route(self, message: Message) -> list[Destination]:
        headers = message.headers
        found: dict[Destination, None] = {}
        for spec in self._specs:
            if _matches(spec, headers):
                destination = spec.binding.destination
                if destination not in found:
                    found[destination] = None
                    spec.binding.matched += 1
        return list(found)

    def _add(self, binding: Binding) -> None:
        self._specs.append(_Spec(binding))

    def _remove(self, binding: Binding) -> None:
        self._specs = [s for s in self._specs if s.binding is not binding]
