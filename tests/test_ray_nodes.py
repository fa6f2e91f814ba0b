"""The Ray executor on a real two-node Ray cluster on this machine: a head and a worker node,
each a raylet with its own temp dir and one CPU, started by the test (``ray.cluster_utils``:
a real GCS and real raylets, the processes ``ray start`` runs), driven by a real
``focalbench ablate --executor ray --ray-address`` process.

* a grid whose cells land on both nodes; the worker node is killed mid-cell (SIGKILL of its
  raylet and object store): its cell is resubmitted, waits for the dead attempt to let go of
  the cell's lock, and resumes from ``last.pt`` on the head; every epoch is trained once and
  the test metrics equal those of a local run;
* Ctrl-C of the Ray driver: its cells are recorded interrupted, never failed, and the same
  command resumes them.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

ray = pytest.importorskip(
    "ray", reason="the ray extra is not installed: pip install 'focalbench[ray]'"
)
from ray.cluster_utils import Cluster  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
EPOCHS = 6
GRID = [
    "--dataset", "sample", "--models", "unet", "--losses", "dice", "--seeds", "0,1",
    "--protocol", "smoke", "--epochs", str(EPOCHS), "--param", "model.width=4",
    "--device", "cpu", "--name", "g",
]  # fmt: skip


@pytest.fixture
def two_nodes(monkeypatch):
    """A head node and a worker node, one CPU each; yields the cluster and the worker node."""
    # Ray's Unix sockets live under the temp dir, and a socket path has at most 107 bytes.
    root = Path(tempfile.mkdtemp(prefix="fbray", dir="/tmp"))
    (root / "ray").mkdir()  # where Ray records the newest cluster's address
    monkeypatch.setenv("RAY_TMPDIR", str(root))
    cluster = Cluster(
        initialize_head=True,
        head_node_args={"num_cpus": 1, "temp_dir": str(root / "head"), "include_dashboard": False},
    )
    try:
        worker = cluster.add_node(num_cpus=1, temp_dir=str(root / "worker"))
        cluster.wait_for_nodes()
        yield cluster, worker
    finally:
        cluster.shutdown()
        shutil.rmtree(root, ignore_errors=True)


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}


def _ablate(*args: str) -> list[str]:
    return [sys.executable, "-m", "focalbench", "ablate", *GRID, *args]


def _status(run: Path) -> dict:
    try:
        return json.loads((run / "status.json").read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {}


def _parent(pid: int) -> int:
    # /proc/<pid>/stat: "pid (comm) state ppid …"; comm may hold spaces, never ")"
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def _descends_from(pid: int, ancestor: int) -> bool:
    try:
        while pid > 1:
            if pid == ancestor:
                return True
            pid = _parent(pid)
    except FileNotFoundError:
        return False
    return False


def _wait_until_both_train(proc: subprocess.Popen, results: Path) -> dict[Path, dict]:
    """The two run folders' status records once both have a checkpoint of epoch ≥ 1."""
    deadline = time.monotonic() + 120
    while True:
        runs = {run: _status(run) for run in results.glob("runs/*")}
        if len(runs) == 2 and all(
            (run / "last.pt").exists() and (s.get("epoch") or 0) >= 1 for run, s in runs.items()
        ):
            return runs
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, f"no epoch on both nodes in 120 s: {runs}"
        time.sleep(0.1)


def _epochs(run: Path) -> list[str]:
    return [line.split(",")[0] for line in (run / "history.csv").read_text().splitlines()[1:]]


def _outcomes(results: Path) -> dict[str, str]:
    grid = json.loads((results / "grids" / "g" / "grid.json").read_text())
    return {c["key"]: c["outcome"] for c in grid["cells"]}


