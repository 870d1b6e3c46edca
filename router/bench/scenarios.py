"""``router bench``'s scenarios: what each declares, publishes and consumes, and one run of it.

A run declares its topology through an admin connection, starts the consumer processes, waits
until every consumer is subscribed, starts the producer(s), and collects their reports. Every
run deletes what it declared. The figures:

- ``msg_per_s``: messages published / seconds from the first publish to the last delivery (or,
  publish-only, until the queue holds them all);
- ``deliveries_per_s``: deliveries / the same seconds (fanout: ten per message);
- ``broker_cpu_s``, ``client_cpu_s``: CPU seconds of the broker process (from /proc, when it runs
  on this machine) and of every load-generator process, for the same run;
- latency scenarios: percentiles of publish-to-delivery time in ms;
- scale: the broker's resident memory after each step, and per queue, binding, connection and
  message.
"""

from __future__ import annotations

import multiprocessing as mp
import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from queue import Empty
from typing import Any

from router.amqp import spec
from router.amqp.properties import BasicProperties
from router.amqp.tables import FieldTable
from router.bench import workers
from router.bench.tools import (
    cpu_seconds,
    merge_histograms,
    percentile,
    pid_listening_on,
)
from router.client.blocking import BlockingClient, parse_url
from router.process import raise_fd_limit, read_rss

Progress = Callable[[int, int], None]
"""progress(done, total): the run's deliveries so far."""

ERROR_WAIT = 600.0


@dataclass
class Flow:
    """A throughput run: the publishes, and who consumes what."""

    templates: list[workers.Template]
    count: int
    # consumer processes: for each, its connections (the queues each consumes) and how many
    # deliveries it should receive
    consumers: list[tuple[list[list[str]], int]] = field(default_factory=list)
    count_queue: str | None = None  # publish-only: wait until this queue holds ``count``
    rate: float | None = None  # latency: publish at this rate (to ``templates[0]``'s queue)
    duration: float = 0.0


@dataclass
class Topology:
    """What a run declares (and deletes afterwards)."""

    exchanges: list[tuple[str, str]] = field(default_factory=list)  # (name, type)
    queues: list[tuple[str, dict[str, Any]]] = field(default_factory=list)  # (name, arguments)
    bindings: list[tuple[str, str, str, dict[str, Any]]] = field(default_factory=list)

    def declare(self, admin: BlockingClient) -> None:
        admin.pipeline(
            [spec.ExchangeDeclare(exchange=name, type=kind) for name, kind in self.exchanges],
            spec.ExchangeDeclareOk,
        )
        admin.pipeline(
            [
                spec.QueueDeclare(queue=name, arguments=FieldTable(arguments))
                for name, arguments in self.queues
            ],
            spec.QueueDeclareOk,
        )
        admin.pipeline(
            [
                spec.QueueBind(
                    queue=queue, exchange=exchange, routing_key=key, arguments=FieldTable(args)
                )
                for queue, exchange, key, args in self.bindings
            ],
            spec.QueueBindOk,
        )

    def delete(self, admin: BlockingClient) -> None:
        admin.pipeline(
            [spec.QueueDelete(queue=name) for name, _ in self.queues], spec.QueueDeleteOk
        )
        admin.pipeline(
            [spec.ExchangeDelete(exchange=name) for name, _ in self.exchanges],
            spec.ExchangeDeleteOk,
        )


def _rss(pid: int | None) -> int | None:
    """The broker's resident memory, when it runs on this machine."""
    return None if pid is None else read_rss(pid)


def _name(kind: str) -> str:
    return f"bench-{kind}-{uuid.uuid4().hex[:8]}"


def _spread(queues: list[str], processes: int) -> list[list[list[str]]]:
    """Queues over consumer processes, one connection per queue."""
    plans: list[list[list[str]]] = [[] for _ in range(max(1, min(processes, len(queues))))]
    for index, queue in enumerate(queues):
        plans[index % len(plans)].append([queue])
    return plans


def _per_queue_counts(template_queue: list[str], count: int) -> dict[str, int]:
    """How many messages each queue receives when message i uses template i % len."""
    counts: dict[str, int] = {}
    templates = len(template_queue)
    full, rest = divmod(count, templates)
    for index, queue in enumerate(template_queue):
        counts[queue] = counts.get(queue, 0) + full + (1 if index < rest else 0)
    return counts


# --- scenario definitions ------------------------------------------------------------------------


