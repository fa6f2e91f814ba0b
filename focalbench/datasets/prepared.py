"""The prepared dataset on disk, and :func:`load`.

A prepared dataset is a folder ``<data_root>/<name>/`` written once by ``fetch``:

============== ==================================================================================
``meta.json``   ids (sorted), official partition, native sizes, foreground %, source sha256s,
                preparation parameters, package version. Written last: no ``meta.json``, no dataset.
``index.npz``   int64 arrays: byte ``offset``/``length`` of each record in the ``.bin`` files,
                native ``height``/``width``.
``images.bin``  the original encoded image files (TIFF/PNG/JPEG as published, never re-encoded),
                concatenated: lossless, and no larger than the source (ISIC is ~11 GB of JPEG).
``masks.bin``   binary masks (0/1) as 8-bit PNGs, after thresholding / merging.
``fov.bin``     field-of-view masks as PNGs (DRIVE only).
``cache/``      ``<H>x<W>.npz`` (or ``native.npz``): images (N,C,H,W), masks (N,H,W), fov —
                the arrays :func:`load` returns, decoded and resized once per size, then read in one
                ``numpy.load``.
============== ==================================================================================

Resizing follows a rule (``RESIZE_RULES``; the protocol's ``resize`` field names one):

* ``area`` (default): images with ``INTER_AREA`` when shrinking (anti-aliased, like paper
  002's "anti-aliasing down-sampling"), bilinear when enlarging; masks and FOV nearest, so they
  stay {0, 1}.
* ``nearest``: ``cv2.INTER_NEAREST`` for images, masks and FOV (paper 003's code).
* ``miscnn``: MIScnn's ``Resize`` subfunction (batchgenerators → scikit-image ``resize`` with
  ``mode="edge"``, ``anti_aliasing=False``): images by an order-3 spline, clipped to their input
  range and rounded to uint8; masks and FOV by linear interpolation, foreground where ≥ 0.5.

The cache file of a rule other than ``area`` is ``<H>x<W>-<rule>.npz``.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, BinaryIO

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError
from scipy import ndimage

from focalbench.datasets.catalog import get_spec
from focalbench.datasets.splits import split_indices
from focalbench.errors import FocalbenchError
from focalbench.store import atomic_open, atomic_write_json, read_json

Image.MAX_IMAGE_PIXELS = None  # ISIC originals reach 6,000 x 4,000 pixels; they are trusted inputs

FORMAT_VERSION = 1
RESIZE_RULES = ("area", "nearest", "miscnn")


def data_root(explicit: str | os.PathLike | None = None) -> Path:
    """The folder of prepared datasets: ``explicit``, else ``$FOCALBENCH_DATA``, else ``./data``."""
    if explicit is not None:
        return Path(explicit)
    return Path(os.environ.get("FOCALBENCH_DATA", "data"))


@dataclass
class PreparedData:
    """A dataset in memory: ``images`` uint8 (N, C, H, W), ``masks`` uint8 (N, H, W) in {0, 1},
    ``fov`` uint8 (N, H, W) or ``None``, ``ids`` in storage order, ``meta`` from ``meta.json``
    (plus ``size``, the (H, W) of these arrays)."""

    name: str
    images: np.ndarray
    masks: np.ndarray
    fov: np.ndarray | None
    ids: list[str]
    meta: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.ids)


def fingerprint(data: PreparedData) -> dict[str, Any]:
    """The arrays a run trained on, as a verdict's provenance shows them: ``sha256`` over the ids
    and the shape and bytes of images, masks (and FOV); the image count; the working size; the
    range of native sizes (H, W); the mean foreground % of the native masks (``meta.json``)."""
    digest = hashlib.sha256("\n".join(data.ids).encode())
    for array in (data.images, data.masks, data.fov):
        if array is not None:
            contiguous = np.ascontiguousarray(array)
            digest.update(repr(contiguous.shape).encode())
            digest.update(contiguous.data)
    native = [tuple(s) for s in data.meta.get("native_sizes") or []]
    return {
        "sha256": digest.hexdigest(),
        "n_images": len(data),
        "size": [int(s) for s in data.masks.shape[1:]],
        "native_min": [min(h for h, _ in native), min(w for _, w in native)] if native else None,
        "native_max": [max(h for h, _ in native), max(w for _, w in native)] if native else None,
        "foreground_pct": data.meta.get("foreground_pct"),
    }


# ----------------------------------------------------------------------------- decoding


class UnreadableImage(Exception):
    """Raised by the decoders; the converter turns it into a one-line user error naming the file."""


def _to_uint8(arr: np.ndarray) -> np.ndarray:
    """16-bit / float images (lung CT slices) are min-max scaled per image to 0..255."""
    if arr.dtype == np.uint8:
        return arr
    arr = arr.astype(np.float64)
    lo, hi = float(arr.min()), float(arr.max())
    scale = 255.0 / (hi - lo) if hi > lo else 0.0
    return np.round((arr - lo) * scale).astype(np.uint8)


# What PIL raises on a damaged or foreign file (truncation is an OSError).
_DECODE_ERRORS = (UnidentifiedImageError, OSError, SyntaxError, ValueError)


def _reason(exc: BaseException) -> str:
    """PIL names the in-memory stream (``<_io.BytesIO object at 0x…>``), not the file: say what it means."""
    if isinstance(exc, UnidentifiedImageError):
        return "not an image in a format PIL can read"
    return str(exc) or type(exc).__name__


def _open(data: bytes, draft: tuple[int, int] | None = None) -> Image.Image:
    """Decode ``data``; a JPEG with ``draft`` = (H, W) decodes at the smallest 1/2, 1/4 or 1/8
    DCT scale still at least that large (ISIC originals are ~7 Mpx; paper 003 works at 192×256)."""
    try:
        img = Image.open(io.BytesIO(data))
        if draft is not None and img.format == "JPEG":
            img.draft(img.mode, (draft[1], draft[0]))
        img.load()
    except _DECODE_ERRORS as exc:
        raise UnreadableImage(_reason(exc)) from None
    return img


def probe_image(data: bytes) -> tuple[int, int]:
    """Native (H, W) of an encoded image, after proving the whole stream decodes (a truncated
    file fails here, at ``fetch``, not at training time). JPEGs decode at 1/8 scale for speed."""
    try:
        with Image.open(io.BytesIO(data)) as head:
            width, height = head.size
    except _DECODE_ERRORS as exc:
        raise UnreadableImage(_reason(exc)) from None
    _open(data, draft=(1, 1))
    return height, width


def decode_image(data: bytes, channels: int, draft: tuple[int, int] | None = None) -> np.ndarray:
    """Encoded image → uint8 (C, H, W) with ``channels`` 1 (greyscale) or 3 (RGB; alpha dropped).

    ``draft`` = the working (H, W): JPEGs may then come back smaller than native (but not smaller
    than ``draft``), which the caller resizes anyway."""
    img = _open(data, draft)
    if img.mode in {"I", "I;16", "I;16B", "I;16L", "F"}:
        grey = _to_uint8(np.asarray(img))
        arr = grey[None] if channels == 1 else np.repeat(grey[None], 3, axis=0)
        return np.ascontiguousarray(arr)
    img = img.convert("L" if channels == 1 else "RGB")
    arr = np.asarray(img, dtype=np.uint8)
    return np.ascontiguousarray(arr[None] if channels == 1 else arr.transpose(2, 0, 1))


def decode_mask(data: bytes, threshold: int) -> np.ndarray:
    """Encoded mask → bool (H, W): luminance (palette and colour masks included) > ``threshold``."""
    img = _open(data)
    if img.mode not in {"I", "I;16", "I;16B", "I;16L", "F", "L"}:
        img = img.convert("L")
    return np.asarray(img) > threshold


def encode_binary(mask: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", mask.astype(np.uint8))
    assert ok
    return buf.tobytes()


def _decode_binary(data: bytes) -> np.ndarray:
    return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)


def _check_rule(rule: str) -> None:
    if rule not in RESIZE_RULES:
        choices = ", ".join(RESIZE_RULES)
        raise FocalbenchError(f"unknown resize rule {rule!r}; choose from: {choices}")


def skimage_resize(plane: np.ndarray, size: tuple[int, int], order: int) -> np.ndarray:
    """One float64 (H, W) plane resized as scikit-image's ``resize(order, mode="edge",
    anti_aliasing=False)``: output pixel o samples input coordinate (o + ½)·(in/out) − ½ with a
    spline of ``order`` (scipy ``map_coordinates``, edge values repeated)."""
    h, w = size
    rows = (np.arange(h) + 0.5) * (plane.shape[0] / h) - 0.5
    cols = (np.arange(w) + 0.5) * (plane.shape[1] / w) - 0.5
    grid = np.meshgrid(rows, cols, indexing="ij")
    return ndimage.map_coordinates(plane.astype(np.float64), grid, order=order, mode="nearest")


def resize_image(img: np.ndarray, size: tuple[int, int], rule: str = "area") -> np.ndarray:
    """(C, H, W) uint8 → (C, *size) by ``rule`` (module docstring)."""
    _check_rule(rule)
    h, w = size
    if img.shape[1:] == (h, w):
        return img
    if rule == "miscnn":
        planes = [np.clip(skimage_resize(c, size, 3), c.min(), c.max()) for c in img]
        return np.round(np.stack(planes)).astype(np.uint8)
    if rule == "nearest":
        interp = cv2.INTER_NEAREST
    else:
        shrink = h <= img.shape[1] and w <= img.shape[2]
        interp = cv2.INTER_AREA if shrink else cv2.INTER_LINEAR
    out = cv2.resize(img.transpose(1, 2, 0), (w, h), interpolation=interp)
    return out[None] if out.ndim == 2 else out.transpose(2, 0, 1)


def resize_mask(mask: np.ndarray, size: tuple[int, int], rule: str = "area") -> np.ndarray:
    """A {0, 1} (H, W) mask (uint8 or bool) → ``size``, same dtype: nearest neighbour
    (``cv2.INTER_NEAREST``), or under ``miscnn`` linear interpolation thresholded at 0.5."""
    _check_rule(rule)
    h, w = size
    if mask.shape == (h, w):
        return mask
    if rule == "miscnn":
        return (skimage_resize(mask > 0, size, 1) >= 0.5).astype(mask.dtype)
    if mask.dtype == np.bool_:
        return cv2.resize(mask.astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST) > 0
    return cv2.resize(mask, (w, h), interpolation=cv2.INTER_NEAREST)


# ----------------------------------------------------------------------------- writing


class PreparedWriter:
    """Streams records into a (temporary) prepared-dataset folder; ``finish`` writes the index and
    ``meta.json``. Records must arrive sorted by id."""

    def __init__(self, folder: Path, channels: int, with_fov: bool) -> None:
        self.folder = folder
        self.channels = channels
        folder.mkdir(parents=True, exist_ok=True)
        self._files: dict[str, BinaryIO] = {"images": open(folder / "images.bin", "wb")}
        self._files["masks"] = open(folder / "masks.bin", "wb")
        if with_fov:
            self._files["fov"] = open(folder / "fov.bin", "wb")
        self._index: dict[str, list[int]] = {k: [] for k in ("height", "width")}
        for key in self._files:
            self._index[f"{key}_offset"] = []
            self._index[f"{key}_length"] = []
        self.ids: list[str] = []
        self.groups: list[str | None] = []
        self._fg: list[float] = []
        self._fg_fov: list[float] = []

    def _put(self, key: str, data: bytes) -> None:
        handle = self._files[key]
        self._index[f"{key}_offset"].append(handle.tell())
        self._index[f"{key}_length"].append(len(data))
        handle.write(data)

    def add(
        self,
        ident: str,
        image_bytes: bytes,
        mask: np.ndarray,
        fov: np.ndarray | None,
        group: str | None,
    ) -> None:
        """One image: its original bytes (already proven decodable), a bool mask, an optional FOV."""
        self.ids.append(ident)
        self.groups.append(group)
        self._index["height"].append(mask.shape[0])
        self._index["width"].append(mask.shape[1])
        self._put("images", image_bytes)
        self._put("masks", encode_binary(mask))
        self._fg.append(float(mask.mean()))
        if "fov" in self._files:
            assert fov is not None
            self._put("fov", encode_binary(fov))
            self._fg_fov.append(float(mask[fov > 0].mean()) if fov.any() else 0.0)

    def close(self) -> None:
        """Flush the record files to disk and close them (safe to call twice)."""
        for handle in self._files.values():
            if not handle.closed:
                handle.flush()
                os.fsync(handle.fileno())
                handle.close()

    def finish(self, meta: dict[str, Any]) -> dict[str, Any]:
        self.close()
        with atomic_open(self.folder / "index.npz", "wb") as handle:
            np.savez(handle, **{k: np.asarray(v, dtype=np.int64) for k, v in self._index.items()})
        sizes = sorted(
            {(h, w) for h, w in zip(self._index["height"], self._index["width"], strict=False)}
        )
        official: dict[str, list[int]] = {}
        if any(g is not None for g in self.groups):
            for i, g in enumerate(self.groups):
                official.setdefault(_official_name(g), []).append(i)
        meta = {
            **meta,
            "format": FORMAT_VERSION,
            "channels": self.channels,
            "n_images": len(self.ids),
            "ids": self.ids,
            "official": official or None,
            "native_sizes": [list(s) for s in sizes],
            "foreground_pct": 100.0 * float(np.mean(self._fg)) if self._fg else 0.0,
            "foreground_pct_std": 100.0 * float(np.std(self._fg)) if self._fg else 0.0,
            "foreground_pct_fov": 100.0 * float(np.mean(self._fg_fov)) if self._fg_fov else None,
            "has_fov": "fov" in self._files,
        }
        atomic_write_json(self.folder / "meta.json", meta)
        return meta


def _official_name(group: str | None) -> str:
    """DRIVE's folders are ``training``/``test``; the partition is stored as ``train``/``test``."""
    return {"training": "train", "train": "train", "test": "test"}.get(
        group or "", group or "train"
    )


