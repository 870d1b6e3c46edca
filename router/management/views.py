"""The JSON of each broker object, with the field names of RabbitMQ's management API.

Pure functions from model objects (and their rates) to plain dicts; ``api.py`` serves them.
Fields RabbitMQ has and router has no meaning for (Erlang memory, reductions, garbage collection)
are left out; fields router adds are listed in docs/management.md.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import quote_plus

from router.amqp.properties import BasicProperties
from router.amqp.tables import FieldArray, FieldTable, to_json
from router.broker.exchanges.base import Binding, Exchange
from router.broker.permissions import Permission
from router.broker.policies import Policy
from router.broker.queues import Queue
from router.broker.stats import (
    CHANNEL_FIELDS,
    CONNECTION_FIELDS,
    EXCHANGE_FIELDS,
    QUEUE_FIELDS,
    Rates,
    details,
)

if TYPE_CHECKING:
    from router.broker.channel import Channel, Consumer
    from router.broker.message import Message, QueuedMessage
    from router.broker.session import Session

NODE = "router@localhost"


# --- values ------------------------------------------------------------------------------------


def from_json(value: Any) -> Any:
    """A JSON value as a field-table value: objects become tables, arrays field arrays."""
    if isinstance(value, dict):
        return FieldTable({str(key): from_json(item) for key, item in value.items()})
    if isinstance(value, list):
        return FieldArray([from_json(item) for item in value])
    return value


def arguments_from_json(value: Any) -> FieldTable:
    if value is None or value == [] or value == "":
        return FieldTable()
    if not isinstance(value, dict):
        raise ValueError("arguments must be a JSON object")
    table = from_json(value)
    assert isinstance(table, FieldTable)
    return table


def properties_json(properties: BasicProperties) -> dict[str, Any] | list[Any]:
    """Content properties as RabbitMQ shows them (an empty list when there are none, as it
    does)."""
    result: dict[str, Any] = {}
    for name in BasicProperties.__dataclass_fields__:
        value = getattr(properties, name)
        if value is not None:
            result[name] = to_json(value)
    return result if result else []


PROPERTY_NAMES = frozenset(BasicProperties.__dataclass_fields__)
_INTEGER_PROPERTIES = {"delivery_mode": (0, 255), "priority": (0, 255), "timestamp": (0, 2**63 - 1)}


def properties_from_json(value: Any) -> BasicProperties:
    if value is None or value == []:
        return BasicProperties()
    if not isinstance(value, dict):
        raise ValueError("properties must be a JSON object")
    unknown = sorted(set(value) - PROPERTY_NAMES)
    if unknown:
        raise ValueError(f"unknown properties {unknown}; known: {sorted(PROPERTY_NAMES)}")
    fields: dict[str, Any] = {}
    for name, item in value.items():
        if name == "headers":
            fields[name] = arguments_from_json(item)
        elif name in _INTEGER_PROPERTIES:
            if isinstance(item, str) and item.isdigit():
                item = int(item)
            low, high = _INTEGER_PROPERTIES[name]
            if not isinstance(item, int) or isinstance(item, bool) or not low <= item <= high:
                raise ValueError(f"property {name} must be an integer from {low} to {high}")
            fields[name] = item
        else:
            text = str(item)
            if len(text.encode("utf-8")) > 255:
                raise ValueError(f"property {name} is longer than 255 bytes")
            fields[name] = text
    return BasicProperties(**fields)


def rate(value: float) -> dict[str, float]:
    return {"rate": round(value, 1)}


def iso_time(unix: float) -> str:
    moment = datetime.datetime.fromtimestamp(unix, tz=datetime.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}+00:00"


def properties_key(binding: Binding) -> str:
    """RabbitMQ's ``properties_key``: the routing key, and a digest of the arguments if any
    ("~" alone for an empty key without arguments)."""
    key = quote_plus(binding.routing_key, safe="").replace("~", "%7E")
    if not binding.arguments:
        return key or "~"
    digest = hashlib.sha256(repr(sorted(binding.arguments.items())).encode()).digest()
    return f"{key}~{base64.urlsafe_b64encode(digest[:12]).decode().rstrip('=')}"


# --- objects -----------------------------------------------------------------------------------


def queue_json(
    queue: Queue, rates: Rates, now_wall: float, *, detail: bool = False
) -> dict[str, Any]:
    ready = queue.ready_count
    unacked = queue.unacked
    queue_rates = rates.rates("queue", queue)
    depth = rates.rates("queue_depth", queue)
    stats = queue.stats
    message_stats = details(QUEUE_FIELDS, stats.values(), queue_rates)
    message_stats["deliver"] = stats.delivered
    message_stats["deliver_details"] = message_stats["deliver_get_details"]
    age = queue.oldest_ready_age()
    exclusive = queue.exclusive_consumer
    result: dict[str, Any] = {
        "name": queue.name,
        "vhost": queue.vhost,
        "durable": queue.durable,
        "auto_delete": queue.auto_delete,
        "exclusive": queue.exclusive,
        "arguments": to_json(queue.arguments),
        "node": NODE,
        "state": "running",
        "type": "classic",
        "policy": queue.policy.name if queue.policy is not None else None,
        "operator_policy": None,
        "effective_policy_definition": (
            dict(queue.policy.definition) if queue.policy is not None else {}
        ),
        "messages": ready + unacked,
        "messages_details": rate(depth[0] if depth else 0.0),
        "messages_ready": ready,
        "messages_ready_details": rate(depth[1] if depth else 0.0),
        "messages_unacknowledged": unacked,
        "messages_unacknowledged_details": rate(depth[2] if depth else 0.0),
        "message_bytes": queue.ready_bytes,
        "message_bytes_ready": queue.ready_bytes,
        "consumers": queue.consumer_count,
        "exclusive_consumer_tag": exclusive.tag if exclusive is not None else None,
        "idle_since": iso_time(now_wall - (queue.clock.now - queue.last_used)),
        "head_message_timestamp": None,
        "message_stats": message_stats,
        # router's own
        "messages_scheduled": queue.waiting,
        "oldest_message_age": round(age, 3) if age is not None else None,
        "dead_lettered": dict(stats.dead_lettered),
        "duplicates_dropped": stats.duplicates,
        "rejected_publishes": stats.rejected_publishes,
        # what the queue runs on: its arguments combined with its policy (policies.py)
        "effective_arguments": to_json(queue.effective_arguments),
    }
    if detail:
        result["consumer_details"] = [consumer_json(c) for c in queue.consumers()]
        result["incoming"] = []
        result["deliveries"] = []
    return result


def exchange_json(exchange: Exchange, vhost: str, rates: Rates) -> dict[str, Any]:
    values = (exchange.published_in, exchange.routed_out, exchange.unroutable)
    result = {
        "name": exchange.name,
        "vhost": vhost,
        "type": exchange.TYPE,
        "durable": exchange.durable,
        "auto_delete": exchange.auto_delete,
        "internal": exchange.internal,
        "arguments": to_json(exchange.arguments),
        "message_stats": details(EXCHANGE_FIELDS, values, rates.rates("exchange", exchange)),
        "user_who_performed_action": "",
    }
    if exchange.policy is not None:  # RabbitMQ shows the field only when a policy applies
        result["policy"] = exchange.policy.name
    return result


def policy_json(policy: Policy) -> dict[str, Any]:
    """A policy as RabbitMQ's API and definitions show it."""
    return {
        "vhost": policy.vhost,
        "name": policy.name,
        "pattern": policy.pattern,
        "apply-to": policy.apply_to,
        "definition": dict(policy.definition),
        "priority": policy.priority,
    }


