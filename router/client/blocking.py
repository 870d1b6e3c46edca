"""A minimal blocking AMQP 0-9-1 client on router's own codec, for load generation.

It speaks just enough (handshake, channel, declare, publish, consume, ack, publisher confirms) to
drive a broker as hard as possible from one process: publishes are pre-encoded once and sent in
large batches, and received frames are split by the same ``FrameReader`` the broker uses. It is a
tool for ``router bench``, not a general client.
"""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass
from urllib.parse import unquote, urlparse

from router.amqp import spec
from router.amqp.constants import FRAME_METHOD, PROTOCOL_HEADER
from router.amqp.frames import FrameReader, content_frames, method_frame
from router.amqp.properties import BasicProperties
from router.amqp.tables import FieldTable

_DELIVER_ID = b"\x00\x3c\x00\x3c"
_ACK_ID = b"\x00\x3c\x00\x50"
_NACK_ID = b"\x00\x3c\x00\x78"
_CONNECTION_CLOSE_ID = b"\x00\x0a\x00\x32"
_CHANNEL_CLOSE_ID = b"\x00\x14\x00\x28"
_Q = struct.Struct(">Q")

Confirm = tuple[int, bool, bool]
"""A publisher confirm from the broker: (delivery tag, multiple, nack)."""


@dataclass(frozen=True)
class Address:
    host: str
    port: int
    user: str
    password: str
    vhost: str


def parse_url(url: str) -> Address:
    """amqp://user:pass@host:port/vhost (vhost percent-encoded; default "/")."""
    parsed = urlparse(url)
    if parsed.scheme != "amqp":
        raise ValueError(f"expected an amqp:// URL, got {url!r}")
    vhost = unquote(parsed.path[1:]) if parsed.path not in ("", "/") else "/"
    return Address(
        parsed.hostname or "127.0.0.1",
        parsed.port or 5672,
        unquote(parsed.username or "guest"),
        unquote(parsed.password or "guest"),
        vhost,
    )


