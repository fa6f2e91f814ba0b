"""A run folder ``<results>/runs/<RunConfig.key>/``: its layout, its status record, its lock.

This module is the one owner of a run's state. The engine writes through :class:`RunFolder`
while it trains; the executors take a cell's lock and record a failure through it; the grid's
display, ``prune`` and ``report`` read through it. The path ``runs/<key>`` is built only by
:func:`run_folder`, and ``status.json`` is named only here (layout in docs/architecture.md).

The status record (:class:`RunStatus`) is read tolerantly: folders written by 0.1.0 (no
``device`` field, times as ISO with an offset or as epoch seconds) load unchanged, and fields
this version does not know are kept on rewrite.

Every file is written atomically through :mod:`focalbench.store`; ``history.csv`` is rewritten
whole each epoch from the rows held in the checkpoint, so a crash between the two writes leaves
a history that a resume rebuilds, never a torn line.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import fcntl
import io
import json
import os
import socket
from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

from focalbench.processes import pid_alive, start_time
from focalbench.store import (
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_text,
    parse_time,
    read_json,
    utc_now,
)

HISTORY_COLUMNS = [
    "epoch",
    "train_loss",
    "val_loss",
    "val_dsc",
    "val_precision",
    "val_recall",
    "lr",
    "seconds",
]
PER_IMAGE_METRICS = [
    "dsc",
    "precision",
    "recall",
    "jaccard",
    "accuracy",
    "sensitivity",
    "specificity",
]
# The error of a run stopped by Ctrl-C or by the death of its worker: not a failure of the
# cell, so ablate resumes it without --retry-failed.
INTERRUPTED = "interrupted; rerun the same command to resume"
# The error of a run stopped by a NaN/inf loss begins with this: a failed cell whose stored
# summary a resumed train returns (it would diverge again), retrained from scratch by
# `train --no-resume` and `ablate --retry-failed`.
DIVERGED = "non-finite loss"


class Status(str, Enum):
    """Where a run stands: training (or its owner died mid-run), tested, or stopped by an error."""

    running = "running"
    done = "done"
    failed = "failed"


@dataclass
class RunStatus:
    """The status record of one run folder (``status.json``); field meanings in
    docs/architecture.md. ``epoch`` is the last epoch whose checkpoint is on disk."""

    state: Status
    error: str | None = None
    epoch: int | None = None
    pid: int | None = None
    host: str | None = None
    started: str | None = None
    updated: str | None = None
    finished: str | None = None
    device: str | None = None  # where the last writer ran (None in 0.1.0 folders)
    traceback: str | None = None  # the last frames of an exception ablate caught
    slurm_job: str | None = None  # the Slurm job training it (focalbench.slurm), if any
    extra: dict[str, Any] = field(default_factory=dict)  # fields of a newer version, kept

    @property
    def interrupted(self) -> bool:
        """Stopped by Ctrl-C or a dead worker: resumable, not failed."""
        return str(self.error or "").startswith("interrupted;")

    @property
    def diverged(self) -> bool:
        """Stopped on a NaN/inf loss: failed, and retried from scratch."""
        return self.state is Status.failed and str(self.error or "").startswith(DIVERGED)

    def owner_alive(self) -> bool:
        """True if the record names a live process on this host other than us (an owner that
        trains without the lock, e.g. a plain ``focalbench train``).

        A live process that started after the record was last written cannot be its writer:
        the owner died and its pid was reused (after a reboot, or a wrap of the pid counter).
        A run trained in a Slurm job is owned while Slurm queues or runs that job: a pid says
        nothing on another node, and a requeued job is the owner while it waits to resume.
        Otherwise an interrupted record's writer owns nothing: it stopped training when it
        wrote it, though its process may live on (a Ray worker outlives its cancelled task).
        """
        if self.slurm_job:
            from focalbench.slurm import job_alive

            return job_alive(self.slurm_job)
        if self.interrupted:
            return False
        pid, host = self.pid, self.host
        if not isinstance(pid, int) or host != socket.gethostname() or pid == os.getpid():
            return False
        if not pid_alive(pid):
            return False
        updated, started = parse_time(self.updated), start_time(pid)
        # 2 s: status times are whole seconds, and boot time is too.
        return updated is None or started is None or started <= updated + 2.0

    def to_dict(self) -> dict[str, Any]:
        out = {**self.extra, **{f.name: getattr(self, f.name) for f in _FIELDS}}
        out["state"] = out["state"].value
        for optional in (
            "device",
            "traceback",
            "slurm_job",
        ):  # absent, as 0.1.0 wrote them, unless known
            if out[optional] is None:
                del out[optional]
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunStatus:
        """Read a record; raises ``ValueError`` for a state that is not running/done/failed."""
        if not isinstance(data, dict):
            raise ValueError(f"status record is {type(data).__name__}, not an object")
        known = {f.name for f in _FIELDS}
        values = {k: v for k, v in data.items() if k in known and k != "state"}
        extra = {k: v for k, v in data.items() if k not in known}
        return cls(state=Status(data.get("state")), extra=extra, **values)


_FIELDS = [f for f in dataclasses.fields(RunStatus) if f.name != "extra"]


def run_folder(results: str | os.PathLike, key: str) -> RunFolder:
    """The run folder of the cell ``key`` under the results folder ``results``."""
    return RunFolder(runs_dir(results) / key)


def runs_dir(results: str | os.PathLike) -> Path:
    """``<results>/runs``, the folder holding every run folder."""
    return Path(results) / "runs"


def to_csv(rows: list[dict[str, Any]], columns: list[str]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _csv_value(row.get(k)) for k in columns})
    return buffer.getvalue()


def _csv_value(value: Any) -> Any:
    # repr keeps every bit of a float, so history.csv compares exactly across resumes.
    return repr(value) if isinstance(value, float) else value


@dataclass
class RunFolder:
    """The files of one run and how they are read and written."""

    path: Path

    config_json = property(lambda self: self.path / "config.json")
    status_json = property(lambda self: self.path / "status.json")
    history_csv = property(lambda self: self.path / "history.csv")
    per_image_csv = property(lambda self: self.path / "per_image.csv")
    metrics_json = property(lambda self: self.path / "metrics.json")
    samples_npz = property(lambda self: self.path / "test_samples.npz")
    pruned_json = property(lambda self: self.path / "pruned.json")
    last_pt = property(lambda self: self.path / "last.pt")
    best_pt = property(lambda self: self.path / "best.pt")
    lock_file = property(lambda self: self.path / ".lock")

    @property
    def key(self) -> str:
        return self.path.name

    # -- status ---------------------------------------------------------------------------

    def status(self) -> RunStatus | None:
        """The status record, or ``None`` before the run first wrote one.

        Raises ``ValueError`` (or ``json.JSONDecodeError``, a subclass) for an unreadable one.
        """
        try:
            raw = read_json(self.status_json)
        except FileNotFoundError:
            return None
        return RunStatus.from_dict(raw)

    def save_status(self, record: RunStatus) -> None:
        atomic_write_json(self.status_json, record.to_dict())

    def write_status(
        self,
        status: Status | str,
        epoch: int,
        *,
        error: str | None = None,
        started: str | None = None,
        device: str | None = None,
    ) -> None:
        """Record that this process (``pid``/``host``) has the run at ``epoch`` in ``status``."""
        from focalbench.slurm import current_job

        status, now = Status(status), utc_now()
        previous = self._status_or_none()
        self.save_status(
            RunStatus(
                state=status,
                error=error,
                epoch=epoch,
                pid=os.getpid(),
                host=socket.gethostname(),
                started=started or (previous.started if previous else None) or now,
                updated=now,
                finished=now if status is not Status.running else None,
                device=device or (previous.device if previous else None),
                slurm_job=current_job(),
            )
        )

    def record_failure(
        self, error: str, trace: str | None = None, device: str | None = None
    ) -> None:
        """Mark the run ``failed`` with ``error`` (and the traceback, when one is known),
        keeping what train wrote (its epoch, its start time)."""
        previous, now = self._status_or_none(), utc_now()
        record = previous or RunStatus(Status.failed, started=now)
        record.state, record.error = Status.failed, error
        record.pid, record.host, record.updated, record.finished = (
            os.getpid(),
            socket.gethostname(),
            now,
            now,
        )
        record.traceback = trace or record.traceback
        record.device = device or record.device
        self.save_status(record)

    def _status_or_none(self) -> RunStatus | None:
        try:
            return self.status()
        except ValueError:  # a torn or foreign record is replaced, not fatal
            return None

    # -- lock -----------------------------------------------------------------------------

    @contextlib.contextmanager
    def lock(self, wait: float = 0.0) -> Iterator[bool]:
        """Hold the run's exclusive lock for the ``with`` block; yields ``False`` if another
        process still holds it after ``wait`` seconds.

        An ``fcntl.flock`` on ``.lock``: flock locks belong to the open file, so two processes,
        and two opens in one process, exclude each other; the kernel releases the lock when the
        holder exits for any reason, even ``kill -9``, so a lock never outlives its owner. A
        holder on a lost node lets go only when its process is gone (seconds after its Ray node
        dies) or, on NFS, when its lease expires: what ``wait`` is for.
        """
        import time

        self.path.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.lock_file, os.O_RDWR | os.O_CREAT, 0o644)
        deadline = time.monotonic() + wait
        try:
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        yield False
                        return
                    time.sleep(0.2)
            # Who holds it, for a human looking at a stuck grid; the lock itself is the flock.
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()} {socket.gethostname()}\n".encode())
            yield True
        finally:
            os.close(fd)  # closing drops the flock

    # -- the other files -------------------------------------------------------------------

    def config(self) -> dict[str, Any]:
        """``config.json`` (``config``, ``key``, ``version``, ``resolved``); raises
        ``FileNotFoundError`` before the run wrote it."""
        return read_json(self.config_json)

    def total_epochs(self) -> int | None:
        """The resolved protocol's epoch cap, or ``None`` before ``config.json`` is readable."""
        try:
            return self.config().get("resolved", {}).get("epochs")
        except (FileNotFoundError, json.JSONDecodeError, AttributeError):
            return None

    def metrics(self) -> dict[str, Any] | None:
        try:
            return read_json(self.metrics_json)
        except FileNotFoundError:
            return None

    def write_config(self, payload: dict[str, Any]) -> None:
        atomic_write_json(self.config_json, payload)

    def write_history(self, rows: list[dict[str, Any]]) -> None:
        first = rows[0] if rows else {}
        columns = HISTORY_COLUMNS + [k for k in first if k not in HISTORY_COLUMNS]
        atomic_write_text(self.history_csv, to_csv(rows, columns))

    def write_per_image(self, rows: list[dict[str, Any]], extra: list[str] = ()) -> None:
        columns = ["image_id", "tp", "fp", "fn", "tn", *PER_IMAGE_METRICS, *extra]
        atomic_write_text(self.per_image_csv, to_csv(rows, columns))

    def write_metrics(self, metrics: dict[str, Any]) -> None:
        atomic_write_json(self.metrics_json, metrics)

    def write_samples(self, **arrays: Any) -> None:
        import numpy as np

        buffer = io.BytesIO()
        np.savez_compressed(buffer, **arrays)
        atomic_write_bytes(self.samples_npz, buffer.getvalue())

    def write_pruned(self, decision: dict[str, Any]) -> None:
        atomic_write_json(self.pruned_json, decision)

    def clear(self) -> None:
        """Forget a previous attempt (``--no-resume``): results and checkpoints, not the folder."""
        for path in (
            self.status_json,
            self.history_csv,
            self.per_image_csv,
            self.metrics_json,
            self.samples_npz,
            self.last_pt,
            self.best_pt,
            self.path / "last.previous.pt",
            self.path / "best.previous.pt",
        ):
            path.unlink(missing_ok=True)


