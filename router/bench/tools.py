"""Pieces of ``router bench`` that are not scenarios: confirm bookkeeping, percentiles, the
broker process's CPU and memory from /proc, and the embedded broker started as a subprocess."""

from __future__ import annotations

import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import deque
from pathlib import Path


class ConfirmTracker:
    """Publisher-side bookkeeping of confirm mode: which delivery tags are settled and when.

    Publishes are recorded per write (``sent``): a run of consecutive tags and the time the write
    started, so a message's latency counts from the start of the write that carried it. Confirms
    (``settle``) may be ``multiple`` (every unsettled tag up to and including it) or single, in any
    order. Latencies are kept as a histogram in whole microseconds: {µs: messages}.
    """

    def __init__(self) -> None:
        self.next_tag = 1
        self.floor = 1  # every tag below this is settled
        self.above: set[int] = set()  # tags at or above ``floor`` settled singly, out of order
        self.writes: deque[tuple[int, int, float]] = deque()  # (first tag, last tag, write time)
        self.acked = 0
        self.nacked = 0
        self.histogram: dict[int, int] = {}
        self.last_settle = 0.0

    @property
    def sent_count(self) -> int:
        return self.next_tag - 1

    @property
    def outstanding(self) -> int:
        return self.sent_count - self.acked - self.nacked

    def sent(self, count: int, when: float) -> None:
        self.writes.append((self.next_tag, self.next_tag + count - 1, when))
        self.next_tag += count

    def settle(self, tag: int, multiple: bool, nack: bool, now: float) -> None:
        if tag >= self.next_tag:
            raise ValueError(f"confirm for tag {tag}, only {self.sent_count} published")
        if multiple:
            settled = self._settle_range(self.floor, tag, now)
            if tag >= self.floor:
                self.floor = tag + 1
        else:
            if tag < self.floor or tag in self.above:
                return  # already settled
            settled = self._settle_range(tag, tag, now)
            if tag == self.floor:
                self.floor += 1
            else:
                self.above.add(tag)
        while self.floor in self.above:
            self.above.discard(self.floor)
            self.floor += 1
        if self.above:
            self.above = {t for t in self.above if t >= self.floor}
        writes = self.writes
        while writes and writes[0][1] < self.floor:
            writes.popleft()
        if nack:
            self.nacked += settled
        else:
            self.acked += settled
        self.last_settle = now

    def _settle_range(self, low: int, high: int, now: float) -> int:
        """Record the latency of every unsettled tag in [low, high]; returns how many."""
        total = 0
        histogram = self.histogram
        for first, last, when in self.writes:
            if first > high:
                break
            a = max(first, low)
            b = min(last, high)
            if a > b:
                continue
            n = b - a + 1
            if self.above:
                n -= sum(1 for t in self.above if a <= t <= b)
            if n:
                micros = int((now - when) * 1e6)
                histogram[micros] = histogram.get(micros, 0) + n
                total += n
        return total


def percentile(histogram: dict[int, int], fraction: float) -> int | None:
    """Nearest-rank percentile of a {value: count} histogram (None when it is empty)."""
    total = sum(histogram.values())
    if not total:
        return None
    rank = max(1, -(-int(total * fraction * 1_000_000) // 1_000_000))  # ceil, float-safe
    seen = 0
    for value in sorted(histogram):
        seen += histogram[value]
        if seen >= rank:
            return value
    return max(histogram)


def pid_listening_on(port: int) -> int | None:
    """The pid of the process listening on 127.0.0.1:port, from /proc (Linux), or None."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if fields[3] == "0A" and int(fields[1].split(":")[1], 16) == port:
                inodes.add(fields[9])
    if not inodes:
        return None
    for pid_dir in Path("/proc").iterdir():
        if not pid_dir.name.isdigit():
            continue
        try:
            for fd in (pid_dir / "fd").iterdir():
                target = os.readlink(fd)
                if target.startswith("socket:[") and target[8:-1] in inodes:
                    return int(pid_dir.name)
        except OSError:
            continue
    return None


def cpu_seconds(pid: int | None) -> float | None:
    if pid is None:
        return None
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def merge_histograms(histograms: list[dict[int, int]]) -> dict[int, int]:
    merged: dict[int, int] = {}
    for histogram in histograms:
        for value, count in histogram.items():
            merged[int(value)] = merged.get(int(value), 0) + count
    return merged


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _serve_has_data_dir() -> bool:
    """Whether this ``router serve`` takes ``--data-dir`` (asked at run time, from its --help)."""
    try:
        help_text = subprocess.run(
            [sys.executable, "-m", "router", "serve", "--help"],
            capture_output=True,
            text=True,
            timeout=30,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return False
    return "--data-dir" in help_text


class Embedded:
    """The embedded broker as a subprocess, with its own temporary data directory if it has one."""

    def __init__(self) -> None:
        port = free_port()
        command = [sys.executable, "-m", "router", "serve", "--port", str(port)]
        # info: the store's group-commit summary is logged at shutdown and reported by the bench
        command += ["--log-level", "info"]
        # the management API on a free port: a bench must not collide with a broker on 15672
        command += ["--management-port", "0"]
        self.data_dir: str | None = None
        if _serve_has_data_dir():
            self.data_dir = tempfile.mkdtemp(prefix="router-bench-")
            command += ["--data-dir", self.data_dir]
        self.log = tempfile.TemporaryFile()  # noqa: SIM115 (closed in stop())
        self.store_summary: str | None = None
        self.proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=self.log)
        self.url = f"amqp://guest:guest@127.0.0.1:{port}/%2F"
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self.stop()
                raise RuntimeError(f"the embedded broker exited with code {self.proc.returncode}")
            try:
                socket.create_connection(("127.0.0.1", port), 0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError("the embedded broker did not start within 15 s")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if not self.log.closed:
            self.log.seek(0)
            for line in self.log.read().decode("utf-8", "replace").splitlines():
                if " store: " in line:  # "... router: store: N batches, M messages written, ..."
                    self.store_summary = line.split(" store: ", 1)[1]
            self.log.close()
        if self.data_dir is not None:
            shutil.rmtree(self.data_dir, ignore_errors=True)


def median(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None
