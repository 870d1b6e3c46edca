"""Hostile use of the queue features: a state machine over the broker's clock.

Two sans-IO client connections share one ``Broker`` whose clock the test drives: every step runs at
the current ``now``, and a tick rule advances it (random steps of 0-3 s, or exactly to the next
deadline) and calls ``broker.tick(now)``. The clients declare queues with random combinations of
priorities, TTLs, ``x-expires``, dead-lettering (cycles included), length limits and every
overflow mode, delivery limits, retry backoff, consumer timeouts, single active consumer and
deduplication; exchanges of every kind (``x-delayed-message`` and deduplicating ones too); they
publish with priorities, expirations (some invalid), ``x-delay`` / ``x-deliver-at``, CC / BCC
(some of the wrong type), message ids and deduplication headers, mandatory, in confirm mode; they
consume, cancel, get, settle, recover, purge, delete, close channels and connections.

Checked after every step:

- ``receive_data`` and ``tick`` never raise; no close is a 541;
- every queue's counters match its contents (ready count and bytes, waiting, unacked against the
  channels' records, consumers);
- no ready message is past its deadline, every deadline of a live queue is ahead of ``now`` and
  scheduled with the broker (no timer lost), and a deleted queue is never scheduled;
- no message is delivered past its deadline, none is delivered while it is already unacked or
  gone, a second delivery of a queue's message comes only after it was requeued and is marked
  redelivered, and only messages the clients published are delivered;
- every publish on a confirm channel is confirmed (ack or nack) exactly once.

Defects the fuzzer finds are kept as explicit regression tests at the end of the file.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from typing import Any

from hypothesis import HealthCheck, note, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule
from model_helpers import FakeClient, FakeConsumer, Received, make_broker
from test_model_hostile_input import check_broker

from router.amqp import spec
from router.amqp.connection import CLOSED, OPEN
from router.amqp.frames import method_frame
from router.amqp.properties import BasicProperties
from router.amqp.tables import FieldArray, FieldTable
from router.broker.broker import Broker, BrokerConfig
from router.broker.message import READY, UNACKED, WAITING, Message, QueuedMessage
from router.broker.ports import Clock, CountingIds
from router.broker.queues import DetachedHost, Queue

INTERNAL_ERROR = 541
WALL = 1_700_000_000.0  # Unix seconds at monotonic 0
CHANNELS = (1, 2)


def make_clocked_broker() -> Broker:
    """A broker with a test clock and a seeded random source (retry jitter is reproducible)."""
    return Broker(
        BrokerConfig(), ids=CountingIds(), clock=Clock(0.0, WALL), random=random.Random(1234)
    )


# --- names ----------------------------------------------------------------------------------------

QUEUES = ("q0", "q1", "q2", "q3")
# name -> (type, arguments): a name always has the same kind, so redeclares mostly succeed
EXCHANGES: dict[str, tuple[str, dict[str, Any]]] = {
    "ed": ("direct", {}),
    "ef": ("fanout", {}),
    "et": ("topic", {}),
    "dd": ("x-delayed-message", {"x-delayed-type": "direct"}),
    "df": ("x-delayed-message", {"x-delayed-type": "fanout"}),
    "dt": ("x-delayed-message", {"x-delayed-type": "topic"}),
    "xd": ("direct", {"x-message-deduplication": True}),
    "xf": ("fanout", {"x-message-deduplication": True, "x-cache-size": 2, "x-cache-ttl": 1500}),
}
EXCHANGE_NAMES = tuple(EXCHANGES)
# dead-letter exchanges: the fuzz exchanges, the default one (with a routing key naming a queue:
# cycles back to the same queue) and a missing one
DLX = st.sampled_from(["", "", *EXCHANGE_NAMES, "missing"])
ROUTING_KEYS = st.sampled_from([*QUEUES, *QUEUES, *QUEUES, "a", "a.b", "", "x.y"])
BINDING_KEYS = st.sampled_from([*QUEUES, *QUEUES, "a", "#", "a.*", "*.b", ""])
CONSUMER_TAGS = st.sampled_from(["", "", "", "c1", "c2"])
CLIENT = st.sampled_from([0, 0, 1])
CHANNEL = st.sampled_from(CHANNELS)


# --- strategies -----------------------------------------------------------------------------------


@st.composite
def retry_backoff(draw: st.DrawFn) -> FieldTable:
    initial = draw(st.integers(10, 500))
    table = FieldTable({"initial": initial})
    if draw(st.booleans()):
        table["multiplier"] = draw(st.integers(1, 3) | st.sampled_from([1.5, 2.5]))
    if draw(st.booleans()):
        table["max"] = initial + draw(st.integers(0, 2000))
    if draw(st.booleans()):
        table["jitter"] = draw(st.sampled_from([0, 0.1, 0.5, 1.0]))
    return table


# (argument, strategy, 1 in how many queues has it): a few features per queue, so that queues
# live long enough (x-expires, TTLs, length limits) to be consumed from
_QUEUE_FEATURES = (
    ("x-max-priority", st.integers(1, 10), 3),
    ("x-message-ttl", st.integers(0, 2000), 3),
    ("x-expires", st.integers(100, 5000), 6),
    ("x-dead-letter-exchange", DLX, 2),
    ("x-dead-letter-routing-key", st.sampled_from([*QUEUES, "a"]), 3),
    ("x-max-length", st.integers(0, 5), 4),
    ("x-max-length-bytes", st.integers(0, 40), 6),
    ("x-overflow", st.sampled_from(["drop-head", "reject-publish", "reject-publish-dlx"]), 3),
    ("x-delivery-limit", st.integers(0, 3), 3),
    ("x-retry-backoff", retry_backoff(), 3),
    ("x-consumer-timeout", st.integers(50, 2000), 4),
    ("x-single-active-consumer", st.booleans(), 4),
    ("x-message-deduplication", st.booleans(), 4),
)


@st.composite
def queue_arguments(draw: st.DrawFn) -> FieldTable:
    table = FieldTable()
    for key, values, odds in _QUEUE_FEATURES:
        if draw(st.integers(1, odds)) == 1:
            table[key] = draw(values)
    return table


QUEUE_ARGUMENTS = queue_arguments()

EXPIRATIONS = st.one_of(
    st.none(),
    st.none(),
    st.integers(0, 3000).map(str),
    st.sampled_from(
        ["0", "0", "1", "10", "2999"] * 4 + ["-1", "x", "1.5", "", "99999999999999999"]
    ),
)
PRIORITIES = st.none() | st.integers(0, 12) | st.just(255)
KEY_ARRAY = st.lists(ROUTING_KEYS, max_size=3).map(lambda keys: FieldArray(keys, ["S"] * len(keys)))
# CC / BCC: arrays of keys, mixed arrays, and types that are refused
ROUTING_HEADER = st.one_of(
    KEY_ARRAY,
    KEY_ARRAY,
    st.just(FieldArray(["q0", 5, b"q1"], ["S", "l", "x"])),
    st.sampled_from([*(FieldArray(["q0"], ["S"]),) * 12, "q0", 7, True]),
)


ODD_DELAYS = [0.5, -0.0, 2**62, math.inf, -math.inf, math.nan, "100", True]


@st.composite
def headers(draw: st.DrawFn, now: float) -> FieldTable | None:
    if draw(st.integers(0, 3)) == 0:
        return None
    table = FieldTable()
    if draw(st.integers(0, 2)) == 0:
        table["x-delay"] = draw(st.integers(-100, 3000) | st.sampled_from(ODD_DELAYS))
    if draw(st.integers(0, 3)) == 0:
        offset_ms = draw(st.integers(-2000, 3000))
        table["x-deliver-at"] = draw(
            st.just(int((now + WALL) * 1000) + offset_ms) | st.sampled_from(ODD_DELAYS)
        )
    if draw(st.integers(0, 2)) == 0:
        table["CC"] = draw(ROUTING_HEADER)
    if draw(st.integers(0, 3)) == 0:
        table["BCC"] = draw(ROUTING_HEADER)
    if draw(st.integers(0, 3)) == 0:
        table["x-deduplication-header"] = draw(st.sampled_from(["k1", "k2"]))
    return table


def body_of(number: int, padding: int) -> bytes:
    return b"m%d;" % number + b"." * padding


def number_of(body: bytes) -> int:
    assert body.startswith(b"m") and b";" in body, body
    return int(body[1 : body.index(b";")])


# (rule arguments shared by a rule and its "_more" twin, which makes it twice as likely)
# (milliseconds to advance, whether to stop exactly at the next deadline when it comes first);
# one argument, so that tick is the rule Hypothesis falls back on
TICK = {"step": st.tuples(st.integers(0, 3000) | st.sampled_from([0, 1, 50, 100]), st.booleans())}
PUBLISH = {
    "data": st.data(),
    "index": CLIENT,
    "channel": CHANNEL,
    "exchange": st.sampled_from(["" for _ in EXCHANGE_NAMES] + [*EXCHANGE_NAMES, "nope"]),
    "key": ROUTING_KEYS,
    "mandatory": st.booleans(),
    "priority": PRIORITIES,
    "expiration": EXPIRATIONS,
    "message_id": st.sampled_from([None, "unique", "unique", "d1", "d2"]),
    "padding": st.integers(0, 12),
    "count": st.integers(1, 4),
}
CONSUME = {
    "index": CLIENT,
    "channel": CHANNEL,
    "queue": st.sampled_from(QUEUES),
    "tag": CONSUMER_TAGS,
    "no_ack": st.sampled_from([False, False, True]),
    "exclusive": st.sampled_from([False] * 5 + [True]),
    "priority": st.sampled_from([None] * 8 + [0, 1, 1, 2, 2, -1, -1] * 2 + ["high"]),
    "timeout": st.sampled_from([None] * 12 + [50, 300, 1000, 2000] * 3 + [0, -1]),
}
SETTLE_KINDS = st.sampled_from(["ack", "ack", "nack", "reject"])
MULTIPLE = st.sampled_from([False, False, True])
BOGUS = st.sampled_from([0] * 12 + [1, 1000])


# --- broker-side instrumentation ------------------------------------------------------------------


class Deliveries:
    """Watches one queue's deliveries (per instance: the ``Queue`` class is untouched).

    Wraps the queue's ``_pop_ready``, ``_deliver``, ``get`` and ``requeue`` so that every
    delivery is checked at the moment it happens, against the clock the queue reads."""

    def __init__(self, violations: list[str]) -> None:
        self.violations = violations
        # id(entry) -> [entry, deliveries, requeues since the last delivery]
        self.seen: dict[int, list[Any]] = {}

    def watch(self, queue: Queue) -> None:
        pop_ready: Callable[[], QueuedMessage | None] = queue._pop_ready
        deliver = queue._deliver
        get = queue.get
        requeue = queue.requeue

        def checked_pop_ready() -> QueuedMessage | None:
            entry = pop_ready()
            if entry is not None and entry.state != READY:
                self._fail(queue, entry, f"popped from the ready index in state {entry.state}")
            return entry

        def checked_deliver(consumer: Any, entry: QueuedMessage) -> None:
            if entry.state not in (READY, WAITING):
                self._fail(queue, entry, f"delivered in state {entry.state}")
            if queue.deleted:
                self._fail(queue, entry, "delivered by a deleted queue")
            self._delivered(queue, entry, entry.state)
            deliver(consumer, entry)

        def checked_get(no_ack: bool) -> QueuedMessage | None:
            entry = get(no_ack)
            if entry is not None:
                self._delivered(queue, entry)
            return entry

        def checked_requeue(entries: Any) -> None:
            entries = list(entries)
            for entry in entries:
                record = self.seen.get(id(entry))
                if record is not None:
                    record[2] += 1
            requeue(entries)

        queue._pop_ready = checked_pop_ready  # type: ignore[method-assign]
        queue._deliver = checked_deliver  # type: ignore[method-assign]
        queue.get = checked_get  # type: ignore[method-assign]
        queue.requeue = checked_requeue  # type: ignore[method-assign]

    def _fail(self, queue: Queue, entry: QueuedMessage, what: str) -> None:
        self.violations.append(
            f"{queue.name} t={queue.clock.now}: {entry!r} {entry.message.body!r}: {what}"
        )

    def _delivered(self, queue: Queue, entry: QueuedMessage, state: int = READY) -> None:
        now = queue.clock.now
        if entry.expires_at is not None and entry.expires_at < now:
            # (a held-back message due after its deadline used to be delivered: fixed)
            self._fail(queue, entry, f"delivered past its deadline {entry.expires_at}")
        record = self.seen.get(id(entry))
        if record is None:
            self.seen[id(entry)] = [entry, 1, 0]
            if entry.redelivered:
                self._fail(queue, entry, "first delivery marked redelivered")
            return
        if record[2] == 0:
            self._fail(queue, entry, "delivered again without a requeue in between")
        if not entry.redelivered:
            self._fail(queue, entry, "delivered again without the redelivered flag")
        record[1] += 1
        record[2] = 0


# --- a client connection --------------------------------------------------------------------------


class Client:
    """A FakeClient with channels 1 and 2 open that answers closes as a sane client does."""

    def __init__(self, machine: QueueFeatures) -> None:
        self.machine = machine
        self.fc = FakeClient(
            machine.broker, capabilities={"consumer_cancel_notify": True}, now=machine.now
        )
        # channel -> confirmed publish sequence numbers (from confirm.select-ok on)
        self.confirmed: dict[int, set[int]] = {}
        self.closed = False
        for channel in CHANNELS:
            self.send(method_frame(channel, spec.ChannelOpen()))

    @property
    def session(self) -> Any:
        return self.fc.session

    def send(self, *frames: bytes) -> None:
        """Feed one read to the session at the machine's ``now``, then handle what comes back."""
        self.fc.now = self.machine.now
        self.fc.send(*frames)
        self.absorb()

    def absorb(self) -> None:
        self.fc.now = self.machine.now
        while not self.closed:
            replies = self.fc.take()
            if not replies:
                return
            reopen: list[int] = []
            connection_closed = False
            for reply in replies:
                connection_closed |= self._check(reply, reopen)
            if connection_closed:
                self._finish(answer=True)
                return
            for channel in reopen:
                self.fc.send(
                    method_frame(channel, spec.ChannelCloseOk()),
                    method_frame(channel, spec.ChannelOpen()),
                )

    def _check(self, reply: Received, reopen: list[int]) -> bool:
        method, channel = reply.method, reply.channel
        machine = self.machine
        if isinstance(method, spec.ChannelClose):
            assert method.reply_code != INTERNAL_ERROR, method
            note(f"channel.close {channel}: {method.reply_code} {method.reply_text}")
            self.confirmed.pop(channel, None)
            reopen.append(channel)
        elif isinstance(method, spec.ChannelCloseOk):
            self.confirmed.pop(channel, None)
        elif isinstance(method, spec.ConnectionClose):
            assert method.reply_code != INTERNAL_ERROR, method
            note(f"connection.close: {method.reply_code} {method.reply_text}")
            return True
        elif isinstance(method, spec.ConfirmSelectOk):
            self.confirmed.setdefault(channel, set())
        elif isinstance(method, spec.BasicAck | spec.BasicNack):
            confirmed = self.confirmed.get(channel)
            assert confirmed is not None, f"a confirm on channel {channel} not in confirm mode"
            tag = method.delivery_tag
            assert tag not in confirmed, f"publish {tag} on channel {channel} confirmed twice"
            if method.multiple:
                confirmed.update(range(1, tag + 1))
            else:
                confirmed.add(tag)
        elif isinstance(method, spec.BasicDeliver | spec.BasicGetOk | spec.BasicReturn):
            number = number_of(reply.body)
            assert number in machine.published, f"{reply.body!r} was never published"
        return False

    def _finish(self, *, answer: bool) -> None:
        """The connection ends: close-ok when the server closed it, then EOF."""
        session = self.session
        if answer and session.conn.state != CLOSED:
            self.fc.send(method_frame(0, spec.ConnectionCloseOk()))
        session.receive_data(b"", self.machine.now)
        self.fc.take()
        assert session.ended and not session.opened, session
        self.closed = True


# --- the state machine ----------------------------------------------------------------------------


class QueueFeatures(RuleBasedStateMachine):
    @initialize(
        arguments=st.lists(QUEUE_ARGUMENTS, min_size=len(QUEUES), max_size=len(QUEUES)),
        bindings=st.lists(
            st.tuples(st.sampled_from(QUEUES), st.sampled_from(EXCHANGE_NAMES), BINDING_KEYS),
            min_size=6,
            max_size=16,
        ),
    )
    def start(self, arguments: list[FieldTable], bindings: list[tuple[str, str, str]]) -> None:
        self.broker = make_clocked_broker()
        self.now = 0.0
        self.violations: list[str] = []
        self.deliveries = Deliveries(self.violations)
        self.watched: dict[int, Queue] = {}  # every queue ever created, by id
        self.published: set[int] = set()
        self.retired: list[Any] = []
        self.clients = [Client(self), Client(self)]
        self._after()
        self._topology(arguments, bindings)

    def _topology(self, arguments: list[FieldTable], bindings: list[tuple[str, str, str]]) -> None:
        """Every fuzz exchange, the queues with random features, and some bindings."""
        for name, (kind, table) in EXCHANGES.items():
            method = spec.ExchangeDeclare(exchange=name, type=kind, arguments=FieldTable(table))
            self._call(0, 1, method)
        for name, table in zip(QUEUES, arguments, strict=True):
            self._call(0, 1, spec.QueueDeclare(queue=name, arguments=table))
        for queue, exchange, key in bindings:
            self._call(0, 1, spec.QueueBind(queue=queue, exchange=exchange, routing_key=key))

    # --- plumbing

    def _client(self, index: int) -> Client:
        return self.clients[index]

    def _after(self) -> None:
        """After a step: replace ended connections, watch new queues."""
        for index, client in enumerate(self.clients):
            if client.closed or client.session.conn.state != OPEN:
                if not client.closed:
                    client._finish(answer=False)
                self.retired.append(client.session)
                self.clients[index] = Client(self)
        for queue in self.broker.vhosts["/"].queues.values():
            if id(queue) not in self.watched:
                self.watched[id(queue)] = queue
                self.deliveries.watch(queue)

    def _send(self, index: int, *frames: bytes) -> None:
        self._client(index).send(*frames)
        self._after()

    def _call(self, index: int, channel: int, method: spec.Method) -> None:
        self._send(index, method_frame(channel, method))

    # --- time

    @rule(**TICK)
    def tick(self, step: tuple[int, bool]) -> None:
        """Advance the clock (sometimes exactly to the next deadline) and run what is due."""
        step_ms, exact = step
        now = self.now + step_ms / 1000
        deadline = self.broker.next_deadline()
        if exact and deadline is not None and self.now < deadline <= self.now + 3:
            now = deadline
        self.now = now
        self.broker.tick(now)
        for client in self.clients:
            client.absorb()
        self._after()
        following = self.broker.next_deadline()
        assert following is None or following > now, (following, now)

    @rule(**TICK)
    def tick_more(self, **arguments: Any) -> None:
        self.tick(**arguments)

    # --- topology

    @rule(
        index=CLIENT, channel=CHANNEL, name=st.sampled_from(EXCHANGE_NAMES), odd=st.integers(0, 9)
    )
    def declare_or_delete_exchange(self, index: int, channel: int, name: str, odd: int) -> None:
        """Mostly a redeclare; sometimes a delete (dead-letter exchanges go missing) or an
        invalid declare."""
        kind, arguments = EXCHANGES[name]
        table = FieldTable(arguments)
        if odd in (0, 1):
            self._call(index, channel, spec.ExchangeDelete(exchange=name))
            return
        if odd == 2 and kind == "x-delayed-message":
            table["x-delayed-type"] = "x-nope"
        elif odd == 3:
            table["x-message-deduplication"] = "yes"
        self._call(index, channel, spec.ExchangeDeclare(exchange=name, type=kind, arguments=table))

    @rule(
        index=CLIENT,
        channel=CHANNEL,
        name=st.sampled_from(QUEUES),
        arguments=QUEUE_ARGUMENTS,
        same=st.integers(0, 3),
        exclusive=st.sampled_from([False] * 7 + [True]),
        auto_delete=st.sampled_from([False] * 5 + [True]),
    )
    def declare_queue(
        self,
        index: int,
        channel: int,
        name: str,
        arguments: FieldTable,
        same: int,
        exclusive: bool,
        auto_delete: bool,
    ) -> None:
        existing = self.broker.vhosts["/"].queues.get(name)
        if existing is not None and same:  # redeclare as it is (touches it: x-expires)
            arguments = existing.arguments
            exclusive = existing.exclusive_owner is not None
            auto_delete = existing.auto_delete
        method = spec.QueueDeclare(
            queue=name, exclusive=exclusive, auto_delete=auto_delete, arguments=arguments
        )
        self._call(index, channel, method)

    @rule(
        index=CLIENT,
        channel=CHANNEL,
        queue=st.sampled_from(QUEUES),
        exchange=st.sampled_from(EXCHANGE_NAMES),
        key=BINDING_KEYS,
        unbind=st.sampled_from([False, False, False, True]),
    )
    def bind(
        self, index: int, channel: int, queue: str, exchange: str, key: str, unbind: bool
    ) -> None:
        cls = spec.QueueUnbind if unbind else spec.QueueBind
        self._call(index, channel, cls(queue=queue, exchange=exchange, routing_key=key))

    @rule(
        index=CLIENT,
        channel=CHANNEL,
        queue=st.sampled_from(QUEUES),
        delete=st.sampled_from([False, False, True]),
        if_unused=st.sampled_from([False, False, True]),
        if_empty=st.sampled_from([False, False, True]),
    )
    def purge_or_delete(
        self, index: int, channel: int, queue: str, delete: bool, if_unused: bool, if_empty: bool
    ) -> None:
        if delete:
            method: spec.Method = spec.QueueDelete(
                queue=queue, if_unused=if_unused, if_empty=if_empty
            )
        else:
            method = spec.QueuePurge(queue=queue)
        self._call(index, channel, method)

    # --- publishing

    @rule(index=CLIENT, channel=CHANNEL)
    def confirm_select(self, index: int, channel: int) -> None:
        self._call(index, channel, spec.ConfirmSelect())

    @rule(**PUBLISH)
    def publish(
        self,
        data: st.DataObject,
        index: int,
        channel: int,
        exchange: str,
        key: str,
        mandatory: bool,
        priority: int | None,
        expiration: str | None,
        message_id: str | None,
        padding: int,
        count: int,
    ) -> None:
        table = data.draw(headers(self.now))
        frames = []
        for _ in range(count):
            number = len(self.published)
            self.published.add(number)
            properties = BasicProperties(
                priority=priority,
                expiration=expiration,
                headers=table,
                message_id=f"id{number}" if message_id == "unique" else message_id,
            )
            frames.append(
                FakeClient.publish_bytes(
                    channel,
                    exchange,
                    key,
                    body_of(number, padding),
                    properties=properties,
                    mandatory=mandatory,
                )
            )
        self._send(index, *frames)

    @rule(**PUBLISH)
    def publish_more(self, **arguments: Any) -> None:  # rules are equally likely: weigh this one
        self.publish(**arguments)

    @rule(**PUBLISH)
    def publish_even_more(self, **arguments: Any) -> None:
        self.publish(**arguments)

    # --- consuming

    @rule(
        index=CLIENT,
        channel=CHANNEL,
        prefetch=st.integers(0, 3),
        global_=st.sampled_from([False, False, True]),
    )
    def qos(self, index: int, channel: int, prefetch: int, global_: bool) -> None:
        self._call(index, channel, spec.BasicQos(0, prefetch, global_))

    @rule(**CONSUME)
    def consume(
        self,
        index: int,
        channel: int,
        queue: str,
        tag: str,
        no_ack: bool,
        exclusive: bool,
        priority: int | str | None,
        timeout: int | None,
    ) -> None:
        arguments = FieldTable()
        if priority is not None:
            arguments["x-priority"] = priority
        if timeout is not None:
            arguments["x-consumer-timeout"] = timeout
        method = spec.BasicConsume(
            queue=queue, consumer_tag=tag, no_ack=no_ack, exclusive=exclusive, arguments=arguments
        )
        self._call(index, channel, method)

    @rule(**CONSUME)
    def consume_more(self, **arguments: Any) -> None:
        self.consume(**arguments)

    @rule(data=st.data(), index=CLIENT, channel=CHANNEL)
    def cancel(self, data: st.DataObject, index: int, channel: int) -> None:
        live = self._client(index).session.channels.get(channel)
        tags = sorted(live.consumers) if live is not None else []
        tag = data.draw(st.sampled_from([*tags, *tags, "c9"]))
        self._call(index, channel, spec.BasicCancel(tag))

    @rule(index=CLIENT, channel=CHANNEL, queue=st.sampled_from(QUEUES), no_ack=st.booleans())
    def get(self, index: int, channel: int, queue: str, no_ack: bool) -> None:
        self._call(index, channel, spec.BasicGet(queue=queue, no_ack=no_ack))

    def _unacked(self) -> list[tuple[int, int, list[int]]]:
        return [
            (index, number, list(channel.unacked))
            for index, client in enumerate(self.clients)
            for number, channel in client.session.channels.items()
            if channel.unacked
        ]

    @precondition(lambda self: bool(self._unacked()))
    @rule(data=st.data(), kind=SETTLE_KINDS, multiple=MULTIPLE, requeue=st.booleans(), bogus=BOGUS)
    def settle(
        self, data: st.DataObject, kind: str, multiple: bool, requeue: bool, bogus: int
    ) -> None:
        index, channel, tags = data.draw(st.sampled_from(self._unacked()))
        tag = data.draw(st.sampled_from(tags)) + bogus
        if kind == "ack":
            method: spec.Method = spec.BasicAck(tag, multiple)
        elif kind == "nack":
            method = spec.BasicNack(tag, multiple, requeue)
        else:
            method = spec.BasicReject(tag, requeue)
        self._call(index, channel, method)

    @precondition(lambda self: bool(self._unacked()))
    @rule(data=st.data(), kind=SETTLE_KINDS, multiple=MULTIPLE, requeue=st.booleans(), bogus=BOGUS)
    def settle_more(self, **arguments: Any) -> None:
        self.settle(**arguments)

    @rule(
        index=CLIENT,
        channel=CHANNEL,
        method=st.sampled_from(
            [
                spec.TxSelect(),
                spec.TxSelect(),
                spec.TxCommit(),
                spec.TxRollback(),
                spec.TxRollback(),
                spec.ChannelFlow(False),
                spec.ChannelFlow(True),
                spec.ChannelFlow(True),
            ]
        ),
    )
    def tx_or_flow(self, index: int, channel: int, method: spec.Method) -> None:
        """Transactions (settlements held until commit, put back by rollback) and flow."""
        self._call(index, channel, method)

    @rule(
        index=CLIENT, channel=CHANNEL, method=st.sampled_from([spec.TxSelect(), spec.TxRollback()])
    )
    def tx_more(self, index: int, channel: int, method: spec.Method) -> None:
        self._call(index, channel, method)

    @rule(index=CLIENT, channel=CHANNEL, requeue=st.sampled_from([True] * 15 + [False]))
    def recover(self, index: int, channel: int, requeue: bool) -> None:
        self._call(index, channel, spec.BasicRecover(requeue))

    # --- closing

    @rule(
        index=CLIENT,
        channel=CHANNEL,
        what=st.sampled_from(["channel", "channel", "connection", "connection-eof"]),
    )
    def close(self, index: int, channel: int, what: str) -> None:
        """Close a channel (and reopen it), or the connection politely, or drop it (EOF)."""
        client = self._client(index)
        if what == "channel":
            client.send(method_frame(channel, spec.ChannelClose(200, "bye", 0, 0)))
            if not client.closed:
                client.send(method_frame(channel, spec.ChannelOpen()))
        else:
            if what == "connection":
                client.send(method_frame(0, spec.ConnectionClose(200, "bye", 0, 0)))
            if not client.closed:
                client._finish(answer=False)
        self._after()

    # --- invariants

    def _sessions(self) -> list[Any]:
        return [*(client.session for client in self.clients), *self.retired]

    @invariant()
    def no_delivery_broke_a_rule(self) -> None:
        assert not self.violations, self.violations

    @invariant()
    def the_broker_bookkeeping_is_consistent(self) -> None:
        check_broker(self.broker, self._sessions())

    @invariant()
    def queues_keep_their_counts_and_deadlines(self) -> None:
        now = self.now
        broker = self.broker
        for queue in broker.vhosts["/"].queues.values():
            ready = queue.ready_messages()
            assert queue.ready_count >= 0 and queue.ready_count == len(ready), queue
            assert queue.ready_bytes == sum(len(e.message.body) for e in ready), queue
            for entry in ready:
                assert entry.state == READY, entry
                if entry.expires_at is not None:
                    assert entry.expires_at > now, f"{entry} of {queue} outlived its TTL at {now}"
                    timer = entry.timer
                    assert timer is not None and not timer.cancelled, f"{entry}: no TTL timer"
                    assert timer.deadline == entry.expires_at, (entry, timer)
            waiting = _waiting_entries(queue)
            assert queue.waiting >= 0 and queue.waiting == len(waiting), (queue, waiting)
            assert queue.consumer_count == len(queue.consumers()), queue
            deadline = queue.next_deadline()
            if deadline is not None:
                assert deadline > now, f"{queue} has a deadline {deadline} behind now {now}"
                scheduled = broker._queue_timer.get(queue)
                assert scheduled is not None, f"{queue} has deadline {deadline}, never scheduled"
                assert not scheduled.cancelled and scheduled.deadline <= deadline, (
                    queue,
                    scheduled,
                    deadline,
                )
        for queue in broker._queue_timer:
            # (a deleted x-expires queue losing its consumers used to re-arm its timer: fixed)
            assert not queue.deleted, f"the deleted {queue} is still scheduled"
        following = broker.next_deadline()
        assert following is None or following > now, (following, now)

    @invariant()
    def deliveries_owed_are_unacked_once_with_their_leases(self) -> None:
        holders: dict[int, Any] = {}
        for session in self._sessions():
            for channel in session.channels.values():
                held = [(None, record) for _requeue, tagged in channel.tx_acks for record in tagged]
                for in_tx, (tag, (entry, queue, consumer)) in [
                    *((False, item) for item in channel.unacked.items()),
                    *((True, record) for _none, record in held),
                ]:
                    assert entry.state == UNACKED, (tag, entry, queue)
                    assert id(entry) not in holders, f"{entry} is unacked twice"
                    holders[id(entry)] = entry
                    if in_tx or queue.deleted or consumer is None:
                        continue
                    timeout = consumer.timeout
                    if timeout is None:
                        timeout = queue.options.consumer_timeout
                    if timeout is not None:
                        lease = entry.lease
                        assert lease is not None and not lease.cancelled, f"{entry}: lease lost"
                        assert lease.deadline > self.now, (entry, lease, self.now)

    @invariant()
    def time_indexes_count_their_live_timers(self) -> None:
        for queue in self.broker.vhosts["/"].queues.values():
            for index in (queue._timers, queue._due):
                live = sum(not timer.cancelled for _d, _s, timer in index._heap)
                assert len(index) == live, (queue, len(index), live)
        index = self.broker._queue_timers
        live = sum(not timer.cancelled for _d, _s, timer in index._heap)
        assert len(index) == live == len(self.broker._queue_timer), (len(index), live)

    @invariant()
    def every_publish_on_a_confirm_channel_is_confirmed_once(self) -> None:
        for client in self.clients:
            for number, channel in client.session.channels.items():
                if channel.confirm:
                    confirmed = client.confirmed.get(number)
                    assert confirmed is not None, f"channel {number} in confirm mode untracked"
                    expected = set(range(1, channel.publish_seq + 1))
                    assert confirmed == expected, (number, sorted(expected - confirmed))

    def teardown(self) -> None:
        if not hasattr(self, "clients"):
            return
        for client in self.clients:
            if not client.closed:
                client._finish(answer=False)
            self.retired.append(client.session)
        self.clients = []
        check_broker(self.broker, self.retired)
        # the clock runs on: every deadline left is met without a crash
        for _ in range(20):
            deadline = self.broker.next_deadline()
            if deadline is None or deadline > self.now + 3600:  # x-delay: inf is never reached
                break
            self.now = max(self.now, deadline)
            self.broker.tick(self.now)
        assert not self.violations, self.violations


