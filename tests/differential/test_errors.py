"""Errors, compared with RabbitMQ: reply code, reply text, and whether the channel or the whole
connection was closed (and whether the connection is still usable afterwards)."""

from __future__ import annotations

import re

import pika
import pytest

from .harness import Env, assert_same, connect_outcome, outcome, ping

pytestmark = pytest.mark.differential


def _state(connection) -> dict:
    """Is the connection still open, and can it still open a working channel?"""
    if not connection.is_open:
        return {"connection-open": False}
    return {"connection-open": True, "new-channel": outcome(lambda: ping(connection.channel()))}


def _raw(channel, method) -> None:
    """Send a method frame without pika's client-side checks, then wait for a round trip."""
    channel._impl._send_method(method)
    ping(channel)


def _single_error(env: Env, action) -> dict:
    """Run ``action(channel)`` on a fresh connection; the outcome and the connection's state."""
    connection = env.connect()
    channel = connection.channel()
    result = outcome(action, channel)
    return {"outcome": result, **_state(connection)}


# -- declare / delete -------------------------------------------------------------------------


def scenario_passive_declare_missing_queue(env: Env):
    name = env.queue("missing")
    return _single_error(env, lambda ch: ch.queue_declare(name, passive=True))


def scenario_passive_declare_missing_exchange(env: Env):
    name = env.exchange("missing")
    return _single_error(env, lambda ch: ch.exchange_declare(name, passive=True))


def _redeclare_queue(env: Env, base: str, first: dict, second: dict):
    name = env.queue(base)
    connection = env.connect()
    channel = connection.channel()
    declared = outcome(lambda: channel.queue_declare(name, **first).method.message_count)
    return {"declared": declared, **_single_error(env, lambda ch: ch.queue_declare(name, **second))}


def scenario_redeclare_queue_with_different_durable(env: Env):
    return _redeclare_queue(env, "durable", {"durable": False}, {"durable": True})


def scenario_redeclare_queue_with_different_ttl(env: Env):
    first = {"arguments": {"x-message-ttl": 1000}}
    return _redeclare_queue(env, "ttl", first, {"arguments": {"x-message-ttl": 2000}})


def scenario_redeclare_queue_without_its_ttl(env: Env):
    return _redeclare_queue(env, "ttl-missing", {"arguments": {"x-message-ttl": 1000}}, {})


def scenario_redeclare_queue_with_different_max_priority(env: Env):
    first = {"arguments": {"x-max-priority": 5}}
    return _redeclare_queue(env, "prio", first, {"arguments": {"x-max-priority": 10}})


def scenario_redeclare_queue_identically_is_ok(env: Env):
    args = {"durable": True, "arguments": {"x-message-ttl": 1000, "x-max-priority": 5}}
    return _redeclare_queue(env, "same", args, args)


def scenario_declare_queue_with_invalid_argument_value(env: Env):
    name = env.queue("bad-arg")
    return _single_error(
        env, lambda ch: ch.queue_declare(name, arguments={"x-max-priority": "high"})
    )


def scenario_declare_queue_with_negative_ttl(env: Env):
    name = env.queue("neg-ttl")
    return _single_error(env, lambda ch: ch.queue_declare(name, arguments={"x-message-ttl": -1}))


def scenario_declare_queue_with_zero_expires(env: Env):
    name = env.queue("zero-expires")
    return _single_error(env, lambda ch: ch.queue_declare(name, arguments={"x-expires": 0}))


def scenario_declare_queue_with_unknown_overflow(env: Env):
    name = env.queue("bad-overflow")
    return _single_error(
        env, lambda ch: ch.queue_declare(name, arguments={"x-overflow": "explode"})
    )


def scenario_declare_reserved_exchange_name(env: Env):
    env.exchange("cleanup-only")
    name = f"amq.diff-{env.suffix}"
    return _single_error(env, lambda ch: ch.exchange_declare(name, "direct"))


def scenario_redeclare_builtin_amq_direct(env: Env):
    return _single_error(env, lambda ch: ch.exchange_declare("amq.direct", "direct"))


