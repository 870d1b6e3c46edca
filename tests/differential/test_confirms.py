"""Publisher confirms and transactions, compared with RabbitMQ.

Confirms are observed on pika's underlying channel, so nothing waits per publish; ``basic.ack`` /
``basic.nack`` with ``multiple`` are expanded to one event per delivery tag, so the comparison
covers which tags were confirmed, how, and in which order relative to returns, but not batching.
"""

from __future__ import annotations

import pika
import pytest

from .harness import Env, assert_same, drain, get_all, outcome, ping, plain

pytestmark = pytest.mark.differential


class Confirms:
    """A channel in confirm mode that records confirms (one per tag) and returns, in order."""

    def __init__(self, env: Env) -> None:
        self.connection = env.connect()
        self.channel = self.connection.channel()
        self.events: list[tuple] = []
        self.published = 0
        self.outstanding: set[int] = set()
        self.tag_of: dict[bytes, int] = {}
        self.select_ok = rpc(self.connection, self.channel, pika.spec.Confirm.Select())
        impl = self.channel._impl
        impl.add_on_return_callback(self._on_return)
        impl.callbacks.add(impl.channel_number, pika.spec.Basic.Ack, self._on_confirm, False)
        impl.callbacks.add(impl.channel_number, pika.spec.Basic.Nack, self._on_confirm, False)

    def _on_return(self, _channel, method, _properties, body) -> None:
        self.events.append(("return", method.reply_code, method.reply_text, body))

    def _on_confirm(self, frame) -> None:
        method = frame.method
        kind = method.NAME.split(".")[1].lower()
        if method.multiple:
            tags = sorted(tag for tag in self.outstanding if tag <= method.delivery_tag)
        else:
            tags = [method.delivery_tag]
        for tag in tags:
            if tag not in self.outstanding:
                self.events.append(("unexpected " + kind, tag))
            self.outstanding.discard(tag)
            self.events.append((kind, tag))

    def publish(self, exchange: str, key: str, body: bytes, **kwargs) -> None:
        self.published += 1
        self.outstanding.add(self.published)
        self.tag_of[body] = self.published
        self.channel.basic_publish(exchange, key, body=body, **kwargs)

    def settle(self) -> dict:
        """Which tags were acked / nacked (each once?), and was each return sent before its ack."""
        drain(self.connection)
        confirms = [event for event in self.events if event[0] != "return"]
        returns = []
        for position, event in enumerate(self.events):
            if event[0] == "return":
                tag = self.tag_of[event[3]]
                confirmed_before = any(e[1:] == (tag,) for e in self.events[:position])
                returns.append((*event, "tag", tag, "confirmed before return", confirmed_before))
        return {
            "acked": sorted(tag for kind, tag in confirms if kind == "ack"),
            "nacked": sorted(tag for kind, tag in confirms if kind == "nack"),
            "other": [event for event in confirms if event[0] not in ("ack", "nack")],
            "unconfirmed": sorted(self.outstanding),
            "returns": returns,
        }


def rpc(connection, channel, method, reply=pika.spec.Confirm.SelectOk) -> list:
    """Send ``method`` on pika's underlying channel and wait for its synchronous reply."""
    replies: list = []
    impl = channel._impl
    impl._rpc(method, lambda frame: replies.append(plain(frame)), [reply])
    while not replies and channel.is_open:
        connection.process_data_events(time_limit=0.05)
    return replies


def scenario_every_publish_is_acked_with_consecutive_tags(env: Env):
    confirms = Confirms(env)
    queue = env.queue("confirm")
    confirms.channel.queue_declare(queue)
    for index in range(1, 8):
        confirms.publish("", queue, f"m{index}".encode())
    return {"select": confirms.select_ok, **confirms.settle()}


def scenario_unroutable_messages_are_acked_and_mandatory_ones_returned_first(env: Env):
    confirms = Confirms(env)
    exchange = env.exchange("confirm-unroutable")
    queue = env.queue("confirm-unroutable")
    confirms.channel.exchange_declare(exchange, "direct")
    confirms.channel.queue_declare(queue)
    confirms.channel.queue_bind(queue, exchange, routing_key="routed")
    confirms.publish(exchange, "routed", b"routed", mandatory=True)
    confirms.publish(exchange, "nowhere", b"dropped")
    confirms.publish(exchange, "nowhere", b"returned", mandatory=True)
    confirms.publish(exchange, "routed", b"routed-2")
    return confirms.settle()


