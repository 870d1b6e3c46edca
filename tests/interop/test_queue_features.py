"""Queue features (x-arguments) seen by real clients over TCP: retries, TTLs, limits, delays, leases.

Mostly pika's BlockingConnection; one aio-pika and one kombu scenario. Where RabbitMQ 3.10 has the
feature, the expectations follow it (reply codes, x-death layout, TTL 0, overflow confirms, single
active consumer); router's own features (x-retry-backoff, x-delivery-limit on every queue,
x-delayed-message routed at publish time, consumer-timeout leases, exchange deduplication) are
checked against what router documents. The broker ticks deadlines with a real timer, so timing
assertions bound from below by the configured delay and only generously from above.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from itertools import pairwise
from typing import Any

import aio_pika
import aiormq
import pika
import pika.exceptions
import pytest
from kombu import Connection as KombuConnection
from kombu import Consumer as KombuConsumer
from kombu import Producer as KombuProducer
from kombu import Queue as KombuQueue
from pika.adapters.blocking_connection import BlockingChannel, BlockingConnection
from pika_helpers import drain, ready_count
from pika_helpers import pump_until as _pump_until

SLACK = 2.0  # generous upper bound added to delays: machines are noisy

# ---------------------------------------------------------------------------------------------
# helpers


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@contextmanager
def connect(url: str) -> Iterator[BlockingConnection]:
    connection = pika.BlockingConnection(pika.URLParameters(url))
    try:
        yield connection
    finally:
        if connection.is_open:
            connection.close()


@pytest.fixture
def connection(router_url: str) -> Iterator[BlockingConnection]:
    with connect(router_url) as conn:
        yield conn


@pytest.fixture
def channel(connection: BlockingConnection) -> BlockingChannel:
    return connection.channel()


def declare(channel: BlockingChannel, name: str, **arguments: object) -> str:
    channel.queue_declare(name, arguments=arguments or None)
    return name


def dead_letter_target(channel: BlockingChannel) -> tuple[str, str]:
    """A fanout dead-letter exchange and the queue bound to it."""
    exchange = unique("dlx")
    queue = unique("dead")
    channel.exchange_declare(exchange, "fanout")
    channel.queue_declare(queue)
    channel.queue_bind(queue, exchange)
    return exchange, queue


def pump_until(connection: BlockingConnection, condition, timeout: float = 5.0) -> None:  # type: ignore[no-untyped-def]
    """Fine-grained steps: these tests time arrivals."""
    _pump_until(connection, condition, timeout, step=0.01)


def poll_get(channel: BlockingChannel, queue: str, timeout: float) -> tuple[Any, Any, bytes] | None:
    """basic.get (auto-ack) every 10 ms until a message comes or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    while True:
        method, props, body = channel.basic_get(queue, auto_ack=True)
        if method is not None:
            return method, props, body
        if time.monotonic() > deadline:
            return None
        channel.connection.process_data_events(time_limit=0.01)


def text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


# ---------------------------------------------------------------------------------------------
# retry backoff, delivery limit and dead-lettering


def test_nacked_message_returns_after_growing_backoff_then_is_dead_lettered_at_the_delivery_limit(
    connection: BlockingConnection, channel: BlockingChannel
) -> None:
    dlx, dead = dead_letter_target(channel)
    work_exchange = unique("work-ex")
    channel.exchange_declare(work_exchange, "direct")
    queue = declare(
        channel,
        unique("retry"),
        **{
            "x-retry-backoff": {"initial": 200, "multiplier": 2, "max": 2000},
            "x-delivery-limit": 3,
            "x-dead-letter-exchange": dlx,
        },
    )
    channel.queue_bind(queue, work_exchange, "job")
    arrivals: list[float] = []
    flags: list[bool] = []
    counts: list[object] = []

    def on_message(ch, method, props, body) -> None:  # type: ignore[no-untyped-def]
        arrivals.append(time.monotonic())
        flags.append(method.redelivered)
        counts.append((props.headers or {}).get("x-delivery-count"))
        ch.basic_nack(method.delivery_tag, requeue=True)

    channel.basic_consume(queue, on_message)
    channel.basic_publish(work_exchange, "job", b"flaky", pika.BasicProperties(message_id="j-1"))
    pump_until(connection, lambda: len(arrivals) >= 4, timeout=1.4 + 3 * SLACK)

    found = poll_get(channel, dead, timeout=SLACK)
    assert found is not None, "the message never reached the dead-letter queue"
    connection.process_data_events(time_limit=0.3)
    assert len(arrivals) == 4, "delivered again after the delivery limit"

    gaps = [later - earlier for earlier, later in pairwise(arrivals)]
    for gap, delay in zip(gaps, (0.2, 0.4, 0.8), strict=True):
        assert delay <= gap < delay + SLACK, (gaps, delay)
    assert gaps[0] < gaps[1] < gaps[2], gaps
    assert flags == [False, True, True, True]
    assert counts == [None, 1, 2, 3]

    _method, props, body = found
    assert body == b"flaky"
    assert props.message_id == "j-1"
    headers = props.headers
    assert "x-delivery-count" not in headers
    (death,) = headers["x-death"]
    assert text(death["reason"]) == "delivery_limit"
    assert death["count"] == 1
    assert text(death["queue"]) == queue
    assert text(death["exchange"]) == work_exchange
    assert [text(key) for key in death["routing-keys"]] == ["job"]
    assert text(headers["x-first-death-reason"]) == "delivery_limit"
    assert text(headers["x-first-death-queue"]) == queue
    assert ready_count(channel, queue) == 0


