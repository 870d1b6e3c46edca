"""Field tables: every tag round-trips with its tag, edits touch only their own bytes, bad bytes
raise FrameError (never IndexError or struct.error)."""

from __future__ import annotations

import datetime
import decimal
import struct
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from router.amqp.errors import FrameError
from router.amqp.tables import (
    FieldArray,
    FieldTable,
    decode_table,
    decode_value,
    encode_array,
    encode_table,
    encode_value,
    infer_tag,
    to_plain,
    type_class,
)

# --- helpers -----------------------------------------------------------------------------------

INT_RANGES = {
    "b": (-(2**7), 2**7 - 1),
    "B": (0, 2**8 - 1),
    "s": (-(2**15), 2**15 - 1),
    "U": (-(2**15), 2**15 - 1),
    "u": (0, 2**16 - 1),
    "I": (-(2**31), 2**31 - 1),
    "i": (0, 2**32 - 1),
    "l": (-(2**63), 2**63 - 1),
    "L": (0, 2**64 - 1),
    "T": (0, 2**64 - 1),
}

# One sample per tag, chosen to sit at an edge of the tag's range where there is one.
SAMPLES: dict[str, Any] = {
    "t": True,
    "b": -128,
    "B": 255,
    "s": -32768,
    "u": 65535,
    "I": -(2**31),
    "i": 2**32 - 1,
    "l": -(2**63),
    "L": 2**64 - 1,
    "f": 1.5,
    "d": -2.25e300,
    "D": decimal.Decimal("3.14"),
    "S": "h\u00e9llo \u2713",
    "x": b"\x00\x01\xffbin",
    "A": FieldArray([1, "two", True], ["b", "S", "t"]),
    "T": 1704164645,
    "F": None,  # filled below: a nested table with its own tags
    "V": None,
}
_inner = FieldTable()
_inner.set_typed("deep", "t", False)
_inner.set_typed("n", "u", 7)
SAMPLES["F"] = _inner


def table_of(*items: tuple[str, str, Any]) -> FieldTable:
    table = FieldTable()
    for key, tag, value in items:
        table.set_typed(key, tag, value)
    return table


def typed_tree(tag: str, value: Any) -> Any:
    """A value with its tag at every level, in wire order, for exact comparison."""
    if tag == "F":
        return ("F", [(key, typed_tree(value.tag(key), value[key])) for key in value])
    if tag == "A":
        return ("A", [typed_tree(value.tag(i), v) for i, v in enumerate(value)])
    return (tag, value)


def wire_entries(raw: bytes) -> list[bytes]:
    """The bytes of each key/value entry of an encoded table, found by walking the wire."""
    (length,) = struct.unpack_from(">I", raw, 0)
    assert len(raw) == 4 + length
    entries = []
    offset = 4
    while offset < len(raw):
        start = offset
        offset += 1 + raw[offset]
        _tag, _value, offset = decode_value(raw, offset)
        entries.append(raw[start:offset])
    return entries


def entry(key: str, tag: str, value: Any) -> bytes:
    out = [bytes([len(key.encode())]), key.encode()]
    encode_value(tag, value, out)
    return b"".join(out)


def table_bytes(*entries: bytes) -> bytes:
    body = b"".join(entries)
    return struct.pack(">I", len(body)) + body


# --- every tag -----------------------------------------------------------------------------------


@pytest.mark.parametrize("tag", list(SAMPLES))
def test_every_tag_round_trips_with_its_tag_kept(tag: str) -> None:
    table = table_of(("k", tag, SAMPLES[tag]))
    raw = encode_table(table)
    decoded, end = decode_table(raw, 0)
    assert end == len(raw)
    assert decoded.tag("k") == tag
    assert typed_tree("F", decoded) == typed_tree("F", table)
    assert encode_table(decoded) == raw


def test_the_spec_int16_tag_capital_u_is_read_and_written_back_as_capital_u() -> None:
    raw = table_bytes(b"\x01kU\xff\xfe")
    table, _ = decode_table(raw, 0)
    assert table == {"k": -2}
    assert table.tag("k") == "U"
    assert encode_table(table) == raw


def test_field_table_keeps_the_type_tag_a_client_sent() -> None:
    # aio-pika sends small ints as 'b'; RabbitMQ would write 'l' for a fresh int
    raw = table_bytes(entry("x-max-priority", "b", 10), entry("x-message-ttl", "u", 60000))
    table, _ = decode_table(raw, 0)
    assert table.tags == {"x-max-priority": "b", "x-message-ttl": "u"}
    assert encode_table(table) == raw


