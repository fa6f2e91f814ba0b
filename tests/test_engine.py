"""Engine parts: device choice, schedules in Keras' semantics, initialisation, RNG snapshots,
early stopping."""

import dataclasses
import math

import pandas as pd
import pytest
import torch
from torch import nn

import focalbench
from focalbench import datasets
from focalbench.config import RunConfig
from focalbench.engine import checkpoint, loop
from focalbench.engine.device import resolve_device
from focalbench.errors import FocalbenchError
from focalbench.protocols import Init, Schedule, get_protocol
from focalbench.store import read_json


def test_auto_is_cpu_without_cuda_and_cuda_requests_fail_loudly():
    assert resolve_device("auto") == torch.device("cpu")
    assert resolve_device("cpu") == torch.device("cpu")
    for name in ("cuda", "cuda:1"):
        with pytest.raises(FocalbenchError, match="no CUDA device is visible; use --device cpu"):
            resolve_device(name)
    with pytest.raises(FocalbenchError, match="unknown device 'gpu'"):
        resolve_device("gpu")


def _optimizer(lr=1.0):
    return torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=lr)


def test_inverse_time_decay_is_keras_lr_over_1_plus_decay_t():
    recipe = dataclasses.replace(get_protocol("paper003"), lr_decay=0.5)
    opt = _optimizer(0.01)
    plateau, per_step = loop.build_schedule(opt, recipe)
    assert plateau is None
    seen = []
    for _ in range(4):
        seen.append(opt.param_groups[0]["lr"])
        opt.step()
        per_step.step()
    assert seen == pytest.approx([0.01 / (1 + 0.5 * t) for t in range(4)])


def test_plateau_reduces_after_patience_epochs_without_improvement_like_keras():
    recipe = dataclasses.replace(get_protocol("paper000"), plateau_patience=3, plateau_factor=0.1)
    opt = _optimizer(1.0)
    plateau, per_step = loop.build_schedule(opt, recipe)
    assert per_step is None
    lrs = []
    for loss in [1.0, 1.0, 1.0, 1.0, 1.0]:  # epoch 1 sets the best; 2, 3, 4 do not improve
        plateau.step(loss)
        lrs.append(opt.param_groups[0]["lr"])
    assert lrs == pytest.approx([1.0, 1.0, 1.0, 0.1, 0.1])


def test_plateau_improvement_needs_more_than_min_delta():
    recipe = dataclasses.replace(get_protocol("paper001"))  # patience 5, min-delta 0.001
    opt = _optimizer(1.0)
    plateau, _ = loop.build_schedule(opt, recipe)
    for i in range(6):
        plateau.step(1.0 - 0.00015 * i)  # drifts down, but never by 0.001 below the best
    assert opt.param_groups[0]["lr"] == pytest.approx(0.5)
    assert loop.build_schedule(opt, dataclasses.replace(recipe, schedule=Schedule.constant)) == (
        None,
        None,
    )


def test_xavier_uniform_bounds_and_zero_bias():
    conv = nn.Conv2d(4, 6, 3)
    model = nn.Sequential(conv, nn.InstanceNorm2d(6, affine=True))
    torch.manual_seed(0)
    loop.initialise_(model, Init.xavier_uniform)
    bound = math.sqrt(6 / (4 * 9 + 6 * 9))  # Glorot: sqrt(6 / (fan_in + fan_out))
    assert conv.weight.abs().max() <= bound and conv.weight.abs().max() > 0.8 * bound
    assert torch.equal(conv.bias, torch.zeros(6))
    assert torch.equal(model[1].weight, torch.ones(6))  # norms keep their init


def test_rng_snapshot_replays_every_stream():
    import random

    import numpy as np

    gen = torch.Generator().manual_seed(1)
    state = checkpoint.rng_state(gen)
    first = (
        random.random(),
        np.random.rand(),
        torch.rand(1).item(),
        torch.rand(1, generator=gen).item(),
    )
    checkpoint.restore_rng(state, gen)
    assert (
        random.random(),
        np.random.rand(),
        torch.rand(1).item(),
        torch.rand(1, generator=gen).item(),
    ) == first


