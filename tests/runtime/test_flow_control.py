"""Flow control for real: a ``router serve`` process with a low memory high watermark, a pika
publisher far faster than anyone consumes, and a consumer that drains afterwards.

The publisher must get connection.blocked once the broker's resident memory reaches the
watermark, the broker's memory must stay near the watermark however much more the publisher
tries to send, and once the consumer drains the queue the publisher must get
connection.unblocked and finish, with every message delivered once, in order. No timing is
asserted; the memory bound is generous (watermark + 96 MiB) because the broker samples its
memory every 100 ms and TCP buffers hold some more.

Also: the memory monitor's decisions with a fake memory reading, and the watermark setting.
"""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path
from typing import Any

import pika
import pytest

from router.broker.broker import Broker, BrokerConfig
from router.broker.ports import CountingIds
from router.config import ConfigError, load_settings
from router.process import read_rss
from router.runtime.memory import MemoryMonitor, total_memory, watermark_bytes

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "store"))
from crash_harness import BrokerProcess

MiB = 1 << 20
BODY = 64 * 1024
MESSAGES = 3000  # 192 MiB of bodies: far past the watermark
HEADROOM = 96 * MiB


class LowWatermarkBroker(BrokerProcess):
    def __init__(self, data_dir: Path, log_dir: Path, watermark: int) -> None:
        super().__init__(data_dir, log_dir)
        self.watermark = watermark

    def command(self) -> list[str]:
        return [*super().command(), "--memory-high-watermark", str(self.watermark)]

    def rss(self) -> int:
        assert self.proc is not None
        value = read_rss(self.proc.pid)
        assert value is not None
        return value


