"""`focalbench train` end to end on the shipped sample with the smoke protocol, resume, faults."""

import json
import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

import focalbench
from focalbench.cli import app
from focalbench.config import RunConfig
from focalbench.engine import loop
from focalbench.errors import FocalbenchError

SMOKE = ["--dataset", "sample", "--model", "unet", "--loss", "dice", "--protocol", "smoke"]
RUN_FILES = {
    "config.json",
    "status.json",
    "history.csv",
    "per_image.csv",
    "metrics.json",
    "test_samples.npz",
    "last.pt",
    "best.pt",
}


def _cli(*args):
    return CliRunner().invoke(app, ["train", *args])


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    results = tmp_path_factory.mktemp("results")
    out = _cli(*SMOKE, "--results", str(results), "--json")
    assert out.exit_code == 0, out.output
    summary = json.loads(out.stdout)
    return summary, Path(summary["run_dir"])


def test_run_folder_is_complete_and_named_by_the_config_key(smoke_run):
    summary, run_dir = smoke_run
    key = RunConfig(dataset="sample", model="unet", loss="dice", protocol="smoke").key
    assert run_dir.name == key == summary["key"]
    assert RUN_FILES <= {p.name for p in run_dir.iterdir()}
    assert not [p for p in run_dir.iterdir() if p.name.endswith(".tmp")]
    assert not (run_dir / "best.previous.pt").exists()  # a resume's only; gone once done
    status = json.loads((run_dir / "status.json").read_text())
    assert status["state"] == "done" and status["error"] is None and status["epoch"] == 5
    times = [status[k] for k in ("started", "updated", "finished")]
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", t) for t in times), (
        times
    )  # ISO 8601 UTC
    config = json.loads((run_dir / "config.json").read_text())
    assert config["key"] == key and config["resolved"]["size"] == [64, 64]
    assert config["resolved"]["model_params"] == focalbench.models.model_info("unet")["tiny_params"]


def test_validation_dsc_improves_over_the_first_epoch(smoke_run):
    history = pd.read_csv(smoke_run[1] / "history.csv")
    assert list(history.columns[:8]) == [
        "epoch",
        "train_loss",
        "val_loss",
        "val_dsc",
        "val_precision",
        "val_recall",
        "lr",
        "seconds",
    ]
    assert history["epoch"].tolist() == [1, 2, 3, 4, 5]
    assert history["val_dsc"].iloc[1:].max() > history["val_dsc"].iloc[0] + 0.02
    assert history["train_loss"].iloc[-1] < history["train_loss"].iloc[0]


def test_test_metrics_are_in_range_and_recompute_from_per_image_csv(smoke_run):
    summary, run_dir = smoke_run
    metrics = json.loads((run_dir / "metrics.json").read_text())
    per_image = pd.read_csv(run_dir / "per_image.csv")
    assert len(per_image) == metrics["n_test"] == 10
    # DSC from the counts by hand: 2tp / (2tp + fp + fn).
    tp, fp, fn = per_image["tp"], per_image["fp"], per_image["fn"]
    np.testing.assert_allclose(per_image["dsc"], 2 * tp / (2 * tp + fp + fn), rtol=1e-12)
    assert (per_image[["tp", "fp", "fn", "tn"]].sum(axis=1) == 64 * 64).all()
    for name, value in metrics["test"].items():
        assert 0.0 <= value <= 1.0
        assert per_image[name].mean() == pytest.approx(value, rel=1e-9)
    assert summary["test"] == metrics["test"]
    assert metrics["test"]["dsc"] > 0.4  # better than all-foreground (~0.25 on these nuclei)
    assert metrics["best_epoch"] == pd.read_csv(run_dir / "history.csv")["val_loss"].idxmin() + 1


