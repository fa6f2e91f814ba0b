"""Is a difference more than noise? Paired Wilcoxon tests, Holm correction, bootstrap intervals.

All functions are pure (arrays in, numbers out) so that each can be checked against a hand
computation or SciPy on the same numbers.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

#: Family-wise error rate used to mark a row (†).
ALPHA = 0.05
#: Bootstrap resamples and seed: the interval is reproducible from the same per-image scores.
BOOTSTRAP_RESAMPLES = 2000
BOOTSTRAP_SEED = 0


@dataclass(frozen=True)
class PairedTest:
    n: int  # images present in both (the pairs)
    statistic: float  # Wilcoxon's W (the smaller signed-rank sum, SciPy's two-sided statistic)
    p: float


def paired_wilcoxon(ours: pd.Series, baseline: pd.Series) -> PairedTest:
    """Two-sided Wilcoxon signed-rank test on the images both series score (paired by index).

    H0: the per-image differences ``ours − baseline`` are symmetric about 0 (Wilcoxon 1945).
    SciPy's defaults: zero differences dropped (``zero_method="wilcox"``), exact null distribution
    for small n without ties, normal approximation otherwise. With every difference zero there is
    no evidence of a difference: p = 1.
    """
    common = ours.index.intersection(baseline.index)
    x = ours.loc[common].to_numpy(dtype=float)
    y = baseline.loc[common].to_numpy(dtype=float)
    if len(common) == 0:
        return PairedTest(0, float("nan"), float("nan"))
    if np.all(x == y):
        return PairedTest(len(common), 0.0, 1.0)
    result = stats.wilcoxon(x, y)
    return PairedTest(len(common), float(result.statistic), float(result.pvalue))


def holm(pvalues: list[float]) -> list[float]:
    """Holm–Bonferroni adjusted p-values (Holm 1979), in the input order; NaN stays NaN.

    Sorted ascending p_(1) ≤ … ≤ p_(m): p̃_(i) = max_{j ≤ i} min(1, (m − j + 1) · p_(j)).
    Rejecting p̃ < α controls the family-wise error rate at α.
    """
    p = np.asarray(pvalues, dtype=float)
    out = np.full_like(p, np.nan)
    valid = np.flatnonzero(np.isfinite(p))
    m = len(valid)
    order = valid[np.argsort(p[valid], kind="stable")]
    running = 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[index]))
        out[index] = running
    return out.tolist()


def bootstrap_ci(
    values: np.ndarray,
    level: float = 0.95,
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = BOOTSTRAP_SEED,
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean over images (Efron & Tibshirani 1993, §13.3).

    Images are resampled with replacement ``resamples`` times from a generator seeded with
    ``seed``; the interval is the (1 − level)/2 and (1 + level)/2 quantiles of the resampled means.
    """
    values = np.asarray(values, dtype=float)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, values.size, size=(resamples, values.size))].mean(axis=1)
    tail = (1 - level) / 2
    low, high = np.quantile(means, [tail, 1 - tail])
    return float(low), float(high)
