"""Command line: ``router serve``, ``router topology``, ``router dashboard`` and ``router bench``."""

from __future__ import annotations

import argparse
import gc
import logging
import signal
import sys
import time
from typing import Any

from router import __version__
from router.config import ConfigError, Settings, load_settings


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="router", description="An AMQP 0-9-1 routing broker.")
    parser.add_argument("--version", action="version", version=f"router {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the broker")
    serve.add_argument("--config", default=None, help="settings file (YAML)")
    serve.add_argument("--host", default=None, help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=None, help="AMQP port (default 5672)")
    serve.add_argument(
        "--heartbeat",
        type=int,
        default=None,
        help="heartbeat interval proposed to clients, seconds (default 60)",
    )
    serve.add_argument("--log-level", default=None, help="debug, info, warning (default info)")
    serve.add_argument(
        "--data-dir",
        default=None,
        help="where durable exchanges, queues, bindings and persistent messages are kept "
        "(default ./var/router)",
    )
    serve.add_argument(
        "--memory-high-watermark",
        type=float,
        default=None,
        help="block publishers at this resident memory: a fraction of RAM up to 1 (default "
        "0.4), or bytes above 1",
    )
    serve.add_argument(
        "--management-port",
        type=int,
        default=None,
        help="management HTTP API port (default 15672; 0 picks a free one)",
    )
    serve.add_argument(
        "--no-management", action="store_true", help="do not start the management HTTP API"
    )
    serve.add_argument(
        "--prometheus-port",
        type=int,
        default=None,
        help="also serve /metrics on this port of its own (RabbitMQ uses 15692)",
    )
    serve.add_argument(
        "--log-format",
        choices=("text", "json"),
        default=None,
        help="log lines as text (default) or one JSON object per line",
    )
    serve.add_argument(
        "--topology",
        nargs="+",
        default=None,
        metavar="FILE",
        help="topology files or directories to apply before listening (and again on SIGHUP)",
    )
    serve.add_argument(
        "--in-memory",
        action="store_true",
        help="keep nothing on disk: durable things are lost at exit (tests, benchmarks)",
    )

    topology = sub.add_parser(
        "topology",
        help="topology as code: validate, plan, apply and export YAML topology files",
        description="Topology as code (docs/topology.md).",
    )
    from router.topology.commands import add_arguments as add_topology_arguments

    add_topology_arguments(topology)
    dashboard = sub.add_parser(
        "dashboard", help="live view of a broker's routing, queues and rates (management API)"
    )
    from router.dashboard.app import add_arguments as add_dashboard_arguments

    add_dashboard_arguments(dashboard)
    bench = sub.add_parser("bench", help="measure end-to-end throughput")
    from router.bench import add_arguments

    add_arguments(bench)
    bench_plot = sub.add_parser("bench-plot", help="draw router bench's JSON results as a PNG")
    from router.bench import add_plot_arguments

    add_plot_arguments(bench_plot)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = _build_parser()
    args = parser.parse_args(argv)
    if args.command == "serve":
        try:
            settings = load_settings(
                args.config,
                {
                    "host": args.host,
                    "port": args.port,
                    "heartbeat": args.heartbeat,
                    "log_level": args.log_level,
                    "data_dir": args.data_dir,
                    "memory_high_watermark": _whole(args.memory_high_watermark),
                    "management_port": args.management_port,
                    "management": False if args.no_management else None,
                    "prometheus_port": args.prometheus_port,
                    "log_format": args.log_format,
                    "topology": args.topology,
                },
            )
        except ConfigError as error:
            print(f"router: {error}", file=sys.stderr)
            return 2
        return serve(settings, in_memory=args.in_memory)
    if args.command == "topology":
        from router.topology.commands import run as run_topology

        return run_topology(args)
    if args.command == "dashboard":
        from router.dashboard.app import run as run_dashboard

        return run_dashboard(args)
    if args.command == "bench":
        from router.bench import run

        return run(args)
    if args.command == "bench-plot":
        from router.bench import plot

        return plot(args)
    parser.error(f"unknown command {args.command}")
    return 2


