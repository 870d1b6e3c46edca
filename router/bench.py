"""``router bench``: throughput (and confirm latency), router against any broker, in one run.

The producers and the consumer run in separate processes on raw sockets with router's own codec
(``router.client.blocking``), so the load generator is rarely the bottleneck; the report shows the
CPU seconds each side used to prove it. With no ``--url`` the embedded broker is started as a
subprocess (with ``--data-dir`` in a fresh temporary directory when ``router serve`` has that
option). ``--compare URL`` runs the same scenario against a second broker (e.g. RabbitMQ) and prints
the ratio. Medians over ``--runs`` runs.

Scenario ``e2e``: one producer, one consumer, prefetch 1000, ack (multiple) every 100 messages.

Scenario ``persistent``: ``--publishers`` processes, each on its own connection in confirm mode,
publish persistent messages (delivery_mode 2) to one durable queue through the default exchange,
keeping at most ``--confirm-window`` unconfirmed messages outstanding each (as RabbitMQ's PerfTest
``--confirm``). ``--messages`` is the total, split evenly between the publishers. One consumer
drains the queue (prefetch 1000, ack multiple every 100) so it does not grow without bound. The
figures are confirmed msg/s (messages / time from the first publish to the last confirm, across
publishers) and the confirm latency of each message (from the write that sent it to the
``basic.ack``/``basic.nack`` that covers it, ``multiple`` included), p50 and p99 over all
publishers. The queue is deleted after every run.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
import uuid
from collections import deque
from pathlib import Path
from typing import Any

from router.amqp.properties import BasicProperties
from router.client.blocking import BlockingClient, Confirm, parse_url

BATCH = 500
PERSISTENT = BasicProperties(delivery_mode=2)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--url", default=None, help="broker to measure (default: start the embedded broker)"
    )
    parser.add_argument(
        "--compare",
        default=None,
        metavar="URL",
        help="also measure this broker in the same run and print the ratio",
    )
    parser.add_argument(
        "--scenario",
        default="e2e",
        choices=["e2e", "persistent"],
        help="e2e: 1 producer, 1 consumer, prefetch 1000, ack every 100; persistent: "
        "--publishers publishers in confirm mode, persistent messages, durable queue, 1 consumer",
    )
    parser.add_argument(
        "--messages", type=int, default=200_000, help="messages per run (all publishers together)"
    )
    parser.add_argument("--size", type=int, default=16, help="body size in bytes")
    parser.add_argument("--prefetch", type=int, default=1000)
    parser.add_argument("--ack-every", type=int, default=100)
    parser.add_argument(
        "--publishers",
        type=int,
        default=1,
        help="persistent: publisher processes, one connection each (default 1)",
    )
    parser.add_argument(
        "--confirm-window",
        type=int,
        default=1000,
        help="persistent: most unconfirmed messages outstanding per publisher (default 1000)",
    )
    parser.add_argument("--runs", type=int, default=3, help="runs per broker; medians reported")
    parser.add_argument("--json", default=None, metavar="FILE", help="write results as JSON")


# --- processes -----------------------------------------------------------------------------------


def _consumer(
    url: str, queue: str, count: int, prefetch: int, ack_every: int, ready: Any, result: Any
) -> None:
    client = BlockingClient(url)
    client.declare_queue(queue, auto_delete=True)
    client.qos(prefetch)
    client.consume(queue)
    ready.set()
    received = 0
    unacked_since = 0
    first = 0.0
    cpu0 = time.process_time()
    while received < count:
        n, last = client.receive_deliveries()
        if n and not first:
            first = time.monotonic()
        received += n
        unacked_since += n
        if unacked_since >= ack_every or received >= count:
            client.ack(last, multiple=True)
            unacked_since = 0
    end = time.monotonic()
    result.put(("consumer", {"end": end, "first": first, "cpu": time.process_time() - cpu0}))
    client.close()


def _producer(url: str, queue: str, count: int, size: int, ready: Any, result: Any) -> None:
    client = BlockingClient(url)
    batch = client.publish_batch("", queue, b"x" * size, BATCH)
    ready.wait(30)
    cpu0 = time.process_time()
    start = time.monotonic()
    sent = 0
    while sent < count:
        n = min(BATCH, count - sent)
        client.send(batch if n == BATCH else client.publish_batch("", queue, b"x" * size, n))
        sent += n
    result.put(
        (
            "producer",
            {"start": start, "cpu": time.process_time() - cpu0, "publish_end": time.monotonic()},
        )
    )
    client.close()


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


def _report_errors(role: str, result: Any, body: Any, *args: Any) -> None:
    """Run a bench process body; on failure put ("error", role, traceback) on ``result``."""
    try:
        body(*args)
    except BaseException:
        result.put(("error", role, traceback.format_exc()))
        raise


def _persistent_publisher(
    index: int,
    url: str,
    queue: str,
    count: int,
    size: int,
    window: int,
    start: Any,
    result: Any,
) -> None:
    client = BlockingClient(url)
    client.confirm_select()
    one = client.publish_batch("", queue, b"x" * size, 1, PERSISTENT)
    chunk = min(BATCH, window)
    full = one * chunk
    tracker = ConfirmTracker()
    start.wait(60)
    cpu0 = time.process_time()
    began = time.monotonic()
    monotonic = time.monotonic
    while tracker.acked + tracker.nacked < count:
        room = min(window - tracker.outstanding, count - tracker.sent_count)
        while room > 0:
            n = min(room, chunk)
            now = monotonic()
            client.send(full if n == chunk else one * n)
            tracker.sent(n, now)
            room -= n
        confirms: list[Confirm] = client.receive_confirms()
        now = monotonic()
        for tag, multiple, nack in confirms:
            tracker.settle(tag, multiple, nack, now)
    cpu = time.process_time() - cpu0
    result.put(
        (
            "publisher",
            {
                "index": index,
                "start": began,
                "end": tracker.last_settle,
                "published": tracker.sent_count,
                "acked": tracker.acked,
                "nacked": tracker.nacked,
                "cpu": cpu,
                "histogram": tracker.histogram,
            },
        )
    )
    client.close()


def _persistent_consumer(
    url: str, queue: str, prefetch: int, ack_every: int, expected: Any, start: Any, result: Any
) -> None:
    """Drain ``queue`` until ``expected`` (set by the parent once every publisher is done, -1
    before) messages have arrived; acks (multiple) every ``ack_every`` and whenever idle."""
    client = BlockingClient(url)
    client.qos(prefetch)
    client.consume(queue)
    client.sock.settimeout(0.2)
    start.wait(60)
    cpu0 = time.process_time()
    received = 0
    unacked = 0
    last = 0
    idle_since = time.monotonic()
    while True:
        try:
            n, tag = client.receive_deliveries()
        except TimeoutError:
            if unacked:
                client.ack(last, multiple=True)
                unacked = 0
            target = expected.value
            if 0 <= target <= received:
                break
            if time.monotonic() - idle_since > 60:
                raise TimeoutError(
                    f"consumer: no delivery for 60 s after {received} messages"
                ) from None
            continue
        if n:
            idle_since = time.monotonic()
            received += n
            unacked += n
            last = tag
            if unacked >= ack_every:
                client.ack(last, multiple=True)
                unacked = 0
    result.put(
        (
            "consumer",
            {"end": time.monotonic(), "consumed": received, "cpu": time.process_time() - cpu0},
        )
    )
    client.sock.settimeout(30)
    client.close()


# --- broker CPU ----------------------------------------------------------------------------------


def _pid_listening_on(port: int) -> int | None:
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


def _cpu_seconds(pid: int | None) -> float | None:
    if pid is None:
        return None
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


# --- one run -------------------------------------------------------------------------------------


def run_e2e(url: str, messages: int, size: int, prefetch: int, ack_every: int) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    ready = ctx.Event()
    results = ctx.Queue()
    queue = f"bench-{uuid.uuid4().hex[:8]}"
    address = parse_url(url)
    broker_pid = _pid_listening_on(address.port)
    cpu_before = _cpu_seconds(broker_pid)
    consumer = ctx.Process(
        target=_consumer, args=(url, queue, messages, prefetch, ack_every, ready, results)
    )
    producer = ctx.Process(target=_producer, args=(url, queue, messages, size, ready, results))
    consumer.start()
    producer.start()
    got = dict(results.get(timeout=600) for _ in range(2))
    producer.join(30)
    consumer.join(30)
    cpu_after = _cpu_seconds(broker_pid)
    elapsed = got["consumer"]["end"] - got["producer"]["start"]
    return {
        "messages": messages,
        "size": size,
        "seconds": elapsed,
        "msg_per_s": messages / elapsed,
        "producer_cpu_s": got["producer"]["cpu"],
        "consumer_cpu_s": got["consumer"]["cpu"],
        "broker_cpu_s": (cpu_after - cpu_before)
        if cpu_before is not None and cpu_after is not None
        else None,
    }


def run_persistent(
    url: str,
    messages: int,
    size: int,
    publishers: int,
    window: int,
    prefetch: int,
    ack_every: int,
) -> dict[str, Any]:
    if publishers < 1 or window < 1 or messages < publishers:
        raise ValueError("need --publishers >= 1, --confirm-window >= 1, --messages >= publishers")
    ctx = mp.get_context("spawn")
    start = ctx.Barrier(publishers + 1)  # the publishers and the consumer start together
    expected = ctx.Value("q", -1)
    results = ctx.Queue()
    queue = f"bench-persistent-{uuid.uuid4().hex[:8]}"
    address = parse_url(url)
    broker_pid = _pid_listening_on(address.port)
    admin = BlockingClient(url)
    admin.declare_queue(queue, durable=True)
    processes = []
    left_in_queue: int | None = None
    try:
        cpu_before = _cpu_seconds(broker_pid)
        processes.append(
            ctx.Process(
                target=_report_errors,
                args=(
                    "consumer",
                    results,
                    _persistent_consumer,
                    url,
                    queue,
                    prefetch,
                    ack_every,
                    expected,
                    start,
                    results,
                ),
            )
        )
        shares = [messages // publishers + (i < messages % publishers) for i in range(publishers)]
        for index, share in enumerate(shares):
            processes.append(
                ctx.Process(
                    target=_report_errors,
                    args=(
                        f"publisher {index}",
                        results,
                        _persistent_publisher,
                        index,
                        url,
                        queue,
                        share,
                        size,
                        window,
                        start,
                        results,
                    ),
                )
            )
        for process in processes:
            process.start()

        def collect() -> tuple[str, dict[str, Any]]:
            kind, *payload = results.get(timeout=600)
            if kind == "error":
                raise RuntimeError(f"bench {payload[0]} failed:\n{payload[1]}")
            return kind, payload[0]

        done = [collect() for _ in range(publishers)]
        if any(kind != "publisher" for kind, _ in done):
            raise RuntimeError(f"unexpected bench result order: {[kind for kind, _ in done]}")
        pubs = sorted((payload for _, payload in done), key=lambda p: p["index"])
        expected.value = sum(p["acked"] for p in pubs)
        kind, consumer = collect()
        if kind != "consumer":
            raise RuntimeError(f"unexpected bench result: {kind}")
        for process in processes:
            process.join(30)
        cpu_after = _cpu_seconds(broker_pid)
        left_in_queue = admin.delete_queue(queue)
    finally:
        for process in processes:
            if process.is_alive():
                process.terminate()
                process.join(5)
        if left_in_queue is None:  # a failed run: still remove its queue and messages
            try:
                admin.delete_queue(queue)
            except (OSError, ConnectionError):
                try:
                    cleanup = BlockingClient(url)
                    cleanup.delete_queue(queue)
                    cleanup.close()
                except (OSError, ConnectionError):
                    pass
        admin.close()
    histogram: dict[int, int] = {}
    for p in pubs:
        for micros, n in p["histogram"].items():
            histogram[micros] = histogram.get(micros, 0) + n
    first = min(p["start"] for p in pubs)
    last = max(p["end"] for p in pubs)
    elapsed = last - first
    acked = sum(p["acked"] for p in pubs)
    p50 = percentile(histogram, 0.50)
    p99 = percentile(histogram, 0.99)
    publishers_cpu = sum(p["cpu"] for p in pubs)
    return {
        "messages": messages,
        "size": size,
        "publishers": publishers,
        "confirm_window": window,
        "seconds": elapsed,
        "msg_per_s": acked / elapsed if elapsed > 0 else 0.0,
        "published": sum(p["published"] for p in pubs),
        "confirmed": acked,
        "nacked": sum(p["nacked"] for p in pubs),
        "consumed": consumer["consumed"],
        "left_in_queue": left_in_queue,
        "confirm_latency_p50_ms": None if p50 is None else p50 / 1000,
        "confirm_latency_p99_ms": None if p99 is None else p99 / 1000,
        "confirm_latency_max_ms": max(histogram) / 1000 if histogram else None,
        "drain_end_after_last_confirm_s": consumer["end"] - last,
        "publishers_cpu_s": publishers_cpu,
        "publisher_cpu_s_max": max(p["cpu"] for p in pubs),
        "consumer_cpu_s": consumer["cpu"],
        "client_cpu_s": publishers_cpu + consumer["cpu"],
        "broker_cpu_s": (cpu_after - cpu_before)
        if cpu_before is not None and cpu_after is not None
        else None,
    }


def _free_port() -> int:
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
        port = _free_port()
        command = [sys.executable, "-m", "router", "serve", "--port", str(port)]
        # info: the store's group-commit summary is logged at shutdown and reported by the bench
        command += ["--log-level", "info"]
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


def _median(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def _measure(label: str, url: str, args: argparse.Namespace) -> dict[str, Any]:
    if args.scenario == "persistent":
        return _measure_persistent(label, url, args)
    runs = []
    for index in range(args.runs):
        result = run_e2e(url, args.messages, args.size, args.prefetch, args.ack_every)
        runs.append(result)
        broker_cpu = result["broker_cpu_s"]
        print(
            f"  {label} run {index + 1}/{args.runs}: {result['msg_per_s']:,.0f} msg/s "
            f"(broker cpu {broker_cpu if broker_cpu is None else round(broker_cpu, 2)} s, "
            f"producer {result['producer_cpu_s']:.2f} s, consumer "
            f"{result['consumer_cpu_s']:.2f} s, wall {result['seconds']:.2f} s)",
            flush=True,
        )
    return {
        "label": label,
        "url": url,
        "median_msg_per_s": statistics.median(r["msg_per_s"] for r in runs),
        "runs": runs,
    }


def _measure_persistent(label: str, url: str, args: argparse.Namespace) -> dict[str, Any]:
    runs = []
    for index in range(args.runs):
        result = run_persistent(
            url,
            args.messages,
            args.size,
            args.publishers,
            args.confirm_window,
            args.prefetch,
            args.ack_every,
        )
        runs.append(result)
        broker_cpu = result["broker_cpu_s"]
        nacked = f", {result['nacked']} NACKED" if result["nacked"] else ""
        print(
            f"  {label} run {index + 1}/{args.runs}: {result['msg_per_s']:,.0f} confirmed msg/s, "
            f"confirm p50 {result['confirm_latency_p50_ms']:.2f} ms "
            f"p99 {result['confirm_latency_p99_ms']:.2f} ms "
            f"(broker cpu {broker_cpu if broker_cpu is None else round(broker_cpu, 2)} s, "
            f"publishers {result['publishers_cpu_s']:.2f} s, consumer "
            f"{result['consumer_cpu_s']:.2f} s, wall {result['seconds']:.2f} s; "
            f"published {result['published']}, confirmed {result['confirmed']}, "
            f"consumed {result['consumed']}{nacked})",
            flush=True,
        )
    return {
        "label": label,
        "url": url,
        "median_msg_per_s": statistics.median(r["msg_per_s"] for r in runs),
        "median_confirm_latency_p50_ms": _median([r["confirm_latency_p50_ms"] for r in runs]),
        "median_confirm_latency_p99_ms": _median([r["confirm_latency_p99_ms"] for r in runs]),
        "runs": runs,
    }


def _settings(args: argparse.Namespace) -> dict[str, Any]:
    settings = {
        "messages": args.messages,
        "size": args.size,
        "prefetch": args.prefetch,
        "ack_every": args.ack_every,
        "runs": args.runs,
    }
    if args.scenario == "persistent":
        settings["publishers"] = args.publishers
        settings["confirm_window"] = args.confirm_window
    return settings


def run(args: argparse.Namespace) -> int:
    from rich.console import Console

    console = Console()
    embedded = None
    url = args.url
    if url is None:
        embedded = Embedded()
        url = embedded.url
    try:
        extra = ""
        if args.scenario == "persistent":
            extra = (
                f" publishers={args.publishers} confirm window={args.confirm_window}"
                " (persistent messages, durable queue)"
            )
        console.print(
            f"[bold]router bench[/] scenario={args.scenario} messages={args.messages} "
            f"size={args.size} B prefetch={args.prefetch} ack every {args.ack_every}{extra}"
        )
        results = [_measure("router" if embedded else "target", url, args)]
        if args.compare:
            results.append(_measure("compare", args.compare, args))
    finally:
        if embedded is not None:
            embedded.stop()
    if args.scenario == "persistent":
        _print_persistent(console, args, results)
    else:
        _print_e2e(console, args, results)
    if embedded is not None and embedded.store_summary:
        console.print(f"router's store (group commit, all runs): {embedded.store_summary}")
        results[0]["store_summary"] = embedded.store_summary
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {"scenario": args.scenario, "settings": _settings(args), "results": results},
                indent=2,
            )
        )
    return 0


def _print_persistent(
    console: Any, args: argparse.Namespace, results: list[dict[str, Any]]
) -> None:
    from rich.table import Table

    table = Table(
        title=f"persistent + confirms, {args.publishers} publisher(s), {args.size} B messages, "
        f"window {args.confirm_window} (median of {args.runs})"
    )
    table.add_column("broker")
    table.add_column("confirmed msg/s", justify="right")
    table.add_column("confirm p50 ms", justify="right")
    table.add_column("confirm p99 ms", justify="right")
    table.add_column("broker CPU s/run", justify="right")
    table.add_column("client CPU s/run", justify="right")
    for result in results:
        cpu = _median([r["broker_cpu_s"] for r in result["runs"]])
        client = _median([r["client_cpu_s"] for r in result["runs"]])
        p50 = result["median_confirm_latency_p50_ms"]
        p99 = result["median_confirm_latency_p99_ms"]
        table.add_row(
            result["label"],
            f"{result['median_msg_per_s']:,.0f}",
            "n/a" if p50 is None else f"{p50:.2f}",
            "n/a" if p99 is None else f"{p99:.2f}",
            "n/a" if cpu is None else f"{cpu:.2f}",
            "n/a" if client is None else f"{client:.2f}",
        )
    console.print(table)
    if len(results) == 2:
        a, b = results
        ratio = a["median_msg_per_s"] / b["median_msg_per_s"]
        console.print(f"throughput ratio {a['label']} / {b['label']}: {ratio:.2f}")
        for key, name in (
            ("median_confirm_latency_p50_ms", "p50"),
            ("median_confirm_latency_p99_ms", "p99"),
        ):
            if a[key] and b[key]:
                console.print(
                    f"confirm latency {name} ratio {a['label']} / {b['label']}: "
                    f"{a[key] / b[key]:.2f} (lower is better)"
                )


def _print_e2e(console: Any, args: argparse.Namespace, results: list[dict[str, Any]]) -> None:
    from rich.table import Table

    table = Table(title=f"{args.scenario}, {args.size} B messages (median of {args.runs})")
    table.add_column("broker")
    table.add_column("msg/s", justify="right")
    table.add_column("broker CPU s/run", justify="right")
    table.add_column("client CPU s/run", justify="right")
    for result in results:
        cpus = [r["broker_cpu_s"] for r in result["runs"] if r["broker_cpu_s"] is not None]
        clients = [r["producer_cpu_s"] + r["consumer_cpu_s"] for r in result["runs"]]
        table.add_row(
            result["label"],
            f"{result['median_msg_per_s']:,.0f}",
            f"{statistics.median(cpus):.2f}" if cpus else "n/a",
            f"{statistics.median(clients):.2f}",
        )
    console.print(table)
    if len(results) == 2:
        ratio = results[0]["median_msg_per_s"] / results[1]["median_msg_per_s"]
        console.print(f"ratio {results[0]['label']} / {results[1]['label']}: {ratio:.2f}")
