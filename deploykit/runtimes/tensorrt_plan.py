"""TensorRT build planning, pure logic (no tensorrt import): what the ``trt`` target asks the builder for,
how engines are cached, and whether a quantized graph is one TensorRT can take.

* ``build_plan``: builder flags from the requested precision, the graph's precision and the TensorRT
  version. TensorRT 10 builds weakly typed networks (``BuilderFlag.FP16`` lets it pick fp16 kernels; an
  explicitly quantized Q/DQ graph needs ``BuilderFlag.INT8``; TF32 is on by default, so a real fp32 run
  clears it). TensorRT 11 removed weak typing: the graph's own types decide, fp16 needs an fp16 ONNX and
  int8 a Q/DQ ONNX, and precision flags do not exist.
* ``profile_shapes``: the (min, opt, max) optimisation profile for an input with dynamic dims.
* ``engine_identity`` / ``cache_decision``: an engine is cached under a name derived from the ONNX content
  hash, precision and profile; beside it a JSON sidecar records the TensorRT version, GPU name and compute
  capability it was built with and the engine file's own hash. A cached engine from another TensorRT
  version or another GPU, or one whose bytes changed, is rebuilt, never loaded.
* ``qdq_report``: Q/DQ nodes TensorRT cannot take (unsigned or non-zero zero points: TensorRT's
  quantization is symmetric int8).
* ``layer_summary``: per-layer precision / tactic from the engine inspector's JSON (TensorRT 10 and 11
  field names).
* ``LayerTimeSink`` / ``trt_layer_records``: the per-layer profile -- what an ``IProfiler``'s
  ``report_layer_time(layer_name, ms)`` calls report, per profiled inference, joined with the inspector's layer
  types and precisions.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

from deploykit.core.errors import UsageError

ENGINE_FORMAT = 1  # bump when the meaning of deploykit's build settings changes (old caches are rebuilt)
DEFAULT_WORKSPACE = 4 << 30  # 4 GiB builder workspace limit (TensorRT's default is the whole GPU)


def parse_version(v: str) -> tuple[int, int, int]:
    nums = [int(x) for x in re.findall(r"\d+", v)[:3]]
    return tuple(nums + [0] * (3 - len(nums)))  # type: ignore[return-value]


@dataclass(frozen=True)
class BuildPlan:
    precision: str  # what will run: fp32 | tf32 | fp16 | int8
    strongly_typed: bool
    set_flags: tuple[str, ...] = ()  # trt.BuilderFlag names to set
    clear_flags: tuple[str, ...] = ()  # trt.BuilderFlag names to clear (when the version has them)
    workspace_bytes: int = DEFAULT_WORKSPACE
    profile: tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]] | None = None  # (min, opt, max)
    notes: tuple[str, ...] = ()

    def key(self) -> dict:
        d = asdict(self)
        d.pop("notes")
        return d


def profile_shapes(file_dims: tuple, shape: tuple[int, ...], max_batch: int | None = None):
    """Optimisation profile for an input whose file dims are ``file_dims`` (ints, or None/str for dynamic)
    when benchmarking ``shape``: a dynamic batch gets min 1, opt = the benchmark batch, max = ``max_batch``
    (default the benchmark batch); other dynamic dims are pinned to the benchmark's value. None when static."""
    if len(file_dims) != len(shape):
        raise UsageError(f"input rank {len(file_dims)} does not match the benchmark shape {list(shape)}")
    dynamic = [not (isinstance(d, int) and d > 0) for d in file_dims]
    if not any(dynamic):
        return None
    opt = tuple(int(s) for s in shape)
    lo, hi = list(opt), list(opt)
    if dynamic[0]:
        lo[0] = 1
        hi[0] = max(opt[0], max_batch or opt[0])
    return tuple(lo), opt, tuple(hi)


@dataclass
class QdqReport:
    quantize_nodes: int = 0
    dequantize_nodes: int = 0
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def quantized(self) -> bool:
        return bool(self.quantize_nodes or self.dequantize_nodes)


