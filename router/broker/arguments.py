"""x-arguments: equivalence on redeclare, with RabbitMQ's messages.

RabbitMQ compares only the arguments it knows for a queue (``rabbit_amqqueue:declare_args/0``); an
unknown argument may differ between declarations. Integers compare by value across widths
(``rabbit_misc:type_class/1``): declaring with ``b`` 10 after ``l`` 10 is equivalent.
"""

from __future__ import annotations

import math
from typing import Any

from router.amqp.constants import PRECONDITION_FAILED
from router.amqp.errors import ChannelError
from router.amqp.tables import INT_TAGS, FieldTable, type_class

# The queue arguments RabbitMQ 3.10 checks for equivalence on redeclare.
QUEUE_EQUIVALENCE_ARGS = (
    "x-expires",
    "x-message-ttl",
    "x-dead-letter-exchange",
    "x-dead-letter-routing-key",
    "x-max-length",
    "x-max-length-bytes",
    "x-max-in-memory-length",
    "x-max-in-memory-bytes",
    "x-max-priority",
    "x-overflow",
    "x-queue-mode",
    "x-queue-type",
    "x-single-active-consumer",
    "x-delivery-limit",
    "x-queue-version",
    "x-retry-backoff",
)

# RabbitMQ's names for field types, as its error messages print them.
TYPE_NAMES = {
    "S": "longstr",
    "I": "signedint",
    "l": "long",
    "t": "bool",
    "b": "byte",
    "s": "short",
    "U": "short",
    "d": "double",
    "f": "float",
    "D": "decimal",
    "T": "timestamp",
    "F": "table",
    "A": "array",
    "V": "void",
    "x": "binary",
    "B": "unsignedbyte",
    "u": "unsignedshort",
    "i": "unsignedint",
    "L": "unsignedlong",
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


def inequivalent(
    arg: str, kind: str, name: str, vhost: str, received: str, current: str
) -> ChannelError:
    return ChannelError(
        PRECONDITION_FAILED,
        f"inequivalent arg '{arg}' for {kind} '{name}' in vhost '{vhost}': "
        f"received {received} but current is {current}",
    )


def _shown(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def check_equivalent(
    current: FieldTable, new: FieldTable, keys: tuple[str, ...], kind: str, name: str, vhost: str
) -> None:
    """Raise 406 naming the first argument among ``keys`` that differs, with both values.

    RabbitMQ's texts: ``received '2000' but current is '1000'`` when both declare the argument,
    ``received the value '5' of type 'long' but current is none`` when one side lacks it.
    """
    for key in keys:
        has_old = key in current
        has_new = key in new
        if not has_old and not has_new:
            continue
        if has_old and has_new:
            old_tag, old_value = current.typed(key)
            new_tag, new_value = new.typed(key)
            if (
                type_class(old_tag) == type_class(new_tag)
                and old_value == new_value
                and isinstance(old_value, bool) == isinstance(new_value, bool)
            ):
                continue
            raise inequivalent(
                key, kind, name, vhost, f"'{_shown(new_value)}'", f"'{_shown(old_value)}'"
            )
        if has_new:
            raise inequivalent(key, kind, name, vhost, _describe(*new.typed(key)), "none")
        raise inequivalent(key, kind, name, vhost, "none", _describe(*current.typed(key)))


# --- validation of queue arguments (rabbit_amqqueue:declare_args/0 in RabbitMQ 3.10) ------------

_MAX_PRIORITY = 255


def _invalid(key: str, name: str, vhost: str, reason: str) -> ChannelError:
    return ChannelError(
        PRECONDITION_FAILED, f"invalid arg '{key}' for queue '{name}' in vhost '{vhost}': {reason}"
    )


def _integer(key: str, tag: str, value: Any, name: str, vhost: str) -> int:
    if tag not in INT_TAGS or isinstance(value, bool):
        raise _invalid(key, name, vhost, f'"expected integer, got {TYPE_NAMES.get(tag, tag)}"')
    return int(value)


def _non_negative(key: str, tag: str, value: Any, name: str, vhost: str) -> None:
    number = _integer(key, tag, value, name, vhost)
    if number < 0:
        raise _invalid(key, name, vhost, f"{{value_negative,{number}}}")


def _positive(key: str, tag: str, value: Any, name: str, vhost: str) -> None:
    number = _integer(key, tag, value, name, vhost)
    if number < 0:
        raise _invalid(key, name, vhost, f"{{value_negative,{number}}}")
    if number == 0:
        raise _invalid(key, name, vhost, "{value_zero,0}")


MAX_EXPIRY = 315_360_000_000  # ms: ten years, RabbitMQ's bound for TTLs and x-expires


def _ttl(key: str, tag: str, value: Any, name: str, vhost: str) -> None:
    _non_negative(key, tag, value, name, vhost)
    if value > MAX_EXPIRY:
        raise _invalid(key, name, vhost, f"{{value_too_large,{value}}}")


def _expires(key: str, tag: str, value: Any, name: str, vhost: str) -> None:
    _positive(key, tag, value, name, vhost)
    if value > MAX_EXPIRY:
        raise _invalid(key, name, vhost, f"{{value_too_large,{value}}}")


def _priority(key: str, tag: str, value: Any, name: str, vhost: str) -> None:
    _non_negative(key, tag, value, name, vhost)
    if value > _MAX_PRIORITY:
        raise _invalid(key, name, vhost, f"{{max_value_exceeded,{value}}}")
    if value == 0:
        # RabbitMQ takes 0 and builds a plain queue; a priority queue with one level is a mistake
        raise _invalid(
            key,
            name,
            vhost,
            "0 is not a priority queue; use 1 to 255 (255 levels cost what 10 do), or leave "
            "the argument out for a plain queue",
        )


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


RETRY_BACKOFF_EXAMPLE = "e.g. {initial: 1000, multiplier: 2, max: 60000, jitter: 0.1}"


def retry_backoff_problem(value: Any) -> str | None:
    """What is wrong with an ``x-retry-backoff`` table (None: nothing). Shared by the argument
    and the ``retry-backoff`` policy key."""
    example = RETRY_BACKOFF_EXAMPLE
    if not isinstance(value, dict):
        return f"expected a table, {example}"
    unknown = sorted(set(value) - {"initial", "multiplier", "max", "jitter"})
    if unknown:
        return f"unknown key '{unknown[0]}'; allowed: initial, multiplier, max, jitter ({example})"

    def refuse(what: str, field: str) -> str:
        found = f", not {value[field]!r}" if field in value else ", and it is missing"
        return f"{what}{found} ({example})"

    initial = _number(value.get("initial"))
    if initial is None or initial <= 0:
        return refuse("'initial' must be a positive number of milliseconds", "initial")
    multiplier = _number(value.get("multiplier", 1))
    if multiplier is None or multiplier < 1:
        return refuse("'multiplier' must be a number >= 1", "multiplier")
    maximum = _number(value.get("max", initial))
    if maximum is None or maximum < initial:
        return refuse("'max' must be a number of milliseconds >= 'initial'", "max")
    jitter = _number(value.get("jitter", 0))
    if jitter is None or not 0 <= jitter <= 1:
        return refuse("'jitter' must be a number from 0 to 1", "jitter")
    return None


def _retry_backoff(key: str, tag: str, value: Any, name: str, vhost: str) -> None:
    if tag != "F":
        raise _invalid(key, name, vhost, f"expected a table, {RETRY_BACKOFF_EXAMPLE}")
    problem = retry_backoff_problem(value)
    if problem is not None:
        raise _invalid(key, name, vhost, problem)


def _string(key: str, tag: str, value: Any, name: str, vhost: str) -> None:
    if tag not in ("S", "x"):
        raise ChannelError(
            PRECONDITION_FAILED,
            f"invalid type '{TYPE_NAMES.get(tag, tag)}' for arg '{key}' in queue '{name}' in "
            f"vhost '{vhost}'",
        )


def _string_arg(key: str, tag: str, value: Any, name: str, vhost: str) -> None:
    """A string argument that is not an exchange name: RabbitMQ's unacceptable_type text."""
    if tag not in ("S", "x"):
        raise _invalid(key, name, vhost, f"{{unacceptable_type,{TYPE_NAMES.get(tag, tag)}}}")


def _choice(*allowed: str, reason: str) -> Any:
    """A string from ``allowed``; ``reason`` may name the value as ``{value}``."""

    def check(key: str, tag: str, value: Any, name: str, vhost: str) -> None:
        _string_arg(key, tag, value, name, vhost)
        text = value.decode("utf-8", "replace") if isinstance(value, bytes) else value
        if text not in allowed:
            raise _invalid(key, name, vhost, reason.format(value=text))

    return check


def _queue_type(key: str, tag: str, value: Any, name: str, vhost: str) -> None:
    """classic, or quorum: accepted so programs written for RabbitMQ run unchanged; a quorum
    queue here is a durable queue with router's semantics (delivery limits, dead-lettering).
    Streams read by offset, which router does not do: refused, saying so."""
    _string_arg(key, tag, value, name, vhost)
    text = value.decode("utf-8", "replace") if isinstance(value, bytes) else value
    if text == "stream":
        raise _invalid(
            key,
            name,
            vhost,
            "\"unsupported queue type 'stream'\": router has no streams; declare a classic "
            "queue, or use RabbitMQ for streams",
        )
    if text not in ("classic", "quorum"):
        raise _invalid(key, name, vhost, f"\"unsupported queue type '{text}'\"")


def _queue_version(key: str, tag: str, value: Any, name: str, vhost: str) -> None:
    if tag not in INT_TAGS or isinstance(value, bool) or value not in (1, 2):
        raise _invalid(key, name, vhost, f"\"unsupported queue version '{value}'\"")


def _quorum_only(key: str, tag: str, value: Any, name: str, vhost: str) -> None:
    raise ChannelError(
        PRECONDITION_FAILED,
        f"invalid arg '{key}' for queue '{name}' in vhost '{vhost}' of queue type "
        f"rabbit_classic_queue",
    )


def _boolean(key: str, tag: str, value: Any, name: str, vhost: str) -> None:
    if tag != "t":
        raise _invalid(key, name, vhost, f"{{unacceptable_type,{TYPE_NAMES.get(tag, tag)}}}")


QUEUE_ARGUMENT_CHECKS = {
    "x-expires": _expires,
    "x-message-ttl": _ttl,
    "x-dead-letter-exchange": _string,
    "x-dead-letter-routing-key": _string_arg,
    "x-max-length": _non_negative,
    "x-max-length-bytes": _non_negative,
    # quorum-queue arguments that a classic queue refuses, as in RabbitMQ
    "x-max-in-memory-length": _quorum_only,
    "x-max-in-memory-bytes": _quorum_only,
    "x-max-priority": _priority,
    "x-overflow": _choice(
        "drop-head", "reject-publish", "reject-publish-dlx", reason="invalid_overflow"
    ),
    "x-queue-mode": _choice("default", "lazy", reason="\"unsupported queue mode '{value}'\""),
    "x-queue-type": _queue_type,
    "x-queue-version": _queue_version,
    "x-delivery-limit": _non_negative,
    "x-single-active-consumer": _boolean,
    "x-retry-backoff": _retry_backoff,
    "x-consumer-timeout": _positive,
    "x-message-deduplication": _boolean,
    "x-cache-size": _positive,
    "x-cache-ttl": _positive,
}


def validate_queue_arguments(arguments: FieldTable, name: str, vhost: str) -> None:
    """Raise 406 with RabbitMQ's text for the first known argument with an invalid value."""
    quorum = arguments.get("x-queue-type") in ("quorum", b"quorum")
    for key, check in QUEUE_ARGUMENT_CHECKS.items():
        if quorum and check is _quorum_only:
            continue
        if key in arguments:
            tag, value = arguments.typed(key)
            check(key, tag, value, name, vhost)


# --- parsed options -------------------------------------------------------------------------------


def _int_arg(arguments: FieldTable, key: str) -> int | None:
    value = arguments.get(key)
    return int(value) if isinstance(value, int) and not isinstance(value, bool) else None


def _str_arg(arguments: FieldTable, key: str) -> str | None:
    value = arguments.get(key)
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value if isinstance(value, str) else None


class QueueOptions:
    """A queue's behaviour, read once from its (validated) arguments."""

    __slots__ = (
        "consumer_timeout",
        "dead_letter_exchange",
        "dead_letter_routing_key",
        "deduplication",
        "delivery_limit",
        "expires",
        "lazy",
        "max_length",
        "max_length_bytes",
        "max_priority",
        "message_ttl",
        "overflow",
        "retry_initial",
        "retry_jitter",
        "retry_max",
        "retry_multiplier",
        "single_active_consumer",
    )

    def __init__(self, arguments: FieldTable) -> None:
        self.max_priority = _int_arg(arguments, "x-max-priority")
        self.message_ttl = _int_arg(arguments, "x-message-ttl")
        self.expires = _int_arg(arguments, "x-expires")
        self.dead_letter_exchange = _str_arg(arguments, "x-dead-letter-exchange")
        self.dead_letter_routing_key = _str_arg(arguments, "x-dead-letter-routing-key")
        self.max_length = _int_arg(arguments, "x-max-length")
        self.max_length_bytes = _int_arg(arguments, "x-max-length-bytes")
        self.overflow = _str_arg(arguments, "x-overflow") or "drop-head"
        self.delivery_limit = _int_arg(arguments, "x-delivery-limit")
        self.consumer_timeout = _int_arg(arguments, "x-consumer-timeout")
        self.single_active_consumer = arguments.get("x-single-active-consumer") is True
        self.deduplication = arguments.get("x-message-deduplication") is True
        # x-queue-mode lazy (RabbitMQ): keep stored bodies on disk, read them back to deliver
        self.lazy = _str_arg(arguments, "x-queue-mode") == "lazy"
        backoff = arguments.get("x-retry-backoff")
        self.retry_initial: float | None = None
        self.retry_multiplier = 1.0
        self.retry_max = 0.0
        self.retry_jitter = 0.0
        if isinstance(backoff, dict):
            initial = _number(backoff.get("initial")) or 1.0
            self.retry_initial = initial
            self.retry_multiplier = _number(backoff.get("multiplier", 1)) or 1.0
            # no max: the delay grows without a cap (x-delivery-limit bounds the retries)
            self.retry_max = _number(backoff.get("max", math.inf)) or math.inf
            self.retry_jitter = _number(backoff.get("jitter", 0)) or 0.0

    @property
    def limited(self) -> bool:
        return self.max_length is not None or self.max_length_bytes is not None

    def retry_delay(self, failures: int, random: float) -> float:
        """Seconds to hold a message back after its ``failures``-th failed delivery: initial ×
        multiplier^(failures-1), capped at max, minus up to ``jitter`` of it at random."""
        assert self.retry_initial is not None
        delay = min(self.retry_max, self.retry_initial * self.retry_multiplier ** (failures - 1))
        return delay * (1 - self.retry_jitter * random) / 1000.0


def _exchange_invalid(key: str, name: str, vhost: str, reason: str) -> ChannelError:
    return ChannelError(
        PRECONDITION_FAILED,
        f"invalid arg '{key}' for exchange '{name}' in vhost '{vhost}': {reason}",
    )


def validate_exchange_arguments(arguments: FieldTable, name: str, vhost: str) -> None:
    """Raise 406 naming the argument, the value and what is allowed."""
    if "alternate-exchange" in arguments and arguments.tag("alternate-exchange") not in ("S", "x"):
        raise _exchange_invalid(
            "alternate-exchange",
            name,
            vhost,
            f"expected the name of an exchange, got {arguments['alternate-exchange']!r}",
        )
    if "x-message-deduplication" in arguments and arguments.tag("x-message-deduplication") != "t":
        raise _exchange_invalid(
            "x-message-deduplication",
            name,
            vhost,
            f"expected true or false, got {arguments['x-message-deduplication']!r}",
        )
    for key in ("x-cache-size", "x-cache-ttl"):
        if key in arguments:
            tag, value = arguments.typed(key)
            if tag not in INT_TAGS or isinstance(value, bool) or value <= 0:
                raise _exchange_invalid(
                    key, name, vhost, f"expected a positive integer, got {value!r}"
                )
