"""Single active consumer, sender-selected distribution (CC/BCC) and deduplication (exchange
``x-message-deduplication`` with ``x-cache-size`` / ``x-cache-ttl``, and queue-level)."""

from __future__ import annotations

from typing import Any

import pytest
from model_helpers import FakeClient, Received, make_broker

from router.amqp import spec
from router.amqp.properties import BasicProperties
from router.amqp.tables import FieldArray, FieldTable
from router.broker.queues import Queue


def _client(broker: Any = None) -> FakeClient:
    client = FakeClient(broker or make_broker())
    client.open_channel(1)
    return client


def _queue(client: FakeClient, name: str = "q") -> Queue:
    return client.broker.vhosts["/"].queues[name]


def _get(client: FakeClient, queue: str) -> Received | None:
    reply = client.call(1, spec.BasicGet(queue=queue, no_ack=True))[-1]
    return None if isinstance(reply.method, spec.BasicGetEmpty) else reply


def _at(client: FakeClient, now: float) -> None:
    client.now = now
    client.broker.tick(now)


# --- single active consumer ----------------------------------------------------------------------


def _sac(client: FakeClient) -> None:
    client.declare_queue(1, "q", arguments=FieldTable({"x-single-active-consumer": True}))


def test_only_the_first_consumer_of_a_single_active_consumer_queue_gets_messages():
    client = _client()
    _sac(client)
    client.open_channel(2)
    client.consume(1, "q", "a", no_ack=True)
    client.consume(2, "q", "b", no_ack=True)
    for body in (b"1", b"2", b"3"):
        client.publish(1, "", "q", body)
    assert client.bodies(1) == [b"1", b"2", b"3"]
    assert client.bodies(2) == []


def test_declare_ok_counts_every_consumer_of_a_single_active_consumer_queue():
    client = _client()
    _sac(client)
    client.open_channel(2)
    client.consume(1, "q", "a")
    client.consume(2, "q", "b")
    assert client.declare_queue(
        1, "q", arguments=FieldTable({"x-single-active-consumer": True})
    ) == (spec.QueueDeclareOk("q", 0, 2))


def test_the_next_consumer_takes_over_when_the_active_one_cancels():
    client = _client()
    _sac(client)
    client.open_channel(2)
    client.consume(1, "q", "a", no_ack=True)
    client.consume(2, "q", "b", no_ack=True)
    client.publish(1, "", "q", b"1")
    client.call(1, spec.BasicCancel("a"))
    client.publish(1, "", "q", b"2")
    assert client.bodies(1) == [b"1"]
    assert client.bodies(2) == [b"2"]
    assert _queue(client).consumer_count == 1


def test_a_full_active_consumer_holds_messages_back_from_the_others():
    client = _client()
    _sac(client)
    client.open_channel(2)
    client.call(1, spec.BasicQos(0, 1, False))
    client.consume(1, "q", "a")
    client.consume(2, "q", "b", no_ack=True)
    client.publish(1, "", "q", b"1")
    client.publish(1, "", "q", b"2")
    assert client.bodies(1) == [b"1"]
    assert client.bodies(2) == []
    assert _queue(client).message_count == 1


def test_messages_waiting_when_the_active_consumer_cancels_go_to_the_next_one():
    client = _client()
    _sac(client)
    client.open_channel(2)
    client.call(1, spec.BasicQos(0, 1, False))
    client.consume(1, "q", "a")
    client.consume(2, "q", "b", no_ack=True)
    client.publish(1, "", "q", b"1")
    client.publish(1, "", "q", b"2")
    client.call(1, spec.BasicCancel("a"))
    assert client.bodies(2) == [b"2"]


def test_unacked_messages_of_a_closed_active_consumer_are_redelivered_to_the_next():
    client = _client()
    _sac(client)
    client.open_channel(2)
    client.consume(1, "q", "a")
    client.consume(2, "q", "b", no_ack=True)
    client.publish(2, "", "q", b"1")
    client.call(1, spec.ChannelClose(200, "bye", 0, 0))
    [delivery] = client.deliveries(2)
    assert (delivery.body, delivery.method.redelivered) == (b"1", True)


