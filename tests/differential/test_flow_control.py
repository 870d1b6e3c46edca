"""connection.blocked / unblocked under a memory alarm, compared with RabbitMQ.

RabbitMQ's alarm is raised with ``rabbitmqctl set_vm_memory_high_watermark 0`` (and cleared with
0.4); router's through ``Broker.set_alarm`` on the in-process test server, which is what its
memory monitor calls. The same pika code runs against both and records what it sees.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Callable
from typing import Any

import pytest

from .harness import Env, drain, get_all

pytestmark = pytest.mark.differential

RABBIT_NODE = "rabbitref@localhost"


def scenario(env: Env, set_alarm: Callable[[bool], None]) -> list[Any]:
    seen: list[Any] = []
    queue = env.queue("flow")
    publisher = env.connect()
    publisher.add_on_connection_blocked_callback(
        lambda _c, frame: seen.append(("blocked", frame.method.reason))
    )
    publisher.add_on_connection_unblocked_callback(lambda _c, _f: seen.append(("unblocked",)))
    other = env.connect()
    other.add_on_connection_blocked_callback(lambda _c, _f: seen.append(("other blocked",)))
    channel = publisher.channel()
    channel.queue_declare(queue)
    reader = other.channel()
    set_alarm(True)
    try:
        drain(publisher)
        seen.append(("before publishing", len(seen)))
        # a connection that does not publish is not blocked: its methods are answered
        seen.append(("other get", get_all(reader, queue, auto_ack=True)))
        channel.basic_publish("", queue, b"during the alarm")
        drain(publisher)
        # the publish that blocked the connection was taken; consumers keep being served
        seen.append(("other get", get_all(reader, queue, auto_ack=True)))
    finally:
        set_alarm(False)
    drain(publisher)
    channel.basic_publish("", queue, b"after the alarm")
    channel.queue_declare(queue, passive=True)  # a round trip: both publishes are in
    # (its message_count is not compared: RabbitMQ's may not count a publish still in flight)
    seen.append(("other get", get_all(reader, queue, auto_ack=True)))
    drain(other)
    return seen


def _rabbit_alarm(on: bool) -> None:
    ctl = shutil.which("rabbitmqctl")
    if ctl is None:
        pytest.skip("rabbitmqctl not found: cannot raise RabbitMQ's memory alarm")
    subprocess.run(
        [ctl, "-n", RABBIT_NODE, "set_vm_memory_high_watermark", "0" if on else "0.4"],
        check=True,
        capture_output=True,
        timeout=60,
    )
    time.sleep(3 if on else 1)  # RabbitMQ's memory monitor notices on its next check


def test_blocked_and_unblocked_as_rabbitmq_sends_them(
    router_server: Any, rabbitmq_url: str
) -> None:
    rabbit = Env(rabbitmq_url, "rabbit")
    try:
        expected = scenario(rabbit, _rabbit_alarm)
    finally:
        rabbit.close()
    suffix_env = Env(router_server.url, "rabbit")
    broker = router_server.broker
    try:
        got = scenario(suffix_env, lambda on: router_server.call(broker.set_alarm, "memory", on))
    finally:
        suffix_env.close()
    assert got == expected
    assert ("blocked", "low on memory") in got
