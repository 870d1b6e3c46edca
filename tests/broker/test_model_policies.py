"""Policies in the sans-IO model: validation, matching (pattern, apply-to, priority, ties),
precedence over queue arguments key by key (RabbitMQ 3.10's process_args_policy), and applying
a policy to queues and exchanges that exist already, or clearing it."""

from __future__ import annotations

from typing import Any

import pytest
from model_helpers import FakeConsumer

from router.amqp.properties import BasicProperties
from router.amqp.tables import FieldTable
from router.broker.broker import Broker, BrokerConfig
from router.broker.deadletter import MAXLEN
from router.broker.message import Message
from router.broker.policies import Policy, match
from router.broker.ports import CountingIds
from router.broker.queues import Queue
from router.broker.vhost import VirtualHost


def _broker() -> Broker:
    return Broker(BrokerConfig(), ids=CountingIds())


def _vhost(broker: Broker) -> VirtualHost:
    return broker.vhosts["/"]


def _policy(definition: dict[str, Any], pattern: str = "^q", **fields: Any) -> Policy:
    return Policy(
        "/",
        fields.pop("name", "p"),
        pattern,
        fields.pop("apply_to", "queues"),
        fields.pop("priority", 0),
        definition,
    )


def _queue(broker: Broker, name: str = "q", **arguments: Any) -> Queue:
    return _vhost(broker).declare_queue(name, owner=None, arguments=FieldTable(arguments))


PROPERTIES = BasicProperties().encode()


def _publish(queue: Queue, count: int, prefix: str = "m") -> None:
    for n in range(count):
        queue.publish(Message("", queue.name, PROPERTIES, f"{prefix}{n}".encode()))


def _dead_letter_queue(broker: Broker) -> Queue:
    """A fanout "dlx" exchange and the queue "dead" bound to it."""
    vhost = _vhost(broker)
    vhost.declare_exchange("dlx", "fanout")
    dead = vhost.declare_queue("dead", owner=None)
    vhost.bind("dlx", dead, "", FieldTable())
    return dead


def _bodies(queue: Queue) -> list[bytes]:
    return [entry.message.body for entry in queue.ready_messages()]


def _refused(broker: Broker, policy: Policy) -> str:
    with pytest.raises(ValueError) as caught:
        broker.set_policy(policy)
    return str(caught.value)


# --- validation -----------------------------------------------------------------------------------


def test_an_unknown_key_is_refused_with_the_closest_known_key():
    text = _refused(_broker(), _policy({"max-lenght": 10}))
    assert "unknown key 'max-lenght'; did you mean 'max-length'?" in text


def test_max_priority_is_refused_pointing_at_the_x_max_priority_argument():
    text = _refused(_broker(), _policy({"max-priority": 10}))
    assert "max-priority cannot be set by a policy" in text
    assert "x-max-priority argument" in text


def test_single_active_consumer_is_refused_pointing_at_its_argument():
    text = _refused(_broker(), _policy({"single-active-consumer": True}))
    assert "x-single-active-consumer argument" in text


def test_a_pattern_that_does_not_compile_is_refused():
    text = _refused(_broker(), _policy({"max-length": 1}, pattern="("))
    assert "pattern '(' is not a valid regular expression" in text


def test_an_unknown_apply_to_is_refused():
    text = _refused(_broker(), _policy({"max-length": 1}, apply_to="bindings"))
    assert "apply-to 'bindings' must be 'queues', 'exchanges' or 'all'" in text


def test_an_empty_definition_is_refused():
    assert "non-empty" in _refused(_broker(), _policy({}))


def test_a_message_ttl_that_is_not_an_integer_is_refused():
    text = _refused(_broker(), _policy({"message-ttl": 1.5}))
    assert "message-ttl must be a non-negative integer (milliseconds), not 1.5" in text


def test_a_zero_expires_is_refused():
    assert "expires must be a positive integer" in _refused(_broker(), _policy({"expires": 0}))


def test_an_unknown_overflow_is_refused_listing_the_choices():
    text = _refused(_broker(), _policy({"overflow": "drop-tail"}))
    assert "'drop-head', 'reject-publish', 'reject-publish-dlx'" in text


def test_a_policy_for_a_missing_vhost_is_refused():
    policy = Policy("nowhere", "p", ".*", "all", 0, {"max-length": 1})
    assert "no vhost 'nowhere'" in _refused(_broker(), policy)


def test_rabbitmq_mirroring_and_federation_keys_are_accepted_and_listed_as_ignored():
    broker = _broker()
    policy = _policy({"ha-mode": "all", "federation-upstream-set": "all", "max-length": 1})
    broker.set_policy(policy)
    assert policy.ignored == ("ha-mode", "federation-upstream-set")


