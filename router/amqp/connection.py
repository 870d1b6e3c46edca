"""The server side of one AMQP 0-9-1 connection, sans-IO.

``ServerConnection`` turns bytes into events and method calls into bytes. It owns the protocol
header check, the handshake (start / start-ok with PLAIN or AMQPLAIN, tune / tune-ok, open),
heartbeats both ways, the open/closing state of each channel, content assembly (method + header +
bodies → one ``Publish``) and connection close in both directions. It knows nothing of queues.

Time is a parameter: ``receive_data(data, now)``, ``data_to_send(now)``, ``next_deadline()``,
``handle_timer(now)``. The caller (runtime) does the I/O; the session reacts to the events.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import NamedTuple

from router.amqp import fastpath
from router.amqp.constants import (
    ACCESS_REFUSED,
    CHANNEL_ERROR,
    COMMAND_INVALID,
    FRAME_BODY,
    FRAME_ERROR,
    FRAME_HEADER,
    FRAME_HEARTBEAT,
    FRAME_METHOD,
    FRAME_MIN_SIZE,
    NOT_ALLOWED,
    PRECONDITION_FAILED,
    PROTOCOL_HEADER,
    REPLY_NAMES,
    UNEXPECTED_FRAME,
)
from router.amqp.errors import (
    AMQPError,
    ChannelError,
    ConnectionError,
    FrameError,
    FramingError,
    fit_shortstr,
)
from router.amqp.frames import HEARTBEAT_FRAME, FrameReader, method_frame
from router.amqp.properties import decode_content_header, scan_full
from router.amqp.spec import (
    ChannelClose,
    ChannelCloseOk,
    ChannelOpen,
    ConnectionClose,
    ConnectionCloseOk,
    ConnectionOpen,
    ConnectionOpenOk,
    ConnectionStart,
    ConnectionStartOk,
    ConnectionTune,
    ConnectionTuneOk,
    ConnectionUpdateSecret,
    ConnectionUpdateSecretOk,
    Method,
    decode_method,
)
from router.amqp.tables import FieldTable, decode_value

_U32 = struct.Struct(">I")

# --- events ------------------------------------------------------------------------------------


class OpenRequested(NamedTuple):
    """The client sent connection.open; answer with ``accept_open()`` or ``close(...)``."""

    virtual_host: str
    user: str
    client_properties: FieldTable


class MethodReceived(NamedTuple):
    """A method on an open channel (channel.open included), other than the fast-path ones."""

    channel: int
    method: Method


class Publish(NamedTuple):
    """A complete basic.publish: method, properties (raw bytes) and body."""

    channel: int
    exchange: str
    routing_key: str
    mandatory: bool
    immediate: bool
    properties: bytes
    body: bytes
    delivery_mode: int
    priority: int | None
    expiration: str | None
    # as received, for Message to reuse: exchange + routing key shortstrs, header frame payload
    exchange_rk: bytes | None = None
    header_payload: bytes | None = None
    # decoded once at publish (and validated); shared by publishes with identical properties,
    # so whoever must change headers (dead-lettering) copies the table first
    headers: FieldTable | None = None


class Ack(NamedTuple):
    channel: int
    delivery_tag: int
    multiple: bool


class Nack(NamedTuple):
    channel: int
    delivery_tag: int
    multiple: bool
    requeue: bool


class Reject(NamedTuple):
    channel: int
    delivery_tag: int
    requeue: bool


class CloseReceived(NamedTuple):
    """The client closed the connection; close-ok is already queued."""

    reply_code: int
    reply_text: str


class ChannelFailed(NamedTuple):
    """The connection closed a channel by itself (e.g. a message over the size limit); the
    session must release what the channel held."""

    channel: int
    error: ChannelError


class Terminated(NamedTuple):
    """The connection is over: flush what is left to send, then close the socket."""

    reason: str


Event = (
    OpenRequested
    | MethodReceived
    | Publish
    | Ack
    | Nack
    | Reject
    | CloseReceived
    | ChannelFailed
    | Terminated
)

# --- states ------------------------------------------------------------------------------------

AWAIT_HEADER = "await-header"
AWAIT_START_OK = "await-start-ok"
AWAIT_TUNE_OK = "await-tune-ok"
AWAIT_OPEN = "await-open"
AWAIT_OPEN_ANSWER = "await-open-answer"
OPEN = "open"
CLOSING = "closing"  # we sent connection.close, waiting for close-ok
CLOSED = "closed"

HANDSHAKE_TIMEOUT = 10.0
# content headers and property scans remembered per channel (a publisher repeats a few)
SEEN_MAX = 64
MAX_MESSAGE_SIZE = (
    128 * 1024 * 1024
)  # RabbitMQ 3.10's default max_message_size  # RabbitMQ's handshake_timeout
CLOSE_TIMEOUT = 10.0  # how long we wait for close-ok after our connection.close


class _Channel:
    """Per-channel wire state: open or closing, and a content being assembled."""

    __slots__ = (
        "closing",
        "exchange",
        "exchange_rk",
        "header_payload",
        "headers_seen",
        "immediate",
        "mandatory",
        "parts",
        "properties",
        "received",
        "routing_key",
        "scanned",
        "size",
        "stage",
    )

    def __init__(self) -> None:
        self.closing = False
        self.stage = 0  # 0 idle, 1 expecting header, 2 expecting body
        self.exchange = ""
        self.exchange_rk = b""
        self.header_payload: bytes | None = None
        self.routing_key = ""
        self.mandatory = False
        self.immediate = False
        self.properties = b""
        self.size = 0
        self.received = 0
        self.parts: list[bytes] = []
        # a publisher mostly repeats a few sets of properties: their decoded content headers
        # and property scans, reused when they come again (at most SEEN_MAX each)
        self.headers_seen: dict[bytes, tuple[bytes, int, bytes | None]] = {}
        self.scanned: dict[bytes, tuple[int, int | None, str | None, FieldTable | None]] = {}


Authenticator = Callable[[str, str], bool]


class ServerConnection:
    """One client connection, server side."""

    def __init__(
        self,
        *,
        now: float,
        authenticate: Authenticator,
        server_properties: FieldTable,
        channel_max: int = 2047,
        frame_max: int = 131072,
        heartbeat: int = 60,
        handshake_timeout: float = HANDSHAKE_TIMEOUT,
        max_message_size: int = MAX_MESSAGE_SIZE,
    ) -> None:
        self.max_message_size = max_message_size
        self.state = AWAIT_HEADER
        self._authenticate = authenticate
        self._server_properties = server_properties
        self.server_channel_max = channel_max
        self.server_frame_max = frame_max
        self.server_heartbeat = heartbeat
        self.channel_max = channel_max
        self.frame_max = frame_max
        self.heartbeat = 0
        self.user = ""
        self.mechanism = ""
        self.client_properties = FieldTable()
        self.virtual_host = ""
        self._reader = FrameReader()
        self._out: list[bytes] = []
        self._out_size = 0
        # connection.close / close-ok go out after everything queued before them was sent
        self._final = b""
        self._now = now
        self._channels: dict[int, _Channel] = {}
        self._last_recv = now
        self._last_send = now
        # the server stopped reading the socket (flow control): the client's silence is ours
        self.reading_paused = False
        self._deadline_handshake: float | None = now + handshake_timeout
        self._deadline_close: float | None = None
        self.close_reason = ""

    # --- state ---------------------------------------------------------------------------------

    @property
    def is_open(self) -> bool:
        return self.state == OPEN

    @property
    def closed(self) -> bool:
        return self.state == CLOSED

    @property
    def pending_bytes(self) -> int:
        """Bytes queued for sending and not yet taken by ``data_to_send``."""
        return self._out_size

    def channel_is_open(self, channel: int) -> bool:
        state = self._channels.get(channel)
        return state is not None and not state.closing

    # --- output --------------------------------------------------------------------------------

    def write(self, data: bytes) -> None:
        """Queue pre-encoded frames (the fast path)."""
        self._out.append(data)
        self._out_size += len(data)

    def send_method(self, channel: int, method: Method) -> None:
        self.write(method_frame(channel, method))

    def data_to_send(self, now: float) -> bytes:
        """Everything queued since the last call, as one buffer for one write.

        A connection.close or close-ok comes last, after the replies to frames that preceded it.
        """
        self._now = now
        if not self._out and not self._final:
            return b""
        if self._final:
            self._out.append(self._final)
            self._final = b""
        data = b"".join(self._out)
        self._out.clear()
        self._out_size = 0
        self._last_send = now
        return data

    # --- time ----------------------------------------------------------------------------------

    def next_deadline(self) -> float | None:
        """The earliest time ``handle_timer`` has something to do, or None."""
        deadlines = []
        if self._deadline_handshake is not None:
            deadlines.append(self._deadline_handshake)
        if self._deadline_close is not None:
            deadlines.append(self._deadline_close)
        if self.heartbeat and self.state in (OPEN, AWAIT_OPEN, AWAIT_OPEN_ANSWER):
            # send when idle for half the interval; the peer is dead after two silent intervals
            deadlines.append(self._last_send + self.heartbeat / 2)
            if not self.reading_paused:
                deadlines.append(self._last_recv + 2 * self.heartbeat)
        return min(deadlines) if deadlines else None

    def handle_timer(self, now: float) -> list[Event]:
        self._now = now
        if self.state == CLOSED:
            return []
        if self._deadline_close is not None and now >= self._deadline_close:
            return [self._terminate("no connection.close-ok from the client in time")]
        if self._deadline_handshake is not None and now >= self._deadline_handshake:
            return [self._terminate("handshake timed out")]
        if self.heartbeat and self.state in (OPEN, AWAIT_OPEN, AWAIT_OPEN_ANSWER):
            if not self.reading_paused and now >= self._last_recv + 2 * self.heartbeat:
                return [
                    self._terminate(f"missed heartbeats from client, timeout: {self.heartbeat}s")
                ]
            if now >= self._last_send + self.heartbeat / 2:
                # Output already waiting serves as a heartbeat. Either way the deadline moves
                # on, or a writer blocked by a client that stopped reading makes the timer spin.
                if not self._out:
                    self.write(HEARTBEAT_FRAME)
                self._last_send = now
        return []

    def pause_reading(self) -> None:
        """The server stops reading the socket (a blocked publisher): the client's heartbeats
        cannot arrive, so missing them is not held against it, as RabbitMQ pauses its
        heartbeat monitor for a blocked connection."""
        self.reading_paused = True

    def resume_reading(self, now: float) -> None:
        """Reading resumes: the client's heartbeat interval counts from now."""
        self.reading_paused = False
        self._last_recv = now

    # --- the handshake's answers and closes ----------------------------------------------------

    def accept_open(self) -> None:
        """Answer an ``OpenRequested``: the connection is open."""
        self.send_method(0, ConnectionOpenOk())
        self.state = OPEN

    def close(self, reply_code: int, text: str, class_id: int = 0, method_id: int = 0) -> None:
        """Start a connection close (connection.close, then wait for close-ok)."""
        if self.state in (CLOSING, CLOSED):
            return
        if self.state == AWAIT_HEADER:
            self.state = CLOSED
            return
        reply_text = fit_shortstr(f"{REPLY_NAMES.get(reply_code, 'ERROR')} - {text}")
        self.close_reason = reply_text
        self._final = method_frame(0, ConnectionClose(reply_code, reply_text, class_id, method_id))
        self.state = CLOSING
        self._deadline_handshake = None
        self._deadline_close = self._now + CLOSE_TIMEOUT

    def close_with(self, error: AMQPError) -> None:
        self.close(error.reply_code, error.text, error.class_id, error.method_id)

    def close_channel(self, channel: int, error: AMQPError) -> None:
        """Server-initiated channel.close; frames on the channel are dropped until close-ok."""
        state = self._channels.get(channel)
        if state is None or state.closing:
            return
        state.closing = True
        state.stage = 0
        state.parts = []
        self.send_method(
            channel,
            ChannelClose(error.reply_code, error.reply_text, error.class_id, error.method_id),
        )

    def channel_close_ok(self, channel: int) -> None:
        """Answer a client's channel.close (after the session has cleaned up)."""
        self._channels.pop(channel, None)
        self.send_method(channel, ChannelCloseOk())

    def _terminate(self, reason: str) -> Terminated:
        self.state = CLOSED
        self._deadline_close = None
        self._deadline_handshake = None
        if not self.close_reason:
            self.close_reason = reason
        return Terminated(reason)

    # --- input ---------------------------------------------------------------------------------

    def receive_data(self, data: bytes, now: float) -> list[Event]:
        """Feed bytes read from the socket; returns the events in them, in order.

        ``data == b""`` means the peer closed the socket.
        """
        if self.state == CLOSED:
            return []
        self._last_recv = now
        self._now = now
        if not data:
            return [self._terminate("client closed the TCP connection")]
        self._reader.feed(data)
        events: list[Event] = []
        if self.state == AWAIT_HEADER:
            if self._reader.buffered < 8:
                return events
            header = self._reader.take(8)
            if header != PROTOCOL_HEADER:
                # AMQP 0-9-1 §4.2.2: answer with the header we support, then close
                self.write(PROTOCOL_HEADER)
                events.append(self._terminate(f"bad protocol header {header!r}"))
                return events
            self.send_method(
                0, ConnectionStart(0, 9, self._server_properties, b"PLAIN AMQPLAIN", b"en_US")
            )
            self.state = AWAIT_START_OK
            self._reader.max_size = self.server_frame_max
        try:
            self._process_frames(events)
            if self._reader.error is not None and self.state != CLOSED:
                raise self._reader.error
        except FramingError as error:
            # the stream is out of step: no close-ok could be read, so end after the close
            self.close_with(error)
            events.append(self._terminate(self.close_reason))
        except ConnectionError as error:
            self.close_with(error)
        return events

    def _process_frames(self, events: list[Event]) -> None:
        channels = self._channels
        for frame_type, channel, payload in self._reader.read_frames():
            if self.state == CLOSING:
                self._while_closing(frame_type, channel, payload, events)
                continue
            if self.state == CLOSED:
                return
            if frame_type == FRAME_METHOD:
                if channel == 0:
                    self._connection_method(payload, events)
                    continue
                state = channels.get(channel)
                head = payload[:4]
                if state is None or state.closing:
                    self._method_on_unopened(channel, state, payload, events)
                    continue
                if state.stage:
                    raise ConnectionError(
                        UNEXPECTED_FRAME,
                        f"expected content header for class 60, got non content header frame "
                        f"instead on channel {channel}",
                    )
                if head == fastpath.PUBLISH_ID:
                    decoded = fastpath.decode_publish_raw(payload)
                    if decoded[4] != state.exchange_rk:
                        # a new exchange and routing key; the same as the last publish keeps
                        # the same objects, so a backlog shares them instead of a copy each
                        state.exchange, state.routing_key = decoded[0], decoded[1]
                        state.exchange_rk = decoded[4]
                    state.mandatory, state.immediate = decoded[2], decoded[3]
                    state.stage = 1
                elif head == fastpath.ACK_ID:
                    tag, bits = fastpath.decode_tag_bits(payload)
                    events.append(Ack(channel, tag, bool(bits & 1)))
                elif head == fastpath.NACK_ID:
                    tag, bits = fastpath.decode_tag_bits(payload)
                    events.append(Nack(channel, tag, bool(bits & 1), bool(bits & 2)))
                elif head == fastpath.REJECT_ID:
                    tag, bits = fastpath.decode_tag_bits(payload)
                    events.append(Reject(channel, tag, bool(bits & 1)))
                else:
                    method = decode_method(payload)
                    if method.CLASS_ID == 10:
                        raise ConnectionError(
                            COMMAND_INVALID,
                            f"{method.NAME} is only allowed on channel 0, not {channel}",
                            method.CLASS_ID,
                            method.METHOD_ID,
                        )
                    if isinstance(method, ChannelOpen):
                        raise ConnectionError(
                            CHANNEL_ERROR,
                            f"second 'channel.open' seen on channel {channel}",
                            20,
                            10,
                        )
                    events.append(MethodReceived(channel, method))
            elif frame_type == FRAME_HEADER:
                state = self._content_state(channel, 1, "content header", "a content method")
                if state is None:
                    continue
                seen = state.headers_seen.get(payload)
                if seen is not None:
                    # properties and size this channel sent recently: no decoding, and the
                    # same objects (a backlog of like messages holds one copy, not one each)
                    state.properties, size, state.header_payload = seen
                else:
                    class_id, size, properties = decode_content_header(payload)
                    if class_id != 60:  # RabbitMQ's rabbit_command_assembler answers 505
                        raise ConnectionError(
                            UNEXPECTED_FRAME, f"content header for class {class_id}, expected 60"
                        )
                    state.properties = properties
                    # weight 0 (always, in practice): the payload is what Message would encode
                    state.header_payload = payload if payload[2:4] == b"\x00\x00" else None
                    if len(state.headers_seen) >= SEEN_MAX:
                        state.headers_seen.clear()
                    state.headers_seen[payload] = (properties, size, state.header_payload)
                if size > self.max_message_size:
                    # Refused before a byte of the body is buffered; its body frames are dropped
                    # with everything else on the now closing channel.
                    error = ChannelError(
                        PRECONDITION_FAILED,
                        f"message size {size} is larger than configured max size "
                        f"{self.max_message_size}",
                        60,
                        40,
                    )
                    self.close_channel(channel, error)
                    events.append(ChannelFailed(channel, error))
                    continue
                if size == 0:
                    state.stage = 0
                    self._emit_publish(channel, state, b"", events)
                else:
                    state.size = size
                    state.received = 0
                    state.stage = 2
            elif frame_type == FRAME_BODY:
                state = self._content_state(channel, 2, "content body", "a content header")
                if state is None:
                    continue
                state.received += len(payload)
                if state.received == state.size and not state.parts:
                    state.stage = 0
                    self._emit_publish(channel, state, payload, events)
                elif state.received < state.size:
                    state.parts.append(payload)
                elif state.received == state.size:
                    state.parts.append(payload)
                    body = b"".join(state.parts)
                    state.parts = []
                    state.stage = 0
                    self._emit_publish(channel, state, body, events)
                else:
                    raise ConnectionError(
                        FRAME_ERROR,
                        f"content body on channel {channel} is larger than the {state.size} bytes "
                        f"its header announced",
                    )
            elif frame_type == FRAME_HEARTBEAT:
                if channel != 0:
                    raise ConnectionError(
                        FRAME_ERROR, f"heartbeat frame on channel {channel}, must be channel 0"
                    )
            else:
                raise ConnectionError(FRAME_ERROR, f"unknown frame type {frame_type}")

    def _content_state(self, channel: int, stage: int, what: str, before: str) -> _Channel | None:
        """The channel a content frame belongs to, when it expects one at ``stage``; None for a
        closing channel (its frames are dropped); an error otherwise."""
        state = self._channels.get(channel)
        if state is None:
            raise ConnectionError(CHANNEL_ERROR, f"{what} on channel {channel}, which is not open")
        if state.closing:
            return None
        if state.stage != stage:
            raise ConnectionError(
                UNEXPECTED_FRAME, f"{what} on channel {channel} without {before} before it"
            )
        return state

    def _emit_publish(
        self, channel: int, state: _Channel, body: bytes, events: list[Event]
    ) -> None:
        properties = state.properties
        scanned = state.scanned.get(properties)
        if scanned is not None:
            delivery_mode, priority, expiration, headers = scanned
        else:
            try:
                scanned = delivery_mode, priority, expiration, headers = scan_full(properties)
            except FrameError as error:
                raise ConnectionError(error.reply_code, error.text, 60, 40)
            if len(state.scanned) >= SEEN_MAX:
                state.scanned.clear()
            state.scanned[properties] = scanned
        events.append(
            Publish(
                channel,
                state.exchange,
                state.routing_key,
                state.mandatory,
                state.immediate,
                properties,
                body,
                delivery_mode,
                priority,
                expiration,
                state.exchange_rk,
                state.header_payload,
                headers,
            )
        )

    def _method_on_unopened(
        self, channel: int, state: _Channel | None, payload: bytes, events: list[Event]
    ) -> None:
        method = decode_method(payload)
        if state is not None:  # closing: only close / close-ok matter (AMQP 0-9-1 §4.2.3.1)
            if isinstance(method, ChannelCloseOk):
                del self._channels[channel]
            elif isinstance(method, ChannelClose):
                del self._channels[channel]
                self.send_method(channel, ChannelCloseOk())
            return
        if isinstance(method, ChannelOpen):
            if self.state != OPEN:
                raise ConnectionError(
                    COMMAND_INVALID, "channel.open before connection.open-ok", 20, 10
                )
            if len(self._channels) >= self.channel_max:
                # RabbitMQ 3.10 limits how many channels are open, not the channel number
                raise ConnectionError(
                    NOT_ALLOWED,
                    f"number of channels opened ({len(self._channels)}) has reached the "
                    f"negotiated channel_max ({self.channel_max})",
                    20,
                    10,
                )
            self._channels[channel] = _Channel()
            events.append(MethodReceived(channel, method))
            return
        if method.CLASS_ID == 10:
            raise ConnectionError(
                COMMAND_INVALID,
                f"{method.NAME} is only allowed on channel 0, not {channel}",
                method.CLASS_ID,
                method.METHOD_ID,
            )
        raise ConnectionError(
            CHANNEL_ERROR,
            f"expected 'channel.open' on channel {channel}, got '{method.NAME}'",
            method.CLASS_ID,
            method.METHOD_ID,
        )

    def _while_closing(
        self, frame_type: int, channel: int, payload: bytes, events: list[Event]
    ) -> None:
        """After we sent connection.close, only close and close-ok count (AMQP 0-9-1 §4.2.3.1)."""
        if frame_type != FRAME_METHOD or channel != 0:
            return
        try:
            method = decode_method(payload)
        except AMQPError:
            return
        if isinstance(method, ConnectionCloseOk):
            events.append(self._terminate(self.close_reason))
        elif isinstance(method, ConnectionClose):
            self._final += method_frame(0, ConnectionCloseOk())
            events.append(self._terminate(self.close_reason))

    def _connection_method(self, payload: bytes, events: list[Event]) -> None:
        method = decode_method(payload)
        state = self.state
        if isinstance(method, ConnectionClose):
            self._final = method_frame(0, ConnectionCloseOk())
            self.close_reason = f"client closed: {method.reply_code} {method.reply_text}".strip()
            events.append(CloseReceived(method.reply_code, method.reply_text))
            events.append(self._terminate(self.close_reason))
            return
        if method.CLASS_ID != 10:
            raise ConnectionError(
                CHANNEL_ERROR,
                f"unexpected method in connection state running: {method.NAME} is not allowed "
                f"on channel 0",
                method.CLASS_ID,
                method.METHOD_ID,
            )
        if state == AWAIT_START_OK and isinstance(method, ConnectionStartOk):
            self._start_ok(method)
        elif state == AWAIT_TUNE_OK and isinstance(method, ConnectionTuneOk):
            self._tune_ok(method)
        elif state == AWAIT_OPEN and isinstance(method, ConnectionOpen):
            self.virtual_host = method.virtual_host
            self.state = AWAIT_OPEN_ANSWER
            self._deadline_handshake = None
            events.append(OpenRequested(method.virtual_host, self.user, self.client_properties))
        elif state == OPEN and isinstance(method, ConnectionUpdateSecret):
            self.send_method(0, ConnectionUpdateSecretOk())
        elif state == OPEN and method.METHOD_ID in (60, 61):
            pass  # connection.blocked / unblocked from a client: nothing for a server to do
        else:
            expected = {
                AWAIT_START_OK: "connection.start-ok",
                AWAIT_TUNE_OK: "connection.tune-ok",
                AWAIT_OPEN: "connection.open",
            }.get(state)
            text = (
                f"expected '{expected}', got '{method.NAME}'"
                if expected
                else f"'{method.NAME}' is not allowed now"
            )
            raise ConnectionError(COMMAND_INVALID, text, method.CLASS_ID, method.METHOD_ID)

    def _start_ok(self, method: ConnectionStartOk) -> None:
        self.client_properties = method.client_properties
        self.mechanism = method.mechanism
        credentials = parse_credentials(method.mechanism, method.response)
        if credentials is None:
            raise ConnectionError(
                ACCESS_REFUSED,
                f"unsupported authentication mechanism '{method.mechanism}'; this broker offers "
                f"PLAIN and AMQPLAIN",
                10,
                11,
            )
        user, password = credentials
        if not self._authenticate(user, password):
            raise ConnectionError(
                ACCESS_REFUSED,
                f"Login was refused using authentication mechanism {method.mechanism}. "
                f"For details see the broker logfile.",
            )
        self.user = user
        self.send_method(
            0, ConnectionTune(self.server_channel_max, self.server_frame_max, self.server_heartbeat)
        )
        self.state = AWAIT_TUNE_OK

    def _tune_ok(self, method: ConnectionTuneOk) -> None:
        frame_max = method.frame_max or self.server_frame_max
        if frame_max < FRAME_MIN_SIZE:
            raise ConnectionError(
                NOT_ALLOWED, f"frame_max={frame_max} < {FRAME_MIN_SIZE} min size", 10, 31
            )
        if frame_max > self.server_frame_max:
            raise ConnectionError(
                NOT_ALLOWED,
                f"negotiated frame_max = {frame_max} is higher than the maximum allowed value "
                f"({self.server_frame_max})",
                10,
                31,
            )
        channel_max = method.channel_max or self.server_channel_max
        if channel_max > self.server_channel_max:
            raise ConnectionError(
                NOT_ALLOWED,
                f"negotiated channel_max = {channel_max} is higher than the maximum allowed value "
                f"({self.server_channel_max})",
                10,
                31,
            )
        self.frame_max = frame_max
        self.channel_max = channel_max
        self.heartbeat = method.heartbeat
        self._reader.max_size = frame_max
        self.state = AWAIT_OPEN


def parse_credentials(mechanism: str, response: bytes) -> tuple[str, str] | None:
    """(user, password) from a PLAIN or AMQPLAIN response; None for other mechanisms."""
    if mechanism == "PLAIN":
        parts = response.split(b"\x00")
        if len(parts) != 3:
            return ("", "")
        return parts[1].decode("utf-8", "replace"), parts[2].decode("utf-8", "replace")
    if mechanism == "AMQPLAIN":
        # A field table without its length prefix (py-amqp, kombu)
        values: dict[str, object] = {}
        offset = 0
        try:
            while offset < len(response):
                klen = response[offset]
                key = response[offset + 1 : offset + 1 + klen].decode("utf-8", "replace")
                offset += 1 + klen
                _tag, value, offset = decode_value(response, offset)
                values[key] = value
        except (AMQPError, IndexError, struct.error):
            return ("", "")
        login, password = values.get("LOGIN", ""), values.get("PASSWORD", "")
        return (
            login.decode("utf-8", "replace") if isinstance(login, bytes) else str(login),
            password.decode("utf-8", "replace") if isinstance(password, bytes) else str(password),
        )
    return None
