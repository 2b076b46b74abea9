"""deploykit loadgen: serving under load -- MLPerf LoadGen scenarios with a deploykit runtime as the system under
test."""

from __future__ import annotations

from pathlib import Path

import click

from deploykit.cli.common import (POSITIVE, FiniteFloatRange, batch_option, calibration_options, model_opt_option,
                                  model_option_flags,
                                  models_dir_option, opset_option, print_json, reports_dir_option, resolution_option,
                                  resolve_models_dir, resolve_reports_dir, seed_option, stderr_console,
                                  stdout_console, weights_options)
from deploykit.cli.runtime_options import runtime_option, target_option, target_options
from deploykit.cli.specs import specs_from_flags

SCENARIOS = ("server", "offline", "multistream", "singlestream")
POSITIVE_FLOAT = FiniteFloatRange(min=0, min_open=True)


@click.command("loadgen")
@click.argument("model")
@target_option(help="Target to serve from ('deploykit targets'); server/offline/multistream need one that keeps "
                    "requests in flight (ort, openvino).")
@click.option("--scenario", type=click.Choice(SCENARIOS), required=True,
              help="LoadGen scenario: server (Poisson arrivals at --qps, a latency bound), offline (every sample at "
                   "once: throughput), multistream (queries of several samples, one after another), singlestream "
                   "(one query at a time: latency).")
@click.option("--qps", type=POSITIVE_FLOAT, default=None,
              help="server: arrival rate in queries/s (with --find-peak: where the search starts); offline: the "
                   "expected rate [default: from a short calibration].")
@click.option("--latency-bound", type=POSITIVE_FLOAT, default=None, metavar="MS",
              help="server: the latency bound in ms at --percentile [default: 100, LoadGen's].")
@click.option("--percentile", type=FiniteFloatRange(min=0, max=100, min_open=True, max_open=True), default=None,
              help="Target latency percentile: server and multistream [default: 99], singlestream [default: 90].")
@click.option("--duration", type=POSITIVE_FLOAT, default=None, metavar="S",
              help="LoadGen's minimum duration in seconds (each find-peak step) [default: 10, LoadGen's].")
@click.option("--min-queries", type=POSITIVE, default=None,
              help="LoadGen's minimum query count [default: what early stopping needs at the target percentile with "
                   "a few late queries: 690 at p99, 140 at p95, 100 at p90 and for offline].")
@click.option("--max-outstanding", type=click.IntRange(min=0), default=None,
              help="server: stop issuing (INVALID) once this many queries are outstanding; 0 = never [default: the "
                   "backlog the SUT needs 4x the bound to clear, at least 64].")
@click.option("--samples-per-query", type=POSITIVE, default=None, help="multistream: samples per query [default: 8].")
@click.option("--user-conf", type=click.Path(path_type=Path), default=None,
              help="LoadGen user.conf ('model.scenario.key = value', * wildcards) applied on top of deploykit's "
                   "settings; the explicit options above win.")
@click.option("--find-peak", is_flag=True,
              help="server: find the highest QPS whose --percentile latency meets --latency-bound.")
@click.option("--peak-method", type=click.Choice(["loadgen", "bisect"]), default="loadgen", show_default=True,
              help="loadgen: LoadGen's FindPeakPerformance mode; bisect: the same search as one LoadGen run per step "
                   "(each with its own verdict and logs).")
@click.option("--peak-decimals", type=click.IntRange(min=0, max=6), default=0, show_default=True,
              help="Find-peak resolution: stop when the bounds agree to this many decimals of QPS.")
@click.option("--no-trace", is_flag=True,
              help="Turn LoadGen's trace log off; per-query latencies then come from deploykit's own records.")
@click.option("--calibration-time", type=POSITIVE_FLOAT, default=1.0, show_default=True, metavar="S",
              help="Seconds of calibration that size LoadGen's query generation (not a result).")