def test_router_keys_consumer_timeout_and_retry_backoff_are_accepted():
    _broker().set_policy(_policy({"consumer-timeout": 1000, "retry-backoff": {"initial": 100}}))


# --- matching ---------------------------------------------------------------------------------------


def test_the_pattern_is_searched_anywhere_in_the_name():
    policies = {"p": _policy({"max-length": 1}, pattern="ord")}
    assert match(policies, "queues", "new-orders") is policies["p"]


def test_a_queues_policy_does_not_apply_to_exchanges():
    policies = {"p": _policy({"max-length": 1}, pattern=".*", apply_to="queues")}
    assert match(policies, "exchanges", "x") is None


def test_an_all_policy_applies_to_queues_and_exchanges():
    policies = {"p": _policy({"max-length": 1}, pattern=".*", apply_to="all")}
    assert match(policies, "exchanges", "x") is policies["p"]
    assert match(policies, "queues", "q") is policies["p"]


def test_the_highest_priority_wins():
    low = _policy({"max-length": 1}, name="low", priority=1)
    high = _policy({"max-length": 2}, name="high", priority=5)
    assert match({"low": low, "high": high}, "queues", "q") is high


def test_a_priority_tie_goes_to_the_name_that_sorts_first():
    b = _policy({"max-length": 1}, name="b")
    a = _policy({"max-length": 2}, name="a")
    assert match({"b": b, "a": a}, "queues", "q") is a


def test_a_queue_declared_after_the_policy_gets_it():
    broker = _broker()
    policy = _policy({"max-length": 2})
    broker.set_policy(policy)
    assert _queue(broker).policy is policy


def test_server_named_queues_get_policies():
    broker = _broker()
    broker.set_policy(_policy({"max-length": 2}, pattern="^amq\\.gen-"))
    queue = _vhost(broker).declare_queue("", owner=None)
    assert queue.options.max_length == 2


def test_exclusive_queues_get_policies():
    broker = _broker()
    broker.set_policy(_policy({"max-length": 2}))
    queue = _vhost(broker).declare_queue("q", owner=object(), exclusive=True)
    assert queue.options.max_length == 2


# --- precedence, key by key -------------------------------------------------------------------------

MIN_KEYS = [
    ("message-ttl", "x-message-ttl", "message_ttl"),
    ("expires", "x-expires", "expires"),
    ("max-length", "x-max-length", "max_length"),
    ("max-length-bytes", "x-max-length-bytes", "max_length_bytes"),
    ("delivery-limit", "x-delivery-limit", "delivery_limit"),
    ("consumer-timeout", "x-consumer-timeout", "consumer_timeout"),
]


@pytest.mark.parametrize(("key", "argument", "option"), MIN_KEYS)
def test_the_smaller_of_policy_and_argument_wins_when_the_policy_is_smaller(key, argument, option):
    broker = _broker()
    broker.set_policy(_policy({key: 1000}))
    queue = _queue(broker, **{argument: 5000})
    assert getattr(queue.options, option) == 1000


@pytest.mark.parametrize(("key", "argument", "option"), MIN_KEYS)
def test_the_smaller_of_policy_and_argument_wins_when_the_argument_is_smaller(
    key, argument, option
):
    broker = _broker()
    broker.set_policy(_policy({key: 5000}))
    queue = _queue(broker, **{argument: 1000})
    assert getattr(queue.options, option) == 1000


ARGUMENT_KEYS = [
    ("overflow", "drop-head", "x-overflow", "reject-publish", "overflow", "reject-publish"),
    (
        "dead-letter-exchange",
        "p-dlx",
        "x-dead-letter-exchange",
        "a-dlx",
        "dead_letter_exchange",
        "a-dlx",
    ),
    (
        "dead-letter-routing-key",
        "p",
        "x-dead-letter-routing-key",
        "a",
        "dead_letter_routing_key",
        "a",
    ),
    ("queue-mode", "lazy", "x-queue-mode", "default", "lazy", False),
]


@pytest.mark.parametrize(
    ("key", "value", "argument", "declared", "option", "expected"), ARGUMENT_KEYS
)
def test_the_declared_argument_wins_over_the_policy(
    key, value, argument, declared, option, expected
):
    broker = _broker()
    broker.set_policy(_policy({key: value}))
    queue = _queue(broker, **{argument: declared})
    assert getattr(queue.options, option) == expected


def test_the_argument_backoff_wins_over_the_policys():
    broker = _broker()
    broker.set_policy(_policy({"retry-backoff": {"initial": 100}}))
    queue = _queue(broker, **{"x-retry-backoff": FieldTable({"initial": 5000})})
    assert queue.options.retry_initial == 5000


