"""Recovery round trips through a real SQLite file: a broker records into the store, the flusher is
simulated by hand (``take_batch`` / ``write`` / ``store_committed``), the store is closed, and a
new broker on a new store restores everything with ``router.store.recovery.restore``.

Each broker run has its own ``Clock``: monotonic time restarts at 0 and ``wall_offset`` says where
it is in Unix time, so deadlines stored as wall times must come back as the same absolute times."""

from __future__ import annotations

import decimal
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

# FakeClient (a Session driven with raw frames) lives with the broker model tests
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "broker"))
from model_helpers import FakeClient, Received

from router.amqp import spec
from router.amqp.properties import BasicProperties, decode_properties, scan
from router.amqp.tables import FieldArray, FieldTable
from router.broker.broker import Broker, BrokerConfig
from router.broker.message import Message, QueuedMessage
from router.broker.permissions import Permission
from router.broker.policies import Policy
from router.broker.ports import Clock, CountingIds
from router.broker.queues import Queue
from router.broker.vhost import VirtualHost
from router.store.recovery import Recovered, restore
from router.store.sqlite import Batch, SQLiteStore, open_store

WALL = 1_700_000_000.0  # Unix seconds at monotonic 0 of the first run


class Run:
    """One broker run on the data directory: open the store, build the broker, restore."""

    def __init__(
        self,
        data_dir: Path,
        wall: float,
        config: BrokerConfig | None,
        memory_budget: int | None = None,
    ) -> None:
        self.clock = Clock(0.0, wall)
        self.store: SQLiteStore = open_store(data_dir, self.clock, memory_budget=memory_budget)
        self.broker = Broker(
            config or BrokerConfig(), ids=CountingIds(), clock=self.clock, store=self.store
        )
        self.recovered: Recovered = restore(self.broker, self.store)
        self.clients: list[FakeClient] = []
        self._closed = False

    @property
    def vhost(self) -> VirtualHost:
        return self.broker.vhosts["/"]

    def queue(self, name: str, vhost: str = "/") -> Queue:
        return self.broker.vhosts[vhost].queues[name]

    def flush(self) -> Batch:
        """The flusher's step (runtime/storage.py): cut a batch, write it, tell the broker, then
        drop the bodies it may page out; again while the commit released more work (a channel
        paused on a durable declare resumes). Returns the first batch."""
        first = None
        while first is None or self.store.pending:
            batch = self.store.take_batch()
            self.store.write(batch)
            self.broker.store_committed(batch.number)
            if batch.pageable:
                self.store.page_out(batch)
            first = first or batch
        return first

    def at(self, now: float) -> None:
        """Move the clock and run what is due."""
        self.clock.now = now
        for client in self.clients:
            client.now = now
        self.broker.tick(now)

    def client(self, vhost: str = "/") -> FakeClient:
        client = FakeClient(self.broker, vhost=vhost, now=self.clock.now)
        client.open_channel(1)
        self.clients.append(client)
        return client

    def close(self, *, clean: bool = True) -> None:
        if not self._closed:
            self._closed = True
            if clean:  # what `router serve` does after draining at a clean stop
                self.store.mark("stopped")
            self.store.close()


Start = Callable[..., Run]


@pytest.fixture
def start(tmp_path: Path) -> Iterator[Start]:
    """``start(wall=..., config=..., clean=True)``: stop the running broker (without flushing:
    what was not written is lost, as in a crash; ``clean`` says whether the store is marked as
    cleanly stopped) and start a new one on the same data directory."""
    runs: list[Run] = []

    def boot(
        wall: float = WALL,
        config: BrokerConfig | None = None,
        memory_budget: int | None = None,
        clean: bool = True,
    ) -> Run:
        for run in runs:
            run.close(clean=clean)
        run = Run(tmp_path / "data", wall, config, memory_budget)
        runs.append(run)
        return run

    yield boot
    for run in runs:
        run.close()


# --- helpers ---------------------------------------------------------------------------------------


def persistent(
    body: bytes = b"m", *, routing_key: str = "q", exchange: str = "", **props: Any
) -> Message:
    props.setdefault("delivery_mode", 2)
    raw = BasicProperties(**props).encode()
    delivery_mode, priority, expiration = scan(raw)
    return Message(exchange, routing_key, raw, body, delivery_mode, priority, expiration)


def publish(vhost: VirtualHost, message: Message) -> list[Queue]:
    queues = vhost.route(vhost.exchanges[message.exchange], message)
    for queue in queues:
        queue.publish(message)
    return queues


def durable_queue(vhost: VirtualHost, name: str = "q", **arguments: Any) -> Queue:
    table = FieldTable()
    for key, value in arguments.items():
        table["x-" + key.replace("_", "-")] = value
    return vhost.declare_queue(name, owner=None, durable=True, arguments=table)


def dead_letter_setup(vhost: VirtualHost, **arguments: Any) -> Queue:
    """A durable fanout ``dlx`` into a durable ``dlq``, and a durable ``q`` dead-lettering there."""
    vhost.declare_exchange("dlx", "fanout", durable=True)
    durable_queue(vhost, "dlq")
    vhost.bind_queue("dlx", "dlq", "", FieldTable(), None)
    return durable_queue(vhost, "q", dead_letter_exchange="dlx", **arguments)


