"""Every AMQP 0-9-1 method of the connection, channel, exchange, queue, basic, confirm and tx classes.

Each method is a frozen slotted dataclass; its wire layout is declared once, as a field list
(``"ticket:short queue:shortstr passive:bit ..."``), and ``encode`` / ``decode_method`` are driven by
that list. Consecutive bits share an octet (AMQP 0-9-1 §4.2.5.2). Short strings are ``str``, long
strings ``bytes``, tables ``FieldTable``. RabbitMQ's extensions are included: exchange.bind/unbind,
basic.nack, confirm, connection.blocked/unblocked/update-secret.

The hot methods (publish, deliver, ack, ...) also have hand-tuned codecs in ``fastpath``.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

from router.amqp.constants import COMMAND_INVALID, FRAME_ERROR, NOT_IMPLEMENTED, SYNTAX_ERROR
from router.amqp.errors import ConnectionError, FrameError
from router.amqp.tables import FieldTable, decode_table, encode_table

_U8 = struct.Struct(">B")
_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")
_U64 = struct.Struct(">Q")
_IDS = struct.Struct(">HH")

FieldSpec = tuple[tuple[str, str], ...]


class Method:
    """Base of all methods. Subclasses are frozen slotted dataclasses."""

    __slots__ = ()
    CLASS_ID: ClassVar[int]
    METHOD_ID: ClassVar[int]
    NAME: ClassVar[str]
    FIELDS: ClassVar[FieldSpec]
    HAS_CONTENT: ClassVar[bool] = False
    SYNCHRONOUS: ClassVar[bool] = False

    def encode(self) -> bytes:
        """The method frame payload: class id, method id, arguments."""
        return encode_method(self)


M = TypeVar("M", bound=type[Method])

METHODS: dict[tuple[int, int], type[Method]] = {}
METHODS_BY_NAME: dict[str, type[Method]] = {}


def amqp_method(
    class_id: int,
    method_id: int,
    name: str,
    fields: str = "",
    *,
    content: bool = False,
    sync: bool = False,
) -> Callable[[M], M]:
    """Register a method class with its ids and wire layout."""

    def register(cls: M) -> M:
        spec = tuple(tuple(item.split(":")) for item in fields.split())
        cls.CLASS_ID = class_id
        cls.METHOD_ID = method_id
        cls.NAME = name
        cls.FIELDS = spec  # type: ignore[assignment]
        cls.HAS_CONTENT = content
        cls.SYNCHRONOUS = sync
        names = [f for f in cls.__dataclass_fields__]  # type: ignore[attr-defined]
        assert names == [n for n, _ in spec], (name, names, spec)
        METHODS[(class_id, method_id)] = cls
        METHODS_BY_NAME[name] = cls
        return cls

    return register


def _table() -> FieldTable:
    return FieldTable()


# --- connection (10) ---------------------------------------------------------------------------


@amqp_method(
    10,
    10,
    "connection.start",
    "version_major:octet version_minor:octet server_properties:table mechanisms:longstr locales:longstr",
    sync=True,
)
@dataclass(frozen=True, slots=True)
class ConnectionStart(Method):
    version_major: int = 0
    version_minor: int = 9
    server_properties: FieldTable = field(default_factory=_table)
    mechanisms: bytes = b"PLAIN AMQPLAIN"
    locales: bytes = b"en_US"


@amqp_method(
    10,
    11,
    "connection.start-ok",
    "client_properties:table mechanism:shortstr response:longstr locale:shortstr",
)
@dataclass(frozen=True, slots=True)
class ConnectionStartOk(Method):
    client_properties: FieldTable = field(default_factory=_table)
    mechanism: str = "PLAIN"
    response: bytes = b""
    locale: str = "en_US"


@amqp_method(10, 20, "connection.secure", "challenge:longstr", sync=True)
@dataclass(frozen=True, slots=True)
class ConnectionSecure(Method):
    challenge: bytes = b""


@amqp_method(10, 21, "connection.secure-ok", "response:longstr")
@dataclass(frozen=True, slots=True)
class ConnectionSecureOk(Method):
    response: bytes = b""


@amqp_method(
    10, 30, "connection.tune", "channel_max:short frame_max:long heartbeat:short", sync=True
)
@dataclass(frozen=True, slots=True)
class ConnectionTune(Method):
    channel_max: int = 0
    frame_max: int = 0
    heartbeat: int = 0


@amqp_method(10, 31, "connection.tune-ok", "channel_max:short frame_max:long heartbeat:short")
@dataclass(frozen=True, slots=True)
class ConnectionTuneOk(Method):
    channel_max: int = 0
    frame_max: int = 0
    heartbeat: int = 0


@amqp_method(
    10, 40, "connection.open", "virtual_host:shortstr capabilities:shortstr insist:bit", sync=True
)
@dataclass(frozen=True, slots=True)
class ConnectionOpen(Method):
    virtual_host: str = "/"
    capabilities: str = ""
    insist: bool = False


@amqp_method(10, 41, "connection.open-ok", "known_hosts:shortstr")
@dataclass(frozen=True, slots=True)
class ConnectionOpenOk(Method):
    known_hosts: str = ""


@amqp_method(
    10,
    50,
    "connection.close",
    "reply_code:short reply_text:shortstr class_id:short method_id:short",
    sync=True,
)
@dataclass(frozen=True, slots=True)
class ConnectionClose(Method):
    reply_code: int = 200
    reply_text: str = ""
    class_id: int = 0
    method_id: int = 0


@amqp_method(10, 51, "connection.close-ok")
@dataclass(frozen=True, slots=True)
class ConnectionCloseOk(Method):
    pass


@amqp_method(10, 60, "connection.blocked", "reason:shortstr")
@dataclass(frozen=True, slots=True)
class ConnectionBlocked(Method):
    reason: str = ""


@amqp_method(10, 61, "connection.unblocked")
@dataclass(frozen=True, slots=True)
class ConnectionUnblocked(Method):
    pass


@amqp_method(10, 70, "connection.update-secret", "new_secret:longstr reason:shortstr", sync=True)
@dataclass(frozen=True, slots=True)
class ConnectionUpdateSecret(Method):
    new_secret: bytes = b""
    reason: str = ""


@amqp_method(10, 71, "connection.update-secret-ok")
@dataclass(frozen=True, slots=True)
class ConnectionUpdateSecretOk(Method):
    pass


# --- channel (20) ------------------------------------------------------------------------------


@amqp_method(20, 10, "channel.open", "out_of_band:shortstr", sync=True)
@dataclass(frozen=True, slots=True)
class ChannelOpen(Method):
    out_of_band: str = ""


@amqp_method(20, 11, "channel.open-ok", "channel_id:longstr")
@dataclass(frozen=True, slots=True)
class ChannelOpenOk(Method):
    channel_id: bytes = b""


@amqp_method(20, 20, "channel.flow", "active:bit", sync=True)
@dataclass(frozen=True, slots=True)
class ChannelFlow(Method):
    active: bool = True


@amqp_method(20, 21, "channel.flow-ok", "active:bit")
@dataclass(frozen=True, slots=True)
class ChannelFlowOk(Method):
    active: bool = True


@amqp_method(
    20,
    40,
    "channel.close",
    "reply_code:short reply_text:shortstr class_id:short method_id:short",
    sync=True,
)
@dataclass(frozen=True, slots=True)
class ChannelClose(Method):
    reply_code: int = 200
    reply_text: str = ""
    class_id: int = 0
    method_id: int = 0


@amqp_method(20, 41, "channel.close-ok")
@dataclass(frozen=True, slots=True)
class ChannelCloseOk(Method):
    pass


# --- exchange (40) -----------------------------------------------------------------------------


@amqp_method(
    40,
    10,
    "exchange.declare",
    "ticket:short exchange:shortstr type:shortstr passive:bit durable:bit auto_delete:bit "
    "internal:bit nowait:bit arguments:table",
    sync=True,
)
@dataclass(frozen=True, slots=True)
class ExchangeDeclare(Method):
    ticket: int = 0
    exchange: str = ""
    type: str = "direct"
    passive: bool = False
    durable: bool = False
    auto_delete: bool = False
    internal: bool = False
    nowait: bool = False
    arguments: FieldTable = field(default_factory=_table)


@amqp_method(40, 11, "exchange.declare-ok")
@dataclass(frozen=True, slots=True)
class ExchangeDeclareOk(Method):
    pass


@amqp_method(
    40, 20, "exchange.delete", "ticket:short exchange:shortstr if_unused:bit nowait:bit", sync=True
)
@dataclass(frozen=True, slots=True)
class ExchangeDelete(Method):
    ticket: int = 0
    exchange: str = ""
    if_unused: bool = False
    nowait: bool = False


@amqp_method(40, 21, "exchange.delete-ok")
@dataclass(frozen=True, slots=True)
class ExchangeDeleteOk(Method):
    pass


@amqp_method(
    40,
    30,
    "exchange.bind",
    "ticket:short destination:shortstr source:shortstr routing_key:shortstr nowait:bit "
    "arguments:table",
    sync=True,
)
@dataclass(frozen=True, slots=True)
class ExchangeBind(Method):
    ticket: int = 0
    destination: str = ""
    source: str = ""
    routing_key: str = ""
    nowait: bool = False
    arguments: FieldTable = field(default_factory=_table)


@amqp_method(40, 31, "exchange.bind-ok")
@dataclass(frozen=True, slots=True)
class ExchangeBindOk(Method):
    pass


@amqp_method(
    40,
    40,
    "exchange.unbind",
    "ticket:short destination:shortstr source:shortstr routing_key:shortstr nowait:bit "
    "arguments:table",
    sync=True,
)
@dataclass(frozen=True, slots=True)
class ExchangeUnbind(Method):
    ticket: int = 0
    destination: str = ""
    source: str = ""
    routing_key: str = ""
    nowait: bool = False
    arguments: FieldTable = field(default_factory=_table)


@amqp_method(40, 51, "exchange.unbind-ok")
@dataclass(frozen=True, slots=True)
class ExchangeUnbindOk(Method):
    pass


# --- queue (50) --------------------------------------------------------------------------------


@amqp_method(
    50,
    10,
    "queue.declare",
    "ticket:short queue:shortstr passive:bit durable:bit exclusive:bit auto_delete:bit "
    "nowait:bit arguments:table",
    sync=True,
)
@dataclass(frozen=True, slots=True)
class QueueDeclare(Method):
    ticket: int = 0
    queue: str = ""
    passive: bool = False
    durable: bool = False
    exclusive: bool = False
    auto_delete: bool = False
    nowait: bool = False
    arguments: FieldTable = field(default_factory=_table)


@amqp_method(50, 11, "queue.declare-ok", "queue:shortstr message_count:long consumer_count:long")
@dataclass(frozen=True, slots=True)
class QueueDeclareOk(Method):
    queue: str = ""
    message_count: int = 0
    consumer_count: int = 0


@amqp_method(
    50,
    20,
    "queue.bind",
    "ticket:short queue:shortstr exchange:shortstr routing_key:shortstr nowait:bit arguments:table",
    sync=True,
)
@dataclass(frozen=True, slots=True)
class QueueBind(Method):
    ticket: int = 0
    queue: str = ""
    exchange: str = ""
    routing_key: str = ""
    nowait: bool = False
    arguments: FieldTable = field(default_factory=_table)


@amqp_method(50, 21, "queue.bind-ok")
@dataclass(frozen=True, slots=True)
class QueueBindOk(Method):
    pass


@amqp_method(50, 30, "queue.purge", "ticket:short queue:shortstr nowait:bit", sync=True)
@dataclass(frozen=True, slots=True)
class QueuePurge(Method):
    ticket: int = 0
    queue: str = ""
    nowait: bool = False


@amqp_method(50, 31, "queue.purge-ok", "message_count:long")
@dataclass(frozen=True, slots=True)
class QueuePurgeOk(Method):
    message_count: int = 0


@amqp_method(
    50,
    40,
    "queue.delete",
    "ticket:short queue:shortstr if_unused:bit if_empty:bit nowait:bit",
    sync=True,
)
@dataclass(frozen=True, slots=True)
class QueueDelete(Method):
    ticket: int = 0
    queue: str = ""
    if_unused: bool = False
    if_empty: bool = False
    nowait: bool = False


@amqp_method(50, 41, "queue.delete-ok", "message_count:long")
@dataclass(frozen=True, slots=True)
class QueueDeleteOk(Method):
    message_count: int = 0


@amqp_method(
    50,
    50,
    "queue.unbind",
    "ticket:short queue:shortstr exchange:shortstr routing_key:shortstr arguments:table",
    sync=True,
)
@dataclass(frozen=True, slots=True)
class QueueUnbind(Method):
    ticket: int = 0
    queue: str = ""
    exchange: str = ""
    routing_key: str = ""
    arguments: FieldTable = field(default_factory=_table)


@amqp_method(50, 51, "queue.unbind-ok")
@dataclass(frozen=True, slots=True)
class QueueUnbindOk(Method):
    pass


# --- basic (60) --------------------------------------------------------------------------------


@amqp_method(60, 10, "basic.qos", "prefetch_size:long prefetch_count:short global_:bit", sync=True)
@dataclass(frozen=True, slots=True)
class BasicQos(Method):
    prefetch_size: int = 0
    prefetch_count: int = 0
    global_: bool = False


@amqp_method(60, 11, "basic.qos-ok")
@dataclass(frozen=True, slots=True)
class BasicQosOk(Method):
    pass


@amqp_method(
    60,
    20,
    "basic.consume",
    "ticket:short queue:shortstr consumer_tag:shortstr no_local:bit no_ack:bit "
    "exclusive:bit nowait:bit arguments:table",
    sync=True,
)
@dataclass(frozen=True, slots=True)
class BasicConsume(Method):
    ticket: int = 0
    queue: str = ""
    consumer_tag: str = ""
    no_local: bool = False
    no_ack: bool = False
    exclusive: bool = False
    nowait: bool = False
    arguments: FieldTable = field(default_factory=_table)


@amqp_method(60, 21, "basic.consume-ok", "consumer_tag:shortstr")
@dataclass(frozen=True, slots=True)
class BasicConsumeOk(Method):
    consumer_tag: str = ""


@amqp_method(60, 30, "basic.cancel", "consumer_tag:shortstr nowait:bit", sync=True)
@dataclass(frozen=True, slots=True)
class BasicCancel(Method):
    consumer_tag: str = ""
    nowait: bool = False


@amqp_method(60, 31, "basic.cancel-ok", "consumer_tag:shortstr")
@dataclass(frozen=True, slots=True)
class BasicCancelOk(Method):
    consumer_tag: str = ""


@amqp_method(
    60,
    40,
    "basic.publish",
    "ticket:short exchange:shortstr routing_key:shortstr mandatory:bit immediate:bit",
    content=True,
)
@dataclass(frozen=True, slots=True)
class BasicPublish(Method):
    ticket: int = 0
    exchange: str = ""
    routing_key: str = ""
    mandatory: bool = False
    immediate: bool = False


@amqp_method(
    60,
    50,
    "basic.return",
    "reply_code:short reply_text:shortstr exchange:shortstr routing_key:shortstr",
    content=True,
)
@dataclass(frozen=True, slots=True)
class BasicReturn(Method):
    reply_code: int = 0
    reply_text: str = ""
    exchange: str = ""
    routing_key: str = ""


@amqp_method(
    60,
    60,
    "basic.deliver",
    "consumer_tag:shortstr delivery_tag:longlong redelivered:bit exchange:shortstr "
    "routing_key:shortstr",
    content=True,
)
@dataclass(frozen=True, slots=True)
class BasicDeliver(Method):
    consumer_tag: str = ""
    delivery_tag: int = 0
    redelivered: bool = False
    exchange: str = ""
    routing_key: str = ""


@amqp_method(60, 70, "basic.get", "ticket:short queue:shortstr no_ack:bit", sync=True)
@dataclass(frozen=True, slots=True)
class BasicGet(Method):
    ticket: int = 0
    queue: str = ""
    no_ack: bool = False


@amqp_method(
    60,
    71,
    "basic.get-ok",
    "delivery_tag:longlong redelivered:bit exchange:shortstr routing_key:shortstr "
    "message_count:long",
    content=True,
)
@dataclass(frozen=True, slots=True)
class BasicGetOk(Method):
    delivery_tag: int = 0
    redelivered: bool = False
    exchange: str = ""
    routing_key: str = ""
    message_count: int = 0


@amqp_method(60, 72, "basic.get-empty", "cluster_id:shortstr")
@dataclass(frozen=True, slots=True)
class BasicGetEmpty(Method):
    cluster_id: str = ""


@amqp_method(60, 80, "basic.ack", "delivery_tag:longlong multiple:bit")
@dataclass(frozen=True, slots=True)
class BasicAck(Method):
    delivery_tag: int = 0
    multiple: bool = False


@amqp_method(60, 90, "basic.reject", "delivery_tag:longlong requeue:bit")
@dataclass(frozen=True, slots=True)
class BasicReject(Method):
    delivery_tag: int = 0
    requeue: bool = True


@amqp_method(60, 100, "basic.recover-async", "requeue:bit")
@dataclass(frozen=True, slots=True)
class BasicRecoverAsync(Method):
    requeue: bool = False


@amqp_method(60, 110, "basic.recover", "requeue:bit", sync=True)
@dataclass(frozen=True, slots=True)
class BasicRecover(Method):
    requeue: bool = False


@amqp_method(60, 111, "basic.recover-ok")
@dataclass(frozen=True, slots=True)
class BasicRecoverOk(Method):
    pass


@amqp_method(60, 120, "basic.nack", "delivery_tag:longlong multiple:bit requeue:bit")
@dataclass(frozen=True, slots=True)
class BasicNack(Method):
    delivery_tag: int = 0
    multiple: bool = False
    requeue: bool = True


# --- confirm (85) ------------------------------------------------------------------------------


@amqp_method(85, 10, "confirm.select", "nowait:bit", sync=True)
@dataclass(frozen=True, slots=True)
class ConfirmSelect(Method):
    nowait: bool = False


@amqp_method(85, 11, "confirm.select-ok")
@dataclass(frozen=True, slots=True)
class ConfirmSelectOk(Method):
    pass


# --- tx (90) -----------------------------------------------------------------------------------


@amqp_method(90, 10, "tx.select", sync=True)
@dataclass(frozen=True, slots=True)
class TxSelect(Method):
    pass


@amqp_method(90, 11, "tx.select-ok")
@dataclass(frozen=True, slots=True)
class TxSelectOk(Method):
    pass


@amqp_method(90, 20, "tx.commit", sync=True)
@dataclass(frozen=True, slots=True)
class TxCommit(Method):
    pass


@amqp_method(90, 21, "tx.commit-ok")
@dataclass(frozen=True, slots=True)
class TxCommitOk(Method):
    pass


@amqp_method(90, 30, "tx.rollback", sync=True)
@dataclass(frozen=True, slots=True)
class TxRollback(Method):
    pass


@amqp_method(90, 31, "tx.rollback-ok")
@dataclass(frozen=True, slots=True)
class TxRollbackOk(Method):
    pass


# --- generic codec -----------------------------------------------------------------------------


def _shortstr(value: str) -> bytes:
    raw = value.encode("utf-8", "surrogateescape")
    if len(raw) > 255:
        raise ValueError(f"short string longer than 255 bytes: {value[:40]!r}...")
    return _U8.pack(len(raw)) + raw


def encode_method(method: Method) -> bytes:
    """Encode a method frame payload from the method's declared field list."""
    out = [_IDS.pack(method.CLASS_ID, method.METHOD_ID)]
    bits = 0
    nbits = 0
    for name, kind in method.FIELDS:
        value: Any = getattr(method, name)
        if kind == "bit":
            if value:
                bits |= 1 << nbits
            nbits += 1
            if nbits == 8:
                out.append(_U8.pack(bits))
                bits = nbits = 0
            continue
        if nbits:
            out.append(_U8.pack(bits))
            bits = nbits = 0
        if kind == "shortstr":
            out.append(_shortstr(value))
        elif kind == "short":
            out.append(_U16.pack(value))
        elif kind == "long":
            out.append(_U32.pack(value))
        elif kind == "longlong" or kind == "timestamp":
            out.append(_U64.pack(value))
        elif kind == "octet":
            out.append(_U8.pack(value))
        elif kind == "longstr":
            raw = value.encode("utf-8") if isinstance(value, str) else bytes(value)
            out.append(_U32.pack(len(raw)) + raw)
        elif kind == "table":
            out.append(encode_table(value))
        else:  # pragma: no cover - the registry asserts kinds at import
            raise AssertionError(kind)
    if nbits:
        out.append(_U8.pack(bits))
    return b"".join(out)


