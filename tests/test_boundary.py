"""Exact EDT and the DPT/FDPT map (spec losses.md §8.1) against scipy and hand values."""

import math

import numpy as np
import pytest
import torch
from scipy.ndimage import distance_transform_edt

from focalbench.losses import boundary
from focalbench.losses.boundary import EdtBackend

BACKENDS = pytest.mark.parametrize("backend", list(EdtBackend), ids=[b.value for b in EdtBackend])


def reference_distance_map(mask: np.ndarray) -> np.ndarray:
    """Spec §8.1 in float64 with scipy, one image and one region at a time."""
    out = np.zeros(mask.shape, dtype=np.float64)
    for region in (mask > 0, mask == 0):
        if not region.any() or region.all():
            continue  # empty region or no complement: D = 0
        d = distance_transform_edt(region)
        peak = d[region].max()
        out[region] += 1.0 if peak == 1 else (peak - d[region]) / (peak - 1)
    return out


@BACKENDS
@pytest.mark.parametrize(
    "shape,density", [((17, 23), 0.3), ((32, 32), 0.05), ((9, 40), 0.8), ((1, 12), 0.5)]
)
def test_edt_equals_scipy_on_random_masks(shape, density, backend):
    gen = np.random.default_rng(7)
    masks = gen.random((3, *shape)) > density  # True = measure from here to the nearest False
    masks[:, 0, 0] = False  # scipy and the spec agree only where a False pixel exists
    masks[1] = True  # an image without False pixels must not borrow one from its neighbour
    masks[1, -1, -1] = False
    ours = boundary.edt(torch.from_numpy(masks), backend).numpy()
    ref = np.stack([distance_transform_edt(m) for m in masks])
    np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-5)


def test_edt_row_pass_chunks_give_the_same_answer(monkeypatch):
    gen = np.random.default_rng(1)
    masks = torch.from_numpy(gen.random((2, 20, 24)) > 0.2)
    whole = boundary.edt(masks, "torch")
    monkeypatch.setattr(boundary, "_CHUNK_ELEMENTS", 24 * 24 * 3)  # 3 rows per chunk
    np.testing.assert_array_equal(boundary.edt(masks, "torch").numpy(), whole.numpy())


@BACKENDS
def test_edt_of_an_image_without_complement_is_infinite(backend):
    masks = torch.ones(2, 4, 5, dtype=torch.bool)
    masks[1, 0, 0] = False
    out = boundary.edt(masks, backend)
    assert torch.isinf(out[0]).all() and torch.isfinite(out[1]).all()


@BACKENDS
def test_distance_map_equals_the_scipy_reference_on_random_masks(backend):
    gen = np.random.default_rng(3)
    masks = (gen.random((4, 1, 24, 20)) > 0.7).astype(np.float32)
    masks[1] = 0.0  # all background
    masks[2] = 1.0  # all foreground
    ours = boundary.distance_map(torch.from_numpy(masks), backend)
    assert ours.shape == masks.shape and ours.dtype == torch.float32
    ref = np.stack([reference_distance_map(m[0])[None] for m in masks])
    np.testing.assert_allclose(ours.numpy(), ref, atol=1e-6)


@BACKENDS
def test_distance_map_hand_values_for_one_centre_pixel(backend):
    """5×5, foreground = centre: M_fg = 1 → D = 1 there; background d ∈ {1, √2, 2, √5, √8}."""
    mask = torch.zeros(1, 1, 5, 5)
    mask[0, 0, 2, 2] = 1
    d = boundary.distance_map(mask, backend)[0, 0]
    m = math.sqrt(8)
    assert d[2, 2] == 1.0  # M_R = 1 guard
    assert d[2, 1] == pytest.approx(1.0)  # 4-neighbour: (M − 1)/(M − 1)
    assert d[1, 1] == pytest.approx((m - math.sqrt(2)) / (m - 1))
    assert d[2, 0] == pytest.approx((m - 2) / (m - 1))
    assert d[1, 0] == pytest.approx((m - math.sqrt(5)) / (m - 1))
    assert d[0, 0] == pytest.approx(0.0, abs=1e-6)  # the farthest pixel


@BACKENDS
def test_guards_empty_full_and_one_pixel_vessel(backend):
    empty = torch.zeros(1, 1, 8, 8)
    full = torch.ones(1, 1, 8, 8)
    vessel = torch.zeros(1, 1, 8, 8)
    vessel[..., :, 3] = 1  # a 1-px wide vertical vessel: every pixel touches the background
    maps = boundary.distance_map(torch.cat([empty, full, vessel]), backend)
    assert torch.isfinite(maps).all()
    assert (maps[0] == 0).all() and (maps[1] == 0).all()
    assert (maps[2, 0, :, 3] == 1).all()
    assert (maps[2, 0, :, 7] == 0).all()  # background column farthest from the vessel


def test_fdpt_weight_interpolates_between_no_penalty_and_dpt():
    d = torch.tensor([0.0, 0.25, 1.0])
    torch.testing.assert_close(boundary.fdpt_weight(d, 0.0), torch.ones(3))
    torch.testing.assert_close(boundary.fdpt_weight(d, 1.0), 1 + d)
    torch.testing.assert_close(boundary.fdpt_weight(d, 0.1), torch.tensor([1.0, 1.25**0.1, 2**0.1]))


def test_distance_map_has_no_gradient_and_keeps_device():
    target = (torch.rand(2, 1, 8, 8) > 0.5).float().requires_grad_()
    d = boundary.distance_map(target)
    assert not d.requires_grad and d.device == target.device


@pytest.mark.gpu
def test_torch_edt_on_cuda_equals_the_cpu_map():
    gen = np.random.default_rng(2)
    masks = torch.from_numpy((gen.random((8, 1, 96, 80)) > 0.85).astype(np.float32))
    masks[0] = 0
    on_gpu = boundary.distance_map(masks.cuda())
    assert on_gpu.device.type == "cuda"
    torch.testing.assert_close(on_gpu.cpu(), boundary.distance_map(masks), atol=1e-6, rtol=0)
