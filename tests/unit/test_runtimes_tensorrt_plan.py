"""TensorRT planning logic, tested without TensorRT: builder flags per version and precision, profiles, Q/DQ
checks on real ONNX graphs, engine-cache identity (another TensorRT version or GPU is rebuilt, not loaded),
and the engine inspector summary."""

import json

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from deploykit.core.errors import UsageError
from deploykit.runtimes import tensorrt_plan
from deploykit.runtimes.tensorrt_plan import (build_plan, cache_decision, engine_identity, engine_paths, layer_summary,
                                         profile_shapes, qdq_report, timing_cache_path)


def qdq_model(zp_dtype=np.int8, zp_value=0, omit_zp=False):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 8, 8])
    inits = [numpy_helper.from_array(np.array(0.05, np.float32), "s")]
    ins = ["x", "s"]
    if not omit_zp:
        inits.append(numpy_helper.from_array(np.array(zp_value, zp_dtype), "zp"))
        ins.append("zp")
    nodes = [helper.make_node("QuantizeLinear", ins, ["q"], name="q0"),
             helper.make_node("DequantizeLinear", ["q", *ins[1:]], ["y"], name="dq0")]
    return helper.make_model(helper.make_graph(nodes, "g", [x], [y], inits),
                             opset_imports=[helper.make_opsetid("", 18)])


def test_qdq_report_accepts_symmetric_int8_and_rejects_what_tensorrt_cannot_take():
    onnx.checker.check_model(qdq_model())  # the fixture graphs are valid ONNX
    ok = qdq_report(qdq_model())
    assert ok.quantized and ok.quantize_nodes == 1 and ok.dequantize_nodes == 1 and ok.problems == []
    u8 = qdq_report(qdq_model(np.uint8, 128))
    assert len(u8.problems) == 1 and "uint8" in u8.problems[0]
    nz = qdq_report(qdq_model(np.int8, 3))
    assert "non-zero zero points" in nz.problems[0] and "q0" in nz.problems[0]
    om = qdq_report(qdq_model(omit_zp=True))
    assert om.problems == [] and "omit the zero point" in om.notes[0]
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])
    plain = helper.make_model(helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g", [x],
                                                [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 8, 8])]))
    assert not qdq_report(plain).quantized


@pytest.mark.parametrize("version,req,graph,set_flags,clear_flags,precision", [
    ("10.8.0", None, "fp32", (), ("TF32",), "fp32"),
    ("10.8.0", "fp32", "fp32", (), ("TF32",), "fp32"),
    ("10.8.0", "tf32", "fp32", ("TF32",), (), "tf32"),
    ("10.8.0", "fp16", "fp32", ("FP16",), (), "fp16"),
    ("11.2.0", None, "fp32", (), ("TF32",), "fp32"),
    ("11.2.0", "fp16", "fp16", (), (), "fp16"),
    ("10.3.0", None, "fp16", (), (), "fp16"),
])
def test_build_plan_flags(version, req, graph, set_flags, clear_flags, precision):
    p = build_plan(requested=req, graph_precision=graph, trt_version=version)
    assert (p.set_flags, p.clear_flags, p.precision) == (set_flags, clear_flags, precision)
    assert p.strongly_typed == version.startswith("11")


def test_build_plan_int8_needs_explicit_qdq():
    q = qdq_report(qdq_model())
    p10 = build_plan(requested=None, graph_precision="int8", trt_version="10.8.0", qdq=q)
    assert p10.precision == "int8" and p10.set_flags == ("INT8",)
    p11 = build_plan(requested="int8", graph_precision="int8", trt_version="11.0.0", qdq=q)
    assert p11.set_flags == () and p11.strongly_typed  # TensorRT 11: no INT8 flag, the Q/DQ types decide
    with pytest.raises(UsageError, match="explicitly quantized"):
        build_plan(requested="int8", graph_precision="fp32", trt_version="10.8.0")
    with pytest.raises(UsageError, match="use --precision int8"):
        build_plan(requested="fp16", graph_precision="int8", trt_version="10.8.0", qdq=q)
    with pytest.raises(UsageError, match="uint8"):
        build_plan(requested="int8", graph_precision="int8", trt_version="10.8.0", qdq=qdq_report(qdq_model(np.uint8, 0)))


