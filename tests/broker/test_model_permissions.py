"""Permissions, user tags, and deleting users and vhosts, in the sans-IO model.

Each method's check is RabbitMQ 3.10's (rabbit_channel), in its order, with its texts; the same
probes were run against the reference broker (tests/differential/test_permissions.py compares
them live). A ``FakeClient`` logs in as a user made for the test."""

from __future__ import annotations

import pytest
from model_helpers import FakeClient

from router.amqp import spec
from router.amqp.tables import FieldTable
from router.broker.broker import Broker, BrokerConfig
from router.broker.permissions import Access, Permission
from router.broker.ports import CountingIds
from router.broker.queues import Queue

USER = "alice"


def _broker() -> Broker:
    broker = Broker(BrokerConfig(), ids=CountingIds())
    broker.set_user(USER, "secret")
    # objects made by guest (who may do everything on "/"): c* configurable, w* writable, r*
    # readable by alice; o* nothing
    vhost = broker.vhosts["/"]
    for name in ("cx", "wx", "rx", "ox"):
        vhost.declare_exchange(name, "direct")
    for name in ("cq", "wq", "rq", "oq"):
        vhost.declare_queue(name, owner=None)
    return broker


def _client(
    broker: Broker, configure: str = "^c", write: str = "^w", read: str = "^r"
) -> FakeClient:
    broker.set_permissions(USER, "/", configure, write, read)
    client = FakeClient(broker, user=USER, password="secret")
    client.open_channel(1)
    return client


def _refusal(client: FakeClient, method: spec.Method) -> tuple[int, str] | None:
    """Send ``method`` on a fresh channel; the channel.close code and text, or None if it
    passed."""
    channel = max((r.channel for r in client.received), default=1) + 1
    client.open_channel(channel)
    client.call(channel, method)
    close = client.channel_close(channel)
    return (close.reply_code, close.reply_text) if close is not None else None


def _publish_refusal(client: FakeClient, exchange: str) -> tuple[int, str] | None:
    channel = max((r.channel for r in client.received), default=1) + 1
    client.open_channel(channel)
    client.publish(channel, exchange, "k", b"m")
    close = client.channel_close(channel)
    return (close.reply_code, close.reply_text) if close is not None else None


def _denied(kind: str, name: str) -> tuple[int, str]:
    return (
        403,
        f"ACCESS_REFUSED - access to {kind} '{name}' in vhost '/' refused for user 'alice'",
    )


# --- the permission itself ---------------------------------------------------------------------


def test_a_permission_pattern_is_searched_anywhere_in_the_name():
    assert Permission("c", "", "").allows("configure", "abc")


def test_an_anchored_pattern_must_match_from_the_start():
    assert not Permission("^c", "", "").allows("configure", "abc")


def test_an_empty_pattern_allows_nothing():
    assert not Permission("", "", "").allows("write", "anything")


def test_an_invalid_pattern_is_a_value_error_naming_the_pattern():
    with pytest.raises(ValueError, match=r"configure '\(' is not a valid regular expression"):
        Permission("(", ".*", ".*")


def test_the_default_exchange_is_checked_under_the_name_amq_default():
    access = Access(USER, "/", Permission("", "^amq\\.default$", ""))
    assert access.allows("write", "exchange", "")


# --- users, tags and the settings' users ------------------------------------------------------------


def test_settings_users_are_administrators_with_every_permission_on_settings_vhosts():
    broker = Broker(BrokerConfig(users=(("admin", "pw"),), vhosts=("/", "other")))
    assert broker.user_tags["admin"] == ("administrator",)
    assert broker.permissions[("admin", "other")] == Permission(".*", ".*", ".*")


def test_a_user_added_later_has_no_tags_and_no_permissions():
    broker = Broker(BrokerConfig())
    broker.set_user("bob", "pw")
    assert broker.user_tags["bob"] == ()
    assert not any(user == "bob" for user, _vhost in broker.permissions)


def test_setting_a_user_without_tags_keeps_its_tags():
    broker = Broker(BrokerConfig())
    broker.set_user("bob", "pw", tags=("management",))
    broker.set_user("bob", "new password")
    assert broker.user_tags["bob"] == ("management",)


def test_permissions_for_an_unknown_user_are_a_value_error():
    with pytest.raises(ValueError, match="no user 'nobody'"):
        Broker(BrokerConfig()).set_permissions("nobody", "/", ".*", ".*", ".*")


def test_permissions_on_an_unknown_vhost_are_a_value_error():
    broker = Broker(BrokerConfig())
    with pytest.raises(ValueError, match="no vhost 'nowhere'"):
        broker.set_permissions("guest", "nowhere", ".*", ".*", ".*")


def test_opening_a_vhost_without_permission_is_530_with_rabbitmqs_text():
    broker = _broker()
    client = FakeClient(broker, user=USER, password="secret", expect_open=False)
    close = client.connection_close()
    assert close is not None
    assert (close.reply_code, close.reply_text) == (
        530,
        "NOT_ALLOWED - access to vhost '/' refused for user 'alice'",
    )


