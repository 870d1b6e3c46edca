"""``router bench``: router against any AMQP 0-9-1 broker (RabbitMQ), same scenario, same run.

The load generator is router's own codec on raw sockets (``router.client.blocking``), producers
and consumers in separate processes, so the broker is the bottleneck; every report shows the CPU
seconds of the broker and of the load generator to prove it. With no ``--url`` the embedded
broker is started as a subprocess in a fresh data directory. ``--compare URL`` runs the same
scenario against a second broker in the same run and prints the ratio. Medians over ``--runs``.

Scenarios (``--scenario``):

- ``publish``: one producer, one queue, no consumer (until the queue holds every message);
- ``e2e``: one producer, one consumer (prefetch 1000, ack multiple every 100);
- ``persistent``: ``--publishers`` in confirm mode, persistent messages, a durable queue, at most
  ``--confirm-window`` unconfirmed each; confirm latency p50/p99;
- ``fanout``: a fanout exchange to ``--queues`` (10) queues, a consumer on each;
- ``topic``: a topic exchange with ``--bindings`` (1,000) pattern bindings over 10 queues;
- ``headers``: a headers exchange with ``--bindings`` (100) x-match=all bindings over 10 queues;
- ``priority``: a queue with x-max-priority 10, random priorities;
- ``many``: ``--queues`` (10,000) queues consumed over ``--connections`` (1,000) connections;
- ``latency``: ``--rate`` msg/s for ``--duration`` s; publish-to-delivery p50/p99/p99.9;
- ``scale``: the broker's memory per queue, binding, connection and queued message;
- ``suite``: all of the above at the sizes docs/benchmarks.md reports, one JSON file each in
  ``--json-dir``.

``router bench-plot FILES --out PNG`` draws the JSON results.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from router.bench.scenarios import run_flow, run_persistent, run_scale
from router.bench.tools import ConfirmTracker, Embedded, median, percentile

__all__ = ["ConfirmTracker", "add_arguments", "percentile", "run"]

SCENARIOS = [
    "publish",
    "e2e",
    "persistent",
    "fanout",
    "topic",
    "headers",
    "priority",
    "many",
    "latency",
    "scale",
]

# what each scenario reports first, and whether more is better
PRIMARY: dict[str, tuple[str, str, bool]] = {
    "publish": ("msg_per_s", "msg/s", True),
    "e2e": ("msg_per_s", "msg/s", True),
    "persistent": ("msg_per_s", "confirmed msg/s", True),
    "fanout": ("deliveries_per_s", "deliveries/s", True),
    "topic": ("msg_per_s", "msg/s", True),
    "headers": ("msg_per_s", "msg/s", True),
    "priority": ("msg_per_s", "msg/s", True),
    "many": ("msg_per_s", "msg/s", True),
    "latency": ("latency_p99_ms", "p99 ms", False),
    "scale": ("per_message_b", "B per queued message", False),
}

# the suite: (name, scenario, settings) as docs/benchmarks.md reports them
SUITE: list[tuple[str, str, dict[str, Any]]] = [
    ("publish-16B", "publish", {"messages": 200_000}),
    ("e2e-16B", "e2e", {"messages": 200_000}),
    ("e2e-1KiB", "e2e", {"messages": 200_000, "size": 1024}),
    ("e2e-64KiB", "e2e", {"messages": 20_000, "size": 65536}),
    ("persistent-1", "persistent", {"messages": 100_000, "publishers": 1}),
    ("persistent-10", "persistent", {"messages": 100_000, "publishers": 10}),
    ("fanout-10", "fanout", {"messages": 50_000}),
    ("topic-1k", "topic", {"messages": 100_000, "bindings": 1000}),
    ("topic-100k", "topic", {"messages": 100_000, "bindings": 100_000}),
    ("headers-100", "headers", {"messages": 100_000}),
    ("priority-10", "priority", {"messages": 200_000}),
    # 800 connections: the reference RabbitMQ runs with a soft limit of 1,024 file descriptors
    # and stops accepting at about 830 (router serve raises its own limit; 1,000 and more work)
    ("many-10k-queues-800-connections", "many", {"messages": 200_000, "connections": 800}),
    ("latency-1000", "latency", {"rate": 1000, "duration": 10}),
    ("latency-10000", "latency", {"rate": 10_000, "duration": 10}),
    ("scale", "scale", {"messages": 1_000_000, "runs": 1, "connections": 800}),
]


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
        "--scenario", default="e2e", choices=[*SCENARIOS, "suite"], help="what to measure"
    )
    parser.add_argument(
        "--messages", type=int, default=200_000, help="messages per run (all publishers together)"
    )
    parser.add_argument("--size", type=int, default=16, help="body size in bytes")
    parser.add_argument("--prefetch", type=int, default=1000)
    parser.add_argument("--ack-every", type=int, default=100)
    parser.add_argument(
        "--publishers", type=int, default=1, help="persistent: publisher processes (default 1)"
    )
    parser.add_argument(
        "--confirm-window",
        type=int,
        default=1000,
        help="persistent: most unconfirmed messages outstanding per publisher (default 1000)",
    )
    parser.add_argument(
        "--queues", type=int, default=None, help="fanout/topic/headers: 10; many/scale: 10,000"
    )
    parser.add_argument(
        "--bindings", type=int, default=None, help="topic: 1,000; headers: 100; scale: 100,000"
    )
    parser.add_argument(
        "--connections", type=int, default=1000, help="many/scale: connections (default 1,000)"
    )
    parser.add_argument("--consumers", type=int, default=1, help="consumer processes (default 1)")
    parser.add_argument("--rate", type=float, default=1000.0, help="latency: msg/s (default 1000)")
    parser.add_argument(
        "--duration", type=float, default=10.0, help="latency: seconds (default 10)"
    )
    parser.add_argument("--runs", type=int, default=3, help="runs per broker; medians reported")
    parser.add_argument("--json", default=None, metavar="FILE", help="write results as JSON")
    parser.add_argument(
        "--json-dir", default=None, metavar="DIR", help="suite: one JSON file per scenario here"
    )


def add_plot_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("files", nargs="+", help="JSON results written by router bench")
    parser.add_argument("--out", required=True, help="the PNG to write")


# --- running -------------------------------------------------------------------------------------


def _one_run(scenario: str, url: str, args: argparse.Namespace, progress: Any) -> dict[str, Any]:
    if scenario == "persistent":
        return run_persistent(url, args, progress)
    if scenario == "scale":
        return run_scale(url, args, progress)
    return run_flow(url, scenario, args, progress)


def _summary(scenario: str, result: dict[str, Any]) -> str:
    key, unit, _ = PRIMARY[scenario]
    value = result.get(key)
    text = "n/a" if value is None else f"{value:,.2f}" if value < 100 else f"{value:,.0f}"
    parts = [f"{text} {unit}"]
    if scenario == "latency":
        parts.append(f"p50 {result['latency_p50_ms']} ms, p99.9 {result['latency_p999_ms']} ms")
    if scenario == "persistent":
        parts.append(
            f"confirm p50 {result['confirm_latency_p50_ms']:.2f} ms "
            f"p99 {result['confirm_latency_p99_ms']:.2f} ms"
        )
    if scenario == "scale":
        parts.append(
            f"per queue {result['per_queue_kb']:.1f} KiB, per binding "
            f"{result['per_binding_b']:.0f} B, per connection {result['per_connection_kb']:.1f} KiB"
        )
    broker_cpu = result.get("broker_cpu_s")
    if broker_cpu is not None:
        parts.append(f"broker cpu {broker_cpu:.2f} s, clients {result['client_cpu_s']:.2f} s")
    return "; ".join(parts)


def _measure(
    label: str, url: str, scenario: str, args: argparse.Namespace, console: Any
) -> dict[str, Any]:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    runs = []
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        console=console,
        transient=True,
    ) as display:
        for index in range(args.runs):
            task = display.add_task(f"{label} run {index + 1}/{args.runs}", total=None)

            def progress(done: int, total: int, task: Any = task) -> None:
                display.update(task, completed=done, total=total or None)

            result = _one_run(scenario, url, args, progress)
            display.remove_task(task)
            runs.append(result)
            console.print(f"  {label} run {index + 1}/{args.runs}: {_summary(scenario, result)}")
    summary: dict[str, Any] = {"label": label, "url": url, "runs": runs}
    for key in runs[0]:
        values = [r.get(key) for r in runs]
        if all(isinstance(v, int | float) or v is None for v in values) and any(
            v is not None for v in values
        ):
            summary[f"median_{key}"] = median(values)
    return summary


def _settings(scenario: str, args: argparse.Namespace) -> dict[str, Any]:
    keys = ["messages", "size", "prefetch", "ack_every", "runs"]
    keys += {
        "persistent": ["publishers", "confirm_window"],
        "fanout": ["queues", "consumers"],
        "topic": ["queues", "bindings", "consumers"],
        "headers": ["queues", "bindings", "consumers"],
        "many": ["queues", "connections", "consumers"],
        "latency": ["rate", "duration"],
        "scale": ["queues", "bindings", "connections"],
    }.get(scenario, [])
    return {key: getattr(args, key) for key in keys}


def run_scenario(
    scenario: str, args: argparse.Namespace, url: str, label: str, console: Any
) -> dict[str, Any]:
    """Measure ``scenario`` on ``url`` (and ``args.compare``); print the table; the JSON data."""
    settings = _settings(scenario, args)
    console.print(
        f"[bold]router bench[/] scenario={scenario} "
        + " ".join(f"{k}={v}" for k, v in settings.items() if v is not None)
    )
    results = [_measure(label, url, scenario, args, console)]
    if args.compare:
        results.append(_measure("compare", args.compare, scenario, args, console))
    _print_table(console, scenario, args, results)
    return {"scenario": scenario, "settings": settings, "results": results}


def _print_table(
    console: Any, scenario: str, args: argparse.Namespace, results: list[dict[str, Any]]
) -> None:
    from rich.table import Table

    key, unit, higher_better = PRIMARY[scenario]
    table = Table(title=f"{scenario}, {args.size} B messages (median of {args.runs})")
    table.add_column("broker")
    columns = [(key, unit)]
    columns += {
        "persistent": [
            ("confirm_latency_p50_ms", "confirm p50 ms"),
            ("confirm_latency_p99_ms", "confirm p99 ms"),
        ],
        "fanout": [("msg_per_s", "msg/s in")],
        "latency": [("latency_p50_ms", "p50 ms"), ("latency_p999_ms", "p99.9 ms")],
        "many": [("rss_per_connection_kb", "KiB per connection")],
        "scale": [
            ("per_queue_kb", "KiB per queue"),
            ("per_binding_b", "B per binding"),
            ("per_connection_kb", "KiB per connection"),
        ],
    }.get(scenario, [])
    if scenario != "scale":
        columns += [("broker_cpu_s", "broker CPU s/run"), ("client_cpu_s", "client CPU s/run")]
    for _, header in columns:
        table.add_column(header, justify="right")
    for result in results:
        row = [result["label"]]
        for name, _ in columns:
            value = result.get(f"median_{name}")
            row.append(
                "n/a" if value is None else f"{value:,.2f}" if value < 100 else f"{value:,.0f}"
            )
        table.add_row(*row)
    console.print(table)
    if len(results) == 2:
        a = results[0].get(f"median_{key}")
        b = results[1].get(f"median_{key}")
        if a and b:
            better = "higher" if higher_better else "lower"
            console.print(
                f"ratio {results[0]['label']} / {results[1]['label']} ({unit}, {better} is "
                f"better): [bold]{a / b:.2f}[/]"
            )
            results[0]["ratio"] = a / b


def run(args: argparse.Namespace) -> int:
    from rich.console import Console

    console = Console()
    embedded = None
    url = args.url
    if url is None:
        embedded = Embedded()
        url = embedded.url
    label = "router" if embedded else "target"
    outputs: list[tuple[str | None, dict[str, Any]]] = []
    failed: list[str] = []
    try:
        if args.scenario == "suite":
            for name, scenario, overrides in SUITE:
                suite_args = argparse.Namespace(**{**vars(args), **overrides})
                try:
                    data = run_scenario(scenario, suite_args, url, label, console)
                except Exception as error:  # one failed scenario does not lose the others
                    console.print(f"[red]{name} failed:[/] {error}")
                    failed.append(name)
                    continue
                data["name"] = name
                target = None
                if args.json_dir:
                    Path(args.json_dir).mkdir(parents=True, exist_ok=True)
                    target = str(Path(args.json_dir) / f"{name}.json")
                outputs.append((target, data))
                if target:
                    Path(target).write_text(json.dumps(data, indent=2))
        else:
            outputs.append((args.json, run_scenario(args.scenario, args, url, label, console)))
    finally:
        if embedded is not None:
            embedded.stop()
    if embedded is not None and embedded.store_summary:
        console.print(f"router's store (group commit, all runs): {embedded.store_summary}")
        for _, data in outputs:
            data["results"][0]["store_summary"] = embedded.store_summary
    for target, data in outputs:
        if target:
            Path(target).write_text(json.dumps(data, indent=2))
    if failed:
        console.print(f"[red]failed:[/] {', '.join(failed)}")
        return 1
    return 0


def plot(args: argparse.Namespace) -> int:
    from router.bench.plot import plot_files

    plot_files([Path(f) for f in args.files], Path(args.out))
    print(f"wrote {args.out}")
    return 0
