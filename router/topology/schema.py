"""Validation that teaches: topology documents in, a ``Topology`` and every problem out.

Each problem names the file, line and column, the key path (``queues[2].message_ttl``), what was
found, what is allowed and, where one is close, what was probably meant. All problems of a run are
collected; nothing stops at the first. Friendly keys (``message_ttl: 30s``, ``max_length_bytes:
64MiB``) become RabbitMQ's x-arguments here, so everything after this module speaks RabbitMQ.
"""

from __future__ import annotations

import base64
import binascii
import difflib
import math
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from router.amqp.errors import AMQPError
from router.amqp.tables import FieldArray, FieldTable
from router.broker.arguments import validate_exchange_arguments, validate_queue_arguments
from router.broker.exchanges import EXCHANGE_TYPES
from router.broker.policies import IGNORED_KEYS as IGNORED_POLICY_KEYS
from router.broker.policies import definition_problem
from router.topology.model import (
    DEFAULT_VHOST,
    BindingSpec,
    ExchangeSpec,
    PermissionSpec,
    PolicySpec,
    QueueSpec,
    Topology,
    UserSpec,
    VHostSpec,
)
from router.topology.source import Document, Located, LocatedList, SourceError, Where

# exchanges every vhost has (RabbitMQ's, and router's), which files may bind and refer to
PREDECLARED_EXCHANGES = {
    "": "direct",
    "amq.direct": "direct",
    "amq.fanout": "fanout",
    "amq.topic": "topic",
    "amq.headers": "headers",
    "amq.match": "headers",
}
SECTIONS = ("vhosts", "users", "permissions", "policies", "exchanges", "queues", "bindings")
HASHING_ALGORITHM = "rabbit_password_hashing_sha256"
APPLY_TO = ("queues", "exchanges", "all")
OVERFLOW = ("drop-head", "reject-publish", "reject-publish-dlx")
QUEUE_MODES = ("default", "lazy")
QUEUE_TYPES = ("classic", "quorum")
NAME_LIMIT = 255  # bytes of UTF-8: AMQP's shortstr


@dataclass(frozen=True)
class Problem:
    """One thing wrong (or, as a warning, probably wrong) in the files."""

    where: Where
    path: str
    message: str
    allowed: str = ""
    hint: str = ""
    warning: bool = False

    def __str__(self) -> str:
        kind = "warning: " if self.warning else ""
        text = (
            f"{self.where}: {kind}{self.path}: {self.message}"
            if self.path
            else (f"{self.where}: {kind}{self.message}")
        )
        if self.allowed:
            text += f"\n    allowed: {self.allowed}"
        if self.hint:
            text += f"\n    hint: {self.hint}"
        return text


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """ " — did you mean 'x'?" for the closest choice, or ""."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" — did you mean '{close[0]}'?" if close else ""


# --- values with units -----------------------------------------------------------------------------

_DURATION_UNITS = {"ms": 1, "s": 1000, "m": 60_000, "min": 60_000, "h": 3_600_000, "d": 86_400_000}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|min|s|m|h|d)", re.IGNORECASE)
_SIZE_UNITS = {
    "b": 1,
    "kb": 1000,
    "mb": 1000**2,
    "gb": 1000**3,
    "tb": 1000**4,
    "kib": 1024,
    "mib": 1024**2,
    "gib": 1024**3,
    "tib": 1024**4,
}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]i?b|b)?\s*$", re.IGNORECASE)
DURATION_FORM = "a duration such as 500ms, 30s, 5m, 1h30m, 7d, or an integer of milliseconds"
SIZE_FORM = "a size such as 512KiB, 64MiB, 1GB, or an integer of bytes"


def parse_duration(value: Any) -> int | None:
    """Milliseconds for ``30s`` / ``1h30m`` / ``500ms`` / an integer (None: not a duration)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if not isinstance(value, str):
        return None
    text = value.strip()
    if text.isdigit():
        return int(text)
    total = 0.0
    position = 0
    for match in _DURATION.finditer(text):
        if text[position : match.start()].strip():
            return None
        total += float(match.group(1)) * _DURATION_UNITS[match.group(2).lower()]
        position = match.end()
    if position == 0 or text[position:].strip() or not total.is_integer():
        return None  # 0.5ms: AMQP durations are whole milliseconds
    return int(total)


