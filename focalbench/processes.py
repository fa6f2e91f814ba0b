"""Liveness of a process on this host: whether the pid recorded by a grid cell's owner or by a
fetch's staging folder still names a running process.

Both checks use ``kill(pid, 0)`` and, where there is procfs, ``/proc/<pid>/stat``: a zombie (dead,
not yet reaped by a container's init) counts as gone, and a process's start time tells a reused
pid from the original owner.
"""

from __future__ import annotations

import os
from pathlib import Path


def pid_alive(pid: int) -> bool:
    """True if ``pid`` is a running process on this host (an unreaped zombie counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by another user
        pass
    stat = _proc_stat(pid)
    return stat is None or stat[0] != "Z"  # no procfs: trust kill


def start_time(pid: int) -> float | None:
    """Epoch seconds at which ``pid`` started (``/proc/<pid>/stat`` field 22, ticks since boot),
    or ``None`` where procfs cannot tell."""
    stat = _proc_stat(pid)
    try:
        boot = next(
            float(line.split()[1])
            for line in Path("/proc/stat").read_text().splitlines()
            if line.startswith("btime ")
        )
        return boot + int(stat[19]) / os.sysconf("SC_CLK_TCK")
    except (OSError, StopIteration, IndexError, ValueError, TypeError):
        return None


def _proc_stat(pid: int) -> list[str] | None:
    """Fields 3… of ``/proc/<pid>/stat`` (state first), or ``None`` without procfs."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