def test_delivery_count_header_counts_redeliveries_of_a_kombu_worker_that_requeues(
    router_url: str,
) -> None:
    name = unique("kombu-limit")
    queue = KombuQueue(
        name, routing_key=name, queue_arguments={"x-delivery-limit": 2}, auto_delete=False
    )
    seen: list[tuple[object, bool]] = []

    def on_message(body: object, message) -> None:  # type: ignore[no-untyped-def]
        seen.append((message.headers.get("x-delivery-count"), message.delivery_info["redelivered"]))
        message.requeue()

    with KombuConnection(router_url, connect_timeout=5) as conn:
        conn.connect()
        channel = conn.channel()
        producer = KombuProducer(channel, serializer="json")
        with KombuConsumer(conn, [queue], callbacks=[on_message], accept=["json"]):
            producer.publish({"task": 1}, routing_key=name, declare=[queue])
            deadline = time.monotonic() + 5
            while len(seen) < 3 and time.monotonic() < deadline:
                conn.drain_events(timeout=1)
            # past the limit (2) the message is gone: no DLX, so dropped
            with pytest.raises(TimeoutError):
                conn.drain_events(timeout=0.3)
        _name, ready, _consumers = channel.queue_declare(name, passive=True)
    assert seen == [(None, False), (1, True), (2, True)]
    assert ready == 0


def test_rejected_message_is_held_back_by_the_backoff_before_it_is_visible_again(
    channel: BlockingChannel,
) -> None:
    queue = declare(channel, unique("backoff"), **{"x-retry-backoff": {"initial": 300}})
    channel.basic_publish("", queue, b"retry-me")
    method, _props, _body = channel.basic_get(queue)
    channel.basic_reject(method.delivery_tag, requeue=True)
    rejected_at = time.monotonic()
    assert channel.basic_get(queue, auto_ack=True)[0] is None  # backing off: not visible
    found = poll_get(channel, queue, timeout=0.3 + SLACK)
    assert found is not None
    assert time.monotonic() - rejected_at >= 0.3
    assert found[2] == b"retry-me"
    assert found[0].redelivered is True


def test_basic_get_shows_the_delivery_count_on_every_delivery_including_the_first(
    channel: BlockingChannel,
) -> None:
    queue = declare(channel, unique("get-count"), **{"x-delivery-limit": 5})
    channel.basic_publish("", queue, b"m")
    counts = []
    for _ in range(3):
        method, props, _body = channel.basic_get(queue)
        counts.append(props.headers["x-delivery-count"])
        channel.basic_nack(method.delivery_tag, requeue=True)
    assert counts == [0, 1, 2]


# ---------------------------------------------------------------------------------------------
# TTL


