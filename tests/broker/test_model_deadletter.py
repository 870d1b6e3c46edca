"""Dead-lettering through a broker: the ``x-death`` layout exactly as RabbitMQ 3.10 writes it (key
order, type tags, count moved to the front), ``x-first-death-*``, properties, CC/BCC with and
without a dead-letter routing key, automatic cycles, and a missing dead-letter exchange."""

from __future__ import annotations

from typing import Any

from model_helpers import FakeClient, Received, make_broker

from router.amqp import spec
from router.amqp.properties import BasicProperties
from router.amqp.tables import FieldArray, FieldTable

WALL = 1_700_000_000  # Unix seconds at monotonic 0


def _client() -> FakeClient:
    broker = make_broker()
    broker.clock.wall_offset = WALL
    client = FakeClient(broker)
    client.open_channel(1)
    return client


def _exchange(client: FakeClient, name: str, type: str = "direct") -> None:
    client.call(1, spec.ExchangeDeclare(exchange=name, type=type))


def _queue(client: FakeClient, name: str, **arguments: Any) -> None:
    args = FieldTable()
    for key, value in arguments.items():
        args["x-" + key.replace("_", "-")] = value
    assert isinstance(client.declare_queue(1, name, arguments=args), spec.QueueDeclareOk)


def _bind(client: FakeClient, queue: str, exchange: str, key: str = "") -> None:
    client.call(1, spec.QueueBind(queue=queue, exchange=exchange, routing_key=key))


def _get(client: FakeClient, queue: str, no_ack: bool = False) -> Received:
    reply = client.call(1, spec.BasicGet(queue=queue, no_ack=no_ack))[-1]
    assert isinstance(reply.method, spec.BasicGetOk), reply
    return reply


def _empty(client: FakeClient, queue: str) -> bool:
    return client.broker.vhosts["/"].queues[queue].message_count == 0


def _count(client: FakeClient, queue: str) -> int:
    return client.broker.vhosts["/"].queues[queue].message_count


def _reject(client: FakeClient, queue: str) -> None:
    reply = _get(client, queue)
    client.call(1, spec.BasicReject(reply.method.delivery_tag, False))


def _at(client: FakeClient, now: float) -> None:
    client.now = now
    client.broker.tick(now)


def _layout(table: FieldTable) -> list[tuple[str, str]]:
    """Keys in wire order with their type tags."""
    return [(key, table.tag(key)) for key in table]


def _headers(table: dict[str, tuple[str, Any]]) -> FieldTable:
    headers = FieldTable()
    for key, (tag, value) in table.items():
        headers.set_typed(key, tag, value)
    return headers


def _cc(*keys: str) -> tuple[str, Any]:
    return ("A", FieldArray(list(keys), ["S"] * len(keys)))


def _deaths(reply: Received) -> list[FieldTable]:
    assert reply.properties is not None and reply.properties.headers is not None
    deaths = reply.properties.headers["x-death"]
    assert isinstance(deaths, FieldArray)
    assert [deaths.tag(i) for i in range(len(deaths))] == ["F"] * len(deaths)
    return list(deaths)


def _rejection_ring(client: FakeClient) -> None:
    """E --K,k2--> Q1 --dlx (fanout)--> Q2 --E2 (fanout)--> Q1: every hop a rejection."""
    _exchange(client, "E")
    _exchange(client, "dlx", "fanout")
    _exchange(client, "E2", "fanout")
    _queue(client, "Q1", dead_letter_exchange="dlx")
    _queue(client, "Q2", dead_letter_exchange="E2")
    _bind(client, "Q1", "E", "K")
    _bind(client, "Q1", "E", "k2")
    _bind(client, "Q2", "dlx")
    _bind(client, "Q1", "E2")


def _publish_first(client: FakeClient) -> None:
    headers = _headers({"a": ("I", 1), "CC": _cc("k2")})
    properties = BasicProperties(
        headers=headers,
        expiration="60000",
        content_type="text/plain",
        message_id="id-1",
        priority=3,
        timestamp=1234,
    )
    client.publish(1, "E", "K", b"body", properties=properties)


FIRST_ENTRY = [
    ("count", "l"),
    ("reason", "S"),
    ("queue", "S"),
    ("time", "T"),
    ("exchange", "S"),
    ("routing-keys", "A"),
    ("original-expiration", "S"),
]


# --- the first death -----------------------------------------------------------------------------


def test_a_cc_key_bound_to_the_same_queue_puts_one_copy_in_it():
    client = _client()
    _rejection_ring(client)
    _publish_first(client)
    assert _count(client, "Q1") == 1


