"""Paper 003's baselines as its authors coded them (``newmodels.unet``, ``newmodels.attn_unet``).

Abraham & Khan 2019 (paper 003) compare their network with "U-Net + DL"; the network behind
that row is ``unet`` in ``nabsabraham/focal-tversky-unet`` ``newmodels.py`` (the model
``bus_train.py`` builds), not MIScnn's U-Net of paper 000. With F_l = width·2^l = 32 … 512::

    encoder l = 0..3:  UnetConv(F_l) = [conv3×3 → BN → ReLU] × 2  → skip_l → maxpool 2×2
    centre:            [conv3×3(F_4) → ReLU] × 2                   (no BN)
    decoder l = 3..0:  concat[ConvT2×2 s2(F_l)(x), skip_l] → [conv3×3(F_l) → ReLU] × n_l
                       n_l = 2, 2, 1, 2 for l = 3, 2, 1, 0          (a single conv at l = 1, as coded)
    head:              conv1×1(1)                                   (the code's σ is left to the loss)

No BatchNorm after the encoder. 7,724,513 trainable parameters for one input channel (BUS is
greyscale in the code). Keras conventions: BatchNorm ε = 1e-3, momentum 0.99 (PyTorch 0.01); a
2×2 stride-2 transposed conv with 'same' padding is PyTorch's ``padding=0``; every conv has a
bias; weights Glorot-normal (``kinit``) except where the code names no initialiser (both convs
of the deepest decoder level, the level-2 transposed conv and the head), which keep Keras'
Glorot-uniform default.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from focalbench.errors import FocalbenchError
from focalbench.models.base import SegmentationNet
from focalbench.models.blocks import AttentionGate, GateForm, InitScheme, Norm, init_weights_
from focalbench.models.keras import KERAS_BN_EPS, KERAS_BN_MOMENTUM, ConvTranspose2dSame
from focalbench.models.pyramid import unet_conv

#: conv3×3-ReLU layers per decoder level, deepest first (``conv6``, ``conv7``, ``conv8``, ``conv9``)
DECODER_CONVS = (2, 2, 1, 2)


def _relu_convs(cin: int, cout: int, n: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i in range(n):
        layers += [nn.Conv2d(cin if i == 0 else cout, cout, 3, padding=1), nn.ReLU(inplace=True)]
    return nn.Sequential(*layers)


class AbrahamUNet(SegmentationNet):
    """``newmodels.unet`` of paper 003's code; ``width`` = F_0 (32), ``bn_eps`` / ``bn_momentum``
    of the encoder's batch norms (Keras' defaults, PyTorch's momentum convention)."""

    size_multiple = 16

    def __init__(
        self,
        in_channels: int = 3,
        width: int = 32,
        bn_eps: float = KERAS_BN_EPS,
        bn_momentum: float = KERAS_BN_MOMENTUM,
    ) -> None:
        super().__init__()
        f = [width * 2**level for level in range(5)]
        self.down = nn.ModuleList(
            unet_conv(cin, cout, bn_eps, bn_momentum)
            for cin, cout in zip([in_channels, *f[:3]], f[:4], strict=False)
        )
        self.pool = nn.MaxPool2d(2)
        self.center = unet_conv(f[3], f[4], bn=False)
        self.ups = nn.ModuleList(
            nn.ConvTranspose2d(f[level + 1], f[level], 2, stride=2) for level in (3, 2, 1, 0)
        )
        self.up_blocks = nn.ModuleList(
            _relu_convs(2 * f[level], f[level], n)
            for level, n in zip((3, 2, 1, 0), DECODER_CONVS, strict=False)
        )
        self.head = nn.Conv2d(f[0], 1, 1)
        init_weights_(self, InitScheme.XAVIER_NORMAL)
        for module in (
            self.up_blocks[0],
            self.ups[1],
            self.head,
        ):  # no kernel_initializer in the code
            init_weights_(module, InitScheme.XAVIER_UNIFORM)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        skips = []
        for block in self.down:
            x = block(x)
            skips.append(x)
            x = self.pool(x)
        x = self.center(x)
        for up, block, skip in zip(self.ups, self.up_blocks, reversed(skips), strict=False):
            x = block(torch.cat([up(x), skip], dim=1))
        return self.head(x)


