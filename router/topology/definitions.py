"""RabbitMQ definitions JSON ⇄ topology, and topology → YAML.

Definitions are what ``rabbitmqctl export_definitions`` and ``GET /api/definitions`` write and
``rabbitmqctl import_definitions`` / ``POST /api/definitions`` read. Reading them goes through the
same checks as YAML (they are turned into the YAML form first), so a definitions file gets the same
teaching errors. Writing YAML uses the friendly forms (``message_ttl: 30s``) wherever the value is
exactly representable, and re-reads to the same topology.
"""

from __future__ import annotations

import json
from typing import Any

import yaml

from router.topology.model import (
    DEFAULT_VHOST,
    BindingSpec,
    ExchangeSpec,
    PermissionSpec,
    PolicySpec,
    QueueSpec,
    Topology,
    UserSpec,
    VHostSpec,
)
from router.topology.schema import (
    EXCHANGE_FIELDS,
    HASHING_ALGORITHM,
    POLICY_FIELDS,
    QUEUE_FIELDS,
    Problem,
    format_duration,
    format_size,
    read_topology,
)
from router.topology.source import Document, Located, LocatedList, Where

RABBIT_VERSION = "3.10.8"
DEFINITION_SECTIONS = (
    "vhosts",
    "users",
    "permissions",
    "policies",
    "exchanges",
    "queues",
    "bindings",
)
# sections RabbitMQ exports that router has nothing for: imported only when empty
IGNORED_SECTIONS = ("topic_permissions", "parameters", "global_parameters")


# --- definitions → topology ----------------------------------------------------------------------


def _located(value: Any, where: Where) -> Any:
    """JSON values as the Located values the YAML reader produces (all at one place)."""
    if isinstance(value, dict):
        result = Located(where)
        for key, item in value.items():
            result[str(key)] = _located(item, where)
            result.key_where[str(key)] = where
            result.value_where[str(key)] = where
        return result
    if isinstance(value, list):
        items = LocatedList(where)
        for item in value:
            items.append(_located(item, where))
            items.item_where.append(where)
        return items
    return value


def _yaml_form(section: str, item: dict[str, Any]) -> dict[str, Any]:
    """One definitions item in the YAML schema's words."""
    item = dict(item)
    if section == "vhosts":
        return {"name": item.get("name")}
    if section == "users":
        tags = item.get("tags", [])
        result = {
            "name": item.get("name"),
            "password_hash": item.get("password_hash"),
            "tags": [t for t in tags.split(",") if t] if isinstance(tags, str) else tags,
        }
        if "hashing_algorithm" in item:
            result["hashing_algorithm"] = item["hashing_algorithm"]
        return result
    if section == "policies":
        result = {
            k: item[k] for k in ("name", "vhost", "pattern", "priority", "definition") if k in item
        }
        if "apply-to" in item:
            result["apply_to"] = item["apply-to"]
        return result
    if section == "exchanges":
        keys: tuple[str, ...] = (
            "name",
            "vhost",
            "type",
            "durable",
            "auto_delete",
            "internal",
            "arguments",
        )
        return {k: item[k] for k in keys if k in item and item[k] != {}}
    if section == "queues":
        keys = ("name", "vhost", "durable", "auto_delete", "arguments")
        return {k: item[k] for k in keys if k in item and item[k] != {}}
    if section == "bindings":
        keys = ("vhost", "source", "destination", "destination_type", "routing_key", "arguments")
        return {k: item[k] for k in keys if k in item and item[k] != {}}
    return item


def read_definitions(text: str, file: str) -> tuple[Topology, list[Problem]]:
    """The topology of a RabbitMQ definitions document, with the YAML reader's checks."""
    try:
        document = json.loads(text)
    except json.JSONDecodeError as error:
        where = Where(file, error.lineno, error.colno)
        return Topology(), [Problem(where, "", f"not valid JSON: {error.msg}")]
    return from_definitions(document, file)


