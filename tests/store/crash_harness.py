"""Crash-test harness: the broker as a real subprocess killed with SIGKILL, real clients over TCP.

Pieces, all used by ``test_crash.py``:

- ``BrokerProcess`` runs ``python -m router serve --data-dir DIR`` on a free loopback port, waits
  for its "listening" log line, kills it with SIGKILL, restarts it on the same data directory (and
  port), and keeps one log file per run for the failure report.
- Clients are threads with their own connection each, reconnecting after every crash:
  ``PipelinedPublisher`` (py-amqp, up to ``window`` unconfirmed publishes in flight, confirms
  tracked by delivery tag), ``SyncPublisher`` (pika ``BlockingChannel.confirm_delivery``, one
  publish at a time) and ``Consumer`` (pika, manual acks: immediate, batched with ``multiple``,
  requeue or reject).
- Every publish is an *attempt* ``publisher|epoch|seq``: ``epoch`` counts the publisher's
  connections, so a publisher that republishes its unconfirmed sequence numbers after a crash (as
  an at-least-once publisher does) makes new attempts, and each attempt has exactly one fate:
  confirmed, unconfirmed (connection lost first), nacked or returned.
- ``check_queue_contents``, ``check_deliveries`` and ``check_dead_letters`` turn what the clients
  recorded into a list of problems (lost confirmed messages, duplicates, order, redelivered flag,
  early scheduled deliveries); they are pure and tested on their own in ``test_crash_harness.py``.

Kill moments come from one seeded ``random.Random``; the seed is printed and
``ROUTER_CRASH_SEED=<seed>`` replays the same kill delays (thread timing still varies).
``ROUTER_CRASH_ROUNDS=<n>`` overrides the number of kill/restart rounds of every test (e.g. 200
for a soak; 0 runs the same traffic and checks without any crash).
"""

from __future__ import annotations

import itertools
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter, defaultdict, deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import amqp
import amqp.exceptions
import pika
import pika.exceptions

LISTENING = "listening for AMQP 0-9-1 on"
START_TIMEOUT = 60.0  # recovery of a large store may take a while; never a timing assertion
PROGRESS_TIMEOUT = 30.0  # clients must get going again after a restart within this
STOP_TIMEOUT = 30.0

CONFIRMED = "confirmed"
UNCONFIRMED = "unconfirmed"  # the connection was lost before the confirm arrived
PENDING = "pending"
NACKED = "nacked"
RETURNED = "returned"


def data_dir_args(data_dir: Path) -> list[str]:
    """The flag that makes the broker durable (issue 4's CLI contract)."""
    return ["--data-dir", str(data_dir)]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    return int(value) if value not in (None, "") else default


class BrokerFailed(AssertionError):
    pass


# --------------------------------------------------------------------------------------------
# the broker process


