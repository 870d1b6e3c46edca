"""A large topology goes through every pure step: 1,000 queues and 5,000 bindings validate, convert
to definitions and back, export to YAML and back, and plan against themselves as empty.

No timing assertions (the guide forbids them); run with ``-s`` to see how long each step took."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from topology_helpers import load_yaml

from router.topology.definitions import from_definitions, to_definitions, to_yaml
from router.topology.plan import plan

QUEUES = 1000
BINDINGS_PER_QUEUE = 5
EXCHANGES = 20


def large_yaml() -> str:
    lines = [
        "x-work: &work",
        "  durable: true",
        "  overflow: reject-publish",
        "  max_length_bytes: 64MiB",
        "exchanges:",
        "  - {name: dlx, type: direct}",
    ]
    lines += [f"  - {{name: ex{e}, type: topic}}" for e in range(EXCHANGES)]
    lines.append("queues:")
    for q in range(QUEUES):
        lines += [
            f"  - name: queue.{q:04d}",
            "    <<: *work",
            f"    message_ttl: {q % 60 + 1}m",
            "    dead_letter_exchange: dlx",
            "    bindings:",
        ]
        lines += [
            f"      - {{exchange: ex{(q + b) % EXCHANGES}, routing_key: 'key.{q}.{b}.#'}}"
            for b in range(BINDINGS_PER_QUEUE)
        ]
    return "\n".join(lines) + "\n"


@contextmanager
def timed(step: str) -> Iterator[None]:
    start = time.perf_counter()
    yield
    print(f"{step}: {time.perf_counter() - start:.3f} s")


def test_a_thousand_queues_and_five_thousand_bindings_go_through_every_step(tmp_path: Path) -> None:
    text = large_yaml()
    with timed("validate (load)"):
        topology, problems = load_yaml(tmp_path, text)
    assert problems == []
    assert topology.counts()["queues"] == QUEUES
    assert topology.counts()["bindings"] == QUEUES * BINDINGS_PER_QUEUE

    with timed("to definitions"):
        document = json.loads(json.dumps(to_definitions(topology)))
    with timed("from definitions"):
        through_definitions, problems = from_definitions(document)
    assert problems == []
    assert through_definitions.queues == topology.queues
    assert through_definitions.bindings == topology.bindings

    with timed("to yaml"):
        exported = to_yaml(through_definitions)
    with timed("re-read the export"):
        back, problems = load_yaml(tmp_path, exported, name="exported.yaml")
    assert problems == []
    assert back == topology

    with timed("plan against itself"):
        result = plan(topology, through_definitions, prune=True)
    assert result.empty
    assert result.unchanged == 1 + EXCHANGES + QUEUES + QUEUES * BINDINGS_PER_QUEUE
