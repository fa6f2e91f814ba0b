"""Cell life and executor mechanics: locks, stale owners, failure records, worker deaths, packing.

These tests drive the real executors and grid driver with a small stand-in for ``train``
(`fake_train`, below) that writes a run folder the way the engine does, so they pin the grid's
behaviour without depending on training speed; the end-to-end tests with the real ``train`` are
in ``test_ablate.py``.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from focalbench.config import RunConfig
from focalbench.errors import FocalbenchError
from focalbench.executors import local_slots
from focalbench.grid import ablate
from focalbench.run_state import Outcome, RunFolder, RunStatus, run_cell, run_folder
from focalbench.store import atomic_write_json, read_json, utc_now


def run_dir_of(results, key: str) -> Path:
    return run_folder(results, key).path


def read_status(run_dir) -> dict | None:
    """status.json as the plain mapping a user sees (through the run-state module)."""
    record = RunFolder(Path(run_dir)).status()
    return record.to_dict() if record else None


def owner_alive(status: dict) -> bool:
    return RunStatus.from_dict({"state": "running", **status}).owner_alive()


def cell_lock(run_dir):
    return RunFolder(Path(run_dir)).lock()


UTC_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")  # status.json's one time format


def fake_train(config: RunConfig, results, device="auto", resume=True, progress=True) -> dict:
    """A stand-in for ``engine.train`` with the same run-folder protocol.

    Loss names steer it: ``boom`` raises, ``die`` SIGKILLs its own process, ``slow`` sleeps
    1 s per epoch, ``nan`` diverges at epoch 2 (and, like the engine, a resumed call on a diverged
    folder returns the stored failed summary without training; ``resume=False`` clears the folder).
    Focal networks log their weights as ``focal_se<k>`` = ``focal_init`` (they do not move). Every
    call that trains appends ``<key> <start|resume> <pid>`` to ``results/calls.log``.
    """
    run_dir = run_dir_of(results, config.key)
    run_dir.mkdir(parents=True, exist_ok=True)
    previous = read_status(run_dir)
    if not resume:
        for name in ("status.json", "history.csv", "metrics.json", "last.pt"):
            (run_dir / name).unlink(missing_ok=True)
    elif (
        previous
        and previous["state"] == "failed"
        and previous["error"].startswith("non-finite loss")
    ):
        return {"state": "failed", "error": previous["error"], "run_dir": run_dir, "test": {}}
    resumed = (run_dir / "last.pt").exists()
    with open(Path(results) / "calls.log", "a") as log:
        log.write(f"{config.key} {'resume' if resumed else 'start'} {os.getpid()}\n")
    status = {
        "state": "running",
        "error": None,
        "epoch": 0,
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "started": utc_now(),
        "updated": utc_now(),
        "finished": None,
    }
    atomic_write_json(
        run_dir / "config.json",
        {"config": config.to_dict(), "key": config.key, "resolved": {"epochs": 2}},
    )
    atomic_write_json(run_dir / "status.json", status)
    if config.loss == "boom":
        raise RuntimeError("loss exploded at epoch 1")
    if config.loss == "die":
        os.kill(os.getpid(), signal.SIGKILL)
    slow = config.loss == "slow"
    focal = config.model_params.get("focal_init")
    focal_columns = (
        [f"focal_se{k}" for k in range(1, 10)] if config.model.startswith("focal-") else []
    )
    history = [",".join(["epoch", "train_loss", *focal_columns])]
    for epoch in (1, 2):
        time.sleep(1.0 if slow else 0.01)
        (run_dir / "last.pt").write_text(str(epoch))
        history.append(",".join([str(epoch), "0.5", *[str(focal)] * len(focal_columns)]))
        (run_dir / "history.csv").write_text("\n".join(history) + "\n")
        if config.loss == "nan" and epoch == 2:
            error = (
                "non-finite loss at epoch 2 (train_loss=nan, val_loss=nan); last finite: epoch 1"
            )
            atomic_write_json(run_dir / "metrics.json", {"test": {}, "error": error})
            atomic_write_json(
                run_dir / "status.json",
                {
                    **status,
                    "state": "failed",
                    "error": error,
                    "epoch": 2,
                    "updated": utc_now(),
                    "finished": utc_now(),
                },
            )
            return {"state": "failed", "error": error, "run_dir": run_dir, "test": {}}
        atomic_write_json(run_dir / "status.json", {**status, "epoch": epoch, "updated": utc_now()})
    atomic_write_json(run_dir / "metrics.json", {"test": {"dsc": 0.5}})
    atomic_write_json(
        run_dir / "status.json",
        {**status, "state": "done", "epoch": 2, "updated": utc_now(), "finished": utc_now()},
    )
    return {"state": "done", "run_dir": run_dir, "test": {"dsc": 0.5}}


def fake_grid(**fields: Any) -> Any:
    """``ablate`` of U-Net × ``losses`` on the sample (smoke) with every cell trained by
    :func:`fake_train`, whose loss names steer it; ``fields`` add to these or replace them."""
    defaults = {"models": "unet", "protocol": "smoke", "progress": False, "train_fn": fake_train}
    return ablate("sample", **{**defaults, **fields})


def _config(loss: str = "dice", seed: int = 0) -> RunConfig:
    return RunConfig(dataset="sample", model="unet", loss=loss, protocol="smoke", seed=seed)


def _alive(pid: int) -> bool:
    """Running (a zombie left unreaped by a container's init counts as gone)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def _calls(results: Path) -> list[list[str]]:
    log = results / "calls.log"
    return [line.split() for line in log.read_text().splitlines()] if log.exists() else []


def test_slots_pack_jobs_per_gpu_onto_each_gpu():
    assert local_slots("auto", [0, 1], jobs_per_gpu=2) == ["cuda:0", "cuda:0", "cuda:1", "cuda:1"]
    assert local_slots("cpu", None, jobs=3) == ["cpu", "cpu", "cpu"]
    with pytest.raises(FocalbenchError, match="--gpus"):
        local_slots("cpu", [0])


def test_lock_excludes_a_second_holder_and_dies_with_its_owner(tmp_path):
    with cell_lock(tmp_path) as first:
        with cell_lock(tmp_path) as second:  # a second open file in the same process conflicts too
            assert (first, second) == (True, False)
    # a holder killed with SIGKILL releases the lock (the kernel closes its files)
    code = (
        "import fcntl, os, sys, time; fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT); "
        "fcntl.flock(fd, fcntl.LOCK_EX); print('locked', flush=True); time.sleep(60)"
    )
    holder = subprocess.Popen(
        [sys.executable, "-c", code, str(tmp_path / ".lock")], stdout=subprocess.PIPE, text=True
    )
    assert holder.stdout.readline().strip() == "locked"
    with cell_lock(tmp_path) as while_held:
        assert while_held is False
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    with cell_lock(tmp_path) as after_kill:
        assert after_kill is True


def test_done_cell_is_skipped_without_training(tmp_path):
    config = _config()
    assert run_cell(config.to_dict(), str(tmp_path), train_fn=fake_train).outcome is Outcome.trained
    again = run_cell(config.to_dict(), str(tmp_path), train_fn=fake_train)
    assert again.outcome is Outcome.skipped
    assert again.summary["test"] == {"dsc": 0.5}
    assert len(_calls(tmp_path)) == 1


def test_failure_is_recorded_and_retried_only_when_asked(tmp_path):
    config = _config("boom")
    first = run_cell(config.to_dict(), str(tmp_path), train_fn=fake_train)
    assert first.outcome is Outcome.failed
    assert first.error == "RuntimeError: loss exploded at epoch 1"
    status = read_status(run_dir_of(tmp_path, config.key))
    assert (status["state"], status["error"]) == (
        "failed",
        "RuntimeError: loss exploded at epoch 1",
    )
    assert 'raise RuntimeError("loss exploded at epoch 1")' in status["traceback"]
    assert all(UTC_TIME.fullmatch(status[k]) for k in ("started", "updated", "finished")), status
    again = run_cell(config.to_dict(), str(tmp_path), train_fn=fake_train)
    assert (again.outcome, again.previously_failed) == (Outcome.failed, True)
    assert len(_calls(tmp_path)) == 1  # not retried
    run_cell(config.to_dict(), str(tmp_path), retry_failed=True, train_fn=fake_train)
    assert len(_calls(tmp_path)) == 2


def test_a_diverged_cell_is_a_failure_skipped_until_retry_failed_retrains_it_from_scratch(tmp_path):
    """A NaN/inf loss ends a cell failed: listed among the failures with its reason, skipped by a
    plain rerun, and trained again from scratch (not resumed into the same NaN) with --retry-failed."""
    grid = dict(losses="nan,dice", results=tmp_path, jobs=1)
    first = fake_grid(**grid)
    (failure,) = first.failures()
    assert (
        failure["error"].startswith("non-finite loss at epoch 2")
        and not failure["previously_failed"]
    )
    key = failure["key"]
    again = fake_grid(**grid)
    assert again.failures() == [{**failure, "previously_failed": True}]
    assert [call[:2] for call in _calls(tmp_path) if call[0] == key] == [
        [key, "start"]
    ]  # not trained again
    retried = fake_grid(**grid, retry_failed=True)
    assert [call[:2] for call in _calls(tmp_path) if call[0] == key] == [
        [key, "start"],
        [key, "start"],
    ]
    (failure,) = retried.failures()  # it diverged again, and says so
    assert (
        failure["error"].startswith("non-finite loss at epoch 2")
        and not failure["previously_failed"]
    )
    assert {c.config.loss: c.result.outcome for c in retried.cells} == {
        "nan": Outcome.failed,
        "dice": Outcome.skipped,
    }


def test_retry_failed_retrains_a_diverged_cell_with_the_real_engine(tmp_path, monkeypatch):
    """The engine's own diverged run (NaN at epoch 2): --retry-failed, once the cause is gone,
    trains the cell from scratch to done instead of returning its stored failed summary."""
    from focalbench.engine import loop

    config = RunConfig(dataset="sample", model="unet", loss="dice", protocol="smoke", epochs=2)
    real, calls = loop.train_epoch, []

    def nan_in_second_epoch(run, display):
        calls.append(1)
        loss = real(run, display)
        return loss * float("nan") if len(calls) == 2 else loss

    monkeypatch.setattr(loop, "train_epoch", nan_in_second_epoch)
    first = run_cell(config.to_dict(), str(tmp_path), device="cpu")
    assert first.outcome is Outcome.failed and first.error.startswith("non-finite loss at epoch 2")
    monkeypatch.setattr(loop, "train_epoch", real)
    skipped = run_cell(config.to_dict(), str(tmp_path), device="cpu")
    assert (skipped.outcome, skipped.previously_failed, skipped.error) == (
        Outcome.failed,
        True,
        first.error,
    )
    retried = run_cell(config.to_dict(), str(tmp_path), device="cpu", retry_failed=True)
    assert retried.outcome is Outcome.trained, retried.error
    run_dir = run_dir_of(tmp_path, config.key)
    assert (read_status(run_dir)["state"], read_status(run_dir)["error"]) == ("done", None)
    assert (run_dir / "history.csv").read_text().count(
        "\n"
    ) == 3  # header + epochs 1, 2 of the new run


def test_running_cell_whose_owner_is_gone_is_resumed(tmp_path):
    config = _config()
    run_dir = run_dir_of(tmp_path, config.key)
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    run_dir.mkdir(parents=True)
    (run_dir / "last.pt").write_text("1")
    atomic_write_json(
        run_dir / "status.json",
        {"state": "running", "epoch": 1, "pid": gone.pid, "host": socket.gethostname()},
    )
    result = run_cell(config.to_dict(), str(tmp_path), train_fn=fake_train)
    assert result.outcome is Outcome.resumed
    assert _calls(tmp_path)[0][1] == "resume"
    assert read_status(run_dir)["state"] == "done"


def test_an_unreaped_dead_owner_counts_as_gone():
    """A worker killed with its driver stays a zombie where init does not reap (containers)."""
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    child.kill()
    deadline = time.time() + 10
    while not _zombie_state(child.pid) and time.time() < deadline:
        time.sleep(0.01)
    assert _zombie_state(child.pid)  # dead, but os.kill(pid, 0) still succeeds
    assert not owner_alive({"pid": child.pid, "host": socket.gethostname()})
    child.wait()


def _zombie_state(pid: int) -> bool:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"


def test_running_cell_of_a_live_lockless_owner_is_left_alone(tmp_path):
    config = _config()
    run_dir = run_dir_of(tmp_path, config.key)
    owner = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        run_dir.mkdir(parents=True)
        atomic_write_json(
            run_dir / "status.json",
            {"state": "running", "pid": owner.pid, "host": socket.gethostname()},
        )
        result = run_cell(config.to_dict(), str(tmp_path), train_fn=fake_train)
        assert result.outcome is Outcome.busy
        assert str(owner.pid) in result.error
        assert _calls(tmp_path) == []
    finally:
        owner.kill()
        owner.wait()


def _begun(results, config: RunConfig, pid: int, updated) -> dict:
    """A cell left mid-run at epoch 1 by ``pid`` on this host (last.pt and its status record)."""
    run_dir = run_dir_of(results, config.key)
    run_dir.mkdir(parents=True)
    (run_dir / "last.pt").write_text("1")
    status = {
        "state": "running",
        "epoch": 1,
        "pid": pid,
        "host": socket.gethostname(),
        "updated": updated,
    }
    atomic_write_json(run_dir / "status.json", status)
    return status


def test_a_live_process_whose_record_says_interrupted_owns_nothing(tmp_path):
    """A Ray worker outlives the task it stopped on Ctrl-C: its pid is alive, but its record
    says interrupted, so the cell is not busy: the next run resumes it."""
    config = _config()
    lingering = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        status = _begun(tmp_path, config, lingering.pid, utc_now())
        assert owner_alive(status)
        interrupted = {**status, "error": "interrupted; rerun the same command to resume"}
        assert not owner_alive(interrupted)
        atomic_write_json(run_dir_of(tmp_path, config.key) / "status.json", interrupted)
        result = run_cell(config.to_dict(), str(tmp_path), train_fn=fake_train)
        assert result.outcome is Outcome.resumed, result.error
    finally:
        lingering.kill()
        lingering.wait()
    assert _calls(tmp_path)[0][1] == "resume"


def test_a_raising_cell_does_not_stop_the_grid(tmp_path):
    result = fake_grid(
        losses="dice,boom,ce",
        seeds="0,1",
        results=tmp_path,
        jobs=2,
    )
    counts = result.counts()
    assert (counts["trained"], counts["failed"]) == (4, 2)
    failures = result.failures()
    assert {f["seed"] for f in failures} == {0, 1}
    assert all(f["error"] == "RuntimeError: loss exploded at epoch 1" for f in failures)
    stored = read_json(result.grid_dir / "grid.json")
    assert [c["outcome"] for c in stored["cells"]].count("failed") == 2
    assert len({c["key"] for c in stored["cells"]}) == 6
    assert all(
        re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", stored[k]) for k in ("created", "updated")
    )


def test_killed_worker_fails_its_cell_and_the_pool_goes_on(tmp_path):
    result = fake_grid(
        losses="die,dice,ce",
        results=tmp_path,
        jobs=1,
    )
    outcomes = {c.config.loss: c.result.outcome for c in result.cells}
    assert outcomes == {"die": Outcome.failed, "dice": Outcome.trained, "ce": Outcome.trained}
    dead = next(c for c in result.cells if c.config.loss == "die")
    assert "worker process died (exit code -9)" in dead.result.error
    status = read_status(run_dir_of(tmp_path, dead.config.key))
    assert status["state"] == "failed"
    assert all(UTC_TIME.fullmatch(status[k]) for k in ("started", "updated", "finished")), status
    # its owner is gone, so the next run takes it up again without --retry-failed (and it dies
    # again: it died before its first checkpoint), while the finished cells are skipped
    again = fake_grid(
        losses="die,dice,ce",
        results=tmp_path,
        jobs=1,
    )
    assert [call[0] for call in _calls(tmp_path)].count(dead.config.key) == 2
    assert {c.config.loss: c.result.outcome for c in again.cells} == {
        "die": Outcome.failed,
        "dice": Outcome.skipped,
        "ce": Outcome.skipped,
    }


def test_two_grids_on_one_results_folder_never_train_a_cell_twice(tmp_path):
    outcomes = []

    def run() -> None:
        res = fake_grid(
            losses="slow",
            seeds="0,1,2,3",
            results=tmp_path,
            jobs=2,
        )
        outcomes.append([c.result.outcome for c in res.cells])

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    keys = [call[0] for call in _calls(tmp_path)]
    assert sorted(keys) == sorted(set(keys)) and len(keys) == 4  # each cell trained exactly once
    for a, b in zip(*outcomes, strict=False):
        assert Outcome.trained in (a, b)
        assert {a, b} <= {Outcome.trained, Outcome.busy, Outcome.skipped}
    # the last to write grid.json recorded every cell's run folder as it ended: none busy
    (grid_dir,) = (tmp_path / "grids").iterdir()
    recorded = [c["outcome"] for c in read_json(grid_dir / "grid.json")["cells"]]
    assert set(recorded) <= {"trained", "skipped"} and len(recorded) == 4, recorded


def test_killed_driver_takes_its_workers_down_and_a_rerun_resumes(tmp_path):
    """kill -9 of the driver: workers exit (no orphan keeps training), the rerun resumes."""
    script = (
        "import sys; sys.path.insert(0, sys.argv[2]); from test_executors import fake_train; "
        "from focalbench.grid import ablate; "
        "ablate('sample', models='unet', losses='slow', seeds='0,1,2,3,4,5', protocol='smoke', "
        "results=sys.argv[1], jobs=2, progress=False, train_fn=fake_train)"
    )
    driver = subprocess.Popen(
        [sys.executable, "-c", script, str(tmp_path), str(Path(__file__).parent)],
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    deadline = time.time() + 60

    def half_trained() -> bool:
        # a cell of the second wave has just finished epoch 1 of 2; a first-wave cell seen at
        # epoch 1 may finish before the kill lands, so it does not count
        second_wave = [call[0] for call in _calls(tmp_path)[2:]]
        return any(
            (read_status(run_dir_of(tmp_path, key)) or {}).get("epoch") == 1 for key in second_wave
        )

    while not half_trained() and time.time() < deadline:
        time.sleep(0.02)
    driver.send_signal(signal.SIGKILL)
    driver.wait()
    worker_pids = {int(call[2]) for call in _calls(tmp_path)}
    time.sleep(1.0)  # the kernel kills the workers with their parent (PR_SET_PDEATHSIG)
    assert not [pid for pid in worker_pids if _alive(pid)]
    before = {call[0] for call in _calls(tmp_path)}
    done_before = {k for k in before if read_status(run_dir_of(tmp_path, k))["state"] == "done"}
    partial = {k for k in before - done_before if (run_dir_of(tmp_path, k) / "last.pt").exists()}
    assert partial, "the driver was killed with no cell half-trained; the test proves nothing"
    result = fake_grid(
        losses="slow",
        seeds="0,1,2,3,4,5",
        results=tmp_path,
        jobs=2,
    )
    by_key = {c.config.key: c.result.outcome for c in result.cells}
    assert all(by_key[k] is Outcome.skipped for k in done_before)
    assert all(by_key[k] is Outcome.resumed for k in partial)
    assert all(read_status(run_dir_of(tmp_path, k))["state"] == "done" for k in by_key)


def test_a_fully_pruned_cell_is_its_own_cell_beside_the_unet_row(tmp_path):
    """Every focal weight ≤ τ gives the plain U-Net network, retrained as the pruned row's own cell."""
    result = fake_grid(
        attention="se",
        results=tmp_path,
        jobs=2,
        models=None,
    )
    unet, zero, pruned = result.cells[0], result.cells[3], result.cells[4]
    assert pruned.config == unet.config.replace(pruned_from=zero.config.key)
    assert pruned.note == "no module above τ = 0.2: plain U-Net"
    assert (unet.result.outcome, pruned.result.outcome) == (Outcome.trained, Outcome.trained)
    assert sorted(call[0] for call in _calls(tmp_path)) == sorted(
        c.config.key for c in result.cells
    )


def test_an_idle_worker_that_died_is_replaced_before_it_gets_a_cell(tmp_path):
    from focalbench.executors import CellTask, LocalExecutor

    pool = LocalExecutor(["cpu"])
    pool.start()
    try:

        def run(task_id: int, loss: str) -> list:
            pool.submit(
                CellTask(task_id, _config(loss).to_dict(), str(tmp_path), False, fake_train)
            )
            deadline, got = time.time() + 60, []
            while not got and time.time() < deadline:
                got = pool.poll(0.1)
            return got

        assert [r.outcome for _, r in run(0, "dice")] == [Outcome.trained]
        first = pool._procs[0]
        os.kill(first.pid, signal.SIGKILL)  # dies while idle, between two cells
        first.join(10)
        assert pool.poll(0.01) == [] and pool._procs[0] is not first
        assert [r.outcome for _, r in run(1, "ce")] == [Outcome.trained]
    finally:
        pool.close()


def test_a_cell_stopped_by_ctrl_c_is_resumed_by_the_next_grid_without_retry_failed(tmp_path):
    """Ctrl-C reaches the workers too: the engine marks their cells failed with its INTERRUPTED
    message, and a rerun must resume them (issue 7: interrupted cells resume; only real failures
    wait for --retry-failed)."""
    import focalbench

    config = RunConfig(dataset="sample", model="unet", loss="dice", protocol="smoke", epochs=2)

    def ctrl_c(epoch, row):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        focalbench.train(config, results=tmp_path, progress=False, on_epoch_end=ctrl_c)
    run_dir = run_dir_of(tmp_path, config.key)
    assert read_status(run_dir)["state"] == "failed"
    result = run_cell(config.to_dict(), str(tmp_path), device="cpu")
    assert result.outcome is Outcome.resumed, result.error
    status = read_status(run_dir)
    assert (status["state"], status["epoch"]) == ("done", 2)


@pytest.mark.parametrize(
    "updated",
    [
        time.strftime(
            "%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 3600)
        ),  # the format written now
        time.time() - 3600,  # older ablate failure records: float epoch seconds
        time.strftime(
            "%Y-%m-%dT%H:%M:%S%z", time.localtime(time.time() - 3600)
        ),  # older engine: local offset
    ],
    ids=["utc", "float", "iso-offset"],
)
def test_a_live_process_younger_than_the_status_is_a_reused_pid_not_the_owner(tmp_path, updated):
    """After a reboot (or a pid wrap) the dead owner's pid can belong to an unrelated process;
    it started after status.json was last written, so it cannot be the writer: resume the cell."""
    config = _config()
    stranger = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        status = _begun(tmp_path, config, stranger.pid, updated)
        assert owner_alive({**status, "updated": utc_now()})  # written after it started: the owner
        assert owner_alive({**status, "updated": time.time() + 1})
        assert not owner_alive(status)
        result = run_cell(config.to_dict(), str(tmp_path), train_fn=fake_train)
        assert result.outcome is Outcome.resumed
    finally:
        stranger.kill()
        stranger.wait()
