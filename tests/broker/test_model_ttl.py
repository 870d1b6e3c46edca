"""Time in queues: ``x-message-ttl`` and ``expiration`` (the lower wins, expiry on time anywhere in
the queue, TTL 0), RabbitMQ's texts for invalid expirations, and ``x-expires``."""

from __future__ import annotations

import pytest
from model_helpers import FakeClient, FakeConsumer, make_broker

from router.amqp import spec
from router.amqp.properties import BasicProperties
from router.amqp.tables import FieldTable
from router.broker.message import Message
from router.broker.ports import Clock
from router.broker.queues import DetachedHost, Queue

DLX = "dlx"


def _queue(now: float = 100.0, **arguments: object) -> tuple[Queue, DetachedHost]:
    host = DetachedHost(Clock(now))
    args = FieldTable({"x-dead-letter-exchange": DLX})
    for key, value in arguments.items():
        args["x-" + key.replace("_", "-")] = value
    return Queue("q", "/", arguments=args, host=host), host


def _message(body: bytes = b"m", expiration: str | None = None) -> Message:
    properties = BasicProperties(expiration=expiration).encode()
    return Message("", "q", properties, body, 0, None, expiration)


def _client() -> FakeClient:
    client = FakeClient(make_broker())
    client.open_channel(1)
    return client


def _with_dead_letter_queue(client: FakeClient, **arguments: object) -> None:
    """Queue ``q`` dead-lettering into fanout ``dlx`` → queue ``dlq``."""
    client.call(1, spec.ExchangeDeclare(exchange=DLX, type="fanout"))
    client.declare_queue(1, "dlq")
    client.call(1, spec.QueueBind(queue="dlq", exchange=DLX))
    args = FieldTable({"x-dead-letter-exchange": DLX})
    for key, value in arguments.items():
        args["x-" + key.replace("_", "-")] = value
    client.declare_queue(1, "q", arguments=args)


def _at(client: FakeClient, now: float) -> None:
    client.now = now
    client.broker.tick(now)


def _queue_named(client: FakeClient, name: str) -> Queue:
    return client.broker.vhosts["/"].queues[name]


def _get_body(client: FakeClient, queue: str) -> bytes | None:
    reply = client.call(1, spec.BasicGet(queue=queue, no_ack=True))[-1]
    if isinstance(reply.method, spec.BasicGetEmpty):
        return None
    return reply.body


# --- message TTL ---------------------------------------------------------------------------------


def test_a_queue_ttl_sets_the_queue_deadline_from_the_publish_time():
    queue, host = _queue(now=100.0, message_ttl=5000)
    queue.publish(_message())
    assert queue.next_deadline() == 105.0
    assert host.deadline == 105.0


def test_a_message_is_still_ready_just_before_its_queue_ttl():
    queue, host = _queue(now=100.0, message_ttl=5000)
    queue.publish(_message())
    queue.tick(now=104.999)
    assert queue.message_count == 1
    assert host.dead == []


def test_expired_message_is_dead_lettered_with_reason_expired():
    queue, host = _queue(now=100.0, message_ttl=5000)
    queue.publish(_message(b"old"))
    queue.tick(now=105.0)
    assert queue.message_count == 0
    assert [(reason, entry.message.body) for reason, entry in host.dead] == [("expired", b"old")]
    assert queue.stats.expired == 1
    assert queue.next_deadline() is None


def test_a_per_message_expiration_sets_its_deadline():
    queue, host = _queue(now=10.0)
    queue.publish(_message(expiration="250"))
    assert queue.next_deadline() == 10.25
    queue.tick(now=10.25)
    assert [reason for reason, _ in host.dead] == ["expired"]


@pytest.mark.parametrize(
    ("queue_ttl", "expiration", "deadline"),
    [(5000, "100", 0.1), (100, "5000", 0.1), (300, "300", 0.3)],
)
def test_the_lower_of_queue_ttl_and_message_expiration_wins(queue_ttl, expiration, deadline):
    queue, host = _queue(now=0.0, message_ttl=queue_ttl)
    queue.publish(_message(expiration=expiration))
    assert queue.next_deadline() == pytest.approx(deadline)
    queue.tick(now=deadline - 0.001)
    assert host.dead == []
    queue.tick(now=deadline)
    assert [reason for reason, _ in host.dead] == ["expired"]


def test_a_queue_ttl_of_0_wins_over_a_longer_expiration():
    queue, host = _queue(now=0.0, message_ttl=0)
    queue.publish(_message(expiration="1000"))
    assert [reason for reason, _ in host.dead] == ["expired"]


def test_messages_expire_at_their_own_deadlines_in_any_order():
    queue, host = _queue(now=0.0)
    queue.publish(_message(b"slow", "3000"))
    queue.publish(_message(b"fast", "1000"))
    queue.publish(_message(b"mid", "2000"))
    for now in (1.0, 2.0, 3.0):
        queue.tick(now)
    assert [entry.message.body for _, entry in host.dead] == [b"fast", b"mid", b"slow"]


