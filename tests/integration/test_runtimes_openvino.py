"""The openvino target on real OpenVINO sessions (CPU): latency and throughput modes, fp32 fidelity against
PyTorch, the precision read back from the compiled model, IR files, the compiled-blob cache, device errors."""

import shutil

import pytest

from deploykit.bench.pipeline import run_benchmark
from deploykit.cli import cli
from deploykit.core.config import BenchConfig
from deploykit.runtimes.options import RuntimeOptions
from deploykit.core.errors import InputError, UnavailableError, UsageError
from deploykit.report.schema import build_report
from tests.conftest import assert_clean_error, files_under

pytest.importorskip("openvino", reason="openvino is not installed (pip install 'deploykit[openvino]')")

FAST = BenchConfig(resolution=64, warmup=2, min_iters=15, min_time=0.2, max_time=20, bootstrap=200)


def cpu_has_bf16() -> bool:
    from deploykit.runtimes.openvino import core

    return "BF16" in core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")


@pytest.fixture(scope="module")
def ov_default(resnet18_64):
    return build_report(run_benchmark(str(resnet18_64.path), "openvino", FAST, RuntimeOptions()))


@pytest.fixture(scope="module")
def ov_fp32(resnet18_64):
    return build_report(run_benchmark(str(resnet18_64.path), "openvino", FAST, RuntimeOptions(precision="fp32")))


def test_fp32_matches_pytorch_within_1e3_and_records_what_ran(ov_fp32):
    info = ov_fp32["target"]["info"]
    assert info["inference_precision_hint"] == "f32" and ov_fp32["target"]["precision"] == "fp32"
    assert info["precision_requested"] == "fp32" and info["execution_devices"] == ["CPU"]
    assert set(info["runtime_precisions"]) <= {"f32", "i32", "i64"}  # every executed node ran in f32
    f = ov_fp32["fidelity"]
    assert f["reference"].startswith("pytorch fp32") and f["passed"] is True
    assert f["rel_err"] <= 1e-3 and f["cosine"] >= 0.9999 and f["top1"] == 1.0
    assert info["performance_hint"] == "LATENCY" and info["requests"] == 1
    assert ov_fp32["throughput"]["mode"] == "latency"
    assert ov_fp32["stats"]["n"] == ov_fp32["timing"]["iterations"] >= 15


def test_default_precision_is_read_back_not_assumed(ov_default):
    info = ov_default["target"]["info"]
    hint = info["inference_precision_hint"]
    assert info["precision_requested"] is None and hint in ("f32", "bf16", "f16")
    assert ov_default["target"]["precision"] == {"f32": "fp32", "bf16": "bf16", "f16": "fp16"}[hint]
    if not cpu_has_bf16():  # this CPU has no bf16 units: OpenVINO's default is f32 here, and it is exact
        assert hint == "f32" and ov_default["fidelity"]["passed"] is True


def test_default_bf16_does_not_match_within_1e3(ov_default):
    if not cpu_has_bf16():
        pytest.skip("this CPU has no bf16 support (OpenVINO OPTIMIZATION_CAPABILITIES lacks BF16), so OpenVINO's "
                    "default inference precision is f32 here")
    assert ov_default["target"]["info"]["inference_precision_hint"] == "bf16"
    assert ov_default["fidelity"]["rel_err"] > 1e-3


def test_bf16_request_without_bf16_units_reports_f32_ran(resnet18_64):
    if cpu_has_bf16():
        pytest.skip("this CPU runs bf16; the fallback to f32 only happens without bf16 units")
    rep = build_report(run_benchmark(str(resnet18_64.path), "openvino", FAST, RuntimeOptions(precision="bf16")))
    assert rep["target"]["precision"] == "fp32" and rep["target"]["info"]["precision_requested"] == "bf16"
    assert any("--precision bf16 was requested" in w and "f32" in w for w in rep["warnings"])