# ---------------------------------------------------------------------------------------------
# One grid cell's life, the same in whatever process or executor it runs:
#
# 1. take the run folder's lock. Two ``ablate`` processes (or two Ray workers on a shared
#    filesystem with flock support, e.g. NFSv4) never train one cell at once; a cell whose lock
#    is held is ``busy``;
# 2. read the status: ``done`` → skipped; ``failed`` → skipped unless ``retry_failed`` (a run
#    stopped by Ctrl-C is not failed: it is resumed; a run stopped by a non-finite loss is
#    failed, and ``retry_failed`` trains it again from scratch, since resuming its last finite
#    epoch would diverge again); ``running`` while we hold the lock → its owner is gone, so the
#    run is resumed from ``last.pt`` (unless the recorded owner is a live process on this host
#    that trains without the lock, e.g. a plain ``focalbench train`` — then ``busy``);
# 3. train; any exception is caught and recorded as ``failed`` with its error, so one bad cell
#    never stops a grid.


class Outcome(str, Enum):
    """What happened to a cell in this grid run."""

    trained = "trained"  # trained from scratch and finished
    resumed = "resumed"  # continued from last.pt and finished
    skipped = "skipped"  # already done
    failed = "failed"  # raised (now, or earlier and not retried)
    busy = "busy"  # another live process holds the cell
    blocked = "blocked"  # a pruned cell whose source did not finish
    interrupted = "interrupted"  # stopped by a signal at a step; the next run resumes it


