"""The SQLite store on its own: opening a data directory (lock, format checks, schema), what a
batch holds (topology statements in order, message rows coalesced by reference), what is and is
not stored, and failed writes.

The flusher is simulated by hand: ``take_batch`` then ``write`` then ``Broker.store_committed``.
The database is a real file in ``tmp_path``, inspected through a connection of its own."""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

# FakeClient (a Session driven with raw frames) lives with the broker model tests
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "broker"))
from model_helpers import FakeClient

from router.amqp import spec
from router.amqp.properties import BasicProperties, scan
from router.amqp.tables import FieldArray, FieldTable
from router.broker.broker import Broker, BrokerConfig
from router.broker.message import Message
from router.broker.policies import Policy
from router.broker.ports import Clock, CountingIds
from router.broker.queues import Queue
from router.broker.vhost import VirtualHost
from router.store.sqlite import (
    APPLICATION_ID,
    DB_NAME,
    FORMAT_VERSION,
    LOCK_NAME,
    SEQ_BITS,
    Batch,
    SQLiteStore,
    StoreError,
    StoreFailed,
    open_store,
)

WALL = 1_700_000_000.0  # Unix seconds at monotonic 0


# --- fixtures and helpers --------------------------------------------------------------------------


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def clock() -> Clock:
    return Clock(0.0, WALL)


@pytest.fixture
def store(data_dir: Path, clock: Clock) -> Iterator[SQLiteStore]:
    opened = open_store(data_dir, clock)
    try:
        yield opened
    finally:
        opened.close()


@pytest.fixture
def broker(store: SQLiteStore, clock: Clock) -> Broker:
    broker = Broker(BrokerConfig(), ids=CountingIds(), clock=clock, store=store)
    flush(broker, store)  # the default vhost's row: tests start from a clean batch
    return broker


@pytest.fixture
def vhost(broker: Broker) -> VirtualHost:
    return broker.vhosts["/"]


def flush(broker: Broker, store: SQLiteStore) -> Batch:
    """What the runtime's flusher does: cut a batch, write it, tell the broker; again while the
    commit released more work (a channel paused on a durable declare resumes). Returns the first
    batch."""
    first = None
    while first is None or store.pending:
        batch = store.take_batch()
        store.write(batch)
        broker.store_committed(batch.number)
        first = first or batch
    return first


