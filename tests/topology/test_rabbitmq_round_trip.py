"""The way out, checked for real against RabbitMQ 3.10 (../shared/tools/rabbitmq-reference).

1. A topology applied to router is exported as RabbitMQ definitions and imported into RabbitMQ
   with ``rabbitmqctl import_definitions``.
2. RabbitMQ's own export of that state is applied to a fresh router.
3. Both brokers now hold what the files say: a plan of the files against each is empty.

Everything lives in a vhost of its own, deleted afterwards, so the reference keeps its state.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import textwrap
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import RunningServer, reference_url, start_router

from router.broker.passwords import hash_password
from router.cli import main
from router.topology import load
from router.topology.definitions import current_from_definitions
from router.topology.plan import plan

VHOST = "router-round-trip"
NODE = os.environ.get("RABBITMQ_REF_NODE", "rabbitref@localhost")
REFERENCE_HTTP = f"http://127.0.0.1:{os.environ.get('RABBITMQ_REF_HTTP', '15673')}"
PASSWORD_HASH = hash_password("round-trip")

# Everything RabbitMQ takes without plugins: no x-delayed-message exchange here (it needs the
# delayed-message plugin on RabbitMQ) and delivery limits on quorum queues only (docs/scaling.md).
TOPOLOGY = f"""\
vhosts: [{VHOST}]
users:
  - {{name: rt-app, password_hash: '{PASSWORD_HASH}', tags: [monitoring]}}
permissions:
  - {{user: rt-app, vhost: {VHOST}, configure: '^rt\\.', write: '.*', read: '^rt\\.'}}
policies:
  - name: rt-cap
    vhost: {VHOST}
    pattern: '^rt\\.notify\\.'
    apply_to: queues
    priority: 1
    definition: {{max_length_bytes: 64MiB, message_ttl: 10m}}
exchanges:
  - {{name: rt.orders, vhost: {VHOST}, type: topic, alternate_exchange: rt.unrouted}}
  - {{name: rt.unrouted, vhost: {VHOST}, type: fanout, internal: true}}
  - {{name: rt.dlx, vhost: {VHOST}, type: direct}}
  - {{name: rt.notify, vhost: {VHOST}, type: fanout}}
  - {{name: rt.reports, vhost: {VHOST}, type: headers}}
  - {{name: rt.events, vhost: {VHOST}, type: topic, durable: false}}
queues:
  - name: rt.orders.created
    vhost: {VHOST}
    message_ttl: 30s
    max_length_bytes: 64MiB
    overflow: reject-publish
    dead_letter_exchange: rt.dlx
    dead_letter_routing_key: created
    bindings:
      - {{exchange: rt.orders, routing_keys: ['order.created.*', 'order.resubmitted.*']}}
  - name: rt.jobs
    vhost: {VHOST}
    max_priority: 9
    retry_backoff: {{initial: 1s, multiplier: 2, max: 5m}}
    bindings:
      - {{exchange: rt.dlx, routing_key: created}}
  # RabbitMQ 3.10 takes x-delivery-limit on quorum queues only (406 on a classic one)
  - {{name: rt.payments, vhost: {VHOST}, queue_type: quorum, delivery_limit: 5}}
  - {{name: rt.notify.email, vhost: {VHOST}, expires: 1h}}
  - {{name: rt.transient, vhost: {VHOST}, durable: false, auto_delete: true}}
  - name: rt.reports.pdf
    vhost: {VHOST}
    bindings:
      - {{exchange: rt.reports, arguments: {{x-match: all, format: pdf}}}}
bindings:
  - {{exchange: rt.notify, queue: rt.notify.email, vhost: {VHOST}}}
  - {{exchange: rt.orders, destination_exchange: rt.events, routing_key: '#', vhost: {VHOST}}}
