"""SIGINT/SIGTERM/SIGHUP stop a real `train` / `ablate` process at a safe point: exit 128 + n,
the cell recorded interrupted (never failed), and the same command resumes it to done."""

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

ROOT = Path(__file__).resolve().parents[1]
EPOCHS = 12  # ≈ 0.2 s each at width 4: a signal after epoch 1 always lands mid-run
SMOKE = [
    "--dataset", "sample", "--protocol", "smoke", "--epochs", str(EPOCHS), "--device", "cpu",
    "--param", "model.width=4",
]  # fmt: skip


def _cli(*args: str, results: Path) -> list[str]:
    return [sys.executable, "-m", "focalbench", *args, "--results", str(results)]


def _env() -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
    }


def _epochs(history: Path) -> int:
    if not history.exists():
        return 0
    with history.open() as f:
        return sum(1 for _ in csv.DictReader(f))


def _wait_for_epoch(proc: subprocess.Popen, results: Path, limit: float = 120) -> None:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if any(_epochs(h) >= 1 for h in results.glob("runs/*/history.csv")):
            return
        assert proc.poll() is None, f"exited {proc.returncode} before an epoch"
        time.sleep(0.1)
    proc.kill()
    pytest.fail("no epoch within the time limit")


def _stop(proc: subprocess.Popen, signum: int, within: float = 20) -> tuple[int, float]:
    tick = time.monotonic()
    proc.send_signal(signum)
    try:
        code = proc.wait(timeout=within)
    except subprocess.TimeoutExpired:
        proc.kill()
        pytest.fail(f"still running {within}s after {signal.Signals(signum).name}")
    return code, time.monotonic() - tick


def _status(run: Path) -> dict:
    return json.loads((run / "status.json").read_text())


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_train_stops_on_signal_with_128_plus_n_and_resumes(tmp_path: Path, signum: int) -> None:
    """Signal n mid-training: exit 128 + n within seconds, status running + 'interrupted; …',
    then the same command continues from last.pt's epoch and ends done with all its epochs."""
    command = _cli("train", "--model", "unet", "--loss", "dice", *SMOKE, results=tmp_path)
    proc = subprocess.Popen(command, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _wait_for_epoch(proc, tmp_path)
    code, seconds = _stop(proc, signum)
    assert code == 128 + signum, proc.stderr.read().decode()
    assert seconds < 10
    (run,) = tmp_path.glob("runs/*")
    status = _status(run)
    assert status["state"] == "running" and status["error"].startswith("interrupted;")
    stopped_at = status["epoch"]
    assert stopped_at >= 1 and (run / "last.pt").exists()

    again = subprocess.run(command, env=_env(), capture_output=True, timeout=300)
    assert again.returncode == 0, again.stderr.decode()
    assert _status(run)["state"] == "done"
    with (run / "history.csv").open() as f:
        epochs = [int(row["epoch"]) for row in csv.DictReader(f)]
    assert epochs == list(range(1, EPOCHS + 1))  # no epoch lost or repeated across the stop


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGHUP])
def test_ablate_driver_stops_its_workers_and_resumes(tmp_path: Path, signum: int) -> None:
    """SIGINT (or SIGHUP, which the driver passes on as it is) to the driver alone, started as a script's `cmd &` starts it (SIGINT inherited
    as ignored: why it used to train on for a minute): the workers stop their cells at a step,
    the grid records them interrupted (not failed), the driver prints its summary and exits
    130; the same command then finishes every cell."""
    command = _cli(
        "ablate",
        "--models",
        "unet",
        "--losses",
        "dice,ufl",
        "--jobs",
        "2",
        *SMOKE,
        results=tmp_path,
    )
    proc = subprocess.Popen(
        command,
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
    )
    _wait_for_epoch(proc, tmp_path)
    code, seconds = _stop(proc, signum)
    out = proc.stdout.read().decode()
    assert code == 128 + signum, proc.stderr.read().decode()
    assert seconds < 15
    assert "interrupted" in out
    (grid,) = tmp_path.glob("grids/*/grid.json")
    outcomes = [c["outcome"] for c in json.loads(grid.read_text())["cells"]]
    assert "failed" not in outcomes and "interrupted" in outcomes
    for run in tmp_path.glob("runs/*"):
        assert _status(run)["error"] is None or _status(run)["error"].startswith("interrupted;")

    again = subprocess.run(command, env=_env(), capture_output=True, timeout=600)
    assert again.returncode == 0, again.stderr.decode()
    runs = list(tmp_path.glob("runs/*"))
    assert len(runs) == 2 and all(_status(r)["state"] == "done" for r in runs)


def test_a_second_signal_exits_at_once_without_a_torn_file(tmp_path: Path) -> None:
    """Two Ctrl-C in a row: exit 130 at once; status.json still parses and last.pt still loads
    (every write is atomic), so the same command resumes."""
    from focalbench.engine import checkpoint

    command = _cli("train", "--model", "unet", "--loss", "dice", *SMOKE, results=tmp_path)
    proc = subprocess.Popen(command, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _wait_for_epoch(proc, tmp_path)
    proc.send_signal(signal.SIGINT)
    code, seconds = _stop(proc, signal.SIGINT)
    assert code == 130 and seconds < 10
    (run,) = tmp_path.glob("runs/*")
    assert _status(run)["state"] == "running"
    assert checkpoint.load(run / "last.pt")["epoch"] >= 1


def test_a_stop_asked_from_another_handler_is_taken_at_the_first_safe_point() -> None:
    """ask_to_stop (the Slurm time limit's USR2 handler calls it) stops the work as a first stop
    signal does, also when asked before the work began; the block's end forgets it."""
    from focalbench.signals import Interrupted, ask_to_stop, raise_if_stopping, stop_on_signals

    ask_to_stop(signal.SIGUSR2)
    ask_to_stop(signal.SIGTERM)  # a later ask keeps the first signal
    with pytest.raises(Interrupted) as stopped, stop_on_signals():
        raise_if_stopping()
    assert (stopped.value.signum, stopped.value.exit_code) == (signal.SIGUSR2, 128 + 12)
    raise_if_stopping()  # forgotten: nothing raised
