"""Loss maths as pure tensor functions (spec ``../shared/spec/losses.md``; docs ``docs/losses.md``).

Conventions (spec §0). Networks give one logit per pixel, ``(N, 1, H, W)``; the two-class view
used by the UFL/MIScnn code is derived from ``p = sigmoid(logit)``:
``P[:, 0] = 1 − p`` (background), ``P[:, 1] = p`` (foreground, the rare class r), and
``Y[:, 0] = 1 − g``, ``Y[:, 1] = g`` for the target. All functions here take these two-channel
tensors ``(N, 2, H, W)``, an optional per-pixel weight ``w`` ``(N, 1, H, W)`` (the FDPT map of
``fdpt_mode=pixel_weight``) and return a scalar. They expect float32 inputs; the modules in
:mod:`focalbench.losses.modules` take care of that under autocast.

Soft confusion counts of class c over a set S of pixels (the reduction):
``TP_c = Σ_S w Y_c P_c``, ``FN_c = Σ_S w Y_c (1 − P_c)``, ``FP_c = Σ_S w (1 − Y_c) P_c``.
"""

from __future__ import annotations

import math
from enum import Enum

import torch
import torch.nn.functional as F
from torch import Tensor

#: Keras ``K.epsilon()``: the UFL code clips probabilities to [ε, 1 − ε] before every log.
CLIP_EPS = 1e-7

_LOG_LO = math.log(CLIP_EPS)
_LOG_HI = math.log1p(-CLIP_EPS)


class Reduction(str, Enum):
    """The pixel set S of a region index (spec §0)."""

    IMAGE = "image"  # one index per image, then the mean over images (UFL / MIScnn code)
    BATCH = "batch"  # one index over the flattened mini-batch (focal-tversky-unet, FocusNet code)


class Classes(str, Enum):
    """Which classes a region loss averages over (spec §0)."""

    BOTH = "both"  # background and foreground (2-channel softmax code, paper 000)
    FG = "fg"  # the foreground only (single sigmoid output, papers 001–003)


class ClassAgg(str, Enum):
    """How the AFT combines its two class terms (spec §6, ambiguity register 3)."""

    MEAN = "mean"  # the code, which produced the published numbers
    SUM = "sum"  # the papers' equations


def class_probs(logits: Tensor) -> Tensor:
    """``P = [1 − p, p]`` with ``p = sigmoid(logit)``: ``(N, 1, H, W)`` → ``(N, 2, H, W)``.

    ``1 − p`` is computed as ``sigmoid(−logit)``, exact where ``p`` rounds to 1.
    """
    return torch.cat([torch.sigmoid(-logits), torch.sigmoid(logits)], dim=1)


def class_log_probs(logits: Tensor) -> Tensor:
    """``log clip(P_c, ε, 1 − ε)`` for both classes, from log-sigmoids.

    ``log clip(p) = clamp(log p, log ε, log(1 − ε))`` because log is monotone, and
    ``log p = logsigmoid(x)``, ``log(1 − p) = logsigmoid(−x)`` never round ``p`` to 0 or 1 first.
    """
    return torch.cat([F.logsigmoid(-logits), F.logsigmoid(logits)], dim=1).clamp(_LOG_LO, _LOG_HI)


def class_targets(target: Tensor) -> Tensor:
    """``Y = [1 − g, g]``: ``(N, 1, H, W)`` → ``(N, 2, H, W)``."""
    return torch.cat([1.0 - target, target], dim=1)


def _sum(x: Tensor, reduction: Reduction) -> Tensor:
    """Sum over S: ``(N, C, H, W)`` → ``(N, C)`` per image or ``(1, C)`` over the batch."""
    per_image = x.sum(dim=(2, 3))
    return per_image if Reduction(reduction) is Reduction.IMAGE else per_image.sum(0, keepdim=True)


def _weighted(x: Tensor, weight: Tensor | None) -> Tensor:
    return x if weight is None else x * weight


