"""Thin ``nn.Module`` wrappers over :mod:`focalbench.losses.functional`.

A *term* (Dice, CE, UFL, …) maps prepared inputs to a scalar. A :class:`Loss` is a sum of terms
that share one boundary weighting (DPT/FDPT, spec §8.2) and is what :func:`build_loss` returns;
:class:`AdaptiveLog` and :class:`DeepSupervision` wrap a :class:`Loss`. Every module is called
as ``loss(logits, target, distance_map=None)`` and computes in float32 even under autocast
(a 512×512 sum overflows float16).
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from enum import Enum
from functools import cached_property
from typing import ClassVar

import torch
from torch import Tensor, nn

from focalbench.errors import FocalbenchError
from focalbench.losses import boundary
from focalbench.losses import functional as Fn
from focalbench.losses.functional import ClassAgg, Classes, Reduction


class FdptMode(str, Enum):
    """How the (F)DPT weight enters a loss (spec §8.2, ambiguity register 9)."""

    PIXEL_WEIGHT = "pixel_weight"  # every pixel's contribution to every sum × W (recommended)
    REPLACE_GT = "replace_gt"  # Y_c ← Y_c · W, the paper's literal wording


class LambdaOn(str, Enum):
    """Which UFL part λ weights (spec §7, ambiguity register 4)."""

    AF = "af"  # paper 000 eq. 1: λ·L_AF + (1 − λ)·L_AFT
    AFT = "aft"  # the UFL code's ``weight``: λ·L_AFT + (1 − λ)·L_AF


@dataclass
class LossInputs:
    """One call's float32 logits ``(N, 1, H, W)``, class targets ``Y`` ``(N, 2, H, W)`` and pixel weight."""

    logits: Tensor
    targets: Tensor
    weight: Tensor | None = None

    @cached_property
    def probs(self) -> Tensor:
        return Fn.class_probs(self.logits)

    @cached_property
    def log_probs(self) -> Tensor:
        return Fn.class_log_probs(self.logits)

    @cached_property
    def clipped_probs(self) -> Tensor:
        """``clip(P, ε, 1 − ε)``, as the UFL code feeds its Tversky sums."""
        return self.log_probs.exp()


def _in_range(
    name: str, value: object, low: float, high: float = float("inf"), *, open_low: bool = False
) -> float:
    """``value`` as a float within its range, or a one-line :class:`FocalbenchError`."""
    bracket = (
        ("(" if open_low else "[") + f"{low:g}, " + ("∞)" if high == float("inf") else f"{high:g}]")
    )
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise FocalbenchError(
            f"loss parameter {name}={value!r} is not a number; pass a value in {bracket}"
        ) from None
    if (number <= low if open_low else number < low) or number > high:
        raise FocalbenchError(
            f"loss parameter {name}={number:g} is out of range {bracket}; pass a value in it"
        )
    return number


def _option(enum: type, name: str, value: object):
    try:
        return enum(value)
    except ValueError:
        choices = ", ".join(member.value for member in enum)
        raise FocalbenchError(
            f"loss parameter {name}={value!r} is not valid; choose from: {choices}"
        ) from None


class Term(nn.Module):
    """One summand of a loss: ``compute(inputs) -> scalar``. Subclasses name their paper."""

    paper: ClassVar[str] = ""
    summary: ClassVar[str] = ""
    #: The term whose keyword parameters ``**kwargs`` of ``__init__`` forward to.
    forwards_to: ClassVar[type[Term] | None] = None

    @classmethod
    def defaults(cls) -> dict:
        """Every accepted keyword parameter with its default (enums as their values)."""
        out = {}
        for name, param in inspect.signature(cls.__init__).parameters.items():
            if param.kind is inspect.Parameter.KEYWORD_ONLY:
                default = param.default
                out[name] = default.value if isinstance(default, Enum) else default
        return out if cls.forwards_to is None else {**out, **cls.forwards_to.defaults()}

    def compute(self, x: LossInputs) -> Tensor:
        raise NotImplementedError

    def params(self) -> dict:
        """The effective parameters, as plain values (for run files and ``focalbench losses``)."""
        return {
            k: (v.value if isinstance(v, Enum) else v)
            for k, v in vars(self).items()
            if not k.startswith("_") and k != "training"
        }

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v!r}" for k, v in self.params().items())


