"""The shared plumbing: registries, atomic writes, run keys, --param routing, CLI errors."""

import json
import os
import time

import pytest
from typer.testing import CliRunner

from focalbench.cli import app
from focalbench.config import RunConfig, parse_value, split_params
from focalbench.errors import FocalbenchError
from focalbench.registry import Registry
from focalbench.store import (
    atomic_open,
    atomic_write_json,
    ensure_writable_dir,
    parse_time,
    utc_now,
)


def test_registry_unknown_name_suggests_the_closest_and_lists_all():
    reg = Registry("model")
    reg.add("unet", 1)
    reg.add("use-net", 2)
    with pytest.raises(
        FocalbenchError,
        match=r"unknown model 'unte' \(did you mean 'unet'\?\); choose from: unet, use-net",
    ):
        reg.get("unte")


def test_registry_rejects_a_duplicate_name():
    reg = Registry("loss")
    reg.add("dice", 1)
    with pytest.raises(ValueError):
        reg.add("dice", 2)


def test_atomic_write_leaves_the_old_file_when_the_writer_dies(tmp_path):
    target = tmp_path / "metrics.json"
    atomic_write_json(target, {"dsc": 0.8})
    with pytest.raises(RuntimeError):
        with atomic_open(target) as handle:
            handle.write('{"dsc": 0.')
            raise RuntimeError("killed mid-write")
    assert json.loads(target.read_text()) == {"dsc": 0.8}
    assert os.listdir(tmp_path) == ["metrics.json"]  # no temp file left behind


@pytest.mark.parametrize(
    "value, seconds",
    [
        ("2025-01-31T17:04:05Z", 1738343045.0),  # what utc_now writes
        ("2025-01-31T18:04:05+0100", 1738343045.0),  # older engine: local time with its offset
        (1738343045.5, 1738343045.5),  # older ablate failure records: float epoch seconds
        (None, None),
        ("yesterday", None),
        (True, None),
    ],
)
def test_status_times_read_as_epoch_seconds(value, seconds):
    assert parse_time(value) == seconds


def test_utc_now_is_iso_8601_utc_to_the_second():
    text = utc_now()
    assert len(text) == 20 and text[10] == "T" and text.endswith("Z")
    assert abs(parse_time(text) - time.time()) < 2


def test_unwritable_results_folder_is_a_one_line_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(FocalbenchError, match="not writable.*--results DIR"):
        ensure_writable_dir(blocker / "results")


def test_run_key_is_stable_and_distinguishes_cells():
    a = RunConfig(dataset="drive", model="unet", loss="dice", model_params={"width": 8, "depth": 4})
    b = RunConfig(dataset="drive", model="unet", loss="dice", model_params={"depth": 4, "width": 8})
    c = a.replace(seed=1)
    assert a.key == b.key  # dict order does not matter
    assert a.key != c.key
    assert a.key.startswith("drive-unet-dice-s0-")
    assert RunConfig.from_dict(json.loads(a.canonical_json())) == a


@pytest.mark.parametrize(
    "text, value",
    [
        ("3", 3),
        ("0.1", 0.1),
        ("true", True),
        ("none", None),
        ("[2, 6, 9]", [2, 6, 9]),
        ("256x192", [256, 192]),
        ("adam", "adam"),
    ],
)
def test_param_values_are_parsed_to_python(text, value):
    assert parse_value(text) == value


def test_params_are_routed_by_prefix():
    assert split_params(["model.positions=[2,6]", "loss.gamma=0.2", "lr=1e-4"]) == (
        {"positions": [2, 6]},
        {"gamma": 0.2},
        {"lr": 1e-4},
    )
    with pytest.raises(FocalbenchError, match="KEY=VALUE"):
        split_params(["width"])
    with pytest.raises(FocalbenchError, match="prefix 'optim'"):
        split_params(["optim.lr=1"])


def test_cli_help_lists_every_command():
    result = CliRunner().invoke(app, ["--help"])
    assert result.exit_code == 0
    for name in ["fetch", "datasets", "train", "ablate", "prune", "report", "models", "losses"]:
        assert name in result.output
