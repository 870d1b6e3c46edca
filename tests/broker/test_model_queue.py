"""Queue: ready order, requeue to the original position, consumer priorities and round-robin."""

from __future__ import annotations

from model_helpers import FakeConsumer, message

from router.broker.queues import Queue


def _queue_with(*bodies: bytes) -> Queue:
    queue = Queue("q", "/")
    for body in bodies:
        queue.publish(message(body=body))
    return queue


def _drain(queue: Queue) -> list[bytes]:
    out = []
    while (entry := queue.pop()) is not None:
        out.append(entry.message.body)
    return out


NUMBERS = (b"1", b"2", b"3", b"4", b"5")


def test_messages_pop_in_publish_order():
    queue = _queue_with(*NUMBERS)
    assert _drain(queue) == list(NUMBERS)


def test_requeued_messages_come_back_in_their_original_order():
    queue = _queue_with(*NUMBERS)
    taken = [queue.get(no_ack=False) for _ in NUMBERS]
    queue.requeue([taken[3], taken[1]])
    assert _drain(queue) == [b"2", b"4"]


def test_requeued_messages_go_before_messages_published_after_them():
    queue = _queue_with(*NUMBERS)
    taken = [queue.get(no_ack=False) for _ in NUMBERS]
    queue.requeue([taken[1], taken[3]])
    queue.publish(message(body=b"6"))
    assert _drain(queue) == [b"2", b"4", b"6"]


def test_a_requeued_message_goes_before_older_not_yet_delivered_ones():
    queue = _queue_with(*NUMBERS)
    taken = [queue.get(no_ack=False) for _ in range(3)]
    queue.requeue([taken[1]])
    assert _drain(queue) == [b"2", b"4", b"5"]


def test_requeues_in_several_batches_interleave_by_original_position():
    queue = _queue_with(*NUMBERS)
    taken = [queue.get(no_ack=False) for _ in NUMBERS]
    queue.requeue([taken[4]])
    queue.requeue([taken[0]])
    queue.requeue([taken[2]])
    assert _drain(queue) == [b"1", b"3", b"5"]


def test_a_requeued_message_is_marked_redelivered():
    queue = _queue_with(b"1", b"2")
    first = queue.get(no_ack=False)
    queue.requeue([first])
    again = queue.pop()
    assert again is first
    assert again.redelivered
    assert not queue.pop().redelivered


def test_message_count_includes_requeued_messages():
    queue = _queue_with(*NUMBERS)
    taken = [queue.get(no_ack=False) for _ in range(4)]
    assert queue.message_count == 1
    assert queue.unacked == 4
    queue.requeue([taken[0], taken[2]])
    assert queue.message_count == 3
    assert queue.unacked == 2


def test_ready_messages_lists_requeued_and_waiting_in_position_order():
    queue = _queue_with(*NUMBERS)
    taken = [queue.get(no_ack=False) for _ in range(3)]
    queue.requeue([taken[2], taken[0]])
    assert [e.message.body for e in queue.ready_messages()] == [b"1", b"3", b"4", b"5"]


def test_purge_drops_ready_and_requeued_messages_but_not_unacked_ones():
    queue = _queue_with(*NUMBERS)
    taken = [queue.get(no_ack=False) for _ in range(2)]
    queue.requeue([taken[0]])
    assert queue.purge() == 4
    assert queue.message_count == 0
    assert queue.unacked == 1


def test_requeue_into_a_deleted_queue_is_ignored():
    queue = _queue_with(b"1")
    entry = queue.get(no_ack=False)
    queue.delete()
    queue.requeue([entry])
    assert queue.message_count == 0


def test_ready_bytes_follow_publish_pop_and_requeue():
    queue = _queue_with(b"aa", b"bbb")
    assert queue.ready_bytes == 5
    entry = queue.get(no_ack=False)
    assert queue.ready_bytes == 3
    queue.requeue([entry])
    assert queue.ready_bytes == 5


# --- consumers -----------------------------------------------------------------------------------


def test_a_publish_goes_straight_to_a_consumer_that_can_take_it():
    queue = Queue("q", "/")
    consumer = FakeConsumer("c")
    queue.add_consumer(consumer)  # type: ignore[arg-type]
    queue.publish(message(body=b"1"))
    assert consumer.bodies == [b"1"]
    assert queue.message_count == 0
    assert queue.unacked == 1


def test_a_no_ack_delivery_is_not_counted_as_unacked():
    queue = Queue("q", "/")
    queue.add_consumer(FakeConsumer("c", no_ack=True))  # type: ignore[arg-type]
    queue.publish(message(body=b"1"))
    assert queue.unacked == 0