class RegionTerm(Term):
    """Shared parameters of the region (index-based) losses."""

    def __init__(self, *, smooth: float, reduction: Reduction, classes: Classes) -> None:
        super().__init__()
        self.smooth = _in_range("smooth", smooth, 0.0)
        self.reduction = _option(Reduction, "reduction", reduction)
        self.classes = _option(Classes, "classes", classes)


class Dice(RegionTerm):
    """Soft Dice loss ``1 − mean_c mean_n (2TP_c + s)/(ΣY_c + ΣP_c + s)`` (spec §1).

    Defaults are paper 000's (MIScnn ``dice_soft``): s = 1e-5, per image, both classes.
    Papers 001/003 (focal-tversky-unet ``dice_loss``): s = 1, batch, fg (preset ``paper001``/``paper003``).
    """

    paper = "000 (001, 003 via preset)"
    summary = "soft Dice loss 1 − DSC"

    def __init__(
        self,
        *,
        smooth: float = 1e-5,
        reduction: Reduction = Reduction.IMAGE,
        classes: Classes = Classes.BOTH,
    ) -> None:
        super().__init__(smooth=smooth, reduction=reduction, classes=classes)

    def compute(self, x: LossInputs) -> Tensor:
        return Fn.dice_loss(
            x.probs,
            x.targets,
            smooth=self.smooth,
            reduction=self.reduction,
            classes=self.classes,
            weight=x.weight,
        )


class CrossEntropy(Term):
    """Binary cross-entropy ``mean_{n,i} −Σ_c Y_c log clip(P_c)`` (spec §2; Keras clip ε = 1e-7)."""

    paper = "000"
    summary = "binary cross-entropy, pixel mean"

    def compute(self, x: LossInputs) -> Tensor:
        return Fn.focal_cross_entropy(x.log_probs, x.targets, weight=x.weight)


class BalancedCE(Term):
    """Balanced CE ``C_b = mean −[Ω g log p + (1 − Ω)(1 − g) log(1 − p)]`` (paper 002; spec §9)."""

    paper = "002"
    summary = "class-balanced cross-entropy (foreground weight omega)"

    def __init__(self, *, omega: float = 0.7) -> None:
        super().__init__()
        self.omega = _in_range("omega", omega, 0.0, 1.0)

    def compute(self, x: LossInputs) -> Tensor:
        return Fn.focal_cross_entropy(
            x.log_probs, x.targets, class_weight=(1.0 - self.omega, self.omega), weight=x.weight
        )


class Focal(Term):
    """Binary focal loss ``mean −α_t (1 − p_t)^γ log p_t`` (Lin et al. 2017; spec §4).

    ``alpha`` is Lin's α_t on the foreground (1 − α on the background); ``None`` weights both 1.
    """

    paper = "Lin et al. 2017 (UFL hierarchy)"
    summary = "focal loss"

    def __init__(self, *, gamma: float = 2.0, alpha: float | None = None) -> None:
        super().__init__()
        self.gamma = _in_range("gamma", gamma, 0.0)
        self.alpha = None if alpha is None else _in_range("alpha", alpha, 0.0, 1.0)

    def compute(self, x: LossInputs) -> Tensor:
        weights = (1.0, 1.0) if self.alpha is None else (1.0 - self.alpha, self.alpha)
        return Fn.focal_cross_entropy(
            x.log_probs,
            x.targets,
            class_weight=weights,
            gamma=(self.gamma, self.gamma),
            weight=x.weight,
        )


class AsymFocal(Term):
    """Asymmetric focal loss ``L_AF`` (paper 000 eq. 2; spec §5)::

        l_i = (1 − δ)(1 − P_{i,0})^γ (−Y_{i,0} log P_{i,0}) + δ (−Y_{i,1} log P_{i,1}),  mean over pixels

    Defaults δ = 0.7, γ = 2 are the UFL repository's ``asymmetric_focal_loss``.
    """

    paper = "000"
    summary = "asymmetric focal loss (background suppressed)"

    def __init__(self, *, delta: float = 0.7, gamma: float = 2.0) -> None:
        super().__init__()
        self.delta = _in_range("delta", delta, 0.0, 1.0)
        self.gamma = _in_range("gamma", gamma, 0.0)

    def compute(self, x: LossInputs) -> Tensor:
        return Fn.focal_cross_entropy(
            x.log_probs,
            x.targets,
            class_weight=(1.0 - self.delta, self.delta),
            gamma=(self.gamma, 0.0),
            weight=x.weight,
        )


