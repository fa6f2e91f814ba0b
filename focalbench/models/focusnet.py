"""FocusNet (paper 001): an encoder-decoder whose decoder maps gate a second, SE-rich encoder.

Kaul, Manandhar & Pears 2019, "FocusNet: an attention-based fully convolutional network for
medical image segmentation" (ISBI). Topology from the authors' code (TheFocusNetSeries
``models.py``), training recipe from the paper (spec §6). With filter bank F = width·(1, 2, 4, 8, 16)
= 32 → 64 → 128 → 256 → 512::

    branch A: conv3×3(F0)-BN-LReLU → [Res(s2), Res(×2)] × 3 → dropout 0.2 → 3 decoder steps
              → D_3 (1/4, 8F0), D_2 (1/2, 4F0), D_1 (full, 2F0)
    branch B: conv7×7(2F0)-BN-ReLU; level l = 1..3: Res → SE → ⊙ σ(D_l) → SE → Res(s2) = b_l
              level 4: Res(16F0) → SE → Res(s2)  (1/16)
    decoder B: 4 steps [up×2 → conv2×2 ReLU → concat b_l → Res], then Res(F0/2), Res(F0/8)
    head: side maps at 1/8, 1/4, 1/2 up-sampled → conv3×3(F0) ReLU → conv1×1 σ, full-res
          conv1×1 σ; concat → conv3×3(F0) ReLU → conv1×1 → logit

``eq. 3`` of the paper, ``A_l = F_l(x) · σ(D_l)``, is the ``⊙ σ(D_l)`` step. Res = pre-activation
basic residual block [BN-ReLU-conv3×3] × 2 with a 1×1 projection shortcut when the shape
changes. SE: ratio 16, no bias (the authors' ``se.py``). Branch B's decoder takes as skips the
7×7 stem and each level's down-sampled output b_l, as coded. Keras arithmetic
(:mod:`focalbench.models.keras`): the stride-2 3×3 convs and the 2×2 up-sampling convs pad
TensorFlow's 'same' way (an even side: 0 before, 1 after), BatchNorm ε = 1e-3, momentum 0.99
(PyTorch 0.01), the defaults the code's ``BatchNormalization(axis=CHANNEL_AXIS)`` keeps.
"""

from __future__ import annotations

import torch
from torch import nn

from focalbench.models.base import SegmentationNet
from focalbench.models.blocks import InitScheme, SqueezeExcitation, init_weights_
from focalbench.models.keras import (
    KERAS_BN,
    KERAS_BN_EPS,
    KERAS_BN_MOMENTUM,
    BatchNormSettings,
    Conv2dSame,
    batch_norm,
    conv2d_same,
)


class PreActBlock(nn.Module):
    """``y = conv(ReLU(BN(conv(ReLU(BN(x)), stride)))) + shortcut(x)`` (He et al. 2016, identity mappings).

    As in the code's ``resnet.py``: the first block of a stage (``preact=False``: every
    stride-1 block here) skips the leading BN-ReLU because its input was just normalised; the
    shortcut is a 1×1 conv (with stride) when the shape changes; convs keep Keras' bias.
    """

    def __init__(
        self,
        cin: int,
        cout: int,
        stride: int = 1,
        preact: bool = True,
        bn: BatchNormSettings = KERAS_BN,
    ) -> None:
        super().__init__()
        lead: list[nn.Module] = [batch_norm(cin, *bn), nn.ReLU(inplace=True)] if preact else []
        self.body = nn.Sequential(
            *lead,
            conv2d_same(cin, cout, 3, stride=stride),
            batch_norm(cout, *bn),
            nn.ReLU(inplace=True),
            nn.Conv2d(cout, cout, 3, padding=1),
        )
        self.shortcut = (
            nn.Identity() if cin == cout and stride == 1 else nn.Conv2d(cin, cout, 1, stride=stride)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x) + self.shortcut(x)


def _first(cin: int, cout: int, bn: BatchNormSettings) -> PreActBlock:
    return PreActBlock(cin, cout, preact=False, bn=bn)


def _down(c: int, bn: BatchNormSettings) -> PreActBlock:
    return PreActBlock(c, c, stride=2, bn=bn)


class UpStep(nn.Module):
    """Keras-style decoder step: nearest up×2 → conv2×2 ('same') + ReLU → concat [skip, up] → residual block."""

    def __init__(self, cin: int, skip: int, cout: int, bn: BatchNormSettings) -> None:
        super().__init__()
        # TF 'same' for a 2×2 kernel pads one row/column at the bottom/right only
        self.conv = nn.Sequential(
            nn.Upsample(scale_factor=2, mode="nearest"),
            Conv2dSame(cin, cout, 2),
            nn.ReLU(inplace=True),
        )
        self.block = _first(skip + cout, cout, bn)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.block(torch.cat([skip, self.conv(x)], dim=1))


