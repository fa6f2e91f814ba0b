"""What a user watches while a run trains: a live bar on a terminal, plain lines in a log, or
nothing (``--json``).

The bar advances once per step without reading any tensor (no host synchronisation); the
loss, validation DSC and best epoch it shows are refreshed once per epoch from the history row.
When stderr is not a terminal (a log file, CI, a batch job) a bar cannot redraw itself, so each
finished epoch is one flushed line instead (:func:`epoch_line`), and a grid prints one line per
epoch of each running cell and one per finished cell (:class:`PlainGridLog`).
"""

from __future__ import annotations

import csv
import json
import sys
import time
from pathlib import Path
from typing import Any, TextIO

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)


class Quiet:
    """The display of a silent run: every call does nothing."""

    def __enter__(self) -> Quiet:
        return self

    def __exit__(self, *exc: Any) -> None:
        return None

    def start_epoch(self, epoch: int, steps: int) -> None:
        return None

    def step(self) -> None:
        return None

    def end_epoch(self, row: dict[str, Any], best_epoch: int) -> None:
        return None


class Display(Quiet):
    """``epoch 3/50  step 12/20  loss 0.412  val DSC 0.731  best 2  ━━━━  0:01:10 eta 0:20:00``."""

    def __init__(self, label: str, epochs: int, steps_per_epoch: int, start_epoch: int = 1) -> None:
        self.epochs = epochs
        self.bar = Progress(
            TextColumn("[bold]{task.fields[label]}"),
            TextColumn("epoch {task.fields[epoch]}/{task.fields[epochs]}"),
            TextColumn("step {task.fields[step]}/{task.fields[steps]}"),
            TextColumn(
                "loss {task.fields[loss]}  val DSC {task.fields[dsc]}  best {task.fields[best]}"
            ),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
            console=Console(stderr=True),
            transient=False,
        )
        self.task = self.bar.add_task(
            "train",
            total=epochs * steps_per_epoch,
            completed=(start_epoch - 1) * steps_per_epoch,
            label=label,
            epoch=start_epoch,
            epochs=epochs,
            step=0,
            steps=steps_per_epoch,
            loss="–",
            dsc="–",
            best="–",
        )

    def __enter__(self) -> Display:
        self.bar.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.bar.stop()

    def start_epoch(self, epoch: int, steps: int) -> None:
        self.step_count = 0
        self.bar.update(self.task, epoch=epoch, step=0, steps=steps)

    def step(self) -> None:
        self.step_count += 1
        self.bar.update(self.task, advance=1, step=self.step_count)

    def end_epoch(self, row: dict[str, Any], best_epoch: int) -> None:
        self.bar.update(
            self.task, loss=f"{row['train_loss']:.4f}", dsc=f"{row['val_dsc']:.4f}", best=best_epoch
        )


def output_is_terminal() -> bool:
    """Whether the progress stream (stderr) is a terminal that can redraw a live display."""
    return Console(stderr=True).is_terminal


def epoch_line(row: dict[str, Any], epochs: int | None, best_epoch: int | None = None) -> str:
    """``epoch 3/50  train_loss 0.4123  val_loss 0.3811  val_dsc 0.7310 … lr 1.00e-03  2.4 s``:
    one history row (``history.csv``'s columns) as one log line."""
    total = f"/{epochs}" if epochs else ""
    parts = [f"epoch {int(float(row['epoch']))}{total}"]
    for key in ("train_loss", "val_loss", "val_dsc", "val_precision", "val_recall"):
        if row.get(key) not in (None, ""):
            parts.append(f"{key} {float(row[key]):.4f}")
    if row.get("lr") not in (None, ""):
        parts.append(f"lr {float(row['lr']):.2e}")
    if row.get("seconds") not in (None, ""):
        parts.append(f"{float(row['seconds']):.1f} s")
    if best_epoch:
        parts.append(f"best {best_epoch}")
    return "  ".join(parts)


