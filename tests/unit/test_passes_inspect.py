"""The MAC and parameter counter of passes/inspect.py on small hand-built ONNX graphs: exact numbers, per batch
item, attention (activation x activation MatMuls) apart, int8 forms, DFT estimate, and the cache."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from deploykit.passes.inspect import cached_complexity, complexity, inspect_model

RNG = np.random.default_rng(0)


def _model(nodes, inputs, outputs, inits, opset=17):
    graph = helper.make_graph(nodes, "g", inputs, outputs, inits)
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 8
    return m


def _f(name, shape):
    return numpy_helper.from_array(RNG.normal(size=shape).astype(np.float32), name)


def _vi(name, shape, t=TensorProto.FLOAT):
    return helper.make_tensor_value_info(name, t, shape)


def test_conv_grouped_conv_convtranspose_and_gemm_exact():
    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["a"], pads=[1, 1, 1, 1]),  # 3 -> 4 channels, 3x3, 8x8
        helper.make_node("Conv", ["a", "w2"], ["b"], pads=[1, 1, 1, 1], group=2),  # 4 -> 6, groups of 2
        helper.make_node("ConvTranspose", ["b", "w3"], ["c"], strides=[2, 2]),  # 6 -> 2, 3x3
        helper.make_node("GlobalAveragePool", ["c"], ["p"]),
        helper.make_node("Flatten", ["p"], ["f"]),
        helper.make_node("Gemm", ["f", "w4"], ["y"], transB=1),  # 2 -> 5
    ]
    m = _model(nodes, [_vi("x", ["N", 3, 8, 8])], [_vi("y", None)],
               [_f("w1", (4, 3, 3, 3)), _f("w2", (6, 2, 3, 3)), _f("w3", (6, 2, 3, 3)), _f("w4", (5, 2))])
    c = complexity(m, (4, 3, 8, 8))  # symbolic batch set to 4; numbers are per item
    conv1 = 4 * 8 * 8 * 3 * 3 * 3
    conv2 = 6 * 8 * 8 * 2 * 3 * 3
    convt = 6 * 8 * 8 * 2 * 3 * 3  # every input element x (C_out/group) x k x k
    gemm = 5 * 2
    assert c["macs_by_op"] == {"Conv": conv1 + conv2, "ConvTranspose": convt, "Gemm": gemm}
    assert c["macs"] == conv1 + conv2 + convt + gemm
    assert c["macs_attention"] == 0 and c["uncounted_nodes"] == 0
    assert c["params"] == 4 * 27 + 6 * 18 + 6 * 18 + 10
    # inspect_model counts the whole batch
    assert inspect_model(m, batch=4)["macs"] == 4 * c["macs"]


def _attention_graph():
    """x[N, T=10, D=32] -> q, k, v projections (weights) -> softmax(q k^T) v -> output projection."""
    nodes = [
        helper.make_node("MatMul", ["x", "wq"], ["q"]),
        helper.make_node("MatMul", ["x", "wk"], ["k"]),
        helper.make_node("MatMul", ["x", "wv"], ["v"]),
        helper.make_node("Transpose", ["k"], ["kt"], perm=[0, 2, 1]),
        helper.make_node("MatMul", ["q", "kt"], ["s"]),  # activation x activation
        helper.make_node("Softmax", ["s"], ["p"], axis=-1),
        helper.make_node("MatMul", ["p", "v"], ["o"]),  # activation x activation
        helper.make_node("Transpose", ["wo_t"], ["wo"], perm=[1, 0]),  # a weight computed from a constant
        helper.make_node("MatMul", ["o", "wo"], ["y"]),
    ]
    inits = [_f(n, (32, 32)) for n in ("wq", "wk", "wv", "wo_t")]
    return _model(nodes, [_vi("x", ["N", 10, 32])], [_vi("y", None)], inits)


def test_attention_macs_are_the_activation_by_activation_matmuls():
    c = complexity(_attention_graph(), (3, 10, 32))
    projections = 4 * 10 * 32 * 32
    qk, av = 10 * 10 * 32, 10 * 32 * 10
    assert c["macs_attention"] == qk + av
    assert c["macs"] == projections + qk + av
    assert c["params"] == 4 * 32 * 32


def test_int8_forms_count_and_qdq_weights_are_not_attention():
    u8 = TensorProto.UINT8
    scalars = [numpy_helper.from_array(np.float32(0.1), "s"), numpy_helper.from_array(np.uint8(128), "zu"),
               numpy_helper.from_array(np.int8(0), "zi")]
    w = numpy_helper.from_array(RNG.integers(-127, 127, (16, 8), dtype=np.int8), "w")
    wc = numpy_helper.from_array(RNG.integers(-127, 127, (4, 3, 3, 3), dtype=np.int8), "wc")
    nodes = [
        # QLinearMatMul with a weight, then one of two activations
        helper.make_node("QLinearMatMul", ["a", "s", "zu", "w", "s", "zi", "s", "zu"], ["m1"]),  # [N,5,8]
        helper.make_node("Transpose", ["m1"], ["m1t"], perm=[0, 2, 1]),  # [N,8,5]
        helper.make_node("QLinearMatMul", ["m1", "s", "zu", "m1t", "s", "zu", "s", "zu"], ["m2"]),  # [N,5,5]
        helper.make_node("MatMulInteger", ["a", "w", "zu", "zi"], ["m3"]),  # [N,5,8]
        # Q/DQ MatMul: DequantizeLinear of a constant weight is a constant
        helper.make_node("DequantizeLinear", ["a", "s", "zu"], ["ad"]),
        helper.make_node("DequantizeLinear", ["w", "s", "zi"], ["wd"]),
        helper.make_node("MatMul", ["ad", "wd"], ["m4"]),
        helper.make_node("QLinearConv", ["img", "s", "zu", "wc", "s", "zi", "s", "zu"], ["c1"], pads=[1, 1, 1, 1]),
        helper.make_node("ConvInteger", ["img", "wc", "zu", "zi"], ["c2"]),
    ]
    m = _model(nodes, [_vi("a", ["N", 5, 16], u8), _vi("img", ["N", 3, 6, 6], u8)],
               [_vi("m2", None, u8), _vi("m3", None, TensorProto.INT32), _vi("m4", None), _vi("c1", None, u8),
                _vi("c2", None, TensorProto.INT32)], scalars + [w, wc])
    c = complexity(m, (2, 5, 16))
    weight_mm = 5 * 8 * 16
    act_mm = 5 * 5 * 8
    assert c["macs_by_op"]["QLinearMatMul"] == weight_mm + act_mm
    assert c["macs_by_op"]["MatMulInteger"] == weight_mm
    assert c["macs_by_op"]["MatMul"] == weight_mm
    assert c["macs_by_op"]["QLinearConv"] == 4 * 6 * 6 * 27
    assert c["macs_by_op"]["ConvInteger"] == 4 * 4 * 4 * 27
    assert c["macs_attention"] == act_mm
    assert c["params"] == 16 * 8 + 4 * 27  # scales and zero points are not parameters


@pytest.mark.parametrize("channels, factor", [(2, 1.0), (1, 0.5)])
def test_dft_is_estimated_as_n_log_n_and_constant_dfts_are_folded(channels, factor):
    nodes = [helper.make_node("DFT", ["x"], ["y"], axis=2),  # 8 transforms of length 16
             helper.make_node("DFT", ["kernel"], ["ky"], axis=1)]  # of a constant: folded at load, not counted
    kernel = _f("kernel", (1, 16, 2))
    m = _model(nodes, [_vi("x", ["N", 8, 16, channels])], [_vi("y", None), _vi("ky", None)], [kernel])
    c = complexity(m, (1, 8, 16, channels))
    assert c["macs_by_op"] == {"DFT": round(8 * 2.5 * 16 * math.log2(16) * factor)}


def test_unknown_shapes_are_reported_not_guessed():
    nodes = [helper.make_node("Reshape", ["x", "shape"], ["r"]), helper.make_node("MatMul", ["r", "w"], ["y"])]
    m = _model(nodes, [_vi("x", ["N", 4]), _vi("shape", [2], TensorProto.INT64)], [_vi("y", None)],
               [_f("w", (4, 3))])
    c = complexity(m, (2, 4))
    assert c["uncounted_nodes"] == 1 and c["macs"] == 0 and "not counted" in c["source"]


def test_cached_complexity_writes_then_reads_its_cache(tmp_path):
    m = _attention_graph()
    sha = "ab" * 32
    first = cached_complexity("unused.onnx", sha, (1, 10, 32), tmp_path, proto=m)
    files = list((tmp_path / "complexity").iterdir())
    assert len(files) == 1 and json.loads(files[0].read_text()) == first
    files[0].write_text(json.dumps({**first, "macs": 1}))  # a second call answers from the cache
    assert cached_complexity("unused.onnx", sha, (1, 10, 32), tmp_path, proto=m)["macs"] == 1
    assert cached_complexity("unused.onnx", sha, (2, 10, 32), tmp_path, proto=m)["macs"] == first["macs"]