def qdq_report(model) -> QdqReport:
    """Check an ONNX graph's QuantizeLinear / DequantizeLinear nodes against what TensorRT accepts: int8 (or
    fp8) with zero points all 0. ORT's default static quantization (uint8 activations, asymmetric) fails here."""
    import numpy as np
    from onnx import numpy_helper

    consts = {i.name: i for i in model.graph.initializer}
    for n in model.graph.node:
        if n.op_type == "Constant" and n.output:
            for a in n.attribute:
                if a.name == "value":
                    consts[n.output[0]] = a.t
    rep = QdqReport()
    bad_type, nonzero, omitted = [], [], 0
    for n in model.graph.node:
        if n.op_type not in ("QuantizeLinear", "DequantizeLinear"):
            continue
        if n.op_type == "QuantizeLinear":
            rep.quantize_nodes += 1
        else:
            rep.dequantize_nodes += 1
        if len(n.input) < 3 or not n.input[2]:
            omitted += 1
            continue
        zp = consts.get(n.input[2])
        if zp is None:
            rep.notes.append(f"{n.name or n.op_type}: zero point is computed at run time; cannot check it")
            continue
        arr = numpy_helper.to_array(zp)
        if arr.dtype == np.uint8:
            bad_type.append(n.name or n.output[0])
        elif arr.dtype.kind in "iu" and np.any(arr != 0):
            nonzero.append(n.name or n.output[0])
    if bad_type:
        rep.problems.append(f"{len(bad_type)} Q/DQ nodes use uint8 (e.g. {bad_type[0]}); TensorRT takes signed int8 "
                            "quantization only (quantize activations and weights as QInt8)")
    if nonzero:
        rep.problems.append(f"{len(nonzero)} Q/DQ nodes have non-zero zero points (e.g. {nonzero[0]}); TensorRT's "
                            "quantization is symmetric (zero point 0)")
    if omitted:
        rep.notes.append(f"{omitted} Q/DQ nodes omit the zero point (ONNX then means uint8); TensorRT expects an "
                         "explicit int8 zero point of 0")
    return rep


def build_plan(*, requested: str | None, graph_precision: str, trt_version: str, qdq: QdqReport | None = None,
               profile=None, workspace_bytes: int = DEFAULT_WORKSPACE) -> BuildPlan:
    major = parse_version(trt_version)[0]
    if major < 10:
        raise UsageError(f"TensorRT {trt_version} is too old: deploykit needs TensorRT 10 or 11")
    strong = major >= 11
    qdq = qdq or QdqReport()
    quantized = qdq.quantized or graph_precision == "int8"
    precision = requested or ("int8" if quantized else graph_precision if graph_precision in ("fp16",) else "fp32")
    notes = list(qdq.notes)
    if quantized and precision != "int8":
        raise UsageError(f"this graph is explicitly quantized (Q/DQ): TensorRT runs it in int8; use --precision int8 "
                         f"or leave --precision out (asked: {precision})")
    if precision == "int8":
        if not quantized:
            raise UsageError("--precision int8 on TensorRT needs an explicitly quantized (Q/DQ) ONNX file "
                             "(quantize it first, e.g. 'deploykit quantize'); implicit int8 calibration is "
                             "deprecated in TensorRT 10 and removed in 11")
        if qdq.problems:
            raise UsageError("TensorRT cannot take this quantized graph: " + "; ".join(qdq.problems))
    set_flags: list[str] = []
    clear_flags: list[str] = []
    if precision == "fp32":
        clear_flags.append("TF32")  # TF32 is on by default: an fp32 run must not use it
    elif precision == "tf32":
        set_flags.append("TF32")
    elif precision == "fp16":
        if graph_precision != "fp16":
            if strong:
                raise UsageError(f"TensorRT {trt_version} builds strongly typed networks only: fp16 needs an fp16 "
                                 "ONNX file (convert it, e.g. with ModelOpt AutoCast); this file is "
                                 f"{graph_precision}")
            set_flags.append("FP16")
            notes.append("weak typing: FP16 flag lets TensorRT choose fp16 kernels where faster")
    elif precision == "int8":
        if not strong:
            set_flags.append("INT8")  # required for Q/DQ graphs in weakly typed TensorRT 10 builds
        clear_flags.append("TF32")
    else:
        raise UsageError(f"target trt has no --precision {precision}")
    return BuildPlan(precision=precision, strongly_typed=strong, set_flags=tuple(set_flags),
                     clear_flags=tuple(clear_flags), workspace_bytes=workspace_bytes, profile=profile,
                     notes=tuple(notes))


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-").lower() or "gpu"


def engine_identity(*, onnx_sha256: str, plan: BuildPlan, trt_version: str, gpu_name: str,
                    compute_capability: str) -> dict:
    """Everything an engine depends on. Any difference means the cached engine must not be loaded."""
    return {"format": ENGINE_FORMAT, "onnx_sha256": onnx_sha256, "plan": json.loads(json.dumps(plan.key())),
            "tensorrt": trt_version, "gpu": gpu_name, "compute_capability": compute_capability}


def engine_paths(cache_dir: Path, identity: dict) -> tuple[Path, Path]:
    """(engine, sidecar) paths. The name covers the model and build plan only, so an engine built by another
    TensorRT version or on another GPU lands on the same name and is detected (and replaced) by the sidecar."""
    stable = {k: identity[k] for k in ("format", "onnx_sha256", "plan")}
    h = hashlib.sha256(json.dumps(stable, sort_keys=True).encode()).hexdigest()[:16]
    stem = f"{identity['onnx_sha256'][:12]}-{identity['plan']['precision']}-{h}"
    cache_dir = Path(cache_dir)
    return cache_dir / f"{stem}.engine", cache_dir / f"{stem}.engine.json"


def timing_cache_path(cache_dir: Path, trt_version: str, gpu_name: str, compute_capability: str) -> Path:
    """Timing caches are specific to a TensorRT version and a GPU."""
    return Path(cache_dir) / f"timing-trt{trt_version}-{_slug(gpu_name)}-sm{compute_capability.replace('.', '')}.cache"


