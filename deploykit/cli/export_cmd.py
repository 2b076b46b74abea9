"""deploykit export: PyTorch -> ONNX, verified against PyTorch."""

from __future__ import annotations

from pathlib import Path

import click

from deploykit.cli.common import (batch_option, check_model_flags, check_weights, expand_models, model_opt_option,
                                  model_options, models_dir_option, opset_option, model_option_flags, print_json,
                                  resolution_option, resolve_models_dir, seed_option, stages, stderr_console,
                                  weights_options)


@click.command("export")
@click.argument("model")
@opset_option(help="ONNX opset (>= 18 uses torch's dynamo exporter; lower uses the TorchScript exporter).")
@batch_option()
@resolution_option()
@click.option("--dynamic-batch", is_flag=True, help="Make the batch axis dynamic (verified at two batch sizes).")
@seed_option(help="Seed of the random weights and the verification input.")
@weights_options(help="A state_dict checkpoint to load (torch.load(weights_only=True)).")
@model_opt_option()
@model_option_flags
@click.option("-o", "--output", type=click.Path(path_type=Path), default=None,
              help="Write here instead of <models-dir>/<model>/<variant>.onnx.")
@models_dir_option
@click.option("--force", is_flag=True, help="Rebuild even if an artifact with the same settings exists.")
@click.option("--no-verify", is_flag=True, help="Skip the ONNX Runtime vs PyTorch check (not recommended).")
@click.option("--fuse/--no-fuse", default=True, show_default=True,
              help="Run deploykit's graph passes (Identity removal, BatchNormalization folding), verified against "
                   "the unfused graph.")
@click.option("--no-fold", is_flag=True,
              help="Keep BatchNormalization nodes: legacy TorchScript exporter with training=PRESERVE and no "
                   "constant folding (with --no-fuse the file keeps them; for testing 'deploykit fuse').")
@click.option("--json", "as_json", is_flag=True, help="Print the manifest as JSON.")
def command(model, opset, batch, resolution, dynamic_batch, seed, weights, pretrained, model_opts, output,
            models_dir, force, no_verify, fuse, no_fold, as_json, **flags):
    """Export MODEL (a name from 'deploykit models', any timm:NAME or tv:NAME, or a glob of names such as
    'parc_*' for each match) to ONNX, check it, and verify it in ONNX Runtime against PyTorch on the same input
    (max-abs error, cosine similarity, top-1 agreement).

    The same settings twice reuse the artifact (content-addressed); --force rebuilds.
    """
    from dataclasses import replace

    from deploykit.core.config import ExportConfig
    from deploykit.core.errors import UsageError
    from deploykit.export.exporter import export_model
    from deploykit.passes.fuse import export_transform

    check_weights(weights, pretrained)
    names = expand_models([model])
    several = len(names) > 1
    if output and several:
        raise UsageError(f"--output names one file but {model!r} matches {len(names)} models")
    if several:
        check_model_flags(names, flags)
    cfg = ExportConfig(model=names[0], batch=batch, resolution=resolution, opset=opset, dynamic_batch=dynamic_batch,
                       seed=seed, weights=str(weights) if weights else None, pretrained=pretrained,
                       options=model_options(model_opts, **flags),
                       output=str(output) if output else None, models_dir=resolve_models_dir(models_dir),
                       force=force, verify=not no_verify, fuse=fuse, fold_bn=not no_fold)
    if output is not None:
        from deploykit.core.atomic import check_output_file

        check_output_file(output, "--output")
    err = stderr_console()
    results = []
    for name in names:
        opts = model_options(model_opts, **flags, model=name) if several else cfg.options
        with stages(err, f"exporting {name}") as say:
            results.append(export_model(replace(cfg, model=name, options=opts), progress=say, fuse=export_transform))
        if not as_json:
            _print_result(err, results[-1])
    if as_json:
        rows = [{"path": str(r.path), "reused": r.reused, "manifest": r.manifest} for r in results]
        print_json(rows[0] if len(rows) == 1 else rows)


def _print_result(err, result) -> None:
    m = result.manifest
    verb = "reused" if result.reused else f"exported in {result.seconds:.1f} s"
    err.print(f"[bold]{result.path}[/] ({verb}; opset {m['onnx']['opset']}, {m['onnx']['nodes']} nodes, "
              f"{m['bytes'] / 1e6:.1f} MB)")
    fu = m.get("fusion") or {}
    if fu.get("note"):
        err.print(f"BatchNorm: {fu['note']}")
    if fu.get("passes"):
        pr = fu["passes"]
        err.print(f"graph passes: BatchNormalization {pr.get('batchnorm_before')} -> {pr.get('batchnorm_after')}, "
                  f"nodes {pr.get('nodes_before')} -> {pr.get('nodes_after')}")
    v = m["verification"]
    if v.get("skipped"):
        err.print("[yellow]verification skipped (--no-verify)[/]")
    else:
        for run in v["runs"]:
            err.print(f"verified vs PyTorch at batch {run['batch']}: max-abs {run['max_abs']:.2e} "
                      f"(rel {run['rel_err']:.1e}), cosine {run['cosine']:.6f}, top-1 agreement {run['top1']}")
    click.echo(str(result.path))
