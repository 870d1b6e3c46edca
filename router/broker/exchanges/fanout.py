"""Fanout exchange: every bound destination gets a copy; the routing key is ignored."""

from __future__ import annotations

from router.broker.exchanges.base import Binding, Destination, Exchange
from router.broker.message import Message


class FanoutExchange(Exchange):
    TYPE = "fanout"

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self._targets: dict[Destination, list[Binding]] = {}
        self._cached: list[Destination] | None = None

    def route(self, message: Message, routing_key: str | None = None) -> list[Destination]:
        if self._cached is None:
            self._cached = list(self._targets)
        for bindings in self._targets.values():
            bindings[0].matched += 1
        return self._cached

    def _add(self, binding: Binding) -> None:
        self._targets.setdefault(binding.destination, []).append(binding)
        self._cached = None

    def _remove(self, binding: Binding) -> None:
        bindings = self._targets[binding.destination]
        bindings.remove(binding)
        if not bindings:
            del self._targets[binding.destination]
        self._cached = None
