"""Policies: optional arguments for groups of queues and exchanges, by name pattern (RabbitMQ's
``rabbit_policy``; operator policies are not supported).

One policy at most applies to an object: among its vhost's policies whose ``pattern`` is found
in the name (an unanchored search, as RabbitMQ's ``re:run``) and whose ``apply_to`` fits, the one
with the highest priority. RabbitMQ leaves a tie to the order of its internal table (a hash: the
winner does not depend on creation order and cannot be predicted from the names); router takes
the policy whose name sorts first, so the answer is always the same.

A policy is matched again for every queue and exchange of its vhost when it is set or cleared,
and for each queue and exchange when it is declared. The effective options of a queue are its
declared arguments combined with its policy, key by key, as ``rabbit_amqqueue_process``
(``process_args_policy``) and ``rabbit_quorum_queue`` combine them:

============================  =============================  ===================================
policy key                    queue argument                 when both are set
============================  =============================  ===================================
message-ttl                   x-message-ttl                  the smaller (RabbitMQ: res_min)
expires                       x-expires                      the smaller (res_min)
max-length                    x-max-length                   the smaller (res_min)
max-length-bytes              x-max-length-bytes             the smaller (res_min)
delivery-limit                x-delivery-limit               the smaller (quorum queues: min)
consumer-timeout              x-consumer-timeout             the smaller (RabbitMQ 3.12: min)
overflow                      x-overflow                     the argument (res_arg)
dead-letter-exchange          x-dead-letter-exchange         the argument (res_arg)
dead-letter-routing-key       x-dead-letter-routing-key      the argument (res_arg)
queue-mode                    x-queue-mode                   the argument (res_arg)
queue-version                 x-queue-version                the argument (res_arg)
retry-backoff                 x-retry-backoff                the argument (router's own key)
alternate-exchange            alternate-exchange (exchange)  the argument (rabbit_policy:get_arg)
============================  =============================  ===================================

Keys are resolved one by one: a queue may take its dead-letter exchange from its argument and
its dead-letter routing key from the policy. A queue's declared arguments never change (redeclare
equivalence compares what clients declared); ``effective_queue_arguments`` builds what it runs on.

Other RabbitMQ keys (mirroring ``ha-*``, ``queue-master-locator``, quorum and stream settings,
federation) are accepted so that a RabbitMQ definitions export imports cleanly, and ignored:
``Policy.ignored`` lists them. ``max-priority`` and ``single-active-consumer`` are refused, as
RabbitMQ 3.10 refuses them, saying which argument to use. Any other key is refused with the
closest known key as a suggestion.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from router.amqp.tables import FieldTable
from router.broker.arguments import MAX_EXPIRY, retry_backoff_problem

APPLY_TO = ("queues", "exchanges", "all")

MIN = "min"  # both set: the smaller wins
ARGUMENT = "argument"  # both set: the declared argument wins

# policy key -> (the x-argument it stands for, how a conflict with that argument is resolved)
QUEUE_KEYS: dict[str, tuple[str, str]] = {
    "message-ttl": ("x-message-ttl", MIN),
    "expires": ("x-expires", MIN),
    "max-length": ("x-max-length", MIN),
    "max-length-bytes": ("x-max-length-bytes", MIN),
    "delivery-limit": ("x-delivery-limit", MIN),
    "consumer-timeout": ("x-consumer-timeout", MIN),
    "overflow": ("x-overflow", ARGUMENT),
    "dead-letter-exchange": ("x-dead-letter-exchange", ARGUMENT),
    "dead-letter-routing-key": ("x-dead-letter-routing-key", ARGUMENT),
    "queue-mode": ("x-queue-mode", ARGUMENT),
    "queue-version": ("x-queue-version", ARGUMENT),
    "retry-backoff": ("x-retry-backoff", ARGUMENT),
}
EXCHANGE_KEYS: dict[str, tuple[str, str]] = {
    "alternate-exchange": ("alternate-exchange", ARGUMENT),
}

# RabbitMQ keys router accepts and does nothing with (no mirroring, quorum replication, streams
# or federation here): a definitions export from RabbitMQ imports without editing
IGNORED_KEYS = frozenset(
    {
        "ha-mode",
        "ha-params",
        "ha-sync-mode",
        "ha-sync-batch-size",
        "ha-promote-on-shutdown",
        "ha-promote-on-failure",
        "queue-master-locator",
        "queue-leader-locator",
        "initial-cluster-size",
        "max-in-memory-length",
        "max-in-memory-bytes",
        "dead-letter-strategy",
        "max-age",
        "stream-max-segment-size-bytes",
        "federation-upstream",
        "federation-upstream-set",
    }
)

# keys that look like policy keys but cannot be (RabbitMQ 3.10 refuses them too)
REFUSED_KEYS = {
    "max-priority": "declare the queue with the x-max-priority argument instead (a queue's "
    "priority levels are fixed when it is declared)",
    "single-active-consumer": "declare the queue with the x-single-active-consumer argument "
    "instead",
}

KNOWN_KEYS = (*QUEUE_KEYS, *EXCHANGE_KEYS, *sorted(IGNORED_KEYS))


@dataclass(frozen=True)
class Policy:
    """A named set of queue/exchange options for the names its pattern matches."""

    vhost: str
    name: str
    pattern: str
    apply_to: str = "all"  # "queues" | "exchanges" | "all"
    priority: int = 0
    # JSON-like values under RabbitMQ's keys ("message-ttl", "dead-letter-exchange", ...)
    definition: dict[str, Any] = field(default_factory=dict, hash=False)

    @cached_property
    def regex(self) -> re.Pattern[str]:
        return re.compile(self.pattern)

    @property
    def ignored(self) -> tuple[str, ...]:
        """The definition's keys router accepts but does not act on."""
        return tuple(key for key in self.definition if key in IGNORED_KEYS)

    def applies_to(self, kind: str, name: str) -> bool:
        """Does it match the queue (``kind`` "queues") or exchange ("exchanges") ``name``?"""
        return (self.apply_to == "all" or self.apply_to == kind) and (
            self.regex.search(name) is not None
        )