def scenario_redeclare_builtin_amq_direct_equivalently(env: Env):
    return _single_error(env, lambda ch: ch.exchange_declare("amq.direct", "direct", durable=True))


def scenario_passive_declare_builtin_amq_topic(env: Env):
    return _single_error(env, lambda ch: ch.exchange_declare("amq.topic", passive=True))


def scenario_declare_reserved_queue_name(env: Env):
    name = f"amq.diff-{env.suffix}"
    return _single_error(env, lambda ch: ch.queue_declare(name))


def scenario_exchange_type_mismatch(env: Env):
    name = env.exchange("type")
    connection = env.connect()
    connection.channel().exchange_declare(name, "direct")
    return _single_error(env, lambda ch: ch.exchange_declare(name, "fanout"))


def scenario_unknown_exchange_type(env: Env):
    name = env.exchange("unknown-type")
    return _single_error(env, lambda ch: ch.exchange_declare(name, "x-no-such-type"))


def scenario_delete_missing_queue(env: Env):
    name = env.queue("never")
    return _single_error(env, lambda ch: ch.queue_delete(name).method.message_count)


def scenario_delete_missing_exchange(env: Env):
    name = env.exchange("never")
    return _single_error(env, lambda ch: ch.exchange_delete(name))


def scenario_delete_builtin_exchange(env: Env):
    return _single_error(env, lambda ch: ch.exchange_delete("amq.fanout"))


def scenario_delete_queue_if_unused_with_consumer(env: Env):
    name = env.queue("if-unused")
    connection = env.connect()
    channel = connection.channel()
    channel.queue_declare(name)
    channel.basic_consume(name, lambda *a: None)
    return _single_error(env, lambda ch: ch.queue_delete(name, if_unused=True))


def scenario_delete_queue_if_empty_with_messages(env: Env):
    name = env.queue("if-empty")
    channel = env.channel()
    channel.queue_declare(name)
    channel.basic_publish("", name, body=b"x")
    ping(channel)
    return _single_error(env, lambda ch: ch.queue_delete(name, if_empty=True))


def scenario_delete_exchange_if_unused_with_binding(env: Env):
    exchange = env.exchange("x-if-unused")
    queue = env.queue("x-if-unused")
    channel = env.channel()
    channel.exchange_declare(exchange, "direct")
    channel.queue_declare(queue)
    channel.queue_bind(queue, exchange, routing_key="k")
    return _single_error(env, lambda ch: ch.exchange_delete(exchange, if_unused=True))


# -- bind / publish ---------------------------------------------------------------------------


def scenario_publish_to_missing_exchange(env: Env):
    name = env.exchange("missing-publish")

    def publish(channel):
        channel.basic_publish(name, "k", body=b"x")
        ping(channel)

    return _single_error(env, publish)


def scenario_bind_missing_queue(env: Env):
    queue = env.queue("missing-bind")
    return _single_error(env, lambda ch: ch.queue_bind(queue, "amq.direct", routing_key="k"))


def scenario_bind_to_missing_exchange(env: Env):
    queue = env.queue("bind-missing-x")
    exchange = env.exchange("missing-bind")
    env.channel().queue_declare(queue)
    return _single_error(env, lambda ch: ch.queue_bind(queue, exchange, routing_key="k"))


def scenario_bind_missing_queue_to_missing_exchange(env: Env):
    queue = env.queue("missing-both")
    exchange = env.exchange("missing-both")
    return _single_error(env, lambda ch: ch.queue_bind(queue, exchange, routing_key="k"))


def scenario_bind_queue_to_default_exchange(env: Env):
    queue = env.queue("bind-default")
    env.channel().queue_declare(queue)
    return _single_error(env, lambda ch: ch.queue_bind(queue, "", routing_key="k"))


def scenario_exchange_bind_missing_source(env: Env):
    destination = env.exchange("e2e-dest")
    source = env.exchange("e2e-missing-src")
    env.channel().exchange_declare(destination, "fanout")
    return _single_error(env, lambda ch: ch.exchange_bind(destination, source))


