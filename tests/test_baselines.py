"""Paper 002's baselines R2U-Net [9] and BCDU-Net [10]: hand counts, the recurrence, the BConvLSTM, sizes."""

import json
import math

import pytest
import torch
from torch import nn
from typer.testing import CliRunner

from focalbench.cli import app
from focalbench.errors import FocalbenchError
from focalbench.models import build_model, count_parameters, model_info
from focalbench.models.bcdunet import BConvLSTM, ConvLSTMCell, convlstm_update
from focalbench.models.blocks import RecurrentConv

# ---------------------------------------------------------------------------------------------- ConvLSTM


def _cell_params(cin: int, ch: int, k: int = 3) -> int:
    return 4 * (k * k * (cin + ch) * ch + ch)


@pytest.mark.parametrize("cin,ch,k", [(3, 5, 3), (1, 1, 3), (4, 2, 1)])
def test_convlstm_cell_has_keras_parameter_count(cin, ch, k):
    # kernel k²·C_in·4C_h + recurrent kernel k²·C_h·4C_h + one bias 4C_h (Keras ConvLSTM2D)
    assert count_parameters(ConvLSTMCell(cin, ch, k)) == _cell_params(cin, ch, k)
    assert _cell_params(3, 5, 3) == 1460


def test_bconvlstm_counts_two_cells_and_the_merge_conv_or_one_cell():
    assert count_parameters(BConvLSTM(3, 5)) == 2 * 1460 + (10 * 5 + 5)
    assert count_parameters(BConvLSTM(3, 5, "backward")) == 1460


def test_convlstm_update_by_hand():
    # all gate pre-activations 0: σ = 1/2, tanh(g) = 0, so c' = c/2 and h' = tanh(c')/2
    c = torch.full((1, 1, 1, 1), 2.0)
    h, c_new = convlstm_update(torch.zeros(1, 4, 1, 1), c)
    assert c_new.item() == pytest.approx(1.0) and h.item() == pytest.approx(0.5 * math.tanh(1.0))
    # g = atanh(1/2): c' = 0·σ(0) + σ(0)·1/2 = 1/4 from an empty cell
    gates = torch.tensor([0.0, 0.0, math.atanh(0.5), 0.0]).view(1, 4, 1, 1)
    h, c_new = convlstm_update(gates, torch.zeros(1, 1, 1, 1))
    assert c_new.item() == pytest.approx(0.25) and h.item() == pytest.approx(0.5 * math.tanh(0.25))


def test_forget_gate_bias_starts_at_one_as_in_keras():
    net = build_model("bcdu-net", width=8)
    for fuse in net.fuse:
        for cell in fuse.cells():
            bias = cell.gates.bias.detach().view(4, -1)
            assert torch.equal(bias[1], torch.ones_like(bias[1]))
            assert not bias[[0, 2, 3]].any()


def test_bconvlstm_reads_the_sequence_in_both_directions():
    torch.manual_seed(0)
    a, b = torch.randn(2, 3, 5, 5), torch.randn(2, 3, 5, 5)
    both = BConvLSTM(3, 4).eval()
    assert not torch.allclose(both([a, b]), both([b, a]))
    # same cell both ways and W→ = W←: reading [a, b] or [b, a] swaps H→ and H←, so Y is the same
    both.cell_backward.load_state_dict(both.cell_forward.state_dict())
    with torch.no_grad():
        both.merge.weight[:, 4:] = both.merge.weight[:, :4]
    torch.testing.assert_close(both([a, b]), both([b, a]))
    # each direction's cell reaches the output
    for cell in both.cells():
        before = both([a, b])
        with torch.no_grad():
            cell.gates.weight.mul_(0.5)
        assert not torch.allclose(both([a, b]), before)
    # the public code's form is one cell over the reversed sequence: order matters, no symmetry
    code = BConvLSTM(3, 4, "backward").eval()
    assert code.cell_forward is None and code.merge is None
    torch.testing.assert_close(code([a, b]), code.cell_backward.run([b, a]))
    assert not torch.allclose(code([a, b]), code([b, a]))


# ---------------------------------------------------------------------------------------------- R2U-Net


@pytest.mark.parametrize("t", [0, 1, 2, 3])
def test_recurrent_conv_applies_one_function_t_plus_one_times(t):
    # with f = ReLU: h_0 = x, h_k = 2x, ... = (k + 1)·x for x > 0, and 0 where x < 0
    layer = RecurrentConv(1, t)
    layer.f = nn.ReLU()
    x = torch.tensor([2.0, -1.0]).view(1, 2, 1, 1)
    assert layer(x).flatten().tolist() == [(t + 1) * 2.0, 0.0]


