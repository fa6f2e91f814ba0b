"""The improved Attention U-Net of paper 003: input image pyramid, 3 attention gates, deep supervision.

Abraham & Khan 2019, "A novel Focal Tversky loss function with improved Attention U-Net for
lesion segmentation" (ISBI), as coded in their ``newmodels.py`` ``attn_reg`` (spec §5). With
k = width / 32::

    x_s = AvgPool2^s(input), s = 1, 2, 3                          (input pyramid)
    conv1 = UnetConv(32k)(x);                    conv2 = UnetConv(64k)([ReLU(conv3×3(64k) x_1), pool conv1])
    conv3 = UnetConv(128k)([ReLU(conv3×3(128k) x_2), pool conv2])
    conv4 = UnetConv(64k)([ReLU(conv3×3(256k) x_3), pool conv3])      (64, sic: as coded)
    center = UnetConv(512k)(pool conv4)
    up1 = [ReLU(ConvT(32k) center), AG1(conv4, center)]                1/8
    up2 = [ReLU(ConvT(64k) up1),    AG2(conv3, up1)]                   1/4
    up3 = [ReLU(ConvT(32k) up2),    AG3(conv2, up1 | up2)]             1/2  (gate3_source)
    up4 = [ReLU(ConvT(32k) up3),    conv1]                             full (first skip ungated)
    outputs: conv1×1(UnetConv(256k, 128k, 64k, 32k)(up1..up4))          coarsest first

UnetConv(F) = [conv3×3(F) → BN → ReLU] × 2; ConvT = transposed conv3×3 stride 2 with Keras'
'same' arithmetic (the full output's last row and column cut, :mod:`focalbench.models.keras`),
as is the gates' φ up-sampling; BatchNorm with Keras' ε = 1e-3 and momentum 0.99 (PyTorch
0.01), which the code leaves at their defaults. Glorot-normal init (``kinit``) except where the
code names no initialiser (Glorot-uniform, Keras' default). The papers' sigmoids are left to
the loss: the network returns logits.
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import Enum

import torch
import torch.nn.functional as F
from torch import nn

from focalbench.models.base import SegmentationNet
from focalbench.models.blocks import AttentionGate, GateForm, InitScheme, Norm, init_weights_
from focalbench.models.keras import KERAS_BN_EPS, KERAS_BN_MOMENTUM, ConvTranspose2dSame, batch_norm
from focalbench.models.unet import resolve_positions


class GateSource(str, Enum):
    """Where gate 3 takes its gating signal: ``up1`` as coded (default) or ``up2`` as drawn in the paper."""

    UP1 = "up1"
    UP2 = "up2"


def unet_conv(
    cin: int,
    cout: int,
    bn_eps: float = KERAS_BN_EPS,
    bn_momentum: float = KERAS_BN_MOMENTUM,
    bn: bool = True,
) -> nn.Sequential:
    """The code's ``UnetConv2D``: [conv3×3(F) → BN → ReLU] × 2 (``bn=False``: conv → ReLU × 2)."""
    layers: list[nn.Module] = []
    for c in (cin, cout):
        norm = [batch_norm(cout, bn_eps, bn_momentum)] if bn else []
        layers += [nn.Conv2d(c, cout, 3, padding=1), *norm, nn.ReLU(inplace=True)]
    return nn.Sequential(*layers)


