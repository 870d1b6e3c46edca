"""Direct exchange: the routing key equals the binding key."""

from __future__ import annotations

from router.broker.exchanges.base import Binding, Destination, Exchange
from router.broker.message import Message


class DirectExchange(Exchange):
    TYPE = "direct"

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self._routes: dict[str, dict[Destination, list[Binding]]] = {}

    def route(self, message: Message, routing_key: str | None = None) -> list[Destination]:
        targets = self._routes.get(message.routing_key if routing_key is None else routing_key)
        if not targets:
            return []
        for bindings in targets.values():
            bindings[0].matched += 1
        return list(targets)

    def _add(self, binding: Binding) -> None:
        self._routes.setdefault(binding.routing_key, {}).setdefault(binding.destination, []).append(
            binding
        )

    def _remove(self, binding: Binding) -> None:
        targets = self._routes[binding.routing_key]
        bindings = targets[binding.destination]
        bindings.remove(binding)
        if not bindings:
            del targets[binding.destination]
            if not targets:
                del self._routes[binding.routing_key]
