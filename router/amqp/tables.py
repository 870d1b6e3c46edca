"""Field tables and arrays that keep their type tags.

A decoded table is a ``FieldTable``: a dict of plain Python values that also remembers the tag each
value came with, so decode → modify → encode changes only what was changed (a client's ``'b'`` stays
``'b'``). Values set without a tag get one inferred on encoding (RabbitMQ's choices: ints as ``'l'``,
text as ``'S'``).

Tags (AMQP 0-9-1 errata as RabbitMQ and every client use them): t bool, b int8, B uint8, s int16,
u uint16, I int32, i uint32, l int64, L uint64, f float32, d float64, D decimal, S long string,
x byte array, A array, T timestamp, F table, V void. ``'U'`` (the spec's int16) is read as well.
"""

from __future__ import annotations

import datetime
import decimal
import struct
from collections.abc import Iterable, Mapping
from typing import Any

from router.amqp.constants import SYNTAX_ERROR
from router.amqp.errors import FrameError

_U8 = struct.Struct(">B")
_I8 = struct.Struct(">b")
_U16 = struct.Struct(">H")
_I16 = struct.Struct(">h")
_U32 = struct.Struct(">I")
_I32 = struct.Struct(">i")
_U64 = struct.Struct(">Q")
_I64 = struct.Struct(">q")
_F32 = struct.Struct(">f")
_F64 = struct.Struct(">d")
_DEC = struct.Struct(">BI")

# Which tags are integers of one "class": RabbitMQ compares these by value across widths
# (rabbit_misc:type_class/1), e.g. for argument equivalence and headers-exchange matching.
INT_TAGS = frozenset("bBsuUIilL")
FLOAT_TAGS = frozenset("fd")


def type_class(tag: str) -> str:
    """The comparison class of a tag: ``'int'``, ``'float'`` or the tag itself."""
    if tag in INT_TAGS:
        return "int"
    if tag in FLOAT_TAGS:
        return "float"
    return tag


class FieldTable(dict[str, Any]):
    """A field table: a dict of values plus the wire tag each value was decoded with."""

    __slots__ = ("tags",)

    def __init__(self, items: Mapping[str, Any] | Iterable[tuple[str, Any]] = (), /) -> None:
        super().__init__(items)
        self.tags: dict[str, str] = {}

    def __setitem__(self, key: str, value: Any) -> None:
        super().__setitem__(key, value)
        self.tags.pop(key, None)

    def __delitem__(self, key: str) -> None:
        super().__delitem__(key)
        self.tags.pop(key, None)

    def set_typed(self, key: str, tag: str, value: Any) -> None:
        """Set a value with an explicit wire tag."""
        super().__setitem__(key, value)
        self.tags[key] = tag

    def tag(self, key: str) -> str:
        """The wire tag of ``key``: the one it was decoded with, else the one encoding would pick."""
        tag = self.tags.get(key)
        return tag if tag is not None else infer_tag(self[key])

    def typed(self, key: str) -> tuple[str, Any]:
        return self.tag(key), self[key]

    def copy(self) -> FieldTable:
        new = FieldTable(self)
        new.tags = dict(self.tags)
        return new


class FieldArray(list[Any]):
    """A field array: a list of values plus the tag of each (``None`` where inferred)."""

    __slots__ = ("tags",)

    def __init__(self, items: Iterable[Any] = (), tags: list[str | None] | None = None) -> None:
        super().__init__(items)
        self.tags: list[str | None] = tags if tags is not None else [None] * len(self)

    def tag(self, index: int) -> str:
        tag = self.tags[index] if index < len(self.tags) else None
        return tag if tag is not None else infer_tag(self[index])


def infer_tag(value: Any) -> str:
    """The tag RabbitMQ would write for a Python value with no recorded tag."""
    if isinstance(value, bool):
        return "t"
    if isinstance(value, int):
        if -(1 << 63) <= value < (1 << 63):
            return "l"
        return "L"
    if isinstance(value, str):
        return "S"
    if isinstance(value, (bytes, bytearray, memoryview)):
        return "x"
    if isinstance(value, float):
        return "d"
    if isinstance(value, decimal.Decimal):
        return "D"
    if isinstance(value, Mapping):
        return "F"
    if isinstance(value, (list, tuple)):
        return "A"
    if value is None:
        return "V"
    if isinstance(value, datetime.datetime):
        return "T"
    raise TypeError(f"cannot encode {type(value).__name__} in an AMQP field table")


