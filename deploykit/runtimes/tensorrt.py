"""Target ``trt``: TensorRT 10 / 11 through its Python API, CUDA memory and streams through cuda-python.

Build: ``Builder`` -> network (explicit batch is implicit in 10+; strongly typed in 11) -> ``OnnxParser`` ->
``IBuilderConfig`` (flags from ``tensorrt_plan.build_plan``; workspace limit; an optimisation profile when the
input has dynamic dims; detailed profiling verbosity for the engine inspector; a timing cache) ->
``build_serialized_network``. Engines and timing caches live in ``<models dir>/.cache/tensorrt``; an engine
is reused only when its sidecar shows the same ONNX content, build plan, TensorRT version and GPU
(``tensorrt_plan.cache_decision``), otherwise it is rebuilt.

Run: ``IRuntime.deserialize_cuda_engine`` -> execution context (``set_input_shape``, ``set_tensor_address``)
-> ``execute_async_v3`` on a CUDA stream. One inference = host->device copy of the input (pinned memory),
the engine, device->host copy of the output, with CUDA events between them: ``device_times`` reports
``compute`` (engine only, trtexec's "GPU Compute Time") and ``e2e`` (with the copies, trtexec's
"Latency"); the host clock (bench's timer, after ``cudaStreamSynchronize``) gives the third view.
``--no-transfers`` leaves the copies out; ``--cuda-graphs`` replays the engine as a captured CUDA graph.

Per-layer profile (``profile_layers``): a second execution context on the same engine (after the timed loop),
with an ``IProfiler`` attached (``report_layer_time`` per layer per inference, into a
``tensorrt_plan.LayerTimeSink``), run without CUDA graphs; layer types and precisions from the engine inspector.

CUDA library: cuda-python (``cuda.bindings.runtime``, or the older ``cuda.cudart``) from ``deploykit[trt]``.
"""

from __future__ import annotations

import ctypes
from pathlib import Path
from typing import TYPE_CHECKING

from deploykit.core.errors import InputError, UnavailableError
from deploykit.core.lazy import install_hint, is_installed
from deploykit.runtimes import tensorrt_plan
from deploykit.runtimes.base import (DEVICE_TIMING, GRAPH_READBACK, PER_LAYER, Availability, LayerProfile, ModelInput,
                                     register_runtime)
from deploykit.runtimes.cuda import CudaOptions, CudaRuntime

if TYPE_CHECKING:
    import numpy as np

_DFT = ("TensorRT's ONNX parser has no DFT before TensorRT 11.2 (ParC's fft implementation): export the model "
        "with another ParC implementation")


def cudart():
    try:
        from cuda.bindings import runtime as rt  # cuda-python >= 12.6
    except ImportError:
        try:
            from cuda import cudart as rt  # older cuda-python
        except ImportError:
            raise UnavailableError("cuda-python is not installed (needed by the trt target): "
                                   f"{install_hint('cuda')}") from None
    return rt


def ck(result):
    """Unpack a cuda-python call's (error, *values) tuple, raising on a CUDA error."""
    rt = cudart()
    err, rest = result[0], result[1:]
    if err != rt.cudaError_t.cudaSuccess:
        name = rt.cudaGetErrorName(err)[1]
        raise RuntimeError(f"CUDA error {name.decode() if isinstance(name, bytes) else name}")
    if not rest:
        return None
    return rest[0] if len(rest) == 1 else rest


