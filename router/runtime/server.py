"""The AMQP listener and per-connection tasks: the edge where bytes meet the sans-IO core.

Each connection has three tasks in its own nursery: a reader (one ``receive_some`` → one
``Session.receive_data`` that processes every frame in the chunk synchronously), a writer (one
``send_all`` of everything queued, per wake-up) and a timer (heartbeats and handshake/close
deadlines from ``Session.next_deadline``). Output produced for a connection by another connection's
publish wakes that connection's writer. One catch-all per connection turns a bug into a 541 close,
so one bad client never hurts another.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from typing import Any

import trio

from router.amqp.constants import INTERNAL_ERROR
from router.amqp.errors import ChannelError, ConnectionError
from router.broker.broker import Broker
from router.broker.session import Session

log = logging.getLogger("router.amqp")

READ_SIZE = 256 * 1024
# After a session ends, how long its last bytes (connection.close, close-ok) may take to send
# before the socket is closed anyway: a client that stopped reading cannot hold a connection.
FLUSH_GRACE = 5.0


class _Wake:
    """A re-armable wake-up for one waiting task."""

    __slots__ = ("_event",)

    def __init__(self) -> None:
        self._event = trio.Event()

    def set(self) -> None:
        self._event.set()

    async def wait(self) -> None:
        await self._event.wait()
        self._event = trio.Event()


class AMQPServer:
    """Accepts AMQP connections for a broker; ``shutdown()`` closes them all with 320."""

    def __init__(self, broker: Broker, *, shutdown_grace: float = 2.0) -> None:
        self.broker = broker
        self.shutdown_grace = shutdown_grace
        self._connections: dict[Session, _Wake] = {}
        self._connection_gone = trio.Event()
        self.stopping = False
        # told of every read (bytes, now): the memory monitor samples early under heavy input
        self.on_read: Callable[[int, float], None] | None = None
        broker.on_channel_error = _log_channel_error

    async def serve(
        self,
        host: str,
        port: int,
        *,
        task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Listen on host:port and serve until cancelled. Reports the bound port when ready."""
        listeners = await trio.open_tcp_listeners(port, host=host)
        bound = listeners[0].socket.getsockname()[1]
        log.info("listening for AMQP 0-9-1 on %s:%d", host, bound)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self.run_broker_timer)
            for listener in listeners:
                nursery.start_soon(self._accept_loop, listener, nursery)
            task_status.started(bound)

    async def run_broker_timer(self) -> None:
        """Tick the broker at each queue deadline (TTL, scheduled delivery, retries, leases,
        x-expires). One task for the whole broker; an earlier deadline wakes it at once."""
        broker = self.broker
        broker.clock.now = trio.current_time()
        broker.clock.wall_offset = time.time() - broker.clock.now
        poke = _Wake()
        broker.on_earlier_deadline = lambda deadline: poke.set()
        while True:
            deadline = broker.next_deadline()
            with trio.move_on_at(deadline if deadline is not None else math.inf):
                await poke.wait()
                continue
            try:
                broker.tick(trio.current_time())
            except Exception:
                log.exception("internal error while running queue deadlines")

    async def _accept_loop(self, listener: trio.SocketListener, nursery: trio.Nursery) -> None:
        async with listener:
            while True:
                try:
                    stream = await listener.accept()
                except OSError as error:  # e.g. EMFILE: log, back off, keep serving
                    log.warning("accept failed: %s", error)
                    await trio.sleep(0.1)
                    continue
                if self.stopping:
                    await stream.aclose()
                    continue
                nursery.start_soon(self.handle_connection, stream)

    async def handle_connection(self, stream: trio.abc.Stream) -> None:
        peer = _peer_name(stream)
        session = Session(self.broker, now=trio.current_time(), peer=peer)
        session.local = _local_name(stream)
        wake = _Wake()
        poke = _Wake()
        unblocked = _Wake()
        session.wakeup = wake.set
        session.on_unblocked = unblocked.set
        self._connections[session] = wake
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._reader, stream, session, wake, poke, unblocked)
                nursery.start_soon(self._writer, stream, session, wake, nursery.cancel_scope)
                nursery.start_soon(self._timer, session, wake, poke, nursery.cancel_scope)
        finally:
            self._connections.pop(session, None)
            if not session.ended:
                session.receive_data(b"", trio.current_time())
            with trio.CancelScope(shield=True):
                await _close_quietly(stream)
            if session.opened or session.vhost is not None or session.end_reason:
                log.info(
                    "connection closed %s (user %r): %s",
                    peer,
                    session.conn.user,
                    session.end_reason or session.conn.close_reason or "closed",
                )
            self._connection_gone.set()

    def _guard(self, session: Session, action: Callable[..., Any], *args: Any) -> None:
        """Run a session step; a bug closes this connection with 541, never the broker."""
        try:
            action(*args)
        except Exception:
            log.exception("internal error on connection %s; closing it with 541", session.peer)
            try:
                session.close(ConnectionError(INTERNAL_ERROR, "internal error, see the broker log"))
            except Exception:
                log.exception("could not close connection %s cleanly", session.peer)
                session.ended = True

    async def _reader(
        self,
        stream: trio.abc.Stream,
        session: Session,
        wake: _Wake,
        poke: _Wake,
        unblocked: _Wake,
    ) -> None:
        was_open = False
        while not session.ended and not session.closed:
            try:
                data = await stream.receive_some(READ_SIZE)
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                data = b""
            deadline = session.next_deadline()
            now = trio.current_time()
            self._guard(session, session.receive_data, bytes(data), now)
            if self.on_read is not None:
                self.on_read(len(data), now)
            if session.opened and not was_open:
                was_open = True
                log.info(
                    "connection opened %s (user %r, vhost %r)",
                    session.peer,
                    session.conn.user,
                    session.conn.virtual_host,
                )
            wake.set()
            if session.next_deadline() != deadline or session.closed or session.ended:
                poke.set()
            if not data:
                break
            if session.blocked:
                # flow control: a publisher during a resource alarm is not read until it clears
                # (the timer keeps heartbeats going out; the writer keeps deliveries going)
                poke.set()
                while session.blocked and not session.closed and not session.ended:
                    await unblocked.wait()
                poke.set()

    async def _writer(
        self, stream: trio.abc.Stream, session: Session, wake: _Wake, scope: trio.CancelScope
    ) -> None:
        try:
            while True:
                await wake.wait()
                data = session.data_to_send(trio.current_time())
                if data:
                    await stream.send_all(data)
                    self._guard(session, session.sent)
                if session.closed or session.ended:
                    data = session.data_to_send(trio.current_time())
                    if data:
                        await stream.send_all(data)
                    break
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            self._guard(session, session.receive_data, b"", trio.current_time())
        scope.cancel()

    async def _timer(
        self, session: Session, wake: _Wake, poke: _Wake, scope: trio.CancelScope
    ) -> None:
        while not session.closed and not session.ended:
            deadline = session.next_deadline()
            with trio.move_on_at(deadline if deadline is not None else math.inf):
                await poke.wait()
                continue
            self._guard(session, session.handle_timer, trio.current_time())
            wake.set()
        # The writer closes the connection once its last bytes are out; if the client does not
        # read them, give up after a grace period.
        await trio.sleep(FLUSH_GRACE)
        scope.cancel()

    async def shutdown(self) -> None:
        """Close every connection with 320 CONNECTION_FORCED and wait a grace period."""
        self.stopping = True
        for session, wake in list(self._connections.items()):
            self._guard(session, session.shutdown)
            wake.set()
        with trio.move_on_after(self.shutdown_grace):
            while self._connections:
                await self._connection_gone.wait()
                self._connection_gone = trio.Event()


def _log_channel_error(session: Session, number: int, error: ChannelError) -> None:
    log.info(
        "channel %d of connection %s (user %r) closed by the broker: %s",
        number,
        session.name,
        session.conn.user,
        error.reply_text,
    )


def _local_name(stream: trio.abc.Stream) -> str:
    try:
        host, port = stream.socket.getsockname()[:2]  # type: ignore[attr-defined]
        return f"{host}:{port}"
    except (AttributeError, OSError):
        return ""


def _peer_name(stream: trio.abc.Stream) -> str:
    try:
        host, port = stream.socket.getpeername()[:2]  # type: ignore[attr-defined]
        return f"{host}:{port}"
    except (AttributeError, OSError):
        return "?"


async def _close_quietly(stream: trio.abc.Stream) -> None:
    try:
        await stream.aclose()
    except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
        pass
