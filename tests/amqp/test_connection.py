"""ServerConnection, sans-IO: bytes and times in, events and bytes out."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from router.amqp import spec
from router.amqp.connection import (
    Ack,
    CloseReceived,
    MethodReceived,
    Nack,
    OpenRequested,
    Publish,
    Reject,
    ServerConnection,
    Terminated,
    parse_credentials,
)
from router.amqp.constants import PROTOCOL_HEADER
from router.amqp.frames import HEARTBEAT_FRAME, FrameReader, content_frames, encode_frame
from router.amqp.frames import method_frame as frame
from router.amqp.properties import BasicProperties, encode_content_header
from router.amqp.tables import FieldTable

GOLDEN = Path(__file__).resolve().parent / "golden"
CLIENTS = ["pika", "pyamqp", "aiopika", "amqplib"]
USERS = {"guest": "guest"}
SERVER_PROPERTIES = FieldTable(
    {"product": "router", "capabilities": FieldTable({"basic.nack": True})}
)
PLAIN_GUEST = spec.ConnectionStartOk(
    FieldTable({"product": "test"}), "PLAIN", b"\x00guest\x00guest"
)


@cache
def golden_frames(client: str) -> tuple[dict[str, Any], ...]:
    return tuple(json.loads((GOLDEN / f"{client}.json").read_text()))


def golden_raw(client: str, name: str, direction: str = "c2s") -> bytes:
    for entry in golden_frames(client):
        if entry["name"] == name and entry["dir"] == direction:
            return bytes.fromhex(entry["hex"])
    raise LookupError(name)


def new_connection(now: float = 0.0, **kwargs: Any) -> ServerConnection:
    return ServerConnection(
        now=now,
        authenticate=lambda user, password: USERS.get(user) == password,
        server_properties=SERVER_PROPERTIES,
        **kwargs,
    )


def sent(conn: ServerConnection, now: float = 0.0) -> list[Any]:
    """What the connection sends, decoded: methods as (channel, method), other frames as tuples."""
    data = conn.data_to_send(now)
    reader = FrameReader()
    reader.feed(data)
    out: list[Any] = []
    for frame_type, channel, payload in reader.read_frames():
        if frame_type == 1:
            out.append((channel, spec.decode_method(payload)))
        else:
            out.append((frame_type, channel, payload))
    assert reader.buffered == 0
    return out


def open_connection(
    heartbeat: int = 0, frame_max: int = 131072, channel_max: int = 2047, now: float = 0.0
) -> ServerConnection:
    conn = new_connection(now)
    conn.receive_data(PROTOCOL_HEADER, now)
    conn.receive_data(frame(0, PLAIN_GUEST), now)
    conn.receive_data(frame(0, spec.ConnectionTuneOk(channel_max, frame_max, heartbeat)), now)
    events = conn.receive_data(frame(0, spec.ConnectionOpen("/")), now)
    assert events == [OpenRequested("/", "guest", PLAIN_GUEST.client_properties)]
    conn.accept_open()
    conn.data_to_send(now)
    assert conn.is_open
    return conn


def open_channel(conn: ServerConnection, channel: int = 1, now: float = 0.0) -> None:
    events = conn.receive_data(frame(channel, spec.ChannelOpen()), now)
    assert events == [MethodReceived(channel, spec.ChannelOpen())]
    assert conn.channel_is_open(channel)


def assert_closed_with(
    conn: ServerConnection,
    code: int,
    class_id: int | None = None,
    method_id: int | None = None,
    *,
    state: str = "closing",
) -> spec.ConnectionClose:
    out = sent(conn)
    assert len(out) == 1, out
    channel, close = out[0]
    assert channel == 0
    assert isinstance(close, spec.ConnectionClose)
    assert close.reply_code == code, close
    if class_id is not None:
        assert (close.class_id, close.method_id) == (class_id, method_id)
    assert conn.state == state
    return close


# --- handshake ---------------------------------------------------------------------------------


@pytest.mark.parametrize("client", CLIENTS)
def test_golden_client_handshake_gets_start_tune_and_open_ok(client: str) -> None:
    conn = new_connection()
    assert conn.receive_data(golden_raw(client, "protocol-header"), 0.0) == []
    assert sent(conn) == [
        (0, spec.ConnectionStart(0, 9, SERVER_PROPERTIES, b"PLAIN AMQPLAIN", b"en_US"))
    ]

    assert conn.receive_data(golden_raw(client, "connection.start-ok"), 0.1) == []
    tune = conn.data_to_send(0.1)
    assert tune == golden_raw(client, "connection.tune", "s2c")  # RabbitMQ's 2047/131072/60

    assert conn.receive_data(golden_raw(client, "connection.tune-ok"), 0.2) == []
    assert sent(conn) == []
    assert (conn.channel_max, conn.frame_max, conn.heartbeat) == (2047, 131072, 1)

    events = conn.receive_data(golden_raw(client, "connection.open"), 0.3)
    assert len(events) == 1
    opened = events[0]
    assert isinstance(opened, OpenRequested)
    assert (opened.virtual_host, opened.user) == ("/", "guest")
    assert "product" in opened.client_properties
    assert not conn.is_open

    conn.accept_open()
    assert conn.is_open
    assert conn.data_to_send(0.3) == golden_raw(client, "connection.open-ok", "s2c")


def test_a_whole_handshake_in_one_read_gives_start_tune_and_one_open_request() -> None:
    data = b"".join(
        golden_raw("pika", name)
        for name in ("protocol-header", "connection.start-ok", "connection.tune-ok")
    ) + golden_raw("pika", "connection.open")
    conn = new_connection()
    events = conn.receive_data(data, 0.0)
    assert [type(e) for e in events] == [OpenRequested]
    assert [type(m) for _, m in sent(conn)] == [spec.ConnectionStart, spec.ConnectionTune]


def test_a_handshake_fed_one_byte_at_a_time_gives_the_same_events() -> None:
    data = b"".join(
        golden_raw("aiopika", name)
        for name in ("protocol-header", "connection.start-ok", "connection.tune-ok")
    ) + golden_raw("aiopika", "connection.open")
    conn = new_connection()
    events = []
    for byte in data:
        events += conn.receive_data(bytes([byte]), 0.0)
    assert [type(e) for e in events] == [OpenRequested]
    assert [type(m) for _, m in sent(conn)] == [spec.ConnectionStart, spec.ConnectionTune]


def test_nothing_is_sent_until_the_whole_protocol_header_has_arrived() -> None:
    conn = new_connection()
    assert conn.receive_data(PROTOCOL_HEADER[:5], 0.0) == []
    assert conn.data_to_send(0.0) == b""
    conn.receive_data(PROTOCOL_HEADER[5:], 0.0)
    assert [type(m) for _, m in sent(conn)] == [spec.ConnectionStart]


@pytest.mark.parametrize(
    "header", [b"AMQP\x01\x01\x00\x09", b"AMQP\x00\x00\x08\x00", b"GET / HTTP/1.1\r\n"]
)
def test_a_wrong_protocol_header_gets_ours_back_and_terminates(header: bytes) -> None:
    conn = new_connection()
    events = conn.receive_data(header, 0.0)
    assert conn.data_to_send(0.0) == b"AMQP\x00\x00\x09\x01"
    assert len(events) == 1
    assert isinstance(events[0], Terminated)
    assert conn.closed
    assert conn.receive_data(b"more", 0.1) == []


def test_the_handshake_times_out_after_ten_seconds_without_open() -> None:
    conn = new_connection(now=100.0)
    conn.receive_data(PROTOCOL_HEADER, 100.0)
    assert conn.next_deadline() == 110.0
    assert conn.handle_timer(109.9) == []
    assert conn.handle_timer(110.0) == [Terminated("handshake timed out")]
    assert conn.closed


# --- authentication ------------------------------------------------------------------------------


def test_plain_credentials_are_the_second_and_third_nul_separated_parts() -> None:
    assert parse_credentials("PLAIN", b"\x00guest\x00secret") == ("guest", "secret")
    assert parse_credentials("PLAIN", b"admin\x00guest\x00secret") == ("guest", "secret")


def test_malformed_plain_credentials_are_an_empty_user() -> None:
    assert parse_credentials("PLAIN", b"guest") == ("", "")


def test_amqplain_credentials_from_py_amqp_are_read() -> None:
    start_ok = spec.decode_method(golden_raw("pyamqp", "connection.start-ok")[7:-1])
    assert isinstance(start_ok, spec.ConnectionStartOk)
    assert start_ok.mechanism == "AMQPLAIN"
    assert parse_credentials("AMQPLAIN", start_ok.response) == ("guest", "guest")


def test_malformed_amqplain_credentials_are_an_empty_user() -> None:
    assert parse_credentials("AMQPLAIN", b"\x05LOGINS\x00\x00\x00\x09gu") == ("", "")


def test_an_unknown_mechanism_has_no_credentials() -> None:
    assert parse_credentials("EXTERNAL", b"") is None


def test_a_wrong_password_is_refused_with_connection_close_403() -> None:
    conn = new_connection()
    conn.receive_data(PROTOCOL_HEADER, 0.0)
    sent(conn)
    bad = spec.ConnectionStartOk(FieldTable(), "PLAIN", b"\x00guest\x00wrong")
    assert conn.receive_data(frame(0, bad), 0.0) == []
    close = assert_closed_with(conn, 403, 0, 0)
    assert close.reply_text.startswith("ACCESS_REFUSED - Login was refused")
    assert conn.receive_data(frame(0, spec.ConnectionCloseOk()), 0.1) == [
        Terminated(close.reply_text)
    ]
    assert conn.closed


def test_an_unsupported_mechanism_is_refused_with_connection_close_403() -> None:
    conn = new_connection()
    conn.receive_data(PROTOCOL_HEADER, 0.0)
    sent(conn)
    conn.receive_data(frame(0, spec.ConnectionStartOk(FieldTable(), "EXTERNAL", b"")), 0.0)
    assert_closed_with(conn, 403)


# --- tuning --------------------------------------------------------------------------------------


def tuned(channel_max: int, frame_max: int, heartbeat: int = 0) -> ServerConnection:
    conn = new_connection()
    conn.receive_data(PROTOCOL_HEADER, 0.0)
    conn.receive_data(frame(0, PLAIN_GUEST), 0.0)
    sent(conn)
    conn.receive_data(frame(0, spec.ConnectionTuneOk(channel_max, frame_max, heartbeat)), 0.0)
    return conn


def test_a_tune_ok_frame_max_below_4096_is_refused_with_530() -> None:
    assert_closed_with(tuned(2047, 4095), 530, 10, 31)


def test_a_tune_ok_frame_max_above_ours_is_refused_with_530() -> None:
    assert_closed_with(tuned(2047, 131073), 530, 10, 31)


def test_a_tune_ok_channel_max_above_ours_is_refused_with_530() -> None:
    assert_closed_with(tuned(2048, 131072), 530, 10, 31)


def test_zero_in_tune_ok_means_take_the_servers_limits() -> None:
    conn = tuned(0, 0)
    assert sent(conn) == []
    assert (conn.channel_max, conn.frame_max) == (2047, 131072)


def test_the_smallest_frame_max_4096_is_accepted() -> None:
    conn = tuned(1, 4096)
    assert sent(conn) == []
    assert conn.frame_max == 4096


# --- heartbeats ----------------------------------------------------------------------------------


def test_after_tune_ok_the_next_deadline_is_half_the_heartbeat_after_the_last_send() -> None:
    conn = new_connection(now=0.0)
    conn.receive_data(PROTOCOL_HEADER, 0.0)
    conn.data_to_send(0.0)
    conn.receive_data(frame(0, PLAIN_GUEST), 0.5)
    conn.data_to_send(0.5)  # the tune
    conn.receive_data(frame(0, spec.ConnectionTuneOk(2047, 131072, 10)), 1.0)
    assert conn.next_deadline() == 0.5 + 5
    assert conn.handle_timer(5.5) == []
    assert conn.data_to_send(5.5) == HEARTBEAT_FRAME


def test_an_idle_open_connection_sends_a_heartbeat_every_half_interval() -> None:
    conn = open_connection(heartbeat=10, now=0.0)
    assert conn.next_deadline() == 5.0
    assert conn.handle_timer(4.9) == []
    assert conn.data_to_send(4.9) == b""
    assert conn.handle_timer(5.0) == []
    assert conn.data_to_send(5.0) == HEARTBEAT_FRAME
    assert conn.next_deadline() == 10.0


def test_no_heartbeat_is_added_when_other_frames_are_waiting_to_go() -> None:
    conn = open_connection(heartbeat=10, now=0.0)
    conn.send_method(0, spec.ConnectionBlocked("low on memory"))
    conn.handle_timer(5.0)
    assert sent(conn, 5.0) == [(0, spec.ConnectionBlocked("low on memory"))]


def test_twenty_silent_seconds_with_heartbeat_10_terminate_for_missed_heartbeats() -> None:
    conn = open_connection(heartbeat=10, now=0.0)
    for now in (5.0, 10.0, 15.0):
        assert conn.handle_timer(now) == []
        conn.data_to_send(now)
    assert conn.handle_timer(19.9) == []
    events = conn.handle_timer(20.0)
    assert len(events) == 1
    assert isinstance(events[0], Terminated)
    assert "missed heartbeats" in events[0].reason
    assert conn.closed


def test_client_heartbeats_keep_the_connection_alive() -> None:
    conn = open_connection(heartbeat=10, now=0.0)
    assert conn.receive_data(HEARTBEAT_FRAME, 15.0) == []
    assert conn.handle_timer(20.0) == []
    assert not conn.closed
    assert conn.data_to_send(20.0) == HEARTBEAT_FRAME  # idle since 0: ours was due
    assert conn.next_deadline() == 25.0


def test_heartbeat_zero_means_no_heartbeat_deadlines() -> None:
    conn = open_connection(heartbeat=0)
    assert conn.next_deadline() is None
    assert conn.handle_timer(1000.0) == []
    assert conn.data_to_send(1000.0) == b""


# --- content assembly ----------------------------------------------------------------------------

PROPS = BasicProperties(delivery_mode=2, priority=5, expiration="60000").encode()
BIG_BODY = (bytes(range(256)) * 1200)[:300000]


def publish(
    channel: int,
    body: bytes,
    props: bytes = PROPS,
    exchange: str = "x",
    routing_key: str = "rk",
    frame_max: int = 131072,
) -> bytes:
    method = frame(channel, spec.BasicPublish(0, exchange, routing_key, True, False))
    return method + b"".join(content_frames(channel, 60, props, body, frame_max))


def test_a_body_in_several_frames_is_assembled_into_one_publish() -> None:
    conn = open_connection()
    open_channel(conn)
    data = publish(1, BIG_BODY)
    events = []
    for start in range(0, len(data), 1000):
        events += conn.receive_data(data[start : start + 1000], 1.0)
    assert [event[:10] for event in events] == [
        (1, "x", "rk", True, False, PROPS, BIG_BODY, 2, 5, "60000"),
    ]
    assert sent(conn) == []


def test_a_body_in_one_frame_is_published_as_is() -> None:
    conn = open_connection()
    open_channel(conn)
    events = conn.receive_data(publish(1, b"hello", b"\x00\x00"), 1.0)
    assert [event[:10] for event in events] == [
        (1, "x", "rk", True, False, b"\x00\x00", b"hello", 0, None, None)
    ]
    assert events[0].exchange_rk == b"\x01x\x02rk"


def test_an_empty_body_is_published_when_the_header_arrives() -> None:
    conn = open_connection()
    open_channel(conn)
    events = conn.receive_data(publish(1, b""), 1.0)
    assert [(type(e), e.body) for e in events] == [(Publish, b"")]


def test_contents_on_two_channels_may_interleave() -> None:
    conn = open_connection(frame_max=4096)
    open_channel(conn, 1)
    open_channel(conn, 2)
    one = publish(1, b"a" * 5000, routing_key="one", frame_max=4096)
    two = publish(2, b"b" * 5000, routing_key="two", frame_max=4096)
    reader = FrameReader()
    reader.feed(one + two)
    frames = reader.read_frames()
    ones, twos = frames[:4], frames[4:]
    interleaved = [f for pair in zip(ones, twos, strict=True) for f in pair]
    data = b"".join(encode_frame(*f) for f in interleaved)
    events = conn.receive_data(data, 1.0)
    assert [(e.channel, e.routing_key, e.body) for e in events] == [
        (1, "one", b"a" * 5000),
        (2, "two", b"b" * 5000),
    ]


def test_a_method_frame_in_the_middle_of_a_content_closes_with_505() -> None:
    conn = open_connection()
    open_channel(conn)
    reader = FrameReader()
    reader.feed(publish(1, BIG_BODY))
    method, header, first_body = reader.read_frames()[:3]
    data = b"".join(encode_frame(*f) for f in (method, header, first_body))
    assert conn.receive_data(data + frame(1, spec.BasicQos(0, 1)), 1.0) == []
    assert_closed_with(conn, 505)


def test_a_method_frame_instead_of_the_content_header_closes_with_505() -> None:
    conn = open_connection()
    open_channel(conn)
    conn.receive_data(frame(1, spec.BasicPublish()) + frame(1, spec.BasicAck(1)), 1.0)
    assert_closed_with(conn, 505)


def test_a_content_header_without_a_content_method_closes_with_505() -> None:
    conn = open_connection()
    open_channel(conn)
    conn.receive_data(encode_frame(2, 1, encode_content_header(60, 1, b"\x00\x00")), 1.0)
    assert_closed_with(conn, 505)


def test_a_content_body_without_a_header_closes_with_505() -> None:
    conn = open_connection()
    open_channel(conn)
    conn.receive_data(frame(1, spec.BasicPublish()) + encode_frame(3, 1, b"x"), 1.0)
    assert_closed_with(conn, 505)


def test_a_body_longer_than_its_header_announced_closes_with_501() -> None:
    conn = open_connection()
    open_channel(conn)
    data = (
        frame(1, spec.BasicPublish())
        + encode_frame(2, 1, encode_content_header(60, 3, b"\x00\x00"))
        + encode_frame(3, 1, b"ab")
        + encode_frame(3, 1, b"cd")
    )
    assert conn.receive_data(data, 1.0) == []
    assert_closed_with(conn, 501)


def test_a_content_header_for_another_class_closes_with_505_as_rabbitmq_does() -> None:
    conn = open_connection()
    open_channel(conn)
    header = encode_frame(2, 1, encode_content_header(50, 1, b"\x00\x00"))
    conn.receive_data(frame(1, spec.BasicPublish()) + header, 1.0)
    assert_closed_with(conn, 505)


def test_malformed_properties_close_with_502_naming_basic_publish() -> None:
    conn = open_connection()
    open_channel(conn)
    header = encode_frame(2, 1, encode_content_header(60, 0, b"\x80\x00\x09short"))
    conn.receive_data(frame(1, spec.BasicPublish()) + header, 1.0)
    assert_closed_with(conn, 502, 60, 40)


def test_a_frame_bigger_than_frame_max_closes_with_501() -> None:
    conn = open_connection(frame_max=4096)
    open_channel(conn)
    data = frame(1, spec.BasicPublish()) + encode_frame(
        2, 1, encode_content_header(60, 5000, b"\x00\x00")
    )
    assert conn.receive_data(data, 1.0) == []
    events = conn.receive_data(encode_frame(3, 1, b"x" * 5000), 1.0)
    # the stream is out of step after a framing error: close, and end without a close-ok
    assert [type(e) for e in events] == [Terminated]
    assert_closed_with(conn, 501, state="closed")


def test_a_frame_of_exactly_frame_max_is_accepted() -> None:
    conn = open_connection(frame_max=4096)
    open_channel(conn)
    events = conn.receive_data(publish(1, b"x" * 4088, frame_max=4096), 1.0)
    assert [len(e.body) for e in events] == [4088]


# --- channels ----------------------------------------------------------------------------------


def test_acks_nacks_and_rejects_become_their_own_events() -> None:
    conn = open_connection()
    open_channel(conn)
    data = (
        frame(1, spec.BasicAck(7, True))
        + frame(1, spec.BasicNack(8, False, True))
        + frame(1, spec.BasicReject(9, False))
    )
    assert conn.receive_data(data, 1.0) == [
        Ack(1, 7, True),
        Nack(1, 8, False, True),
        Reject(1, 9, False),
    ]


@pytest.mark.parametrize("client", CLIENTS)
def test_other_methods_on_an_open_channel_are_handed_up(client: str) -> None:
    conn = open_connection()
    open_channel(conn)
    raw = golden_raw(client, "queue.declare")
    assert conn.receive_data(raw, 1.0) == [MethodReceived(1, spec.decode_method(raw[7:-1]))]


def test_a_method_on_an_unopened_channel_closes_with_504() -> None:
    conn = open_connection()
    conn.receive_data(frame(3, spec.QueueDeclare(0, "q")), 1.0)
    close = assert_closed_with(conn, 504, 50, 10)
    assert "expected 'channel.open'" in close.reply_text


def test_content_on_an_unopened_channel_closes_with_504() -> None:
    conn = open_connection()
    conn.receive_data(encode_frame(3, 4, b"body"), 1.0)
    assert_closed_with(conn, 504)


def test_a_second_channel_open_on_the_same_channel_closes_with_504() -> None:
    conn = open_connection()
    open_channel(conn)
    conn.receive_data(frame(1, spec.ChannelOpen()), 1.0)
    close = assert_closed_with(conn, 504, 20, 10)
    assert "second 'channel.open'" in close.reply_text


def test_opening_more_channels_than_channel_max_closes_with_530() -> None:
    # RabbitMQ 3.10 limits how many channels are open at once, not the channel number
    conn = open_connection(channel_max=2)
    open_channel(conn, 7)
    open_channel(conn, 9)
    conn.receive_data(frame(11, spec.ChannelOpen()), 1.0)
    close = assert_closed_with(conn, 530, 20, 10)
    assert "reached the negotiated channel_max (2)" in close.reply_text


def test_a_channel_open_before_open_ok_closes_with_503() -> None:
    conn = tuned(2047, 131072)
    conn.receive_data(frame(0, spec.ConnectionOpen("/")), 0.0)
    conn.receive_data(frame(1, spec.ChannelOpen()), 0.0)
    assert_closed_with(conn, 503)


def test_a_connection_method_on_a_channel_closes_with_503() -> None:
    conn = open_connection()
    open_channel(conn)
    conn.receive_data(frame(1, spec.ConnectionTuneOk()), 1.0)
    assert_closed_with(conn, 503, 10, 31)


def test_a_channel_method_on_channel_zero_closes_with_504_as_rabbitmq_does() -> None:
    conn = open_connection()
    conn.receive_data(frame(0, spec.BasicQos(0, 1)), 1.0)
    close = assert_closed_with(conn, 504, 60, 10)
    assert "unexpected method in connection state running" in close.reply_text


def test_a_heartbeat_on_a_channel_other_than_zero_closes_with_501() -> None:
    conn = open_connection()
    conn.receive_data(encode_frame(8, 1, b""), 1.0)
    assert_closed_with(conn, 501)


def test_an_unknown_frame_type_closes_with_501() -> None:
    conn = open_connection()
    conn.receive_data(encode_frame(9, 0, b""), 1.0)
    assert_closed_with(conn, 501)


def test_frames_on_a_channel_we_closed_are_dropped_until_close_ok() -> None:
    from router.amqp.errors import ChannelError

    conn = open_connection()
    open_channel(conn)
    conn.close_channel(1, ChannelError(404, "no queue 'q' in vhost '/'", 50, 10))
    assert sent(conn) == [
        (1, spec.ChannelClose(404, "NOT_FOUND - no queue 'q' in vhost '/'", 50, 10))
    ]
    assert not conn.channel_is_open(1)
    assert conn.receive_data(publish(1, b"dropped") + frame(1, spec.BasicAck(1)), 1.0) == []
    assert conn.receive_data(frame(1, spec.ChannelCloseOk()), 1.0) == []
    assert sent(conn) == []
    open_channel(conn, 1)


def test_a_client_close_crossing_ours_gets_close_ok() -> None:
    from router.amqp.errors import ChannelError

    conn = open_connection()
    open_channel(conn)
    conn.close_channel(1, ChannelError(406, "precondition", 50, 10))
    sent(conn)
    assert conn.receive_data(frame(1, spec.ChannelClose(200, "bye")), 1.0) == []
    assert sent(conn) == [(1, spec.ChannelCloseOk())]
    open_channel(conn, 1)


def test_channel_close_ok_from_the_session_frees_the_channel() -> None:
    conn = open_connection()
    open_channel(conn)
    events = conn.receive_data(frame(1, spec.ChannelClose(200, "bye")), 1.0)
    assert events == [MethodReceived(1, spec.ChannelClose(200, "bye"))]
    conn.channel_close_ok(1)
    assert sent(conn) == [(1, spec.ChannelCloseOk())]
    assert not conn.channel_is_open(1)


def test_update_secret_is_answered_with_update_secret_ok() -> None:
    conn = open_connection()
    conn.receive_data(frame(0, spec.ConnectionUpdateSecret(b"token", "refresh")), 1.0)
    assert sent(conn) == [(0, spec.ConnectionUpdateSecretOk())]


# --- closing -------------------------------------------------------------------------------------


@pytest.mark.parametrize("client", CLIENTS)
def test_a_client_connection_close_gets_close_ok_and_ends_the_connection(client: str) -> None:
    conn = open_connection()
    events = conn.receive_data(golden_raw(client, "connection.close"), 1.0)
    close = spec.decode_method(golden_raw(client, "connection.close")[7:-1])
    assert isinstance(close, spec.ConnectionClose)
    assert events[0] == CloseReceived(close.reply_code, close.reply_text)
    assert isinstance(events[1], Terminated)
    assert len(events) == 2
    assert conn.data_to_send(1.0) == golden_raw(client, "connection.close-ok", "s2c")
    assert conn.closed


def test_our_close_ends_the_connection_when_the_client_answers_close_ok() -> None:
    conn = open_connection()
    conn.close(320, "broker shutdown")
    assert sent(conn) == [
        (0, spec.ConnectionClose(320, "CONNECTION_FORCED - broker shutdown", 0, 0))
    ]
    assert conn.receive_data(frame(0, spec.ConnectionCloseOk()), 1.0) == [
        Terminated("CONNECTION_FORCED - broker shutdown")
    ]
    assert conn.closed


def test_while_closing_only_close_and_close_ok_count() -> None:
    conn = open_connection()
    open_channel(conn)
    conn.close(320, "broker shutdown")
    sent(conn)
    noise = publish(1, b"late") + frame(1, spec.BasicAck(1)) + frame(0, spec.ConnectionTuneOk())
    assert conn.receive_data(noise, 1.0) == []
    assert sent(conn) == []
    events = conn.receive_data(frame(0, spec.ConnectionClose(200, "bye")), 1.0)
    assert [type(e) for e in events] == [Terminated]
    assert sent(conn) == [(0, spec.ConnectionCloseOk())]


def test_no_close_ok_within_ten_seconds_terminates() -> None:
    conn = open_connection(now=0.0)
    conn.receive_data(HEARTBEAT_FRAME, 10.0)
    conn.close(320, "broker shutdown")
    assert conn.next_deadline() == 20.0
    assert conn.handle_timer(19.9) == []
    assert [type(e) for e in conn.handle_timer(20.0)] == [Terminated]
    assert conn.closed


def test_our_close_waits_for_close_ok_from_the_time_of_the_close() -> None:
    conn = open_connection(now=0.0)
    conn.data_to_send(100.0)
    conn.close(320, "broker shutdown")  # 100 s after the last input, heartbeats off
    conn.data_to_send(100.0)
    assert conn.handle_timer(100.0) == []
    assert conn.receive_data(frame(0, spec.ConnectionCloseOk()), 100.5) == [
        Terminated("CONNECTION_FORCED - broker shutdown")
    ]


def test_the_peer_closing_the_socket_terminates() -> None:
    conn = open_connection()
    assert conn.receive_data(b"", 1.0) == [Terminated("client closed the TCP connection")]
    assert conn.closed


def test_closing_before_the_protocol_header_just_closes() -> None:
    conn = new_connection()
    conn.close(320, "shutdown")
    assert conn.closed
    assert conn.data_to_send(0.0) == b""


def test_pending_bytes_counts_what_data_to_send_will_return() -> None:
    conn = open_connection()
    conn.write(b"abc")
    conn.send_method(1, spec.BasicQosOk())
    assert conn.pending_bytes == 3 + 12
    assert len(conn.data_to_send(1.0)) == 15
    assert conn.pending_bytes == 0