# --- each method's check ---------------------------------------------------------------------------


def test_exchange_declare_needs_configure_on_the_exchange():
    client = _client(_broker())
    assert _refusal(client, spec.ExchangeDeclare(exchange="ox", type="direct")) == _denied(
        "exchange", "ox"
    )


def test_exchange_declare_is_allowed_with_configure():
    client = _client(_broker())
    assert _refusal(client, spec.ExchangeDeclare(exchange="cx", type="direct")) is None


def test_a_passive_exchange_declare_needs_no_permission():
    client = _client(_broker(), "", "", "")
    assert _refusal(client, spec.ExchangeDeclare(exchange="ox", passive=True)) is None


def test_the_amq_prefix_is_refused_only_after_the_configure_check():
    client = _client(_broker())
    assert _refusal(client, spec.ExchangeDeclare(exchange="amq.x", type="direct")) == _denied(
        "exchange", "amq.x"
    )


def test_a_new_exchange_with_an_alternate_needs_read_on_it_and_write_on_the_alternate():
    client = _client(_broker(), "^c", "^w", "^c")
    arguments = FieldTable({"alternate-exchange": "ox"})
    method = spec.ExchangeDeclare(exchange="cnew", type="direct", arguments=arguments)
    assert _refusal(client, method) == _denied("exchange", "ox")


def test_exchange_delete_needs_configure_even_when_the_exchange_is_missing():
    client = _client(_broker())
    assert _refusal(client, spec.ExchangeDelete(exchange="omissing")) == _denied(
        "exchange", "omissing"
    )


def test_queue_declare_needs_configure_on_the_queue():
    client = _client(_broker())
    assert _refusal(client, spec.QueueDeclare(queue="oq")) == _denied("queue", "oq")


def test_a_passive_queue_declare_needs_no_permission():
    client = _client(_broker(), "", "", "")
    assert _refusal(client, spec.QueueDeclare(queue="oq", passive=True)) is None


def test_a_server_named_queue_is_checked_under_its_generated_name():
    client = _client(_broker())
    refusal = _refusal(client, spec.QueueDeclare(queue=""))
    assert refusal is not None
    assert refusal[1].startswith("ACCESS_REFUSED - access to queue 'amq.gen-")


def test_server_named_queues_are_allowed_by_a_pattern_for_amq_gen():
    client = _client(_broker(), "^amq\\.gen", "", "")
    assert _refusal(client, spec.QueueDeclare(queue="")) is None


def test_a_new_queue_with_a_dead_letter_exchange_needs_write_on_that_exchange():
    client = _client(_broker(), "^c", "^w", "^c")
    arguments = FieldTable({"x-dead-letter-exchange": "ox"})
    method = spec.QueueDeclare(queue="cq2", arguments=arguments)
    assert _refusal(client, method) == _denied("exchange", "ox")


def test_a_new_queue_with_a_dead_letter_exchange_needs_read_on_the_queue():
    client = _client(_broker())
    arguments = FieldTable({"x-dead-letter-exchange": "wx"})
    method = spec.QueueDeclare(queue="cq2", arguments=arguments)
    assert _refusal(client, method) == _denied("queue", "cq2")


def test_dead_lettering_to_the_default_exchange_needs_write_on_amq_default():
    client = _client(_broker(), "^c", "^w", "^c")
    arguments = FieldTable({"x-dead-letter-exchange": ""})
    method = spec.QueueDeclare(queue="cq2", arguments=arguments)
    assert _refusal(client, method) == _denied("exchange", "amq.default")


def test_queue_delete_needs_configure_even_when_the_queue_is_missing():
    client = _client(_broker())
    assert _refusal(client, spec.QueueDelete(queue="omissing")) == _denied("queue", "omissing")


def test_queue_purge_needs_read():
    client = _client(_broker())
    assert _refusal(client, spec.QueuePurge(queue="oq")) == _denied("queue", "oq")


def test_queue_bind_checks_write_on_the_queue_first():
    client = _client(_broker())
    assert _refusal(client, spec.QueueBind(queue="oq", exchange="ox")) == _denied("queue", "oq")


def test_queue_bind_needs_read_on_the_exchange():
    client = _client(_broker())
    assert _refusal(client, spec.QueueBind(queue="wq", exchange="ox")) == _denied("exchange", "ox")


def test_queue_bind_with_write_on_the_queue_and_read_on_the_exchange_is_allowed():
    client = _client(_broker())
    assert _refusal(client, spec.QueueBind(queue="wq", exchange="rx", routing_key="k")) is None


def test_binding_to_the_default_exchange_is_refused_after_the_write_check():
    client = _client(_broker())
    assert _refusal(client, spec.QueueBind(queue="oq", exchange="")) == _denied("queue", "oq")
    assert _refusal(client, spec.QueueBind(queue="wq", exchange="")) == (
        403,
        "ACCESS_REFUSED - operation not permitted on the default exchange",
    )


