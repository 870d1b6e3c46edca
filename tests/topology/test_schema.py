"""router.topology.schema: validation that teaches. Every problem has a file:line:column, a key
path, what was found, what is allowed and, where one is close, what was probably meant; every
problem of a run is reported; friendly forms become RabbitMQ's x-arguments."""

from __future__ import annotations

from pathlib import Path

import pytest
from topology_helpers import HASH, errors, load_yaml, only_error, position, warnings, write

from router.topology import load
from router.topology.model import (
    BindingSpec,
    ExchangeSpec,
    PermissionSpec,
    PolicySpec,
    QueueSpec,
    UserSpec,
)
from router.topology.schema import (
    DURATION_FORM,
    SIZE_FORM,
    Problem,
    did_you_mean,
    parse_duration,
    parse_size,
)
from router.topology.source import Where

ROOT = Path(__file__).resolve().parents[2]


def queue_arguments(tmp_path: Path, lines: str) -> dict[str, object]:
    """The x-arguments of a queue 'q' declared with ``lines`` (indented under it)."""
    text = "exchanges: [{name: dlx}]\nqueues:\n  - name: q\n" + "".join(
        f"    {line}\n" for line in lines.strip().splitlines()
    )
    topology, problems = load_yaml(tmp_path, text)
    assert errors(problems) == [], "\n".join(str(p) for p in problems)
    return topology.queues[("/", "q")].arguments


def queue_problem(tmp_path: Path, line: str) -> Problem:
    """The one error of a queue 'q' declared with ``line`` (on line 4)."""
    _, problems = load_yaml(
        tmp_path, f"exchanges: [{{name: dlx}}]\nqueues:\n  - name: q\n    {line}\n"
    )
    return only_error(problems)


# --- problems as text ------------------------------------------------------------------------------


def test_a_problem_reads_place_path_message_then_allowed_and_hint() -> None:
    problem = Problem(
        Where("t.yaml", 4, 11), "exchanges[0].type", "unknown type", "direct, fanout", "fix it"
    )
    assert str(problem) == (
        "t.yaml:4:11: exchanges[0].type: unknown type\n    allowed: direct, fanout\n    hint: fix it"
    )


def test_a_warning_says_so_after_the_place() -> None:
    problem = Problem(Where("t.yaml", 1, 1), "users[0]", "not declared", warning=True)
    assert str(problem) == "t.yaml:1:1: warning: users[0]: not declared"


def test_a_problem_without_a_key_path_reads_place_then_message() -> None:
    assert str(Problem(Where("t.yaml", 2, 3), "", "not valid YAML")) == "t.yaml:2:3: not valid YAML"


def test_did_you_mean_names_the_closest_choice() -> None:
    assert did_you_mean("fanot", ["direct", "fanout", "topic"]) == " — did you mean 'fanout'?"


def test_did_you_mean_says_nothing_when_nothing_is_close() -> None:
    assert did_you_mean("zzz", ["direct", "fanout", "topic"]) == ""


# --- the example --------------------------------------------------------------------------------------


def test_the_example_topology_has_no_problems() -> None:
    topology, problems = load([str(ROOT / "config" / "topology.yaml")])
    assert problems == []
    assert topology.counts() == {
        "vhosts": 0,
        "users": 0,
        "permissions": 0,
        "policies": 1,
        "exchanges": 6,
        "queues": 10,
        "bindings": 13,
    }


def test_the_example_topologys_anchor_is_merged_into_each_queue() -> None:
    topology, _ = load([str(ROOT / "config" / "topology.yaml")])
    payments = topology.queues[("/", "payments")]
    assert payments.durable is True
    assert payments.arguments["x-overflow"] == "reject-publish"
    assert payments.arguments["x-max-length-bytes"] == 256 * 1024**2
    # a queue's own key overrides the anchor's
    assert topology.queues[("/", "orders.audit")].arguments["x-max-length-bytes"] == 1024**3


# --- what a valid file becomes --------------------------------------------------------------------------


def test_a_full_file_becomes_the_specs_it_declares(tmp_path: Path) -> None:
    topology, problems = load_yaml(
        tmp_path,
        f"""
        version: 1
        vhosts: [staging]
        users:
          - {{name: app, password_hash: '{HASH}', tags: [monitoring]}}
        permissions:
          - {{user: app, vhost: staging, configure: '^app\\.', write: '.*', read: '.*'}}
        policies:
          - name: cap
            vhost: staging
            pattern: '^app\\.'
            apply_to: queues
            priority: 2
            definition: {{max_length: 10}}
        exchanges:
          - {{name: orders, vhost: staging, type: topic, durable: false}}
        queues:
          - name: app.orders
            vhost: staging
            auto_delete: true
            bindings:
              - {{exchange: orders, routing_key: 'order.#'}}
        """,
    )
    assert problems == []
    assert list(topology.vhosts) == ["staging"]
    assert topology.users["app"] == UserSpec("app", HASH, ("monitoring",))
    assert topology.permissions[("app", "staging")] == PermissionSpec(
        "app", "staging", "^app\\.", ".*", ".*"
    )
    assert topology.policies[("staging", "cap")] == PolicySpec(
        "staging", "cap", "^app\\.", "queues", 2, {"max-length": 10}
    )
    assert topology.exchanges[("staging", "orders")] == ExchangeSpec(
        "staging", "orders", "topic", durable=False
    )
    assert topology.queues[("staging", "app.orders")] == QueueSpec(
        "staging", "app.orders", auto_delete=True
    )
    assert list(topology.bindings.values()) == [
        BindingSpec("staging", "orders", "app.orders", "queue", "order.#")
    ]


def test_each_spec_remembers_where_it_was_written(tmp_path: Path) -> None:
    topology, _ = load_yaml(
        tmp_path,
        """
        exchanges:
          - name: orders
        queues:
          - name: work
            bindings: [{exchange: orders}]
        """,
    )
    assert position_of(topology.exchanges[("/", "orders")].where) == (2, 5)
    assert position_of(topology.queues[("/", "work")].where) == (4, 5)
    assert position_of(next(iter(topology.bindings.values())).where) == (5, 16)


def position_of(where: Where) -> tuple[int, int]:
    return where.line, where.column


def test_an_empty_file_declares_nothing(tmp_path: Path) -> None:
    topology, problems = load_yaml(tmp_path, "# nothing yet\n")
    assert problems == []
    assert topology.summary() == "nothing declared"


def test_an_empty_section_declares_nothing(tmp_path: Path) -> None:
    topology, problems = load_yaml(tmp_path, "queues:\nexchanges: []\n")
    assert problems == []
    assert topology.summary() == "nothing declared"


def test_top_level_x_keys_hold_anchors_and_are_not_sections(tmp_path: Path) -> None:
    _, problems = load_yaml(tmp_path, "x-defaults: &d {durable: true}\n.hidden: 1\nqueues: []\n")
    assert problems == []


# --- the shape of a file ------------------------------------------------------------------------------


