"""The durable store: SQLite in WAL mode, written in batches (group commit).

The model records changes through ``broker.ports.Store`` as they happen, without waiting: topology
changes as SQL statements in order, messages by reference (entry → queue). The runtime's flusher
cuts a batch (``take_batch``, on the event loop: it reads the entries' state *now*), writes it in
a worker thread as one transaction and one fsync (``write``), and calls
``Broker.store_committed``. While one batch is written the next one collects, so under load many
messages share an fsync, and with no load a lone message is written at once: there is no timer.

A message published and acked (or dead-lettered, expired...) before its batch is cut is never
written. Dead-lettering removes the source row and inserts the copies in one batch, hence one
transaction.

Layout of ``DATA_DIR``: ``router.db`` (+ ``-wal``, ``-shm``), and ``router.lock`` (an advisory
lock held while a broker runs, with its pid). The database carries ``PRAGMA application_id`` and
``user_version`` so that a foreign or newer file is refused with a message saying what to do, and
an older one is migrated in place (``_migrate``, one transaction).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import sqlite3
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from router.amqp.tables import encode_table
from router.broker.exchanges.base import Exchange
from router.broker.message import (
    GONE,
    PAGED,
    READY,
    UNWRITTEN,
    WAITING,
    WRITTEN,
    Message,
    QueuedMessage,
)
from router.broker.ports import Clock

if TYPE_CHECKING:
    from router.broker.exchanges.base import Binding
    from router.broker.permissions import Permission
    from router.broker.policies import Policy
    from router.broker.queues import Queue

APPLICATION_ID = 0x726F7574  # "rout"
FORMAT_VERSION = 2  # 1: before users had tags and there were permissions and policies
DB_NAME = "router.db"
LOCK_NAME = "router.lock"
SEQ_BITS = 40  # a message row's id: queue number << 40 | position in the queue
SEQ_MASK = (1 << SEQ_BITS) - 1
# Bodies smaller than this stay in memory whatever the budget: a paged message keeps its
# properties and routing info, so dropping a tiny body would save next to nothing.
PAGE_MIN_BODY = 256
READ_AHEAD = 256  # bodies read per query when delivering paged messages

SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE vhosts (name TEXT PRIMARY KEY);
CREATE TABLE users (
    name TEXT PRIMARY KEY, password_hash TEXT NOT NULL, tags TEXT NOT NULL DEFAULT '[]');
CREATE TABLE permissions (
    user TEXT NOT NULL, vhost TEXT NOT NULL,
    configure TEXT NOT NULL, write TEXT NOT NULL, read TEXT NOT NULL,
    PRIMARY KEY (user, vhost));
CREATE TABLE policies (
    vhost TEXT NOT NULL, name TEXT NOT NULL, pattern TEXT NOT NULL, apply_to TEXT NOT NULL,
    priority INTEGER NOT NULL, definition TEXT NOT NULL, PRIMARY KEY (vhost, name));
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

# Format 1 -> 2, in one transaction: users get tags; permissions and policies get tables. A
# format-1 broker let every user do everything on every vhost, so every stored user keeps
# that (".*" on every stored vhost, tag administrator): nothing stops working after an upgrade.
MIGRATE_1_TO_2 = """
ALTER TABLE users ADD COLUMN tags TEXT NOT NULL DEFAULT '[]';
CREATE TABLE permissions (
    user TEXT NOT NULL, vhost TEXT NOT NULL,
    configure TEXT NOT NULL, write TEXT NOT NULL, read TEXT NOT NULL,
    PRIMARY KEY (user, vhost));
CREATE TABLE policies (
    vhost TEXT NOT NULL, name TEXT NOT NULL, pattern TEXT NOT NULL, apply_to TEXT NOT NULL,
    priority INTEGER NOT NULL, definition TEXT NOT NULL, PRIMARY KEY (vhost, name));
INSERT INTO permissions (user, vhost, configure, write, read)
    SELECT users.name, vhosts.name, '.*', '.*', '.*' FROM users, vhosts;
