"""How grid cells are dispatched: a local pool of worker processes, or a Ray cluster.

Every executor runs :func:`focalbench.run_state.run_cell` (one cell's life: lock, resume,
failure record) on the device of its slot, and speaks one interface to the grid driver:
``start()``; ``capacity``; ``free``; ``submit(task)``; ``poll(timeout) -> [(task id,
CellResult)]``; ``running() -> {task id: device}``; ``interrupt(signum)``; ``close()``.

:class:`LocalExecutor` — a pool of spawned worker processes, one per slot, each bound to one
device (``--gpus 0,1 --jobs-per-gpu 2`` gives the slots cuda:0, cuda:0, cuda:1, cuda:1;
``--jobs N`` gives N CPU slots); :class:`RayExecutor` — one Ray task per cell asking for
``1/jobs_per_gpu`` of a GPU. Both share the results layout of :mod:`focalbench.run_state`.
A new executor is one more class with this interface and a member of :class:`ExecutorKind`,
like :class:`focalbench.slurm.SlurmExecutor` (one Slurm job per cell, in its own module).
"""

from __future__ import annotations

import contextlib
import multiprocessing
import multiprocessing.connection
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from enum import Enum
from typing import Any

from focalbench import threads
from focalbench.config import RunConfig
from focalbench.errors import FocalbenchError
from focalbench.run_state import CellResult, Outcome, run_cell, run_folder, settle_lost_cell
from focalbench.signals import STOP_SIGNALS

TrainFn = Callable[..., dict]


@dataclass(frozen=True)
class CellTask:
    """One cell as an executor carries it: plain data, so it crosses process, Ray and Slurm
    boundaries. ``attempt`` counts submissions (a cell lost with its Ray node is resubmitted);
    ``lock_wait`` is how long its :func:`run_cell` waits for a lost attempt's lock."""

    task_id: int
    config: dict[str, Any]
    results: str
    retry_failed: bool
    train_fn: TrainFn | None = None
    tracking: dict[str, Any] = field(default_factory=dict)  # train's log / mlflow_uri
    attempt: int = 1
    lock_wait: float = 0.0

    def run(self, device: str) -> CellResult:
        """The cell's life (:func:`run_cell`) in this process, on ``device``."""
        return run_cell(
            self.config,
            self.results,
            device,
            self.retry_failed,
            self.train_fn,
            self.tracking,
            self.lock_wait,
        )


class ExecutorKind(str, Enum):
    local = "local"
    ray = "ray"
    slurm = "slurm"  # focalbench.slurm.SlurmExecutor


def local_slots(
    device: str = "auto", gpus: list[int] | None = None, jobs_per_gpu: int = 1, jobs: int = 1
) -> list[str]:
    """Devices of the local pool's worker slots.

    ``gpus=[0, 1], jobs_per_gpu=2`` → ``["cuda:0", "cuda:0", "cuda:1", "cuda:1"]`` (several
    batch-size-1 cells share a GPU); no ``gpus`` → ``jobs`` slots on ``device``.
    """
    if jobs_per_gpu < 1 or jobs < 1:
        raise FocalbenchError("--jobs and --jobs-per-gpu must be ≥ 1")
    if gpus:
        if device not in ("auto", "cuda"):
            raise FocalbenchError(
                f"--gpus picks the devices; drop --device {device} (or drop --gpus)"
            )
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


def _deaf(signum: int, frame: Any) -> None:
    """A worker's handler between cells: a stop then has nothing to stop."""


