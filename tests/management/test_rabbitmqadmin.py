"""RabbitMQ's own CLI, rabbitmqadmin 3.10, run against router's management API.

The script is served by the RabbitMQ reference's management plugin (/cli/rabbitmqadmin, no auth):
the reference is started through the ``rabbitmq_url`` fixture (tests/conftest.py), and the tests
skip with the reason when it cannot be installed or the script cannot be fetched. Each test runs
the script with this Python against a fresh router, ``-H 127.0.0.1 -P <port> -u guest -p guest``,
and checks what it prints and what router then holds: list queues / exchanges / bindings /
connections, show overview, declare queue / exchange / binding, publish (routed or not), get,
purge, delete queue / binding, close connection, export / import of definitions, the raw_json
format, and its error lines for 401 and 404 answers. The HTTP requests it makes are in
/tmp/mgmt_samples/rabbitmqadmin_http_log.txt.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pika
import pytest
from conftest import RunningServer
from pika.adapters.blocking_connection import BlockingConnection

REFERENCE_HTTP = int(os.environ.get("RABBITMQ_REF_HTTP", "15673"))


@pytest.fixture(scope="module")
def script(rabbitmq_url: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """rabbitmqadmin, downloaded from the reference RabbitMQ (skips when it cannot be)."""
    url = f"http://127.0.0.1:{REFERENCE_HTTP}/cli/rabbitmqadmin"
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            text = response.read()
    except (urllib.error.URLError, OSError) as error:
        pytest.skip(f"rabbitmqadmin could not be fetched from the reference at {url}: {error}")
    if b"rabbitmqadmin" not in text:
        pytest.skip(f"{url} did not serve the rabbitmqadmin script")
    path = tmp_path_factory.mktemp("rabbitmqadmin") / "rabbitmqadmin"
    path.write_bytes(text)
    return path


Admin = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def admin(script: Path, running: RunningServer, tmp_path: Path) -> Admin:
    """Run rabbitmqadmin against router; returns the finished process (text output)."""
    env = {**os.environ, "HOME": str(tmp_path)}  # no ~/.rabbitmqadmin.conf of the machine's
    base = [sys.executable, str(script), "-H", "127.0.0.1", "-P", str(running.http_port)]

    def run(*args: str, password: str = "guest") -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*base, "-u", "guest", "-p", password, *args],
            capture_output=True,
            text=True,
            timeout=60,
            env=env,
            cwd=tmp_path,
        )

    return run


@pytest.fixture
def amqp(running: RunningServer) -> Iterator[BlockingConnection]:
    params = pika.URLParameters(running.url)
    params.connection_attempts = 1
    params.client_properties = {"connection_name": "admin-test"}
    connection = pika.BlockingConnection(params)
    try:
        yield connection
    finally:
        if connection.is_open:
            try:
                connection.close()
            except pika.exceptions.AMQPError:
                pass  # closed by the broker (a test closed it through rabbitmqadmin)


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def table_rows(output: str) -> list[list[str]]:
    """The cells of rabbitmqadmin's ASCII table, header row first."""
    return [
        [cell.strip() for cell in line.strip().strip("|").split("|")]
        for line in output.splitlines()
        if line.startswith("|")
    ]


def router_queue(running: RunningServer, name: str):  # type: ignore[no-untyped-def]
    return running.broker.vhosts["/"].queues.get(name)


def router_exchange(running: RunningServer, name: str):  # type: ignore[no-untyped-def]
    return running.broker.vhosts["/"].exchanges.get(name)


# ---------------------------------------------------------------------------------------------
# listing


def test_list_queues_shows_each_queue_and_its_message_count(admin, amqp):
    channel = amqp.channel()
    channel.confirm_delivery()
    channel.queue_declare("orders")
    channel.queue_declare("empty")
    channel.basic_publish("", "orders", b"1")
    channel.basic_publish("", "orders", b"2")
    rows = table_rows(ok(admin("list", "queues")))
    assert rows[0] == ["name", "messages"]
    assert sorted(rows[1:]) == [["empty", "0"], ["orders", "2"]]


def test_list_exchanges_shows_names_and_types(admin):
    rows = table_rows(ok(admin("list", "exchanges")))
    assert rows[0] == ["name", "type"]
    assert ["amq.direct", "direct"] in rows
    assert ["amq.topic", "topic"] in rows
    assert ["", "direct"] in rows


