"""Routing through a VirtualHost: direct, fanout, the default exchange, exchange-to-exchange
bindings and alternate exchanges."""

from __future__ import annotations

import pytest
from model_helpers import message

from router.amqp.errors import ChannelError
from router.amqp.tables import FieldTable
from router.broker.ports import CountingIds
from router.broker.vhost import VirtualHost

OWNER = object()


def _vhost() -> VirtualHost:
    return VirtualHost("/", CountingIds())


def _route(vhost: VirtualHost, exchange: str, key: str = "") -> list[str]:
    return sorted(q.name for q in vhost.route(vhost.exchange(exchange), message(key)))


def _queues(vhost: VirtualHost, *names: str) -> None:
    for name in names:
        vhost.declare_queue(name, owner=OWNER)


def _bind(vhost: VirtualHost, exchange: str, queue: str, key: str = "") -> None:
    vhost.bind(exchange, vhost.queue(queue, OWNER), key, FieldTable())


def _bind_x(vhost: VirtualHost, source: str, destination: str, key: str = "") -> None:
    vhost.bind(source, vhost.exchange(destination), key, FieldTable())


def _ae(name: str) -> FieldTable:
    return FieldTable({"alternate-exchange": name})


# --- direct --------------------------------------------------------------------------------------


def test_direct_routes_on_an_equal_key_only():
    vhost = _vhost()
    _queues(vhost, "q")
    _bind(vhost, "amq.direct", "q", "red")
    assert _route(vhost, "amq.direct", "red") == ["q"]
    assert _route(vhost, "amq.direct", "Red") == []
    assert _route(vhost, "amq.direct", "red.x") == []


def test_direct_routes_one_key_to_every_queue_bound_with_it():
    vhost = _vhost()
    _queues(vhost, "q1", "q2", "q3")
    _bind(vhost, "amq.direct", "q1", "k")
    _bind(vhost, "amq.direct", "q2", "k")
    _bind(vhost, "amq.direct", "q3", "other")
    assert _route(vhost, "amq.direct", "k") == ["q1", "q2"]


def test_direct_routes_the_empty_key_to_a_queue_bound_with_the_empty_key():
    vhost = _vhost()
    _queues(vhost, "q")
    _bind(vhost, "amq.direct", "q", "")
    assert _route(vhost, "amq.direct", "") == ["q"]


def test_direct_unbind_of_one_key_keeps_the_other_key():
    vhost = _vhost()
    _queues(vhost, "q")
    _bind(vhost, "amq.direct", "q", "a")
    _bind(vhost, "amq.direct", "q", "b")
    vhost.unbind("amq.direct", vhost.queue("q", OWNER), "a", FieldTable())
    assert _route(vhost, "amq.direct", "a") == []
    assert _route(vhost, "amq.direct", "b") == ["q"]


def test_direct_binding_with_other_arguments_is_another_binding():
    vhost = _vhost()
    _queues(vhost, "q")
    queue = vhost.queue("q", OWNER)
    vhost.bind("amq.direct", queue, "k", FieldTable())
    vhost.bind("amq.direct", queue, "k", FieldTable({"v": 1}))
    assert len(vhost.exchange("amq.direct").bindings) == 2
    vhost.unbind("amq.direct", queue, "k", FieldTable())
    assert _route(vhost, "amq.direct", "k") == ["q"]


# --- fanout --------------------------------------------------------------------------------------


def test_fanout_ignores_the_routing_key():
    vhost = _vhost()
    _queues(vhost, "q1", "q2")
    _bind(vhost, "amq.fanout", "q1", "x")
    _bind(vhost, "amq.fanout", "q2", "y")
    assert _route(vhost, "amq.fanout", "anything") == ["q1", "q2"]


def test_fanout_routes_a_queue_bound_twice_once():
    vhost = _vhost()
    _queues(vhost, "q")
    _bind(vhost, "amq.fanout", "q", "x")
    _bind(vhost, "amq.fanout", "q", "y")
    assert _route(vhost, "amq.fanout") == ["q"]


