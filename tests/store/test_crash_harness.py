"""The crash tests' checks on hand-made histories: each flags what it must and accepts what a
correct broker may legitimately do after a crash (no broker needed, milliseconds)."""

from __future__ import annotations

from crash_harness import (
    CONFIRMED,
    UNCONFIRMED,
    Attempt,
    Delivery,
    Problems,
    Record,
    check_dead_letters,
    check_deliveries,
    check_queue_contents,
)


def records(*items: tuple[str, int, int, str], queues: tuple[str, ...] = ("q",)) -> dict:
    out = {}
    for publisher, epoch, seq, status in items:
        attempt = Attempt(publisher, epoch, seq)
        out[attempt] = Record(attempt, queues, generation=1, published_at=100.0, status=status)
    return out


def delivery(
    publisher: str,
    epoch: int,
    seq: int,
    *,
    connection: str = "c#1",
    generation: int = 1,
    redelivered: bool = False,
    action: str | None = "ack",
    order: float = 0.0,
    received_at: float = 200.0,
    queue: str = "q",
    headers: dict | None = None,
) -> Delivery:
    return Delivery(
        Attempt(publisher, epoch, seq),
        queue,
        connection,
        generation,
        redelivered,
        received_at,
        order,
        headers,
        action,
    )


def drained(*keys: tuple[str, int, int], queue: str = "q") -> dict[str, list[Delivery]]:
    return {queue: [delivery(p, e, s, action="auto", queue=queue) for p, e, s in keys]}


def test_attempt_round_trips_through_a_body() -> None:
    attempt = Attempt("p1", 3, 42)
    assert Attempt.parse(attempt.body(100)) == attempt
    assert Attempt.parse(b"garbage") is None


def test_queue_contents_accept_republished_unconfirmed_and_missing_unconfirmed() -> None:
    history = records(
        ("p", 1, 0, CONFIRMED),
        ("p", 1, 1, UNCONFIRMED),  # stored before the crash, republished as (2, 1)
        ("p", 1, 2, UNCONFIRMED),  # lost in the crash: allowed
        ("p", 2, 1, CONFIRMED),
        ("p", 2, 2, CONFIRMED),
    )
    problems = Problems()
    check_queue_contents(
        history, drained(("p", 1, 0), ("p", 1, 1), ("p", 2, 1), ("p", 2, 2)), problems
    )
    assert not problems, problems.report()


def test_queue_contents_flag_loss_duplicates_order_and_strangers() -> None:
    history = records(("p", 1, 0, CONFIRMED), ("p", 1, 1, CONFIRMED), ("p", 1, 2, CONFIRMED))
    problems = Problems()
    check_queue_contents(
        history, drained(("p", 1, 1), ("p", 1, 0), ("p", 1, 0), ("x", 1, 0)), problems
    )
    assert problems.kinds() == {
        "CONFIRMED MESSAGE LOST",  # (1, 2)
        "order within a queue broken",  # (1, 0) after (1, 1)
        "same publish twice in a queue",
        "message nobody published",
    }


def test_deliveries_accept_redelivery_after_a_crash_or_a_requeue() -> None:
    history = records(("p", 1, 0, CONFIRMED), ("p", 1, 1, CONFIRMED), ("p", 1, 2, CONFIRMED))
    deliveries = [
        delivery("p", 1, 0, order=1, action=None),  # unacked when run 1 died
        delivery("p", 1, 1, order=2, action="ack"),  # ack lost with run 1
        delivery("p", 1, 2, order=3, action="requeue"),
        delivery("p", 1, 2, order=4, redelivered=True),  # requeued: again in the same run
        delivery("p", 1, 0, order=5, connection="c#2", generation=2, redelivered=True),
        delivery("p", 1, 1, order=6, connection="c#2", generation=2, redelivered=True),
    ]
    problems = Problems()
    check_deliveries(history, deliveries, problems, queue="q")
    assert not problems, problems.report()


