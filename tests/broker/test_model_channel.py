"""Channel rules driven through a Session with bytes: prefetch, acks, nacks, recover, get,
publisher confirms and transactions."""

from __future__ import annotations

from model_helpers import FakeClient, make_broker

from router.amqp import spec
from router.amqp.tables import FieldTable
from router.broker.broker import Broker
from router.broker.queues import Queue


def _setup(queue: str = "q", messages: int = 0) -> tuple[Broker, FakeClient, Queue]:
    broker = make_broker()
    client = FakeClient(broker)
    client.open_channel(1)
    client.declare_queue(1, queue)
    if messages:
        client.send(
            *(
                FakeClient.publish_bytes(1, "", queue, str(i).encode())
                for i in range(1, messages + 1)
            )
        )
        client.take()
    return broker, client, broker.vhosts["/"].queues[queue]


def _tags(client: FakeClient, channel: int = 1) -> list[int]:
    return [r.method.delivery_tag for r in client.deliveries(channel)]


def _types(received) -> list[type]:  # type: ignore[no-untyped-def]
    return [type(r.method) for r in received]


# --- prefetch ------------------------------------------------------------------------------------


def test_per_consumer_prefetch_limits_each_consumer_separately():
    _broker, client, _queue = _setup(messages=10)
    client.call(1, spec.BasicQos(0, 2, False))
    client.consume(1, "q", "a")
    client.consume(1, "q", "b")
    tags = [r.method.consumer_tag for r in client.deliveries(1)]
    assert tags.count("a") == 2
    assert tags.count("b") == 2


def test_global_prefetch_limits_the_whole_channel():
    _broker, client, _queue = _setup(messages=10)
    client.call(1, spec.BasicQos(0, 3, True))
    client.consume(1, "q", "a")
    client.consume(1, "q", "b")
    assert len(client.deliveries(1)) == 3


def test_the_smaller_of_per_consumer_and_global_prefetch_applies():
    _broker, client, _queue = _setup(messages=10)
    client.call(1, spec.BasicQos(0, 2, False))
    client.call(1, spec.BasicQos(0, 3, True))
    client.consume(1, "q", "a")
    client.consume(1, "q", "b")
    assert len(client.deliveries(1)) == 3


def test_per_consumer_prefetch_applies_only_to_consumers_created_after_it():
    _broker, client, _queue = _setup(messages=5)
    client.consume(1, "q", "early")
    client.call(1, spec.BasicQos(0, 1, False))
    assert len(client.deliveries(1)) == 5


def test_an_ack_frees_prefetch_credit_for_the_next_message():
    _broker, client, _queue = _setup(messages=5)
    client.call(1, spec.BasicQos(0, 1, False))
    client.consume(1, "q", "c")
    assert client.bodies(1) == [b"1"]
    client.ack(1, 1)
    assert client.bodies(1) == [b"1", b"2"]


def test_raising_the_global_prefetch_delivers_waiting_messages():
    _broker, client, _queue = _setup(messages=4)
    client.call(1, spec.BasicQos(0, 1, True))
    client.consume(1, "q", "c")
    assert len(client.deliveries(1)) == 1
    client.call(1, spec.BasicQos(0, 3, True))
    assert len(client.deliveries(1)) == 3


def test_a_no_ack_consumer_ignores_prefetch():
    _broker, client, _queue = _setup(messages=5)
    client.call(1, spec.BasicQos(0, 1, True))
    client.consume(1, "q", "c", no_ack=True)
    assert len(client.deliveries(1)) == 5


def test_a_higher_priority_consumer_is_served_first_until_it_is_full():
    _broker, client, _queue = _setup()
    client.open_channel(2)
    client.call(1, spec.BasicQos(0, 2, False))
    client.consume(1, "q", "high", arguments=FieldTable({"x-priority": 10}))
    client.consume(2, "q", "low")
    client.send(*(FakeClient.publish_bytes(1, "", "q", str(i).encode()) for i in range(5)))
    assert client.bodies(1) == [b"0", b"1"]
    assert client.bodies(2) == [b"2", b"3", b"4"]


# --- acks ----------------------------------------------------------------------------------------


def test_delivery_tags_count_from_one_per_channel():
    _broker, client, _queue = _setup(messages=3)
    client.consume(1, "q", "c")
    assert _tags(client) == [1, 2, 3]


def test_ack_multiple_acks_every_tag_up_to_and_including_it():
    _broker, client, queue = _setup(messages=5)
    client.consume(1, "q", "c")
    client.ack(1, 3, multiple=True)
    assert queue.unacked == 2
    assert list(client.session.channels[1].unacked) == [4, 5]