@pytest.mark.parametrize(("value", "type_name"), [("yes", "longstr"), (1, "long")])
def test_a_non_boolean_single_active_consumer_is_refused_with_406(value, type_name):
    client = _client()
    client.declare_queue(1, "q", arguments=FieldTable({"x-single-active-consumer": value}))
    assert client.channel_close(1) == spec.ChannelClose(
        406,
        "PRECONDITION_FAILED - invalid arg 'x-single-active-consumer' for queue 'q' in "
        f"vhost '/': {{unacceptable_type,{type_name}}}",
        50,
        10,
    )


def test_a_signedint_single_active_consumer_is_named_signedint():
    client = _client()
    arguments = FieldTable()
    arguments.set_typed("x-single-active-consumer", "I", 1)
    client.declare_queue(1, "q", arguments=arguments)
    close = client.channel_close(1)
    assert close is not None
    assert close.reply_text.endswith("{unacceptable_type,signedint}")


# --- CC and BCC ----------------------------------------------------------------------------------


def _keys(*keys: Any) -> FieldArray:
    return FieldArray(list(keys))


def _cc_client() -> FakeClient:
    client = _client()
    client.call(1, spec.ExchangeDeclare(exchange="E", type="direct"))
    for key in ("k1", "k2", "k3", "k4"):
        client.declare_queue(1, key)
        client.call(1, spec.QueueBind(queue=key, exchange="E", routing_key=key))
    return client


def _publish(client: FakeClient, key: str, headers: FieldTable, **kwargs: Any) -> None:
    client.publish(1, "E", key, b"x", properties=BasicProperties(headers=headers), **kwargs)


def _counts(client: FakeClient) -> list[int]:
    return [_queue(client, k).message_count for k in ("k1", "k2", "k3", "k4")]


def test_cc_and_bcc_add_routing_keys_each_queue_getting_one_copy():
    client = _cc_client()
    headers = FieldTable({"first": 1, "CC": _keys("k2"), "BCC": _keys("k3"), "last": 2})
    _publish(client, "k1", headers)
    assert _counts(client) == [1, 1, 1, 0]
    for queue in ("k1", "k2", "k3"):
        reply = _get(client, queue)
        assert reply is not None
        assert reply.method.routing_key == "k1"
        assert list(reply.properties.headers) == ["first", "CC", "last"]
        assert reply.properties.headers["CC"] == ["k2"]


def test_a_message_with_only_bcc_arrives_with_an_empty_headers_table():
    client = _cc_client()
    _publish(client, "k1", FieldTable({"BCC": _keys("k2")}))
    for queue in ("k1", "k2"):
        reply = _get(client, queue)
        assert reply is not None
        assert reply.properties.headers == {}
        assert reply.properties.headers is not None


def test_duplicate_cc_keys_give_one_copy():
    client = _cc_client()
    _publish(client, "k1", FieldTable({"CC": _keys("k1", "k2", "k2"), "BCC": _keys("k2")}))
    assert _counts(client) == [1, 1, 0, 0]


def test_non_string_elements_of_cc_are_ignored():
    client = _cc_client()
    _publish(client, "k1", FieldTable({"CC": _keys(7, "k2", True)}))
    assert _counts(client) == [1, 1, 0, 0]


def test_an_unbound_routing_key_with_cc_reaches_only_the_cc_queue():
    client = _cc_client()
    _publish(client, "nowhere", FieldTable({"CC": _keys("k4")}))
    assert _counts(client) == [0, 0, 0, 1]
    reply = _get(client, "k4")
    assert reply is not None
    assert reply.method.routing_key == "nowhere"


