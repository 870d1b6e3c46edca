"""Helpers for the topology tests: files written into pytest's ``tmp_path`` and read with
``router.topology.load``, so every line and column in a problem is a real one.

``write`` dedents the text and drops the leading newline, so line 1 is the first line written
after the opening quotes.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

from router.broker.passwords import hash_password
from router.topology import load
from router.topology.model import Topology
from router.topology.schema import Problem

# a valid rabbit_password_hashing_sha256 hash (fixed salt, so the tests are deterministic)
HASH = hash_password("s3cret", salt=b"salt")
OTHER_HASH = hash_password("other", salt=b"salt")


def write(directory: Path, name: str, text: str) -> Path:
    path = directory / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


def load_yaml(
    directory: Path, text: str, name: str = "topology.yaml"
) -> tuple[Topology, list[Problem]]:
    """The topology and problems of one file holding ``text``."""
    return load([str(write(directory, name, text))])


def errors(problems: list[Problem]) -> list[Problem]:
    return [p for p in problems if not p.warning]


def warnings(problems: list[Problem]) -> list[Problem]:
    return [p for p in problems if p.warning]


def only_error(problems: list[Problem]) -> Problem:
    """The one error among ``problems`` (the assertion shows them all if there are others)."""
    found = errors(problems)
    assert len(found) == 1, "\n".join(str(p) for p in problems)
    return found[0]


def position(problem: Problem) -> tuple[str, int, int]:
    """(file name, line, column) of a problem."""
    return Path(problem.where.file).name, problem.where.line, problem.where.column
