"""R2U-Net: a U-Net whose conv blocks are recurrent residual convolutional units (paper 002's baseline [9]).

Alom, Hasan, Yakopcic, Taha & Asari 2018, "Recurrent residual convolutional neural network based
on U-Net (R2U-Net) for medical image segmentation", arXiv 1802.06955. Paper 002 (FocusNet++)
compares with it in Table 1 (ISIC 2018) without stating its configuration or parameter count.
With F_l = width·2^l and t = ``recurrence``::

    RCL_t(x):  h_0 = f(x),  h_k = f(x + h_{k-1}) for k = 1..t,  out h_t     f = conv3×3-BN-ReLU (one set of weights)
    RRCNN(x):  u = conv1×1(F)(x);  y = u + RCL_t(RCL_t(u))                 (residual add, no activation after it)

    encoder level l = 0..D-1:  RRCNN(F_l) → skip_l → maxpool 2×2
    bottleneck:                RRCNN(F_D)
    decoder level l = D-1..0:  up = ConvT2×2s2(F_l)(x);  RRCNN(F_l)(concat[skip_l, up])
    head: conv1×1 → 1 logit

A recurrent conv layer (RCL) unrolled for t steps applies the *same* conv t + 1 times (the
feed-forward step k = 0 and t recurrent steps: Liang & Hu's RCL, where t steps unfold to depth
t + 1), so ``recurrence`` changes the computation and the receptive field but not the
parameter count. The 1×1 conv before the two RCLs gives the residual add matching channels.

Parameters at the defaults (width 32, depth 4, t = 2; 3 input channels): 8,907,425, the same
filter bank as paper 002's 7.94 M U-Net row (R2U-Net's point is to match an equivalent U-Net's
size; the 1×1 convs and BN add 15 % over our ``unet``). Paper 002 prints no R2U-Net count.
"""

from __future__ import annotations

import torch
from torch import nn

from focalbench.errors import FocalbenchError
from focalbench.models.base import SegmentationNet
from focalbench.models.blocks import InitScheme, init_weights_


def _conv_bn_relu(channels: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(channels, channels, 3, padding=1), nn.BatchNorm2d(channels), nn.ReLU(inplace=True))


class RecurrentConv(nn.Module):
    """Recurrent conv layer unrolled for ``t`` steps: ``h_0 = f(x)``, ``h_k = f(x + h_{k-1})``.

    ``f`` = conv3×3-BN-ReLU with one set of weights for every step; ``t = 0`` is a plain
    conv-BN-ReLU. Shapes: (N, C, H, W) → (N, C, H, W).
    """

    def __init__(self, channels: int, t: int = 2) -> None:
        super().__init__()
        self.t = t
        self.f = _conv_bn_relu(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.f(x)
        for _ in range(self.t):
            h = self.f(x + h)
        return h


class RRCNNBlock(nn.Module):
    """Recurrent residual conv unit: ``u = conv1×1(x)``, ``y = u + RCL_t(RCL_t(u))``."""

    def __init__(self, cin: int, cout: int, t: int = 2) -> None:
        super().__init__()
        self.project = nn.Conv2d(cin, cout, 1)
        self.body = nn.Sequential(RecurrentConv(cout, t), RecurrentConv(cout, t))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        u = self.project(x)
        return u + self.body(u)


class R2UNet(SegmentationNet):
    """R2U-Net with ``width`` first-level filters (32), ``depth`` down-samplings (4) and
    ``recurrence`` t (2, as in the R2U-Net paper).
    """

    def __init__(self, in_channels: int = 3, width: int = 32, depth: int = 4, recurrence: int = 2) -> None:
        super().__init__()
        if isinstance(recurrence, bool) or not isinstance(recurrence, int) or recurrence < 0:
            raise FocalbenchError(f"R2U-Net: recurrence={recurrence!r} must be an integer >= 0 (the RCL's unrolled steps t; the paper uses 2)")
        self.depth = depth
        self.size_multiple = 2**depth
        widths = [width * 2**level for level in range(depth + 1)]
        self.down = nn.ModuleList()
        cin = in_channels
        for f in widths[:-1]:
            self.down.append(RRCNNBlock(cin, f, recurrence))
            cin = f
        self.pool = nn.MaxPool2d(2)
        self.bottom = RRCNNBlock(widths[-2], widths[-1], recurrence)
        self.ups = nn.ModuleList()
        self.up_blocks = nn.ModuleList()
        for level in reversed(range(depth)):
            self.ups.append(nn.ConvTranspose2d(widths[level + 1], widths[level], 2, stride=2))
            self.up_blocks.append(RRCNNBlock(2 * widths[level], widths[level], recurrence))
        self.head = nn.Conv2d(widths[0], 1, 1)
        # Keras' default (glorot_uniform): the R2U-Net paper names no initialisation and paper 002
        # trained its baselines in Keras. He-normal here gives ~1e6 logits in eval mode at init.
        init_weights_(self, InitScheme.XAVIER_UNIFORM)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        skips = []
        for block in self.down:
            x = block(x)
            skips.append(x)
            x = self.pool(x)
        x = self.bottom(x)
        for up, block, skip in zip(self.ups, self.up_blocks, reversed(skips)):
            x = block(torch.cat([skip, up(x)], dim=1))
        return self.head(x)
