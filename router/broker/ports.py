"""Interfaces the model needs from outside: name generation. (The Store port arrives with
durability.) Implementations come in through constructors, so tests can be deterministic."""

from __future__ import annotations

import base64
import os
from typing import Protocol


class IdSource(Protocol):
    def token(self) -> str:
        """A fresh unique token of URL-safe characters (used for amq.gen-* and amq.ctag-*)."""
        ...


class RandomIds:
    """Tokens like RabbitMQ's: 16 random bytes, base64url, no padding (22 characters)."""

    def token(self) -> str:
        return base64.urlsafe_b64encode(os.urandom(16)).rstrip(b"=").decode("ascii")


class CountingIds:
    """Deterministic tokens for tests: ``t1``, ``t2``..."""

    def __init__(self) -> None:
        self._n = 0

    def token(self) -> str:
        self._n += 1
        return f"t{self._n}"


class Clock:
    """The broker's notion of now, set by whoever drives the model (the runtime before each step,
    tests by hand). ``now`` is monotonic seconds; ``wall_offset`` turns it into Unix time, for the
    few things that must be wall-clock (x-death ``time``, ``x-deliver-at``). The model reads
    these values; it never reads a real clock."""

    __slots__ = ("now", "wall_offset")

    def __init__(self, now: float = 0.0, wall_offset: float = 0.0) -> None:
        self.now = now
        self.wall_offset = wall_offset

    def wall(self) -> float:
        """Unix time in seconds."""
        return self.now + self.wall_offset


class RandomSource(Protocol):
    def random(self) -> float:
        """A float in [0, 1) (retry jitter)."""
        ...