SIDECAR_SCHEMA = {"type": "object", "required": ["identity", "engine_sha256"],
                  "properties": {"identity": {"type": "object"},
                                 "engine_sha256": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
                                 "bytes": {"type": "integer", "minimum": 0}}}


def cache_decision(sidecar: dict | None, wanted: dict, engine_sha256: str | None) -> tuple[bool, str]:
    """(load it?, why) for a cached engine whose sidecar is ``sidecar`` and whose bytes hash to
    ``engine_sha256`` (None: no engine file)."""
    if sidecar is None or engine_sha256 is None:
        return False, "no cached engine"
    from deploykit.core.validate import valid

    if not valid(sidecar, SIDECAR_SCHEMA):
        return False, "cached engine's record is malformed: rebuilding"
    have = sidecar.get("identity") or {}
    diffs = []
    labels = {"tensorrt": "TensorRT version", "gpu": "GPU", "compute_capability": "compute capability",
              "onnx_sha256": "ONNX content", "plan": "build settings", "format": "deploykit engine format"}
    for k, label in labels.items():
        if have.get(k) != wanted.get(k):
            a, b = have.get(k), wanted.get(k)
            diffs.append(f"{label} {a} -> {b}" if k in ("tensorrt", "gpu", "compute_capability") else label)
    if diffs:
        return False, "cached engine is stale (" + ", ".join(diffs) + "): rebuilding"
    if sidecar.get("engine_sha256") != engine_sha256:
        return False, "cached engine file does not match its record (corrupt or replaced): rebuilding"
    return True, "cached engine matches (same ONNX, build settings, TensorRT version and GPU)"


_PREC = re.compile(r"\b(FP32|FP16|BF16|FP8|INT8|Int8|INT4|INT32|Int32|Float|Half|Bool)\b")
_CANON = {"Float": "FP32", "Half": "FP16", "Int8": "INT8", "Int32": "INT32"}


def _precision_of(tensor: dict) -> str | None:
    for key in ("DataType", "Format/Datatype", "Format/DataType", "Format"):
        v = tensor.get(key)
        if isinstance(v, str):
            m = _PREC.search(v)
            if m:
                return _CANON.get(m.group(1), m.group(1))
    return None


def layer_summary(inspector_json: str, max_layers: int = 2000) -> dict:
    """Per-layer precision and tactic from ``IEngineInspector.get_engine_information(JSON)`` (detailed
    profiling verbosity). Layers given only by name (other verbosities) are counted but have no details."""
    try:
        data = json.loads(inspector_json)
    except (TypeError, ValueError):
        return {"available": False, "reason": "the engine inspector returned no JSON"}
    layers = data.get("Layers", []) if isinstance(data, dict) else []
    out, counts = [], {}
    for layer in layers[:max_layers]:
        if not isinstance(layer, dict):
            out.append({"name": str(layer)})
            continue
        outputs = layer.get("Outputs") or []
        prec = _precision_of(outputs[0]) if outputs and isinstance(outputs[0], dict) else None
        counts[prec or "unknown"] = counts.get(prec or "unknown", 0) + 1
        out.append({"name": layer.get("Name"), "type": layer.get("LayerType"), "precision": prec,
                    "tactic": layer.get("TacticName") or layer.get("TacticValue")})
    return {"available": True, "layers": len(layers), "output_precisions": counts, "detail": out,
            "truncated": len(layers) > max_layers}


class LayerTimeSink:
    """Collects ``IProfiler.report_layer_time(layer_name, ms)`` calls (TensorRT calls it once per layer for each
    inference of a context the profiler is attached to). Calls before the first ``next_iteration`` (warm-up) are
    dropped; the rest are kept as (iteration, layer name, ms)."""

    def __init__(self) -> None:
        self.iteration = -1
        self.calls: list[tuple[int, str, float]] = []

    def next_iteration(self) -> None:
        self.iteration += 1

    def report(self, layer_name: str, ms: float) -> None:
        if self.iteration >= 0:
            self.calls.append((self.iteration, str(layer_name), float(ms)))


def trt_layer_records(calls: list[tuple[int, str, float]], summary: dict | None = None) -> list:
    """``LayerTime`` records from a ``LayerTimeSink``'s calls; layer type, precision (of the layer's output tensor)
    and tactic from ``layer_summary`` (the engine inspector) where it names the layer."""
    from deploykit.runtimes.base import LayerTime

    detail = {d.get("name"): d for d in (summary or {}).get("detail") or [] if isinstance(d, dict)}
    out = []
    for it, name, ms in calls:
        d = detail.get(name, {})
        prec = d.get("precision")
        out.append(LayerTime(iteration=it, name=name, op_type=d.get("type") or "?", ms=ms,
                             precision=prec.lower() if isinstance(prec, str) else None,
                             exec_type=str(d["tactic"]) if d.get("tactic") is not None else None))
    return out
