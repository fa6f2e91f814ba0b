"""`predict` and `export` on a network trained (one smoke epoch) on an imported folder.

The independent value throughout is the run's pipeline recomputed by hand: the prepared arrays
of the dataset at the working size, normalised with μ, σ computed in float64 from the training
split, through the saved weights and a sigmoid.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from test_user_datasets import make_original_gt
from typer.testing import CliRunner

from focalbench import models
from focalbench.cli import app
from focalbench.datasets import get_split, load
from focalbench.datasets.user import import_dataset
from focalbench.errors import FocalbenchError
from focalbench.prediction import predict
from focalbench.trained import load_trained


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """An original/ + GT/ folder imported as ``us`` and one smoke epoch of a tiny U-Net trained on
    it with zscore_dataset normalisation (the recipe whose statistics predict must reuse)."""
    root = tmp_path_factory.mktemp("trained")
    make_original_gt(root / "us")
    import_dataset("us", root / "us", data_dir=root / "data", progress=False)
    out = CliRunner().invoke(
        app,
        [
            "train",
            "--dataset",
            "us",
            "--model",
            "unet",
            "--loss",
            "dice",
            "--protocol",
            "smoke",
            "--epochs",
            "1",
            "--param",
            "normalization=zscore_dataset",
            "--data-dir",
            str(root / "data"),
            "--results",
            str(root / "results"),
            "--device",
            "cpu",
            "--json",
        ],
    )
    assert out.exit_code == 0, out.output
    run_dir = Path(json.loads(out.stdout)["run_dir"])
    return root, run_dir


def _by_hand(run_dir: Path, root: Path, images: np.ndarray) -> torch.Tensor:
    """sigmoid(net((x − μ) / σ)) with μ, σ in float64 over the training split's pixels."""
    config = json.loads((run_dir / "config.json").read_text())
    resolved = config["resolved"]
    data = load("us", size=tuple(resolved["size"]), data_dir=root / "data")
    train = data.images[
        get_split(data, resolved["split"], seed=resolved["split_seed"])["train"]
    ].astype(np.float64)
    mean, std = train.mean(axis=(0, 2, 3)), train.std(axis=(0, 2, 3))
    assert np.allclose(resolved["input_mean"], mean, rtol=1e-5) and np.allclose(
        resolved["input_std"], std, rtol=1e-5
    )
    x = (images.astype(np.float64) - mean[None, :, None, None]) / std[None, :, None, None]
    net = models.build_model("unet", in_channels=1, **resolved["model_params"])
    net.load_state_dict(torch.load(run_dir / "best.pt", weights_only=False)["model"])
    with torch.no_grad():
        return torch.sigmoid(net.eval()(torch.from_numpy(x).float()))[:, 0]


def test_predict_preprocesses_exactly_like_training(trained):
    root, run_dir = trained
    net = load_trained(run_dir)
    data = load("us", size=net.size, data_dir=root / "data")
    i = data.ids.index("3")
    image, native = net.prepare((root / "us" / "original" / "3.png").read_bytes())
    assert np.array_equal(image, data.images[i]) and native == (44, 44)
    got = net.probabilities(torch.from_numpy(image[None]))
    assert torch.allclose(got, _by_hand(run_dir, root, image[None]), atol=1e-5)


def test_predict_writes_one_binary_mask_per_input_at_native_size(trained, tmp_path):
    root, run_dir = trained
    inputs = sorted((root / "us" / "original").glob("*.png"))
    out = CliRunner().invoke(
        app,
        [
            "predict",
            str(run_dir),
            str(root / "us" / "original"),
            "--out",
            str(tmp_path / "p"),
            "--probabilities",
            "--overlay",
            "--device",
            "cpu",
        ],
    )
    assert out.exit_code == 0, out.output
    assert f"{len(inputs)} mask(s) written" in out.output
    for path in inputs:
        native = Image.open(path).size[::-1]
        mask = np.asarray(Image.open(tmp_path / "p" / f"{path.stem}.png"))
        assert mask.shape == native and set(np.unique(mask)) <= {0, 255}
        prob = Image.open(tmp_path / "p" / f"{path.stem}_prob.png")
        assert np.asarray(prob).dtype == np.uint16 and np.asarray(prob).shape == native
        assert np.array_equal(np.asarray(prob).astype(np.float64) / 65535 > 0.5, mask == 255)
        assert np.asarray(Image.open(tmp_path / "p" / f"{path.stem}_overlay.png")).shape == (
            *native,
            3,
        )


