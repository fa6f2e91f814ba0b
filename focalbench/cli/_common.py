"""What every command shares: the Typer app, one-line user errors, and common options."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from typing import Any

import typer

from focalbench.errors import FocalbenchError

app = typer.Typer(
    name="focalbench",
    help=(
        "Benchmark losses, attention modules and their positions for 2D medical image "
        "segmentation.\n\nExample: focalbench fetch drive --from ~/Downloads/DRIVE && "
        "focalbench train --dataset drive --model unet --loss dice"
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
    rich_markup_mode="rich",
)


def command(name: str | None = None, **kwargs: Any) -> Callable[[Callable], Callable]:
    """Register ``fn`` as a subcommand whose user errors print one line and exit 2.

    A :class:`FocalbenchError` is the user's mistake: its message is printed as
    ``error: <message>`` without a traceback. Ctrl-C exits 130 (SIGTERM 143, SIGHUP 129;
    :mod:`focalbench.signals`) with a hint to resume. Any other
    exception is a bug and keeps its traceback.
    """

    def decorate(fn: Callable) -> Callable:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kw: Any) -> Any:
            try:
                return fn(*args, **kw)
            except FocalbenchError as exc:
                typer.echo(f"error: {exc}", err=True)
                raise typer.Exit(2) from None
            except KeyboardInterrupt as exc:  # 128 + the signal's number, as a shell reports it
                typer.echo(
                    "interrupted: finished work is saved; rerun the same command to resume",
                    err=True,
                )
                raise typer.Exit(getattr(exc, "exit_code", 130)) from None

        app.command(name, **kwargs)(wrapper)
        return fn

    return decorate


def print_json(obj: Any) -> None:
    """Print ``obj`` as JSON on stdout (numpy values and paths included)."""
    from focalbench.store import _json_default

    typer.echo(json.dumps(obj, indent=2, default=_json_default))


DataDirOption = typer.Option(
    None,
    "--data-dir",
    help="Folder of prepared datasets (default: $FOCALBENCH_DATA or ./data).",
    show_default=False,
)
ResultsOption = typer.Option(
    None,
    "--results",
    help="Results folder holding runs/, grids/ and reports/ (default: $FOCALBENCH_RESULTS or ./results).",
    show_default=False,
)
DeviceOption = typer.Option(
    "auto",
    "--device",
    help="auto (CUDA when present, else CPU), cpu, cuda or cuda:N. Example: --device cuda:1",
)
ParamOption = typer.Option(
    [],
    "--param",
    help="Override a parameter: model.KEY=V reaches the network, loss.KEY=V the loss, KEY=V the "
    "protocol. Repeatable. Example: --param model.width=16 --param batch_size=4",
)
JsonOption = typer.Option(False, "--json", help="Quiet; print the result as JSON on stdout.")
LogOption = typer.Option(
    [],
    "--log",
    help="Mirror each run into a tracker: tensorboard (RUN/tensorboard/) or mlflow; repeatable.",
)
MlflowUriOption = typer.Option(
    None,
    "--mlflow-uri",
    help="MLflow tracking store (default: RESULTS/mlruns).",
    show_default=False,
)
