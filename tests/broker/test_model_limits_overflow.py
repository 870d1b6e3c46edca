"""Length limits (``x-max-length``, ``x-max-length-bytes``) and ``x-overflow``: drop-head
dead-letters the oldest, reject-publish nacks the publisher one message at a time,
reject-publish-dlx nacks and dead-letters; only ready messages count."""

from __future__ import annotations

from typing import Any

import pytest
from model_helpers import FakeClient, Received, make_broker

from router.amqp import spec
from router.amqp.properties import BasicProperties
from router.amqp.tables import FieldTable
from router.broker.queues import Queue


def _client() -> FakeClient:
    client = FakeClient(make_broker())
    client.open_channel(1)
    return client


def _setup(client: FakeClient, **arguments: Any) -> None:
    """Queue ``q`` with ``arguments``, dead-lettering into fanout ``dlx`` → ``dlq``."""
    client.call(1, spec.ExchangeDeclare(exchange="dlx", type="fanout"))
    client.declare_queue(1, "dlq")
    client.call(1, spec.QueueBind(queue="dlq", exchange="dlx"))
    args = FieldTable({"x-dead-letter-exchange": "dlx"})
    for key, value in arguments.items():
        args["x-" + key.replace("_", "-")] = value
    assert isinstance(client.declare_queue(1, "q", arguments=args), spec.QueueDeclareOk)


def _queue(client: FakeClient, name: str) -> Queue:
    return client.broker.vhosts["/"].queues[name]


def _ready(client: FakeClient, name: str) -> list[bytes]:
    return [e.message.body for e in _queue(client, name).ready_messages()]


def _get(client: FakeClient, queue: str, no_ack: bool = True) -> Received:
    reply = client.call(1, spec.BasicGet(queue=queue, no_ack=no_ack))[-1]
    assert isinstance(reply.method, spec.BasicGetOk), reply
    return reply


def _publish_all(client: FakeClient, *bodies: bytes, **kwargs: Any) -> None:
    for body in bodies:
        client.publish(1, "", "q", body, **kwargs)


# --- drop-head -----------------------------------------------------------------------------------


def test_max_length_drop_head_keeps_the_newest_messages():
    client = _client()
    _setup(client, max_length=2)
    _publish_all(client, b"m0", b"m1", b"m2", b"m3", b"m4")
    assert _ready(client, "q") == [b"m3", b"m4"]


def test_drop_head_dead_letters_the_oldest_first_with_reason_maxlen():
    client = _client()
    _setup(client, max_length=1)
    _publish_all(client, b"m0", b"m1", b"m2")
    assert _ready(client, "q") == [b"m2"]
    assert _ready(client, "dlq") == [b"m0", b"m1"]
    death = _get(client, "dlq").properties.headers["x-death"][0]
    assert (death["reason"], death["queue"], death["exchange"]) == ("maxlen", "q", "")


def test_drop_head_is_the_default_overflow():
    client = _client()
    _setup(client, max_length=1)
    assert _queue(client, "q").options.overflow == "drop-head"


def test_max_length_0_dead_letters_every_message():
    client = _client()
    _setup(client, max_length=0)
    _publish_all(client, b"a", b"b")
    assert _ready(client, "q") == []
    assert _ready(client, "dlq") == [b"a", b"b"]


def test_max_length_bytes_counts_body_bytes():
    client = _client()
    _setup(client, max_length_bytes=10)
    _publish_all(client, b"aaaa", b"bbbb", b"cccc")
    assert _ready(client, "q") == [b"bbbb", b"cccc"]
    assert _ready(client, "dlq") == [b"aaaa"]
    assert _queue(client, "q").ready_bytes == 8


def test_max_length_bytes_drops_a_large_old_message_for_a_small_new_one():
    client = _client()
    _setup(client, max_length_bytes=3)
    _publish_all(client, b"four", b"tw")
    assert _ready(client, "q") == [b"tw"]


def test_a_message_larger_than_max_length_bytes_is_dropped_itself():
    client = _client()
    _setup(client, max_length_bytes=3)
    _publish_all(client, b"ab", b"toolarge")
    assert _ready(client, "q") == []
    assert _ready(client, "dlq") == [b"ab", b"toolarge"]


