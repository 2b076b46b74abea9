"""What a runtime really runs, read back from the runtime (``Runtime.runtime_graph``), through `deploykit inspect
--runtime NAME` and the runtime classes: real ONNX files, real ONNX Runtime / OpenVINO sessions."""

from __future__ import annotations

import json

import pytest

from deploykit.cli import cli
from deploykit.runtimes.base import TARGETS, get_runtime, read_runtime_graph
from deploykit.runtimes.options import RuntimeOptions
from tests.conftest import assert_clean_error

ORT_KEYS = {"runtime", "graph_optimization", "nodes", "op_histogram", "float_convs", "convs_with_fused_activation",
            "fused_activations", "standalone_activations", "int8_kernels", "softmax", "quantize_ops_left", "note"}
OPENVINO_KEYS = {"runtime", "inference_precision_hint", "layers", "runtime_precisions", "int8_layers",
                 "fused_into_other_layers", "layers_with_fused_activation", "softmax", "matmul",
                 "fake_quantize_executed"}


@pytest.fixture(scope="module")
def resnet18_int8_file(resnet18_64, tmp_path_factory):
    """resnet18 at 64x64 quantized to QDQ int8 by deploykit's ORT quantizer (synthetic calibration: enough to
    make every convolution an int8 kernel)."""
    from deploykit.core.config import QuantizeConfig
    from deploykit.quantize.pipeline import quantize_model

    q = QuantizeConfig(calib_data="synthetic", calib_size=4, fidelity_samples=2)
    return quantize_model(str(resnet18_64.path), q, models_dir=tmp_path_factory.mktemp("q")).path


def _inspect(cli_runner, path, *runtimes):
    args = ["inspect", str(path), "--json"]
    for rt in runtimes:
        args += ["--runtime", rt]
    r = cli_runner.invoke(cli, args)
    assert r.exit_code == 0, r.stderr
    return json.loads(r.stdout)["runtime"]


def test_inspect_ort_reports_fused_activations(cli_runner, resnet18_64):
    ort = _inspect(cli_runner, resnet18_64.path, "ort")["ort"]
    assert set(ort) == ORT_KEYS and ort["runtime"] == "onnxruntime" and ort["graph_optimization"] == "all"
    # resnet18: 20 convolutions, 17 ReLUs; at least the 9 right after a convolution are fused into it (those
    # after a residual Add fuse where the CPU's NCHWc kernels take the Add too); nothing is int8
    assert ort["float_convs"] == 20 and ort["convs_with_fused_activation"] == ort["fused_activations"]["Relu"] >= 9
    assert ort["fused_activations"]["Relu"] + ort["standalone_activations"].get("Relu", 0) <= 17
    assert ort["int8_kernels"] == {} and ort["quantize_ops_left"] == {}
    disabled = read_runtime_graph("ort", resnet18_64.path, RuntimeOptions.from_settings(threads=1, graph_opt="disable"))
    assert disabled["convs_with_fused_activation"] == 0 and disabled["standalone_activations"]["Relu"] == 17


def test_inspect_ort_and_openvino_report_int8_kernels(cli_runner, resnet18_int8_file):
    got = _inspect(cli_runner, resnet18_int8_file, "ort", "openvino")
    ort, ov = got["ort"], got["openvino"]
    assert set(ort) == ORT_KEYS and set(ov) == OPENVINO_KEYS
    assert ort["int8_kernels"].get("QLinearConv", 0) >= 19  # the convolutions run as int8 kernels
    assert ort["float_convs"] <= 1 and ort["quantize_ops_left"].get("DequantizeLinear", 0) < 5
    assert ov["runtime"] == "openvino" and ov["inference_precision_hint"] == "f32"
    assert ov["int8_layers"].get("Convolution", 0) >= 19


def test_inspect_openvino_fp32(cli_runner, resnet18_64):
    ov = _inspect(cli_runner, resnet18_64.path, "openvino")["openvino"]
    assert set(ov) == OPENVINO_KEYS and ov["int8_layers"] == {}
    assert ov["layers"]["Convolution"] == 20 and ov["layers_with_fused_activation"] >= 9


def test_openvino_read_back_uses_the_instances_precision(resnet18_64):
    rt = get_runtime("openvino")(RuntimeOptions(threads=1, precision="bf16"))
    assert rt.runtime_graph(resnet18_64.path)["inference_precision_hint"] == "bf16"
    assert read_runtime_graph("openvino", resnet18_64.path)["inference_precision_hint"] == "f32"


def test_inspect_unknown_runtime_is_did_you_mean_exit_2(cli_runner, resnet18_64):
    r = cli_runner.invoke(cli, ["inspect", str(resnet18_64.path), "--runtime", "openvno"])
    assert_clean_error(r, 2, "unknown target 'openvno'", "did you mean", "'openvino'")
    r = cli_runner.invoke(cli, ["inspect", str(resnet18_64.path), "--runtime", "nosuch"])
    assert_clean_error(r, 2, "unknown target 'nosuch'")


def test_inspect_target_without_read_back_is_one_line(cli_runner, resnet18_64):
    no_read_back = [n for n, cls in TARGETS.items() if not cls.reads_back_graph()]
    assert "torch" in no_read_back and "ort" not in no_read_back and "openvino" not in no_read_back
    r = cli_runner.invoke(cli, ["inspect", str(resnet18_64.path), "--runtime", "torch"])
    assert_clean_error(r, 2, "target torch cannot read back its runtime graph", "ort, openvino")


def test_inspect_unavailable_target_is_exit_3_naming_the_extra(cli_runner, resnet18_64):
    if get_runtime("trt").availability().available:
        pytest.skip("TensorRT is available here")
    # the target is checked before the file is read: no file needed to learn that TensorRT is missing
    r = cli_runner.invoke(cli, ["inspect", str(resnet18_64.path), "--runtime", "ort", "--runtime", "trt"])
    from deploykit.core.lazy import extra_hint

    assert_clean_error(r, 3, "target trt is unavailable", extra_hint("trt"))
    assert r.stdout == ""


@pytest.mark.gpu
def test_inspect_trt_lists_engine_layers(cli_runner, resnet18_64):
    if not get_runtime("trt").availability().available:
        pytest.skip(f"trt unavailable here: {get_runtime('trt').availability().reason}")
    trt = _inspect(cli_runner, resnet18_64.path, "trt")["trt"]
    assert trt["runtime"] == "tensorrt" and trt["layers"]["available"] and trt["layers"]["layers"] > 0


def test_inspect_text_output_names_each_runtime(cli_runner, resnet18_64):
    r = cli_runner.invoke(cli, ["inspect", str(resnet18_64.path), "--runtime", "ort", "--runtime", "openvino"],
                          terminal_width=200)
    assert r.exit_code == 0, r.stderr
    assert "ONNX Runtime ran: " in r.stdout and " of 20 float convolutions with a fused activation (Relu " in r.stdout
    assert "OpenVINO ran: layers Convolution 20" in r.stdout and "{'" not in r.stdout  # text, not dict reprs
