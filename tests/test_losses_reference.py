"""Every loss against a float64 NumPy reference written from the spec with explicit loops.

The reference reads spec losses.md literally — one pixel set S at a time (each image, or the
whole batch), one class at a time — so it shares no code with the vectorised implementation.
The batch mixes an ordinary image, an empty one and a 4-pixel lesion, where the reductions and
the class choices differ most.
"""

import numpy as np
import pytest
import torch
from scipy.ndimage import distance_transform_edt

from focalbench.losses import build_loss

EPS = 1e-7


def ref_distance_map(g):
    out = np.zeros(g.shape)
    for region in (g > 0, g == 0):
        if region.any() and not region.all():
            d = distance_transform_edt(region)
            m = d[region].max()
            out[region] += 1.0 if m == 1 else (m - d[region]) / (m - 1)
    return out


class Ref:
    """One call's two-class view in float64: P[n, c], Y[n, c], w[n] as (H, W) arrays."""

    def __init__(self, logits, target, fdpt=None, mode="pixel_weight"):
        x = logits[:, 0].astype(np.float64)
        g = target[:, 0].astype(np.float64)
        p = 1 / (1 + np.exp(-x))
        self.P = np.stack([1 - p, p], 1)
        self.Y = np.stack([1 - g, g], 1)
        self.w = np.ones_like(g)
        if fdpt is not None:
            W = np.stack([(1 + ref_distance_map(gi)) ** fdpt for gi in g])
            if mode == "pixel_weight":
                self.w = W
            else:
                self.Y = self.Y * W[:, None]
        self.N = len(g)

    def sets(self, reduction):
        return [[n] for n in range(self.N)] if reduction == "image" else [list(range(self.N))]

    def counts(self, P, idx, c):
        Y, w = self.Y[idx, c], self.w[idx]
        tp = np.sum(w * Y * P[idx, c])
        fn = np.sum(w * Y * (1 - P[idx, c]))
        fp = np.sum(w * (1 - Y) * P[idx, c])
        return tp, fn, fp

    def pixel_mean(self, fn):
        return np.mean(self.w * sum(fn(c) for c in (0, 1)))


def r_dice(r, smooth=1e-5, reduction="image", classes="both"):
    cs = (0, 1) if classes == "both" else (1,)
    vals = []
    for idx in r.sets(reduction):
        for c in cs:
            tp = np.sum(r.w[idx] * r.Y[idx, c] * r.P[idx, c])
            vals.append(
                (2 * tp + smooth)
                / (np.sum(r.w[idx] * r.Y[idx, c]) + np.sum(r.w[idx] * r.P[idx, c]) + smooth)
            )
    return 1 - np.mean(vals)


def r_focal_ce(r, a=(1, 1), gamma=(0, 0)):
    Pc = np.clip(r.P, EPS, 1 - EPS)
    return r.pixel_mean(lambda c: a[c] * (1 - Pc[:, c]) ** gamma[c] * -r.Y[:, c] * np.log(Pc[:, c]))


def r_tversky_family(r, w_fn, w_fp, smooth, reduction, classes, exps, clip=False, agg="mean"):
    P = np.clip(r.P, EPS, 1 - EPS) if clip else r.P
    cs = (0, 1) if classes == "both" else (1,)
    per_set = []
    for idx in r.sets(reduction):
        terms = []
        for c in cs:
            tp, fn, fp = r.counts(P, idx, c)
            ti = (tp + smooth) / (tp + w_fn * fn + w_fp * fp + smooth)
            base = 1 - ti
            terms.append(base if exps[c] == 1 else max(base, 0.0) ** exps[c])
        per_set.append(np.sum(terms) if agg == "sum" else np.mean(terms))
    return np.mean(per_set)


def r_aft(r, delta, gamma, reduction="image", classes="both", agg="mean"):
    return r_tversky_family(
        r, delta, 1 - delta, EPS, reduction, classes, (1, 1 - gamma), clip=True, agg=agg
    )


def r_af(r, delta, gamma):
    return r_focal_ce(r, (1 - delta, delta), (gamma, 0))


def r_tl(r, w_fn=0.7, w_fp=0.3, smooth=1.0, reduction="batch", classes="fg", gamma=1.0):
    return r_tversky_family(r, w_fn, w_fp, smooth, reduction, classes, (1 / gamma, 1 / gamma))


