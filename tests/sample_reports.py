"""Hand-built benchmark reports that pass the report schema, for the unit tests of results tables and compare.

``make_report(samples_ms, ...)`` computes the statistics from the samples with deploykit's own statistics module,
so a report's p50 and CI agree with its raw samples the way a real run's do.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from deploykit.bench.stats import PERCENTILE_METHOD, summarize
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
