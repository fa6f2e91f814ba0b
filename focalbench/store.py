"""Atomic file writes: a reader never sees a half-written result.

Every file focalbench writes goes to a temporary file in the same folder, is flushed and
fsync'ed, given the mode a plain ``open()`` would give it (``0666 & ~umask``: 0644 under umask
022, so colleagues on a shared disk can read the results; :func:`tempfile.mkstemp` alone makes
0600), and renamed over the final name with :func:`os.replace` (atomic on POSIX and Windows);
the folder is then fsync'ed so the rename itself survives a power loss. A crash or a full disk
leaves either the old file or the new one, never a torn one, and no temporary file.

A disk fault while writing (:data:`DISK_FAULTS`: disk full, quota, read-only file system, no
permission) is the environment's, not a bug: it becomes one :class:`FocalbenchError` line naming
the path, the reason and the free space there.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any

from focalbench.errors import FocalbenchError

#: errno values that mean "this folder cannot take the file", each with the fix a user can apply.
DISK_FAULTS = {
    errno.ENOSPC: "free space there or write elsewhere",
    errno.EDQUOT: "free space within your quota or write elsewhere",
    errno.EROFS: "write to a writable folder instead",
    errno.EACCES: "fix the folder's permissions or write elsewhere",
    errno.EPERM: "fix the folder's permissions or write elsewhere",
}


class DiskFault(FocalbenchError):
    """A write refused by the file system (:data:`DISK_FAULTS`); the previous file is untouched."""


def disk_fault(exc: OSError, path: str | os.PathLike) -> DiskFault:
    """The one-line error for ``exc`` raised while writing ``path``: path, reason, free space, fix."""
    reason = exc.strerror or os.strerror(exc.errno or 0)
    return DiskFault(
        f"cannot write {path} ({reason}; {free_space(path)} free there); "
        f"{DISK_FAULTS.get(exc.errno, 'write elsewhere')}, then rerun the same command"
    )


def free_space(path: str | os.PathLike) -> str:
    """Free bytes on the file system holding ``path`` (or its nearest existing folder), e.g. '12.0 KiB'."""
    folder = Path(path).absolute()
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    try:
        free = float(shutil.disk_usage(folder).free)
    except OSError:
        return "unknown space"
    units = ["B", "KiB", "MiB", "GiB", "TiB"]
    power = 0
    while free >= 1024 and power < len(units) - 1:
        free, power = free / 1024, power + 1
    return f"{free:.0f} B" if power == 0 else f"{free:.1f} {units[power]}"


def file_mode() -> int:
    """The mode ``open(path, "w")`` gives a new file: ``0o666 & ~umask``."""
    return 0o666 & ~_umask()


def _umask() -> int:
    # /proc states it without changing it; the os.umask round trip briefly sets it for every thread.
    with (
        contextlib.suppress(OSError, ValueError, StopIteration),
        open("/proc/self/status", encoding="ascii") as status,
    ):
        return int(next(line for line in status if line.startswith("Umask:")).split()[1], 8)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_open(
    path: str | os.PathLike,
    mode: str = "w",
    *,
    previous: str | os.PathLike | None = None,
    **kwargs: Any,
) -> Iterator[IO]:
    """Open a temporary sibling of ``path`` for writing; rename it onto ``path`` on success.

    ``previous``: first move the file now at ``path`` there (a second-newest copy), only once the
    new file is complete on disk, so a fault at any point leaves at least one complete file.
    """
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        with os.fdopen(fd, mode, **kwargs) as handle:
            yield handle
            handle.flush()
            os.fchmod(handle.fileno(), file_mode())
            os.fsync(handle.fileno())
        if previous is not None and path.exists():
            os.replace(path, previous)
        os.replace(tmp, path)
        tmp = None
        _fsync_folder(path.parent)
    except OSError as exc:
        _discard(tmp)  # first, so the free space reported is what the user has to work with
        if exc.errno in DISK_FAULTS:
            raise disk_fault(exc, path) from None
        raise
    except BaseException:
        _discard(tmp)
        raise


def _discard(tmp: str | None) -> None:
    if tmp is not None:
        with contextlib.suppress(OSError):
            os.unlink(tmp)


def _fsync_folder(folder: Path) -> None:
    """Make a rename in ``folder`` durable (POSIX; Windows cannot open a folder and needs not)."""
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_open(path, "w", encoding="utf-8") as handle:
        handle.write(text)


def atomic_write_bytes(
    path: str | os.PathLike, data: bytes, previous: str | os.PathLike | None = None
) -> None:
    with atomic_open(path, "wb", previous=previous) as handle:
        handle.write(data)


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n")


def read_json(path: str | os.PathLike) -> Any:
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"


def utc_now() -> str:
    """Now as ISO 8601 UTC to the second, e.g. ``2025-01-31T17:04:05Z``: the one format of the
    times in a run's status record (``started``, ``updated``, ``finished``)."""
    return datetime.now(timezone.utc).strftime(TIME_FORMAT)


def parse_time(value: Any) -> float | None:
    """A run status time as epoch seconds, or ``None`` when it is missing or unreadable.

    Reads :func:`utc_now`'s text and what older versions wrote: ISO text with a numeric offset
    (the engine's local ``…+0100``) and float epoch seconds (``ablate``'s failure records).
    """
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        with contextlib.suppress(ValueError):
            return datetime.strptime(value, "%Y-%m-%dT%H:%M:%S%z").timestamp()  # %z also takes "Z"
    return None


def results_root(explicit: str | os.PathLike | None = None) -> Path:
    """The results folder: ``explicit``, else ``$FOCALBENCH_RESULTS``, else ``./results``."""
    if explicit is not None:
        return Path(explicit)
    return Path(os.environ.get("FOCALBENCH_RESULTS", "results"))


def ensure_writable_dir(path: str | os.PathLike, flag: str = "--results") -> Path:
    """Create ``path`` if needed and prove it is writable, or raise a one-line error naming ``flag``."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".write-test-"):
            pass
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise FocalbenchError(
            f"folder {str(path)!r} is not writable ({reason}); pass a writable folder with {flag} DIR"
        ) from None
    return path


def _json_default(obj: Any) -> Any:
    """Serialise numpy scalars/arrays and paths that appear in configs and metrics."""
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "tolist"):
        return obj.tolist()
    raise TypeError(f"cannot serialise {type(obj).__name__} to JSON")