@batch_option(help="Items per request (one LoadGen sample = one request).")
@resolution_option(help="Input height = width [default: the model's / the file's].")
@seed_option(help="Seed of the input tensor (the one bench uses).")
@runtime_option("threads")
@runtime_option("graph_opt")
@runtime_option("requests", help="server/offline/multistream: requests in flight [default: openvino: the device's "
                                 "optimum; ort: usable cores / --threads, at least 2].")
@target_options(exclude=("threads", "graph_opt", "requests", "mode"))
@weights_options()
@model_opt_option()
@model_option_flags
@opset_option()
@models_dir_option
@reports_dir_option
@click.option("--no-save", is_flag=True, help="Write no report files (LoadGen's logs are discarded too).")
@click.option("--json", "as_json", is_flag=True, help="Print the JSON report to stdout.")
@click.option("--int8", is_flag=True, help="Serve the int8 (QDQ) variant, quantized on demand like 'bench --int8'.")
@calibration_options
def command(model, target, scenario, qps, latency_bound, percentile, duration, min_queries, max_outstanding,
            samples_per_query, user_conf, find_peak, peak_method, peak_decimals, no_trace, calibration_time, batch,
            resolution, seed, models_dir, report_dir, no_save, as_json, **params):
    """Serve MODEL under MLPerf LoadGen's load: LoadGen issues queries in its --scenario and deploykit's runtime
    answers them (the same model file, input and fidelity check as 'bench').

    Reports LoadGen's verdict (VALID / INVALID and why), scheduled and achieved queries per second, the latency
    percentiles LoadGen measured, its early-stopping estimate and, with --find-peak, the highest Server QPS that
    meets the latency bound with every step of the search. Written to
    <report-dir>/<stamp>-<model>-<target>-loadgen-<scenario>.{json,md}, LoadGen's own log files in the .loadgen
    folder beside them. An INVALID result is a result: the exit code is 0 whenever LoadGen ran to the end.
    """
    from deploykit.core.errors import UsageError
    from deploykit.core.lazy import require
    from deploykit.spec.loadgen import LoadgenConfig

    require("mlperf_loadgen", "deploykit loadgen")  # missing: one line naming the extra, before any work
    if scenario == "singlestream" and (params.get("requests") or params.get("streams")):
        raise UsageError("--requests/--streams apply to the scenarios with requests in flight (server, offline, "
                         "multistream); singlestream runs one request at a time")
    cfg = LoadgenConfig(scenario=scenario, qps=qps, latency_bound_ms=latency_bound, percentile=percentile,
                        duration_s=duration, min_queries=min_queries, max_outstanding=max_outstanding,
                        samples_per_query=samples_per_query, user_conf=str(user_conf) if user_conf else None,
                        find_peak=find_peak, peak_method=peak_method, peak_decimals=peak_decimals,
                        trace=not no_trace, calibration_s=calibration_time, batch=batch, resolution=resolution,
                        seed=seed)
    from deploykit.bench.plan import plan_runs

    specs = specs_from_flags([model], target, params, measure=cfg, models_dir=models_dir,
                             runtime={"mode": "throughput" if cfg.concurrent else "latency"})
    execute(plan_runs(specs)[0], models_dir=models_dir,
            reports_dir=None if no_save else resolve_reports_dir(report_dir), as_json=as_json)


def execute(spec, *, models_dir, reports_dir, as_json=False) -> dict:
    """Run a planned LoadGen spec, write its report (and LoadGen's logs) unless ``reports_dir`` is None, print
    the summary (or the JSON)."""
    from deploykit.loadgen.run import run_spec, save
    from deploykit.report.loadgen import build_report

    if reports_dir is not None:
        from deploykit.core.atomic import ensure_dir

        ensure_dir(reports_dir)
    err = stderr_console()
    result = run_spec(spec, models_dir=resolve_models_dir(models_dir), planned=True,
                      say=lambda s: err.print(f"[dim]{s}[/]", markup=True, highlight=False))
    try:
        if reports_dir is None:
            report = build_report(result)
        else:
            report, paths = save(result, reports_dir)
            err.print(f"[dim]report: {', '.join(str(p) for p in paths)}[/]")
    finally:
        result.cleanup()
    for w in report["warnings"]:
        err.print(f"[yellow]warning:[/] {w}", highlight=False)
    if as_json:
        print_json(report)
    else:
        print_summary(report)
    return report


