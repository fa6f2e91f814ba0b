"""The run folder ``results/runs/<RunConfig.key>/`` (layout in docs/architecture.md).

Every file is written atomically through :mod:`focalbench.store`; ``history.csv`` is rewritten
whole each epoch from the rows held in the checkpoint, so a crash between the two writes leaves
a history that a resume rebuilds, never a torn line.
"""

from __future__ import annotations

import csv
import io
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from focalbench.store import atomic_write_bytes, atomic_write_json, atomic_write_text, read_json, utc_now

HISTORY_COLUMNS = ["epoch", "train_loss", "val_loss", "val_dsc", "val_precision", "val_recall", "lr", "seconds"]
PER_IMAGE_METRICS = ["dsc", "precision", "recall", "jaccard", "accuracy", "sensitivity", "specificity"]
# status.json's error after Ctrl-C: not a failure of the cell, so ablate resumes it without
# --retry-failed (focalbench.executors recognises this prefix without importing the engine).
INTERRUPTED = "interrupted; rerun the same command to resume"
# status.json's error after a NaN/inf loss begins with this: a failed cell whose stored summary a
# resumed train returns (it would diverge again), retrained from scratch by `train --no-resume` and
# `ablate --retry-failed` (focalbench.executors recognises this prefix too).
DIVERGED = "non-finite loss"


class State:
    running = "running"
    done = "done"
    failed = "failed"


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
    path: Path

    config_json = property(lambda self: self.path / "config.json")
    status_json = property(lambda self: self.path / "status.json")
    history_csv = property(lambda self: self.path / "history.csv")
    per_image_csv = property(lambda self: self.path / "per_image.csv")
    metrics_json = property(lambda self: self.path / "metrics.json")
    samples_npz = property(lambda self: self.path / "test_samples.npz")
    last_pt = property(lambda self: self.path / "last.pt")
    best_pt = property(lambda self: self.path / "best.pt")

    def status(self) -> dict[str, Any] | None:
        return read_json(self.status_json) if self.status_json.exists() else None

    def write_status(self, state: str, epoch: int, *, error: str | None = None, started: str | None = None) -> None:
        previous, now = self.status() or {}, utc_now()
        atomic_write_json(self.status_json, {
            "state": state,
            "error": error,
            "epoch": epoch,
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": started or previous.get("started") or now,
            "updated": now,
            "finished": now if state != State.running else None,
        })

    def write_config(self, payload: dict[str, Any]) -> None:
        atomic_write_json(self.config_json, payload)

    def write_history(self, rows: list[dict[str, Any]]) -> None:
        columns = HISTORY_COLUMNS + [k for k in (rows[0] if rows else {}) if k not in HISTORY_COLUMNS]
        atomic_write_text(self.history_csv, to_csv(rows, columns))

    def write_per_image(self, rows: list[dict[str, Any]], extra: list[str] = ()) -> None:
        columns = ["image_id", "tp", "fp", "fn", "tn", *PER_IMAGE_METRICS, *extra]
        atomic_write_text(self.per_image_csv, to_csv(rows, columns))

    def write_metrics(self, metrics: dict[str, Any]) -> None:
        atomic_write_json(self.metrics_json, metrics)

    def write_samples(self, **arrays: np.ndarray) -> None:
        buffer = io.BytesIO()
        np.savez_compressed(buffer, **arrays)
        atomic_write_bytes(self.samples_npz, buffer.getvalue())

    def clear(self) -> None:
        """Forget a previous attempt (``--no-resume``): results and checkpoints, not the folder."""
        for path in (self.status_json, self.history_csv, self.per_image_csv, self.metrics_json,
                     self.samples_npz, self.last_pt, self.best_pt,
                     self.path / "last.previous.pt"):
            path.unlink(missing_ok=True)
