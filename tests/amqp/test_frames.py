"""Frames: the reader splits a stream into frames whatever the read sizes; writers split bodies."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from router.amqp.errors import FrameError
from router.amqp.frames import (
    HEARTBEAT_FRAME,
    FrameReader,
    body_frames,
    content_frames,
    encode_frame,
    method_frame,
)
from router.amqp.properties import encode_content_header
from router.amqp.spec import BasicQos, ChannelOpen


def frames_in(data: bytes) -> list[tuple[int, int, bytes]]:
    reader = FrameReader()
    reader.feed(data)
    frames = reader.read_frames()
    assert reader.buffered == 0
    return frames


def test_a_frame_is_type_channel_size_payload_and_frame_end() -> None:
    assert encode_frame(1, 3, b"abc") == b"\x01\x00\x03\x00\x00\x00\x03abc\xce"


def test_a_heartbeat_is_an_empty_type_eight_frame_on_channel_zero() -> None:
    assert HEARTBEAT_FRAME == b"\x08\x00\x00\x00\x00\x00\x00\xce"
    assert frames_in(HEARTBEAT_FRAME) == [(8, 0, b"")]


def test_method_frame_wraps_the_encoded_method() -> None:
    qos = BasicQos(0, 10, False)
    assert method_frame(7, qos) == encode_frame(1, 7, qos.encode())


def test_the_reader_hands_back_every_complete_frame_of_one_read_in_order() -> None:
    data = method_frame(1, ChannelOpen()) + HEARTBEAT_FRAME + encode_frame(3, 1, b"body")
    assert frames_in(data) == [(1, 1, ChannelOpen().encode()), (8, 0, b""), (3, 1, b"body")]


def test_an_incomplete_frame_stays_buffered_until_the_rest_arrives() -> None:
    frame = encode_frame(3, 2, b"x" * 20)
    reader = FrameReader()
    reader.feed(frame[:10])
    assert reader.read_frames() == []
    assert reader.buffered == 10
    reader.feed(frame[10:-1])
    assert reader.read_frames() == []
    reader.feed(frame[-1:])
    assert reader.read_frames() == [(3, 2, b"x" * 20)]
    assert reader.buffered == 0


def test_a_stream_fed_one_byte_at_a_time_gives_the_same_frames() -> None:
    data = method_frame(1, ChannelOpen()) + HEARTBEAT_FRAME + encode_frame(3, 1, b"body")
    reader = FrameReader()
    frames = []
    for byte in data:
        reader.feed(bytes([byte]))
        frames += reader.read_frames()
    assert frames == frames_in(data)


def test_take_removes_the_protocol_header_in_front_of_the_frames() -> None:
    reader = FrameReader()
    reader.feed(b"AMQP\x00\x00\x09\x01" + HEARTBEAT_FRAME)
    assert reader.take(8) == b"AMQP\x00\x00\x09\x01"
    assert reader.read_frames() == [(8, 0, b"")]


def test_a_wrong_frame_end_byte_raises_frame_error_501() -> None:
    with pytest.raises(FrameError) as info:
        frames_in(b"\x08\x00\x00\x00\x00\x00\x00\x00")
    assert info.value.reply_code == 501


def test_a_frame_bigger_than_max_size_is_refused_before_its_payload_arrives() -> None:
    reader = FrameReader(max_size=4096)
    reader.feed(struct.pack(">BHI", 3, 1, 4089) + b"x")
    with pytest.raises(FrameError) as info:
        reader.read_frames()
    assert info.value.reply_code == 501


def test_a_frame_of_exactly_max_size_is_accepted() -> None:
    reader = FrameReader(max_size=4096)
    reader.feed(encode_frame(3, 1, b"x" * 4088))
    assert reader.read_frames() == [(3, 1, b"x" * 4088)]


def test_max_size_zero_means_no_limit() -> None:
    reader = FrameReader()
    reader.feed(encode_frame(3, 1, b"x" * 200000))
    assert reader.read_frames() == [(3, 1, b"x" * 200000)]


def test_an_empty_body_has_no_body_frames() -> None:
    out: list[bytes] = []
    body_frames(1, b"", 4096, out)
    assert out == []


@pytest.mark.parametrize(
    ("size", "frame_max", "sizes"),
    [
        (4088, 4096, [4088]),
        (4089, 4096, [4088, 1]),
        (300000, 131072, [131064, 131064, 37872]),
        (262128, 131072, [131064, 131064]),
        (1, 131072, [1]),
    ],
)
def test_a_body_is_split_so_no_frame_exceeds_frame_max(
    size: int, frame_max: int, sizes: list[int]
) -> None:
    body = bytes(range(256)) * (size // 256 + 1)
    body = body[:size]
    out: list[bytes] = []
    body_frames(5, body, frame_max, out)
    frames = frames_in(b"".join(out))
    assert [len(payload) for _, _, payload in frames] == sizes
    assert all(t == 3 and ch == 5 for t, ch, _ in frames)
    assert b"".join(payload for _, _, payload in frames) == body


def test_content_frames_are_a_header_frame_then_the_body_frames() -> None:
    frames = content_frames(2, 60, b"\x10\x00\x02", b"y" * 5000, 4096)
    assert frames[0] == encode_frame(2, 2, encode_content_header(60, 5000, b"\x10\x00\x02"))
    assert [p for _, _, p in frames_in(b"".join(frames[1:]))] == [b"y" * 4088, b"y" * 912]


frame_lists = st.lists(
    st.tuples(st.sampled_from([1, 2, 3, 8]), st.integers(0, 65535), st.binary(max_size=300)),
    max_size=20,
)


@given(frame_lists, st.lists(st.integers(1, 700), max_size=30))
@settings(max_examples=200)
def test_any_frames_split_at_any_read_boundaries_come_back_unchanged(
    frames: list[tuple[int, int, bytes]], cuts: list[int]
) -> None:
    data = b"".join(encode_frame(*frame) for frame in frames)
    reader = FrameReader(max_size=4096)
    got: list[tuple[int, int, bytes]] = []
    offset = 0
    for cut in cuts:
        reader.feed(data[offset : offset + cut])
        offset += cut
        got += reader.read_frames()
    reader.feed(data[offset:])
    got += reader.read_frames()
    assert got == frames
    assert reader.buffered == 0
