"""Publisher confirms and tx.commit-ok with a store attached, through a real ``Session``.

A confirm (and a tx.commit-ok) means "on disk" for what the publish wrote to the store: it waits
until ``Broker.store_committed`` reports the batch holding it. What wrote nothing (transient
messages, non-durable queues, refused publishes) is confirmed at once, but never ahead of an
earlier publish that waits: confirms go out in publish order. The same holds for the replies to
declarations, bindings, deletes and purges of durable things (sent once on disk), and for every
reply on the channel after one that waits: a channel's replies keep their order.

The store is the real SQLite store in ``tmp_path``; the flusher is simulated by hand
(``take_batch``, ``write``, then ``store_committed``)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from model_helpers import FakeClient, Received

from router.amqp import spec
from router.amqp.properties import BasicProperties
from router.amqp.tables import FieldTable
from router.broker.broker import Broker, BrokerConfig
from router.broker.message import Message
from router.broker.ports import Clock, CountingIds
from router.store.sqlite import Batch, SQLiteStore, open_store

PERSISTENT = BasicProperties(delivery_mode=2)
TRANSIENT = BasicProperties(delivery_mode=1)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SQLiteStore]:
    opened = open_store(tmp_path / "data", Clock())
    try:
        yield opened
    finally:
        opened.close()


@pytest.fixture
def broker(store: SQLiteStore) -> Broker:
    return Broker(BrokerConfig(), ids=CountingIds(), clock=store.clock, store=store)


def set_up(client: FakeClient, *methods: spec.Method, channel: int = 1) -> list[Received]:
    """Send methods, write what they recorded, and return every reply (all must succeed)."""
    replies = client.send_methods(channel, *methods)
    flush(client.broker, client.broker.store)  # type: ignore[arg-type]
    replies += client.take()
    assert client.channel_close(channel) is None, client.channel_close(channel)
    assert len(replies) == len(methods), replies
    return replies


@pytest.fixture
def client(broker: Broker, store: SQLiteStore) -> FakeClient:
    """Channel 1 in confirm mode; ``q`` durable, ``transient`` not; topology already on disk."""
    client = FakeClient(broker)
    client.open_channel(1)
    set_up(
        client,
        spec.ConfirmSelect(),
        spec.QueueDeclare(queue="q", durable=True),
        spec.QueueDeclare(queue="transient", durable=False),
    )
    return client


def write(store: SQLiteStore) -> Batch:
    """Cut a batch and write it; the broker is not told yet."""
    batch = store.take_batch()
    store.write(batch)
    return batch


def flush(broker: Broker, store: SQLiteStore) -> Batch:
    """One flusher step; again while the commit released more work (a paused channel resumed).
    Returns the first batch."""
    first = None
    while first is None or store.pending:
        batch = write(store)
        broker.store_committed(batch.number)
        first = first or batch
    return first


def confirms(received: list[Received]) -> list[spec.Method]:
    return [r.method for r in received if isinstance(r.method, (spec.BasicAck, spec.BasicNack))]


def publish(client: FakeClient, queue: str = "q", *, persistent: bool = True, **kw: Any) -> None:
    client.send(
        FakeClient.publish_bytes(
            kw.pop("channel", 1),
            kw.pop("exchange", ""),
            queue,
            b"body",
            properties=PERSISTENT if persistent else TRANSIENT,
            **kw,
        )
    )


# --- confirm mode ----------------------------------------------------------------------------------


def test_a_persistent_publish_to_a_durable_queue_is_confirmed_only_once_its_batch_is_committed(
    client: FakeClient, broker: Broker, store: SQLiteStore
):
    publish(client)
    assert confirms(client.take()) == []
    batch = store.take_batch()
    assert confirms(client.take()) == []  # cut, not written
    store.write(batch)
    assert confirms(client.take()) == []  # written, the broker not told yet
    broker.store_committed(batch.number)
    assert confirms(client.take()) == [spec.BasicAck(1, False)]
    assert store.count_messages() == 1


def test_a_transient_publish_to_a_durable_queue_is_confirmed_at_once(client: FakeClient):
    publish(client, persistent=False)
    assert confirms(client.take()) == [spec.BasicAck(1, False)]


def test_a_persistent_publish_to_a_non_durable_queue_is_confirmed_at_once(
    client: FakeClient, store: SQLiteStore
):
    publish(client, "transient")
    assert confirms(client.take()) == [spec.BasicAck(1, False)]
    assert not store.pending


def test_an_unroutable_persistent_publish_is_returned_and_confirmed_at_once(
    client: FakeClient,
):
    publish(client, "nowhere", mandatory=True)
    received = client.take()
    assert [type(r.method) for r in received] == [spec.BasicReturn, spec.BasicAck]
    assert confirms(received) == [spec.BasicAck(1, False)]


def test_a_persistent_publish_routed_to_a_durable_and_a_transient_queue_waits_for_the_store(
    client: FakeClient, broker: Broker, store: SQLiteStore
):
    set_up(
        client,
        spec.ExchangeDeclare(exchange="fan", type="fanout", durable=True),
        spec.QueueBind(queue="q", exchange="fan"),
        spec.QueueBind(queue="transient", exchange="fan"),
    )
    publish(client, "", exchange="fan")
    assert confirms(client.take()) == []
    flush(broker, store)
    assert confirms(client.take()) == [spec.BasicAck(1, False)]


def test_a_transient_publish_after_a_persistent_one_waits_behind_it(
    client: FakeClient, broker: Broker, store: SQLiteStore
):
    publish(client)
    publish(client, persistent=False)
    publish(client, "transient")
    assert confirms(client.take()) == []
    flush(broker, store)
    assert confirms(client.take()) == [spec.BasicAck(3, True)]


def test_transient_publishes_before_a_persistent_one_are_confirmed_at_once(
    client: FakeClient, broker: Broker, store: SQLiteStore
):
    publish(client, persistent=False)
    publish(client, persistent=False)
    publish(client)
    assert confirms(client.take()) == [spec.BasicAck(1, False), spec.BasicAck(2, False)]
    flush(broker, store)
    assert confirms(client.take()) == [spec.BasicAck(3, False)]


def test_publishes_in_one_batch_are_confirmed_with_one_multiple_ack(
    client: FakeClient, broker: Broker, store: SQLiteStore
):
    for _ in range(5):
        publish(client)
    assert confirms(client.take()) == []
    batch = flush(broker, store)
    assert len(batch.inserts) == 5
    assert confirms(client.take()) == [spec.BasicAck(5, True)]


def test_publishes_in_two_batches_are_confirmed_batch_by_batch(
    client: FakeClient, broker: Broker, store: SQLiteStore
):
    publish(client)
    publish(client)
    first = write(store)
    publish(client)  # recorded while the first batch is being written
    second = write(store)
    assert confirms(client.take()) == []
    broker.store_committed(first.number)
    assert confirms(client.take()) == [spec.BasicAck(2, True)]
    broker.store_committed(second.number)
    assert confirms(client.take()) == [spec.BasicAck(3, False)]


def test_committing_a_later_batch_confirms_everything_recorded_before_it(
    client: FakeClient, broker: Broker, store: SQLiteStore
):
    publish(client)
    write(store)
    publish(client)
    second = write(store)
    broker.store_committed(second.number)
    assert confirms(client.take()) == [spec.BasicAck(2, True)]


def test_a_nack_for_a_refused_publish_behind_a_held_one_is_sent_after_it_in_order(
    client: FakeClient, broker: Broker, store: SQLiteStore
):
    arguments = FieldTable({"x-max-length": 1, "x-overflow": "reject-publish"})
    set_up(client, spec.QueueDeclare(queue="limited", durable=True, arguments=arguments))
    publish(client, "limited")  # 1: accepted and stored
    publish(client, "limited")  # 2: refused, the queue is full
    publish(client, "q")  # 3: stored
    publish(client, "limited", persistent=False)  # 4: refused
    assert confirms(client.take()) == []
    flush(broker, store)
    assert confirms(client.take()) == [
        spec.BasicAck(1, False),
        spec.BasicNack(2, False, False),
        spec.BasicAck(3, False),
        spec.BasicNack(4, False, False),
    ]


def test_a_refused_publish_with_nothing_waiting_is_nacked_at_once(
    client: FakeClient, broker: Broker, store: SQLiteStore
):
    arguments = FieldTable({"x-max-length": 0, "x-overflow": "reject-publish"})
    set_up(client, spec.QueueDeclare(queue="full", durable=True, arguments=arguments))
    publish(client, "full")
    assert confirms(client.take()) == [spec.BasicNack(1, False, False)]
    assert not store.pending


def test_a_publish_consumed_and_acked_within_its_batch_is_confirmed_only_after_the_commit(
    client: FakeClient, broker: Broker, store: SQLiteStore
):
    client.call(2, spec.ChannelOpen())
    client.consume(2, "q", "c")
    client.take()
    publish(client)
    received = client.take()
    (delivery,) = [r for r in received if isinstance(r.method, spec.BasicDeliver)]
    assert confirms(received) == []  # delivered before it is confirmed
    client.ack(2, delivery.method.delivery_tag)
    assert confirms(client.take()) == []
    batch = write(store)
    assert (batch.inserts, batch.deletes) == ([], [])  # never written at all
    assert confirms(client.take()) == []
    broker.store_committed(batch.number)
    assert confirms(client.take()) == [spec.BasicAck(1, False)]


def test_a_duplicate_dropped_by_an_exchange_is_confirmed_in_order_behind_a_held_publish(
    client: FakeClient, broker: Broker, store: SQLiteStore
):
    arguments = FieldTable({"x-message-deduplication": True})
    set_up(
        client,
        spec.ExchangeDeclare(exchange="dd", type="fanout", durable=True, arguments=arguments),
        spec.QueueBind(queue="q", exchange="dd"),
    )
    props = BasicProperties(delivery_mode=2, message_id="same")
    for _ in range(2):
        client.send(FakeClient.publish_bytes(1, "dd", "", b"x", properties=props))
    assert confirms(client.take()) == []
    flush(broker, store)
    assert confirms(client.take()) == [spec.BasicAck(2, True)]
    assert broker.vhosts["/"].queues["q"].message_count == 1


def test_confirms_on_two_channels_are_each_released_by_the_commit(
    client: FakeClient, broker: Broker, store: SQLiteStore
):
    client.call(2, spec.ChannelOpen())
    client.call(2, spec.ConfirmSelect())
    client.take()
    publish(client, channel=1)
    publish(client, channel=2)
    publish(client, channel=2)
    assert confirms(client.take()) == []
    flush(broker, store)
    received = sorted(client.take(), key=lambda r: r.channel)
    assert [(r.channel, r.method) for r in received] == [
        (1, spec.BasicAck(1, False)),
        (2, spec.BasicAck(2, True)),
    ]


def test_a_channel_without_confirm_mode_is_never_sent_acks(
    client: FakeClient, broker: Broker, store: SQLiteStore
):
    client.call(2, spec.ChannelOpen())
    client.take()
    publish(client, channel=2)
    flush(broker, store)
    assert confirms(client.take()) == []
    assert broker.vhosts["/"].queues["q"].message_count == 1


# --- closed channels and connections -----------------------------------------------------------------


def test_a_closed_channel_is_sent_nothing_when_its_batch_commits(
    client: FakeClient, broker: Broker, store: SQLiteStore
):
    publish(client)
    replies = client.call(1, spec.ChannelClose(200, "bye"))
    assert [type(r.method) for r in replies] == [spec.ChannelCloseOk]
    flush(broker, store)
    assert client.take() == []
    assert store.count_messages() == 1  # the message itself is kept


def test_a_reopened_channel_number_is_not_sent_the_old_channels_confirms(
    client: FakeClient, broker: Broker, store: SQLiteStore
):
    publish(client)
    client.call(1, spec.ChannelClose(200, "bye"))
    client.open_channel(1)
    client.call(1, spec.ConfirmSelect())
    client.take()
    flush(broker, store)
    assert client.take() == []
    publish(client)
    flush(broker, store)
    assert confirms(client.take()) == [spec.BasicAck(1, False)]


def test_a_closed_connection_is_sent_nothing_when_the_batch_commits(
    client: FakeClient, broker: Broker, store: SQLiteStore
):
    publish(client)
    replies = client.call(0, spec.ConnectionClose(200, "bye"))
    assert [type(r.method) for r in replies] == [spec.ConnectionCloseOk]
    flush(broker, store)
    assert client.session.data_to_send(0.0) == b""


# --- transactions ----------------------------------------------------------------------------------


@pytest.fixture
def tx(broker: Broker, store: SQLiteStore) -> FakeClient:
    """Channel 1 transactional; ``q`` durable, ``transient`` not; topology on disk."""
    client = FakeClient(broker)
    client.open_channel(1)
    set_up(
        client,
        spec.QueueDeclare(queue="q", durable=True),
        spec.QueueDeclare(queue="transient", durable=False),
        spec.TxSelect(),
    )
    return client


def _types(received: list[Received]) -> list[type]:
    return [type(r.method) for r in received]


def test_tx_commit_ok_waits_for_the_store_when_the_transaction_published_persistent_messages(
    tx: FakeClient, broker: Broker, store: SQLiteStore
):
    publish(tx)
    publish(tx, persistent=False)
    assert tx.call(1, spec.TxCommit()) == []
    batch = write(store)
    assert len(batch.inserts) == 1
    assert tx.take() == []
    broker.store_committed(batch.number)
    assert _types(tx.take()) == [spec.TxCommitOk]


def test_tx_commit_ok_is_sent_at_once_when_the_transaction_wrote_nothing(
    tx: FakeClient, store: SQLiteStore
):
    assert _types(tx.call(1, spec.TxCommit())) == [spec.TxCommitOk]  # empty
    publish(tx, persistent=False)
    publish(tx, "transient")
    assert _types(tx.call(1, spec.TxCommit())) == [spec.TxCommitOk]
    assert not store.pending


def test_tx_commit_ok_waits_when_the_transaction_acked_a_stored_message(
    tx: FakeClient, broker: Broker, store: SQLiteStore
):
    queue = broker.vhosts["/"].queues["q"]
    queue.publish(Message("", "q", PERSISTENT.encode(), b"stored", 2))
    flush(broker, store)
    reply = tx.call(1, spec.BasicGet(queue="q"))[-1]
    assert isinstance(reply.method, spec.BasicGetOk)
    assert store.pending  # the delivery count, recorded by the get (not by the transaction)
    assert _types(tx.call(1, spec.TxCommit())) == [spec.TxCommitOk]  # an empty transaction
    flush(broker, store)
    tx.ack(1, reply.method.delivery_tag)
    assert tx.call(1, spec.TxCommit()) == []
    batch = flush(broker, store)
    assert len(batch.deletes) == 1
    assert _types(tx.take()) == [spec.TxCommitOk]


def test_a_rolled_back_persistent_publish_writes_nothing_and_commits_at_once(
    tx: FakeClient, store: SQLiteStore
):
    publish(tx)
    assert _types(tx.call(1, spec.TxRollback())) == [spec.TxRollbackOk]
    assert _types(tx.call(1, spec.TxCommit())) == [spec.TxCommitOk]
    assert not store.pending


def test_a_channel_close_after_a_waiting_tx_commit_is_answered_after_the_commit_ok(
    tx: FakeClient, broker: Broker, store: SQLiteStore
):
    """The channel waits for its commit (as a RabbitMQ channel waits for its write): the close
    is processed after it, so the client sees commit-ok, then close-ok."""
    publish(tx)
    tx.call(1, spec.TxCommit())
    assert tx.call(1, spec.ChannelClose(200, "bye")) == []
    flush(broker, store)
    assert _types(tx.take()) == [spec.TxCommitOk, spec.ChannelCloseOk]
    assert store.count_messages() == 1


def test_a_connection_closed_while_a_tx_commit_waits_is_sent_nothing_more(
    tx: FakeClient, broker: Broker, store: SQLiteStore
):
    publish(tx)
    tx.call(1, spec.TxCommit())
    assert _types(tx.call(0, spec.ConnectionClose(200, "bye", 0, 0))) == [spec.ConnectionCloseOk]
    flush(broker, store)
    assert tx.take() == []
    assert store.count_messages() == 1  # the commit was already recorded: kept


def test_a_tx_commit_after_one_waiting_for_the_store_is_answered_after_it(
    tx: FakeClient, broker: Broker, store: SQLiteStore
):
    """Replies to a channel's synchronous methods go out in order: a second commit that wrote
    nothing must not overtake the first one's commit-ok (the client would take it for the first
    commit's, before that is on disk)."""
    publish(tx)
    assert tx.send_methods(1, spec.TxCommit(), spec.TxCommit()) == []
    flush(broker, store)
    assert _types(tx.take()) == [spec.TxCommitOk, spec.TxCommitOk]


