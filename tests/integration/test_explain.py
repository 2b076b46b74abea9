"""deploykit explain and --softmax auto on real runtimes: DeiT-Tiny (and ResNet-18) at 64 px, fp32 vs int8, profiled
per layer by ONNX Runtime and OpenVINO and mapped back to the float ONNX graph."""

from __future__ import annotations

import json
from dataclasses import replace

import onnx
import pytest

from deploykit.bench.layermap import SourceGraph, map_profile
from deploykit.bench.layers import summarize_layers
from deploykit.core.config import QuantizeConfig
from deploykit.explain.diff import BUCKETS, explain
from deploykit.explain.fallback import fallback_candidates
from deploykit.passes.attention import find_attention
from deploykit.runtimes.base import get_runtime
from deploykit.runtimes.options import RuntimeOptions
from deploykit.spec.run import RunSpec
from tests.conftest import assert_clean_error, run_cli

RECIPE = QuantizeConfig(calib_data="synthetic", calib_size=8, fidelity_samples=4)
OV = get_runtime("openvino").availability().available


def specs(model="deit_tiny", target="ort", **q):
    opts = RuntimeOptions(threads=1)
    fp32 = RunSpec(model=model, target=target, precision="fp32", resolution=64, options=opts)
    int8 = RunSpec(model=model, target=target, precision="int8", resolution=64, options=opts,
                   quantize=replace(RECIPE, **q))
    return fp32, int8


def softmax_nodes(path) -> set[str]:
    return {s.softmax for s in find_attention(onnx.load(str(path), load_external_data=False))}


@pytest.fixture(scope="module")
def ort_pair(deit_tiny_64, store):
    fp32, int8 = specs()
    return fp32, int8, explain(fp32, int8, iterations=4, models_dir=store)


def test_buckets_add_up_to_the_profiled_totals(ort_pair):
    _, _, e = ort_pair
    assert set(e.buckets) == set(BUCKETS)
    assert sum(e.buckets.values()) == pytest.approx(e.b.total_ms - e.a.total_ms, abs=1e-9)
    for side in (e.a, e.b):
        assert side.total_ms == pytest.approx(sum(r["time_ms"] for r in side.executed), abs=1e-9)
        assert side.total_ms > 0
    # per source node, the bucket it was put in is where its delta went
    j = e.to_json()
    per_bucket = {k: 0.0 for k in BUCKETS}
    for n in j["nodes"]:
        per_bucket[n["bucket"]] += n["delta_ms"]
    for k in ("int8_layers", "float_layers", "fusion"):
        assert per_bucket[k] == pytest.approx(e.buckets[k], abs=1e-9)
    json.dumps(j)  # plain JSON
    assert e.buckets["qdq"] > 0  # the int8 graph keeps Q/DQ nodes the fp32 graph has none of


def test_the_per_node_times_are_the_reports(deit_tiny_64, store):
    """explain's totals are those of bench --per-layer's section for the same profile."""
    from deploykit.bench.pipeline import model_input, prepare_model
    from deploykit.onnxio.reference import make_input

    fp32, _ = specs()
    _, rt, model = prepare_model(fp32.model, "ort", fp32.runtime_options(), batch=1, resolution=64,
                                 export=fp32.export_config(store))
    prof = rt.profile_layers(model_input(model), make_input(model.input_shape), 3)
    rows = map_profile(prof, SourceGraph.load(model.path))
    assert sum(r["time_ms"] for r in rows) == pytest.approx(summarize_layers(prof)["total_ms"], abs=1e-9)
    assert prof.graph and {r["kind"] for r in rows} <= {"layer", "reformat", "qdq", "unmapped"}


def test_ort_qlinear_softmax_maps_to_the_source_softmax_nodes(ort_pair):
    _, _, e = ort_pair
    source = softmax_nodes(e.source_graph)
    assert len(source) == 12  # DeiT-Tiny's 12 blocks
    qsm = [r for r in e.b.executed if r["op_type"] == "QLinearSoftmax"]
    assert len(qsm) == 12 and {r["source"] for r in qsm} == source
    assert all(r["precision"] == "int8" for r in qsm)
    fsm = [r for r in e.a.executed if r["op_type"] == "Softmax"]
    assert {r["source"] for r in fsm} == source
    rows = {n["node"]: n for n in e.nodes}
    for s in source:
        assert rows[s]["op_type"] == "Softmax" and rows[s]["ran_a"] == "float" and rows[s]["ran_b"] == "int8"
        assert rows[s]["bucket"] == "int8_layers"
    assert not [r for r in e.b.executed if r["kind"] == "unmapped" and r["op_type"].startswith("QLinear")]
    assert "QLinearSoftmax" in e._ran_as("Softmax", "b")


