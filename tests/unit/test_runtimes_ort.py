"""The ort target's per-layer profile: a real ONNX Runtime profiling JSON, captured at test time from a small
hand-built graph (Conv -> Relu -> Reshape -> MatMul -> Softmax), parsed into per-inference node times; and the
node-name / precision rules on the event shapes ONNX Runtime writes."""

from collections import Counter
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from deploykit.runtimes.base import ModelInput
from deploykit.runtimes.options import RuntimeOptions
from deploykit.runtimes.ort import OrtCpuRuntime, ort_node_name, ort_node_precision, ort_run_ms, parse_ort_profile


def tiny_graph(path: Path) -> Path:
    rng = np.random.default_rng(0)
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 16])
    inits = [numpy_helper.from_array(rng.standard_normal((4, 3, 3, 3)).astype(np.float32), "w"),
             numpy_helper.from_array(np.array([1, 4, 64], np.int64), "shape"),
             numpy_helper.from_array(rng.standard_normal((64, 16)).astype(np.float32), "m")]
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], name="conv", pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["r"], name="relu"),
             helper.make_node("Reshape", ["r", "shape"], ["f"], name="flat"),
             helper.make_node("MatMul", ["f", "m"], ["mm"], name="matmul"),
             helper.make_node("Softmax", ["mm"], ["y"], name="softmax", axis=-1)]
    model = helper.make_model(helper.make_graph(nodes, "tiny", [x], [y], inits),
                              opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def test_profile_layers_parses_a_real_profiling_json(tmp_path):
    path = tiny_graph(tmp_path / "tiny.onnx")
    rt = OrtCpuRuntime(RuntimeOptions(threads=1))
    x = np.random.default_rng(1).standard_normal((1, 3, 8, 8)).astype(np.float32)
    prof = rt.profile_layers(ModelInput(path, "x", (1, 3, 8, 8)), x, 4)
    assert prof.runtime == "onnxruntime" and prof.iterations == 4
    per_it = Counter(r.iteration for r in prof.records)
    assert sorted(per_it) == [0, 1, 2, 3] and len(set(per_it.values())) == 1  # the same nodes every inference
    ops = {r.op_type for r in prof.records}
    assert "Softmax" in ops and "MatMul" in ops and ({"Conv", "FusedConv"} & ops)  # Relu fused into the conv
    assert "Relu" not in ops
    assert all(r.ms >= 0 and not r.name.endswith("_kernel_time") for r in prof.records)
    assert {r.precision for r in prof.records if r.op_type in ("Softmax", "MatMul")} == {"fp32"}
    assert len(prof.wall_ms) == 4 and all(w > 0 for w in prof.wall_ms)  # the profiled runs' own durations
    for it, wall in enumerate(prof.wall_ms):  # an inference holds its nodes
        assert sum(r.ms for r in prof.records if r.iteration == it) <= wall + 1e-3
    assert not list(tmp_path.glob("*.json"))  # the profiling file went to a temporary folder, now gone


def test_warmup_runs_are_dropped_and_runs_split_by_model_run_events():
    def node(ts, name, op="Conv", dur=10):
        return {"cat": "Node", "name": f"{name}_kernel_time", "ts": ts, "dur": dur,
                "args": {"op_name": op, "input_type_shape": [{"float": [1]}]}}
    events = [{"cat": "Session", "name": "model_run", "ts": 0, "dur": 100}, node(5, "a"), node(50, "b", "Softmax"),
              {"cat": "Session", "name": "model_run", "ts": 200, "dur": 100}, node(205, "a", dur=30),
              node(250, "b", "Softmax"), node(250, "b_fence_before"), node(400, "stray")]
    events[-2]["name"] = "b_fence_before"
    recs = parse_ort_profile(events, skip_runs=1)
    assert [(r.iteration, r.name, r.ms) for r in recs] == [(0, "a", 0.03), (0, "b", 0.01)]
    assert len(parse_ort_profile(events)) == 4
    assert ort_run_ms(events) == [0.1, 0.1]


def test_fused_node_names_and_precisions():
    assert ort_node_name("node_MatMul_60/MatMulScaleFusion//MatmulTransposeFusion/_kernel_time") == \
        ("node_MatMul_60", ("MatMulScaleFusion", "MatmulTransposeFusion"))
    assert ort_node_name("relu_3_nchwc_kernel_time") == ("relu_3_nchwc", ("NCHWc layout",))
    assert ort_node_name("node_view_kernel_time") == ("node_view", ())
    u8 = {"input_type_shape": [{"uint8": [1, 8]}, {"float": []}], "output_type_shape": [{"uint8": [1, 8]}]}
    assert ort_node_precision("QLinearSoftmax", u8) == "int8"
    assert ort_node_precision("QuantizeLinear", {"input_type_shape": [{"float": [1]}],
                                                 "output_type_shape": [{"uint8": [1]}]}) == "fp32->int8"
    assert ort_node_precision("Softmax", {"input_type_shape": [{"float": [1]}]}) == "fp32"
    assert ort_node_precision("Softmax", {"input_type_shape": [{"float16": [1]}]}) == "fp16"
    assert ort_node_precision("Softmax", {}) is None


def test_timed_session_reports_profiling_off(tmp_path):
    path = tiny_graph(tmp_path / "tiny.onnx")
    rt = OrtCpuRuntime(RuntimeOptions(threads=1))
    rt.load(ModelInput(path, "x", (1, 3, 8, 8)))
    try:
        assert rt.info()["profiling"] is False
    finally:
        rt.close()
