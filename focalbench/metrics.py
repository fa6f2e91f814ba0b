"""Evaluation metrics: per-image confusion counts on the device → scores → a summary (docs/metrics.md).

The counts are integers per image, so every score can be recomputed exactly from a run's
``per_image.csv`` and either aggregation (per-image mean, or pooled over the set) derived from
them. A score whose denominator is zero is undefined (NaN) for that image; how undefined scores
enter the mean is the *empty policy*, stated in every summary.
"""

from __future__ import annotations

from enum import Enum

import torch
from torch import Tensor

from focalbench.errors import FocalbenchError
from focalbench.losses.boundary import edt

#: Column order of :func:`confusion_counts`.
COUNTS = ("tp", "fp", "fn", "tn")
#: Keys of :func:`scores`, in report order.
SCORES = ("dsc", "precision", "recall", "jaccard", "accuracy", "sensitivity", "specificity")
#: Keys of :func:`smoothed_scores`: paper 003's evaluation code, +1 in numerator and denominator.
SMOOTH1_SCORES = ("smooth1_dsc", "smooth1_precision", "smooth1_recall", "smooth1_specificity")


class Aggregation(str, Enum):
    """How per-image counts become one number."""

    IMAGE = "image"  # mean of per-image scores (what paper 000 reports)
    POOLED = "pooled"  # scores of the counts summed over all images


class EmptyPolicy(str, Enum):
    """What an image whose target and prediction are both empty contributes (0/0 scores)."""

    EXCLUDE = "exclude"  # left out of the mean and counted (nnU-Net's evaluator)
    ONE = "one"  # a perfect 1 for every 0/0 score of such an image (MONAI ignore_empty=False)


def _binary(x: Tensor, name: str) -> Tensor:
    if x.dim() == 3:
        x = x.unsqueeze(1)
    if x.dim() != 4 or x.shape[1] != 1:
        raise ValueError(f"{name} must be (N, 1, H, W) or (N, H, W), got {tuple(x.shape)}")
    return x.bool() if x.dtype == torch.bool else x > 0.5


def confusion_counts(pred: Tensor, target: Tensor, valid: Tensor | None = None) -> Tensor:
    """Per-image ``tp, fp, fn, tn`` as a LongTensor ``(N, 4)`` on the inputs' device.

    ``pred`` is bool (or a 0/1 tensor; thresholded at 0.5), ``target`` in {0, 1}, both
    ``(N, 1, H, W)`` or ``(N, H, W)``. ``valid`` (e.g. DRIVE's field of view) restricts the
    counts to its pixels.
    """
    pred, target = _binary(pred, "pred"), _binary(target, "target")
    if pred.shape != target.shape:
        raise ValueError(f"pred {tuple(pred.shape)} and target {tuple(target.shape)} differ")
    mask = torch.ones_like(pred) if valid is None else _binary(valid, "valid").expand_as(pred)
    dims = (1, 2, 3)
    tp = (pred & target & mask).sum(dims)
    fp = (pred & ~target & mask).sum(dims)
    fn = (~pred & target & mask).sum(dims)
    tn = (~pred & ~target & mask).sum(dims)
    return torch.stack([tp, fp, fn, tn], dim=1).long()


def _ratio(num: Tensor, den: Tensor) -> Tensor:
    """``num / den`` in float64, NaN where ``den == 0`` (undefined, not zero)."""
    num, den = num.double(), den.double()
    return torch.where(den > 0, num / den.clamp_min(1), torch.full_like(num, float("nan")))


def scores(counts: Tensor) -> dict[str, Tensor]:
    """Scores per row of ``counts`` ``(N, 4)`` (float64 ``(N,)`` each, NaN where 0/0)::

    dsc = 2tp / (2tp + fp + fn)        jaccard = tp / (tp + fp + fn)
    precision = tp / (tp + fp)         recall = sensitivity = tp / (tp + fn)
    accuracy = (tp + tn) / total       specificity = tn / (tn + fp)
    """
    tp, fp, fn, tn = counts.long().unbind(-1)
    recall = _ratio(tp, tp + fn)
    return {
        "dsc": _ratio(2 * tp, 2 * tp + fp + fn),
        "precision": _ratio(tp, tp + fp),
        "recall": recall,
        "jaccard": _ratio(tp, tp + fp + fn),
        "accuracy": _ratio(tp + tn, tp + fp + fn + tn),
        "sensitivity": recall.clone(),
        "specificity": _ratio(tn, tn + fp),
    }


def smoothed_scores(counts: Tensor, smooth: float = 1.0) -> dict[str, Tensor]:
    """The scores of paper 003's evaluation code, per row of ``counts`` (float64 ``(N,)``)::

        smooth1_dsc = (2tp + s) / (2tp + fp + fn + s)       (utils.py check_preds)
        smooth1_precision = (tp + s) / (tp + fp + s)        (utils.py auc: prec)
        smooth1_recall = (tp + s) / (tp + fn + s)           (utils.py auc: tpr)
        smooth1_specificity = (tn + s) / (tn + fp + s)      (utils.py auc: tnr)

    with s = 1 (nabsabraham/focal-tversky-unet ``utils.py``). Always defined: an empty
    prediction of an empty target scores 1, an empty prediction of a lesion has precision
    1/(fn·0 + 1) = 1 — which is why these sit beside, never in place of, :func:`scores`.
    ``check_preds`` also rounds to 5 decimals; that rounding is not reproduced.
    """
    tp, fp, fn, tn = counts.double().unbind(-1)
    return {
        "smooth1_dsc": (2 * tp + smooth) / (2 * tp + fp + fn + smooth),
        "smooth1_precision": (tp + smooth) / (tp + fp + smooth),
        "smooth1_recall": (tp + smooth) / (tp + fn + smooth),
        "smooth1_specificity": (tn + smooth) / (tn + fp + smooth),
    }


