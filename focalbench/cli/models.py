"""`focalbench models`: every registered network, its parameters (and forward GFLOPs at --size).

Counting needs torch and every network built once (on the meta device: no weights allocated),
seconds of work that gives the same answer until the networks' code or the libraries change. The
listing is therefore kept in a cache file, ``$FOCALBENCH_CACHE`` (default
``$XDG_CACHE_HOME/focalbench`` or ``~/.cache/focalbench``) ``/models-<fingerprint>.json``, whose
fingerprint hashes the source of ``focalbench/models/``, the focalbench, torch and
segmentation-models-pytorch versions, the input channels and the size. A listing with that
fingerprint is read without importing torch; any change to one of them counts again.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from importlib import metadata
from pathlib import Path
from typing import Any

import typer

from focalbench.cli._common import JsonOption, command, print_json
from focalbench.errors import FocalbenchError

#: Libraries whose version can change a network's parameter count.
_LIBRARIES = ("torch", "segmentation-models-pytorch")


def parse_size(text: str) -> tuple[int, int]:
    """``"256x256"`` → (256, 256); anything else is a user error naming the form."""
    match = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", text)
    if not match or 0 in (int(match.group(1)), int(match.group(2))):
        raise FocalbenchError(f"--size {text!r} is not HxW; write e.g. --size 256x256")
    return int(match.group(1)), int(match.group(2))


def cache_dir() -> Path:
    explicit = os.environ.get("FOCALBENCH_CACHE")
    if explicit:
        return Path(explicit)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "focalbench"


def fingerprint(size: tuple[int, int] | None, in_channels: int) -> str:
    """sha256 of everything the listing depends on (see the module docstring), 16 hex digits."""
    from focalbench import __version__

    digest = hashlib.sha256(f"{__version__}|{size}|{in_channels}".encode())
    for library in _LIBRARIES:
        try:
            digest.update(f"|{library}={metadata.version(library)}".encode())
        except metadata.PackageNotFoundError:
            digest.update(f"|{library}=absent".encode())
    source = Path(__file__).resolve().parents[1] / "models"
    for path in sorted(source.rglob("*.py")):
        digest.update(path.relative_to(source).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def count_models(size: tuple[int, int] | None, in_channels: int) -> list[dict[str, Any]]:
    """One row per network: ``name``, ``params``, ``description``, ``paper``, ``defaults``, and with
    ``size`` also ``gflops`` (``None`` and an ``error`` when the network cannot take that size).
    Each network is built once, on the meta device."""
    import torch

    from focalbench.models import (
        build_model,
        count_parameters,
        list_models,
        model_info,
        model_summary,
    )

    rows = []
    for name in list_models():
        info = model_info(name)
        if size is None:
            with torch.device("meta"):
                row = {
                    "name": name,
                    "params": count_parameters(build_model(name, in_channels=in_channels)),
                    "description": info["description"],
                }
        else:
            row = model_summary(name, size, in_channels)
        rows.append({**row, "paper": info["paper"], "defaults": info["defaults"]})
    return rows


def model_rows(size: tuple[int, int] | None = None, in_channels: int = 3) -> list[dict[str, Any]]:
    """:func:`count_models`, from the cache when its fingerprint matches, else counted, cached."""
    from focalbench.store import atomic_write_json

    path = cache_dir() / f"models-{fingerprint(size, in_channels)}.json"
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        pass
    rows = count_models(size, in_channels)
    try:
        atomic_write_json(path, rows)
    except OSError:  # a read-only home: list without caching
        pass
    return rows


@command()
def models(
    json_out: bool = JsonOption,
    size: str | None = typer.Option(
        None,
        "--size",
        help="Also count forward GFLOPs for one H×W input. Example: --size 288x384",
        show_default=False,
    ),
    in_channels: int = typer.Option(
        3, "--in-channels", help="Input channels (3 for RGB, 1 for grey)."
    ),
) -> None:
    """List the networks with their parameters; --size adds forward GFLOPs (2 per multiply-add).

    Example: focalbench models --size 256x256 --json. Pass options to a network with
    `focalbench train --model use-net --param model.positions=[2,6,9]`.
    """
    shape = parse_size(size) if size is not None else None
    if in_channels < 1:
        raise FocalbenchError(f"--in-channels {in_channels} must be at least 1")
    rows = model_rows(shape, in_channels)
    if json_out:
        print_json(rows)
        return
    from rich.console import Console
    from rich.table import Table

    shown = (
        f"GFLOPs = 2·multiply-adds for one {shape[0]}x{shape[1]}x{in_channels} input"
        if shape
        else f"{in_channels} input channels; --size HxW adds GFLOPs"
    )
    table = Table(title=f"networks (parameters; {shown})")
    columns = (
        ("name", "params", "GFLOPs", "description") if shape else ("name", "params", "description")
    )
    for column in columns:
        table.add_column(column, overflow="fold")
    for row in rows:
        cells = [row["name"], f"{row['params']:,}"]
        if shape:
            cells.append("-" if row["gflops"] is None else f"{row['gflops']:.2f}")
        table.add_row(*cells, row.get("error", row["description"]))
    Console(width=160).print(table)