# ----------------------------------------------------------------------------- reading


def _read_records(path: Path, offsets: np.ndarray, lengths: np.ndarray) -> Iterable[bytes]:
    with open(path, "rb") as handle:
        for off, length in zip(offsets.tolist(), lengths.tolist(), strict=False):
            handle.seek(off)
            yield handle.read(length)


def _decode_all(
    folder: Path, meta: dict[str, Any], size: tuple[int, int] | None, rule: str = "area"
) -> dict[str, np.ndarray]:
    index = np.load(folder / "index.npz")
    channels = int(meta["channels"])
    # JPEG draft decoding shrinks by DCT scaling first: fine for area, not for nearest/spline
    draft = size if rule == "area" else None
    images = [
        resize_image(decode_image(b, channels, draft=draft), size, rule)
        if size
        else decode_image(b, channels)
        for b in _read_records(
            folder / "images.bin", index["images_offset"], index["images_length"]
        )
    ]
    masks = [
        resize_mask(_decode_binary(b), size, rule) if size else _decode_binary(b)
        for b in _read_records(folder / "masks.bin", index["masks_offset"], index["masks_length"])
    ]
    arrays = {"images": np.stack(images), "masks": np.stack(masks).astype(np.uint8)}
    if meta.get("has_fov"):
        fov = [
            resize_mask(_decode_binary(b), size, rule) if size else _decode_binary(b)
            for b in _read_records(folder / "fov.bin", index["fov_offset"], index["fov_length"])
        ]
        arrays["fov"] = np.stack(fov).astype(np.uint8)
    return arrays


