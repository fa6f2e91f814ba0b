"""FocusNet++ (paper 002): a U-Net-like network of residual group attention (ResGANet) blocks.

Kaul et al. 2021, "FocusNet++: attentive aggregated transformations for efficient and accurate
medical image segmentation" (ISBI), §2 and spec §7. Paper widths 32 → 64 → 128 → 192 → 256 →
192 → 128 → 64 → 32 (scaled by width/32), 4 filter groups, first conv 5×5, max-pool
down-sampling, nearest up-sampling followed by a conv, skips by *addition*, dropout 0.5 in the
bottleneck, and per-scale side outputs ``Conv-BN-LReLU-Conv-σ`` at full size (up-sampled first,
as coded), concatenated and fused by ``Conv-BN-LReLU-Conv`` (the final σ is left to the loss).
Topology details the paper leaves open follow the public code (``TheFocusNetSeries/focusnetpp.py``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from focalbench.errors import FocalbenchError
from focalbench.models.base import SegmentationNet
from focalbench.models.blocks import InitScheme, SqueezeExcitation, init_weights_

LEAK = 0.3  # Keras LeakyReLU's default slope, used by the authors' code


def _bn_act_conv(cin: int, cout: int, k: int = 3) -> list[nn.Module]:
    return [nn.BatchNorm2d(cin), nn.LeakyReLU(LEAK, inplace=True), nn.Conv2d(cin, cout, k, padding=k // 2)]


def _conv_bn_act(cin: int, cout: int, k: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, k, padding=k // 2), nn.BatchNorm2d(cout), nn.LeakyReLU(LEAK, inplace=True))


class ResGANet(nn.Module):
    """Residual group attention block (paper 002 §2.1, Fig. 2)::

        u = conv1×1(C_in)(x), split into 4 groups u_1..u_4 of d = C_in/4 channels
        A_r = σ(conv1×1(d)(BN-LReLU-conv3×3 ∘ BN-LReLU-conv3×3 (u_r)))          r = 1, 3 (attention)
        O_r = LReLU(BN(conv1×1(u_r))) + BN-LReLU-conv3×3 ∘ BN-LReLU-conv3×3 (u_r)  r = 2, 4 (features)
        h_1 = LReLU(BN(conv1×1(2d)(A_1 ⊙ O_2))),  h_2 likewise from A_3 ⊙ O_4
        m = SE(BN(conv1×1(C_out)([h_1, h_2])))          SE r = 16 (paper; absent in the public code)
        y = LReLU(m + shortcut(x)),  shortcut = BN(conv1×1(C_out)(x)) when C_in ≠ C_out, else x

    Group r attends group r + 1 ("each group learns the attention weights for the group to its
    right").
    """

    def __init__(self, cin: int, cout: int, se_reduction: int = 16) -> None:
        super().__init__()
        if cin % 4:
            raise FocalbenchError(f"ResGANet splits {cin} channels into 4 groups: every level width must be divisible by 4 (e.g. --param model.width=16)")
        d = cin // 4
        self.split = nn.Conv2d(cin, cin, 1)
        self.attend = nn.ModuleList(
            nn.Sequential(*_bn_act_conv(d, d), *_bn_act_conv(d, d), nn.Conv2d(d, d, 1), nn.Sigmoid()) for _ in range(2)
        )
        self.feature_skip = nn.ModuleList(_conv_bn_act(d, d) for _ in range(2))
        self.feature = nn.ModuleList(nn.Sequential(*_bn_act_conv(d, d), *_bn_act_conv(d, d)) for _ in range(2))
        self.expand = nn.ModuleList(_conv_bn_act(d, 2 * d) for _ in range(2))
        self.merge = nn.Sequential(nn.Conv2d(4 * d, cout, 1), nn.BatchNorm2d(cout))
        self.se = SqueezeExcitation(cout, se_reduction, bias=True)
        self.shortcut = nn.Identity() if cin == cout else nn.Sequential(nn.Conv2d(cin, cout, 1), nn.BatchNorm2d(cout))
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


def _stage(cin: int, cout: int, n: int, se_reduction: int) -> nn.Sequential:
    return nn.Sequential(*(ResGANet(cin if i == 0 else cout, cout, se_reduction) for i in range(n)))


class FocusNetPP(SegmentationNet):
    """FocusNet++ with the paper's widths (× width/32; ``widths`` overrides all five) and the
    public code's topology::

        stem conv5×5(F0); encoder level l: ``blocks[l]`` ResGANet(F_l) → skip_l → maxpool
        bottleneck: ``blocks[4]`` ResGANet(F4) → dropout
        decoder l = 3..0: nearest up×2 → ResGANet(F_{l+1} → F_l) → + skip_l → conv3×3(F_l) + ReLU
        side l: nearest up to full size → conv1×1(S_l)-BN-LReLU → conv1×1(1) → σ,  S = 128k, 64k, 32k, 16k
        fuse: concat of the 4 side maps → conv1×1(F0)-BN-LReLU → conv1×1(1)  (logit)

    ``blocks`` (ResGANet blocks per encoder level and bottleneck) is not in the paper; the
    default is the code's 1, 3, 3, 3, 2.
    """

    size_multiple = 16

    def __init__(
        self,
        in_channels: int = 3,
        width: int = 32,
        blocks: Sequence[int] = (1, 3, 3, 3, 2),
        dropout: float = 0.5,
        widths: Sequence[int] | None = None,
        se_reduction: int = 16,
    ) -> None:
        super().__init__()
        if len(blocks) != 5 or min(blocks) < 1:
            raise FocalbenchError(f"blocks needs 5 counts >= 1 (4 encoder levels + bottleneck), got {list(blocks)}")
        f = list(widths) if widths else [width * m // 32 for m in (32, 64, 128, 192, 256)]
        if len(f) != 5:
            raise FocalbenchError(f"widths needs 5 values (4 encoder levels + bottleneck), got {f}")
        self.stem = nn.Conv2d(in_channels, f[0], 5, padding=2)
        self.encoder = nn.ModuleList(_stage(cin, cout, n, se_reduction) for cin, cout, n in zip([f[0], *f[:3]], f[:4], blocks[:4]))
        self.pool = nn.MaxPool2d(2)
        self.bottleneck = nn.Sequential(_stage(f[3], f[4], blocks[4], se_reduction), nn.Dropout(dropout))
        # "repeat the values ... and let convolutions learn them": nearest ×2, then a ResGANet
        self.up = nn.ModuleList(
            nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"), ResGANet(cin, cout, se_reduction))
            for cin, cout in zip(f[:0:-1], f[-2::-1])
        )
        self.merge = nn.ModuleList(nn.Sequential(nn.Conv2d(c, c, 3, padding=1), nn.ReLU(inplace=True)) for c in f[-2::-1])
        side_widths = [max(1, width * m // 32) for m in (128, 64, 32, 16)]
        self.sides = nn.ModuleList(
            nn.Sequential(nn.Upsample(scale_factor=2**i, mode="nearest"), _conv_bn_act(c, s), nn.Conv2d(s, 1, 1), nn.Sigmoid())
            for i, c, s in zip(range(3, -1, -1), f[-2::-1], side_widths)
        )
        self.fuse = nn.Sequential(_conv_bn_act(4, f[0]), nn.Conv2d(f[0], 1, 1))
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
        for up, merge, side, skip in zip(self.up, self.merge, self.sides, reversed(skips)):
            x = merge(up(x) + skip)
            side_maps.append(side(x))
        return self.fuse(torch.cat(side_maps, dim=1))