def test_lowercase_cc_and_bcc_are_ordinary_headers():
    client = _cc_client()
    _publish(client, "k1", FieldTable({"cc": _keys("k2"), "bcc": _keys("k3")}))
    assert _counts(client) == [1, 0, 0, 0]
    reply = _get(client, "k1")
    assert list(reply.properties.headers) == ["cc", "bcc"]


def test_a_bcc_only_route_is_not_returned_to_a_mandatory_publisher():
    client = _cc_client()
    client.take()
    _publish(client, "nowhere", FieldTable({"BCC": _keys("k3")}), mandatory=True)
    assert client.take() == []
    assert _counts(client) == [0, 0, 1, 0]


@pytest.mark.parametrize(
    ("name", "tag", "value", "type_name"),
    [
        ("CC", "S", "k2", "longstr"),
        ("BCC", "S", "k2", "longstr"),
        ("CC", "I", 5, "signedint"),
        ("BCC", "F", FieldTable(), "table"),
    ],
)
def test_a_cc_or_bcc_that_is_not_an_array_closes_the_channel_with_406(name, tag, value, type_name):
    client = _cc_client()
    headers = FieldTable()
    headers.set_typed(name, tag, value)
    _publish(client, "k1", headers)
    assert client.channel_close(1) == spec.ChannelClose(
        406,
        f'PRECONDITION_FAILED - invalid message: {{unacceptable_type_in_header,"{name}",'
        f"{type_name}}}",
        60,
        40,
    )
    assert client.connection_close() is None
    assert _counts(client) == [0, 0, 0, 0]


# --- exchange deduplication ----------------------------------------------------------------------


def _dedup_exchange(client: FakeClient, **arguments: Any) -> None:
    args = FieldTable({"x-message-deduplication": True})
    for key, value in arguments.items():
        args["x-" + key.replace("_", "-")] = value
    client.call(1, spec.ExchangeDeclare(exchange="D", type="fanout", arguments=args))
    client.declare_queue(1, "q")
    client.call(1, spec.QueueBind(queue="q", exchange="D"))


def _send(
    client: FakeClient,
    body: bytes,
    *,
    message_id: str | None = None,
    key: Any = None,
    exchange: str = "D",
) -> list[Received]:
    headers = FieldTable({"x-deduplication-header": key}) if key is not None else None
    properties = BasicProperties(message_id=message_id, headers=headers)
    return client.publish(1, exchange, "", body, properties=properties)


def _bodies(client: FakeClient, queue: str = "q") -> list[bytes]:
    return [e.message.body for e in _queue(client, queue).ready_messages()]


def test_a_duplicate_message_id_is_dropped_and_counted():
    client = _client()
    _dedup_exchange(client)
    _send(client, b"1", message_id="m")
    _send(client, b"2", message_id="m")
    _send(client, b"3", message_id="n")
    assert _bodies(client) == [b"1", b"3"]
    assert client.broker.vhosts["/"].exchanges["D"].dedup.duplicates == 1


def test_a_dropped_duplicate_is_still_confirmed():
    client = _client()
    _dedup_exchange(client)
    client.call(1, spec.ConfirmSelect())
    assert [r.method for r in _send(client, b"1", message_id="m")] == [spec.BasicAck(1, False)]
    assert [r.method for r in _send(client, b"2", message_id="m")] == [spec.BasicAck(2, False)]


def test_the_deduplication_header_wins_over_the_message_id():
    client = _client()
    _dedup_exchange(client)
    _send(client, b"1", message_id="same", key="a")
    _send(client, b"2", message_id="same", key="b")
    _send(client, b"3", message_id="other", key="a")
    assert _bodies(client) == [b"1", b"2"]


def test_messages_with_neither_header_nor_message_id_are_never_duplicates():
    client = _client()
    _dedup_exchange(client)
    _send(client, b"1")
    _send(client, b"2")
    assert _bodies(client) == [b"1", b"2"]