def define(scenario: str, args: Any) -> tuple[Topology, Flow]:
    """The topology and flow of one run of ``scenario`` with ``args``' settings."""
    count = args.messages
    plain = BasicProperties().encode()
    if scenario in ("e2e", "publish", "latency"):
        queue = _name(scenario)
        topology = Topology(queues=[(queue, {})])
        flow = Flow([("", queue, plain)], count)
        if scenario == "e2e":
            flow.consumers = [([[queue]], count)]
        elif scenario == "publish":
            flow.count_queue = queue
        else:
            flow.rate = args.rate
            flow.duration = args.duration
            flow.count = int(args.rate * args.duration)
            flow.consumers = [([[queue]], flow.count)]
        return topology, flow
    if scenario == "priority":
        queue = _name("priority")
        topology = Topology(queues=[(queue, {"x-max-priority": 10})])
        rng = random.Random(7)
        templates = [
            ("", queue, BasicProperties(priority=rng.randrange(10)).encode()) for _ in range(1000)
        ]
        return topology, Flow(templates, count, consumers=[([[queue]], count)])
    if scenario == "fanout":
        exchange = _name("fanout")
        queues = [_name(f"fanout{i}") for i in range(args.queues or 10)]
        topology = Topology(
            exchanges=[(exchange, "fanout")],
            queues=[(q, {}) for q in queues],
            bindings=[(q, exchange, "", {}) for q in queues],
        )
        plans = _spread(queues, args.consumers)
        consumers = [(plan, count * len(plan)) for plan in plans]
        return topology, Flow([(exchange, "", plain)], count, consumers=consumers)
    if scenario == "topic":
        return _topic(args, count, plain)
    if scenario == "headers":
        return _headers(args, count)
    if scenario == "many":
        queues = [_name(f"many{i}") for i in range(args.queues or 10_000)]
        connections = args.connections
        per_connection = max(1, len(queues) // connections)
        groups = [queues[i : i + per_connection] for i in range(0, len(queues), per_connection)]
        processes = max(1, args.consumers)
        by_process: list[list[list[str]]] = [[] for _ in range(processes)]
        for index, group in enumerate(groups):
            by_process[index % processes].append(group)
        counts = _per_queue_counts(queues, count)
        consumers = [(plan, sum(counts[q] for c in plan for q in c)) for plan in by_process]
        templates = [("", q, plain) for q in queues]
        return Topology(queues=[(q, {}) for q in queues]), Flow(
            templates, count, consumers=consumers
        )
    raise ValueError(f"unknown scenario {scenario!r}")


def _topic(args: Any, count: int, plain: bytes) -> tuple[Topology, Flow]:
    """``--bindings`` pattern bindings (``b<j>.*.end``, ``b<j>.#``, ``*.b<j>.end`` in turn) over
    ``--queues`` queues; 10,000 different routing keys, each matching exactly one binding, so
    routing caches do not help: every publish walks the trie."""
    bindings = args.bindings or 1000
    exchange = _name("topic")
    queues = [_name(f"topic{i}") for i in range(args.queues or 10)]
    patterns: list[tuple[str, str, str, dict[str, Any]]] = []
    for j in range(bindings):
        kind = j % 3
        pattern = f"b{j}.*.end" if kind == 0 else f"b{j}.#" if kind == 1 else f"*.b{j}.end"
        patterns.append((queues[j % len(queues)], exchange, pattern, {}))
    templates = []
    template_queue = []
    for i in range(10_000):
        j = (i * 7919) % bindings
        kind = j % 3
        key = f"b{j}.k{i}.end" if kind == 0 else f"b{j}.k{i}.x" if kind == 1 else f"k{i}.b{j}.end"
        templates.append((exchange, key, plain))
        template_queue.append(queues[j % len(queues)])
    return _routed(exchange, "topic", queues, patterns, templates, template_queue, count, args)


def _headers(args: Any, count: int) -> tuple[Topology, Flow]:
    """``--bindings`` (default 100) x-match=all bindings on two headers over ``--queues``
    queues; each message carries three headers and matches exactly one binding."""
    bindings = args.bindings or 100
    exchange = _name("headers")
    queues = [_name(f"headers{i}") for i in range(args.queues or 10)]
    binds = [
        (queues[j % len(queues)], exchange, "", {"x-match": "all", "region": f"r{j}", "kind": "k"})
        for j in range(bindings)
    ]
    templates = []
    template_queue = []
    for i in range(max(bindings, 100)):
        j = i % bindings
        headers = FieldTable({"region": f"r{j}", "kind": "k", "seq": i})
        templates.append((exchange, "", BasicProperties(headers=headers).encode()))
        template_queue.append(queues[j % len(queues)])
    return _routed(exchange, "headers", queues, binds, templates, template_queue, count, args)


def _routed(
    exchange: str,
    kind: str,
    queues: list[str],
    bindings: list[tuple[str, str, str, dict[str, Any]]],
    templates: list[workers.Template],
    template_queue: list[str],
    count: int,
    args: Any,
) -> tuple[Topology, Flow]:
    """An exchange of ``kind`` bound to ``queues``, one consumer connection per queue; template
    i routes to ``template_queue[i]`` only, which gives each consumer's expected count."""
    counts = _per_queue_counts(template_queue, count)
    plans = _spread(queues, args.consumers)
    consumers = [(plan, sum(counts.get(c[0], 0) for c in plan)) for plan in plans]
    topology = Topology(
        exchanges=[(exchange, kind)], queues=[(q, {}) for q in queues], bindings=bindings
    )
    return topology, Flow(templates, count, consumers=consumers)


# --- one run -------------------------------------------------------------------------------------


def _collect(results: Any, timeout: float) -> tuple[str, dict[str, Any]]:
    kind, *payload = results.get(timeout=timeout)
    if kind == "error":
        raise RuntimeError(f"bench {payload[0]} failed:\n{payload[1]}")
    return kind, payload[0]


def run_flow(url: str, scenario: str, args: Any, progress: Progress) -> dict[str, Any]:
    """One run of a throughput or latency scenario against ``url``."""
    topology, flow = define(scenario, args)
    ctx = mp.get_context("spawn")
    results = ctx.Queue()
    start = ctx.Event()
    address = parse_url(url)
    broker_pid = pid_listening_on(address.port)
    admin = BlockingClient(url)
    processes: list[Any] = []
    expected = sum(n for _, n in flow.consumers)
    try:
        topology.declare(admin)
        rss_before_connections = _rss(broker_pid)
        counters = []
        for index, (plan, share) in enumerate(flow.consumers):
            counter = ctx.Value("q", 0, lock=False)
            ready = ctx.Event()
            counters.append(counter)
            process = ctx.Process(
                target=workers.report_errors,
                args=(
                    f"consumer {index}",
                    results,
                    workers.consumer,
                    url,
                    plan,
                    share,
                    args.prefetch,
                    args.ack_every,
                    flow.rate is not None,
                    counter,
                    ready,
                    start,
                    results,
                ),
            )
            process.start()
            processes.append((process, ready))
        deadline = time.monotonic() + ERROR_WAIT
        for process, ready in processes:
            while not ready.wait(0.2):
                if not results.empty():
                    _collect(results, 1)  # raises the consumer's error
                if time.monotonic() > deadline or not process.is_alive():
                    raise RuntimeError("a bench consumer did not get ready")
        connections = sum(len(plan) for plan, _ in flow.consumers)
        rss_connected = _rss(broker_pid)
        if flow.rate is not None:
            producer_args: tuple[Any, ...] = (
                url,
                flow.templates[0][1],
                flow.rate,
                flow.duration,
                args.size,
                start,
                results,
            )
            body: Callable[..., None] = workers.rate_producer
        else:
            producer_args = (
                url,
                flow.templates,
                flow.count,
                args.size,
                start,
                results,
                flow.count_queue,
            )
            body = workers.producer
        producer = ctx.Process(
            target=workers.report_errors, args=("producer", results, body, *producer_args)
        )
        producer.start()
        processes.append((producer, None))
        cpu_before = cpu_seconds(broker_pid)
        start.set()
        got: dict[str, list[dict[str, Any]]] = {}
        waiting = len(flow.consumers) + 1
        last_report = time.monotonic()
        while waiting:
            try:
                kind, payload = _collect(results, 0.1)
            except Empty:  # nothing yet: update the progress display
                progress(sum(c.value for c in counters), expected)
                if time.monotonic() - last_report > ERROR_WAIT:
                    raise RuntimeError("bench run stalled: no result for 10 minutes") from None
                continue
            got.setdefault(kind, []).append(payload)
            waiting -= 1
            last_report = time.monotonic()
        progress(expected, expected)
        cpu_after = cpu_seconds(broker_pid)
        rss_after = _rss(broker_pid)
        for process, _ in processes:
            process.join(30)
    finally:
        for process, _ in processes:
            if process.is_alive():
                process.terminate()
                process.join(5)
        try:
            topology.delete(admin)
        finally:
            admin.close()
    [produced] = got["producer"]
    consumed = got.get("consumer", [])
    start_time = produced["start"]
    end_time = max([produced["end"], *(c["end"] for c in consumed)])
    elapsed = end_time - start_time
    deliveries = sum(c["consumed"] for c in consumed)
    client_cpu = produced["cpu"] + sum(c["cpu"] for c in consumed)
    result: dict[str, Any] = {
        "messages": produced["published"],
        "size": args.size,
        "seconds": elapsed,
        "msg_per_s": produced["published"] / elapsed if elapsed > 0 else 0.0,
        "deliveries": deliveries,
        "expected_deliveries": expected,
        "deliveries_per_s": deliveries / elapsed if elapsed > 0 else 0.0,
        "producer_cpu_s": produced["cpu"],
        "consumer_cpu_s": sum(c["cpu"] for c in consumed),
        "client_cpu_s": client_cpu,
        "broker_cpu_s": (cpu_after - cpu_before)
        if cpu_before is not None and cpu_after is not None
        else None,
        "broker_rss_mb": None if rss_after is None else rss_after / 1048576,
        "consumer_connections": connections,
    }
    if flow.count_queue is not None:
        result["publish_seconds"] = produced["publish_end"] - start_time
    if scenario == "many" and rss_before_connections and rss_connected and connections:
        result["rss_per_connection_kb"] = (
            (rss_connected - rss_before_connections) / connections / 1024
        )
    if flow.rate is not None:
        histogram = merge_histograms([c["histogram"] for c in consumed])
        result["rate"] = flow.rate
        for name, fraction in (("p50", 0.5), ("p99", 0.99), ("p999", 0.999)):
            value = percentile(histogram, fraction)
            result[f"latency_{name}_ms"] = None if value is None else value / 1000
        result["latency_max_ms"] = max(histogram) / 1000 if histogram else None
    return result


# --- persistent + confirms -----------------------------------------------------------------------


def run_persistent(url: str, args: Any, progress: Progress) -> dict[str, Any]:
    publishers, window, messages = args.publishers, args.confirm_window, args.messages
    if publishers < 1 or window < 1 or messages < publishers:
        raise ValueError("need --publishers >= 1, --confirm-window >= 1, --messages >= publishers")
    ctx = mp.get_context("spawn")
    start = ctx.Barrier(publishers + 1)  # the publishers and the consumer start together
    expected = ctx.Value("q", -1)
    counter = ctx.Value("q", 0, lock=False)
    results = ctx.Queue()
    target = _name("persistent")
    broker_pid = pid_listening_on(parse_url(url).port)
    admin = BlockingClient(url)
    admin.declare_queue(target, durable=True)
    processes = []
    left_in_queue: int | None = None
    try:
        cpu_before = cpu_seconds(broker_pid)
        processes.append(
            ctx.Process(
                target=workers.report_errors,
                args=(
                    "consumer",
                    results,
                    workers.persistent_consumer,
                    url,
                    target,
                    args.prefetch,
                    args.ack_every,
                    expected,
                    counter,
                    start,
                    results,
                ),
            )
        )
        shares = [messages // publishers + (i < messages % publishers) for i in range(publishers)]
        for index, share in enumerate(shares):
            processes.append(
                ctx.Process(
                    target=workers.report_errors,
                    args=(
                        f"publisher {index}",
                        results,
                        workers.persistent_publisher,
                        index,
                        url,
                        target,
                        share,
                        args.size,
                        window,
                        start,
                        results,
                    ),
                )
            )
        for process in processes:
            process.start()

        def collect() -> tuple[str, dict[str, Any]]:
            while True:
                try:
                    return _collect(results, 0.1)
                except Empty:
                    progress(counter.value, messages)

        done = [collect() for _ in range(publishers)]
        if any(kind != "publisher" for kind, _ in done):
            raise RuntimeError(f"unexpected bench result order: {[kind for kind, _ in done]}")
        pubs = sorted((payload for _, payload in done), key=lambda p: p["index"])
        expected.value = sum(p["acked"] for p in pubs)
        kind, consumer = collect()
        if kind != "consumer":
            raise RuntimeError(f"unexpected bench result: {kind}")
        progress(messages, messages)
        for process in processes:
            process.join(30)
        cpu_after = cpu_seconds(broker_pid)
        left_in_queue = admin.delete_queue(target)
    finally:
        for process in processes:
            if process.is_alive():
                process.terminate()
                process.join(5)
        if left_in_queue is None:  # a failed run: still remove its queue and messages
            try:
                admin.delete_queue(target)
            except (OSError, ConnectionError):
                try:
                    cleanup = BlockingClient(url)
                    cleanup.delete_queue(target)
                    cleanup.close()
                except (OSError, ConnectionError):
                    pass
        admin.close()
    histogram = merge_histograms([p["histogram"] for p in pubs])
    first = min(p["start"] for p in pubs)
    last = max(p["end"] for p in pubs)
    elapsed = last - first
    acked = sum(p["acked"] for p in pubs)
    p50 = percentile(histogram, 0.50)
    p99 = percentile(histogram, 0.99)
    publishers_cpu = sum(p["cpu"] for p in pubs)
    return {
        "messages": messages,
        "size": args.size,
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


# --- scale: memory per queue, binding, connection and message -----------------------------------


def run_scale(url: str, args: Any, progress: Progress) -> dict[str, Any]:
    """Declare ``--queues`` queues (default 10,000) and ``--bindings`` bindings (default 100,000,
    spread evenly, on a topic exchange), open ``--connections`` idle connections (default 1,000),
    then publish ``--messages`` transient messages into one queue, and read the broker's
    resident memory after each step. Needs the broker on this machine (its /proc)."""
    raise_fd_limit()
    queues = [_name(f"scale{i}") for i in range(args.queues or 10_000)]
    bindings = args.bindings or 100_000
    exchange = _name("scale")
    per_queue = max(1, bindings // len(queues))
    no_arguments: dict[str, Any] = {}
    binds = [
        (q, exchange, f"s{i}.k{j}.*", no_arguments)
        for i, q in enumerate(queues)
        for j in range(per_queue)
    ][:bindings]
    topology = Topology(
        exchanges=[(exchange, "topic")], queues=[(q, {}) for q in queues], bindings=binds
    )
    broker_pid = pid_listening_on(parse_url(url).port)
    if _rss(broker_pid) is None:
        raise RuntimeError("scale needs the broker's pid on this machine to read its memory")
    ctx = mp.get_context("spawn")
    results = ctx.Queue()
    admin = BlockingClient(url)
    steps: dict[str, float] = {}
    done = ctx.Event()
    holders = []

    def settle() -> int:
        time.sleep(1.0)
        value = _rss(broker_pid)
        assert value is not None
        return value

    total_steps = 4
    try:
        steps["idle"] = settle()
        progress(0, total_steps)
        admin.pipeline(
            [spec.ExchangeDeclare(exchange=exchange, type="topic")], spec.ExchangeDeclareOk
        )
        admin.pipeline([spec.QueueDeclare(queue=q) for q in queues], spec.QueueDeclareOk)
        steps["queues"] = settle()
        progress(1, total_steps)
        Topology(bindings=topology.bindings).declare(admin)
        steps["bindings"] = settle()
        progress(2, total_steps)
        per_process = 250
        remaining = args.connections
        while remaining > 0:
            n = min(per_process, remaining)
            ready = ctx.Event()
            process = ctx.Process(
                target=workers.report_errors,
                args=(
                    "connections",
                    results,
                    workers.idle_connections,
                    url,
                    n,
                    ready,
                    done,
                    results,
                ),
            )
            process.start()
            holders.append(process)
            if not ready.wait(300):
                raise RuntimeError("could not open the idle connections")
            remaining -= n
        steps["connections"] = settle()
        progress(3, total_steps)
        start = ctx.Event()
        start.set()
        producer = ctx.Process(
            target=workers.report_errors,
            args=(
                "producer",
                results,
                workers.producer,
                url,
                [("", queues[0], BasicProperties().encode())],
                args.messages,
                args.size,
                start,
                results,
                queues[0],
            ),
        )
        producer.start()
        _kind, produced = _collect(results, ERROR_WAIT)
        producer.join(30)
        steps["messages"] = settle()
        progress(4, total_steps)
    finally:
        done.set()
        for process in holders:
            process.join(60)
            if process.is_alive():
                process.terminate()
        try:
            topology.delete(admin)
        finally:
            admin.close()
    mb = 1048576
    return {
        "queues": len(queues),
        "bindings": len(topology.bindings),
        "connections": args.connections,
        "messages": args.messages,
        "size": args.size,
        "rss_mb": {step: value / mb for step, value in steps.items()},
        "per_queue_kb": (steps["queues"] - steps["idle"]) / len(queues) / 1024,
        "per_binding_b": (steps["bindings"] - steps["queues"]) / max(1, len(topology.bindings)),
        "per_connection_kb": (steps["connections"] - steps["bindings"])
        / max(1, args.connections)
        / 1024,
        "per_message_b": (steps["messages"] - steps["connections"]) / max(1, args.messages),
        "publish_msg_per_s": args.messages / (produced["end"] - produced["start"]),
    }
