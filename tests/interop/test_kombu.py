"""kombu (py-amqp transport) against router over real TCP: the way Celery talks to a broker."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import amqp.exceptions
import pytest
from kombu import Connection, Consumer, Exchange, Producer, Queue

TIMEOUT = 5.0


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def connection(router_url: str) -> Iterator[Connection]:
    with Connection(router_url, connect_timeout=TIMEOUT) as conn:
        conn.connect()
        yield conn


def drain_until(connection: Connection, condition) -> None:  # type: ignore[no-untyped-def]
    while not condition():
        connection.drain_events(timeout=TIMEOUT)


def test_kombu_connects_and_releases_the_connection(router_url: str) -> None:
    conn = Connection(router_url, connect_timeout=TIMEOUT)
    try:
        conn.connect()
        assert conn.connected
    finally:
        conn.release()
    assert not conn.connected


def test_kombu_producer_and_consumer_exchange_messages_through_a_direct_exchange(
    connection: Connection,
) -> None:
    exchange = Exchange(unique("tasks"), type="direct", auto_delete=True)
    queue = Queue(unique("work"), exchange, routing_key="work", auto_delete=True)
    received: list[object] = []

    def on_message(body: object, message) -> None:  # type: ignore[no-untyped-def]
        received.append(body)
        message.ack()

    with Consumer(connection, [queue], callbacks=[on_message], accept=["json"]):
        producer = Producer(connection.channel(), exchange=exchange, serializer="json")
        for i in range(5):
            producer.publish({"n": i}, routing_key="work", declare=[queue])
        drain_until(connection, lambda: len(received) == 5)
    assert received == [{"n": i} for i in range(5)]


def test_kombu_topic_exchange_routes_only_matching_keys(connection: Connection) -> None:
    exchange = Exchange(unique("events"), type="topic", auto_delete=True)
    queue = Queue(unique("orders"), exchange, routing_key="order.*", auto_delete=True)
    received: list[str] = []

    def on_message(body: str, message) -> None:  # type: ignore[no-untyped-def]
        received.append(body)
        message.ack()

    with Consumer(connection, [queue], callbacks=[on_message], accept=["json"]):
        producer = Producer(connection.channel(), exchange=exchange, serializer="json")
        for key in ("order.created", "user.created", "order.paid", "order.paid.late"):
            producer.publish(key, routing_key=key)
        drain_until(connection, lambda: len(received) == 2)
    assert received == ["order.created", "order.paid"]


def test_kombu_message_rejected_with_requeue_is_redelivered(connection: Connection) -> None:
    queue = Queue(unique("retry"), auto_delete=True)
    seen: list[bool] = []

    def on_message(body: object, message) -> None:  # type: ignore[no-untyped-def]
        seen.append(message.delivery_info["redelivered"])
        if message.delivery_info["redelivered"]:
            message.ack()
        else:
            message.requeue()

    with Consumer(connection, [queue], callbacks=[on_message], accept=["json"]):
        Producer(connection.channel()).publish("x", routing_key=queue.name, serializer="json")
        drain_until(connection, lambda: len(seen) == 2)
    assert seen == [False, True]


def test_kombu_simple_queue_put_then_get(connection: Connection) -> None:
    name = unique("simple")
    with connection.SimpleQueue(name, queue_opts={"auto_delete": True}) as queue:
        queue.put({"hello": "world"})
        queue.put([1, 2, 3])
        first = queue.get(block=True, timeout=TIMEOUT)
        first.ack()
        second = queue.get(block=True, timeout=TIMEOUT)
        second.ack()
        assert (first.payload, second.payload) == ({"hello": "world"}, [1, 2, 3])
        assert queue.qsize() == 0


def test_kombu_simple_queue_get_on_empty_raises_empty(connection: Connection) -> None:
    queue = connection.SimpleQueue(unique("empty"), queue_opts={"auto_delete": True})
    try:
        with pytest.raises(queue.Empty):
            queue.get(block=False)
    finally:
        queue.close()


def test_kombu_simple_buffer_acks_automatically(connection: Connection) -> None:
    with connection.SimpleBuffer(unique("buffer"), queue_opts={"auto_delete": True}) as buffer:
        buffer.put("fire and forget")
        assert buffer.get(block=True, timeout=TIMEOUT).payload == "fire and forget"
        assert buffer.qsize() == 0


def test_kombu_confirm_publish_transport_option_publishes_with_confirms(router_url: str) -> None:
    with Connection(
        router_url, connect_timeout=TIMEOUT, transport_options={"confirm_publish": True}
    ) as conn:
        queue = Queue(unique("confirmed"), auto_delete=False)
        producer = Producer(conn.channel())
        for i in range(10):
            producer.publish(i, routing_key=queue.name, declare=[queue], serializer="json")
        bound = queue(conn.channel())
        assert bound.queue_declare(passive=True).message_count == 10
        bound.delete()


def test_kombu_wrong_password_raises_access_refused(router_server) -> None:  # type: ignore[no-untyped-def]
    url = f"amqp://guest:wrong@127.0.0.1:{router_server.port}//"
    conn = Connection(url, connect_timeout=TIMEOUT)
    try:
        with pytest.raises(amqp.exceptions.AccessRefused):
            conn.connect()
    finally:
        conn.release()
