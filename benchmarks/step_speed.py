"""Training-step speed: a plain reference loop vs the focalbench engine, in the same process.

The network is paper 000's U-Net (``build_model("unet")``: width 32, depth 4, 7.77 M parameters)
with the Dice loss and paper 000's augmentation (MIScnn defaults), batch size 1, at 256×256 and
512×512, on synthetic uint8 images with blob masks.

(a) reference — written the way users commonly write it: a ``Dataset`` over NumPy arrays whose
    ``__getitem__`` z-scores and augments one sample on the CPU with SciPy (batchgenerators'
    recipe: cubic ``map_coordinates`` for the image, order 0 for the mask, elastic field from
    ``gaussian_filter`` of uniform noise, mirror, brightness), a ``DataLoader`` (shuffle,
    ``num_workers=0``), float32 eager forward/backward, ``torch.optim.Adam`` with its defaults,
    and ``loss.item()`` logged every step.
(b) engine — ``focalbench.engine.loop.train_epoch``: uint8 split on the device, batched device
    augmentation through one ``grid_sample``, bf16 autocast + channels_last + fused Adam on CUDA,
    one host read per epoch. With ``--compile`` on CUDA also (c) the same under ``torch.compile``
    (CUDA graphs).

Each variant runs ``--warmup`` steps, then ``--steps`` timed steps, ``--repeats`` times
interleaved (a, b, a, b, …); the table shows the best repeat. On CUDA it also prints the
arithmetic floor: 3 × forward FLOPs (forward + backward) ÷ ``--peak-tflops``.

    OMP_NUM_THREADS=2 python benchmarks/step_speed.py --steps 5 --repeats 2
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import time
from pathlib import Path

import numpy as np
import scipy.ndimage as ndi
import torch
from tabulate import tabulate

from focalbench.config import RunConfig
from focalbench.engine import loop
from focalbench.engine.data import DeviceSplit
from focalbench.engine.device import describe, resolve_device
from focalbench.engine.progress import Quiet
from focalbench.run_state import RunFolder
from focalbench.losses import build_loss
from focalbench.models import build_model, count_gflops
from focalbench.protocols import Augmentation, get_protocol


def synthetic(n: int, size: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` RGB uint8 images of noisy discs and their {0, 1} masks."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    masks = np.zeros((n, size, size), np.uint8)
    for i in range(n):
        for _ in range(6):
            cy, cx, r = rng.uniform(0, size, 2).tolist() + [rng.uniform(size / 20, size / 8)]
            masks[i] |= ((yy - cy) ** 2 + (xx - cx) ** 2 < r * r).astype(np.uint8)
    noise = rng.normal(0, 25, (n, 3, size, size))
    images = np.clip(60 + 120 * masks[:, None] + noise, 0, 255).astype(np.uint8)
    return images, masks


# ----------------------------------------------------------------------------- (a) reference


class ReferenceDataset(torch.utils.data.Dataset):
    """Per-sample CPU augmentation, batchgenerators-style (what a typical training script does)."""

    def __init__(self, images: np.ndarray, masks: np.ndarray, aug: Augmentation, seed: int = 0) -> None:
        self.images, self.masks, self.aug = images, masks, aug
        self.rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        aug, rng = self.aug, self.rng
        x = self.images[i].astype(np.float32)
        x = (x - x.mean(axis=(1, 2), keepdims=True)) / (x.std(axis=(1, 2), keepdims=True) + 1e-6)
        y = self.masks[i].astype(np.float32)
        _, h, w = x.shape
        coords = np.stack(np.meshgrid(np.arange(h) - (h - 1) / 2, np.arange(w) - (w - 1) / 2, indexing="ij"))
        moved = False
        if rng.random() < aug.p_per_sample:  # elastic
            alpha, sigma = rng.uniform(*aug.elastic_alpha), rng.uniform(*aug.elastic_sigma)
            for axis in range(2):
                coords[axis] += ndi.gaussian_filter(rng.uniform(-1, 1, (h, w)), sigma, mode="constant") * alpha
            moved = True
        matrix = np.eye(2)
        if rng.random() < aug.p_per_sample:  # rotation
            a = math.radians(rng.uniform(-aug.rotation_deg, aug.rotation_deg))
            matrix = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]]) @ matrix
            moved = True
        if rng.random() < aug.p_per_sample:  # scaling
            matrix = matrix * rng.uniform(*aug.scale)
            moved = True
        if moved:
            coords = np.einsum("ij,jhw->ihw", matrix, coords)
            coords[0] += (h - 1) / 2
            coords[1] += (w - 1) / 2
            x = np.stack([ndi.map_coordinates(c, coords, order=3, mode="constant") for c in x])
            y = ndi.map_coordinates(y, coords, order=0, mode="constant")
        for axis in (1, 2):  # mirroring
            if rng.random() < 0.5:
                x, y = np.flip(x, axis), np.flip(y, axis - 1)
        if rng.random() < aug.p_per_sample:
            x = x * rng.uniform(*aug.brightness)
        return torch.from_numpy(np.ascontiguousarray(x)), torch.from_numpy(np.ascontiguousarray(y))[None]


def reference_steps(model, optimizer, loss_fn, images, masks, aug, device, steps: int) -> float:
    """Seconds for ``steps`` reference steps."""
    loader = torch.utils.data.DataLoader(ReferenceDataset(images[:steps], masks[:steps], aug),
                                         batch_size=1, shuffle=True, num_workers=0)
    model.train()
    _sync(device)
    start = time.perf_counter()
    for x, y in loader:
        x, y = x.to(device), y.to(device)
        loss = loss_fn(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        loss.item()  # the usual per-step logging
    _sync(device)
    return time.perf_counter() - start


# ----------------------------------------------------------------------------- (b) engine


def engine_run(model, loss_fn, images, masks, device, compile: bool) -> loop.Run:
    recipe = dataclasses.replace(get_protocol("paper000"), size=images.shape[-2:])
    optimizer = loop.build_optimizer(model, recipe, device)
    generator = torch.Generator(device=device)
    generator.manual_seed(0)
    split = DeviceSplit(images=torch.from_numpy(images).to(device), masks=torch.from_numpy(masks)[:, None].to(device),
                        fov=None, ids=[str(i) for i in range(len(images))])
    on_cuda = device.type == "cuda"
    return loop.Run(
        config=RunConfig(dataset="synthetic", model="unet", loss="dice"), recipe=recipe, device=device,
        folder=RunFolder(Path("unused")), train=split, val=split, test=split, model=model,
        forward=torch.compile(model, mode="reduce-overhead") if compile else model,
        loss=loss_fn, optimizer=optimizer, plateau=None, per_step=None,
        scaler=torch.amp.GradScaler(device.type, enabled=False), generator=generator,
        autocast_dtype=torch.bfloat16 if on_cuda else None, model_params={}, size=tuple(images.shape[-2:]),
    )


def engine_steps(run: loop.Run, steps: int) -> float:
    run.train = dataclasses.replace(run.train, images=run.train.images[:steps], masks=run.train.masks[:steps],
                                    ids=run.train.ids[:steps])
    _sync(run.device)
    start = time.perf_counter()
    loop.train_epoch(run, Quiet()).item()  # the engine's one host read per epoch
    _sync(run.device)
    return time.perf_counter() - start


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# ----------------------------------------------------------------------------- table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 512])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--compile", action="store_true", help="add the torch.compile variant (CUDA)")
    parser.add_argument("--peak-tflops", type=float, default=None, help="dense bf16 peak for the floor (H100 SXM: 989)")
    args = parser.parse_args()
    device = resolve_device(args.device)
    aug = get_protocol("paper000").augmentation
    loss_fn = build_loss("dice").to(device)
    rows = []
    for size in args.sizes:
        images, masks = synthetic(max(args.steps, args.warmup), size)
        variants = {"reference": None, "engine": False}
        if args.compile:
            variants["engine+compile"] = True
        best = {name: math.inf for name in variants}
        models, runs, optimizers = {}, {}, {}
        for name, compiled in variants.items():
            torch.manual_seed(0)
            models[name] = build_model("unet", in_channels=3).to(device)
            if compiled is None:
                optimizers[name] = torch.optim.Adam(models[name].parameters(), lr=1e-3)
            else:
                if device.type == "cuda":
                    models[name] = models[name].to(memory_format=torch.channels_last)
                runs[name] = engine_run(models[name], loss_fn, images, masks, device, compiled)
        for name in variants:  # warm-up (and compilation)
            if name == "reference":
                reference_steps(models[name], optimizers[name], loss_fn, images, masks, aug, device, args.warmup)
            else:
                engine_steps(runs[name], args.warmup)
        for _ in range(args.repeats):
            for name in variants:
                if name == "reference":
                    seconds = reference_steps(models[name], optimizers[name], loss_fn, images, masks, aug, device, args.steps)
                else:
                    seconds = engine_steps(runs[name], args.steps)
                best[name] = min(best[name], seconds)
        gflops = count_gflops(models["reference"], (size, size))
        for name in variants:
            steps_per_s = args.steps / best[name]
            row = {"size": f"{size}x{size}", "batch": 1, "variant": name, "steps/s": steps_per_s,
                   "images/s": steps_per_s, "ratio vs reference": best["reference"] / best[name]}
            if args.peak_tflops:
                row["floor steps/s"] = args.peak_tflops * 1e3 / (3 * gflops)
            rows.append(row)
    print(f"device: {describe(device)}; torch {torch.__version__}; threads {torch.get_num_threads()}; "
          f"{args.steps} timed steps × best of {args.repeats}")
    print(tabulate(rows, headers="keys", tablefmt="github", floatfmt=".3f"))


if __name__ == "__main__":
    main()