def test_drop_head_counts_only_ready_messages():
    client = _client()
    _setup(client, max_length=2)
    _publish_all(client, b"u0", b"u1")
    _get(client, "q", no_ack=False)  # u0 unacked
    _publish_all(client, b"u2")
    assert _ready(client, "dlq") == []
    _publish_all(client, b"u3")
    assert _ready(client, "dlq") == [b"u1"]
    assert _ready(client, "q") == [b"u2", b"u3"]
    assert _queue(client, "q").unacked == 1


def test_drop_head_without_a_dead_letter_exchange_drops_silently():
    client = _client()
    client.declare_queue(1, "q", arguments=FieldTable({"x-max-length": 1}))
    _publish_all(client, b"a", b"b")
    assert _ready(client, "q") == [b"b"]
    assert client.channel_close(1) is None


# --- reject-publish ------------------------------------------------------------------------------


def test_reject_publish_nacks_each_refused_message_separately_after_the_acked_one():
    client = _client()
    _setup(client, max_length=1, overflow="reject-publish")
    client.call(1, spec.ConfirmSelect())
    client.send(*(client.publish_bytes(1, "", "q", b"m%d" % i) for i in range(3)))
    assert client.methods(1, spec.BasicAck) == [spec.BasicAck(1, False)]
    assert client.methods(1, spec.BasicNack) == [
        spec.BasicNack(2, False, False),
        spec.BasicNack(3, False, False),
    ]
    confirms = [
        r.method for r in client.received if type(r.method) in (spec.BasicAck, spec.BasicNack)
    ]
    assert confirms == [
        spec.BasicAck(1, False),
        spec.BasicNack(2, False, False),
        spec.BasicNack(3, False, False),
    ]


def test_reject_publish_confirms_publishes_sent_one_at_a_time_the_same_way():
    client = _client()
    _setup(client, max_length=1, overflow="reject-publish")
    client.call(1, spec.ConfirmSelect())
    replies = [client.publish(1, "", "q", b"m%d" % i) for i in range(3)]
    assert [[r.method for r in batch] for batch in replies] == [
        [spec.BasicAck(1, False)],
        [spec.BasicNack(2, False, False)],
        [spec.BasicNack(3, False, False)],
    ]


def test_reject_publish_sends_no_basic_return_for_a_refused_mandatory_message():
    client = _client()
    _setup(client, max_length=1, overflow="reject-publish")
    client.call(1, spec.ConfirmSelect())
    client.send(
        client.publish_bytes(1, "", "q", b"m0"),
        client.publish_bytes(1, "", "q", b"m1"),
        client.publish_bytes(1, "", "q", b"m2", mandatory=True),
        client.publish_bytes(1, "", "q", b"m3"),
    )
    methods = [r.method for r in client.take()]
    assert methods == [
        spec.BasicAck(1, False),
        spec.BasicNack(2, False, False),
        spec.BasicNack(3, False, False),
        spec.BasicNack(4, False, False),
    ]


def test_an_accepted_publish_after_refused_ones_is_acked_on_its_own():
    client = _client()
    _setup(client, max_length=1, overflow="reject-publish")
    client.call(1, spec.ConfirmSelect())
    client.send(
        client.publish_bytes(1, "", "q", b"m0"),
        client.publish_bytes(1, "", "q", b"m1"),
        client.publish_bytes(1, "", "dlq", b"elsewhere"),
    )
    assert [r.method for r in client.take()] == [
        spec.BasicAck(1, False),
        spec.BasicNack(2, False, False),
        spec.BasicAck(3, False),
    ]


def test_reject_publish_keeps_the_old_messages_and_does_not_dead_letter_the_new():
    client = _client()
    _setup(client, max_length=1, overflow="reject-publish")
    _publish_all(client, b"old", b"new")
    assert _ready(client, "q") == [b"old"]
    assert _ready(client, "dlq") == []
    assert _queue(client, "q").stats.rejected_publishes == 1


def test_reject_publish_without_confirms_drops_silently_and_the_channel_stays_open():
    client = _client()
    _setup(client, max_length=1, overflow="reject-publish")
    _publish_all(client, b"old", b"new")
    assert client.take() == []
    assert client.channel_close(1) is None


def test_reject_publish_counts_only_ready_messages():
    client = _client()
    _setup(client, max_length=1, overflow="reject-publish")
    client.call(1, spec.ConfirmSelect())
    client.publish(1, "", "q", b"u0")
    _get(client, "q", no_ack=False)
    assert client.publish(1, "", "q", b"u1")[-1].method == spec.BasicAck(2, False)
    assert _ready(client, "q") == [b"u1"]


