"""Two runs side by side per layer: where the time between them goes (``deploykit explain A B``).

``explain(a, b)`` builds (or reuses) both runs' artifacts with the run spec's own machinery (export, the int8 build
with its cache), profiles both per layer on their targets (``Runtime.profile_layers``, the same profile
``bench --per-layer`` takes) and maps every executed node back to the nodes of the float source graph
(``bench/layermap.py``). Each node's time is its median over the profiled inferences (``bench/layers.node_times``:
the same per-node times and totals as the report's ``per_layer`` section).

The gap ``total_b - total_a`` of the profiled layer times is split into buckets that add up to it exactly (every
executed node's time lands in one):

==============  ======================================================================================================
int8_layers     source nodes that ran int8 in either run (their own kernels: QLinearSoftmax, QGemm, ...)
float_layers    source nodes that ran in float in both (in an int8-vs-float pair: the layers left in float)
qdq             QuantizeLinear / DequantizeLinear / FakeQuantize nodes the runtime kept
reformat        layout / precision conversions the runtime inserted (reorders, NHWC transposes)
fusion          source nodes that ran on their own in one run and not at all in the other (fused into a neighbour
                there, e.g. the scale Mul that ONNX Runtime folds into a float MatMul but not into a QLinearMatMul)
unmapped        executed nodes that map to no node of the source graph
==============  ======================================================================================================

Each Q/DQ node is also charged to its int8 neighbours (a QuantizeLinear to the int8 nodes that read it, a
DequantizeLinear to the int8 node it reads), split evenly: a node's "int8 form" costs its own time plus that share,
which is what ``slower_in_int8`` compares with the node's float time.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from deploykit.bench.layermap import SourceGraph, is_int8, map_profile
from deploykit.spec.run import RunSpec

BUCKETS = ("int8_layers", "float_layers", "qdq", "reformat", "fusion", "unmapped")
DEFAULT_ITERATIONS = 30
SLOWER_MIN_MS = 0.005  # below this a per-node difference is the profiler's noise on a loaded machine
SLOWER_MIN_RATIO = 1.1

Progress = Callable[[str], None]


@dataclass(frozen=True)
class Side:
    """One run's profile, mapped."""

    label: str
    spec: dict  # RunSpec.to_dict()
    int8: bool
    target: str
    runtime: str
    artifact: str
    total_ms: float
    wall_ms: float | None
    executed: tuple[dict, ...]  # every executed node: name, op_type, time_ms, precision, kind, source, absorbed, qdq_to