def scenario_headers_bind_with_invalid_x_match(env: Env):
    exchange = env.exchange("bad-x-match")
    queue = env.queue("bad-x-match")
    channel = env.channel()
    channel.exchange_declare(exchange, "headers")
    channel.queue_declare(queue)
    return _single_error(
        env, lambda ch: ch.queue_bind(queue, exchange, arguments={"x-match": "some", "a": 1})
    )


def scenario_get_from_missing_queue(env: Env):
    queue = env.queue("missing-get")
    return _single_error(env, lambda ch: ch.basic_get(queue))


def scenario_consume_from_missing_queue(env: Env):
    queue = env.queue("missing-consume")
    return _single_error(env, lambda ch: ch.basic_consume(queue, lambda *a: None))


# -- acks -------------------------------------------------------------------------------------


def _ack_scenario(env: Env, base: str, actions):
    queue = env.queue(base)

    def run(channel):
        channel.queue_declare(queue)
        channel.basic_publish("", queue, body=b"x")
        ping(channel)
        method, _props, _body = channel.basic_get(queue)
        actions(channel, method.delivery_tag)
        ping(channel)

    return _single_error(env, run)


def scenario_ack_unknown_delivery_tag(env: Env):
    return _ack_scenario(env, "ack-unknown", lambda ch, tag: ch.basic_ack(tag + 41))


def scenario_ack_delivery_tag_zero(env: Env):
    return _ack_scenario(env, "ack-zero", lambda ch, tag: ch.basic_ack(0))


def scenario_ack_delivery_tag_zero_multiple(env: Env):
    return _ack_scenario(env, "ack-zero-multi", lambda ch, tag: ch.basic_ack(0, multiple=True))


def scenario_double_ack(env: Env):
    def twice(channel, tag):
        channel.basic_ack(tag)
        channel.basic_ack(tag)

    return _ack_scenario(env, "double-ack", twice)


def scenario_nack_unknown_delivery_tag(env: Env):
    return _ack_scenario(env, "nack-unknown", lambda ch, tag: ch.basic_nack(tag + 7))


def scenario_reject_unknown_delivery_tag(env: Env):
    return _ack_scenario(env, "reject-unknown", lambda ch, tag: ch.basic_reject(tag + 7))


def scenario_ack_after_auto_ack_get(env: Env):
    queue = env.queue("ack-auto")

    def run(channel):
        channel.queue_declare(queue)
        channel.basic_publish("", queue, body=b"x")
        ping(channel)
        method, _props, _body = channel.basic_get(queue, auto_ack=True)
        channel.basic_ack(method.delivery_tag)
        ping(channel)

    return _single_error(env, run)


# -- exclusivity ------------------------------------------------------------------------------


def scenario_exclusive_queue_from_another_connection(env: Env):
    queue = env.queue("exclusive")
    owner = env.connect().channel()
    owner.queue_declare(queue, exclusive=True)
    return {
        "declare": _single_error(env, lambda ch: ch.queue_declare(queue, exclusive=True)),
        "declare-non-exclusive": _single_error(env, lambda ch: ch.queue_declare(queue)),
        "passive": _single_error(env, lambda ch: ch.queue_declare(queue, passive=True)),
        "get": _single_error(env, lambda ch: ch.basic_get(queue)),
        "consume": _single_error(env, lambda ch: ch.basic_consume(queue, lambda *a: None)),
        "delete": _single_error(env, lambda ch: ch.queue_delete(queue)),
        "purge": _single_error(env, lambda ch: ch.queue_purge(queue)),
    }


def scenario_exclusive_consume_when_queue_has_consumer(env: Env):
    queue = env.queue("excl-consume")
    channel = env.channel()
    channel.queue_declare(queue)
    channel.basic_consume(queue, lambda *a: None)
    return _single_error(env, lambda ch: ch.basic_consume(queue, lambda *a: None, exclusive=True))


def scenario_consume_when_queue_has_exclusive_consumer(env: Env):
    queue = env.queue("excl-consume-2")
    channel = env.channel()
    channel.queue_declare(queue)
    channel.basic_consume(queue, lambda *a: None, exclusive=True)
    return _single_error(env, lambda ch: ch.basic_consume(queue, lambda *a: None))