def test_a_message_past_its_deadline_is_never_popped_even_before_the_tick():
    queue, host = _queue(now=0.0)
    queue.publish(_message(b"a", "100"))
    queue.publish(_message(b"b"))
    queue.clock.now = 0.2  # the tick has not run yet
    entry = queue.pop()
    assert entry is not None
    assert entry.message.body == b"b"
    assert [(reason, e.message.body) for reason, e in host.dead] == [("expired", b"a")]


def test_a_message_past_its_deadline_is_never_dispatched_even_before_the_tick():
    queue, host = _queue(now=0.0)
    queue.publish(_message(b"a", "100"))
    queue.publish(_message(b"b"))
    queue.clock.now = 0.5
    consumer = FakeConsumer("c")
    queue.add_consumer(consumer)  # type: ignore[arg-type]
    queue.dispatch()
    assert consumer.bodies == [b"b"]
    assert [e.message.body for _, e in host.dead] == [b"a"]


def test_an_expired_message_without_a_dead_letter_exchange_is_dropped():
    queue = Queue("q", "/", arguments=FieldTable({"x-message-ttl": 10}), host=DetachedHost())
    queue.publish(_message())
    queue.tick(now=0.01)
    assert queue.message_count == 0
    assert queue.stats.expired == 1


def test_unacked_messages_do_not_expire():
    queue, host = _queue(now=0.0, message_ttl=1000)
    queue.publish(_message())
    entry = queue.get(no_ack=False)
    queue.tick(now=5.0)
    assert host.dead == []
    assert queue.unacked == 1
    assert entry is not None


def test_a_message_requeued_after_its_deadline_is_dead_lettered_as_expired():
    queue, host = _queue(now=0.0, message_ttl=1000)
    queue.publish(_message(b"late"))
    entry = queue.get(no_ack=False)
    queue.clock.now = 2.0
    queue.requeue([entry])
    assert [(reason, e.message.body) for reason, e in host.dead] == [("expired", b"late")]
    assert queue.message_count == 0


# --- TTL 0 ---------------------------------------------------------------------------------------


def test_ttl_0_without_a_consumer_is_dead_lettered_at_once():
    queue, host = _queue(now=0.0, message_ttl=0)
    queue.publish(_message(b"now"))
    assert queue.message_count == 0
    assert [(reason, e.message.body) for reason, e in host.dead] == [("expired", b"now")]


def test_ttl_0_is_delivered_to_a_consumer_that_can_take_it_at_once():
    queue, host = _queue(now=0.0, message_ttl=0)
    consumer = FakeConsumer("c", capacity=1)
    queue.add_consumer(consumer)  # type: ignore[arg-type]
    queue.publish(_message(b"first"))
    queue.publish(_message(b"second"))
    assert consumer.bodies == [b"first"]
    assert [(reason, e.message.body) for reason, e in host.dead] == [("expired", b"second")]
    assert queue.message_count == 0


def test_expiration_0_follows_the_same_rule_as_queue_ttl_0():
    queue, host = _queue(now=0.0)
    consumer = FakeConsumer("c", capacity=1)
    queue.add_consumer(consumer)  # type: ignore[arg-type]
    queue.publish(_message(b"first", "0"))
    queue.publish(_message(b"second", "0"))
    assert consumer.bodies == [b"first"]
    assert [e.message.body for _, e in host.dead] == [b"second"]


def test_an_unacked_ttl_0_message_requeued_on_close_is_dead_lettered():
    queue, host = _queue(now=0.0, message_ttl=0)
    consumer = FakeConsumer("c", capacity=1)
    queue.add_consumer(consumer)  # type: ignore[arg-type]
    queue.publish(_message(b"m"))
    queue.remove_consumer(consumer)  # type: ignore[arg-type]
    queue.requeue(consumer.got)
    assert [(reason, e.message.body) for reason, e in host.dead] == [("expired", b"m")]


# --- on time, anywhere in the queue (through a broker) --------------------------------------------


def test_a_100ms_message_behind_a_10s_message_is_dead_lettered_at_its_own_deadline():
    client = _client()
    _with_dead_letter_queue(client)
    client.publish(1, "", "q", b"slow", properties=BasicProperties(expiration="10000"))
    client.publish(1, "", "q", b"fast", properties=BasicProperties(expiration="100"))
    assert client.broker.next_deadline() == pytest.approx(0.1)
    _at(client, 0.1)
    assert _queue_named(client, "q").message_count == 1
    assert _queue_named(client, "dlq").message_count == 1
    assert _get_body(client, "dlq") == b"fast"
    assert _get_body(client, "q") == b"slow"


def test_a_message_expired_before_the_tick_is_never_delivered_by_basic_get():
    client = _client()
    _with_dead_letter_queue(client)
    client.publish(1, "", "q", b"fast", properties=BasicProperties(expiration="100"))
    client.now = 0.2  # no tick
    assert _get_body(client, "q") is None
    assert _get_body(client, "dlq") == b"fast"