@dataclass(frozen=True)
class Explanation:
    """What ``explain`` found: per source node the time in a and in b, what ran, and the buckets of the gap."""

    a: Side
    b: Side
    source_graph: str | None
    iterations: int
    nodes: tuple[dict, ...]  # per source node (see to_json)
    buckets: dict[str, float]  # delta (b - a) per bucket, ms; they add up to b.total_ms - a.total_ms
    notes: tuple[str, ...] = ()
    excludable: frozenset[str] = field(default_factory=frozenset)  # node names QuantizeConfig.exclude accepts

    @property
    def delta_ms(self) -> float:
        return self.b.total_ms - self.a.total_ms

    def int8_side(self) -> str | None:
        """``a`` or ``b``: the run of the int8 artifact when exactly one of the two is int8."""
        if self.a.int8 != self.b.int8:
            return "a" if self.a.int8 else "b"
        return None

    def families(self) -> list[dict]:
        """Per source op type: the time in a and b, the delta and the node count, largest |delta| first."""
        fam: dict[str, dict] = {}
        for n in self.nodes:
            f = fam.setdefault(n["op_type"] or "?", {"op_type": n["op_type"] or "?", "nodes": 0, "a_ms": 0.0,
                                                      "b_ms": 0.0, "ran_a": Counter(), "ran_b": Counter()})
            f["nodes"] += 1
            f["a_ms"] += n["a_ms"]
            f["b_ms"] += n["b_ms"]
            f["ran_a"][n["ran_a"]] += 1
            f["ran_b"][n["ran_b"]] += 1
        out = []
        for f in fam.values():
            f["delta_ms"] = f["b_ms"] - f["a_ms"]
            f["ran_a"], f["ran_b"] = dict(f["ran_a"]), dict(f["ran_b"])
            out.append(f)
        return sorted(out, key=lambda f: -abs(f["delta_ms"]))

    def slower_in_int8(self, min_ms: float = SLOWER_MIN_MS, min_ratio: float = SLOWER_MIN_RATIO) -> tuple[str, ...]:
        """Names of float-graph nodes (usable in ``QuantizeConfig.exclude``) whose int8 form, with the Q/DQ charged
        to them, took more than ``min_ms`` and ``min_ratio`` x longer than their float form; slowest gap first.
        Empty unless exactly one of the two runs is int8."""
        side = self.int8_side()
        if side is None:
            return ()
        q, f = side, "b" if side == "a" else "a"
        hits = []
        for n in self.nodes:
            if n[f"ran_{q}"] != "int8" or n[f"ran_{f}"] != "float":
                continue
            name = self.exclude_name(n["node"])
            if name is None:
                continue
            cost = n[f"{q}_ms"] + n[f"{q}_qdq_ms"]
            base = n[f"{f}_ms"]
            if cost - base > min_ms and cost > min_ratio * base:
                hits.append((cost - base, name))
        return tuple(dict.fromkeys(name for _, name in sorted(hits, key=lambda h: -h[0])))

    def exclude_name(self, node: str) -> str | None:
        """The name ``QuantizeConfig.exclude`` takes for float-graph node ``node``: its own, or the one the
        quantizer's pre-processing gave it (``node_MatMul_11`` -> ``node_MatMul_11/MatMulAddFusion``, a MatMul + Add
        fused into a Gemm); None when the int8 graph has no such node. Unchecked (its own name) without an int8 ONNX
        file."""
        if not self.excludable or node in self.excludable:
            return node
        hits = sorted(n for n in self.excludable if n.split("/")[0] == node)
        return hits[0] if len(hits) == 1 else None

    def top(self, k: int = 10) -> list[dict]:
        return sorted(self.nodes, key=lambda n: -abs(n["delta_ms"]))[:k]

    def verdict(self) -> str:
        """One line: which run is slower by how much, and the two largest causes."""
        d = self.delta_ms
        subj = f"{self.b.label if d > 0 else self.a.label} is slower by {abs(d):.3f} ms"
        sign = 1 if d >= 0 else -1
        slower, faster = ("b", "a") if d >= 0 else ("a", "b")
        causes: list[tuple[float, str]] = []
        for f in self.families():
            ran = self._ran_as(f["op_type"], slower if f["delta_ms"] * sign > 0 else faster)
            causes.append((f["delta_ms"] * sign, f"{ran} x{f['nodes']} {_signed(abs(f['delta_ms']))} ms"))
        for key in ("qdq", "reformat"):
            v = self.buckets[key] * sign
            causes.append((v, f"{'Q/DQ' if key == 'qdq' else 'reformats'} {_signed(abs(v))} ms"))
        pro = [c for v, c in sorted(causes, key=lambda c: -c[0]) if v > 0][:3]
        con = [c for v, c in sorted(causes, key=lambda c: c[0]) if v < 0][:2]
        text = f"{subj} (profiled layer time {self.a.total_ms:.3f} -> {self.b.total_ms:.3f} ms)"
        if pro:
            text += ": " + ", ".join(pro)
        if con:
            text += f"; {getattr(self, faster).label} loses on: " + ", ".join(con)
        return text

    def _ran_as(self, op_type: str, side: str) -> str:
        """``Softmax as QLinearSoftmax``: the runtime op types a source op type ran as on one side."""
        ops: Counter = Counter()
        sources = {n["node"] for n in self.nodes if n["op_type"] == op_type}
        for e in getattr(self, side).executed:
            if e["source"] in sources:
                ops[e["op_type"]] += 1
        names = [o for o, _ in ops.most_common(2) if o != op_type]
        return f"{op_type} as {'/'.join(names)}" if names else op_type

    def to_json(self) -> dict:
        return {
            "a": _side_json(self.a),
            "b": _side_json(self.b),
            "source_graph": self.source_graph,
            "iterations": self.iterations,
            "delta_ms": self.delta_ms,
            "buckets": dict(self.buckets),
            "verdict": self.verdict(),
            "slower_in_int8": list(self.slower_in_int8()),
            "families": self.families(),
            "nodes": [dict(n) for n in sorted(self.nodes, key=lambda n: -abs(n["delta_ms"]))],
            "unmapped": {"a": [e for e in self.a.executed if e["kind"] == "unmapped"],
                         "b": [e for e in self.b.executed if e["kind"] == "unmapped"]},
            "notes": list(self.notes),
        }


def _signed(v: float) -> str:
    return f"+{v:.3f}" if v >= 0 else f"{v:.3f}"


