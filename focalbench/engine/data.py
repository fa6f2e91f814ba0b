"""Device-resident splits: the images and masks of a split live on the device as uint8.

The datasets are small (40 to 2,594 images), so a whole split fits on any GPU at working size
(2,594 × 3 × 256 × 256 bytes ≈ 0.5 GB). A batch is then an index gather on the device: no
DataLoader, no host→device copy per step.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

from focalbench.datasets import PreparedData


@dataclass
class DeviceSplit:
    """One split on the device: ``images`` uint8 ``(N, C, H, W)``, ``masks`` uint8 ``(N, 1, H, W)``,
    ``fov`` uint8 ``(N, 1, H, W)`` or ``None`` (the region where metrics count), ``ids``."""

    images: torch.Tensor
    masks: torch.Tensor
    fov: torch.Tensor | None
    ids: list[str]

    @classmethod
    def from_prepared(
        cls, data: PreparedData, indices: np.ndarray, device: torch.device
    ) -> DeviceSplit:
        def put(array: np.ndarray) -> torch.Tensor:
            return torch.from_numpy(np.ascontiguousarray(array[indices])).to(device)

        return cls(
            images=put(data.images),
            masks=put(data.masks)[:, None],
            fov=None if data.fov is None else put(data.fov)[:, None],
            ids=[data.ids[i] for i in indices],
        )

    def __len__(self) -> int:
        return len(self.ids)

    def shuffled_batches(
        self, batch_size: int, generator: torch.Generator, merge_single: bool = False
    ) -> Iterator[torch.Tensor]:
        """Index tensors of one epoch in a random order, in :func:`batch_sizes`' sizes."""
        order = torch.randperm(len(self), generator=generator, device=generator.device)
        return iter(order.split(batch_sizes(len(self), batch_size, merge_single)))

    def ordered_batches(self, batch_size: int) -> Iterator[slice]:
        return (slice(start, start + batch_size) for start in range(0, len(self), batch_size))


def batch_sizes(n: int, batch_size: int, merge_single: bool = False) -> list[int]:
    """The sizes of one epoch's training batches: full batches and, as Keras does, a shorter
    last one. ``merge_single``: a last batch of one image joins the previous batch instead
    (BatchNorm in training mode would otherwise normalise that image by its own statistics
    alone — a step Keras takes and focalbench does not; docs/training.md)."""
    sizes = [batch_size] * (n // batch_size) + ([n % batch_size] if n % batch_size else [])
    if merge_single and batch_size > 1 and len(sizes) > 1 and sizes[-1] == 1:
        sizes[-2:] = [sizes[-2] + 1]
    return sizes