def test_deliveries_flag_loss_missing_flag_same_run_repeat_and_order() -> None:
    history = records(
        ("p", 1, 0, CONFIRMED),
        ("p", 1, 1, CONFIRMED),
        ("p", 1, 2, CONFIRMED),
        ("p", 1, 3, CONFIRMED),
        ("p", 1, 4, CONFIRMED),
        ("p", 1, 5, CONFIRMED),
        ("p", 1, 6, UNCONFIRMED),
    )
    deliveries = [
        delivery("p", 1, 1, order=1),
        delivery("p", 1, 0, order=2),  # first delivery out of order on c#1
        delivery("p", 1, 0, order=3, connection="c#2", generation=1, redelivered=True),  # acked
        delivery("p", 1, 1, order=4, connection="c#3", generation=2),  # flag missing
        delivery("p", 1, 4, order=5, action=None),  # unacked when run 1 died, never back: lost
        delivery("p", 1, 5, order=6, action="requeue"),  # requeued, never back: lost
        delivery("p", 1, 6, order=7, action=None),  # the same, but never confirmed: fine
    ]  # (1, 2) and (1, 3) never delivered
    problems = Problems()
    check_deliveries(history, deliveries, problems, queue="q")
    assert problems.kinds() == {
        "order within a queue broken",
        "delivered twice in one broker run",
        "delivered again without redelivered=true",
        "CONFIRMED MESSAGE LOST",
    }
    assert problems.counts["CONFIRMED MESSAGE LOST"] == 4


def test_deliveries_flag_a_scheduled_message_delivered_early() -> None:
    history = records(("p", 1, 0, CONFIRMED), ("p", 1, 1, CONFIRMED))
    for record in history.values():
        record.delay_ms = 500  # due at 100.5
    deliveries = [
        delivery("p", 1, 0, order=1, received_at=100.52),
        delivery("p", 1, 1, order=2, received_at=100.2),
    ]
    problems = Problems()
    check_deliveries(history, deliveries, problems, queue="q", due_tolerance=0.05)
    assert problems.kinds() == {"scheduled message delivered before it was due"}
    assert problems.counts["scheduled message delivered before it was due"] == 1


def dead(publisher: str, epoch: int, seq: int, source: str, reason: str) -> Delivery:
    headers = {"x-first-death-queue": source, "x-first-death-reason": reason}
    return delivery(publisher, epoch, seq, queue="dead", action="auto", headers=headers)


def test_dead_letters_exactly_once_in_source_or_dead_letter_queue() -> None:
    history = records(
        ("p", 1, 0, CONFIRMED),
        ("p", 1, 1, CONFIRMED),
        ("p", 1, 2, UNCONFIRMED),
        queues=("ttl", "rej"),
    )
    reasons = {"ttl": "expired", "rej": "rejected"}
    ok = Problems()
    check_dead_letters(
        history,
        [
            dead("p", 1, 0, "ttl", "expired"),
            dead("p", 1, 0, "rej", "rejected"),
            dead("p", 1, 1, "ttl", "expired"),
        ],
        {"rej": [delivery("p", 1, 1, queue="rej", action="auto")]},  # not yet dead-lettered
        ok,
        reasons=reasons,
    )
    assert not ok, ok.report()

    bad = Problems()
    check_dead_letters(
        history,
        [
            dead("p", 1, 0, "ttl", "expired"),
            dead("p", 1, 0, "ttl", "expired"),  # twice
            dead("p", 1, 0, "rej", "expired"),  # wrong reason
            dead("p", 1, 1, "rej", "rejected"),  # and still in rej
        ],
        {"rej": [delivery("p", 1, 1, queue="rej", action="auto")]},
        bad,
        reasons=reasons,
    )
    assert bad.kinds() == {
        "dead-lettered more than once (or both dead-lettered and still queued)",
        "dead letter with the wrong reason",
        "CONFIRMED MESSAGE LOST",  # (1, 1) from ttl
    }
    assert bad.counts["dead-lettered more than once (or both dead-lettered and still queued)"] == 2
