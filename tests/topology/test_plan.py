"""router.topology.plan: what changes make a broker match the files, in the order they must run,
with conflicts that say what to do and blocks that protect messages."""

from __future__ import annotations

from pathlib import Path

from router.topology import load
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
from router.topology.plan import (
    BLOCKED,
    CONFLICT,
    CREATE,
    DELETE,
    RECREATE,
    UPDATE,
    Change,
    Plan,
    binding_name,
    plan,
)

ROOT = Path(__file__).resolve().parents[2]


def topology(*specs: object) -> Topology:
    """A topology holding ``specs`` under their identities."""
    result = Topology()
    for spec in specs:
        if isinstance(spec, VHostSpec):
            result.vhosts[spec.name] = spec
        elif isinstance(spec, UserSpec):
            result.users[spec.name] = spec
        elif isinstance(spec, PermissionSpec):
            result.permissions[(spec.user, spec.vhost)] = spec
        elif isinstance(spec, PolicySpec):
            result.policies[(spec.vhost, spec.name)] = spec
        elif isinstance(spec, ExchangeSpec):
            result.exchanges[(spec.vhost, spec.name)] = spec
        elif isinstance(spec, QueueSpec):
            result.queues[(spec.vhost, spec.name)] = spec
        elif isinstance(spec, BindingSpec):
            result.bindings[spec.key] = spec
        else:
            raise TypeError(spec)
    return result


def broker(*specs: object) -> Topology:
    """What a broker holds: always the default vhost, and ``specs``."""
    return topology(VHostSpec("/"), *specs)


def actions(changes: list[Change]) -> list[tuple[str, str, str]]:
    return [(c.action, c.kind, c.name) for c in changes]


VHOST = VHostSpec("shop")
USER = UserSpec("app", "hash", ("monitoring",))
PERMISSION = PermissionSpec("app", "shop")
POLICY = PolicySpec("shop", "cap", "^app", "queues", 0, {"max-length": 10})
EXCHANGE = ExchangeSpec("shop", "orders", "topic")
QUEUE = QueueSpec("shop", "work", arguments={"x-message-ttl": 1000})
BINDING = BindingSpec("shop", "orders", "work", "queue", "order.*")
EVERYTHING = (VHOST, USER, PERMISSION, POLICY, EXCHANGE, QUEUE, BINDING)


# --- nothing to do ---------------------------------------------------------------------------------


def test_a_topology_planned_against_itself_is_empty() -> None:
    result = plan(topology(*EVERYTHING), broker(*EVERYTHING))
    assert result.empty
    assert result.unchanged == 7
    assert result.steps() == []


def test_the_example_planned_against_itself_is_empty() -> None:
    example, problems = load([str(ROOT / "config" / "topology.yaml")])
    assert problems == []
    result = plan(example, example, prune=True)
    assert result.empty
    assert result.summary() == "nothing to change: 30 objects already match"


def test_arguments_equal_as_json_are_unchanged() -> None:
    # RabbitMQ's JSON may give 1000.0 where the files say 1000; mapping order never matters
    desired = topology(QueueSpec("/", "q", arguments={"x-message-ttl": 1000, "x-max-length": 5}))
    current = broker(QueueSpec("/", "q", arguments={"x-max-length": 5, "x-message-ttl": 1000.0}))
    assert plan(desired, current).empty


def test_a_binding_with_arguments_in_another_order_is_the_same_binding() -> None:
    desired = topology(BindingSpec("/", "amq.headers", "q", arguments={"a": 1, "x-match": "any"}))
    current = broker(BindingSpec("/", "amq.headers", "q", arguments={"x-match": "any", "a": 1}))
    assert plan(desired, current, prune=True).empty


# --- creating ----------------------------------------------------------------------------------------


def test_everything_missing_is_created_in_dependency_order() -> None:
    result = plan(topology(*reversed(EVERYTHING)), broker())
    assert actions(result.steps()) == [
        (CREATE, "vhost", "shop"),
        (CREATE, "user", "app"),
        (CREATE, "permission", "app"),
        (CREATE, "policy", "cap"),
        (CREATE, "exchange", "orders"),
        (CREATE, "queue", "work"),
        (CREATE, "binding", "orders -> work [order.*]"),
    ]
    assert result.summary() == "7 to create; 0 unchanged"


def test_a_created_change_carries_the_spec_to_create() -> None:
    [change] = plan(topology(QUEUE), broker()).changes
    assert (change.desired, change.current, change.vhost) == (QUEUE, None, "shop")