def test_build_plan_version_rules():
    with pytest.raises(UsageError, match="strongly typed"):
        build_plan(requested="fp16", graph_precision="fp32", trt_version="11.1.0")
    with pytest.raises(UsageError, match="too old"):
        build_plan(requested=None, graph_precision="fp32", trt_version="8.6.1")
    with pytest.raises(UsageError, match="no --precision bf16"):
        build_plan(requested="bf16", graph_precision="fp32", trt_version="10.8.0")
    assert tensorrt_plan.parse_version("10.13.0.35") == (10, 13, 0) and tensorrt_plan.parse_version("11") == (11, 0, 0)


def test_profile_shapes():
    assert profile_shapes((1, 3, 224, 224), (1, 3, 224, 224)) is None
    assert profile_shapes(("batch", 3, 224, 224), (8, 3, 224, 224)) == ((1, 3, 224, 224), (8, 3, 224, 224),
                                                                          (8, 3, 224, 224))
    assert profile_shapes((None, 3, None, None), (4, 3, 96, 96), max_batch=32) == (
        (1, 3, 96, 96), (4, 3, 96, 96), (32, 3, 96, 96))
    with pytest.raises(UsageError, match="rank"):
        profile_shapes((None, 3, 8), (1, 3, 8, 8))


def ident(**over):
    plan = build_plan(requested=None, graph_precision="fp32", trt_version=over.pop("trt", "10.8.0"))
    base = dict(onnx_sha256="ab" * 32, plan=plan, trt_version=over.pop("v", "10.8.0"),
                gpu_name=over.pop("gpu", "NVIDIA H100 80GB HBM3"), compute_capability=over.pop("cc", "9.0"))
    base.update(over)
    return engine_identity(**base)


def test_engine_cache_decisions():
    a = ident()
    side = {"identity": a, "engine_sha256": "e" * 64}
    load, why = cache_decision(side, a, "e" * 64)
    assert load and "matches" in why
    load, why = cache_decision(side, ident(v="10.9.0"), "e" * 64)
    assert not load and "TensorRT version 10.8.0 -> 10.9.0" in why
    load, why = cache_decision(side, ident(gpu="NVIDIA A100-SXM4-40GB", cc="8.0"), "e" * 64)
    assert not load and "GPU NVIDIA H100 80GB HBM3 -> NVIDIA A100-SXM4-40GB" in why and "compute capability" in why
    load, why = cache_decision(side, a, "f" * 64)
    assert not load and "corrupt" in why
    assert cache_decision(None, a, None) == (False, "no cached engine")


def test_engine_paths_are_stable_across_versions_so_stale_engines_are_replaced(tmp_path):
    e1, s1 = engine_paths(tmp_path, ident())
    e2, s2 = engine_paths(tmp_path, ident(v="11.0.0", gpu="Other GPU", cc="8.9"))
    assert (e1, s1) == (e2, s2) and e1.name.endswith(".engine") and s1.name == e1.name + ".json"
    fp16 = engine_identity(onnx_sha256="ab" * 32, plan=build_plan(requested="fp16", graph_precision="fp32",
                                                                  trt_version="10.8.0"),
                           trt_version="10.8.0", gpu_name="g", compute_capability="9.0")
    assert engine_paths(tmp_path, fp16)[0] != e1
    assert timing_cache_path(tmp_path, "10.8.0", "NVIDIA H100 80GB HBM3", "9.0").name == \
        "timing-trt10.8.0-nvidia-h100-80gb-hbm3-sm90.cache"


def test_engine_store_and_reload_through_the_runtime_helpers(tmp_path):
    """The trt target's own cache read/write (no TensorRT needed): stored engines load back only for the same
    TensorRT version and GPU; anything else is a rebuild."""
    from deploykit.runtimes.tensorrt import TensorrtRuntime

    a = ident()
    eng, side = engine_paths(tmp_path, a)
    TensorrtRuntime._store(eng, side, a, b"fake-engine-bytes")
    data, why = TensorrtRuntime._cached(eng, side, a)
    assert data == b"fake-engine-bytes" and "matches" in why
    data, why = TensorrtRuntime._cached(eng, side, ident(v="10.9.1"))
    assert data is None and "10.8.0 -> 10.9.1" in why
    data, why = TensorrtRuntime._cached(eng, side, ident(gpu="NVIDIA L4", cc="8.9"))
    assert data is None and "NVIDIA L4" in why
    eng.write_bytes(b"truncated")
    data, why = TensorrtRuntime._cached(eng, side, a)
    assert data is None and "corrupt" in why
    side.write_text("{not json")
    assert TensorrtRuntime._cached(eng, side, a) == (None, "no cached engine")
    assert not [p for p in tmp_path.iterdir() if ".dk-tmp-" in p.name]


