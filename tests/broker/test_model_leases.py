"""Consumer leases (``x-consumer-timeout`` on a queue or as a ``basic.consume`` argument): a
delivery not acked in time is requeued and only its consumer is cancelled, with a server
``basic.cancel`` when the client advertised ``consumer_cancel_notify``; the channel stays open."""

from __future__ import annotations

import pytest
from model_helpers import FakeClient, FakeConsumer, make_broker

from router.amqp import spec
from router.amqp.properties import BasicProperties
from router.amqp.tables import FieldTable
from router.broker.message import Message
from router.broker.ports import Clock
from router.broker.queues import DetachedHost, Queue


def _client(notify: bool = True, timeout: int | None = 1000) -> FakeClient:
    capabilities = {"consumer_cancel_notify": True} if notify else {}
    client = FakeClient(make_broker(), capabilities=capabilities)
    client.open_channel(1)
    arguments = FieldTable() if timeout is None else FieldTable({"x-consumer-timeout": timeout})
    client.declare_queue(1, "q", arguments=arguments)
    return client


def _queue(client: FakeClient) -> Queue:
    return client.broker.vhosts["/"].queues["q"]


def _at(client: FakeClient, now: float) -> None:
    client.now = now
    client.broker.tick(now)


def _consume_one(client: FakeClient, **kwargs: object) -> None:
    client.consume(1, "q", "c", **kwargs)
    client.publish(1, "", "q", b"x")
    assert client.bodies(1) == [b"x"]


# --- timing out ----------------------------------------------------------------------------------


def test_an_unacked_delivery_is_requeued_when_the_queue_consumer_timeout_passes():
    client = _client()
    _consume_one(client)
    assert client.broker.next_deadline() == pytest.approx(1.0)
    _at(client, 0.999)
    assert _queue(client).unacked == 1
    _at(client, 1.0)
    queue = _queue(client)
    assert (queue.message_count, queue.unacked) == (1, 0)
    reply = client.call(1, spec.BasicGet(queue="q", no_ack=True))[-1]
    assert (reply.body, reply.method.redelivered) == (b"x", True)


def test_the_timed_out_consumer_gets_a_server_basic_cancel_and_the_channel_stays_open():
    client = _client(notify=True)
    _consume_one(client)
    client.take()
    _at(client, 1.0)
    assert [r.method for r in client.take()] == [spec.BasicCancel("c", True)]
    assert client.channel_close(1) is None
    assert client.connection_close() is None
    assert _queue(client).consumer_count == 0


def test_a_client_without_consumer_cancel_notify_gets_no_basic_cancel_but_is_cancelled():
    client = _client(notify=False)
    _consume_one(client)
    client.take()
    _at(client, 1.0)
    assert client.take() == []
    assert _queue(client).consumer_count == 0
    client.publish(1, "", "q", b"y")
    assert client.bodies(1) == [b"x"]
    assert _queue(client).message_count == 2


def test_the_requeued_message_is_redelivered_to_another_consumer():
    client = _client()
    _consume_one(client)
    client.open_channel(2)
    client.consume(2, "q", "other")
    _at(client, 1.0)
    [delivery] = client.deliveries(2)
    assert (delivery.body, delivery.method.redelivered) == (b"x", True)


def test_the_channel_is_usable_after_a_lease_expires():
    client = _client()
    _consume_one(client)
    _at(client, 1.0)
    client.consume(1, "q", "c2", no_ack=True)
    client.publish(1, "", "q", b"y")
    assert [d.body for d in client.deliveries(1)] == [b"x", b"x", b"y"]
    assert client.deliveries(1)[1].method.redelivered


def test_acking_before_the_timeout_cancels_the_lease():
    client = _client()
    _consume_one(client)
    client.now = 0.5
    client.ack(1, 1)
    assert _queue(client).next_deadline() is None
    client.take()
    _at(client, 1.0)
    assert client.take() == []
    assert _queue(client).consumer_count == 1


def test_nacking_with_requeue_before_the_timeout_ends_the_lease_of_that_delivery():
    client = _client()
    client.call(1, spec.BasicQos(0, 1, False))
    _consume_one(client)
    client.now = 0.5
    client.call(1, spec.BasicNack(1, False, True))
    # redelivered at 0.5: a new lease until 1.5
    assert _queue(client).next_deadline() == pytest.approx(1.5)
    _at(client, 1.0)
    assert _queue(client).consumer_count == 1


