"""One shared tester over the network registry (every name, tiny params, CPU)."""

import time

import pytest
import torch

import focalbench
from focalbench.errors import FocalbenchError
from focalbench.models import build_model, check_input_size, list_models, model_info, model_summary

NAMES = list_models()
# smp's U-Net decoder builds an scSE module for the skip of its last block, which has no skip
NEVER_USED = {"smp-unet-scse": "net.decoder.blocks.4.attention1."}


def _valid_size(model, target: int = 64) -> int:
    m = model.size_multiple
    return max(m, (target // m) * m)


def _full_res(out):
    return out[-1] if isinstance(out, list) else out


@pytest.mark.parametrize("name", NAMES)
def test_forward_backward_with_tiny_params_gives_finite_logits_of_the_input_size(name):
    build_model(name, **model_info(name)["tiny_params"])  # first build pays the lazy imports (smp)
    start = time.perf_counter()
    model = build_model(name, **model_info(name)["tiny_params"])
    assert time.perf_counter() - start < 1.0, "building the tiny network must take under a second"
    s = _valid_size(model)
    x = torch.randn(2, 3, s, s)
    out = model(x)
    if model_info(name)["deep_supervision"]:
        assert isinstance(out, list) and len(out) > 1
        sizes = [o.shape[-1] for o in out]
        assert sizes == sorted(sizes) and sizes[-1] == s, "full resolution must come last"
        assert all(o.shape[:2] == (2, 1) for o in out)
    else:
        assert out.shape == (2, 1, s, s)
    loss = sum(o.float().square().mean() for o in (out if isinstance(out, list) else [out]))
    assert torch.isfinite(loss)
    loss.backward()
    unused = NEVER_USED.get(name, "\0")
    grads = [
        p.grad for n, p in model.named_parameters() if p.requires_grad and not n.startswith(unused)
    ]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)


@pytest.mark.parametrize("name", NAMES)
def test_bfloat16_autocast_and_channels_last_match_the_float32_output(name):
    model = build_model(name, **model_info(name)["tiny_params"]).eval()
    s = _valid_size(model)
    x = torch.randn(1, 3, s, s)
    with torch.no_grad():
        ref = _full_res(model(x))
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = _full_res(model(x))
        cl_model = build_model(name, **model_info(name)["tiny_params"])
        cl_model.load_state_dict(model.state_dict())
        cl_model = cl_model.eval().to(memory_format=torch.channels_last)
        cl = _full_res(cl_model(x.to(memory_format=torch.channels_last)))
    assert torch.isfinite(low.float()).all()
    assert low.shape == ref.shape
    # bf16 keeps ~3 significant digits; the outputs must agree in bulk, not bit for bit
    assert torch.corrcoef(torch.stack([low.float().flatten(), ref.flatten()]))[0, 1] > 0.9
    torch.testing.assert_close(cl, ref, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("name", NAMES)
def test_a_size_off_the_grid_names_the_nearest_valid_sizes(name):
    model = build_model(name, **model_info(name)["tiny_params"])
    m = model.size_multiple
    bad = 4 * m + 1
    expected = f"{4 * m}x{4 * m}, {4 * m}x{5 * m}, {5 * m}x{4 * m}, {5 * m}x{5 * m}"
    with pytest.raises(FocalbenchError, match=f"multiples of {m}; nearest valid sizes: {expected}"):
        check_input_size(model, (bad, bad))
    with pytest.raises(FocalbenchError, match="nearest valid sizes"):
        model(torch.randn(1, 3, bad, bad))


def test_unknown_model_and_unknown_parameter_list_the_options():
    with pytest.raises(FocalbenchError, match=r"did you mean 'unet'\?"):
        build_model("unte")
    with pytest.raises(FocalbenchError, match=r"takes no parameter colour; valid: width, depth"):
        build_model("unet", colour=3)
    with pytest.raises(FocalbenchError, match=r"gate_form='okta' is not one of miscnn, oktay"):
        build_model("attention-unet", gate_form="okta")


def test_model_info_describes_every_network():
    for name in NAMES:
        info = model_info(name)
        assert info["name"] == name and info["description"] and info["paper"]
        assert set(info["tiny_params"]) <= set(info["defaults"])


def test_summary_keeps_the_parameter_count_when_the_size_does_not_fit():
    fits, misfit = (
        model_summary("unet", (64, 64), width=8),
        model_summary("unet", (72, 64), width=8),
    )
    assert misfit["params"] == fits["params"] and fits["gflops"] > 0
    assert misfit["gflops"] is None and "nearest valid sizes: 64x64, 80x64" in misfit["error"]


def test_the_package_exposes_build_model():
    assert type(focalbench.build_model("unet", width=8)).__name__ == "UNet"


@pytest.mark.parametrize(
    "name,params,message",
    [
        (
            "use-net",
            {"positions": 2},
            r"positions=2 is not a list of integers; write e.g. --param model.positions=\[2,6,9\]",
        ),
        ("use-net", {"positions": ["a"]}, r"positions=\['a'\] is not a list of integers"),
        (
            "focusnetpp",
            {"blocks": 3},
            r"blocks=3 is not a list of integers; write e.g. --param model.blocks=",
        ),
        ("unet", {"norm": "bn"}, r"norm='bn' is not one of instance, batch"),
        ("use-net", {"se_reduction": 0}, r"se_reduction=0 must be an integer >= 1"),
        ("unet", {"depth": "4"}, r"depth='4' must be an integer >= 1"),
        ("focusnet", {"width": 0}, r"width=0 must be an integer >= 1"),
        ("focal-use-net", {"focal_init": -1.0}, r"focal_init=-1.0 must be a number >= 0"),
        ("focusnet", {"dropout": 1.5}, r"dropout=1.5 must be a number in \[0, 1\)"),
    ],
)
def test_a_wrong_parameter_value_is_a_one_line_user_error(name, params, message):
    with pytest.raises(FocalbenchError, match=message):
        build_model(name, **params)
    assert type(build_model("unet", width=8, norm="batch").down[0][0][2]).__name__ == "BatchNorm2d"
