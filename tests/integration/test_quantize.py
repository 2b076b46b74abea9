"""int8 post-training quantization with real components: ONNX Runtime QDQ files (and NNCF IR) of ResNet-18 and
DeiT-Tiny at 64x64, calibrated on generated images, run in ONNX Runtime and OpenVINO and compared with fp32.

Floors (quantize/floors.py): min cosine >= 0.98 and max-abs <= 0.25 of the fp32 output range on held-out inputs.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import assert_clean_error, files_under

FLOOR_COSINE = 0.98


@pytest.fixture(scope="session")
def shapes_dir(tmp_path_factory) -> Path:
    """A few generated, labelled 64x64 RGB images (benchmarks/accuracy/data.py): calib/ and test/ splits."""
    from benchmarks.accuracy.data import generate

    return generate(tmp_path_factory.mktemp("shapes"), {"train": 0, "calib": 24, "test": 20}, size=64)


@pytest.fixture(scope="session")
def resnet18_int8(resnet18_64, shapes_dir, store):
    from deploykit.core.config import QuantizeConfig
    from deploykit.quantize.pipeline import quantize_model

    q = QuantizeConfig(calib_data=str(shapes_dir / "calib"), calib_size=16, eval_data=str(shapes_dir / "test"),
                       check_openvino=True, sensitivity=True, fidelity_samples=8)
    return quantize_model(str(resnet18_64.path), q, models_dir=store)


@pytest.fixture(scope="session")
def deit_int8(deit_tiny_64, shapes_dir, store):
    from deploykit.core.config import QuantizeConfig
    from deploykit.quantize.pipeline import quantize_model

    q = QuantizeConfig(calib_data=str(shapes_dir / "calib"), calib_size=16, check_openvino=True, fidelity_samples=8)
    return quantize_model(str(deit_tiny_64.path), q, models_dir=store)


def _images(shapes_dir, n=8, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225)):
    from deploykit.quantize.calib import Preprocess, load_images

    return load_images(shapes_dir / "test", Preprocess(resolution=64, mean=mean, std=std), n, seed=5).x


def _ort(path, x):
    import onnxruntime as ort

    s = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return np.concatenate([s.run(None, {s.get_inputs()[0].name: x[i:i + 1]})[0] for i in range(len(x))])


def _openvino(path, x):
    import openvino as ov

    c = ov.Core().compile_model(str(path), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    return np.concatenate([c(x[i:i + 1])[0] for i in range(len(x))])


def _min_cosine(a, b):
    a, b = a.reshape(len(a), -1).astype(np.float64), b.reshape(len(b), -1).astype(np.float64)
    return float(np.min(np.sum(a * b, 1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))))


def _rel(a, b):
    return float(np.max(np.abs(a - b)) / np.max(np.abs(a)))


# ---- ResNet-18 ---------------------------------------------------------------------------------------------

def test_resnet18_qdq_artifact_and_manifest(resnet18_int8, resnet18_64):
    from deploykit.export.artifacts import read_manifest
    from deploykit.onnxio.files import load_onnx, op_histogram

    r = resnet18_int8
    assert r.path.name.startswith("int8_b1_r64_op18_ort-cpu") and r.path.suffix == ".onnx"
    m = read_manifest(r.path)
    assert m == r.manifest and m["settings"]["precision"] == "int8"
    assert m["source"]["fp32_sha256"] == resnet18_64.manifest["sha256"]
    assert m["settings"]["calibration"]["size"] == 16 and m["settings"]["calibration"]["data"] == "folder"
    hist = op_histogram(load_onnx(r.path))
    assert hist["QuantizeLinear"] > 20 and hist["DequantizeLinear"] > 40 and hist["Conv"] == 20
    assert hist.get("Relu", 0) == 0  # every ReLU disappeared into the conv's quantized output range
    assert r.report["activations_absorbed"]["Relu"]["absorbed_into_quantized_range"] == 17
    q = r.report["qdq"]
    assert q["per_channel_weights"] >= 20 and q["quantized_weight_tensors"] >= 21


def test_resnet18_int8_runs_in_ort_and_openvino_above_the_floors(resnet18_int8, resnet18_64, shapes_dir):
    f = resnet18_int8.report["fidelity"]
    assert f["passed"] and f["cosine"] >= FLOOR_COSINE and f["samples"] == 8
    assert resnet18_int8.report["openvino"]["passed"]
    # independently, on other images: ONNX Runtime and OpenVINO both run the same QDQ file
    x = _images(shapes_dir)
    ref = _ort(resnet18_64.path, x)
    for out in (_ort(resnet18_int8.path, x), _openvino(resnet18_int8.path, x)):
        assert _min_cosine(ref, out) >= FLOOR_COSINE and _rel(ref, out) <= 0.25
        assert 0 < np.max(np.abs(ref - out))  # really quantized, not the float model
    rt = resnet18_int8.report["runtime"]["onnxruntime"]
    assert rt["int8_kernels"]["QLinearConv"] == 20


def test_resnet18_accuracy_and_sensitivity(resnet18_int8):
    acc = resnet18_int8.report["accuracy"]
    assert acc["images"] == 20 and acc["classes"] == 10
    assert set(acc["fp32"]) >= {"top1", "top5"} and 0 <= acc["int8"]["top1"] <= 1
    sens = resnet18_int8.report["sensitivity"]
    assert len(sens) > 40 and {r["kind"] for r in sens} >= {"activation", "weight"}
    dbs = [r["sqnr_db"] for r in sens if r["sqnr_db"] is not None]
    assert dbs == sorted(dbs) and dbs[0] < dbs[-1]  # worst first
    assert all(r["consumers"] for r in sens)


def test_same_settings_reuse_the_int8_artifact(resnet18_int8, resnet18_64, shapes_dir, store):
    from deploykit.core.config import QuantizeConfig
    from deploykit.quantize.pipeline import quantize_model

    q = QuantizeConfig(calib_data=str(shapes_dir / "calib"), calib_size=16, eval_data=str(shapes_dir / "test"),
                       check_openvino=True, fidelity_samples=8)
    again = quantize_model(str(resnet18_64.path), q, models_dir=store)
    assert again.reused and again.path == resnet18_int8.path
    assert "accuracy" in again.report  # evaluated again for the data given this time


def test_nncf_resnet18_for_openvino(resnet18_64, shapes_dir, tmp_path):
    from deploykit.core.config import QuantizeConfig
    from deploykit.quantize.pipeline import quantize_model

    q = QuantizeConfig(calib_data=str(shapes_dir / "calib"), calib_size=8, quantizer="nncf", fidelity_samples=8)
    r = quantize_model(str(resnet18_64.path), q, models_dir=tmp_path)
    assert r.path.suffix == ".xml" and r.path.with_suffix(".bin").is_file()
    assert r.report["nncf"]["fake_quantize"] > 20 and r.report["fidelity"]["passed"]
    x = _images(shapes_dir)
    ref, out = _ort(resnet18_64.path, x), _openvino(r.path, x)
    assert _min_cosine(ref, out) >= FLOOR_COSINE
    assert r.report["runtime"]["openvino"]["int8_layers"].get("Convolution", 0) >= 19


# ---- DeiT-Tiny and the int8 softmax -------------------------------------------------------------------------

def test_deit_int8_softmax_in_graph_and_run_as_qlinearsoftmax(deit_int8):
    import onnx

    from deploykit.passes.graph import GraphView
    from deploykit.runtimes.base import read_runtime_graph

    r = deit_int8
    assert r.manifest["settings"]["softmax"] == "int8" and "smint8" in r.path.name
    model = onnx.load(str(r.path))
    view = GraphView(model)
    softmaxes = [n for n in model.graph.node if n.op_type == "Softmax"]
    assert len(softmaxes) == 12
    for sm in softmaxes:
        # Q/DQ on the input, and the output quantized with the FIXED scale 1/255, zero point 0 (uint8)
        assert view.producer[sm.input[0]].op_type == "DequantizeLinear"
        (q,) = view.consumers[sm.output[0]]
        assert q.op_type == "QuantizeLinear"
        assert float(view.constant(q.input[1])) == pytest.approx(1 / 255)
        zp = view.constant(q.input[2])
        assert zp.dtype == np.uint8 and int(zp) == 0
    # what ONNX Runtime actually runs, read back from its optimized graph
    rt = read_runtime_graph("ort", r.path)
    assert rt["softmax"] == {"int8": 12, "float": 0}
    assert rt["int8_kernels"]["QLinearSoftmax"] == 12 and rt["int8_kernels"]["QLinearMatMul"] == 24
    sm = r.report["softmax"]
    assert sm["qlinear_softmax_pattern"] == 12 and sm["tensorrt_mha_pattern"] == 12


def test_deit_int8_error_per_attention_block(deit_int8):
    blocks = deit_int8.report["softmax"]["blocks"]
    assert len(blocks) == 12
    for b in blocks:
        e = b["error"]
        assert e["scale"] == pytest.approx(1 / 255)
        assert 0 < e["probs_max_abs"] <= 0.5 / 255 + 1e-6  # rounding: at most half a step
        assert e["probs_sqnr_db"] > 20 and e["attn_sqnr_db"] > 20 and 0 <= e["zeroed_fraction"] < 1


def test_deit_int8_runs_in_ort_and_openvino_above_the_floors(deit_int8, deit_tiny_64, shapes_dir):
    assert deit_int8.report["fidelity"]["passed"] and deit_int8.report["openvino"]["passed"]
    x = _images(shapes_dir)
    ref = _ort(deit_tiny_64.path, x)
    for out in (_ort(deit_int8.path, x), _openvino(deit_int8.path, x)):
        assert _min_cosine(ref, out) >= FLOOR_COSINE and _rel(ref, out) <= 0.25


def test_deit_softmax_float_keeps_probabilities_float(deit_tiny_64, shapes_dir, tmp_path):
    from deploykit.core.config import QuantizeConfig
    from deploykit.runtimes.base import read_runtime_graph
    from deploykit.quantize.pipeline import quantize_model

    q = QuantizeConfig(calib_data=str(shapes_dir / "calib"), calib_size=8, softmax="float", fidelity_samples=4)
    r = quantize_model(str(deit_tiny_64.path), q, models_dir=tmp_path)
    assert "smfloat" in r.path.name and r.report["fidelity"]["passed"]
    rt = read_runtime_graph("ort", r.path)
    assert rt["softmax"] == {"int8": 0, "float": 12}
    assert rt["int8_kernels"]["QLinearMatMul"] == 12  # Q x K^T only; probabilities x V stays float
    assert all(b["error"] is None for b in r.report["softmax"]["blocks"])


# ---- bench --int8 ----------------------------------------------------------------------------------------

def test_bench_int8_reports_what_ran_in_int8(deit_tiny_64, tmp_path, cli_runner):
    from deploykit.cli import cli
    from deploykit.report.schema import validate

    r = cli_runner.invoke(cli, ["bench", str(deit_tiny_64.path), "--int8", "--calib-data", "synthetic",
                                "--calib-size", "4", "--models-dir", str(tmp_path / "m"), "--report-dir",
                                str(tmp_path / "r"), "--warmup", "1", "--min-iters", "3", "--min-time", "0",
                                "--json"])
    assert r.exit_code == 0, r.stderr
    (rep,) = json.loads(r.stdout)
    validate(rep)
    assert rep["target"]["precision"] == "int8" and rep["fidelity"]["passed"]
    assert rep["fidelity"]["tolerance"]["min_cosine"] == FLOOR_COSINE
    q = rep["quantization"]
    assert q["softmax"] == "int8" and q["softmax_kernels_ran"] == {"int8": 12, "float": 0}
    assert q["int8_kernels_ran"]["QLinearSoftmax"] == 12
    assert "synthetic" in r.stderr  # the smoke-test warning
    md = next((tmp_path / "r").glob("*.md")).read_text()
    assert "softmax ran as int8 in 12 of 12" in md


def test_bench_int8_needs_calibration_data(resnet18_64, cli_runner, tmp_path):
    from deploykit.cli import cli

    r = cli_runner.invoke(cli, ["bench", str(resnet18_64.path), "--int8", "--report-dir", str(tmp_path)])
    assert_clean_error(r, 2, "--calib-data")
    assert files_under(tmp_path) == []


# ---- calibration folder errors ---------------------------------------------------------------------------

def _save(path: Path, mode: str, size=(40, 30)):
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size).save(path)


@pytest.mark.parametrize("case,needle", [
    ("missing", "not found"),
    ("empty", "empty"),
    ("non_images", "no images"),
    ("grayscale", "grayscale"),
    ("rgba", "alpha"),
    ("corrupt", "cannot read image"),
])
def test_calibration_folder_errors_are_clean(case, needle, resnet18_64, tmp_path, cli_runner):
    from deploykit.cli import cli

    d = tmp_path / "calib"
    if case != "missing":
        d.mkdir()
    if case == "non_images":
        (d / "notes.txt").write_text("hello")
        (d / "labels.csv").write_text("a,b")
    if case in ("grayscale", "rgba", "corrupt"):
        _save(d / "a" / "ok.png", "RGB")
    if case == "grayscale":
        _save(d / "b" / "gray.png", "L")
    if case == "rgba":
        _save(d / "b" / "alpha.png", "RGBA")
    if case == "corrupt":
        (d / "b").mkdir()
        (d / "b" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not really a jpeg")
    models = tmp_path / "models"
    r = cli_runner.invoke(cli, ["quantize", str(resnet18_64.path), "--calib-data", str(d), "--models-dir", str(models)])
    assert_clean_error(r, 2, needle, alone=False)  # after the stage line "reading calibration data" (a log)
    assert files_under(models) == []


def test_wrong_channels_for_a_one_channel_model(tmp_path, cli_runner):
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from deploykit.cli import cli

    w = numpy_helper.from_array(np.ones((2, 1, 3, 3), np.float32), "w")
    g = helper.make_graph([helper.make_node("Conv", ["x", "w"], ["y"], name="c")], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 16, 16])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2, 14, 14])], [w])
    path = tmp_path / "gray_model.onnx"
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)]), path)
    _save(tmp_path / "calib" / "c.png", "RGB")
    models = tmp_path / "models"
    r = cli_runner.invoke(cli, ["quantize", str(path), "--calib-data", str(tmp_path / "calib"),
                                "--models-dir", str(models)])
    assert_clean_error(r, 2, "1-channel", alone=False)
    assert files_under(models) == []


def test_quantize_usage_errors(resnet18_64, tmp_path, cli_runner):
    from deploykit.cli import cli

    base = ["quantize", str(resnet18_64.path), "--models-dir", str(tmp_path)]
    assert_clean_error(cli_runner.invoke(cli, base), 2, "--calib-data")
    assert_clean_error(cli_runner.invoke(cli, base + ["--calib-data", "synthetic", "--exclude", "NoSuchNode"]), 2,
                       "--exclude", alone=False)
    assert_clean_error(cli_runner.invoke(cli, base + ["--calib-data", "synthetic", "--quantizer", "nncf",
                                                      "--calib-method", "entropy"]), 2, "entropy")
    assert [p for p in files_under(tmp_path) if "int8" in p.name] == []


def test_synthetic_calibration_warns(resnet18_64, tmp_path, cli_runner):
    from deploykit.cli import cli

    r = cli_runner.invoke(cli, ["quantize", str(resnet18_64.path), "--calib-data", "synthetic", "--calib-size", "4",
                                "--fidelity-samples", "4", "--models-dir", str(tmp_path), "--json"])
    assert r.exit_code == 0, r.stderr
    assert "warning:" in r.stderr and "smoke test" in r.stderr
    out = json.loads(r.stdout)
    assert out["manifest"]["settings"]["calibration"]["data"] == "synthetic"
    assert Path(out["path"]).is_file()


# ---- pure logic ------------------------------------------------------------------------------------------

def test_preprocess_resizes_crops_and_normalises(tmp_path):
    from PIL import Image

    from deploykit.quantize.calib import Preprocess, load_image

    arr = np.zeros((40, 80, 3), np.uint8)
    arr[:, 20:60] = 255  # a white band in the middle of a wide image
    Image.fromarray(arr).save(tmp_path / "a.png")
    pp = Preprocess(resolution=16, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), crop_pct=1.0)
    x = load_image(tmp_path / "a.png", pp)
    assert x.shape == (3, 16, 16) and x.dtype == np.float32
    # shorter side 40 -> 16, width 80 -> 32, centre crop keeps columns 8..24 of the resized band (8..24): white
    assert np.allclose(x[:, :, 2:14], 1.0, atol=1e-3)


def test_quantize_config_validation():
    from deploykit.core.config import QuantizeConfig
    from deploykit.core.errors import UsageError

    for bad in ({"calib_method": "kl"}, {"quantizer": "tf"}, {"softmax": "int4"}, {"profile": "gpu"},
                {"calib_size": 0}, {"crop_pct": 1.5}, {"quantizer": "nncf", "calib_method": "entropy"}):
        with pytest.raises(UsageError):
            QuantizeConfig(**bad)


def test_reduce_range_auto_follows_the_cpu():
    from deploykit.quantize.ort_qdq import cpu_flags, resolve_reduce_range

    assert resolve_reduce_range(True)[0] is True and resolve_reduce_range(False)[0] is False
    auto, why = resolve_reduce_range(None)
    has_vnni = bool(cpu_flags() & {"avx512_vnni", "avx_vnni", "amx_int8"})
    import platform

    if platform.machine() in ("x86_64", "AMD64"):
        assert auto is (not has_vnni) and "auto" in why


def test_a_concat_only_float_ops_use_stays_float():
    """float_concats: a Concat whose every consumer stays float (here a Mul, not a quantized op type) gets no
    Q/DQ of its own, nor does a Concat feeding only such a Concat; one with a quantized consumer (Conv) and
    the graph's output Concat keep the default."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from deploykit.models.traits import CNN
    from deploykit.quantize.ort_qdq import float_concats

    w = numpy_helper.from_array(np.ones((4, 4, 1, 1), np.float32), "w")
    k = numpy_helper.from_array(np.ones((1, 4, 1, 1), np.float32), "k")
    nodes = [
        helper.make_node("Concat", ["a", "b"], ["c1"], axis=1, name="to_conv"),
        helper.make_node("Conv", ["c1", "w"], ["y1"], name="conv"),
        helper.make_node("Concat", ["a", "b"], ["c2"], axis=1, name="to_mul"),
        helper.make_node("Mul", ["c2", "k"], ["y2"], name="mul"),
        helper.make_node("Concat", ["a", "b"], ["c3"], axis=1, name="inner"),
        helper.make_node("Concat", ["c3"], ["c4"], axis=1, name="outer"),
        helper.make_node("Mul", ["c4", "k"], ["y3"], name="mul2"),
        helper.make_node("Concat", ["y1", "y2", "y3"], ["out"], axis=1, name="last"),
    ]
    vi = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, 2, 4, 4]) for n in ("a", "b")]
    graph = helper.make_graph(nodes, "g", vi, [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 12, 4, 4])],
                              [w, k])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    onnx.checker.check_model(model)
    assert float_concats(model, CNN.op_types, []) == ["inner", "outer", "to_mul"]
    # a user exclusion makes the consumer float too: the Concat feeding it follows
    assert "to_conv" in float_concats(model, CNN.op_types, ["conv"])
    # where Mul is quantized, nothing changes
    assert float_concats(model, CNN.op_types + ("Mul",), []) == []