def test_ack_of_tag_zero_with_multiple_acks_everything_outstanding():
    _broker, client, queue = _setup(messages=5)
    client.consume(1, "q", "c")
    client.ack(1, 0, multiple=True)
    assert queue.unacked == 0
    assert client.channel_close(1) is None


def test_ack_of_an_unknown_tag_closes_the_channel_with_406():
    _broker, client, _queue = _setup(messages=1)
    client.consume(1, "q", "c")
    client.ack(1, 99)
    close = client.channel_close(1)
    assert close == spec.ChannelClose(406, "PRECONDITION_FAILED - unknown delivery tag 99", 60, 80)


def test_ack_of_tag_zero_without_multiple_closes_the_channel_with_406():
    _broker, client, _queue = _setup(messages=1)
    client.consume(1, "q", "c")
    client.ack(1, 0)
    assert client.channel_close(1).reply_code == 406


def test_acking_a_tag_twice_closes_the_channel_with_406():
    _broker, client, _queue = _setup(messages=1)
    client.consume(1, "q", "c")
    client.ack(1, 1)
    client.ack(1, 1)
    assert client.channel_close(1).reply_code == 406


def test_ack_multiple_of_an_already_acked_tag_closes_the_channel_with_406():
    _broker, client, _queue = _setup(messages=3)
    client.consume(1, "q", "c")
    client.ack(1, 2)
    client.ack(1, 2, multiple=True)
    assert client.channel_close(1).reply_code == 406


def test_a_tag_of_another_channel_is_unknown_here():
    _broker, client, _queue = _setup(messages=1)
    client.open_channel(2)
    client.consume(1, "q", "c")
    client.ack(2, 1)
    assert client.channel_close(2).reply_code == 406
    assert client.channel_close(1) is None


def test_an_unknown_tag_error_requeues_the_channels_unacked_messages():
    _broker, client, queue = _setup(messages=2)
    client.consume(1, "q", "c")
    client.ack(1, 7)
    assert queue.message_count == 2
    assert queue.unacked == 0


def test_the_connection_stays_open_after_a_channel_error():
    _broker, client, _queue = _setup(messages=1)
    client.ack(1, 7)
    client.call(1, spec.ChannelCloseOk())
    client.open_channel(1)
    assert client.connection_close() is None


# --- nack, reject, recover -----------------------------------------------------------------------


def test_a_nack_with_requeue_redelivers_the_message_marked_redelivered():
    _broker, client, _queue = _setup(messages=1)
    client.consume(1, "q", "c")
    client.call(1, spec.BasicNack(1, False, True))
    first, second = client.deliveries(1)
    assert second.body == first.body
    assert not first.method.redelivered
    assert second.method.redelivered
    assert second.method.delivery_tag == 2


def test_a_nack_without_requeue_drops_the_message():
    _broker, client, queue = _setup(messages=1)
    client.consume(1, "q", "c")
    client.call(1, spec.BasicNack(1, False, False))
    assert queue.message_count == 0
    assert queue.unacked == 0
    assert len(client.deliveries(1)) == 1


def test_a_nack_multiple_requeues_in_original_order():
    _broker, client, _queue = _setup(messages=3)
    client.call(1, spec.BasicQos(0, 3, False))
    client.consume(1, "q", "c")
    client.call(1, spec.BasicNack(3, True, True))
    assert client.bodies(1) == [b"1", b"2", b"3", b"1", b"2", b"3"]


def test_a_reject_with_requeue_redelivers_the_message():
    _broker, client, _queue = _setup(messages=1)
    client.consume(1, "q", "c")
    client.call(1, spec.BasicReject(1, True))
    assert [r.method.redelivered for r in client.deliveries(1)] == [False, True]


def test_a_reject_without_requeue_drops_the_message():
    _broker, client, queue = _setup(messages=1)
    client.consume(1, "q", "c")
    client.call(1, spec.BasicReject(1, False))
    assert queue.message_count == 0
    assert queue.unacked == 0


def test_recover_redelivers_every_unacked_message():
    _broker, client, _queue = _setup(messages=2)
    client.consume(1, "q", "c")
    replies = client.call(1, spec.BasicRecover(True))
    assert spec.BasicRecoverOk in _types(replies)
    redelivered = [r for r in client.deliveries(1) if r.method.redelivered]
    assert [r.body for r in redelivered] == [b"1", b"2"]


def test_recover_async_redelivers_without_a_reply():
    _broker, client, _queue = _setup(messages=1)
    client.consume(1, "q", "c")
    replies = client.call(1, spec.BasicRecoverAsync(True))
    assert _types(replies) == [spec.BasicDeliver]
    assert replies[0].method.redelivered


# --- basic.get -----------------------------------------------------------------------------------


def test_get_returns_the_next_message_and_how_many_remain():
    _broker, client, _queue = _setup(messages=3)
    (reply,) = client.call(1, spec.BasicGet(0, "q", False))
    assert reply.method == spec.BasicGetOk(1, False, "", "q", 2)
    assert reply.body == b"1"


