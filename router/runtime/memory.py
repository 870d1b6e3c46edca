"""The memory alarm: the process's resident memory against a high watermark.

RabbitMQ's ``vm_memory_high_watermark`` with its semantics: the watermark is a fraction of the
machine's RAM (default 0.4; the cgroup's limit counts when it is lower) or an absolute number of
bytes. While the resident set is at or above it, the broker's "memory" alarm is raised and every
connection that publishes is blocked (``Broker.set_alarm``); when it falls below, they resume.

CPython does not give freed memory back to the system by itself (the C allocator keeps freed
bodies in its heap), so once the alarm is raised the monitor asks glibc to return free pages
(``malloc_trim``) before it measures again: otherwise a drained queue would leave the resident
set, and the alarm, up forever.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
from collections.abc import Callable
from pathlib import Path

import trio

from router.broker.broker import Broker
from router.process import read_rss

log = logging.getLogger("router.memory")

INTERVAL = 0.1  # seconds between samples: at 100 MB/s of publishes, at most 10 MB overshoot
TRIM_EVERY = 1.0  # seconds between malloc_trim calls while the alarm is raised


def total_memory() -> int | None:
    """The RAM this process may use: the machine's, or its cgroup's limit when lower."""
    try:
        total: int | None = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        total = None
    for limit_file in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            text = Path(limit_file).read_text().strip()
        except OSError:
            continue
        if text.isdigit():
            limit = int(text)
            if limit > 0 and (total is None or limit < total):
                total = limit
        break
    return total


def watermark_bytes(setting: float | int, total: int | None) -> int | None:
    """The watermark in bytes: ``setting`` ≤ 1 is a fraction of ``total`` (RabbitMQ's
    ``vm_memory_high_watermark.relative``), above 1 a number of bytes (``.absolute``)."""
    if setting > 1:
        return int(setting)
    if total is None:
        return None
    return int(total * setting)


def _malloc_trim() -> Callable[[], None]:
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        trim = libc.malloc_trim
    except (OSError, AttributeError, TypeError):
        return lambda: None
    trim.argtypes = [ctypes.c_size_t]

    def release() -> None:
        trim(0)

    return release


class MemoryMonitor:
    """Samples the resident set every ``interval`` s and raises or clears the broker's alarm."""

    def __init__(
        self,
        broker: Broker,
        limit: int,
        *,
        interval: float = INTERVAL,
        read: Callable[[], int | None] = read_rss,
        trim: Callable[[], None] | None = None,
    ) -> None:
        self.broker = broker
        self.limit = limit
        self.interval = interval
        self.read = read
        self.trim = trim if trim is not None else _malloc_trim()
        self.last_rss: int | None = None
        self.alarms_raised = 0
        self._last_trim = -float("inf")
        # bytes read from clients since the last sample: a fast publisher triggers a sample
        # long before the next tick, so the overshoot is bounded in bytes, not in time
        self.read_since = 0
        self.read_threshold = max(4 * 1048576, limit // 100)

    def bytes_read(self, count: int, now: float) -> None:
        """The runtime read ``count`` bytes from a client: sample early under heavy input."""
        self.read_since += count
        if self.read_since >= self.read_threshold:
            self.sample(now)

    def sample(self, now: float) -> None:
        """One measurement: raise the alarm at the watermark, clear it below."""
        self.read_since = 0
        rss = self.read()
        if rss is None:
            return
        alarmed = "memory" in self.broker.alarms
        if alarmed and rss >= self.limit and now - self._last_trim >= TRIM_EVERY:
            self._last_trim = now
            self.trim()
            rss = self.read() or rss
        self.last_rss = rss
        if not alarmed and rss >= self.limit:
            self.alarms_raised += 1
            log.warning(
                "memory alarm: resident memory %s is at or above the high watermark %s; "
                "publishing connections are blocked until it falls (consumers keep draining). "
                "Raise memory_high_watermark or add consumers.",
                _mib(rss),
                _mib(self.limit),
            )
            self.broker.set_alarm("memory", True)
        elif alarmed and rss < self.limit:
            log.warning(
                "memory alarm cleared: resident memory %s is below the high watermark %s; "
                "publishers resume",
                _mib(rss),
                _mib(self.limit),
            )
            self.broker.set_alarm("memory", False)

    async def run(self) -> None:
        while True:
            self.sample(trio.current_time())
            await trio.sleep(self.interval)


def _mib(value: int) -> str:
    return f"{value / 1048576:,.0f} MiB"
