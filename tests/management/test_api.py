"""The management HTTP API through real HTTP, against a running router whose state pika creates.

Covered, with RabbitMQ 3.10's answers as the reference (/tmp/mgmt_samples/SUMMARY.md):

- overview (object_totals, queue_totals, message_stats counts and ``X_details.rate``), whoami,
  vhosts, users (a password hash, never a password), permissions, policies, health checks and
  the aliveness test;
- connections (name "peer -> local", user, vhost, client-provided name, channel count) and
  closing one with DELETE (the client sees 320 and the X-Reason text), channels, consumers;
- exchanges and queues: list, one, PUT (201, then 204 when equal, 400 when inequivalent, string
  booleans as rabbitmqadmin sends them), DELETE (if-empty), purge, /get in every ackmode;
- bindings: list, POST with the relative Location RabbitMQ answers (double-encoded), GET and
  DELETE by properties key, exchange-to-exchange bindings;
- definitions export and import (a RabbitMQ definitions document);
- HTTP behaviour: basic auth and its two 401s, 404 and 405 bodies, pagination and its errors,
  columns (dotted too), name filter, sort, HEAD, keep-alive, invalid JSON;
- publishing through the API (routed or not, amq.default, base64, properties, a full
  reject-publish queue answering 503 with Retry-After, a delayed exchange);
- router's own endpoints: browsing a queue, moving messages between queues at a rate (and
  cancelling a move), listing and cancelling scheduled messages, the busiest bindings.
"""

from __future__ import annotations

import base64
import http.client
import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from email.message import Message
from typing import Any
from urllib.parse import quote, urlsplit

import pika
import pika.exceptions
import pytest
from conftest import DEADLINE, RunningServer, wait_for
from pika.adapters.blocking_connection import BlockingChannel, BlockingConnection

# ---------------------------------------------------------------------------------------------
# helpers


@dataclass
class Reply:
    status: int
    headers: Message
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