def soft_confusion(
    probs: Tensor, targets: Tensor, reduction: Reduction, weight: Tensor | None = None
) -> tuple[Tensor, Tensor, Tensor]:
    """Soft ``TP_c, FN_c, FP_c``, each ``(N or 1, 2)`` (spec §0).

    ``1 − P_c`` is read from the other channel, ``P_c̄`` (equal in exact arithmetic, the
    clipping to [ε, 1 − ε] included): in float32 ``1 − 0.9999999`` is 1.19e-7 where ``P_c̄``
    holds 1e-7, a 19 % error in the FN of every saturated pixel.
    """
    complement = probs.flip(1)
    tp = _sum(_weighted(targets * probs, weight), reduction)
    fn = _sum(_weighted(targets * complement, weight), reduction)
    fp = _sum(_weighted((1.0 - targets) * probs, weight), reduction)
    return tp, fn, fp


def select_classes(per_class: Tensor, classes: Classes) -> Tensor:
    """Keep both class columns of ``(B, 2)`` or only the foreground one."""
    return per_class if Classes(classes) is Classes.BOTH else per_class[:, 1:]


def dice_score(
    probs: Tensor,
    targets: Tensor,
    smooth: float,
    reduction: Reduction,
    weight: Tensor | None = None,
) -> Tensor:
    """Soft Dice per set and class, ``(B, 2)`` (spec §1; MIScnn ``dice_soft``)::

    DSC_c = (2·TP_c + s) / (Σ_S Y_c + Σ_S P_c + s)
    """
    tp = _sum(_weighted(targets * probs, weight), reduction)
    total = _sum(_weighted(targets + probs, weight), reduction)
    return (2.0 * tp + smooth) / (total + smooth)


def dice_loss(
    probs: Tensor,
    targets: Tensor,
    *,
    smooth: float,
    reduction: Reduction,
    classes: Classes,
    weight: Tensor | None = None,
) -> Tensor:
    """``L_DSC = 1 − mean_c mean_n DSC_c`` (spec §1)."""
    return (
        1.0 - select_classes(dice_score(probs, targets, smooth, reduction, weight), classes).mean()
    )


def tversky_index(
    probs: Tensor,
    targets: Tensor,
    *,
    w_fn: float,
    w_fp: float,
    smooth: float,
    reduction: Reduction,
    weight: Tensor | None = None,
) -> Tensor:
    """Tversky index per set and class, ``(B, 2)`` (spec §3)::

        TI_c = (TP_c + s) / (TP_c + w_fn·FN_c + w_fp·FP_c + s)

    ``w_fn = w_fp = 0.5`` gives the Dice score with smoothing ``2s``.
    """
    tp, fn, fp = soft_confusion(probs, targets, reduction, weight)
    return (tp + smooth) / (tp + w_fn * fn + w_fp * fp + smooth)


def tversky_distance(
    probs: Tensor,
    targets: Tensor,
    *,
    w_fn: float,
    w_fp: float,
    smooth: float,
    reduction: Reduction,
    weight: Tensor | None = None,
) -> Tensor:
    """``1 − TI_c`` per set and class, ``(B, 2)``, computed directly::

        1 − TI_c = (w_fn·FN_c + w_fp·FP_c) / (TP_c + w_fn·FN_c + w_fp·FP_c + s)

    Algebraically ``1 − tversky_index``; numerically it keeps its relative precision where TI is
    near 1 (a near-perfect prediction, where training ends): ``1 −`` a float32 ratio close to 1
    loses every digit below 6e-8, which the fractional focal exponents then amplify.
    """
    tp, fn, fp = soft_confusion(probs, targets, reduction, weight)
    errors = w_fn * fn + w_fp * fp
    return errors / (tp + errors + smooth)


def focal_power(x: Tensor, exponent: float) -> Tensor:
    """``x^a`` for ``x > 0``; at ``x ≤ 0`` the limit ``0^a`` (``x`` itself when ``a = 1``).

    ``d/dx x^a`` is unbounded at 0 when a < 1 (spec §3 "gradient hazard"), and a negative base
    (``1 − TI < 0``, possible with ``fdpt_mode=replace_gt``, spec §8.2) has no real fractional
    power: both give the clamped limit with zero gradient, as the reference clamps
    ``1 − mTI ≥ 0``. A linear term (a = 1) is left unclamped, as in the reference code.
    ``a`` is a Python float: a tensor built from it per call would be a blocking host-to-device
    copy on every training step.
    """
    exponent = float(exponent)
    if exponent == 1.0:
        return x
    positive = x > 0
    safe = torch.where(positive, x, torch.ones_like(x))
    return torch.where(positive, safe.pow(exponent), torch.zeros_like(x).pow(exponent))