@dataclass
class CellResult:
    key: str
    outcome: Outcome
    seconds: float = 0.0
    error: str | None = None
    previously_failed: bool = False
    summary: dict[str, Any] = field(default_factory=dict)

    @property
    def done(self) -> bool:
        return self.outcome in (Outcome.trained, Outcome.resumed, Outcome.skipped)

    def to_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "outcome": self.outcome.value,
            "seconds": round(self.seconds, 3),
            "error": self.error,
            "previously_failed": self.previously_failed,
            "summary": self.summary,
        }


def _default_train(config: Any, **kwargs: Any) -> dict:
    from focalbench.engine import train

    return train(config, check=False, **kwargs)  # the driver checked every config before work


def run_cell(
    config: dict[str, Any],
    results: str,
    device: str = "auto",
    retry_failed: bool = False,
    train_fn: Any = None,
    tracking: dict[str, Any] | None = None,
    lock_wait: float = 0.0,
) -> CellResult:
    """Run one cell to completion in this process; never raises for a failing cell.

    ``config`` is ``RunConfig.to_dict()`` (plain data crosses process and Ray boundaries).
    ``train_fn(config, results=, device=, resume=, progress=, **tracking) -> summary`` defaults
    to :func:`focalbench.engine.train`; ``tracking`` is its ``log``/``mlflow_uri`` (empty: none).
    ``lock_wait``: seconds to wait for a held lock before calling the cell ``busy`` (a cell
    resubmitted after its node died waits for the lost attempt to let go).
    """
    import time
    import traceback

    from focalbench.config import RunConfig
    from focalbench.signals import Interrupted

    cfg = RunConfig.from_dict(config)
    folder = run_folder(results, cfg.key)
    start = time.perf_counter()
    with folder.lock(lock_wait) as locked:
        status = folder.status()
        if not locked or (status and status.state is Status.running and status.owner_alive()):
            holder = status and f"pid {status.pid} on {status.host}"
            return CellResult(
                cfg.key, Outcome.busy, error=f"being trained by {holder or 'another process'}"
            )
        if status and status.state is Status.done:
            return CellResult(cfg.key, Outcome.skipped, summary=stored_summary(folder))
        if status and status.state is Status.failed and not retry_failed and not status.interrupted:
            return CellResult(cfg.key, Outcome.failed, error=status.error, previously_failed=True)
        restart = bool(status) and status.diverged  # only reached with retry_failed
        resumed = not restart and folder.last_pt.exists()
        try:
            summary = (train_fn or _default_train)(
                cfg,
                results=results,
                device=device,
                resume=not restart,
                progress=False,
                **(tracking or {}),
            )
        except Interrupted:  # train recorded it (status running, "interrupted; …")
            seconds = time.perf_counter() - start
            return CellResult(cfg.key, Outcome.interrupted, seconds, INTERRUPTED)
        except Exception as exc:  # one bad cell must not stop the grid: record it and go on
            error = f"{type(exc).__name__}: {exc}"
            folder.record_failure(error, traceback.format_exc(limit=12), device)
            return CellResult(cfg.key, Outcome.failed, time.perf_counter() - start, error)
        seconds = time.perf_counter() - start
        final = folder.status()
        if final is None or final.state is not Status.done:
            # train returned without finishing (e.g. it stopped on a NaN loss and said so)
            state = final.state.value if final else None
            error = (
                (final and final.error) or summary.get("error") or f"train ended in state {state!r}"
            )
            if state != Status.failed.value:
                folder.record_failure(error, device=device)
            return CellResult(
                cfg.key, Outcome.failed, seconds, error, summary=_plain_summary(summary)
            )
        outcome = Outcome.resumed if resumed else Outcome.trained
        return CellResult(cfg.key, outcome, seconds, summary=_plain_summary(summary))


