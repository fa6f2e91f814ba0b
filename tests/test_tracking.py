"""`train --log tensorboard/mlflow`: what a tracker holds, read back with the tracker's own reader.

One two-epoch smoke run of a network with Focal weights feeds both trackers; every value read
back is compared with the run folder the same run wrote (history.csv, metrics.json), which the
rest of the suite pins.
"""

import importlib.util
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from focalbench import tracking
from focalbench.cli import app
from focalbench.config import RunConfig
from focalbench.errors import FocalbenchError

HAS_TENSORBOARD = importlib.util.find_spec("tensorboard") is not None
HAS_MLFLOW = importlib.util.find_spec("mlflow") is not None
CONFIG = RunConfig(
    dataset="sample",
    model="focal-use-net",
    loss="dice",
    protocol="smoke",
    epochs=2,
    model_params={"width": 4},
    overrides={"batch_size": 2},
)
TRAIN = [
    "--dataset",
    "sample",
    "--model",
    "focal-use-net",
    "--loss",
    "dice",
    "--protocol",
    "smoke",
    "--epochs",
    "2",
    "--param",
    "model.width=4",
    "--param",
    "batch_size=2",
]


def test_metric_names_group_the_run_folder_columns():
    assert [tracking.metric_name(c) for c in ("train_loss", "val_dsc", "focal_se2", "lr")] == [
        "train/loss",
        "val/dsc",
        "focal/se2",
        "lr",
    ]


def test_params_are_the_nested_config_flattened_to_strings():
    flat = tracking.flatten(
        {
            "config": {"loss": "dice", "seed": 0},
            "resolved": {"lr": 1e-3, "size": [64, 64], "none": None, "empty": {}},
        }
    )
    assert flat == {
        "config.loss": "dice",
        "config.seed": "0",
        "resolved.lr": "0.001",
        "resolved.size": "[64, 64]",
        "resolved.none": "null",
        "resolved.empty": "{}",
    }


def test_a_sample_panel_is_input_then_truth_then_probability():
    image = np.full((1, 2, 2), 7, np.uint8)
    mask = np.array([[0, 1], [1, 0]])
    prob = np.array([[10, 20], [30, 40]], np.uint8)
    panel = tracking.sample_panel(image, mask, prob)
    assert panel.shape == (2, 6, 3) and panel.dtype == np.uint8
    assert (panel[..., 0] == [[7, 7, 0, 255, 10, 20], [7, 7, 255, 0, 30, 40]]).all()
    assert (panel[..., 0] == panel[..., 2]).all()  # grey: the three channels agree


def test_a_tracker_whose_package_is_missing_fails_before_training(tmp_path, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        tracking.importlib.util,
        "find_spec",
        lambda name, *a: None if name == "mlflow" else real(name, *a),
    )
    out = CliRunner().invoke(app, ["train", *TRAIN, "--results", str(tmp_path), "--log", "mlflow"])
    assert out.exit_code == 2
    assert "pip install 'focalbench[mlflow]'" in out.output
    assert not (tmp_path / "runs").exists()  # nothing was trained


def test_an_unknown_tracker_names_the_choices():
    with pytest.raises(
        FocalbenchError, match="unknown tracker 'wandb'; choose from: tensorboard, mlflow"
    ):
        tracking.check_trackers(["wandb"])


@pytest.fixture(scope="module")
def tracked_run(tmp_path_factory):
    if not (HAS_TENSORBOARD and HAS_MLFLOW):
        pytest.skip("needs both extras: pip install 'focalbench[tensorboard,mlflow]'")
    results = tmp_path_factory.mktemp("results")
    out = CliRunner().invoke(
        app,
        [
            "train",
            *TRAIN,
            "--results",
            str(results),
            "--json",
            "--log",
            "tensorboard",
            "--log",
            "mlflow",
        ],
    )
    assert out.exit_code == 0, out.output
    run_dir = Path(json.loads(out.stdout)["run_dir"])
    assert run_dir.name == CONFIG.key
    history = pd.read_csv(run_dir / "history.csv")
    test = json.loads((run_dir / "metrics.json").read_text())["test"]
    return results, run_dir, history, test