class PlainLog(Quiet):
    """One flushed line per finished epoch, for output that is not a terminal."""

    def __init__(
        self,
        label: str,
        epochs: int,
        steps_per_epoch: int,
        start_epoch: int = 1,
        stream: TextIO | None = None,
    ) -> None:
        self.label, self.epochs, self.steps = label, epochs, steps_per_epoch
        self.start = start_epoch
        self.stream = stream

    def _print(self, line: str) -> None:
        print(line, file=self.stream or sys.stderr, flush=True)

    def __enter__(self) -> PlainLog:
        resumed = f", resuming at epoch {self.start}" if self.start > 1 else ""
        self._print(f"training {self.label}: {self.epochs} epochs of {self.steps} steps{resumed}")
        return self

    def end_epoch(self, row: dict[str, Any], best_epoch: int) -> None:
        self._print(epoch_line(row, self.epochs, best_epoch))


def train_display(label: str, epochs: int, steps_per_epoch: int, start_epoch: int = 1) -> Quiet:
    """The live bar on a terminal, plain epoch lines otherwise."""
    kind = Display if output_is_terminal() else PlainLog
    return kind(label, epochs, steps_per_epoch, start_epoch)


_MARKS = {
    "trained": "✓",
    "resumed": "✓",
    "skipped": "·",
    "failed": "✗",
    "busy": "…",
    "blocked": "…",
    "interrupted": "‖",
}


def cell_name(cell: Any) -> str:
    """``Focal USE-Net (w0 = 0) · drive · seed 0[ · fold 1]``: a grid cell in progress lines."""
    fold = "" if cell.fold is None else f" · fold {cell.fold}"
    return f"{cell.row} · {cell.dataset} · seed {cell.seed}{fold}"


def cell_line(cell: Any) -> str:
    """``✓ U-Net · drive · seed 0: trained (12s)``: one finished grid cell (``cell.result`` set)."""
    result = cell.result
    outcome = result.outcome.value
    extra = f" — {result.error}" if result.error else ""
    return f"{_MARKS[outcome]} {cell_name(cell)}: {outcome} ({result.seconds:.0f}s){extra}"


class PlainGridLog:
    """A grid's progress as plain flushed lines: every new epoch of each running cell (read from
    its ``history.csv``, so local workers and Ray tasks on a shared filesystem alike) and each
    finished cell. Same calls as the live grid display: ``update``, ``advance``, ``stop``."""

    #: How often the running cells' histories are read, in seconds.
    POLL_SECONDS = 1.0

    def __init__(
        self, grid: Any, results: str, parallel: int = 1, stream: TextIO | None = None
    ) -> None:
        self.grid, self.results, self.stream = grid, Path(results), stream
        # run key → epochs already printed; epochs on disk before the grid started are not new
        # (a finished cell that is skipped, an interrupted one that resumes)
        self.printed: dict[str, int] = {
            cell.config.key: len(self._history(cell.config.key))
            for cell in grid.cells
            if cell.config is not None
        }
        self._last = 0.0

    def _print(self, line: str) -> None:
        print(line, file=self.stream or sys.stderr, flush=True)

    def _new_epochs(self, cell: Any) -> None:
        if cell.config is None:
            return
        key = cell.config.key
        rows = self._history(key)
        epochs = cell.config.epochs or self._resolved_epochs(key)
        for row in rows[self.printed.get(key, 0) :]:
            self._print(f"  {cell_name(cell)}: {epoch_line(row, epochs)}")
        self.printed[key] = max(self.printed.get(key, 0), len(rows))

    def _history(self, key: str) -> list[dict[str, str]]:
        try:
            with open(
                self.results / "runs" / key / "history.csv", newline="", encoding="utf-8"
            ) as f:
                return list(csv.DictReader(f))
        except (OSError, csv.Error):
            return []

    def _resolved_epochs(self, key: str) -> int | None:
        """The protocol's epochs as the run recorded them (``config.json``)."""
        try:
            with open(self.results / "runs" / key / "config.json", encoding="utf-8") as handle:
                return json.load(handle).get("resolved", {}).get("epochs")
        except (OSError, ValueError):
            return None

    def update(
        self, in_flight: set[int], devices: dict[int, str], eta: float | None, force: bool = False
    ) -> None:
        now = time.monotonic()
        if now - self._last < self.POLL_SECONDS and not force:
            return
        self._last = now
        for i in sorted(in_flight):
            self._new_epochs(self.grid.cells[i])

    def advance(self, cell: Any) -> None:
        self._new_epochs(cell)
        self._print(cell_line(cell))

    def stop(self) -> None:
        return None
