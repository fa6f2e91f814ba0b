"""Progress in a log: one flushed line per epoch and per finished grid cell when not a terminal."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

from focalbench.config import RunConfig
from focalbench.engine.progress import PlainGridLog, epoch_line
from focalbench.store import atomic_write_text

ROW = {
    "epoch": 3,
    "train_loss": 0.41234,
    "val_loss": 0.38111,
    "val_dsc": 0.731,
    "val_precision": 0.7,
    "val_recall": 0.76549,
    "lr": 0.001,
    "seconds": 2.44,
    "focal_se1": 0.3,
}


def test_epoch_line_gives_epoch_losses_validation_scores_lr_and_seconds():
    assert epoch_line(ROW, 50, best_epoch=2) == (
        "epoch 3/50  train_loss 0.4123  val_loss 0.3811  val_dsc 0.7310  val_precision 0.7000  "
        "val_recall 0.7655  lr 1.00e-03  2.4 s  best 2"
    )
    # history.csv read back gives strings; the line is the same
    assert epoch_line({k: str(v) for k, v in ROW.items()}, None) == epoch_line(ROW, None)


def test_a_train_run_redirected_to_a_file_logs_one_line_per_epoch(tmp_path):
    log = tmp_path / "train.log"
    env = {
        **os.environ,
        "PYTHONPATH": str(Path(__file__).resolve().parents[1]),
        "OMP_NUM_THREADS": "1",
    }
    with open(log, "w") as out:
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "focalbench",
                "train",
                "--dataset",
                "sample",
                "--model",
                "unet",
                "--loss",
                "dice",
                "--protocol",
                "smoke",
                "--epochs",
                "2",
                "--results",
                str(tmp_path / "results"),
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            timeout=300,
        )
    text = log.read_text()
    assert done.returncode == 0, text
    epochs = [line for line in text.splitlines() if line.startswith("epoch ")]
    assert [line.split()[1] for line in epochs] == ["1/2", "2/2"]
    assert all(
        re.search(r"train_loss [\d.]+ .*val_dsc [\d.]+ .*lr [\d.e+-]+  [\d.]+ s", line)
        for line in epochs
    )
    assert "\x1b[" not in text and "━" not in text  # no bar, no cursor control codes


def _cell(config: RunConfig, outcome: str | None = None) -> SimpleNamespace:
    result = (
        None
        if outcome is None
        else SimpleNamespace(outcome=SimpleNamespace(value=outcome), seconds=12.3, error=None)
    )
    return SimpleNamespace(
        row="U-Net", dataset="sample", seed=0, fold=None, config=config, result=result
    )


def test_grid_log_prints_each_new_epoch_of_a_running_cell_once_then_the_finished_cell(tmp_path):
    config = RunConfig(dataset="sample", model="unet", loss="dice", protocol="smoke", epochs=3)
    history = tmp_path / "runs" / config.key / "history.csv"
    header = ",".join(ROW)
    row = ",".join(str(v) for v in ROW.values())
    cell = _cell(config)
    stream = io.StringIO()
    log = PlainGridLog(SimpleNamespace(cells=[cell]), str(tmp_path), stream=stream)
    log.update({0}, {}, None, force=True)  # no history yet: nothing
    atomic_write_text(history, f"{header}\n{row.replace('3,', '1,', 1)}\n")
    log.update({0}, {}, None, force=True)
    log.update({0}, {}, None, force=True)  # nothing new: nothing printed
    atomic_write_text(
        history, f"{header}\n{row.replace('3,', '1,', 1)}\n{row.replace('3,', '2,', 1)}\n"
    )
    cell.result = _cell(config, "trained").result
    log.advance(cell)
    lines = stream.getvalue().splitlines()
    assert [line.split(": ")[0] for line in lines] == ["  U-Net · sample · seed 0"] * 2 + [
        "✓ U-Net · sample · seed 0"
    ]
    assert lines[0].endswith(epoch_line({**ROW, "epoch": 1}, 3)) and "epoch 2/3" in lines[1]
    assert lines[2] == "✓ U-Net · sample · seed 0: trained (12s)"