def test_an_unknown_section_suggests_the_closest_and_lists_the_sections(tmp_path: Path) -> None:
    _, problems = load_yaml(tmp_path, "queues: []\nexchange: []\n")
    problem = only_error(problems)
    assert position(problem) == ("topology.yaml", 2, 1)
    assert problem.path == "exchange"
    assert problem.message == "unknown section 'exchange' — did you mean 'exchanges'?"
    assert problem.allowed == (
        "vhosts, users, permissions, policies, exchanges, queues, bindings (and x-… keys for anchors)"
    )


def test_a_version_other_than_1_is_an_error_at_its_value(tmp_path: Path) -> None:
    _, problems = load_yaml(tmp_path, "version: 2\n")
    problem = only_error(problems)
    assert (position(problem), problem.message, problem.allowed) == (
        ("topology.yaml", 1, 10),
        "found 2",
        "1",
    )


def test_a_file_that_is_a_list_is_told_to_hold_a_mapping_of_sections(tmp_path: Path) -> None:
    _, problems = load_yaml(tmp_path, "- name: orders\n")
    problem = only_error(problems)
    assert problem.message == "a topology file holds a mapping of sections, found a list"
    assert problem.hint == "start the file with e.g. 'queues:' followed by a list of queues"


def test_a_section_that_is_a_mapping_is_told_to_be_a_list(tmp_path: Path) -> None:
    _, problems = load_yaml(tmp_path, "queues:\n  name: orders\n")
    problem = only_error(problems)
    assert position(problem) == ("topology.yaml", 2, 3)
    assert problem.message == "'queues' must be a list (one '- ' item per entry), found a mapping"
    assert problem.hint == "write 'queues:' then items starting with '- name: …'"


def test_an_entry_that_is_not_a_mapping_is_an_error_at_the_entry(tmp_path: Path) -> None:
    _, problems = load_yaml(tmp_path, "queues:\n  - orders\n")
    problem = only_error(problems)
    assert (position(problem), problem.path) == (("topology.yaml", 2, 5), "queues[0]")
    assert problem.message == "each entry of 'queues' must be a mapping of keys, found 'orders'"


# --- unknown keys ---------------------------------------------------------------------------------------


def test_an_unknown_key_suggests_the_closest_and_lists_the_allowed(tmp_path: Path) -> None:
    problem = queue_problem(tmp_path, "mesage_ttl: 30s")
    assert position(problem) == ("topology.yaml", 4, 5)
    assert problem.path == "queues[0].mesage_ttl"
    assert problem.message == "unknown key 'mesage_ttl' for a queue — did you mean 'message_ttl'?"
    assert problem.allowed.startswith("name, vhost, durable, auto_delete, arguments, bindings, ")
    assert "message_ttl" in problem.allowed


def test_an_unknown_key_of_a_user_says_a_user(tmp_path: Path) -> None:
    _, problems = load_yaml(
        tmp_path, f"users:\n  - {{name: app, password_hash: '{HASH}', tag: []}}\n"
    )
    assert only_error(problems).message == "unknown key 'tag' for a user — did you mean 'tags'?"


def test_an_x_argument_written_as_a_key_is_told_to_go_under_arguments(tmp_path: Path) -> None:
    problem = queue_problem(tmp_path, "x-max-length: 10")
    assert problem.hint == "x-arguments go under 'arguments:' (arguments: {x-max-length: …})"


def test_a_key_written_with_dashes_is_told_to_use_underscores(tmp_path: Path) -> None:
    problem = queue_problem(tmp_path, "dead-letter-exchange: dlx")
    assert problem.hint == "keys use underscores: 'dead_letter_exchange'"


def test_an_exclusive_queue_is_refused_with_why(tmp_path: Path) -> None:
    problem = queue_problem(tmp_path, "exclusive: true")
    assert problem.path == "queues[0].exclusive"
    assert problem.hint == (
        "exclusive queues belong to one connection and are declared by the application that uses "
        "them; remove the key"
    )


def test_a_clear_text_password_is_refused_with_the_hash_password_hint(tmp_path: Path) -> None:
    _, problems = load_yaml(tmp_path, "users:\n  - name: app\n    password: hunter2\n")
    problem = only_error(problems)  # and no second error asking for password_hash
    assert (position(problem), problem.path) == (("topology.yaml", 3, 5), "users[0].password")
    assert problem.hint == (
        "topology files never hold clear-text passwords: run 'router topology hash-password' and "
        "write the result as password_hash"
    )
    assert "hunter2" not in str(problem)


# --- types -----------------------------------------------------------------------------------------------


def test_a_boolean_key_refuses_text(tmp_path: Path) -> None:
    problem = queue_problem(tmp_path, "durable: 'no'")
    assert (position(problem), problem.path) == (("topology.yaml", 4, 14), "queues[0].durable")
    assert (problem.message, problem.allowed) == (
        "expected true or false, found 'no'",
        "true, false",
    )


def test_text_that_yaml_reads_as_a_boolean_is_refused_with_the_quoting_hint(tmp_path: Path) -> None:
    _, problems = load_yaml(tmp_path, "queues:\n  - name: on\n")
    problem = only_error(problems)
    assert (position(problem), problem.path) == (("topology.yaml", 2, 11), "queues[0].name")
    assert problem.message == "expected text, found true (a boolean)"
    assert "quote it" in problem.hint


def test_text_that_yaml_reads_as_a_number_keeps_the_text_written(tmp_path: Path) -> None:
    topology, problems = load_yaml(
        tmp_path,
        """
        exchanges: [{name: 2024}]
        queues:
          - name: 010
            bindings: [{exchange: 2024, routing_key: 1.10}, {exchange: 2024, routing_key: 1:30}]
        """,
    )
    assert problems == []
    assert list(topology.exchanges) == [("/", "2024")]
    assert list(topology.queues) == [("/", "010")]
    assert sorted(b.routing_key for b in topology.bindings.values()) == ["1.10", "1:30"]


def test_a_list_where_text_belongs_is_refused(tmp_path: Path) -> None:
    _, problems = load_yaml(tmp_path, "queues:\n  - name: [a, b]\n")
    assert only_error(problems).message == "expected text, found a list"


def test_an_entry_without_a_name_is_an_error_at_the_entry(tmp_path: Path) -> None:
    _, problems = load_yaml(tmp_path, "queues:\n  - durable: true\n")
    problem = only_error(problems)
    assert (position(problem), problem.message, problem.hint) == (
        ("topology.yaml", 2, 5),
        "a queue needs 'name'",
        "add 'name: …'",
    )


def test_a_name_longer_than_255_bytes_of_utf8_is_refused(tmp_path: Path) -> None:
    name = "é" * 128  # 128 characters, 256 bytes
    _, problems = load_yaml(tmp_path, f"queues:\n  - name: {name}\n")
    problem = only_error(problems)
    assert (problem.message, problem.allowed) == (
        "queue name is 256 bytes long",
        "at most 255 bytes of UTF-8",
    )


