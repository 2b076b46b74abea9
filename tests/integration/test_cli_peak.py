"""`deploykit peak` for real (a --quick run, ONNX Runtime and OpenVINO, one thread), its cache, and a bench report's
efficiency against it."""

from __future__ import annotations

import json

import pytest

from deploykit.bench.fingerprint import machine_id
from tests.conftest import assert_clean_error, run_cli


@pytest.mark.slow
def test_peak_quick_json_is_measured_then_cached(tmp_path, resnet18_64, store):
    models = tmp_path / "models"
    p = run_cli("peak", "--json", "--threads", "1", "--quick", "-t", "ort,openvino", "--models-dir", str(models))
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    assert out["from_cache"] is False and out["quick"] is True and out["threads"] == 1
    cache = models / ".cache" / f"peak-{machine_id()}.json"
    assert out["cache"] == str(cache) and cache.is_file()
    assert out["best"]["fp32"]["gflops"] > 0 and out["best"]["int8"]["gflops"] > 0
    for k in out["kernels"]:
        if k.get("skipped"):
            assert k["precision"] in ("bf16", "fp16")  # only where the CPU lacks the instructions
            continue
        assert len(k["shapes"]) == 2 and all(r["gflops"] > 0 and r["iterations"] >= 3 for r in k["shapes"])
        # interleaved rounds: every shape measured in each, its figure the median round, the best with its range
        assert k["rounds"] >= 3 and all(len(r["rounds_gflops"]) == k["rounds"] for r in k["shapes"])
        assert k["best_range"][0] <= k["best_gflops"] <= k["best_range"][1]
        row = k["shapes"][0]
        assert row["gflops"] == pytest.approx(2 * row["m"] * row["k"] * row["n"] / (row["p50_ms"] / 1e3) / 1e9,
                                              rel=1e-3)
    assert {k["target"] for k in out["kernels"]} == {"ort", "openvino"}
    assert out["theoretical"]["fp32"] is None or out["theoretical"]["fp32"]["cores"] == 1
    assert "MatMul" in out["timing"]["method"]

    again = run_cli("peak", "--json", "--threads", "1", "--quick", "-t", "ort", "--models-dir", str(models))
    assert again.returncode == 0 and json.loads(again.stdout)["from_cache"] is True  # ort is covered: no measuring

    # a bench report's efficiency now refers to this (quick) peak
    from deploykit.bench.pipeline import run_benchmark
    from deploykit.core.config import BenchConfig, ExportConfig
    from deploykit.report.schema import build_report
    from deploykit.runtimes.options import RuntimeOptions

    cfg = BenchConfig(resolution=64, warmup=1, min_iters=5, min_time=0.05, bootstrap=100, energy="off")
    res = run_benchmark("resnet18", "ort", cfg, RuntimeOptions(threads=1, cache_dir=str(models / ".cache")),
                        export=ExportConfig(model="resnet18", models_dir=store))
    e = build_report(res)["efficiency"]
    assert e["peak_measured_gflops"] == out["best"]["fp32"]["gflops"]
    assert e["share_of_measured"] == pytest.approx(e["gflops"] / e["peak_measured_gflops"], rel=1e-3)
    assert "--quick" in e["peak_source"] and str(cache) in e["peak_source"]
    assert "rounds" in e["peak_source"] and e["peak_range_gflops"] == out["best"]["fp32"]["range"]
    assert e["peak_measured_at"] == out["measured_at"]


@pytest.mark.slow
def test_peak_text_output_and_errors(tmp_path):
    models = tmp_path / "models"
    p = run_cli("peak", "--threads", "1", "--quick", "-t", "ort", "--models-dir", str(models))
    assert p.returncode == 0, p.stderr
    assert "GEMM peak at 1 threads" in p.stdout and "theoretical" in p.stdout and "ort MatMul" in p.stdout
    assert_clean_error(run_cli("peak", "-t", "trt", "--models-dir", str(models)), 2, "ort and openvino")
