"""The paper-000 U-Net family: parameter counts, positions and the Focal layer's identities."""

import math

import pytest
import torch

from focalbench.errors import FocalbenchError
from focalbench.models import build_model, clamp_focal_weights_, count_parameters, focal_weights
from focalbench.models.blocks import AttentionGate, SqueezeExcitation, focal_power

# spec/models.md §1-4: counts for the 2-channel softmax head of the paper (3 input channels)
PAPER_COUNTS = [
    ("unet", {}, 7_766_018),
    ("use-net", {}, 7_876_730),
    ("attention-unet", {}, 8_901_862),
    ("attention-unet", {"gate_form": "oktay"}, 8_377_702),
    ("focal-use-net", {}, 7_876_730 + 9),
    ("focal-attention-unet", {}, 8_901_862 + 4),
]


@pytest.mark.parametrize("name,params,expected", PAPER_COUNTS)
def test_full_width_parameter_counts_match_the_spec(name, params, expected):
    assert count_parameters(build_model(name, out_channels=2, **params)) == expected
    # the 1-channel logit head drops one 1x1 filter of 32 weights + 1 bias
    assert count_parameters(build_model(name, **params)) == expected - 33


def test_focal_power_hand_values():
    a = torch.tensor([0.25, 1.0, 0.0, 0.5])
    torch.testing.assert_close(
        focal_power(a, torch.tensor(0.5)), torch.tensor([0.5, 1.0, math.sqrt(1e-7), math.sqrt(0.5)])
    )
    torch.testing.assert_close(
        focal_power(a, torch.tensor(2.0)), torch.tensor([0.0625, 1.0, 1e-14, 0.25])
    )
    assert torch.equal(focal_power(a, torch.tensor(0.0)), torch.ones(4))
    w = torch.tensor(1.0, requires_grad=True)
    focal_power(torch.tensor(0.25), w).backward()
    assert w.grad.item() == pytest.approx(0.25 * math.log(0.25))  # d a^w / dw = a^w ln a


def test_se_block_hand_value_with_zeroed_excitation():
    se = SqueezeExcitation(16, reduction=8, focal_init=2.0)
    for p in se.parameters():
        torch.nn.init.zeros_(p)
    with torch.no_grad():
        se.focal.weight.fill_(2.0)
    x = torch.randn(1, 16, 4, 4)
    # s = sigmoid(0) = 0.5 for every channel; focal w = 2 -> 0.25
    torch.testing.assert_close(se(x), 0.25 * x)


def test_gate_coefficients_hand_value_and_zero_weight_keeps_only_the_output_conv():
    ag = AttentionGate(8, 16, 8, focal_init=3.0)
    torch.nn.init.zeros_(ag.psi.weight)
    torch.nn.init.constant_(ag.psi.bias, math.log(3.0))  # sigmoid(ln 3) = 0.75
    x, g = torch.randn(1, 8, 8, 8), torch.randn(1, 16, 4, 4)
    torch.testing.assert_close(ag.coefficients(x, g), torch.full((1, 1, 8, 8), 0.75**3))
    with torch.no_grad():
        ag.focal.weight.zero_()
    assert torch.equal(ag(x, g), ag.out(x))


@pytest.mark.parametrize(
    "plain,focal", [("use-net", "focal-use-net"), ("attention-unet", "focal-attention-unet")]
)
def test_focal_weight_one_gives_exactly_the_plain_attention_network(plain, focal):
    ref = build_model(plain, width=8)
    net = build_model(focal, width=8, focal_init=1.0)
    missing = net.load_state_dict(ref.state_dict(), strict=False).missing_keys
    assert missing and all(k.endswith("focal.weight") for k in missing)
    x = torch.randn(1, 3, 32, 32)
    assert torch.equal(net(x), ref(x))


def test_focal_weight_zero_gives_exactly_the_plain_unet_for_se():
    net = build_model("focal-use-net", width=8, focal_init=0.0)
    ref = build_model("unet", width=8)
    unexpected = ref.load_state_dict(net.state_dict(), strict=False).unexpected_keys
    assert len({k.split(".")[1] for k in unexpected}) == 9
    x = torch.randn(1, 3, 32, 32)
    assert torch.equal(net(x), ref(x))


def test_focal_weights_learn_from_zero_and_are_clamped_non_negative():
    net = build_model("focal-use-net", width=8, focal_init=0.0)
    net(torch.randn(1, 3, 32, 32)).mean().backward()
    grads = [m.focal.weight.grad for m in net.attention_modules()]
    assert all(torch.isfinite(g) for g in grads) and any(g != 0 for g in grads)
    with torch.no_grad():
        net.attention["se1"].focal.weight.fill_(-0.3)
        net.attention["se2"].focal.weight.fill_(0.7)
    clamp_focal_weights_(net)
    w = focal_weights(net)
    assert list(w) == [f"se{p}" for p in range(1, 10)]
    assert w["se1"] == 0.0 and w["se2"] == pytest.approx(0.7)


def test_pruned_network_holds_only_the_kept_modules():
    net = build_model("focal-use-net", width=8, positions=[9, 2, 6])
    assert [m.position for m in net.attention_modules()] == [2, 6, 9]
    assert list(focal_weights(net)) == ["se2", "se6", "se9"]
    assert {k.split(".")[1] for k in net.state_dict() if k.startswith("attention.")} == {
        "se2",
        "se6",
        "se9",
    }
    # SE(C) with r = 8 and bias: 2·C·C/8 + C/8 + C, + 1 focal scalar; positions 2, 6, 9 have C = 16, 64, 8
    se = lambda c: 2 * c * (c // 8) + c // 8 + c + 1  # noqa: E731
    assert count_parameters(net) == count_parameters(build_model("unet", width=8)) + se(16) + se(
        64
    ) + se(8)
    gates = build_model("attention-unet", width=8, positions=[4])
    assert [m.kind + str(m.position) for m in gates.attention_modules()] == ["ag4"]
    assert gates.attention_modules()[0].out[0].in_channels == 8  # position 4 = shallowest skip
    assert (
        build_model("unet").attention_modules() == []
        and focal_weights(build_model("unet", width=8)) == {}
    )


def test_bad_positions_are_user_errors():
    with pytest.raises(
        FocalbenchError, match=r"SE positions \[10\] do not exist; choose from 1..9"
    ):
        build_model("use-net", width=8, positions=[2, 10])
    with pytest.raises(
        FocalbenchError, match=r"attention-gate positions \[5\] do not exist; choose from 1..4"
    ):
        build_model("attention-unet", width=8, positions=[5])
    with pytest.raises(FocalbenchError, match="positions/focal_init need an attention network"):
        build_model("unet", positions=[1])