class BrokerProcess:
    """``router serve`` as a subprocess on one data directory, started and killed many times."""

    def __init__(self, data_dir: Path, log_dir: Path, log_level: str = "info") -> None:
        self.data_dir = data_dir
        self.log_dir = log_dir
        self.log_level = log_level
        log_dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.generation = 0  # one per spawn: the "broker run" a connection belongs to
        self.up = threading.Event()  # set while a run is listening and not being killed
        self.log_paths: list[Path] = []
        self.start_seconds: list[float] = []
        self.kills = 0
        self._spawned_at = 0.0

    def command(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "router",
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            *data_dir_args(self.data_dir),
            "--log-level",
            self.log_level,
            # any free port: test brokers run side by side (and next to a `make run` broker)
            "--management-port",
            "0",
        ]

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}/%2F"

    @property
    def log_path(self) -> Path:
        return self.log_paths[-1]

    def spawn(self) -> None:
        assert self.proc is None, "broker already running"
        self.generation += 1
        path = self.log_dir / f"broker-run-{self.generation:03d}.log"
        self.log_paths.append(path)
        with open(path, "wb") as log:
            log.write(f"$ {' '.join(self.command())}\n".encode())
            log.flush()
            self.proc = subprocess.Popen(
                self.command(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.log_dir,
                start_new_session=True,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
        self._spawned_at = time.monotonic()

    def wait_listening(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        port_retries = 3
        while True:
            assert self.proc is not None
            if LISTENING in self.log_path.read_text(errors="replace"):
                self.start_seconds.append(time.monotonic() - self._spawned_at)
                self.up.set()
                return
            status = self.proc.poll()
            if status is not None:
                text = self.log_path.read_text(errors="replace")
                self.proc = None
                if "cannot listen" in text and port_retries > 0:  # someone took our port
                    port_retries -= 1
                    self.port = free_port()
                    self.spawn()
                    continue
                raise BrokerFailed(
                    f"broker run {self.generation} exited with status {status} before listening "
                    f"on port {self.port} (log {self.log_path}):\n{tail(text, 80)}"
                )
            if time.monotonic() > deadline:
                raise BrokerFailed(
                    f"broker run {self.generation} not listening after {START_TIMEOUT:.0f} s:\n"
                    f"{tail(self.log_path.read_text(errors='replace'))}"
                )
            time.sleep(0.005)

    def start(self) -> None:
        self.spawn()
        self.wait_listening()

    @property
    def last_start_seconds(self) -> float:
        return self.start_seconds[-1] if self.start_seconds else 0.5

    def assert_alive(self) -> None:
        assert self.proc is not None, "broker is not running"
        status = self.proc.poll()
        if status is not None:
            self.up.clear()
            self.proc = None
            raise BrokerFailed(
                f"broker run {self.generation} died on its own (status {status}):\n"
                f"{tail(self.log_path.read_text(errors='replace'))}"
            )

    def kill(self) -> None:
        """SIGKILL the running broker (it must still be running: dying on its own is a bug)."""
        self.up.clear()
        self.assert_alive()
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        self.kills += 1
        self.proc.wait(timeout=30)
        self.proc = None

    def terminate(self) -> int:
        """SIGTERM: a clean stop. Returns the exit status."""
        self.up.clear()
        self.assert_alive()
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGTERM)
        try:
            status = self.proc.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=30)
            self.proc = None
            raise BrokerFailed(f"broker did not stop within {STOP_TIMEOUT:.0f} s of SIGTERM")
        self.proc = None
        return status

    def close(self) -> None:
        """Teardown: make sure no broker process outlives the test."""
        self.up.clear()
        if self.proc is not None:
            if self.proc.poll() is None:
                os.kill(self.proc.pid, signal.SIGKILL)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                pass
            self.proc = None

    def log_tail(self, runs: int = 3, lines: int = 40) -> str:
        parts = []
        for path in self.log_paths[-runs:]:
            try:
                text = path.read_text(errors="replace")
            except OSError as error:
                text = f"<cannot read: {error}>"
            parts.append(f"--- {path.name} (last {lines} lines) ---\n{tail(text, lines)}")
        return "\n".join(parts) or "<no broker log>"

    def logged_tracebacks(self) -> list[str]:
        """Tracebacks any run logged (an internal error is a bug even if no message was lost)."""
        found = []
        for path in self.log_paths:
            text = path.read_text(errors="replace")
            index = text.find("Traceback (most recent call last)")
            if index >= 0:
                found.append(f"{path.name}: {text[max(0, index - 300) : index + 1500]}")
        return found


def tail(text: str, lines: int = 40) -> str:
    return "\n".join(text.splitlines()[-lines:])


# --------------------------------------------------------------------------------------------
# what was published and what came back


@dataclass(frozen=True, order=True)
class Attempt:
    """One publish: ``seq`` is the publisher's message number, ``epoch`` its connection number."""

    publisher: str
    epoch: int
    seq: int

    def body(self, padding: int = 0) -> bytes:
        return f"{self.publisher}|{self.epoch}|{self.seq}|".encode() + b"." * padding

    @staticmethod
    def parse(body: bytes) -> Attempt | None:
        try:
            publisher, epoch, seq, _rest = body.split(b"|", 3)
            return Attempt(publisher.decode(), int(epoch), int(seq))
        except (ValueError, UnicodeDecodeError):
            return None

    def __str__(self) -> str:
        return f"{self.publisher}|{self.epoch}|{self.seq}"


@dataclass
class Record:
    attempt: Attempt
    queues: tuple[str, ...]  # where the topology routes it
    generation: int  # broker run it was published to
    published_at: float  # time.time() just before the publish was written
    delay_ms: int | None = None
    status: str = PENDING


@dataclass(eq=False)
class Delivery:
    attempt: Attempt | None
    queue: str
    connection: str  # unique per client connection ("drain" for the final drain)
    generation: int  # broker run the connection belongs to
    redelivered: bool
    received_at: float  # time.time()
    order: float  # time.monotonic(), to order deliveries of one attempt across threads
    headers: dict[str, Any] | None = None
    action: str | None = None  # ack, requeue, reject, auto (no-ack); None: never settled
    body: bytes = b""

    def __str__(self) -> str:
        return (
            f"{self.attempt} on {self.connection} (run {self.generation}, "
            f"redelivered={self.redelivered}, {self.action or 'unsettled'})"
        )


@dataclass(frozen=True)
class Route:
    exchange: str
    routing_key: str
    queues: tuple[str, ...]


# --------------------------------------------------------------------------------------------
# clients

PIKA_CHANNEL_ERRORS = (pika.exceptions.ChannelClosedByBroker,)
AMQP_CHANNEL_ERRORS = (amqp.exceptions.ChannelError,)
CONNECTION_TROUBLE = (
    OSError,
    EOFError,
    amqp.exceptions.AMQPError,
    pika.exceptions.AMQPError,
)


def pika_parameters(port: int) -> pika.ConnectionParameters:
    return pika.ConnectionParameters(
        host="127.0.0.1",
        port=port,
        credentials=pika.PlainCredentials("guest", "guest"),
        heartbeat=0,
        blocked_connection_timeout=None,
        connection_attempts=1,
        socket_timeout=5,
        stack_timeout=10,
    )


class Client(threading.Thread):
    """A thread that keeps one connection to the broker, reconnecting after every crash."""

    def __init__(self, broker: BrokerProcess, name: str, seed: int) -> None:
        super().__init__(name=f"crash-client-{name}", daemon=True)
        self.broker = broker
        self.client_name = name
        self.rng = random.Random(seed)
        self.stopping = threading.Event()
        self.errors: list[str] = []  # things that must not happen (checked by the tests)
        self.disconnects: Counter[str] = Counter()
        self.last_trouble = ""
        self.connections = 0

    def run(self) -> None:
        while not self.stopping.is_set():
            if not self.broker.up.wait(0.05):
                continue
            try:
                self.session()
            except PIKA_CHANNEL_ERRORS + AMQP_CHANNEL_ERRORS as error:
                self.errors.append(f"{self.client_name}: channel closed by the broker: {error!r}")
                self.last_trouble = repr(error)
                time.sleep(0.1)
            except CONNECTION_TROUBLE as error:
                self.disconnects[type(error).__name__] += 1
                self.last_trouble = repr(error)
                time.sleep(0.01)
            except Exception as error:  # a harness bug or a client surprise: report it
                self.errors.append(f"{self.client_name}: unexpected {error!r}")
                self.last_trouble = repr(error)
                time.sleep(0.1)

    def session(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        self.stopping.set()
        self.join(STOP_TIMEOUT)
        if self.is_alive():
            self.errors.append(f"{self.client_name}: did not stop within {STOP_TIMEOUT:.0f} s")


class Publisher(Client):
    """Numbered persistent messages with confirms; unconfirmed numbers are republished after a
    reconnect, before any new number, as new attempts."""

    def __init__(
        self,
        broker: BrokerProcess,
        name: str,
        seed: int,
        route: Route,
        *,
        rate: float,
        delay_ms: tuple[int, int] | None = None,
    ) -> None:
        super().__init__(broker, name, seed)
        self.route = route
        self.rate = rate
        self.delay_ms = delay_ms
        self.records: dict[Attempt, Record] = {}
        self.confirmed = 0
        self.next_seq = 0
        self.retry: deque[int] = deque()
        self.epoch = 0

    def _new_attempt(self, epoch: int, generation: int) -> tuple[Record, bytes, dict[str, Any]]:
        if self.retry:
            seq = self.retry.popleft()
        else:
            seq = self.next_seq
            self.next_seq += 1
        attempt = Attempt(self.client_name, epoch, seq)
        headers: dict[str, Any] = {}
        delay = None
        if self.delay_ms is not None:
            delay = self.rng.randint(*self.delay_ms)
            headers["x-delay"] = delay
        roll = self.rng.random()
        padding = 16_000 if roll < 0.01 else 140_000 if roll < 0.011 else self.rng.randint(0, 200)
        record = Record(attempt, self.route.queues, generation, time.time(), delay)
        self.records[attempt] = record
        return record, attempt.body(padding), headers

    def _settle(self, record: Record, status: str) -> None:
        if record.status != PENDING:
            if not (record.status == RETURNED and status == CONFIRMED):
                self.errors.append(f"{self.client_name}: {record.attempt} {status} twice")
            return
        record.status = status
        if status == CONFIRMED:
            self.confirmed += 1
        elif status == NACKED:
            self.errors.append(f"{self.client_name}: {record.attempt} nacked by the broker")

    def _lost(self, records: Iterable[Record]) -> None:
        seqs = set(self.retry)
        for record in records:
            if record.status == PENDING:
                record.status = UNCONFIRMED
                seqs.add(record.attempt.seq)
        self.retry = deque(sorted(seqs))

    def _returned(self, body: bytes, reply: str) -> None:
        attempt = Attempt.parse(body)
        record = self.records.get(attempt) if attempt else None
        self.errors.append(f"{self.client_name}: {attempt} returned unroutable ({reply})")
        if record is not None and record.status == PENDING:
            record.status = RETURNED

    def _begin(self) -> int:
        """A connection is up: its epoch."""
        self.connections += 1
        self.epoch += 1
        return self.epoch


class PipelinedPublisher(Publisher):
    """py-amqp with ``confirm_select``: up to ``window`` publishes in flight, confirms (ack or
    nack, single or multiple) matched to attempts by delivery tag."""

    def __init__(self, *args: Any, window: int = 64, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.window = window

    def session(self) -> None:
        generation = self.broker.generation
        connection = amqp.Connection(
            host=f"127.0.0.1:{self.broker.port}",
            userid="guest",
            password="guest",
            heartbeat=0,
            connect_timeout=5,
            write_timeout=10,
        )
        outstanding: dict[int, Record] = {}
        try:
            connection.connect()
            channel = connection.channel()
            channel.confirm_select()
            if self.broker.generation != generation:
                return  # connected to a run that was killed while we connected: start over
            epoch = self._begin()

            def on_confirm(status: str) -> Callable[[int, bool], None]:
                def callback(delivery_tag: int, multiple: bool) -> None:
                    if multiple:
                        tags = [tag for tag in outstanding if tag <= delivery_tag]
                    else:
                        tags = [delivery_tag] if delivery_tag in outstanding else []
                    if not tags and not multiple:
                        self.errors.append(f"{self.client_name}: {status} for unknown tag")
                    for tag in tags:
                        self._settle(outstanding.pop(tag), status)

                return callback

            channel.events["basic_ack"].add(on_confirm(CONFIRMED))
            channel.events["basic_nack"].add(on_confirm(NACKED))
            channel.events["basic_return"].add(
                lambda error, _exchange, _key, message: self._returned(message.body, str(error))
            )
            tag = 0
            credit, last = 1.0, time.monotonic()
            while not self.stopping.is_set():
                now = time.monotonic()
                credit, last = min(16.0, credit + (now - last) * self.rate), now
                while credit >= 1 and len(outstanding) < self.window:
                    credit -= 1
                    record, body, headers = self._new_attempt(epoch, generation)
                    tag += 1
                    outstanding[tag] = record
                    message = amqp.Message(
                        body, delivery_mode=2, application_headers=headers or None
                    )
                    channel.basic_publish(
                        message, self.route.exchange, self.route.routing_key, mandatory=True
                    )
                try:
                    connection.drain_events(timeout=0.005)
                except TimeoutError:
                    pass
            deadline = time.monotonic() + STOP_TIMEOUT
            while outstanding and time.monotonic() < deadline:
                try:
                    connection.drain_events(timeout=0.05)
                except TimeoutError:
                    pass
            if outstanding:
                self.errors.append(
                    f"{self.client_name}: {len(outstanding)} confirms never came (no crash)"
                )
            connection.close()
        finally:
            self._lost(outstanding.values())
            try:
                connection.collect()
            except Exception:
                pass


class SyncPublisher(Publisher):
    """pika ``BlockingChannel`` in confirm mode: each ``basic_publish`` waits for its confirm."""

    def session(self) -> None:
        generation = self.broker.generation
        connection = pika.BlockingConnection(pika_parameters(self.broker.port))
        in_flight: list[Record] = []
        try:
            channel = connection.channel()
            channel.confirm_delivery()
            if self.broker.generation != generation:
                return
            epoch = self._begin()
            next_at = time.monotonic()
            while not self.stopping.is_set():
                pause = next_at - time.monotonic()
                if pause > 0:
                    time.sleep(pause)
                next_at = max(next_at + 1 / self.rate, time.monotonic() - 0.1)
                record, body, headers = self._new_attempt(epoch, generation)
                in_flight = [record]
                try:
                    channel.basic_publish(
                        self.route.exchange,
                        self.route.routing_key,
                        body,
                        pika.BasicProperties(delivery_mode=2, headers=headers or None),
                        mandatory=True,
                    )
                    self._settle(record, CONFIRMED)
                except pika.exceptions.UnroutableError as error:
                    self._returned(body, repr(error))
                except pika.exceptions.NackError:
                    self._settle(record, NACKED)
                in_flight = []
            connection.close()
        finally:
            self._lost(in_flight)
            if connection.is_open:
                try:
                    connection.close()
                except Exception:
                    pass


class Consumer(Client):
    """pika consumer with manual acks, optionally slow (``rate``). ``choose(rng, delivery)`` says
    what to do with each delivery: "ack" at once, "batch" (ack later with ``multiple``, after
    ``batch`` deliveries or when idle), "requeue" (``basic.nack`` requeue=true) or "reject"
    (requeue=false)."""

    def __init__(
        self,
        broker: BrokerProcess,
        name: str,
        seed: int,
        queue: str,
        *,
        prefetch: int,
        choose: Callable[[random.Random, Delivery], str],
        batch: int = 16,
        rate: float | None = None,
        keep_headers: bool = False,
    ) -> None:
        super().__init__(broker, name, seed)
        self.rate = rate  # at most this many deliveries a second (None: as fast as they come)
        self.queue = queue
        self.prefetch = prefetch
        self.choose = choose
        self.batch = batch
        self.keep_headers = keep_headers
        self.deliveries: list[Delivery] = []

    def session(self) -> None:
        generation = self.broker.generation
        connection = pika.BlockingConnection(pika_parameters(self.broker.port))
        try:
            channel = connection.channel()
            channel.basic_qos(prefetch_count=self.prefetch)
            if self.broker.generation != generation:
                return
            self.connections += 1
            name = f"{self.client_name}#{self.connections}"
            pending: list[tuple[int, Delivery]] = []
            next_at = time.monotonic()

            def flush() -> None:
                if pending:
                    for _tag, delivery in pending:
                        delivery.action = "ack"
                    last_tag = pending[-1][0]
                    pending.clear()
                    channel.basic_ack(last_tag, multiple=True)

            def on_message(_channel: Any, method: Any, properties: Any, body: bytes) -> None:
                nonlocal next_at
                rate = self.rate  # the test may lift the limit at any moment
                if rate is not None:  # a slow consumer: the queue keeps a backlog
                    pause = next_at - time.monotonic()
                    if pause > 0:
                        time.sleep(pause)
                    next_at = max(next_at + 1 / rate, time.monotonic() - 0.05)
                delivery = Delivery(
                    attempt=Attempt.parse(body),
                    queue=self.queue,
                    connection=name,
                    generation=generation,
                    redelivered=bool(method.redelivered),
                    received_at=time.time(),
                    order=time.monotonic(),
                    headers=dict(properties.headers or {}) if self.keep_headers else None,
                )
                self.deliveries.append(delivery)
                action = self.choose(self.rng, delivery)
                if action == "batch":
                    pending.append((method.delivery_tag, delivery))
                    if len(pending) >= self.batch:
                        flush()
                    return
                delivery.action = action
                if action == "ack":
                    channel.basic_ack(method.delivery_tag)
                elif action == "requeue":
                    channel.basic_nack(method.delivery_tag, requeue=True)
                elif action == "reject":
                    channel.basic_reject(method.delivery_tag, requeue=False)
                else:
                    raise ValueError(f"unknown action {action!r}")

            tag = channel.basic_consume(self.queue, on_message, auto_ack=False)
            while not self.stopping.is_set():
                seen = len(self.deliveries)
                connection.process_data_events(time_limit=0.02)
                if len(self.deliveries) == seen:
                    flush()  # idle: settle what is held back
            channel.basic_cancel(tag)  # deliveries pika still buffers are returned, unseen
            flush()
            channel.close()
            connection.close()
        finally:
            if connection.is_open:
                try:
                    connection.close()
                except Exception:
                    pass


def consumed(consumers: Sequence[Consumer]) -> int:
    return sum(len(consumer.deliveries) for consumer in consumers)


# --------------------------------------------------------------------------------------------
# topology, drain


@dataclass(frozen=True)
class Exchange:
    name: str
    type: str
    arguments: dict[str, Any] | None = None


@dataclass(frozen=True)
class Queue:
    name: str
    arguments: dict[str, Any] | None = None


@dataclass(frozen=True)
class Binding:
    queue: str
    exchange: str
    routing_key: str = ""


Topology = Sequence[Exchange | Queue | Binding]


def declare(broker: BrokerProcess, topology: Topology) -> None:
    """Declare everything durable (once, before the first crash: never again after)."""
    connection = pika.BlockingConnection(pika_parameters(broker.port))
    try:
        channel = connection.channel()
        for item in topology:
            if isinstance(item, Exchange):
                channel.exchange_declare(
                    item.name, item.type, durable=True, arguments=item.arguments
                )
            elif isinstance(item, Queue):
                channel.queue_declare(item.name, durable=True, arguments=item.arguments)
            else:
                channel.queue_bind(item.queue, item.exchange, item.routing_key)
    finally:
        connection.close()


def verify(broker: BrokerProcess, topology: Topology, when: str) -> None:
    """After a restart: every durable exchange and queue exists (passive declare), with the same
    type and arguments (an equivalent redeclare must succeed; a recovered queue that lost its
    arguments fails it with 406). Bindings show up as unroutable publishes if lost."""
    connection = pika.BlockingConnection(pika_parameters(broker.port))
    try:
        for item in topology:
            if isinstance(item, Binding):
                continue
            kind = "exchange" if isinstance(item, Exchange) else "queue"
            for passive in (True, False):
                channel = connection.channel()
                try:
                    if isinstance(item, Exchange):
                        channel.exchange_declare(
                            item.name,
                            item.type,
                            passive=passive,
                            durable=True,
                            arguments=item.arguments,
                        )
                    else:
                        channel.queue_declare(
                            item.name, passive=passive, durable=True, arguments=item.arguments
                        )
                except pika.exceptions.ChannelClosedByBroker as error:
                    what = "is missing" if passive else "came back different"
                    raise AssertionError(
                        f"{when}: durable {kind} {item.name!r} {what}: {error.reply_code} "
                        f"{error.reply_text}"
                    ) from None
                channel.close()
    finally:
        connection.close()


def message_count(broker: BrokerProcess, queue: str) -> int:
    connection = pika.BlockingConnection(pika_parameters(broker.port))
    try:
        return int(connection.channel().queue_declare(queue, passive=True).method.message_count)
    finally:
        connection.close()


def drain(
    broker: BrokerProcess, queue: str, *, keep_headers: bool = False, timeout: float = 120.0
) -> list[Delivery]:
    """Take every ready message out of ``queue`` (no-ack consumer), in queue order. Only for a
    broker nobody else is using."""
    connection = pika.BlockingConnection(pika_parameters(broker.port))
    out: list[Delivery] = []
    generation = broker.generation

    def record(method: Any, properties: Any, body: bytes) -> None:
        out.append(
            Delivery(
                attempt=Attempt.parse(body),
                queue=queue,
                connection="drain",
                generation=generation,
                redelivered=bool(method.redelivered),
                received_at=time.time(),
                order=time.monotonic(),
                headers=dict(properties.headers or {}) if keep_headers else None,
                action="auto",
                body=body[:60] if Attempt.parse(body) is None else b"",
            )
        )

    try:
        channel = connection.channel()
        channel.basic_qos(prefetch_count=2000)
        deadline = time.monotonic() + timeout
        while True:
            count = channel.queue_declare(queue, passive=True).method.message_count
            if count == 0:
                return out
            target = len(out) + count
            tag = channel.basic_consume(queue, lambda _ch, m, p, b: record(m, p, b), auto_ack=True)
            while len(out) < target:
                if time.monotonic() > deadline:
                    raise AssertionError(
                        f"draining {queue!r}: {len(out)} of {target} messages after {timeout} s"
                    )
                connection.process_data_events(time_limit=0.05)
            for method, properties, body in channel.basic_cancel(tag):
                record(method, properties, body)
    finally:
        if connection.is_open:
            connection.close()


def wait_until(
    condition: Callable[[], bool], timeout: float, what: Callable[[], str], poll: float = 0.02
) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not reached within {timeout:.0f} s: {what()}")
        time.sleep(poll)


# --------------------------------------------------------------------------------------------
# checks (pure)


class Problems:
    """Problems grouped by kind, a few examples each, for one readable assertion message."""

    EXAMPLES = 8

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.examples: dict[str, list[str]] = defaultdict(list)

    def add(self, kind: str, detail: str) -> None:
        self.counts[kind] += 1
        if len(self.examples[kind]) < self.EXAMPLES:
            self.examples[kind].append(detail)

    def __bool__(self) -> bool:
        return bool(self.counts)

    def kinds(self) -> set[str]:
        return set(self.counts)

    def report(self) -> str:
        lines = []
        for kind, count in self.counts.most_common():
            lines.append(f"{kind}: {count}")
            lines.extend(f"    {example}" for example in self.examples[kind])
            if count > len(self.examples[kind]):
                lines.append("    ...")
        return "\n".join(lines)


def describe(record: Record | None) -> str:
    if record is None:
        return "never published"
    return f"{record.status}, published to run {record.generation}"


def check_queue_contents(
    records: dict[Attempt, Record], drained: dict[str, list[Delivery]], problems: Problems
) -> None:
    """What is left in queues after publishers only (no consumers), in queue order:

    - every confirmed attempt is in every queue it was routed to (confirm = on disk in all);
    - no attempt twice in a queue (a seq may appear twice, as two attempts: only when the
      earlier attempt was unconfirmed, since only those are republished);
    - nothing unknown, nothing in a queue it was not routed to;
    - per queue and publisher, (epoch, seq) strictly increasing: FIFO kept across restarts
      (everything a publisher's earlier connection got stored precedes what its next one sent).
    """
    present: dict[str, set[Attempt]] = {}
    for queue, deliveries in drained.items():
        counts = Counter(d.attempt for d in deliveries if d.attempt is not None)
        present[queue] = set(counts)
        last: dict[str, Attempt] = {}
        for delivery in deliveries:
            attempt = delivery.attempt
            if attempt is None:
                problems.add("message with an unparseable body", f"{queue}: {delivery.body!r}")
                continue
            record = records.get(attempt)
            if record is None:
                problems.add("message nobody published", f"{attempt} in {queue}")
            elif queue not in record.queues:
                problems.add("message in a queue it was not routed to", f"{attempt} in {queue}")
            previous = last.get(attempt.publisher)
            if previous is not None and (attempt.epoch, attempt.seq) <= (
                previous.epoch,
                previous.seq,
            ):
                problems.add(
                    "order within a queue broken",
                    f"{queue}: {attempt} ({describe(record)}) after {previous}",
                )
            last[attempt.publisher] = attempt
        for attempt, count in counts.items():
            if count > 1:
                problems.add(
                    "same publish twice in a queue",
                    f"{attempt} x{count} in {queue} ({describe(records.get(attempt))})",
                )
    for record in records.values():
        if record.status != CONFIRMED:
            continue
        for queue in record.queues:
            if queue in present and record.attempt not in present[queue]:
                problems.add(
                    "CONFIRMED MESSAGE LOST", f"{record.attempt} from {queue} ({describe(record)})"
                )


def check_deliveries(
    records: dict[Attempt, Record],
    deliveries: Iterable[Delivery],
    problems: Problems,
    *,
    queue: str,
    require_confirmed: bool = True,
    check_order: bool = True,
    due_tolerance: float | None = None,
) -> None:
    """Everything consumers (and a final drain) received from ``queue``, over all broker runs:

    - every confirmed attempt routed to ``queue`` ends acked (``require_confirmed``): its last
      delivery was acked (or taken with no-ack by the final drain). A delivery still unacked
      or requeued when the broker died must be delivered again after the restart; an ack sent
      just before a crash may or may not have reached the disk, so the message may or may not
      come back;
    - a second delivery of an attempt carries redelivered=true (it was delivered before), and
      comes only after the previous one was requeued, or in a later broker run (a crash may lose
      an ack that was not yet on disk, and always loses what was unacked): never twice in one
      run after an ack or reject, nor while the first delivery is still unsettled;
    - per connection and publisher, first deliveries (redelivered=false) come in strictly
      increasing (epoch, seq): queue order, with requeued messages back at their original
      position, survives a restart;
    - with ``due_tolerance``, no scheduled message is delivered before publish time + x-delay.
    """
    by_attempt: dict[Attempt, list[Delivery]] = defaultdict(list)
    last: dict[tuple[str, str], Attempt] = {}
    for delivery in sorted(deliveries, key=lambda d: d.order):
        attempt = delivery.attempt
        if attempt is None:
            problems.add("message with an unparseable body", f"{queue}: {delivery.body!r}")
            continue
        by_attempt[attempt].append(delivery)
        record = records.get(attempt)
        if record is None:
            problems.add("message nobody published", f"{delivery} from {queue}")
        elif queue not in record.queues:
            problems.add("message in a queue it was not routed to", f"{delivery} from {queue}")
        if check_order and not delivery.redelivered:
            key = (delivery.connection, attempt.publisher)
            previous = last.get(key)
            if previous is not None and (attempt.epoch, attempt.seq) <= (
                previous.epoch,
                previous.seq,
            ):
                problems.add(
                    "order within a queue broken",
                    f"{queue}: {delivery} delivered after {previous}",
                )
            last[key] = attempt
    for attempt, chain in by_attempt.items():
        for previous, current in itertools.pairwise(chain):
            if not current.redelivered:
                problems.add(
                    "delivered again without redelivered=true",
                    f"{current}; before: {previous}",
                )
            if previous.action != "requeue" and current.generation <= previous.generation:
                problems.add(
                    "delivered twice in one broker run",
                    f"{current}; before: {previous}",
                )
        record = records.get(attempt)
        if due_tolerance is not None and record is not None and record.delay_ms is not None:
            due = record.published_at + record.delay_ms / 1000
            first = chain[0]
            if first.received_at < due - due_tolerance:
                problems.add(
                    "scheduled message delivered before it was due",
                    f"{first}: {due - first.received_at:.3f} s early "
                    f"(x-delay {record.delay_ms} ms)",
                )
    if require_confirmed:
        for record in records.values():
            if record.status != CONFIRMED or queue not in record.queues:
                continue
            chain = by_attempt.get(record.attempt)
            if not chain:
                problems.add(
                    "CONFIRMED MESSAGE LOST",
                    f"{record.attempt} never delivered from {queue} ({describe(record)})",
                )
            elif chain[-1].action not in ("ack", "auto"):
                problems.add(
                    "CONFIRMED MESSAGE LOST",
                    f"{record.attempt} ({describe(record)}): last delivery {chain[-1]}, "
                    "never acked and never delivered again",
                )


def not_yet_acked(
    records: dict[Attempt, Record], deliveries: Iterable[Delivery], queue: str
) -> list[Attempt]:
    """Confirmed attempts routed to ``queue`` whose latest delivery so far is not acked (or
    that were not delivered at all): what consumers still have to finish."""
    last: dict[Attempt | None, Delivery] = {}
    for delivery in sorted(deliveries, key=lambda d: d.order):
        last[delivery.attempt] = delivery
    return [
        record.attempt
        for record in records.values()
        if record.status == CONFIRMED
        and queue in record.queues
        and (record.attempt not in last or last[record.attempt].action not in ("ack", "auto"))
    ]


def header_text(headers: dict[str, Any] | None, key: str) -> str | None:
    value = (headers or {}).get(key)
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    return value if isinstance(value, str) else None


def check_dead_letters(
    records: dict[Attempt, Record],
    dead: Iterable[Delivery],
    left: dict[str, list[Delivery]],
    problems: Problems,
    *,
    reasons: dict[str, str],
) -> None:
    """Dead-lettering out of the source queues in ``reasons`` (queue → expected
    x-first-death-reason) into one dead-letter queue, ``dead`` drained from it, ``left`` what
    remained in each source queue:

    - every confirmed attempt is, for each source queue it was routed to, either still in that
      queue or dead-lettered from it: never lost between the two;
    - exactly once: dead-lettering moves a message from its queue to the dead-letter queue in
      one step (docs/queues.md), so a crash leaves it on one side or the other, never both and
      never twice. (At-least-once would be the weaker promise; this asserts exactly once, as
      the design intends.)
    - each dead letter names its source queue and the expected reason.
    """
    count: Counter[tuple[Attempt, str]] = Counter()
    for delivery in dead:
        attempt = delivery.attempt
        if attempt is None:
            problems.add("dead letter with an unparseable body", repr(delivery.body))
            continue
        source = header_text(delivery.headers, "x-first-death-queue")
        reason = header_text(delivery.headers, "x-first-death-reason")
        if source not in reasons:
            problems.add("dead letter from an unexpected queue", f"{attempt} from {source!r}")
            continue
        if reason != reasons[source]:
            problems.add(
                "dead letter with the wrong reason",
                f"{attempt} from {source}: {reason!r}, expected {reasons[source]!r}",
            )
        count[(attempt, source)] += 1
    for source, deliveries in left.items():
        for delivery in deliveries:
            if delivery.attempt is not None:
                count[(delivery.attempt, source)] += 1
    for (attempt, source), n in count.items():
        record = records.get(attempt)
        if record is None:
            problems.add("dead letter nobody published", f"{attempt} from {source}")
        elif source not in record.queues:
            problems.add("dead letter from a queue it was not routed to", f"{attempt} {source}")
        if n > 1:
            problems.add(
                "dead-lettered more than once (or both dead-lettered and still queued)",
                f"{attempt} from {source} x{n} ({describe(record)})",
            )
    for record in records.values():
        if record.status != CONFIRMED:
            continue
        for source in record.queues:
            if source in reasons and count[(record.attempt, source)] == 0:
                problems.add(
                    "CONFIRMED MESSAGE LOST",
                    f"{record.attempt} neither in {source} nor dead-lettered ({describe(record)})",
                )


def merged_records(publishers: Iterable[Publisher]) -> dict[Attempt, Record]:
    records: dict[Attempt, Record] = {}
    for publisher in publishers:
        records.update(publisher.records)
    return records


def statuses(records: dict[Attempt, Record]) -> str:
    counts = Counter(record.status for record in records.values())
    return ", ".join(f"{count} {status}" for status, count in counts.most_common())


# --------------------------------------------------------------------------------------------
# one test's run


@dataclass
class CrashRun:
    """A broker, its clients and a seeded random source for the kill moments."""

    tmp_path: Path
    seed: int = 0
    rng: random.Random = field(init=False)
    broker: BrokerProcess = field(init=False)
    clients: list[Client] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        self.broker = BrokerProcess(self.tmp_path / "data", self.tmp_path / "logs")

    @staticmethod
    def new_seed() -> int:
        return env_int("ROUTER_CRASH_SEED", random.SystemRandom().randrange(2**32))

    def log(self, text: str) -> None:
        print(f"[{time.monotonic() - self.started:7.2f}] {text}", flush=True)

    def client_seed(self) -> int:
        return self.rng.randrange(2**32)

    def add(self, client: Client) -> Client:
        self.clients.append(client)
        client.start()
        return client

    def client_errors(self) -> list[str]:
        return [error for client in self.clients for error in client.errors]

    def client_trouble(self) -> str:
        return "; ".join(
            f"{client.client_name}: {client.connections} connections, last {client.last_trouble}"
            for client in self.clients
        )

    def crash_rounds(
        self,
        rounds: int,
        progress: Callable[[], Sequence[int]],
        topology: Topology,
        *,
        kill_after: tuple[float, float] = (0.05, 0.7),
        restart_kill_chance: float = 0.2,
    ) -> None:
        """``rounds`` times: wait until every ``progress`` counter moved since the last
        (re)start (the clients are connected and working), let them run a random while, SIGKILL
        the broker, sometimes start it and SIGKILL it again part-way through its start (recovery),
        restart it on the same data directory and check the durable topology came back. Returns
        once the clients are working again after the last restart, a random while later."""
        baseline = list(progress())
        for number in range(1, rounds + 1):
            self.wait_for_progress(progress, baseline, f"round {number}")
            delay = self.rng.uniform(*kill_after)
            time.sleep(delay)
            self.broker.kill()
            note = ""
            if self.rng.random() < restart_kill_chance:
                early = self.rng.uniform(0.3, 1.2) * self.broker.last_start_seconds
                self.broker.spawn()
                time.sleep(early)
                self.broker.kill()
                note = f"; killed again {early:.2f} s into its restart"
            self.broker.start()
            verify(self.broker, topology, f"after restart {number}")
            self.log(
                f"round {number}/{rounds}: killed {delay:.3f} s after progress {list(progress())}"
                f"{note}; back in {self.broker.last_start_seconds:.2f} s"
            )
            baseline = list(progress())
        # the last run: working clients again, for a while, then the test winds down
        self.wait_for_progress(progress, baseline, "after the last restart")
        time.sleep(self.rng.uniform(*kill_after))

    def wait_for_progress(
        self, progress: Callable[[], Sequence[int]], baseline: Sequence[int], when: str
    ) -> None:
        """Until every counter of ``progress`` is above ``baseline``."""
        wait_until(
            lambda: all(now > then for now, then in zip(progress(), baseline, strict=True)),
            PROGRESS_TIMEOUT,
            lambda: (
                f"{when}: clients made no progress since the restart "
                f"({list(baseline)} -> {list(progress())}); {self.client_trouble()}"
            ),
        )

    def failure_report(self) -> str:
        return (
            f"=== crash run failed: seed {self.seed} (rerun with ROUTER_CRASH_SEED={self.seed}), "
            f"{self.broker.generation} broker runs, {self.broker.kills} kills ===\n"
            f"{self.broker.log_tail()}"
        )

    def settle(
        self, condition: Callable[[], bool], timeout: float, what: Callable[[], str]
    ) -> None:
        """Wait for the clients to finish up after the last restart; if they never do, say so and
        carry on: the checks that follow tell exactly what is missing."""
        try:
            wait_until(condition, timeout, what, poll=0.05)
        except AssertionError as error:
            self.log(f"did not settle: {error}")

    def stop_clients(self, clients: Iterable[Client]) -> None:
        for client in clients:
            client.stopping.set()
        for client in clients:
            client.stop()

    def close(self) -> None:
        for client in self.clients:
            client.stopping.set()
        for client in self.clients:
            client.join(5)
        self.broker.close()