def test_r2unet_parameter_count_by_hand():
    # widths 2, 4 from 1 channel; RRCNN = conv1×1 + two RCLs of one conv3×3 + BN each
    rrcnn = lambda cin, c: (cin * c + c) + 2 * (9 * c * c + c + 2 * c)  # noqa: E731
    expected = rrcnn(1, 2) + rrcnn(2, 4) + (4 * 2 * 4 + 2) + rrcnn(4, 2) + (2 + 1)
    assert expected == 88 + 324 + 34 + 94 + 3 == 543
    for t in (0, 1, 2, 5):
        assert (
            count_parameters(build_model("r2u-net", in_channels=1, width=2, depth=1, recurrence=t))
            == 543
        )


def test_r2unet_recurrence_changes_the_output_but_not_the_parameters():
    two = build_model("r2u-net", width=8).eval()
    x = torch.randn(1, 3, 32, 32)
    outs = {}
    for t in (1, 2, 3):
        net = build_model("r2u-net", width=8, recurrence=t).eval()
        net.load_state_dict(two.state_dict())  # same weights: the recurrence shares them
        outs[t] = net(x)
    assert count_parameters(build_model("r2u-net", width=8, recurrence=3)) == count_parameters(two)
    torch.testing.assert_close(outs[2], two(x))
    assert not torch.allclose(outs[1], outs[2]) and not torch.allclose(outs[2], outs[3])


# ---------------------------------------------------------------------------------------------- BCDU-Net


def test_bcdunet_parameter_count_by_hand():
    # 1 input channel, widths 2 | 4, one dense block, the code's one-way ConvLSTM (F_0/2 = 1 channel)
    conv = lambda cin, cout, k=3: k * k * cin * cout + cout  # noqa: E731
    encoder = conv(1, 2) + conv(2, 2)  # 20 + 38
    dense1 = conv(2, 4) + conv(4, 4)  # 76 + 148
    decoder = (
        (4 * 2 * 4 + 2) + 2 * 2 + _cell_params(2, 1) + conv(1, 2) + conv(2, 2)
    )  # ConvT, BN, LSTM, 2 convs
    head = conv(2, 2) + conv(2, 1, 1)
    d1 = encoder + dense1 + decoder + head
    assert d1 == 58 + 224 + (34 + 4 + 112 + 58) + 41 == 531
    small = dict(in_channels=1, width=2, depth=1)
    assert (
        count_parameters(build_model("bcdu-net", **small, dense_blocks=1, convlstm="backward"))
        == 531
    )
    # bidirectional: a second cell and the conv1×1 merge [H→, H←] (2 → 1 channel)
    assert count_parameters(build_model("bcdu-net", **small, dense_blocks=1)) == 531 + 112 + 3
    # D3: block 2 reads block 1 (4 → 4), block 3 reads [block 2, block 1] (8 → 4)
    d3 = d1 + 2 * conv(4, 4) + conv(8, 4) + conv(4, 4)
    assert count_parameters(build_model("bcdu-net", **small, convlstm="backward")) == d3 == 1267


def test_bcdunet_bottleneck_is_densely_connected():
    net = build_model("bcdu-net", width=8)
    assert [block[0].in_channels for block in net.dense] == [
        32,
        64,
        128,
    ]  # pooled, block 1, [block 2, block 1]
    assert len(build_model("bcdu-net", width=8, dense_blocks=1).dense) == 1
    assert [type(m).__name__ for m in net.ups[0]] == ["ConvTranspose2d", "BatchNorm2d", "ReLU"]


@pytest.mark.parametrize(
    "name,params,paper_millions,rel,trainable",
    [
        # paper 002 Table 2 (ISIC) and Table 3 (2018 DSB), "x10^8" read as x10^6: the public code's form
        ("bcdu-net", {"convlstm": "backward"}, 20.66, 1e-4, 20_659_973),
        ("bcdu-net-small", {"convlstm": "backward"}, 5.22, 0.015, 5_167_493),
    ],
)
def test_bcdunet_code_form_matches_paper_002(name, params, paper_millions, rel, trainable):
    with torch.device("meta"):
        net = build_model(name, **params)
    assert count_parameters(net) / 1e6 == pytest.approx(paper_millions, rel=rel)
    assert count_parameters(net) == trainable


# ---------------------------------------------------------------------------------------------- paper 003's U-Net