def test_the_cache_forgets_the_oldest_key_past_its_size():
    client = _client()
    _dedup_exchange(client, cache_size=2)
    for body, message_id in ((b"1", "a"), (b"2", "b"), (b"3", "c"), (b"4", "a"), (b"5", "c")):
        _send(client, body, message_id=message_id)
    assert _bodies(client) == [b"1", b"2", b"3", b"4"]


def test_the_cache_forgets_a_key_after_its_ttl():
    client = _client()
    _dedup_exchange(client, cache_ttl=1000)
    _send(client, b"1", message_id="a")
    client.now = 0.999
    _send(client, b"2", message_id="a")
    client.now = 1.0
    _send(client, b"3", message_id="a")
    assert _bodies(client) == [b"1", b"3"]


def test_an_exchange_without_deduplication_delivers_duplicates():
    client = _client()
    client.call(1, spec.ExchangeDeclare(exchange="P", type="fanout"))
    client.declare_queue(1, "q")
    client.call(1, spec.QueueBind(queue="q", exchange="P"))
    _send(client, b"1", message_id="m", exchange="P")
    _send(client, b"2", message_id="m", exchange="P")
    assert _bodies(client) == [b"1", b"2"]


# --- queue deduplication -------------------------------------------------------------------------


def _dedup_queue(client: FakeClient) -> None:
    client.declare_queue(1, "q", arguments=FieldTable({"x-message-deduplication": True}))


def _to_queue(client: FakeClient, body: bytes, **properties: Any) -> list[Received]:
    return client.publish(1, "", "q", body, properties=BasicProperties(**properties))


def test_a_queue_drops_a_duplicate_while_the_original_is_in_it():
    client = _client()
    _dedup_queue(client)
    _to_queue(client, b"1", message_id="m")
    _to_queue(client, b"2", message_id="m")
    assert _bodies(client) == [b"1"]
    assert _queue(client).stats.duplicates == 1


def test_a_queue_accepts_the_key_again_once_the_original_is_acked():
    client = _client()
    _dedup_queue(client)
    _to_queue(client, b"1", message_id="m")
    reply = client.call(1, spec.BasicGet(queue="q"))[-1]
    _to_queue(client, b"2", message_id="m")  # the original is unacked: still in the queue
    assert _bodies(client) == []
    client.ack(1, reply.method.delivery_tag)
    _to_queue(client, b"3", message_id="m")
    assert _bodies(client) == [b"3"]


def test_a_queue_accepts_the_key_again_once_the_original_is_taken_without_ack():
    client = _client()
    _dedup_queue(client)
    _to_queue(client, b"1", message_id="m")
    assert _get(client, "q") is not None
    _to_queue(client, b"2", message_id="m")
    assert _bodies(client) == [b"2"]


def test_a_queue_uses_the_deduplication_header_before_the_message_id():
    client = _client()
    _dedup_queue(client)
    _to_queue(client, b"1", message_id="m", headers=FieldTable({"x-deduplication-header": "a"}))
    _to_queue(client, b"2", message_id="m", headers=FieldTable({"x-deduplication-header": "b"}))
    _to_queue(client, b"3", message_id="m")
    assert _bodies(client) == [b"1", b"2", b"3"]


def test_a_queue_duplicate_is_still_confirmed():
    client = _client()
    _dedup_queue(client)
    client.call(1, spec.ConfirmSelect())
    assert [r.method for r in _to_queue(client, b"1", message_id="m")] == [spec.BasicAck(1, False)]
    assert [r.method for r in _to_queue(client, b"2", message_id="m")] == [spec.BasicAck(2, False)]


def test_a_queue_forgets_a_key_when_its_message_expires():
    client = _client()
    client.declare_queue(
        1, "q", arguments=FieldTable({"x-message-deduplication": True, "x-message-ttl": 100})
    )
    _to_queue(client, b"1", message_id="m")
    _at(client, 0.1)
    _to_queue(client, b"2", message_id="m")
    assert _bodies(client) == [b"2"]