def test_a_policy_key_applies_when_the_queue_lacks_the_argument():
    broker = _broker()
    broker.set_policy(_policy({"dead-letter-exchange": "dlx", "queue-mode": "lazy"}))
    queue = _queue(broker)
    assert queue.options.dead_letter_exchange == "dlx"
    assert queue.options.lazy


def test_keys_resolve_one_by_one_exchange_from_the_argument_routing_key_from_the_policy():
    broker = _broker()
    broker.set_policy(_policy({"dead-letter-exchange": "p", "dead-letter-routing-key": "rk"}))
    queue = _queue(broker, **{"x-dead-letter-exchange": "a"})
    assert (queue.options.dead_letter_exchange, queue.options.dead_letter_routing_key) == (
        "a",
        "rk",
    )


def test_a_queues_declared_arguments_stay_what_the_client_declared():
    broker = _broker()
    broker.set_policy(_policy({"max-length": 2}))
    queue = _queue(broker, **{"x-max-length": 5})
    assert dict(queue.arguments) == {"x-max-length": 5}
    assert dict(queue.effective_arguments) == {"x-max-length": 2}


def test_redeclaring_with_the_declared_arguments_is_equivalent_whatever_the_policy():
    broker = _broker()
    broker.set_policy(_policy({"max-length": 2}))
    queue = _queue(broker, **{"x-max-length": 5})
    assert _queue(broker, **{"x-max-length": 5}) is queue


def test_a_queue_without_a_policy_runs_on_its_declared_arguments():
    queue = _queue(_broker(), **{"x-max-length": 5})
    assert queue.policy is None
    assert queue.effective_arguments is queue.arguments


# --- applying to queues that exist -------------------------------------------------------------------


def test_a_lower_max_length_drops_the_oldest_messages_at_once():
    broker = _broker()
    queue = _queue(broker)
    _publish(queue, 5)
    broker.set_policy(_policy({"max-length": 3}))
    assert _bodies(queue) == [b"m2", b"m3", b"m4"]


def test_messages_dropped_by_a_new_max_length_are_dead_lettered_with_reason_maxlen():
    broker = _broker()
    dead = _dead_letter_queue(broker)
    queue = _queue(broker, **{"x-dead-letter-exchange": "dlx"})
    _publish(queue, 3)
    broker.set_policy(_policy({"max-length": 1}))
    assert _bodies(dead) == [b"m0", b"m1"]
    assert queue.stats.dead_lettered == {MAXLEN: 2}


def test_a_new_reject_publish_limit_keeps_the_messages_already_queued():
    broker = _broker()
    queue = _queue(broker)
    _publish(queue, 5)
    broker.set_policy(_policy({"max-length": 3, "overflow": "reject-publish"}))
    assert len(_bodies(queue)) == 5
    assert not queue.publish(Message("", "q", PROPERTIES, b"refused"))


def test_a_new_message_ttl_applies_to_messages_published_afterwards_only():
    broker = _broker()
    queue = _queue(broker)
    _publish(queue, 1, "old")
    broker.set_policy(_policy({"message-ttl": 1000}))
    _publish(queue, 1, "new")
    broker.tick(2.0)
    assert _bodies(queue) == [b"old0"]


def test_a_message_keeps_its_expiry_when_the_policy_is_cleared():
    broker = _broker()
    broker.set_policy(_policy({"message-ttl": 1000}))
    queue = _queue(broker)
    _publish(queue, 1)
    broker.clear_policy("/", "p")
    broker.tick(2.0)
    assert _bodies(queue) == []


def test_clearing_the_policy_lifts_its_limit():
    broker = _broker()
    broker.set_policy(_policy({"max-length": 1}))
    queue = _queue(broker)
    assert broker.clear_policy("/", "p")
    _publish(queue, 3)
    assert queue.policy is None
    assert len(_bodies(queue)) == 3


def test_clearing_a_policy_lets_the_next_matching_one_apply():
    broker = _broker()
    broker.set_policy(_policy({"max-length": 1}, name="low", priority=1))
    broker.set_policy(_policy({"max-length": 2}, name="high", priority=5))
    queue = _queue(broker)
    _publish(queue, 3)
    broker.clear_policy("/", "high")
    assert queue.policy is not None and queue.policy.name == "low"
    assert len(_bodies(queue)) == 1


def test_replacing_a_policy_under_the_same_name_applies_the_new_definition():
    broker = _broker()
    broker.set_policy(_policy({"max-length": 5}))
    queue = _queue(broker)
    broker.set_policy(_policy({"max-length": 2}))
    assert queue.options.max_length == 2


