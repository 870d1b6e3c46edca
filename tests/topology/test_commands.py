"""``router topology`` against a real router: the management API over HTTP, pika for the state a
program would see. validate / plan / apply / export / convert / hash-password, as a user runs
them (``router.cli.main`` with its arguments, output captured)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pika
import pytest
from conftest import RunningServer
from pika.adapters.blocking_connection import BlockingChannel

from router.cli import main
from router.topology import load

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "config" / "topology.yaml"


@pytest.fixture(autouse=True)
def wide_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    """The plan table as a wide terminal shows it: one line per change, nothing folded."""
    monkeypatch.setenv("COLUMNS", "400")


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["topology", *args])
    out, err = capsys.readouterr()
    return code, out, err


def remote(running: RunningServer) -> list[str]:
    return ["--url", running.http_url]


def write(tmp_path: Path, text: str, name: str = "topology.yaml") -> str:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return str(path)


def test_the_example_topology_is_valid(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "validate", str(EXAMPLE))
    assert code == 0
    assert "valid" in out


def test_a_misspelt_file_gets_every_mistake_with_lines_and_suggestions(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """\
        exchanges:
          - name: orders
            type: topik
          - name: dlx
        queues:
          - name: work
            mesage_ttl: 30s
            max_length_bytes: 64 MegaBytes
            dead_letter_exchange: dlq
        bindings:
          - {exchange: order, queue: work}
        """,
    )
    # as a new user runs it: the installed command, in a shell
    result = subprocess.run(
        [sys.executable, "-m", "router", "topology", "validate", path],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    err = result.stderr
    assert f"{path}:3:11: error: exchanges[0].type: unknown exchange type 'topik'" in err
    assert "did you mean 'topic'?" in err
    assert f"{path}:7:5: error: queues[0].mesage_ttl" in err
    assert "did you mean 'message_ttl'?" in err
    assert f"{path}:8:23: error: queues[0].max_length_bytes: found '64 MegaBytes'" in err
    assert "64MiB" in err  # what is allowed, by example
    assert f"{path}:9:27: error: queues[0].dead_letter_exchange" in err
    assert f"{path}:11:16: error: bindings[0].exchange: source exchange 'order'" in err
    assert "did you mean 'orders'?" in err
    assert "5 errors: nothing was applied" in err


def test_apply_creates_what_the_files_declare(
    running: RunningServer, channel: BlockingChannel, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(capsys, "apply", str(EXAMPLE), *remote(running))
    assert code == 0, out
    assert "applied" in out
    declared = channel.queue_declare("payments", passive=True)
    assert declared.method.message_count == 0
    vhost = running.broker.vhosts["/"]
    payments = vhost.queues["payments"]
    assert payments.arguments["x-delivery-limit"] == 8
    assert payments.arguments["x-retry-backoff"]["initial"] == 1000
    assert vhost.exchanges["orders"].TYPE == "topic"
    # routing works as the files say: order.created.eu reaches orders.created and the audit
    channel.basic_publish("orders", "order.created.eu", b"o-1")
    assert channel.queue_declare("orders.created", passive=True).method.message_count == 1
    assert channel.queue_declare("orders.audit", passive=True).method.message_count == 1


def test_a_second_apply_changes_nothing_and_says_so(
    running: RunningServer, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(capsys, "apply", str(EXAMPLE), *remote(running))[0] == 0
    code, out, _ = run(capsys, "apply", str(EXAMPLE), *remote(running))
    assert code == 0
    assert "nothing to change" in out


def test_plan_lists_creations_and_changes_nothing(
    running: RunningServer, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(capsys, "plan", str(EXAMPLE), *remote(running), "--full")
    assert code == 0
    assert "create" in out
    assert "orders.created" in out
    assert "payments" not in running.broker.vhosts["/"].queues


def test_a_change_that_cannot_be_made_in_place_is_a_conflict_and_nothing_is_applied(
    running: RunningServer,
    channel: BlockingChannel,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    channel.queue_declare("jobs", durable=True, arguments={"x-max-priority": 5})
    path = write(
        tmp_path,
        """\
        queues:
          - {name: jobs, max_priority: 10}
          - {name: other}
        """,
    )
    code, out, err = run(capsys, "apply", path, *remote(running))
    assert code == 1
    assert "conflict" in out
    assert "x-max-priority: 5 on the broker, 10 in the files" in out
    assert "--recreate" in out
    assert "nothing was applied" in err
    assert "other" not in running.broker.vhosts["/"].queues


def test_recreate_replaces_an_empty_queue_but_is_blocked_when_it_holds_messages(
    running: RunningServer,
    channel: BlockingChannel,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    channel.queue_declare("jobs", durable=True, arguments={"x-max-priority": 5})
    channel.basic_publish("", "jobs", b"job")
    path = write(tmp_path, "queues:\n  - {name: jobs, max_priority: 10}\n")
    code, out, _ = run(capsys, "apply", path, *remote(running), "--recreate")
    assert code == 1
    assert "blocked" in out
    assert "1 message" in out
    code, out, _ = run(capsys, "apply", path, *remote(running), "--recreate", "--force")
    assert code == 0, out
    assert running.broker.vhosts["/"].queues["jobs"].arguments["x-max-priority"] == 10


def test_prune_deletes_only_when_asked_and_never_a_queue_with_messages_unless_forced(
    running: RunningServer,
    channel: BlockingChannel,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    channel.queue_declare("stray-empty", durable=True)
    channel.queue_declare("stray-full", durable=True)
    channel.basic_publish("", "stray-full", b"keep me")
    path = write(tmp_path, "queues:\n  - {name: kept}\n")
    assert run(capsys, "apply", path, *remote(running))[0] == 0
    queues = running.broker.vhosts["/"].queues
    assert {"stray-empty", "stray-full", "kept"} <= set(queues)
    code, out, _ = run(capsys, "apply", path, *remote(running), "--prune")
    assert code == 1
    assert "blocked" in out
    assert "stray-empty" in queues  # nothing applied
    code, out, _ = run(capsys, "apply", path, *remote(running), "--prune", "--force")
    assert code == 0, out
    assert "stray-empty" not in queues
    assert "stray-full" not in queues
    assert "kept" in queues


def test_export_writes_yaml_that_applies_to_the_same_state(
    running: RunningServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(capsys, "apply", str(EXAMPLE), *remote(running))[0] == 0
    exported = tmp_path / "exported.yaml"
    assert run(capsys, "export", *remote(running), "-o", str(exported))[0] == 0
    text = exported.read_text()
    assert "message_ttl: 1h" in text
    assert "max_length_bytes: 256MiB" in text
    original, _ = load([str(EXAMPLE)])
    again, problems = load([str(exported)])
    assert not [p for p in problems if not p.warning]
    for section in ("exchanges", "queues", "bindings", "policies"):
        assert getattr(again, section) == getattr(original, section), section
    code, out, _ = run(capsys, "plan", str(exported), *remote(running))
    assert code == 0
    assert "nothing to change" in out


def test_convert_turns_definitions_into_yaml_and_back(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    definitions = tmp_path / "definitions.json"
    assert run(capsys, "convert", str(EXAMPLE), "-o", str(definitions))[0] == 0
    yaml_file = tmp_path / "converted.yaml"
    assert run(capsys, "convert", str(definitions), "-o", str(yaml_file))[0] == 0
    original, _ = load([str(EXAMPLE)])
    converted, problems = load([str(yaml_file)])
    assert not [p for p in problems if not p.warning]
    assert converted.queues == original.queues
    assert converted.bindings == original.bindings


def test_hash_password_makes_a_hash_a_topology_user_logs_in_with(
    running: RunningServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(capsys, "hash-password", "s3cret")
    assert code == 0
    password_hash = out.strip()
    path = write(
        tmp_path,
        f"""\
        users:
          - {{name: app, password_hash: '{password_hash}', tags: [monitoring]}}
        permissions:
          - {{user: app, vhost: /, configure: '.*', write: '.*', read: '.*'}}
        """,
    )
    assert run(capsys, "apply", path, *remote(running))[0] == 0
    params = pika.URLParameters(f"amqp://app:s3cret@127.0.0.1:{running.port}/%2F")
    connection = pika.BlockingConnection(params)
    assert connection.is_open
    connection.close()


def test_an_unreachable_broker_is_named_with_what_to_do(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(capsys, "plan", str(EXAMPLE), "--url", "http://127.0.0.1:9")
    assert code == 2
    assert "cannot reach the management API at http://127.0.0.1:9" in err
    assert "--url" in err
