"""BCDU-Net: a U-Net with a densely connected bottleneck and bidirectional ConvLSTM skip fusion.

Azad, Asadi-Aghbolaghi, Fathy & Escalera 2019, "Bi-directional ConvLSTM U-Net with densely
connected convolutions" (ICCV workshops); paper 002's baseline [10] (Tables 1-3, where it is
printed both "BCDU-Net" and "BCU-Net"). Topology as in the authors' public Keras code
(``rezazad68/BCDU-Net``, ``BCDU_net_D3`` / ``BCDU_net_D1``), with F_l = width·2^l::

    encoder level l = 0..D-1:  [conv3×3-ReLU](F_l) × 2 → skip_l (dropout on the deepest) → maxpool 2×2
    bottleneck, n = dense_blocks:  block k = [conv3×3-ReLU](F_D) × 2 → dropout,
        fed by the pooled features (k = 1), block 1 (k = 2), concat[block k-1, …, block 1] (k ≥ 3)
    decoder level l = D-1..0:  up = ReLU(BN(ConvT2×2s2(F_l)(x)))
        y = BConvLSTM(F_l/2 per direction)([skip_l, up])    (a 2-step sequence: encoder, then decoder)
        x = [conv3×3-ReLU](F_l) × 2 (y)
    head: conv3×3(2)-ReLU → conv1×1 → 1 logit

The paper's BConvLSTM: two ConvLSTMs read the sequence forwards and backwards; their final
hidden states H→, H← are merged as ``Y = tanh(W→ * H→ + W← * H← + b)``, one conv1×1 over
``[H→, H←]``. The public code instead runs *one* ``ConvLSTM2D(F_l/2, go_backwards=True)`` —
``convlstm=backward`` builds that, and only that form reproduces paper 002's count.

Parameters (3 input channels), against paper 002 ("× 10^8" read as × 10^6, spec §8):

=============================================  ==========  ===================================
build                                          ours        paper 002
=============================================  ==========  ===================================
``bcdu-net`` (width 64, D3, bidirectional)     23,026,533  20.66 M (Table 2, ISIC): +11.5 %
``bcdu-net``, ``convlstm=backward`` (code)     20,659,973  20.66 M: −0.0001 %
``bcdu-net-small`` (width 32, bidirectional)   5,759,413   5.22 M (Table 3, DSB): +10.3 %
``bcdu-net-small``, ``convlstm=backward``      5,167,493   5.22 M: −1.0 %
=============================================  ==========  ===================================

So paper 002 evidently counted the public code's network (Keras' total for it, 20,660,869,
adds the 896 BN moving statistics to our trainable count), and its reduced DSB network is
evidently the width-32 one: the count scales with width², 5.22 / 20.66 = 0.253 ≈ (32/64)².
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import Enum

import torch
from torch import nn

from focalbench.errors import FocalbenchError
from focalbench.models.base import SegmentationNet
from focalbench.models.blocks import InitScheme, init_weights_
from focalbench.models.keras import KERAS_BN_EPS, KERAS_BN_MOMENTUM, batch_norm


class ConvLSTMForm(str, Enum):
    """Which skip fusion to build: the paper's BConvLSTM or the public code's one-way ConvLSTM."""

    BIDIRECTIONAL = "bidirectional"  # paper: forward + backward ConvLSTM, Y = tanh(W[H→, H←] + b)
    BACKWARD = "backward"  # code: one ConvLSTM2D(go_backwards=True), its last hidden state


def convlstm_update(gates: torch.Tensor, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One ConvLSTM step from its gate pre-activations (Shi et al. 2015 without peepholes, as Keras).

    ``gates`` (N, 4C, H, W) holds the pre-activations of the input, forget, cell and output gates
    in that order (Keras' i, f, c, o); ``c`` (N, C, H, W) is the previous cell state::

        c' = σ(f) ⊙ c + σ(i) ⊙ tanh(g),    h' = σ(o) ⊙ tanh(c')

    Returns ``(h', c')``.
    """
    i, f, g, o = gates.chunk(4, dim=1)
    c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    return torch.sigmoid(o) * torch.tanh(c), c


