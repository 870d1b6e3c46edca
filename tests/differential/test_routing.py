"""Routing, compared with RabbitMQ: which queue receives which message, how often, and returns."""

from __future__ import annotations

from decimal import Decimal

import pika
import pytest
from pika.compat import long as pika_long

from .harness import Env, assert_same, drain, get_all, outcome, ping

pytestmark = pytest.mark.differential

TOPIC_BINDING_KEYS = [
    "#",
    "*",
    "",
    "a",
    "a.*",
    "a.#",
    "#.a",
    "*.a",
    "a.*.b",
    "a.#.b",
    "#.#",
    "*.*",
    "a.",
    ".a",
    "*.#.*",
    "#.*",
]
ROUTING_KEYS = ["", "a", "a.", ".a", "a.b", "a..b", "a.b.b", ".", "a.x.y.b", "b"]


def _bodies(channel, queue: str) -> list[str]:
    return [body.decode() for body, *_ in get_all(channel, queue, auto_ack=True)]


def _key_matrix(env: Env, exchange_type: str, binding_keys: list[str]) -> dict[str, list[str]]:
    """One queue per binding key; publish every routing key once; which keys reached which queue."""
    channel = env.channel()
    exchange = env.exchange(exchange_type)
    channel.exchange_declare(exchange, exchange_type)
    queues = {}
    for index, key in enumerate(binding_keys):
        queue = env.queue(f"{exchange_type}{index}")
        channel.queue_declare(queue)
        channel.queue_bind(queue, exchange, routing_key=key)
        queues[key] = queue
    for key in ROUTING_KEYS:
        channel.basic_publish(exchange, key, body=key.encode() or b"<empty>")
    ping(channel)
    return {key: _bodies(channel, queue) for key, queue in queues.items()}


def scenario_topic_matrix(env: Env):
    return _key_matrix(env, "topic", TOPIC_BINDING_KEYS)


def scenario_direct_matrix(env: Env):
    return _key_matrix(env, "direct", ["", "a", "A", "a.b", "#", "*", "a."])


def scenario_fanout_ignores_keys(env: Env):
    return _key_matrix(env, "fanout", ["", "a", "#"])


def scenario_default_exchange_routes_by_queue_name(env: Env):
    channel = env.channel()
    queue = env.queue("default")
    channel.queue_declare(queue)
    channel.basic_publish("", queue, body=b"by-name")
    channel.basic_publish("", queue.upper(), body=b"wrong-case")
    ping(channel)
    return _bodies(channel, queue)


def scenario_publish_to_amq_default_by_name(env: Env):
    channel = env.channel()
    queue = env.queue("amq-default")
    channel.queue_declare(queue)
    channel.basic_publish("amq.default", queue, body=b"amq.default")
    published = outcome(ping, channel)
    return published, _bodies(env.channel(), queue)


def scenario_queue_bound_twice_gets_one_copy(env: Env):
    channel = env.channel()
    exchange = env.exchange("topic-twice")
    channel.exchange_declare(exchange, "topic")
    queue = env.queue("twice")
    channel.queue_declare(queue)
    for key in ("a.*", "*.b", "#", "a.b"):
        channel.queue_bind(queue, exchange, routing_key=key)
    channel.basic_publish(exchange, "a.b", body=b"one")
    ping(channel)
    return _bodies(channel, queue)


def scenario_unbind_stops_routing(env: Env):
    channel = env.channel()
    exchange = env.exchange("unbind")
    channel.exchange_declare(exchange, "direct")
    queue = env.queue("unbind")
    channel.queue_declare(queue)
    channel.queue_bind(queue, exchange, routing_key="k")
    channel.basic_publish(exchange, "k", body=b"before")
    unbind = outcome(channel.queue_unbind, queue, exchange, routing_key="k")
    channel.basic_publish(exchange, "k", body=b"after")
    unbind_missing = outcome(channel.queue_unbind, queue, exchange, routing_key="never-bound")
    ping(channel)
    return unbind, unbind_missing, _bodies(channel, queue)


def test_topic_binding_keys_match_routing_keys_like_rabbitmq(router_url, rabbitmq_url):
    assert_same(scenario_topic_matrix, router_url, rabbitmq_url)


def test_direct_exchange_matches_routing_keys_exactly(router_url, rabbitmq_url):
    assert_same(scenario_direct_matrix, router_url, rabbitmq_url)


def test_fanout_exchange_ignores_routing_keys(router_url, rabbitmq_url):
    assert_same(scenario_fanout_ignores_keys, router_url, rabbitmq_url)


def test_default_exchange_routes_by_exact_queue_name(router_url, rabbitmq_url):
    assert_same(scenario_default_exchange_routes_by_queue_name, router_url, rabbitmq_url)


