"""Which process a leftover belongs to, and whether that process is gone.

Spool folders (runner.analysis.spool) and the temporary files of atomic writes
(runner.output.files) carry their owner in their names, ``<pid>@<host>``, so a later run can
remove what a killed process left behind without ever touching what a live one is still using.
"""

from __future__ import annotations

import os
import re
import socket
from functools import lru_cache

_HOST_CHARS = re.compile(r"[^A-Za-z0-9.-]")
TAG = r"(\d+)@([A-Za-z0-9.-]+)"  # what tag() writes, for the parsers of names that carry it


@lru_cache(maxsize=1)
def host() -> str:
    """This machine's name, as it may appear in a file name (no '@', '/' or '_')."""
    return _HOST_CHARS.sub("-", socket.gethostname()) or "localhost"


def tag(pid: int | None = None) -> str:
    """``<pid>@<host>`` of this process (or of ``pid`` on this machine)."""
    return f"{os.getpid() if pid is None else pid}@{host()}"


def gone(pid: int, on_host: str, last_used: float) -> bool:
    """Whether process ``pid`` of ``on_host``, which last touched its leftover at
    ``last_used`` (a file's mtime), has ended. Never true for another machine's process
    (nothing here can tell) or for a live one; a live process that started after the
    leftover was last touched has only been given the same pid again, so the owner is gone.
    """
    if on_host != host():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # another user's live process
        return False
    state, started = _stat(pid)
    if state in ("Z", "X"):  # ended, not yet reaped (an orphan's parent may never reap it)
        return True
    return started is not None and started > last_used + 2.0  # boot time is in whole seconds


def _stat(pid: int) -> tuple[str | None, float | None]:
    """The state of ``pid`` and when it started (seconds since the epoch), where /proc
    says so (Linux); (None, None) elsewhere."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
        ticks = int(fields[19])  # field 22 of the line; the two before the ")" are cut off
        return fields[0], _boot_time() + ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None, None


@lru_cache(maxsize=1)
def _boot_time() -> float:
    with open("/proc/stat", encoding="ascii") as handle:
        for line in handle:
            if line.startswith("btime "):
                return float(line.split()[1])
    raise ValueError("no btime in /proc/stat")
