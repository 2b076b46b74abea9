"""Memory, model complexity and efficiency in real bench reports (ONNX Runtime and OpenVINO on the tiny models)."""

from __future__ import annotations

import csv
import io

import onnx
import pytest

from deploykit.bench.memory import MB
from deploykit.bench.pipeline import run_benchmark
from deploykit.core.config import BenchConfig, ExportConfig
from deploykit.report.render import to_csv, to_markdown
from deploykit.report.schema import build_report, validate
from deploykit.runtimes.options import RuntimeOptions

FAST = BenchConfig(resolution=64, warmup=2, min_iters=10, min_time=0.1, max_time=20, bootstrap=200, energy="off")


@pytest.fixture(scope="module")
def reports(resnet18_64, deit_tiny_64, store):
    out = {}
    for name, target in (("resnet18", "ort"), ("deit_tiny", "ort"), ("resnet18", "openvino")):
        res = run_benchmark(name, target, FAST, RuntimeOptions(threads=1),
                            export=ExportConfig(model=name, models_dir=store))
        out[name, target] = build_report(res)
    return out


@pytest.mark.parametrize("key", [("resnet18", "ort"), ("deit_tiny", "ort"), ("resnet18", "openvino")])
def test_memory_section(reports, key, resnet18_64, deit_tiny_64):
    rep = reports[key]
    validate(rep)
    m = rep["memory"]
    assert m["rss_before_load_mb"] > 0
    assert m["rss_peak_mb"] >= m["rss_after_load_mb"] > 0 and m["rss_peak_mb"] >= m["rss_before_load_mb"]
    assert m["rss_increase_mb"] == pytest.approx(m["rss_peak_mb"] - m["rss_before_load_mb"], abs=0.01)
    assert m["method"]  # VmHWM after a clear_refs reset here, or the sampler where the reset is not allowed
    assert m["gpu_peak_mb"] is None and m["gpu_method"] is None  # a CPU run
    art = resnet18_64 if key[0] == "resnet18" else deit_tiny_64
    proto = onnx.load(str(art.path), load_external_data=False)
    assert not any(t.data_location == onnx.TensorProto.EXTERNAL for t in proto.graph.initializer)
    assert m["artifact_mb"] == pytest.approx(art.path.stat().st_size / MB, abs=1e-3)


@pytest.mark.parametrize("name", ["resnet18", "deit_tiny"])
def test_complexity_matches_the_registry(reports, name, store):
    from deploykit.models.registry import model_stats

    cx = reports[name, "ort"]["model"]["complexity"]
    ref = model_stats(name, 64, cache_dir=store)
    assert cx["macs"] == pytest.approx(ref["macs"], rel=0.03)
    assert cx["params"] == pytest.approx(ref["params"], rel=0.03)  # BatchNorm folded into the convolutions
    if name == "deit_tiny":  # 12 blocks x (QK^T + AV) x 17 tokens^2 x 192 channels, per item
        assert cx["macs_attention"] == 2 * 12 * 17 * 17 * 192
    else:
        assert cx["macs_attention"] == 0


@pytest.mark.parametrize("key", [("resnet18", "ort"), ("resnet18", "openvino")])
def test_efficiency_section(reports, key):
    rep = reports[key]
    e = rep["efficiency"]
    macs = rep["model"]["complexity"]["macs"]
    assert e["gflops"] == pytest.approx(2 * macs * rep["throughput"]["batch"] / (rep["stats"]["p50"] / 1e3) / 1e9,
                                        rel=1e-3)
    assert e["precision"] == rep["target"]["precision"]
    if e["peak_measured_gflops"] is None:  # the store holds no `deploykit peak` result for this machine
        assert "deploykit peak --threads 1" in e["peak_source"] and e["share_of_measured"] is None
    if e["peak_theoretical_gflops"] is not None:
        assert e["share_of_theoretical"] == pytest.approx(e["gflops"] / e["peak_theoretical_gflops"], rel=1e-3)


def test_renderings_show_memory_and_efficiency(reports):
    reps = list(reports.values())
    md = to_markdown(reps)
    assert md.count("- memory: RSS") == 3 and md.count("- efficiency:") == 3 and "GMACs" in md
    rows = list(csv.DictReader(io.StringIO(to_csv(reps))))
    for row, rep in zip(rows, reps):
        # the CSV rounds to 4 significant digits
        assert float(row["rss_peak_mb"]) == pytest.approx(rep["memory"]["rss_peak_mb"], rel=1e-3)
        assert float(row["artifact_mb"]) == pytest.approx(rep["memory"]["artifact_mb"], rel=1e-3)
        assert float(row["gmacs"]) == pytest.approx(rep["model"]["complexity"]["macs"] / 1e9, rel=1e-3)
        assert float(row["gflops"]) == pytest.approx(rep["efficiency"]["gflops"], rel=1e-3)