UPDATE users SET tags = '["administrator"]'
"""

_INSERT_MESSAGE = (
    "INSERT OR REPLACE INTO messages (id, level, delivery_count, available_at, expires_at, "
    "exchange, routing_key, keys, properties, body) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_UPDATE_MESSAGE = "UPDATE messages SET delivery_count = ?, available_at = ? WHERE id = ?"
_DELETE_MESSAGE = "DELETE FROM messages WHERE id = ?"


class StoreError(Exception):
    """The data directory cannot be used; the message says why and what to do."""


class StoreFailed(Exception):
    """Writing a batch failed (e.g. fsync): the broker must stop, and recover on the next start."""


@dataclass
class Batch:
    """One transaction: topology statements in order, then message rows."""

    number: int
    statements: list[tuple[str, tuple[Any, ...]]] = field(default_factory=list)
    inserts: list[tuple[Any, ...]] = field(default_factory=list)
    updates: list[tuple[Any, ...]] = field(default_factory=list)
    deletes: list[tuple[int]] = field(default_factory=list)
    # entries inserted by this batch that may have their body dropped once it is on disk
    pageable: list[tuple[QueuedMessage, Queue]] = field(default_factory=list)

    @property
    def rows(self) -> int:
        return len(self.statements) + len(self.inserts) + len(self.updates) + len(self.deletes)


@dataclass
class StoreStats:
    """Group-commit figures (management API and logs)."""

    batches: int = 0
    rows: int = 0
    messages_written: int = 0  # message rows inserted
    messages_skipped: int = 0  # stored messages gone before their batch: never written
    paged_out: int = 0  # bodies dropped from memory (on disk only)
    paged_in: int = 0  # bodies read back to deliver or dead-letter
    last_batch_rows: int = 0
    max_batch_rows: int = 0
    write_seconds: float = 0.0
    recent: list[tuple[int, float]] = field(default_factory=list)  # (rows, seconds), last 256


@dataclass
class Snapshot:
    """Everything read back at start."""

    vhosts: list[str]
    users: list[tuple[str, str, tuple[str, ...]]]  # name, password hash, tags
    permissions: list[tuple[str, str, str, str, str]]  # user, vhost, configure, write, read
    policies: list[tuple[str, str, str, str, int, dict[str, Any]]]  # RabbitMQ's policy fields
    exchanges: list[tuple[str, str, str, bool, bool, bytes]]
    queues: list[tuple[int, str, str, bool, bytes, int]]
    bindings: list[tuple[str, str, str, str, str, bytes]]
    dedup: list[tuple[str, str, str, float | None]]


class SQLiteStore:
    """``broker.ports.Store`` on a SQLite file. Open it with ``open_store``."""

    def __init__(
        self,
        data_dir: Path,
        db: sqlite3.Connection,
        lock_fd: int,
        clock: Clock,
        *,
        memory_budget: int | None = None,
    ) -> None:
        self.data_dir = data_dir
        self.path = data_dir / DB_NAME
        self._db = db
        # the event loop's own connection, for reading paged bodies back (WAL: readers see the
        # last commit and never wait for the writer)
        self._reader = sqlite3.connect(
            f"file:{self.path}?mode=ro", uri=True, isolation_level=None, check_same_thread=False
        )
        self._read_ahead: dict[int, bytes] = {}
        # bytes of stored message bodies held in memory; above the budget, newly written bodies
        # of ready messages are dropped and read back on delivery (None: no limit)
        self.memory_budget = memory_budget
        self.resident = 0
        self._lock_fd = lock_fd
        self.clock = clock
        self.batch = 1
        self.writes = 0
        self.loading = False
        self.stats = StoreStats()
        # called when the first change of a batch is recorded (the runtime's flusher wakes up)
        self.on_dirty: Callable[[], None] = lambda: None
        self._statements: list[tuple[str, tuple[Any, ...]]] = []
        self._dirty: dict[QueuedMessage, Queue] = {}
        self._pending = False
        # Was the last run stopped cleanly? If not, a message may have been delivered (or even
        # acked) after the last batch that recorded it: recovery then marks every message
        # redelivered, as RabbitMQ does after an unclean shutdown, so the flag never lies.
        row = db.execute("SELECT value FROM meta WHERE key = 'state'").fetchone()
        self.unclean = row is not None and row[0] != "stopped"
        row = db.execute("SELECT max(id) FROM queues").fetchone()
        self._next_queue = (row[0] or 0) + 1
        row = db.execute("SELECT max(n) FROM dedup").fetchone()
        self._dedup_n = row[0] or 0
        self._dedup_trim: dict[tuple[str, str], int] = {}  # (vhost, exchange) -> cache size

    # --- recording (the model calls these; nothing waits) --------------------------------------

    def _changed(self) -> None:
        self.writes += 1
        if not self._pending:
            self._pending = True
            self.on_dirty()

    def _statement(self, sql: str, params: tuple[Any, ...]) -> None:
        if self.loading:
            return
        self._statements.append((sql, params))
        self._changed()

    def message_changed(self, queue: Queue, entry: QueuedMessage) -> None:
        # runs up to three times per persistent message (publish, deliver, ack): ``_changed``
        # is inlined
        self._dirty[entry] = queue
        self.writes += 1
        if not self._pending:
            self._pending = True
            self.on_dirty()

    def queue_declared(self, queue: Queue) -> None:
        if self.loading:
            return
        queue.store_id = self._next_queue
        self._next_queue += 1
        self._statement(
            "INSERT OR REPLACE INTO queues (id, vhost, name, auto_delete, arguments) "
            "VALUES (?, ?, ?, ?, ?)",
            (
                queue.store_id,
                queue.vhost,
                queue.name,
                int(queue.auto_delete),
                encode_table(queue.arguments),
            ),
        )

    def queue_deleted(self, queue: Queue) -> None:
        if not queue.store_id:
            return
        first = queue.store_id << SEQ_BITS
        self._statement("DELETE FROM queues WHERE id = ?", (queue.store_id,))
        self._statement("DELETE FROM messages WHERE id BETWEEN ? AND ?", (first, first + SEQ_MASK))
        self._statement(
            "DELETE FROM bindings WHERE vhost = ? AND kind = 'q' AND destination = ?",
            (queue.vhost, queue.name),
        )

    def exchange_declared(self, exchange: Exchange) -> None:
        self._statement(
            "INSERT OR REPLACE INTO exchanges (vhost, name, type, auto_delete, internal, "
            "arguments) VALUES (?, ?, ?, ?, ?, ?)",
            (
                exchange.vhost,
                exchange.name,
                exchange.TYPE,
                int(exchange.auto_delete),
                int(exchange.internal),
                encode_table(exchange.arguments),
            ),
        )

    def exchange_deleted(self, exchange: Exchange) -> None:
        vhost, name = exchange.vhost, exchange.name
        self._statement("DELETE FROM exchanges WHERE vhost = ? AND name = ?", (vhost, name))
        self._statement(
            "DELETE FROM bindings WHERE vhost = ? AND (source = ? OR (kind = 'e' AND "
            "destination = ?))",
            (vhost, name, name),
        )
        self._statement("DELETE FROM dedup WHERE vhost = ? AND exchange = ?", (vhost, name))

    def _binding_row(self, binding: Binding) -> tuple[Any, ...]:
        destination = binding.destination
        kind = "e" if isinstance(destination, Exchange) else "q"
        return (
            binding.source.vhost,
            binding.source.name,
            kind,
            destination.name,
            binding.routing_key,
            binding.key[2],  # the arguments, encoded order-insensitively
        )

    def binding_added(self, binding: Binding) -> None:
        self._statement(
            "INSERT OR IGNORE INTO bindings (vhost, source, kind, destination, routing_key, "
            "arguments) VALUES (?, ?, ?, ?, ?, ?)",
            self._binding_row(binding),
        )

    def binding_removed(self, binding: Binding) -> None:
        self._statement(
            "DELETE FROM bindings WHERE vhost = ? AND source = ? AND kind = ? AND "
            "destination = ? AND routing_key = ? AND arguments = ?",
            self._binding_row(binding),
        )

    def vhost_added(self, name: str) -> None:
        self._statement("INSERT OR IGNORE INTO vhosts (name) VALUES (?)", (name,))

    def vhost_deleted(self, name: str) -> None:
        # its queues (and their messages) were deleted one by one just before (queue_deleted)
        for table in ("bindings", "exchanges", "queues", "dedup", "permissions", "policies"):
            self._statement(f"DELETE FROM {table} WHERE vhost = ?", (name,))
        self._statement("DELETE FROM vhosts WHERE name = ?", (name,))

    def user_changed(
        self, name: str, password_hash: str | None, tags: tuple[str, ...] = ()
    ) -> None:
        if password_hash is None:
            self._statement("DELETE FROM users WHERE name = ?", (name,))
            self._statement("DELETE FROM permissions WHERE user = ?", (name,))
        else:
            self._statement(
                "INSERT OR REPLACE INTO users (name, password_hash, tags) VALUES (?, ?, ?)",
                (name, password_hash, json.dumps(list(tags))),
            )

    def permission_changed(self, user: str, vhost: str, permission: Permission | None) -> None:
        if permission is None:
            self._statement("DELETE FROM permissions WHERE user = ? AND vhost = ?", (user, vhost))
        else:
            self._statement(
                "INSERT OR REPLACE INTO permissions (user, vhost, configure, write, read) "
                "VALUES (?, ?, ?, ?, ?)",
                (user, vhost, permission.configure, permission.write, permission.read),
            )

    def policy_changed(self, vhost: str, name: str, policy: Policy | None) -> None:
        if policy is None:
            self._statement("DELETE FROM policies WHERE vhost = ? AND name = ?", (vhost, name))
        else:
            self._statement(
                "INSERT OR REPLACE INTO policies (vhost, name, pattern, apply_to, priority, "
                "definition) VALUES (?, ?, ?, ?, ?, ?)",
                (
                    vhost,
                    name,
                    policy.pattern,
                    policy.apply_to,
                    policy.priority,
                    json.dumps(policy.definition),
                ),
            )

    def dedup_remembered(self, exchange: Exchange, key: str, expires_at: float | None) -> None:
        if self.loading:
            return
        self._dedup_n += 1
        wall = expires_at + self.clock.wall_offset if expires_at is not None else None
        self._statement(
            "INSERT OR REPLACE INTO dedup (vhost, exchange, key, n, expires_at) "
            "VALUES (?, ?, ?, ?, ?)",
            (exchange.vhost, exchange.name, key, self._dedup_n, wall),
        )
        assert exchange.dedup is not None
        self._dedup_trim[(exchange.vhost, exchange.name)] = exchange.dedup.size

    # --- batches (the runtime calls these) -----------------------------------------------------

    @property
    def pending(self) -> bool:
        return self._pending

    def take_batch(self) -> Batch:
        """Cut the batch collected so far (on the event loop: reads the entries' state now)."""
        batch = Batch(self.batch, self._statements)
        self.batch += 1
        self._statements = []
        self._pending = False
        dirty, self._dirty = self._dirty, {}
        offset = self.clock.wall_offset
        inserts, updates, deletes = batch.inserts, batch.updates, batch.deletes
        skipped = 0
        budgeted = self.memory_budget is not None
        for entry, queue in dirty.items():
            if queue.deleted or not queue.store_id:
                continue  # the queue's rows go with it
            row_id = (queue.store_id << SEQ_BITS) | entry.seq
            stored = entry.stored
            if entry.state == GONE:
                if stored == WRITTEN:
                    deletes.append((row_id,))
                    self.resident -= entry.message.size
                elif stored == PAGED:
                    deletes.append((row_id,))
                else:
                    skipped += 1
                continue
            available = queue.stored_available_at(entry)
            if available is not None:
                available += offset
            if stored == UNWRITTEN:
                entry.stored = WRITTEN
                message = entry.message
                self.resident += message.size
                if message.size >= PAGE_MIN_BODY and (budgeted or queue.options.lazy):
                    batch.pageable.append((entry, queue))
                keys = json.dumps([message.cc, message.bcc]) if message.cc or message.bcc else None
                inserts.append(
                    (
                        row_id,
                        entry.level,
                        entry.delivery_count,
                        available,
                        entry.expires_at + offset if entry.expires_at is not None else None,
                        message.exchange,
                        message.routing_key,
                        keys,
                        message.properties,
                        message.body,
                    )
                )
            else:
                updates.append((entry.delivery_count, available, row_id))
        if self._dedup_trim:
            for (vhost, exchange), size in self._dedup_trim.items():
                # the cache keeps this exchange's last ``size`` keys: so do its rows
                batch.statements.append(
                    (
                        "DELETE FROM dedup WHERE vhost = ? AND exchange = ? AND n NOT IN "
                        "(SELECT n FROM dedup WHERE vhost = ? AND exchange = ? "
                        "ORDER BY n DESC LIMIT ?)",
                        (vhost, exchange, vhost, exchange, size),
                    )
                )
            self._dedup_trim = {}
        self.stats.messages_skipped += skipped
        return batch

    def write(self, batch: Batch) -> float:
        """Write one batch as one transaction (in a worker thread). Returns the seconds it took.
        Any failure is ``StoreFailed``: the caller must not go on as if it were written."""
        started = time.perf_counter()
        db = self._db
        try:
            db.execute("BEGIN IMMEDIATE")
            for sql, params in batch.statements:
                db.execute(sql, params)
            if batch.inserts:
                db.executemany(_INSERT_MESSAGE, batch.inserts)
            if batch.updates:
                db.executemany(_UPDATE_MESSAGE, batch.updates)
            if batch.deletes:
                db.executemany(_DELETE_MESSAGE, batch.deletes)
            db.execute("COMMIT")  # synchronous=FULL: the WAL is fsynced before this returns
        except sqlite3.Error as error:
            raise StoreFailed(f"writing to {self.path} failed: {error}") from error
        elapsed = time.perf_counter() - started
        stats = self.stats
        stats.batches += 1
        rows = batch.rows
        stats.rows += rows
        stats.messages_written += len(batch.inserts)
        stats.last_batch_rows = rows
        stats.max_batch_rows = max(stats.max_batch_rows, rows)
        stats.write_seconds += elapsed
        stats.recent.append((rows, elapsed))
        if len(stats.recent) > 256:
            del stats.recent[:128]
        return elapsed

    def page_out(self, batch: Batch) -> None:
        """After ``batch`` is on disk (on the event loop): while over the memory budget, drop the
        bodies it wrote of messages still waiting in their queues. They are the newest, at the
        tails, so the queue heads keep theirs and delivery rarely reads from disk."""
        budget = self.memory_budget
        over = budget is not None and self.resident > budget
        for entry, queue in batch.pageable:
            if not (over or queue.options.lazy):
                continue
            if entry.stored != WRITTEN or entry.state not in (READY, WAITING) or queue.deleted:
                continue
            entry.message = entry.message.paged_copy()
            entry.stored = PAGED
            self.resident -= entry.message.size
            self.stats.paged_out += 1
            over = budget is not None and self.resident > budget

    def load(self, queue: Queue, entry: QueuedMessage) -> Message:
        """Read a paged entry's body back (and the next few of its queue, which are likely to be
        delivered next)."""
        row_id = (queue.store_id << SEQ_BITS) | entry.seq
        body = self._read_ahead.pop(row_id, None)
        if body is None:
            self._read_ahead.clear()
            rows = self._reader.execute(
                "SELECT id, body FROM messages WHERE id >= ? AND id <= ? ORDER BY id LIMIT ?",
                (row_id, (queue.store_id << SEQ_BITS) | SEQ_MASK, READ_AHEAD),
            ).fetchall()
            self._read_ahead = dict(rows)
            body = self._read_ahead.pop(row_id, None)
            if body is None:
                raise StoreFailed(
                    f"message {entry.seq} of queue '{queue.name}' is missing from {self.path}"
                )
        self.stats.paged_in += 1
        return entry.message.with_body(body)

    def set_redelivered_upto(self, marks: list[tuple[int, int]]) -> None:
        """After a crash: every message up to position ``seq`` of queue ``id`` may have been
        delivered, and stays marked redelivered across later restarts. (queue id, seq) pairs."""
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        db.executemany("UPDATE queues SET redelivered_upto = ? WHERE id = ?", marks)
        db.execute("COMMIT")

    def mark(self, state: str) -> None:
        """Record the broker's state: "running" once recovered, "stopped" after a clean stop
        (everything drained). Called when no batch is being written."""
        self._db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('state', ?)", (state,))

    # --- reading back ---------------------------------------------------------------------------

    def snapshot(self) -> Snapshot:
        db = self._db
        return Snapshot(
            vhosts=[r[0] for r in db.execute("SELECT name FROM vhosts ORDER BY rowid")],
            users=[
                (name, password_hash, tuple(json.loads(tags)))
                for name, password_hash, tags in db.execute(
                    "SELECT name, password_hash, tags FROM users ORDER BY rowid"
                )
            ],
            permissions=list(
                db.execute(
                    "SELECT user, vhost, configure, write, read FROM permissions ORDER BY rowid"
                )
            ),
            policies=[
                (v, n, p, a, prio, json.loads(d))
                for v, n, p, a, prio, d in db.execute(
                    "SELECT vhost, name, pattern, apply_to, priority, definition FROM policies "
                    "ORDER BY rowid"
                )
            ],
            exchanges=[
                (v, n, t, bool(a), bool(i), args)
                for v, n, t, a, i, args in db.execute(
                    "SELECT vhost, name, type, auto_delete, internal, arguments FROM exchanges "
                    "ORDER BY rowid"
                )
            ],
            queues=[
                (i, v, n, bool(a), args, upto)
                for i, v, n, a, args, upto in db.execute(
                    "SELECT id, vhost, name, auto_delete, arguments, redelivered_upto FROM "
                    "queues ORDER BY id"
                )
            ],
            bindings=list(
                db.execute(
                    "SELECT vhost, source, kind, destination, routing_key, arguments FROM "
                    "bindings ORDER BY rowid"
                )
            ),
            dedup=list(db.execute("SELECT vhost, exchange, key, expires_at FROM dedup ORDER BY n")),
        )

    def messages(
        self, queue_id: int, chunk: int = 2_000, *, bodies: Callable[[], bool] = lambda: True
    ) -> Iterator[list[tuple[Any, ...]]]:
        """A queue's message rows in position order, in chunks. The last column is the body, or
        None (left on disk) when ``bodies()`` says no for that chunk and the body is not tiny
        (``PAGE_MIN_BODY``, the rule ``page_out`` follows); the one before is its length."""
        first = queue_id << SEQ_BITS
        last = first + SEQ_MASK
        after = first - 1
        db = self._db
        while True:
            rows = db.execute(
                "SELECT id, level, delivery_count, available_at, expires_at, exchange, "
                "routing_key, keys, properties, length(body), "
                "CASE WHEN ? OR length(body) < ? THEN body END "
                "FROM messages WHERE id > ? AND id <= ? ORDER BY id LIMIT ?",
                (bodies(), PAGE_MIN_BODY, after, last, chunk),
            ).fetchall()
            if not rows:
                return
            yield rows
            after = rows[-1][0]

    def count_messages(self) -> int:
        return int(self._db.execute("SELECT count(*) FROM messages").fetchone()[0])

    def close(self) -> None:
        with contextlib.suppress(sqlite3.Error):
            self._reader.close()
        with contextlib.suppress(sqlite3.Error):
            self._db.close()
        with contextlib.suppress(OSError):
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            os.close(self._lock_fd)


# --- opening ----------------------------------------------------------------------------------


def open_store(
    data_dir: str | Path, clock: Clock, *, memory_budget: int | None = None
) -> SQLiteStore:
    """Lock ``data_dir`` (created if missing) and open or create its database.

    Raises ``StoreError`` with what is wrong and what to do: the directory is in use by another
    broker, the file is not a router store, it was written by a newer router, or it is damaged.
    """
    directory = Path(data_dir)
    if directory.exists() and not directory.is_dir():
        raise StoreError(
            f"the data directory '{directory}' is not a directory (it is a file). Remove or rename "
            f"it, or choose another with --data-dir."
        )
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise StoreError(
            f"cannot create the data directory '{directory}': {error.strerror}. Create it, or "
            f"choose another with --data-dir."
        ) from None
    lock_fd = _lock(directory)
    try:
        db = _open_database(directory / DB_NAME)
    except BaseException:
        fcntl.flock(lock_fd, fcntl.LOCK_UN)
        os.close(lock_fd)
        raise
    return SQLiteStore(directory, db, lock_fd, clock, memory_budget=memory_budget)


def _lock(directory: Path) -> int:
    path = directory / LOCK_NAME
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as error:
        raise StoreError(
            f"cannot open '{path}': {error.strerror}. Check the permissions of the data "
            f"directory, or choose another with --data-dir."
        ) from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        try:
            holder = os.pread(fd, 200, 0).decode("utf-8", "replace").strip() or "unknown"
        finally:
            os.close(fd)
        raise StoreError(
            f"the data directory '{directory}' is in use by another broker (pid {holder}). "
            f"Stop that broker first, or give this one its own --data-dir."
        ) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


def _open_database(path: Path) -> sqlite3.Connection:
    existed = path.exists() and path.stat().st_size > 0
    if existed:
        with path.open("rb") as file:
            header = file.read(16)
        if header != b"SQLite format 3\x00":
            raise StoreError(
                f"'{path}' is not a router store (not a SQLite database). Move it away to start "
                f"with an empty store, or point --data-dir at the right directory; router never "
                f"deletes it."
            )
    try:
        db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        app_id = db.execute("PRAGMA application_id").fetchone()[0]
        version = db.execute("PRAGMA user_version").fetchone()[0]
        tables = db.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
    except sqlite3.DatabaseError as error:
        raise StoreError(
            f"'{path}' cannot be read ({error}). If it is damaged, restore it from a backup or "
            f"move it away to start empty; router never deletes it."
        ) from None
    if app_id != APPLICATION_ID and (app_id != 0 or tables):
        db.close()
        raise StoreError(
            f"'{path}' is a SQLite database but not a router store (application_id "
            f"{app_id:#x}). Point --data-dir at router's own directory; router never changes "
            f"a foreign file."
        )
    if version > FORMAT_VERSION:
        db.close()
        raise StoreError(
            f"'{path}' was written by a newer router (store format {version}; this one reads "
            f"format {FORMAT_VERSION}). Upgrade router, or restore the directory from a backup."
        )
    try:
        db.execute("PRAGMA journal_mode=WAL")
        # FULL: a commit returns once the WAL is fsynced, so a confirmed message survives a
        # power loss too (NORMAL would survive only a process crash)
        db.execute("PRAGMA synchronous=FULL")
        if not tables:
            db.execute("BEGIN IMMEDIATE")
            # statement by statement: executescript would commit on its own
            for statement in SCHEMA.split(";"):
                if statement.strip():
                    db.execute(statement)
            db.execute(
                "INSERT INTO meta (key, value) VALUES ('format', 'router-store'), ('created', ?)",
                (time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),),
            )
            db.execute(f"PRAGMA application_id = {APPLICATION_ID}")
            db.execute(f"PRAGMA user_version = {FORMAT_VERSION}")
            db.execute("COMMIT")
        else:
            db.execute("SELECT count(*) FROM messages").fetchone()
            if version < FORMAT_VERSION:
                _migrate(db, version)
    except sqlite3.DatabaseError as error:
        db.close()
        raise StoreError(
            f"'{path}' cannot be used ({error}). If it is damaged, restore it from a backup or "
            f"move it away to start empty; router never deletes it."
        ) from None
    return db


def _migrate(db: sqlite3.Connection, version: int) -> None:
    """Bring a store written by an older router to ``FORMAT_VERSION``, in one transaction (a
    failure leaves the file as it was)."""
    db.execute("BEGIN IMMEDIATE")
    try:
        if version < 2:
            for statement in MIGRATE_1_TO_2.split(";"):
                if statement.strip():
                    db.execute(statement)
        db.execute(f"PRAGMA user_version = {FORMAT_VERSION}")
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise
