"""Hostile input: nothing a client sends may crash the broker or reach another client.

Sans-IO fuzzing of ``Session.receive_data`` (no sockets, no clock). Three properties:

1. After a valid handshake, arbitrary bytes in arbitrary chunkings never make ``receive_data``
   raise (in production an escaping exception becomes a 541 and a dead connection), and what the
   session sends back is always well-formed frames.
2. A random sequence of well-formed (and some malformed) frames from one "fuzzed" session, across
   every client method with type-correct random fields, colliding names, random channels and
   delivery tags, keeps the broker's bookkeeping consistent after every step, and never disturbs a
   second, well-behaved session on the same ``Broker``.
3. Every message the well-behaved session publishes is delivered to it exactly once, in order, or
   is still in its queue.

The crashes and defects these fuzzers found (a publish pipelined after its channel closed, reply
texts over 255 bytes, a non-UTF-8 alternate-exchange, a malformed headers table forwarded to
consumers, frames lost or stuck around a frame error) are fixed and kept as regression tests at
the end of the file. Should a new crash be found before it is fixed, list it in
``_KNOWN_CRASHES`` (by where it is raised) so the fuzzers keep searching past it, and pin it with
a strict-xfail regression test.
"""

from __future__ import annotations

import dataclasses
import functools
import traceback
from dataclasses import dataclass, field
from typing import Any

from hypothesis import HealthCheck, event, given, note, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)
from model_helpers import FakeClient, Received, make_broker

from router.amqp import spec
from router.amqp.connection import CLOSED, CLOSING, OPEN
from router.amqp.constants import (
    FRAME_BODY,
    FRAME_HEADER,
    FRAME_HEARTBEAT,
    FRAME_METHOD,
    REPLY_NAMES,
)
from router.amqp.frames import FrameReader, content_frames, encode_frame, method_frame
from router.amqp.properties import (
    F_HEADERS,
    BasicProperties,
    decode_content_header,
    decode_properties,
    scan,
)
from router.amqp.tables import FieldArray, FieldTable
from router.broker.broker import Broker
from router.broker.channel import Channel, Consumer
from router.broker.queues import Queue

FUZZ_SETTINGS = settings(
    max_examples=300,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

INTERNAL_ERROR = 541

# The well-behaved session's names are outside the fuzz alphabet, and its queue is exclusive, so
# the fuzzed session cannot legitimately touch it.
GOOD_QUEUE = "good-queue"

# --- known crashes ---------------------------------------------------------------------------------

# (exception type, file suffix, function) where each known crash is raised; each one has a
# strict-xfail regression test below.
_KNOWN_CRASHES: dict[tuple[type[BaseException], str, str], str] = {}


def _known_crash(error: BaseException) -> str | None:
    """The label of a known crash, by where it was raised (the innermost frame)."""
    innermost = traceback.extract_tb(error.__traceback__)[-1]
    for (kind, suffix, function), label in _KNOWN_CRASHES.items():
        if (
            type(error) is kind
            and innermost.filename.endswith(suffix)
            and innermost.name == function
        ):
            return label
    return None


def _feed(session: Any, data: bytes) -> str | None:
    """``receive_data``; a known crash is returned as its label, any other exception escapes."""
    try:
        session.receive_data(data, 0.0)
    except Exception as error:
        label = _known_crash(error)
        if label is None:
            raise
        event(f"known crash: {label}")
        note(f"known crash {label}: {error!r}")
        return label
    return None


# --- reading what the broker sends -----------------------------------------------------------------


class OutputChecker:
    """Parses everything a session sends and checks it is well-formed AMQP.

    Every frame has a known type; methods decode; a content method is followed by a class-60
    header whose properties lie inside the frame, then bodies adding up to the announced size; a
    channel.close / connection.close carries a known reply code that is not 541.
    """

    def __init__(self) -> None:
        self.reader = FrameReader()
        self.content: dict[int, list[int]] = {}  # channel -> [stage, remaining]
        self.methods: list[tuple[int, spec.Method]] = []
        # what the fuzzer can aim at: delivery tags per open channel, queues it declared
        self.tags: dict[int, list[int]] = {}
        self.queues: list[str] = []

    def feed(self, data: bytes) -> None:
        if not data:
            return
        self.reader.feed(data)
        for frame_type, channel, payload in self.reader.read_frames():
            pending = self.content.get(channel)
            if frame_type == FRAME_METHOD:
                assert pending is None, f"method frame inside a content on channel {channel}"
                method = spec.decode_method(payload)
                self.methods.append((channel, method))
                self._remember(channel, method)
                if method.HAS_CONTENT:
                    self.content[channel] = [1, 0]
                if isinstance(method, spec.ChannelClose | spec.ConnectionClose):
                    assert method.reply_code in REPLY_NAMES, method
                    assert method.reply_code != INTERNAL_ERROR, method
            elif frame_type == FRAME_HEADER:
                assert pending is not None and pending[0] == 1, f"stray header on {channel}"
                class_id, size, raw = decode_content_header(payload)
                assert class_id == 60
                scan(raw)  # the properties lie inside the frame
                if size == 0:
                    del self.content[channel]
                else:
                    self.content[channel] = [2, size]
            elif frame_type == FRAME_BODY:
                assert pending is not None and pending[0] == 2, f"stray body on {channel}"
                pending[1] -= len(payload)
                assert pending[1] >= 0, "body larger than announced"
                if pending[1] == 0:
                    del self.content[channel]
            else:
                assert frame_type == FRAME_HEARTBEAT and channel == 0, (frame_type, channel)
        assert self.reader.buffered == 0, "the session sent a partial frame"

    def _remember(self, channel: int, method: spec.Method) -> None:
        if isinstance(method, spec.ChannelOpenOk):
            self.tags[channel] = []
        elif isinstance(method, spec.ChannelClose):
            self.tags.pop(channel, None)
        elif isinstance(method, spec.BasicDeliver | spec.BasicGetOk):
            self.tags.setdefault(channel, []).append(method.delivery_tag)
        elif isinstance(method, spec.QueueDeclareOk) and method.queue not in self.queues:
            self.queues.append(method.queue)


def _drain(session: Any, checker: OutputChecker) -> None:
    data = session.data_to_send(0.0)
    session.sent()
    checker.feed(data)


# --- strategies ---------------------------------------------------------------------------------


@functools.cache
def weighted(*choices: tuple[int, Any]) -> st.SearchStrategy[Any]:
    """One of the values with the given relative weights; shrinks towards the first one."""
    return st.sampled_from([value for weight, value in choices for _ in range(weight)])


# Tiny alphabets so names collide; the common, meaningful values weigh most.
# "ü" * 90 is a valid short string (180 bytes) whose error texts run past 255 bytes.
NAMES = weighted((4, "a"), (3, "b"), (1, ""), (1, "ab"), (1, "amq.q"), (1, "ü" * 90))
EXCHANGES = weighted(
    (3, ""),
    (2, "x"),
    (1, "y"),
    (1, "h"),
    (1, "f"),
    (1, "amq.direct"),
    (1, "amq.fanout"),
    (1, "amq.topic"),
    (1, "amq.headers"),
    (1, "nope"),
    (1, "amq.x"),
)
_EXCHANGE_KINDS = {"x": "direct", "y": "topic", "h": "headers", "f": "fanout"}
EXCHANGE_TYPES = weighted((3, "direct"), (3, "fanout"), (2, "topic"), (3, "headers"), (1, "x-nope"))
ROUTING_KEYS = weighted((4, "a"), (3, "b"), (1, ""), (1, "ab"), (1, "a.b"), (1, "a.*"), (1, "#"))
TAGS = weighted((4, ""), (2, "t1"), (1, "t2"), (1, "amq.ctag-t1"))
DELIVERY_TAGS = weighted(*((3, n) for n in range(1, 7)), (2, 0), (1, 2**64 - 1))
SMALL = st.integers(0, 3)
TEXT = st.text(max_size=8).filter(lambda s: len(s.encode("utf-8", "surrogateescape")) <= 255)

_ARG_KEYS = st.sampled_from(
    [
        "x-priority",
        "x-max-priority",
        "x-match",
        "alternate-exchange",
        "x-message-ttl",
        "x-expires",
        "x-max-length",
        "x-dead-letter-exchange",
        "x-single-active-consumer",
        "x-overflow",
        "x-queue-mode",
        "a",
        "b",
    ]
)


@functools.cache
def _typed_values(depth: int = 1) -> st.SearchStrategy[tuple[str, Any]]:
    leaves: list[st.SearchStrategy[tuple[str, Any]]] = [
        st.tuples(st.just("l"), st.integers(-(2**63), 2**63 - 1) | SMALL),
        st.tuples(st.just("I"), st.integers(-(2**31), 2**31 - 1)),
        st.tuples(st.just("b"), st.integers(-128, 127)),
        st.tuples(st.just("t"), st.booleans()),
        st.tuples(
            st.just("S"),
            st.sampled_from(["all", "any", "all-with-x", "a", "lazy", "drop-head", "x"]),
        ),
        st.tuples(st.just("S"), st.binary(max_size=4)),
        st.tuples(st.just("x"), st.binary(max_size=4)),
        st.tuples(st.just("V"), st.none()),
        st.tuples(st.just("d"), st.floats(allow_nan=False)),
    ]
    if depth > 0:
        leaves.append(
            st.tuples(
                st.just("A"), st.lists(_typed_values(depth - 1), max_size=2).map(_field_array)
            )
        )
        leaves.append(st.tuples(st.just("F"), _tables(depth - 1)))
    return st.one_of(leaves)


def _field_array(items: list[tuple[str, Any]]) -> FieldArray:
    return FieldArray([v for _t, v in items], [t for t, _v in items])


def _make_table(items: list[tuple[str, tuple[str, Any]]]) -> FieldTable:
    table = FieldTable()
    for key, (tag, value) in items:
        table.set_typed(key, tag, value)
    return table


@functools.cache
def _tables(depth: int = 1) -> st.SearchStrategy[FieldTable]:
    return st.lists(st.tuples(_ARG_KEYS, _typed_values(depth)), max_size=3).map(_make_table)


@st.composite
def arguments(draw: st.DrawFn) -> FieldTable:
    """Mostly no arguments (so declares succeed and build state), sometimes odd ones."""
    if draw(weighted((3, True), (1, False))):
        return FieldTable()
    return draw(_tables())


_BY_NAME: dict[str, st.SearchStrategy[Any]] = {
    "queue": NAMES,
    "exchange": EXCHANGES,
    "source": EXCHANGES,
    "destination": EXCHANGES,
    "type": EXCHANGE_TYPES,
    "routing_key": ROUTING_KEYS,
    "consumer_tag": TAGS,
    "delivery_tag": DELIVERY_TAGS,
    "prefetch_count": SMALL | st.integers(0, 2**16 - 1),
    "virtual_host": st.sampled_from(["/", "nope"]),
    "reply_code": st.sampled_from([200, 320, 404, 541, 0]),
    "arguments": arguments(),
    "requeue": weighted((4, True), (1, False)),
    "passive": weighted((5, False), (1, True)),
    "durable": weighted((5, False), (1, True)),
    "if_unused": weighted((3, False), (1, True)),
    "if_empty": weighted((3, False), (1, True)),
    "exclusive": weighted((4, False), (1, True)),
    "auto_delete": weighted((4, False), (1, True)),
    "internal": weighted((5, False), (1, True)),
    "nowait": weighted((4, False), (1, True)),
    "prefetch_size": weighted((20, 0), (1, 1)),
}

_BY_KIND: dict[str, st.SearchStrategy[Any]] = {
    "bit": st.booleans(),
    "octet": st.integers(0, 255),
    "short": st.integers(0, 2**16 - 1),
    "long": st.integers(0, 2**32 - 1),
    "longlong": st.integers(0, 2**64 - 1),
    "timestamp": st.integers(0, 2**64 - 1),
    "shortstr": TEXT,
    "longstr": st.binary(max_size=8),
    "table": _tables(),
}

# Client methods (weighted towards the ones that build and settle state) are the likely ones;
# every other method (channel.open, which ``open_frames`` makes, server-only ones, the connection
# class on a non-zero channel) still turns up.
_CLIENT_METHODS = {
    spec.QueueDeclare: 8,
    spec.BasicConsume: 5,
    spec.BasicGet: 4,
    spec.BasicAck: 5,
    spec.BasicNack: 3,
    spec.BasicReject: 3,
    spec.BasicCancel: 3,
    spec.QueueBind: 3,
    spec.ExchangeDeclare: 5,
    spec.BasicQos: 2,
    spec.BasicRecover: 2,
    spec.QueueDelete: 2,
    spec.QueuePurge: 2,
    spec.ChannelClose: 1,
    spec.ChannelCloseOk: 1,
    spec.ChannelFlow: 1,
    spec.ExchangeDelete: 1,
    spec.ExchangeBind: 1,
    spec.ExchangeUnbind: 1,
    spec.QueueUnbind: 1,
    spec.BasicRecoverAsync: 1,
    spec.ConfirmSelect: 1,
    spec.TxSelect: 2,
    spec.TxCommit: 2,
    spec.TxRollback: 1,
}
_OTHER_METHODS = [m for m in spec.METHODS.values() if m not in _CLIENT_METHODS]


def _method_of(cls: type[spec.Method], **overrides: Any) -> st.SearchStrategy[spec.Method]:
    fields = {name: _BY_NAME.get(name, _BY_KIND[kind]) for name, kind in cls.FIELDS}
    fields.update(overrides)
    return st.builds(cls, **fields)


# Channels 1-3 are opened on every fuzzed connection; 0, 4 and 5 are rare (never or not yet open,
# so a method there closes the connection).
CHANNELS = weighted((24, 1), (12, 2), (8, 3), (1, 0), (1, 4), (1, 5))
_CLIENT_STRATEGY = weighted(*((w, _method_of(c)) for c, w in _CLIENT_METHODS.items()))
_OTHER_STRATEGY = st.sampled_from([_method_of(c) for c in _OTHER_METHODS])


@st.composite
def methods(draw: st.DrawFn) -> spec.Method:
    """A client method (mostly) or any other method of the spec, with type-correct fields."""
    if draw(weighted((39, True), (1, False))):
        method = draw(draw(_CLIENT_STRATEGY))
        if isinstance(method, spec.ExchangeDeclare) and draw(weighted((5, True), (1, False))):
            # mostly redeclare an exchange as it was, so it lives on and gets bindings
            kind = _EXCHANGE_KINDS.get(method.exchange, method.type)
            method = dataclasses.replace(method, type=kind, durable=False, auto_delete=False)
        return method
    return draw(draw(_OTHER_STRATEGY))


def _method_frame(channel: int, method: spec.Method) -> bytes:
    try:
        return method_frame(channel, method)
    except (ValueError, OverflowError, UnicodeEncodeError):  # not encodable: send nothing
        return b""


@st.composite
def method_frames(draw: st.DrawFn) -> bytes:
    return _method_frame(draw(CHANNELS), draw(methods()))


@st.composite
def open_frames(draw: st.DrawFn) -> bytes:
    return method_frame(draw(weighted((3, 4), (2, 5), (1, 1))), spec.ChannelOpen())


# A headers table whose length prefix fits the property list but whose content is garbage.
MALFORMED_HEADERS = (F_HEADERS).to_bytes(2, "big") + b"\x00\x00\x00\x02\x01a"

VALID_PROPERTIES = st.builds(
    BasicProperties,
    content_type=st.none() | st.just("text/plain"),
    headers=st.none() | _tables(),
    delivery_mode=st.none() | st.sampled_from([1, 2]),
    priority=st.none() | st.integers(0, 255),
    expiration=st.none() | st.sampled_from(["0", "100", "-1", "x"]),
    message_id=st.none() | st.just("m"),
).map(lambda p: p.encode())
_ODD_PROPERTIES = st.binary(max_size=12) | st.sampled_from(
    [b"", b"\x00", b"\x00\x01", b"\xff\xff\x00", MALFORMED_HEADERS]
)


@st.composite
def properties(draw: st.DrawFn) -> bytes:
    """Property bytes: mostly valid ones from BasicProperties, sometimes garbage."""
    if draw(weighted((12, True), (1, False))):
        return draw(VALID_PROPERTIES)
    return draw(_ODD_PROPERTIES)


PROPERTIES = properties()


@st.composite
def publish_frames(draw: st.DrawFn) -> bytes:
    """basic.publish + header + bodies; sometimes with a wrong size, odd class or split body."""
    channel = draw(CHANNELS)
    method = spec.BasicPublish(
        0,
        draw(EXCHANGES),
        draw(ROUTING_KEYS),
        draw(st.booleans()),
        draw(weighted((39, False), (1, True))),
    )
    body = draw(st.binary(max_size=24))
    size = len(body) + draw(weighted((60, 0), (1, -1), (1, 1), (1, 2**64 - 1 - len(body))))
    size = max(size, 0)
    class_id = draw(weighted((60, 60), (1, 50)))
    header = class_id.to_bytes(2, "big") + b"\x00\x00" + size.to_bytes(8, "big")
    frames = [
        method_frame(channel, method),
        encode_frame(FRAME_HEADER, channel, header + draw(PROPERTIES)),
    ]
    cuts = sorted(draw(st.lists(st.integers(0, len(body)), max_size=3)))
    start = 0
    for cut in [*cuts, len(body)]:
        if cut > start:
            frames.append(encode_frame(FRAME_BODY, channel, body[start:cut]))
            start = cut
    if draw(weighted((40, False), (1, True))):  # content frames out of order / missing
        frames = draw(st.permutations(frames))[: draw(st.integers(1, len(frames)))]
    return b"".join(frames)


RAW_FRAMES = st.one_of(
    st.builds(
        encode_frame, st.sampled_from([1, 2, 3, 8, 0, 9, 206]), CHANNELS, st.binary(max_size=16)
    ),
    st.builds(
        lambda ch, size, props: encode_frame(
            FRAME_HEADER, ch, b"\x00\x3c\x00\x00" + size.to_bytes(8, "big") + props
        ),
        CHANNELS,
        st.integers(0, 4),
        PROPERTIES,
    ),
    st.builds(encode_frame, st.just(FRAME_BODY), CHANNELS, st.binary(max_size=6)),
    st.builds(
        lambda ch, payload: encode_frame(FRAME_METHOD, ch, payload),
        CHANNELS,
        st.sampled_from(
            [b"\x00\x3c\x00\x28", b"\x00\x3c\x00\x50\x00", b"\x00\x3c\x00\x78", b"\x00\x14"]
        ),
    ),
)


@st.composite
def raw_frames(draw: st.DrawFn) -> bytes:
    return draw(RAW_FRAMES)


# (weight, strategy): mostly well-formed client methods on open channels and publishes, so the
# fuzzed session gets deep into the broker before something closes it.
_STEPS = [(24, method_frames()), (10, publish_frames()), (1, open_frames()), (1, raw_frames())]
_STEP_CHOICE = weighted(*((weight, i) for i, (weight, _s) in enumerate(_STEPS)))


@st.composite
def fuzz_step(draw: st.DrawFn) -> bytes:
    """One step of the fuzzed client: a method, a publish with content, or odd frames."""
    return draw(_STEPS[draw(_STEP_CHOICE)][1])


@st.composite
def fuzz_reads(draw: st.DrawFn) -> bytes:
    """What one receive_data gets: usually one step, sometimes several pipelined in one read."""
    if draw(weighted((5, True), (1, False))):
        return draw(fuzz_step())
    return b"".join(draw(st.lists(fuzz_step(), min_size=2, max_size=4)))


FUZZ_READS = fuzz_reads()


# --- broker-wide invariants ---------------------------------------------------------------------


def _records(channel: Channel) -> list[tuple[Any, Queue, Consumer | None]]:
    """Every delivery the channel still owes a settlement for (tx-pending ones included)."""
    pending = [record for _requeue, tagged in channel.tx_acks for _tag, record in tagged]
    return [*channel.unacked.values(), *pending]


def check_broker(broker: Broker, sessions: list[Any]) -> None:
    vhost = broker.vhosts["/"]
    owed: dict[int, int] = {}
    for session in sessions:
        for number, channel in session.channels.items():
            assert channel.number == number and not channel.closed
            records = _records(channel)
            consumers: dict[int, Consumer] = {id(c): c for c in channel.consumers.values()}
            per_consumer: dict[int, int] = {}
            for _entry, queue, consumer in records:
                owed[id(queue)] = owed.get(id(queue), 0) + 1
                if consumer is not None:
                    consumers[id(consumer)] = consumer
                    per_consumer[id(consumer)] = per_consumer.get(id(consumer), 0) + 1
            with_consumer = sum(per_consumer.values())
            assert channel.consumer_unacked == with_consumer, (channel.number, with_consumer)
            assert channel.consumer_unacked == sum(c.unacked for c in consumers.values())
            for key, consumer in consumers.items():
                assert consumer.unacked == per_consumer.get(key, 0), consumer
            for tag, consumer in channel.consumers.items():
                assert consumer.tag == tag and consumer.channel is channel
                assert vhost.queues.get(consumer.queue.name) is consumer.queue, consumer
                assert consumer in consumer.queue.consumers(), consumer
        if not session.opened:
            assert not session.channels, session
    for name, queue in vhost.queues.items():
        assert queue.name == name and not queue.deleted
        assert queue.unacked >= 0, queue
        assert queue.message_count >= 0, queue
        assert queue.ready_bytes >= 0, queue
        ready = queue.ready_messages()
        assert queue.ready_bytes == sum(len(e.message.body) for e in ready), queue
        assert len({e.seq for e in ready}) == len(ready), "a message is ready twice"
        consumers = queue.consumers()
        assert queue.consumer_count == len(consumers), queue
        for consumer in consumers:
            channel = consumer.channel
            assert not channel.closed, f"{consumer} of a closed channel is still attached"
            assert channel.session.channels.get(channel.number) is channel, consumer
            assert channel.consumers.get(consumer.tag) is consumer, consumer
        assert queue.unacked == owed.get(id(queue), 0), (queue, owed.get(id(queue), 0))
        if queue.exclusive_owner is not None:
            assert queue.exclusive_owner.opened, f"{queue} outlived its exclusive owner"


# --- the well-behaved client ---------------------------------------------------------------------


@dataclass
class GoodClient:
    """Publishes numbered messages to its exclusive queue and takes them back by get and consume."""

    client: FakeClient
    published: list[bytes] = field(default_factory=list)
    received: list[bytes] = field(default_factory=list)
    consuming: bool = False
    to_ack: list[int] = field(default_factory=list)

    @classmethod
    def connect(cls, broker: Broker) -> GoodClient:
        client = FakeClient(broker)
        client.open_channel(1)
        client.open_channel(2)
        declare = client.declare_queue(1, GOOD_QUEUE, exclusive=True)
        assert isinstance(declare, spec.QueueDeclareOk)
        assert isinstance(client.call(2, spec.BasicQos(0, 2, False))[-1].method, spec.BasicQosOk)
        return cls(client)

    def _absorb(self, replies: list[Received]) -> None:
        for r in replies:
            method = r.method
            assert not isinstance(method, spec.ChannelClose | spec.ConnectionClose), method
            if isinstance(method, spec.BasicDeliver | spec.BasicGetOk):
                assert r.properties is not None
                assert r.properties.message_id == r.body.decode(), r
                assert method.redelivered is False, r
                self.received.append(r.body)
                if isinstance(method, spec.BasicDeliver):
                    assert r.channel == 2
                    self.to_ack.append(method.delivery_tag)

    def publish(self) -> None:
        body = f"good-{len(self.published)}".encode()
        self.published.append(body)
        props = BasicProperties(message_id=body.decode(), delivery_mode=2)
        self._absorb(self.client.publish(1, "", GOOD_QUEUE, body, properties=props))

    def get(self, no_ack: bool) -> None:
        replies = self.client.call(1, spec.BasicGet(0, GOOD_QUEUE, no_ack))
        self._absorb(replies)
        oks = [r.method for r in replies if isinstance(r.method, spec.BasicGetOk)]
        if not no_ack and oks:
            self._absorb(self.client.ack(1, oks[-1].delivery_tag))

    def consume(self) -> None:
        self._absorb(self.client.consume(2, GOOD_QUEUE, "good-consumer"))
        self.consuming = True

    def cancel(self) -> None:
        self._absorb(self.client.call(2, spec.BasicCancel("good-consumer")))
        self.consuming = False

    def ack_deliveries(self) -> None:
        if self.to_ack:
            tag = self.to_ack[-1]
            self.to_ack.clear()
            self._absorb(self.client.ack(2, tag, multiple=True))

    def check(self) -> None:
        self._absorb(self.client.take())
        assert self.client.session.conn.state == OPEN
        assert not self.client.session.ended
        assert self.client.channel_close(1) is None and self.client.channel_close(2) is None
        assert self.client.connection_close() is None
        queue = self.client.broker.vhosts["/"].queues.get(GOOD_QUEUE)
        assert queue is not None and queue.exclusive_owner is self.client.session
        ready = [e.message.body for e in queue.ready_messages()]
        # delivered once, in order, or still waiting: never lost, never duplicated
        assert self.received + ready == self.published, (self.received, ready, self.published)
        assert queue.unacked == len(self.to_ack)

    def act(self, action: str) -> None:
        if action == "publish":
            self.publish()
        elif action in ("get", "get-no-ack"):
            self.get(no_ack=action == "get-no-ack")
        elif action == "consume":
            if not self.consuming:
                self.consume()
        elif action == "cancel":
            if self.consuming:
                self.cancel()
        else:
            self.ack_deliveries()

    def drain_all(self) -> None:
        """Take back everything still in the queue (after the run)."""
        if self.consuming:
            self.cancel()
        self.ack_deliveries()
        while True:
            count = len(self.received)
            self.get(no_ack=True)
            if len(self.received) == count:
                break


def _fuzz_client(broker: Broker) -> FakeClient:
    """A handshaken client with channels 1-3 open (the fuzzer may open 4 and 5)."""
    client = FakeClient(broker)
    for channel in (1, 2, 3):
        client.open_channel(channel)
    return client


def _reopen_channels(session: Any, checker: OutputChecker) -> str | None:
    """As a sane client would: answer server channel.close with close-ok, reopen channels 1-3."""
    conn = session.conn
    for channel in (1, 2, 3):
        if conn.state != OPEN:
            return None
        state = conn._channels.get(channel)
        if state is not None and state.closing:
            label = _feed(session, method_frame(channel, spec.ChannelCloseOk()))
            if label is not None:
                return label
        if conn.state == OPEN and conn._channels.get(channel) is None:
            label = _feed(session, method_frame(channel, spec.ChannelOpen()))
            if label is not None:
                return label
        _drain(session, checker)
    return None


GOOD_STEP = weighted(
    (4, "publish"), (2, "get"), (1, "get-no-ack"), (1, "consume"), (1, "cancel"), (2, "ack")
)


# --- 1. arbitrary bytes ---------------------------------------------------------------------------


@st.composite
def chunked(draw: st.DrawFn, data: st.SearchStrategy[bytes]) -> list[bytes]:
    blob = draw(data)
    cuts = sorted(set(draw(st.lists(st.integers(0, len(blob)), max_size=6))))
    pieces, start = [], 0
    for cut in [*cuts, len(blob)]:
        pieces.append(blob[start:cut])
        start = cut
    return [p for p in pieces if p]  # b"" would mean EOF


HOSTILE_BYTES = st.one_of(
    st.binary(max_size=200),
    st.lists(RAW_FRAMES, max_size=6).map(b"".join),
    st.lists(FUZZ_READS, max_size=6).map(b"".join),
    st.tuples(st.lists(FUZZ_READS, max_size=3), st.binary(max_size=24)).map(
        lambda pair: b"".join(pair[0]) + pair[1]
    ),
)


@FUZZ_SETTINGS
@given(chunks=chunked(HOSTILE_BYTES), open_channels=st.booleans())
def test_arbitrary_bytes_after_the_handshake_never_make_receive_data_raise(
    chunks: list[bytes], open_channels: bool
) -> None:
    broker = make_broker()
    session = (_fuzz_client(broker) if open_channels else FakeClient(broker)).session
    checker = OutputChecker()
    for chunk in chunks:
        if _feed(session, chunk) is not None:
            return  # a known crash (pinned below); the session is undefined from here on
        _drain(session, checker)
    check_broker(broker, [session])
    if _feed(session, b"") is not None:  # EOF
        return
    _drain(session, checker)
    assert session.ended
    check_broker(broker, [session])
    assert not broker.vhosts["/"].queues or all(
        q.exclusive_owner is None for q in broker.vhosts["/"].queues.values()
    )


# --- 2. and 3. two sessions on one broker ---------------------------------------------------------


class TwoSessionsOnOneBroker(RuleBasedStateMachine):
    """A fuzzed session and a well-behaved one share a Broker."""

    @initialize()
    def connect(self) -> None:
        self.broker = make_broker()
        self.good = GoodClient.connect(self.broker)
        self.retired: list[Any] = []
        self._new_fuzz()

    def _new_fuzz(self) -> None:
        self.fuzz = _fuzz_client(self.broker)
        self.fuzz_out = OutputChecker()

    def _retire_fuzz(self) -> None:
        session = self.fuzz.session
        label = _feed(session, b"")
        assert label is None, f"known crash {label} at EOF"
        assert session.ended and not session.opened
        _drain(session, self.fuzz_out)
        self.retired.append(session)
        self._new_fuzz()

    def _sessions(self) -> list[Any]:
        return [self.good.client.session, self.fuzz.session, *self.retired]

    # --- the fuzzed session

    @rule(data=FUZZ_READS, tidy=weighted((5, True), (1, False)))
    def fuzz_sends(self, data: bytes, tidy: bool) -> None:
        """One read from the fuzzed client; then, usually, it tidies up as a sane client would:
        answers a connection.close (and reconnects) or a channel.close (and reopens)."""
        session = self.fuzz.session
        if _feed(session, data) is not None:
            self._retire_fuzz()
            return
        _drain(session, self.fuzz_out)
        if session.conn.state == CLOSED:
            self.retired.append(session)
            self._new_fuzz()
        elif tidy and session.conn.state == CLOSING:
            self.fuzz_answers_a_connection_close(polite=True)
        elif tidy and _reopen_channels(session, self.fuzz_out) is not None:
            self._retire_fuzz()

    # Aimed steps: random methods rarely hit a queue that exists or a tag that was delivered, so
    # these draw from what the fuzzed session has seen, to reach consumers, unacked deliveries,
    # requeues and transactions.

    @rule(data=st.data())
    def fuzz_consumes_from_a_queue_and_publishes_to_it(self, data: st.DataObject) -> None:
        """declare + qos + consume + publishes in one read: deliveries to settle, fast."""
        channel = data.draw(CHANNELS)
        name = data.draw(NAMES)
        frames = [
            method_frame(channel, spec.QueueDeclare(queue=name)),
            method_frame(channel, spec.BasicQos(0, data.draw(SMALL), data.draw(st.booleans()))),
            method_frame(
                channel,
                spec.BasicConsume(
                    queue=name,
                    no_ack=data.draw(weighted((4, False), (1, True))),
                    exclusive=data.draw(weighted((4, False), (1, True))),
                    arguments=data.draw(arguments()),
                ),
            ),
        ]
        for _ in range(data.draw(st.integers(0, 4))):
            body = data.draw(st.binary(max_size=8))
            publish = spec.BasicPublish(0, "", data.draw(weighted((5, name), (1, "b"))))
            frames += [
                method_frame(channel, publish),
                *content_frames(channel, 60, b"\x00\x00", body, 4096),
            ]
        self.fuzz_sends(b"".join(frames), tidy=True)

    @precondition(lambda self: any(self.fuzz_out.tags.values()))
    @rule(data=st.data())
    def fuzz_settles_a_delivery_it_got(self, data: st.DataObject) -> None:
        tags = self.fuzz_out.tags
        channel = data.draw(st.sampled_from(sorted(ch for ch, seen in tags.items() if seen)))
        tag = data.draw(st.sampled_from(tags[channel])) + data.draw(weighted((10, 0), (1, 1)))
        multiple = data.draw(weighted((3, False), (1, True)))
        requeue = data.draw(weighted((3, True), (1, False)))
        method = data.draw(
            weighted(
                (4, spec.BasicAck(tag, multiple)),
                (2, spec.BasicNack(tag, multiple, requeue)),
                (2, spec.BasicReject(tag, requeue)),
            )
        )
        self.fuzz_sends(method_frame(channel, method), tidy=True)

    @precondition(lambda self: bool(self.fuzz_out.queues))
    @rule(data=st.data())
    def fuzz_uses_a_queue_it_declared(self, data: st.DataObject) -> None:
        name = data.draw(st.sampled_from(self.fuzz_out.queues))
        cls = data.draw(
            weighted(
                (5, spec.BasicConsume),
                (3, spec.BasicGet),
                (2, spec.QueueBind),
                (1, spec.QueueUnbind),
                (1, spec.QueuePurge),
                (1, spec.QueueDelete),
            )
        )
        method = data.draw(_method_of(cls, queue=st.just(name)))
        self.fuzz_sends(method_frame(data.draw(CHANNELS), method), tidy=True)

    @precondition(lambda self: bool(self.fuzz_out.queues))
    @rule(data=st.data())
    def fuzz_publishes_to_a_queue_it_declared(self, data: st.DataObject) -> None:
        name = data.draw(st.sampled_from(self.fuzz_out.queues))
        body = data.draw(st.binary(max_size=16))
        raw = data.draw(PROPERTIES)
        channel = data.draw(CHANNELS)
        frames = [
            method_frame(channel, spec.BasicPublish(0, "", name, data.draw(st.booleans()))),
            *content_frames(channel, 60, raw, body, 4096),
        ]
        self.fuzz_sends(b"".join(frames), tidy=True)

    @rule(data=st.lists(FUZZ_READS, min_size=2, max_size=3).map(b"".join))
    def fuzz_pipelines_several_reads_at_once(self, data: bytes) -> None:
        self.fuzz_sends(data, tidy=True)

    @precondition(lambda self: self.fuzz.session.conn.state == CLOSING)
    @rule(polite=st.booleans())
    def fuzz_answers_a_connection_close(self, polite: bool) -> None:
        session = self.fuzz.session
        if polite:
            if _feed(session, method_frame(0, spec.ConnectionCloseOk())) is not None:
                self._retire_fuzz()
                return
            _drain(session, self.fuzz_out)
            if session.conn.state == CLOSED:
                assert session.ended
                self.retired.append(session)
                self._new_fuzz()
                return
        self._retire_fuzz()

    # --- the good session

    @rule(action=GOOD_STEP)
    def good_session_acts(self, action: str) -> None:
        self.good.act(action)

    # --- invariants

    @invariant()
    def broker_bookkeeping_is_consistent(self) -> None:
        check_broker(self.broker, self._sessions())

    @invariant()
    def the_good_session_is_untouched_and_its_messages_conserved(self) -> None:
        self.good.check()

    def teardown(self) -> None:
        if not hasattr(self, "good"):
            return
        self._retire_fuzz()
        check_broker(self.broker, self._sessions())
        self.good.drain_all()
        self.good.check()
        assert self.good.received == self.good.published


TwoSessionsOnOneBroker.TestCase.settings = settings(
    FUZZ_SETTINGS, max_examples=150, stateful_step_count=50
)
test_a_fuzzed_session_never_breaks_the_broker_or_another_session = TwoSessionsOnOneBroker.TestCase


@FUZZ_SETTINGS
@given(steps=st.lists(GOOD_STEP | FUZZ_READS, max_size=40))
def test_every_message_of_the_good_session_is_delivered_once_or_still_queued(
    steps: list[Any],
) -> None:
    broker = make_broker()
    good = GoodClient.connect(broker)
    fuzz = _fuzz_client(broker)
    out = OutputChecker()
    for step in steps:
        if isinstance(step, bytes):
            crashed = _feed(fuzz.session, step) is not None
            _drain(fuzz.session, out)
            crashed = crashed or _reopen_channels(fuzz.session, out) is not None
            if crashed or fuzz.session.conn.state != OPEN:
                _feed(fuzz.session, b"")
                fuzz, out = _fuzz_client(broker), OutputChecker()
        else:
            good.act(step)
        good.check()
    good.drain_all()
    good.check()
    assert good.received == good.published


# --- regressions: crashes and leaks found by the fuzzers -------------------------------------------


def _open_client(broker: Broker | None = None) -> FakeClient:
    client = FakeClient(broker or make_broker())
    client.open_channel(1)
    return client


def test_a_publish_pipelined_after_a_channel_error_is_dropped_without_a_crash() -> None:
    client = _open_client()
    client.send(
        FakeClient.publish_bytes(1, "nope", "k", b"x"),
        FakeClient.publish_bytes(1, "", "k", b"y"),
    )
    assert client.channel_close(1).reply_code == 404
    assert client.connection_close() is None


def test_a_publish_pipelined_after_channel_close_is_dropped_without_a_crash() -> None:
    client = _open_client()
    client.declare_queue(1, "q")
    client.send(method_frame(1, spec.ChannelClose()), FakeClient.publish_bytes(1, "", "q", b"y"))
    assert client.methods(1, spec.ChannelCloseOk)
    assert client.connection_close() is None


def test_a_channel_close_naming_a_multibyte_queue_fits_its_reply_text_in_255_bytes() -> None:
    client = _open_client()
    client.call(1, spec.QueueDeclare(queue="é" * 127, passive=True))
    close = client.channel_close(1)
    assert close is not None and close.reply_code == 404
    assert len(close.reply_text.encode("utf-8")) <= 255


def test_a_connection_close_naming_a_multibyte_exchange_type_fits_in_255_bytes() -> None:
    client = _open_client()
    client.call(1, spec.ExchangeDeclare(exchange="x", type="é" * 127))
    close = client.connection_close()
    assert close is not None and close.reply_code == 503
    assert len(close.reply_text.encode("utf-8")) <= 255


def test_an_alternate_exchange_argument_that_is_not_utf8_does_not_crash() -> None:
    client = _open_client()
    arguments = FieldTable()
    arguments.set_typed("alternate-exchange", "S", b"\xff")
    replies = client.call(1, spec.ExchangeDeclare(exchange="x", type="direct", arguments=arguments))
    assert replies, "no answer"
    assert client.connection_close() is None


def test_a_message_with_a_malformed_headers_table_never_reaches_another_client() -> None:
    broker = make_broker()
    consumer = _open_client(broker)
    consumer.declare_queue(1, "shared")
    publisher = _open_client(broker)
    frames = [
        method_frame(1, spec.BasicPublish(0, "", "shared")),
        encode_frame(
            FRAME_HEADER, 1, b"\x00\x3c\x00\x00" + (1).to_bytes(8, "big") + MALFORMED_HEADERS
        ),
        encode_frame(FRAME_BODY, 1, b"x"),
    ]
    publisher.session.receive_data(b"".join(frames), 0.0)
    consumer.session.receive_data(method_frame(1, spec.BasicGet(0, "shared", True)), 0.0)
    reader = FrameReader()
    reader.feed(consumer.session.data_to_send(0.0))
    for frame_type, _channel, payload in reader.read_frames():
        if frame_type == FRAME_HEADER:
            decode_properties(decode_content_header(payload)[2])  # what any client does


def test_frames_before_a_frame_error_in_the_same_read_are_still_processed() -> None:
    client = _open_client()
    client.declare_queue(1, "q")
    bad_end = encode_frame(FRAME_METHOD, 0, b"\x00\x0a")[:-1] + b"\x00"
    client.send(FakeClient.publish_bytes(1, "", "q", b"x"), bad_end)
    assert client.connection_close().reply_code == 501
    assert client.broker.vhosts["/"].queues["q"].message_count == 1, "the publish was dropped"


def test_the_close_ok_after_a_frame_error_ends_the_connection() -> None:
    client = _open_client()
    client.send(encode_frame(FRAME_METHOD, 0, b"\x00\x0a")[:-1] + b"\x00")  # bad frame end
    assert client.connection_close().reply_code == 501
    client.send(method_frame(0, spec.ConnectionCloseOk()))
    assert client.session.conn.state == CLOSED
