"""bench/layers.py: the per-layer aggregation (mean per inference, per op type, shares, top-N, precisions,
the softmax / matmul families and softmax fused into bigger kernels), on LayerTime records."""

import pytest

from deploykit.bench.layers import family_of, softmax_text, summarize_layers
from deploykit.runtimes.base import LayerProfile, LayerTime


def profile(iterations=2):
    recs = []
    for it in range(iterations):
        recs += [
            LayerTime(it, "conv1", "FusedConv", 4.0 + it, "fp32", fused=("NCHWc layout",)),
            LayerTime(it, "conv2", "QLinearConv", 2.0, "int8"),
            LayerTime(it, "mm1", "QLinearMatMul", 1.0, "int8"),
            LayerTime(it, "mm2", "MatMul", 1.0, "fp32"),
            LayerTime(it, "sm1", "QLinearSoftmax", 0.5, "int8"),
            LayerTime(it, "sm2", "Softmax", 0.5, "fp32"),
            LayerTime(it, "q", "QuantizeLinear", 0.5, "fp32->int8"),
            LayerTime(it, "attn", "Subgraph", 0.5, "bf16", fused=("MatMul", "Softmax", "MatMul")),
        ]
    return LayerProfile(runtime="test", profiler="test profiler", iterations=iterations, records=recs)


def test_node_times_are_medians_over_inferences_and_shares_sum_to_one():
    s = summarize_layers(profile(2), top=3)
    assert s["iterations"] == 2 and s["nodes"] == 8
    assert s["total_ms"] == pytest.approx(4.5 + 2 + 1 + 1 + 0.5 + 0.5 + 0.5 + 0.5)  # conv1: (4 + 5) / 2
    assert sum(t["share"] for t in s["by_op_type"]) == pytest.approx(1.0)
    assert sum(p["share"] for p in s["by_precision"]) == pytest.approx(1.0)
    assert [t["op_type"] for t in s["by_op_type"]][:2] == ["FusedConv", "QLinearConv"]  # slowest first
    conv = s["by_op_type"][0]
    assert conv["time_ms"] == pytest.approx(4.5) and conv["count"] == 1 and conv["precisions"] == {"fp32": 1}
    assert conv["share"] == pytest.approx(4.5 / s["total_ms"])


def test_top_nodes_are_the_slowest_with_precision_and_fusion():
    s = summarize_layers(profile(), top=3)
    assert [n["name"] for n in s["top_nodes"]] == ["conv1", "conv2", "mm1"] or \
        [n["name"] for n in s["top_nodes"]] == ["conv1", "conv2", "mm2"]
    first = s["top_nodes"][0]
    assert first["precision"] == "fp32" and first["fused"] == ["NCHWc layout"] and first["op_type"] == "FusedConv"
    assert len(summarize_layers(profile(), top=100)["top_nodes"]) == 8


def test_precision_time_split_answers_which_layers_ran_int8():
    s = summarize_layers(profile())
    by = {p["precision"]: p["time_ms"] for p in s["by_precision"]}
    assert by["int8"] == pytest.approx(2 + 1 + 0.5) and by["fp32"] == pytest.approx(4.5 + 1 + 0.5)
    assert by["fp32->int8"] == pytest.approx(0.5)


def test_families_line_up_runtime_op_types():
    assert family_of("QLinearSoftmax") == family_of("Softmax") == "softmax"
    assert family_of("FullyConnected") == family_of("QGemm") == family_of("FusedMatMul") == "matmul"
    assert family_of("Convolution") == family_of("CaskGemmConvolution") == family_of("QLinearConv") == "conv"
    assert family_of("MultiHeadAttention") == "attention" and family_of("Reshape") is None
    f = summarize_layers(profile())["families"]
    assert f["softmax"]["nodes"] == 2 and f["softmax"]["precisions"] == {"int8": 1, "fp32": 1}
    assert f["softmax"]["op_types"] == {"QLinearSoftmax": 1, "Softmax": 1}
    assert f["softmax"]["fused_softmax_nodes"] == 1 and f["softmax"]["fused_softmax_ms"] == pytest.approx(0.5)
    assert f["matmul"]["nodes"] == 2 and f["conv"]["nodes"] == 2


def test_softmax_line_names_share_precision_and_fused_kernels():
    text = softmax_text(summarize_layers(profile()))
    assert "softmax" in text and "int8 x1" in text and "fp32 x1" in text and "fused into 1" in text
    only_conv = LayerProfile("t", "p", 1, [LayerTime(0, "c", "Conv", 1.0, "fp32")])
    assert softmax_text(summarize_layers(only_conv)) == "no softmax in the profiled graph"


def test_empty_profile_has_zero_shares_not_a_division_error():
    s = summarize_layers(LayerProfile("t", "p", 3, []))
    assert s["total_ms"] == 0 and s["by_op_type"] == [] and s["top_nodes"] == []


def test_an_interrupted_inference_does_not_move_a_node_median():
    recs = [LayerTime(it, "a", "Conv", 50.0 if it == 1 else 1.0, "fp32") for it in range(5)]
    recs += [LayerTime(it, "b", "Relu", 1.0, "fp32") for it in range(0, 5, 2)]  # ran in 3 of 5 inferences
    s = summarize_layers(LayerProfile("t", "p", 5, recs))
    by = {n["name"]: n["time_ms"] for n in s["top_nodes"]}
    assert by == {"a": 1.0, "b": 1.0}  # b: median of (1, 0, 1, 0, 1)


def test_a_profiled_total_far_above_the_measured_latency_is_said_and_measured_shares_given():
    prof = profile()
    s = summarize_layers(LayerProfile(prof.runtime, prof.profiler, prof.iterations, prof.records,
                                      wall_ms=(12.0, 11.0)), measured_ms=4.0)  # profiled total 10.5 ms
    assert s["measured_ms"] == 4.0 and s["profiled_wall_ms"] == 11.5
    assert any("2.6x the measured latency" in n and "8 nodes" in n and "took 11.500 ms (2.9x)" in n
               for n in s["notes"])
    sm = s["families"]["softmax"]
    assert sm["share_of_measured"] == pytest.approx(1.0 / 4.0) and sm["share"] == pytest.approx(1.0 / 10.5)
    assert "25.0% of the measured latency" in softmax_text(s)
    close = summarize_layers(profile(), measured_ms=9.0)
    assert close["notes"] == [] and "measured latency" not in softmax_text(close)
    assert summarize_layers(profile())["families"]["softmax"]["share_of_measured"] is None
