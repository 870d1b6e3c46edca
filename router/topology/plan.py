"""Plan: what it takes to make a broker's topology match the files.

``plan(desired, current, ...)`` compares two topologies and lists the changes in the order they
must run: deletions first (bindings before the queues and exchanges they join, vhosts last), then
creations (vhosts first, bindings last). What cannot change in place (a queue's arguments, an
exchange's type) is a *conflict* that says what to do; what would lose messages is *blocked*
unless forced. A plan with conflicts or blocks is not applied at all.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from router.topology.model import (
    DEFAULT_VHOST,
    BindingSpec,
    ExchangeSpec,
    QueueSpec,
    Topology,
    canonical,
)

CREATE = "create"
UPDATE = "update"
DELETE = "delete"
RECREATE = "recreate"
CONFLICT = "conflict"
BLOCKED = "blocked"

# creation order; deletion runs the other way
KINDS = ("vhost", "user", "permission", "policy", "exchange", "queue", "binding")


@dataclass(frozen=True)
class Change:
    action: str  # create, update, delete, recreate, conflict, blocked
    kind: str  # one of KINDS
    vhost: str
    name: str  # as shown; a binding's is "source -> destination"
    detail: str = ""
    desired: Any = None  # the spec to create or change to
    current: Any = None  # the spec on the broker

    @property
    def applicable(self) -> bool:
        return self.action not in (CONFLICT, BLOCKED)


@dataclass
class Plan:
    changes: list[Change] = field(default_factory=list)
    unchanged: int = 0  # objects already as the files say

    @property
    def problems(self) -> list[Change]:
        return [c for c in self.changes if not c.applicable]

    @property
    def empty(self) -> bool:
        return not self.changes

    def counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for change in self.changes:
            counts[change.action] = counts.get(change.action, 0) + 1
        return counts

    def summary(self) -> str:
        if self.empty:
            return f"nothing to change: {self.unchanged} objects already match"
        counts = self.counts()
        parts = [
            f"{counts[a]} to {a}" if a in (CREATE, UPDATE, DELETE, RECREATE) else f"{counts[a]} {a}"
            for a in (CREATE, UPDATE, RECREATE, DELETE, CONFLICT, BLOCKED)
            if a in counts
        ]
        return ", ".join(parts) + f"; {self.unchanged} unchanged"

    def steps(self) -> list[Change]:
        """The applicable changes in the order to run them: a recreate is a delete (in the
        deletion pass) and a create (in the creation pass)."""
        deletions = [c for c in self.changes if c.action in (DELETE, RECREATE)]
        creations = [c for c in self.changes if c.action in (CREATE, UPDATE, RECREATE)]
        deletions.sort(key=lambda c: -KINDS.index(c.kind))
        creations.sort(key=lambda c: KINDS.index(c.kind))
        return [
            *(
                Change(DELETE, c.kind, c.vhost, c.name, c.detail, None, c.current)
                for c in deletions
            ),
            *(
                Change(
                    CREATE if c.action == RECREATE else c.action,
                    c.kind,
                    c.vhost,
                    c.name,
                    c.detail,
                    c.desired,
                    c.current,
                )
                for c in creations
            ),
        ]


def _differences(desired: Any, current: Any, fields: tuple[str, ...]) -> list[str]:
    found = []
    for name in fields:
        want, have = getattr(desired, name), getattr(current, name)
        if name == "arguments" or name == "definition":
            for key in sorted(set(want) | set(have)):
                if canonical(want.get(key)) != canonical(have.get(key)):
                    found.append(
                        f"{key}: {_shown(have.get(key))} on the broker, {_shown(want.get(key))} "
                        "in the files"
                    )
        elif canonical(want) != canonical(have):
            found.append(f"{name}: {_shown(have)} on the broker, {_shown(want)} in the files")
    return found


def _shown(value: Any) -> str:
    if value is None:
        return "not set"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, tuple):
        return "[" + ", ".join(value) + "]"
    return repr(value) if isinstance(value, str) else str(value)


def _messages(count: int) -> str:
    return "1 message" if count == 1 else f"{count} messages"


def binding_name(binding: BindingSpec) -> str:
    arrow = f"{binding.source} -> {binding.destination}"
    if binding.destination_type == "exchange":
        arrow += " (exchange)"
    if binding.routing_key:
        arrow += f" [{binding.routing_key}]"
    if binding.arguments:
        arrow += " " + ", ".join(f"{k}={v}" for k, v in sorted(binding.arguments.items()))
    return arrow


def plan(
    desired: Topology,
    current: Topology,
    *,
    messages: dict[tuple[str, str], int] | None = None,
    prune: bool = False,
    force: bool = False,
    recreate: bool = False,
    keep_users: frozenset[str] = frozenset(),
) -> Plan:
    """The changes that make ``current`` into ``desired``.

    ``messages``: ready+unacked messages per (vhost, queue) on the broker, so that nothing
    holding messages is deleted unless ``force``. ``prune``: delete what the files do not
    declare. ``recreate``: delete and re-declare what cannot change in place. ``keep_users``:
    users never pruned (the one applying the plan)."""
    messages = messages or {}
    result = Plan()
    changes = result.changes

    def held(vhost: str, queue: str) -> int:
        return messages.get((vhost, queue), 0)

    # vhosts
    gone_vhosts: set[str] = set()
    for name, vhost_spec in desired.vhosts.items():
        if name in current.vhosts:
            result.unchanged += 1
        else:
            changes.append(Change(CREATE, "vhost", name, name, desired=vhost_spec))
    if prune:
        for name, vhost_spec in current.vhosts.items():
            if name in desired.vhosts or name == DEFAULT_VHOST:
                continue
            count = sum(n for (v, _), n in messages.items() if v == name)
            if count and not force:
                changes.append(
                    Change(
                        BLOCKED,
                        "vhost",
                        name,
                        name,
                        f"its queues hold {_messages(count)}; drain them, or add --force to "
                        "delete them with the vhost",
                        current=vhost_spec,
                    )
                )
                continue
            gone_vhosts.add(name)
            changes.append(
                Change(DELETE, "vhost", name, name, "not in the files", current=vhost_spec)
            )

    def pruned(vhost: str) -> bool:
        return vhost in gone_vhosts  # deleted with its vhost: no change of its own

    # users
    for name, spec in desired.users.items():
        have = current.users.get(name)
        if have is None:
            changes.append(Change(CREATE, "user", "", name, desired=spec))
        elif have != spec:
            what = []
            if have.password_hash != spec.password_hash:
                what.append("password")
            if have.tags != spec.tags:
                what.append(f"tags {_shown(have.tags)} -> {_shown(spec.tags)}")
            changes.append(Change(UPDATE, "user", "", name, ", ".join(what), spec, have))
        else:
            result.unchanged += 1
    if prune:
        for name, have in current.users.items():
            if name not in desired.users and name not in keep_users:
                changes.append(Change(DELETE, "user", "", name, "not in the files", current=have))

    # permissions and policies change in place
    Specs = dict[tuple[str, str], Any]  # permissions or policies, by identity
    in_place: list[tuple[str, Specs, Specs, tuple[str, ...]]] = [
        ("permission", desired.permissions, current.permissions, ("configure", "write", "read")),
        (
            "policy",
            desired.policies,
            current.policies,
            ("pattern", "apply_to", "priority", "definition"),
        ),
    ]
    for kind, wanted, existing, fields in in_place:
        for key, want_item in wanted.items():
            have_item = existing.get(key)
            name = key[1] if kind == "policy" else key[0]
            if have_item is None:
                changes.append(Change(CREATE, kind, want_item.vhost, name, desired=want_item))
            elif have_item != want_item:
                detail = "; ".join(_differences(want_item, have_item, fields))
                changes.append(
                    Change(UPDATE, kind, want_item.vhost, name, detail, want_item, have_item)
                )
            else:
                result.unchanged += 1
        if prune:
            for key, have_item in existing.items():
                if (
                    key not in wanted
                    and not pruned(have_item.vhost)
                    and not (kind == "permission" and have_item.user in keep_users)
                ):
                    name = key[1] if kind == "policy" else key[0]
                    changes.append(
                        Change(
                            DELETE,
                            kind,
                            have_item.vhost,
                            name,
                            "not in the files",
                            current=have_item,
                        )
                    )

    # exchanges and queues: created, or re-created when they differ
    rebuilt: set[tuple[str, str, str]] = set()  # (kind, vhost, name) deleted and declared again
    _objects(
        result,
        "exchange",
        desired.exchanges,
        current.exchanges,
        ("type", "durable", "auto_delete", "internal", "arguments"),
        recreate=recreate,
        force=force,
        held=lambda v, n: 0,
        rebuilt=rebuilt,
    )
    _objects(
        result,
        "queue",
        desired.queues,
        current.queues,
        ("durable", "auto_delete", "arguments"),
        recreate=recreate,
        force=force,
        held=held,
        rebuilt=rebuilt,
    )
    if prune:
        for (vhost, name), have_exchange in current.exchanges.items():
            if (vhost, name) not in desired.exchanges and not pruned(vhost):
                changes.append(
                    Change(
                        DELETE, "exchange", vhost, name, "not in the files", current=have_exchange
                    )
                )
        for (vhost, name), have_queue in current.queues.items():
            if (vhost, name) in desired.queues or pruned(vhost):
                continue
            count = held(vhost, name)
            if count and not force:
                changes.append(
                    Change(
                        BLOCKED,
                        "queue",
                        vhost,
                        name,
                        f"not in the files, but holds {_messages(count)}; drain it (or move "
                        "them), or add --force to delete it with them",
                        current=have_queue,
                    )
                )
            else:
                detail = (
                    f"not in the files; {_messages(count)} {'goes' if count == 1 else 'go'} with it"
                    if count
                    else ("not in the files")
                )
                changes.append(Change(DELETE, "queue", vhost, name, detail, current=have_queue))

    # bindings: a binding is its identity, so there is nothing to update
    def touches_rebuilt(binding: BindingSpec) -> bool:
        return ("exchange", binding.vhost, binding.source) in rebuilt or (
            (binding.destination_type, binding.vhost, binding.destination) in rebuilt
        )

    for binding_key, binding in desired.bindings.items():
        if binding_key in current.bindings and not touches_rebuilt(binding):
            result.unchanged += 1
        else:
            changes.append(
                Change(CREATE, "binding", binding.vhost, binding_name(binding), desired=binding)
            )
    if prune:
        gone = {(c.kind, c.vhost, c.name) for c in changes if c.action == DELETE}
        for binding_key, have_binding in current.bindings.items():
            if (
                binding_key in desired.bindings
                or pruned(have_binding.vhost)
                or touches_rebuilt(have_binding)
            ):
                continue
            ends = {
                ("exchange", have_binding.vhost, have_binding.source),
                (have_binding.destination_type, have_binding.vhost, have_binding.destination),
            }
            if ends & gone:
                continue  # goes with the exchange or queue it joins
            changes.append(
                Change(
                    DELETE,
                    "binding",
                    have_binding.vhost,
                    binding_name(have_binding),
                    "not in the files",
                    current=have_binding,
                )
            )
    return result


def _objects(
    result: Plan,
    kind: str,
    wanted: dict[tuple[str, str], ExchangeSpec] | dict[tuple[str, str], QueueSpec],
    existing: dict[tuple[str, str], ExchangeSpec] | dict[tuple[str, str], QueueSpec],
    fields: tuple[str, ...],
    *,
    recreate: bool,
    force: bool,
    held: Any,
    rebuilt: set[tuple[str, str, str]],
) -> None:
    for (vhost, name), spec in wanted.items():
        have = existing.get((vhost, name))
        if have is None:
            result.changes.append(Change(CREATE, kind, vhost, name, desired=spec))
            continue
        differences = _differences(spec, have, fields)
        if not differences:
            result.unchanged += 1
            continue
        detail = "; ".join(differences)
        count = held(vhost, name)
        if not recreate:
            result.changes.append(
                Change(
                    CONFLICT,
                    kind,
                    vhost,
                    name,
                    f"{detail}. {'A queue' if kind == 'queue' else 'An exchange'} cannot change "
                    "this in place: delete it and apply again, apply with --recreate (bindings "
                    "are re-created from the files), or keep the broker's value in the files"
                    + (
                        "; a policy can change TTLs, limits and dead-lettering in place"
                        if kind == "queue"
                        else ""
                    ),
                    spec,
                    have,
                )
            )
        elif count and not force:
            result.changes.append(
                Change(
                    BLOCKED,
                    kind,
                    vhost,
                    name,
                    f"{detail}. Re-creating it would delete its {_messages(count)}: drain it "
                    "first, or add --force",
                    spec,
                    have,
                )
            )
        else:
            lost = f"; its {_messages(count)} are deleted" if count else ""
            result.changes.append(Change(RECREATE, kind, vhost, name, detail + lost, spec, have))
            rebuilt.add((kind, vhost, name))
