"""The topology spec: what a broker should hold, as plain frozen values.

Names and arguments are RabbitMQ's (``x-message-ttl`` in milliseconds, ``alternate-exchange``), so
the spec converts to and from RabbitMQ definitions without loss. Each item remembers where it was
written (``where``, not part of equality), for messages that point at the file.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from router.topology.source import Where

DEFAULT_VHOST = "/"
NOWHERE = Where("<broker>")


@dataclass(frozen=True)
class VHostSpec:
    name: str
    where: Where = field(default=NOWHERE, compare=False)


@dataclass(frozen=True)
class UserSpec:
    name: str
    password_hash: str
    tags: tuple[str, ...] = ()
    where: Where = field(default=NOWHERE, compare=False)


@dataclass(frozen=True)
class PermissionSpec:
    user: str
    vhost: str
    configure: str = ".*"
    write: str = ".*"
    read: str = ".*"
    where: Where = field(default=NOWHERE, compare=False)


@dataclass(frozen=True)
class ExchangeSpec:
    vhost: str
    name: str
    type: str = "direct"
    durable: bool = True
    auto_delete: bool = False
    internal: bool = False
    arguments: dict[str, Any] = field(default_factory=dict)
    where: Where = field(default=NOWHERE, compare=False)


@dataclass(frozen=True)
class QueueSpec:
    vhost: str
    name: str
    durable: bool = True
    auto_delete: bool = False
    arguments: dict[str, Any] = field(default_factory=dict)
    where: Where = field(default=NOWHERE, compare=False)


@dataclass(frozen=True)
class BindingSpec:
    vhost: str
    source: str
    destination: str
    destination_type: str = "queue"  # or "exchange"
    routing_key: str = ""
    arguments: dict[str, Any] = field(default_factory=dict)
    where: Where = field(default=NOWHERE, compare=False)

    @property
    def key(self) -> tuple[str, str, str, str, str, str]:
        """What makes a binding itself (RabbitMQ: source, destination, key and arguments)."""
        return (
            self.vhost,
            self.source,
            self.destination_type,
            self.destination,
            self.routing_key,
            canonical(self.arguments),
        )


@dataclass(frozen=True)
class PolicySpec:
    vhost: str
    name: str
    pattern: str
    apply_to: str = "all"  # "queues", "exchanges" or "all"
    priority: int = 0
    definition: dict[str, Any] = field(default_factory=dict)
    where: Where = field(default=NOWHERE, compare=False)


def canonical(value: Any) -> str:
    """A stable text for a JSON-like value (mapping order does not matter)."""
    if isinstance(value, dict):
        inner = ",".join(f"{k!r}:{canonical(v)}" for k, v in sorted(value.items()))
        return "{" + inner + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(canonical(v) for v in value) + "]"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return repr(int(value))
    return repr(value)


@dataclass
class Topology:
    """Everything a broker should hold, keyed by identity."""

    vhosts: dict[str, VHostSpec] = field(default_factory=dict)
    users: dict[str, UserSpec] = field(default_factory=dict)
    permissions: dict[tuple[str, str], PermissionSpec] = field(default_factory=dict)
    exchanges: dict[tuple[str, str], ExchangeSpec] = field(default_factory=dict)
    queues: dict[tuple[str, str], QueueSpec] = field(default_factory=dict)
    bindings: dict[tuple[str, ...], BindingSpec] = field(default_factory=dict)
    policies: dict[tuple[str, str], PolicySpec] = field(default_factory=dict)

    def counts(self) -> dict[str, int]:
        return {
            "vhosts": len(self.vhosts),
            "users": len(self.users),
            "permissions": len(self.permissions),
            "policies": len(self.policies),
            "exchanges": len(self.exchanges),
            "queues": len(self.queues),
            "bindings": len(self.bindings),
        }

    def summary(self) -> str:
        parts = [f"{count} {kind}" for kind, count in self.counts().items() if count]
        return ", ".join(parts) if parts else "nothing declared"
