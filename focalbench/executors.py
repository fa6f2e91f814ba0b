"""Where grid cells run: one cell's life (lock, resume, failure record) and the executors.

A *cell* is one :class:`~focalbench.config.RunConfig` trained into ``<results>/runs/<key>/``.
:func:`run_cell` is the one function every executor calls, in whatever process it runs:

1. take the cell's lock, an exclusive ``fcntl.flock`` on ``runs/<key>/.lock``. The kernel drops
   the lock when its process dies — even by ``kill -9`` — so a lock never outlives its owner, and
   two ``ablate`` processes (or two Ray workers on a shared filesystem with flock support, e.g.
   NFSv4) never train one cell at once. A cell whose lock is held is reported ``busy``;
2. read ``status.json``: ``done`` → skipped; ``failed`` → skipped unless ``retry_failed`` (a
   run stopped by Ctrl-C is not failed: it is resumed; a run stopped by a non-finite loss is
   failed, and ``retry_failed`` trains it again from scratch, since resuming its last finite
   epoch would diverge again);
   ``running`` while we hold the lock → its owner is gone, so the run is resumed from
   ``last.pt`` (unless the recorded owner is a live process on this host that trains without the
   lock, e.g. a plain ``focalbench train`` — then ``busy``);
3. call ``train(config, results, device, resume=True, progress=False)``; any exception is caught
   and written into ``status.json`` as ``failed`` with its error, so one bad cell never stops
   a grid.

Executors: :class:`LocalExecutor` — a pool of spawned worker processes, one per slot, each bound
to one device (``--gpus 0,1 --jobs-per-gpu 2`` gives the slots cuda:0, cuda:0, cuda:1, cuda:1;
``--jobs N`` gives N CPU slots); :class:`RayExecutor` — one Ray task per cell asking for
``1/jobs_per_gpu`` of a GPU. Both share :func:`run_cell` and the results layout.
"""

from __future__ import annotations

import contextlib
import fcntl
import multiprocessing
import multiprocessing.connection
import os
import signal
import socket
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

from focalbench import threads
from focalbench.config import RunConfig
from focalbench.errors import FocalbenchError
from focalbench.processes import pid_alive, start_time
from focalbench.store import atomic_write_json, parse_time, read_json, utc_now

TrainFn = Callable[..., dict]


class Outcome(str, Enum):
    """What happened to a cell in this grid run."""

    trained = "trained"  # trained from scratch and finished
    resumed = "resumed"  # continued from last.pt and finished
    skipped = "skipped"  # already done
    failed = "failed"  # raised (now, or earlier and not retried)
    busy = "busy"  # another live process holds the cell
    blocked = "blocked"  # a pruned cell whose source did not finish


@dataclass
class CellResult:
    key: str
    outcome: Outcome
    seconds: float = 0.0
    error: str | None = None
    previously_failed: bool = False
    summary: dict[str, Any] = field(default_factory=dict)

    @property
    def done(self) -> bool:
        return self.outcome in (Outcome.trained, Outcome.resumed, Outcome.skipped)

    def to_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "outcome": self.outcome.value,
            "seconds": round(self.seconds, 3),
            "error": self.error,
            "previously_failed": self.previously_failed,
            "summary": self.summary,
        }


def run_dir_of(results: str | os.PathLike, key: str) -> Path:
    return Path(results) / "runs" / key


def read_status(run_dir: str | os.PathLike) -> dict[str, Any] | None:
    path = Path(run_dir) / "status.json"
    try:
        return read_json(path)
    except FileNotFoundError:
        return None


@contextlib.contextmanager
def cell_lock(run_dir: str | os.PathLike) -> Iterator[bool]:
    """Hold the cell's exclusive lock for the ``with`` block; yields ``False`` if another holds it.

    ``flock`` locks belong to the open file, so two processes, and two opens in one process,
    exclude each other; the kernel releases the lock when the holder exits for any reason.
    """
    path = Path(run_dir) / ".lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        # Who holds it, for a human looking at a stuck grid; the lock itself is the flock.
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()} {socket.gethostname()}\n".encode())
        yield True
    finally:
        os.close(fd)  # closing drops the flock


def owner_alive(status: dict[str, Any]) -> bool:
    """True if ``status`` names a live process on this host other than us (a lock-less owner).

    A live process that started after ``status.json`` was last written cannot be its writer:
    the owner died and its pid was reused (after a reboot, or a wrap of the pid counter).
    """
    pid, host = status.get("pid"), status.get("host")
    if not isinstance(pid, int) or host != socket.gethostname() or pid == os.getpid():
        return False
    if not pid_alive(pid):
        return False
    updated, started = parse_time(status.get("updated")), start_time(pid)
    # 2 s: status times are whole seconds, and boot time is too.
    return updated is None or started is None or started <= updated + 2.0