# ---------------------------------------------------------------------------------------------
# decoding


def _longstr_value(raw: bytes) -> str | bytes:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw


def decode_value(buf: bytes, offset: int) -> tuple[str, Any, int]:
    """Decode one tagged value at ``offset``; returns (tag, value, new offset)."""
    try:
        tag = chr(buf[offset])
        offset += 1
        if tag == "S":
            (length,) = _U32.unpack_from(buf, offset)
            offset += 4
            end = offset + length
            if end > len(buf):
                raise FrameError(SYNTAX_ERROR, "field table string runs past the end of its frame")
            return tag, _longstr_value(bytes(buf[offset:end])), end
        if tag == "I":
            return tag, _I32.unpack_from(buf, offset)[0], offset + 4
        if tag == "t":
            return tag, buf[offset] != 0, offset + 1
        if tag == "l":
            return tag, _I64.unpack_from(buf, offset)[0], offset + 8
        if tag == "F":
            table, offset = decode_table(buf, offset)
            return tag, table, offset
        if tag == "A":
            array, offset = decode_array(buf, offset)
            return tag, array, offset
        if tag == "b":
            return tag, _I8.unpack_from(buf, offset)[0], offset + 1
        if tag == "B":
            return tag, buf[offset], offset + 1
        if tag in ("s", "U"):
            return tag, _I16.unpack_from(buf, offset)[0], offset + 2
        if tag == "u":
            return tag, _U16.unpack_from(buf, offset)[0], offset + 2
        if tag == "i":
            return tag, _U32.unpack_from(buf, offset)[0], offset + 4
        if tag == "L":
            return tag, _U64.unpack_from(buf, offset)[0], offset + 8
        if tag == "f":
            return tag, _F32.unpack_from(buf, offset)[0], offset + 4
        if tag == "d":
            return tag, _F64.unpack_from(buf, offset)[0], offset + 8
        if tag == "D":
            scale, raw = _DEC.unpack_from(buf, offset)
            return tag, decimal.Decimal(raw).scaleb(-scale), offset + 5
        if tag == "x":
            (length,) = _U32.unpack_from(buf, offset)
            offset += 4
            end = offset + length
            if end > len(buf):
                raise FrameError(SYNTAX_ERROR, "field table byte array runs past its frame")
            return tag, bytes(buf[offset:end]), end
        if tag == "T":
            return tag, _U64.unpack_from(buf, offset)[0], offset + 8
        if tag == "V":
            return tag, None, offset
    except (struct.error, IndexError):
        raise FrameError(SYNTAX_ERROR, "field table value runs past the end of its frame")
    except RecursionError:
        # a hostile client can nest ~25k arrays in one frame; refuse it as bad syntax
        raise FrameError(SYNTAX_ERROR, "field table nested too deeply") from None
    raise FrameError(SYNTAX_ERROR, f"unknown field table value type {tag!r}")


def decode_table(buf: bytes, offset: int) -> tuple[FieldTable, int]:
    """Decode a table (its 4-byte length first) at ``offset``; returns (table, new offset)."""
    try:
        (length,) = _U32.unpack_from(buf, offset)
    except struct.error:
        raise FrameError(SYNTAX_ERROR, "field table length runs past the end of its frame")
    offset += 4
    end = offset + length
    if end > len(buf):
        raise FrameError(SYNTAX_ERROR, "field table runs past the end of its frame")
    table = FieldTable()
    tags = table.tags
    setitem = dict.__setitem__
    while offset < end:
        klen = buf[offset]
        offset += 1
        key = bytes(buf[offset : offset + klen]).decode("utf-8", "replace")
        offset += klen
        tag, value, offset = decode_value(buf, offset)
        setitem(table, key, value)
        tags[key] = tag
    if offset != end:
        raise FrameError(SYNTAX_ERROR, "field table length does not match its contents")
    return table, end


def decode_array(buf: bytes, offset: int) -> tuple[FieldArray, int]:
    (length,) = _U32.unpack_from(buf, offset)
    offset += 4
    end = offset + length
    if end > len(buf):
        raise FrameError(SYNTAX_ERROR, "field array runs past the end of its frame")
    values: list[Any] = []
    tags: list[str | None] = []
    while offset < end:
        tag, value, offset = decode_value(buf, offset)
        values.append(value)
        tags.append(tag)
    if offset != end:
        raise FrameError(SYNTAX_ERROR, "field array length does not match its contents")
    return FieldArray(values, tags), end


