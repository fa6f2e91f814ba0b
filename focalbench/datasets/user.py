"""User datasets: ``import_dataset`` prepares a user's folder of images like a catalogue dataset.

The pairs come from :mod:`focalbench.datasets.layouts`; every pair is checked before anything is
written (readable, non-empty, image and mask of one size, masks of two values); then the same
:class:`~focalbench.datasets.prepared.PreparedWriter`, staging folder and ``splits.json`` as
``fetch`` make ``<data_root>/<name>/``. The data folder's ``user_datasets.json`` records each
imported dataset (source, layout, counts, sizes, foreground %, mask rule, files left out);
:func:`focalbench.datasets.catalog.get_spec` finds them there, so ``load``, ``train``, ``ablate``
and ``prune`` take a user dataset by name.

Masks are binarised by one rule, printed and recorded: without ``foreground``, a mask must hold
at most two values ``{0, v}`` (``{0, 255}``, ``{0, 1}``, 1-bit, a two-entry palette) and ``v`` is
foreground; with ``foreground = (v₁, …)`` a pixel is foreground iff its value is one of them
(palette masks: the palette index). A mask of more values is refused without ``foreground``.
"""

from __future__ import annotations

import io
import os
import re
import shutil
from collections import Counter
from collections.abc import Iterable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
)

import focalbench
from focalbench.datasets.catalog import SMOKE_SIZE, DatasetSpec, registry
from focalbench.datasets.convert import Record
from focalbench.datasets.fetch import _staging, remove_stale_staging, write_splits
from focalbench.datasets.layouts import LayoutKind, Problem, find_pairs
from focalbench.datasets.prepared import (
    PreparedWriter,
    UnreadableImage,
    data_root,
    probe_image,
)
from focalbench.datasets.splits import n_folds, split_indices
from focalbench.errors import FocalbenchError
from focalbench.store import atomic_write_json, ensure_writable_dir, read_json, utc_now

CATALOG_FILE = "user_datasets.json"
DEFAULT_SPLIT = "random-64-16-20"
# The papers work at 256x256 on most of their datasets (2018 DSB, BUS, ISIC's 192x256 aside);
# a user dataset gets that size under every paper protocol, smoke keeps its 64x64.
USER_SIZE = (256, 256)
SHOWN = 5  # problems named in an error line before "and N more"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_RESERVED = {"downloads", CATALOG_FILE}
_GREY_MODES = {"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F"}


# ----------------------------------------------------------------------------- the record


def _catalog_path(data_dir: str | os.PathLike | None) -> Path:
    return data_root(data_dir) / CATALOG_FILE


def user_datasets(data_dir: str | os.PathLike | None = None) -> dict[str, dict[str, Any]]:
    """Every imported dataset's record, by name (empty when nothing was imported)."""
    path = _catalog_path(data_dir)
    return dict(read_json(path)["datasets"]) if path.is_file() else {}


def _write_catalog(data_dir: str | os.PathLike | None, entries: dict[str, dict[str, Any]]) -> None:
    atomic_write_json(_catalog_path(data_dir), {"format": 1, "datasets": entries})


def _spec(entry: dict[str, Any]) -> DatasetSpec:
    """The dataset as the catalogue would describe it. Paper 000 tuned UFL's γ per dataset
    (Table 1); a user dataset gets the loss's own default γ, so the paper-000 studies run on it."""
    from focalbench.losses import loss_info
    from focalbench.protocols import list_protocols

    sizes = entry["native_sizes"]
    papers = {
        p: {"size": list(SMOKE_SIZE if p == "smoke" else USER_SIZE), "split": entry["split"]}
        for p in list_protocols()
    }
    papers["paper000"]["ufl_gamma"] = float(loss_info("ufl")["defaults"]["gamma"])
    return DatasetSpec(
        name=entry["name"],
        title=f"user dataset imported from {entry['source']}",
        citation="",
        license="",
        task="user dataset",
        homepage="",
        channels=int(entry["channels"]),
        native_size=tuple(sizes[0]) if len(sizes) == 1 else None,
        images=int(entry["images"]),
        papers=papers,
        source=entry["source"],
    )


def user_spec(name: str, data_dir: str | os.PathLike | None = None) -> DatasetSpec | None:
    entry = user_datasets(data_dir).get(name)
    return None if entry is None else _spec(entry)


