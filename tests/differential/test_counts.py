"""Counts the broker reports, compared with RabbitMQ: declare-ok, purge-ok, delete-ok, get-ok."""

from __future__ import annotations

import pytest

from .harness import Env, assert_same, drain, get_all, outcome, ping

pytestmark = pytest.mark.differential


def _declare_counts(channel, queue: str):
    ok = channel.queue_declare(queue, passive=True).method
    return (ok.message_count, ok.consumer_count)


def scenario_declare_ok_counts_ready_messages_and_consumers(env: Env):
    connection = env.connect()
    channel = connection.channel()
    queue = env.queue("counts")
    fresh = channel.queue_declare(queue).method
    counts = {"fresh": (fresh.queue == queue, fresh.message_count, fresh.consumer_count)}
    for index in range(5):
        channel.basic_publish("", queue, body=f"m{index}".encode())
    ping(channel)
    counts["five-ready"] = _declare_counts(channel, queue)
    getter = connection.channel()
    getter.basic_get(queue)
    getter.basic_get(queue)
    counts["two-unacked"] = _declare_counts(channel, queue)
    redeclared = channel.queue_declare(queue).method
    counts["non-passive-redeclare"] = (redeclared.message_count, redeclared.consumer_count)
    consumers = connection.channel()
    consumers.basic_qos(prefetch_count=1)
    tags = [consumers.basic_consume(queue, lambda *a: None) for _ in range(2)]
    drain(connection)
    counts["two-consumers"] = _declare_counts(channel, queue)
    consumers.basic_cancel(tags[0])
    counts["one-cancelled"] = _declare_counts(channel, queue)
    consumers.close()
    counts["consumer-channel-closed"] = _declare_counts(channel, queue)
    getter.close()
    counts["getter-closed"] = _declare_counts(channel, queue)
    return counts


def scenario_purge_counts_only_ready_messages(env: Env):
    connection = env.connect()
    channel = connection.channel()
    queue = env.queue("purge")
    channel.queue_declare(queue)
    for index in range(5):
        channel.basic_publish("", queue, body=f"m{index}".encode())
    ping(channel)
    holder = connection.channel()
    holder.basic_get(queue)
    holder.basic_get(queue)
    purged = channel.queue_purge(queue).method.message_count
    purged_again = channel.queue_purge(queue).method.message_count
    holder.close()
    after = get_all(channel, queue, auto_ack=True)
    return {"purged": purged, "again": purged_again, "requeued-after-purge": after}


def scenario_delete_ok_counts_ready_messages(env: Env):
    connection = env.connect()
    channel = connection.channel()
    queue = env.queue("delete-count")
    channel.queue_declare(queue)
    for index in range(4):
        channel.basic_publish("", queue, body=f"m{index}".encode())
    ping(channel)
    holder = connection.channel()
    holder.basic_get(queue)
    deleted = channel.queue_delete(queue).method.message_count
    ack_after_delete = outcome(lambda: (holder.basic_ack(1), ping(holder)))
    gone = outcome(channel.queue_declare, queue, passive=True)
    return {"deleted": deleted, "ack-after-delete": ack_after_delete, "passive": gone}


def scenario_get_ok_message_count_and_get_empty(env: Env):
    channel = env.channel()
    queue = env.queue("get-count")
    channel.queue_declare(queue)
    empty = channel.basic_get(queue)
    for index in range(3):
        channel.basic_publish("", queue, body=f"m{index}".encode())
    ping(channel)
    return {"empty": empty == (None, None, None), "gets": get_all(channel, queue)}


def scenario_server_named_queue(env: Env):
    channel = env.channel()
    declared = channel.queue_declare("", exclusive=True).method
    env.forget_queue(declared.queue)
    channel.basic_publish("", declared.queue, body=b"x")
    ping(channel)
    passive = channel.queue_declare(declared.queue, passive=True).method
    return {
        "prefix": declared.queue[:8],
        "counts": (declared.message_count, declared.consumer_count),
        "passive-counts": (passive.message_count, passive.consumer_count),
    }


def scenario_auto_delete_queue_goes_with_its_last_consumer(env: Env):
    connection = env.connect()
    channel = connection.channel()
    queue = env.queue("auto-delete")
    channel.queue_declare(queue, auto_delete=True)
    before_consume = outcome(lambda: _declare_counts(channel, queue))
    tags = [channel.basic_consume(queue, lambda *a: None) for _ in range(2)]
    channel.basic_cancel(tags[0])
    one_left = outcome(lambda: _declare_counts(channel, queue))
    channel.basic_cancel(tags[1])
    gone = outcome(lambda: _declare_counts(connection.channel(), queue))
    return {"before": before_consume, "one-left": one_left, "after-last-cancel": gone}


def scenario_max_length_drops_from_the_head(env: Env):
    channel = env.channel()
    queue = env.queue("max-length")
    channel.queue_declare(queue, arguments={"x-max-length": 2})
    for index in range(1, 6):
        channel.basic_publish("", queue, body=f"m{index}".encode())
    ping(channel)
    return {"count": _declare_counts(channel, queue), "bodies": get_all(channel, queue)}


def test_declare_ok_reports_ready_messages_and_active_consumers(router_url, rabbitmq_url):
    assert_same(scenario_declare_ok_counts_ready_messages_and_consumers, router_url, rabbitmq_url)


def test_purge_ok_counts_ready_messages_and_leaves_unacked_ones(router_url, rabbitmq_url):
    assert_same(scenario_purge_counts_only_ready_messages, router_url, rabbitmq_url)


def test_delete_ok_counts_ready_messages(router_url, rabbitmq_url):
    assert_same(scenario_delete_ok_counts_ready_messages, router_url, rabbitmq_url)


def test_get_ok_reports_messages_left_and_get_empty_when_none(router_url, rabbitmq_url):
    assert_same(scenario_get_ok_message_count_and_get_empty, router_url, rabbitmq_url)


def test_server_named_queue_starts_with_amq_gen(router_url, rabbitmq_url):
    assert_same(scenario_server_named_queue, router_url, rabbitmq_url)


def test_auto_delete_queue_is_deleted_when_its_last_consumer_cancels(router_url, rabbitmq_url):
    assert_same(scenario_auto_delete_queue_goes_with_its_last_consumer, router_url, rabbitmq_url)


def test_max_length_drops_messages_from_the_head(router_url, rabbitmq_url):
    assert_same(scenario_max_length_drops_from_the_head, router_url, rabbitmq_url)
