"""``router bench``: the scenarios run end to end with small counts and lose nothing.

No test asserts a timing (the machines are shared); they check the counts: every message published
is confirmed, consumed and gone from the queue. The bench starts the embedded broker itself when no
``--url`` is given; ``--compare`` points at the in-process test broker.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import pytest

from router.bench import ConfirmTracker, add_arguments, percentile, run
from router.client.blocking import BlockingClient


def _bench(tmp_path: Path, *argv: str) -> dict[str, Any]:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    out = tmp_path / "bench.json"
    args = parser.parse_args([*argv, "--json", str(out)])
    assert run(args) == 0
    result: dict[str, Any] = json.loads(out.read_text())
    return result


def _check_persistent(result: dict[str, Any], messages: int, publishers: int) -> None:
    for run_ in result["runs"]:
        assert run_["publishers"] == publishers
        assert run_["published"] == messages
        assert run_["confirmed"] == messages
        assert run_["nacked"] == 0
        assert run_["consumed"] == messages
        assert run_["left_in_queue"] == 0
        assert run_["msg_per_s"] > 0
        assert 0 <= run_["confirm_latency_p50_ms"] <= run_["confirm_latency_p99_ms"]
        assert run_["confirm_latency_p99_ms"] <= run_["confirm_latency_max_ms"]
        assert run_["client_cpu_s"] >= 0


def test_persistent_one_publisher_embedded(tmp_path: Path) -> None:
    data = _bench(
        tmp_path,
        *("--scenario", "persistent", "--messages", "3000", "--confirm-window", "100"),
        *("--runs", "2"),
    )
    assert data["scenario"] == "persistent"
    assert data["settings"]["publishers"] == 1
    assert data["settings"]["confirm_window"] == 100
    [result] = data["results"]
    assert result["label"] == "router"
    assert len(result["runs"]) == 2
    _check_persistent(result, 3000, 1)
    assert result["median_confirm_latency_p99_ms"] is not None


def test_persistent_several_publishers_and_compare(tmp_path: Path, router_server: Any) -> None:
    """Uneven shares (1001 over 3), a window smaller than a write batch, bodies over one frame."""
    data = _bench(
        tmp_path,
        *("--scenario", "persistent", "--publishers", "3", "--messages", "1001"),
        *("--confirm-window", "37", "--size", "140000", "--runs", "1"),
        *("--compare", router_server.url),
    )
    assert [r["label"] for r in data["results"]] == ["router", "compare"]
    for result in data["results"]:
        _check_persistent(result, 1001, 3)
    # every run deleted its queue
    assert not [name for name in router_server.call(_queue_names, router_server) if "bench" in name]


def _queue_names(server: Any) -> list[str]:
    return [str(name) for vhost in server.broker.vhosts.values() for name in vhost.queues]


def test_e2e_embedded(tmp_path: Path) -> None:
    data = _bench(tmp_path, "--messages", "2000", "--runs", "1")
    assert data["scenario"] == "e2e"
    [result] = data["results"]
    [run_] = result["runs"]
    assert run_["messages"] == 2000
    assert result["median_msg_per_s"] > 0


@pytest.mark.differential
def test_persistent_against_rabbitmq(tmp_path: Path, rabbitmq_url: str) -> None:
    data = _bench(
        tmp_path,
        *("--scenario", "persistent", "--publishers", "2", "--messages", "2000"),
        *("--runs", "1", "--url", rabbitmq_url),
    )
    [result] = data["results"]
    assert result["label"] == "target"
    _check_persistent(result, 2000, 2)


# --- the pieces --------------------------------------------------------------------------------


def test_blocking_client_confirms(router_url: str) -> None:
    client = BlockingClient(router_url)
    try:
        client.declare_queue("bench-confirms", durable=True)
        client.confirm_select()
        client.send(client.publish_batch("", "bench-confirms", b"x", 5))
        settled: list[int] = []
        while len(settled) < 5:
            for tag, multiple, nack in client.receive_confirms():
                assert not nack
                first = settled[-1] + 1 if settled else 1
                settled.extend(range(first if multiple else tag, tag + 1))
        assert settled == [1, 2, 3, 4, 5]
        assert client.delete_queue("bench-confirms") == 5
    finally:
        client.close()


def test_blocking_client_raises_when_the_broker_closes_the_channel(router_url: str) -> None:
    client = BlockingClient(router_url)
    try:
        client.confirm_select()
        client.send(client.publish_batch("no-such-exchange", "x", b"x", 1))
        with pytest.raises(ConnectionError, match="404"):
            while True:
                client.receive_confirms()
    finally:
        client.close()


def test_confirm_tracker_multiple_single_out_of_order_and_nack() -> None:
    tracker = ConfirmTracker()
    tracker.sent(3, 0.0)  # tags 1-3 written at t=0
    tracker.sent(3, 1.0)  # tags 4-6 written at t=1
    assert tracker.outstanding == 6
    tracker.settle(2, True, False, 2.0)  # 1, 2
    tracker.settle(5, False, False, 3.0)  # 5 alone, out of order
    tracker.settle(5, False, False, 3.5)  # duplicate: ignored
    tracker.settle(4, True, True, 4.0)  # nack 3 and 4 (5 already settled)
    assert (tracker.acked, tracker.nacked, tracker.outstanding) == (3, 2, 1)
    tracker.settle(6, True, False, 5.0)  # 6
    assert (tracker.acked, tracker.nacked, tracker.outstanding) == (4, 2, 0)
    # latencies: 1, 2 → 2 s; 5 → 2 s; 3 → 4 s; 4 → 3 s; 6 → 4 s
    assert sorted((micros, n) for micros, n in tracker.histogram.items()) == [
        (2_000_000, 3),
        (3_000_000, 1),
        (4_000_000, 2),
    ]
    assert tracker.floor == 7
    assert not tracker.writes
    with pytest.raises(ValueError):
        tracker.settle(7, False, False, 6.0)


def test_percentile_nearest_rank() -> None:
    histogram = {1: 50, 2: 49, 100: 1}
    assert percentile(histogram, 0.50) == 1
    assert percentile(histogram, 0.99) == 2
    assert percentile(histogram, 1.0) == 100
    assert percentile({}, 0.5) is None


# --- the other scenarios: every delivery arrives, nothing is left behind ------------------------


def _run_scenario(tmp_path: Path, url: str, scenario: str, *argv: str) -> dict[str, Any]:
    data = _bench(tmp_path, "--url", url, "--scenario", scenario, "--runs", "1", *argv)
    assert data["scenario"] == scenario
    [result] = data["results"]
    [run_] = result["runs"]
    return run_


def _no_bench_queues_left(server: Any) -> None:
    assert not [name for name in server.call(_queue_names, server) if "bench" in name]


@pytest.mark.parametrize(
    ("scenario", "argv", "deliveries"),
    [
        ("e2e", ("--messages", "3000", "--size", "1024"), 3000),
        ("fanout", ("--messages", "500", "--queues", "4", "--consumers", "2"), 2000),
        ("topic", ("--messages", "3000", "--bindings", "300", "--queues", "7"), 3000),
        ("headers", ("--messages", "1001", "--bindings", "30"), 1001),
        (
            "priority",
            (
                "--messages",
                "2000",
            ),
            2000,
        ),
        ("many", ("--messages", "2000", "--queues", "200", "--connections", "20"), 2000),
    ],
)
def test_flow_scenarios_deliver_every_message(
    tmp_path: Path, router_server: Any, scenario: str, argv: tuple[str, ...], deliveries: int
) -> None:
    run_ = _run_scenario(tmp_path, router_server.url, scenario, *argv)
    assert run_["deliveries"] == run_["expected_deliveries"] == deliveries
    assert run_["msg_per_s"] > 0 and run_["deliveries_per_s"] > 0
    assert run_["client_cpu_s"] >= 0
    _no_bench_queues_left(router_server)


def test_publish_only_counts_every_message_in_the_queue(tmp_path: Path, router_server: Any) -> None:
    run_ = _run_scenario(tmp_path, router_server.url, "publish", "--messages", "2501")
    assert run_["messages"] == 2501
    assert run_["deliveries"] == 0
    assert 0 < run_["publish_seconds"] <= run_["seconds"]
    _no_bench_queues_left(router_server)


def test_latency_at_a_fixed_rate(tmp_path: Path, router_server: Any) -> None:
    run_ = _run_scenario(tmp_path, router_server.url, "latency", "--rate", "500", "--duration", "1")
    assert run_["deliveries"] == 500
    assert 0 <= run_["latency_p50_ms"] <= run_["latency_p99_ms"] <= run_["latency_p999_ms"]
    assert run_["latency_p999_ms"] <= run_["latency_max_ms"]
    _no_bench_queues_left(router_server)


def test_scale_reports_memory_per_thing(tmp_path: Path) -> None:
    data = _bench(
        tmp_path,
        *("--scenario", "scale", "--queues", "100", "--bindings", "1000"),
        *("--connections", "20", "--messages", "20000", "--runs", "1"),
    )
    [run_] = data["results"][0]["runs"]
    assert set(run_["rss_mb"]) == {"idle", "queues", "bindings", "connections", "messages"}
    assert run_["bindings"] == 1000 and run_["queues"] == 100
    assert run_["per_message_b"] > 0


def test_suite_writes_a_json_file_per_scenario_and_the_plot_draws_them(
    tmp_path: Path, router_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import router.bench as bench

    monkeypatch.setattr(
        bench,
        "SUITE",
        [
            ("e2e-small", "e2e", {"messages": 500}),
            ("topic-small", "topic", {"messages": 500, "bindings": 30}),
            ("latency-small", "latency", {"rate": 200, "duration": 0.5}),
        ],
    )
    out = tmp_path / "suite"
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(
        [
            *("--scenario", "suite", "--url", router_server.url, "--compare", router_server.url),
            *("--runs", "1", "--json-dir", str(out)),
        ]
    )
    assert run(args) == 0
    files = sorted(out.glob("*.json"))
    assert [f.stem for f in files] == ["e2e-small", "latency-small", "topic-small"]
    for file in files:
        data = json.loads(file.read_text())
        assert [r["label"] for r in data["results"]] == ["target", "compare"]
        assert data["results"][0]["ratio"] > 0
    png = tmp_path / "bench.png"
    assert bench.plot(argparse.Namespace(files=[str(f) for f in files], out=str(png))) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
