"""Permissions: which resources a user may configure, write and read in a vhost (RabbitMQ's
internal authorisation backend, ``rabbit_auth_backend_internal``).

A user reaches a vhost only with a ``Permission`` there (connection.open otherwise gets 530
NOT_ALLOWED). Each of its three patterns is a regular expression searched, unanchored, in the
resource's name, as RabbitMQ's ``re:run`` does: ``".*"`` allows everything, ``"^amq\\.gen"`` only
server-named queues. An empty pattern allows nothing (RabbitMQ turns it into ``^$``). The default
exchange is checked under the name ``amq.default``.

Which permission each method needs is RabbitMQ's table (access-control "How Permissions Work"),
checked in the same order it checks them (``rabbit_channel``), so the first refusal names the same
resource: see ``Session``. The texts are RabbitMQ's:
``access to queue 'q' in vhost '/' refused for user 'u'`` (403 ACCESS_REFUSED, a channel error).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from router.amqp.constants import ACCESS_REFUSED
from router.amqp.errors import ChannelError

CONFIGURE = "configure"
WRITE = "write"
READ = "read"

DEFAULT_EXCHANGE = "amq.default"  # the name the default exchange "" is checked under


def compile_pattern(pattern: str, what: str = "pattern") -> re.Pattern[str]:
    """A permission pattern, compiled; ``""`` allows nothing. ValueError names what is wrong."""
    if not isinstance(pattern, str):
        raise ValueError(f"{what} must be a string (a regular expression), not {pattern!r}")
    try:
        return re.compile(pattern or "^$")
    except re.error as error:
        raise ValueError(
            f"{what} {pattern!r} is not a valid regular expression: {error}; e.g. '.*' allows "
            f"everything, '' nothing, '^app\\.' names starting with 'app.'"
        ) from None


@dataclass(frozen=True)
class Permission:
    """What one user may do in one vhost: three regular expressions over resource names."""

    configure: str
    write: str
    read: str
    # compiled once (patterns checked per method, and once per exchange name for publishes)
    _compiled: tuple[re.Pattern[str], ...] = field(
        init=False, repr=False, compare=False, hash=False
    )

    def __post_init__(self) -> None:
        compiled = tuple(
            compile_pattern(getattr(self, kind), kind) for kind in (CONFIGURE, WRITE, READ)
        )
        object.__setattr__(self, "_compiled", compiled)

    def allows(self, kind: str, name: str) -> bool:
        """May the holder ``kind`` ("configure", "write", "read") the resource ``name``?"""
        index = 0 if kind == CONFIGURE else 1 if kind == WRITE else 2
        return self._compiled[index].search(name) is not None


FULL = Permission(".*", ".*", ".*")


def refused(kind: str, name: str, vhost: str, user: str) -> ChannelError:
    """RabbitMQ's 403 for a resource (``kind`` "queue" or "exchange") the user may not use."""
    if kind == "exchange" and name == "":
        name = DEFAULT_EXCHANGE
    return ChannelError(
        ACCESS_REFUSED, f"access to {kind} '{name}' in vhost '{vhost}' refused for user '{user}'"
    )


class Access:
    """One connection's rights: its user, its vhost and the permission the user has there (None:
    none, e.g. cleared while connected; every check then fails, the connection stays open as in
    RabbitMQ). A new ``Access`` replaces it when the permission changes.

    ``writable`` caches the exchange names a publish was allowed to, so a publish costs one set
    lookup, not a regular expression."""

    __slots__ = ("permission", "user", "vhost", "writable")

    def __init__(self, user: str, vhost: str, permission: Permission | None) -> None:
        self.user = user
        self.vhost = vhost
        self.permission = permission
        self.writable: set[str] = set()

    def allows(self, kind: str, resource: str, name: str) -> bool:
        permission = self.permission
        if resource == "exchange" and name == "":
            name = DEFAULT_EXCHANGE
        return permission is not None and permission.allows(kind, name)

    def check(self, kind: str, resource: str, name: str) -> None:
        """Raise RabbitMQ's 403 unless the user may ``kind`` the ``resource`` ("queue" or
        "exchange") called ``name``."""
        if not self.allows(kind, resource, name):
            raise refused(resource, name, self.vhost, self.user)

    def check_publish(self, exchange: str) -> None:
        """basic.publish needs write on the exchange: checked once per exchange name."""
        self.check(WRITE, "exchange", exchange)
        self.writable.add(exchange)