def from_definitions(
    document: Any, file: str = "<definitions>", vhost: str | None = None
) -> tuple[Topology, list[Problem]]:
    """The topology of parsed definitions (``vhost``: a single-vhost export's vhost)."""
    where = Where(file)
    if not isinstance(document, dict):
        return Topology(), [Problem(where, "", "definitions must be a JSON object")]
    problems: list[Problem] = []
    converted: dict[str, Any] = {}
    for section in DEFINITION_SECTIONS:
        items = document.get(section, [])
        if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
            problems.append(Problem(where, section, "expected a list of objects"))
            continue
        result = []
        for item in items:
            if vhost is not None and section not in ("vhosts", "users") and "vhost" not in item:
                item = {**item, "vhost": vhost}
            name = str(item.get("name", ""))
            if section == "exchanges" and (name == "" or name.startswith("amq.")):
                continue  # every vhost has these
            result.append(_yaml_form(section, item))
        if result:
            converted[section] = result
    if vhost is not None and vhost != DEFAULT_VHOST and "vhosts" not in document:
        # a single-vhost export (GET /api/definitions/{vhost}) names no vhosts: its items
        # refer to the one it came from, so declare it rather than report it undeclared
        converted["vhosts"] = [{"name": vhost}]
    for section in IGNORED_SECTIONS:
        items = document.get(section)
        if section == "global_parameters" and isinstance(items, list):
            # every RabbitMQ export has its cluster's id here; nothing to carry over
            items = [
                i
                for i in items
                if not (
                    isinstance(i, dict) and i.get("name") in ("internal_cluster_id", "cluster_name")
                )
            ]
        if items:
            problems.append(
                Problem(
                    where,
                    section,
                    f"'{section}' are not imported: router has no "
                    f"{section.replace('_', ' ')} (federation, shovels, limits); they stay "
                    "with RabbitMQ",
                    warning=True,
                )
            )
    topology, found = read_topology([Document(file, _located(converted, where))])
    return topology, problems + found


# --- topology → definitions ----------------------------------------------------------------------


def to_definitions(topology: Topology) -> dict[str, Any]:
    """RabbitMQ definitions for the whole topology (what rabbitmqctl import_definitions reads)."""
    vhosts = sorted({DEFAULT_VHOST, *topology.vhosts})
    return {
        "rabbit_version": RABBIT_VERSION,
        "rabbitmq_version": RABBIT_VERSION,
        "product_name": "router",
        "users": [
            {
                "name": user.name,
                "password_hash": user.password_hash,
                "hashing_algorithm": HASHING_ALGORITHM,
                "tags": list(user.tags),
                "limits": {},
            }
            for user in sorted(topology.users.values(), key=lambda u: u.name)
        ],
        "vhosts": [{"name": name, "limits": [], "metadata": {}} for name in vhosts],
        "permissions": [
            {
                "user": p.user,
                "vhost": p.vhost,
                "configure": p.configure,
                "write": p.write,
                "read": p.read,
            }
            for p in sorted(topology.permissions.values(), key=lambda p: (p.user, p.vhost))
        ],
        "topic_permissions": [],
        "parameters": [],
        "global_parameters": [],
        "policies": [
            {
                "vhost": p.vhost,
                "name": p.name,
                "pattern": p.pattern,
                "apply-to": p.apply_to,
                "definition": dict(p.definition),
                "priority": p.priority,
            }
            for p in sorted(topology.policies.values(), key=lambda p: (p.vhost, p.name))
        ],
        "queues": [
            {
                "name": q.name,
                "vhost": q.vhost,
                "durable": q.durable,
                "auto_delete": q.auto_delete,
                "arguments": dict(q.arguments),
            }
            for q in sorted(topology.queues.values(), key=lambda q: (q.vhost, q.name))
        ],
        "exchanges": [
            {
                "name": e.name,
                "vhost": e.vhost,
                "type": e.type,
                "durable": e.durable,
                "auto_delete": e.auto_delete,
                "internal": e.internal,
                "arguments": dict(e.arguments),
            }
            for e in sorted(topology.exchanges.values(), key=lambda e: (e.vhost, e.name))
        ],
        "bindings": [
            {
                "source": b.source,
                "vhost": b.vhost,
                "destination": b.destination,
                "destination_type": b.destination_type,
                "routing_key": b.routing_key,
                "arguments": dict(b.arguments),
            }
            for b in sorted(topology.bindings.values(), key=lambda b: b.key)
        ],
    }


# --- topology → YAML ------------------------------------------------------------------------------


def _friendly(value: Any, kind: str) -> Any:
    if kind in ("duration", "positive_duration") and isinstance(value, int):
        return format_duration(value)
    if kind == "size" and isinstance(value, int):
        return format_size(value)
    if kind == "backoff" and isinstance(value, dict):
        result = dict(value)
        for key in ("initial", "max"):
            if isinstance(result.get(key), int):
                result[key] = format_duration(result[key])
        return result
    return value