# --- durations ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("written", "ms"),
    [
        ("500ms", 500),
        ("30s", 30_000),
        ("1.5s", 1500),
        ("5m", 300_000),
        ("5min", 300_000),
        ("1h", 3_600_000),
        ("1h30m", 5_400_000),
        ("2h 15m 10s", 8_110_000),
        ("7d", 604_800_000),
        ("30S", 30_000),
        (" 30 s ", 30_000),
        ("1500", 1500),
        (1500, 1500),
        (1500.0, 1500),
        (0, 0),
    ],
)
def test_a_duration_is_read_in_each_of_its_forms(written: object, ms: int) -> None:
    assert parse_duration(written) == ms


@pytest.mark.parametrize(
    "written",
    ["30 seconds", "30sec", "5x", "-5s", "s", "1m30", "", "1.5", "soon", True, 1.5, None, [30]],
)
def test_what_is_not_a_duration_is_not_read_as_one(written: object) -> None:
    assert parse_duration(written) is None


def test_a_friendly_duration_becomes_milliseconds(tmp_path: Path) -> None:
    arguments = queue_arguments(tmp_path, "message_ttl: 30s\nexpires: 1h\nconsumer_timeout: 30m")
    assert arguments == {
        "x-message-ttl": 30_000,
        "x-expires": 3_600_000,
        "x-consumer-timeout": 1_800_000,
    }


def test_a_bad_duration_is_refused_with_the_forms_allowed(tmp_path: Path) -> None:
    problem = queue_problem(tmp_path, "message_ttl: 30 seconds")
    assert (position(problem), problem.path) == (("topology.yaml", 4, 18), "queues[0].message_ttl")
    assert problem.message == "found '30 seconds'"
    assert problem.allowed == f"{DURATION_FORM}, 0 or more"


def test_a_negative_duration_is_refused(tmp_path: Path) -> None:
    assert queue_problem(tmp_path, "message_ttl: -1").message == "found -1"


def test_a_fractional_number_of_milliseconds_is_refused(tmp_path: Path) -> None:
    assert queue_problem(tmp_path, "message_ttl: 1.5").message == "found 1.5"


def test_message_ttl_may_be_zero_but_expires_must_be_more(tmp_path: Path) -> None:
    assert queue_arguments(tmp_path, "message_ttl: 0") == {"x-message-ttl": 0}
    problem = queue_problem(tmp_path, "expires: 0s")
    assert (problem.message, problem.allowed) == ("found '0s'", f"{DURATION_FORM}, more than 0")


# --- sizes ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("written", "size"),
    [
        ("64MiB", 64 * 1024**2),
        ("64mib", 64 * 1024**2),
        ("512KiB", 512 * 1024),
        ("1GiB", 1024**3),
        ("1TiB", 1024**4),
        ("1GB", 10**9),
        ("10 kb", 10_000),
        ("1.5KiB", 1536),
        ("100B", 100),
        ("2048", 2048),
        (2048, 2048),
        (0, 0),
    ],
)
def test_a_size_is_read_in_each_of_its_forms(written: object, size: int) -> None:
    assert parse_size(written) == size


@pytest.mark.parametrize("written", ["64M", "64 MegaBytes", "lots", "-1KiB", "", True, 1.5, None])
def test_what_is_not_a_size_is_not_read_as_one(written: object) -> None:
    assert parse_size(written) is None


def test_a_friendly_size_becomes_bytes(tmp_path: Path) -> None:
    assert queue_arguments(tmp_path, "max_length_bytes: 64MiB") == {
        "x-max-length-bytes": 67_108_864
    }


def test_a_bad_size_is_refused_with_the_forms_allowed(tmp_path: Path) -> None:
    problem = queue_problem(tmp_path, "max_length_bytes: 64 MegaBytes")
    assert (position(problem), problem.path) == (
        ("topology.yaml", 4, 23),
        "queues[0].max_length_bytes",
    )
    assert (problem.message, problem.allowed) == ("found '64 MegaBytes'", SIZE_FORM)


# --- counts, priorities, enums, booleans ----------------------------------------------------------


def test_a_negative_count_is_refused(tmp_path: Path) -> None:
    problem = queue_problem(tmp_path, "max_length: -1")
    assert (problem.message, problem.allowed) == ("found -1", "an integer, 0 or more")


def test_a_count_written_as_text_is_refused(tmp_path: Path) -> None:
    assert queue_problem(tmp_path, "max_length: many").message == "found 'many'"


def test_max_priority_is_read_as_x_max_priority(tmp_path: Path) -> None:
    assert queue_arguments(tmp_path, "max_priority: 10") == {"x-max-priority": 10}


@pytest.mark.parametrize("levels", [0, 256])
def test_max_priority_outside_1_to_255_is_refused_with_advice(tmp_path: Path, levels: int) -> None:
    problem = queue_problem(tmp_path, f"max_priority: {levels}")
    assert (problem.message, problem.allowed) == (f"found {levels}", "an integer from 1 to 255")
    assert problem.hint == "10 levels or fewer is usual: every level costs memory per queue"


def test_an_enum_value_suggests_the_closest_choice(tmp_path: Path) -> None:
    problem = queue_problem(tmp_path, "overflow: drop-tail")
    assert (position(problem), problem.path) == (("topology.yaml", 4, 15), "queues[0].overflow")
    assert problem.message == "found 'drop-tail' — did you mean 'drop-head'?"
    assert problem.allowed == "drop-head, reject-publish, reject-publish-dlx"


def test_queue_mode_and_type_take_their_choices(tmp_path: Path) -> None:
    arguments = queue_arguments(tmp_path, "queue_mode: lazy\nqueue_type: classic")
    assert arguments == {"x-queue-mode": "lazy", "x-queue-type": "classic"}
    assert queue_problem(tmp_path, "queue_type: stream").allowed == "classic, quorum"


def test_boolean_friendly_keys_become_boolean_arguments(tmp_path: Path) -> None:
    arguments = queue_arguments(tmp_path, "single_active_consumer: true\ndeduplication: false")
    assert arguments == {"x-single-active-consumer": True, "x-message-deduplication": False}


def test_a_boolean_friendly_key_refuses_text(tmp_path: Path) -> None:
    problem = queue_problem(tmp_path, "single_active_consumer: 'yes'")
    assert (problem.message, problem.allowed) == ("found 'yes'", "true, false")


# --- retry backoff -----------------------------------------------------------------------------------------


def test_retry_backoff_reads_its_durations(tmp_path: Path) -> None:
    arguments = queue_arguments(
        tmp_path, "retry_backoff: {initial: 1s, multiplier: 2, max: 5m, jitter: 0.1}"
    )
    assert arguments == {
        "x-retry-backoff": {"initial": 1000, "multiplier": 2, "max": 300_000, "jitter": 0.1}
    }


def test_retry_backoff_needs_initial(tmp_path: Path) -> None:
    problem = queue_problem(tmp_path, "retry_backoff: {multiplier: 2}")
    assert (problem.message, problem.hint) == ("retry_backoff needs 'initial'", "initial: 1s")


