"""Graph passes: BatchNormalization folding (Conv / ConvTranspose / Gemm), identity removal, node counts, numerics,
the fuse / inspect commands and "what actually ran fused" read back from ONNX Runtime and OpenVINO."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.conftest import assert_clean_error, files_under


@pytest.fixture(scope="session")
def resnet18_bn(store):
    """ResNet-18 at 32x32 exported with BatchNormalization kept (legacy exporter, training=PRESERVE, no folding)."""
    from deploykit.core.config import ExportConfig
    from deploykit.export.exporter import export_model

    return export_model(ExportConfig(model="resnet18", resolution=32, models_dir=store, fold_bn=False, fuse=False))


def _bn_graph(kind: str, seed: int = 0):
    """A tiny float graph X -> Conv|ConvTranspose|Gemm -> BatchNormalization -> Relu with random parameters."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    c_in, c_out = 4, 6
    inits, nodes = [], []
    if kind == "Gemm":
        x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, c_in])
        y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, c_out])
        inits += [numpy_helper.from_array(rng.normal(size=(c_out, c_in)).astype(np.float32), "w"),
                  numpy_helper.from_array(rng.normal(size=(c_out,)).astype(np.float32), "b")]
        nodes.append(helper.make_node("Gemm", ["x", "w", "b"], ["h"], name="gemm", transB=1, alpha=0.7, beta=0.5))
    else:
        x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, c_in, 5, 5])
        y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
        if kind == "Conv":
            w = rng.normal(size=(c_out, c_in, 3, 3)).astype(np.float32)
            nodes.append(helper.make_node("Conv", ["x", "w"], ["h"], name="conv", pads=[1, 1, 1, 1]))
        else:  # ConvTranspose with groups: W is Cin x Cout/group x k x k
            w = rng.normal(size=(c_in, c_out // 2, 3, 3)).astype(np.float32)
            nodes.append(helper.make_node("ConvTranspose", ["x", "w"], ["h"], name="convt", group=2, strides=[2, 2]))
        inits.append(numpy_helper.from_array(w, "w"))
    for name, arr in (("gamma", rng.uniform(0.5, 2, c_out)), ("beta", rng.normal(size=c_out)),
                      ("mean", rng.normal(size=c_out)), ("var", rng.uniform(0.1, 3, c_out))):
        inits.append(numpy_helper.from_array(arr.astype(np.float32), name))
    nodes.append(helper.make_node("BatchNormalization", ["h", "gamma", "beta", "mean", "var"], ["n"], name="bn",
                                  epsilon=1e-3))
    nodes.append(helper.make_node("Relu", ["n"], ["y"], name="relu"))
    graph = helper.make_graph(nodes, "g", [x], [y], inits)
    return onnx.helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])


@pytest.mark.parametrize("kind", ["Conv", "ConvTranspose", "Gemm"])
def test_fold_bn_into_each_foldable_op(kind):
    from deploykit.passes.fuse import fuse_model, run_reference, seeded_feeds

    model = _bn_graph(kind)
    res = fuse_model(model, ("fold-bn",), verify=True, resolution=5)
    assert res.before["BatchNormalization"] == 1 and res.after.get("BatchNormalization", 0) == 0
    assert res.delta() == {"BatchNormalization": -1}
    assert res.verification["passed"], res.verification
    # independent check with another input: same outputs within 1e-4 relative
    feeds = seeded_feeds(model, resolution=5, seed=7)
    ref, out = run_reference(model, feeds)[0], run_reference(res.model, feeds)[0]
    assert np.max(np.abs(ref - out)) <= 1e-4 * np.max(np.abs(ref))


def test_bn_that_cannot_fold_is_kept_with_a_reason():
    import onnx
    from onnx import helper

    from deploykit.passes.fuse import fuse_model

    model = _bn_graph("Conv")
    # the conv output is also a graph output: folding would change it
    model.graph.output.append(helper.make_tensor_value_info("h", onnx.TensorProto.FLOAT, [1, 6, 5, 5]))
    res = fuse_model(model, ("fold-bn",), resolution=5)
    assert res.after["BatchNormalization"] == 1
    assert res.steps[0]["changed"] == 0 and "elsewhere" in res.steps[0]["kept"][0]["reason"]


def test_export_no_fold_keeps_bn_and_the_pass_folds_it(resnet18_bn):
    """The must-show test: a graph that still has BN, node counts before/after, numerics vs the unfused graph."""
    from deploykit.onnxio.files import load_onnx, op_histogram
    from deploykit.passes.fuse import fuse_model, run_reference, seeded_feeds

    m = resnet18_bn.manifest
    assert m["settings"]["fold_bn"] is False and "PRESERVE" in m["settings"]["exporter"]
    assert m["fusion"]["batchnorm_in_pytorch"] == 20 and m["fusion"]["batchnorm_in_exported_graph"] == 20
    proto = load_onnx(resnet18_bn.path)
    before = op_histogram(proto)
    assert before["BatchNormalization"] == 20 and before["Conv"] == 20
    res = fuse_model(proto)
    assert res.after.get("BatchNormalization", 0) == 0 and res.after["Conv"] == 20
    assert res.after.get("Identity", 0) == 0
    assert sum(res.after.values()) == sum(before.values()) - 20 - before.get("Identity", 0)
    assert res.verification["passed"] and res.verification["runs"][0]["rel_err"] <= 1e-4
    feeds = seeded_feeds(proto, seed=3)
    ref, out = run_reference(proto, feeds)[0], run_reference(res.model, feeds)[0]
    assert np.max(np.abs(ref - out)) <= 1e-4 * np.max(np.abs(ref))


