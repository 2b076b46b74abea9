"""Targets ``ort-cuda`` and ``ort-trt``: ONNX Runtime's CUDA and TensorRT execution providers (onnxruntime-gpu).

GPU baselines that run wherever CUDA does. They need the ``onnxruntime-gpu`` package (it provides the same
``onnxruntime`` module as the CPU package and replaces it) and an NVIDIA GPU; without either, ``deploykit
targets`` and ``bench`` say which one is missing (exit 3). After loading, the session's providers are
checked: ONNX Runtime silently falls back to the CPU provider when the CUDA / TensorRT libraries cannot be
loaded, and a run that silently measured the CPU would be a lie, so that is an error too.

Timing: ``run_with_iobinding``; by default the input is copied host->device and the output device->host on
every inference (what an application pays); ``--no-transfers`` keeps both on the GPU. ONNX Runtime
synchronises its CUDA stream at the end of each run, so the host clock brackets finished device work.

Precision: the graph's own (an fp16 or Q/DQ int8 ONNX runs as given); ``ort-trt --precision fp16`` lets
TensorRT pick fp16 kernels for an fp32 graph (``trt_fp16_enable``; weak typing, TensorRT 10 only).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from deploykit.core.errors import UnavailableError, UsageError
from deploykit.runtimes.base import Availability, ModelInput, register_runtime
from deploykit.runtimes.cuda import CudaOptions, CudaRuntime
from deploykit.runtimes.ort import OrtOptions

if TYPE_CHECKING:
    import numpy as np

_DFT = ("ONNX Runtime's CUDA execution provider has no DFT kernel (ParC's fft implementation); ONNX Runtime "
        "would silently run it on the CPU: export the model with another ParC implementation or use a CPU target")


def _gpu_dist() -> str | None:
    from importlib import metadata

    for name in ("onnxruntime-gpu", "onnxruntime-training-gpu"):
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return None


class _OrtGpuRuntime(CudaRuntime):
    provider = ""
    device_kind = "gpu"
    requires = ("onnxruntime",)
    precisions = ("fp32", "fp16", "int8")
    unsupported_ops = {"DFT": _DFT}
    option_groups = (OrtOptions, CudaOptions)

    @classmethod
    def availability(cls) -> Availability:
        missing = []
        ver = _gpu_dist()
        if ver is None:
            missing.append("onnxruntime-gpu is not installed (pip install onnxruntime-gpu; it replaces onnxruntime)")
        else:
            import onnxruntime as ort

            if cls.provider not in ort.get_available_providers():
                missing.append(f"this onnxruntime build has no {cls.provider} (providers: "
                               f"{', '.join(ort.get_available_providers())})")
        return cls.gpu_availability(missing, lambda devices: f"onnxruntime-gpu {ver}; " + ", ".join(
            f"cuda:{d.index} {d.name}" for d in devices))

    def _provider_options(self, model: ModelInput) -> list:
        raise NotImplementedError

    def _precision(self, model: ModelInput) -> str:
        wanted = self.options.precision
        if wanted and wanted != model.precision:
            raise UsageError(f"target {self.name} runs a graph in its own precision: {model.path.name} is "
                             f"{model.precision}, not {wanted} (give a {wanted} ONNX file)")
        return model.precision or "fp32"

    def load(self, model: ModelInput) -> None:
        import onnxruntime as ort

        from deploykit.onnxio.session import load_session, session_options

        self.preflight()
        self._ort = ort
        self._index = self._gpu.index
        self._run_precision = self._precision(model)
        so = session_options(ort, self.options.resolved_threads(), self.options.of(OrtOptions).graph_opt)
        providers = self._provider_options(model)
        self._sess = load_session(ort, str(model.path), so, providers, str(model.path))
        got = self._sess.get_providers()
        if not got or got[0] != self.provider:
            raise UnavailableError(f"target {self.name}: ONNX Runtime could not start {self.provider} (it fell back "
                                   f"to {', '.join(got)}; missing CUDA/cuDNN/TensorRT libraries?)")
        self._input = model.input_name
        self._outs = [o.name for o in self._sess.get_outputs()]
        self._binding = None

    def set_input(self, x: np.ndarray) -> None:
        import numpy as np

        ort, idx = self._ort, self._index
        self._x = np.ascontiguousarray(x)
        b = self._sess.io_binding()
        if self.options.of(CudaOptions).transfers:
            b.bind_cpu_input(self._input, self._x)
            for o in self._outs:
                b.bind_output(o, "cpu")
        else:
            self._x_dev = ort.OrtValue.ortvalue_from_numpy(self._x, "cuda", idx)
            b.bind_ortvalue_input(self._input, self._x_dev)
            for o in self._outs:
                b.bind_output(o, "cuda", idx)
        self._binding = b

    def infer(self) -> None:
        self._sess.run_with_iobinding(self._binding)

    def outputs(self) -> list[np.ndarray]:
        import numpy as np

        self._sess.run_with_iobinding(self._binding)
        return [np.array(v, copy=True) for v in self._binding.copy_outputs_to_cpu()]

    def info(self) -> dict:
        return {
            "runtime": "onnxruntime",
            "version": self._ort.__version__,
            "providers": self._sess.get_providers(),
            "provider_options": {k: v for k, v in self._sess.get_provider_options().items() if k == self.provider},
            "device": f"cuda:{self._index}",
            "gpu": self._gpu.name,
            "compute_capability": self._gpu.compute_capability,
            "precision": self._run_precision,
            "threads": self.options.resolved_threads(),
            "graph_optimization": self.options.of(OrtOptions).graph_opt,
            "transfers": "host<->device copies timed" if self.options.of(CudaOptions).transfers
                         else "device-resident I/O",
            "cpu_fallback": "nodes without a kernel on this provider run on the CPU provider (ONNX Runtime's "
                            "fallback); ops known to be missing are refused before loading",
        }

    def close(self) -> None:
        self._sess = None
        self._binding = None


@register_runtime("ort-cuda")
class OrtCudaRuntime(_OrtGpuRuntime):
    description = "ONNX Runtime, CUDA execution provider (onnxruntime-gpu)"
    provider = "CUDAExecutionProvider"
    rank = 40

    def _provider_options(self, model: ModelInput) -> list:
        return [(self.provider, {"device_id": self._gpu.index, "cudnn_conv_algo_search": "EXHAUSTIVE"}),
                "CPUExecutionProvider"]


@register_runtime("ort-trt")
class OrtTensorrtRuntime(_OrtGpuRuntime):
    description = "ONNX Runtime, TensorRT execution provider (onnxruntime-gpu + TensorRT)"
    provider = "TensorrtExecutionProvider"
    rank = 41
    qdq_profile = "trt"  # the TensorRT execution provider takes signed, symmetric int8 Q/DQ only

    @classmethod
    def qdq_problems(cls, model) -> list[str]:
        from deploykit.runtimes.tensorrt_plan import qdq_report

        return qdq_report(model).problems

    def _precision(self, model: ModelInput) -> str:
        wanted = self.options.precision
        if wanted == "fp16" and model.precision == "fp32":
            return "fp16"  # TensorRT may choose fp16 kernels (trt_fp16_enable)
        return super()._precision(model)

    def _provider_options(self, model: ModelInput) -> list:
        from deploykit.core.atomic import ensure_dir

        opts = {"device_id": self._gpu.index, "trt_fp16_enable": self._run_precision == "fp16",
                "trt_int8_enable": self._run_precision == "int8"}
        if self.options.cache:
            cache = str(ensure_dir(self.options.resolved_cache_dir("ort-trt")))
            opts.update(trt_engine_cache_enable=True, trt_engine_cache_path=cache, trt_timing_cache_enable=True,
                        trt_timing_cache_path=cache)
        return [(self.provider, opts), ("CUDAExecutionProvider", {"device_id": self._gpu.index}),
                "CPUExecutionProvider"]