def test_throughput_mode_runs_async_requests(resnet18_64):
    res = run_benchmark(str(resnet18_64.path), "openvino", FAST, RuntimeOptions.from_settings(mode="throughput", requests=3))
    rep = build_report(res)
    info = rep["target"]["info"]
    assert info["performance_hint"] == "THROUGHPUT" and info["requests"] == 3
    assert rep["throughput"]["mode"] == "throughput" and rep["throughput"]["requests_in_flight"] == 3
    m = res.measurement
    assert m.requests == 3 and len(m.warmup_ns) == 3 and m.iterations >= 15
    assert rep["throughput"]["items_per_s"] == pytest.approx(m.iterations / (m.wall_ns / 1e9))
    assert rep["fidelity"]["passed"] is True
    # with 3 requests sharing 2 cores, a request's latency exceeds the loop's time per item
    assert rep["stats"]["p50"] > 1000 / rep["throughput"]["items_per_s"]


def test_throughput_mode_defaults_to_the_devices_optimal_requests(resnet18_64):
    rep = build_report(run_benchmark(str(resnet18_64.path), "openvino", FAST, RuntimeOptions(mode="throughput")))
    info = rep["target"]["info"]
    assert info["requests"] == info["optimal_requests"] >= 1


def test_compiled_blob_cache_is_reused(resnet18_64, tmp_path):
    opts = RuntimeOptions(precision="fp32", cache_dir=str(tmp_path / "cache"))
    quick = BenchConfig(resolution=64, warmup=0, min_iters=2, min_time=0, max_time=10, bootstrap=50)
    first = run_benchmark(str(resnet18_64.path), "openvino", quick, opts).runtime_info
    second = run_benchmark(str(resnet18_64.path), "openvino", quick, opts).runtime_info
    assert first["loaded_from_cache"] is False and second["loaded_from_cache"] is True
    assert files_under(tmp_path / "cache" / "openvino")
    off = run_benchmark(str(resnet18_64.path), "openvino", quick, RuntimeOptions(cache=False)).runtime_info
    assert off["cache_dir"] is None


def test_openvino_ir_file(resnet18_64, tmp_path):
    import openvino as ov

    xml = tmp_path / "r18.xml"
    ov.save_model(ov.Core().read_model(str(resnet18_64.path)), str(xml), compress_to_fp16=False)
    rep = build_report(run_benchmark(str(xml), "openvino", FAST, RuntimeOptions(precision="fp32")))
    assert rep["model"]["kind"] == "native-file" and rep["model"]["input"]["shape"] == [1, 3, 64, 64]
    assert rep["fidelity"]["reference"].startswith("openvino cpu f32") and rep["fidelity"]["passed"]
    with pytest.raises(InputError, match="openvino target only"):
        run_benchmark(str(xml), "ort", FAST, RuntimeOptions())
    xml.with_suffix(".bin").unlink()
    with pytest.raises(InputError, match="weights file r18.bin is missing"):
        run_benchmark(str(xml), "openvino", FAST, RuntimeOptions())


def test_device_errors(resnet18_64):
    with pytest.raises(UnavailableError, match=r"device GPU is not available here \(devices here: CPU"):
        run_benchmark(str(resnet18_64.path), "openvino", FAST, RuntimeOptions(device="GPU"))
    with pytest.raises(UsageError, match="unknown OpenVINO device 'CUP'"):
        run_benchmark(str(resnet18_64.path), "openvino", FAST, RuntimeOptions(device="CUP"))
    with pytest.raises(UnavailableError, match="NPU"):
        run_benchmark(str(resnet18_64.path), "openvino", FAST, RuntimeOptions(device="AUTO:NPU,CPU"))


def test_device_check_logic():
    from deploykit.runtimes.openvino import check_device

    here = ["CPU", "GPU.0", "GPU.1"]
    for ok in ("CPU", "cpu", "GPU", "GPU.1", "AUTO", "AUTO:GPU.1,CPU", "HETERO:GPU,CPU", "MULTI:GPU.0,CPU"):
        check_device(ok, here)
    with pytest.raises(UnavailableError):
        check_device("GPU.2", here)
    with pytest.raises(UnavailableError):
        check_device("NPU", here)
    with pytest.raises(UsageError):
        check_device("TPU", here)