def test_layer_summary_reads_tensorrt_10_and_11_inspector_json():
    trt10 = {"Layers": [
        {"Name": "conv1 + relu", "LayerType": "CaskConvolution", "TacticName": "sm90_xmma_fprop",
         "Inputs": [{"Name": "x", "Format/Datatype": "Row major linear FP32"}],
         "Outputs": [{"Name": "t0", "Format/Datatype": "Channel major FP16 format where channel % 8 == 0"}]},
        {"Name": "fc", "LayerType": "gemm", "TacticValue": "0x12",
         "Outputs": [{"Name": "y", "Format/Datatype": "Row major linear Int8"}]}],
        "Bindings": ["x", "y"]}
    s = layer_summary(json.dumps(trt10))
    assert s["layers"] == 2 and s["output_precisions"] == {"FP16": 1, "INT8": 1}
    assert s["detail"][0] == {"name": "conv1 + relu", "type": "CaskConvolution", "precision": "FP16",
                              "tactic": "sm90_xmma_fprop"}
    trt11 = {"Layers": [{"Name": "l0", "LayerType": "Reformat", "Outputs": [{"Name": "y", "Format": "Row major linear",
                                                                           "DataType": "FP32"}]}],
             "I/O Tensors": []}
    assert layer_summary(json.dumps(trt11))["output_precisions"] == {"FP32": 1}
    names_only = layer_summary(json.dumps({"Layers": ["a", "b"]}))
    assert names_only["layers"] == 2 and names_only["detail"][0] == {"name": "a"}
    assert layer_summary("garbage")["available"] is False


def test_tensorrt_dft_support_depends_on_version(monkeypatch):
    from deploykit.core import lazy
    from deploykit.runtimes.tensorrt import TensorrtRuntime

    monkeypatch.setattr(lazy, "version_of", lambda m: "10.8.0" if m == "tensorrt" else None)
    assert "DFT" in TensorrtRuntime.graph_unsupported({"Conv", "DFT"})
    monkeypatch.setattr(lazy, "version_of", lambda m: "11.2.0" if m == "tensorrt" else None)
    assert TensorrtRuntime.graph_unsupported({"Conv", "DFT"}) == {}


def test_iprofiler_layer_times_are_kept_per_inference_after_warmup():
    from deploykit.bench.layers import summarize_layers
    from deploykit.runtimes.base import LayerProfile

    sink = tensorrt_plan.LayerTimeSink()
    sink.report("conv1 + relu", 9.0)  # a warm-up inference: dropped
    for it in range(2):
        sink.next_iteration()
        sink.report("conv1 + relu", 1.0 + it)
        sink.report("fc", 0.5)
        sink.report("Reformatting CopyNode for Input Tensor 0 to fc", 0.1)
    assert sink.calls[0] == (0, "conv1 + relu", 1.0) and len(sink.calls) == 6
    inspector = layer_summary(json.dumps({"Layers": [
        {"Name": "conv1 + relu", "LayerType": "CaskConvolution", "TacticName": "sm90_xmma",
         "Outputs": [{"Name": "t0", "Format/Datatype": "Row major linear Int8"}]},
        {"Name": "fc", "LayerType": "CaskGemm", "Outputs": [{"Name": "y", "Format/Datatype": "Row major linear FP16"}]}]}))
    recs = tensorrt_plan.trt_layer_records(sink.calls, inspector)
    conv = recs[0]
    assert (conv.op_type, conv.precision, conv.exec_type) == ("CaskConvolution", "int8", "sm90_xmma")
    assert recs[1].precision == "fp16" and recs[2].op_type == "?" and recs[2].precision is None  # not in the inspector
    s = summarize_layers(LayerProfile("tensorrt", "IProfiler", 2, recs))
    assert s["total_ms"] == pytest.approx(1.5 + 0.5 + 0.1)
    assert s["top_nodes"][0]["name"] == "conv1 + relu" and s["top_nodes"][0]["time_ms"] == pytest.approx(1.5)
    assert s["families"]["conv"]["precisions"] == {"int8": 1} and s["families"]["matmul"]["precisions"] == {"fp16": 1}
