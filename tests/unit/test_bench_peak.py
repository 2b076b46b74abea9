"""bench/peak.py without measuring: the theoretical peak from fingerprint dicts (AVX2 and AVX-512 machines, int8,
bf16), the clock source, the peak targets and their GEMM graphs (runtimes/gemm.py, run in real ONNX Runtime,
checked against numpy), the cache and the efficiency of a report against it."""

from __future__ import annotations

import json

import numpy as np
import pytest

from deploykit.bench import peak as P
from deploykit.bench.fingerprint import machine_id
from deploykit.runtimes import gemm as G

AVX2_INTEL = {"arch": "x86_64", "vendor": "GenuineIntel", "family": 6, "usable_cores": 8, "physical_cores": 4,
              "isa": ["sse4_2", "avx", "avx2", "fma", "f16c"]}
AVX512_INTEL = {"arch": "x86_64", "vendor": "GenuineIntel", "family": 6, "usable_cores": 16, "physical_cores": 16,
                "isa": ["avx", "avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx512_bf16"]}
SPR_AMX = {**AVX512_INTEL, "isa": AVX512_INTEL["isa"] + ["avx512_fp16", "amx_tile", "amx_bf16", "amx_int8"]}
ZEN4 = {"arch": "x86_64", "vendor": "AuthenticAMD", "family": 25, "usable_cores": 2, "physical_cores": 2,
        "isa": ["avx", "avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx512_bf16"]}
ZEN5 = {**ZEN4, "family": 26}
GRAVITON2 = {"arch": "aarch64", "vendor": "0x41", "family": 8, "usable_cores": 4, "physical_cores": 4,
             "isa": ["asimd", "asimddp", "asimdhp"]}


def test_fp32_operations_per_cycle_follow_the_isa():
    assert P.per_cycle(AVX2_INTEL, "fp32")[0] == 32  # 2 FMA x 8 lanes x 2
    assert P.per_cycle(AVX512_INTEL, "fp32")[0] == 64  # 2 FMA x 16 lanes x 2
    assert P.per_cycle(ZEN4, "fp32")[0] == 32  # AVX-512 on 256-bit datapaths
    assert "256-bit datapaths" in P.per_cycle(ZEN4, "fp32")[1]
    assert P.per_cycle(ZEN5, "fp32")[0] == 64
    assert P.per_cycle({"arch": "x86_64", "isa": ["avx"]}, "fp32")[0] == 16  # no FMA: mul + add
    assert P.per_cycle(GRAVITON2, "fp32")[0] == 16


def test_int8_bf16_fp16_operations_per_cycle():
    assert P.per_cycle(AVX2_INTEL, "int8")[0] == pytest.approx(128 / 3)  # vpmaddubsw path: 1.33x fp32
    assert P.per_cycle(AVX512_INTEL, "int8")[0] == 256  # VNNI: 64 MACs x 2 units x 2
    assert P.per_cycle(ZEN4, "int8")[0] == 128
    assert P.per_cycle(SPR_AMX, "int8")[0] == 2048
    assert P.per_cycle({**AVX2_INTEL, "isa": AVX2_INTEL["isa"] + ["avx_vnni"]}, "int8")[0] == 128
    assert P.per_cycle(GRAVITON2, "int8")[0] == 64
    assert P.per_cycle(AVX2_INTEL, "bf16") is None and P.per_cycle(AVX2_INTEL, "fp16") is None
    assert P.per_cycle(AVX512_INTEL, "bf16")[0] == 128 and P.per_cycle(SPR_AMX, "bf16")[0] == 1024
    assert P.per_cycle(SPR_AMX, "fp16")[0] == 128  # AVX512-FP16: 2 x 32 lanes x 2
    assert P.per_cycle({**SPR_AMX, "isa": SPR_AMX["isa"] + ["amx_fp16"]}, "fp16")[0] == 1024
    assert P.per_cycle(GRAVITON2, "fp16")[0] == 32


