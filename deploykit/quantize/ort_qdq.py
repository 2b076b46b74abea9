"""ONNX Runtime static quantization to a QDQ ONNX file (QuantizeLinear/DequantizeLinear pairs around float ops).

Steps: ``quant_pre_process`` (ONNX shape inference, ORT basic optimisations, symbolic shape inference for
dynamic dims) -> calibration on preprocessed images -> ``quantize_static(QuantFormat.QDQ, per_channel=True)``.

Op types come from the model's int8 recipe (``models.traits.RECIPES``, named by the model's traits; the recipes
document their choices): ``cnn`` quantizes convolutions, linear layers, ReLU/Clip (folded into the quantized
range), residual Adds, pooling and data movement; ``vit`` the patch embedding, linear layers, both attention
MatMuls and the data movement around attention, with LayerNorm, GELU and residual Adds float. Softmax follows
``--softmax`` (below), by default the recipe's.

Profiles: ``cpu`` = uint8 asymmetric activations + int8 symmetric per-channel weights (the fast x86 path of
ORT's CPU kernels; ORT and OpenVINO run it, TensorRT rejects uint8 / non-zero zero points); ``trt`` = int8
symmetric activations and weights with zero points of 0 (TensorRT's explicit quantization; OpenVINO and ORT
run it too, but ORT's CPU has few signed-activation kernels, so it is slow there and keeps ReLUs).
``reduce_range`` (7-bit weights) defaults to on for x86 CPUs without VNNI, as ORT's documentation advises:
their u8 x s8 kernels use VPMADDUBSW, whose int16 pair sums saturate with full 8-bit weights (measured here on
DeiT-Tiny at 64, synthetic calibration: min cosine 0.986 / SQNR 16.3 dB without, 0.997 / 24.6 dB with).

Softmax: ``int8`` puts Softmax in the quantized op types: its input gets a calibrated Q/DQ and its output a
FIXED scale (the probabilities lie in [0, 1]; no calibration): 1/255 with uint8 zero point 0 (cpu profile) or
1/127 with int8 zero point 0 (trt profile). With both attention MatMuls quantized, Q/DQ then sit before Q and K,
after the Softmax, on V and after the second MatMul -- the placement TensorRT needs to fuse int8 MHA -- and
ONNX Runtime runs DequantizeLinear -> Softmax -> QuantizeLinear as com.microsoft.QLinearSoftmax.
``float`` keeps the Softmax and the probabilities x V MatMul in float (what NNCF's transformer mode does):
the attention probabilities never see 8 bits.
"""

from __future__ import annotations

import fnmatch
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from deploykit.core.errors import InputError, UsageError, squash
from deploykit.core.lazy import require
from deploykit.models.traits import QuantRecipe
from deploykit.passes.attention import find_attention

FIXED_SOFTMAX = {"cpu": (1.0 / 255.0, 0, "uint8"), "trt": (1.0 / 127.0, 0, "int8")}
_METHODS = {"minmax": "MinMax", "entropy": "Entropy", "percentile": "Percentile"}


