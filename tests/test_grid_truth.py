"""grid.json after two concurrent ``ablate`` drivers on one results folder (issue 15, item 13).

Two real driver processes share a results folder: the second starts while the first trains every
cell, so it trains nothing. Afterwards grid.json, rewritten by whichever driver wrote last, holds
the run folders' truth (every cell done, none busy), and the idle driver said so in one line and
exited 3 (some cell was still being trained when it ended; docs/ablate.md).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

from test_executors import fake_train, read_status, run_dir_of

from focalbench.store import atomic_write_json, read_json, utc_now

# The CLI's path (ablate, print_summary, exit_code) with held_train.
DRIVER = (
    "import sys; sys.path.insert(0, sys.argv[2]); from test_grid_truth import held_train; "
    "from focalbench.grid import ablate; from focalbench.grid.display import print_summary; "
    "res = ablate('sample', models='unet', losses='dice', seeds='0,1', protocol='smoke', "
    "results=sys.argv[1], jobs=2, progress=False, train_fn=held_train); "
    "print_summary(res); sys.exit(res.exit_code())"
)


def held_train(config, results, **kwargs) -> dict:
    """fake_train, held in ``running`` (as a training worker records it) until the test creates
    ``<results>/release``: the other driver surely meets the cell while it is being trained."""
    run_dir = run_dir_of(results, config.key)
    run_dir.mkdir(parents=True, exist_ok=True)
    now = utc_now()
    record = {"state": "running", "epoch": 0, "pid": os.getpid(), "host": socket.gethostname()}
    atomic_write_json(run_dir / "status.json", {**record, "started": now, "updated": now})
    deadline = time.time() + 60
    while not (Path(results) / "release").exists() and time.time() < deadline:
        time.sleep(0.05)
    return fake_train(config, results, **kwargs)


def _driver(results: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", DRIVER, str(results), str(Path(__file__).parent)],
        env={**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "200"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _grid_json(results: Path) -> dict:
    (grid_dir,) = (results / "grids").iterdir()
    return read_json(grid_dir / "grid.json")


def test_concurrent_drivers_leave_grid_json_true_and_the_idle_one_says_so(tmp_path):
    first = _driver(tmp_path)
    deadline = time.time() + 60
    keys: list[str] = []
    while time.time() < deadline:  # both cells training under the first driver's workers
        runs = tmp_path / "runs"
        keys = [p.name for p in runs.iterdir()] if runs.exists() else []
        states = [(read_status(run_dir_of(tmp_path, k)) or {}).get("state") for k in keys]
        if len(keys) == 2 and states == ["running", "running"]:
            break
        time.sleep(0.05)
    assert len(keys) == 2, "the first driver never trained both cells; the test proves nothing"
    second = _driver(tmp_path)
    second_out, _ = second.communicate(timeout=120)
    # the truth while the first still trains both: busy under a live owner
    assert [c["outcome"] for c in _grid_json(tmp_path)["cells"]] == ["busy", "busy"]
    (tmp_path / "release").touch()
    first_out, _ = first.communicate(timeout=120)
    assert first.returncode == 0, first_out
    assert "nothing left for this one" not in first_out
    assert "2 cells are being trained by another process (pid " in second_out, second_out
    assert "nothing left for this one" in second_out, second_out
    assert second.returncode == 3, second_out  # it ended with cells still training elsewhere
    cells = _grid_json(tmp_path)["cells"]
    assert [c["outcome"] for c in cells] == ["trained", "trained"], cells
    assert all(read_status(run_dir_of(tmp_path, c["key"]))["state"] == "done" for c in cells)

    third = _driver(tmp_path)  # everything done: it says so and exits 0
    third_out, _ = third.communicate(timeout=120)
    assert third.returncode == 0, third_out
    assert "nothing to do: 2 cells already done" in third_out, third_out
    assert [c["outcome"] for c in _grid_json(tmp_path)["cells"]] == ["skipped", "skipped"]
