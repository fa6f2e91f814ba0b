"""The U-Net of paper 000 (MIScnn "standard") with SE blocks or attention gates at chosen positions.

One parametrised network gives ``unet``, ``use-net``, ``attention-unet``, ``focal-use-net``,
``focal-attention-unet`` (spec §1–4) and, with recurrent residual blocks, ``r2u-net``::

    encoder level l = 0..D-1, F_l = width·2^l:  Block(F_l) [SE at position l+1] → skip_l → maxpool
    bottleneck F_D = width·2^D:                 Block(F_D) [SE at position D+1]
    decoder level l = D-1..0:  up = ConvT2×2s2(F_l)(x); skip_l [AG at position D-l, gated by x]
                               Block(F_l)(concat[up, skip_l]) [SE at position 2D+1+(D-l)]
    head: conv1×1 → out_channels logits

Block is ``DoubleConv`` (two conv3×3 → ReLU → norm, MIScnn) or, for R2U-Net (Alom et al. 2018,
arXiv 1802.06955, paper 002's baseline [9]), ``RecurrentResidualBlock``: u = conv1×1(x),
u + RCL_t(RCL_t(u)) with t = ``recurrence``. Paper 002 states neither R2U-Net's configuration
nor its size; ``r2u-net`` takes the U-Net's filters (32→512, depth 4, t = 2, as in the R2U-Net
paper): 8,907,425 parameters with 3 input channels, 15 % over ``unet`` for the 1×1 convs and BN.

With D = 4: SE positions 1–4 encoder (shallow → deep), 5 bottleneck, 6–9 decoder (deep →
shallow); AG positions 1 = deepest skip … 4 = shallowest. Modules not listed in ``positions``
are never built, so a pruned network holds no trace of them.
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import Enum

import torch
from torch import nn

from focalbench.errors import FocalbenchError
from focalbench.models.base import SegmentationNet
from focalbench.models.blocks import (
    AttentionGate,
    DoubleConv,
    GateForm,
    InitScheme,
    Norm,
    RecurrentResidualBlock,
    SqueezeExcitation,
    init_weights_,
)
from focalbench.models.keras import KERAS_BN_EPS, KERAS_BN_MOMENTUM


class Attention(str, Enum):
    NONE = "none"
    SE = "se"
    AG = "ag"


class Block(str, Enum):
    """The conv block of every level: MIScnn's double conv, or R2U-Net's recurrent residual unit."""

    DOUBLE_CONV = "double_conv"
    RECURRENT_RESIDUAL = "recurrent_residual"


def resolve_positions(positions: Sequence[int] | None, count: int, what: str) -> list[int]:
    """Validate 1-based ``positions`` against ``count`` available ones (``None`` = all)."""
    if positions is None:
        return list(range(1, count + 1))
    chosen = sorted({int(p) for p in positions})
    bad = [p for p in chosen if not 1 <= p <= count]
    if bad:
        raise FocalbenchError(
            f"{what} positions {bad} do not exist; choose from 1..{count} (e.g. --param model.positions=[2,6,9])"
        )
    return chosen


class UNet(SegmentationNet):
    """Paper-000 U-Net (MIScnn standard, spec §1) with addressable SE / attention-gate positions.

    Parameters: ``width`` first-level filters (32), ``depth`` down-samplings (4), ``attention``
    none | se | ag, ``positions`` (1-based, ``None`` = all), ``focal_init`` (``None`` = plain
    modules, else the Focal layers' initial w), ``se_reduction`` (8), ``gate_form`` (miscnn |
    oktay), ``norm`` (instance), ``out_channels`` (1; 2 only to compare with the 2-channel
    softmax head of the paper), ``block`` (double_conv | recurrent_residual) and its
    ``recurrence`` t (2; recurrent blocks have their own batch norm, so ``norm`` then only
    reaches attention gates), ``bn_eps`` / ``bn_momentum`` (Keras' 1e-3 / 0.99, i.e. PyTorch
    momentum 0.01, as MIScnn's ``BatchNormalization(momentum=0.99)``; the instance norm takes
    the same ε).
    """

    def __init__(
        self,
        in_channels: int = 3,
        width: int = 32,
        depth: int = 4,
        attention: Attention = Attention.NONE,
        positions: Sequence[int] | None = None,
        focal_init: float | None = None,
        se_reduction: int = 8,
        gate_form: GateForm = GateForm.MISCNN,
        norm: Norm = Norm.INSTANCE,
        out_channels: int = 1,
        block: Block = Block.DOUBLE_CONV,
        recurrence: int = 2,
        bn_eps: float = KERAS_BN_EPS,
        bn_momentum: float = KERAS_BN_MOMENTUM,
    ) -> None:
        super().__init__()
        attention, block = Attention(attention), Block(block)
        if depth < 1 or width < 1:
            raise FocalbenchError(
                f"U-Net needs depth >= 1 and width >= 1 (got depth={depth}, width={width})"
            )
        if isinstance(recurrence, bool) or not isinstance(recurrence, int) or recurrence < 0:
            raise FocalbenchError(
                f"recurrence={recurrence!r} must be an integer >= 0 (the RCL's unrolled steps t; R2U-Net uses 2)"
            )

        def make_block(cin: int, cout: int) -> nn.Module:
            if block is Block.RECURRENT_RESIDUAL:
                return RecurrentResidualBlock(cin, cout, recurrence, bn_eps, bn_momentum)
            return DoubleConv(cin, cout, norm, bn_eps, bn_momentum)

        if attention is Attention.NONE and (positions is not None or focal_init is not None):
            raise FocalbenchError(
                "positions/focal_init need an attention network: use use-net, attention-unet or their focal- variants"
            )
        self.depth = depth
        self.size_multiple = 2**depth
        widths = [width * 2**level for level in range(depth + 1)]

        self.down = nn.ModuleList()
        cin = in_channels
        for f in widths[:-1]:
            self.down.append(make_block(cin, f))
            cin = f
        self.pool = nn.MaxPool2d(2)
        self.bottom = make_block(widths[-2], widths[-1])
        self.ups = nn.ModuleList()
        self.up_blocks = nn.ModuleList()
        for level in reversed(range(depth)):
            self.ups.append(nn.ConvTranspose2d(widths[level + 1], widths[level], 2, stride=2))
            self.up_blocks.append(make_block(2 * widths[level], widths[level]))
        self.head = nn.Conv2d(widths[0], out_channels, 1)

        # keys "se<p>" / "ag<p>" are also the focal_weights keys
        self.attention = nn.ModuleDict()
        if attention is Attention.SE:
            # position p sits after the double conv of flow step p: encoder, bottleneck, decoder
            flow_widths = widths + widths[-2::-1]
            for p in resolve_positions(positions, 2 * depth + 1, "SE"):
                self._add(
                    SqueezeExcitation(
                        flow_widths[p - 1], se_reduction, bias=True, focal_init=focal_init
                    ),
                    p,
                )
        elif attention is Attention.AG:
            for p in resolve_positions(positions, depth, "attention-gate"):
                f = widths[depth - p]
                self._add(
                    AttentionGate(
                        f,
                        2 * f,
                        f,
                        gate_form,
                        norm,
                        focal_init,
                        bn_eps=bn_eps,
                        bn_momentum=bn_momentum,
                    ),
                    p,
                )
        init_weights_(self, InitScheme.XAVIER_UNIFORM)

    def _add(self, module: nn.Module, position: int) -> None:
        module.position = position
        self.attention[f"{module.kind}{position}"] = module

    def attention_modules(self) -> list[nn.Module]:
        return sorted(self.attention.values(), key=lambda m: m.position)

    def _se(self, x: torch.Tensor, position: int) -> torch.Tensor:
        key = f"se{position}"
        return self.attention[key](x) if key in self.attention else x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        skips = []
        for level, block in enumerate(self.down):
            x = self._se(block(x), level + 1)
            skips.append(x)
            x = self.pool(x)
        x = self._se(self.bottom(x), self.depth + 1)
        for step, (up, block) in enumerate(zip(self.ups, self.up_blocks, strict=False), start=1):
            skip = skips[self.depth - step]
            gate = f"ag{step}"
            if gate in self.attention:
                skip = self.attention[gate](skip, x)
            x = self._se(block(torch.cat([up(x), skip], dim=1)), self.depth + 1 + step)
        return self.head(x)
