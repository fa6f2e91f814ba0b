"""``fetch``: get the sources, verify them, convert the official layout into a prepared dataset.

Data folder layout (``data_root()``)::

    downloads/<name>/<file>      downloaded sources (``.part`` while incomplete)
    <name>/                      the prepared dataset (see ``prepared.py``), with ``splits.json``
    .<name>.tmp-<pid>/           preparation in progress; renamed to ``<name>/`` when complete

Preparation writes into the temporary folder and renames it over the old one only when every
image has been converted and ``meta.json`` written, so an interrupted or failed fetch leaves the
old prepared dataset or none. A fetch killed outright (``kill -9``, a power cut) cannot remove its
temporary folder; the next fetch of that dataset does (:func:`remove_stale_staging`). Partial
downloads (``.part``) are kept on purpose: the next fetch resumes them.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

import focalbench
from focalbench.datasets.catalog import DatasetSpec, SourceKind, dataset_names, get_spec, registry
from focalbench.datasets.convert import match_layout, read_record
from focalbench.datasets.download import download, progress_bar
from focalbench.datasets.prepared import PreparedWriter, data_root, read_meta
from focalbench.datasets.sources import SourceTree, is_archive, sha256_file
from focalbench.datasets.splits import n_folds, split_indices
from focalbench.errors import FocalbenchError
from focalbench.processes import pid_alive
from focalbench.store import atomic_write_json, ensure_writable_dir, read_json


def downloads_folder(name: str, data_dir: str | os.PathLike | None = None) -> Path:
    return data_root(data_dir) / "downloads" / name


def _downloaded(spec: DatasetSpec, data_dir: str | os.PathLike | None) -> bool:
    folder = downloads_folder(spec.name, data_dir)
    return bool(spec.sources) and all((folder / s.file).exists() for s in spec.sources)


def how_to_get(spec: DatasetSpec, data_dir: str | os.PathLike | None = None) -> str:
    """The one line a user needs for a dataset behind a login or a request."""
    wheres = sorted({s.where for s in spec.sources if s.kind is not SourceKind.http})
    files = " and ".join(s.file for s in spec.sources)
    folder = f" --data-dir {data_dir}" if data_dir is not None else ""
    login = (
        "needs a Kaggle login"
        if any(s.kind is SourceKind.kaggle for s in spec.sources)
        else "cannot be downloaded automatically"
    )
    return (
        f"{spec.name} {login}: {'; '.join(wheres)}; then run: focalbench fetch {spec.name} --from PATH{folder} "
        f"(PATH = {files} or the extracted folder)"
    )


def _verify_given(spec: DatasetSpec, from_path: Path) -> dict[str, str]:
    """sha256 of each archive under ``--from`` (the file itself, or archives at the folder's top);
    an archive named like a source with a published sha256 must match it."""
    published = {s.file: s.sha256 for s in spec.sources if s.sha256}
    archives = (
        [from_path]
        if from_path.is_file()
        else sorted(p for p in from_path.iterdir() if p.is_file() and is_archive(p))
    )
    seen = {}
    for path in archives:
        seen[path.name] = sha256_file(path)
        expected = published.get(path.name)
        if expected and seen[path.name] != expected:
            raise FocalbenchError(
                f"{path} has sha256 {seen[path.name]}, expected {expected} (the published archive); nothing was "
                "prepared. If it is a re-packed copy you trust, extract it and pass the folder with --from"
            )
    return seen


def _download_sources(
    spec: DatasetSpec, data_dir: str | os.PathLike | None, progress: bool
) -> dict[str, str]:
    folder = downloads_folder(spec.name, data_dir)
    record_path = folder / "sha256.json"
    recorded: dict[str, str] = read_json(record_path) if record_path.is_file() else {}
    bar = progress_bar() if progress else None
    with bar if bar is not None else contextlib.nullcontext():
        for source in spec.sources:
            if not (folder / source.file).exists():
                recorded[source.file] = download(
                    source.url, folder / source.file, source.sha256, bar
                )
                atomic_write_json(record_path, recorded)  # the sha256 seen, where none is published
    return {s.file: recorded.get(s.file, "") for s in spec.sources}


def _convert(
    spec: DatasetSpec, tree: SourceTree, tmp: Path, meta: dict[str, Any], progress: bool
) -> dict[str, Any]:
    records = match_layout(spec, tree)
    writer = PreparedWriter(
        tmp, spec.channels, with_fov=spec.layout is not None and spec.layout.fov is not None
    )
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
    )
    bar = Progress(*columns) if progress else None
    try:
        with bar if bar is not None else contextlib.nullcontext():
            task = (
                bar.add_task(f"preparing {spec.name}", total=len(records))
                if bar is not None
                else None
            )
            for rec in records:
                raw, mask, fov = read_record(spec, tree, rec)
                writer.add(rec.id, raw, mask, fov, rec.group)
                if bar is not None and task is not None:
                    bar.advance(task)
    finally:
        writer.close()
    return writer.finish(meta)


def split_rules(spec: DatasetSpec) -> list[str]:
    """The split rules the papers use on this dataset, in ``datasets.toml`` order."""
    return list(dict.fromkeys(p["split"] for p in spec.papers.values()))


def write_splits(spec: DatasetSpec, folder: Path, meta: dict[str, Any]) -> None:
    """``splits.json``: for every rule of the dataset's papers, the ids of each part at seed 0
    (every fold of a k-fold rule) — the record of what ``get_split`` computes."""
    ids, out = meta["ids"], {}
    for rule in split_rules(spec):
        folds = n_folds(rule)
        for fold in range(folds) if folds else [None]:
            with contextlib.suppress(
                FocalbenchError
            ):  # e.g. a fixed-count rule larger than a subset
                parts = split_indices(len(ids), rule, 0, fold, meta.get("official"))
                key = rule if fold is None else f"{rule}/fold{fold}"
                out[key] = {part: [ids[i] for i in idx] for part, idx in parts.items()}
    atomic_write_json(folder / "splits.json", {"seed": 0, "splits": out})


def remove_stale_staging(root: Path, name: str) -> list[Path]:
    """Delete the leftovers of killed fetches of ``name`` in ``root``; return what was deleted.

    ``.<name>.tmp-<pid>/`` (a preparation in progress) is deleted when ``<pid>`` is no longer
    running; a live pid's folder is another fetch at work and is kept. ``.<name>.old-<pid>/`` (the
    previous dataset, deleted once the new one is in place) likewise, and only when ``<name>/``
    exists: otherwise the kill came between the two renames and it is the last prepared copy.
    The pid is checked on this host: two machines must not fetch into one shared data folder at once.
    """
    removed = []
    for kind in ("tmp", "old"):
        prefix = f".{name}.{kind}-"
        for path in sorted(root.iterdir()):
            pid = path.name[len(prefix) :] if path.name.startswith(prefix) else ""
            if (
                not pid.isdigit()
                or pid_alive(int(pid))
                or (kind == "old" and not (root / name).is_dir())
            ):
                continue
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


@contextlib.contextmanager
def _staging(root: Path, name: str) -> Iterator[Path]:
    """A temporary folder that replaces ``root/name`` on success and vanishes on failure."""
    tmp = root / f".{name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        yield tmp
        final, old = root / name, root / f".{name}.old-{os.getpid()}"
        if final.exists():
            os.replace(final, old)
        os.replace(tmp, final)
        shutil.rmtree(old, ignore_errors=True)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if exc.errno == errno.ENOSPC:
            raise FocalbenchError(
                f"disk full while preparing {name} in {root}; free space or pass --data-dir DIR"
            ) from None
        raise
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def fetch_one(
    name: str,
    from_path: str | os.PathLike | None = None,
    data_dir: str | os.PathLike | None = None,
    force: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Fetch and prepare one dataset; returns ``{"name", "status", "images", "path", ...}``."""
    spec = get_spec(name)
    if spec.builtin:
        return {
            "name": name,
            "status": "ships with the package",
            "images": spec.images,
            "path": None,
        }
    root = ensure_writable_dir(data_root(data_dir), "--data-dir")
    remove_stale_staging(root, name)
    meta = read_meta(name, data_dir)
    if meta is not None and not force:
        return {
            "name": name,
            "status": "already prepared",
            "images": meta["n_images"],
            "path": str(root / name),
        }
    if from_path is not None:
        source = Path(from_path).expanduser()
        if not source.exists():
            raise FocalbenchError(
                f"--from {str(source)!r} does not exist; pass the downloaded archive or folder"
            )
        checksums = _verify_given(spec, source)
    elif _downloaded(spec, data_dir) or spec.downloadable:
        source = downloads_folder(name, data_dir)
        checksums = (
            _download_sources(spec, data_dir, progress)
            if spec.downloadable
            else _verify_given(spec, source)
        )
    else:
        raise FocalbenchError(how_to_get(spec, data_dir))
    base = {
        "name": name,
        "version": focalbench.__version__,
        "source": str(source),
        "sources": checksums,
        "preparation": {
            "channels": spec.channels,
            "threshold": spec.layout.threshold,
            "merge": spec.layout.merge.value,
        }
        if spec.layout
        else {},
        "expected_images": spec.images,
    }
    with _staging(root, name) as tmp, SourceTree(source) as tree:
        meta = _convert(spec, tree, tmp, base, progress)
        write_splits(spec, tmp, meta)
    status = "prepared"
    if meta["n_images"] != spec.images:
        status = f"prepared ({meta['n_images']} images; the full dataset has {spec.images})"
    return {
        "name": name,
        "status": status,
        "images": meta["n_images"],
        "path": str(root / name),
        "foreground_pct": meta["foreground_pct"],
    }