def test_consumers_of_one_priority_take_turns():
    queue = Queue("q", "/")
    a, b, c = FakeConsumer("a"), FakeConsumer("b"), FakeConsumer("c")
    for consumer in (a, b, c):
        queue.add_consumer(consumer)  # type: ignore[arg-type]
    for i in range(7):
        queue.publish(message(body=str(i).encode()))
    assert a.bodies == [b"0", b"3", b"6"]
    assert b.bodies == [b"1", b"4"]
    assert c.bodies == [b"2", b"5"]


def test_dispatch_of_a_backlog_takes_turns_too():
    queue = _queue_with(b"0", b"1", b"2", b"3")
    a, b = FakeConsumer("a"), FakeConsumer("b")
    queue.add_consumer(a)  # type: ignore[arg-type]
    queue.add_consumer(b)  # type: ignore[arg-type]
    queue.dispatch()
    assert a.bodies == [b"0", b"2"]
    assert b.bodies == [b"1", b"3"]


def test_a_full_consumer_is_skipped_in_its_turn():
    queue = Queue("q", "/")
    full, free = FakeConsumer("full", capacity=1), FakeConsumer("free")
    queue.add_consumer(full)  # type: ignore[arg-type]
    queue.add_consumer(free)  # type: ignore[arg-type]
    for i in range(4):
        queue.publish(message(body=str(i).encode()))
    assert full.bodies == [b"0"]
    assert free.bodies == [b"1", b"2", b"3"]


def test_the_higher_priority_consumer_gets_messages_while_it_has_capacity():
    queue = Queue("q", "/")
    low = FakeConsumer("low", priority=0)
    high = FakeConsumer("high", priority=10, capacity=3)
    queue.add_consumer(low)  # type: ignore[arg-type]
    queue.add_consumer(high)  # type: ignore[arg-type]
    for i in range(5):
        queue.publish(message(body=str(i).encode()))
    assert high.bodies == [b"0", b"1", b"2"]
    assert low.bodies == [b"3", b"4"]


def test_a_lower_priority_consumer_gets_nothing_while_a_higher_one_can_take():
    queue = _queue_with(*NUMBERS)
    low = FakeConsumer("low", priority=-5)
    high = FakeConsumer("high", priority=1)
    queue.add_consumer(low)  # type: ignore[arg-type]
    queue.add_consumer(high)  # type: ignore[arg-type]
    queue.dispatch()
    assert high.bodies == list(NUMBERS)
    assert low.bodies == []


def test_consumers_of_the_top_priority_take_turns_before_any_lower_one():
    queue = Queue("q", "/")
    low = FakeConsumer("low", priority=0)
    h1, h2 = FakeConsumer("h1", priority=5), FakeConsumer("h2", priority=5)
    for consumer in (low, h1, h2):
        queue.add_consumer(consumer)  # type: ignore[arg-type]
    for i in range(4):
        queue.publish(message(body=str(i).encode()))
    assert h1.bodies == [b"0", b"2"]
    assert h2.bodies == [b"1", b"3"]
    assert low.bodies == []


def test_messages_wait_when_no_consumer_can_take_them():
    queue = Queue("q", "/")
    consumer = FakeConsumer("c", capacity=1)
    queue.add_consumer(consumer)  # type: ignore[arg-type]
    queue.publish(message(body=b"1"))
    queue.publish(message(body=b"2"))
    assert queue.message_count == 1
    consumer.capacity = 2
    queue.dispatch()
    assert consumer.bodies == [b"1", b"2"]


def test_a_removed_consumer_gets_no_more_messages():
    queue = Queue("q", "/")
    a, b = FakeConsumer("a"), FakeConsumer("b")
    queue.add_consumer(a)  # type: ignore[arg-type]
    queue.add_consumer(b)  # type: ignore[arg-type]
    queue.remove_consumer(a)  # type: ignore[arg-type]
    queue.publish(message(body=b"1"))
    queue.publish(message(body=b"2"))
    assert a.bodies == []
    assert b.bodies == [b"1", b"2"]
    assert queue.consumer_count == 1


def test_requeued_messages_are_dispatched_in_original_order():
    queue = _queue_with(*NUMBERS)
    taken = [queue.get(no_ack=False) for _ in NUMBERS]
    queue.requeue([taken[3], taken[1]])
    queue.publish(message(body=b"6"))
    consumer = FakeConsumer("c")
    queue.add_consumer(consumer)  # type: ignore[arg-type]
    queue.dispatch()
    assert consumer.bodies == [b"2", b"4", b"6"]
    assert all(e.redelivered for e in consumer.got[:2])