def user_specs(data_dir: str | os.PathLike | None = None) -> list[DatasetSpec]:
    return [_spec(entry) for entry in user_datasets(data_dir).values()]


def size_range(sizes: Sequence[Sequence[int]]) -> str:
    """``"420x560"`` for one size, else the smallest and largest by area (``"300x400–580x760"``)."""
    if not sizes:
        return ""
    ordered = sorted(sizes, key=lambda s: (s[0] * s[1], s[0]))
    low, high = ordered[0], ordered[-1]
    return f"{low[0]}x{low[1]}" if low == high else f"{low[0]}x{low[1]}–{high[0]}x{high[1]}"


# ----------------------------------------------------------------------------- masks


def mask_values(data: bytes) -> np.ndarray:
    """An encoded mask's pixel values: grey levels, 0/1 for 1-bit, the index for palette masks,
    luminance for colour masks. ``data`` must already have been proven decodable."""
    img = Image.open(io.BytesIO(data))
    if img.mode in {"P", "1", "L", "I", "I;16", "I;16B", "I;16L", "F"}:
        return np.asarray(img)
    if img.mode == "LA":
        return np.asarray(img.getchannel(0))
    return np.asarray(img.convert("L"))


def binarise(values: np.ndarray, foreground: Sequence[int] | None) -> np.ndarray:
    """bool mask: ``value ∈ foreground`` when given, else ``value ≠ 0`` (a ``{0, v}`` mask)."""
    if foreground is not None:
        return np.isin(values, np.asarray(list(foreground)))
    return values != 0


def mask_rule(foreground: Sequence[int] | None) -> str:
    if foreground is not None:
        listed = ", ".join(str(v) for v in foreground)
        return f"foreground = pixel value in {{{listed}}}, the rest background"
    return (
        "foreground = the non-zero value of each {0, v} mask "
        "({0,255}, {0,1}, 1-bit, two-entry palette)"
    )


def _two_valued(values: np.ndarray) -> bool:
    seen = np.unique(values)
    return len(seen) < 2 or (len(seen) == 2 and seen[0] == 0)


def _value_list(values: Iterable[float]) -> str:
    shown = sorted({float(v) for v in values})
    text = ", ".join(f"{v:g}" for v in shown[:8])
    return text + (f", … ({len(shown)} values)" if len(shown) > 8 else "")


# ----------------------------------------------------------------------------- checking


@dataclass
class _Checked:
    record: Record
    shape: tuple[int, int]
    colour: bool


def _is_colour(data: bytes) -> bool:
    """Whether an image's channels differ anywhere (a grey picture saved as RGB is greyscale)."""
    img = Image.open(io.BytesIO(data))
    if img.mode in _GREY_MODES:
        return False
    rgb = np.asarray(img.convert("RGB"))
    return not (
        np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 1], rgb[..., 2])
    )


def _read(path: str, what: str, problems: list[Problem], shown: str) -> bytes | None:
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        problems.append(Problem(shown, f"unreadable {what}", exc.strerror or type(exc).__name__))
        return None
    if not data:
        problems.append(Problem(shown, f"empty {what} file"))
        return None
    return data


def _check(
    rec: Record,
    root: Path,
    foreground: Sequence[int] | None,
    problems: list[Problem],
    many_valued: list[tuple[str, np.ndarray]],
) -> _Checked | None:
    """Prove one pair usable; append what is wrong with it to ``problems`` (or ``many_valued``)."""

    def shown(path: str) -> str:
        return os.path.relpath(path, root if root.is_dir() else root.parent)

    raw = _read(rec.image, "image", problems, shown(rec.image))
    shape = colour = None
    if raw is not None:
        try:
            shape = probe_image(raw)
            colour = _is_colour(raw)
        except UnreadableImage as exc:
            problems.append(Problem(shown(rec.image), "unreadable image", str(exc)))
    ok = shape is not None
    for path in rec.masks:
        data = _read(path, "mask", problems, shown(path))
        if data is None:
            ok = False
            continue
        try:
            mask_shape = probe_image(data)
        except UnreadableImage as exc:
            problems.append(Problem(shown(path), "unreadable mask", str(exc)))
            ok = False
            continue
        if shape is not None and mask_shape != shape:
            problems.append(
                Problem(
                    shown(path),
                    "size mismatch",
                    f"mask {mask_shape[0]}x{mask_shape[1]}, image {shape[0]}x{shape[1]}",
                )
            )
            ok = False
            continue
        values = mask_values(data)
        if foreground is None and not _two_valued(values):
            many_valued.append((shown(path), np.unique(values)))
    return _Checked(rec, shape, bool(colour)) if ok else None