def scenario_consume_with_duplicate_tag(env: Env):
    queue = env.queue("dup-tag")

    def run(channel):
        channel.queue_declare(queue)
        channel.basic_consume(queue, lambda *a: None, consumer_tag="dup")
        _raw(channel, pika.spec.Basic.Consume(queue=queue, consumer_tag="dup"))

    return _single_error(env, run)


def scenario_cancel_unknown_consumer_tag(env: Env):
    return _single_error(
        env, lambda ch: _raw(ch, pika.spec.Basic.Cancel(consumer_tag="never-" + env.suffix))
    )


# -- tx / confirm / qos / recover --------------------------------------------------------------


def scenario_tx_commit_without_select(env: Env):
    return _single_error(env, lambda ch: ch.tx_commit())


def scenario_tx_rollback_without_select(env: Env):
    return _single_error(env, lambda ch: ch.tx_rollback())


def scenario_confirm_select_after_tx_select(env: Env):
    def run(channel):
        channel.tx_select()
        _raw(channel, pika.spec.Confirm.Select())

    return _single_error(env, run)


def scenario_tx_select_after_confirm_select(env: Env):
    def run(channel):
        channel.confirm_delivery()
        channel.tx_select()

    return _single_error(env, run)


def scenario_qos_with_prefetch_size(env: Env):
    return _single_error(env, lambda ch: ch.basic_qos(prefetch_size=1, prefetch_count=1))


def scenario_recover_without_requeue(env: Env):
    return _single_error(env, lambda ch: ch.basic_recover(requeue=False))


# -- connection -------------------------------------------------------------------------------


def scenario_unknown_vhost(env: Env):
    return connect_outcome(env, virtual_host="no-such-vhost-" + env.suffix)


def scenario_wrong_password(env: Env):
    return connect_outcome(env, credentials=pika.PlainCredentials("guest", "wrong"))


def scenario_unknown_user(env: Env):
    return connect_outcome(env, credentials=pika.PlainCredentials("nobody-" + env.suffix, "x"))


# -- tests ------------------------------------------------------------------------------------

SCENARIOS = {name: fn for name, fn in globals().items() if name.startswith("scenario_")}


def _check(name: str, router_url: str, rabbitmq_url: str) -> None:
    assert_same(SCENARIOS[f"scenario_{name}"], router_url, rabbitmq_url)


def test_passive_declare_of_a_missing_queue_closes_the_channel_with_404(router_url, rabbitmq_url):
    _check("passive_declare_missing_queue", router_url, rabbitmq_url)


def test_passive_declare_of_a_missing_exchange_closes_the_channel_with_404(
    router_url, rabbitmq_url
):
    _check("passive_declare_missing_exchange", router_url, rabbitmq_url)


def test_redeclaring_a_queue_with_different_durable_fails_with_406(router_url, rabbitmq_url):
    _check("redeclare_queue_with_different_durable", router_url, rabbitmq_url)


def test_redeclaring_a_queue_with_different_message_ttl_fails_with_406(router_url, rabbitmq_url):
    _check("redeclare_queue_with_different_ttl", router_url, rabbitmq_url)


def test_redeclaring_a_queue_without_its_message_ttl_fails_with_406(router_url, rabbitmq_url):
    _check("redeclare_queue_without_its_ttl", router_url, rabbitmq_url)


def test_redeclaring_a_queue_with_different_max_priority_fails_with_406(router_url, rabbitmq_url):
    _check("redeclare_queue_with_different_max_priority", router_url, rabbitmq_url)


def test_redeclaring_a_queue_identically_succeeds(router_url, rabbitmq_url):
    _check("redeclare_queue_identically_is_ok", router_url, rabbitmq_url)


def test_declaring_a_queue_with_a_non_integer_max_priority_fails(router_url, rabbitmq_url):
    _check("declare_queue_with_invalid_argument_value", router_url, rabbitmq_url)


def test_declaring_a_queue_with_a_negative_message_ttl_fails(router_url, rabbitmq_url):
    _check("declare_queue_with_negative_ttl", router_url, rabbitmq_url)


def test_declaring_a_queue_with_zero_expires_fails(router_url, rabbitmq_url):
    _check("declare_queue_with_zero_expires", router_url, rabbitmq_url)