CASES = [
    ("dice", {}, lambda r: r_dice(r)),
    (
        "dice",
        {"smooth": 1.0, "reduction": "batch", "classes": "fg"},
        lambda r: r_dice(r, 1.0, "batch", "fg"),
    ),
    ("ce", {}, lambda r: r_focal_ce(r)),
    ("dice_ce", {}, lambda r: r_dice(r) + r_focal_ce(r)),
    ("tversky", {}, lambda r: r_tl(r)),
    (
        "tversky",
        {"reduction": "image", "classes": "both"},
        lambda r: r_tl(r, reduction="image", classes="both"),
    ),
    ("focal_tversky", {}, lambda r: r_tl(r, gamma=4 / 3)),
    ("focal", {"gamma": 2.0}, lambda r: r_focal_ce(r, (1, 1), (2, 2))),
    ("asym_focal", {"delta": 0.6, "gamma": 0.2}, lambda r: r_af(r, 0.6, 0.2)),
    ("asym_focal_tversky", {"delta": 0.6, "gamma": 0.2}, lambda r: r_aft(r, 0.6, 0.2)),
    (
        "asym_focal_tversky",
        {"delta": 0.6, "gamma": 0.2, "reduction": "batch", "class_agg": "sum"},
        lambda r: r_aft(r, 0.6, 0.2, "batch", agg="sum"),
    ),
    ("ufl", {"gamma": 0.1}, lambda r: 0.5 * r_af(r, 0.6, 0.1) + 0.5 * r_aft(r, 0.6, 0.1)),
    (
        "ufl",
        {"gamma": 0.3, "lam": 0.3, "classes": "fg"},
        lambda r: 0.3 * r_af(r, 0.6, 0.3) + 0.7 * r_aft(r, 0.6, 0.3, classes="fg"),
    ),
    ("balanced_ce", {}, lambda r: r_focal_ce(r, (0.3, 0.7))),
    ("hybrid", {}, lambda r: 0.5 * r_focal_ce(r, (0.3, 0.7)) + 0.5 * r_tl(r)),
]


def _batch():
    gen = np.random.default_rng(11)
    target = np.zeros((3, 1, 16, 16), np.float32)
    target[0, 0, 3:11, 5:13] = 1  # ordinary
    target[0, 0, 12, :] = 1  # plus a 1-px vessel
    target[2, 0, 7:9, 7:9] = 1  # 4-pixel lesion; image 1 stays empty
    logits = (gen.normal(size=target.shape) * 2 + (target - 0.5) * 3).astype(np.float32)
    return logits, target


@pytest.mark.parametrize(
    "fdpt,mode",
    [(None, "pixel_weight"), (0.1, "pixel_weight"), (1.0, "pixel_weight"), (0.1, "replace_gt")],
)
@pytest.mark.parametrize("name,params,ref", CASES, ids=[f"{c[0]}{c[1] or ''}" for c in CASES])
def test_loss_equals_the_float64_reference(name, params, ref, fdpt, mode):
    logits, target = _batch()
    extra = {} if fdpt is None else {"fdpt": fdpt, "fdpt_mode": mode}
    loss = build_loss(name, **params, **extra)
    value = loss(torch.from_numpy(logits), torch.from_numpy(target)).item()
    expected = ref(Ref(logits, target, fdpt, mode))
    assert value == pytest.approx(expected, rel=2e-5, abs=1e-6)


def test_per_image_and_batch_reduction_differ_on_a_mixed_batch():
    """Tversky on [ordinary, empty, 4-px lesion]: per image, the empty image's TI = s/(FP + s)."""
    logits, target = _batch()
    r = Ref(logits, target)
    per_image = build_loss("tversky", reduction="image")(
        torch.from_numpy(logits), torch.from_numpy(target)
    ).item()
    per_batch = build_loss("tversky", reduction="batch")(
        torch.from_numpy(logits), torch.from_numpy(target)
    ).item()
    assert per_image == pytest.approx(r_tl(r, reduction="image"), rel=1e-5)
    assert per_batch == pytest.approx(r_tl(r, reduction="batch"), rel=1e-5)
    assert per_image - per_batch > 0.1  # the empty image alone costs ≈ 1 − 1/(FP + 1) per image
    # the empty image's own term, worked out from its false-positive mass
    p = 1 / (1 + np.exp(-logits[1, 0].astype(np.float64)))
    one = build_loss("tversky", reduction="image")(
        torch.from_numpy(logits[1:2]), torch.from_numpy(target[1:2])
    ).item()
    assert one == pytest.approx(1 - 1 / (0.3 * p.sum() + 1), rel=1e-5)
