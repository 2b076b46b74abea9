"""deploykit gate: a CI latency regression gate that holds on noisy machines."""

from __future__ import annotations

from pathlib import Path

import click

from deploykit.cli.common import (POSITIVE, batch_option, check_model_flags, model_opt_option, model_option_flags,
                                  model_options, models_dir_option, opset_option, pop_model_flags, print_json,
                                  reports_dir_option, resolution_option, seed_option)
from deploykit.cli.common import FINITE_FLOAT, FiniteFloatRange  # nan / inf refused
from deploykit.cli.history_cmd import history_option, record
from deploykit.cli.runtime_options import given_runtime_values, runtime_option, target_option, target_options

def gate_options(f):
    """Options shared by the measuring commands of the gate (settings of GateConfig)."""
    opts = [
        click.option("--alpha", type=FINITE_FLOAT, default=None,
                     help="Family-wise error rate over all checks [default: 0.05]."),
        click.option("--correction", type=click.Choice(["bonferroni", "holm", "none"]), default=None,
                     help="Multiple-comparison correction across checks [default: bonferroni]."),
        click.option("--strict/--no-strict", default=None, help="INCONCLUSIVE fails the gate (exit 5) [default: no]."),
        click.option("--min-blocks", type=click.IntRange(min=6), default=None,
                     help="Blocks per side before the first decision [default: 10]."),
        click.option("--max-blocks", type=click.IntRange(min=6), default=None,
                     help="Cap on blocks per side while the decision is inconclusive [default: 60]."),
        click.option("--block-time", type=FiniteFloatRange(min=0), default=None,
                     help="Seconds per block (and at least --block-iters iterations) [default: 0.25]."),
        click.option("--block-iters", type=POSITIVE, default=None, help="Minimum iterations per block [default: 5]."),
        click.option("--block-warmup", type=click.IntRange(min=0), default=None,
                     help="Untimed iterations at the start of each block [default: 2]."),
        click.option("--time-budget", type=FiniteFloatRange(min=0, min_open=True), default=None,
                     help="Seconds of measuring for the whole gate; checks stop adding blocks when it is spent."),
        click.option("--baseline-drift", metavar="PCT", default=None,
                     help="--baseline checks: allowed drift of the model's cost relative to the reference workload "
                          "between the baseline's session and this one; widens the interval [default: 10%]."),
    ]
    for o in reversed(opts):
        f = o(f)
    return f


def gate_config(settings: dict, **cli):
    from deploykit.gate.config import GateConfig

    merged = {**settings, **{k: v for k, v in cli.items() if v is not None}}
    return GateConfig(**merged)


@click.command("gate")
@click.argument("candidate", required=False)
@click.option("--against", "against", metavar="REF", default=None,
              help="Baseline artifact (an ONNX file or a model name), measured interleaved with CANDIDATE.")
@click.option("--against-rev", metavar="REV", default=None,
              help="Baseline = CANDIDATE at git revision REV (a committed ONNX file, or a model as deploykit's code "
                   "at REV exports it).")
@click.option("--baseline", "baseline", type=click.Path(path_type=Path), default=None, metavar="FILE",
              help="Stored baseline report (see 'deploykit baseline update'); CANDIDATE defaults to its model.")
@click.option("-c", "--config", "gate_file", type=click.Path(path_type=Path), default=None, metavar="GATEFILE",
              help="Gate file (TOML, or YAML with PyYAML) listing the checks.")
@target_option(default=None, show_default=False, help="Target to measure on [default: ort].")
@runtime_option("precision", help="Precision the target runs (checked against the graph).")
@batch_option(default=None, show_default=False, help="Batch size [default: the baseline's, else 1].")
@resolution_option(help="Input height = width [default: the baseline's / the model's].")
@runtime_option("threads", help="Intra-op threads [default: the baseline's, else all cores].")
@runtime_option("graph_opt", default=None, show_default=False,
                help="ONNX Runtime graph optimisation level [default: all].")
@target_options(exclude=("threads", "graph_opt", "precision", "cache_dir"))
@click.option("-m", "--metric", "metrics", multiple=True,
              help="p50 (default), p90, throughput; repeat or comma-separate.")