def test_declaring_a_queue_with_an_unknown_overflow_mode_fails(router_url, rabbitmq_url):
    _check("declare_queue_with_unknown_overflow", router_url, rabbitmq_url)


def test_declaring_an_exchange_with_the_amq_prefix_is_refused(router_url, rabbitmq_url):
    _check("declare_reserved_exchange_name", router_url, rabbitmq_url)


def test_redeclaring_amq_direct_as_non_durable_fails_with_406(router_url, rabbitmq_url):
    _check("redeclare_builtin_amq_direct", router_url, rabbitmq_url)


def test_redeclaring_amq_direct_with_its_own_properties_behaves_like_rabbitmq(
    router_url, rabbitmq_url
):
    _check("redeclare_builtin_amq_direct_equivalently", router_url, rabbitmq_url)


def test_passively_declaring_amq_topic_succeeds(router_url, rabbitmq_url):
    _check("passive_declare_builtin_amq_topic", router_url, rabbitmq_url)


def test_declaring_a_queue_with_the_amq_prefix_is_refused(router_url, rabbitmq_url):
    _check("declare_reserved_queue_name", router_url, rabbitmq_url)


def test_redeclaring_an_exchange_with_another_type_fails_with_406(router_url, rabbitmq_url):
    _check("exchange_type_mismatch", router_url, rabbitmq_url)


def test_declaring_an_unknown_exchange_type_closes_the_connection_with_503(
    router_url, rabbitmq_url
):
    _check("unknown_exchange_type", router_url, rabbitmq_url)


def test_deleting_a_missing_queue_succeeds_with_zero_messages(router_url, rabbitmq_url):
    _check("delete_missing_queue", router_url, rabbitmq_url)


def test_deleting_a_missing_exchange_succeeds(router_url, rabbitmq_url):
    _check("delete_missing_exchange", router_url, rabbitmq_url)


def test_deleting_a_builtin_exchange_is_refused(router_url, rabbitmq_url):
    _check("delete_builtin_exchange", router_url, rabbitmq_url)


def test_deleting_a_queue_if_unused_while_it_has_a_consumer_fails_with_406(
    router_url, rabbitmq_url
):
    _check("delete_queue_if_unused_with_consumer", router_url, rabbitmq_url)


def test_deleting_a_queue_if_empty_while_it_has_messages_fails_with_406(router_url, rabbitmq_url):
    _check("delete_queue_if_empty_with_messages", router_url, rabbitmq_url)


def test_deleting_an_exchange_if_unused_while_it_has_bindings_fails_with_406(
    router_url, rabbitmq_url
):
    _check("delete_exchange_if_unused_with_binding", router_url, rabbitmq_url)


def test_publishing_to_a_missing_exchange_closes_the_channel_with_404(router_url, rabbitmq_url):
    _check("publish_to_missing_exchange", router_url, rabbitmq_url)


def test_binding_a_missing_queue_fails_with_404(router_url, rabbitmq_url):
    _check("bind_missing_queue", router_url, rabbitmq_url)


def test_binding_to_a_missing_exchange_fails_with_404(router_url, rabbitmq_url):
    _check("bind_to_missing_exchange", router_url, rabbitmq_url)


def test_binding_a_missing_queue_to_a_missing_exchange_names_the_right_one(
    router_url, rabbitmq_url
):
    _check("bind_missing_queue_to_missing_exchange", router_url, rabbitmq_url)


def test_binding_a_queue_to_the_default_exchange_is_refused(router_url, rabbitmq_url):
    _check("bind_queue_to_default_exchange", router_url, rabbitmq_url)


def test_exchange_bind_from_a_missing_source_fails_with_404(router_url, rabbitmq_url):
    _check("exchange_bind_missing_source", router_url, rabbitmq_url)


def test_headers_binding_with_an_invalid_x_match_fails(router_url, rabbitmq_url):
    _check("headers_bind_with_invalid_x_match", router_url, rabbitmq_url)


def test_basic_get_from_a_missing_queue_fails_with_404(router_url, rabbitmq_url):
    _check("get_from_missing_queue", router_url, rabbitmq_url)