@pytest.mark.parametrize(
    ("value", "tag"),
    [
        (True, "t"),
        (5, "l"),
        (-(2**63), "l"),
        (2**63, "L"),
        ("text", "S"),
        (b"raw", "x"),
        (bytearray(b"raw"), "x"),
        (1.5, "d"),
        (decimal.Decimal("1.5"), "D"),
        ({"a": 1}, "F"),
        ([1, 2], "A"),
        ((1, 2), "A"),
        (None, "V"),
        (datetime.datetime(2024, 1, 2, tzinfo=datetime.UTC), "T"),
    ],
)
def test_a_value_without_a_tag_gets_the_tag_rabbitmq_would_write(value: Any, tag: str) -> None:
    assert infer_tag(value) == tag


def test_a_value_that_has_no_wire_form_is_refused_with_type_error() -> None:
    with pytest.raises(TypeError):
        infer_tag(object())


def test_a_datetime_is_written_as_seconds_since_the_epoch() -> None:
    when = datetime.datetime(2024, 1, 2, 3, 4, 5, tzinfo=datetime.UTC)
    naive = datetime.datetime(2024, 1, 2, 3, 4, 5)
    raw = encode_table({"a": when, "b": naive})
    table, _ = decode_table(raw, 0)
    assert table == {"a": 1704164645, "b": 1704164645}
    assert table.tags == {"a": "T", "b": "T"}


def test_a_long_string_that_is_not_utf8_decodes_to_bytes_and_keeps_its_s_tag() -> None:
    raw = table_bytes(entry("bin", "S", b"\x00\x01\xffbin"))
    table, _ = decode_table(raw, 0)
    assert table["bin"] == b"\x00\x01\xffbin"
    assert table.tag("bin") == "S"
    assert encode_table(table) == raw


def test_integer_tags_share_one_comparison_class() -> None:
    assert {type_class(t) for t in "bBsuUIilL"} == {"int"}
    assert {type_class(t) for t in "fd"} == {"float"}
    assert type_class("S") == "S"


def test_an_empty_or_missing_table_encodes_as_four_zero_bytes() -> None:
    assert encode_table(FieldTable()) == b"\x00\x00\x00\x00"
    assert encode_table(None) == b"\x00\x00\x00\x00"
    assert decode_table(b"\x00\x00\x00\x00", 0) == ({}, 4)


def test_decoding_starts_at_the_offset_given_and_returns_where_the_table_ends() -> None:
    raw = table_bytes(entry("a", "B", 1))
    table, end = decode_table(b"junk" + raw + b"tail", 4)
    assert table == {"a": 1}
    assert end == 4 + len(raw)


def test_keys_keep_the_order_they_arrived_in() -> None:
    raw = table_bytes(entry("z", "t", True), entry("a", "t", False), entry("m", "V", None))
    table, _ = decode_table(raw, 0)
    assert list(table) == ["z", "a", "m"]
    assert encode_table(table) == raw


# --- decode → modify → encode ------------------------------------------------------------------

GOLDEN_LIKE = table_bytes(
    entry("str", "S", "hello"),
    entry("int_small", "b", 7),
    entry("int_short", "s", 1000),
    entry("int32", "I", 100000),
    entry("uint8", "B", 200),
    entry("bool", "t", True),
    entry("float", "f", 0.5),
    entry("none", "V", None),
    entry("ts", "T", 1704164645),
    entry("arr", "A", FieldArray([1, "two"], ["b", "S"])),
)


def test_changing_one_value_with_its_tag_changes_only_that_entrys_bytes() -> None:
    table, _ = decode_table(GOLDEN_LIKE, 0)
    table.set_typed("int_short", "s", 2000)
    before = wire_entries(GOLDEN_LIKE)
    after = wire_entries(encode_table(table))
    changed = [i for i, (a, b) in enumerate(zip(before, after, strict=True)) if a != b]
    assert changed == [2]
    assert after[2] == entry("int_short", "s", 2000)


def test_assigning_a_plain_value_forgets_the_old_tag_and_rewrites_only_that_entry() -> None:
    table, _ = decode_table(GOLDEN_LIKE, 0)
    table["int_small"] = 9
    assert table.tag("int_small") == "l"
    before = wire_entries(GOLDEN_LIKE)
    after = wire_entries(encode_table(table))
    assert after == [*before[:1], entry("int_small", "l", 9), *before[2:]]