def scenario_reject_publish_overflow_nacks(env: Env):
    confirms = Confirms(env)
    queue = env.queue("confirm-overflow")
    arguments = {"x-max-length": 2, "x-overflow": "reject-publish"}
    confirms.channel.queue_declare(queue, arguments=arguments)
    for index in range(1, 6):
        confirms.publish("", queue, f"m{index}".encode())
    events = confirms.settle()
    return {"events": events, "queue": [body for body, *_ in get_all(confirms.channel, queue)]}


def scenario_confirm_select_twice_is_ok_and_tags_continue(env: Env):
    confirms = Confirms(env)
    queue = env.queue("confirm-twice")
    confirms.channel.queue_declare(queue)
    confirms.publish("", queue, b"a")
    again = rpc(confirms.connection, confirms.channel, pika.spec.Confirm.Select())
    confirms.publish("", queue, b"b")
    return {"again": again, "events": confirms.settle()}


def scenario_consumer_tags_and_publisher_tags_are_independent(env: Env):
    confirms = Confirms(env)
    queue = env.queue("confirm-get")
    confirms.channel.queue_declare(queue)
    confirms.publish("", queue, b"a")
    confirms.publish("", queue, b"b")
    ping(confirms.channel)
    got = get_all(confirms.channel, queue)
    confirms.publish("", queue, b"c")
    return {"got": got, "events": confirms.settle()}


def scenario_publish_to_missing_exchange_in_confirm_mode(env: Env):
    confirms = Confirms(env)
    missing = env.exchange("confirm-missing")

    def publish_and_ping():
        confirms.publish(missing, "k", b"lost")
        ping(confirms.channel)

    return outcome(publish_and_ping)


def test_every_confirmed_publish_is_acked_once_with_consecutive_tags(router_url, rabbitmq_url):
    assert_same(scenario_every_publish_is_acked_with_consecutive_tags, router_url, rabbitmq_url)


def test_unroutable_publishes_are_acked_and_mandatory_ones_returned_before_the_ack(
    router_url, rabbitmq_url
):
    assert_same(
        scenario_unroutable_messages_are_acked_and_mandatory_ones_returned_first,
        router_url,
        rabbitmq_url,
    )


def test_reject_publish_overflow_nacks_the_publishes_that_do_not_fit(router_url, rabbitmq_url):
    assert_same(scenario_reject_publish_overflow_nacks, router_url, rabbitmq_url)


def test_confirm_select_twice_is_accepted_and_tags_keep_counting(router_url, rabbitmq_url):
    assert_same(scenario_confirm_select_twice_is_ok_and_tags_continue, router_url, rabbitmq_url)


def test_publisher_tags_do_not_share_a_counter_with_delivery_tags(router_url, rabbitmq_url):
    assert_same(scenario_consumer_tags_and_publisher_tags_are_independent, router_url, rabbitmq_url)


def test_publishing_to_a_missing_exchange_in_confirm_mode_closes_the_channel(
    router_url, rabbitmq_url
):
    assert_same(scenario_publish_to_missing_exchange_in_confirm_mode, router_url, rabbitmq_url)


# -- transactions -----------------------------------------------------------------------------


def scenario_tx_publishes_are_visible_only_after_commit(env: Env):
    channel = env.channel()
    queue = env.queue("tx")
    channel.queue_declare(queue)
    select = outcome(channel.tx_select)
    channel.basic_publish("", queue, body=b"committed")
    before = get_all(env.channel(), queue)
    commit = outcome(channel.tx_commit)
    channel.basic_publish("", queue, body=b"rolled-back")
    rollback = outcome(channel.tx_rollback)
    after = [body for body, *_ in get_all(env.channel(), queue, auto_ack=True)]
    return {"select": select, "before": before, "commit": commit, "rb": rollback, "after": after}


def scenario_tx_acks_take_effect_only_after_commit(env: Env):
    connection = env.connect()
    channel = connection.channel()
    queue = env.queue("tx-ack")
    channel.queue_declare(queue)
    for body in (b"a", b"b", b"c"):
        channel.basic_publish("", queue, body=body)
    ping(channel)
    channel.tx_select()
    got = get_all(channel, queue)
    channel.basic_ack(got[0][3])
    channel.basic_ack(got[1][3])
    channel.tx_rollback()
    channel.basic_ack(got[2][3])
    channel.tx_commit()
    channel.close()
    return [body for body, *_ in get_all(connection.channel(), queue)]


def test_transactional_publishes_are_delivered_only_on_commit(router_url, rabbitmq_url):
    assert_same(scenario_tx_publishes_are_visible_only_after_commit, router_url, rabbitmq_url)


def test_transactional_acks_are_discarded_on_rollback(router_url, rabbitmq_url):
    assert_same(scenario_tx_acks_take_effect_only_after_commit, router_url, rabbitmq_url)