def test_retry_backoff_refuses_a_multiplier_below_1(tmp_path: Path) -> None:
    problem = queue_problem(tmp_path, "retry_backoff: {initial: 1s, multiplier: 0.5}")
    assert problem.path == "queues[0].retry_backoff.multiplier"
    assert problem.allowed == "a number, 1 or more (2 doubles the delay each time)"


def test_retry_backoff_refuses_jitter_above_1(tmp_path: Path) -> None:
    problem = queue_problem(tmp_path, "retry_backoff: {initial: 1s, jitter: 2}")
    assert problem.path == "queues[0].retry_backoff.jitter"


def test_retry_backoff_refuses_a_max_shorter_than_initial(tmp_path: Path) -> None:
    problem = queue_problem(tmp_path, "retry_backoff: {initial: 1m, max: 10s}")
    assert (problem.path, problem.message) == (
        "queues[0].retry_backoff.max",
        "max (10s) is shorter than initial (1m)",
    )


def test_retry_backoff_refuses_a_bad_duration(tmp_path: Path) -> None:
    problem = queue_problem(tmp_path, "retry_backoff: {initial: soon}")
    assert (problem.path, problem.message) == ("queues[0].retry_backoff.initial", "found 'soon'")


def test_retry_backoff_suggests_the_closest_key(tmp_path: Path) -> None:
    problem = queue_problem(tmp_path, "retry_backoff: {initial: 1s, multipler: 2}")
    assert problem.message == (
        "unknown key 'multipler' for a retry_backoff — did you mean 'multiplier'?"
    )


def test_retry_backoff_must_be_a_mapping(tmp_path: Path) -> None:
    problem = queue_problem(tmp_path, "retry_backoff: 1s")
    assert (problem.message, problem.allowed) == (
        "expected a mapping, found '1s'",
        "{initial: 1s, multiplier: 2, max: 5m, jitter: 0.1}",
    )


# --- raw x-arguments ---------------------------------------------------------------------------------------


def test_the_raw_x_argument_form_is_accepted_and_equals_the_friendly_form(tmp_path: Path) -> None:
    friendly = queue_arguments(
        tmp_path,
        "message_ttl: 30s\nmax_length_bytes: 64MiB\ndead_letter_exchange: dlx\nmax_priority: 10",
    )
    raw = queue_arguments(
        tmp_path,
        "arguments: {x-message-ttl: 30000, x-max-length-bytes: 67108864, "
        "x-dead-letter-exchange: dlx, x-max-priority: 10}",
    )
    assert raw == friendly


def test_a_raw_duration_with_units_is_told_to_use_the_friendly_key(tmp_path: Path) -> None:
    problem = queue_problem(tmp_path, "arguments: {x-message-ttl: 30s}")
    assert (position(problem), problem.path) == (
        ("topology.yaml", 4, 32),
        "queues[0].arguments.x-message-ttl",
    )
    assert problem.message == "found '30s'; raw x-arguments take plain integers (milliseconds)"
    assert problem.hint == "write 'message_ttl: 30s' beside 'arguments' to use units"


def test_a_raw_argument_is_checked_like_its_friendly_key(tmp_path: Path) -> None:
    problem = queue_problem(tmp_path, "arguments: {x-overflow: drop-tail}")
    assert problem.message == "found 'drop-tail' — did you mean 'drop-head'?"


def test_one_argument_set_both_ways_is_an_error(tmp_path: Path) -> None:
    _, problems = load_yaml(
        tmp_path,
        "queues:\n  - name: q\n    message_ttl: 1s\n    arguments: {x-message-ttl: 1000}\n",
    )
    problem = only_error(problems)
    assert (position(problem), problem.path) == (
        ("topology.yaml", 4, 17),
        "queues[0].arguments.x-message-ttl",
    )
    assert problem.message == "'x-message-ttl' is also set by 'message_ttl'"
    assert problem.hint == "keep one of the two"


def test_a_misspelt_raw_argument_is_a_warning_with_did_you_mean(tmp_path: Path) -> None:
    _, problems = load_yaml(tmp_path, "queues:\n  - {name: q, arguments: {x-max-lenght: 5}}\n")
    assert errors(problems) == []
    [warning] = warnings(problems)
    assert warning.message == "unknown argument 'x-max-lenght' — did you mean 'x-max-length'?"
    assert position(warning) == ("topology.yaml", 2, 27)


def test_an_argument_unlike_any_known_one_is_kept_as_written(tmp_path: Path) -> None:
    topology, problems = load_yaml(
        tmp_path, "queues:\n  - {name: q, arguments: {app-owner: billing, level: 3}}\n"
    )
    assert problems == []
    assert topology.queues[("/", "q")].arguments == {"app-owner": "billing", "level": 3}


def test_arguments_must_be_a_mapping(tmp_path: Path) -> None:
    problem = queue_problem(tmp_path, "arguments: [x-max-length]")
    assert problem.message == "expected a mapping of arguments, found a list"


# --- exchanges ------------------------------------------------------------------------------------------


def test_an_unknown_exchange_type_suggests_the_closest(tmp_path: Path) -> None:
    _, problems = load_yaml(tmp_path, "exchanges:\n  - name: logs\n    type: fanot\n")
    problem = only_error(problems)
    assert (position(problem), problem.path) == (("topology.yaml", 3, 11), "exchanges[0].type")
    assert problem.message == "unknown exchange type 'fanot' — did you mean 'fanout'?"
    assert problem.allowed == "direct, fanout, topic, headers, x-delayed-message"


def test_an_exchange_type_defaults_to_direct(tmp_path: Path) -> None:
    topology, _ = load_yaml(tmp_path, "exchanges: [{name: e}]\n")
    assert topology.exchanges[("/", "e")].type == "direct"


@pytest.mark.parametrize("name", ["amq.custom", "''"])
def test_reserved_exchange_names_are_refused(tmp_path: Path, name: str) -> None:
    _, problems = load_yaml(tmp_path, f"exchanges:\n  - name: {name}\n")
    problem = only_error(problems)
    assert (position(problem), problem.path) == (("topology.yaml", 2, 11), "exchanges[0].name")
    assert "is reserved" in problem.message


@pytest.mark.parametrize("name", ["amq.gen-1", "''"])
def test_reserved_queue_names_are_refused(tmp_path: Path, name: str) -> None:
    _, problems = load_yaml(tmp_path, f"queues:\n  - name: {name}\n")
    problem = only_error(problems)
    assert problem.path == "queues[0].name"
    assert problem.hint == "give the queue a name of its own"


def test_an_x_delayed_message_exchange_needs_delayed_type(tmp_path: Path) -> None:
    _, problems = load_yaml(tmp_path, "exchanges:\n  - name: later\n    type: x-delayed-message\n")
    problem = only_error(problems)
    assert (position(problem), problem.path) == (("topology.yaml", 2, 5), "exchanges[0]")
    assert problem.message == (
        "an x-delayed-message exchange needs 'delayed_type', the type it routes as"
    )
    assert (problem.allowed, problem.hint) == (
        "direct, fanout, topic, headers",
        "delayed_type: direct",
    )