def test_fanout_stops_routing_to_an_unbound_queue():
    vhost = _vhost()
    _queues(vhost, "q1", "q2")
    _bind(vhost, "amq.fanout", "q1")
    _bind(vhost, "amq.fanout", "q2")
    _route(vhost, "amq.fanout")
    vhost.unbind("amq.fanout", vhost.queue("q1", OWNER), "", FieldTable())
    assert _route(vhost, "amq.fanout") == ["q2"]


def test_fanout_stops_routing_to_a_deleted_queue():
    vhost = _vhost()
    _queues(vhost, "q1", "q2")
    _bind(vhost, "amq.fanout", "q1")
    _bind(vhost, "amq.fanout", "q2")
    _route(vhost, "amq.fanout")
    vhost.delete_queue("q2", owner=OWNER)
    assert _route(vhost, "amq.fanout") == ["q1"]


# --- default exchange ----------------------------------------------------------------------------


def test_default_exchange_routes_to_the_queue_named_by_the_key():
    vhost = _vhost()
    _queues(vhost, "jobs", "other")
    assert _route(vhost, "", "jobs") == ["jobs"]


def test_default_exchange_drops_a_key_naming_no_queue():
    vhost = _vhost()
    assert _route(vhost, "", "missing") == []


def test_default_exchange_forgets_a_deleted_queue():
    vhost = _vhost()
    _queues(vhost, "jobs")
    vhost.delete_queue("jobs", owner=OWNER)
    assert _route(vhost, "", "jobs") == []


def test_binding_a_queue_to_the_default_exchange_is_refused_with_403():
    vhost = _vhost()
    _queues(vhost, "q")
    with pytest.raises(ChannelError) as caught:
        _bind(vhost, "", "q", "k")
    assert caught.value.reply_code == 403


def test_deleting_the_default_exchange_is_refused_with_403():
    vhost = _vhost()
    with pytest.raises(ChannelError) as caught:
        vhost.delete_exchange("")
    assert caught.value.reply_code == 403


def test_declaring_the_default_exchange_is_refused_with_403():
    vhost = _vhost()
    with pytest.raises(ChannelError) as caught:
        vhost.declare_exchange("", "direct")
    assert caught.value.reply_code == 403


# --- exchange-to-exchange ------------------------------------------------------------------------


def test_exchange_to_exchange_binding_forwards_by_the_destination_rules():
    vhost = _vhost()
    vhost.declare_exchange("front", "fanout")
    vhost.declare_exchange("back", "direct")
    _queues(vhost, "red", "blue")
    _bind_x(vhost, "front", "back")
    _bind(vhost, "back", "red", "red")
    _bind(vhost, "back", "blue", "blue")
    assert _route(vhost, "front", "red") == ["red"]


def test_exchange_to_exchange_binding_key_filters_at_the_source():
    vhost = _vhost()
    vhost.declare_exchange("front", "topic")
    vhost.declare_exchange("back", "fanout")
    _queues(vhost, "q")
    _bind_x(vhost, "front", "back", "a.*")
    _bind(vhost, "back", "q")
    assert _route(vhost, "front", "a.b") == ["q"]
    assert _route(vhost, "front", "b.b") == []


def test_a_cycle_of_exchanges_delivers_one_copy_per_queue():
    vhost = _vhost()
    vhost.declare_exchange("x1", "fanout")
    vhost.declare_exchange("x2", "fanout")
    _queues(vhost, "q1", "q2")
    _bind_x(vhost, "x1", "x2")
    _bind_x(vhost, "x2", "x1")
    _bind(vhost, "x1", "q1")
    _bind(vhost, "x2", "q1")
    _bind(vhost, "x2", "q2")
    assert _route(vhost, "x1") == ["q1", "q2"]
    assert _route(vhost, "x2") == ["q1", "q2"]


def test_a_self_bound_exchange_routes_without_looping():
    vhost = _vhost()
    vhost.declare_exchange("x", "fanout")
    _queues(vhost, "q")
    _bind_x(vhost, "x", "x")
    _bind(vhost, "x", "q")
    assert _route(vhost, "x") == ["q"]