# --- replies to durable declarations -----------------------------------------------------------------


@pytest.fixture
def plain(broker: Broker, store: SQLiteStore) -> FakeClient:
    """Channel 1 in no particular mode; ``transient`` (non-durable) holds one message."""
    client = FakeClient(broker)
    client.open_channel(1)
    set_up(client, spec.QueueDeclare(queue="transient"))
    publish(client, "transient")
    client.take()
    return client


def test_a_durable_queue_declare_ok_is_sent_once_the_declaration_is_on_disk(
    plain: FakeClient, broker: Broker, store: SQLiteStore
):
    assert plain.call(1, spec.QueueDeclare(queue="d", durable=True)) == []
    batch = write(store)
    assert plain.take() == []
    broker.store_committed(batch.number)
    assert [r.method for r in plain.take()] == [spec.QueueDeclareOk("d", 0, 0)]


def test_non_durable_declarations_and_redeclarations_are_answered_at_once(
    plain: FakeClient, broker: Broker, store: SQLiteStore
):
    set_up(plain, spec.QueueDeclare(queue="d", durable=True))
    assert _types(plain.call(1, spec.QueueDeclare(queue="d", durable=True))) == [
        spec.QueueDeclareOk
    ]
    assert _types(plain.call(1, spec.QueueDeclare(queue="t2"))) == [spec.QueueDeclareOk]
    assert _types(plain.call(1, spec.ExchangeDeclare(exchange="tx", type="direct"))) == [
        spec.ExchangeDeclareOk
    ]
    assert not store.pending