def test_the_first_death_entry_has_rabbitmqs_key_order_and_type_tags():
    client = _client()
    _rejection_ring(client)
    _publish_first(client)
    _reject(client, "Q1")
    [entry] = _deaths(_get(client, "Q2"))
    assert _layout(entry) == FIRST_ENTRY
    assert dict(entry) == {
        "count": 1,
        "reason": "rejected",
        "queue": "Q1",
        "time": WALL,
        "exchange": "E",
        "routing-keys": ["K", "k2"],
        "original-expiration": "60000",
    }
    keys = entry["routing-keys"]
    assert [keys.tag(i) for i in range(len(keys))] == ["S", "S"]


def test_the_first_death_time_is_the_wall_clock_in_whole_seconds():
    client = _client()
    _rejection_ring(client)
    _publish_first(client)
    client.now = 12.7
    _reject(client, "Q1")
    [entry] = _deaths(_get(client, "Q2"))
    assert entry["time"] == WALL + 12


def test_top_level_headers_are_sorted_with_x_first_death_set_once():
    client = _client()
    _rejection_ring(client)
    _publish_first(client)
    _reject(client, "Q1")
    headers = _get(client, "Q2").properties.headers
    assert _layout(headers) == [
        ("CC", "A"),
        ("a", "I"),
        ("x-death", "A"),
        ("x-first-death-exchange", "S"),
        ("x-first-death-queue", "S"),
        ("x-first-death-reason", "S"),
        ("x-last-death-exchange", "S"),
        ("x-last-death-queue", "S"),
        ("x-last-death-reason", "S"),
    ]
    assert (
        headers["x-first-death-exchange"],
        headers["x-first-death-queue"],
        headers["x-first-death-reason"],
    ) == ("E", "Q1", "rejected")


def test_headers_in_any_publish_order_come_out_sorted_bytewise():
    client = _client()
    _exchange(client, "dlx", "fanout")
    _queue(client, "q", dead_letter_exchange="dlx")
    _queue(client, "dlq")
    _bind(client, "dlq", "dlx")
    headers = _headers({k: ("S", k) for k in ("z", "B", "_", "a")})
    client.publish(1, "", "q", b"x", properties=BasicProperties(headers=headers))
    _reject(client, "q")
    assert list(_get(client, "dlq").properties.headers) == [
        "B",
        "_",
        "a",
        "x-death",
        "x-first-death-exchange",
        "x-first-death-queue",
        "x-first-death-reason",
        "x-last-death-exchange",
        "x-last-death-queue",
        "x-last-death-reason",
        "z",
    ]


def test_a_dead_lettered_message_loses_its_expiration_and_keeps_its_other_properties():
    client = _client()
    _rejection_ring(client)
    _publish_first(client)
    _reject(client, "Q1")
    reply = _get(client, "Q2")
    properties = reply.properties
    assert properties.expiration is None
    assert (properties.content_type, properties.message_id, properties.priority) == (
        "text/plain",
        "id-1",
        3,
    )
    assert properties.timestamp == 1234
    assert (reply.method.exchange, reply.method.routing_key, reply.body) == ("dlx", "K", b"body")


def test_a_message_without_expiration_has_no_original_expiration_entry():
    client = _client()
    _exchange(client, "dlx", "fanout")
    _queue(client, "q", dead_letter_exchange="dlx")
    _queue(client, "dlq")
    _bind(client, "dlq", "dlx")
    client.publish(1, "", "q", b"x")
    _reject(client, "q")
    [entry] = _deaths(_get(client, "dlq"))
    assert "original-expiration" not in entry
    assert entry["exchange"] == ""
    assert entry["routing-keys"] == ["q"]


def test_a_queue_ttl_death_has_reason_expired_and_the_default_exchange():
    client = _client()
    _exchange(client, "dlx", "fanout")
    _queue(client, "q", dead_letter_exchange="dlx", message_ttl=100)
    _queue(client, "dlq")
    _bind(client, "dlq", "dlx")
    client.publish(1, "", "q", b"x")
    _at(client, 0.1)
    reply = _get(client, "dlq")
    [entry] = _deaths(reply)
    assert _layout(entry) == FIRST_ENTRY[:-1]
    assert (entry["reason"], entry["queue"], entry["exchange"]) == ("expired", "q", "")
    assert reply.properties.headers["x-first-death-reason"] == "expired"


# --- later deaths --------------------------------------------------------------------------------


