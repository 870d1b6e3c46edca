"""Topology as code: YAML files ⇄ a topology spec ⇄ RabbitMQ definitions JSON.

- ``source``: YAML with every value's file, line and column; files and directories merged;
- ``schema``: validation that teaches, friendly forms (``message_ttl: 30s``) to x-arguments;
- ``model``: the spec (frozen values, RabbitMQ's names);
- ``definitions``: RabbitMQ definitions in and out, and the YAML writer (export);
- ``plan``: what changes make a broker match, in order, with conflicts that say what to do;
- ``target`` / ``remote``: apply to a broker in this process, or through a management API.

Pure but for ``remote`` (HTTP) and file reading: no trio, no sockets held.
"""

from __future__ import annotations

from dataclasses import dataclass

from router.broker.broker import Broker
from router.topology.definitions import read_definitions
from router.topology.model import Topology
from router.topology.plan import Plan, plan
from router.topology.schema import Problem, read_topology
from router.topology.source import Where, expand, parse
from router.topology.target import ApplyError, BrokerTarget


def load(paths: list[str]) -> tuple[Topology, list[Problem]]:
    """The topology declared by ``paths`` (YAML files, directories of them, and RabbitMQ
    definitions ``.json`` files), merged, with every problem found (errors and warnings)."""
    files, source_errors = expand(paths)
    documents = []
    json_topologies: list[tuple[str, Topology]] = []
    problems: list[Problem] = []
    for path in files:
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as error:
            problems.append(Problem(Where(str(path)), "", f"cannot read the file: {error}"))
            continue
        if path.suffix == ".json":
            topology, found = read_definitions(text, str(path))
            problems.extend(found)
            json_topologies.append((str(path), topology))
            continue
        found_documents, errors = parse(text, str(path))
        documents.extend(found_documents)
        source_errors.extend(errors)
    topology, found = read_topology(documents, source_errors)
    problems.extend(found)
    for file, extra in json_topologies:
        problems.extend(merge(topology, extra, file))
    return topology, problems


@dataclass
class Applied:
    """What applying files to a broker in this process did (``router serve --topology``)."""

    problems: list[Problem]  # errors and warnings in the files
    plan: Plan | None = None  # None: the files had errors, nothing was planned
    error: str = ""  # a step the broker refused

    @property
    def ok(self) -> bool:
        return (
            not any(not p.warning for p in self.problems)
            and self.plan is not None
            and not self.plan.problems
            and not self.error
        )

    def lines(self) -> list[str]:
        """What to log, one message per line."""
        found = [str(p).replace("\n    ", " — ") for p in self.problems]
        if self.plan is not None:
            found += [
                f"{c.kind} '{c.name}' in vhost '{c.vhost}': {c.action}: {c.detail}"
                for c in self.plan.problems
            ]
        if self.error:
            found.append(self.error)
        return found


def apply_to_broker(broker: Broker, paths: list[str]) -> Applied:
    """Validate ``paths`` and make ``broker`` match them (no pruning): all or nothing up to the
    broker refusing a step, which the checks make unlikely."""
    topology, problems = load(paths)
    result = Applied(problems)
    if any(not p.warning for p in problems):
        return result
    target = BrokerTarget(broker)
    current, messages = target.current()
    result.plan = plan(topology, current, messages=messages)
    if result.plan.problems:
        return result
    try:
        target.apply(result.plan.steps())
    except ApplyError as error:
        result.error = str(error)
    return result


def merge(into: Topology, extra: Topology, file: str) -> list[Problem]:
    """Add ``extra``'s items to ``into``; an item declared in both is a problem."""
    problems = []
    for section in (
        "vhosts",
        "users",
        "permissions",
        "policies",
        "exchanges",
        "queues",
        "bindings",
    ):
        target = getattr(into, section)
        for key, spec in getattr(extra, section).items():
            if key in target:
                problems.append(
                    Problem(
                        spec.where,
                        section,
                        f"{key!r} is declared twice; the first is at {target[key].where}",
                        hint="keep one declaration",
                    )
                )
                continue
            target[key] = spec
    return problems


__all__ = ["Applied", "Problem", "Topology", "apply_to_broker", "load", "merge"]
