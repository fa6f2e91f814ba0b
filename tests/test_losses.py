"""Each loss pinned by a value worked out by hand on one 2×2 image (spec losses.md §1–§10).

The image: p = [[0.9, 0.2], [0.6, 0.1]], g = [[1, 0], [1, 0]]. Foreground: TP = 0.9 + 0.6 = 1.5,
FN = 0.1 + 0.4 = 0.5, FP = 0.2 + 0.1 = 0.3, Σg = 2, Σp = 1.8. Background (P0 = 1 − p,
Y0 = 1 − g): TP0 = 0.8 + 0.9 = 1.7, FN0 = FP = 0.3, FP0 = FN = 0.5, ΣY0 = 2, ΣP0 = 2.2.
"""

import math

import pytest
import torch

from focalbench.losses import build_loss

P = torch.tensor([[0.9, 0.2], [0.6, 0.1]], dtype=torch.float64)
LOGITS = torch.logit(P).view(1, 1, 2, 2).float()
G = torch.tensor([[1.0, 0.0], [1.0, 0.0]]).view(1, 1, 2, 2)
ln = math.log

CE = -(ln(0.9) + ln(0.8) + ln(0.6) + ln(0.9)) / 4
DSC_FG = 2 * 1.5 / (2 + 1.8)
DSC_BG = 2 * 1.7 / (2 + 2.2)
TI_FG = 1.5 / (1.5 + 0.7 * 0.5 + 0.3 * 0.3)
TI_FG_S1 = (1.5 + 1) / (1.5 + 0.7 * 0.5 + 0.3 * 0.3 + 1)
AF = (0.6 * -ln(0.9) + 0.4 * 0.2**0.5 * -ln(0.8) + 0.6 * -ln(0.6) + 0.4 * 0.1**0.5 * -ln(0.9)) / 4
MTI_FG = 1.5 / (1.5 + 0.6 * 0.5 + 0.4 * 0.3)
MTI_BG = 1.7 / (1.7 + 0.6 * 0.3 + 0.4 * 0.5)
AFT = ((1 - MTI_BG) + (1 - MTI_FG) ** 0.5) / 2
FL = (0.1**2 * -ln(0.9) + 0.2**2 * -ln(0.8) + 0.4**2 * -ln(0.6) + 0.1**2 * -ln(0.9)) / 4
BCE = (0.7 * -ln(0.9) + 0.3 * -ln(0.8) + 0.7 * -ln(0.6) + 0.3 * -ln(0.9)) / 4

HAND = [
    ("dice(smooth=0)", 1 - (DSC_FG + DSC_BG) / 2),
    ("dice(smooth=0, classes=fg)", 1 - DSC_FG),
    ("dice(smooth=1, classes=fg)", 1 - (3 + 1) / (3.8 + 1)),
    ("ce", CE),
    ("dice_ce(smooth=0)", 1 - (DSC_FG + DSC_BG) / 2 + CE),
    ("tversky(smooth=0)", 1 - TI_FG),
    ("tversky", 1 - TI_FG_S1),
    ("focal_tversky(smooth=0)", (1 - TI_FG) ** 0.75),
    ("focal", FL),
    (
        "focal(alpha=0.25, gamma=0)",
        (0.25 * -ln(0.9) + 0.75 * -ln(0.8) + 0.25 * -ln(0.6) + 0.75 * -ln(0.9)) / 4,
    ),
    ("asym_focal(delta=0.6, gamma=0.5)", AF),
    ("asym_focal_tversky(delta=0.6, gamma=0.5)", AFT),
    ("asym_focal_tversky(delta=0.6, gamma=0.5, class_agg=sum)", 2 * AFT),
    ("ufl(delta=0.6, gamma=0.5)", 0.5 * AF + 0.5 * AFT),
    ("ufl(lam=0.2, delta=0.6, gamma=0.5)", 0.2 * AF + 0.8 * AFT),
    ("ufl(lam=0.2, lambda_on=aft, delta=0.6, gamma=0.5)", 0.8 * AF + 0.2 * AFT),
    ("balanced_ce", BCE),
    ("hybrid", 0.5 * BCE + 0.5 * (1 - TI_FG_S1)),
    ("all_hybrid", 0.5 * BCE + 0.5 * (1 - TI_FG_S1) - (0.1 - 10 * ln(1.2))),
    # FL = 0.0232 < γ = 0.1: the logarithmic branch ω ln(1 + |x|/ε)
    ("adaptive_log(loss=focal)", 10 * ln(1 + FL / 0.5)),
]


