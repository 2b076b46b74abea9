"""The LoadGen report (``"schema": "deploykit.loadgen"``, version 1): built from a ``loadgen.run.LoadgenResult``,
validated against ``loadgen.schema.json`` (which takes the model, target, fidelity and environment sections from
the benchmark report's schema), rendered as Markdown, and reduced to the results-table fields a sweep cell needs.
"""

from __future__ import annotations

import math

import json
import time
from functools import lru_cache
from pathlib import Path

from deploykit.core.errors import InputError
from deploykit.report.schema import json_schema as bench_json_schema
from deploykit.report.schema import report_stem

SCHEMA = "deploykit.loadgen"
SCHEMA_VERSION = 1
_SCHEMA_FILE = Path(__file__).with_name("loadgen.schema.json")


@lru_cache(maxsize=1)
def json_schema() -> dict:
    return json.loads(_SCHEMA_FILE.read_text())


def _validator():
    import jsonschema
    from referencing import Registry, Resource

    bench = bench_json_schema()
    registry = Registry().with_resource(bench["$id"], Resource.from_contents(bench))
    cls = jsonschema.validators.validator_for(json_schema())
    return cls(json_schema(), registry=registry)


def validate(report: dict, where: str = "LoadGen report") -> None:
    """Raise InputError naming the first schema violation."""
    import jsonschema

    if not isinstance(report, dict) or report.get("schema") != SCHEMA:
        got = report.get("schema") if isinstance(report, dict) else type(report).__name__
        raise InputError(f"{where} is not a deploykit LoadGen report (schema is {got!r})")
    if report.get("schema_version") != SCHEMA_VERSION:
        raise InputError(f"{where} has LoadGen report schema version {report.get('schema_version')!r}; this "
                         f"deploykit reads version {SCHEMA_VERSION}")
    try:
        _validator().validate(report)
    except jsonschema.ValidationError as exc:
        path = "/".join(str(p) for p in exc.absolute_path) or "(top level)"
        raise InputError(f"{where} does not match the LoadGen report schema at {path}: {exc.message[:200]}") from None


