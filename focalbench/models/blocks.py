"""Building blocks shared by the networks: conv blocks, SE, attention gates and the Focal layer.

The maths of the Focal layer is the pure function :func:`focal_power`; the modules are thin.
Every attention module (SE, attention gate) carries ``kind`` (``"se"`` or ``"ag"``), the
``position`` the network gave it, and ``focal`` (a :class:`FocalLayer` or ``None``).
"""

from __future__ import annotations

from enum import Enum

import torch
import torch.nn.functional as F
from torch import nn

from focalbench.models.keras import (
    KERAS_BN_EPS,
    KERAS_BN_MOMENTUM,
    ConvTranspose2dSame,
    batch_norm,
    conv2d_same,
)

FOCAL_EPS = 1e-7


class Norm(str, Enum):
    """Normalisation after each conv: instance norm (paper 000 spec) or batch norm (Keras codes)."""

    INSTANCE = "instance"
    BATCH = "batch"


class GateForm(str, Enum):
    """Which published attention gate to build (spec §3 and §5).

    * ``miscnn`` — MIScnn's 2-D port used by paper 000: gating conv1×1+norm+ReLU inside the gate,
      θ = conv3×3 stride 2 with bias, nearest up-sampling of α.
    * ``oktay`` — Oktay et al.'s ``_concatenation`` gate: θ = conv2×2 stride 2 without bias, φ
      resampled bilinearly to θ's size, bilinear up-sampling of α; no gating conv.
    * ``abraham`` — paper 003's gate: gating conv1×1(C_g)+norm+ReLU, θ = conv2×2 stride 2,
      φ = conv1×1 followed by a transposed conv3×3 whose stride is the size ratio, nearest α.
    """

    MISCNN = "miscnn"
    OKTAY = "oktay"
    ABRAHAM = "abraham"


def make_norm(
    kind: Norm, channels: int, eps: float = KERAS_BN_EPS, momentum: float = KERAS_BN_MOMENTUM
) -> nn.Module:
    """Instance or batch norm with ε = ``eps`` (Keras' 1e-3 by default) and, for batch norm, the
    running-statistics ``momentum`` in PyTorch's sense (Keras' 0.99 = 0.01 here)."""
    if Norm(kind) is Norm.INSTANCE:
        # affine=True: the spec counts γ, β per channel; no running stats, so train == test. It
        # stands in for MIScnn's Keras batch norm at batch size 1, so it takes that ε.
        return nn.InstanceNorm2d(channels, eps=eps, affine=True)
    return batch_norm(channels, eps, momentum)


def focal_power(a: torch.Tensor, w: torch.Tensor, eps: float = FOCAL_EPS) -> torch.Tensor:
    """Focal modulation of attention weights, paper 000 §2.2: ``a' = clip(a, ε, 1) ** w``.

    ``a`` ∈ [0, 1] are attention weights (SE channel weights ``s`` or an attention gate's ``α``),
    ``w`` ≥ 0 a scalar. ``w = 1`` returns ``a`` unchanged wherever ``a ≥ ε``; ``w = 0`` returns 1
    (the module becomes the identity); ``w > 1`` sharpens the attention. The clip to ε = 1e-7
    (Keras' epsilon, as in the authors' ``focus_gate.py`` ``Gamma`` layer) keeps
    ``∂a'/∂w = a'·ln a`` finite.
    """
    return a.clamp(eps, 1.0) ** w


class FocalLayer(nn.Module):
    """One trainable scalar ``w`` (initialised to ``init``) applied as :func:`focal_power`.

    ``w ≥ 0`` is kept by :func:`focalbench.models.clamp_focal_weights_` after each optimiser step
    (Keras ``NonNeg`` in the authors' code).
    """

    def __init__(self, init: float = 1.0) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.tensor(float(init)))

    def forward(self, a: torch.Tensor) -> torch.Tensor:
        return focal_power(a, self.weight)


def _focal(focal_init: float | None) -> FocalLayer | None:
    return None if focal_init is None else FocalLayer(focal_init)


class ConvNormAct(nn.Sequential):
    """MIScnn order: conv3×3 (bias, 'same') → ReLU → norm (activation *before* norm, spec §1)."""

    def __init__(
        self,
        cin: int,
        cout: int,
        norm: Norm,
        bn_eps: float = KERAS_BN_EPS,
        bn_momentum: float = KERAS_BN_MOMENTUM,
    ) -> None:
        super().__init__(
            nn.Conv2d(cin, cout, 3, padding=1),
            nn.ReLU(inplace=True),
            make_norm(norm, cout, bn_eps, bn_momentum),
        )