@pytest.mark.parametrize("spec,expected", HAND, ids=[s for s, _ in HAND])
def test_hand_computed_value(spec, expected):
    assert build_loss(spec)(LOGITS, G).item() == pytest.approx(expected, rel=1e-5)


def test_deep_supervision_is_ftl_on_strided_side_targets_plus_tl_on_the_last():
    gen = torch.Generator().manual_seed(0)
    target = (torch.rand(2, 1, 8, 8, generator=gen) > 0.6).float()
    outs = [torch.randn(2, 1, s, s, generator=gen) for s in (2, 4, 8)]
    ftl, tl = build_loss("focal_tversky"), build_loss("tversky")
    expected = (
        ftl(outs[0], target[..., ::4, ::4])
        + ftl(outs[1], target[..., ::2, ::2])
        + tl(outs[2], target)
    )
    torch.testing.assert_close(build_loss("deep_supervision")(outs, target), expected)
    # one loss on several outputs: the same loss on each strided target, weights 1 (Keras)
    dice = build_loss("dice")
    torch.testing.assert_close(
        dice(outs, target),
        sum(dice(o, target[..., :: 8 // o.shape[-1], :: 8 // o.shape[-1]]) for o in outs),
    )
    assert build_loss("deep_supervision")(outs[2], target).item() == pytest.approx(
        tl(outs[2], target).item()
    )


def test_deep_supervision_rejects_a_side_output_that_is_no_strided_target():
    with pytest.raises(ValueError, match="subsampled"):
        build_loss("deep_supervision")(
            [torch.zeros(1, 1, 3, 3), torch.zeros(1, 1, 8, 8)], torch.zeros(1, 1, 8, 8)
        )


def test_dpt_weights_every_term_with_one_plus_the_distance_map():
    """dice+ce+dpt = weighted Dice + Caliva's (1 + D)·CE, with D from the mask (spec §8.2)."""
    from focalbench.losses import boundary

    gen = torch.Generator().manual_seed(1)
    target = torch.zeros(2, 1, 12, 12)
    target[0, 0, 3:8, 4:9] = 1
    target[1, 0, 6, 2:10] = 1
    logits = torch.randn(2, 1, 12, 12, generator=gen)
    w = 1 + boundary.distance_map(target)
    p = torch.sigmoid(logits)
    ce = -(w * (target * torch.log(p) + (1 - target) * torch.log(1 - p))).mean()
    P, Y = torch.cat([1 - p, p], 1), torch.cat([1 - target, target], 1)
    dice = 1 - ((2 * (w * Y * P).sum((2, 3)) + 1e-5) / ((w * (Y + P)).sum((2, 3)) + 1e-5)).mean()
    loss = build_loss("dice+ce+dpt")
    assert loss.needs_distance_map
    torch.testing.assert_close(loss(logits, target), dice + ce, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(loss(logits, target, distance_map=w - 1), loss(logits, target))


def test_aft_keeps_the_reference_half_floor_on_an_empty_image():
    """Spec §6 / register 14: with no foreground, mTI_1 ≈ ε/((1−δ)FP + ε) ≈ 0 so t_1 ≈ 1 whatever
    the prediction. 16×16, p = 0.01, δ = 0.6, γ = 0.5: FP_1 = 2.56, TP_0 = 253.44, FN_0 = 2.56,
    t_0 = 1 − 253.44/(253.44 + 0.6·2.56), L_AFT = (t_0 + 1)/2 = 0.503012."""
    logits = torch.full((1, 1, 16, 16), math.log(0.01 / 0.99))
    t0 = 1 - 253.44 / (253.44 + 0.6 * 2.56)
    value = build_loss("asym_focal_tversky(delta=0.6, gamma=0.5)")(
        logits, torch.zeros(1, 1, 16, 16)
    ).item()
    assert value == pytest.approx((t0 + 1) / 2, rel=1e-5)
    assert value == pytest.approx(0.503012, abs=1e-6)
