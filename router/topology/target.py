"""Where a plan is applied: a broker model in this process (``router serve --topology``, SIGHUP),
or a running broker's management API (``remote.py``).

A target answers two questions — what is there now (a ``Topology`` and each queue's message
count) — and runs a plan's steps in order.
"""

from __future__ import annotations

from typing import Protocol

from router.amqp.errors import AMQPError
from router.amqp.tables import to_json
from router.broker.broker import Broker
from router.broker.exchanges import Exchange
from router.broker.policies import Policy
from router.broker.queues import Queue
from router.topology.model import (
    BindingSpec,
    ExchangeSpec,
    PermissionSpec,
    PolicySpec,
    QueueSpec,
    Topology,
    UserSpec,
    VHostSpec,
)
from router.topology.plan import CREATE, DELETE, UPDATE, Change
from router.topology.schema import to_field_table


class ApplyError(Exception):
    """A step the target refused; ``done`` steps ran before it."""

    def __init__(self, change: Change, reason: str, done: int) -> None:
        super().__init__(f"{change.action} {change.kind} '{change.name}': {reason}")
        self.change = change
        self.reason = reason
        self.done = done


class Target(Protocol):
    def current(self) -> tuple[Topology, dict[tuple[str, str], int]]: ...

    def apply(self, steps: list[Change]) -> None: ...


def snapshot(broker: Broker) -> tuple[Topology, dict[tuple[str, str], int]]:
    """The broker's topology (what definitions export: no exclusive queues, no amq.*
    exchanges) and the messages each queue holds (ready, unacknowledged and waiting)."""
    topology = Topology()
    messages: dict[tuple[str, str], int] = {}
    for name, password_hash in broker.users.items():
        tags = broker.user_tags.get(name, ())
        topology.users[name] = UserSpec(name, password_hash, tuple(tags))
    for (user, vhost_name), permission in broker.permissions.items():
        topology.permissions[(user, vhost_name)] = PermissionSpec(
            user, vhost_name, permission.configure, permission.write, permission.read
        )
    for vhost in broker.vhosts.values():
        topology.vhosts[vhost.name] = VHostSpec(vhost.name)
        for policy in vhost.policies.values():
            topology.policies[(vhost.name, policy.name)] = PolicySpec(
                vhost.name,
                policy.name,
                policy.pattern,
                policy.apply_to,
                policy.priority,
                dict(policy.definition),
            )
        for exchange in vhost.exchanges.values():
            if exchange.name == "" or exchange.name.startswith("amq."):
                continue
            topology.exchanges[(vhost.name, exchange.name)] = ExchangeSpec(
                vhost.name,
                exchange.name,
                exchange.TYPE,
                exchange.durable,
                exchange.auto_delete,
                exchange.internal,
                to_json(exchange.arguments),
            )
        for queue in vhost.queues.values():
            if queue.exclusive:
                continue
            topology.queues[(vhost.name, queue.name)] = QueueSpec(
                vhost.name,
                queue.name,
                queue.durable,
                queue.auto_delete,
                to_json(queue.arguments),
            )
            messages[(vhost.name, queue.name)] = queue.ready_count + queue.unacked + queue.waiting
        for binding in vhost.bindings():
            destination = binding.destination
            if isinstance(destination, Queue) and destination.exclusive:
                continue
            spec = BindingSpec(
                vhost.name,
                binding.source.name,
                destination.name,
                "exchange" if isinstance(destination, Exchange) else "queue",
                binding.routing_key,
                to_json(binding.arguments),
            )
            topology.bindings[spec.key] = spec
    return topology, messages


class BrokerTarget:
    """A broker model in this process."""

    def __init__(self, broker: Broker) -> None:
        self.broker = broker

    def current(self) -> tuple[Topology, dict[tuple[str, str], int]]:
        return snapshot(self.broker)

    def apply(self, steps: list[Change]) -> None:
        for done, change in enumerate(steps):
            try:
                self._apply(change)
            except (AMQPError, ValueError, KeyError) as error:
                reason = error.text if isinstance(error, AMQPError) else str(error)
                raise ApplyError(change, reason, done) from None

    def _apply(self, change: Change) -> None:
        broker = self.broker
        kind = change.kind
        if change.action == DELETE:
            spec = change.current
            if kind == "vhost":
                broker.delete_vhost(spec.name)
            elif kind == "user":
                broker.delete_user(spec.name)
            elif kind == "permission":
                broker.clear_permissions(spec.user, spec.vhost)
            elif kind == "policy":
                broker.clear_policy(spec.vhost, spec.name)
            elif kind == "exchange":
                broker.vhosts[spec.vhost].delete_exchange(spec.name)
            elif kind == "queue":
                broker.vhosts[spec.vhost].delete_queue(spec.name, owner=None)
            elif kind == "binding":
                vhost = broker.vhosts[spec.vhost]
                destination: Exchange | Queue | None = (
                    vhost.exchanges.get(spec.destination)
                    if spec.destination_type == "exchange"
                    else vhost.queues.get(spec.destination)
                )
                vhost.unbind(
                    spec.source, destination, spec.routing_key, to_field_table(spec.arguments)
                )
            return
        assert change.action in (CREATE, UPDATE)
        spec = change.desired
        if kind == "vhost":
            broker.add_vhost(spec.name)
        elif kind == "user":
            broker.set_user(spec.name, password_hash=spec.password_hash, tags=spec.tags)
        elif kind == "permission":
            broker.set_permissions(spec.user, spec.vhost, spec.configure, spec.write, spec.read)
        elif kind == "policy":
            broker.set_policy(
                Policy(
                    spec.vhost,
                    spec.name,
                    spec.pattern,
                    spec.apply_to,
                    spec.priority,
                    dict(spec.definition),
                )
            )
        elif kind == "exchange":
            broker.vhosts[spec.vhost].declare_exchange(
                spec.name,
                spec.type,
                durable=spec.durable,
                auto_delete=spec.auto_delete,
                internal=spec.internal,
                arguments=to_field_table(spec.arguments),
            )
        elif kind == "queue":
            broker.vhosts[spec.vhost].declare_queue(
                spec.name,
                owner=None,
                durable=spec.durable,
                auto_delete=spec.auto_delete,
                arguments=to_field_table(spec.arguments),
            )
        elif kind == "binding":
            vhost = broker.vhosts[spec.vhost]
            arguments = to_field_table(spec.arguments)
            if spec.destination_type == "exchange":
                vhost.bind_exchange(spec.source, spec.destination, spec.routing_key, arguments)
            else:
                vhost.bind_queue(spec.source, spec.destination, spec.routing_key, arguments, None)
