"""`focalbench predict`: a trained run's network on new images, masks at native size."""

from __future__ import annotations

from pathlib import Path

import typer

from focalbench.cli._common import DeviceOption, JsonOption, command, print_json
from focalbench.protocols import Checkpoint


@command()
def predict(
    run_dir: Path = typer.Argument(
        ..., help="Run folder of a finished train, e.g. results/runs/<key>."
    ),
    inputs: list[str] = typer.Argument(
        ..., help="Image files, folders or globs (quoted), e.g. 'new/*.png'."
    ),
    out: Path = typer.Option(..., "--out", help="Folder for STEM.png masks (0/255)."),
    probabilities: bool = typer.Option(
        False, "--probabilities", help="Also write STEM_prob.png, p as 16-bit."
    ),
    overlay: bool = typer.Option(
        False, "--overlay", help="Also write STEM_overlay.png, foreground tinted red."
    ),
    tta: bool = typer.Option(False, "--tta", help="Average over horizontal/vertical flips."),
    checkpoint: Checkpoint = typer.Option(
        Checkpoint.best, "--checkpoint", help="Weights: best (lowest val loss) or last."
    ),
    batch_size: int = typer.Option(8, "--batch-size", help="Images per forward pass."),
    device: str = DeviceOption,
    json_out: bool = JsonOption,
) -> None:
    """Segment new images with a trained run, preprocessed exactly as the run was trained (size,
    channels, normalisation); masks are written at each image's native size.

    Example: focalbench predict results/runs/<key> scans/ --out masks/ --overlay
    """
    from focalbench.prediction import predict as run_predict

    result = run_predict(
        run_dir,
        inputs,
        out,
        probabilities=probabilities,
        overlay=overlay,
        tta=tta,
        checkpoint=checkpoint,
        device=device,
        batch_size=batch_size,
        progress=not json_out,
    )
    if json_out:
        print_json(result)
        return
    typer.echo(
        f"{len(result['written'])} mask(s) written to {result['out']} "
        f"({Path(result['weights']).name} of {result['run']})"
    )
    if result["skipped"]:
        typer.echo(
            f"skipped {len(result['skipped'])} unreadable file(s): "
            + "; ".join(f"{s['input']}: {s['reason']}" for s in result["skipped"][:5]),
            err=True,
        )