def _slot_main(device: str, channel: Any, parent_pid: int, slots: int) -> None:
    _die_with_parent(parent_pid)
    # A terminal's Ctrl-C goes to its foreground process group: out of it, a worker hears a
    # stop only from the driver, once (a second signal would make train exit without its
    # record), and between cells not at all (train installs its handlers for a cell only).
    os.setpgrp()
    for signum in STOP_SIGNALS:
        signal.signal(signum, _deaf)  # not SIG_IGN, which train keeps for SIGHUP (nohup)
    threads.limit_worker_threads(device, slots)  # before any network is built
    while True:
        try:
            task = channel.recv()
        except EOFError:  # the driver is gone
            task = None
        if task is None:
            # Skip the interpreter's teardown (torch's takes seconds); a pipe send is already written.
            os._exit(0)
        channel.send((task.task_id, task.run(device)))


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
        proc = self._ctx.Process(
            target=_slot_main,
            args=(self.slots[slot], theirs, os.getpid(), self.capacity),
            daemon=True,
        )
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

    def interrupt(self, signum: int) -> None:
        """Pass ``signum`` to every busy worker: its cell stops at the next step and reports
        itself interrupted (:mod:`focalbench.signals`)."""
        for slot in self._busy:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self._procs[slot].pid, signum)

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
            if (
                slot in self._busy
            ):  # it died mid-cell: that cell failed, unless it had just finished
                task_id, task = self._busy.pop(slot)
                key = RunConfig.from_dict(task.config).key
                why = f"worker process died (exit code {proc.exitcode}) while training"
                out.append((task_id, settle_lost_cell(task.results, key, why)))
            self._spawn(slot)  # idle or not, a dead slot must not receive the next cell
        return out

    def close(self) -> None:
        for proc, channel in zip(self._procs, self._channels, strict=False):
            if channel is not None and proc.is_alive():
                with contextlib.suppress(OSError):
                    channel.send(None)
        for proc, channel in zip(self._procs, self._channels, strict=False):
            if proc is not None:
                proc.join(timeout=10)
                if proc.is_alive():
                    proc.kill()
                channel.close()


def _ray_cell(task: CellTask, device: str) -> tuple[int, CellResult]:
    return task.task_id, task.run(device)


# Ray's errors for a task lost with its node or worker process (resubmitted); any other error
# of a task is its cell's failure. Names, as Ray is imported only when it is used.
_LOST_TO_CLUSTER = ("NodeDiedError", "WorkerCrashedError", "ObjectLostError")
RAY_ATTEMPTS = 4  # the first submission and up to 3 resubmissions after a lost node or worker
# How long a resubmitted cell waits for its lost attempt's lock: the dead node's worker lets
# go within seconds of its raylet's death; an NFS lock lease runs about 90 s.
LOST_LOCK_WAIT = 120.0
# How long a stopping driver waits for a cancelled task to let go of its cell: it stops at its
# next training step, well within this.
CANCEL_WAIT = 10.0


def probe_ray_address(address: str) -> None:
    """Refuse an address nothing listens at before any work: Ray itself retries its GCS for
    ten minutes (20 tries of 30 s) before it gives up on a wrong ``--ray-address``."""
    import socket

    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        return  # "auto", or a form Ray resolves itself
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=5).close()
    except OSError as exc:
        raise FocalbenchError(
            f"cannot reach the Ray cluster at {address!r} ({exc.strerror or exc}); check"
            " --ray-address (the head node's HOST:PORT, by default port 6379)"
        ) from None


