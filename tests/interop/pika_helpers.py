"""Helpers shared by the pika interop tests."""

from __future__ import annotations

import time
from collections.abc import Callable

from pika.adapters.blocking_connection import BlockingChannel, BlockingConnection


def ready_count(channel: BlockingChannel, queue: str) -> int:
    return channel.queue_declare(queue, passive=True).method.message_count


def drain(channel: BlockingChannel, queue: str) -> list[bytes]:
    bodies = []
    while True:
        method, _props, body = channel.basic_get(queue, auto_ack=True)
        if method is None:
            return bodies
        bodies.append(body)


def pump_until(
    connection: BlockingConnection,
    condition: Callable[[], bool],
    timeout: float = 5.0,
    step: float = 0.05,
) -> None:
    """Process I/O until ``condition()`` holds; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        connection.process_data_events(time_limit=step)
