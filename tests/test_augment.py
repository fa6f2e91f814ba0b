"""Device augmentation: each transform against an independent reference (scipy, rot90, flip)."""

import dataclasses
import math

import numpy as np
import pytest
import scipy.ndimage
import torch
import torch.nn.functional as F

from focalbench.engine.augment import (
    AugmentParams,
    affine_theta,
    augment,
    channel_stats,
    gaussian_smooth,
    normalize,
    sample_params,
)
from focalbench.protocols import MISCNN_AUGMENTATION, Augmentation, Normalization


def _params(batch=1, **values):
    base = dict(
        flip_x=torch.zeros(batch, dtype=torch.bool),
        flip_y=torch.zeros(batch, dtype=torch.bool),
        scale=torch.ones(batch),
        angle=torch.zeros(batch),
        alpha=torch.zeros(batch),
        sigma=torch.full((batch,), 10.0),
        brightness=torch.ones(batch),
    )
    base.update(values)
    return AugmentParams(**base)


def _warp(x, params):
    theta = affine_theta(params, x.shape[2], x.shape[3])
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", align_corners=False)


def test_zscore_matches_float64_reference_per_image_and_channel():
    images = torch.randint(0, 256, (3, 2, 5, 7), dtype=torch.uint8)
    out = normalize(images, Normalization.zscore)
    ref = images.numpy().astype(np.float64)
    ref = (ref - ref.mean(axis=(2, 3), keepdims=True)) / ref.std(axis=(2, 3), keepdims=True)
    np.testing.assert_allclose(out.numpy(), ref, rtol=1e-5, atol=1e-5)


def test_zscore_image_pools_all_channels_like_miscnn():
    images = torch.tensor([[[[0, 2]], [[4, 6]]]], dtype=torch.uint8)  # one 1×2 image, two channels
    # mean 3, population std sqrt(5) over all four values
    expected = torch.tensor([[[[-3, -1]], [[1, 3]]]], dtype=torch.float32) / 5**0.5
    torch.testing.assert_close(normalize(images, Normalization.zscore_image), expected)


def test_dataset_zscore_uses_one_mean_and_std_per_channel_of_the_training_images():
    train = torch.randint(0, 256, (70, 3, 9, 11), dtype=torch.uint8)  # 70 images: chunks of 64 + 6
    stats = channel_stats(train)
    ref = train.numpy().astype(np.float64)
    mean, std = ref.mean(axis=(0, 2, 3)), ref.std(axis=(0, 2, 3))
    np.testing.assert_allclose(stats[0].flatten().numpy(), mean, rtol=1e-6)
    np.testing.assert_allclose(stats[1].flatten().numpy(), std, rtol=1e-6)
    other = torch.randint(
        0, 256, (2, 3, 9, 11), dtype=torch.uint8
    )  # e.g. test images: the training μ, σ
    expected = (other.numpy().astype(np.float64) - mean[:, None, None]) / std[:, None, None]
    out = normalize(other, Normalization.zscore_dataset, stats)
    np.testing.assert_allclose(out.numpy(), expected, rtol=1e-5, atol=1e-5)


def test_zscore_of_a_constant_channel_is_zero_and_unit_divides_by_255():
    images = torch.full((1, 1, 4, 4), 77, dtype=torch.uint8)
    assert torch.equal(normalize(images, Normalization.zscore), torch.zeros(1, 1, 4, 4))
    assert normalize(images, Normalization.unit)[0, 0, 0, 0].item() == pytest.approx(77 / 255)


def test_gaussian_smooth_equals_scipy_constant_mode_per_sample_sigma():
    x = torch.rand(2, 2, 20, 17, generator=torch.Generator().manual_seed(1)) * 2 - 1
    sigma = torch.tensor([1.5, 3.0])
    radius = 12
    out = gaussian_smooth(x, sigma, radius).numpy()
    for b in range(2):
        for c in range(2):
            ref = scipy.ndimage.gaussian_filter(
                x[b, c].double().numpy(),
                float(sigma[b]),
                mode="constant",
                cval=0.0,
                truncate=radius / float(sigma[b]),
            )
            np.testing.assert_allclose(out[b, c], ref, atol=1e-5)


def test_quarter_turn_is_rot90_and_mirror_is_flip():
    x = torch.arange(36.0).reshape(1, 1, 6, 6)
    turned = _warp(x, _params(angle=torch.tensor([math.pi / 2])))
    assert torch.allclose(turned, torch.rot90(x, k=1, dims=(2, 3)), atol=1e-4)
    flipped = _warp(x, _params(flip_x=torch.tensor([True])))
    assert torch.allclose(flipped, torch.flip(x, dims=(3,)), atol=1e-5)
    flipped = _warp(x, _params(flip_y=torch.tensor([True])))
    assert torch.allclose(flipped, torch.flip(x, dims=(2,)), atol=1e-5)


