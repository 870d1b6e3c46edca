"""Priority queues (``x-max-priority``): validation, ordering capped at the maximum, FIFO within a
level, requeue to the original position, and the delivered property left as published."""

from __future__ import annotations

import pytest
from model_helpers import FakeClient, FakeConsumer, Received, make_broker

from router.amqp import spec
from router.amqp.properties import BasicProperties
from router.amqp.tables import FieldTable
from router.broker.message import Message
from router.broker.queues import Queue


def _client() -> FakeClient:
    client = FakeClient(make_broker())
    client.open_channel(1)
    return client


def _priority_queue(max_priority: int) -> Queue:
    return Queue("q", "/", arguments=FieldTable({"x-max-priority": max_priority}))


def _message(body: bytes, priority: int | None) -> Message:
    properties = BasicProperties(priority=priority).encode()
    return Message("", "q", properties, body, 0, priority)


def _publish(queue: Queue, *items: tuple[bytes, int | None]) -> None:
    for body, priority in items:
        queue.publish(_message(body, priority))


def _drain(queue: Queue) -> list[bytes]:
    out = []
    while (entry := queue.pop()) is not None:
        out.append(entry.message.body)
    return out


def _get(client: FakeClient, queue: str = "q") -> Received:
    reply = client.call(1, spec.BasicGet(queue=queue, no_ack=True))[-1]
    assert isinstance(reply.method, spec.BasicGetOk), reply
    return reply


# --- declaring -----------------------------------------------------------------------------------


@pytest.mark.parametrize("max_priority", [1, 10, 255])
def test_a_priority_queue_can_be_declared_with_a_maximum_from_1_to_255(max_priority):
    client = _client()
    ok = client.declare_queue(1, "q", arguments=FieldTable({"x-max-priority": max_priority}))
    assert ok == spec.QueueDeclareOk("q", 0, 0)


def test_a_maximum_priority_of_256_closes_the_channel_with_406_naming_the_value():
    client = _client()
    client.declare_queue(1, "q", arguments=FieldTable({"x-max-priority": 256}))
    assert client.channel_close(1) == spec.ChannelClose(
        406,
        "PRECONDITION_FAILED - invalid arg 'x-max-priority' for queue 'q' in vhost '/': "
        "{max_value_exceeded,256}",
        50,
        10,
    )


def test_a_maximum_priority_of_0_closes_the_channel_with_406_naming_the_argument():
    client = _client()
    client.declare_queue(1, "q", arguments=FieldTable({"x-max-priority": 0}))
    close = client.channel_close(1)
    assert close is not None
    assert (close.reply_code, close.class_id, close.method_id) == (406, 50, 10)
    assert close.reply_text.startswith(
        "PRECONDITION_FAILED - invalid arg 'x-max-priority' for queue 'q' in vhost '/': 0 "
    )
    assert "q" not in client.broker.vhosts["/"].queues


def test_a_refused_priority_queue_leaves_the_connection_open():
    client = _client()
    client.declare_queue(1, "q", arguments=FieldTable({"x-max-priority": 256}))
    assert client.connection_close() is None
    client.open_channel(2)
    assert client.declare_queue(2, "q") == spec.QueueDeclareOk("q", 0, 0)


# --- ordering ------------------------------------------------------------------------------------


def test_higher_priorities_are_delivered_first_and_above_the_maximum_counts_as_the_maximum():
    queue = _priority_queue(5)
    _publish(queue, (b"none", None), (b"p1", 1), (b"p9", 9), (b"p5a", 5), (b"p3", 3), (b"p5b", 5))
    assert _drain(queue) == [b"p9", b"p5a", b"p5b", b"p3", b"p1", b"none"]


def test_messages_above_the_maximum_share_the_top_level_in_publish_order():
    queue = _priority_queue(5)
    _publish(queue, (b"p5", 5), (b"p200", 200), (b"p6", 6), (b"p4", 4))
    assert _drain(queue) == [b"p5", b"p200", b"p6", b"p4"]


def test_messages_of_one_priority_are_delivered_in_publish_order():
    queue = _priority_queue(3)
    _publish(queue, (b"a", 2), (b"x", 1), (b"b", 2), (b"y", 1), (b"c", 2))
    assert _drain(queue) == [b"a", b"b", b"c", b"x", b"y"]


def test_a_message_without_a_priority_counts_as_priority_0():
    queue = _priority_queue(3)
    _publish(queue, (b"none1", None), (b"zero", 0), (b"none2", None), (b"one", 1))
    assert _drain(queue) == [b"one", b"none1", b"zero", b"none2"]


