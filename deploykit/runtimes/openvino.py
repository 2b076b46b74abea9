"""Target ``openvino``: OpenVINO Runtime on CPU (default), GPU, NPU or AUTO/HETERO/MULTI when present.

Latency mode: one infer request, ``PERFORMANCE_HINT=LATENCY``, synchronous ``infer()`` -- the request API
benchmark_app uses with ``-hint latency`` -- on the request's own input tensor, written once (as benchmark_app
does). Throughput mode: ``PERFORMANCE_HINT=THROUGHPUT`` and the device's optimal number of requests (or
``--requests`` / ``--streams``), driven asynchronously by bench through ``submit``.

Precision honesty: ``--precision fp32|bf16|fp16`` sets ``INFERENCE_PRECISION_HINT`` (f32|bf16|f16); whatever is
asked, the report records the hint *read back from the compiled model*, the precision each executed node ran in
(``runtimePrecision`` of the runtime model) and the execution devices. OpenVINO defaults to bf16 on CPUs with
bf16 units (AVX512-BF16 / AMX) and silently falls back to f32 where a requested precision is unsupported, so
only the read-back value is trusted.

Reads ONNX and OpenVINO IR (.xml + .bin) directly; compiled blobs are cached in ``<models dir>/.cache/openvino/<key>``
(OpenVINO's CACHE_DIR, one folder per model file, device and settings; OpenVINO keys the blob on the model content
and the compile settings). OpenVINO trusts a blob it finds, so deploykit records each blob's SHA-256 when it is
written (``deploykit-blobs.json`` in that folder) and removes, before compiling, any blob that is not recorded or
no longer matches -- a damaged blob is compiled again, never loaded. An unwritable store runs without the cache.

Per-layer profile (``profile_layers``): a second compiled model with ``PERF_COUNT`` on (no blob cache), whose
request's performance counters (``get_profiling_info``) give every executed node's ``real_time``, ``node_type`` and
``exec_type`` -- the kernel and the precision it ran in (``brgconv_avx512_I8`` -> int8, ``jit_avx2_FP32`` -> fp32) --
and the runtime model's ``originalLayersNames``: the ONNX nodes merged into it, by op type (``fused``: Conv + Add +
Relu; MatMul + Softmax + MatMul for an attention block OpenVINO runs as one subgraph, whose softmax then has no
time of its own).

Read-back (``runtime_graph``): the compiled model's runtime graph (``CompiledModel.get_runtime_model()``): every
executed layer with its ``runtimePrecision`` and the ``originalLayersNames`` merged into it (e.g. Conv + Add + Relu).
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

from deploykit.core.errors import InputError, UnavailableError, UsageError, squash
from deploykit.core.lazy import require
from deploykit.runtimes.base import (ACTIVATIONS, CONCURRENT, CONTROL_FLOW_OPS, GRAPH_READBACK, PEAK, PER_LAYER,
                                     Availability, GemmKernel, LayerNode, LayerProfile, LayerTime, ModelInput, Runtime,
                                     register_runtime)
from deploykit.runtimes.gemm import load_gemm
from deploykit.runtimes.options import RuntimeOptions, ThroughputOptions

if TYPE_CHECKING:
    import numpy as np

OV_PRECISION = {"fp32": "f32", "bf16": "bf16", "fp16": "f16"}
_FROM_OV = {"f32": "fp32", "bf16": "bf16", "f16": "fp16", "i8": "int8", "u8": "int8", "f64": "fp64"}
_OV_NP_DTYPES = {"f32": "float32", "f16": "float16", "bf16": "bfloat16", "f64": "float64"}
# device names OpenVINO knows (a name outside this list is a typo, not missing hardware)
# `deploykit peak`: the float MatMul at each INFERENCE_PRECISION_HINT (bf16 / fp16 run only on CPUs with those
# units: elsewhere OpenVINO falls back to f32) and a Q/DQ MatMul, which OpenVINO runs as an int8 kernel
PEAK_KERNELS = (
    GemmKernel("MatMul (hint f32)", "fp32", "fp32"),
    GemmKernel("MatMul (hint bf16)", "bf16", "fp32"),
    GemmKernel("MatMul (hint f16)", "fp16", "fp32"),
    GemmKernel("Q/DQ MatMul u8s8", "int8", "qdq"),
)

KNOWN_DEVICES = ("CPU", "GPU", "NPU", "AUTO", "HETERO", "MULTI", "BATCH")
META_DEVICES = ("AUTO", "HETERO", "MULTI", "BATCH")

_CORE = None


def core():
    """One ov.Core per process (creating one enumerates plugins)."""
    global _CORE
    if _CORE is None:
        ov = require("openvino", "the openvino target")
        _CORE = ov.Core()
    return _CORE


def check_device(device: str, available: list[str]) -> None:
    """Raise a clean error unless ``device`` (CPU, GPU.1, AUTO:GPU,CPU, ...) can run on ``available``."""
    here = ", ".join(available) or "none"
    dev = device.strip().upper()
    base, _, rest = dev.partition(":")
    if base in META_DEVICES:
        parts = [p.split("(")[0].strip() for p in rest.split(",") if p.strip()] if rest else []
        for p in parts:
            check_device(p, available)
        return
    if base.split(".")[0] not in KNOWN_DEVICES:
        raise UsageError(f"unknown OpenVINO device {device!r} (devices here: {here}; OpenVINO knows "
                         f"{', '.join(KNOWN_DEVICES)})")
    family = base.split(".")[0]
    ok = base in available or (base == family and any(a.split(".")[0] == family for a in available))
    if not ok:
        raise UnavailableError(f"OpenVINO device {device} is not available here (devices here: {here})")


def check_compiles(path: Path, device: str, config: dict, shape: tuple | None = None, timeout: float = 900) -> None:
    """Compile ``path`` once in a child process first, so a crash inside OpenVINO cannot take deploykit down.

    OpenVINO's low-precision transformations have crashed (segmentation fault in ``compile_model``, no Python
    exception) on some int8 QDQ graphs -- e.g. OpenVINO 2026.4's CPU plugin on Concat -> Q/DQ with a non-zero
    zero point -> Mul/Add by a float constant. A child that dies by a signal becomes one clean error (exit 3);
    any ordinary failure is left to the compile in this process, which reports it. The child compiles with the
    same settings, so with CACHE_DIR set the second compile loads its blob. Costs one compile; used for
    quantized graphs only."""
    import json
    import signal
    import subprocess

    from deploykit.core.child import die_with_parent, python_argv

    args = python_argv("from deploykit.runtimes.openvino import _compile_child; _compile_child()",
                       str(path), device, json.dumps(config), json.dumps(list(shape or [])))
    try:
        proc = subprocess.run(args, capture_output=True, text=True, timeout=timeout, preexec_fn=die_with_parent)
    except subprocess.TimeoutExpired:
        return  # slow, not crashed: the real compile decides
    if proc.returncode >= 0:
        return
    from deploykit.core.lazy import version_of

    try:
        sig = signal.Signals(-proc.returncode).name
    except ValueError:
        sig = f"signal {-proc.returncode}"
    if -proc.returncode == signal.SIGKILL:  # sent from outside: OpenVINO does not kill itself this way
        raise UnavailableError(
            f"the OpenVINO compile check of {Path(path).name} for {device} was killed by SIGKILL (possibly out of "
            "memory): the kernel's OOM killer sends SIGKILL; nothing says the file or OpenVINO is at fault -- free "
            "memory or use a smaller --batch / --resolution")
    raise UnavailableError(
        f"OpenVINO {version_of('openvino')} crashed ({sig}) compiling {Path(path).name} for {device}: a fault "
        "inside OpenVINO's plugin on this quantized graph, not a broken file; ONNX Runtime can run it (target ort)")


def _compile_child() -> None:
    """Entry point of ``check_compiles``' child: argv = path, device, config JSON, input shape JSON."""
    import json
    import sys

    path, device, config, shape = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), json.loads(sys.argv[4])
    c = core()
    try:
        m = c.read_model(path)
        if shape and (not m.input(0).get_partial_shape().is_static or _shape_of(m.input(0)) != tuple(shape)):
            m.reshape({m.input(0).get_any_name(): shape})
        c.compile_model(m, device, config)
    except Exception as exc:  # an ordinary failure: the parent's own compile reports it
        print(squash(exc), file=sys.stderr)
        sys.exit(1)