def test_test_samples_hold_images_masks_and_probabilities(smoke_run):
    with np.load(smoke_run[1] / "test_samples.npz") as npz:
        assert npz["images"].shape == (4, 3, 64, 64) and npz["images"].dtype == np.uint8
        assert npz["masks"].shape == npz["probs"].shape == (4, 64, 64)
        assert set(np.unique(npz["masks"])) <= {0, 1}
        assert len(npz["ids"]) == 4


def test_rerunning_a_finished_cell_returns_the_stored_summary(smoke_run, monkeypatch):
    summary, run_dir = smoke_run
    monkeypatch.setattr(
        loop, "setup", lambda *a, **k: pytest.fail("a finished cell must not train again")
    )
    again = focalbench.train(
        RunConfig(dataset="sample", model="unet", loss="dice", protocol="smoke"),
        results=run_dir.parent.parent,
        progress=False,
    )
    assert again == summary


def _history(results: Path) -> pd.DataFrame:
    (run_dir,) = (results / "runs").iterdir()
    return pd.read_csv(run_dir / "history.csv").drop(columns="seconds")


def test_a_run_interrupted_after_epoch_2_resumes_to_the_same_history(tmp_path):
    config = RunConfig(
        dataset="sample", model="unet", loss="dice", protocol="smoke", epochs=4, seed=3
    )
    whole = focalbench.train(config, results=tmp_path / "a", progress=False)

    def stop_after_2(epoch, row):
        if epoch == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        focalbench.train(config, results=tmp_path / "b", progress=False, on_epoch_end=stop_after_2)
    (run_dir,) = (tmp_path / "b" / "runs").iterdir()
    status = json.loads((run_dir / "status.json").read_text())
    assert status["state"] == "failed" and "resume" in status["error"] and status["epoch"] == 2
    assert len(pd.read_csv(run_dir / "history.csv")) == 2
    resumed = focalbench.train(config, results=tmp_path / "b", progress=False)
    pd.testing.assert_frame_equal(
        _history(tmp_path / "a"), _history(tmp_path / "b"), check_exact=True
    )
    assert resumed["test"] == whole["test"]


def test_no_resume_starts_over(tmp_path):
    config = RunConfig(dataset="sample", model="unet", loss="dice", protocol="smoke", epochs=1)
    focalbench.train(config, results=tmp_path, progress=False)
    calls = []
    focalbench.train(
        config,
        results=tmp_path,
        progress=False,
        resume=False,
        on_epoch_end=lambda e, r: calls.append(e),
    )
    assert calls == [1]


def test_hd95_is_opt_in_and_its_mean_skips_undefined_images(tmp_path):
    config = RunConfig(
        dataset="sample",
        model="unet",
        loss="dice",
        protocol="smoke",
        epochs=1,
        overrides={"hd95": True},
    )
    summary = focalbench.train(config, results=tmp_path, progress=False)
    per_image = pd.read_csv(Path(summary["run_dir"]) / "per_image.csv")
    assert (per_image["hd95"].dropna() >= 0).all()
    assert summary["test"]["hd95"] == pytest.approx(per_image["hd95"].mean(skipna=True))
    plain = focalbench.train(config.replace(overrides={}), results=tmp_path, progress=False)
    assert "hd95" not in pd.read_csv(Path(plain["run_dir"]) / "per_image.csv").columns


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--model", "unte"], "did you mean 'unet'"),
        (["--loss", "dise"], "dice"),
        (["--protocol", "paper9"], "choose from: paper000"),
        (["--dataset", "sampel"], "did you mean 'sample'"),
        (["--dataset", "drive"], "focalbench fetch drive"),
        (["--device", "cuda"], "--device cpu"),
        (["--device", "tpu"], "--device auto, cpu, cuda or cuda:N"),
        (["--param", "size=50x50"], "50"),
        (["--param", "batchsize=2"], "choose from"),
    ],
)
def test_user_mistakes_exit_2_with_one_actionable_line(tmp_path, args, needle):
    options = dict(zip(SMOKE[::2], SMOKE[1::2], strict=False))
    extra = []
    if args[0] == "--param":
        extra = args
    else:
        options[args[0]] = args[1]
    argv = [x for pair in options.items() for x in pair]
    out = _cli(*argv, *extra, "--results", str(tmp_path), "--epochs", "1", "--json")
    assert out.exit_code == 2, out.output
    assert out.stderr.startswith("error: ") and needle in out.stderr
    assert out.stderr.count("\n") == 1


