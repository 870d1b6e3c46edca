"""VirtualHost: declare / redeclare equivalence, reserved names, passive declares, exclusive
queues, conditional deletes and auto-delete exchanges."""

from __future__ import annotations

import pytest

from router.amqp.errors import ChannelError, ConnectionError
from router.amqp.tables import FieldTable
from router.broker.ports import CountingIds
from router.broker.vhost import VirtualHost

ME = object()
OTHER = object()


def _vhost() -> VirtualHost:
    return VirtualHost("/", CountingIds())


def _error(call, *args, **kwargs) -> ChannelError:  # type: ignore[no-untyped-def]
    with pytest.raises(ChannelError) as caught:
        call(*args, **kwargs)
    return caught.value


def _typed(key: str, tag: str, value: object) -> FieldTable:
    table = FieldTable()
    table.set_typed(key, tag, value)
    return table


# --- exchanges -----------------------------------------------------------------------------------


def test_redeclaring_an_exchange_with_the_same_properties_returns_it():
    vhost = _vhost()
    first = vhost.declare_exchange("x", "topic", durable=True)
    assert vhost.declare_exchange("x", "topic", durable=True) is first


def test_redeclaring_an_exchange_with_another_type_is_406_naming_both_types():
    vhost = _vhost()
    vhost.declare_exchange("x", "direct")
    error = _error(vhost.declare_exchange, "x", "fanout")
    assert error.reply_code == 406
    assert error.text == (
        "inequivalent arg 'type' for exchange 'x' in vhost '/': "
        "received 'fanout' but current is 'direct'"
    )


def test_redeclaring_an_exchange_with_another_durability_is_406():
    vhost = _vhost()
    vhost.declare_exchange("x", "direct", durable=True)
    error = _error(vhost.declare_exchange, "x", "direct", durable=False)
    assert error.reply_code == 406
    assert "'durable'" in error.text
    assert "received 'false' but current is 'true'" in error.text


def test_redeclaring_an_exchange_with_another_auto_delete_is_406():
    vhost = _vhost()
    vhost.declare_exchange("x", "direct")
    error = _error(vhost.declare_exchange, "x", "direct", auto_delete=True)
    assert error.reply_code == 406
    assert "'auto_delete'" in error.text


def test_redeclaring_an_exchange_with_another_alternate_exchange_is_406():
    vhost = _vhost()
    vhost.declare_exchange("x", "direct", arguments=FieldTable({"alternate-exchange": "a"}))
    error = _error(
        vhost.declare_exchange, "x", "direct", arguments=FieldTable({"alternate-exchange": "b"})
    )
    assert error.reply_code == 406
    assert "'alternate-exchange'" in error.text


def test_declaring_an_exchange_with_the_amq_prefix_is_403():
    vhost = _vhost()
    error = _error(vhost.declare_exchange, "amq.custom", "direct")
    assert error.reply_code == 403
    assert "amq.custom" in error.text


def test_redeclaring_a_built_in_exchange_with_its_own_properties_is_allowed():
    vhost = _vhost()
    assert vhost.declare_exchange("amq.topic", "topic", durable=True) is vhost.exchange("amq.topic")


def test_deleting_a_built_in_exchange_is_403():
    vhost = _vhost()
    assert _error(vhost.delete_exchange, "amq.direct").reply_code == 403


def test_passive_declare_of_a_missing_exchange_is_404_naming_it():
    vhost = _vhost()
    error = _error(vhost.declare_exchange, "nope", "direct", passive=True)
    assert error.reply_code == 404
    assert error.text == "no exchange 'nope' in vhost '/'"


def test_passive_declare_of_an_existing_exchange_ignores_the_type():
    vhost = _vhost()
    exchange = vhost.declare_exchange("x", "direct")
    assert vhost.declare_exchange("x", "fanout", passive=True) is exchange


def test_declaring_an_unknown_exchange_type_is_a_503_connection_error():
    vhost = _vhost()
    with pytest.raises(ConnectionError) as caught:
        vhost.declare_exchange("x", "no-such-type")
    assert caught.value.reply_code == 503


