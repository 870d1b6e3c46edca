"""A JSON Schema of the topology YAML, for editor completion and hover help.

Generated from the same tables the validator reads (``schema.py``), so the two cannot drift;
``router topology json-schema`` writes it and docs/topology.schema.json is its output. The
schema describes shapes and values; references between items (a binding's exchange must be
declared) are what ``router topology validate`` adds on top.
"""

from __future__ import annotations

from typing import Any

from router.broker.exchanges import EXCHANGE_TYPES
from router.topology.schema import (
    APPLY_TO,
    DURATION_FORM,
    EXCHANGE_FIELDS,
    POLICY_FIELDS,
    QUEUE_FIELDS,
    SIZE_FORM,
    Field,
)

SCHEMA_ID = "https://router.invalid/topology.schema.json"
_DURATION_PATTERN = r"^\s*(\d+(\.\d+)?\s*(ms|min|s|m|h|d)\s*)+$"
_SIZE_PATTERN = r"^\s*\d+(\.\d+)?\s*([kKmMgGtT][iI]?[bB]|[bB])?\s*$"


def _duration(positive: bool) -> dict[str, Any]:
    return {
        "description": DURATION_FORM,
        "anyOf": [
            {"type": "integer", "minimum": 1 if positive else 0},
            {"type": "string", "pattern": _DURATION_PATTERN},
        ],
    }


def _field(field: Field) -> dict[str, Any]:
    kind = field.kind
    described: dict[str, Any]
    if kind in ("duration", "positive_duration"):
        described = _duration(kind == "positive_duration")
    elif kind == "size":
        described = {
            "description": SIZE_FORM,
            "anyOf": [
                {"type": "integer", "minimum": 0},
                {"type": "string", "pattern": _SIZE_PATTERN},
            ],
        }
    elif kind == "count":
        described = {"type": "integer", "minimum": 0}
    elif kind == "priority":
        described = {"type": "integer", "minimum": 1, "maximum": 255}
    elif kind == "bool":
        described = {"type": "boolean"}
    elif kind in ("text", "exchange"):
        described = {"type": "string"}
    elif kind == "enum":
        described = {"enum": list(field.choices)}
    elif kind == "backoff":
        described = {
            "type": "object",
            "required": ["initial"],
            "additionalProperties": False,
            "properties": {
                "initial": _duration(True),
                "multiplier": {"type": "number", "minimum": 1},
                "max": _duration(True),
                "jitter": {"type": "number", "minimum": 0, "maximum": 1},
            },
        }
    else:
        raise AssertionError(kind)
    text = f"sets {field.argument}" + (f": {field.help}" if field.help else "")
    if "description" in described:
        described = {**described, "description": f"{text}; {described['description']}"}
    else:
        described = {**described, "description": text}
    return described


def _object(properties: dict[str, Any], required: list[str], description: str) -> dict[str, Any]:
    return {
        "type": "object",
        "description": description,
        "required": required,
        "additionalProperties": False,
        "properties": properties,
    }


def json_schema() -> dict[str, Any]:
    name = {"type": "string", "minLength": 1, "maxLength": 255}
    vhost = {"type": "string", "minLength": 1, "description": "the vhost (default '/')"}
    arguments = {
        "type": "object",
        "description": "raw x-arguments, as a client would declare them (integers for "
        "milliseconds and bytes)",
    }
    routing = {
        "routing_key": {"type": "string"},
        "routing_keys": {"type": "array", "items": {"type": "string"}, "minItems": 1},
        "arguments": {"type": "object", "description": "headers-exchange match (x-match: all|any)"},
    }
    queue_binding = _object(
        {"exchange": {"type": "string"}, **routing},
        ["exchange"],
        "a binding of this queue to an exchange",
    )
    queue = _object(
        {
            "name": name,
            "vhost": vhost,
            "durable": {"type": "boolean", "default": True},
            "auto_delete": {"type": "boolean", "default": False},
            "arguments": arguments,
            "bindings": {"type": "array", "items": queue_binding},
            **{key: _field(field) for key, field in QUEUE_FIELDS.items()},
        },
        ["name"],
        "a queue (exclusive queues belong to connections and are not declared here)",
    )
    exchange = _object(
        {
            "name": name,
            "vhost": vhost,
            "type": {"enum": list(EXCHANGE_TYPES), "default": "direct"},
            "durable": {"type": "boolean", "default": True},
            "auto_delete": {"type": "boolean", "default": False},
            "internal": {"type": "boolean", "default": False},
            "arguments": arguments,
            **{key: _field(field) for key, field in EXCHANGE_FIELDS.items()},
        },
        ["name"],
        "an exchange",
    )
    binding = _object(
        {
            "vhost": vhost,
            "exchange": {"type": "string", "description": "the source exchange"},
            "source": {"type": "string", "description": "the source exchange (definitions' word)"},
            "queue": {"type": "string"},
            "destination_exchange": {"type": "string"},
            "destination": {"type": "string"},
            "destination_type": {"enum": ["queue", "exchange"]},
            **routing,
        },
        [],
        "a binding from an exchange to a queue or to another exchange",
    )
    definition_properties: dict[str, Any] = {}
    for key, field in POLICY_FIELDS.items():
        definition_properties[key.replace("-", "_")] = _field(field)
        definition_properties[key] = _field(field)
    policy = _object(
        {
            "name": name,
            "vhost": vhost,
            "pattern": {"type": "string", "description": "a regular expression on names"},
            "apply_to": {"enum": list(APPLY_TO), "default": "all"},
            "priority": {"type": "integer", "default": 0},
            "definition": {
                "type": "object",
                "minProperties": 1,
                "properties": definition_properties,
            },
        },
        ["name", "pattern", "definition"],
        "a policy: the highest-priority one whose pattern matches an object applies to it",
    )
    user = _object(
        {
            "name": name,
            "password_hash": {
                "type": "string",
                "description": "from 'router topology hash-password' (never clear text)",
            },
            "hashing_algorithm": {"const": "rabbit_password_hashing_sha256"},
            "tags": {"anyOf": [{"type": "array", "items": {"type": "string"}}, {"type": "string"}]},
        },
        ["name", "password_hash"],
        "a user",
    )
    regex = {"type": "string", "description": "a regular expression: '.*' all, '^$' none"}
    permission = _object(
        {"user": name, "vhost": vhost, "configure": regex, "write": regex, "read": regex},
        ["user", "configure", "write", "read"],
        "what a user may do in a vhost",
    )
    vhost_item = {
        "anyOf": [
            {"type": "string", "minLength": 1},
            _object({"name": name}, ["name"], "a virtual host"),
        ]
    }

    def listing(item: dict[str, Any]) -> dict[str, Any]:
        return {"type": ["array", "null"], "items": item}

    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        "title": "router topology",
        "description": "Exchanges, queues, bindings, policies, users and permissions for "
        "router (docs/topology.md). Validate with 'router topology validate'.",
        "type": "object",
        "additionalProperties": False,
        "patternProperties": {"^x-": {"description": "free for YAML anchors"}},
        "properties": {
            "version": {"const": 1},
            "vhosts": listing(vhost_item),
            "users": listing(user),
            "permissions": listing(permission),
            "policies": listing(policy),
            "exchanges": listing(exchange),
            "queues": listing(queue),
            "bindings": listing(binding),
        },
    }
