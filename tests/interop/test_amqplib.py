"""node's amqplib (promise API) against router over real TCP on loopback.

Each test runs one scenario of ``tests/interop/node/scenarios.js`` in a ``node`` subprocess and
asserts the JSON line it prints. The expected values are what the same script observed against
the RabbitMQ reference (``node tests/interop/node/scenarios.js URL SCENARIO`` by hand).

amqplib is pinned in ``tests/interop/node/package.json`` with a committed lockfile; the session
fixture runs ``npm ci`` once when ``node_modules`` is missing. The module is skipped only when
``node``/``npm`` are not on PATH or that install fails.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
NODE_DIR = ROOT / "tests" / "interop" / "node"
SCRIPT = NODE_DIR / "scenarios.js"
SCENARIO_TIMEOUT = 30.0
INSTALL_TIMEOUT = 300.0

Run = Callable[[str, str], dict[str, Any]]


@pytest.fixture(scope="session")
def amqplib_installed() -> Path:
    """Make sure amqplib is installed under tests/interop/node (``npm ci`` once if needed)."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        pytest.skip("node and npm must be on PATH to run the amqplib interop tests")
    if not (NODE_DIR / "node_modules" / "amqplib" / "package.json").exists():
        command = [npm, "ci", "--no-audit", "--no-fund", "--prefix", str(NODE_DIR)]
        try:
            result = subprocess.run(
                command, cwd=ROOT, capture_output=True, text=True, timeout=INSTALL_TIMEOUT
            )
        except (OSError, subprocess.TimeoutExpired) as error:
            pytest.skip(f"npm ci for amqplib failed: {error}")
        if result.returncode != 0:
            tail = (result.stderr.strip() or result.stdout.strip() or "no output").splitlines()
            pytest.skip(f"npm ci for amqplib failed (exit {result.returncode}): {tail[-1]}")
    return Path(node)


@pytest.fixture
def run(amqplib_installed: Path) -> Run:
    """Run one scenario against a broker URL; return its observations, or fail with its error."""

    def run_scenario(url: str, scenario: str) -> dict[str, Any]:
        result = subprocess.run(
            [str(amqplib_installed), str(SCRIPT), url, scenario],
            cwd=NODE_DIR,
            capture_output=True,
            text=True,
            timeout=SCENARIO_TIMEOUT,
        )
        if result.returncode != 0:
            pytest.fail(f"amqplib scenario {scenario} failed:\n{result.stderr}{result.stdout}")
        lines = result.stdout.strip().splitlines()
        assert len(lines) == 1, result.stdout
        observed: dict[str, Any] = json.loads(lines[0])
        return observed

    return run_scenario


def test_amqplib_connects_declares_a_queue_sends_to_it_and_gets_the_message_back(
    run: Run, router_url: str
) -> None:
    observed = run(router_url, "basic_get")
    assert observed["declared"] == {"queueMatches": True, "messageCount": 0, "consumerCount": 0}
    assert observed["sendReturned"] is True
    assert observed["got"]["body"] == "hello amqplib"
    assert observed["got"]["fields"]["deliveryTag"] == 1
    assert observed["got"]["fields"]["redelivered"] is False
    assert observed["got"]["fields"]["exchange"] == ""
    assert observed["got"]["fields"]["messageCount"] == 0
    assert observed["queueMatchesRoutingKey"] is True
    assert observed["properties"] == {
        "contentType": "text/plain",
        "messageId": "m-1",
        "headers": {"x-origin": "node", "n": 7},
        "deliveryMode": 1,
    }
    assert observed["secondGet"] is False


def test_amqplib_consumer_with_prefetch_two_holds_at_most_two_unacked_and_gets_all_in_order(
    run: Run, router_url: str
) -> None:
    observed = run(router_url, "consume_prefetch_ack")
    assert observed["inFlightBeforeAck"] == 2
    assert observed["maxInFlight"] == 2
    assert observed["received"] == [f"job-{i}" for i in range(5)]
    assert observed["consumerTagMatches"] is True
    assert observed["afterCancel"] == {"messageCount": 0, "consumerCount": 0}


def test_amqplib_fanout_exchange_delivers_to_every_exclusive_server_named_queue(
    run: Run, router_url: str
) -> None:
    observed = run(router_url, "fanout")
    assert observed["serverNamed"] == [True, True]
    assert observed["distinctQueues"] == 2
    delivery = {
        "body": "broadcast",
        "exchangeMatches": True,
        "routingKey": "ignored.key",
        "redelivered": False,
    }
    assert observed["deliveries"] == [[delivery], [delivery]]


def test_amqplib_topic_exchange_routes_by_star_and_hash_patterns(run: Run, router_url: str) -> None:
    observed = run(router_url, "topic")
    assert observed == {
        "q1": ["quick.orange.rabbit", "lazy.orange.elephant", "quick.orange.fox", ".orange."],
        "q2": [
            "quick.orange.rabbit",
            "lazy.orange.elephant",
            "lazy.brown.fox",
            "lazy.pink.rabbit",
            "lazy.orange.male.rabbit",
            "lazy",
            "lazy.",
        ],
    }


