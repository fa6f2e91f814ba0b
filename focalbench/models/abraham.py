"""Paper 003's U-Net baseline as its authors coded it (``newmodels.unet``).

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

import torch
from torch import nn

from focalbench.models.base import SegmentationNet
from focalbench.models.blocks import InitScheme, init_weights_
from focalbench.models.keras import KERAS_BN_EPS, KERAS_BN_MOMENTUM
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

    def __init__(self, in_channels: int = 3, width: int = 32, bn_eps: float = KERAS_BN_EPS, bn_momentum: float = KERAS_BN_MOMENTUM) -> None:
        super().__init__()
        f = [width * 2**level for level in range(5)]
        self.down = nn.ModuleList(unet_conv(cin, cout, bn_eps, bn_momentum) for cin, cout in zip([in_channels, *f[:3]], f[:4]))
        self.pool = nn.MaxPool2d(2)
        self.center = unet_conv(f[3], f[4], bn=False)
        self.ups = nn.ModuleList(nn.ConvTranspose2d(f[level + 1], f[level], 2, stride=2) for level in (3, 2, 1, 0))
        self.up_blocks = nn.ModuleList(_relu_convs(2 * f[level], f[level], n) for level, n in zip((3, 2, 1, 0), DECODER_CONVS))
        self.head = nn.Conv2d(f[0], 1, 1)
        init_weights_(self, InitScheme.XAVIER_NORMAL)
        for module in (self.up_blocks[0], self.ups[1], self.head):  # no kernel_initializer in the code
            init_weights_(module, InitScheme.XAVIER_UNIFORM)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        skips = []
        for block in self.down:
            x = block(x)
            skips.append(x)
            x = self.pool(x)
        x = self.center(x)
        for up, block, skip in zip(self.ups, self.up_blocks, reversed(skips)):
            x = block(torch.cat([up(x), skip], dim=1))
        return self.head(x)