def cpu_flags() -> set[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    for line in text.splitlines():
        key, _, val = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return set(val.split())
    return set()


def resolve_reduce_range(setting: bool | None) -> tuple[bool, str]:
    """(reduce_range, why): an explicit setting wins; auto = on for x86 without VNNI."""
    if setting is not None:
        return setting, "set explicitly"
    import platform

    if platform.machine().lower() not in ("x86_64", "amd64", "i686", "x86"):
        return False, f"auto: {platform.machine()} (ORT's u8s8 saturation issue is x86-specific)"
    flags = cpu_flags()
    vnni = sorted(flags & {"avx512_vnni", "avx_vnni", "amx_int8"})
    if vnni:
        return False, f"auto: this CPU has {', '.join(vnni)}"
    return True, ("auto: this x86 CPU has no VNNI, so ORT's u8 x s8 kernels (VPMADDUBSW) would saturate "
                  "int16 sums with full 8-bit weights")


@dataclass
class QdqPlan:
    family: str | None  # the model's label (reports)
    recipe: str  # the int8 recipe the op types come from
    traits_from: str  # declared (the model's traits) | graph (inferred from its attention blocks)
    profile: str
    softmax: str  # float | int8 | none (no attention in the graph)
    method: str
    per_channel: bool
    reduce_range: bool
    reduce_range_reason: str
    op_types: list[str]
    nodes_to_exclude: list[str] = field(default_factory=list)
    excluded_by_user: dict = field(default_factory=dict)
    float_concats: list[str] = field(default_factory=list)
    spectral: list[str] = field(default_factory=list)
    softmax_overrides: dict = field(default_factory=dict)

    def describe(self) -> dict:
        d = asdict(self)
        d.pop("softmax_overrides")
        d["spectral"] = len(self.spectral)  # node names are in nodes_to_exclude
        scale, zp, qtype = FIXED_SOFTMAX[self.profile]
        d["activation_type"] = "uint8 asymmetric" if self.profile == "cpu" else "int8 symmetric (zero point 0)"
        d["weight_type"] = "int8 symmetric" + (" per-channel" if self.per_channel else "") + \
            (" (7-bit range)" if self.reduce_range else "")
        if self.softmax == "int8":
            d["softmax_output"] = {"scale": scale, "zero_point": zp, "type": qtype, "range": [0.0, 1.0],
                                   "calibrated": False}
        return d


def pre_process(src, dest: Path) -> None:
    """ORT's quantization pre-processing (shape inference + basic optimisations) from ``src`` (path) to ``dest``."""
    import onnx

    from onnxruntime.quantization.shape_inference import quant_pre_process

    from deploykit.onnxio.files import PROTOBUF_LIMIT, uses_external_data

    model = onnx.load(str(src), load_external_data=False)
    dynamic = any(not d.HasField("dim_value") for vi in model.graph.input for d in vi.type.tensor_type.shape.dim)
    # weights in external files (torch's dynamo exporter, any model over 2 GB): the intermediate graphs ORT writes
    # into its own temporary folder must carry their data with them, or they name a file that is not there
    external = uses_external_data(model) or Path(src).stat().st_size >= PROTOBUF_LIMIT
    kw = {"save_as_external_data": True, "all_tensors_to_one_file": True} if external else {}
    try:
        quant_pre_process(str(src), str(dest), skip_symbolic_shape=not dynamic, **kw)
    except Exception:  # symbolic shape inference fails on some graphs; ONNX shape inference is enough then
        try:
            quant_pre_process(str(src), str(dest), skip_symbolic_shape=True, **kw)
        except Exception as exc:
            raise InputError(f"ONNX Runtime's quantization pre-processing failed on {Path(src).name}: "
                             f"{type(exc).__name__}: {squash(exc)}") from None


def make_plan(pre_model, recipe: QuantRecipe, qcfg, *, family: str | None = None,
              traits_from: str = "declared") -> QdqPlan:
    """Which op types and nodes to quantize for ``pre_model`` (the pre-processed graph) with ``recipe`` (the one
    the model's traits name: ``models.traits.get_recipe``)."""
    if not isinstance(recipe, QuantRecipe):
        raise TypeError(f"make_plan needs a QuantRecipe (models.traits.get_recipe(name)), not {recipe!r}")
    op_types = list(recipe.op_types)
    sites = [s for s in find_attention(pre_model) if s.pv_matmul]
    softmax = qcfg.softmax or recipe.softmax
    if not sites:
        softmax = "none"
    rr, why = resolve_reduce_range(qcfg.reduce_range)
    if qcfg.profile == "trt":
        rr, why = (False, "trt profile: TensorRT uses the full int8 range") if qcfg.reduce_range is None else (rr, why)
    plan = QdqPlan(family=family, recipe=recipe.name, traits_from=traits_from, profile=qcfg.profile,
                   softmax=softmax, method=qcfg.calib_method, per_channel=qcfg.per_channel, reduce_range=rr,
                   reduce_range_reason=why, op_types=op_types)
    if sites and not any(s in op_types for s in ("MatMul",)):
        plan.op_types.append("MatMul")
    if softmax == "int8":
        plan.op_types.append("Softmax")
        scale, zp, qtype = FIXED_SOFTMAX[qcfg.profile]
        zp_val = np.array(zp, dtype=np.uint8 if qtype == "uint8" else np.int8)
        plan.softmax_overrides = {s.softmax_output: [{"scale": np.array(scale, dtype=np.float32), "zero_point": zp_val}]
                                  for s in sites}
    elif softmax == "float":
        plan.nodes_to_exclude += [s.softmax for s in sites] + [s.pv_matmul for s in sites if s.pv_matmul]
    _apply_excludes(pre_model, plan, qcfg.exclude)
    # an excluded softmax stays float only when what reads it does too: with its P.V matmul quantized, the
    # DequantizeLinear -> Softmax -> QuantizeLinear left around it is fused back into a QLinearSoftmax by ONNX
    # Runtime (the same rule as --softmax float, per block)
    user = set(plan.excluded_by_user.get("nodes", ()))
    for s in sites:
        if s.softmax in user and s.pv_matmul and s.pv_matmul not in plan.nodes_to_exclude:
            plan.nodes_to_exclude.append(s.pv_matmul)
            plan.excluded_by_user.setdefault("with_softmax", []).append(s.pv_matmul)
            plan.softmax_overrides.pop(s.softmax_output, None)
    plan.spectral = spectral_nodes(pre_model)
    plan.nodes_to_exclude = sorted(set(plan.nodes_to_exclude) | set(plan.spectral))
    plan.float_concats = float_concats(pre_model, plan.op_types, plan.nodes_to_exclude)
    plan.nodes_to_exclude = sorted(set(plan.nodes_to_exclude) | set(plan.float_concats))
    return plan


def spectral_nodes(model) -> list[str]:
    """Names of the nodes on a path from a forward DFT to an inverse DFT: the frequency domain of an FFT
    convolution such as Fast-ParC (spectral products, additions, matmuls and the data movement around them).
    They stay float: there is no quantized DFT, one 8-bit scale serves a spectrum's per-frequency range badly,
    and with Q/DQ on the dense form's spectral MatMuls OpenVINO 2026.4's CPU plugin refuses to compile
    ParC-ResNet50 (``Check 'any_of(scale.size(), OC, 1U)' failed`` in its post-op composer)."""
    from deploykit.passes.graph import GraphView, attr

    view = GraphView(model)
    dfts = [n for n in model.graph.node if n.op_type == "DFT"]
    forward = [n for n in dfts if not int(attr(n, "inverse", 0) or 0)]
    inverse = [n for n in dfts if int(attr(n, "inverse", 0) or 0)]
    if not forward or not inverse:
        return []

    def reach(starts, step) -> dict:
        """Nodes reachable from ``starts`` by ``step`` without passing through another DFT."""
        seen, todo = {}, list(starts)
        while todo:
            for m in step(todo.pop()):
                if id(m) not in seen and m.op_type != "DFT":
                    seen[id(m)] = m
                    todo.append(m)
        return seen

    after = reach(forward, lambda n: [c for o in n.output for c in view.consumers.get(o, [])])
    before = reach(inverse, lambda n: [view.producer[i] for i in n.input if i in view.producer])
    return sorted(n.name for k, n in after.items() if k in before and n.name)


def float_concats(model, op_types, excluded) -> list[str]:
    """Names of the Concat nodes whose result only float ops use (no consumer is quantized).

    Quantizing such a Concat buys nothing (its int8 output is dequantized at once) and costs a Q/DQ round
    trip, and the pattern it leaves -- Concat -> Q/DQ with a non-zero zero point -> Mul or Add by a float
    constant -> Q/DQ -- crashes OpenVINO 2026.4's CPU plugin (segmentation fault in compile_model; found on
    ParC-ResNet50, whose BatchNorm after the ParC Concat exports as Mul + Add). So these Concats stay float;
    their inputs keep the Q/DQ of the ops that produce them. Repeats until stable (a Concat that only feeds
    a float Concat is float too)."""
    from deploykit.passes.graph import GraphView

    view = GraphView(model)
    quantized = set(op_types)
    float_nodes = set(excluded)
    found: list[str] = []
    changed = True
    while changed:
        changed = False
        for n in model.graph.node:
            if n.op_type != "Concat" or not n.name or n.name in float_nodes:
                continue
            users = [c for o in n.output for c in view.consumers.get(o, [])]
            if any(o in view.graph_outputs for o in n.output) and not users:
                continue  # a graph output: quantizing it changes what the model returns, leave the default
            if all(c.op_type not in quantized or c.name in float_nodes for c in users):
                float_nodes.add(n.name)
                found.append(n.name)
                changed = True
    return sorted(found)


def _apply_excludes(model, plan: QdqPlan, excludes) -> None:
    names = [n.name for n in model.graph.node if n.name]
    types = {n.op_type for n in model.graph.node}
    by_type, by_name = [], []
    for pattern in excludes:
        if pattern in types:
            by_type.append(pattern)
            if pattern in plan.op_types:
                plan.op_types.remove(pattern)
            plan.nodes_to_exclude += [n.name for n in model.graph.node if n.op_type == pattern and n.name]
            continue
        hits = [n for n in names if fnmatch.fnmatchcase(n, pattern)]
        if not hits:
            import difflib

            close = difflib.get_close_matches(pattern, names + sorted(types), n=3, cutoff=0.6)
            hint = (f"; did you mean {', '.join(close)}?" if close
                    else " ('deploykit quantize --sensitivity' lists the nodes)")
            raise UsageError(f"--exclude {pattern!r} matches no op type or node name in the graph{hint}")
        by_name += hits
        plan.nodes_to_exclude += hits
    plan.nodes_to_exclude = sorted(set(plan.nodes_to_exclude))
    plan.excluded_by_user = {"op_types": by_type, "nodes": sorted(set(by_name))}


class _Reader:
    """ORT CalibrationDataReader over an N x C x H x W array, in batches the model accepts."""

    def __init__(self, input_name: str, x: np.ndarray, batch: int):
        self.input_name = input_name
        n = (len(x) // batch) * batch
        self.batches = [x[i:i + batch] for i in range(0, n, batch)] or [x[:batch]]
        self.i = 0

    def get_next(self):
        if self.i >= len(self.batches):
            return None
        self.i += 1
        return {self.input_name: self.batches[self.i - 1]}

    def rewind(self):
        self.i = 0

    def __len__(self):
        return len(self.batches)


def quantize_qdq(pre_path: Path, out_path: Path, plan: QdqPlan, calib_x: np.ndarray, input_name: str,
                 batch: int) -> None:
    """Run ``quantize_static`` on the pre-processed model; writes ``out_path`` (a temporary file)."""
    q = require("onnxruntime.quantization", "int8 quantization")
    extra: dict[str, Any] = {
        "ActivationSymmetric": plan.profile == "trt",
        "WeightSymmetric": True,
    }
    if plan.softmax_overrides:
        extra["TensorQuantOverrides"] = plan.softmax_overrides
    if plan.method == "percentile":
        extra["CalibPercentile"] = 99.999
    act = q.QuantType.QUInt8 if plan.profile == "cpu" else q.QuantType.QInt8
    with tempfile.TemporaryDirectory(prefix="dk-calib-") as tmp:
        cwd = os.getcwd()
        try:
            os.chdir(tmp)  # entropy/percentile calibrators write augmented models to the working directory
            q.quantize_static(str(pre_path), str(out_path), _Reader(input_name, calib_x, batch),
                              quant_format=q.QuantFormat.QDQ, op_types_to_quantize=plan.op_types,
                              per_channel=plan.per_channel, reduce_range=plan.reduce_range,
                              activation_type=act, weight_type=q.QuantType.QInt8,
                              nodes_to_exclude=plan.nodes_to_exclude,
                              calibrate_method=getattr(q.CalibrationMethod, _METHODS[plan.method]),
                              extra_options=extra)
        except (InputError, UsageError):
            raise
        except Exception as exc:
            msg = squash(exc) or type(exc).__name__
            raise InputError(f"ONNX Runtime quantization failed: {type(exc).__name__}: {msg}") from exc
        finally:
            os.chdir(cwd)
