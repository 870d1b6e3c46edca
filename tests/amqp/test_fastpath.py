"""The hand-tuned codecs agree with the table-driven spec on every input."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from router.amqp import fastpath, spec
from router.amqp.errors import FrameError
from router.amqp.frames import FrameReader, content_frames, method_frame
from router.amqp.properties import BasicProperties, encode_content_header

shortstrs = st.text(max_size=60).filter(lambda s: len(s.encode()) <= 255)
channels = st.integers(0, 65535)
delivery_tags = st.integers(0, 2**64 - 1)


def exchange_rk(exchange: str, routing_key: str) -> bytes:
    return fastpath.shortstr(exchange) + fastpath.shortstr(routing_key)


@given(st.integers(0, 65535), shortstrs, shortstrs, st.booleans(), st.booleans())
@settings(max_examples=300)
def test_decode_publish_agrees_with_the_spec(
    ticket: int, exchange: str, routing_key: str, mandatory: bool, immediate: bool
) -> None:
    method = spec.BasicPublish(ticket, exchange, routing_key, mandatory, immediate)
    assert fastpath.decode_publish(method.encode()) == (
        exchange,
        routing_key,
        mandatory,
        immediate,
    )


def test_every_truncation_of_a_publish_raises_frame_error_with_its_ids() -> None:
    payload = spec.BasicPublish(0, "x", "rk", True, False).encode()
    for cut in range(4, len(payload)):
        with pytest.raises(FrameError) as info:
            fastpath.decode_publish(payload[:cut])
        assert (info.value.reply_code, info.value.class_id, info.value.method_id) == (502, 60, 40)


def test_the_method_id_prefixes_match_the_spec() -> None:
    assert spec.BasicPublish().encode()[:4] == fastpath.PUBLISH_ID
    assert spec.BasicAck().encode()[:4] == fastpath.ACK_ID
    assert spec.BasicReject().encode()[:4] == fastpath.REJECT_ID
    assert spec.BasicNack().encode()[:4] == fastpath.NACK_ID


@given(delivery_tags, st.booleans(), st.booleans())
def test_decode_tag_bits_agrees_with_the_spec_for_ack_nack_and_reject(
    tag: int, first: bool, second: bool
) -> None:
    assert fastpath.decode_tag_bits(spec.BasicAck(tag, first).encode()) == (tag, int(first))
    assert fastpath.decode_tag_bits(spec.BasicReject(tag, first).encode()) == (tag, int(first))
    nack = spec.BasicNack(tag, first, second).encode()
    assert fastpath.decode_tag_bits(nack) == (tag, int(first) | int(second) << 1)


def test_a_short_acknowledgement_raises_frame_error() -> None:
    with pytest.raises(FrameError):
        fastpath.decode_tag_bits(spec.BasicAck(1).encode()[:-1])


@given(channels, shortstrs, delivery_tags, st.booleans(), shortstrs, shortstrs)
@settings(max_examples=200)
def test_deliver_frame_agrees_with_the_spec(
    channel: int, ctag: str, tag: int, redelivered: bool, exchange: str, routing_key: str
) -> None:
    ours = fastpath.deliver_frame(
        channel, fastpath.shortstr(ctag), tag, redelivered, exchange_rk(exchange, routing_key)
    )
    assert ours == method_frame(
        channel, spec.BasicDeliver(ctag, tag, redelivered, exchange, routing_key)
    )


@given(channels, delivery_tags, st.booleans(), shortstrs, shortstrs, st.integers(0, 2**32 - 1))
@settings(max_examples=200)
def test_get_ok_frame_agrees_with_the_spec(
    channel: int, tag: int, redelivered: bool, exchange: str, routing_key: str, count: int
) -> None:
    ours = fastpath.get_ok_frame(
        channel, tag, redelivered, exchange_rk(exchange, routing_key), count
    )
    assert ours == method_frame(
        channel, spec.BasicGetOk(tag, redelivered, exchange, routing_key, count)
    )


@given(channels, st.integers(0, 65535), shortstrs, shortstrs, shortstrs)
@settings(max_examples=200)
def test_return_frame_agrees_with_the_spec(
    channel: int, code: int, text: str, exchange: str, routing_key: str
) -> None:
    ours = fastpath.return_frame(channel, code, text, exchange_rk(exchange, routing_key))
    assert ours == method_frame(channel, spec.BasicReturn(code, text, exchange, routing_key))


@given(channels, delivery_tags, st.booleans())
def test_confirm_frame_agrees_with_the_spec_for_ack_and_nack(
    channel: int, tag: int, multiple: bool
) -> None:
    assert fastpath.confirm_frame(channel, tag, multiple) == method_frame(
        channel, spec.BasicAck(tag, multiple)
    )
    assert fastpath.confirm_frame(channel, tag, multiple, ack=False) == method_frame(
        channel, spec.BasicNack(tag, multiple, requeue=False)
    )


@given(channels)
def test_get_empty_frame_agrees_with_the_spec(channel: int) -> None:
    assert fastpath.get_empty_frame(channel) == method_frame(channel, spec.BasicGetEmpty())


@given(
    channels,
    st.binary(max_size=20000),
    st.integers(4096, 20000),
    st.sampled_from([b"\x00\x00", BasicProperties(delivery_mode=2, priority=3).encode()]),
)
@settings(max_examples=100)
def test_content_tail_agrees_with_content_frames(
    channel: int, body: bytes, frame_max: int, raw_props: bytes
) -> None:
    header = encode_content_header(60, len(body), raw_props)
    assert fastpath.content_tail(channel, header, body, frame_max) == b"".join(
        content_frames(channel, 60, raw_props, body, frame_max)
    )


def test_a_300000_byte_body_is_split_at_frame_max_into_three_frames() -> None:
    body = (bytes(range(256)) * 1200)[:300000]
    tail = fastpath.content_tail(1, encode_content_header(60, len(body), b"\x00\x00"), body, 131072)
    reader = FrameReader(max_size=131072)
    reader.feed(tail)
    frames = reader.read_frames()
    assert [(t, len(p)) for t, _, p in frames] == [(2, 14), (3, 131064), (3, 131064), (3, 37872)]
    assert b"".join(p for _, _, p in frames[1:]) == body


def test_shortstr_is_a_length_octet_and_utf8() -> None:
    assert fastpath.shortstr("h\u00e9") == b"\x03h\xc3\xa9"
