"""Recovery at scale: 10,000 durable queues holding 1,000,000 persistent messages come back.

The store is filled with SQL (the fast way to make a big file); recovery then runs exactly as
``router serve`` runs it. No timing is asserted: the log of ``router serve`` and
docs/operations.md report how long it takes (about 4.5 s on the development machine).
"""

from __future__ import annotations

import time
from pathlib import Path

from router.amqp.properties import BasicProperties
from router.amqp.tables import encode_table
from router.broker.broker import Broker
from router.broker.ports import Clock
from router.store.recovery import restore
from router.store.sqlite import SEQ_BITS, open_store

QUEUES = 10_000
MESSAGES = 1_000_000


def fill(data_dir: Path) -> None:
    store = open_store(data_dir, Clock())
    db = store._db
    properties = BasicProperties(delivery_mode=2).encode()
    db.execute("BEGIN")
    db.executemany(
        "INSERT INTO queues (id, vhost, name, auto_delete, arguments) VALUES (?, '/', ?, 0, ?)",
        ((q + 1, f"q{q}", encode_table({})) for q in range(QUEUES)),
    )
    db.executemany(
        "INSERT INTO bindings (vhost, source, kind, destination, routing_key, arguments) "
        "VALUES ('/', 'amq.direct', 'q', ?, ?, x'')",
        ((f"q{q}", f"key{q}") for q in range(QUEUES)),
    )
    per_queue = MESSAGES // QUEUES
    db.executemany(
        "INSERT INTO messages (id, level, delivery_count, available_at, expires_at, exchange, "
        "routing_key, keys, properties, body) VALUES (?, 0, ?, NULL, NULL, '', ?, NULL, ?, ?)",
        (
            (
                ((q + 1) << SEQ_BITS) | (n + 1),
                1 if n == 0 else 0,  # the first of each queue had been delivered, not acked
                f"q{q}",
                properties,
                b"%05d:%03d" % (q, n),
            )
            for q in range(QUEUES)
            for n in range(per_queue)
        ),
    )
    db.execute("COMMIT")
    store.close()


def test_ten_thousand_queues_and_a_million_messages_come_back(tmp_path: Path) -> None:
    fill(tmp_path)
    clock = Clock(0.0, time.time())
    store = open_store(tmp_path, clock)
    try:
        broker = Broker(clock=clock, store=store)
        recovered = restore(broker, store)
        assert (recovered.queues, recovered.bindings, recovered.messages) == (
            QUEUES,
            QUEUES,
            MESSAGES,
        )
        queues = broker.vhosts["/"].queues
        assert len(queues) == QUEUES
        assert sum(queue.ready_count for queue in queues.values()) == MESSAGES
        sample = queues["q4321"]
        entries = sample.ready_messages()
        assert [e.message.body for e in entries] == [b"04321:%03d" % n for n in range(100)]
        assert [e.redelivered for e in entries[:2]] == [True, False]
        assert len(broker.vhosts["/"].exchanges["amq.direct"].bindings) == QUEUES
    finally:
        store.close()
