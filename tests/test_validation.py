"""Every input is checked before any work: one line naming the fix, exit 2, no folder made.

Issue 10 item 4 and issue 15 items 1–5: a typo in ``--param`` (with "did you mean …" from the
real key set), a bad value, a device this machine lacks, ``--losses`` with commas inside a
term, and ``--dry-run`` (which validates, then prints the cells). Also issue 13 item 8:
``--fold K`` runs only those folds of a k-fold study.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from focalbench.cli import app
from focalbench.grid import plan

ABLATE = [
    "ablate",
    "--dataset",
    "sample",
    "--models",
    "unet",
    "--losses",
    "ufl(gamma=0.2)",
    "--protocol",
    "smoke",
]
TRAIN = [
    "train",
    "--dataset",
    "sample",
    "--model",
    "unet",
    "--loss",
    "ufl(gamma=0.2)",
    "--protocol",
    "smoke",
]
TYPOS = [
    ("batch_sise=4", "batch_size"),
    ("model.widht=8", "model.width"),
    ("loss.gama=2", "loss.gamma"),
]


def _refused(tmp_path: Path, argv: list[str]) -> str:
    """Run the CLI; assert exit 2, one line on stderr, nothing under the results folder."""
    results = tmp_path / "results"
    out = CliRunner().invoke(app, [*argv, "--results", str(results)])
    assert out.exit_code == 2, out.output
    lines = out.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), out.output
    assert not (results / "runs").exists() and not (results / "grids").exists()
    return lines[0]


@pytest.mark.parametrize("command", [ABLATE, TRAIN], ids=["ablate", "train"])
@pytest.mark.parametrize("pair, suggestion", TYPOS, ids=[t[0] for t in TYPOS])
def test_a_misspelt_param_key_is_refused_with_the_suggestion(tmp_path, command, pair, suggestion):
    line = _refused(tmp_path, [*command, "--param", pair])
    assert f"did you mean --param {suggestion}=" in line


def test_the_real_cli_prints_one_line_and_no_traceback(tmp_path):
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "focalbench",
            *ABLATE,
            "--param",
            "batch_sise=4",
            "--results",
            str(tmp_path / "results"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [done.stderr.strip()]
    assert "did you mean --param batch_size=" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "results" / "runs").exists()


@pytest.mark.parametrize("command", [ABLATE, TRAIN], ids=["ablate", "train"])
@pytest.mark.parametrize(
    "pair, message",
    [
        ("size=50x50", "multiples of 16"),  # the network cannot take it: found once, not per cell
        ("batch_size=0", "batch_size must be ≥ 1"),
        ("lr=fast", "expected float"),
        ("model.width=0", "width=0 must be an integer >= 1"),
    ],
    ids=["size", "batch", "lr", "width"],
)
def test_a_bad_param_value_is_refused_once_before_work(tmp_path, command, pair, message):
    assert message in _refused(tmp_path, [*command, "--param", pair])


@pytest.mark.skipif(
    torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA"
)
@pytest.mark.parametrize(
    "flags, message",
    [
        (["--gpus", "0"], "no CUDA device is visible"),
        (["--device", "cuda"], "no CUDA device is visible"),
    ],
)
def test_a_device_this_machine_lacks_is_refused_before_any_cell(tmp_path, flags, message):
    assert message in _refused(tmp_path, [*ABLATE, *flags])


@pytest.mark.skipif(
    torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA"
)
def test_train_on_cuda_without_cuda_is_refused_before_any_folder(tmp_path):
    assert "no CUDA device is visible" in _refused(tmp_path, [*TRAIN, "--device", "cuda"])


def test_losses_split_at_top_level_commas_only():
    grid = plan("sample", models="unet", losses="ufl(gamma=0.2,delta=0.6),dice", protocol="smoke")
    assert [c.config.loss for c in grid.cells] == ["ufl(gamma=0.2,delta=0.6)", "dice"]


def test_dry_run_validates_first(tmp_path):
    line = _refused(tmp_path, [*ABLATE, "--param", "loss.gama=2", "--dry-run"])
    assert "did you mean --param loss.gamma=" in line


def test_dry_run_prints_the_cells_after_validating_and_writes_nothing(tmp_path):
    results = tmp_path / "results"
    out = CliRunner().invoke(
        app,
        [
            *ABLATE[:6],
            "ufl(gamma=0.2,delta=0.6),dice",
            "--protocol",
            "smoke",
            "--dry-run",
            "--json",
            "--results",
            str(results),
        ],
    )
    assert out.exit_code == 0, out.output
    assert [c["config"]["loss"] for c in json.loads(out.output)["cells"]] == [
        "ufl(gamma=0.2,delta=0.6)",
        "dice",
    ]
    assert not results.exists()


def test_fold_runs_only_the_named_folds_of_a_k_fold_study(tmp_path):
    base = [
        "ablate",
        "--dataset",
        "sample",
        "--study",
        "focal-tversky",
        "--protocol",
        "smoke",
        "--dry-run",
        "--json",
        "--results",
        str(tmp_path),
    ]
    full = json.loads(CliRunner().invoke(app, base).output)["cells"]
    one = json.loads(CliRunner().invoke(app, [*base, "--fold", "0"]).output)["cells"]
    two = json.loads(CliRunner().invoke(app, [*base, "--fold", "0,2"]).output)["cells"]
    assert {c["fold"] for c in full} == {0, 1, 2, 3, 4}
    assert {c["fold"] for c in one} == {0} and len(one) == 7  # the study's seven rows
    assert {c["fold"] for c in two} == {0, 2} and len(two) == 14
    # the same cells (run folders) as the full study's, so a later full run skips them
    assert {c["key"] for c in two} <= {c["key"] for c in full}


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--study", "focal-tversky", "--fold", "5"], "the study has folds 0…4"),
        (["--models", "unet", "--losses", "dice", "--fold", "0"], "fixed split"),
    ],
)
def test_a_fold_outside_the_study_is_refused(tmp_path, flags, message):
    line = _refused(tmp_path, ["ablate", "--dataset", "sample", *flags, "--protocol", "smoke"])
    assert message in line


def test_the_python_api_takes_the_same_option_names(tmp_path):
    from focalbench.errors import FocalbenchError
    from focalbench.grid import ablate

    with pytest.raises(FocalbenchError, match="did you mean --param batch_size="):
        ablate(
            "sample",
            models="unet",
            losses="dice",
            protocol="smoke",
            params=["batch_sise=4"],
            results=tmp_path,
            progress=False,
        )
    with pytest.raises(TypeError, match="unknown option 'job'"):
        ablate("sample", models="unet", losses="dice", job=2)
    assert not (tmp_path / "runs").exists()


# The built-in SE study's cell keys and grid names as focalbench 0.1.0 computed them: existing
# results folders resume (and report) only while these stay.
SE_KEYS_010 = {
    "drive": (
        "attention-se-drive-paper000-cd723234",
        [
            "drive-unet-ufl_gamma=0.1_-s0-3b0734e232",
            "drive-use-net-ufl_gamma=0.1_-s0-ddda55d6da",
            "drive-focal-use-net-ufl_gamma=0.1_-s0-e37e765b88",
            "drive-focal-use-net-ufl_gamma=0.1_-s0-c5619fd246",
            None,
        ],
    ),
    "dsb2018": (
        "attention-se-dsb2018-paper000-a57ec829",
        [
            "dsb2018-unet-ufl_gamma=0.2_-s0-0b89748f1b",
            "dsb2018-use-net-ufl_gamma=0.2_-s0-43f393c74c",
            "dsb2018-focal-use-net-ufl_gamma=0.2_-s0-9ec9a5bacd",
            "dsb2018-focal-use-net-ufl_gamma=0.2_-s0-2f57261360",
            None,
        ],
    ),
}
SE_SMOKE_SEEDS_010 = [
    "drive-unet-ufl_gamma=0.1_-s0-4e00f7aba1",
    "drive-use-net-ufl_gamma=0.1_-s0-70ed3f120f",
    "drive-focal-use-net-ufl_gamma=0.1_-s0-81dafdc5db",
    "drive-focal-use-net-ufl_gamma=0.1_-s0-bb7fdb870b",
    None,
    "drive-unet-ufl_gamma=0.1_-s1-9371d2661a",
    "drive-use-net-ufl_gamma=0.1_-s1-304b0a9559",
    "drive-focal-use-net-ufl_gamma=0.1_-s1-e0f9e369aa",
    "drive-focal-use-net-ufl_gamma=0.1_-s1-e0ed3fc180",
    None,
]


@pytest.mark.parametrize("dataset", sorted(SE_KEYS_010))
def test_the_se_study_keys_are_those_of_0_1_0(dataset):
    grid = plan(dataset, attention="se", protocol="paper000")
    name, keys = SE_KEYS_010[dataset]
    assert (grid.name, [c.config.key if c.config else None for c in grid.cells]) == (name, keys)


def test_the_se_study_keys_with_seeds_are_those_of_0_1_0():
    grid = plan("drive", attention="se", seeds="0,1", protocol="smoke")
    assert grid.name == "attention-se-drive-smoke-62730a79"
    assert [c.config.key if c.config else None for c in grid.cells] == SE_SMOKE_SEEDS_010


@pytest.mark.parametrize("pair,suggestion", TYPOS)
def test_the_python_train_api_checks_the_config_before_any_folder(tmp_path, pair, suggestion):
    # a notebook user calls focalbench.train directly: the same check, before runs/<key>/
    import focalbench
    from focalbench.config import RunConfig, split_params
    from focalbench.errors import FocalbenchError

    model_params, loss_params, overrides = split_params([pair])
    config = RunConfig(
        dataset="sample",
        model="unet",
        loss="ufl(gamma=0.2)",
        protocol="smoke",
        model_params=model_params,
        loss_params=loss_params,
        overrides=overrides,
    )
    with pytest.raises(FocalbenchError, match=f"did you mean --param {suggestion}="):
        focalbench.train(config, results=tmp_path / "results", device="cpu")
    assert not (tmp_path / "results" / "runs").exists()