def _arguments_yaml(
    item: dict[str, Any], arguments: dict[str, Any], fields: dict[str, Any]
) -> None:
    """Friendly keys into ``item`` for the arguments that have one; the rest as 'arguments'."""
    by_argument = {field.argument: (key, field) for key, field in fields.items()}
    rest: dict[str, Any] = {}
    for argument, value in arguments.items():
        known = by_argument.get(argument)
        if known is None or not _round_trips(value, known[1].kind):
            rest[argument] = value
            continue
        item[known[0]] = _friendly(value, known[1].kind)
    if rest:
        item["arguments"] = rest


def _round_trips(value: Any, kind: str) -> bool:
    """True if the friendly key reads ``value`` back unchanged (so export is lossless)."""
    if kind in ("duration", "size", "count"):
        return isinstance(value, int) and not isinstance(value, bool) and value >= 0
    if kind in ("positive_duration", "priority"):
        return isinstance(value, int) and not isinstance(value, bool) and value > 0
    if kind == "bool":
        return isinstance(value, bool)
    if kind in ("text", "exchange", "enum"):
        return isinstance(value, str)
    if kind == "backoff":
        return isinstance(value, dict) and set(value) <= {"initial", "multiplier", "max", "jitter"}
    return False


def to_yaml_data(topology: Topology) -> dict[str, Any]:
    """The topology in the YAML schema's friendly form (plain dicts and lists)."""

    def vhost_of(item: dict[str, Any], vhost: str) -> dict[str, Any]:
        return item if vhost == DEFAULT_VHOST else {**item, "vhost": vhost}

    data: dict[str, Any] = {"version": 1}
    vhosts = sorted(set(topology.vhosts) - {DEFAULT_VHOST})
    if vhosts:
        data["vhosts"] = [{"name": name} for name in vhosts]
    if topology.users:
        data["users"] = []
        for user in sorted(topology.users.values(), key=lambda u: u.name):
            entry: dict[str, Any] = {"name": user.name, "password_hash": user.password_hash}
            if user.tags:
                entry["tags"] = list(user.tags)
            data["users"].append(entry)
    if topology.permissions:
        data["permissions"] = [
            vhost_of(
                {"user": p.user, "configure": p.configure, "write": p.write, "read": p.read},
                p.vhost,
            )
            for p in sorted(topology.permissions.values(), key=lambda p: (p.vhost, p.user))
        ]
    if topology.policies:
        data["policies"] = []
        for policy in sorted(topology.policies.values(), key=lambda p: (p.vhost, p.name)):
            definition: dict[str, Any] = {}
            for key, value in policy.definition.items():
                field = POLICY_FIELDS.get(key)
                if field is not None and _round_trips(value, field.kind):
                    definition[key.replace("-", "_")] = _friendly(value, field.kind)
                else:
                    definition[key] = value
            entry = {"name": policy.name, "pattern": policy.pattern}
            if policy.apply_to != "all":
                entry["apply_to"] = policy.apply_to
            if policy.priority:
                entry["priority"] = policy.priority
            entry["definition"] = definition
            data["policies"].append(vhost_of(entry, policy.vhost))
    if topology.exchanges:
        data["exchanges"] = []
        for exchange in sorted(topology.exchanges.values(), key=lambda e: (e.vhost, e.name)):
            entry = {"name": exchange.name, "type": exchange.type}
            if not exchange.durable:
                entry["durable"] = False
            if exchange.auto_delete:
                entry["auto_delete"] = True
            if exchange.internal:
                entry["internal"] = True
            _arguments_yaml(entry, exchange.arguments, EXCHANGE_FIELDS)
            data["exchanges"].append(vhost_of(entry, exchange.vhost))
    # a queue's bindings are written with the queue; exchange-to-exchange ones on their own
    by_queue: dict[tuple[str, str], list[dict[str, Any]]] = {}
    exchange_bindings: list[dict[str, Any]] = []
    for binding in sorted(topology.bindings.values(), key=lambda b: b.key):
        entry = {"exchange": binding.source}
        if binding.routing_key:
            entry["routing_key"] = binding.routing_key
        if binding.arguments:
            entry["arguments"] = dict(binding.arguments)
        if binding.destination_type == "queue" and (
            (binding.vhost, binding.destination) in topology.queues
        ):
            by_queue.setdefault((binding.vhost, binding.destination), []).append(entry)
        else:
            key = "queue" if binding.destination_type == "queue" else "destination_exchange"
            full = {"exchange": binding.source, key: binding.destination}
            full.update({k: v for k, v in entry.items() if k != "exchange"})
            exchange_bindings.append(vhost_of(full, binding.vhost))
    if topology.queues:
        data["queues"] = []
        for queue in sorted(topology.queues.values(), key=lambda q: (q.vhost, q.name)):
            entry = {"name": queue.name}
            if not queue.durable:
                entry["durable"] = False
            if queue.auto_delete:
                entry["auto_delete"] = True
            _arguments_yaml(entry, queue.arguments, QUEUE_FIELDS)
            bindings = by_queue.get((queue.vhost, queue.name))
            if bindings:
                entry["bindings"] = _group_keys(bindings)
            data["queues"].append(vhost_of(entry, queue.vhost))
    if exchange_bindings:
        data["bindings"] = exchange_bindings
    return data