def _up(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(ConvTranspose2dSame(cin, cout, 3, stride=2), nn.ReLU(inplace=True))


class PyramidAttentionUNet(SegmentationNet):
    """Paper 003's network; returns ``[1/8, 1/4, 1/2, full]`` logits (deep supervision, full last).

    ``positions`` picks which of the 3 gates exist (1 = deepest); ``focal_init`` adds Focal layers
    to them (paper 000's idea applied here; ``None`` = the paper's plain gates).
    """

    deep_supervision = True
    size_multiple = 16

    def __init__(
        self,
        in_channels: int = 3,
        width: int = 32,
        gate3_source: GateSource = GateSource.UP1,
        positions: Sequence[int] | None = None,
        focal_init: float | None = None,
        bn_eps: float = KERAS_BN_EPS,
        bn_momentum: float = KERAS_BN_MOMENTUM,
    ) -> None:
        super().__init__()
        k = width / 32
        bn = {"bn_eps": bn_eps, "bn_momentum": bn_momentum}
        c = lambda n: max(1, int(n * k))  # noqa: E731  (the coded widths, scaled)
        self.gate3_source = GateSource(gate3_source)
        self.conv1 = unet_conv(in_channels, c(32), **bn)
        self.side_in = nn.ModuleList(
            nn.Sequential(nn.Conv2d(in_channels, c(n), 3, padding=1), nn.ReLU(inplace=True))
            for n in (64, 128, 256)
        )
        self.enc = nn.ModuleList(
            [
                unet_conv(c(64) + c(32), c(64), **bn),
                unet_conv(c(128) + c(64), c(128), **bn),
                unet_conv(c(256) + c(128), c(64), **bn),
            ]
        )
        self.center = unet_conv(c(64), c(512), **bn)
        self.up = nn.ModuleList(
            [
                _up(c(512), c(32)),
                _up(c(32) + c(64), c(64)),
                _up(c(64) + c(128), c(32)),
                _up(c(32) + c(64), c(32)),
            ]
        )
        up1, up2 = c(32) + c(64), c(64) + c(128)
        # (skip channels, gating channels, F_int, θ-to-g size ratio) of gates 1..3
        gate3 = (
            (c(64), up1, c(32), 2)
            if self.gate3_source is GateSource.UP1
            else (c(64), up2, c(32), 1)
        )
        gate_shapes = [(c(64), c(512), c(128), 1), (c(128), up1, c(64), 1), gate3]
        self.gates = nn.ModuleDict()
        for p in resolve_positions(positions, 3, "attention-gate"):
            x_ch, g_ch, inter, stride = gate_shapes[p - 1]
            gate = AttentionGate(
                x_ch, g_ch, inter, GateForm.ABRAHAM, Norm.BATCH, focal_init, g_stride=stride, **bn
            )
            gate.position = p
            self.gates[f"ag{p}"] = gate
        self.side_out = nn.ModuleList(
            nn.Sequential(unet_conv(cin, c(n), **bn), nn.Conv2d(c(n), 1, 1))
            for cin, n in ((up1, 256), (up2, 128), (c(32) + c(64), 64), (c(32) + c(32), 32))
        )
        init_weights_(self, InitScheme.XAVIER_NORMAL)
        # Keras' Glorot-uniform default where the code names no kernel_initializer: the pyramid
        # input convs, the gates' θ, φ, ψ and output convs, and the four 1×1 output convs
        uniform = [*self.side_in, *(head[1] for head in self.side_out)]
        uniform += [
            part
            for gate in self.gates.values()
            for part in (gate.theta, gate.phi, gate.psi, gate.out)
        ]
        for module in uniform:
            init_weights_(module, InitScheme.XAVIER_UNIFORM)

    def attention_modules(self) -> list[nn.Module]:
        return sorted(self.gates.values(), key=lambda m: m.position)

    def _gate(self, p: int, x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        key = f"ag{p}"
        return self.gates[key](x, g) if key in self.gates else x

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        self.check_input(x)
        skips = [self.conv1(x)]
        scaled = x
        for side, enc in zip(self.side_in, self.enc, strict=False):
            scaled = F.avg_pool2d(scaled, 2)
            skips.append(enc(torch.cat([side(scaled), F.max_pool2d(skips[-1], 2)], dim=1)))
        conv1, conv2, conv3, conv4 = skips
        center = self.center(F.max_pool2d(conv4, 2))
        up1 = torch.cat([self.up[0](center), self._gate(1, conv4, center)], dim=1)
        up2 = torch.cat([self.up[1](up1), self._gate(2, conv3, up1)], dim=1)
        g3 = up1 if self.gate3_source is GateSource.UP1 else up2
        up3 = torch.cat([self.up[2](up2), self._gate(3, conv2, g3)], dim=1)
        up4 = torch.cat([self.up[3](up3), conv1], dim=1)
        return [head(u) for head, u in zip(self.side_out, (up1, up2, up3, up4), strict=False)]
