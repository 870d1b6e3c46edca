"""x-arguments: equivalence on redeclare, with RabbitMQ's messages.

RabbitMQ compares only the arguments it knows for a queue (``rabbit_amqqueue:declare_args/0``); an
unknown argument may differ between declarations. Integers compare by value across widths
(``rabbit_misc:type_class/1``): declaring with ``b`` 10 after ``l`` 10 is equivalent.
"""

from __future__ import annotations

from typing import Any

from router.amqp.constants import PRECONDITION_FAILED
from router.amqp.errors import ChannelError
from router.amqp.tables import FieldTable, type_class

# The queue arguments RabbitMQ 3.10 checks for equivalence on redeclare.
QUEUE_EQUIVALENCE_ARGS = (
    "x-expires", "x-message-ttl", "x-dead-letter-exchange", "x-dead-letter-routing-key",
    "x-max-length", "x-max-length-bytes", "x-max-in-memory-length", "x-max-in-memory-bytes",
    "x-max-priority", "x-overflow", "x-queue-mode", "x-queue-type", "x-single-active-consumer",
    "x-delivery-limit", "x-queue-version", "x-retry-backoff",
)

# RabbitMQ's names for field types, as its error messages print them.
TYPE_NAMES = {
    "S": "longstr", "I": "signedint", "l": "long", "t": "bool", "b": "byte", "s": "short",
    "U": "short", "d": "double", "f": "float", "D": "decimal", "T": "timestamp", "F": "table",
    "A": "array", "V": "void", "x": "binary", "B": "unsignedbyte", "u": "unsignedshort",
    "i": "unsignedint", "L": "unsignedlong",
}


def _describe(tag: str, value: Any) -> str:
    if isinstance(value, bool):
        shown = "true" if value else "false"
    elif isinstance(value, bytes):
        shown = value.decode("utf-8", "replace")
    else:
        shown = str(value)
    return f"the value '{shown}' of type '{TYPE_NAMES.get(tag, tag)}'"


def flag(value: bool) -> str:
    return "true" if value else "false"


def inequivalent(arg: str, kind: str, name: str, vhost: str, received: str, current: str) -> ChannelError:
    return ChannelError(
        PRECONDITION_FAILED,
        f"inequivalent arg '{arg}' for {kind} '{name}' in vhost '{vhost}': "
        f"received {received} but current is {current}",
    )


def check_equivalent(
    current: FieldTable, new: FieldTable, keys: tuple[str, ...], kind: str, name: str, vhost: str
) -> None:
    """Raise 406 naming the first argument among ``keys`` that differs, with both values."""
    for key in keys:
        has_old = key in current
        has_new = key in new
        if not has_old and not has_new:
            continue
        if has_old and has_new:
            old_tag, old_value = current.typed(key)
            new_tag, new_value = new.typed(key)
            if type_class(old_tag) == type_class(new_tag) and old_value == new_value and (
                isinstance(old_value, bool) == isinstance(new_value, bool)
            ):
                continue
            raise inequivalent(key, kind, name, vhost, _describe(new_tag, new_value),
                               _describe(old_tag, old_value))
        if has_new:
            raise inequivalent(key, kind, name, vhost, _describe(*new.typed(key)), "none")
        raise inequivalent(key, kind, name, vhost, "none", _describe(*current.typed(key)))