BLOB_INDEX = "deploykit-blobs.json"
_BLOB_INDEX_SCHEMA = {"type": "object", "additionalProperties": {
    "type": "object", "required": ["sha256", "bytes"],
    "properties": {"sha256": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
                   "bytes": {"type": "integer", "minimum": 0}}}}


def _blob_index(folder: Path) -> dict:
    """The recorded blobs of a cache folder; an index that cannot be read or does not fit its schema is empty (so
    every blob in the folder is compiled again)."""
    from deploykit.core.validate import read_json, valid

    p = folder / BLOB_INDEX
    if not p.is_file():
        return {}
    try:
        data = read_json(p, "blob index")
    except InputError:
        return {}
    return data if valid(data, _BLOB_INDEX_SCHEMA) else {}


def verified_cache_dir(base: Path, model_path: Path, device: str, config: dict) -> tuple[Path | None, str | None]:
    """(the CACHE_DIR for this model, device and settings, a note), after removing every blob in it that is not
    recorded in its index or whose size or SHA-256 no longer matches. (None, why) when the folder cannot be
    written (a read-only store runs without the cache)."""
    import hashlib
    import json

    from deploykit.core.atomic import ensure_dir
    from deploykit.core.hashing import file_sha256

    src = Path(model_path).resolve()
    key = hashlib.sha256(json.dumps([str(src), device, sorted((k, str(v)) for k, v in config.items())])
                         .encode()).hexdigest()[:20]
    folder = base / key
    try:
        ensure_dir(folder)
    except InputError as exc:
        return None, f"compiled-model cache off: {exc.one_line()}"
    index = _blob_index(folder)
    removed = []
    for blob in sorted(folder.glob("*.blob")):
        rec = index.get(blob.name)
        try:
            ok = rec is not None and blob.stat().st_size == rec["bytes"] and file_sha256(blob) == rec["sha256"]
        except OSError:
            ok = False
        if not ok:
            try:
                blob.unlink()
                removed.append(blob.name)
            except OSError:
                return None, f"compiled-model cache off: cannot remove the unverified blob {blob}"
    note = None
    if removed:  # forget them, so that the blobs compiled now are recorded afresh
        from deploykit.core.atomic import write_json

        try:
            write_json(folder / BLOB_INDEX, {k: v for k, v in index.items() if k not in removed})
        except InputError:
            pass
        note = (f"removed {len(removed)} cached blob(s) that failed their SHA-256 check or were not recorded "
                f"({', '.join(removed)}): compiled again")
    return folder, note