def test_replies_after_a_held_declare_ok_keep_their_order(
    plain: FakeClient, broker: Broker, store: SQLiteStore
):
    sent = plain.send_methods(
        1,
        spec.ExchangeDeclare(exchange="dx", type="direct", durable=True),
        spec.BasicQos(prefetch_count=10),
        spec.QueueDeclare(queue="t2"),
    )
    assert sent == []
    flush(broker, store)
    assert _types(plain.take()) == [spec.ExchangeDeclareOk, spec.BasicQosOk, spec.QueueDeclareOk]


def test_a_basic_get_after_a_held_declare_ok_is_answered_after_it(
    plain: FakeClient, broker: Broker, store: SQLiteStore
):
    """basic.get-ok is a synchronous reply too: it must not overtake the declare-ok."""
    early = plain.send_methods(
        1, spec.QueueDeclare(queue="d", durable=True), spec.BasicGet(queue="transient")
    )
    flush(broker, store)
    assert _types(early + plain.take()) == [spec.QueueDeclareOk, spec.BasicGetOk]


def test_a_consumers_first_delivery_never_precedes_its_consume_ok(
    plain: FakeClient, broker: Broker, store: SQLiteStore
):
    """A client cannot route a basic.deliver for a consumer tag it has not been given yet."""
    early = plain.send_methods(
        1,
        spec.QueueDeclare(queue="d", durable=True),
        spec.BasicConsume(queue="transient", consumer_tag="c"),
    )
    flush(broker, store)
    assert _types(early + plain.take()) == [
        spec.QueueDeclareOk,
        spec.BasicConsumeOk,
        spec.BasicDeliver,
    ]