class Tversky(RegionTerm):
    """Tversky loss ``mean_c (1 − TI_c)``, ``TI = (TP + s)/(TP + w_fn·FN + w_fp·FP + s)`` (spec §3).

    Defaults are paper 003's (focal-tversky-unet ``tversky``): w_fn = 0.7, w_fp = 0.3, s = 1,
    flattened batch, foreground only. ``w_fn = w_fp = 0.5`` gives the Dice loss with smoothing 2s.
    """

    paper = "003"
    summary = "Tversky loss"

    def __init__(
        self,
        *,
        w_fn: float = 0.7,
        w_fp: float = 0.3,
        smooth: float = 1.0,
        reduction: Reduction = Reduction.BATCH,
        classes: Classes = Classes.FG,
    ) -> None:
        super().__init__(smooth=smooth, reduction=reduction, classes=classes)
        self.w_fn = _in_range("w_fn", w_fn, 0.0)
        self.w_fp = _in_range("w_fp", w_fp, 0.0)

    def exponent(self) -> tuple[float, float]:
        return (1.0, 1.0)

    def compute(self, x: LossInputs) -> Tensor:
        return Fn.focal_tversky_loss(
            x.probs,
            x.targets,
            w_fn=self.w_fn,
            w_fp=self.w_fp,
            smooth=self.smooth,
            reduction=self.reduction,
            classes=self.classes,
            exponent=self.exponent(),
            weight=x.weight,
        )


class FocalTversky(Tversky):
    """Focal Tversky loss ``mean_c (1 − TI_c)^{1/γ}`` (paper 003 eq. 4; spec §3).

    γ = 4/3 (exponent 0.75, focal-tversky-unet ``focal_tversky``); γ = 1 gives the Tversky loss.
    Note the UFL repository's ``gamma`` is the exponent itself (0.75 = 1/γ here).
    """

    summary = "focal Tversky loss, exponent 1/gamma"
    forwards_to = Tversky

    def __init__(self, *, gamma: float = 4.0 / 3.0, **region: object) -> None:
        super().__init__(**region)
        self.gamma = _in_range("gamma", gamma, 0.0, open_low=True)

    def exponent(self) -> tuple[float, float]:
        return (1.0 / self.gamma, 1.0 / self.gamma)


class AsymFocalTversky(RegionTerm):
    """Asymmetric focal Tversky loss ``L_AFT`` (paper 000 eq. 3–4; spec §6)::

        mTI_c = (TP_c + s)/(TP_c + δ·FN_c + (1 − δ)·FP_c + s)   (P clipped to [1e-7, 1 − 1e-7])
        L_AFT = mean_n mean_c t_c,   t_0 = 1 − mTI_0,   t_1 = (1 − mTI_1)^{1−γ}

    δ on FN (the code; author in UFL issue #12); class mean (``class_agg=sum`` for the papers'
    sum). Defaults δ = 0.7, γ = 0.75, s = 1e-7 are the UFL repository's.
    """

    paper = "000"
    summary = "asymmetric focal Tversky loss (rare class enhanced)"

    def __init__(
        self,
        *,
        delta: float = 0.7,
        gamma: float = 0.75,
        smooth: float = Fn.CLIP_EPS,
        reduction: Reduction = Reduction.IMAGE,
        classes: Classes = Classes.BOTH,
        class_agg: ClassAgg = ClassAgg.MEAN,
    ) -> None:
        super().__init__(smooth=smooth, reduction=reduction, classes=classes)
        self.delta = _in_range("delta", delta, 0.0, 1.0)
        self.gamma = _in_range("gamma", gamma, 0.0, 1.0)
        self.class_agg = _option(ClassAgg, "class_agg", class_agg)

    def compute(self, x: LossInputs) -> Tensor:
        return Fn.focal_tversky_loss(
            x.clipped_probs,
            x.targets,
            w_fn=self.delta,
            w_fp=1.0 - self.delta,
            smooth=self.smooth,
            reduction=self.reduction,
            classes=self.classes,
            exponent=(1.0, 1.0 - self.gamma),
            class_agg=self.class_agg,
            weight=x.weight,
        )