def decode_method(payload: bytes) -> Method:
    """Decode a method frame payload. Unknown ids are connection errors (RabbitMQ: 540 / 503)."""
    if len(payload) < 4:
        raise FrameError(FRAME_ERROR, "method frame too short to hold class and method ids")
    class_id, method_id = _IDS.unpack_from(payload, 0)
    cls = METHODS.get((class_id, method_id))
    if cls is None:
        if any(c == class_id for c, _ in METHODS):
            raise ConnectionError(
                COMMAND_INVALID,
                f"unknown method {method_id} in class {class_id}",
                class_id,
                method_id,
            )
        raise ConnectionError(NOT_IMPLEMENTED, f"unknown class {class_id}", class_id, method_id)
    offset = 4
    values: list[Any] = []
    bitbyte = 0
    bitpos = 8
    try:
        for _name, kind in cls.FIELDS:
            if kind == "bit":
                if bitpos == 8:
                    bitbyte = payload[offset]
                    offset += 1
                    bitpos = 0
                values.append(bool(bitbyte & (1 << bitpos)))
                bitpos += 1
                continue
            bitpos = 8
            if kind == "shortstr":
                length = payload[offset]
                offset += 1
                end = offset + length
                if end > len(payload):
                    raise IndexError
                values.append(payload[offset:end].decode("utf-8", "surrogateescape"))
                offset = end
            elif kind == "short":
                values.append(_U16.unpack_from(payload, offset)[0])
                offset += 2
            elif kind == "long":
                values.append(_U32.unpack_from(payload, offset)[0])
                offset += 4
            elif kind == "longlong" or kind == "timestamp":
                values.append(_U64.unpack_from(payload, offset)[0])
                offset += 8
            elif kind == "octet":
                values.append(payload[offset])
                offset += 1
            elif kind == "longstr":
                (length,) = _U32.unpack_from(payload, offset)
                offset += 4
                end = offset + length
                if end > len(payload):
                    raise IndexError
                values.append(bytes(payload[offset:end]))
                offset = end
            elif kind == "table":
                table, offset = decode_table(payload, offset)
                values.append(table)
    except (IndexError, struct.error):
        raise FrameError(
            SYNTAX_ERROR, f"{cls.NAME} frame is shorter than its arguments", class_id, method_id
        )
    return cls(*values)


_KINDS = {"bit", "shortstr", "short", "long", "longlong", "timestamp", "octet", "longstr", "table"}
for _cls in METHODS.values():
    for _n, _k in _cls.FIELDS:
        assert _k in _KINDS, (_cls.NAME, _n, _k)