def _problem_line(problems: list[Problem]) -> str:
    reasons = Counter(p.kind for p in problems)
    counts = ", ".join(f"{n} {reason}" for reason, n in reasons.most_common())
    named = "; ".join(f"{p.path}: {p.reason}" for p in problems[:SHOWN])
    more = f"; and {len(problems) - SHOWN} more" if len(problems) > SHOWN else ""
    return f"{len(problems)} bad file(s) ({counts}): {named}{more}"


def _many_valued_line(many: list[tuple[str, np.ndarray]]) -> str:
    path, values = many[0]
    labels = [v for v in values.tolist() if v != 0]
    others = f" (and {len(many) - 1} more mask(s) like it)" if len(many) > 1 else ""
    every = ",".join(f"{v:g}" for v in labels)
    return (
        f"mask {path!r} has values {_value_list(values)}{others}; focalbench segments one "
        f"foreground class: choose its values with --foreground {every} (every label) "
        f"or --foreground {labels[-1]:g} (one label)"
    )


# ----------------------------------------------------------------------------- import / remove


def _check_name(name: str, data_dir: str | os.PathLike | None) -> None:
    if name in registry():
        raise FocalbenchError(
            f"{name!r} is a catalogue dataset (focalbench datasets); "
            "choose another name for your own images"
        )
    if not _NAME.fullmatch(name) or name in _RESERVED:
        raise FocalbenchError(
            f"dataset name {name!r} is not allowed; use letters, digits, '.', '_' or '-' "
            "(up to 64), e.g. my-ultrasound"
        )
    entry = user_datasets(data_dir).get(name)
    if entry is not None:
        raise FocalbenchError(
            f"dataset {name!r} is already imported from {entry['source']}; remove it first "
            f"with: focalbench import --remove {name}"
        )


def _parse_foreground(foreground: Sequence[int | str] | None) -> tuple[int, ...] | None:
    if not foreground:
        return None
    values: list[int] = []
    for item in foreground:
        for part in str(item).split(","):
            if not re.fullmatch(r"\s*\d+\s*", part):
                raise FocalbenchError(
                    f"--foreground {item!r}: give mask values as integers, e.g. --foreground 1,2"
                )
            values.append(int(part))
    return tuple(sorted(set(values)))


def _bar(progress: bool) -> Progress | None:
    if not progress:
        return None
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
    )