def bodies(queue: Queue) -> list[bytes]:
    return [entry.message.body for entry in queue.ready_messages()]


def take(queue: Queue) -> QueuedMessage:
    entry = queue.get(no_ack=False)
    assert entry is not None
    return entry


def headers(entry: QueuedMessage) -> FieldTable:
    found = decode_properties(entry.message.properties).headers
    assert found is not None
    return found


def death_reason(entry: QueuedMessage) -> str:
    return headers(entry)["x-death"][0]["reason"]


def get(client: FakeClient, queue: str, no_ack: bool = False) -> Received | None:
    reply = client.call(1, spec.BasicGet(queue=queue, no_ack=no_ack))[-1]
    return None if isinstance(reply.method, spec.BasicGetEmpty) else reply


def typed(table: FieldTable) -> dict[str, tuple[str, Any]]:
    return {key: table.typed(key) for key in table}


# --- topology --------------------------------------------------------------------------------------


def _rich_arguments() -> FieldTable:
    nested = FieldTable()
    nested.set_typed("depth", "s", 2)
    arguments = FieldTable()
    arguments.set_typed("x-int8", "b", -7)
    arguments.set_typed("x-uint32", "i", 4_000_000_000)
    arguments.set_typed("x-float", "f", 1.5)
    arguments.set_typed("x-double", "d", 2.25)
    arguments.set_typed("x-decimal", "D", decimal.Decimal("1.25"))
    arguments.set_typed("x-stamp", "T", 1_700_000_000)
    arguments.set_typed("x-flag", "t", True)
    arguments.set_typed("x-bytes", "x", b"\x00\x01")
    arguments.set_typed("x-nested", "F", nested)
    arguments.set_typed("x-array", "A", FieldArray([1, "two"], ["b", "S"]))
    arguments.set_typed("x-void", "V", None)
    return arguments


def test_durable_exchanges_come_back_with_their_types_flags_and_typed_arguments(start: Start):
    run = start()
    vhost = run.vhost
    vhost.declare_exchange("d", "direct", durable=True, arguments=_rich_arguments())
    vhost.declare_exchange("f", "fanout", durable=True, auto_delete=True)
    vhost.declare_exchange("t", "topic", durable=True, internal=True)
    vhost.declare_exchange("h", "headers", durable=True)
    vhost.declare_exchange(
        "ae-user", "direct", durable=True, arguments=FieldTable({"alternate-exchange": "f"})
    )
    run.flush()
    run = start(wall=WALL + 60)
    exchanges = run.vhost.exchanges
    found = {
        name: (x.TYPE, x.durable, x.auto_delete, x.internal)
        for name, x in exchanges.items()
        if name in ("d", "f", "t", "h", "ae-user")
    }
    assert found == {
        "d": ("direct", True, False, False),
        "f": ("fanout", True, True, False),
        "t": ("topic", True, False, True),
        "h": ("headers", True, False, False),
        "ae-user": ("direct", True, False, False),
    }
    assert typed(exchanges["d"].arguments) == typed(_rich_arguments())
    assert exchanges["ae-user"].alternate_exchange == "f"
    assert run.recovered.exchanges == 5


def test_a_delayed_message_exchange_comes_back_routing_like_its_delayed_type(start: Start):
    run = start()
    arguments = FieldTable({"x-delayed-type": "topic"})
    run.vhost.declare_exchange("later", "x-delayed-message", durable=True, arguments=arguments)
    durable_queue(run.vhost)
    run.vhost.bind_queue("later", "q", "orders.*", FieldTable(), None)
    run.flush()
    run = start()
    exchange = run.vhost.exchanges["later"]
    assert exchange.TYPE == "x-delayed-message"
    assert exchange.delayed_type == "topic"  # type: ignore[attr-defined]
    assert typed(exchange.arguments) == {"x-delayed-type": ("S", "topic")}
    assert publish(run.vhost, persistent(exchange="later", routing_key="orders.new"))
    assert not publish(run.vhost, persistent(exchange="later", routing_key="invoices.new"))


def test_transient_exchanges_queues_and_their_bindings_do_not_come_back(start: Start):
    run = start()
    run.vhost.declare_exchange("tx", "direct")
    run.vhost.declare_queue("tq", owner=None)
    durable_queue(run.vhost, "dq")
    run.vhost.bind_queue("tx", "dq", "k", FieldTable(), None)
    run.vhost.bind_queue("amq.direct", "tq", "k", FieldTable(), None)
    publish(run.vhost, persistent(routing_key="tq"))
    run.flush()
    run = start()
    assert "tx" not in run.vhost.exchanges
    assert "tq" not in run.vhost.queues
    assert set(run.vhost.queues) == {"dq"}
    assert run.vhost.bindings() == []
    assert run.recovered.bindings == 0


