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
