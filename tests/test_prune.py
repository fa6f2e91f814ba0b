"""The paper-000 pruning rule (keep w > τ) on hand-written run folders, API and CLI."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from focalbench.cli import app
from focalbench.config import RunConfig
from focalbench.errors import FocalbenchError
from focalbench.prune import decide, final_focal_weights, keep, prune, record
from focalbench.store import atomic_write_json, atomic_write_text, read_json

SOURCE = RunConfig(
    dataset="sample",
    model="focal-use-net",
    loss="ufl(gamma=0.2)",
    protocol="smoke",
    seed=3,
    model_params={"focal_init": 0.0, "width": 4},
    overrides={"batch_size": 2},
)


def _run_folder(
    results, weights: dict[str, float], state: str = "done", config: RunConfig = SOURCE
):
    """A finished run folder as train writes it: config.json, status.json, history.csv."""
    run_dir = results / "runs" / config.key
    atomic_write_json(
        run_dir / "config.json", {"config": config.to_dict(), "key": config.key, "resolved": {}}
    )
    atomic_write_json(run_dir / "status.json", {"state": state, "error": None})
    focal = [f"focal_{name}" for name in weights]
    head = ["epoch", "train_loss", "val_loss", "val_dsc", "lr", "seconds", *focal]
    first = [
        "1",
        "0.9",
        "0.9",
        "0.1",
        "0.001",
        "1.0",
        *["0.5"] * len(weights),
    ]  # not the final epoch
    last = ["2", "0.5", "0.6", "0.4", "0.001", "1.0", *[repr(w) for w in weights.values()]]
    atomic_write_text(
        run_dir / "history.csv", "\n".join(",".join(r) for r in (head, first, last)) + "\n"
    )
    return run_dir


def test_rule_keeps_strictly_greater_than_tau_in_position_order():
    decided = keep({"se3": 0.21, "se1": 0.5, "se2": 0.2, "se4": 0.0}, 0.2)
    assert [(w.position, w.kept) for w in decided] == [(1, True), (2, False), (3, True), (4, False)]


def test_final_weights_are_the_last_epoch_row(tmp_path):
    run_dir = _run_folder(tmp_path, {"se1": 0.05, "se2": 0.31})
    assert final_focal_weights(run_dir) == {"se1": 0.05, "se2": 0.31}


def test_kept_positions_start_at_one_and_keep_every_other_setting(tmp_path):
    weights = {
        f"se{i}": w for i, w in enumerate([0.1, 0.35, 0.0, 0.19, 0.2, 0.9, 0.05, 0.01, 0.6], 1)
    }
    decision = decide(_run_folder(tmp_path, weights), 0.2)
    assert decision.kept == [2, 6, 9]
    assert decision.config == SOURCE.replace(
        model_params={"width": 4, "positions": [2, 6, 9], "focal_init": 1.0}, pruned_from=SOURCE.key
    )
    assert decision.source == SOURCE.key
    assert decision.note == "kept se2, se6, se9 of 9 at τ = 0.2"


def test_removing_every_module_gives_the_plain_unet(tmp_path):
    decision = decide(_run_folder(tmp_path, {"ag1": 0.0, "ag2": 0.1, "ag3": 0.2, "ag4": 0.15}))
    assert decision.kept == []
    # the U-Net row's network (same dataset, loss, protocol, seed and params), but its own cell:
    # the pruned column is retrained by the pruning step and its folder names the source
    unet = RunConfig(
        dataset="sample",
        model="unet",
        loss="ufl(gamma=0.2)",
        protocol="smoke",
        seed=3,
        model_params={"width": 4},
        overrides={"batch_size": 2},
    )
    assert decision.config == unet.replace(pruned_from=SOURCE.key)
    assert decision.config.key != unet.key


@pytest.mark.parametrize(
    ("state", "weights", "message"),
    [("running", {"se1": 0.5}, "is running, not done"), ("done", {}, "has no focal weights")],
)
def test_unfinished_or_unfocal_runs_are_refused(tmp_path, state, weights, message):
    with pytest.raises(FocalbenchError, match=message):
        decide(_run_folder(tmp_path, weights, state=state))


def test_prune_without_retrain_writes_nothing_and_record_writes_the_decision(tmp_path):
    run_dir = _run_folder(tmp_path, {"se1": 0.3, "se2": 0.1})
    runs = sorted((tmp_path / "runs").iterdir())
    out = prune(run_dir, threshold=0.2)
    assert (
        sorted((tmp_path / "runs").iterdir()) == runs
    )  # no half-made run folder (issue 15 item 10)
    record(decide(run_dir, 0.2), tmp_path)
    stored = read_json(tmp_path / "runs" / out["key"] / "pruned.json")
    assert stored["pruned_from"] == SOURCE.key
    assert stored["kept"] == [1] and stored["config"]["model_params"]["positions"] == [1]
    assert out["run"] is None


def test_cli_prints_the_table_and_json(tmp_path):
    run_dir = _run_folder(tmp_path, {"se1": 0.3, "se2": 0.1})
    runner = CliRunner()
    table = runner.invoke(app, ["prune", str(run_dir)])
    assert table.exit_code == 0, table.output
    assert "0.3000" in table.output and "kept" in table.output and "removed" in table.output
    as_json = runner.invoke(app, ["prune", str(run_dir), "--threshold", "0.05", "--json"])
    assert json.loads(as_json.output)["kept"] == [1, 2]
    missing = runner.invoke(app, ["prune", str(tmp_path / "runs" / "nope")])
    assert missing.exit_code == 2 and "error:" in missing.output


def test_retrain_checks_every_input_before_the_pruned_run_folder_exists(tmp_path):
    """prune --retrain shares train's checks: a bad parameter of the source is one line, exit 2,
    and no pruned run folder (nor its pruned.json) is left behind."""
    import torch

    bad = SOURCE.replace(overrides={"batch_sise": 2})
    run_dir = _run_folder(tmp_path, {"se1": 0.5, "se2": 0.1}, config=bad)
    before = {p.name for p in (tmp_path / "runs").iterdir()}
    out = CliRunner().invoke(app, ["prune", str(run_dir), "--retrain"])
    assert out.exit_code == 2 and "did you mean --param batch_size=" in out.output
    assert {p.name for p in (tmp_path / "runs").iterdir()} == before
    if not torch.cuda.is_available():
        good = _run_folder(tmp_path, {"se1": 0.5, "se2": 0.1})
        out = CliRunner().invoke(app, ["prune", str(good), "--retrain", "--device", "cuda"])
        assert out.exit_code == 2 and "no CUDA device is visible" in out.output
        assert {p.name for p in (tmp_path / "runs").iterdir()} == before | {good.name}


def test_prune_retrain_log_mirrors_the_retraining_and_log_alone_is_refused(tmp_path):
    """prune --retrain --log tensorboard writes the pruned run's epochs as event files in its
    folder, each equal to its history.csv; --log without --retrain is one line, exit 2."""
    pytest.importorskip(
        "tensorboard", reason="the tensorboard extra: pip install 'focalbench[tensorboard]'"
    )
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    short = SOURCE.replace(overrides={**SOURCE.overrides, "epochs": 2})
    run_dir = _run_folder(tmp_path, {"se1": 0.5, "se2": 0.1}, config=short)
    alone = CliRunner().invoke(app, ["prune", str(run_dir), "--log", "tensorboard"])
    assert alone.exit_code == 2
    assert (
        alone.output.strip() == "error: --log mirrors the retraining; add --retrain or drop --log"
    )

    out = CliRunner().invoke(
        app,
        ["prune", str(run_dir), "--retrain", "--log", "tensorboard", "--device", "cpu", "--json"],
    )
    assert out.exit_code == 0, out.output
    pruned = tmp_path / "runs" / json.loads(out.output)["key"]
    events = EventAccumulator(str(pruned / "tensorboard")).Reload()
    with open(pruned / "history.csv") as f:
        losses = [float(row.split(",")[1]) for row in f.read().splitlines()[1:]]
    logged = [e.value for e in events.Scalars("train/loss")]
    assert len(losses) == 2 and logged == pytest.approx(losses, rel=1e-6)
