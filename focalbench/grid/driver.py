"""The driver: runs a grid's cells through an executor, records the grid, resumes it.

Finished cells are skipped and interrupted ones resumed (each cell's life is
:func:`focalbench.run_state.run_cell`); pruned cells are derived by
:func:`focalbench.prune.decide` the moment their source finishes. Everything is checked
(:mod:`focalbench.checks`) before the grid folder or any run folder exists.

``results/grids/<name>/grid.json`` records the study, its target table, and every cell (row,
key, config, outcome, error); it is rewritten after each finished cell.
"""

from __future__ import annotations

import os
import time
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
)
from focalbench.grid.display import GridProgress, eta_seconds
from focalbench.grid.planner import GridCell, GridPlan, plan
from focalbench.options import RunOptions
from focalbench.run_state import CellResult, Outcome, run_folder
from focalbench.signals import stop_on_signals, stopping
from focalbench.store import (
    atomic_write_json,
    ensure_writable_dir,
    read_json,
    results_root,
    utc_now,
)

Executor = LocalExecutor | RayExecutor


@dataclass
class GridResult:
    name: str
    grid_dir: Path
    cells: list[GridCell]
    seconds: float
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
    ExecutorKind(opts.executor)
    opts.check()
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
    seeds: str | Any = (0,),
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
    ``gpus``, ``jobs_per_gpu``, ``jobs``, ``ray_address``), are those of ``train``.
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
    gpu_list = opts.gpu_list
    jobs = opts.jobs
    if jobs is None:  # on CPU, what the cores allow (focalbench.threads); one GPU cell otherwise
        jobs = (
            threads.default_jobs(threads.cpu_cores(), len(grid.cells))
            if _on_cpu(opts.device)
            else 1
        )
    runner: Executor
    if ExecutorKind(opts.executor) is ExecutorKind.local:
        runner = LocalExecutor(local_slots(opts.device, gpu_list, opts.jobs_per_gpu, jobs))
    else:
        runner = RayExecutor(
            opts.ray_address,
            use_gpus=bool(gpu_list),
            jobs_per_gpu=opts.jobs_per_gpu,
            device=opts.device,
        )
    grid_dir = results_dir / "grids" / grid.name
    started = time.perf_counter()
    runner.start()
    try:
        _write_grid(grid_dir, grid, threshold)
        with stop_on_signals():
            _drive(
                grid, runner, str(results_dir), retry_failed, threshold, train_fn, grid_dir,
                progress,
            )
            stopped_by = stopping()
    finally:
        runner.close()
    _write_grid(grid_dir, grid, threshold)
    return GridResult(grid.name, grid_dir, grid.cells, time.perf_counter() - started, stopped_by)


def _on_cpu(device: str) -> bool:
    """Whether cells on ``device`` train on the CPU (``auto``: whether torch sees no CUDA)."""
    if device == "auto":
        import torch

        return not torch.cuda.is_available()
    return device == "cpu"


def _write_grid(grid_dir: Path, grid: GridPlan, threshold: float) -> None:
    path = grid_dir / "grid.json"
    created = read_json(path).get("created") if path.exists() else utc_now()
    atomic_write_json(
        path,
        {
            "name": grid.name,
            "study": grid.study,
            "table": grid.table,
            "prune_threshold": threshold,
            "created": created,
            "updated": utc_now(),
            "cells": [c.to_dict() for c in grid.cells],
        },
    )


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
                    CellTask(i, cells[i].config.to_dict(), results, retry_failed, train_fn)
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
                _write_grid(grid_dir, grid, threshold)
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
