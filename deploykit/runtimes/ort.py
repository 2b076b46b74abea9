"""Target ``ort``: ONNX Runtime with the CPU execution provider."""

from __future__ import annotations

import numpy as np

from deploykit.onnxio.session import load_session, session_options
from deploykit.runtimes.base import Availability, ModelInput, Runtime, register_runtime

@register_runtime("ort")
class OrtCpuRuntime(Runtime):
    description = "ONNX Runtime, CPU execution provider"
    device_kind = "cpu"
    requires = ("onnxruntime",)
    precisions = ("fp32", "int8")  # int8 = a QDQ-quantized ONNX file, run as given

    @classmethod
    def availability(cls) -> Availability:
        av = super().availability()
        if not av.available:
            return av
        from deploykit.core.lazy import version_of

        return Availability(True, detail=f"onnxruntime {version_of('onnxruntime')}")

    def preflight(self) -> None:
        if self.options.device and self.options.device.strip().lower() != "cpu":
            from deploykit.core.errors import UsageError

            raise UsageError(f"target ort runs on the CPU only (--device {self.options.device}); the GPU baselines are "
                             "ort-cuda and ort-trt")

    def load(self, model: ModelInput) -> None:
        import onnxruntime as ort

        self._ort = ort
        self._threads = self.options.resolved_threads()
        so = session_options(ort, self._threads, self.options.graph_opt)
        self._sess = load_session(ort, str(model.path), so, ["CPUExecutionProvider"], str(model.path))
        self._input = model.input_name
        self._path = model.path
        self._fusion = None
        self._out_names = [o.name for o in self._sess.get_outputs()]
        self._feed: dict[str, np.ndarray] = {}

    def set_input(self, x: np.ndarray) -> None:
        self._feed = {self._input: np.ascontiguousarray(x)}

    def infer(self) -> None:
        self._sess.run(self._out_names, self._feed)

    def outputs(self) -> list[np.ndarray]:
        return self._sess.run(self._out_names, self._feed)

    def info(self) -> dict:
        return {
            "runtime": "onnxruntime",
            "version": self._ort.__version__,
            "providers": self._sess.get_providers(),
            "device": "CPU",
            "threads": self._threads,
            "inter_op_threads": 1,
            "graph_optimization": self.options.graph_opt,
            "fusion": self.fusion(),
        }

    def fusion(self) -> dict:
        """What ONNX Runtime actually runs: its optimized graph (same options, one extra untimed session) read
        back -- fused conv+activation, int8 kernels (QLinearConv, QLinearMatMul, QLinearSoftmax, ...)."""
        if self._fusion is None:
            from deploykit.passes.runtime_fusion import ort_runtime_graph

            try:
                self._fusion = ort_runtime_graph(self._path, graph_opt=self.options.graph_opt, threads=1)
            except Exception as exc:  # the analysis must never break a measurement
                self._fusion = {"error": f"{type(exc).__name__}: {str(exc)[:200]}"}
        return self._fusion

    def close(self) -> None:
        self._sess = None
