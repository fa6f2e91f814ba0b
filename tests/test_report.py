"""`focalbench report`: hand-built run folders with known per-image scores → tables, statistics, plots."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from scipy import stats as sps
from typer.testing import CliRunner

from focalbench.cli import app
from focalbench.config import RunConfig
from focalbench.errors import FocalbenchError
from focalbench.report import build_report, report
from focalbench.report.formats import latex_escape
from focalbench.report.runs import loss_family, parse_loss
from focalbench.report.stats import bootstrap_ci, holm, paired_wilcoxon
from focalbench.store import atomic_write_json, atomic_write_text

IDS = ["a", "b", "c", "d", "e", "f"]


def make_run(
    results: Path,
    dataset: str,
    model: str,
    loss: str,
    dsc,
    *,
    seed=0,
    fold=None,
    precision=None,
    recall=None,
    ids=IDS,
    state="done",
    error=None,
    model_params=None,
    params=None,
    gflops=None,
    history=None,
    samples=None,
    protocol="paper000",
) -> Path:
    """A run folder as the engine writes it (docs/architecture.md), with the given per-image scores."""
    config = RunConfig(
        dataset=dataset,
        model=model,
        loss=loss,
        protocol=protocol,
        seed=seed,
        fold=fold,
        model_params=model_params or {},
    )
    folder = results / "runs" / config.key
    atomic_write_json(
        folder / "config.json",
        {
            "config": config.to_dict(),
            "key": config.key,
            "version": "0.1.0",
            "resolved": {"split": "official"},
        },
    )
    atomic_write_json(folder / "status.json", {"state": state, "error": error, "epoch": 3})
    if state != "done":
        return folder
    ids = list(ids)[: len(dsc)]
    rows = ["image_id,dsc,precision,recall"]
    for i, image_id in enumerate(ids):
        p = precision[i] if precision is not None else dsc[i]
        r = recall[i] if recall is not None else dsc[i]
        rows.append(f"{image_id},{dsc[i]!r},{p!r},{r!r}")
    atomic_write_text(folder / "per_image.csv", "\n".join(rows) + "\n")
    atomic_write_json(
        folder / "metrics.json",
        {
            "test": {"dsc": float(np.mean(dsc))},
            "aggregation": "image",
            "empty_policy": "skip",
            "params": params,
            "gflops": gflops,
        },
    )
    if history is not None:
        atomic_write_text(folder / "history.csv", history)
    if samples is not None:
        np.savez(folder / "test_samples.npz", **samples)
    return folder


def table_rows(text: str) -> list[list[str]]:
    return [
        [c.strip() for c in line.strip("|").split("|")]
        for line in text.splitlines()
        if line.startswith("| ")
    ]


def row_of(rows: list[list[str]], *start: str) -> list[str]:
    return next(r for r in rows if r[: len(start)] == list(start))


@pytest.fixture
def results(tmp_path):
    return tmp_path / "results"


# ---------------------------------------------------------------------------------------------- specs


@pytest.mark.parametrize(
    "spec, family",
    [
        ("dice_ce", "dice+ce"),
        ("dice+ce+fdpt(eps=1)", "dice+ce+dpt"),  # ε = 1 is the DPT (paper 000 §2.2)
        ("ufl(gamma=0.1)+fdpt(eps=0)", "ufl"),  # ε = 0 is no penalty
        (
            "ufl(gamma=0.3)+fdpt(eps=0.1)",
            "ufl+fdpt(eps=0.1)",
        ),  # UFL's γ is per dataset: same column
    ],
)
def test_loss_specs_that_name_the_same_loss_share_a_column(spec, family):
    assert loss_family(spec) == family


def test_loss_spec_parameters_are_read_as_numbers():
    assert parse_loss("ufl(gamma=0.1, delta=0.6)+fdpt(eps=0.1)") == [
        ("ufl", {"gamma": 0.1, "delta": 0.6}),
        ("fdpt", {"eps": 0.1}),
    ]


# ---------------------------------------------------------------------------------------------- layouts


def test_losses_table_is_paper000_table2_with_mean_std_dashes_and_bold(results):
    make_run(results, "drive", "unet", "dice", [0.80, 0.70, 0.90], seed=0)
    make_run(results, "drive", "unet", "dice", [0.60, 0.70, 0.80], seed=1)
    make_run(
        results,
        "drive",
        "unet",
        "ufl(gamma=0.1)+fdpt(eps=0.1)",
        [0.90, 0.80, 0.85],
        precision=[0.5, 0.5, 0.5],
    )
    rows = table_rows(report(results, table="losses"))
    header = rows[0]
    assert header == [
        "Dataset",
        "Metrics",
        "DSC",
        "DSC + DPT",
        "DSC + FDPT",
        "DSC + CE",
        "DSC + CE + DPT",
        "DSC + CE + FDPT",
        "UFL",
        "UFL + DPT",
        "UFL + FDPT",
    ]
    dsc = row_of(rows, "DRIVE", "DSC")
    # dice: run means 0.8 and 0.7 → 0.75 ± sample std 0.0707; UFL + FDPT: one run, 0.85, no ±
    assert dsc[2] == f"0.7500 ± {np.std([0.8, 0.7], ddof=1):.4f}"
    assert dsc[10] == "**0.8500**"
    assert dsc[3:10] == ["—"] * 7
    precision = row_of(rows, "", "Precision")
    assert precision[2].startswith("**0.7500") and precision[10] == "0.5000"
    # paper datasets without runs keep their rows, all "—"
    assert row_of(rows, "2018 DSB", "DSC")[2:] == ["—"] * 9
    assert row_of(rows, "CVC-ClinicDB", "DSC")[2:] == ["—"] * 9


def test_se_table_counts_kept_modules_and_separates_the_pruned_focal_variant(results):
    loss = "ufl(gamma=0.1)"
    make_run(results, "drive", "unet", loss, [0.70, 0.72])
    make_run(results, "drive", "use-net", loss, [0.71, 0.73])
    make_run(results, "drive", "focal-use-net", loss, [0.74, 0.75])
    make_run(
        results, "drive", "focal-use-net", loss, [0.60, 0.62], model_params={"focal_init": 0.0}
    )
    make_run(
        results,
        "drive",
        "focal-use-net",
        loss,
        [0.80, 0.82],
        model_params={"positions": [2, 6], "focal_init": 1.0},
    )
    rows = table_rows(report(results, table="se", dataset="drive"))
    assert rows[0] == [
        "Dataset",
        "Metric",
        "U-Net",
        "USE-Net",
        "Focal USE-Net",
        "Focal USE-Net (w₀ = 0)",
        "Focal USE-Net (pruned)",
    ]
    assert row_of(rows, "DRIVE · ufl", "#SE")[2:] == ["0", "9", "9", "9", "2"]  # #SE never bold
    assert row_of(rows, "", "DSC")[2:] == ["0.7100", "0.7200", "0.7450", "0.6100", "**0.8100**"]


def test_ag_table_shows_dashes_for_missing_runs_and_a_pruning_that_kept_no_gate_as_zero(results):
    make_run(results, "dsb2018", "attention-unet", "ufl", [0.5, 0.7])
    make_run(results, "dsb2018", "focal-attention-unet", "ufl", [0.6, 0.7])
    rows = table_rows(report(results, table="ag", dataset="dsb2018"))
    assert rows[0][2:] == [
        "U-Net",
        "Attention U-Net",
        "Focal Attention U-Net",
        "Focal Attention U-Net (w₀ = 0)",
        "Focal Attention U-Net (pruned)",
    ]
    assert row_of(rows, "2018 DSB · ufl", "#AG")[2:] == ["—", "4", "4", "—", "—"]
    assert row_of(rows, "", "DSC")[2:] == ["—", "0.6000", "**0.6500**", "—", "—"]
    # `focalbench prune` turns a network that keeps no gate into the plain U-Net, marked pruned_from
    folder = make_run(results, "dsb2018", "unet", "ufl", [0.4, 0.4])
    raw = json.loads((folder / "config.json").read_text())
    raw["config"]["pruned_from"] = "dsb2018-focal-attention-unet-ufl-s0-0123456789"
    (folder / "config.json").write_text(json.dumps(raw))
    rows = table_rows(report(results, table="ag", dataset="dsb2018"))
    assert row_of(rows, "2018 DSB · ufl", "#AG")[2:] == ["—", "4", "4", "—", "0"]
    assert row_of(rows, "", "DSC")[2:] == ["—", "0.6000", "**0.6500**", "—", "0.4000"]


def test_focal_tversky_table_gives_mean_std_over_folds_and_the_parameters_column(results):
    folds = {"dice": [0.5, 0.6, 0.55, 0.65, 0.6], "focal_tversky": [0.7, 0.72, 0.68, 0.74, 0.71]}
    for loss, scores in folds.items():
        for fold, score in enumerate(scores):
            make_run(
                results,
                "bus",
                "unet",
                loss,
                [score - 0.1, score + 0.1],
                fold=fold,
                ids=[f"{fold}-x", f"{fold}-y"],
            )
    make_run(results, "bus", "pyramid-attention-unet", "tversky(alpha=0.6)", [0.6, 0.6])
    rows = table_rows(report(results, table="focal-tversky", dataset="bus"))
    assert rows[0] == ["Dataset", "Model", "Parameters", "DSC", "Precision", "Recall"]
    dl = row_of(rows, "BUS 2017 B", "U-Net + DL")
    assert dl[2] == "α = 0.5, β = 0.5"
    # three decimals, as paper 003 prints them ("0.804 ± 0.024")
    assert dl[3] == f"{np.mean(folds['dice']):.3f} ± {np.std(folds['dice'], ddof=1):.3f}"
    ftl = row_of(rows, "", "U-Net + FTL")
    assert (
        ftl[3]
        == f"**{np.mean(folds['focal_tversky']):.3f} ± {np.std(folds['focal_tversky'], ddof=1):.3f}**"
    )
    # a run with its own loss arguments shows them, not the paper's
    assert row_of(rows, "", "Attn U-Net + Multi-Input + TL")[2] == "alpha=0.6"
    assert row_of(rows, "", "U-Net + TL")[3:] == ["—", "—", "—"]


def test_the_authors_networks_fill_paper_003s_and_002s_rows(results):
    # issue 17: paper 003's baselines are newmodels.unet / attn_unet; paper 002's Nest_Net / attn_unet
    make_run(results, "bus", "unet-abraham", "dice", [0.5, 0.6])
    make_run(results, "bus", "attention-unet-abraham", "dice", [0.6, 0.7])
    rows = table_rows(report(results, table="focal-tversky", dataset="bus"))
    assert row_of(rows, "BUS 2017 B", "U-Net + DL")[3] == "0.550"  # one run: no spread over folds
    assert row_of(rows, "", "Attn U-Net + DL")[3] == "**0.650**"
    make_run(results, "isic2018", "unetplusplus", "all_hybrid", [0.8, 0.8], params=9_042_177)
    make_run(results, "isic2018", "attention-unet-kaul", "all_hybrid", [0.7, 0.7], params=8_898_308)
    rows = table_rows(report(results, table="focusnet", dataset="isic2018"))
    assert row_of(rows, "", "UNet++")[2] == "9.04"
    assert row_of(rows, "", "Attn U-Net")[2] == "**8.90**"  # fewest parameters: bold


def test_focusnet_table_bolds_the_smallest_model_and_names_di_ji(results):
    make_run(results, "isic2018", "unet", "dice", [0.8, 0.9], params=7_760_000, gflops=16.0)
    make_run(results, "isic2018", "focusnetpp", "dice", [0.85, 0.87], params=7_800_000, gflops=15.0)
    rows = table_rows(report(results, table="focusnet", dataset="isic2018"))
    assert rows[0] == [
        "Dataset",
        "Method",
        "Params (M)",
        "GFLOPs",
        "Precision",
        "Recall",
        "DI",
        "JI",
    ]
    unet = row_of(rows, "ISIC 2018", "U-Net")
    assert unet[2:4] == ["**7.76**", "16.00"]
    assert row_of(rows, "", "FocusNet++")[2:4] == ["7.80", "**15.00**"]
    assert row_of(rows, "", "FocusNet")[2:] == ["—"] * 6
    assert unet[7] == "—"  # no jaccard in per_image.csv: a dash, never a number


def test_focusnet_table_puts_the_baselines_and_the_reduced_presets_on_the_papers_rows(results):
    make_run(results, "isic2018", "r2u-net", "all_hybrid", [0.8, 0.9], params=8_907_425)
    make_run(results, "isic2018", "bcdu-net", "all_hybrid", [0.7, 0.9], params=23_026_533)
    make_run(results, "dsb2018", "bcdu-net-small", "all_hybrid", [0.8, 0.9], params=5_759_413)
    make_run(results, "dsb2018", "focusnet-small", "all_hybrid", [0.8, 0.9], params=4_774_205)
    rows = table_rows(report(results, table="focusnet"))
    # paper 002 Table 1's order; the -small presets (what --study focusnet trains on dsb2018) add no rows
    methods = ["U-Net", "R2U-Net", "BCDU-Net", "UNet++", "Attn U-Net", "FocusNet", "FocusNet++"]
    assert [r[1] for r in rows[1:]] == methods * 2
    assert row_of(rows, "ISIC 2018", "U-Net")[2:] == ["—"] * 6
    assert row_of(rows, "", "R2U-Net")[2].strip("*") == "8.91"
    assert row_of(rows, "", "BCDU-Net")[2].strip("*") == "23.03"
    dsb = rows[1 + len(methods) :]
    assert dsb[0][0] == "2018 DSB"
    assert (
        row_of(dsb, "", "BCDU-Net")[2].strip("*") == "5.76"
        and row_of(dsb, "", "FocusNet")[2].strip("*") == "4.77"
    )
    paper = {
        (r["paper_table"], r["label"], r["model"])
        for r in build_report(results, vs_paper=True).records
        if r.get("paper")
    }
    assert paper == {
        ("Table 1", "R2U-Net [9]", "r2u-net"),
        ("Table 1", "BCU-Net [10]", "bcdu-net"),
        ("Table 2", "BCDU-Net [10]", "bcdu-net"),
        ("Table 3", "BCU-Net [10]", "bcdu-net-small"),
        ("Table 3", "FocusNet [1]", "focusnet-small"),
    }


def test_auto_table_lists_every_configuration_grouped_by_dataset(results):
    make_run(results, "drive", "unet", "dice", [0.5, 0.6])
    make_run(results, "sample", "unet", "dice", [0.4, 0.6])
    make_run(results, "sample", "focal-use-net", "ufl", [0.7, 0.8], model_params={"positions": [1]})
    rows = table_rows(report(results))
    assert rows[0] == [
        "Dataset",
        "Model",
        "Loss",
        "Variant",
        "DSC",
        "Precision",
        "Recall",
        "Jaccard",
    ]
    assert [r[:4] for r in rows[1:]] == [
        ["DRIVE", "unet", "dice", ""],
        ["sample", "focal-use-net", "ufl", "pruned"],
        ["", "unet", "dice", ""],
    ]
    assert rows[2][4] == "**0.7500**" and rows[3][4] == "0.5000"
    assert rows[1][4] == "0.5500"  # alone in its dataset: nothing to compare, not bold


def test_caption_states_aggregation_policy_split_runs_protocol_and_version(results):
    make_run(results, "drive", "unet", "dice", [0.5, 0.6], seed=0)
    make_run(results, "drive", "unet", "dice", [0.5, 0.6], seed=1)
    text = report(results)
    assert "aggregation per image" in text and "empty-mask policy: skip" in text
    assert "split: official" in text and "runs per cell: 2" in text
    assert "protocol: paper000" in text and "focalbench 0.1.0" in text


def test_failed_and_running_runs_are_footnoted_and_a_corrupt_folder_is_named_and_skipped(results):
    make_run(results, "drive", "unet", "dice", [0.5, 0.6])
    failed = make_run(
        results, "drive", "unet", "dice+ce", [], state="failed", error="CUDA out of memory"
    )
    running = make_run(results, "drive", "unet", "dice+ce", [], seed=1, state="running")
    broken = make_run(results, "drive", "unet", "ufl", [0.9, 0.9])
    (broken / "config.json").write_text('{"config": {"dataset": "dri')
    text = report(results, table="losses", dataset="drive")
    dsc = row_of(table_rows(text), "DRIVE", "DSC")
    assert (
        dsc[5] == "—" and dsc[8] == "—"
    )  # DSC + CE (only failed/running runs) and the corrupt UFL run
    assert (
        f"failed run not counted in DRIVE unet:dice+ce: {failed.name}: CUDA out of memory" in text
    )
    assert f"running run not counted in DRIVE unet:dice+ce: {running.name}" in text
    assert f"skipped corrupt run folder {broken}: config.json unreadable (JSONDecodeError)" in text


def test_done_run_without_per_image_scores_is_skipped_not_fatal(results):
    good = make_run(results, "drive", "unet", "dice", [0.5, 0.6])
    bad = make_run(results, "drive", "unet", "dice+ce", [0.7, 0.8])
    (bad / "per_image.csv").unlink()
    built = build_report(results, table="losses", dataset="drive")
    assert [s.path for s in built.skipped] == [bad]
    assert "state is done but per_image.csv is missing" in built.text
    assert good.name not in built.text


# ---------------------------------------------------------------------------------------------- statistics


def test_wilcoxon_pairs_images_by_id_and_equals_scipy():
    import pandas as pd

    ours = pd.Series([0.9, 0.8, 0.75, 0.6, 0.95, 0.7], index=list("abcdef"))
    base = pd.Series(
        [0.5, 0.62, 0.7, 0.71, 0.8, 0.69, 0.3], index=list("fedcbag")
    )  # shuffled, one extra
    test = paired_wilcoxon(ours, base)
    aligned = base.loc[list("abcdef")].to_numpy()
    expected = sps.wilcoxon(ours.to_numpy(), aligned)
    assert test.n == 6
    assert test.p == pytest.approx(expected.pvalue, rel=1e-12)
    assert test.statistic == expected.statistic


def test_wilcoxon_with_no_difference_is_p_one():
    import pandas as pd

    same = pd.Series([0.5, 0.6, 0.7], index=list("abc"))
    assert paired_wilcoxon(same, same).p == 1.0


def test_holm_matches_a_hand_computation():
    # sorted 0.01, 0.03, 0.04 → 3·0.01 = 0.03, max(0.03, 2·0.03) = 0.06, max(0.06, 1·0.04) = 0.06
    assert holm([0.04, 0.01, 0.03]) == pytest.approx([0.06, 0.03, 0.06])
    assert holm([0.5, float("nan"), 0.4]) == pytest.approx([0.8, float("nan"), 0.8], nan_ok=True)
    assert holm([0.9, 0.8]) == pytest.approx([1.0, 1.0])


def test_bootstrap_interval_of_two_values_is_the_whole_range():
    # resampled means of {0, 1}: 0 (p 1/4), 0.5 (p 1/2), 1 (p 1/4) → the 2.5 % and 97.5 % quantiles are 0 and 1
    assert bootstrap_ci(np.array([0.0, 1.0])) == (0.0, 1.0)
    assert bootstrap_ci(np.array([0.3, 0.3, 0.3])) == pytest.approx((0.3, 0.3))
    values = np.linspace(0, 1, 50)
    assert bootstrap_ci(values) == bootstrap_ci(values)  # seeded
    low, high = bootstrap_ci(values)
    assert low < values.mean() < high


def test_baseline_tests_are_paired_wilcoxon_holm_corrected_and_marked(results):
    ids = list("abcdefgh")
    base = [0.50, 0.52, 0.55, 0.49, 0.51, 0.53, 0.50, 0.54]
    better = [0.70, 0.72, 0.75, 0.69, 0.71, 0.73, 0.70, 0.80]  # all 8 better: exact p = 2 / 2^8
    mixed = [0.52, 0.50, 0.56, 0.48, 0.53, 0.52, 0.49, 0.55]
    make_run(results, "drive", "unet", "dice", base, ids=ids)
    order = [7, 2, 0, 5, 1, 6, 3, 4]  # the file lists images in another order: pairs go by image_id
    make_run(
        results, "drive", "unet", "dice+ce", [better[i] for i in order], ids=[ids[i] for i in order]
    )
    make_run(results, "drive", "unet", "ufl(gamma=0.1)", mixed, ids=ids)
    built = build_report(results, table="losses", dataset="drive", baseline="dice")
    p_better = sps.wilcoxon(better, base).pvalue
    p_mixed = sps.wilcoxon(mixed, base).pvalue
    adjusted = holm([p_better, p_mixed])
    records = {r["loss"]: r for r in built.records if r["metric"] == "dsc"}
    assert records["dice+ce"]["p"] == pytest.approx(p_better)
    assert records["ufl(gamma=0.1)"]["p_holm"] == pytest.approx(adjusted[1])
    assert "p" not in records["dice"]
    dsc = row_of(table_rows(built.text), "DRIVE", "DSC")
    assert p_better == pytest.approx(2 / 2**8)
    assert adjusted[0] < 0.05 <= adjusted[1]
    assert dsc[5] == "**0.7250†**" and "†" not in dsc[8]
    assert f"p = {p_better:.4g}, p_Holm = {adjusted[0]:.4g} †" in built.text


def test_held_out_folds_pair_each_test_image_once_averaged_over_the_folds(results):
    """holdout-P-kfold-K: every fold scores the same test images, so an image is one pair, not K."""
    ids = list("abcdef")
    base = np.array([[0.50, 0.52, 0.55, 0.49, 0.51, 0.53], [0.54, 0.50, 0.53, 0.51, 0.49, 0.55]])
    ours = base + np.array(
        [[0.10, 0.20, 0.05, 0.15, 0.12, 0.08], [0.06, 0.10, 0.09, 0.11, 0.14, 0.02]]
    )
    for fold in (0, 1):
        make_run(results, "bus", "unet", "dice", base[fold].tolist(), fold=fold, ids=ids)
        make_run(results, "bus", "unet", "tversky", ours[fold].tolist(), fold=fold, ids=ids)
    built = build_report(results, table="focal-tversky", dataset="bus", baseline="unet:dice")
    record = next(r for r in built.records if r["loss"] == "tversky" and r["metric"] == "dsc")
    assert record["p"] == pytest.approx(sps.wilcoxon(ours.mean(axis=0), base.mean(axis=0)).pvalue)
    assert record["p"] == pytest.approx(2 / 2**6)  # 6 images all better, not 12 pairs (2 / 2^12)


def test_protocol_option_keeps_one_protocols_runs_and_baseline_tests_stay_within_a_protocol(
    results,
):
    ids = list("abcdef")
    make_run(
        results,
        "bus",
        "unet",
        "dice",
        [0.5, 0.52, 0.55, 0.49, 0.51, 0.53],
        ids=ids,
        protocol="paper003",
    )
    make_run(
        results,
        "bus",
        "unet",
        "tversky",
        [0.7, 0.72, 0.75, 0.69, 0.71, 0.73],
        ids=ids,
        protocol="paper003",
    )
    make_run(results, "bus", "unet", "focal_tversky", [0.9] * 6, ids=ids, protocol="smoke")
    mixed = build_report(results, table="focal-tversky", dataset="bus", baseline="unet:dice")
    tested = {r["loss"] for r in mixed.records if "p" in r}
    assert tested == {
        "tversky"
    }  # the smoke run trained on another recipe: never paired with paper003's
    only = table_rows(report(results, table="focal-tversky", dataset="bus", protocol="paper003"))
    assert row_of(only, "", "U-Net + FTL")[3:] == ["—", "—", "—"]
    assert row_of(only, "", "U-Net + TL")[3] == "**0.717**"  # paper 003 prints 3 decimals
    with pytest.raises(
        FocalbenchError,
        match="no runs with protocol 'paper000' .* protocols with runs: paper003, smoke",
    ):
        build_report(results, protocol="paper000")


def test_unknown_or_ambiguous_baseline_is_a_one_line_error(results):
    make_run(results, "bus", "unet", "dice", [0.5, 0.6])
    make_run(results, "bus", "unet", "tversky", [0.5, 0.6])
    with pytest.raises(
        FocalbenchError, match="names no row of this table; .* from: unet:dice, unet:tversky"
    ):
        build_report(results, baseline="focusnet")
    with pytest.raises(
        FocalbenchError, match="matches several rows in BUS 2017 B: unet:dice, unet:tversky"
    ):
        build_report(results, baseline="unet")


def test_baseline_shared_by_a_pruned_row_is_named_by_its_column(results):
    make_run(results, "dsb2018", "unet", "ufl", [0.5, 0.6])
    folder = make_run(results, "dsb2018", "unet", "ufl", [0.4, 0.4], seed=1)
    raw = json.loads((folder / "config.json").read_text())
    raw["config"]["pruned_from"] = "dsb2018-focal-use-net-ufl-s0-0123456789"
    (folder / "config.json").write_text(json.dumps(raw))
    with pytest.raises(
        FocalbenchError,
        match="matches several rows .*; name one by its column: 'U-Net', 'Focal USE-Net",
    ):
        build_report(results, table="se", dataset="dsb2018", baseline="unet:ufl")
    built = build_report(
        results, table="se", dataset="dsb2018", baseline="U-Net"
    )  # the advice works
    assert "unet:ufl (pruned) vs unet:ufl" in built.text


def test_ci_adds_bootstrap_intervals_to_every_per_image_cell(results):
    make_run(results, "drive", "unet", "dice", [0.0, 1.0])
    built = build_report(results, ci=True)
    assert row_of(table_rows(built.text), "DRIVE")[4] == "0.5000 [0.0000, 1.0000]"
    record = next(r for r in built.records if r["metric"] == "dsc")
    assert (record["ci_low"], record["ci_high"]) == (0.0, 1.0)


# ---------------------------------------------------------------------------------------------- formats


def test_latex_is_booktabs_with_balanced_braces_and_escaped_text(results):
    make_run(results, "drive", "unet", "dice_ce", [0.5, 0.6], seed=0)
    make_run(results, "drive", "unet", "dice_ce", [0.7, 0.6], seed=1)
    make_run(results, "drive", "unet", "ufl(gamma=0.1)", [0.9, 0.9])
    text = report(results, table="losses", fmt="latex", baseline="dice+ce")
    assert text.count("{") == text.count("}")
    assert text.count(r"\begin{") == text.count(r"\end{")
    lines = text.splitlines()
    assert lines.index(r"\toprule") < lines.index(r"\midrule") < lines.index(r"\bottomrule")
    assert r"\textbf{0.9000}" in text and r"0.6000 $\pm$ 0.0707" in text
    assert "---" in text and "—" not in text
    body = text[text.index(r"\toprule") : text.index(r"\bottomrule")]
    assert "_" not in body.replace(r"\_", "")  # raw underscores would not compile
    width = len(re.search(r"\\begin\{tabular\}\{(\w+)\}", text).group(1))
    assert all(line.count(" & ") == width - 1 for line in body.splitlines() if line.endswith(r"\\"))


def test_latex_is_plain_ascii_so_pdflatex_sets_it_without_extra_packages(results):
    make_run(results, "bus", "unet", "focal_tversky", [0.5, 0.6])
    make_run(results, "dsb2018", "unet", "ufl", [0.5, 0.6])
    tversky = report(results, table="focal-tversky", dataset="bus", fmt="latex")
    se = report(results, table="se", dataset="dsb2018", fmt="latex")
    assert (
        tversky.isascii() and se.isascii()
    )  # pdflatex stops at w₀, α, ×, ≤ ("not set up for use with LaTeX")
    assert r"$\alpha$ = 0.7, $\beta$ = 0.3, $\gamma$ = 4/3" in tversky
    assert r"Focal USE-Net (w$_{0}$ = 0)" in se


@pytest.mark.parametrize(
    "text, expected",
    [
        ("λ ≤ 2 × δ", r"$\lambda$ $\leq$ 2 $\times$ $\delta$"),
        ("Δ ε ο", r"$\Delta$ $\varepsilon$ ?"),  # no \omicron in LaTeX
        ("a_b & 5% é²", r"a\_b \& 5\% e$^{2}$"),
    ],
)
def test_latex_escape_spells_non_ascii_in_ascii(text, expected):
    assert latex_escape(text) == expected


def test_csv_is_one_tidy_row_per_configuration_and_metric_and_json_the_same_records(results):
    make_run(results, "drive", "unet", "dice", [0.5, 0.7], seed=0)
    make_run(results, "drive", "unet", "dice", [0.7, 0.9], seed=1)
    built = build_report(results, fmt="csv")
    lines = built.text.splitlines()
    assert lines[0] == "dataset,model,loss,pruned,setting,protocol,label,metric,mean,std,n"
    assert len(lines) == 1 + 4  # dsc, precision, recall, jaccard
    dsc = next(r for r in built.records if r["metric"] == "dsc")
    assert dsc["mean"] == pytest.approx(0.7) and dsc["std"] == pytest.approx(
        np.std([0.6, 0.8], ddof=1)
    )
    assert dsc["n"] == 2
    assert lines[1].startswith("drive,unet,dice,False,,paper000,unet dice,dsc,0.7")
    jaccard = next(r for r in built.records if r["metric"] == "jaccard")
    assert jaccard["mean"] is None and jaccard["n"] == 0


def test_vs_paper_prints_ours_theirs_and_the_difference(results):
    make_run(results, "drive", "unet", "ufl(gamma=0.1)+fdpt(eps=0.1)", [0.80, 0.82])
    make_run(results, "isic2018", "focusnetpp", "all_hybrid", [0.9, 0.9], params=7_000_000)
    built = build_report(results, vs_paper=True)
    paper = [r for r in built.records if r.get("paper")]
    drive = next(r for r in paper if r["dataset"] == "drive" and r["metric"] == "dsc")
    assert (drive["paper_table"], drive["paper_value"]) == ("Table 2", 0.8155)
    assert drive["difference"] == pytest.approx(0.81 - 0.8155)
    assert (
        "| 000 | Table 2 | DRIVE | UFL + FDPT | unet:ufl(gamma=0.1)+fdpt(eps=0.1) | dsc | 0.8100 | 0.8155 | -0.0055 |"
        in built.text
    )
    params = next(r for r in paper if r["metric"] == "params")
    assert params["paper_value"] == pytest.approx(7.80e6)  # printed 7.80 "× 10^8", read as millions
    assert {(r["paper"], r["paper_table"]) for r in paper} == {
        ("000", "Table 2"),
        ("002", "Table 1"),
        ("002", "Table 2"),
    }


def test_published_numbers_cover_every_results_table_of_the_papers():
    from focalbench.report.published import published

    data = published()
    tables = {(t["paper"], t["table"]) for t in data["tables"]}
    assert tables >= {
        ("000", "Table 2"),
        ("000", "Table 3"),
        ("000", "Table 4"),
        ("001", "Table 1"),
        ("002", "Table 1"),
        ("002", "Table 2"),
        ("002", "Table 3"),
        ("003", "Table 1"),
        ("003", "Table 2"),
    }
    for table in data["tables"]:
        assert all(len(row["values"]) == len(table["columns"]) for row in table["rows"])
    by_key = {(t["paper"], t["table"]): t for t in data["tables"]}
    # spot checks against the papers' text: the best DSC of paper 000 Table 2 and paper 003's last row
    ufl_fdpt = [r for r in by_key["000", "Table 2"]["rows"] if r["label"] == "UFL + FDPT"]
    assert [r["values"][0] for r in ufl_fdpt] == [0.8155, 0.9165, 0.8993]
    assert by_key["003", "Table 2"]["rows"][-1]["values"][0] == {"mean": 0.856, "std": 0.007}


# ---------------------------------------------------------------------------------------------- CLI


def test_cli_prints_the_table_writes_it_under_reports_and_json_prints_records(results):
    make_run(results, "drive", "unet", "dice", [0.5, 0.7])
    runner = CliRunner()
    shown = runner.invoke(
        app, ["report", "--results", str(results), "--table", "losses", "--dataset", "drive"]
    )
    assert shown.exit_code == 0, shown.output
    assert "| DRIVE | DSC | 0.6000 |" in shown.output
    assert (results / "reports" / "report-losses-drive.md").read_text() in shown.output
    as_json = runner.invoke(app, ["report", "--results", str(results), "--json"])
    assert as_json.exit_code == 0, as_json.output
    records = json.loads(as_json.output)
    assert {r["metric"]: r["mean"] for r in records}["dsc"] == pytest.approx(0.6)


def test_cli_out_and_format_and_user_errors(results, tmp_path):
    make_run(results, "drive", "unet", "dice", [0.5, 0.7])
    runner = CliRunner()
    out = tmp_path / "t.tex"
    done = runner.invoke(
        app, ["report", "--results", str(results), "--format", "latex", "--out", str(out)]
    )
    assert done.exit_code == 0, done.output
    assert out.read_text().startswith(r"\begin{table}")
    bad = runner.invoke(app, ["report", "--results", str(tmp_path / "nowhere")])
    assert (
        bad.exit_code == 2
        and "error: results folder" in bad.output
        and "--results DIR" in bad.output
    )
    typo = runner.invoke(app, ["report", "--results", str(results), "--table", "loses"])
    assert typo.exit_code == 2
    nodata = runner.invoke(app, ["report", "--results", str(results), "--dataset", "isic"])
    assert nodata.exit_code == 2 and "datasets with runs: drive" in nodata.output


def test_metrics_option_shows_those_metrics_in_that_order_any_layout_any_metric(results):
    make_run(results, "drive", "unet", "dice", [0.80, 0.70, 0.90], recall=[0.5, 0.6, 0.7])
    rows = table_rows(report(results, table="losses", dataset="drive", metrics="recall,dsc"))
    # paper 000 Table 2 lays out DSC, Precision, Recall; now only Recall, then DSC
    assert [r[:3] for r in rows[1:]] == [["DRIVE", "Recall", "0.6000"], ["", "DSC", "0.8000"]]
    # a metric the layout does not show becomes one more row (here no run recorded it: a dash)
    shown = table_rows(report(results, table="losses", dataset="drive", metrics=["hd95", "dsc"]))
    assert [r[1:3] for r in shown[1:]] == [["HD95", "—"], ["DSC", "0.8000"]]


def test_metrics_option_errors_are_one_line_naming_the_choices(results):
    make_run(results, "drive", "unet", "dice", [0.5, 0.7])
    runner = CliRunner()
    typo = runner.invoke(app, ["report", "--results", str(results), "--metrics", "dsc,recal"])
    assert typo.exit_code == 2
    assert typo.output.strip().splitlines() == [
        "error: --metrics names an unknown metric 'recal' (did you mean 'recall'?); choose "
        "from: dsc, precision, recall, jaccard, accuracy, sensitivity, specificity, hd95, "
        "params, gflops, modules"
    ]
    nope = runner.invoke(app, ["report", "--results", str(results), "--metrics", "nope"])
    assert nope.exit_code == 2 and len(nope.output.strip().splitlines()) == 1
    assert "--metrics names an unknown metric 'nope'" in nope.output
    with pytest.raises(FocalbenchError, match="^--metrics names 'dsc' twice; name each metric"):
        build_report(results, metrics="dsc,recall,dsc")
    with pytest.raises(FocalbenchError, match="^--metrics names no metric; choose from: dsc,"):
        build_report(results, metrics=",")


def test_a_study_file_feeds_its_table_from_ablate_to_report(results, tmp_path):
    """The file's [table] is recorded in grid.json and laid out by report --study-file exactly as
    the same layout, baseline and metrics given as flags (only the title is the file's)."""
    study = tmp_path / "two-losses.toml"
    study.write_text(
        "\n".join(
            [
                'name = "two-losses"',
                'datasets = ["sample"]',
                "[table]",
                'title = "Dice against UFL"',
                'layout = "auto"',
                'baseline = "dice"',
                'metrics = ["recall", "dsc"]',
                "[[rows]]",
                'label = "Dice"',
                'network = "unet"',
                'loss = "dice"',
                "[[rows]]",
                'label = "UFL"',
                'network = "unet"',
                'loss = "ufl"',
            ]
        )
    )
    runner = CliRunner()
    where = ["--results", str(results)]
    trained = runner.invoke(
        app,
        [
            "ablate",
            "--study-file",
            str(study),
            "--protocol",
            "smoke",
            "--epochs",
            "1",
            "--param",
            "model.width=4",
            "--device",
            "cpu",
            *where,
            "--json",
        ],
    )
    assert trained.exit_code == 0, trained.output
    grid = json.loads(trained.stdout)
    stored = json.loads((results / "grids" / grid["name"] / "grid.json").read_text())
    assert stored["table"] == {
        "title": "Dice against UFL",
        "layout": "auto",
        "baseline": "dice",
        "metrics": ["recall", "dsc"],
    }
    from_file = runner.invoke(app, ["report", "--study-file", str(study), *where])
    assert from_file.exit_code == 0, from_file.output
    rows = table_rows(from_file.stdout)
    assert rows[0] == ["Dataset", "Model", "Loss", "Variant", "Recall", "DSC"]
    assert [r[1:3] for r in rows[1:]] == [["unet", "dice"], ["unet", "ufl"]]
    for row in rows[1:]:
        key = next(c["key"] for c in grid["cells"] if c["config"]["loss"] == row[2])
        engine = json.loads((results / "runs" / key / "metrics.json").read_text())
        assert row[5].strip("*†") == f"{engine['test']['dsc']:.4f}"  # bold: best; †: significant
    assert "against the baseline (dice)" in from_file.stdout
    assert re.search(
        r"^- sample: unet:ufl .* vs unet:dice .*: n = \d+, W = ", from_file.stdout, re.M
    )
    flags = ["--table", "auto", "--baseline", "dice", "--metrics", "recall,dsc"]
    explicit = runner.invoke(app, ["report", *flags, *where])
    assert explicit.exit_code == 0, explicit.output
    auto_title = "### Every configuration in the results folder"
    assert from_file.stdout == explicit.stdout.replace(auto_title, "### Dice against UFL")
    records = json.loads(
        runner.invoke(app, ["report", "--study-file", str(study), *where, "--json"]).stdout
    )
    tested = [r for r in records if "p" in r]
    assert [(r["loss"], r["metric"], r["baseline"]) for r in tested] == [
        ("ufl", "dsc", "unet:dice")
    ]
    # a flag given on the command line wins over the file's
    only_dsc = runner.invoke(
        app, ["report", "--study-file", str(study), "--metrics", "dsc", *where]
    )
    assert table_rows(only_dsc.stdout)[0][-2:] == ["Variant", "DSC"]

    # a run of another study in the same folder is in the plain report, not in the study's
    make_run(results, "sample", "unet", "ce", [0.5, 0.6], protocol="smoke")
    everything = runner.invoke(app, ["report", *flags, *where])
    assert [r[1:3] for r in table_rows(everything.stdout)[1:]] == [
        ["unet", "ce"],
        ["unet", "dice"],
        ["unet", "ufl"],
    ]
    again = runner.invoke(app, ["report", "--study-file", str(study), *where])
    assert again.stdout == from_file.stdout
    # a study file whose study was never run here: one line naming both ways out
    unrun = tmp_path / "unrun.toml"
    unrun.write_text(study.read_text().replace('name = "two-losses"', 'name = "unrun"'))
    missing = runner.invoke(app, ["report", "--study-file", str(unrun), *where])
    assert missing.exit_code == 2
    assert missing.output.strip().splitlines() == [
        f"error: no grid of study 'unrun' in {results / 'grids'}: train it with focalbench"
        f" ablate --study-file {unrun}, or drop --study-file to report every run"
    ]


# ---------------------------------------------------------------------------------------------- plots


def _history(final: dict[str, float], epochs: int = 6) -> str:
    """history.csv whose focal weights rise linearly from 0 (zero init) to ``final``."""
    names = [f"focal_{p}" for p in final]
    lines = [
        "epoch,train_loss,val_loss,val_dsc,val_precision,val_recall,lr,seconds," + ",".join(names)
    ]
    for e in range(1, epochs + 1):
        weights = ",".join(f"{w * e / epochs:.4f}" for w in final.values())
        lines.append(
            f"{e},{1 / e:.4f},{1.2 / e:.4f},{0.5 + 0.4 * e / epochs:.4f},0.6,0.7,0.001,1.0,{weights}"
        )
    return "\n".join(lines) + "\n"


def _samples(seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    masks = np.zeros((2, 32, 32), np.uint8)
    masks[:, 8:20, 10:24] = 1
    probs = (np.clip(masks + rng.normal(0, 0.3, masks.shape), 0, 1) * 255).astype(np.uint8)
    return {
        "ids": np.array(["img1", "img2"]),
        "images": rng.integers(0, 255, (2, 3, 32, 32), dtype=np.uint8),
        "masks": masks,
        "probs": probs,
    }


def test_plots_are_named_by_what_they_show_and_drawn_only_where_the_runs_allow(results, tmp_path):
    make_run(
        results,
        "sample",
        "focal-use-net",
        "ufl",
        [0.7, 0.8],
        model_params={"focal_init": 0.0},
        history=_history({"se1": 0.05, "se2": 0.4, "se9": 0.9}),
        samples=_samples(0),
    )
    make_run(
        results, "sample", "unet", "ufl", [0.6, 0.7], history=_history({}), samples=_samples(1)
    )
    built = build_report(results, table="se", plots=tmp_path / "plots")
    names = sorted(p.name for p in built.plots)
    # no FDPT in this study: no boundary-weight map; no hash where the labels already differ
    assert names == [
        "curves-sample-focal-use-net-w0-0.png",
        "curves-sample-u-net.png",
        "se-sample-focal-weights.png",
        "se-sample-predictions.png",
        "se-sample-summary.png",
    ]
    for path in built.plots:
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_fdpt_weights_are_one_plus_distance_to_the_power_eps():
    from focalbench.report.plots import fdpt_weights

    mask = np.zeros((1, 7), np.uint8)
    mask[0, :3] = 1  # foreground 0..2, background 3..6
    # distances to the other class: fg 3, 2, 1 (M = 3); bg 1, 2, 3, 4 (M = 4)
    # D = (M − d)/(M − 1): fg 0, 0.5, 1; bg 1, 2/3, 1/3, 0
    d = np.array([0, 0.5, 1, 1, 2 / 3, 1 / 3, 0])
    for eps in (0.1, 1.0, 10.0):
        assert fdpt_weights(mask, eps)[0] == pytest.approx((1 + d) ** eps, rel=1e-6)


@pytest.mark.slow
def test_report_reads_the_run_folders_the_engine_writes(results, tmp_path):
    runner = CliRunner()
    for model, loss in (("focal-use-net", "dice"), ("unet", "dice_ce")):
        trained = runner.invoke(
            app,
            [
                "train",
                "--dataset",
                "sample",
                "--model",
                model,
                "--loss",
                loss,
                "--protocol",
                "smoke",
                "--epochs",
                "2",
                "--results",
                str(results),
                "--json",
            ],
        )
        assert trained.exit_code == 0, trained.output
    built = build_report(results, baseline="unet", ci=True, plots=tmp_path / "plots")
    assert not built.skipped
    metrics = {r["model"]: r for r in built.records if r["metric"] == "dsc"}
    engine = json.loads(next((results / "runs").glob("sample-unet-*/metrics.json")).read_text())
    assert metrics["unet"]["mean"] == pytest.approx(
        engine["test"]["dsc"]
    )  # per-image mean, as the engine's
    assert 0 <= metrics["focal-use-net"]["p"] <= 1
    assert {"auto-sample-summary.png", "auto-sample-focal-weights.png"} <= {
        p.name for p in built.plots
    }


def test_focusnet_table_footnotes_what_paper_002s_flops_column_measures(results):
    make_run(
        results, "isic2018", "focusnetpp", "all_hybrid", [0.8, 0.9], params=7_771_723, gflops=30.0
    )
    text = report(results, table="focusnet")
    # issue 13: tf.profiler float_operation on a batch-None graph, re-run: 91.31 / 42.44 / 17.79 / 15.50
    assert "float_operation" in text and "91.31 / 42.44 / 17.79 / 15.50" in text
    assert "against the printed 91.36 / 42.44 / 17.82 / 15.64" in text
    assert "float_operation" not in report(results, table="auto")


def test_vs_paper_on_an_imported_dataset_says_no_paper_has_numbers_for_it(results):
    make_run(results, "my-scans", "unet", "dice", [0.7, 0.8])
    make_run(results, "drive", "unet", "dice", [0.8, 0.9])
    text = build_report(results, vs_paper=True).text
    assert "my-scans is your own dataset (focalbench import); no paper has numbers for it" in text
    assert "drive is your own dataset" not in text
    assert "your own dataset" not in build_report(results).text  # only asked with --vs-paper


def test_report_takes_build_reports_parameters_and_returns_its_text(results):
    """report() is build_report().text: the same parameters (as help() shows them) and text."""
    import inspect

    make_run(results, "drive", "unet", "dice", [0.80, 0.70, 0.90], seed=0)

    assert list(inspect.signature(report).parameters) == list(
        inspect.signature(build_report).parameters
    )
    assert (
        report(results, table="losses", fmt="csv")
        == build_report(results, "losses", fmt="csv").text
    )
