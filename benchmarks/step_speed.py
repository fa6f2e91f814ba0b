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
    augmentation through one ``grid_sample``, channels_last + fused Adam on CUDA, one host read
    per epoch; in fp32 and (CUDA) bf16 autocast. On CUDA also ``+graph``: the whole step
    replayed from one CUDA graph (``loop.StepGraphs``); with ``--compile`` also ``+compile``:
    the network under ``torch.compile`` (inductor) and, on CUDA, the captured step.

Each variant runs ``--warmup`` steps (and its capture or compilation), then ``--steps`` timed
steps, ``--repeats`` times interleaved (a, b, a, b, …); the table shows the best repeat. With
``--peak-tflops`` it also prints the arithmetic floor: 3 × forward FLOPs (forward + backward)
÷ the peak. Peak memory (CUDA) is each variant's own: its network, optimiser state, activations
and graph pool, above what was allocated before it was built. ``--quick``: 32×32, 2 steps.

    OMP_NUM_THREADS=2 python benchmarks/step_speed.py --steps 5 --repeats 2
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import time
from dataclasses import dataclass
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
from focalbench.losses import build_loss
from focalbench.models import build_model, count_gflops
from focalbench.protocols import Augmentation, get_protocol
from focalbench.run_state import RunFolder


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

    def __init__(
        self, images: np.ndarray, masks: np.ndarray, aug: Augmentation, seed: int = 0
    ) -> None:
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
        coords = np.stack(
            np.meshgrid(np.arange(h) - (h - 1) / 2, np.arange(w) - (w - 1) / 2, indexing="ij")
        )
        moved = False
        if rng.random() < aug.p_per_sample:  # elastic
            alpha, sigma = rng.uniform(*aug.elastic_alpha), rng.uniform(*aug.elastic_sigma)
            for axis in range(2):
                coords[axis] += (
                    ndi.gaussian_filter(rng.uniform(-1, 1, (h, w)), sigma, mode="constant") * alpha
                )
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
        return torch.from_numpy(np.ascontiguousarray(x)), torch.from_numpy(np.ascontiguousarray(y))[
            None
        ]


def reference_steps(model, optimizer, loss_fn, images, masks, aug, device, steps: int) -> float:
    """Seconds for ``steps`` reference steps."""
    loader = torch.utils.data.DataLoader(
        ReferenceDataset(images[:steps], masks[:steps], aug),
        batch_size=1,
        shuffle=True,
        num_workers=0,
    )
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


@dataclass(frozen=True)
class Variant:
    name: str
    precision: str | None = None  # None: the reference loop (float32, what users write)
    compile: bool = False  # torch.compile the network (inductor)
    graphs: bool = False  # replay the whole step from a CUDA graph


REFERENCE = Variant("reference")


def variants(device: torch.device, compile: bool) -> list[Variant]:
    """The reference loop, then the engine in each precision, eager / captured / compiled."""
    on_cuda = device.type == "cuda"
    out = [REFERENCE]
    for precision in ("fp32", "bf16") if on_cuda else ("fp32",):
        out.append(Variant(f"engine {precision}", precision))
        if on_cuda:
            out.append(Variant(f"engine {precision} +graph", precision, graphs=True))
        if compile:
            out.append(
                Variant(f"engine {precision} +compile", precision, compile=True, graphs=on_cuda)
            )
    return out


def engine_run(model, loss_fn, images, masks, device, variant: Variant) -> loop.Run:
    """A :class:`loop.Run` over in-memory arrays with paper 000's recipe at their size."""
    recipe = dataclasses.replace(get_protocol("paper000"), size=images.shape[-2:])
    optimizer = loop.build_optimizer(model, recipe, device)
    generator = torch.Generator(device=device)
    generator.manual_seed(0)
    split = DeviceSplit(
        images=torch.from_numpy(images).to(device),
        masks=torch.from_numpy(masks)[:, None].to(device),
        fov=None,
        ids=[str(i) for i in range(len(images))],
    )
    autocast = torch.bfloat16 if device.type == "cuda" and variant.precision == "bf16" else None
    run = loop.Run(
        config=RunConfig(dataset="synthetic", model="unet", loss="dice"),
        recipe=recipe,
        device=device,
        folder=RunFolder(Path("unused")),
        train=split,
        val=split,
        test=split,
        model=model,
        forward=torch.compile(model) if variant.compile else model,
        loss=loss_fn,
        optimizer=optimizer,
        plateau=None,
        per_step=None,
        scaler=torch.amp.GradScaler(device.type, enabled=False),
        generator=generator,
        autocast_dtype=autocast,
        model_params={},
        size=tuple(images.shape[-2:]),
        input_stats=None,
    )
    if variant.graphs:
        run.graphs = loop.StepGraphs(run, loop.capture_blocker(run))
    return run