def test_short_lived_message_behind_a_long_lived_one_is_dead_lettered_on_time(
    channel: BlockingChannel,
) -> None:
    dlx, dead = dead_letter_target(channel)
    queue = declare(channel, unique("ttl"), **{"x-dead-letter-exchange": dlx})
    channel.basic_publish("", queue, b"ten-seconds", pika.BasicProperties(expiration="10000"))
    published = time.monotonic()
    channel.basic_publish("", queue, b"tenth", pika.BasicProperties(expiration="100"))

    found = poll_get(channel, dead, timeout=1.0)
    elapsed = time.monotonic() - published
    assert found is not None, "the 100 ms message was not dead-lettered within 1 s"
    assert elapsed >= 0.1
    _method, props, body = found
    assert body == b"tenth"
    assert props.expiration is None
    (death,) = props.headers["x-death"]
    assert text(death["reason"]) == "expired"
    assert text(death["original-expiration"]) == "100"

    assert ready_count(channel, queue) == 1
    assert drain(channel, queue) == [b"ten-seconds"]  # the expired one is never delivered


def test_queue_ttl_zero_expires_at_once_unless_a_consumer_can_take_the_message(
    connection: BlockingConnection, channel: BlockingChannel
) -> None:
    dlx, dead = dead_letter_target(channel)
    queue = declare(channel, unique("ttl0"), **{"x-message-ttl": 0, "x-dead-letter-exchange": dlx})
    channel.basic_publish("", queue, b"nobody-home")
    assert channel.basic_get(queue, auto_ack=True)[0] is None
    found = poll_get(channel, dead, timeout=0.5)
    assert found is not None
    assert found[2] == b"nobody-home"
    assert text(found[1].headers["x-death"][0]["reason"]) == "expired"

    received: list[bytes] = []
    channel.basic_qos(prefetch_count=1)
    channel.basic_consume(queue, lambda ch, m, p, body: received.append(body))
    channel.basic_publish("", queue, b"taken")
    channel.basic_publish("", queue, b"no-room")  # the consumer is full: expires at once
    pump_until(connection, lambda: received)
    connection.process_data_events(time_limit=0.1)
    assert received == [b"taken"]
    found = poll_get(channel, dead, timeout=0.5)
    assert found is not None
    assert found[2] == b"no-room"


# ---------------------------------------------------------------------------------------------
# priority, x-expires, length limits


def test_priority_queue_delivers_highest_first_and_fifo_within_a_level(
    channel: BlockingChannel,
) -> None:
    queue = declare(channel, unique("prio"), **{"x-max-priority": 5})
    for body, priority in [("none", None), ("p1", 1), ("p9", 9), ("p5a", 5), ("p3", 3), ("p5b", 5)]:
        channel.basic_publish("", queue, body.encode(), pika.BasicProperties(priority=priority))
    order = []
    priorities = []
    while True:
        method, props, body = channel.basic_get(queue, auto_ack=True)
        if method is None:
            break
        order.append(body.decode())
        priorities.append(props.priority)
    assert order == ["p9", "p5a", "p5b", "p3", "p1", "none"]
    assert priorities == [9, 5, 5, 3, 1, None]  # delivered unchanged, not capped


def test_unused_queue_with_x_expires_is_deleted_and_passive_declare_then_fails_404(
    connection: BlockingConnection, channel: BlockingChannel
) -> None:
    queue = declare(channel, unique("expiring"), **{"x-expires": 300})
    connection.process_data_events(time_limit=0.15)
    assert ready_count(channel, queue) == 0  # still there; the passive declare used it again
    start = time.monotonic()
    while True:
        probe = connection.channel()
        try:
            probe.queue_declare(queue, passive=True)
        except pika.exceptions.ChannelClosedByBroker as closed:
            assert closed.reply_code == 404
            assert f"no queue '{queue}'" in closed.reply_text
            break
        probe.close()
        # each passive declare resets the countdown, so wait the whole period between probes
        assert time.monotonic() - start < 1 + SLACK, "queue was not deleted"
        connection.process_data_events(time_limit=0.4)
    assert time.monotonic() - start >= 0.3
    assert channel.is_open


def test_drop_head_overflow_dead_letters_the_oldest_messages(channel: BlockingChannel) -> None:
    dlx, dead = dead_letter_target(channel)
    queue = declare(channel, unique("maxlen"), **{"x-max-length": 2, "x-dead-letter-exchange": dlx})
    channel.confirm_delivery()
    for i in range(5):
        channel.basic_publish("", queue, f"m{i}".encode())  # all confirmed: no NackError
    assert drain(channel, queue) == [b"m3", b"m4"]
    dropped = []
    while (found := poll_get(channel, dead, timeout=0.2)) is not None:
        dropped.append(found)
    assert [body for _m, _p, body in dropped] == [b"m0", b"m1", b"m2"]
    assert {text(p.headers["x-death"][0]["reason"]) for _m, p, _b in dropped} == {"maxlen"}


