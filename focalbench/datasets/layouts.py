"""Pair the images and masks of a user's folder: four common 2D layouts, detected or forced.

``folders``  two sibling folders matched by file stem (relative path without extension):
             ``images/``+``masks/``, ``original/``+``GT/``, ``imgs/``+``labels/``,
             ``image/``+``mask/``
             and the like (names compared case-insensitively, without spaces, ``-`` and ``_``);
             a mask stem may carry a ``_mask``/``_gt``/``_seg``/``_label`` suffix.
``suffix``   masks beside their images (BUSI): ``x.png`` + ``x_mask.png``; several masks
             ``x_mask_1.png``, … are merged by union; an image's folder (``benign/``) is its
             class.
``nnunet``   nnU-Net v2: ``imagesTr/{case}_0000.png`` + ``labelsTr/{case}.png`` + ``dataset.json``
             (2D PNG or TIFF, one channel file per case).
``csv``      a CSV file with ``image`` and ``mask`` columns (and optionally ``class``); paths are
             relative to the CSV's folder; a repeated image has its masks merged.

Every detector returns the pairs it found and the problems (an image without a mask, a mask
without an image, two images of one name); :func:`find_pairs` runs them all and refuses an
ambiguous folder. Nothing here decodes an image.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

from focalbench.datasets.convert import Record, natural_key
from focalbench.errors import FocalbenchError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".gif")
IMAGE_FOLDER_NAMES = {"images", "image", "imgs", "img", "original", "originals", "input", "inputs"}
MASK_FOLDER_NAMES = {
    "masks",
    "mask",
    "gt",
    "groundtruth",
    "labels",
    "label",
    "annotations",
    "annotation",
    "segmentations",
    "segmentation",
    "seg",
    "manual",
}
_MASK_STEM_SUFFIX = re.compile(r"[_ -](mask|gt|seg|segmentation|label|labels)$", re.IGNORECASE)
_BESIDE_MASK = re.compile(r"^(?P<base>.+)_mask(?:_\d+)?$", re.IGNORECASE)
_NNUNET_IMAGE = re.compile(r"^(?P<case>.+)_(?P<channel>\d{4})$")


class LayoutKind(str, Enum):
    folders = "folders"
    suffix = "suffix"
    nnunet = "nnunet"
    csv = "csv"


@dataclass(frozen=True)
class Problem:
    """A file left out of a dataset: ``kind`` (counted in messages) and a ``detail``."""

    path: str
    kind: str
    detail: str = ""

    @property
    def reason(self) -> str:
        return f"{self.kind} ({self.detail})" if self.detail else self.kind


@dataclass
class Pairing:
    """What one layout found: ``records`` (``group`` = the image's class or ``None``; absolute
    paths) sorted naturally by id, and the ``problems`` of pairing."""

    layout: LayoutKind
    description: str
    records: list[Record] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)


def is_image_file(path: Path) -> bool:
    return (
        path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".")
    )


def _image_files(folder: Path) -> list[Path]:
    """Image files under ``folder`` (recursively), hidden files and folders left out."""
    return sorted(
        p
        for p in folder.rglob("*")
        if is_image_file(p)
        and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    )


def _key(path: Path, folder: Path) -> str:
    return path.relative_to(folder).with_suffix("").as_posix()


def _folder_name(name: str) -> str:
    return re.sub(r"[\s_-]+", "", name.lower())


def _shown(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return str(path)


def _finish(
    pairing: Pairing,
    images: dict[str, Path],
    masks: dict[str, list[Path]],
    root: Path,
    groups: dict[str, str | None],
) -> Pairing:
    """Records for ids with both, problems for the rest; ids are stems where those are unique."""
    for key in sorted(images.keys() - masks.keys(), key=natural_key):
        pairing.problems.append(Problem(_shown(images[key], root), "image without a mask"))
    for key in sorted(masks.keys() - images.keys(), key=natural_key):
        for mask in masks[key]:
            pairing.problems.append(Problem(_shown(mask, root), "mask without an image"))
    paired = sorted(images.keys() & masks.keys(), key=natural_key)
    stems = [key.rsplit("/", 1)[-1] for key in paired]
    unique = len(set(stems)) == len(stems)
    pairing.records = [
        Record(
            stem if unique else key,
            groups.get(key),
            str(images[key]),
            [str(m) for m in sorted(masks[key])],
        )
        for key, stem in zip(paired, stems, strict=False)
    ]
    pairing.records.sort(key=lambda r: natural_key(r.id))
    return pairing


def _add_image(images: dict[str, Path], key: str, path: Path, pairing: Pairing, root: Path) -> None:
    if key in images:
        pairing.problems.append(
            Problem(
                _shown(path, root),
                "second image of one name",
                f"{key!r}, the first is {_shown(images[key], root)!r}",
            )
        )
        return
    images[key] = path


def folder_candidates(root: Path) -> list[tuple[Path, Path]]:
    """Every (images folder, masks folder) pair of ``root``'s sub-folders by name."""
    subfolders = [d for d in sorted(root.iterdir()) if d.is_dir()] if root.is_dir() else []
    image_dirs = [d for d in subfolders if _folder_name(d.name) in IMAGE_FOLDER_NAMES]
    mask_dirs = [d for d in subfolders if _folder_name(d.name) in MASK_FOLDER_NAMES]
    return [(i, m) for i in image_dirs for m in mask_dirs]