def test_early_stopping_ends_the_run_after_patience_epochs_without_improvement(
    tmp_path, monkeypatch
):
    real = loop.evaluate

    def flat_validation(run, split, keep=0, **options):
        result = real(run, split, keep, **options)
        return dataclasses.replace(result, loss=1.0)

    monkeypatch.setattr(loop, "evaluate", flat_validation)
    config = RunConfig(
        dataset="sample",
        model="unet",
        loss="dice",
        protocol="smoke",
        overrides={"early_stopping": 2},
    )
    summary = focalbench.train(config, results=tmp_path, progress=False)
    history = pd.read_csv(tmp_path / "runs" / config.key / "history.csv")
    assert history["epoch"].tolist() == [1, 2, 3]  # epoch 1 is best, 2 and 3 are not → stop
    assert (summary["epochs"], summary["best_epoch"], summary["state"]) == (3, 1, "done")


def test_dataset_zscore_scales_every_split_by_the_training_images_statistics(tmp_path):
    """paper 001's input: one μ, σ per channel over the training split, recorded in config.json."""
    config = RunConfig(
        dataset="sample",
        model="unet",
        loss="dice",
        protocol="smoke",
        epochs=1,
        overrides={"normalization": "zscore_dataset"},
    )
    focalbench.train(config, results=tmp_path, progress=False)
    resolved = read_json(tmp_path / "runs" / config.key / "config.json")["resolved"]
    data = datasets.load("sample", size=tuple(resolved["size"]))
    split = datasets.get_split(data, resolved["split"], seed=resolved["split_seed"])
    train = data.images[split["train"]].astype("float64")
    assert resolved["normalization"] == "zscore_dataset"
    assert resolved["input_mean"] == pytest.approx(train.mean(axis=(0, 2, 3)).tolist(), rel=1e-6)
    assert resolved["input_std"] == pytest.approx(train.std(axis=(0, 2, 3)).tolist(), rel=1e-6)


@pytest.mark.parametrize(
    "n, batch, merge, sizes",
    [
        (103, 16, True, [16] * 6 + [7]),  # paper 003 BUS: Keras keeps the short last batch
        (17, 8, False, [8, 8, 1]),  # Keras would train on the lone image
        (17, 8, True, [8, 9]),  # under BatchNorm it joins the previous batch
        (1, 8, True, [1]),
        (5, 1, True, [1] * 5),  # batch size 1 (paper 000) stays one image per step
    ],
)
def test_training_batches_keep_the_short_last_batch_but_never_a_lone_image(n, batch, merge, sizes):
    from focalbench.engine.data import batch_sizes

    assert batch_sizes(n, batch, merge) == sizes
    assert sum(sizes) == n


def test_steps_schedule_sets_each_epochs_rate_before_its_first_step():
    import types

    recipe = dataclasses.replace(get_protocol("paper002"))
    run = types.SimpleNamespace(recipe=recipe, optimizer=_optimizer(1e-3))
    seen = []
    for epoch in (1, 16, 17, 27, 42):
        loop.set_epoch_lr(run, epoch)
        seen.append(run.optimizer.param_groups[0]["lr"])
    assert seen == [1e-4, 1e-4, 1e-5, 1e-6, 1e-7]


def test_soft_dice_is_the_keras_metric_by_hand():
    logits = torch.zeros(1, 1, 2, 2)  # p = 0.5 everywhere
    target = torch.tensor([[[[1.0, 1.0], [0.0, 0.0]]]])
    # (2 · Σ g p + 1) / (Σ g + Σ p + 1) = (2 · 1 + 1) / (2 + 2 + 1)
    assert loop.soft_dice(logits, target).item() == pytest.approx(3 / 5)


def test_checkpoint_monitor_val_soft_dice_keeps_the_highest_epoch():
    from focalbench.protocols import Monitor

    recipe = dataclasses.replace(get_protocol("paper003"))
    assert recipe.monitor is Monitor.val_soft_dice
    state = {"best_loss": math.inf, "best_monitor": None}
    picks = []
    for loss, dice in [(0.9, 0.5), (0.5, 0.4), (0.4, 0.7), (0.3, 0.7)]:  # a tie is no improvement
        val = loop.Evaluation(loss=loss, counts=torch.zeros(0, 4), probs=None, soft_dice=dice)
        improved, value = loop.checkpoint_improves(recipe, val, state)
        picks.append(improved)
        if improved:
            state["best_monitor"] = value
        state["best_loss"] = min(state["best_loss"], loss)
    assert picks == [True, False, True, False]
    by_loss = dataclasses.replace(recipe, monitor=Monitor.val_loss)
    val = loop.Evaluation(loss=0.2, counts=torch.zeros(0, 4), probs=None, soft_dice=0.0)
    assert loop.checkpoint_improves(by_loss, val, state) == (True, 0.2)