def test_reject_publish_overflow_nacks_the_publish_that_does_not_fit(
    channel: BlockingChannel,
) -> None:
    queue = declare(channel, unique("full"), **{"x-max-length": 1, "x-overflow": "reject-publish"})
    channel.confirm_delivery()
    channel.basic_publish("", queue, b"fits")
    with pytest.raises(pika.exceptions.NackError):
        channel.basic_publish("", queue, b"overflows")
    assert channel.is_open
    assert drain(channel, queue) == [b"fits"]
    channel.basic_publish("", queue, b"room-again")  # acked once there is room
    assert drain(channel, queue) == [b"room-again"]


def test_max_length_bytes_drops_the_oldest_until_the_bodies_fit(channel: BlockingChannel) -> None:
    queue = declare(channel, unique("maxbytes"), **{"x-max-length-bytes": 10})
    for i in range(4):
        channel.basic_publish("", queue, f"msg{i}".encode())  # 4 bytes each
    assert drain(channel, queue) == [b"msg2", b"msg3"]


def test_reject_publish_dlx_overflow_nacks_and_dead_letters_the_refused_message(
    channel: BlockingChannel,
) -> None:
    dlx, dead = dead_letter_target(channel)
    queue = declare(
        channel,
        unique("full-dlx"),
        **{"x-max-length": 1, "x-overflow": "reject-publish-dlx", "x-dead-letter-exchange": dlx},
    )
    channel.confirm_delivery()
    channel.basic_publish("", queue, b"fits")
    with pytest.raises(pika.exceptions.NackError):
        channel.basic_publish("", queue, b"refused")
    found = poll_get(channel, dead, timeout=0.5)
    assert found is not None
    assert found[2] == b"refused"
    assert text(found[1].headers["x-death"][0]["reason"]) == "maxlen"
    assert drain(channel, queue) == [b"fits"]


# ---------------------------------------------------------------------------------------------
# delayed messages


def delayed_exchange(channel: BlockingChannel, inner: str = "direct") -> str:
    name = unique("delayed")
    channel.exchange_declare(name, "x-delayed-message", arguments={"x-delayed-type": inner})
    return name


def test_delayed_message_is_invisible_until_its_x_delay_passes(channel: BlockingChannel) -> None:
    exchange = delayed_exchange(channel)
    queue = declare(channel, unique("later"))
    channel.queue_bind(queue, exchange, "k")
    channel.confirm_delivery()
    start = time.monotonic()
    channel.basic_publish(exchange, "k", b"later", pika.BasicProperties(headers={"x-delay": 400}))
    confirmed = time.monotonic() - start
    assert confirmed < 0.4, "the confirm waited for the delay"
    assert channel.basic_get(queue, auto_ack=True)[0] is None
    assert ready_count(channel, queue) == 0

    found = poll_get(channel, queue, timeout=0.4 + SLACK)
    elapsed = time.monotonic() - start
    assert found is not None
    assert found[2] == b"later"
    assert elapsed >= 0.4
    assert found[0].exchange == exchange
    assert found[0].routing_key == "k"


def test_mandatory_unroutable_publish_to_a_delayed_exchange_is_returned_at_once(
    channel: BlockingChannel,
) -> None:
    exchange = delayed_exchange(channel)
    channel.confirm_delivery()
    start = time.monotonic()
    with pytest.raises(pika.exceptions.UnroutableError) as caught:
        channel.basic_publish(
            exchange,
            "nowhere",
            b"lost",
            pika.BasicProperties(headers={"x-delay": 2000}),
            mandatory=True,
        )
    assert time.monotonic() - start < 1.0  # not after the 2 s delay
    (returned,) = caught.value.messages
    assert returned.method.reply_code == 312
    assert returned.method.reply_text == "NO_ROUTE"
    assert returned.body == b"lost"