def test_deleting_an_exchange_if_unused_while_it_has_bindings_is_406():
    vhost = _vhost()
    vhost.declare_exchange("x", "fanout")
    queue = vhost.declare_queue("q", owner=ME)
    vhost.bind("x", queue, "", FieldTable())
    assert _error(vhost.delete_exchange, "x", if_unused=True).reply_code == 406
    assert "x" in vhost.exchanges


def test_deleting_an_unused_exchange_if_unused_succeeds():
    vhost = _vhost()
    vhost.declare_exchange("x", "fanout")
    vhost.delete_exchange("x", if_unused=True)
    assert "x" not in vhost.exchanges


def test_deleting_a_missing_exchange_succeeds():
    vhost = _vhost()
    vhost.delete_exchange("never-declared")


def test_an_auto_delete_exchange_goes_when_its_last_binding_is_removed():
    vhost = _vhost()
    vhost.declare_exchange("x", "direct", auto_delete=True)
    queue = vhost.declare_queue("q", owner=ME)
    vhost.bind("x", queue, "a", FieldTable())
    vhost.bind("x", queue, "b", FieldTable())
    vhost.unbind("x", queue, "a", FieldTable())
    assert "x" in vhost.exchanges
    vhost.unbind("x", queue, "b", FieldTable())
    assert "x" not in vhost.exchanges


def test_an_auto_delete_exchange_goes_when_its_last_bound_queue_is_deleted():
    vhost = _vhost()
    vhost.declare_exchange("x", "fanout", auto_delete=True)
    queue = vhost.declare_queue("q", owner=ME)
    vhost.bind("x", queue, "", FieldTable())
    vhost.delete_queue("q", owner=ME)
    assert "x" not in vhost.exchanges


def test_an_auto_delete_exchange_that_never_had_a_binding_stays():
    vhost = _vhost()
    vhost.declare_exchange("x", "fanout", auto_delete=True)
    assert "x" in vhost.exchanges


def test_an_auto_delete_exchange_stays_while_it_is_only_a_destination():
    vhost = _vhost()
    vhost.declare_exchange("src", "fanout")
    vhost.declare_exchange("x", "fanout", auto_delete=True)
    queue = vhost.declare_queue("q", owner=ME)
    vhost.bind("x", queue, "", FieldTable())
    vhost.bind("src", vhost.exchange("x"), "", FieldTable())
    vhost.unbind("x", queue, "", FieldTable())
    assert "x" not in vhost.exchanges
    assert vhost.exchange("src").bindings == {}


# --- queues --------------------------------------------------------------------------------------


def test_declaring_a_queue_with_an_empty_name_generates_an_amq_gen_name():
    vhost = _vhost()
    queue = vhost.declare_queue("", owner=ME)
    assert queue.name == "amq.gen-t1"


def test_redeclaring_a_queue_with_the_same_properties_returns_it():
    vhost = _vhost()
    queue = vhost.declare_queue("q", owner=ME, durable=True)
    assert vhost.declare_queue("q", owner=ME, durable=True) is queue


def test_redeclaring_a_queue_with_another_durability_is_406_naming_it():
    vhost = _vhost()
    vhost.declare_queue("q", owner=ME, durable=True)
    error = _error(vhost.declare_queue, "q", owner=ME, durable=False)
    assert error.reply_code == 406
    assert error.text == (
        "inequivalent arg 'durable' for queue 'q' in vhost '/': "
        "received 'false' but current is 'true'"
    )


def test_redeclaring_a_queue_with_another_auto_delete_is_406():
    vhost = _vhost()
    vhost.declare_queue("q", owner=ME)
    error = _error(vhost.declare_queue, "q", owner=ME, auto_delete=True)
    assert error.reply_code == 406
    assert "'auto_delete'" in error.text


