"""``train(config)``: one grid cell from prepared data to a complete run folder.

Reads top to bottom (nanoGPT's habit): resolve the recipe → put the split on the device →
build network, loss, optimiser, schedule → epochs of (train, validate, schedule, checkpoint)
→ test with the chosen weights → write the results. Every default lives in
:mod:`focalbench.protocols`; nothing here invents a number.

Where the speed comes from: the split is uint8 on the device; batches are index gathers;
augmentation and DPT distance maps run batched on the device; on CUDA the forward runs under the
protocol's autocast (bf16 for the paper protocols) with ``channels_last``; the optimiser is fused
where torch has one. No training step reads back to the host: the training loss is summed on the
device and read once, after the epoch's last step; validation then reads its loss and soft Dice
together, and its counts for the scores. With ``compile`` on CUDA the whole training step is one
CUDA graph, replayed for every batch (:class:`StepGraphs`).
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

import focalbench
from focalbench import datasets, metrics, models, tracking
from focalbench.config import RunConfig
from focalbench.datasets.prepared import load_native_masks, resize_mask
from focalbench.engine import checkpoint
from focalbench.engine.augment import augment, channel_stats, normalize
from focalbench.engine.compiling import CompiledOrEager
from focalbench.engine.data import DeviceSplit, batch_sizes
from focalbench.engine.device import describe, resolve_device
from focalbench.engine.progress import Quiet, train_display
from focalbench.errors import FocalbenchError
from focalbench.losses import build_loss, loss_preset
from focalbench.losses.boundary import distance_map
from focalbench.protocols import (
    Checkpoint,
    Init,
    Monitor,
    Normalization,
    Optimizer,
    Precision,
    Protocol,
    Schedule,
    ScoreSize,
    get_protocol,
    lr_at_epoch,
    resolve,
)
from focalbench.run_state import (
    DIVERGED,
    INTERRUPTED,
    PER_IMAGE_METRICS,
    RunFolder,
    Status,
    run_folder,
)
from focalbench.signals import Interrupted, raise_if_stopping, stop_on_signals
from focalbench.store import ensure_writable_dir, read_json, results_root, utc_now

N_SAMPLES = 4  # test images kept in test_samples.npz for figures
LOG = logging.getLogger(__name__)


@dataclass
class Run:
    """Everything one training run holds while it trains."""

    config: RunConfig
    recipe: Protocol
    device: torch.device
    folder: RunFolder
    train: DeviceSplit
    val: DeviceSplit
    test: DeviceSplit
    model: nn.Module  # the module whose state is saved
    forward: Callable[[torch.Tensor], Any]  # the module, or its CompiledOrEager
    loss: nn.Module
    optimizer: torch.optim.Optimizer
    plateau: torch.optim.lr_scheduler.ReduceLROnPlateau | None
    per_step: torch.optim.lr_scheduler.LRScheduler | None
    scaler: torch.amp.GradScaler
    generator: torch.Generator
    autocast_dtype: torch.dtype | None
    model_params: dict[str, Any]
    size: tuple[int, int]
    input_stats: tuple[torch.Tensor, torch.Tensor] | None  # training μ, σ for zscore_dataset
    # score_size=native: the test images' original masks and FOVs (datasets.load_native_masks)
    native_targets: tuple[list[np.ndarray], list[np.ndarray] | None] | None = None
    graphs: StepGraphs | None = None  # the captured step (compile=True on CUDA)

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        return normalize(images, self.recipe.normalization, self.input_stats)

    @property
    def scheduler(self) -> torch.optim.lr_scheduler.LRScheduler | None:
        """The one schedule whose state a checkpoint keeps (a protocol has at most one)."""
        return self.plateau or self.per_step


def train(
    config: RunConfig,
    results: str | Path | None = None,
    device: str = "auto",
    resume: bool = True,
    progress: bool = True,
    compile: bool = False,
    data_dir: str | Path | None = None,
    on_epoch_end: Callable[[int, dict[str, Any]], None] | None = None,
    log: Sequence[str] = (),
    mlflow_uri: str | None = None,
    check: bool = True,
) -> dict[str, Any]:
    """Train and test one cell; return its summary.

    The summary: ``state`` (``done``/``failed``), ``run_dir``, ``key``, ``test`` and ``val``
    metric means, ``epochs`` run, ``best_epoch``, ``wall_seconds``, ``device``, ``error``.
    The run folder is ``<results>/runs/<config.key>/`` (``results`` default:
    ``$FOCALBENCH_RESULTS`` or ``./results``).

    ``resume=True``: a finished cell returns its stored summary without training, and an
    interrupted one continues from ``last.pt``; ``resume=False`` starts over. ``compile`` wraps
    the network in ``torch.compile`` (CUDA graphs on CUDA). ``on_epoch_end(epoch, row)`` is called
    after each epoch's checkpoint is on disk. ``data_dir`` is the prepared-datasets folder
    (default ``$FOCALBENCH_DATA`` or ``./data``); like ``device``, it is not part of the cell's key.
    ``log`` names trackers (``tensorboard``, ``mlflow``; see :mod:`focalbench.tracking`) that
    mirror the trained epochs and the test; ``mlflow_uri`` is MLflow's store (default
    ``<results>/mlruns``). ``check`` checks every name and ``--param`` of ``config``
    (:func:`focalbench.checks.check_config`) before any folder exists; a caller that already
    checked (``ablate``'s driver, ``prune --retrain``) passes ``False``.
    """
    if check:
        from focalbench.checks import check_config

        check_config(config, None if data_dir is None else str(data_dir))
    get_protocol(config.protocol)  # an unknown protocol fails before any work
    tracking.check_trackers(log)
    root = ensure_writable_dir(results_root(results))
    folder = run_folder(root, config.key)
    if resume:
        stored = stored_summary(folder)
        if stored is not None:
            return stored
    else:
        folder.clear()
    tracker = tracking.open_trackers(log, folder.path, root, mlflow_uri, fresh=not resume)
    try:
        run = setup(config, resolve_device(device), folder, compile, data_dir)
    except KeyboardInterrupt:  # Ctrl-C while the data loads: as after an epoch, a rerun resumes
        folder.write_status(Status.failed, _epoch_of(folder), error=INTERRUPTED)
        raise
    try:
        with stop_on_signals():
            return fit_test_and_track(run, resume, progress, on_epoch_end, tracker)
    except torch.OutOfMemoryError:
        message = (
            f"out of memory on {describe(run.device)} at batch size {run.recipe.batch_size} and size "
            f"{run.size[0]}x{run.size[1]}; lower it with --param batch_size=N or --param size=HxW"
        )
        folder.write_status(Status.failed, _epoch_of(folder), error=message)
        raise FocalbenchError(message) from None
    except Interrupted:  # last.pt holds the last whole epoch; the next run resumes from it
        folder.write_status(Status.running, _epoch_of(folder), error=INTERRUPTED)
        raise
    except KeyboardInterrupt:
        folder.write_status(Status.failed, _epoch_of(folder), error=INTERRUPTED)
        raise
    except BaseException as exc:
        folder.write_status(Status.failed, _epoch_of(folder), error=f"{type(exc).__name__}: {exc}")
        raise


def fit_test_and_track(
    run: Run,
    resume: bool,
    progress: bool,
    on_epoch_end: Callable[[int, dict[str, Any]], None] | None,
    tracker: tracking.Tracker,
) -> dict[str, Any]:
    """:func:`fit_and_test`, mirrored into ``tracker``: each epoch after its checkpoint is on
    disk, the test once metrics.json is; the tracker is closed however the run ends."""
    with tracker:
        tracker.start(run.config.to_dict(), read_json(run.folder.config_json)["resolved"])
        summary = fit_and_test(run, resume, progress, _then(tracker.log_epoch, on_epoch_end))
        if summary["state"] == Status.done:
            log_finished_run(tracker, run.folder, summary["epochs"])
        return summary


def _then(first: Callable[..., None], second: Callable[..., None] | None) -> Callable[..., None]:
    """``first`` then ``second`` (when given) with the same arguments."""
    if second is None:
        return first
    return lambda *args: (first(*args), second(*args))


def log_finished_run(tracker: tracking.Tracker, folder: RunFolder, epoch: int) -> None:
    """Hand a done run's test scores, sample predictions and result files to the tracker."""
    with np.load(folder.samples_npz, allow_pickle=False) as samples:
        arrays = {k: samples[k] for k in ("ids", "images", "masks", "probs")}
    tracker.log_test(epoch, read_json(folder.metrics_json)["test"], arrays)
    for path in (folder.config_json, folder.history_csv, folder.metrics_json, folder.per_image_csv):
        tracker.log_file(path)


def stored_summary(folder: RunFolder) -> dict[str, Any] | None:
    """The summary of a finished cell (done, or failed by divergence), else ``None``."""
    status = folder.status()
    if status is None or not folder.metrics_json.exists():
        return None
    if status.state is Status.done or status.diverged:
        return summarize_folder(folder)
    return None


def summarize_folder(folder: RunFolder) -> dict[str, Any]:
    status = folder.status()
    stored = read_json(folder.metrics_json)
    return {
        "state": status.state.value if status else None,
        "error": status.error if status else None,
        "run_dir": str(folder.path),
        "key": folder.path.name,
        "test": stored.get("test", {}),
        "val": stored.get("val", {}),
        "epochs": stored.get("epochs_run"),
        "best_epoch": stored.get("best_epoch"),
        "wall_seconds": stored.get("wall_seconds"),
        "device": stored.get("device"),
    }


def _epoch_of(folder: RunFolder) -> int:
    status = folder.status()
    return int(status.epoch or 0) if status else 0


# ----------------------------------------------------------------------------- set-up


def setup(
    config: RunConfig,
    device: torch.device,
    folder: RunFolder,
    compile: bool,
    data_dir: str | Path | None = None,
) -> Run:
    settings = datasets.paper_settings(config.dataset, config.protocol, data_dir)
    recipe = resolve(config, settings)
    data = datasets.load(
        config.dataset, size=recipe.size, data_dir=data_dir, resize=recipe.resize.value
    )
    size = tuple(int(s) for s in data.masks.shape[1:])
    split = datasets.get_split(data, recipe.split, seed=recipe.split_seed, fold=config.fold)

    checkpoint.seed_everything(config.seed)
    model_params = {
        **(models.model_info(config.model)["tiny_params"] if recipe.tiny_model else {}),
        **config.model_params,
    }
    model = models.build_model(config.model, in_channels=data.images.shape[1], **model_params)
    models.check_input_size(model, size)
    initialise_(model, recipe.init)
    loss = build_loss(
        config.loss, preset=loss_preset(config.protocol, settings), **config.loss_params
    )
    on_cuda = device.type == "cuda"
    memory_format = torch.channels_last if on_cuda else torch.contiguous_format
    model = model.to(device=device, memory_format=memory_format)

    optimizer = build_optimizer(model, recipe, device)
    plateau, per_step = build_schedule(optimizer, recipe)
    autocast_dtype = None
    if on_cuda and recipe.precision is not Precision.fp32:
        autocast_dtype = torch.bfloat16 if recipe.precision is Precision.bf16 else torch.float16
    scaler = torch.amp.GradScaler(device.type, enabled=autocast_dtype is torch.float16)
    generator = torch.Generator(device=device)
    generator.manual_seed(config.seed)
    forward = CompiledOrEager(model) if compile else model  # inductor; CUDA graphs: StepGraphs

    parts = {
        name: DeviceSplit.from_prepared(data, split[name], device)
        for name in ("train", "val", "test")
    }
    input_stats = None
    if recipe.normalization is Normalization.zscore_dataset:
        input_stats = channel_stats(parts["train"].images)
    native_targets = None
    if recipe.score_size is ScoreSize.native:
        masks, fovs = load_native_masks(config.dataset, split["test"], data_dir)
        native_targets = (masks, fovs if recipe.fov_only else None)

    run = Run(
        config=config,
        recipe=recipe,
        device=device,
        folder=folder,
        **parts,
        model=model,
        forward=forward,
        loss=loss.to(device),
        optimizer=optimizer,
        plateau=plateau,
        per_step=per_step,
        scaler=scaler,
        generator=generator,
        autocast_dtype=autocast_dtype,
        model_params=model_params,
        size=size,
        input_stats=input_stats,
        native_targets=native_targets,
    )
    write_config(run, settings, data, split)
    if compile and on_cuda:
        run.graphs = StepGraphs(run, capture_blocker(run))
    return run


def write_config(
    run: Run,
    settings: dict[str, Any],
    data: datasets.PreparedData,
    split: dict[str, np.ndarray],
) -> None:
    """``config.json``: the run's config, its key, this version, and everything resolved from
    them (the protocol's fields after overrides, the loss's and network's parameters, the
    split's sizes, the batch sizes, the dataset's settings and the arrays' fingerprint)."""
    config, recipe, input_stats = run.config, run.recipe, run.input_stats
    run.folder.write_config(
        {
            "config": config.to_dict(),
            "key": config.key,
            "version": focalbench.__version__,
            "resolved": {
                **recipe.to_dict(),
                "size": list(run.size),
                "loss": config.loss,
                "loss_params": config.loss_params,
                "loss_resolved": run.loss.params(),
                "model": config.model,
                "model_params": run.model_params,
                "in_channels": int(data.images.shape[1]),
                "n_images": {k: len(v) for k, v in split.items()},
                "train_batch_sizes": batch_sizes(
                    len(split["train"]), recipe.batch_size, has_batch_norm(run.model)
                ),
                "dataset_settings": settings,
                "data": datasets.fingerprint(data),
                **(
                    {}
                    if input_stats is None
                    else {
                        "input_mean": input_stats[0].flatten().tolist(),
                        "input_std": input_stats[1].flatten().tolist(),
                    }
                ),
            },
        }
    )


def build_schedule(
    optimizer: torch.optim.Optimizer, recipe: Protocol
) -> tuple[
    torch.optim.lr_scheduler.ReduceLROnPlateau | None, torch.optim.lr_scheduler.LRScheduler | None
]:
    """(epoch schedule stepped on the validation loss, schedule stepped after every optimiser step)."""
    if recipe.schedule is Schedule.plateau:
        # Keras counts "did not improve for p epochs" as wait ≥ p, torch as bad_epochs > patience.
        plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer,
            mode="min",
            factor=recipe.plateau_factor,
            patience=recipe.plateau_patience - 1,
            threshold=recipe.plateau_threshold,
            threshold_mode="abs",
        )
        return plateau, None
    if recipe.schedule is Schedule.inverse_time:
        return None, torch.optim.lr_scheduler.LambdaLR(optimizer, _InverseTime(recipe.lr_decay))
    return None, None


