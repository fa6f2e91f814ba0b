"""`focalbench ablate`: a paper's grid (or models × losses) in one resumable command."""

from __future__ import annotations

from pathlib import Path

import typer

from focalbench.cli._common import (
    DataDirOption,
    DeviceOption,
    JsonOption,
    LogOption,
    MlflowUriOption,
    ParamOption,
    ResultsOption,
    command,
    print_json,
)
from focalbench.executors import ExecutorKind
from focalbench.grid.studies import AttentionStudy, StudyName, studies_help

_HELP = (
    "Run a study's grid of cells (network × loss × dataset × seed × fold), each a run folder "
    "keyed by its config: finished cells are skipped, interrupted ones resumed from last.pt, "
    "failed ones retried with --retry-failed. Cells train in parallel worker processes "
    "(--jobs N on CPU; --gpus 0,1 --jobs-per-gpu N to pack cells on GPUs) or on a Ray cluster "
    "(--executor ray), or as Slurm jobs (--executor slurm).\n\n"
    + studies_help()
    + "\n\nGeneral form: --models a,b --losses x,y [--seeds 0,1,2] [--folds 5] [--protocol P].\n\n"
    "Example: focalbench ablate --dataset drive --attention se --protocol smoke --jobs 2"
)


@command(help=_HELP)
def ablate(
    ctx: typer.Context,
    dataset: str | None = typer.Option(
        None,
        "--dataset",
        help="Dataset(s), comma-separated (a study file may name its own). Example: --dataset drive,dsb2018",
    ),
    attention: AttentionStudy | None = typer.Option(
        None, "--attention", help="Paper 000 Table 3 (se) or 4 (ag), with pruning."
    ),
    study: StudyName | None = typer.Option(
        None, "--study", help="A paper's loss/architecture grid."
    ),
    study_file: Path | None = typer.Option(
        None,
        "--study-file",
        help="A study written as TOML (rows, sweeps, table; docs/ablate.md § Study files).",
    ),
    print_study_file: bool = typer.Option(
        False,
        "--print-study-file",
        help="Print the chosen study for --dataset as a study file; train nothing.",
    ),
    models: str | None = typer.Option(
        None, "--models", help="General form: networks, comma-separated."
    ),
    losses: str | None = typer.Option(
        None, "--losses", help="General form: loss specs, comma-separated (quote them)."
    ),
    seeds: str | None = typer.Option(
        None, "--seeds", help="Seeds, comma-separated (default 0). Example: --seeds 0,1,2"
    ),
    folds: int | None = typer.Option(
        None,
        "--folds",
        help="K-fold: train folds 0..K-1 (default: the study's; 5 for focal-tversky).",
    ),
    fold: str | None = typer.Option(
        None,
        "--fold",
        help="Train only these folds of a k-fold study, comma-separated. Example: --fold 0 or --fold 0,2",
    ),
    protocol: str | None = typer.Option(
        None,
        "--protocol",
        help="Training recipe for every cell (default: the study's paper; smoke = tiny CPU run).",
    ),
    epochs: int | None = typer.Option(
        None, "--epochs", help="Override the protocol's epoch count in every cell."
    ),
    params: list[str] = ParamOption,
    device: str = DeviceOption,
    results: Path | None = ResultsOption,
    data_dir: Path | None = DataDirOption,
    executor: ExecutorKind = typer.Option(
        ExecutorKind.local,
        "--executor",
        help="local worker processes, a Ray cluster, or Slurm jobs (one per cell, "
        "a job array per grid; --slurm-* flags).",
    ),
    ray_address: str | None = typer.Option(
        None,
        "--ray-address",
        help="Ray cluster address (default: RAY_ADDRESS or a local instance).",
    ),
    slurm_partition: str | None = typer.Option(
        None, "--slurm-partition", help="Slurm: the partition of every job (sbatch --partition)."
    ),
    slurm_time: str | None = typer.Option(
        None,
        "--slurm-time",
        help="Slurm: time limit of one job (sbatch --time), e.g. 2:00:00; near it the job "
        "checkpoints and is requeued.",
    ),
    slurm_gpus_per_job: int | None = typer.Option(
        None, "--slurm-gpus-per-job", help="Slurm: GPUs of one job (sbatch --gpus-per-node)."
    ),
    slurm_cpus_per_task: int | None = typer.Option(
        None,
        "--slurm-cpus-per-task",
        help="Slurm: CPUs of each cell's task (sbatch --cpus-per-task).",
    ),
    slurm_mem: str | None = typer.Option(
        None, "--slurm-mem", help="Slurm: memory of one job (sbatch --mem), e.g. 16G."
    ),
    slurm_account: str | None = typer.Option(
        None, "--slurm-account", help="Slurm: account charged (sbatch --account)."
    ),
    slurm_qos: str | None = typer.Option(None, "--slurm-qos", help="Slurm: sbatch --qos."),
    slurm_extra: list[str] = typer.Option(
        [],
        "--slurm-extra",
        help="Slurm: any other sbatch option as KEY=VALUE, repeatable. "
        "Example: --slurm-extra constraint=a100",
    ),
    detach: bool = typer.Option(
        False,
        "--detach",
        help="Slurm: exit once the jobs are submitted; the same ablate later reattaches.",
    ),
    gpus: str | None = typer.Option(
        None, "--gpus", help="GPU indices to use, comma-separated. Example: --gpus 0,1"
    ),
    jobs_per_gpu: int = typer.Option(
        1,
        "--jobs-per-gpu",
        help="Cells sharing one GPU at a time; with --executor slurm, cells per job.",
    ),
    jobs: int | None = typer.Option(
        None,
        "--jobs",
        help="Parallel cells without --gpus (default: one per CPU core on CPU, else 1).",
    ),
    retry_failed: bool = typer.Option(
        False,
        "--retry-failed",
        help="Train cells that failed before again: from last.pt, or from scratch for one that diverged (NaN/inf loss).",
    ),
    threshold: float = typer.Option(
        0.2, "--threshold", help="Pruning threshold τ: keep modules whose final focal weight > τ."
    ),
    name: str | None = typer.Option(
        None,
        "--name",
        help="Grid name under results/grids/ (default: study-datasets-protocol-hash).",
    ),
    dry_run: bool = typer.Option(
        False,
        "--dry-run",
        help="Check every input, then print the cells and their run keys; train nothing.",
    ),
    claims: bool = typer.Option(
        False,
        "--claims",
        help="After the grid, print the verdicts of the papers' claims its runs can judge "
        "(as report --claims). Example: --study focal-tversky --dataset bus --claims",
    ),
    log: list[str] = LogOption,
    mlflow_uri: str | None = MlflowUriOption,
    json_out: bool = JsonOption,
) -> None:
    from focalbench.grid import ablate as run_grid
    from focalbench.grid import prepare
    from focalbench.grid.display import print_plan, print_summary
    from focalbench.options import RunOptions

    options = RunOptions.from_params(ctx.params)
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
    if print_study_file:
        from focalbench.grid.planner import choose_study
        from focalbench.grid.study_file import dump_study

        chosen = choose_study(attention, study, models, losses, study_file)
        typer.echo(dump_study(chosen, dataset), nl=False)
        return
    if dry_run:
        grid, _ = prepare(dataset, study_flags=flags, threshold=threshold, options=options)
        if json_out:
            print_json(
                {
                    "name": grid.name,
                    "study": grid.study,
                    "table": grid.table.to_dict(),
                    "cells": [c.to_dict() for c in grid.cells],
                }
            )
        else:
            print_plan(grid)
        return
    result = run_grid(
        dataset,
        **flags,
        retry_failed=retry_failed,
        threshold=threshold,
        progress=not json_out,
        options=options,
    )
    if json_out:
        print_json(result.to_dict())
    else:
        print_summary(result)
    if claims:
        from focalbench.report.claim_report import grid_verdicts

        typer.echo(grid_verdicts(result.cells, options.results))
    if result.stopped_by is not None:  # 128 + n, as train: its cells resume on the next run
        raise typer.Exit(128 + result.stopped_by)
    if result.exit_code():  # docs/ablate.md: 1 a cell failed, 3 another driver still trains one
        raise typer.Exit(result.exit_code())