class DoubleConv(nn.Sequential):
    """Two :class:`ConvNormAct` — one U-Net level."""

    def __init__(
        self,
        cin: int,
        cout: int,
        norm: Norm,
        bn_eps: float = KERAS_BN_EPS,
        bn_momentum: float = KERAS_BN_MOMENTUM,
    ) -> None:
        super().__init__(
            ConvNormAct(cin, cout, norm, bn_eps, bn_momentum),
            ConvNormAct(cout, cout, norm, bn_eps, bn_momentum),
        )


class RecurrentConv(nn.Module):
    """Recurrent conv layer (RCL) unrolled for ``t`` steps: ``h_0 = f(x)``, ``h_k = f(x + h_{k−1})``
    for k = 1..t, output ``h_t``; ``f`` = conv3×3 → BN → ReLU with one set of weights for every step.

    Liang & Hu's RCL, as R2U-Net uses it: t steps unfold to depth t + 1, so ``t`` changes the
    computation and the receptive field but not the parameter count; ``t = 0`` is a plain
    conv-BN-ReLU. Shapes: (N, C, H, W) → (N, C, H, W).
    """

    def __init__(
        self,
        channels: int,
        t: int = 2,
        bn_eps: float = KERAS_BN_EPS,
        bn_momentum: float = KERAS_BN_MOMENTUM,
    ) -> None:
        super().__init__()
        self.t = t
        self.f = nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=1),
            batch_norm(channels, bn_eps, bn_momentum),
            nn.ReLU(inplace=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.f(x)
        for _ in range(self.t):
            h = self.f(x + h)
        return h


class RecurrentResidualBlock(nn.Module):
    """R2U-Net's recurrent residual conv unit (RRCNN): ``u = conv1×1(x)``, ``y = u + RCL_t(RCL_t(u))``.

    The 1×1 conv gives the residual add matching channels; no activation after the add.
    """

    def __init__(
        self,
        cin: int,
        cout: int,
        t: int = 2,
        bn_eps: float = KERAS_BN_EPS,
        bn_momentum: float = KERAS_BN_MOMENTUM,
    ) -> None:
        super().__init__()
        self.project = nn.Conv2d(cin, cout, 1)
        self.body = nn.Sequential(
            RecurrentConv(cout, t, bn_eps, bn_momentum), RecurrentConv(cout, t, bn_eps, bn_momentum)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        u = self.project(x)
        return u + self.body(u)


class SqueezeExcitation(nn.Module):
    """Squeeze-and-excitation (Hu et al. 2018), optionally with a Focal layer (paper 000).

    ``z_c = mean_{h,w} x_c``; ``s = σ(W2 ReLU(W1 z + b1) + b2)`` with ``W1: C → C/r``,
    ``W2: C/r → C``; ``y_c = s_c^w · x_c`` (``w`` only with a Focal layer). The FC layers are 1×1
    convs (same parameters as dense layers, and they keep ``channels_last`` tensors as they are).
    """

    kind = "se"

    def __init__(
        self, channels: int, reduction: int = 8, bias: bool = True, focal_init: float | None = None
    ) -> None:
        super().__init__()
        hidden = max(1, channels // reduction)
        self.fc1 = nn.Conv2d(channels, hidden, 1, bias=bias)
        self.fc2 = nn.Conv2d(hidden, channels, 1, bias=bias)
        self.focal = _focal(focal_init)
        self.position: int | None = None

    def weights(self, x: torch.Tensor) -> torch.Tensor:
        """The attention weights ``s`` (N, C, 1, 1), after the Focal layer when present."""
        s = torch.sigmoid(self.fc2(F.relu(self.fc1(x.mean((2, 3), keepdim=True)))))
        return s if self.focal is None else self.focal(s)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.weights(x)


class AttentionGate(nn.Module):
    """Additive attention gate on a skip ``x`` (C_x, H, W) driven by a coarser signal ``g``.

    Oktay et al. 2018 / spec §3, §5::

        θx = θ(x)                               (F_int, H/2, W/2)
        φg = φ(gating(g)), resampled to θx's size
        α  = σ(ψ^T ReLU(θx + φg) + b_ψ)          (1, H/2, W/2)
        α' = clip(α, ε, 1) ** w                  (Focal layer, applied before up-sampling)
        x̂  = W(up(α') ⊙ x),  W = conv1×1(C_x → C_x) + norm

    The output conv+norm ``W`` stays when ``w = 0``: only the multiplicative gate becomes the
    identity (spec §4). ``g_stride`` is the size ratio θx : g for the ``abraham`` form's
    transposed conv (1 when g is already at H/2).
    """

    kind = "ag"

    def __init__(
        self,
        x_channels: int,
        g_channels: int,
        inter_channels: int,
        form: GateForm = GateForm.MISCNN,
        norm: Norm = Norm.INSTANCE,
        focal_init: float | None = None,
        g_stride: int = 1,
        bn_eps: float = KERAS_BN_EPS,
        bn_momentum: float = KERAS_BN_MOMENTUM,
    ) -> None:
        super().__init__()
        form = GateForm(form)
        self.form = form
        if form is GateForm.OKTAY:
            self.gating = nn.Identity()
            self.theta = nn.Conv2d(x_channels, inter_channels, 2, stride=2, bias=False)
            phi_in = g_channels
        else:
            gate_out = inter_channels if form is GateForm.MISCNN else g_channels
            self.gating = nn.Sequential(
                nn.Conv2d(g_channels, gate_out, 1),
                make_norm(norm, gate_out, bn_eps, bn_momentum),
                nn.ReLU(inplace=True),
            )
            # TF 'same' with stride 2 pads an even side only at the bottom/right, so θ's pixel i
            # is centred on skip pixels 2i..2i+1, the two the nearest up-sampling gives α_i to
            kernel = 3 if form is GateForm.MISCNN else 2
            self.theta = conv2d_same(x_channels, inter_channels, kernel, stride=2)
            phi_in = gate_out
        phi: list[nn.Module] = [nn.Conv2d(phi_in, inter_channels, 1)]
        if form is GateForm.ABRAHAM:
            # Keras Conv2DTranspose(3×3, strides=s, 'same'): s·n pixels, the full output's last cut
            phi.append(ConvTranspose2dSame(inter_channels, inter_channels, 3, stride=g_stride))
        self.phi = nn.Sequential(*phi)
        self.psi = nn.Conv2d(inter_channels, 1, 1)
        self.out = nn.Sequential(
            nn.Conv2d(x_channels, x_channels, 1), make_norm(norm, x_channels, bn_eps, bn_momentum)
        )
        self.focal = _focal(focal_init)
        self.position: int | None = None

    def coefficients(self, x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        """α (N, 1, H, W) at the skip's resolution, after the Focal layer when present."""
        theta = self.theta(x)
        phi = self.phi(self.gating(g))
        bilinear = self.form is GateForm.OKTAY
        if phi.shape[-2:] != theta.shape[-2:]:
            phi = F.interpolate(phi, size=theta.shape[-2:], mode="bilinear", align_corners=False)
        alpha = torch.sigmoid(self.psi(F.relu(theta + phi)))
        if self.focal is not None:
            alpha = self.focal(alpha)
        if bilinear:
            return F.interpolate(alpha, size=x.shape[-2:], mode="bilinear", align_corners=False)
        return F.interpolate(alpha, size=x.shape[-2:], mode="nearest")

    def forward(self, x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        return self.out(self.coefficients(x, g) * x)


class InitScheme(str, Enum):
    """Weight initialisation of conv layers (biases start at 0, as in Keras)."""

    XAVIER_UNIFORM = "xavier-uniform"  # Keras glorot_uniform default (MIScnn, FocusNet++ code)
    XAVIER_NORMAL = "xavier-normal"  # paper 003 code (glorot_normal)
    KAIMING_NORMAL = "kaiming-normal"  # FocusNet code (he_normal)


def init_weights_(module: nn.Module, scheme: InitScheme) -> None:
    """Initialise every conv / transposed conv / linear weight of ``module`` in place."""
    fill = {
        InitScheme.XAVIER_UNIFORM: nn.init.xavier_uniform_,
        InitScheme.XAVIER_NORMAL: nn.init.xavier_normal_,
        InitScheme.KAIMING_NORMAL: lambda w: nn.init.kaiming_normal_(w, nonlinearity="relu"),
    }[InitScheme(scheme)]
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            fill(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