def load_native_masks(
    name: str, indices: Iterable[int], data_dir: str | os.PathLike | None = None
) -> tuple[list[np.ndarray], list[np.ndarray] | None]:
    """The original-size masks (uint8 {0, 1}, each its own (H, W)) of images ``indices`` of a
    prepared dataset, and their FOV masks where it has them: what native-size scoring compares
    the resized-back predictions with."""
    folder = prepared_folder(name, data_dir)
    meta = read_meta(name, data_dir)
    if meta is None:
        raise FocalbenchError(
            f"dataset {name!r} is not prepared in {folder.parent}; run: {fetch_hint(name, data_dir)}"
        )
    index = np.load(folder / "index.npz")
    picked = np.asarray(list(indices), dtype=np.int64)

    def read(key: str) -> list[np.ndarray]:
        offsets, lengths = index[f"{key}_offset"][picked], index[f"{key}_length"][picked]
        records = _read_records(folder / f"{key}.bin", offsets, lengths)
        return [_decode_binary(b).astype(np.uint8) for b in records]

    return read("masks"), (read("fov") if meta.get("has_fov") else None)


def sample_folder() -> Path:
    return Path(str(resources.files("focalbench").joinpath("data", "sample")))


def prepared_folder(name: str, data_dir: str | os.PathLike | None = None) -> Path:
    spec = get_spec(name, data_dir)
    return sample_folder() if spec.builtin else data_root(data_dir) / name