class AbrahamAttentionUNet(SegmentationNet):
    """``newmodels.attn_unet``: "plain old attention gates in u-net, NO multi-input, NO deep
    supervision" — the Attn U-Net baseline of paper 003 and, widened, of paper 002 (the same
    function in ``chaitanya-kaul/TheFocusNetSeries`` ``models.py``)::

        conv_l = UnetConv(E_l) (l = 0..3) → maxpool;   centre = UnetConv(E_4)
        up1 = [ReLU(ConvT3×3 s2(U_0)(centre)), AG1(conv_3, centre, G_0)]
        up2 = [ReLU(ConvT(U_1)(up1)), AG2(conv_2, up1, G_1)]
        up3 = [ReLU(ConvT(U_2)(up2)), AG3(conv_1, up1, G_2)]    (gated by up1, as coded)
        up4 = [ReLU(ConvT(U_3)(up3)), conv_0]                    (first skip ungated)
        head: conv1×1(1)(up4)                                    (no decoder convs)

    ``widths`` = E_0..E_4, ``gate_widths`` = G (F_int of the gates), ``up_widths`` = U. The gates
    are paper 003's ``abraham`` form (:class:`~focalbench.models.blocks.AttentionGate`); the
    transposed convs use Keras' 'same' arithmetic. Init: Glorot-normal where the code names
    ``kinit``, Glorot-uniform (Keras' default) inside the gates, where it names none.
    """

    size_multiple = 16

    def __init__(
        self,
        in_channels: int = 3,
        widths: Sequence[int] = (32, 32, 64, 64, 128),
        gate_widths: Sequence[int] = (128, 64, 32),
        up_widths: Sequence[int] = (32, 64, 32, 32),
        bn_eps: float = KERAS_BN_EPS,
        bn_momentum: float = KERAS_BN_MOMENTUM,
    ) -> None:
        super().__init__()
        e, g, u = list(widths), list(gate_widths), list(up_widths)
        if (len(e), len(g), len(u)) != (5, 3, 4):
            raise FocalbenchError(
                f"widths, gate_widths, up_widths need 5, 3 and 4 values (got {len(e)}, {len(g)}, {len(u)})"
            )
        bn = {"bn_eps": bn_eps, "bn_momentum": bn_momentum}
        self.down = nn.ModuleList(
            unet_conv(cin, cout, **bn)
            for cin, cout in zip([in_channels, *e[:3]], e[:4], strict=False)
        )
        self.pool = nn.MaxPool2d(2)
        self.center = unet_conv(e[3], e[4], **bn)
        up1, up2, up3 = u[0] + e[3], u[1] + e[2], u[2] + e[1]
        self.ups = nn.ModuleList(
            nn.Sequential(ConvTranspose2dSame(cin, cout, 3, stride=2), nn.ReLU(inplace=True))
            for cin, cout in zip((e[4], up1, up2, up3), u, strict=False)
        )
        # (skip, gating signal, F_int, θ-to-g size ratio) of gates 1..3; gate 3 reads up1 at 1/8
        shapes = [(e[3], e[4], g[0], 1), (e[2], up1, g[1], 1), (e[1], up1, g[2], 2)]
        self.gates = nn.ModuleList(
            AttentionGate(x, gs, inter, GateForm.ABRAHAM, Norm.BATCH, g_stride=stride, **bn)
            for x, gs, inter, stride in shapes
        )
        for position, gate in enumerate(self.gates, start=1):
            gate.position = position
        self.head = nn.Conv2d(u[3] + e[0], 1, 1)
        init_weights_(self, InitScheme.XAVIER_NORMAL)
        for gate in self.gates:
            for part in (gate.theta, gate.phi, gate.psi, gate.out):
                init_weights_(part, InitScheme.XAVIER_UNIFORM)

    def attention_modules(self) -> list[nn.Module]:
        return list(self.gates)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        skips = []
        for block in self.down:
            x = block(x)
            skips.append(x)
            x = self.pool(x)
        conv1, conv2, conv3, conv4 = skips
        center = self.center(x)
        up1 = torch.cat([self.ups[0](center), self.gates[0](conv4, center)], dim=1)
        up2 = torch.cat([self.ups[1](up1), self.gates[1](conv3, up1)], dim=1)
        up3 = torch.cat([self.ups[2](up2), self.gates[2](conv2, up1)], dim=1)
        up4 = torch.cat([self.ups[3](up3), conv1], dim=1)
        return self.head(up4)