def test_publish_to_amq_default_by_name_behaves_like_rabbitmq(router_url, rabbitmq_url):
    assert_same(scenario_publish_to_amq_default_by_name, router_url, rabbitmq_url)


def test_queue_bound_with_several_matching_keys_gets_one_copy(router_url, rabbitmq_url):
    assert_same(scenario_queue_bound_twice_gets_one_copy, router_url, rabbitmq_url)


def test_unbind_stops_routing_and_unbinding_a_missing_binding_is_ok(router_url, rabbitmq_url):
    assert_same(scenario_unbind_stops_routing, router_url, rabbitmq_url)


# -- headers ----------------------------------------------------------------------------------

HEADER_BINDINGS = {
    "all-int": {"x-match": "all", "a": 1},
    "all-str": {"x-match": "all", "a": "1"},
    "all-bool": {"x-match": "all", "a": True},
    "all-void": {"x-match": "all", "a": None},
    "all-two": {"x-match": "all", "a": 1, "b": 2},
    "any-two": {"x-match": "any", "a": 1, "b": 2},
    "default-match": {"a": 1},
    "no-args": {},
    "all-only-x": {"x-match": "all"},
    "any-only-x": {"x-match": "any"},
    "all-with-x-arg": {"x-match": "all", "a": 1, "x-c": "z"},
    "any-with-x-arg": {"x-match": "any", "x-c": "z"},
    "all-with-x": {"x-match": "all-with-x", "a": 1, "x-c": "z"},
    "any-with-x": {"x-match": "any-with-x", "x-c": "z"},
    "any-void": {"x-match": "any", "a": None, "b": 2},
}
MESSAGE_HEADERS = {
    "int": {"a": 1},
    "str": {"a": "1"},
    "bool": {"a": True},
    "void": {"a": None},
    "long-1": {"a": pika_long(1)},
    "decimal": {"a": Decimal(1)},
    "true-as-int-bind": {"a": 1, "b": True},
    "long": {"a": 2**40},
    "zero": {"a": 0},
    "int+b": {"a": 1, "b": 2},
    "b-only": {"b": 2},
    "int+x": {"a": 1, "x-c": "z"},
    "x-only": {"x-c": "z"},
    "x-wrong": {"a": 1, "x-c": "y"},
    "empty": {},
    "none": None,
}


def scenario_headers_matrix(env: Env):
    channel = env.channel()
    exchange = env.exchange("headers")
    channel.exchange_declare(exchange, "headers")
    queues = {}
    for index, (label, arguments) in enumerate(HEADER_BINDINGS.items()):
        queue = env.queue(f"headers{index}")
        channel.queue_declare(queue)
        channel.queue_bind(queue, exchange, routing_key="ignored", arguments=arguments)
        queues[label] = queue
    for label, headers in MESSAGE_HEADERS.items():
        properties = pika.BasicProperties(headers=headers)
        channel.basic_publish(exchange, "whatever", body=label.encode(), properties=properties)
    ping(channel)
    return {label: _bodies(channel, queue) for label, queue in queues.items()}


def test_headers_exchange_matches_like_rabbitmq_for_every_x_match_and_value_type(
    router_url, rabbitmq_url
):
    assert_same(scenario_headers_matrix, router_url, rabbitmq_url)


def scenario_headers_byte_array_value(env: Env):
    channel = env.channel()
    exchange = env.exchange("headers-bytes")
    channel.exchange_declare(exchange, "headers")
    by_str = env.queue("bind-str")
    by_bytes = env.queue("bind-bytes")
    for queue, value in ((by_str, "1"), (by_bytes, b"1")):
        channel.queue_declare(queue)
        channel.queue_bind(queue, exchange, arguments={"x-match": "all", "a": value})
    for label, value in (("str", "1"), ("bytes", b"1")):
        properties = pika.BasicProperties(headers={"a": value})
        channel.basic_publish(exchange, "", body=label.encode(), properties=properties)
    ping(channel)
    return {"bound-str": _bodies(channel, by_str), "bound-bytes": _bodies(channel, by_bytes)}


def test_headers_byte_array_value_matches_equal_longstr(router_url, rabbitmq_url):
    assert_same(scenario_headers_byte_array_value, router_url, rabbitmq_url)


# -- exchange-to-exchange ---------------------------------------------------------------------