def permission_json(user: str, vhost: str, permission: Permission) -> dict[str, Any]:
    return {
        "user": user,
        "vhost": vhost,
        "configure": permission.configure,
        "write": permission.write,
        "read": permission.read,
    }


def binding_json(binding: Binding, vhost: str, rates: Rates) -> dict[str, Any]:
    destination = binding.destination
    matched = rates.rates("binding", binding)
    return {
        "source": binding.source.name,
        "vhost": vhost,
        "destination": destination.name,
        "destination_type": "exchange" if isinstance(destination, Exchange) else "queue",
        "routing_key": binding.routing_key,
        "arguments": to_json(binding.arguments),
        "properties_key": properties_key(binding),
        # router's own: the live routing stats
        "matched": binding.matched,
        "matched_details": rate(matched[0] if matched else 0.0),
    }


def default_bindings(queues: Sequence[Queue], vhost: str) -> list[dict[str, Any]]:
    """The implicit default-exchange binding of each queue, as RabbitMQ lists them."""
    return [
        {
            "source": "",
            "vhost": vhost,
            "destination": queue.name,
            "destination_type": "queue",
            "routing_key": queue.name,
            "arguments": {},
            "properties_key": quote_plus(queue.name, safe="").replace("~", "%7E") or "~",
        }
        for queue in queues
    ]


def peer(session: Session) -> tuple[str, int]:
    host, _, port = session.peer.rpartition(":")
    return host, int(port) if port.isdigit() else 0


