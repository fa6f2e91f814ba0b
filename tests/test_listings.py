"""`datasets` says each licence and how to get the set; `models` lists from a cache."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import tomllib
from typer.testing import CliRunner

from focalbench.cli import app
from focalbench.cli.models import cache_dir, fingerprint

ROOT = Path(__file__).resolve().parents[1]


def test_datasets_lists_each_licence_and_how_to_get_it_from_datasets_toml():
    toml = tomllib.loads((ROOT / "focalbench" / "datasets.toml").read_text())
    result = CliRunner().invoke(app, ["datasets", "--json"])
    assert result.exit_code == 0, result.output
    rows = {r["name"]: r for r in json.loads(result.stdout)}
    assert set(rows) == set(toml)
    for name, raw in toml.items():
        assert rows[name]["license"] == raw["license"] and rows[name]["homepage"] == raw["homepage"]
    assert rows["sample"]["access"] == "builtin"
    # open download: the command and the URL it downloads
    assert rows["dsb2018"]["access"] == "download"
    assert rows["dsb2018"]["get"].startswith("focalbench fetch dsb2018")
    assert toml["dsb2018"]["sources"][0]["url"] in rows["dsb2018"]["get"]
    # behind a registration or a request: where to get it, then the --from command
    for gated in ("drive", "bus", "cvc-clinicdb", "lung"):
        assert rows[gated]["access"] == "manual"
        assert f"focalbench fetch {gated} --from PATH" in rows[gated]["get"]
    assert "drive.grand-challenge.org" in rows["drive"]["get"]
    assert "request BUS 2017 dataset B" in rows["bus"]["get"]
    table = CliRunner().invoke(app, ["datasets"]).output
    assert "licence" in table and "CC BY-NC 4.0" in table


def test_the_models_cache_depends_on_size_channels_and_the_networks_source():
    assert fingerprint(None, 3) == fingerprint(None, 3)
    assert len({fingerprint(None, 3), fingerprint(None, 1), fingerprint((64, 64), 3)}) == 3


def test_models_counts_once_then_lists_from_the_cache_without_importing_torch(tmp_path):
    result = CliRunner().invoke(app, ["models", "--json"])
    assert result.exit_code == 0, result.output
    rows = {r["name"]: r for r in json.loads(result.stdout)}
    assert rows["unet"]["params"] == 7_766_018 - 33  # models spec §1, as in test_models_families
    assert "gflops" not in rows["unet"]  # FLOPs only with --size
    assert (cache_dir() / f"models-{fingerprint(None, 3)}.json").is_file()
    probe = (
        "import json, sys; from focalbench.cli.models import model_rows; rows = model_rows(); "
        "print(json.dumps({'torch': 'torch' in sys.modules, 'n': len(rows)}))"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT), "FOCALBENCH_CACHE": str(cache_dir())}
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, env=env, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == {"torch": False, "n": len(rows)}


def test_the_cli_starts_without_torch_scipy_or_pandas():
    probe = (
        "import sys; import focalbench.cli; "
        "print(sorted(m for m in ('torch', 'scipy', 'pandas', 'matplotlib') if m in sys.modules))"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, env=env, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
