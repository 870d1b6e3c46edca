"""Content properties of the basic class, kept as the raw bytes the publisher sent.

The broker passes a publisher's property bytes (flags + property list) to consumers untouched; it
only peeks at the few it needs (delivery mode, priority, expiration, headers), each with a cheap scan
that stops as soon as it has its answer. ``BasicProperties`` is the full decoded form, for tools, tests
and the rare case where the broker must rewrite properties (x-death, BCC).

Property order and flag bits (AMQP 0-9-1 §4.2.6.1, basic class): content_type 15, content_encoding 14,
headers 13, delivery_mode 12, priority 11, correlation_id 10, reply_to 9, expiration 8,
message_id 7, timestamp 6, type 5, user_id 4, app_id 3, cluster_id 2; bit 0 = more flags follow.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, fields
from typing import Any

from router.amqp.constants import SYNTAX_ERROR
from router.amqp.errors import FrameError
from router.amqp.tables import FieldTable, decode_table, encode_table

_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")
_U64 = struct.Struct(">Q")
_HEADER = struct.Struct(">HHQ")  # class id, weight, body size

F_CONTENT_TYPE = 1 << 15
F_CONTENT_ENCODING = 1 << 14
F_HEADERS = 1 << 13
F_DELIVERY_MODE = 1 << 12
F_PRIORITY = 1 << 11
F_CORRELATION_ID = 1 << 10
F_REPLY_TO = 1 << 9
F_EXPIRATION = 1 << 8
F_MESSAGE_ID = 1 << 7
F_TIMESTAMP = 1 << 6
F_TYPE = 1 << 5
F_USER_ID = 1 << 4
F_APP_ID = 1 << 3
F_CLUSTER_ID = 1 << 2

EMPTY_PROPERTIES = b"\x00\x00"

# (name, flag, kind) in wire order
_LAYOUT: tuple[tuple[str, int, str], ...] = (
    ("content_type", F_CONTENT_TYPE, "shortstr"),
    ("content_encoding", F_CONTENT_ENCODING, "shortstr"),
    ("headers", F_HEADERS, "table"),
    ("delivery_mode", F_DELIVERY_MODE, "octet"),
    ("priority", F_PRIORITY, "octet"),
    ("correlation_id", F_CORRELATION_ID, "shortstr"),
    ("reply_to", F_REPLY_TO, "shortstr"),
    ("expiration", F_EXPIRATION, "shortstr"),
    ("message_id", F_MESSAGE_ID, "shortstr"),
    ("timestamp", F_TIMESTAMP, "timestamp"),
    ("type", F_TYPE, "shortstr"),
    ("user_id", F_USER_ID, "shortstr"),
    ("app_id", F_APP_ID, "shortstr"),
    ("cluster_id", F_CLUSTER_ID, "shortstr"),
)


@dataclass(frozen=True, slots=True)
class BasicProperties:
    """The fully decoded content properties; ``None`` means absent."""

    content_type: str | None = None
    content_encoding: str | None = None
    headers: FieldTable | None = None
    delivery_mode: int | None = None
    priority: int | None = None
    correlation_id: str | None = None
    reply_to: str | None = None
    expiration: str | None = None
    message_id: str | None = None
    timestamp: int | None = None
    type: str | None = None
    user_id: str | None = None
    app_id: str | None = None
    cluster_id: str | None = None

    def encode(self) -> bytes:
        return encode_properties(self)

    def replace(self, **changes: Any) -> BasicProperties:
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        values.update(changes)
        return BasicProperties(**values)


def _skip_flags(raw: bytes) -> tuple[int, int]:
    """The first flags word and the offset of the property list (continuation words skipped)."""
    (flags,) = _U16.unpack_from(raw, 0)
    offset = 2
    word = flags
    while word & 1:
        (word,) = _U16.unpack_from(raw, offset)
        offset += 2
    return flags, offset


def decode_properties(raw: bytes) -> BasicProperties:
    """Decode property bytes (flags + list) in full."""
    try:
        flags, offset = _skip_flags(raw)
        values: dict[str, Any] = {}
        for name, flag, kind in _LAYOUT:
            if not flags & flag:
                continue
            if kind == "shortstr":
                length = raw[offset]
                offset += 1
                end = offset + length
                if end > len(raw):
                    raise IndexError
                values[name] = raw[offset:end].decode("utf-8", "surrogateescape")
                offset = end
            elif kind == "octet":
                values[name] = raw[offset]
                offset += 1
            elif kind == "timestamp":
                values[name] = _U64.unpack_from(raw, offset)[0]
                offset += 8
            else:
                values[name], offset = decode_table(raw, offset)
    except (IndexError, struct.error):
        raise FrameError(SYNTAX_ERROR, "content header properties run past the end of the frame")
    return BasicProperties(**values)


def encode_properties(props: BasicProperties) -> bytes:
    flags = 0
    out: list[bytes] = []
    for name, flag, kind in _LAYOUT:
        value = getattr(props, name)
        if value is None:
            continue
        flags |= flag
        if kind == "shortstr":
            raw = value.encode("utf-8", "surrogateescape")
            out.append(bytes((len(raw),)) + raw)
        elif kind == "octet":
            out.append(bytes((value,)))
        elif kind == "timestamp":
            out.append(_U64.pack(value))
        else:
            out.append(encode_table(value))
    return _U16.pack(flags) + b"".join(out)


def _skip_to(raw: bytes, want: int) -> tuple[int, int] | None:
    """Offset of property ``want`` and the flags, or None when absent. Skips the earlier ones."""
    flags, offset = _skip_flags(raw)
    if not flags & want:
        return None
    for _name, flag, kind in _LAYOUT:
        if flag == want:
            return flags, offset
        if not flags & flag:
            continue
        if kind == "shortstr":
            offset += 1 + raw[offset]
        elif kind == "octet":
            offset += 1
        elif kind == "timestamp":
            offset += 8
        else:
            offset += 4 + _U32.unpack_from(raw, offset)[0]
    return None  # pragma: no cover - want is always one of the layout flags


def peek_delivery_mode(raw: bytes) -> int:
    """Delivery mode (2 = persistent), 0 when absent."""
    try:
        found = _skip_to(raw, F_DELIVERY_MODE)
        return 0 if found is None else raw[found[1]]
    except (IndexError, struct.error):
        raise FrameError(SYNTAX_ERROR, "content header properties run past the end of the frame")


def peek_priority(raw: bytes) -> int | None:
    """The message priority, None when absent."""
    try:
        found = _skip_to(raw, F_PRIORITY)
        return None if found is None else raw[found[1]]
    except (IndexError, struct.error):
        raise FrameError(SYNTAX_ERROR, "content header properties run past the end of the frame")


def peek_expiration(raw: bytes) -> str | None:
    try:
        found = _skip_to(raw, F_EXPIRATION)
        if found is None:
            return None
        offset = found[1]
        return raw[offset + 1 : offset + 1 + raw[offset]].decode("utf-8", "surrogateescape")
    except (IndexError, struct.error):
        raise FrameError(SYNTAX_ERROR, "content header properties run past the end of the frame")


def peek_headers(raw: bytes) -> FieldTable | None:
    """The headers table, None when absent."""
    try:
        found = _skip_to(raw, F_HEADERS)
        return None if found is None else decode_table(raw, found[1])[0]
    except (IndexError, struct.error):
        raise FrameError(SYNTAX_ERROR, "content header properties run past the end of the frame")


def scan(raw: bytes) -> tuple[int, int | None, str | None]:
    """One pass over the property list: (delivery_mode, priority, expiration).

    It checks that every property lies inside ``raw``, and that a headers table decodes, so a
    malformed header is caught at publish, before it reaches a consumer or the store.
    """
    delivery_mode, priority, expiration, _headers = scan_full(raw)
    return delivery_mode, priority, expiration


def scan_full(raw: bytes) -> tuple[int, int | None, str | None, FieldTable | None]:
    """``scan`` plus the decoded headers table (None when absent), decoded once here."""
    headers: FieldTable | None = None
    try:
        flags, offset = _skip_flags(raw)
        delivery_mode = 0
        priority: int | None = None
        expiration: str | None = None
        for _name, flag, kind in _LAYOUT:
            if not flags & flag:
                continue
            if kind == "shortstr":
                length = raw[offset]
                if flag == F_EXPIRATION:
                    expiration = raw[offset + 1 : offset + 1 + length].decode("utf-8", "replace")
                offset += 1 + length
            elif kind == "octet":
                if flag == F_DELIVERY_MODE:
                    delivery_mode = raw[offset]
                else:
                    priority = raw[offset]
                offset += 1
            elif kind == "timestamp":
                offset += 8
            else:
                headers, offset = decode_table(raw, offset)
    except (IndexError, struct.error):
        offset = len(raw) + 1
    if offset > len(raw):
        raise FrameError(SYNTAX_ERROR, "content header properties run past the end of the frame")
    return delivery_mode, priority, expiration, headers


def encode_content_header(class_id: int, body_size: int, raw_properties: bytes) -> bytes:
    """A content header frame payload."""
    return _HEADER.pack(class_id, 0, body_size) + raw_properties


def decode_content_header(payload: bytes) -> tuple[int, int, bytes]:
    """(class id, body size, raw property bytes) of a content header frame payload."""
    if len(payload) < 14:
        raise FrameError(SYNTAX_ERROR, "content header frame is shorter than 14 bytes")
    class_id, _weight, body_size = _HEADER.unpack_from(payload, 0)
    return class_id, body_size, bytes(payload[12:])
