"""Acknowledgement, requeue order, redelivered flags and prefetch, compared with RabbitMQ."""

from __future__ import annotations

import pytest

from .harness import Env, assert_same, drain, get_all, outcome, ping

pytestmark = pytest.mark.differential

BODIES = [b"m1", b"m2", b"m3", b"m4", b"m5"]


def _queue_with(env: Env, base: str, bodies=BODIES):
    connection = env.connect()
    channel = connection.channel()
    queue = env.queue(base)
    channel.queue_declare(queue)
    for body in bodies:
        channel.basic_publish("", queue, body=body)
    ping(channel)
    return connection, channel, queue


def _brief(got):
    """(body, redelivered, delivery_tag) for each basic.get-ok."""
    return [(body, redelivered, tag) for body, redelivered, _rk, tag, _count in got]


def scenario_nack_requeue_restores_original_positions(env: Env):
    connection, channel, queue = _queue_with(env, "nack-order")
    first = get_all(channel, queue)
    channel.basic_nack(first[1][3], requeue=True)  # m2
    channel.basic_nack(first[3][3], requeue=True)  # m4
    second = get_all(channel, queue)
    channel.close()  # requeues m1, m3, m5 and the redelivered m2, m4
    third = get_all(connection.channel(), queue)
    return {"first": first, "after-nack": second, "after-close": third}


def scenario_nack_multiple_requeues_everything_up_to_the_tag(env: Env):
    _connection, channel, queue = _queue_with(env, "nack-multiple")
    first = get_all(channel, queue)
    channel.basic_nack(first[2][3], multiple=True, requeue=True)  # m1..m3
    return {"first": _brief(first), "after": get_all(channel, queue)}


def scenario_reject_requeue_true_and_false(env: Env):
    _connection, channel, queue = _queue_with(env, "reject")
    first = get_all(channel, queue)
    channel.basic_reject(first[0][3], requeue=False)  # m1 dropped
    channel.basic_reject(first[2][3], requeue=True)  # m3 back at its position
    channel.basic_ack(first[4][3])  # m5 done
    after = get_all(channel, queue)
    return {"first": _brief(first), "after": after}


def scenario_recover_requeue_true_redelivers_unacked(env: Env):
    _connection, channel, queue = _queue_with(env, "recover")
    first = get_all(channel, queue)
    channel.basic_ack(first[1][3])  # m2 done
    recovered = outcome(channel.basic_recover, requeue=True)
    return {"first": _brief(first), "recover": recovered, "after": get_all(channel, queue)}


def scenario_channel_close_requeues_unacked_consumer_deliveries(env: Env):
    connection, channel, queue = _queue_with(env, "close-requeue")
    received = []
    channel.basic_qos(prefetch_count=10)
    channel.basic_consume(
        queue,
        lambda _ch, method, _props, body: received.append(
            (body, method.redelivered, method.delivery_tag)
        ),
    )
    drain(connection)
    channel.basic_ack(3)  # m3
    channel.close()
    return {"received": received, "after-close": get_all(connection.channel(), queue)}


def scenario_connection_close_requeues_unacked(env: Env):
    connection, channel, queue = _queue_with(env, "conn-close-requeue")
    first = get_all(channel, queue)
    channel.basic_ack(first[0][3])
    connection.close()
    return {"first": _brief(first), "after-close": get_all(env.channel(), queue)}


def scenario_redelivered_message_to_consumer_after_nack(env: Env):
    connection, channel, queue = _queue_with(env, "nack-consumer", [b"only"])
    received = []

    def on_message(ch, method, _props, body):
        received.append((body, method.redelivered, method.delivery_tag))
        if len(received) < 3:
            ch.basic_nack(method.delivery_tag, requeue=True)
        else:
            ch.basic_ack(method.delivery_tag)

    channel.basic_consume(queue, on_message)
    drain(connection)
    return received


def test_nack_requeue_puts_messages_back_at_their_original_positions(router_url, rabbitmq_url):
    assert_same(scenario_nack_requeue_restores_original_positions, router_url, rabbitmq_url)


def test_nack_multiple_requeues_every_unacked_message_up_to_the_tag(router_url, rabbitmq_url):
    assert_same(scenario_nack_multiple_requeues_everything_up_to_the_tag, router_url, rabbitmq_url)


def test_reject_drops_or_requeues_at_original_position(router_url, rabbitmq_url):
    assert_same(scenario_reject_requeue_true_and_false, router_url, rabbitmq_url)


