"""Crash tests for durability (issue 4): the broker is a real subprocess on a data directory,
killed with SIGKILL at random moments while real clients (py-amqp, pika) publish persistent
messages with confirms and consume them, and restarted on the same directory, many times.

What is checked, over every kill/restart round of every test (``crash_harness`` has the details):

- the durable topology comes back after every restart (exchanges, queues with their arguments;
  lost bindings would make publishes come back unroutable, which is reported);
- zero confirmed messages lost: each confirmed publish is still in every queue it was routed
  to, or was consumed, or (dead-lettering) is in the dead-letter queue;
- duplicates only of what was unconfirmed (republished by the publisher) or unacked when the
  broker died (an ack not yet on disk is lost with it); never twice in one broker run;
- a message delivered again after a crash carries redelivered=true;
- order within a queue kept across restarts, per publisher;
- dead-lettering is atomic across a crash: each message ends up exactly once in its queue or in
  the dead-letter queue;
- a scheduled (``x-delayed-message``) message is delivered after a crash, and never early;
- after a clean stop (SIGTERM) and restart, nothing that was acked comes back.

The seed of the kill moments is printed (``-s``, or in the failure report);
``ROUTER_CRASH_SEED`` replays it, ``ROUTER_CRASH_ROUNDS`` changes the number of rounds of every
test (the default gives 40 kill/restart rounds in the file, 20 of them in the first test).
"""

from __future__ import annotations

import functools
import logging
import random
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from crash_harness import (
    Binding,
    Consumer,
    CrashRun,
    Delivery,
    Exchange,
    PipelinedPublisher,
    Problems,
    Queue,
    Route,
    SyncPublisher,
    check_dead_letters,
    check_deliveries,
    check_queue_contents,
    consumed,
    declare,
    drain,
    env_int,
    merged_records,
    message_count,
    not_yet_acked,
    statuses,
    verify,
)

SETTLE_TIMEOUT = 30.0  # waiting for consumers / expiry / due times after the last restart


@pytest.fixture
def crash_run(tmp_path: Path) -> Iterator[CrashRun]:
    run = CrashRun(tmp_path, CrashRun.new_seed())
    run.log(f"seed {run.seed} (rerun with ROUTER_CRASH_SEED={run.seed}); logs in {tmp_path}/logs")
    pika_logger = logging.getLogger("pika")
    level = pika_logger.level
    pika_logger.setLevel(logging.CRITICAL)  # every crash is a lost connection: no traceback each
    try:
        yield run
    finally:
        run.close()  # every client thread stopped, the broker process killed
        pika_logger.setLevel(level)


def crash_test(test: Callable[[CrashRun], None]) -> Callable[[CrashRun], None]:
    """On failure, print the seed and the tail of the last broker logs (shown with the failure)."""

    @functools.wraps(test)
    def run_test(crash_run: CrashRun) -> None:
        try:
            test(crash_run)
        except BaseException:
            print(crash_run.failure_report())
            raise

    return run_test


def rounds(default: int) -> int:
    return env_int("ROUTER_CRASH_ROUNDS", default)


def assert_clean(run: CrashRun, problems: Problems, summary: str) -> None:
    for error in run.client_errors():
        problems.add("client saw an error", error)
    for traceback in run.broker.logged_tracebacks():
        problems.add("broker logged a traceback", traceback)
    assert not problems, (
        f"seed {run.seed} (ROUTER_CRASH_SEED={run.seed}), {run.broker.kills} kills: {summary}\n"
        f"{problems.report()}"
    )
    run.log(f"ok: {summary}")


def restart_cleanly_and_expect_empty(run: CrashRun, topology: list, problems: Problems) -> None:
    """SIGTERM (a clean stop), start again: the topology is there and every queue is empty,
    since everything in them was acked (or consumed with no-ack) before the stop."""
    run.broker.terminate()
    run.broker.start()
    verify(run.broker, topology, "after a clean restart")
    for item in topology:
        if isinstance(item, Queue):
            left = message_count(run.broker, item.name)
            if left:
                problems.add(
                    "acked messages came back after a clean stop and restart",
                    f"{left} in {item.name}",
                )


# ------------------------------------------------------------------------------------------------


PUBLISH_TOPOLOGY = [
    Exchange("crash.fanout", "fanout"),
    Exchange("crash.direct", "direct"),
    Queue("crash.a"),
    Queue("crash.b"),
    Binding("crash.a", "crash.fanout"),
    Binding("crash.b", "crash.fanout"),
    Binding("crash.b", "crash.direct", "b"),
]


