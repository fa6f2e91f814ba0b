"""Confusion counts, scores, aggregation with the empty policy, and HD95 (docs/metrics.md)."""

import math

import numpy as np
import pytest
import torch
from scipy.ndimage import binary_erosion, distance_transform_edt

from focalbench.errors import FocalbenchError
from focalbench.metrics import confusion_counts, hd95, scores, summarize


def _img(rows):
    return torch.tensor(rows, dtype=torch.bool).view(1, 1, len(rows), len(rows[0]))


def test_confusion_counts_by_hand():
    pred = torch.cat([_img([[1, 1, 0], [0, 0, 0]]), _img([[0, 0, 0], [0, 0, 0]])])
    target = torch.cat([_img([[1, 0, 0], [1, 0, 0]]), _img([[0, 0, 0], [0, 0, 1]])])
    counts = confusion_counts(pred, target)
    assert counts.dtype == torch.int64
    assert counts.tolist() == [[1, 1, 1, 3], [0, 0, 1, 5]]  # tp, fp, fn, tn


def test_valid_mask_restricts_the_counts():
    pred, target = _img([[1, 1], [0, 0]]), _img([[1, 0], [0, 1]])
    valid = _img(
        [[1, 0], [1, 0]]
    )  # the fp at (0,1) and the fn at (1,1) lie outside the field of view
    assert confusion_counts(pred, target, valid).tolist() == [[1, 0, 0, 1]]


def test_scores_by_hand():
    s = scores(torch.tensor([[6, 2, 4, 88]]))
    assert s["dsc"].item() == pytest.approx(12 / 18)
    assert s["jaccard"].item() == pytest.approx(6 / 12)
    assert s["precision"].item() == pytest.approx(6 / 8)
    assert s["recall"].item() == s["sensitivity"].item() == pytest.approx(6 / 10)
    assert s["accuracy"].item() == pytest.approx(94 / 100)
    assert s["specificity"].item() == pytest.approx(88 / 90)


COUNTS = torch.tensor(
    [
        [6, 2, 4, 88],  # ordinary
        [0, 0, 0, 100],  # both empty
        [0, 3, 0, 97],  # empty target, false alarms
    ]
)


def test_summary_per_image_excludes_both_empty_images_and_counts_them():
    out = summarize(COUNTS)
    assert out["aggregation"] == "image" and out["empty_policy"] == "exclude"
    assert out["n_images"] == 3 and out["n_both_empty"] == 1
    assert out["metrics"]["dsc"] == pytest.approx((12 / 18 + 0.0) / 2)
    assert out["metrics"]["recall"] == pytest.approx(0.6)  # 0/0 twice: undefined, excluded
    assert out["n_undefined"]["recall"] == 2
    assert out["metrics"]["accuracy"] == pytest.approx((0.94 + 1.0 + 0.97) / 3)


def test_summary_policy_one_scores_both_empty_images_as_perfect():
    out = summarize(COUNTS, empty_policy="one")
    assert out["empty_policy"] == "one"
    assert out["metrics"]["dsc"] == pytest.approx((12 / 18 + 1.0 + 0.0) / 3)
    assert out["metrics"]["recall"] == pytest.approx((0.6 + 1.0) / 2)  # image 3 stays undefined


def test_summary_pooled_scores_the_summed_counts():
    out = summarize(COUNTS, aggregation="pooled")
    assert out["metrics"]["dsc"] == pytest.approx(12 / (12 + 5 + 4))
    assert out["metrics"]["precision"] == pytest.approx(6 / 11)


