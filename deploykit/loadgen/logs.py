"""Reading LoadGen's own log files: the verdict, QPS, latency percentiles and early stopping (from
``mlperf_log_detail.txt``, one ``:::MLLOG {json}`` record a line, and ``mlperf_log_summary.txt``), the per-sample
latencies (from ``mlperf_log_trace.json``: LoadGen's detail log has no per-query records, its trace has one
``Sample`` event per sample with the time from the query's scheduled start to its completion) and the steps of
a FindPeakPerformance search (the detail log's messages).

Pure text parsing: no LoadGen import here.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from deploykit.core.errors import InputError

SUMMARY = "mlperf_log_summary.txt"
DETAIL = "mlperf_log_detail.txt"
TRACE = "mlperf_log_trace.json"
ACCURACY = "mlperf_log_accuracy.json"
_MLLOG = ":::MLLOG "
# the latency percentiles LoadGen reports (results.cc), as they appear in its keys
LOADGEN_PERCENTILES = ("50.00", "90.00", "95.00", "97.00", "99.00", "99.90")


@dataclass
class DetailLog:
    """The records of ``mlperf_log_detail.txt`` in order: (key, value, time_ms, is_error, is_warning)."""

    records: list[dict] = field(default_factory=list)

    def values(self, key: str) -> list:
        return [r["value"] for r in self.records if r["key"] == key]

    def last(self, key: str, default=None):
        vals = self.values(key)
        return vals[-1] if vals else default

    def with_prefix(self, prefix: str) -> dict:
        """The last value of every key starting with ``prefix``, the prefix removed (``effective_`` settings)."""
        return {r["key"][len(prefix):]: r["value"] for r in self.records if r["key"].startswith(prefix)}

    @property
    def messages(self) -> list[str]:
        return [str(v) for v in self.values("generic_message")]

    @property
    def errors(self) -> list[str]:
        return [_one_line(r["value"]) for r in self.records if r["is_error"]]

    @property
    def warnings(self) -> list[str]:
        return [_one_line(r["value"]) for r in self.records if r["is_warning"]]


def parse_detail(text: str) -> DetailLog:
    """Parse a detail log; lines that are not MLLOG records are skipped."""
    records = []
    for line in text.splitlines():
        if not line.startswith(_MLLOG):
            continue
        try:
            rec = json.loads(line[len(_MLLOG):])
        except json.JSONDecodeError:
            continue
        meta = rec.get("metadata") or {}
        records.append({"key": rec.get("key", ""), "value": rec.get("value"), "time_ms": rec.get("time_ms"),
                        "is_error": bool(meta.get("is_error")), "is_warning": bool(meta.get("is_warning"))})
    return DetailLog(records)


def parse_summary(text: str) -> dict:
    """The human-readable summary: header fields, the constraint lines, the recommendations and the early
    stopping lines, and the ``key : value`` statistics (as text)."""
    out: dict = {"fields": {}, "constraints": {}, "recommendations": [], "early_stopping": []}
    section = None
    for raw in text.splitlines():
        line = raw.rstrip()
        s = line.strip()
        if not s or s.startswith("====="):
            if s.startswith("====="):
                section = None
            continue
        if s == "Recommendations:":
            section = "recommendations"
            continue
        if s.endswith("Early Stopping Result:"):
            section = "early_stopping"
            continue
        if s.startswith("Result is"):
            out["result"] = s.split(":", 1)[1].strip()
            section = "constraints"
            continue
        if section == "constraints" and ":" in s and s.endswith(("Yes", "NO")):
            k, v = s.rsplit(":", 1)
            out["constraints"][k.strip()] = v.strip() == "Yes"
            continue
        if section in ("recommendations", "early_stopping"):
            if s.startswith("* "):
                out[section].append(s[2:].strip())
            elif out[section]:  # a wrapped line continues the previous item
                out[section][-1] += " " + s
            continue
        if ":" in s:
            k, v = s.split(":", 1)
            out["fields"].setdefault(k.strip(), v.strip())
    return out


def _one_line(v) -> str:
    return " ".join(str(v).split())


def _ms(ns) -> float | None:
    return None if ns is None else float(ns) / 1e6


def result_section(detail: DetailLog, summary: dict | None = None) -> dict:
    """LoadGen's result as the report's ``loadgen`` section (without the log file list)."""
    summary = summary or {"constraints": {}, "recommendations": [], "early_stopping": [], "fields": {}}
    eff = detail.with_prefix("effective_")
    scenario = eff.get("scenario") or detail.last("requested_scenario")
    validity = detail.last("result_validity")
    multistream = scenario == "MultiStream"
    q = "_per_query" if multistream else ""
    lat = {"min": _ms(detail.last(f"result_min{'_query' if multistream else ''}_latency_ns")),
           "mean": _ms(detail.last(f"result_mean{'_query' if multistream else ''}_latency_ns")),
           "max": _ms(detail.last(f"result_max{'_query' if multistream else ''}_latency_ns"))}
    for p in LOADGEN_PERCENTILES:
        name = "p" + p.rstrip("0").rstrip(".")  # 50.00 -> p50, 99.90 -> p99.9
        lat[name] = _ms(detail.last(f"result_{p}_percentile{q}_latency_ns"))
    sample_lat = None
    if multistream:
        sample_lat = {"min": _ms(detail.last("result_min_latency_ns")),
                      "mean": _ms(detail.last("result_mean_latency_ns")),
                      "max": _ms(detail.last("result_max_latency_ns"))}
        for p in LOADGEN_PERCENTILES:
            sample_lat["p" + p.rstrip("0").rstrip(".")] = _ms(detail.last(f"result_{p}_percentile_latency_ns"))
    perf_met = detail.last("result_perf_constraints_met")
    constraints = {"performance": perf_met if scenario == "Server" else None,
                   "min_duration": detail.last("result_min_duration_met"),
                   "min_queries": detail.last("result_min_queries_met"),
                   "early_stopping": detail.last("early_stopping_met")}
    pct = eff.get("target_latency_percentile") if scenario != "Offline" else None  # Offline has no latency target
    bound_ns = eff.get("target_latency_ns") if scenario == "Server" else None
    es_text = _one_line(detail.last("early_stopping_result", "") or "")
    es_items = [i.strip() for i in re.split(r"\s\*\s|^\*\s", " " + es_text) if i.strip()] if es_text else []
    es_estimate = detail.last("early_stopping_latency_ss") if scenario == "SingleStream" else \
        detail.last("early_stopping_latency_ms") if multistream else None
    qps_sched, qps_done = _qps(detail, scenario, eff)
    section = {
        "version": str(detail.last("loadgen_version", "")).split(" @")[0] or None,
        "scenario": scenario,
        "mode": eff.get("test_mode") or detail.last("requested_test_mode"),
        "result": validity,
        "valid": validity == "VALID" if validity is not None else None,
        "constraints": constraints,
        "reasons": [],
        "qps_scheduled": qps_sched,
        "qps_achieved": qps_done,
        "query_count": detail.last("result_query_count"),
        "samples_per_query": eff.get("samples_per_query"),
        "overlatency_query_count": detail.last("result_overlatency_query_count"),
        "latency_ms": lat,
        "latency_basis": "per query (the last of its samples)" if multistream else "per sample",
        "target": {"percentile": None if pct is None else round(pct * 100, 6),
                   "latency_bound_ms": _ms(bound_ns) if bound_ns else None,
                   "latency_at_percentile_ms": None},
        "early_stopping": {"met": constraints["early_stopping"], "lines": es_items,
                           "estimate_ms": _ms(es_estimate) if es_estimate else None,
                           "percentile": (None if pct is None or scenario in ("Server", "Offline")
                                          else round(pct * 100, 6))},
        "errors": detail.errors,
        "warnings": detail.warnings,
        "effective_settings": eff,
    }
    if sample_lat is not None:
        section["sample_latency_ms"] = sample_lat
    if pct is not None:
        key = f"{pct * 100:.2f}"
        if key in LOADGEN_PERCENTILES:
            section["target"]["latency_at_percentile_ms"] = lat["p" + key.rstrip("0").rstrip(".")]
    section["reasons"] = invalid_reasons(section, summary)
    return section


def _qps(detail: DetailLog, scenario: str | None, eff: dict) -> tuple[float | None, float | None]:
    """(scheduled, achieved) samples per second as LoadGen reports them for the scenario."""
    if scenario == "Server":
        return detail.last("result_scheduled_samples_per_sec"), detail.last("result_completed_samples_per_sec")
    if scenario == "Offline":
        return eff.get("target_qps"), detail.last("result_samples_per_second")
    if scenario == "SingleStream":
        return None, detail.last("result_qps_with_loadgen_overhead")
    return None, None  # MultiStream: LoadGen reports no rate (the runner adds one from the SUT's records)


def invalid_reasons(section: dict, summary: dict) -> list[str]:
    """Why LoadGen judged the run INVALID, one line each: the unmet constraints with their numbers, LoadGen's
    recommendations and early-stopping lines, and its runtime errors (e.g. issuing stopped early)."""
    if section.get("valid") is not False:
        return []
    c, t = section["constraints"], section["target"]
    reasons = []
    if c.get("performance") is False:
        at = t.get("latency_at_percentile_ms")
        got = f" {at:.3f} ms" if at is not None else ""
        reasons.append(f"latency constraint not met: {_pct(t['percentile'])} percentile latency{got} exceeds the "
                       f"{t['latency_bound_ms']:g} ms bound")
    if c.get("min_duration") is False:
        reasons.append("minimum duration not met")
    if c.get("min_queries") is False:
        reasons.append("minimum query count not met")
    if c.get("early_stopping") is False:
        es = section["early_stopping"]["lines"]
        reasons.append("early stopping not met" + (": " + "; ".join(es) if es else ""))
    for err in section.get("errors", []):
        reasons.append(f"LoadGen error: {err}")
    for rec in summary.get("recommendations", []):
        reasons.append(f"LoadGen recommends: {rec}")
    if not reasons:
        reasons.append("LoadGen reported INVALID without naming a reason (see its summary log)")
    return reasons


def _pct(p) -> str:
    if p is None:
        return "target"
    s = f"{p:g}"
    return f"{s}th"


# ---- per-sample latencies from the trace

def parse_trace_samples(text) -> list[dict]:
    """The ``Sample`` begin events of LoadGen's trace (``mlperf_log_trace.json``), in sample order: dicts with
    sample_seq, query_seq, sample_idx, issue_start_ns (LoadGen's issue delay) and complete_ns, both from the
    query's *scheduled* start. LoadGen writes the trace as one event per line and not as strict JSON (some
    other events carry doubled quotes), so the lines are read one at a time. ``text``: the file's text, or an
    open file (read line by line: a long run's trace is tens of MB)."""
    out = []
    for line in (text.splitlines() if isinstance(text, str) else text):
        if not line.startswith('{"name":"Sample"') or '"ph":"b"' not in line:
            continue
        try:
            ev = json.loads(line.rstrip().rstrip(","))
        except json.JSONDecodeError:
            continue
        a = ev.get("args") or {}
        if "complete_ns" in a and "sample_seq" in a:
            out.append({k: a.get(k)
                        for k in ("sample_seq", "query_seq", "sample_idx", "issue_start_ns", "complete_ns")})
    out.sort(key=lambda e: e["sample_seq"])
    return out


def query_latencies_ns(samples: list[dict]) -> list[int]:
    """Per-query latency (LoadGen's definition: the last sample of the query to complete), in query order."""
    by_query: dict[int, int] = {}
    for s in samples:
        q = s["query_seq"]
        by_query[q] = max(by_query.get(q, 0), s["complete_ns"])
    return [by_query[q] for q in sorted(by_query)]


# ---- FindPeakPerformance steps from the detail log's messages

_BASE = re.compile(r"FindPeakPerformance: Check validity of the base settings field: ([0-9.eE+-]+)")
_WIDEN = re.compile(r"FindBoundaries: Checking fields \[([0-9.eE+-]+), ([0-9.eE+-]+)\)")
_FOUND_BOUNDS = re.compile(r"FindPeakPerformance: Found boundaries: \[([0-9.eE+-]+), ([0-9.eE+-]+)\)")
_MID = re.compile(r"FindPeakPerformanceBinarySearch: Testing the mid value of bounds \[([0-9.eE+-]+), "
                  r"([0-9.eE+-]+)\): ([0-9.eE+-]+)")
_PEAK = re.compile(r"FindPeakPerformance: Found peak performance field: ([0-9.eE+-]+)")
_BASE_FAIL = "Initial lower bound does not satisfy performance constraints"


def peak_steps_from_detail(detail: DetailLog) -> tuple[list[dict], float | None, str | None]:
    """The steps LoadGen's FindPeakPerformance ran, in order -- ``{"phase": base|widen|bisect, "qps": float,
    "met": bool}`` -- the peak QPS it found (None if the start failed) and, if it stopped, why.

    LoadGen logs the QPS it tries, not each verdict; a verdict follows from what LoadGen tries next (the rule
    is ``loadgen.cc``'s): a widen step [l, u) met the bound iff LoadGen widens again from u; a bisection step at
    m met it iff the next bounds start at m, or the peak found is m."""
    steps: list[dict] = []
    peak = None
    failure = None
    for rec in detail.records:
        msg = str(rec["value"])
        if rec["key"] == "generic_message":
            if m := _BASE.search(msg):
                steps.append({"phase": "base", "qps": float(m.group(1)), "met": None})
            elif m := _WIDEN.search(msg):
                if steps and steps[-1]["met"] is None:
                    steps[-1]["met"] = True  # LoadGen only widens from a step that met the bound
                steps.append({"phase": "widen", "qps": float(m.group(2)), "met": None})
            elif m := _FOUND_BOUNDS.search(msg):
                if steps and steps[-1]["met"] is None:
                    steps[-1]["met"] = False  # the widening stopped at the first step that missed
            elif m := _MID.search(msg):
                lo, hi = float(m.group(1)), float(m.group(2))
                _settle(steps, lo, hi)
                steps.append({"phase": "bisect", "qps": float(m.group(3)), "met": None})
            elif m := _PEAK.search(msg):
                peak = float(m.group(1))
                if steps and steps[-1]["met"] is None and steps[-1]["phase"] == "bisect":
                    steps[-1]["met"] = _close(steps[-1]["qps"], peak)
        elif rec["is_error"] and _BASE_FAIL in msg:
            if steps and steps[-1]["met"] is None:
                steps[-1]["met"] = False
            failure = _one_line(msg)
    return steps, peak, failure


def _settle(steps: list[dict], lo: float, hi: float) -> None:
    """The previous bisection step's verdict, from the new bounds [lo, hi)."""
    if steps and steps[-1]["met"] is None and steps[-1]["phase"] == "bisect":
        steps[-1]["met"] = _close(steps[-1]["qps"], lo) and not _close(steps[-1]["qps"], hi)


def _close(a: float, b: float) -> bool:
    return abs(a - b) <= 1e-6 * max(1.0, abs(a), abs(b))  # LoadGen prints 6 decimals


# ---- the folder

def read_run(folder: Path) -> tuple[DetailLog, dict]:
    """The parsed detail log and summary of one LoadGen run folder (InputError if LoadGen left none)."""
    folder = Path(folder)
    d, s = folder / DETAIL, folder / SUMMARY
    if not d.is_file():
        raise InputError(f"LoadGen wrote no detail log in {folder}")
    summary = parse_summary(s.read_text(errors="replace")) if s.is_file() else {}
    return parse_detail(d.read_text(errors="replace")), summary
