"""Session: errors turned into closes, teardown on close, exclusive and auto-delete queues,
server-sent basic.cancel, and the order of events in one read."""

from __future__ import annotations

from model_helpers import FakeClient, make_broker

from router.amqp import spec
from router.amqp.frames import method_frame
from router.amqp.tables import FieldTable
from router.broker.broker import Broker


def _client(broker: Broker | None = None, **kwargs) -> FakeClient:  # type: ignore[no-untyped-def]
    client = FakeClient(broker or make_broker(), **kwargs)
    client.open_channel(1)
    return client


def _types(received) -> list[type]:  # type: ignore[no-untyped-def]
    return [type(r.method) for r in received]


# --- publish errors ------------------------------------------------------------------------------


def test_publishing_to_a_missing_exchange_closes_the_channel_with_404():
    client = _client()
    client.publish(1, "nope", "k", b"x")
    assert client.channel_close(1) == spec.ChannelClose(
        404, "NOT_FOUND - no exchange 'nope' in vhost '/'", 60, 40
    )
    assert client.connection_close() is None


def test_publishing_with_immediate_closes_the_connection_with_540():
    client = _client()
    client.declare_queue(1, "q")
    client.publish(1, "", "q", b"x", immediate=True)
    close = client.connection_close()
    assert close is not None
    assert close.reply_code == 540
    assert (close.class_id, close.method_id) == (60, 40)
    assert client.broker.vhosts["/"].queues["q"].message_count == 0


def test_publishing_to_an_internal_exchange_closes_the_channel_with_403():
    client = _client()
    client.call(1, spec.ExchangeDeclare(exchange="inner", type="fanout", internal=True))
    client.publish(1, "inner", "", b"x")
    assert client.channel_close(1).reply_code == 403


def test_frames_after_a_connection_error_in_the_same_read_are_ignored():
    client = _client()
    client.declare_queue(1, "q")
    client.send(
        FakeClient.publish_bytes(1, "", "q", b"x", immediate=True),
        FakeClient.publish_bytes(1, "", "q", b"after"),
    )
    assert client.broker.vhosts["/"].queues["q"].message_count == 0


# --- declare errors through the session ----------------------------------------------------------


def test_a_redeclare_error_closes_the_channel_with_the_methods_ids():
    client = _client()
    client.call(1, spec.ExchangeDeclare(exchange="x", type="direct"))
    client.call(1, spec.ExchangeDeclare(exchange="x", type="topic"))
    close = client.channel_close(1)
    assert close.reply_code == 406
    assert (close.class_id, close.method_id) == (40, 10)
    assert "inequivalent arg 'type' for exchange 'x'" in close.reply_text


def test_a_passive_declare_of_a_missing_queue_closes_the_channel_with_404():
    client = _client()
    client.call(1, spec.QueueDeclare(queue="nope", passive=True))
    assert client.channel_close(1) == spec.ChannelClose(
        404, "NOT_FOUND - no queue 'nope' in vhost '/'", 50, 10
    )


def test_declaring_a_reserved_queue_name_closes_the_channel_with_403():
    client = _client()
    client.call(1, spec.QueueDeclare(queue="amq.reserved"))
    assert client.channel_close(1).reply_code == 403


def test_declare_ok_reports_the_generated_name_and_counts():
    client = _client()
    ok = client.declare_queue(1, "")
    assert ok == spec.QueueDeclareOk("amq.gen-t1", 0, 0)


def test_an_empty_queue_name_means_the_last_declared_queue():
    client = _client()
    name = client.declare_queue(1, "").queue
    client.publish(1, "", name, b"x")
    (reply,) = client.call(1, spec.BasicGet(0, "", True))
    assert reply.body == b"x"


# --- exclusive queues ----------------------------------------------------------------------------


def test_consuming_from_another_connections_exclusive_queue_is_405():
    broker = make_broker()
    owner, other = _client(broker), _client(broker)
    owner.declare_queue(1, "mine", exclusive=True)
    other.consume(1, "mine", "c")
    assert other.channel_close(1).reply_code == 405


def test_getting_from_another_connections_exclusive_queue_is_405():
    broker = make_broker()
    owner, other = _client(broker), _client(broker)
    owner.declare_queue(1, "mine", exclusive=True)
    other.call(1, spec.BasicGet(0, "mine", False))
    assert other.channel_close(1).reply_code == 405


