"""Headers exchange: x-match all/any/all-with-x/any-with-x, typed comparison, void = presence."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from model_helpers import message

from router.amqp.errors import ChannelError
from router.amqp.tables import FieldTable
from router.broker.exchanges import Binding
from router.broker.exchanges.headers import HeadersExchange, _matches, _Spec
from router.broker.queues import Queue


def _table(**typed: tuple[str, object]) -> FieldTable:
    """A FieldTable from name=(tag, value)."""
    table = FieldTable()
    for key, (tag, value) in typed.items():
        table.set_typed(key.replace("_", "-"), tag, value)
    return table


def _routes(arguments: FieldTable, headers: FieldTable | None) -> bool:
    exchange = HeadersExchange("h", "/")
    queue = Queue("q", "/")
    exchange.validate_binding("", arguments)
    exchange.bind(Binding(exchange, queue, "", arguments))
    return exchange.route(message(headers=headers)) == [queue]


def _match(kind: str, **typed: tuple[str, object]) -> FieldTable:
    table = _table(**typed)
    table.set_typed("x-match", "S", kind)
    return table


def test_all_is_the_default_and_needs_every_pair():
    binding = _table(a=("S", "1"), b=("S", "2"))
    assert _routes(binding, _table(a=("S", "1"), b=("S", "2"), c=("S", "3")))
    assert not _routes(binding, _table(a=("S", "1")))


def test_all_fails_when_a_value_differs():
    binding = _match("all", a=("S", "1"), b=("S", "2"))
    assert not _routes(binding, _table(a=("S", "1"), b=("S", "x")))


def test_any_needs_one_pair():
    binding = _match("any", a=("S", "1"), b=("S", "2"))
    assert _routes(binding, _table(b=("S", "2")))
    assert not _routes(binding, _table(a=("S", "2"), b=("S", "1")))


def test_a_message_without_headers_matches_no_binding_with_pairs():
    assert not _routes(_match("all", a=("S", "1")), None)
    assert not _routes(_match("any", a=("S", "1")), None)


def test_all_with_nothing_to_compare_matches_every_message():
    assert _routes(_match("all"), None)
    assert _routes(_match("all"), _table(a=("S", "1")))


def test_any_with_nothing_to_compare_matches_no_message():
    assert not _routes(_match("any"), _table(a=("S", "1")))


def test_all_ignores_x_arguments_of_the_binding():
    binding = _match("all", a=("S", "1"), x_tenant=("S", "t1"))
    assert _routes(binding, _table(a=("S", "1")))


def test_any_ignores_x_arguments_of_the_binding():
    binding = _match("any", x_tenant=("S", "t1"))
    assert not _routes(binding, _table(x_tenant=("S", "t1")))


def test_all_with_x_compares_x_arguments_too():
    binding = _match("all-with-x", a=("S", "1"), x_tenant=("S", "t1"))
    assert not _routes(binding, _table(a=("S", "1")))
    assert _routes(binding, _table(a=("S", "1"), x_tenant=("S", "t1")))


def test_any_with_x_matches_on_an_x_argument_alone():
    binding = _match("any-with-x", a=("S", "1"), x_tenant=("S", "t1"))
    assert _routes(binding, _table(x_tenant=("S", "t1")))
    assert not _routes(binding, _table(x_tenant=("S", "t2")))


def test_boolean_true_does_not_equal_integer_one():
    assert not _routes(_match("all", flag=("t", True)), _table(flag=("I", 1)))
    assert not _routes(_match("all", flag=("I", 1)), _table(flag=("t", True)))


def test_boolean_equals_boolean():
    assert _routes(_match("all", flag=("t", True)), _table(flag=("t", True)))
    assert not _routes(_match("all", flag=("t", True)), _table(flag=("t", False)))


def test_integers_of_different_widths_compare_by_value():
    assert _routes(_match("all", n=("b", 7)), _table(n=("l", 7)))
    assert _routes(_match("all", n=("I", 7)), _table(n=("s", 7)))
    assert not _routes(_match("all", n=("I", 7)), _table(n=("l", 8)))


def test_a_string_never_equals_the_integer_it_spells():
    assert not _routes(_match("all", n=("S", "1")), _table(n=("I", 1)))
    assert not _routes(_match("all", n=("I", 1)), _table(n=("S", "1")))


def test_a_void_binding_value_matches_on_presence_alone():
    binding = _match("all", trace=("V", None))
    assert _routes(binding, _table(trace=("S", "anything")))
    assert _routes(binding, _table(trace=("I", 0)))
    assert not _routes(binding, _table(other=("S", "x")))


def test_a_void_binding_value_under_any_matches_when_the_key_is_present():
    binding = _match("any", trace=("V", None), a=("S", "1"))
    assert _routes(binding, _table(trace=("t", False)))


def test_an_invalid_x_match_is_refused_with_406():
    with pytest.raises(ChannelError) as caught:
        _routes(_match("some"), None)
    assert caught.value.reply_code == 406


def test_a_queue_matched_by_two_bindings_is_routed_once():
    exchange = HeadersExchange("h", "/")
    queue = Queue("q", "/")
    exchange.bind(Binding(exchange, queue, "", _match("all", a=("S", "1"))))
    exchange.bind(Binding(exchange, queue, "", _match("any", b=("S", "2"))))
    assert exchange.route(message(headers=_table(a=("S", "1"), b=("S", "2")))) == [queue]


def test_unbinding_stops_routing():
    exchange = HeadersExchange("h", "/")
    queue = Queue("q", "/")
    binding = Binding(exchange, queue, "", _match("all", a=("S", "1")))
    exchange.bind(binding)
    exchange.unbind(binding.key)
    assert exchange.route(message(headers=_table(a=("S", "1")))) == []


def test_the_same_arguments_in_another_order_are_the_same_binding():
    exchange = HeadersExchange("h", "/")
    queue = Queue("q", "/")
    first = _match("all", a=("S", "1"), b=("S", "2"))
    second = FieldTable()
    second.set_typed("b", "S", "2")
    second.set_typed("a", "S", "1")
    second.set_typed("x-match", "S", "all")
    assert exchange.bind(Binding(exchange, queue, "", first))
    assert not exchange.bind(Binding(exchange, queue, "", second))


# --- the index finds exactly what checking every binding finds ---------------------------------

_VALUES = [("S", "a"), ("S", "b"), ("l", 1), ("d", 1.0), ("t", True), ("I", 2), ("V", None)]


@st.composite
def _binding_arguments(draw: st.DrawFn) -> FieldTable:
    table = FieldTable()
    kind = draw(st.sampled_from(["all", "any", "all-with-x", "any-with-x", None]))
    if kind is not None:
        table.set_typed("x-match", "S", kind)
    for key in draw(st.lists(st.sampled_from(["k1", "k2", "k3", "x-k"]), unique=True, max_size=3)):
        tag, value = draw(st.sampled_from(_VALUES))
        table.set_typed(key, tag, value)
    return table


@st.composite
def _headers(draw: st.DrawFn) -> FieldTable | None:
    if draw(st.booleans()) and draw(st.booleans()):
        return None
    table = FieldTable()
    for key in draw(st.lists(st.sampled_from(["k1", "k2", "k3", "x-k"]), unique=True, max_size=4)):
        tag, value = draw(st.sampled_from([v for v in _VALUES if v[0] != "V"]))
        table.set_typed(key, tag, value)
    return table


@settings(max_examples=300, deadline=None)
@given(
    bindings=st.lists(st.tuples(_binding_arguments(), st.integers(0, 3)), max_size=12),
    removed=st.lists(st.integers(0, 11), max_size=3),
    headers=st.lists(_headers(), min_size=1, max_size=5),
)
def test_indexed_routing_equals_checking_every_binding(
    bindings: list[tuple[FieldTable, int]], removed: list[int], headers: list[FieldTable | None]
) -> None:
    exchange = HeadersExchange("h", "/")
    queues = [Queue(f"q{i}", "/") for i in range(4)]
    made = []
    for arguments, target in bindings:
        binding = Binding(exchange, queues[target], "", arguments)
        if exchange.bind(binding):
            made.append(binding)
    for index in removed:
        if index < len(made):
            exchange.unbind(made.pop(index).key)
    specs = [_Spec(binding) for binding in made]
    for table in headers:
        expected: list[Queue] = []
        for spec in specs:
            destination = spec.binding.destination
            if _matches(spec, table) and destination not in expected:
                expected.append(destination)  # type: ignore[arg-type]
        assert exchange.route(message(headers=table)) == expected
