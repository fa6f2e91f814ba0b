"""The Slurm executor on a real one-node Slurm (slurm-wlm + munge) that the test starts itself.

The cluster: munged with its own key and socket, slurmctld and slurmd on localhost with a
config written here (state, spool, logs under a temp dir; free ports). Skipped, saying why,
where the binaries are missing or the daemons cannot start.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DAEMONS = ("munged", "slurmctld", "slurmd", "sbatch", "squeue", "scontrol")
# Enough epochs that a signal sent after epoch 1 reaches a job well before its cell is done.
EPOCHS = 8
GRID = [
    "--dataset", "sample", "--models", "unet", "--losses", "dice",
    "--protocol", "smoke", "--epochs", str(EPOCHS), "--param", "model.width=4", "--name", "g",
]  # fmt: skip


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _conf(d: Path, cpus: int) -> str:
    host = socket.gethostname()
    return f"""ClusterName=focalbench
SlurmctldHost={host}(127.0.0.1)
SlurmUser=root
SlurmctldPort={_free_port()}
SlurmdPort={_free_port()}
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={d}/munge/sock
StateSaveLocation={d}/state
SlurmdSpoolDir={d}/spool
SlurmctldPidFile={d}/slurmctld.pid
SlurmdPidFile={d}/slurmd.pid
SlurmctldLogFile={d}/slurmctld.log
SlurmdLogFile={d}/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SchedulerType=sched/builtin
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
MpiDefault=none
KillWait=30
MinJobAge=2
NodeName=fbnode NodeAddr=127.0.0.1 CPUs={cpus} RealMemory=1000 State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
"""


@pytest.fixture(scope="module")
def slurm_cluster(tmp_path_factory):
    missing = [b for b in DAEMONS if shutil.which(b) is None]
    if missing:
        pytest.skip(
            f"no Slurm here ({', '.join(missing)} missing): apt-get install slurm-wlm munge"
        )
    if os.geteuid() != 0:
        pytest.skip("the one-node Slurm runs its daemons as root (SlurmUser=root); not root here")
    d = tmp_path_factory.mktemp("slurm")
    for sub in ("munge", "state", "spool"):
        (d / sub).mkdir()
    (d / "munge").chmod(0o700)
    key = d / "munge" / "key"
    key.write_bytes(os.urandom(1024))
    key.chmod(0o400)
    conf = d / "slurm.conf"
    conf.write_text(_conf(d, os.cpu_count() or 1))
    env = {**os.environ, "SLURM_CONF": str(conf)}
    procs = []
    try:
        subprocess.run(
            ["munged", "--force", f"--socket={d}/munge/sock", f"--key-file={key}",
             f"--pid-file={d}/munge/pid", f"--log-file={d}/munge/log",
             f"--seed-file={d}/munge/seed"],
            check=True, capture_output=True, timeout=20,
        )  # fmt: skip
    except (subprocess.SubprocessError, OSError) as exc:
        pytest.skip(f"munged cannot start here: {exc}")
    try:
        for cmd in (["slurmctld", "-D", "-f", str(conf)], ["slurmd", "-D", "-N", "fbnode"]):
            log = open(d / f"{cmd[0]}.out", "w")  # noqa: SIM115 - closed with the daemon
            procs.append((subprocess.Popen(cmd, env=env, stdout=log, stderr=log), log))
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            state = subprocess.run(
                ["sinfo", "-h", "-o", "%T"], env=env, capture_output=True, text=True
            ).stdout.strip()
            if state == "idle":
                break
            time.sleep(0.5)
        else:
            logs = (d / "slurmd.out").read_text()[-300:] + (d / "slurmctld.out").read_text()[-300:]
            pytest.skip(f"slurmctld/slurmd did not bring the node up in 30 s: {logs}")
        yield env
    finally:
        for proc, _ in procs:
            proc.terminate()
        for proc, log in procs:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
            log.close()
        pid = d / "munge" / "pid"
        if pid.exists():
            subprocess.run(["kill", pid.read_text().strip()], check=False)


def _ablate(env: dict, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "focalbench", "ablate", *args],
        env={**env, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _job_state(env: dict, job: str) -> str:
    return subprocess.run(
        ["squeue", "-h", "-o", "%T", "-j", job], env=env, capture_output=True, text=True
    ).stdout


def _status(run: Path) -> dict:
    try:
        return json.loads((run / "status.json").read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {}


def _attached(env: dict, command: list[str]) -> subprocess.Popen:
    """An attached ``ablate`` driver, its output in one pipe."""
    return subprocess.Popen(
        [sys.executable, "-m", "focalbench", "ablate", *command],
        env={**env, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _wait(done, deadline: float, what: str, driver: subprocess.Popen | None = None) -> None:
    """Until ``done()``; fails naming ``what`` at ``deadline``, or when ``driver`` exits first."""
    while not done():
        if driver is not None:
            assert driver.poll() is None, f"the driver exited before {what}: {driver.stdout.read()}"
        assert time.monotonic() < deadline, f"no {what} in time"
        time.sleep(0.1)


def _past_epoch_one(*runs: Path) -> bool:
    return all((r / "last.pt").exists() and (_status(r).get("epoch") or 0) >= 1 for r in runs)


def _jobs(results: Path) -> dict[str, str]:
    """grids/g/slurm/jobs.json: cell key → Slurm job id ({} before the driver wrote it)."""
    try:
        return json.loads((results / "grids" / "g" / "slurm" / "jobs.json").read_text())
    except FileNotFoundError:
        return {}


@pytest.fixture(scope="module")
def local_metrics(tmp_path_factory) -> dict[str, dict]:
    """The test metrics of seeds 0–2 of GRID trained by the local pool: what Slurm must equal."""
    local = tmp_path_factory.mktemp("local")
    done = _ablate(
        dict(os.environ), *GRID, "--seeds", "0,1,2", "--results", str(local), "--jobs", "2"
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return {
        run.name: json.loads((run / "metrics.json").read_text())["test"]
        for run in (local / "runs").iterdir()
    }


def test_a_grid_detached_requeued_and_reattached_on_slurm_equals_the_local_run(
    slurm_cluster, local_metrics, tmp_path
):
    """Submitted as one job array and detached (exit 3, job ids printed); after their first
    epoch one job is requeued (as a preemption) and one gets the USR2 of a time limit, and
    both resume from last.pt; the reattached driver waits for the jobs without submitting any
    again; the test metrics equal those of a local run bit for bit."""
    env = {**slurm_cluster, "FOCALBENCH_DATA": os.environ["FOCALBENCH_DATA"]}
    results = tmp_path / "slurm-results"
    slurm = [*GRID, "--seeds", "0,1", "--results", str(results), "--executor", "slurm"]
    slurm += ["--slurm-cpus-per-task", "1"]  # no --slurm-time: the partition's (none)
    detached = _ablate(env, *slurm, "--detach")
    assert detached.returncode == 3, detached.stdout + detached.stderr
    jobs = _jobs(results)
    assert len(jobs) == 2 and len({j.split("_")[0] for j in jobs.values()}) == 1  # one array
    assert all(j in detached.stdout for j in jobs.values())

    runs = {job: results / "runs" / key for key, job in jobs.items()}
    deadline = time.monotonic() + 60
    _wait(lambda: _past_epoch_one(*runs.values()), deadline, "checkpoint of both jobs")
    assert all(_status(run)["slurm_job"] == job for job, run in runs.items())
    requeued, timed_out = sorted(runs)
    subprocess.run(["scontrol", "requeue", requeued], env=env, check=True, timeout=30)
    # the USR2 Slurm sends before --slurm-time ends (submitit's --signal=USR2@90)
    subprocess.run(["scancel", "--signal=USR2", timed_out], env=env, check=True, timeout=30)
    for job in runs:
        _wait(lambda job=job: "PENDING" in _job_state(env, job), deadline, f"requeue of {job}")

    # Reattach while Slurm holds the requeued jobs (120 s, their BeginTime): once the driver
    # has looked at the queue (it rewrites grid.json then), let them start at once.
    grid_json = results / "grids" / "g" / "grid.json"
    before = grid_json.stat().st_mtime_ns
    attach = _attached(env, slurm)
    _wait(lambda: grid_json.stat().st_mtime_ns != before, deadline, "look at the queue", attach)
    for job in runs:
        subprocess.run(
            ["scontrol", "update", f"JobId={job}", "StartTime=now"], env=env, check=True, timeout=30
        )
    output, _ = attach.communicate(timeout=120)
    assert attach.returncode == 0, output
    assert _jobs(results) == jobs  # nothing submitted again
    grid = json.loads((results / "grids" / "g" / "grid.json").read_text())
    outcomes = {c["key"]: c["outcome"] for c in grid["cells"]}
    assert set(outcomes.values()) == {"resumed"}, outcomes  # both from last.pt
    for job, run in runs.items():
        history = (run / "history.csv").read_text().splitlines()
        assert [line.split(",")[0] for line in history[1:]] == [
            str(e) for e in range(1, EPOCHS + 1)
        ]
        assert list((results / "grids" / "g" / "slurm" / job).glob("*_log.err"))  # logs kept

    for key in jobs:
        ours = json.loads((results / "runs" / key / "metrics.json").read_text())["test"]
        assert ours == local_metrics[key], key


def test_jobs_per_gpu_packs_cells_into_one_job_of_several_slurm_tasks(
    slurm_cluster, local_metrics, tmp_path
):
    """--jobs-per-gpu 2 with three cells: one job of two Slurm tasks (one cell each, training
    side by side) and one job of one; the two-cell job requeued after an epoch resumes both
    cells, every epoch once, and all test metrics equal the local run's."""
    env = {**slurm_cluster, "FOCALBENCH_DATA": os.environ["FOCALBENCH_DATA"]}
    results = tmp_path / "slurm-results"
    command = [*GRID, "--seeds", "0,1,2", "--results", str(results), "--executor", "slurm"]
    command += ["--slurm-cpus-per-task", "1", "--jobs-per-gpu", "2"]
    driver = _attached(env, command)
    try:
        deadline = time.monotonic() + 90
        _wait(lambda: _jobs(results), deadline, "jobs.json", driver)
        jobs = _jobs(results)
        by_job: dict[str, list[str]] = {}
        for key, job in jobs.items():
            by_job.setdefault(job, []).append(key)
        assert sorted(len(keys) for keys in by_job.values()) == [1, 2], jobs
        (pair_job,) = [job for job, keys in by_job.items() if len(keys) == 2]
        pair = [results / "runs" / key for key in by_job[pair_job]]
        # both cells of the pack train at once, in one job
        _wait(lambda: _past_epoch_one(*pair), deadline, "epoch of the pack", driver)
        assert {_status(run)["slurm_job"] for run in pair} == {pair_job}
        assert len({_status(run)["pid"] for run in pair}) == 2  # a process per cell
        subprocess.run(["scontrol", "requeue", pair_job], env=env, check=True, timeout=30)
        _wait(lambda: "PENDING" in _job_state(env, pair_job), deadline, "requeue of the pack")
        subprocess.run(
            ["scontrol", "update", f"JobId={pair_job}", "StartTime=now"],
            env=env,
            check=True,
            timeout=30,
        )
        output, _ = driver.communicate(timeout=120)
    finally:
        if driver.poll() is None:
            driver.kill()
    assert driver.returncode == 0, output
    grid = json.loads((results / "grids" / "g" / "grid.json").read_text())
    outcomes = {c["key"]: c["outcome"] for c in grid["cells"]}
    assert outcomes == {key: "resumed" if jobs[key] == pair_job else "trained" for key in jobs}
    for key in jobs:
        history = (results / "runs" / key / "history.csv").read_text().splitlines()
        assert [line.split(",")[0] for line in history[1:]] == [
            str(e) for e in range(1, EPOCHS + 1)
        ]
        ours = json.loads((results / "runs" / key / "metrics.json").read_text())["test"]
        assert ours == local_metrics[key], key


