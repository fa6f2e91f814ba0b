"""The loss grammar, parameter routing, presets and the user errors of build_loss."""

import pytest
import torch

from focalbench.errors import FocalbenchError
from focalbench.losses import (
    PRESETS,
    AdaptiveLog,
    DeepSupervision,
    Loss,
    build_loss,
    parse_loss_spec,
)
from focalbench.losses.modules import CrossEntropy, Dice, UnifiedFocal


def test_parse_terms_and_values():
    assert parse_loss_spec("ufl(gamma=0.1)+fdpt(eps=0.1)") == [
        ("ufl", {"gamma": 0.1}),
        ("fdpt", {"eps": 0.1}),
    ]
    assert parse_loss_spec(" dice + ce + dpt ") == [("dice", {}), ("ce", {}), ("dpt", {})]
    assert parse_loss_spec("dice(reduction=batch, smooth=1)") == [
        ("dice", {"reduction": "batch", "smooth": 1})
    ]


def test_dpt_and_fdpt_weight_every_other_term():
    loss = build_loss("dice+ce+dpt")
    assert isinstance(loss, Loss) and [type(t) for t in loss.terms] == [Dice, CrossEntropy]
    assert loss.fdpt == 1.0 and loss.fdpt_mode.value == "pixel_weight" and loss.needs_distance_map
    loss = build_loss("ufl(gamma=0.1)+fdpt(eps=0.1, mode=replace_gt)")
    assert loss.fdpt == 0.1 and loss.fdpt_mode.value == "replace_gt"
    assert build_loss("ufl+fdpt").fdpt == 0.1
    assert not build_loss("dice_ce").needs_distance_map


def test_params_reach_every_term_that_takes_them_and_the_spec_wins():
    loss = build_loss("dice+tversky(smooth=2)", smooth=0.5, reduction="batch")
    dice, tversky = loss.terms
    assert (dice.smooth, dice.reduction.value) == (0.5, "batch")
    assert (tversky.smooth, tversky.reduction.value) == (2.0, "batch")
    assert build_loss("ufl", fdpt=0.1, fdpt_mode="replace_gt").fdpt_mode.value == "replace_gt"
    both = build_loss(
        "ufl+dpt", fdpt=0.1, fdpt_mode="replace_gt"
    )  # the spec's term wins, its mode unset
    assert (both.fdpt, both.fdpt_mode.value) == (1.0, "replace_gt")


def test_presets_give_each_papers_dice():
    p000 = build_loss("dice", preset="paper000").terms[0]
    p003 = build_loss("dice", preset="paper003").terms[0]
    assert (p000.smooth, p000.reduction.value, p000.classes.value) == (1e-5, "image", "both")
    assert (p003.smooth, p003.reduction.value, p003.classes.value) == (1.0, "batch", "fg")
    assert (
        build_loss("dice", preset="paper001", smooth=2).terms[0].smooth == 2.0
    )  # params beat presets
    ufl = build_loss("ufl", preset="paper000").terms[0]
    assert isinstance(ufl, UnifiedFocal) and (ufl.lam, ufl._af.delta) == (0.5, 0.6)


def test_wrappers():
    assert isinstance(build_loss("all_hybrid"), AdaptiveLog)
    wrapped = build_loss("adaptive_log(loss=dice, threshold=0.2)", smooth=1)
    assert wrapped.threshold == 0.2 and wrapped.inner.terms[0].smooth == 1.0
    ds = build_loss("deep_supervision(gamma=2)+dpt")
    assert isinstance(ds, DeepSupervision) and ds.needs_distance_map
    assert ds.side.terms[0].exponent() == (0.5, 0.5) and ds.final.terms[0].exponent() == (1.0, 1.0)