def test_the_owner_can_use_its_exclusive_queue_on_any_channel():
    client = _client()
    client.open_channel(2)
    client.declare_queue(1, "mine", exclusive=True)
    assert _types(client.consume(2, "mine", "c")) == [spec.BasicConsumeOk]


def test_connection_close_deletes_the_connections_exclusive_queues():
    broker = make_broker()
    client = _client(broker)
    client.declare_queue(1, "mine", exclusive=True)
    client.declare_queue(1, "shared")
    client.send(method_frame(0, spec.ConnectionClose(200, "bye")))
    assert "mine" not in broker.vhosts["/"].queues
    assert "shared" in broker.vhosts["/"].queues
    assert client.methods(0, spec.ConnectionCloseOk)


def test_a_dropped_socket_deletes_the_connections_exclusive_queues():
    broker = make_broker()
    client = _client(broker)
    client.declare_queue(1, "mine", exclusive=True)
    client.session.receive_data(b"", 0.0)
    assert "mine" not in broker.vhosts["/"].queues


def test_an_exclusive_queue_is_free_to_declare_again_after_its_owner_leaves():
    broker = make_broker()
    first = _client(broker)
    first.declare_queue(1, "mine", exclusive=True)
    first.send(method_frame(0, spec.ConnectionClose(200, "bye")))
    second = _client(broker)
    assert second.declare_queue(1, "mine", exclusive=True) == spec.QueueDeclareOk("mine", 0, 0)


def test_an_exclusive_consumer_keeps_other_consumers_out_with_403():
    broker = make_broker()
    first, second = _client(broker), _client(broker)
    first.declare_queue(1, "q")
    first.consume(1, "q", "only", exclusive=True)
    second.consume(1, "q", "c")
    assert second.channel_close(1).reply_code == 403


# --- teardown ------------------------------------------------------------------------------------


def test_closing_a_channel_requeues_its_unacked_messages():
    client = _client()
    client.declare_queue(1, "q")
    client.publish(1, "", "q", b"1")
    client.publish(1, "", "q", b"2")
    client.consume(1, "q", "c")
    assert _types(client.call(1, spec.ChannelClose())) == [spec.ChannelCloseOk]
    queue = client.broker.vhosts["/"].queues["q"]
    assert queue.message_count == 2
    assert queue.unacked == 0


def test_messages_requeued_by_a_channel_close_are_redelivered_in_order():
    client = _client()
    client.declare_queue(1, "q")
    for body in (b"1", b"2", b"3"):
        client.publish(1, "", "q", body)
    client.consume(1, "q", "c")
    client.ack(1, 2)
    client.call(1, spec.ChannelClose())
    client.open_channel(2)
    client.consume(2, "q", "c2")
    again = client.deliveries(2)
    assert [(r.body, r.method.redelivered) for r in again] == [(b"1", True), (b"3", True)]


def test_closing_the_connection_requeues_unacked_messages_of_shared_queues():
    broker = make_broker()
    client = _client(broker)
    client.declare_queue(1, "q")
    client.publish(1, "", "q", b"1")
    client.consume(1, "q", "c")
    client.send(method_frame(0, spec.ConnectionClose(200, "bye")))
    assert broker.vhosts["/"].queues["q"].message_count == 1


def test_a_publish_followed_by_connection_close_in_the_same_read_is_routed():
    broker = make_broker()
    client = _client(broker)
    client.declare_queue(1, "q")
    client.send(
        FakeClient.publish_bytes(1, "", "q", b"last words"),
        method_frame(0, spec.ConnectionClose(200, "bye")),
    )
    queue = broker.vhosts["/"].queues["q"]
    assert [e.message.body for e in queue.ready_messages()] == [b"last words"]
    assert client.methods(0, spec.ConnectionCloseOk)


def test_a_publish_followed_by_channel_close_in_the_same_read_is_routed():
    broker = make_broker()
    client = _client(broker)
    client.declare_queue(1, "q")
    client.send(FakeClient.publish_bytes(1, "", "q", b"x"), method_frame(1, spec.ChannelClose()))
    assert broker.vhosts["/"].queues["q"].message_count == 1


def test_a_closed_connection_leaves_the_brokers_sessions():
    broker = make_broker()
    client = _client(broker)
    assert client.session.id in broker.sessions
    client.send(method_frame(0, spec.ConnectionClose(200, "bye")))
    assert client.session.id not in broker.sessions


# --- auto-delete ---------------------------------------------------------------------------------


