"""FocusNet++ (paper 002): a U-Net-like network of residual group attention (ResGANet) blocks.

Kaul et al. 2021, "FocusNet++: attentive aggregated transformations for efficient and accurate
medical image segmentation" (ISBI), §2 and spec §7. Two forms of one network:

* ``focusnetpp`` — the authors' code, ``chaitanya-kaul/TheFocusNetSeries`` ``focusnetpp.py``
  (``residual_network``), the network paper 002's numbers were measured on: stem conv5×5(32),
  level widths 48, 96, 156, 256, bottleneck 512, ResGANet blocks 1, 3, 3, 3, 2, no SE, the coded
  head (:attr:`Head.CODE`). 7,771,723 trainable parameters (Keras adds 32,016 BatchNorm moving
  statistics: 7,803,739 = Table 2's 7.80 M).
* ``focusnetpp-paper`` — the paper's text: widths 32 → 64 → 128 → 192 → 256 → 192 → 128 → 64 →
  32, SE inside every block, side outputs ``Conv-BN-LReLU-Conv-σ`` at every scale
  (:attr:`Head.PAPER`); the block counts the paper leaves open come from the code.

Common to both: 4 filter groups, max-pool down-sampling, nearest up-sampling followed by a
ResGANet, skips by *addition*, side outputs up-sampled to full size first (as coded),
concatenated and fused by ``Conv-BN-LReLU-Conv`` (the final σ is left to the loss), LeakyReLU
slope 0.3 and BatchNorm ε = 1e-3, momentum 0.99 (Keras' defaults, which the code keeps; PyTorch
momentum 0.01). All convs are stride 1 with odd kernels, so 'same' padding is symmetric.
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import Enum

import torch
from torch import nn

from focalbench.errors import FocalbenchError
from focalbench.models.base import SegmentationNet
from focalbench.models.blocks import InitScheme, SqueezeExcitation, init_weights_
from focalbench.models.keras import (
    KERAS_BN,
    KERAS_BN_EPS,
    KERAS_BN_MOMENTUM,
    BatchNormSettings,
    batch_norm,
)

LEAK = 0.3  # Keras LeakyReLU's default slope, used by the authors' code


class Head(str, Enum):
    """The output head: the authors' code or the paper's text (both end in the same fusion).

    * ``code`` — side outputs at 1/8, 1/4, 1/2: up-sample → conv1×1(128 | 64 | 32)-BN-LReLU →
      conv1×1 σ; at full size the last decoder conv is conv3×3(16) (not F0), then conv3×3(9) →
      conv3×3(3) (ReLU each) → conv1×1 σ; fusion conv1×1(32)-BN-LReLU → conv1×1.
    * ``paper`` — every scale, full size included: up-sample → conv1×1(4F0 | 2F0 | F0 | F0/2)-BN-
      LReLU → conv1×1 σ ("Conv → BN → LeakyReLU → Conv → σ"); fusion conv1×1(F0)-BN-LReLU →
      conv1×1, with F0 the first level's width.
    """

    CODE = "code"
    PAPER = "paper"


def _bn_act_conv(
    cin: int, cout: int, k: int = 3, bn: BatchNormSettings = KERAS_BN
) -> list[nn.Module]:
    return [
        batch_norm(cin, *bn),
        nn.LeakyReLU(LEAK, inplace=True),
        nn.Conv2d(cin, cout, k, padding=k // 2),
    ]


def _conv_bn_act(
    cin: int, cout: int, k: int = 1, bn: BatchNormSettings = KERAS_BN
) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, k, padding=k // 2),
        batch_norm(cout, *bn),
        nn.LeakyReLU(LEAK, inplace=True),
    )


class ResGANet(nn.Module):
    """Residual group attention block (paper 002 §2.1, Fig. 2)::

        u = conv1×1(C_in)(x), split into 4 groups u_1..u_4 of d = C_in/4 channels
        A_r = σ(conv1×1(d)(BN-LReLU-conv3×3 ∘ BN-LReLU-conv3×3 (u_r)))          r = 1, 3 (attention)
        O_r = LReLU(BN(conv1×1(u_r))) + BN-LReLU-conv3×3 ∘ BN-LReLU-conv3×3 (u_r)  r = 2, 4 (features)
        h_1 = LReLU(BN(conv1×1(2d)(A_1 ⊙ O_2))),  h_2 likewise from A_3 ⊙ O_4
        m = SE(BN(conv1×1(C_out)([h_1, h_2])))          SE r = 16 (paper; absent in the code)
        y = LReLU(m + shortcut(x)),  shortcut = BN(conv1×1(C_out)(x)) when C_in ≠ C_out, else x

    Group r attends group r + 1 ("each group learns the attention weights for the group to its
    right"). ``se=False`` (the code's ``residual_block``) leaves out the SE block.
    """

    def __init__(
        self,
        cin: int,
        cout: int,
        se_reduction: int = 16,
        se: bool = True,
        bn: BatchNormSettings = KERAS_BN,
    ) -> None:
        super().__init__()
        if cin % 4:
            raise FocalbenchError(
                f"ResGANet splits {cin} channels into 4 groups: every level width must be divisible by 4 (e.g. --param model.widths=[48,96,156,256,512])"
            )
        d = cin // 4
        self.split = nn.Conv2d(cin, cin, 1)
        self.attend = nn.ModuleList(
            nn.Sequential(
                *_bn_act_conv(d, d, bn=bn),
                *_bn_act_conv(d, d, bn=bn),
                nn.Conv2d(d, d, 1),
                nn.Sigmoid(),
            )
            for _ in range(2)
        )
        self.feature_skip = nn.ModuleList(_conv_bn_act(d, d, bn=bn) for _ in range(2))
        self.feature = nn.ModuleList(
            nn.Sequential(*_bn_act_conv(d, d, bn=bn), *_bn_act_conv(d, d, bn=bn)) for _ in range(2)
        )
        self.expand = nn.ModuleList(_conv_bn_act(d, 2 * d, bn=bn) for _ in range(2))
        self.merge = nn.Sequential(nn.Conv2d(4 * d, cout, 1), batch_norm(cout, *bn))
        self.se = SqueezeExcitation(cout, se_reduction, bias=True) if se else nn.Identity()
        self.shortcut = (
            nn.Identity()
            if cin == cout
            else nn.Sequential(nn.Conv2d(cin, cout, 1), batch_norm(cout, *bn))
        )
        self.act = nn.LeakyReLU(LEAK)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        groups = self.split(x).chunk(4, dim=1)
        h = []
        for pair in range(2):
            a_group, f_group = groups[2 * pair], groups[2 * pair + 1]
            attention = self.attend[pair](a_group)
            features = self.feature_skip[pair](f_group) + self.feature[pair](f_group)
            h.append(self.expand[pair](attention * features))
        m = self.se(self.merge(torch.cat(h, dim=1)))
        return self.act(m + self.shortcut(x))


def _stage(cin: int, cout: int, n: int, block: dict) -> nn.Sequential:
    return nn.Sequential(*(ResGANet(cin if i == 0 else cout, cout, **block) for i in range(n)))


class FocusNetPP(SegmentationNet):
    """FocusNet++ (defaults: the authors' code)::

        stem conv5×5(``stem``); encoder level l: ``blocks[l]`` ResGANet(F_l) → skip_l → maxpool
        bottleneck: ``blocks[4]`` ResGANet(F_4) → dropout
        decoder l = 3..0: nearest up×2 → ResGANet(F_{l+1} → F_l) → + skip_l → conv3×3(F_l) + ReLU
        head: :class:`Head` (side outputs, then their fusion → logit)

    ``widths`` = F_0..F_4 (code 48, 96, 156, 256, 512), ``stem`` (code 32; ``None`` = F_0),
    ``blocks`` ResGANet blocks per level (code 1, 3, 3, 3, 2), ``se`` SE blocks inside every
    ResGANet (paper; the code has none) with ``se_reduction``, ``head``, ``dropout`` after the
    bottleneck (0.5: the code builds it but leaves it unconnected, the paper uses it) and
    ``bn_eps`` / ``bn_momentum`` of every batch norm.
    """

    size_multiple = 16

    def __init__(
        self,
        in_channels: int = 3,
        widths: Sequence[int] = (48, 96, 156, 256, 512),
        stem: int | None = 32,
        blocks: Sequence[int] = (1, 3, 3, 3, 2),
        se: bool = False,
        se_reduction: int = 16,
        head: Head = Head.CODE,
        dropout: float = 0.5,
        bn_eps: float = KERAS_BN_EPS,
        bn_momentum: float = KERAS_BN_MOMENTUM,
    ) -> None:
        super().__init__()
        if len(blocks) != 5 or min(blocks) < 1:
            raise FocalbenchError(
                f"blocks needs 5 counts >= 1 (4 encoder levels + bottleneck), got {list(blocks)}"
            )
        f = list(widths)
        if len(f) != 5:
            raise FocalbenchError(f"widths needs 5 values (4 encoder levels + bottleneck), got {f}")
        stem = f[0] if stem is None else stem
        bn = (bn_eps, bn_momentum)
        block = {"se_reduction": se_reduction, "se": se, "bn": bn}
        self.stem = nn.Conv2d(in_channels, stem, 5, padding=2)
        self.encoder = nn.ModuleList(
            _stage(cin, cout, n, block)
            for cin, cout, n in zip([stem, *f[:3]], f[:4], blocks[:4], strict=False)
        )
        self.pool = nn.MaxPool2d(2)
        self.bottleneck = nn.Sequential(_stage(f[3], f[4], blocks[4], block), nn.Dropout(dropout))
        # "repeat the values ... and let convolutions learn them": nearest ×2, then a ResGANet
        self.up = nn.ModuleList(
            nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"), ResGANet(cin, cout, **block))
            for cin, cout in zip(f[:0:-1], f[-2::-1], strict=False)
        )
        if Head(head) is Head.CODE:
            # the code's last decoder conv is already the head's first: conv3×3(16), then 9, 3
            merge_widths, side_widths, fuse_width = [*f[-2:0:-1], 16], (128, 64, 32), 32
            full = nn.Sequential(
                nn.Conv2d(16, 9, 3, padding=1),
                nn.ReLU(inplace=True),
                nn.Conv2d(9, 3, 3, padding=1),
                nn.ReLU(inplace=True),
                nn.Conv2d(3, 1, 1),
                nn.Sigmoid(),
            )
        else:
            merge_widths, side_widths, fuse_width = f[-2::-1], (4 * f[0], 2 * f[0], f[0]), f[0]
            full = nn.Sequential(
                _conv_bn_act(f[0], max(1, f[0] // 2), bn=bn),
                nn.Conv2d(max(1, f[0] // 2), 1, 1),
                nn.Sigmoid(),
            )
        self.merge = nn.ModuleList(
            nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.ReLU(inplace=True))
            for cin, cout in zip(f[-2::-1], merge_widths, strict=False)
        )
        self.sides = nn.ModuleList(
            [
                *(
                    nn.Sequential(
                        nn.Upsample(scale_factor=2**i, mode="nearest"),
                        _conv_bn_act(c, s, bn=bn),
                        nn.Conv2d(s, 1, 1),
                        nn.Sigmoid(),
                    )
                    for i, c, s in zip((3, 2, 1), f[-2:0:-1], side_widths, strict=False)
                ),
                full,
            ]
        )
        self.fuse = nn.Sequential(_conv_bn_act(4, fuse_width, bn=bn), nn.Conv2d(fuse_width, 1, 1))
        init_weights_(self, InitScheme.XAVIER_UNIFORM)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        x = self.stem(x)
        skips = []
        for level, stage in enumerate(self.encoder):
            x = stage(x if level == 0 else self.pool(x))
            skips.append(x)
        x = self.bottleneck(self.pool(x))
        side_maps = []
        for up, merge, side, skip in zip(
            self.up, self.merge, self.sides, reversed(skips), strict=False
        ):
            x = merge(up(x) + skip)
            side_maps.append(side(x))
        return self.fuse(torch.cat(side_maps, dim=1))