def _side_json(s: Side) -> dict:
    return {"label": s.label, "spec": s.spec, "int8": s.int8, "target": s.target, "runtime": s.runtime,
            "artifact": s.artifact, "total_ms": s.total_ms, "profiled_wall_ms": s.wall_ms,
            "executed": len(s.executed), "by_kind": _by_kind(s)}


def _by_kind(s: Side) -> dict:
    out: dict[str, float] = defaultdict(float)
    for e in s.executed:
        out[e["kind"]] += e["time_ms"]
    return dict(out)


# ---- building the explanation ----------------------------------------------------------------------------------

def compare(a_rows: list[dict], b_rows: list[dict], src: SourceGraph) -> tuple[list[dict], dict[str, float]]:
    """Per source node (a vs b) and the buckets of the gap (see the module docstring)."""
    per: dict[str, dict] = {}

    def entry(name: str) -> dict:
        e = per.get(name)
        if e is None:
            e = per[name] = {"node": name, "op_type": src.op_types.get(name), "a_ms": 0.0, "b_ms": 0.0,
                             "a_qdq_ms": 0.0, "b_qdq_ms": 0.0, "a_ops": Counter(), "b_ops": Counter(),
                             "a_prec": Counter(), "b_prec": Counter(), "a_absorbed": False, "b_absorbed": False}
        return e

    buckets = dict.fromkeys(BUCKETS, 0.0)
    for side, rows, sign in (("a", a_rows, -1.0), ("b", b_rows, 1.0)):
        by_name = {r["name"]: r for r in rows}
        for r in rows:
            if r["kind"] == "layer":
                e = entry(r["source"])
                e[f"{side}_ms"] += r["time_ms"]
                e[f"{side}_ops"][r["op_type"]] += 1
                e[f"{side}_prec"]["int8" if is_int8(r["precision"]) else "float"] += 1
                for ab in r["absorbed"]:
                    entry(ab)[f"{side}_absorbed"] = True
            else:
                buckets[r["kind"]] += sign * r["time_ms"]
                for n in r["qdq_to"]:
                    tgt = by_name.get(n)
                    if tgt is not None and tgt["source"]:
                        entry(tgt["source"])[f"{side}_qdq_ms"] += r["time_ms"] / len(r["qdq_to"])
    nodes = []
    for e in per.values():
        for side in ("a", "b"):
            if e[f"{side}_ops"]:
                e[f"ran_{side}"] = e[f"{side}_prec"].most_common(1)[0][0]
            else:
                e[f"ran_{side}"] = "fused" if e[f"{side}_absorbed"] else "absent"
            e[f"{side}_ops"] = dict(e[f"{side}_ops"])
            del e[f"{side}_prec"], e[f"{side}_absorbed"]
        e["delta_ms"] = e["b_ms"] - e["a_ms"]
        ran = (e["ran_a"], e["ran_b"])
        if ran[0] in ("fused", "absent") or ran[1] in ("fused", "absent"):
            e["bucket"] = "fusion"
        elif "int8" in ran:
            e["bucket"] = "int8_layers"
        else:
            e["bucket"] = "float_layers"
        buckets[e["bucket"]] += e["delta_ms"]
        nodes.append(e)
    return nodes, buckets


def _source_path(a_path: Path, a_manifest: dict | None, a_int8: bool, b_path: Path, b_manifest: dict | None,
                 b_int8: bool) -> Path | None:
    """The float source graph: the float run's file, else the int8 artifact's fp32 source (its manifest)."""
    for path, int8 in ((a_path, a_int8), (b_path, b_int8)):
        if not int8 and path.suffix.lower() == ".onnx":
            return path
    for man in (a_manifest, b_manifest):
        p = ((man or {}).get("source") or {}).get("fp32_artifact")
        if p and Path(p).is_file():
            return Path(p)
    return None


def _excludable(path: Path) -> frozenset[str]:
    """The node names of an int8 ONNX file that ``QuantizeConfig.exclude`` matches (its non-Q/DQ nodes: the
    pre-processed float graph's names)."""
    if path.suffix.lower() != ".onnx":
        return frozenset()
    import onnx

    from deploykit.bench.layermap import QDQ_OPS

    m = onnx.load(str(path), load_external_data=False)
    return frozenset(n.name for n in m.graph.node if n.name and n.op_type not in QDQ_OPS)


def _label(spec: RunSpec, other: RunSpec) -> str:
    parts = [spec.precision_label]
    if spec.target != other.target:
        parts.append(spec.target)
    if spec.model != other.model:
        parts.insert(0, Path(spec.model).name if spec.is_file else spec.model)
    if spec.options.threads != other.options.threads:
        parts.append(f"t{spec.options.threads}")
    return " ".join(parts)