def fetch(
    names: Sequence[str] = (),
    all: bool = False,  # noqa: A002  (mirrors the --all flag)
    from_path: str | os.PathLike | None = None,
    data_dir: str | os.PathLike | None = None,
    force: bool = False,
    progress: bool = True,
) -> list[dict[str, Any]]:
    """Download (or take ``from_path``), verify, convert and split each dataset in ``names``.

    ``all=True`` fetches every dataset that can be downloaded and lists what the others need.
    A prepared dataset is left alone unless ``force``. Returns one result dict per dataset; with
    several datasets, one that fails is recorded (``status: failed``, ``error``) and the rest go on."""
    if isinstance(names, str):
        names = [names]
    if all:
        names = [n for n in dataset_names() if not get_spec(n).builtin]
    if not names:
        raise FocalbenchError(
            f"name a dataset or pass --all; choose from: {', '.join(dataset_names())}"
        )
    specs = [get_spec(n, data_dir) for n in names]  # unknown names fail before any work
    for spec in specs:
        if spec.source is not None:
            raise FocalbenchError(
                f"{spec.name!r} is your own dataset, imported from {spec.source}; it needs no fetch "
                f"(to prepare it again: focalbench import --remove {spec.name}, then import it)"
            )
    if from_path is not None and len(specs) != 1:
        raise FocalbenchError(
            "--from takes the source of one dataset; fetch one NAME at a time with --from"
        )
    results = []
    for spec in specs:
        if (
            all
            and not spec.downloadable
            and not _downloaded(spec, data_dir)
            and read_meta(spec.name, data_dir) is None
        ):
            results.append(
                {
                    "name": spec.name,
                    "status": "needs a manual download",
                    "images": 0,
                    "path": None,
                    "hint": how_to_get(spec, data_dir),
                }
            )
            continue
        try:
            results.append(fetch_one(spec.name, from_path, data_dir, force, progress))
        except FocalbenchError as exc:
            if len(specs) == 1:
                raise
            # one dataset's broken download must not stop the others
            results.append(
                {
                    "name": spec.name,
                    "status": "failed",
                    "error": str(exc),
                    "images": 0,
                    "path": None,
                }
            )
    return results