def test_replacing_a_policy_with_a_pattern_that_no_longer_matches_takes_it_off_the_queue():
    broker = _broker()
    broker.set_policy(_policy({"max-length": 5}, pattern="^q$"))
    queue = _queue(broker)
    broker.set_policy(_policy({"max-length": 5}, pattern="^other$"))
    assert queue.policy is None
    assert queue.options.max_length is None


def test_a_lower_priority_policy_set_later_leaves_the_queues_policy():
    broker = _broker()
    high = _policy({"max-length": 5}, name="high", priority=5)
    broker.set_policy(high)
    queue = _queue(broker)
    broker.set_policy(_policy({"max-length": 1}, name="low", priority=1))
    assert queue.policy is high


def test_clearing_a_missing_policy_says_so():
    assert not _broker().clear_policy("/", "nope")


def test_an_expires_policy_deletes_an_idle_queue_when_it_runs_out():
    broker = _broker()
    queue = _queue(broker)
    broker.set_policy(_policy({"expires": 1000}))
    broker.tick(1.5)
    assert queue.deleted and "q" not in _vhost(broker).queues


def test_clearing_an_expires_policy_keeps_the_queue():
    broker = _broker()
    broker.set_policy(_policy({"expires": 1000}))
    queue = _queue(broker)
    broker.clear_policy("/", "p")
    broker.tick(5.0)
    assert not queue.deleted


def test_a_delivery_limit_policy_dead_letters_a_message_requeued_too_often():
    broker = _broker()
    dead = _dead_letter_queue(broker)
    queue = _queue(broker, **{"x-dead-letter-exchange": "dlx"})
    broker.set_policy(_policy({"delivery-limit": 1}, pattern="^q$"))
    _publish(queue, 1)
    consumer = FakeConsumer("c", capacity=1)
    queue.add_consumer(consumer)  # type: ignore[arg-type]
    queue.dispatch()
    entry = consumer.got.pop()
    queue.requeue([entry])
    queue.dispatch()
    queue.requeue([consumer.got.pop()])
    assert _bodies(queue) == []
    assert _bodies(dead) == [b"m0"]


def test_a_consumer_timeout_policy_applies_to_deliveries_made_afterwards():
    broker = _broker()
    queue = _queue(broker)
    broker.set_policy(_policy({"consumer-timeout": 500}))
    _publish(queue, 1)
    consumer = FakeConsumer("c", capacity=1)
    queue.add_consumer(consumer)  # type: ignore[arg-type]
    queue.dispatch()
    broker.tick(1.0)
    assert len(consumer.leases_expired) == 1


# --- exchanges ---------------------------------------------------------------------------------------


def _unroutable(vhost: VirtualHost, exchange: str) -> list[Queue]:
    message = Message(exchange, "nowhere", PROPERTIES, b"m")
    return vhost.route(vhost.exchanges[exchange], message)


def test_an_alternate_exchange_from_a_policy_takes_unroutable_messages():
    broker = _broker()
    vhost = _vhost(broker)
    vhost.declare_exchange("ae", "fanout")
    caught = vhost.declare_queue("caught", owner=None)
    vhost.bind("ae", caught, "", FieldTable())
    vhost.declare_exchange("x", "direct")
    broker.set_policy(_policy({"alternate-exchange": "ae"}, pattern="^x$", apply_to="exchanges"))
    assert vhost.exchanges["x"].policy is not None
    assert _unroutable(vhost, "x") == [caught]


def test_an_exchanges_own_alternate_wins_over_the_policys():
    broker = _broker()
    vhost = _vhost(broker)
    for name in ("ae1", "ae2"):
        vhost.declare_exchange(name, "fanout")
        vhost.bind(name, vhost.declare_queue(f"{name}-q", owner=None), "", FieldTable())
    broker.set_policy(_policy({"alternate-exchange": "ae2"}, pattern="^x$", apply_to="exchanges"))
    vhost.declare_exchange("x", "direct", arguments=FieldTable({"alternate-exchange": "ae1"}))
    assert [q.name for q in _unroutable(vhost, "x")] == ["ae1-q"]


def test_clearing_an_exchange_policy_removes_its_alternate():
    broker = _broker()
    vhost = _vhost(broker)
    vhost.declare_exchange("x", "direct")
    broker.set_policy(_policy({"alternate-exchange": "ae"}, pattern="^x$", apply_to="exchanges"))
    broker.clear_policy("/", "p")
    assert vhost.exchanges["x"].alternate_exchange is None


def test_the_default_exchange_takes_no_policy():
    broker = _broker()
    broker.set_policy(_policy({"alternate-exchange": "ae"}, pattern=".*", apply_to="exchanges"))
    assert _vhost(broker).exchanges[""].policy is None