"""


@pytest.fixture(autouse=True)
def wide_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "400")  # the plan table on one line per change


def rabbitmqctl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["rabbitmqctl", "-n", NODE, *args], capture_output=True, text=True, timeout=120
    )


def reference_definitions() -> dict:  # type: ignore[type-arg]
    request = urllib.request.Request(f"{REFERENCE_HTTP}/api/definitions")
    request.add_header("Authorization", "Basic Z3Vlc3Q6Z3Vlc3Q=")  # guest:guest
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.load(response)  # type: ignore[no-any-return]


@pytest.fixture
def reference() -> Iterator[None]:
    reference_url()  # starts it, or skips saying why
    if shutil.which("rabbitmqctl") is None:
        pytest.skip("rabbitmqctl is not on PATH")
    rabbitmqctl("delete_vhost", VHOST)
    rabbitmqctl("delete_user", "rt-app")
    yield
    rabbitmqctl("delete_vhost", VHOST)
    rabbitmqctl("delete_user", "rt-app")


@pytest.fixture
def routers() -> Iterator[tuple[RunningServer, RunningServer]]:
    first, second = start_router(management=True), start_router(management=True)
    try:
        yield first, second
    finally:
        first.stop()
        second.stop()


def _only_round_trip(document: dict) -> dict:  # type: ignore[type-arg]
    """The parts of a definitions document this test owns."""
    keep = {}
    for section in ("queues", "exchanges", "bindings", "policies", "permissions"):
        keep[section] = [i for i in document.get(section, []) if i.get("vhost") == VHOST]
    keep["vhosts"] = [v for v in document.get("vhosts", []) if v["name"] == VHOST]
    keep["users"] = [u for u in document.get("users", []) if u["name"] == "rt-app"]
    return keep


def test_a_router_topology_moves_to_rabbitmq_and_back_unchanged(
    reference: None,
    routers: tuple[RunningServer, RunningServer],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    first, second = routers
    files = tmp_path / "topology.yaml"
    files.write_text(textwrap.dedent(TOPOLOGY))
    desired, problems = load([str(files)])
    assert not [p for p in problems if not p.warning], problems

    # 1. files -> router -> definitions -> RabbitMQ
    assert main(["topology", "apply", str(files), "--url", first.http_url]) == 0
    exported = Path(tempfile.mkdtemp(prefix="router-rt-")) / "definitions.json"
    exported.parent.chmod(0o755)  # rabbitmqctl runs as the rabbitmq user
    code = main(
        ["topology", "export", "--url", first.http_url, "--format", "rabbitmq", "-o", str(exported)]
    )
    assert code == 0
    exported.chmod(0o644)
    result = rabbitmqctl("import_definitions", str(exported))
    assert result.returncode == 0, result.stdout + result.stderr

    # RabbitMQ holds what the files say
    on_rabbitmq = current_from_definitions(_only_round_trip(reference_definitions()))
    check = plan(desired, on_rabbitmq)
    assert check.empty, [(c.action, c.kind, c.name, c.detail) for c in check.changes]

    # 2. RabbitMQ's export -> a fresh router
    from_rabbitmq = tmp_path / "from-rabbitmq.json"
    from_rabbitmq.write_text(json.dumps(_only_round_trip(reference_definitions())))
    capsys.readouterr()
    assert main(["topology", "apply", str(from_rabbitmq), "--url", second.http_url]) == 0, (
        capsys.readouterr()
    )

    # 3. both routers and RabbitMQ match the files
    for running in (first, second):
        capsys.readouterr()
        assert main(["topology", "plan", str(files), "--url", running.http_url]) == 0
        assert "nothing to change" in capsys.readouterr().out
    capsys.readouterr()
    code = main(["topology", "plan", str(files), "--url", REFERENCE_HTTP])
    out = capsys.readouterr().out
    assert code == 0 and "nothing to change" in out, out


def test_apply_works_against_rabbitmq_itself(
    reference: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    files = tmp_path / "topology.yaml"
    files.write_text(textwrap.dedent(TOPOLOGY))
    assert main(["topology", "apply", str(files), "--url", REFERENCE_HTTP]) == 0
    capsys.readouterr()
    assert main(["topology", "apply", str(files), "--url", REFERENCE_HTTP]) == 0
    assert "nothing to change" in capsys.readouterr().out
    # a change RabbitMQ cannot make in place is a conflict there too
    changed = tmp_path / "changed.yaml"
    changed.write_text(textwrap.dedent(TOPOLOGY).replace("max_priority: 9", "max_priority: 5"))
    capsys.readouterr()
    assert main(["topology", "apply", str(changed), "--url", REFERENCE_HTTP]) == 1
    assert "x-max-priority: 9 on the broker, 5 in the files" in capsys.readouterr().out