def test_a_diamond_of_exchanges_delivers_one_copy():
    vhost = _vhost()
    for name in ("top", "left", "right", "bottom"):
        vhost.declare_exchange(name, "fanout")
    _queues(vhost, "q")
    _bind_x(vhost, "top", "left")
    _bind_x(vhost, "top", "right")
    _bind_x(vhost, "left", "bottom")
    _bind_x(vhost, "right", "bottom")
    _bind(vhost, "bottom", "q")
    assert _route(vhost, "top") == ["q"]


def test_deleting_a_destination_exchange_removes_the_bindings_to_it():
    vhost = _vhost()
    vhost.declare_exchange("front", "fanout")
    vhost.declare_exchange("back", "fanout")
    _queues(vhost, "q")
    _bind_x(vhost, "front", "back")
    _bind(vhost, "back", "q")
    vhost.delete_exchange("back")
    assert vhost.exchange("front").bindings == {}
    assert _route(vhost, "front") == []


def test_binding_to_a_missing_destination_exchange_is_404():
    vhost = _vhost()
    vhost.declare_exchange("front", "fanout")
    with pytest.raises(ChannelError) as caught:
        _bind_x(vhost, "front", "missing")
    assert caught.value.reply_code == 404


def test_binding_from_a_missing_source_exchange_is_404_naming_it():
    vhost = _vhost()
    _queues(vhost, "q")
    with pytest.raises(ChannelError) as caught:
        _bind(vhost, "missing", "q")
    assert caught.value.reply_code == 404
    assert "missing" in caught.value.text


# --- alternate exchange --------------------------------------------------------------------------


def test_an_unroutable_message_goes_to_the_alternate_exchange():
    vhost = _vhost()
    vhost.declare_exchange("ae", "fanout")
    vhost.declare_exchange("main", "direct", arguments=_ae("ae"))
    _queues(vhost, "routed", "unrouted")
    _bind(vhost, "main", "routed", "k")
    _bind(vhost, "ae", "unrouted")
    assert _route(vhost, "main", "other") == ["unrouted"]


def test_a_routable_message_does_not_go_to_the_alternate_exchange():
    vhost = _vhost()
    vhost.declare_exchange("ae", "fanout")
    vhost.declare_exchange("main", "direct", arguments=_ae("ae"))
    _queues(vhost, "routed", "unrouted")
    _bind(vhost, "main", "routed", "k")
    _bind(vhost, "ae", "unrouted")
    assert _route(vhost, "main", "k") == ["routed"]


def test_a_missing_alternate_exchange_leaves_the_message_unroutable():
    vhost = _vhost()
    vhost.declare_exchange("main", "direct", arguments=_ae("nowhere"))
    assert _route(vhost, "main", "k") == []


def test_alternate_exchanges_chain():
    vhost = _vhost()
    vhost.declare_exchange("ae2", "fanout")
    vhost.declare_exchange("ae1", "direct", arguments=_ae("ae2"))
    vhost.declare_exchange("main", "direct", arguments=_ae("ae1"))
    _queues(vhost, "last")
    _bind(vhost, "ae2", "last")
    assert _route(vhost, "main", "k") == ["last"]


def test_alternate_exchanges_in_a_cycle_do_not_loop():
    vhost = _vhost()
    vhost.declare_exchange("a", "direct", arguments=_ae("b"))
    vhost.declare_exchange("b", "direct", arguments=_ae("a"))
    assert _route(vhost, "a", "k") == []


def test_an_exchange_that_routes_to_an_exchange_does_not_use_its_alternate():
    # RabbitMQ (rabbit_exchange:process_alternate/2) uses the alternate exchange only when the
    # exchange's own route is empty; forwarding to another exchange is a non-empty route, even
    # when that exchange then reaches no queue.
    vhost = _vhost()
    vhost.declare_exchange("ae", "fanout")
    vhost.declare_exchange("inner", "direct")
    vhost.declare_exchange("main", "fanout", arguments=_ae("ae"))
    _queues(vhost, "unrouted")
    _bind(vhost, "ae", "unrouted")
    _bind_x(vhost, "main", "inner")
    assert _route(vhost, "main", "k") == []