def test_half_turn_on_a_non_square_image_is_a_double_flip():
    x = torch.arange(24.0).reshape(1, 1, 4, 6)
    turned = _warp(x, _params(angle=torch.tensor([math.pi])))
    assert torch.allclose(turned, torch.flip(x, dims=(2, 3)), atol=1e-4)


def test_zooming_out_by_two_keeps_the_centre_and_pads_with_zero():
    x = torch.ones(1, 1, 8, 8)
    out = _warp(x, _params(scale=torch.tensor([2.0])))
    assert out[0, 0, 3:5, 3:5].min().item() == pytest.approx(1.0)
    assert out[0, 0, 0, 0].item() == pytest.approx(0.0)


def test_no_transform_enabled_is_the_identity():
    aug = Augmentation(p_per_sample=0.0, mirror=False)
    x = torch.randn(3, 2, 16, 16)
    y = (torch.rand(3, 1, 16, 16) > 0.5).float()
    gen = torch.Generator().manual_seed(0)
    out_x, out_y = augment(x, y, aug, gen)
    assert torch.allclose(out_x, x, atol=1e-5)
    assert torch.equal(out_y, y)


def test_masks_stay_binary_and_move_with_the_image():
    aug = dataclasses.replace(
        MISCNN_AUGMENTATION,
        p_per_sample=1.0,
        brightness=None,
        elastic_alpha=(0.0, 200.0),
        elastic_sigma=(4.0, 6.0),
    )
    yy, xx = torch.meshgrid(torch.arange(48), torch.arange(48), indexing="ij")
    blob = (((yy - 20) ** 2 + (xx - 28) ** 2) < 120).float()[None, None].repeat(4, 1, 1, 1)
    gen = torch.Generator().manual_seed(3)
    image, mask = augment(blob.clone(), blob.clone(), aug, gen)
    assert set(mask.unique().tolist()) <= {0.0, 1.0}
    assert not torch.equal(mask, blob)  # something moved
    agree = ((image > 0.5) == (mask > 0.5)).float().mean().item()
    assert agree > 0.97


def test_same_generator_state_replays_the_same_augmentation():
    aug = dataclasses.replace(MISCNN_AUGMENTATION, p_per_sample=0.7, elastic_sigma=(3.0, 4.0))
    x, y = torch.randn(2, 3, 24, 24), (torch.rand(2, 1, 24, 24) > 0.5).float()
    gen = torch.Generator().manual_seed(5)
    state = gen.get_state()
    first = augment(x, y, aug, gen)
    gen.set_state(state)
    second = augment(x, y, aug, gen)
    assert torch.equal(first[0], second[0]) and torch.equal(first[1], second[1])


def test_draws_follow_the_probabilities_and_ranges():
    gen = torch.Generator().manual_seed(0)
    p = sample_params(MISCNN_AUGMENTATION, 20000, gen)
    fired = (p.scale != 1).float().mean().item()
    assert fired == pytest.approx(0.15, abs=0.01)
    assert p.flip_x.float().mean().item() == pytest.approx(0.5, abs=0.02)
    scaled = p.scale[p.scale != 1]
    assert scaled.min() >= 0.85 and scaled.max() <= 1.25
    assert p.angle.abs().max() <= math.radians(15) + 1e-6
    bright = p.brightness[p.brightness != 1]
    assert bright.min() >= 0.5 and bright.max() <= 2.0


def test_elastic_grid_is_the_affine_grid_plus_displacement_in_normalised_units_without_host_copies(
    monkeypatch,
):
    """grid = affine grid + (2u_x / W, 2u_y / H), built with no torch.tensor of host data (on CUDA
    that is a blocking copy, i.e. a host synchronisation in every step)."""
    from focalbench.engine.augment import elastic_displacement, sampling_grid

    aug = dataclasses.replace(MISCNN_AUGMENTATION, p_per_sample=1.0)
    params = _params(2, alpha=torch.tensor([300.0, 900.0]), sigma=torch.tensor([9.0, 12.0]))
    height, width = 24, 40
    g = torch.Generator().manual_seed(5)
    disp = elastic_displacement(params, height, width, aug.elastic_sigma[1], g)
    expected = F.affine_grid(
        affine_theta(params, height, width), [2, 1, height, width], align_corners=False
    )
    expected[..., 0] += disp[:, 0] * 2 / width
    expected[..., 1] += disp[:, 1] * 2 / height

    def no_host_tensor(*args, **kwargs):
        raise AssertionError("torch.tensor inside the augmentation step")

    monkeypatch.setattr(torch, "tensor", no_host_tensor)
    grid = sampling_grid(aug, params, height, width, torch.Generator().manual_seed(5))
    torch.testing.assert_close(grid, expected)