def engine_steps(run: loop.Run, split: DeviceSplit, steps: int) -> float:
    """Seconds for one epoch over the first ``steps`` images of ``split`` (batch 1; the engine's one
    host read included). Slices of one split share its storage, so a captured gather stays valid."""
    run.train = dataclasses.replace(
        split, images=split.images[:steps], masks=split.masks[:steps], ids=split.ids[:steps]
    )
    _sync(run.device)
    start = time.perf_counter()
    loop.train_epoch(run, Quiet()).item()  # the engine's one host read per epoch
    _sync(run.device)
    return time.perf_counter() - start


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _allocated(device: torch.device) -> int:
    return torch.cuda.memory_allocated(device) if device.type == "cuda" else 0


# ----------------------------------------------------------------------------- table


def measure(
    size: int,
    device: torch.device,
    chosen: list[Variant],
    steps: int,
    warmup: int,
    repeats: int,
    peak_tflops: dict[str, float] | None = None,
) -> list[dict]:
    """One row per variant at ``size``×``size``, batch 1: steps/s (best of ``repeats``), the ratio
    to the reference, peak memory, the step mode, and the floor at ``peak_tflops[precision]``."""
    aug = get_protocol("paper000").augmentation
    loss_fn = build_loss("dice").to(device)
    images, masks = synthetic(max(steps, warmup), size)
    workers: dict[Variant, tuple] = {}
    peak_mib: dict[Variant, float | None] = {}
    for variant in chosen:  # build, warm up (capture, compile) and measure memory one at a time
        base = _allocated(device)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        torch.manual_seed(0)
        model = build_model("unet", in_channels=3).to(device)
        if variant is REFERENCE:
            optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
            workers[variant] = (model, optimizer)
            reference_steps(model, optimizer, loss_fn, images, masks, aug, device, warmup)
        else:
            if device.type == "cuda":
                model = model.to(memory_format=torch.channels_last)
            run = engine_run(model, loss_fn, images, masks, device, variant)
            workers[variant] = (run, run.train)
            engine_steps(run, run.train, warmup)
        peak_mib[variant] = (
            (torch.cuda.max_memory_allocated(device) - base) / 2**20
            if device.type == "cuda"
            else None
        )
    best = {variant: math.inf for variant in chosen}
    for _ in range(repeats):
        for variant in chosen:
            if variant is REFERENCE:
                model, optimizer = workers[variant]
                seconds = reference_steps(
                    model, optimizer, loss_fn, images, masks, aug, device, steps
                )
            else:
                seconds = engine_steps(*workers[variant], steps)
            best[variant] = min(best[variant], seconds)
    gflops = count_gflops(workers[REFERENCE][0], (size, size))
    rows = []
    for variant in chosen:
        run = None if variant is REFERENCE else workers[variant][0]
        precision = variant.precision or "fp32"
        row = {
            "size": f"{size}x{size}",
            "batch": 1,
            "variant": variant.name,
            "steps/s": steps / best[variant],
            "ratio vs reference": best[REFERENCE] / best[variant],
            "peak MiB": peak_mib[variant],
            "step": "reference loop"
            if run is None
            else (run.graphs.mode if run.graphs else "eager"),
        }
        if peak_tflops and precision in peak_tflops:
            row["floor steps/s"] = peak_tflops[precision] * 1e3 / (3 * gflops)
        rows.append(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 512])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--compile", action="store_true", help="add the torch.compile variants")
    parser.add_argument(
        "--peak-tflops",
        type=float,
        default=None,
        help="dense peak of the engine's precision for the floor (H100 SXM bf16: 989)",
    )
    parser.add_argument(
        "--quick", action="store_true", help="32x32, 2 steps, 1 repeat: checks the code runs"
    )
    args = parser.parse_args()
    if args.quick:
        args.sizes, args.steps, args.warmup, args.repeats = [32], 2, 1, 1
    device = resolve_device(args.device)
    chosen = variants(device, args.compile)
    peaks = (
        None
        if args.peak_tflops is None
        else {v.precision or "fp32": args.peak_tflops for v in chosen}
    )
    rows = [
        row
        for size in args.sizes
        for row in measure(size, device, chosen, args.steps, args.warmup, args.repeats, peaks)
    ]
    print(
        f"device: {describe(device)}; torch {torch.__version__}; "
        f"threads {torch.get_num_threads()}; {args.steps} timed steps × best of {args.repeats}"
    )
    print(tabulate(rows, headers="keys", tablefmt="github", floatfmt=".3f", missingval="—"))


if __name__ == "__main__":
    main()