def print_summary(report: dict) -> None:
    from rich.markup import escape

    from deploykit.cli.tables import Col, print_fitted
    from deploykit.report.loadgen import num_text, qps_note

    out = stdout_console()
    lg = report["loadgen"]
    lat = lg["latency_ms"]
    verdict = "[green]VALID[/]" if lg["valid"] else "[red]INVALID[/]"
    out.print(f"LoadGen {lg['version']} {lg['scenario']} ({lg['mode']}): {report['model']['label']} on "
              f"{report['target']['name']} ({report['target']['precision']}), "
              f"{report['settings']['requests_in_flight']} request(s) in flight: {verdict}")
    for why in lg["reasons"]:
        out.print(f"  - {escape(why)}")
    cols = [Col("sched", "QPS scheduled", right=True, priority=6),
            Col("achieved", "QPS achieved", right=True, priority=5),
            Col("items", "items/s", right=True, priority=4), Col("queries", "queries", right=True, priority=7),
            Col("p50", "p50", right=True, priority=1), Col("p90", "p90", right=True, priority=2),
            Col("p99", "p99", right=True, priority=3), Col("p999", "p99.9", right=True, priority=8),
            Col("max", "max", right=True, priority=9)]
    print_fitted(out, cols, [{"sched": num_text(lg["qps_scheduled"]), "achieved": num_text(lg["qps_achieved"]),
                              "items": num_text(report["throughput"]["items_per_s"]), "queries": str(lg["query_count"]),
                              "p50": num_text(lat["p50"]), "p90": num_text(lat["p90"]), "p99": num_text(lat["p99"]),
                              "p999": num_text(lat["p99.9"]), "max": num_text(lat["max"])}],
                 title="LoadGen's measurements (latency in ms)", hidden_note="--json shows them")
    if qps_note(lg):
        out.print(escape(qps_note(lg)))
    t = lg["target"]
    if t.get("latency_bound_ms") is not None:
        out.print(f"p{t['percentile']:g} {num_text(t.get('latency_at_percentile_ms'))} ms against the "
                  f"{t['latency_bound_ms']:g} ms bound")
    es = lg["early_stopping"]
    if es.get("estimate_ms") is not None:
        out.print(f"early-stopping p{es.get('percentile') or t['percentile']:g} estimate: "
                  f"{num_text(es['estimate_ms'])} ms")
    pk = report.get("peak")
    if pk:
        cols = [Col("step", "step", right=True, priority=1), Col("phase", "phase", priority=5),
                Col("qps", "QPS", right=True, priority=2), Col("met", "meets bound", right=True, priority=3),
                Col("queries", "queries", right=True, priority=6),
                Col("achieved", "achieved QPS", right=True, priority=7),
                Col("p", "p at bound ms", right=True, priority=4)]
        rows = [{"step": str(i), "phase": st["phase"], "qps": f"{st['qps']:.6g}",
                 "met": {True: "yes", False: "NO", None: "-"}[st["met"]], "queries": str(st["queries"]),
                 "achieved": num_text(st.get("achieved_qps")),
                 "p": num_text((st.get("latency_ms") or {}).get("at_percentile"))}
                for i, st in enumerate(pk["steps"], 1)]
        print_fitted(out, cols, rows, title=f"peak search ({pk['method']}): {pk['criterion']}",
                     hidden_note="--json shows them")
        if pk["qps"] is not None:
            out.print(f"peak Server QPS: [bold]{pk['qps']:.6g}[/]")
        else:
            out.print(f"no peak: {escape(pk['failure'] or '')}")
