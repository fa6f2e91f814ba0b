"""`focalbench import`: the four layouts, the mask rules, every bad case, listing and removal.

Each test builds its own tiny folder; expected foreground percentages are computed from the
arrays the test wrote (mean over images of the per-image foreground fraction, union of masks).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from focalbench.cli import app
from focalbench.datasets import dataset_status, get_spec, load, paper_settings
from focalbench.datasets.user import import_dataset, remove_dataset, user_datasets
from focalbench.errors import FocalbenchError

SIZES = [(40, 48), (36, 52), (44, 44), (40, 40), (48, 36), (32, 40), (40, 56), (36, 36)]


def _blob(shape: tuple[int, int], seed: int) -> np.ndarray:
    """A bool disc somewhere in the image (the foreground of the tiny test datasets)."""
    rng = np.random.default_rng(seed)
    h, w = shape
    cy, cx, r = (
        rng.integers(h // 4, 3 * h // 4),
        rng.integers(w // 4, 3 * w // 4),
        rng.integers(4, min(h, w) // 3),
    )
    yy, xx = np.mgrid[:h, :w]
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= r**2


def _grey(mask: np.ndarray, seed: int) -> Image.Image:
    rng = np.random.default_rng(100 + seed)
    img = rng.integers(0, 120, mask.shape) + 120 * mask
    return Image.fromarray(img.astype(np.uint8), "L")


def make_original_gt(root: Path) -> float:
    """``original/`` + ``GT/``: greyscale images of varying sizes; masks alternate 1-bit and 8-bit
    {0, 255}. Returns the expected foreground %."""
    (root / "original").mkdir(parents=True)
    (root / "GT").mkdir()
    fractions = []
    for i, shape in enumerate(SIZES, start=1):
        mask = _blob(shape, i)
        _grey(mask, i).save(root / "original" / f"{i}.png")
        if i % 2:
            Image.fromarray(mask).convert("1").save(root / "GT" / f"{i}.png")
        else:
            Image.fromarray(mask.astype(np.uint8) * 255, "L").save(root / "GT" / f"{i}.png")
        fractions.append(mask.mean())
    return 100.0 * float(np.mean(fractions))


def make_busi(root: Path) -> tuple[float, dict[str, int]]:
    """BUSI-style: ``benign/benign (1).png`` + ``benign (1)_mask.png``; every third image has a
    second mask ``_mask_1`` (merged by union); RGB images with colour.
    Returns (foreground %, classes)."""
    fractions, classes = [], {}
    k = 0
    for label, count in (("benign", 5), ("malignant", 3)):
        folder = root / label
        folder.mkdir(parents=True)
        classes[label] = count
        for i in range(1, count + 1):
            k += 1
            shape = SIZES[k - 1]
            first, second = _blob(shape, k), _blob(shape, 50 + k)
            rgb = np.stack([np.asarray(_grey(first, k))] * 3, axis=-1)
            rgb[..., 0] = 255 - rgb[..., 0]
            Image.fromarray(rgb, "RGB").save(folder / f"{label} ({i}).png")
            Image.fromarray(first.astype(np.uint8) * 255, "L").save(
                folder / f"{label} ({i})_mask.png"
            )
            union = first
            if k % 3 == 0:
                Image.fromarray(second.astype(np.uint8) * 255, "L").save(
                    folder / f"{label} ({i})_mask_1.png"
                )
                union = first | second
            fractions.append(union.mean())
    return 100.0 * float(np.mean(fractions)), classes


def _row(data_dir: Path, name: str) -> dict:
    out = CliRunner().invoke(app, ["datasets", "--data-dir", str(data_dir), "--json"])
    assert out.exit_code == 0, out.output
    return next(r for r in json.loads(out.stdout) if r["name"] == name)


def test_original_gt_folder_is_detected_and_prepared_like_a_catalogue_dataset(tmp_path):
    expected_fg = make_original_gt(tmp_path / "us")
    data = tmp_path / "data"
    out = CliRunner().invoke(app, ["import", "us", str(tmp_path / "us"), "--data-dir", str(data)])
    assert out.exit_code == 0, out.output
    assert "layout: folders: original/ + GT/" in out.output
    row = _row(data, "us")
    assert row["status"] == "prepared" and row["images"] == len(SIZES)
    assert row["foreground_pct"] == pytest.approx(expected_fg, abs=1e-9)
    assert row["layout"] == "folders" and row["source"] == str((tmp_path / "us").resolve())
    assert row["native_size_range"] == "32x40–40x56"
    assert row["splits"]["random-64-16-20"] == {
        "train": 4,
        "val": 2,
        "test": 2,
    }  # round(1.6), ⌊6·0.8⌋
    prepared = load("us", size=(32, 32), data_dir=data)
    assert prepared.images.shape == (8, 1, 32, 32)  # greyscale kept as one channel
    assert set(np.unique(prepared.masks)) == {0, 1}
    native = np.asarray(Image.open(tmp_path / "us" / "GT" / "3.png").convert("L")) > 0
    index = prepared.ids.index("3")
    import focalbench.datasets.prepared as prep

    idx = np.load(data / "us" / "index.npz")
    with open(data / "us" / "masks.bin", "rb") as handle:
        handle.seek(int(idx["masks_offset"][index]))
        stored = prep._decode_binary(handle.read(int(idx["masks_length"][index])))
    assert np.array_equal(stored.astype(bool), native)  # the 1-bit mask, binarised losslessly
    assert (data / "us" / "splits.json").is_file()
    assert paper_settings("us", "paper000", data) == {
        "size": (256, 256),
        "split": "random-64-16-20",
        "channels": 1,
        "ufl_gamma": 0.5,
    }


def test_busi_style_folder_merges_masks_by_union_and_keeps_classes(tmp_path):
    expected_fg, classes = make_busi(tmp_path / "busi")
    result = import_dataset("mybusi", tmp_path / "busi", data_dir=tmp_path / "d", progress=False)
    assert result["layout"] == "suffix" and result["images"] == 8 and result["channels"] == 3
    assert result["classes"] == classes
    assert result["foreground_pct"] == pytest.approx(expected_fg, abs=1e-9)
    row = _row(tmp_path / "d", "mybusi")
    assert row["status"] == "prepared" and row["images"] == 8
    meta = json.loads((tmp_path / "d" / "mybusi" / "meta.json").read_text())
    assert meta["ids"][:2] == ["benign (1)", "benign (2)"] and meta["classes"][-1] == "malignant"


def test_nnunet_folder_with_three_labels_needs_foreground(tmp_path):
    root = tmp_path / "Dataset001_US"
    (root / "imagesTr").mkdir(parents=True)
    (root / "labelsTr").mkdir()
    (root / "dataset.json").write_text(
        json.dumps(
            {
                "channel_names": {"0": "US"},
                "file_ending": ".png",
                "labels": {"background": 0, "a": 1, "b": 2},
            }
        )
    )
    fractions = []
    for i in range(6):
        label = _blob((32, 32), i).astype(np.uint8) + _blob((32, 32), 20 + i)  # 0, 1, 2
        _grey(label > 0, i).save(root / "imagesTr" / f"case{i}_0000.png")
        Image.fromarray(label, "L").save(root / "labelsTr" / f"case{i}.png")
        fractions.append((label == 2).mean())
    with pytest.raises(
        FocalbenchError,
        match=r"has values 0, 1, 2.*--foreground 1,2 \(every label\) or --foreground 2",
    ):
        import_dataset("nn", root, data_dir=tmp_path / "d", progress=False)
    assert not (tmp_path / "d" / "nn").exists()
    result = import_dataset("nn", root, data_dir=tmp_path / "d", foreground=["2"], progress=False)
    assert result["layout"] == "nnunet" and result["images"] == 6
    assert result["foreground_pct"] == pytest.approx(100 * np.mean(fractions), abs=1e-9)
    assert "{2}" in result["mask_rule"]


def test_csv_of_paths_and_forced_layout(tmp_path):
    make_original_gt(tmp_path / "us")
    with open(tmp_path / "pairs.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["image", "mask", "class"])
        for i in (1, 2, 3, 4, 5):
            writer.writerow([f"us/original/{i}.png", f"us/GT/{i}.png", "a" if i < 3 else "b"])
    result = import_dataset(
        "fromcsv", tmp_path / "pairs.csv", data_dir=tmp_path / "d", progress=False
    )
    assert (
        result["layout"] == "csv"
        and result["images"] == 5
        and result["classes"] == {"a": 2, "b": 3}
    )
    with pytest.raises(FocalbenchError, match="no image/mask pairs in the suffix layout"):
        import_dataset(
            "forced", tmp_path / "us", data_dir=tmp_path / "d", layout="suffix", progress=False
        )


def test_ambiguous_folder_is_refused_naming_the_candidates(tmp_path):
    make_original_gt(tmp_path / "x")
    _grey(_blob((32, 32), 1), 1).save(tmp_path / "x" / "a.png")
    Image.fromarray(_blob((32, 32), 1).astype(np.uint8) * 255).save(tmp_path / "x" / "a_mask.png")
    out = CliRunner().invoke(
        app, ["import", "amb", str(tmp_path / "x"), "--data-dir", str(tmp_path / "d")]
    )
    assert out.exit_code == 2
    line = out.output.strip()
    assert "\n" not in line and "fits several layouts" in line
    assert "--layout folders or --layout suffix" in line
    assert import_dataset(
        "amb", tmp_path / "x", data_dir=tmp_path / "d", layout="folders", progress=False
    )["images"] == len(SIZES)


def test_every_bad_case_is_listed_and_nothing_is_written_unless_skip_bad(tmp_path):
    root = tmp_path / "bad"
    make_original_gt(root)
    (root / "original" / "orphan.png").write_bytes(
        (root / "original" / "1.png").read_bytes()
    )  # no mask
    Image.fromarray(np.zeros((10, 10), np.uint8)).save(root / "GT" / "lonely.png")  # no image
    Image.fromarray(np.zeros((12, 12), np.uint8)).save(root / "GT" / "2.png")  # size mismatch
    (root / "original" / "3.png").write_bytes(b"not an image at all")  # unreadable
    (root / "GT" / "4.png").write_bytes(b"")  # empty
    data = tmp_path / "d"
    out = CliRunner().invoke(app, ["import", "bad", str(root), "--data-dir", str(data)])
    assert out.exit_code == 2
    (line,) = [t for t in out.output.splitlines() if t.startswith("error:")]
    assert line.startswith("error: nothing imported: 5 bad file(s)")
    for part in (
        "image without a mask",
        "mask without an image",
        "size mismatch",
        "unreadable image",
        "empty mask file",
        "--skip-bad",
    ):
        assert part in line
    assert not (data / "bad").exists() and user_datasets(data) == {}
    assert [p.name for p in data.iterdir()] == [] if data.exists() else True
    result = import_dataset("bad", root, data_dir=data, skip_bad=True, progress=False)
    assert result["images"] == len(SIZES) - 3
    assert sorted(s["reason"].split(" (")[0] for s in result["skipped"]) == [
        "empty mask file",
        "image without a mask",
        "mask without an image",
        "size mismatch",
        "unreadable image",
    ]
    assert len(user_datasets(data)["bad"]["skipped"]) == 5


def test_names_clashing_or_repeated_are_refused_and_remove_forgets(tmp_path):
    make_original_gt(tmp_path / "us")
    with pytest.raises(FocalbenchError, match="'drive' is a catalogue dataset"):
        import_dataset("drive", tmp_path / "us", data_dir=tmp_path / "d", progress=False)
    import_dataset("us", tmp_path / "us", data_dir=tmp_path / "d", progress=False)
    with pytest.raises(FocalbenchError, match="already imported.*import --remove us"):
        import_dataset("us", tmp_path / "us", data_dir=tmp_path / "d", progress=False)
    assert get_spec("us", tmp_path / "d").source == str((tmp_path / "us").resolve())
    out = CliRunner().invoke(app, ["import", "--remove", "us", "--data-dir", str(tmp_path / "d")])
    assert out.exit_code == 0, out.output
    assert not (tmp_path / "d" / "us").exists() and (tmp_path / "us" / "GT" / "1.png").exists()
    assert "us" not in {r["name"] for r in dataset_status(tmp_path / "d")}
    with pytest.raises(FocalbenchError, match="unknown dataset 'us'.*focalbench import NAME PATH"):
        get_spec("us", tmp_path / "d")
    with pytest.raises(FocalbenchError, match="no imported dataset 'us'"):
        remove_dataset("us", tmp_path / "d")


def test_a_killed_import_leaves_no_prepared_dataset(tmp_path, monkeypatch):
    make_original_gt(tmp_path / "us")
    from focalbench.datasets import prepared

    calls = {"n": 0}
    real_add = prepared.PreparedWriter.add

    def dies_on_the_third(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real_add(self, *args, **kwargs)

    monkeypatch.setattr(prepared.PreparedWriter, "add", dies_on_the_third)
    with pytest.raises(KeyboardInterrupt):
        import_dataset("us", tmp_path / "us", data_dir=tmp_path / "d", progress=False)
    assert list((tmp_path / "d").iterdir()) == []  # no folder, no staging, no record
    assert "us" not in {r["name"] for r in dataset_status(tmp_path / "d")}


def test_a_bad_split_rule_fails_before_writing(tmp_path):
    make_original_gt(tmp_path / "us")
    with pytest.raises(FocalbenchError, match="no official train/test partition"):
        import_dataset(
            "us", tmp_path / "us", data_dir=tmp_path / "d", split="official", progress=False
        )
    assert not (tmp_path / "d" / "us").exists()


def test_fetch_of_an_imported_dataset_says_it_needs_none(tmp_path):
    make_original_gt(tmp_path / "us")
    import_dataset("us", tmp_path / "us", data_dir=tmp_path / "d", progress=False)
    out = CliRunner().invoke(app, ["fetch", "us", "--data-dir", str(tmp_path / "d")])
    assert out.exit_code == 2 and "is your own dataset" in out.output
    with pytest.raises(FocalbenchError, match="imported: us; or import your own"):
        get_spec("uss", tmp_path / "d")


def test_every_image_format_and_mask_kind_the_issue_names(tmp_path):
    """JPEG, 16-bit TIFF, BMP, palette GIF and RGBA PNG images; palette, {0,1} and 1-bit masks."""
    root = tmp_path / "mixed"
    (root / "imgs").mkdir(parents=True)
    (root / "labels").mkdir()
    shape = (24, 32)
    mask = _blob(shape, 1)
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (*shape, 3)).astype(np.uint8)
    Image.fromarray(rgb, "RGB").save(root / "imgs" / "a.jpg", quality=95)
    deep = (rng.integers(0, 4000, shape) + 1000).astype(np.uint16)
    Image.fromarray(deep).save(root / "imgs" / "b.tif")
    Image.fromarray(rgb[..., 0], "L").save(root / "imgs" / "c.bmp")
    Image.fromarray(rgb, "RGB").convert("P").save(root / "imgs" / "d.gif")
    rgba = np.dstack([rgb, np.full(shape, 7, np.uint8)])
    Image.fromarray(rgba, "RGBA").save(root / "imgs" / "e.png")
    palette = Image.fromarray(mask.astype(np.uint8), "P")
    palette.putpalette([0, 0, 0, 255, 255, 255])
    palette.save(root / "labels" / "a.png")
    Image.fromarray(mask.astype(np.uint8), "L").save(root / "labels" / "b.png")  # {0, 1}
    Image.fromarray(mask).convert("1").save(root / "labels" / "c.png")
    Image.fromarray(mask.astype(np.uint8) * 255, "L").save(root / "labels" / "d.gif")
    Image.fromarray(mask.astype(np.uint8) * 255, "L").save(root / "labels" / "e.png")
    result = import_dataset("mixed", root, data_dir=tmp_path / "d", progress=False)
    assert result["layout"] == "folders" and result["images"] == 5 and result["channels"] == 3
    assert result["foreground_pct"] == pytest.approx(100 * mask.mean(), abs=1e-9)
    data = load("mixed", data_dir=tmp_path / "d")  # one native size: loads without resizing
    assert data.images.shape == (5, 3, *shape) and (data.masks == mask).all()
    by_id = dict(zip(data.ids, data.images, strict=False))
    assert np.array_equal(by_id["e"], rgb.transpose(2, 0, 1))  # alpha dropped
    scaled = np.round((deep - deep.min()) * (255.0 / (deep.max() - deep.min()))).astype(np.uint8)
    assert np.array_equal(by_id["b"], np.stack([scaled] * 3))  # 16-bit: min-max to 0..255


def test_user_mistakes_are_one_line_before_any_work(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("no images here")
    make_original_gt(tmp_path / "us")
    cases = [
        (["import", "x", str(tmp_path / "empty")], "no image/mask layout found"),
        (["import", "x", str(tmp_path / "missing")], "does not exist"),
        (["import", "x"], "give a NAME and a PATH"),
        (["import", "bad name", str(tmp_path / "empty")], "is not allowed"),
        (["import", "--remove", "drive"], "is a catalogue dataset"),
        (
            ["import", "x", str(tmp_path / "us"), "--foreground", "one"],
            "give mask values as integers",
        ),
        (["import", "x", str(tmp_path / "us"), "--layout", "zip"], "unknown --layout 'zip'"),
    ]
    for args, message in cases:
        out = CliRunner().invoke(app, [*args, "--data-dir", str(tmp_path / "d")])
        assert out.exit_code == 2 and message in out.output, (args, out.output)
        assert [t for t in out.output.splitlines() if t.startswith("error:")] == [
            out.output.strip()
        ]
    assert user_datasets(tmp_path / "d") == {}
