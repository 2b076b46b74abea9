"""Hand-built benchmark reports that pass the report schema, for the unit tests of results tables and compare.

``make_report(samples_ms, ...)`` computes the statistics from the samples with deploykit's own statistics module,
so a report's p50 and CI agree with its raw samples the way a real run's do. ``make_loadgen_report`` does the same
for a ``deploykit loadgen`` report (LoadGen's nearest-rank percentiles of its per-query latencies).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from deploykit.bench.stats import PERCENTILE_METHOD, loadgen_percentile, summarize
from deploykit.report.schema import SCHEMA, SCHEMA_VERSION, validate


def samples(median: float, n: int = 200, spread: float = 0.02, seed: int = 0) -> list[float]:
    """``n`` positive latency samples around ``median`` ms (relative spread ``spread``), seeded."""
    rng = np.random.default_rng(seed)
    return [float(v) for v in median * (1 + spread * rng.standard_normal(n)).clip(0.5, None)]


def make_report(samples_ms, *, model: str = "resnet18", family: str | None = "cnn", target: str = "ort",
                precision: str = "fp32", batch: int = 1, resolution: int = 64, threads: int | None = 2,
                options: dict | None = None, created: str = "2026-01-01T00:00:00+0000", extra: dict | None = None):
    st = summarize(samples_ms, n_boot=500)
    st["percentile_method"] = PERCENTILE_METHOD
    wall = float(sum(samples_ms)) / 1000
    report = {
        "schema": SCHEMA,
        "schema_version": SCHEMA_VERSION,
        "created": created,
        "model": {"label": model, "kind": "registry", "path": f"/models/{model}.onnx", "sha256": "0" * 64,
                  "family": family, "precision": precision,
                  "input": {"name": "input", "shape": [batch, 3, resolution, resolution], "dtype": "float32"},
                  "export_settings": {"model": model, "options": options or {}}},
        "target": {"name": target, "description": f"{target} (test)", "precision": precision,
                   "info": {"threads": threads or 2}},
        "settings": {"batch": batch, "resolution": resolution, "warmup": 10, "min_iters": 50, "min_time": 1.0,
                     "max_time": 10.0, "seed": 0, "mode": "latency", "threads": threads},
        "timing": {"unit": "ms", "load_ms": 100.0, "first_inference_ms": 5.0, "warmup_ms": [1.0],
                   "samples_ms": list(samples_ms), "measured_wall_s": wall, "iterations": len(samples_ms),
                   "stop_reason": "min-iters and min-time reached"},
        "stats": st,
        "throughput": {"items_per_s": batch * len(samples_ms) / wall, "batch": batch,
                       "basis": "batch x iterations / wall time of the measured loop", "mode": "latency",
                       "requests_in_flight": 1},
        "fidelity": {"reference": "pytorch fp32 (cpu)", "max_abs": 1e-6, "cosine": 1.0, "top1": 1.0, "passed": True},
        "warnings": [],
        "environment": {"cpu": {"model": "Test CPU", "flags_sha256": "abc", "usable_cores": 2}, "threads": threads,
                        "os": {"system": "Linux"}, "python": "3.11",
                        "packages": {"onnxruntime": "1.0"}, "deploykit": {"version": "0.1.0", "sha": "f" * 40}},
    }
    report.update(extra or {})
    validate(report)
    return report


def write_report(path: Path, report: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report))
    return path


LOADGEN_SCENARIOS = {"server": "Server", "offline": "Offline", "multistream": "MultiStream",
                     "singlestream": "SingleStream"}


def make_loadgen_report(samples_ms, *, scenario: str = "server", qps: float | None = 10.0,
                        achieved: float | None = None, valid: bool = True, bound_ms: float | None = 100.0,
                        percentile: float = 99.0, memory: dict | None = None, **bench_kw):
    """A LoadGen report (schema deploykit.loadgen) of one run whose per-query latencies are ``samples_ms``;
    model, target, fidelity and environment as ``make_report`` builds them (its keyword arguments). Server:
    LoadGen is asked for ``qps`` and its Poisson draw schedules 3% less; it achieves ``achieved`` (default: what
    it scheduled)."""
    from deploykit.report.loadgen import SCHEMA as LG_SCHEMA, SCHEMA_VERSION as LG_VERSION, validate as lg_validate

    base = make_report(samples_ms, **bench_kw)
    lat = {k: loadgen_percentile(samples_ms, q) for k, q in (("p50", 50), ("p90", 90), ("p95", 95), ("p97", 97),
                                                             ("p99", 99), ("p99.9", 99.9))}
    lat.update({"min": min(samples_ms), "max": max(samples_ms), "mean": float(np.mean(samples_ms))})
    server = scenario == "server"
    scheduled = qps * 0.97 if server and qps else None
    achieved = achieved if achieved is not None else scheduled if server else 1000.0 / lat["mean"]
    bound = bound_ms if server else None
    st = summarize(samples_ms, n_boot=200)
    st["percentile_method"] = PERCENTILE_METHOD
    batch = base["throughput"]["batch"]
    report = {
        "schema": LG_SCHEMA, "schema_version": LG_VERSION, "created": base["created"],
        "model": base["model"], "target": base["target"],
        "settings": {"scenario": scenario, "qps": qps if server else None, "latency_bound_ms": bound,
                     "percentile": percentile if scenario != "offline" else None, "duration_s": 2.0,
                     "find_peak": False, "batch": batch, "seed": 0, "threads": base["settings"]["threads"],
                     "mode": "latency" if scenario == "singlestream" else "throughput", "requests_in_flight": 2},
        "loadgen": {
            "version": "6.0.0", "scenario": LOADGEN_SCENARIOS[scenario], "mode": "PerformanceOnly",
            "result": "VALID" if valid else "INVALID", "valid": valid,
            "constraints": {"performance": valid, "min_duration": True, "min_queries": True,
                            "early_stopping": True},
            "reasons": [] if valid else [f"{percentile:g}th percentile latency over the bound"],
            "qps_scheduled": scheduled, "qps_achieved": achieved, "query_count": len(samples_ms),
            "latency_ms": lat, "latency_basis": "per sample",
            "target": {"percentile": percentile, "latency_bound_ms": bound,
                       "latency_at_percentile_ms": loadgen_percentile(samples_ms, percentile)},
            "early_stopping": {"met": True, "lines": [], "estimate_ms": None}, "errors": [], "warnings": [],
            "effective_settings": {"scenario": LOADGEN_SCENARIOS[scenario], **({"target_qps": qps} if server else {})},
            "test_settings": {}, "logs": {"dir": None, "files": []}},
        "latencies": {"source": "loadgen trace", "unit": "ms", "samples_ms": list(samples_ms), "stats": st},
        "calibration": {"latency_ms": lat["p50"], "requests_per_s": 2000.0 / lat["p50"], "requests": 2,
                        "seconds": 1.0},
        "timing": {"load_ms": 100.0, "first_inference_ms": 5.0, "loadgen_wall_s": 2.5},
        "throughput": {"batch": batch, "items_per_s": achieved * batch, "basis": "LoadGen's achieved samples/s",
                       "requests_in_flight": 2},
        "fidelity": base["fidelity"], "warnings": [], "environment": base["environment"],
    }
    if memory is not None:
        report["memory"] = memory
    lg_validate(report)
    return report
