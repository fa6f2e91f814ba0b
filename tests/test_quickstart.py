"""The README's Quick start shows paper 000's heuristic at work (slow: five cells of 25 epochs)."""

from __future__ import annotations

import csv
import io
import re

import pytest
from typer.testing import CliRunner

from focalbench.cli import app


@pytest.mark.slow
def test_quick_start_study_prunes_some_positions_and_the_pruned_network_differs_from_unet(tmp_path):
    results, plots = tmp_path / "results", tmp_path / "plots"
    runner = CliRunner()
    study = runner.invoke(
        app,
        [
            "ablate",
            "--dataset",
            "sample",
            "--attention",
            "se",
            "--protocol",
            "smoke",
            "--epochs",
            "25",
            "--results",
            str(results),
        ],
    )
    assert study.exit_code == 0, study.output
    table = runner.invoke(
        app,
        [
            "report",
            "--table",
            "se",
            "--dataset",
            "sample",
            "--baseline",
            "U-Net",
            "--format",
            "csv",
            "--results",
            str(results),
            "--plots",
            str(plots),
        ],
    )
    assert table.exit_code == 0, table.output
    records = list(csv.DictReader(io.StringIO(table.stdout)))
    value = {(r["label"], r["metric"]): r["mean"] for r in records}
    kept = int(float(value["Focal USE-Net (pruned)", "modules"]))
    assert 0 < kept < 9  # the zero-initialised weights separated: some SE blocks kept, some dropped
    assert value["Focal USE-Net (pruned)", "dsc"] != value["U-Net", "dsc"]
    names = sorted(p.name for p in plots.iterdir())
    assert "se-sample-summary.png" in names and "se-sample-focal-weights.png" in names
    assert not [n for n in names if re.search(r"[0-9a-f]{10}", n)]  # named by what they show
