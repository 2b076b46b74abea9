"""deploykit baseline: stored latency baselines (reports with the reference workload) for
`deploykit gate --baseline`."""

from __future__ import annotations

import re
from pathlib import Path

import click

from deploykit.cli.common import (batch_option, check_model_flags, model_opt_option, model_option_flags, model_options,
                                  models_dir_option, opset_option, pop_model_flags, resolution_option, seed_option)
from deploykit.cli.common import FiniteFloatRange  # nan / inf refused
from deploykit.cli.runtime_options import runtime_option, target_option


@click.group("baseline")
def command() -> None:
    """Stored baselines for 'deploykit gate --baseline FILE' (commit them under reports/baselines/).

    A baseline is a deploykit report that also carries the fixed reference workload (refnet-v1) measured
    interleaved with the model on the same target and threads, so that a later gate on another machine
    compares the model's latency relative to it.
    """


@command.command("update")
@click.argument("model", required=False)
@click.option("-o", "--output", type=click.Path(path_type=Path), default=None,
              help="Baseline file to (re)write [default: reports/baselines/<model>-<target>.json].")
@click.option("-c", "--config", "gate_file", type=click.Path(path_type=Path), default=None, metavar="GATEFILE",
              help="Rewrite every baseline the gate file's checks name (with each check's settings).")
@target_option()
@runtime_option("precision", help="Precision the target runs.")
@batch_option()
@resolution_option()
@runtime_option("threads")
@runtime_option("graph_opt", help=None)
@click.option("--blocks", type=click.IntRange(min=6), default=20, show_default=True,
              help="ABBA blocks per side of the model vs the reference workload.")
@click.option("--block-time", type=FiniteFloatRange(min=0, min_open=True), default=0.25, show_default=True,
              help="Seconds per block (use the same as the gate's blocks).")
@click.option("--min-time", type=FiniteFloatRange(min=0), default=3.0, show_default=True,
              help="Seconds of the model's own (non-interleaved) measurement in the report.")
@seed_option(help=None)
@opset_option(help=None)
@model_opt_option(help=None)
@model_option_flags
@models_dir_option
def update(model, output, gate_file, target, precision, batch, resolution, threads, graph_opt, blocks, block_time,
           min_time, seed, opset, model_opts, models_dir, **params):
    """Measure MODEL (or every baseline check of a gate file) and rewrite its baseline file."""
    from deploykit.bench.plan import plan_runs
    from deploykit.cli.common import resolve_models_dir
    from deploykit.core.config import BenchConfig, ExportConfig
    from deploykit.core.errors import UsageError
    from deploykit.gate.config import GateCheck

    mdir = resolve_models_dir(models_dir)
    flags = pop_model_flags(params)
    export = ExportConfig(model=model or "-", opset=opset, options=model_options(model_opts, **flags), models_dir=mdir)
    measure = BenchConfig(min_time=min_time, max_time=max(60.0, min_time), seed=seed, reference_workload=True,
                          reference_blocks=blocks, reference_block_time=block_time)
    if gate_file is not None:
        if model is not None or output is not None:
            raise UsageError("give MODEL (with -o) or --config, not both")
        from deploykit.gate.gatefile import load_gate_file

        checks = [c for c in load_gate_file(gate_file, export=export)[0] if c.mode == "baseline"]
        if not checks:
            raise UsageError(f"gate file {gate_file} has no check with a baseline")
        outs = [c.reference for c in checks]
        dup = {str(o) for o in outs if outs.count(o) > 1}
        if dup:
            raise UsageError(f"gate file {gate_file}: several checks write the baseline {sorted(dup)[0]}")
    else:
        if model is None:
            raise UsageError("missing MODEL (a model name or an ONNX file), or give --config GATEFILE")
        if output is None:
            label = re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(model).stem if model.endswith(".onnx") else model)
            output = Path("reports") / "baselines" / f"{label}-{target}.json"
        checks = [GateCheck(name=model, candidate=model, mode="baseline", reference=str(output), target=target,
                            precision=precision, batch=batch, resolution=resolution, threads=threads,
                            values=(("graph_opt", graph_opt),), export=export)]
    check_model_flags(sorted({c.candidate for c in checks}), flags)
    from dataclasses import replace

    from deploykit.core.atomic import check_output_file

    jobs = [(replace(c.spec(batch=c.batch or 1), measure=measure), Path(c.reference)) for c in checks]
    plan_runs([j[0] for j in jobs])  # check every run and output before spending minutes on the first
    for _, out in jobs:
        check_output_file(out, "baseline file")
    _measure(jobs, mdir)


def _measure(jobs, mdir) -> None:
    from deploykit.bench.plan import run_spec
    from deploykit.cli.common import stderr_console
    from deploykit.core.atomic import write_json
    from deploykit.core.stdio import stdout_to_stderr
    from deploykit.gate.run import portable_paths
    from deploykit.report.schema import build_report

    err = stderr_console()
    for spec, out in jobs:
        with stdout_to_stderr():  # stdout is for the baseline's path
            result = run_spec(spec, models_dir=mdir, say=lambda s: err.print(f"[dim]{s}[/]"), planned=True)
        report = portable_paths(build_report(result), mdir)  # no path of this machine in a committed file
        write_json(out, report)
        rw = report["reference_workload"]
        err.print(f"baseline {out}: {report['model']['label']} on {spec.target} p50 {report['stats']['p50']:.3f} ms; "
                  f"{rw['rounds']} blocks vs {rw['name']}: relative p50 {rw['relative']['p50']:.4f}")
        for w in report["warnings"]:
            err.print(f"[yellow]warning:[/] {w}")
        click.echo(str(out))
