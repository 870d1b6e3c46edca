"""AMQPServer at the edge: raw AMQP bytes over in-memory streams, time on pytest-trio's autojump clock.

Each test plays a client by hand (frames built with ``router.amqp``, replies split with
``FrameReader`` and decoded with ``spec.decode_method``) against ``AMQPServer.handle_connection``
running in the test's nursery. With ``autojump_clock`` the 60 s heartbeat, the 10 s handshake
timeout and the 120 s dead-peer timeout are asserted to the exact virtual second, without sleeping.
One test uses real TCP through ``serve``.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Awaitable, Callable
from typing import TypeVar

import pytest
import trio
import trio.testing

from router.amqp import spec
from router.amqp.constants import (
    CONNECTION_FORCED,
    FRAME_BODY,
    FRAME_ERROR,
    FRAME_HEADER,
    FRAME_HEARTBEAT,
    FRAME_METHOD,
    INTERNAL_ERROR,
    PROTOCOL_HEADER,
)
from router.amqp.frames import HEARTBEAT_FRAME, FrameReader, content_frames, method_frame
from router.amqp.properties import BasicProperties, decode_content_header, encode_properties
from router.amqp.tables import FieldTable
from router.broker.broker import Broker
from router.broker.session import Session
from router.runtime.server import FLUSH_GRACE, AMQPServer

M = TypeVar("M", bound=spec.Method)

HEARTBEAT = 60
PLAIN_GUEST = spec.ConnectionStartOk(
    FieldTable({"product": "raw-test-client"}), "PLAIN", b"\x00guest\x00guest", "en_US"
)


class ServerClosed(Exception):
    """The server closed the stream (EOF) while the client was waiting for a frame."""


class RawClient:
    """A hand-driven AMQP client: sends frames, reads frames, notices EOF."""

    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream
        self.reader = FrameReader()
        self.frames: deque[tuple[int, int, bytes]] = deque()
        self.server_done = trio.Event()  # set when the server's handle_connection returns
        self.server_done_at: float | None = None

    async def send(self, *chunks: bytes) -> None:
        await self.stream.send_all(b"".join(chunks))

    async def send_method(self, channel: int, method: spec.Method) -> None:
        await self.send(method_frame(channel, method))

    async def _fill(self) -> None:
        data = await self.stream.receive_some(65536)
        if not data:
            raise ServerClosed
        self.reader.feed(data)

    async def receive_raw(self, size: int) -> bytes:
        """Exactly ``size`` bytes that are not frames (the server's protocol header)."""
        while self.reader.buffered < size:
            await self._fill()
        return self.reader.take(size)

    async def next_frame(self, *, skip_heartbeats: bool = True) -> tuple[int, int, bytes]:
        while True:
            while not self.frames:
                await self._fill()
                self.frames.extend(self.reader.read_frames())
            frame = self.frames.popleft()
            if not (skip_heartbeats and frame[0] == FRAME_HEARTBEAT):
                return frame

    async def expect(self, cls: type[M], channel: int = 0) -> M:
        frame_type, number, payload = await self.next_frame()
        assert frame_type == FRAME_METHOD, f"expected {cls.NAME}, got frame type {frame_type}"
        method = spec.decode_method(payload)
        assert isinstance(method, cls), f"expected {cls.NAME}, got {method!r}"
        assert number == channel, f"{cls.NAME} on channel {number}, expected {channel}"
        return method

    async def expect_content(self, channel: int) -> bytes:
        frame_type, number, payload = await self.next_frame()
        assert (frame_type, number) == (FRAME_HEADER, channel)
        _class_id, size, _properties = decode_content_header(payload)
        body = b""
        while len(body) < size:
            frame_type, number, payload = await self.next_frame()
            assert (frame_type, number) == (FRAME_BODY, channel)
            body += payload
        return body

    async def expect_closed(self) -> list[tuple[int, int, bytes]]:
        """Read until the server closes the stream; returns the frames seen on the way."""
        seen = []
        try:
            while True:
                seen.append(await self.next_frame(skip_heartbeats=False))
        except ServerClosed:
            return seen

    async def handshake(self, heartbeat: int = HEARTBEAT) -> None:
        await self.send(PROTOCOL_HEADER)
        await self.expect(spec.ConnectionStart)
        await self.send_method(0, PLAIN_GUEST)
        tune = await self.expect(spec.ConnectionTune)
        await self.send(
            method_frame(0, spec.ConnectionTuneOk(tune.channel_max, tune.frame_max, heartbeat)),
            method_frame(0, spec.ConnectionOpen("/")),
        )
        await self.expect(spec.ConnectionOpenOk)

    async def open_channel(self, channel: int = 1) -> None:
        await self.send_method(channel, spec.ChannelOpen())
        await self.expect(spec.ChannelOpenOk, channel)

    async def declare_queue(self, name: str, channel: int = 1) -> spec.QueueDeclareOk:
        await self.send_method(channel, spec.QueueDeclare(queue=name))
        return await self.expect(spec.QueueDeclareOk, channel)

    async def publish(self, routing_key: str, body: bytes, channel: int = 1) -> None:
        properties = encode_properties(BasicProperties())
        await self.send(
            method_frame(channel, spec.BasicPublish(exchange="", routing_key=routing_key)),
            *content_frames(channel, 60, properties, body, 131072),
        )

    async def close(self) -> None:
        await self.send_method(0, spec.ConnectionClose(200, "bye", 0, 0))
        await self.expect(spec.ConnectionCloseOk)
        assert await self.expect_closed() == []


StreamPair = Callable[[], tuple[trio.abc.Stream, trio.abc.Stream]]
Connect = Callable[..., Awaitable[RawClient]]


@pytest.fixture
def server() -> AMQPServer:
    return AMQPServer(Broker())


@pytest.fixture
def connect(server: AMQPServer, nursery: trio.Nursery) -> Connect:
    """Open a new in-memory connection to ``server``; its task lives in the test's nursery.

    ``memory_stream_pair`` buffers without limit; ``lockstep_stream_pair`` blocks the server's
    ``send_all`` until the client reads, which is how a client that stops reading looks.
    """

    async def _connect(pair: StreamPair = trio.testing.memory_stream_pair) -> RawClient:
        client_stream, server_stream = pair()
        client = RawClient(client_stream)

        async def run() -> None:
            await server.handle_connection(server_stream)
            client.server_done_at = trio.current_time()
            client.server_done.set()

        nursery.start_soon(run)
        return client

    return _connect


class SpinGuard:
    """Counts ``Session.handle_timer`` calls per instant; a busy loop cancels ``scope``.

    Under the autojump clock a timer that spins at one instant freezes virtual time, so a test
    would hang instead of failing; this turns the spin into a prompt, explained failure.
    """

    LIMIT = 100

    def __init__(self) -> None:
        self.calls: Counter[float] = Counter()
        self.scope = trio.CancelScope()

    @property
    def worst(self) -> tuple[float, int]:
        return max(self.calls.items(), key=lambda item: item[1], default=(0.0, 0))


@pytest.fixture
def spin_guard(monkeypatch: pytest.MonkeyPatch) -> SpinGuard:
    guard = SpinGuard()
    original = Session.handle_timer

    def counted(self: Session, now: float) -> None:
        guard.calls[now] += 1
        if guard.calls[now] > guard.LIMIT:
            guard.scope.cancel()
        original(self, now)

    monkeypatch.setattr(Session, "handle_timer", counted)
    return guard


# --- handshake -----------------------------------------------------------------------------------


async def test_handshake_answers_start_then_tune_then_open_ok(
    connect: Connect, autojump_clock: trio.testing.MockClock
) -> None:
    client = await connect()
    await client.send(PROTOCOL_HEADER)
    start = await client.expect(spec.ConnectionStart)
    assert (start.version_major, start.version_minor) == (0, 9)
    assert set(start.mechanisms.split()) >= {b"PLAIN", b"AMQPLAIN"}
    await client.send_method(0, PLAIN_GUEST)
    tune = await client.expect(spec.ConnectionTune)
    assert (tune.channel_max, tune.frame_max, tune.heartbeat) == (2047, 131072, HEARTBEAT)
    await client.send(
        method_frame(0, spec.ConnectionTuneOk(2047, 131072, HEARTBEAT)),
        method_frame(0, spec.ConnectionOpen("/")),
    )
    await client.expect(spec.ConnectionOpenOk)


async def test_client_without_protocol_header_is_dropped_after_ten_seconds(
    connect: Connect, autojump_clock: trio.testing.MockClock
) -> None:
    client = await connect()
    start = trio.current_time()
    assert await client.expect_closed() == []
    assert trio.current_time() - start == pytest.approx(10.0, abs=1e-6)


async def test_client_stalled_after_protocol_header_is_dropped_ten_seconds_after_connecting(
    connect: Connect, autojump_clock: trio.testing.MockClock
) -> None:
    client = await connect()
    start = trio.current_time()
    await client.send(PROTOCOL_HEADER)
    await client.expect(spec.ConnectionStart)
    assert await client.expect_closed() == []
    assert trio.current_time() - start == pytest.approx(10.0, abs=1e-6)


async def test_wrong_protocol_header_is_answered_with_ours_then_closed(
    connect: Connect, autojump_clock: trio.testing.MockClock
) -> None:
    client = await connect()
    start = trio.current_time()
    await client.send(b"AMQP\x01\x01\x00\x09")  # an AMQP 0-8 client
    assert await client.receive_raw(8) == b"AMQP\x00\x00\x09\x01"
    assert client.reader.buffered == 0
    assert await client.expect_closed() == []
    assert trio.current_time() == start  # at once, not at the handshake timeout


# --- heartbeats ----------------------------------------------------------------------------------


async def test_silent_client_gets_heartbeats_every_30s_and_is_dropped_after_120s(
    connect: Connect, autojump_clock: trio.testing.MockClock
) -> None:
    client = await connect()
    await client.handshake(heartbeat=HEARTBEAT)
    opened = trio.current_time()
    heartbeats_at = []
    with trio.fail_after(1000):
        while True:
            try:
                frame = await client.next_frame(skip_heartbeats=False)
            except ServerClosed:
                closed_at = trio.current_time() - opened
                break
            assert frame == (FRAME_HEARTBEAT, 0, b"")
            heartbeats_at.append(trio.current_time() - opened)
    assert heartbeats_at == pytest.approx([30.0, 60.0, 90.0], abs=1e-6)
    assert closed_at == pytest.approx(2 * HEARTBEAT, abs=1e-6)


async def test_client_sending_heartbeats_every_30s_is_kept_for_ten_minutes(
    connect: Connect, autojump_clock: trio.testing.MockClock
) -> None:
    client = await connect()
    await client.handshake(heartbeat=HEARTBEAT)
    opened = trio.current_time()

    async def beat() -> None:
        while True:
            await trio.sleep(HEARTBEAT / 2)
            await client.send(HEARTBEAT_FRAME)

    received = []
    async with trio.open_nursery() as nursery:
        nursery.start_soon(beat)
        with trio.move_on_at(opened + 600):
            while True:
                try:
                    received.append(await client.next_frame(skip_heartbeats=False))
                except ServerClosed:
                    pytest.fail(f"dropped after {trio.current_time() - opened} s")
        nursery.cancel_scope.cancel()
    assert received and set(received) == {(FRAME_HEARTBEAT, 0, b"")}
    await client.open_channel(1)  # still served after ten minutes


async def test_client_tuning_heartbeat_zero_gets_no_heartbeats_and_is_never_dropped(
    connect: Connect, autojump_clock: trio.testing.MockClock
) -> None:
    client = await connect()
    await client.handshake(heartbeat=0)
    with trio.move_on_after(3600):
        frame = await client.next_frame(skip_heartbeats=False)
        pytest.fail(f"unexpected frame {frame!r}")
    await client.open_channel(1)  # still served after an hour of silence both ways


async def test_timer_does_not_busy_loop_while_a_client_is_not_reading(
    connect: Connect, autojump_clock: trio.testing.MockClock, spin_guard: SpinGuard
) -> None:
    client = await connect(trio.testing.lockstep_stream_pair)
    await client.handshake(heartbeat=HEARTBEAT)
    with spin_guard.scope:
        await trio.sleep(110)  # silent, not reading, short of the 120 s dead-peer limit
    at, calls = spin_guard.worst
    assert calls < 10, f"handle_timer ran {calls} times at t={at}"


async def test_client_that_stops_reading_is_dropped_after_two_missed_heartbeat_intervals(
    connect: Connect, autojump_clock: trio.testing.MockClock, spin_guard: SpinGuard
) -> None:
    client = await connect(trio.testing.lockstep_stream_pair)
    await client.handshake(heartbeat=HEARTBEAT)
    opened = trio.current_time()
    with spin_guard.scope, trio.move_on_after(1000):
        await client.server_done.wait()
    assert client.server_done_at is not None, "the server never closed the connection"
    # the session ends after two silent intervals; the socket closes once the last bytes had
    # FLUSH_GRACE to go out (this client reads nothing, so they never do)
    assert client.server_done_at - opened == pytest.approx(2 * HEARTBEAT + FLUSH_GRACE, abs=1e-6)


# --- closing -------------------------------------------------------------------------------------


async def test_shutdown_closes_open_connections_with_320_connection_forced(
    server: AMQPServer, connect: Connect, autojump_clock: trio.testing.MockClock
) -> None:
    client = await connect()
    await client.handshake()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(server.shutdown)
        close = await client.expect(spec.ConnectionClose)
        assert close.reply_code == CONNECTION_FORCED
        assert "CONNECTION_FORCED" in close.reply_text
        assert "shutdown" in close.reply_text
        await client.send_method(0, spec.ConnectionCloseOk())
        assert await client.expect_closed() == []


async def test_shutdown_returns_once_every_client_has_answered_close_ok(
    server: AMQPServer, connect: Connect, autojump_clock: trio.testing.MockClock
) -> None:
    client = await connect()
    await client.handshake()
    start = trio.current_time()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(server.shutdown)
        await client.expect(spec.ConnectionClose)
        await client.send_method(0, spec.ConnectionCloseOk())
    assert trio.current_time() - start < server.shutdown_grace


async def test_shutdown_stops_waiting_for_a_silent_client_after_the_grace_period(
    server: AMQPServer, connect: Connect, autojump_clock: trio.testing.MockClock
) -> None:
    client = await connect()
    await client.handshake()
    start = trio.current_time()
    await server.shutdown()  # the client never answers close-ok
    assert trio.current_time() - start == pytest.approx(server.shutdown_grace, abs=1e-6)
    await client.expect(spec.ConnectionClose)


async def test_shutdown_waits_for_connections_opened_after_an_earlier_one_closed(
    server: AMQPServer, connect: Connect, autojump_clock: trio.testing.MockClock
) -> None:
    earlier = await connect()
    await earlier.handshake()
    await earlier.close()
    client = await connect()
    await client.handshake()
    start = trio.current_time()
    returned_after: list[float] = []

    async def stop() -> None:
        await server.shutdown()
        returned_after.append(trio.current_time() - start)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(stop)
        await client.expect(spec.ConnectionClose)
        await trio.sleep(1)  # a client that takes a second to answer, well within the grace
        await client.send_method(0, spec.ConnectionCloseOk())
        assert await client.expect_closed() == []
    assert returned_after == pytest.approx([1.0], abs=1e-6)


async def test_client_connection_close_is_answered_with_close_ok_then_stream_closed(
    connect: Connect, autojump_clock: trio.testing.MockClock
) -> None:
    client = await connect()
    await client.handshake()
    await client.open_channel(1)
    await client.send_method(0, spec.ConnectionClose(200, "goodbye", 0, 0))
    await client.expect(spec.ConnectionCloseOk)
    assert await client.expect_closed() == []


# --- messages across connections -----------------------------------------------------------------


async def test_message_published_on_one_connection_is_delivered_to_a_consumer_on_another(
    connect: Connect, autojump_clock: trio.testing.MockClock
) -> None:
    publisher, consumer = await connect(), await connect()
    await publisher.handshake()
    await consumer.handshake()
    await publisher.open_channel(1)
    await publisher.declare_queue("work")
    await publisher.publish("work", b"hello across connections")
    # the publish is processed before the confirm-less round trip below returns
    declare_ok = await publisher.declare_queue("work")
    assert declare_ok.message_count == 1

    await consumer.open_channel(1)
    await consumer.send_method(1, spec.BasicConsume(queue="work", consumer_tag="c1", no_ack=True))
    await consumer.expect(spec.BasicConsumeOk, 1)
    deliver = await consumer.expect(spec.BasicDeliver, 1)
    assert (deliver.consumer_tag, deliver.routing_key, deliver.delivery_tag) == ("c1", "work", 1)
    assert await consumer.expect_content(1) == b"hello across connections"


async def test_consumer_on_one_connection_receives_a_later_publish_from_another(
    connect: Connect, autojump_clock: trio.testing.MockClock
) -> None:
    publisher, consumer = await connect(), await connect()
    await consumer.handshake()
    await consumer.open_channel(1)
    await consumer.declare_queue("later")
    await consumer.send_method(1, spec.BasicConsume(queue="later", consumer_tag="c1", no_ack=True))
    await consumer.expect(spec.BasicConsumeOk, 1)

    await publisher.handshake()
    await publisher.open_channel(1)
    await publisher.publish("later", b"woken by another connection")
    await consumer.expect(spec.BasicDeliver, 1)
    assert await consumer.expect_content(1) == b"woken by another connection"


# --- errors stay on their connection -------------------------------------------------------------


async def test_garbage_after_handshake_gets_501_and_other_connections_keep_working(
    connect: Connect, autojump_clock: trio.testing.MockClock
) -> None:
    bad, good = await connect(), await connect()
    await bad.handshake()
    await good.handshake()
    await bad.send(b"this is not an AMQP frame at all")
    start = trio.current_time()
    close = await bad.expect(spec.ConnectionClose)
    assert close.reply_code == FRAME_ERROR
    assert close.reply_text.startswith("FRAME_ERROR")
    # the bad client never answers; the server hangs up after its close timeout at the latest
    await bad.expect_closed()
    assert trio.current_time() - start <= 10.0 + 1e-6

    await good.open_channel(1)
    assert (await good.declare_queue("still-fine")).queue == "still-fine"


async def test_internal_error_closes_only_that_connection_with_541(
    connect: Connect, autojump_clock: trio.testing.MockClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    original = Session._publish

    def broken_publish(self: Session, channel: object, event: object) -> None:
        if getattr(event, "routing_key", "") == "boom":
            raise RuntimeError("injected bug")
        original(self, channel, event)  # type: ignore[arg-type]

    monkeypatch.setattr(Session, "_publish", broken_publish)
    bad, good = await connect(), await connect()
    await bad.handshake()
    await good.handshake()
    await bad.open_channel(1)
    await bad.publish("boom", b"triggers the bug")
    close = await bad.expect(spec.ConnectionClose)
    assert close.reply_code == INTERNAL_ERROR
    assert "INTERNAL_ERROR" in close.reply_text
    await bad.send_method(0, spec.ConnectionCloseOk())
    assert await bad.expect_closed() == []

    await good.open_channel(1)
    await good.declare_queue("ok")
    await good.publish("ok", b"fine")
    await good.send_method(1, spec.BasicConsume(queue="ok", consumer_tag="c", no_ack=True))
    await good.expect(spec.BasicConsumeOk, 1)
    await good.expect(spec.BasicDeliver, 1)
    assert await good.expect_content(1) == b"fine"


# --- real TCP ------------------------------------------------------------------------------------


async def test_serve_reports_its_bound_port_and_accepts_a_tcp_handshake() -> None:
    server = AMQPServer(Broker())
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            port = await nursery.start(server.serve, "127.0.0.1", 0)
            assert isinstance(port, int) and port > 0
            client = RawClient(await trio.open_tcp_stream("127.0.0.1", port))
            await client.handshake()
            await client.close()
            nursery.cancel_scope.cancel()
