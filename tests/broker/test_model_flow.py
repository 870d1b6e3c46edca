"""Flow control in the model: a resource alarm blocks the connections that publish.

RabbitMQ's behaviour, checked against 3.10 with ``rabbitmqctl set_vm_memory_high_watermark 0``:
a connection is blocked when it publishes while an alarm is raised, not before; a client that
announced the ``connection.blocked`` capability then gets ``connection.blocked("low on memory")``,
and ``connection.unblocked`` when the alarm clears. A connection that only consumes is never
blocked. The runtime stops reading a blocked connection (``Session.blocked``).
"""

from __future__ import annotations

from model_helpers import FakeClient, make_broker

from router.amqp import spec
from router.amqp.frames import method_frame
from router.broker.broker import Broker

BLOCKED_CAPABLE = {"connection.blocked": True}


def _client(broker: Broker, capabilities: dict[str, bool] | None = None) -> FakeClient:
    client = FakeClient(broker, capabilities=capabilities)
    client.open_channel(1)
    return client


def test_server_announces_the_connection_blocked_capability() -> None:
    capabilities = make_broker().server_properties()["capabilities"]
    assert capabilities["connection.blocked"] is True


def test_a_publisher_is_blocked_at_its_first_publish_during_an_alarm_and_unblocked_after() -> None:
    broker = make_broker()
    publisher = _client(broker, BLOCKED_CAPABLE)
    publisher.declare_queue(1, "q")
    broker.set_alarm("memory", True)
    # nothing is sent before it publishes (as RabbitMQ)
    assert publisher.take() == []
    assert not publisher.session.blocked
    replies = publisher.publish(1, "", "q", b"one")
    assert [type(r.method) for r in replies] == [spec.ConnectionBlocked]
    assert replies[0].channel == 0
    assert replies[0].method.reason == "low on memory"
    assert publisher.session.blocked
    # the publish that blocked it, and what was read after it, wait for the alarm to clear
    queue = broker.vhosts["/"].queues["q"]
    publisher.send(
        publisher.publish_bytes(1, "", "q", b"two"),
        method_frame(1, spec.QueueDeclare(queue="q", passive=True)),
    )
    assert queue.message_count == 0
    assert publisher.take() == []
    resumed: list[bool] = []
    publisher.session.on_unblocked = lambda: resumed.append(True)
    broker.set_alarm("memory", False)
    assert not publisher.session.blocked
    assert resumed == [True]
    replies = publisher.take()
    assert [type(r.method) for r in replies] == [spec.ConnectionUnblocked, spec.QueueDeclareOk]
    assert replies[1].method.message_count == 2
    assert publisher.methods(0, spec.ConnectionBlocked) == [spec.ConnectionBlocked("low on memory")]


def test_a_client_without_the_capability_is_blocked_silently() -> None:
    broker = make_broker()
    publisher = _client(broker)
    publisher.declare_queue(1, "q")
    broker.set_alarm("memory", True)
    assert publisher.publish(1, "", "q", b"x") == []
    assert publisher.session.blocked
    broker.set_alarm("memory", False)
    assert not publisher.session.blocked
    assert publisher.take() == []


def test_consumers_are_not_blocked_and_keep_receiving() -> None:
    broker = make_broker()
    consumer = _client(broker, BLOCKED_CAPABLE)
    consumer.declare_queue(1, "q")
    consumer.consume(1, "q", tag="c")
    publisher = _client(broker, BLOCKED_CAPABLE)
    broker.set_alarm("memory", True)
    consumer.publish(1, "", "q", b"before")  # a connection that publishes and consumes...
    publisher.publish(1, "", "q", b"during the alarm")
    assert publisher.session.blocked
    assert consumer.session.blocked  # ...is blocked like any publisher
    consumer.send(method_frame(1, spec.BasicAck(1, False)))  # not read while blocked
    broker.set_alarm("memory", False)
    assert consumer.bodies(1) == [b"before", b"during the alarm"]
    assert broker.vhosts["/"].queues["q"].unacked == 1