def _waiting_entries(queue: Queue) -> dict[int, QueuedMessage]:
    """The entries held back (scheduled or backing off): each has one live timer in the queue."""
    found: dict[int, QueuedMessage] = {}
    for index in (queue._timers, queue._due):
        for _deadline, _sequence, timer in index._heap:
            if timer.cancelled:
                continue
            _kind, entry = timer.item
            if entry is not None and entry.state == WAITING:
                assert entry.timer is timer, (entry, timer)
                found[id(entry)] = entry
    return found


QueueFeatures.TestCase.settings = settings(
    max_examples=100,
    stateful_step_count=60,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
test_queue_features_under_hostile_use_keep_the_broker_consistent = QueueFeatures.TestCase


# --- regressions found by the state machine --------------------------------------------------


def test_a_backed_off_message_due_after_its_deadline_is_expired_not_delivered():
    host = DetachedHost()
    arguments = FieldTable(
        {
            "x-message-ttl": 1000,
            "x-retry-backoff": FieldTable({"initial": 500}),
            "x-dead-letter-exchange": "dlx",
        }
    )
    queue = Queue("q", "/", arguments=arguments, host=host)
    consumer = FakeConsumer("c", capacity=1)
    queue.add_consumer(consumer)  # type: ignore[arg-type]
    queue.publish(Message("", "q", BasicProperties().encode(), b"x"))
    host.clock.now = 0.1
    queue.requeue([consumer.got.pop()])  # due at 0.6, deadline 1.0
    host.clock.now = 2.0  # the tick comes late: both have passed
    queue.tick(2.0)
    assert consumer.got == []
    assert [reason for reason, _entry in host.dead] == ["expired"]


def test_deleting_an_x_expires_queue_with_consumers_leaves_nothing_scheduled():
    from router.amqp.tables import FieldTable

    broker = make_broker()
    client = FakeClient(broker)
    client.open_channel(1)
    client.declare_queue(1, "q", arguments=FieldTable({"x-expires": 1000}))
    client.consume(1, "q", "c")
    client.now = 2.0
    broker.tick(2.0)  # the idle timer fires while a consumer keeps the queue in use
    client.call(1, spec.QueueDelete(queue="q"))
    assert "q" not in broker.vhosts["/"].queues
    assert not any(queue.deleted for queue in broker._queue_timer)
