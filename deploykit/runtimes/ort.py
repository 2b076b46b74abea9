"""Target ``ort``: ONNX Runtime with the CPU execution provider.

Throughput mode (``--mode throughput``, and LoadGen's Server / Offline / MultiStream scenarios): N requests in
flight, each one ``InferenceSession.run`` on its own worker thread (ONNX Runtime releases the GIL while it runs;
concurrent runs share the session and its intra-op thread pool). N = ``--requests``, by default the usable
cores divided by ``--threads``, at least 2 (one run can start the moment another ends).

Read-back (``runtime_graph``): the optimized graph ONNX Runtime executes (``SessionOptions.optimized_model_filepath``)
-- FusedConv / NCHWc Conv nodes carrying an ``activation`` attribute (a ReLU/Clip fused into the convolution), the
int8 kernels (QLinearConv, QLinearMatMul, QGemm, QLinearAdd, QLinearSoftmax, ...) and what stayed float.

Per-layer profile (``profile_layers``): a second session with ``SessionOptions.enable_profiling``; its profiling
JSON (``end_profiling``) holds one "Node" event per kernel run (``<node>_kernel_time``, ``args.op_name``, ``dur`` in
microseconds, ``args.input_type_shape``) and one "model_run" event per inference, by which the node events are
split into inferences (the warm-up runs are dropped). Node names are those of the optimized graph: fusions show in
them (``node_MatMul_60/MatMulScaleFusion/``, ``relu_nchwc`` = a convolution in ONNX Runtime's NCHWc layout with
its activation fused), and are reported in ``fused``.
"""

from __future__ import annotations

import json
import threading
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from deploykit.core.config import GRAPH_OPTS, available_cores
from deploykit.onnxio.session import cpu_session, load_session, session_options
from deploykit.runtimes.base import (ACTIVATIONS, CONCURRENT, GRAPH_READBACK, PEAK, PER_LAYER, Availability,
                                     GemmKernel, LayerNode, LayerProfile, LayerTime,
                                     ModelInput, Runtime, register_runtime)
from deploykit.runtimes.gemm import load_gemm
from deploykit.runtimes.options import RuntimeOptions, TargetOptions, ThroughputOptions, option

if TYPE_CHECKING:
    import numpy as np

