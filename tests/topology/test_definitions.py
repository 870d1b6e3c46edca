"""router.topology.definitions: RabbitMQ definitions in and out, and the YAML writer (export).

Round trips are lossless: YAML → topology → definitions → topology → YAML → the same topology;
export picks a friendly form (``message_ttl: 30s``) only where it reads back exactly."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from topology_helpers import HASH, OTHER_HASH, errors, load_yaml, only_error, warnings, write

from router.topology import load
from router.topology.definitions import (
    current_from_definitions,
    from_definitions,
    read_definitions,
    to_definitions,
    to_yaml,
    to_yaml_data,
)
from router.topology.model import (
    BindingSpec,
    ExchangeSpec,
    PermissionSpec,
    PolicySpec,
    QueueSpec,
    Topology,
    UserSpec,
    VHostSpec,
)
from router.topology.schema import format_duration, format_size
from router.topology.source import Where

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "config" / "topology.yaml"

# What `rabbitmqctl export_definitions` writes on RabbitMQ 3.10, written out by hand from its format:
# users' tags as a list, vhosts with limits and metadata, policies with "apply-to", the amq.*
# exchanges, and the cluster id in global_parameters.
RABBITMQ_3_10_EXPORT: dict[str, Any] = {
    "rabbit_version": "3.10.7",
    "rabbitmq_version": "3.10.7",
    "product_name": "RabbitMQ",
    "product_version": "3.10.7",
    "users": [
        {
            "name": "guest",
            "password_hash": HASH,
            "hashing_algorithm": "rabbit_password_hashing_sha256",
            "tags": ["administrator"],
            "limits": {},
        },
        {
            "name": "billing",
            "password_hash": OTHER_HASH,
            "hashing_algorithm": "rabbit_password_hashing_sha256",
            "tags": [],
            "limits": {},
        },
    ],
    "vhosts": [
        {
            "name": "/",
            "limits": [],
            "metadata": {"description": "Default virtual host", "tags": []},
        },
        {"name": "shop", "limits": [], "metadata": {"description": "", "tags": []}},
    ],
    "permissions": [
        {"user": "guest", "vhost": "/", "configure": ".*", "write": ".*", "read": ".*"},
        {
            "user": "billing",
            "vhost": "shop",
            "configure": "^billing\\.",
            "write": ".*",
            "read": ".*",
        },
    ],
    "topic_permissions": [],
    "parameters": [],
    "global_parameters": [
        {"name": "internal_cluster_id", "value": "rabbitmq-cluster-id-3b6kZ0N2ZxQ7aFKIRN-0Yw"}
    ],
    "policies": [
        {
            "vhost": "shop",
            "name": "cap",
            "pattern": "^billing\\.",
            "apply-to": "queues",
            "definition": {"max-length": 1000, "message-ttl": 60000, "ha-mode": "all"},
            "priority": 1,
        }
    ],
    "queues": [
        {
            "name": "billing.invoices",
            "vhost": "shop",
            "durable": True,
            "auto_delete": False,
            "arguments": {
                "x-queue-type": "classic",
                "x-dead-letter-exchange": "dlx",
                "x-message-ttl": 1500,
            },
        },
        {"name": "dead", "vhost": "shop", "durable": True, "auto_delete": False, "arguments": {}},
    ],
    "exchanges": [
        {
            "name": "orders",
            "vhost": "shop",
            "type": "topic",
            "durable": True,
            "auto_delete": False,
            "internal": False,
            "arguments": {"alternate-exchange": "dlx"},
        },
        {
            "name": "dlx",
            "vhost": "shop",
            "type": "fanout",
            "durable": True,
            "auto_delete": False,
            "internal": False,
            "arguments": {},
        },
        {
            "name": "amq.topic",
            "vhost": "shop",
            "type": "topic",
            "durable": True,
            "auto_delete": False,
            "internal": False,
            "arguments": {},
        },
    ],
    "bindings": [
        {
            "source": "orders",
            "vhost": "shop",
            "destination": "billing.invoices",
            "destination_type": "queue",
            "routing_key": "order.paid.*",
            "arguments": {},
        },
        {
            "source": "dlx",
            "vhost": "shop",
            "destination": "dead",
            "destination_type": "queue",
            "routing_key": "",
            "arguments": {},
        },
    ],
}


def example() -> Topology:
    topology, problems = load([str(EXAMPLE)])
    assert problems == []
    return topology


def reread(tmp_path: Path, text: str) -> Topology:
    """The topology a YAML text reads as, which must have no problems."""
    topology, problems = load_yaml(tmp_path, text, name="reread.yaml")
    assert problems == [], "\n".join(str(p) for p in problems)
    return topology


def with_default_vhost(topology: Topology) -> Topology:
    """``topology`` declaring '/' too: definitions always name it, so reading them declares it."""
    result = copy.copy(topology)
    result.vhosts = {"/": VHostSpec("/"), **topology.vhosts}
    return result


def everything() -> Topology:
    """A topology using every kind of spec, a second vhost and each argument form."""
    topology = Topology()
    topology.vhosts["shop"] = VHostSpec("shop")
    topology.users["app"] = UserSpec("app", HASH, ("monitoring", "management"))
    topology.permissions[("app", "shop")] = PermissionSpec("app", "shop", "^app\\.", ".*", "^$")
    topology.policies[("shop", "cap")] = PolicySpec(
        "shop",
        "cap",
        "^app\\.",
        "queues",
        3,
        {"max-length-bytes": 64 * 1024**2, "message-ttl": 1500, "ha-mode": "all"},
    )
    topology.exchanges[("shop", "dlx")] = ExchangeSpec("shop", "dlx", "fanout", internal=True)
    topology.exchanges[("shop", "orders")] = ExchangeSpec(
        "shop", "orders", "topic", durable=False, arguments={"alternate-exchange": "dlx"}
    )
    topology.exchanges[("/", "later")] = ExchangeSpec(
        "/", "later", "x-delayed-message", auto_delete=True, arguments={"x-delayed-type": "direct"}
    )
    topology.queues[("shop", "app.work")] = QueueSpec(
        "shop",
        "app.work",
        arguments={
            "x-message-ttl": 90_000,
            "x-max-length-bytes": 1000,
            "x-dead-letter-exchange": "dlx",
            "x-max-priority": 10,
            "x-retry-backoff": {"initial": 1000, "max": 300_000, "multiplier": 2},
            "x-queue-version": 2,
        },
    )
    topology.queues[("/", "scratch")] = QueueSpec("/", "scratch", durable=False, auto_delete=True)
    for binding in (
        BindingSpec("shop", "orders", "app.work", "queue", "order.*"),
        BindingSpec("shop", "orders", "app.work", "queue", "invoice.#"),
        BindingSpec("shop", "orders", "dlx", "exchange", "lost"),
        BindingSpec("/", "later", "scratch", "queue", ""),
        BindingSpec("/", "amq.headers", "scratch", "queue", "", {"x-match": "any", "a": 1}),
    ):
        topology.bindings[binding.key] = binding
    return topology


# --- friendly forms ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ms", "text"),
    [
        (1500, "1500ms"),
        (90_000, "90s"),
        (60_000, "1m"),
        (5_400_000, "90m"),
        (3_600_000, "1h"),
        (90_000_000, "25h"),
        (604_800_000, "7d"),
        (1, "1ms"),
    ],
)
def test_a_duration_is_written_in_its_largest_exact_unit(ms: int, text: str) -> None:
    assert format_duration(ms) == text


def test_a_zero_duration_is_written_as_a_number() -> None:
    assert format_duration(0) == 0


@pytest.mark.parametrize(
    ("size", "written"),
    [
        (64 * 1024**2, "64MiB"),
        (1024**3, "1GiB"),
        (3 * 1024, "3KiB"),
        (1536, 1536),
        (1000, 1000),
        (10**9, 10**9),
        (0, 0),
    ],
)
def test_a_size_is_written_in_binary_units_only_when_exact(size: int, written: object) -> None:
    assert format_size(size) == written


def test_export_writes_friendly_keys_with_units(tmp_path: Path) -> None:
    data = to_yaml_data(everything())
    work = next(q for q in data["queues"] if q["name"] == "app.work")
    assert work == {
        "name": "app.work",
        "vhost": "shop",
        "message_ttl": "90s",
        "max_length_bytes": 1000,
        "dead_letter_exchange": "dlx",
        "max_priority": 10,
        "retry_backoff": {"initial": "1s", "multiplier": 2, "max": "5m"},
        "arguments": {"x-queue-version": 2},
        "bindings": [{"exchange": "orders", "routing_keys": ["invoice.#", "order.*"]}],
    }


def test_export_keeps_the_raw_form_of_a_value_the_friendly_key_cannot_read_back() -> None:
    topology = Topology()
    topology.queues[("/", "q")] = QueueSpec(
        "/", "q", arguments={"x-expires": 0, "x-single-active-consumer": "yes"}
    )
    entry = to_yaml_data(topology)["queues"][0]
    assert entry == {"name": "q", "arguments": {"x-expires": 0, "x-single-active-consumer": "yes"}}


def test_export_writes_policy_keys_in_the_friendly_form(tmp_path: Path) -> None:
    [policy] = to_yaml_data(everything())["policies"]
    assert policy == {
        "name": "cap",
        "pattern": "^app\\.",
        "apply_to": "queues",
        "priority": 3,
        "definition": {"max_length_bytes": "64MiB", "message_ttl": "1500ms", "ha-mode": "all"},
        "vhost": "shop",
    }


def test_export_leaves_out_what_is_the_default() -> None:
    topology = Topology()
    topology.exchanges[("/", "e")] = ExchangeSpec("/", "e")
    topology.queues[("/", "q")] = QueueSpec("/", "q")
    topology.policies[("/", "p")] = PolicySpec("/", "p", ".*", definition={"max-length": 1})
    data = to_yaml_data(topology)
    assert data == {
        "version": 1,
        "policies": [{"name": "p", "pattern": ".*", "definition": {"max_length": 1}}],
        "exchanges": [{"name": "e", "type": "direct"}],
        "queues": [{"name": "q"}],
    }


def test_export_writes_exchange_to_exchange_bindings_on_their_own() -> None:
    assert to_yaml_data(everything())["bindings"] == [
        {
            "exchange": "orders",
            "destination_exchange": "dlx",
            "routing_key": "lost",
            "vhost": "shop",
        }
    ]


def test_export_never_writes_the_default_vhost() -> None:
    assert to_yaml_data(with_default_vhost(everything()))["vhosts"] == [{"name": "shop"}]


def test_export_starts_with_the_header_as_comments() -> None:
    text = to_yaml(Topology(), header="exported from broker\n\nby router")
    assert text.splitlines()[:4] == ["# exported from broker", "#", "# by router", "version: 1"]


def test_export_quotes_names_yaml_would_read_as_something_else(tmp_path: Path) -> None:
    topology = Topology()
    for name in ("true", "on", "null", "123", "1.10", "1:30", "2024-01-31", "~", "*", "#"):
        topology.queues[("/", name)] = QueueSpec("/", name)
    assert reread(tmp_path, to_yaml(topology)) == topology


# --- round trips -----------------------------------------------------------------------------------------


def test_the_example_round_trips_through_yaml_losslessly(tmp_path: Path) -> None:
    topology = example()
    assert reread(tmp_path, to_yaml(topology)) == topology


def test_the_example_round_trips_through_definitions(tmp_path: Path) -> None:
    topology = example()
    document = json.loads(json.dumps(to_definitions(topology)))
    back, problems = from_definitions(document)
    assert problems == []
    assert back == with_default_vhost(topology)


def test_yaml_to_definitions_to_yaml_reads_as_the_same_topology(tmp_path: Path) -> None:
    topology = example()
    through, _ = from_definitions(json.loads(json.dumps(to_definitions(topology))))
    assert reread(tmp_path, to_yaml(through)) == topology


def test_every_kind_of_spec_round_trips_through_yaml(tmp_path: Path) -> None:
    topology = everything()
    assert reread(tmp_path, to_yaml(topology)) == topology


def test_every_kind_of_spec_round_trips_through_definitions() -> None:
    topology = everything()
    back, problems = from_definitions(json.loads(json.dumps(to_definitions(topology))))
    assert problems == []
    assert back == with_default_vhost(topology)


def test_export_is_stable_a_second_time_round(tmp_path: Path) -> None:
    text = to_yaml(everything())
    assert to_yaml(reread(tmp_path, text)) == text


def test_the_yaml_written_is_plain_yaml_without_anchors() -> None:
    text = to_yaml(everything())
    assert "&" not in text and "*id" not in text
    assert yaml.safe_load(text) == to_yaml_data(everything())


# --- topology → definitions --------------------------------------------------------------------------------


def test_definitions_have_every_section_rabbitmq_exports() -> None:
    document = to_definitions(everything())
    assert list(document) == [
        "rabbit_version",
        "rabbitmq_version",
        "product_name",
        "users",
        "vhosts",
        "permissions",
        "topic_permissions",
        "parameters",
        "global_parameters",
        "policies",
        "queues",
        "exchanges",
        "bindings",
    ]
    assert document["rabbit_version"].startswith("3.10.")


def test_definitions_write_users_with_tags_as_a_list_and_the_hashing_algorithm() -> None:
    assert to_definitions(everything())["users"] == [
        {
            "name": "app",
            "password_hash": HASH,
            "hashing_algorithm": "rabbit_password_hashing_sha256",
            "tags": ["monitoring", "management"],
            "limits": {},
        }
    ]


def test_definitions_always_name_the_default_vhost() -> None:
    vhosts = to_definitions(everything())["vhosts"]
    assert [v["name"] for v in vhosts] == ["/", "shop"]
    assert vhosts[0] == {"name": "/", "limits": [], "metadata": {}}


def test_definitions_write_policies_with_apply_to_hyphenated() -> None:
    [policy] = to_definitions(everything())["policies"]
    assert policy["apply-to"] == "queues"
    assert policy["definition"] == {
        "max-length-bytes": 67_108_864,
        "message-ttl": 1500,
        "ha-mode": "all",
    }


def test_definitions_write_arguments_in_rabbitmq_s_units() -> None:
    queues = {q["name"]: q for q in to_definitions(everything())["queues"]}
    assert queues["app.work"]["arguments"]["x-message-ttl"] == 90_000
    assert queues["scratch"] == {
        "name": "scratch",
        "vhost": "/",
        "durable": False,
        "auto_delete": True,
        "arguments": {},
    }


def test_definitions_write_bindings_with_their_destination_type() -> None:
    bindings = to_definitions(everything())["bindings"]
    assert {
        "source": "orders",
        "vhost": "shop",
        "destination": "dlx",
        "destination_type": "exchange",
        "routing_key": "lost",
        "arguments": {},
    } in bindings
    assert len(bindings) == 5


def test_definitions_are_json() -> None:
    document = to_definitions(everything())
    assert json.loads(json.dumps(document)) == document


# --- definitions → topology ---------------------------------------------------------------------------------


def test_a_rabbitmq_3_10_export_imports() -> None:
    topology, problems = from_definitions(RABBITMQ_3_10_EXPORT, "rabbit.json")
    assert errors(problems) == []
    assert set(topology.vhosts) == {"/", "shop"}
    assert topology.users == {
        "guest": UserSpec("guest", HASH, ("administrator",)),
        "billing": UserSpec("billing", OTHER_HASH, ()),
    }
    assert topology.permissions[("billing", "shop")] == PermissionSpec(
        "billing", "shop", "^billing\\.", ".*", ".*"
    )
    assert topology.policies[("shop", "cap")] == PolicySpec(
        "shop",
        "cap",
        "^billing\\.",
        "queues",
        1,
        {"max-length": 1000, "message-ttl": 60000, "ha-mode": "all"},
    )
    assert topology.queues[("shop", "billing.invoices")].arguments == {
        "x-queue-type": "classic",
        "x-dead-letter-exchange": "dlx",
        "x-message-ttl": 1500,
    }
    assert set(topology.exchanges) == {("shop", "orders"), ("shop", "dlx")}  # not amq.topic
    assert topology.exchanges[("shop", "orders")].arguments == {"alternate-exchange": "dlx"}
    assert len(topology.bindings) == 2


def test_the_cluster_id_in_global_parameters_is_ignored_silently() -> None:
    _, problems = from_definitions(RABBITMQ_3_10_EXPORT, "rabbit.json")
    assert not warnings(problems)


def test_other_global_parameters_are_a_warning_not_an_error() -> None:
    document = {
        **RABBITMQ_3_10_EXPORT,
        "global_parameters": [{"name": "federation-upstream-x", "value": {}}],
    }
    _, problems = from_definitions(document, "rabbit.json")
    [warning] = warnings(problems)
    assert warning.path == "global_parameters"
    assert "not imported" in warning.message


def test_topic_permissions_and_parameters_are_warned_about() -> None:
    document = {
        **RABBITMQ_3_10_EXPORT,
        "topic_permissions": [{"user": "guest", "vhost": "/", "exchange": "amq.topic"}],
        "parameters": [{"component": "shovel", "name": "s", "vhost": "/", "value": {}}],
    }
    _, problems = from_definitions(document)
    assert [w.path for w in warnings(problems)] == [
        "topic_permissions",
        "parameters",
    ]


def test_an_import_exported_again_gives_the_same_items() -> None:
    topology, _ = from_definitions(RABBITMQ_3_10_EXPORT)
    exported = to_definitions(topology)
    for section in ("permissions", "policies", "queues", "bindings"):

        def key(item: dict[str, Any]) -> str:
            return json.dumps(item, sort_keys=True)

        assert sorted(map(key, exported[section])) == sorted(
            map(key, RABBITMQ_3_10_EXPORT[section])
        ), section


def test_user_tags_written_as_comma_separated_text_are_read_as_a_list() -> None:
    document = {
        "users": [{"name": "old", "password_hash": HASH, "tags": "administrator,monitoring"}]
    }
    topology, problems = from_definitions(document)
    assert problems == []
    assert topology.users["old"].tags == ("administrator", "monitoring")


def test_definitions_get_the_same_teaching_checks_as_yaml() -> None:
    document = {"exchanges": [{"name": "logs", "vhost": "/", "type": "fanot"}]}
    _, problems = from_definitions(document, "defs.json")
    problem = only_error(problems)
    assert (problem.where, problem.path) == (Where("defs.json"), "exchanges[0].type")
    assert problem.message == "unknown exchange type 'fanot' — did you mean 'fanout'?"


def test_a_definitions_binding_to_a_missing_queue_is_an_error() -> None:
    document = {
        "exchanges": [{"name": "e", "vhost": "/", "type": "direct"}],
        "bindings": [
            {"source": "e", "vhost": "/", "destination": "q", "destination_type": "queue"}
        ],
    }
    _, problems = from_definitions(document)
    assert only_error(problems).message == "destination queue 'q' is declared nowhere in vhost '/'"


def test_text_that_is_not_json_is_one_error_with_its_line_and_column() -> None:
    topology, problems = read_definitions('{\n  "queues": [,]\n}', "defs.json")
    assert topology == Topology()
    assert [(p.where, p.message) for p in problems] == [
        (Where("defs.json", 2, 14), "not valid JSON: Expecting value")
    ]


def test_definitions_that_are_not_an_object_are_an_error() -> None:
    _, problems = from_definitions(["queues"], "defs.json")
    assert only_error(problems).message == "definitions must be a JSON object"


def test_a_definitions_section_that_is_not_a_list_of_objects_is_an_error() -> None:
    _, problems = from_definitions({"queues": {"name": "q"}, "exchanges": ["e"]})
    assert [(p.path, p.message) for p in problems] == [
        ("exchanges", "expected a list of objects"),
        ("queues", "expected a list of objects"),
    ]


def test_a_single_vhost_export_takes_its_vhost_from_the_caller() -> None:
    # GET /api/definitions/shop: no vhosts section and no vhost on each item
    document = {
        "queues": [{"name": "q", "durable": True, "auto_delete": False, "arguments": {}}],
        "exchanges": [{"name": "e", "type": "fanout", "durable": True}],
        "bindings": [{"source": "e", "destination": "q", "destination_type": "queue"}],
    }
    topology, problems = from_definitions(document, vhost="shop")
    assert problems == []
    assert set(topology.vhosts) == {"shop"}
    assert set(topology.queues) == {("shop", "q")}
    assert [b.vhost for b in topology.bindings.values()] == ["shop"]


def test_a_definitions_file_loads_beside_yaml_files_into_one_topology(tmp_path: Path) -> None:
    write(tmp_path, "defs.json", json.dumps({"queues": [{"name": "from-json", "vhost": "/"}]}))
    write(tmp_path, "queues.yaml", "queues: [{name: from-yaml}]\n")
    topology, problems = load([str(tmp_path / "defs.json"), str(tmp_path / "queues.yaml")])
    assert problems == []
    assert set(topology.queues) == {("/", "from-json"), ("/", "from-yaml")}


# --- a broker's current state ---------------------------------------------------------------------------


def test_current_state_reads_a_rabbitmq_export_as_the_import_does() -> None:
    imported, _ = from_definitions(RABBITMQ_3_10_EXPORT)
    assert current_from_definitions(RABBITMQ_3_10_EXPORT) == imported


def test_current_state_is_taken_as_it_is_without_checks() -> None:
    document = {
        "users": [{"name": "old", "password_hash": "", "tags": "administrator"}],
        "exchanges": [
            {"name": "hash", "vhost": "/", "type": "x-consistent-hash"},
            {"name": "amq.direct", "vhost": "/", "type": "direct"},
            {"name": "", "vhost": "/", "type": "direct"},
        ],
        "queues": [{"name": "q", "vhost": "nowhere", "arguments": {"x-message-ttl": "soon"}}],
    }
    topology = current_from_definitions(document)
    assert topology.users["old"] == UserSpec("old", "", ("administrator",))
    assert list(topology.exchanges) == [("/", "hash")]
    assert topology.exchanges[("/", "hash")].type == "x-consistent-hash"
    assert topology.queues[("nowhere", "q")].arguments == {"x-message-ttl": "soon"}


def test_current_state_fills_in_rabbitmq_s_defaults() -> None:
    document = {
        "policies": [{"vhost": "/", "name": "p", "pattern": ".*"}],
        "exchanges": [{"name": "e", "vhost": "/", "type": "fanout", "arguments": None}],
        "bindings": [{"source": "e", "vhost": "/", "destination": "q"}],
    }
    topology = current_from_definitions(document)
    assert topology.policies[("/", "p")] == PolicySpec("/", "p", ".*", "all", 0, {})
    assert topology.exchanges[("/", "e")] == ExchangeSpec("/", "e", "fanout")
    assert list(topology.bindings.values()) == [BindingSpec("/", "e", "q", "queue", "")]


def test_the_current_state_of_a_topology_s_definitions_is_that_topology() -> None:
    topology = everything()
    assert current_from_definitions(to_definitions(topology)) == with_default_vhost(topology)
