"""The Slurm executor: each grid cell, or each pack of ``--jobs-per-gpu`` cells, is one Slurm
job; a grid's jobs are one job array (submitit).

It speaks the executor interface of :mod:`focalbench.executors`. ``submit`` buffers cells and
the next ``poll`` sends the buffer to Slurm as one job array; ``poll`` then asks ``squeue``
which of its jobs are still queued or running and reads the result of each job that left the
queue (the submitit result pickle, else the run folder's record). A pack of N cells is one job
of N Slurm tasks (``--ntasks-per-node=N``): ``srun`` starts one process per cell, each with
its own ``--slurm-cpus-per-task`` and Slurm's signals, all sharing the job's GPUs, so several
batch-size-1 cells fill one GPU as ``--gpus 0 --jobs-per-gpu N`` does locally. Every job runs
:func:`focalbench.run_state.run_cell` on its node, so the results folder must be a path every
node sees. Jobs, logs and pickles live in ``<results>/grids/<name>/slurm/``; ``jobs.json``
there maps each cell key to its job id, so a later ``ablate`` of the grid (after ``--detach``
or a lost driver) waits for the jobs still alive instead of submitting their cells again.

Liveness across nodes is the job's, not a pid's: a run trained in a Slurm job records the job
id (``RunStatus.slurm_job``) and counts as owned while ``squeue`` lists that job (a requeued
job is pending, hence still the owner). A preempted or requeued job gets SIGTERM, train stops
at a step keeping ``last.pt`` (:mod:`focalbench.signals`), and Slurm starts the job again,
which resumes from ``last.pt``; near ``--slurm-time`` the job requeues itself the same way
(:class:`SlurmCell`).
"""

from __future__ import annotations

import contextlib
import getpass
import math
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

from focalbench.config import RunConfig
from focalbench.errors import FocalbenchError
from focalbench.run_state import (
    CellResult,
    Outcome,
    Status,
    run_folder,
    settle_lost_cell,
    stored_summary,
)
from focalbench.store import atomic_write_json, read_json

MISSING = "--executor slurm needs submitit: pip install 'focalbench[slurm]'"
# squeue states of a job that has not ended (a requeued job is pending again).
_ENDED = {
    "BOOT_FAIL",
    "CANCELLED",
    "COMPLETED",
    "DEADLINE",
    "FAILED",
    "NODE_FAIL",
    "OUT_OF_MEMORY",
    "PREEMPTED",
    "TIMEOUT",
}
_TIME = re.compile(r"^(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?$")
_MEM = re.compile(r"^\d+[KMGT]?$", re.IGNORECASE)
_NAME = re.compile(r"^[A-Za-z0-9_.,:+-]+$")
_KEY = re.compile(r"^[a-z][a-z0-9-]*$")
SQUEUE_EVERY = 1.0  # seconds between two squeue calls of one driver
_last_answer: list[Any] = [-SQUEUE_EVERY, None]  # (monotonic time, alive_jobs()) of the last call


def time_minutes(value: str) -> int:
    """Slurm's ``--time`` forms (``MM``, ``MM:SS``, ``HH:MM:SS``, ``D-HH``, ``D-HH:MM``,
    ``D-HH:MM:SS``) in whole minutes, rounded up; ``ValueError`` for anything else."""
    match = _TIME.match(value.strip())
    if not match:
        raise ValueError(value)
    days, a, b, c = (int(x) if x is not None else None for x in match.groups())
    if days is not None:  # D-HH[:MM[:SS]]
        seconds = days * 86400 + a * 3600 + (b or 0) * 60 + (c or 0)
    elif c is not None:  # HH:MM:SS
        seconds = a * 3600 + b * 60 + c
    elif b is not None:  # MM:SS
        seconds = a * 60 + b
    else:  # MM
        seconds = a * 60
    if seconds <= 0:
        raise ValueError(value)
    return math.ceil(seconds / 60)


def parse_extra(pairs: tuple[str, ...]) -> dict[str, str]:
    """``--slurm-extra constraint=a100`` pairs as sbatch options (``--constraint=a100``)."""
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key = key.strip().lstrip("-")
        if not sep or not _KEY.match(key) or not value:
            raise FocalbenchError(
                f"--slurm-extra {pair!r} must be KEY=VALUE with an sbatch option as KEY, "
                "e.g. --slurm-extra constraint=a100"
            )
        out[key.replace("-", "_")] = value
    return out


