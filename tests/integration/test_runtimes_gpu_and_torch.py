"""GPU baselines and TensorRT: clean exit 3 with what is missing where there is no GPU / TensorRT here, the real
thing where there is (skipped with the reason otherwise); the torch target on the CPU; unsupported-op refusal."""

import json
import shutil

import numpy as np
import pytest

from deploykit.bench.pipeline import check_graph_ops, run_benchmark
from deploykit.cli import cli
from deploykit.core.config import BenchConfig, ExportConfig
from deploykit.runtimes.options import RuntimeOptions
from deploykit.core.errors import UnavailableError, UsageError
from deploykit.core.lazy import extra_hint, is_installed
from deploykit.report.schema import build_report
from deploykit.runtimes.base import get_runtime
from deploykit.runtimes.cuda import cuda_status
from tests.conftest import assert_clean_error, files_under

FAST = BenchConfig(resolution=64, warmup=2, min_iters=10, min_time=0.1, max_time=30, bootstrap=200)
HAS_GPU = cuda_status().available
NO_GPU_REASON = f"no NVIDIA GPU here ({cuda_status().reason})"


def test_targets_lists_every_target_with_status_and_reason(cli_runner):
    r = cli_runner.invoke(cli, ["targets", "--json"])
    assert r.exit_code == 0, r.output
    rows = {x["target"]: x for x in json.loads(r.stdout)}
    assert set(rows) >= {"ort", "openvino", "trt", "ort-cuda", "ort-trt", "torch"}
    for name, row in rows.items():
        assert row["detail"], f"{name} has no detail/reason"
    assert rows["openvino"]["modes"] == ["latency", "throughput"]
    assert "concurrent_requests" in rows["openvino"]["capabilities"] and "peak_kernels" in rows["ort"]["capabilities"]
    assert rows["torch"]["capabilities"] == ["device_timing"] and rows["ort-cuda"]["capabilities"] == []
    if not is_installed("tensorrt"):
        assert f"tensorrt not installed ({extra_hint('trt')})" in rows["trt"]["detail"]
    if not HAS_GPU:
        for name in ("trt", "ort-cuda", "ort-trt"):
            assert rows[name]["available"] is False and cuda_status().reason in rows[name]["detail"]
    r = cli_runner.invoke(cli, ["targets"])
    assert r.exit_code == 0 and all(name in r.stdout for name in rows)


@pytest.mark.skipif(get_runtime("trt").availability().available, reason="TensorRT and a GPU are present here")
def test_trt_without_tensorrt_is_exit_3_naming_what_is_missing(cli_runner, tmp_path):
    r = cli_runner.invoke(cli, ["bench", "resnet18", "-t", "trt", "--report-dir", str(tmp_path)])
    line = assert_clean_error(r, 3, "target trt is unavailable")
    assert ("tensorrt not installed" in line and "[trt]'" in line) or "GPU" in line or "driver" in line
    assert files_under(tmp_path) == []


@pytest.mark.skipif(get_runtime("ort-cuda").availability().available, reason="onnxruntime-gpu and a GPU are present")
@pytest.mark.parametrize("target", ["ort-cuda", "ort-trt"])
def test_ort_gpu_without_gpu_is_exit_3_naming_what_is_missing(cli_runner, tmp_path, target):
    r = cli_runner.invoke(cli, ["bench", "resnet18", "-t", target, "--report-dir", str(tmp_path)])
    line = assert_clean_error(r, 3, f"target {target} is unavailable")
    if not is_installed("onnxruntime") or "onnxruntime-gpu is not installed" in line:
        assert "pip install onnxruntime-gpu" in line
    if not HAS_GPU:
        assert cuda_status().reason in line


@pytest.mark.skipif(HAS_GPU, reason="a GPU is present here")
def test_torch_cuda_without_gpu_is_exit_3(cli_runner, tmp_path):
    r = cli_runner.invoke(cli, ["bench", "resnet18", "-t", "torch", "--device", "cuda", "--report-dir", str(tmp_path)])
    assert_clean_error(r, 3, "needs an NVIDIA GPU")
    r = cli_runner.invoke(cli, ["bench", "resnet18", "-t", "torch", "--cuda-graphs"])
    assert_clean_error(r, 2, "--cuda-graphs needs --device cuda")


def test_torch_target_on_cpu(resnet18_64, store):
    res = run_benchmark("resnet18", "torch", FAST, RuntimeOptions(threads=1),
                        export=ExportConfig(model="resnet18", models_dir=store))
    rep = build_report(res)
    info = rep["target"]["info"]
    assert info["runtime"] == "torch" and info["device"] == "cpu" and info["threads"] == 1
    assert rep["target"]["precision"] == "fp32" and info["compile"] is None
    f = rep["fidelity"]
    assert f["reference"].startswith("pytorch") and f["passed"] and f["rel_err"] <= 1e-6  # the same module
    assert "device_timing" not in rep
    assert rep["timing"]["iterations"] >= 10


def test_torch_target_bf16_is_recorded_and_checked_with_bf16_tolerance(resnet18_64):
    rep = build_report(run_benchmark(str(resnet18_64.path), "torch", FAST, RuntimeOptions(precision="bf16")))
    assert rep["target"]["precision"] == "bf16" and rep["fidelity"]["tolerance"]["rtol"] == 1e-1
    assert 0 < rep["fidelity"]["rel_err"] < 1e-1


