"""Input normalisation and batched augmentation on the device.

Every random number comes from one ``torch.Generator`` on the run's device, so a resumed run
draws the same augmentations as an uninterrupted one. A batch is warped by a single sampling
grid (affine ∘ mirror + elastic displacement) through ``grid_sample``: images bilinear, masks
nearest, both with zero padding (batchgenerators pads with 0 too, i.e. the mean after z-score).
Brightness multiplies the normalised intensities afterwards, as MIScnn applies its augmentation
to normalised samples.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from focalbench.protocols import Augmentation, Normalization


def normalize(
    images: torch.Tensor,
    mode: Normalization,
    dataset_stats: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> torch.Tensor:
    """uint8 ``(B, C, H, W)`` → float32.

    ``zscore``: x̂ = (x − μ) / σ with μ, σ over each image's channel (σ population; a constant
    channel maps to 0); ``zscore_image``: μ, σ over each image's channels together (MIScnn);
    ``zscore_dataset``: μ, σ per channel from ``dataset_stats`` (:func:`channel_stats` of the
    training split). ``unit``: x̂ = x / 255.
    """
    x = images.float()
    if mode is Normalization.unit:
        return x / 255.0
    if mode is Normalization.zscore_dataset:
        if dataset_stats is None:
            raise ValueError("zscore_dataset needs the training split's channel_stats")
        mean, std = dataset_stats
    else:
        dims = (2, 3) if mode is Normalization.zscore else (1, 2, 3)
        mean = x.mean(dim=dims, keepdim=True)
        std = x.std(dim=dims, keepdim=True, correction=0)
    return (x - mean) / std.clamp_min(1e-6)


def channel_stats(images: torch.Tensor, chunk: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel μ and population σ over every pixel of uint8 ``(N, C, H, W)``, as float32
    ``(1, C, 1, 1)``: σ² = E[x²] − μ², accumulated in float64 a chunk of images at a time (a
    float copy of a whole ISIC split would be 2 GB)."""
    total = torch.zeros(images.shape[1], dtype=torch.float64, device=images.device)
    squares = torch.zeros_like(total)
    for part in images.split(chunk):
        x = part.double()
        total += x.sum(dim=(0, 2, 3))
        squares += x.square().sum(dim=(0, 2, 3))
    n = images.shape[0] * images.shape[2] * images.shape[3]
    mean = total / n
    std = (squares / n - mean.square()).clamp_min(0).sqrt()
    return mean.float().view(1, -1, 1, 1), std.float().view(1, -1, 1, 1)


@dataclass
class AugmentParams:
    """Per-sample draws, all ``(B,)`` tensors; identity values where a transform did not fire."""

    flip_x: torch.Tensor  # bool
    flip_y: torch.Tensor  # bool
    scale: torch.Tensor
    angle: torch.Tensor  # radians
    alpha: torch.Tensor  # elastic amplitude (px²-scaled, batchgenerators convention)
    sigma: torch.Tensor  # elastic smoothness (px)
    brightness: torch.Tensor


def sample_params(aug: Augmentation, batch: int, generator: torch.Generator) -> AugmentParams:
    """Draw one sample's worth of every transform for each of ``batch`` samples.

    The draw order is fixed (flips, scale, angle, alpha, sigma, brightness; a firing coin and a
    value each), whether or not a transform is enabled, so changing one range does not reshuffle
    the others' random streams.
    """
    device = generator.device

    def uniform(low: float, high: float) -> torch.Tensor:
        return low + (high - low) * torch.rand(batch, generator=generator, device=device)

    def fires() -> torch.Tensor:
        return torch.rand(batch, generator=generator, device=device) < aug.p_per_sample

    ones = torch.ones(batch, device=device)
    flips = torch.rand(2, batch, generator=generator, device=device) < 0.5
    if not aug.mirror:
        flips = torch.zeros_like(flips)
    scale_on, scale = fires(), uniform(*(aug.scale or (1.0, 1.0)))
    angle_on, angle = fires(), uniform(-1.0, 1.0) * math.radians(aug.rotation_deg or 0.0)
    elastic_on, alpha = fires(), uniform(*(aug.elastic_alpha or (0.0, 0.0)))
    sigma = uniform(*aug.elastic_sigma)
    bright_on, bright = fires(), uniform(*(aug.brightness or (1.0, 1.0)))
    return AugmentParams(
        flip_x=flips[0],
        flip_y=flips[1],
        scale=torch.where(scale_on, scale, ones),
        angle=torch.where(angle_on, angle, 0.0 * ones),
        alpha=torch.where(elastic_on, alpha, 0.0 * ones),
        sigma=sigma,
        brightness=torch.where(bright_on, bright, ones),
    )