def interrupted(status: dict[str, Any]) -> bool:
    """A run stopped by Ctrl-C (``engine.run_folder.INTERRUPTED``) or whose worker process died:
    resumable, not failed."""
    return str(status.get("error") or "").startswith("interrupted;")


def diverged(status: dict[str, Any]) -> bool:
    """A run stopped on a NaN/inf loss (``engine.run_folder.DIVERGED``): failed, and retried from
    scratch, because train resuming it returns its stored failed summary."""
    return status.get("state") == "failed" and str(status.get("error") or "").startswith("non-finite loss")


def record_failure(run_dir: Path, error: str, trace: str | None = None) -> None:
    """Mark the cell ``failed`` with ``error`` (and the ``traceback``, when one is known) in its
    status.json, keeping what train wrote."""
    status = read_status(run_dir) or {}
    now = utc_now()
    if trace:
        status["traceback"] = trace
    status.update(
        state="failed",
        error=error,
        pid=os.getpid(),
        host=socket.gethostname(),
        updated=now,
        finished=now,
    )
    status.setdefault("epoch", None)
    status.setdefault("started", now)
    atomic_write_json(run_dir / "status.json", status)


def _default_train(config: RunConfig, **kwargs: Any) -> dict:
    from focalbench.engine import train

    return train(config, **kwargs)


def run_cell(
    config: dict[str, Any],
    results: str,
    device: str = "auto",
    retry_failed: bool = False,
    train_fn: TrainFn | None = None,
) -> CellResult:
    """Run one cell to completion in this process; never raises for a failing cell.

    ``config`` is ``RunConfig.to_dict()`` (plain data crosses process and Ray boundaries).
    ``train_fn(config, results=, device=, resume=, progress=) -> summary`` defaults to
    :func:`focalbench.engine.train`.
    """
    cfg = RunConfig.from_dict(config)
    run_dir = run_dir_of(results, cfg.key)
    start = time.perf_counter()
    with cell_lock(run_dir) as locked:
        status = read_status(run_dir)
        if not locked or (status and status.get("state") == "running" and owner_alive(status)):
            holder = status and f"pid {status.get('pid')} on {status.get('host')}"
            return CellResult(cfg.key, Outcome.busy, error=f"being trained by {holder or 'another process'}")
        state = status.get("state") if status else None
        if state == "done":
            return CellResult(cfg.key, Outcome.skipped, summary=_stored_summary(run_dir))
        if state == "failed" and not retry_failed and not interrupted(status):
            return CellResult(cfg.key, Outcome.failed, error=status.get("error"), previously_failed=True)
        restart = bool(status) and diverged(status)  # only reached with retry_failed
        resumed = not restart and (run_dir / "last.pt").exists()
        try:
            summary = (train_fn or _default_train)(
                cfg, results=results, device=device, resume=not restart, progress=False
            )
        except Exception as exc:  # one bad cell must not stop the grid: record it and go on
            error = f"{type(exc).__name__}: {exc}"
            record_failure(run_dir, error, traceback.format_exc(limit=12))
            return CellResult(cfg.key, Outcome.failed, time.perf_counter() - start, error)
        seconds = time.perf_counter() - start
        final = read_status(run_dir) or {}
        if final.get("state") != "done":
            # train returned without finishing (e.g. it stopped on a NaN loss and said so)
            error = final.get("error") or summary.get("error") or f"train ended in state {final.get('state')!r}"
            if final.get("state") != "failed":
                record_failure(run_dir, error)
            return CellResult(cfg.key, Outcome.failed, seconds, error, summary=_plain_summary(summary))
        outcome = Outcome.resumed if resumed else Outcome.trained
        return CellResult(cfg.key, outcome, seconds, summary=_plain_summary(summary))


def _stored_summary(run_dir: Path) -> dict[str, Any]:
    try:
        metrics = read_json(run_dir / "metrics.json")
    except FileNotFoundError:
        return {"run_dir": str(run_dir)}
    return {"run_dir": str(run_dir), "test": metrics.get("test", {})}


def _plain_summary(summary: dict[str, Any]) -> dict[str, Any]:
    """The JSON-able part of train's summary that a grid reports: state, run_dir, test metrics."""
    keep = {k: summary[k] for k in ("state", "run_dir", "test") if k in summary}
    if "run_dir" in keep:
        keep["run_dir"] = str(keep["run_dir"])
    return keep


# ---------------------------------------------------------------------------------------------
# Executors. Interface used by the grid driver: start(); capacity; submit(task); poll(timeout)
# -> list[(task_id, CellResult)]; running() -> {task_id: device}; close().


@dataclass(frozen=True)
class CellTask:
    task_id: int
    config: dict[str, Any]
    results: str
    retry_failed: bool
    train_fn: TrainFn | None = None


class ExecutorKind(str, Enum):
    local = "local"
    ray = "ray"


