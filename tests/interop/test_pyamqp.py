"""py-amqp (the client under kombu and Celery) used directly against router over real TCP.

py-amqp prefers AMQPLAIN, which pika and aio-pika never use, so login is tested both ways.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import amqp
import amqp.exceptions
import pytest

TIMEOUT = 5.0


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def open_connection(router_server, **kwargs: object) -> amqp.Connection:  # type: ignore[no-untyped-def]
    options: dict[str, object] = {
        "host": f"127.0.0.1:{router_server.port}",
        "userid": "guest",
        "password": "guest",
        "virtual_host": "/",
        "connect_timeout": TIMEOUT,
    }
    options.update(kwargs)
    connection = amqp.Connection(**options)
    connection.connect()
    return connection


@pytest.fixture
def connection(router_server) -> Iterator[amqp.Connection]:  # type: ignore[no-untyped-def]
    conn = open_connection(router_server)
    try:
        yield conn
    finally:
        conn.close()


@pytest.fixture
def channel(connection: amqp.Connection) -> amqp.Channel:
    return connection.channel()


def temp_queue(channel: amqp.Channel) -> str:
    name, _count, _consumers = channel.queue_declare("", exclusive=True)
    return name  # type: ignore[no-any-return]


def test_pyamqp_logs_in_with_amqplain_by_default(connection: amqp.Connection) -> None:
    # py-amqp picks its first mechanism (AMQPLAIN) that the server offers
    chosen = next(a for a in connection.authentication if a.mechanism in connection.mechanisms)
    assert chosen.mechanism == b"AMQPLAIN"
    assert connection.connected


@pytest.mark.parametrize("method", ["AMQPLAIN", "PLAIN"])
def test_pyamqp_logs_in_with_an_explicit_mechanism(router_server, method: str) -> None:  # type: ignore[no-untyped-def]
    conn = open_connection(router_server, login_method=method)
    try:
        assert conn.connected
        assert conn.channel().is_open
    finally:
        conn.close()


def test_pyamqp_wrong_password_raises_access_refused(router_server) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(amqp.exceptions.AccessRefused) as caught:
        open_connection(router_server, password="wrong")
    assert caught.value.reply_code == 403
    assert "AMQPLAIN" in caught.value.reply_text


def test_pyamqp_unknown_vhost_raises_not_allowed(router_server) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(amqp.exceptions.NotAllowed) as caught:
        open_connection(router_server, virtual_host="no-such-vhost")
    assert caught.value.reply_code == 530


def test_pyamqp_basic_publish_then_basic_get_returns_the_message(channel: amqp.Channel) -> None:
    queue = temp_queue(channel)
    channel.basic_publish(
        amqp.Message(b"hello", content_type="text/plain", application_headers={"n": 1}),
        exchange="",
        routing_key=queue,
    )
    message = channel.basic_get(queue, no_ack=True)
    assert message.body == b"hello"
    assert message.content_type == "text/plain"
    assert message.headers == {"n": 1}
    assert message.delivery_info["routing_key"] == queue
    assert message.delivery_info["message_count"] == 0


def test_pyamqp_basic_get_on_an_empty_queue_returns_none(channel: amqp.Channel) -> None:
    assert channel.basic_get(temp_queue(channel)) is None


def test_pyamqp_basic_consume_delivers_through_drain_events(
    connection: amqp.Connection, channel: amqp.Channel
) -> None:
    queue = temp_queue(channel)
    received: list[bytes] = []

    def on_message(message: amqp.Message) -> None:
        received.append(message.body)
        message.channel.basic_ack(message.delivery_tag)

    channel.basic_consume(queue, callback=on_message)
    for i in range(10):
        channel.basic_publish(amqp.Message(str(i).encode()), "", queue)
    while len(received) < 10:
        connection.drain_events(timeout=TIMEOUT)
    assert received == [str(i).encode() for i in range(10)]


def test_pyamqp_confirm_publish_waits_for_the_broker_ack(router_server) -> None:  # type: ignore[no-untyped-def]
    conn = open_connection(router_server, confirm_publish=True)
    try:
        channel = conn.channel()
        queue = temp_queue(channel)
        for i in range(10):
            channel.basic_publish(amqp.Message(str(i).encode(), delivery_mode=2), "", queue)
        _name, count, _consumers = channel.queue_declare(queue, passive=True)
        assert count == 10
    finally:
        conn.close()


def test_pyamqp_basic_publish_confirm_on_a_plain_channel(channel: amqp.Channel) -> None:
    queue = temp_queue(channel)
    channel.basic_publish_confirm(amqp.Message(b"sure"), "", queue, confirm_timeout=TIMEOUT)
    assert channel.basic_get(queue, no_ack=True).body == b"sure"


def test_pyamqp_mandatory_unroutable_publish_calls_the_basic_return_handler(
    channel: amqp.Channel,
) -> None:
    returned: list[tuple[int, str, str, bytes]] = []
    channel.events["basic_return"].add(
        lambda exc, exchange, routing_key, message: returned.append(
            (exc.reply_code, exchange, routing_key, message.body)
        )
    )
    channel.basic_publish_confirm(
        amqp.Message(b"bounce"), "amq.direct", "nobody", mandatory=True, confirm_timeout=TIMEOUT
    )
    assert returned == [(312, "amq.direct", "nobody", b"bounce")]


def test_pyamqp_reject_with_requeue_marks_the_message_redelivered(channel: amqp.Channel) -> None:
    queue = temp_queue(channel)
    channel.basic_publish(amqp.Message(b"once more"), "", queue)
    first = channel.basic_get(queue)
    assert first.delivery_info["redelivered"] is False
    channel.basic_reject(first.delivery_tag, requeue=True)
    second = channel.basic_get(queue, no_ack=True)
    assert second.body == b"once more"
    assert second.delivery_info["redelivered"] is True


def test_pyamqp_server_cancel_calls_the_consumers_on_cancel(
    connection: amqp.Connection, channel: amqp.Channel
) -> None:
    queue, _count, _consumers = channel.queue_declare(unique("doomed"))
    cancelled: list[str] = []
    tag = channel.basic_consume(queue, callback=lambda m: None, on_cancel=cancelled.append)
    connection.channel().queue_delete(queue)
    while not cancelled:
        connection.drain_events(timeout=TIMEOUT)
    assert cancelled == [tag]


def test_pyamqp_passive_declare_of_a_missing_queue_raises_not_found(
    channel: amqp.Channel,
) -> None:
    with pytest.raises(amqp.exceptions.NotFound) as caught:
        channel.queue_declare(unique("missing"), passive=True)
    assert caught.value.reply_code == 404


def test_pyamqp_exclusive_queue_of_another_connection_raises_resource_locked(
    router_server,  # type: ignore[no-untyped-def]
    channel: amqp.Channel,
) -> None:
    queue, _count, _consumers = channel.queue_declare(unique("mine"), exclusive=True)
    other = open_connection(router_server)
    try:
        with pytest.raises(amqp.exceptions.ResourceLocked) as caught:
            other.channel().queue_declare(queue)
        assert caught.value.reply_code == 405
    finally:
        other.close()


def test_pyamqp_redeclare_with_different_arguments_raises_precondition_failed(
    channel: amqp.Channel,
) -> None:
    name = unique("args")
    channel.queue_declare(name, auto_delete=True, arguments={"x-message-ttl": 1000})
    with pytest.raises(amqp.exceptions.PreconditionFailed) as caught:
        channel.queue_declare(name, auto_delete=True, arguments={"x-message-ttl": 2000})
    assert "inequivalent arg 'x-message-ttl'" in caught.value.reply_text


def test_pyamqp_fanout_exchange_reaches_every_bound_queue(channel: amqp.Channel) -> None:
    exchange = unique("fan")
    channel.exchange_declare(exchange, "fanout", auto_delete=True)
    queues = [temp_queue(channel) for _ in range(2)]
    for queue in queues:
        channel.queue_bind(queue, exchange)
    channel.basic_publish(amqp.Message(b"all"), exchange, "")
    assert [channel.basic_get(q, no_ack=True).body for q in queues] == [b"all", b"all"]
    channel.exchange_delete(exchange)


def test_pyamqp_basic_qos_limits_unacked_deliveries(
    connection: amqp.Connection, channel: amqp.Channel
) -> None:
    queue = temp_queue(channel)
    for i in range(5):
        channel.basic_publish(amqp.Message(str(i).encode()), "", queue)
    consumer = connection.channel()
    consumer.basic_qos(0, 2, False)
    received: list[amqp.Message] = []
    consumer.basic_consume(queue, callback=received.append)
    while len(received) < 2:
        connection.drain_events(timeout=TIMEOUT)
    _name, ready, _consumers = channel.queue_declare(queue, passive=True)
    assert ready == 3
    consumer.basic_ack(received[1].delivery_tag, multiple=True)
    while len(received) < 4:
        connection.drain_events(timeout=TIMEOUT)
    assert [m.body for m in received] == [b"0", b"1", b"2", b"3"]
