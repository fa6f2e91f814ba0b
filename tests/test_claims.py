"""The papers' claims (claims.json) and `report --claims` on hand-built and smoke-trained runs."""

from __future__ import annotations

import csv
import hashlib
import json
import os
import re
from pathlib import Path

import numpy as np
import pytest
from scipy import stats as sps
from test_report import make_run  # tests/ is on sys.path (rootdir-less test folder)
from typer.testing import CliRunner

from focalbench.cli import app
from focalbench.datasets import load
from focalbench.report import build_report
from focalbench.report.claims import claims, pairs, stated_dataset, table_rows, unjudged
from focalbench.report.published import published
from focalbench.report.stats import bootstrap_ci, holm

# shared/ lies beside the checkout, for developers and CI alike (../shared/papers)
PAPERS = Path(
    os.environ.get("FOCALBENCH_PAPERS", Path(__file__).resolve().parents[2] / "shared" / "papers")
)


def _paper_text(paper: str) -> str:
    """The paper's text as claims.json quotes it: hyphenated breaks joined, spaces collapsed."""
    files = sorted(PAPERS.glob(f"{paper}_*.txt"))
    if not files:
        pytest.skip(f"the papers' texts are not in {PAPERS} (set FOCALBENCH_PAPERS)")
    text = re.sub(r"-\n(?=[a-z])", "", files[0].read_text(encoding="utf-8"))
    return re.sub(r"\s+", " ", text)


# ------------------------------------------------------------------------------------ the file


def test_every_claim_names_rows_and_a_column_of_the_published_tables():
    columns = {(t["paper"], t["table"]): t["columns"] for t in published()["tables"]}
    ids = [c.id for c in claims()]
    assert len(ids) == len(set(ids))
    for claim in claims():
        assert claim.metric in columns[(claim.paper, claim.table)], claim.id
        labels = {r["label"] for r in table_rows(claim.paper, claim.table, claim.dataset)}
        assert claim.a in labels, claim.id
        assert claim.b == ("*",) or set(claim.b) <= labels, claim.id
        assert claim.direction in {"higher", "lower"}
        assert pairs(claim), f"{claim.id}: no pair with published numbers"


@pytest.mark.parametrize("paper", ["000", "001", "002", "003"])
def test_every_quoted_sentence_occurs_in_its_paper(paper):
    text = _paper_text(paper)
    quotes = [c.quote for c in claims() if c.paper == paper] + [
        u["quote"] for u in unjudged() if u["paper"] == paper
    ]
    quotes += [
        d["quote"]
        for name in ("bus", "isic2018", "drive", "dsb2018", "cvc-clinicdb", "lung")
        if (d := stated_dataset(name))["paper"] == paper
    ]
    assert quotes
    for quote in quotes:
        assert quote in text, quote


def test_published_differences_are_computed_from_the_tables():
    by_id = {c.id: c for c in claims()}
    (headline,) = pairs(by_id["003-BUS-headline-vs-baseline"])
    assert headline.published_difference == pytest.approx(0.804 - 0.547)  # the abstract's 25.7 %
    (isic,) = pairs(by_id["003-ISIC-headline-vs-baseline-3.6"])
    assert isic.published_difference == pytest.approx(0.036) and (isic.a_std, isic.b_std) == (
        0.007,
        0.013,
    )
    (ji,) = pairs(by_id["002-T1-focusnetpp-ji-next-best"])
    assert ji.published_difference == pytest.approx(0.8271 - 0.7813)  # "4.6 % higher JI"
    params = {
        p.b_row["label"]: p.published_difference for p in pairs(by_id["002-T2-focusnetpp-params"])
    }
    assert params["BCDU-Net [10]"] == pytest.approx((7.80 - 20.66) * 1e6)  # millions → our unit
    # "every other row" skips the cell the paper does not print (Table 4, DRIVE, pruned)
    drive = pairs(by_id["000-T4-DRIVE-unet-best"])
    assert [p.b_row["label"] for p in drive] == ["Attention U-Net", "Focal Attention U-Net"]


def test_a_published_difference_against_its_sentence_is_noted():
    """Where the paper's own table contradicts or ties the sentence, the claim says so."""
    for claim in claims():
        sign = 1 if claim.direction == "higher" else -1
        if any(sign * p.published_difference <= 0 for p in pairs(claim)):
            assert claim.note, claim.id


# ------------------------------------------------------------------------------------ verdicts


