"""`focalbench ablate`: a paper's grid (or models × losses) in one resumable command."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from focalbench.cli._common import (
    DataDirOption,
    DeviceOption,
    JsonOption,
    ParamOption,
    ResultsOption,
    command,
    print_json,
)
from focalbench.executors import ExecutorKind
from focalbench.grid import Attention, Study, studies_help

_HELP = (
    "Run a study's grid of cells (network × loss × dataset × seed × fold), each a run folder "
    "keyed by its config: finished cells are skipped, interrupted ones resumed from last.pt, "
    "failed ones retried with --retry-failed. Cells train in parallel worker processes "
    "(--jobs N on CPU; --gpus 0,1 --jobs-per-gpu N to pack cells on GPUs) or on a Ray cluster "
    "(--executor ray).\n\n"
    + studies_help()
    + "\n\nGeneral form: --models a,b --losses x,y [--seeds 0,1,2] [--folds 5] [--protocol P].\n\n"
    "Example: focalbench ablate --dataset drive --attention se --protocol smoke --jobs 2"
)


@command(help=_HELP)
def ablate(
    dataset: str = typer.Option(..., "--dataset", help="Dataset(s), comma-separated. Example: --dataset drive,dsb2018"),
    attention: Optional[Attention] = typer.Option(None, "--attention", help="Paper 000 Table 3 (se) or 4 (ag), with pruning."),
    study: Optional[Study] = typer.Option(None, "--study", help="A paper's loss/architecture grid."),
    models: Optional[str] = typer.Option(None, "--models", help="General form: networks, comma-separated."),
    losses: Optional[str] = typer.Option(None, "--losses", help="General form: loss specs, comma-separated (quote them)."),
    seeds: str = typer.Option("0", "--seeds", help="Seeds, comma-separated. Example: --seeds 0,1,2"),
    folds: Optional[int] = typer.Option(None, "--folds", help="K-fold: train folds 0..K-1 (default: the study's; 5 for focal-tversky)."),
    protocol: Optional[str] = typer.Option(None, "--protocol", help="Training recipe for every cell (default: the study's paper; smoke = tiny CPU run)."),
    epochs: Optional[int] = typer.Option(None, "--epochs", help="Override the protocol's epoch count in every cell."),
    param: list[str] = ParamOption,
    device: str = DeviceOption,
    results: Optional[Path] = ResultsOption,
    data_dir: Optional[Path] = DataDirOption,
    executor: ExecutorKind = typer.Option(ExecutorKind.local, "--executor", help="local worker processes or a Ray cluster."),
    ray_address: Optional[str] = typer.Option(None, "--ray-address", help="Ray cluster address (default: RAY_ADDRESS or a local instance)."),
    gpus: Optional[str] = typer.Option(None, "--gpus", help="GPU indices to use, comma-separated. Example: --gpus 0,1"),
    jobs_per_gpu: int = typer.Option(1, "--jobs-per-gpu", help="Cells sharing one GPU at a time."),
    jobs: Optional[int] = typer.Option(None, "--jobs", help="Parallel cells without --gpus (default: one per CPU core on CPU, else 1)."),
    retry_failed: bool = typer.Option(False, "--retry-failed", help="Train cells that failed before again: from last.pt, or from scratch for one that diverged (NaN/inf loss)."),
    threshold: float = typer.Option(0.2, "--threshold", help="Pruning threshold τ: keep modules whose final focal weight > τ."),
    name: Optional[str] = typer.Option(None, "--name", help="Grid name under results/grids/ (default: study-datasets-protocol-hash)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the cells and their run keys; train nothing."),
    json_out: bool = JsonOption,
) -> None:
    from focalbench.grid import ablate as run_grid, plan

    spec = dict(attention=attention, study=study, models=models, losses=losses, seeds=seeds, folds=folds,
                protocol=protocol, epochs=epochs, params=param, name=name)
    if dry_run:
        grid = plan(dataset, **spec)
        cells = [c.to_dict() for c in grid.cells]
        if json_out:
            print_json({"name": grid.name, "study": grid.study, "table": grid.table, "cells": cells})
            return
        typer.echo(f"{grid.name}: {grid.table}, {len(cells)} cells")
        for c in cells:
            fold = "" if c["fold"] is None else f" fold {c['fold']}"
            typer.echo(f"  {c['row']:<40} {c['dataset']} seed {c['seed']}{fold}  {c['key'] or '(after pruning)'}")
        return
    result = run_grid(dataset, **spec, device=device, results=results, executor=executor, gpus=gpus,
                      jobs_per_gpu=jobs_per_gpu, jobs=jobs, ray_address=ray_address, retry_failed=retry_failed,
                      threshold=threshold, progress=not json_out, data_dir=data_dir)
    if json_out:
        print_json(result.to_dict())
    else:
        _print_summary(result)
    if result.failures():
        raise typer.Exit(1)


def _short(error: str | None, width: int = 60) -> str:
    """First line of an error, clipped for the table (the full text is printed below it)."""
    line = (error or "").splitlines()[0] if error else ""
    return line if len(line) <= width else line[: width - 1] + "…"


def _print_summary(result) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    table = Table(title=f"{result.name} — {result.grid_dir / 'grid.json'}")
    for column in ("row", "dataset", "seed", "fold", "outcome", "test DSC", "error"):
        table.add_column(column)
    for cell in result.cells:
        res = cell.result
        dsc = (res.summary.get("test") or {}).get("dsc") if res else None
        table.add_row(cell.row, cell.dataset, str(cell.seed), "" if cell.fold is None else str(cell.fold),
                      res.outcome.value if res else "not run", "" if dsc is None else f"{dsc:.4f}",
                      _short(res.error) if res else "")
    console.print(table)
    counts = result.counts()
    done = counts["trained"] + counts["resumed"]
    skipped = counts["skipped"] + counts["busy"] + counts["blocked"]
    console.print(f"done {done} (resumed {counts['resumed']}), skipped {skipped} "
                  f"(already done {counts['skipped']}, busy {counts['busy']}, blocked {counts['blocked']}), "
                  f"failed {counts['failed']} in {result.seconds:.0f}s")
    for failure in result.failures():
        console.print(f"[red]failed[/red] {failure['row']} · {failure['dataset']} · seed {failure['seed']}: {failure['error']}")
