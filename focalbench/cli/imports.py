"""`focalbench import`: your own images and masks as a dataset (and `--remove` to forget one)."""

from __future__ import annotations

from pathlib import Path

import typer

from focalbench.cli._common import DataDirOption, JsonOption, command, print_json
from focalbench.errors import FocalbenchError


@command("import")
def import_(
    name: str | None = typer.Argument(
        None, help="Name to train with, e.g. my-ultrasound.", show_default=False
    ),
    path: Path | None = typer.Argument(
        None, help="Folder of images and masks, or a CSV of image,mask paths.", show_default=False
    ),
    data_dir: Path | None = DataDirOption,
    layout: str | None = typer.Option(  # checked by the API (keeps --help light)
        None,
        "--layout",
        help="Force a layout: folders (images/ + masks/), suffix (x.png + x_mask.png), "
        "nnunet (imagesTr/ + labelsTr/), csv (default: detected).",
        show_default=False,
    ),
    foreground: list[str] = typer.Option(
        [],
        "--foreground",
        help="Mask values that are foreground, for masks of more than two values. "
        "Example: --foreground 1,2",
    ),
    split: str = typer.Option(
        "random-64-16-20",
        "--split",
        help="Split rule every protocol uses on it, "
        "e.g. random-64-16-20, kfold-5, holdout-25-kfold-5.",
    ),
    skip_bad: bool = typer.Option(
        False, "--skip-bad", help="Leave out bad files (listed in the record) instead of stopping."
    ),
    remove: str | None = typer.Option(
        None,
        "--remove",
        help="Forget imported dataset NAME and delete its prepared folder (your files stay).",
        show_default=False,
    ),
    json_: bool = JsonOption,
) -> None:
    """Prepare your own folder of 2D images and binary masks like a catalogue dataset; then train,
    ablate, prune and report on it by name.

    Example: focalbench import my-us ~/data/ultrasound && focalbench train --dataset my-us
    --model unet --loss dice
    """
    from focalbench.datasets.user import import_dataset, remove_dataset

    if remove is not None:
        result = remove_dataset(remove, data_dir)
        if json_:
            print_json(result)
        else:
            typer.echo(
                f"{result['name']}: removed {result['path']} (source {result['source']} untouched)"
            )
        return
    if name is None or path is None:
        raise FocalbenchError(
            "give a NAME and a PATH, e.g. focalbench import my-us ~/data/ultrasound "
            "(or --remove NAME)"
        )
    r = import_dataset(
        name,
        path,
        data_dir=data_dir,
        layout=layout,
        foreground=foreground,
        split=split,
        skip_bad=skip_bad,
        progress=not json_,
    )
    if json_:
        print_json(r)
        return
    typer.echo(
        f"{r['name']}: {r['status']}, {r['images']} images ({r['channels']} channel(s), "
        f"{r['native_size_range']}, foreground {r['foreground_pct']:.2f} %) in {r['path']}"
    )
    if r["classes"]:
        typer.echo("  classes: " + ", ".join(f"{k} {v}" for k, v in r["classes"].items()))
    if r["skipped"]:
        typer.echo(
            f"  left out {len(r['skipped'])} file(s): "
            + "; ".join(f"{s['path']}: {s['reason']}" for s in r["skipped"][:5])
        )