def test_slower_in_int8_names_nodes_that_exclude_really_leaves_float(ort_pair, store):
    fp32, int8, e = ort_pair
    assert e.int8_side() == "b"
    every = e.slower_in_int8(min_ms=float("-inf"), min_ratio=0.0)  # every node that ran int8 here, float there
    assert set(e.slower_in_int8()) <= set(every)
    assert softmax_nodes(e.source_graph) <= set(every)
    for n in e.slower_in_int8():  # each really measured slower in int8, Q/DQ included
        row = next(r for r in e.nodes if e.exclude_name(r["node"]) == n)
        assert row["b_ms"] + row["b_qdq_ms"] > row["a_ms"]
    # a MatMul + Add the quantizer's pre-processing fused into a Gemm is excluded under that node's name
    fused = [n for n in every if "/" in n]
    assert fused and all(n in e.excludable and n.split("/")[0] in {r["node"] for r in e.nodes} for n in fused)
    chosen = tuple(sorted(softmax_nodes(e.source_graph)))[:3] + tuple(
        n for n in every if n not in softmax_nodes(e.source_graph))[:1] + tuple(fused[:1])
    rebuilt = replace(int8, quantize=replace(int8.quantize, exclude=chosen))
    e2 = explain(fp32, rebuilt, iterations=2, models_dir=store)
    rows = {n["node"]: n for n in e2.nodes}
    for n in (c.split("/")[0] for c in chosen):
        assert rows[n]["ran_b"] == "float", rows[n]
        assert not any(op.startswith(("QLinear", "QGemm")) for op in rows[n]["b_ops"]), rows[n]
    assert e2.b.artifact != e.b.artifact  # a different int8 build (the exclusions are part of its name)


def test_fallback_candidates_start_with_the_slow_nodes(ort_pair, store):
    fp32, int8, e = ort_pair
    slow = e.slower_in_int8()
    cands = fallback_candidates(int8, fp32, e, sensitivity=None, models_dir=store)
    assert cands, "the sensitivity ranking adds candidates"
    if slow:
        assert cands[0] == slow
    for prev, nxt in zip(cands, cands[1:]):  # each holds the one before
        assert set(prev) < set(nxt)
    for c in cands:
        QuantizeConfig(exclude=c)
        assert set(c) <= e.excludable
    assert fallback_candidates(int8, fp32, e, sensitivity=()) == ([slow] if slow else [])


def test_explain_cli_prints_the_table_and_json(deit_tiny_64, store):
    args = ["explain", "deit_tiny", "--resolution", "64", "--threads", "1", "--calib-size", "8",
            "--iterations", "3", "--models-dir", str(store), "--top", "5"]
    p = run_cli(*args)
    assert p.returncode == 0, p.stderr
    assert "A = fp32 (ort), B = int8 (ort)" in p.stdout
    # every bucket is printed whatever its size; the op-type table shows the 8 largest gaps, which timing decides
    assert "Q/DQ (QuantizeLinear / DequantizeLinear)" in p.stdout and "by op type of the float graph" in p.stdout
    assert " is slower by " in p.stdout
    p = run_cli(*args, "--json")
    assert p.returncode == 0, p.stderr
    j = json.loads(p.stdout)
    assert sum(j["buckets"].values()) == pytest.approx(j["delta_ms"], abs=1e-9)
    softmax = [n for n in j["nodes"] if n["op_type"] == "Softmax"]  # what ran: a fact of the graph, not of timing
    assert len(softmax) == 12 and all(n["b_ops"] == {"QLinearSoftmax": 1} and n["ran_b"] == "int8" for n in softmax)
    assert j["a"]["spec"]["precision"] == "fp32" and j["b"]["spec"]["precision"] == "int8"


@pytest.mark.slow
def test_explain_cli_user_errors_are_one_line(tmp_path):
    assert_clean_error(run_cli("explain", "deit_tiny", "--a", "precision"), 2, "--a 'precision'", "KEY=VALUE")
    assert_clean_error(run_cli("explain", "deit_tiny", "--b", "nosuchkey=1"), 2, "nosuchkey")
    assert_clean_error(run_cli("explain", "deit_tiny", "--a", "precision=int8", "--b", "precision=int8"), 2,
                       "same run")
    assert_clean_error(run_cli("explain", str(tmp_path / "missing.json")), 2, "missing.json")
    assert_clean_error(run_cli("explain", "no_such_model"), 2, "no_such_model")
    assert_clean_error(run_cli("explain", "deit_tiny", "-t", "nosuchtarget"), 2, "nosuchtarget")