def test_adding_a_key_appends_its_entry_after_the_untouched_ones() -> None:
    table, _ = decode_table(GOLDEN_LIKE, 0)
    table["x-death"] = [FieldTable({"count": 1})]
    after = wire_entries(encode_table(table))
    assert after[:-1] == wire_entries(GOLDEN_LIKE)
    assert after[-1].startswith(b"\x07x-deathA")


def test_deleting_a_key_removes_only_its_entry() -> None:
    table, _ = decode_table(GOLDEN_LIKE, 0)
    del table["bool"]
    assert "bool" not in table.tags
    before = wire_entries(GOLDEN_LIKE)
    assert wire_entries(encode_table(table)) == before[:5] + before[6:]


def test_a_copy_keeps_the_tags_and_is_independent_of_the_original() -> None:
    table, _ = decode_table(GOLDEN_LIKE, 0)
    copy = table.copy()
    assert isinstance(copy, FieldTable)
    assert encode_table(copy) == GOLDEN_LIKE
    copy.set_typed("int_small", "B", 8)
    assert table["int_small"] == 7
    assert encode_table(table) == GOLDEN_LIKE


def test_typed_reports_the_tag_and_the_value() -> None:
    table, _ = decode_table(GOLDEN_LIKE, 0)
    assert table.typed("uint8") == ("B", 200)
    table["fresh"] = "v"
    assert table.typed("fresh") == ("S", "v")


# --- nesting -------------------------------------------------------------------------------------


def test_nested_tables_and_arrays_keep_the_tags_at_every_level() -> None:
    inner = table_of(("deep", "t", True), ("n", "b", -1))
    array = FieldArray(
        [1, "two", inner, FieldArray([3, 4], ["s", "i"]), None], ["u", "S", "F", "A", "V"]
    )
    table = table_of(("table", "F", table_of(("inner", "F", inner))), ("array", "A", array))
    raw = encode_table(table)
    decoded, _ = decode_table(raw, 0)
    assert typed_tree("F", decoded) == typed_tree("F", table)
    assert isinstance(decoded["table"]["inner"], FieldTable)
    assert isinstance(decoded["array"], FieldArray)
    assert decoded["array"].tags == ["u", "S", "F", "A", "V"]
    assert encode_table(decoded) == raw


def test_an_array_without_tags_infers_them_per_element() -> None:
    raw = encode_array([1, "a", True, None])
    body = b"l" + struct.pack(">q", 1) + b"S\x00\x00\x00\x01a" + b"t\x01V"
    assert raw == struct.pack(">I", len(body)) + body
    assert FieldArray([1, "a"]).tag(1) == "S"


def test_to_plain_turns_tables_arrays_bytes_and_decimals_into_json_values() -> None:
    table, _ = decode_table(
        table_bytes(
            entry("t", "F", table_of(("a", "A", FieldArray([b"hi", b"\xff"], ["x", "x"])))),
            entry("d", "D", decimal.Decimal("3.14")),
        ),
        0,
    )
    assert to_plain(table) == {"t": {"a": ["hi", "ff"]}, "d": "3.14"}


# --- malformed input -----------------------------------------------------------------------------

MALFORMED = {
    "no length": b"",
    "half a length": b"\x00\x00",
    "length past the end": b"\x00\x00\x00\x0a\x01kt",
    "unknown tag": table_bytes(b"\x01kZ\x00"),
    "no tag after the key": b"\x00\x00\x00\x02\x01k",
    "key runs past the end": b"\x00\x00\x00\x02\x05k",
    "value runs past the declared length": b"\x00\x00\x00\x04\x01kI\x00\x00\x00\x01",
    "long string past the end": table_bytes(b"\x01kS\x00\x00\x00\x64abc"),
    "byte array past the end": table_bytes(b"\x01kx\x00\x00\x01\x00abc"),
    "array past the end": table_bytes(b"\x01kA\x00\x00\x00\x10b\x01"),
    "array value past its length": table_bytes(b"\x01kA\x00\x00\x00\x01I\x00\x00\x00\x01"),
    "unknown tag in an array": table_bytes(b"\x01kA\x00\x00\x00\x01?"),
    "array length cut short": table_bytes(b"\x01kA\x00\x00"),
    "nested table past the end": table_bytes(b"\x01kF\x00\x00\x00\x09\x01at"),
    "nested table length cut short": table_bytes(b"\x01kF\x00"),
    "decimal cut short": table_bytes(b"\x01kD\x02\x00\x00"),
}
for _tag, (_lo, _hi) in INT_RANGES.items():
    MALFORMED[f"{_tag} value missing"] = table_bytes(b"\x01k" + _tag.encode())
for _tag in "tfdDS":
    MALFORMED[f"{_tag} value missing"] = table_bytes(b"\x01k" + _tag.encode())