ORT_INT8_KERNELS = (
    "QLinearConv", "QLinearMatMul", "QGemm", "QLinearAdd", "QLinearMul", "QLinearSoftmax", "QLinearSigmoid",
    "QLinearLeakyRelu", "QLinearAveragePool", "QLinearGlobalAveragePool", "QLinearConcat", "QLinearReduceMean",
    "QLinearWhere", "QLinearReduceMean", "MatMulIntegerToFloat", "DynamicQuantizeMatMul", "ConvInteger",
    "MatMulInteger", "NhwcMaxPool", "QAttention", "QOrderedAttention",
)
_ORT_CONVS = ("Conv", "FusedConv", "NhwcFusedConv")
# `deploykit peak`: the float MatMul and both int8 GEMM kernels of the CPU execution provider (uint8 activations x
# int8 weights, the layout ONNX Runtime's quantizer writes)
PEAK_KERNELS = (
    GemmKernel("MatMul", "fp32", "fp32"),
    GemmKernel("MatMulInteger u8s8", "int8", "matmul_integer", input_dtype="uint8"),
    GemmKernel("QLinearMatMul u8s8", "int8", "qlinear", input_dtype="uint8"),
)


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
    capabilities = frozenset({CONCURRENT, PER_LAYER, GRAPH_READBACK, PEAK})
    rank = 10
    option_groups = (OrtOptions, ThroughputOptions)

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
        if self.options.of(ThroughputOptions).streams:
            from deploykit.core.errors import UsageError

            raise UsageError("--streams is an OpenVINO setting; on ort, --requests sets the runs in flight")

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
        self._pool = None
        self._requests = 1
        if self.options.mode == "throughput":
            self._requests = self.options.of(ThroughputOptions).requests or max(2, available_cores() // self._threads)

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

    # throughput mode: one worker thread per request in flight, each running the session
    def parallel_requests(self) -> int:
        return self._requests

    def submit(self, slot: int, done) -> None:
        if self._pool is None:
            self._pool = _RunPool(self._requests, lambda: self._sess.run(self._out_names, self._feed))
        self._pool.submit(slot, done)

    def wait_all(self) -> None:
        if self._pool is not None:
            self._pool.wait_all()

    def info(self) -> dict:
        info = {
            "runtime": "onnxruntime",
            "version": self._ort.__version__,
            "providers": self._sess.get_providers(),
            "device": "CPU",
            "profiling": self._sess.get_session_options().enable_profiling,  # read back: the timed session's
            "threads": self._threads,
            "inter_op_threads": 1,
            "graph_optimization": self.graph_opt,
            "fusion": self.fusion(),
        }
        if self.options.mode == "throughput":
            info.update(mode="throughput", requests=self._requests,
                        concurrency=f"{self._requests} concurrent InferenceSession.run calls, one worker thread each, "
                                    f"sharing the session's {self._threads} intra-op threads")
        return info

    @classmethod
    def peak_kernels(cls) -> tuple[GemmKernel, ...]:
        return PEAK_KERNELS

    @classmethod
    def gemm_session(cls, kernel: GemmKernel, m: int, k: int, n: int, threads: int, folder: Path):
        # ONNX Runtime runs each graph's ops in the types they are written in: what ran is what was asked for
        return load_gemm(cls(RuntimeOptions(threads=threads, cache=False)), kernel, m, k, n, folder), kernel.precision

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
        if self._pool is not None:
            self._pool.close()
            self._pool = None
        self._sess = None

    def profile_layers(self, model: ModelInput, x, iterations: int) -> LayerProfile:
        """A second session with profiling on (same threads and graph optimisation as the timed one), ``WARMUP``
        runs and then ``iterations`` profiled runs; the profiling JSON is parsed and deleted."""
        import onnxruntime as ort

        threads = self.options.resolved_threads()
        from deploykit.core.atomic import run_dir

        with run_dir(None, "ortprof") as tmp:  # one scheme of temporary folders: a killed run's is swept next time
            so = session_options(ort, threads, self.graph_opt)
            so.enable_profiling = True
            so.profile_file_prefix = str(Path(tmp) / "profile")
            so.optimized_model_filepath = str(Path(tmp) / "optimized.onnx")  # the graph the profile names
            sess = load_session(ort, str(model.path), so, ["CPUExecutionProvider"], str(model.path))
            feed = {model.input_name: x}
            for _ in range(PROFILE_WARMUP + iterations):
                sess.run(None, feed)
            events = json.loads(Path(sess.end_profiling()).read_text())
            graph = ort_layer_graph(Path(tmp) / "optimized.onnx")
        notes = ("profiled one inference at a time (the timed run was in throughput mode)",) \
            if self.options.mode == "throughput" else ()
        return LayerProfile(runtime="onnxruntime", iterations=iterations, notes=notes,
                            profiler="ONNX Runtime profiling JSON (SessionOptions.enable_profiling, node kernel times)",
                            records=parse_ort_profile(events, skip_runs=PROFILE_WARMUP),
                            wall_ms=tuple(ort_run_ms(events)[PROFILE_WARMUP:]), graph=graph)


class _RunPool:
    """``n`` worker threads, each running ``run()`` for the request slots submitted to it, then ``done(slot)``.
    A run that raises still calls ``done`` (nothing waits forever); the first error is raised by ``wait_all``."""

    def __init__(self, n: int, run):
        import queue

        self._run = run
        self._jobs: queue.SimpleQueue = queue.SimpleQueue()
        self._cond = threading.Condition()
        self._inflight = 0
        self._error: BaseException | None = None
        self._threads = [threading.Thread(target=self._work, name=f"dk-ort-run-{i}", daemon=True) for i in range(n)]
        for t in self._threads:
            t.start()

    def submit(self, slot: int, done) -> None:
        with self._cond:
            self._inflight += 1
        self._jobs.put((slot, done))

    def _work(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            slot, done = job
            try:
                self._run()
            except BaseException as exc:  # reported by wait_all; the request still completes
                with self._cond:
                    self._error = self._error or exc
            try:
                done(slot)
            except BaseException as exc:  # the caller's callback failed: keep the worker, report it in wait_all
                with self._cond:
                    self._error = self._error or exc
            with self._cond:
                self._inflight -= 1
                self._cond.notify_all()

    def wait_all(self) -> None:
        with self._cond:
            self._cond.wait_for(lambda: self._inflight == 0)
            err, self._error = self._error, None
        if err is not None:
            raise err

    def close(self) -> None:
        for _ in self._threads:
            self._jobs.put(None)
        for t in self._threads:
            t.join(timeout=60)


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


PROFILE_WARMUP = 3  # unprofiled-in-effect runs of the profiled session before the ones kept (allocations, caches)
_ORT_DTYPES = {"float": "fp32", "float16": "fp16", "bfloat16": "bf16", "double": "fp64", "int8": "int8",
               "uint8": "int8", "int32": "int32", "int64": "int64", "bool": "bool", "int16": "int16", "uint16": "int16"}
_CONVERSIONS = ("QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear", "Cast")


def ort_node_name(event_name: str) -> tuple[str, tuple[str, ...]]:
    """The node name of a profiling "Node" event and the fusions its name records: ``node_MatMul_60/MatMulScale
    Fusion//MatmulTransposeFusion/_kernel_time`` -> (``node_MatMul_60``, (MatMulScaleFusion, MatmulTransposeFusion));
    ``relu_nchwc_kernel_time`` -> (``relu_nchwc``, (NCHWc layout,))."""
    name = event_name.removesuffix("_kernel_time")
    parts = name.split("/")
    fused = tuple(p for p in parts[1:] if p.endswith("Fusion"))
    clean = "/".join([parts[0], *(p for p in parts[1:] if p and not p.endswith("Fusion"))]) if fused else name
    if clean.endswith("_nchwc"):
        fused += ("NCHWc layout",)
    return clean, fused


def ort_layer_graph(path: Path) -> tuple[LayerNode, ...]:
    """The optimized graph a profiled session wrote (``optimized_model_filepath``) as ``LayerNode``s named like the
    profile's node events; empty when it could not be written or read (the profile stands without it)."""
    try:
        import onnx

        opt = onnx.load(str(path), load_external_data=False)
    except Exception:
        return ()
    producer = {}
    for n in opt.graph.node:
        for o in n.output:
            producer[o] = ort_node_name(n.name + "_kernel_time")[0]
    return tuple(LayerNode(name=ort_node_name(n.name + "_kernel_time")[0], op_type=n.op_type,
                           inputs=tuple(dict.fromkeys(producer[i] for i in n.input if i in producer)),
                           outputs=tuple(o for o in n.output if o)) for n in opt.graph.node)


def _dtype(type_shapes) -> str | None:
    for ts in type_shapes or []:
        if isinstance(ts, dict) and ts:
            t = next(iter(ts))
            return _ORT_DTYPES.get(t, t)
    return None


def ort_node_precision(op: str, args: dict) -> str | None:
    """The precision a kernel ran in, from its input (and, for conversions, output) element types: ``fp32``,
    ``int8`` (QLinearConv, QGemm, QLinearSoftmax take uint8/int8), ``fp32->int8`` for a QuantizeLinear."""
    src = _dtype(args.get("input_type_shape"))
    if op in _CONVERSIONS:
        dst = _dtype(args.get("output_type_shape"))
        return f"{src}->{dst}" if src and dst and src != dst else src
    if op in ORT_INT8_KERNELS:
        return "int8"
    return src


def ort_run_ms(events: list[dict]) -> list[float]:
    """The duration of each inference ("model_run" events) of an ONNX Runtime profiling JSON, in order, in ms."""
    return [e.get("dur", 0) / 1000.0 for e in sorted((e for e in events if e.get("cat") == "Session" and
                                                       e.get("name") == "model_run"), key=lambda e: e["ts"])]


def parse_ort_profile(events: list[dict], skip_runs: int = 0) -> list[LayerTime]:
    """Per-node times of each inference in an ONNX Runtime profiling JSON (the list ``end_profiling`` wrote):
    the "Node" ``*_kernel_time`` events, assigned to the "model_run" event whose interval holds them; the first
    ``skip_runs`` runs are dropped and the rest numbered from 0."""
    import bisect

    runs = sorted((e["ts"], e["ts"] + e.get("dur", 0)) for e in events
                  if e.get("cat") == "Session" and e.get("name") == "model_run")
    starts = [r[0] for r in runs]
    out = []
    for e in events:
        if e.get("cat") != "Node" or not str(e.get("name", "")).endswith("_kernel_time"):
            continue
        i = bisect.bisect_right(starts, e["ts"]) - 1
        if i < 0 or e["ts"] > runs[i][1] or i < skip_runs:
            continue
        args = e.get("args") or {}
        op = str(args.get("op_name") or "?")
        name, fused = ort_node_name(e["name"])
        out.append(LayerTime(iteration=i - skip_runs, name=name, op_type=op, ms=e.get("dur", 0) / 1000.0,
                             precision=ort_node_precision(op, args), fused=fused))
    return out
