"""Methods: the table-driven codec against the spec's layout, against itself (property tests) and
against pamqp as an independent oracle, in both directions."""

from __future__ import annotations

import dataclasses
import datetime
import decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pamqp import commands as pcommands
from pamqp import frame as pframe
from pamqp import header as pheader

from router.amqp import spec
from router.amqp.errors import ConnectionError, FrameError
from router.amqp.frames import encode_frame, method_frame
from router.amqp.properties import (
    BasicProperties,
    decode_content_header,
    decode_properties,
    encode_content_header,
)
from router.amqp.tables import FieldArray, FieldTable

ALL_METHODS = sorted(spec.METHODS.values(), key=lambda cls: (cls.CLASS_ID, cls.METHOD_ID))
METHOD_IDS = [cls.NAME for cls in ALL_METHODS]

# pamqp's names for our fields, where they differ
PAMQP_NAMES = {("exchange.declare", "type"): "exchange_type"}


def pamqp_class(cls: type[spec.Method]) -> Any:
    return pcommands.INDEX_MAPPING[(cls.CLASS_ID << 16) | cls.METHOD_ID]


def pamqp_name(cls: type[spec.Method], name: str) -> str:
    return PAMQP_NAMES.get((cls.NAME, name), name)


def default_of(cls: type[spec.Method], name: str) -> Any:
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        if f.name == name:
            if f.default is not dataclasses.MISSING:
                return f.default
            return f.default_factory()  # type: ignore[misc]
    raise KeyError(name)


# --- the layout --------------------------------------------------------------------------------


@pytest.mark.parametrize("cls", ALL_METHODS, ids=METHOD_IDS)
def test_every_method_has_the_ids_argument_names_and_types_pamqp_has(
    cls: type[spec.Method],
) -> None:
    theirs = pamqp_class(cls)
    assert [(pamqp_name(cls, n), k) for n, k in cls.FIELDS] == [
        (slot, theirs.amqp_type(slot)) for slot in theirs.__slots__
    ]
    assert theirs.synchronous == cls.SYNCHRONOUS


def test_the_registry_covers_every_method_pamqp_knows() -> None:
    theirs = {(index >> 16, index & 0xFFFF) for index in pcommands.INDEX_MAPPING}
    assert set(spec.METHODS) == theirs


def test_names_and_ids_find_the_same_classes() -> None:
    for (class_id, method_id), cls in spec.METHODS.items():
        assert (class_id, method_id) == (cls.CLASS_ID, cls.METHOD_ID)
        assert spec.METHODS_BY_NAME[cls.NAME] is cls


def test_exactly_the_four_content_methods_carry_content() -> None:
    with_content = {cls.NAME for cls in ALL_METHODS if cls.HAS_CONTENT}
    assert with_content == {"basic.publish", "basic.return", "basic.deliver", "basic.get-ok"}


def test_consecutive_bits_share_one_octet_lowest_bit_first() -> None:
    payload = spec.QueueDeclare(0, "q", True, False, True, False, True).encode()
    assert payload == b"\x00\x32\x00\x0a" + b"\x00\x00" + b"\x01q" + b"\x15" + b"\x00\x00\x00\x00"


def test_a_bit_between_other_fields_takes_its_own_octet() -> None:
    payload = spec.BasicDeliver("c", 2**64 - 1, True, "x", "rk").encode()
    assert payload == b"\x00\x3c\x00\x3c\x01c" + b"\xff" * 8 + b"\x01" + b"\x01x\x02rk"


def test_a_method_with_no_arguments_is_just_its_ids() -> None:
    assert spec.TxSelect().encode() == b"\x00\x5a\x00\x0a"
    assert spec.decode_method(b"\x00\x5a\x00\x0a") == spec.TxSelect()


def test_a_short_string_longer_than_255_bytes_is_refused() -> None:
    with pytest.raises(ValueError):
        spec.BasicConsumeOk("é" * 128).encode()


