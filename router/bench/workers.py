"""The load generator's processes: producers and consumers on raw sockets (router's own codec).

Each body runs in its own process (``multiprocessing`` spawn) so the load generator uses other
cores than the broker where there are any, and reports the CPU seconds it used so the report can
show it was not the bottleneck. Results go to the parent through a queue as ``(kind, dict)``; a
failure as ``("error", role, traceback)`` (``report_errors``). Progress (messages so far) goes
through a shared counter the parent reads for the progress display.
"""

from __future__ import annotations

import selectors
import struct
import time
import traceback
from collections.abc import Callable
from typing import Any

from router.amqp.constants import FRAME_BODY, FRAME_METHOD
from router.amqp.properties import BasicProperties
from router.bench.tools import ConfirmTracker
from router.client.blocking import BlockingClient, Confirm
from router.process import raise_fd_limit

BATCH = 500  # publishes per write
PERSISTENT = BasicProperties(delivery_mode=2)
_DELIVER_ID = b"\x00\x3c\x00\x3c"
_Q = struct.Struct(">Q")
STAMP = struct.Struct(">q")  # the latency scenario's send time, ns, at the start of the body

Template = tuple[str, str, bytes]
"""One kind of publish: (exchange, routing key, encoded properties)."""


def report_errors(role: str, result: Any, body: Callable[..., None], *args: Any) -> None:
    """Run a process body; on failure put ("error", role, traceback) on ``result``."""
    try:
        body(*args)
    except BaseException:
        result.put(("error", role, traceback.format_exc()))
        raise


# --- producers -----------------------------------------------------------------------------------