def test_a_second_death_is_prepended_with_sorted_keys_and_the_first_entry_untouched():
    client = _client()
    _rejection_ring(client)
    _publish_first(client)
    _reject(client, "Q1")
    client.now = 10.0
    _reject(client, "Q2")
    reply = _get(client, "Q1")
    second, first = _deaths(reply)
    assert _layout(second) == [
        ("count", "l"),
        ("exchange", "S"),
        ("queue", "S"),
        ("reason", "S"),
        ("routing-keys", "A"),
        ("time", "T"),
    ]
    assert dict(second) == {
        "count": 1,
        "exchange": "dlx",
        "queue": "Q2",
        "reason": "rejected",
        "routing-keys": ["K", "k2"],
        "time": WALL + 10,
    }
    assert _layout(first) == FIRST_ENTRY
    assert first["time"] == WALL
    headers = reply.properties.headers
    assert (headers["x-first-death-queue"], headers["x-first-death-exchange"]) == ("Q1", "E")


def test_a_repeated_death_increments_count_moves_it_to_the_front_sorted_and_keeps_its_time():
    client = _client()
    _rejection_ring(client)
    _publish_first(client)
    _reject(client, "Q1")
    client.now = 10.0
    _reject(client, "Q2")
    client.now = 20.0
    _reject(client, "Q1")
    again, other = _deaths(_get(client, "Q2"))
    assert _layout(again) == [
        ("count", "l"),
        ("exchange", "S"),
        ("original-expiration", "S"),
        ("queue", "S"),
        ("reason", "S"),
        ("routing-keys", "A"),
        ("time", "T"),
    ]
    assert dict(again) == {
        "count": 2,
        "exchange": "E",
        "original-expiration": "60000",
        "queue": "Q1",
        "reason": "rejected",
        "routing-keys": ["K", "k2"],
        "time": WALL,
    }
    assert (other["queue"], other["count"], other["time"]) == ("Q2", 1, WALL + 10)


def test_a_reject_loop_into_the_same_queue_keeps_one_entry_counting_up():
    client = _client()
    _exchange(client, "loop", "fanout")
    _queue(client, "q", dead_letter_exchange="loop")
    _bind(client, "q", "loop")
    client.publish(1, "", "q", b"x")
    for _ in range(3):
        _reject(client, "q")
    [entry] = _deaths(_get(client, "q"))
    assert entry["count"] == 3
    assert entry.tag("count") == "l"
    assert list(entry) == sorted(entry)


def test_a_death_for_the_same_queue_with_another_reason_gets_its_own_entry():
    client = _client()
    _exchange(client, "both", "fanout")
    _queue(client, "q", dead_letter_exchange="both", message_ttl=1000)
    _queue(client, "w")
    _bind(client, "q", "both")
    _bind(client, "w", "both")
    client.publish(1, "", "q", b"x")
    _reject(client, "q")  # a copy back in q and one in w
    client.now = 5.0
    client.broker.tick(5.0)  # q's copy expires: w gets it, q (a cycle) does not
    assert (_count(client, "q"), _count(client, "w")) == (0, 2)
    _get(client, "w")
    deaths = _deaths(_get(client, "w"))
    assert [(d["queue"], d["reason"], d["count"]) for d in deaths] == [
        ("q", "expired", 1),
        ("q", "rejected", 1),
    ]
    assert deaths[0]["time"] == WALL + 5
    assert list(deaths[0]) == sorted(deaths[0])


# --- CC and BCC ----------------------------------------------------------------------------------


def _cc_setup(client: FakeClient, **dead_letter: Any) -> None:
    """E --K--> Q1 --dlx (direct)--> DK (K), DC (k2), DB (b1)."""
    _exchange(client, "E")
    _exchange(client, "dlx")
    _queue(client, "Q1", dead_letter_exchange="dlx", **dead_letter)
    _bind(client, "Q1", "E", "K")
    for name, key in (("DK", "K"), ("DC", "k2"), ("DB", "b1"), ("DR", "R")):
        _queue(client, name)
        _bind(client, name, "dlx", key)


def _publish_cc_bcc(client: FakeClient) -> None:
    headers = _headers({"CC": _cc("k2"), "BCC": _cc("b1")})
    client.publish(1, "E", "K", b"x", properties=BasicProperties(headers=headers))


def test_without_a_dead_letter_routing_key_every_original_key_routes_including_bcc():
    client = _client()
    _cc_setup(client)
    _publish_cc_bcc(client)
    _reject(client, "Q1")
    assert [_count(client, q) for q in ("DK", "DC", "DB", "DR")] == [1, 1, 1, 0]
    for queue in ("DK", "DC", "DB"):
        reply = _get(client, queue)
        headers = reply.properties.headers
        assert reply.method.routing_key == "K"
        assert headers["CC"] == ["k2"]
        assert "BCC" not in headers
        assert headers["x-death"][0]["routing-keys"] == ["K", "k2"]