class _InverseTime:
    """Keras' legacy ``decay``: lr_t = lr / (1 + decay · t), t = optimiser steps taken."""

    def __init__(self, decay: float) -> None:
        self.decay = decay

    def __call__(self, step: int) -> float:
        return 1.0 / (1.0 + self.decay * step)


def set_epoch_lr(run: Run, epoch: int) -> None:
    """The ``steps`` schedule: every parameter group at the protocol's rate for ``epoch``
    (set before the epoch's first step, as Keras' ``LearningRateScheduler`` does)."""
    if run.recipe.schedule is Schedule.steps:
        for group in run.optimizer.param_groups:
            group["lr"] = lr_at_epoch(run.recipe, epoch)


def initialise_(model: nn.Module, init: Init) -> None:
    """Xavier (Glorot) kernels and zero biases for every conv/linear layer (Keras' default)."""
    if init is Init.default:
        return
    fill = nn.init.xavier_uniform_ if init is Init.xavier_uniform else nn.init.xavier_normal_
    for module in model.modules():
        if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            fill(module.weight)
            if module.bias is not None:
                nn.init.zeros_(module.bias)


def build_optimizer(
    model: nn.Module, recipe: Protocol, device: torch.device
) -> torch.optim.Optimizer:
    """Adam or SGD; the fused kernel on CUDA, the multi-tensor (foreach) one elsewhere."""
    fast = {"fused": True} if device.type == "cuda" else {"foreach": True}
    if recipe.optimizer is Optimizer.adam:
        return torch.optim.Adam(
            model.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay, **fast
        )
    return torch.optim.SGD(
        model.parameters(),
        lr=recipe.lr,
        momentum=recipe.momentum,
        weight_decay=recipe.weight_decay,
        **fast,
    )