@pytest.mark.parametrize("rule", ["nearest", "miscnn"])
def test_native_scoring_resizes_the_prediction_back_and_scores_the_original_mask(rule):
    import numpy as np

    pred = torch.tensor([[[True, False], [False, False]]])  # working size 2×2
    mask = np.zeros((4, 4), np.uint8)
    mask[:2, :2] = 1
    mask[3, 3] = 1  # a lesion pixel the working size cannot show
    # by hand: both rules give the top-left 2×2 block at 4×4 (linear: 1, .75, .5625 ≥ .5)
    counts, hd95 = loop.native_counts(pred, [mask], None, rule)
    assert counts.tolist() == [[4, 0, 1, 11]] and hd95 is None
    fov = np.ones((4, 4), np.uint8)
    fov[3] = 0  # the FOV hides the last row
    counts, _ = loop.native_counts(pred, [mask], [fov], rule)
    assert counts.tolist() == [[4, 0, 0, 8]]
    # HD95 at native size: 8 surface distances 0 and one √8 ((3, 3) to (1, 1)); the 95th
    # percentile interpolates 0.6 of the way from the 8th to the 9th
    _, hd95 = loop.native_counts(pred, [mask], None, rule, with_hd95=True)
    assert hd95.tolist() == pytest.approx([0.6 * math.sqrt(8)])


def test_a_checkpoint_without_loss_scaling_resumes_where_fp16_scales(tmp_path):
    """--param precision=fp16 trains unscaled on the CPU (no autocast there) and scaled on CUDA;
    a CPU checkpoint resumed on CUDA must start the scaler fresh, not crash on its empty state."""
    from focalbench.run_state import RunFolder

    config = RunConfig(
        dataset="sample",
        model="unet",
        loss="dice",
        protocol="smoke",
        overrides={"precision": "fp16"},
    )
    run = loop.setup(config, torch.device("cpu"), RunFolder(tmp_path / "r"), compile=False)
    assert not run.scaler.is_enabled()
    state = {"epoch": 1, "best_loss": 0.5, "best_epoch": 1, "bad_epochs": 0, "stopped": False,
             "history": [], "wall_seconds": 1.0, "best_monitor": 0.5}  # fmt: skip
    saved = checkpoint.load(_saved(tmp_path / "last.pt", loop.checkpoint_state(run, state)))
    scaling = dataclasses.replace(run, scaler=torch.amp.GradScaler("cpu", enabled=True))
    assert loop.restore(scaling, saved)["epoch"] == 1
    assert scaling.scaler.get_scale() == torch.amp.GradScaler("cpu").get_scale() == 2.0**16


def _saved(path, payload):
    checkpoint.save(path, **payload)
    return path


@pytest.mark.gpu
def test_rng_snapshot_replays_the_runs_cuda_device_not_the_current_one():
    if torch.cuda.device_count() < 2:
        pytest.skip("needs two CUDA devices: the run on cuda:1 while cuda:0 is current")
    device = torch.device("cuda", 1)
    gen = torch.Generator(device=device).manual_seed(1)
    state = checkpoint.rng_state(gen)
    first = torch.rand(4, device=device)  # the device's default stream (dropout's)
    checkpoint.restore_rng(state, gen)
    assert torch.equal(torch.rand(4, device=device), first)


def test_history_lr_is_the_rate_the_epoch_started_training_with_under_a_per_step_schedule(
    tmp_path,
):
    """docs/tracking.md: ``lr`` is the rate the epoch trained with; under inverse_time it falls
    at every step, so the row holds its first step's rate, lr / (1 + decay · steps before)."""
    config = RunConfig(
        dataset="sample",
        model="unet",
        loss="dice",
        protocol="smoke",
        epochs=2,
        overrides={"schedule": "inverse_time", "lr_decay": 0.5},
    )
    focalbench.train(config, results=tmp_path, progress=False)
    run_dir = tmp_path / "runs" / config.key
    resolved = read_json(run_dir / "config.json")["resolved"]
    steps = len(resolved["train_batch_sizes"])
    expected = [resolved["lr"] / (1 + 0.5 * steps * (epoch - 1)) for epoch in (1, 2)]
    assert pd.read_csv(run_dir / "history.csv")["lr"].tolist() == pytest.approx(expected)
