"""The spec's special cases (losses.md §3, §7, §8, §10) on random inputs."""

import math

import pytest
import torch

from focalbench.losses import build_loss
from focalbench.losses.functional import adaptive_log


@pytest.fixture
def batch():
    gen = torch.Generator().manual_seed(3)
    target = (torch.rand(3, 1, 16, 16, generator=gen) > 0.8).float()
    target[1] = 0
    logits = torch.randn(3, 1, 16, 16, generator=gen) * 2
    return logits, target


def _close(a, b, batch, **kw):
    logits, target = batch
    torch.testing.assert_close(build_loss(a)(logits, target), build_loss(b)(logits, target), **kw)


def test_ufl_with_lambda_one_is_the_asymmetric_focal_loss(batch):
    _close("ufl(lam=1, delta=0.6, gamma=0.3)", "asym_focal(delta=0.6, gamma=0.3)", batch)


def test_ufl_with_lambda_zero_is_the_asymmetric_focal_tversky_loss(batch):
    _close("ufl(lam=0, delta=0.6, gamma=0.3)", "asym_focal_tversky(delta=0.6, gamma=0.3)", batch)


def test_asymmetric_focal_with_delta_half_gamma_zero_is_half_the_cross_entropy(batch):
    logits, target = batch
    torch.testing.assert_close(
        build_loss("asym_focal(delta=0.5, gamma=0)")(logits, target),
        build_loss("ce")(logits, target) / 2,
    )


def test_asymmetric_focal_with_gamma_zero_is_the_balanced_cross_entropy(batch):
    _close("asym_focal(delta=0.7, gamma=0)", "balanced_ce(omega=0.7)", batch)


@pytest.mark.parametrize("reduction,classes", [("image", "both"), ("batch", "fg")])
def test_tversky_with_equal_weights_is_dice_with_double_smoothing(batch, reduction, classes):
    _close(
        f"tversky(w_fn=0.5, w_fp=0.5, smooth=0.5, reduction={reduction}, classes={classes})",
        f"dice(smooth=1, reduction={reduction}, classes={classes})",
        batch,
    )


def test_focal_tversky_with_gamma_one_is_tversky(batch):
    _close("focal_tversky(gamma=1)", "tversky", batch)


def test_focal_with_gamma_zero_is_cross_entropy(batch):
    _close("focal(gamma=0)", "ce", batch)


@pytest.mark.parametrize("loss", ["dice", "dice_ce", "ufl(gamma=0.1)", "hybrid"])
@pytest.mark.parametrize("mode", ["pixel_weight", "replace_gt"])
def test_fdpt_with_eps_zero_is_no_penalty(batch, loss, mode):
    """W = (1 + D)^0 = 1: the map is computed and applied, and changes nothing (spec §8.1)."""
    logits, target = batch
    weighted = build_loss(f"{loss}+fdpt(eps=0, mode={mode})")
    assert weighted.needs_distance_map
    torch.testing.assert_close(weighted(logits, target), build_loss(loss)(logits, target))


def test_fdpt_raises_the_loss_and_dpt_raises_it_more(batch):
    logits, target = batch
    plain, fdpt, dpt = (
        build_loss(s)(logits, target).item() for s in ("ce", "ce+fdpt(eps=0.1)", "ce+dpt")
    )
    assert plain < fdpt < dpt


def test_replace_gt_makes_the_ufl_negative_at_a_perfect_prediction():
    """Spec §8.2: with Y ← Y·W the FP sums go negative, so UFL < 0 at the perfect prediction,
    while pixel weighting keeps it ≥ 0 (and ≈ 0)."""
    target = torch.zeros(1, 1, 16, 16)
    target[..., 4:12, 4:12] = 1
    logits = (target * 2 - 1) * 30
    replaced = build_loss("ufl(gamma=0.1)+fdpt(eps=0.1, mode=replace_gt)")(logits, target).item()
    weighted = build_loss("ufl(gamma=0.1)+fdpt(eps=0.1)")(logits, target).item()
    assert replaced < 0
    assert 0 <= weighted < 1e-5


def test_adaptive_log_is_continuous_at_the_threshold_with_the_papers_constant():
    """C = γ − ω ln(1 + γ/ε) = 0.1 − 10 ln 1.2 = −1.723216; both sides equal 1.823216 at |x| = γ."""
    c = 0.1 - 10 * math.log(1.2)
    assert c == pytest.approx(-1.723216, abs=1e-6)
    x = torch.tensor([0.1 - 1e-9, 0.1, 0.1 + 1e-9, 0.5, -0.5], dtype=torch.float64)
    y = adaptive_log(x, threshold=0.1, scale=10.0, epsilon=0.5)
    assert y[:3].tolist() == pytest.approx([1.823216] * 3, abs=1e-6)
    assert y[3].item() == pytest.approx(0.5 + 1.723216, abs=1e-6)
    assert y[4].item() == y[3].item()  # |x|


def test_adaptive_log_slope_is_omega_over_eps_plus_x_below_and_one_above():
    for x0, slope in [(0.05, 10 / 0.55), (0.3, 1.0)]:
        x = torch.tensor(x0, dtype=torch.float64, requires_grad=True)
        (g,) = torch.autograd.grad(adaptive_log(x, threshold=0.1, scale=10.0, epsilon=0.5), x)
        assert g.item() == pytest.approx(slope)