def check_options(opts: Any) -> None:
    """Refuse a bad ``--slurm-*`` value, or one given without ``--executor slurm``."""
    given = {
        "--slurm-partition": opts.slurm_partition,
        "--slurm-time": opts.slurm_time,
        "--slurm-gpus-per-job": opts.slurm_gpus_per_job,
        "--slurm-cpus-per-task": opts.slurm_cpus_per_task,
        "--slurm-mem": opts.slurm_mem,
        "--slurm-account": opts.slurm_account,
        "--slurm-qos": opts.slurm_qos,
        "--slurm-extra": opts.slurm_extra or None,
        "--detach": opts.detach or None,
    }
    if opts.executor != "slurm":
        flag = next((f for f, v in given.items() if v is not None), None)
        if flag:
            raise FocalbenchError(f"{flag} applies to --executor slurm; add it or drop {flag}")
        return
    try:
        import submitit  # noqa: F401
    except ImportError:
        raise FocalbenchError(MISSING) from None
    if opts.slurm_time is not None:
        try:
            time_minutes(opts.slurm_time)
        except ValueError:
            raise FocalbenchError(
                f"--slurm-time {opts.slurm_time!r} is no Slurm time; use MM, HH:MM:SS or "
                "D-HH:MM, e.g. --slurm-time 2:00:00"
            ) from None
    if opts.slurm_gpus_per_job is not None and opts.slurm_gpus_per_job < 0:
        raise FocalbenchError(f"--slurm-gpus-per-job {opts.slurm_gpus_per_job} must be ≥ 0")
    if opts.slurm_cpus_per_task is not None and opts.slurm_cpus_per_task < 1:
        raise FocalbenchError(f"--slurm-cpus-per-task {opts.slurm_cpus_per_task} must be ≥ 1")
    if opts.slurm_mem is not None and not _MEM.match(opts.slurm_mem):
        raise FocalbenchError(
            f"--slurm-mem {opts.slurm_mem!r} must be a size like 16G or 8000M (sbatch --mem)"
        )
    for flag, value in (
        ("--slurm-partition", opts.slurm_partition),
        ("--slurm-account", opts.slurm_account),
        ("--slurm-qos", opts.slurm_qos),
    ):
        if value is not None and not _NAME.match(value):
            raise FocalbenchError(f"{flag} {value!r} must be a Slurm name (no spaces or quotes)")
    parse_extra(opts.slurm_extra)
    if opts.gpus:
        raise FocalbenchError("--gpus picks local GPUs; with Slurm use --slurm-gpus-per-job")


def current_job() -> str | None:
    """This process's Slurm job as squeue names it (``123`` or, in an array, ``123_4``)."""
    array, task = os.environ.get("SLURM_ARRAY_JOB_ID"), os.environ.get("SLURM_ARRAY_TASK_ID")
    if array and task:
        return f"{array}_{task}"
    return os.environ.get("SLURM_JOB_ID")


def alive_jobs(max_age: float = SQUEUE_EVERY) -> dict[str, str] | None:
    """Our jobs that have not ended, ``{job id: state}``; ``None`` when squeue cannot answer
    (no Slurm here, or its controller is down). An answer up to ``max_age`` seconds old is
    reused: rewriting grid.json asks about every running cell."""
    asked, answer = _last_answer
    if time.monotonic() - asked < max_age:
        return answer
    if shutil.which("squeue") is None:
        return None
    try:
        out = subprocess.run(
            ["squeue", "-h", "-r", "-u", getpass.getuser(), "-o", "%i %T"],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        ).stdout
    except (subprocess.SubprocessError, OSError):
        return None
    jobs = dict(line.split(maxsplit=1) for line in out.splitlines() if " " in line)
    _last_answer[:] = [time.monotonic(), {j: st for j, st in jobs.items() if st not in _ENDED}]
    return _last_answer[1]


def job_alive(job: str) -> bool:
    """Whether Slurm still runs or queues ``job`` (from a run's status record); a process of
    that very job is not its own owner (a requeued job resumes its cell)."""
    if job == current_job():
        return False
    alive = alive_jobs()
    return bool(alive) and job in alive


def _settled(task: Any, key: str) -> CellResult | None:
    """The result of a cell that needs no job: done already, or failed and not retried (as
    :func:`~focalbench.run_state.run_cell` decides it)."""
    folder = run_folder(task.results, key)
    try:
        status = folder.status()
    except ValueError:
        return None
    if status is None:
        return None
    if status.state is Status.done:
        return CellResult(key, Outcome.skipped, summary=stored_summary(folder))
    if status.state is Status.failed and not task.retry_failed and not status.interrupted:
        return CellResult(key, Outcome.failed, error=status.error, previously_failed=True)
    return None