def test_a_binding_is_named_by_its_ends_key_and_arguments() -> None:
    assert binding_name(BindingSpec("/", "e", "q")) == "e -> q"
    assert binding_name(BindingSpec("/", "e", "f", "exchange", "k")) == "e -> f (exchange) [k]"
    assert (
        binding_name(BindingSpec("/", "h", "q", arguments={"x-match": "any", "a": 1}))
        == "h -> q a=1, x-match=any"
    )


# --- changing in place ----------------------------------------------------------------------------------


def test_a_user_s_new_password_and_tags_are_an_update_in_place() -> None:
    desired = topology(UserSpec("app", "new-hash", ("administrator",)))
    current = broker(UserSpec("app", "old-hash", ("monitoring",)))
    [change] = plan(desired, current).changes
    assert (change.action, change.kind, change.name) == (UPDATE, "user", "app")
    assert change.detail == "password, tags [monitoring] -> [administrator]"


def test_a_changed_policy_is_an_update_naming_what_changed() -> None:
    desired = topology(PolicySpec("/", "cap", "^b", "queues", 1, {"max-length": 20}))
    current = broker(
        PolicySpec("/", "cap", "^a", "queues", 1, {"max-length": 10, "message-ttl": 5})
    )
    [change] = plan(desired, current).changes
    assert (change.action, change.kind) == (UPDATE, "policy")
    assert change.detail == (
        "pattern: '^a' on the broker, '^b' in the files; "
        "max-length: 10 on the broker, 20 in the files; "
        "message-ttl: 5 on the broker, not set in the files"
    )


def test_changed_permissions_are_an_update() -> None:
    desired = topology(PermissionSpec("app", "/", "^app", ".*", ".*"))
    current = broker(PermissionSpec("app", "/", ".*", ".*", ".*"))
    [change] = plan(desired, current).changes
    assert (change.action, change.detail) == (
        UPDATE,
        "configure: '.*' on the broker, '^app' in the files",
    )


def test_an_update_is_a_step_of_its_own() -> None:
    desired = topology(UserSpec("app", "new"))
    assert actions(plan(desired, broker(UserSpec("app", "old"))).steps()) == [
        (UPDATE, "user", "app")
    ]


# --- conflicts --------------------------------------------------------------------------------------------


def test_changed_queue_arguments_are_a_conflict_that_says_what_to_do() -> None:
    desired = topology(QueueSpec("/", "q", arguments={"x-message-ttl": 1000}))
    current = broker(QueueSpec("/", "q", arguments={"x-message-ttl": 2000}))
    [change] = plan(desired, current).changes
    assert (change.action, change.kind, change.name) == (CONFLICT, "queue", "q")
    assert change.detail == (
        "x-message-ttl: 2000 on the broker, 1000 in the files. A queue cannot change this in "
        "place: delete it and apply again, apply with --recreate (bindings are re-created from "
        "the files), or keep the broker's value in the files; a policy can change TTLs, limits "
        "and dead-lettering in place"
    )


def test_a_changed_exchange_type_is_a_conflict_that_says_what_to_do() -> None:
    desired = topology(ExchangeSpec("/", "e", "topic"))
    current = broker(ExchangeSpec("/", "e", "fanout"))
    [change] = plan(desired, current).changes
    assert (change.action, change.kind) == (CONFLICT, "exchange")
    assert change.detail == (
        "type: 'fanout' on the broker, 'topic' in the files. An exchange cannot change this in "
        "place: delete it and apply again, apply with --recreate (bindings are re-created from "
        "the files), or keep the broker's value in the files"
    )


def test_a_changed_durability_is_a_conflict() -> None:
    desired = topology(QueueSpec("/", "q", durable=True))
    [change] = plan(desired, broker(QueueSpec("/", "q", durable=False))).changes
    assert change.action == CONFLICT
    assert change.detail.startswith("durable: false on the broker, true in the files.")


def test_a_conflict_is_a_problem_and_never_a_step() -> None:
    desired = topology(ExchangeSpec("/", "e", "topic"), QueueSpec("/", "q"))
    result = plan(desired, broker(ExchangeSpec("/", "e", "fanout")))
    assert actions(result.problems) == [(CONFLICT, "exchange", "e")]
    assert actions(result.steps()) == [(CREATE, "queue", "q")]
    assert not result.problems[0].applicable
    assert result.summary() == "1 to create, 1 conflict; 0 unchanged"


# --- recreating ---------------------------------------------------------------------------------------------


def test_recreate_turns_a_conflict_into_a_delete_then_a_create() -> None:
    desired = topology(QueueSpec("/", "q", arguments={"x-message-ttl": 1000}))
    current = broker(QueueSpec("/", "q", arguments={"x-message-ttl": 2000}))
    result = plan(desired, current, recreate=True)
    [change] = result.changes
    assert (change.action, change.detail) == (
        RECREATE,
        "x-message-ttl: 2000 on the broker, 1000 in the files",
    )
    assert result.problems == []
    steps = result.steps()
    assert actions(steps) == [(DELETE, "queue", "q"), (CREATE, "queue", "q")]
    assert (steps[0].current, steps[1].desired) == (current.queues[("/", "q")], change.desired)


