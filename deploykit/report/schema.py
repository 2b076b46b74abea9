"""The versioned JSON report: build it from a BenchResult, validate it, load it back with clean errors."""

from __future__ import annotations

import json
import re
import time
from functools import lru_cache
from pathlib import Path

from deploykit.core.errors import InputError

SCHEMA = "deploykit.report"
SCHEMA_VERSION = 1
_SCHEMA_FILE = Path(__file__).with_name("report.schema.json")


@lru_cache(maxsize=1)
def json_schema() -> dict:
    return json.loads(_SCHEMA_FILE.read_text())


def build_report(result) -> dict:
    """The JSON document for one ``bench.pipeline.BenchResult``."""
    m = result.measurement
    samples_ms = [round(s / 1e6, 6) for s in m.samples_ns]
    report = {
        "schema": SCHEMA,
        "schema_version": SCHEMA_VERSION,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "model": result.model.describe(),
        "target": {
            "name": result.target,
            "description": result.target_description,
            "precision": result.precision,
            "info": result.runtime_info,
        },
        "settings": result.settings(),
        "timing": {
            "unit": "ms",
            "load_ms": m.load_ns / 1e6,
            "first_inference_ms": m.first_ns / 1e6,
            "warmup_ms": [round(s / 1e6, 6) for s in m.warmup_ns],
            "samples_ms": samples_ms,
            "measured_wall_s": m.wall_ns / 1e9,
            "iterations": m.iterations,
            "stop_reason": m.stop_reason,
        },
        "stats": result.stats_ms,
        "throughput": {
            "items_per_s": m.items_per_s,
            "batch": m.batch,
            "basis": "batch x iterations / wall time of the measured loop" if m.mode == "latency" else
                     f"batch x completed requests / wall time of the measured loop ({m.requests} requests in flight; "
                     "latencies are per request, submit to completion)",
            "mode": m.mode,
            "requests_in_flight": m.requests,
        },
        "fidelity": result.fidelity,
        "warnings": result.warnings,
        "environment": result.environment,
    }
    for key in ("energy", "telemetry", "device_timing", "per_layer"):  # optional sections of the schema
        value = getattr(result, key, None)
        if value is not None:
            report[key] = value
    for key in ("memory", "efficiency"):  # optional: bench/memory.py, bench/peak.py
        if getattr(result, key, None) is not None:
            report[key] = getattr(result, key)
    if getattr(result, "complexity", None) is not None:
        report["model"]["complexity"] = result.complexity
    quant = quantization_section(result)
    if quant is not None:
        report["quantization"] = quant
    if getattr(result, "reference_workload", None):
        report["reference_workload"] = result.reference_workload
    if getattr(result, "run_spec", None):
        report["run_spec"] = result.run_spec
    if getattr(result, "accuracy", None):
        report["accuracy"] = result.accuracy
    validate(report)
    return json.loads(json.dumps(report, default=_default))  # plain JSON types only


def quantization_section(result) -> dict | None:
    """For an int8 artifact: how it was quantized (from its manifest), its fidelity/accuracy against fp32 at
    build time, and what the target actually ran in int8 (read back by the target, e.g. ORT's QLinearSoftmax)."""
    m = result.model.manifest
    if not m or m.get("settings", {}).get("precision") != "int8":
        return None
    st, q = m["settings"], m.get("quantization", {})
    fid = q.get("fidelity", {})
    fusion = result.runtime_info.get("fusion") if isinstance(result.runtime_info.get("fusion"), dict) else {}
    section = {
        "quantizer": st.get("quantizer"),
        "profile": st.get("profile"),
        "softmax": st.get("softmax"),
        "calibration": st.get("calibration"),
        "reduce_range": st.get("reduce_range"),
        "per_channel": st.get("per_channel"),
        "exclude": st.get("exclude"),
        "source": {k: m.get("source", {}).get(k) for k in ("fp32_artifact", "fp32_sha256")},
        "build_fidelity": {k: fid.get(k) for k in ("reference", "runtime", "samples", "top1", "top5_agreement",
                                                    "cosine", "cosine_mean", "max_abs", "rel_err", "sqnr_db",
                                                    "passed")},
        "accuracy": q.get("accuracy"),
        "attention_blocks": len(q.get("softmax", {}).get("blocks", []) or []),
        # the error the int8 softmax adds, per attention block (quantize/softmax.py), where its output is int8
        "softmax_errors": [{"index": b.get("index"), **{k: b["error"].get(k) for k in (
            "probs_sqnr_db", "attn_sqnr_db", "zeroed_fraction", "probs_max_abs")}}
            for b in (q.get("softmax", {}).get("blocks") or []) if isinstance(b.get("error"), dict)],
        "int8_kernels_ran": fusion.get("int8_kernels"),
        "softmax_kernels_ran": fusion.get("softmax"),
    }
    return section


def _default(obj):
    if hasattr(obj, "tolist"):
        return obj.tolist()
    return str(obj)


def validate(report: dict, where: str = "report") -> None:
    """Raise InputError naming the first schema violation."""
    import jsonschema

    if not isinstance(report, dict):
        raise InputError(f"{where} is not a deploykit report (not a JSON object)")
    if report.get("schema") != SCHEMA:
        raise InputError(f"{where} is not a deploykit report (schema is {report.get('schema')!r})")
    if report.get("schema_version") != SCHEMA_VERSION:
        raise InputError(f"{where} has report schema version {report.get('schema_version')!r}; this deploykit "
                         f"reads version {SCHEMA_VERSION}")
    from deploykit.core.validate import strict_validator

    validator = strict_validator(json_schema())  # "integer" is a whole number written as one (not 2.0)
    exc = jsonschema.exceptions.best_match(validator.iter_errors(report))
    if exc is not None:
        path = "/".join(str(p) for p in exc.absolute_path) or "(top level)"
        raise InputError(f"{where} does not match the report schema at {path}: {' '.join(exc.message.split())[:200]}")


def load_report(path: str | Path) -> dict:
    """A report file, validated (types, bounds, finite numbers); anything else is a one-line InputError."""
    from deploykit.core.validate import read_json

    p = Path(path)
    if not p.is_file():
        raise InputError(f"report not found: {p}")
    data = read_json(p, "report")  # NaN / Infinity are not JSON: refused here
    validate(data, str(p))
    return data


def report_stem(report: dict) -> str:
    """``<stamp>-<model>[-<option>-<value>...]-<target>[-<precision>]``: the model options the artifact was built
    with (``impl-fft`` for ``parc_impl=fft``) keep runs of different variants apart."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    label = re.sub(r"[^A-Za-z0-9_.-]+", "_", report["model"]["label"])
    opts = (report["model"].get("export_settings") or {}).get("options") or {}
    label += "".join(re.sub(r"[^A-Za-z0-9_.-]+", "_", f"-{k.split('_')[-1]}-{v}") for k, v in sorted(opts.items()))
    parts = [stamp, label, report["target"]["name"]]
    if report["target"]["precision"] not in ("fp32",):
        parts.append(report["target"]["precision"])
    return "-".join(parts)
