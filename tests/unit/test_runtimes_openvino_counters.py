"""The openvino target's per-layer profile: OpenVINO's performance counters of a real compiled model (a small
hand-built graph), the exec_type -> precision rule, and the timed compiled model's PERF_COUNT read back off."""

import numpy as np

from deploykit.runtimes.base import ModelInput
from deploykit.runtimes.openvino import OpenVinoRuntime, exec_precision
from deploykit.runtimes.options import RuntimeOptions
from test_runtimes_ort import tiny_graph


def test_exec_type_names_the_precision_each_layer_ran_in():
    assert exec_precision("brgconv_avx512_FP32") == "fp32"
    assert exec_precision("jit_avx2_I8") == "int8"
    assert exec_precision("brgemm_avx512_U8") == "int8"
    assert exec_precision("jit_avx512_f32") == "fp32"
    assert exec_precision("ref_any_bf16") == "bf16"
    assert exec_precision("jit_avx512_amx_f16") == "fp16"
    assert exec_precision("unknown_I32") == "int32"
    assert exec_precision("undef") is None and exec_precision("") is None


def test_profile_layers_reads_real_performance_counters(tmp_path):
    path = tiny_graph(tmp_path / "tiny.onnx")
    rt = OpenVinoRuntime(RuntimeOptions(threads=1, precision="fp32", cache=False))
    x = np.random.default_rng(1).standard_normal((1, 3, 8, 8)).astype(np.float32)
    prof = rt.profile_layers(ModelInput(path, "x", (1, 3, 8, 8)), x, 3)
    assert prof.runtime == "openvino" and prof.iterations == 3
    assert sorted({r.iteration for r in prof.records}) == [0, 1, 2]
    ops = {r.op_type for r in prof.records}
    assert "Convolution" in ops and "Softmax" in ops, ops
    conv = next(r for r in prof.records if r.op_type == "Convolution")
    assert conv.precision == "fp32" and conv.exec_type and conv.exec_type.lower().endswith("f32")
    assert conv.fused == ("Conv", "Relu")  # originalLayersNames: the ReLU runs inside the convolution
    assert {"FullyConnected", "MatMul"} & ops  # MatMul by a constant runs as FullyConnected
    assert all(r.ms >= 0 for r in prof.records)
    assert len(prof.wall_ms) == 3 and all(w > 0 for w in prof.wall_ms)  # OpenVINO's request timer, per inference


def test_timed_compiled_model_has_perf_count_off(tmp_path):
    path = tiny_graph(tmp_path / "tiny.onnx")
    rt = OpenVinoRuntime(RuntimeOptions(threads=1, cache=False))
    rt.load(ModelInput(path, "x", (1, 3, 8, 8)))
    try:
        assert rt.info()["profiling"] is False
    finally:
        rt.close()