def pair_folders(root: Path) -> Pairing | None:
    candidates = folder_candidates(root)
    if not candidates:
        return None
    if len(candidates) > 1:
        names = ", ".join(f"{i.name}/+{m.name}/" for i, m in candidates)
        raise FocalbenchError(
            f"{str(root)!r} has several image/mask folder pairs ({names}); "
            "keep one pair in the folder, or list the pairs in a CSV of image,mask paths "
            "and import that"
        )
    image_dir, mask_dir = candidates[0]
    pairing = Pairing(
        LayoutKind.folders, f"folders: {image_dir.name}/ + {mask_dir.name}/ matched by file stem"
    )
    images: dict[str, Path] = {}
    for path in _image_files(image_dir):
        _add_image(images, _key(path, image_dir), path, pairing, root)
    masks: dict[str, list[Path]] = {}
    for path in _image_files(mask_dir):
        key = _key(path, mask_dir)
        if key not in images:
            key = _MASK_STEM_SUFFIX.sub("", key)
        masks.setdefault(key, []).append(path)
    return _finish(pairing, images, masks, root, {})


def pair_suffix(root: Path) -> Pairing | None:
    if not root.is_dir():
        return None
    pairing = Pairing(
        LayoutKind.suffix,
        "suffix: x.png + x_mask.png (x_mask_1.png, … merged by union), sub-folders as classes",
    )
    images: dict[str, Path] = {}
    masks: dict[str, list[Path]] = {}
    for path in _image_files(root):
        key = _key(path, root)
        beside = _BESIDE_MASK.match(path.stem)
        if beside:
            masks.setdefault(key[: len(key) - len(path.stem)] + beside["base"], []).append(path)
        else:
            _add_image(images, key, path, pairing, root)
    if not images.keys() & masks.keys():
        return None
    groups = {
        key: (path.parent.name if path.parent != root else None) for key, path in images.items()
    }
    return _finish(pairing, images, masks, root, groups)


def _child(root: Path, name: str) -> Path | None:
    """``root``'s entry called ``name``, compared case-insensitively."""
    if not root.is_dir():
        return None
    return next((p for p in sorted(root.iterdir()) if p.name.lower() == name.lower()), None)