def test_bad_slurm_values_are_refused_before_any_work(tmp_path):
    """A bad --slurm-* value (or one without --executor slurm) is one line naming the fix,
    exit 2, and nothing is written; ablate --help offers the Slurm executor."""
    results = tmp_path / "r"
    cases = {
        ("--executor", "slurm", "--slurm-time", "soon"): "--slurm-time 'soon' is no Slurm time",
        ("--executor", "slurm", "--slurm-mem", "lots"): "--slurm-mem 'lots' must be a size",
        ("--executor", "slurm", "--slurm-extra", "nokey"): "--slurm-extra 'nokey' must be KEY=",
        ("--executor", "slurm", "--slurm-cpus-per-task", "0"): "must be ≥ 1",
        ("--slurm-partition", "gpu"): "--slurm-partition applies to --executor slurm",
    }
    for flags, message in cases.items():
        out = _ablate(dict(os.environ), *GRID, "--results", str(results), *flags)
        assert out.returncode == 2 and message in out.stdout + out.stderr, (flags, out)
        assert "Traceback" not in out.stderr
    assert not results.exists()
    helped = _ablate(dict(os.environ), "--help")
    assert "slurm" in helped.stdout and "--slurm-partition" in helped.stdout


def test_a_job_killed_without_a_result_and_ctrl_c_of_the_driver_both_resume(
    slurm_cluster, tmp_path
):
    """After an epoch, one job's training process is killed outright (SIGKILL, as by the OOM
    killer: no result pickle): its cell is recorded interrupted, naming the job and its log,
    and the grid goes on; then Ctrl-C of the attached driver cancels the other job, whose cell
    stops at a step. Exit 130, no cell failed
    for good, and the same command resumes both, every epoch once."""
    env = {**slurm_cluster, "FOCALBENCH_DATA": os.environ["FOCALBENCH_DATA"]}
    results = tmp_path / "slurm-results"
    command = [*GRID, "--seeds", "0,1", "--results", str(results), "--executor", "slurm"]
    command += ["--slurm-cpus-per-task", "1", "--epochs", "30"]  # long enough to signal mid-way
    driver = _attached(env, command)
    grid_json = results / "grids" / "g" / "grid.json"
    try:
        deadline = time.monotonic() + 90
        _wait(lambda: len(_jobs(results)) == 2, deadline, "jobs.json", driver)
        runs = {job: results / "runs" / key for key, job in _jobs(results).items()}
        _wait(lambda: _past_epoch_one(*runs.values()), deadline, "epoch of both jobs", driver)
        killed, cancelled = sorted(runs)
        os.kill(_status(runs[killed])["pid"], signal.SIGKILL)  # as the OOM killer would
        lost = "ended without a result"
        _wait(lambda: lost in grid_json.read_text(), deadline, "record of the lost job", driver)
        driver.send_signal(signal.SIGINT)
        output, _ = driver.communicate(timeout=60)
    finally:
        if driver.poll() is None:
            driver.kill()
    assert driver.returncode == 130, output
    error = _status(runs[killed])["error"]
    assert error.startswith(f"interrupted; Slurm job {killed} ended without a result (log: ")
    assert _status(runs[cancelled])["error"].startswith("interrupted;")

    again = _ablate(env, *command)
    assert again.returncode == 0, again.stdout + again.stderr
    outcomes = {c["outcome"] for c in json.loads(grid_json.read_text())["cells"]}
    assert outcomes == {"resumed"}
    for run in runs.values():
        history = (run / "history.csv").read_text().splitlines()
        assert [line.split(",")[0] for line in history[1:]] == [str(e) for e in range(1, 31)]