class UnifiedFocal(Term):
    """Unified focal loss ``L_UF = λ·L_AF + (1 − λ)·L_AFT`` (paper 000 eq. 1; spec §7).

    One δ and one γ drive both parts. Defaults λ = 0.5, δ = 0.6 (paper 000), γ = 0.5 (repository;
    paper 000 uses 0.1 DRIVE, 0.2 2018DSB, 0.3 CVC-ClinicDB). ``lambda_on=aft`` puts λ on the
    Tversky part as the code's ``weight`` does (identical at λ = 0.5).
    """

    paper = "000"
    summary = "unified focal loss lam·AF + (1 − lam)·AFT"

    def __init__(
        self,
        *,
        lam: float = 0.5,
        delta: float = 0.6,
        gamma: float = 0.5,
        lambda_on: LambdaOn = LambdaOn.AF,
        smooth: float = Fn.CLIP_EPS,
        reduction: Reduction = Reduction.IMAGE,
        classes: Classes = Classes.BOTH,
        class_agg: ClassAgg = ClassAgg.MEAN,
    ) -> None:
        super().__init__()
        self.lam = _in_range("lam", lam, 0.0, 1.0)
        self.lambda_on = _option(LambdaOn, "lambda_on", lambda_on)
        self._af = AsymFocal(delta=delta, gamma=gamma)
        self._aft = AsymFocalTversky(
            delta=delta,
            gamma=gamma,
            smooth=smooth,
            reduction=reduction,
            classes=classes,
            class_agg=class_agg,
        )

    def params(self) -> dict:
        return {
            "lam": self.lam,
            "lambda_on": self.lambda_on.value,
            **self._af.params(),
            **self._aft.params(),
        }

    def compute(self, x: LossInputs) -> Tensor:
        on_af = self.lam if self.lambda_on is LambdaOn.AF else 1.0 - self.lam
        return on_af * self._af.compute(x) + (1.0 - on_af) * self._aft.compute(x)


class Hybrid(Term):
    """FocusNet++ hybrid loss ``HL = k·C_b + (1 − k)·TL`` (paper 002; spec §10).

    C_b with Ω = 0.7 on the foreground; TL with 0.7 on FN, 0.3 on FP, s = 1, flattened batch,
    foreground only (Kaul's ``losses.py``). Wrap in ``adaptive_log`` (``all_hybrid``) for ALL-HL.
    """

    paper = "002"
    summary = "hybrid loss k·balanced CE + (1 − k)·Tversky"
    forwards_to = Tversky

    def __init__(self, *, k: float = 0.5, omega: float = 0.7, **tversky: object) -> None:
        super().__init__()
        self.k = _in_range("k", k, 0.0, 1.0)
        self._ce = BalancedCE(omega=omega)
        self._tl = Tversky(**tversky)

    def params(self) -> dict:
        return {"k": self.k, **self._ce.params(), **self._tl.params()}

    def compute(self, x: LossInputs) -> Tensor:
        return self.k * self._ce.compute(x) + (1.0 - self.k) * self._tl.compute(x)


class Loss(nn.Module):
    """A sum of terms sharing one (F)DPT weighting; what :func:`build_loss` returns.

    ``forward(logits, target, distance_map=None)``: logits ``(N, 1, H, W)`` (any float dtype),
    target ``(N, 1, H, W)`` in {0, 1}. With ``fdpt = ε`` the weight ``W = (1 + D)^ε`` enters
    every term (spec §8.2); D is ``distance_map`` when given (the engine may precompute it per
    augmented batch) or :func:`boundary.distance_map` of the target, on its device. A list of
    logits (deep supervision, full resolution last) is scored output by output against the
    strided target and summed with weights 1, as Keras does for one loss on several outputs.
    """

    def __init__(
        self,
        terms: list[Term],
        *,
        fdpt: float | None = None,
        fdpt_mode: FdptMode = FdptMode.PIXEL_WEIGHT,
    ) -> None:
        super().__init__()
        if not terms:
            raise ValueError("a Loss needs at least one term")
        self.terms = nn.ModuleList(terms)
        self.fdpt = None if fdpt is None else _in_range("fdpt", fdpt, 0.0)
        self.fdpt_mode = _option(FdptMode, "fdpt_mode", fdpt_mode)

    @property
    def needs_distance_map(self) -> bool:
        return self.fdpt is not None

    def params(self) -> dict:
        return {
            "fdpt": self.fdpt,
            "fdpt_mode": self.fdpt_mode.value,
            "terms": {type(t).__name__: t.params() for t in self.terms},
        }

    def extra_repr(self) -> str:
        return f"fdpt={self.fdpt}, fdpt_mode={self.fdpt_mode.value}"

    def prepare(self, logits: Tensor, target: Tensor, distance_map: Tensor | None) -> LossInputs:
        logits = logits.float()
        target = _as_target(target, logits)
        targets = Fn.class_targets(target)
        if self.fdpt is None:
            return LossInputs(logits, targets)
        distance = (
            boundary.distance_map(target)
            if distance_map is None
            else distance_map.float().reshape(target.shape)
        )
        weight = boundary.fdpt_weight(distance, self.fdpt)
        if self.fdpt_mode is FdptMode.REPLACE_GT:
            return LossInputs(logits, targets * weight)
        return LossInputs(logits, targets, weight)

    def forward(
        self, logits: Tensor | list[Tensor], target: Tensor, distance_map: Tensor | None = None
    ) -> Tensor:
        if isinstance(logits, (list, tuple)):
            return deep_supervised(self, self, logits, target, distance_map)
        with torch.autocast(logits.device.type, enabled=False):
            x = self.prepare(logits, target, distance_map)
            total = self.terms[0].compute(x)
            for term in self.terms[1:]:
                total = total + term.compute(x)
            return total


