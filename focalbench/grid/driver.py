"""The driver: runs a grid's cells through an executor, records the grid, resumes it.

Finished cells are skipped and interrupted ones resumed (each cell's life is
:func:`focalbench.run_state.run_cell`); pruned cells are derived by
:func:`focalbench.prune.decide` the moment their source finishes. Everything is checked
(:mod:`focalbench.checks`) before the grid folder or any run folder exists.

``results/grids/<name>/grid.json`` records the study, its target table, and every cell (row,
key, config, outcome, error); it is rewritten after each finished cell. Each cell's outcome there
is derived from its run folder's state at the time of writing (:func:`_recorded`), so two
drivers of one grid never leave a stale record: the last to write tells the truth for every cell.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import os
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from focalbench import threads
from focalbench.checks import check_configs
from focalbench.errors import FocalbenchError
from focalbench.executors import (
    CellTask,
    ExecutorKind,
    LocalExecutor,
    RayExecutor,
    TrainFn,
    local_slots,
    probe_ray_address,
)
from focalbench.grid.display import GridProgress, eta_seconds
from focalbench.grid.planner import GridCell, GridPlan, plan
from focalbench.options import RunOptions
from focalbench.run_state import CellResult, Outcome, Status, run_folder, stored_summary
from focalbench.signals import stop_on_signals, stopping
from focalbench.store import (
    atomic_write_json,
    ensure_writable_dir,
    read_json,
    results_root,
    utc_now,
)
from focalbench.tracking import prepare_trackers

Executor = Any  # LocalExecutor, RayExecutor or focalbench.slurm.SlurmExecutor


@dataclass
class GridResult:
    name: str
    grid_dir: Path
    cells: list[GridCell]  # with this driver's own outcomes
    seconds: float
    # what grid.json records for each cell (its run folder's state when this driver ended)
    recorded: list[CellResult | None] = dataclasses.field(default_factory=list)
    stopped_by: int | None = None  # the signal that stopped the grid (its cells: interrupted)

    def counts(self) -> dict[str, int]:
        out = {o.value: 0 for o in Outcome}
        for cell in self.cells:
            if cell.result:
                out[cell.result.outcome.value] += 1
        return out

    def failures(self) -> list[dict[str, Any]]:
        return [
            {
                "row": c.row,
                "dataset": c.dataset,
                "seed": c.seed,
                "fold": c.fold,
                "key": c.config.key if c.config else None,
                "error": c.result.error,
                "previously_failed": c.result.previously_failed,
            }
            for c in self.cells
            if c.result and c.result.outcome is Outcome.failed
        ]

    def exit_code(self) -> int:
        """1 if a cell failed (here or, as recorded, in another driver), 3 if none failed but some
        cell is not done yet (another driver is still training it), 0 when every cell is done."""
        if self.failures() or any(r and r.outcome is Outcome.failed for r in self.recorded):
            return 1
        return 0 if all(r and r.done for r in self.recorded) else 3

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "grid_dir": str(self.grid_dir),
            "seconds": round(self.seconds, 3),
            "counts": self.counts(),
            "failures": self.failures(),
            "cells": [c.to_dict() for c in self.cells],
        }


def prepare(
    dataset: str | Any,
    *,
    study_flags: dict[str, Any] | None = None,
    threshold: float = 0.2,
    check_names: bool = True,
    options: RunOptions | None = None,
    **option_fields: Any,
) -> tuple[GridPlan, RunOptions]:
    """Plan the grid and check every input (``--dry-run`` stops here): nothing is written."""
    opts = RunOptions.of(options, **option_fields)
    if opts.data_dir is not None:  # before plan: a study reads an imported dataset's settings there
        os.environ["FOCALBENCH_DATA"] = str(Path(opts.data_dir).resolve())
    grid = plan(dataset, options=opts, **(study_flags or {}))
    if not threshold >= 0.0:  # found now, not when the first source run has finished
        raise FocalbenchError(f"--threshold {threshold} must be ≥ 0 (the paper uses 0.2)")
    opts.check()
    if ExecutorKind(opts.executor) is ExecutorKind.ray and opts.ray_address:
        probe_ray_address(opts.ray_address)
    if check_names:
        check_configs(
            (c.config for c in grid.cells if c.config is not None),
            None if opts.data_dir is None else str(opts.data_dir),
        )
    return grid, opts


def ablate(
    dataset: str | Any,
    *,
    attention: str | None = None,
    study: str | None = None,
    models: str | Any = None,
    losses: str | Any = None,
    study_file: str | os.PathLike | None = None,
    seeds: str | Any = None,
    folds: int | None = None,
    fold: str | int | Any = None,
    name: str | None = None,
    retry_failed: bool = False,
    threshold: float = 0.2,
    progress: bool = True,
    train_fn: TrainFn | None = None,
    options: RunOptions | None = None,
    **option_fields: Any,
) -> GridResult:
    """Run a study's grid; finished cells are skipped, interrupted ones resumed.

    ``options`` (:class:`~focalbench.options.RunOptions`), or its fields as keywords
    (``protocol``, ``epochs``, ``params``, ``device``, ``results``, ``data_dir``, ``executor``,
    ``gpus``, ``jobs_per_gpu``, ``jobs``, ``ray_address``, ``log``, ``mlflow_uri``), are those
    of ``train``; ``log`` mirrors every cell's run into the trackers (one MLflow run per cell).
    ``data_dir`` (the prepared datasets) reaches the cells as ``$FOCALBENCH_DATA``: worker
    processes and a local Ray instance inherit the driver's environment, and the Ray executor
    forwards the variable to the workers of a remote cluster.

    ``train_fn`` replaces :func:`focalbench.engine.train` inside each cell (tests of the
    executors; it decides itself what names mean, so they are not checked); it must be
    importable by the worker processes. Returns the grid's cells with their outcomes; the same
    is in ``<results>/grids/<name>/grid.json``.
    """
    flags = dict(
        attention=attention,
        study=study,
        models=models,
        losses=losses,
        study_file=study_file,
        seeds=seeds,
        folds=folds,
        fold=fold,
        name=name,
    )
    grid, opts = prepare(
        dataset,
        study_flags=flags,
        threshold=threshold,
        check_names=train_fn is None,
        options=options,
        **option_fields,
    )
    results_dir = ensure_writable_dir(results_root(opts.results))
    prepare_trackers(opts.log, results_dir, opts.mlflow_uri)
    gpu_list = opts.gpu_list
    jobs = opts.jobs
    if jobs is None:  # on CPU, what the cores allow (focalbench.threads); one GPU cell otherwise
        jobs = (
            threads.default_jobs(threads.cpu_cores(), len(grid.cells))
            if _on_cpu(opts.device)
            else 1
        )
    grid_dir = grids_dir(results_dir) / grid.name
    runner: Executor
    if ExecutorKind(opts.executor) is ExecutorKind.local:
        runner = LocalExecutor(local_slots(opts.device, gpu_list, opts.jobs_per_gpu, jobs))
    elif ExecutorKind(opts.executor) is ExecutorKind.slurm:
        from focalbench.slurm import SlurmExecutor

        runner = SlurmExecutor(opts, grid_dir)
    else:
        runner = RayExecutor(
            opts.ray_address,
            use_gpus=bool(gpu_list),
            jobs_per_gpu=opts.jobs_per_gpu,
            device=opts.device,
        )
    started = time.perf_counter()
    runner.start()
    try:
        _write_grid(grid_dir, grid, threshold, str(results_dir))
        with stop_on_signals():
            _drive(
                grid,
                runner,
                str(results_dir),
                retry_failed,
                threshold,
                train_fn,
                grid_dir,
                progress,
                opts.tracking,
            )
            stopped_by = stopping()
    finally:
        runner.close()
    recorded = _write_grid(grid_dir, grid, threshold, str(results_dir))
    seconds = time.perf_counter() - started
    return GridResult(grid.name, grid_dir, grid.cells, seconds, recorded, stopped_by)


def grids_dir(results: str | os.PathLike) -> Path:
    """``<results>/grids``, the folder holding a folder per grid (its grid.json)."""
    return Path(results) / "grids"


def study_run_keys(results: str | os.PathLike, study: str) -> set[str]:
    """The run keys of the cells that the grids of ``study`` under ``results`` planned or
    derived (their grid.json), with whatever seeds, datasets and parameters they were run;
    empty when no grid of that study was run there. A grid.json that cannot be read counts as
    none: the driver writes it atomically, so only a hand-edited one is ever unreadable."""
    keys: set[str] = set()
    for path in sorted(grids_dir(results).glob("*/grid.json")):
        try:
            grid = read_json(path)
        except (OSError, ValueError):
            continue
        if isinstance(grid, dict) and grid.get("study") == study:
            keys |= {
                c["key"] for c in grid.get("cells", []) if isinstance(c, dict) and c.get("key")
            }
    return keys


def _on_cpu(device: str) -> bool:
    """Whether cells on ``device`` train on the CPU (``auto``: whether torch sees no CUDA)."""
    if device == "auto":
        import torch

        return not torch.cuda.is_available()
    return device == "cpu"


def _write_grid(
    grid_dir: Path,
    grid: GridPlan,
    threshold: float,
    results: str,
    in_flight: set[int] = frozenset(),
) -> list[CellResult | None]:
    """Rewrite grid.json with each cell as its run folder stands now; returns what it recorded.

    The read-modify-write holds ``grid_dir/.lock`` so two drivers of one grid take turns; the
    previous file is read only for ``created`` and for how a cell that another driver finished
    was finished (trained or resumed, its seconds), which no run folder records.
    """
    path = grid_dir / "grid.json"
    with _grid_lock(grid_dir):
        previous = read_json(path) if path.exists() else {}
        earlier = {c.get("key"): c for c in previous.get("cells", []) if c.get("key")}
        recorded = [
            None
            if i in in_flight  # ours, still training
            else _recorded(cell, results, earlier.get(cell.config.key if cell.config else None))
            for i, cell in enumerate(grid.cells)
        ]
        atomic_write_json(
            path,
            {
                "name": grid.name,
                "study": grid.study,
                "table": grid.table.to_dict(),
                "prune_threshold": threshold,
                "created": previous.get("created") or utc_now(),
                "updated": utc_now(),
                "cells": [
                    dataclasses.replace(cell, result=result).to_dict()
                    for cell, result in zip(grid.cells, recorded, strict=True)
                ],
            },
        )
    return recorded


@contextlib.contextmanager
def _grid_lock(grid_dir: Path) -> Iterator[None]:
    """Exclusive ``flock`` on ``grid_dir/.lock`` for one rewrite of grid.json (blocking: the
    other driver holds it only while it writes)."""
    grid_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(grid_dir / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


_DONE = {o.value for o in (Outcome.trained, Outcome.resumed, Outcome.skipped)}


def _recorded(cell: GridCell, results: str, earlier: dict[str, Any] | None) -> CellResult | None:
    """What grid.json says of a cell not in flight here: its run folder's state now.

    done → this driver's outcome if it settled the cell as done, else the earlier record's
    (another driver trained it), else ``skipped``; not done and stopped by this driver's stop
    signal → interrupted, whatever its record says while its process unwinds; failed → failed
    with its error; running by a live owner (or one on another host that has not recorded a
    stop) → ``busy``; running with its owner gone → failed as interrupted (resumed by the next
    run); no status → not started (``None``). A pruned row not derived yet, and a cell whose
    record is being rewritten this instant, keep this driver's outcome.
    """
    own = cell.result
    if cell.config is None:
        return own
    folder = run_folder(results, cell.config.key)
    try:
        status = folder.status()
    except ValueError:
        return own
    key = cell.config.key
    if status is None:
        return own if own and own.outcome is Outcome.failed else None
    if own and own.outcome is Outcome.interrupted and status.state is not Status.done:
        # stopped by a signal in this driver: its process may still be unwinding (a Ray
        # worker even outlives its cancelled task), but it trains no more
        return own
    if status.state is Status.running:
        # an owner on another host (a Ray node) cannot be checked from here: taken as alive
        # unless its record says it stopped; a Slurm job can, wherever it runs (squeue)
        remote = status.host != socket.gethostname() and not status.slurm_job
        if (remote and not status.interrupted) or status.owner_alive():
            holder = f"Slurm job {status.slurm_job}" if status.slurm_job else None
            holder = holder or f"pid {status.pid} on {status.host}"
            return CellResult(key, Outcome.busy, error=f"being trained by {holder}")
        gone = f"interrupted; its owner (pid {status.pid}) is gone"
        return CellResult(key, Outcome.failed, error=f"{gone}; rerun the same command to resume")
    if status.state is Status.failed:
        if own and own.outcome is Outcome.failed:
            return own
        return CellResult(key, Outcome.failed, error=status.error)
    if own and own.done:
        return own
    if earlier and earlier.get("outcome") in _DONE:
        return CellResult(
            key, Outcome(earlier["outcome"]), earlier.get("seconds") or 0.0, earlier.get("error")
        )
    return CellResult(key, Outcome.skipped, summary=stored_summary(folder))


def _lost_to_the_stop(result: CellResult) -> bool:
    """A worker that died mid-cell while the grid stops (it was signalled twice: by the
    cluster and by the driver) was interrupted, not failed: its record says so already."""
    return result.outcome is Outcome.failed and str(result.error).startswith("interrupted;")


def _drive(
    grid: GridPlan,
    runner: Executor,
    results: str,
    retry_failed: bool,
    threshold: float,
    train_fn: TrainFn | None,
    grid_dir: Path,
    progress: bool,
    tracking: dict[str, Any],
) -> None:
    """Feed ready cells to the executor; derive pruned cells as their sources finish. A stop
    signal (:mod:`focalbench.signals`) ends the feeding and is passed to the running cells,
    which stop at their next step; the loop ends when they have reported."""
    from focalbench.engine.progress import PlainGridLog, output_is_terminal
    from focalbench.prune import decide, record

    cells = grid.cells
    ready = [i for i, c in enumerate(cells) if c.config is not None]
    dependents: dict[int, list[int]] = {}
    for i, c in enumerate(cells):
        if c.source is not None:
            dependents.setdefault(c.source, []).append(i)
    in_flight: set[int] = set()
    durations: list[float] = []
    # a log file or CI cannot redraw a live display: plain lines there (engine.progress)
    live = output_is_terminal()
    display = (
        (GridProgress if live else PlainGridLog)(grid, results, runner.capacity)
        if progress
        else None
    )
    forwarded = False
    try:
        while (ready and stopping() is None) or in_flight:
            if stopping() is not None and not forwarded:  # SIGINT/TERM/HUP: stop the cells
                runner.interrupt(stopping())
                forwarded = True
            while ready and runner.free > 0 and stopping() is None:
                i = ready.pop(0)
                runner.submit(
                    CellTask(
                        i, cells[i].config.to_dict(), results, retry_failed, train_fn, tracking
                    )
                )
                in_flight.add(i)
            if display:
                display.update(
                    in_flight,
                    runner.running(),
                    eta_seconds(durations, len(ready) + len(in_flight), runner.capacity),
                )
            for i, result in runner.poll(0.25):
                in_flight.discard(i)
                if stopping() is not None and _lost_to_the_stop(result):
                    result = replace(result, outcome=Outcome.interrupted)
                cells[i].result = result
                if result.outcome in (Outcome.trained, Outcome.resumed):
                    durations.append(result.seconds)
                for j in dependents.pop(i, []):
                    if cells[j].config is not None:  # a pruned cell that is this very cell
                        ready.append(j)
                    elif result.done:
                        try:
                            decision = decide(run_folder(results, result.key).path, threshold)
                            record(decision, results)
                        except FocalbenchError as exc:
                            cells[j].result = CellResult(
                                "", Outcome.failed, error=f"pruning failed: {exc}"
                            )
                            continue
                        cells[j].config, cells[j].note = decision.config, decision.note
                        cells[j].pruned_from = decision.source
                        ready.append(j)
                    else:
                        cells[j].result = CellResult(
                            "",
                            Outcome.blocked,
                            error=f"source cell {result.key} is {result.outcome.value}: {result.error}",
                        )
                _write_grid(grid_dir, grid, threshold, results, in_flight)
                if display:
                    display.advance(cells[i])
                    display.update(
                        in_flight,
                        runner.running(),
                        eta_seconds(durations, len(ready) + len(in_flight), runner.capacity),
                        force=True,
                    )
    finally:
        if display:
            display.stop()