def test_theoretical_peak_is_cores_times_clock_times_ops():
    th = P.theoretical_peak(AVX2_INTEL, 8, "fp32", 3000.0, "test clock")
    # 8 threads on 4 physical cores: 4 cores x 3 GHz x 32 = 384 GFLOP/s
    assert th["cores"] == 4 and th["gflops"] == pytest.approx(384.0) and th["clock_source"] == "test clock"
    th = P.theoretical_peak(AVX512_INTEL, 2, "fp32", 2500.0)
    assert th["cores"] == 2 and th["gflops"] == pytest.approx(320.0)
    assert P.theoretical_peak(AVX512_INTEL, 2, "int8", 2500.0)["gflops"] == pytest.approx(1280.0)
    assert P.theoretical_peak(AVX2_INTEL, 1, "bf16", 3000.0) is None  # no native bf16
    assert P.theoretical_peak(AVX2_INTEL, 1, "fp32", None) is None  # no clock


def test_clock_source_is_stated():
    assert P.clock({"max_freq_mhz": 3700, "cpuinfo_mhz": [2000]}) == (3700.0, P.clock({"max_freq_mhz": 3700})[1])
    assert "cpufreq" in P.clock({"max_freq_mhz": 3700})[1]
    mhz, src = P.clock({"cpuinfo_mhz": [2596, 2600]})
    assert mhz == 2600.0 and "/proc/cpuinfo" in src and "nominal" in src
    assert P.clock({})[0] is None


def test_peak_targets_are_the_targets_that_declare_gemm_kernels():
    from deploykit.runtimes.base import PEAK, get_runtime

    assert P.peak_targets() == ("ort", "openvino")  # in `deploykit targets` order
    for name in P.peak_targets():
        cls = get_runtime(name)
        assert cls.has(PEAK) and cls.peak_kernels()
    assert not get_runtime("trt").has(PEAK) and get_runtime("trt").peak_kernels() == ()


def _kernels():
    from deploykit.runtimes.base import get_runtime

    return [kk for t in P.peak_targets() for kk in get_runtime(t).peak_kernels()]


def test_the_kernels_cover_each_precision_and_graph():
    kernels = _kernels()
    assert {kk.precision for kk in kernels} == {"fp32", "int8", "bf16", "fp16"}
    assert {kk.graph for kk in kernels} == set(G.GRAPHS)


@pytest.mark.parametrize("kind", G.GRAPHS)
def test_gemm_graphs_compute_the_product(kind):
    """Each graph the peak is measured on computes A . B (run in real ONNX Runtime, compared with numpy)."""
    from onnx import numpy_helper

    from deploykit.onnxio.session import cpu_session

    m, k, n = 6, 32, 5
    model = G.gemm_model(kind, m, k, n)
    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    kernel = next(kk for kk in _kernels() if kk.graph == kind)
    a = G.gemm_input(kernel, m, k)
    y = cpu_session(model.SerializeToString(), threads=1).run(None, {"A": a})[0]
    b = inits["B"].astype(np.int64 if kind != "fp32" else np.float64)
    if kind == "fp32":
        np.testing.assert_allclose(y, a.astype(np.float64) @ b, rtol=1e-4, atol=1e-4)
    elif kind == "matmul_integer":
        np.testing.assert_array_equal(y, (a.astype(np.int64) - 128) @ b)
    elif kind == "qlinear":
        real = ((a.astype(np.int64) - 128) * 0.02) @ (b * 0.01)
        expect = np.clip(np.rint(real / inits["y_scale"]) + 128, 0, 255)
        assert np.max(np.abs(y.astype(np.int64) - expect)) <= 1
    else:
        aq = np.clip(np.rint(a / 0.02) + 128, 0, 255) - 128
        np.testing.assert_allclose(y, (aq * 0.02) @ (b * 0.01), rtol=1e-3, atol=1e-3)


def _entry(threads=2, quick=False, fp32=200.0, int8=800.0):
    kernels = [{"target": "ort", "kernel": "MatMul", "requested": "fp32", "precision": "fp32",
                "shapes": [{"shape": "64x64x64", "gflops": fp32}], "best_gflops": fp32, "best_shape": "64x64x64"},
               {"target": "ort", "kernel": "MatMulInteger u8s8", "requested": "int8", "precision": "int8",
                "shapes": [{"shape": "64x64x64", "gflops": int8}], "best_gflops": int8, "best_shape": "64x64x64"},
               {"target": "openvino", "kernel": "MatMul (hint f16)", "requested": "fp16", "precision": "fp16",
                "skipped": "no fp16"}]
    return {"threads": threads, "targets": ["ort"], "quick": quick, "measured_at": "2026-01-01T00:00:00",
            "shapes": [{"shape": "64x64x64", "what": "test"}], "kernels": kernels,
            "best": P.best_per_precision(kernels), "theoretical": {}, "note": ""}


