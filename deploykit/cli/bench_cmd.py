"""deploykit bench: latency / throughput / fidelity of models on targets, written as reports."""

from __future__ import annotations

from pathlib import Path

import click

from deploykit.cli.common import (CALIB_KEYS, POSITIVE, batch_option, calibration_options, check_parc_impl,
                                  check_weights, expand_models, model_opt_option, model_options, models_dir_option,
                                  opset_option, parc_impl_option, print_json, quantize_config, reports_dir_option,
                                  resolution_option, resolve_models_dir, resolve_reports_dir, seed_option,
                                  stderr_console, stdout_console, weights_options)
from deploykit.cli.common import FiniteFloatRange  # nan / inf refused
from deploykit.cli.runtime_options import runtime_option, runtime_options, target_option, target_options


def hardware_options(f):
    """The targets' own options (device, precision, throughput mode, GPU timing, caches: every runtime option
    the targets declare, but --threads/--graph-opt placed above), then the energy options."""
    return target_options(energy_options(f), exclude=("threads", "graph_opt"))


def energy_options(f):
    """How energy is measured (BenchConfig)."""
    opts = [
        click.option("--energy", type=click.Choice(["auto", "off"]), default="auto", show_default=True,
                     help="Measure energy with every meter readable here (NVML, RAPL) or not at all."),
        click.option("--idle-time", type=FiniteFloatRange(min=0), default=2.0, show_default=True,
                     help="Seconds of idle power measured before warm-up (when a meter is readable)."),
        click.option("--energy-estimate-watts", type=FiniteFloatRange(min=0, min_open=True), default=None,
                     help="Add an energy ESTIMATE from this constant power (labelled estimated; never used silently)."),
    ]
    for opt in reversed(opts):
        f = opt(f)
    return f


@click.command("bench")
@click.argument("models", nargs=-1, required=True)
@target_option(multiple=True, help="Target(s) to run on; repeat or comma-separate ('deploykit targets' lists them).")
@batch_option()
@resolution_option(help="Input height = width [default: the model's / the file's].")
@click.option("--warmup", type=click.IntRange(min=0), default=10, show_default=True, help="Warm-up iterations.")
@click.option("--min-iters", type=POSITIVE, default=50, show_default=True, help="Stop rule: at least this many iterations ...")
@click.option("--min-time", type=FiniteFloatRange(min=0), default=5.0, show_default=True, help="... and at least this many seconds ...")
@click.option("--max-time", type=FiniteFloatRange(min=0, min_open=True), default=60.0, show_default=True, help="... but never more seconds than this.")
@seed_option(help="Seed of the input tensor (the same for every target).")
@runtime_option("threads")
@runtime_option("graph_opt")
@weights_options()
@model_opt_option()
@parc_impl_option
@opset_option()
@models_dir_option
@reports_dir_option
@click.option("--format", "formats", default="json,md,csv", show_default=True, help="Report files to write.")
@click.option("--no-save", is_flag=True, help="Write no report files.")
@click.option("--json", "as_json", is_flag=True, help="Print the JSON report(s) to stdout.")
@click.option("--reference-workload", is_flag=True,
              help="Also measure the fixed reference workload (refnet-v1) interleaved with the model, for comparisons "
                   "across machines ('deploykit gate --baseline').")
@click.option("--reference-blocks", type=click.IntRange(min=2), default=12, show_default=True,
              help="ABBA blocks per side of the reference-workload step.")
@hardware_options
@click.option("--int8", is_flag=True,
              help="Benchmark the int8 (QDQ) variant: quantized on demand with the calibration options below and "
                   "cached like any artifact (see 'deploykit quantize').")