def test_default_export_is_already_folded_by_torch(resnet18_64):
    f = resnet18_64.manifest["fusion"]
    assert f["batchnorm_in_pytorch"] == 20 and f["batchnorm_in_exported_graph"] == 0
    assert "folded" in f["note"]
    assert resnet18_64.manifest["onnx"]["op_histogram"].get("BatchNormalization", 0) == 0


@pytest.mark.slow
def test_export_no_fold_with_fuse_folds_in_the_exporter(tmp_path):
    from deploykit.core.config import ExportConfig
    from deploykit.export.exporter import export_model
    from deploykit.passes.fuse import export_transform

    res = export_model(ExportConfig(model="resnet18", resolution=32, models_dir=tmp_path, fold_bn=False), fuse=export_transform)
    f = res.manifest["fusion"]
    assert f["batchnorm_in_exported_graph"] == 20 and f["batchnorm_in_graph_after_passes"] == 0
    assert res.manifest["onnx"]["op_histogram"].get("BatchNormalization", 0) == 0
    assert res.manifest["verification"]["passed"]


def test_fuse_cli_writes_the_fused_file_with_counts(resnet18_bn, tmp_path, cli_runner):
    from deploykit.cli import cli
    from deploykit.onnxio.files import load_onnx, op_histogram

    out = tmp_path / "fused.onnx"
    r = cli_runner.invoke(cli, ["fuse", str(resnet18_bn.path), "-o", str(out), "--json"])
    assert r.exit_code == 0, r.stderr
    s = json.loads(r.stdout)
    assert s["batchnorm_before"] == 20 and s["batchnorm_after"] == 0
    assert s["delta"]["BatchNormalization"] == -20
    assert s["verification"]["passed"]
    assert op_histogram(load_onnx(out)).get("BatchNormalization", 0) == 0


def test_fuse_cli_errors_are_clean(tmp_path, cli_runner):
    from deploykit.cli import cli

    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not an onnx file")
    r = cli_runner.invoke(cli, ["fuse", str(bad), "-o", str(tmp_path / "out.onnx")])
    assert_clean_error(r, 2)
    r = cli_runner.invoke(cli, ["fuse", str(tmp_path / "missing.onnx")])
    assert_clean_error(r, 2, "missing.onnx")
    r = cli_runner.invoke(cli, ["fuse", str(bad), "--pass", "nope"])
    assert r.exit_code == 2 and "Traceback" not in r.stderr
    assert [p.name for p in files_under(tmp_path)] == ["bad.onnx"]


def test_inspect_reports_histogram_params_macs_and_runtime_fusion(resnet18_64, cli_runner):
    from deploykit.cli import cli

    r = cli_runner.invoke(cli, ["inspect", str(resnet18_64.path), "--runtime", "ort", "--runtime", "openvino",
                                "--json"])
    assert r.exit_code == 0, r.stderr
    info = json.loads(r.stdout)
    assert info["op_histogram"]["Conv"] == 20 and info["inputs"][0]["shape"] == [1, 3, 64, 64]
    assert 11_600_000 < info["params"]["count"] < 11_750_000  # resnet18: 11.69 M parameters
    # resnet18 at 224 is 1.82 GMACs; at 64 the spatial work scales by (64/224)^2 (+ the fixed fc)
    assert 0.13e9 < info["macs"] < 0.17e9 and info["flops"] == 2 * info["macs"]
    assert info["fusion"]["batchnorm"] == 0 and info["fusion"]["activations"]["Relu"] == 17
    assert info["quantization"]["dequantize_linear"] == 0
    ort = info["runtime"]["ort"]
    assert ort["convs_with_fused_activation"] >= 17 - 8  # ReLUs after a residual Add fuse differently
    assert "Relu" not in ort["standalone_activations"] or ort["standalone_activations"]["Relu"] < 17
    ov = info["runtime"]["openvino"]
    assert ov["layers_with_fused_activation"] > 0


def test_inspect_text_output(resnet18_bn, cli_runner):
    from deploykit.cli import cli

    r = cli_runner.invoke(cli, ["inspect", str(resnet18_bn.path)])
    assert r.exit_code == 0, r.stderr
    assert "BatchNormalization: 20 (20 foldable" in r.stdout and "MACs" in r.stdout