def validate_policy(policy: Policy) -> None:
    """Raise ValueError saying what is wrong with ``policy`` and what would be right."""
    where = f"policy '{policy.name}' in vhost '{policy.vhost}'"
    if not isinstance(policy.name, str) or not policy.name:
        raise ValueError(f"a policy needs a name (a non-empty string), not {policy.name!r}")
    if not isinstance(policy.pattern, str):
        raise ValueError(f"{where}: pattern must be a string, not {policy.pattern!r}")
    try:
        re.compile(policy.pattern)
    except re.error as error:
        raise ValueError(
            f"{where}: pattern {policy.pattern!r} is not a valid regular expression ({error}); "
            f"e.g. '^orders\\.' for names starting with 'orders.', '.*' for all"
        ) from None
    if policy.apply_to not in APPLY_TO:
        raise ValueError(
            f"{where}: apply-to {policy.apply_to!r} must be 'queues', 'exchanges' or 'all'"
        )
    if isinstance(policy.priority, bool) or not isinstance(policy.priority, int):
        raise ValueError(f"{where}: priority must be an integer, not {policy.priority!r}")
    definition = policy.definition
    if not isinstance(definition, dict) or not definition:
        raise ValueError(
            f"{where}: the definition must be a non-empty object of settings, e.g. "
            f'{{"message-ttl": 60000, "dead-letter-exchange": "dlx"}}'
        )
    for key, value in definition.items():
        problem = definition_problem(key, value)
        if problem is not None:
            raise ValueError(f"{where}: {problem}")


def _integer(value: Any, least: int, what: str, key: str) -> str | None:
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        return f"{key} must be {what}, not {value!r}"
    if key in ("message-ttl", "expires") and value > MAX_EXPIRY:
        return f"{key} must be at most {MAX_EXPIRY} ms (ten years), not {value!r}"
    return None