@calibration_options
def command(models, targets, batch, resolution, warmup, min_iters, min_time, max_time, seed, threads, graph_opt,
            weights, model_opts, parc_impl, opset, models_dir, report_dir, formats, no_save, as_json, reference_workload,
            reference_blocks, int8, **hw):
    """Measure MODELS on each target: model names (from 'deploykit models', any timm:NAME or tv:NAME, globs of
    names such as 'parc_*'), or .onnx files.

    Every target gets the same input tensor (from --seed) and the same measurement: session load and the
    first inference are timed apart, then --warmup iterations, then iterations until both --min-iters
    and --min-time are reached (at most --max-time). Reports: p50/p90/p95/p99, mean, stdev, CV, min/max,
    a bootstrap 95% CI of the median, throughput, outputs compared with the PyTorch fp32 reference, and
    the machine's fingerprint, written to <report-dir>/<stamp>-<model>-<target>.{json,md,csv}.
    """
    calib = {k: hw.pop(k) for k in CALIB_KEYS}
    pretrained = hw.pop("pretrained")
    check_weights(weights, pretrained)
    models = expand_models(models)
    from deploykit.core.config import BenchConfig, ExportConfig
    from deploykit.core.errors import UsageError
    from deploykit.models.registry import get_cfg
    from deploykit.models.select import is_model_name
    from deploykit.report.render import FORMATS
    from deploykit.runtimes.base import get_runtime

    target_list = [t.strip() for spec in targets for t in spec.split(",") if t.strip()]
    fmt_list = [f.strip() for f in formats.split(",") if f.strip()]
    if not target_list:
        raise UsageError(f"-t/--target {','.join(targets)!r} names no target ('deploykit targets' lists them)")
    if not fmt_list:
        raise UsageError(f"--format {formats!r} names no report format (choose from {', '.join(FORMATS)}; "
                         "--no-save writes none)")
    bad = [f for f in fmt_list if f not in FORMATS]
    if bad:
        raise UsageError(f"unknown report format {bad[0]!r} (choose from {', '.join(FORMATS)})")
    cfg = BenchConfig(batch=batch, resolution=resolution, warmup=warmup, min_iters=min_iters, min_time=min_time,
                      max_time=max_time, seed=seed, energy=hw["energy"], idle_time=hw["idle_time"],
                      energy_estimate_watts=hw["energy_estimate_watts"],
                      reference_workload=reference_workload, reference_blocks=reference_blocks)
    opts = runtime_options(hw, threads=threads, graph_opt=graph_opt,  # and every target option given in hw
                           cache_dir=str(resolve_models_dir(models_dir) / ".cache"))
    qcfg = quantize_config(**calib) if int8 else None  # validated before any work
    if qcfg is not None and not qcfg.calib_data:
        raise UsageError("--int8 needs --calib-data DIR (images preprocessed like the model's inputs) or "
                         "'--calib-data synthetic' for a smoke test")
    # check everything we can before spending minutes on the first model
    for t in target_list:
        cls = get_runtime(t)
        cls.ensure_available()
        cls(opts).preflight()  # mode / precision / device fit this target and this machine
    for m in models:
        if is_model_name(m):
            get_cfg(m)
        elif not Path(m).exists():
            from deploykit.core.errors import InputError

            raise InputError(f"ONNX file not found: {m}")
    check_parc_impl(models, parc_impl)
    reports_dir = resolve_reports_dir(report_dir)
    if not no_save:
        from deploykit.core.atomic import ensure_dir

        ensure_dir(reports_dir)

    from deploykit.bench.pipeline import run_benchmark
    from deploykit.report.render import write_report_files
    from deploykit.report.schema import build_report

    err = stderr_console()
    reports = []
    for m in models:
        for t in target_list:
            export = ExportConfig(model=m, batch=batch, resolution=resolution, opset=opset,
                                  weights=str(weights) if weights else None, pretrained=pretrained,
                                  options=model_options(model_opts, parc_impl=parc_impl, model=m),
                                  models_dir=resolve_models_dir(models_dir)) if is_model_name(m) else None
            result = _run_one(err, run_benchmark, m, t, cfg, opts, export, qcfg)
            report = build_report(result)
            reports.append(report)
            if not no_save:
                paths = write_report_files(report, reports_dir, fmt_list)
                err.print(f"[dim]report: {', '.join(str(p) for p in paths)}[/]")
            for w in report["warnings"]:
                err.print(f"[yellow]warning:[/] {m} on {t}: {w}")
            energy = report.get("energy") or {}
            if energy.get("status") == "unavailable":
                from rich.markup import escape

                err.print(f"[dim]energy: unavailable ({escape('; '.join(energy['reasons']))})[/]")
    if as_json:
        print_json(reports[0] if len(reports) == 1 else reports)
    else:
        print_table(reports)


def _run_one(err, run_benchmark, model, target, cfg, opts, export, qcfg=None):
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    if not err.is_terminal:
        return run_benchmark(model, target, cfg, opts, export=export, say=lambda s: err.print(f"[dim]{s}[/]"),
                             int8=qcfg)
    # refreshed by hand from the measuring thread between iterations (auto_refresh would start a render
    # thread that competes with the runtime's threads for the cores being measured)
    progress = Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.fields[info]}"),
                        TimeElapsedColumn(), console=err, auto_refresh=False, transient=True)
    task = progress.add_task(f"{model} on {target}", total=cfg.min_time or 1.0, info="")

    def say(msg):
        progress.update(task, info=msg)
        progress.refresh()

    def on_progress(phase, iters, elapsed):
        if phase == "measure":
            progress.update(task, completed=min(elapsed, cfg.min_time or 1.0),
                            info=f"{iters} iterations")
        elif phase == "warmup":
            progress.update(task, info=f"warm-up done ({iters})")
        progress.refresh()

    with progress:
        return run_benchmark(model, target, cfg, opts, export=export, say=say, progress=on_progress, int8=qcfg)


def print_table(reports: list[dict]) -> None:
    from rich.table import Table

    from deploykit.report.render import SUMMARY_COLUMNS, fmt, summary_row

    shown = ["model", "target", "precision", "input", "p50_ms", "ci95_ms", "p90_ms", "p99_ms", "cv", "items_per_s",
             "first_ms", "iterations", "top1", "cosine", "fidelity"]
    if any(r["throughput"].get("mode") == "throughput" for r in reports):
        shown.insert(shown.index("items_per_s") + 1, "mode")
    if any((r.get("energy") or {}).get("status") in ("measured", "estimated") for r in reports):
        shown.insert(shown.index("items_per_s") + 1, "j_per_inf")
    heads = dict(SUMMARY_COLUMNS)
    table = Table(title="deploykit bench (latency in ms, batch latency; CI = bootstrap 95% CI of the median)")
    for k in shown:
        table.add_column(heads[k], justify="left" if k in ("model", "target", "precision", "input", "fidelity") else "right")
    for r in reports:
        row = summary_row(r)
        table.add_row(*[fmt(k, row[k]) for k in shown])
    stdout_console().print(table)