def test_torch_target_refuses_a_graph_file_of_unknown_origin(resnet18_64, tmp_path):
    own = tmp_path / "mine.onnx"
    shutil.copy(resnet18_64.path, own)
    with pytest.raises(UsageError, match="registry models"):
        run_benchmark(str(own), "torch", FAST, RuntimeOptions())


@pytest.mark.skipif(shutil.which("cc") is None and shutil.which("gcc") is None,
                    reason="torch.compile's CPU backend needs a C compiler and none is installed")
def test_torch_compile_on_cpu(resnet18_64):
    quick = BenchConfig(resolution=64, warmup=1, min_iters=3, min_time=0, max_time=60, bootstrap=50)
    res = run_benchmark(str(resnet18_64.path), "torch", quick, RuntimeOptions.from_settings(compile=True))
    assert res.runtime_info["compile"] == "default" and res.fidelity["passed"]
    # compilation happens in the first inference, which is reported apart from the steady state
    assert res.measurement.first_ns > 5 * np.median(res.measurement.samples_ns)


def _dft_model(path):
    import onnx
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 8, 5, 2])
    nodes = [helper.make_node("Unsqueeze", ["x", "ax"], ["x5"]),
             helper.make_node("DFT", ["x5", "", "dim"], ["y"], onesided=1)]
    inits = [helper.make_tensor("ax", TensorProto.INT64, [1], [-1]), helper.make_tensor("dim", TensorProto.INT64, [], [3])]
    onnx.save(helper.make_model(helper.make_graph(nodes, "g", [x], [y], inits),
                                opset_imports=[helper.make_opsetid("", 20)]), path)


def test_targets_refuse_graphs_with_ops_they_cannot_run(tmp_path):
    from deploykit.export.source import resolve_model

    p = tmp_path / "parc_fft.onnx"
    _dft_model(p)
    model = resolve_model(str(p), batch=1, resolution=None)
    for target in ("ort-cuda", "ort-trt"):
        with pytest.raises(UnavailableError, match=f"target {target} cannot run parc_fft: .*DFT: .*no DFT kernel"):
            check_graph_ops(get_runtime(target), model)
    for target in ("ort", "openvino", "torch"):
        check_graph_ops(get_runtime(target), model)  # no declared limitation
    assert get_runtime("trt").graph_unsupported({"DFT"}) or is_installed("tensorrt")


# ---- the real GPU paths: run only where the hardware and packages are present --------------------------------
@pytest.mark.skipif(not HAS_GPU, reason=NO_GPU_REASON)
def test_torch_cuda_real(resnet18_64):
    rep = build_report(run_benchmark(str(resnet18_64.path), "torch", FAST, RuntimeOptions(device="cuda")))
    assert rep["target"]["info"]["device"].startswith("cuda") and rep["fidelity"]["passed"]
    dt = rep["device_timing"]
    assert dt["compute"]["stats"]["p50"] <= dt["e2e"]["stats"]["p50"]
    assert rep["telemetry"]["start"]["gpu"]


@pytest.mark.skipif(not get_runtime("ort-cuda").availability().available,
                    reason=f"ort-cuda unavailable here: {get_runtime('ort-cuda').availability().reason}")
def test_ort_cuda_real(resnet18_64):
    rep = build_report(run_benchmark(str(resnet18_64.path), "ort-cuda", FAST, RuntimeOptions()))
    assert rep["target"]["info"]["providers"][0] == "CUDAExecutionProvider" and rep["fidelity"]["passed"]


@pytest.mark.skipif(not get_runtime("trt").availability().available,
                    reason=f"trt unavailable here: {get_runtime('trt').availability().reason}")
def test_trt_real_build_cache_and_run(resnet18_64, tmp_path):
    opts = RuntimeOptions(precision="fp32", cache_dir=str(tmp_path))
    first = build_report(run_benchmark(str(resnet18_64.path), "trt", FAST, opts))
    assert first["target"]["info"]["engine_built_now"] is True and first["fidelity"]["passed"]
    assert first["device_timing"]["compute"]["stats"]["p50"] > 0
    second = build_report(run_benchmark(str(resnet18_64.path), "trt", FAST, opts))
    assert second["target"]["info"]["engine_built_now"] is False
    assert "matches" in second["target"]["info"]["engine_cache"]


@pytest.mark.skipif(not HAS_GPU or not is_installed("pynvml"),
                    reason="needs an NVIDIA GPU and nvidia-ml-py for the real NVML path")
def test_real_nvml_energy(resnet18_64):
    cfg = BenchConfig(resolution=64, warmup=5, min_iters=50, min_time=10, max_time=30, bootstrap=200, idle_time=1)
    rep = build_report(run_benchmark(str(resnet18_64.path), "torch", cfg, RuntimeOptions(device="cuda")))
    gpu = next(d for d in rep["energy"]["domains"] if d["scope"].startswith("GPU"))
    assert gpu["joules"] > 0 and gpu["j_per_inference"] > 0 and gpu["idle_power_w"] is not None