def producer(
    url: str,
    templates: list[Template],
    count: int,
    size: int,
    start: Any,
    result: Any,
    count_queue: str | None = None,
) -> None:
    """Publish ``count`` messages as fast as the socket takes them, cycling through
    ``templates`` (message i uses template i % len). With ``count_queue``, then wait until that
    queue holds ``count`` messages (publish-only: the broker has taken them all)."""
    client = BlockingClient(url)
    body = b"x" * size
    cycle = b"".join(
        client.publish_bytes(exchange, key, body, properties, client.frame_max)
        for exchange, key, properties in templates
    )
    per_cycle = len(templates)
    repeat = max(1, BATCH // per_cycle)
    chunk, per_chunk = cycle * repeat, per_cycle * repeat
    start.wait(120)
    cpu0 = time.process_time()
    began = time.monotonic()
    sent = 0
    while count - sent >= per_chunk:
        client.send(chunk)
        sent += per_chunk
    if sent < count:  # the rest, continuing the same sequence
        rest = b"".join(
            client.publish_bytes(
                templates[i % per_cycle][0],
                templates[i % per_cycle][1],
                body,
                templates[i % per_cycle][2],
                client.frame_max,
            )
            for i in range(sent, count)
        )
        client.send(rest)
        sent = count
    publish_end = time.monotonic()
    if count_queue is not None:
        while client.message_count(count_queue) < count:
            time.sleep(0.001)
    end = time.monotonic()
    result.put(
        (
            "producer",
            {
                "start": began,
                "publish_end": publish_end,
                "end": end,
                "published": sent,
                "cpu": time.process_time() - cpu0,
            },
        )
    )
    client.close()


def rate_producer(
    url: str, queue: str, rate: float, duration: float, size: int, start: Any, result: Any
) -> None:
    """Publish at ``rate`` msg/s for ``duration`` s, each body starting with its send time
    (``time.monotonic_ns``, shared by every process of the machine). When late, the messages
    due are sent together in one write."""
    client = BlockingClient(url)
    prefix = client.publish_bytes(
        "", queue, b"\0" * max(size, STAMP.size), BasicProperties().encode(), client.frame_max
    )
    body_at = len(prefix) - 1 - max(size, STAMP.size)  # where the body starts (frame end: 1 B)
    head, tail = prefix[:body_at], prefix[body_at + STAMP.size :]
    total = int(rate * duration)
    interval = 1.0 / rate
    start.wait(120)
    cpu0 = time.process_time()
    began = time.monotonic()
    sent = 0
    while sent < total:
        now = time.monotonic()
        due = min(total, int((now - began) / interval) + 1)
        if due > sent:
            stamp = STAMP.pack(time.monotonic_ns())
            one = head + stamp + tail
            client.send(one * (due - sent))
            sent = due
        else:
            time.sleep(max(0.0, began + sent * interval - now))
    result.put(
        (
            "producer",
            {
                "start": began,
                "end": time.monotonic(),
                "published": sent,
                "cpu": time.process_time() - cpu0,
            },
        )
    )
    client.close()


# --- consumers -----------------------------------------------------------------------------------


class _Connection:
    __slots__ = ("client", "last_tag", "unacked")

    def __init__(self, client: BlockingClient) -> None:
        self.client = client
        self.last_tag = 0
        self.unacked = 0


def consumer(
    url: str,
    plan: list[list[str]],
    expected: int,
    prefetch: int,
    ack_every: int,
    stamped: bool,
    counter: Any,
    ready: Any,
    start: Any,
    result: Any,
) -> None:
    """One connection per entry of ``plan``, consuming the queues listed there; receive
    ``expected`` deliveries in all, acking (multiple) every ``ack_every`` per connection and
    whenever a connection's input is drained. ``stamped``: bodies carry their send time, record
    the latency of each delivery (µs histogram). ``counter`` is the progress so far."""
    raise_fd_limit()
    connections: list[_Connection] = []
    selector = selectors.DefaultSelector()
    for index, queues in enumerate(plan):
        client = BlockingClient(url)
        client.qos(prefetch)
        for number, queue in enumerate(queues):
            client.consume(queue, tag=f"bench-{index}-{number}")
        connection = _Connection(client)
        connections.append(connection)
        client.sock.setblocking(False)
        selector.register(client.sock, selectors.EVENT_READ, connection)
    ready.set()
    start.wait(120)
    cpu0 = time.process_time()
    received = 0
    first = 0.0
    histogram: dict[int, int] = {}
    monotonic_ns = time.monotonic_ns
    while received < expected:
        events = selector.select(timeout=60)
        if not events:
            raise TimeoutError(f"consumer: nothing for 60 s after {received} of {expected}")
        for key, _mask in events:
            connection = key.data
            client = connection.client
            try:
                data = client.sock.recv(1 << 20)
            except BlockingIOError:
                continue
            if not data:
                raise ConnectionError("the broker closed a consumer connection")
            client.reader.feed(data)
            n = 0
            last = connection.last_tag
            now_ns = monotonic_ns() if stamped else 0
            frames = client.reader.read_frames()
            for frame_type, _channel, payload in frames:
                if frame_type == FRAME_METHOD:
                    if payload[:4] == _DELIVER_ID:
                        n += 1
                        last = _Q.unpack_from(payload, 5 + payload[4])[0]
                    elif payload[:4] in (b"\x00\x0a\x00\x32", b"\x00\x14\x00\x28"):
                        client._closed_by_broker(payload)
                elif stamped and frame_type == FRAME_BODY and len(payload) >= STAMP.size:
                    micros = (now_ns - STAMP.unpack_from(payload)[0]) // 1000
                    histogram[micros] = histogram.get(micros, 0) + 1
            if n:
                if not first:
                    first = time.monotonic()
                received += n
                connection.last_tag = last
                connection.unacked += n
                counter.value = received
                if connection.unacked >= ack_every or received >= expected or len(data) < 65536:
                    client.sock.setblocking(True)
                    client.ack(last, multiple=True)
                    client.sock.setblocking(False)
                    connection.unacked = 0
    end = time.monotonic()
    result.put(
        (
            "consumer",
            {
                "first": first,
                "end": end,
                "consumed": received,
                "cpu": time.process_time() - cpu0,
                "histogram": histogram,
            },
        )
    )
    for connection in connections:
        connection.client.sock.setblocking(True)
        connection.client.close()


def idle_connections(url: str, count: int, ready: Any, done: Any, result: Any) -> None:
    """Open ``count`` connections with a channel each and hold them until ``done`` is set."""
    raise_fd_limit()
    clients = [BlockingClient(url) for _ in range(count)]
    ready.set()
    done.wait(3600)
    for client in clients:
        client.close()
    result.put(("connections", {"opened": count}))


# --- persistent + confirms -----------------------------------------------------------------------


def persistent_publisher(
    index: int,
    url: str,
    queue: str,
    count: int,
    size: int,
    window: int,
    start: Any,
    result: Any,
) -> None:
    client = BlockingClient(url)
    client.confirm_select()
    one = client.publish_batch("", queue, b"x" * size, 1, PERSISTENT)
    chunk = min(BATCH, window)
    full = one * chunk
    tracker = ConfirmTracker()
    start.wait(60)
    cpu0 = time.process_time()
    began = time.monotonic()
    monotonic = time.monotonic
    while tracker.acked + tracker.nacked < count:
        room = min(window - tracker.outstanding, count - tracker.sent_count)
        while room > 0:
            n = min(room, chunk)
            now = monotonic()
            client.send(full if n == chunk else one * n)
            tracker.sent(n, now)
            room -= n
        confirms: list[Confirm] = client.receive_confirms()
        now = monotonic()
        for tag, multiple, nack in confirms:
            tracker.settle(tag, multiple, nack, now)
    cpu = time.process_time() - cpu0
    result.put(
        (
            "publisher",
            {
                "index": index,
                "start": began,
                "end": tracker.last_settle,
                "published": tracker.sent_count,
                "acked": tracker.acked,
                "nacked": tracker.nacked,
                "cpu": cpu,
                "histogram": tracker.histogram,
            },
        )
    )
    client.close()


def persistent_consumer(
    url: str,
    queue: str,
    prefetch: int,
    ack_every: int,
    expected: Any,
    counter: Any,
    start: Any,
    result: Any,
) -> None:
    """Drain ``queue`` until ``expected`` (set by the parent once every publisher is done, -1
    before) messages have arrived; acks (multiple) every ``ack_every`` and whenever idle."""
    client = BlockingClient(url)
    client.qos(prefetch)
    client.consume(queue)
    client.sock.settimeout(0.2)
    start.wait(60)
    cpu0 = time.process_time()
    received = 0
    unacked = 0
    last = 0
    idle_since = time.monotonic()
    while True:
        try:
            n, tag = client.receive_deliveries()
        except TimeoutError:
            if unacked:
                client.ack(last, multiple=True)
                unacked = 0
            target = expected.value
            if 0 <= target <= received:
                break
            if time.monotonic() - idle_since > 60:
                raise TimeoutError(
                    f"consumer: no delivery for 60 s after {received} messages"
                ) from None
            continue
        if n:
            idle_since = time.monotonic()
            received += n
            counter.value = received
            unacked += n
            last = tag
            if unacked >= ack_every:
                client.ack(last, multiple=True)
                unacked = 0
    result.put(
        (
            "consumer",
            {"end": time.monotonic(), "consumed": received, "cpu": time.process_time() - cpu0},
        )
    )
    client.sock.settimeout(30)
    client.close()