def test_x_deliver_at_holds_a_message_until_the_given_wall_clock_time(
    channel: BlockingChannel,
) -> None:
    exchange = delayed_exchange(channel, "fanout")
    queue = declare(channel, unique("at"))
    channel.queue_bind(queue, exchange)
    due_ms = int(time.time() * 1000) + 400
    channel.basic_publish(
        exchange, "", b"on-time", pika.BasicProperties(headers={"x-deliver-at": due_ms})
    )
    assert channel.basic_get(queue, auto_ack=True)[0] is None
    found = poll_get(channel, queue, timeout=0.4 + SLACK)
    arrived_ms = time.time() * 1000
    assert found is not None
    assert found[2] == b"on-time"
    assert arrived_ms >= due_ms - 20  # wall clocks: a little leeway for clock steps


# ---------------------------------------------------------------------------------------------
# consumer timeout, single active consumer


def test_consumer_past_its_timeout_is_cancelled_and_the_message_goes_to_another_consumer(
    router_url: str, connection: BlockingConnection, channel: BlockingChannel
) -> None:
    queue = declare(channel, unique("lease"), **{"x-consumer-timeout": 300})
    received: list[tuple[bytes, bool]] = []
    cancelled: list[str] = []
    channel.add_on_cancel_callback(lambda frame: cancelled.append(frame.method.consumer_tag))
    tag = channel.basic_consume(
        queue, lambda ch, method, props, body: received.append((body, method.redelivered))
    )
    published_at = time.monotonic()  # the lease starts at delivery, after this
    channel.basic_publish("", queue, b"slow-work")
    pump_until(connection, lambda: cancelled, timeout=0.3 + SLACK)
    assert time.monotonic() - published_at >= 0.3
    assert cancelled == [tag]
    assert received == [(b"slow-work", False)]  # never acked, never sent again to this consumer

    assert channel.is_open  # the channel lives on
    assert connection.is_open
    channel.basic_publish("", queue, b"channel-still-works")

    with connect(router_url) as other:
        other_channel = other.channel()
        taken: list[tuple[bytes, bool]] = []

        def on_message(ch, method, props, body) -> None:  # type: ignore[no-untyped-def]
            taken.append((body, method.redelivered))
            ch.basic_ack(method.delivery_tag)

        other_channel.basic_consume(queue, on_message)
        pump_until(other, lambda: len(taken) >= 2)
    assert taken == [(b"slow-work", True), (b"channel-still-works", False)]


def test_consumer_timeout_given_as_a_consume_argument_cancels_the_consumer_and_requeues(
    connection: BlockingConnection, channel: BlockingChannel
) -> None:
    queue = declare(channel, unique("lease-arg"))
    cancelled: list[str] = []
    received: list[bytes] = []
    channel.add_on_cancel_callback(lambda frame: cancelled.append(frame.method.consumer_tag))
    tag = channel.basic_consume(
        queue,
        lambda ch, method, props, body: received.append(body),
        arguments={"x-consumer-timeout": 200},
    )
    channel.basic_publish("", queue, b"held")
    pump_until(connection, lambda: cancelled, timeout=0.2 + SLACK)
    assert cancelled == [tag]
    assert received == [b"held"]
    method, _props, body = channel.basic_get(queue, auto_ack=True)
    assert body == b"held"
    assert method.redelivered is True


def test_single_active_consumer_fails_over_to_the_next_consumer_with_unacked_messages(
    router_url: str, channel: BlockingChannel
) -> None:
    queue = declare(channel, unique("sac"), **{"x-single-active-consumer": True})
    first_conn = pika.BlockingConnection(pika.URLParameters(router_url))
    with connect(router_url) as second_conn:
        try:
            first_channel = first_conn.channel()
            second_channel = second_conn.channel()
            first: list[bytes] = []
            second: list[tuple[bytes, bool]] = []

            def on_first(ch, method, props, body) -> None:  # type: ignore[no-untyped-def]
                first.append(body)
                if body == b"m0":
                    ch.basic_ack(method.delivery_tag)

            first_channel.basic_consume(queue, on_first)
            second_channel.basic_consume(
                queue, lambda ch, method, props, body: second.append((body, method.redelivered))
            )
            assert channel.queue_declare(queue, passive=True).method.consumer_count == 2
            for i in range(3):
                channel.basic_publish("", queue, f"m{i}".encode())
            pump_until(first_conn, lambda: len(first) == 3)
            second_conn.process_data_events(time_limit=0.1)
            assert first == [b"m0", b"m1", b"m2"]
            assert second == []
        finally:
            first_conn.close()  # the active consumer goes away with m1, m2 unacked
        pump_until(second_conn, lambda: len(second) == 2)
        assert second == [(b"m1", True), (b"m2", True)]
        channel.basic_publish("", queue, b"m3")
        pump_until(second_conn, lambda: len(second) == 3)
        assert second[-1] == (b"m3", False)