class SlurmCell:
    """The function a job's Slurm task runs: the pack's cell of this task's rank, resumable.

    submitit asks Slurm for a USR2 90 s before ``--slurm-time`` ends; training then stops at
    the next step with its ``last.pt``, exactly as on a preemption's SIGTERM, and only then does
    the cell requeue its own job (``scontrol requeue``), which resumes the cell: no step is
    trained between the signal and the stop, so a cell never finishes behind a requeue that is
    under way. (submitit's own USR2 handler would exit mid-step, which train records as a
    failure.) Every task of a pack gets the signals and stops its own cell.
    """

    def __call__(self, pack: list[Any], device: str) -> tuple[int, CellResult]:
        import submitit

        from focalbench import threads

        signal.signal(signal.SIGUSR2, _stop_for_the_time_limit)
        cpus = os.environ.get("SLURM_CPUS_PER_TASK")  # the task's budget, as a local slot's
        if cpus:
            threads.limit_threads(int(cpus))
        else:
            threads.limit_worker_threads(device, len(pack))
        task = pack[submitit.JobEnvironment().global_rank]
        result = task.run(device)
        if _TIME_LIMIT_NEAR and result.outcome is Outcome.interrupted:
            _requeue_this_job()
        return task.task_id, result


_TIME_LIMIT_NEAR: list[int] = []  # the time limit's USR2, once this job's task has had it


def _stop_for_the_time_limit(signum: int, frame: Any) -> None:
    from focalbench.signals import ask_to_stop

    _TIME_LIMIT_NEAR.append(signum)
    ask_to_stop(signum)


def _requeue_this_job() -> None:
    """Requeue this task's job; its SIGTERM finds training already stopped (submitit's handler
    lets the task return its result). Each task of a pack asks; all but the first are refused."""
    job = current_job()
    if job:
        with contextlib.suppress(subprocess.SubprocessError, OSError):
            subprocess.run(
                ["scontrol", "requeue", job],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                timeout=60,
                check=False,
            )