def test_fake_quantize_and_bench_int8_floor():
    from deploykit.bench.fidelity import TOLERANCES
    from deploykit.quantize.softmax import fake_quantize

    p = np.array([0.0, 0.001, 0.002, 0.5, 1.0], np.float32)
    q = fake_quantize(p, 1 / 255, 0, "uint8")
    assert q[0] == 0 and q[1] == 0 and q[2] == pytest.approx(1 / 255) and q[-1] == pytest.approx(1.0)
    assert np.max(np.abs(q - p)) <= 0.5 / 255 + 1e-7
    assert TOLERANCES["int8"] is not None and TOLERANCES["int8"].min_cosine == FLOOR_COSINE


def test_trt_profile_is_symmetric_int8_and_runs_in_ort_and_openvino(resnet18_64, shapes_dir, tmp_path):
    """--profile trt: signed int8, zero points 0 (TensorRT explicit quantization); ORT and OpenVINO run it too."""
    from deploykit.core.config import QuantizeConfig
    from deploykit.quantize.pipeline import quantize_model

    q = QuantizeConfig(calib_data=str(shapes_dir / "calib"), calib_size=8, profile="trt", fidelity_samples=4)
    r = quantize_model(str(resnet18_64.path), q, models_dir=tmp_path)
    s = r.report["qdq"]
    assert s["tensorrt_compatible"] and s["nonzero_zero_points"] == 0 and "uint8" not in s["types"]
    assert r.manifest["settings"]["reduce_range"] is False  # TensorRT uses the full int8 range
    x = _images(shapes_dir, n=4)
    ref = _ort(resnet18_64.path, x)
    for out in (_ort(r.path, x), _openvino(r.path, x)):
        assert _min_cosine(ref, out) >= FLOOR_COSINE
