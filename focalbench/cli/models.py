"""`focalbench models`: every registered network with its parameter count and forward GFLOPs."""

from __future__ import annotations

import re

import typer

from focalbench.cli._common import JsonOption, command, print_json
from focalbench.errors import FocalbenchError


def parse_size(text: str) -> tuple[int, int]:
    """``"256x256"`` → (256, 256); anything else is a user error naming the form."""
    match = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", text)
    if not match or 0 in (int(match.group(1)), int(match.group(2))):
        raise FocalbenchError(f"--size {text!r} is not HxW; write e.g. --size 256x256")
    return int(match.group(1)), int(match.group(2))


@command()
def models(
    json_out: bool = JsonOption,
    size: str = typer.Option("256x256", "--size", help="Input H×W for the GFLOPs count. Example: --size 288x384"),
    in_channels: int = typer.Option(3, "--in-channels", help="Input channels (3 for RGB, 1 for grey)."),
) -> None:
    """List the networks: parameters and forward GFLOPs (2 per multiply-add) at --size.

    Example: focalbench models --json --size 256x256. Pass options to a network with
    `focalbench train --model use-net --param model.positions=[2,6,9]`.
    """
    from focalbench.models import list_models, model_info, model_summary

    h, w = parse_size(size)
    rows = []
    for name in list_models():
        info = model_info(name)
        row = model_summary(name, (h, w), in_channels)
        rows.append({**row, "paper": info["paper"], "defaults": info["defaults"]})
    if json_out:
        print_json(rows)
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"networks (params; GFLOPs = 2·multiply-adds for one {h}x{w}x{in_channels} input)")
    for column in ("name", "params", "GFLOPs", "description"):
        table.add_column(column, overflow="fold")
    for row in rows:
        params = f"{row['params']:,}"
        gflops = "-" if row["gflops"] is None else f"{row['gflops']:.2f}"
        table.add_row(row["name"], params, gflops, row.get("error", row["description"]))
    Console(width=160).print(table)