def test_a_recreated_queue_gets_its_bindings_again_though_the_broker_has_them() -> None:
    binding = BindingSpec("/", "e", "q", routing_key="k")
    desired = topology(ExchangeSpec("/", "e"), QueueSpec("/", "q", durable=False), binding)
    current = broker(ExchangeSpec("/", "e"), QueueSpec("/", "q"), binding)
    assert actions(plan(desired, current, recreate=True).steps()) == [
        (DELETE, "queue", "q"),
        (CREATE, "queue", "q"),
        (CREATE, "binding", "e -> q [k]"),
    ]


def test_a_recreated_exchange_gets_its_bindings_again_at_both_ends() -> None:
    to_queue = BindingSpec("/", "e", "q")
    from_other = BindingSpec("/", "other", "e", "exchange")
    untouched = BindingSpec("/", "other", "q")
    same = (ExchangeSpec("/", "other"), QueueSpec("/", "q"), to_queue, from_other, untouched)
    desired = topology(ExchangeSpec("/", "e", "topic"), *same)
    current = broker(ExchangeSpec("/", "e", "fanout"), *same)
    result = plan(desired, current, recreate=True, prune=True)
    assert actions(result.steps()) == [
        (DELETE, "exchange", "e"),
        (CREATE, "exchange", "e"),
        (CREATE, "binding", "e -> q"),
        (CREATE, "binding", "other -> e (exchange)"),
    ]
    assert result.unchanged == 3  # other, q and other -> q


def test_recreating_a_queue_that_holds_messages_is_blocked() -> None:
    desired = topology(QueueSpec("/", "q", arguments={"x-max-length": 1}))
    current = broker(QueueSpec("/", "q"))
    result = plan(desired, current, recreate=True, messages={("/", "q"): 3})
    [change] = result.changes
    assert (change.action, change.kind) == (BLOCKED, "queue")
    assert change.detail == (
        "x-max-length: not set on the broker, 1 in the files. Re-creating it would delete its 3 "
        "messages: drain it first, or add --force"
    )
    assert result.steps() == []


def test_a_forced_recreate_says_how_many_messages_go() -> None:
    desired = topology(QueueSpec("/", "q", arguments={"x-max-length": 1}))
    current = broker(QueueSpec("/", "q"))
    result = plan(desired, current, recreate=True, force=True, messages={("/", "q"): 3})
    [change] = result.changes
    assert change.action == RECREATE
    assert change.detail.endswith("; its 3 messages are deleted")


def test_an_empty_queue_is_recreated_without_force() -> None:
    desired = topology(QueueSpec("/", "q", arguments={"x-max-length": 1}))
    result = plan(desired, broker(QueueSpec("/", "q")), recreate=True, messages={("/", "q"): 0})
    assert [c.action for c in result.changes] == [RECREATE]


# --- pruning --------------------------------------------------------------------------------------------------


UNDECLARED = (
    VHostSpec("old"),
    UserSpec("gone", "hash"),
    PermissionSpec("gone", "/"),
    PolicySpec("/", "old-policy", ".*"),
    ExchangeSpec("/", "old-exchange"),
    QueueSpec("/", "old-queue"),
    BindingSpec("/", "amq.topic", "work", routing_key="old"),
)


def test_without_prune_nothing_undeclared_is_deleted() -> None:
    desired = topology(QueueSpec("/", "work"))
    assert plan(desired, broker(QueueSpec("/", "work"), *UNDECLARED)).empty


def test_prune_deletes_what_the_files_do_not_declare_in_reverse_dependency_order() -> None:
    desired = topology(QueueSpec("/", "work"))
    result = plan(desired, broker(QueueSpec("/", "work"), *UNDECLARED), prune=True)
    assert actions(result.steps()) == [
        (DELETE, "binding", "amq.topic -> work [old]"),
        (DELETE, "queue", "old-queue"),
        (DELETE, "exchange", "old-exchange"),
        (DELETE, "policy", "old-policy"),
        (DELETE, "permission", "gone"),
        (DELETE, "user", "gone"),
        (DELETE, "vhost", "old"),
    ]
    assert all(c.detail == "not in the files" for c in result.changes)
    assert result.unchanged == 1


def test_deletions_run_before_creations() -> None:
    desired = topology(QueueSpec("/", "new"))
    result = plan(desired, broker(QueueSpec("/", "old")), prune=True)
    assert actions(result.steps()) == [(DELETE, "queue", "old"), (CREATE, "queue", "new")]


