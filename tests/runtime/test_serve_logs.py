"""``router serve`` for real: the management API starts with it (on a free port here), and its
log has one line per connection opened and closed, per channel closed by an error and per
burst of dead-lettering; with ``--log-format json`` every line is one JSON object."""

from __future__ import annotations

import base64
import json
import re
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pika
import pytest

from router.config import ConfigError, load_settings
from router.logs import JSONFormatter

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "store"))
from crash_harness import BrokerProcess


class JSONLogBroker(BrokerProcess):
    def command(self) -> list[str]:
        return [*super().command(), "--log-format", "json"]


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[JSONLogBroker]:
    process = JSONLogBroker(tmp_path / "data", tmp_path / "logs")
    process.start()
    try:
        yield process
    finally:
        process.close()


def _records(process: BrokerProcess) -> list[dict[str, str]]:
    lines = process.log_path.read_text().splitlines()[1:]  # the first line is the command
    return [json.loads(line) for line in lines if line.strip()]


def _wait_for(process: BrokerProcess, pattern: str) -> dict[str, str]:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        for record in _records(process):
            if re.search(pattern, record["message"]):
                return record
        time.sleep(0.05)
    raise AssertionError(f"no log line matching {pattern!r}:\n{process.log_tail()}")


def test_every_log_line_is_a_json_object_with_time_level_logger_and_message(
    broker: JSONLogBroker,
) -> None:
    _wait_for(broker, "listening for AMQP")
    for record in _records(broker):
        assert set(record) >= {"time", "level", "logger", "message"}
        assert record["time"].endswith("Z")


def test_the_management_api_starts_with_the_broker_and_answers(broker: JSONLogBroker) -> None:
    line = _wait_for(broker, r"management API on http://127\.0\.0\.1:\d+/")["message"]
    url = re.search(r"http://[\d.]+:\d+", line).group(0)  # type: ignore[union-attr]
    request = urllib.request.Request(
        url + "/api/overview",
        headers={"Authorization": "Basic " + base64.b64encode(b"guest:guest").decode()},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        overview = json.loads(response.read())
    assert overview["listeners"][0]["port"] == broker.port


def test_connections_opening_and_closing_and_channel_errors_are_logged(
    broker: JSONLogBroker,
) -> None:
    connection = pika.BlockingConnection(pika.URLParameters(broker.url))
    channel = connection.channel()
    with pytest.raises(pika.exceptions.ChannelClosedByBroker):
        channel.queue_declare("missing", passive=True)
    connection.close()
    _wait_for(broker, r"connection opened .* \(user 'guest', vhost '/'\)")
    error = _wait_for(broker, r"channel 1 of connection .* closed by the broker")
    assert "NOT_FOUND - no queue 'missing' in vhost '/'" in error["message"]
    _wait_for(broker, r"connection closed .* \(user 'guest'\)")


def test_a_burst_of_dead_lettering_is_one_line_per_queue_with_the_reasons(
    broker: JSONLogBroker,
) -> None:
    connection = pika.BlockingConnection(pika.URLParameters(broker.url))
    channel = connection.channel()
    channel.exchange_declare("dlx", "fanout")
    channel.queue_declare("parked")
    channel.queue_bind("parked", "dlx")
    channel.queue_declare("work", arguments={"x-dead-letter-exchange": "dlx"})
    for _ in range(7):
        channel.basic_publish("", "work", b"job")
    for _ in range(7):
        method, _properties, _body = channel.basic_get("work")
        channel.basic_reject(method.delivery_tag, requeue=False)
    connection.close()
    line = _wait_for(broker, r"dead-lettered \d+ messages? from queue 'work'")["message"]
    assert "to exchange 'dlx'" in line and "rejected" in line
    counts = [
        int(m.group(1))
        for record in _records(broker)
        if (m := re.search(r"dead-lettered (\d+) messages? from queue 'work'", record["message"]))
    ]
    assert sum(counts) == 7


def test_the_log_format_setting_is_checked(tmp_path: Path) -> None:
    path = tmp_path / "router.yaml"
    path.write_text("log_format: xml\n")
    with pytest.raises(ConfigError, match=r"log_format.*'xml'.*text, json"):
        load_settings(path)


def test_a_traceback_goes_into_the_json_record() -> None:
    import logging

    try:
        raise ValueError("boom")
    except ValueError:
        record = logging.LogRecord(
            "router", logging.ERROR, __file__, 1, "failed", (), sys.exc_info()
        )
    entry = json.loads(JSONFormatter().format(record))
    assert entry["level"] == "error" and "ValueError: boom" in entry["traceback"]
