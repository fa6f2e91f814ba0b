"""What a user watches while a run trains: a rich progress bar, or nothing (``--json``).

The bar advances once per step without reading any tensor (no host synchronisation); the
loss, validation DSC and best epoch it shows are refreshed once per epoch from the history row.
"""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn


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
            TextColumn("loss {task.fields[loss]}  val DSC {task.fields[dsc]}  best {task.fields[best]}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
            console=Console(stderr=True),
            transient=False,
        )
        self.task = self.bar.add_task(
            "train", total=epochs * steps_per_epoch, completed=(start_epoch - 1) * steps_per_epoch,
            label=label, epoch=start_epoch, epochs=epochs, step=0, steps=steps_per_epoch,
            loss="–", dsc="–", best="–",
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
