"""Every script in benchmarks/ runs in its quick CPU mode, so none of them can rot unnoticed.

Each runs as a user runs it (a subprocess, the script's own argument parser), pinned to one core:
the thread budget then gives every worker one thread, and the quick modes stay quick on a loaded
machine, where two OpenMP threads per cell stall each other.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS = ROOT / "benchmarks"


def _one_core() -> None:
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})


def run_script(name: str, *args: str, timeout: float = 240) -> str:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    done = subprocess.run(
        [sys.executable, str(BENCHMARKS / name), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        check=False,
        preexec_fn=_one_core,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    return done.stdout


def test_every_benchmark_script_has_a_test_here():
    tested = {"step_speed.py", "grid_overhead.py", "gpu_check.py", "keras_same_weights.py"}
    assert {p.name for p in BENCHMARKS.glob("*.py")} == tested


def test_step_speed_quick_times_the_reference_and_the_engine():
    out = run_script("step_speed.py", "--quick", "--device", "cpu", "--peak-tflops", "0.1")
    rows = [line for line in out.splitlines() if line.startswith("| 32x32")]
    assert [row.split("|")[3].strip() for row in rows] == ["reference", "engine fp32"]
    assert "floor steps/s" in out


def test_grid_overhead_quick_runs_a_grid_and_its_all_skipped_rerun():
    out = run_script("grid_overhead.py", "--quick", "--jobs", "2")
    rows = [line.split("|") for line in out.splitlines() if line.startswith("| one cell")]
    assert [(row[2].strip(), row[3].strip(), row[4].strip()) for row in rows] == [
        ("local", "2", "1")
    ]
    assert float(rows[0][9]) == pytest.approx(1.0)  # wall / wall at the first worker count


def test_gpu_check_quick_on_cpu_runs_every_part(tmp_path):
    out = run_script("gpu_check.py", "--device", "cpu", "--quick", "--out", str(tmp_path))
    text = (tmp_path / "gpu_check.md").read_text()
    for title in (
        "1. Environment",
        "2. Correctness",
        "3. Distance transform",
        "4. Step speed",
        "5. Packing",
        "6. Projection",
    ):
        assert title in text and title in out
    parts = json.loads((tmp_path / "gpu_check.json").read_text())
    assert not [
        row
        for rows in parts.values()
        for row in rows
        if "note" in row and "failed" in str(row["note"])
    ]
    assert [r["cells sharing"] for r in parts["packing"]] == [1, 2]
    assert all(r["failed"] == 0 for r in parts["packing"])
    assert [r["verdict"] for r in parts["correctness"]] == ["ok", "ok"]
    assert parts["distance_transform"][0]["verdict"] == "ok"
    assert parts["projection"] and parts["projection"][0]["epochs/cell within 1 h"] > 0


def test_step_speed_times_as_many_engine_steps_as_it_divides_by(monkeypatch):
    """A warm-up epoch must not shrink the split the timed epochs draw from (it once did: the
    engine was timed on the warm-up's 2 images and credited with 4)."""
    import torch

    sys.path.insert(0, str(BENCHMARKS))
    try:
        import step_speed
    finally:
        sys.path.remove(str(BENCHMARKS))
    from focalbench.losses import build_loss
    from focalbench.models import build_model

    device = torch.device("cpu")
    images, masks = step_speed.synthetic(3, 32)
    model = build_model("unet", in_channels=3, width=4, depth=1)
    run = step_speed.engine_run(
        model, build_loss("dice"), images, masks, device, step_speed.Variant("e", "fp32")
    )
    split, steps = run.train, []
    original = step_speed.loop.train_step
    monkeypatch.setattr(
        step_speed.loop,
        "train_step",
        lambda run, index: steps.append(index) or original(run, index),
    )
    step_speed.engine_steps(run, split, 1)
    step_speed.engine_steps(run, split, 3)
    assert len(steps) == 1 + 3


def test_keras_same_weights_agrees_with_tf_keras_layer_by_layer():
    # TensorFlow is no dependency of focalbench (a 600 MB install): this runs where a developer
    # installed it as the script's docstring says, and is skipped elsewhere, CI included.
    import importlib.util

    if (
        importlib.util.find_spec("tf_keras") is None
        or importlib.util.find_spec("tensorflow") is None
    ):
        pytest.skip(
            "tensorflow-cpu and tf-keras are not installed (benchmarks/keras_same_weights.py)"
        )
    out = run_script("keras_same_weights.py")
    rows = [line.split("|") for line in out.splitlines() if line.startswith("| ") and "e" in line]
    diffs = [float(row[3]) for row in rows if row[3].strip()[:1].isdigit()]
    assert len(diffs) >= 5 and max(diffs) <= 1e-5  # TF 'same' arithmetic: equal to float32 noise