def test_get_on_an_empty_queue_answers_get_empty():
    _broker, client, _queue = _setup()
    assert _types(client.call(1, spec.BasicGet(0, "q", False))) == [spec.BasicGetEmpty]


def test_a_got_message_is_unacked_until_acked():
    _broker, client, queue = _setup(messages=1)
    client.call(1, spec.BasicGet(0, "q", False))
    assert queue.unacked == 1
    client.ack(1, 1)
    assert queue.unacked == 0


# --- confirms ------------------------------------------------------------------------------------


def _confirming() -> tuple[Broker, FakeClient, Queue]:
    broker, client, queue = _setup()
    assert _types(client.call(1, spec.ConfirmSelect())) == [spec.ConfirmSelectOk]
    return broker, client, queue


def test_a_single_publish_is_confirmed_with_its_own_tag():
    _broker, client, _queue = _confirming()
    replies = client.publish(1, "", "q", b"x")
    assert [r.method for r in replies] == [spec.BasicAck(1, False)]


def test_a_batch_of_publishes_is_confirmed_with_one_multiple_ack_at_the_end():
    _broker, client, _queue = _confirming()
    client.send(*(FakeClient.publish_bytes(1, "", "q", b"x") for _ in range(3)))
    assert [r.method for r in client.take()] == [spec.BasicAck(3, True)]


def test_confirm_tags_continue_across_batches():
    _broker, client, _queue = _confirming()
    client.publish(1, "", "q", b"x")
    client.send(*(FakeClient.publish_bytes(1, "", "q", b"x") for _ in range(2)))
    assert [r.method for r in client.take()] == [spec.BasicAck(3, True)]


def test_an_unroutable_publish_is_still_confirmed():
    _broker, client, _queue = _confirming()
    replies = client.publish(1, "", "no-such-queue", b"x")
    assert [r.method for r in replies] == [spec.BasicAck(1, False)]


def test_a_mandatory_return_comes_before_the_confirm():
    _broker, client, _queue = _confirming()
    replies = client.publish(1, "amq.direct", "nowhere", b"x", mandatory=True)
    assert [r.method for r in replies] == [
        spec.BasicReturn(312, "NO_ROUTE", "amq.direct", "nowhere"),
        spec.BasicAck(1, False),
    ]
    assert replies[0].body == b"x"


def test_confirms_are_per_channel():
    _broker, client, _queue = _confirming()
    client.open_channel(2)
    client.call(2, spec.ConfirmSelect())
    client.send(
        FakeClient.publish_bytes(1, "", "q", b"a"),
        FakeClient.publish_bytes(2, "", "q", b"b"),
        FakeClient.publish_bytes(2, "", "q", b"c"),
    )
    acks = {r.channel: r.method for r in client.take()}
    assert acks == {1: spec.BasicAck(1, False), 2: spec.BasicAck(2, True)}


def test_a_channel_without_confirms_gets_no_acks():
    _broker, client, _queue = _setup()
    assert client.publish(1, "", "q", b"x") == []


def test_a_mandatory_unroutable_publish_without_confirms_is_returned():
    _broker, client, _queue = _setup()
    replies = client.publish(1, "", "nowhere", b"x", mandatory=True)
    assert [r.method for r in replies] == [spec.BasicReturn(312, "NO_ROUTE", "", "nowhere")]


def test_confirm_select_on_a_transactional_channel_is_406():
    _broker, client, _queue = _setup()
    client.call(1, spec.TxSelect())
    client.call(1, spec.ConfirmSelect())
    assert client.channel_close(1).reply_code == 406


# --- transactions --------------------------------------------------------------------------------


def _transactional(messages: int = 0) -> tuple[Broker, FakeClient, Queue]:
    broker, client, queue = _setup(messages=messages)
    assert _types(client.call(1, spec.TxSelect())) == [spec.TxSelectOk]
    return broker, client, queue


def test_a_transactional_publish_is_not_routed_before_commit():
    _broker, client, queue = _transactional()
    client.publish(1, "", "q", b"x")
    assert queue.message_count == 0


def test_commit_routes_the_transactions_publishes_in_order():
    _broker, client, queue = _transactional()
    client.publish(1, "", "q", b"1")
    client.publish(1, "", "q", b"2")
    assert _types(client.call(1, spec.TxCommit())) == [spec.TxCommitOk]
    assert [e.message.body for e in queue.ready_messages()] == [b"1", b"2"]


def test_rollback_discards_the_transactions_publishes():
    _broker, client, queue = _transactional()
    client.publish(1, "", "q", b"x")
    assert _types(client.call(1, spec.TxRollback())) == [spec.TxRollbackOk]
    client.call(1, spec.TxCommit())
    assert queue.message_count == 0