def affine_theta(params: AugmentParams, height: int, width: int) -> torch.Tensor:
    """``(B, 2, 3)`` matrices for ``F.affine_grid`` (``align_corners=False``).

    In centred pixel coordinates the source point of output pixel p is s · R(θ) · M p, with M the
    mirror (diag(±1, ±1)); in grid_sample's normalised coordinates (x_n = 2x / W) that is
    D (s R M) D⁻¹ with D = diag(2/W, 2/H), so rotations stay rigid on non-square images.
    """
    cos, sin = torch.cos(params.angle), torch.sin(params.angle)
    mx = 1.0 - 2.0 * params.flip_x.float()
    my = 1.0 - 2.0 * params.flip_y.float()
    s = params.scale
    aspect = width / height  # D_xx / D_yy = H / W, so off-diagonals pick up W/H or H/W
    theta = torch.zeros(params.scale.shape[0], 2, 3, device=s.device)
    theta[:, 0, 0] = s * cos * mx
    theta[:, 0, 1] = -s * sin * my / aspect
    theta[:, 1, 0] = s * sin * mx * aspect
    theta[:, 1, 1] = s * cos * my
    return theta


def gaussian_kernels(sigma: torch.Tensor, radius: int) -> torch.Tensor:
    """``(B, 2·radius + 1)`` normalised 1-D Gaussians, one per sigma (truncated like scipy)."""
    t = torch.arange(-radius, radius + 1, device=sigma.device, dtype=torch.float32)
    k = torch.exp(-0.5 * (t[None, :] / sigma[:, None]) ** 2)
    return k / k.sum(dim=1, keepdim=True)


def gaussian_smooth(x: torch.Tensor, sigma: torch.Tensor, radius: int) -> torch.Tensor:
    """Smooth each sample of ``x`` ``(B, K, H, W)`` with its own isotropic Gaussian σ_b.

    Equals ``scipy.ndimage.gaussian_filter(x[b, k], σ_b, mode="constant", truncate=radius/σ)``:
    a grouped, separable convolution with zero padding.
    """
    batch, channels, height, width = x.shape
    kernels = gaussian_kernels(sigma, radius).repeat_interleave(channels, dim=0)  # (B·K, 2r+1)
    y = x.reshape(1, batch * channels, height, width)
    y = F.conv2d(y, kernels[:, None, None, :], padding=(0, radius), groups=batch * channels)
    y = F.conv2d(y, kernels[:, None, :, None], padding=(radius, 0), groups=batch * channels)
    return y.reshape(batch, channels, height, width)


def elastic_displacement(
    params: AugmentParams, height: int, width: int, max_sigma: float, generator: torch.Generator
) -> torch.Tensor:
    """Pixel displacement ``(B, 2, H, W)`` (x then y): u = α · (G_σ * U(−1, 1)).

    batchgenerators' ``elastic_deform_coordinates``: uniform noise smoothed by a Gaussian filter
    with zero ("constant") boundary, scaled by α. The kernel radius is fixed at 4·max σ (scipy's
    truncation) so the shapes never depend on the draws.
    """
    batch = params.alpha.shape[0]
    noise = (
        torch.rand(batch, 2, height, width, generator=generator, device=generator.device) * 2 - 1
    )
    smooth = gaussian_smooth(noise, params.sigma, math.ceil(4.0 * max_sigma))
    return smooth * params.alpha[:, None, None, None]


def sampling_grid(
    aug: Augmentation, params: AugmentParams, height: int, width: int, generator: torch.Generator
) -> torch.Tensor:
    """The one grid ``(B, H, W, 2)`` of normalised source coordinates for ``grid_sample``."""
    theta = affine_theta(params, height, width)
    grid = F.affine_grid(theta, [theta.shape[0], 1, height, width], align_corners=False)
    if aug.elastic_alpha is not None:
        disp = elastic_displacement(params, height, width, aug.elastic_sigma[1], generator)
        # Pixels → normalised units with Python scalars: a torch.tensor([...], device=cuda) here
        # would be a blocking host→device copy, a host synchronisation every step.
        grid = grid + torch.stack((disp[:, 0] * (2.0 / width), disp[:, 1] * (2.0 / height)), dim=-1)
    return grid


def augment(
    images: torch.Tensor, masks: torch.Tensor, aug: Augmentation, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Warp a normalised batch and its masks together, then scale brightness.

    ``images`` float ``(B, C, H, W)``; ``masks`` ``(B, 1, H, W)`` in {0, 1} (any dtype).
    Returns float images and float masks still in {0, 1} (nearest sampling never blends labels).
    """
    batch, _, height, width = images.shape
    params = sample_params(aug, batch, generator)
    grid = sampling_grid(aug, params, height, width, generator)
    out = F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    warped = F.grid_sample(
        masks.float(), grid, mode="nearest", padding_mode="zeros", align_corners=False
    )
    return out * params.brightness[:, None, None, None], warped
