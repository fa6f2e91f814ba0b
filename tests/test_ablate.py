"""`focalbench ablate` end to end with the real `train` on the shipped sample (smoke protocol).

* the paper-000 ``--attention se`` study, including the prune-and-retrain row, and
  ``focalbench prune`` on the zero-initialised run it produced;
* a grid whose driver is killed (SIGKILL) mid-way, then rerun: finished cells are not retrained,
  the interrupted one resumes, and the run folders equal an uninterrupted grid's;
* the Ray executor on a local Ray instance started by the test.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from focalbench.cli import app
from focalbench.grid import ablate
from focalbench.run_state import Outcome, RunFolder, run_folder
from focalbench.store import read_json


def run_dir_of(results, key: str) -> Path:
    return run_folder(results, key).path


def read_status(run_dir) -> dict | None:
    record = RunFolder(Path(run_dir)).status()
    return record.to_dict() if record else None


SMOKE = ["--protocol", "smoke", "--epochs", "2", "--device", "cpu"]


def _last_focal_weights(run_dir: Path) -> dict[int, float]:
    """Independent read of history.csv: position → focal weight after the last epoch."""
    with open(run_dir / "history.csv", newline="") as handle:
        last = list(csv.DictReader(handle))[-1]
    return {
        int(k.removeprefix("focal_se")): float(v)
        for k, v in last.items()
        if k.startswith("focal_se")
    }


def test_attention_se_study_end_to_end_with_prune_and_retrain(tmp_path):
    tau = 1e-6  # smoke training moves w from 0 only a little; a tiny τ keeps some modules
    runner = CliRunner()
    out = runner.invoke(
        app,
        [
            "ablate",
            "--dataset",
            "sample",
            "--attention",
            "se",
            *SMOKE,
            "--jobs",
            "2",
            "--threshold",
            str(tau),
            "--results",
            str(tmp_path),
            "--json",
        ],
    )
    assert out.exit_code == 0, out.output
    grid = json.loads(out.output)
    assert grid["counts"]["trained"] == 5 and not grid["failures"]
    cells = grid["cells"]
    zero, pruned = cells[3], cells[4]
    assert zero["config"]["model_params"] == {"focal_init": 0.0}
    zero_dir = run_dir_of(tmp_path, zero["key"])
    weights = _last_focal_weights(zero_dir)
    assert sorted(weights) == list(range(1, 10))
    kept = [p for p, w in sorted(weights.items()) if w > tau]
    assert kept, "no focal weight moved; the pruned row would not differ from the U-Net row"
    assert pruned["pruned_from"] == zero["key"]
    assert pruned["config"]["model"] == "focal-use-net"
    assert pruned["config"]["model_params"] == {"positions": kept, "focal_init": 1.0}
    pruned_dir = run_dir_of(tmp_path, pruned["key"])
    assert read_status(pruned_dir)["state"] == "done"
    history = read_json(pruned_dir / "config.json")
    assert history["config"]["model_params"]["positions"] == kept
    with open(pruned_dir / "history.csv", newline="") as handle:
        header = next(csv.reader(handle))
    assert [h for h in header if h.startswith("focal_")] == [f"focal_se{p}" for p in kept]
    assert read_json(pruned_dir / "pruned.json")["pruned_from"] == zero["key"]
    stored = read_json(tmp_path / "grids" / grid["name"] / "grid.json")
    assert [c["outcome"] for c in stored["cells"]] == ["trained"] * 5
    for cell in cells:
        assert 0.0 <= cell_dsc(tmp_path, cell["key"]) <= 1.0

    # focalbench prune at the paper's τ = 0.2: smoke weights stay far below it → a plain U-Net,
    # retrained as its own cell that names its source
    pruned_cli = runner.invoke(app, ["prune", str(zero_dir), "--retrain", "--json"])
    assert pruned_cli.exit_code == 0, pruned_cli.output
    result = json.loads(pruned_cli.output)
    assert result["kept"] == [] and result["config"]["model"] == "unet"
    assert result["config"]["pruned_from"] == zero["key"] and result["key"] != cells[0]["key"]
    assert result["run"]["state"] == "done"

    # rerunning the grid trains nothing
    again = runner.invoke(
        app,
        [
            "ablate",
            "--dataset",
            "sample",
            "--attention",
            "se",
            *SMOKE,
            "--threshold",
            str(tau),
            "--results",
            str(tmp_path),
            "--json",
        ],
    )
    assert json.loads(again.output)["counts"]["skipped"] == 5


def cell_dsc(results: Path, key: str) -> float:
    return read_json(run_dir_of(results, key) / "metrics.json")["test"]["dsc"]


GENERAL = [
    "--dataset",
    "sample",
    "--models",
    "unet",
    "--losses",
    "dice,dice_ce,ce",
    "--protocol",
    "smoke",
    "--epochs",
    "3",
    "--device",
    "cpu",
    "--jobs",
    "1",
]


def test_killed_driver_then_rerun_equals_an_uninterrupted_grid(tmp_path):
    interrupted, clean = tmp_path / "interrupted", tmp_path / "clean"
    driver = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "focalbench",
            "ablate",
            *GENERAL,
            "--results",
            str(interrupted),
            "--json",
        ],
        stdout=subprocess.DEVNULL,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )

    def states() -> dict[str, dict]:
        runs = interrupted / "runs"
        found = {d.name: read_status(d) for d in runs.iterdir()} if runs.exists() else {}
        return {k: v for k, v in found.items() if v}

    deadline = time.time() + 240
    # kill once one cell is done and the next has finished epoch 1 of 3: two epochs to go
    # leave the kill ample time to land before that cell is done too
    while time.time() < deadline:
        now = states()
        if any(s["state"] == "done" for s in now.values()) and any(
            s["state"] == "running" and s.get("epoch") == 1 for s in now.values()
        ):
            break
        time.sleep(0.1)
    driver.send_signal(signal.SIGKILL)
    driver.wait()
    time.sleep(0.5)
    before = states()
    done_before = {k for k, s in before.items() if s["state"] == "done"}
    partial = {k for k, s in before.items() if s["state"] == "running"}
    assert done_before and partial
    finished_mtimes = {
        k: (run_dir_of(interrupted, k) / "metrics.json").stat().st_mtime_ns for k in done_before
    }

    result = ablate(
        "sample",
        models="unet",
        losses="dice,dice_ce,ce",
        protocol="smoke",
        epochs=3,
        device="cpu",
        results=interrupted,
        progress=False,
    )
    outcome = {c.config.key: c.result.outcome for c in result.cells}
    assert {k: outcome[k] for k in done_before} == {k: Outcome.skipped for k in done_before}
    assert {k: outcome[k] for k in partial} == {k: Outcome.resumed for k in partial}
    assert {
        k: (run_dir_of(interrupted, k) / "metrics.json").stat().st_mtime_ns for k in done_before
    } == finished_mtimes
    assert all(read_status(run_dir_of(interrupted, k))["state"] == "done" for k in outcome)

    ablate(
        "sample",
        models="unet",
        losses="dice,dice_ce,ce",
        protocol="smoke",
        epochs=3,
        device="cpu",
        results=clean,
        progress=False,
    )
    assert sorted(p.name for p in (interrupted / "runs").iterdir()) == sorted(
        p.name for p in (clean / "runs").iterdir()
    )
    for key in outcome:  # same epochs recorded either way
        rows = [
            len((run_dir_of(r, key) / "history.csv").read_text().splitlines())
            for r in (interrupted, clean)
        ]
        assert rows == [4, 4]


def test_ray_executor_runs_a_real_grid_on_a_local_instance(tmp_path):
    ray = pytest.importorskip(
        "ray", reason="the ray extra is not installed: pip install 'focalbench[ray]'"
    )
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        runtime_env={"env_vars": {"OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}},
    )
    grid = dict(models="unet", losses="dice", seeds="0,1", protocol="smoke", epochs=1)
    try:
        result = ablate(
            "sample", **grid, device="cpu", results=tmp_path, executor="ray", progress=False
        )
        assert [c.result.outcome for c in result.cells] == [Outcome.trained, Outcome.trained]
        assert ray.is_initialized()  # the test's instance is not shut down by the executor
        again = ablate(
            "sample", **grid, device="cpu", results=tmp_path, executor="ray", progress=False
        )
        assert [c.result.outcome for c in again.cells] == [Outcome.skipped, Outcome.skipped]
    finally:
        ray.shutdown()
    for cell in result.cells:
        run_dir = run_dir_of(tmp_path, cell.config.key)
        assert read_status(run_dir)["state"] == "done"
        assert result.cells[0].result.summary["test"]["dsc"] == cell_dsc(
            tmp_path, result.cells[0].config.key
        )


def test_an_unprepared_dataset_stops_the_grid_before_any_cell_runs(tmp_path):
    empty = tmp_path / "no-data"
    result = CliRunner().invoke(
        app,
        [
            "ablate",
            "--dataset",
            "drive",
            "--models",
            "unet",
            "--losses",
            "dice",
            "--protocol",
            "smoke",
            "--data-dir",
            str(empty),
            "--results",
            str(tmp_path / "r"),
        ],
    )
    assert result.exit_code == 2
    assert (
        "dataset 'drive' is not prepared; run: focalbench fetch drive --from PATH" in result.output
    )
    assert not (tmp_path / "r" / "runs").exists()