def _bus_runs(results: Path) -> dict[str, list[float]]:
    """Paper 003's BUS rows with known per-image DSC, one repetition each (the same 6 images)."""
    scores = {
        "dice": [0.50, 0.52, 0.48, 0.55, 0.45, 0.50],
        "tversky": [0.60, 0.63, 0.57, 0.66, 0.56, 0.61],
        "deep_supervision": [0.70, 0.74, 0.69, 0.78, 0.66, 0.71],
    }
    for loss, dsc in scores.items():
        model = "pyramid-attention-unet" if loss == "deep_supervision" else "unet"
        make_run(results, "bus", model, loss, dsc, protocol="paper003")
    return scores


def test_claims_on_hand_built_runs_give_differences_wilcoxon_with_holm_and_verdicts(tmp_path):
    results = tmp_path / "results"
    scores = _bus_runs(results)
    built = build_report(results, claims=True, fmt="csv")
    judged = [r for r in built.records if r["direction"] != "not run"]
    headline = next(r for r in judged if r["claim"] == "003-BUS-headline-vs-baseline")
    d = np.subtract(scores["deep_supervision"], scores["dice"])
    assert headline["difference"] == pytest.approx(d.mean())  # 0.2133
    assert headline["published_difference"] == pytest.approx(0.257)
    assert (
        headline["direction"] == "holds"
        and headline["repetitions"] == 1
        and headline["images"] == 6
    )
    # one repetition: the interval is the image bootstrap of the 6 differences (as `--ci`)
    assert (headline["ci_low"], headline["ci_high"]) == pytest.approx(bootstrap_ci(d))
    expected = "consistent" if headline["ci_low"] <= 0.257 <= headline["ci_high"] else "smaller"
    assert headline["size"] == expected
    # Wilcoxon on the 6 pairs, Holm over every judged pair of paper 003 Table 1
    assert headline["p"] == pytest.approx(
        sps.wilcoxon(scores["deep_supervision"], scores["dice"]).pvalue
    )
    table1 = [r for r in judged if r["paper"] == "003" and r["paper_table"] == "Table 1"]
    assert len(table1) > 1
    for record, adjusted in zip(table1, holm([r["p"] for r in table1]), strict=False):
        assert record["p_holm"] == pytest.approx(adjusted)
    # every difference has one sign on 6 images: exact p = 2/64 each; Holm multiplies by m
    assert headline["p"] == pytest.approx(2 / 64)
    assert headline["p_holm"] == pytest.approx(min(1.0, len(table1) * 2 / 64))
    # the z of each cell against the paper's mean ± std (0.804 ± 0.024, 0.547 ± 0.04)
    assert headline["z_a"] == pytest.approx((np.mean(scores["deep_supervision"]) - 0.804) / 0.024)
    assert headline["z_b"] == pytest.approx((np.mean(scores["dice"]) - 0.547) / 0.04)
    # "Attn U-Net + DL" was not run: listed, never given a number
    absent = [r for r in built.records if r["claim"] == "003-BUS-pyramid-vs-attention"]
    assert absent and all(
        r["direction"] == "not run" and r.get("difference") is None for r in absent
    )
    assert {r["provenance_not_paper_data"] for r in judged} == {False}
    assert "163 images, average size 760 x 570" in headline["provenance_paper_data"]


def test_claims_without_runs_of_the_claimed_dataset_are_all_not_run(tmp_path):
    results = tmp_path / "results"
    make_run(results, "sample", "unet", "dice", [0.5, 0.6, 0.7])
    make_run(results, "sample", "unet", "ufl", [0.6, 0.7, 0.8])
    built = build_report(results, claims=True)
    assert all(r["direction"] == "not run" for r in built.records)
    assert "0 comparisons judged" in built.text
    # --dataset sample judges the claims' row comparisons on the sample's runs, flagged
    on_sample = build_report(results, claims=True, dataset="sample")
    judged = [r for r in on_sample.records if r["direction"] != "not run"]
    assert {r["claim"] for r in judged} == {
        "000-T2-DRIVE-ufl-vs-dsc",
        "000-T2-DSB-ufl-vs-dsc",
        "000-T2-CVC-ufl-vs-dsc",
    }
    assert all(
        r["provenance_not_paper_data"] and r["difference"] == pytest.approx(0.1) for r in judged
    )
    assert "not the paper's data" in on_sample.text


