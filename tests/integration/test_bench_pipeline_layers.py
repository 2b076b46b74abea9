"""bench --per-layer on real runtimes: ONNX Runtime's profiling JSON and OpenVINO's performance counters for
ResNet-18 and DeiT-Tiny at 64x64 (fp32, and DeiT int8 on ONNX Runtime), in the report, the Markdown and the CLI
table; the timed session itself runs with profiling off."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from deploykit.bench.pipeline import run_benchmark
from deploykit.core.config import BenchConfig, ExportConfig
from deploykit.report.render import to_markdown
from deploykit.report.schema import build_report, validate
from deploykit.runtimes.options import RuntimeOptions
from tests.conftest import assert_clean_error

FAST = BenchConfig(resolution=64, warmup=2, min_iters=10, min_time=0.1, max_time=20, bootstrap=100, energy="off",
                   per_layer=True, per_layer_iters=4, per_layer_top=6)


def bench(model, target, store, **opts):
    result = run_benchmark(model, target, FAST, RuntimeOptions(threads=1, **opts),
                           export=ExportConfig(model=model, models_dir=store))
    rep = build_report(result)
    validate(rep)
    return rep


def check_section(rep, iterations=4, top=6):
    pl = rep["per_layer"]
    assert pl["iterations"] == iterations and pl["total_ms"] > 0 and pl["nodes"] >= len(pl["top_nodes"])
    assert sum(t["share"] for t in pl["by_op_type"]) == pytest.approx(1.0, abs=1e-6)
    assert sum(t["time_ms"] for t in pl["by_op_type"]) == pytest.approx(pl["total_ms"], rel=1e-6)
    assert len(pl["top_nodes"]) == top
    assert pl["measured_ms"] == rep["stats"]["p50"] and pl["profiled_wall_ms"] > 0
    times = [n["time_ms"] for n in pl["top_nodes"]]
    assert times == sorted(times, reverse=True)
    # the latency samples come from the timed session, which ran with the profiler off
    assert rep["target"]["info"]["profiling"] is False
    assert rep["timing"]["iterations"] >= 10
    return pl


def test_ort_resnet18_time_is_in_convolutions(resnet18_64, store):
    rep = bench("resnet18", "ort", store)
    pl = check_section(rep)
    ops = {t["op_type"] for t in pl["by_op_type"]}
    assert {"Conv", "FusedConv"} & ops, ops
    assert pl["families"]["conv"]["share"] > 0.5
    assert pl["families"]["softmax"]["nodes"] == 0
    assert {p["precision"] for p in pl["by_precision"]} <= {"fp32", "int64"}
    md = to_markdown([rep])
    assert "### per-layer profile of resnet18 on ort" in md and "| op type | ms | share |" in md


def test_ort_deit_shows_softmax_and_matmul(deit_tiny_64, store):
    pl = check_section(bench("deit_tiny", "ort", store))
    sm, mm = pl["families"]["softmax"], pl["families"]["matmul"]
    assert sm["op_types"] == {"Softmax": 12} and sm["precisions"] == {"fp32": 12}  # one per attention block
    assert 0 < sm["share"] < 1
    assert mm["nodes"] >= 12 * 4 and mm["share"] > sm["share"]


def test_openvino_deit_layers_with_their_exec_precision(deit_tiny_64, store):
    rep = bench("deit_tiny", "openvino", store, precision="fp32", cache=False)
    pl = check_section(rep)
    assert "OpenVINO performance counters" in pl["profiler"]
    ops = {t["op_type"] for t in pl["by_op_type"]}
    assert {"FullyConnected", "MatMul"} & ops and "Convolution" in ops, ops
    sm = pl["families"]["softmax"]
    # OpenVINO either runs each attention block's softmax as a node or inside an attention subgraph
    assert sm["nodes"] + sm["fused_softmax_nodes"] == 12, sm
    assert {p["precision"] for p in pl["by_precision"]} == {"fp32"}  # INFERENCE_PRECISION_HINT f32, read per layer


def test_openvino_resnet18_convolutions(resnet18_64, store):
    pl = check_section(bench("resnet18", "openvino", store, precision="fp32", cache=False))
    conv = next(t for t in pl["by_op_type"] if t["op_type"] == "Convolution")
    assert conv["count"] == 20 and conv["precisions"] == {"fp32": 20} and conv["share"] > 0.5
    assert any("Relu" in n.get("fused", []) for n in pl["top_nodes"])  # the ReLUs run inside the convolutions


def test_cli_per_layer_int8_deit_on_ort_runs_qlinearsoftmax(deit_tiny_64, tmp_path, cli_runner):
    from deploykit.cli import cli

    args = ["bench", str(deit_tiny_64.path), "--int8", "--calib-data", "synthetic", "--calib-size", "4",
            "--models-dir", str(tmp_path / "m"), "--report-dir", str(tmp_path / "r"), "--warmup", "1",
            "--min-iters", "3", "--min-time", "0", "--threads", "1", "--energy", "off", "--per-layer", "--top", "5"]
    r = cli_runner.invoke(cli, args)
    assert r.exit_code == 0, r.stderr
    assert "per-layer profile of" in r.stdout and "QLinearSoftmax" in r.stdout and "int8 x12" in r.stdout
    rep = json.loads(next((tmp_path / "r").glob("*.json")).read_text())
    sm = rep["per_layer"]["families"]["softmax"]
    assert sm["op_types"] == {"QLinearSoftmax": 12} and sm["precisions"] == {"int8": 12}
    assert any(p["precision"] == "int8" for p in rep["per_layer"]["by_precision"])
    assert rep["settings"]["per_layer"] is True and rep["settings"]["per_layer_top"] == 5


def test_per_layer_on_a_target_without_profiler_is_refused_up_front(cli_runner, tmp_path):
    from deploykit.cli import cli

    r = cli_runner.invoke(cli, ["bench", "resnet18", "--target", "torch", "--per-layer", "--models-dir",
                                str(tmp_path / "m"), "--no-save"])
    assert_clean_error(r, 2, "no per-layer profiler", "ort", "openvino")
    assert not (tmp_path / "m").exists()  # refused before any export


def test_per_layer_is_off_by_default(resnet18_64, store):
    result = run_benchmark("resnet18", "ort", replace(FAST, per_layer=False), RuntimeOptions(threads=1),
                           export=ExportConfig(model="resnet18", models_dir=store))
    assert result.per_layer is None and "per_layer" not in build_report(result)


def test_a_failing_profiler_leaves_the_measurement_and_a_warning(resnet18_64, store, monkeypatch):
    from deploykit.runtimes.ort import OrtCpuRuntime

    def broken(self, model, x, iterations):
        raise RuntimeError("profiling JSON\nnot written")

    monkeypatch.setattr(OrtCpuRuntime, "profile_layers", broken)
    result = run_benchmark("resnet18", "ort", FAST, RuntimeOptions(threads=1),
                           export=ExportConfig(model="resnet18", models_dir=store))
    rep = build_report(result)
    assert "per_layer" not in rep and rep["timing"]["iterations"] >= 10
    assert "per-layer profile failed, the measurement stands: RuntimeError: profiling JSON not written" in rep["warnings"]