@pytest.mark.parametrize("raw", list(MALFORMED.values()), ids=list(MALFORMED))
def test_malformed_table_raises_frame_error(raw: bytes) -> None:
    with pytest.raises(FrameError) as info:
        decode_table(raw, 0)
    assert info.value.reply_code in (501, 502)


def test_every_truncation_of_a_valid_table_raises_frame_error() -> None:
    for cut in range(len(GOLDEN_LIKE)):
        with pytest.raises(FrameError):
            decode_table(GOLDEN_LIKE[:cut], 0)


def test_a_table_nested_deeper_than_python_can_recurse_raises_frame_error() -> None:
    nested = b""
    for _ in range(5000):
        nested = b"A" + struct.pack(">I", len(nested)) + nested
    with pytest.raises(FrameError):
        decode_table(table_bytes(b"\x01k" + nested), 0)


@given(st.binary(max_size=64))
@settings(max_examples=300)
def test_random_bytes_either_decode_or_raise_frame_error(raw: bytes) -> None:
    try:
        decode_table(struct.pack(">I", len(raw)) + raw, 0)
    except FrameError:
        pass


@given(st.integers(0, len(GOLDEN_LIKE) - 1), st.integers(0, 255))
@settings(max_examples=300)
def test_a_table_with_one_byte_changed_either_decodes_or_raises_frame_error(
    index: int, byte: int
) -> None:
    raw = bytearray(GOLDEN_LIKE)
    raw[index] = byte
    try:
        decode_table(bytes(raw), 0)
    except FrameError:
        pass


# --- property tests ------------------------------------------------------------------------------


def scalar_values(tag: str) -> st.SearchStrategy[Any]:
    if tag in INT_RANGES:
        low, high = INT_RANGES[tag]
        return st.integers(low, high)
    if tag == "t":
        return st.booleans()
    if tag == "f":
        return st.floats(width=32, allow_nan=False)
    if tag == "d":
        return st.floats(allow_nan=False)
    if tag == "D":
        return st.builds(
            lambda scale, raw: decimal.Decimal(raw).scaleb(-scale),
            st.integers(0, 255),
            st.integers(0, 2**32 - 1),
        )
    if tag == "S":
        return st.text(max_size=30)
    if tag == "x":
        return st.binary(max_size=30)
    assert tag == "V"
    return st.none()


SCALAR_TAGS = [*INT_RANGES, "t", "f", "d", "D", "S", "x", "V"]
keys = st.text(max_size=20)
leaves = st.sampled_from(SCALAR_TAGS).flatmap(
    lambda tag: scalar_values(tag).map(lambda value: (tag, value))
)


def _table_from(items: list[tuple[str, tuple[str, Any]]]) -> FieldTable:
    return table_of(*((key, tag, value) for key, (tag, value) in items))


def _nest(children: st.SearchStrategy[tuple[str, Any]]) -> st.SearchStrategy[tuple[str, Any]]:
    tables = st.lists(st.tuples(keys, children), max_size=4, unique_by=lambda kv: kv[0]).map(
        lambda items: ("F", _table_from(items))
    )
    arrays = st.lists(children, max_size=4).map(
        lambda items: ("A", FieldArray([v for _, v in items], [t for t, _ in items]))
    )
    return tables | arrays


tagged_values = st.recursive(leaves, _nest, max_leaves=12)
field_tables = st.lists(st.tuples(keys, tagged_values), max_size=6, unique_by=lambda kv: kv[0]).map(
    _table_from
)


@given(field_tables)
@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
def test_any_table_round_trips_with_every_tag_and_byte_kept(table: FieldTable) -> None:
    raw = encode_table(table)
    decoded, end = decode_table(raw, 0)
    assert end == len(raw)
    assert typed_tree("F", decoded) == typed_tree("F", table)
    assert encode_table(decoded) == raw


@given(field_tables.filter(bool), st.data())
@settings(max_examples=100, suppress_health_check=[HealthCheck.too_slow])
def test_any_single_edit_changes_only_that_entrys_bytes(table: FieldTable, data: Any) -> None:
    raw = encode_table(table)
    decoded, _ = decode_table(raw, 0)
    index = data.draw(st.integers(0, len(decoded) - 1))
    key = list(decoded)[index]
    tag, value = data.draw(tagged_values)
    decoded.set_typed(key, tag, value)
    before = wire_entries(raw)
    expected = [*before[:index], entry(key, tag, value), *before[index + 1 :]]
    assert wire_entries(encode_table(decoded)) == expected