# ----------------------------------------------------------------------------- one epoch


def _autocast(run: Run, cache: bool = True) -> contextlib.AbstractContextManager:
    if run.autocast_dtype is None:
        return contextlib.nullcontext()
    # A captured step must not cache casts across replays (torch.cuda.graph's rule for autocast).
    return torch.autocast(run.device.type, dtype=run.autocast_dtype, cache_enabled=cache)


def _layout(run: Run, x: torch.Tensor) -> torch.Tensor:
    """NHWC on CUDA, where cuDNN's convolutions are fastest in it (the weights are NHWC too)."""
    return x.contiguous(memory_format=torch.channels_last) if run.device.type == "cuda" else x


def train_epoch(run: Run, display: Quiet) -> torch.Tensor:
    """One pass over the training split; returns the image-weighted mean loss (on the device)."""
    run.model.train()
    total = torch.zeros((), device=run.device)
    merge_single = has_batch_norm(run.model)
    for index in run.train.shuffled_batches(run.recipe.batch_size, run.generator, merge_single):
        total += train_step(run, index)
        if run.per_step is not None:
            run.per_step.step()
        display.step()
        # a stop abandons the partial epoch: the resumed run redoes it from last.pt's RNG state,
        # so it trains exactly what an uninterrupted run would
        raise_if_stopping()
    return total / len(run.train)


