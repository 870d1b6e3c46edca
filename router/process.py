"""Facts about processes on this machine, from the standard library and Linux's /proc: resident
memory and the limit of open files. Used by the runtime (the memory alarm, ``router serve``) and
by ``router bench`` (the broker's memory)."""

from __future__ import annotations

import os

_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def read_rss(pid: int | str = "self") -> int | None:
    """The resident set of process ``pid`` (default: this one) in bytes, from Linux's /proc;
    None where it cannot be read."""
    try:
        with open(f"/proc/{pid}/statm", "rb") as statm:
            return int(statm.read().split()[1]) * _PAGE
    except (OSError, ValueError, IndexError):
        return None


def raise_fd_limit() -> int | None:
    """One socket per connection: raise this process's soft limit of open files to the hard
    limit (a default of 1,024 refuses about the thousandth connection). Returns the soft limit
    now in force, or None where it cannot be read or changed."""
    try:
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft < hard:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        return soft
    except (ImportError, ValueError, OSError):
        return None