def test_an_auto_delete_queue_goes_when_its_last_consumer_cancels():
    broker = make_broker()
    client = _client(broker)
    client.declare_queue(1, "q", auto_delete=True)
    client.consume(1, "q", "a")
    client.consume(1, "q", "b")
    client.call(1, spec.BasicCancel("a"))
    assert "q" in broker.vhosts["/"].queues
    assert _types(client.call(1, spec.BasicCancel("b"))) == [spec.BasicCancelOk]
    assert "q" not in broker.vhosts["/"].queues


def test_an_auto_delete_queue_that_never_had_a_consumer_stays():
    broker = make_broker()
    client = _client(broker)
    client.declare_queue(1, "q", auto_delete=True)
    client.call(1, spec.ChannelClose())
    assert "q" in broker.vhosts["/"].queues


def test_an_auto_delete_queue_goes_when_its_consumers_channel_closes():
    broker = make_broker()
    client = _client(broker)
    client.declare_queue(1, "q", auto_delete=True)
    client.consume(1, "q", "a")
    client.call(1, spec.ChannelClose())
    assert "q" not in broker.vhosts["/"].queues


def test_an_auto_delete_queue_going_takes_an_auto_delete_exchange_with_it():
    broker = make_broker()
    client = _client(broker)
    client.call(1, spec.ExchangeDeclare(exchange="x", type="fanout", auto_delete=True))
    client.declare_queue(1, "q", auto_delete=True)
    client.call(1, spec.QueueBind(queue="q", exchange="x"))
    client.consume(1, "q", "a")
    client.call(1, spec.BasicCancel("a"))
    assert "x" not in broker.vhosts["/"].exchanges


def test_an_auto_delete_exchange_goes_when_its_last_queue_is_unbound():
    broker = make_broker()
    client = _client(broker)
    client.call(1, spec.ExchangeDeclare(exchange="x", type="direct", auto_delete=True))
    client.declare_queue(1, "q")
    client.call(1, spec.QueueBind(queue="q", exchange="x", routing_key="k"))
    assert _types(client.call(1, spec.QueueUnbind(queue="q", exchange="x", routing_key="k"))) == [
        spec.QueueUnbindOk
    ]
    assert "x" not in broker.vhosts["/"].exchanges


# --- queue deletion and consumers ----------------------------------------------------------------


def test_deleting_a_queue_sends_basic_cancel_to_a_client_that_asked_for_it():
    broker = make_broker()
    consumer = _client(broker, capabilities={"consumer_cancel_notify": True})
    admin = _client(broker)
    consumer.declare_queue(1, "q")
    consumer.consume(1, "q", "ctag")
    admin.call(1, spec.QueueDelete(queue="q"))
    assert _types(consumer.take()) == [spec.BasicCancel]
    assert consumer.methods(1, spec.BasicCancel) == [spec.BasicCancel("ctag", True)]


def test_deleting_a_queue_sends_no_basic_cancel_to_a_client_that_did_not_ask():
    broker = make_broker()
    consumer = _client(broker)
    admin = _client(broker)
    consumer.declare_queue(1, "q")
    consumer.consume(1, "q", "ctag")
    consumer.take()
    admin.call(1, spec.QueueDelete(queue="q"))
    assert consumer.take() == []


def test_a_client_advertising_consumer_cancel_notify_false_gets_no_basic_cancel():
    broker = make_broker()
    consumer = _client(broker, capabilities={"consumer_cancel_notify": False})
    admin = _client(broker)
    consumer.declare_queue(1, "q")
    consumer.consume(1, "q", "ctag")
    consumer.take()
    admin.call(1, spec.QueueDelete(queue="q"))
    assert consumer.take() == []


def test_a_consumer_cancelled_by_queue_deletion_is_forgotten_by_its_channel():
    broker = make_broker()
    consumer = _client(broker)
    admin = _client(broker)
    consumer.declare_queue(1, "q")
    consumer.consume(1, "q", "ctag")
    admin.call(1, spec.QueueDelete(queue="q"))
    assert consumer.session.channels[1].consumers == {}
    consumer.declare_queue(1, "q")
    assert _types(consumer.consume(1, "q", "ctag")) == [spec.BasicConsumeOk]


def test_deleting_a_queue_in_use_with_if_unused_closes_the_channel_with_406():
    broker = make_broker()
    client = _client(broker)
    client.open_channel(2)
    client.declare_queue(1, "q")
    client.consume(1, "q", "c")
    client.call(2, spec.QueueDelete(queue="q", if_unused=True))
    assert client.channel_close(2) == spec.ChannelClose(
        406, "PRECONDITION_FAILED - queue 'q' in vhost '/' in use", 50, 40
    )