def serve(settings: Settings, *, in_memory: bool = False) -> int:
    import trio

    from router.broker.broker import Broker, BrokerConfig
    from router.broker.ports import Clock
    from router.logs import configure as configure_logs
    from router.management.api import ManagementAPI
    from router.process import raise_fd_limit, read_rss
    from router.runtime.http import ManagementServer
    from router.runtime.memory import MemoryMonitor, total_memory, watermark_bytes
    from router.runtime.server import AMQPServer
    from router.runtime.storage import StoreFlusher
    from router.store.recovery import restore
    from router.store.sqlite import SQLiteStore, StoreError, StoreFailed, open_store

    # A queue backlog is hundreds of thousands of long-lived Message objects; with CPython's
    # default thresholds (700, 10, 10) the cyclic GC re-scans them on every 25 % of heap growth
    # (measured: ~30 % of broker CPU in `router bench`). Per-message objects form no cycles, so
    # collect rarely; cycles (closed sessions, channels) are still reclaimed.
    gc.set_threshold(50_000, 20, 20)
    configure_logs(settings.log_level, settings.log_format)
    log = logging.getLogger("router")
    fd_limit = raise_fd_limit()
    if fd_limit is None:
        log.warning("could not read or raise the limit of open files (one per connection)")
    else:
        log.info("file descriptor limit %d (one per connection)", fd_limit)
    if settings.topology:
        # bad files stop the start before anything is opened
        from router.topology import load as load_topology

        _, problems = load_topology(list(settings.topology))
        for problem in problems:
            (log.warning if problem.warning else log.error)(
                "topology: %s", str(problem).replace("\n    ", " — ")
            )
        if any(not p.warning for p in problems):
            log.error(
                "cannot start: the topology files have errors (above); check them with "
                "'router topology validate %s'",
                " ".join(settings.topology),
            )
            return 1
    clock = Clock()
    store: SQLiteStore | None = None
    if not in_memory:
        try:
            store = open_store(
                settings.data_dir, clock, memory_budget=settings.memory_budget or None
            )
        except StoreError as error:
            log.error("cannot start: %s", error)
            return 1
    broker = Broker(
        BrokerConfig(
            channel_max=settings.channel_max,
            frame_max=settings.frame_max,
            heartbeat=settings.heartbeat,
            max_message_size=settings.max_message_size,
            users=settings.users,
            vhosts=settings.vhosts,
        ),
        clock=clock,
        store=store,
    )
    server = AMQPServer(broker)
    watermark = watermark_bytes(settings.memory_high_watermark, total_memory())
    monitor: MemoryMonitor | None = None
    if watermark is None or read_rss() is None:
        log.warning("memory alarm off: this system does not tell the process's memory use")
    else:
        monitor = MemoryMonitor(broker, watermark)
        server.on_read = monitor.bytes_read
        log.info(
            "memory high watermark %.0f MiB (memory_high_watermark %s)",
            watermark / 1048576,
            settings.memory_high_watermark,
        )
    flusher = StoreFlusher(broker, store) if store is not None else None
    api = ManagementAPI(broker, store_stats=flusher.figures if flusher is not None else None)

    async def run() -> None:
        clock.now = trio.current_time()
        clock.wall_offset = time.time() - clock.now
        # signals are caught from the start: a SIGHUP right after "listening" must not kill
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM, signal.SIGHUP) as signals:
            await serve_until_signalled(signals)

    async def serve_until_signalled(signals: Any) -> None:
        async with trio.open_nursery() as nursery:
            if flusher is not None:
                recovered = restore(broker, flusher.store)
                log.info(
                    "recovered from %s in %.2f s: %d exchanges, %d queues, %d bindings, "
                    "%d messages",
                    flusher.store.path,
                    recovered.seconds,
                    recovered.exchanges,
                    recovered.queues,
                    recovered.bindings,
                    recovered.messages,
                )
                await nursery.start(flusher.run)
            if settings.topology and not _apply_topology(broker, settings.topology, log):
                raise SystemExit(1)
            if monitor is not None:
                nursery.start_soon(monitor.run)
            try:
                port = await nursery.start(server.serve, settings.host, settings.port)
                api.add_listener("amqp", settings.host, port)
                if settings.management:
                    http_port = await nursery.start(
                        ManagementServer(api).serve,
                        settings.management_host,
                        settings.management_port,
                    )
                    api.add_listener("http", settings.management_host, http_port)
                if settings.prometheus_port is not None:
                    await nursery.start(
                        ManagementServer(api, metrics_only=True).serve,
                        settings.management_host,
                        settings.prometheus_port,
                    )
            except OSError as error:
                log.error(
                    "cannot listen: %s (is another broker running on port %d or %d? pick others "
                    "with --port and --management-port, or --no-management)",
                    error,
                    settings.port,
                    settings.management_port,
                )
                raise SystemExit(1) from None
            async for signum in signals:
                if signum == signal.SIGHUP:
                    if settings.topology:
                        log.info("SIGHUP: applying the topology files again")
                        _apply_topology(broker, settings.topology, log)
                    else:
                        log.info("SIGHUP: no topology files to apply (serve --topology)")
                    continue
                log.info(
                    "%s received: closing connections (320) and stopping",
                    signal.Signals(signum).name,
                )
                break
            await server.shutdown()
            if flusher is not None:
                await flusher.stop_cleanly()
                log.info("store: %s", flusher.summary())
            nursery.cancel_scope.cancel()

    try:
        trio.run(run)
    except KeyboardInterrupt:
        pass
    except BaseException as error:
        if _caused_by(error, StoreFailed):
            return 70  # EX_SOFTWARE: logged by the flusher; the next start recovers from the store
        if _caused_by(error, SystemExit):  # already logged (e.g. cannot listen)
            return 1
        raise
    finally:
        if store is not None:
            store.close()
    log.info("stopped")
    return 0


def _apply_topology(broker: Any, files: tuple[str, ...], log: logging.Logger) -> bool:
    """Make the broker match the topology files; log what changed or why nothing did."""
    from router.topology import apply_to_broker

    result = apply_to_broker(broker, list(files))
    for line in result.lines():
        log.warning("topology: %s", line)
    if not result.ok:
        log.error(
            "topology not applied: %s; fix the files (router topology validate/plan shows "
            "the same) and send SIGHUP, or restart",
            "the files have errors" if result.plan is None else "see the lines above",
        )
        return False
    assert result.plan is not None
    log.info("topology %s: %s", " ".join(files), result.plan.summary())
    return True


def _whole(value: float | None) -> float | int | None:
    """A watermark from the command line: bytes as an int, a fraction as a float."""
    if value is not None and value > 1 and value.is_integer():
        return int(value)
    return value


def _caused_by(error: BaseException, kind: type[BaseException]) -> bool:
    """Whether ``error`` is a ``kind``, or an exception group holding one (trio's nurseries)."""
    if isinstance(error, kind):
        return True
    if isinstance(error, BaseExceptionGroup):
        return any(_caused_by(inner, kind) for inner in error.exceptions)
    return False