def fetch_hint(name: str, data_dir: str | os.PathLike | None = None) -> str:
    """The command that prepares ``name``: a plain fetch when it downloads, else ``--from PATH``."""
    spec = get_spec(name, data_dir)
    where = "" if data_dir is None else f" --data-dir {data_dir}"
    if spec.source is not None:
        return f"focalbench import {name} {spec.source}{where}"
    source = "" if spec.downloadable else " --from PATH"
    return f"focalbench fetch {name}{source}{where}"


def read_meta(name: str, data_dir: str | os.PathLike | None = None) -> dict[str, Any] | None:
    """``meta.json`` of a prepared dataset, or ``None`` when it is not prepared."""
    path = prepared_folder(name, data_dir) / "meta.json"
    return read_json(path) if path.is_file() else None


def load(
    name: str,
    size: tuple[int, int] | None = None,
    data_dir: str | os.PathLike | None = None,
    resize: str = "area",
) -> PreparedData:
    """Load a prepared dataset as uint8 arrays at ``size`` = (H, W) (``None``: native size, only
    for datasets whose images share one size), resized by rule ``resize`` (``RESIZE_RULES``).
    The first load at a size and rule decodes and resizes every image and caches the arrays in
    ``cache/<H>x<W>.npz`` (``<H>x<W>-<rule>.npz``); later loads are one ``numpy.load``."""
    _check_rule(resize)
    folder = prepared_folder(name, data_dir)
    meta = read_meta(name, data_dir)
    if meta is None:
        raise FocalbenchError(
            f"dataset {name!r} is not prepared in {folder.parent}; run: {fetch_hint(name, data_dir)}"
        )
    if size is None:
        if len(meta["native_sizes"]) != 1:
            raise FocalbenchError(
                f"dataset {name!r} has images of {len(meta['native_sizes'])} different sizes; "
                "pass a working size, e.g. size=(256, 256) (CLI: --param size=256x256)"
            )
    else:
        size = (int(size[0]), int(size[1]))
        if min(size) < 1:
            raise FocalbenchError(
                f"size {size} is not a valid (H, W); pass positive integers, e.g. 256x256"
            )
    suffix = "" if resize == "area" else f"-{resize}"
    cache = (
        folder / "cache" / ("native.npz" if size is None else f"{size[0]}x{size[1]}{suffix}.npz")
    )
    if cache.is_file():
        with np.load(cache) as npz:
            arrays = {k: npz[k] for k in npz.files}
    else:
        arrays = _decode_all(folder, meta, size, resize)
        if not get_spec(
            name, data_dir
        ).builtin:  # the shipped sample may sit in a read-only site-packages
            # The cache only saves time: a read-only shared data folder still loads, uncached.
            with contextlib.suppress(PermissionError, OSError):
                with atomic_open(cache, "wb") as handle:
                    np.savez(handle, **arrays)
    actual = tuple(arrays["masks"].shape[1:])
    return PreparedData(
        name=name,
        images=arrays["images"],
        masks=arrays["masks"],
        fov=arrays.get("fov"),
        ids=list(meta["ids"]),
        meta={**meta, "size": actual, "resize": resize},
    )


def get_split(
    data: PreparedData, rule: str, seed: int = 0, fold: int | None = None
) -> dict[str, np.ndarray]:
    """Train/val/test int64 index arrays into ``data`` for a split rule (see ``splits.py``)."""
    return split_indices(len(data.ids), rule, seed, fold, data.meta.get("official"))