def test_a_connection_that_only_consumes_keeps_receiving_during_an_alarm() -> None:
    broker = make_broker()
    consumer = _client(broker, BLOCKED_CAPABLE)
    consumer.declare_queue(1, "q")
    consumer.consume(1, "q", tag="c")
    publisher = _client(broker, BLOCKED_CAPABLE)
    publisher.publish(1, "", "q", b"before the alarm")
    broker.set_alarm("memory", True)
    assert consumer.bodies(1) == [b"before the alarm"]
    consumer.ack(1, 1)
    consumer.call(1, spec.BasicQos(0, 10, False))
    assert not consumer.session.blocked
    assert broker.vhosts["/"].queues["q"].unacked == 0
    assert consumer.methods(0, spec.ConnectionBlocked) == []


def test_a_blocked_connection_that_goes_away_is_torn_down() -> None:
    broker = make_broker()
    publisher = _client(broker, BLOCKED_CAPABLE)
    publisher.declare_queue(1, "q", exclusive=True)
    broker.set_alarm("memory", True)
    publisher.publish(1, "", "q", b"x")
    assert publisher.session.blocked
    publisher.send(b"")  # EOF
    assert publisher.session.ended
    assert "q" not in broker.vhosts["/"].queues
    assert publisher.session.id not in broker.sessions


def test_two_alarms_clear_only_when_both_have_cleared() -> None:
    broker = make_broker()
    publisher = _client(broker, BLOCKED_CAPABLE)
    broker.set_alarm("memory", True)
    broker.set_alarm("disk", True)
    replies = publisher.publish(1, "", "nowhere", b"x")
    assert replies[0].method == spec.ConnectionBlocked("low on disk & low on memory")
    broker.set_alarm("memory", False)
    assert publisher.session.blocked
    assert publisher.take() == []
    broker.set_alarm("disk", False)
    assert not publisher.session.blocked
    assert [type(r.method) for r in publisher.take()] == [spec.ConnectionUnblocked]


def test_raising_an_alarm_twice_or_clearing_one_not_raised_changes_nothing() -> None:
    broker = make_broker()
    publisher = _client(broker, BLOCKED_CAPABLE)
    broker.set_alarm("memory", False)
    broker.set_alarm("memory", True)
    broker.set_alarm("memory", True)
    publisher.publish(1, "", "q", b"x")
    publisher.publish(1, "", "q", b"y")
    assert len(publisher.methods(0, spec.ConnectionBlocked)) == 1


def test_a_blocked_connection_is_not_timed_out_for_missed_heartbeats() -> None:
    broker = make_broker()
    publisher = FakeClient(broker, capabilities=BLOCKED_CAPABLE)
    session = publisher.session
    session.conn.heartbeat = 10  # as if tuned to 10 s
    publisher.open_channel(1)
    broker.set_alarm("memory", True)
    publisher.publish(1, "", "q", b"x")
    assert session.blocked
    # the client's heartbeats are not read while it is blocked: its silence is not counted
    session.handle_timer(1000.0)
    assert not session.closed and not session.ended
    deadline = session.next_deadline()
    assert deadline is not None and deadline <= 1000.0 + 5  # still sends its own heartbeats
    broker.clock.now = 1000.0
    broker.set_alarm("memory", False)
    session.handle_timer(1015.0)
    assert not session.ended  # the interval counts from the moment reading resumed
    session.handle_timer(1021.0)
    assert session.ended


def test_closing_a_blocked_connection_resumes_reading_for_the_close_ok() -> None:
    broker = make_broker()
    publisher = _client(broker, BLOCKED_CAPABLE)
    broker.set_alarm("memory", True)
    publisher.publish(1, "", "q", b"x")
    resumed: list[bool] = []
    publisher.session.on_unblocked = lambda: resumed.append(True)
    publisher.session.shutdown()
    assert resumed == [True]
    assert not publisher.session.blocked
    close = publisher.connection_close()
    assert close is not None and close.reply_code == 320
    # no connection.unblocked after the close
    assert publisher.methods(0, spec.ConnectionUnblocked) == []
    broker.set_alarm("memory", False)
    assert publisher.methods(0, spec.ConnectionUnblocked) == []
