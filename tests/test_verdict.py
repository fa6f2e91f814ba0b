"""The verdict rule of `report --claims` on synthetic per-image differences with known truth."""

from __future__ import annotations

import math

import numpy as np
import pytest

from focalbench.report.stats import bootstrap_ci
from focalbench.report.verdict import (
    Direction,
    Size,
    bootstrap_interval,
    direction,
    observed_difference,
    paper_distance,
    published_side,
    repetition_test,
    repetitions_to_decide,
    size,
)


def _scores(
    shift: float, images: int = 40, repetitions: int = 3, seed: int = 1
) -> list[np.ndarray]:
    """Per repetition, paired differences a − b = shift + noise (sd 0.02) over the same images."""
    rng = np.random.default_rng(seed)
    b = rng.uniform(0.5, 0.9, size=images)
    return [(b + shift + rng.normal(0, 0.02, images)) - b for _ in range(repetitions)]


def _verdict(
    differences: list[np.ndarray], published: float, stated: str = "higher"
) -> tuple[Direction, Size]:
    low, high = bootstrap_interval(differences)
    side = published_side(published, stated)
    return direction(low, high, side), size(low, high, published, side)


def test_a_true_difference_holds_and_its_size_is_judged_against_the_published_one():
    diffs = _scores(0.10)
    assert observed_difference(diffs) == pytest.approx(0.10, abs=0.01)
    assert _verdict(diffs, 0.10) == (Direction.holds, Size.consistent)
    assert _verdict(diffs, 0.257) == (Direction.holds, Size.smaller)  # paper 003's BUS headline gap
    assert _verdict(diffs, 0.02) == (Direction.holds, Size.larger)


def test_no_difference_is_unclear_and_a_reversed_one_is_reversed():
    # exactly symmetric differences: mean 0, the interval straddles 0
    zero = [np.tile([0.05, -0.05], 20), np.tile([-0.03, 0.03], 20)]
    assert observed_difference(zero) == 0.0
    assert _verdict(zero, 0.1) == (Direction.unclear, Size.smaller)
    assert _verdict(_scores(-0.08), 0.1) == (Direction.reversed, Size.smaller)
    # a claim that A is lower (published A − B = −0.08) holds when ours is lower by as much
    assert _verdict(_scores(-0.08), -0.08) == (Direction.holds, Size.consistent)
    assert _verdict(_scores(-0.08), -0.2) == (Direction.holds, Size.smaller)


def test_a_published_tie_takes_the_side_the_sentence_states():
    assert published_side(0.0, "higher") == 1 and published_side(0.0, "lower") == -1
    assert published_side(-0.01, "higher") == -1  # the table's sign wins over the sentence
    # CVC-ClinicDB: UFL + FDPT ties DSC + CE + FDPT at 0.8993; ours +0.01 holds, larger than 0
    assert _verdict(_scores(0.01), 0.0, "higher") == (Direction.holds, Size.larger)


def test_direction_and_size_on_hand_intervals():
    assert direction(0.01, 0.05, 1) is Direction.holds
    assert direction(-0.05, -0.01, 1) is Direction.reversed
    assert direction(-0.01, 0.05, 1) is Direction.unclear
    assert direction(-0.05, -0.01, -1) is Direction.holds
    assert size(0.01, 0.05, 0.05, 1) is Size.consistent  # the bound counts as inside
    assert size(0.01, 0.05, 0.257, 1) is Size.smaller
    assert (
        size(-0.05, -0.01, -0.257, -1) is Size.smaller
    )  # a lower-is-claimed gap of the wrong size
    assert size(-0.30, -0.28, -0.257, -1) is Size.larger


def test_one_repetition_is_the_image_bootstrap_of_report_ci():
    d = _scores(0.03, repetitions=1)
    assert bootstrap_interval(d) == bootstrap_ci(d[0])


def test_repetitions_interval_widens_with_repetition_spread():
    # two repetitions that disagree (+0.1, −0.05), tiny image noise: repetitions dominate
    reps = [
        np.full(30, 0.10) + np.linspace(-1e-3, 1e-3, 30),
        np.full(30, -0.05) + np.linspace(-1e-3, 1e-3, 30),
    ]
    low, high = bootstrap_interval(reps)
    assert low == pytest.approx(-0.05, abs=2e-3) and high == pytest.approx(0.10, abs=2e-3)


def test_repetitions_to_decide_by_hand():
    # half-width 0.02, observed 0.01, R = 2: R' = ceil(2 · (0.02 / 0.01)²) = 8
    assert repetitions_to_decide(-0.01, 0.03, 0.01, 2) == 8
    # one repetition, half-width 0.015, observed 0.01: ceil(1 · 2.25) = 3
    assert repetitions_to_decide(-0.005, 0.025, 0.01, 1) == 3
    assert repetitions_to_decide(-0.01, 0.01, 0.0, 3) is None


def test_repetition_t_test_by_hand():
    # means 0.1, 0.2, 0.3: mean 0.2, sd 0.1, t = 0.2 / (0.1 / √3) = 3.4641
    test = repetition_test([np.array([0.1]), np.array([0.2]), np.array([0.3])])
    assert test.n == 3 and test.statistic == pytest.approx(2 * math.sqrt(3), rel=1e-9)
    assert math.isnan(repetition_test([np.array([0.1, 0.2])]).p)  # one repetition: no test


def test_distance_in_paper_standard_deviations():
    # paper 003 BUS headline: ours 0.648 against 0.804 ± 0.024 → −6.5 std
    assert paper_distance(0.648, 0.804, 0.024) == pytest.approx(-6.5)
    assert math.isnan(paper_distance(0.8, 0.8082, None))  # paper 000 prints no std