def test_a_dead_letter_routing_key_replaces_every_key_and_removes_the_cc_header():
    client = _client()
    _cc_setup(client, dead_letter_routing_key="R")
    _publish_cc_bcc(client)
    _reject(client, "Q1")
    assert [_count(client, q) for q in ("DK", "DC", "DB", "DR")] == [0, 0, 0, 1]
    reply = _get(client, "DR")
    headers = reply.properties.headers
    assert reply.method.routing_key == "R"
    assert "CC" not in headers
    assert "BCC" not in headers
    assert headers["x-death"][0]["routing-keys"] == ["K", "k2"]


def test_bcc_keys_never_show_in_the_x_death_routing_keys():
    client = _client()
    _cc_setup(client)
    headers = _headers({"BCC": _cc("b1")})
    client.publish(1, "E", "K", b"x", properties=BasicProperties(headers=headers))
    _reject(client, "Q1")
    reply = _get(client, "DB")
    assert reply.properties.headers["x-death"][0]["routing-keys"] == ["K"]
    assert "BCC" not in reply.properties.headers


# --- cycles --------------------------------------------------------------------------------------


def test_a_ttl_self_loop_drops_the_message_at_its_first_expiry():
    client = _client()
    _exchange(client, "loop", "fanout")
    _queue(client, "q", dead_letter_exchange="loop", message_ttl=50)
    _queue(client, "w")
    _bind(client, "q", "loop")
    _bind(client, "w", "loop")
    client.publish(1, "", "q", b"x")
    _at(client, 0.05)
    assert _count(client, "q") == 0
    assert _count(client, "w") == 1
    assert client.broker.next_deadline() is None


def test_a_rejection_then_an_expiry_in_the_same_queue_is_a_cycle_and_dropped():
    client = _client()
    _exchange(client, "loop", "fanout")
    _queue(client, "q", dead_letter_exchange="loop", message_ttl=1000)
    _bind(client, "q", "loop")
    client.publish(1, "", "q", b"x")
    _reject(client, "q")
    assert _count(client, "q") == 1
    _at(client, 1.0)
    assert _count(client, "q") == 0


def test_an_expiry_cycle_through_two_queues_is_dropped_when_it_comes_back():
    client = _client()
    _exchange(client, "to_b", "fanout")
    _exchange(client, "to_a", "fanout")
    _queue(client, "a", dead_letter_exchange="to_b", message_ttl=100)
    _queue(client, "b", dead_letter_exchange="to_a", message_ttl=100)
    _bind(client, "b", "to_b")
    _bind(client, "a", "to_a")
    client.publish(1, "", "a", b"x")
    _at(client, 0.1)
    assert (_count(client, "a"), _count(client, "b")) == (0, 1)
    _at(client, 0.2)
    assert (_count(client, "a"), _count(client, "b")) == (0, 0)


def test_a_cycle_with_a_rejection_in_it_goes_round():
    client = _client()
    _rejection_ring(client)
    _publish_first(client)
    for queue in ("Q1", "Q2", "Q1", "Q2"):
        _reject(client, queue)
    deaths = _deaths(_get(client, "Q1"))
    assert [(d["queue"], d["count"]) for d in deaths] == [("Q2", 2), ("Q1", 2)]


# --- no dead-letter exchange ---------------------------------------------------------------------


def test_a_missing_dead_letter_exchange_drops_the_message_and_the_channel_stays_open():
    client = _client()
    _queue(client, "q", dead_letter_exchange="nope")
    client.publish(1, "", "q", b"x")
    _reject(client, "q")
    assert _empty(client, "q")
    assert client.channel_close(1) is None
    assert client.broker.vhosts["/"].queues["q"].unacked == 0


def test_a_queue_without_a_dead_letter_exchange_drops_rejected_messages():
    client = _client()
    _queue(client, "q")
    client.publish(1, "", "q", b"x")
    _reject(client, "q")
    assert _empty(client, "q")
    assert client.broker.vhosts["/"].queues["q"].stats.dead_lettered == {}


def test_x_last_death_headers_name_the_latest_death_as_rabbitmq_3_13_writes_them():
    client = _client()
    _rejection_ring(client)
    _publish_first(client)
    _reject(client, "Q1")
    _reject(client, "Q2")
    headers = _get(client, "Q1").properties.headers
    assert (
        headers["x-last-death-reason"],
        headers["x-last-death-queue"],
        headers["x-first-death-queue"],
    ) == ("rejected", "Q2", "Q1")
