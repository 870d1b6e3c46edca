"""A virtual host: its exchanges, queues and bindings, and routing across them.

Every operation a channel can ask for lives here as a method that either succeeds or raises a
``ChannelError`` / ``ConnectionError`` with RabbitMQ's reply code and a text naming what was wrong.
``owner`` arguments identify the connection asking (for exclusive queues); ``access`` its
user's permissions (None: no check, for the management API, topology and recovery), checked where
RabbitMQ checks them in the method, so the first refusal is the same.

Policies (policies.py) live here: the one in force for each queue and exchange is found when it is
declared and again for all of them when a policy is set or cleared.
"""

from __future__ import annotations

import random as _random
from collections.abc import Callable

from router.amqp.constants import (
    ACCESS_REFUSED,
    COMMAND_INVALID,
    NOT_FOUND,
    PRECONDITION_FAILED,
    RESOURCE_LOCKED,
)
from router.amqp.errors import ChannelError, ConnectionError
from router.amqp.properties import decode_properties
from router.amqp.tables import FieldTable
from router.broker.arguments import (
    QUEUE_EQUIVALENCE_ARGS,
    check_equivalent,
    flag,
    inequivalent,
    validate_exchange_arguments,
    validate_queue_arguments,
)
from router.broker.deadletter import dead_letter_headers, is_cycle
from router.broker.exchanges import EXCHANGE_TYPES, Binding, Destination, Exchange
from router.broker.message import Message, QueuedMessage
from router.broker.permissions import CONFIGURE, READ, WRITE, Access
from router.broker.policies import Policy, match
from router.broker.ports import Clock, IdSource, RandomSource, Store
from router.broker.queues import Queue


class DefaultExchange(Exchange):
    """The nameless direct exchange every queue is bound to by its name (AMQP 0-9-1 §3.1.3.1)."""

    TYPE = "direct"

    def __init__(self, vhost: str, queues: dict[str, Queue]) -> None:
        super().__init__("", vhost, durable=True)
        self._queues = queues

    def route(self, message: Message, routing_key: str | None = None) -> list[Destination]:
        queue = self._queues.get(message.routing_key if routing_key is None else routing_key)
        return [queue] if queue is not None else []


def _text(value: object) -> str:
    """A string argument as text (longstr values may arrive as bytes)."""
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _default_refused() -> ChannelError:
    return ChannelError(ACCESS_REFUSED, "operation not permitted on the default exchange")