def dataset_status(data_dir: str | os.PathLike | None = None) -> list[dict[str, Any]]:
    """One row per dataset: status (missing / downloaded / prepared), images, split counts per
    rule (seed 0; fold 0 of k-fold rules), native sizes and the mean foreground percentage."""
    # user.py imports this module, so it is imported here
    from focalbench.datasets.user import size_range, user_datasets, user_specs

    rows = []
    imported = user_datasets(data_dir)
    for spec in [spec for _, spec in registry().items()] + user_specs(data_dir):
        name = spec.name
        meta = read_meta(name, data_dir)
        row: dict[str, Any] = {
            "name": name,
            "title": spec.title,
            "status": "missing",
            "images": 0,
            "splits": {},
            "native_sizes": [],
            "foreground_pct": None,
            "foreground_pct_fov": None,
        }
        if meta is None:
            row["status"] = "downloaded" if _downloaded(spec, data_dir) else "missing"
            rows.append(row)
            continue
        row.update(
            status="prepared",
            images=meta["n_images"],
            native_sizes=meta["native_sizes"],
            foreground_pct=meta["foreground_pct"],
            foreground_pct_fov=meta.get("foreground_pct_fov"),
        )
        for rule in split_rules(spec):
            fold = 0 if n_folds(rule) else None
            with contextlib.suppress(FocalbenchError):
                parts = split_indices(meta["n_images"], rule, 0, fold, meta.get("official"))
                row["splits"][rule] = {k: int(len(v)) for k, v in parts.items()}
        if name in imported:
            entry = imported[name]
            row.update(
                source=entry["source"],
                layout=entry["layout"],
                native_size_range=size_range(row["native_sizes"]),
                skipped=len(entry["skipped"]),
                mask_rule=entry["mask_rule"],
            )
        rows.append(row)
    return rows
