"""The management HTTP API as plain request → response handlers (no sockets, no waiting).

``ManagementAPI.handle(request, now)`` answers one ``Request`` with a ``Response``; the runtime's
h11 loop (router/runtime/http.py) only moves bytes. Paths, JSON field names, status codes, basic
auth and the error bodies are RabbitMQ 3.10's management API for what router has (checked against
the reference; docs/management.md lists every path and what router adds):

- errors are ``{"error": ..., "reason": ...}``: 404 "Object Not Found", 400 "bad_request" with the
  broker's own text (the same as the AMQP reply text without its code name), 401 with
  ``WWW-Authenticate: Basic realm="RabbitMQ Management"``;
- PUT that creates answers 201, PUT that finds the same object 204, DELETE 204;
- list endpoints take ``columns``, ``name`` / ``use_regex``, ``sort`` / ``sort_reverse`` and
  ``page`` / ``page_size``, as RabbitMQ's do.

Beyond RabbitMQ: browsing a queue without taking its messages, moving messages from a queue to
another at a bounded rate (DLQ redrive), listing and cancelling scheduled messages, per-binding
match counters and rates, and /metrics for Prometheus (``prometheus.py``).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import struct
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, unquote

from router import __version__
from router.amqp.constants import CONNECTION_FORCED
from router.amqp.errors import AMQPError
from router.amqp.errors import ConnectionError as AMQPConnectionError
from router.amqp.properties import decode_properties, scan_full
from router.amqp.tables import to_json
from router.broker.arguments import validate_exchange_arguments, validate_queue_arguments
from router.broker.exchanges import EXCHANGE_TYPES
from router.broker.exchanges.base import Binding, Exchange
from router.broker.message import Message
from router.broker.permissions import Permission
from router.broker.policies import Policy, validate_policy
from router.broker.queues import Queue
from router.broker.stats import OVERVIEW_FIELDS, Rates, details
from router.broker.vhost import VirtualHost
from router.management import prometheus, sampling, views
from router.management.moves import Move

if TYPE_CHECKING:
    from router.broker.broker import Broker
    from router.broker.session import Session

JSON = "application/json"
REALM = 'Basic realm="RabbitMQ Management"'
MAX_PAGE_SIZE = 500  # RabbitMQ's limit
MIN_SAMPLE_INTERVAL = 1.0  # the API resamples rates at most once a second


@dataclass(frozen=True)
class Request:
    method: str
    target: str  # the raw request target: path and query, percent-encoded
    headers: dict[str, str] = field(default_factory=dict)  # lower-case names
    body: bytes = b""

    @property
    def path(self) -> str:
        return self.target.split("?", 1)[0]

    @property
    def query(self) -> dict[str, str]:
        if "?" not in self.target:
            return {}
        result: dict[str, str] = {}
        for part in self.target.split("?", 1)[1].split("&"):
            if part:
                key, _, value = part.partition("=")
                result[unquote(key.replace("+", " "))] = unquote(value.replace("+", " "))
        return result


@dataclass(frozen=True)
class Response:
    status: int
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes = b""

    @classmethod
    def json(
        cls, value: Any, status: int = 200, headers: Iterable[tuple[str, str]] = ()
    ) -> Response:
        return cls(
            status,
            (("content-type", JSON), *headers),
            json.dumps(value, separators=(",", ":")).encode(),
        )

    @classmethod
    def text(cls, text: str, content_type: str, status: int = 200) -> Response:
        return cls(status, (("content-type", content_type),), text.encode())


class HTTPError(Exception):
    """An error answer: status, RabbitMQ's error word and a reason for the user."""

    def __init__(
        self, status: int, error: str, reason: str, headers: Sequence[tuple[str, str]] = ()
    ) -> None:
        super().__init__(reason)
        self.status = status
        self.error = error
        self.reason = reason
        self.headers = tuple(headers)

    def response(self) -> Response:
        return Response.json(
            {"error": self.error, "reason": self.reason}, self.status, self.headers
        )


def flag(body: dict[str, Any], key: str, default: bool) -> bool:
    """A boolean from a JSON body; "true" / "false" strings too (rabbitmqadmin sends them)."""
    value = body.get(key, default)
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise bad_request(f"{key} must be true or false, not {value!r}")


def integer(body: dict[str, Any], key: str) -> int | None:
    """An integer from a JSON body; numeric strings too (rabbitmqadmin sends "count": "1")."""
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    raise bad_request(f"{key} must be an integer, not {value!r}")


def exchange_name(name: str) -> str:
    """The default exchange is "amq.default" in paths, as in RabbitMQ's API."""
    return "" if name == "amq.default" else name


def not_found(what: str = "Not Found") -> HTTPError:
    return HTTPError(404, "Object Not Found", what)


def bad_request(reason: str) -> HTTPError:
    return HTTPError(400, "bad_request", reason)


class _Unauthorized(Exception):
    """No credentials at all: 401 with an empty body, as RabbitMQ answers."""


Handler = Callable[..., Response]


