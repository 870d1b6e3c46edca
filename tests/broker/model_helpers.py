"""Test helpers for the sans-IO broker model: a fake AMQP client and a fake consumer.

``FakeClient`` drives a ``Session`` with bytes, as a socket would: it does the handshake, encodes
methods and publishes into frames, and decodes everything the session sends back into
``Received`` records (content methods carry their properties and body). No sockets, no clock.

``FakeConsumer`` stands in for ``router.broker.channel.Consumer`` in ``Queue`` tests: it takes
messages while it has capacity and records them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from router.amqp import spec
from router.amqp.constants import FRAME_BODY, FRAME_HEADER, FRAME_METHOD, PROTOCOL_HEADER
from router.amqp.frames import FrameReader, content_frames, method_frame
from router.amqp.properties import BasicProperties, decode_content_header, decode_properties
from router.amqp.tables import FieldTable
from router.broker.broker import Broker, BrokerConfig
from router.broker.message import Message, QueuedMessage
from router.broker.ports import CountingIds
from router.broker.queues import Queue
from router.broker.session import Session


def make_broker() -> Broker:
    return Broker(BrokerConfig(), ids=CountingIds())


def message(
    routing_key: str = "", body: bytes = b"", *, headers: FieldTable | None = None
) -> Message:
    """A Message as the session would build it, with optional headers."""
    properties = BasicProperties(headers=headers).encode()
    return Message("x", routing_key, properties, body)


@dataclass
class Received:
    """One method the session sent, with its content when it has one."""

    channel: int
    method: spec.Method
    properties: BasicProperties | None = None
    body: bytes = b""


@dataclass
class _Pending:
    method: spec.Method
    size: int = -1
    properties: BasicProperties | None = None
    parts: list[bytes] = field(default_factory=list)


class FakeClient:
    """A client connection to ``broker`` through a ``Session``, fed and read as bytes."""

    def __init__(
        self,
        broker: Broker,
        *,
        capabilities: dict[str, Any] | None = None,
        vhost: str = "/",
        now: float = 0.0,
        user: str = "guest",
        password: str = "guest",
        expect_open: bool = True,
    ) -> None:
        self.broker = broker
        self.now = now
        self.session = Session(broker, now=now)
        self._reader = FrameReader()
        self._pending: dict[int, _Pending] = {}
        self.received: list[Received] = []
        self._taken = 0
        client_properties = FieldTable({"product": "fake-client"})
        if capabilities is not None:
            client_properties["capabilities"] = FieldTable(capabilities)
        self.send(PROTOCOL_HEADER)
        assert isinstance(self.take()[-1].method, spec.ConnectionStart)
        self.send(
            method_frame(
                0,
                spec.ConnectionStartOk(
                    client_properties, "PLAIN", f"\x00{user}\x00{password}".encode()
                ),
            )
        )
        assert isinstance(self.take()[-1].method, spec.ConnectionTune)
        self.send(
            method_frame(0, spec.ConnectionTuneOk(2047, 131072, 0)),
            method_frame(0, spec.ConnectionOpen(vhost)),
        )
        if expect_open:
            assert isinstance(self.take()[-1].method, spec.ConnectionOpenOk)

    # --- input to the session ------------------------------------------------------------------

    def send(self, *chunks: bytes) -> None:
        """Feed bytes to the session in ONE receive_data call."""
        self.session.receive_data(b"".join(chunks), self.now)

    def send_methods(self, channel: int, *methods: spec.Method) -> list[Received]:
        self.send(*(method_frame(channel, m) for m in methods))
        return self.take()

    def call(self, channel: int, method: spec.Method) -> list[Received]:
        """Send one method; return everything the session sent back."""
        return self.send_methods(channel, method)

    @staticmethod
    def publish_bytes(
        channel: int,
        exchange: str,
        routing_key: str,
        body: bytes = b"",
        *,
        properties: BasicProperties | None = None,
        mandatory: bool = False,
        immediate: bool = False,
    ) -> bytes:
        raw = (properties or BasicProperties()).encode()
        frames = [
            method_frame(
                channel,
                spec.BasicPublish(0, exchange, routing_key, mandatory, immediate),
            ),
            *content_frames(channel, 60, raw, body, 131072),
        ]
        return b"".join(frames)

    def publish(
        self, channel: int, exchange: str, routing_key: str, body: bytes = b"", **kwargs: Any
    ) -> list[Received]:
        self.send(self.publish_bytes(channel, exchange, routing_key, body, **kwargs))
        return self.take()

    def ack(self, channel: int, tag: int, multiple: bool = False) -> list[Received]:
        return self.call(channel, spec.BasicAck(tag, multiple))

    # --- conveniences ----------------------------------------------------------------------------

    def open_channel(self, channel: int = 1) -> None:
        replies = self.call(channel, spec.ChannelOpen())
        assert [type(r.method) for r in replies] == [spec.ChannelOpenOk], replies

    def declare_queue(self, channel: int, name: str, **kwargs: Any) -> spec.Method:
        return self.call(channel, spec.QueueDeclare(queue=name, **kwargs))[-1].method

    def consume(self, channel: int, queue: str, tag: str = "", **kwargs: Any) -> list[Received]:
        return self.call(channel, spec.BasicConsume(queue=queue, consumer_tag=tag, **kwargs))

    # --- output of the session -------------------------------------------------------------------

    def pump(self) -> None:
        """Read whatever the session has to send and decode it."""
        data = self.session.data_to_send(self.now)
        self.session.sent()
        if not data:
            return
        self._reader.feed(data)
        for frame_type, channel, payload in self._reader.read_frames():
            if frame_type == FRAME_METHOD:
                method = spec.decode_method(payload)
                if method.HAS_CONTENT:
                    self._pending[channel] = _Pending(method)
                else:
                    self.received.append(Received(channel, method))
            elif frame_type == FRAME_HEADER:
                pending = self._pending[channel]
                _class_id, size, raw = decode_content_header(payload)
                pending.size = size
                pending.properties = decode_properties(raw)
                if size == 0:
                    self._complete(channel)
            elif frame_type == FRAME_BODY:
                pending = self._pending[channel]
                pending.parts.append(payload)
                if sum(len(p) for p in pending.parts) >= pending.size:
                    self._complete(channel)

    def _complete(self, channel: int) -> None:
        pending = self._pending.pop(channel)
        self.received.append(
            Received(channel, pending.method, pending.properties, b"".join(pending.parts))
        )

    def take(self) -> list[Received]:
        """Everything received since the last ``take``."""
        self.pump()
        new = self.received[self._taken :]
        self._taken = len(self.received)
        return new

    def methods(self, channel: int | None = None, kind: type | None = None) -> list[Any]:
        """Methods received so far (all of them, not only new ones), filtered."""
        self.pump()
        return [
            r.method
            for r in self.received
            if (channel is None or r.channel == channel)
            and (kind is None or isinstance(r.method, kind))
        ]

    def deliveries(self, channel: int) -> list[Received]:
        self.pump()
        return [
            r
            for r in self.received
            if r.channel == channel and isinstance(r.method, spec.BasicDeliver)
        ]

    def bodies(self, channel: int) -> list[bytes]:
        return [r.body for r in self.deliveries(channel)]

    def channel_close(self, channel: int) -> spec.ChannelClose | None:
        closes = self.methods(channel, spec.ChannelClose)
        return closes[-1] if closes else None

    def connection_close(self) -> spec.ConnectionClose | None:
        closes = self.methods(0, spec.ConnectionClose)
        return closes[-1] if closes else None


class FakeConsumer:
    """Stands in for a channel's Consumer in Queue tests: takes up to ``capacity`` messages."""

    def __init__(
        self,
        name: str,
        *,
        priority: int = 0,
        capacity: int | None = None,
        no_ack: bool = False,
        timeout: int | None = None,
    ) -> None:
        self.name = name
        self.priority = priority
        self.capacity = capacity
        self.no_ack = no_ack
        self.exclusive = False
        self.timeout = timeout
        self.got: list[QueuedMessage] = []
        self.leases_expired: list[QueuedMessage] = []

    def __repr__(self) -> str:
        return f"<FakeConsumer {self.name}>"

    def can_take(self) -> bool:
        return self.capacity is None or len(self.got) < self.capacity

    def deliver(self, queue: Queue, entry: QueuedMessage) -> None:
        self.got.append(entry)

    def lease_expired(self, queue: Queue, entry: QueuedMessage) -> None:
        self.leases_expired.append(entry)

    @property
    def bodies(self) -> list[bytes]:
        return [entry.message.body for entry in self.got]
