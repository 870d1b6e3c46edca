"""A session: one client connection's meaning.

It feeds bytes to its ``ServerConnection``, acts on the events (opening the vhost, channel methods,
publishes, acks) against the ``Broker``, and turns the ``ChannelError`` / ``ConnectionError`` those
raise into channel.close or connection.close. It is the only place errors become closes.

Output for this connection may be produced by other sessions (a publish elsewhere delivers here);
``write`` queues it and calls ``wakeup`` (set by the runtime) so the writer sends it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from router.amqp import fastpath, spec
from router.amqp.connection import (
    Ack,
    ChannelFailed,
    CloseReceived,
    Event,
    MethodReceived,
    Nack,
    OpenRequested,
    Publish,
    Reject,
    ServerConnection,
    Terminated,
)
from router.amqp.constants import (
    ACCESS_REFUSED,
    COMMAND_INVALID,
    CONNECTION_FORCED,
    NO_ROUTE,
    NOT_ALLOWED,
    NOT_FOUND,
    NOT_IMPLEMENTED,
    PRECONDITION_FAILED,
)
from router.amqp.errors import AMQPError, ChannelError, ConnectionError
from router.amqp.frames import method_frame
from router.amqp.properties import decode_properties
from router.amqp.tables import FieldTable
from router.broker.arguments import TYPE_NAMES
from router.broker.channel import Channel, Consumer
from router.broker.message import Message
from router.broker.permissions import CONFIGURE, READ, WRITE, Access
from router.broker.queues import Queue

if TYPE_CHECKING:
    from router.broker.broker import Broker
    from router.broker.vhost import VirtualHost

DIRECT_REPLY_TO = "amq.rabbitmq.reply-to"
DIRECT_REPLY_TO_PREFIX = DIRECT_REPLY_TO + "."
DIRECT_REPLY_TO_BYTES = DIRECT_REPLY_TO.encode()

# Stop delivering to a connection whose unsent output exceeds this (RabbitMQ's credit flow does
# the same job): a slow no-ack consumer cannot make the broker buffer without bound.
OUTPUT_HIGH_WATER = 1 << 20


class Session:
    """The broker side of one AMQP connection."""

    def __init__(self, broker: Broker, *, now: float, peer: str = "") -> None:
        self.broker = broker
        self.peer = peer
        self.conn = ServerConnection(
            now=now,
            authenticate=broker.authenticate,
            server_properties=broker.server_properties(),
            channel_max=broker.config.channel_max,
            frame_max=broker.config.frame_max,
            max_message_size=broker.config.max_message_size,
            heartbeat=broker.config.heartbeat,
        )
        self.vhost: VirtualHost | None = None
        # who is connected, and what it may do in its vhost (permissions.py); the broker
        # replaces ``access`` when the user's permissions there change
        self.user = ""
        self.access = Access("", "", None)
        self.channels: dict[int, Channel] = {}
        self.wakeup: Callable[[], None] = lambda: None
        self._wake_pending = False
        self.in_flight = 0
        self._writes_before = 0  # the store's write count when the current method began
        self._was_blocked = False
        self._confirm_channels: dict[Channel, None] = {}
        self.opened = False
        self.ended = False
        self.end_reason = ""
        self.cancel_notify = False
        # flow control: the client understands connection.blocked / unblocked
        self.blocked_notify = False
        # reads are paused: the connection published during a resource alarm (Broker.alarms)
        self.blocked = False
        self._blocked_sent = False
        self._stalled: list[Event] = []  # events read before the block, handled after it
        # the runtime's hook: reads may resume (the alarm cleared)
        self.on_unblocked: Callable[[], None] = lambda: None
        self.id = broker.next_session_id()
        # for the management API: where the client connected, and the bytes both ways
        self.local = ""
        self.connected_at = now + broker.clock.wall_offset  # Unix time
        self.recv_oct = 0
        self.recv_cnt = 0
        self.send_oct = 0
        self.send_cnt = 0

    def __repr__(self) -> str:
        return f"<Session {self.id} {self.peer}>"

    @property
    def name(self) -> str:
        """The connection's name, as RabbitMQ shows it: "peer -> local"."""
        return f"{self.peer} -> {self.local}" if self.local else self.peer

    def counters(self) -> tuple[int, ...]:
        """The counters in ``stats.CONNECTION_FIELDS`` order."""
        return (self.recv_oct, self.send_oct, self.recv_cnt, self.send_cnt)

    # --- I/O face --------------------------------------------------------------------------------

    @property
    def frame_max(self) -> int:
        return self.conn.frame_max

    @property
    def output_blocked(self) -> bool:
        return self.conn.pending_bytes + self.in_flight > OUTPUT_HIGH_WATER

    def write(self, data: bytes) -> None:
        self.conn.write(data)
        self._wake()

    def data_to_send(self, now: float) -> bytes:
        """What to write to the socket now; call ``sent()`` once it is written."""
        self._wake_pending = False
        data = self.conn.data_to_send(now)
        if data:
            self.in_flight += len(data)
            self.send_oct += len(data)
            self.send_cnt += 1
        return data

    def sent(self) -> None:
        """The last ``data_to_send`` is on the wire: resume consumers paused on a full buffer."""
        blocked = self.output_blocked
        self.in_flight = 0
        if blocked or self._was_blocked:
            self._was_blocked = False
            self._resume_consumers()

    def _resume_consumers(self) -> None:
        for channel in list(self.channels.values()):
            for consumer in list(channel.consumers.values()):
                consumer.queue.dispatch()

    @property
    def closed(self) -> bool:
        return self.conn.closed

    def next_deadline(self) -> float | None:
        return self.conn.next_deadline()

    def handle_timer(self, now: float) -> None:
        self._handle(self.conn.handle_timer(now))

    def receive_data(self, data: bytes, now: float) -> None:
        """Bytes from the socket (``b""`` at EOF): process every event in them."""
        self.broker.clock.now = now
        self.recv_oct += len(data)
        self.recv_cnt += 1
        events = self.conn.receive_data(data, now)
        if self.blocked:
            if data:  # read before the block took effect: waits with the rest
                self._stalled.extend(events)
                return
            self._leave_block()  # the peer is gone: what waited goes with it
        self._handle(events)

    def _handle(self, events: list[Event]) -> None:
        # Every event happened on the wire before any close the connection saw in the same read,
        # so all are processed; only a close this session starts makes it skip the rest.
        closing = False
        alarms = self.broker.alarms  # not raised or cleared while a read is handled
        for index, event in enumerate(events):
            if closing and type(event) is not Terminated:
                continue
            try:
                # An event may name a channel this session closed earlier in the same read
                # (the connection parsed it first): like the frames of any closing channel, it
                # is dropped (AMQP 0-9-1 §4.2.3.1). Hence the ``channel is not None`` tests.
                # A paused channel (waiting for the store) keeps its events for later.
                if type(event) is Publish:
                    if alarms:
                        # flow control: a publish during a resource alarm blocks the connection;
                        # it and everything read after it wait for the alarm to clear (RabbitMQ)
                        self._block(events[index:])
                        break
                    channel = self.channels.get(event.channel)
                    if channel is not None:
                        if channel.paused:
                            channel.deferred.append(event)
                        else:
                            self._publish(channel, event)
                elif type(event) is Ack:
                    channel = self.channels.get(event.channel)
                    if channel is not None:
                        if channel.paused:
                            channel.deferred.append(event)
                        else:
                            channel.ack(event.delivery_tag, event.multiple)
                elif type(event) is MethodReceived:
                    channel = self.channels.get(event.channel)
                    if channel is not None and channel.paused:
                        channel.deferred.append(event)
                    else:
                        self._method(event.channel, event.method)
                elif type(event) is Nack or type(event) is Reject:
                    channel = self.channels.get(event.channel)
                    if channel is not None:
                        if channel.paused:
                            channel.deferred.append(event)
                        elif type(event) is Nack:
                            channel.nack(event.delivery_tag, event.multiple, event.requeue)
                        else:
                            channel.nack(event.delivery_tag, False, event.requeue)
                elif type(event) is OpenRequested:
                    self._open(event)
                elif type(event) is ChannelFailed:
                    self._channel_error(event.channel, event.error, event)
                elif type(event) is CloseReceived:
                    self._teardown()
                elif type(event) is Terminated:
                    self._teardown()
                    self.ended = True
                    self.end_reason = event.reason
            except ChannelError as error:
                self._channel_error(getattr(event, "channel", 0), error, event)
            except ConnectionError as error:
                self.close(error)
                closing = True
        if self._confirm_channels:
            self._flush_confirms()

    def _flush_confirms(self) -> None:
        for channel in self._confirm_channels:
            if channel.closed:
                continue
            upto = channel.publish_seq
            if channel.held:  # waiting for the store: confirm only what comes before
                upto = channel.held[0][0] - 1
            if upto <= channel.confirmed_upto:
                continue
            # acks coalesce into one (multiple) ack per run; a refused publish gets its own nack,
            # as RabbitMQ sends them (ack 1, nack 2, nack 3, ...)
            number = channel.number
            start = channel.confirmed_upto
            frames = []
            later: list[int] = []
            for nacked in channel.nacked:
                if nacked > upto:
                    later.append(nacked)
                    continue
                if nacked - 1 > start:
                    frames.append(
                        fastpath.confirm_frame(number, nacked - 1, nacked - 1 - start > 1)
                    )
                frames.append(fastpath.confirm_frame(number, nacked, False, ack=False))
                start = nacked
            if upto > start:
                frames.append(fastpath.confirm_frame(number, upto, upto - start > 1))
            channel.nacked = later
            channel.confirmed += upto - channel.confirmed_upto
            channel.confirmed_upto = upto
            self.write(b"".join(frames))
        self._confirm_channels.clear()

    # --- errors and closing --------------------------------------------------------------------

    def _channel_error(self, number: int, error: ChannelError, event: object) -> None:
        if not error.class_id:
            method = getattr(event, "method", None)
            if method is not None:
                error.class_id, error.method_id = method.CLASS_ID, method.METHOD_ID
            elif isinstance(event, Publish):
                error.class_id, error.method_id = 60, 40
            elif isinstance(event, Ack):
                error.class_id, error.method_id = 60, 80
            elif isinstance(event, Nack):
                error.class_id, error.method_id = 60, 120
            elif isinstance(event, Reject):
                error.class_id, error.method_id = 60, 90
        channel = self.channels.pop(number, None)
        if channel is not None:
            self._close_channel_state(channel)
        self.conn.close_channel(number, error)
        self.broker.on_channel_error(self, number, error)

    def close(self, error: AMQPError) -> None:
        """Close the whole connection with ``error``'s code and text."""
        self.conn.close_with(error)
        self._teardown()
        if self.blocked:  # read again: the client's close-ok must get through
            self._leave_block()
            self._blocked_sent = False
            self.on_unblocked()

    def close_forced(self, reason: str) -> None:
        """Close the connection from the broker's side (its user or vhost was deleted): 320
        CONNECTION_FORCED with ``reason``, as RabbitMQ says it."""
        self.close(ConnectionError(CONNECTION_FORCED, reason))
        self._wake()

    def shutdown(self) -> None:
        """The broker is stopping: connection.close 320, as RabbitMQ does."""
        self.close(
            ConnectionError(
                CONNECTION_FORCED, "broker forced connection closure with reason 'shutdown'"
            )
        )

    def _teardown(self) -> None:
        """Release everything the connection holds: channels, then exclusive queues."""
        for channel in list(self.channels.values()):
            self._close_channel_state(channel)
        self.channels.clear()
        if self.vhost is not None:
            for queue in [q for q in self.vhost.queues.values() if q.exclusive_owner is self]:
                self.vhost.remove_queue(queue)
        if self.opened:
            self.opened = False
            self.broker.session_closed(self)

    def _close_channel_state(self, channel: Channel) -> None:
        self.broker.channel_closed(channel)
        self._confirm_channels.pop(channel, None)
        if channel.reply_to is not None:
            self.broker.reply_channels.pop(channel.reply_to, None)
            channel.reply_to = None
        for queue in channel.close():
            self._maybe_auto_delete(queue)

    def _maybe_auto_delete(self, queue: Queue) -> None:
        if (
            queue.auto_delete
            and queue.had_consumers
            and queue.consumer_count == 0
            and (self.vhost is not None)
        ):
            self.vhost.remove_queue(queue)

    # --- connection ----------------------------------------------------------------------------

    def _open(self, event: OpenRequested) -> None:
        vhost = self.broker.vhosts.get(event.virtual_host)
        if vhost is None:
            raise ConnectionError(NOT_ALLOWED, f"vhost {event.virtual_host} not found", 10, 40)
        access = self.broker.access(event.user, vhost.name)
        if access is None:
            raise ConnectionError(
                NOT_ALLOWED,
                f"access to vhost '{vhost.name}' refused for user '{event.user}'",
                10,
                40,
            )
        self.user = event.user
        self.access = access
        self.vhost = vhost
        capabilities = event.client_properties.get("capabilities")
        self.cancel_notify = bool(
            isinstance(capabilities, dict) and capabilities.get("consumer_cancel_notify")
        )
        self.blocked_notify = bool(
            isinstance(capabilities, dict) and capabilities.get("connection.blocked")
        )
        self.conn.accept_open()
        self.opened = True
        self.broker.session_opened(self)

    # --- flow control --------------------------------------------------------------------------

    def _block(self, stalled: list[Event]) -> None:
        """A publish arrived during a resource alarm: stop reading this connection (the runtime
        checks ``blocked`` after each read) and tell a client that understands it. The publish
        and the events read after it (``stalled``) are handled once the alarm clears; deliveries
        to consumers on this connection go on."""
        self.blocked = True
        self._stalled = stalled
        self.conn.pause_reading()
        if self.blocked_notify and not self._blocked_sent:
            self._blocked_sent = True
            self.conn.send_method(0, spec.ConnectionBlocked(self.broker.alarm_reason))
            self._wake()

    def unblock(self) -> None:
        """Every alarm cleared (``Broker.set_alarm``): reads resume."""
        if not self.blocked:
            return
        stalled = self._leave_block()
        if self._blocked_sent:
            self._blocked_sent = False
            if not self.closed:
                self.conn.send_method(0, spec.ConnectionUnblocked())
                self._wake()
        self._handle(stalled)  # may block again, if another alarm is up by now
        if not self.blocked:
            self.on_unblocked()

    def _leave_block(self) -> list[Event]:
        """Reading resumes; returns the events that waited for it."""
        self.blocked = False
        self.conn.resume_reading(self.broker.clock.now)
        stalled, self._stalled = self._stalled, []
        return stalled

    # --- publish -------------------------------------------------------------------------------

    def _publish(self, channel: Channel, event: Publish) -> None:
        if event.immediate:
            raise ConnectionError(NOT_IMPLEMENTED, "immediate=true", 60, 40)
        vhost = self.vhost
        assert vhost is not None
        name = event.exchange
        access = self.access
        if name not in access.writable:  # write permission, checked once per exchange name
            access.check_publish(name)
        exchange = vhost.exchanges.get(name)
        if exchange is None:
            raise ChannelError(NOT_FOUND, f"no exchange '{name}' in vhost '{vhost.name}'")
        if exchange.internal:
            raise ChannelError(
                ACCESS_REFUSED,
                f"cannot publish to internal exchange '{event.exchange}' in vhost '{vhost.name}'",
            )
        channel.published += 1
        if channel.confirm:
            channel.publish_seq += 1
            self._confirm_channels[channel] = None
        if channel.tx:
            channel.tx_publishes.append(event)
            return
        self._route(channel, event, channel.publish_seq)

    def _route(self, channel: Channel, event: Publish, seq: int = 0) -> None:
        vhost = self.vhost
        assert vhost is not None
        # one unpack instead of ten NamedTuple attribute lookups
        (
            _number,
            exchange_name,
            routing_key,
            mandatory,
            _immediate,
            properties,
            body,
            delivery_mode,
            priority,
            expiration,
            exchange_rk,
            header_payload,
            headers,
        ) = event
        exchange = vhost.exchanges.get(exchange_name)
        if exchange is None:  # deleted between a tx publish and its commit
            return
        if DIRECT_REPLY_TO_BYTES in properties:
            properties = self._direct_reply_to(channel, properties)
            header_payload = None
        cc: tuple[str, ...] = ()
        bcc: tuple[str, ...] = ()
        due_at = None
        if headers is not None:
            if "CC" in headers or "BCC" in headers:
                cc, bcc, headers, properties = _sender_selected(headers, properties)
                if bcc:
                    header_payload = None  # the properties changed: re-encoded by Message
            if exchange.TYPE == "x-delayed-message":
                due_at = self._due_at(headers)
        message = Message(
            exchange_name,
            routing_key,
            properties,
            body,
            delivery_mode,
            priority,
            expiration,
            exchange_rk=exchange_rk,
            header_payload=header_payload,
            headers=headers,
            cc=cc,
            bcc=bcc,
            due_at=due_at,
        )
        dedup = exchange.dedup
        if dedup is not None:
            if dedup.seen(message, self.broker.clock.now):
                return  # a duplicate: dropped, and still confirmed (the community plugin does too)
            store = self.broker.store
            if store is not None and exchange.durable and dedup.last_key is not None:
                store.dedup_remembered(exchange, dedup.last_key, dedup.last_expires)
        if not exchange_name and routing_key.startswith(DIRECT_REPLY_TO_PREFIX):
            target = self.broker.reply_channels.get(routing_key)
            if target is not None and not target.closed:
                target.deliver_reply(message)
                return
            queues = []
        else:
            queues = vhost.route(exchange, message)
        vhost.published += 1
        if not queues:
            vhost.unroutable += 1
            if mandatory:
                vhost.returned += 1
                channel.returned += 1
                number = channel.number
                self.write(
                    fastpath.return_frame(number, NO_ROUTE, "NO_ROUTE", message.exchange_rk)
                    + fastpath.content_tail(
                        number, message.header_payload, message.body, self.frame_max
                    )
                )
            return
        refused = False
        store = self.broker.store
        writes = store.writes if store is not None else 0
        for queue in queues:
            if not queue.publish(message):
                refused = True
        if seq and store is not None and store.writes != writes:
            # stored: the confirm waits until its batch is on disk
            self._hold_confirm(channel, seq, store.batch)
        if refused and seq and channel.confirm:
            channel.nacked.append(seq)

    def _hold_confirm(self, channel: Channel, seq: int, batch: int) -> None:
        held = channel.held
        held.append((seq, batch))
        if len(held) == 1 or held[-2][1] != batch:  # one wake-up per channel and batch
            self.broker.after_commit(lambda: self._release_confirms(channel))

    def _release_confirms(self, channel: Channel) -> None:
        """A store batch is on disk: send the confirms that waited for it."""
        if channel.closed or self.closed:
            return
        committed = self.broker.committed_batch
        held = channel.held
        while held and held[0][1] <= committed:
            held.popleft()
        self._confirm_channels[channel] = None
        self._flush_confirms()

    def _direct_reply_to(self, channel: Channel, properties: bytes) -> bytes:
        """A publish with reply_to "amq.rabbitmq.reply-to": the reply address becomes this
        channel's own (RabbitMQ's direct reply-to); the channel must consume replies first."""
        decoded = decode_properties(properties)
        if decoded.reply_to != DIRECT_REPLY_TO:
            return properties
        if channel.reply_to is None:
            raise ChannelError(PRECONDITION_FAILED, "fast reply consumer does not exist")
        return decoded.replace(reply_to=channel.reply_to).encode()

    def _due_at(self, headers: FieldTable) -> float | None:
        """When a message published to an x-delayed-message exchange becomes visible:
        ``x-delay`` (ms from now, as RabbitMQ's plugin) or ``x-deliver-at`` (Unix ms)."""
        clock = self.broker.clock
        delay = headers.get("x-delay")
        if isinstance(delay, (int, float)) and not isinstance(delay, bool):
            return clock.now + max(0.0, delay / 1000) if delay > 0 else None
        deliver_at = headers.get("x-deliver-at")
        if isinstance(deliver_at, (int, float)) and not isinstance(deliver_at, bool):
            return deliver_at / 1000 - clock.wall_offset
        return None

    # --- methods -------------------------------------------------------------------------------

    def _method(self, number: int, method: spec.Method) -> None:
        if isinstance(method, spec.ChannelOpen):
            self.channels[number] = Channel(self, number)
            self.broker.totals.channels_opened += 1
            self.conn.send_method(number, spec.ChannelOpenOk())
            return
        channel = self.channels.get(number)
        if channel is None:  # closed by this session earlier in the same read: dropped
            return
        handler = _HANDLERS.get(type(method))
        if handler is None:
            raise ConnectionError(
                NOT_IMPLEMENTED,
                f"{method.NAME} is not implemented by this broker",
                method.CLASS_ID,
                method.METHOD_ID,
            )
        store = self.broker.store
        if store is not None:
            self._writes_before = store.writes
        handler(self, channel, method)

    def _reply(self, channel: Channel, method: spec.Method, nowait: bool = False) -> None:
        store = self.broker.store
        if (
            store is not None
            and method.CLASS_ID in (40, 50)
            and store.writes != self._writes_before
        ):
            # a durable exchange/queue/binding change: "ok" means on disk
            self._pause(channel, None if nowait else method)
            return
        if not nowait:
            self.conn.send_method(channel.number, method)

    def _pause(self, channel: Channel, reply: spec.Method | None) -> None:
        """Hold ``reply`` until the store has committed what this channel just changed, and
        process nothing more on the channel until then, as a RabbitMQ channel waits for its
        database write: every later reply and delivery of the channel keeps its order."""
        channel.paused = True
        self.broker.after_commit(lambda: self._unpause(channel, reply))

    def _unpause(self, channel: Channel, reply: spec.Method | None) -> None:
        channel.paused = False
        if channel.closed or self.closed or self.channels.get(channel.number) is not channel:
            return
        if reply is not None:
            self.conn.send_method(channel.number, reply)
        deferred, channel.deferred = channel.deferred, []
        if deferred:
            self._handle(deferred)  # type: ignore[arg-type]
        self._wake()

    def _wake(self) -> None:
        if not self._wake_pending:
            self._wake_pending = True
            self.wakeup()

    def _channel_close(self, channel: Channel, method: spec.ChannelClose) -> None:
        self.channels.pop(channel.number, None)
        self._close_channel_state(channel)
        self.conn.channel_close_ok(channel.number)

    def _channel_close_ok(self, channel: Channel, method: spec.ChannelCloseOk) -> None:
        pass  # answered while closing; handled by the connection

    def _channel_flow(self, channel: Channel, method: spec.ChannelFlow) -> None:
        channel.flow_active = method.active
        self.conn.send_method(channel.number, spec.ChannelFlowOk(method.active))
        if method.active:
            for consumer in list(channel.consumers.values()):
                consumer.queue.dispatch()

    def _vhost(self) -> VirtualHost:
        assert self.vhost is not None
        return self.vhost

    def _exchange_declare(self, channel: Channel, method: spec.ExchangeDeclare) -> None:
        self._vhost().declare_exchange(
            method.exchange,
            method.type,
            passive=method.passive,
            durable=method.durable,
            auto_delete=method.auto_delete,
            internal=method.internal,
            arguments=method.arguments,
            access=self.access,
        )
        self._reply(channel, spec.ExchangeDeclareOk(), method.nowait)

    def _exchange_delete(self, channel: Channel, method: spec.ExchangeDelete) -> None:
        self._vhost().delete_exchange(
            method.exchange, if_unused=method.if_unused, access=self.access
        )
        self._reply(channel, spec.ExchangeDeleteOk(), method.nowait)

    def _check_binding(self, kind: str, destination: str, source: str) -> None:
        """(un)binding needs write on the destination and read on the source; RabbitMQ
        (``binding_action``) refuses the default exchange between the two checks."""
        self.access.check(WRITE, kind, destination)
        if source == "" or (kind == "exchange" and destination == ""):
            raise ChannelError(ACCESS_REFUSED, "operation not permitted on the default exchange")
        self.access.check(READ, "exchange", source)

    def _exchange_bind(self, channel: Channel, method: spec.ExchangeBind) -> None:
        self._check_binding("exchange", method.destination, method.source)
        self._vhost().bind_exchange(
            method.source, method.destination, method.routing_key, method.arguments
        )
        self._reply(channel, spec.ExchangeBindOk(), method.nowait)

    def _exchange_unbind(self, channel: Channel, method: spec.ExchangeUnbind) -> None:
        self._check_binding("exchange", method.destination, method.source)
        vhost = self._vhost()
        vhost.unbind(
            method.source,
            vhost.exchanges.get(method.destination),
            method.routing_key,
            method.arguments,
        )
        self._reply(channel, spec.ExchangeUnbindOk(), method.nowait)

    def _queue_declare(self, channel: Channel, method: spec.QueueDeclare) -> None:
        vhost = self._vhost()
        name = method.queue
        if method.passive and name.startswith(DIRECT_REPLY_TO):
            # the pseudo-queue exists for clients that check it (RabbitMQ answers declare-ok)
            self._reply(channel, spec.QueueDeclareOk(name, 0, 0), method.nowait)
            return
        if method.passive and not name:
            name = channel.resolve_queue_name(name)
        queue = vhost.declare_queue(
            name,
            owner=self,
            passive=method.passive,
            durable=method.durable,
            exclusive=method.exclusive,
            auto_delete=method.auto_delete,
            arguments=method.arguments,
            access=self.access,
        )
        channel.last_queue = queue.name
        self._reply(
            channel,
            spec.QueueDeclareOk(queue.name, queue.message_count, queue.consumer_count),
            method.nowait,
        )

    def _queue_bind(self, channel: Channel, method: spec.QueueBind) -> None:
        name = channel.resolve_queue_name(method.queue)
        routing_key = method.routing_key
        if not method.queue and not routing_key:
            routing_key = name  # AMQP 0-9-1 §1.7.2.3.3: empty queue and key
        self._check_binding("queue", name, method.exchange)
        self._vhost().bind_queue(method.exchange, name, routing_key, method.arguments, self)
        self._reply(channel, spec.QueueBindOk(), method.nowait)

    def _queue_unbind(self, channel: Channel, method: spec.QueueUnbind) -> None:
        vhost = self._vhost()
        name = channel.resolve_queue_name(method.queue)
        self._check_binding("queue", name, method.exchange)
        queue = vhost.queues.get(name)
        vhost.unbind(method.exchange, queue, method.routing_key, method.arguments)
        self._reply(channel, spec.QueueUnbindOk())

    def _queue_purge(self, channel: Channel, method: spec.QueuePurge) -> None:
        name = channel.resolve_queue_name(method.queue)
        self.access.check(READ, "queue", name)
        count = self._vhost().purge_queue(name, owner=self)
        self._reply(channel, spec.QueuePurgeOk(count), method.nowait)

    def _queue_delete(self, channel: Channel, method: spec.QueueDelete) -> None:
        name = channel.resolve_queue_name(method.queue)
        self.access.check(CONFIGURE, "queue", name)
        count = self._vhost().delete_queue(
            name,
            owner=self,
            if_unused=method.if_unused,
            if_empty=method.if_empty,
        )
        self._reply(channel, spec.QueueDeleteOk(count), method.nowait)

    def _basic_qos(self, channel: Channel, method: spec.BasicQos) -> None:
        if method.prefetch_size:
            raise ConnectionError(
                NOT_IMPLEMENTED, f"prefetch_size!=0 ({method.prefetch_size})", 60, 10
            )
        if method.global_:
            channel.global_prefetch = method.prefetch_count
        else:
            # RabbitMQ 3.10 (rabbit_channel, basic.qos global=false) also lifts a channel-wide
            # limit set earlier: rabbit_limiter:unlimit_prefetch/1.
            channel.prefetch_count = method.prefetch_count
            channel.global_prefetch = 0
        self._reply(channel, spec.BasicQosOk())
        for consumer in list(channel.consumers.values()):
            consumer.queue.dispatch()

    def _basic_consume(self, channel: Channel, method: spec.BasicConsume) -> None:
        if method.queue == DIRECT_REPLY_TO:
            self._consume_replies(channel, method)
            return
        vhost = self._vhost()
        name = channel.resolve_queue_name(method.queue)
        self.access.check(READ, "queue", name)
        queue = vhost.queue(name, self)
        tag = method.consumer_tag or f"amq.ctag-{self.broker.ids.token()}"
        if tag in channel.consumers:
            raise ConnectionError(NOT_ALLOWED, f"attempt to reuse consumer tag '{tag}'", 60, 20)
        if queue.exclusive_consumer is not None or (method.exclusive and queue.consumer_count):
            raise ChannelError(
                ACCESS_REFUSED, f"queue '{queue.name}' in vhost '{vhost.name}' in exclusive use"
            )
        priority = _consumer_priority(method.arguments)
        timeout = _consumer_timeout(method.arguments)
        consumer = Consumer(
            channel,
            queue,
            tag,
            no_ack=method.no_ack,
            exclusive=method.exclusive,
            priority=priority,
            prefetch=channel.prefetch_count,
            timeout=timeout,
        )
        channel.consumers[tag] = consumer
        queue.add_consumer(consumer)
        self._reply(channel, spec.BasicConsumeOk(tag), method.nowait)
        queue.dispatch()

    def _consume_replies(self, channel: Channel, method: spec.BasicConsume) -> None:
        """basic.consume on amq.rabbitmq.reply-to: a no-ack consumer of direct replies."""
        if not method.no_ack:
            raise ChannelError(PRECONDITION_FAILED, "reply consumer cannot acknowledge")
        if channel.reply_to is not None:
            raise ChannelError(PRECONDITION_FAILED, "reply consumer already set")
        tag = method.consumer_tag or f"amq.ctag-{self.broker.ids.token()}"
        if tag in channel.consumers:
            raise ConnectionError(NOT_ALLOWED, f"attempt to reuse consumer tag '{tag}'", 60, 20)
        channel.reply_to = f"{DIRECT_REPLY_TO_PREFIX}{self.broker.ids.token()}"
        channel.reply_consumer = fastpath.shortstr(tag)
        self.broker.reply_channels[channel.reply_to] = channel
        self._reply(channel, spec.BasicConsumeOk(tag), method.nowait)

    def _basic_cancel(self, channel: Channel, method: spec.BasicCancel) -> None:
        if channel.reply_to is not None and fastpath.shortstr(method.consumer_tag) == (
            channel.reply_consumer
        ):
            self.broker.reply_channels.pop(channel.reply_to, None)
            channel.reply_to = None
            self._reply(channel, spec.BasicCancelOk(method.consumer_tag), method.nowait)
            return
        consumer = channel.remove_consumer(method.consumer_tag)
        self._reply(channel, spec.BasicCancelOk(method.consumer_tag), method.nowait)
        if consumer is not None:
            self._maybe_auto_delete(consumer.queue)
            consumer.queue.dispatch()  # single active consumer: the next one takes over

    def cancel_by_server(self, consumer: Consumer) -> None:
        """The consumer's queue was deleted: tell clients that asked to be told (RabbitMQ)."""
        channel = consumer.channel
        if channel.consumers.get(consumer.tag) is not consumer:
            return
        del channel.consumers[consumer.tag]
        if self.cancel_notify and not channel.closed:
            self.write(method_frame(channel.number, spec.BasicCancel(consumer.tag, True)))

    def _basic_get(self, channel: Channel, method: spec.BasicGet) -> None:
        name = channel.resolve_queue_name(method.queue)
        self.access.check(READ, "queue", name)
        queue = self._vhost().queue(name, self)
        channel.get(queue, method.no_ack)

    def _basic_recover(self, channel: Channel, method: spec.BasicRecover) -> None:
        if not method.requeue:
            raise ConnectionError(NOT_IMPLEMENTED, "requeue=false", 60, 110)
        channel.recover()
        self._reply(channel, spec.BasicRecoverOk())

    def _basic_recover_async(self, channel: Channel, method: spec.BasicRecoverAsync) -> None:
        if not method.requeue:
            raise ConnectionError(NOT_IMPLEMENTED, "requeue=false", 60, 100)
        channel.recover()

    def _confirm_select(self, channel: Channel, method: spec.ConfirmSelect) -> None:
        if channel.tx:
            raise ChannelError(PRECONDITION_FAILED, "cannot switch from tx to confirm mode")
        channel.confirm = True
        self._reply(channel, spec.ConfirmSelectOk(), method.nowait)

    def _tx_select(self, channel: Channel, method: spec.TxSelect) -> None:
        if channel.confirm:
            raise ChannelError(PRECONDITION_FAILED, "cannot switch from confirm to tx mode")
        channel.tx = True
        self._reply(channel, spec.TxSelectOk())

    def _tx_commit(self, channel: Channel, method: spec.TxCommit) -> None:
        if not channel.tx:
            raise ChannelError(PRECONDITION_FAILED, "channel is not transactional")
        store = self.broker.store
        writes = store.writes if store is not None else 0
        for publish in channel.commit():
            assert isinstance(publish, Publish)
            self._route(channel, publish)
        if store is not None and store.writes != writes:
            # commit-ok says "done": for stored messages and acks, that means on disk
            self._pause(channel, spec.TxCommitOk())
            return
        self._reply(channel, spec.TxCommitOk())

    def _tx_rollback(self, channel: Channel, method: spec.TxRollback) -> None:
        if not channel.tx:
            raise ChannelError(PRECONDITION_FAILED, "channel is not transactional")
        channel.rollback()
        self._reply(channel, spec.TxRollbackOk())

    def _unexpected(self, channel: Channel, method: spec.Method) -> None:
        raise ConnectionError(
            COMMAND_INVALID,
            f"unimplemented method: {method.NAME} is sent by servers, not clients",
            method.CLASS_ID,
            method.METHOD_ID,
        )


