"""Content properties: flags and order, full decode and encode, the cheap peeks and scan."""

from __future__ import annotations

import dataclasses
import struct
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from router.amqp.errors import FrameError
from router.amqp.properties import (
    EMPTY_PROPERTIES,
    BasicProperties,
    decode_content_header,
    decode_properties,
    encode_content_header,
    encode_properties,
    peek_delivery_mode,
    peek_expiration,
    peek_headers,
    peek_priority,
    scan,
)
from router.amqp.tables import FieldTable

HEADERS = FieldTable()
HEADERS.set_typed("x-retries", "b", 3)
HEADERS.set_typed("trace", "S", "abc")

FULL = BasicProperties(
    content_type="application/json",
    content_encoding="utf-8",
    headers=HEADERS,
    delivery_mode=2,
    priority=5,
    correlation_id="corr-1",
    reply_to="golden.reply",
    expiration="60000",
    message_id="msg-1",
    timestamp=1704164645,
    type="golden.type",
    user_id="guest",
    app_id="golden",
    cluster_id="c1",
)

# AMQP 0-9-1 §4.2.6.1: content_type is bit 15, down to cluster_id at bit 2
FLAG_BITS = {
    "content_type": 15,
    "content_encoding": 14,
    "headers": 13,
    "delivery_mode": 12,
    "priority": 11,
    "correlation_id": 10,
    "reply_to": 9,
    "expiration": 8,
    "message_id": 7,
    "timestamp": 6,
    "type": 5,
    "user_id": 4,
    "app_id": 3,
    "cluster_id": 2,
}


@pytest.mark.parametrize("name", list(FLAG_BITS))
def test_each_property_sets_exactly_its_own_flag_bit(name: str) -> None:
    props = BasicProperties(**{name: getattr(FULL, name)})
    raw = encode_properties(props)
    assert struct.unpack_from(">H", raw)[0] == 1 << FLAG_BITS[name]
    assert decode_properties(raw) == props


def test_all_properties_are_written_in_spec_order_and_read_back() -> None:
    raw = FULL.encode()
    assert raw[:2] == b"\xff\xfc"
    assert raw[2:19] == b"\x10application/json"
    assert decode_properties(raw) == FULL
    assert decode_properties(raw).encode() == raw


def test_no_properties_is_two_zero_bytes_and_decodes_to_all_none() -> None:
    assert BasicProperties().encode() == EMPTY_PROPERTIES == b"\x00\x00"
    decoded = decode_properties(EMPTY_PROPERTIES)
    assert all(getattr(decoded, f.name) is None for f in dataclasses.fields(decoded))


def test_headers_keep_their_type_tags_through_decode_and_encode() -> None:
    raw = BasicProperties(headers=HEADERS).encode()
    headers = decode_properties(raw).headers
    assert headers is not None
    assert headers.tags == {"x-retries": "b", "trace": "S"}
    assert BasicProperties(headers=headers).encode() == raw


def test_a_short_string_that_is_not_utf8_round_trips_byte_for_byte() -> None:
    raw = b"\x80\x00" + b"\x03\xff\xfeA"
    props = decode_properties(raw)
    assert props.encode() == raw


def test_a_continuation_flags_word_is_skipped() -> None:
    # bit 0 set: another flags word follows (no basic property lives there)
    raw = struct.pack(">HH", (1 << 12) | 1, 0) + b"\x02"
    assert decode_properties(raw) == BasicProperties(delivery_mode=2)
    assert scan(raw) == (2, None, None)
    assert peek_delivery_mode(raw) == 2


def test_replace_changes_only_the_named_properties() -> None:
    changed = FULL.replace(expiration=None, priority=9)
    assert changed.expiration is None
    assert changed.priority == 9
    assert changed.message_id == FULL.message_id


def test_scan_finds_delivery_mode_priority_and_expiration_in_one_pass() -> None:
    assert scan(FULL.encode()) == (2, 5, "60000")


