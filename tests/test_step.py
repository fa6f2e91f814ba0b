"""The training step: compiled (inductor) and eager agree; on CUDA the captured step replays the
eager one and no step synchronises with the host."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from focalbench.config import RunConfig
from focalbench.engine import loop
from focalbench.engine.progress import Quiet
from focalbench.run_state import RunFolder

# SGD, not Adam: Adam's first update is lr · sign(g), so a gradient of 1e-9 that rounds to the
# other sign moves a weight by 2·lr, and two correct implementations then differ by 2·lr.
# depth 1, width 4: inductor compiles this U-Net's step in ~20 s on one loaded CPU core (the
# smoke U-Net takes ~60 s).
TINY = RunConfig(
    dataset="sample",
    model="unet",
    loss="dice",
    protocol="smoke",
    model_params={"width": 4, "depth": 1},
    overrides={"optimizer": "sgd", "lr": 0.1, "momentum": 0.9},
)


def _run(
    tmp_path: Path, name: str, device: str, compile: bool, config: RunConfig = TINY
) -> loop.Run:
    return loop.setup(config, torch.device(device), RunFolder(tmp_path / name), compile)


def _params(run: loop.Run) -> list[torch.Tensor]:
    return [p.detach().float().cpu().clone() for p in run.model.parameters()]


def test_compiled_and_eager_steps_agree_on_cpu(tmp_path):
    eager, compiled = _run(tmp_path, "eager", "cpu", False), _run(tmp_path, "compiled", "cpu", True)
    for index in (torch.arange(4), torch.arange(4, 8)):
        a, b = loop.train_step(eager, index), loop.train_step(compiled, index)
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-6)
    for p, q in zip(_params(eager), _params(compiled), strict=False):
        torch.testing.assert_close(q, p, rtol=1e-4, atol=1e-6)


def test_a_compile_that_fails_on_this_machine_trains_eager_and_says_so(
    tmp_path, monkeypatch, capsys
):
    """Inductor with no C++ compiler (a real failure of a CPU machine without one; its caches
    off, so nothing compiled earlier is reused): the step runs eager, bit for bit the eager
    run's, and stderr says once why."""
    import torch._inductor.config as inductor

    monkeypatch.setattr(inductor.cpp, "cxx", (None, "/nonexistent/g++"))
    monkeypatch.setattr(inductor, "fx_graph_cache", False)
    torch._dynamo.reset()  # forget graphs compiled by earlier tests
    eager, compiled = _run(tmp_path, "eager", "cpu", False), _run(tmp_path, "compiled", "cpu", True)
    for index in (torch.arange(4), torch.arange(4, 8)):
        a, b = loop.train_step(eager, index), loop.train_step(compiled, index)
        torch.testing.assert_close(b, a, rtol=0, atol=0)
    for p, q in zip(_params(eager), _params(compiled), strict=True):
        torch.testing.assert_close(q, p, rtol=0, atol=0)
    assert "No working C++ compiler" in compiled.forward.eager_because
    lines = [
        line for line in capsys.readouterr().err.splitlines() if "torch.compile failed" in line
    ]
    assert len(lines) == 1 and lines[0].endswith("this run trains eager")
    torch._dynamo.reset()


def test_capture_blocker_names_why_a_step_cannot_be_one_graph(tmp_path):
    run = _run(tmp_path, "r", "cpu", False)
    assert loop.capture_blocker(run) == "CUDA graphs need a CUDA device"
    on_cuda = dataclasses.replace(run, device=torch.device("cuda"))
    scaled = dataclasses.replace(on_cuda, scaler=torch.amp.GradScaler("cpu", enabled=True))
    assert "fp16 loss scaling" in loop.capture_blocker(scaled)
    per_step = dataclasses.replace(
        on_cuda, per_step=torch.optim.lr_scheduler.LambdaLR(run.optimizer, lambda step: 1.0)
    )
    assert "every step" in loop.capture_blocker(per_step)


cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


@pytest.mark.gpu
@cuda
def test_captured_step_replays_the_eager_step_on_cuda(tmp_path):
    """The same seeds, batches and augmentation draws: the graph replays the eager kernels."""
    config = dataclasses.replace(TINY, overrides={**TINY.overrides, "augmentation": None})
    eager = _run(tmp_path, "eager", "cuda", False, config)
    graphed = _run(tmp_path, "graphed", "cuda", False, config)
    graphed.graphs = loop.StepGraphs(graphed, loop.capture_blocker(graphed))
    for step in range(loop.WARMUP_STEPS + 4):
        if step == loop.WARMUP_STEPS + 2:  # a plateau step: the recorded lr must not linger
            for run in (eager, graphed):
                run.optimizer.param_groups[0]["lr"] = 0.01
        index = torch.arange(4, device="cuda") + 4 * step
        a, b = loop.train_step(eager, index), loop.train_step(graphed, index)
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-5)
    assert graphed.graphs.mode == "cuda-graph"
    assert graphed.graphs.captured[4].lrs == (0.01,)
    for p, q in zip(_params(eager), _params(graphed), strict=False):
        torch.testing.assert_close(q, p, rtol=1e-3, atol=1e-5)


@pytest.mark.gpu
@cuda
@pytest.mark.parametrize("graphs", [False, True])
def test_no_training_step_synchronises_with_the_host(tmp_path, graphs):
    """torch.cuda.set_sync_debug_mode("error") raises at any synchronising call (.item(), a
    blocking copy, nonzero); a whole epoch of steps runs under it once warmed up and captured."""
    config = RunConfig(
        dataset="sample",
        model="unet",
        loss="dice+ce+dpt",
        protocol="smoke",
        overrides={"precision": "bf16"},
    )
    run = _run(tmp_path, "r", "cuda", False, config)
    if graphs:
        run.graphs = loop.StepGraphs(run, loop.capture_blocker(run))
    loop.train_epoch(run, Quiet())  # warm-up, capture
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        total = loop.train_epoch(run, Quiet())
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert torch.isfinite(total).item()
    if graphs:
        assert run.graphs.mode == "cuda-graph"
