"""The store flusher in a running broker: real clients over TCP, a real SQLite file.

The broker runs in a thread with ``start_router(data_dir=...)`` (tests/conftest.py), which opens
the store, recovers it and runs ``StoreFlusher`` as ``router serve`` does. The database is read
from the test through a second SQLite connection, so "on disk" means what any reader can see.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pika
import pytest
from conftest import RunningServer, start_router

from router.amqp.properties import BasicProperties
from router.client.blocking import BlockingClient
from router.store.sqlite import DB_NAME, StoreFailed

PERSISTENT = pika.BasicProperties(delivery_mode=2)


@pytest.fixture
def durable(tmp_path: Path) -> Iterator[RunningServer]:
    running = start_router(data_dir=tmp_path)
    try:
        yield running
    finally:
        running.stop()


def rows_on_disk(data_dir: Path) -> int:
    db = sqlite3.connect(data_dir / DB_NAME)
    try:
        return int(db.execute("SELECT count(*) FROM messages").fetchone()[0])
    finally:
        db.close()


def test_each_confirm_comes_after_its_message_is_on_disk(
    durable: RunningServer, tmp_path: Path
) -> None:
    connection = pika.BlockingConnection(pika.URLParameters(durable.url))
    channel = connection.channel()
    channel.confirm_delivery()
    channel.queue_declare("orders", durable=True)
    for number in range(1, 41):
        channel.basic_publish("", "orders", b"order %d" % number, PERSISTENT)  # waits for the ack
        assert rows_on_disk(tmp_path) == number
    connection.close()


def test_transient_messages_and_non_durable_queues_are_not_written(
    durable: RunningServer, tmp_path: Path
) -> None:
    connection = pika.BlockingConnection(pika.URLParameters(durable.url))
    channel = connection.channel()
    channel.confirm_delivery()
    channel.queue_declare("durable", durable=True)
    channel.queue_declare("scratch", durable=False)
    channel.basic_publish("", "durable", b"transient")
    channel.basic_publish("", "scratch", b"persistent, but the queue is not durable", PERSISTENT)
    connection.close()
    assert rows_on_disk(tmp_path) == 0


def test_many_publishes_share_one_fsync(durable: RunningServer) -> None:
    client = BlockingClient(durable.url)
    client.declare_queue("bulk", durable=True)
    client.confirm_select()
    count = 5000
    client.send(
        client.publish_batch("", "bulk", b"x" * 16, count, BasicProperties(delivery_mode=2))
    )
    confirmed = 0
    while confirmed < count:
        for tag, _multiple, nack in client.receive_confirms():
            assert not nack
            confirmed = max(confirmed, tag)
    client.close()
    store = durable.broker.store
    assert store is not None
    stats = store.stats
    assert stats.messages_written == count
    # group commit: far fewer transactions than messages (the exact split depends on the load)
    assert stats.batches < count
    assert stats.max_batch_rows > 1


def test_a_stopped_broker_comes_back_with_its_topology_and_messages(tmp_path: Path) -> None:
    first = start_router(data_dir=tmp_path)
    try:
        connection = pika.BlockingConnection(pika.URLParameters(first.url))
        channel = connection.channel()
        channel.confirm_delivery()
        channel.exchange_declare("events", "topic", durable=True)
        channel.queue_declare("audit", durable=True, arguments={"x-max-priority": 3})
        channel.queue_bind("audit", "events", "user.#")
        for number in range(5):
            channel.basic_publish(
                "events",
                "user.created",
                b"event %d" % number,
                pika.BasicProperties(delivery_mode=2, priority=number % 4),
            )
        channel.basic_publish("events", "user.created", b"transient")
        connection.close()
    finally:
        first.stop()
    second = start_router(data_dir=tmp_path)
    try:
        connection = pika.BlockingConnection(pika.URLParameters(second.url))
        channel = connection.channel()
        declared = channel.queue_declare("audit", durable=True, passive=True)
        assert declared.method.message_count == 5
        channel.basic_publish(
            "events", "user.deleted", b"routed by the recovered binding", PERSISTENT
        )
        bodies = []
        while True:
            method, _properties, body = channel.basic_get("audit", auto_ack=True)
            if method is None:
                break
            bodies.append(body)
        # priority order (3, 2, 1, 0, 0), publish order within a priority, then the new one
        assert bodies == [
            b"event 3",
            b"event 2",
            b"event 1",
            b"event 0",
            b"event 4",
            b"routed by the recovered binding",
        ]
        connection.close()
    finally:
        second.stop()


def test_a_failed_write_stops_the_broker_without_confirming(tmp_path: Path) -> None:
    running = start_router(data_dir=tmp_path)
    store = running.broker.store
    assert store is not None

    def failing_write(batch: object) -> float:
        raise StoreFailed("writing to router.db failed: disk I/O error")

    connection = pika.BlockingConnection(pika.URLParameters(running.url))
    channel = connection.channel()
    channel.confirm_delivery()
    channel.queue_declare("orders", durable=True)  # written before the failure
    running.call(setattr, store, "write", failing_write)
    with pytest.raises(pika.exceptions.AMQPError):
        channel.basic_publish("", "orders", b"never confirmed", PERSISTENT)
    running.stop()
    assert rows_on_disk(tmp_path) == 0


def test_declare_ok_of_durable_topology_comes_after_it_is_on_disk(
    durable: RunningServer, tmp_path: Path
) -> None:
    connection = pika.BlockingConnection(pika.URLParameters(durable.url))
    channel = connection.channel()
    channel.exchange_declare("billing", "direct", durable=True)
    channel.queue_declare("invoices", durable=True)
    channel.queue_bind("invoices", "billing", "invoice")
    db = sqlite3.connect(tmp_path / DB_NAME)
    try:
        assert db.execute("SELECT name FROM exchanges").fetchall() == [("billing",)]
        assert db.execute("SELECT name FROM queues").fetchall() == [("invoices",)]
        assert db.execute("SELECT source, destination FROM bindings").fetchall() == [
            ("billing", "invoices")
        ]
        channel.queue_delete("invoices")
        assert db.execute("SELECT count(*) FROM queues").fetchone()[0] == 0
        assert db.execute("SELECT count(*) FROM bindings").fetchone()[0] == 0
    finally:
        db.close()
    connection.close()
