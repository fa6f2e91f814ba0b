"""``predict``: run a trained network on new images and write masks at each image's native size.

Per image ``STEM`` of the inputs, in ``out``:

``STEM.png``          the binary mask, 0 (background) / 255 (foreground), at the native size;
``STEM_prob.png``     (``probabilities``) the foreground probability as a 16-bit PNG, p·65535;
``STEM_overlay.png``  (``overlay``) the image in RGB with the foreground tinted red.

The probability map is computed at the run's working size, resized bilinearly to the native
size, and thresholded there (p > 0.5), so the mask edge follows the interpolated probability
rather than blocky upsampled pixels. ``tta`` averages the probabilities of the image and its
horizontal, vertical and double flips (each flipped back), the flips the training augmentation
uses. Batches go to the device; a file that cannot be read or decoded is reported and skipped.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Sequence
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
)

from focalbench.datasets.convert import natural_key
from focalbench.datasets.layouts import is_image_file
from focalbench.datasets.prepared import UnreadableImage, decode_image
from focalbench.engine.device import resolve_device
from focalbench.errors import FocalbenchError
from focalbench.protocols import Checkpoint
from focalbench.store import atomic_write_bytes, ensure_writable_dir
from focalbench.trained import TrainedNetwork, load_trained

OVERLAY_ALPHA = 0.4  # weight of the red tint on foreground pixels
_FLIPS = ((), (3,), (2,), (2, 3))  # identity, horizontal, vertical, both (dims of (B, C, H, W))


def expand_inputs(inputs: Sequence[str | os.PathLike]) -> list[Path]:
    """Files as given, folders' image files (not recursive), globs' matches; in natural order
    within each input. A path that does not exist or a glob that matches nothing is an error."""
    files: list[Path] = []
    for item in inputs:
        text = str(item)
        path = Path(text).expanduser()
        if path.is_dir():
            files += sorted(
                (p for p in path.iterdir() if is_image_file(p)), key=lambda p: natural_key(p.name)
            )
        elif path.exists():
            files.append(path)
        elif glob.has_magic(text):
            matches = sorted(glob.glob(os.path.expanduser(text)), key=natural_key)
            if not matches:
                raise FocalbenchError(
                    f"{text!r} matches no file; check the pattern (quote it so the shell keeps it)"
                )
            files += [Path(m) for m in matches if Path(m).is_file()]
        else:
            raise FocalbenchError(
                f"input {text!r} does not exist; pass image files, folders or globs"
            )
    if not files:
        raise FocalbenchError("no image files in the inputs; pass image files, folders or globs")
    stems: dict[str, Path] = {}
    for path in files:
        if path.stem in stems and stems[path.stem] != path:
            raise FocalbenchError(
                f"{str(stems[path.stem])!r} and {str(path)!r} would both write {path.stem}.png; "
                "predict them into different --out folders"
            )
        stems[path.stem] = path
    return list(dict.fromkeys(files))


def _encode_png(array: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", array)
    if not ok:
        raise FocalbenchError("could not encode a PNG; check the --out folder")
    return buf.tobytes()


def _overlay(data: bytes, mask: np.ndarray) -> np.ndarray:
    """The native image in RGB, foreground blended towards red; returned as BGR for cv2."""
    rgb = decode_image(data, 3).transpose(1, 2, 0).astype(np.float32)
    red = np.array([255.0, 0.0, 0.0], dtype=np.float32)
    rgb[mask] = (1 - OVERLAY_ALPHA) * rgb[mask] + OVERLAY_ALPHA * red
    return np.round(rgb).astype(np.uint8)[..., ::-1]


def _probabilities(net: TrainedNetwork, batch: torch.Tensor, tta: bool) -> torch.Tensor:
    if not tta:
        return net.probabilities(batch)
    total = torch.zeros(batch.shape[0], *batch.shape[2:], device=batch.device)
    for dims in _FLIPS:
        flipped = batch.flip(dims) if dims else batch
        prob = net.probabilities(flipped)
        total += prob.flip([d - 1 for d in dims]) if dims else prob
    return total / len(_FLIPS)


def _write(
    net: TrainedNetwork,
    out: Path,
    path: Path,
    data: bytes,
    prob: np.ndarray,
    native: tuple[int, int],
    probabilities: bool,
    overlay: bool,
) -> dict[str, Any]:
    h, w = native
    full = (
        cv2.resize(prob, (w, h), interpolation=cv2.INTER_LINEAR) if prob.shape != (h, w) else prob
    )
    mask = full > net.threshold
    written = {
        "input": str(path),
        "mask": str(out / f"{path.stem}.png"),
        "native_size": [h, w],
        "foreground_pct": 100.0 * float(mask.mean()),
    }
    atomic_write_bytes(written["mask"], _encode_png(mask.astype(np.uint8) * 255))
    if probabilities:
        written["probabilities"] = str(out / f"{path.stem}_prob.png")
        atomic_write_bytes(
            written["probabilities"],
            _encode_png(np.round(np.clip(full, 0, 1) * 65535).astype(np.uint16)),
        )
    if overlay:
        written["overlay"] = str(out / f"{path.stem}_overlay.png")
        atomic_write_bytes(written["overlay"], _encode_png(_overlay(data, mask)))
    return written


def predict(
    run_dir: str | os.PathLike,
    inputs: Sequence[str | os.PathLike],
    out: str | os.PathLike,
    probabilities: bool = False,
    overlay: bool = False,
    tta: bool = False,
    checkpoint: Checkpoint | str = Checkpoint.best,
    device: str = "auto",
    batch_size: int = 8,
    progress: bool = True,
) -> dict[str, Any]:
    """Segment ``inputs`` (files, folders, globs) with the network of ``run_dir``; write the masks
    (and optional probability maps and overlays) into ``out``.

    Returns ``{"run", "weights", "out", "written": [{"input", "mask", "native_size", ...}],
    "skipped": [{"input", "reason"}]}``."""
    if batch_size < 1:
        raise FocalbenchError(f"--batch-size {batch_size}: must be at least 1")
    files = expand_inputs(inputs)
    net = load_trained(run_dir, checkpoint, resolve_device(device))
    out_dir = ensure_writable_dir(out, "--out")
    written: list[dict[str, Any]] = []
    skipped: list[dict[str, str]] = []
    console = Console(stderr=True)
    bar = (
        Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            console=console,
        )
        if progress
        else None
    )
    with bar if bar is not None else nullcontext():
        task = (
            bar.add_task(f"predicting with {net.key}", total=len(files))
            if bar is not None
            else None
        )
        for start in range(0, len(files), batch_size):
            batch: list[tuple[Path, bytes, np.ndarray, tuple[int, int]]] = []
            for path in files[start : start + batch_size]:
                try:
                    data = path.read_bytes()
                    image, native = net.prepare(data)
                except (OSError, UnreadableImage) as exc:
                    reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
                    skipped.append({"input": str(path), "reason": reason})
                    if bar is not None:
                        bar.console.print(f"skipped {path}: {reason}")
                        bar.advance(task)
                    continue
                batch.append((path, data, image, native))
            if not batch:
                continue
            x = torch.from_numpy(np.stack([b[2] for b in batch])).to(net.device)
            probs = _probabilities(net, x, tta).cpu().numpy().astype(np.float32)
            for (path, data, _, native), prob in zip(batch, probs, strict=False):
                written.append(
                    _write(net, out_dir, path, data, prob, native, probabilities, overlay)
                )
                if bar is not None:
                    bar.advance(task)
    return {
        "run": net.key,
        "weights": str(net.weights),
        "out": str(out_dir),
        "written": written,
        "skipped": skipped,
    }