def test_prune_never_deletes_the_default_vhost() -> None:
    assert plan(topology(), broker(), prune=True).empty


def test_prune_keeps_the_users_it_is_told_to_keep_and_their_permissions() -> None:
    current = broker(UserSpec("admin", "hash"), PermissionSpec("admin", "/"), UserSpec("bob", "h"))
    result = plan(topology(), current, prune=True, keep_users=frozenset({"admin"}))
    assert actions(result.changes) == [(DELETE, "user", "bob")]


def test_pruning_a_queue_that_holds_messages_is_blocked_unless_forced() -> None:
    current = broker(QueueSpec("/", "old"))
    blocked = plan(topology(), current, prune=True, messages={("/", "old"): 2})
    [change] = blocked.problems
    assert (change.action, change.kind, change.name) == (BLOCKED, "queue", "old")
    assert change.detail == (
        "not in the files, but holds 2 messages; drain it (or move them), or add --force to "
        "delete it with them"
    )
    forced = plan(topology(), current, prune=True, force=True, messages={("/", "old"): 2})
    assert [(c.action, c.detail) for c in forced.changes] == [
        (DELETE, "not in the files; 2 messages go with it")
    ]


def test_pruning_a_queue_takes_its_bindings_with_it() -> None:
    current = broker(ExchangeSpec("/", "e"), QueueSpec("/", "old"), BindingSpec("/", "e", "old"))
    result = plan(topology(ExchangeSpec("/", "e")), current, prune=True)
    assert actions(result.changes) == [(DELETE, "queue", "old")]


def test_pruning_an_exchange_takes_its_bindings_with_it() -> None:
    current = broker(ExchangeSpec("/", "old"), QueueSpec("/", "q"), BindingSpec("/", "old", "q"))
    result = plan(topology(QueueSpec("/", "q")), current, prune=True)
    assert actions(result.changes) == [(DELETE, "exchange", "old")]


def test_a_binding_is_never_updated_only_deleted_and_created() -> None:
    same = (ExchangeSpec("/", "e"), QueueSpec("/", "q"))
    desired = topology(*same, BindingSpec("/", "e", "q", routing_key="new"))
    current = broker(*same, BindingSpec("/", "e", "q", routing_key="old"))
    assert actions(plan(desired, current, prune=True).steps()) == [
        (DELETE, "binding", "e -> q [old]"),
        (CREATE, "binding", "e -> q [new]"),
    ]


def test_a_pruned_vhost_takes_its_contents_with_it() -> None:
    inside = (
        PermissionSpec("app", "old"),
        PolicySpec("old", "p", ".*"),
        ExchangeSpec("old", "e"),
        QueueSpec("old", "q"),
        BindingSpec("old", "e", "q"),
    )
    current = broker(VHostSpec("old"), UserSpec("app", "h"), *inside)
    result = plan(topology(UserSpec("app", "h")), current, prune=True)
    assert actions(result.changes) == [(DELETE, "vhost", "old")]


def test_pruning_a_vhost_whose_queues_hold_messages_is_blocked_unless_forced() -> None:
    current = broker(VHostSpec("old"), QueueSpec("old", "q"))
    blocked = plan(topology(), current, prune=True, messages={("old", "q"): 4})
    assert (blocked.problems[0].action, blocked.problems[0].kind) == (BLOCKED, "vhost")
    assert blocked.problems[0].detail == (
        "its queues hold 4 messages; drain them, or add --force to delete them with the vhost"
    )
    forced = plan(topology(), current, prune=True, force=True, messages={("old", "q"): 4})
    assert actions(forced.changes) == [(DELETE, "vhost", "old")]


# --- the plan as a whole ----------------------------------------------------------------------------------------


def test_a_plan_counts_its_changes_by_action() -> None:
    result = Plan(
        [
            Change(CREATE, "queue", "/", "a"),
            Change(CREATE, "queue", "/", "b"),
            Change(DELETE, "queue", "/", "c"),
            Change(BLOCKED, "queue", "/", "d"),
        ],
        unchanged=4,
    )
    assert result.counts() == {CREATE: 2, DELETE: 1, BLOCKED: 1}
    assert result.summary() == "2 to create, 1 to delete, 1 blocked; 4 unchanged"


def test_planning_does_not_change_either_topology() -> None:
    desired = topology(*EVERYTHING)
    current = broker(ExchangeSpec("shop", "orders", "fanout"), *UNDECLARED)
    before = (repr(desired), repr(current))
    plan(desired, current, prune=True, recreate=True, force=True)
    assert (repr(desired), repr(current)) == before