def import_dataset(
    name: str,
    path: str | os.PathLike,
    data_dir: str | os.PathLike | None = None,
    layout: LayoutKind | str | None = None,
    foreground: Sequence[int | str] | None = None,
    split: str = DEFAULT_SPLIT,
    skip_bad: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Prepare the images and masks under ``path`` as dataset ``name`` in the data folder.

    ``layout`` forces one of :class:`~focalbench.datasets.layouts.LayoutKind` (default: the one
    layout that pairs files there); ``foreground`` the mask values that are foreground (see the
    module docstring); ``split`` the rule every protocol uses on it. A bad file (image without a
    mask, mask without an image, size mismatch, unreadable or empty) stops the import before
    anything is written, unless ``skip_bad``: then it is left out and listed in the record.

    Returns the dataset's record: ``name``, ``status``, ``images``, ``path``, ``layout``,
    ``mask_rule``, ``channels``, ``native_sizes``, ``foreground_pct``, ``skipped``, ...
    """
    _check_name(name, data_dir)
    source = Path(path).expanduser().resolve()
    if not source.exists():
        raise FocalbenchError(
            f"{str(source)!r} does not exist; pass the folder (or CSV) of your images and masks"
        )
    fg = _parse_foreground(foreground)
    pairing = find_pairs(source, layout)
    console = Console(stderr=True) if progress else None
    if console is not None:
        console.print(f"layout: {pairing.description} ({len(pairing.records)} pairs) in {source}")
        console.print(f"masks: {mask_rule(fg)}")
    problems = list(pairing.problems)
    many_valued: list[tuple[str, np.ndarray]] = []
    checked = []
    bar = _bar(progress)
    with bar if bar is not None else nullcontext():
        task = (
            bar.add_task(f"checking {name}", total=len(pairing.records))
            if bar is not None
            else None
        )
        for rec in pairing.records:
            item = _check(rec, source, fg, problems, many_valued)
            if item is not None:
                checked.append(item)
            if bar is not None:
                bar.advance(task)
    if problems and not skip_bad:
        raise FocalbenchError(
            f"nothing imported: {_problem_line(problems)}; fix them or pass --skip-bad to "
            "leave them out"
        )
    if many_valued:
        raise FocalbenchError(_many_valued_line(many_valued))
    if not checked:
        raise FocalbenchError(
            f"no usable image/mask pair in {str(source)!r}: {_problem_line(problems)}"
        )
    folds = n_folds(split)
    split_indices(len(checked), split, 0, 0 if folds else None)  # a bad rule fails before writing
    entry: dict[str, Any] = {
        "name": name,
        "source": str(source),
        "layout": pairing.layout.value,
        "layout_description": pairing.description,
        "images": len(checked),
        "channels": 3 if any(c.colour for c in checked) else 1,
        "split": split,
        "mask_rule": mask_rule(fg),
        "foreground": list(fg) if fg else None,
        "skipped": [{"path": p.path, "reason": p.reason} for p in problems],
        "native_sizes": sorted({c.shape for c in checked}),
    }
    root = ensure_writable_dir(data_root(data_dir), "--data-dir")
    remove_stale_staging(root, name)
    base = {
        "name": name,
        "version": focalbench.__version__,
        "source": str(source),
        "sources": {},
        "preparation": {
            "channels": entry["channels"],
            "layout": entry["layout"],
            "mask_rule": entry["mask_rule"],
            "foreground": entry["foreground"],
        },
        "expected_images": len(checked),
        "user": True,
        "classes": [c.record.group for c in checked]
        if any(c.record.group for c in checked)
        else None,
    }
    bar = _bar(progress)
    with _staging(root, name) as tmp, bar if bar is not None else nullcontext():
        task = bar.add_task(f"preparing {name}", total=len(checked)) if bar is not None else None
        writer = PreparedWriter(tmp, entry["channels"], with_fov=False)
        try:
            for item in checked:
                mask = np.zeros(item.shape, dtype=bool)
                for mask_path in item.record.masks:
                    mask |= binarise(mask_values(Path(mask_path).read_bytes()), fg)
                writer.add(item.record.id, Path(item.record.image).read_bytes(), mask, None, None)
                if bar is not None:
                    bar.advance(task)
        finally:
            writer.close()
        meta = writer.finish(base)
        entry["native_sizes"] = meta["native_sizes"]
        write_splits(_spec(entry), tmp, meta)
    # recorded once the prepared folder is in place: a killed import is never listed
    entry.update(
        foreground_pct=meta["foreground_pct"],
        imported=utc_now(),
        classes=dict(Counter(meta["classes"])) if meta.get("classes") else None,
    )
    _write_catalog(data_dir, {**user_datasets(data_dir), name: entry})
    return {
        **entry,
        "status": "prepared",
        "path": str(root / name),
        "native_size_range": size_range(meta["native_sizes"]),
    }


def remove_dataset(name: str, data_dir: str | os.PathLike | None = None) -> dict[str, Any]:
    """Forget an imported dataset and delete its prepared folder (the source is never touched)."""
    entries = user_datasets(data_dir)
    if name not in entries:
        if name in registry():
            raise FocalbenchError(
                f"{name!r} is a catalogue dataset; focalbench import --remove removes only "
                "imported datasets"
            )
        known = ", ".join(entries) or "none"
        raise FocalbenchError(
            f"no imported dataset {name!r} in {data_root(data_dir)}; imported: {known}"
        )
    entry = entries.pop(name)
    _write_catalog(data_dir, entries)
    folder = data_root(data_dir) / name
    if folder.exists():
        gone = folder.with_name(f".{name}.old-{os.getpid()}")
        os.replace(folder, gone)
        shutil.rmtree(gone, ignore_errors=True)
    return {"name": name, "status": "removed", "source": entry["source"], "path": str(folder)}
