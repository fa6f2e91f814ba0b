"""Paper 001-003 networks, FLOP counting and `focalbench models`."""

import json

import pytest
import torch
import torch.nn.functional as F
from typer.testing import CliRunner

from focalbench.cli import app
from focalbench.errors import FocalbenchError
from focalbench.models import build_model, count_gflops, count_parameters, list_models
from focalbench.models.focusnetpp import LEAK, ResGANet


def unet_flops(size: int, width: int = 32, depth: int = 4, cin: int = 3) -> int:
    """Paper-000 U-Net conv FLOPs (2 per multiply-add), worked out layer by layer."""
    conv = lambda ci, co, k, r: 2 * ci * co * k * k * r * r  # noqa: E731  (r = output side)
    total, c = 0, cin
    for level in range(depth + 1):  # encoder levels and bottleneck
        f, r = width * 2**level, size // 2**level
        total += conv(c, f, 3, r) + conv(f, f, 3, r)
        c = f
    for level in reversed(range(depth)):
        f, r = width * 2**level, size // 2**level
        total += conv(2 * f, f, 2, r // 2)  # transposed conv: counted over its input grid
        total += conv(2 * f, f, 3, r) + conv(f, f, 3, r)
    return total + conv(width, 1, 1, size)


def test_gflops_of_the_unet_equal_the_layer_by_layer_count():
    assert count_gflops(build_model("unet"), (256, 256)) * 1e9 == pytest.approx(
        unet_flops(256), rel=1e-9
    )
    assert count_gflops(build_model("unet", width=8), (64, 64)) * 1e9 == pytest.approx(
        unet_flops(64, width=8), rel=1e-9
    )


@pytest.mark.parametrize(
    "name,params,paper_millions,rel",
    [
        ("focusnet", {}, 19.07, 0.01),
        ("focusnetpp", {}, 7.80, 0.01),
    ],
)
def test_parameter_counts_match_paper_002_table_2(name, params, paper_millions, rel):
    # paper 002 Table 2 (ISIC, 256x256), "x10^8" read as x10^6 (spec section 8)
    assert count_parameters(build_model(name, **params)) / 1e6 == pytest.approx(
        paper_millions, rel=rel
    )


def _running_statistics(net) -> int:
    return sum(
        b.numel() for k, b in net.named_buffers() if k.endswith(("running_mean", "running_var"))
    )


@pytest.mark.parametrize(
    "name,trainable",
    [
        ("focusnet", 19_063_933),
        # the authors' focusnetpp.py network: Keras counts 7,803,739 with the BN moving statistics
        ("focusnetpp", 7_771_723),
        ("focusnetpp-small", 1_984_615),
        # the paper's text: widths 32..256, SE in every block, a side head at every scale
        ("focusnetpp-paper", 3_339_209),
    ],
)
def test_focusnet_family_counts_are_pinned(name, trainable):
    with torch.device("meta"):
        net = build_model(name)
    assert count_parameters(net) == trainable


def test_focusnetpp_is_the_authors_code_network():
    with torch.device("meta"):
        net = build_model("focusnetpp")
    # Keras' model.summary() total = trainable + the BN moving mean and variance: Table 2's 7.80 M
    assert count_parameters(net) + _running_statistics(net) == 7_803_739
    assert net.stem.out_channels == 32 and net.stem.kernel_size == (5, 5)
    # conv1 = residual_block(32 -> 48); conv2..conv4: 3 blocks each; bottleneck: 2 blocks
    pairs = [
        [(b.split.in_channels, b.merge[0].out_channels) for b in stage] for stage in net.encoder
    ]
    assert pairs == [
        [(32, 48)],
        [(48, 96), (96, 96), (96, 96)],
        [(96, 156), (156, 156), (156, 156)],
        [(156, 256), (256, 256), (256, 256)],
    ]
    assert [(b.split.in_channels, b.merge[0].out_channels) for b in net.bottleneck[0]] == [
        (256, 512),
        (512, 512),
    ]
    assert not any(type(m).__name__ == "SqueezeExcitation" for m in net.modules())
    # decoder convs conv5..conv8: 256, 156, 96 and, at full size, 16 (then 9, 3 and the sigmoid map)
    assert [m[0].out_channels for m in net.merge] == [256, 156, 96, 16]
    assert [m.out_channels for m in net.sides[3] if isinstance(m, torch.nn.Conv2d)] == [9, 3, 1]
    assert [side[1][0].out_channels for side in net.sides[:3]] == [128, 64, 32]
    assert net.fuse[0][0].out_channels == 32


def test_resganet_with_a_silent_merge_is_leaky_relu_of_its_input():
    block = ResGANet(8, 8).eval()
    torch.nn.init.zeros_(block.merge[0].weight)
    torch.nn.init.zeros_(block.merge[0].bias)
    x = torch.randn(2, 8, 6, 6)
    # m = BN(0) = 0 (fresh running stats), SE(0) = 0, so y = LReLU(0 + x)
    torch.testing.assert_close(block(x), F.leaky_relu(x, LEAK))
    with pytest.raises(FocalbenchError, match="4 groups"):
        ResGANet(6, 8)


def test_pyramid_gate3_source_switch_and_focal_identity():
    code = build_model("pyramid-attention-unet", width=8)
    paper = build_model("pyramid-attention-unet", width=8, gate3_source="up2")
    # gate 3's gating signal: up1 = 8/32·(32 + 64) channels at 1/8 (code) or up2 = 8/32·(64 + 128) at 1/4 (paper)
    assert (
        code.gates["ag3"].gating[0].in_channels == 24
        and paper.gates["ag3"].gating[0].in_channels == 48
    )
    focal = build_model("pyramid-attention-unet", width=8, focal_init=1.0)
    focal.load_state_dict(code.state_dict(), strict=False)
    code.eval(), focal.eval()
    x = torch.randn(1, 3, 32, 32)
    outs, ref = focal(x), code(x)
    assert [o.shape[-1] for o in outs] == [4, 8, 16, 32]
    assert all(torch.equal(a, b) for a, b in zip(outs, ref, strict=False))
    pruned = build_model("pyramid-attention-unet", width=8, positions=[2])
    assert list(pruned.gates) == ["ag2"] and not any(
        "ag1" in k or "ag3" in k for k in pruned.state_dict()
    )


def test_smp_baselines_never_download_and_name_a_bad_encoder(monkeypatch):
    def no_download(*args, **kwargs):
        raise AssertionError("an smp baseline tried to download weights")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", no_download)
    monkeypatch.setattr(torch.hub, "download_url_to_file", no_download)
    net = build_model("smp-unet", encoder="resnet18")
    assert net.net.encoder.conv1.weight.std() > 0  # randomly initialised
    with pytest.raises(FocalbenchError, match="unknown smp encoder 'resnet1'"):
        build_model("smp-unet", encoder="resnet1")


def test_cli_models_json_lists_every_network_with_params_and_gflops():
    result = CliRunner().invoke(app, ["models", "--json", "--size", "64x64"])
    assert result.exit_code == 0, result.output
    rows = {row["name"]: row for row in json.loads(result.stdout)}
    assert list(rows) == list_models()
    assert rows["unet"]["params"] == 7_766_018 - 33
    assert rows["unet"]["gflops"] == pytest.approx(unet_flops(64) / 1e9, abs=1e-4)
    assert all(row["gflops"] > 0 for row in rows.values())


def test_cli_models_rejects_a_malformed_size_in_one_line():
    result = CliRunner().invoke(app, ["models", "--size", "256"])
    assert result.exit_code == 2
    assert "error: --size '256' is not HxW; write e.g. --size 256x256" in result.output
