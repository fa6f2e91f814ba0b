"""`focalbench train`: one dataset × network × loss × protocol cell."""

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
from focalbench.config import RunConfig, split_params
from focalbench.protocols import PROTOCOLS

_PROTOCOL_HELP = (
    "Training recipe: "
    + "; ".join(f"{name} ({protocol.source})" for name, protocol in PROTOCOLS.items())
    + "."
)


@command()
def train(
    ctx: typer.Context,
    dataset: str = typer.Option(
        ..., "--dataset", help="Prepared dataset, e.g. drive or sample (see `focalbench datasets`)."
    ),
    model: str = typer.Option(..., "--model", help="Network, e.g. unet (see `focalbench models`)."),
    loss: str = typer.Option(
        ...,
        "--loss",
        help="Loss spec, e.g. dice, 'ufl(gamma=0.1)+fdpt(eps=0.1)' (see `focalbench losses`).",
    ),
    protocol: str = typer.Option("paper000", "--protocol", help=_PROTOCOL_HELP),
    seed: int = typer.Option(
        0, "--seed", help="Seed of initialisation, batch order and augmentation."
    ),
    fold: int | None = typer.Option(
        None, "--fold", help="Fold index for k-fold split rules (0-based).", show_default=False
    ),
    epochs: int | None = typer.Option(
        None, "--epochs", help="Maximum epochs (default: the protocol's).", show_default=False
    ),
    device: str = DeviceOption,
    results: Path | None = ResultsOption,
    data_dir: Path | None = DataDirOption,
    resume: bool = typer.Option(
        True,
        "--resume/--no-resume",
        help="Continue from last.pt (or return a finished cell's result); --no-resume starts over.",
    ),
    params: list[str] = ParamOption,
    json_out: bool = JsonOption,
    compile: bool = typer.Option(
        False, "--compile", help="torch.compile the network (CUDA-graph capture on CUDA)."
    ),
    log: list[str] = LogOption,
    mlflow_uri: str | None = MlflowUriOption,
) -> None:
    """Train and test one cell; results land in RESULTS/runs/<key>/.

    Example: focalbench train --dataset sample --model unet --loss dice --protocol smoke
    """
    from focalbench.engine import train as run_train
    from focalbench.options import RunOptions

    options = RunOptions.from_params(ctx.params)
    options.check()
    model_params, loss_params, overrides = split_params(params)
    config = RunConfig(
        dataset=dataset,
        model=model,
        loss=loss,
        protocol=protocol,
        seed=seed,
        fold=fold,
        epochs=epochs,
        model_params=model_params,
        loss_params=loss_params,
        overrides=overrides,
    )
    summary = run_train(
        config,
        results=results,
        device=device,
        resume=resume,
        progress=not json_out,
        compile=compile,
        data_dir=data_dir,
        **options.tracking,
    )
    if json_out:
        print_json(summary)
    else:
        _print_summary(summary)
    if summary["state"] != "done":
        raise typer.Exit(1)


def _print_summary(summary: dict) -> None:
    from focalbench.run_state import DIVERGED

    if summary["state"] != "done":
        error = summary["error"] or ""
        if error.startswith(DIVERGED):
            # a rerun returns this stored result (it would diverge again); say how to train anew
            line = f"run diverged: {error}; rerun with --no-resume to train it again from scratch"
        else:
            line = f"run failed: {error}"
        typer.echo(f"{line}\nrun folder: {summary['run_dir']}", err=True)
        return
    test = summary["test"]
    scores = "  ".join(f"{k} {v:.4f}" for k, v in test.items())
    typer.echo(
        f"test (per-image mean): {scores}\n"
        f"epochs {summary['epochs']}, best epoch {summary['best_epoch']}, "
        f"{summary['wall_seconds']:.1f} s on {summary['device']}\nrun folder: {summary['run_dir']}"
    )
