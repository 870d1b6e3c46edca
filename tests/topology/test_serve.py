"""``router serve --topology`` for real: a subprocess that applies the files before it listens,
refuses to start on bad files, and applies them again on SIGHUP without a restart."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pika
import pika.exceptions
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "store"))
from crash_harness import BrokerProcess

GOOD = """\
exchanges:
  - {name: orders, type: topic}
queues:
  - name: orders.created
    message_ttl: 30s
    bindings:
      - {exchange: orders, routing_key: 'order.created.*'}
"""


class TopologyBroker(BrokerProcess):
    def __init__(self, data_dir: Path, log_dir: Path, topology: Path) -> None:
        super().__init__(data_dir, log_dir)
        self.topology = topology

    def command(self) -> list[str]:
        return [*super().command(), "--topology", str(self.topology)]


@pytest.fixture
def topology_file(tmp_path: Path) -> Path:
    path = tmp_path / "topology.yaml"
    path.write_text(GOOD)
    return path


@pytest.fixture
def broker(tmp_path: Path, topology_file: Path) -> Iterator[TopologyBroker]:
    process = TopologyBroker(tmp_path / "data", tmp_path / "logs", topology_file)
    process.start()
    try:
        yield process
    finally:
        process.close()


def _queue_exists(url: str, name: str) -> bool:
    connection = pika.BlockingConnection(pika.URLParameters(url))
    try:
        connection.channel().queue_declare(name, passive=True)
        return True
    except pika.exceptions.ChannelClosedByBroker:
        return False
    finally:
        if connection.is_open:
            connection.close()


def _wait_for_log(process: BrokerProcess, text: str) -> str:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        log = process.log_path.read_text(errors="replace")
        if text in log:
            return log
        time.sleep(0.05)
    raise AssertionError(f"no log line with {text!r}:\n{process.log_path.read_text()}")


def test_the_topology_is_applied_before_the_broker_listens(broker: TopologyBroker) -> None:
    log = broker.log_path.read_text()
    assert log.index("topology") < log.index("listening for AMQP")
    assert "3 to create" in log
    assert _queue_exists(broker.url, "orders.created")
    connection = pika.BlockingConnection(pika.URLParameters(broker.url))
    channel = connection.channel()
    channel.confirm_delivery()
    channel.basic_publish("orders", "order.created.eu", b"o-1")
    assert channel.queue_declare("orders.created", passive=True).method.message_count == 1
    connection.close()


def test_a_restart_with_the_same_files_changes_nothing(broker: TopologyBroker) -> None:
    assert broker.terminate() == 0
    broker.start()
    assert "nothing to change" in broker.log_path.read_text()


def test_sighup_applies_the_edited_files_without_a_restart(
    broker: TopologyBroker, topology_file: Path
) -> None:
    topology_file.write_text(GOOD + "  - {name: invoices}\n")
    assert broker.proc is not None
    pid = broker.proc.pid
    os.kill(pid, signal.SIGHUP)
    _wait_for_log(broker, "1 to create")
    assert _queue_exists(broker.url, "invoices")
    assert broker.proc is not None and broker.proc.pid == pid


def test_sighup_with_broken_files_logs_why_and_keeps_running(
    broker: TopologyBroker, topology_file: Path
) -> None:
    topology_file.write_text(GOOD + "  - {name: invoices, max_priority: 1000}\n")
    assert broker.proc is not None
    os.kill(broker.proc.pid, signal.SIGHUP)
    log = _wait_for_log(broker, "topology not applied")
    assert "queues[1].max_priority: found 1000" in log
    broker.assert_alive()
    assert not _queue_exists(broker.url, "invoices")
    assert _queue_exists(broker.url, "orders.created")


def test_a_broken_file_stops_the_start_with_every_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("queues:\n  - name: q\n    message_ttl: soon\n  - {name: q}\n")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "router",
            "serve",
            "--in-memory",
            "--port",
            "0",
            "--management-port",
            "0",
            "--topology",
            str(bad),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    output = result.stdout + result.stderr
    assert f"{bad}:3:18" in output and "message_ttl: found 'soon'" in output
    assert "declared twice" in output
    assert "cannot start" in output
    assert "listening" not in output


def test_topology_files_in_the_settings_file_are_relative_to_it(tmp_path: Path) -> None:
    from router.config import ConfigError, load_settings

    settings_file = tmp_path / "conf" / "router.yaml"
    settings_file.parent.mkdir()
    settings_file.write_text("topology: [topology.yaml, topologies/]\n")
    settings = load_settings(settings_file)
    assert settings.topology == (
        str(tmp_path / "conf" / "topology.yaml"),
        str(tmp_path / "conf" / "topologies"),
    )
    assert load_settings(settings_file, {"topology": ["cli.yaml"]}).topology == ("cli.yaml",)
    settings_file.write_text("topology: 7\n")
    with pytest.raises(ConfigError, match="key 'topology': found 7, expected a file"):
        load_settings(settings_file)
