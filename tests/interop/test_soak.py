"""Soak: 100,000 small messages through router with pika, checked for loss, duplicates and order,
and for leaks (nothing left in the queue, no per-message objects retained by the broker).

The publisher and the consumer are separate connections driven from this thread: the publisher
sends a batch, then the consumer (prefetch 1000, ack multiple every 100) is pumped until it has
caught up with most of what was sent, so the queue holds a backlog while both sides run.
"""

from __future__ import annotations

import gc
import time

import pika

TOTAL = 100_000
BATCH = 2_000
PREFETCH = 1_000
ACK_EVERY = 100
BACKLOG = 3 * BATCH  # how far the consumer may lag before the publisher waits for it
DEADLINE_SECONDS = 90.0


def body_for(sequence: int) -> bytes:
    return b"%016d" % sequence  # 16 bytes


def broker_objects(type_name: str) -> int:
    gc.collect()
    return sum(
        1
        for o in gc.get_objects()
        if type(o).__name__ == type_name and type(o).__module__ == "router.broker.message"
    )


def test_soak_100k_messages_arrive_once_in_order_and_leave_nothing_behind(router_server) -> None:  # type: ignore[no-untyped-def]
    params = pika.URLParameters(router_server.url)
    publisher_connection = pika.BlockingConnection(params)
    consumer_connection = pika.BlockingConnection(params)
    try:
        publisher = publisher_connection.channel()
        queue = publisher.queue_declare("soak", durable=False, auto_delete=False).method.queue

        consumer = consumer_connection.channel()
        consumer.basic_qos(prefetch_count=PREFETCH)
        received: list[int] = []
        redelivered = 0

        def on_message(ch, method, properties, body):  # type: ignore[no-untyped-def]
            nonlocal redelivered
            received.append(int(body))
            redelivered += method.redelivered
            if method.delivery_tag % ACK_EVERY == 0:
                ch.basic_ack(method.delivery_tag, multiple=True)

        consumer.basic_consume(queue, on_message)

        deadline = time.monotonic() + DEADLINE_SECONDS

        def pump_consumer_until(target: int) -> None:
            while len(received) < target:
                assert time.monotonic() < deadline, f"stalled at {len(received)} of {target}"
                consumer_connection.process_data_events(time_limit=0.01)

        sent = 0
        while sent < TOTAL:
            for sequence in range(sent, min(sent + BATCH, TOTAL)):
                publisher.basic_publish("", queue, body_for(sequence))
            sent = min(sent + BATCH, TOTAL)
            pump_consumer_until(sent - BACKLOG)
        pump_consumer_until(TOTAL)

        # a round trip on each channel: every publish and every ack has been processed
        publisher.queue_declare(queue, passive=True)
        consumer.queue_declare(queue, passive=True)

        assert len(received) == TOTAL
        assert received == list(range(TOTAL))  # no loss, no duplicate, in order
        assert redelivered == 0

        def queue_state() -> tuple[int, int]:
            q = router_server.broker.vhosts["/"].queues[queue]
            return q.message_count, q.unacked

        assert router_server.call(queue_state) == (0, 0)
        assert router_server.call(broker_objects, "QueuedMessage") == 0
        assert router_server.call(broker_objects, "Message") == 0
        publisher.queue_delete(queue)
    finally:
        for connection in (publisher_connection, consumer_connection):
            if connection.is_open:
                connection.close()
