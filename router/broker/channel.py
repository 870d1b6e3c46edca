"""A channel's state: consumers, unacked deliveries, prefetch, confirms and transactions.

Delivery tags count from 1 per channel and are shared by basic.deliver and basic.get-ok. Unacked
deliveries sit in an ordered dict by tag, so ``multiple`` acks pop from the front in O(1) each.
``basic.qos`` with global=false sets the limit of consumers created afterwards, global=true limits
the whole channel (RabbitMQ 3.x semantics). Requeued messages return to their original positions.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from typing import TYPE_CHECKING

from router.amqp import fastpath
from router.amqp.constants import NOT_FOUND, PRECONDITION_FAILED
from router.amqp.errors import ChannelError
from router.broker.message import Message, QueuedMessage
from router.broker.queues import Queue

if TYPE_CHECKING:
    from router.broker.session import Session

Unacked = tuple[QueuedMessage, Queue, "Consumer | None"]


class Consumer:
    """A basic.consume subscription of a channel to a queue."""

    __slots__ = (
        "channel",
        "exclusive",
        "no_ack",
        "prefetch",
        "priority",
        "queue",
        "tag",
        "tag_raw",
        "timeout",
        "unacked",
    )

    def __init__(
        self,
        channel: Channel,
        queue: Queue,
        tag: str,
        *,
        no_ack: bool,
        exclusive: bool,
        priority: int,
        prefetch: int,
        timeout: int | None = None,
    ) -> None:
        self.channel = channel
        self.queue = queue
        self.tag = tag
        self.tag_raw = fastpath.shortstr(tag)
        self.no_ack = no_ack
        self.exclusive = exclusive
        self.priority = priority
        self.prefetch = prefetch
        self.timeout = timeout  # x-consumer-timeout (ms) of the consume, over the queue's
        self.unacked = 0

    def __repr__(self) -> str:
        return f"<Consumer {self.tag!r} on {self.queue.name!r}>"

    def can_take(self) -> bool:
        channel = self.channel
        if not channel.flow_active or channel.session.output_blocked:
            return False
        if self.no_ack:
            return True
        if self.prefetch and self.unacked >= self.prefetch:
            return False
        return not (channel.global_prefetch and channel.consumer_unacked >= channel.global_prefetch)

    def deliver(self, queue: Queue, entry: QueuedMessage) -> None:
        self.channel.deliver(self, queue, entry)

    def lease_expired(self, queue: Queue, entry: QueuedMessage) -> None:
        self.channel.lease_expired(self, queue, entry)


class Channel:
    """One open channel of a session."""

    def __init__(self, session: Session, number: int) -> None:
        self.session = session
        self.number = number
        self.consumers: dict[str, Consumer] = {}
        self.unacked: OrderedDict[int, Unacked] = OrderedDict()
        self.next_tag = 1
        self.prefetch_count = 0  # for consumers created from now on (global=false)
        self.global_prefetch = 0  # for the whole channel (global=true)
        self.consumer_unacked = 0
        self.flow_active = True
        self.confirm = False
        self.publish_seq = 0
        self.confirmed_upto = 0
        self.nacked: list[int] = []
        # confirms waiting for the store: (publish seq, store batch), in order
        self.held: deque[tuple[int, int]] = deque()
        # waiting for the store to commit a durable change this channel made (a declare, a
        # tx.commit): its reply is held, and the channel's next frames wait in ``deferred``
        self.paused = False
        self.deferred: list[object] = []
        self.tx = False
        self.tx_publishes: list[object] = []
        # settlements made in the open transaction: (requeue or None for ack, [(tag, record)])
        self.tx_acks: list[tuple[bool | None, list[tuple[int, Unacked]]]] = []
        self.last_queue = ""
        self.closed = False
        # direct reply-to: this channel's reply name and the consumer tag replies carry
        self.reply_to: str | None = None
        self.reply_consumer: bytes = b""
        # counters for the management API (stats.CHANNEL_FIELDS)
        self.published = 0
        self.confirmed = 0
        self.returned = 0
        self.redelivered = 0
        self.acked = 0

    @property
    def delivered(self) -> int:
        """Deliveries and basic.get-oks: one delivery tag each, so no counter is needed."""
        return self.next_tag - 1

    def counters(self) -> tuple[int, ...]:
        """The counters in ``stats.CHANNEL_FIELDS`` order."""
        return (
            self.published,
            self.confirmed,
            self.returned,
            self.delivered,
            self.redelivered,
            self.acked,
        )

    # --- delivering ----------------------------------------------------------------------------

    def deliver(self, consumer: Consumer, queue: Queue, entry: QueuedMessage) -> None:
        tag = self.next_tag
        self.next_tag = tag + 1
        message = entry.message
        session = self.session
        number = self.number
        entry.delivery_tag = tag
        if entry.redelivered:
            self.redelivered += 1
        header_payload = message.header_payload
        if entry.delivery_count > 1 and queue.options.delivery_limit is not None:
            header_payload = message.header_with("x-delivery-count", entry.delivery_count - 1)
        session.write(
            fastpath.deliver_message(
                number,
                consumer.tag_raw,
                tag,
                entry.redelivered,
                message.exchange_rk,
                header_payload,
                message.body,
                session.frame_max,
            )
        )
        if not consumer.no_ack:
            self.unacked[tag] = (entry, queue, consumer)
            consumer.unacked += 1
            self.consumer_unacked += 1

    def deliver_reply(self, message: Message) -> None:
        """A direct reply-to message: straight to this channel's reply consumer, no queue, no
        ack (RabbitMQ's direct reply-to)."""
        tag = self.next_tag
        self.next_tag = tag + 1
        session = self.session
        session.write(
            fastpath.deliver_message(
                self.number,
                self.reply_consumer,
                tag,
                False,
                message.exchange_rk,
                message.header_payload,
                message.body,
                session.frame_max,
            )
        )

    def get(self, queue: Queue, no_ack: bool) -> bool:
        """basic.get: send get-ok with the next message, or get-empty."""
        entry = queue.get(no_ack)
        number = self.number
        session = self.session
        if entry is None:
            session.write(fastpath.get_empty_frame(number))
            return False
        tag = self.next_tag
        self.next_tag = tag + 1
        entry.delivery_tag = tag
        if entry.redelivered:
            self.redelivered += 1
        message = entry.message
        header_payload = message.header_payload
        if queue.options.delivery_limit is not None:  # RabbitMQ shows the count on every get
            header_payload = message.header_with("x-delivery-count", entry.delivery_count - 1)
        session.write(
            fastpath.get_ok_frame(
                number, tag, entry.redelivered, message.exchange_rk, queue.message_count
            )
            + fastpath.content_tail(number, header_payload, message.body, session.frame_max)
        )
        if not no_ack:
            self.unacked[tag] = (entry, queue, None)
        return True

    # --- acknowledgements ----------------------------------------------------------------------

    def _take(self, delivery_tag: int, multiple: bool) -> list[Unacked]:
        """Remove and return the unacked deliveries an ack/nack/reject refers to."""
        unacked = self.unacked
        if multiple:
            if delivery_tag == 0:  # AMQP 0-9-1: tag 0 with multiple means every outstanding one
                taken = list(unacked.values())
                unacked.clear()
                return taken
            if delivery_tag not in unacked:
                raise self._unknown_tag(delivery_tag)
            taken = []
            popitem = unacked.popitem
            while unacked:
                tag, front = popitem(last=False)
                if tag > delivery_tag:  # one too far: put it back at the front
                    unacked[tag] = front
                    unacked.move_to_end(tag, last=False)
                    break
                taken.append(front)
            return taken
        record = unacked.pop(delivery_tag, None)
        if record is None:
            raise self._unknown_tag(delivery_tag)
        return [record]

    @staticmethod
    def _unknown_tag(tag: int) -> ChannelError:
        return ChannelError(PRECONDITION_FAILED, f"unknown delivery tag {tag}")

    def _release(self, records: list[Unacked]) -> None:
        for _entry, _queue, consumer in records:
            if consumer is not None:
                consumer.unacked -= 1
                self.consumer_unacked -= 1

    def ack(self, delivery_tag: int, multiple: bool) -> None:
        if self.tx:
            self.tx_acks.append((None, self._take_tagged(delivery_tag, multiple)))
            return
        records = self._take(delivery_tag, multiple)
        self.acked += len(records)
        # _release and queue.ack in one pass
        released = 0
        for entry, queue, consumer in records:
            if consumer is not None:
                consumer.unacked -= 1
                released += 1
            queue.ack(entry)
        self.consumer_unacked -= released
        self._resume(records)

    def nack(self, delivery_tag: int, multiple: bool, requeue: bool) -> None:
        if self.tx:
            self.tx_acks.append((requeue, self._take_tagged(delivery_tag, multiple)))
            return
        records = self._take(delivery_tag, multiple)
        self._release(records)
        self._settle(records, requeue)
        self._resume(records)

    def _take_tagged(self, delivery_tag: int, multiple: bool) -> list[tuple[int, Unacked]]:
        """Like ``_take`` but keeping the tags, so a tx.rollback can put them back."""
        if multiple and delivery_tag == 0:
            tags = list(self.unacked)
        elif multiple:
            if delivery_tag not in self.unacked:
                raise self._unknown_tag(delivery_tag)
            tags = [tag for tag in self.unacked if tag <= delivery_tag]
        else:
            if delivery_tag not in self.unacked:
                raise self._unknown_tag(delivery_tag)
            tags = [delivery_tag]
        return [(tag, self.unacked.pop(tag)) for tag in tags]

    def _settle(self, records: list[Unacked], requeue: bool) -> None:
        """nack / reject: back to the queues (requeue) or dead-lettered as rejected."""
        by_queue: dict[Queue, list[QueuedMessage]] = {}
        for entry, queue, _consumer in records:
            by_queue.setdefault(queue, []).append(entry)
        for queue, entries in by_queue.items():
            if requeue:
                queue.requeue(entries)
            else:
                queue.reject(entries)

    def lease_expired(self, consumer: Consumer, queue: Queue, entry: QueuedMessage) -> None:
        """A delivery outlived its consumer timeout: the message goes back to its queue and the
        consumer is cancelled (a server basic.cancel), the channel lives on."""
        record = self.unacked.get(entry.delivery_tag)
        if record is None or record[0] is not entry:
            return
        del self.unacked[entry.delivery_tag]
        self._release([record])
        queue.requeue([entry])
        if self.consumers.get(consumer.tag) is consumer:
            queue.remove_consumer(consumer)
            self.session.cancel_by_server(consumer)
        queue.dispatch()

    def _resume(self, records: list[Unacked]) -> None:
        """Credit was freed: let the queues this channel consumes from deliver again."""
        queues: dict[Queue, None] = {}
        for _entry, queue, _consumer in records:
            queues[queue] = None
        for consumer in self.consumers.values():
            queues[consumer.queue] = None
        for queue in queues:
            queue.dispatch()

    def recover(self) -> None:
        """basic.recover(requeue=true): every unacked delivery goes back to its queue."""
        records = list(self.unacked.values())
        self.unacked.clear()
        self._release(records)
        self._settle(records, requeue=True)
        self._resume(records)

    def commit(self) -> list[object]:
        """tx.commit: settle the acks/nacks/rejects made in the transaction; returns the buffered
        publishes for the session to route."""
        publishes, settlements = self.tx_publishes, self.tx_acks
        self.tx_publishes, self.tx_acks = [], []
        for requeue, tagged in settlements:
            records = [record for _tag, record in tagged]
            self._release(records)
            if requeue is None:
                self.acked += len(records)
                for entry, queue, _consumer in records:
                    queue.ack(entry)
            else:
                self._settle(records, requeue)
            self._resume(records)
        return publishes

    def rollback(self) -> None:
        """tx.rollback: drop buffered publishes; deliveries acked in the transaction are unacked
        again, and can be acked again (RabbitMQ)."""
        self.tx_publishes = []
        returned = [pair for _requeue, tagged in self.tx_acks for pair in tagged]
        self.tx_acks = []
        if returned:
            merged = sorted([*self.unacked.items(), *returned], key=lambda pair: pair[0])
            self.unacked = OrderedDict(merged)
            for _tag, (entry, queue, consumer) in returned:
                if consumer is not None:
                    queue.restart_lease(entry)

    # --- consumers -----------------------------------------------------------------------------

    def remove_consumer(self, tag: str) -> Consumer | None:
        consumer = self.consumers.pop(tag, None)
        if consumer is not None:
            consumer.queue.remove_consumer(consumer)
        return consumer

    def close(self) -> list[Queue]:
        """The channel is going away: cancel consumers, requeue unacked deliveries.

        Returns the queues that lost their last consumer (auto-delete candidates)."""
        if self.closed:
            return []
        self.closed = True
        emptied = []
        consumed: dict[Queue, None] = {}
        for tag in list(self.consumers):
            consumer = self.remove_consumer(tag)
            if consumer is not None:
                consumed[consumer.queue] = None
                if consumer.queue.consumer_count == 0:
                    emptied.append(consumer.queue)
        self.rollback()
        records = list(self.unacked.values())
        self.unacked.clear()
        self._release(records)
        self._settle(records, requeue=True)
        # the queues it took from, and those it consumed from (a single active consumer's
        # successor takes over now)
        touched = {r[1]: None for r in records}
        touched.update(consumed)
        for queue in touched:
            queue.dispatch()
        return emptied

    def resolve_queue_name(self, name: str) -> str:
        """An empty queue name means the last queue declared on this channel (RabbitMQ)."""
        if name:
            return name
        if not self.last_queue:
            raise ChannelError(NOT_FOUND, "no previously declared queue")
        return self.last_queue
