"""deploykit models: the model zoo with family, size and cost."""

from __future__ import annotations

import click

from deploykit.cli.common import (models_dir_option, print_json, resolution_option, resolve_models_dir, stages,
                                  stderr_console, stdout_console)
from deploykit.models.registry import families

PASSTHROUGH_NOTE = ("Any timm or torchvision classification model works by name too: timm:NAME, tv:NAME (their own "
                    "preprocessing; random seeded weights, --pretrained loads the published ones from the local "
                    "cache).")


@click.command("models")
@click.option("--family", type=click.Choice(families()), help="Only this family.")
@resolution_option(help="Count MACs at this input size instead of each model's default.")
@models_dir_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.option("--wide", is_flag=True,
              help="Show every column of the table, however wide [default: the columns that fit the terminal].")
def command(family, resolution, models_dir, as_json, wide):
    """List the models deploykit can build: name, family (cnn|vit|parc), parameters, GMACs, input size.

    MACs count convolutions, linear layers, matmuls and attention (torch's FlopCounterMode / 2),
    computed on the meta device; elementwise ops are not counted.

    Any timm or torchvision classification model works by name too (timm:NAME, tv:NAME), with its own
    preprocessing; they are not listed here.
    """
    from deploykit.models.registry import list_models, model_stats

    rows = []
    cfgs = list_models(family)
    with stages(stderr_console(), f"counting parameters and MACs of {len(cfgs)} models") as say:
        stats_of = {cfg.name: model_stats(cfg.name, resolution or cfg.resolution,
                                          cache_dir=resolve_models_dir(models_dir), progress=say) for cfg in cfgs}
    for cfg in cfgs:
        res = resolution or cfg.resolution
        stats = stats_of[cfg.name]
        rows.append({
            "name": cfg.name, "family": cfg.family, "params_m": stats["params"] / 1e6, "gmacs": stats["macs"] / 1e9,
            "input": list(cfg.input_shape(1, res)), "source": f"{cfg.source}:{cfg.arch}",
            "options": {k: list(v) for k, v in cfg.options}, "description": cfg.description,
            "mean": list(cfg.mean), "std": list(cfg.std),
        })
    if as_json:
        print_json(rows)
        return
    print_models(rows, wide)


def print_models(rows: list[dict], wide: bool = False, console=None) -> None:
    """The models table on ``console`` (stdout): names whole, the columns that fit its width (all with ``wide``)."""
    from deploykit.cli.tables import Col, print_fitted

    cols = [Col("name", "name", priority=1), Col("family", "family", priority=2),
            Col("params", "params (M)", right=True, priority=3), Col("gmacs", "GMACs", right=True, priority=4),
            Col("input", "input", priority=5), Col("source", "source", priority=7),
            Col("options", "options", priority=6)]
    cells = [{"name": r["name"], "family": r["family"], "params": f"{r['params_m']:.2f}", "gmacs": f"{r['gmacs']:.3f}",
              "input": "x".join(map(str, r["input"][1:])), "source": r["source"],
              "options": " ".join(f"{k}={'|'.join(v)}" for k, v in r["options"].items())} for r in rows]
    print_fitted(console or stdout_console(), cols, cells, wide=wide,
                 title="deploykit models (random seeded weights unless --weights is given)", caption=PASSTHROUGH_NOTE,
                 hidden_note="--wide or --json shows them")