def record_blobs(folder: Path) -> None:
    """Record the SHA-256 of every blob in ``folder`` not yet recorded (the ones OpenVINO just wrote)."""
    from deploykit.core.atomic import write_json
    from deploykit.core.hashing import file_sha256

    index = _blob_index(folder)
    changed = False
    for blob in folder.glob("*.blob"):
        if blob.name not in index:
            try:
                index[blob.name] = {"sha256": file_sha256(blob), "bytes": blob.stat().st_size}
                changed = True
            except OSError:
                continue
    if changed:
        try:
            write_json(folder / BLOB_INDEX, index)
        except InputError:
            pass  # unrecorded blobs are removed (and compiled again) next time


def type_name(t) -> str:
    return t.get_type_name() if hasattr(t, "get_type_name") else str(t)


@register_runtime("openvino")
class OpenVinoRuntime(Runtime):
    description = "OpenVINO Runtime (CPU by default; GPU/NPU/AUTO when present)"
    device_kind = "cpu"
    requires = ("openvino",)
    extra = "openvino"
    precisions = ("fp32", "bf16", "fp16", "int8")  # int8 = a quantized (QDQ / FakeQuantize) file, run as given
    int8_float_precision = "fp32"  # the float rest of an int8 file: fp32 unless asked (bf16 on bf16 CPUs)
    capabilities = frozenset({CONCURRENT, PER_LAYER, GRAPH_READBACK, PEAK})
    file_formats = (".onnx", ".xml")
    rank = 20
    option_groups = (ThroughputOptions,)

    @classmethod
    def availability(cls) -> Availability:
        av = super().availability()
        if not av.available:
            return av
        try:
            c = core()
            devs = [f"{d} ({c.get_property(d, 'FULL_DEVICE_NAME')})" for d in c.available_devices]
        except Exception as exc:  # a broken install
            return Availability(False, f"openvino does not initialise: {squash(exc, 200)}")
        from deploykit.core.lazy import version_of

        return Availability(True, detail=f"openvino {version_of('openvino')}; devices: {', '.join(devs) or 'none'}")

    @property
    def device(self) -> str:
        return (self.options.device or "CPU").strip().upper()

    def _precision_hint(self) -> str | None:
        """INFERENCE_PRECISION_HINT for --precision (None: OpenVINO's default); int8 is a file, not a setting."""
        if self.options.precision == "int8":
            raise UsageError("--precision int8 is not a setting on openvino: give a quantized model file "
                             "(it runs in int8 as given)")
        return OV_PRECISION[self.options.precision] if self.options.precision else None

    def preflight(self) -> None:
        self._precision_hint()
        check_device(self.device, list(core().available_devices))

    def _config(self) -> dict:
        o, tp = self.options, self.options.of(ThroughputOptions)
        cfg = {"PERFORMANCE_HINT": "THROUGHPUT" if o.mode == "throughput" else "LATENCY"}
        if o.precision:
            cfg["INFERENCE_PRECISION_HINT"] = self._precision_hint()
        if o.threads and self.device.startswith("CPU"):
            cfg["INFERENCE_NUM_THREADS"] = o.threads
        if self.shared and self.device.startswith("CPU"):
            # beside another model in this process (an A/B): OpenVINO's maintainers advise pinning off when several
            # compiled models share a process (it marks the cores a model's threads are pinned to as used)
            cfg["ENABLE_CPU_PINNING"] = False
        if tp.streams:
            cfg["NUM_STREAMS"] = tp.streams
        if tp.requests:
            cfg["PERFORMANCE_HINT_NUM_REQUESTS"] = tp.requests
        return cfg

    def load(self, model: ModelInput) -> None:
        ov = require("openvino", "the openvino target")
        self._ov = ov
        self.preflight()
        self._config_used = self._config()
        self._cache_note = None
        blob_dir = None
        if self.options.cache:
            blob_dir, self._cache_note = verified_cache_dir(Path(self.options.resolved_cache_dir("openvino")),
                                                            Path(model.path), self.device, self._config_used)
            if blob_dir is not None:
                self._config_used["CACHE_DIR"] = str(blob_dir)
        if model.precision == "int8":
            check_compiles(model.path, self.device, self._config_used, tuple(model.shape))
        cm = self._compile(model, self._config_used)
        self._cm = cm
        if blob_dir is not None:
            record_blobs(blob_dir)
        n = 1
        if self.options.mode == "throughput":
            n = self.options.of(ThroughputOptions).requests or int(cm.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS"))
        self._reqs = [cm.create_infer_request() for _ in range(n)]
        self._req = self._reqs[0]
        self._n_out = len(cm.outputs)
        self._done = None

    def _compile(self, model: ModelInput, config: dict):
        c = core()
        path = str(model.path)
        try:
            cm = c.compile_model(path, self.device, config)
            if _shape_of(cm.input(0)) != tuple(model.shape):  # dynamic or other dims: fix them, compile again
                m = c.read_model(path)
                m.reshape({m.input(0).get_any_name(): list(model.shape)})
                cm = c.compile_model(m, self.device, config)
        except (UsageError, UnavailableError):
            raise
        except Exception as exc:
            raise InputError(f"OpenVINO cannot compile {model.path.name} for {self.device}: {squash(exc)}") from None
        return cm

    def set_input(self, x: np.ndarray) -> None:
        for r in self._reqs:
            _write_input(r, x)

    def infer(self) -> None:
        self._req.infer()

    def outputs(self) -> list[np.ndarray]:
        import numpy as np

        self._req.infer()
        return [np.array(self._req.get_output_tensor(i).data, copy=True) for i in range(self._n_out)]

    # throughput mode
    def parallel_requests(self) -> int:
        return len(self._reqs)

    def _on_done(self, slot: int) -> None:
        self._done(slot)

    def submit(self, slot: int, done) -> None:
        if done != self._done:  # != not "is not": a bound method is a new object at every attribute access
            self._done = done
            for i, r in enumerate(self._reqs):
                r.set_callback(self._on_done, i)
        req = self._reqs[slot]
        # A request stays busy until its completion callback has returned. A caller that frees the slot inside
        # the callback and restarts it from another thread (LoadGen's dispatcher) can get here first: yield
        # until the callback is done (microseconds). From inside its own callback this would never end.
        deadline = None
        while True:
            try:
                req.start_async()
                return
            except RuntimeError as exc:
                if "busy" not in str(exc).lower():
                    raise
                deadline = deadline or time.monotonic() + 5.0
                if time.monotonic() > deadline:
                    raise
                time.sleep(0)

    def wait_all(self) -> None:
        for r in self._reqs:
            r.wait()

    def info(self) -> dict:
        cm = self._cm

        def prop(name):
            try:
                v = cm.get_property(name)
            except Exception:
                return None
            return type_name(v) if hasattr(v, "get_type_name") else v

        hint = prop("INFERENCE_PRECISION_HINT")
        runtime_prec = _runtime_precisions(cm)
        quantized = any(p in ("i8", "u8", "i4", "u4") for p in runtime_prec)
        precision = "int8" if quantized else _FROM_OV.get(hint or "", hint or "fp32")
        info = {
            "runtime": "openvino",
            "version": self._ov.get_version(),
            "device": self.device,
            "execution_devices": prop("EXECUTION_DEVICES"),
            "precision": precision,
            "inference_precision_hint": hint,
            "precision_requested": self.options.precision,
            "runtime_precisions": runtime_prec,
            "performance_hint": prop("PERFORMANCE_HINT"),
            "profiling": str(prop("PERF_COUNT")).upper() in ("YES", "TRUE"),  # read back: the timed model's counters
            "mode": self.options.mode,
            "requests": len(self._reqs),
            "optimal_requests": prop("OPTIMAL_NUMBER_OF_INFER_REQUESTS"),
            "streams": prop("NUM_STREAMS"),
            "threads": prop("INFERENCE_NUM_THREADS"),
            "cpu_pinning": prop("ENABLE_CPU_PINNING"),  # CPU only (None elsewhere), as OpenVINO chose them
            "scheduling_core_type": str(prop("SCHEDULING_CORE_TYPE") or "") or None,
            "cache_dir": self._config_used.get("CACHE_DIR"),
            "loaded_from_cache": prop("LOADED_FROM_CACHE"),
        }
        if getattr(self, "_cache_note", None):
            info["cache_note"] = self._cache_note
        if self.options.precision and precision != self.options.precision and not quantized:
            info["precision_note"] = (f"--precision {self.options.precision} was requested but the compiled model "
                                      f"reports {hint}: {self.device} does not support it here and OpenVINO fell back")
        return info

    def close(self) -> None:
        self._reqs = []
        self._req = None
        self._cm = None

    def profile_layers(self, model: ModelInput, x, iterations: int) -> LayerProfile:
        """A second compiled model (this run's settings in latency mode, PERF_COUNT on, no blob cache), one request,
        ``PROFILE_WARMUP`` inferences, then ``iterations`` inferences each followed by a read of its counters."""
        require("openvino", "the openvino target")
        config = {k: v for k, v in self._config().items() if k not in ("CACHE_DIR", "NUM_STREAMS",
                                                                       "PERFORMANCE_HINT_NUM_REQUESTS")}
        config.update({"PERFORMANCE_HINT": "LATENCY", "PERF_COUNT": True})
        cm = self._compile(model, config)
        req = cm.create_infer_request()
        _write_input(req, x)
        for _ in range(PROFILE_WARMUP):
            req.infer()
        merged = _original_layers(cm, _onnx_op_types(model.path))
        graph = ov_layer_graph(cm)
        records, wall = [], []
        for i in range(iterations):
            req.infer()
            wall.append(req.latency)  # OpenVINO's own request timer, ms
            records += ov_layer_records(i, req.get_profiling_info(), merged)
        notes = ()
        if self.options.mode == "throughput":
            notes = ("profiled with one request in latency mode (the timed run was in throughput mode)",)
        return LayerProfile(runtime="openvino", iterations=iterations, records=records, notes=notes,
                            wall_ms=tuple(wall), graph=graph,
                            profiler="OpenVINO performance counters (PERF_COUNT, InferRequest.get_profiling_info)")

    @classmethod
    def peak_kernels(cls) -> tuple[GemmKernel, ...]:
        return PEAK_KERNELS

    @classmethod
    def gemm_session(cls, kernel: GemmKernel, m: int, k: int, n: int, threads: int, folder: Path):
        # a float graph runs at the kernel's precision hint, the Q/DQ one as a quantized file; the hint is a request
        # OpenVINO may not honour, so what ran is read back from the compiled model
        hint = kernel.precision if kernel.graph == "fp32" else None
        rt = load_gemm(cls(RuntimeOptions(threads=threads, precision=hint, cache=False)), kernel, m, k, n, folder)
        return rt, rt.info().get("precision")

    def runtime_graph(self, path) -> dict:
        """Compile ``path`` (ONNX or OpenVINO IR) on this runtime's --device with INFERENCE_PRECISION_HINT from
        --precision (f32 when none is given: an "fp32" read-back must not silently run bf16) and --threads, and
        summarise the runtime graph OpenVINO executes."""
        hint = self._precision_hint() or "f32"
        return openvino_runtime_graph(path, precision_hint=hint, threads=self.options.threads, device=self.device)

    @classmethod
    def inspect_file(cls, path: Path):
        """Inputs and precision of an OpenVINO IR file (.xml with its .bin)."""
        from deploykit.onnxio.files import InputSpec

        path = Path(path)
        if not path.is_file():
            raise InputError(f"model file not found: {path}")
        if not path.with_suffix(".bin").is_file():
            raise InputError(f"{path}: its weights file {path.with_suffix('.bin').name} is missing")
        try:
            m = core().read_model(str(path))
        except Exception as exc:
            raise InputError(f"{path} is not a readable OpenVINO IR file ({squash(exc, 200)})") from None
        specs = []
        for p in m.inputs:
            dims = tuple(d.get_length() if d.is_static else None for d in p.get_partial_shape())
            et = type_name(p.get_element_type())
            specs.append(InputSpec(p.get_any_name(), dims, _OV_NP_DTYPES.get(et, f"openvino-type-{et}")))
        ops = Counter(op.get_type_name() for op in m.get_ops())
        precision = "int8" if ops.get("FakeQuantize") or ops.get("FakeConvert") else \
            _FROM_OV.get(type_name(m.inputs[0].get_element_type()), "fp32")
        return specs, precision


def _write_input(req, x: np.ndarray) -> None:
    """Copy ``x`` once into the request's own input tensor (memory the plugin allocated for it), as benchmark_app
    does, rather than handing the request a tensor over numpy memory."""
    t = req.get_input_tensor()
    if tuple(t.shape) != tuple(x.shape):
        raise UsageError(f"input of shape {tuple(x.shape)} for a compiled model that takes {tuple(t.shape)}")
    t.data[...] = x


def _shape_of(port) -> tuple | None:
    ps = port.get_partial_shape()
    return tuple(d.get_length() for d in ps) if ps.is_static else None


def _runtime_precisions(cm) -> dict[str, int]:
    """How many executed nodes ran in each precision (the runtime model's ``runtimePrecision``)."""
    counts: Counter = Counter()
    try:
        for op in cm.get_runtime_model().get_ops():
            if op.get_type_name() in ("Parameter", "Result", "Constant"):
                continue
            rt = op.get_rt_info()
            if "runtimePrecision" in rt:
                counts[str(rt["runtimePrecision"].astype(str))] += 1
    except Exception:
        return {}
    return dict(counts)


def reference_f32(path: Path, x: np.ndarray) -> np.ndarray:
    """Reference outputs for a file only OpenVINO reads (IR): OpenVINO CPU with f32 inference precision."""
    import numpy as np

    c = core()
    m = c.read_model(str(path))
    if not m.input(0).get_partial_shape().is_static or _shape_of(m.input(0)) != x.shape:
        m.reshape({m.input(0).get_any_name(): list(x.shape)})
    cm = c.compile_model(m, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    return np.array(cm(x)[cm.output(0)], copy=True)


def openvino_runtime_graph(path, *, precision_hint: str = "f32", threads: int | None = 1, device: str = "CPU") -> dict:
    """Compile ``path`` (ONNX or OpenVINO IR) with OpenVINO (``INFERENCE_PRECISION_HINT`` = ``precision_hint``;
    ``threads`` inference threads on a CPU device, None: OpenVINO's choice) and summarise the runtime graph it
    executes."""
    c = core()
    check_device(device, list(c.available_devices))
    op_types = _onnx_op_types(path)
    config = {"INFERENCE_PRECISION_HINT": precision_hint}
    if threads and device.upper().startswith("CPU"):
        config["INFERENCE_NUM_THREADS"] = threads
    if _is_qdq(path):  # an int8 QDQ graph: compile in a child first (OpenVINO's plugin has crashed on some)
        check_compiles(Path(path), device, config)
    try:
        model = c.read_model(str(path))
        compiled = c.compile_model(model, device, config)
    except Exception as exc:
        raise InputError(f"OpenVINO cannot compile {path}: {squash(exc)}") from None
    return summarize_openvino_runtime(compiled.get_runtime_model(), op_types, precision_hint)


def _is_qdq(path) -> bool:
    if not str(path).endswith(".onnx"):
        return False
    from deploykit.onnxio.files import load_onnx, op_types

    return "QuantizeLinear" in op_types(load_onnx(Path(path), load_external_data=False))


def _onnx_op_types(path) -> dict[str, str]:
    """ONNX node name -> op type (OpenVINO's originalLayersNames are the ONNX node names)."""
    if not str(path).endswith(".onnx"):
        return {}
    import onnx

    m = onnx.load(str(path), load_external_data=False)
    return {n.name: n.op_type for n in m.graph.node if n.name}


def summarize_openvino_runtime(runtime_model, onnx_types: dict[str, str] | None = None,
                               precision_hint: str = "f32") -> dict:
    """The read-back summary of a compiled model's runtime graph (``CompiledModel.get_runtime_model()``)."""
    onnx_types = onnx_types or {}
    layers: Counter = Counter()
    precisions: dict[str, Counter] = {}
    fused: Counter = Counter()
    conv_with_act = 0
    for op in runtime_model.get_ordered_ops():
        info = op.get_rt_info()

        def get(key, default="", info=info):  # bound now: used only within this iteration
            return info[key].astype(str) if key in info else default

        ltype = get("layerType", op.get_type_name())
        if ltype in ("Const", "Input", "Output", "Parameter", "Result"):
            continue
        prec = get("runtimePrecision", "?") if ltype not in CONTROL_FLOW_OPS else "control"  # not its condition's u8
        layers[ltype] += 1
        precisions.setdefault(ltype, Counter())[prec] += 1
        names = [n for n in get("originalLayersNames").split(",") if n]
        if len(names) > 1:
            merged = [onnx_types.get(n, "?") for n in names[1:]]
            for t in merged:
                fused[t] += 1
            if ltype in ("Convolution", "FullyConnected") and any(t in ACTIVATIONS for t in merged):
                conv_with_act += 1
    int8 = {lt: sum(c for p, c in pc.items() if p in ("u8", "i8")) for lt, pc in precisions.items()}
    int8 = {k: v for k, v in int8.items() if v}

    def split(lt):
        pc = precisions.get(lt, Counter())
        q = sum(c for p, c in pc.items() if p in ("u8", "i8"))
        return {"int8": q, "float": sum(pc.values()) - q}

    return {
        "runtime": "openvino",
        "inference_precision_hint": precision_hint,
        "layers": dict(layers.most_common()),
        "runtime_precisions": {lt: dict(pc) for lt, pc in precisions.items()},
        "int8_layers": int8,
        "fused_into_other_layers": dict(fused.most_common()),
        "layers_with_fused_activation": conv_with_act,
        "softmax": split("Softmax"),
        "matmul": split("MatMul"),
        "fake_quantize_executed": layers.get("FakeQuantize", 0),
    }


PROFILE_WARMUP = 3
# OpenVINO exec_type precision suffixes (jit_avx2_I8, brgconv_avx512_FP32, ref_any_f32, unknown_u8, ...)
_EXEC_PRECISIONS = {"f32": "fp32", "fp32": "fp32", "bf16": "bf16", "f16": "fp16", "fp16": "fp16", "i8": "int8",
                    "u8": "int8", "i4": "int4", "u4": "int4", "i32": "int32", "i64": "int64", "f64": "fp64",
                    "boolean": "bool", "u1": "bin"}


def exec_precision(exec_type: str) -> str | None:
    """The precision a layer ran in, from OpenVINO's ``exec_type`` (its kernel name ends with the precision):
    ``brgconv_avx512_I8`` -> int8, ``jit_avx2_FP32`` -> fp32, ``ref_any_bf16`` -> bf16; None when it names none
    (``undef``)."""
    tail = str(exec_type).rsplit("_", 1)[-1].lower()
    return _EXEC_PRECISIONS.get(tail)


def ov_layer_records(iteration: int, infos, merged: dict[str, tuple[str, ...]] | None = None) -> list[LayerTime]:
    """The executed nodes of one inference's performance counters (``ProfilingInfo``: node_name, node_type,
    exec_type, real_time, status) as LayerTime records; ``merged``: node name -> op types of the ONNX nodes fused
    into it."""
    merged = merged or {}
    out = []
    for p in infos:
        if str(p.status).rsplit(".", 1)[-1] != "EXECUTED":
            continue  # NOT_RUN (constant, reshape in place), OPTIMIZED_OUT
        out.append(LayerTime(iteration=iteration, name=p.node_name, op_type=p.node_type,
                             ms=p.real_time.total_seconds() * 1000.0,
                             precision=None if p.node_type in CONTROL_FLOW_OPS else exec_precision(p.exec_type),
                             exec_type=p.exec_type, fused=merged.get(p.node_name, ())))
    return out


def ov_layer_graph(cm) -> tuple[LayerNode, ...]:
    """The compiled model's runtime graph as ``LayerNode``s (friendly names, as the performance counters name the
    nodes), each with the nodes that feed it and the file's nodes merged into it (``originalLayersNames``); empty
    when it cannot be read back (the profile stands without it)."""
    out = []
    try:
        for op in cm.get_runtime_model().get_ordered_ops():
            info = op.get_rt_info()
            ltype = info["layerType"].astype(str) if "layerType" in info else op.get_type_name()
            origins = tuple(n for n in info["originalLayersNames"].astype(str).split(",") if n) \
                if "originalLayersNames" in info else ()
            inputs = tuple(dict.fromkeys(i.get_source_output().get_node().get_friendly_name() for i in op.inputs()))
            out.append(LayerNode(name=op.get_friendly_name(), op_type=ltype, inputs=inputs, origins=origins))
    except Exception:
        return ()
    return tuple(out)


def _original_layers(cm, onnx_types: dict[str, str]) -> dict[str, tuple[str, ...]]:
    """Runtime node name -> the op types of the ONNX nodes merged into it (``originalLayersNames``, when it holds more
    than one), e.g. ("Conv", "Add", "Relu") or ("MatMul", "Softmax", "MatMul") for an attention subgraph; nodes
    OpenVINO made itself (no ONNX op type) are left out."""
    out = {}
    try:
        for op in cm.get_runtime_model().get_ordered_ops():
            info = op.get_rt_info()
            if "originalLayersNames" not in info:
                continue
            names = [n for n in info["originalLayersNames"].astype(str).split(",") if n]
            types = tuple(onnx_types[n] for n in names if n in onnx_types)
            if len(names) > 1 and len(types) > 1:
                out[op.get_friendly_name()] = types
    except Exception:  # the read-back is a detail of the profile, never a reason to lose it
        return {}
    return out