def connection_json(session: Session, rates: Rates) -> dict[str, Any]:
    conn = session.conn
    host, port = peer(session)
    local_host, _, local_port = session.local.rpartition(":")
    client_properties = to_json(conn.client_properties)
    state = "running"
    if session.blocked:
        state = "blocked"
    elif session.broker.alarms:
        state = "blocking"
    result: dict[str, Any] = {
        "name": session.name,
        "node": NODE,
        "type": "network",
        "protocol": "AMQP 0-9-1",
        "auth_mechanism": conn.mechanism,
        "user": conn.user,
        "user_who_performed_action": conn.user,
        "vhost": conn.virtual_host,
        "host": local_host,
        "port": int(local_port) if local_port.isdigit() else 0,
        "peer_host": host,
        "peer_port": port,
        "ssl": False,
        "state": state,
        "channels": len(session.channels),
        "channel_max": conn.channel_max,
        "frame_max": conn.frame_max,
        "timeout": conn.heartbeat,
        "connected_at": int(session.connected_at * 1000),
        "client_properties": client_properties,
        "user_provided_name": client_properties.get("connection_name")
        if isinstance(client_properties, dict)
        else None,
        "send_pend": 0,
    }
    result.update(
        details(CONNECTION_FIELDS, session.counters(), rates.rates("connection", session))
    )
    return result


def channel_name(channel: Channel) -> str:
    return f"{channel.session.name} ({channel.number})"


def channel_json(channel: Channel, rates: Rates, *, detail: bool = False) -> dict[str, Any]:
    session = channel.session
    host, port = peer(session)
    values = channel.counters()
    message_stats = details(CHANNEL_FIELDS, values, rates.rates("channel", channel))
    unconfirmed = channel.publish_seq - channel.confirmed_upto if channel.confirm else 0
    state = "running"
    if session.blocked:
        state = "blocked"
    elif not channel.flow_active:
        state = "flow"
    result: dict[str, Any] = {
        "name": channel_name(channel),
        "node": NODE,
        "number": channel.number,
        "user": session.conn.user,
        "user_who_performed_action": session.conn.user,
        "vhost": session.conn.virtual_host,
        "connection_details": {"name": session.name, "peer_host": host, "peer_port": port},
        "confirm": channel.confirm,
        "transactional": channel.tx,
        "consumer_count": len(channel.consumers),
        "prefetch_count": channel.prefetch_count,
        "global_prefetch_count": channel.global_prefetch,
        "messages_unacknowledged": len(channel.unacked),
        "messages_unconfirmed": unconfirmed,
        "messages_uncommitted": len(channel.tx_publishes),
        "acks_uncommitted": len(channel.tx_acks),
        "state": state,
        "message_stats": message_stats,
    }
    if detail:
        result["consumer_details"] = [consumer_json(c) for c in channel.consumers.values()]
        result["publishes"] = []
        result["deliveries"] = []
    return result


def consumer_json(consumer: Consumer) -> dict[str, Any]:
    channel = consumer.channel
    session = channel.session
    host, port = peer(session)
    queue = consumer.queue
    active = queue.active_consumer
    is_active = active is None or active is consumer
    return {
        "consumer_tag": consumer.tag,
        "queue": {"name": queue.name, "vhost": queue.vhost},
        "channel_details": {
            "name": channel_name(channel),
            "number": channel.number,
            "connection_name": session.name,
            "node": NODE,
            "peer_host": host,
            "peer_port": port,
            "user": session.conn.user,
        },
        "ack_required": not consumer.no_ack,
        "exclusive": consumer.exclusive,
        "prefetch_count": consumer.prefetch,
        "arguments": {"x-priority": consumer.priority} if consumer.priority else {},
        "active": is_active,
        "activity_status": "up" if is_active else "waiting",
        # router's own
        "messages_unacknowledged": consumer.unacked,
    }


def message_json(
    entry: QueuedMessage,
    properties: BasicProperties,
    *,
    encoding: str,
    truncate: int | None,
    message_count: int | None = None,
    message: Message | None = None,
) -> dict[str, Any]:
    """A message as /get returns it: payload as a string when it is UTF-8 text and ``encoding``
    is "auto", else base64. ``message`` stands in for the entry's own (a paged body read back)."""
    if message is None:
        message = entry.message
    body = message.body
    payload_bytes = len(body)
    if truncate is not None:
        body = body[:truncate]
    payload: str
    payload_encoding = "string"
    if encoding == "auto":
        try:
            payload = body.decode("utf-8")
        except UnicodeDecodeError:
            payload, payload_encoding = base64.b64encode(body).decode(), "base64"
    else:
        payload, payload_encoding = base64.b64encode(body).decode(), "base64"
    result: dict[str, Any] = {
        "payload_bytes": payload_bytes,
        "redelivered": entry.redelivered,
        "exchange": message.exchange,
        "routing_key": message.routing_key,
    }
    if message_count is not None:
        result["message_count"] = message_count
    result["properties"] = properties_json(properties)
    result["payload"] = payload
    result["payload_encoding"] = payload_encoding
    return result