# ---------------------------------------------------------------------------------------------
# sender-selected distribution, deduplication


def test_cc_and_bcc_headers_add_destinations_and_bcc_is_never_visible(
    channel: BlockingChannel,
) -> None:
    exchange = unique("mail")
    channel.exchange_declare(exchange, "direct")
    queues = {}
    for key in ("to", "cc", "bcc", "other"):
        queues[key] = declare(channel, unique(key))
        channel.queue_bind(queues[key], exchange, key)
    channel.basic_publish(
        exchange,
        "to",
        b"memo",
        pika.BasicProperties(headers={"CC": ["cc"], "BCC": ["bcc"], "x-app": "mail"}),
    )
    for key in ("to", "cc", "bcc"):
        got = poll_get(channel, queues[key], timeout=0.5)
        assert got is not None, key
        method, props, body = got
        assert body == b"memo"
        assert method.routing_key == "to"
        assert "BCC" not in props.headers
        assert props.headers["CC"] == ["cc"]
        assert props.headers["x-app"] == "mail"
        assert channel.basic_get(queues[key], auto_ack=True)[0] is None  # exactly one copy
    assert ready_count(channel, queues["other"]) == 0


def test_deduplicating_exchange_confirms_both_publishes_but_delivers_a_message_id_once(
    router_url: str,
) -> None:
    async def scenario() -> tuple[list[object], list[tuple[bytes, str | None]]]:
        async with await aio_pika.connect(router_url) as connection:
            channel = await connection.channel(publisher_confirms=True)
            exchange = await channel.declare_exchange(
                unique("dedup"),
                aio_pika.ExchangeType.DIRECT,
                arguments={"x-message-deduplication": True, "x-cache-size": 100},
            )
            queue = await channel.declare_queue(exclusive=True)
            await queue.bind(exchange, "k")
            confirms = []
            for body, message_id in [(b"a", "id-1"), (b"a-again", "id-1"), (b"b", "id-2")]:
                message = aio_pika.Message(body, message_id=message_id)
                confirms.append(await exchange.publish(message, "k"))
            got = []
            while (incoming := await queue.get(no_ack=True, fail=False)) is not None:
                got.append((incoming.body, incoming.message_id))
            return confirms, got

    confirms, got = asyncio.run(asyncio.wait_for(scenario(), 10))
    assert all(isinstance(confirm, aiormq.spec.Basic.Ack) for confirm in confirms)
    assert got == [(b"a", "id-1"), (b"b", "id-2")]


def test_deduplication_header_takes_precedence_over_message_id(channel: BlockingChannel) -> None:
    exchange = unique("dedup-h")
    channel.exchange_declare(
        exchange, "fanout", arguments={"x-message-deduplication": True, "x-cache-size": 10}
    )
    queue = declare(channel, unique("dedup-q"))
    channel.queue_bind(queue, exchange)
    channel.confirm_delivery()
    for body, message_id in [(b"one", "m-1"), (b"two", "m-2")]:
        props = pika.BasicProperties(
            message_id=message_id, headers={"x-deduplication-header": "order-7"}
        )
        channel.basic_publish(exchange, "", body, props)  # both acked
    channel.basic_publish(exchange, "", b"three", pika.BasicProperties(message_id="m-1"))
    assert drain(channel, queue) == [b"one", b"three"]


def test_deduplication_cache_forgets_a_key_after_x_cache_ttl(channel: BlockingChannel) -> None:
    exchange = unique("dedup-ttl")
    channel.exchange_declare(
        exchange,
        "fanout",
        arguments={"x-message-deduplication": True, "x-cache-size": 10, "x-cache-ttl": 200},
    )
    queue = declare(channel, unique("dedup-ttl-q"))
    channel.queue_bind(queue, exchange)
    props = pika.BasicProperties(message_id="again")
    channel.basic_publish(exchange, "", b"first", props)
    channel.basic_publish(exchange, "", b"duplicate", props)
    channel.connection.process_data_events(time_limit=0.3)
    channel.basic_publish(exchange, "", b"after-ttl", props)
    assert drain(channel, queue) == [b"first", b"after-ttl"]