def test_durable_queues_come_back_with_their_flags_and_typed_arguments(start: Start):
    run = start()
    arguments = FieldTable()
    arguments.set_typed("x-max-priority", "b", 5)
    arguments.set_typed("x-message-ttl", "I", 60_000)
    arguments.set_typed("x-dead-letter-exchange", "S", "dlx")
    arguments.set_typed("x-dead-letter-routing-key", "S", "dead")
    arguments.set_typed("x-max-length", "l", 100)
    arguments.set_typed("x-overflow", "S", "reject-publish")
    arguments.set_typed("x-single-active-consumer", "t", True)
    arguments.set_typed("x-queue-type", "S", "quorum")
    arguments.set_typed("x-delivery-limit", "l", 3)
    arguments.set_typed("x-retry-backoff", "F", FieldTable({"initial": 100, "multiplier": 2}))
    run.vhost.declare_queue("rich", owner=None, durable=True, arguments=arguments.copy())
    run.vhost.declare_queue("ad", owner=None, durable=True, auto_delete=True)
    run.flush()
    run = start()
    rich, ad = run.queue("rich"), run.queue("ad")
    assert typed(rich.arguments) == typed(arguments)
    assert (rich.durable, rich.auto_delete, rich.exclusive) == (True, False, False)
    assert (ad.durable, ad.auto_delete) == (True, True)
    options = rich.options
    assert (options.max_priority, options.message_ttl, options.delivery_limit) == (5, 60_000, 3)
    assert (options.overflow, options.single_active_consumer) == ("reject-publish", True)
    assert options.retry_initial == 100
    # a redeclare with the original arguments is equivalent
    run.vhost.declare_queue("rich", owner=None, durable=True, arguments=arguments.copy())
    assert run.recovered.queues == 2


def test_bindings_come_back_with_their_arguments_and_route_as_before(start: Start):
    run = start()
    vhost = run.vhost
    vhost.declare_exchange("src", "topic", durable=True)
    vhost.declare_exchange("fan", "fanout", durable=True)
    vhost.declare_exchange("h", "headers", durable=True)
    vhost.declare_exchange("ae", "fanout", durable=True)
    vhost.declare_exchange(
        "d", "direct", durable=True, arguments=FieldTable({"alternate-exchange": "ae"})
    )
    for name in ("via-e2e", "pdf", "direct", "unrouted", "builtin"):
        durable_queue(vhost, name)
    vhost.bind_exchange("src", "fan", "a.*", FieldTable())
    vhost.bind_queue("fan", "via-e2e", "", FieldTable(), None)
    match = FieldTable({"x-match": "all", "format": "pdf"})
    match.set_typed("n", "b", 1)
    vhost.bind_queue("h", "pdf", "", match, None)
    vhost.bind_queue("d", "direct", "k", FieldTable(), None)
    vhost.bind_queue("ae", "unrouted", "", FieldTable(), None)
    vhost.bind_queue("amq.topic", "builtin", "#.log", FieldTable(), None)
    run.flush()
    before = {(b.source.name, b.destination.name, b.routing_key) for b in vhost.bindings()}

    run = start()
    vhost = run.vhost
    after = {(b.source.name, b.destination.name, b.routing_key) for b in vhost.bindings()}
    assert after == before
    assert run.recovered.bindings == 6
    restored = next(b for b in vhost.bindings() if b.source.name == "h")
    assert typed(restored.arguments) == typed(match)

    def routed(exchange: str, key: str = "", **headers: Any) -> list[str]:
        message = persistent(exchange=exchange, routing_key=key, headers=FieldTable(headers))
        return sorted(q.name for q in vhost.route(vhost.exchanges[exchange], message))

    assert routed("src", "a.b") == ["via-e2e"]
    assert routed("src", "b.a") == []
    assert routed("h", format="pdf", n=1) == ["pdf"]
    assert routed("h", format="doc", n=1) == []
    assert routed("d", "k") == ["direct"]
    assert routed("d", "other") == ["unrouted"]
    assert routed("amq.topic", "app.log") == ["builtin"]


def test_a_binding_removed_before_the_restart_does_not_come_back(start: Start):
    run = start()
    run.vhost.declare_exchange("x", "direct", durable=True)
    durable_queue(run.vhost)
    run.vhost.bind_queue("x", "q", "a", FieldTable(), None)
    run.vhost.bind_queue("x", "q", "b", FieldTable(), None)
    run.flush()
    run.vhost.unbind("x", run.queue("q"), "a", FieldTable())
    run.flush()
    run = start()
    assert [b.routing_key for b in run.vhost.bindings()] == ["b"]


def test_vhosts_come_back_with_their_own_exchanges_queues_and_messages(start: Start):
    run = start()
    tenant = run.broker.add_vhost("tenant")
    run.broker.set_permissions("guest", "tenant", ".*", ".*", ".*")  # stored, like the rest
    tenant.declare_exchange("x", "direct", durable=True)
    durable_queue(tenant, "q")
    tenant.bind_queue("x", "q", "k", FieldTable(), None)
    publish(tenant, persistent(b"tenant's", exchange="x", routing_key="k"))
    run.flush()
    run = start()
    assert set(run.broker.vhosts) == {"/", "tenant"}
    assert run.recovered.vhosts == 2
    assert "q" not in run.vhost.queues
    assert bodies(run.queue("q", "tenant")) == [b"tenant's"]
    client = run.client(vhost="tenant")
    assert client.connection_close() is None
    assert get(client, "q").body == b"tenant's"  # type: ignore[union-attr]