class Client:
    """A tiny management API client over urllib (stdlib), as a script would use it."""

    def __init__(self, base: str) -> None:
        self.base = base

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        user: str | None = "guest",
        password: str = "guest",
        headers: dict[str, str] | None = None,
    ) -> Reply:
        data = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.base + path, data=data, method=method)
        if user is not None:
            request.add_header("Authorization", basic(user, password))
        if data is not None:
            request.add_header("Content-Type", "application/json")
        for name, value in (headers or {}).items():
            request.add_header(name, value)
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return Reply(response.status, response.headers, response.read())
        except urllib.error.HTTPError as error:
            with error:
                return Reply(error.code, error.headers, error.read())

    def get(self, path: str, **kwargs: Any) -> Reply:
        return self.request("GET", path, **kwargs)

    def put(self, path: str, body: Any = None, **kwargs: Any) -> Reply:
        return self.request("PUT", path, body, **kwargs)

    def post(self, path: str, body: Any = None, **kwargs: Any) -> Reply:
        return self.request("POST", path, body, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> Reply:
        return self.request("DELETE", path, **kwargs)


def q(name: str) -> str:
    """A path segment: names are percent-encoded, "/" included (the vhost "/" is %2F)."""
    return quote(name, safe="")


def pump_until(connection: BlockingConnection, condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + DEADLINE
    while not condition():
        assert time.monotonic() < deadline, "the broker did not act in time"
        connection.process_data_events(time_limit=0.05)


def publish(channel: BlockingChannel, routing_key: str, *bodies: bytes, exchange: str = "") -> None:
    """Publish on a confirm channel, so the broker has every message when this returns."""
    for body in bodies:
        channel.basic_publish(exchange, routing_key, body)


def get_body(client: Client, queue: str) -> dict[str, Any]:
    reply = client.post(
        f"/api/queues/%2F/{q(queue)}/get",
        {"count": 1, "ackmode": "ack_requeue_false", "encoding": "auto"},
    )
    assert reply.status == 200
    items = reply.json()
    assert len(items) == 1
    return items[0]


def move_state(client: Client, ident: int) -> dict[str, Any]:
    return next(m for m in client.get("/api/router/moves").json() if m["id"] == ident)


# ---------------------------------------------------------------------------------------------
# fixtures


@pytest.fixture
def api(running: RunningServer) -> Client:
    return Client(running.http_url)


# ---------------------------------------------------------------------------------------------
# overview, whoami, vhosts, users, permissions


def test_overview_object_totals_count_connections_channels_consumers_exchanges_and_queues(
    api, amqp, channel
):
    channel.queue_declare("q1")
    channel.queue_declare("q2")
    channel.basic_consume("q1", lambda *args: None)
    amqp.channel()
    totals = api.get("/api/overview").json()["object_totals"]
    assert totals["connections"] == 1
    assert totals["channels"] == 2
    assert totals["consumers"] == 1
    assert totals["queues"] == 2
    assert totals["exchanges"] == len(api.get("/api/exchanges").json())


def test_overview_queue_totals_count_ready_and_unacknowledged_messages(api, amqp, channel):
    channel.queue_declare("q")
    publish(channel, "q", b"1", b"2", b"3")
    method, _props, _body = channel.basic_get("q", auto_ack=False)
    assert method is not None
    totals = api.get("/api/overview").json()["queue_totals"]
    assert totals["messages"] == 3
    assert totals["messages_ready"] == 2
    assert totals["messages_unacknowledged"] == 1


def test_overview_message_stats_count_publishes_deliveries_and_acks(api, amqp, channel):
    channel.queue_declare("q")
    publish(channel, "q", b"1", b"2", b"3")
    received: list[int] = []
    channel.basic_consume("q", lambda ch, method, props, body: received.append(method.delivery_tag))
    pump_until(amqp, lambda: len(received) == 3)
    for tag in received:
        channel.basic_ack(tag)
    channel.basic_qos(prefetch_count=0)  # a round trip: the acks are in when it returns
    stats = api.get("/api/overview").json()["message_stats"]
    assert stats["publish"] == 3
    assert stats["deliver_get"] == 3
    assert stats["ack"] == 3


def test_overview_message_stats_carry_a_rate_for_each_counter(api, channel):
    channel.queue_declare("q")
    publish(channel, "q", b"x")
    stats = api.get("/api/overview").json()["message_stats"]
    counters = [key for key in stats if not key.endswith("_details")]
    assert {"publish", "deliver_get", "ack"} <= set(counters)
    for key in counters:
        assert isinstance(stats[f"{key}_details"]["rate"], float)


def test_whoami_names_the_user_and_its_tags_as_a_list(api):
    assert api.get("/api/whoami").json() == {"name": "guest", "tags": ["administrator"]}


def test_vhosts_list_the_default_vhost_with_its_message_counts(api, channel):
    channel.queue_declare("q")
    publish(channel, "q", b"1", b"2")
    vhosts = api.get("/api/vhosts").json()
    assert [v["name"] for v in vhosts] == ["/"]
    assert vhosts[0]["messages"] == 2
    assert vhosts[0]["messages_ready"] == 2


def test_one_vhost_is_found_by_its_encoded_name(api):
    assert api.get("/api/vhosts/%2F").json()["name"] == "/"


def test_users_show_a_sha256_password_hash_and_never_the_password(api):
    users = api.get("/api/users").json()
    assert [u["name"] for u in users] == ["guest"]
    guest = users[0]
    assert guest["hashing_algorithm"] == "rabbit_password_hashing_sha256"
    assert len(base64.b64decode(guest["password_hash"])) == 4 + 32
    assert "password" not in guest


def test_a_user_put_with_a_password_can_log_in(api):
    assert api.put("/api/users/alice", {"password": "s3cret", "tags": ""}).status == 201
    assert api.get("/api/whoami", user="alice", password="s3cret").json()["name"] == "alice"


def test_a_user_put_with_a_null_password_cannot_log_in_with_the_word_none(api):
    api.put("/api/users/bob", {"password": None, "tags": ""})
    assert api.get("/api/whoami", user="bob", password="None").status == 401


def test_permissions_list_each_user_on_each_vhost(api):
    assert api.get("/api/permissions").json() == [
        {"user": "guest", "vhost": "/", "configure": ".*", "write": ".*", "read": ".*"}
    ]


def test_policies_are_an_empty_list(api):
    assert api.get("/api/policies").json() == []


# ---------------------------------------------------------------------------------------------
# connections, channels, consumers


def test_a_connection_is_named_peer_arrow_local_address(api, running, amqp):
    (connection,) = api.get("/api/connections").json()
    assert connection["name"].endswith(f" -> 127.0.0.1:{running.port}")
    peer_host, peer_port = connection["name"].split(" -> ")[0].rsplit(":", 1)
    assert (peer_host, int(peer_port)) == (connection["peer_host"], connection["peer_port"])
    assert connection["port"] == running.port


def test_a_connection_shows_its_user_vhost_and_protocol(api, amqp):
    (connection,) = api.get("/api/connections").json()
    assert connection["user"] == "guest"
    assert connection["vhost"] == "/"
    assert connection["protocol"] == "AMQP 0-9-1"


def test_a_connection_shows_the_client_provided_connection_name(api, connect):
    connect("billing-worker")
    (connection,) = api.get("/api/connections").json()
    assert connection["client_properties"]["connection_name"] == "billing-worker"
    assert connection["user_provided_name"] == "billing-worker"


def test_a_connection_counts_its_open_channels(api, amqp):
    amqp.channel()
    amqp.channel()
    (connection,) = api.get("/api/connections").json()
    assert connection["channels"] == 2


def test_one_connection_is_found_by_its_encoded_name(api, amqp):
    (listed,) = api.get("/api/connections").json()
    one = api.get(f"/api/connections/{q(listed['name'])}").json()
    assert one["name"] == listed["name"]


def test_deleting_a_connection_closes_it_with_320_and_the_x_reason_text(api, amqp):
    (connection,) = api.get("/api/connections").json()
    reply = api.delete(
        f"/api/connections/{q(connection['name'])}", headers={"X-Reason": "maintenance window"}
    )
    assert reply.status == 204
    with pytest.raises(pika.exceptions.ConnectionClosedByBroker) as closed:
        pump_until(amqp, lambda: False)
    assert closed.value.reply_code == 320
    assert closed.value.reply_text == "CONNECTION_FORCED - maintenance window"


def test_deleting_a_connection_without_a_reason_says_closed_via_management_plugin(api, amqp):
    (connection,) = api.get("/api/connections").json()
    assert api.delete(f"/api/connections/{q(connection['name'])}").status == 204
    with pytest.raises(pika.exceptions.ConnectionClosedByBroker) as closed:
        pump_until(amqp, lambda: False)
    assert closed.value.reply_text == "CONNECTION_FORCED - Closed via management plugin"


def test_a_deleted_connection_leaves_the_connection_list(api, amqp):
    (connection,) = api.get("/api/connections").json()
    api.delete(f"/api/connections/{q(connection['name'])}")
    wait_for(lambda: api.get("/api/connections").json() == [])


def test_deleting_a_missing_connection_answers_404(api):
    reply = api.delete("/api/connections/nobody")
    assert reply.status == 404
    assert reply.json() == {"error": "Object Not Found", "reason": "Not Found"}


def test_a_channel_shows_its_confirm_flag_and_prefetch_count(api, amqp):
    plain = amqp.channel()
    plain.basic_qos(prefetch_count=7)
    confirming = amqp.channel()
    confirming.confirm_delivery()
    channels = {c["number"]: c for c in api.get("/api/channels").json()}
    assert channels[plain.channel_number]["confirm"] is False
    assert channels[plain.channel_number]["prefetch_count"] == 7
    assert channels[confirming.channel_number]["confirm"] is True


def test_a_channel_counts_its_unacknowledged_messages(api, amqp, channel):
    channel.queue_declare("q")
    publish(channel, "q", b"1", b"2", b"3")
    consumer = amqp.channel()
    consumer.basic_qos(prefetch_count=2)
    received: list[bytes] = []
    consumer.basic_consume("q", lambda ch, method, props, body: received.append(body))
    pump_until(amqp, lambda: len(received) == 2)
    channels = {c["number"]: c for c in api.get("/api/channels").json()}
    assert channels[consumer.channel_number]["messages_unacknowledged"] == 2


def test_a_channel_is_named_after_its_connection_and_number(api, amqp, channel):
    (connection,) = api.get("/api/connections").json()
    name = f"{connection['name']} ({channel.channel_number})"
    one = api.get(f"/api/channels/{q(name)}").json()
    assert one["name"] == name
    assert one["connection_details"]["name"] == connection["name"]


def test_one_channel_lists_the_consumers_it_holds(api, amqp, channel):
    channel.queue_declare("q")
    channel.basic_consume("q", lambda *args: None, consumer_tag="ctag-1")
    (connection,) = api.get("/api/connections").json()
    name = f"{connection['name']} ({channel.channel_number})"
    reply = api.get(f"/api/channels/{q(name)}")
    assert reply.status == 200
    assert [c["consumer_tag"] for c in reply.json()["consumer_details"]] == ["ctag-1"]


def test_consumers_list_the_tag_queue_prefetch_and_ack_mode(api, amqp, channel):
    channel.queue_declare("q")
    channel.basic_qos(prefetch_count=5)
    channel.basic_consume("q", lambda *args: None, consumer_tag="ctag-1")
    (consumer,) = api.get("/api/consumers").json()
    assert consumer["consumer_tag"] == "ctag-1"
    assert consumer["queue"] == {"name": "q", "vhost": "/"}
    assert consumer["prefetch_count"] == 5
    assert consumer["ack_required"] is True
    assert consumer["channel_details"]["number"] == channel.channel_number


def test_an_auto_ack_consumer_does_not_require_acks(api, channel):
    channel.queue_declare("q")
    channel.basic_consume("q", lambda *args: None, auto_ack=True)
    (consumer,) = api.get("/api/consumers").json()
    assert consumer["ack_required"] is False


# ---------------------------------------------------------------------------------------------
# exchanges


def test_exchanges_list_the_default_exchange_first_then_the_amq_exchanges(api):
    names = [x["name"] for x in api.get("/api/exchanges").json()]
    assert names[0] == ""
    assert {"amq.direct", "amq.fanout", "amq.topic", "amq.headers", "amq.match"} <= set(names)


def test_one_exchange_shows_its_type_and_flags(api, channel):
    channel.exchange_declare("ex1", "topic", durable=True)
    exchange = api.get("/api/exchanges/%2F/ex1").json()
    assert exchange["name"] == "ex1"
    assert exchange["type"] == "topic"
    assert exchange["durable"] is True
    assert exchange["auto_delete"] is False
    assert exchange["internal"] is False


def test_the_default_exchange_is_amq_default_in_paths(api):
    assert api.get("/api/exchanges/%2F/amq.default").json()["name"] == ""


def test_put_exchange_creates_it_with_201(api):
    reply = api.put("/api/exchanges/%2F/ex2", {"type": "fanout", "durable": True})
    assert reply.status == 201
    assert reply.body == b""
    assert api.get("/api/exchanges/%2F/ex2").json()["type"] == "fanout"


def test_put_exchange_without_a_type_creates_a_direct_exchange_as_rabbitmq_does(api):
    assert api.put("/api/exchanges/%2F/ex3", {"durable": True}).status == 201
    assert api.get("/api/exchanges/%2F/ex3").json()["type"] == "direct"


def test_put_exchange_again_with_the_same_definition_answers_204(api):
    api.put("/api/exchanges/%2F/ex2", {"type": "fanout"})
    assert api.put("/api/exchanges/%2F/ex2", {"type": "fanout"}).status == 204


def test_put_exchange_with_another_type_answers_400_inequivalent_type(api):
    api.put("/api/exchanges/%2F/ex2", {"type": "fanout"})
    reply = api.put("/api/exchanges/%2F/ex2", {"type": "direct"})
    assert reply.status == 400
    assert reply.json() == {
        "error": "bad_request",
        "reason": "inequivalent arg 'type' for exchange 'ex2' in vhost '/': "
        "received 'direct' but current is 'fanout'",
    }


def test_put_exchange_named_amq_something_is_refused_401_not_authorised(api):
    reply = api.put("/api/exchanges/%2F/amq.foo", {"type": "direct"})
    assert reply.status == 401
    assert reply.json() == {"error": "not_authorised", "reason": "Access refused."}


def test_delete_of_a_reserved_amq_exchange_is_refused_401(api):
    assert api.delete("/api/exchanges/%2F/amq.direct").status == 401
    assert api.get("/api/exchanges/%2F/amq.direct").status == 200


def test_delete_exchange_answers_204_and_it_is_gone(api):
    api.put("/api/exchanges/%2F/ex3", {"type": "direct"})
    assert api.delete("/api/exchanges/%2F/ex3").status == 204
    assert api.get("/api/exchanges/%2F/ex3").status == 404


def test_a_missing_exchange_answers_404_json(api):
    reply = api.get("/api/exchanges/%2F/nosuch")
    assert reply.status == 404
    assert reply.json() == {"error": "Object Not Found", "reason": "Not Found"}


def test_exchange_bindings_list_exchange_to_exchange_bindings_at_source_and_destination(
    api, channel
):
    channel.exchange_declare("ex1", "direct")
    channel.exchange_declare("ex2", "topic")
    channel.exchange_bind(destination="ex2", source="ex1", routing_key="e2e.key")
    (out,) = api.get("/api/exchanges/%2F/ex1/bindings/source").json()
    (into,) = api.get("/api/exchanges/%2F/ex2/bindings/destination").json()
    assert out == into
    assert (out["source"], out["destination"], out["destination_type"], out["routing_key"]) == (
        "ex1",
        "ex2",
        "exchange",
        "e2e.key",
    )
    assert api.get("/api/exchanges/%2F/ex1/bindings/destination").json() == []


# ---------------------------------------------------------------------------------------------
# queues


def test_queues_list_their_message_counts(api, channel):
    channel.queue_declare("a")
    channel.queue_declare("b")
    publish(channel, "b", b"1", b"2")
    counts = {x["name"]: x["messages"] for x in api.get("/api/queues").json()}
    assert counts == {"a": 0, "b": 2}


def test_queues_are_listed_sorted_by_name_as_rabbitmq_lists_them(api, channel):
    for name in ("zeta", "alpha", "mid"):
        channel.queue_declare(name)
    assert [x["name"] for x in api.get("/api/queues").json()] == ["alpha", "mid", "zeta"]


def test_one_queue_shows_ready_unacknowledged_and_consumers(api, amqp, channel):
    channel.queue_declare("q")
    publish(channel, "q", b"1", b"2", b"3")
    consumer = amqp.channel()
    consumer.basic_qos(prefetch_count=1)
    received: list[bytes] = []
    consumer.basic_consume("q", lambda ch, method, props, body: received.append(body))
    pump_until(amqp, lambda: len(received) == 1)
    queue = api.get("/api/queues/%2F/q").json()
    assert queue["messages"] == 3
    assert queue["messages_ready"] == 2
    assert queue["messages_unacknowledged"] == 1
    assert queue["consumers"] == 1
    assert queue["messages_scheduled"] == 0


def test_a_queue_with_waiting_messages_reports_the_age_of_the_oldest(api, channel):
    channel.queue_declare("q")
    publish(channel, "q", b"1")
    age = api.get("/api/queues/%2F/q").json()["oldest_message_age"]
    assert isinstance(age, (int, float))
    assert age >= 0


def test_an_empty_queue_has_no_oldest_message_age(api, channel):
    channel.queue_declare("q")
    assert api.get("/api/queues/%2F/q").json()["oldest_message_age"] is None


def test_queue_message_stats_count_what_the_queue_saw(api, channel):
    channel.queue_declare("q")
    publish(channel, "q", b"1", b"2")
    channel.basic_get("q", auto_ack=True)
    stats = api.get("/api/queues/%2F/q").json()["message_stats"]
    assert stats["publish"] == 2
    assert stats["deliver_get"] == 1
    assert stats["publish_details"] == {"rate": stats["publish_details"]["rate"]}


def test_a_missing_queue_answers_404(api):
    assert api.get("/api/queues/%2F/nosuch").status == 404


def test_a_queue_in_a_missing_vhost_answers_404(api):
    assert api.get("/api/queues/nosuchvhost/q").status == 404


def test_put_queue_creates_it_with_201_and_an_empty_body(api):
    reply = api.put("/api/queues/%2F/q2", {"durable": True, "arguments": {"x-message-ttl": 1000}})
    assert reply.status == 201
    assert reply.body == b""
    queue = api.get("/api/queues/%2F/q2").json()
    assert queue["durable"] is True
    assert queue["arguments"] == {"x-message-ttl": 1000}


def test_put_queue_again_with_the_same_definition_answers_204(api):
    api.put("/api/queues/%2F/q2", {"durable": True})
    assert api.put("/api/queues/%2F/q2", {"durable": True}).status == 204


def test_put_queue_with_other_arguments_answers_400_inequivalent_arg(api):
    api.put("/api/queues/%2F/q2", {"durable": True})
    reply = api.put("/api/queues/%2F/q2", {"durable": True, "arguments": {"x-message-ttl": 1000}})
    assert reply.status == 400
    assert reply.json()["error"] == "bad_request"
    assert reply.json()["reason"].startswith(
        "inequivalent arg 'x-message-ttl' for queue 'q2' in vhost '/'"
    )


def test_put_queue_accepts_string_booleans_as_rabbitmqadmin_sends_them(api):
    body = {"auto_delete": "false", "durable": "true", "arguments": {}, "name": "q", "vhost": "/"}
    assert api.put("/api/queues/%2F/q", body).status == 201
    queue = api.get("/api/queues/%2F/q").json()
    assert queue["durable"] is True
    assert queue["auto_delete"] is False


def test_put_queue_without_durable_creates_a_transient_queue_as_rabbitmq_does(api):
    assert api.put("/api/queues/%2F/q", {}).status == 201
    assert api.get("/api/queues/%2F/q").json()["durable"] is False


def test_put_queue_takes_a_body_sent_as_text_plain(api):
    reply = api.put(
        "/api/queues/%2F/q", b'{"durable":true}', headers={"Content-Type": "text/plain"}
    )
    assert reply.status == 201


def test_delete_queue_answers_204_and_it_is_gone(api, channel):
    channel.queue_declare("q")
    assert api.delete("/api/queues/%2F/q").status == 204
    assert api.get("/api/queues/%2F/q").status == 404


def test_delete_queue_if_empty_on_a_non_empty_queue_answers_400_not_empty(api, channel):
    channel.queue_declare("q")
    publish(channel, "q", b"still here")
    reply = api.delete("/api/queues/%2F/q?if-empty=true")
    assert reply.status == 400
    assert reply.json() == {"error": "bad_request", "reason": "queue 'q' in vhost '/' not empty"}
    assert api.get("/api/queues/%2F/q").status == 200


def test_delete_queue_contents_purges_its_messages(api, channel):
    channel.queue_declare("q")
    publish(channel, "q", b"1", b"2")
    assert api.delete("/api/queues/%2F/q/contents").status == 204
    assert api.get("/api/queues/%2F/q").json()["messages"] == 0


def test_queue_bindings_list_the_default_binding_and_the_explicit_ones(api, channel):
    channel.queue_declare("q")
    channel.exchange_declare("ex1", "direct")
    channel.queue_bind("q", "ex1", routing_key="k")
    bindings = api.get("/api/queues/%2F/q/bindings").json()
    assert [(b["source"], b["routing_key"]) for b in bindings] == [("", "q"), ("ex1", "k")]


# ---------------------------------------------------------------------------------------------
# /get


def test_get_with_ack_requeue_true_leaves_the_message_and_marks_it_redelivered(api, channel):
    channel.queue_declare("q")
    publish(channel, "q", b"hello")
    body = {"count": 1, "ackmode": "ack_requeue_true", "encoding": "auto"}
    (first,) = api.post("/api/queues/%2F/q/get", body).json()
    (second,) = api.post("/api/queues/%2F/q/get", body).json()
    assert (first["payload"], first["redelivered"]) == ("hello", False)
    assert (second["payload"], second["redelivered"]) == ("hello", True)
    assert api.get("/api/queues/%2F/q").json()["messages"] == 1


def test_get_with_ack_requeue_false_removes_the_message(api, channel):
    channel.queue_declare("q")
    publish(channel, "q", b"hello")
    reply = api.post(
        "/api/queues/%2F/q/get", {"count": 1, "ackmode": "ack_requeue_false", "encoding": "auto"}
    )
    assert [m["payload"] for m in reply.json()] == ["hello"]
    assert api.get("/api/queues/%2F/q").json()["messages"] == 0


def test_get_with_reject_requeue_true_leaves_the_message(api, channel):
    channel.queue_declare("q")
    publish(channel, "q", b"hello")
    api.post(
        "/api/queues/%2F/q/get", {"count": 1, "ackmode": "reject_requeue_true", "encoding": "auto"}
    )
    assert api.get("/api/queues/%2F/q").json()["messages"] == 1


def test_get_with_reject_requeue_false_dead_letters_to_the_dlx_queue(api, channel):
    channel.exchange_declare("dlx", "fanout")
    channel.queue_declare("dead")
    channel.queue_bind("dead", "dlx")
    channel.queue_declare("q", arguments={"x-dead-letter-exchange": "dlx"})
    publish(channel, "q", b"poison")
    api.post(
        "/api/queues/%2F/q/get",
        {"count": 1, "ackmode": "reject_requeue_false", "encoding": "auto"},
    )
    assert api.get("/api/queues/%2F/q").json()["messages"] == 0
    _method, props, body = channel.basic_get("dead", auto_ack=True)
    assert body == b"poison"
    assert props.headers["x-death"][0]["reason"] == "rejected"


def test_get_accepts_count_as_a_string_as_rabbitmqadmin_sends_it(api, channel):
    channel.queue_declare("q")
    publish(channel, "q", b"1", b"2")
    reply = api.post(
        "/api/queues/%2F/q/get", {"count": "1", "ackmode": "ack_requeue_true", "encoding": "auto"}
    )
    assert reply.status == 200
    assert len(reply.json()) == 1


def test_get_returns_at_most_count_messages_with_the_count_left_behind_each(api, channel):
    channel.queue_declare("q")
    publish(channel, "q", b"1", b"2", b"3")
    reply = api.post(
        "/api/queues/%2F/q/get", {"count": 2, "ackmode": "ack_requeue_true", "encoding": "auto"}
    )
    assert [(m["payload"], m["message_count"]) for m in reply.json()] == [("1", 2), ("2", 1)]


def test_get_shows_empty_properties_as_an_empty_list_like_rabbitmq(api, channel):
    channel.queue_declare("q")
    publish(channel, "q", b"x")
    message = get_body(api, "q")
    assert message["properties"] == []


def test_get_answers_rabbitmq_fields_in_rabbitmq_order(api, channel):
    channel.queue_declare("q")
    publish(channel, "q", b"x")
    assert list(get_body(api, "q")) == [
        "payload_bytes",
        "redelivered",
        "exchange",
        "routing_key",
        "message_count",
        "properties",
        "payload",
        "payload_encoding",
    ]


def test_get_with_base64_encoding_answers_the_payload_in_base64(api, channel):
    channel.queue_declare("q")
    publish(channel, "q", b"\x00\xffbin")
    (message,) = api.post(
        "/api/queues/%2F/q/get", {"count": 1, "ackmode": "ack_requeue_false", "encoding": "base64"}
    ).json()
    assert message["payload_encoding"] == "base64"
    assert base64.b64decode(message["payload"]) == b"\x00\xffbin"


def test_get_without_required_keys_lists_each_missing_key(api, channel):
    channel.queue_declare("q")
    reply = api.post("/api/queues/%2F/q/get", {"count": 1})
    assert reply.status == 400
    assert reply.json() == {
        "error": "bad_request",
        "reason": "[{key_missing,ackmode},{key_missing,encoding}]",
    }


def test_get_from_an_empty_queue_answers_an_empty_list(api, channel):
    channel.queue_declare("q")
    reply = api.post(
        "/api/queues/%2F/q/get", {"count": 5, "ackmode": "ack_requeue_true", "encoding": "auto"}
    )
    assert reply.json() == []


# ---------------------------------------------------------------------------------------------
# bindings


def test_bindings_list_the_default_binding_of_each_queue_and_the_explicit_ones(api, channel):
    channel.queue_declare("q")
    channel.exchange_declare("ex1", "direct")
    channel.queue_bind("q", "ex1", routing_key="k")
    found = {
        (b["source"], b["destination"], b["routing_key"]) for b in api.get("/api/bindings").json()
    }
    assert found == {("", "q", "q"), ("ex1", "q", "k")}


def test_post_binding_answers_201_with_a_relative_location(api, channel):
    channel.queue_declare("q1")
    channel.exchange_declare("ex1", "direct")
    reply = api.post("/api/bindings/%2F/e/ex1/q/q1", {"routing_key": "k2"})
    assert reply.status == 201
    assert reply.headers["location"] == "q1/k2"
    assert reply.body == b""


def test_post_binding_with_an_empty_body_binds_the_empty_key_at_tilde(api, channel):
    channel.queue_declare("q1")
    channel.exchange_declare("ex1", "direct")
    reply = api.post("/api/bindings/%2F/e/ex1/q/q1")
    assert reply.status == 201
    assert reply.headers["location"] == "q1/~"


def test_post_binding_location_double_encodes_special_characters(api, channel):
    channel.queue_declare("q1")
    channel.exchange_declare("ex1", "direct")
    reply = api.post("/api/bindings/%2F/e/ex1/q/q1", {"routing_key": "a/b%c~d e"})
    assert reply.headers["location"] == "q1/a%252Fb%2525c%257Ed%2Be"


def test_a_binding_is_found_by_its_properties_key(api, channel):
    channel.queue_declare("q1")
    channel.exchange_declare("ex1", "direct")
    api.post("/api/bindings/%2F/e/ex1/q/q1", {"routing_key": "k2"})
    binding = api.get("/api/bindings/%2F/e/ex1/q/q1/k2").json()
    assert (binding["source"], binding["destination"], binding["routing_key"]) == (
        "ex1",
        "q1",
        "k2",
    )
    assert binding["properties_key"] == "k2"


def test_a_binding_with_special_characters_is_deleted_at_its_location(api, channel):
    channel.queue_declare("q1")
    channel.exchange_declare("ex1", "direct")
    location = api.post("/api/bindings/%2F/e/ex1/q/q1", {"routing_key": "a/b%c~d e"}).headers[
        "location"
    ]
    assert api.delete(f"/api/bindings/%2F/e/ex1/q/{location}").status == 204
    assert api.get("/api/bindings/%2F/e/ex1/q/q1").json() == []


def test_deleting_a_binding_answers_204_then_404_once_gone(api, channel):
    channel.queue_declare("q1")
    channel.exchange_declare("ex1", "direct")
    channel.queue_bind("q1", "ex1", routing_key="k")
    assert api.delete("/api/bindings/%2F/e/ex1/q/q1/k").status == 204
    assert api.delete("/api/bindings/%2F/e/ex1/q/q1/k").status == 404


def test_a_binding_with_arguments_has_a_properties_key_with_a_digest(api, channel):
    channel.queue_declare("q1")
    channel.exchange_declare("ex1", "direct")
    reply = api.post("/api/bindings/%2F/e/ex1/q/q1", {"routing_key": "k3", "arguments": {"a": 1}})
    key = reply.headers["location"].split("/", 1)[1]
    assert key.startswith("k3~")
    assert api.get(f"/api/bindings/%2F/e/ex1/q/q1/{key}").json()["arguments"] == {"a": 1}


def test_an_exchange_to_exchange_binding_is_posted_and_deleted(api, channel):
    channel.exchange_declare("ex1", "direct")
    channel.exchange_declare("ex2", "fanout")
    reply = api.post("/api/bindings/%2F/e/ex1/e/ex2", {"routing_key": "to-ex2"})
    assert reply.status == 201
    assert reply.headers["location"] == "ex2/to-ex2"
    assert [b["routing_key"] for b in api.get("/api/bindings/%2F/e/ex1/e/ex2").json()] == ["to-ex2"]
    assert api.delete("/api/bindings/%2F/e/ex1/e/ex2/to-ex2").status == 204
    assert api.get("/api/bindings/%2F/e/ex1/e/ex2").json() == []


def test_a_binding_posted_through_the_api_routes_messages(api, channel):
    channel.queue_declare("q1")
    channel.exchange_declare("ex1", "direct")
    api.post("/api/bindings/%2F/e/ex1/q/q1", {"routing_key": "k"})
    publish(channel, "k", b"routed", exchange="ex1")
    assert channel.basic_get("q1", auto_ack=True)[2] == b"routed"


def test_posting_a_binding_to_a_missing_queue_answers_404(api, channel):
    channel.exchange_declare("ex1", "direct")
    assert api.post("/api/bindings/%2F/e/ex1/q/nosuch", {"routing_key": "k"}).status == 404


# ---------------------------------------------------------------------------------------------
# definitions

SAMPLE_DEFINITIONS = {
    "rabbit_version": "3.10.8",
    "rabbitmq_version": "3.10.8",
    "product_name": "RabbitMQ",
    "product_version": "3.10.8",
    "users": [
        {
            "name": "alice",
            # RabbitMQ's own hash of the password "guest" (GET_api_definitions.json)
            "password_hash": "Xbg2yvoCgHfMJ8rygYTYvkYtrzgA9rcWR+bxq+v8nSRh1djA",
            "hashing_algorithm": "rabbit_password_hashing_sha256",
            "tags": ["administrator"],
            "limits": {},
        }
    ],
    "vhosts": [{"name": "/"}],
    "permissions": [
        {"user": "alice", "vhost": "/", "configure": ".*", "write": ".*", "read": ".*"}
    ],
    "topic_permissions": [],
    "parameters": [],
    "global_parameters": [
        {"name": "internal_cluster_id", "value": "rabbitmq-cluster-id-S7-msST4k4fkktk3ZHJCrg"}
    ],
    "policies": [],
    "queues": [
        {
            "name": "q1",
            "vhost": "/",
            "durable": True,
            "auto_delete": False,
            "arguments": {"x-dead-letter-exchange": "dlx", "x-message-ttl": 60000},
        }
    ],
    "exchanges": [
        {
            "name": "dlx",
            "vhost": "/",
            "type": "fanout",
            "durable": True,
            "auto_delete": False,
            "internal": False,
            "arguments": {},
        },
        {
            "name": "ex1",
            "vhost": "/",
            "type": "direct",
            "durable": True,
            "auto_delete": False,
            "internal": False,
            "arguments": {},
        },
    ],
    "bindings": [
        {
            "source": "ex1",
            "vhost": "/",
            "destination": "q1",
            "destination_type": "queue",
            "routing_key": "k",
            "arguments": {},
        }
    ],
}


def test_definitions_export_the_user_declared_queues_exchanges_and_bindings(api, channel):
    channel.exchange_declare("ex1", "direct", durable=True)
    channel.queue_declare("q1", durable=True, arguments={"x-message-ttl": 60000})
    channel.queue_bind("q1", "ex1", routing_key="k")
    definitions = api.get("/api/definitions").json()
    assert definitions["queues"] == [
        {
            "name": "q1",
            "vhost": "/",
            "durable": True,
            "auto_delete": False,
            "arguments": {"x-message-ttl": 60000},
        }
    ]
    assert [x["name"] for x in definitions["exchanges"]] == ["ex1"]
    assert [(b["source"], b["destination"], b["routing_key"]) for b in definitions["bindings"]] == [
        ("ex1", "q1", "k")
    ]


def test_definitions_have_rabbitmqs_top_level_keys(api):
    assert set(api.get("/api/definitions").json()) == {
        "bindings",
        "exchanges",
        "global_parameters",
        "parameters",
        "permissions",
        "policies",
        "product_name",
        "product_version",
        "queues",
        "rabbit_version",
        "rabbitmq_version",
        "topic_permissions",
        "users",
        "vhosts",
    }


def test_importing_rabbitmq_definitions_creates_what_they_describe(api):
    assert api.post("/api/definitions", SAMPLE_DEFINITIONS).status in (201, 204)
    queue = api.get("/api/queues/%2F/q1").json()
    assert queue["arguments"] == {"x-dead-letter-exchange": "dlx", "x-message-ttl": 60000}
    assert api.get("/api/exchanges/%2F/dlx").json()["type"] == "fanout"
    assert [b["routing_key"] for b in api.get("/api/bindings/%2F/e/ex1/q/q1").json()] == ["k"]


def test_imported_definitions_come_back_in_the_export(api):
    api.post("/api/definitions", SAMPLE_DEFINITIONS)
    exported = api.get("/api/definitions").json()
    for section in ("queues", "exchanges", "bindings"):
        for item in SAMPLE_DEFINITIONS[section]:
            assert item in exported[section]


def test_an_imported_rabbitmq_password_hash_lets_the_user_log_in(api):
    api.post("/api/definitions", SAMPLE_DEFINITIONS)
    assert api.get("/api/whoami", user="alice", password="guest").status == 200


def test_a_definitions_import_that_fails_applies_nothing(api):
    # api.import_definitions: "Every item is checked first; nothing is applied if any is wrong."
    document = {
        "exchanges": [{"name": "ex-new", "vhost": "/", "type": "direct"}],
        "queues": [{"name": "bad", "vhost": "/", "arguments": {"x-message-ttl": "abc"}}],
    }
    reply = api.post("/api/definitions", document)
    assert reply.status == 400
    assert api.get("/api/exchanges/%2F/ex-new").status == 404


# ---------------------------------------------------------------------------------------------
# health


def test_the_alarms_health_check_is_ok_without_alarms(api):
    reply = api.get("/api/health/checks/alarms")
    assert reply.status == 200
    assert reply.json() == {"status": "ok"}


def test_the_alarms_health_check_answers_503_during_a_memory_alarm(api, running):
    running.call(running.broker.set_alarm, "memory", True)
    try:
        reply = api.get("/api/health/checks/alarms")
    finally:
        running.call(running.broker.set_alarm, "memory", False)
    assert reply.status == 503
    assert reply.json()["status"] == "failed"
    assert [a["resource"] for a in reply.json()["alarms"]] == ["memory"]


def test_the_aliveness_test_is_ok(api):
    reply = api.get("/api/aliveness-test/%2F")
    assert reply.status == 200
    assert reply.json() == {"status": "ok"}


# ---------------------------------------------------------------------------------------------
# HTTP: auth, errors, listing parameters, connection handling


def test_a_request_without_credentials_answers_401_with_an_empty_body_and_a_basic_challenge(api):
    reply = api.get("/api/overview", user=None)
    assert reply.status == 401
    assert reply.body == b""
    assert reply.headers["www-authenticate"] == 'Basic realm="RabbitMQ Management"'


def test_a_wrong_password_answers_401_login_failed(api):
    reply = api.get("/api/overview", password="wrong")
    assert reply.status == 401
    assert reply.json() == {"error": "not_authorized", "reason": "Login failed"}
    assert reply.headers["www-authenticate"] == 'Basic realm="RabbitMQ Management"'


def test_an_unknown_user_answers_401_login_failed(api):
    reply = api.get("/api/overview", user="mallory", password="guest")
    assert reply.status == 401
    assert reply.json() == {"error": "not_authorized", "reason": "Login failed"}


def test_an_unknown_api_path_answers_404_json(api):
    reply = api.get("/api/no/such/thing")
    assert reply.status == 404
    assert reply.headers["content-type"] == "application/json"
    assert reply.json() == {"error": "Object Not Found", "reason": "Not Found"}


def test_a_path_outside_the_api_answers_404_json(api):
    reply = api.get("/nothing-here")
    assert reply.status == 404
    assert reply.json() == {"error": "Object Not Found", "reason": "Not Found"}


def test_delete_on_the_overview_answers_405_with_the_allowed_methods(api):
    reply = api.delete("/api/overview")
    assert reply.status == 405
    assert reply.headers["allow"] == "GET, HEAD, OPTIONS"
    assert reply.body == b""


def test_a_page_answers_rabbitmqs_pagination_object(api, channel):
    for name in ("q1", "q2", "q3"):
        channel.queue_declare(name)
    page = api.get("/api/queues?page=1&page_size=2").json()
    assert set(page) == {
        "filtered_count",
        "item_count",
        "items",
        "page",
        "page_count",
        "page_size",
        "total_count",
    }
    assert (page["item_count"], page["page"], page["page_count"], page["page_size"]) == (2, 1, 2, 2)
    assert (page["filtered_count"], page["total_count"]) == (3, 3)
    assert len(page["items"]) == 2


def test_the_last_page_holds_the_rest(api, channel):
    for name in ("q1", "q2", "q3"):
        channel.queue_declare(name)
    page = api.get("/api/queues?page=2&page_size=2&sort=name").json()
    assert [x["name"] for x in page["items"]] == ["q3"]


def test_a_filtered_page_counts_the_filtered_and_the_total_items_apart(api, channel):
    for name in ("orders", "orders-dlq", "billing"):
        channel.queue_declare(name)
    page = api.get("/api/queues?page=1&page_size=10&name=orders").json()
    assert page["filtered_count"] == 2
    assert page["total_count"] == 3


def test_a_page_past_the_end_answers_400_page_out_of_range(api, channel):
    for name in ("q1", "q2", "q3"):
        channel.queue_declare(name)
    reply = api.get("/api/queues?page=50&page_size=2")
    assert reply.status == 400
    assert reply.json() == {
        "error": "page_out_of_range",
        "reason": "Page out of range, page: 50 page size: 2, len: 3",
    }


def test_a_page_size_over_500_answers_400_invalid_pagination_parameters(api):
    reply = api.get("/api/queues?page=1&page_size=1000")
    assert reply.status == 400
    assert reply.json() == {
        "error": "invalid_pagination_parameters",
        "reason": "Invalid pagination parameters: page number 1, page size 1000",
    }


def test_a_non_numeric_page_answers_400_pagination_parameters_are_invalid(api):
    reply = api.get("/api/queues?page=abc")
    assert reply.status == 400
    assert reply.json() == {"error": "bad_request", "reason": "Pagination parameters are invalid"}


def test_columns_keep_only_the_named_fields(api, channel):
    channel.queue_declare("q")
    publish(channel, "q", b"1")
    assert api.get("/api/queues?columns=name,messages").json() == [{"name": "q", "messages": 1}]


def test_dotted_columns_keep_a_field_inside_a_nested_object(api, channel):
    channel.queue_declare("q")
    publish(channel, "q", b"1", b"2")
    assert api.get("/api/queues?columns=name,message_stats.publish").json() == [
        {"name": "q", "message_stats": {"publish": 2}}
    ]


def test_columns_apply_to_a_single_object_too_keeping_map_fields_whole_as_rabbitmq(api):
    reply = api.get("/api/overview?columns=rabbitmq_version,object_totals.queues").json()
    assert set(reply) == {"rabbitmq_version", "object_totals"}
    assert reply["rabbitmq_version"] == "3.10.8"
    # RabbitMQ 3.10 returns a map-valued field whole even when one key of it is asked for
    assert reply["object_totals"]["queues"] == 0 and "connections" in reply["object_totals"]


def test_columns_omit_fields_the_object_does_not_have(api, channel):
    channel.queue_declare("q")
    assert api.get("/api/queues?columns=name,no_such_field").json() == [{"name": "q"}]


def test_the_name_filter_keeps_names_containing_it(api, channel):
    for name in ("orders", "orders-dlq", "billing"):
        channel.queue_declare(name)
    names = sorted(x["name"] for x in api.get("/api/queues?name=orders").json())
    assert names == ["orders", "orders-dlq"]


def test_the_name_filter_takes_a_regular_expression_with_use_regex(api, channel):
    for name in ("q1", "q22", "xq3"):
        channel.queue_declare(name)
    reply = api.get("/api/queues?name=%5Eq%5Cd%24&use_regex=true&columns=name")
    assert reply.json() == [{"name": "q1"}]


def test_sort_and_sort_reverse_order_the_list_by_a_field(api, channel):
    for name, count in (("a", 1), ("b", 3), ("c", 2)):
        channel.queue_declare(name)
        publish(channel, name, *[b"x"] * count)
    reply = api.get("/api/queues?sort=messages&sort_reverse=true&columns=name")
    assert [x["name"] for x in reply.json()] == ["b", "c", "a"]


def test_head_answers_the_headers_of_get_without_a_body(api):
    whoami = api.get("/api/whoami")
    head = api.request("HEAD", "/api/whoami")
    assert head.status == 200
    assert head.body == b""
    assert head.headers["content-length"] == str(len(whoami.body))


def test_two_requests_share_one_kept_alive_connection(running):
    host, port = urlsplit(running.http_url).hostname, urlsplit(running.http_url).port
    connection = http.client.HTTPConnection(host, port, timeout=10)
    headers = {"Authorization": basic("guest", "guest")}
    try:
        connection.request("GET", "/api/whoami", headers=headers)
        first = connection.getresponse()
        assert json.loads(first.read())["name"] == "guest"
        socket = connection.sock
        connection.request("GET", "/api/overview", headers=headers)
        second = connection.getresponse()
        assert second.status == 200
        assert json.loads(second.read())["rabbitmq_version"] == "3.10.8"
        assert connection.sock is socket
    finally:
        connection.close()


def test_a_body_that_is_not_json_answers_400_not_json(api):
    reply = api.put("/api/queues/%2F/q", b"{not json")
    assert reply.status == 400
    assert reply.json() == {"error": "bad_request", "reason": "not_json"}


def test_a_json_array_body_answers_400_not_json(api):
    reply = api.put("/api/queues/%2F/q", b"[1, 2]")
    assert reply.json() == {"error": "bad_request", "reason": "not_json"}


def test_json_answers_are_compact_with_a_json_content_type(api):
    reply = api.get("/api/whoami")
    assert reply.headers["content-type"] == "application/json"
    assert reply.body == b'{"name":"guest","tags":["administrator"]}'


# ---------------------------------------------------------------------------------------------
# publishing through the API


def publish_body(routing_key: str, payload: str = "hello", **extra: Any) -> dict[str, Any]:
    return {
        "properties": {},
        "routing_key": routing_key,
        "payload": payload,
        "payload_encoding": "string",
        **extra,
    }


def test_publishing_to_a_bound_queue_answers_routed_true(api, channel):
    channel.exchange_declare("ex1", "direct")
    channel.queue_declare("q")
    channel.queue_bind("q", "ex1", routing_key="k")
    reply = api.post("/api/exchanges/%2F/ex1/publish", publish_body("k"))
    assert reply.status == 200
    assert reply.json() == {"routed": True}
    assert channel.basic_get("q", auto_ack=True)[2] == b"hello"


def test_publishing_where_no_queue_matches_answers_routed_false(api, channel):
    channel.exchange_declare("ex1", "direct")
    reply = api.post("/api/exchanges/%2F/ex1/publish", publish_body("nobody"))
    assert reply.json() == {"routed": False}


def test_publishing_to_amq_default_routes_by_queue_name(api, channel):
    channel.queue_declare("adminq")
    body = publish_body("adminq", exchange="amq.default", vhost="/")
    assert api.post("/api/exchanges/%2F/amq.default/publish", body).json() == {"routed": True}
    assert channel.basic_get("adminq", auto_ack=True)[2] == b"hello"


def test_a_base64_payload_arrives_as_its_bytes(api, channel):
    channel.queue_declare("q")
    body = publish_body("q", base64.b64encode(b"\x00\x01binary\xff").decode())
    body["payload_encoding"] = "base64"
    assert api.post("/api/exchanges/%2F/amq.default/publish", body).json() == {"routed": True}
    assert channel.basic_get("q", auto_ack=True)[2] == b"\x00\x01binary\xff"


def test_published_properties_with_headers_and_priority_reach_the_consumer(api, channel):
    channel.queue_declare("q")
    body = publish_body("q")
    body["properties"] = {
        "delivery_mode": 2,
        "priority": 3,
        "content_type": "application/json",
        "message_id": "mid-1",
        "headers": {"h1": "v1", "n": 7},
    }
    api.post("/api/exchanges/%2F/amq.default/publish", body)
    _method, props, _body = channel.basic_get("q", auto_ack=True)
    assert props.delivery_mode == 2
    assert props.priority == 3
    assert props.content_type == "application/json"
    assert props.message_id == "mid-1"
    assert props.headers == {"h1": "v1", "n": 7}


def test_published_properties_show_in_get(api, channel):
    channel.queue_declare("q")
    body = publish_body("q")
    body["properties"] = {"priority": 1, "headers": {"n": 4}}
    api.post("/api/exchanges/%2F/amq.default/publish", body)
    assert get_body(api, "q")["properties"] == {"priority": 1, "headers": {"n": 4}}


def test_a_message_published_through_the_api_reaches_a_waiting_consumer(api, amqp, channel):
    channel.queue_declare("q")
    received: list[bytes] = []
    channel.basic_consume("q", lambda ch, method, props, body: received.append(body))
    api.post("/api/exchanges/%2F/amq.default/publish", publish_body("q", "pushed"))
    pump_until(amqp, lambda: received == [b"pushed"])


def test_publishing_with_a_non_integer_expiration_answers_400_like_rabbitmq(api, channel):
    channel.queue_declare("q")
    body = publish_body("q")
    body["properties"] = {"expiration": "abc"}
    reply = api.post("/api/exchanges/%2F/amq.default/publish", body)
    assert reply.status == 400
    assert reply.json()["reason"].endswith("invalid expiration 'abc': no_integer")


def test_publishing_with_a_priority_over_255_answers_400_not_an_internal_error(api, channel):
    channel.queue_declare("q")
    body = publish_body("q")
    body["properties"] = {"priority": 300}
    assert api.post("/api/exchanges/%2F/amq.default/publish", body).status == 400


def test_publishing_with_a_routing_key_over_255_bytes_answers_400_not_an_internal_error(api):
    reply = api.post("/api/exchanges/%2F/amq.default/publish", publish_body("r" * 300))
    assert reply.status == 400


def test_publishing_to_a_missing_exchange_answers_400_with_the_amqp_404_text(api):
    reply = api.post("/api/exchanges/%2F/nosuchex/publish", publish_body("k"))
    assert reply.status == 400
    assert reply.json() == {
        "error": "bad_request",
        "reason": "404 NOT_FOUND - no exchange 'nosuchex' in vhost '/'",
    }


def test_publishing_without_the_required_keys_lists_each_missing_key(api):
    reply = api.post("/api/exchanges/%2F/amq.default/publish", {"routing_key": "q"})
    assert reply.status == 400
    assert reply.json()["reason"] == (
        "[{key_missing,properties},{key_missing,payload},{key_missing,payload_encoding}]"
    )


def test_publishing_to_a_full_reject_publish_queue_answers_503_with_retry_after(api, channel):
    channel.queue_declare("small", arguments={"x-max-length": 1, "x-overflow": "reject-publish"})
    first = api.post("/api/exchanges/%2F/amq.default/publish", publish_body("small", "one"))
    second = api.post("/api/exchanges/%2F/amq.default/publish", publish_body("small", "two"))
    assert first.status == 200
    assert second.status == 503
    assert int(second.headers["retry-after"]) >= 1
    assert api.get("/api/queues/%2F/small").json()["messages"] == 1


def test_publishing_to_a_delayed_exchange_holds_the_message_until_its_delay(api, channel):
    channel.exchange_declare("later", "x-delayed-message", arguments={"x-delayed-type": "direct"})
    channel.queue_declare("q")
    channel.queue_bind("q", "later", routing_key="k")
    body = publish_body("k")
    body["properties"] = {"headers": {"x-delay": 60000}}
    assert api.post("/api/exchanges/%2F/later/publish", body).json() == {"routed": True}
    queue = api.get("/api/queues/%2F/q").json()
    assert (queue["messages_ready"], queue["messages_scheduled"]) == (0, 1)


def test_a_delayed_publish_through_the_api_counts_its_delay_from_the_time_of_the_request(
    api, running, channel
):
    channel.exchange_declare("later", "x-delayed-message", arguments={"x-delayed-type": "direct"})
    channel.queue_declare("q")
    channel.queue_bind("q", "later", routing_key="k")
    # no AMQP traffic for 30 s: the broker's clock was last set then (the runtime sets it on
    # each AMQP event and queue deadline)
    running.call(setattr, running.broker.clock, "now", running.broker.clock.now - 30)
    body = publish_body("k")
    body["properties"] = {"headers": {"x-delay": 10000}}
    api.post("/api/exchanges/%2F/later/publish", body)
    (scheduled,) = api.get("/api/queues/%2F/q/scheduled").json()["items"]
    assert 9 <= scheduled["due_in"] <= 10
    assert api.get("/api/queues/%2F/q").json()["messages_scheduled"] == 1


# ---------------------------------------------------------------------------------------------
# router's own: browsing, moves, scheduled messages, busiest bindings


def test_browsing_a_queue_shows_its_messages_in_order_without_taking_them(api, channel):
    channel.queue_declare("q")
    publish(channel, "q", b"m0", b"m1", b"m2")
    page = api.get("/api/queues/%2F/q/messages?offset=1&count=2").json()
    assert page["total"] == 3
    assert page["offset"] == 1
    assert [(m["position"], m["payload"]) for m in page["items"]] == [(1, "m1"), (2, "m2")]
    assert api.get("/api/queues/%2F/q").json()["messages_ready"] == 3


def test_a_browsed_message_is_not_marked_redelivered(api, channel):
    channel.queue_declare("q")
    publish(channel, "q", b"m0")
    (item,) = api.get("/api/queues/%2F/q/messages").json()["items"]
    assert item["redelivered"] is False
    assert item["delivery_count"] == 0
    method, _props, body = channel.basic_get("q", auto_ack=True)
    assert (body, method.redelivered) == (b"m0", False)


def test_browsing_counts_no_delivery(api, channel):
    channel.queue_declare("q")
    publish(channel, "q", b"m0", b"m1")
    api.get("/api/queues/%2F/q/messages")
    assert api.get("/api/queues/%2F/q").json()["message_stats"]["deliver_get"] == 0


def test_browsing_with_a_bad_offset_answers_400(api, channel):
    channel.queue_declare("q")
    assert api.get("/api/queues/%2F/q/messages?offset=x").status == 400


def start_move(api: Client, source: str, **body: Any) -> dict[str, Any]:
    reply = api.post(f"/api/queues/%2F/{q(source)}/move", body)
    assert reply.status == 201, reply.body
    return reply.json()


def test_a_move_takes_every_message_to_the_destination_queue(api, channel):
    channel.queue_declare("dlq")
    channel.queue_declare("work")
    publish(channel, "dlq", *[b"m%d" % i for i in range(5)])
    move = start_move(api, "dlq", destination="work", rate=50)
    wait_for(lambda: move_state(api, move["id"])["state"] == "done")
    assert move_state(api, move["id"])["moved"] == 5
    assert api.get("/api/queues/%2F/dlq").json()["messages"] == 0
    assert [m["payload"] for m in api.get("/api/queues/%2F/work/messages").json()["items"]] == [
        "m0",
        "m1",
        "m2",
        "m3",
        "m4",
    ]


def test_a_move_answers_201_with_its_location(api, channel):
    channel.queue_declare("dlq")
    channel.queue_declare("work")
    reply = api.post("/api/queues/%2F/dlq/move", {"destination": "work"})
    assert reply.status == 201
    assert reply.headers["location"] == f"/api/router/moves/{reply.json()['id']}"


def test_a_count_limited_move_stops_at_its_count(api, channel):
    channel.queue_declare("dlq")
    channel.queue_declare("work")
    publish(channel, "dlq", *[b"m%d" % i for i in range(5)])
    move = start_move(api, "dlq", destination="work", rate=100, count=2)
    wait_for(lambda: move_state(api, move["id"])["state"] == "done")
    assert move_state(api, move["id"])["moved"] == 2
    assert api.get("/api/queues/%2F/dlq").json()["messages"] == 3
    assert api.get("/api/queues/%2F/work").json()["messages"] == 2


def test_a_rate_limited_move_sends_one_message_at_once_and_the_rest_over_time(api, channel):
    channel.queue_declare("dlq")
    channel.queue_declare("work")
    publish(channel, "dlq", *[b"m%d" % i for i in range(5)])
    started = time.monotonic()
    move = start_move(api, "dlq", destination="work", rate=10)
    assert (move["moved"], move["state"]) == (1, "running")
    wait_for(lambda: move_state(api, move["id"])["state"] == "done")
    assert time.monotonic() - started >= 0.3  # 4 more at 10 a second
    assert api.get("/api/queues/%2F/work").json()["messages"] == 5


def test_a_move_into_a_full_reject_publish_queue_stops_and_leaves_the_rest_in_the_source(
    api, channel
):
    channel.queue_declare("dlq")
    channel.queue_declare("small", arguments={"x-max-length": 2, "x-overflow": "reject-publish"})
    publish(channel, "dlq", *[b"m%d" % i for i in range(5)])
    move = start_move(api, "dlq", destination="small")
    wait_for(lambda: move_state(api, move["id"])["state"] != "running")
    state = move_state(api, move["id"])
    assert (state["state"], state["moved"]) == ("stopped", 2)
    assert "small" in state["reason"]
    assert api.get("/api/queues/%2F/dlq").json()["messages"] == 3
    assert api.get("/api/queues/%2F/small").json()["messages"] == 2


def test_a_move_whose_destination_is_deleted_fails_with_a_reason(api, channel):
    channel.queue_declare("dlq")
    channel.queue_declare("work")
    publish(channel, "dlq", *[b"m%d" % i for i in range(10)])
    move = start_move(api, "dlq", destination="work", rate=1)
    api.delete("/api/queues/%2F/work")
    wait_for(lambda: move_state(api, move["id"])["state"] == "failed")
    assert move_state(api, move["id"])["reason"]
    assert api.get("/api/queues/%2F/dlq").json()["messages"] == 9


def test_a_move_with_a_fractional_count_answers_400_and_the_broker_keeps_serving(
    api, amqp, channel
):
    channel.queue_declare("dlq")
    channel.queue_declare("work")
    publish(channel, "dlq", b"m0", b"m1", b"m2")
    reply = api.post("/api/queues/%2F/dlq/move", {"destination": "work", "count": 2.5})
    assert reply.status == 400
    assert api.get("/api/overview").status == 200
    assert channel.queue_declare("dlq", passive=True).method.message_count == 3


def test_moving_to_a_missing_queue_answers_400(api, channel):
    channel.queue_declare("dlq")
    reply = api.post("/api/queues/%2F/dlq/move", {"destination": "nosuch"})
    assert reply.status == 400
    assert "nosuch" in reply.json()["reason"]


def test_a_moved_message_keeps_its_body_and_its_x_death_headers(api, channel):
    channel.queue_declare("dlq")
    channel.queue_declare(
        "work", arguments={"x-dead-letter-exchange": "", "x-dead-letter-routing-key": "dlq"}
    )
    publish(channel, "work", b"poison")
    api.post(
        "/api/queues/%2F/work/get",
        {"count": 1, "ackmode": "reject_requeue_false", "encoding": "auto"},
    )
    move = start_move(api, "dlq", destination="work")
    wait_for(lambda: move_state(api, move["id"])["state"] == "done")
    _method, props, body = channel.basic_get("work", auto_ack=True)
    assert body == b"poison"
    (death,) = props.headers["x-death"]
    assert (death["queue"], death["reason"]) == ("work", "rejected")


def test_a_cancelled_move_stops_moving(api, channel):
    channel.queue_declare("dlq")
    channel.queue_declare("work")
    publish(channel, "dlq", *[b"m%d" % i for i in range(10)])
    move = start_move(api, "dlq", destination="work", rate=1)
    assert api.delete(f"/api/router/moves/{move['id']}").status == 204
    state = move_state(api, move["id"])
    assert state["state"] == "cancelled"
    assert state["moved"] < 10
    assert (
        api.get("/api/queues/%2F/dlq").json()["messages"]
        + api.get("/api/queues/%2F/work").json()["messages"]
        == 10
    )


def test_cancelling_a_missing_move_answers_404(api):
    assert api.delete("/api/router/moves/99").status == 404


@pytest.fixture
def delayed(channel: BlockingChannel) -> BlockingChannel:
    """A delayed exchange "later" routing key "k" to queue "q"."""
    channel.exchange_declare("later", "x-delayed-message", arguments={"x-delayed-type": "direct"})
    channel.queue_declare("q")
    channel.queue_bind("q", "later", routing_key="k")
    return channel


def test_scheduled_lists_messages_published_with_an_x_delay(api, delayed):
    delayed.basic_publish(
        "later", "k", b"tomorrow", pika.BasicProperties(headers={"x-delay": 60000})
    )
    scheduled = api.get("/api/queues/%2F/q/scheduled").json()
    assert scheduled["total"] == 1
    (item,) = scheduled["items"]
    assert item["payload"] == "tomorrow"
    assert 0 < item["due_in"] <= 60
    assert api.get("/api/queues/%2F/q").json()["messages_scheduled"] == 1


def test_a_cancelled_scheduled_message_leaves_the_queue(api, delayed):
    delayed.basic_publish("later", "k", b"never", pika.BasicProperties(headers={"x-delay": 300}))
    delayed.basic_publish("later", "k", b"kept", pika.BasicProperties(headers={"x-delay": 300}))
    items = api.get("/api/queues/%2F/q/scheduled").json()["items"]
    never = next(i for i in items if i["payload"] == "never")
    assert api.delete(f"/api/queues/%2F/q/scheduled/{never['id']}").status == 204
    assert api.get("/api/queues/%2F/q").json()["messages_scheduled"] == 1
    wait_for(lambda: api.get("/api/queues/%2F/q").json()["messages_ready"] == 1)
    assert [m["payload"] for m in api.get("/api/queues/%2F/q/messages").json()["items"]] == ["kept"]


def test_cancelling_a_missing_scheduled_message_answers_404(api, delayed):
    assert api.delete("/api/queues/%2F/q/scheduled/12345").status == 404


def test_the_busiest_bindings_list_matched_counts_busiest_first(api, channel):
    channel.exchange_declare("events", "topic")
    channel.queue_declare("orders")
    channel.queue_declare("all")
    channel.queue_bind("orders", "events", routing_key="order.*")
    channel.queue_bind("all", "events", routing_key="#")
    channel.queue_bind("all", "events", routing_key="never.matched")
    publish(channel, "order.created", b"1", b"2", exchange="events")
    publish(channel, "user.created", b"3", exchange="events")
    busiest = api.get("/api/router/bindings").json()
    assert [(b["routing_key"], b["matched"]) for b in busiest] == [("#", 3), ("order.*", 2)]
    assert all(isinstance(b["matched_details"]["rate"], float) for b in busiest)


# ---------------------------------------------------------------------------------------------
# users' tags, deleting users and vhosts, permissions and policies (RabbitMQ 3.10's answers)


def _amqp_as(running: RunningServer, user: str, password: str, vhost: str = "/"):
    params = pika.ConnectionParameters(
        "127.0.0.1",
        running.port,
        vhost,
        pika.PlainCredentials(user, password),
        connection_attempts=1,
        socket_timeout=5,
    )
    return pika.BlockingConnection(params)


def _closed_by_broker(connection: BlockingConnection) -> tuple[int, str]:
    deadline = time.monotonic() + DEADLINE
    while time.monotonic() < deadline:
        try:
            connection.process_data_events(time_limit=0.05)
        except pika.exceptions.ConnectionClosedByBroker as closed:
            return closed.reply_code, closed.reply_text
    raise AssertionError("the broker did not close the connection")


PERMISSION = {"configure": ".*", "write": ".*", "read": ".*"}


def test_user_tags_given_as_a_comma_separated_string_are_listed(api):
    api.put("/api/users/alice", {"password": "pw", "tags": "management, policymaker"})
    assert api.get("/api/users/alice").json()["tags"] == ["management", "policymaker"]


def test_user_tags_given_as_a_list_are_kept(api):
    api.put("/api/users/alice", {"password": "pw", "tags": ["monitoring"]})
    assert api.get("/api/users/alice").json()["tags"] == ["monitoring"]


def test_a_user_put_without_tags_keeps_them(api):
    api.put("/api/users/alice", {"password": "pw", "tags": "management"})
    api.put("/api/users/alice", {"password": "new"})
    assert api.get("/api/users/alice").json()["tags"] == ["management"]


def test_tags_that_are_neither_a_string_nor_a_list_are_400(api):
    reply = api.put("/api/users/alice", {"password": "pw", "tags": 5})
    assert reply.status == 400
    assert "tags must be a comma-separated string or a list" in reply.json()["reason"]


def test_whoami_shows_the_users_own_tags(api):
    api.put("/api/users/alice", {"password": "pw", "tags": "monitoring"})
    assert api.get("/api/whoami", user="alice", password="pw").json() == {
        "name": "alice",
        "tags": ["monitoring"],
    }


def test_deleting_a_user_answers_204_and_then_404(api):
    api.put("/api/users/alice", {"password": "pw", "tags": ""})
    assert api.delete("/api/users/alice").status == 204
    assert api.get("/api/users/alice").status == 404
    assert api.delete("/api/users/alice").status == 404


def test_deleting_a_user_closes_its_connections_with_320(api, running):
    api.put("/api/users/alice", {"password": "pw", "tags": ""})
    api.put("/api/permissions/%2F/alice", PERMISSION)
    connection = _amqp_as(running, "alice", "pw")
    api.delete("/api/users/alice")
    assert _closed_by_broker(connection) == (320, "CONNECTION_FORCED - user 'alice' is deleted")


def test_a_vhost_put_gives_its_creator_every_permission_on_it(api):
    assert api.put("/api/vhosts/tenant").status == 201
    assert api.get("/api/permissions/tenant/guest").json() == {
        "user": "guest",
        "vhost": "tenant",
        **PERMISSION,
    }


def test_deleting_a_vhost_answers_204_and_then_404(api):
    api.put("/api/vhosts/tenant")
    assert api.delete("/api/vhosts/tenant").status == 204
    assert api.get("/api/vhosts/tenant").status == 404
    assert api.delete("/api/vhosts/tenant").status == 404


def test_deleting_a_vhost_closes_its_connections_and_deletes_its_queues(api, running):
    api.put("/api/vhosts/tenant")
    connection = _amqp_as(running, "guest", "guest", "tenant")
    connection.channel().queue_declare("q")
    api.delete("/api/vhosts/tenant")
    assert _closed_by_broker(connection) == (320, "CONNECTION_FORCED - vhost 'tenant' is deleted")
    assert [q["name"] for q in api.get("/api/queues").json()] == []
    assert api.get("/api/vhosts/tenant/permissions").status == 404


def test_a_permission_put_creates_then_updates(api):
    api.put("/api/users/alice", {"password": "pw", "tags": ""})
    assert api.put("/api/permissions/%2F/alice", PERMISSION).status == 201
    body = {"configure": "^a", "write": "^b", "read": "^c"}
    assert api.put("/api/permissions/%2F/alice", body).status == 204
    assert api.get("/api/permissions/%2F/alice").json() == {"user": "alice", "vhost": "/", **body}


def test_permissions_are_listed_by_user_and_by_vhost(api):
    api.put("/api/users/alice", {"password": "pw", "tags": ""})
    api.put("/api/permissions/%2F/alice", PERMISSION)
    alice = {"user": "alice", "vhost": "/", **PERMISSION}
    guest = {"user": "guest", "vhost": "/", **PERMISSION}
    assert api.get("/api/users/alice/permissions").json() == [alice]
    assert api.get("/api/vhosts/%2F/permissions").json() == [alice, guest]
    assert api.get("/api/permissions").json() == [alice, guest]


def test_a_permission_for_an_unknown_user_is_400_as_rabbitmq_words_it(api):
    reply = api.put("/api/permissions/%2F/nobody", PERMISSION)
    assert (reply.status, reply.json()) == (
        400,
        {"error": "bad_request", "reason": "vhost_or_user_not_found"},
    )


def test_a_permission_missing_a_pattern_is_400_naming_it(api):
    reply = api.put("/api/permissions/%2F/guest", {"configure": ".*"})
    assert reply.json()["reason"] == "[{key_missing,write},{key_missing,read}]"


def test_a_permission_that_is_not_a_regular_expression_is_400(api):
    reply = api.put("/api/permissions/%2F/guest", {**PERMISSION, "read": "("})
    assert reply.status == 400
    assert "read '(' is not a valid regular expression" in reply.json()["reason"]


def test_deleting_a_permission_answers_204_and_then_404(api):
    assert api.delete("/api/permissions/%2F/guest").status == 204
    assert api.get("/api/permissions/%2F/guest").status == 404
    assert api.delete("/api/permissions/%2F/guest").status == 404


def test_a_user_without_permission_on_the_vhost_is_refused_at_connection_open(api, running):
    api.put("/api/users/alice", {"password": "pw", "tags": ""})
    with pytest.raises(pika.exceptions.ProbableAccessDeniedError) as refused:
        _amqp_as(running, "alice", "pw")
    assert "NOT_ALLOWED - access to vhost '/' refused for user 'alice'" in str(refused.value)


POLICY = {"pattern": "^q", "definition": {"max-length": 2}, "priority": 1, "apply-to": "queues"}


def test_a_policy_put_creates_then_updates(api):
    assert api.put("/api/policies/%2F/limit", POLICY).status == 201
    assert api.put("/api/policies/%2F/limit", POLICY).status == 204


def test_a_policy_is_shown_with_rabbitmqs_fields(api):
    api.put("/api/policies/%2F/limit", POLICY)
    expected = {
        "vhost": "/",
        "name": "limit",
        "pattern": "^q",
        "apply-to": "queues",
        "definition": {"max-length": 2},
        "priority": 1,
    }
    assert api.get("/api/policies/%2F/limit").json() == expected
    assert api.get("/api/policies").json() == [expected]
    assert api.get("/api/policies/%2F").json() == [expected]


def test_a_policy_without_priority_and_apply_to_gets_rabbitmqs_defaults(api):
    api.put("/api/policies/%2F/p", {"pattern": ".*", "definition": {"max-length": 2}})
    policy = api.get("/api/policies/%2F/p").json()
    assert (policy["priority"], policy["apply-to"]) == (0, "all")


def test_a_policy_with_an_ignored_rabbitmq_key_lists_it(api):
    api.put("/api/policies/%2F/ha", {"pattern": ".*", "definition": {"ha-mode": "all"}})
    assert api.get("/api/policies/%2F/ha").json()["ignored_keys"] == ["ha-mode"]


def test_a_policy_with_an_unknown_key_is_400_suggesting_the_known_one(api):
    body = {"pattern": ".*", "definition": {"message_ttl": 10}}
    reply = api.put("/api/policies/%2F/p", body)
    assert reply.status == 400
    assert reply.json()["error"] == "bad_request"
    assert "did you mean 'message-ttl'?" in reply.json()["reason"]


def test_a_policy_missing_its_pattern_is_400_naming_it(api):
    reply = api.put("/api/policies/%2F/p", {"definition": {"max-length": 1}})
    assert reply.json()["reason"] == "[{key_missing,pattern}]"


def test_a_policy_on_a_missing_vhost_is_404_as_rabbitmq_answers(api):
    reply = api.put("/api/policies/nowhere/p", POLICY)
    assert (reply.status, reply.json()) == (
        404,
        {"error": "not_found", "reason": "vhost_not_found"},
    )


def test_deleting_a_policy_answers_204_and_then_404(api):
    api.put("/api/policies/%2F/limit", POLICY)
    assert api.delete("/api/policies/%2F/limit").status == 204
    assert api.delete("/api/policies/%2F/limit").status == 404


def test_a_queue_shows_its_policy_and_the_policys_definition(api, channel):
    channel.queue_declare("q1")
    api.put("/api/policies/%2F/limit", POLICY)
    queue = api.get("/api/queues/%2F/q1").json()
    assert queue["policy"] == "limit"
    assert queue["operator_policy"] is None
    assert queue["effective_policy_definition"] == {"max-length": 2}
    assert queue["arguments"] == {}


def test_a_queue_without_a_policy_shows_null_and_an_empty_definition(api, channel):
    channel.queue_declare("q1")
    queue = api.get("/api/queues/%2F/q1").json()
    assert (queue["policy"], queue["effective_policy_definition"]) == (None, {})


def test_a_policy_put_limits_an_existing_queue_at_once(api, channel):
    channel.queue_declare("q1")
    publish(channel, "q1", b"1", b"2", b"3", b"4")
    api.put("/api/policies/%2F/limit", POLICY)
    assert api.get("/api/queues/%2F/q1").json()["messages_ready"] == 2


def test_an_exchange_shows_its_policy_only_when_one_applies(api, channel):
    channel.exchange_declare("x1", "direct")
    assert "policy" not in api.get("/api/exchanges/%2F/x1").json()
    body = {"pattern": "^x", "definition": {"alternate-exchange": "ae"}, "apply-to": "exchanges"}
    api.put("/api/policies/%2F/ae", body)
    assert api.get("/api/exchanges/%2F/x1").json()["policy"] == "ae"


def test_definitions_export_permissions_policies_and_user_tags(api):
    api.put("/api/users/alice", {"password": "pw", "tags": "management"})
    api.put("/api/permissions/%2F/alice", {"configure": "^a", "write": "^b", "read": "^c"})
    api.put("/api/policies/%2F/limit", POLICY)
    definitions = api.get("/api/definitions").json()
    assert {"user": "alice", "vhost": "/", "configure": "^a", "write": "^b", "read": "^c"} in (
        definitions["permissions"]
    )
    assert [u["tags"] for u in definitions["users"] if u["name"] == "alice"] == [["management"]]
    assert definitions["policies"] == [{"vhost": "/", "name": "limit", **_rabbit(POLICY)}]


def _rabbit(policy: dict[str, Any]) -> dict[str, Any]:
    return {
        "pattern": policy["pattern"],
        "apply-to": policy["apply-to"],
        "definition": policy["definition"],
        "priority": policy["priority"],
    }


def test_importing_definitions_creates_permissions_policies_and_tags(api):
    document = {
        **SAMPLE_DEFINITIONS,
        "users": [{**SAMPLE_DEFINITIONS["users"][0], "tags": "management,policymaker"}],
        "permissions": [
            {"user": "alice", "vhost": "/", "configure": "^a", "write": "^b", "read": "^c"}
        ],
        "policies": [{"vhost": "/", "name": "limit", **_rabbit(POLICY)}],
    }
    assert api.post("/api/definitions", document).status == 204
    assert api.get("/api/users/alice").json()["tags"] == ["management", "policymaker"]
    assert api.get("/api/permissions/%2F/alice").json()["configure"] == "^a"
    assert api.get("/api/queues/%2F/q1").json()["policy"] == "limit"


def test_a_definitions_import_with_a_bad_policy_applies_nothing(api):
    document = {
        "exchanges": [{"name": "ex-new", "vhost": "/", "type": "direct"}],
        "policies": [
            {"vhost": "/", "name": "p", "pattern": ".*", "definition": {"max-priority": 10}}
        ],
    }
    reply = api.post("/api/definitions", document)
    assert reply.status == 400
    assert "max-priority cannot be set by a policy" in reply.json()["reason"]
    assert api.get("/api/exchanges/%2F/ex-new").status == 404


def test_a_definitions_import_with_a_permission_for_an_unknown_user_applies_nothing(api):
    document = {
        "vhosts": [{"name": "tenant"}],
        "permissions": [{"user": "nobody", "vhost": "tenant", **PERMISSION}],
    }
    reply = api.post("/api/definitions", document)
    assert reply.status == 400
    assert "no user 'nobody'; declare it under 'users'" in reply.json()["reason"]
    assert api.get("/api/vhosts/tenant").status == 404