@pytest.mark.parametrize(
    "spec,params,message",
    [
        (
            "dcie",
            {},
            r"unknown loss 'dcie' \(did you mean 'dice'\?\); choose from: dice, ce, dice_ce",
        ),
        (
            "dice(gamma=2)",
            {},
            r"'gamma' is not taken by 'dice'; valid: classes, fdpt, fdpt_mode, reduction, smooth",
        ),
        ("dice+ce", {"delta": 0.6}, r"'delta' is not taken by 'dice\+ce'; valid: "),
        ("dice(reduction=pixel)", {}, r"reduction='pixel' is not valid; choose from: image, batch"),
        ("ufl(gamma=1.5)", {}, r"gamma=1\.5 is out of range \[0, 1\]"),
        ("dice(smooth=big)", {}, r"smooth='big' is not a number; pass a value in \[0, ∞\)"),
        ("focal_tversky(gamma=0)", {}, r"gamma=0 is out of range \(0, ∞\)"),
        ("dice+dpt+fdpt", {}, r"more than one dpt/fdpt"),
        ("fdpt(eps=0.1)", {}, r"no loss term"),
        ("fdpt(epsilon=0.1)+dice", {}, r"fdpt takes no parameter 'epsilon'; valid: eps, mode"),
        ("all_hybrid+dice", {}, r"wraps a whole loss"),
        ("adaptive_log(loss=all_hybrid)", {}, r"cannot wrap 'all_hybrid'"),
        ("dice(smooth)", {}, r"is not KEY=VALUE"),
        ("dice((", {}, r"cannot read loss term"),
        ("dice", {"preset": "paper9"}, r"unknown loss preset 'paper9'; choose from: paper000"),
        (
            "ufl+fdpt(mode=blur)",
            {},
            r"fdpt_mode='blur' is not valid; choose from: pixel_weight, replace_gt",
        ),
    ],
)
def test_user_mistakes_name_the_fix(spec, params, message):
    with pytest.raises(FocalbenchError, match=message):
        build_loss(spec, **params)


def test_a_target_of_the_wrong_shape_is_a_programming_error():
    with pytest.raises(ValueError, match="does not match"):
        build_loss("dice")(torch.zeros(2, 1, 8, 8), torch.zeros(2, 1, 4, 4))


def test_a_mask_without_channel_axis_is_accepted():
    logits, target = torch.randn(2, 1, 8, 8), (torch.rand(2, 8, 8) > 0.5).float()
    loss = build_loss("dice+ce+dpt")
    torch.testing.assert_close(loss(logits, target), loss(logits, target[:, None]))


def test_a_preset_reaches_the_terms_of_a_compound_name():
    dice, _ = build_loss("dice_ce", preset="paper001").terms
    assert (dice.smooth, dice.reduction.value, dice.classes.value) == (1.0, "batch", "fg")


def test_loss_preset_takes_the_datasets_ufl_gamma_and_smoke_has_none():
    from focalbench.losses import loss_preset

    preset = loss_preset("paper000", {"ufl_gamma": 0.1, "size": (512, 512)})
    assert preset["ufl"] == {"lam": 0.5, "delta": 0.6, "gamma": 0.1}
    assert build_loss("ufl+fdpt(eps=0.1)", preset=preset).terms[0]._af.gamma == 0.1
    assert build_loss("ufl(gamma=0.3)", preset=preset).terms[0]._af.gamma == 0.3  # the spec wins
    assert loss_preset("smoke") == {}
    assert "gamma" not in PRESETS["paper000"]["ufl"]  # the shared table is not mutated


def test_effective_parameters_are_plain_json_for_run_files():
    import json

    for spec in ("ufl(gamma=0.1)+fdpt(eps=0.1)", "all_hybrid", "deep_supervision", "dice_ce"):
        params = build_loss(spec).params()
        assert json.loads(json.dumps(params)) == params
    assert (
        build_loss("ufl(gamma=0.1)+fdpt(eps=0.1)").params()["terms"]["UnifiedFocal"]["gamma"] == 0.1
    )
