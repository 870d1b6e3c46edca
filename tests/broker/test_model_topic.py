"""Topic exchange: RabbitMQ's word splitting and wildcard rules, the trie and its cache."""

from __future__ import annotations

import pytest
from model_helpers import message

from router.amqp.tables import FieldTable
from router.broker.exchanges import Binding
from router.broker.exchanges.topic import TopicExchange, split_key
from router.broker.queues import Queue


def _queue(name: str) -> Queue:
    return Queue(name, "/")


def _bind(exchange: TopicExchange, queue: Queue, key: str) -> Binding:
    binding = Binding(exchange, queue, key, FieldTable())
    assert exchange.bind(binding)
    return binding


def _matches(binding_key: str, routing_key: str) -> bool:
    exchange = TopicExchange("t", "/")
    queue = _queue("q")
    _bind(exchange, queue, binding_key)
    return exchange.route(message(routing_key)) == [queue]


def _reference(pattern: list[str], words: list[str]) -> bool:
    """RabbitMQ's semantics, written independently: '#' zero or more words, '*' exactly one."""
    if not pattern:
        return not words
    head, rest = pattern[0], pattern[1:]
    if head == "#":
        return any(_reference(rest, words[i:]) for i in range(len(words) + 1))
    if not words:
        return False
    return (head == "*" or head == words[0]) and _reference(rest, words[1:])


def test_empty_key_has_zero_words():
    assert split_key("") == []


def test_empty_words_count_as_words():
    assert split_key("a..b") == ["a", "", "b"]
    assert split_key("a.") == ["a", ""]
    assert split_key(".") == ["", ""]


def test_empty_binding_key_matches_only_the_empty_routing_key():
    assert _matches("", "")
    assert not _matches("", "a")
    assert not _matches("", ".")


def test_hash_matches_the_empty_routing_key():
    assert _matches("#", "")


def test_hash_matches_any_number_of_words():
    for key in ("a", "a.b", "a.b.c", ".", "a..b"):
        assert _matches("#", key), key


def test_star_does_not_match_the_empty_routing_key():
    assert not _matches("*", "")


def test_star_matches_exactly_one_word():
    assert _matches("*", "a")
    assert not _matches("*", "a.b")


def test_star_matches_an_empty_word():
    assert _matches("a.*", "a.")
    assert _matches("*.a", ".a")
    assert _matches("a.*.b", "a..b")
    assert _matches("*.*", ".")


def test_star_requires_the_word_to_exist():
    assert not _matches("a.*", "a")


def test_trailing_hash_matches_zero_words_after_the_prefix():
    assert _matches("a.#", "a")
    assert _matches("a.#", "a.b")
    assert _matches("a.#", "a.b.c")
    assert not _matches("a.#", "b")


def test_leading_hash_matches_zero_words_before_the_suffix():
    assert _matches("#.a", "a")
    assert _matches("#.a", "x.y.a")
    assert not _matches("#.a", "a.x")


def test_hash_in_the_middle_matches_zero_or_more_words():
    assert _matches("a.#.b", "a.b")
    assert _matches("a.#.b", "a.x.y.b")
    assert not _matches("a.#.b", "a.x.y")


def test_hash_then_star_does_not_match_the_empty_routing_key():
    assert not _matches("#.*", "")
    assert _matches("#.*", "a")
    assert _matches("#.*", "a.b.c")


def test_two_hashes_match_the_empty_routing_key():
    assert _matches("#.#", "")


def test_star_hash_star_needs_at_least_two_words():
    assert not _matches("*.#.*", "a")
    assert _matches("*.#.*", "a.b")
    assert _matches("*.#.*", "a.b.c")


def test_wildcards_in_the_routing_key_are_plain_words():
    assert not _matches("a", "*")
    assert not _matches("a", "#")
    assert _matches("*", "#")


@pytest.mark.parametrize(
    "binding_key",
    ["#", "*", "", "a", "a.*", "a.#", "#.a", "*.a", "a.*.b", "a.#.b", "#.#", "*.*", "a.", ".a",
     "*.#.*", "#.*", "#.b.#", "a.#.#.b"],
)  # fmt: skip
def test_matching_agrees_with_an_independent_reference_matcher(binding_key):
    routing_keys = ["", "a", "a.", ".a", "a.b", "a..b", "a.b.b", ".", "a.x.y.b", "b", "b.a.b"]
    for routing_key in routing_keys:
        expected = _reference(split_key(binding_key), split_key(routing_key))
        assert _matches(binding_key, routing_key) is expected, (binding_key, routing_key)


