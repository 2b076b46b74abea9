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
    from rich.markup import escape
    from rich.table import Table

    table = Table(title="deploykit targets")
    cols = ["target", "status", "device", "description", "precisions", "modes", "capabilities", "detail / reason"]
    if any(r["unsupported_ops"] for r in rows):
        cols.append("cannot run ops")
    if label:
        cols.append(f"runs {label}")
    for col in cols:
        table.add_column(col)
    for r in rows:
        status = "[green]available[/]" if r["available"] else "[red]unavailable[/]"
        # escape: "deploykit[trt]" is not markup
        cells = [r["target"], status, r["device"], escape(r["description"]), ",".join(r["precisions"]),
                 ",".join(r["modes"]), ", ".join(r["capabilities"]) or "-", escape(r["detail"])]
        if "cannot run ops" in cols:
            cells.append(", ".join(r["unsupported_ops"]))
        if label:
            bad = r["model"]["unsupported_ops"]
            cells.append("yes" if not bad else
                         "[red]no[/]: " + escape("; ".join(f"{op} ({why})" for op, why in bad.items())))
        table.add_row(*cells)
    stdout_console().print(table)


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