def test_a_transactional_ack_is_applied_at_commit():
    _broker, client, queue = _transactional(messages=1)
    client.call(1, spec.BasicGet(0, "q", False))
    client.ack(1, 1)
    assert queue.unacked == 1
    client.call(1, spec.TxCommit())
    assert queue.unacked == 0


def test_a_rolled_back_ack_leaves_the_message_unacked_and_ackable():
    _broker, client, queue = _transactional(messages=1)
    client.call(1, spec.BasicGet(0, "q", False))
    client.ack(1, 1)
    client.call(1, spec.TxRollback())
    client.call(1, spec.TxCommit())
    assert queue.unacked == 1
    client.ack(1, 1)
    client.call(1, spec.TxCommit())
    assert queue.unacked == 0
    assert client.channel_close(1) is None


def test_a_transactional_ack_of_an_unknown_tag_closes_the_channel_at_once():
    _broker, client, _queue = _transactional()
    client.ack(1, 5)
    assert client.channel_close(1).reply_code == 406


def test_acking_a_tag_twice_in_one_transaction_closes_the_channel_at_the_second_ack():
    # RabbitMQ removes acked tags from the unacked queue at basic.ack even inside a transaction
    # (rabbit_channel, handle_method basic.ack), so the second ack is an unknown tag.
    _broker, client, _queue = _transactional(messages=1)
    client.call(1, spec.BasicGet(0, "q", False))
    client.ack(1, 1)
    client.ack(1, 1)
    close = client.channel_close(1)
    assert close is not None
    assert close.reply_code == 406
    assert (close.class_id, close.method_id) == (60, 80)


def test_a_transaction_keeps_going_after_a_commit():
    _broker, client, queue = _transactional()
    client.publish(1, "", "q", b"1")
    client.call(1, spec.TxCommit())
    client.publish(1, "", "q", b"2")
    assert queue.message_count == 1
    client.call(1, spec.TxCommit())
    assert queue.message_count == 2


def test_commit_on_a_non_transactional_channel_is_406():
    _broker, client, _queue = _setup()
    client.call(1, spec.TxCommit())
    assert client.channel_close(1).reply_code == 406


def test_tx_select_on_a_confirming_channel_is_406():
    _broker, client, _queue = _setup()
    client.call(1, spec.ConfirmSelect())
    client.call(1, spec.TxSelect())
    assert client.channel_close(1).reply_code == 406


def test_a_transactional_nack_with_requeue_is_applied_at_commit():
    _broker, client, queue = _transactional(messages=1)
    client.call(1, spec.BasicGet(0, "q", False))
    client.call(1, spec.BasicNack(1, False, True))
    assert queue.message_count == 0
    client.call(1, spec.TxCommit())
    assert queue.message_count == 1
    (reply,) = client.call(1, spec.BasicGet(0, "q", True))
    assert reply.method.redelivered


def test_a_mandatory_unroutable_transactional_publish_is_returned_at_commit():
    _broker, client, _queue = _transactional()
    assert client.publish(1, "", "nowhere", b"x", mandatory=True) == []
    replies = client.call(1, spec.TxCommit())
    assert _types(replies) == [spec.BasicReturn, spec.TxCommitOk]


# --- flow and cancel -----------------------------------------------------------------------------


def test_channel_flow_off_pauses_deliveries_and_on_resumes_them():
    _broker, client, _queue = _setup()
    client.consume(1, "q", "c")
    assert _types(client.call(1, spec.ChannelFlow(False))) == [spec.ChannelFlowOk]
    client.publish(1, "", "q", b"x")
    assert client.deliveries(1) == []
    client.call(1, spec.ChannelFlow(True))
    assert client.bodies(1) == [b"x"]


def test_cancelling_a_consumer_stops_its_deliveries():
    _broker, client, queue = _setup()
    client.consume(1, "q", "c")
    assert [r.method for r in client.call(1, spec.BasicCancel("c"))] == [spec.BasicCancelOk("c")]
    client.publish(1, "", "q", b"x")
    assert client.deliveries(1) == []
    assert queue.message_count == 1


def test_cancelling_an_unknown_consumer_tag_is_answered_with_cancel_ok():
    _broker, client, _queue = _setup()
    assert [r.method for r in client.call(1, spec.BasicCancel("ghost"))] == [
        spec.BasicCancelOk("ghost")
    ]


def test_a_cancelled_consumers_unacked_messages_can_still_be_acked():
    _broker, client, queue = _setup(messages=2)
    client.consume(1, "q", "c")
    client.call(1, spec.BasicCancel("c"))
    client.ack(1, 2, multiple=True)
    assert queue.unacked == 0
    assert client.channel_close(1) is None
