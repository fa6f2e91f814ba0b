"""UNet++ (Zhou et al. 2018) as paper 002's authors ran it: ``Nest_Net`` of TheFocusNetSeries.

``chaitanya-kaul/TheFocusNetSeries`` ``models.py`` ``Nest_Net`` (Zhou et al.'s Keras nested
U-Net); its count, 9,042,177, is paper 002 Table 2's 9.04 M. With F_i = width·2^i, i = 0..4::

    unit(F) = conv3×3(F) → ELU → dropout → conv3×3(F) → ELU → dropout     (the code's standard_unit)
    X_{i,0} = unit(F_i)(maxpool X_{i−1,0})          (X_{0,0} = unit(F_0)(input))
    X_{i,j} = unit(F_i)(concat[ConvT2×2 s2(F_i)(X_{i+1,j−1}), X_{i,0}, …, X_{i,j−1}])   j ≥ 1
    head:  conv1×1(1)(X_{0,4})                      (deep supervision off, the code's default)

Dropout 0.5 after every conv (``dropout_rate``); He-normal convs, Glorot-uniform transposed
convs (no initialiser named in the code); a 2×2 stride-2 transposed conv with 'same' padding
is PyTorch's ``padding=0``. The code's L2 weight penalty (1e-4 on every conv) belongs to the
training recipe, not to the network.
"""

from __future__ import annotations

import torch
from torch import nn

from focalbench.models.base import SegmentationNet
from focalbench.models.blocks import InitScheme, init_weights_

LEVELS = 5  # Nest_Net's nb_filter has five entries: 4 down-samplings


def _unit(cin: int, cout: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1),
        nn.ELU(inplace=True),
        nn.Dropout(dropout),
        nn.Conv2d(cout, cout, 3, padding=1),
        nn.ELU(inplace=True),
        nn.Dropout(dropout),
    )


class UNetPlusPlus(SegmentationNet):
    """Nested U-Net with ``width`` = F_0 (32) and ``dropout`` after every conv (0.5)."""

    size_multiple = 2 ** (LEVELS - 1)

    def __init__(self, in_channels: int = 3, width: int = 32, dropout: float = 0.5) -> None:
        super().__init__()
        f = [width * 2**i for i in range(LEVELS)]
        self.encoder = nn.ModuleList(
            _unit(cin, cout, dropout) for cin, cout in zip([in_channels, *f[:-1]], f, strict=False)
        )
        self.pool = nn.MaxPool2d(2)
        # nodes[i][j - 1] is X_{i,j}; ups[i][j - 1] up-samples X_{i+1,j-1} for it
        self.ups = nn.ModuleList(
            nn.ModuleList(
                nn.ConvTranspose2d(f[i + 1], f[i], 2, stride=2) for _ in range(LEVELS - 1 - i)
            )
            for i in range(LEVELS - 1)
        )
        self.nodes = nn.ModuleList(
            nn.ModuleList(_unit((j + 1) * f[i], f[i], dropout) for j in range(1, LEVELS - i))
            for i in range(LEVELS - 1)
        )
        self.head = nn.Conv2d(f[0], 1, 1)
        init_weights_(self, InitScheme.KAIMING_NORMAL)
        init_weights_(self.ups, InitScheme.XAVIER_UNIFORM)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        grid: list[list[torch.Tensor]] = []  # grid[i][j] = X_{i,j}
        for i, unit in enumerate(self.encoder):
            x = unit(x if i == 0 else self.pool(x))
            grid.append([x])
        for j in range(1, LEVELS):  # column by column, as the code builds X_{i,j}
            for i in range(LEVELS - j):
                up = self.ups[i][j - 1](grid[i + 1][j - 1])
                grid[i].append(self.nodes[i][j - 1](torch.cat([up, *grid[i]], dim=1)))
        return self.head(grid[0][LEVELS - 1])
