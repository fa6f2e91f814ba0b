"""Atomic file writes: a reader never sees a half-written result.

Every file focalbench writes goes to a temporary file in the same folder, is flushed to disk,
and then renamed over the final name with :func:`os.replace` (atomic on POSIX and Windows).
A crash leaves either the old file or the new one, never a torn one.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any

from focalbench.errors import FocalbenchError


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w", **kwargs: Any) -> Iterator[IO]:
    """Open a temporary sibling of ``path`` for writing; rename it onto ``path`` on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode, **kwargs) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_open(path, "w", encoding="utf-8") as handle:
        handle.write(text)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_open(path, "wb") as handle:
        handle.write(data)


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n")


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> None:
    import torch

    with atomic_open(path, "wb") as handle:
        torch.save(obj, handle)


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
