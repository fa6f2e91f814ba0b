"""The dataset registry, paper settings, split rules and the shipped sample (no network, no files
outside the repository)."""

import numpy as np
import pytest

from focalbench.datasets import dataset_names, get_split, load, paper_settings
from focalbench.datasets.convert import natural_key
from focalbench.datasets.splits import split_indices
from focalbench.errors import FocalbenchError


def test_registry_lists_the_seven_datasets_and_the_sample():
    assert set(dataset_names()) == {
        "sample",
        "drive",
        "dsb2018",
        "cvc-clinicdb",
        "isic2018",
        "bus",
        "busi",
        "lung",
    }


@pytest.mark.parametrize(
    "name, protocol, size, split, gamma",
    [  # paper 000 Table 1; paper 003 §3; paper 002 §3
        ("drive", "paper000", (512, 512), "official", 0.1),
        ("dsb2018", "paper000", (256, 256), "random-64-16-20", 0.2),
        ("cvc-clinicdb", "paper000", (288, 384), "random-64-16-20", 0.3),
        ("isic2018", "paper003", (192, 256), "keras-25-15-x5", None),
        ("bus", "paper003", (128, 128), "keras-25-15-x5", None),
        ("isic2018", "paper002", (256, 256), "fixed-1815-259-520", None),
        ("lung", "paper001", (256, 256), "random-80-10-10", None),
    ],
)
def test_paper_settings_match_the_papers(name, protocol, size, split, gamma):
    s = paper_settings(name, protocol)
    assert s["size"] == size and s["split"] == split and s.get("ufl_gamma") == gamma


def test_smoke_exists_for_every_dataset_and_unknown_protocol_lists_choices():
    for name in dataset_names():
        assert paper_settings(name, "smoke")["size"] == (64, 64)
    with pytest.raises(FocalbenchError, match="choose from: paper003, smoke"):
        paper_settings("bus", "paper000")


def test_unknown_dataset_lists_names():
    with pytest.raises(FocalbenchError, match="did you mean 'drive'.*cvc-clinicdb"):
        paper_settings("drve", "smoke")


@pytest.mark.parametrize(
    "n, rule, counts",
    [  # paper 000 Table 1 counts, by hand: test = round(0.2 n), train = floor(0.8 (n - test))
        (670, "random-64-16-20", (428, 108, 134)),
        (612, "random-64-16-20", (392, 98, 122)),
        (2594, "fixed-1815-259-520", (1815, 259, 520)),
        (670, "fixed-540-65-65", (540, 65, 65)),
    ],
)
def test_split_counts(n, rule, counts):
    s = split_indices(n, rule, seed=3)
    assert (len(s["train"]), len(s["val"]), len(s["test"])) == counts
    everything = np.concatenate(list(s.values()))
    assert len(np.unique(everything)) == len(everything)  # disjoint
    assert all(v.dtype == np.int64 for v in s.values())


def test_random_80_10_10_counts_by_hand():
    s = split_indices(267, "random-80-10-10", seed=0)
    # test = round(26.7) = 27; development 240 cut 80:10 -> train floor(240*80/90) = 213, val 27
    assert (len(s["train"]), len(s["val"]), len(s["test"])) == (213, 27, 27)


def test_official_split_keeps_the_official_test_and_draws_16_4_from_training():
    official = {"train": list(range(20)), "test": list(range(20, 40))}
    s = split_indices(40, "official", seed=0, official=official)
    assert s["test"].tolist() == list(range(20, 40))
    assert (len(s["train"]), len(s["val"])) == (16, 4)
    assert set(s["train"]) | set(s["val"]) == set(range(20))
    other = split_indices(40, "official", seed=1, official=official)
    assert other["val"].tolist() != s["val"].tolist()  # the seed draws the validation images


def test_kfold_test_sets_partition_the_data_for_one_seed():
    folds = [split_indices(163, "kfold-5", seed=7, fold=f) for f in range(5)]
    tests = np.concatenate([f["test"] for f in folds])
    assert sorted(tests.tolist()) == list(range(163))
    assert [len(f["test"]) for f in folds] == [33, 33, 33, 32, 32]
    assert len(folds[0]["train"]) == (163 - 33) * 80 // 100


