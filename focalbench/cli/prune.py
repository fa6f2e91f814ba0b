"""`focalbench prune`: keep the attention modules whose focal weight ended above τ."""

from __future__ import annotations

from pathlib import Path

import typer

from focalbench.cli._common import (
    DataDirOption,
    DeviceOption,
    JsonOption,
    LogOption,
    MlflowUriOption,
    ResultsOption,
    command,
    print_json,
)


@command()
def prune(
    run_dir: Path = typer.Argument(
        ...,
        help="Finished run folder of a Focal network trained with focal_init=0, e.g. results/runs/<key>.",
    ),
    threshold: float = typer.Option(
        0.2, "--threshold", help="Keep a module iff its final focal weight > τ (paper 000: 0.2)."
    ),
    retrain: bool = typer.Option(
        False, "--retrain", help="Train the pruned network (kept focal weights start at 1)."
    ),
    results: Path | None = ResultsOption,
    device: str = DeviceOption,
    data_dir: Path | None = DataDirOption,
    log: list[str] = LogOption,
    mlflow_uri: str | None = MlflowUriOption,
    json_out: bool = JsonOption,
) -> None:
    """Read a zero-initialised Focal run's final focal weights (history.csv), print which modules
    survive the paper-000 rule w > τ, and write the kept positions into a new config; with
    --retrain, train it. Removing every module gives the plain U-Net.

    Example: focalbench prune results/runs/drive-focal-use-net-ufl_gamma=0.1-s0-1a2b3c4d5e --retrain
    """
    from focalbench.prune import prune as run_prune

    out = run_prune(
        run_dir,
        threshold=threshold,
        retrain=retrain,
        results=results,
        device=device,
        progress=not json_out,
        data_dir=data_dir,
        log=tuple(log),
        mlflow_uri=mlflow_uri,
    )
    if json_out:
        print_json(out)
        return
    from rich.console import Console
    from rich.table import Table

    console = Console()
    table = Table(title=f"focal weights of {out['pruned_from']} (τ = {threshold:g})")
    for column in ("position", "type", "final weight", ""):
        table.add_column(column)
    for w in out["weights"]:
        table.add_row(
            str(w["position"]), w["type"], f"{w['weight']:.4f}", "kept" if w["kept"] else "removed"
        )
    console.print(table)
    console.print(f"{out['note']} → {out['config']['model']} {out['config']['model_params']}")
    console.print(f"pruned run: {out['key']}" + ("" if retrain else "  (train it with --retrain)"))
    if out["run"]:
        test = out["run"].get("test") or {}
        console.print(
            f"retrained: {out['run'].get('state')}, test DSC {test.get('dsc', float('nan')):.4f}"
        )