def local_slots(device: str = "auto", gpus: list[int] | None = None, jobs_per_gpu: int = 1, jobs: int = 1) -> list[str]:
    """Devices of the local pool's worker slots.

    ``gpus=[0, 1], jobs_per_gpu=2`` → ``["cuda:0", "cuda:0", "cuda:1", "cuda:1"]`` (several
    batch-size-1 cells share a GPU); no ``gpus`` → ``jobs`` slots on ``device``.
    """
    if jobs_per_gpu < 1 or jobs < 1:
        raise FocalbenchError("--jobs and --jobs-per-gpu must be ≥ 1")
    if gpus:
        if device not in ("auto", "cuda"):
            raise FocalbenchError(f"--gpus picks the devices; drop --device {device} (or drop --gpus)")
        return [f"cuda:{g}" for g in gpus for _ in range(jobs_per_gpu)]
    return [device] * jobs


def _die_with_parent(parent_pid: int) -> None:
    """Exit this worker as soon as the driver is gone (even after ``kill -9`` of the driver).

    On Linux the kernel sends us SIGKILL when the driver dies (``prctl(PR_SET_PDEATHSIG)``);
    elsewhere a watchdog thread notices the re-parenting within half a second. The cell's flock
    dies with us, so the next ``ablate`` finds the cell unowned and resumes it from ``last.pt``.
    """
    if sys.platform.startswith("linux"):
        import ctypes

        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)
    threading.Thread(target=_watch_parent, args=(parent_pid,), daemon=True).start()


def _watch_parent(parent_pid: int) -> None:
    while True:
        if os.getppid() != parent_pid:
            os._exit(3)
        time.sleep(0.5)


def _slot_main(device: str, channel: Any, parent_pid: int, slots: int) -> None:
    _die_with_parent(parent_pid)
    threads.limit_worker_threads(device, slots)  # before any network is built
    while True:
        try:
            task = channel.recv()
        except EOFError:  # the driver is gone
            task = None
        if task is None:
            # Skip the interpreter's teardown (torch's takes seconds); a pipe send is already written.
            os._exit(0)
        result = run_cell(task.config, task.results, device, task.retry_failed, task.train_fn)
        channel.send((task.task_id, result))


class LocalExecutor:
    """A pool of spawned worker processes, one per slot, each with a fixed device.

    Spawned (not forked) so CUDA is never initialised twice; a worker is reused across cells so
    the ``import torch`` cost is paid once per slot. A worker that dies mid-cell (OOM killer,
    ``kill -9``) is replaced and its cell reported failed; the cell's status then says so.

    Each worker talks to the driver over a pipe of its own, never a queue shared by the pool: a
    ``multiprocessing.Queue`` guards writes with a lock shared by every writer, and a worker
    killed between writing a result and releasing that lock would block every other worker's
    results forever.
    """

    def __init__(self, slots: list[str]) -> None:
        self.slots = slots
        self.capacity = len(slots)
        self._ctx = multiprocessing.get_context("spawn")
        self._procs: list[Any] = [None] * len(slots)
        self._channels: list[Any] = [None] * len(slots)
        self._busy: dict[int, tuple[int, CellTask]] = {}  # slot -> (task id, task)

    def start(self) -> None:
        for slot in range(self.capacity):
            self._spawn(slot)

    def _spawn(self, slot: int) -> None:
        if self._channels[slot] is not None:
            self._channels[slot].close()
        ours, theirs = self._ctx.Pipe()
        proc = self._ctx.Process(target=_slot_main, args=(self.slots[slot], theirs, os.getpid(), self.capacity), daemon=True)
        proc.start()
        theirs.close()  # only the worker holds its end now, so its death reads as EOF here
        self._procs[slot], self._channels[slot] = proc, ours

    def submit(self, task: CellTask) -> None:
        slot = next(s for s in range(self.capacity) if s not in self._busy)
        self._busy[slot] = (task.task_id, task)
        self._channels[slot].send(task)

    @property
    def free(self) -> int:
        return self.capacity - len(self._busy)

    def running(self) -> dict[int, str]:
        return {task_id: self.slots[slot] for slot, (task_id, _) in self._busy.items()}

    def poll(self, timeout: float) -> list[tuple[int, CellResult]]:
        received = []
        for channel in multiprocessing.connection.wait(self._channels, timeout):
            with contextlib.suppress(EOFError, OSError):  # a dead worker: handled below
                received.append(channel.recv())
        # A result can only arrive late for a cell already settled because its worker died.
        busy = {task_id for task_id, _ in self._busy.values()}
        out = [(task_id, result) for task_id, result in received if task_id in busy]
        done = {task_id for task_id, _ in out}
        self._busy = {slot: entry for slot, entry in self._busy.items() if entry[0] not in done}
        for slot, proc in enumerate(self._procs):
            if proc.is_alive():
                continue
            if slot in self._busy:  # it died mid-cell: that cell failed, unless it had just finished
                task_id, task = self._busy.pop(slot)
                key = RunConfig.from_dict(task.config).key
                run_dir = run_dir_of(task.results, key)
                if (read_status(run_dir) or {}).get("state") == "done":
                    out.append((task_id, CellResult(key, Outcome.trained, summary=_stored_summary(run_dir))))
                else:
                    # The owner is gone, not the cell's fault as far as anyone knows: the next run
                    # of the grid resumes it from last.pt like a Ctrl-C'd cell (see interrupted()).
                    error = (f"interrupted; worker process died (exit code {proc.exitcode}) while training; "
                             "rerun the same command to resume")
                    record_failure(run_dir, error)
                    out.append((task_id, CellResult(key, Outcome.failed, error=error)))
            self._spawn(slot)  # idle or not, a dead slot must not receive the next cell
        return out

    def close(self) -> None:
        for proc, channel in zip(self._procs, self._channels):
            if channel is not None and proc.is_alive():
                with contextlib.suppress(OSError):
                    channel.send(None)
        for proc, channel in zip(self._procs, self._channels):
            if proc is not None:
                proc.join(timeout=10)
                if proc.is_alive():
                    proc.kill()
                channel.close()


