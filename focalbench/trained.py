"""A finished run's network with the preprocessing it was trained with (``predict``, ``export``).

Everything comes from the run folder: ``config.json``'s resolved recipe gives the network
(``model``, ``model_params``, ``in_channels``), the working ``size``, the ``normalization`` and,
for ``zscore_dataset``, the training split's ``input_mean``/``input_std``; ``best.pt`` or
``last.pt`` the weights. An image goes through the very functions training used:
:func:`~focalbench.datasets.prepared.decode_image` (RGB or greyscale, 16-bit min-max scaled; a
JPEG decoded at the DCT scale nearest the working size),
:func:`~focalbench.datasets.prepared.resize_image`
and :func:`~focalbench.engine.augment.normalize`. The foreground is p > 0.5 (logit > 0), the
rule of the run's own test metrics.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from focalbench import models
from focalbench.datasets.prepared import decode_image, probe_image, resize_image
from focalbench.engine import checkpoint as checkpoints
from focalbench.engine.augment import normalize
from focalbench.errors import FocalbenchError
from focalbench.protocols import Checkpoint, Normalization
from focalbench.run_state import RunFolder
from focalbench.store import read_json

THRESHOLD = 0.5


@dataclass
class TrainedNetwork:
    """``model`` in eval mode on ``device``; ``size`` (H, W) and ``channels`` it takes."""

    run_dir: Path
    key: str
    model: nn.Module
    model_name: str
    size: tuple[int, int]
    channels: int
    normalization: Normalization
    input_stats: tuple[torch.Tensor, torch.Tensor] | None
    weights: Path
    device: torch.device
    threshold: float = THRESHOLD

    def prepare(self, data: bytes) -> tuple[np.ndarray, tuple[int, int]]:
        """Encoded image → (uint8 (C, H, W) at the working size, native (H, W)), as in training.

        Raises :class:`~focalbench.datasets.prepared.UnreadableImage` for a file PIL cannot
        decode."""
        native = probe_image(data)
        image = resize_image(decode_image(data, self.channels, draft=self.size), self.size)
        return image, native

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        return normalize(images, self.normalization, self.input_stats)

    @torch.no_grad()
    def probabilities(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 ``(B, C, H, W)`` on the device → foreground probabilities float ``(B, H, W)``."""
        out = self.model(self.normalize(images))
        logits = out[-1] if isinstance(out, (list, tuple)) else out
        return torch.sigmoid(logits.float())[:, 0]

    def describe(self) -> dict[str, Any]:
        """The input contract: what an exported network's sidecar records."""
        norm: dict[str, Any] = {"mode": self.normalization.value}
        if self.input_stats is not None:
            norm.update(
                mean=self.input_stats[0].flatten().tolist(),
                std=self.input_stats[1].flatten().tolist(),
            )
        return {
            "run": self.key,
            "model": self.model_name,
            "weights": self.weights.name,
            "input_size": list(self.size),
            "channels": self.channels,
            "normalization": norm,
            "threshold": self.threshold,
        }


def load_trained(
    run_dir: str | os.PathLike,
    checkpoint: Checkpoint | str = Checkpoint.best,
    device: torch.device | str = "cpu",
) -> TrainedNetwork:
    """The network of run folder ``run_dir`` with its ``best`` (lowest validation loss) or ``last``
    weights. A folder that is not a run, or has no such weights, is a one-line error."""
    folder = RunFolder(Path(run_dir))
    try:
        which = Checkpoint(checkpoint)
    except ValueError:
        raise FocalbenchError(f"--checkpoint {checkpoint!r}: choose best or last") from None
    if not folder.config_json.is_file():
        raise FocalbenchError(
            f"{str(folder.path)!r} is not a run folder (no config.json); pass a folder of "
            "RESULTS/runs/, e.g. the 'run folder:' line that train printed"
        )
    weights = folder.best_pt if which is Checkpoint.best else folder.last_pt
    if not weights.is_file():
        other = folder.last_pt if which is Checkpoint.best else folder.best_pt
        hint = (
            f"it has {other.name}: pass --checkpoint {other.stem}"
            if other.is_file()
            else "train it first (focalbench train ... prints the run folder)"
        )
        raise FocalbenchError(f"run folder {str(folder.path)!r} has no {weights.name}; {hint}")
    saved = read_json(folder.config_json)
    resolved = saved["resolved"]
    device = torch.device(device)
    model = models.build_model(
        resolved["model"], in_channels=int(resolved["in_channels"]), **resolved["model_params"]
    )
    model.load_state_dict(checkpoints.load(weights)["model"])
    model.to(device).eval()
    stats = None
    if "input_mean" in resolved:
        stats = tuple(
            torch.tensor(resolved[k], dtype=torch.float32, device=device).view(1, -1, 1, 1)
            for k in ("input_mean", "input_std")
        )
    return TrainedNetwork(
        run_dir=folder.path,
        key=saved.get("key", folder.path.name),
        model=model,
        model_name=resolved["model"],
        size=(int(resolved["size"][0]), int(resolved["size"][1])),
        channels=int(resolved["in_channels"]),
        normalization=Normalization(resolved["normalization"]),
        input_stats=stats,
        weights=weights,
        device=device,
    )
