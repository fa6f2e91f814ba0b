"""Keras arithmetic in PyTorch: TensorFlow's 'same' padding and Keras' BatchNorm defaults.

Every paper network here was published as Keras code. Two of Keras' conventions change the
numbers a PyTorch port computes:

* **'same' padding is asymmetric.** TensorFlow pads ``total = max((⌈n/s⌉ − 1)·s + k − n, 0)``
  zeros along a side of length n (kernel k, stride s), ``⌊total/2⌋`` before and the rest
  *after*. A stride-2 3×3 convolution on an even side gets 0 before and 1 after (PyTorch's
  ``padding=1`` puts one on each side, so every output pixel is centred one input pixel off);
  on an odd side it gets 1 and 1. A 2×2 stride-1 convolution gets 0 and 1. A transposed
  convolution with 'same' gives ``n·s`` pixels: the full transposed output cropped from
  ``⌊max(k − s, 0)/2⌋`` — for a stride-2 3×3 kernel, the full ``2n + 1`` with the last row and
  column cut off (PyTorch's ``padding=1, output_padding=1`` cuts the first instead).
  :class:`Conv2dSame` and :class:`ConvTranspose2dSame` compute exactly that;
  :func:`conv2d_same` returns a plain ``nn.Conv2d`` where both conventions agree.
* **BatchNorm** uses ε = 1e-3 and momentum 0.99 (``running = 0.99·running + 0.01·batch``),
  where PyTorch uses ε = 1e-5 and ``momentum=0.1`` for the weight of the *new* batch: Keras'
  momentum 0.99 is PyTorch's 0.01. :func:`batch_norm` builds it; the networks take ``bn_eps`` and
  ``bn_momentum`` (PyTorch's convention) with these defaults.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

KERAS_BN_EPS = 1e-3
#: Keras ``BatchNormalization(momentum=0.99)`` in PyTorch's convention (weight of the new batch).
KERAS_BN_MOMENTUM = 0.01
#: ``(eps, momentum)`` of a batch norm, as blocks pass it down; Keras' by default
BatchNormSettings = tuple[float, float]
KERAS_BN: BatchNormSettings = (KERAS_BN_EPS, KERAS_BN_MOMENTUM)


def tf_same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """Zeros ``(before, after)`` TensorFlow's 'same' adds along a side of ``size`` pixels.

    ``out = ⌈size/stride⌉``, ``total = max((out − 1)·stride + kernel − size, 0)``,
    ``before = ⌊total/2⌋``, ``after = total − before``.
    """
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


class Conv2dSame(nn.Conv2d):
    """``nn.Conv2d`` with TensorFlow's 'same' padding, worked out for each input's size.

    Output size ``⌈n/s⌉`` per side; the zeros go where :func:`tf_same_padding` puts them.
    Parameters and state-dict keys are those of ``nn.Conv2d``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        bias: bool = True,
    ) -> None:
        super().__init__(
            in_channels, out_channels, kernel_size, stride=stride, padding=0, bias=bias
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        (kh, kw), (sh, sw) = self.kernel_size, self.stride
        top, bottom = tf_same_padding(x.shape[-2], kh, sh)
        left, right = tf_same_padding(x.shape[-1], kw, sw)
        return self._conv_forward(F.pad(x, (left, right, top, bottom)), self.weight, self.bias)


class ConvTranspose2dSame(nn.ConvTranspose2d):
    """``nn.ConvTranspose2d`` as Keras' ``Conv2DTranspose(padding='same')``: ``n·s`` pixels per side.

    The full transposed output (``(n − 1)·s + k``) is cropped from ``⌊(k − s)/2⌋`` — the
    'same' padding of the convolution it transposes. Needs ``k ≥ s`` (every network here).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        bias: bool = True,
    ) -> None:
        if kernel_size < stride:
            raise ValueError(
                f"ConvTranspose2dSame needs kernel_size >= stride (got {kernel_size} < {stride})"
            )
        super().__init__(
            in_channels, out_channels, kernel_size, stride=stride, padding=0, bias=bias
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.conv_transpose2d(x, self.weight, self.bias, self.stride)
        (kh, kw), (sh, sw) = self.kernel_size, self.stride
        top, left = (kh - sh) // 2, (kw - sw) // 2
        return y[..., top : top + x.shape[-2] * sh, left : left + x.shape[-1] * sw]


def conv2d_same(
    in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, bias: bool = True
) -> nn.Conv2d:
    """A conv with Keras' ``padding='same'``: plain ``nn.Conv2d(padding=k // 2)`` for an odd kernel
    at stride 1 (symmetric, both conventions agree), :class:`Conv2dSame` otherwise."""
    if stride == 1 and kernel_size % 2 == 1:
        return nn.Conv2d(
            in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=bias
        )
    return Conv2dSame(in_channels, out_channels, kernel_size, stride=stride, bias=bias)


def batch_norm(
    channels: int, eps: float = KERAS_BN_EPS, momentum: float = KERAS_BN_MOMENTUM
) -> nn.BatchNorm2d:
    """``nn.BatchNorm2d`` with Keras' defaults unless told otherwise (``momentum`` in PyTorch's sense)."""
    return nn.BatchNorm2d(channels, eps=eps, momentum=momentum)