def _consumer_timeout(arguments: FieldTable) -> int | None:
    if "x-consumer-timeout" not in arguments:
        return None
    value = arguments["x-consumer-timeout"]
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ChannelError(
            PRECONDITION_FAILED,
            f"invalid arg 'x-consumer-timeout' for consumer: expected a positive number of "
            f"milliseconds, got {value!r}",
        )
    return value


def _routing_header(name: str, headers: FieldTable) -> tuple[str, ...]:
    """The keys of a CC or BCC header: an array of strings (other elements are ignored)."""
    if name not in headers:
        return ()
    tag, value = headers.typed(name)
    if tag != "A":
        raise ChannelError(
            PRECONDITION_FAILED,
            f'invalid message: {{unacceptable_type_in_header,"{name}",{TYPE_NAMES.get(tag, tag)}}}',
        )
    return tuple(
        item.decode("utf-8", "replace") if isinstance(item, bytes) else item
        for item in value
        if isinstance(item, (str, bytes))
    )


def _sender_selected(
    headers: FieldTable, properties: bytes
) -> tuple[tuple[str, ...], tuple[str, ...], FieldTable, bytes]:
    """Sender-selected distribution (RabbitMQ): CC and BCC headers add routing keys; the BCC
    header is removed before anyone sees the message. Returns (cc, bcc, headers, properties)."""
    cc = _routing_header("CC", headers)
    bcc = _routing_header("BCC", headers)
    if "BCC" in headers:
        headers = headers.copy()
        del headers["BCC"]
        properties = decode_properties(properties).replace(headers=headers).encode()
    return cc, bcc, headers, properties


