"""The dashboard, drawn from real data: a live router with traffic, read through its management
API, rendered to a recording console at 80×24 and 160×48; the broker going away and coming back;
``--once`` as a script would run it; and once for real in tmux (send-keys, capture-pane)."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pika
import pytest
from conftest import RunningServer, start_router
from rich.console import Console

from router.dashboard.app import Client
from router.dashboard.render import History, Snapshot, render, sparkline

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def broker_with_traffic() -> Iterator[RunningServer]:
    """orders (topic) → orders.eu, which dead-letters to dlx (fanout) → orders.dlq; 60 messages
    published, 5 rejected into the DLQ; nobody consumes."""
    running = start_router(management=True)
    connection = pika.BlockingConnection(pika.URLParameters(running.url))
    channel = connection.channel()
    channel.exchange_declare("orders", "topic")
    channel.exchange_declare("dlx", "fanout")
    channel.queue_declare("orders.eu", arguments={"x-dead-letter-exchange": "dlx"})
    channel.queue_declare("orders.dlq")
    channel.queue_bind("orders.eu", "orders", "eu.*")
    channel.queue_bind("orders.dlq", "dlx", "")
    for _ in range(60):
        channel.basic_publish("orders", "eu.created", b"order")
    for _ in range(5):
        method, _properties, _body = channel.basic_get("orders.eu")
        channel.basic_reject(method.delivery_tag, requeue=False)
    connection.close()
    try:
        yield running
    finally:
        running.stop()


def _text(snapshot: Snapshot, history: History, width: int, height: int | None) -> str:
    console = Console(width=width, record=True, file=io.StringIO(), color_system=None)
    console.print(render(snapshot, history, width, height))
    return console.export_text()


def test_a_snapshot_of_a_live_broker_shows_routing_queues_and_dead_letters_in_80_columns(
    broker_with_traffic: RunningServer,
) -> None:
    client = Client(broker_with_traffic.http_url, None, None)
    history = History()
    snapshot = client.snapshot()
    history.record(snapshot)
    text = _text(snapshot, history, 80, 24)
    lines = text.splitlines()
    assert len(lines) <= 24
    assert all(len(line) <= 80 for line in lines)
    assert "connected" in text and "disconnected" not in text
    assert "orders → orders.eu" in text and "eu.*" in text  # the busiest binding
    assert "orders.eu" in text and "orders.dlq" in text
    assert "rejected 5" in text  # dead-lettered, by reason
    queue_line = next(line for line in lines if "orders.eu " in line and "█" in line)
    assert " 55 " in queue_line  # 60 published, 5 rejected


def test_a_wide_terminal_puts_the_panels_side_by_side(broker_with_traffic: RunningServer) -> None:
    client = Client(broker_with_traffic.http_url, None, None)
    history = History()
    snapshot = client.snapshot()
    history.record(snapshot)
    text = _text(snapshot, history, 160, 48)
    assert len(text.splitlines()) <= 48
    side_by_side = [line for line in text.splitlines() if "exchanges" in line and "queues" in line]
    assert side_by_side, text


def test_a_queue_growing_without_consumers_is_red_and_a_filling_dlq_magenta() -> None:
    snapshot = Snapshot(
        "http://broker",
        queues=[
            {
                "name": "work",
                "vhost": "/",
                "messages": 10,
                "messages_ready": 10,
                "consumers": 0,
                "arguments": {"x-dead-letter-exchange": "dlx"},
                "messages_details": {"rate": 2.0},
            },
            {
                "name": "parked",
                "vhost": "/",
                "messages": 4,
                "messages_ready": 4,
                "consumers": 0,
                "arguments": {},
                "messages_details": {"rate": 1.0},
            },
        ],
        bindings=[
            {
                "source": "dlx",
                "vhost": "/",
                "destination": "parked",
                "destination_type": "queue",
                "routing_key": "",
                "matched": 4,
            }
        ],
    )
    history = History()
    history.record(snapshot)
    console = Console(width=100, file=io.StringIO(), color_system="truecolor")
    colours = {
        segment.text.strip(): segment.style.color.name
        for segment in console.render(render(snapshot, history, 100, 30))
        if segment.style is not None and segment.style.color is not None
    }
    assert colours["work"] == "red"
    assert colours["parked"] == "magenta"


def test_the_dashboard_says_disconnected_when_the_broker_is_gone_and_recovers_when_it_is_back() -> (
    None
):
    running = start_router(management=True)
    client = Client(running.http_url, None, None)
    assert not client.snapshot().error
    running.stop()
    gone = client.snapshot()
    assert "cannot reach" in gone.error
    text = _text(gone, History(), 80, 24)
    assert "disconnected" in text
    again = start_router(management=True)
    try:
        back = Client(again.http_url, None, None).snapshot()
        assert not back.error and back.overview["object_totals"]["queues"] == 0
    finally:
        again.stop()


def test_a_wrong_password_is_reported_as_such() -> None:
    running = start_router(management=True)
    try:
        snapshot = Client(running.http_url, "guest", "wrong").snapshot()
        assert "HTTP 401" in snapshot.error and "user and password" in snapshot.error
    finally:
        running.stop()


def test_sparkline_scales_to_the_highest_rate() -> None:
    assert sparkline([0, 5, 10], 10) == "▁▄█"
    assert sparkline([0, 0], 10) == "▁▁"
    assert sparkline([], 10) == ""


def test_once_prints_one_snapshot_and_exits_0_or_1_when_the_broker_is_unreachable(
    broker_with_traffic: RunningServer,
) -> None:
    command = [sys.executable, "-m", "router", "dashboard", "--once", "--url"]
    env = {**os.environ, "COLUMNS": "80", "LINES": "24"}
    result = subprocess.run(
        [*command, broker_with_traffic.http_url],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "orders.dlq" in result.stdout and "rejected 5" in result.stdout
    result = subprocess.run(
        [*command, "http://127.0.0.1:1"], capture_output=True, text=True, env=env, timeout=60
    )
    assert result.returncode == 1
    assert "disconnected" in result.stdout


@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed (apt install tmux)")
def test_the_live_dashboard_runs_full_screen_in_tmux_and_quits_on_ctrl_c(
    broker_with_traffic: RunningServer,
) -> None:
    session = f"router-dashboard-{os.getpid()}"
    command = f"{sys.executable} -m router dashboard --url {broker_with_traffic.http_url}"
    subprocess.run(
        [
            "tmux",
            "new-session",
            "-d",
            "-s",
            session,
            "-x",
            "80",
            "-y",
            "24",
            "-c",
            str(ROOT),
            command,
        ],
        check=True,
    )
    try:
        screen = ""
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            screen = subprocess.run(
                ["tmux", "capture-pane", "-p", "-t", session], capture_output=True, text=True
            ).stdout
            if "orders.dlq" in screen and "rejected 5" in screen:
                break
            time.sleep(0.2)
        assert "orders.dlq" in screen and "connected" in screen, screen
        assert len(screen.rstrip("\n").splitlines()) <= 24
        subprocess.run(["tmux", "send-keys", "-t", session, "C-c"], check=True)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            alive = subprocess.run(["tmux", "has-session", "-t", session], capture_output=True)
            if alive.returncode != 0:
                break  # the dashboard exited, so the session closed
            time.sleep(0.2)
        assert alive.returncode != 0, "the dashboard did not exit on Ctrl-C"
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True)