def test_abraham_unet_parameter_count_by_hand():
    # newmodels.unet, 1 input channel (BUS): conv = k²·cin·cout + cout, BN = 2 per channel
    conv = lambda cin, cout, k=3: k * k * cin * cout + cout  # noqa: E731
    unet_conv = lambda cin, c: conv(cin, c) + conv(c, c) + 4 * c  # noqa: E731  (two convs, two BNs)
    encoder = unet_conv(1, 32) + unet_conv(32, 64) + unet_conv(64, 128) + unet_conv(128, 256)
    center = conv(256, 512) + conv(512, 512)  # no BN
    up = lambda cin, cout: conv(cin, cout, 2)  # noqa: E731  (ConvT 2x2: 4·cin·cout + cout)
    decoder = (
        up(512, 256)
        + conv(512, 256)
        + conv(256, 256)  # conv6 ×2
        + up(256, 128)
        + conv(256, 128)
        + conv(128, 128)  # conv7 ×2
        + up(128, 64)
        + conv(128, 64)  # conv8: one conv, as coded
        + up(64, 32)
        + conv(64, 32)
        + conv(32, 32)
    )  # conv9 ×2
    head = conv(32, 1, 1)
    assert encoder + center + decoder + head == 7_724_513
    assert count_parameters(build_model("unet-abraham", in_channels=1)) == 7_724_513
    # batch norm in the encoder only
    net = build_model("unet-abraham", width=8)
    assert sum(isinstance(m, nn.BatchNorm2d) for m in net.down.modules()) == 8
    assert not any(
        isinstance(m, nn.BatchNorm2d)
        for part in (net.center, net.up_blocks)
        for m in part.modules()
    )
    assert [sum(isinstance(m, nn.Conv2d) for m in block) for block in net.up_blocks] == [2, 2, 1, 2]


def test_default_counts_are_pinned():
    with torch.device("meta"):
        counts = {
            name: count_parameters(build_model(name))
            for name in ("r2u-net", "bcdu-net", "bcdu-net-small")
        }
    assert counts == {"r2u-net": 8_907_425, "bcdu-net": 23_026_533, "bcdu-net-small": 5_759_413}


def test_attention_unet_of_the_authors_parameter_counts_by_hand():
    # newmodels.attn_unet / TheFocusNetSeries attn_unet: UnetConv encoder and centre with BN,
    # gating conv1x1(C_g)+BN, gate = θ conv2x2 + φ conv1x1 + ConvT3x3 + ψ conv1x1 + W conv1x1 + BN
    conv = lambda cin, cout, k=3: k * k * cin * cout + cout  # noqa: E731
    unet_conv = lambda cin, c: conv(cin, c) + conv(c, c) + 4 * c  # noqa: E731
    gating = lambda c: conv(c, c, 1) + 2 * c  # noqa: E731

    def gate(cx, cg, f):
        return (
            gating(cg)
            + conv(cx, f, 2)
            + conv(cg, f, 1)
            + conv(f, f)
            + conv(f, 1, 1)
            + conv(cx, cx, 1)
            + 2 * cx
        )

    def count(e, g, u, cin=3):
        encoder = sum(unet_conv(a, b) for a, b in zip([cin, *e[:4]], e, strict=False))
        up1, up2, up3 = u[0] + e[3], u[1] + e[2], u[2] + e[1]
        gates = gate(e[3], e[4], g[0]) + gate(e[2], up1, g[1]) + gate(e[1], up1, g[2])
        ups = conv(e[4], u[0]) + conv(up1, u[1]) + conv(up2, u[2]) + conv(up3, u[3])
        return encoder + gates + ups + conv(u[3] + e[0], 1, 1)

    kaul = count([32, 64, 128, 256, 512], [256, 128, 64], [256, 128, 64, 32])
    assert kaul == 8_898_308 == count_parameters(build_model("attention-unet-kaul"))
    # paper 002 Table 2's 8.91 M is Keras' total: + the BN moving statistics of the 1,984
    # UnetConv, 3·512 gating and 448 gate-output channels
    assert kaul + 2 * (2 * (32 + 64 + 128 + 256 + 512) + 3 * 512 + 256 + 128 + 64) == 8_906_244
    abraham = count([32, 32, 64, 64, 128], [128, 64, 32], [32, 64, 32, 32], cin=1)
    assert (
        abraham == 846_500 == count_parameters(build_model("attention-unet-abraham", in_channels=1))
    )