def test_results_folder_not_writable_names_the_flag(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    out = _cli(*SMOKE, "--results", str(blocker / "sub"), "--json")
    assert out.exit_code == 2 and "--results" in out.stderr


def test_a_diverging_run_exits_1_marked_failed(tmp_path):
    # Adam with lr 1e30 blows the weights up within the first epoch.
    out = _cli(
        *SMOKE,
        "--results",
        str(tmp_path),
        "--param",
        "lr=1e30",
        "--param",
        "schedule=constant",
        "--json",
    )
    assert out.exit_code == 1, out.output
    summary = json.loads(out.stdout)
    assert summary["state"] == "failed" and summary["error"].startswith(
        "non-finite loss at epoch 1"
    )
    status = json.loads((Path(summary["run_dir"]) / "status.json").read_text())
    assert status["state"] == "failed" and status["error"] == summary["error"]
    # The rerun returns the stored result and says, in one line, that it diverged and how to retrain.
    again = _cli(
        *SMOKE, "--results", str(tmp_path), "--param", "lr=1e30", "--param", "schedule=constant"
    )
    assert again.exit_code == 1, again.output
    assert again.stderr.splitlines() == [
        f"run diverged: {summary['error']}; rerun with --no-resume to train it again from scratch",
        f"run folder: {summary['run_dir']}",
    ]


def test_a_nan_in_epoch_2_names_the_last_finite_epoch_and_keeps_its_checkpoint(
    tmp_path, monkeypatch
):
    real, calls = loop.train_epoch, []

    def nan_in_second_epoch(run, display):
        calls.append(1)
        loss = real(run, display)
        return loss * math.nan if len(calls) == 2 else loss

    monkeypatch.setattr(loop, "train_epoch", nan_in_second_epoch)
    config = RunConfig(dataset="sample", model="unet", loss="dice", protocol="smoke")
    summary = focalbench.train(config, results=tmp_path, progress=False)
    run_dir = Path(summary["run_dir"])
    first = pd.read_csv(run_dir / "history.csv").iloc[0]
    assert summary["state"] == "failed"
    assert summary["error"] == (
        f"non-finite loss at epoch 2 (train_loss=nan, val_loss={summary['error'].split('val_loss=')[1].split(')')[0]}); "
        f"last finite: epoch 1 train_loss={first['train_loss']:.6g} val_loss={first['val_loss']:.6g}"
    )
    assert torch.load(run_dir / "last.pt", weights_only=False)["epoch"] == 1
    # A diverged cell is a result: rerunning returns it instead of diverging again.
    monkeypatch.setattr(loop, "setup", lambda *a, **k: pytest.fail("must not train again"))
    assert focalbench.train(config, results=tmp_path, progress=False) == summary


def test_out_of_memory_names_batch_size_and_size(tmp_path, monkeypatch):
    def oom(run, display):
        raise torch.OutOfMemoryError("CUDA out of memory")

    monkeypatch.setattr(loop, "train_epoch", oom)
    config = RunConfig(dataset="sample", model="unet", loss="dice", protocol="smoke")
    with pytest.raises(FocalbenchError, match="batch size 4 and size 64x64.*--param batch_size"):
        focalbench.train(config, results=tmp_path, progress=False)
    (run_dir,) = (tmp_path / "runs").iterdir()
    assert json.loads((run_dir / "status.json").read_text())["state"] == "failed"


def test_a_crash_between_last_pt_and_history_of_the_final_epoch_is_repaired_on_resume(
    tmp_path, monkeypatch
):
    config = RunConfig(dataset="sample", model="unet", loss="dice", protocol="smoke", epochs=2)
    write_history = loop.RunFolder.write_history

    def crash_on_epoch_2(self, rows):
        if len(rows) == 2:  # last.pt of epoch 2 is on disk, history.csv still holds epoch 1
            raise KeyboardInterrupt
        write_history(self, rows)

    monkeypatch.setattr(loop.RunFolder, "write_history", crash_on_epoch_2)
    with pytest.raises(KeyboardInterrupt):
        focalbench.train(config, results=tmp_path, progress=False)
    monkeypatch.setattr(loop.RunFolder, "write_history", write_history)
    (run_dir,) = (tmp_path / "runs").iterdir()
    assert len(pd.read_csv(run_dir / "history.csv")) == 1
    focalbench.train(config, results=tmp_path, progress=False)
    history = pd.read_csv(run_dir / "history.csv")
    assert history["epoch"].tolist() == [1, 2]
    saved = torch.load(run_dir / "last.pt", weights_only=False)["history"]
    assert history["val_loss"].tolist() == [row["val_loss"] for row in saved]


def test_paper003_scores_at_native_size_with_the_working_size_and_smoothed_scores_beside(tmp_path):
    # paper 003's recipe on the sample (native 128×128) trained at 64×64: the test counts cover
    # every native pixel, the working counts every working pixel, and the tested epoch is the one
    # with the highest validation soft Dice.
    config = RunConfig(
        dataset="sample",
        model="unet",
        loss="dice",
        protocol="paper003",
        fold=0,
        epochs=3,
        overrides={"tiny_model": True, "size": [64, 64], "lr": 0.05},
    )
    summary = loop.train(config, results=tmp_path, progress=False)
    run = Path(summary["run_dir"])
    per_image = pd.read_csv(run / "per_image.csv")
    assert len(per_image) == 12  # keras-25-15 on 48 images: ⌈12⌉ test
    assert (per_image[["tp", "fp", "fn", "tn"]].sum(axis=1) == 128 * 128).all()
    assert (
        per_image[[f"working_{k}" for k in ("tp", "fp", "fn", "tn")]].sum(axis=1) == 64 * 64
    ).all()
    tp, fp, fn = (per_image[k].to_numpy(float) for k in ("tp", "fp", "fn"))
    assert np.allclose(per_image["smooth1_dsc"], (2 * tp + 1) / (2 * tp + fp + fn + 1))
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["scored_at"] == "native" and set(metrics["test_working"]) == set(metrics["test"])
    assert metrics["test_smooth1"]["smooth1_dsc"] == pytest.approx(per_image["smooth1_dsc"].mean())
    history = pd.read_csv(run / "history.csv")
    assert metrics["best_epoch"] == int(history.loc[history["val_soft_dice"].idxmax(), "epoch"])
    resolved = json.loads((run / "config.json").read_text())["resolved"]
    assert (resolved["split"], resolved["resize"], resolved["monitor"]) == (
        "keras-25-15-x5",
        "nearest",
        "val_soft_dice",
    )
    assert resolved["n_images"] == {"train": 30, "val": 6, "test": 12}


def test_ctrl_c_while_the_data_loads_marks_the_run_interrupted_and_a_rerun_finishes(
    tmp_path, monkeypatch
):
    config = RunConfig(dataset="sample", model="unet", loss="dice", protocol="smoke", epochs=1)

    def ctrl_c(*args, **kwargs):
        raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(loop.datasets, "load", ctrl_c)
        with pytest.raises(KeyboardInterrupt):
            focalbench.train(config, results=tmp_path, progress=False)
    status = json.loads((tmp_path / "runs" / config.key / "status.json").read_text())
    assert (status["state"], status["epoch"]) == ("failed", 0)
    assert status["error"].startswith("interrupted") and "resume" in status["error"]
    assert focalbench.train(config, results=tmp_path, progress=False)["state"] == "done"