def test_tensorboard_holds_each_epoch_the_test_the_config_and_samples(tracked_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    _, run_dir, history, test = tracked_run
    events = EventAccumulator(str(run_dir / "tensorboard"), size_guidance={"images": 0}).Reload()
    focal = [c for c in history.columns if c.startswith("focal_")]
    assert len(focal) >= 1  # the network has Focal weights: one series per position
    for column in [
        "train_loss",
        "val_loss",
        "val_dsc",
        "val_precision",
        "val_recall",
        "lr",
        *focal,
    ]:
        points = events.Scalars(tracking.metric_name(column))
        assert [p.step for p in points] == [1, 2]
        np.testing.assert_allclose([p.value for p in points], history[column], rtol=1e-6)
    for score, value in test.items():
        (point,) = events.Scalars(f"test/{score}")
        assert point.step == 2 and point.value == pytest.approx(value, rel=1e-6)
    text = events.Tensors("config/text_summary")[0].tensor_proto.string_val[0].decode()
    assert CONFIG.key in text and '"batch_size": 2' in text
    with np.load(run_dir / "test_samples.npz") as samples:
        ids = [str(i) for i in samples["ids"]]
    assert sorted(t.removeprefix("test_samples/") for t in events.Tags()["images"]) == sorted(ids)
    (image,) = events.Images(f"test_samples/{ids[0]}")
    assert (image.width, image.height) == (3 * 64, 64)


def test_mlflow_holds_params_epoch_metrics_test_metrics_and_artifacts(tracked_run):
    from mlflow.tracking import MlflowClient

    results, run_dir, history, test = tracked_run
    stored = json.loads((run_dir / "mlflow.json").read_text())
    assert stored["tracking_uri"] == f"sqlite:///{(results / 'mlruns' / 'mlflow.db').resolve()}"
    client = MlflowClient(tracking_uri=stored["tracking_uri"])
    (run,) = client.search_runs([client.get_experiment_by_name("focalbench").experiment_id])
    assert run.info.run_id == stored["run_id"] and run.info.run_name == CONFIG.key
    assert run.info.status == "FINISHED"
    assert (
        run.data.params["config.loss"] == "dice" and run.data.params["resolved.batch_size"] == "2"
    )
    assert run.data.tags["focalbench.model"] == "focal-use-net"
    for column in [
        "train_loss",
        "val_dsc",
        "lr",
        *[c for c in history.columns if c.startswith("focal_")],
    ]:
        points = sorted(
            client.get_metric_history(run.info.run_id, tracking.metric_name(column)),
            key=lambda m: m.step,
        )
        assert [m.step for m in points] == [1, 2]
        np.testing.assert_allclose([m.value for m in points], history[column], rtol=1e-12)
    assert {
        k.removeprefix("test/"): v for k, v in run.data.metrics.items() if k.startswith("test/")
    } == pytest.approx(test, rel=1e-12)
    files = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"config.json", "history.csv", "metrics.json", "per_image.csv", "test_samples"} <= files
    assert len(client.list_artifacts(run.info.run_id, "test_samples")) == 4


class _StopAfterFirstEpoch(Exception):
    """Stands for a process killed once epoch 1's checkpoint is on disk."""


def _stop_after_first_epoch(epoch, row):
    if epoch == 1:
        raise _StopAfterFirstEpoch


def test_a_resumed_run_continues_the_same_mlflow_run_and_event_files(tmp_path):
    if not (HAS_TENSORBOARD and HAS_MLFLOW):
        pytest.skip("needs both extras: pip install 'focalbench[tensorboard,mlflow]'")
    from mlflow.tracking import MlflowClient
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    import focalbench

    config = RunConfig(
        dataset="sample",
        model="unet",
        loss="dice",
        protocol="smoke",
        epochs=2,
        overrides={"batch_size": 2},
    )
    trackers = ["tensorboard", "mlflow"]
    with pytest.raises(_StopAfterFirstEpoch):
        focalbench.train(
            config,
            results=tmp_path,
            progress=False,
            log=trackers,
            on_epoch_end=_stop_after_first_epoch,
        )
    summary = focalbench.train(config, results=tmp_path, progress=False, log=trackers)
    assert summary["state"] == "done" and summary["epochs"] == 2
    run_dir = Path(summary["run_dir"])
    history = pd.read_csv(run_dir / "history.csv")
    stored = json.loads((run_dir / "mlflow.json").read_text())
    client = MlflowClient(tracking_uri=stored["tracking_uri"])
    (run,) = client.search_runs([client.get_experiment_by_name("focalbench").experiment_id])
    assert run.info.status == "FINISHED"
    points = sorted(client.get_metric_history(run.info.run_id, "val/loss"), key=lambda m: m.step)
    assert [m.step for m in points] == [1, 2]  # each epoch once, in the one MLflow run
    np.testing.assert_allclose([m.value for m in points], history["val_loss"], rtol=1e-12)
    events = EventAccumulator(str(run_dir / "tensorboard")).Reload()
    assert [p.step for p in events.Scalars("val/loss")] == [1, 2]

    # --no-resume starts over: a second MLflow run, and only the new attempt's event files
    focalbench.train(config, results=tmp_path, progress=False, log=trackers, resume=False)
    again = json.loads((run_dir / "mlflow.json").read_text())["run_id"]
    runs = client.search_runs([client.get_experiment_by_name("focalbench").experiment_id])
    assert again != run.info.run_id and {r.info.run_id for r in runs} == {again, run.info.run_id}
    events = EventAccumulator(str(run_dir / "tensorboard")).Reload()
    assert [p.step for p in events.Scalars("val/loss")] == [1, 2]