@crash_test
def test_confirmed_messages_survive_sigkill(crash_run: CrashRun) -> None:
    """Three publishers (two pipelined py-amqp with up to 64/16 unconfirmed in flight, one pika
    waiting for each confirm) through a durable fanout (to both queues), a durable direct
    exchange and the default exchange; 20 SIGKILLs at random moments (some a second time during
    the restart); then every queue is drained and compared with what was confirmed."""
    run = crash_run
    run.broker.start()
    declare(run.broker, PUBLISH_TOPOLOGY)
    publishers = [
        PipelinedPublisher(
            run.broker,
            "fan",
            run.client_seed(),
            Route("crash.fanout", "", ("crash.a", "crash.b")),
            rate=300,
            window=64,
        ),
        PipelinedPublisher(
            run.broker,
            "direct",
            run.client_seed(),
            Route("crash.direct", "b", ("crash.b",)),
            rate=300,
            window=16,
        ),
        SyncPublisher(
            run.broker, "default", run.client_seed(), Route("", "crash.a", ("crash.a",)), rate=150
        ),
    ]
    for publisher in publishers:
        run.add(publisher)

    run.crash_rounds(rounds(20), lambda: [p.confirmed for p in publishers], PUBLISH_TOPOLOGY)
    run.stop_clients(publishers)

    records = merged_records(publishers)
    drained = {queue: drain(run.broker, queue) for queue in ("crash.a", "crash.b")}
    problems = Problems()
    check_queue_contents(records, drained, problems)
    restart_cleanly_and_expect_empty(run, PUBLISH_TOPOLOGY, problems)
    assert_clean(
        run,
        problems,
        f"{len(records)} publishes ({statuses(records)}); drained "
        + ", ".join(f"{len(v)} from {k}" for k, v in drained.items()),
    )


# ------------------------------------------------------------------------------------------------


WORK_TOPOLOGY = [
    Exchange("work.direct", "direct"),
    Queue("work"),
    Binding("work", "work.direct", "w"),
]


def ack_or_requeue_once(rng: random.Random, delivery: Delivery) -> str:
    return "requeue" if not delivery.redelivered and rng.random() < 0.05 else "ack"


def ack_in_batches(_rng: random.Random, _delivery: Delivery) -> str:
    return "batch"


@crash_test
def test_consumers_acking_while_the_broker_dies(crash_run: CrashRun) -> None:
    """Two publishers and two consumers on one durable queue: one consumer acks each message
    (and requeues 5 % of first deliveries), the other acks with ``multiple`` every 16 messages,
    so deliveries are unacked when the broker dies. The consumers are slower than the
    publishers, so the queue keeps a backlog and messages are delivered long after they were
    stored, not only straight from the publish. Every confirmed message must end up acked:
    one delivered but unacked (or requeued) when the broker died is delivered again after the
    restart, with redelivered=true; one acked just before may come back too; queue order holds
    per connection; nothing is delivered twice within one broker run unless requeued."""
    run = crash_run
    run.broker.start()
    declare(run.broker, WORK_TOPOLOGY)
    publishers = [
        PipelinedPublisher(
            run.broker, "p1", run.client_seed(), Route("", "work", ("work",)), rate=400, window=64
        ),
        PipelinedPublisher(
            run.broker,
            "p2",
            run.client_seed(),
            Route("work.direct", "w", ("work",)),
            rate=300,
            window=32,
        ),
    ]
    consumers = [
        Consumer(
            run.broker,
            "c1",
            run.client_seed(),
            "work",
            prefetch=20,
            choose=ack_or_requeue_once,
            rate=120,
        ),
        Consumer(
            run.broker,
            "c2",
            run.client_seed(),
            "work",
            prefetch=50,
            choose=ack_in_batches,
            batch=16,
            rate=120,
        ),
    ]
    for client in [*publishers, *consumers]:
        run.add(client)

    run.crash_rounds(
        rounds(8),
        lambda: [sum(p.confirmed for p in publishers), consumed(consumers)],
        WORK_TOPOLOGY,
    )
    run.stop_clients(publishers)
    records = merged_records(publishers)
    for consumer in consumers:
        consumer.rate = None  # full speed through the backlog

    def settled() -> bool:
        deliveries = [d for consumer in consumers for d in list(consumer.deliveries)]
        return not not_yet_acked(records, deliveries, "work") and not message_count(
            run.broker, "work"
        )

    run.settle(
        settled,
        SETTLE_TIMEOUT,
        lambda: f"consumers did not ack every confirmed message: {run.client_trouble()}",
    )
    run.stop_clients(consumers)
    left = drain(run.broker, "work")
    deliveries = [d for consumer in consumers for d in consumer.deliveries] + left

    problems = Problems()
    check_deliveries(records, deliveries, problems, queue="work")
    restart_cleanly_and_expect_empty(run, WORK_TOPOLOGY, problems)
    repeats = len(deliveries) - len({d.attempt for d in deliveries})
    assert_clean(
        run,
        problems,
        f"{len(records)} publishes ({statuses(records)}); {len(deliveries)} deliveries "
        f"({repeats} repeats, {len(left)} left at the end)",
    )


# ------------------------------------------------------------------------------------------------


def reject_all(_rng: random.Random, _delivery: Delivery) -> str:
    return "reject"