def has_batch_norm(model: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


def train_step(run: Run, index: torch.Tensor) -> torch.Tensor:
    """One optimiser step on the training images ``index``; returns the batch's summed loss
    B · L (on the device, never read here: no host synchronisation inside a step).

    Replayed from a CUDA graph where :class:`StepGraphs` holds one for this batch shape.
    """
    if run.graphs is not None:
        return run.graphs.step(index)
    return _step(run, index)


def _step(run: Run, index: torch.Tensor) -> torch.Tensor:
    """gather → normalise → augment → forward → loss → backward → optimiser step → w ≥ 0."""
    x = run.normalize(run.train.images[index])
    y = run.train.masks[index].float()
    if run.recipe.augmentation is not None:
        x, y = augment(x, y, run.recipe.augmentation, run.generator)
    x = _layout(run, x)
    dist = distance_map(y) if run.loss.needs_distance_map else None
    with _autocast(run, cache=False):
        out = run.forward(x)
    loss = run.loss(out, y, distance_map=dist)
    run.optimizer.zero_grad(set_to_none=True)
    run.scaler.scale(loss).backward()
    run.scaler.step(run.optimizer)
    run.scaler.update()
    models.clamp_focal_weights_(run.model)
    return loss.detach().float() * y.shape[0]


# Eager steps of each batch shape before it is captured: cuDNN picks its algorithms, the
# optimiser creates its state (SGD's momentum buffers appear at the first step).
WARMUP_STEPS = 3


def capture_blocker(run: Run) -> str | None:
    """Why the whole step cannot be one CUDA graph for this run, or ``None`` when it can."""
    if run.device.type != "cuda":
        return "CUDA graphs need a CUDA device"
    if run.scaler.is_enabled():
        return "fp16 loss scaling decides on the host whether each step is applied"
    if run.per_step is not None:
        return "the learning rate changes at every step (per-step schedule)"
    if not hasattr(torch.cuda.CUDAGraph, "register_generator_state"):
        return f"torch {torch.__version__} cannot replay the augmentation generator in a graph"
    return None


@dataclass
class _Captured:
    graph: Any  # torch.cuda.CUDAGraph
    index: torch.Tensor  # the graph's input: batch indices, copied in before each replay
    loss: torch.Tensor  # the graph's output: B · L of the last replay
    lrs: tuple[float, ...]  # learning rates recorded into the optimiser kernels


class StepGraphs:
    """The whole training step as one CUDA graph per batch shape (``compile=True`` on CUDA).

    Each shape runs :data:`WARMUP_STEPS` eager steps on a side stream, is recorded once, then
    every batch copies its indices into the graph's input and replays: gather, normalisation,
    augmentation (its generator registered with the graph), forward, loss, backward, the fused
    optimiser and the focal clamp as one launch. The learning rates are scalars inside the
    recorded optimiser kernels, so a plateau step that changes them re-records the graph.
    When recording is impossible, ``reason`` says why (logged once) and steps run eagerly.
    """

    def __init__(self, run: Run, reason: str | None = None) -> None:
        self.run = run
        self.reason = reason
        self.captured: dict[int, _Captured] = {}
        self.warm: dict[int, int] = {}
        if reason is not None:
            LOG.warning("whole-step CUDA graph off: %s; training steps run uncaptured", reason)

    @property
    def mode(self) -> str:
        return "cuda-graph" if self.reason is None else f"eager ({self.reason})"

    def step(self, index: torch.Tensor) -> torch.Tensor:
        if self.reason is not None:
            return _step(self.run, index)
        batch = int(index.shape[0])
        lrs = tuple(float(group["lr"]) for group in self.run.optimizer.param_groups)
        entry = self.captured.get(batch)
        if entry is not None and entry.lrs != lrs:
            del self.captured[batch]
            entry = None
        if entry is None:
            if self.warm.get(batch, 0) < WARMUP_STEPS:
                self.warm[batch] = self.warm.get(batch, 0) + 1
                return self._side_stream_step(index)
            entry = self._capture(index, lrs)
            if entry is None:
                return _step(self.run, index)
            self.captured[batch] = entry
        entry.index.copy_(index)
        entry.graph.replay()
        return entry.loss

    def _side_stream_step(self, index: torch.Tensor) -> torch.Tensor:
        side = torch.cuda.Stream(self.run.device)
        side.wait_stream(torch.cuda.current_stream(self.run.device))
        with torch.cuda.stream(side):
            loss = _step(self.run, index)
        torch.cuda.current_stream(self.run.device).wait_stream(side)
        return loss

    def _capture(self, index: torch.Tensor, lrs: tuple[float, ...]) -> _Captured | None:
        run = self.run
        graph = torch.cuda.CUDAGraph()
        graph.register_generator_state(run.generator)
        static_index = index.clone()
        groups = run.optimizer.param_groups
        capturable = [group.get("capturable") for group in groups]
        for group in groups:  # fused Adam keeps its step count on the device already
            group["capturable"] = True
        try:
            with torch.cuda.graph(graph):
                loss = _step(run, static_index)
        except Exception as exc:  # an op that needs the host (a .item(), a CPU tensor, ...)
            run.optimizer.zero_grad(set_to_none=True)  # grads pointed into the abandoned graph
            self.reason = f"recording failed: {type(exc).__name__}: {exc}".splitlines()[0]
            LOG.warning("whole-step CUDA graph off: %s; training steps run uncaptured", self.reason)
            return None
        finally:
            for group, flag in zip(groups, capturable, strict=False):
                if flag is None:
                    group.pop("capturable")
                else:
                    group["capturable"] = flag
        return _Captured(graph, static_index, loss, lrs)


@dataclass
class Evaluation:
    loss: float
    counts: torch.Tensor  # (N, 4) tp, fp, fn, tn
    probs: torch.Tensor | None  # (k, H, W) uint8 = 255·p of the first k images, when asked
    hd95: torch.Tensor | None = None  # (N,) pixels, when asked
    soft_dice: float = math.nan  # Monitor.val_soft_dice's value
    predictions: torch.Tensor | None = None  # (N, H, W) bool on the CPU, when asked


def soft_dice(logits: torch.Tensor, target: torch.Tensor, smooth: float = 1.0) -> torch.Tensor:
    """(2·Σ g p + s) / (Σ g + Σ p + s) over a whole batch of the final output (a Keras metric
    of paper 003's code, ``losses.py:8-14``), p = sigmoid(logit)."""
    p = torch.sigmoid(logits.float())
    return (2.0 * (target * p).sum() + smooth) / (target.sum() + p.sum() + smooth)


@torch.no_grad()
def evaluate(
    run: Run,
    split: DeviceSplit,
    keep: int = 0,
    with_hd95: bool = False,
    keep_predictions: bool = False,
) -> Evaluation:
    """Loss, soft Dice and per-image confusion counts of ``split`` (prediction: p > 0.5, i.e.
    logit > 0), in batches of ``batch_size`` images.

    The loss and the soft Dice are image-weighted means of batch values (Keras' validation
    metrics); counts (and HD95, when asked) are restricted to the field of view where the
    dataset has one (DRIVE) and the protocol's ``fov_only`` asks for it. ``keep_predictions``
    returns every thresholded prediction.
    """
    run.model.eval()
    total = torch.zeros((), device=run.device)
    dice_total = torch.zeros((), device=run.device)
    counts, probs, hd95, predictions = [], [], [], []
    for part in split.ordered_batches(run.recipe.batch_size):
        y = split.masks[part].float()
        with _autocast(run):
            out = run.forward(_layout(run, run.normalize(split.images[part])))
        dist = distance_map(y) if run.loss.needs_distance_map else None
        total += run.loss(out, y, distance_map=dist).float() * y.shape[0]
        logits = (out[-1] if isinstance(out, (list, tuple)) else out).float()
        dice_total += soft_dice(logits, y) * y.shape[0]
        if keep_predictions:
            predictions.append((logits[:, 0] > 0).cpu())
        valid = None if split.fov is None or not run.recipe.fov_only else split.fov[part].bool()
        counts.append(metrics.confusion_counts(logits > 0, y.bool(), valid=valid))
        if with_hd95:
            inside = torch.ones_like(y, dtype=torch.bool) if valid is None else valid
            hd95.append(metrics.hd95((logits > 0) & inside, y.bool() & inside))
        if keep and sum(p.shape[0] for p in probs) < keep:
            probs.append((torch.sigmoid(logits[:, 0]) * 255).round().to(torch.uint8))
    kept = torch.cat(probs)[:keep] if probs else None
    loss, dice = (torch.stack([total, dice_total]) / len(split)).tolist()  # one host sync
    return Evaluation(
        loss=loss,
        counts=torch.cat(counts),
        probs=kept,
        hd95=torch.cat(hd95) if with_hd95 else None,
        soft_dice=dice,
        predictions=torch.cat(predictions) if keep_predictions else None,
    )


def score_means(counts: torch.Tensor) -> dict[str, float]:
    """Per-image mean of every score (the aggregation of metrics.json)."""
    return metrics.summarize(counts)["metrics"]


def native_counts(
    predictions: torch.Tensor,
    masks: list[np.ndarray],
    fovs: list[np.ndarray] | None,
    rule: str,
    with_hd95: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Per-image counts (and HD95) at each image's native size: the thresholded working-size
    prediction ``predictions[i]`` (bool (H, W)) resized back to ``masks[i]``'s shape by the
    resize rule's mask interpolation (nearest; MIScnn: linear ≥ 0.5) and compared with the
    original mask, inside the original FOV where there is one. Thresholding before resizing
    is the same as resizing the probabilities first when the resize is nearest (paper 003's
    code) and is what MIScnn does (it resizes the argmax label map)."""
    counts, distances = [], []
    for i, pred in enumerate(predictions):
        target = torch.from_numpy(masks[i] > 0)[None]
        up = torch.from_numpy(resize_mask(pred.numpy(), masks[i].shape, rule))[None]
        inside = torch.ones_like(target) if fovs is None else torch.from_numpy(fovs[i] > 0)[None]
        counts.append(metrics.confusion_counts(up, target, valid=inside))
        if with_hd95:
            distances.append(metrics.hd95(up & inside, target & inside))
    return torch.cat(counts), (torch.cat(distances) if with_hd95 else None)


def per_image_rows(
    ids: list[str], counts: torch.Tensor, hd95: torch.Tensor | None, working: torch.Tensor | None
) -> tuple[list[dict[str, Any]], list[str]]:
    """per_image.csv rows and their extra columns: counts and scores where the protocol scores
    (``score_size``), ``hd95`` when asked, paper 003's +1-smoothed scores (``smooth1_*``), and
    — when that is the native size — the working-size counts and DSC (``working_*``)."""
    per_image = {**metrics.scores(counts), **metrics.smoothed_scores(counts)}
    extra = [*(["hd95"] if hd95 is not None else []), *metrics.SMOOTH1_SCORES]
    if hd95 is not None:
        per_image["hd95"] = hd95
    if working is not None:
        per_image.update({f"working_{k}": working[:, i] for i, k in enumerate(metrics.COUNTS)})
        per_image["working_dsc"] = metrics.scores(working)["dsc"]
        extra += [*(f"working_{k}" for k in metrics.COUNTS), "working_dsc"]
    rows = []
    for i, image_id in enumerate(ids):
        tp, fp, fn, tn = (int(c) for c in counts[i])
        rows.append(
            {
                "image_id": image_id,
                "tp": tp,
                "fp": fp,
                "fn": fn,
                "tn": tn,
                **{m: _cell(per_image[m][i]) for m in [*PER_IMAGE_METRICS, *extra]},
            }
        )
    return rows, extra


def _cell(value: torch.Tensor) -> int | float:
    return int(value) if value.dtype == torch.int64 else float(value)


# ----------------------------------------------------------------------------- the run


def fit_and_test(
    run: Run,
    resume: bool,
    progress: bool,
    on_epoch_end: Callable[[int, dict[str, Any]], None] | None,
) -> dict[str, Any]:
    recipe, folder = run.recipe, run.folder
    state = fresh_state()
    saved = checkpoint.load_latest(folder.last_pt) if resume else None
    if saved is not None:
        state = restore(run, saved)
        checkpoint.restore_best(folder.best_pt, state["best_epoch"])
        # A crash between last.pt and history.csv leaves the file an epoch short; when that was
        # the final epoch no later epoch would rewrite it, so write it from the checkpoint now.
        folder.write_history(state["history"])
    folder.write_status(
        Status.running,
        state["epoch"],
        started=utc_now() if state["epoch"] == 0 else None,
        device=describe(run.device),
    )
    steps = len(batch_sizes(len(run.train), recipe.batch_size, has_batch_norm(run.model)))
    display = (
        train_display(run.config.key, recipe.epochs, steps, state["epoch"] + 1)
        if progress
        else Quiet()
    )
    with display:
        epoch = state["epoch"]
        while epoch < recipe.epochs and not state["stopped"]:
            epoch += 1
            tick = time.perf_counter()
            display.start_epoch(epoch, steps)
            set_epoch_lr(run, epoch)
            # history's lr: the rate the epoch starts with (a per-step schedule lowers it after)
            lr = run.optimizer.param_groups[0]["lr"]
            train_loss = train_epoch(run, display).item()
            val = evaluate(run, run.val)
            if not (math.isfinite(train_loss) and math.isfinite(val.loss)):
                return diverged(run, state, epoch, train_loss, val.loss)
            if run.plateau is not None:
                run.plateau.step(val.loss)
            row = history_row(run, epoch, train_loss, val, lr, time.perf_counter() - tick)
            improved = advance(state, recipe, val, row)
            state["wall_seconds"] += time.perf_counter() - tick
            save_checkpoints(run, state, improved)
            folder.write_history(state["history"])
            folder.write_status(Status.running, epoch)
            display.end_epoch(row, state["best_epoch"])
            if on_epoch_end is not None:
                on_epoch_end(epoch, row)
            raise_if_stopping()
    return test(run, state)


def history_row(
    run: Run, epoch: int, train_loss: float, val: Evaluation, lr: float, seconds: float
) -> dict[str, Any]:
    """One epoch's line of history.csv: the losses, the validation scores at the 0.5
    threshold, the lr the epoch started with, its seconds and every focal weight."""
    scores = score_means(val.counts)
    return {
        "epoch": epoch,
        "train_loss": train_loss,
        "val_loss": val.loss,
        "val_dsc": scores["dsc"],
        "val_precision": scores["precision"],
        "val_recall": scores["recall"],
        "val_soft_dice": val.soft_dice,
        "lr": lr,
        "seconds": seconds,
        **{f"focal_{k}": v for k, v in models.focal_weights(run.model).items()},
    }


def advance(state: dict[str, Any], recipe: Protocol, val: Evaluation, row: dict[str, Any]) -> bool:
    """Book an epoch into ``state`` (:func:`fresh_state`'s keys): its history row, early
    stopping's best loss and patience (``stopped`` once ``bad_epochs`` reaches it), and the
    best checkpoint's monitor; returns whether this epoch is the new best checkpoint."""
    loss_improved = val.loss < state["best_loss"]
    improved, monitored = checkpoint_improves(recipe, val, state)
    state.update(
        epoch=row["epoch"],
        history=[*state["history"], row],
        best_loss=val.loss if loss_improved else state["best_loss"],
        best_monitor=monitored if improved else state["best_monitor"],
        best_epoch=row["epoch"] if improved else state["best_epoch"],
        bad_epochs=0 if loss_improved else state["bad_epochs"] + 1,
    )
    if recipe.early_stopping is not None and state["bad_epochs"] >= recipe.early_stopping:
        state["stopped"] = True
    return improved


def fresh_state() -> dict[str, Any]:
    """The book-keeping of a run before its first epoch; every checkpoint stores these keys.
    ``best_loss``/``bad_epochs``: early stopping's; ``best_monitor``/``best_epoch``: the best
    checkpoint's (:func:`checkpoint_improves`)."""
    return {
        "epoch": 0,
        "best_loss": math.inf,
        "best_epoch": 0,
        "bad_epochs": 0,
        "stopped": False,
        "history": [],
        "wall_seconds": 0.0,
        "best_monitor": None,
    }


def checkpoint_improves(
    recipe: Protocol, val: Evaluation, state: dict[str, Any]
) -> tuple[bool, float]:
    """(is this epoch the monitor's best so far, the monitored value): the lowest validation
    loss, or the highest validation soft Dice (Keras ``ModelCheckpoint(save_best_only=True)``:
    strictly better than every earlier epoch). ``state["best_monitor"]`` is the only record of
    the best checkpoint; ``best_loss`` is early stopping's, which watches the loss whatever the
    monitor."""
    best = state["best_monitor"]
    if recipe.monitor is Monitor.val_soft_dice:
        return (best is None or val.soft_dice > best), val.soft_dice
    return (best is None or val.loss < best), val.loss


def checkpoint_state(run: Run, state: dict[str, Any]) -> dict[str, Any]:
    return {
        "model": run.model.state_dict(),
        "optimizer": run.optimizer.state_dict(),
        "scheduler": None if run.scheduler is None else run.scheduler.state_dict(),
        "scaler": run.scaler.state_dict(),
        "rng": checkpoint.rng_state(run.generator),
        "config": run.config.to_dict(),
        **state,
    }


def save_checkpoints(run: Run, state: dict[str, Any], improved: bool) -> None:
    """``best.pt`` first, then ``last.pt``, each keeping the file it replaces: a crash in
    between resumes from the previous epoch, and :func:`checkpoint.restore_best` puts back the
    best.pt of that epoch's state before the epoch is trained again."""
    payload = checkpoint_state(run, state)
    if improved:
        checkpoint.save_keeping_previous(run.folder.best_pt, **payload)
    checkpoint.save_keeping_previous(run.folder.last_pt, **payload)


def restore(run: Run, saved: dict[str, Any]) -> dict[str, Any]:
    run.model.load_state_dict(saved["model"])
    run.optimizer.load_state_dict(saved["optimizer"])
    if run.scheduler is not None:
        run.scheduler.load_state_dict(saved["scheduler"])
    if saved["scaler"]:
        run.scaler.load_state_dict(saved["scaler"])
    # else: saved where no loss scaling ran (the CPU, or not fp16); a scaler that is on here
    # starts from its initial scale, which load_state_dict would refuse to do from {}.
    checkpoint.restore_rng(saved["rng"], run.generator)
    # checkpoints written before the monitor existed watched the validation loss
    fallback = saved["best_loss"] if run.recipe.monitor is Monitor.val_loss else None
    return {
        **{key: saved[key] for key in fresh_state() if key != "best_monitor"},
        "best_monitor": saved.get("best_monitor", fallback),
    }


def diverged(
    run: Run, state: dict[str, Any], epoch: int, train_loss: float, val_loss: float
) -> dict[str, Any]:
    """Stop on a NaN/inf loss: keep ``last.pt`` (the last finite epoch) and mark the run failed."""
    last = state["history"][-1] if state["history"] else None
    finite = (
        f"last finite: epoch {last['epoch']} train_loss={last['train_loss']:.6g} val_loss={last['val_loss']:.6g}"
        if last
        else "no finite epoch"
    )
    error = f"{DIVERGED} at epoch {epoch} (train_loss={train_loss}, val_loss={val_loss}); {finite}"
    run.folder.write_metrics(
        {
            "test": {},
            "val": {},
            "best_epoch": state["best_epoch"] or None,
            "epochs_run": state["epoch"],
            "wall_seconds": state["wall_seconds"],
            "device": describe(run.device),
            "error": error,
        }
    )
    run.folder.write_status(Status.failed, epoch, error=error)
    return summarize_folder(run.folder)


def test(run: Run, state: dict[str, Any]) -> dict[str, Any]:
    """Evaluate val and test with the protocol's checkpoint; write per_image.csv, metrics.json,
    test_samples.npz and mark the run done."""
    folder, tick = run.folder, time.perf_counter()
    if run.recipe.test_checkpoint is Checkpoint.best and folder.best_pt.exists():
        run.model.load_state_dict(checkpoint.load(folder.best_pt)["model"])
    val = evaluate(run, run.val)
    native = run.native_targets is not None
    result = evaluate(
        run,
        run.test,
        keep=N_SAMPLES,
        with_hd95=run.recipe.hd95 and not native,
        keep_predictions=native,
    )
    working = result.counts.cpu()
    scored_counts, scored_hd95 = working, result.hd95
    if native:
        scored_counts, scored_hd95 = native_counts(
            result.predictions,
            *run.native_targets,
            run.recipe.resize.value,
            with_hd95=run.recipe.hd95,
        )
    rows, extra = per_image_rows(
        run.test.ids, scored_counts, scored_hd95, working if native else None
    )
    folder.write_per_image(rows, extra=extra)
    summary = metrics.summarize(
        scored_counts, extra={"hd95": scored_hd95} if scored_hd95 is not None else None
    )
    smooth1 = {k: float(v.mean()) for k, v in metrics.smoothed_scores(scored_counts).items()}
    k = min(N_SAMPLES, len(run.test))
    folder.write_samples(
        ids=np.array(run.test.ids[:k]),
        images=run.test.images[:k].cpu().numpy(),
        masks=run.test.masks[:k, 0].cpu().numpy(),
        probs=result.probs.cpu().numpy()
        if result.probs is not None
        else np.zeros((0, *run.size), np.uint8),
    )
    folder.write_metrics(
        {
            "test": summary["metrics"],
            "scored_at": run.recipe.score_size.value,
            "test_smooth1": smooth1,
            **({"test_working": score_means(result.counts)} if native else {}),
            "val": score_means(val.counts),
            "val_soft_dice": val.soft_dice,
            "val_loss": val.loss,
            "test_loss": result.loss,
            "aggregation": summary["aggregation"],
            "empty_policy": summary["empty_policy"],
            "n_test": summary["n_images"],
            "n_both_empty": summary["n_both_empty"],
            "n_undefined": summary["n_undefined"],
            "checkpoint": run.recipe.test_checkpoint.value,
            "best_epoch": state["best_epoch"],
            "epochs_run": state["epoch"],
            "params": models.count_parameters(run.model),
            "gflops": models.count_gflops(
                run.model, run.size, in_channels=int(run.train.images.shape[1])
            ),
            "wall_seconds": state["wall_seconds"] + time.perf_counter() - tick,
            "device": describe(run.device),
        }
    )
    folder.write_status(Status.done, state["epoch"])
    # only a resume needs it (checkpoint.restore_best); a finished run keeps best.pt alone
    checkpoint.previous_of(folder.best_pt).unlink(missing_ok=True)
    return summarize_folder(folder)
