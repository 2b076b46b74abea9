"""Target ``ort``: ONNX Runtime with the CPU execution provider.

Read-back (``runtime_graph``): the optimized graph ONNX Runtime executes (``SessionOptions.optimized_model_filepath``)
-- FusedConv / NCHWc Conv nodes carrying an ``activation`` attribute (a ReLU/Clip fused into the convolution), the
int8 kernels (QLinearConv, QLinearMatMul, QGemm, QLinearAdd, QLinearSoftmax, ...) and what stayed float.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from deploykit.core.config import GRAPH_OPTS
from deploykit.onnxio.session import cpu_session, load_session, session_options
from deploykit.runtimes.base import ACTIVATIONS, Availability, ModelInput, Runtime, register_runtime
from deploykit.runtimes.options import TargetOptions, option

if TYPE_CHECKING:
    import numpy as np

ORT_INT8_KERNELS = (
    "QLinearConv", "QLinearMatMul", "QGemm", "QLinearAdd", "QLinearMul", "QLinearSoftmax", "QLinearSigmoid",
    "QLinearLeakyRelu", "QLinearAveragePool", "QLinearGlobalAveragePool", "QLinearConcat", "QLinearReduceMean",
    "QLinearWhere", "QLinearReduceMean", "MatMulIntegerToFloat", "DynamicQuantizeMatMul", "ConvInteger",
    "MatMulInteger", "NhwcMaxPool", "QAttention", "QOrderedAttention",
)
_ORT_CONVS = ("Conv", "FusedConv", "NhwcFusedConv")


@dataclass(frozen=True)
class OrtOptions(TargetOptions):
    """Options of the ONNX Runtime targets (ort, ort-cuda, ort-trt)."""

    graph_opt: str = option("all", flag="--graph-opt", choices=GRAPH_OPTS, show_default=True, rank=20,
                            help="ONNX Runtime graph optimisation level.")


@register_runtime("ort")
class OrtCpuRuntime(Runtime):
    description = "ONNX Runtime, CPU execution provider"
    device_kind = "cpu"
    requires = ("onnxruntime",)
    precisions = ("fp32", "int8")  # int8 = a QDQ-quantized ONNX file, run as given
    rank = 10
    option_groups = (OrtOptions,)

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
        so = session_options(ort, self._threads, self.graph_opt)
        self._sess = load_session(ort, str(model.path), so, ["CPUExecutionProvider"], str(model.path))
        self._input = model.input_name
        self._path = model.path
        self._fusion = None
        self._out_names = [o.name for o in self._sess.get_outputs()]
        self._feed: dict = {}

    @property
    def graph_opt(self) -> str:
        return self.options.of(OrtOptions).graph_opt

    def set_input(self, x: np.ndarray) -> None:
        import numpy as np

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
            "graph_optimization": self.graph_opt,
            "fusion": self.fusion(),
        }

    def runtime_graph(self, path) -> dict:
        """The optimized graph ONNX Runtime runs for ``path`` at this runtime's --graph-opt and --threads."""
        return ort_runtime_graph(path, graph_opt=self.graph_opt, threads=self.options.threads)

    def fusion(self) -> dict:
        """What ONNX Runtime actually runs for the loaded model: its optimized graph (same graph optimisation,
        one extra untimed single-thread session) read back -- fused conv+activation, int8 kernels
        (QLinearConv, QLinearMatMul, QLinearSoftmax, ...)."""
        if self._fusion is None:
            try:
                self._fusion = ort_runtime_graph(self._path, graph_opt=self.graph_opt, threads=1)
            except Exception as exc:  # the analysis must never break a measurement
                self._fusion = {"error": f"{type(exc).__name__}: {str(exc)[:200]}"}
        return self._fusion

    def close(self) -> None:
        self._sess = None


def ort_runtime_graph(source, *, graph_opt: str = "all", threads: int | None = 1) -> dict:
    """Load ``source`` (path or serialized bytes) in ONNX Runtime's CPU provider at ``graph_opt`` and summarise
    the optimized graph it runs."""
    import onnx

    from deploykit.core.atomic import run_dir

    with run_dir(None, "ortopt") as tmp:  # owner-tagged: swept by a later run if this one is killed
        out = Path(tmp) / "optimized.onnx"
        cpu_session(source, graph_opt=graph_opt, threads=threads, what="the graph", optimized_model_path=str(out))
        opt = onnx.load(str(out), load_external_data=False)
    return summarize_ort_graph(opt, graph_opt)


def summarize_ort_graph(opt, graph_opt: str = "all") -> dict:
    """The read-back summary of an optimized graph ONNX Runtime wrote (``optimized_model_filepath``)."""
    from deploykit.onnxio.files import op_histogram

    hist = op_histogram(opt)
    convs = [n for n in opt.graph.node if n.op_type in _ORT_CONVS]
    fused_act = Counter()
    for n in convs + [n for n in opt.graph.node if n.op_type == "FusedGemm"]:
        act = _attr(n, "activation")
        if act:
            fused_act[act.decode() if isinstance(act, bytes) else str(act)] += 1
    by_type = Counter(n.op_type for n in opt.graph.node)
    int8 = {k: by_type[k] for k in ORT_INT8_KERNELS if by_type.get(k)}
    return {
        "runtime": "onnxruntime",
        "graph_optimization": graph_opt,
        "nodes": sum(hist.values()),
        "op_histogram": hist,
        "float_convs": len(convs),
        "convs_with_fused_activation": sum(fused_act.values()),
        "fused_activations": dict(fused_act),
        "standalone_activations": {a: by_type[a] for a in ACTIVATIONS if by_type.get(a)},
        "int8_kernels": int8,
        "softmax": {"int8": by_type.get("QLinearSoftmax", 0), "float": by_type.get("Softmax", 0)},
        "quantize_ops_left": {k: by_type[k] for k in ("QuantizeLinear", "DequantizeLinear") if by_type.get(k)},
        "note": "NCHWc nodes (com.microsoft.nchwc) are the layout ONNX Runtime chose for this CPU" if any(
            n.domain == "com.microsoft.nchwc" for n in opt.graph.node) else None,
    }


def _attr(node, name: str):
    import onnx

    for a in node.attribute:
        if a.name == name:
            return onnx.helper.get_attribute_value(a)
    return None