def test_an_x_delayed_message_exchange_becomes_x_delayed_type(tmp_path: Path) -> None:
    topology, problems = load_yaml(
        tmp_path, "exchanges: [{name: later, type: x-delayed-message, delayed_type: topic}]\n"
    )
    assert problems == []
    assert topology.exchanges[("/", "later")].arguments == {"x-delayed-type": "topic"}


def test_delayed_type_on_another_type_of_exchange_is_an_error(tmp_path: Path) -> None:
    _, problems = load_yaml(tmp_path, "exchanges: [{name: e, type: topic, delayed_type: direct}]\n")
    assert only_error(problems).message == (
        "'delayed_type' is only for x-delayed-message exchanges, not topic"
    )


def test_an_exchange_flag_must_be_a_boolean(tmp_path: Path) -> None:
    _, problems = load_yaml(tmp_path, "exchanges: [{name: e, internal: 1}]\n")
    problem = only_error(problems)
    assert (problem.path, problem.message) == (
        "exchanges[0].internal",
        "expected true or false, found 1",
    )


# --- users and permissions ---------------------------------------------------------------------------


def test_a_password_hash_that_is_not_one_is_refused_with_how_to_make_one(tmp_path: Path) -> None:
    _, problems = load_yaml(tmp_path, "users:\n  - {name: app, password_hash: hunter2}\n")
    problem = only_error(problems)
    assert (position(problem), problem.path) == (("topology.yaml", 2, 32), "users[0].password_hash")
    assert problem.message.startswith("not a password hash")
    assert "router topology hash-password" in problem.hint


def test_a_base64_hash_of_the_wrong_length_is_refused(tmp_path: Path) -> None:
    _, problems = load_yaml(tmp_path, f"users:\n  - {{name: app, password_hash: '{HASH[:-8]}'}}\n")
    assert only_error(problems).path == "users[0].password_hash"


def test_a_user_needs_a_password_hash(tmp_path: Path) -> None:
    _, problems = load_yaml(tmp_path, "users:\n  - name: app\n")
    assert only_error(problems).message == "a user needs 'password_hash'"


def test_a_hashing_algorithm_other_than_sha256_is_refused(tmp_path: Path) -> None:
    _, problems = load_yaml(
        tmp_path,
        f"users:\n  - {{name: app, password_hash: '{HASH}', "
        "hashing_algorithm: rabbit_password_hashing_md5}\n",
    )
    problem = only_error(problems)
    assert (problem.path, problem.allowed) == (
        "users[0].hashing_algorithm",
        "rabbit_password_hashing_sha256",
    )


def test_tags_may_be_a_list_or_comma_separated_text(tmp_path: Path) -> None:
    topology, problems = load_yaml(
        tmp_path,
        f"users:\n  - {{name: a, password_hash: '{HASH}', tags: [monitoring, management]}}\n"
        f"  - {{name: b, password_hash: '{HASH}', tags: 'monitoring, management'}}\n",
    )
    assert problems == []
    assert topology.users["a"].tags == topology.users["b"].tags == ("monitoring", "management")


def test_tags_that_are_neither_list_nor_text_are_refused(tmp_path: Path) -> None:
    _, problems = load_yaml(
        tmp_path, f"users:\n  - {{name: a, password_hash: '{HASH}', tags: 3}}\n"
    )
    assert only_error(problems).path == "users[0].tags"


def test_a_permission_regex_that_does_not_compile_is_an_error_at_it(tmp_path: Path) -> None:
    _, problems = load_yaml(
        tmp_path,
        f"users: [{{name: app, password_hash: '{HASH}'}}]\n"
        "permissions:\n  - {user: app, configure: '(', write: '.*', read: '.*'}\n",
    )
    problem = only_error(problems)
    assert (position(problem), problem.path) == (
        ("topology.yaml", 3, 28),
        "permissions[0].configure",
    )
    assert problem.message.startswith("the regular expression '(' does not compile")
    assert "escape dots" in problem.hint


def test_a_permission_needs_all_three_regexes(tmp_path: Path) -> None:
    _, problems = load_yaml(
        tmp_path,
        f"users: [{{name: app, password_hash: '{HASH}'}}]\n"
        "permissions:\n  - {user: app, configure: '.*', write: '.*'}\n",
    )
    problem = only_error(problems)
    assert (problem.message, problem.hint) == (
        "a permission needs 'read'",
        "read: '.*' allows every name, '^$' allows none",
    )


def test_a_permission_for_a_user_not_in_the_files_is_only_a_warning(tmp_path: Path) -> None:
    topology, problems = load_yaml(
        tmp_path, "permissions:\n  - {user: admin, configure: '.*', write: '.*', read: '.*'}\n"
    )
    assert errors(problems) == []
    [warning] = warnings(problems)
    assert position(warning) == ("topology.yaml", 2, 12)
    assert "user 'admin' is not declared in these files" in warning.message
    assert ("admin", "/") in topology.permissions


# --- policies -------------------------------------------------------------------------------------------


def policy_problem(tmp_path: Path, lines: str) -> Problem:
    text = "exchanges: [{name: dlx}]\npolicies:\n  - name: p\n    pattern: '^q'\n" + "".join(
        f"    {line}\n" for line in lines.strip().splitlines()
    )
    _, problems = load_yaml(tmp_path, text)
    return only_error(problems)


def test_a_policy_pattern_that_does_not_compile_is_an_error_at_it(tmp_path: Path) -> None:
    _, problems = load_yaml(
        tmp_path, "policies:\n  - name: p\n    pattern: '(['\n    definition: {max_length: 1}\n"
    )
    problem = only_error(problems)
    assert (position(problem), problem.path) == (("topology.yaml", 3, 14), "policies[0].pattern")
    assert problem.message.startswith("the regular expression '([' does not compile")


def test_a_policy_apply_to_suggests_the_closest(tmp_path: Path) -> None:
    problem = policy_problem(tmp_path, "apply_to: queue\ndefinition: {max_length: 1}")
    assert (problem.path, problem.message, problem.allowed) == (
        "policies[0].apply_to",
        "found 'queue' — did you mean 'queues'?",
        "queues, exchanges, all",
    )


def test_a_policy_priority_must_be_an_integer(tmp_path: Path) -> None:
    problem = policy_problem(tmp_path, "priority: high\ndefinition: {max_length: 1}")
    assert (problem.path, problem.message) == ("policies[0].priority", "found 'high'")


def test_a_policy_needs_a_definition(tmp_path: Path) -> None:
    problem = policy_problem(tmp_path, "apply_to: queues")
    assert problem.message == "a policy needs 'definition'"


