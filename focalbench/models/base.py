"""What every focalbench network shares: the input-size check and the attention-module API."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch
from torch import nn

from focalbench.errors import FocalbenchError
from focalbench.models.blocks import FocalLayer


class SegmentationNet(nn.Module):
    """Base class: ``(N, C, H, W)`` in, logits ``(N, 1, H, W)`` (or a list, full resolution last) out.

    ``size_multiple``: H and W must be multiples of it (2^number of down-samplings).
    ``deep_supervision``: ``forward`` returns a list of logits, coarsest first.
    """

    size_multiple: int = 1
    deep_supervision: bool = False

    def attention_modules(self) -> list[nn.Module]:
        """Addressable attention modules in position order (empty for networks without)."""
        return []

    def check_input(self, x: torch.Tensor) -> None:
        check_input_size(self, tuple(x.shape[-2:]))


def _nearest_multiples(n: int, m: int) -> list[int]:
    if n >= m and n % m == 0:  # this side already fits: keep it
        return [n]
    below = (n // m) * m
    return sorted({v for v in (below, below + m) if v > 0})


def check_input_size(model: nn.Module, size: Sequence[int]) -> None:
    """Raise :class:`FocalbenchError` unless ``size`` = (H, W) fits ``model.size_multiple``.

    The message names the nearest valid sizes, e.g. ``input 100x90 does not fit UNet: height and
    width must be multiples of 16; nearest valid sizes: 96x80, 96x96, 112x80, 112x96``.
    """
    m = int(getattr(model, "size_multiple", 1))
    h, w = (int(v) for v in size)
    if h >= m and w >= m and h % m == 0 and w % m == 0:
        return
    options = [f"{a}x{b}" for a in _nearest_multiples(h, m) for b in _nearest_multiples(w, m)]
    raise FocalbenchError(
        f"input {h}x{w} does not fit {type(model).__name__}: height and width must be multiples "
        f"of {m}; nearest valid sizes: {', '.join(options)}"
    )


def _focal_layers(model: nn.Module) -> Iterable[tuple[str, FocalLayer]]:
    for module in getattr(model, "attention_modules", lambda: [])():
        if module.focal is not None:
            yield f"{module.kind}{module.position}", module.focal


def focal_weights(model: nn.Module) -> dict[str, float]:
    """``{"se1": w, ...}`` for every Focal layer, in position order (empty when none)."""
    return {key: float(layer.weight.detach()) for key, layer in _focal_layers(model)}


@torch.no_grad()
def clamp_focal_weights_(model: nn.Module) -> None:
    """Enforce ``w ≥ 0`` on every Focal layer (Keras ``NonNeg``); call after each optimiser step."""
    for m in model.modules():
        if isinstance(m, FocalLayer):
            m.weight.clamp_(min=0.0)
