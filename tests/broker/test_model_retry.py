"""Poison messages: ``x-delivery-limit`` (``x-delivery-count`` on redeliveries, dead-lettered with
reason ``delivery_limit`` or dropped) and ``x-retry-backoff`` (requeued messages held back
``initial × multiplier^(n-1)`` ms capped at ``max``, then redelivered at their position)."""

from __future__ import annotations

from typing import Any

import pytest
from model_helpers import FakeClient, FakeConsumer, Received, make_broker

from router.amqp import spec
from router.amqp.properties import BasicProperties
from router.amqp.tables import FieldTable
from router.broker.arguments import QueueOptions
from router.broker.message import Message
from router.broker.ports import Clock
from router.broker.queues import DetachedHost, Queue


def _client() -> FakeClient:
    client = FakeClient(make_broker())
    client.open_channel(1)
    return client


def _setup(client: FakeClient, *, dead_letter: bool = True, **arguments: Any) -> None:
    args = FieldTable()
    if dead_letter:
        client.call(1, spec.ExchangeDeclare(exchange="dlx", type="fanout"))
        client.declare_queue(1, "dlq")
        client.call(1, spec.QueueBind(queue="dlq", exchange="dlx"))
        args["x-dead-letter-exchange"] = "dlx"
    for key, value in arguments.items():
        args["x-" + key.replace("_", "-")] = value
    assert isinstance(client.declare_queue(1, "q", arguments=args), spec.QueueDeclareOk)


def _queue(client: FakeClient, name: str = "q") -> Queue:
    return client.broker.vhosts["/"].queues[name]


def _get(client: FakeClient, queue: str = "q", no_ack: bool = False) -> Received | None:
    reply = client.call(1, spec.BasicGet(queue=queue, no_ack=no_ack))[-1]
    if isinstance(reply.method, spec.BasicGetEmpty):
        return None
    return reply


def _delivery_count(reply: Received) -> tuple[str, int] | None:
    headers = reply.properties.headers if reply.properties is not None else None
    if headers is None or "x-delivery-count" not in headers:
        return None
    return headers.typed("x-delivery-count")


def _at(client: FakeClient, now: float) -> None:
    client.now = now
    client.broker.tick(now)


def _backoff(**values: Any) -> FieldTable:
    return FieldTable(values)


# --- delivery limit ------------------------------------------------------------------------------


def test_a_consumers_first_delivery_has_no_delivery_count_and_redeliveries_count_up():
    client = _client()
    _setup(client, delivery_limit=2)
    client.publish(1, "", "q", b"x")
    client.consume(1, "q", "c")
    counts = []
    for _ in range(3):
        delivery = client.deliveries(1)[-1]
        counts.append(_delivery_count(delivery))
        client.call(1, spec.BasicNack(delivery.method.delivery_tag, False, True))
    assert counts == [None, ("l", 1), ("l", 2)]


def test_basic_get_shows_the_delivery_count_even_on_the_first_delivery():
    client = _client()
    _setup(client, delivery_limit=2)
    client.publish(1, "", "q", b"x")
    counts = []
    for _ in range(3):
        reply = _get(client)
        assert reply is not None
        counts.append(_delivery_count(reply))
        client.call(1, spec.BasicNack(reply.method.delivery_tag, False, True))
    assert counts == [("l", 0), ("l", 1), ("l", 2)]


def test_the_delivery_count_header_is_added_in_sorted_position():
    client = _client()
    _setup(client, delivery_limit=5)
    headers = FieldTable({"z": 1, "a": 2})
    client.publish(1, "", "q", b"x", properties=BasicProperties(headers=headers))
    first = _get(client)
    client.call(1, spec.BasicNack(first.method.delivery_tag, False, True))
    second = _get(client)
    assert list(second.properties.headers) == ["a", "x-delivery-count", "z"]


def test_a_queue_without_a_delivery_limit_adds_no_delivery_count():
    client = _client()
    _setup(client, dead_letter=False)
    client.publish(1, "", "q", b"x")
    first = _get(client)
    client.call(1, spec.BasicNack(first.method.delivery_tag, False, True))
    assert _delivery_count(_get(client)) is None


def test_past_the_delivery_limit_a_message_is_dead_lettered_with_reason_delivery_limit():
    client = _client()
    _setup(client, delivery_limit=2)
    client.publish(1, "", "q", b"x", properties=BasicProperties(expiration="60000"))
    for _ in range(3):
        reply = _get(client)
        assert reply is not None
        client.call(1, spec.BasicNack(reply.method.delivery_tag, False, True))
    assert _get(client) is None
    dead = _get(client, "dlq", no_ack=True)
    assert dead is not None
    headers = dead.properties.headers
    assert "x-delivery-count" not in headers
    death = headers["x-death"][0]
    assert (death["reason"], death["queue"], death["count"]) == ("delivery_limit", "q", 1)
    assert death["original-expiration"] == "60000"
    assert headers["x-first-death-reason"] == "delivery_limit"