def scenario_exchange_to_exchange_one_copy_per_queue(env: Env):
    channel = env.channel()
    source = env.exchange("e2e-src")
    middle = env.exchange("e2e-mid")
    other = env.exchange("e2e-other")
    channel.exchange_declare(source, "topic")
    channel.exchange_declare(middle, "fanout")
    channel.exchange_declare(other, "direct")
    q1 = env.queue("e2e-1")
    q2 = env.queue("e2e-2")
    for queue in (q1, q2):
        channel.queue_declare(queue)
    channel.exchange_bind(middle, source, routing_key="a.#")
    channel.exchange_bind(other, source, routing_key="#")
    channel.exchange_bind(source, middle)  # a cycle: must not loop or duplicate
    channel.queue_bind(q1, source, routing_key="a.b")
    channel.queue_bind(q1, middle)
    channel.queue_bind(q1, other, routing_key="a.b")
    channel.queue_bind(q2, other, routing_key="c")
    for key in ("a.b", "c", "a.c", "zzz"):
        channel.basic_publish(source, key, body=key.encode())
    channel.basic_publish(middle, "x", body=b"via-middle")
    ping(channel)
    unbind = outcome(channel.exchange_unbind, middle, source, routing_key="a.#")
    channel.basic_publish(source, "a.c", body=b"after-unbind")
    ping(channel)
    return {"q1": _bodies(channel, q1), "q2": _bodies(channel, q2), "unbind": unbind}


def test_exchange_to_exchange_bindings_deliver_one_copy_per_queue(router_url, rabbitmq_url):
    assert_same(scenario_exchange_to_exchange_one_copy_per_queue, router_url, rabbitmq_url)


# -- mandatory / alternate exchange ------------------------------------------------------------


def _returns(channel) -> list:
    returned: list = []

    def on_return(_channel, method, properties, body):
        returned.append(
            (method.reply_code, method.reply_text, method.exchange, method.routing_key, body)
        )

    channel.add_on_return_callback(on_return)
    return returned


def scenario_mandatory_unroutable_is_returned(env: Env):
    connection = env.connect()
    channel = connection.channel()
    returned = _returns(channel)
    exchange = env.exchange("mandatory")
    channel.exchange_declare(exchange, "direct")
    queue = env.queue("mandatory")
    channel.queue_declare(queue)
    channel.queue_bind(queue, exchange, routing_key="routed")
    channel.basic_publish(exchange, "nowhere", body=b"m1", mandatory=True)
    channel.basic_publish(exchange, "routed", body=b"m2", mandatory=True)
    channel.basic_publish(exchange, "nowhere", body=b"m3", mandatory=False)
    channel.basic_publish("", "no-such-queue-" + env.suffix, body=b"m4", mandatory=True)
    ping(channel)
    drain(connection)
    return {"returned": returned, "queue": _bodies(channel, queue)}


def scenario_alternate_exchange_takes_unroutable(env: Env):
    connection = env.connect()
    channel = connection.channel()
    returned = _returns(channel)
    alternate = env.exchange("ae")
    main = env.exchange("ae-main")
    channel.exchange_declare(alternate, "fanout")
    channel.exchange_declare(main, "direct", arguments={"alternate-exchange": alternate})
    routed = env.queue("ae-routed")
    fallback = env.queue("ae-fallback")
    channel.queue_declare(routed)
    channel.queue_declare(fallback)
    channel.queue_bind(routed, main, routing_key="k")
    channel.queue_bind(fallback, alternate)
    channel.basic_publish(main, "k", body=b"routed")
    channel.basic_publish(main, "other", body=b"unroutable", mandatory=True)
    ping(channel)
    drain(connection)
    return {
        "returned": returned,
        "routed": _bodies(channel, routed),
        "fallback": [(body, rk) for body, _r, rk, *_ in get_all(channel, fallback, auto_ack=True)],
    }


def scenario_missing_alternate_exchange_returns_mandatory(env: Env):
    connection = env.connect()
    channel = connection.channel()
    returned = _returns(channel)
    main = env.exchange("ae-missing-main")
    channel.exchange_declare(main, "direct", arguments={"alternate-exchange": "nope" + env.suffix})
    channel.basic_publish(main, "x", body=b"lost", mandatory=True)
    ping(channel)
    drain(connection)
    return returned


def test_mandatory_unroutable_message_is_returned_with_312_no_route(router_url, rabbitmq_url):
    assert_same(scenario_mandatory_unroutable_is_returned, router_url, rabbitmq_url)


def test_alternate_exchange_receives_unroutable_messages_and_suppresses_return(
    router_url, rabbitmq_url
):
    assert_same(scenario_alternate_exchange_takes_unroutable, router_url, rabbitmq_url)


def test_missing_alternate_exchange_still_returns_mandatory_message(router_url, rabbitmq_url):
    assert_same(scenario_missing_alternate_exchange_returns_mandatory, router_url, rabbitmq_url)