def test_users_come_back_and_authenticate_with_their_password(start: Start):
    run = start()
    run.broker.set_user("alice", "secret")
    run.broker.set_user("bob", "hunter2")
    run.broker.set_user("bob", "changed")
    run.flush()
    run = start()
    assert run.broker.authenticate("alice", "secret")
    assert not run.broker.authenticate("alice", "wrong")
    assert run.broker.authenticate("bob", "changed")
    assert not run.broker.authenticate("bob", "hunter2")


def test_the_config_files_password_wins_over_a_stored_one(start: Start):
    run = start()
    run.broker.set_user("guest", "changed-at-runtime")
    run.flush()
    run = start(config=BrokerConfig(users=(("guest", "guest"),)))
    assert run.broker.authenticate("guest", "guest")
    assert not run.broker.authenticate("guest", "changed-at-runtime")


def test_recovery_records_nothing_in_the_store(tmp_path: Path):
    first = Run(tmp_path / "data", WALL, None)
    dead_letter_setup(first.vhost, message_ttl=1000)
    publish(first.vhost, persistent())
    first.broker.set_user("alice", "secret")
    first.flush()
    first.close()
    clock = Clock(0.0, WALL)
    store = open_store(tmp_path / "data", clock)
    try:
        broker = Broker(BrokerConfig(), ids=CountingIds(), clock=clock, store=store)
        writes = store.writes
        batch = store.batch
        recovered = restore(broker, store)
        assert (recovered.queues, recovered.messages) == (2, 1)
        assert store.writes == writes and store.batch == batch
        assert not store.loading
    finally:
        store.close()


def test_restarting_twice_restores_the_same_state_without_duplicates(start: Start):
    run = start()
    run.vhost.declare_exchange("x", "fanout", durable=True)
    durable_queue(run.vhost)
    run.vhost.bind_queue("x", "q", "", FieldTable(), None)
    for body in (b"1", b"2"):
        publish(run.vhost, persistent(body, exchange="x"))
    run.flush()
    run = start()
    run.flush()
    run = start()
    assert bodies(run.queue("q")) == [b"1", b"2"]
    assert len(run.vhost.bindings()) == 1
    assert run.store.count_messages() == 2
    assert (run.recovered.exchanges, run.recovered.queues, run.recovered.messages) == (1, 1, 2)


# --- messages --------------------------------------------------------------------------------------


def test_messages_come_back_in_queue_order_with_a_requeued_one_at_its_position(start: Start):
    run = start()
    queue = durable_queue(run.vhost)
    for body in (b"1", b"2", b"3", b"4"):
        publish(run.vhost, persistent(body))
    first, second = take(queue), take(queue)
    queue.ack(second)
    queue.requeue([first])
    run.flush()
    run = start()
    queue = run.queue("q")
    assert bodies(queue) == [b"1", b"3", b"4"]
    assert [e.redelivered for e in queue.ready_messages()] == [True, False, False]
    assert run.recovered.messages == 3


def test_an_acked_message_is_not_restored(start: Start):
    run = start()
    queue = durable_queue(run.vhost)
    publish(run.vhost, persistent(b"acked"))
    publish(run.vhost, persistent(b"kept"))
    run.flush()
    queue.ack(take(queue))
    run.flush()
    run = start()
    assert bodies(run.queue("q")) == [b"kept"]


def test_a_publish_whose_batch_was_never_written_is_not_restored(start: Start):
    run = start()
    durable_queue(run.vhost)
    publish(run.vhost, persistent(b"written"))
    run.flush()
    publish(run.vhost, persistent(b"lost in the crash"))
    run = start()  # no flush: the batch was cut but never written
    assert bodies(run.queue("q")) == [b"written"]


def test_transient_messages_of_a_durable_queue_are_not_restored(start: Start):
    run = start()
    durable_queue(run.vhost)
    publish(run.vhost, persistent(b"transient", delivery_mode=1))
    publish(run.vhost, persistent(b"persistent"))
    run.flush()
    run = start()
    assert bodies(run.queue("q")) == [b"persistent"]


def test_a_delivered_unacked_message_comes_back_redelivered_and_a_new_one_does_not(start: Start):
    run = start()
    durable_queue(run.vhost)
    client = run.client()
    for body in (b"delivered", b"never delivered"):
        client.publish(1, "", "q", body, properties=BasicProperties(delivery_mode=2))
    client.call(1, spec.BasicQos(prefetch_count=1))
    client.consume(1, "q", "c1")
    assert client.bodies(1) == [b"delivered"]
    run.flush()
    run = start()
    queue = run.queue("q")
    assert (queue.message_count, queue.unacked) == (2, 0)
    client = run.client()
    client.consume(1, "q", "c2")
    deliveries = client.deliveries(1)
    assert [(d.body, d.method.redelivered) for d in deliveries] == [
        (b"delivered", True),
        (b"never delivered", False),
    ]


def test_a_restored_message_acked_after_the_restart_is_deleted_from_the_store(start: Start):
    run = start()
    queue = durable_queue(run.vhost)
    publish(run.vhost, persistent(b"1"))
    publish(run.vhost, persistent(b"2"))
    run.flush()
    run = start()
    queue = run.queue("q")
    queue.ack(take(queue))
    batch = run.flush()
    assert len(batch.deletes) == 1 and batch.inserts == []
    run = start()
    assert bodies(run.queue("q")) == [b"2"]


