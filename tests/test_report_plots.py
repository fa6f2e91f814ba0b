"""Report figures: named by what they show, a summary per table, FDPT maps only with a penalty."""

from __future__ import annotations

import re

from test_report import _history, _samples, make_run

from focalbench.report import build_report
from focalbench.report.build import significance
from focalbench.report.layouts import LAYOUTS, TableName, build_table
from focalbench.report.plots import plot_rows, slug, uses_distance_penalty
from focalbench.report.runs import group_entries, load_runs


def test_slug_turns_a_row_label_into_a_readable_file_name_part():
    assert slug("Focal USE-Net (w₀ = 0)") == "focal-use-net-w0-0"
    assert slug("UFL + FDPT") == "ufl-fdpt"
    assert slug("2018 DSB") == "2018-dsb"


def test_rows_that_would_share_a_name_get_a_short_hash_and_only_they(tmp_path):
    results = tmp_path / "results"
    # "auto" labels rows by model, loss and variant: two protocols of one configuration look alike
    make_run(results, "sample", "unet", "dice", [0.5, 0.6], protocol="paper000")
    make_run(results, "sample", "unet", "dice", [0.5, 0.7], protocol="smoke")
    make_run(results, "sample", "use-net", "dice", [0.5, 0.7])
    entries = group_entries(load_runs(results)[0])
    names = [r.name for r in plot_rows(build_table(LAYOUTS[TableName.auto], entries))]
    assert "sample-use-net-dice" in names  # unique: no hash
    unet = sorted(n for n in names if n.startswith("sample-unet-dice"))
    assert len(unet) == 2 and unet[0] != unet[1]
    assert all(re.fullmatch(r"sample-unet-dice-[0-9a-f]{6}", n) for n in unet)


def test_only_a_loss_with_a_distance_penalty_draws_the_boundary_weight_map(tmp_path):
    results = tmp_path / "results"
    make_run(results, "sample", "unet", "dice", [0.6, 0.7], samples=_samples(0))
    entries = group_entries(load_runs(results)[0])
    assert not uses_distance_penalty(entries[0])
    names = {p.name for p in build_report(results, table="losses", plots=tmp_path / "a").plots}
    assert not any("fdpt" in n for n in names)
    make_run(results, "sample", "unet", "dice+fdpt(eps=0.1)", [0.6, 0.8], samples=_samples(1))
    names = {p.name for p in build_report(results, table="losses", plots=tmp_path / "b").plots}
    assert "losses-sample-fdpt-weights.png" in names
    assert {"losses-sample-summary.png", "losses-sample-predictions.png"} <= names


def test_summary_marks_the_baseline_and_each_rows_holm_adjusted_verdict(tmp_path):
    from focalbench.report.plots import _verdict

    results = tmp_path / "results"
    ids = [f"i{k}" for k in range(8)]
    make_run(results, "sample", "unet", "ufl", [0.5] * 8, ids=ids)
    make_run(results, "sample", "use-net", "ufl", [0.9] * 8, ids=ids)  # better on every image
    table = build_table(LAYOUTS[TableName.se], group_entries(load_runs(results)[0]))
    tests = significance(table, "unet")
    rows = {r.label: r for r in plot_rows(table)}
    assert _verdict(rows["U-Net"], tests) == ("baseline", "black")
    # 8 positive differences: exact two-sided p = 2 / 2^8 = 0.0078 (one test, Holm leaves it)
    text, colour = _verdict(rows["USE-Net"], tests)
    assert text == "p=0.0078 †" and colour == "tab:red"


def test_focal_weights_figure_is_drawn_for_the_focal_rows_and_not_for_the_plain_unet(tmp_path):
    results = tmp_path / "results"
    make_run(
        results,
        "sample",
        "focal-use-net",
        "ufl",
        [0.7, 0.8],
        model_params={"focal_init": 0.0},
        history=_history({"se1": 0.05, "se2": 0.4}),
    )
    make_run(results, "sample", "unet", "ufl", [0.6, 0.7], history=_history({}))
    built = build_report(results, table="se", plots=tmp_path / "plots")
    assert "se-sample-focal-weights.png" in {p.name for p in built.plots}
    only_unet = tmp_path / "r2"  # the U-Net alone has no focal weights to show
    make_run(only_unet, "sample", "unet", "ufl", [0.6, 0.7], history=_history({}))
    names = {p.name for p in build_report(only_unet, table="se", plots=tmp_path / "p2").plots}
    assert not any("focal-weights" in n for n in names)
    assert names and all(n.endswith(".png") for n in names)
