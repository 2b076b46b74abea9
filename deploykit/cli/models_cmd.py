"""deploykit models: the model zoo with family, size and cost."""

from __future__ import annotations

import click

from deploykit.cli.common import (models_dir_option, print_json, resolution_option, resolve_models_dir,
                                  stdout_console)
from deploykit.models.registry import families

PASSTHROUGH_NOTE = ("Any timm or torchvision classification model works by name too: timm:NAME, tv:NAME (their own "
                    "preprocessing; random seeded weights, --pretrained loads the published ones from the local "
                    "cache).")


@click.command("models")
@click.option("--family", type=click.Choice(families()), help="Only this family.")
@resolution_option(help="Count MACs at this input size instead of each model's default.")
@models_dir_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def command(family, resolution, models_dir, as_json):
    """List the models deploykit can build: name, family (cnn|vit|parc), parameters, GMACs, input size.

    MACs count convolutions, linear layers, matmuls and attention (torch's FlopCounterMode / 2),
    computed on the meta device; elementwise ops are not counted.

    Any timm or torchvision classification model works by name too (timm:NAME, tv:NAME), with its own
    preprocessing; they are not listed here.
    """
    from deploykit.models.registry import list_models, model_stats

    rows = []
    for cfg in list_models(family):
        res = resolution or cfg.resolution
        stats = model_stats(cfg.name, res, cache_dir=resolve_models_dir(models_dir))
        rows.append({
            "name": cfg.name, "family": cfg.family, "params_m": stats["params"] / 1e6, "gmacs": stats["macs"] / 1e9,
            "input": list(cfg.input_shape(1, res)), "source": f"{cfg.source}:{cfg.arch}",
            "options": {k: list(v) for k, v in cfg.options}, "description": cfg.description,
            "mean": list(cfg.mean), "std": list(cfg.std),
        })
    if as_json:
        print_json(rows)
        return
    from rich.table import Table

    table = Table(title="deploykit models (random seeded weights unless --weights is given)",
                  caption=PASSTHROUGH_NOTE)
    for col, just in (("name", "left"), ("family", "left"), ("params (M)", "right"), ("GMACs", "right"),
                      ("input", "left"), ("source", "left"), ("options", "left")):
        table.add_column(col, justify=just)
    for r in rows:
        opts = " ".join(f"{k}={'|'.join(v)}" for k, v in r["options"].items())
        table.add_row(r["name"], r["family"], f"{r['params_m']:.2f}", f"{r['gmacs']:.3f}",
                      "x".join(map(str, r["input"][1:])), r["source"], opts)
    stdout_console().print(table)
