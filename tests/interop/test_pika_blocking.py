"""pika's BlockingConnection against router over real TCP on loopback.

Each test states one behaviour RabbitMQ 3.10 shows to a pika client; the expectations (reply codes,
texts, flags, order) were checked against the RabbitMQ reference. Every test closes what it opens.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pika
import pika.exceptions
import pytest
from pika.adapters.blocking_connection import BlockingChannel, BlockingConnection
from pika_helpers import drain, pump_until, ready_count

# ---------------------------------------------------------------------------------------------
# helpers


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@contextmanager
def connect(url: str, **params: object) -> Iterator[BlockingConnection]:
    parameters = pika.URLParameters(url)
    for name, value in params.items():
        setattr(parameters, name, value)
    connection = pika.BlockingConnection(parameters)
    try:
        yield connection
    finally:
        if connection.is_open:
            connection.close()


@pytest.fixture
def connection(router_url: str) -> Iterator[BlockingConnection]:
    with connect(router_url) as conn:
        yield conn


@pytest.fixture
def channel(connection: BlockingConnection) -> BlockingChannel:
    return connection.channel()


def temp_queue(channel: BlockingChannel, **arguments: object) -> str:
    return channel.queue_declare("", exclusive=True, arguments=arguments or None).method.queue


# ---------------------------------------------------------------------------------------------
# connection


def test_client_connects_opens_a_channel_and_disconnects_cleanly(router_url: str) -> None:
    connection = pika.BlockingConnection(pika.URLParameters(router_url))
    channel = connection.channel()
    assert channel.is_open
    channel.close()
    connection.close()
    assert connection.is_closed


def test_connection_tunes_to_rabbitmq_limits(connection: BlockingConnection) -> None:
    params = connection._impl.params
    assert params.channel_max == 2047
    assert params.frame_max == 131072
    assert params.heartbeat == 60


def test_server_advertises_confirms_and_cancel_notification(
    connection: BlockingConnection,
) -> None:
    capabilities = connection._impl.server_capabilities
    assert capabilities["publisher_confirms"] is True
    assert capabilities["consumer_cancel_notify"] is True
    assert capabilities["basic.nack"] is True
    assert capabilities["exchange_exchange_bindings"] is True


def test_many_channels_can_be_open_on_one_connection(connection: BlockingConnection) -> None:
    channels = [connection.channel() for _ in range(20)]
    assert len({ch.channel_number for ch in channels}) == 20
    assert all(ch.is_open for ch in channels)


def test_wrong_password_is_refused_with_access_refused_403(router_server) -> None:  # type: ignore[no-untyped-def]
    url = f"amqp://guest:wrong@127.0.0.1:{router_server.port}/%2F"
    with pytest.raises(pika.exceptions.ProbableAuthenticationError) as caught:
        pika.BlockingConnection(pika.URLParameters(url))
    assert "403" in str(caught.value)
    assert "ACCESS_REFUSED" in str(caught.value)


def test_unknown_user_is_refused_with_access_refused_403(router_server) -> None:  # type: ignore[no-untyped-def]
    url = f"amqp://nobody:guest@127.0.0.1:{router_server.port}/%2F"
    with pytest.raises(pika.exceptions.ProbableAuthenticationError) as caught:
        pika.BlockingConnection(pika.URLParameters(url))
    assert "403" in str(caught.value)


def test_unknown_vhost_is_refused_with_not_allowed_530(router_server) -> None:  # type: ignore[no-untyped-def]
    url = f"amqp://guest:guest@127.0.0.1:{router_server.port}/no-such-vhost"
    with pytest.raises(pika.exceptions.ProbableAccessDeniedError) as caught:
        pika.BlockingConnection(pika.URLParameters(url))
    assert "530" in str(caught.value)
    assert "NOT_ALLOWED" in str(caught.value)
    assert "no-such-vhost" in str(caught.value)


def test_heartbeat_of_one_second_keeps_an_idle_connection_alive(router_url: str) -> None:
    with connect(router_url, heartbeat=1) as connection:
        assert connection._impl.params.heartbeat == 1
        channel = connection.channel()
        deadline = time.monotonic() + 3.0  # heartbeats are real-clock by nature
        while time.monotonic() < deadline:
            connection.process_data_events(time_limit=0.2)
        assert connection.is_open
        queue = temp_queue(channel)
        channel.basic_publish("", queue, b"still here")
        assert drain(channel, queue) == [b"still here"]


# ---------------------------------------------------------------------------------------------
# messages and properties


def test_message_properties_and_body_arrive_unchanged(channel: BlockingChannel) -> None:
    queue = temp_queue(channel)
    sent = pika.BasicProperties(
        content_type="application/json",
        content_encoding="utf-8",
        headers={"a": 1, "b": "two", "c": [1, "x"], "d": {"nested": True}},
        delivery_mode=2,
        priority=5,
        correlation_id="corr-1",
        reply_to="reply-q",
        expiration="60000",
        message_id="m-1",
        timestamp=1_700_000_000,
        type="event",
        user_id="guest",
        app_id="tests",
    )
    channel.basic_publish("", queue, b'{"k": 1}', sent)
    method, props, body = channel.basic_get(queue, auto_ack=True)
    assert body == b'{"k": 1}'
    assert method.routing_key == queue
    assert method.exchange == ""
    assert method.redelivered is False
    for name in (
        "content_type",
        "content_encoding",
        "headers",
        "delivery_mode",
        "priority",
        "correlation_id",
        "reply_to",
        "expiration",
        "message_id",
        "timestamp",
        "type",
        "user_id",
        "app_id",
    ):
        assert getattr(props, name) == getattr(sent, name), name


def test_message_larger_than_frame_max_arrives_intact(channel: BlockingChannel) -> None:
    queue = temp_queue(channel)
    body = bytes(range(256)) * 4096  # 1 MiB, eight body frames at frame_max 131072
    channel.basic_publish("", queue, body)
    _method, _props, received = channel.basic_get(queue, auto_ack=True)
    assert received == body


def test_empty_body_message_is_delivered(channel: BlockingChannel) -> None:
    queue = temp_queue(channel)
    channel.basic_publish("", queue, b"")
    method, _props, body = channel.basic_get(queue, auto_ack=True)
    assert method is not None
    assert body == b""


def test_consumer_receives_messages_in_publish_order(
    connection: BlockingConnection, channel: BlockingChannel
) -> None:
    queue = temp_queue(channel)
    for i in range(50):
        channel.basic_publish("", queue, str(i).encode())
    received: list[bytes] = []
    channel.basic_consume(queue, lambda ch, m, p, body: received.append(body), auto_ack=True)
    pump_until(connection, lambda: len(received) == 50)
    assert received == [str(i).encode() for i in range(50)]


def test_server_named_queue_starts_with_amq_gen(channel: BlockingChannel) -> None:
    result = channel.queue_declare("", exclusive=True)
    assert result.method.queue.startswith("amq.gen-")
    assert result.method.message_count == 0
    assert result.method.consumer_count == 0


def test_basic_get_reports_remaining_message_count(channel: BlockingChannel) -> None:
    queue = temp_queue(channel)
    for body in (b"a", b"b", b"c"):
        channel.basic_publish("", queue, body)
    method, _props, body = channel.basic_get(queue, auto_ack=True)
    assert body == b"a"
    assert method.message_count == 2


def test_basic_get_on_empty_queue_returns_get_empty(channel: BlockingChannel) -> None:
    queue = temp_queue(channel)
    assert channel.basic_get(queue, auto_ack=True) == (None, None, None)


def test_queue_purge_reports_how_many_messages_it_removed(channel: BlockingChannel) -> None:
    channel.confirm_delivery()  # publishes are in the queue before we count
    queue = temp_queue(channel)
    for _ in range(4):
        channel.basic_publish("", queue, b"x")
    assert channel.queue_purge(queue).method.message_count == 4
    assert ready_count(channel, queue) == 0


def test_queue_delete_reports_how_many_messages_it_dropped(channel: BlockingChannel) -> None:
    channel.confirm_delivery()  # publishes are in the queue before we count
    queue = channel.queue_declare(unique("del")).method.queue
    for _ in range(3):
        channel.basic_publish("", queue, b"x")
    assert channel.queue_delete(queue).method.message_count == 3


# ---------------------------------------------------------------------------------------------
# exchanges and routing


def test_direct_exchange_routes_by_exact_routing_key(channel: BlockingChannel) -> None:
    exchange = unique("direct")
    channel.exchange_declare(exchange, "direct", auto_delete=True)
    black, green = temp_queue(channel), temp_queue(channel)
    channel.queue_bind(black, exchange, "black")
    channel.queue_bind(green, exchange, "green")
    for key in ("black", "green", "orange", "black.x"):
        channel.basic_publish(exchange, key, key.encode())
    assert drain(channel, black) == [b"black"]
    assert drain(channel, green) == [b"green"]
    channel.exchange_delete(exchange)


def test_fanout_exchange_copies_to_every_bound_queue_ignoring_routing_key(
    channel: BlockingChannel,
) -> None:
    exchange = unique("fanout")
    channel.exchange_declare(exchange, "fanout", auto_delete=True)
    queues = [temp_queue(channel) for _ in range(3)]
    for queue in queues:
        channel.queue_bind(queue, exchange, "ignored")
    channel.basic_publish(exchange, "anything", b"to all")
    assert [drain(channel, q) for q in queues] == [[b"to all"]] * 3
    channel.exchange_delete(exchange)


def test_topic_exchange_matches_star_and_hash_patterns(channel: BlockingChannel) -> None:
    exchange = unique("topic")
    channel.exchange_declare(exchange, "topic", auto_delete=True)
    patterns = ["*.orange.*", "*.*.rabbit", "lazy.#", "#", "a.#.b", "exact"]
    queues = {pattern: temp_queue(channel) for pattern in patterns}
    for pattern, queue in queues.items():
        channel.queue_bind(queue, exchange, pattern)
    keys = ["quick.orange.rabbit", "lazy", "a.b", "a.x.y.b", "exact", "orange", "lazy.a.b.c"]
    for key in keys:
        channel.basic_publish(exchange, key, key.encode())
    got = {pattern: [b.decode() for b in drain(channel, q)] for pattern, q in queues.items()}
    assert got == {
        "*.orange.*": ["quick.orange.rabbit"],
        "*.*.rabbit": ["quick.orange.rabbit"],
        "lazy.#": ["lazy", "lazy.a.b.c"],
        "#": keys,
        "a.#.b": ["a.b", "a.x.y.b"],
        "exact": ["exact"],
    }
    channel.exchange_delete(exchange)


def test_headers_exchange_with_x_match_all_requires_every_header(
    channel: BlockingChannel,
) -> None:
    exchange = unique("headers")
    channel.exchange_declare(exchange, "headers", auto_delete=True)
    queue = temp_queue(channel)
    channel.queue_bind(queue, exchange, "", {"x-match": "all", "format": "pdf", "type": "report"})
    for name, headers in [
        ("both", {"format": "pdf", "type": "report"}),
        ("both+extra", {"format": "pdf", "type": "report", "other": 1}),
        ("one", {"format": "pdf"}),
        ("wrong", {"format": "zip", "type": "report"}),
        ("none", None),
    ]:
        channel.basic_publish(exchange, "", name.encode(), pika.BasicProperties(headers=headers))
    assert drain(channel, queue) == [b"both", b"both+extra"]
    channel.exchange_delete(exchange)


def test_headers_exchange_with_x_match_any_requires_one_header(
    channel: BlockingChannel,
) -> None:
    exchange = unique("headers")
    channel.exchange_declare(exchange, "headers", auto_delete=True)
    queue = temp_queue(channel)
    channel.queue_bind(queue, exchange, "", {"x-match": "any", "format": "pdf", "type": "report"})
    for name, headers in [
        ("both", {"format": "pdf", "type": "report"}),
        ("format", {"format": "pdf"}),
        ("type", {"type": "report", "format": "zip"}),
        ("neither", {"format": "zip"}),
        ("none", None),
    ]:
        channel.basic_publish(exchange, "", name.encode(), pika.BasicProperties(headers=headers))
    assert drain(channel, queue) == [b"both", b"format", b"type"]
    channel.exchange_delete(exchange)


def test_exchange_to_exchange_binding_forwards_matching_messages(
    channel: BlockingChannel,
) -> None:
    source, destination = unique("src"), unique("dst")
    channel.exchange_declare(source, "topic")
    channel.exchange_declare(destination, "fanout")
    channel.exchange_bind(destination=destination, source=source, routing_key="logs.*")
    queue = temp_queue(channel)
    channel.queue_bind(queue, destination)
    channel.basic_publish(source, "logs.error", b"forwarded")
    channel.basic_publish(source, "metrics.cpu", b"not forwarded")
    assert drain(channel, queue) == [b"forwarded"]
    channel.exchange_unbind(destination=destination, source=source, routing_key="logs.*")
    channel.basic_publish(source, "logs.error", b"after unbind")
    assert drain(channel, queue) == []
    channel.exchange_delete(source)
    channel.exchange_delete(destination)


def test_message_reaching_a_queue_by_two_bindings_is_delivered_once(
    channel: BlockingChannel,
) -> None:
    exchange = unique("topic")
    channel.exchange_declare(exchange, "topic", auto_delete=True)
    queue = temp_queue(channel)
    channel.queue_bind(queue, exchange, "a.*")
    channel.queue_bind(queue, exchange, "*.b")
    channel.basic_publish(exchange, "a.b", b"once")
    assert drain(channel, queue) == [b"once"]
    channel.exchange_delete(exchange)


def test_publishing_to_a_missing_exchange_closes_the_channel_with_404(
    channel: BlockingChannel,
) -> None:
    channel.confirm_delivery()  # so the close arrives while publish waits
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as caught:
        channel.basic_publish("no-such-exchange", "rk", b"x")
    assert caught.value.reply_code == 404
    assert "no-such-exchange" in caught.value.reply_text


def test_redeclaring_an_exchange_with_another_type_fails_with_406(
    channel: BlockingChannel,
) -> None:
    exchange = unique("x")
    channel.exchange_declare(exchange, "direct", auto_delete=True)
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as caught:
        channel.exchange_declare(exchange, "fanout", auto_delete=True)
    assert caught.value.reply_code == 406
    assert "type" in caught.value.reply_text


def test_passive_declare_of_a_missing_exchange_fails_with_404(channel: BlockingChannel) -> None:
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as caught:
        channel.exchange_declare("no-such-exchange", passive=True)
    assert caught.value.reply_code == 404


def test_declaring_an_amq_prefixed_exchange_is_refused_with_403(
    channel: BlockingChannel,
) -> None:
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as caught:
        channel.exchange_declare("amq.custom", "direct")
    assert caught.value.reply_code == 403


# ---------------------------------------------------------------------------------------------
# mandatory, confirms, transactions


def test_mandatory_unroutable_publish_raises_unroutable_error_with_confirms(
    channel: BlockingChannel,
) -> None:
    channel.confirm_delivery()
    with pytest.raises(pika.exceptions.UnroutableError) as caught:
        channel.basic_publish("", unique("nowhere"), b"lost", mandatory=True)
    [returned] = caught.value.messages
    assert returned.method.reply_code == 312
    assert returned.method.reply_text == "NO_ROUTE"
    assert returned.body == b"lost"


def test_mandatory_unroutable_publish_calls_the_on_return_callback(
    connection: BlockingConnection, channel: BlockingChannel
) -> None:
    returned: list[tuple[int, str, str, bytes]] = []
    channel.add_on_return_callback(
        lambda ch, method, props, body: returned.append(
            (method.reply_code, method.exchange, method.routing_key, body)
        )
    )
    channel.basic_publish(
        "amq.direct", "nobody", b"back", pika.BasicProperties(message_id="r1"), mandatory=True
    )
    pump_until(connection, lambda: bool(returned))
    assert returned == [(312, "amq.direct", "nobody", b"back")]


def test_non_mandatory_unroutable_publish_is_confirmed_and_dropped(
    channel: BlockingChannel,
) -> None:
    channel.confirm_delivery()
    channel.basic_publish("amq.direct", "nobody", b"dropped")  # no exception: acked


def test_publisher_confirms_acknowledge_every_routed_publish(channel: BlockingChannel) -> None:
    queue = temp_queue(channel)
    channel.confirm_delivery()
    for i in range(20):
        channel.basic_publish("", queue, str(i).encode(), pika.BasicProperties(delivery_mode=2))
    assert ready_count(channel, queue) == 20


def test_tx_commit_makes_published_messages_visible(channel: BlockingChannel) -> None:
    queue = temp_queue(channel)
    channel.tx_select()
    channel.basic_publish("", queue, b"one")
    channel.basic_publish("", queue, b"two")
    assert ready_count(channel, queue) == 0
    channel.tx_commit()
    assert drain(channel, queue) == [b"one", b"two"]


def test_tx_rollback_discards_published_messages(channel: BlockingChannel) -> None:
    queue = temp_queue(channel)
    channel.tx_select()
    channel.basic_publish("", queue, b"discarded")
    channel.tx_rollback()
    channel.tx_commit()
    assert ready_count(channel, queue) == 0


def test_tx_rollback_discards_acks_so_messages_stay_unacked(
    connection: BlockingConnection, channel: BlockingChannel
) -> None:
    queue = temp_queue(channel)
    channel.basic_publish("", queue, b"keep me")
    channel.tx_select()
    method, _props, _body = channel.basic_get(queue)
    channel.basic_ack(method.delivery_tag)
    channel.tx_rollback()
    channel.close()  # the ack was rolled back, so closing requeues the message
    other = connection.channel()
    method, _props, body = other.basic_get(queue, auto_ack=True)
    assert body == b"keep me"
    assert method.redelivered is True


def test_tx_commit_applies_acks(connection: BlockingConnection, channel: BlockingChannel) -> None:
    queue = temp_queue(channel)
    channel.basic_publish("", queue, b"gone")
    channel.tx_select()
    method, _props, _body = channel.basic_get(queue)
    channel.basic_ack(method.delivery_tag)
    channel.tx_commit()
    channel.close()
    assert ready_count(connection.channel(), queue) == 0


# ---------------------------------------------------------------------------------------------
# acknowledgements


def test_rejected_message_with_requeue_comes_back_first_marked_redelivered(
    channel: BlockingChannel,
) -> None:
    queue = temp_queue(channel)
    for body in (b"a", b"b", b"c"):
        channel.basic_publish("", queue, body)
    method, _props, body = channel.basic_get(queue)
    assert (body, method.redelivered) == (b"a", False)
    channel.basic_reject(method.delivery_tag, requeue=True)
    method, _props, body = channel.basic_get(queue, auto_ack=True)
    assert (body, method.redelivered) == (b"a", True)
    assert drain(channel, queue) == [b"b", b"c"]


def test_nack_multiple_with_requeue_restores_the_original_order(
    channel: BlockingChannel,
) -> None:
    queue = temp_queue(channel)
    for i in range(5):
        channel.basic_publish("", queue, str(i).encode())
    tags = [channel.basic_get(queue)[0].delivery_tag for _ in range(3)]  # 0, 1, 2 unacked
    channel.basic_nack(tags[-1], multiple=True, requeue=True)
    got = []
    while True:
        method, _props, body = channel.basic_get(queue, auto_ack=True)
        if method is None:
            break
        got.append((body, method.redelivered))
    assert got == [(b"0", True), (b"1", True), (b"2", True), (b"3", False), (b"4", False)]


def test_requeue_of_a_middle_message_puts_it_back_at_its_position(
    connection: BlockingConnection, channel: BlockingChannel
) -> None:
    queue = temp_queue(channel)
    for i in range(4):
        channel.basic_publish("", queue, str(i).encode())
    tags = {}
    for _ in range(3):
        method, _props, body = channel.basic_get(queue)
        tags[body] = method.delivery_tag
    channel.basic_ack(tags[b"0"])
    channel.basic_reject(tags[b"2"], requeue=True)
    channel.basic_reject(tags[b"1"], requeue=True)
    assert drain(channel, queue) == [b"1", b"2", b"3"]


def test_reject_without_requeue_drops_the_message(channel: BlockingChannel) -> None:
    queue = temp_queue(channel)
    channel.basic_publish("", queue, b"bad")
    method, _props, _body = channel.basic_get(queue)
    channel.basic_reject(method.delivery_tag, requeue=False)
    assert ready_count(channel, queue) == 0


def test_consumer_nack_with_requeue_redelivers_to_the_consumer(
    connection: BlockingConnection, channel: BlockingChannel
) -> None:
    queue = temp_queue(channel)
    channel.basic_publish("", queue, b"retry")
    seen: list[bool] = []

    def on_message(ch, method, props, body):  # type: ignore[no-untyped-def]
        seen.append(method.redelivered)
        if method.redelivered:
            ch.basic_ack(method.delivery_tag)
        else:
            ch.basic_nack(method.delivery_tag, requeue=True)

    channel.basic_consume(queue, on_message)
    pump_until(connection, lambda: len(seen) == 2)
    assert seen == [False, True]


def test_acking_an_unknown_delivery_tag_closes_the_channel_with_406(
    connection: BlockingConnection, channel: BlockingChannel
) -> None:
    channel.basic_ack(99)
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as caught:
        channel.queue_declare("", exclusive=True)
    assert caught.value.reply_code == 406
    assert "unknown delivery tag 99" in caught.value.reply_text


def test_unacked_messages_are_requeued_in_order_when_the_channel_closes(
    connection: BlockingConnection, channel: BlockingChannel
) -> None:
    channel.confirm_delivery()  # publishes are in the queue before we count
    queue = temp_queue(channel)
    for body in (b"a", b"b", b"c"):
        channel.basic_publish("", queue, body)
    consumer = connection.channel()
    consumer.basic_get(queue)
    consumer.basic_get(queue)
    assert ready_count(channel, queue) == 1
    consumer.close()
    got = []
    for _ in range(3):
        method, _props, body = channel.basic_get(queue, auto_ack=True)
        got.append((body, method.redelivered))
    assert got == [(b"a", True), (b"b", True), (b"c", False)]


def test_unacked_messages_are_requeued_when_the_connection_closes(
    router_url: str, channel: BlockingChannel
) -> None:
    channel.confirm_delivery()  # publishes are in the queue before we count
    queue = channel.queue_declare(unique("requeue"), auto_delete=False).method.queue
    for body in (b"a", b"b"):
        channel.basic_publish("", queue, body)
    with connect(router_url) as consumer_connection:
        consumer = consumer_connection.channel()
        received: list[bytes] = []
        consumer.basic_consume(queue, lambda ch, m, p, body: received.append(body))
        pump_until(consumer_connection, lambda: len(received) == 2)
    deadline = time.monotonic() + 5
    while ready_count(channel, queue) < 2 and time.monotonic() < deadline:
        pass  # RabbitMQ requeues once it notices the connection is gone
    method, _props, body = channel.basic_get(queue, auto_ack=True)
    assert (body, method.redelivered) == (b"a", True)
    channel.queue_delete(queue)


def test_basic_recover_with_requeue_redelivers_unacked_messages(
    channel: BlockingChannel,
) -> None:
    queue = temp_queue(channel)
    channel.basic_publish("", queue, b"again")
    channel.basic_get(queue)
    channel.basic_recover(requeue=True)
    method, _props, body = channel.basic_get(queue, auto_ack=True)
    assert (body, method.redelivered) == (b"again", True)


# ---------------------------------------------------------------------------------------------
# consumers and prefetch


def test_prefetch_two_delivers_only_two_unacked_messages(
    connection: BlockingConnection, channel: BlockingChannel
) -> None:
    channel.confirm_delivery()  # publishes are in the queue before we count
    queue = temp_queue(channel)
    consumer = connection.channel()
    consumer.basic_qos(prefetch_count=2)
    received: list[int] = []
    consumer.basic_consume(queue, lambda ch, m, p, body: received.append(m.delivery_tag))
    for i in range(5):
        channel.basic_publish("", queue, str(i).encode())
    pump_until(connection, lambda: len(received) == 2)
    assert ready_count(channel, queue) == 3
    connection.process_data_events(time_limit=0)
    assert len(received) == 2
    consumer.basic_ack(received[0])
    pump_until(connection, lambda: len(received) == 3)
    assert ready_count(channel, queue) == 2


def test_per_consumer_prefetch_applies_to_each_consumer_on_a_channel(
    connection: BlockingConnection, channel: BlockingChannel
) -> None:
    channel.confirm_delivery()  # publishes are in the queue before we count
    queue = temp_queue(channel)
    consumer = connection.channel()
    consumer.basic_qos(prefetch_count=1, global_qos=False)
    received: list[bytes] = []
    for _ in range(2):
        consumer.basic_consume(queue, lambda ch, m, p, body: received.append(body))
    for i in range(5):
        channel.basic_publish("", queue, str(i).encode())
    pump_until(connection, lambda: len(received) == 2)
    assert ready_count(channel, queue) == 3


def test_global_prefetch_limits_the_whole_channel(
    connection: BlockingConnection, channel: BlockingChannel
) -> None:
    channel.confirm_delivery()  # publishes are in the queue before we count
    queue = temp_queue(channel)
    consumer = connection.channel()
    consumer.basic_qos(prefetch_count=1, global_qos=True)
    received: list[bytes] = []
    for _ in range(2):
        consumer.basic_consume(queue, lambda ch, m, p, body: received.append(body))
    for i in range(5):
        channel.basic_publish("", queue, str(i).encode())
    pump_until(connection, lambda: len(received) == 1)
    assert ready_count(channel, queue) == 4


def test_two_consumers_on_one_queue_take_turns(
    connection: BlockingConnection, channel: BlockingChannel
) -> None:
    queue = temp_queue(channel)
    received: list[tuple[str, bytes]] = []
    for name in ("a", "b"):
        channel.basic_consume(
            queue,
            lambda ch, m, p, body, name=name: received.append((name, body)),
            auto_ack=True,
        )
    for i in range(6):
        channel.basic_publish("", queue, str(i).encode())
    pump_until(connection, lambda: len(received) == 6)
    assert [name for name, _ in received] in (list("ababab"), list("bababa"))


def test_cancelled_consumer_receives_no_more_messages(
    connection: BlockingConnection, channel: BlockingChannel
) -> None:
    channel.confirm_delivery()  # publishes are in the queue before we count
    queue = temp_queue(channel)
    received: list[bytes] = []
    tag = channel.basic_consume(queue, lambda ch, m, p, body: received.append(body), auto_ack=True)
    channel.basic_publish("", queue, b"before")
    pump_until(connection, lambda: received == [b"before"])
    channel.basic_cancel(tag)
    channel.basic_publish("", queue, b"after")
    assert ready_count(channel, queue) == 1
    connection.process_data_events(time_limit=0)
    assert received == [b"before"]


def test_deleting_a_consumed_queue_sends_basic_cancel_to_the_consumer(
    connection: BlockingConnection, channel: BlockingChannel
) -> None:
    queue = channel.queue_declare(unique("doomed")).method.queue
    cancelled: list[str] = []
    consumer = connection.channel()
    consumer.add_on_cancel_callback(lambda frame: cancelled.append(frame.method.consumer_tag))
    tag = consumer.basic_consume(queue, lambda *args: None)
    channel.queue_delete(queue)
    pump_until(connection, lambda: bool(cancelled))
    assert cancelled == [tag]
    assert consumer.is_open


def test_exclusive_consumer_refuses_a_second_consumer_with_403(
    connection: BlockingConnection, channel: BlockingChannel
) -> None:
    queue = temp_queue(channel)
    channel.basic_consume(queue, lambda *args: None, exclusive=True)
    other = connection.channel()
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as caught:
        other.basic_consume(queue, lambda *args: None)
    assert caught.value.reply_code == 403
    assert "exclusive use" in caught.value.reply_text


def test_auto_delete_queue_goes_away_when_its_last_consumer_cancels(
    connection: BlockingConnection, channel: BlockingChannel
) -> None:
    queue = channel.queue_declare(unique("auto"), auto_delete=True).method.queue
    tag = channel.basic_consume(queue, lambda *args: None)
    channel.basic_cancel(tag)
    probe = connection.channel()
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as caught:
        probe.queue_declare(queue, passive=True)
    assert caught.value.reply_code == 404


def test_consume_from_a_missing_queue_fails_with_404(channel: BlockingChannel) -> None:
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as caught:
        channel.basic_consume("no-such-queue", lambda *args: None)
    assert caught.value.reply_code == 404


# ---------------------------------------------------------------------------------------------
# declarations and their errors


def test_exclusive_queue_is_locked_to_another_connection_with_405(
    router_url: str, channel: BlockingChannel
) -> None:
    queue = channel.queue_declare(unique("mine"), exclusive=True).method.queue
    with connect(router_url) as other_connection:
        other = other_connection.channel()
        with pytest.raises(pika.exceptions.ChannelClosedByBroker) as caught:
            other.queue_declare(queue)
        assert caught.value.reply_code == 405
        assert "RESOURCE_LOCKED" in caught.value.reply_text
        assert queue in caught.value.reply_text


def test_consuming_another_connections_exclusive_queue_fails_with_405(
    router_url: str, channel: BlockingChannel
) -> None:
    queue = channel.queue_declare(unique("mine"), exclusive=True).method.queue
    with connect(router_url) as other_connection:
        other = other_connection.channel()
        with pytest.raises(pika.exceptions.ChannelClosedByBroker) as caught:
            other.basic_consume(queue, lambda *args: None)
        assert caught.value.reply_code == 405


def test_exclusive_queue_is_deleted_when_its_connection_closes(
    router_url: str, channel: BlockingChannel
) -> None:
    with connect(router_url) as owner_connection:
        queue = owner_connection.channel().queue_declare("", exclusive=True).method.queue
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as caught:
        channel.queue_declare(queue, passive=True)
    assert caught.value.reply_code == 404


def test_passive_declare_of_a_missing_queue_fails_with_404(channel: BlockingChannel) -> None:
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as caught:
        channel.queue_declare("no-such-queue", passive=True)
    assert caught.value.reply_code == 404
    assert "NOT_FOUND" in caught.value.reply_text
    assert "no-such-queue" in caught.value.reply_text


def test_passive_declare_of_an_existing_queue_reports_counts(channel: BlockingChannel) -> None:
    queue = temp_queue(channel)
    channel.basic_publish("", queue, b"x")
    channel.basic_consume(queue, lambda *args: None, auto_ack=False)
    result = channel.queue_declare(queue, passive=True)
    assert result.method.consumer_count == 1


def test_redeclaring_a_queue_with_different_arguments_fails_with_406_naming_the_argument(
    channel: BlockingChannel,
) -> None:
    queue = channel.queue_declare(unique("args"), arguments={"x-max-length": 10}).method.queue
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as caught:
        channel.queue_declare(queue, arguments={"x-max-length": 20})
    assert caught.value.reply_code == 406
    assert "PRECONDITION_FAILED" in caught.value.reply_text
    assert "inequivalent arg 'x-max-length'" in caught.value.reply_text


def test_redeclaring_a_queue_with_a_different_durable_flag_fails_with_406(
    channel: BlockingChannel,
) -> None:
    queue = channel.queue_declare(unique("durable"), durable=False).method.queue
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as caught:
        channel.queue_declare(queue, durable=True)
    assert caught.value.reply_code == 406
    assert "inequivalent arg 'durable'" in caught.value.reply_text


def test_redeclaring_a_queue_with_identical_arguments_succeeds(channel: BlockingChannel) -> None:
    name = unique("same")
    channel.confirm_delivery()
    channel.queue_declare(name, arguments={"x-max-length": 10}, auto_delete=True)
    channel.basic_publish("", name, b"x")
    result = channel.queue_declare(name, arguments={"x-max-length": 10}, auto_delete=True)
    assert result.method.message_count == 1
    channel.queue_delete(name)


def test_binding_a_queue_to_a_missing_exchange_fails_with_404(channel: BlockingChannel) -> None:
    queue = temp_queue(channel)
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as caught:
        channel.queue_bind(queue, "no-such-exchange", "rk")
    assert caught.value.reply_code == 404


def test_channel_error_leaves_the_connection_and_other_channels_usable(
    connection: BlockingConnection, channel: BlockingChannel
) -> None:
    doomed = connection.channel()
    with pytest.raises(pika.exceptions.ChannelClosedByBroker):
        doomed.queue_declare("no-such-queue", passive=True)
    queue = temp_queue(channel)
    channel.basic_publish("", queue, b"fine")
    assert drain(channel, queue) == [b"fine"]
    assert connection.is_open


def test_unbinding_a_binding_that_does_not_exist_succeeds(channel: BlockingChannel) -> None:
    queue = temp_queue(channel)
    channel.queue_unbind(queue, "amq.direct", "never-bound")
    assert channel.is_open


def test_unbinding_a_queue_that_does_not_exist_succeeds(channel: BlockingChannel) -> None:
    channel.queue_unbind(unique("no-such-queue"), "amq.direct", "rk")
    assert channel.is_open


def test_unbinding_an_exchange_that_does_not_exist_succeeds(channel: BlockingChannel) -> None:
    channel.exchange_unbind(unique("no-such-exchange"), "amq.direct", "rk")
    assert channel.is_open


# ---------------------------------------------------------------------------------------------
# the broker's side of the connection


def test_broker_shutdown_closes_connections_with_connection_forced_320(
    router_server,  # type: ignore[no-untyped-def]
) -> None:
    connection = pika.BlockingConnection(pika.URLParameters(router_server.url))
    try:
        connection.channel()
        router_server.stop()
        with pytest.raises(pika.exceptions.ConnectionClosedByBroker) as caught:
            pump_until(connection, lambda: False)
        assert caught.value.reply_code == 320
        assert "CONNECTION_FORCED" in caught.value.reply_text
    finally:
        if connection.is_open:
            connection.close()


def test_broker_drops_a_connection_that_misses_its_heartbeats(router_url: str) -> None:
    with connect(router_url, heartbeat=1) as connection:
        connection.channel()
        time.sleep(4)  # stay silent past two missed heartbeats (real clock: heartbeats are)
        with pytest.raises(pika.exceptions.AMQPConnectionError):
            pump_until(connection, lambda: False)
        assert connection.is_closed


def test_auto_ack_consumer_is_not_limited_by_prefetch(
    connection: BlockingConnection, channel: BlockingChannel
) -> None:
    queue = temp_queue(channel)
    consumer = connection.channel()
    consumer.basic_qos(prefetch_count=1)
    received: list[bytes] = []
    consumer.basic_consume(queue, lambda ch, m, p, body: received.append(body), auto_ack=True)
    for i in range(5):
        channel.basic_publish("", queue, str(i).encode())
    pump_until(connection, lambda: len(received) == 5)


def test_consumer_that_reads_slowly_still_gets_every_message(router_url: str) -> None:
    body = b"z" * 100_000
    with connect(router_url) as consumer_connection, connect(router_url) as publisher_connection:
        consumer = consumer_connection.channel()
        queue = consumer.queue_declare(unique("slow"), auto_delete=True).method.queue
        received: list[int] = []
        consumer.basic_consume(queue, lambda ch, m, p, b: received.append(len(b)), auto_ack=True)
        publisher = publisher_connection.channel()
        publisher.confirm_delivery()
        for _ in range(300):  # 30 MB while the consumer reads nothing
            publisher.basic_publish("", queue, body)
        pump_until(consumer_connection, lambda: len(received) == 300, timeout=20)
        assert set(received) == {100_000}


# ---------------------------------------------------------------------------------------------
# queue features RabbitMQ clients rely on


def test_message_ttl_zero_drops_a_message_no_consumer_can_take_now(
    channel: BlockingChannel,
) -> None:
    queue = temp_queue(channel, **{"x-message-ttl": 0})
    channel.confirm_delivery()
    channel.basic_publish("", queue, b"expired")
    assert ready_count(channel, queue) == 0


def test_per_message_expiration_zero_drops_a_message_no_consumer_can_take_now(
    channel: BlockingChannel,
) -> None:
    queue = temp_queue(channel)
    channel.confirm_delivery()
    channel.basic_publish("", queue, b"expired", pika.BasicProperties(expiration="0"))
    assert channel.basic_get(queue, auto_ack=True) == (None, None, None)


def test_max_length_drops_the_oldest_messages(channel: BlockingChannel) -> None:
    queue = temp_queue(channel, **{"x-max-length": 2})
    channel.confirm_delivery()
    for i in range(4):
        channel.basic_publish("", queue, str(i).encode())
    assert drain(channel, queue) == [b"2", b"3"]


def test_max_length_with_reject_publish_nacks_the_overflowing_publish(
    channel: BlockingChannel,
) -> None:
    queue = temp_queue(channel, **{"x-max-length": 1, "x-overflow": "reject-publish"})
    channel.confirm_delivery()
    channel.basic_publish("", queue, b"fits")
    with pytest.raises(pika.exceptions.NackError):
        channel.basic_publish("", queue, b"overflows")


def test_rejected_message_is_dead_lettered_with_x_death(channel: BlockingChannel) -> None:
    dead = temp_queue(channel)
    queue = temp_queue(channel, **{"x-dead-letter-exchange": "", "x-dead-letter-routing-key": dead})
    channel.basic_publish("", queue, b"dead")
    method, _props, _body = channel.basic_get(queue)
    channel.basic_reject(method.delivery_tag, requeue=False)
    channel.confirm_delivery()  # a round trip: the reject is processed
    method, props, body = channel.basic_get(dead, auto_ack=True)
    assert body == b"dead"
    [death] = props.headers["x-death"]
    assert (death["reason"], death["queue"], death["count"]) == ("rejected", queue, 1)
    assert props.headers["x-first-death-reason"] == "rejected"


def test_priority_queue_delivers_higher_priority_first(channel: BlockingChannel) -> None:
    queue = temp_queue(channel, **{"x-max-priority": 10})
    for priority in (1, 5, 3, 9, 0):
        channel.basic_publish(
            "", queue, str(priority).encode(), pika.BasicProperties(priority=priority)
        )
    assert drain(channel, queue) == [b"9", b"5", b"3", b"1", b"0"]


def test_single_active_consumer_queue_delivers_to_one_consumer_only(
    connection: BlockingConnection, channel: BlockingChannel
) -> None:
    queue = temp_queue(channel, **{"x-single-active-consumer": True})
    received: list[str] = []
    for name in ("first", "second"):
        channel.basic_consume(
            queue, lambda ch, m, p, b, name=name: received.append(name), auto_ack=True
        )
    for _ in range(4):
        channel.basic_publish("", queue, b"x")
    pump_until(connection, lambda: len(received) == 4)
    assert received == ["first"] * 4


def test_declaring_a_queue_with_a_mistyped_argument_fails_with_406(
    channel: BlockingChannel,
) -> None:
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as caught:
        channel.queue_declare("", exclusive=True, arguments={"x-max-length": "ten"})
    assert caught.value.reply_code == 406
    assert "invalid arg 'x-max-length'" in caught.value.reply_text


def test_direct_reply_to_delivers_a_reply_without_a_queue(
    connection: BlockingConnection, channel: BlockingChannel
) -> None:
    replies: list[bytes] = []
    channel.basic_consume(
        "amq.rabbitmq.reply-to", lambda ch, m, p, body: replies.append(body), auto_ack=True
    )
    server = connection.channel()
    requests = temp_queue(server)
    channel.confirm_delivery()
    channel.basic_publish(
        "", requests, b"ping", pika.BasicProperties(reply_to="amq.rabbitmq.reply-to")
    )
    _method, props, _body = server.basic_get(requests, auto_ack=True)
    assert props.reply_to.startswith("amq.rabbitmq.reply-to.")
    server.basic_publish("", props.reply_to, b"pong")
    pump_until(connection, lambda: bool(replies))
    assert replies == [b"pong"]