def test_list_bindings_shows_source_destination_and_key(admin, amqp):
    channel = amqp.channel()
    channel.exchange_declare("ax", "fanout")
    channel.queue_declare("adminq")
    channel.queue_bind("adminq", "ax", routing_key="rk")
    rows = table_rows(ok(admin("list", "bindings")))
    assert rows[0] == ["source", "destination", "routing_key"]
    assert ["ax", "adminq", "rk"] in rows
    assert ["", "adminq", "adminq"] in rows


def test_list_connections_shows_the_pika_connection(admin, amqp):
    rows = table_rows(ok(admin("list", "connections")))
    assert rows[0] == ["name", "user", "channels"]
    ((name, user, channels),) = rows[1:]
    assert " -> 127.0.0.1:" in name
    assert (user, channels) == ("guest", "0")


def test_show_overview_reads_the_version_and_the_dotted_totals(admin, amqp):
    channel = amqp.channel()
    channel.confirm_delivery()
    channel.queue_declare("adminq")
    channel.basic_publish("", "adminq", b"x")
    rows = table_rows(ok(admin("show", "overview")))
    overview = dict(zip(rows[0], rows[1], strict=True))
    assert overview["rabbitmq_version"] == "3.10.8"
    assert overview["queue_totals.messages"] == "1"
    assert overview["object_totals.queues"] == "1"


def test_raw_json_list_queues_is_json(admin, amqp):
    amqp.channel().queue_declare("adminq")
    (queue,) = json.loads(ok(admin("-f", "raw_json", "list", "queues")))
    assert (queue["name"], queue["messages"]) == ("adminq", 0)


def test_raw_json_list_queues_with_columns_keeps_only_those(admin, amqp):
    amqp.channel().queue_declare("adminq")
    output = ok(admin("-f", "raw_json", "list", "queues", "name", "messages"))
    assert json.loads(output) == [{"name": "adminq", "messages": 0}]


# ---------------------------------------------------------------------------------------------
# declaring, publishing, getting, deleting


def test_declare_queue_creates_a_durable_queue(admin, running):
    assert ok(admin("declare", "queue", "name=adminq", "durable=true")).strip() == "queue declared"
    queue = router_queue(running, "adminq")
    assert queue is not None
    assert queue.durable is True


def test_declaring_the_same_queue_twice_succeeds(admin):
    ok(admin("declare", "queue", "name=adminq", "durable=true"))
    assert ok(admin("declare", "queue", "name=adminq", "durable=true")).strip() == "queue declared"


def test_declaring_a_queue_again_with_other_arguments_prints_the_reason(admin):
    ok(admin("declare", "queue", "name=adminq"))
    result = admin("declare", "queue", "name=adminq", 'arguments={"x-message-ttl": 1000}')
    assert result.returncode == 1
    assert "inequivalent arg 'x-message-ttl' for queue 'adminq'" in result.stdout + result.stderr


def test_publish_to_a_queue_prints_message_published(admin, running):
    ok(admin("declare", "queue", "name=adminq", "durable=true"))
    output = ok(admin("publish", "routing_key=adminq", "payload=hello"))
    assert output.strip() == "Message published"
    assert router_queue(running, "adminq").ready_count == 1


def test_publish_where_nothing_matches_prints_not_routed(admin):
    output = ok(admin("publish", "routing_key=nowhere", "payload=hello"))
    assert output.strip() == "Message published but NOT routed"


def test_get_shows_the_message_in_a_table(admin):
    ok(admin("declare", "queue", "name=adminq", "durable=true"))
    ok(admin("publish", "routing_key=adminq", "payload=hello"))
    rows = table_rows(ok(admin("get", "queue=adminq")))
    message = dict(zip(rows[0], rows[1], strict=True))
    assert message["payload"] == "hello"
    assert message["routing_key"] == "adminq"
    assert message["payload_bytes"] == "5"
    assert message["redelivered"] == "False"
    assert message["properties"] == ""  # RabbitMQ's [] for no properties prints blank


def test_get_leaves_the_message_in_the_queue(admin, running):
    ok(admin("declare", "queue", "name=adminq"))
    ok(admin("publish", "routing_key=adminq", "payload=hello"))
    ok(admin("get", "queue=adminq"))
    assert router_queue(running, "adminq").ready_count == 1


def test_declare_exchange_creates_a_fanout_exchange(admin, running):
    output = ok(admin("declare", "exchange", "name=ax", "type=fanout"))
    assert output.strip() == "exchange declared"
    assert router_exchange(running, "ax").TYPE == "fanout"