class RayExecutor:
    """One Ray task per cell; with GPUs each task asks for ``1/jobs_per_gpu`` of one.

    Ray sets ``CUDA_VISIBLE_DEVICES`` for a task holding a GPU share, so the task trains on
    ``cuda`` (its visible GPU 0). The results folder must be a path every node sees (a shared
    filesystem); cells lock and resume there exactly as locally.

    A task lost with its node or its worker process (``NodeDiedError``, ``WorkerCrashedError``)
    is resubmitted by this executor, not by Ray (``max_retries=0``), so that it is said on
    stderr and the new attempt waits for the lost one's lock (:data:`LOST_LOCK_WAIT`) before it
    resumes the cell from ``last.pt`` wherever Ray places it: no epoch is lost or trained
    twice. After :data:`RAY_ATTEMPTS` submissions the cell is settled as interrupted, and the
    next run of the grid resumes it. A task cancelled by a stop signal is interrupted.
    """

    def __init__(
        self,
        address: str | None = None,
        use_gpus: bool = False,
        jobs_per_gpu: int = 1,
        device: str = "auto",
    ) -> None:
        try:
            import ray
        except ImportError:
            raise FocalbenchError(
                "--executor ray needs Ray: pip install 'focalbench[ray]'"
            ) from None
        self._ray = ray
        self.address = address
        self.use_gpus = use_gpus
        self.jobs_per_gpu = jobs_per_gpu
        self.device = "cuda" if use_gpus else device
        self._refs: dict[Any, CellTask] = {}
        self._owns_ray = False
        self._cancelled = False
        self.capacity = 0

    def start(self) -> None:
        ray = self._ray
        if not ray.is_initialized():
            try:
                forwarded = {k: os.environ[k] for k in ("FOCALBENCH_DATA",) if k in os.environ}
                ray.init(
                    address=self.address,
                    include_dashboard=False,
                    log_to_driver=False,
                    runtime_env={"env_vars": forwarded} if forwarded else None,
                )
            except ConnectionError as exc:
                raise FocalbenchError(
                    f"cannot reach the Ray cluster at {self.address!r} ({exc}); check"
                    " --ray-address, and for a cluster with token authentication set"
                    " RAY_AUTH_MODE=token and its token (RAY_AUTH_TOKEN or ~/.ray/auth_token)"
                ) from None
            self._owns_ray = True
        options: dict[str, Any] = {"max_retries": 0, "num_cpus": 1}
        if self.use_gpus:
            options["num_gpus"] = 1 / self.jobs_per_gpu
        self._remote = ray.remote(**options)(_ray_cell)
        self._measure_capacity()

    def _measure_capacity(self) -> None:
        """Keep only as many tasks in flight as the cluster can run now, so the progress
        display's "running" lines are true and a rerun's order follows the plan; measured again
        when a node is lost."""
        resources = self._ray.cluster_resources()
        per_cell = 1 / self.jobs_per_gpu if self.use_gpus else 1.0
        pool = resources.get("GPU", 0) if self.use_gpus else resources.get("CPU", 1)
        self.capacity = max(1, int(pool / per_cell))

    @property
    def free(self) -> int:
        return self.capacity - len(self._refs)

    def submit(self, task: CellTask) -> None:
        self._refs[self._remote.remote(task, self.device)] = task

    def running(self) -> dict[int, str]:
        return {task.task_id: "ray" for task in self._refs.values()}

    def interrupt(self, signum: int) -> None:
        """Cancel every task in flight (Ray raises KeyboardInterrupt inside each, which train
        takes as a stop at its next step)."""
        self._cancelled = True
        for ref in self._refs:
            self._ray.cancel(ref)

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
            except Exception as exc:  # run_cell itself never raises: the task did not finish
                if result := self._settle(task, exc):
                    out.append((task.task_id, result))
        return out

    def _settle(self, task: CellTask, exc: Exception) -> CellResult | None:
        """The result of a task that raised ``exc``, or ``None`` when it was resubmitted."""
        key = RunConfig.from_dict(task.config).key
        reason = f"{type(exc).__name__}: {exc}".splitlines()[0]
        if isinstance(exc, self._ray.exceptions.TaskCancelledError) or self._cancelled:
            folder = run_folder(task.results, key)
            # Ray may report the cancel before the task has unwound: its last record must not
            # land after ours, so wait (a while) for it to let go of the cell; a task cancelled
            # in the queue never began (no folder)
            begun = folder.path.exists()
            with folder.lock(CANCEL_WAIT) if begun else contextlib.nullcontext():
                return settle_lost_cell(task.results, key, "its Ray task was cancelled")
        if not isinstance(exc, tuple(getattr(self._ray.exceptions, n) for n in _LOST_TO_CLUSTER)):
            error = f"Ray task died: {reason}"
            run_folder(task.results, key).record_failure(error)
            return CellResult(key, Outcome.failed, error=error)
        if task.attempt >= RAY_ATTEMPTS:
            return settle_lost_cell(
                task.results, key, f"lost to the Ray cluster {task.attempt} times ({reason})"
            )
        self._measure_capacity()
        again = replace(task, attempt=task.attempt + 1, lock_wait=LOST_LOCK_WAIT)
        print(
            f"focalbench: cell {key} lost with its Ray node or worker ({type(exc).__name__});"
            f" resubmitted (attempt {again.attempt} of {RAY_ATTEMPTS}), it resumes from last.pt",
            file=sys.stderr,
            flush=True,
        )
        self.submit(again)
        return None

    def close(self) -> None:
        if self._owns_ray:
            self._ray.shutdown()
