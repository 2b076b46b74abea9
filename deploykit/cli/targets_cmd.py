"""deploykit targets: every known target, available or not, and why."""

from __future__ import annotations

import click

from deploykit.cli.common import (model_opt_option, model_options, models_dir_option, model_option_flags,
                                  print_json, resolution_option, resolve_models_dir, stdout_console)


@click.command("targets")
@click.option("--model", "model_ref", default=None, metavar="MODEL",
              help="Also tell whether each target can run this model's graph (a registry name, exported if needed "
                   "with --model-opt/--parc-impl/--resolution, or an .onnx file).")
@model_opt_option(help="Model option (with --model).")
@model_option_flags
@resolution_option(help="Export resolution (with --model).")
@models_dir_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def command(model_ref, model_opts, resolution, models_dir, as_json, **flags):
    """Show every inference target with its status here and, when unavailable, the reason; and the ONNX
    ops a target cannot run (bench refuses such a graph before loading it, exit 3)."""
    from deploykit.runtimes.base import CAPABILITIES, list_targets

    targets = list_targets()
    rows = [{"target": name, "available": av.available, "device": cls.device_kind, "description": cls.description,
             "precisions": list(cls.precisions), "modes": list(cls.modes),
             "capabilities": [c for c in CAPABILITIES if cls.has(c)],
             "detail": av.detail if av.available else av.reason,
             "unsupported_ops": dict(cls.unsupported_ops)} for name, cls, av in targets]
    label = None
    if model_ref:
        label, ops = _model_ops(model_ref, model_opts, flags, resolution, models_dir)
        for row, (_, cls, _) in zip(rows, targets):
            bad = cls.graph_unsupported(ops)
            row["model"] = {"label": label, "runs": not bad, "unsupported_ops": bad}
    if as_json:
        print_json(rows)
        return
    from rich.text import Text

    from deploykit.cli.tables import Col, print_fitted

    cols = [Col("target", "target", priority=1), Col("status", "status", priority=2),
            Col("device", "device", priority=5), Col("description", "description", priority=9, wrap=30),
            Col("precisions", "precisions", priority=4), Col("modes", "modes", priority=7),
            Col("capabilities", "capabilities", priority=8, wrap=16),
            Col("detail", "detail / reason", priority=3, wrap=24)]
    if any(r["unsupported_ops"] for r in rows):
        cols.append(Col("ops", "cannot run ops", priority=6, wrap=12))
    if label:
        cols.append(Col("runs", f"runs {label}", priority=2, wrap=24))
    cells = []
    for r in rows:
        cell = {"target": r["target"], "device": r["device"], "description": r["description"],
                "status": Text("available", style="green") if r["available"] else Text("unavailable", style="red"),
                "precisions": ",".join(r["precisions"]), "modes": ",".join(r["modes"]),
                "capabilities": ", ".join(r["capabilities"]) or "-", "detail": r["detail"],
                "ops": ", ".join(r["unsupported_ops"])}
        if label:
            bad = r["model"]["unsupported_ops"]
            cell["runs"] = "yes" if not bad else "no: " + "; ".join(f"{op} ({why})" for op, why in bad.items())
        cells.append(cell)
    print_fitted(stdout_console(), cols, cells, title="deploykit targets", hidden_note="--json shows them")


def _model_ops(ref, model_opts, flags, resolution, models_dir) -> tuple[str, set[str]]:
    """(label, op types) of a registry model (exported, or reused from the artifact store) or an ONNX file."""
    from pathlib import Path

    from deploykit.onnxio.files import load_onnx, op_types
    from deploykit.export.source import looks_like_file
    from deploykit.models.registry import MODELS

    if looks_like_file(ref) and ref not in MODELS:
        return Path(ref).name, op_types(load_onnx(ref, load_external_data=False))
    from deploykit.core.config import ExportConfig
    from deploykit.export.exporter import export_model
    from deploykit.passes.fuse import export_transform

    cfg = ExportConfig(model=ref, resolution=resolution, options=model_options(model_opts, **flags),
                       models_dir=resolve_models_dir(models_dir))
    result = export_model(cfg, fuse=export_transform)
    opts = result.manifest["settings"]["options"]
    label = ref + "".join(f" {k}={v}" for k, v in sorted(opts.items()))
    return label, set(result.manifest["onnx"]["op_histogram"])