def _ray_cell(task: CellTask, device: str) -> tuple[int, CellResult]:
    return task.task_id, run_cell(task.config, task.results, device, task.retry_failed, task.train_fn)


class RayExecutor:
    """One Ray task per cell; with GPUs each task asks for ``1/jobs_per_gpu`` of one.

    Ray sets ``CUDA_VISIBLE_DEVICES`` for a task holding a GPU share, so the task trains on
    ``cuda`` (its visible GPU 0). The results folder must be a path every node sees (a shared
    filesystem); cells lock and resume there exactly as locally. Tasks are not retried by Ray:
    a crashed task is reported failed, like a dead local worker.
    """

    def __init__(self, address: str | None = None, use_gpus: bool = False, jobs_per_gpu: int = 1,
                 device: str = "auto") -> None:
        try:
            import ray
        except ImportError:
            raise FocalbenchError("--executor ray needs Ray: pip install 'focalbench[ray]'") from None
        self._ray = ray
        self.address = address
        self.use_gpus = use_gpus
        self.jobs_per_gpu = jobs_per_gpu
        self.device = "cuda" if use_gpus else device
        self._refs: dict[Any, CellTask] = {}
        self._owns_ray = False
        self.capacity = 0

    def start(self) -> None:
        ray = self._ray
        if not ray.is_initialized():
            try:
                forwarded = {k: os.environ[k] for k in ("FOCALBENCH_DATA",) if k in os.environ}
                ray.init(address=self.address, include_dashboard=False, log_to_driver=False,
                         runtime_env={"env_vars": forwarded} if forwarded else None)
            except ConnectionError as exc:
                raise FocalbenchError(f"cannot reach the Ray cluster at {self.address!r} ({exc}); check --ray-address") from None
            self._owns_ray = True
        # Keep only as many tasks in flight as the cluster can run, so the progress display's
        # "running" lines are true and a rerun's order follows the plan.
        resources = ray.cluster_resources()
        per_cell = 1 / self.jobs_per_gpu if self.use_gpus else 1.0
        pool = resources.get("GPU", 0) if self.use_gpus else resources.get("CPU", 1)
        self.capacity = max(1, int(pool / per_cell))
        options: dict[str, Any] = {"max_retries": 0, "num_cpus": 1}
        if self.use_gpus:
            options["num_gpus"] = 1 / self.jobs_per_gpu
        self._remote = ray.remote(**options)(_ray_cell)

    @property
    def free(self) -> int:
        return self.capacity - len(self._refs)

    def submit(self, task: CellTask) -> None:
        self._refs[self._remote.remote(task, self.device)] = task

    def running(self) -> dict[int, str]:
        return {task.task_id: "ray" for task in self._refs.values()}

    def poll(self, timeout: float) -> list[tuple[int, CellResult]]:
        if not self._refs:
            time.sleep(timeout)
            return []
        ready, _ = self._ray.wait(list(self._refs), num_returns=len(self._refs), timeout=timeout)
        out = []
        for ref in ready:
            task = self._refs.pop(ref)
            try:
                out.append(self._ray.get(ref))
            except Exception as exc:  # the task's worker died; run_cell itself never raises
                key = RunConfig.from_dict(task.config).key
                error = f"Ray task died: {type(exc).__name__}: {exc}".splitlines()[0]
                record_failure(run_dir_of(task.results, key), error)
                out.append((task.task_id, CellResult(key, Outcome.failed, error=error)))
        return out

    def close(self) -> None:
        if self._owns_ray:
            self._ray.shutdown()
