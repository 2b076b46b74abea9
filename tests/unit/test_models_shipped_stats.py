"""The first `deploykit models` prints at once: every registry model's counts at its default resolution and options
ship with deploykit (models/model_stats.json); other resolutions are still counted on demand."""

from __future__ import annotations

import json

from deploykit.cli import cli
from deploykit.models import shipped_stats
from deploykit.models.registry import list_models, resolve_options


def test_every_registry_model_has_shipped_counts():
    missing = [cfg.name for cfg in list_models()
               if shipped_stats.lookup(cfg.name, cfg.resolution, resolve_options(cfg, None)) is None]
    assert missing == [], f"run 'python -m deploykit.models.shipped_stats' (no shipped counts for {missing})"


def test_first_models_listing_counts_nothing(cli_runner, tmp_path):
    r = cli_runner.invoke(cli, ["models", "--json", "--models-dir", str(tmp_path / "m")])
    assert r.exit_code == 0, r.stderr
    assert "counting the parameters and MACs of" not in r.stderr  # nothing counted: all shipped
    assert not (tmp_path / "m").exists()  # and no cache written
    rows = {x["name"]: x for x in json.loads(r.stdout)}
    assert rows["resnet18"]["params_m"] == 11.689512 and rows["resnet18"]["gmacs"] == 1.814073344
