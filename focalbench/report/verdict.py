"""Does a published difference reproduce? The verdict rule of ``report --claims`` as pure functions.

A claim compares two rows of a paper's table, A and B, on one metric. Our evidence is, per
repetition r = 1..R (a seed or a fold trained for both rows), the paired per-image differences
d_ri = s_A(i) − s_B(i) over the test images i both runs scored. From them:

* the observed difference  D = (1/R) Σ_r mean_i d_ri  (each repetition weighs the same);
* a 95 % percentile interval of D from a two-stage bootstrap: draw R repetitions with replacement,
  then within each drawn repetition its images with replacement (one stage when R = 1);
* the **direction** verdict against the published side s = sign(published difference), or the
  side the sentence states when the table's difference is 0 (a tie):
  holds when the interval lies wholly on side s of 0, reversed when wholly on the other side,
  unclear when it contains 0;
* the **size** verdict against the published difference P: consistent when the interval contains
  P, smaller when it lies wholly on the 0 side of P (s·high < s·P), larger otherwise;
* when unclear, the repetitions that would decide at the observed spread: the interval's
  half-width h shrinks as 1/√R, so R' = ⌈R · (h / |D|)²⌉ makes h' = |D|.

Every function takes plain numbers or arrays and returns numbers, so each can be checked by hand.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import Enum

import numpy as np
from scipy import stats

#: Level of the interval; resamples and seed make it reproducible from the same scores.
LEVEL = 0.95
RESAMPLES = 2000
SEED = 0


class Direction(str, Enum):
    holds = "holds"
    reversed = "reversed"
    unclear = "unclear"


class Size(str, Enum):
    consistent = "consistent"
    smaller = "smaller"
    larger = "larger"


@dataclass(frozen=True)
class RepetitionTest:
    """Two-sided one-sample t-test of the per-repetition mean differences against 0."""

    n: int  # repetitions
    statistic: float  # Student's t (NaN below 2 repetitions or with no spread)
    p: float


def observed_difference(differences: list[np.ndarray]) -> float:
    """D = mean over repetitions of the mean per-image difference; NaN without any pair."""
    means = [float(np.mean(d)) for d in differences if len(d)]
    return float(np.mean(means)) if means else math.nan


def bootstrap_interval(
    differences: list[np.ndarray],
    level: float = LEVEL,
    resamples: int = RESAMPLES,
    seed: int = SEED,
) -> tuple[float, float]:
    """Percentile interval of D: repetitions resampled with replacement (when R > 1), then the
    images of each drawn repetition with replacement (Davison & Hinkley 1997, §3.8)."""
    reps = [np.asarray(d, dtype=float) for d in differences if len(d)]
    if not reps:
        return math.nan, math.nan
    rng = np.random.default_rng(seed)
    image_means = [d[rng.integers(0, d.size, size=(resamples, d.size))].mean(axis=1) for d in reps]
    table = np.stack(image_means, axis=1)  # (resamples, R): resampled mean of each repetition
    if len(reps) > 1:
        drawn = rng.integers(0, len(reps), size=(resamples, len(reps)))
        table = np.take_along_axis(table, drawn, axis=1)
    statistic = table.mean(axis=1)
    tail = (1 - level) / 2
    low, high = np.quantile(statistic, [tail, 1 - tail])
    return float(low), float(high)


def repetition_test(differences: list[np.ndarray]) -> RepetitionTest:
    """t-test across repetitions of their mean differences (``scipy.stats.ttest_1samp``).

    Below 2 repetitions there is no test (NaN). Repetitions without spread have no t either:
    p = 1 when they are all 0 (no difference), NaN otherwise (t would be infinite)."""
    means = np.array([np.mean(d) for d in differences if len(d)], dtype=float)
    if means.size < 2:
        return RepetitionTest(int(means.size), math.nan, math.nan)
    if np.all(means == means[0]):
        return RepetitionTest(int(means.size), math.nan, 1.0 if means[0] == 0 else math.nan)
    result = stats.ttest_1samp(means, 0.0)
    return RepetitionTest(int(means.size), float(result.statistic), float(result.pvalue))


def published_side(published: float, stated: str) -> int:
    """+1 when the paper has A above B, −1 below; a tie (0) takes the sentence's side."""
    if published > 0:
        return 1
    if published < 0:
        return -1
    return 1 if stated == "higher" else -1


def direction(low: float, high: float, side: int) -> Direction:
    if side * low > 0 and side * high > 0:
        return Direction.holds
    if side * low < 0 and side * high < 0:
        return Direction.reversed
    return Direction.unclear


def size(low: float, high: float, published: float, side: int) -> Size:
    lo, hi = sorted((side * low, side * high))
    target = side * published
    if lo <= target <= hi:
        return Size.consistent
    return Size.smaller if hi < target else Size.larger


def repetitions_to_decide(low: float, high: float, observed: float, repetitions: int) -> int | None:
    """R' = ⌈R · (h / |D|)²⌉, h the half-width: the repetitions at which an interval of the
    observed spread, centred on D, would exclude 0. ``None`` when D = 0 (no number decides)."""
    if not all(map(math.isfinite, (low, high, observed))) or observed == 0:
        return None
    half = (high - low) / 2
    return max(repetitions + 1, math.ceil(repetitions * (half / abs(observed)) ** 2))


def paper_distance(ours: float, paper_mean: float, paper_std: float | None) -> float:
    """(ours − paper mean) / paper std: how many of the paper's standard deviations we are off;
    NaN where the paper prints no std."""
    if paper_std is None or not paper_std or not math.isfinite(ours):
        return math.nan
    return (ours - paper_mean) / paper_std