def summarize(
    counts: Tensor,
    aggregation: Aggregation | str = Aggregation.IMAGE,
    empty_policy: EmptyPolicy | str = EmptyPolicy.EXCLUDE,
    extra: dict[str, Tensor] | None = None,
) -> dict:
    """One number per metric, with the policy that produced it.

    Returns ``{"metrics": {name: float}, "aggregation", "empty_policy", "n_images",
    "n_both_empty", "n_undefined": {name: int}}``. ``image`` averages the per-image scores that
    are defined; ``pooled`` scores the summed counts. Images whose target and prediction are both
    empty (tp = fp = fn = 0) have 0/0 DSC, Jaccard, precision and recall: ``exclude`` leaves them
    out of those means (and counts them in ``n_both_empty``), ``one`` scores them 1 (``pooled``: the
    summed counts, both-empty only when every image is). Any other
    undefined score (e.g. recall of an image with an empty target but false positives) is left
    out of the mean and counted in ``n_undefined``. ``extra`` per-image metrics (e.g. ``hd95``)
    are averaged the same way (NaN excluded, counted).
    """
    aggregation = _choice(Aggregation, aggregation, "aggregation")
    empty_policy = _choice(EmptyPolicy, empty_policy, "empty policy")
    counts = counts.long()
    tp, fp, fn, _ = counts.unbind(-1)
    both_empty = (tp + fp + fn) == 0
    # pooled scores one big image, which is both-empty only when every image is
    rows = counts.sum(0, keepdim=True) if aggregation is Aggregation.POOLED else counts
    per_metric = scores(rows)
    if empty_policy is EmptyPolicy.ONE:
        rows_empty = rows[:, :3].sum(-1) == 0
        per_metric = {
            k: torch.where(rows_empty & v.isnan(), torch.ones_like(v), v)
            for k, v in per_metric.items()
        }
    per_metric.update({k: v.double() for k, v in (extra or {}).items()})
    metrics, undefined = {}, {}
    for name, values in per_metric.items():
        defined = ~values.isnan()
        undefined[name] = int((~defined).sum())
        metrics[name] = float(values[defined].mean()) if defined.any() else float("nan")
    return {
        "metrics": metrics,
        "aggregation": aggregation.value,
        "empty_policy": empty_policy.value,
        "n_images": int(counts.shape[0]),
        "n_both_empty": int(both_empty.sum()),
        "n_undefined": undefined,
    }


def _choice(enum: type[Enum], value: object, what: str):
    try:
        return enum(value)
    except ValueError:
        raise FocalbenchError(
            f"unknown {what} {value!r}; choose from: {', '.join(m.value for m in enum)}"
        ) from None


def _surface(mask: Tensor) -> Tensor:
    """Pixels of ``mask`` with a 4-neighbour outside it (mask minus its erosion by a cross, as MedPy)."""
    padded = torch.nn.functional.pad(mask.float(), (1, 1, 1, 1), value=0.0)
    neighbours = torch.stack(
        [
            padded[..., :-2, 1:-1],
            padded[..., 2:, 1:-1],
            padded[..., 1:-1, :-2],
            padded[..., 1:-1, 2:],
        ]
    ).amin(0)
    return mask & (neighbours < 0.5)


def hd95(pred: Tensor, target: Tensor, percentile: float = 95.0) -> Tensor:
    """95th-percentile symmetric Hausdorff distance in pixels, per image (float64 ``(N,)``).

    The distances from each surface pixel of the prediction to the nearest surface pixel of the
    target and back are pooled and their 95th percentile taken (linear interpolation), as MedPy
    ``hd95``. Empty-case policy: both masks empty → 0 (nothing to disagree about); exactly one
    empty → NaN (undefined; :func:`summarize` leaves it out of the mean and counts it).
    """
    pred, target = _binary(pred, "pred")[:, 0], _binary(target, "target")[:, 0]
    ps, ts = _surface(pred), _surface(target)
    to_target = edt(~ts)  # distance of every pixel to the nearest target surface pixel
    to_pred = edt(~ps)
    nan = torch.full_like(to_target, float("nan"))
    pooled = torch.cat(
        [torch.where(ps, to_target, nan).flatten(1), torch.where(ts, to_pred, nan).flatten(1)],
        dim=1,
    )
    # torch.quantile takes at most 2**24 elements per call: whole images in chunks under that.
    rows = max(1, 2**24 // pooled.shape[1])
    values = torch.cat(
        [
            torch.nanquantile(chunk.double(), percentile / 100.0, dim=1)
            for chunk in pooled.split(rows)
        ]
    )
    p_empty, t_empty = ~pred.flatten(1).any(1), ~target.flatten(1).any(1)
    values = torch.where(p_empty & t_empty, torch.zeros_like(values), values)
    return torch.where(p_empty ^ t_empty, torch.full_like(values, float("nan")), values)
