"""Study definitions → cells: the papers' rows, γ per dataset, the general product, errors."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from focalbench.cli import app
from focalbench.errors import FocalbenchError
from focalbench.grid import plan
from focalbench.grid.display import eta_seconds


def test_attention_se_study_is_paper000_table3_with_the_datasets_gamma():
    grid = plan("sample,drive", attention="se", protocol="smoke")
    assert grid.table.title == "paper 000 Table 3 (Focal SE)" and grid.table.layout == "se"
    rows = [
        (c.dataset, c.row, c.config and (c.config.model, c.config.loss, c.config.model_params))
        for c in grid.cells
    ]
    # γ from datasets.toml (paper 000 Table 1): DRIVE 0.1; the shipped sample (a DSB subset) 0.2
    assert rows[:5] == [
        ("sample", "U-Net", ("unet", "ufl(gamma=0.2)", {})),
        ("sample", "USE-Net", ("use-net", "ufl(gamma=0.2)", {})),
        (
            "sample",
            "Focal USE-Net (w0 = 1)",
            ("focal-use-net", "ufl(gamma=0.2)", {"focal_init": 1.0}),
        ),
        (
            "sample",
            "Focal USE-Net (w0 = 0)",
            ("focal-use-net", "ufl(gamma=0.2)", {"focal_init": 0.0}),
        ),
        ("sample", "Pruned Focal USE-Net (retrained)", None),
    ]
    assert grid.cells[4].source == 3 and grid.cells[9].source == 8
    assert {c.config.loss for c in grid.cells[5:] if c.config} == {"ufl(gamma=0.1)"}


def test_attention_ag_uses_the_attention_unet_family():
    models = [c.config.model for c in plan("sample", attention="ag").cells if c.config]
    assert models == ["unet", "attention-unet", "focal-attention-unet", "focal-attention-unet"]


def test_losses_study_is_table2_nine_losses_on_the_unet():
    grid = plan("drive", study="losses")
    assert [c.config.loss for c in grid.cells] == [
        "dice",
        "dice+dpt",
        "dice+fdpt(eps=0.1)",
        "dice_ce",
        "dice_ce+dpt",
        "dice_ce+fdpt(eps=0.1)",
        "ufl(gamma=0.1)",
        "ufl(gamma=0.1)+dpt",
        "ufl(gamma=0.1)+fdpt(eps=0.1)",
    ]
    assert {c.config.model for c in grid.cells} == {"unet"}
    assert {c.config.protocol for c in grid.cells} == {"paper000"}


def test_focal_tversky_study_is_seven_configurations_times_five_folds():
    grid = plan("sample", study="focal-tversky")
    assert len(grid.cells) == 35
    assert sorted({c.fold for c in grid.cells}) == [0, 1, 2, 3, 4]
    assert {c.config.protocol for c in grid.cells} == {"paper003"}
    assert len({c.config.key for c in grid.cells}) == 35


def test_focusnet_study_builds_the_authors_networks_with_the_reduced_presets_on_dsb():
    isic = plan("isic2018", study="focusnet").cells
    dsb = [c.config.model for c in plan("dsb2018", study="focusnet").cells]
    assert [c.config.model for c in isic] == [
        "unet",
        "r2u-net",
        "bcdu-net",
        "unetplusplus",
        "attention-unet-kaul",
        "focusnet",
        "focusnetpp",
    ]
    # BCDU-Net as the authors' code builds it: the one-direction ConvLSTM (Table 2's 20.66 M)
    assert isic[2].config.model_params == {"convlstm": "backward"}
    # Table 3's reduced networks; R2U-Net has no Table 3 row, so no reduced preset
    assert dsb == [
        "unet",
        "r2u-net",
        "bcdu-net-small",
        "unetplusplus",
        "attention-unet-kaul",
        "focusnet-small",
        "focusnetpp-small",
    ]


def test_focal_tversky_study_compares_against_the_authors_baselines():
    models = [c.config.model for c in plan("sample", study="focal-tversky").cells if c.fold == 0]
    assert (
        models == ["unet-abraham"] * 3 + ["attention-unet-abraham"] + ["pyramid-attention-unet"] * 3
    )


def test_general_form_is_the_full_product_with_params_on_every_cell():
    grid = plan(
        "sample",
        models="unet,use-net",
        losses="dice,ufl(gamma=0.5)",
        seeds="0,1,2",
        folds=2,
        epochs=3,
        params=["model.width=4", "loss.smooth=1.0", "batch_size=2"],
        protocol="smoke",
    )
    assert len(grid.cells) == 2 * 2 * 3 * 2
    assert len({c.config.key for c in grid.cells}) == 24
    first = grid.cells[0].config
    assert (first.model_params, first.loss_params, first.overrides, first.epochs) == (
        {"width": 4},
        {"smooth": 1.0},
        {"batch_size": 2},
        3,
    )


def test_plan_is_deterministic_so_a_rerun_finds_its_grid():
    assert plan("sample", attention="se").name == plan("sample", attention="se").name
    assert plan("sample", attention="se").name != plan("sample", attention="se", seeds="1").name


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, "pick one grid"),
        ({"attention": "se", "study": "losses"}, "got --attention and --study"),
        ({"models": "unet"}, "needs both --models"),
        ({"attention": "se", "seeds": "0,x"}, "--seeds takes integers"),
        ({"attention": "se", "folds": 1}, "--folds K needs K ≥ 2"),
    ],
)
def test_grid_mistakes_are_one_line_errors(kwargs, message):
    with pytest.raises(FocalbenchError, match=message):
        plan("sample", **kwargs)


def test_eta_is_mean_trained_time_times_cells_left_over_slots():
    assert eta_seconds([10.0, 20.0], remaining=4, parallel=2) == 30.0
    assert eta_seconds([], remaining=3, parallel=1) is None
    assert eta_seconds([5.0], remaining=0, parallel=1) == 0.0


def test_cli_help_lists_each_study_with_its_table_and_dry_run_lists_cells():
    runner = CliRunner()
    help_text = runner.invoke(app, ["ablate", "--help"], env={"COLUMNS": "200"}).output
    for fragment in (
        "paper 000 Table 3",
        "paper 000 Table 4",
        "paper 000 Table 2",
        "paper 003",
        "paper 002",
        "Focal USE-Net (w0 = 0)",
    ):
        assert fragment in help_text
    dry = runner.invoke(
        app, ["ablate", "--dataset", "sample", "--attention", "se", "--dry-run", "--json"]
    )
    cells = json.loads(dry.output)["cells"]
    assert [c["key"] is None for c in cells] == [False, False, False, False, True]
    unknown = runner.invoke(app, ["ablate", "--dataset", "sample", "--study", "lossses"])
    assert unknown.exit_code == 2


def test_a_typo_fails_before_any_cell_runs(tmp_path):
    from focalbench.grid import ablate

    with pytest.raises(FocalbenchError, match="did you mean 'unet'"):
        ablate(
            "sample",
            models="unte",
            losses="dice",
            protocol="smoke",
            results=tmp_path,
            progress=False,
        )
    with pytest.raises(FocalbenchError, match="loss"):
        ablate(
            "sample",
            models="unet",
            losses="dcie",
            protocol="smoke",
            results=tmp_path,
            progress=False,
        )
    with pytest.raises(FocalbenchError, match="--threshold -0.1 must be ≥ 0"):
        ablate(
            "sample",
            attention="se",
            protocol="smoke",
            threshold=-0.1,
            results=tmp_path,
            progress=False,
        )
    assert not (tmp_path / "runs").exists() and not (tmp_path / "grids").exists()
