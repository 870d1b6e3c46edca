"""The store flusher: group commit without a timer.

One task for the broker. It sleeps until the store records a change, cuts the batch (on the event
loop, so the rows are a consistent picture of the model), writes it in a worker thread as one
transaction and one fsync, then tells the broker, which releases the confirms and tx.commit-oks
that waited for it. Changes recorded while a batch is being written form the next batch, which
starts as soon as the previous one is durable: under load one fsync carries many messages, and a
lone message is written at once.

A failed write is fatal: the task raises ``StoreFailed``, the broker stops without sending any
confirm for the failed batch, and the next start recovers from what is on disk.
"""

from __future__ import annotations

import logging
import time

import trio

from router.broker.broker import Broker
from router.store.sqlite import SQLiteStore, StoreFailed

log = logging.getLogger("router.store")

REPORT_EVERY = 10.0  # seconds between group-commit summaries in the debug log


class StoreFlusher:
    def __init__(self, broker: Broker, store: SQLiteStore) -> None:
        self.broker = broker
        self.store = store
        self._dirty = trio.Event()
        self._idle = trio.Event()
        store.on_dirty = self._dirty.set

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        store = self.store
        task_status.started()
        last_report = time.monotonic()
        reported = (0, 0)
        while True:
            while not store.pending:
                self._idle.set()
                await self._dirty.wait()
                self._dirty = trio.Event()
                store.on_dirty = self._dirty.set
            self._idle = trio.Event()
            batch = store.take_batch()
            try:
                await trio.to_thread.run_sync(store.write, batch)
            except StoreFailed as error:
                log.critical(
                    "%s. Stopping now: nothing in this batch was confirmed, and the next start "
                    "recovers from what is on disk.",
                    error,
                )
                raise
            self.broker.store_committed(batch.number)
            if batch.pageable:
                store.page_out(batch)
            now = time.monotonic()
            if now - last_report >= REPORT_EVERY:
                stats = store.stats
                batches = stats.batches - reported[0]
                rows = stats.rows - reported[1]
                if batches:
                    log.debug(
                        "group commit: %d batches, %d rows in %.0f s (%.1f rows per fsync)",
                        batches,
                        rows,
                        now - last_report,
                        rows / batches,
                    )
                reported = (stats.batches, stats.rows)
                last_report = now

    async def drain(self) -> None:
        """Wait until everything recorded so far is on disk (shutdown)."""
        while self.store.pending or not self._idle.is_set():
            await trio.sleep(0.005)

    async def stop_cleanly(self, timeout: float = 30.0) -> bool:
        """At shutdown, after the connections closed: write what is left, then mark the store
        cleanly stopped, so the next start knows no delivery went unrecorded. False when the
        writes did not finish in ``timeout`` (the store then stays marked as running)."""
        with trio.move_on_after(timeout):
            await self.drain()
            self.store.mark("stopped")
            return True
        return False

    def figures(self) -> dict[str, float]:
        """The store's counters for the management API and /metrics."""
        stats = self.store.stats
        recent = sorted(rows for rows, _seconds in stats.recent)
        return {
            "batches": stats.batches,
            "rows": stats.rows,
            "messages_written": stats.messages_written,
            "messages_skipped": stats.messages_skipped,
            "write_seconds": round(stats.write_seconds, 6),
            "max_batch_rows": stats.max_batch_rows,
            "recent_median_rows": recent[len(recent) // 2] if recent else 0,
        }

    def summary(self) -> str:
        stats = self.store.stats
        mean = stats.rows / stats.batches if stats.batches else 0.0
        return (
            f"{stats.batches} batches, {stats.messages_written} messages written, "
            f"{stats.messages_skipped} settled before they needed writing; "
            f"{mean:.1f} rows per fsync on average, {stats.max_batch_rows} at most"
        )