def test_an_empty_policy_definition_is_refused(tmp_path: Path) -> None:
    problem = policy_problem(tmp_path, "definition: {}")
    assert problem.message == "expected a mapping of policy keys, found a mapping"
    assert problem.allowed.startswith("message_ttl, expires, max_length")


def test_max_priority_in_a_policy_is_refused_saying_where_it_belongs(tmp_path: Path) -> None:
    problem = policy_problem(tmp_path, "definition: {max_priority: 10}")
    assert (position(problem), problem.path) == (
        ("topology.yaml", 5, 18),
        "policies[0].definition.max_priority",
    )
    assert problem.message == "unknown policy key 'max_priority'"
    assert problem.hint == (
        "RabbitMQ does not set priorities by policy: use max_priority on the queue itself"
    )


def test_an_unknown_policy_key_suggests_the_closest(tmp_path: Path) -> None:
    problem = policy_problem(tmp_path, "definition: {max_lenght: 10}")
    assert problem.message == "unknown policy key 'max_lenght' — did you mean 'max_length'?"


def test_a_policy_takes_friendly_and_rabbitmq_keys_alike(tmp_path: Path) -> None:
    topology, problems = load_yaml(
        tmp_path,
        """
        exchanges: [{name: dlx}]
        policies:
          - name: friendly
            pattern: '^a'
            definition: {message_ttl: 30s, max_length_bytes: 1KiB, dead_letter_exchange: dlx}
          - name: rabbit
            pattern: '^b'
            definition: {message-ttl: 30000, max-length-bytes: 1024, dead-letter-exchange: dlx}
        """,
    )
    assert problems == []
    friendly = topology.policies[("/", "friendly")].definition
    assert friendly == topology.policies[("/", "rabbit")].definition
    assert friendly == {
        "message-ttl": 30000,
        "max-length-bytes": 1024,
        "dead-letter-exchange": "dlx",
    }


def test_one_policy_key_written_both_ways_is_an_error(tmp_path: Path) -> None:
    problem = policy_problem(tmp_path, "definition: {max_length: 1, max-length: 2}")
    assert problem.message == "'max-length' is set twice (as - and as _)"


def test_rabbitmq_cluster_policy_keys_are_kept_as_written(tmp_path: Path) -> None:
    topology, problems = load_yaml(
        tmp_path, "policies:\n  - {name: ha, pattern: '.*', definition: {ha-mode: all}}\n"
    )
    assert problems == []
    assert topology.policies[("/", "ha")].definition == {"ha-mode": "all"}


def test_a_policy_dead_letter_exchange_must_be_declared(tmp_path: Path) -> None:
    problem = policy_problem(tmp_path, "definition: {dead_letter_exchange: dxl}")
    assert problem.path == "policies[0].definition.dead_letter_exchange"
    assert problem.message == (
        "dead-letter exchange 'dxl' is declared nowhere in vhost '/' — did you mean 'dlx'?"
    )


def test_two_policies_of_one_priority_matching_one_queue_is_a_warning(tmp_path: Path) -> None:
    _, problems = load_yaml(
        tmp_path,
        """
        queues: [{name: orders}]
        policies:
          - {name: a, pattern: '^ord', definition: {max_length: 1}}
          - {name: b, pattern: 'ers$', definition: {max_length: 2}}
          - {name: c, pattern: 'ers$', priority: 1, definition: {max_length: 3}}
        """,
    )
    assert errors(problems) == []
    [warning] = warnings(problems)
    assert position(warning) == ("topology.yaml", 4, 5)
    assert warning.path == "policies 'a', 'b'"
    assert warning.message == (
        "both match queue 'orders' in vhost '/' with priority 0; only one policy applies to an object"
    )


# --- duplicates ------------------------------------------------------------------------------------------