def test_a_figure_file_becomes_a_tensorboard_image(tmp_path):
    if not HAS_TENSORBOARD:
        pytest.skip("needs the extra: pip install 'focalbench[tensorboard]'")
    import matplotlib.image
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    picture = np.zeros((5, 7, 3), np.uint8)
    picture[:, :, 0] = 255  # red
    matplotlib.image.imsave(tmp_path / "curves.png", picture)
    with tracking.open_trackers(["tensorboard"], tmp_path, tmp_path) as tracker:
        tracker.start({}, {})
        tracker.log_file(tmp_path / "curves.png")
        tracker.log_file(tmp_path / "config.json")  # not an image: TensorBoard keeps nothing
    events = EventAccumulator(str(tmp_path / "tensorboard"), size_guidance={"images": 0}).Reload()
    assert events.Tags()["images"] == ["figures/curves"]
    (image,) = events.Images("figures/curves")
    assert (image.width, image.height) == (7, 5)


def test_an_mlflow_uri_it_cannot_use_is_one_line_naming_the_option(tmp_path):
    if not HAS_MLFLOW:
        pytest.skip("needs the extra: pip install 'focalbench[mlflow]'")
    one_line = r"^MLflow store nosuchscheme://x: .*; check --mlflow-uri$"
    with pytest.raises(FocalbenchError, match=one_line):
        tracking.open_trackers(["mlflow"], tmp_path, tmp_path, mlflow_uri="nosuchscheme://x")


TINY_GRID = ["ablate", "--dataset", "sample", "--models", "unet", "--protocol", "smoke"]


def test_ablate_log_gives_every_cell_its_own_mlflow_run_and_event_files(tmp_path):
    """Two cells trained at once by two worker processes share one MLflow store: each cell is
    one FINISHED run (named by its key) whose epoch metrics are its own history.csv, and each
    run folder has its TensorBoard events."""
    if not (HAS_TENSORBOARD and HAS_MLFLOW):
        pytest.skip("needs both extras: pip install 'focalbench[tensorboard,mlflow]'")
    from mlflow.tracking import MlflowClient
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = CliRunner().invoke(
        app,
        [
            *TINY_GRID,
            "--losses",
            "dice,tversky",
            "--epochs",
            "2",
            "--param",
            "model.width=4",
            "--param",
            "batch_size=2",
            "--jobs",
            "2",
            "--results",
            str(tmp_path),
            "--log",
            "mlflow",
            "--log",
            "tensorboard",
            "--json",
        ],  # fmt: skip
    )
    assert out.exit_code == 0, out.output
    keys = {cell["key"] for cell in json.loads(out.stdout)["cells"]}
    assert len(keys) == 2
    client = MlflowClient(tracking_uri=f"sqlite:///{(tmp_path / 'mlruns' / 'mlflow.db').resolve()}")
    runs = client.search_runs([client.get_experiment_by_name("focalbench").experiment_id])
    assert {run.info.run_name for run in runs} == keys
    for run in runs:
        assert run.info.status == "FINISHED"
        run_dir = tmp_path / "runs" / run.info.run_name
        history = pd.read_csv(run_dir / "history.csv")
        points = sorted(
            client.get_metric_history(run.info.run_id, "train/loss"), key=lambda m: m.step
        )
        np.testing.assert_allclose([m.value for m in points], history["train_loss"], rtol=1e-12)
        events = EventAccumulator(str(run_dir / "tensorboard")).Reload()
        assert [p.step for p in events.Scalars("val/dsc")] == [1, 2]


def test_ablate_with_an_mlflow_store_it_cannot_use_fails_before_any_cell(tmp_path):
    if not HAS_MLFLOW:
        pytest.skip("needs the extra: pip install 'focalbench[mlflow]'")
    out = CliRunner().invoke(
        app,
        [
            *TINY_GRID,
            "--losses",
            "dice",
            "--results",
            str(tmp_path),
            "--log",
            "mlflow",
            "--mlflow-uri",
            "nosuchscheme://x",
        ],  # fmt: skip
    )
    assert out.exit_code == 2
    assert out.output.strip().splitlines()[-1].startswith("error: MLflow store nosuchscheme://x")
    assert not (tmp_path / "runs").exists() and not (tmp_path / "grids").exists()