def test_amqplib_confirm_channel_confirms_every_publish_and_wait_for_confirms_resolves(
    run: Run, router_url: str
) -> None:
    observed = run(router_url, "confirms")
    assert observed == {
        "waitForConfirms": [None] * 10,
        "callbacks": 10,
        "callbackErrors": 0,
        "callbackOrder": list(range(10)),
        "ackEventsCoverAll": True,
        "ackTagsIncreasing": True,
        "messageCount": 10,
    }


def test_amqplib_mandatory_unroutable_publish_comes_back_as_a_return_event(
    run: Run, router_url: str
) -> None:
    observed = run(router_url, "mandatory_return")
    assert observed["returned"] == [
        {
            "body": "come back",
            "replyCode": 312,
            "replyText": "NO_ROUTE",
            "exchangeMatches": True,
            "routingKey": "no-such-binding",
            "messageId": "r-1",
        },
        {
            "body": "default exchange",
            "replyCode": 312,
            "replyText": "NO_ROUTE",
            "exchangeMatches": False,  # the default exchange is named ""
            "routingKey": "no-such-queue-*",
        },
    ]


def test_amqplib_nack_with_requeue_redelivers_the_message_flagged_redelivered(
    run: Run, router_url: str
) -> None:
    observed = run(router_url, "nack_requeue")
    assert observed["first"] == {"body": "try again", "redelivered": False, "messageCount": 0}
    assert observed["second"] == {"body": "try again", "redelivered": True, "messageCount": 0}
    assert observed["tagsIncrease"] is True
    assert observed["consumed"] == [
        {"body": "consumer retry", "redelivered": False},
        {"body": "consumer retry", "redelivered": True},
    ]
    assert observed["remaining"] == 0


def test_amqplib_check_queue_on_a_missing_queue_rejects_with_404_and_closes_the_channel(
    run: Run, router_url: str
) -> None:
    observed = run(router_url, "check_missing_queue")
    text = "NOT_FOUND - no queue 'missing-queue-for-amqplib' in vhost '/'"
    assert observed["rejection"] == {
        "name": "Error",
        "message": f'Operation failed: QueueDeclare; 404 (NOT-FOUND) with message "{text}"',
        "code": 404,
        "classId": 50,
        "methodId": 10,
    }
    assert observed["channelError"] == {
        "name": "Error",
        "message": f'Channel closed by server: 404 (NOT-FOUND) with message "{text}"',
        "code": 404,
        "classId": 50,
        "methodId": 10,
    }
    assert observed["events"] == ["error", "close"]
    assert observed["afterClose"] == {"name": "IllegalOperationError", "message": "Channel closed"}
    assert observed["connectionStillUsable"] is True


def test_amqplib_delete_queue_reports_dropped_messages_and_cancels_its_consumers(
    run: Run, router_url: str
) -> None:
    observed = run(router_url, "delete_queue")
    assert observed == {
        "deleted": {"messageCount": 3},
        "deletedAgain": {"messageCount": 0},
        "checkAfterDelete": 404,
        "deletedWatched": {"messageCount": 0},
        "consumerNotifications": [None],
        "cancelEventTagMatches": True,
    }


@pytest.mark.parametrize("frame_max", [None, 4096], ids=["default-frame-max", "frame-max-4096"])
def test_amqplib_one_mebibyte_message_split_over_many_body_frames_round_trips_intact(
    run: Run, router_url: str, frame_max: int | None
) -> None:
    url = router_url if frame_max is None else f"{router_url}?frameMax={frame_max}"
    observed = run(url, "large_message")
    assert observed["frameMax"] == (frame_max or 131072)
    assert observed["bodyFrames"] > 1
    digest = observed["sentSha256"]
    assert observed["get"] == {"length": 1024 * 1024, "sha256": digest, "messageId": "big-1"}
    assert observed["consume"] == {"length": 1024 * 1024, "sha256": digest}


def test_amqplib_connection_close_is_clean_and_releases_exclusive_queues(
    run: Run, router_server: Any
) -> None:
    observed = run(router_server.url, "connection_close")
    assert observed == {
        "closeResult": None,
        "events": [{"event": "close", "error": None}],
        "afterClose": {"name": "IllegalOperationError", "message": "Connection closed (by client)"},
        "exclusiveQueueAfterClose": 404,
    }
    deadline = time.monotonic() + 5
    while router_server.call(lambda: len(router_server.broker.sessions)) and (
        time.monotonic() < deadline
    ):
        time.sleep(0.02)
    assert router_server.call(lambda: len(router_server.broker.sessions)) == 0
    assert router_server.call(lambda: list(router_server.broker.vhosts["/"].queues)) == []
