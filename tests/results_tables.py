"""Hand-built results tables that follow the results-table contract (the columns a sweep writes), with known
truths baked in, and the cell JSON reports (raw samples, environment) beside them. For the tests of
``deploykit report`` (studyreport/analysis.py, studyreport/html.py, studyreport/plots.py) without running a
sweep."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from deploykit.bench.stats import bootstrap_ci
from deploykit.studyreport.analysis import COLUMNS

EVIL = "evil<script>alert(1)</script>"
RESOLUTIONS = (224, 320, 448, 640, 896)

# the truths: CNN latency = a * P^1 exactly in expectation; ViT t = c0 + c1 P + c2 P^2 with the crossover at
# sqrt(c1/c2) = 500 px; int8 speed-ups 2.0 (cnn) and 1.25 (vit); fft fastest from 640 px up; LoadGen server cells
# (serving=True) VALID up to their capacity (SERVER_CAPACITY QPS), INVALID above it, bound SERVER_BOUND_MS at p99
CNN_K = 1.0
VIT_C = (2.0, 4e-5, 4e-5 / 500**2)
VIT_CROSSOVER = 500.0
SPEEDUP = {"cnn": 2.0, "vit": 1.25, "parc": 1.5}

ENV = {"cpu": {"model": "Test CPU 9000", "usable_cores": 2, "isa": ["avx2", "fma"], "flags_sha256": "abc"},
       "threads": 2, "os": {"platform": "Linux-6.1-x86_64"}, "python": "3.11.2",
       "packages": {"onnxruntime": "1.20.0", "openvino": "2024.4"}, "deploykit": {"version": "0.1.0"}}


def _latency(model: str, family: str, impl: str, res: int) -> float:
    p = float(res) ** 2
    if family == "cnn":
        return 0.3 * (p / 224**2) ** CNN_K
    if family == "vit":
        c0, c1, c2 = VIT_C
        return c0 + c1 * p + c2 * p * p
    # parc: conv and matmul grow faster than fft; fft has a larger constant
    base = {"conv": 0.8, "matmul": 0.9, "fft": 1.6}[impl]
    k = {"conv": 1.5, "matmul": 1.45, "fft": 1.05}[impl]
    return base * (p / 224**2) ** k


SERVER_QPS = (10.0, 20.0, 40.0, 80.0)
SERVER_CAPACITY = {("resnet_syn", "ort"): 60.0, ("resnet_syn", "openvino"): 70.0, ("deit_syn", "ort"): 30.0,
                   ("deit_syn", "openvino"): 35.0}
SERVER_BOUND_MS = 100.0


def contract_table(folder: Path | None = None, *, n_samples: int = 60, seed: int = 0, evil: bool = True,
                   families: tuple[str, ...] = ("cnn", "vit", "parc"),
                   targets: tuple[str, ...] = ("ort", "openvino"), serving: bool = False) -> pd.DataFrame:
    """A table of ok cells for a CNN, a ViT (with attention MACs) and a ParC model (conv/fft/matmul) on two
    targets, fp32 and int8, five resolutions, plus batches 1/2/4 at 224, and two failed cells (one with a
    hostile model name). ``serving``: plus LoadGen server cells of the CNN and the ViT at SERVER_QPS on each
    target (and one failed server cell). With ``folder``, each ok cell's JSON report (raw samples, environment;
    a server cell's LoadGen target) is written under ``folder/cells/`` and the table's ``report`` column points
    at it (relative to ``folder``)."""
    rng = np.random.default_rng(seed)
    rows = []
    models = [("resnet_syn", "cnn", ""), ("deit_syn", "vit", "")]
    models += [("parc_syn", "parc", f"parc_impl={i}") for i in ("conv", "fft", "matmul")]
    for model, family, opts in models:
        if family not in families:
            continue
        impl = opts.partition("=")[2]
        for target in targets:
            for precision in ("fp32", "int8"):
                for res in RESOLUTIONS:
                    for batch in ((1, 2, 4) if res == 224 else (1,)):
                        rows.append(_ok_row(rng, model, family, opts, impl, target, precision, res, batch,
                                            n_samples))
    rows.append(_failed_row("deit_syn", "vit", "openvino", "int8", 1024, "failed", 139,
                            "child crashed: SIGSEGV in <openvino> compile"))
    if evil:
        rows.append(_failed_row(EVIL, "cnn", "ort", "fp32", 224, "timeout", -9, "timed out after 600 s; "
                                "model <b>bold</b> & \"quoted\""))
    if serving:
        for model, family in (("resnet_syn", "cnn"), ("deit_syn", "vit")):
            if family in families:
                for target in targets:
                    rows += [_server_row(model, family, target, q) for q in SERVER_QPS]
        failed = _failed_row("resnet_syn", "cnn", targets[0], "fp32", 224, "failed", 2, "LoadGen: no SUT")
        rows.append({**failed, "scenario": "server", "qps_scheduled": 160.0,
                     "cell": failed["cell"] + "-server@qps=160"})
    df = pd.DataFrame(rows)
    if folder is not None:
        write_cell_reports(df, Path(folder))
    for c in COLUMNS:
        if c not in df.columns:
            df[c] = np.nan
    return df[COLUMNS]


def _ok_row(rng, model, family, opts, impl, target, precision, res, batch, n_samples) -> dict:
    t = _latency(model, family, impl, res) * batch ** 0.8
    if precision == "int8":
        t /= SPEEDUP[family]
    if target == "openvino":
        t *= 0.9
    samples = t * rng.lognormal(0.0, 0.03, n_samples)
    p50 = float(np.median(samples))
    lo, hi = bootstrap_ci(samples, n_boot=300, seed=1)
    p = float(res) ** 2
    gmacs = 1.8 * p / 224**2
    att = 0.0
    if family == "vit":
        gmacs = 4.0 * p / 224**2 + 0.2 * (p / 224**2) ** 2  # attention: quadratic in pixels
        att = 0.2 * (p / 224**2) ** 2
    opt_key = f"-{opts}" if opts else ""
    cell = f"{model}{opt_key}-{target}-{precision}-b{batch}-r{res}-t2"
    return {
        "cell": cell, "model": model, "model_options": opts, "family": family, "target": target,
        "precision": precision, "batch": batch, "resolution": res, "threads": 2, "scenario": "latency",
        "status": "ok", "reason": "", "exit_code": 0,
        "p50_ms": p50, "ci_low_ms": lo, "ci_high_ms": hi, "p90_ms": float(np.percentile(samples, 90)),
        "p99_ms": float(np.percentile(samples, 99)), "mean_ms": float(samples.mean()),
        "cv_pct": float(100 * samples.std(ddof=1) / samples.mean()), "items_per_s": 1000 * batch / p50,
        "iterations": n_samples, "params_m": {"cnn": 11.7, "vit": 5.7, "parc": 7.5}[family],
        "gmacs": gmacs, "gmacs_attention": att, "gflops": 2 * gmacs * batch / (p50 / 1000),
        "peak_share": (2 * gmacs * batch / (p50 / 1000)) / (150.0 if precision == "fp32" else 300.0),
        "peak_kind": "measured", "rss_peak_mb": 150 + 3 * p / 1e4 * batch, "rss_increase_mb": 40.0,
        "gpu_peak_mb": np.nan, "artifact_mb": {"fp32": 44.0, "int8": 11.5}[precision] * (1 if family == "cnn" else 0.5),
        "j_per_item": np.nan, "fidelity": "pass",
        # accuracy on labelled images: a little lower for int8, for the ViT most (its softmax)
        "top1": {"cnn": 0.97, "vit": 0.93, "parc": 0.96}[family] - (0.0 if precision == "fp32" else
                                                                   {"cnn": 0.002, "vit": 0.02, "parc": 0.004}[family]),
        "qps_scheduled": np.nan, "qps_achieved": np.nan,
        "loadgen_valid": None, "wall_s": 3.0, "created": "2025-01-02T03:04:05", "host": "testhost", "node": "",
        "job_id": "", "executor": "local", "git_rev": "e2da273", "report": f"cells/{cell}.json",
        "_samples": samples,
    }


def _server_row(model, family, target, qps) -> dict:
    """A LoadGen server cell: below capacity the latency grows as 1 / (1 - load); above it LoadGen falls behind,
    achieves the capacity only and the p99 explodes (INVALID)."""
    cap = SERVER_CAPACITY[(model, target)]
    service = 1000.0 / cap * 0.5
    load = min(qps / cap, 0.95)
    p50 = service * (1 + load)
    p99 = service * 3 / (1 - load) if qps < cap else 40 * SERVER_BOUND_MS
    achieved = min(qps, cap) * 0.99
    cell = f"{model}-{target}-fp32-b1-r224-t2-server@qps={qps:g}"
    return {
        "cell": cell, "model": model, "model_options": "", "family": family, "target": target, "precision": "fp32",
        "batch": 1, "resolution": 224, "threads": 2, "scenario": "server", "status": "ok", "reason": "",
        "exit_code": 0, "p50_ms": p50, "ci_low_ms": p50 * 0.98, "ci_high_ms": p50 * 1.02, "p90_ms": (p50 + p99) / 2,
        "p99_ms": p99, "mean_ms": p50 * 1.1, "items_per_s": achieved, "iterations": int(qps * 10),
        "fidelity": "pass", "qps_scheduled": qps, "qps_achieved": achieved, "loadgen_valid": p99 <= SERVER_BOUND_MS,
        "rss_peak_mb": 180.0, "wall_s": 12.0, "created": "2025-01-02T03:06:00", "host": "testhost",
        "executor": "local", "report": f"cells/{cell}.json", "_samples": None, "_bound": SERVER_BOUND_MS,
    }


def _failed_row(model, family, target, precision, res, status, code, reason) -> dict:
    return {"cell": f"{model}-{target}-{precision}-b1-r{res}-t2", "model": model, "model_options": "",
            "family": family, "target": target, "precision": precision, "batch": 1, "resolution": res,
            "threads": 2, "scenario": "latency", "status": status, "reason": reason, "exit_code": code,
            "created": "2025-01-02T03:05:00", "host": "testhost", "executor": "local", "report": "",
            "_samples": None}


def write_cell_reports(df: pd.DataFrame, folder: Path) -> None:
    for _, r in df.iterrows():
        if r["status"] != "ok":
            continue
        if r["scenario"] == "server":  # what the report reads of a LoadGen report: its target, its environment
            rep = {"schema": "deploykit.loadgen", "schema_version": 1, "environment": ENV,
                   "loadgen": {"target": {"percentile": 99.0, "latency_bound_ms": r["_bound"],
                                          "latency_at_percentile_ms": r["p99_ms"]}}}
        else:
            rep = {"schema": "deploykit.report", "schema_version": 1, "environment": ENV,
                   "timing": {"unit": "ms", "samples_ms": [float(v) for v in r["_samples"]]}}
        path = folder / r["report"]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(rep))


def write_table(df: pd.DataFrame, folder: Path, kind: str = "parquet") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    if kind == "parquet":
        path = folder / "results.parquet"
        df.to_parquet(path, index=False)
    else:
        path = folder / "results.csv"
        df.to_csv(path, index=False)
    return path