def profile_spec(spec: RunSpec, *, iterations: int, models_dir: Path | None, say: Progress):
    """Build (or reuse) the artifact of ``spec`` and profile it per layer on its target: (profile, resolved model)."""
    from deploykit.bench.pipeline import model_input, prepare_model
    from deploykit.onnxio.reference import make_input

    cls, runtime, model = prepare_model(spec.model, spec.target, spec.runtime_options(), batch=spec.batch,
                                        resolution=spec.resolution, export=spec.export_config(models_dir), say=say,
                                        int8=spec.quantize, planned=True,
                                        preprocess=dict(spec.preprocess) or None)
    seed = spec.measure.seed if hasattr(spec.measure, "seed") else 0
    x = make_input(model.input_shape, seed, model.input_dtype)
    say(f"profiling {model.label} ({spec.precision_label}) on {spec.target}: {iterations} inferences")
    return runtime.profile_layers(model_input(model), x, iterations), model  # its own session: none to close


def explain(a: RunSpec, b: RunSpec, *, iterations: int = DEFAULT_ITERATIONS, progress: Progress | None = None,
            models_dir: Path | None = None) -> Explanation:
    """Both runs' artifacts built or reused, profiled per layer on their targets, mapped to the float source
    graph and compared (see the module docstring). ``models_dir``: the artifact store (default: the user's)."""
    from deploykit.bench.plan import plan_runs
    from deploykit.core.config import require_int
    from deploykit.runtimes.base import get_runtime

    say = progress or (lambda msg: None)
    require_int("--iterations", iterations, 1, 10_000)
    plan_runs([a, b])
    for s in (a, b):
        get_runtime(s.target).ensure_profiles_layers()
    prof_a, model_a = profile_spec(a, iterations=iterations, models_dir=models_dir, say=say)
    prof_b, model_b = profile_spec(b, iterations=iterations, models_dir=models_dir, say=say)
    src_path = _source_path(model_a.path, model_a.manifest, a.int8 or model_a.precision == "int8",
                            model_b.path, model_b.manifest, b.int8 or model_b.precision == "int8")
    src = SourceGraph.load(src_path)
    rows_a, rows_b = map_profile(prof_a, src), map_profile(prof_b, src)
    nodes, buckets = compare(rows_a, rows_b, src)
    notes = list(dict.fromkeys([*prof_a.notes, *prof_b.notes]))
    if src_path is None:
        notes.append("no float ONNX source graph for these runs: nodes are named as the runtimes name them")
    for side, prof in (("a", prof_a), ("b", prof_b)):
        if not prof.graph:
            notes.append(f"{side}: the runtime's executed graph could not be read back: nodes mapped by name only, "
                         "Q/DQ not charged to their neighbours")
    int8_model = model_a if (a.int8 or model_a.precision == "int8") else model_b \
        if (b.int8 or model_b.precision == "int8") else None
    excludable = _excludable(int8_model.path) if int8_model is not None else frozenset()
    sides = []
    for spec, other, prof, model, rows in ((a, b, prof_a, model_a, rows_a), (b, a, prof_b, model_b, rows_b)):
        from deploykit.bench.stats import percentile

        sides.append(Side(label=_label(spec, other), spec=spec.to_dict(),
                          int8=spec.int8 or model.precision == "int8", target=spec.target, runtime=prof.runtime,
                          artifact=str(model.path), total_ms=float(sum(r["time_ms"] for r in rows)),
                          wall_ms=float(percentile(list(prof.wall_ms), 50)) if prof.wall_ms else None,
                          executed=tuple(rows)))
    from deploykit.bench.layers import OVERHEAD_NOTE_RATIO

    for key, s in zip("ab", sides):
        if s.wall_ms and s.total_ms > OVERHEAD_NOTE_RATIO * s.wall_ms:
            notes.append(f"{key}: the layer times add up to {s.total_ms / s.wall_ms:.1f}x the profiled inference's own "
                         f"duration ({s.total_ms:.3f} vs {s.wall_ms:.3f} ms): the profiler's cost per node (or other "
                         "load) inflates the buckets of many small nodes (Q/DQ, reformats) most")
    if sides[0].label == sides[1].label:
        sides = [Side(**{**s.__dict__, "label": f"{s.label} ({k})"}) for s, k in zip(sides, "ab")]
    return Explanation(a=sides[0], b=sides[1], source_graph=str(src_path) if src_path else None,
                       iterations=iterations, nodes=tuple(nodes), buckets=buckets, notes=tuple(notes),
                       excludable=excludable)