def settle_lost_cell(results: str, key: str, why: str) -> CellResult:
    """The result of a cell whose worker died (``why``): done if it had just finished, else
    interrupted (recorded so, if it had begun), which is not the cell's fault as far as anyone knows, so the next
    run of the grid resumes it from ``last.pt`` like a Ctrl-C'd cell."""
    folder = run_folder(results, key)
    status = folder._status_or_none()
    if status and status.state is Status.done:
        return CellResult(key, Outcome.trained, summary=stored_summary(folder))
    error = f"interrupted; {why}; rerun the same command to resume"
    if status is not None:  # a cell lost before it began (a queued Ray task) leaves no record
        folder.record_failure(error)
    return CellResult(key, Outcome.failed, error=error)


def stored_summary(folder: RunFolder) -> dict[str, Any]:
    """What a grid reports for a finished cell: its folder and its test metrics."""
    metrics = folder.metrics()
    if metrics is None:
        return {"run_dir": str(folder.path)}
    return {"run_dir": str(folder.path), "test": metrics.get("test", {})}


def _plain_summary(summary: dict[str, Any]) -> dict[str, Any]:
    """The JSON-able part of train's summary that a grid reports: state, run_dir, test metrics."""
    keep = {k: summary[k] for k in ("state", "run_dir", "test") if k in summary}
    if "run_dir" in keep:
        keep["run_dir"] = str(keep["run_dir"])
    return keep
