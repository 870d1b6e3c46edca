"""Queue x-arguments at declare: every validated argument refuses bad values with 406 and RabbitMQ's
text (checked against RabbitMQ 3.10.8), ``x-retry-backoff`` table errors, unknown arguments kept,
and the exact counts of queue.declare-ok."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from model_helpers import FakeClient, make_broker

from router.amqp import spec
from router.amqp.properties import BasicProperties
from router.amqp.tables import FieldTable
from router.broker.queues import Queue

PREFIX = "PRECONDITION_FAILED - invalid arg"


def _client() -> FakeClient:
    client = FakeClient(make_broker())
    client.open_channel(1)
    return client


def _typed(key: str, tag: str, value: Any) -> FieldTable:
    arguments = FieldTable()
    arguments.set_typed(key, tag, value)
    return arguments


def _declare_close(arguments: FieldTable) -> spec.ChannelClose | None:
    client = _client()
    client.declare_queue(1, "q", arguments=arguments)
    close = client.channel_close(1)
    if close is not None:
        assert client.connection_close() is None
        assert "q" not in client.broker.vhosts["/"].queues
    return close


def _invalid(key: str, reason: str) -> spec.ChannelClose:
    return spec.ChannelClose(406, f"{PREFIX} '{key}' for queue 'q' in vhost '/': {reason}", 50, 10)


# --- integers ------------------------------------------------------------------------------------

INTEGER_CASES = [
    ("x-expires", "l", 0, "{value_zero,0}"),
    ("x-expires", "l", -1, "{value_negative,-1}"),
    ("x-expires", "S", "abc", '"expected integer, got longstr"'),
    ("x-message-ttl", "l", -1, "{value_negative,-1}"),
    ("x-message-ttl", "S", "abc", '"expected integer, got longstr"'),
    ("x-max-length", "l", -1, "{value_negative,-1}"),
    ("x-max-length", "S", "abc", '"expected integer, got longstr"'),
    ("x-max-length", "t", True, '"expected integer, got bool"'),
    ("x-max-length", "D", Decimal("1.5"), '"expected integer, got decimal"'),
    ("x-max-length-bytes", "l", -1, "{value_negative,-1}"),
    ("x-max-length-bytes", "d", 1.5, '"expected integer, got double"'),
    ("x-max-priority", "l", 256, "{max_value_exceeded,256}"),
    ("x-max-priority", "l", 300, "{max_value_exceeded,300}"),
    ("x-max-priority", "l", -1, "{value_negative,-1}"),
    ("x-max-priority", "S", "abc", '"expected integer, got longstr"'),
    ("x-max-priority", "t", True, '"expected integer, got bool"'),
    ("x-max-priority", "D", Decimal("1.5"), '"expected integer, got decimal"'),
    ("x-delivery-limit", "l", -1, "{value_negative,-1}"),
    ("x-delivery-limit", "S", "abc", '"expected integer, got longstr"'),
    ("x-consumer-timeout", "l", 0, "{value_zero,0}"),
    ("x-consumer-timeout", "l", -5, "{value_negative,-5}"),
    ("x-consumer-timeout", "S", "abc", '"expected integer, got longstr"'),
    ("x-cache-size", "l", 0, "{value_zero,0}"),
    ("x-cache-ttl", "l", -1, "{value_negative,-1}"),
]


@pytest.mark.parametrize(("key", "tag", "value", "reason"), INTEGER_CASES)
def test_a_bad_integer_argument_closes_the_channel_with_406_naming_argument_and_value(
    key, tag, value, reason
):
    assert _declare_close(_typed(key, tag, value)) == _invalid(key, reason)


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("x-expires", 1),
        ("x-message-ttl", 0),
        ("x-max-length", 0),
        ("x-max-length-bytes", 0),
        ("x-max-priority", 1),
        ("x-max-priority", 255),
        ("x-delivery-limit", 0),
        ("x-consumer-timeout", 1),
        ("x-message-ttl", 315360000000),
        ("x-expires", 315360000000),
        ("x-max-length", 2**40),
    ],
)
def test_integer_arguments_at_their_limits_are_accepted(key, value):
    assert _declare_close(FieldTable({key: value})) is None


@pytest.mark.parametrize("tag", ["b", "s", "I", "l"])
def test_integer_arguments_are_accepted_in_every_integer_width(tag):
    assert _declare_close(_typed("x-max-length", tag, 5)) is None


@pytest.mark.parametrize("key", ["x-message-ttl", "x-expires"])
def test_a_ttl_argument_above_ten_years_is_refused_as_too_large(key):
    assert _declare_close(FieldTable({key: 315360000001})) == _invalid(
        key, "{value_too_large,315360000001}"
    )


# --- strings and choices -------------------------------------------------------------------------


def test_a_non_string_dead_letter_exchange_is_refused_with_rabbitmqs_type_text():
    assert _declare_close(_typed("x-dead-letter-exchange", "I", 5)) == spec.ChannelClose(
        406,
        "PRECONDITION_FAILED - invalid type 'signedint' for arg 'x-dead-letter-exchange' in "
        "queue 'q' in vhost '/'",
        50,
        10,
    )


def test_a_boolean_dead_letter_exchange_is_named_bool():
    close = _declare_close(_typed("x-dead-letter-exchange", "t", True))
    assert close is not None
    assert "invalid type 'bool' for arg 'x-dead-letter-exchange'" in close.reply_text


def test_a_non_string_dead_letter_routing_key_is_refused_with_unacceptable_type():
    assert _declare_close(_typed("x-dead-letter-routing-key", "I", 5)) == _invalid(
        "x-dead-letter-routing-key", "{unacceptable_type,signedint}"
    )


def test_an_unknown_overflow_is_refused_with_invalid_overflow():
    assert _declare_close(FieldTable({"x-overflow": "bogus"})) == _invalid(
        "x-overflow", "invalid_overflow"
    )


@pytest.mark.parametrize("value", ["drop-head", "reject-publish", "reject-publish-dlx"])
def test_every_known_overflow_is_accepted(value):
    assert _declare_close(FieldTable({"x-overflow": value, "x-max-length": 1})) is None


def test_a_non_string_overflow_is_refused_with_unacceptable_type():
    assert _declare_close(_typed("x-overflow", "I", 5)) == _invalid(
        "x-overflow", "{unacceptable_type,signedint}"
    )


@pytest.mark.parametrize("value", ["default", "lazy"])
def test_both_queue_modes_are_accepted(value):
    assert _declare_close(FieldTable({"x-queue-mode": value})) is None


def test_an_unknown_queue_mode_is_refused_with_rabbitmqs_text():
    assert _declare_close(FieldTable({"x-queue-mode": "bogus"})) == _invalid(
        "x-queue-mode", "\"unsupported queue mode 'bogus'\""
    )


def test_a_non_string_queue_mode_is_refused_with_unacceptable_type():
    assert _declare_close(_typed("x-queue-mode", "I", 5)) == _invalid(
        "x-queue-mode", "{unacceptable_type,signedint}"
    )


def test_an_unknown_queue_type_is_refused_with_rabbitmqs_text():
    assert _declare_close(FieldTable({"x-queue-type": "bogus"})) == _invalid(
        "x-queue-type", "\"unsupported queue type 'bogus'\""
    )


def test_an_unknown_queue_version_is_refused_with_rabbitmqs_text():
    assert _declare_close(FieldTable({"x-queue-version": 3})) == _invalid(
        "x-queue-version", "\"unsupported queue version '3'\""
    )


# --- booleans ------------------------------------------------------------------------------------


@pytest.mark.parametrize("key", ["x-single-active-consumer", "x-message-deduplication"])
@pytest.mark.parametrize(
    ("tag", "value", "type_name"),
    [("S", "true", "longstr"), ("I", 1, "signedint"), ("l", 1, "long")],
)
def test_a_non_boolean_flag_is_refused_with_unacceptable_type(key, tag, value, type_name):
    assert _declare_close(_typed(key, tag, value)) == _invalid(
        key, f"{{unacceptable_type,{type_name}}}"
    )


@pytest.mark.parametrize("key", ["x-single-active-consumer", "x-message-deduplication"])
@pytest.mark.parametrize("value", [True, False])
def test_boolean_flags_accept_true_and_false(key, value):
    assert _declare_close(FieldTable({key: value})) is None


# --- x-retry-backoff -----------------------------------------------------------------------------

EXAMPLE = "e.g. {initial: 1000, multiplier: 2, max: 60000, jitter: 0.1}"


def _backoff_close(value: Any, tag: str = "F") -> spec.ChannelClose | None:
    return _declare_close(_typed("x-retry-backoff", tag, value))


def test_a_retry_backoff_that_is_not_a_table_is_refused():
    assert _backoff_close(1000, "l") == _invalid("x-retry-backoff", f"expected a table, {EXAMPLE}")


def test_a_retry_backoff_with_an_unknown_key_is_refused_naming_the_key():
    assert _backoff_close(FieldTable({"initial": 100, "factor": 2})) == _invalid(
        "x-retry-backoff",
        f"unknown key 'factor'; allowed: initial, multiplier, max, jitter ({EXAMPLE})",
    )


@pytest.mark.parametrize(
    ("table", "reason"),
    [
        ({}, "'initial' must be a positive number of milliseconds"),
        ({"initial": 0}, "'initial' must be a positive number of milliseconds"),
        ({"initial": -10}, "'initial' must be a positive number of milliseconds"),
        ({"initial": "1s"}, "'initial' must be a positive number of milliseconds"),
        ({"initial": True}, "'initial' must be a positive number of milliseconds"),
        ({"initial": 100, "multiplier": 0.5}, "'multiplier' must be a number >= 1"),
        ({"initial": 100, "multiplier": "x2"}, "'multiplier' must be a number >= 1"),
        ({"initial": 100, "max": 50}, "'max' must be a number of milliseconds >= 'initial'"),
        ({"initial": 100, "jitter": 1.5}, "'jitter' must be a number from 0 to 1"),
        ({"initial": 100, "jitter": -0.1}, "'jitter' must be a number from 0 to 1"),
    ],
)
def test_a_retry_backoff_with_a_bad_value_is_refused_saying_what_is_allowed(table, reason):
    field = reason.split("'")[1]
    found = f", not {table[field]!r}" if field in table else ", and it is missing"
    assert _backoff_close(FieldTable(table)) == _invalid(
        "x-retry-backoff", f"{reason}{found} ({EXAMPLE})"
    )


def test_a_retry_backoff_error_names_the_bad_value():
    close = _backoff_close(FieldTable({"initial": 100, "multiplier": 0.5}))
    assert close is not None
    assert "0.5" in close.reply_text


@pytest.mark.parametrize(
    "table",
    [
        {"initial": 1},
        {"initial": 1000, "multiplier": 2, "max": 60000, "jitter": 0.1},
        {"initial": 100.5, "multiplier": 1, "max": 100.5, "jitter": 0},
        {"initial": 100, "jitter": 1},
    ],
)
def test_a_valid_retry_backoff_is_accepted(table):
    assert _backoff_close(FieldTable(table)) is None


# --- unknown arguments ---------------------------------------------------------------------------


def test_unknown_x_arguments_are_accepted_and_kept_with_their_types():
    client = _client()
    arguments = FieldTable({"x-foo": "bar"})
    arguments.set_typed("x-count", "I", 7)
    assert client.declare_queue(1, "q", arguments=arguments) == spec.QueueDeclareOk("q", 0, 0)
    kept = client.broker.vhosts["/"].queues["q"].arguments
    assert kept == {"x-foo": "bar", "x-count": 7}
    assert kept.tag("x-count") == "I"


def test_an_unknown_argument_may_differ_on_redeclare():
    client = _client()
    client.declare_queue(1, "q", arguments=FieldTable({"x-foo": "bar"}))
    assert client.declare_queue(1, "q", arguments=FieldTable({"x-foo": "baz"})) == (
        spec.QueueDeclareOk("q", 0, 0)
    )
    assert client.channel_close(1) is None


def test_a_redeclare_with_a_bad_value_is_refused_as_invalid_before_equivalence():
    client = _client()
    client.declare_queue(1, "q", arguments=FieldTable({"x-max-length": 5}))
    client.declare_queue(1, "q", arguments=FieldTable({"x-max-length": -1}))
    assert client.channel_close(1) == _invalid("x-max-length", "{value_negative,-1}")


def test_a_redeclare_with_another_known_value_is_inequivalent():
    client = _client()
    client.declare_queue(1, "q", arguments=FieldTable({"x-message-ttl": 1000}))
    client.declare_queue(1, "q", arguments=FieldTable({"x-message-ttl": 2000}))
    assert client.channel_close(1) == spec.ChannelClose(
        406,
        "PRECONDITION_FAILED - inequivalent arg 'x-message-ttl' for queue 'q' in vhost '/': "
        "received '2000' but current is '1000'",
        50,
        10,
    )


# --- declare-ok counts ---------------------------------------------------------------------------


def _queue(client: FakeClient) -> Queue:
    return client.broker.vhosts["/"].queues["q"]


def test_declare_ok_counts_ready_messages_only():
    client = _client()
    client.declare_queue(1, "q")
    for body in (b"1", b"2", b"3"):
        client.publish(1, "", "q", body)
    client.call(1, spec.BasicGet(queue="q"))  # one unacked
    assert client.declare_queue(1, "q") == spec.QueueDeclareOk("q", 2, 0)
    assert client.call(1, spec.QueueDeclare(queue="q", passive=True))[-1].method == (
        spec.QueueDeclareOk("q", 2, 0)
    )


def test_declare_ok_counts_every_consumer():
    client = _client()
    client.declare_queue(1, "q")
    client.open_channel(2)
    client.consume(1, "q", "a")
    client.consume(1, "q", "b")
    client.consume(2, "q", "c")
    assert client.declare_queue(1, "q") == spec.QueueDeclareOk("q", 0, 3)


def test_declare_ok_does_not_count_messages_held_back_by_retry_backoff():
    client = _client()
    arguments = FieldTable({"x-retry-backoff": FieldTable({"initial": 1000})})
    client.declare_queue(1, "q", arguments=arguments)
    client.publish(1, "", "q", b"1")
    client.publish(1, "", "q", b"2")
    client.call(1, spec.BasicGet(queue="q"))
    client.call(1, spec.BasicNack(1, False, True))
    assert _queue(client).waiting == 1
    assert client.declare_queue(1, "q", arguments=arguments) == spec.QueueDeclareOk("q", 1, 0)


def test_declare_ok_counts_after_expiry_and_overflow():
    client = _client()
    arguments = FieldTable({"x-max-length": 2, "x-message-ttl": 1000})
    client.declare_queue(1, "q", arguments=arguments)
    for body in (b"1", b"2", b"3"):
        client.publish(1, "", "q", body, properties=BasicProperties())
    assert client.declare_queue(1, "q", arguments=arguments) == spec.QueueDeclareOk("q", 2, 0)
    client.now = 1.0
    client.broker.tick(1.0)
    assert client.declare_queue(1, "q", arguments=arguments) == spec.QueueDeclareOk("q", 0, 0)


# --- exchange arguments --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("arguments", "key", "reason"),
    [
        ({"x-cache-size": 0}, "x-cache-size", "expected a positive integer, got 0"),
        ({"x-cache-ttl": "1m"}, "x-cache-ttl", "expected a positive integer, got '1m'"),
        (
            {"x-message-deduplication": "yes"},
            "x-message-deduplication",
            "expected true or false, got 'yes'",
        ),
        (
            {"alternate-exchange": 5},
            "alternate-exchange",
            "expected the name of an exchange, got 5",
        ),
    ],
)
def test_a_bad_exchange_argument_is_refused_naming_it_and_its_value(arguments, key, reason):
    broker = make_broker()
    client = FakeClient(broker)
    client.open_channel(1)
    replies = client.call(
        1, spec.ExchangeDeclare(exchange="x", type="fanout", arguments=FieldTable(arguments))
    )
    assert [r.method for r in replies] == [
        spec.ChannelClose(
            406,
            f"PRECONDITION_FAILED - invalid arg '{key}' for exchange 'x' in vhost '/': {reason}",
            40,
            10,
        )
    ]