def test_each_delivery_has_its_own_lease():
    client = _client()
    client.consume(1, "q", "c")
    client.publish(1, "", "q", b"a")
    client.now = 0.5
    client.publish(1, "", "q", b"b")
    client.ack(1, 1)
    _at(client, 1.0)
    assert _queue(client).consumer_count == 1
    _at(client, 1.5)
    assert _queue(client).consumer_count == 0
    assert _queue(client).message_count == 1


def test_other_consumers_on_the_channel_go_on_after_one_times_out():
    client = _client(timeout=None)
    client.declare_queue(1, "slow", arguments=FieldTable({"x-consumer-timeout": 1000}))
    client.consume(1, "slow", "s")
    client.consume(1, "q", "fast", no_ack=True)
    client.publish(1, "", "slow", b"s1")
    _at(client, 1.0)
    client.publish(1, "", "q", b"f1")
    assert [d.method.consumer_tag for d in client.deliveries(1)] == ["s", "fast"]


def test_no_ack_consumers_have_no_lease():
    client = _client()
    _consume_one(client, no_ack=True)
    assert client.broker.next_deadline() is None


def test_basic_get_deliveries_have_no_consumer_to_cancel_and_stay_unacked():
    client = _client()
    client.publish(1, "", "q", b"x")
    client.call(1, spec.BasicGet(queue="q"))
    _at(client, 5.0)
    assert _queue(client).unacked == 1
    assert client.channel_close(1) is None


# --- consume argument ----------------------------------------------------------------------------


def test_a_consume_argument_sets_the_timeout_without_a_queue_argument():
    client = _client(timeout=None)
    _consume_one(client, arguments=FieldTable({"x-consumer-timeout": 250}))
    assert client.broker.next_deadline() == pytest.approx(0.25)
    _at(client, 0.25)
    assert [r.method for r in client.take() if isinstance(r.method, spec.BasicCancel)] == [
        spec.BasicCancel("c", True)
    ]
    assert _queue(client).message_count == 1


def test_a_consume_argument_overrides_the_queue_timeout():
    client = _client(timeout=1000)
    _consume_one(client, arguments=FieldTable({"x-consumer-timeout": 5000}))
    assert client.broker.next_deadline() == pytest.approx(5.0)
    _at(client, 1.0)
    assert _queue(client).consumer_count == 1


@pytest.mark.parametrize("value", [0, -5, "soon"])
def test_an_invalid_consume_timeout_closes_the_channel_with_406(value):
    client = _client(timeout=None)
    client.consume(1, "q", "c", arguments=FieldTable({"x-consumer-timeout": value}))
    close = client.channel_close(1)
    assert close is not None
    assert (close.reply_code, close.class_id, close.method_id) == (406, 60, 20)
    assert "x-consumer-timeout" in close.reply_text
    assert repr(value) in close.reply_text
    assert _queue(client).consumer_count == 0


# --- the queue alone -----------------------------------------------------------------------------


def test_a_queue_tells_its_host_when_a_lease_ends_and_requeue_is_up_to_the_consumer():
    host = DetachedHost(Clock(0.0))
    queue = Queue("q", "/", arguments=FieldTable({"x-consumer-timeout": 100}), host=host)
    consumer = FakeConsumer("c")
    queue.add_consumer(consumer)  # type: ignore[arg-type]
    queue.publish(Message("", "q", BasicProperties().encode(), b"x"))
    assert queue.next_deadline() == pytest.approx(0.1)
    queue.tick(0.1)
    assert consumer.leases_expired == consumer.got
    assert queue.unacked == 1


def test_a_fake_consumer_timeout_overrides_the_queue_timeout():
    host = DetachedHost(Clock(0.0))
    queue = Queue("q", "/", arguments=FieldTable({"x-consumer-timeout": 100}), host=host)
    consumer = FakeConsumer("c", timeout=300)
    queue.add_consumer(consumer)  # type: ignore[arg-type]
    queue.publish(Message("", "q", BasicProperties().encode(), b"x"))
    assert queue.next_deadline() == pytest.approx(0.3)


def test_a_lease_that_fires_while_its_ack_waits_in_a_transaction_restarts_after_rollback():
    client = _client(timeout=1000)
    _consume_one(client)
    client.call(1, spec.TxSelect())
    client.ack(1, 1)  # held by the open transaction
    _at(client, 1.0)  # the lease fires: the delivery is not in the channel's unacked set
    client.call(1, spec.TxRollback())  # the delivery is unacked again: its lease starts over
    queue = _queue(client)
    assert queue.unacked == 1
    assert client.broker.next_deadline() == pytest.approx(2.0)
    _at(client, 2.0)
    assert (queue.message_count, queue.unacked) == (1, 0)