@pytest.mark.parametrize(
    "n, n_test", [(163, 41), (2594, 649)]
)  # round(0.25 n) half up; paper 003 prints 40, 649
def test_holdout_kfold_keeps_one_test_set_and_cross_validates_the_rest(n, n_test):
    folds = [split_indices(n, "holdout-25-kfold-5", seed=7, fold=f) for f in range(5)]
    assert all(f["test"].tolist() == folds[0]["test"].tolist() for f in folds)
    assert len(folds[0]["test"]) == n_test
    vals = np.concatenate([f["val"] for f in folds])
    assert sorted(vals.tolist()) == sorted(
        set(range(n)) - set(folds[0]["test"].tolist())
    )  # folds partition the rest
    dev = n - n_test
    assert [len(f["val"]) for f in folds] == [dev // 5 + (i < dev % 5) for i in range(5)]
    for f in folds:
        assert len(f["train"]) + len(f["val"]) == dev and not set(f["train"]) & set(f["val"])


@pytest.mark.parametrize("n, counts", [(163, (103, 19, 41)), (2594, (1653, 292, 649))])
def test_keras_split_is_sklearn_test_share_then_the_last_15_percent_as_validation(n, counts):
    # by hand: test = ceil(0.25 n) (sklearn); train = int((n - test) * 0.85) (Keras split_at)
    s = split_indices(n, "keras-25-15", seed=3)
    assert (len(s["train"]), len(s["val"]), len(s["test"])) == counts
    perm = np.random.default_rng(3).permutation(n)
    n_test, n_train = counts[2], counts[0]
    assert s["test"].tolist() == sorted(perm[:n_test].tolist())
    # validation is the tail of the remaining arrays in their shuffled order
    assert s["val"].tolist() == sorted(perm[n_test + n_train :].tolist())


def test_keras_split_folds_are_reruns_with_seeds_0_to_4():
    folds = [split_indices(163, "keras-25-15-x5", seed=0, fold=f) for f in range(5)]
    for f, split in enumerate(folds):
        assert all((split[k] == split_indices(163, "keras-25-15", seed=f)[k]).all() for k in split)
    assert len({tuple(f["test"]) for f in folds}) == 5


def test_splits_are_deterministic_per_seed():
    a, b = (
        split_indices(100, "random-64-16-20", seed=5),
        split_indices(100, "random-64-16-20", seed=5),
    )
    assert all((a[k] == b[k]).all() for k in a)
    c = split_indices(100, "random-64-16-20", seed=6)
    assert (a["test"] != c["test"]).any()


@pytest.mark.parametrize(
    "rule, fold, message",
    [
        ("kfold-5", None, "needs a fold between 0 and 4"),
        ("holdout-25-kfold-5", 5, "needs a fold between 0 and 4"),
        ("holdout-99-kfold-5", 0, "must leave at least K images"),
        ("random-64-16-20", 1, "has no folds"),
        ("random-60-10-10", None, "sum to 100"),
        ("fixed-50-50-50", None, "needs 150 images"),
        ("halves", None, "unknown split rule"),
        ("official", None, "no official"),
        ("keras-25-15", 0, "has no folds"),
        ("keras-25-15-x5", 5, "needs a fold between 0 and 4"),
        ("keras-100-15", None, "empty train"),
    ],
)
def test_bad_split_rules_are_user_errors(rule, fold, message):
    with pytest.raises(FocalbenchError, match=message):
        split_indices(100, rule, seed=0, fold=fold)


def test_sample_loads_without_network():
    data = load("sample")
    assert data.images.shape == (48, 3, 128, 128) and data.images.dtype == np.uint8
    assert data.masks.shape == (48, 128, 128) and set(np.unique(data.masks)) == {0, 1}
    assert (
        data.fov is None and len(data.ids) == 48 and data.ids == sorted(data.ids, key=natural_key)
    )
    assert 5 < data.meta["foreground_pct"] < 30  # nuclei cover ~14.5 % of DSB (paper 000 Table 1)
    assert data.meta["foreground_pct"] == pytest.approx(100 * data.masks.mean(), abs=1e-9)


def test_sample_resizes_and_splits():
    small = load("sample", size=(32, 48))
    assert small.images.shape == (48, 3, 32, 48) and small.masks.shape == (48, 32, 48)
    assert set(np.unique(small.masks)) <= {0, 1}
    s = get_split(small, "random-64-16-20", seed=0)
    assert (len(s["train"]), len(s["val"]), len(s["test"])) == (30, 8, 10)


def test_unprepared_dataset_names_the_fetch_command(tmp_path):
    with pytest.raises(FocalbenchError, match="run: focalbench fetch drive --from PATH"):
        load("drive", data_dir=tmp_path)
    with pytest.raises(FocalbenchError, match=r"run: focalbench fetch dsb2018 --data-dir"):
        load("dsb2018", size=(64, 64), data_dir=tmp_path)


def test_resize_rules_by_hand():
    from focalbench.datasets.prepared import resize_image, resize_mask

    img = np.array([[[0, 100], [200, 50]]], np.uint8)  # (C, H, W) = (1, 2, 2)
    # nearest (paper 003's cv2.INTER_NEAREST): every pixel becomes a 2×2 block
    assert (
        resize_image(img, (4, 4), "nearest")[0] == np.kron(img[0], np.ones((2, 2), np.uint8))
    ).all()
    # miscnn masks: linear at (o + 1/2)/2 − 1/2 = −.25, .25, .75, 1.25 (edge), then ≥ 0.5
    mask = np.array([[1, 0], [0, 0]], np.uint8)
    expected = np.zeros((4, 4), np.uint8)
    expected[:2, :2] = 1  # (1, 1): .75 · .75 = .5625
    assert (resize_mask(mask, (4, 4), "miscnn") == expected).all()
    # miscnn images: an order-3 spline reproduces a constant and stays in the input range
    flat = np.full((3, 5, 7), 77, np.uint8)
    assert (resize_image(flat, (8, 3), "miscnn") == 77).all()
    ramp = np.tile(np.arange(0, 250, 25, dtype=np.uint8), (3, 10, 1))
    out = resize_image(ramp, (10, 19), "miscnn")
    assert out.min() >= 0 and out.max() <= 225 and (np.diff(out[0, 0].astype(int)) >= 0).all()
    with pytest.raises(FocalbenchError, match="choose from: area, nearest, miscnn"):
        resize_mask(mask, (4, 4), "bicubic")


def test_load_with_a_resize_rule_and_native_masks_of_the_sample():
    import cv2

    from focalbench.datasets.prepared import load_native_masks

    native = load("sample")
    nearest = load("sample", size=(64, 64), resize="nearest")
    by_hand = cv2.resize(
        native.images[3].transpose(1, 2, 0), (64, 64), interpolation=cv2.INTER_NEAREST
    )
    assert (nearest.images[3] == by_hand.transpose(2, 0, 1)).all() and nearest.meta[
        "resize"
    ] == "nearest"
    masks, fov = load_native_masks("sample", [3, 7])
    assert (
        fov is None and (masks[0] == native.masks[3]).all() and (masks[1] == native.masks[7]).all()
    )