def test_a_cell_lost_with_its_node_resumes_on_the_other_and_equals_a_local_run(two_nodes, tmp_path):
    """One cell trains on each node; the worker node dies (SIGKILL) after an epoch: its cell is
    resubmitted (said on stderr), resumes from last.pt on the head once the head's own cell is
    done, and every epoch 1..N of both cells is trained exactly once; the test metrics equal a
    local run's bit for bit."""
    cluster, worker = two_nodes
    results = tmp_path / "ray"
    proc = subprocess.Popen(
        _ablate("--results", str(results), "--executor", "ray", "--ray-address", cluster.address),
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        runs = _wait_until_both_train(proc, results)
        worker_raylet = worker.all_processes["raylet"][0].process.pid
        head_raylet = cluster.head_node.all_processes["raylet"][0].process.pid
        on_worker = [run for run, s in runs.items() if _descends_from(s["pid"], worker_raylet)]
        on_head = [run for run, s in runs.items() if _descends_from(s["pid"], head_raylet)]
        assert len(on_worker) == 1 and len(on_head) == 1, runs  # one cell on each node
        (lost,), (kept,) = on_worker, on_head
        assert (_status(lost).get("epoch") or 0) < EPOCHS, "the cell finished before the kill"
        cluster.remove_node(worker, allow_graceful=False)
        out, err = proc.communicate(timeout=240)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, out + err
    assert f"cell {lost.name} lost with its Ray node or worker (NodeDiedError)" in err, err
    assert "resubmitted (attempt 2 of 4)" in err
    assert _outcomes(results) == {lost.name: "resumed", kept.name: "trained"}
    assert _status(lost)["pid"] != runs[lost]["pid"]  # finished by another process
    for run in (lost, kept):
        assert _status(run)["state"] == "done"
        assert _epochs(run) == [str(e) for e in range(1, EPOCHS + 1)]  # none lost or repeated

    local = tmp_path / "local"
    done = subprocess.run(
        _ablate("--results", str(local), "--jobs", "2"), env=_env(), capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr
    for run in (lost, kept):
        ours = json.loads((run / "metrics.json").read_text())["test"]
        theirs = json.loads((local / "runs" / run.name / "metrics.json").read_text())["test"]
        assert ours == theirs, run.name


def test_ctrl_c_of_the_ray_driver_interrupts_its_cells_and_the_same_command_resumes(
    two_nodes, tmp_path
):
    """SIGINT to the driver while a cell trains on each node: exit 130 within seconds, both
    cells recorded interrupted (not failed), and the same command resumes both to done with
    every epoch once."""
    cluster, _ = two_nodes
    results = tmp_path / "ray"
    command = _ablate(
        "--results", str(results), "--executor", "ray", "--ray-address", cluster.address
    )
    proc = subprocess.Popen(
        command, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        _wait_until_both_train(proc, results)
        tick = time.monotonic()
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
        seconds = time.monotonic() - tick
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 128 + signal.SIGINT, out + err
    assert seconds < 20
    assert set(_outcomes(results).values()) == {"interrupted"}, out + err
    for run in results.glob("runs/*"):
        assert _status(run)["error"].startswith("interrupted;")

    again = subprocess.run(command, env=_env(), capture_output=True, text=True, timeout=240)
    assert again.returncode == 0, again.stdout + again.stderr
    assert set(_outcomes(results).values()) == {"resumed"}
    for run in results.glob("runs/*"):
        assert _epochs(run) == [str(e) for e in range(1, EPOCHS + 1)]


def test_a_ray_address_nothing_listens_at_is_one_line_before_any_work(tmp_path):
    """A wrong --ray-address is refused in seconds (Ray alone retries for ten minutes), with one
    line naming the flag, exit 2, and no results folder."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    results = tmp_path / "r"
    tick = time.monotonic()
    out = subprocess.run(
        _ablate(
            "--results", str(results), "--executor", "ray", "--ray-address", f"127.0.0.1:{port}"
        ),
        env=_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2 and time.monotonic() - tick < 30
    assert out.stderr.strip().splitlines() == [
        f"error: cannot reach the Ray cluster at '127.0.0.1:{port}' (Connection refused); check"
        " --ray-address (the head node's HOST:PORT, by default port 6379)"
    ]
    assert not results.exists()


def test_the_grid_overhead_benchmark_runs_its_quick_grid_on_the_ray_cluster(two_nodes):
    """benchmarks/grid_overhead.py --executor ray (its quick mode): the Ray path of the
    benchmark behind RESULTS.md's Ray table, on a real cluster, cannot rot unnoticed."""
    cluster, _ = two_nodes
    script = ROOT / "benchmarks" / "grid_overhead.py"
    done = subprocess.run(
        [
            sys.executable,
            str(script),
            "--quick",
            "--executor",
            "ray",
            "--ray-address",
            cluster.address,
        ],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    (row,) = [line.split("|") for line in done.stdout.splitlines() if line.startswith("| one cell")]
    assert [c.strip() for c in row[2:5]] == ["ray", "Ray's", "1"]
    assert float(row[5]) > 0 and float(row[6]) > 0  # wall and seconds inside the cell
