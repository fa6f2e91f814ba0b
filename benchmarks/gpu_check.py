"""The GPU check: one command that shows whether focalbench's GPU path works and how fast it is.

Six parts, each one Markdown table, printed as it finishes and written to ``--out DIR``
(``gpu_check.md``, and the rows as ``gpu_check.json``):

1. environment — device, driver, torch/CUDA/cuDNN, the precision the engine uses, and the
   device's measured matrix peaks (bf16, and fp32 as cuDNN runs it: TF32 where allowed);
2. correctness — one short real training on the device (fp32, bf16, bf16 + captured step) and
   the same run on the CPU in fp32: the loss must fall and the test DSC must agree with the CPU
   run's within ``DSC_TOLERANCE``;
3. distance transform — the DPT map from the torch EDT on the device vs SciPy's on the CPU,
   on the dataset's real masks;
4. step speed — ``step_speed.measure``: paper 000's U-Net at 256² and 512², batch 1, the reference
   loop vs the engine in fp32/bf16, eager / whole step in a CUDA graph / +torch.compile (bf16,
   256²): steps/s, ratio, peak memory, the arithmetic floor at the measured peak;
5. packing — real ``ablate`` cells (paper 000's U-Net and recipe, a few epochs, the sample at
   256² unless ``--dataset``) with 1, 2, 4, 8 cells sharing the GPU: cells per hour, and the
   steady-state training throughput from the cells' own epoch times → the best ``--jobs-per-gpu``;
6. projection — the wall time of paper 000's Table 2 (27 cells) on this device from the measured
   throughput, against the goal of one hour.

``--device cpu --quick`` runs every part on tiny sizes (the test suite runs it). On a GPU
machine run ``bash benchmarks/gpu_check.sh`` (benchmarks/RESULTS.md says what to carry).
A part that would overrun ``--budget-s`` is skipped and says so.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# Heavy imports (torch, the engine) happen inside the parts: ablate's spawned workers re-import
# this script as their __main__, and should not pay for them twice.

DSC_TOLERANCE = 0.05  # |test DSC on the device − on the CPU|: two runs whose batch order and
# augmentation draws differ (a CUDA generator's stream is not the CPU one's) on ~10 test images
# differ by about this much between seeds on the CPU alone.
EDT_TOLERANCE = 1e-5  # both EDTs are exact; float32 rounding of the normalised map only
GOAL_SECONDS = 3600.0  # paper 000's Table 2 in under an hour

# Paper 000 Table 2: 9 losses × 3 datasets, batch 1, at each dataset's paper size
# (datasets.toml: train / val images of the paper's split).
TABLE2_DATASETS = {
    "drive": {"size": (512, 512), "train": 16, "val": 4},
    "dsb2018": {"size": (256, 256), "train": 428, "val": 108},
    "cvc-clinicdb": {"size": (288, 384), "train": 392, "val": 98},
}
TABLE2_LOSSES = 9
EVAL_COST = 1 / 3  # a validation image costs one forward ≈ 1/3 of a training step


class Budget:
    """Seconds left of ``--budget-s``; a part asks before it starts."""

    def __init__(self, seconds: float) -> None:
        self.end = time.perf_counter() + seconds

    def left(self) -> float:
        return self.end - time.perf_counter()


def markdown(rows: list[dict], title: str) -> str:
    from tabulate import tabulate

    body = (
        tabulate(rows, headers="keys", tablefmt="github", floatfmt=".4g", missingval="—")
        if rows
        else "(no rows)"
    )
    return f"### {title}\n\n{body}\n"


# ----------------------------------------------------------------------------- 1. environment


def matmul_tflops(device, dtype, n: int, repeats: int) -> float:
    """TFLOP/s of an n×n×n product (2n³ FLOPs), best of ``repeats`` after one warm-up."""
    import torch

    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    best = math.inf
    for i in range(repeats + 1):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        a @ b
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        if i:
            best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best / 1e12


def driver_version() -> str:
    if shutil.which("nvidia-smi") is None:
        return "—"
    out = subprocess.run(
        ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
        capture_output=True,
        text=True,
        check=False,
    )
    return out.stdout.strip().splitlines()[0] if out.returncode == 0 and out.stdout.strip() else "—"


def environment(device, quick: bool) -> tuple[list[dict], dict[str, float]]:
    import torch

    from focalbench.engine.device import describe
    from focalbench.protocols import get_protocol, list_protocols

    on_cuda = device.type == "cuda"
    n = 256 if quick else 8192
    tf32 = on_cuda and torch.backends.cudnn.allow_tf32
    matmul_tf32 = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = tf32  # the fp32 floor at the rate cuDNN's convs run at
    try:
        peaks = {"fp32": matmul_tflops(device, torch.float32, n, 3)}
    finally:
        torch.backends.cuda.matmul.allow_tf32 = matmul_tf32
    if on_cuda:
        peaks["bf16"] = matmul_tflops(device, torch.bfloat16, n, 10)
    rows = [
        {"item": "device", "value": describe(device)},
        {
            "item": "host",
            "value": f"{platform.machine()}, {os.cpu_count()} cores, "
            f"Python {platform.python_version()}",
        },
        {"item": "driver", "value": driver_version()},
        {"item": "torch", "value": torch.__version__},
        {"item": "CUDA (torch built with)", "value": torch.version.cuda or "—"},
        {"item": "cuDNN", "value": torch.backends.cudnn.version() if on_cuda else "—"},
    ]
    if on_cuda:
        props = torch.cuda.get_device_properties(device)
        rows += [
            {
                "item": "memory",
                "value": f"{props.total_memory / 2**30:.1f} GiB, "
                f"{props.multi_processor_count} SMs, "
                f"compute capability {props.major}.{props.minor}",
            },
            {"item": "bf16 supported", "value": torch.cuda.is_bf16_supported()},
        ]
    rows += [
        {
            "item": "fp32 convolutions",
            "value": "TF32 (cudnn.allow_tf32)" if tf32 else "IEEE float32",
        },
        {
            "item": "fp32 matmuls",
            "value": "torch.get_float32_matmul_precision() = "
            f"{torch.get_float32_matmul_precision()}",
        },
    ]
    for name in list_protocols():
        precision = get_protocol(name).precision.value
        used = (
            f"{precision} autocast for the network, losses in float32"
            if on_cuda and precision != "fp32"
            else "fp32"
        )
        rows.append({"item": f"precision used: {name}", "value": used})
    for precision, tflops in peaks.items():
        kind = " (TF32)" if precision == "fp32" and tf32 else ""
        rows.append(
            {
                "item": f"measured peak {precision}{kind} (matmul {n}³)",
                "value": f"{tflops:.2f} TFLOP/s",
            }
        )
    return rows, peaks


# ----------------------------------------------------------------------------- 4. step speed


def step_speed(
    device, quick: bool, compile_sizes: list[int], peaks: dict[str, float]
) -> list[dict]:
    import step_speed as bench

    sizes = [32] if quick else [256, 512]
    steps, warmup, repeats = (2, 1, 1) if quick else (50, 5, 3)
    rows = []
    for size in sizes:
        # torch.compile in bf16 only (the paper protocols' precision): each compile costs ~1 min
        chosen = [
            v
            for v in bench.variants(device, compile=size in compile_sizes)
            if not (v.compile and v.precision == "fp32")
        ]
        rows += bench.measure(size, device, chosen, steps, warmup, repeats, peaks)
    return rows


# ----------------------------------------------------------------------------- 5. packing


def _history(run_dir: Path) -> list[dict]:
    with open(run_dir / "history.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def packing(device, quick: bool, dataset: str, data_dir: str | None, budget: Budget) -> list[dict]:
    """Cells per hour and steady-state training images/s with k cells sharing the device."""
    from focalbench import datasets
    from focalbench.grid import ablate
    from focalbench.store import read_json

    on_cuda = device.type == "cuda"
    size = 32 if quick else 256
    epochs = 1 if quick else 20  # enough for 8 cells' epochs to overlap despite staggered starts
    protocol = "smoke" if quick else "paper000"
    datasets.load(
        dataset, size=(size, size), data_dir=data_dir
    )  # resize cache, before workers race
    rows = []
    for k in (1, 2) if quick else (1, 2, 4, 8):
        if budget.left() < (20 if quick else 60):
            rows.append({"cells sharing": k, "note": "skipped: out of time"})
            continue
        results = tempfile.mkdtemp(prefix=f"gpu-check-pack{k}-")
        where = (
            {"gpus": str(device.index or 0), "jobs_per_gpu": k}
            if on_cuda
            else {"device": "cpu", "jobs": k}
        )
        start = time.perf_counter()
        grid = ablate(
            dataset,
            models="unet",
            losses="dice",
            seeds=list(range(k)),
            protocol=protocol,
            epochs=epochs,
            params=[f"size={size}x{size}"],
            results=results,
            progress=False,
            data_dir=data_dir,
            **where,
        )
        wall = time.perf_counter() - start
        failures = grid.failures()
        steady = 0.0  # Σ over cells of train images / median epoch seconds after the first epoch
        # (batch 1 in paper 000's recipe: images/s = optimiser steps/s)
        for cell in grid.cells:
            run_dir = Path(results) / "runs" / cell.config.key
            history = _history(run_dir)
            n_train = read_json(run_dir / "config.json")["resolved"]["n_images"]["train"]
            seconds = [float(row["seconds"]) for row in history[1:]] or [
                float(history[0]["seconds"])
            ]
            steady += n_train / statistics.median(seconds)
        rows.append(
            {
                "cells sharing": k,
                "epochs": epochs,
                "size": f"{size}x{size}",
                "wall s": wall,
                "cells/hour": 3600 * k / wall,
                "train images/s, all cells": steady,
                "failed": len(failures),
                "note": failures[0]["error"] if failures else "",
            }
        )
        shutil.rmtree(results, ignore_errors=True)
    measured = [r for r in rows if "train images/s, all cells" in r and not r["failed"]]
    if measured:
        best = max(measured, key=lambda r: r["train images/s, all cells"])
        for row in rows:
            row["best"] = "◀ best --jobs-per-gpu" if row is best else ""
    return rows


# ----------------------------------------------------------------------------- 2. correctness


def _train_once(config, device_name: str, graphs: bool, results: str, data_dir: str | None) -> dict:
    import torch

    from focalbench.engine import loop
    from focalbench.run_state import RunFolder

    folder = RunFolder(Path(results) / "runs" / f"{config.key}-{device_name}-{int(graphs)}")
    folder.clear()
    run = loop.setup(config, torch.device(device_name), folder, compile=False, data_dir=data_dir)
    if graphs:
        run.graphs = loop.StepGraphs(run, loop.capture_blocker(run))
    tick = time.perf_counter()
    summary = loop.fit_and_test(run, resume=False, progress=False, on_epoch_end=None)
    history = _history(folder.path)
    return {
        "summary": summary,
        "first loss": float(history[0]["train_loss"]),
        "last loss": float(history[-1]["train_loss"]),
        "seconds": time.perf_counter() - tick,
        "step": run.graphs.mode if run.graphs else "eager",
    }


def correctness(device, quick: bool, dataset: str, data_dir: str | None) -> list[dict]:
    """The same cell trained on the CPU in fp32 and on the device in each precision."""
    from focalbench.config import RunConfig

    protocol, epochs = ("smoke", 2) if quick else ("paper000", 12)
    results = tempfile.mkdtemp(prefix="gpu-check-correct-")
    base = {
        "dataset": dataset,
        "model": "unet",
        "loss": "dice",
        "protocol": protocol,
        "epochs": epochs,
    }
    tries = [("cpu", "fp32", False)]
    if device.type == "cuda":
        tries += [
            (str(device), "fp32", False),
            (str(device), "bf16", False),
            (str(device), "bf16", True),
        ]
    else:  # the quick CPU check still goes through the comparison
        tries += [("cpu", "fp32", False)]
    rows, reference = [], None
    for device_name, precision, graphs in tries:
        config = RunConfig(**base, overrides={"precision": precision})
        out = _train_once(config, device_name, graphs, results, data_dir)
        dsc = out["summary"]["test"].get("dsc", math.nan)
        reference = dsc if reference is None else reference
        falls = out["last loss"] < out["first loss"]
        agrees = abs(dsc - reference) <= DSC_TOLERANCE
        rows.append(
            {
                "device": device_name,
                "precision": precision,
                "step": out["step"],
                "epochs": epochs,
                "first train loss": out["first loss"],
                "last train loss": out["last loss"],
                "test DSC": dsc,
                "Δ DSC vs CPU fp32": dsc - reference,
                "seconds": out["seconds"],
                "verdict": "ok"
                if falls and agrees
                else (
                    "loss did not fall" if not falls else f"DSC off by more than {DSC_TOLERANCE}"
                ),
            }
        )
    shutil.rmtree(results, ignore_errors=True)
    return rows


# ------------------------------------------------------------------------ 3. distance transform


def distance_transform(device, quick: bool, dataset: str, data_dir: str | None) -> list[dict]:
    import torch

    from focalbench import datasets
    from focalbench.losses.boundary import EdtBackend, distance_map, edt

    size = 64 if quick else 256
    masks = torch.from_numpy(
        datasets.load(dataset, size=(size, size), data_dir=data_dir).masks[:, None]
    )
    masks = masks[:8] if quick else masks
    fg = masks.bool()
    rows = []
    timings = {}
    for name, tensor, backend in (
        ("scipy (CPU)", fg, EdtBackend.SCIPY),
        (f"torch ({device.type})", fg.to(device), EdtBackend.TORCH),
    ):
        start = time.perf_counter()
        dist = edt(tensor, backend)
        dmap = distance_map(tensor.float(), backend)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        timings[name] = (time.perf_counter() - start, dist.cpu(), dmap.cpu())
    (_, d_ref, m_ref), (_, d_dev, m_dev) = timings.values()
    finite = torch.isfinite(d_ref)
    rows.append(
        {
            "masks": f"{len(masks)} × {size}x{size} ({dataset})",
            "max |EDT diff| px": (d_dev[finite] - d_ref[finite]).abs().max().item(),
            "inf where scipy inf": bool(torch.equal(torch.isinf(d_dev), ~finite)),
            "max |DPT map diff|": (m_dev - m_ref).abs().max().item(),
            "tolerance": EDT_TOLERANCE,
            **{f"{name} s": seconds for name, (seconds, _, _) in timings.items()},
        }
    )
    rows[0]["verdict"] = (
        "ok"
        if rows[0]["max |DPT map diff|"] <= EDT_TOLERANCE and rows[0]["inf where scipy inf"]
        else "differs"
    )
    return rows


# ----------------------------------------------------------------------------- 6. projection


def _steps_per_s(rows: list[dict], size: int, variant: str) -> float | None:
    for row in rows:
        if row["size"] == f"{size}x{size}" and row["variant"] == variant:
            return row["steps/s"]
    return None


def _step_time(size: tuple[int, int], small: tuple[int, float], large: tuple[int, float]) -> float:
    """Seconds per step at ``size`` = (H, W), linear in the pixel count between two measured
    square sizes ``(side, seconds)``."""
    (a, t_a), (b, t_b) = small, large
    share = (size[0] * size[1] - a * a) / (b * b - a * a) if b != a else 0.0
    return t_a + share * (t_b - t_a)


def projection(speed: list[dict], packed: list[dict]) -> list[dict]:
    """Table 2's wall time = epochs × Σ cells (train + EVAL_COST·val steps) × t(size) / gain.

    t(size): measured step time at 256² and 512² (batch 1), linear in the pixel count between
    them (CVC-ClinicDB's 288×384); packing gain: the steady throughput with the best number of
    packed cells over one cell's, both measured at 256².
    """
    speed = [row for row in speed if "steps/s" in row]  # a skipped or failed part has a note only
    if not speed:
        return [{"note": "no step speed measured: nothing to project"}]
    sizes = sorted({int(row["size"].split("x")[0]) for row in speed})
    small, large = sizes[0], sizes[-1]
    measured = [r for r in packed if r.get("train images/s, all cells") and not r.get("failed")]
    one = next((r for r in measured if r["cells sharing"] == 1), None)
    gain = (
        max(r["train images/s, all cells"] for r in measured) / one["train images/s, all cells"]
        if one
        else 1.0
    )
    rows = []
    for variant, packs in (
        ("engine bf16", True),
        ("engine bf16 +graph", False),
        ("engine bf16 +compile", False),
        ("engine fp32", True),
    ):
        fast, slow = _steps_per_s(speed, small, variant), _steps_per_s(speed, large, variant)
        if fast is None or slow is None:
            continue
        per_epoch = TABLE2_LOSSES * sum(
            (d["train"] + EVAL_COST * d["val"])
            * _step_time(d["size"], (small, 1 / fast), (large, 1 / slow))
            for d in TABLE2_DATASETS.values()
        )
        speedup = gain if packs else 1.0
        per_epoch /= speedup
        rows.append(
            {
                "cells run as": f"{variant}, "
                + (f"packed (×{gain:.2f} measured)" if packs else "one at a time"),
                "s per epoch of all 27 cells": per_epoch,
                "100 epochs, h": 100 * per_epoch / 3600,
                "500 epochs (cap), h": 500 * per_epoch / 3600,
                "epochs/cell within 1 h": GOAL_SECONDS / per_epoch,
            }
        )
    return rows


# ----------------------------------------------------------------------------- the command


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", help="cuda, cuda:N or cpu")
    parser.add_argument(
        "--quick", action="store_true", help="tiny sizes and steps: checks every part runs"
    )
    parser.add_argument(
        "--out", default="gpu-check", help="folder for gpu_check.md and gpu_check.json"
    )
    parser.add_argument(
        "--dataset", default="sample", help="prepared dataset for packing/correctness/EDT"
    )
    parser.add_argument(
        "--data-dir", default=None, help="prepared-datasets folder (e.g. one holding drive)"
    )
    parser.add_argument(
        "--compile-sizes",
        type=int,
        nargs="*",
        default=[256],
        help="sizes that also run the torch.compile variants (each compile costs ~1 min)",
    )
    parser.add_argument(
        "--budget-s", type=float, default=420.0, help="skip parts that would overrun this"
    )
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parent))  # step_speed.py beside this file
    import torch

    from focalbench.engine.device import resolve_device

    device = resolve_device(args.device)
    if args.quick and device.type == "cpu":
        # inductor on the CPU takes ~1 min here; tests/test_step.py covers it
        args.compile_sizes = []
    budget = Budget(args.budget_s)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    parts: dict[str, list[dict]] = {}
    texts: list[str] = [
        (
            f"## gpu_check — {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}\n\n"
            f"Command: `python benchmarks/gpu_check.py {' '.join(sys.argv[1:])}`\n"
        )
    ]

    def report(name: str, title: str, rows: list[dict]) -> None:
        parts[name] = rows
        texts.append(markdown(rows, title))
        print(texts[-1], flush=True)
        (out / "gpu_check.md").write_text("\n".join(texts))
        (out / "gpu_check.json").write_text(json.dumps(parts, indent=1, default=str))

    def attempt(name: str, title: str, need_s: float, work) -> list[dict]:
        if budget.left() < need_s:
            report(
                name,
                title,
                [
                    {
                        "note": f"skipped: {budget.left():.0f} s left of --budget-s, "
                        f"needs ~{need_s:.0f}"
                    }
                ],
            )
            return []
        start = time.perf_counter()
        try:
            rows = work()
        except Exception as exc:  # one broken part must not hide the others' results
            rows = [{"note": f"failed: {type(exc).__name__}: {exc}".splitlines()[0]}]
        report(name, f"{title} ({time.perf_counter() - start:.0f} s)", rows)
        return rows

    env_rows, peaks = environment(device, args.quick)
    report("environment", "1. Environment", env_rows)
    quick = args.quick
    # Correctness first: it is what a short lease must not miss; the projection needs 4 and 5.
    attempt(
        "correctness",
        f"2. Correctness ({args.dataset}; tolerance |Δ DSC| ≤ {DSC_TOLERANCE})",
        10 if quick else 60,
        lambda: correctness(device, quick, args.dataset, args.data_dir),
    )
    attempt(
        "distance_transform",
        "3. Distance transform: torch EDT on the device vs SciPy on the CPU",
        5 if quick else 20,
        lambda: distance_transform(device, quick, args.dataset, args.data_dir),
    )
    speed = attempt(
        "step_speed",
        "4. Step speed (batch 1, paper-000 U-Net, Dice, MIScnn augmentation)",
        10 if quick else 60,
        lambda: step_speed(device, quick, args.compile_sizes, peaks),
    )
    packed = attempt(
        "packing",
        f"5. Packing ({args.dataset}, U-Net, ablate cells sharing the {device.type})",
        15 if quick else 90,
        lambda: packing(device, quick, args.dataset, args.data_dir, budget),
    )
    attempt(
        "projection",
        "6. Projection: paper 000 Table 2 (27 cells, batch 1) on this device, goal < 1 h",
        0,
        lambda: projection(speed, packed),
    )
    print(f"tables written to {out / 'gpu_check.md'}; torch {torch.__version__}")


if __name__ == "__main__":
    main()
