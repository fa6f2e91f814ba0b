"""`focalbench losses [--json]` lists every registered loss with its defaults."""

import json

from typer.testing import CliRunner

from focalbench.cli import app
from focalbench.losses import list_losses


def test_losses_json_lists_every_name_with_defaults():
    result = CliRunner().invoke(app, ["losses", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    by_name = {item["name"]: item for item in data["losses"]}
    assert list(by_name) == list_losses()
    assert by_name["ufl"]["defaults"]["delta"] == 0.6
    assert by_name["focal_tversky"]["defaults"]["w_fn"] == 0.7
    assert by_name["dice"]["defaults"] == {"smooth": 1e-5, "reduction": "image", "classes": "both"}
    assert data["boundary_terms"]["fdpt"]["eps"] == 0.1
    assert "paper003" in data["presets"]


def test_losses_table_names_every_loss():
    result = CliRunner().invoke(app, ["losses"])
    assert result.exit_code == 0, result.output
    for name in list_losses():
        assert name in result.stdout
