"""Study files: a built-in study printed as TOML plans exactly the built-in's cells and keeps its
table; a sweep is a grid axis; a mistake is one line naming the file, the line and the key."""

import pytest

from focalbench.errors import FocalbenchError
from focalbench.grid import plan
from focalbench.grid.studies import STUDIES
from focalbench.grid.study_file import dump_study, load_study

BUILT_IN = [
    (flags, dataset)
    for flags, datasets in [
        ({"attention": "se"}, ["drive", "dsb2018", "cvc-clinicdb"]),
        ({"attention": "ag"}, ["drive", "dsb2018", "cvc-clinicdb"]),
        ({"study": "losses"}, ["drive", "dsb2018", "cvc-clinicdb", "drive,dsb2018"]),
        ({"study": "focal-tversky"}, ["bus", "isic2018"]),
        ({"study": "focusnet"}, ["isic2018", "dsb2018", "isic2018,dsb2018"]),
    ]
    for dataset in datasets
]


def _cells(grid):
    return [
        (c.row, c.dataset, c.seed, c.fold, c.source, c.config and c.config.key) for c in grid.cells
    ]


@pytest.mark.parametrize(("flags", "dataset"), BUILT_IN)
def test_a_printed_built_in_study_plans_the_same_cells(tmp_path, flags, dataset):
    name = f"attention-{flags['attention']}" if "attention" in flags else flags["study"]
    file = tmp_path / "study.toml"
    file.write_text(dump_study(STUDIES.get(name), dataset))
    assert _cells(plan(dataset, study_file=file)) == _cells(plan(dataset, **flags))
    assert load_study(file).table == STUDIES.get(name).table


def test_each_built_in_study_feeds_the_layout_of_its_papers_table():
    layouts = {name: STUDIES.get(name).table.layout.value for name in STUDIES.names()}
    assert layouts == {
        "attention-se": "se",
        "attention-ag": "ag",
        "losses": "losses",
        "focal-tversky": "focal-tversky",
        "focusnet": "focusnet",
    }


SWEEP = """\
name = "gamma-search"
protocol = "smoke"

[table]
title = "UFL gamma search"

[sweep]
"loss.gamma" = [0.1, 0.2, 0.3]

[[rows]]
label = "UFL"
network = "unet"
loss = "ufl"

[[rows]]
label = "UFL + DPT"
network = "unet"
loss = "ufl+dpt"
"""


def test_a_sweep_is_a_grid_axis_whose_cells_are_those_of_each_param_value(tmp_path):
    file = tmp_path / "sweep.toml"
    file.write_text(SWEEP)
    swept = plan("sample", study_file=file)
    assert len(swept.cells) == 6 and len({c.config.key for c in swept.cells}) == 6
    assert all("loss.gamma=" in c.row for c in swept.cells)
    # each value is the cells `--param loss.gamma=VALUE` gives the same rows
    explicit = {
        c.config.key
        for g in (0.1, 0.2, 0.3)
        for c in plan(
            "sample",
            models="unet",
            losses="ufl,ufl+dpt",
            protocol="smoke",
            params=[f"loss.gamma={g}"],
        ).cells
    }
    assert {c.config.key for c in swept.cells} == explicit


def test_an_unknown_loss_names_the_file_the_line_and_the_key(tmp_path):
    file = tmp_path / "bad.toml"
    file.write_text(SWEEP.replace('loss = "ufl+dpt"', 'loss = "ufl+dptt"'))
    with pytest.raises(FocalbenchError) as raised:
        plan("sample", study_file=file)
    message = str(raised.value)
    assert message.startswith(f"{file}:18: rows[2].loss") and "\n" not in message


def test_a_table_with_layout_baseline_and_metrics_round_trips(tmp_path):
    file = tmp_path / "table.toml"
    file.write_text(
        SWEEP.replace(
            'title = "UFL gamma search"\n',
            'title = "UFL gamma search"\nlayout = "losses"\nbaseline = "unet:ufl"\n'
            'metrics = ["recall", "dsc"]\n',
        )
    )
    table = load_study(file).table
    assert (table.title, table.layout.value, table.baseline, table.metrics) == (
        "UFL gamma search",
        "losses",
        "unet:ufl",
        ("recall", "dsc"),
    )
    printed = tmp_path / "printed.toml"
    printed.write_text(dump_study(load_study(file), "sample"))
    assert load_study(printed).table == table


TABLE_MISTAKES = [
    (
        'layout = "loses"',
        "table.layout: unknown layout 'loses' (did you mean 'losses'?); choose from: losses, se, "
        "ag, focal-tversky, focusnet, auto",
    ),
    ("layout = 2", "table.layout: must be a string, got 2"),
    (
        'metrics = ["dsc", "recal"]',
        "table.metrics: names an unknown metric 'recal' (did you mean 'recall'?); choose from: "
        "dsc, precision, recall, jaccard, accuracy, sensitivity, specificity, hd95, params, "
        "gflops, modules",
    ),
    ('metrics = "dsc"', "table.metrics: must be a list of strings, got 'dsc'"),
    ('metrics = ["dsc", "dsc"]', "table.metrics: names 'dsc' twice; name each metric once"),
    (
        "baseline = 3",
        "table.baseline: must be a string (a model, a loss or MODEL:LOSS), got 3",
    ),
    ('baseline = ""', "table.baseline: is empty; name a model, a loss or MODEL:LOSS"),
]


@pytest.mark.parametrize(("line", "message"), TABLE_MISTAKES)
def test_a_table_mistake_names_the_file_the_line_and_the_key(tmp_path, line, message):
    title = 'title = "UFL gamma search"'
    file = tmp_path / "bad.toml"
    file.write_text(SWEEP.replace(title, f"{title}\n{line}"))
    number = SWEEP.splitlines().index(title) + 2  # the line after the title
    with pytest.raises(FocalbenchError) as raised:
        plan("sample", study_file=file)
    assert str(raised.value) == f"{file}:{number}: {message}"


def test_the_cli_prints_a_study_file_that_plans_the_built_in_cells(tmp_path):
    import json

    from typer.testing import CliRunner

    from focalbench.cli import app

    runner = CliRunner()
    printed = runner.invoke(
        app, ["ablate", "--study", "losses", "--dataset", "drive", "--print-study-file"]
    )
    assert printed.exit_code == 0, printed.output
    assert '[table]\ntitle = "paper 000 Table 2 (losses)"\nlayout = "losses"\n' in printed.stdout
    file = tmp_path / "losses.toml"
    file.write_text(printed.stdout)
    assert _cells(plan("drive", study_file=file)) == _cells(plan("drive", study="losses"))
    sweep = tmp_path / "sweep.toml"
    sweep.write_text(SWEEP)
    dry = runner.invoke(
        app, ["ablate", "--study-file", str(sweep), "--dataset", "sample", "--dry-run", "--json"]
    )
    assert dry.exit_code == 0, dry.output
    listed = [cell["key"] for cell in json.loads(dry.stdout)["cells"]]
    assert listed == [c.config.key for c in plan("sample", study_file=sweep).cells]
    assert json.loads(dry.stdout)["table"] == {
        "title": "UFL gamma search",
        "layout": "auto",
        "baseline": None,
        "metrics": None,
    }