def test_an_unknown_method_of_a_known_class_is_command_invalid_503() -> None:
    with pytest.raises(ConnectionError) as info:
        spec.decode_method(b"\x00\x3c\x00\x63")
    assert (info.value.reply_code, info.value.class_id, info.value.method_id) == (503, 60, 99)


def test_an_unknown_class_is_not_implemented_540() -> None:
    with pytest.raises(ConnectionError) as info:
        spec.decode_method(b"\x00\x1e\x00\x0a")  # access.request: gone from 0-9-1
    assert info.value.reply_code == 540


def test_a_payload_too_short_for_the_ids_is_frame_error_501() -> None:
    with pytest.raises(FrameError) as info:
        spec.decode_method(b"\x00\x3c\x00")
    assert info.value.reply_code == 501


def test_trailing_bytes_after_the_arguments_are_ignored() -> None:
    assert spec.decode_method(spec.BasicAck(5, True).encode() + b"\x00") == spec.BasicAck(5, True)


# --- sample values -------------------------------------------------------------------------------

# pamqp refuses to marshal values the spec reserves; ticket must be 0 and so on
PAMQP_RESERVED = {
    "ticket": 0,
    "capabilities": "",
    "insist": False,
    "known_hosts": "",
    "out_of_band": "0",
    "channel_id": b"0",
    "cluster_id": "",
}
PAMQP_NAME_FIELDS = {"exchange", "queue", "destination", "source"}


def sample_table() -> FieldTable:
    inner = FieldTable()
    inner.set_typed("deep", "t", True)
    inner.set_typed("u", "u", 60000)
    table = FieldTable()
    for key, tag, value in [
        ("S", "S", "h\u00e9llo"),
        ("b", "b", -5),
        ("B", "B", 200),
        ("s", "s", -1000),
        ("u", "u", 65000),
        ("I", "I", -100000),
        ("i", "i", 3_000_000_000),
        ("l", "l", -(2**40)),
        ("f", "f", 0.5),
        ("d", "d", 2.25),
        ("D", "D", decimal.Decimal("3.14")),
        ("x", "x", b"\x00\x01\xff"),
        ("T", "T", 1704164645),
        ("V", "V", None),
        ("t", "t", False),
        ("F", "F", inner),
        ("A", "A", FieldArray([1, "a", inner], ["b", "S", "F"])),
    ]:
        table.set_typed(key, tag, value)
    return table


def sample_value(cls: type[spec.Method], name: str, kind: str, bit: int, pattern: str) -> Any:
    if kind == "bit":
        if pattern == "flipped":
            return not default_of(cls, name)
        return bit % 2 == 0
    if kind == "octet":
        return 7
    if kind == "short":
        return 40000
    if kind == "long":
        return 3_000_000_000
    if kind in ("longlong", "timestamp"):
        return 2**40 + 3
    if kind == "shortstr":
        return f"{name}.v-1" if name in PAMQP_NAME_FIELDS else f"{name}-\u00e9"
    if kind == "longstr":
        return f"{name}-\u00e9-long".encode()
    assert kind == "table"
    return sample_table()


def sample_method(cls: type[spec.Method], pattern: str = "flipped", for_pamqp: bool = False):
    values = {}
    bit = 0
    for name, kind in cls.FIELDS:
        values[name] = sample_value(cls, name, kind, bit, pattern)
        bit += kind == "bit"
        if for_pamqp and name in PAMQP_RESERVED:
            values[name] = PAMQP_RESERVED[name]
    return cls(**values)


def plain(value: Any) -> Any:
    """Values as both codecs can agree on them: dicts, lists, bytes, timestamps as ints."""
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    if isinstance(value, bytearray):
        return bytes(value)
    if isinstance(value, datetime.datetime):
        return int(value.timestamp())
    return value