class VirtualHost:
    """Exchanges, queues and bindings of one vhost."""

    def __init__(
        self,
        name: str,
        ids: IdSource,
        *,
        clock: Clock | None = None,
        scheduler: Callable[[Queue, float | None], None] | None = None,
        random: RandomSource | None = None,
        store: Store | None = None,
    ) -> None:
        self.name = name
        self._ids = ids
        # durable exchanges, queues and bindings (and the queues' persistent messages) go here
        self.store = store
        self.clock = clock if clock is not None else Clock()
        self._scheduler = scheduler if scheduler is not None else (lambda queue, deadline: None)
        self._random: RandomSource = random if random is not None else _random.Random()
        self.queues: dict[str, Queue] = {}
        self.exchanges: dict[str, Exchange] = {}
        self.policies: dict[str, Policy] = {}
        # bindings by destination, to drop them when the destination goes away
        self._inbound: dict[int, dict[tuple[int, tuple[int, str, bytes]], Binding]] = {}
        # called with a queue that was deleted (consumers must be cancelled)
        self.on_queue_deleted: Callable[[Queue], None] = lambda queue: None
        self.exchanges[""] = DefaultExchange(name, self.queues)
        for xname, xtype in (
            ("amq.direct", "direct"),
            ("amq.fanout", "fanout"),
            ("amq.topic", "topic"),
            ("amq.headers", "headers"),
            ("amq.match", "headers"),
        ):
            self.exchanges[xname] = EXCHANGE_TYPES[xtype](xname, name, durable=True)
        # counters (management API): publishes, unroutable ones (returned to a mandatory
        # publisher or dropped), and messages dead-lettered by reason
        self.published = 0
        self.unroutable = 0
        self.returned = 0
        self.dead_lettered: dict[str, int] = {}

    # --- lookups -------------------------------------------------------------------------------

    def exchange(self, name: str) -> Exchange:
        exchange = self.exchanges.get(name)
        if exchange is None:
            raise ChannelError(NOT_FOUND, f"no exchange '{name}' in vhost '{self.name}'")
        return exchange

    def queue(self, name: str, owner: object | None = None) -> Queue:
        """The queue called ``name``; 404 if missing, 405 if exclusive to another connection."""
        queue = self.queues.get(name)
        if queue is None:
            raise ChannelError(NOT_FOUND, f"no queue '{name}' in vhost '{self.name}'")
        if queue.exclusive_owner is not None and queue.exclusive_owner is not owner:
            raise self._locked(name)
        return queue

    def _locked(self, name: str) -> ChannelError:
        return ChannelError(
            RESOURCE_LOCKED,
            f"cannot obtain exclusive access to locked queue '{name}' in vhost '{self.name}'. "
            f"It could be originally declared on another connection or the exclusive property "
            f"value does not match that of the original declaration.",
        )

    # --- exchanges -----------------------------------------------------------------------------

    def declare_exchange(
        self,
        name: str,
        type: str,
        *,
        passive: bool = False,
        durable: bool = False,
        auto_delete: bool = False,
        internal: bool = False,
        arguments: FieldTable | None = None,
        access: Access | None = None,
    ) -> Exchange:
        if passive:
            return self.exchange(name)  # RabbitMQ checks no permission for a passive declare
        cls = EXCHANGE_TYPES.get(type)
        if cls is None:
            # RabbitMQ's words: "invalid" for a name it could never know, "unknown" for x-types
            # that a plugin could provide
            adjective = "unknown" if type.startswith("x-") else "invalid"
            raise ConnectionError(COMMAND_INVALID, f"{adjective} exchange type '{type}'", 40, 10)
        if name == "":
            raise _default_refused()
        if access is not None:
            access.check(CONFIGURE, "exchange", name)
        existing = self.exchanges.get(name)
        if arguments:
            validate_exchange_arguments(arguments, name, self.name)
        if existing is None:
            if name.startswith("amq."):
                raise ChannelError(
                    ACCESS_REFUSED, f"exchange name '{name}' contains reserved prefix 'amq.*'"
                )
            if access is not None and arguments and "alternate-exchange" in arguments:
                # rabbit_channel: read on the new exchange, write on its alternate
                access.check(READ, "exchange", name)
                access.check(WRITE, "exchange", _text(arguments["alternate-exchange"]))
            exchange = cls(
                name,
                self.name,
                durable=durable,
                auto_delete=auto_delete,
                internal=internal,
                arguments=arguments,
            )
            policy = match(self.policies, "exchanges", name)
            if policy is not None:
                exchange.apply_policy(policy)
            self.exchanges[name] = exchange
            if durable and self.store is not None:
                self.store.exchange_declared(exchange)
            return exchange
        what = ("exchange", name, self.name)
        if type != existing.TYPE:
            raise inequivalent("type", *what, f"'{type}'", f"'{existing.TYPE}'")
        if existing.durable != durable:
            raise inequivalent(
                "durable", *what, f"'{flag(durable)}'", f"'{flag(existing.durable)}'"
            )
        if existing.auto_delete != auto_delete:
            raise inequivalent(
                "auto_delete", *what, f"'{flag(auto_delete)}'", f"'{flag(existing.auto_delete)}'"
            )
        if existing.internal != internal:
            raise inequivalent(
                "internal", *what, f"'{flag(internal)}'", f"'{flag(existing.internal)}'"
            )
        check_equivalent(
            existing.arguments, arguments or FieldTable(), ("alternate-exchange",), *what
        )
        return existing

    def delete_exchange(
        self, name: str, *, if_unused: bool = False, access: Access | None = None
    ) -> None:
        if name == "":
            raise _default_refused()
        if name.startswith("amq.") and name in self.exchanges:
            raise ChannelError(
                ACCESS_REFUSED,
                f"deletion of system exchange '{name}' in vhost '{self.name}' not allowed",
            )
        if access is not None:
            access.check(CONFIGURE, "exchange", name)
        exchange = self.exchanges.get(name)
        if exchange is None:
            return  # RabbitMQ 3.x: deleting a missing exchange succeeds
        if if_unused and exchange.bindings:
            raise ChannelError(
                PRECONDITION_FAILED, f"exchange '{name}' in vhost '{self.name}' in use"
            )
        self._remove_exchange(exchange)

    def _remove_exchange(self, exchange: Exchange) -> None:
        del self.exchanges[exchange.name]
        for binding in list(exchange.bindings.values()):
            self._drop_binding(binding)
        for binding in list(self._inbound.get(id(exchange), {}).values()):
            self._drop_binding(binding)
        if exchange.durable and self.store is not None:
            self.store.exchange_deleted(exchange)

    # --- queues --------------------------------------------------------------------------------

    def declare_queue(
        self,
        name: str,
        *,
        owner: object,
        passive: bool = False,
        durable: bool = False,
        exclusive: bool = False,
        auto_delete: bool = False,
        arguments: FieldTable | None = None,
        access: Access | None = None,
    ) -> Queue:
        """queue.declare. ``owner`` is the declaring connection (it owns an exclusive queue)."""
        if passive:
            queue = self.queue(name, owner)  # RabbitMQ checks no permission for a passive declare
            queue.touch()
            return queue
        arguments = arguments if arguments is not None else FieldTable()
        if name == "":
            name = f"amq.gen-{self._ids.token()}"
        elif name.startswith("amq."):  # RabbitMQ's check_name/2: any explicit amq.* name
            raise ChannelError(
                ACCESS_REFUSED, f"queue name '{name}' contains reserved prefix 'amq.*'"
            )
        if access is not None:
            access.check(CONFIGURE, "queue", name)  # a server-named queue: under its new name
        validate_queue_arguments(arguments, name, self.name)
        if arguments.get("x-queue-type") in ("quorum", b"quorum") and (not durable or exclusive):
            # RabbitMQ: quorum queues are durable and never exclusive
            prop = "non-durable" if not durable else "exclusive"
            raise ChannelError(
                PRECONDITION_FAILED,
                f"invalid property '{prop}' for queue '{name}' in vhost '{self.name}'",
            )
        # RabbitMQ 3.x: an exclusive queue is never durable (Durable andalso not Exclusive)
        durable = durable and not exclusive
        existing = self.queues.get(name)
        if existing is None:
            if access is not None and "x-dead-letter-exchange" in arguments:
                # rabbit_channel: read on the new queue, write on its dead-letter exchange
                access.check(READ, "queue", name)
                access.check(WRITE, "exchange", _text(arguments["x-dead-letter-exchange"]))
            queue = Queue(
                name,
                self.name,
                durable=durable,
                exclusive_owner=owner if exclusive else None,
                auto_delete=auto_delete,
                arguments=arguments,
                host=self,
                policy=match(self.policies, "queues", name),
            )
            self.queues[name] = queue
            if durable and self.store is not None:
                self.store.queue_declared(queue)
            return queue
        existing.touch()  # a declare counts as use (x-expires)
        what = ("queue", name, self.name)
        # rabbit_amqqueue:assert_equivalence/5 checks exclusive access before the flags
        if existing.exclusive_owner is not (owner if exclusive else None):
            raise self._locked(name)
        if existing.durable != durable:
            raise inequivalent(
                "durable", *what, f"'{flag(durable)}'", f"'{flag(existing.durable)}'"
            )
        if existing.auto_delete != auto_delete:
            raise inequivalent(
                "auto_delete", *what, f"'{flag(auto_delete)}'", f"'{flag(existing.auto_delete)}'"
            )
        check_equivalent(existing.arguments, arguments, QUEUE_EQUIVALENCE_ARGS, *what)
        return existing

    def delete_queue(
        self, name: str, *, owner: object, if_unused: bool = False, if_empty: bool = False
    ) -> int:
        queue = self.queues.get(name)
        if queue is None:
            return 0  # RabbitMQ 3.x: deleting a missing queue answers delete-ok, 0 messages
        self.queue(name, owner)
        if if_unused and queue.consumer_count:
            raise ChannelError(PRECONDITION_FAILED, f"queue '{name}' in vhost '{self.name}' in use")
        if if_empty and queue.message_count:
            raise ChannelError(
                PRECONDITION_FAILED, f"queue '{name}' in vhost '{self.name}' not empty"
            )
        return self.remove_queue(queue)

    def remove_queue(self, queue: Queue) -> int:
        """Delete a queue and its bindings; its consumers are cancelled by ``on_queue_deleted``."""
        if self.queues.get(queue.name) is not queue:
            return 0
        del self.queues[queue.name]
        for binding in list(self._inbound.get(id(queue), {}).values()):
            self._drop_binding(binding)
        self._inbound.pop(id(queue), None)
        count = queue.delete()
        if queue.durable and self.store is not None:
            self.store.queue_deleted(queue)
        self.on_queue_deleted(queue)
        return count

    def purge_queue(self, name: str, *, owner: object) -> int:
        return self.queue(name, owner).purge()

    # --- policies ------------------------------------------------------------------------------

    def set_policy(self, policy: Policy) -> None:
        """Add or replace a policy (already validated) and apply what changes at once. Only the
        objects it matches, or that had the policy it replaces, can change: the others are not
        matched again (a vhost of 10,000 queues takes one pattern search each)."""
        replaced = self.policies.get(policy.name)
        self.policies[policy.name] = policy
        self._apply_policies(
            lambda kind, obj: (
                (replaced is not None and obj.policy is replaced)
                or policy.applies_to(kind, obj.name)
            )
        )

    def clear_policy(self, name: str) -> bool:
        """Remove a policy; False when there was none by that name. The objects it applied to
        take the next policy that matches them, if any."""
        cleared = self.policies.pop(name, None)
        if cleared is None:
            return False
        self._apply_policies(lambda kind, obj: obj.policy is cleared)
        return True

    def _apply_policies(self, affected: Callable[[str, Queue | Exchange], bool]) -> None:
        """Match the ``affected`` queues and exchanges again and apply the policy to those whose
        changed (a replaced policy is a new object, so its queues see the new definition)."""
        policies = self.policies
        for queue in list(self.queues.values()):
            if affected("queues", queue):
                policy = match(policies, "queues", queue.name)
                if policy is not queue.policy:
                    queue.apply_policy(policy)
        for exchange in list(self.exchanges.values()):
            if exchange.name == "":
                continue  # the default exchange routes by queue name only (no alternate)
            if affected("exchanges", exchange):
                policy = match(policies, "exchanges", exchange.name)
                if policy is not exchange.policy:
                    exchange.apply_policy(policy)

    # --- bindings ------------------------------------------------------------------------------

    def bind(
        self, source_name: str, destination: Destination, routing_key: str, arguments: FieldTable
    ) -> None:
        if source_name == "" or (isinstance(destination, Exchange) and destination.name == ""):
            raise _default_refused()
        source = self.exchange(source_name)
        source.validate_binding(routing_key, arguments)
        binding = Binding(source, destination, routing_key, arguments)
        if source.bind(binding):
            self._inbound.setdefault(id(destination), {})[(id(source), binding.key)] = binding
            # RabbitMQ: a binding is durable when both its ends are
            if source.durable and destination.durable and self.store is not None:
                self.store.binding_added(binding)

    def bind_queue(
        self,
        exchange: str,
        queue_name: str,
        routing_key: str,
        arguments: FieldTable,
        owner: object,
    ) -> None:
        """queue.bind: the exchange is looked up before the queue, as RabbitMQ does."""
        if exchange == "":
            raise _default_refused()
        self.exchange(exchange)
        self.bind(exchange, self.queue(queue_name, owner), routing_key, arguments)

    def bind_exchange(
        self, source: str, destination: str, routing_key: str, arguments: FieldTable
    ) -> None:
        if source == "" or destination == "":
            raise _default_refused()
        self.exchange(source)
        self.bind(source, self.exchange(destination), routing_key, arguments)

    def unbind(
        self,
        source_name: str,
        destination: Destination | None,
        routing_key: str,
        arguments: FieldTable,
    ) -> None:
        """Remove a binding. Unbinding what does not exist succeeds (RabbitMQ 3.x)."""
        if source_name == "" or (isinstance(destination, Exchange) and destination.name == ""):
            raise _default_refused()
        source = self.exchanges.get(source_name)
        if source is None or destination is None:
            return
        probe = Binding(source, destination, routing_key, arguments)
        binding = source.bindings.get(probe.key)
        if binding is not None:
            self._drop_binding(binding)

    def _drop_binding(self, binding: Binding) -> None:
        source = binding.source
        if source.unbind(binding.key) is None:
            return
        inbound = self._inbound.get(id(binding.destination))
        if inbound is not None:
            inbound.pop((id(source), binding.key), None)
        if source.durable and binding.destination.durable and self.store is not None:
            self.store.binding_removed(binding)
        # RabbitMQ: an auto-delete exchange goes when its last binding (as source) goes
        if source.auto_delete and not source.bindings and self.exchanges.get(source.name) is source:
            self._remove_exchange(source)

    def bindings(self) -> list[Binding]:
        return [b for x in self.exchanges.values() for b in x.bindings.values()]

    # --- routing -------------------------------------------------------------------------------

    def route(self, exchange: Exchange, message: Message) -> list[Queue]:
        """The queues ``message`` reaches from ``exchange``, each once, following
        exchange-to-exchange bindings and alternate exchanges without looping."""
        exchange.published_in += 1
        if message.cc or message.bcc:
            destinations = _destinations(exchange, message)
        else:
            destinations = exchange.route(message)
        if not exchange.exchange_bindings and (destinations or exchange.alternate_exchange is None):
            if destinations:
                exchange.routed_out += 1
            else:
                exchange.unroutable += 1
            return destinations  # type: ignore[return-value]
        queues: dict[Queue, None] = {}
        seen = {id(exchange)}
        self._collect(exchange, destinations, message, queues, seen)
        if queues:
            exchange.routed_out += 1
        else:
            exchange.unroutable += 1
        return list(queues)

    def _collect(
        self,
        exchange: Exchange,
        destinations: list[Destination],
        message: Message,
        queues: dict[Queue, None],
        seen: set[int],
    ) -> None:
        for destination in destinations:
            if isinstance(destination, Queue):
                queues[destination] = None
            elif id(destination) not in seen:
                seen.add(id(destination))
                destination.published_in += 1
                self._collect(
                    destination, _destinations(destination, message), message, queues, seen
                )
        # RabbitMQ (rabbit_exchange:process_alternate/2): the alternate exchange is used only
        # when this exchange itself routed to nothing, not when its destinations did
        if not destinations and exchange.alternate_exchange is not None:
            alternate = self.exchanges.get(exchange.alternate_exchange)
            if alternate is not None and id(alternate) not in seen:
                seen.add(id(alternate))
                alternate.published_in += 1
                self._collect(alternate, _destinations(alternate, message), message, queues, seen)

    # --- the queues' host: time, dead-lettering, leases, x-expires -----------------------------

    def random(self) -> float:
        return self._random.random()

    def schedule(self, queue: Queue, deadline: float | None) -> None:
        self._scheduler(queue, deadline)

    def queue_expired(self, queue: Queue) -> None:
        self.remove_queue(queue)

    def lease_expired(self, queue: Queue, entry: QueuedMessage) -> None:
        consumer = entry.consumer
        if consumer is not None and hasattr(consumer, "lease_expired"):
            consumer.lease_expired(queue, entry)

    def dead_letter(self, queue: Queue, entries: list[QueuedMessage], reason: str) -> None:
        """Route messages just removed from ``queue`` through its dead-letter exchange.

        Removal from the source and arrival at the targets happen in this one synchronous step,
        so a dead-lettered message is never lost in between. A missing dead-letter exchange drops
        them (RabbitMQ). Automatic cycles are cut per target queue (``deadletter.is_cycle``).
        """
        options = queue.options
        name = options.dead_letter_exchange
        exchange = self.exchanges.get(name) if name is not None else None
        if exchange is None:
            return
        routing_key = options.dead_letter_routing_key
        counts = self.dead_lettered
        counts[reason] = counts.get(reason, 0) + len(entries)
        time_s = int(self.clock.wall())
        for entry in entries:
            message = entry.message
            headers = dead_letter_headers(
                message.headers,
                queue=queue.name,
                reason=reason,
                exchange=message.exchange,
                routing_keys=[message.routing_key, *message.cc],
                expiration=message.expiration,
                time_s=time_s,
            )
            cc: tuple[str, ...] = ()
            bcc: tuple[str, ...] = ()
            if routing_key is not None:
                headers.pop("CC", None)  # RabbitMQ: a dead-letter routing key replaces them all
                key = routing_key
            else:
                key, cc, bcc = message.routing_key, message.cc, message.bcc
            properties = decode_properties(message.properties).replace(
                headers=headers, expiration=None
            )
            copy = Message(
                exchange.name,
                key,
                properties.encode(),
                message.body,
                message.delivery_mode,
                message.priority,
                None,
                headers=headers,
                cc=cc,
                bcc=bcc,
            )
            for target in self.route(exchange, copy):
                if not is_cycle(target.name, headers, reason):
                    target.publish(copy)


def _destinations(exchange: Exchange, message: Message) -> list[Destination]:
    """An exchange's destinations for every routing key of the message (CC and BCC included)."""
    if not message.cc and not message.bcc:
        return exchange.route(message)
    found: dict[Destination, None] = {}
    for key in message.routing_keys:
        for destination in exchange.route(message, key):
            found[destination] = None
    return list(found)