def test_consuming_from_a_missing_queue_fails_with_404(router_url, rabbitmq_url):
    _check("consume_from_missing_queue", router_url, rabbitmq_url)


def test_acking_an_unknown_delivery_tag_closes_the_channel_with_406(router_url, rabbitmq_url):
    _check("ack_unknown_delivery_tag", router_url, rabbitmq_url)


def test_acking_delivery_tag_zero_closes_the_channel_with_406(router_url, rabbitmq_url):
    _check("ack_delivery_tag_zero", router_url, rabbitmq_url)


def test_acking_delivery_tag_zero_with_multiple_acks_everything(router_url, rabbitmq_url):
    _check("ack_delivery_tag_zero_multiple", router_url, rabbitmq_url)


def test_acking_the_same_delivery_twice_closes_the_channel_with_406(router_url, rabbitmq_url):
    _check("double_ack", router_url, rabbitmq_url)


def test_nacking_an_unknown_delivery_tag_closes_the_channel_with_406(router_url, rabbitmq_url):
    _check("nack_unknown_delivery_tag", router_url, rabbitmq_url)


def test_rejecting_an_unknown_delivery_tag_closes_the_channel_with_406(router_url, rabbitmq_url):
    _check("reject_unknown_delivery_tag", router_url, rabbitmq_url)


def test_acking_an_auto_acked_get_closes_the_channel_with_406(router_url, rabbitmq_url):
    _check("ack_after_auto_ack_get", router_url, rabbitmq_url)


def test_another_connection_cannot_use_an_exclusive_queue(router_url, rabbitmq_url):
    _check("exclusive_queue_from_another_connection", router_url, rabbitmq_url)


def test_exclusive_consume_on_a_queue_with_a_consumer_is_refused(router_url, rabbitmq_url):
    _check("exclusive_consume_when_queue_has_consumer", router_url, rabbitmq_url)


def test_consume_on_a_queue_with_an_exclusive_consumer_is_refused(router_url, rabbitmq_url):
    _check("consume_when_queue_has_exclusive_consumer", router_url, rabbitmq_url)


def test_consuming_with_a_duplicate_consumer_tag_is_not_allowed(router_url, rabbitmq_url):
    _check("consume_with_duplicate_tag", router_url, rabbitmq_url)


def test_cancelling_an_unknown_consumer_tag_is_ok(router_url, rabbitmq_url):
    _check("cancel_unknown_consumer_tag", router_url, rabbitmq_url)


def test_tx_commit_without_tx_select_fails_with_406(router_url, rabbitmq_url):
    _check("tx_commit_without_select", router_url, rabbitmq_url)


def test_tx_rollback_without_tx_select_fails_with_406(router_url, rabbitmq_url):
    _check("tx_rollback_without_select", router_url, rabbitmq_url)


def test_confirm_select_on_a_transactional_channel_fails_with_406(router_url, rabbitmq_url):
    _check("confirm_select_after_tx_select", router_url, rabbitmq_url)


def test_tx_select_on_a_confirm_channel_fails_with_406(router_url, rabbitmq_url):
    _check("tx_select_after_confirm_select", router_url, rabbitmq_url)


def test_qos_with_a_prefetch_size_is_not_implemented(router_url, rabbitmq_url):
    _check("qos_with_prefetch_size", router_url, rabbitmq_url)


def test_recover_without_requeue_is_not_implemented(router_url, rabbitmq_url):
    _check("recover_without_requeue", router_url, rabbitmq_url)


def test_connecting_to_an_unknown_vhost_is_refused_with_530(router_url, rabbitmq_url):
    _check("unknown_vhost", router_url, rabbitmq_url)


def test_connecting_with_a_wrong_password_is_refused_with_403(router_url, rabbitmq_url):
    _check("wrong_password", router_url, rabbitmq_url)


def test_connecting_as_an_unknown_user_is_refused_with_403(router_url, rabbitmq_url):
    _check("unknown_user", router_url, rabbitmq_url)


def test_every_error_scenario_has_a_test():
    with open(__file__) as source:
        tested = set(re.findall(r'^    _check\("(\w+)"', source.read(), re.MULTILINE))
    assert {name.removeprefix("scenario_") for name in SCENARIOS} == tested