def test_a_queue_declared_in_two_files_names_both_places(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", "queues:\n  - name: orders\n")
    write(tmp_path, "b.yaml", "exchanges: []\nqueues:\n  - name: orders\n")
    _, problems = load([str(tmp_path)])
    problem = only_error(problems)
    assert position(problem) == ("b.yaml", 3, 5)
    first = tmp_path / "a.yaml"
    assert problem.message == (
        f"queue 'orders' in vhost '/' is declared twice; the first is at {first}:2:5"
    )
    assert "merged into one topology" in problem.hint


def test_a_second_declaration_is_a_duplicate_even_when_the_first_has_problems(
    tmp_path: Path,
) -> None:
    _, problems = load_yaml(
        tmp_path, "queues:\n  - name: q\n    message_ttl: soon\n  - {name: q}\n"
    )
    assert [(position(p), p.path) for p in problems] == [
        (("topology.yaml", 3, 18), "queues[0].message_ttl"),
        (("topology.yaml", 4, 5), "queues[1]"),
    ]
    assert problems[1].message.startswith("queue 'q' in vhost '/' is declared twice")


def test_one_name_in_two_vhosts_is_two_queues(tmp_path: Path) -> None:
    topology, problems = load_yaml(
        tmp_path, "vhosts: [staging]\nqueues:\n  - {name: q}\n  - {name: q, vhost: staging}\n"
    )
    assert problems == []
    assert set(topology.queues) == {("/", "q"), ("staging", "q")}


def test_a_vhost_declared_twice_is_an_error(tmp_path: Path) -> None:
    _, problems = load_yaml(tmp_path, "vhosts: [staging, staging]\n")
    problem = only_error(problems)
    assert position(problem) == ("topology.yaml", 1, 19)
    assert problem.message.startswith("vhost 'staging' is declared twice; the first is at ")
    assert problem.message.endswith("topology.yaml:1:10")


def test_a_binding_declared_with_its_queue_and_on_its_own_is_an_error(tmp_path: Path) -> None:
    _, problems = load_yaml(
        tmp_path,
        """
        exchanges: [{name: orders}]
        queues:
          - {name: q, bindings: [{exchange: orders, routing_key: k}]}
        bindings:
          - {exchange: orders, queue: q, routing_key: k}
        """,
    )
    problem = only_error(problems)
    assert position(problem) == ("topology.yaml", 5, 5)
    assert problem.message.startswith("binding orders -> q ('k') is declared twice")


def test_a_policy_declared_twice_is_an_error(tmp_path: Path) -> None:
    _, problems = load_yaml(
        tmp_path,
        "policies:\n"
        "  - {name: p, pattern: a, definition: {max_length: 1}}\n"
        "  - {name: p, pattern: b, definition: {max_length: 2}}\n",
    )
    assert only_error(problems).message.startswith("policy 'p' in vhost '/' is declared twice")


# --- references ------------------------------------------------------------------------------------------


def test_a_binding_to_an_exchange_declared_nowhere_suggests_the_closest(tmp_path: Path) -> None:
    _, problems = load_yaml(
        tmp_path,
        """
        exchanges: [{name: orders}]
        queues:
          - name: q
            bindings:
              - exchange: order
        """,
    )
    problem = only_error(problems)
    assert (position(problem), problem.path) == (
        ("topology.yaml", 5, 19),
        "queues[0].bindings[0].exchange",
    )
    assert problem.message == (
        "source exchange 'order' is declared nowhere in vhost '/' — did you mean 'orders'?"
    )
    assert problem.hint == "declare it under 'exchanges:' (- name: order, type: …)"


def test_a_binding_to_a_queue_declared_nowhere_is_an_error(tmp_path: Path) -> None:
    _, problems = load_yaml(
        tmp_path,
        "exchanges: [{name: e}]\nqueues: [{name: work}]\nbindings:\n  - {exchange: e, queue: wrok}\n",
    )
    problem = only_error(problems)
    assert (position(problem), problem.path) == (("topology.yaml", 4, 5), "bindings[0]")
    assert problem.message == (
        "destination queue 'wrok' is declared nowhere in vhost '/' — did you mean 'work'?"
    )


def test_a_binding_to_an_exchange_destination_declared_nowhere_is_an_error(tmp_path: Path) -> None:
    _, problems = load_yaml(
        tmp_path, "exchanges: [{name: e}]\nbindings:\n  - {exchange: e, destination_exchange: f}\n"
    )
    assert (
        only_error(problems).message == "destination exchange 'f' is declared nowhere in vhost '/'"
    )


def test_the_broker_s_own_exchanges_need_no_declaration(tmp_path: Path) -> None:
    topology, problems = load_yaml(
        tmp_path,
        "queues:\n  - {name: q, dead_letter_exchange: '', bindings: [{exchange: amq.topic}]}\n"
        "bindings:\n  - {exchange: amq.fanout, destination_exchange: amq.direct}\n",
    )
    assert problems == []
    assert len(topology.bindings) == 2


def test_a_dead_letter_exchange_declared_nowhere_suggests_the_closest(tmp_path: Path) -> None:
    problem = queue_problem(tmp_path, "dead_letter_exchange: dxl")
    assert (position(problem), problem.path) == (
        ("topology.yaml", 4, 27),
        "queues[0].dead_letter_exchange",
    )
    assert problem.message == (
        "dead-letter exchange 'dxl' is declared nowhere in vhost '/' — did you mean 'dlx'?"
    )


def test_a_raw_dead_letter_exchange_is_checked_too(tmp_path: Path) -> None:
    problem = queue_problem(tmp_path, "arguments: {x-dead-letter-exchange: dxl}")
    assert problem.path == "queues[0].arguments.x-dead-letter-exchange"
    assert problem.message.startswith("dead-letter exchange 'dxl' is declared nowhere")


def test_an_alternate_exchange_declared_nowhere_suggests_the_closest(tmp_path: Path) -> None:
    _, problems = load_yaml(
        tmp_path,
        "exchanges:\n  - {name: orders, alternate_exchange: unroutd}\n  - {name: unrouted}\n",
    )
    problem = only_error(problems)
    assert (position(problem), problem.path) == (
        ("topology.yaml", 2, 40),
        "exchanges[0].alternate_exchange",
    )
    assert problem.message == (
        "alternate exchange 'unroutd' is declared nowhere in vhost '/' — did you mean 'unrouted'?"
    )


def test_an_exchange_in_another_vhost_does_not_satisfy_a_reference(tmp_path: Path) -> None:
    _, problems = load_yaml(
        tmp_path,
        "vhosts: [staging]\nexchanges: [{name: dlx}]\n"
        "queues: [{name: q, vhost: staging, dead_letter_exchange: dlx}]\n",
    )
    assert only_error(problems).message == (
        "dead-letter exchange 'dlx' is declared nowhere in vhost 'staging'"
    )


def test_a_reference_to_an_exchange_with_problems_reports_only_the_exchange(tmp_path: Path) -> None:
    _, problems = load_yaml(
        tmp_path,
        "exchanges:\n  - {name: dlx, type: fanot}\n"
        "queues:\n  - {name: q, dead_letter_exchange: dlx, bindings: [{exchange: dlx}]}\n",
    )
    assert only_error(problems).path == "exchanges[0].type"


def test_a_binding_to_a_queue_with_problems_reports_only_the_queue(tmp_path: Path) -> None:
    _, problems = load_yaml(
        tmp_path,
        "exchanges: [{name: e}]\nqueues: [{name: q, max_length: -1}]\n"
        "bindings: [{exchange: e, queue: q}]\n",
    )
    assert only_error(problems).path == "queues[0].max_length"


def test_a_permission_of_a_user_with_problems_reports_only_the_user(tmp_path: Path) -> None:
    _, problems = load_yaml(
        tmp_path,
        "users: [{name: app, password_hash: nope}]\n"
        "permissions: [{user: app, configure: '.*', write: '.*', read: '.*'}]\n",
    )
    assert [p.path for p in problems] == ["users[0].password_hash"]


def test_a_vhost_declared_nowhere_suggests_the_closest(tmp_path: Path) -> None:
    _, problems = load_yaml(tmp_path, "vhosts: [staging]\nqueues:\n  - {name: q, vhost: stagign}\n")
    problem = only_error(problems)
    assert (position(problem), problem.path) == (("topology.yaml", 3, 22), "queues[0].vhost")
    assert problem.message == "vhost 'stagign' is declared nowhere — did you mean 'staging'?"
    assert problem.hint == "add it under 'vhosts:' (- name: stagign)"


def test_the_default_vhost_needs_no_declaration(tmp_path: Path) -> None:
    _, problems = load_yaml(tmp_path, "queues:\n  - {name: q, vhost: /}\n")
    assert problems == []


def test_vhosts_may_be_names_or_mappings(tmp_path: Path) -> None:
    topology, problems = load_yaml(tmp_path, "vhosts:\n  - staging\n  - name: production\n")
    assert problems == []
    assert list(topology.vhosts) == ["staging", "production"]


# --- bindings ---------------------------------------------------------------------------------------------


def test_routing_keys_make_one_binding_each(tmp_path: Path) -> None:
    topology, problems = load_yaml(
        tmp_path,
        "exchanges: [{name: e, type: topic}]\n"
        "queues: [{name: q, bindings: [{exchange: e, routing_keys: [a.*, b.#]}]}]\n",
    )
    assert problems == []
    assert sorted(b.routing_key for b in topology.bindings.values()) == ["a.*", "b.#"]


def test_routing_key_and_routing_keys_together_are_an_error(tmp_path: Path) -> None:
    _, problems = load_yaml(
        tmp_path,
        "exchanges: [{name: e}]\n"
        "queues: [{name: q, bindings: [{exchange: e, routing_key: a, routing_keys: [b]}]}]\n",
    )
    assert only_error(problems).message == "use 'routing_key' or 'routing_keys', not both"


def test_an_empty_list_of_routing_keys_is_refused(tmp_path: Path) -> None:
    _, problems = load_yaml(
        tmp_path,
        "exchanges: [{name: e}]\nqueues: [{name: q, bindings: [{exchange: e, routing_keys: []}]}]\n",
    )
    problem = only_error(problems)
    assert problem.allowed == "a non-empty list of routing keys (quote keys like '*' and '#')"


def test_binding_to_the_default_exchange_is_refused_with_why(tmp_path: Path) -> None:
    _, problems = load_yaml(tmp_path, "queues: [{name: q, bindings: [{exchange: ''}]}]\n")
    problem = only_error(problems)
    assert problem.message.startswith("the default exchange '' takes no bindings")


def test_a_bad_x_match_suggests_the_closest(tmp_path: Path) -> None:
    _, problems = load_yaml(
        tmp_path,
        "exchanges: [{name: r, type: headers}]\n"
        "queues: [{name: q, bindings: [{exchange: r, arguments: {x-match: alll}}]}]\n",
    )
    problem = only_error(problems)
    assert problem.path == "queues[0].bindings[0].arguments.x-match"
    assert problem.message == "found 'alll' — did you mean 'all'?"


def test_a_binding_needs_exactly_one_destination(tmp_path: Path) -> None:
    _, problems = load_yaml(
        tmp_path,
        "exchanges: [{name: e}, {name: f}]\nqueues: [{name: q}]\n"
        "bindings:\n  - {exchange: e}\n  - {exchange: e, queue: q, destination_exchange: f}\n",
    )
    assert [p.message for p in errors(problems)] == [
        "a binding needs exactly one destination: 'queue' or 'destination_exchange'",
        "a binding needs exactly one destination: 'queue' or 'destination_exchange' "
        "(found queue, destination_exchange)",
    ]


def test_a_binding_in_rabbitmq_s_words_is_read(tmp_path: Path) -> None:
    topology, problems = load_yaml(
        tmp_path,
        "exchanges: [{name: e}, {name: f}]\n"
        "bindings:\n  - {source: e, destination: f, destination_type: exchange, routing_key: k}\n",
    )
    assert problems == []
    assert list(topology.bindings.values()) == [BindingSpec("/", "e", "f", "exchange", "k")]


def test_a_destination_type_other_than_queue_or_exchange_is_refused(tmp_path: Path) -> None:
    _, problems = load_yaml(
        tmp_path,
        "exchanges: [{name: e}]\nbindings:\n  - {source: e, destination: f, destination_type: topic}\n",
    )
    problem = only_error(problems)
    assert (problem.path, problem.allowed) == ("bindings[0].destination_type", "queue, exchange")


# --- anchors and merges -----------------------------------------------------------------------------------


def test_anchored_settings_merge_into_each_entry_and_own_keys_win(tmp_path: Path) -> None:
    topology, problems = load_yaml(
        tmp_path,
        """
        x-work: &work
          durable: false
          message_ttl: 1m
        queues:
          - {name: a, <<: *work}
          - {name: b, <<: *work, message_ttl: 5s}
        """,
    )
    assert problems == []
    assert topology.queues[("/", "a")] == QueueSpec(
        "/", "a", False, arguments={"x-message-ttl": 60_000}
    )
    assert topology.queues[("/", "b")] == QueueSpec(
        "/", "b", False, arguments={"x-message-ttl": 5000}
    )


def test_a_problem_in_an_anchor_is_reported_where_the_anchor_wrote_it(tmp_path: Path) -> None:
    _, problems = load_yaml(
        tmp_path,
        """
        x-work: &work
          message_ttl: 1 minute
        queues:
          - {name: a, <<: *work}
        """,
    )
    problem = only_error(problems)
    assert (position(problem), problem.path) == (("topology.yaml", 2, 16), "queues[0].message_ttl")


def test_an_aliased_list_of_bindings_is_shared(tmp_path: Path) -> None:
    topology, problems = load_yaml(
        tmp_path,
        """
        exchanges: [{name: e}]
        queues:
          - {name: a, bindings: &both [{exchange: e, routing_key: x}]}
          - {name: b, bindings: *both}
        """,
    )
    assert problems == []
    assert sorted(b.destination for b in topology.bindings.values()) == ["a", "b"]


def test_a_key_written_twice_in_one_mapping_is_reported_by_load(tmp_path: Path) -> None:
    _, problems = load_yaml(tmp_path, "queues:\n  - name: a\n    durable: true\n    name: b\n")
    problem = only_error(problems)
    assert position(problem) == ("topology.yaml", 4, 5)
    assert (
        problem.message == "key 'name' is written twice in this mapping (first at line 2); keep one"
    )


def test_yaml_that_does_not_parse_is_reported_with_its_place(tmp_path: Path) -> None:
    _, problems = load_yaml(tmp_path, "queues:\n  - name: [a\n")
    problem = only_error(problems)
    assert position(problem) == ("topology.yaml", 3, 1)
    assert problem.message.startswith("not valid YAML")


# --- every problem, in order -------------------------------------------------------------------------------


def test_every_problem_of_a_file_is_reported_in_one_run_in_line_order(tmp_path: Path) -> None:
    _, problems = load_yaml(
        tmp_path,
        """
        exchanges:
          - name: orders
            type: topik
          - name: dlx
        queues:
          - name: work
            mesage_ttl: 30s
            max_length_bytes: 64 MegaBytes
            dead_letter_exchange: dlq
            overflow: drop
        bindings:
          - {exchange: order, queue: work}
        """,
    )
    assert [(p.where.line, p.where.column, p.path) for p in problems] == [
        (3, 11, "exchanges[0].type"),
        (7, 5, "queues[0].mesage_ttl"),
        (8, 23, "queues[0].max_length_bytes"),
        (9, 27, "queues[0].dead_letter_exchange"),
        (10, 15, "queues[0].overflow"),
        (12, 16, "bindings[0].exchange"),
    ]


def test_problems_of_several_files_are_sorted_by_file_then_line(tmp_path: Path) -> None:
    write(
        tmp_path, "b.yaml", "queues:\n  - {name: q, max_length: x}\n  - {name: r, max_length: y}\n"
    )
    write(tmp_path, "a.yaml", "queues:\n\n  - {name: s, max_length: z}\n")
    _, problems = load([str(tmp_path / "b.yaml"), str(tmp_path / "a.yaml")])
    assert [position(p) for p in problems] == [
        ("a.yaml", 3, 27),
        ("b.yaml", 2, 27),
        ("b.yaml", 3, 27),
    ]


def test_a_broken_entry_does_not_hide_problems_in_the_next(tmp_path: Path) -> None:
    _, problems = load_yaml(
        tmp_path,
        "queues:\n  - {name: a, max_length: -1}\n  - {name: b, message_ttl: x}\n  - name\n",
    )
    assert [p.path for p in problems] == [
        "queues[0].max_length",
        "queues[1].message_ttl",
        "queues[2]",
    ]


def test_the_broker_s_own_argument_checks_apply(tmp_path: Path) -> None:
    # router.broker.arguments refuses what a declare would refuse; the file says so first
    _, problems = load_yaml(tmp_path, "queues:\n  - {name: q, arguments: {x-max-length: 'ten'}}\n")
    assert only_error(problems).path == "queues[0].arguments.x-max-length"