def _one_of(value: Any, allowed: tuple[Any, ...], key: str) -> str | None:
    if value not in allowed or isinstance(value, bool):
        shown = ", ".join(repr(a) for a in allowed)
        return f"{key} must be one of {shown}, not {value!r}"
    return None


def definition_problem(key: str, value: Any) -> str | None:
    """What is wrong with one definition entry (None: nothing)."""
    if key in ("message-ttl", "max-length", "max-length-bytes", "delivery-limit"):
        unit = "milliseconds" if key == "message-ttl" else "bytes" if "bytes" in key else ""
        return _integer(value, 0, f"a non-negative integer{f' ({unit})' if unit else ''}", key)
    if key in ("expires", "consumer-timeout"):
        return _integer(value, 1, "a positive integer (milliseconds)", key)
    if key == "overflow":
        return _one_of(value, ("drop-head", "reject-publish", "reject-publish-dlx"), key)
    if key == "queue-mode":
        return _one_of(value, ("default", "lazy"), key)
    if key == "queue-version":
        return _one_of(value, (1, 2), key)
    if key in ("dead-letter-exchange", "dead-letter-routing-key", "alternate-exchange"):
        if not isinstance(value, str):
            what = "a routing key" if key == "dead-letter-routing-key" else "an exchange name"
            return f"{key} must be {what} (a string), not {value!r}"
        return None
    if key == "retry-backoff":
        problem = retry_backoff_problem(value)
        return f"retry-backoff: {problem}" if problem is not None else None
    if key in IGNORED_KEYS:
        return None
    if key in REFUSED_KEYS:
        return f"{key} cannot be set by a policy: {REFUSED_KEYS[key]}"
    close = difflib.get_close_matches(key, KNOWN_KEYS, n=1, cutoff=0.6)
    hint = f"did you mean '{close[0]}'? " if close else ""
    return (
        f"unknown key {key!r}; {hint}known keys: {', '.join(QUEUE_KEYS)} (queues), "
        f"{', '.join(EXCHANGE_KEYS)} (exchanges)"
    )


def match(policies: dict[str, Policy], kind: str, name: str) -> Policy | None:
    """The policy in force for the queue (``kind`` "queues") or exchange ("exchanges")
    ``name``: the highest priority among those that match; on a tie, the first name."""
    best: Policy | None = None
    for policy in policies.values():
        if not policy.applies_to(kind, name):
            continue
        if (
            best is None
            or policy.priority > best.priority
            or (policy.priority == best.priority and policy.name < best.name)
        ):
            best = policy
    return best


def _to_table_value(value: Any) -> Any:
    if isinstance(value, dict):
        return FieldTable({str(k): _to_table_value(v) for k, v in value.items()})
    return value


def effective_queue_arguments(arguments: FieldTable, policy: Policy | None) -> FieldTable:
    """The arguments a queue runs on: ``arguments`` combined with ``policy``, key by key (see
    the table above). ``arguments`` itself when there is no policy."""
    if policy is None:
        return arguments
    effective = arguments.copy()
    for key, value in policy.definition.items():
        spec = QUEUE_KEYS.get(key)
        if spec is None:
            continue
        argument, resolution = spec
        if argument not in effective:
            effective[argument] = _to_table_value(value)
        elif resolution == MIN:
            current = effective[argument]
            if isinstance(current, int) and not isinstance(current, bool) and value < current:
                effective[argument] = value
    return effective


def effective_alternate_exchange(arguments: FieldTable, policy: Policy | None) -> str | None:
    """An exchange's alternate exchange: its argument, else its policy's (RabbitMQ's
    ``rabbit_policy:get_arg``: the argument wins)."""
    alternate = arguments.get("alternate-exchange")
    if isinstance(alternate, bytes):
        alternate = alternate.decode("utf-8", "replace")
    if isinstance(alternate, str):
        return alternate
    if policy is not None:
        value = policy.definition.get("alternate-exchange")
        if isinstance(value, str):
            return value
    return None