def test_messages_published_after_a_restart_queue_behind_the_restored_ones(start: Start):
    run = start()
    durable_queue(run.vhost)
    publish(run.vhost, persistent(b"first run"))
    run.flush()
    run = start()
    publish(run.vhost, persistent(b"second run"))
    run.flush()
    run = start()
    publish(run.vhost, persistent(b"third run"))
    run.flush()
    run = start()
    assert bodies(run.queue("q")) == [b"first run", b"second run", b"third run"]


def test_a_queue_declared_after_a_restart_does_not_share_rows_with_a_restored_one(start: Start):
    run = start()
    durable_queue(run.vhost, "old")
    durable_queue(run.vhost, "gone")
    publish(run.vhost, persistent(b"old", routing_key="old"))
    publish(run.vhost, persistent(b"gone", routing_key="gone"))
    run.flush()
    run.vhost.delete_queue("gone", owner=None)
    run.flush()
    run = start()
    assert "gone" not in run.vhost.queues
    durable_queue(run.vhost, "new")
    publish(run.vhost, persistent(b"new", routing_key="new"))
    run.flush()
    run = start()
    assert bodies(run.queue("old")) == [b"old"]
    assert bodies(run.queue("new")) == [b"new"]


def test_a_priority_queue_keeps_each_messages_level(start: Start):
    run = start()
    durable_queue(run.vhost, max_priority=5)
    for body, priority in ((b"p1", 1), (b"p5", 5), (b"p3", 3), (b"p9", 9), (b"none", None)):
        publish(run.vhost, persistent(body, priority=priority))
    run.flush()
    run = start()
    queue = run.queue("q")
    assert [(e.message.body, e.level) for e in queue.ready_messages()] == [
        (b"p5", 5),
        (b"p9", 5),
        (b"p3", 3),
        (b"p1", 1),
        (b"none", 0),
    ]
    assert [take(queue).message.body for _ in range(5)] == [b"p5", b"p9", b"p3", b"p1", b"none"]


def test_delivery_counts_survive_a_restart_and_the_delivery_limit_still_applies(start: Start):
    run = start()
    queue = dead_letter_setup(run.vhost, delivery_limit=1)
    publish(run.vhost, persistent(b"poison"))
    take(queue)  # delivered once, then the broker stops without an ack
    run.flush()
    run = start()
    queue = run.queue("q")
    (entry,) = queue.ready_messages()
    assert (entry.delivery_count, entry.redelivered) == (1, True)
    client = run.client()
    reply = get(client, "q")
    assert reply is not None and reply.method.redelivered
    assert reply.properties.headers.typed("x-delivery-count") == ("l", 1)  # type: ignore[union-attr]
    client.call(1, spec.BasicNack(reply.method.delivery_tag, False, True))  # requeue: over limit
    assert queue.message_count == 0
    (dead,) = run.queue("dlq").ready_messages()
    assert death_reason(dead) == "delivery_limit"


def test_a_message_ttl_keeps_its_absolute_deadline_across_a_restart(start: Start):
    run = start()
    dead_letter_setup(run.vhost, message_ttl=10_000)
    publish(run.vhost, persistent(b"short-lived"))  # stored at wall WALL, expires at WALL + 10
    run.flush()
    run = start(wall=WALL + 4)  # restarted 4 s later: 6 s left
    queue = run.queue("q")
    assert queue.next_deadline() == pytest.approx(6.0)
    assert run.broker.next_deadline() == pytest.approx(6.0)
    run.at(5.9)
    assert bodies(queue) == [b"short-lived"]
    run.at(6.0)
    assert queue.message_count == 0
    (dead,) = run.queue("dlq").ready_messages()
    assert death_reason(dead) == "expired"
    batch = run.flush()  # the move is one transaction
    assert len(batch.deletes) == 1 and len(batch.inserts) == 1
    run = start(wall=WALL + 30)
    assert run.queue("q").message_count == 0
    assert bodies(run.queue("dlq")) == [b"short-lived"]


def test_a_per_message_expiration_keeps_its_absolute_deadline_across_a_restart(start: Start):
    run = start()
    dead_letter_setup(run.vhost)
    run.at(1.0)
    publish(run.vhost, persistent(b"expiring", expiration="5000"))  # until WALL + 6
    publish(run.vhost, persistent(b"forever"))
    run.flush()
    run = start(wall=WALL + 2)
    assert run.broker.next_deadline() == pytest.approx(4.0)
    run.at(4.0)
    assert bodies(run.queue("q")) == [b"forever"]
    (dead,) = run.queue("dlq").ready_messages()
    assert death_reason(dead) == "expired"
    assert headers(dead)["x-death"][0]["original-expiration"] == "5000"


def test_a_message_whose_ttl_passed_while_the_broker_was_down_is_dead_lettered_on_the_first_tick(
    start: Start,
):
    run = start()
    dead_letter_setup(run.vhost, message_ttl=10_000)
    publish(run.vhost, persistent(b"stale"))
    run.flush()
    run = start(wall=WALL + 60)
    assert run.broker.next_deadline() is not None and run.broker.next_deadline() <= 0
    assert run.queue("dlq").message_count == 0  # not before the first tick
    run.at(0.0)
    assert run.queue("q").message_count == 0
    (dead,) = run.queue("dlq").ready_messages()
    assert death_reason(dead) == "expired"