def test_claims_end_to_end_on_the_sample_with_the_smoke_protocol(tmp_path):
    runner = CliRunner()
    grid = [
        "ablate",
        "--dataset",
        "sample",
        "--models",
        "unet",
        "--losses",
        "dice,ufl",
        "--seeds",
        "0,1",
        "--protocol",
        "smoke",
        "--epochs",
        "1",
        "--device",
        "cpu",
        "--results",
        str(tmp_path),
    ]
    out = runner.invoke(app, [*grid, "--json"])
    assert out.exit_code == 0, out.output
    shown = runner.invoke(
        app, ["report", "--results", str(tmp_path), "--claims", "--dataset", "sample", "--json"]
    )
    assert shown.exit_code == 0, shown.output
    records = json.loads(shown.output)
    judged = [r for r in records if r["claim"] == "000-T2-DRIVE-ufl-vs-dsc"]
    assert len(judged) == 1
    verdict = judged[0]
    # independent read of the run folders: mean over seeds of the paired per-image DSC differences
    runs = {}
    for folder in (tmp_path / "runs").iterdir():
        config = json.loads((folder / "config.json").read_text())
        with open(folder / "per_image.csv", newline="") as handle:
            rows = {row["image_id"]: float(row["dsc"]) for row in csv.DictReader(handle)}
        runs[(config["config"]["loss"], config["config"]["seed"])] = (
            rows,
            config["resolved"]["data"],
        )
    differences = [
        np.mean([runs[("ufl", s)][0][i] - runs[("dice", s)][0][i] for i in runs[("dice", s)][0]])
        for s in (0, 1)
    ]
    assert verdict["difference"] == pytest.approx(np.mean(differences))
    assert verdict["repetitions"] == 2 and verdict["direction"] in {"holds", "reversed", "unclear"}
    assert verdict["ci_low"] <= verdict["difference"] <= verdict["ci_high"]
    data = runs[("dice", 0)][1]
    assert data["n_images"] == 48 and data["native_min"] == data["native_max"] == [128, 128]
    # the fingerprint's definition: sha256 over the ids, then each array's shape and bytes
    arrays = load("sample", size=tuple(data["size"]))
    digest = hashlib.sha256("\n".join(arrays.ids).encode())
    for array in (arrays.images, arrays.masks):
        digest.update(repr(array.shape).encode())
        digest.update(array.tobytes())
    assert data["sha256"] == digest.hexdigest()
    assert data["sha256"][:16] in verdict["provenance_data"]
    assert verdict["provenance_not_paper_data"] is True
    assert verdict["provenance_protocol"] == "smoke" and verdict["provenance_device"] == "cpu"
    assert verdict["provenance_precision"] == "fp32"
    for fmt in ("markdown", "latex", "csv"):
        text = runner.invoke(
            app,
            [
                "report",
                "--results",
                str(tmp_path),
                "--claims",
                "--dataset",
                "sample",
                "--format",
                fmt,
            ],
        )
        assert text.exit_code == 0 and "000-T2-DRIVE-ufl-vs-dsc" in text.output
    # one command per paper: ablate --claims ends with the same verdict table (the cells are done)
    again = runner.invoke(app, [*grid, "--claims"])
    assert again.exit_code == 0, again.output
    table = runner.invoke(
        app, ["report", "--results", str(tmp_path), "--claims", "--dataset", "sample"]
    )
    verdicts = table.output.split("\nwritten: ")[0].strip()  # less the line naming its file
    assert verdicts.startswith("### Do the papers' claims reproduce?") and verdicts in again.output
    assert "epoch 1/1" not in again.output  # the skipped cells' old epochs are not progress


def test_claims_refuses_the_table_options_it_does_not_use(tmp_path):
    results = tmp_path / "results"
    make_run(results, "sample", "unet", "dice", [0.5, 0.6])
    claims = ["report", "--results", str(results), "--claims"]
    out = CliRunner().invoke(app, [*claims, "--baseline", "dice"])
    assert out.exit_code == 2 and "drop --baseline" in out.output
    out = CliRunner().invoke(app, [*claims, "--dataset", "drive"])
    assert out.exit_code == 2 and "datasets with runs: sample" in out.output


def test_rows_of_different_protocols_are_not_paired(tmp_path):
    results = tmp_path / "results"
    make_run(results, "bus", "unet", "dice", [0.5, 0.6], protocol="paper003")
    make_run(results, "bus", "unet", "tversky", [0.7, 0.8], protocol="smoke")
    records = build_report(results, claims=True).records
    tl = [r for r in records if r["claim"] == "003-BUS-unet-tl-vs-dl"]
    assert len(tl) == 1 and tl[0]["direction"] == "not run"
    assert tl[0]["missing"] == "both rows ran, but no (protocol, seed, fold) has both"