def assert_same_fields(ours: spec.Method, theirs: Any) -> None:
    for name, kind in ours.FIELDS:
        mine = getattr(ours, name)
        other = getattr(theirs, pamqp_name(type(ours), name))
        if kind == "longstr":
            other = other.encode() if isinstance(other, str) else bytes(other)
        assert plain(mine) == plain(other), name


# --- truncation ------------------------------------------------------------------------------------


@pytest.mark.parametrize("cls", ALL_METHODS, ids=METHOD_IDS)
def test_every_truncation_of_a_method_raises_frame_error(cls: type[spec.Method]) -> None:
    payload = sample_method(cls).encode()
    for cut in range(len(payload)):
        if cut >= 4 and not cls.FIELDS:
            continue
        with pytest.raises(FrameError):
            spec.decode_method(payload[:cut])


@pytest.mark.parametrize("cls", ALL_METHODS, ids=METHOD_IDS)
@pytest.mark.parametrize("pattern", ["flipped", "alternating"])
def test_a_method_with_non_default_values_round_trips(cls: type[spec.Method], pattern: str) -> None:
    method = sample_method(cls, pattern)
    payload = method.encode()
    decoded = spec.decode_method(payload)
    assert decoded == method
    assert decoded.encode() == payload


# --- pamqp as the oracle -----------------------------------------------------------------------


@pytest.mark.parametrize("cls", ALL_METHODS, ids=METHOD_IDS)
@pytest.mark.parametrize("pattern", ["flipped", "alternating"])
def test_pamqp_reads_our_encoding_of_every_method(cls: type[spec.Method], pattern: str) -> None:
    ours = sample_method(cls, pattern)
    raw = method_frame(9, ours)
    consumed, channel, theirs = pframe.unmarshal(raw)
    assert (consumed, channel) == (len(raw), 9)
    assert type(theirs) is pamqp_class(cls)
    assert_same_fields(ours, theirs)


def pamqp_table() -> dict[str, Any]:
    return {
        "s": "h\u00e9llo",
        "n": 5,
        "short": -1000,
        "ushort": 60000,
        "int": -100000,
        "uint": 3_000_000_000,
        "big": -(2**40),
        "flag": True,
        "f": 1.5,
        "d": decimal.Decimal("3.14"),
        "bin": bytearray(b"\x00\xff"),
        "ts": datetime.datetime(2024, 1, 2, 3, 4, 5, tzinfo=datetime.UTC),
        "none": None,
        "nested": {"b": False, "u": 60000},
        "arr": [1, "a", {"k": "v"}, [2, 3]],
    }


def pamqp_method(cls: type[spec.Method], pattern: str) -> Any:
    kwargs = {}
    for name, kind in cls.FIELDS:
        value = getattr(sample_method(cls, pattern, for_pamqp=True), name)
        if kind == "longstr":
            value = value.decode()
        elif kind == "table":
            value = pamqp_table()
        kwargs[pamqp_name(cls, name)] = value
    return pamqp_class(cls)(**kwargs)


@pytest.mark.parametrize("cls", ALL_METHODS, ids=METHOD_IDS)
@pytest.mark.parametrize("pattern", ["flipped", "alternating"])
def test_we_read_pamqps_encoding_of_every_method(cls: type[spec.Method], pattern: str) -> None:
    theirs = pamqp_method(cls, pattern)
    raw = pframe.marshal(theirs, 3)
    assert raw[0] == 1
    assert raw[-1] == 0xCE
    ours = spec.decode_method(raw[7:-1])
    assert type(ours) is cls
    assert_same_fields(ours, theirs)