def test_a_queue_matched_by_several_bindings_is_routed_once():
    exchange = TopicExchange("t", "/")
    queue = _queue("q")
    for key in ("#", "a.*", "a.b", "*.b", "a.#"):
        _bind(exchange, queue, key)
    assert exchange.route(message("a.b")) == [queue]


def test_each_matching_queue_is_routed_to():
    exchange = TopicExchange("t", "/")
    q1, q2, q3 = _queue("q1"), _queue("q2"), _queue("q3")
    _bind(exchange, q1, "a.*")
    _bind(exchange, q2, "#.b")
    _bind(exchange, q3, "c")
    assert set(exchange.route(message("a.b"))) == {q1, q2}


def test_an_identical_binding_is_not_added_twice():
    exchange = TopicExchange("t", "/")
    queue = _queue("q")
    _bind(exchange, queue, "a.*")
    assert not exchange.bind(Binding(exchange, queue, "a.*", FieldTable()))


def test_removing_the_last_binding_prunes_the_trie_to_an_empty_root():
    exchange = TopicExchange("t", "/")
    queue = _queue("q")
    binding = _bind(exchange, queue, "a.b.c")
    exchange.unbind(binding.key)
    assert exchange._root.children == {}
    assert exchange._root.targets == {}


def test_removing_a_binding_keeps_nodes_another_binding_still_uses():
    exchange = TopicExchange("t", "/")
    q1, q2 = _queue("q1"), _queue("q2")
    _bind(exchange, q1, "a.b")
    deep = _bind(exchange, q2, "a.b.c.d")
    exchange.unbind(deep.key)
    assert list(exchange._root.children) == ["a"]
    assert exchange._root.children["a"].children["b"].children == {}
    assert exchange.route(message("a.b")) == [q1]


def test_removing_a_binding_with_empty_words_prunes_the_trie():
    exchange = TopicExchange("t", "/")
    queue = _queue("q")
    binding = _bind(exchange, queue, "a..#")
    exchange.unbind(binding.key)
    assert exchange._root.children == {}


def test_unbinding_invalidates_a_cached_route():
    exchange = TopicExchange("t", "/")
    queue = _queue("q")
    binding = _bind(exchange, queue, "a.*")
    assert exchange.route(message("a.b")) == [queue]
    exchange.unbind(binding.key)
    assert exchange.route(message("a.b")) == []


def test_binding_invalidates_a_cached_miss():
    exchange = TopicExchange("t", "/")
    queue = _queue("q")
    assert exchange.route(message("a.b")) == []
    _bind(exchange, queue, "#.b")
    assert exchange.route(message("a.b")) == [queue]


def test_a_queue_stays_routed_while_another_of_its_bindings_matches():
    exchange = TopicExchange("t", "/")
    queue = _queue("q")
    first = _bind(exchange, queue, "a.*")
    _bind(exchange, queue, "#")
    exchange.route(message("a.b"))
    exchange.unbind(first.key)
    assert exchange.route(message("a.b")) == [queue]


def test_a_thousand_bindings_route_each_key_to_its_own_queue():
    exchange = TopicExchange("t", "/")
    queues = [_queue(f"q{i}") for i in range(1000)]
    for i, queue in enumerate(queues):
        _bind(exchange, queue, f"orders.{i}.*")
    for i in (0, 1, 499, 999):
        assert exchange.route(message(f"orders.{i}.created")) == [queues[i]]
    assert exchange.route(message("orders.1000.created")) == []


def test_a_thousand_bindings_plus_a_hash_binding_route_to_two_queues():
    exchange = TopicExchange("t", "/")
    queues = [_queue(f"q{i}") for i in range(1000)]
    for i, queue in enumerate(queues):
        _bind(exchange, queue, f"k.{i}")
    everything = _queue("all")
    _bind(exchange, everything, "#")
    assert set(exchange.route(message("k.500"))) == {queues[500], everything}


def test_unbinding_a_thousand_bindings_leaves_an_empty_trie():
    exchange = TopicExchange("t", "/")
    bindings = [_bind(exchange, _queue(f"q{i}"), f"a.{i % 7}.{i}.#") for i in range(1000)]
    for binding in bindings:
        exchange.unbind(binding.key)
    assert exchange._root.children == {}
    assert exchange.bindings == {}
    assert exchange.route(message("a.1.1")) == []


def test_matched_counts_once_per_destination_even_when_cached():
    exchange = TopicExchange("t", "/")
    queue = _queue("q")
    binding = _bind(exchange, queue, "a.*")
    exchange.route(message("a.b"))
    exchange.route(message("a.b"))
    assert binding.matched == 2
