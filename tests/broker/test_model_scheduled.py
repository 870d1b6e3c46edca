"""Scheduled delivery: the ``x-delayed-message`` exchange routes like its ``x-delayed-type`` at
publish time (mandatory returns and confirms at once) and queues hold the message invisible until
``x-delay`` / ``x-deliver-at`` is due."""

from __future__ import annotations

from typing import Any

import pytest
from model_helpers import FakeClient, make_broker

from router.amqp import spec
from router.amqp.properties import BasicProperties
from router.amqp.tables import FieldTable
from router.broker.queues import Queue

WALL = 1_700_000_000.0  # Unix seconds at monotonic 0


def _client(delayed_type: str = "direct") -> FakeClient:
    broker = make_broker()
    broker.clock.wall_offset = WALL
    client = FakeClient(broker)
    client.open_channel(1)
    client.call(
        1,
        spec.ExchangeDeclare(
            exchange="later",
            type="x-delayed-message",
            arguments=FieldTable({"x-delayed-type": delayed_type}),
        ),
    )
    client.declare_queue(1, "q")
    client.call(1, spec.QueueBind(queue="q", exchange="later", routing_key="k"))
    return client


def _publish(client: FakeClient, body: bytes, key: str = "k", **headers: Any) -> list[Any]:
    table = FieldTable({name.replace("_", "-"): value for name, value in headers.items()})
    return client.publish(1, "later", key, body, properties=BasicProperties(headers=table))


def _queue(client: FakeClient) -> Queue:
    return client.broker.vhosts["/"].queues["q"]


def _at(client: FakeClient, now: float) -> None:
    client.now = now
    client.broker.tick(now)


def _get_body(client: FakeClient) -> bytes | None:
    reply = client.call(1, spec.BasicGet(queue="q", no_ack=True))[-1]
    return None if isinstance(reply.method, spec.BasicGetEmpty) else reply.body


def test_a_delayed_exchange_can_be_declared_with_a_delayed_type():
    client = _client()
    assert client.channel_close(1) is None
    assert client.broker.vhosts["/"].exchanges["later"].TYPE == "x-delayed-message"


def test_x_delay_holds_the_message_invisible_until_it_is_due():
    client = _client()
    _publish(client, b"x", x_delay=5000)
    queue = _queue(client)
    assert (queue.message_count, queue.waiting) == (0, 1)
    assert _get_body(client) is None
    assert client.broker.next_deadline() == pytest.approx(5.0)
    _at(client, 4.999)
    assert queue.message_count == 0
    _at(client, 5.0)
    assert (queue.message_count, queue.waiting) == (1, 0)
    assert _get_body(client) == b"x"


def test_a_declare_ok_does_not_count_waiting_messages():
    client = _client()
    _publish(client, b"x", x_delay=5000)
    assert client.declare_queue(1, "q") == spec.QueueDeclareOk("q", 0, 0)


def test_a_due_message_is_delivered_to_a_consumer_at_once():
    client = _client()
    client.consume(1, "q", "c", no_ack=True)
    _publish(client, b"x", x_delay=1000)
    assert client.bodies(1) == []
    _at(client, 1.0)
    assert client.bodies(1) == [b"x"]


def test_queue_waiting_counts_every_pending_message():
    client = _client()
    _publish(client, b"a", x_delay=1000)
    _publish(client, b"b", x_delay=2000)
    _publish(client, b"now")
    queue = _queue(client)
    assert (queue.waiting, queue.message_count) == (2, 1)
    _at(client, 1.0)
    assert (queue.waiting, queue.message_count) == (1, 2)
    _at(client, 2.0)
    assert (queue.waiting, queue.message_count) == (0, 3)
    assert [_get_body(client) for _ in range(3)] == [b"a", b"b", b"now"]


def test_messages_become_visible_in_due_order_not_publish_order():
    client = _client()
    client.consume(1, "q", "c", no_ack=True)
    _publish(client, b"late", x_delay=3000)
    _publish(client, b"early", x_delay=1000)
    _at(client, 1.0)
    _at(client, 3.0)
    assert client.bodies(1) == [b"early", b"late"]


def test_x_deliver_at_is_an_absolute_unix_time_in_milliseconds():
    client = _client()
    client.now = 1.0
    _publish(client, b"x", x_deliver_at=int((WALL + 3.5) * 1000))
    assert _queue(client).waiting == 1
    assert client.broker.next_deadline() == pytest.approx(3.5)
    _at(client, 3.499)
    assert _get_body(client) is None
    _at(client, 3.5)
    assert _get_body(client) == b"x"


def test_x_deliver_at_in_the_past_is_visible_at_once():
    client = _client()
    client.now = 10.0
    _publish(client, b"x", x_deliver_at=int((WALL + 5) * 1000))
    assert _queue(client).waiting == 0
    assert _get_body(client) == b"x"


@pytest.mark.parametrize("delay", [0, -1000])
def test_a_zero_or_negative_x_delay_is_visible_at_once(delay):
    client = _client()
    _publish(client, b"x", x_delay=delay)
    assert _queue(client).waiting == 0
    assert _get_body(client) == b"x"


def test_a_message_without_a_delay_header_is_visible_at_once():
    client = _client()
    client.publish(1, "later", "k", b"x")
    assert _get_body(client) == b"x"