@click.option("--tolerance", "tolerances", multiple=True, metavar="[METRIC=]PCT",
              help="Allowed slowdown, e.g. 5% or p90=10% [defaults: p50 5%, p90 10%, throughput 5%].")
@gate_options
@seed_option(default=None, show_default=False, help="Seed of the input tensor and of the bootstrap [default: 0].")
@click.option("--junit", type=click.Path(path_type=Path), default=None,
              help="Write JUnit XML here (one test case per check).")
@click.option("--github/--no-github", default=None,
              help="Emit ::error/::warning annotations and append to $GITHUB_STEP_SUMMARY [default: when "
                   "GITHUB_ACTIONS=true].")
@opset_option()
@model_opt_option(help="Model option for registry models.")
@model_option_flags
@models_dir_option
@reports_dir_option
@click.option("--no-save", is_flag=True, help="Write no gate report JSON.")
@click.option("--json", "as_json", is_flag=True, help="Print the gate report JSON to stdout.")
@history_option("Append the candidate's latency to this history store ('deploykit history') [default: "
                "$DEPLOYKIT_HISTORY if set].")
def command(candidate, against, against_rev, baseline, gate_file, target, precision, batch, resolution, threads,
            graph_opt, metrics, tolerances, alpha, correction, strict, min_blocks, max_blocks, block_time, block_iters,
            block_warmup, time_budget, baseline_drift, seed, junit, github, opset, model_opts, models_dir,
            report_dir, no_save, as_json, history, **params):
    """Fail CI when CANDIDATE got slower than a baseline -- and only then.

    \b
    deploykit gate CANDIDATE --against BASELINE [-t ort]   interleaved A/B in one job
    deploykit gate CANDIDATE --against-rev origin/main     CANDIDATE as it was at a git revision
    deploykit gate [CANDIDATE] --baseline FILE             a stored report, relative to a reference workload
    deploykit gate -c gate.toml                            many checks from a gate file

    Both sides run in the same process, alternating in short blocks (A B, B A, A B, ... after warm-up);
    the decision uses the per-round log-ratios with a confidence sequence over rounds (valid at every look):
    PASS (upper bound below the tolerance, and the run sensitive enough to see it), REGRESSION (lower
    bound above zero and the estimate above the tolerance), INCONCLUSIVE (blocks are added up to
    --max-blocks, then it is reported), IMPROVEMENT (faster beyond the tolerance; passes).

    Exit codes: 0 pass, 4 regression, 5 inconclusive with --strict, 2 bad gate file/baseline/options,
    3 target unavailable.
    """
    from deploykit.cli.common import resolve_models_dir, resolve_reports_dir, stderr_console
    from deploykit.core.config import ExportConfig
    from deploykit.gate.decision import parse_drift
    from deploykit.gate.gatefile import checks_from_command
    from deploykit.gate.output import gate_document

    flags = pop_model_flags(params)
    values = {"graph_opt": graph_opt, **given_runtime_values(params)}  # every other option a target declares
    export = ExportConfig(model=candidate or "-", opset=opset, options=model_options(model_opts, **flags),
                          models_dir=resolve_models_dir(models_dir))
    checks, settings, source = checks_from_command(
        candidate, against=against, against_rev=against_rev, baseline=baseline, gate_file=gate_file, target=target,
        precision=precision, batch=batch, resolution=resolution, threads=threads, values=values, metrics=metrics,
        tolerances=tolerances, export=export)
    check_model_flags(sorted({c.candidate for c in checks}), flags)
    cfg = gate_config(settings, alpha=alpha, correction=correction, strict=strict, min_blocks=min_blocks,
                      max_blocks=max_blocks, block_time=block_time, block_iters=block_iters, block_warmup=block_warmup,
                      time_budget=time_budget, seed=seed,
                      baseline_drift=None if baseline_drift is None else parse_drift(baseline_drift))
    reports_dir = None if no_save else resolve_reports_dir(report_dir)
    if reports_dir is not None:
        from deploykit.core.atomic import ensure_dir

        ensure_dir(reports_dir)
    if junit is not None:  # every output is checked before minutes of measuring
        from deploykit.core.atomic import check_output_file

        check_output_file(junit, "--junit")

    from rich.markup import escape

    from deploykit.gate.run import run_gate

    err = stderr_console()
    from deploykit.core.stdio import stdout_to_stderr

    with stdout_to_stderr():  # stdout is for the table / the JSON / the GitHub annotations
        result = run_gate(checks, cfg, say=lambda s: err.print(f"[dim]{escape(s)}[/]"), source=source,
                          warn=lambda w: err.print(f"[yellow]warning:[/] {escape(w)}"))  # before measuring
    finish(result, err=err, reports_dir=reports_dir, junit=junit, github=github, as_json=as_json)
    record(history, [gate_document(result)], reports_dir=reports_dir, kind="gate")
    return result.exit_code


