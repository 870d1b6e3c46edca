"""Hand-tuned codecs for the methods on the hot path.

publish, ack, nack and reject are decoded by offset without building a Method object; deliver,
get-ok, return and the confirm ack/nack are encoded straight into frame bytes. The header frame and
body frames of a message are encoded by the caller once per channel and reused (see
``content_tail``). ``spec`` stays the reference: tests check both agree on every input.
"""

from __future__ import annotations

import struct

from router.amqp.constants import FRAME_END_BYTE, SYNTAX_ERROR
from router.amqp.errors import FrameError
from router.amqp.frames import FRAME_HEAD, body_frames

# Method payload prefixes (class id, method id)
PUBLISH_ID = b"\x00\x3c\x00\x28"  # 60, 40
ACK_ID = b"\x00\x3c\x00\x50"  # 60, 80
REJECT_ID = b"\x00\x3c\x00\x5a"  # 60, 90
NACK_ID = b"\x00\x3c\x00\x78"  # 60, 120

_DELIVER_HEAD = struct.Struct(">BHIHH")  # frame type, channel, size, class, method
_TAG_BIT = struct.Struct(">QB")
_TAG_BIT_LONG = struct.Struct(">QB")
_ACK_FRAME = struct.Struct(">BHIHHQB")
_HEADER_FRAME = struct.Struct(">BHIHHQ")
_END_HEAD = struct.Struct(">BBHI")  # the previous frame's end byte, then the next frame's head
_U32 = struct.Struct(">I")
_Q = struct.Struct(">Q")


def decode_publish(payload: bytes) -> tuple[str, str, bool, bool]:
    """(exchange, routing_key, mandatory, immediate) of a basic.publish payload."""
    exchange, routing_key, mandatory, immediate, _raw = decode_publish_raw(payload)
    return exchange, routing_key, mandatory, immediate


def decode_publish_raw(payload: bytes) -> tuple[str, str, bool, bool, bytes]:
    """``decode_publish`` plus the exchange and routing key as the wire carried them (two short
    strings): exactly the ``exchange_rk`` that deliver, get-ok and return frames need."""
    try:
        n = payload[6]
        end = 7 + n
        exchange = payload[7:end].decode("utf-8", "surrogateescape") if n else ""
        n = payload[end]
        start = end + 1
        end = start + n
        routing_key = payload[start:end].decode("utf-8", "surrogateescape")
        bits = payload[end]
    except IndexError:
        raise FrameError(SYNTAX_ERROR, "basic.publish frame is shorter than its arguments", 60, 40)
    return exchange, routing_key, bool(bits & 1), bool(bits & 2), payload[6:end]


def decode_tag_bits(payload: bytes) -> tuple[int, int]:
    """(delivery_tag, bits) of a basic.ack / nack / reject payload."""
    try:
        tag, bits = _TAG_BIT.unpack_from(payload, 4)
        return tag, bits
    except struct.error:
        raise FrameError(SYNTAX_ERROR, "acknowledgement frame is shorter than its arguments")


def shortstr(value: str) -> bytes:
    raw = value.encode("utf-8", "surrogateescape")
    return bytes((len(raw),)) + raw


def content_tail(channel: int, header_payload: bytes, body: bytes, frame_max: int) -> bytes:
    """The header frame and body frames of a message on ``channel``."""
    out = [FRAME_HEAD.pack(2, channel, len(header_payload)), header_payload, FRAME_END_BYTE]
    body_frames(channel, body, frame_max, out)
    return b"".join(out)


def deliver_frame(
    channel: int, consumer_tag: bytes, delivery_tag: int, redelivered: bool, exchange_rk: bytes
) -> bytes:
    """A basic.deliver method frame. ``consumer_tag`` and ``exchange_rk`` are pre-encoded
    short strings (``exchange_rk`` = exchange shortstr + routing key shortstr)."""
    size = 4 + len(consumer_tag) + 9 + len(exchange_rk)
    return b"".join(
        (
            _DELIVER_HEAD.pack(1, channel, size, 60, 60),
            consumer_tag,
            _TAG_BIT.pack(delivery_tag, 1 if redelivered else 0),
            exchange_rk,
            FRAME_END_BYTE,
        )
    )


def deliver_message(
    channel: int,
    consumer_tag: bytes,
    delivery_tag: int,
    redelivered: bool,
    exchange_rk: bytes,
    header_payload: bytes,
    body: bytes,
    frame_max: int,
) -> bytes:
    """``deliver_frame`` + ``content_tail`` as one buffer: a body that fits one frame (the
    common case) is assembled with a single join, no intermediate bytes."""
    size = len(body)
    if 0 < size <= frame_max - 8:
        return b"".join(
            (
                _DELIVER_HEAD.pack(1, channel, 13 + len(consumer_tag) + len(exchange_rk), 60, 60),
                consumer_tag,
                _TAG_BIT.pack(delivery_tag, 1 if redelivered else 0),
                exchange_rk,
                _END_HEAD.pack(0xCE, 2, channel, len(header_payload)),
                header_payload,
                _END_HEAD.pack(0xCE, 3, channel, size),
                body,
                FRAME_END_BYTE,
            )
        )
    return deliver_frame(
        channel, consumer_tag, delivery_tag, redelivered, exchange_rk
    ) + content_tail(channel, header_payload, body, frame_max)


def get_ok_frame(
    channel: int, delivery_tag: int, redelivered: bool, exchange_rk: bytes, message_count: int
) -> bytes:
    size = 4 + 9 + len(exchange_rk) + 4
    return b"".join(
        (
            _DELIVER_HEAD.pack(1, channel, size, 60, 71),
            _TAG_BIT.pack(delivery_tag, 1 if redelivered else 0),
            exchange_rk,
            _U32.pack(message_count),
            FRAME_END_BYTE,
        )
    )


def return_frame(channel: int, reply_code: int, reply_text: str, exchange_rk: bytes) -> bytes:
    text = shortstr(reply_text)
    size = 4 + 2 + len(text) + len(exchange_rk)
    return b"".join(
        (
            _DELIVER_HEAD.pack(1, channel, size, 60, 50),
            reply_code.to_bytes(2, "big"),
            text,
            exchange_rk,
            FRAME_END_BYTE,
        )
    )


def confirm_frame(channel: int, delivery_tag: int, multiple: bool, ack: bool = True) -> bytes:
    """basic.ack (or basic.nack with requeue=false) from the broker to a publisher."""
    if ack:
        return _ACK_FRAME.pack(1, channel, 13, 60, 80, delivery_tag, 1 if multiple else 0) + (
            FRAME_END_BYTE
        )
    return _ACK_FRAME.pack(1, channel, 13, 60, 120, delivery_tag, 1 if multiple else 0) + (
        FRAME_END_BYTE
    )


def get_empty_frame(channel: int) -> bytes:
    return FRAME_HEAD.pack(1, channel, 5) + b"\x00\x3c\x00\x48\x00" + FRAME_END_BYTE