def test_past_the_delivery_limit_without_a_dead_letter_exchange_the_message_is_dropped():
    client = _client()
    _setup(client, dead_letter=False, delivery_limit=1)
    client.publish(1, "", "q", b"x")
    delivered = 0
    while (reply := _get(client)) is not None:
        delivered += 1
        client.call(1, spec.BasicNack(reply.method.delivery_tag, False, True))
    assert delivered == 2
    assert (_queue(client).message_count, _queue(client).unacked) == (0, 0)


def test_a_delivery_limit_of_0_allows_one_delivery():
    client = _client()
    _setup(client, delivery_limit=0)
    client.publish(1, "", "q", b"x")
    reply = _get(client)
    client.call(1, spec.BasicReject(reply.method.delivery_tag, True))
    assert _get(client) is None
    assert _queue(client, "dlq").message_count == 1


def test_messages_returned_by_a_closed_channel_count_towards_the_delivery_limit():
    client = _client()
    _setup(client, delivery_limit=0)
    client.open_channel(2)
    client.publish(1, "", "q", b"x")
    client.call(2, spec.BasicGet(queue="q"))
    client.call(2, spec.ChannelClose(200, "bye", 0, 0))
    assert _queue(client).message_count == 0
    assert _queue(client, "dlq").message_count == 1


def test_an_acked_message_is_not_affected_by_the_delivery_limit():
    client = _client()
    _setup(client, delivery_limit=0)
    client.publish(1, "", "q", b"x")
    reply = _get(client)
    client.ack(1, reply.method.delivery_tag)
    assert _queue(client, "dlq").message_count == 0


# --- backoff delays ------------------------------------------------------------------------------


def _options(**backoff: Any) -> QueueOptions:
    return QueueOptions(FieldTable({"x-retry-backoff": FieldTable(backoff)}))


def test_backoff_delays_grow_by_the_multiplier_and_stop_at_the_maximum():
    options = _options(initial=1000, multiplier=2, max=5000)
    delays = [options.retry_delay(n, 0.0) for n in range(1, 7)]
    assert delays == [1.0, 2.0, 4.0, 5.0, 5.0, 5.0]


def test_backoff_without_a_multiplier_or_maximum_waits_initial_every_time():
    options = _options(initial=250)
    assert [options.retry_delay(n, 0.0) for n in (1, 2, 5)] == [0.25, 0.25, 0.25]


def test_backoff_jitter_takes_off_up_to_its_fraction_at_random():
    options = _options(initial=1000, multiplier=3, max=60000, jitter=0.5)
    assert options.retry_delay(2, 0.0) == 3.0
    assert options.retry_delay(2, 0.5) == pytest.approx(2.25)
    assert options.retry_delay(2, 0.999) == pytest.approx(3.0 * (1 - 0.4995))


def test_backoff_accepts_fractional_values():
    options = _options(initial=100.5, multiplier=1.5, max=1000)
    assert options.retry_delay(3, 0.0) == pytest.approx(100.5 * 1.5 * 1.5 / 1000)


# --- backoff in a queue --------------------------------------------------------------------------


def _backoff_queue(now: float = 0.0, **arguments: Any) -> Queue:
    args = FieldTable({"x-retry-backoff": _backoff(initial=1000, multiplier=2, max=3000)})
    for key, value in arguments.items():
        args["x-" + key.replace("_", "-")] = value
    return Queue("q", "/", arguments=args, host=DetachedHost(Clock(now)))


def _message(body: bytes) -> Message:
    return Message("", "q", BasicProperties().encode(), body)


def test_a_requeued_message_is_invisible_until_its_backoff_is_due():
    queue = _backoff_queue(now=10.0)
    queue.publish(_message(b"x"))
    entry = queue.get(no_ack=False)
    queue.requeue([entry])
    assert (queue.message_count, queue.waiting, queue.unacked) == (0, 1, 0)
    assert queue.next_deadline() == 11.0
    assert queue.pop() is None
    queue.clock.now = 10.999
    queue.tick(10.999)
    assert queue.message_count == 0
    queue.clock.now = 11.0
    queue.tick(11.0)
    assert (queue.message_count, queue.waiting) == (1, 0)
    again = queue.pop()
    assert again is entry
    assert again.redelivered