def query(store: SQLiteStore, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    """Rows as another reader of the file sees them (only committed batches)."""
    with contextlib.closing(sqlite3.connect(store.path)) as db:
        return db.execute(sql, params).fetchall()


def message_rows(store: SQLiteStore) -> list[tuple[Any, ...]]:
    return query(store, "SELECT id, delivery_count, body FROM messages ORDER BY id")


def persistent(body: bytes = b"m", *, routing_key: str = "q", exchange: str = "", **props: Any):
    """A Message as the session builds it; delivery_mode 2 unless ``props`` say otherwise."""
    props.setdefault("delivery_mode", 2)
    raw = BasicProperties(**props).encode()
    delivery_mode, priority, expiration = scan(raw)
    return Message(exchange, routing_key, raw, body, delivery_mode, priority, expiration)


def publish(vhost: VirtualHost, message: Message) -> list[Queue]:
    """Route and enqueue, as Session._route does."""
    queues = vhost.route(vhost.exchanges[message.exchange], message)
    for queue in queues:
        queue.publish(message)
    return queues


def durable_queue(vhost: VirtualHost, name: str = "q", **arguments: Any) -> Queue:
    return vhost.declare_queue(
        name, owner=None, durable=True, arguments=FieldTable(arguments) if arguments else None
    )


def row_id(queue: Queue, seq: int) -> int:
    return (queue.store_id << SEQ_BITS) | seq


def make_sqlite_file(path: Path, *pragmas: str, table: bool = True) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.closing(sqlite3.connect(path)) as db:
        for pragma in pragmas:
            db.execute(pragma)
        if table:
            db.execute("CREATE TABLE accounts (id INTEGER PRIMARY KEY, owner TEXT)")
            db.execute("INSERT INTO accounts (owner) VALUES ('someone else')")
        db.commit()


# --- opening a data directory ----------------------------------------------------------------------


def test_a_new_data_directory_is_created_with_a_lock_file_naming_this_process(
    data_dir: Path, clock: Clock
):
    store = open_store(data_dir / "nested", clock)
    try:
        assert (data_dir / "nested" / DB_NAME).is_file()
        assert (data_dir / "nested" / LOCK_NAME).read_text().strip() == str(os.getpid())
    finally:
        store.close()


def test_a_directory_in_use_by_an_open_store_is_refused_naming_the_holders_pid(
    data_dir: Path, clock: Clock
):
    first = open_store(data_dir, clock)
    try:
        with pytest.raises(StoreError) as refused:
            open_store(data_dir, clock)
        text = str(refused.value)
        assert f"pid {os.getpid()}" in text
        assert "in use by another broker" in text
        assert "Stop that broker first" in text and "--data-dir" in text
    finally:
        first.close()


def test_the_directory_can_be_opened_again_once_the_holder_closes_its_store(
    data_dir: Path, clock: Clock
):
    first = open_store(data_dir, clock)
    with pytest.raises(StoreError):
        open_store(data_dir, clock)
    first.close()
    second = open_store(data_dir, clock)
    second.close()


def test_a_refused_second_open_leaves_the_holders_store_working(data_dir: Path, clock: Clock):
    first = open_store(data_dir, clock)
    try:
        with pytest.raises(StoreError):
            open_store(data_dir, clock)
        first.vhost_added("after-refusal")
        first.write(first.take_batch())
        assert query(first, "SELECT name FROM vhosts") == [("after-refusal",)]
        assert (data_dir / LOCK_NAME).read_text().strip() == str(os.getpid())
    finally:
        first.close()


def test_a_data_directory_path_that_is_a_file_is_refused(tmp_path: Path, clock: Clock):
    path = tmp_path / "afile"
    path.write_text("x")
    with pytest.raises(StoreError) as refused:
        open_store(path, clock)
    text = str(refused.value)
    assert "is not a directory" in text
    assert "--data-dir" in text  # what to do
    assert path.read_text() == "x"


def test_a_router_db_that_is_not_sqlite_is_refused_and_left_untouched(data_dir: Path, clock: Clock):
    data_dir.mkdir()
    content = b"these are my notes, not a database\n" * 10
    (data_dir / DB_NAME).write_bytes(content)
    with pytest.raises(StoreError) as refused:
        open_store(data_dir, clock)
    text = str(refused.value)
    assert "is not a router store (not a SQLite database)" in text
    assert "Move it away" in text and "never deletes it" in text
    assert (data_dir / DB_NAME).read_bytes() == content


def test_a_refused_open_releases_the_directory_lock(data_dir: Path, clock: Clock):
    data_dir.mkdir()
    (data_dir / DB_NAME).write_bytes(b"garbage" * 100)
    with pytest.raises(StoreError, match="not a SQLite database"):
        open_store(data_dir, clock)
    (data_dir / DB_NAME).unlink()
    store = open_store(data_dir, clock)  # not "in use by another broker"
    store.close()


def test_a_foreign_sqlite_database_is_refused_and_not_changed(data_dir: Path, clock: Clock):
    path = data_dir / DB_NAME
    make_sqlite_file(path)
    before = path.read_bytes()
    with pytest.raises(StoreError) as refused:
        open_store(data_dir, clock)
    text = str(refused.value)
    assert "is a SQLite database but not a router store" in text
    assert "application_id 0x0" in text
    assert "Point --data-dir at router's own directory" in text
    assert path.read_bytes() == before
    with contextlib.closing(sqlite3.connect(path)) as db:
        assert db.execute("SELECT owner FROM accounts").fetchall() == [("someone else",)]
        assert db.execute("PRAGMA application_id").fetchone()[0] == 0


def test_an_empty_sqlite_database_of_another_application_is_refused(data_dir: Path, clock: Clock):
    make_sqlite_file(data_dir / DB_NAME, "PRAGMA application_id = 1234", table=False)
    with pytest.raises(StoreError, match=r"not a router store \(application_id 0x4d2\)"):
        open_store(data_dir, clock)


def test_a_store_written_by_a_newer_router_is_refused(data_dir: Path, clock: Clock):
    open_store(data_dir, clock).close()
    with contextlib.closing(sqlite3.connect(data_dir / DB_NAME)) as db:
        db.execute(f"PRAGMA user_version = {FORMAT_VERSION + 1}")
        db.commit()
    with pytest.raises(StoreError) as refused:
        open_store(data_dir, clock)
    text = str(refused.value)
    assert f"written by a newer router (store format {FORMAT_VERSION + 1}" in text
    assert f"this one reads format {FORMAT_VERSION}" in text
    assert "Upgrade router, or restore the directory from a backup" in text


def test_a_damaged_database_is_refused_with_what_to_do(data_dir: Path, clock: Clock):
    open_store(data_dir, clock).close()
    path = data_dir / DB_NAME
    raw = bytearray(path.read_bytes())
    raw[100:] = b"\xff" * (len(raw) - 100)  # keep the SQLite header, wreck the rest
    path.write_bytes(bytes(raw))
    with pytest.raises(StoreError) as refused:
        open_store(data_dir, clock)
    text = str(refused.value)
    assert "restore it from a backup or move it away to start empty" in text
    assert "never deletes it" in text


def test_an_empty_router_db_file_is_treated_as_a_new_store(data_dir: Path, clock: Clock):
    data_dir.mkdir()
    (data_dir / DB_NAME).write_bytes(b"")
    store = open_store(data_dir, clock)
    try:
        assert store.count_messages() == 0
        assert query(store, "PRAGMA application_id") == [(APPLICATION_ID,)]
    finally:
        store.close()


def test_a_new_store_is_marked_as_router_format_in_wal_mode(store: SQLiteStore):
    assert query(store, "PRAGMA application_id") == [(APPLICATION_ID,)]
    assert query(store, "PRAGMA user_version") == [(FORMAT_VERSION,)]
    assert query(store, "PRAGMA journal_mode") == [("wal",)]
    tables = {name for (name,) in query(store, "SELECT name FROM sqlite_master WHERE type='table'")}
    assert tables >= {"meta", "vhosts", "users", "exchanges", "queues", "bindings", "messages"}
    assert "dedup" in tables


def test_the_schema_is_created_once_and_a_reopen_keeps_the_data(data_dir: Path, clock: Clock):
    store = open_store(data_dir, clock)
    meta = query(store, "SELECT key, value FROM meta ORDER BY key")
    store.vhost_added("kept")
    store.write(store.take_batch())
    store.close()
    again = open_store(data_dir, clock)
    try:
        assert query(again, "SELECT key, value FROM meta ORDER BY key") == meta
        assert [key for key, _ in meta] == ["created", "format"]
        assert query(again, "SELECT name FROM vhosts") == [("kept",)]
        assert again.snapshot().vhosts == ["kept"]
    finally:
        again.close()


# --- batches: recording and cutting ----------------------------------------------------------------


def test_batches_are_numbered_and_each_collects_what_was_recorded_after_the_previous_cut(
    store: SQLiteStore,
):
    woken = []
    store.on_dirty = lambda: woken.append(store.batch)
    assert not store.pending
    store.vhost_added("a")
    store.vhost_added("b")
    assert store.pending and woken == [1]  # one wake-up per batch
    first = store.take_batch()
    assert not store.pending
    store.vhost_added("c")
    second = store.take_batch()
    assert (first.number, second.number, store.batch) == (1, 2, 3)
    assert [params for _sql, params in first.statements] == [("a",), ("b",)]
    assert [params for _sql, params in second.statements] == [("c",)]
    assert woken == [1, 2]


def test_writes_counts_every_recorded_change(broker: Broker, store: SQLiteStore, vhost):
    before = store.writes
    queue = durable_queue(vhost)
    publish(vhost, persistent())
    entry = queue.get(no_ack=False)
    assert entry is not None
    queue.ack(entry)
    assert store.writes - before == 4  # declare, enqueue, deliver, ack


def test_nothing_is_recorded_while_loading(broker: Broker, store: SQLiteStore, vhost):
    store.loading = True
    try:
        broker.add_vhost("v2")
        vhost.declare_exchange("x", "direct", durable=True)
        durable_queue(vhost)
        vhost.bind_queue("x", "q", "k", FieldTable(), None)
    finally:
        store.loading = False
    assert not store.pending
    assert store.take_batch().rows == 0


def test_topology_statements_are_written_in_the_order_they_were_recorded(
    broker: Broker, store: SQLiteStore, vhost
):
    vhost.declare_exchange("x", "direct", durable=True)
    vhost.delete_exchange("x")
    vhost.declare_exchange("x", "fanout", durable=True)
    flush(broker, store)
    assert query(store, "SELECT name, type FROM exchanges") == [("x", "fanout")]


# --- message rows: coalescing by reference -----------------------------------------------------------


def test_a_message_published_and_acked_within_one_batch_is_never_written(
    broker: Broker, store: SQLiteStore, vhost
):
    queue = durable_queue(vhost)
    flush(broker, store)
    publish(vhost, persistent(b"short-lived"))
    entry = queue.get(no_ack=False)
    assert entry is not None
    queue.ack(entry)
    batch = flush(broker, store)
    assert (batch.inserts, batch.updates, batch.deletes) == ([], [], [])
    assert store.stats.messages_skipped == 1
    assert store.stats.messages_written == 0
    assert message_rows(store) == []


def test_a_message_consumed_without_ack_in_its_batch_is_never_written(
    broker: Broker, store: SQLiteStore, vhost
):
    queue = durable_queue(vhost)
    flush(broker, store)
    publish(vhost, persistent())
    assert queue.get(no_ack=True) is not None
    assert flush(broker, store).inserts == []
    assert message_rows(store) == []


def test_a_message_published_in_one_batch_and_acked_in_the_next_is_inserted_then_deleted(
    broker: Broker, store: SQLiteStore, vhost
):
    queue = durable_queue(vhost)
    flush(broker, store)
    publish(vhost, persistent(b"body"))
    first = flush(broker, store)
    assert [row[0] for row in first.inserts] == [row_id(queue, 1)]
    assert message_rows(store) == [(row_id(queue, 1), 0, b"body")]
    entry = queue.get(no_ack=False)
    assert entry is not None
    queue.ack(entry)
    second = flush(broker, store)
    assert second.inserts == [] and second.updates == []
    assert second.deletes == [(row_id(queue, 1),)]
    assert message_rows(store) == []
    assert store.stats.messages_written == 1


def test_a_delivery_after_the_insert_updates_the_stored_delivery_count(
    broker: Broker, store: SQLiteStore, vhost
):
    queue = durable_queue(vhost)
    flush(broker, store)
    publish(vhost, persistent())
    flush(broker, store)
    entry = queue.get(no_ack=False)
    assert entry is not None
    batch = flush(broker, store)
    assert batch.inserts == []
    assert batch.updates == [(1, None, row_id(queue, 1))]
    assert message_rows(store) == [(row_id(queue, 1), 1, b"m")]
    queue.requeue([entry])
    queue.get(no_ack=False)
    flush(broker, store)
    assert message_rows(store) == [(row_id(queue, 1), 2, b"m")]


def test_a_message_delivered_before_its_first_batch_is_inserted_with_its_delivery_count(
    broker: Broker, store: SQLiteStore, vhost
):
    queue = durable_queue(vhost)
    flush(broker, store)
    publish(vhost, persistent())
    assert queue.get(no_ack=False) is not None
    batch = flush(broker, store)
    assert len(batch.inserts) == 1 and batch.updates == []
    assert message_rows(store) == [(row_id(queue, 1), 1, b"m")]


def test_many_changes_to_one_message_in_a_batch_make_one_row(
    broker: Broker, store: SQLiteStore, vhost
):
    queue = durable_queue(vhost)
    flush(broker, store)
    publish(vhost, persistent())
    for _ in range(3):
        entry = queue.get(no_ack=False)
        assert entry is not None
        queue.requeue([entry])
    batch = flush(broker, store)
    assert len(batch.inserts) == 1 and batch.updates == [] and batch.deletes == []
    assert message_rows(store) == [(row_id(queue, 1), 3, b"m")]


def test_messages_are_stored_with_their_routing_properties_and_absolute_deadlines(
    broker: Broker, store: SQLiteStore, vhost, clock: Clock
):
    vhost.declare_exchange("x", "topic", durable=True)
    queue = durable_queue(vhost, **{"x-max-priority": 5})
    vhost.bind_queue("x", "q", "a.#", FieldTable(), None)
    flush(broker, store)
    clock.now = 2.0
    message = persistent(
        b"payload", exchange="x", routing_key="a.b", priority=3, expiration="10000"
    )
    message.cc = ("a.cc",)
    message.bcc = ("a.bcc",)
    publish(vhost, message)
    flush(broker, store)
    rows = query(
        store,
        "SELECT id, level, delivery_count, available_at, expires_at, exchange, routing_key, "
        "keys, properties, body FROM messages",
    )
    assert rows == [
        (
            row_id(queue, 1),
            3,
            0,
            None,
            WALL + 12.0,
            "x",
            "a.b",
            json.dumps([["a.cc"], ["a.bcc"]]),
            message.properties,
            b"payload",
        )
    ]


def test_a_scheduled_message_is_stored_with_the_wall_time_it_becomes_visible(
    broker: Broker, store: SQLiteStore, vhost, clock: Clock
):
    queue = durable_queue(vhost)
    flush(broker, store)
    clock.now = 1.0
    message = persistent()
    message.due_at = 6.0
    publish(vhost, message)
    assert queue.waiting == 1
    flush(broker, store)
    assert query(store, "SELECT available_at, expires_at FROM messages") == [(WALL + 6.0, None)]
    clock.now = 6.0
    broker.tick(6.0)
    assert queue.message_count == 1
    # visible now: the row is not rewritten (nothing recorded), and recovery finds it due
    assert not store.pending


def test_a_backed_off_message_is_stored_with_the_wall_time_it_is_retried(
    broker: Broker, store: SQLiteStore, vhost, clock: Clock
):
    backoff = FieldTable({"initial": 3000})
    queue = durable_queue(vhost, **{"x-retry-backoff": backoff})
    publish(vhost, persistent())
    flush(broker, store)
    clock.now = 1.0
    entry = queue.get(no_ack=False)
    assert entry is not None
    queue.requeue([entry])
    assert queue.waiting == 1
    batch = flush(broker, store)
    assert batch.updates == [(1, WALL + 4.0, row_id(queue, 1))]


def test_rows_of_two_queues_do_not_overlap(broker: Broker, store: SQLiteStore, vhost):
    one = durable_queue(vhost, "one")
    two = durable_queue(vhost, "two")
    for body in (b"1a", b"1b"):
        publish(vhost, persistent(body, routing_key="one"))
    publish(vhost, persistent(b"2a", routing_key="two"))
    flush(broker, store)
    assert one.store_id != two.store_id
    assert [body for (_id, _n, body) in message_rows(store)] == [b"1a", b"1b", b"2a"]
    assert [len(rows) for rows in store.messages(one.store_id)] == [2]
    assert [len(rows) for rows in store.messages(two.store_id)] == [1]


# --- what is stored and what is not ------------------------------------------------------------------


@pytest.mark.parametrize(
    "properties",
    [{"delivery_mode": 1}, {"delivery_mode": None}],
    ids=["delivery-mode-1", "no-delivery-mode"],
)
def test_transient_messages_in_a_durable_queue_are_never_stored(
    broker: Broker, store: SQLiteStore, vhost, properties: dict[str, Any]
):
    queue = durable_queue(vhost)
    flush(broker, store)
    before = store.writes
    publish(vhost, persistent(**properties))
    assert queue.message_count == 1
    assert store.writes == before and not store.pending
    flush(broker, store)
    assert message_rows(store) == []


def test_persistent_messages_in_a_non_durable_queue_are_never_stored(
    broker: Broker, store: SQLiteStore, vhost
):
    queue = vhost.declare_queue("q", owner=None, durable=False)
    before = store.writes
    publish(vhost, persistent())
    entry = queue.get(no_ack=False)
    assert entry is not None
    queue.ack(entry)
    assert store.writes == before and not store.pending
    assert query(store, "SELECT count(*) FROM queues") == [(0,)]


def test_an_exclusive_queue_declared_durable_is_not_stored(
    broker: Broker, store: SQLiteStore, vhost
):
    owner = object()
    queue = vhost.declare_queue("q", owner=owner, durable=True, exclusive=True)
    publish(vhost, persistent())
    assert not queue.durable
    flush(broker, store)
    assert query(store, "SELECT count(*) FROM queues") == [(0,)]
    assert message_rows(store) == []


def test_non_durable_exchanges_are_not_stored_and_durable_ones_are(
    broker: Broker, store: SQLiteStore, vhost
):
    vhost.declare_exchange("transient", "direct", durable=False)
    vhost.declare_exchange("kept", "topic", durable=True, auto_delete=True, internal=True)
    flush(broker, store)
    assert query(store, "SELECT vhost, name, type, auto_delete, internal FROM exchanges") == [
        ("/", "kept", "topic", 1, 1)
    ]
    vhost.delete_exchange("transient")
    assert not store.pending


def test_the_built_in_exchanges_are_not_stored(broker: Broker, store: SQLiteStore):
    broker.add_vhost("other")
    flush(broker, store)
    assert query(store, "SELECT count(*) FROM exchanges") == [(0,)]
    assert query(store, "SELECT name FROM vhosts ORDER BY rowid") == [("/",), ("other",)]


@pytest.mark.parametrize(
    ("exchange_durable", "queue_durable", "stored"),
    [(True, True, True), (False, True, False), (True, False, False), (False, False, False)],
)
def test_a_queue_binding_is_stored_only_when_both_ends_are_durable(
    broker: Broker,
    store: SQLiteStore,
    vhost,
    exchange_durable: bool,
    queue_durable: bool,
    stored: bool,
):
    vhost.declare_exchange("x", "direct", durable=exchange_durable)
    vhost.declare_queue("q", owner=None, durable=queue_durable)
    flush(broker, store)
    vhost.bind_queue("x", "q", "k", FieldTable(), None)
    assert store.pending == stored
    flush(broker, store)
    expected = [("/", "x", "q", "q", "k")] if stored else []
    assert query(store, "SELECT vhost, source, kind, destination, routing_key FROM bindings") == (
        expected
    )


@pytest.mark.parametrize(
    ("source_durable", "destination_durable", "stored"),
    [(True, True, True), (True, False, False), (False, True, False)],
)
def test_an_exchange_to_exchange_binding_is_stored_only_when_both_ends_are_durable(
    broker: Broker,
    store: SQLiteStore,
    vhost,
    source_durable: bool,
    destination_durable: bool,
    stored: bool,
):
    vhost.declare_exchange("src", "topic", durable=source_durable)
    vhost.declare_exchange("dst", "fanout", durable=destination_durable)
    vhost.bind_exchange("src", "dst", "a.*", FieldTable())
    flush(broker, store)
    expected = [("src", "e", "dst", "a.*")] if stored else []
    assert query(store, "SELECT source, kind, destination, routing_key FROM bindings") == expected


def test_a_binding_to_a_durable_queue_from_a_built_in_exchange_is_stored(
    broker: Broker, store: SQLiteStore, vhost
):
    durable_queue(vhost)
    vhost.bind_queue("amq.direct", "q", "k", FieldTable(), None)
    flush(broker, store)
    assert query(store, "SELECT source, destination FROM bindings") == [("amq.direct", "q")]


def test_bindings_that_differ_only_in_arguments_are_separate_rows_and_unbind_removes_one(
    broker: Broker, store: SQLiteStore, vhost
):
    vhost.declare_exchange("h", "headers", durable=True)
    durable_queue(vhost)
    any_ = FieldTable({"x-match": "any", "a": 1})
    all_ = FieldTable({"x-match": "all", "a": 1})
    vhost.bind_queue("h", "q", "", any_, None)
    vhost.bind_queue("h", "q", "", all_, None)
    vhost.bind_queue("h", "q", "", any_, None)  # the same binding again: nothing new
    flush(broker, store)
    assert query(store, "SELECT count(*) FROM bindings") == [(2,)]
    vhost.unbind("h", vhost.queues["q"], "", FieldTable({"a": 1, "x-match": "any"}))
    flush(broker, store)
    assert query(store, "SELECT count(*) FROM bindings") == [(1,)]


# --- deletes ---------------------------------------------------------------------------------------


def test_deleting_a_queue_removes_its_row_its_messages_and_its_bindings_only(
    broker: Broker, store: SQLiteStore, vhost
):
    vhost.declare_exchange("x", "fanout", durable=True)
    doomed = durable_queue(vhost, "doomed")
    kept = durable_queue(vhost, "kept")
    vhost.bind_queue("x", "doomed", "", FieldTable(), None)
    vhost.bind_queue("x", "kept", "", FieldTable(), None)
    publish(vhost, persistent(b"a", exchange="x"))
    publish(vhost, persistent(b"b", exchange="x"))
    assert doomed.get(no_ack=False) is not None  # one unacked: its row goes too
    flush(broker, store)
    assert store.count_messages() == 4
    vhost.delete_queue("doomed", owner=None)
    flush(broker, store)
    assert query(store, "SELECT name FROM queues") == [("kept",)]
    assert query(store, "SELECT destination FROM bindings") == [("kept",)]
    assert [row[0] for row in message_rows(store)] == [row_id(kept, 1), row_id(kept, 2)]


def test_messages_of_a_queue_deleted_before_its_batch_are_never_written(
    broker: Broker, store: SQLiteStore, vhost
):
    durable_queue(vhost)
    flush(broker, store)
    publish(vhost, persistent())
    vhost.delete_queue("q", owner=None)
    batch = flush(broker, store)
    assert batch.inserts == []
    assert query(store, "SELECT count(*) FROM queues") == [(0,)]
    assert message_rows(store) == []


def test_an_ack_after_the_queue_was_deleted_writes_nothing(
    broker: Broker, store: SQLiteStore, vhost
):
    queue = durable_queue(vhost)
    publish(vhost, persistent())
    entry = queue.get(no_ack=False)
    assert entry is not None
    flush(broker, store)
    vhost.delete_queue("q", owner=None)
    flush(broker, store)
    queue.ack(entry)
    batch = flush(broker, store)
    assert (batch.inserts, batch.updates, batch.deletes) == ([], [], [])


def test_a_queue_deleted_and_declared_again_in_one_batch_keeps_only_the_new_messages(
    broker: Broker, store: SQLiteStore, vhost
):
    old = durable_queue(vhost)
    publish(vhost, persistent(b"old"))
    flush(broker, store)
    vhost.delete_queue("q", owner=None)
    new = durable_queue(vhost)
    publish(vhost, persistent(b"new"))
    flush(broker, store)
    assert new.store_id != old.store_id
    assert query(store, "SELECT id, name FROM queues") == [(new.store_id, "q")]
    assert [body for (_id, _n, body) in message_rows(store)] == [b"new"]


def test_purging_a_queue_deletes_its_written_messages(broker: Broker, store: SQLiteStore, vhost):
    queue = durable_queue(vhost)
    publish(vhost, persistent(b"1"))
    publish(vhost, persistent(b"2"))
    flush(broker, store)
    assert queue.purge() == 2
    batch = flush(broker, store)
    assert sorted(batch.deletes) == [(row_id(queue, 1),), (row_id(queue, 2),)]
    assert message_rows(store) == []


def test_deleting_an_exchange_removes_its_bindings_as_source_and_as_destination(
    broker: Broker, store: SQLiteStore, vhost
):
    vhost.declare_exchange("up", "topic", durable=True)
    vhost.declare_exchange("x", "direct", durable=True)
    vhost.declare_exchange("other", "fanout", durable=True)
    durable_queue(vhost)
    vhost.bind_queue("x", "q", "k", FieldTable(), None)
    vhost.bind_exchange("up", "x", "#", FieldTable())
    vhost.bind_queue("other", "q", "", FieldTable(), None)
    flush(broker, store)
    assert query(store, "SELECT count(*) FROM bindings") == [(3,)]
    vhost.delete_exchange("x")
    flush(broker, store)
    assert query(store, "SELECT name FROM exchanges ORDER BY name") == [("other",), ("up",)]
    assert query(store, "SELECT source, destination FROM bindings") == [("other", "q")]


def test_an_auto_delete_exchange_losing_its_last_binding_is_deleted_from_the_store(
    broker: Broker, store: SQLiteStore, vhost
):
    vhost.declare_exchange("ad", "direct", durable=True, auto_delete=True)
    durable_queue(vhost)
    vhost.bind_queue("ad", "q", "k", FieldTable(), None)
    flush(broker, store)
    vhost.unbind("ad", vhost.queues["q"], "k", FieldTable())
    flush(broker, store)
    assert "ad" not in vhost.exchanges
    assert query(store, "SELECT count(*) FROM exchanges") == [(0,)]
    assert query(store, "SELECT count(*) FROM bindings") == [(0,)]


# --- dead-lettering --------------------------------------------------------------------------------


def test_dead_lettering_deletes_the_source_row_and_inserts_the_copy_in_the_same_batch(
    broker: Broker, store: SQLiteStore, vhost
):
    vhost.declare_exchange("dlx", "fanout", durable=True)
    dlq = durable_queue(vhost, "dlq")
    vhost.bind_queue("dlx", "dlq", "", FieldTable(), None)
    source = durable_queue(vhost, "q", **{"x-dead-letter-exchange": "dlx"})
    publish(vhost, persistent(b"poison"))
    flush(broker, store)
    entry = source.get(no_ack=False)
    assert entry is not None
    source.reject([entry])
    batch = flush(broker, store)
    assert batch.deletes == [(row_id(source, 1),)]
    assert [row[0] for row in batch.inserts] == [row_id(dlq, 1)]
    rows = query(store, "SELECT id, exchange, properties, body FROM messages")
    assert [(r[0], r[1], r[3]) for r in rows] == [(row_id(dlq, 1), "dlx", b"poison")]
    assert b"x-death" in rows[0][2]


def test_a_dead_lettered_transient_message_is_stored_nowhere(
    broker: Broker, store: SQLiteStore, vhost
):
    vhost.declare_exchange("dlx", "fanout", durable=True)
    durable_queue(vhost, "dlq")
    vhost.bind_queue("dlx", "dlq", "", FieldTable(), None)
    source = durable_queue(vhost, "q", **{"x-dead-letter-exchange": "dlx"})
    flush(broker, store)
    publish(vhost, persistent(delivery_mode=1))
    entry = source.get(no_ack=False)
    assert entry is not None
    source.reject([entry])
    assert not store.pending
    assert vhost.queues["dlq"].message_count == 1


# --- vhosts, users, exchange deduplication ------------------------------------------------------------


def test_vhosts_and_users_are_recorded_and_a_deleted_user_is_removed(
    broker: Broker, store: SQLiteStore
):
    broker.add_vhost("v2")
    broker.add_vhost("v2")  # already there: no second row
    broker.set_user("alice", "secret")
    broker.set_user("bob", password_hash="c2FsdGhhc2g=")
    flush(broker, store)
    assert query(store, "SELECT name FROM vhosts ORDER BY rowid") == [("/",), ("v2",)]
    users = dict(query(store, "SELECT name, password_hash FROM users"))
    assert users == {"alice": broker.users["alice"], "bob": "c2FsdGhhc2g="}
    assert "secret" not in users["alice"]
    store.user_changed("bob", None)
    flush(broker, store)
    assert query(store, "SELECT name FROM users") == [("alice",)]


def _dedup_exchange(client: FakeClient, name: str, **arguments: Any) -> None:
    table = FieldTable({"x-message-deduplication": True})
    for key, value in arguments.items():
        table["x-" + key.replace("_", "-")] = value
    client.call(
        1, spec.ExchangeDeclare(exchange=name, type="fanout", durable=True, arguments=table)
    )
    assert client.channel_close(1) is None


def _publish_id(client: FakeClient, exchange: str, message_id: str, mode: int = 2) -> None:
    client.publish(
        1, exchange, "", b"x", properties=BasicProperties(message_id=message_id, delivery_mode=mode)
    )


def test_exchange_dedup_keys_are_recorded_with_their_wall_clock_expiry(
    broker: Broker, store: SQLiteStore, clock: Clock
):
    client = FakeClient(broker)
    client.open_channel(1)
    _dedup_exchange(client, "dd", cache_ttl=5000)
    client.call(1, spec.ExchangeDeclare(exchange="plain", type="fanout", durable=True))
    clock.now = client.now = 1.0
    _publish_id(client, "dd", "a")
    _publish_id(client, "dd", "a")  # a duplicate: nothing new remembered
    _publish_id(client, "plain", "b")  # no cache on this exchange
    flush(broker, store)
    assert query(store, "SELECT vhost, exchange, key, expires_at FROM dedup") == [
        ("/", "dd", "m:a", WALL + 6.0)
    ]


def test_a_non_durable_dedup_exchange_records_nothing(broker: Broker, store: SQLiteStore):
    client = FakeClient(broker)
    client.open_channel(1)
    table = FieldTable({"x-message-deduplication": True})
    client.call(1, spec.ExchangeDeclare(exchange="dd", type="fanout", arguments=table))
    flush(broker, store)
    _publish_id(client, "dd", "a")
    flush(broker, store)
    assert query(store, "SELECT count(*) FROM dedup") == [(0,)]


def test_the_stored_dedup_cache_is_trimmed_to_the_exchanges_cache_size(
    broker: Broker, store: SQLiteStore
):
    client = FakeClient(broker)
    client.open_channel(1)
    _dedup_exchange(client, "dd", cache_size=2)
    for key in ("a", "b", "c", "d"):
        _publish_id(client, "dd", key)
    flush(broker, store)
    assert query(store, "SELECT key FROM dedup ORDER BY n") == [("m:c",), ("m:d",)]


def test_trimming_one_exchanges_dedup_rows_keeps_the_keys_still_in_its_cache(
    broker: Broker, store: SQLiteStore
):
    """The trim must count this exchange's keys, not keys remembered by every exchange."""
    client = FakeClient(broker)
    client.open_channel(1)
    _dedup_exchange(client, "small", cache_size=2)
    _dedup_exchange(client, "big", cache_size=100)
    _publish_id(client, "small", "s1")
    for key in ("b1", "b2", "b3"):
        _publish_id(client, "big", key)
    _publish_id(client, "small", "s2")
    flush(broker, store)
    cached = list(broker.vhosts["/"].exchanges["small"].dedup._seen)  # type: ignore[union-attr]
    assert cached == ["m:s1", "m:s2"]
    stored = query(store, "SELECT key FROM dedup WHERE exchange = 'small' ORDER BY n")
    assert stored == [("m:s1",), ("m:s2",)]


def test_deleting_a_dedup_exchange_removes_its_cache_rows(broker: Broker, store: SQLiteStore):
    client = FakeClient(broker)
    client.open_channel(1)
    _dedup_exchange(client, "dd")
    _publish_id(client, "dd", "a")
    flush(broker, store)
    client.call(1, spec.ExchangeDelete(exchange="dd"))
    flush(broker, store)
    assert query(store, "SELECT count(*) FROM dedup") == [(0,)]


# --- failed writes -----------------------------------------------------------------------------------


def test_a_write_on_a_closed_database_raises_store_failed(
    broker: Broker, store: SQLiteStore, vhost
):
    durable_queue(vhost)
    publish(vhost, persistent())
    batch = store.take_batch()
    store._db.close()
    with pytest.raises(StoreFailed, match=rf"writing to {store.path} failed"):
        store.write(batch)
    assert store.stats.batches == 1  # the fixture's batch only: the failed one is not counted


def test_a_failing_statement_raises_store_failed_and_nothing_of_its_batch_is_on_disk(
    data_dir: Path, clock: Clock
):
    store = open_store(data_dir, clock)
    batch = Batch(
        1,
        statements=[
            ("INSERT INTO vhosts (name) VALUES (?)", ("half-written",)),
            ("INSERT INTO no_such_table VALUES (?)", (1,)),
        ],
    )
    with pytest.raises(StoreFailed, match="no such table") as failed:
        store.write(batch)
    assert isinstance(failed.value.__cause__, sqlite3.Error)
    store.close()  # the broker stops; the open transaction is never committed
    again = open_store(data_dir, clock)
    try:
        assert again.snapshot().vhosts == []
    finally:
        again.close()


def test_a_write_that_breaks_a_constraint_raises_store_failed(store: SQLiteStore):
    row = (1, 0, 0, None, None, "", "q", None, b"\x00\x00", b"x")
    batch = Batch(1, inserts=[row])
    batch.statements.append(("INSERT INTO users (name, password_hash) VALUES (?, NULL)", ("u",)))
    with pytest.raises(StoreFailed, match="NOT NULL"):
        store.write(batch)
    assert store.stats.messages_written == 0


def test_write_returns_its_duration_and_counts_rows_and_batches(
    broker: Broker, store: SQLiteStore, vhost
):
    durable_queue(vhost)
    publish(vhost, persistent())
    publish(vhost, persistent())
    batch = store.take_batch()
    elapsed = store.write(batch)
    assert elapsed >= 0
    assert batch.rows == 3  # the queue row and two messages
    assert (store.stats.last_batch_rows, store.stats.messages_written) == (3, 2)
    assert store.stats.recent[-1][0] == 3


def test_store_committed_runs_waiting_actions_in_batch_order_up_to_the_committed_batch(
    broker: Broker, store: SQLiteStore
):
    ran: list[str] = []
    broker.after_commit(lambda: ran.append("a"))
    first = store.take_batch()
    broker.after_commit(lambda: ran.append("b"))
    second = store.take_batch()
    broker.store_committed(first.number)
    assert ran == ["a"]
    broker.store_committed(second.number)
    assert ran == ["a", "b"]
    assert broker.committed_batch == second.number


def test_an_unused_field_array_argument_is_stored_as_given(
    broker: Broker, store: SQLiteStore, vhost
):
    arguments = FieldTable({"x-custom": FieldArray([1, "two"], ["b", "S"])})
    vhost.declare_exchange("x", "direct", durable=True, arguments=arguments)
    flush(broker, store)
    ((raw,),) = query(store, "SELECT arguments FROM exchanges")
    assert b"x-custom" in raw and b"two" in raw


# --- permissions, policies, user tags; format 1 -> 2 ----------------------------------------------

# the schema a format-1 router (before permissions, policies and user tags) created
FORMAT_1_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE vhosts (name TEXT PRIMARY KEY);
CREATE TABLE users (name TEXT PRIMARY KEY, password_hash TEXT NOT NULL);
CREATE TABLE exchanges (
    vhost TEXT NOT NULL, name TEXT NOT NULL, type TEXT NOT NULL,
    auto_delete INTEGER NOT NULL, internal INTEGER NOT NULL, arguments BLOB NOT NULL,
    PRIMARY KEY (vhost, name));
CREATE TABLE queues (
    id INTEGER PRIMARY KEY, vhost TEXT NOT NULL, name TEXT NOT NULL,
    auto_delete INTEGER NOT NULL, arguments BLOB NOT NULL,
    redelivered_upto INTEGER NOT NULL DEFAULT 0, UNIQUE (vhost, name));
CREATE TABLE bindings (
    vhost TEXT NOT NULL, source TEXT NOT NULL, kind TEXT NOT NULL, destination TEXT NOT NULL,
    routing_key TEXT NOT NULL, arguments BLOB NOT NULL,
    PRIMARY KEY (vhost, source, kind, destination, routing_key, arguments));
CREATE TABLE messages (
    id INTEGER PRIMARY KEY,
    level INTEGER NOT NULL, delivery_count INTEGER NOT NULL,
    available_at REAL, expires_at REAL,
    exchange TEXT NOT NULL, routing_key TEXT NOT NULL, keys TEXT,
    properties BLOB NOT NULL, body BLOB NOT NULL);
CREATE TABLE dedup (
    vhost TEXT NOT NULL, exchange TEXT NOT NULL, key TEXT NOT NULL, n INTEGER NOT NULL,
    expires_at REAL, PRIMARY KEY (vhost, exchange, key));
"""


def _format_1_store(data_dir: Path) -> None:
    data_dir.mkdir()
    with contextlib.closing(sqlite3.connect(data_dir / DB_NAME)) as db:
        db.executescript(FORMAT_1_SCHEMA)
        db.execute("INSERT INTO vhosts (name) VALUES ('/'), ('tenant')")
        db.execute("INSERT INTO users (name, password_hash) VALUES ('alice', 'aGFzaA==')")
        db.execute(f"PRAGMA application_id = {APPLICATION_ID}")
        db.execute("PRAGMA user_version = 1")
        db.commit()


def test_a_format_1_store_is_upgraded_in_place_to_the_current_format(data_dir: Path, clock: Clock):
    _format_1_store(data_dir)
    store = open_store(data_dir, clock)
    try:
        assert query(store, "PRAGMA user_version") == [(FORMAT_VERSION,)]
        assert store.snapshot().policies == []
    finally:
        store.close()


def test_an_upgraded_store_keeps_every_stored_user_able_to_do_everything(
    data_dir: Path, clock: Clock
):
    _format_1_store(data_dir)
    store = open_store(data_dir, clock)
    try:
        snapshot = store.snapshot()
        assert snapshot.users == [("alice", "aGFzaA==", ("administrator",))]
        assert sorted(snapshot.permissions) == [
            ("alice", "/", ".*", ".*", ".*"),
            ("alice", "tenant", ".*", ".*", ".*"),
        ]
    finally:
        store.close()


def test_user_tags_permissions_and_policies_are_recorded(broker: Broker, store: SQLiteStore):
    broker.set_user("alice", "secret", tags=("management", "policymaker"))
    broker.set_permissions("alice", "/", "^a", "^b", "^c")
    broker.set_policy(Policy("/", "ttl", "^q", "queues", 3, {"message-ttl": 1000}))
    flush(broker, store)
    snapshot = store.snapshot()
    assert ("alice", broker.users["alice"], ("management", "policymaker")) in snapshot.users
    assert ("alice", "/", "^a", "^b", "^c") in snapshot.permissions
    assert snapshot.policies == [("/", "ttl", "^q", "queues", 3, {"message-ttl": 1000})]


def test_a_cleared_permission_and_policy_leave_no_row(broker: Broker, store: SQLiteStore):
    broker.set_user("alice", "secret")
    broker.set_permissions("alice", "/", ".*", ".*", ".*")
    broker.set_policy(Policy("/", "ttl", "^q", "queues", 0, {"message-ttl": 1000}))
    flush(broker, store)
    broker.clear_permissions("alice", "/")
    broker.clear_policy("/", "ttl")
    flush(broker, store)
    assert query(store, "SELECT * FROM permissions WHERE user = 'alice'") == []
    assert query(store, "SELECT * FROM policies") == []


def test_a_deleted_vhost_leaves_no_row_of_its_own(broker: Broker, store: SQLiteStore):
    tenant = broker.add_vhost("tenant")
    broker.set_permissions("guest", "tenant", ".*", ".*", ".*")
    broker.set_policy(Policy("tenant", "p", ".*", "all", 0, {"max-length": 1}))
    tenant.declare_exchange("x", "direct", durable=True)
    durable_queue(tenant, "q")
    tenant.bind_queue("x", "q", "k", FieldTable(), None)
    publish(tenant, persistent(exchange="x", routing_key="k"))
    flush(broker, store)
    broker.delete_vhost("tenant")
    flush(broker, store)
    for table in ("exchanges", "queues", "bindings", "permissions", "policies"):
        assert query(store, f"SELECT count(*) FROM {table} WHERE vhost = 'tenant'") == [(0,)]
    assert query(store, "SELECT count(*) FROM messages") == [(0,)]
    assert query(store, "SELECT name FROM vhosts") == [("/",)]