def test_redeclaring_a_queue_with_another_ttl_is_406_with_both_values():
    vhost = _vhost()
    vhost.declare_queue("q", owner=ME, arguments=_typed("x-message-ttl", "I", 1000))
    error = _error(vhost.declare_queue, "q", owner=ME, arguments=_typed("x-message-ttl", "I", 2000))
    assert error.reply_code == 406
    assert error.text == (
        # rabbit_misc:assert_args_equivalence/4 prints bare values when both sides have one
        "inequivalent arg 'x-message-ttl' for queue 'q' in vhost '/': "
        "received '2000' but current is '1000'"
    )


def test_redeclaring_a_queue_without_a_checked_argument_it_had_is_406():
    vhost = _vhost()
    vhost.declare_queue("q", owner=ME, arguments=_typed("x-max-length", "l", 5))
    error = _error(vhost.declare_queue, "q", owner=ME)
    assert error.reply_code == 406
    assert "received none but current is the value '5' of type 'long'" in error.text


def test_redeclaring_a_queue_with_an_integer_of_another_width_is_equivalent():
    vhost = _vhost()
    queue = vhost.declare_queue("q", owner=ME, arguments=_typed("x-max-length", "l", 10))
    assert vhost.declare_queue("q", owner=ME, arguments=_typed("x-max-length", "b", 10)) is queue


def test_redeclaring_a_queue_with_a_different_unknown_argument_is_equivalent():
    vhost = _vhost()
    queue = vhost.declare_queue("q", owner=ME, arguments=FieldTable({"my-arg": "a"}))
    assert vhost.declare_queue("q", owner=ME, arguments=FieldTable({"my-arg": "b"})) is queue


def test_declaring_a_queue_with_the_amq_prefix_is_403():
    vhost = _vhost()
    error = _error(vhost.declare_queue, "amq.mine", owner=ME)
    assert error.reply_code == 403
    assert "amq.mine" in error.text


def test_passive_declare_of_a_missing_queue_is_404_naming_it():
    vhost = _vhost()
    error = _error(vhost.declare_queue, "nope", owner=ME, passive=True)
    assert error.reply_code == 404
    assert error.text == "no queue 'nope' in vhost '/'"


def test_passive_declare_of_an_existing_queue_ignores_its_properties():
    vhost = _vhost()
    queue = vhost.declare_queue("q", owner=ME, durable=True)
    assert vhost.declare_queue("q", owner=ME, passive=True) is queue


# --- exclusive queues ----------------------------------------------------------------------------


def test_an_exclusive_queue_redeclared_by_its_owner_is_returned():
    vhost = _vhost()
    queue = vhost.declare_queue("q", owner=ME, exclusive=True)
    assert vhost.declare_queue("q", owner=ME, exclusive=True) is queue


def test_an_exclusive_queue_redeclared_by_another_connection_is_405():
    vhost = _vhost()
    vhost.declare_queue("q", owner=ME, exclusive=True)
    error = _error(vhost.declare_queue, "q", owner=OTHER, exclusive=True)
    assert error.reply_code == 405
    assert "'q'" in error.text


def test_an_exclusive_queue_passively_declared_by_another_connection_is_405():
    vhost = _vhost()
    vhost.declare_queue("q", owner=ME, exclusive=True)
    assert _error(vhost.declare_queue, "q", owner=OTHER, passive=True).reply_code == 405


def test_an_exclusive_queue_looked_up_by_another_connection_is_405():
    vhost = _vhost()
    vhost.declare_queue("q", owner=ME, exclusive=True)
    assert _error(vhost.queue, "q", OTHER).reply_code == 405


def test_an_exclusive_queue_deleted_by_another_connection_is_405_and_stays():
    vhost = _vhost()
    vhost.declare_queue("q", owner=ME, exclusive=True)
    assert _error(vhost.delete_queue, "q", owner=OTHER).reply_code == 405
    assert "q" in vhost.queues


def test_an_exclusive_queue_purged_by_another_connection_is_405():
    vhost = _vhost()
    vhost.declare_queue("q", owner=ME, exclusive=True)
    assert _error(vhost.purge_queue, "q", owner=OTHER).reply_code == 405