def test_queue_delete_ok_reports_the_ready_message_count():
    client = _client()
    client.declare_queue(1, "q")
    client.publish(1, "", "q", b"1")
    client.publish(1, "", "q", b"2")
    (reply,) = client.call(1, spec.QueueDelete(queue="q"))
    assert reply.method == spec.QueueDeleteOk(2)


# --- consumers -----------------------------------------------------------------------------------


def test_reusing_a_consumer_tag_on_a_channel_closes_the_connection_with_530():
    client = _client()
    client.declare_queue(1, "q")
    client.consume(1, "q", "same")
    client.consume(1, "q", "same")
    assert client.connection_close().reply_code == 530


def test_a_consumer_without_a_tag_gets_a_generated_one():
    client = _client()
    client.declare_queue(1, "q")
    (reply,) = client.consume(1, "q")
    assert reply.method.consumer_tag.startswith("amq.ctag-")


def test_a_publish_from_one_connection_is_delivered_to_another():
    broker = make_broker()
    consumer, producer = _client(broker), _client(broker)
    consumer.declare_queue(1, "q")
    consumer.consume(1, "q", "c")
    producer.publish(1, "", "q", b"hello")
    (delivery,) = consumer.deliveries(1)
    assert delivery.method == spec.BasicDeliver("c", 1, False, "", "q")
    assert delivery.body == b"hello"


def test_a_non_integer_consumer_priority_closes_the_channel_with_406():
    client = _client()
    client.declare_queue(1, "q")
    client.consume(1, "q", "c", arguments=FieldTable({"x-priority": "high"}))
    assert client.channel_close(1).reply_code == 406


# --- routing through the session -----------------------------------------------------------------


def test_a_publish_through_an_exchange_cycle_reaches_each_queue_once():
    client = _client()
    client.call(1, spec.ExchangeDeclare(exchange="x1", type="fanout"))
    client.call(1, spec.ExchangeDeclare(exchange="x2", type="fanout"))
    client.call(1, spec.ExchangeBind(destination="x2", source="x1"))
    client.call(1, spec.ExchangeBind(destination="x1", source="x2"))
    client.declare_queue(1, "q")
    client.call(1, spec.QueueBind(queue="q", exchange="x1"))
    client.call(1, spec.QueueBind(queue="q", exchange="x2"))
    client.publish(1, "x1", "", b"once")
    assert client.broker.vhosts["/"].queues["q"].message_count == 1


def test_a_mandatory_publish_caught_by_an_alternate_exchange_is_not_returned():
    client = _client()
    client.call(1, spec.ExchangeDeclare(exchange="ae", type="fanout"))
    client.call(
        1,
        spec.ExchangeDeclare(
            exchange="main", type="direct", arguments=FieldTable({"alternate-exchange": "ae"})
        ),
    )
    client.declare_queue(1, "caught")
    client.call(1, spec.QueueBind(queue="caught", exchange="ae"))
    assert client.publish(1, "main", "nowhere", b"x", mandatory=True) == []
    assert client.broker.vhosts["/"].queues["caught"].message_count == 1


def test_a_redelivered_message_is_flagged_in_get_ok():
    client = _client()
    client.declare_queue(1, "q")
    client.publish(1, "", "q", b"x")
    client.call(1, spec.BasicGet(0, "q", False))
    client.call(1, spec.BasicReject(1, True))
    (reply,) = client.call(1, spec.BasicGet(0, "q", False))
    assert reply.method == spec.BasicGetOk(2, True, "", "q", 0)


def test_a_body_larger_than_frame_max_is_delivered_whole():
    client = _client()
    client.declare_queue(1, "q")
    client.consume(1, "q", "c")
    body = bytes(range(256)) * 1200  # 307200 bytes: three body frames each way
    client.publish(1, "", "q", body)
    assert client.bodies(1) == [body]


def test_a_publish_split_across_reads_is_routed_once_complete():
    client = _client()
    client.declare_queue(1, "q")
    data = FakeClient.publish_bytes(1, "", "q", b"split")
    queue = client.broker.vhosts["/"].queues["q"]
    client.send(data[:10])
    client.send(data[10:-3])
    assert queue.message_count == 0
    client.send(data[-3:])
    assert queue.message_count == 1
