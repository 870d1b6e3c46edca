"""Frames: a reader that splits a byte stream into frames, and writers for each frame type.

A frame is type(1) channel(2) size(4) payload end(0xCE) (AMQP 0-9-1 §4.2.3). The reader keeps
incomplete input and hands back every complete frame in what it was fed, so one socket read is
decoded in one pass. Content bodies are split at the negotiated frame_max.
"""

from __future__ import annotations

import struct

from router.amqp.constants import (
    FRAME_BODY,
    FRAME_END,
    FRAME_END_BYTE,
    FRAME_ERROR,
    FRAME_HEADER,
    FRAME_HEARTBEAT,
    FRAME_METHOD,
)
from router.amqp.errors import FramingError
from router.amqp.properties import encode_content_header
from router.amqp.spec import Method

FRAME_HEAD = struct.Struct(">BHI")
HEARTBEAT_FRAME = FRAME_HEAD.pack(FRAME_HEARTBEAT, 0, 0) + FRAME_END_BYTE

Frame = tuple[int, int, bytes]


def encode_frame(frame_type: int, channel: int, payload: bytes) -> bytes:
    return FRAME_HEAD.pack(frame_type, channel, len(payload)) + payload + FRAME_END_BYTE


def method_frame(channel: int, method: Method) -> bytes:
    return encode_frame(FRAME_METHOD, channel, method.encode())


def body_frames(channel: int, body: bytes, frame_max: int, out: list[bytes]) -> None:
    """Append the body frames of ``body``, split so no frame exceeds ``frame_max``."""
    size = len(body)
    if size == 0:
        return
    chunk = frame_max - 8
    pack = FRAME_HEAD.pack
    if size <= chunk:
        out.append(pack(FRAME_BODY, channel, size))
        out.append(body)
        out.append(FRAME_END_BYTE)
        return
    view = memoryview(body)
    for start in range(0, size, chunk):
        piece = view[start : start + chunk]
        out.append(pack(FRAME_BODY, channel, len(piece)))
        out.append(bytes(piece))
        out.append(FRAME_END_BYTE)


def content_frames(
    channel: int, class_id: int, raw_properties: bytes, body: bytes, frame_max: int
) -> list[bytes]:
    """Header frame and body frames of one content."""
    out = [
        encode_frame(
            FRAME_HEADER, channel, encode_content_header(class_id, len(body), raw_properties)
        )
    ]
    body_frames(channel, body, frame_max, out)
    return out


class FrameReader:
    """Splits a byte stream into frames. ``max_size`` is the negotiated frame_max (0 = none).

    Input is kept as the ``bytes`` it arrived as when possible, so each payload is one slice
    (one copy); only a partial frame followed by more input is accumulated in a bytearray.
    """

    __slots__ = ("_buf", "error", "max_size")

    def __init__(self, max_size: int = 0) -> None:
        self._buf: bytes | bytearray = b""
        self.max_size = max_size
        self.error: FramingError | None = None  # a broken stream: raised by every later read

    def feed(self, data: bytes) -> None:
        buf = self._buf
        if not buf:
            self._buf = bytes(data)
        elif type(buf) is bytearray:
            buf += data
        else:
            grown = bytearray(buf)
            grown += data
            self._buf = grown

    @property
    def buffered(self) -> int:
        return len(self._buf)

    def take(self, n: int) -> bytes:
        """Remove and return the first ``n`` buffered bytes (the protocol header)."""
        data = bytes(self._buf[:n])
        self._buf = self._buf[n:]
        return data

    def read_frames(self) -> list[Frame]:
        """Every complete frame buffered, in order; incomplete input stays buffered.

        When the stream breaks (bad end byte, frame over ``max_size``), the good frames before
        the break are returned first and the ``FramingError`` is raised by the next call.
        """
        if self.error is not None:
            raise self.error
        buf = self._buf
        size_total = len(buf)
        offset = 0
        frames: list[Frame] = []
        unpack = FRAME_HEAD.unpack_from
        max_size = self.max_size
        # Slice payloads from bytes (one copy each); convert an accumulated bytearray once, and
        # only when it holds a complete frame, so a big frame arriving in pieces is not re-copied.
        if type(buf) is not bytes and size_total >= 8 and unpack(buf, 0)[2] + 8 <= size_total:
            buf = bytes(buf)
        while size_total - offset >= 8:
            frame_type, channel, size = unpack(buf, offset)
            if max_size and size + 8 > max_size:
                self.error = FramingError(
                    FRAME_ERROR,
                    f"frame size {size + 8} exceeds the negotiated frame_max {max_size}",
                )
                break
            end = offset + 7 + size
            if end >= size_total:
                break
            if buf[end] != FRAME_END:
                self.error = FramingError(
                    FRAME_ERROR, f"frame end byte is 0x{buf[end]:02x}, not 0xce"
                )
                break
            frames.append((frame_type, channel, buf[offset + 7 : end]))  # type: ignore[arg-type]
            offset = end + 1
        if offset:
            self._buf = buf[offset:]
        if self.error is not None and not frames:
            raise self.error
        return frames