def test_unetplusplus_of_the_authors_parameter_count_by_hand():
    # Nest_Net: unit = two conv3x3; X_ij (j >= 1) reads ConvT2x2(X_{i+1,j-1}) and X_i0..X_i,j-1
    conv = lambda cin, cout, k=3: k * k * cin * cout + cout  # noqa: E731
    f = [32, 64, 128, 256, 512]
    unit = lambda cin, c: conv(cin, c) + conv(c, c)  # noqa: E731
    total = sum(unit(a, b) for a, b in zip([3, *f[:4]], f, strict=False))
    total += sum(
        conv(f[i + 1], f[i], 2) + unit((j + 1) * f[i], f[i])
        for j in range(1, 5)
        for i in range(5 - j)
    )
    total += conv(32, 1, 1)
    assert (
        total == 9_042_177 == count_parameters(build_model("unetplusplus"))
    )  # paper 002 Table 2: 9.04 M
    net = build_model("unetplusplus", width=4).eval()
    assert net(torch.randn(1, 3, 32, 48)).shape == (1, 1, 32, 48)


# ---------------------------------------------------------------------------------------------- sizes, errors, CLI


@pytest.mark.parametrize(
    "name,params,size",
    [
        ("r2u-net", {"width": 8}, (48, 80)),
        ("r2u-net", {"width": 8, "depth": 2}, (20, 12)),
        ("bcdu-net", {"width": 8}, (24, 40)),
        ("bcdu-net", {"width": 8, "depth": 2, "dense_blocks": 1}, (12, 20)),
    ],
)
def test_non_square_sizes_that_fit_give_logits_of_the_input_size(name, params, size):
    net = build_model(name, **params).eval()
    with torch.no_grad():
        out = net(torch.randn(2, 3, *size))
    assert out.shape == (2, 1, *size) and torch.isfinite(out).all()


@pytest.mark.parametrize(
    "name,size,message",
    [
        (
            "r2u-net",
            (50, 80),
            "input 50x80 does not fit UNet: height and width must be multiples of 16; nearest valid sizes: 48x80, 64x80",
        ),
        (
            "bcdu-net",
            (36, 36),
            "input 36x36 does not fit BCDUNet: height and width must be multiples of 8; nearest valid sizes: 32x32, 32x40, 40x32, 40x40",
        ),
    ],
)
def test_a_size_that_does_not_fit_is_a_one_line_error(name, size, message):
    net = build_model(name, **model_info(name)["tiny_params"])
    with pytest.raises(FocalbenchError) as info:
        net(torch.randn(1, 3, *size))
    assert str(info.value) == message and "\n" not in str(info.value)


@pytest.mark.parametrize(
    "name,params,message",
    [
        ("r2u-net", {"recurrence": -1}, r"recurrence=-1 must be an integer >= 0"),
        ("r2u-net", {"recurrence": 1.5}, r"recurrence=1.5 must be an integer >= 0"),
        ("bcdu-net", {"dense_blocks": 0}, r"dense_blocks=0 must be an integer >= 1"),
        (
            "bcdu-net",
            {"convlstm": "forward"},
            r"convlstm='forward' is not one of bidirectional, backward",
        ),
        ("bcdu-net", {"width": 7}, r"width=7 must be even"),
    ],
)
def test_a_wrong_parameter_is_a_one_line_error(name, params, message):
    with pytest.raises(FocalbenchError, match=message):
        build_model(name, **params)


def test_models_json_lists_the_baselines():
    result = CliRunner().invoke(app, ["models", "--json", "--size", "64x64"])
    assert result.exit_code == 0, result.output
    rows = {row["name"]: row for row in json.loads(result.stdout)}
    assert rows["r2u-net"]["params"] == 8_907_425 and rows["bcdu-net"]["params"] == 23_026_533
    assert rows["bcdu-net-small"]["params"] == 5_759_413
    assert all(rows[n]["gflops"] > 0 for n in ("r2u-net", "bcdu-net", "bcdu-net-small"))
    assert rows["bcdu-net"]["defaults"]["convlstm"] == "bidirectional"
    assert rows["r2u-net"]["defaults"]["recurrence"] == 2


@pytest.mark.parametrize("name", ["r2u-net", "bcdu-net"])
def test_one_epoch_through_the_train_command_on_the_sample(name, tmp_path):
    out = CliRunner().invoke(
        app,
        [
            "train",
            "--dataset",
            "sample",
            "--model",
            name,
            "--loss",
            "dice",
            "--protocol",
            "smoke",
            "--epochs",
            "1",
            "--results",
            str(tmp_path),
            "--json",
        ],
    )
    assert out.exit_code == 0, out.output
    summary = json.loads(out.stdout)
    metrics = json.loads((tmp_path / "runs" / summary["key"] / "metrics.json").read_text())
    assert 0.0 <= metrics["test"]["dsc"] <= 1.0
    assert metrics["params"] == count_parameters(
        build_model(name, **model_info(name)["tiny_params"])
    )
