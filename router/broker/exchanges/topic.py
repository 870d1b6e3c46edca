"""Topic exchange: dot-separated words, ``*`` matches exactly one word, ``#`` zero or more.

Words are split as RabbitMQ splits them (``rabbit_exchange_type_topic:split_topic_key/1``): the
empty key has no words, and empty words count (``"a..b"`` is ``a``, ``""``, ``b``; ``"a."`` is ``a``,
``""``), so ``*`` matches an empty word. Bindings live in a trie keyed by word; matching walks the
trie once per routing key and memoises results in a bounded cache, cleared on every bind/unbind.
"""

from __future__ import annotations

from router.broker.exchanges.base import Binding, Destination, Exchange
from router.broker.message import Message

CACHE_SIZE = 4096


def split_key(key: str) -> list[str]:
    """Words of a routing or binding key; ``""`` has none."""
    return key.split(".") if key else []


class _Node:
    __slots__ = ("children", "targets")

    def __init__(self) -> None:
        self.children: dict[str, _Node] = {}
        self.targets: dict[Destination, list[Binding]] = {}


class TopicExchange(Exchange):
    TYPE = "topic"

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self._root = _Node()
        self._cache: dict[str, tuple[list[Destination], list[Binding]]] = {}

    def route(self, message: Message, routing_key: str | None = None) -> list[Destination]:
        key = message.routing_key if routing_key is None else routing_key
        cached = self._cache.get(key)
        if cached is None:
            found: dict[Destination, list[Binding]] = {}
            _match(self._root, split_key(key), 0, found)
            cached = (list(found), [bindings[0] for bindings in found.values()])
            if len(self._cache) >= CACHE_SIZE:
                self._cache.clear()
            self._cache[key] = cached
        for binding in cached[1]:
            binding.matched += 1
        return cached[0]

    def _add(self, binding: Binding) -> None:
        node = self._root
        for word in split_key(binding.routing_key):
            child = node.children.get(word)
            if child is None:
                child = node.children[word] = _Node()
            node = child
        node.targets.setdefault(binding.destination, []).append(binding)
        self._cache.clear()

    def _remove(self, binding: Binding) -> None:
        path = [self._root]
        words = split_key(binding.routing_key)
        for word in words:
            path.append(path[-1].children[word])
        node = path[-1]
        bindings = node.targets[binding.destination]
        bindings.remove(binding)
        if not bindings:
            del node.targets[binding.destination]
        # prune empty nodes bottom-up
        for depth in range(len(words), 0, -1):
            child = path[depth]
            if child.targets or child.children:
                break
            del path[depth - 1].children[words[depth - 1]]
        self._cache.clear()


def _match(node: _Node, words: list[str], i: int, found: dict[Destination, list[Binding]]) -> None:
    children = node.children
    if i == len(words):
        if node.targets:
            for destination, bindings in node.targets.items():
                found.setdefault(destination, bindings)
        hash_child = children.get("#")
        if hash_child is not None:
            _match(hash_child, words, i, found)
        return
    if children:
        child = children.get(words[i])
        if child is not None:
            _match(child, words, i + 1, found)
        if words[i] != "*":
            child = children.get("*")
            if child is not None:
                _match(child, words, i + 1, found)
        hash_child = children.get("#")
        if hash_child is not None:
            for j in range(i, len(words) + 1):
                _match(hash_child, words, j, found)