def test_cli_device_and_mode_errors_are_clean(cli_runner, resnet18_64, tmp_path):
    out = tmp_path / "r"
    base = ["bench", str(resnet18_64.path), "--report-dir", str(out)]
    line = assert_clean_error(cli_runner.invoke(cli, [*base, "-t", "openvino", "--device", "GPU"]), 3, "devices here: CPU")
    assert "GPU" in line
    assert_clean_error(cli_runner.invoke(cli, [*base, "-t", "openvino", "--device", "CUP"]), 2, "unknown OpenVINO device")
    assert_clean_error(cli_runner.invoke(cli, [*base, "-t", "torch", "--mode", "throughput"]), 2, "no --mode throughput")
    assert_clean_error(cli_runner.invoke(cli, [*base, "-t", "ort", "--mode", "throughput", "--streams", "2"]), 2,
                       "--streams is an OpenVINO setting")
    assert_clean_error(cli_runner.invoke(cli, [*base, "-t", "openvino", "--requests", "4"]), 2, "--mode throughput")
    assert_clean_error(cli_runner.invoke(cli, [*base, "-t", "openvino", "--precision", "int8"]), 2, "quantized model")
    assert files_under(out) == []


def test_cli_openvino_throughput_report(cli_runner, resnet18_64, tmp_path):
    import json

    args = ["bench", str(resnet18_64.path), "-t", "openvino", "--mode", "throughput", "--precision", "fp32",
            "--warmup", "1", "--min-iters", "6", "--min-time", "0", "--report-dir", str(tmp_path), "--json"]
    r = cli_runner.invoke(cli, args)
    assert r.exit_code == 0, r.stderr
    (rep,) = json.loads(r.stdout)
    assert rep["throughput"]["mode"] == "throughput" and rep["target"]["info"]["performance_hint"] == "THROUGHPUT"
    assert rep["energy"]["status"] in ("measured", "unavailable")
    if rep["energy"]["status"] == "unavailable":
        assert rep["energy"]["reasons"] and "energy: unavailable" in r.stderr
    assert rep["telemetry"]["start"]["cpu"] and rep["telemetry"]["end"]["cpu"]
    md = next(p for p in files_under(tmp_path) if p.suffix == ".md").read_text()
    assert "throughput mode: " in md and "telemetry at start" in md and "energy" in md


def test_plain_onnx_copy_uses_ort_reference(resnet18_64, tmp_path):
    own = tmp_path / "mine.onnx"
    shutil.copy(resnet18_64.path, own)
    rep = build_report(run_benchmark(str(own), "openvino", FAST, RuntimeOptions(precision="fp32")))
    assert rep["fidelity"]["reference"].startswith("onnxruntime") and rep["fidelity"]["passed"]


def test_ort_refuses_a_gpu_device(resnet18_64):
    with pytest.raises(UsageError, match="CPU only"):
        run_benchmark(str(resnet18_64.path), "ort", FAST, RuntimeOptions(device="GPU"))


