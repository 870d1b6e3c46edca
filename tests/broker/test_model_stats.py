"""Statistics in the model: the counters the management API and /metrics read, the age of a
queue's oldest ready message, scheduled messages listed and cancelled, and totals that survive
the objects that counted them."""

from __future__ import annotations

from model_helpers import FakeClient, make_broker

from router.amqp import spec
from router.amqp.tables import FieldTable
from router.broker.message import Message
from router.broker.queues import Queue
from router.broker.stats import QUEUE_FIELDS, Rates, RateWindow, details


def _client_with_queue(name: str = "q", **kwargs: object) -> FakeClient:
    client = FakeClient(make_broker())
    client.open_channel(1)
    client.declare_queue(1, name, **kwargs)
    return client


def test_a_channel_counts_publishes_confirms_deliveries_redeliveries_and_acks() -> None:
    client = _client_with_queue()
    client.call(1, spec.ConfirmSelect())
    for body in (b"a", b"b", b"c"):
        client.publish(1, "", "q", body)
    client.consume(1, "q", "c1")
    channel = client.session.channels[1]
    client.call(1, spec.BasicNack(1, False, True))  # back to the queue, redelivered
    client.call(1, spec.BasicAck(0, True))
    assert channel.published == 3
    assert channel.confirmed == 3
    assert channel.delivered == 4 and channel.redelivered == 1
    assert channel.acked == 3


def test_a_mandatory_unroutable_publish_is_counted_as_returned_on_channel_and_vhost() -> None:
    client = _client_with_queue()
    client.publish(1, "amq.direct", "nowhere", b"x", mandatory=True)
    client.publish(1, "amq.direct", "nowhere", b"y")
    vhost = client.broker.vhosts["/"]
    assert client.session.channels[1].returned == 1
    assert (vhost.published, vhost.unroutable, vhost.returned) == (2, 2, 1)


def test_a_connection_counts_bytes_and_reads_both_ways() -> None:
    client = _client_with_queue()
    session = client.session
    assert session.recv_oct > 0 and session.recv_cnt >= 3
    assert session.send_oct > 0 and session.send_cnt >= 3


def test_rejected_messages_are_counted_and_dead_lettered_by_reason() -> None:
    client = _client_with_queue("work", arguments=FieldTable({"x-dead-letter-exchange": "dlx"}))
    client.call(1, spec.ExchangeDeclare(exchange="dlx", type="fanout"))
    client.declare_queue(1, "parked")
    client.call(1, spec.QueueBind(queue="parked", exchange="dlx"))
    for body in (b"1", b"2"):
        client.publish(1, "", "work", body)
    client.consume(1, "work", "c1")
    client.call(1, spec.BasicReject(1, False))
    client.call(1, spec.BasicNack(2, False, False))
    queue = client.broker.vhosts["/"].queues["work"]
    assert queue.stats.rejected == 2
    assert queue.stats.dead_lettered == {"rejected": 2}
    assert client.broker.vhosts["/"].dead_lettered == {"rejected": 2}
    assert dict(zip(QUEUE_FIELDS, queue.stats.values(), strict=True))["dead_lettered"] == 2


def test_the_oldest_ready_message_age_follows_the_head_of_the_queue() -> None:
    queue = Queue("q", "/")
    clock = queue.clock
    assert queue.oldest_ready_age() is None
    clock.now = 100.0
    queue.publish(Message("", "q", b"", b"first"))
    clock.now = 130.0
    queue.publish(Message("", "q", b"", b"second"))
    clock.now = 160.0
    assert queue.oldest_ready_age() == 60.0
    queue.pop()  # the first leaves: the second is now the oldest
    assert queue.oldest_ready_age() == 30.0
    queue.pop()
    assert queue.oldest_ready_age() is None


def test_age_marks_stay_bounded_however_long_a_queue_grows() -> None:
    queue = Queue("q", "/")
    for second in range(10_000):
        queue.clock.now = float(second)
        queue.publish(Message("", "q", b"", b"x"))
    assert len(queue._marks) <= 4096
    assert queue.oldest_ready_age() == 9999.0


def test_scheduled_messages_are_listed_soonest_first_and_one_can_be_cancelled() -> None:
    queue = Queue("q", "/")
    queue.clock.now = 10.0
    for due, body in ((40.0, b"late"), (20.0, b"soon")):
        queue.publish(Message("", "q", b"", body, due_at=due))
    listed = queue.waiting_messages()
    assert [(due, entry.message.body) for due, entry in listed] == [
        (20.0, b"soon"),
        (40.0, b"late"),
    ]
    assert queue.cancel_waiting(listed[0][1].seq)
    assert not queue.cancel_waiting(listed[0][1].seq)  # already gone
    assert queue.waiting == 1
    queue.tick(50.0)
    assert [entry.message.body for entry in queue.ready_messages()] == [b"late"]


def test_totals_keep_what_deleted_queues_and_closed_channels_counted() -> None:
    client = _client_with_queue()
    client.publish(1, "", "q", b"x")
    client.call(1, spec.BasicGet(queue="q", no_ack=True))
    client.call(1, spec.QueueDelete(queue="q"))
    client.call(1, spec.ChannelClose(200, "bye", 0, 0))
    totals = client.broker.totals
    assert totals.queues_deleted == 1
    assert totals.queue["publish"] == 1 and totals.queue["deliver_get"] == 1
    assert totals.channel["publish"] == 1 and totals.channel["deliver_get"] == 1
    assert totals.channels_opened == 1 and totals.channels_closed == 1


def test_a_rate_window_covers_the_last_window_seconds() -> None:
    window = RateWindow()
    for now, value in ((0.0, 0), (1.0, 10), (2.0, 30), (10.0, 110)):
        window.add(now, (value,), 5.0)
    # samples before 10 - 5 are dropped, but the one just before the window is kept
    assert [t for t, _ in window.history()] == [2.0, 10.0]
    assert window.rates() == [10.0]


def test_rates_forget_objects_that_are_no_longer_sampled() -> None:
    rates = Rates(window=5.0)
    rates.sample_all("queue", [("a", (0,)), ("b", (0,))], 0.0)
    rates.sample_all("queue", [("a", (5,))], 1.0)
    assert rates.rates("queue", "a") == [5.0]
    assert rates.rates("queue", "b") is None
    assert details(("publish",), (5,), [5.0]) == {"publish": 5, "publish_details": {"rate": 5.0}}