def test_a_scheduled_message_stays_invisible_until_it_is_due_after_a_restart(start: Start):
    run = start()
    arguments = FieldTable({"x-delayed-type": "direct"})
    run.vhost.declare_exchange("later", "x-delayed-message", durable=True, arguments=arguments)
    durable_queue(run.vhost)
    run.vhost.bind_queue("later", "q", "k", FieldTable(), None)
    client = run.client()
    props = BasicProperties(delivery_mode=2, headers=FieldTable({"x-delay": 5000}))
    client.publish(1, "later", "k", b"scheduled", properties=props)  # due at WALL + 5
    client.publish(1, "later", "k", b"now", properties=BasicProperties(delivery_mode=2))
    run.flush()
    run = start(wall=WALL + 2)
    queue = run.queue("q")
    assert (queue.message_count, queue.waiting) == (1, 1)
    assert bodies(queue) == [b"now"]
    assert run.broker.next_deadline() == pytest.approx(3.0)
    run.at(2.99)
    assert queue.waiting == 1
    run.at(3.0)
    assert (queue.message_count, queue.waiting) == (2, 0)
    assert bodies(queue) == [b"scheduled", b"now"]  # its position is its publish order


def test_a_scheduled_message_due_while_the_broker_was_down_is_ready_at_once(start: Start):
    run = start()
    durable_queue(run.vhost)
    message = persistent(b"due")
    message.due_at = 5.0
    publish(run.vhost, message)
    run.flush()
    run = start(wall=WALL + 10)
    queue = run.queue("q")
    assert (queue.message_count, queue.waiting) == (1, 0)
    assert take(queue).redelivered is False


def test_a_backed_off_message_waits_out_its_retry_delay_after_a_restart(start: Start):
    run = start()
    queue = durable_queue(run.vhost, retry_backoff=FieldTable({"initial": 4000}))
    publish(run.vhost, persistent(b"retry me"))
    run.at(1.0)
    queue.requeue([take(queue)])  # held back until 5.0, WALL + 5
    assert queue.waiting == 1
    run.flush()
    run = start(wall=WALL + 2)
    queue = run.queue("q")
    assert (queue.message_count, queue.waiting) == (0, 1)
    assert run.broker.next_deadline() == pytest.approx(3.0)
    run.at(2.9)
    assert queue.message_count == 0
    run.at(3.0)
    entry = take(queue)
    assert (entry.message.body, entry.redelivered, entry.delivery_count) == (b"retry me", True, 2)


@pytest.mark.parametrize("tick", [3.0, 3.001], ids=["at-the-deadline", "after-the-deadline"])
def test_a_message_that_would_expire_during_its_backoff_expires_after_a_restart(
    start: Start, tick: float
):
    """Before the restart the message expires at its deadline whoever is consuming; after it, at
    the same absolute time, it must not be delivered instead."""
    run = start()
    queue = dead_letter_setup(
        run.vhost, message_ttl=5000, retry_backoff=FieldTable({"initial": 60_000})
    )
    publish(run.vhost, persistent(b"doomed"))
    run.at(1.0)
    queue.requeue([take(queue)])  # backoff ends after its TTL: it expires at 5.0 (WALL + 5)
    run.flush()
    run = start(wall=WALL + 2)
    client = run.client()
    client.consume(1, "q", "waiting-consumer")
    run.at(tick)
    assert client.bodies(1) == []
    (dead,) = run.queue("dlq").ready_messages()
    assert death_reason(dead) == "expired"


def test_a_dead_lettered_message_is_in_the_dead_letter_queue_after_a_restart(start: Start):
    run = start()
    queue = dead_letter_setup(run.vhost)
    publish(run.vhost, persistent(b"rejected"))
    run.flush()
    queue.reject([take(queue)])
    batch = run.flush()
    assert len(batch.deletes) == 1 and len(batch.inserts) == 1  # one transaction
    run = start()
    assert run.queue("q").message_count == 0
    (dead,) = run.queue("dlq").ready_messages()
    assert dead.message.body == b"rejected"
    assert death_reason(dead) == "rejected"
    assert dead.redelivered is False


def test_queue_deduplication_is_recomputed_from_the_restored_messages(start: Start):
    run = start()
    durable_queue(run.vhost, message_deduplication=True)
    publish(run.vhost, persistent(b"a", message_id="a"))
    publish(run.vhost, persistent(b"b", headers=FieldTable({"x-deduplication-header": "k"})))
    run.flush()
    run = start()
    queue = run.queue("q")
    publish(run.vhost, persistent(b"a again", message_id="a"))
    publish(run.vhost, persistent(b"b again", headers=FieldTable({"x-deduplication-header": "k"})))
    assert queue.stats.duplicates == 2
    assert bodies(queue) == [b"a", b"b"]
    queue.ack(take(queue))  # "a" leaves: its key is free again
    publish(run.vhost, persistent(b"a new", message_id="a"))
    assert bodies(queue) == [b"b", b"a new"]