def test_summary_pooled_over_only_both_empty_images_follows_the_policy():
    empty = torch.tensor([[0, 0, 0, 16], [0, 0, 0, 9]])
    one = summarize(empty, aggregation="pooled", empty_policy="one")["metrics"]
    assert (
        one["dsc"] == 1.0
        and one["precision"] == 1.0
        and one["recall"] == 1.0
        and one["specificity"] == 1.0
    )
    assert math.isnan(summarize(empty, aggregation="pooled")["metrics"]["dsc"])
    # one non-empty image makes the pooled counts defined: the policy changes nothing
    mixed = torch.tensor([[3, 1, 2, 10], [0, 0, 0, 16]])
    assert summarize(mixed, aggregation="pooled", empty_policy="one")["metrics"][
        "dsc"
    ] == pytest.approx(6 / 9)


def test_summary_rejects_an_unknown_policy():
    with pytest.raises(FocalbenchError, match="choose from: exclude, one"):
        summarize(COUNTS, empty_policy="zero")


def _medpy_hd95(pred: np.ndarray, target: np.ndarray) -> float:
    """MedPy's definition with scipy: surface = mask − erosion (cross), percentile of both directions."""
    ps = pred & ~binary_erosion(pred, border_value=0)
    ts = target & ~binary_erosion(target, border_value=0)
    d_pt = distance_transform_edt(~ts)[ps]
    d_tp = distance_transform_edt(~ps)[ts]
    return float(np.percentile(np.hstack([d_pt, d_tp]), 95))


def test_hd95_matches_a_scipy_reference_on_random_blobs():
    gen = np.random.default_rng(5)
    preds, targets = [], []
    for _ in range(4):
        t = np.zeros((24, 28), bool)
        p = np.zeros((24, 28), bool)
        y, x = gen.integers(3, 15, 2)
        t[y : y + 7, x : x + 9] = True
        p[y + 1 : y + 9, x - 2 : x + 6] = True
        p |= gen.random((24, 28)) > 0.97
        preds.append(p)
        targets.append(t)
    ours = hd95(
        torch.from_numpy(np.stack(preds))[:, None], torch.from_numpy(np.stack(targets))[:, None]
    )
    ref = [_medpy_hd95(p, t) for p, t in zip(preds, targets, strict=False)]
    np.testing.assert_allclose(ours.numpy(), ref, rtol=1e-6)


def test_hd95_empty_policy_both_empty_zero_one_empty_nan():
    empty, blob = (
        torch.zeros(1, 1, 6, 6, dtype=torch.bool),
        torch.zeros(1, 1, 6, 6, dtype=torch.bool),
    )
    blob[..., 2:4, 2:4] = True
    out = hd95(torch.cat([empty, blob, empty]), torch.cat([empty, empty, blob]))
    assert out[0].item() == 0.0
    assert math.isnan(out[1].item()) and math.isnan(out[2].item())
    assert hd95(blob, blob).item() == 0.0


def test_summary_averages_extra_metrics_and_counts_their_undefined_images():
    extra = {"hd95": torch.tensor([2.0, 0.0, float("nan")], dtype=torch.float64)}
    out = summarize(COUNTS, extra=extra)
    assert out["metrics"]["hd95"] == pytest.approx(1.0)
    assert out["n_undefined"]["hd95"] == 1


def test_smooth1_scores_are_paper_003s_evaluation_code_by_hand():
    from focalbench.metrics import smoothed_scores

    counts = torch.tensor([[0, 0, 5, 10], [3, 1, 2, 4], [0, 0, 0, 16]])
    s = smoothed_scores(counts)
    # utils.py: (2tp + 1)/(2tp + fp + fn + 1), (tp + 1)/(tp + fp + 1), (tp + 1)/(tp + fn + 1)
    assert s["smooth1_dsc"].tolist() == pytest.approx([1 / 6, 7 / 10, 1.0])
    assert s["smooth1_precision"].tolist() == pytest.approx(
        [1.0, 4 / 5, 1.0]
    )  # empty prediction: 1
    assert s["smooth1_recall"].tolist() == pytest.approx([1 / 6, 4 / 6, 1.0])
    assert s["smooth1_specificity"].tolist() == pytest.approx([11 / 11, 5 / 6, 17 / 17])
