"""Micro-benchmark: a priority queue's cost per message does not grow with its number of levels.

Publishes 200,000 messages with random priorities into a queue with 10 and with 255 levels (no
sockets, the same GC thresholds as `router serve`), drains it, and prints µs per publish + pop.
Run: .venv/bin/python scenarios/bench_priority_levels.py
"""

from __future__ import annotations

import gc
import random
import statistics
import time

from router.amqp.properties import BasicProperties
from router.amqp.tables import FieldTable
from router.broker.message import Message
from router.broker.queues import Queue


def run(levels: int, n: int = 200_000) -> float:
    rnd = random.Random(1)
    queue = Queue("q", "/", arguments=FieldTable({"x-max-priority": levels}))
    properties = BasicProperties().encode()
    messages = [
        Message("", "q", properties, b"x" * 16, 0, rnd.randrange(levels + 1)) for _ in range(n)
    ]
    gc.collect()
    start = time.perf_counter()
    for message in messages:
        queue.publish(message)
    while queue.pop() is not None:
        pass
    return (time.perf_counter() - start) / n * 1e6


def main() -> None:
    gc.set_threshold(50_000, 20, 20)
    for levels in (10, 255, 10, 255):
        median = statistics.median(run(levels) for _ in range(3))
        print(f"{levels:3d} levels: {median:.2f} µs per publish + pop")


if __name__ == "__main__":
    main()