def test_scan_reports_delivery_mode_zero_and_nones_when_absent() -> None:
    assert scan(EMPTY_PROPERTIES) == (0, None, None)
    assert scan(BasicProperties(content_type="text/plain").encode()) == (0, None, None)


def test_peeks_find_each_property_behind_the_ones_before_it() -> None:
    raw = FULL.encode()
    assert peek_delivery_mode(raw) == 2
    assert peek_priority(raw) == 5
    assert peek_expiration(raw) == "60000"
    assert peek_headers(raw) == {"x-retries": 3, "trace": "abc"}


def test_peeks_report_absent_properties() -> None:
    raw = BasicProperties(app_id="a").encode()
    assert peek_delivery_mode(raw) == 0
    assert peek_priority(raw) is None
    assert peek_expiration(raw) is None
    assert peek_headers(raw) is None


def test_every_truncation_of_the_properties_raises_frame_error_on_decode_and_scan() -> None:
    raw = FULL.encode()
    for cut in range(len(raw)):
        with pytest.raises(FrameError):
            decode_properties(raw[:cut])
        with pytest.raises(FrameError):
            scan(raw[:cut])


def test_peeks_on_truncated_properties_raise_only_frame_error() -> None:
    raw = FULL.encode()
    for cut in range(len(raw)):
        for peek in (peek_delivery_mode, peek_priority, peek_expiration, peek_headers):
            try:
                peek(raw[:cut])
            except FrameError:
                pass


def test_scan_catches_a_headers_table_whose_length_runs_past_the_frame() -> None:
    raw = struct.pack(">H", 1 << 13) + b"\x00\x00\x00\x10abc"
    with pytest.raises(FrameError):
        scan(raw)


def test_content_header_holds_class_weight_body_size_and_raw_properties() -> None:
    payload = encode_content_header(60, 300000, FULL.encode())
    assert payload[:12] == struct.pack(">HHQ", 60, 0, 300000)
    assert decode_content_header(payload) == (60, 300000, FULL.encode())


def test_a_content_header_shorter_than_fourteen_bytes_raises_frame_error() -> None:
    with pytest.raises(FrameError):
        decode_content_header(b"\x00\x3c\x00\x00" + b"\x00" * 8 + b"\x00")


# --- property test -------------------------------------------------------------------------------

shortstrs = st.text(max_size=40).filter(lambda s: len(s.encode()) <= 255)
headers = st.dictionaries(
    st.text(max_size=10), st.one_of(st.integers(-(2**63), 2**63 - 1), st.text(), st.booleans())
).map(FieldTable)
PROPERTY_VALUES: dict[str, st.SearchStrategy[Any]] = {
    "content_type": shortstrs,
    "content_encoding": shortstrs,
    "headers": headers,
    "delivery_mode": st.integers(0, 255),
    "priority": st.integers(0, 255),
    "correlation_id": shortstrs,
    "reply_to": shortstrs,
    "expiration": shortstrs,
    "message_id": shortstrs,
    "timestamp": st.integers(0, 2**64 - 1),
    "type": shortstrs,
    "user_id": shortstrs,
    "app_id": shortstrs,
    "cluster_id": shortstrs,
}
any_properties = st.fixed_dictionaries(
    {}, optional={name: values for name, values in PROPERTY_VALUES.items()}
).map(lambda values: BasicProperties(**values))


@given(any_properties)
@settings(max_examples=200)
def test_any_properties_round_trip_and_scan_agrees_with_the_full_decode(
    props: BasicProperties,
) -> None:
    raw = props.encode()
    decoded = decode_properties(raw)
    assert decoded == props
    assert decoded.encode() == raw
    expected_mode = props.delivery_mode if props.delivery_mode is not None else 0
    assert scan(raw) == (expected_mode, props.priority, props.expiration)
    assert peek_delivery_mode(raw) == expected_mode
    assert peek_priority(raw) == props.priority
    assert peek_expiration(raw) == props.expiration
    assert peek_headers(raw) == props.headers
