"""`focalbench export`: a trained run's network as one TorchScript or ONNX file + JSON sidecar."""

from __future__ import annotations

from pathlib import Path

import typer

from focalbench.cli._common import JsonOption, command, print_json
from focalbench.protocols import Checkpoint


@command()
def export(
    run_dir: Path = typer.Argument(
        ..., help="Run folder of a finished train, e.g. results/runs/<key>."
    ),
    # plain text, checked by the API: the command list must not import torch to show --help
    fmt: str = typer.Option(
        "torchscript", "--format", help="torchscript or onnx (needs the onnx extra)."
    ),
    out: Path | None = typer.Option(
        None,
        "--out",
        help="File to write (default: RUN_DIR/model.pt or model.onnx).",
        show_default=False,
    ),
    checkpoint: Checkpoint = typer.Option(
        Checkpoint.best, "--checkpoint", help="Weights: best (lowest val loss) or last."
    ),
    json_out: bool = JsonOption,
) -> None:
    """Write normalisation + network + sigmoid as one file that loads without focalbench (input:
    float32 N×C×H×W pixel values 0..255; output: probability), and a .json sidecar beside it.

    Example: focalbench export results/runs/<key> --format onnx --out unet.onnx
    """
    from focalbench.exporter import export as run_export

    result = run_export(run_dir, fmt, out, checkpoint)
    if json_out:
        print_json(result)
        return
    typer.echo(
        f"{result['format']}: {result['path']} "
        f"(input {result['channels']}x{result['input_size'][0]}x"
        f"{result['input_size'][1]}, max |difference| vs torch {result['max_abs_diff']:.2e})"
    )
    typer.echo(f"sidecar: {result['sidecar']}")