def _as_target(target: Tensor, logits: Tensor) -> Tensor:
    """The target as float32 ``(N, 1, H, W)``; ``(N, H, W)`` masks are accepted too."""
    if target.dim() == logits.dim() - 1:
        target = target.unsqueeze(1)
    if target.shape != logits.shape:
        raise ValueError(
            f"target shape {tuple(target.shape)} does not match logits {tuple(logits.shape)}"
        )
    return target.float()


def deep_supervised(
    side: nn.Module,
    final: nn.Module,
    outputs: list[Tensor] | tuple[Tensor, ...],
    target: Tensor,
    distance_map: Tensor | None,
) -> Tensor:
    """``Σ_k side(out_k, g↓s_k) + final(out_last, g)`` (spec §11).

    ``g↓s = g[..., ::s, ::s]``: strided nearest subsampling, top-left phase, as
    focal-tversky-unet ``isic_train.py``; ``s`` is the ratio of the full and the side width.
    A precomputed ``distance_map`` belongs to the full-resolution target and only reaches ``final``.
    """
    *sides, last = outputs
    total = final(last, target, distance_map)
    width = target.shape[-1]
    for out in sides:
        stride = max(1, width // out.shape[-1])
        small = target[..., ::stride, ::stride]
        if small.shape[-2:] != out.shape[-2:]:
            raise ValueError(
                f"side output {tuple(out.shape)} is not the target {tuple(target.shape)} subsampled by an integer stride"
            )
        total = total + side(out, small)
    return total


class AdaptiveLog(nn.Module):
    """``ALL(loss)``, the adaptive logarithmic wrapper of FocusNet++ on the scalar batch loss (spec §10)."""

    def __init__(
        self, inner: Loss, *, threshold: float = 0.1, scale: float = 10.0, epsilon: float = 0.5
    ) -> None:
        super().__init__()
        self.inner = inner
        self.threshold = _in_range("threshold", threshold, 0.0, open_low=True)
        self.scale = _in_range("scale", scale, 0.0, open_low=True)
        self.epsilon = _in_range("epsilon", epsilon, 0.0, open_low=True)

    @property
    def needs_distance_map(self) -> bool:
        return self.inner.needs_distance_map

    def params(self) -> dict:
        return {
            "threshold": self.threshold,
            "scale": self.scale,
            "epsilon": self.epsilon,
            "inner": self.inner.params(),
        }

    def forward(
        self, logits: Tensor | list[Tensor], target: Tensor, distance_map: Tensor | None = None
    ) -> Tensor:
        return Fn.adaptive_log(
            self.inner(logits, target, distance_map),
            threshold=self.threshold,
            scale=self.scale,
            epsilon=self.epsilon,
        )


class DeepSupervision(nn.Module):
    """Paper 003's deep supervision: ``side`` (FTL) on each side output, ``final`` (TL) on the last.

    Called with a single tensor (e.g. validation on the final output) it is ``final`` alone.
    """

    def __init__(self, side: Loss, final: Loss) -> None:
        super().__init__()
        self.side = side
        self.final = final

    @property
    def needs_distance_map(self) -> bool:
        return self.final.needs_distance_map

    def params(self) -> dict:
        return {"side": self.side.params(), "final": self.final.params()}

    def forward(
        self, logits: Tensor | list[Tensor], target: Tensor, distance_map: Tensor | None = None
    ) -> Tensor:
        if isinstance(logits, (list, tuple)):
            return deep_supervised(self.side, self.final, logits, target, distance_map)
        return self.final(logits, target, distance_map)