def test_queue_unbind_needs_write_on_the_queue_and_read_on_the_exchange():
    client = _client(_broker())
    assert _refusal(client, spec.QueueUnbind(queue="wq", exchange="ox")) == _denied(
        "exchange", "ox"
    )


def test_exchange_bind_needs_write_on_the_destination_and_read_on_the_source():
    client = _client(_broker())
    assert _refusal(client, spec.ExchangeBind(destination="ox", source="rx")) == _denied(
        "exchange", "ox"
    )
    assert _refusal(client, spec.ExchangeBind(destination="wx", source="ox")) == _denied(
        "exchange", "ox"
    )
    assert _refusal(client, spec.ExchangeBind(destination="wx", source="rx")) is None


def test_publish_needs_write_on_the_exchange():
    client = _client(_broker())
    assert _publish_refusal(client, "ox") == _denied("exchange", "ox")


def test_publish_is_refused_before_a_missing_exchange_is_noticed():
    client = _client(_broker())
    assert _publish_refusal(client, "omissing") == _denied("exchange", "omissing")


def test_publish_to_the_default_exchange_is_checked_as_amq_default():
    client = _client(_broker())
    assert _publish_refusal(client, "") == _denied("exchange", "amq.default")


def test_basic_get_needs_read_on_the_queue():
    client = _client(_broker())
    assert _refusal(client, spec.BasicGet(queue="oq")) == _denied("queue", "oq")


def test_basic_consume_needs_read_on_the_queue():
    client = _client(_broker())
    assert _refusal(client, spec.BasicConsume(queue="oq")) == _denied("queue", "oq")


def test_consuming_direct_replies_needs_no_permission():
    client = _client(_broker(), "", "", "")
    method = spec.BasicConsume(queue="amq.rabbitmq.reply-to", no_ack=True)
    assert _refusal(client, method) is None


# --- changes reach open connections ----------------------------------------------------------------


def test_a_publish_allowed_before_is_refused_once_the_permission_changes():
    broker = _broker()
    client = _client(broker)
    client.publish(1, "wx", "k", b"first")
    broker.set_permissions(USER, "/", "^c", "^nothing", "^r")
    client.publish(1, "wx", "k", b"second")
    assert client.channel_close(1) is not None


def test_a_publish_refused_before_is_allowed_once_granted():
    broker = _broker()
    client = _client(broker)
    assert _publish_refusal(client, "ox") is not None
    broker.set_permissions(USER, "/", "^c", "^[wo]", "^r")
    assert _publish_refusal(client, "ox") is None


def test_clearing_permissions_refuses_the_next_method_but_keeps_the_connection_open():
    broker = _broker()
    client = _client(broker)
    assert broker.clear_permissions(USER, "/")
    assert _refusal(client, spec.BasicGet(queue="rq")) == _denied("queue", "rq")
    assert client.connection_close() is None


def test_another_users_permission_change_keeps_a_connections_publish_cache():
    broker = _broker()
    client = _client(broker)
    client.publish(1, "wx", "k", b"m")
    cached = client.session.access
    broker.set_permissions("guest", "/", ".*", ".*", ".*")
    assert client.session.access is cached and "wx" in cached.writable


# --- deleting users and vhosts ---------------------------------------------------------------------


def test_deleting_a_user_closes_its_connections_with_320():
    broker = _broker()
    client = _client(broker, ".*", ".*", ".*")
    broker.delete_user(USER)
    close = client.connection_close()
    assert close is not None
    assert (close.reply_code, close.reply_text) == (
        320,
        "CONNECTION_FORCED - user 'alice' is deleted",
    )


def test_deleting_a_user_drops_its_permissions_and_tags():
    broker = _broker()
    broker.set_permissions(USER, "/", ".*", ".*", ".*")
    broker.delete_user(USER)
    assert (USER, "/") not in broker.permissions
    assert USER not in broker.user_tags


def test_deleting_a_user_leaves_other_users_connected():
    broker = _broker()
    guest = FakeClient(broker)
    broker.delete_user(USER)
    assert guest.connection_close() is None


def test_deleting_a_vhost_closes_its_connections_with_320():
    broker = _broker()
    broker.add_vhost("tenant")
    broker.set_permissions("guest", "tenant", ".*", ".*", ".*")
    client = FakeClient(broker, vhost="tenant")
    broker.delete_vhost("tenant")
    close = client.connection_close()
    assert close is not None
    assert (close.reply_code, close.reply_text) == (
        320,
        "CONNECTION_FORCED - vhost 'tenant' is deleted",
    )


def test_deleting_a_vhost_deletes_its_queues_and_the_permissions_on_it():
    broker = _broker()
    tenant = broker.add_vhost("tenant")
    broker.set_permissions(USER, "tenant", ".*", ".*", ".*")
    queue: Queue = tenant.declare_queue("q", owner=None)
    broker.delete_vhost("tenant")
    assert queue.deleted
    assert "tenant" not in broker.vhosts
    assert (USER, "tenant") not in broker.permissions


def test_deleting_a_missing_vhost_is_a_key_error():
    with pytest.raises(KeyError):
        Broker(BrokerConfig()).delete_vhost("nowhere")