def test_pamqp_reads_our_content_header_with_every_property() -> None:
    headers = sample_table()
    props = BasicProperties(
        content_type="application/json",
        content_encoding="utf-8",
        headers=headers,
        delivery_mode=2,
        priority=5,
        correlation_id="corr-\u00e9",
        reply_to="reply",
        expiration="60000",
        message_id="msg-1",
        timestamp=1704164645,
        type="golden.type",
        user_id="guest",
        app_id="app",
        cluster_id="c1",
    )
    raw = encode_frame(2, 1, encode_content_header(60, 300000, props.encode()))
    _, _, theirs = pframe.unmarshal(raw)
    assert theirs.body_size == 300000
    got = theirs.properties
    for name in (f.name for f in dataclasses.fields(props)):
        other = getattr(got, "message_type" if name == "type" else name)
        assert plain(getattr(props, name)) == plain(other), name


def test_we_read_pamqps_content_header_with_every_property() -> None:
    theirs = pcommands.Basic.Properties(
        content_type="text/plain",
        content_encoding="gzip",
        headers=pamqp_table(),
        delivery_mode=1,
        priority=9,
        correlation_id="corr",
        reply_to="amq.rabbitmq.reply-to",
        expiration="1000",
        message_id="m-\u00e9",
        timestamp=datetime.datetime(2024, 1, 2, 3, 4, 5, tzinfo=datetime.UTC),
        message_type="t",
        user_id="guest",
        app_id="pamqp",
    )
    raw = pframe.marshal(pheader.ContentHeader(0, 12345, theirs), 1)
    class_id, body_size, raw_props = decode_content_header(raw[7:-1])
    assert (class_id, body_size) == (60, 12345)
    ours = decode_properties(raw_props)
    for slot in theirs.__slots__:
        mine = getattr(ours, "type" if slot == "message_type" else slot)
        other = getattr(theirs, slot)
        if slot == "cluster_id":  # pamqp never sends an empty cluster_id
            assert mine is None
            continue
        assert plain(mine) == plain(other), slot


# --- property tests ------------------------------------------------------------------------------

table_values = st.recursive(
    st.one_of(
        st.booleans(),
        st.integers(-(2**63), 2**63 - 1),
        st.text(max_size=20),
        st.binary(max_size=20),
        st.floats(allow_nan=False),
        st.none(),
    ),
    lambda children: st.one_of(
        st.lists(children, max_size=3), st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=8,
)
tables = st.dictionaries(st.text(max_size=8), table_values, max_size=4).map(FieldTable)
shortstrs = st.text(max_size=60).filter(lambda s: len(s.encode()) <= 255)
KIND_VALUES: dict[str, st.SearchStrategy[Any]] = {
    "octet": st.integers(0, 2**8 - 1),
    "short": st.integers(0, 2**16 - 1),
    "long": st.integers(0, 2**32 - 1),
    "longlong": st.integers(0, 2**64 - 1),
    "timestamp": st.integers(0, 2**64 - 1),
    "shortstr": shortstrs,
    "longstr": st.binary(max_size=300),
    "bit": st.booleans(),
    "table": tables,
}


def methods_of(cls: type[spec.Method]) -> st.SearchStrategy[spec.Method]:
    return st.builds(cls, **{name: KIND_VALUES[kind] for name, kind in cls.FIELDS})


@pytest.mark.parametrize("cls", ALL_METHODS, ids=METHOD_IDS)
@given(data=st.data())
@settings(max_examples=25, suppress_health_check=[HealthCheck.too_slow], deadline=None)
def test_any_method_round_trips_through_our_codec(cls: type[spec.Method], data: Any) -> None:
    method = data.draw(methods_of(cls))
    payload = method.encode()
    decoded = spec.decode_method(payload)
    assert decoded == method
    assert decoded.encode() == payload


@given(st.sampled_from(ALL_METHODS), st.binary(max_size=40))
@settings(max_examples=400)
def test_random_arguments_either_decode_or_raise_frame_error(
    cls: type[spec.Method], arguments: bytes
) -> None:
    payload = cls.CLASS_ID.to_bytes(2, "big") + cls.METHOD_ID.to_bytes(2, "big") + arguments
    try:
        decoded = spec.decode_method(payload)
    except FrameError:
        return
    assert type(decoded) is cls