def test_a_working_size_image_gets_the_hand_computed_mask_with_and_without_tta(trained, tmp_path):
    root, run_dir = trained
    net = load_trained(run_dir)
    rng = np.random.default_rng(7)
    pixels = rng.integers(0, 256, net.size).astype(np.uint8)
    Image.fromarray(pixels, "L").save(tmp_path / "square.png")
    expected = _by_hand(run_dir, root, pixels[None, None])[0].numpy()
    x = pixels[None, None]
    flips = [
        _by_hand(run_dir, root, np.ascontiguousarray(np.flip(x, d) if d else x))[0].numpy()
        for d in (None, 3, 2, (2, 3))
    ]
    unflipped = [flips[0], np.flip(flips[1], 1), np.flip(flips[2], 0), np.flip(flips[3], (0, 1))]
    for tta, prob in ((False, expected), (True, np.mean(unflipped, axis=0))):
        result = predict(
            run_dir,
            [tmp_path / "square.png"],
            tmp_path / f"o{tta}",
            tta=tta,
            device="cpu",
            progress=False,
        )
        mask = np.asarray(Image.open(result["written"][0]["mask"]))
        clear = (
            np.abs(prob - 0.5) > 1e-4
        )  # pixels whose side of the threshold is not a rounding matter
        assert np.array_equal((mask == 255)[clear], (prob > 0.5)[clear])


def test_an_unreadable_input_is_reported_and_skipped(trained, tmp_path):
    root, run_dir = trained
    (tmp_path / "broken.png").write_bytes(b"\x89PNG not really")
    shutil.copy(root / "us" / "original" / "1.png", tmp_path / "good.png")
    out = CliRunner().invoke(
        app,
        [
            "predict",
            str(run_dir),
            str(tmp_path / "*.png"),
            "--out",
            str(tmp_path / "p"),
            "--device",
            "cpu",
        ],
    )
    assert out.exit_code == 0, out.output
    assert "skipped 1 unreadable file(s)" in out.output and "broken.png" in out.output
    assert sorted(p.name for p in (tmp_path / "p").iterdir()) == ["good.png"]


def test_a_run_folder_without_weights_is_one_line(trained, tmp_path):
    _, run_dir = trained
    bare = tmp_path / "bare"
    bare.mkdir()
    shutil.copy(run_dir / "config.json", bare / "config.json")
    image = str(trained[0] / "us" / "original" / "1.png")
    out = CliRunner().invoke(app, ["predict", str(bare), image, "--out", str(tmp_path / "p")])
    assert out.exit_code == 2 and out.output.count("\n") == 1
    assert "has no best.pt; train it first" in out.output
    shutil.copy(run_dir / "last.pt", bare / "last.pt")
    with pytest.raises(
        FocalbenchError, match="has no best.pt; it has last.pt: pass --checkpoint last"
    ):
        load_trained(bare)
    assert load_trained(bare, "last").weights.name == "last.pt"
    with pytest.raises(FocalbenchError, match="is not a run folder"):
        load_trained(tmp_path)
    with pytest.raises(FocalbenchError, match="does not exist"):
        predict(run_dir, [tmp_path / "nope.png"], tmp_path / "p")


def _sample(run_dir: Path) -> np.ndarray:
    return np.random.default_rng(3).integers(0, 256, (3, 1, 64, 64)).astype(np.uint8)