class ConvLSTMCell(nn.Module):
    """ConvLSTM cell: one conv k×k over ``[x, h]`` gives the 4 gates (:func:`convlstm_update`).

    Parameters: ``4·(k²·(C_in + C_h)·C_h + C_h)`` — the same as Keras' ``ConvLSTM2D`` (kernel,
    recurrent kernel, one bias). The state starts at zero; :meth:`run` returns the last ``h``.
    """

    def __init__(self, in_channels: int, hidden: int, kernel_size: int = 3) -> None:
        super().__init__()
        self.hidden = hidden
        self.gates = nn.Conv2d(
            in_channels + hidden, 4 * hidden, kernel_size, padding=kernel_size // 2
        )

    @torch.no_grad()
    def init_forget_bias_(self, value: float = 1.0) -> None:
        """Forget-gate bias = 1, the other biases untouched (Keras ``unit_forget_bias=True``)."""
        self.gates.bias[self.hidden : 2 * self.hidden].fill_(value)

    def forward(
        self, x: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        h, c = state
        return convlstm_update(self.gates(torch.cat([x, h], dim=1)), c)

    def run(self, sequence: Sequence[torch.Tensor]) -> torch.Tensor:
        """The hidden state after reading ``sequence`` (each (N, C_in, H, W)) in order."""
        first = sequence[0]
        h = first.new_zeros(first.shape[0], self.hidden, *first.shape[2:])
        state = (h, torch.zeros_like(h))
        for x in sequence:
            state = self(x, state)
        return state[0]


class BConvLSTM(nn.Module):
    """Bidirectional ConvLSTM over a short sequence, ``hidden`` channels per direction.

    ``bidirectional``: ``Y = tanh(conv1×1([H→, H←]))`` with ``H→`` the forward cell's state
    after the last step and ``H←`` the backward cell's after reading the sequence reversed
    (the paper's merge); ``backward``: ``Y = H←`` (the public code). ``Y`` has ``hidden`` channels.
    """

    def __init__(
        self, in_channels: int, hidden: int, form: ConvLSTMForm = ConvLSTMForm.BIDIRECTIONAL
    ) -> None:
        super().__init__()
        form = ConvLSTMForm(form)
        self.cell_backward = ConvLSTMCell(in_channels, hidden)
        self.cell_forward = (
            ConvLSTMCell(in_channels, hidden) if form is ConvLSTMForm.BIDIRECTIONAL else None
        )
        self.merge = (
            nn.Conv2d(2 * hidden, hidden, 1) if form is ConvLSTMForm.BIDIRECTIONAL else None
        )

    def cells(self) -> list[ConvLSTMCell]:
        return [c for c in (self.cell_forward, self.cell_backward) if c is not None]

    def forward(self, sequence: Sequence[torch.Tensor]) -> torch.Tensor:
        h_backward = self.cell_backward.run(list(reversed(sequence)))
        if self.cell_forward is None:
            return h_backward
        h_forward = self.cell_forward.run(list(sequence))
        return torch.tanh(self.merge(torch.cat([h_forward, h_backward], dim=1)))


def _double_conv(cin: int, cout: int) -> nn.Sequential:
    """Two conv3×3 (bias) + ReLU, no normalisation (the code's Keras ``Conv2D(activation='relu')``)."""
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1),
        nn.ReLU(inplace=True),
        nn.Conv2d(cout, cout, 3, padding=1),
        nn.ReLU(inplace=True),
    )


class BCDUNet(SegmentationNet):
    """BCDU-Net with ``width`` first-level filters (64), ``depth`` down-samplings (3),
    ``dense_blocks`` in the bottleneck (3 = the paper's "D3", 1 = "D1"), ``convlstm``
    bidirectional (paper) | backward (code), ``dropout`` (0.5, as coded) and ``bn_eps`` /
    ``bn_momentum`` of the decoder's batch norms (Keras' 1e-3 / 0.99 = PyTorch 0.01: the code's
    ``BatchNormalization(axis=3)`` keeps the defaults).
    """

    def __init__(
        self,
        in_channels: int = 3,
        width: int = 64,
        depth: int = 3,
        dense_blocks: int = 3,
        convlstm: ConvLSTMForm = ConvLSTMForm.BIDIRECTIONAL,
        dropout: float = 0.5,
        bn_eps: float = KERAS_BN_EPS,
        bn_momentum: float = KERAS_BN_MOMENTUM,
    ) -> None:
        super().__init__()
        if width % 2:
            raise FocalbenchError(
                f"BCDU-Net: width={width} must be even (each ConvLSTM direction has F_l/2 channels), e.g. --param model.width=32"
            )
        if dense_blocks < 1:
            raise FocalbenchError(
                f"BCDU-Net: dense_blocks={dense_blocks} must be >= 1 (the paper's variants are 1 and 3)"
            )
        self.depth = depth
        self.size_multiple = 2**depth
        widths = [width * 2**level for level in range(depth + 1)]
        bottom = widths[-1]

        self.down = nn.ModuleList(
            _double_conv(cin, f)
            for cin, f in zip([in_channels, *widths[:-2]], widths[:-1], strict=False)
        )
        self.pool = nn.MaxPool2d(2)
        self.skip_dropout = nn.Dropout(dropout)  # on the deepest skip only (the code's drop3)
        dense_inputs = [widths[-2], bottom] + [k * bottom for k in range(2, dense_blocks)]
        self.dense = nn.ModuleList(_double_conv(cin, bottom) for cin in dense_inputs[:dense_blocks])
        self.dropout = nn.Dropout(dropout)
        self.ups = nn.ModuleList()
        self.fuse = nn.ModuleList()
        self.up_blocks = nn.ModuleList()
        for level in reversed(range(depth)):
            f = widths[level]
            self.ups.append(
                nn.Sequential(
                    nn.ConvTranspose2d(widths[level + 1], f, 2, stride=2),
                    batch_norm(f, bn_eps, bn_momentum),
                    nn.ReLU(inplace=True),
                )
            )
            self.fuse.append(BConvLSTM(f, f // 2, convlstm))
            self.up_blocks.append(_double_conv(f // 2, f))
        self.head = nn.Sequential(
            nn.Conv2d(widths[0], 2, 3, padding=1), nn.ReLU(inplace=True), nn.Conv2d(2, 1, 1)
        )
        init_weights_(self, InitScheme.KAIMING_NORMAL)
        for fuse in self.fuse:
            for cell in fuse.cells():
                cell.init_forget_bias_(1.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        skips = []
        for block in self.down:
            x = block(x)
            skips.append(x)
            x = self.pool(x)
        skips[-1] = self.skip_dropout(skips[-1])
        outputs: list[torch.Tensor] = []  # dense block outputs, most recent first
        for block in self.dense:
            x = self.dropout(block(torch.cat(outputs, dim=1) if outputs else x))
            outputs.insert(0, x)
        for up, fuse, block, skip in zip(
            self.ups, self.fuse, self.up_blocks, reversed(skips), strict=False
        ):
            x = block(fuse([skip, up(x)]))
        return self.head(x)
