"""Shared fixtures: a real router on an ephemeral loopback port, and the RabbitMQ reference.

``router_server`` runs the broker in a background thread (its own trio loop), so blocking clients
(pika, py-amqp, kombu) can run in the test thread and asyncio clients (aio-pika) in their own loop.
``rabbitmq_url`` starts RabbitMQ 3.10 with ../shared/tools/rabbitmq-reference (installing it if
needed) once per test session, and skips with the reason when it cannot be installed.
"""

from __future__ import annotations

import os
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pika
import pika.exceptions
import pytest
import trio
from pika.adapters.blocking_connection import BlockingChannel, BlockingConnection

from router.broker.broker import Broker, BrokerConfig
from router.broker.ports import Clock
from router.management.api import ManagementAPI
from router.runtime.http import ManagementServer
from router.runtime.server import AMQPServer
from router.runtime.storage import StoreFlusher
from router.store.recovery import restore
from router.store.sqlite import open_store

ROOT = Path(__file__).resolve().parent.parent
REFERENCE_TOOL = ROOT.parent / "shared" / "tools" / "rabbitmq-reference"


@dataclass
class RunningServer:
    broker: Broker
    server: AMQPServer
    port: int
    _token: trio.lowlevel.TrioToken
    _thread: threading.Thread
    _stop: trio.Event | None = None
    http_port: int = 0  # the management API's port, when started with management=True
    api: ManagementAPI | None = None

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}/%2F"

    def call(self, fn, *args):  # type: ignore[no-untyped-def]
        """Run ``fn(*args)`` on the broker's thread (the model is not thread-safe) and return it."""
        return trio.from_thread.run_sync(fn, *args, trio_token=self._token)

    def stop(self) -> None:
        async def _shutdown() -> None:
            await self.server.shutdown()
            assert self._stop is not None
            self._stop.set()

        try:
            trio.from_thread.run(_shutdown, trio_token=self._token)
        except trio.RunFinishedError:
            pass
        self._thread.join(timeout=10)


def start_router(
    config: BrokerConfig | None = None, *, data_dir: Path | None = None, management: bool = False
) -> RunningServer:
    """Start a broker on 127.0.0.1:<ephemeral> in a thread; returns once it listens. With
    ``data_dir``, it is durable: the SQLite store there is recovered first and written by the
    store flusher, as ``router serve`` does."""
    store = None
    clock = Clock()
    if data_dir is not None:
        store = open_store(data_dir, clock)
    broker = Broker(config or BrokerConfig(), clock=clock, store=store)
    server = AMQPServer(broker, shutdown_grace=1.0)
    ready = threading.Event()
    box: dict[str, object] = {}

    async def main() -> None:
        stop = trio.Event()
        box["stop"] = stop
        box["token"] = trio.lowlevel.current_trio_token()
        async with trio.open_nursery() as nursery:
            flusher = None
            if store is not None:
                clock.now = trio.current_time()
                clock.wall_offset = time.time() - clock.now
                restore(broker, store)
                flusher = StoreFlusher(broker, store)
                box["flusher"] = flusher
                await nursery.start(flusher.run)
            box["port"] = await nursery.start(server.serve, "127.0.0.1", 0)
            if management:
                api = ManagementAPI(broker, store_stats=flusher.figures if flusher else None)
                box["api"] = api
                box["http_port"] = await nursery.start(ManagementServer(api).serve, "127.0.0.1", 0)
            ready.set()
            await stop.wait()
            if flusher is not None:
                await flusher.stop_cleanly()
            nursery.cancel_scope.cancel()

    def thread_main() -> None:
        try:
            trio.run(main)
        except BaseException as error:  # surface start-up failures to the test
            box["error"] = error
            ready.set()
        finally:
            if store is not None:
                store.close()

    thread = threading.Thread(target=thread_main, name="router-test-server", daemon=True)
    thread.start()
    if not ready.wait(10) or "error" in box:
        raise RuntimeError(f"router did not start: {box.get('error')!r}")
    running = RunningServer(broker, server, int(box["port"]), box["token"], thread)  # type: ignore[arg-type]
    running._stop = box["stop"]  # type: ignore[assignment]
    running.http_port = int(box.get("http_port", 0))  # type: ignore[call-overload]
    running.api = box.get("api")  # type: ignore[assignment]
    return running


@pytest.fixture
def router_server() -> Iterator[RunningServer]:
    running = start_router()
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture
def router_url(router_server: RunningServer) -> str:
    return router_server.url


_reference_state: dict[str, str] = {}


def reference_url() -> str:
    """Start (installing if needed) the RabbitMQ reference; skip the test if impossible."""
    if "url" in _reference_state:
        return _reference_state["url"]
    if "skip" in _reference_state:
        pytest.skip(_reference_state["skip"])
    if os.environ.get("ROUTER_SKIP_REFERENCE"):
        _reference_state["skip"] = "ROUTER_SKIP_REFERENCE is set"
        pytest.skip(_reference_state["skip"])
    if not REFERENCE_TOOL.exists():
        _reference_state["skip"] = f"RabbitMQ reference tool not found at {REFERENCE_TOOL}"
        pytest.skip(_reference_state["skip"])
    try:
        result = subprocess.run(
            [str(REFERENCE_TOOL), "start"], capture_output=True, text=True, timeout=600
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        _reference_state["skip"] = f"RabbitMQ reference could not start: {error}"
        pytest.skip(_reference_state["skip"])
    lines = [line for line in result.stdout.splitlines() if line.startswith("amqp://")]
    if result.returncode != 0 or not lines:
        _reference_state["skip"] = (
            "RabbitMQ reference could not be installed or started: "
            + (result.stderr.strip().splitlines() or ["no output"])[-1]
        )
        pytest.skip(_reference_state["skip"])
    _reference_state["url"] = lines[-1]
    return lines[-1]


@pytest.fixture(scope="session")
def rabbitmq_url() -> str:
    return reference_url()


# --- management API tests (tests/management): a router with its HTTP API, pika connections ---

DEADLINE = 10.0  # seconds a polling loop waits for the broker to act


def wait_for(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + DEADLINE
    while not condition():
        assert time.monotonic() < deadline, "the broker did not act in time"
        time.sleep(0.02)


@pytest.fixture
def running() -> Iterator[RunningServer]:
    server = start_router(management=True)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def connect(running: RunningServer) -> Iterator[Callable[..., BlockingConnection]]:
    opened: list[BlockingConnection] = []

    def open_connection(connection_name: str | None = None) -> BlockingConnection:
        params = pika.URLParameters(running.url)
        params.connection_attempts = 1
        params.socket_timeout = 5
        if connection_name is not None:
            params.client_properties = {"connection_name": connection_name}
        connection = pika.BlockingConnection(params)
        opened.append(connection)
        return connection

    yield open_connection
    for connection in opened:
        if connection.is_open:
            try:
                connection.close()
            except pika.exceptions.AMQPError:
                pass  # the broker closed it first (a test deleted the connection)


@pytest.fixture
def amqp(connect: Callable[..., BlockingConnection]) -> BlockingConnection:
    return connect()


@pytest.fixture
def channel(amqp: BlockingConnection) -> BlockingChannel:
    """A confirm channel: a publish returns once the broker has the message."""
    ch = amqp.channel()
    ch.confirm_delivery()
    return ch
