"""`focalbench fetch` and `focalbench datasets`."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from focalbench.cli._common import DataDirOption, JsonOption, command, print_json
from focalbench.errors import FocalbenchError


@command()
def fetch(
    names: list[str] = typer.Argument(
        None,
        help="Datasets to fetch, e.g. drive dsb2018 (see `focalbench datasets`).",
        show_default=False,
    ),
    all_: bool = typer.Option(
        False,
        "--all",
        help="Fetch every dataset that can be downloaded; list what the others need.",
    ),
    from_path: Path = typer.Option(
        None,
        "--from",
        help="The official archive or extracted folder, for datasets behind a login or a request. "
        "Example: focalbench fetch drive --from ~/Downloads/DRIVE",
        show_default=False,
    ),
    data_dir: Path = DataDirOption,
    force: bool = typer.Option(
        False, "--force", help="Prepare again even if the dataset is already prepared."
    ),
    json_: bool = JsonOption,
) -> None:
    """Download (or take --from), verify, convert and split datasets into the data folder.

    Example: focalbench fetch dsb2018 --data-dir /data/focalbench
    """
    from focalbench.datasets import fetch as fetch_api

    results = fetch_api(
        names or [],
        all=all_,
        from_path=from_path,
        data_dir=data_dir,
        force=force,
        progress=not json_,
    )
    if json_:
        print_json(results)
    else:
        for r in results:
            line = f"{r['name']}: {r['status']}"
            if r.get("path"):
                line += f", {r['images']} images in {r['path']}"
            typer.echo(line)
            for detail in (r.get("hint"), r.get("error")):
                if detail:
                    typer.echo(f"  {detail}")
    failed = [r["name"] for r in results if r["status"] == "failed"]
    if failed:
        raise FocalbenchError(
            f"{', '.join(failed)} failed (see above); fix the cause and rerun the same command"
        )


def _sizes(sizes: list[list[int]]) -> str:
    if not sizes:
        return ""
    if len(sizes) == 1:
        return f"{sizes[0][0]}x{sizes[0][1]}"
    return f"{len(sizes)} sizes"


def access(name: str, data_dir: Path | None = None) -> dict[str, str]:
    """How to get a dataset, from ``datasets.toml``: ``license``, ``homepage``, ``access``
    (``builtin``, ``download``, or ``manual`` for a login or a request) and ``get``, the command
    (with the ``--from`` instructions for a gated set)."""
    from focalbench.datasets import get_spec
    from focalbench.datasets.fetch import how_to_get

    spec = get_spec(name)
    folder = f" --data-dir {data_dir}" if data_dir is not None else ""
    if spec.builtin:
        kind, get = "builtin", "ships inside the package: nothing to fetch"
    elif spec.downloadable:
        urls = ", ".join(s.url for s in spec.sources)
        get = f"focalbench fetch {name}{folder}  (downloads {urls}, sha256-checked)"
        kind = "download"
    else:
        kind, get = "manual", how_to_get(spec, data_dir)
    return {"license": spec.license, "homepage": spec.homepage, "access": kind, "get": get}


def _imported(row: dict) -> dict[str, str]:
    """A user dataset's access: it came from the user's own folder (``focalbench import``)."""
    return {"access": "imported", "get": f"focalbench import {row['name']} {row['source']}"}


@command()
def datasets(data_dir: Path = DataDirOption, json_: bool = JsonOption) -> None:
    """List every dataset: status (missing / downloaded / prepared), images per split, native sizes,
    mean foreground %, licence and how to get it (the URL, or what to request and how to --from).

    Example: focalbench datasets --data-dir /data/focalbench --json
    """
    from focalbench.datasets import dataset_status

    rows = [
        {**r, **(_imported(r) if r.get("source") else access(r["name"], data_dir))}
        for r in dataset_status(data_dir)
    ]
    if json_:
        print_json(rows)
        return
    table = Table(
        "dataset", "status", "images", "train/val/test (split)", "native size", "foreground %"
    )
    for r in rows:
        splits = "; ".join(
            f"{s['train']}/{s['val']}/{s['test']} ({rule})" for rule, s in r["splits"].items()
        )
        fg = "" if r["foreground_pct"] is None else f"{r['foreground_pct']:.2f}"
        if r.get("foreground_pct_fov") is not None:
            fg += f" ({r['foreground_pct_fov']:.2f} in FOV)"
        table.add_row(
            r["name"], r["status"], str(r["images"] or ""), splits, _sizes(r["native_sizes"]), fg
        )
    console = Console(width=160)
    console.print(table)
    terms = Table(title="licences and access (datasets.toml)")
    terms.add_column("dataset")
    terms.add_column("licence", max_width=36)
    terms.add_column("how to get it", overflow="fold")  # folded, not cut: a URL must stay whole
    for r in rows:
        if r.get("source"):
            continue  # a user dataset: listed below
        get = f"{r['get']}\n{r['homepage']}" if r["access"] == "download" else r["get"]
        terms.add_row(r["name"], r["license"], get)
    console.print(terms)
    for r in rows:
        if r.get("source"):  # a user dataset (focalbench import)
            left_out = f", {r['skipped']} file(s) left out" if r["skipped"] else ""
            typer.echo(
                f"{r['name']}: imported from {r['source']} ({r['layout']} layout, "
                f"native {r['native_size_range']}{left_out})"
            )
