"""``router dashboard``: reads the management API once a second and redraws (rich Live, full
screen). Works against a local or a remote broker, and against RabbitMQ too (router's own
fields are shown when present). When the broker goes away it says "disconnected" and retries
with a growing pause (1 s up to 5 s) until it is back. ``--once`` prints one snapshot and exits:
0 when the broker answered, 1 when it did not.
"""

from __future__ import annotations

import argparse
import base64
import json
import time
import urllib.error
import urllib.request
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from rich.console import Console
from rich.live import Live

from router.dashboard.render import History, Snapshot, render

REFRESH = 1.0
MAX_RETRY = 5.0
TIMEOUT = 3.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--url",
        default="http://127.0.0.1:15672",
        help="the broker's management API (default http://127.0.0.1:15672; credentials may "
        "be in it: http://user:password@host:15672)",
    )
    parser.add_argument("--user", default=None, help="user name (default guest)")
    parser.add_argument("--password", default=None, help="password (default guest)")
    parser.add_argument(
        "--once", action="store_true", help="print one snapshot and exit (for scripts)"
    )
    parser.add_argument(
        "--interval", type=float, default=REFRESH, help="seconds between refreshes (default 1)"
    )


class Client:
    """GETs JSON from the management API with basic auth (stdlib only)."""

    def __init__(self, url: str, user: str | None, password: str | None) -> None:
        parts = urlsplit(url if "://" in url else f"http://{url}")
        self.user = user or parts.username or "guest"
        self.password = password or parts.password or "guest"
        netloc = parts.hostname or "127.0.0.1"
        if parts.port:
            netloc = f"{netloc}:{parts.port}"
        self.base = urlunsplit((parts.scheme or "http", netloc, parts.path.rstrip("/"), "", ""))
        token = base64.b64encode(f"{self.user}:{self.password}".encode()).decode()
        self._auth = f"Basic {token}"

    def get(self, path: str) -> Any:
        request = urllib.request.Request(self.base + path, headers={"Authorization": self._auth})
        with urllib.request.urlopen(request, timeout=TIMEOUT) as response:
            return json.loads(response.read())

    def snapshot(self) -> Snapshot:
        snapshot = Snapshot(self.base)
        try:
            snapshot.overview = self.get("/api/overview")
            snapshot.exchanges = self.get("/api/exchanges")
            snapshot.queues = self.get("/api/queues")
            try:
                snapshot.bindings = self.get("/api/router/bindings?limit=50")
            except urllib.error.HTTPError as error:  # RabbitMQ: no such endpoint
                if error.code != 404:
                    raise
                snapshot.bindings = [b for b in self.get("/api/bindings") if b.get("source")]
        except urllib.error.HTTPError as error:
            snapshot.error = f"HTTP {error.code} from {self.base}" + (
                f" (check the user and password: {self.user})" if error.code == 401 else ""
            )
        except (urllib.error.URLError, OSError, ValueError) as error:
            reason = getattr(error, "reason", error)
            snapshot.error = f"cannot reach {self.base}: {reason}"
        return snapshot


def run(args: argparse.Namespace) -> int:
    client = Client(args.url, args.user, args.password)
    history = History()
    console = Console()
    if args.once:
        snapshot = client.snapshot()
        history.record(snapshot)
        console.print(render(snapshot, history, console.width, None))
        return 1 if snapshot.error else 0
    retry = REFRESH
    last = Snapshot(client.base)
    try:
        with Live(console=console, screen=True, auto_refresh=False) as live:
            while True:
                snapshot = client.snapshot()
                if snapshot.error:
                    # keep showing what was last seen, marked disconnected
                    snapshot.overview, snapshot.exchanges = last.overview, last.exchanges
                    snapshot.queues, snapshot.bindings = last.queues, last.bindings
                    snapshot.retry_in = retry
                    wait = retry
                    retry = min(MAX_RETRY, retry + 1)
                else:
                    last = snapshot
                    history.record(snapshot)
                    retry = REFRESH
                    wait = args.interval
                live.update(render(snapshot, history, console.width, console.height), refresh=True)
                time.sleep(wait)
    except KeyboardInterrupt:
        return 0
