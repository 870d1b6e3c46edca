"""Permissions and policies as a real pika client sees them over TCP: 530 at connection.open
without permission on the vhost, 403 channel errors for refused resources with RabbitMQ's texts
(the connection stays usable), 320 when the user is deleted, and a policy limiting a queue."""

from __future__ import annotations

from collections.abc import Iterator

import pika
import pika.exceptions
import pytest
from conftest import RunningServer
from pika.adapters.blocking_connection import BlockingConnection
from pika_helpers import pump_until, ready_count

from router.broker.policies import Policy

USER, PASSWORD = "app", "app-secret"


@pytest.fixture
def app_user(router_server: RunningServer) -> RunningServer:
    """A user "app" on "/": it may configure and write "app.*" resources, read "app.*"."""
    broker = router_server.broker
    router_server.call(lambda: broker.set_user(USER, PASSWORD))
    router_server.call(lambda: broker.set_permissions(USER, "/", "^app\\.", "^app\\.", "^app\\."))
    return router_server


def _connect(
    server: RunningServer, user: str = USER, password: str = PASSWORD
) -> BlockingConnection:
    params = pika.ConnectionParameters(
        "127.0.0.1",
        server.port,
        "/",
        pika.PlainCredentials(user, password),
        connection_attempts=1,
        socket_timeout=5,
    )
    return pika.BlockingConnection(params)


@pytest.fixture
def app(app_user: RunningServer) -> Iterator[BlockingConnection]:
    connection = _connect(app_user)
    try:
        yield connection
    finally:
        if connection.is_open:
            connection.close()


def test_a_user_without_permission_on_the_vhost_is_refused_with_530(router_server):
    router_server.call(lambda: router_server.broker.set_user("nobody", "pw"))
    with pytest.raises(pika.exceptions.ProbableAccessDeniedError) as refused:
        _connect(router_server, "nobody", "pw")
    assert "(530) \"NOT_ALLOWED - access to vhost '/' refused for user 'nobody'\"" in str(
        refused.value
    )


def test_declaring_a_queue_outside_the_permission_is_403_and_closes_only_the_channel(app):
    channel = app.channel()
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as closed:
        channel.queue_declare("other.q")
    assert (closed.value.reply_code, closed.value.reply_text) == (
        403,
        "ACCESS_REFUSED - access to queue 'other.q' in vhost '/' refused for user 'app'",
    )
    assert app.channel().queue_declare("app.q").method.queue == "app.q"


def test_publishing_to_the_default_exchange_is_refused_naming_amq_default(app):
    channel = app.channel()
    channel.basic_publish("", "app.q", b"m")
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as closed:
        channel.queue_declare("app.q", passive=True)  # a round trip: the refusal arrives first
    assert closed.value.reply_text == (
        "ACCESS_REFUSED - access to exchange 'amq.default' in vhost '/' refused for user 'app'"
    )


def test_a_user_publishing_and_consuming_within_its_permission_works(app):
    channel = app.channel()
    channel.exchange_declare("app.x", "fanout")
    channel.queue_declare("app.q")
    channel.queue_bind("app.q", "app.x")
    channel.confirm_delivery()
    channel.basic_publish("app.x", "", b"hello")
    method, _props, body = channel.basic_get("app.q", auto_ack=True)
    assert method is not None and body == b"hello"


def test_deleting_the_user_closes_its_connection_with_320(app_user, app):
    app_user.call(lambda: app_user.broker.delete_user(USER))
    with pytest.raises(pika.exceptions.ConnectionClosedByBroker) as closed:
        pump_until(app, lambda: False, timeout=5)
    assert (closed.value.reply_code, closed.value.reply_text) == (
        320,
        "CONNECTION_FORCED - user 'app' is deleted",
    )


def test_a_policy_set_while_a_client_publishes_limits_the_queue(router_server, router_url):
    connection = pika.BlockingConnection(pika.URLParameters(router_url))
    try:
        channel = connection.channel()
        channel.queue_declare("limited")
        channel.confirm_delivery()
        for n in range(5):
            channel.basic_publish("", "limited", str(n).encode())
        policy = Policy("/", "limit", "^limited$", "queues", 0, {"max-length": 2})
        router_server.call(lambda: router_server.broker.set_policy(policy))
        assert ready_count(channel, "limited") == 2
        assert channel.basic_get("limited", auto_ack=True)[2] == b"3"
    finally:
        connection.close()