def test_declare_binding_binds_the_exchange_to_the_queue(admin, running):
    ok(admin("declare", "queue", "name=adminq"))
    ok(admin("declare", "exchange", "name=ax", "type=fanout"))
    output = ok(admin("declare", "binding", "source=ax", "destination=adminq"))
    assert output.strip() == "binding declared"
    ok(admin("publish", "exchange=ax", "routing_key=any", "payload=fanned"))
    assert router_queue(running, "adminq").ready_count == 1


def test_delete_binding_by_properties_key_unbinds(admin, running):
    ok(admin("declare", "queue", "name=adminq"))
    ok(admin("declare", "exchange", "name=ax", "type=direct"))
    ok(admin("declare", "binding", "source=ax", "destination=adminq", "routing_key=k"))
    output = ok(
        admin(
            "delete",
            "binding",
            "source=ax",
            "destination_type=queue",
            "destination=adminq",
            "properties_key=k",
        )
    )
    assert output.strip() == "binding deleted"
    assert router_exchange(running, "ax").bindings == {}


def test_purge_queue_empties_it(admin, running):
    ok(admin("declare", "queue", "name=adminq"))
    ok(admin("publish", "routing_key=adminq", "payload=hello"))
    assert ok(admin("purge", "queue", "name=adminq")).strip() == "queue purged"
    assert router_queue(running, "adminq").ready_count == 0


def test_delete_queue_removes_it(admin, running):
    ok(admin("declare", "queue", "name=adminq", "durable=true"))
    assert ok(admin("delete", "queue", "name=adminq")).strip() == "queue deleted"
    assert router_queue(running, "adminq") is None


def test_close_connection_closes_the_pika_connection(admin, running, amqp):
    rows = table_rows(ok(admin("list", "connections")))
    name = rows[1][0]
    assert ok(admin("close", "connection", f"name={name}")).strip() == "connection closed"
    with pytest.raises(pika.exceptions.ConnectionClosedByBroker) as closed:
        for _ in range(100):
            amqp.process_data_events(time_limit=0.05)
    assert closed.value.reply_code == 320


# ---------------------------------------------------------------------------------------------
# definitions


def test_export_writes_the_definitions_to_a_file(admin, amqp, tmp_path):
    channel = amqp.channel()
    channel.exchange_declare("ax", "fanout", durable=True)
    channel.queue_declare("adminq", durable=True)
    channel.queue_bind("adminq", "ax")
    target = tmp_path / "definitions.json"
    ok(admin("export", str(target)))
    definitions = json.loads(target.read_text())
    assert [q["name"] for q in definitions["queues"]] == ["adminq"]
    assert [x["name"] for x in definitions["exchanges"]] == ["ax"]
    assert [(b["source"], b["destination"]) for b in definitions["bindings"]] == [("ax", "adminq")]


def test_import_creates_what_a_definitions_file_describes(admin, running, tmp_path):
    source = tmp_path / "import.json"
    source.write_text(
        json.dumps(
            {
                "queues": [{"name": "imported", "vhost": "/", "durable": True, "arguments": {}}],
                "exchanges": [{"name": "imx", "vhost": "/", "type": "topic", "durable": True}],
                "bindings": [
                    {
                        "source": "imx",
                        "vhost": "/",
                        "destination": "imported",
                        "destination_type": "queue",
                        "routing_key": "a.#",
                        "arguments": {},
                    }
                ],
            }
        )
    )
    ok(admin("import", str(source)))
    assert router_queue(running, "imported") is not None
    assert router_exchange(running, "imx").TYPE == "topic"


# ---------------------------------------------------------------------------------------------
# errors as rabbitmqadmin prints them


def test_declaring_a_reserved_amq_exchange_prints_access_refused(admin):
    result = admin("declare", "exchange", "name=amq.mine", "type=direct")
    assert result.returncode == 1
    assert "Access refused: /api/exchanges/%2F/amq.mine" in result.stdout + result.stderr


def test_deleting_a_missing_queue_prints_not_found(admin):
    result = admin("delete", "queue", "name=nosuch")
    assert result.returncode == 1
    assert "Not found: /api/queues/%2F/nosuch" in result.stdout + result.stderr


def test_a_wrong_password_prints_access_refused(admin):
    result = admin("list", "queues", password="wrong")
    assert result.returncode == 1
    assert "Access refused: /api/queues" in result.stdout + result.stderr