def _group_keys(bindings: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One entry per (exchange, arguments) with its routing keys together."""
    grouped: dict[tuple[str, str], dict[str, Any]] = {}
    for entry in bindings:
        ident = (entry["exchange"], json.dumps(entry.get("arguments", {}), sort_keys=True))
        key = entry.get("routing_key", "")
        known = grouped.get(ident)
        if known is None:
            grouped[ident] = entry
            continue
        keys = known.pop("routing_keys", None) or [known.pop("routing_key", "")]
        known["routing_keys"] = [*keys, key]
        # keep key order: exchange, routing_keys, arguments
        if "arguments" in known:
            known["arguments"] = known.pop("arguments")
    return list(grouped.values())


class _Dumper(yaml.SafeDumper):
    """Block style, keys in the order given, no anchors, and long lines left whole."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def to_yaml(topology: Topology, header: str = "") -> str:
    """The topology as a YAML file that reads back to the same topology."""
    text = yaml.dump(
        to_yaml_data(topology),
        Dumper=_Dumper,
        sort_keys=False,
        default_flow_style=False,
        allow_unicode=True,
        width=100,
    )
    if header:
        text = "".join(f"# {line}\n" if line else "#\n" for line in header.splitlines()) + text
    return text


def current_from_definitions(document: dict[str, Any]) -> Topology:
    """A broker's definitions export as a topology, taken as it is (no checks: this is what the
    broker holds, right or wrong)."""
    topology = Topology()
    for item in document.get("vhosts", []):
        topology.vhosts[item["name"]] = VHostSpec(item["name"])
    for item in document.get("users", []):
        tags = item.get("tags", [])
        if isinstance(tags, str):
            tags = [t for t in tags.split(",") if t]
        topology.users[item["name"]] = UserSpec(
            item["name"], item.get("password_hash", ""), tuple(tags)
        )
    for item in document.get("permissions", []):
        topology.permissions[(item["user"], item["vhost"])] = PermissionSpec(
            item["user"], item["vhost"], item["configure"], item["write"], item["read"]
        )
    for item in document.get("policies", []):
        topology.policies[(item["vhost"], item["name"])] = PolicySpec(
            item["vhost"],
            item["name"],
            item["pattern"],
            item.get("apply-to", "all"),
            int(item.get("priority", 0)),
            dict(item.get("definition", {})),
        )
    for item in document.get("exchanges", []):
        if item["name"] == "" or item["name"].startswith("amq."):
            continue
        topology.exchanges[(item["vhost"], item["name"])] = ExchangeSpec(
            item["vhost"],
            item["name"],
            item["type"],
            bool(item.get("durable", True)),
            bool(item.get("auto_delete", False)),
            bool(item.get("internal", False)),
            dict(item.get("arguments") or {}),
        )
    for item in document.get("queues", []):
        topology.queues[(item["vhost"], item["name"])] = QueueSpec(
            item["vhost"],
            item["name"],
            bool(item.get("durable", True)),
            bool(item.get("auto_delete", False)),
            dict(item.get("arguments") or {}),
        )
    for item in document.get("bindings", []):
        binding = BindingSpec(
            item["vhost"],
            item["source"],
            item["destination"],
            item.get("destination_type", "queue"),
            item.get("routing_key", ""),
            dict(item.get("arguments") or {}),
        )
        topology.bindings[binding.key] = binding
    return topology
