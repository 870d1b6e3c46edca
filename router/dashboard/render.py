"""The dashboard's picture: a snapshot of the management API → a rich renderable. Pure: no I/O,
no clock (ages come in the snapshot), so it is tested by rendering to a recording console.

Panels: an overview header; exchanges with in/out rates and a sparkline of the in-rate; the
busiest bindings (the live routing stats); queues with ready / unacked / scheduled, consumers,
rates, a depth bar and the oldest message's age; dead-lettering by reason. A queue is red when
it grows with no consumer, magenta when it is a dead-letter queue that is filling. Sizes follow
the terminal: panels stack on an 80-column screen and sit side by side on a wide one.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

from rich import box
from rich.console import Group, RenderableType
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

SPARKS = "▁▂▃▄▅▆▇█"
HISTORY = 40  # samples of each exchange's in-rate kept for its sparkline
WIDE = 140  # at least this many columns: two columns of panels


@dataclass
class Snapshot:
    """What one refresh read from the API (``error`` set when it could not)."""

    url: str
    overview: dict[str, Any] = field(default_factory=dict)
    exchanges: list[dict[str, Any]] = field(default_factory=list)
    queues: list[dict[str, Any]] = field(default_factory=list)
    bindings: list[dict[str, Any]] = field(default_factory=list)
    error: str = ""
    retry_in: float = 0.0


class History:
    """Recent in-rates per exchange (for sparklines) and the last depth of each queue (to tell
    a growing queue)."""

    def __init__(self) -> None:
        self.rates: dict[tuple[str, str], deque[float]] = {}
        self.depths: dict[tuple[str, str], int] = {}
        self.growing: set[tuple[str, str]] = set()

    def record(self, snapshot: Snapshot) -> None:
        for exchange in snapshot.exchanges:
            key = (exchange.get("vhost", ""), exchange.get("name", ""))
            series = self.rates.setdefault(key, deque(maxlen=HISTORY))
            series.append(_rate(exchange.get("message_stats", {}), "publish_in"))
        growing = set()
        depths = {}
        for queue in snapshot.queues:
            key = (queue.get("vhost", ""), queue.get("name", ""))
            depth = int(queue.get("messages", 0) or 0)
            depths[key] = depth
            rate = float(queue.get("messages_details", {}).get("rate", 0.0))
            if depth > self.depths.get(key, depth) or (rate > 0 and depth):
                growing.add(key)
        self.depths = depths
        self.growing = growing


def _rate(stats: dict[str, Any], name: str) -> float:
    details = stats.get(f"{name}_details")
    return float(details.get("rate", 0.0)) if isinstance(details, dict) else 0.0


def _number(value: float) -> str:
    if value >= 10_000_000:
        return f"{value / 1_000_000:.0f}M"
    if value >= 10_000:
        return f"{value / 1000:.0f}k"
    if value >= 100 or float(value).is_integer():
        return f"{value:.0f}"
    return f"{value:.1f}"


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.0f}s"
    if seconds < 3600:
        return f"{seconds / 60:.0f}m"
    if seconds < 86400:
        return f"{seconds / 3600:.1f}h"
    return f"{seconds / 86400:.1f}d"


def sparkline(values: list[float] | deque[float], width: int) -> str:
    points = list(values)[-width:]
    if not points:
        return ""
    top = max(points)
    if top <= 0:
        return SPARKS[0] * len(points)
    return "".join(SPARKS[min(len(SPARKS) - 1, int(v / top * (len(SPARKS) - 1)))] for v in points)


def _bar(value: int, top: int, width: int) -> str:
    if top <= 0 or value <= 0:
        return ""
    return "█" * max(1, round(value / top * width))


def header(snapshot: Snapshot) -> RenderableType:
    overview = snapshot.overview
    stats = overview.get("message_stats", {})
    totals = overview.get("object_totals", {})
    queue_totals = overview.get("queue_totals", {})
    dead = overview.get("dead_lettered", {}) or {}
    line1 = Text()
    line1.append(f"{overview.get('product_name', 'router')} ", style="bold")
    line1.append(f"{snapshot.url}  ")
    if snapshot.error:
        line1.append("disconnected", style="bold white on red")
        retry = f"; retrying in {snapshot.retry_in:.0f}s" if snapshot.retry_in else ""
        line1.append(f"  {snapshot.error}{retry}", style="red")
    else:
        line1.append("connected", style="bold green")
        alarms = overview.get("alarms") or []
        if alarms:
            line1.append(f"  ALARM: {', '.join(alarms)} (publishers blocked)", style="bold red")
    line2 = Text()
    for label, value in (
        ("conns", totals.get("connections", 0)),
        ("chans", totals.get("channels", 0)),
        ("consumers", totals.get("consumers", 0)),
        ("queues", totals.get("queues", 0)),
        ("msgs", queue_totals.get("messages", 0)),
    ):
        line2.append(f"{label} ", style="dim")
        line2.append(f"{_number(value)}  ", style="bold")
    line3 = Text()
    for label, name in (("publish", "publish"), ("deliver", "deliver_get"), ("ack", "ack")):
        line3.append(f"{label} ", style="dim")
        line3.append(f"{_number(_rate(stats, name))}/s  ", style="bold cyan")
    unroutable = int(stats.get("drop_unroutable", 0) or 0) + int(
        stats.get("return_unroutable", 0) or 0
    )
    line3.append("unroutable ", style="dim")
    line3.append(f"{_number(unroutable)}  ", style="bold yellow" if unroutable else "bold")
    dead_total = sum(int(v) for v in dead.values())
    line3.append("dead-lettered ", style="dim")
    line3.append(_number(dead_total), style="bold magenta" if dead_total else "bold")
    return Panel(Group(line1, line2, line3), box=box.SQUARE, padding=(0, 1))


def exchanges_panel(snapshot: Snapshot, history: History, rows: int, width: int) -> RenderableType:
    table = Table(box=None, expand=True, padding=(0, 1), header_style="bold")
    table.add_column("exchange", ratio=3, no_wrap=True, overflow="ellipsis")
    table.add_column("type", no_wrap=True)
    table.add_column("in/s", justify="right")
    table.add_column("out/s", justify="right")
    spark_width = max(6, min(HISTORY, width // 4))
    table.add_column("in, recent", no_wrap=True, width=spark_width)
    shown = [
        x
        for x in snapshot.exchanges
        if x.get("name") not in ("",) and not str(x.get("name", "")).startswith("amq.")
    ]
    shown.sort(
        key=lambda x: (
            _rate(x.get("message_stats", {}), "publish_in"),
            x.get("message_stats", {}).get("publish_in", 0),
        ),
        reverse=True,
    )
    for exchange in shown[:rows]:
        stats = exchange.get("message_stats", {})
        key = (exchange.get("vhost", ""), exchange.get("name", ""))
        table.add_row(
            exchange.get("name", ""),
            exchange.get("type", ""),
            _number(_rate(stats, "publish_in")),
            _number(_rate(stats, "publish_out")),
            Text(sparkline(history.rates.get(key, deque()), spark_width), style="cyan"),
        )
    more = len(shown) - rows
    title = f"exchanges ({len(shown)})" + (f", {more} more" if more > 0 else "")
    return Panel(table, title=title, title_align="left", box=box.SQUARE, padding=(0, 0))


def routing_panel(snapshot: Snapshot, rows: int) -> RenderableType:
    table = Table(box=None, expand=True, padding=(0, 1), header_style="bold")
    table.add_column("binding", ratio=3, no_wrap=True, overflow="ellipsis")
    table.add_column("key", ratio=2, no_wrap=True, overflow="ellipsis")
    table.add_column("match/s", justify="right")
    table.add_column("matched", justify="right")
    for binding in snapshot.bindings[:rows]:
        arrow = "⇒" if binding.get("destination_type") == "exchange" else "→"
        table.add_row(
            f"{binding.get('source', '')} {arrow} {binding.get('destination', '')}",
            binding.get("routing_key", "") or "(any)",
            _number(float(binding.get("matched_details", {}).get("rate", 0.0))),
            _number(int(binding.get("matched", 0))),
        )
    if not snapshot.bindings:
        table.add_row(Text("no binding has matched yet", style="dim"), "", "", "")
    return Panel(
        table, title="routing: busiest bindings", title_align="left", box=box.SQUARE, padding=(0, 0)
    )


def _dead_letter_targets(snapshot: Snapshot) -> set[tuple[str, str]]:
    """Queues bound to an exchange some queue dead-letters to: the dead-letter queues."""
    dlx = {
        (q.get("vhost", ""), str(q.get("arguments", {}).get("x-dead-letter-exchange")))
        for q in snapshot.queues
        if q.get("arguments", {}).get("x-dead-letter-exchange") is not None
    }
    return {
        (b.get("vhost", ""), b.get("destination", ""))
        for b in snapshot.bindings
        if (b.get("vhost", ""), b.get("source", "")) in dlx and b.get("destination_type") == "queue"
    } | {
        (q.get("vhost", ""), q.get("name", ""))
        for q in snapshot.queues
        if str(q.get("name", "")).endswith((".dlq", "-dlq", "_dlq", ".dead", "-dead"))
    }


def queues_panel(snapshot: Snapshot, history: History, rows: int, width: int) -> RenderableType:
    table = Table(box=None, expand=True, padding=(0, 1), header_style="bold")
    table.add_column("queue", ratio=3, no_wrap=True, overflow="ellipsis")
    table.add_column("ready", justify="right")
    table.add_column("unack", justify="right")
    table.add_column("sched", justify="right")
    table.add_column("cons", justify="right")
    table.add_column("in/s", justify="right")
    table.add_column("out/s", justify="right")
    bar_width = 8 if width < 100 else 16
    table.add_column("depth", no_wrap=True, width=bar_width)
    table.add_column("oldest", justify="right")
    queues = sorted(
        snapshot.queues,
        key=lambda q: (
            int(q.get("messages", 0) or 0),
            _rate(q.get("message_stats", {}), "publish"),
        ),
        reverse=True,
    )
    top = max((int(q.get("messages_ready", 0) or 0) for q in queues), default=0)
    dead_letter_queues = _dead_letter_targets(snapshot)
    for queue in queues[:rows]:
        key = (queue.get("vhost", ""), queue.get("name", ""))
        stats = queue.get("message_stats", {})
        ready = int(queue.get("messages_ready", 0) or 0)
        consumers = int(queue.get("consumers", 0) or 0)
        style = ""
        if key in dead_letter_queues and ready and key in history.growing:
            style = "bold magenta"
        elif key in dead_letter_queues and ready:
            style = "magenta"
        elif ready and not consumers and key in history.growing:
            style = "bold red"
        table.add_row(
            Text(str(queue.get("name", "")), style=style),
            _number(ready),
            _number(int(queue.get("messages_unacknowledged", 0) or 0)),
            _number(int(queue.get("messages_scheduled", 0) or 0)),
            _number(consumers),
            _number(_rate(stats, "publish")),
            _number(_rate(stats, "deliver_get")),
            Text(_bar(ready, top, bar_width), style=style or "green"),
            _age(queue.get("oldest_message_age")),
            style=None,
        )
    more = len(queues) - rows
    title = f"queues ({len(queues)})" + (f", {more} more" if more > 0 else "")
    return Panel(table, title=title, title_align="left", box=box.SQUARE, padding=(0, 0))


def dead_letter_panel(snapshot: Snapshot, rows: int) -> RenderableType:
    reasons = snapshot.overview.get("dead_lettered", {}) or {}
    line = Text()
    if not reasons:
        line.append("nothing dead-lettered", style="dim")
    for reason, count in sorted(reasons.items()):
        line.append(f"{reason} ", style="dim")
        line.append(f"{_number(count)}  ", style="bold magenta")
    sources = sorted(
        (
            (
                sum(q.get("dead_lettered", {}).values()),
                q.get("name", ""),
                q.get("dead_lettered", {}),
            )
            for q in snapshot.queues
            if q.get("dead_lettered")
        ),
        reverse=True,
    )
    lines: list[RenderableType] = [line]
    for _total, name, counts in sources[: max(0, rows - 1)]:
        detail = ", ".join(f"{reason} {_number(n)}" for reason, n in sorted(counts.items()))
        lines.append(Text(f"  from {name}: {detail}", no_wrap=True, overflow="ellipsis"))
    return Panel(
        Group(*lines),
        title="dead-lettered, by reason",
        title_align="left",
        box=box.SQUARE,
        padding=(0, 1),
    )


def render(
    snapshot: Snapshot, history: History, width: int = 80, height: int | None = 24
) -> RenderableType:
    """The whole screen for a ``width`` × ``height`` terminal (``height`` None: no row limit,
    for ``--once``)."""
    if height is None:
        x_rows = q_rows = b_rows = d_rows = 1000
    elif width >= WIDE:
        body = max(4, height - 5)  # header panel: 5 lines
        x_rows = max(1, body // 2 - 3)
        b_rows = max(1, body - body // 2 - 3)
        d_rows = 3
        q_rows = max(1, body - d_rows - 2 - 3)
    else:
        body = max(8, height - 5)
        # four stacked panels, 3 lines of frame and header each
        x_rows = max(1, body // 6 - 1)
        b_rows = max(1, body // 6 - 1)
        d_rows = 1
        q_rows = max(1, body - (x_rows + 3) - (b_rows + 3) - (d_rows + 2) - 3)
    top = header(snapshot)
    if width >= WIDE:
        left = Group(
            exchanges_panel(snapshot, history, x_rows, width // 2), routing_panel(snapshot, b_rows)
        )
        right = Group(
            queues_panel(snapshot, history, q_rows, width // 2), dead_letter_panel(snapshot, d_rows)
        )
        grid = Table.grid(expand=True)
        grid.add_column(ratio=1)
        grid.add_column(ratio=1)
        grid.add_row(left, right)
        return Group(top, grid)
    return Group(
        top,
        exchanges_panel(snapshot, history, x_rows, width),
        routing_panel(snapshot, b_rows),
        queues_panel(snapshot, history, q_rows, width),
        dead_letter_panel(snapshot, d_rows),
    )
