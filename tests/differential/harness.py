"""Differential harness: run one scenario against router and RabbitMQ, compare what was observed.

A *scenario* is a plain function ``scenario(env) -> observation``. It talks AMQP through pika's
``BlockingConnection`` (``env.connect()``) and returns plain data only (tuples, lists, dicts, str,
int, bool, bytes) — never frames or client objects — so that two runs can be compared with ``==``.

Rules every scenario follows, because the RabbitMQ reference is shared and long-lived:

* every queue/exchange name comes from ``env.queue(base)`` / ``env.exchange(base)``: the names
  carry a per-test random suffix (the *same* suffix for both brokers, so error texts that quote
  names compare equal) and are deleted when the scenario ends;
* server-generated names (``amq.gen-…``) and consumer tags are never compared by value.

``assert_same(scenario, router_url, rabbitmq_url)`` runs RabbitMQ first, then router, each in a
worker thread with a time limit (a broker that never answers gives ``("timeout", …)`` instead of
hanging the suite), and asserts the observations are equal.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import pika
from pika import exceptions as px

Observation = Any
Scenario = Callable[["Env"], Observation]

SCENARIO_TIMEOUT = 20.0
QUIET_PERIOD = 0.25


class Env:
    """What a scenario may use: connections to one broker, names, and cleanup of what it made."""

    def __init__(self, url: str, suffix: str) -> None:
        self.url = url
        self.suffix = suffix
        self._queues: list[str] = []
        self._exchanges: list[str] = []
        self._connections: list[pika.BlockingConnection] = []

    # -- names ----------------------------------------------------------------------------------
    def queue(self, base: str) -> str:
        name = f"diff.{base}.{self.suffix}"
        self._queues.append(name)
        return name

    def exchange(self, base: str) -> str:
        name = f"diff.{base}.{self.suffix}"
        self._exchanges.append(name)
        return name

    def forget_queue(self, name: str) -> None:
        """Register a server-named queue for deletion too."""
        self._queues.append(name)

    # -- connections ----------------------------------------------------------------------------
    def parameters(self, **overrides: Any) -> pika.URLParameters:
        params = pika.URLParameters(self.url)
        params.connection_attempts = 1
        params.socket_timeout = 5
        params.blocked_connection_timeout = 10
        for key, value in overrides.items():
            setattr(params, key, value)
        return params

    def connect(self, **overrides: Any) -> pika.BlockingConnection:
        connection = pika.BlockingConnection(self.parameters(**overrides))
        self._connections.append(connection)
        return connection

    def channel(self) -> pika.adapters.blocking_connection.BlockingChannel:
        return self.connect().channel()

    # -- cleanup --------------------------------------------------------------------------------
    def close(self) -> None:
        for connection in self._connections:
            try:
                if connection.is_open:
                    connection.close()
            except Exception:
                pass
        if not (self._queues or self._exchanges):
            return
        try:
            connection = pika.BlockingConnection(self.parameters())
        except Exception:
            return
        try:
            for kind, names in (("queue", self._queues), ("exchange", self._exchanges)):
                for name in dict.fromkeys(names):
                    try:
                        channel = connection.channel()
                        if kind == "queue":
                            channel.queue_delete(name)
                        else:
                            channel.exchange_delete(name)
                        channel.close()
                    except px.ConnectionClosed:
                        connection = pika.BlockingConnection(self.parameters())
                    except Exception:
                        pass
        finally:
            try:
                connection.close()
            except Exception:
                pass


# -- running ----------------------------------------------------------------------------------


def run(scenario: Scenario, url: str, suffix: str) -> Observation:
    """Run ``scenario`` against ``url`` in a worker thread; return its observation."""
    box: dict[str, Any] = {}

    def worker() -> None:
        env = Env(url, suffix)
        try:
            box["result"] = scenario(env)
        except BaseException as error:  # reported as data so the comparison shows it
            box["result"] = ("scenario raised", type(error).__name__, str(error))
        finally:
            env.close()

    thread = threading.Thread(target=worker, name=f"scenario-{scenario.__name__}", daemon=True)
    thread.start()
    thread.join(SCENARIO_TIMEOUT)
    if thread.is_alive():
        return ("timeout", f"scenario did not finish within {SCENARIO_TIMEOUT}s")
    return box["result"]


def observe_both(scenario: Scenario, router_url: str, rabbitmq_url: str) -> tuple[Any, Any]:
    suffix = uuid.uuid4().hex[:12]
    rabbit = run(scenario, rabbitmq_url, suffix)
    router = run(scenario, router_url, suffix)
    return router, rabbit


def assert_same(scenario: Scenario, router_url: str, rabbitmq_url: str) -> Observation:
    router, rabbit = observe_both(scenario, router_url, rabbitmq_url)
    if isinstance(rabbit, tuple) and rabbit[:1] in (("scenario raised",), ("timeout",)):
        raise AssertionError(f"scenario is broken: against RabbitMQ it gave {rabbit!r}")
    assert router == rabbit, describe_difference(router, rabbit)
    return rabbit


def describe_difference(router: Any, rabbit: Any) -> str:
    if isinstance(router, dict) and isinstance(rabbit, dict):
        lines = [
            f"  [{key!r}] router={router.get(key, '<missing>')!r} "
            f"rabbitmq={rabbit.get(key, '<missing>')!r}"
            for key in dict.fromkeys([*rabbit, *router])
            if router.get(key, "<missing>") != rabbit.get(key, "<missing>")
        ]
        return "router differs from RabbitMQ:\n" + "\n".join(lines)
    return f"router differs from RabbitMQ:\n  router:   {router!r}\n  rabbitmq: {rabbit!r}"


# -- observing --------------------------------------------------------------------------------


def outcome(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> tuple[Any, ...]:
    """Call ``fn``; ``("ok", plain(result))`` or how the broker closed the channel/connection."""
    try:
        return ("ok", plain(fn(*args, **kwargs)))
    except px.ChannelClosedByBroker as error:
        return ("channel-closed", error.reply_code, error.reply_text)
    except px.ConnectionClosedByBroker as error:
        return ("connection-closed", error.reply_code, error.reply_text)


def connect_outcome(env: Env, **overrides: Any) -> tuple[Any, ...]:
    """Open a connection with ``overrides``; ``("ok",)`` or the close code/text seen by pika."""
    try:
        env.connect(**overrides)
    except px.ProbableAuthenticationError as error:
        return ("auth-refused", *_close_args(error))
    except px.ProbableAccessDeniedError as error:
        return ("access-denied", *_close_args(error))
    except px.ConnectionClosedByBroker as error:
        return ("connection-closed", error.reply_code, error.reply_text)
    except px.AMQPConnectionError as error:
        inner = error.args[0] if error.args else error
        if isinstance(inner, px.ConnectionClosedByBroker):
            return ("connection-closed", inner.reply_code, inner.reply_text)
        return ("connection-error", type(inner).__name__, *_close_args(inner))
    return ("ok",)


def _close_args(error: BaseException) -> tuple[Any, ...]:
    args = error.args
    if len(args) == 1 and isinstance(args[0], BaseException):
        return _close_args(args[0])
    return tuple(args)


def ping(channel: Any) -> None:
    """A synchronous round trip, so errors from earlier asynchronous methods surface now."""
    channel.exchange_declare("amq.direct", passive=True)


def plain(value: Any) -> Any:
    """Turn pika frames/methods into plain comparable data."""
    if value is None or isinstance(value, str | int | float | bool | bytes):
        return value
    if isinstance(value, list | tuple):
        return type(value)(plain(v) for v in value)
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if hasattr(value, "method"):  # pika.frame.Method
        return plain(value.method)
    if hasattr(value, "INDEX") and hasattr(value, "NAME"):  # pika.spec method class
        fields = {k: plain(v) for k, v in vars(value).items() if not k.startswith("_")}
        return (value.NAME, fields)
    return repr(value)


def get_all(channel: Any, queue: str, *, auto_ack: bool = False) -> list[tuple[Any, ...]]:
    """basic.get until empty: (body, redelivered, routing_key, delivery_tag, message_count)."""
    got = []
    while True:
        method, _props, body = channel.basic_get(queue, auto_ack=auto_ack)
        if method is None:
            return got
        got.append(
            (
                body,
                method.redelivered,
                method.routing_key,
                method.delivery_tag,
                method.message_count,
            )
        )


def drain(connection: Any, quiet: float = QUIET_PERIOD, limit: float = 5.0) -> None:
    """Dispatch events until no bytes move either way for ``quiet`` seconds (or ``limit`` passes).

    ``process_data_events`` returns early whenever a callback is pending, so quietness is measured
    on the clock, not per call.
    """
    start = time.monotonic()
    last_seen, last_change = _activity(connection), start
    while time.monotonic() - start < limit:
        connection.process_data_events(time_limit=0.05)
        now, seen = time.monotonic(), _activity(connection)
        if seen != last_seen:
            last_seen, last_change = seen, now
        elif now - last_change >= quiet:
            return


def _activity(connection: Any) -> int:
    impl = connection._impl
    return int(getattr(impl, "bytes_received", 0)) + int(getattr(impl, "bytes_sent", 0))