@pytest.mark.skipif(not OV, reason="OpenVINO is not installed here")
def test_openvino_maps_through_original_layer_names(deit_tiny_64, store):
    fp32, int8 = specs(target="openvino")
    e = explain(fp32, int8, iterations=3, models_dir=store)
    assert sum(e.buckets.values()) == pytest.approx(e.delta_ms, abs=1e-9)
    assert any(r["how"] == "origins" for r in e.a.executed)
    source = softmax_nodes(e.source_graph)
    rows = {n["node"]: n for n in e.nodes}
    # OpenVINO keeps the softmax in float in the int8 file (or fuses it into its attention kernel): never int8
    assert all(rows[s]["ran_b"] in ("float", "fused") for s in source if s in rows)
    assert not set(e.slower_in_int8()) & source


def test_softmax_auto_decides_by_measurement_and_reuses_the_decision(deit_tiny_64, store):
    from deploykit.bench.pipeline import resolve_softmax
    from deploykit.export import artifacts

    fp32, int8 = specs(softmax="auto")
    kw = dict(batch=1, resolution=64, export=int8.export_config(store))
    cfg, rec = resolve_softmax("deit_tiny", "ort", int8.runtime_options(), int8.quantize, **kw)
    assert rec["decision"] in ("int8", "float") and cfg.softmax == rec["decision"]
    assert rec["cached"] is False
    i, f = rec["int8"], rec["float"]
    assert i["softmax_ops"] == ["QLinearSoftmax"] and f["softmax_ops"] == ["Softmax"]
    assert rec["decision"] == ("int8" if i["cost_ms"] < f["cost_ms"] else "float")
    chosen = i["artifact"] if rec["decision"] == "int8" else f["artifact"]
    assert artifacts.read_manifest(chosen)["quantization"]["softmax_auto"]["decision"] == rec["decision"]
    cfg2, rec2 = resolve_softmax("deit_tiny", "ort", int8.runtime_options(), int8.quantize, **kw)
    assert rec2["cached"] is True and rec2["decision"] == rec["decision"] and cfg2 == cfg
    assert rec2["int8"]["cost_ms"] == i["cost_ms"]  # the numbers of the first measurement, not new ones
    # through the run spec (bench --softmax auto): the artifact that runs is the decided one
    from deploykit.bench.pipeline import prepare_model

    _, _, model = prepare_model("deit_tiny", "ort", int8.runtime_options(), int8=int8.quantize, planned=True, **kw)
    assert str(model.path) == chosen


def test_softmax_auto_is_the_default_without_attention(resnet18_64, store):
    from deploykit.bench.pipeline import resolve_softmax

    _, int8 = specs(model="resnet18", softmax="auto")
    cfg, rec = resolve_softmax("resnet18", "ort", int8.runtime_options(), int8.quantize, batch=1, resolution=64,
                               export=int8.export_config(store))
    assert cfg.softmax is None and rec["decision"] is None and "attention" in rec["reason"]


def test_quantize_softmax_auto_needs_a_target_it_can_measure_on(tmp_path):
    from deploykit.core.errors import UsageError
    from deploykit.quantize.pipeline import quantize_model

    with pytest.raises(UsageError, match="auto"):
        quantize_model("deit_tiny", replace(RECIPE, softmax="auto"), models_dir=tmp_path)


def test_explain_takes_two_onnx_files_and_two_spec_files(ort_pair, store, tmp_path):
    from deploykit.spec.run import write_spec

    fp32, int8, e = ort_pair
    p = run_cli("explain", e.a.artifact, e.b.artifact, "--threads", "1", "--iterations", "2", "--json")
    assert p.returncode == 0, p.stderr
    j = json.loads(p.stdout)
    assert j["a"]["int8"] is False and j["b"]["int8"] is True  # the int8 file is recognised by its graph
    assert j["source_graph"] == e.source_graph  # the float file itself
    assert sum(j["buckets"].values()) == pytest.approx(j["delta_ms"], abs=1e-9)
    assert any(n["op_type"] == "Softmax" and n["ran_b"] == "int8" for n in j["nodes"])
    a_file, b_file = write_spec(fp32, tmp_path / "a.json"), write_spec(int8, tmp_path / "b.json")
    p = run_cli("explain", str(a_file), str(b_file), "--iterations", "2", "--models-dir", str(store), "--json")
    assert p.returncode == 0, p.stderr
    j = json.loads(p.stdout)
    assert j["a"]["spec"] == fp32.to_dict() and j["b"]["spec"] == int8.to_dict()
    assert j["b"]["artifact"] == e.b.artifact  # the same cached int8 build