def test_a_shared_queue_redeclared_as_exclusive_is_405():
    vhost = _vhost()
    vhost.declare_queue("q", owner=ME)
    assert _error(vhost.declare_queue, "q", owner=OTHER, exclusive=True).reply_code == 405


# --- conditional deletes -------------------------------------------------------------------------


def test_deleting_a_missing_queue_reports_zero_messages():
    vhost = _vhost()
    assert vhost.delete_queue("never", owner=ME) == 0


def test_deleting_a_queue_reports_its_ready_messages():
    from model_helpers import message

    vhost = _vhost()
    queue = vhost.declare_queue("q", owner=ME)
    queue.publish(message())
    queue.publish(message())
    assert vhost.delete_queue("q", owner=ME) == 2


def test_deleting_a_queue_if_empty_while_it_has_messages_is_406():
    from model_helpers import message

    vhost = _vhost()
    queue = vhost.declare_queue("q", owner=ME)
    queue.publish(message())
    error = _error(vhost.delete_queue, "q", owner=ME, if_empty=True)
    assert error.reply_code == 406
    assert error.text == "queue 'q' in vhost '/' not empty"
    assert "q" in vhost.queues


def test_deleting_a_queue_if_unused_while_it_has_a_consumer_is_406():
    from model_helpers import FakeConsumer

    vhost = _vhost()
    queue = vhost.declare_queue("q", owner=ME)
    queue.add_consumer(FakeConsumer("c"))  # type: ignore[arg-type]
    error = _error(vhost.delete_queue, "q", owner=ME, if_unused=True)
    assert error.reply_code == 406
    assert error.text == "queue 'q' in vhost '/' in use"


def test_deleting_an_empty_unused_queue_with_both_conditions_succeeds():
    vhost = _vhost()
    vhost.declare_queue("q", owner=ME)
    assert vhost.delete_queue("q", owner=ME, if_unused=True, if_empty=True) == 0
    assert "q" not in vhost.queues


def test_deleting_a_queue_removes_its_bindings():
    vhost = _vhost()
    queue = vhost.declare_queue("q", owner=ME)
    vhost.bind("amq.direct", queue, "k", FieldTable())
    vhost.delete_queue("q", owner=ME)
    assert vhost.exchange("amq.direct").bindings == {}


def test_deleting_a_queue_notifies_the_deletion_hook():
    vhost = _vhost()
    deleted = []
    vhost.on_queue_deleted = deleted.append
    queue = vhost.declare_queue("q", owner=ME)
    vhost.delete_queue("q", owner=ME)
    assert deleted == [queue]


# --- RabbitMQ's order of checks on queue.declare (rabbit_channel / rabbit_amqqueue) -------------


def test_redeclaring_a_server_named_queue_by_its_name_is_403():
    vhost = _vhost()
    name = vhost.declare_queue("", owner=ME).name
    error = _error(vhost.declare_queue, name, owner=ME)
    assert error.reply_code == 403
    assert error.text == f"queue name '{name}' contains reserved prefix 'amq.*'"


def test_a_server_named_queue_can_be_declared_passively_by_its_name():
    vhost = _vhost()
    queue = vhost.declare_queue("", owner=ME)
    assert vhost.declare_queue(queue.name, owner=ME, passive=True) is queue


def test_another_connections_exclusive_queue_is_405_even_when_other_properties_differ():
    vhost = _vhost()
    vhost.declare_queue("q", owner=ME, exclusive=True)
    error = _error(vhost.declare_queue, "q", owner=OTHER, durable=True)
    assert error.reply_code == 405


def test_an_exclusive_queue_declared_durable_is_not_durable():
    vhost = _vhost()
    queue = vhost.declare_queue("q", owner=ME, exclusive=True, durable=True)
    assert not queue.durable
    assert vhost.declare_queue("q", owner=ME, exclusive=True, durable=False) is queue
