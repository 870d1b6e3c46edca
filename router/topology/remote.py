"""A running broker as a plan's target, through its management HTTP API.

Only RabbitMQ's own API paths are used (``GET /api/definitions``, ``POST /api/definitions``,
``DELETE /api/queues/…``), so the same commands plan and apply against router and against a
RabbitMQ node alike. Creations and in-place updates go in one definitions import; deletions one
request each, in the plan's order. One keep-alive connection carries every request.
"""

from __future__ import annotations

import base64
import http.client
import json
import urllib.parse
from typing import Any

from router.topology.definitions import current_from_definitions, to_definitions
from router.topology.model import Topology
from router.topology.plan import CREATE, DELETE, UPDATE, Change
from router.topology.target import ApplyError


class RemoteError(Exception):
    """The management API could not be reached or answered with an error."""


def _quote(part: str) -> str:
    return urllib.parse.quote(part, safe="")


class ManagementClient:
    """A small keep-alive client for a management API (router's or RabbitMQ's)."""

    def __init__(self, url: str, user: str, password: str, timeout: float = 30.0) -> None:
        parsed = urllib.parse.urlsplit(url if "://" in url else f"http://{url}")
        if parsed.scheme not in ("http", "https"):
            raise RemoteError(f"{url}: the management URL must start with http:// or https://")
        self.url = url
        self._scheme = parsed.scheme
        self._host = parsed.hostname or "127.0.0.1"
        self._port = parsed.port or (443 if parsed.scheme == "https" else 80)
        self._prefix = parsed.path.rstrip("/")
        token = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
        self._headers = {"Authorization": f"Basic {token}", "Connection": "keep-alive"}
        self._timeout = timeout
        self._connection: http.client.HTTPConnection | None = None

    def _connect(self) -> http.client.HTTPConnection:
        if self._connection is None:
            cls = (
                http.client.HTTPSConnection
                if self._scheme == "https"
                else http.client.HTTPConnection
            )
            self._connection = cls(self._host, self._port, timeout=self._timeout)
        return self._connection

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    def request(self, method: str, path: str, body: Any = None) -> Any:
        """JSON in, JSON out; raises RemoteError for anything but 2xx."""
        payload = None if body is None else json.dumps(body).encode("utf-8")
        headers = dict(self._headers)
        if payload is not None:
            headers["Content-Type"] = "application/json"
        for attempt in (1, 2):  # a kept-alive connection the server closed: reconnect once
            connection = self._connect()
            try:
                connection.request(method, self._prefix + path, body=payload, headers=headers)
                response = connection.getresponse()
                data = response.read()
                break
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                self.close()
                if attempt == 2:
                    raise RemoteError(
                        f"{self.url}: the management API closed the connection"
                    ) from None
            except (OSError, http.client.HTTPException) as error:
                self.close()
                reason = error.strerror if isinstance(error, OSError) and error.strerror else error
                raise RemoteError(
                    f"cannot reach the management API at {self.url}: {reason}. Is the broker "
                    "running with its management API on? (router serve listens on 15672; "
                    "pass --url)"
                ) from None
        if response.status == 401:
            raise RemoteError(
                f"{self.url}: the management API refused the login; pass --user and --password"
            )
        if response.status >= 300:
            reason = data.decode("utf-8", "replace")
            try:
                parsed = json.loads(reason)
                reason = parsed.get("reason", reason) if isinstance(parsed, dict) else reason
            except json.JSONDecodeError:
                pass
            raise RemoteError(f"{method} {path}: {response.status} {reason}")
        if not data:
            return None
        return json.loads(data)


class RemoteTarget:
    """A running broker, through its management API."""

    def __init__(self, client: ManagementClient) -> None:
        self.client = client

    def current(self) -> tuple[Topology, dict[tuple[str, str], int]]:
        document = self.client.request("GET", "/api/definitions")
        topology = current_from_definitions(document)
        queues = self.client.request("GET", "/api/queues?columns=name,vhost,messages") or []
        messages = {
            (q["vhost"], q["name"]): int(q.get("messages") or 0)
            for q in queues
            if isinstance(q, dict)
        }
        return topology, messages

    def apply(self, steps: list[Change]) -> None:
        done = 0
        creations = Topology()
        for change in steps:
            if change.action == DELETE:
                try:
                    self._delete(change)
                except RemoteError as error:
                    raise ApplyError(change, str(error), done) from None
                done += 1
                continue
            assert change.action in (CREATE, UPDATE)
            spec = change.desired
            section: dict[Any, Any] = getattr(creations, _SECTION[change.kind])
            if change.kind == "binding":
                section[spec.key] = spec
            elif change.kind in ("vhost", "user"):
                section[spec.name] = spec
            elif change.kind == "permission":
                section[(spec.user, spec.vhost)] = spec
            else:
                section[(spec.vhost, spec.name)] = spec
        if not any(creations.counts().values()):
            return
        document = to_definitions(creations)
        if not creations.vhosts:
            document["vhosts"] = []  # to_definitions always names '/'; nothing to create here
        try:
            self.client.request("POST", "/api/definitions", document)
        except RemoteError as error:
            first = next(c for c in steps if c.action != DELETE)
            raise ApplyError(first, f"the definitions import failed: {error}", done) from None

    def _delete(self, change: Change) -> None:
        spec = change.current
        vhost = _quote(getattr(spec, "vhost", ""))
        kind = change.kind
        if kind == "vhost":
            self.client.request("DELETE", f"/api/vhosts/{_quote(spec.name)}")
        elif kind == "user":
            self.client.request("DELETE", f"/api/users/{_quote(spec.name)}")
        elif kind == "permission":
            self.client.request("DELETE", f"/api/permissions/{vhost}/{_quote(spec.user)}")
        elif kind == "policy":
            self.client.request("DELETE", f"/api/policies/{vhost}/{_quote(spec.name)}")
        elif kind == "exchange":
            self.client.request("DELETE", f"/api/exchanges/{vhost}/{_quote(spec.name)}")
        elif kind == "queue":
            self.client.request("DELETE", f"/api/queues/{vhost}/{_quote(spec.name)}")
        elif kind == "binding":
            letter = "e" if spec.destination_type == "exchange" else "q"
            base = (
                f"/api/bindings/{vhost}/e/{_quote(spec.source)}/{letter}/{_quote(spec.destination)}"
            )
            for binding in self.client.request("GET", base) or []:
                if binding.get("routing_key") == spec.routing_key and (
                    (binding.get("arguments") or {}) == spec.arguments
                ):
                    self.client.request("DELETE", f"{base}/{_quote(binding['properties_key'])}")
                    return


_SECTION = {
    "vhost": "vhosts",
    "user": "users",
    "permission": "permissions",
    "policy": "policies",
    "exchange": "exchanges",
    "queue": "queues",
    "binding": "bindings",
}
