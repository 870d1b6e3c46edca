"""Direct reply-to (``amq.rabbitmq.reply-to``) behaves as in RabbitMQ 3.10."""

from __future__ import annotations

import time
from typing import Any

import pika
import pytest

from .harness import Env, assert_same, outcome, ping

pytestmark = pytest.mark.differential

REPLY_TO = "amq.rabbitmq.reply-to"


def scenario_a_reply_reaches_the_requesting_channel_without_a_queue(env: Env) -> Any:
    connection = env.connect()
    client = connection.channel()
    replies: list[tuple[bytes, bool, str]] = []
    client.basic_consume(
        REPLY_TO,
        lambda ch, method, props, body: replies.append(
            (body, method.redelivered, method.routing_key.startswith(REPLY_TO + "."))
        ),
        auto_ack=True,
    )
    server = env.connect().channel()
    requests = env.queue("rpc")
    server.queue_declare(requests)
    client.basic_publish("", requests, b"ping", pika.BasicProperties(reply_to=REPLY_TO))
    ping(client)
    _method, props, body = server.basic_get(requests, auto_ack=True)
    rewritten = props.reply_to.startswith(REPLY_TO + ".") and props.reply_to != REPLY_TO + "."
    server.basic_publish("", props.reply_to, b"pong")
    deadline = time.monotonic() + 5
    while not replies and time.monotonic() < deadline:
        connection.process_data_events(time_limit=0.05)
    return {"request": body, "reply_to_rewritten": rewritten, "replies": replies}


def scenario_a_reply_consumer_must_not_acknowledge(env: Env) -> Any:
    channel = env.channel()
    return outcome(lambda: channel.basic_consume(REPLY_TO, lambda *args: None, auto_ack=False))


def scenario_publishing_with_the_pseudo_queue_as_reply_to_needs_a_reply_consumer(env: Env) -> Any:
    channel = env.channel()
    requests = env.queue("rpc-nobody")
    channel.queue_declare(requests)

    def publish() -> None:
        channel.basic_publish("", requests, b"x", pika.BasicProperties(reply_to=REPLY_TO))
        ping(channel)

    return outcome(publish)


@pytest.mark.parametrize(
    "scenario",
    [
        scenario_a_reply_reaches_the_requesting_channel_without_a_queue,
        scenario_a_reply_consumer_must_not_acknowledge,
        scenario_publishing_with_the_pseudo_queue_as_reply_to_needs_a_reply_consumer,
    ],
    ids=lambda scenario: scenario.__name__.removeprefix("scenario_"),
)
def test_same_as_rabbitmq(scenario, router_url, rabbitmq_url):  # type: ignore[no-untyped-def]
    assert_same(scenario, router_url, rabbitmq_url)