@crash_test
def test_crash_during_dead_lettering(crash_run: CrashRun) -> None:
    """Persistent messages fan out to two durable queues dead-lettering to one durable
    dead-letter queue: ``dl.ttl`` expires them (x-message-ttl 50-200 ms), ``dl.rej`` has a
    consumer rejecting them. The broker dies while both keep dead-lettering; afterwards every
    confirmed message was dead-lettered from each queue exactly once."""
    run = crash_run
    ttl = run.rng.choice([50, 100, 200])
    topology = [
        Exchange("dl.in", "fanout"),
        Exchange("dl.dlx", "fanout"),
        Queue("dl.ttl", {"x-message-ttl": ttl, "x-dead-letter-exchange": "dl.dlx"}),
        Queue("dl.rej", {"x-dead-letter-exchange": "dl.dlx"}),
        Queue("dl.dead"),
        Binding("dl.ttl", "dl.in"),
        Binding("dl.rej", "dl.in"),
        Binding("dl.dead", "dl.dlx"),
    ]
    run.log(f"x-message-ttl {ttl} ms")
    run.broker.start()
    declare(run.broker, topology)
    route = Route("dl.in", "", ("dl.ttl", "dl.rej"))
    publishers = [
        PipelinedPublisher(run.broker, f"p{n}", run.client_seed(), route, rate=250, window=32)
        for n in (1, 2)
    ]
    rejector = Consumer(
        run.broker, "rejector", run.client_seed(), "dl.rej", prefetch=16, choose=reject_all
    )
    for client in [*publishers, rejector]:
        run.add(client)

    run.crash_rounds(
        rounds(6),
        lambda: [sum(p.confirmed for p in publishers), len(rejector.deliveries)],
        topology,
    )
    run.stop_clients(publishers)
    run.settle(
        lambda: (
            message_count(run.broker, "dl.ttl") == 0 and message_count(run.broker, "dl.rej") == 0
        ),
        SETTLE_TIMEOUT,
        lambda: "dl.ttl / dl.rej never emptied (expiry or rejection stopped after a restart)",
    )
    run.stop_clients([rejector])
    records = merged_records(publishers)
    left = {queue: drain(run.broker, queue) for queue in ("dl.ttl", "dl.rej")}
    dead = drain(run.broker, "dl.dead", keep_headers=True)

    problems = Problems()
    check_dead_letters(
        records, dead, left, problems, reasons={"dl.ttl": "expired", "dl.rej": "rejected"}
    )
    # The rejecting consumer's own view: nothing rejected (= dead-lettered) comes back in the
    # same broker run, redeliveries are flagged, first deliveries in queue order.
    check_deliveries(
        records, rejector.deliveries, problems, queue="dl.rej", require_confirmed=False
    )
    assert_clean(
        run,
        problems,
        f"{len(records)} publishes ({statuses(records)}); {len(dead)} dead letters, "
        f"{len(rejector.deliveries)} rejections",
    )


# ------------------------------------------------------------------------------------------------


SCHEDULED_TOPOLOGY = [
    Exchange("sched.x", "x-delayed-message", {"x-delayed-type": "direct"}),
    Queue("sched.q"),
    Binding("sched.q", "sched.x", "k"),
]


def ack_now_or_later(rng: random.Random, _delivery: Delivery) -> str:
    return "ack" if rng.random() < 0.5 else "batch"


@crash_test
def test_crash_while_scheduled_messages_come_due(crash_run: CrashRun) -> None:
    """Persistent messages with ``x-delay`` 50-1000 ms through a durable ``x-delayed-message``
    exchange, a consumer acking them as they come due, the broker killed at random moments (so
    messages come due before, during and after each crash). Every confirmed message is delivered
    after the restarts, none before its due time."""
    run = crash_run
    run.broker.start()
    declare(run.broker, SCHEDULED_TOPOLOGY)
    route = Route("sched.x", "k", ("sched.q",))
    publishers = [
        PipelinedPublisher(
            run.broker, f"p{n}", run.client_seed(), route, rate=250, window=32, delay_ms=(50, 1000)
        )
        for n in (1, 2)
    ]
    consumer = Consumer(
        run.broker, "c", run.client_seed(), "sched.q", prefetch=30, choose=ack_now_or_later
    )
    for client in [*publishers, consumer]:
        run.add(client)

    run.crash_rounds(
        rounds(6),
        lambda: [sum(p.confirmed for p in publishers), len(consumer.deliveries)],
        SCHEDULED_TOPOLOGY,
        kill_after=(0.05, 1.0),
    )
    run.stop_clients(publishers)
    records = merged_records(publishers)
    run.settle(
        lambda: not not_yet_acked(records, list(consumer.deliveries), "sched.q"),
        SETTLE_TIMEOUT,
        lambda: (
            f"{len(not_yet_acked(records, list(consumer.deliveries), 'sched.q'))} confirmed "
            f"scheduled messages not delivered and acked; {run.client_trouble()}"
        ),
    )
    run.stop_clients([consumer])
    left = drain(run.broker, "sched.q")  # unconfirmed ones may still be waiting: fine
    problems = Problems()
    check_deliveries(
        records,
        [*consumer.deliveries, *left],
        problems,
        queue="sched.q",
        check_order=False,  # delivered when due, not in publish order
        due_tolerance=0.05,
    )
    assert_clean(
        run,
        problems,
        f"{len(records)} publishes ({statuses(records)}); {len(consumer.deliveries)} deliveries",
    )