def test_best_per_precision_skips_skipped_kernels():
    best = _entry()["best"]
    assert set(best) == {"fp32", "int8"} and best["int8"]["kernel"] == "MatMulInteger u8s8"


def test_cache_is_per_machine_and_thread_count(tmp_path):
    p1 = P.save_entry(tmp_path, _entry(threads=1, fp32=100.0))
    p2 = P.save_entry(tmp_path, _entry(threads=2))
    assert p1 == p2 == tmp_path / f"peak-{machine_id()}.json"
    data = json.loads(p1.read_text())
    assert data["schema"] == "deploykit.peak" and set(data["entries"]) == {"1", "2"}
    assert P.cached_entry(tmp_path, 1)["best"]["fp32"]["gflops"] == 100.0
    assert P.cached_entry(tmp_path, 4) is None
    assert not [f for f in tmp_path.iterdir() if f.name.startswith(".dk-tmp")]  # atomic write left nothing


def test_cached_peak_is_returned_without_measuring(tmp_path):
    P.save_entry(tmp_path, _entry(threads=3))
    entry, cached, path = P.peak(tmp_path, threads=3, targets=("ort",))
    assert cached and entry["best"]["fp32"]["gflops"] == 200.0 and path.is_file()


def test_efficiency_against_the_cached_peak(tmp_path):
    P.save_entry(tmp_path, _entry(threads=2, fp32=200.0))
    cpu, freq = AVX512_INTEL, {"cpuinfo_mhz": [2500]}
    # 1 GMAC per item, batch 2, p50 20 ms -> 2 x 1e9 x 2 / 0.02 s = 200 GFLOP/s
    e = P.efficiency(macs=10**9, batch=2, p50_ms=20.0, precision="fp32", threads=2, cache_dir=tmp_path,
                     cpu=cpu, freq=freq)
    assert e["gflops"] == pytest.approx(200.0) and e["share_of_measured"] == pytest.approx(1.0)
    assert e["peak_measured_gflops"] == 200.0 and "deploykit peak" in e["peak_source"]
    assert e["peak_theoretical_gflops"] == pytest.approx(320.0) and e["share_of_theoretical"] == pytest.approx(0.625)
    # throughput mode: items/s, not the per-request p50
    e = P.efficiency(macs=10**9, batch=1, p50_ms=50.0, items_per_s=100.0, mode="throughput", precision="int8",
                     threads=2, cache_dir=tmp_path, cpu=cpu, freq=freq)
    assert e["gflops"] == pytest.approx(200.0) and e["share_of_measured"] == pytest.approx(0.25)


def test_efficiency_without_a_peak_says_how_to_get_one(tmp_path):
    e = P.efficiency(macs=10**9, batch=1, p50_ms=10.0, precision="fp32", threads=3, cache_dir=tmp_path,
                     cpu=AVX2_INTEL, freq={})
    assert e["share_of_measured"] is None and e["peak_measured_gflops"] is None
    assert "deploykit peak --threads 3" in e["peak_source"]
    assert e["peak_theoretical_gflops"] is None  # no clock readable
    P.save_entry(tmp_path, _entry(threads=3))
    e = P.efficiency(macs=10**9, batch=1, p50_ms=10.0, precision="bf16", threads=3, cache_dir=tmp_path)
    assert e["share_of_measured"] is None and "no measured bf16 peak" in e["peak_source"]
    e = P.efficiency(macs=10**9, batch=1, p50_ms=10.0, precision="fp16", threads=1, gpu=True, cache_dir=tmp_path)
    assert e["peak_measured_gflops"] is None and "GPU" in e["peak_source"]


def test_clock_warning_when_measured_beats_theoretical():
    theo = {"fp32": {"gflops": 100.0, "cores": 1, "ops_per_cycle": 64.0, "clock_mhz": 1562.5}}
    w = P.clock_warnings({"fp32": {"gflops": 256.0}}, theo)
    assert len(w) == 1 and ">= 4000 MHz" in w[0]
    assert P.clock_warnings({"fp32": {"gflops": 50.0}}, theo) == []
