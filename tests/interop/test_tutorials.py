"""The six RabbitMQ tutorials (rabbitmq.com/tutorials, Python/pika), run against router.

The client code follows the tutorials line for line; the only changes are the connection
parameters (router's ephemeral port instead of 'localhost'), print() replaced by collecting
results, ``stop_consuming()`` once the expected messages are in (the tutorials consume forever),
``time.sleep(dots)`` in the worker replaced by holding the ack (to make "busy" deterministic),
and a deadline on the RPC client's wait loop (so a broker bug fails instead of hanging).
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator

import pika
import pytest

DEADLINE_SECONDS = 10.0


@pytest.fixture
def params(router_server) -> pika.ConnectionParameters:  # type: ignore[no-untyped-def]
    return pika.ConnectionParameters(host="127.0.0.1", port=router_server.port)


@pytest.fixture
def open_connections() -> Iterator[list[pika.BlockingConnection]]:
    """Connections a test opened; whatever is still open at the end is closed."""
    connections: list[pika.BlockingConnection] = []
    yield connections
    for connection in connections:
        if connection.is_open:
            connection.close()


def consume_until(channels, done) -> None:  # type: ignore[no-untyped-def]
    """start_consuming() on each channel in turn, but bounded: stop once ``done()`` holds."""
    if not isinstance(channels, list):
        channels = [channels]
    deadline = time.monotonic() + DEADLINE_SECONDS
    while not done():
        assert time.monotonic() < deadline, "expected messages did not arrive"
        for channel in channels:
            channel.connection.process_data_events(time_limit=0.01)


# ---------------------------------------------------------------------------------------------
# 1. "Hello World!"


def test_hello_world_receiver_gets_the_message_the_sender_sent(params, open_connections) -> None:  # type: ignore[no-untyped-def]
    # send.py
    connection = pika.BlockingConnection(params)
    channel = connection.channel()
    channel.queue_declare(queue="hello")
    channel.basic_publish(exchange="", routing_key="hello", body="Hello World!")
    connection.close()

    # receive.py
    connection = pika.BlockingConnection(params)
    open_connections.append(connection)
    channel = connection.channel()
    channel.queue_declare(queue="hello")
    received = []

    def callback(ch, method, properties, body):  # type: ignore[no-untyped-def]
        received.append(body)
        ch.stop_consuming()

    channel.basic_consume(queue="hello", auto_ack=True, on_message_callback=callback)
    channel.start_consuming()
    assert received == [b"Hello World!"]
    connection.close()


# ---------------------------------------------------------------------------------------------
# 2. Work queues


def new_task(params, message: str) -> None:  # type: ignore[no-untyped-def]
    """new_task.py"""
    connection = pika.BlockingConnection(params)
    channel = connection.channel()
    channel.queue_declare(queue="task_queue", durable=True)
    channel.basic_publish(
        exchange="",
        routing_key="task_queue",
        body=message,
        properties=pika.BasicProperties(delivery_mode=pika.DeliveryMode.Persistent),
    )
    connection.close()


class Worker:
    """worker.py; ``busy`` workers keep the ack (the tutorial sleeps one second per dot)."""

    def __init__(
        self, params, open_connections, *, busy: bool = False, prefetch: int | None = 1
    ) -> None:  # type: ignore[no-untyped-def]
        self.connection = pika.BlockingConnection(params)
        open_connections.append(self.connection)
        self.channel = self.connection.channel()
        self.channel.queue_declare(queue="task_queue", durable=True)
        self.busy = busy
        self.received: list[bytes] = []
        self.held: list[int] = []

        def callback(ch, method, properties, body):  # type: ignore[no-untyped-def]
            self.received.append(body)
            if self.busy:
                self.held.append(method.delivery_tag)
            else:
                ch.basic_ack(delivery_tag=method.delivery_tag)

        if prefetch is not None:  # the fair-dispatch part of the tutorial
            self.channel.basic_qos(prefetch_count=prefetch)
        self.channel.basic_consume(queue="task_queue", on_message_callback=callback)


@pytest.fixture(autouse=True)
def empty_task_queue(params) -> None:  # type: ignore[no-untyped-def]
    """Start every test with an empty task_queue (matters only on a long-lived broker)."""
    connection = pika.BlockingConnection(params)
    channel = connection.channel()
    channel.queue_declare(queue="task_queue", durable=True)
    channel.queue_purge(queue="task_queue")
    connection.close()


def test_work_queue_round_robins_tasks_between_idle_workers(params, open_connections) -> None:  # type: ignore[no-untyped-def]
    # the tutorial's round-robin part: no prefetch, so the broker alternates whatever the
    # workers' speed (with prefetch 1 the split would follow who acks first)
    first = Worker(params, open_connections, busy=True, prefetch=None)
    second = Worker(params, open_connections, busy=True, prefetch=None)
    for i in range(6):
        new_task(params, f"task {i}.")
    consume_until(
        [first.channel, second.channel],
        lambda: len(first.received) + len(second.received) == 6,
    )
    assert first.received == [f"task {i}.".encode() for i in (0, 2, 4)]
    assert second.received == [f"task {i}.".encode() for i in (1, 3, 5)]


def test_work_queue_fair_dispatch_skips_a_worker_that_is_still_busy(
    params,  # type: ignore[no-untyped-def]
    open_connections,
) -> None:
    slow = Worker(params, open_connections, busy=True)
    new_task(params, "a heavy task..........")
    consume_until(slow.channel, lambda: len(slow.received) == 1)
    fast = Worker(params, open_connections)
    for i in range(5):
        new_task(params, f"light {i}.")
    consume_until(fast.channel, lambda: len(fast.received) == 5)
    slow.connection.process_data_events(time_limit=0)
    # prefetch_count=1: the slow worker gets nothing new until it acks its heavy task
    assert slow.received == [b"a heavy task.........."]
    assert fast.received == [f"light {i}.".encode() for i in range(5)]
    slow.channel.basic_ack(delivery_tag=slow.held[0])


def test_work_queue_task_of_a_worker_that_dies_goes_to_another_worker(
    params,  # type: ignore[no-untyped-def]
    open_connections,
) -> None:
    dying = Worker(params, open_connections, busy=True)
    new_task(params, "survive me")
    consume_until(dying.channel, lambda: len(dying.received) == 1)
    dying.connection.close()  # the worker dies without acking
    survivor = Worker(params, open_connections)
    consume_until(survivor.channel, lambda: len(survivor.received) == 1)
    assert survivor.received == [b"survive me"]


def test_work_queue_is_durable_and_its_messages_persistent(
    router_server,  # type: ignore[no-untyped-def]
    params,
    open_connections,
) -> None:
    new_task(params, "keep me")

    def inspect() -> tuple[bool, list[bool]]:
        queue = router_server.broker.vhosts["/"].queues["task_queue"]
        return queue.durable, [entry.message.persistent for entry in queue.ready_messages()]

    assert router_server.call(inspect) == (True, [True])


# ---------------------------------------------------------------------------------------------
# 3. Publish/Subscribe


class LogReceiver:
    """receive_logs.py"""

    def __init__(self, params, open_connections) -> None:  # type: ignore[no-untyped-def]
        self.connection = pika.BlockingConnection(params)
        open_connections.append(self.connection)
        self.channel = self.connection.channel()
        self.channel.exchange_declare(exchange="logs", exchange_type="fanout")
        result = self.channel.queue_declare(queue="", exclusive=True)
        self.queue_name = result.method.queue
        self.channel.queue_bind(exchange="logs", queue=self.queue_name)
        self.received: list[bytes] = []

        def callback(ch, method, properties, body):  # type: ignore[no-untyped-def]
            self.received.append(body)

        self.channel.basic_consume(
            queue=self.queue_name, on_message_callback=callback, auto_ack=True
        )


def emit_log(params, message: str) -> None:  # type: ignore[no-untyped-def]
    """emit_log.py"""
    connection = pika.BlockingConnection(params)
    channel = connection.channel()
    channel.exchange_declare(exchange="logs", exchange_type="fanout")
    channel.basic_publish(exchange="logs", routing_key="", body=message)
    connection.close()


def test_publish_subscribe_every_receiver_gets_every_log(params, open_connections) -> None:  # type: ignore[no-untyped-def]
    receivers = [LogReceiver(params, open_connections) for _ in range(2)]
    assert receivers[0].queue_name != receivers[1].queue_name
    assert all(r.queue_name.startswith("amq.gen-") for r in receivers)
    emit_log(params, "info: Hello World!")
    emit_log(params, "warning: disk")
    for receiver in receivers:
        consume_until(receiver.channel, lambda r=receiver: len(r.received) == 2)
        assert receiver.received == [b"info: Hello World!", b"warning: disk"]


def test_publish_subscribe_logs_emitted_with_no_receiver_are_lost(
    params,  # type: ignore[no-untyped-def]
    open_connections,
) -> None:
    emit_log(params, "nobody hears this")
    receiver = LogReceiver(params, open_connections)
    emit_log(params, "heard")
    consume_until(receiver.channel, lambda: len(receiver.received) == 1)
    assert receiver.received == [b"heard"]


def test_publish_subscribe_exclusive_queue_is_deleted_when_the_receiver_disconnects(
    params,  # type: ignore[no-untyped-def]
    open_connections,
) -> None:
    receiver = LogReceiver(params, open_connections)
    receiver.connection.close()
    probe = pika.BlockingConnection(params)
    open_connections.append(probe)
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as caught:
        probe.channel().queue_declare(queue=receiver.queue_name, passive=True)
    assert caught.value.reply_code == 404


# ---------------------------------------------------------------------------------------------
# 4. Routing


class DirectLogReceiver:
    """receive_logs_direct.py with its severities as argv."""

    def __init__(self, params, open_connections, severities: list[str]) -> None:  # type: ignore[no-untyped-def]
        self.connection = pika.BlockingConnection(params)
        open_connections.append(self.connection)
        self.channel = self.connection.channel()
        self.channel.exchange_declare(exchange="direct_logs", exchange_type="direct")
        result = self.channel.queue_declare(queue="", exclusive=True)
        queue_name = result.method.queue
        for severity in severities:
            self.channel.queue_bind(exchange="direct_logs", queue=queue_name, routing_key=severity)
        self.received: list[tuple[str, bytes]] = []

        def callback(ch, method, properties, body):  # type: ignore[no-untyped-def]
            self.received.append((method.routing_key, body))

        self.channel.basic_consume(queue=queue_name, on_message_callback=callback, auto_ack=True)


def emit_log_direct(params, severity: str, message: str) -> None:  # type: ignore[no-untyped-def]
    """emit_log_direct.py"""
    connection = pika.BlockingConnection(params)
    channel = connection.channel()
    channel.exchange_declare(exchange="direct_logs", exchange_type="direct")
    channel.basic_publish(exchange="direct_logs", routing_key=severity, body=message)
    connection.close()


def test_routing_receivers_get_only_the_severities_they_bound(params, open_connections) -> None:  # type: ignore[no-untyped-def]
    errors_only = DirectLogReceiver(params, open_connections, ["error"])
    everything = DirectLogReceiver(params, open_connections, ["info", "warning", "error"])
    emit_log_direct(params, "info", "Hello World!")
    emit_log_direct(params, "error", "Run. Run. Or it will explode.")
    emit_log_direct(params, "warning", "careful")
    emit_log_direct(params, "debug", "nobody bound debug")
    consume_until(everything.channel, lambda: len(everything.received) == 3)
    consume_until(errors_only.channel, lambda: len(errors_only.received) == 1)
    assert errors_only.received == [("error", b"Run. Run. Or it will explode.")]
    assert everything.received == [
        ("info", b"Hello World!"),
        ("error", b"Run. Run. Or it will explode."),
        ("warning", b"careful"),
    ]


def test_routing_two_queues_bound_with_the_same_key_both_get_it(params, open_connections) -> None:  # type: ignore[no-untyped-def]
    # "Multiple bindings": binding two queues with the same key behaves like fanout
    receivers = [DirectLogReceiver(params, open_connections, ["black"]) for _ in range(2)]
    emit_log_direct(params, "black", "to both")
    for receiver in receivers:
        consume_until(receiver.channel, lambda r=receiver: len(r.received) == 1)
        assert receiver.received == [("black", b"to both")]


# ---------------------------------------------------------------------------------------------
# 5. Topics


class TopicLogReceiver:
    """receive_logs_topic.py with its binding keys as argv."""

    def __init__(self, params, open_connections, binding_keys: list[str]) -> None:  # type: ignore[no-untyped-def]
        self.connection = pika.BlockingConnection(params)
        open_connections.append(self.connection)
        self.channel = self.connection.channel()
        self.channel.exchange_declare(exchange="topic_logs", exchange_type="topic")
        result = self.channel.queue_declare("", exclusive=True)
        self.queue_name = result.method.queue
        for binding_key in binding_keys:
            self.channel.queue_bind(
                exchange="topic_logs", queue=self.queue_name, routing_key=binding_key
            )
        self.received: list[str] = []

        def callback(ch, method, properties, body):  # type: ignore[no-untyped-def]
            self.received.append(method.routing_key)

        self.channel.basic_consume(
            queue=self.queue_name, on_message_callback=callback, auto_ack=True
        )


def emit_log_topic(params, routing_key: str, message: str) -> None:  # type: ignore[no-untyped-def]
    """emit_log_topic.py"""
    connection = pika.BlockingConnection(params)
    channel = connection.channel()
    channel.exchange_declare(exchange="topic_logs", exchange_type="topic")
    channel.basic_publish(exchange="topic_logs", routing_key=routing_key, body=message)
    connection.close()


def test_topics_follow_the_tutorials_documented_expectations(params, open_connections) -> None:  # type: ignore[no-untyped-def]
    q1 = TopicLogReceiver(params, open_connections, ["*.orange.*"])
    q2 = TopicLogReceiver(params, open_connections, ["*.*.rabbit", "lazy.#"])
    keys = [
        "quick.orange.rabbit",  # both
        "lazy.orange.elephant",  # both
        "quick.orange.fox",  # Q1
        "lazy.brown.fox",  # Q2
        "lazy.pink.rabbit",  # Q2, once although it matches two bindings
        "quick.brown.fox",  # nobody: discarded
        "orange",  # nobody
        "quick.orange.new.rabbit",  # nobody
        "quick.orange.male.rabbit",  # nobody
        "lazy.orange.new.rabbit",  # Q2
    ]
    for key in keys:
        emit_log_topic(params, key, f"message for {key}")
    consume_until(q1.channel, lambda: len(q1.received) >= 3)
    consume_until(q2.channel, lambda: len(q2.received) >= 5)
    # a marker published last proves nothing else is on its way
    emit_log_topic(params, "lazy.end.rabbit", "end")
    emit_log_topic(params, "end.orange.end", "end")
    consume_until(q1.channel, lambda: q1.received[-1:] == ["end.orange.end"])
    consume_until(q2.channel, lambda: q2.received[-1:] == ["lazy.end.rabbit"])
    assert q1.received[:-1] == ["quick.orange.rabbit", "lazy.orange.elephant", "quick.orange.fox"]
    assert q2.received[:-1] == [
        "quick.orange.rabbit",
        "lazy.orange.elephant",
        "lazy.brown.fox",
        "lazy.pink.rabbit",
        "lazy.orange.new.rabbit",
    ]


def test_topics_hash_receives_all_and_kern_star_only_kernel_logs(params, open_connections) -> None:  # type: ignore[no-untyped-def]
    everything = TopicLogReceiver(params, open_connections, ["#"])
    kernel = TopicLogReceiver(params, open_connections, ["kern.*"])
    critical = TopicLogReceiver(params, open_connections, ["kern.*", "*.critical"])
    for key in ("kern.critical", "cron.info", "app.critical", "kern.info"):
        emit_log_topic(params, key, "A critical kernel error")
    consume_until(everything.channel, lambda: len(everything.received) == 4)
    consume_until(kernel.channel, lambda: len(kernel.received) == 2)
    consume_until(critical.channel, lambda: len(critical.received) == 3)
    assert everything.received == ["kern.critical", "cron.info", "app.critical", "kern.info"]
    assert kernel.received == ["kern.critical", "kern.info"]
    assert critical.received == ["kern.critical", "app.critical", "kern.info"]


# ---------------------------------------------------------------------------------------------
# 6. RPC


def fib(n: int) -> int:
    if n == 0:
        return 0
    elif n == 1:
        return 1
    else:
        return fib(n - 1) + fib(n - 2)


class RpcServer(threading.Thread):
    """rpc_server.py, in a thread with its own connection."""

    def __init__(self, params) -> None:  # type: ignore[no-untyped-def]
        super().__init__(name="rpc-server", daemon=True)
        self.params = params
        self.ready = threading.Event()
        self.connection: pika.BlockingConnection | None = None
        self.channel = None
        self.error: BaseException | None = None
        self.served = 0

    def run(self) -> None:
        try:
            self.connection = pika.BlockingConnection(self.params)
            channel = self.channel = self.connection.channel()
            channel.queue_declare(queue="rpc_queue")

            def on_request(ch, method, props, body):  # type: ignore[no-untyped-def]
                n = int(body)
                response = fib(n)
                ch.basic_publish(
                    exchange="",
                    routing_key=props.reply_to,
                    properties=pika.BasicProperties(correlation_id=props.correlation_id),
                    body=str(response),
                )
                ch.basic_ack(delivery_tag=method.delivery_tag)
                self.served += 1

            channel.basic_qos(prefetch_count=1)
            channel.basic_consume(queue="rpc_queue", on_message_callback=on_request)
            self.ready.set()
            channel.start_consuming()
        except BaseException as error:
            self.error = error
            self.ready.set()
        finally:
            if self.connection is not None and self.connection.is_open:
                self.connection.close()

    def stop(self) -> None:
        if self.connection is not None and self.connection.is_open:
            self.connection.add_callback_threadsafe(self.channel.stop_consuming)
        self.join(timeout=DEADLINE_SECONDS)


class FibonacciRpcClient:
    """rpc_client.py"""

    def __init__(self, params) -> None:  # type: ignore[no-untyped-def]
        self.connection = pika.BlockingConnection(params)
        self.channel = self.connection.channel()
        result = self.channel.queue_declare(queue="", exclusive=True)
        self.callback_queue = result.method.queue
        self.channel.basic_consume(
            queue=self.callback_queue, on_message_callback=self.on_response, auto_ack=True
        )
        self.response = None
        self.corr_id: str | None = None
        self.ignored: list[str | None] = []

    def on_response(self, ch, method, props, body):  # type: ignore[no-untyped-def]
        if self.corr_id == props.correlation_id:
            self.response = body
        else:
            self.ignored.append(props.correlation_id)

    def call(self, n: int) -> int:
        self.response = None
        self.corr_id = str(uuid.uuid4())
        self.channel.basic_publish(
            exchange="",
            routing_key="rpc_queue",
            properties=pika.BasicProperties(
                reply_to=self.callback_queue,
                correlation_id=self.corr_id,
            ),
            body=str(n),
        )
        deadline = time.monotonic() + DEADLINE_SECONDS
        while self.response is None:
            assert time.monotonic() < deadline, "no RPC response"
            self.connection.process_data_events(time_limit=1)
        return int(self.response)


@pytest.fixture
def rpc_server(params) -> Iterator[RpcServer]:  # type: ignore[no-untyped-def]
    server = RpcServer(params)
    server.start()
    assert server.ready.wait(DEADLINE_SECONDS)
    if server.error is not None:
        raise server.error
    try:
        yield server
    finally:
        server.stop()


def test_rpc_client_gets_fibonacci_numbers_from_the_server(params, rpc_server) -> None:  # type: ignore[no-untyped-def]
    fibonacci_rpc = FibonacciRpcClient(params)
    try:
        assert fibonacci_rpc.call(30) == 832040
        assert [fibonacci_rpc.call(n) for n in range(10)] == [0, 1, 1, 2, 3, 5, 8, 13, 21, 34]
    finally:
        fibonacci_rpc.connection.close()
    assert rpc_server.served == 11


def test_rpc_responses_carry_the_request_correlation_id(params, rpc_server) -> None:  # type: ignore[no-untyped-def]
    fibonacci_rpc = FibonacciRpcClient(params)
    try:
        for n in (5, 6, 7):
            assert fibonacci_rpc.call(n) == fib(n)
        assert fibonacci_rpc.ignored == []  # no response with a foreign correlation_id
    finally:
        fibonacci_rpc.connection.close()


def test_rpc_two_clients_each_get_their_own_answers(params, rpc_server) -> None:  # type: ignore[no-untyped-def]
    clients = [FibonacciRpcClient(params) for _ in range(2)]
    try:
        assert clients[0].callback_queue != clients[1].callback_queue
        assert [clients[i % 2].call(i + 10) for i in range(6)] == [fib(i + 10) for i in range(6)]
    finally:
        for client in clients:
            client.connection.close()