def load_report(path: str | Path) -> dict:
    p = Path(path)
    if not p.is_file():
        raise InputError(f"report not found: {p}")
    try:
        data = json.loads(p.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise InputError(f"{p} is not a JSON report") from None
    validate(data, str(p))
    return data


def build_report(result, *, logs_dir: str | None = None, log_files: list[str] | None = None) -> dict:
    """The JSON document for one ``deploykit.loadgen.run.LoadgenResult``; ``logs_dir`` / ``log_files``: where
    LoadGen's own logs were kept, relative to the report."""
    run = result.run
    section = dict(run.section)
    section["test_settings"] = run.settings
    section["logs"] = {"dir": logs_dir, "files": list(log_files or [])}
    batch = result.model.input_shape[0]
    qps = section.get("qps_achieved")
    report = {
        "schema": SCHEMA,
        "schema_version": SCHEMA_VERSION,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "model": result.model.describe(),
        "target": {"name": result.target, "description": result.target_description, "precision": result.precision,
                   "info": result.runtime_info},
        "settings": result.settings(),
        "loadgen": section,
        "latencies": run.latencies,
        "calibration": result.calibration.record(),
        "timing": {"load_ms": result.load_ms, "first_inference_ms": result.first_inference_ms,
                   "loadgen_wall_s": run.wall_s},
        "throughput": {"batch": batch, "items_per_s": qps * batch if qps is not None else None,
                       "basis": "LoadGen's achieved samples per second x batch (one LoadGen sample = one request of "
                                f"{batch} item{'s' if batch > 1 else ''})",
                       "requests_in_flight": result.requests_in_flight},
        "fidelity": result.fidelity,
        "warnings": result.warnings,
        "environment": result.environment,
    }
    if result.peak is not None:
        report["peak"] = result.peak
    if getattr(result, "memory", None) is not None:
        report["memory"] = result.memory
    if getattr(result, "run_spec", None):
        report["run_spec"] = result.run_spec
    report = json.loads(json.dumps(report, default=_default))  # plain JSON types only
    validate(report)
    return report


def _default(obj):
    if hasattr(obj, "tolist"):
        return obj.tolist()
    return str(obj)


def loadgen_stem(report: dict) -> str:
    """File stem: the bench report's (<stamp>-<model>-<target>[-precision]) plus the scenario."""
    bench_like = {"model": report["model"], "target": report["target"]}
    return f"{report_stem(bench_like)}-loadgen-{report['settings']['scenario']}"


# ---- the results table (sweep cells)

def results_fields(report: dict) -> dict:
    """The results-table columns a LoadGen cell fills (the contract's names): scenario, the latency columns
    from LoadGen's own percentiles (p50 / p90 / p99 / mean as LoadGen reports them; the CI of the median and the
    CV from the raw latencies), items/s, iterations (queries), fidelity, the memory columns, and qps_scheduled /
    qps_achieved / loadgen_valid (plus peak_qps, not a contract column). Missing numbers are NaN."""
    nan = float("nan")
    lg, lat = report["loadgen"], report["loadgen"]["latency_ms"]
    st = (report.get("latencies") or {}).get("stats") or {}
    ci = st.get("median_ci95") or [nan, nan]
    f = report["fidelity"]

    def num(v):
        return float(v) if isinstance(v, (int, float)) else nan

    peak = report.get("peak")
    return {
        "scenario": report["settings"]["scenario"],
        "p50_ms": num(lat.get("p50")),
        "ci_low_ms": num(ci[0]),
        "ci_high_ms": num(ci[1]),
        "p90_ms": num(lat.get("p90")),
        "p99_ms": num(lat.get("p99")),
        "mean_ms": num(lat.get("mean")),
        "cv_pct": num(st["cv"] * 100) if isinstance(st.get("cv"), (int, float)) else nan,
        "items_per_s": num(report["throughput"].get("items_per_s")),
        "iterations": lg.get("query_count"),
        "fidelity": {True: "pass", False: "FAIL", None: "n/a"}[f.get("passed")],
        "qps_scheduled": num(lg.get("qps_scheduled")),
        "qps_achieved": num(lg.get("qps_achieved")),
        "loadgen_valid": lg.get("valid"),
        "peak_qps": num(peak.get("qps")) if peak else nan,
        "rss_peak_mb": num((report.get("memory") or {}).get("rss_peak_mb")),
        "rss_increase_mb": num((report.get("memory") or {}).get("rss_increase_mb")),
        "gpu_peak_mb": num((report.get("memory") or {}).get("gpu_peak_mb")),
        "artifact_mb": num((report.get("memory") or {}).get("artifact_mb")),
    }


# ---- Markdown

def to_markdown(report: dict) -> str:
    r, lg = report, report["loadgen"]
    s, t = r["settings"], lg["target"]
    lat = lg["latency_ms"]
    verdict = "**VALID**" if lg["valid"] else "**INVALID**"
    out = [f"# deploykit loadgen: {r['model']['label']} on {r['target']['name']} ({r['target']['precision']}), "
           f"{lg['scenario']}", "",
           f"- LoadGen {lg['version']} {lg['scenario']} / {lg['mode']}: {verdict}"]
    for why in lg["reasons"]:
        out.append(f"  - {why}")
    c = lg["constraints"]
    out.append("- constraints: " + ", ".join(f"{k.replace('_', ' ')} {_yes(v)}" for k, v in c.items() if v is not None))
    if lg.get("qps_scheduled") is not None or lg.get("qps_achieved") is not None:
        out.append(f"- samples per second: scheduled {num_text(lg.get('qps_scheduled'))}, "
                   f"achieved {num_text(lg.get('qps_achieved'))}"
                   f"; {num_text(r['throughput']['items_per_s'])} items/s (batch {r['throughput']['batch']}, "
                   f"{r['throughput']['requests_in_flight']} request(s) in flight)")
    if qps_note(lg):
        out.append(f"- {qps_note(lg)}")
    out.append(f"- latency ms ({lg['latency_basis']}, LoadGen's percentiles): p50 {num_text(lat['p50'])}, "
               f"p90 {num_text(lat['p90'])}, "
               f"p95 {num_text(lat['p95'])}, p99 {num_text(lat['p99'])}, p99.9 {num_text(lat['p99.9'])}, "
               f"mean {num_text(lat['mean'])}, "
               f"min {num_text(lat['min'])}, max {num_text(lat['max'])} over {lg['query_count']} queries")
    if t.get("latency_bound_ms") is not None:
        out.append(f"- bound: p{t['percentile']:g} within {t['latency_bound_ms']:g} ms; measured "
                   f"{num_text(t.get('latency_at_percentile_ms'))} ms; "
                   f"{lg.get('overlatency_query_count')} queries over the bound")
    es = lg["early_stopping"]
    if es["lines"]:
        est = f" (estimate {num_text(es['estimate_ms'])} ms)" if es.get("estimate_ms") is not None else ""
        out.append(f"- early stopping {_yes(es['met'])}{est}: " + "; ".join(es["lines"]))
    la = r["latencies"]
    if la.get("stats"):
        st = la["stats"]
        out.append(f"- raw latencies: {st['n']} values from {la['source']}; p50 {num_text(st['p50'])} ms (95% CI "
                   f"{num_text(st['median_ci95'][0])}-{num_text(st['median_ci95'][1])}), CV {st['cv']:.1%}")
    pk = r.get("peak")
    if pk:
        out += ["", f"## Peak Server QPS ({pk['method']})", "",
                f"- peak: **{num_text(pk['qps'])} QPS** -- {pk['criterion']}" if pk["qps"] is not None else
                f"- no peak: {pk['failure']}",
                f"- {pk['method_description']}; start {pk['start_qps']:g} QPS, "
                f"each step >= {pk['step_duration_s']:g} s",
                ""]
        out += ["| step | phase | QPS | meets bound | queries | achieved QPS | p50 ms | p99 ms | p at bound ms |",
                "|---|---|---|---|---|---|---|---|---|"]
        for i, st in enumerate(pk["steps"], 1):
            lm = st.get("latency_ms") or {}
            out.append(f"| {i} | {st['phase']} | {st['qps']:.6g} | {_yes(st['met'])} | {st['queries']} | "
                       f"{num_text(st.get('achieved_qps'))} | {num_text(lm.get('p50'))} | {num_text(lm.get('p99'))} | "
                       f"{num_text(lm.get('at_percentile'))} |")
        if pk.get("note"):
            out.append(f"\n{pk['note']}")
    cal = r["calibration"]
    f = r["fidelity"]
    env = r["environment"]
    out += ["", "## Run", "",
            f"- artifact: `{r['model']['path']}` (sha256 {r['model']['sha256'][:12]}), input "
            f"{'x'.join(str(d) for d in r['model']['input']['shape'])}",
            f"- target: {r['target']['description']}; " + ", ".join(
                f"{k}={v}" for k, v in r["target"]["info"].items() if k not in ("fusion", "runtime_precisions")),
            f"- settings: scenario {s['scenario']}, threads {s.get('threads')}, requests in flight "
            f"{s['requests_in_flight']}, duration >= {s['duration_s']:g} s" +
            (f", user.conf {s['user_conf']}" if s.get("user_conf") else ""),
            f"- calibration (sizes LoadGen's query generation only): {num_text(cal['latency_ms'])} ms median, "
            f"{num_text(cal['requests_per_s'])} requests/s with {cal['requests']} in flight",
            f"- load {r['timing']['load_ms']:.1f} ms, first inference {r['timing']['first_inference_ms']:.2f} ms, "
            f"LoadGen ran {r['timing']['loadgen_wall_s']:.1f} s",
            f"- fidelity vs {f['reference']}: cosine {num_text(f.get('cosine'), 6)}, "
            f"max-abs {num_text(f.get('max_abs'), 6)} -> "
            f"{ {True: 'pass', False: 'FAIL', None: 'no verdict'}[f['passed']] }",
            f"- machine: {env['cpu']['model']}, threads {env.get('threads')}; deploykit {env['deploykit']['version']}",
            ]
    logs = lg["logs"]
    if logs.get("dir"):
        out.append(f"- LoadGen's logs: `{logs['dir']}/` ({', '.join(logs['files'])})")
    out += [f"- **warning:** {w}" for w in r["warnings"]]
    out.append("")
    return "\n".join(out)


def _yes(v) -> str:
    return {True: "yes", False: "NO", None: "-"}[v]


def qps_note(lg: dict) -> str | None:
    """Why a Server run's scheduled QPS is not the QPS asked for (None when they agree within 0.5%): LoadGen draws
    Poisson arrivals at the asked rate, so the schedule of a finite run differs from it by chance."""
    asked = (lg.get("effective_settings") or {}).get("target_qps")
    sched, n = lg.get("qps_scheduled"), lg.get("query_count")
    if lg.get("scenario") != "Server" or not isinstance(asked, (int, float)) or not isinstance(sched, (int, float)) \
            or asked <= 0 or abs(sched / asked - 1) <= 0.005:
        return None
    spread = f" (about +-{100 / math.sqrt(n):.0f}% over {n} queries: 1/sqrt(queries))" if isinstance(n, int) and n > 0 \
        else ""
    return (f"QPS scheduled {num_text(sched)} for {asked:g} asked: LoadGen draws Poisson arrival times at the asked "
            f"rate, so a finite run's schedule differs from it by chance{spread}; a longer --duration or more "
            "--min-queries brings the two closer")


def num_text(v, digits: int = 3) -> str:
    if v is None or not isinstance(v, (int, float)):
        return "-"
    return f"{v:.{digits}f}" if abs(v) < 100 else f"{v:.1f}"


__all__ = ["SCHEMA", "SCHEMA_VERSION", "build_report", "validate", "load_report",
           "to_markdown", "results_fields", "loadgen_stem", "json_schema", "num_text", "qps_note"]
