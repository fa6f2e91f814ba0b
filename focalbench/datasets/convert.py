"""One converter for every official layout, driven by the path templates of ``datasets.toml``.

The layouts differ only in where images, masks and field-of-view masks live and in how several
mask files combine, so a single template matcher covers DRIVE (FOV kept), 2018 DSB (union of
per-nucleus masks), CVC-ClinicDB (TIFF), ISIC 2018 (JPEG + PNG), BUS (PNG), BUSI (several masks
per image, merged) and the lung CT slices (TIFF). Mask pixels ``> threshold`` are foreground.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

from focalbench.datasets.catalog import DatasetSpec, FileLayout, Merge, registry
from focalbench.datasets.prepared import UnreadableImage, decode_mask, probe_image
from focalbench.datasets.sources import SourceTree
from focalbench.errors import FocalbenchError


@dataclass
class Record:
    """One image of the layout: its id, official group (e.g. DRIVE ``training``/``test``) and paths."""

    id: str
    group: str | None
    image: str
    masks: list[str] = field(default_factory=list)
    fov: str | None = None


def template_regex(template: str) -> re.Pattern[str]:
    """``"{group}/images/{id}_{group}.tif"`` → a regex matching that path ending.

    ``{id}``/``{group}`` capture one path component (a repeat must be equal), ``*`` matches within
    one component, and any leading folders are allowed (archives often add a top folder)."""
    out, seen = [], set()
    for token in re.split(r"(\{id\}|\{group\}|\*)", template):
        if token in ("{id}", "{group}"):
            key = token[1:-1]
            out.append(f"(?P={key})" if key in seen else f"(?P<{key}>[^/]+?)")
            seen.add(key)
        elif token == "*":
            out.append("[^/]*")
        else:
            out.append(re.escape(token))
    return re.compile(r"(?:^|.*/)" + "".join(out) + "$")


def _index(paths: Iterable[str], template: str) -> dict[tuple[str, str | None], list[str]]:
    pattern = template_regex(template)
    found: dict[tuple[str, str | None], list[str]] = {}
    for path in paths:
        match = pattern.match(path)
        if match:
            found.setdefault((match["id"], match.groupdict().get("group")), []).append(path)
    return found


def _first(keys: Iterable[tuple[str, str | None]], n: int = 3) -> str:
    names = sorted(k[0] for k in keys)
    more = f" and {len(names) - n} more" if len(names) > n else ""
    return ", ".join(names[:n]) + more


def natural_key(text: str) -> list[object]:
    """Sort ``2`` before ``10`` (CVC-ClinicDB's ``1..612.tif``, DRIVE's ``01..40``)."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", text)]


def looks_like(paths: list[str]) -> list[str]:
    """Datasets whose image template matches some of ``paths`` (for the wrong-archive error)."""
    return [
        spec.name
        for _, spec in registry().items()
        if spec.layout is not None
        and any(template_regex(spec.layout.image).match(p) for p in paths)
    ]


def match_layout(spec: DatasetSpec, tree: SourceTree) -> list[Record]:
    """Pair every image of ``tree`` with its mask file(s) (and FOV), sorted by id.

    Raises a one-line error for a source of another dataset, images without masks, masks without
    images, and an id that appears twice."""
    layout: FileLayout = spec.layout  # type: ignore[assignment]
    paths = tree.paths()
    exclude = re.compile(layout.image_exclude) if layout.image_exclude else None
    images = _index((p for p in paths if not (exclude and exclude.search(p))), layout.image)
    if not images:
        others = [n for n in looks_like(paths) if n != spec.name]
        hint = (
            f"; it looks like {others[0]!r}: run focalbench fetch {others[0]} --from {tree.root}"
            if others
            else ""
        )
        raise FocalbenchError(
            f"{str(tree.root)!r} does not hold the {spec.name} layout (no file matches {layout.image!r}){hint}"
        )
    masks = _index(paths, layout.mask)
    missing = images.keys() - masks.keys()
    if missing:
        raise FocalbenchError(
            f"{len(missing)} image(s) of {spec.name} have no mask ({layout.mask!r}): {_first(missing)}"
        )
    orphans = masks.keys() - images.keys()
    if orphans:
        raise FocalbenchError(
            f"{len(orphans)} mask(s) of {spec.name} have no image ({layout.image!r}): {_first(orphans)}"
        )
    fovs = _index(paths, layout.fov) if layout.fov else {}
    if layout.fov and images.keys() - fovs.keys():
        raise FocalbenchError(
            f"image(s) of {spec.name} have no field-of-view mask ({layout.fov!r}): {_first(images.keys() - fovs.keys())}"
        )
    records = []
    seen: dict[str, str] = {}
    for (ident, group), image_paths in images.items():
        if len(image_paths) > 1 or ident in seen:
            first = seen.get(ident, image_paths[0])
            raise FocalbenchError(
                f"image id {ident!r} appears twice ({first!r} and {image_paths[-1]!r}); pass only one copy with --from"
            )
        seen[ident] = image_paths[0]
        mask_paths = sorted(masks[(ident, group)])
        if layout.merge is Merge.single and len(mask_paths) > 1:
            raise FocalbenchError(
                f"image {ident!r} of {spec.name} has {len(mask_paths)} masks; expected one"
            )
        fov = fovs.get((ident, group), [None])[0]
        records.append(Record(ident, group, image_paths[0], mask_paths, fov))
    return sorted(records, key=lambda r: natural_key(r.id))


def read_record(
    spec: DatasetSpec, tree: SourceTree, rec: Record
) -> tuple[bytes, np.ndarray, np.ndarray | None]:
    """Read one record: (image bytes, proven decodable, bool mask (H, W), bool FOV or None).

    Several mask files are merged by union (2018 DSB's per-nucleus masks, BUSI's extra masks)."""
    layout: FileLayout = spec.layout  # type: ignore[assignment]
    raw = tree.read(rec.image)
    try:
        shape = probe_image(raw)
    except UnreadableImage as exc:
        raise FocalbenchError(
            f"cannot read image {rec.image!r} ({exc}); the source is damaged, fetch it again"
        ) from None
    mask = np.zeros(shape, dtype=bool)
    for path in rec.masks:
        mask |= _read_mask(tree, path, layout.threshold, shape)
    fov = None if rec.fov is None else _read_mask(tree, rec.fov, 127, shape)
    return raw, mask, fov


def _read_mask(tree: SourceTree, path: str, threshold: int, shape: tuple[int, ...]) -> np.ndarray:
    try:
        mask = decode_mask(tree.read(path), threshold)
    except UnreadableImage as exc:
        raise FocalbenchError(
            f"cannot read mask {path!r} ({exc}); the source is damaged, fetch it again"
        ) from None
    if mask.shape != tuple(shape):
        raise FocalbenchError(
            f"mask {path!r} is {mask.shape[0]}x{mask.shape[1]} but its image is {shape[0]}x{shape[1]}"
        )
    return mask
