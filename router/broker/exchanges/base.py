"""What every exchange type shares: identity, flags, the binding set and routing's contract.

A binding is identified by (destination, routing key, arguments), as RabbitMQ identifies it: the
same key with other arguments is another binding. A subclass indexes bindings for its own routing
(``_add`` / ``_remove``) and answers ``route(message)`` with the destinations, each once.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import TYPE_CHECKING, ClassVar, Union

from router.amqp.tables import FieldTable, encode_table
from router.broker.message import Message
from router.broker.policies import Policy, effective_alternate_exchange

if TYPE_CHECKING:
    from router.broker.queues import Queue

Destination = Union["Queue", "Exchange"]


def arguments_key(arguments: FieldTable) -> bytes:
    """A hashable identity for binding arguments: type tags and key order-insensitive."""
    if not arguments:
        return b""
    ordered = FieldTable()
    for key in sorted(arguments):
        ordered.set_typed(key, arguments.tag(key), arguments[key])
    return encode_table(ordered)


class DedupCache:
    """``x-message-deduplication`` on an exchange (names as the community plugin uses them): the
    last ``x-cache-size`` keys seen, each remembered for ``x-cache-ttl`` ms (forever when unset).
    A message's key is its ``x-deduplication-header`` header, else its message_id; a message with
    neither is never a duplicate."""

    __slots__ = ("_seen", "duplicates", "last_expires", "last_key", "size", "ttl")

    def __init__(self, size: int, ttl_ms: int | None) -> None:
        self.size = size
        self.ttl = ttl_ms / 1000 if ttl_ms is not None else None
        self._seen: OrderedDict[str, float] = OrderedDict()
        self.duplicates = 0
        # the key the last non-duplicate remembered (None: it had none), for the store
        self.last_key: str | None = None
        self.last_expires: float | None = None

    def seen(self, message: Message, now: float) -> bool:
        """True for a duplicate (counted); otherwise remembers the message's key."""
        self.last_key = None
        headers = message.headers
        if headers is not None and "x-deduplication-header" in headers:
            key = "h:" + str(headers["x-deduplication-header"])
        else:
            message_id = message.message_id
            if message_id is None:
                return False
            key = "m:" + message_id
        expires = self._seen.get(key)
        if expires is not None and (self.ttl is None or expires > now):
            self.duplicates += 1
            return True
        self.remember(key, now + self.ttl if self.ttl is not None else None)
        return False

    def remember(self, key: str, expires_at: float | None) -> None:
        """Remember ``key`` (until ``expires_at``, monotonic; None: for as long as it fits)."""
        self._seen[key] = expires_at if expires_at is not None else 0.0
        self._seen.move_to_end(key)
        while len(self._seen) > self.size:
            self._seen.popitem(last=False)
        self.last_key = key
        self.last_expires = expires_at


class Binding:
    """source --routing_key/arguments--> destination."""

    __slots__ = ("arguments", "destination", "key", "matched", "routing_key", "source")

    def __init__(
        self, source: Exchange, destination: Destination, routing_key: str, arguments: FieldTable
    ) -> None:
        self.source = source
        self.destination = destination
        self.routing_key = routing_key
        self.arguments = arguments
        self.key = (id(destination), routing_key, arguments_key(arguments))
        self.matched = 0

    def __repr__(self) -> str:
        return f"<Binding {self.source.name!r} -> {self.destination.name!r} {self.routing_key!r}>"


class Exchange:
    """Base of the exchange types."""

    TYPE: ClassVar[str] = ""

    def __init__(
        self,
        name: str,
        vhost: str,
        *,
        durable: bool = False,
        auto_delete: bool = False,
        internal: bool = False,
        arguments: FieldTable | None = None,
    ) -> None:
        self.name = name
        self.vhost = vhost
        self.durable = durable
        self.auto_delete = auto_delete
        self.internal = internal
        self.arguments = arguments if arguments is not None else FieldTable()
        self.bindings: dict[tuple[int, str, bytes], Binding] = {}
        self.exchange_bindings = 0  # bindings whose destination is an exchange
        # the policy in force (policies.py); the alternate exchange may come from it
        self.policy: Policy | None = None
        self.alternate_exchange = effective_alternate_exchange(self.arguments, None)
        self.dedup: DedupCache | None = None
        if self.arguments.get("x-message-deduplication") is True:
            size = self.arguments.get("x-cache-size")
            ttl = self.arguments.get("x-cache-ttl")
            self.dedup = DedupCache(
                size if isinstance(size, int) and size > 0 else 1024,
                ttl if isinstance(ttl, int) and not isinstance(ttl, bool) else None,
            )
        self.published_in = 0
        self.routed_out = 0
        self.unroutable = 0

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"

    def apply_policy(self, policy: Policy | None) -> None:
        """A policy now applies to the exchange (None: none does): ``alternate-exchange`` is
        taken from it unless the exchange was declared with one."""
        self.policy = policy
        self.alternate_exchange = effective_alternate_exchange(self.arguments, policy)

    def validate_binding(self, routing_key: str, arguments: FieldTable) -> None:
        """Raise a ChannelError when a binding's key or arguments make no sense for this type."""

    def bind(self, binding: Binding) -> bool:
        """Add a binding; False when an identical one exists."""
        if binding.key in self.bindings:
            return False
        self.bindings[binding.key] = binding
        if isinstance(binding.destination, Exchange):
            self.exchange_bindings += 1
        self._add(binding)
        return True

    def unbind(self, key: tuple[int, str, bytes]) -> Binding | None:
        binding = self.bindings.pop(key, None)
        if binding is not None:
            if isinstance(binding.destination, Exchange):
                self.exchange_bindings -= 1
            self._remove(binding)
        return binding

    def route(self, message: Message, routing_key: str | None = None) -> list[Destination]:
        """The destinations of ``message``, each once, routed by ``routing_key`` (default: the
        message's own; CC/BCC routing passes the other keys)."""
        raise NotImplementedError

    def _add(self, binding: Binding) -> None:
        raise NotImplementedError

    def _remove(self, binding: Binding) -> None:
        raise NotImplementedError
