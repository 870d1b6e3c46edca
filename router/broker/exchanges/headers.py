"""Headers exchange: match the message's headers against the binding's arguments.

``x-match`` is ``all`` (the default), ``any``, ``all-with-x`` or ``any-with-x``; arguments starting
with ``x-`` take part only in the ``-with-x`` forms. A binding value of type void matches on the
key's presence alone. Values compare as RabbitMQ 3.10 compares them (Erlang ``==``): numbers by
value whatever their width or kind (``1`` equals ``1.0``), text and byte arrays by their bytes,
booleans only with booleans (``true`` never equals ``1``), tables and arrays element-wise. A
binding with nothing to compare matches every message under ``all`` and none under ``any``.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from router.amqp.constants import PRECONDITION_FAILED
from router.amqp.errors import ChannelError
from router.amqp.tables import FieldTable
from router.broker.arguments import TYPE_NAMES
from router.broker.exchanges.base import Binding, Destination, Exchange
from router.broker.message import Message

MATCH_KINDS = ("all", "any", "all-with-x", "any-with-x")
_VOID = object()


def parse_x_match(arguments: FieldTable) -> str:
    if "x-match" not in arguments:
        return "all"
    tag, value = arguments.typed("x-match")
    if tag not in ("S", "x"):
        raise ChannelError(
            PRECONDITION_FAILED,
            f"Invalid x-match field type {TYPE_NAMES.get(tag, tag)} (value {value}); "
            f"expected longstr",
        )
    text = value.decode("utf-8", "replace") if isinstance(value, bytes) else value
    if text not in MATCH_KINDS:
        raise ChannelError(
            PRECONDITION_FAILED,
            f'Invalid x-match field value <<"{text}">>; expected all, any, all-with-x, or '
            f"any-with-x",
        )
    return str(text)


def _comparable(value: Any) -> Any:
    """A key under which values RabbitMQ considers equal are equal in Python."""
    if isinstance(value, bool):
        return ("bool", value)
    if isinstance(value, (int, float)) and not isinstance(value, Decimal):
        return ("number", value)
    if isinstance(value, str):
        return ("bytes", value.encode("utf-8"))
    if isinstance(value, (bytes, bytearray)):
        return ("bytes", bytes(value))
    if isinstance(value, dict):
        return ("table", tuple(sorted((k, _comparable(v)) for k, v in value.items())))
    if isinstance(value, list):
        return ("array", tuple(_comparable(v) for v in value))
    return (type(value).__name__, value)


class _Spec:
    __slots__ = ("any", "binding", "order", "pairs", "under")

    def __init__(self, binding: Binding, order: int = 0) -> None:
        kind = parse_x_match(binding.arguments)
        with_x = kind.endswith("-with-x")
        self.any = kind.startswith("any")
        self.binding = binding
        self.order = order  # when it was bound: matches are returned in binding order
        self.under: tuple[str, Any] | None = None  # its pair in the exchange's index, if any
        args = binding.arguments
        self.pairs: list[tuple[str, Any]] = [
            (key, _VOID if args.tag(key) == "V" else _comparable(args[key]))
            for key in args
            if key != "x-match" and (with_x or not key.startswith("x-"))
        ]


def _matches(spec: _Spec, headers: FieldTable | None) -> bool:
    if not spec.pairs:
        return not spec.any
    for key, expected in spec.pairs:
        if headers is not None and key in headers:
            ok = expected is _VOID or _comparable(headers[key]) == expected
        else:
            ok = False
        if ok and spec.any:
            return True
        if not ok and not spec.any:
            return False
    return not spec.any


class HeadersExchange(Exchange):
    """Bindings with ``x-match: all`` and a value to compare are indexed under one of their
    (header, value) pairs, the one fewest other bindings share, so a message is checked only
    against the bindings its headers can satisfy; the rest (``any``, presence-only, empty) are
    checked one by one."""

    TYPE = "headers"

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self._specs: dict[Binding, _Spec] = {}
        # header -> comparable value -> the indexed specs requiring that pair
        self._index: dict[str, dict[Any, list[_Spec]]] = {}
        self._linear: list[_Spec] = []  # checked one by one
        self._added = 0

    def validate_binding(self, routing_key: str, arguments: FieldTable) -> None:
        parse_x_match(arguments)

    def route(self, message: Message, routing_key: str | None = None) -> list[Destination]:
        headers = message.headers
        matched: list[_Spec] = [spec for spec in self._linear if _matches(spec, headers)]
        if headers and self._index:
            index = self._index
            for key in headers:
                by_value = index.get(key)
                if by_value is None:
                    continue
                candidates = by_value.get(_comparable(headers[key]))
                if candidates:
                    matched.extend(spec for spec in candidates if _matches(spec, headers))
        if len(matched) > 1:
            matched.sort(key=_order)
        found: dict[Destination, None] = {}
        for spec in matched:
            destination = spec.binding.destination
            if destination not in found:
                found[destination] = None
                spec.binding.matched += 1
        return list(found)

    def _add(self, binding: Binding) -> None:
        self._added += 1
        spec = self._specs[binding] = _Spec(binding, self._added)
        pairs = [(k, v) for k, v in spec.pairs if v is not _VOID]
        if spec.any or not pairs:
            self._linear.append(spec)
            return
        key, value = min(pairs, key=lambda pair: len(self._index.get(pair[0], {}).get(pair[1], ())))
        self._index.setdefault(key, {}).setdefault(value, []).append(spec)
        spec.under = (key, value)

    def _remove(self, binding: Binding) -> None:
        spec = self._specs.pop(binding)
        if spec.under is None:
            self._linear.remove(spec)
            return
        key, value = spec.under
        bucket = self._index[key][value]
        bucket.remove(spec)
        if not bucket:
            del self._index[key][value]
            if not self._index[key]:
                del self._index[key]


def _order(spec: _Spec) -> int:
    return spec.order
