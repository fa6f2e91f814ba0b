"""Finite values and gradients on the spec's edge cases, in float32 and under bf16/fp16 autocast.

Targets: all background, all foreground, a 4-pixel lesion, a 1-pixel vessel. Predictions:
perfect and inverted with logits ±1e4 (so p is exactly 0 or 1 in float32), p = 0.5 everywhere,
and a random one. Logits come out of a 1×1 convolution so that under autocast they really are
half precision, as a network's would be.
"""

import pytest
import torch

from focalbench.losses import build_loss, list_losses

SPECS = [
    *list_losses(),
    "dice+ce+dpt",
    "ufl(gamma=0.1)+fdpt(eps=0.1)",
    "ufl+fdpt(eps=1, mode=replace_gt)",
    "all_hybrid+dpt",
]
DTYPES = [None, torch.bfloat16, torch.float16]


def _targets(size=16):
    t = torch.zeros(4, 1, size, size)
    t[1] = 1  # all foreground; image 0 is all background
    t[2, 0, 7:9, 7:9] = 1  # 4-pixel lesion
    t[3, 0, :, 5] = 1  # 1-px vessel
    return t


def _raw_logits(kind, target):
    if kind == "perfect":
        return (target * 2 - 1) * 1e4
    if kind == "inverted":
        return (1 - target * 2) * 1e4
    if kind == "half":
        return torch.zeros_like(target)
    return torch.randn(target.shape, generator=torch.Generator().manual_seed(0)) * 3


def _run(spec, kind, dtype, target):
    raw = _raw_logits(kind, target).requires_grad_()
    one = torch.ones(1, 1, 1, 1)
    with torch.autocast("cpu", dtype=dtype or torch.bfloat16, enabled=dtype is not None):
        logits = torch.nn.functional.conv2d(raw, one)
        if dtype is not None:
            assert logits.dtype == dtype
        value = build_loss(spec)(logits, target)
    value.backward()
    return value, raw.grad


@pytest.mark.parametrize("dtype", DTYPES, ids=["fp32", "bf16", "fp16"])
@pytest.mark.parametrize("kind", ["perfect", "inverted", "half", "random"])
@pytest.mark.parametrize("spec", SPECS)
def test_finite_value_and_gradient(spec, kind, dtype):
    value, grad = _run(spec, kind, dtype, _targets())
    assert value.dtype == torch.float32
    assert torch.isfinite(value), f"{spec} {kind}: {value}"
    assert torch.isfinite(grad).all(), f"{spec} {kind}: non-finite gradient"


@pytest.mark.parametrize(
    "spec", ["dice(classes=fg, smooth=1)", "tversky", "focal_tversky", "ce", "ufl(gamma=0.1)"]
)
def test_perfect_prediction_is_below_inverted(spec):
    target = _targets()[2:]  # lesion and vessel
    perfect, _ = _run(spec, "perfect", None, target)
    inverted, _ = _run(spec, "inverted", None, target)
    assert perfect.item() < 1e-3 < inverted.item()


def test_cross_entropy_at_exact_zero_and_one_is_clipped_at_log_eps():
    """p ∈ {0, 1}: the inverted prediction costs −log(1e-7) = 16.118 per pixel, not inf."""
    value, _ = _run("ce", "inverted", None, _targets())
    assert value.item() == pytest.approx(16.118096, rel=1e-4)


def test_large_image_sums_do_not_overflow_under_fp16_autocast():
    """A 512×512 soft count reaches 2.6e5 > fp16's 65504: the sums must run in float32."""
    target = torch.ones(1, 1, 512, 512)
    target[..., :256, :] = 0
    value, grad = _run("dice(classes=fg, smooth=1)", "random", torch.float16, target)
    assert torch.isfinite(value) and torch.isfinite(grad).all()
    reference, _ = _run("dice(classes=fg, smooth=1)", "random", None, target)
    assert value.item() == pytest.approx(reference.item(), abs=2e-3)


def test_deep_supervision_edge_cases_are_finite():
    target = _targets()
    outs = [_raw_logits("perfect", target[..., ::s, ::s]).requires_grad_() for s in (4, 2, 1)]
    value = build_loss("deep_supervision")(outs, target)
    value.backward()
    assert torch.isfinite(value) and all(torch.isfinite(o.grad).all() for o in outs)


def test_no_tensor_is_built_from_host_data_per_call(monkeypatch):
    """On a GPU, ``torch.tensor(list, device=cuda)`` is a blocking host-to-device copy: once per
    loss term and step it would stall the training loop. The maths must use Python scalars."""
    from focalbench.losses import boundary

    target = _targets()
    logits = torch.randn(target.shape, generator=torch.Generator().manual_seed(1)).requires_grad_()
    losses = {spec: build_loss(spec) for spec in SPECS}

    def refuse(*args, **kwargs):
        raise AssertionError("a tensor built from host data inside the loss")

    monkeypatch.setattr(torch, "tensor", refuse)
    monkeypatch.setattr(torch, "as_tensor", refuse)
    distance = boundary.distance_map(target, backend="torch")
    for _spec, loss in losses.items():
        loss(logits, target, distance).backward()
    assert torch.isfinite(logits.grad).all()