class SlurmExecutor:
    """Each cell (or pack of ``--jobs-per-gpu`` cells) one Slurm job; a grid's jobs one job
    array; see the module docstring."""

    capacity = 100_000  # Slurm queues them all; the cluster decides what runs

    def __init__(self, opts: Any, grid_dir: Path) -> None:
        try:
            import submitit
        except ImportError:
            raise FocalbenchError(MISSING) from None
        self._submitit = submitit
        self.folder = Path(grid_dir) / "slurm"
        self.jobs_json = self.folder / "jobs.json"
        self.detach = opts.detach
        self.pack = opts.jobs_per_gpu  # cells per job
        gpus = opts.slurm_gpus_per_job or 0
        self.device = "cuda" if gpus else opts.device
        self._parameters: dict[str, Any] = {
            "job_name": f"focalbench-{Path(grid_dir).name}"[:64],
            "partition": opts.slurm_partition,
            "time": time_minutes(opts.slurm_time) if opts.slurm_time else None,  # minutes
            "gpus_per_node": gpus or None,
            "cpus_per_task": opts.slurm_cpus_per_task,
            "mem": opts.slurm_mem,
            "account": opts.slurm_account,
            "qos": opts.slurm_qos,
            "additional_parameters": parse_extra(opts.slurm_extra) or None,
        }
        self._buffer: list[Any] = []
        self._settled: list[tuple[int, CellResult]] = []
        self._jobs: dict[str, list[Any]] = {}  # job id -> its cells, in rank order
        self._alive: dict[str, str] = {}
        self._asked = 0.0
        self.submitted: list[str] = []  # job ids submitted by this driver

    def start(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        executor = self._submitit.SlurmExecutor(folder=self.folder / "%j", max_num_timeout=3)
        given = {k: v for k, v in self._parameters.items() if v is not None and k != "time"}
        # no --slurm-time: the partition's limit, not submitit's default of 5 minutes
        executor.update_parameters(**given, time=self._parameters["time"])
        self._executor = executor
        self._alive = alive_jobs(max_age=0) or {}
        self._asked = time.monotonic()

    @property
    def free(self) -> int:
        held = sum(len(pack) for pack in self._jobs.values())
        return self.capacity - held - len(self._buffer) - len(self._settled)

    def _recorded(self) -> dict[str, str]:
        try:
            return read_json(self.jobs_json)
        except (FileNotFoundError, ValueError):
            return {}

    def submit(self, task: Any) -> None:
        key = RunConfig.from_dict(task.config).key
        job = self._recorded().get(key)
        if job and job in self._alive:  # reattach: the job of an earlier driver still has it
            self._jobs.setdefault(job, []).append(task)
        elif settled := _settled(task, key):  # no job for a cell run_cell would not train
            self._settled.append((task.task_id, settled))
        else:
            self._buffer.append(task)

    def _flush(self) -> None:
        """Submit the buffered cells: the full packs as one job array, a last shorter pack as
        one more job (an array's jobs share their size)."""
        if not self._buffer:
            return
        tasks, self._buffer = self._buffer, []
        packs = [tasks[i : i + self.pack] for i in range(0, len(tasks), self.pack)]
        full = [p for p in packs if len(p) == self.pack]
        cell, jobs = SlurmCell(), []
        for group in (full, [p for p in packs if len(p) < self.pack]):
            if group:
                self._executor.update_parameters(ntasks_per_node=len(group[0]))
                with self._executor.batch():
                    jobs += [self._executor.submit(cell, pack, self.device) for pack in group]
        recorded = self._recorded()
        for job, pack in zip(jobs, full + packs[len(full) :], strict=True):
            self._jobs[job.job_id] = pack
            self._alive[job.job_id] = "PENDING"
            recorded.update({RunConfig.from_dict(t.config).key: job.job_id for t in pack})
            self.submitted.append(job.job_id)
        atomic_write_json(self.jobs_json, recorded)

    def running(self) -> dict[int, str]:
        return {
            task.task_id: f"slurm {job} {self._alive.get(job, '?').lower()}"
            for job, pack in self._jobs.items()
            for task in pack
        }

    def interrupt(self, signum: int) -> None:
        """Cancel our jobs: a running cell gets SIGTERM and stops at a step, keeping last.pt."""
        if self._jobs:
            with contextlib.suppress(subprocess.SubprocessError, OSError):
                subprocess.run(["scancel", *self._jobs], timeout=60, check=False)

    def poll(self, timeout: float) -> list[tuple[int, CellResult]]:
        self._flush()
        if self._settled:
            out, self._settled = self._settled, []
            return out
        if self.detach:  # the driver's part ends here; a later ablate reattaches
            out = [
                (
                    task.task_id,
                    CellResult(
                        RunConfig.from_dict(task.config).key,
                        Outcome.busy,
                        error=f"in Slurm job {job}; rerun the same ablate to wait for it",
                    ),
                )
                for job, pack in self._jobs.items()
                for task in pack
            ]
            self._jobs = {}
            return out
        wait = SQUEUE_EVERY - (time.monotonic() - self._asked)
        if wait > 0:
            time.sleep(min(wait, max(timeout, 0.05)))
            if time.monotonic() - self._asked < SQUEUE_EVERY:
                return []
        alive = alive_jobs(max_age=0)  # fresh: it must list the jobs submitted just now
        self._asked = time.monotonic()
        if alive is None:  # squeue did not answer: ask again later
            return []
        self._alive = alive
        out = []
        for job in [j for j in self._jobs if j not in alive]:
            out += self._outcomes(job, self._jobs.pop(job))
        return out

    def _outcomes(self, job_id: str, pack: list[Any]) -> list[tuple[int, CellResult]]:
        """The results of an ended job's cells: each Slurm task's result pickle, the cell of a
        rank read from the job's submission (a reattached driver numbers the cells anew)."""
        job = self._submitit.SlurmJob(folder=self.folder / "%j", job_id=job_id)
        try:
            submitted = job.submission().args[0]
        except (OSError, AssertionError, EOFError, AttributeError):  # lost with its folder
            submitted = []
        if len(submitted) > 1:
            job = self._submitit.SlurmJob(
                folder=self.folder / "%j", job_id=job_id, tasks=tuple(range(len(submitted)))
            )
        ranks = {RunConfig.from_dict(t.config).key: rank for rank, t in enumerate(submitted)}
        out = []
        for task in pack:
            key = RunConfig.from_dict(task.config).key
            sub = job.task(ranks.get(key, 0))
            log = sub.paths.stderr
            if key in ranks and sub.paths.result_pickle.exists():
                try:
                    out.append((task.task_id, sub.result()[1]))
                    continue
                except Exception as exc:  # the task raised outside run_cell (e.g. an import)
                    why = str(exc).strip().splitlines()[-1] if str(exc).strip() else repr(exc)
                    error = f"Slurm job {job_id} failed: {why} (log: {log})"
                    run_folder(task.results, key).record_failure(error)
                    out.append((task.task_id, CellResult(key, Outcome.failed, error=error)))
                    continue
            why = f"Slurm job {job_id} ended without a result (log: {log})"
            out.append((task.task_id, settle_lost_cell(task.results, key, why)))
        return out

    def close(self) -> None:
        if self.submitted and self.detach:
            print(
                f"submitted Slurm jobs {', '.join(self.submitted)}; logs in {self.folder}; "
                "rerun the same ablate to wait for them and collect their results"
            )