def _dedup_setup(client: FakeClient, name: str = "dd", **arguments: Any) -> None:
    table = FieldTable({"x-message-deduplication": True})
    for key, value in arguments.items():
        table["x-" + key.replace("_", "-")] = value
    client.call(
        1, spec.ExchangeDeclare(exchange=name, type="fanout", durable=True, arguments=table)
    )
    client.call(1, spec.QueueDeclare(queue=f"{name}-q", durable=True))
    client.call(1, spec.QueueBind(queue=f"{name}-q", exchange=name))
    assert client.channel_close(1) is None


def _publish_id(client: FakeClient, message_id: str, exchange: str = "dd") -> None:
    props = BasicProperties(message_id=message_id, delivery_mode=2)
    client.publish(1, exchange, "", message_id.encode(), properties=props)


def test_exchange_deduplication_keys_survive_a_restart(start: Start):
    run = start()
    client = run.client()
    _dedup_setup(client)
    _publish_id(client, "m1")
    run.flush()
    run = start()
    client = run.client()
    _publish_id(client, "m1")
    _publish_id(client, "m2")
    assert bodies(run.queue("dd-q")) == [b"m1", b"m2"]
    assert run.vhost.exchanges["dd"].dedup.duplicates == 1  # type: ignore[union-attr]


def test_exchange_dedup_keys_with_a_ttl_expire_at_the_same_wall_time_after_a_restart(
    start: Start,
):
    run = start()
    client = run.client()
    _dedup_setup(client, cache_ttl=10_000)
    _publish_id(client, "m1")  # remembered until WALL + 10
    run.flush()
    run = start(wall=WALL + 4)
    client = run.client()
    run.at(5.0)  # WALL + 9: still remembered
    _publish_id(client, "m1")
    assert run.queue("dd-q").message_count == 1
    run.at(6.5)  # WALL + 10.5: forgotten
    _publish_id(client, "m1")
    assert run.queue("dd-q").message_count == 2


def test_exchange_dedup_keys_of_a_small_cache_survive_another_exchanges_traffic(start: Start):
    run = start()
    client = run.client()
    _dedup_setup(client, "small", cache_size=2)
    _dedup_setup(client, "big", cache_size=100)
    run.flush()  # the durable declares answer (and the channel resumes) once on disk
    _publish_id(client, "s1", "small")
    for key in ("b1", "b2", "b3"):
        _publish_id(client, key, "big")
    _publish_id(client, "s2", "small")
    _publish_id(client, "s1", "small")  # still cached before the restart: a duplicate
    assert run.queue("small-q").message_count == 2
    run.flush()
    run = start()
    client = run.client()
    _publish_id(client, "s1", "small")  # and after it
    assert bodies(run.queue("small-q")) == [b"s1", b"s2"]


def test_cc_and_bcc_keys_come_back_with_the_message_and_bcc_stays_hidden(start: Start):
    run = start()
    vhost = run.vhost
    vhost.declare_exchange("x", "direct", durable=True)
    vhost.declare_exchange("dlx", "direct", durable=True)
    durable_queue(vhost, "main", dead_letter_exchange="dlx")
    durable_queue(vhost, "copied")
    durable_queue(vhost, "blind")
    durable_queue(vhost, "dl-by-bcc")
    vhost.bind_queue("x", "main", "main", FieldTable(), None)
    vhost.bind_queue("x", "copied", "cc-key", FieldTable(), None)
    vhost.bind_queue("x", "blind", "bcc-key", FieldTable(), None)
    vhost.bind_queue("dlx", "dl-by-bcc", "bcc-key", FieldTable(), None)
    client = run.client()
    table = FieldTable()
    table.set_typed("CC", "A", FieldArray(["cc-key"]))
    table.set_typed("BCC", "A", FieldArray(["bcc-key"]))
    props = BasicProperties(delivery_mode=2, headers=table)
    client.publish(1, "x", "main", b"sds", properties=props)
    run.flush()
    run = start()
    for name in ("main", "copied", "blind"):
        (entry,) = run.queue(name).ready_messages()
        assert (entry.message.cc, entry.message.bcc) == (("cc-key",), ("bcc-key",))
        assert "CC" in headers(entry) and "BCC" not in headers(entry)
    main = run.queue("main")
    main.reject([take(main)])  # dead-lettered by every original key, BCC included
    (dead,) = run.queue("dl-by-bcc").ready_messages()
    assert dead.message.body == b"sds"
    assert "BCC" not in headers(dead)


# --- bodies kept on disk (x-queue-mode lazy, memory budget) ----------------------------------------


def _big(n: int) -> bytes:
    return b"%03d" % n + b"." * 509  # past PAGE_MIN_BODY: eligible for paging


def test_a_lazy_queues_messages_are_delivered_whole_before_and_after_a_restart(start: Start):
    run = start()
    queue = durable_queue(run.vhost, queue_mode="lazy")
    for n in range(4):
        publish(run.vhost, persistent(_big(n)))
    run.flush()
    assert all(entry.message.paged for entry in queue.ready_messages())
    assert take(queue).message.body == _big(0)
    run.flush()
    run = start()
    queue = run.queue("q")
    assert [e.message.size for e in queue.ready_messages()] == [512] * 4
    assert [take(queue).message.body for _ in range(4)] == [_big(n) for n in range(4)]