def test_a_channel_close_after_a_waiting_declare_is_answered_after_the_declare_ok(
    plain: FakeClient, broker: Broker, store: SQLiteStore
):
    assert plain.call(1, spec.QueueDeclare(queue="d", durable=True)) == []
    assert plain.call(1, spec.ChannelClose(200, "bye")) == []
    flush(broker, store)
    assert _types(plain.take()) == [spec.QueueDeclareOk, spec.ChannelCloseOk]
    assert "d" in broker.vhosts["/"].queues


def drain(broker: Broker, store: SQLiteStore) -> int:
    """The flusher's loop (runtime/storage.py): write batches while anything is recorded. It
    sleeps when nothing is pending, so whatever still waits then would wait forever."""
    batches = 0
    while store.pending:
        flush(broker, store)
        batches += 1
    return batches


def test_a_reply_held_behind_one_whose_batch_is_being_written_is_sent_once_that_batch_commits(
    plain: FakeClient, broker: Broker, store: SQLiteStore
):
    """The qos-ok waits for the declare-ok before it, not for a later batch that nothing will
    ever fill: the flusher cuts no batch while nothing is recorded."""
    assert plain.call(1, spec.QueueDeclare(queue="d", durable=True)) == []
    batch = write(store)  # the flusher took the declaration and is writing it
    assert plain.call(1, spec.BasicQos(prefetch_count=5)) == []
    broker.store_committed(batch.number)
    drain(broker, store)
    assert _types(plain.take()) == [spec.QueueDeclareOk, spec.BasicQosOk]


def test_an_empty_tx_commit_behind_a_commit_being_written_is_answered_once_it_commits(
    tx: FakeClient, broker: Broker, store: SQLiteStore
):
    publish(tx)
    assert tx.call(1, spec.TxCommit()) == []
    batch = write(store)
    assert tx.call(1, spec.TxCommit()) == []  # nothing in it, but it answers after the first
    broker.store_committed(batch.number)
    drain(broker, store)
    assert _types(tx.take()) == [spec.TxCommitOk, spec.TxCommitOk]


def test_a_transient_publish_confirmed_behind_a_batch_being_written_is_acked_once_it_commits(
    client: FakeClient, broker: Broker, store: SQLiteStore
):
    publish(client)
    batch = write(store)
    publish(client, persistent=False)
    assert confirms(client.take()) == []
    broker.store_committed(batch.number)
    drain(broker, store)
    assert confirms(client.take()) == [spec.BasicAck(2, True)]