def finish(result, *, err, reports_dir, junit, github, as_json) -> None:
    """Write the gate's outputs (gate/output.py) and print its verdict."""
    from rich.markup import escape

    from deploykit.gate.output import gate_document, verdict, write_outputs

    notes, annotations = write_outputs(result, reports_dir=reports_dir, junit=junit, github=github)
    for note in notes:
        err.print(f"[yellow]{escape(note)}[/]" if note.startswith("warning:") else f"[dim]{escape(note)}[/]")
    for line in annotations:
        click.echo(line)
    if as_json:
        print_json(gate_document(result))
    else:
        print_table(result)
    for c in result.checks:
        for m in c.fingerprint_mismatches:
            err.print(f"[bold yellow]FINGERPRINT MISMATCH[/] {c.check.name}: baseline vs here: {m}")
        for w in c.warnings:
            err.print(f"[yellow]warning:[/] {c.check.name}: {w}")
    errors = [c for c in result.checks if c.error]
    colour = {"PASS": "green", "REGRESSION": "red", "INCONCLUSIVE": "yellow"}.get(verdict(result), "red")
    lenient = " -- not failing; --strict would" if verdict(result) == "INCONCLUSIVE" and result.exit_code == 0 else ""
    err.print(f"[bold {colour}]gate: {verdict(result)}[/] (exit {result.exit_code}{lenient}) in {result.wall_s:.1f} s")
    if errors:
        click.echo(f"error: check {errors[0].check.name!r}: {errors[0].error}", err=True)


def print_table(result) -> None:
    from rich.text import Text

    from deploykit.cli.common import stdout_console
    from deploykit.cli.tables import Col, print_fitted
    from deploykit.gate.decision import IMPROVEMENT, INCONCLUSIVE, PASS, REGRESSION

    style = {PASS: "green", IMPROVEMENT: "cyan", INCONCLUSIVE: "yellow", REGRESSION: "bold red"}
    cols = [Col("check", "check", priority=1, wrap=28), Col("metric", "metric", priority=4),
            Col("outcome", "outcome", priority=2), Col("change", "change", right=True, priority=3),
            Col("interval", "interval", priority=5), Col("level", "level", right=True, priority=8),
            Col("tolerance", "tolerance", right=True, priority=7), Col("mde", "MDE", right=True, priority=9),
            Col("blocks", "blocks", right=True, priority=10), Col("why", "why", priority=6, wrap=24)]
    rows = []
    for c in result.checks:
        if c.error:
            rows.append({"check": c.check.name, "metric": ",".join(m.metric for m in c.check.metrics),
                         "outcome": Text("ERROR", style="red"), "why": c.error})
            continue
        for m, d in zip(c.check.metrics, c.decisions):
            rows.append({"check": c.check.name, "metric": m.metric, "outcome": Text(d.outcome, style=style[d.outcome]),
                         "change": f"{d.estimate:+.1%}", "interval": f"{d.ci[0]:+.1%} .. {d.ci[1]:+.1%}",
                         "level": f"{d.level:.1%}", "tolerance": f"{d.tolerance:.1%}", "mde": f"{d.mde:.1%}",
                         "blocks": str(d.n), "why": d.reason + "".join(f"; {n}" for n in d.notes)})
    print_fitted(stdout_console(), cols, rows, title="deploykit gate",
                 caption="change = candidate vs baseline; interval at the corrected level; MDE = smallest slowdown "
                         "this run detects with 80% power", hidden_note="--json shows them")