def _side(cin: int, width: int, scale: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Upsample(scale_factor=scale, mode="nearest"),
        nn.Conv2d(cin, width, 3, padding=1),
        nn.ReLU(inplace=True),
        nn.Conv2d(width, 1, 1),
        nn.Sigmoid(),
    )


class FocusNet(SegmentationNet):
    """Two-branch FocusNet; ``width`` = first filter count F0 (32 in the paper); ``bn_eps`` /
    ``bn_momentum`` of every batch norm (Keras' defaults, PyTorch's momentum convention)."""

    size_multiple = 16

    def __init__(
        self,
        in_channels: int = 3,
        width: int = 32,
        dropout: float = 0.2,
        se_reduction: int = 16,
        bn_eps: float = KERAS_BN_EPS,
        bn_momentum: float = KERAS_BN_MOMENTUM,
    ) -> None:
        super().__init__()
        bn = (bn_eps, bn_momentum)
        f = [width * 2**i for i in range(5)]  # 32, 64, 128, 256, 512
        # branch A: the focus (gating) encoder-decoder
        self.a_stem = nn.Sequential(
            nn.Conv2d(in_channels, f[0], 3, padding=1, bias=False),
            batch_norm(f[0], *bn),
            nn.LeakyReLU(0.3, inplace=True),
        )
        self.a_down = nn.ModuleList(
            nn.Sequential(_down(c, bn), _first(c, 2 * c, bn)) for c in f[:3]
        )
        self.a_drop = nn.Dropout(dropout)
        self.a_up = nn.ModuleList(
            [
                UpStep(f[3], f[2], f[3], bn),
                UpStep(f[3], f[1], f[2], bn),
                UpStep(f[2], f[0], f[1], bn),
            ]
        )
        # branch B: the segmentation encoder, gated by σ(D_l) at levels 1..3
        self.b_stem = nn.Sequential(
            nn.Conv2d(in_channels, f[1], 7, padding=3), batch_norm(f[1], *bn), nn.ReLU(inplace=True)
        )
        se = lambda c: SqueezeExcitation(c, se_reduction, bias=False)  # noqa: E731
        b_out = f[1:]
        self.b_res = nn.ModuleList(
            _first(i, o, bn) for i, o in zip([f[1], *b_out[:-1]], b_out, strict=False)
        )
        self.b_se_in = nn.ModuleList(se(o) for o in b_out)
        self.b_se_out = nn.ModuleList(se(o) for o in b_out[:3])
        self.b_down = nn.ModuleList(_down(o, bn) for o in b_out)
        # skips are the stem and each level's down-sampled output (as coded), not the level-4 features
        self.b_up = nn.ModuleList(
            [
                UpStep(f[4], f[3], f[3], bn),
                UpStep(f[3], f[2], f[2], bn),
                UpStep(f[2], f[1], f[1], bn),
                UpStep(f[1], f[1], f[0], bn),
            ]
        )
        self.b_tail = nn.Sequential(
            _first(f[0], f[0] // 2, bn), _first(f[0] // 2, max(1, f[0] // 8), bn)
        )
        self.sides = nn.ModuleList(
            [_side(f[3], f[0], 8), _side(f[2], f[0], 4), _side(f[1], f[0], 2)]
        )
        self.side_full = nn.Sequential(nn.Conv2d(max(1, f[0] // 8), 1, 1), nn.Sigmoid())
        self.fuse = nn.Sequential(
            nn.Conv2d(4, f[0], 3, padding=1), nn.ReLU(inplace=True), nn.Conv2d(f[0], 1, 1)
        )
        init_weights_(self, InitScheme.KAIMING_NORMAL)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        a = [self.a_stem(x)]
        for down in self.a_down:
            a.append(down(a[-1]))
        d = self.a_drop(a[-1])
        gates = []  # D_3 (1/4), D_2 (1/2), D_1 (full)
        for up, skip in zip(self.a_up, reversed(a[:-1]), strict=False):
            d = up(d, skip)
            gates.append(d)
        gates.reverse()  # D_1, D_2, D_3

        b = self.b_stem(x)
        skips = [b]
        for level, (res, se_in, down) in enumerate(
            zip(self.b_res, self.b_se_in, self.b_down, strict=False)
        ):
            b = se_in(res(b))
            if level < 3:
                b = self.b_se_out[level](
                    b * torch.sigmoid(gates[level])
                )  # eq. 3: A_l = F_l(x)·σ(D_l)
            b = down(b)
            skips.append(b)
        b = skips.pop()
        side_maps = []
        for step, (up, skip) in enumerate(zip(self.b_up, reversed(skips), strict=False)):
            b = up(b, skip)
            if step < 3:
                side_maps.append(self.sides[step](b))
        side_maps.append(self.side_full(self.b_tail(b)))
        return self.fuse(torch.cat(side_maps, dim=1))
