"""``router bench``: end-to-end throughput, router against any broker, in one run.

The producer and the consumer run in separate processes on raw sockets with router's own codec
(``router.client.blocking``), so the load generator is rarely the bottleneck; the report shows the
CPU seconds each side used to prove it. With no ``--url`` the embedded broker is started as a
subprocess. ``--compare URL`` runs the same scenario against a second broker (e.g. RabbitMQ) and
prints the ratio. Medians over ``--runs`` runs.

Scenario ``e2e``: one producer, one consumer, prefetch 1000, ack (multiple) every 100 messages.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import socket
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from router.client.blocking import BlockingClient, parse_url

BATCH = 500


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
        choices=["e2e"],
        help="e2e: 1 producer, 1 consumer, prefetch 1000, ack every 100",
    )
    parser.add_argument("--messages", type=int, default=200_000, help="messages per run")
    parser.add_argument("--size", type=int, default=16, help="body size in bytes")
    parser.add_argument("--prefetch", type=int, default=1000)
    parser.add_argument("--ack-every", type=int, default=100)
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


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _start_embedded() -> tuple[subprocess.Popen[bytes], str]:
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "router", "serve", "--port", str(port), "--log-level", "warning"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return proc, f"amqp://guest:guest@127.0.0.1:{port}/%2F"
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError("the embedded broker did not start within 15 s")


def _measure(label: str, url: str, args: argparse.Namespace) -> dict[str, Any]:
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


def run(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    embedded = None
    url = args.url
    if url is None:
        embedded, url = _start_embedded()
    try:
        console.print(
            f"[bold]router bench[/] scenario={args.scenario} messages={args.messages} "
            f"size={args.size} B prefetch={args.prefetch} ack every {args.ack_every}"
        )
        results = [_measure("router" if embedded else "target", url, args)]
        if args.compare:
            results.append(_measure("compare", args.compare, args))
    finally:
        if embedded is not None:
            embedded.terminate()
            embedded.wait(10)
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
    if args.json:
        Path(args.json).write_text(
            json.dumps({"scenario": args.scenario, "results": results}, indent=2)
        )
    return 0