def test_recover_with_requeue_redelivers_all_unacked_messages(router_url, rabbitmq_url):
    assert_same(scenario_recover_requeue_true_redelivers_unacked, router_url, rabbitmq_url)


def test_closing_a_channel_requeues_its_unacked_deliveries(router_url, rabbitmq_url):
    assert_same(
        scenario_channel_close_requeues_unacked_consumer_deliveries, router_url, rabbitmq_url
    )


def test_closing_a_connection_requeues_its_unacked_messages(router_url, rabbitmq_url):
    assert_same(scenario_connection_close_requeues_unacked, router_url, rabbitmq_url)


def test_nacked_message_comes_back_to_the_consumer_marked_redelivered(router_url, rabbitmq_url):
    assert_same(scenario_redelivered_message_to_consumer_after_nack, router_url, rabbitmq_url)


# -- prefetch ---------------------------------------------------------------------------------


def _two_consumers(env: Env, base: str, qos: list[tuple[int, bool]], publish_first: bool):
    """Two consumers on one channel; returns what each got before any ack, then after one ack."""
    connection = env.connect()
    channel = connection.channel()
    queue = env.queue(base)
    channel.queue_declare(queue)
    bodies = [f"m{i}".encode() for i in range(1, 11)]
    if publish_first:
        for body in bodies:
            channel.basic_publish("", queue, body=body)
    qos_replies = [
        outcome(channel.basic_qos, prefetch_count=count, global_qos=is_global)
        for count, is_global in qos
    ]
    got: dict[str, list] = {"c1": [], "c2": []}
    tags: dict[str, list[int]] = {"c1": [], "c2": []}
    for label in ("c1", "c2"):

        def on_message(_ch, method, _props, body, label=label):
            got[label].append((body, method.delivery_tag))
            tags[label].append(method.delivery_tag)

        channel.basic_consume(queue, on_message)
    if not publish_first:
        for body in bodies:
            channel.basic_publish("", queue, body=body)
    drain(connection)
    before = {label: list(items) for label, items in got.items()}
    # Ack c1's first delivery: one slot frees up (per consumer or per channel).
    if tags["c1"]:
        channel.basic_ack(tags["c1"][0])
    drain(connection)
    after = {label: items[len(before[label]) :] for label, items in got.items()}
    return {"qos": qos_replies, "before-ack": before, "after-one-ack": after}


def scenario_per_consumer_prefetch_published_first(env: Env):
    return _two_consumers(env, "qos-consumer", [(2, False)], publish_first=True)


def scenario_per_consumer_prefetch_published_after(env: Env):
    return _two_consumers(env, "qos-consumer-late", [(2, False)], publish_first=False)


def scenario_per_channel_prefetch_published_first(env: Env):
    return _two_consumers(env, "qos-channel", [(3, True)], publish_first=True)


def scenario_per_channel_prefetch_published_after(env: Env):
    return _two_consumers(env, "qos-channel-late", [(3, True)], publish_first=False)


def scenario_global_then_per_consumer_prefetch(env: Env):
    return _two_consumers(env, "qos-both", [(3, True), (2, False)], publish_first=True)


def scenario_per_consumer_then_global_prefetch(env: Env):
    return _two_consumers(env, "qos-both-rev", [(2, False), (3, True)], publish_first=True)


def test_per_consumer_prefetch_limits_each_consumer_separately(router_url, rabbitmq_url):
    assert_same(scenario_per_consumer_prefetch_published_first, router_url, rabbitmq_url)


def test_per_consumer_prefetch_round_robins_messages_published_later(router_url, rabbitmq_url):
    assert_same(scenario_per_consumer_prefetch_published_after, router_url, rabbitmq_url)


def test_global_prefetch_limits_the_whole_channel(router_url, rabbitmq_url):
    assert_same(scenario_per_channel_prefetch_published_first, router_url, rabbitmq_url)


def test_global_prefetch_shares_the_channel_limit_for_messages_published_later(
    router_url, rabbitmq_url
):
    assert_same(scenario_per_channel_prefetch_published_after, router_url, rabbitmq_url)


def test_per_consumer_prefetch_set_after_global_prefetch_behaves_like_rabbitmq(
    router_url, rabbitmq_url
):
    assert_same(scenario_global_then_per_consumer_prefetch, router_url, rabbitmq_url)


def test_global_prefetch_set_after_per_consumer_prefetch_caps_the_channel(router_url, rabbitmq_url):
    assert_same(scenario_per_consumer_then_global_prefetch, router_url, rabbitmq_url)