class ManagementAPI:
    """Every management endpoint over one broker."""

    def __init__(
        self,
        broker: Broker,
        *,
        rates: Rates | None = None,
        store_stats: Callable[[], dict[str, Any]] | None = None,
    ) -> None:
        self.broker = broker
        self.rates = rates if rates is not None else Rates()
        # the store's figures (fsync batches and their sizes), when there is a store
        self.store_stats = store_stats or (lambda: {})
        self.listeners: list[dict[str, Any]] = []  # add_listener
        self.moves: dict[int, Move] = {}
        self._move_ids = 0
        self._sampled_at: float | None = None
        self._routes: list[tuple[str, tuple[str, ...], Handler]] = []
        self._install_routes()

    # --- dispatch ------------------------------------------------------------------------------

    def handle(self, request: Request, now: float) -> Response:
        """Answer one request. ``now`` is monotonic seconds (for rates and moves)."""
        try:
            segments = [unquote(part) for part in request.path.split("/")[1:]]
            if segments and segments[-1] == "" and len(segments) > 1:
                segments.pop()  # a trailing slash
            if segments in (["metrics"], ["metrics", "per-object"]):
                # unauthenticated, as rabbitmq_prometheus serves it (scrapers carry no password)
                if request.method not in ("GET", "HEAD"):
                    return Response(405, (("allow", "GET, HEAD"),))
                text = prometheus.render(
                    self.broker,
                    self.rates,
                    self.store_stats(),
                    per_object=len(segments) == 2,
                )
                return Response.text(text, prometheus.CONTENT_TYPE)
            if not segments or segments[0] != "api":
                raise not_found()
            handler, params, allowed = self._match(request.method, segments)
            if handler is None:
                if allowed:
                    return Response(405, (("allow", ", ".join(sorted(allowed))),))
                raise not_found()
            self._authenticate(request)
            self._advance(now)
            self.resample(now)
            return handler(request, now, *params)
        except _Unauthorized:
            return Response(401, (("www-authenticate", REALM),))
        except HTTPError as error:
            return error.response()

    def _match(
        self, method: str, segments: list[str]
    ) -> tuple[Handler | None, list[str], set[str]]:
        allowed: set[str] = set()
        for route_method, pattern, handler in self._routes:
            if len(pattern) != len(segments):
                continue
            params: list[str] = []
            for want, got in zip(pattern, segments, strict=True):
                if want == "{}":
                    params.append(got)
                elif want != got:
                    break
            else:
                if route_method == method or (method == "HEAD" and route_method == "GET"):
                    return handler, params, allowed
                allowed.add(route_method)
        if allowed:
            allowed |= {"OPTIONS"} | ({"HEAD"} if "GET" in allowed else set())
        return None, [], allowed

    def _authenticate(self, request: Request) -> str:
        header = request.headers.get("authorization", "")
        if not header.lower().startswith("basic "):
            raise _Unauthorized()
        try:
            user, _, password = base64.b64decode(header[6:].strip()).decode("utf-8").partition(":")
        except (binascii.Error, UnicodeDecodeError):
            user, password = "", ""
        if not self.broker.authenticate(user, password):
            raise HTTPError(401, "not_authorized", "Login failed", (("www-authenticate", REALM),))
        return user

    def resample(self, now: float, *, force: bool = False) -> None:
        """Sample the counters (at most once a second unless ``force``)."""
        if force or self._sampled_at is None or now - self._sampled_at >= MIN_SAMPLE_INTERVAL:
            sampling.sample(self.broker, self.rates, now)
            self._sampled_at = now

    def add_listener(self, protocol: str, host: str, port: int) -> None:
        """A port the broker listens on, for /api/overview's ``listeners``."""
        self.listeners.append(
            {"node": views.NODE, "protocol": protocol, "ip_address": host, "port": port}
        )

    # --- moves (DLQ redrive) -------------------------------------------------------------------

    def next_deadline(self) -> float | None:
        deadlines = [m.next_step for m in self.moves.values() if m.running]
        return min(deadlines) if deadlines else None

    def fail_moves(self, reason: str) -> None:
        for move in self.moves.values():
            if move.running:
                move.fail(reason)

    def _advance(self, now: float) -> None:
        """The model reads its clock, which an idle broker's AMQP side has not moved lately
        (TTL, x-delay, ages): bring it to ``now`` before acting, as Session.receive_data does."""
        clock = self.broker.clock
        clock.now = max(clock.now, now)

    def tick(self, now: float) -> None:
        self._advance(now)
        for move in list(self.moves.values()):
            if move.running and move.next_step <= now:
                move.step(now)

    # --- routes --------------------------------------------------------------------------------

    def _install_routes(self) -> None:
        add = self._routes.append
        for method, path, handler in (
            ("GET", "overview", self.overview),
            ("GET", "whoami", self.whoami),
            ("GET", "nodes", self.nodes),
            ("GET", "nodes/{}", self.node),
            ("GET", "extensions", lambda r, n: Response.json([])),
            ("GET", "vhosts", self.vhosts),
            ("GET", "vhosts/{}", self.vhost),
            ("PUT", "vhosts/{}", self.put_vhost),
            ("DELETE", "vhosts/{}", self.delete_vhost),
            ("GET", "vhosts/{}/connections", self.vhost_connections),
            ("GET", "vhosts/{}/channels", self.vhost_channels),
            ("GET", "vhosts/{}/permissions", self.vhost_permissions),
            ("GET", "users", self.users),
            ("GET", "users/{}", self.user),
            ("PUT", "users/{}", self.put_user),
            ("DELETE", "users/{}", self.delete_user),
            ("GET", "permissions", self.permissions),
            ("GET", "permissions/{}/{}", self.permission),
            ("PUT", "permissions/{}/{}", self.put_permission),
            ("DELETE", "permissions/{}/{}", self.delete_permission),
            ("GET", "users/{}/permissions", self.user_permissions),
            ("GET", "connections", self.connections),
            ("GET", "connections/{}", self.connection),
            ("DELETE", "connections/{}", self.delete_connection),
            ("GET", "connections/{}/channels", self.connection_channels),
            ("GET", "channels", self.channels),
            ("GET", "channels/{}", self.channel),
            ("GET", "consumers", self.consumers),
            ("GET", "consumers/{}", self.consumers),
            ("GET", "exchanges", self.exchanges),
            ("GET", "exchanges/{}", self.exchanges),
            ("GET", "exchanges/{}/{}", self.exchange),
            ("PUT", "exchanges/{}/{}", self.put_exchange),
            ("DELETE", "exchanges/{}/{}", self.delete_exchange),
            ("GET", "exchanges/{}/{}/bindings/source", self.exchange_source_bindings),
            ("GET", "exchanges/{}/{}/bindings/destination", self.exchange_destination_bindings),
            ("POST", "exchanges/{}/{}/publish", self.publish),
            ("GET", "queues", self.queues),
            ("GET", "queues/{}", self.queues),
            ("GET", "queues/{}/{}", self.queue),
            ("PUT", "queues/{}/{}", self.put_queue),
            ("DELETE", "queues/{}/{}", self.delete_queue),
            ("DELETE", "queues/{}/{}/contents", self.purge_queue),
            ("POST", "queues/{}/{}/get", self.get_messages),
            ("GET", "queues/{}/{}/bindings", self.queue_bindings),
            ("GET", "queues/{}/{}/messages", self.browse),
            ("POST", "queues/{}/{}/move", self.start_move),
            ("GET", "queues/{}/{}/scheduled", self.scheduled),
            ("DELETE", "queues/{}/{}/scheduled/{}", self.cancel_scheduled),
            ("GET", "bindings", self.bindings),
            ("GET", "bindings/{}", self.bindings),
            ("GET", "bindings/{}/e/{}/q/{}", self.binding_list_queue),
            ("POST", "bindings/{}/e/{}/q/{}", self.post_binding_queue),
            ("GET", "bindings/{}/e/{}/q/{}/{}", self.binding_queue),
            ("DELETE", "bindings/{}/e/{}/q/{}/{}", self.delete_binding_queue),
            ("GET", "bindings/{}/e/{}/e/{}", self.binding_list_exchange),
            ("POST", "bindings/{}/e/{}/e/{}", self.post_binding_exchange),
            ("GET", "bindings/{}/e/{}/e/{}/{}", self.binding_exchange),
            ("DELETE", "bindings/{}/e/{}/e/{}/{}", self.delete_binding_exchange),
            ("GET", "definitions", self.definitions),
            ("GET", "definitions/{}", self.definitions),
            ("POST", "definitions", self.import_definitions),
            ("POST", "definitions/{}", self.import_definitions),
            ("GET", "policies", self.policies),
            ("GET", "policies/{}", self.policies),
            ("GET", "policies/{}/{}", self.policy),
            ("PUT", "policies/{}/{}", self.put_policy),
            ("DELETE", "policies/{}/{}", self.delete_policy),
            ("GET", "health/checks/alarms", self.health_alarms),
            ("GET", "health/checks/local-alarms", self.health_alarms),
            ("GET", "aliveness-test/{}", self.aliveness),
            ("GET", "router/bindings", self.busiest_bindings),
            ("GET", "router/moves", self.list_moves),
            ("DELETE", "router/moves/{}", self.cancel_move),
        ):
            add((method, ("api", *path.split("/")), handler))

    # --- helpers -------------------------------------------------------------------------------

    def _vhost(self, name: str) -> VirtualHost:
        vhost = self.broker.vhosts.get(name)
        if vhost is None:
            raise not_found()
        return vhost

    def _vhosts(self, name: str | None) -> list[VirtualHost]:
        if name is None:
            return list(self.broker.vhosts.values())
        return [self._vhost(name)]

    def _queue(self, vhost_name: str, name: str) -> Queue:
        queue = self._vhost(vhost_name).queues.get(name)
        if queue is None:
            raise not_found()
        return queue

    def _exchange(self, vhost_name: str, name: str) -> Exchange:
        exchange = self._vhost(vhost_name).exchanges.get(exchange_name(name))
        if exchange is None:
            raise not_found()
        return exchange

    def _session(self, name: str) -> Session:
        for session in self.broker.sessions.values():
            if session.name == name:
                return session
        raise not_found()

    @staticmethod
    def _body(request: Request) -> dict[str, Any]:
        if not request.body.strip():
            return {}
        try:
            value = json.loads(request.body)
        except (ValueError, UnicodeDecodeError):
            raise bad_request("not_json") from None
        if not isinstance(value, dict):
            raise bad_request("not_json")
        return value

    @staticmethod
    def _require(body: dict[str, Any], *keys: str) -> None:
        missing = [key for key in keys if key not in body]
        if missing:
            raise bad_request("[" + ",".join(f"{{key_missing,{key}}}" for key in missing) + "]")

    @staticmethod
    def _amqp(error: AMQPError) -> HTTPError:
        if error.reply_code == 403:
            return HTTPError(401, "not_authorised", "Access refused.")
        if error.reply_code == 404:
            return not_found()
        return bad_request(error.text)

    def _listing(self, request: Request, items: list[dict[str, Any]]) -> Response:
        """A list answer with RabbitMQ's filtering, sorting, paging and columns."""
        query = request.query
        total_count = len(items)
        name = query.get("name")
        if name:
            if query.get("use_regex") == "true":
                try:
                    pattern = re.compile(name)
                except re.error as error:
                    raise bad_request(f"invalid regular expression {name!r}: {error}") from None
                items = [item for item in items if pattern.search(str(item.get("name", "")))]
            else:
                items = [item for item in items if name in str(item.get("name", ""))]
        sort = query.get("sort") or "name"  # RabbitMQ lists by name unless told otherwise
        if sort:
            items.sort(
                key=lambda item: _sort_key(_dig(item, sort)),
                reverse=query.get("sort_reverse") == "true",
            )
        columns = query.get("columns")
        page = query.get("page")
        if page is not None:
            try:
                page_no = int(page)
                page_size = int(query.get("page_size", "100"))
            except ValueError:
                raise bad_request("Pagination parameters are invalid") from None
            if page_no < 1 or page_size < 1 or page_size > MAX_PAGE_SIZE:
                raise HTTPError(
                    400,
                    "invalid_pagination_parameters",
                    f"Invalid pagination parameters: page number {page_no}, page size {page_size}",
                )
            total = len(items)
            page_count = max(1, -(-total // page_size))
            if page_no > page_count:
                raise HTTPError(
                    400,
                    "page_out_of_range",
                    f"Page out of range, page: {page_no} page size: {page_size}, len: {total}",
                )
            chunk = items[(page_no - 1) * page_size : page_no * page_size]
            if columns:
                chunk = [_columns(item, columns) for item in chunk]
            return Response.json(
                {
                    "filtered_count": total,
                    "item_count": len(chunk),
                    "items": chunk,
                    "page": page_no,
                    "page_count": page_count,
                    "page_size": page_size,
                    "total_count": total_count,
                }
            )
        if columns:
            items = [_columns(item, columns) for item in items]
        return Response.json(items)

    def _one(self, request: Request, item: dict[str, Any]) -> Response:
        columns = request.query.get("columns")
        return Response.json(_columns(item, columns) if columns else item)

    def _wall(self) -> float:
        return self.broker.clock.wall()

    # --- overview, nodes, health -----------------------------------------------------------------

    def overview(self, request: Request, now: float) -> Response:
        broker = self.broker
        values = sampling.overview_values(broker)
        depth = sampling.queue_totals(broker)
        depth_rates = self.rates.rates("overview_depth", "overview") or [0.0, 0.0, 0.0]
        queues = list(sampling.queues(broker))
        exchanges = sum(len(v.exchanges) for v in broker.vhosts.values())
        channels = sum(len(s.channels) for s in broker.sessions.values())
        consumers = sum(q.consumer_count for q in queues)
        totals = broker.totals
        store = self.store_stats()
        return self._one(
            request,
            {
                "management_version": __version__,
                "rates_mode": "basic",
                "product_name": "router",
                "product_version": __version__,
                "rabbitmq_version": "3.10.8",  # the API level router answers to (rabbitmqadmin checks it)
                "cluster_name": broker.config.cluster_name,
                "node": views.NODE,
                "exchange_types": [
                    {"name": name, "description": "", "enabled": True} for name in EXCHANGE_TYPES
                ],
                "message_stats": details(
                    OVERVIEW_FIELDS, values, self.rates.rates("overview", "overview")
                ),
                "churn_rates": {
                    "connection_created": totals.connections_opened,
                    "connection_closed": totals.connections_closed,
                    "channel_created": totals.channels_opened,
                    "channel_closed": totals.channels_closed,
                    "queue_deleted": totals.queues_deleted,
                },
                "queue_totals": {
                    "messages": depth[0],
                    "messages_details": views.rate(depth_rates[0]),
                    "messages_ready": depth[1],
                    "messages_ready_details": views.rate(depth_rates[1]),
                    "messages_unacknowledged": depth[2],
                    "messages_unacknowledged_details": views.rate(depth_rates[2]),
                    # router's own
                    "messages_scheduled": sum(q.waiting for q in queues),
                },
                "object_totals": {
                    "connections": len(broker.sessions),
                    "channels": channels,
                    "consumers": consumers,
                    "exchanges": exchanges,
                    "queues": len(queues),
                },
                "listeners": self.listeners,
                "alarms": sorted(broker.alarms),
                # router's own
                "dead_lettered": _merge(v.dead_lettered for v in broker.vhosts.values()),
                "store": store,
            },
        )

    def whoami(self, request: Request, now: float) -> Response:
        user = self._authenticate(request)
        return Response.json({"name": user, "tags": list(self.broker.user_tags.get(user, ()))})

    def nodes(self, request: Request, now: float) -> Response:
        return Response.json([self._node()])

    def node(self, request: Request, now: float, name: str) -> Response:
        if name != views.NODE:
            raise not_found()
        return Response.json(self._node())

    def _node(self) -> dict[str, Any]:
        broker = self.broker
        return {
            "name": views.NODE,
            "type": "disc",
            "running": True,
            "mem_alarm": "memory" in broker.alarms,
            "disk_free_alarm": "disk" in broker.alarms,
            "fd_used": len(broker.sessions),
            "sockets_used": len(broker.sessions),
            "proc_used": 1,
        }

    def health_alarms(self, request: Request, now: float) -> Response:
        alarms = sorted(self.broker.alarms)
        if not alarms:
            return Response.json({"status": "ok"})
        return Response.json(
            {
                "status": "failed",
                "reason": "resource alarm(s) in effect in the cluster",
                "alarms": [{"node": views.NODE, "resource": name} for name in alarms],
            },
            503,
        )

    def aliveness(self, request: Request, now: float, vhost_name: str) -> Response:
        """Declare the aliveness-test queue, publish to it and take the message back."""
        vhost = self._vhost(vhost_name)
        queue = vhost.declare_queue("aliveness-test", owner=None)
        queue.publish(Message("", "aliveness-test", b"", b"test_message"))
        entry = queue.get(no_ack=True)
        if entry is None or entry.message.body != b"test_message":
            return Response.json(
                {"status": "failed", "reason": "the test message did not come back"}, 503
            )
        return Response.json({"status": "ok"})

    # --- vhosts, users, permissions --------------------------------------------------------------

    def _vhost_json(self, vhost: VirtualHost) -> dict[str, Any]:
        ready = unacked = 0
        for queue in vhost.queues.values():
            ready += queue.ready_count
            unacked += queue.unacked
        return {
            "name": vhost.name,
            "description": "Default virtual host" if vhost.name == "/" else "",
            "tags": [],
            "tracing": False,
            "cluster_state": {views.NODE: "running"},
            "messages": ready + unacked,
            "messages_ready": ready,
            "messages_unacknowledged": unacked,
            "message_stats": {
                "publish": vhost.published,
                "return_unroutable": vhost.returned,
                "drop_unroutable": vhost.unroutable - vhost.returned,
            },
            "dead_lettered": dict(vhost.dead_lettered),
        }

    def vhosts(self, request: Request, now: float) -> Response:
        return self._listing(request, [self._vhost_json(v) for v in self.broker.vhosts.values()])

    def vhost(self, request: Request, now: float, name: str) -> Response:
        return self._one(request, self._vhost_json(self._vhost(name)))

    def put_vhost(self, request: Request, now: float, name: str) -> Response:
        existed = name in self.broker.vhosts
        self.broker.add_vhost(name)
        if not existed:
            # RabbitMQ: whoever creates a vhost through the API may do everything in it
            user = self._authenticate(request)
            if user in self.broker.users:
                self.broker.set_permissions(user, name, ".*", ".*", ".*")
        return Response(204 if existed else 201)

    def delete_vhost(self, request: Request, now: float, name: str) -> Response:
        """Everything in it goes; its connections are closed with 320, as RabbitMQ does."""
        self._vhost(name)
        self.broker.delete_vhost(name)
        return Response(204)

    def vhost_connections(self, request: Request, now: float, name: str) -> Response:
        self._vhost(name)
        return self._listing(
            request,
            [
                views.connection_json(s, self.rates)
                for s in self.broker.sessions.values()
                if s.conn.virtual_host == name
            ],
        )

    def vhost_channels(self, request: Request, now: float, name: str) -> Response:
        self._vhost(name)
        return self._listing(
            request,
            [
                views.channel_json(c, self.rates)
                for c in sampling.channels(self.broker)
                if c.session.conn.virtual_host == name
            ],
        )

    def _user_json(self, name: str) -> dict[str, Any]:
        return {
            "name": name,
            "password_hash": self.broker.users[name],
            "hashing_algorithm": "rabbit_password_hashing_sha256",
            "tags": list(self.broker.user_tags.get(name, ())),
            "limits": {},
        }

    def users(self, request: Request, now: float) -> Response:
        return self._listing(request, [self._user_json(name) for name in sorted(self.broker.users)])

    def user(self, request: Request, now: float, name: str) -> Response:
        if name not in self.broker.users:
            raise not_found()
        return self._one(request, self._user_json(name))

    def put_user(self, request: Request, now: float, name: str) -> Response:
        body = self._body(request)
        existed = name in self.broker.users
        password, password_hash = body.get("password"), body.get("password_hash")
        if password is not None and not isinstance(password, str):
            raise bad_request("password must be a string")
        if password_hash is not None and not isinstance(password_hash, str):
            raise bad_request("password_hash must be a string (RabbitMQ's salted SHA-256, base64)")
        tags = parse_tags(body.get("tags"))
        if password is not None:
            self.broker.set_user(name, password, tags=tags)
        elif password_hash is not None:
            self.broker.set_user(name, password_hash=password_hash, tags=tags)
        elif not existed:
            raise bad_request("a new user needs a password or a password_hash")
        elif tags is not None:  # the password stays as it was
            self.broker.set_user(name, password_hash=self.broker.users[name], tags=tags)
        return Response(204 if existed else 201)

    def delete_user(self, request: Request, now: float, name: str) -> Response:
        """The user and its permissions go; its connections are closed with 320 (RabbitMQ)."""
        if name not in self.broker.users:
            raise not_found()
        self.broker.delete_user(name)
        return Response(204)

    def _permissions(
        self, user: str | None = None, vhost: str | None = None
    ) -> list[dict[str, Any]]:
        return [
            views.permission_json(u, v, permission)
            for (u, v), permission in sorted(self.broker.permissions.items())
            if (user is None or u == user) and (vhost is None or v == vhost)
        ]

    def permissions(self, request: Request, now: float) -> Response:
        return self._listing(request, self._permissions())

    def user_permissions(self, request: Request, now: float, name: str) -> Response:
        if name not in self.broker.users:
            raise not_found()
        return self._listing(request, self._permissions(user=name))

    def vhost_permissions(self, request: Request, now: float, name: str) -> Response:
        self._vhost(name)
        return self._listing(request, self._permissions(vhost=name))

    def permission(self, request: Request, now: float, vhost: str, user: str) -> Response:
        permission = self.broker.permissions.get((user, vhost))
        if permission is None:
            raise not_found()
        return self._one(request, views.permission_json(user, vhost, permission))

    def put_permission(self, request: Request, now: float, vhost: str, user: str) -> Response:
        """RabbitMQ's body: {"configure", "write", "read"}, each a regular expression."""
        body = self._body(request)
        self._require(body, "configure", "write", "read")
        if vhost not in self.broker.vhosts or user not in self.broker.users:
            raise bad_request("vhost_or_user_not_found")
        existed = (user, vhost) in self.broker.permissions
        try:
            self.broker.set_permissions(user, vhost, body["configure"], body["write"], body["read"])
        except ValueError as error:
            raise bad_request(str(error)) from None
        return Response(204 if existed else 201)

    def delete_permission(self, request: Request, now: float, vhost: str, user: str) -> Response:
        if not self.broker.clear_permissions(user, vhost):
            raise not_found()
        return Response(204)

    # --- connections, channels, consumers --------------------------------------------------------

    def connections(self, request: Request, now: float) -> Response:
        return self._listing(
            request, [views.connection_json(s, self.rates) for s in self.broker.sessions.values()]
        )

    def connection(self, request: Request, now: float, name: str) -> Response:
        return self._one(request, views.connection_json(self._session(name), self.rates))

    def delete_connection(self, request: Request, now: float, name: str) -> Response:
        session = self._session(name)
        reason = request.headers.get("x-reason", "Closed via management plugin")
        session.close(AMQPConnectionError(CONNECTION_FORCED, reason))
        session.wakeup()
        return Response(204)

    def connection_channels(self, request: Request, now: float, name: str) -> Response:
        session = self._session(name)
        return self._listing(
            request, [views.channel_json(c, self.rates) for c in session.channels.values()]
        )

    def channels(self, request: Request, now: float) -> Response:
        return self._listing(
            request, [views.channel_json(c, self.rates) for c in sampling.channels(self.broker)]
        )

    def channel(self, request: Request, now: float, name: str) -> Response:
        for channel in sampling.channels(self.broker):
            if views.channel_name(channel) == name:
                return self._one(request, views.channel_json(channel, self.rates, detail=True))
        raise not_found()

    def consumers(self, request: Request, now: float, vhost_name: str | None = None) -> Response:
        result: list[dict[str, Any]] = []
        for vhost in self._vhosts(vhost_name):
            for queue in vhost.queues.values():
                result.extend(views.consumer_json(c) for c in queue.consumers())
        return Response.json(result)

    # --- exchanges ---------------------------------------------------------------------------------

    def exchanges(self, request: Request, now: float, vhost_name: str | None = None) -> Response:
        return self._listing(
            request,
            [
                views.exchange_json(x, v.name, self.rates)
                for v in self._vhosts(vhost_name)
                for x in v.exchanges.values()
            ],
        )

    def exchange(self, request: Request, now: float, vhost_name: str, name: str) -> Response:
        exchange = self._exchange(vhost_name, name)
        return self._one(request, views.exchange_json(exchange, vhost_name, self.rates))

    def put_exchange(self, request: Request, now: float, vhost_name: str, name: str) -> Response:
        vhost = self._vhost(vhost_name)
        name = exchange_name(name)
        body = self._body(request)
        if name == "" or name.startswith("amq."):
            raise HTTPError(401, "not_authorised", "Access refused.")
        existed = name in vhost.exchanges
        try:
            _declare_exchange(vhost, name, body, durable=False)  # RabbitMQ's PUT default
        except AMQPError as error:
            raise self._amqp(error) from None
        return Response(204 if existed else 201)

    def delete_exchange(self, request: Request, now: float, vhost_name: str, name: str) -> Response:
        vhost = self._vhost(vhost_name)
        self._exchange(vhost_name, name)
        name = exchange_name(name)
        if name == "" or name.startswith("amq."):
            raise HTTPError(401, "not_authorised", "Access refused.")
        try:
            vhost.delete_exchange(name, if_unused=request.query.get("if-unused") == "true")
        except AMQPError as error:
            raise self._amqp(error) from None
        return Response(204)

    def exchange_source_bindings(
        self, request: Request, now: float, vhost_name: str, name: str
    ) -> Response:
        exchange = self._exchange(vhost_name, name)
        if exchange.name == "":
            return Response.json(
                views.default_bindings(list(self._vhost(vhost_name).queues.values()), vhost_name)
            )
        return Response.json(
            [views.binding_json(b, vhost_name, self.rates) for b in exchange.bindings.values()]
        )

    def exchange_destination_bindings(
        self, request: Request, now: float, vhost_name: str, name: str
    ) -> Response:
        exchange = self._exchange(vhost_name, name)
        return Response.json(
            [
                views.binding_json(b, vhost_name, self.rates)
                for b in self._vhost(vhost_name).bindings()
                if b.destination is exchange
            ]
        )

    def publish(self, request: Request, now: float, vhost_name: str, name: str) -> Response:
        """Publish one message. A queue that refuses it (full, x-overflow reject-publish)
        answers 503 with Retry-After, so scripts can back off."""
        vhost = self._vhost(vhost_name)
        name = exchange_name(name)
        exchange = vhost.exchanges.get(name)
        if exchange is None:  # RabbitMQ: 400, with the AMQP error as the reason
            raise bad_request(f"404 NOT_FOUND - no exchange '{name}' in vhost '{vhost_name}'")
        body = self._body(request)
        self._require(body, "properties", "routing_key", "payload", "payload_encoding")
        encoding = body["payload_encoding"]
        payload = body["payload"]
        if not isinstance(payload, str):
            raise bad_request("payload must be a string")
        if encoding == "string":
            data = payload.encode("utf-8")
        elif encoding == "base64":
            try:
                data = base64.b64decode(payload, validate=True)
            except binascii.Error:
                raise bad_request("payload is not valid base64") from None
        else:
            raise bad_request(f"payload_encoding must be 'string' or 'base64', not {encoding!r}")
        try:
            properties = views.properties_from_json(body["properties"])
        except ValueError as error:
            raise bad_request(str(error)) from None
        try:
            raw = properties.encode()
        except (ValueError, OverflowError, struct.error, AMQPError) as error:
            raise bad_request(f"properties cannot be encoded: {error}") from None
        delivery_mode, priority, expiration, headers = scan_full(raw)
        due_at = None
        if exchange.TYPE == "x-delayed-message" and headers is not None:
            delay = headers.get("x-delay")
            if isinstance(delay, int) and not isinstance(delay, bool) and delay > 0:
                due_at = self.broker.clock.now + delay / 1000
        routing_key = str(body["routing_key"])
        if len(routing_key.encode("utf-8")) > 255:
            raise bad_request("routing_key is longer than 255 bytes")
        try:
            message = Message(
                name,
                routing_key,
                raw,
                data,
                delivery_mode,
                priority,
                expiration,
                headers=headers,
                due_at=due_at,
            )
        except AMQPError as error:  # as RabbitMQ words it: "406 PRECONDITION_FAILED - ..."
            raise bad_request(f"{error.reply_code} {error.reply_text}") from None
        queues = vhost.route(exchange, message)
        vhost.published += 1
        if not queues:
            vhost.unroutable += 1
            return Response.json({"routed": False})
        refused = [queue.name for queue in queues if not queue.publish(message)]
        if refused:
            return Response.json(
                {
                    "error": "queue_full",
                    "reason": f"queue {', '.join(repr(n) for n in refused)} in vhost "
                    f"'{vhost_name}' is full and refuses new messages (x-overflow "
                    "reject-publish); retry once consumers have taken some",
                    "routed": True,
                },
                503,
                (("retry-after", "1"),),
            )
        return Response.json({"routed": True})

    # --- queues ------------------------------------------------------------------------------------

    def queues(self, request: Request, now: float, vhost_name: str | None = None) -> Response:
        wall = self._wall()
        return self._listing(
            request,
            [
                views.queue_json(q, self.rates, wall)
                for v in self._vhosts(vhost_name)
                for q in v.queues.values()
            ],
        )

    def queue(self, request: Request, now: float, vhost_name: str, name: str) -> Response:
        queue = self._queue(vhost_name, name)
        return self._one(request, views.queue_json(queue, self.rates, self._wall(), detail=True))

    def put_queue(self, request: Request, now: float, vhost_name: str, name: str) -> Response:
        vhost = self._vhost(vhost_name)
        body = self._body(request)
        existed = name in vhost.queues
        try:
            _declare_queue(vhost, name, body, durable=False)  # RabbitMQ's PUT default
        except AMQPError as error:
            raise self._amqp(error) from None
        return Response(204 if existed else 201)

    def delete_queue(self, request: Request, now: float, vhost_name: str, name: str) -> Response:
        vhost = self._vhost(vhost_name)
        queue = self._queue(vhost_name, name)
        query = request.query
        try:
            vhost.delete_queue(
                name,
                owner=queue.exclusive_owner,
                if_unused=query.get("if-unused") == "true",
                if_empty=query.get("if-empty") == "true",
            )
        except AMQPError as error:
            raise self._amqp(error) from None
        return Response(204)

    def purge_queue(self, request: Request, now: float, vhost_name: str, name: str) -> Response:
        self._queue(vhost_name, name).purge()
        return Response(204)

    def get_messages(self, request: Request, now: float, vhost_name: str, name: str) -> Response:
        """RabbitMQ's /get: takes messages like basic.get, then acks, requeues or rejects them
        as ``ackmode`` says (requeued ones come back marked redelivered)."""
        queue = self._queue(vhost_name, name)
        body = self._body(request)
        self._require(body, "count", "ackmode", "encoding")
        ackmode = body["ackmode"]
        modes = (
            "ack_requeue_true",
            "ack_requeue_false",
            "reject_requeue_true",
            "reject_requeue_false",
        )
        if ackmode not in modes:
            raise bad_request(f"ackmode must be one of {', '.join(modes)}, not {ackmode!r}")
        encoding = body["encoding"]
        if encoding not in ("auto", "base64"):
            raise bad_request(f"encoding must be 'auto' or 'base64', not {encoding!r}")
        count = integer(body, "count")
        truncate = integer(body, "truncate")
        if count is None or count < 1:
            raise bad_request("count must be a positive integer")
        if truncate is not None and truncate < 0:
            raise bad_request("truncate must be a non-negative integer")
        taken = []
        result = []
        for _ in range(count):
            entry = queue.get(no_ack=False)
            if entry is None:
                break
            taken.append(entry)
            properties = decode_properties(entry.message.properties)
            result.append(
                views.message_json(
                    entry,
                    properties,
                    encoding=encoding,
                    truncate=truncate,
                    message_count=queue.ready_count,
                )
            )
        if ackmode == "ack_requeue_false":
            for entry in taken:
                queue.ack(entry)
        elif ackmode == "reject_requeue_false":
            queue.reject(taken)
        else:
            queue.requeue(taken)
        queue.dispatch()
        return Response.json(result)

    def queue_bindings(self, request: Request, now: float, vhost_name: str, name: str) -> Response:
        vhost = self._vhost(vhost_name)
        queue = self._queue(vhost_name, name)
        return Response.json(
            views.default_bindings([queue], vhost_name)
            + [
                views.binding_json(b, vhost_name, self.rates)
                for b in vhost.bindings()
                if b.destination is queue
            ]
        )

    def browse(self, request: Request, now: float, vhost_name: str, name: str) -> Response:
        """router's own: the ready messages in delivery order, without taking them (nothing
        is marked redelivered). ``offset`` and ``count`` page through them."""
        queue = self._queue(vhost_name, name)
        query = request.query
        try:
            offset = int(query.get("offset", "0"))
            count = int(query.get("count", "50"))
            truncate = int(query["truncate"]) if "truncate" in query else None
        except ValueError:
            raise bad_request("offset, count and truncate must be integers") from None
        if offset < 0 or count < 0 or count > MAX_PAGE_SIZE:
            raise bad_request(f"offset must be >= 0 and count between 0 and {MAX_PAGE_SIZE}")
        encoding = query.get("encoding", "auto")
        ready = queue.ready_messages()
        items = []
        store = self._vhost(vhost_name).store
        for position, entry in enumerate(ready[offset : offset + count], start=offset):
            message = entry.message
            if message.paged and store is not None:
                message = store.load(queue, entry)  # read back, not kept: browsing holds nothing
            item = views.message_json(
                entry,
                decode_properties(message.properties),
                encoding=encoding,
                truncate=truncate,
                message=message,
            )
            item["position"] = position
            item["delivery_count"] = entry.delivery_count
            items.append(item)
        return Response.json({"total": len(ready), "offset": offset, "items": items})

    def start_move(self, request: Request, now: float, vhost_name: str, name: str) -> Response:
        """router's own: move ready messages to another queue of the vhost (a DLQ redrive),
        at most ``rate`` a second, ``count`` of them (all by default)."""
        source = self._queue(vhost_name, name)
        body = self._body(request)
        self._require(body, "destination")
        destination = self._vhost(vhost_name).queues.get(str(body["destination"]))
        if destination is None:
            raise bad_request(
                f"no queue '{body['destination']}' in vhost '{vhost_name}' to move messages to; "
                "declare it first"
            )
        if destination is source:
            raise bad_request("the destination is the source queue; name another queue")
        rate = body.get("rate")
        if rate is not None and (
            isinstance(rate, bool) or not isinstance(rate, (int, float)) or rate <= 0
        ):
            raise bad_request("rate must be a positive number of messages a second (or left out)")
        count = body.get("count")
        if count is not None and (
            isinstance(count, bool) or not isinstance(count, int) or count <= 0
        ):
            raise bad_request("count must be a positive integer (or left out to move them all)")
        self._move_ids += 1
        move = Move(self._move_ids, source, destination, rate=rate, count=count, now=now)
        self.moves[move.id] = move
        move.step(now)
        return Response.json(move.json(), 201, (("location", f"/api/router/moves/{move.id}"),))

    def list_moves(self, request: Request, now: float) -> Response:
        return Response.json([move.json() for move in self.moves.values()])

    def cancel_move(self, request: Request, now: float, ident: str) -> Response:
        move = self.moves.get(int(ident)) if ident.isdigit() else None
        if move is None:
            raise not_found()
        move.cancel()
        return Response(204)

    def scheduled(self, request: Request, now: float, vhost_name: str, name: str) -> Response:
        """router's own: scheduled (x-delay, x-deliver-at) and backed-off messages."""
        queue = self._queue(vhost_name, name)
        wall = self.broker.clock.wall_offset
        items = []
        for deadline, entry in queue.waiting_messages()[:MAX_PAGE_SIZE]:
            item = views.message_json(
                entry, decode_properties(entry.message.properties), encoding="auto", truncate=256
            )
            item["id"] = entry.seq
            item["due_at"] = views.iso_time(deadline + wall)
            item["due_in"] = round(max(0.0, deadline - self.broker.clock.now), 3)
            item["delivery_count"] = entry.delivery_count
            items.append(item)
        return Response.json({"total": queue.waiting, "items": items})

    def cancel_scheduled(
        self, request: Request, now: float, vhost_name: str, name: str, ident: str
    ) -> Response:
        queue = self._queue(vhost_name, name)
        if not ident.isdigit() or not queue.cancel_waiting(int(ident)):
            raise not_found(f"no scheduled message {ident} in queue '{name}'")
        return Response(204)

    # --- bindings ----------------------------------------------------------------------------------

    def bindings(self, request: Request, now: float, vhost_name: str | None = None) -> Response:
        result = []
        for vhost in self._vhosts(vhost_name):
            result.extend(views.default_bindings(list(vhost.queues.values()), vhost.name))
            result.extend(views.binding_json(b, vhost.name, self.rates) for b in vhost.bindings())
        return self._listing(request, result)

    def busiest_bindings(self, request: Request, now: float) -> Response:
        """router's own: bindings that matched, busiest first (the dashboard's routing panel)."""
        try:
            limit = int(request.query.get("limit", "50"))
        except ValueError:
            raise bad_request("limit must be an integer") from None
        found = []
        for vhost_name, binding in sampling.bindings(self.broker):
            if binding.matched:
                item = views.binding_json(binding, vhost_name, self.rates)
                found.append(item)
        found.sort(key=lambda b: (b["matched_details"]["rate"], b["matched"]), reverse=True)
        return Response.json(found[:limit])

    def _pair(
        self, vhost_name: str, source: str, destination: str, kind: str
    ) -> tuple[VirtualHost, Exchange, Queue | Exchange]:
        vhost = self._vhost(vhost_name)
        exchange = self._exchange(vhost_name, source)
        target: Queue | Exchange
        target = (
            self._queue(vhost_name, destination)
            if kind == "q"
            else self._exchange(vhost_name, destination)
        )
        return vhost, exchange, target

    def _between(self, vhost_name: str, source: str, destination: str, kind: str) -> list[Binding]:
        _vhost, exchange, target = self._pair(vhost_name, source, destination, kind)
        return [b for b in exchange.bindings.values() if b.destination is target]

    def binding_list_queue(self, request: Request, now: float, v: str, s: str, d: str) -> Response:
        return self._binding_list(v, s, d, "q")

    def binding_list_exchange(
        self, request: Request, now: float, v: str, s: str, d: str
    ) -> Response:
        return self._binding_list(v, s, d, "e")

    def _binding_list(self, v: str, s: str, d: str, kind: str) -> Response:
        found = [views.binding_json(b, v, self.rates) for b in self._between(v, s, d, kind)]
        if exchange_name(s) == "" and kind == "q":
            found = views.default_bindings([self._queue(v, d)], v)
        return Response.json(found)

    def _find(self, v: str, s: str, d: str, kind: str, props: str) -> Binding:
        for binding in self._between(v, s, d, kind):
            if views.properties_key(binding) == props or (
                not binding.arguments and binding.routing_key == props
            ):
                return binding
        raise not_found()

    def binding_queue(
        self, request: Request, now: float, v: str, s: str, d: str, p: str
    ) -> Response:
        return Response.json(views.binding_json(self._find(v, s, d, "q", p), v, self.rates))

    def binding_exchange(
        self, request: Request, now: float, v: str, s: str, d: str, p: str
    ) -> Response:
        return Response.json(views.binding_json(self._find(v, s, d, "e", p), v, self.rates))

    def post_binding_queue(self, request: Request, now: float, v: str, s: str, d: str) -> Response:
        return self._post_binding(request, v, s, d, "q")

    def post_binding_exchange(
        self, request: Request, now: float, v: str, s: str, d: str
    ) -> Response:
        return self._post_binding(request, v, s, d, "e")

    def _post_binding(self, request: Request, v: str, s: str, d: str, kind: str) -> Response:
        vhost, _exchange, target = self._pair(v, s, d, kind)
        body = self._body(request)
        routing_key = str(body.get("routing_key", ""))
        try:
            arguments = views.arguments_from_json(body.get("arguments"))
            vhost.bind(exchange_name(s), target, routing_key, arguments)
        except ValueError as error:
            raise bad_request(str(error)) from None
        except AMQPError as error:
            raise self._amqp(error) from None
        for binding in self._between(v, s, d, kind):
            if binding.routing_key == routing_key and binding.arguments == arguments:
                location = f"{quote(d, safe='')}/{quote(views.properties_key(binding), safe='')}"
                return Response(201, (("location", location),))
        return Response(201)

    def delete_binding_queue(
        self, request: Request, now: float, v: str, s: str, d: str, p: str
    ) -> Response:
        return self._delete_binding(v, s, d, "q", p)

    def delete_binding_exchange(
        self, request: Request, now: float, v: str, s: str, d: str, p: str
    ) -> Response:
        return self._delete_binding(v, s, d, "e", p)

    def _delete_binding(self, v: str, s: str, d: str, kind: str, props: str) -> Response:
        binding = self._find(v, s, d, kind, props)
        try:
            self._vhost(v).unbind(
                binding.source.name, binding.destination, binding.routing_key, binding.arguments
            )
        except AMQPError as error:
            raise self._amqp(error) from None
        return Response(204)

    # --- definitions, policies ---------------------------------------------------------------------

    def definitions(self, request: Request, now: float, vhost_name: str | None = None) -> Response:
        vhosts = self._vhosts(vhost_name)
        result: dict[str, Any] = {
            "rabbit_version": "3.10.8",
            "rabbitmq_version": "3.10.8",
            "product_name": "router",
            "product_version": __version__,
        }
        if vhost_name is None:
            result["users"] = [self._user_json(n) for n in sorted(self.broker.users)]
            result["vhosts"] = [{"name": v.name} for v in vhosts]
            result["permissions"] = self._permissions()
            result["topic_permissions"] = []
            result["parameters"] = []
            result["global_parameters"] = []
        # RabbitMQ keeps each policy's "vhost", even in one vhost's export
        result["policies"] = [
            views.policy_json(p) for v in vhosts for p in sorted(v.policies.values(), key=_name)
        ]
        queues = []
        exchanges = []
        bindings = []
        for vhost in vhosts:
            for queue in vhost.queues.values():
                if queue.exclusive:
                    continue
                item = {
                    "name": queue.name,
                    "vhost": vhost.name,
                    "durable": queue.durable,
                    "auto_delete": queue.auto_delete,
                    "arguments": to_json(queue.arguments),
                }
                queues.append(item)
            for exchange in vhost.exchanges.values():
                if exchange.name == "" or exchange.name.startswith("amq."):
                    continue
                exchanges.append(
                    {
                        "name": exchange.name,
                        "vhost": vhost.name,
                        "type": exchange.TYPE,
                        "durable": exchange.durable,
                        "auto_delete": exchange.auto_delete,
                        "internal": exchange.internal,
                        "arguments": to_json(exchange.arguments),
                    }
                )
            for binding in vhost.bindings():
                destination = binding.destination
                if isinstance(destination, Queue) and destination.exclusive:
                    continue
                bindings.append(
                    {
                        "source": binding.source.name,
                        "vhost": vhost.name,
                        "destination": destination.name,
                        "destination_type": "exchange"
                        if isinstance(destination, Exchange)
                        else "queue",
                        "routing_key": binding.routing_key,
                        "arguments": to_json(binding.arguments),
                    }
                )
        if vhost_name is not None:
            for item in (*queues, *exchanges, *bindings):
                item.pop("vhost", None)
        result["queues"] = queues
        result["exchanges"] = exchanges
        result["bindings"] = bindings
        return Response.json(result)

    def import_definitions(
        self, request: Request, now: float, vhost_name: str | None = None
    ) -> Response:
        """Import RabbitMQ definitions: vhosts, users (with tags), permissions, policies,
        exchanges, queues, bindings, additively (as RabbitMQ does). Every item is checked
        first; nothing is applied if any is wrong."""
        body = self._body(request)
        broker = self.broker
        problems: list[str] = []
        for section in DEFINITION_SECTIONS:
            value = body.get(section, [])
            if not isinstance(value, list) or not all(isinstance(i, dict) for i in value):
                problems.append(f"'{section}' must be a list of objects")
        if problems:
            raise bad_request("; ".join(problems))
        problems.extend(self._check_definitions(body, vhost_name))
        if problems:
            raise bad_request("; ".join(problems))
        try:
            for item in body.get("vhosts", []):
                broker.add_vhost(str(item["name"]))
            for item in body.get("users", []):
                tags = parse_tags(item.get("tags"))
                if "password_hash" in item:
                    broker.set_user(
                        str(item["name"]), password_hash=str(item["password_hash"]), tags=tags
                    )
                elif "password" in item:
                    broker.set_user(str(item["name"]), str(item["password"]), tags=tags)
            for item in body.get("permissions", []):
                broker.set_permissions(
                    str(item["user"]),
                    _item_vhost(item, vhost_name),
                    item["configure"],
                    item["write"],
                    item["read"],
                )
            for item in body.get("policies", []):
                policy_vhost = _item_vhost(item, vhost_name)
                broker.set_policy(_policy_from_json(item, policy_vhost, str(item["name"])))
            for item in body.get("exchanges", []):
                vhost = broker.vhosts[_item_vhost(item, vhost_name)]
                _declare_exchange(vhost, str(item["name"]), item, durable=True)
            for item in body.get("queues", []):
                vhost = broker.vhosts[_item_vhost(item, vhost_name)]
                _declare_queue(vhost, str(item["name"]), item, durable=True)
            for item in body.get("bindings", []):
                vhost = broker.vhosts[_item_vhost(item, vhost_name)]
                arguments = views.arguments_from_json(item.get("arguments"))
                key = str(item.get("routing_key", ""))
                if item.get("destination_type") == "exchange":
                    vhost.bind_exchange(
                        str(item["source"]), str(item["destination"]), key, arguments
                    )
                else:
                    vhost.bind_queue(
                        str(item["source"]), str(item["destination"]), key, arguments, None
                    )
        except (KeyError, ValueError) as error:
            raise bad_request(f"definitions: {error}") from None
        except (AMQPError, HTTPError) as error:
            raise bad_request(_reason(error)) from None
        return Response(204)

    def _check_definitions(self, body: dict[str, Any], vhost_name: str | None) -> list[str]:
        """Everything that would make an import fail part way, found before anything is
        applied: unknown vhosts and types, bad arguments, objects that exist with other
        settings, bindings between things that will not exist."""
        broker = self.broker
        problems: list[str] = []

        def where(item: dict[str, Any]) -> str:
            return _item_vhost(item, vhost_name)

        new_vhosts = {str(v.get("name")) for v in body.get("vhosts", [])}
        new_users: set[str] = set()
        exchanges: set[tuple[str, str]] = set()  # what the document declares
        queues: set[tuple[str, str]] = set()
        for kind in ("exchanges", "queues", "bindings", "policies", "permissions"):
            for item in body.get(kind, []):
                if where(item) not in broker.vhosts and where(item) not in new_vhosts:
                    name = item.get("name", item.get("source", item.get("user", "")))
                    problems.append(
                        f"{kind[:-1]} {name!r}: no vhost {where(item)!r}; declare it under 'vhosts'"
                    )
        for item in body.get("users", []):
            name = item.get("name")
            if not isinstance(name, str) or not name:
                problems.append(f"user {name!r}: a user needs a name")
                continue
            new_users.add(name)
            try:
                parse_tags(item.get("tags"))
            except HTTPError as error:
                problems.append(f"user {name!r}: {error.reason}")
            if not isinstance(item.get("password_hash", item.get("password", "")), str):
                problems.append(f"user {name!r}: password_hash must be a string")
        for item in body.get("permissions", []):
            user, vhost = item.get("user"), where(item)
            if user not in broker.users and user not in new_users:
                problems.append(
                    f"permission of {user!r} on vhost {vhost!r}: no user {user!r}; declare it "
                    f"under 'users'"
                )
            missing = [key for key in ("configure", "write", "read") if key not in item]
            if missing:
                problems.append(
                    f"permission of {user!r} on vhost {vhost!r}: missing {', '.join(missing)}"
                )
                continue
            try:
                Permission(item["configure"], item["write"], item["read"])
            except ValueError as error:
                problems.append(f"permission of {user!r} on vhost {vhost!r}: {error}")
        for item in body.get("policies", []):
            name, vhost = str(item.get("name", "")), where(item)
            missing = [key for key in ("name", "pattern", "definition") if key not in item]
            if missing:
                problems.append(f"policy {name!r} in vhost {vhost!r}: missing {', '.join(missing)}")
                continue
            try:
                validate_policy(_policy_from_json(item, vhost, name))
            except ValueError as error:
                problems.append(str(error))
        for item in body.get("exchanges", []):
            name, vhost = str(item.get("name", "")), where(item)
            exchanges.add((vhost, name))
            try:
                existing = broker.vhosts.get(vhost)
                if existing is not None and name in existing.exchanges:
                    # equivalent or not, declaring an existing exchange changes nothing
                    _declare_exchange(existing, name, item, durable=True)
                    continue
                if item.get("type") not in EXCHANGE_TYPES:
                    raise bad_request(
                        f"unknown type {item.get('type')!r} (known: {', '.join(EXCHANGE_TYPES)})"
                    )
                if not name or name.startswith("amq."):
                    raise bad_request("the names '' and amq.* are reserved")
                validate_exchange_arguments(
                    views.arguments_from_json(item.get("arguments")), name, vhost
                )
            except (ValueError, AMQPError, HTTPError) as error:
                problems.append(f"exchange {name!r} in vhost {vhost!r}: {_reason(error)}")
        for item in body.get("queues", []):
            name, vhost = str(item.get("name", "")), where(item)
            queues.add((vhost, name))
            try:
                existing = broker.vhosts.get(vhost)
                if existing is not None and name in existing.queues:
                    owner = existing.queues[name].exclusive_owner
                    _declare_queue(existing, name, item, durable=True, owner=owner)
                    continue
                if not name or name.startswith("amq."):
                    raise bad_request("queue names starting with amq. are reserved")
                validate_queue_arguments(
                    views.arguments_from_json(item.get("arguments")), name, vhost
                )
            except (ValueError, AMQPError, HTTPError) as error:
                problems.append(f"queue {name!r} in vhost {vhost!r}: {_reason(error)}")
        for item in body.get("bindings", []):
            vhost = where(item)
            source, destination = str(item.get("source", "")), str(item.get("destination", ""))
            known = broker.vhosts.get(vhost)
            if not source:
                problems.append(
                    f"binding to {destination!r}: the default exchange takes no bindings"
                )
                continue
            if (vhost, source) not in exchanges and (
                known is None or source not in known.exchanges
            ):
                problems.append(
                    f"binding {source!r} -> {destination!r} in vhost {vhost!r}: no exchange "
                    f"{source!r}; declare it under 'exchanges'"
                )
            if item.get("destination_type") == "exchange":
                if (vhost, destination) not in exchanges and (
                    known is None or destination not in known.exchanges
                ):
                    problems.append(
                        f"binding {source!r} -> {destination!r} in vhost {vhost!r}: no exchange "
                        f"{destination!r}; declare it under 'exchanges'"
                    )
            elif (vhost, destination) not in queues and (
                known is None or destination not in known.queues
            ):
                problems.append(
                    f"binding {source!r} -> {destination!r} in vhost {vhost!r}: no queue "
                    f"{destination!r}; declare it under 'queues'"
                )
            try:
                views.arguments_from_json(item.get("arguments"))
            except ValueError as error:
                problems.append(f"binding {source!r} -> {destination!r}: {error}")
        return problems

    def _policies(self, vhost_name: str | None) -> list[Policy]:
        return [p for v in self._vhosts(vhost_name) for p in v.policies.values()]

    def policies(self, request: Request, now: float, vhost_name: str | None = None) -> Response:
        return self._listing(
            request, [_policy_item(policy) for policy in self._policies(vhost_name)]
        )

    def policy(self, request: Request, now: float, vhost_name: str, name: str) -> Response:
        policy = self._vhost(vhost_name).policies.get(name)
        if policy is None:
            raise not_found()
        return self._one(request, _policy_item(policy))

    def put_policy(self, request: Request, now: float, vhost_name: str, name: str) -> Response:
        """RabbitMQ's body: {"pattern", "definition", "priority", "apply-to"}; the policy
        applies at once to the queues and exchanges it matches."""
        if vhost_name not in self.broker.vhosts:
            raise HTTPError(404, "not_found", "vhost_not_found")
        body = self._body(request)
        self._require(body, "pattern", "definition")
        existed = name in self.broker.vhosts[vhost_name].policies
        try:
            self.broker.set_policy(_policy_from_json(body, vhost_name, name))
        except ValueError as error:
            raise bad_request(str(error)) from None
        return Response(204 if existed else 201)

    def delete_policy(self, request: Request, now: float, vhost_name: str, name: str) -> Response:
        self._vhost(vhost_name)
        if not self.broker.clear_policy(vhost_name, name):
            raise not_found()
        return Response(204)


def parse_tags(value: Any) -> tuple[str, ...] | None:
    """A user's tags from JSON, as RabbitMQ takes them: a comma-separated string ("a, b") or a
    list of strings; None when absent (the tags stay as they are)."""
    if value is None:
        return None
    if isinstance(value, str):
        return tuple(tag.strip() for tag in value.split(",") if tag.strip())
    if isinstance(value, list) and all(isinstance(tag, str) for tag in value):
        return tuple(tag.strip() for tag in value if tag.strip())
    raise bad_request(
        f'tags must be a comma-separated string or a list of strings (e.g. "administrator" '
        f'or ["management", "policymaker"]), not {value!r}'
    )


def _policy_item(policy: Policy) -> dict[str, Any]:
    """A policy in the API: RabbitMQ's fields, and router's own ``ignored_keys`` when it has
    definition keys accepted for compatibility that have no effect here."""
    item = views.policy_json(policy)
    if policy.ignored:  # only then, so the answer is RabbitMQ's otherwise
        item["ignored_keys"] = list(policy.ignored)
    return item


def _policy_from_json(body: dict[str, Any], vhost: str, name: str) -> Policy:
    """A Policy from RabbitMQ's JSON (PUT body or definitions item). ValueError if malformed."""
    priority = body.get("priority", 0)
    if isinstance(priority, bool) or not isinstance(priority, int):
        raise ValueError(
            f"policy '{name}' in vhost '{vhost}': priority must be an integer, not {priority!r}"
        )
    definition = body.get("definition")
    if not isinstance(definition, dict):
        raise ValueError(
            f"policy '{name}' in vhost '{vhost}': definition must be a JSON object, e.g. "
            f'{{"message-ttl": 60000}}, not {definition!r}'
        )
    return Policy(
        vhost,
        name,
        body.get("pattern"),  # type: ignore[arg-type]  # validate_policy says if not a string
        body.get("apply-to", "all"),
        priority,
        definition,
    )


DEFINITION_SECTIONS = (
    "vhosts",
    "users",
    "permissions",
    "policies",
    "exchanges",
    "queues",
    "bindings",
)


def _name(policy: Policy) -> str:
    return policy.name


def _item_vhost(item: dict[str, Any], vhost_name: str | None) -> str:
    """The vhost of a definitions item: the one in the path, else the item's own ("/")."""
    return vhost_name if vhost_name is not None else str(item.get("vhost", "/"))


def _reason(error: Exception) -> str:
    if isinstance(error, HTTPError):
        return error.reason
    if isinstance(error, AMQPError):
        return error.text
    return str(error)


def _declare_exchange(
    vhost: VirtualHost, name: str, fields: dict[str, Any], *, durable: bool
) -> None:
    """exchange.declare from a PUT body or a definitions item (``durable``: its default).
    Raises HTTPError 400 for a malformed field, AMQPError as the declare does."""
    try:
        arguments = views.arguments_from_json(fields.get("arguments"))
    except ValueError as error:
        raise bad_request(str(error)) from None
    vhost.declare_exchange(
        name,
        str(fields.get("type", "direct")),  # RabbitMQ's default type
        durable=flag(fields, "durable", durable),
        auto_delete=flag(fields, "auto_delete", False),
        internal=flag(fields, "internal", False),
        arguments=arguments,
    )


def _declare_queue(
    vhost: VirtualHost,
    name: str,
    fields: dict[str, Any],
    *,
    durable: bool,
    owner: object | None = None,
) -> None:
    """queue.declare from a PUT body or a definitions item (``durable``: its default)."""
    try:
        arguments = views.arguments_from_json(fields.get("arguments"))
    except ValueError as error:
        raise bad_request(str(error)) from None
    vhost.declare_queue(
        name,
        owner=owner,
        durable=flag(fields, "durable", durable),
        auto_delete=flag(fields, "auto_delete", False),
        arguments=arguments,
    )


def _merge(tables: Iterable[dict[str, int]]) -> dict[str, int]:
    merged: dict[str, int] = {}
    for table in tables:
        for key, value in table.items():
            merged[key] = merged.get(key, 0) + value
    return merged


def _dig(item: dict[str, Any], path: str) -> Any:
    value: Any = item
    for part in path.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


def _sort_key(value: Any) -> tuple[int, Any]:
    if value is None:
        return (0, 0)
    if isinstance(value, (int, float)):
        return (1, value)
    return (2, str(value))


def _columns(item: dict[str, Any], columns: str) -> dict[str, Any]:
    """Keep only the named columns. "message_stats.publish" keeps one nested field; other
    objects (arguments, queue_totals, object_totals...) are kept whole, as RabbitMQ's
    columns= does for its map-valued fields."""
    result: dict[str, Any] = {}
    for column in columns.split(","):
        parts = column.strip().split(".")
        source: Any = item
        target = result
        for index, part in enumerate(parts):
            if not isinstance(source, dict) or part not in source:
                break
            value = source[part]
            descend = part == "message_stats" or part.endswith("_details")
            if index == len(parts) - 1 or not isinstance(value, dict) or not descend:
                target[part] = value
                break
            source = value
            target = target.setdefault(part, {})
    return result