# ---------------------------------------------------------------------------------------------
# encoding


def _encode_bytes(value: Any) -> bytes:
    if isinstance(value, str):
        return value.encode("utf-8")
    return bytes(value)


def encode_value(tag: str, value: Any, out: list[bytes]) -> None:
    """Append the encoding of one tagged value to ``out``."""
    out.append(tag.encode("latin-1"))
    if tag == "S" or tag == "x":
        raw = _encode_bytes(value)
        out.append(_U32.pack(len(raw)))
        out.append(raw)
    elif tag == "I":
        out.append(_I32.pack(value))
    elif tag == "t":
        out.append(b"\x01" if value else b"\x00")
    elif tag == "l":
        out.append(_I64.pack(value))
    elif tag == "F":
        out.append(encode_table(value))
    elif tag == "A":
        out.append(encode_array(value))
    elif tag == "b":
        out.append(_I8.pack(value))
    elif tag == "B":
        out.append(_U8.pack(value))
    elif tag in ("s", "U"):
        out.append(_I16.pack(value))
    elif tag == "u":
        out.append(_U16.pack(value))
    elif tag == "i":
        out.append(_U32.pack(value))
    elif tag == "L":
        out.append(_U64.pack(value))
    elif tag == "f":
        out.append(_F32.pack(value))
    elif tag == "d":
        out.append(_F64.pack(value))
    elif tag == "D":
        out.append(_encode_decimal(value))
    elif tag == "T":
        if isinstance(value, datetime.datetime):
            if value.tzinfo is None:
                value = value.replace(tzinfo=datetime.UTC)
            value = int(value.timestamp())
        out.append(_U64.pack(value))
    elif tag == "V":
        pass
    else:
        raise ValueError(f"unknown field table value type {tag!r}")


def _encode_decimal(value: Any) -> bytes:
    dec = decimal.Decimal(value)
    exponent = dec.as_tuple().exponent
    scale = -int(exponent) if isinstance(exponent, int) and exponent < 0 else 0
    raw = int(dec.scaleb(scale))
    return _DEC.pack(scale, raw & 0xFFFFFFFF)


def encode_table(table: Mapping[str, Any] | None) -> bytes:
    """Encode a table with its 4-byte length prefix."""
    if not table:
        return b"\x00\x00\x00\x00"
    tags: Mapping[str, str] = getattr(table, "tags", {})
    out: list[bytes] = [b""]
    for key, value in table.items():
        kraw = key.encode("utf-8")
        out.append(_U8.pack(len(kraw)))
        out.append(kraw)
        tag = tags.get(key)
        encode_value(tag if tag is not None else infer_tag(value), value, out)
    body = b"".join(out)
    return _U32.pack(len(body)) + body


def encode_array(values: Iterable[Any]) -> bytes:
    tags: list[str | None] = getattr(values, "tags", [])
    out: list[bytes] = []
    for index, value in enumerate(values):
        tag = tags[index] if index < len(tags) else None
        encode_value(tag if tag is not None else infer_tag(value), value, out)
    body = b"".join(out)
    return _U32.pack(len(body)) + body


def to_plain(value: Any) -> Any:
    """A JSON-friendly copy (tables → dict, arrays → list, bytes → str where UTF-8)."""
    if isinstance(value, Mapping):
        return {k: to_plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [to_plain(v) for v in value]
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            return value.hex()
    if isinstance(value, decimal.Decimal):
        return str(value)
    return value


def to_json(value: Any) -> Any:
    """A field-table value as the management API's JSON shows it (RabbitMQ's rendering): bytes as
    text, decimals as numbers, timestamps as Unix seconds. Unlike ``to_plain`` it is what
    definitions exports carry, so router and RabbitMQ documents compare equal."""
    if isinstance(value, Mapping):
        return {str(key): to_json(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_json(item) for item in value]
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).decode("utf-8", "replace")
    if isinstance(value, decimal.Decimal):
        return float(value)
    if isinstance(value, datetime.datetime):
        return int(value.timestamp())
    return value