def pair_nnunet(root: Path) -> Pairing | None:
    image_dir, label_dir, manifest = (
        _child(root, n) for n in ("imagesTr", "labelsTr", "dataset.json")
    )
    if image_dir is None or label_dir is None or manifest is None:
        return None
    try:
        info = json.loads(manifest.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise FocalbenchError(
            f"cannot read {str(manifest)!r} ({exc}); fix the nnU-Net dataset.json"
        ) from None
    ending = str(info.get("file_ending", ".png")).lower()
    if ending not in IMAGE_SUFFIXES:
        raise FocalbenchError(
            f"{str(root)!r} is an nnU-Net dataset of {ending!r} files; focalbench imports 2D "
            f"images ({', '.join(IMAGE_SUFFIXES)}): convert the cases to PNG or TIFF slices"
        )
    channels = len(info.get("channel_names") or info.get("modality") or {"0": ""})
    if channels != 1:
        raise FocalbenchError(
            f"{str(root)!r} is an nnU-Net dataset with {channels} channel files per case; "
            "focalbench reads one (greyscale or RGB) image per case: merge them into one file"
        )
    pairing = Pairing(
        LayoutKind.nnunet, "nnunet: imagesTr/{case}_0000 + labelsTr/{case} + dataset.json"
    )
    images: dict[str, Path] = {}
    for path in _image_files(image_dir):
        match = _NNUNET_IMAGE.match(path.stem)
        if match is None or match["channel"] != "0000":
            pairing.problems.append(Problem(_shown(path, root), "not an nnU-Net {case}_0000 file"))
            continue
        _add_image(images, match["case"], path, pairing, root)
    masks = {path.stem: [path] for path in _image_files(label_dir)}
    return _finish(pairing, images, masks, root, {})


def pair_csv(root: Path) -> Pairing | None:
    if not (root.is_file() and root.suffix.lower() == ".csv"):
        return None
    with open(root, newline="", encoding="utf-8-sig") as handle:
        rows = list(csv.DictReader(handle))
    columns = {name.strip().lower(): name for name in (rows[0].keys() if rows else [])}
    if "image" not in columns or "mask" not in columns:
        raise FocalbenchError(
            f"{str(root)!r} needs a header with columns image,mask (optional: class); "
            f"found: {', '.join(columns) or 'no rows'}"
        )
    pairing = Pairing(LayoutKind.csv, f"csv: image,mask columns of {root.name}")
    base = root.parent
    images: dict[str, Path] = {}
    masks: dict[str, list[Path]] = {}
    groups: dict[str, str | None] = {}
    for row in rows:
        image = base / row[columns["image"]].strip()
        mask = base / row[columns["mask"]].strip()
        key = image.with_suffix("").as_posix()
        for path, what in ((image, "image"), (mask, "mask")):
            if not path.is_file():
                pairing.problems.append(
                    Problem(str(path), f"{what} not found", f"listed in {root.name}")
                )
        if not (image.is_file() and mask.is_file()):
            continue
        images[key] = image
        masks.setdefault(key, []).append(mask)
        groups[key] = row[columns["class"]].strip() or None if "class" in columns else None
    return _finish(pairing, images, masks, root, groups)


DETECTORS: dict[LayoutKind, Callable[[Path], Pairing | None]] = {
    LayoutKind.folders: pair_folders,
    LayoutKind.suffix: pair_suffix,
    LayoutKind.nnunet: pair_nnunet,
    LayoutKind.csv: pair_csv,
}


def find_pairs(root: Path, layout: LayoutKind | str | None = None) -> Pairing:
    """The pairing of ``root`` in ``layout``, or in the one layout that pairs anything there.

    No layout, or several, is a one-line error naming what was looked for or the candidates."""
    if layout is not None:
        try:
            kind = LayoutKind(layout)
        except ValueError:
            raise FocalbenchError(
                f"unknown --layout {layout!r}; choose from: "
                f"{', '.join(k.value for k in LayoutKind)}"
            ) from None
        found = DETECTORS[kind](root)
        if found is None or not found.records:
            raise FocalbenchError(
                f"{str(root)!r} has no image/mask pairs in the {kind.value} layout; "
                f"{_LOOKED_FOR[kind]}"
            )
        return found
    fits = [
        p for p in (detect(root) for detect in DETECTORS.values()) if p is not None and p.records
    ]
    if not fits:
        raise FocalbenchError(
            f"no image/mask layout found in {str(root)!r}; expected one of: "
            + "; ".join(_LOOKED_FOR.values())
        )
    if len(fits) > 1:
        names = "; ".join(f"{p.description} ({len(p.records)} pairs)" for p in fits)
        raise FocalbenchError(
            f"{str(root)!r} fits several layouts: {names}; choose one with "
            + " or ".join(f"--layout {p.layout.value}" for p in fits)
        )
    return fits[0]


_LOOKED_FOR = {
    LayoutKind.folders: (
        "folders: sibling images/ + masks/ (or original/ + GT/, imgs/ + labels/, image/ + mask/)"
    ),
    LayoutKind.suffix: "suffix: x.png + x_mask.png in one folder",
    LayoutKind.nnunet: "nnunet: imagesTr/ + labelsTr/ + dataset.json",
    LayoutKind.csv: "csv: a .csv file with image,mask columns",
}