def test_torchscript_export_loads_with_torch_jit_and_matches_the_run(trained, tmp_path):
    root, run_dir = trained
    out = CliRunner().invoke(
        app, ["export", str(run_dir), "--format", "torchscript", "--out", str(tmp_path / "net.pt")]
    )
    assert out.exit_code == 0, out.output
    assert "max |difference| vs torch" in out.output
    loaded = torch.jit.load(str(tmp_path / "net.pt"))
    x = _sample(run_dir)
    with torch.no_grad():
        got = loaded(torch.from_numpy(x).float())[:, 0]
    assert torch.allclose(got, _by_hand(run_dir, root, x), atol=1e-5)
    sidecar = json.loads((tmp_path / "net.json").read_text())
    resolved = json.loads((run_dir / "config.json").read_text())["resolved"]
    assert (
        sidecar["input_size"] == [64, 64]
        and sidecar["channels"] == 1
        and sidecar["threshold"] == 0.5
    )
    assert sidecar["normalization"] == {
        "mode": "zscore_dataset",
        "mean": resolved["input_mean"],
        "std": resolved["input_std"],
    }
    assert sidecar["max_abs_diff"] <= 1e-4


def test_onnx_export_runs_in_onnxruntime_within_1e_4(trained, tmp_path):
    onnxruntime = pytest.importorskip("onnxruntime", reason="the onnx extra is not installed")
    pytest.importorskip("onnx", reason="the onnx extra is not installed")
    root, run_dir = trained
    out = CliRunner().invoke(
        app,
        ["export", str(run_dir), "--format", "onnx", "--out", str(tmp_path / "net.onnx"), "--json"],
    )
    assert out.exit_code == 0, out.output
    assert json.loads(out.stdout)["max_abs_diff"] <= 1e-4
    session = onnxruntime.InferenceSession(
        str(tmp_path / "net.onnx"), providers=["CPUExecutionProvider"]
    )
    x = _sample(run_dir)
    (got,) = session.run(["probability"], {"image": x.astype(np.float32)})
    assert np.abs(got[:, 0] - _by_hand(run_dir, root, x).numpy()).max() <= 1e-4


def test_busi_style_folder_trains_predicts_and_exports(tmp_path):
    from test_user_datasets import make_busi

    make_busi(tmp_path / "busi")
    runner = CliRunner()
    data, results = str(tmp_path / "data"), str(tmp_path / "results")
    out = runner.invoke(app, ["import", "mybusi", str(tmp_path / "busi"), "--data-dir", data])
    assert out.exit_code == 0 and "layout: suffix" in out.output, out.output
    out = runner.invoke(
        app,
        [
            "train",
            "--dataset",
            "mybusi",
            "--model",
            "unet",
            "--loss",
            "dice",
            "--protocol",
            "smoke",
            "--epochs",
            "1",
            "--data-dir",
            data,
            "--results",
            results,
            "--device",
            "cpu",
            "--json",
        ],
    )
    assert out.exit_code == 0, out.output
    run_dir = json.loads(out.stdout)["run_dir"]
    out = runner.invoke(
        app,
        [
            "predict",
            run_dir,
            str(tmp_path / "busi" / "*" / "*).png"),
            "--out",
            str(tmp_path / "p"),
            "--json",
        ],
    )
    assert out.exit_code == 0, out.output
    written = json.loads(out.stdout)["written"]
    assert len(written) == 8  # the images, not their masks
    for item in written:
        mask = np.asarray(Image.open(item["mask"]))
        assert mask.shape == Image.open(item["input"]).size[::-1] and set(np.unique(mask)) <= {
            0,
            255,
        }
    out = runner.invoke(
        app, ["export", run_dir, "--format", "torchscript", "--out", str(tmp_path / "busi.pt")]
    )
    assert out.exit_code == 0, out.output
    assert torch.jit.load(str(tmp_path / "busi.pt"))(torch.zeros(2, 3, 64, 64)).shape == (
        2,
        1,
        64,
        64,
    )


def test_import_predict_and_export_are_functions_of_the_package_api():
    import focalbench
    import focalbench.cli  # noqa: F401  (imports the modules behind the commands)
    from focalbench import exporter, prediction
    from focalbench.datasets import user

    assert focalbench.predict is prediction.predict and focalbench.export is exporter.export
    assert focalbench.import_dataset is user.import_dataset