def test_a_plain_queue_ignores_the_priority_property():
    queue = Queue("q", "/")
    _publish(queue, (b"low", 0), (b"high", 9), (b"none", None))
    assert _drain(queue) == [b"low", b"high", b"none"]


def test_the_delivered_priority_property_keeps_its_published_value_above_the_maximum():
    client = _client()
    client.declare_queue(1, "q", arguments=FieldTable({"x-max-priority": 5}))
    for priority in (None, 1, 9, 5, 3, 5):
        client.publish(
            1, "", "q", str(priority).encode(), properties=BasicProperties(priority=priority)
        )
    got = [_get(client) for _ in range(6)]
    assert [(r.body, r.properties.priority) for r in got] == [
        (b"9", 9),
        (b"5", 5),
        (b"5", 5),
        (b"3", 3),
        (b"1", 1),
        (b"None", None),
    ]


def test_a_consumer_receives_the_highest_priority_first_once_it_has_credit():
    client = _client()
    client.declare_queue(1, "q", arguments=FieldTable({"x-max-priority": 10}))
    for body, priority in ((b"low", 1), (b"mid", 5), (b"high", 10)):
        client.publish(1, "", "q", body, properties=BasicProperties(priority=priority))
    client.consume(1, "q", "c", no_ack=True)
    assert client.bodies(1) == [b"high", b"mid", b"low"]


# --- requeue -------------------------------------------------------------------------------------


def test_a_requeued_message_returns_to_its_original_position_within_its_level():
    queue = _priority_queue(5)
    _publish(queue, (b"a", 2), (b"b", 2), (b"c", 2), (b"d", 2))
    taken = [queue.get(no_ack=False) for _ in range(2)]
    queue.requeue([taken[1]])
    queue.requeue([taken[0]])
    assert _drain(queue) == [b"a", b"b", b"c", b"d"]


def test_a_requeued_message_stays_behind_higher_priorities_published_after_it():
    queue = _priority_queue(5)
    _publish(queue, (b"low1", 1), (b"low2", 1))
    first = queue.get(no_ack=False)
    _publish(queue, (b"high", 4), (b"low3", 1))
    queue.requeue([first])
    assert _drain(queue) == [b"high", b"low1", b"low2", b"low3"]


def test_requeued_messages_of_several_levels_each_return_to_their_own_level():
    queue = _priority_queue(5)
    _publish(queue, (b"h1", 5), (b"l1", 1), (b"h2", 5), (b"l2", 1))
    taken = [queue.get(no_ack=False) for _ in range(4)]
    assert [e.message.body for e in taken] == [b"h1", b"h2", b"l1", b"l2"]
    queue.requeue([taken[3], taken[1], taken[2], taken[0]])
    assert _drain(queue) == [b"h1", b"h2", b"l1", b"l2"]


def test_a_nacked_message_comes_back_redelivered_before_later_messages_of_its_level():
    client = _client()
    client.declare_queue(1, "q", arguments=FieldTable({"x-max-priority": 5}))
    for body in (b"a", b"b"):
        client.publish(1, "", "q", body, properties=BasicProperties(priority=3))
    client.call(1, spec.BasicGet(queue="q", no_ack=False))
    client.call(1, spec.BasicNack(1, False, True))
    again = _get(client)
    assert (again.body, again.method.redelivered) == (b"a", True)
    assert _get(client).body == b"b"


# --- 255 levels ----------------------------------------------------------------------------------


def test_a_255_level_queue_orders_every_level_highest_first():
    queue = _priority_queue(255)
    order = [(p * 97) % 256 for p in range(256)]  # every level once, scrambled
    assert sorted(order) == list(range(256))
    _publish(queue, *((str(p).encode(), p) for p in order))
    assert _drain(queue) == [str(p).encode() for p in range(255, -1, -1)]


def test_a_255_level_queue_keeps_publish_order_within_the_top_level():
    queue = _priority_queue(255)
    _publish(queue, (b"a255", 255), (b"p0", 0), (b"b255", 255), (b"p254", 254))
    assert _drain(queue) == [b"a255", b"b255", b"p254", b"p0"]


def test_a_255_level_queue_dispatches_to_consumers_and_counts_its_messages():
    queue = _priority_queue(255)
    _publish(queue, *((b"m%d" % p, p) for p in (0, 100, 255, 7)))
    assert queue.message_count == 4
    consumer = FakeConsumer("c")
    queue.add_consumer(consumer)  # type: ignore[arg-type]
    queue.dispatch()
    assert consumer.bodies == [b"m255", b"m100", b"m7", b"m0"]
    assert queue.message_count == 0