@register_runtime("trt")
class TensorrtRuntime(CudaRuntime):
    description = "TensorRT 10/11 engine built from ONNX (fp32 / tf32 / fp16 / int8 from Q/DQ), CUDA events timing"
    device_kind = "gpu"
    requires = ("tensorrt", "cuda")
    extra = "trt"
    precisions = ("fp32", "tf32", "fp16", "int8")
    unsupported_ops = {"DFT": _DFT}
    capabilities = frozenset({DEVICE_TIMING, PER_LAYER, GRAPH_READBACK})
    rank = 30
    option_groups = (CudaOptions,)
    qdq_profile = "trt"  # TensorRT takes signed, symmetric int8 Q/DQ only

    @classmethod
    def qdq_problems(cls, model) -> list[str]:
        return tensorrt_plan.qdq_report(model).problems

    @classmethod
    def graph_unsupported(cls, op_types: set[str]) -> dict[str, str]:
        from deploykit.core.lazy import version_of

        bad = super().graph_unsupported(op_types)
        ver = version_of("tensorrt")
        if "DFT" in bad and ver and tensorrt_plan.parse_version(ver) >= (11, 2, 0):
            bad.pop("DFT")
        return bad

    @classmethod
    def availability(cls) -> Availability:
        from deploykit.core.lazy import version_of

        missing = []
        if not is_installed("tensorrt"):
            missing.append(f"tensorrt not installed ({install_hint('tensorrt')})")
        if not is_installed("cuda"):
            missing.append(f"cuda-python not installed ({install_hint('cuda')})")
        return cls.gpu_availability(missing, lambda devices: f"tensorrt {version_of('tensorrt')}; " + ", ".join(
            f"cuda:{d.index} {d.name} (sm {d.compute_capability})" for d in devices))

    # -- build / cache -------------------------------------------------------------------------------------
    def _plan(self, model: ModelInput, trt_version: str) -> tuple[tensorrt_plan.BuildPlan, str]:
        import onnx

        from deploykit.onnxio.files import input_specs
        from deploykit.core.hashing import file_sha256

        proto = onnx.load(str(model.path), load_external_data=False)
        spec = next(s for s in input_specs(proto) if s.name == model.input_name)
        profile = tensorrt_plan.profile_shapes(spec.dims, tuple(model.shape))
        plan = tensorrt_plan.build_plan(requested=self.options.precision, graph_precision=model.precision or "fp32",
                                   trt_version=trt_version, qdq=tensorrt_plan.qdq_report(proto), profile=profile)
        return plan, file_sha256(model.path)

    def _build(self, trt, model: ModelInput, plan: tensorrt_plan.BuildPlan, timing_path: Path) -> bytes:
        from deploykit.core.atomic import write_bytes

        logger = self._logger
        builder = trt.Builder(logger)
        network = builder.create_network(0)  # explicit batch is the only mode in 10+; strongly typed by default in 11
        parser = trt.OnnxParser(network, logger)
        if not parser.parse_from_file(str(model.path)):
            errs = [str(parser.get_error(i)) for i in range(parser.num_errors)]
            raise InputError(f"TensorRT's ONNX parser rejected {model.path.name}: {' | '.join(errs)[:400]}")
        config = builder.create_builder_config()
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, plan.workspace_bytes)
        for f in plan.set_flags:
            config.set_flag(getattr(trt.BuilderFlag, f))
        for f in plan.clear_flags:
            if hasattr(trt.BuilderFlag, f):
                config.clear_flag(getattr(trt.BuilderFlag, f))
        config.profiling_verbosity = trt.ProfilingVerbosity.DETAILED
        if plan.profile is not None:
            prof = builder.create_optimization_profile()
            prof.set_shape(model.input_name, *plan.profile)
            config.add_optimization_profile(prof)
        blob = timing_path.read_bytes() if timing_path.is_file() else b""
        cache = config.create_timing_cache(blob)
        config.set_timing_cache(cache, ignore_mismatch=False)
        serialized = builder.build_serialized_network(network, config)
        if serialized is None:
            raise InputError(f"TensorRT could not build an engine for {model.path.name} (precision {plan.precision}; "
                             "see TensorRT's messages above)")
        if self.options.cache:
            write_bytes(timing_path, bytes(memoryview(config.get_timing_cache().serialize())))
        return bytes(memoryview(serialized))

    def load(self, model: ModelInput) -> None:
        from deploykit.runtimes.cuda import require_gpu

        trt = __import__("tensorrt")
        rt = cudart()
        self._trt, self._rt = trt, rt
        self._gpu = require_gpu(self.name, self.options.device)
        ck(rt.cudaSetDevice(self._gpu.index))
        self._logger = trt.Logger(trt.Logger.WARNING)
        plan, onnx_sha = self._plan(model, trt.__version__)
        self._plan_used = plan
        ident = tensorrt_plan.engine_identity(onnx_sha256=onnx_sha, plan=plan, trt_version=trt.__version__,
                                         gpu_name=self._gpu.name, compute_capability=self._gpu.compute_capability)
        cache_dir = self.options.resolved_cache_dir("tensorrt")
        engine_path, sidecar_path = tensorrt_plan.engine_paths(cache_dir, ident)
        timing_path = tensorrt_plan.timing_cache_path(cache_dir, trt.__version__, self._gpu.name,
                                                      self._gpu.compute_capability)
        data, self._cache_note = None, "engine cache off (--no-cache)"
        if self.options.cache:
            data, self._cache_note = self._cached(engine_path, sidecar_path, ident)
        runtime = trt.Runtime(self._logger)
        engine = runtime.deserialize_cuda_engine(data) if data is not None else None
        if data is not None and engine is None:
            self._cache_note = "cached engine did not deserialize: rebuilt"
        self._built = engine is None
        if engine is None:
            if self.options.cache:
                from deploykit.core.atomic import ensure_dir

                ensure_dir(cache_dir)
            data = self._build(trt, model, plan, timing_path)
            engine = runtime.deserialize_cuda_engine(data)
            if engine is None:
                raise InputError(f"TensorRT built an engine for {model.path.name} but cannot deserialize it")
            if self.options.cache:
                self._store(engine_path, sidecar_path, ident, data)
        self._runtime, self._engine = runtime, engine
        self._engine_path = str(engine_path) if self.options.cache else None
        self._setup(model)

    @staticmethod
    def _cached(engine_path: Path, sidecar_path: Path, ident: dict) -> tuple[bytes | None, str]:
        import hashlib

        from deploykit.core.validate import read_json

        try:
            sidecar = read_json(sidecar_path, "engine record") if sidecar_path.is_file() else None
        except InputError:
            sidecar = None  # unreadable: as if absent (rebuilt)
        data = engine_path.read_bytes() if engine_path.is_file() else None
        sha = hashlib.sha256(data).hexdigest() if data is not None else None
        ok, why = tensorrt_plan.cache_decision(sidecar, ident, sha)
        return (data if ok else None), why

    @staticmethod
    def _store(engine_path: Path, sidecar_path: Path, ident: dict, data: bytes) -> None:
        import hashlib

        from deploykit.core.atomic import write_bytes, write_json

        write_bytes(engine_path, data)  # engine first, sidecar last: a sidecar always describes a whole engine
        write_json(sidecar_path, {"identity": ident, "engine_sha256": hashlib.sha256(data).hexdigest(),
                                  "bytes": len(data)})

    # -- buffers and execution -----------------------------------------------------------------------------
    @property
    def _cuda(self) -> CudaOptions:
        return self.options.of(CudaOptions)

    def _setup(self, model: ModelInput) -> None:
        import numpy as np

        trt, rt, eng = self._trt, self._rt, self._engine
        ctx = eng.create_execution_context()
        self._ctx = ctx
        self._stream = ck(rt.cudaStreamCreate())
        self._h = int(self._stream)
        self._events = [ck(rt.cudaEventCreate()) for _ in range(4)]
        self._transfers = self._cuda.transfers  # read once: infer is the timed hot path
        self._bufs = []  # (name, is_input, nbytes, device ptr, host ptr, numpy view)
        names = [eng.get_tensor_name(i) for i in range(eng.num_io_tensors)]
        for name in names:
            if eng.get_tensor_mode(name) == trt.TensorIOMode.INPUT:
                ctx.set_input_shape(name, tuple(model.shape))
        for name in names:
            is_in = eng.get_tensor_mode(name) == trt.TensorIOMode.INPUT
            shape = tuple(ctx.get_tensor_shape(name))
            dtype = np.dtype(trt.nptype(eng.get_tensor_dtype(name)))
            nbytes = int(np.prod(shape)) * dtype.itemsize
            dptr = ck(rt.cudaMalloc(max(nbytes, 1)))
            hptr = ck(rt.cudaMallocHost(max(nbytes, 1)))
            view = np.ctypeslib.as_array((ctypes.c_byte * max(nbytes, 1)).from_address(int(hptr)))[:nbytes]
            view = view.view(dtype).reshape(shape)
            ctx.set_tensor_address(name, int(dptr))
            self._bufs.append((name, is_in, nbytes, int(dptr), int(hptr), view))
        self._graph_exec = None

    def set_input(self, x: np.ndarray) -> None:
        rt = self._rt
        for _name, is_in, nbytes, dptr, hptr, view in self._bufs:
            if is_in:
                view[...] = x.astype(view.dtype, copy=False)
                ck(rt.cudaMemcpy(dptr, hptr, nbytes, rt.cudaMemcpyKind.cudaMemcpyHostToDevice))
        if self._cuda.cuda_graphs:
            self._capture()

    def _capture(self) -> None:
        rt = self._rt
        self._ctx.execute_async_v3(self._h)  # once before capture (TensorRT finishes lazy set-up here)
        ck(rt.cudaStreamSynchronize(self._stream))
        ck(rt.cudaStreamBeginCapture(self._stream, rt.cudaStreamCaptureMode.cudaStreamCaptureModeThreadLocal))
        self._ctx.execute_async_v3(self._h)
        graph = ck(rt.cudaStreamEndCapture(self._stream))
        self._graph = graph
        self._graph_exec = ck(rt.cudaGraphInstantiate(graph, 0))

    def infer(self) -> None:
        rt, s, ev = self._rt, self._stream, self._events
        transfers = self._transfers
        rt.cudaEventRecord(ev[0], s)
        if transfers:
            for _, is_in, nbytes, dptr, hptr, _ in self._bufs:
                if is_in:
                    rt.cudaMemcpyAsync(dptr, hptr, nbytes, rt.cudaMemcpyKind.cudaMemcpyHostToDevice, s)
        rt.cudaEventRecord(ev[1], s)
        if self._graph_exec is not None:
            rt.cudaGraphLaunch(self._graph_exec, s)
        else:
            self._ctx.execute_async_v3(self._h)
        rt.cudaEventRecord(ev[2], s)
        if transfers:
            for _, is_in, nbytes, dptr, hptr, _ in self._bufs:
                if not is_in:
                    rt.cudaMemcpyAsync(hptr, dptr, nbytes, rt.cudaMemcpyKind.cudaMemcpyDeviceToHost, s)
        rt.cudaEventRecord(ev[3], s)

    def sync(self) -> None:
        ck(self._rt.cudaStreamSynchronize(self._stream))

    def device_times(self) -> dict[str, int]:
        rt, ev = self._rt, self._events
        out = {"compute": int(ck(rt.cudaEventElapsedTime(ev[1], ev[2])) * 1e6)}
        if self._transfers:
            out["e2e"] = int(ck(rt.cudaEventElapsedTime(ev[0], ev[3])) * 1e6)
        return out

    def outputs(self) -> list[np.ndarray]:
        import numpy as np

        rt = self._rt
        self.infer()
        self.sync()
        outs = []
        for _, is_in, nbytes, dptr, hptr, view in self._bufs:
            if not is_in:
                if not self._transfers:
                    ck(rt.cudaMemcpy(hptr, dptr, nbytes, rt.cudaMemcpyKind.cudaMemcpyDeviceToHost))
                outs.append(np.array(view, dtype=np.float32, copy=True))
        return outs

    def info(self) -> dict:
        trt, plan = self._trt, self._plan_used
        layers = self._layers()
        return {
            "runtime": "tensorrt",
            "version": trt.__version__,
            "device": f"cuda:{self._gpu.index}",
            "gpu": self._gpu.name,
            "compute_capability": self._gpu.compute_capability,
            "precision": plan.precision,
            "strongly_typed": plan.strongly_typed,
            "builder_flags_set": list(plan.set_flags),
            "builder_flags_cleared": list(plan.clear_flags),
            "profile": [list(s) for s in plan.profile] if plan.profile else None,
            "workspace_bytes": plan.workspace_bytes,
            "engine": self._engine_path,
            "engine_built_now": self._built,
            "engine_cache": self._cache_note,
            "cuda_graphs": bool(self._cuda.cuda_graphs),
            "transfers": "host<->device copies timed (pinned host memory)" if self._transfers
                         else "device-resident I/O",
            "timing_views": "host clock after stream sync (samples_ms); CUDA events: compute = engine only, "
                            "e2e = with copies (device_timing)",
            "notes": list(plan.notes),
            "layers": layers,
        }

    def _layers(self) -> dict:
        """The loaded engine's layers (``tensorrt_plan.layer_summary`` of the engine inspector's JSON)."""
        try:
            insp = self._engine.create_engine_inspector()
            insp.execution_context = self._ctx
            return tensorrt_plan.layer_summary(insp.get_engine_information(self._trt.LayerInformationFormat.JSON))
        except Exception as exc:
            return {"available": False, "reason": f"engine inspector failed: {exc}"}

    def profile_layers(self, model: ModelInput, x, iterations: int) -> LayerProfile:
        """A second execution context on the loaded engine with an IProfiler attached; the device buffers of the
        timed context (holding the bound input) are reused. ``PROFILE_WARMUP`` unrecorded inferences first."""
        trt, rt, eng = self._trt, self._rt, self._engine
        sink = tensorrt_plan.LayerTimeSink()
        ctx = eng.create_execution_context()
        for name, is_in, _, dptr, _, _ in self._bufs:
            if is_in:
                ctx.set_input_shape(name, tuple(model.shape))
            ctx.set_tensor_address(name, dptr)
        profiler = _profiler(trt, sink)  # kept alive as long as the context that calls it
        ctx.profiler = profiler
        for i in range(PROFILE_WARMUP + iterations):
            if i >= PROFILE_WARMUP:
                sink.next_iteration()
            ctx.execute_async_v3(self._h)
            ck(rt.cudaStreamSynchronize(self._stream))
        del ctx
        return LayerProfile(runtime="tensorrt", iterations=iterations,
                            records=tensorrt_plan.trt_layer_records(sink.calls, self._layers()),
                            profiler="TensorRT IProfiler (report_layer_time per layer, separate execution context)")

    def runtime_graph(self, path) -> dict:
        """Build (or take from the engine cache) the engine for the ONNX file ``path`` as ``load`` does -- this
        runtime's --precision and --device, a batch of 1 for a dynamic batch axis -- and list its layers with the
        precision each one runs in (``tensorrt_plan.layer_summary``)."""
        import onnx

        from deploykit.onnxio.files import graph_precision, image_input_shape

        path = Path(path)
        proto = onnx.load(str(path), load_external_data=False)
        name, shape, dtype = image_input_shape(proto, None, None, where=path.name)
        self.load(ModelInput(path, name, shape, dtype, precision=graph_precision(proto)))
        try:
            plan = self._plan_used
            return {"runtime": "tensorrt", "version": self._trt.__version__, "precision": plan.precision,
                    "builder_flags_set": list(plan.set_flags), "layers": self._layers()}
        finally:
            self.close()

    def close(self) -> None:
        rt = getattr(self, "_rt", None)
        if rt is None:
            return
        for _, _, _, dptr, hptr, _ in getattr(self, "_bufs", []):
            rt.cudaFree(dptr)
            rt.cudaFreeHost(hptr)
        self._bufs = []
        if getattr(self, "_graph_exec", None) is not None:
            rt.cudaGraphExecDestroy(self._graph_exec)
            rt.cudaGraphDestroy(self._graph)
            self._graph_exec = None
        for e in getattr(self, "_events", []):
            rt.cudaEventDestroy(e)
        self._events = []
        if getattr(self, "_stream", None) is not None:
            rt.cudaStreamDestroy(self._stream)
            self._stream = None
        self._ctx = self._engine = self._runtime = None


PROFILE_WARMUP = 3


def _profiler(trt, sink: tensorrt_plan.LayerTimeSink):
    """A ``trt.IProfiler`` that forwards ``report_layer_time`` to ``sink`` (the documented TensorRT 10 Python API:
    subclass, call the base ``__init__``, override ``report_layer_time(layer_name, ms)``)."""

    class _Profiler(trt.IProfiler):
        def __init__(self):
            trt.IProfiler.__init__(self)

        def report_layer_time(self, layer_name, ms):
            sink.report(layer_name, ms)

    return _Profiler()