@pytest.mark.skipif(read_rss() is None, reason="needs /proc to read the broker's memory")
def test_a_fast_publisher_is_blocked_at_the_watermark_and_resumes_when_consumers_drain(
    tmp_path: Path,
) -> None:
    # measure an idle broker first, then put the watermark 64 MiB above it
    probe = BrokerProcess(tmp_path / "probe", tmp_path / "probe-logs")
    try:
        probe.start()
        time.sleep(0.3)
        assert probe.proc is not None
        idle = read_rss(probe.proc.pid)
        assert idle is not None
    finally:
        probe.close()
    watermark = idle + 64 * MiB
    broker = LowWatermarkBroker(tmp_path / "data", tmp_path / "logs", watermark)
    events: list[str] = []
    published = threading.Event()
    errors: list[BaseException] = []

    def publish() -> None:
        try:
            connection = pika.BlockingConnection(pika.URLParameters(broker.url))
            connection.add_on_connection_blocked_callback(
                lambda _c, frame: events.append(f"blocked: {frame.method.reason}")
            )
            connection.add_on_connection_unblocked_callback(
                lambda _c, _frame: events.append("unblocked")
            )
            channel = connection.channel()
            channel.queue_declare("flow")
            for index in range(MESSAGES):
                channel.basic_publish("", "flow", index.to_bytes(4, "big") * (BODY // 4))
            connection.process_data_events(0.5)  # let a late unblocked arrive
            connection.close()
            published.set()
        except BaseException as error:  # reported by the main thread
            errors.append(error)
            published.set()

    try:
        broker.start()
        publisher = threading.Thread(target=publish, daemon=True)
        publisher.start()
        peak = 0
        deadline = time.monotonic() + 120
        # (pika's BlockingConnection runs the blocked callback only once basic_publish returns,
        # so the alarm is seen in the broker's log first)
        while "memory alarm: resident memory" not in broker.log_path.read_text():
            assert not errors, errors
            assert time.monotonic() < deadline, "the memory alarm never went off"
            peak = max(peak, broker.rss())
            time.sleep(0.02)
        # blocked: the broker stops reading; its memory stays near the watermark for a while
        for _ in range(50):
            peak = max(peak, broker.rss())
            time.sleep(0.02)
        assert not published.is_set(), "the publisher finished while it should be blocked"
        assert peak < watermark + HEADROOM, (peak / MiB, watermark / MiB)

        # drain: the alarm clears, the publisher resumes and finishes
        connection = pika.BlockingConnection(pika.URLParameters(broker.url))
        channel = connection.channel()
        channel.basic_qos(prefetch_count=200)
        received: list[int] = []

        def on_message(ch: Any, method: Any, _properties: Any, body: bytes) -> None:
            received.append(int.from_bytes(body[:4], "big"))
            ch.basic_ack(method.delivery_tag)
            if len(received) == MESSAGES:
                ch.stop_consuming()
            peak_now = broker.rss()
            nonlocal peak
            peak = max(peak, peak_now)

        channel.basic_consume("flow", on_message)
        channel.start_consuming()
        connection.close()
        assert published.wait(60), "the publisher never finished"
        assert not errors, errors
        assert received == list(range(MESSAGES))
        # blocked and unblocked alternate (the publisher may hit the watermark again while the
        # consumer drains), starting blocked. Every message arrived, so the last block was lifted
        # too; but when it came during pika's close(), pika drops the unblocked callback, so the
        # list may end with "blocked".
        assert events[0::2] == ["blocked: low on memory"] * len(events[0::2])
        assert events[1::2] == ["unblocked"] * len(events[1::2])
        assert len(events) >= 2
        assert peak < watermark + HEADROOM, (peak / MiB, watermark / MiB)
        log = broker.log_path.read_text()
        assert "memory alarm: resident memory" in log
        assert "memory alarm cleared" in log
        assert broker.logged_tracebacks() == []
    finally:
        broker.close()


# --- the monitor's decisions -------------------------------------------------------------------


class FakeMemory:
    def __init__(self, value: int) -> None:
        self.value = value
        self.trims = 0
        self.after_trim: int | None = None

    def read(self) -> int:
        return self.value

    def trim(self) -> None:
        self.trims += 1
        if self.after_trim is not None:
            self.value = self.after_trim


def _monitor(memory: FakeMemory, limit: int = 100) -> tuple[Broker, MemoryMonitor]:
    broker = Broker(BrokerConfig(), ids=CountingIds())
    return broker, MemoryMonitor(broker, limit, read=memory.read, trim=memory.trim)


def test_monitor_raises_at_the_watermark_and_clears_below() -> None:
    memory = FakeMemory(99)
    broker, monitor = _monitor(memory)
    monitor.sample(0.0)
    assert broker.alarms == set()
    memory.value = 100
    monitor.sample(0.1)
    assert broker.alarms == {"memory"}
    assert memory.trims == 0  # not on the sample that raised it
    memory.value = 99
    monitor.sample(0.2)
    assert broker.alarms == set()
    assert monitor.alarms_raised == 1


def test_monitor_gives_freed_memory_back_before_deciding_the_alarm_stays() -> None:
    memory = FakeMemory(150)
    broker, monitor = _monitor(memory)
    monitor.sample(0.0)
    assert broker.alarms == {"memory"}
    monitor.sample(0.1)  # still above: trims once...
    assert memory.trims == 1
    monitor.sample(0.2)  # ...and not again within a second
    assert memory.trims == 1
    memory.after_trim = 40  # the allocator was holding freed memory
    monitor.sample(1.2)
    assert memory.trims == 2
    assert broker.alarms == set()
    assert monitor.last_rss == 40


def test_monitor_without_a_reading_does_nothing() -> None:
    broker = Broker(BrokerConfig(), ids=CountingIds())
    monitor = MemoryMonitor(broker, 1, read=lambda: None, trim=lambda: None)
    monitor.sample(0.0)
    assert broker.alarms == set()


def test_watermark_is_a_fraction_of_ram_or_bytes() -> None:
    assert watermark_bytes(0.4, 1000) == 400
    assert watermark_bytes(1, 1000) == 1000
    assert watermark_bytes(0, 1000) == 0  # RabbitMQ: 0 blocks every publisher at once
    assert watermark_bytes(2_000_000, 1000) == 2_000_000
    assert watermark_bytes(0.4, None) is None
    total = total_memory()
    assert total is None or total > 0


def test_watermark_setting_is_checked(tmp_path: Path) -> None:
    assert load_settings(None).memory_high_watermark == 0.4
    assert load_settings(None, {"memory_high_watermark": 2**31}).memory_high_watermark == 2**31
    for bad in (-0.1, "lots", 1.5, True):
        with pytest.raises(ConfigError, match=r"memory_high_watermark.*fraction of RAM"):
            load_settings(None, {"memory_high_watermark": bad})


def test_monitor_samples_early_when_clients_send_a_lot() -> None:
    memory = FakeMemory(10)
    broker, monitor = _monitor(memory, limit=1000 * 1048576)
    assert monitor.read_threshold == 10 * 1048576  # 1 % of the watermark, at least 4 MiB
    monitor.bytes_read(9 * 1048576, 0.0)
    memory.value = 2000 * 1048576
    assert broker.alarms == set()  # not yet: below the threshold
    monitor.bytes_read(1048576, 0.01)
    assert broker.alarms == {"memory"}
    assert monitor.read_since == 0