def test_a_message_expired_before_the_tick_is_never_delivered_to_a_new_consumer():
    client = _client()
    _with_dead_letter_queue(client)
    client.publish(1, "", "q", b"fast", properties=BasicProperties(expiration="100"))
    client.publish(1, "", "q", b"keep")
    client.now = 0.2
    client.consume(1, "q", "c", no_ack=True)
    assert client.bodies(1) == [b"keep"]
    assert _queue_named(client, "dlq").message_count == 1


def test_the_broker_deadline_moves_to_the_next_message_after_a_tick():
    client = _client()
    _with_dead_letter_queue(client)
    client.publish(1, "", "q", b"a", properties=BasicProperties(expiration="300"))
    client.publish(1, "", "q", b"b", properties=BasicProperties(expiration="100"))
    _at(client, 0.1)
    assert client.broker.next_deadline() == pytest.approx(0.3)
    _at(client, 0.3)
    assert client.broker.next_deadline() is None
    assert _queue_named(client, "dlq").message_count == 2


# --- invalid expiration --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expiration", "reason"),
    [
        ("abc", "no_integer"),
        ("", "no_integer"),
        (" 100", "no_integer"),
        ("-1", "{value_negative,-1}"),
        ("1.5", '{leftover_string,".5"}'),
        ("1e3", '{leftover_string,"e3"}'),
        ("5 ", '{leftover_string," "}'),
        ("315360000001", "{value_too_large,315360000001}"),
    ],
)
def test_an_invalid_expiration_closes_the_channel_with_rabbitmqs_text(expiration, reason):
    client = _client()
    client.declare_queue(1, "q")
    client.publish(1, "", "q", b"x", properties=BasicProperties(expiration=expiration))
    assert client.channel_close(1) == spec.ChannelClose(
        406, f"PRECONDITION_FAILED - invalid expiration '{expiration}': {reason}", 60, 40
    )
    assert client.connection_close() is None
    assert _queue_named(client, "q").message_count == 0


@pytest.mark.parametrize(
    ("expiration", "deadline"),
    [("+5", 0.005), ("-0", 0.0), ("0100", 0.1), ("315360000000", 315360000.0)],
)
def test_expirations_rabbitmq_accepts_are_accepted(expiration, deadline):
    client = _client()
    _with_dead_letter_queue(client)
    client.consume(1, "dlq", "d", no_ack=True)
    client.publish(1, "", "q", b"x", properties=BasicProperties(expiration=expiration))
    assert client.channel_close(1) is None
    if deadline:
        assert client.broker.next_deadline() == pytest.approx(deadline)
    else:
        assert client.bodies(1) == [b"x"]


# --- x-expires -----------------------------------------------------------------------------------


def _expiring(client: FakeClient, ms: int = 500) -> None:
    client.declare_queue(1, "q", arguments=FieldTable({"x-expires": ms}))


def test_an_unused_queue_is_deleted_after_its_expiry_time():
    client = _client()
    _expiring(client)
    assert client.broker.next_deadline() == pytest.approx(0.5)
    _at(client, 0.499)
    assert "q" in client.broker.vhosts["/"].queues
    _at(client, 0.5)
    assert "q" not in client.broker.vhosts["/"].queues


def test_basic_get_resets_the_expiry_countdown_even_on_an_empty_queue():
    client = _client()
    _expiring(client)
    _at(client, 0.3)
    assert _get_body(client, "q") is None
    _at(client, 0.5)
    assert "q" in client.broker.vhosts["/"].queues
    _at(client, 0.8)
    assert "q" not in client.broker.vhosts["/"].queues


@pytest.mark.parametrize("passive", [False, True])
def test_a_declare_resets_the_expiry_countdown(passive):
    client = _client()
    _expiring(client)
    _at(client, 0.3)
    arguments = FieldTable() if passive else FieldTable({"x-expires": 500})
    client.call(1, spec.QueueDeclare(queue="q", passive=passive, arguments=arguments))
    _at(client, 0.79)
    assert "q" in client.broker.vhosts["/"].queues
    _at(client, 0.8)
    assert "q" not in client.broker.vhosts["/"].queues


def test_publishing_does_not_reset_the_expiry_countdown_nor_do_ready_messages_keep_it():
    client = _client()
    _expiring(client)
    client.now = 0.3
    client.publish(1, "", "q", b"x")
    _at(client, 0.5)
    assert "q" not in client.broker.vhosts["/"].queues


def test_a_consumer_keeps_an_expiring_queue_alive_and_the_countdown_restarts_at_cancel():
    client = _client()
    _expiring(client)
    client.now = 0.1
    client.consume(1, "q", "c")
    _at(client, 10.0)
    assert "q" in client.broker.vhosts["/"].queues
    client.call(1, spec.BasicCancel("c"))
    _at(client, 10.499)
    assert "q" in client.broker.vhosts["/"].queues
    _at(client, 10.5)
    assert "q" not in client.broker.vhosts["/"].queues


def test_an_expired_queue_cancels_nothing_and_the_channel_stays_open():
    client = _client()
    _expiring(client)
    _at(client, 1.0)
    assert client.channel_close(1) is None
    assert client.declare_queue(1, "q") == spec.QueueDeclareOk("q", 0, 0)