def _consumer_priority(arguments: FieldTable) -> int:
    value = arguments.get("x-priority", 0)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ChannelError(
            PRECONDITION_FAILED,
            f"invalid arg 'x-priority' for consumer: expected an integer, got {value!r}",
        )
    return value


_HANDLERS: dict[type[spec.Method], Callable[[Session, Channel, spec.Method], None]] = {
    spec.ChannelClose: Session._channel_close,  # type: ignore[dict-item]
    spec.ChannelCloseOk: Session._channel_close_ok,  # type: ignore[dict-item]
    spec.ChannelFlow: Session._channel_flow,  # type: ignore[dict-item]
    spec.ExchangeDeclare: Session._exchange_declare,  # type: ignore[dict-item]
    spec.ExchangeDelete: Session._exchange_delete,  # type: ignore[dict-item]
    spec.ExchangeBind: Session._exchange_bind,  # type: ignore[dict-item]
    spec.ExchangeUnbind: Session._exchange_unbind,  # type: ignore[dict-item]
    spec.QueueDeclare: Session._queue_declare,  # type: ignore[dict-item]
    spec.QueueBind: Session._queue_bind,  # type: ignore[dict-item]
    spec.QueueUnbind: Session._queue_unbind,  # type: ignore[dict-item]
    spec.QueuePurge: Session._queue_purge,  # type: ignore[dict-item]
    spec.QueueDelete: Session._queue_delete,  # type: ignore[dict-item]
    spec.BasicQos: Session._basic_qos,  # type: ignore[dict-item]
    spec.BasicConsume: Session._basic_consume,  # type: ignore[dict-item]
    spec.BasicCancel: Session._basic_cancel,  # type: ignore[dict-item]
    spec.BasicGet: Session._basic_get,  # type: ignore[dict-item]
    spec.BasicRecover: Session._basic_recover,  # type: ignore[dict-item]
    spec.BasicRecoverAsync: Session._basic_recover_async,  # type: ignore[dict-item]
    spec.ConfirmSelect: Session._confirm_select,  # type: ignore[dict-item]
    spec.TxSelect: Session._tx_select,  # type: ignore[dict-item]
    spec.TxCommit: Session._tx_commit,  # type: ignore[dict-item]
    spec.TxRollback: Session._tx_rollback,  # type: ignore[dict-item]
}
for _server_only in (
    spec.BasicDeliver,
    spec.BasicReturn,
    spec.BasicGetOk,
    spec.BasicGetEmpty,
    spec.BasicConsumeOk,
    spec.BasicCancelOk,
    spec.BasicQosOk,
    spec.BasicRecoverOk,
    spec.ChannelOpenOk,
    spec.ChannelFlowOk,
    spec.ExchangeDeclareOk,
    spec.ExchangeDeleteOk,
    spec.ExchangeBindOk,
    spec.ExchangeUnbindOk,
    spec.QueueDeclareOk,
    spec.QueueBindOk,
    spec.QueueUnbindOk,
    spec.QueuePurgeOk,
    spec.QueueDeleteOk,
    spec.ConfirmSelectOk,
    spec.TxSelectOk,
    spec.TxCommitOk,
    spec.TxRollbackOk,
):
    _HANDLERS[_server_only] = Session._unexpected