def test_reject_publish_on_max_length_bytes():
    client = _client()
    _setup(client, max_length_bytes=5, overflow="reject-publish")
    client.call(1, spec.ConfirmSelect())
    replies = [client.publish(1, "", "q", body)[-1].method for body in (b"abc", b"def", b"gh")]
    assert replies == [
        spec.BasicAck(1, False),
        spec.BasicNack(2, False, False),
        spec.BasicAck(3, False),
    ]
    assert _ready(client, "q") == [b"abc", b"gh"]


def test_a_message_refused_by_one_of_two_queues_is_nacked_and_delivered_to_the_other():
    client = _client()
    _setup(client, max_length=0, overflow="reject-publish")
    client.call(1, spec.ExchangeDeclare(exchange="fan", type="fanout"))
    client.declare_queue(1, "other")
    client.call(1, spec.QueueBind(queue="q", exchange="fan"))
    client.call(1, spec.QueueBind(queue="other", exchange="fan"))
    client.call(1, spec.ConfirmSelect())
    assert [r.method for r in client.publish(1, "fan", "", b"x")] == [
        spec.BasicNack(1, False, False)
    ]
    assert _ready(client, "other") == [b"x"]


# --- reject-publish-dlx --------------------------------------------------------------------------


def test_reject_publish_dlx_nacks_and_dead_letters_with_reason_maxlen():
    client = _client()
    _setup(client, max_length=1, overflow="reject-publish-dlx")
    client.call(1, spec.ConfirmSelect())
    client.publish(1, "", "q", b"kept")
    reply = client.publish(1, "", "q", b"refused", properties=BasicProperties(expiration="60000"))
    assert [r.method for r in reply] == [spec.BasicNack(2, False, False)]
    assert _ready(client, "q") == [b"kept"]
    dead = _get(client, "dlq")
    assert dead.body == b"refused"
    death = dead.properties.headers["x-death"][0]
    assert dict(death) == {
        "count": 1,
        "reason": "maxlen",
        "queue": "q",
        "time": 0,
        "exchange": "",
        "routing-keys": ["q"],
        "original-expiration": "60000",
    }
    assert dead.properties.expiration is None


def test_reject_publish_dlx_counts_only_ready_messages():
    client = _client()
    _setup(client, max_length=1, overflow="reject-publish-dlx")
    client.publish(1, "", "q", b"u0")
    _get(client, "q", no_ack=False)
    client.publish(1, "", "q", b"u1")
    assert _ready(client, "q") == [b"u1"]
    assert _ready(client, "dlq") == []


# --- requeue over the limit ----------------------------------------------------------------------


def test_requeued_messages_count_again_towards_the_limit():
    client = _client()
    _setup(client, max_length=1)
    client.publish(1, "", "q", b"first")
    _get(client, "q", no_ack=False)
    client.publish(1, "", "q", b"second")
    client.call(1, spec.BasicNack(1, False, True))
    assert _queue(client, "q").message_count == 1
    assert len(_ready(client, "dlq")) == 1


@pytest.mark.parametrize("overflow", ["reject-publish", "reject-publish-dlx"])
def test_a_requeue_may_take_a_reject_publish_queue_over_its_limit_without_dropping(overflow):
    client = _client()
    _setup(client, max_length=1, overflow=overflow)
    client.publish(1, "", "q", b"u0")
    _get(client, "q", no_ack=False)
    client.publish(1, "", "q", b"u1")
    client.call(1, spec.BasicNack(1, False, True))
    assert _ready(client, "q") == [b"u0", b"u1"]
    assert _ready(client, "dlq") == []


def test_drop_head_in_a_priority_queue_drops_the_next_message_to_deliver():
    # RabbitMQ 3.10: max-length 2, priorities 1, 5, 1 → the priority-5 message is dropped
    client = _client()
    _setup(client, max_length=2, max_priority=5)
    for body, priority in ((b"a", 1), (b"b", 5), (b"c", 1)):
        client.publish(1, "", "q", body, properties=BasicProperties(priority=priority))
    assert _ready(client, "q") == [b"a", b"c"]
    assert _ready(client, "dlq") == [b"b"]