def parse_size(value: Any) -> int | None:
    """Bytes for ``64MiB`` / ``1GB`` / ``512`` (None: not a size)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if not isinstance(value, str):
        return None
    match = _SIZE.match(value)
    if not match:
        return None
    unit = (match.group(2) or "b").lower()
    size = float(match.group(1)) * _SIZE_UNITS[unit]
    return int(size) if size.is_integer() else None  # 0.3B: sizes are whole bytes


def format_duration(ms: int) -> str | int:
    """The shortest exact friendly text for ``ms`` milliseconds (as export writes it)."""
    if ms <= 0:
        return ms
    for unit, size in (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000)):
        if ms % size == 0:
            return f"{ms // size}{unit}"
    return f"{ms}ms"


def format_size(size: int) -> str | int:
    if size <= 0:
        return size
    for unit, factor in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if size % factor == 0:
            return f"{size // factor}{unit}"
    return size


# --- what each friendly key means ----------------------------------------------------------------


@dataclass(frozen=True)
class Field:
    """A friendly key: the RabbitMQ argument it sets and how its value is read."""

    argument: str
    kind: str  # duration, positive_duration, size, count, priority, bool, text, exchange, enum, backoff
    choices: tuple[str, ...] = ()
    help: str = ""


QUEUE_FIELDS = {
    "message_ttl": Field("x-message-ttl", "duration", help="how long a message may wait"),
    "expires": Field("x-expires", "positive_duration", help="delete the queue after idle"),
    "max_length": Field("x-max-length", "count", help="most ready messages"),
    "max_length_bytes": Field("x-max-length-bytes", "size", help="most ready body bytes"),
    "overflow": Field("x-overflow", "enum", OVERFLOW, help="what happens when full"),
    "dead_letter_exchange": Field("x-dead-letter-exchange", "exchange"),
    "dead_letter_routing_key": Field("x-dead-letter-routing-key", "text"),
    "max_priority": Field("x-max-priority", "priority", help="priority levels, 1 to 255"),
    "delivery_limit": Field("x-delivery-limit", "count"),
    "retry_backoff": Field("x-retry-backoff", "backoff"),
    "single_active_consumer": Field("x-single-active-consumer", "bool"),
    "consumer_timeout": Field("x-consumer-timeout", "positive_duration"),
    "deduplication": Field("x-message-deduplication", "bool"),
    "queue_mode": Field("x-queue-mode", "enum", QUEUE_MODES),
    "queue_type": Field("x-queue-type", "enum", QUEUE_TYPES),
}
EXCHANGE_FIELDS = {
    "alternate_exchange": Field("alternate-exchange", "exchange"),
    "delayed_type": Field("x-delayed-type", "enum", ("direct", "fanout", "topic", "headers")),
    "deduplication": Field("x-message-deduplication", "bool"),
}
# policy definition keys (RabbitMQ's names); the friendly form swaps '-' for '_'
POLICY_FIELDS = {
    "message-ttl": Field("message-ttl", "duration"),
    "expires": Field("expires", "positive_duration"),
    "max-length": Field("max-length", "count"),
    "max-length-bytes": Field("max-length-bytes", "size"),
    "overflow": Field("overflow", "enum", OVERFLOW),
    "dead-letter-exchange": Field("dead-letter-exchange", "exchange"),
    "dead-letter-routing-key": Field("dead-letter-routing-key", "text"),
    "delivery-limit": Field("delivery-limit", "count"),
    "queue-mode": Field("queue-mode", "enum", QUEUE_MODES),
    "alternate-exchange": Field("alternate-exchange", "exchange"),
    "consumer-timeout": Field("consumer-timeout", "positive_duration"),
    "retry-backoff": Field("retry-backoff", "backoff"),
}
# RabbitMQ policy keys for clustering and plugins: kept and exported, no effect on one node (the
# broker's own list, so the two cannot drift); queue-version is checked by the broker
POLICY_PASSTHROUGH = IGNORED_POLICY_KEYS | {"queue-version"}
# x-arguments with the kind their raw value must have (the friendly keys' targets, and a few more)
RAW_QUEUE_ARGUMENTS = {field.argument: field for field in QUEUE_FIELDS.values()}
RAW_EXCHANGE_ARGUMENTS = {field.argument: field for field in EXCHANGE_FIELDS.values()}
KNOWN_X_ARGUMENTS = frozenset(
    {
        *RAW_QUEUE_ARGUMENTS,
        *RAW_EXCHANGE_ARGUMENTS,
        "x-cache-size",
        "x-cache-ttl",
        "x-queue-version",
        "x-queue-master-locator",
        "x-queue-leader-locator",
        "x-quorum-initial-group-size",
        "x-max-in-memory-length",
        "x-max-in-memory-bytes",
        "x-dead-letter-strategy",
        "x-max-age",
        "x-stream-max-segment-size-bytes",
        "x-single-active-consumer",
    }
)

EXCHANGE_KEYS = (
    "name",
    "vhost",
    "type",
    "durable",
    "auto_delete",
    "internal",
    "arguments",
    *EXCHANGE_FIELDS,
)
QUEUE_KEYS = ("name", "vhost", "durable", "auto_delete", "arguments", "bindings", *QUEUE_FIELDS)
BINDING_KEYS = (
    "vhost",
    "exchange",
    "source",
    "queue",
    "destination_exchange",
    "destination",
    "destination_type",
    "routing_key",
    "routing_keys",
    "arguments",
)
QUEUE_BINDING_KEYS = ("exchange", "routing_key", "routing_keys", "arguments")
USER_KEYS = ("name", "password_hash", "hashing_algorithm", "tags")
PERMISSION_KEYS = ("user", "vhost", "configure", "write", "read")
POLICY_KEYS = ("name", "vhost", "pattern", "apply_to", "priority", "definition")
VHOST_KEYS = ("name",)


def to_field_table(value: dict[str, Any]) -> FieldTable:
    """JSON-like arguments as an AMQP field table (to reuse the broker's own checks)."""

    def convert(item: Any) -> Any:
        if isinstance(item, dict):
            return FieldTable({str(k): convert(v) for k, v in item.items()})
        if isinstance(item, list):
            return FieldArray([convert(v) for v in item])
        return item

    table = convert(value)
    assert isinstance(table, FieldTable)
    return table


# --- the reader ----------------------------------------------------------------------------------


class Reader:
    """Builds a Topology from documents, collecting problems as it goes."""

    def __init__(self) -> None:
        self.problems: list[Problem] = []
        self.topology = Topology()
        # what mentions an exchange by name: (vhost, name, where, path, what)
        self._exchange_refs: list[tuple[str, str, Where, str, str]] = []
        self._user_refs: list[tuple[str, Where, str]] = []
        self._vhost_refs: list[tuple[str, Where, str]] = []
        # binding destinations: (vhost, name, "queue" | "exchange", where, path)
        self._binding_destinations: list[tuple[str, str, str, Where, str]] = []
        # ("exchange" | "queue" | "user", vhost, name) declared, even with problems of their own,
        # and where: a reference to one is not "declared nowhere" (its own problems say what is
        # wrong), and a second declaration is a duplicate even when the first has problems
        self._named: dict[tuple[str, str, str], Where] = {}

    # --- reporting ---

    def problem(
        self,
        where: Where,
        path: str,
        message: str,
        allowed: str = "",
        hint: str = "",
        *,
        warning: bool = False,
    ) -> None:
        self.problems.append(Problem(where, path, message, allowed, hint, warning))

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if not p.warning]

    # --- documents ---

    def read(self, documents: list[Document], source_errors: list[SourceError]) -> Topology:
        for error in source_errors:
            self.problem(error.where, "", error.message)
        for document in documents:
            self._document(document)
        self._check_references()
        return self.topology

    def _document(self, document: Document) -> None:
        value = document.value
        if not isinstance(value, Located):
            where = getattr(value, "where", Where(document.file, 1, 1))
            self.problem(
                where,
                "",
                f"a topology file holds a mapping of sections, found {_kind(value)}",
                allowed=", ".join(SECTIONS),
                hint="start the file with e.g. 'queues:' followed by a list of queues",
            )
            return
        readers: dict[str, Callable[[Located, str], None]] = {
            "vhosts": self._vhost,
            "users": self._user,
            "permissions": self._permission,
            "policies": self._policy,
            "exchanges": self._exchange,
            "queues": self._queue,
            "bindings": self._binding,
        }
        for key, items in value.items():
            where = value.key_where[key]
            if key == "version":
                if items != 1:
                    self.problem(value.value_where[key], "version", f"found {items!r}", allowed="1")
                continue
            if key.startswith("x-") or key.startswith("."):
                continue  # a place for anchors: x-defaults: &defaults {...}
            reader = readers.get(key)
            if reader is None:
                self.problem(
                    where,
                    key,
                    f"unknown section '{key}'{did_you_mean(key, SECTIONS)}",
                    allowed=", ".join(SECTIONS) + " (and x-… keys for anchors)",
                )
                continue
            if items is None:
                continue
            if not isinstance(items, LocatedList):
                self.problem(
                    value.value_where[key],
                    key,
                    f"'{key}' must be a list (one '- ' item per entry), found {_kind(items)}",
                    hint=f"write '{key}:' then items starting with '- name: …'"
                    if key != "bindings" and key != "permissions"
                    else f"write '{key}:' then items starting with '- '",
                )
                continue
            for index, item in enumerate(items):
                path = f"{key}[{index}]"
                item_where = items.item_where[index]
                if key == "vhosts" and isinstance(item, str):
                    self._add_vhost(item, item_where, path)
                    continue
                if not isinstance(item, Located):
                    self.problem(
                        item_where,
                        path,
                        f"each entry of '{key}' must be a mapping of keys, found {_kind(item)}",
                    )
                    continue
                reader(item, path)

    # --- field helpers ---

    def _keys(self, item: Located, path: str, allowed: Iterable[str], what: str) -> None:
        allowed = tuple(allowed)
        for key in item:
            if key not in allowed:
                hint = ""
                if key == "exclusive" and what == "queue":
                    hint = (
                        "exclusive queues belong to one connection and are declared by the "
                        "application that uses them; remove the key"
                    )
                elif key == "password":
                    hint = (
                        "topology files never hold clear-text passwords: run "
                        "'router topology hash-password' and write the result as password_hash"
                    )
                elif key.startswith("x-") and what in ("queue", "exchange"):
                    hint = f"x-arguments go under 'arguments:' (arguments: {{{key}: …}})"
                elif "-" in key and key.replace("-", "_") in allowed:
                    hint = f"keys use underscores: '{key.replace('-', '_')}'"
                self.problem(
                    item.key_where[key],
                    f"{path}.{key}",
                    f"unknown key '{key}' for {_a(what)}{did_you_mean(key, allowed)}",
                    allowed=", ".join(allowed),
                    hint=hint,
                )

    def _required_text(self, item: Located, key: str, path: str, what: str) -> str | None:
        if key not in item:
            self.problem(item.where, path, f"{_a(what)} needs '{key}'", hint=f"add '{key}: …'")
            return None
        return self._text(item, key, path)

    def _text(self, item: Located, key: str, path: str, default: str | None = None) -> str | None:
        if key not in item:
            return default
        value = item[key]
        if isinstance(value, bool) or value is None or isinstance(value, (dict, list)):
            self.problem(
                item.value_where[key],
                f"{path}.{key}",
                f"expected text, found {_kind(value)}",
                hint="quote it if YAML reads it as something else: 'on', 'yes', '~' and "
                "numbers need quotes to stay text",
            )
            return None
        if isinstance(value, (int, float)):
            return item.value_text.get(key, str(value))  # `010` stays "010", not "8"
        return str(value)

    def _name(self, item: Located, key: str, path: str, what: str) -> str | None:
        name = self._required_text(item, key, path, what)
        if name is None:
            return None
        if len(name.encode("utf-8")) > NAME_LIMIT:
            self.problem(
                item.value_where[key],
                f"{path}.{key}",
                f"{what} name is {len(name.encode())} bytes long",
                allowed=f"at most {NAME_LIMIT} bytes of UTF-8",
            )
            return None
        return name

    def _bool(self, item: Located, key: str, path: str, default: bool) -> bool:
        if key not in item:
            return default
        value = item[key]
        if not isinstance(value, bool):
            self.problem(
                item.value_where[key],
                f"{path}.{key}",
                f"expected true or false, found {value!r}",
                allowed="true, false",
            )
            return default
        return value

    def _vhost_of(self, item: Located, path: str) -> str:
        vhost = self._text(item, "vhost", path, DEFAULT_VHOST)
        vhost = DEFAULT_VHOST if vhost is None else vhost
        if "vhost" in item:
            self._vhost_refs.append((vhost, item.value_where["vhost"], f"{path}.vhost"))
        return vhost

    def _value(self, field: Field, value: Any, where: Where, path: str) -> Any:
        """A friendly value as its argument's value (None after reporting a problem)."""
        kind = field.kind
        if kind in ("duration", "positive_duration"):
            ms = parse_duration(value)
            if ms is None or ms < 0 or (kind == "positive_duration" and ms == 0):
                low = "more than 0" if kind == "positive_duration" else "0 or more"
                self.problem(where, path, f"found {value!r}", allowed=f"{DURATION_FORM}, {low}")
                return None
            return ms
        if kind == "size":
            size = parse_size(value)
            if size is None or size < 0:
                self.problem(where, path, f"found {value!r}", allowed=SIZE_FORM)
                return None
            return size
        if kind in ("count", "priority"):
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                self.problem(where, path, f"found {value!r}", allowed="an integer, 0 or more")
                return None
            if kind == "priority" and not 1 <= value <= 255:
                self.problem(
                    where,
                    path,
                    f"found {value}",
                    allowed="an integer from 1 to 255",
                    hint="10 levels or fewer is usual: every level costs memory per queue",
                )
                return None
            return value
        if kind == "bool":
            if not isinstance(value, bool):
                self.problem(where, path, f"found {value!r}", allowed="true, false")
                return None
            return value
        if kind in ("text", "exchange"):
            if not isinstance(value, str):
                self.problem(where, path, f"expected text, found {_kind(value)}")
                return None
            return value
        if kind == "enum":
            if value not in field.choices:
                self.problem(
                    where,
                    path,
                    f"found {value!r}{did_you_mean(str(value), field.choices)}",
                    allowed=", ".join(field.choices),
                )
                return None
            return value
        if kind == "backoff":
            return self._backoff(value, where, path)
        raise AssertionError(kind)

    def _backoff(self, value: Any, where: Where, path: str) -> dict[str, Any] | None:
        if not isinstance(value, Located):
            self.problem(
                where,
                path,
                f"expected a mapping, found {_kind(value)}",
                allowed="{initial: 1s, multiplier: 2, max: 5m, jitter: 0.1}",
            )
            return None
        allowed = ("initial", "multiplier", "max", "jitter")
        self._keys(value, path, allowed, "retry_backoff")
        result: dict[str, Any] = {}
        ok = True
        for key in ("initial", "max"):
            if key in value:
                ms = parse_duration(value[key])
                if ms is None or ms <= 0:
                    self.problem(
                        value.value_where[key],
                        f"{path}.{key}",
                        f"found {value[key]!r}",
                        allowed=f"{DURATION_FORM}, more than 0",
                    )
                    ok = False
                else:
                    result[key] = ms
        if "initial" not in value:
            self.problem(value.where, path, "retry_backoff needs 'initial'", hint="initial: 1s")
            ok = False
        if "multiplier" in value:
            multiplier = value["multiplier"]
            if (
                isinstance(multiplier, bool)
                or not isinstance(multiplier, (int, float))
                or (multiplier < 1)
            ):
                self.problem(
                    value.value_where["multiplier"],
                    f"{path}.multiplier",
                    f"found {multiplier!r}",
                    allowed="a number, 1 or more (2 doubles the delay each time)",
                )
                ok = False
            else:
                result["multiplier"] = multiplier
        if "jitter" in value:
            jitter = value["jitter"]
            if (
                isinstance(jitter, bool)
                or not isinstance(jitter, (int, float))
                or not (0 <= jitter <= 1)
            ):
                self.problem(
                    value.value_where["jitter"],
                    f"{path}.jitter",
                    f"found {jitter!r}",
                    allowed="a fraction from 0 to 1 (0.1: up to 10% shorter at random)",
                )
                ok = False
            else:
                result["jitter"] = jitter
        if ok and "max" in result and result["max"] < result.get("initial", 0):
            self.problem(
                value.value_where["max"],
                f"{path}.max",
                f"max ({value['max']}) is shorter than initial ({value['initial']})",
                hint="max caps the delay: make it at least initial",
            )
            ok = False
        return result if ok else None

    def _arguments(
        self,
        item: Located,
        path: str,
        fields: dict[str, Field],
        raw_fields: dict[str, Field],
        what: str,
    ) -> dict[str, Any] | None:
        """The item's x-arguments: friendly keys converted, then 'arguments' as written."""
        arguments: dict[str, Any] = {}
        ok = True
        set_by: dict[str, str] = {}
        for key, field in fields.items():
            if key not in item:
                continue
            value = self._value(field, item[key], item.value_where[key], f"{path}.{key}")
            if value is None:
                ok = False
                continue
            arguments[field.argument] = value
            set_by[field.argument] = key
            if field.kind == "exchange":
                self._exchange_refs.append(
                    (
                        self._vhost_of_silent(item),
                        value,
                        item.value_where[key],
                        f"{path}.{key}",
                        _role(key),
                    )
                )
        raw = item.get("arguments")
        if raw is None:
            return arguments if ok else None
        if not isinstance(raw, Located):
            self.problem(
                item.value_where["arguments"],
                f"{path}.arguments",
                f"expected a mapping of arguments, found {_kind(raw)}",
            )
            return None
        known = [*raw_fields, *KNOWN_X_ARGUMENTS]
        for key, value in raw.items():
            where = raw.value_where[key]
            key_path = f"{path}.arguments.{key}"
            if key in set_by:
                self.problem(
                    raw.key_where[key],
                    key_path,
                    f"'{key}' is also set by '{set_by[key]}'",
                    hint="keep one of the two",
                )
                ok = False
                continue
            raw_field = raw_fields.get(key)
            if raw_field is not None:
                if raw_field.kind in ("duration", "positive_duration", "size") and not (
                    isinstance(value, int) and not isinstance(value, bool)
                ):
                    friendly = next(k for k, f in fields.items() if f.argument == key)
                    self.problem(
                        where,
                        key_path,
                        f"found {value!r}; raw x-arguments take plain integers "
                        f"({'milliseconds' if 'duration' in raw_field.kind else 'bytes'})",
                        hint=f"write '{friendly}: {value}' beside 'arguments' to use units",
                    )
                    ok = False
                    continue
                converted = self._value(raw_field, value, where, key_path)
                if converted is None:
                    ok = False
                    continue
                if raw_field.kind == "exchange":
                    self._exchange_refs.append(
                        (self._vhost_of_silent(item), converted, where, key_path, _role(key))
                    )
            elif key not in KNOWN_X_ARGUMENTS:
                close = did_you_mean(key, known)
                if close:
                    self.problem(
                        raw.key_where[key],
                        key_path,
                        f"unknown argument '{key}'{close}",
                        hint="RabbitMQ ignores unknown arguments, so a misspelt one silently "
                        "does nothing; fix the name, or quote a different name on purpose",
                        warning=True,
                    )
            arguments[key] = _plain(value)
        if not ok:
            return None
        try:
            table = to_field_table(arguments)
            name = str(item.get("name", ""))
            vhost = self._vhost_of_silent(item)
            if what == "queue":
                validate_queue_arguments(table, name, vhost)
            else:
                validate_exchange_arguments(table, name, vhost)
        except AMQPError as error:
            self.problem(item.where, f"{path}.arguments", error.text)
            return None
        return arguments

    def _vhost_of_silent(self, item: Located) -> str:
        vhost = item.get("vhost", DEFAULT_VHOST)
        return vhost if isinstance(vhost, str) else DEFAULT_VHOST

    def _first(self, table: dict[Any, Any], key: Any, where: Where, path: str, what: str) -> bool:
        """True if ``key`` is new; else report the duplicate and where the first one is."""
        first = table.get(key)
        if first is None:
            return True
        self.problem(
            where,
            path,
            f"{what} is declared twice; the first is at {first.where}",
            hint="keep one declaration (files and directories are merged into one topology)",
        )
        return False

    # --- sections ---

    def _add_vhost(self, name: str, where: Where, path: str) -> None:
        if not name:
            self.problem(where, path, "a vhost name cannot be empty", hint="'/' is the default")
            return
        if self._first(self.topology.vhosts, name, where, path, f"vhost '{name}'"):
            self.topology.vhosts[name] = VHostSpec(name, where)

    def _vhost(self, item: Located, path: str) -> None:
        self._keys(item, path, VHOST_KEYS, "vhost")
        name = self._name(item, "name", path, "vhost")
        if name is not None:
            self._add_vhost(name, item.where, path)

    def _user(self, item: Located, path: str) -> None:
        self._keys(item, path, USER_KEYS, "user")
        name = self._name(item, "name", path, "user")
        duplicate = name is not None and not self._declare(
            ("user", "", name), item.where, path, f"user '{name}'"
        )
        password_hash = self._required_text(item, "password_hash", path, "user")
        if "password_hash" not in item and "password" in item:
            self.problems.pop()  # the unknown-key problem for 'password' says what to do
        algorithm = self._text(item, "hashing_algorithm", path, HASHING_ALGORITHM)
        if algorithm is not None and algorithm != HASHING_ALGORITHM:
            self.problem(
                item.value_where["hashing_algorithm"],
                f"{path}.hashing_algorithm",
                f"found {algorithm!r}",
                allowed=HASHING_ALGORITHM,
                hint="re-hash the password with 'router topology hash-password'",
            )
        if password_hash is not None and not _valid_hash(password_hash):
            self.problem(
                item.value_where["password_hash"],
                f"{path}.password_hash",
                "not a password hash: expected base64 of a 4-byte salt and a SHA-256 digest "
                "(48 characters)",
                hint="make one with 'router topology hash-password', or copy it from "
                "RabbitMQ's definitions export",
            )
            password_hash = None
        tags = self._tags(item, path)
        if name is None or password_hash is None or tags is None or duplicate:
            return
        self.topology.users[name] = UserSpec(name, password_hash, tags, item.where)

    def _tags(self, item: Located, path: str) -> tuple[str, ...] | None:
        if "tags" not in item:
            return ()
        value = item["tags"]
        if isinstance(value, str):
            return tuple(t.strip() for t in value.split(",") if t.strip())
        if isinstance(value, list) and all(isinstance(t, str) for t in value):
            return tuple(value)
        self.problem(
            item.value_where["tags"],
            f"{path}.tags",
            f"found {value!r}",
            allowed="a list of tags, e.g. [administrator] or [monitoring, management]",
        )
        return None

    def _permission(self, item: Located, path: str) -> None:
        self._keys(item, path, PERMISSION_KEYS, "permission")
        user = self._required_text(item, "user", path, "permission")
        vhost = self._vhost_of(item, path)
        regexes: dict[str, str] = {}
        for key in ("configure", "write", "read"):
            if key not in item:
                self.problem(
                    item.where,
                    path,
                    f"a permission needs '{key}'",
                    hint=f"{key}: '.*' allows every name, '^$' allows none",
                )
                continue
            value = self._text(item, key, path)
            if value is None:
                continue
            if self._regex(value, item.value_where[key], f"{path}.{key}"):
                regexes[key] = value
        if user is None or len(regexes) != 3:
            return
        self._user_refs.append((user, item.value_where["user"], f"{path}.user"))
        ident = (user, vhost)
        if self._first(
            self.topology.permissions,
            ident,
            item.where,
            path,
            f"permission of user '{user}' in vhost '{vhost}'",
        ):
            self.topology.permissions[ident] = PermissionSpec(
                user, vhost, regexes["configure"], regexes["write"], regexes["read"], item.where
            )

    def _regex(self, pattern: str, where: Where, path: str) -> bool:
        try:
            re.compile(pattern)
        except re.error as error:
            self.problem(
                where,
                path,
                f"the regular expression {pattern!r} does not compile: {error}",
                hint="patterns are regular expressions: escape dots as '\\.', and quote the "
                "value in single quotes so YAML keeps backslashes",
            )
            return False
        return True

    def _policy(self, item: Located, path: str) -> None:
        self._keys(item, path, POLICY_KEYS, "policy")
        name = self._name(item, "name", path, "policy")
        vhost = self._vhost_of(item, path)
        pattern = self._required_text(item, "pattern", path, "policy")
        if pattern is not None and not self._regex(
            pattern, item.value_where["pattern"], f"{path}.pattern"
        ):
            pattern = None
        apply_to = self._text(item, "apply_to", path, "all")
        if apply_to is not None and apply_to not in APPLY_TO:
            self.problem(
                item.value_where["apply_to"],
                f"{path}.apply_to",
                f"found {apply_to!r}{did_you_mean(apply_to, APPLY_TO)}",
                allowed=", ".join(APPLY_TO),
            )
            apply_to = None
        priority: int | None = 0
        if "priority" in item:
            priority = item["priority"]
            if isinstance(priority, bool) or not isinstance(priority, int):
                self.problem(
                    item.value_where["priority"],
                    f"{path}.priority",
                    f"found {priority!r}",
                    allowed="an integer; the highest-priority matching policy applies",
                )
                priority = None
        definition = self._definition(item, path, vhost, apply_to or "all")
        if None in (name, pattern, apply_to, priority, definition):
            return
        assert name is not None and pattern is not None and apply_to is not None
        assert isinstance(priority, int) and definition is not None
        if self._first(
            self.topology.policies,
            (vhost, name),
            item.where,
            path,
            f"policy '{name}' in vhost '{vhost}'",
        ):
            self.topology.policies[(vhost, name)] = PolicySpec(
                vhost, name, pattern, apply_to, priority, definition, item.where
            )

    def _definition(
        self, item: Located, path: str, vhost: str, apply_to: str
    ) -> dict[str, Any] | None:
        if "definition" not in item:
            self.problem(
                item.where,
                path,
                "a policy needs 'definition'",
                hint="definition: {message_ttl: 30s, dead_letter_exchange: dlx}",
            )
            return None
        raw = item["definition"]
        where = item.value_where["definition"]
        if not isinstance(raw, Located) or not raw:
            self.problem(
                where,
                f"{path}.definition",
                f"expected a mapping of policy keys, found {_kind(raw)}",
                allowed=", ".join(k.replace("-", "_") for k in POLICY_FIELDS),
            )
            return None
        definition: dict[str, Any] = {}
        ok = True
        names = [*POLICY_FIELDS, *(k.replace("-", "_") for k in POLICY_FIELDS)]
        for key, value in raw.items():
            key_path = f"{path}.definition.{key}"
            rabbit = key.replace("_", "-")
            if rabbit in definition:
                self.problem(raw.key_where[key], key_path, f"'{key}' is set twice (as - and as _)")
                ok = False
                continue
            field = POLICY_FIELDS.get(rabbit)
            if field is None:
                if rabbit in POLICY_PASSTHROUGH:
                    problem = definition_problem(rabbit, _plain(value))
                    if problem is not None:
                        self.problem(raw.value_where[key], key_path, problem)
                        ok = False
                        continue
                    definition[rabbit] = _plain(value)
                    continue
                hint = ""
                if rabbit == "max-priority":
                    hint = (
                        "RabbitMQ does not set priorities by policy: use max_priority on the "
                        "queue itself"
                    )
                self.problem(
                    raw.key_where[key],
                    key_path,
                    f"unknown policy key '{key}'{did_you_mean(key, names)}",
                    allowed=", ".join(k.replace("-", "_") for k in POLICY_FIELDS),
                    hint=hint,
                )
                ok = False
                continue
            converted = self._value(field, value, raw.value_where[key], key_path)
            if converted is None:
                ok = False
                continue
            problem = definition_problem(rabbit, converted)  # the broker's own check
            if problem is not None:
                self.problem(raw.value_where[key], key_path, problem)
                ok = False
                continue
            definition[rabbit] = converted
            if field.kind == "exchange":
                self._exchange_refs.append(
                    (vhost, converted, raw.value_where[key], key_path, _role(rabbit))
                )
        return definition if ok else None

    def _exchange(self, item: Located, path: str) -> None:
        self._keys(item, path, EXCHANGE_KEYS, "exchange")
        name = self._name(item, "name", path, "exchange")
        vhost = self._vhost_of(item, path)
        kind = self._text(item, "type", path, "direct")
        if kind is not None and kind not in EXCHANGE_TYPES:
            self.problem(
                item.value_where["type"],
                f"{path}.type",
                f"unknown exchange type '{kind}'{did_you_mean(kind, EXCHANGE_TYPES)}",
                allowed=", ".join(EXCHANGE_TYPES),
            )
            kind = None
        if name is not None and (name == "" or name.startswith("amq.")):
            self.problem(
                item.value_where["name"],
                f"{path}.name",
                f"the exchange name {name!r} is reserved: '' is the default exchange and "
                "amq.* names belong to the broker",
                hint="pick another name; the amq.* exchanges already exist and can be "
                "bound to as they are",
            )
            name = None
        duplicate = name is not None and not self._declare(
            ("exchange", vhost, name), item.where, path, f"exchange '{name}' in vhost '{vhost}'"
        )
        durable = self._bool(item, "durable", path, True)
        auto_delete = self._bool(item, "auto_delete", path, False)
        internal = self._bool(item, "internal", path, False)
        arguments = self._arguments(item, path, EXCHANGE_FIELDS, RAW_EXCHANGE_ARGUMENTS, "exchange")
        if (
            kind == "x-delayed-message"
            and arguments is not None
            and ("x-delayed-type" not in arguments)
        ):
            self.problem(
                item.where,
                path,
                "an x-delayed-message exchange needs 'delayed_type', the type it routes as",
                allowed="direct, fanout, topic, headers",
                hint="delayed_type: direct",
            )
            return
        if kind != "x-delayed-message" and arguments is not None and "x-delayed-type" in arguments:
            self.problem(
                item.where,
                path,
                f"'delayed_type' is only for x-delayed-message exchanges, not {kind}",
                hint="type: x-delayed-message",
            )
            return
        if name is None or kind is None or arguments is None or duplicate:
            return
        self.topology.exchanges[(vhost, name)] = ExchangeSpec(
            vhost, name, kind, durable, auto_delete, internal, arguments, item.where
        )

    def _queue(self, item: Located, path: str) -> None:
        self._keys(item, path, QUEUE_KEYS, "queue")
        name = self._name(item, "name", path, "queue")
        vhost = self._vhost_of(item, path)
        if name is not None and (name == "" or name.startswith("amq.")):
            self.problem(
                item.value_where["name"],
                f"{path}.name",
                f"the queue name {name!r} is reserved: '' asks the broker for a name and amq.* "
                "names belong to the broker",
                hint="give the queue a name of its own",
            )
            name = None
        duplicate = name is not None and not self._declare(
            ("queue", vhost, name), item.where, path, f"queue '{name}' in vhost '{vhost}'"
        )
        durable = self._bool(item, "durable", path, True)
        auto_delete = self._bool(item, "auto_delete", path, False)
        arguments = self._arguments(item, path, QUEUE_FIELDS, RAW_QUEUE_ARGUMENTS, "queue")
        if name is not None and "bindings" in item:
            self._queue_bindings(item, path, vhost, name)
        if name is None or arguments is None or duplicate:
            return
        self.topology.queues[(vhost, name)] = QueueSpec(
            vhost, name, durable, auto_delete, arguments, item.where
        )

    def _queue_bindings(self, item: Located, path: str, vhost: str, queue: str) -> None:
        bindings = item["bindings"]
        where = item.value_where["bindings"]
        if not isinstance(bindings, LocatedList):
            self.problem(
                where,
                f"{path}.bindings",
                f"expected a list of bindings, found {_kind(bindings)}",
                hint="bindings: [{exchange: orders, routing_key: 'order.*'}]",
            )
            return
        for index, binding in enumerate(bindings):
            binding_path = f"{path}.bindings[{index}]"
            if not isinstance(binding, Located):
                self.problem(
                    bindings.item_where[index],
                    binding_path,
                    f"each binding must be a mapping, found {_kind(binding)}",
                    hint="- {exchange: orders, routing_key: 'order.*'}",
                )
                continue
            self._keys(binding, binding_path, QUEUE_BINDING_KEYS, "queue binding")
            self._add_bindings(binding, binding_path, vhost, queue, "queue")

    def _binding(self, item: Located, path: str) -> None:
        self._keys(item, path, BINDING_KEYS, "binding")
        vhost = self._vhost_of(item, path)
        destinations = [k for k in ("queue", "destination_exchange", "destination") if k in item]
        if len(destinations) != 1:
            self.problem(
                item.where,
                path,
                "a binding needs exactly one destination: 'queue' or 'destination_exchange'"
                + (f" (found {', '.join(destinations)})" if destinations else ""),
                hint="- {exchange: orders, queue: billing, routing_key: 'order.*'}",
            )
            return
        key = destinations[0]
        destination = self._text(item, key, path)
        kind = "exchange" if key == "destination_exchange" else "queue"
        if key == "destination":
            raw_type = self._text(item, "destination_type", path, "queue")
            if raw_type not in ("queue", "exchange"):
                self.problem(
                    item.value_where.get("destination_type", item.where),
                    f"{path}.destination_type",
                    f"found {raw_type!r}",
                    allowed="queue, exchange",
                )
                return
            kind = raw_type
        elif "destination_type" in item:
            self.problem(
                item.key_where["destination_type"],
                f"{path}.destination_type",
                f"'destination_type' goes with 'destination', not with '{key}'",
                hint="remove it: 'queue' and 'destination_exchange' already say the type",
            )
        if destination is None:
            return
        self._add_bindings(item, path, vhost, destination, kind)

    def _add_bindings(
        self, item: Located, path: str, vhost: str, destination: str, kind: str
    ) -> None:
        sources = [k for k in ("exchange", "source") if k in item]
        if len(sources) != 1:
            self.problem(
                item.where,
                path,
                "a binding needs its source exchange: 'exchange' (or 'source')"
                + (" — not both" if len(sources) > 1 else ""),
            )
            return
        source = self._text(item, sources[0], path)
        if "routing_key" in item and "routing_keys" in item:
            self.problem(
                item.key_where["routing_keys"],
                f"{path}.routing_keys",
                "use 'routing_key' or 'routing_keys', not both",
            )
            return
        keys: list[str] | None = [""]
        if "routing_key" in item:
            key = self._text(item, "routing_key", path)
            keys = None if key is None else [key]
        elif "routing_keys" in item:
            value = item["routing_keys"]
            if (
                not isinstance(value, list)
                or not value
                or not all(isinstance(k, str) for k in value)
            ):
                self.problem(
                    item.value_where["routing_keys"],
                    f"{path}.routing_keys",
                    f"found {value!r}",
                    allowed="a non-empty list of routing keys (quote keys like '*' and '#')",
                )
                keys = None
            else:
                keys = list(value)
        arguments: dict[str, Any] = {}
        if "arguments" in item:
            raw = item["arguments"]
            if not isinstance(raw, Located):
                self.problem(
                    item.value_where["arguments"],
                    f"{path}.arguments",
                    f"expected a mapping, found {_kind(raw)}",
                )
                return
            arguments = {k: _plain(v) for k, v in raw.items()}
            match = arguments.get("x-match")
            if match is not None and match not in ("all", "any", "all-with-x", "any-with-x"):
                self.problem(
                    raw.value_where["x-match"],
                    f"{path}.arguments.x-match",
                    f"found {match!r}{did_you_mean(str(match), ('all', 'any'))}",
                    allowed="all, any, all-with-x, any-with-x",
                )
                return
        if source is None or keys is None:
            return
        if source == "":
            self.problem(
                item.value_where[sources[0]],
                f"{path}.{sources[0]}",
                "the default exchange '' takes no bindings: every queue is already bound to it "
                "by its own name",
                hint="bind to a named exchange instead",
            )
            return
        where = item.value_where[sources[0]]
        self._exchange_refs.append((vhost, source, where, f"{path}.{sources[0]}", "source"))
        self._binding_destinations.append((vhost, destination, kind, item.where, path))
        for key in keys:
            binding = BindingSpec(vhost, source, destination, kind, key, arguments, item.where)
            if self._first(
                self.topology.bindings,
                binding.key,
                item.where,
                path,
                f"binding {source} -> {destination} ({key!r})",
            ):
                self.topology.bindings[binding.key] = binding

    # --- references ---

    def _check_references(self) -> None:
        topology = self.topology
        vhosts = set(topology.vhosts) | {DEFAULT_VHOST}
        for vhost, where, path in self._vhost_refs:
            if vhost not in vhosts:
                self.problem(
                    where,
                    path,
                    f"vhost '{vhost}' is declared nowhere{did_you_mean(vhost, vhosts)}",
                    hint=f"add it under 'vhosts:' (- name: {vhost})",
                )
        exchanges = set(topology.exchanges) | self._declared("exchange")
        for vhost, name, where, path, what in self._exchange_refs:
            if name in PREDECLARED_EXCHANGES or (vhost, name) in exchanges:
                continue
            declared = [n for v, n in exchanges if v == vhost]
            self.problem(
                where,
                path,
                f"{what} exchange '{name}' is declared nowhere in vhost '{vhost}'"
                f"{did_you_mean(name, declared)}",
                hint=f"declare it under 'exchanges:' (- name: {name}, type: …)",
            )
        queues = set(topology.queues) | self._declared("queue")
        for vhost, name, kind, where, path in self._binding_destinations:
            known = queues if kind == "queue" else exchanges
            if (vhost, name) in known or (kind == "exchange" and name in PREDECLARED_EXCHANGES):
                continue
            declared = [n for v, n in known if v == vhost]
            self.problem(
                where,
                path,
                f"destination {kind} '{name}' is declared nowhere in vhost '{vhost}'"
                f"{did_you_mean(name, declared)}",
                hint=f"declare it under '{kind}s:'",
            )
        users = set(topology.users) | {name for _, name in self._declared("user")}
        for user, where, path in self._user_refs:
            if user not in users:
                self.problem(
                    where,
                    path,
                    f"user '{user}' is not declared in these files{did_you_mean(user, users)}"
                    "; it must exist on the broker already",
                    hint=f"declare it under 'users:' to be sure (- name: {user}, password_hash: …)",
                    warning=True,
                )
        self._check_policy_overlap()

    def _declared(self, kind: str) -> set[tuple[str, str]]:
        return {(vhost, name) for k, vhost, name in self._named if k == kind}

    def _declare(self, key: tuple[str, str, str], where: Where, path: str, what: str) -> bool:
        """True if ``key`` is named for the first time; else report the duplicate and where
        the first one is (even if that one has problems of its own, so all show in one run)."""
        first = self._named.get(key)
        if first is None:
            self._named[key] = where
            return True
        self.problem(
            where,
            path,
            f"{what} is declared twice; the first is at {first}",
            hint="keep one declaration (files and directories are merged into one topology)",
        )
        return False

    def _check_policy_overlap(self) -> None:
        """Two policies of one priority matching one declared object: which applies is not
        defined (RabbitMQ picks one), so say so."""
        by_vhost: dict[tuple[str, int], list[PolicySpec]] = {}
        for policy in self.topology.policies.values():
            by_vhost.setdefault((policy.vhost, policy.priority), []).append(policy)
        for (vhost, priority), policies in by_vhost.items():
            if len(policies) < 2:
                continue
            compiled = [(p, re.compile(p.pattern)) for p in policies]
            objects = [("queues", n) for v, n in self.topology.queues if v == vhost] + [
                ("exchanges", n) for v, n in self.topology.exchanges if v == vhost
            ]
            for kind, name in objects:
                matching = [
                    p.name
                    for p, regex in compiled
                    if p.apply_to in (kind, "all") and regex.search(name)
                ]
                if len(matching) > 1:
                    first = next(p for p in policies if p.name == matching[1])
                    self.problem(
                        first.where,
                        f"policies {', '.join(repr(m) for m in matching)}",
                        f"both match {kind[:-1]} '{name}' in vhost '{vhost}' with priority "
                        f"{priority}; only one policy applies to an object",
                        hint="give one of them a higher priority, or narrow a pattern",
                        warning=True,
                    )
                    break


def _role(key: str) -> str:
    """What an argument makes of the exchange it names: "dead-letter", "alternate"."""
    words = key.removeprefix("x-").replace("_", "-").split("-")
    return "-".join(w for w in words if w != "exchange")


def _valid_hash(text: str) -> bool:
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
    except (ValueError, UnicodeEncodeError, binascii.Error):
        return False
    return len(raw) == 36


def _plain(value: Any) -> Any:
    """A Located value as plain dicts and lists (JSON-like)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def _kind(value: Any) -> str:
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return f"{str(value).lower()} (a boolean)"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, (int, float)):
        return f"{value} (a number)"
    return repr(value)


def _a(what: str) -> str:
    # "a user", "an exchange": the words used here start with a vowel sound only for a, e, i, o
    return f"an {what}" if what[0] in "aeio" else f"a {what}"


def read_topology(
    documents: list[Document], source_errors: list[SourceError] | None = None
) -> tuple[Topology, list[Problem]]:
    """The topology the documents declare, and every problem found (errors and warnings)."""
    reader = Reader()
    topology = reader.read(documents, source_errors or [])
    problems = sorted(reader.problems, key=lambda p: (p.where.file, p.where.line, p.where.column))
    return topology, problems
