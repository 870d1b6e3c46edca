"""Recovery: rebuild a broker's durable state from the store, before it accepts connections.

Order: vhosts, users (with their tags), permissions, policies, exchanges, queues, bindings,
deduplication caches, then each queue's messages in position order. Policies come before the
queues and exchanges, so each is declared with the policy in force. A user of the config file
keeps the config's password, and its full permissions on the config's vhosts unless the store
holds other permissions for it there (set at runtime). Messages that had been delivered come back ready and redelivered;
after a crash (the store was not marked "stopped"), every message does, since a delivery made
after the last batch was not recorded.
Deadlines (TTL, scheduled delivery, retry backoff) were stored as Unix times and continue where
they were; those that passed while the broker was down fire on the first tick, once every queue
is back, so dead-lettering finds its targets.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass

from router.amqp.fastpath import shortstr
from router.amqp.properties import scan
from router.amqp.tables import FieldTable, decode_table
from router.broker.broker import Broker
from router.broker.exchanges.base import Destination
from router.broker.message import Message
from router.broker.permissions import Permission
from router.broker.policies import Policy
from router.broker.queues import Queue
from router.store.sqlite import PAGE_MIN_BODY, SQLiteStore

log = logging.getLogger("router.store")


@dataclass
class Recovered:
    vhosts: int = 0
    exchanges: int = 0
    queues: int = 0
    bindings: int = 0
    messages: int = 0
    seconds: float = 0.0


def _table(raw: bytes) -> FieldTable:
    if not raw:
        return FieldTable()
    table, _ = decode_table(raw, 0)  # stored with its length prefix (encode_table)
    return table


def restore(broker: Broker, store: SQLiteStore) -> Recovered:
    """Load everything durable from ``store`` into ``broker`` (whose store it must be)."""
    started = time.perf_counter()
    result = Recovered()
    store.loading = True
    try:
        snapshot = store.snapshot()
        for name in snapshot.vhosts:
            broker.add_vhost(name)
            result.vhosts += 1
        for name, password_hash, tags in snapshot.users:
            broker.users.setdefault(name, password_hash)  # the config file's password wins
            broker.user_tags[name] = tags
        for user, vhost_name, configure, write, read in snapshot.permissions:
            if user in broker.users and vhost_name in broker.vhosts:
                broker.permissions[(user, vhost_name)] = Permission(configure, write, read)
        for vhost_name, name, pattern, apply_to, priority, definition in snapshot.policies:
            try:
                broker.set_policy(Policy(vhost_name, name, pattern, apply_to, priority, definition))
            except ValueError as error:
                log.warning("skipping a stored policy: %s", error)
        for vhost_name, name, type_, auto_delete, internal, arguments in snapshot.exchanges:
            vhost = broker.add_vhost(vhost_name)
            vhost.declare_exchange(
                name,
                type_,
                durable=True,
                auto_delete=auto_delete,
                internal=internal,
                arguments=_table(arguments),
            )
            result.exchanges += 1
        queues = []
        upto: dict[int, int] = {}
        for queue_id, vhost_name, name, auto_delete, arguments, marked in snapshot.queues:
            vhost = broker.add_vhost(vhost_name)
            queue = vhost.declare_queue(
                name, owner=None, durable=True, auto_delete=auto_delete, arguments=_table(arguments)
            )
            queue.store_id = queue_id
            upto[queue_id] = marked
            queues.append(queue)
            result.queues += 1
        for vhost_name, source, kind, destination, routing_key, arguments in snapshot.bindings:
            vhost = broker.vhosts[vhost_name]
            target: Destination | None = (
                vhost.queues.get(destination) if kind == "q" else vhost.exchanges.get(destination)
            )
            if target is None or source not in vhost.exchanges:
                log.warning(
                    "skipping a stored binding %r -> %r in vhost %r: its %s is missing",
                    source,
                    destination,
                    vhost_name,
                    "source" if target is not None else "destination",
                )
                continue
            vhost.bind(source, target, routing_key, _table(arguments))
            result.bindings += 1
        offset = broker.clock.wall_offset
        for vhost_name, exchange_name, key, expires_at in snapshot.dedup:
            exchange = broker.vhosts[vhost_name].exchanges.get(exchange_name)
            if exchange is not None and exchange.dedup is not None:
                exchange.dedup.remember(key, expires_at - offset if expires_at else None)
        marks = []
        for queue in queues:
            result.messages += _restore_messages(store, queue, offset, upto[queue.store_id])
            if store.unclean and (queue.ready_count or queue.waiting):
                marks.append((queue.last_seq, queue.store_id))
        if marks:
            store.set_redelivered_upto(marks)
    finally:
        store.loading = False
    store.mark("running")
    result.seconds = time.perf_counter() - started
    return result


def _restore_messages(
    store: SQLiteStore, queue: Queue, offset: float, redelivered_upto: int
) -> int:
    count = 0
    restore = queue.restore
    mask = (1 << 40) - 1
    budget = store.memory_budget
    lazy = queue.options.lazy

    def bodies() -> bool:  # past the memory budget, bodies stay on disk until delivered
        return not lazy and (budget is None or store.resident < budget)

    unclean = store.unclean
    rk_cache: dict[tuple[str, str], bytes] = {}
    for rows in store.messages(queue.store_id, bodies=bodies):
        for (
            row_id,
            level,
            delivery_count,
            available_at,
            expires_at,
            exchange,
            routing_key,
            keys,
            properties,
            size,
            body,
        ) in rows:
            delivery_mode, priority, expiration = scan(properties)
            cc: tuple[str, ...] = ()
            bcc: tuple[str, ...] = ()
            if keys:
                cc_list, bcc_list = json.loads(keys)
                cc, bcc = tuple(cc_list), tuple(bcc_list)
            exchange_rk = rk_cache.get((exchange, routing_key))
            if exchange_rk is None:
                exchange_rk = rk_cache[(exchange, routing_key)] = shortstr(exchange) + shortstr(
                    routing_key
                )
            # the chunk's bodies were read while under the budget; past it, drop the rest
            paged = body is None or (size >= PAGE_MIN_BODY and not bodies())
            message = Message(
                exchange,
                routing_key,
                properties,
                b"" if paged else body,
                delivery_mode,
                priority,
                expiration,
                exchange_rk=exchange_rk,
                cc=cc,
                bcc=bcc,
                size=size,
                paged=paged,
            )
            seq = row_id & mask
            restore(
                message,
                seq,
                level=level,
                delivery_count=delivery_count,
                redelivered=delivery_count > 0 or unclean or seq <= redelivered_upto,
                expires_at=expires_at - offset if expires_at is not None else None,
                available_at=available_at - offset if available_at is not None else None,
            )
            if not paged:
                store.resident += size
            count += 1
    return count