def test_x_delay_on_an_ordinary_exchange_is_ignored():
    client = _client()
    client.publish(
        1, "", "q", b"x", properties=BasicProperties(headers=FieldTable({"x-delay": 5000}))
    )
    assert _queue(client).waiting == 0
    assert _get_body(client) == b"x"


def test_an_unroutable_mandatory_delayed_message_is_returned_at_publish_time():
    client = _client()
    client.send(
        client.publish_bytes(
            1,
            "later",
            "nobody",
            b"y",
            mandatory=True,
            properties=BasicProperties(headers=FieldTable({"x-delay": 5000})),
        )
    )
    [returned] = client.take()
    assert returned.method == spec.BasicReturn(312, "NO_ROUTE", "later", "nobody")
    assert returned.body == b"y"
    assert client.broker.next_deadline() is None


def test_a_delayed_message_is_confirmed_at_once():
    client = _client()
    client.call(1, spec.ConfirmSelect())
    replies = _publish(client, b"x", x_delay=60000)
    assert [r.method for r in replies] == [spec.BasicAck(1, False)]
    assert _queue(client).waiting == 1


def test_a_delayed_exchange_routes_like_its_delayed_type():
    client = _client(delayed_type="topic")
    client.declare_queue(1, "t")
    client.call(1, spec.QueueBind(queue="t", exchange="later", routing_key="a.*"))
    _publish(client, b"x", key="a.b", x_delay=1000)
    assert client.broker.vhosts["/"].queues["t"].waiting == 1
    assert _queue(client).waiting == 0


def test_a_delayed_exchange_without_a_valid_delayed_type_is_refused_with_406():
    client = FakeClient(make_broker())
    client.open_channel(1)
    client.call(1, spec.ExchangeDeclare(exchange="later", type="x-delayed-message"))
    close = client.channel_close(1)
    assert close is not None
    assert close.reply_code == 406
    assert "x-delayed-type" in close.reply_text
    assert "later" not in client.broker.vhosts["/"].exchanges


def test_a_delayed_message_reaches_every_bound_queue_and_each_holds_it():
    client = _client(delayed_type="fanout")
    client.declare_queue(1, "other")
    client.call(1, spec.QueueBind(queue="other", exchange="later"))
    _publish(client, b"x", x_delay=2000)
    queues = client.broker.vhosts["/"].queues
    assert (queues["q"].waiting, queues["other"].waiting) == (1, 1)
    _at(client, 2.0)
    assert (queues["q"].message_count, queues["other"].message_count) == (1, 1)


def test_a_scheduled_message_due_in_a_full_reject_publish_queue_drops_nothing():
    client = _client()
    client.call(1, spec.ExchangeDeclare(exchange="dlx", type="fanout"))
    client.declare_queue(1, "dlq")
    client.call(1, spec.QueueBind(queue="dlq", exchange="dlx"))
    arguments = FieldTable(
        {"x-max-length": 1, "x-overflow": "reject-publish", "x-dead-letter-exchange": "dlx"}
    )
    client.declare_queue(1, "full", arguments=arguments)
    client.call(1, spec.QueueBind(queue="full", exchange="later", routing_key="f"))
    client.call(1, spec.ConfirmSelect())
    assert [r.method for r in _publish(client, b"delayed", key="f", x_delay=1000)] == [
        spec.BasicAck(1, False)
    ]
    assert [r.method for r in _publish(client, b"now", key="f")] == [spec.BasicAck(2, False)]
    _at(client, 1.0)
    queues = client.broker.vhosts["/"].queues
    assert queues["dlq"].message_count == 0
    assert queues["full"].message_count == 2


def _ttl_before_due(with_consumer: bool) -> FakeClient:
    """A message with expiration 1 s and x-delay 5 s, published at 0 and looked at until 5 s."""
    client = _client()
    client.call(1, spec.ExchangeDeclare(exchange="dlx", type="fanout"))
    client.declare_queue(1, "dlq")
    client.call(1, spec.QueueBind(queue="dlq", exchange="dlx"))
    client.declare_queue(1, "t", arguments=FieldTable({"x-dead-letter-exchange": "dlx"}))
    client.call(1, spec.QueueBind(queue="t", exchange="later", routing_key="t"))
    if with_consumer:
        client.consume(1, "t", "c", no_ack=True)
    headers = FieldTable({"x-delay": 5000})
    client.publish(
        1, "later", "t", b"x", properties=BasicProperties(headers=headers, expiration="1000")
    )
    _at(client, 1.0)
    _at(client, 5.0)
    return client


def test_a_scheduled_messages_ttl_counts_from_its_due_time_so_a_consumer_gets_it_when_due():
    # as with RabbitMQ's delayed-message plugin: the message enters its queue when due
    client = _ttl_before_due(with_consumer=True)
    assert client.bodies(1) == [b"x"]
    assert client.broker.vhosts["/"].queues["dlq"].message_count == 0


def test_a_scheduled_message_nobody_takes_expires_its_ttl_after_it_is_due():
    client = _ttl_before_due(with_consumer=False)
    queues = client.broker.vhosts["/"].queues
    assert (queues["t"].message_count, queues["dlq"].message_count) == (1, 0)
    _at(client, 5.999)
    assert queues["dlq"].message_count == 0
    _at(client, 6.0)
    assert (queues["t"].message_count, queues["dlq"].message_count) == (0, 1)