def _concat_mul_qdq_graph(path):
    """A tiny int8 QDQ graph with the pattern that crashes OpenVINO 2026.4's CPU plugin in compile_model:
    Concat -> Q/DQ (uint8, zero point 118) -> Mul by a float constant -> Q/DQ."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    nodes, inits = [], []

    def qdq(x, name, zp):
        inits.extend([numpy_helper.from_array(np.array(0.05, np.float32), name + "_s"),
                      numpy_helper.from_array(np.array(zp, np.uint8), name + "_z")])
        nodes.extend([helper.make_node("QuantizeLinear", [x, name + "_s", name + "_z"], [name + "_q"]),
                      helper.make_node("DequantizeLinear", [name + "_q", name + "_s", name + "_z"], [name + "_dq"])])
        return name + "_dq"

    a = qdq("input", "a", 128)
    nodes.append(helper.make_node("Concat", [a, a], ["cat"], axis=1))
    c = qdq("cat", "c", 118)
    inits.append(numpy_helper.from_array(np.linspace(0.5, 1.5, 6, dtype=np.float32).reshape(1, 6, 1, 1), "k"))
    nodes.append(helper.make_node("Mul", [c, "k"], ["m"]))
    nodes.append(helper.make_node("Identity", [qdq("m", "d", 118)], ["output"]))
    graph = helper.make_graph(nodes, "concat_mul_qdq", [helper.make_tensor_value_info("input", TensorProto.FLOAT,
                                                                                      [1, 3, 16, 16])],
                              [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 6, 16, 16])], inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), str(path))
    return path


def test_a_crash_inside_openvino_is_one_clean_error(tmp_path):
    """An int8 graph that makes OpenVINO's plugin die by a signal in compile_model ends `bench` (and `inspect
    --runtime openvino`) with one line and exit 3 (compiled first in a child process), never a segmentation
    fault; ONNX Runtime runs the same file.
    On an OpenVINO without that bug the file simply runs."""
    from deploykit.core.lazy import version_of
    from tests.conftest import run_cli

    onnx_path = _concat_mul_qdq_graph(tmp_path / "concat_mul_qdq.onnx")
    args = ("bench", str(onnx_path), "--min-time", "0.1", "--min-iters", "5", "--report-dir", str(tmp_path / "r"))
    ov = run_cli(*args, "-t", "openvino")
    assert ov.returncode >= 0, f"deploykit itself died by signal {-ov.returncode}"
    if version_of("openvino").startswith("2026.4"):  # the version the crash was found on
        assert_clean_error(ov, 3, "crashed (SIGSEGV)", "concat_mul_qdq.onnx", "target ort", alone=False)
        assert not files_under(tmp_path / "r")
        assert_clean_error(run_cli("inspect", str(onnx_path), "--runtime", "openvino"), 3, "crashed (SIGSEGV)")
    else:
        assert ov.returncode in (0, 3), ov.stderr
    assert run_cli(*args, "-t", "ort").returncode == 0


def test_the_compile_child_ignores_modules_in_the_working_directory(tmp_path, monkeypatch):
    """check_compiles' child must import the installed OpenVINO, not an openvino.py in the user's folder (this one
    kills itself with SIGSEGV, which check_compiles would report as an OpenVINO crash)."""
    import onnx
    from onnx import TensorProto, helper

    from deploykit.runtimes.openvino import check_compiles

    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 4, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 4, 4])])
    path = tmp_path / "relu.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), str(path))
    user = tmp_path / "user"
    user.mkdir()
    (user / "openvino.py").write_text("import os, signal\nos.kill(os.getpid(), signal.SIGSEGV)\n")
    monkeypatch.chdir(user)
    check_compiles(path, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})  # no "OpenVINO crashed" error


def test_a_model_sharing_its_process_with_another_is_not_pinned_to_cores(resnet18_64):
    """Both sides of an interleaved A/B (gate, tune) load in one process: OpenVINO pins a compiled model's threads
    and marks those cores used, so each side is compiled with pinning off, read back from the compiled model."""
    from deploykit.bench.interleave import load_side
    from deploykit.export.source import resolve_model
    from deploykit.runtimes.openvino import OpenVinoRuntime

    model = resolve_model(str(resnet18_64.path), batch=1, resolution=None)
    opts = RuntimeOptions(precision="fp32", threads=2)
    a = load_side("A", model, OpenVinoRuntime, opts)
    b = load_side("B", model, OpenVinoRuntime, opts)
    try:
        assert a.info["cpu_pinning"] is False and b.info["cpu_pinning"] is False
        a.side.infer(), b.side.infer()
    finally:
        a.close(), b.close()
    alone = OpenVinoRuntime(opts)  # a bench run has the process to itself: OpenVINO's own choice stays
    assert "ENABLE_CPU_PINNING" not in alone._config()