def focal_tversky_loss(
    probs: Tensor,
    targets: Tensor,
    *,
    w_fn: float,
    w_fp: float,
    smooth: float,
    reduction: Reduction,
    classes: Classes,
    exponent: tuple[float, float] = (1.0, 1.0),
    class_agg: ClassAgg = ClassAgg.MEAN,
    weight: Tensor | None = None,
) -> Tensor:
    """``agg_c mean_n (1 − TI_c)^{a_c}`` with a per-class exponent ``a = (a_bg, a_fg)``.

    One formula, three losses (spec §3, §6):

    * Tversky loss TL: ``a = (1, 1)``.
    * Focal Tversky loss FTL (paper 003 eq. 4): ``a = (1/γ, 1/γ)``, γ = 4/3.
    * Asymmetric focal Tversky AFT (paper 000 eq. 3–4): ``a = (1, 1 − γ)``, ``w_fn = δ``,
      ``w_fp = 1 − δ``, probabilities clipped, ``s = 1e-7``: linear background, enhanced rare class.
    """
    distance = tversky_distance(
        probs, targets, w_fn=w_fn, w_fp=w_fp, smooth=smooth, reduction=reduction, weight=weight
    )
    terms = select_classes(
        torch.stack([focal_power(distance[:, c], exponent[c]) for c in (0, 1)], dim=1), classes
    )
    per_set = terms.sum(1) if ClassAgg(class_agg) is ClassAgg.SUM else terms.mean(1)
    return per_set.mean()


def focal_cross_entropy(
    log_probs: Tensor,
    targets: Tensor,
    *,
    class_weight: tuple[float, float] = (1.0, 1.0),
    gamma: tuple[float, float] = (0.0, 0.0),
    weight: Tensor | None = None,
) -> Tensor:
    """``mean_{n,i} w_i Σ_c a_c (1 − P_c)^{γ_c} (−Y_c log P_c)``, P clipped to [ε, 1 − ε].

    ``log_probs`` from :func:`class_log_probs`. The focal factor uses ``1 − clip(P_c) = clip(P_c̄)``
    so it is ``exp(γ_c log P_c̄)``, never a power of a rounded difference. The pixel-wise losses
    of the spec are settings of ``a = (a_bg, a_fg)`` and ``γ = (γ_bg, γ_fg)``:

    * CE (§2): a = (1, 1), γ = (0, 0) — the binary cross-entropy of p.
    * balanced CE C_b (§9, paper 002): a = (1 − Ω, Ω), γ = (0, 0).
    * focal loss FL (§4, Lin et al.): a = (1 − α, α) or (1, 1), γ = (γ, γ).
    * asymmetric focal AF (§5, paper 000 eq. 2): a = (1 − δ, δ), γ = (γ, 0) — only the
      background is focally suppressed; δ = 0.5, γ = 0 gives CE/2.
    """
    per_pixel = None
    for c in (0, 1):  # the two classes, with Python-float weights (no host-to-device copy per call)
        term = -targets[:, c : c + 1] * log_probs[:, c : c + 1] * class_weight[c]
        if gamma[c] != 0:
            term = term * torch.exp(gamma[c] * log_probs[:, 1 - c : 2 - c])
        per_pixel = term if per_pixel is None else per_pixel + term
    return _weighted(per_pixel, weight).mean()


def adaptive_log(x: Tensor, *, threshold: float, scale: float, epsilon: float) -> Tensor:
    """Adaptive logarithmic wrapper of FocusNet++ (paper 002 eq. 2; spec §10)::

        ALL(x) = ω ln(1 + |x|/ε)   if |x| < γ
                 |x| − C            otherwise,    C = γ − ω ln(1 + γ/ε)

    with γ = ``threshold``, ω = ``scale``, ε = ``epsilon``. Continuous at |x| = γ; with the
    paper's γ = 0.1, ω = 10, ε = 0.5, C = −1.723216. Applied to the scalar mini-batch loss.
    """
    magnitude = x.abs()
    offset = threshold - scale * math.log1p(threshold / epsilon)
    return torch.where(
        magnitude < threshold, scale * torch.log1p(magnitude / epsilon), magnitude - offset
    )