def test_each_failure_waits_longer_up_to_the_maximum():
    queue = _backoff_queue(now=0.0)
    queue.publish(_message(b"x"))
    now = 0.0
    waits = []
    for _ in range(4):
        entry = queue.get(no_ack=False)
        queue.requeue([entry])
        deadline = queue.next_deadline()
        waits.append(deadline - now)
        now = deadline
        queue.clock.now = now
        queue.tick(now)
    assert waits == [1.0, 2.0, 3.0, 3.0]


def test_a_due_message_goes_back_to_its_original_position():
    queue = _backoff_queue(now=0.0)
    for body in (b"a", b"b", b"c"):
        queue.publish(_message(body))
    first = queue.get(no_ack=False)
    queue.requeue([first])
    queue.clock.now = 1.0
    queue.tick(1.0)
    assert [e.message.body for e in queue.ready_messages()] == [b"a", b"b", b"c"]


def test_a_due_message_is_redelivered_to_a_waiting_consumer():
    queue = _backoff_queue(now=0.0)
    consumer = FakeConsumer("c")
    queue.add_consumer(consumer)  # type: ignore[arg-type]
    queue.publish(_message(b"x"))
    queue.requeue(list(consumer.got))
    assert len(consumer.got) == 1
    queue.clock.now = 1.0
    queue.tick(1.0)
    assert len(consumer.got) == 2
    assert consumer.got[1].redelivered


def test_a_rejected_message_without_requeue_is_not_held_back():
    queue = _backoff_queue(now=0.0)
    queue.publish(_message(b"x"))
    entry = queue.get(no_ack=False)
    queue.reject([entry])
    assert (queue.waiting, queue.message_count, queue.next_deadline()) == (0, 0, None)


def test_backoff_through_a_broker_redelivers_after_the_delay():
    client = _client()
    _setup(client, dead_letter=False, retry_backoff=_backoff(initial=500, multiplier=2, max=60000))
    client.publish(1, "", "q", b"x")
    client.consume(1, "q", "c")
    client.call(1, spec.BasicNack(1, False, True))
    assert _queue(client).waiting == 1
    assert client.broker.next_deadline() == pytest.approx(0.5)
    _at(client, 0.499)
    assert len(client.deliveries(1)) == 1
    _at(client, 0.5)
    deliveries = client.deliveries(1)
    assert len(deliveries) == 2
    assert deliveries[1].method.redelivered
    client.call(1, spec.BasicNack(2, False, True))
    assert client.broker.next_deadline() == pytest.approx(1.5)


def test_backoff_with_a_delivery_limit_and_dead_letter_exchange_ends_in_the_dead_letter_queue():
    client = _client()
    _setup(
        client,
        delivery_limit=2,
        retry_backoff=_backoff(initial=1000, multiplier=2, max=60000),
    )
    client.publish(1, "", "q", b"poison")
    client.consume(1, "q", "c")
    now = 0.0
    for expected_wait in (1.0, 2.0):
        delivery = client.deliveries(1)[-1]
        client.call(1, spec.BasicNack(delivery.method.delivery_tag, False, True))
        assert client.broker.next_deadline() == pytest.approx(now + expected_wait)
        now += expected_wait
        _at(client, now)
    deliveries = client.deliveries(1)
    assert [_delivery_count(d) for d in deliveries] == [None, ("l", 1), ("l", 2)]
    client.call(1, spec.BasicNack(deliveries[-1].method.delivery_tag, False, True))
    assert (_queue(client).message_count, _queue(client).waiting) == (0, 0)
    dead = _get(client, "dlq", no_ack=True)
    assert dead is not None
    assert dead.body == b"poison"
    death = dead.properties.headers["x-death"][0]
    assert (death["reason"], death["queue"], death["count"]) == ("delivery_limit", "q", 1)


def test_a_backed_off_message_whose_ttl_ends_while_waiting_is_dead_lettered_not_redelivered():
    host = DetachedHost(Clock(0.0))
    arguments = FieldTable(
        {
            "x-message-ttl": 1000,
            "x-dead-letter-exchange": "dlx",
            "x-retry-backoff": _backoff(initial=5000),
        }
    )
    queue = Queue("q", "/", arguments=arguments, host=host)
    consumer = FakeConsumer("c", capacity=1)
    queue.add_consumer(consumer)  # type: ignore[arg-type]
    queue.publish(_message(b"x"))
    queue.requeue([consumer.got.pop()])
    for now in (1.0, 5.0):
        queue.clock.now = now
        queue.tick(now)
    assert consumer.got == []
    assert [reason for reason, _ in host.dead] == ["expired"]