def test_messages_past_the_memory_budget_are_restored_in_order_and_delivered_whole(
    start: Start,
):
    run = start(memory_budget=1500)
    queue = durable_queue(run.vhost)
    for n in range(8):
        publish(run.vhost, persistent(_big(n)))
    run.flush()
    assert any(entry.message.paged for entry in queue.ready_messages())
    run = start(memory_budget=1500)
    queue = run.queue("q")
    restored = queue.ready_messages()
    assert 0 < sum(entry.message.paged for entry in restored) < 8
    assert [take(queue).message.body for _ in range(8)] == [_big(n) for n in range(8)]


def test_a_paged_message_is_dead_lettered_with_its_body_after_a_restart(start: Start):
    run = start()
    dead_letter_setup(run.vhost, message_ttl=10_000, queue_mode="lazy")
    publish(run.vhost, persistent(_big(7)))
    run.flush()
    run = start(wall=WALL + 4)
    assert run.queue("q").ready_messages()[0].message.paged
    run.at(6.0)
    (dead,) = run.queue("dlq").ready_messages()
    assert dead.message.body == _big(7)
    assert death_reason(dead) == "expired"
    run.flush()
    run = start(wall=WALL + 30)
    assert take(run.queue("dlq")).message.body == _big(7)


def test_after_a_crash_every_recovered_message_is_marked_redelivered(start: Start):
    """A delivery made after the last batch was not recorded: after an unclean stop the broker
    cannot know which messages went out, so it marks them all (as RabbitMQ does)."""
    run = start()
    durable_queue(run.vhost, "q")
    for body in (b"1", b"2"):
        run.queue("q").publish(persistent(body))
    run.flush()
    run = start(clean=False)
    assert [e.redelivered for e in run.queue("q").ready_messages()] == [True, True]
    run = start()  # this run was not stopped cleanly either... but marks itself stopped now
    assert [e.redelivered for e in run.queue("q").ready_messages()] == [True, True]


# --- permissions, policies, user tags, deleted users and vhosts -----------------------------------


def test_user_tags_and_permissions_come_back(start: Start):
    run = start()
    run.broker.set_user("alice", "secret", tags=("management",))
    run.broker.set_permissions("alice", "/", "^a", "^b", "^c")
    run.flush()
    run = start()
    assert run.broker.user_tags["alice"] == ("management",)
    assert run.broker.permissions[("alice", "/")] == Permission("^a", "^b", "^c")


def test_a_recovered_permission_is_enforced_on_connections(start: Start):
    run = start()
    run.broker.set_user("alice", "secret")
    run.broker.set_permissions("alice", "/", "", "", "")
    run.flush()
    run = start()
    client = FakeClient(run.broker, user="alice", password="secret")
    client.open_channel(1)
    client.call(1, spec.QueueDeclare(queue="q"))
    close = client.channel_close(1)
    assert close is not None and close.reply_code == 403


def test_a_policy_comes_back_and_applies_to_the_recovered_queue(start: Start):
    run = start()
    durable_queue(run.vhost, "q")
    run.broker.set_policy(Policy("/", "limit", "^q$", "queues", 0, {"max-length": 2}))
    run.flush()
    run = start()
    policy = run.vhost.policies["limit"]
    assert policy.definition == {"max-length": 2}
    assert run.queue("q").policy is policy
    assert run.queue("q").options.max_length == 2


def test_a_cleared_policy_stays_cleared(start: Start):
    run = start()
    run.broker.set_policy(Policy("/", "limit", "^q$", "queues", 0, {"max-length": 2}))
    run.flush()
    run.broker.clear_policy("/", "limit")
    run.flush()
    run = start()
    assert run.vhost.policies == {}


def test_a_deleted_user_stays_deleted_with_its_permissions(start: Start):
    run = start()
    run.broker.set_user("alice", "secret")
    run.broker.set_permissions("alice", "/", ".*", ".*", ".*")
    run.flush()
    run.broker.delete_user("alice")
    run.flush()
    run = start()
    assert "alice" not in run.broker.users
    assert ("alice", "/") not in run.broker.permissions


def test_a_deleted_vhost_stays_deleted_with_its_queues_and_messages(start: Start):
    run = start()
    tenant = run.broker.add_vhost("tenant")
    durable_queue(tenant, "q")
    publish(tenant, persistent())
    run.flush()
    run.broker.delete_vhost("tenant")
    run.flush()
    run = start()
    assert set(run.broker.vhosts) == {"/"}
    assert run.store.count_messages() == 0


def test_a_settings_user_keeps_every_permission_on_settings_vhosts_after_a_restart(start: Start):
    start()
    run = start()
    assert run.broker.permissions[("guest", "/")] == Permission(".*", ".*", ".*")
    assert run.broker.user_tags["guest"] == ("administrator",)


def test_permissions_set_at_runtime_for_a_settings_user_win_over_the_default(start: Start):
    run = start()
    run.broker.set_permissions("guest", "/", "^mine", "^mine", "^mine")
    run.flush()
    run = start()
    assert run.broker.permissions[("guest", "/")] == Permission("^mine", "^mine", "^mine")