class BlockingClient:
    """One connection with one channel (number 1)."""

    def __init__(self, url: str, *, timeout: float = 30.0) -> None:
        self.address = parse_url(url)
        self.sock = socket.create_connection((self.address.host, self.address.port), timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.reader = FrameReader()
        self.frame_max = 131072
        self._pending: list[tuple[int, int, bytes]] = []
        self._handshake()

    # --- plumbing ------------------------------------------------------------------------------

    def _read_frames(self) -> list[tuple[int, int, bytes]]:
        if self._pending:
            frames, self._pending = self._pending, []
            return frames
        while True:
            data = self.sock.recv(1 << 20)
            if not data:
                raise ConnectionError("broker closed the connection")
            self.reader.feed(data)
            frames = self.reader.read_frames()
            if frames:
                return frames

    def _expect(self, cls: type[spec.Method]) -> spec.Method:
        while True:
            frames = self._read_frames()
            for index, (frame_type, _channel, payload) in enumerate(frames):
                if frame_type != FRAME_METHOD:
                    continue
                method = spec.decode_method(payload)
                if isinstance(method, cls):
                    self._pending = frames[index + 1 :] + self._pending
                    return method
                if isinstance(method, (spec.ConnectionClose, spec.ChannelClose)):
                    raise ConnectionError(f"{method.reply_code} {method.reply_text}")

    def call(self, method: spec.Method, reply: type[spec.Method], channel: int = 1) -> spec.Method:
        self.sock.sendall(method_frame(channel, method))
        return self._expect(reply)

    def _handshake(self) -> None:
        self.sock.sendall(PROTOCOL_HEADER)
        self._expect(spec.ConnectionStart)
        response = f"\0{self.address.user}\0{self.address.password}".encode()
        self.sock.sendall(
            method_frame(
                0,
                spec.ConnectionStartOk(
                    FieldTable({"product": "router-bench"}), "PLAIN", response, "en_US"
                ),
            )
        )
        tune = self._expect(spec.ConnectionTune)
        assert isinstance(tune, spec.ConnectionTune)
        self.frame_max = tune.frame_max or 131072
        self.sock.sendall(
            method_frame(0, spec.ConnectionTuneOk(tune.channel_max, self.frame_max, 0))
        )
        self.call(spec.ConnectionOpen(self.address.vhost), spec.ConnectionOpenOk, channel=0)
        self.call(spec.ChannelOpen(), spec.ChannelOpenOk)

    def close(self) -> None:
        try:
            self.call(spec.ConnectionClose(200, "bench done"), spec.ConnectionCloseOk, channel=0)
        except (OSError, ConnectionError):
            pass
        self.sock.close()

    # --- operations ----------------------------------------------------------------------------

    def declare_queue(
        self,
        name: str,
        *,
        durable: bool = False,
        auto_delete: bool = False,
        arguments: dict[str, object] | None = None,
    ) -> None:
        self.call(
            spec.QueueDeclare(
                queue=name,
                durable=durable,
                auto_delete=auto_delete,
                arguments=FieldTable(arguments or {}),
            ),
            spec.QueueDeclareOk,
        )

    def message_count(self, queue: str) -> int:
        """Ready messages in ``queue`` (a passive queue.declare)."""
        reply = self.call(spec.QueueDeclare(queue=queue, passive=True), spec.QueueDeclareOk)
        assert isinstance(reply, spec.QueueDeclareOk)
        return reply.message_count

    def pipeline(self, methods: list[spec.Method], reply: type[spec.Method]) -> None:
        """Send every method at once, then wait for as many replies (declares, binds, deletes
        by the thousand without a round trip each)."""
        for start in range(0, len(methods), 1000):
            chunk = methods[start : start + 1000]
            self.sock.sendall(b"".join(method_frame(1, m) for m in chunk))
            for _ in chunk:
                self._expect(reply)

    def delete_queue(self, name: str) -> int:
        """Delete the queue; returns the number of messages it still held."""
        reply = self.call(spec.QueueDelete(queue=name), spec.QueueDeleteOk)
        assert isinstance(reply, spec.QueueDeleteOk)
        return reply.message_count

    def qos(self, prefetch: int) -> None:
        self.call(spec.BasicQos(0, prefetch, False), spec.BasicQosOk)

    def consume(self, queue: str, tag: str = "bench") -> None:
        self.call(spec.BasicConsume(queue=queue, consumer_tag=tag), spec.BasicConsumeOk)

    def confirm_select(self) -> None:
        """Put the channel in confirm mode: every publish from now on is numbered from 1 and
        settled by a ``basic.ack`` or ``basic.nack`` from the broker (read with
        ``receive_confirms``)."""
        self.call(spec.ConfirmSelect(), spec.ConfirmSelectOk)

    def publish_batch(
        self,
        exchange: str,
        routing_key: str,
        body: bytes,
        count: int,
        properties: BasicProperties | None = None,
    ) -> bytes:
        """Encode ``count`` identical publishes as one buffer (send it with ``send``)."""
        one = method_frame(1, spec.BasicPublish(exchange=exchange, routing_key=routing_key)) + (
            b"".join(
                content_frames(
                    1, 60, (properties or BasicProperties()).encode(), body, self.frame_max
                )
            )
        )
        return one * count

    @staticmethod
    def publish_bytes(
        exchange: str, routing_key: str, body: bytes, raw_properties: bytes, frame_max: int
    ) -> bytes:
        """One publish (method, header and body frames) on channel 1."""
        method = method_frame(1, spec.BasicPublish(exchange=exchange, routing_key=routing_key))
        return method + b"".join(content_frames(1, 60, raw_properties, body, frame_max))

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def receive_deliveries(self) -> tuple[int, int]:
        """Block for the next chunk; returns (deliveries in it, the last delivery tag)."""
        count = 0
        last = 0
        for frame_type, _channel, payload in self._read_frames():
            if frame_type == FRAME_METHOD:
                method_id = payload[:4]
                if method_id == _DELIVER_ID:
                    count += 1
                    offset = 5 + payload[4]
                    last = _Q.unpack_from(payload, offset)[0]
                elif method_id in (_CONNECTION_CLOSE_ID, _CHANNEL_CLOSE_ID):
                    self._closed_by_broker(payload)
        return count, last

    def receive_confirms(self) -> list[Confirm]:
        """Block for the next chunk; returns the publisher confirms in it, in order, as
        (delivery tag, multiple, nack). Other frames (deliveries, returns) are skipped; a
        ``connection.close`` or ``channel.close`` from the broker raises ``ConnectionError``."""
        confirms: list[Confirm] = []
        for frame_type, _channel, payload in self._read_frames():
            if frame_type != FRAME_METHOD:
                continue
            method_id = payload[:4]
            if method_id == _ACK_ID:
                confirms.append((_Q.unpack_from(payload, 4)[0], bool(payload[12] & 1), False))
            elif method_id == _NACK_ID:
                confirms.append((_Q.unpack_from(payload, 4)[0], bool(payload[12] & 1), True))
            elif method_id in (_CONNECTION_CLOSE_ID, _CHANNEL_CLOSE_ID):
                self._closed_by_broker(payload)
        return confirms

    def _closed_by_broker(self, payload: bytes) -> None:
        method = spec.decode_method(payload)
        assert isinstance(method, (spec.ConnectionClose, spec.ChannelClose))
        raise ConnectionError(f"closed by the broker: {method.reply_code} {method.reply_text}")

    def ack(self, delivery_tag: int, multiple: bool = True) -> None:
        self.sock.sendall(method_frame(1, spec.BasicAck(delivery_tag, multiple)))
