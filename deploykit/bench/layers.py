"""Per-layer profiles: where one inference's time goes, by node and by op type, from a runtime's own profiler.

The runtime (``Runtime.profile_layers``, in a session of its own after the timed loop) returns every layer's time in
each of N profiled inferences; ``summarize_layers`` turns that into the report's ``per_layer`` section:

* per node: its median time over the N profiled inferences (robust to an inference the OS interrupted: a sum over
  hundreds of small nodes would collect every such hiccup), its op type and the precision it ran in;
* ``total_ms``: the sum of the nodes' median times (the profiled inference; it leaves out what the profiler does not
  see -- the call into the runtime, thread wake-ups -- and adds the profiler's own cost per node, so compare shares,
  not this total, with the measured latency). ``measured_ms`` (the timed loop's p50, profiling off) is recorded
  beside it, and ``profiled_wall_ms``, the median duration of a profiled inference by the runtime's own clock
  (ONNX Runtime's model_run events, OpenVINO's request timer; none for TensorRT): where the profiled total runs
  well above it (ONNX Runtime's profiler costs about 1-3 us per node, which adds up on graphs of hundreds of small
  nodes such as int8 transformers; or the machine was busier during the profile), a note says that the shares of
  tiny ops are overstated, and each family also gets ``share_of_measured`` = its time / the measured latency
  (closer to the truth for large kernels such as a softmax or a matmul);
* ``by_op_type``: per op type the summed time, its share of ``total_ms``, the number of nodes and the precisions
  they ran in (nodes per precision); ``by_precision``: time per precision ("which layers ran int8");
* ``top_nodes``: the ``top`` slowest nodes;
* ``families``: the op families the ViT-vs-CNN question is about -- softmax, matmul (MatMul / Gemm /
  FullyConnected and their int8 kernels), conv, attention -- with their share, op types and precisions, and the
  nodes where the runtime fused a softmax into a bigger kernel (OpenVINO's attention subgraph): such a softmax
  has no time of its own, and the family says so instead of reporting 0.

Op types are the runtime's own (ONNX Runtime kernels such as FusedConv / QLinearSoftmax, OpenVINO node types such
as Convolution / FullyConnected / Subgraph, TensorRT layer types), so they differ between runtimes; the families
line them up.
"""

from __future__ import annotations

from collections import Counter, defaultdict

from deploykit.bench.stats import percentile
from deploykit.runtimes.base import CONTROL_FLOW_OPS, LayerProfile

DEFAULT_TOP = 15
DEFAULT_ITERATIONS = 20

# family -> substrings of an op type (lower case); the first family that matches wins (QLinearSoftmax is softmax,
# CaskGemmConvolution is conv)
FAMILIES = (
    ("softmax", ("softmax",)),
    ("attention", ("attention",)),
    ("conv", ("conv",)),
    ("matmul", ("matmul", "gemm", "fullyconnected", "innerproduct")),
)


def family_of(op_type: str) -> str | None:
    low = op_type.lower()
    for fam, keys in FAMILIES:
        if any(k in low for k in keys):
            return fam
    return None


def _share(part: float, total: float) -> float:
    return part / total if total > 0 else 0.0


OVERHEAD_NOTE_RATIO = 1.25  # profiled total / measured latency above which the profiler's cost gets a note


def node_times(profile: LayerProfile) -> tuple[dict[tuple[str, str], dict], dict[str, float]]:
    """Every profiled node, by (name, op type): ``{"name", "op_type", "time_ms"`` (its median over the profiled
    inferences), ``"precision"`` (the one it ran in most), ``"exec_type", "fused"}``; and the control-flow nodes left
    out (their time is their subgraphs' nodes'). ``summarize_layers`` and ``deploykit explain`` both start here, so
    their totals agree."""
    nodes: dict[tuple[str, str], dict] = {}
    # ONNX Runtime times a control-flow node (If, Loop, Scan) over the whole of its subgraph, whose nodes it also
    # times one by one: the control-flow node's own time is left out, or every subgraph node counts twice
    inclusive = profile.runtime == "onnxruntime"
    left_out: dict[str, float] = defaultdict(float)
    for r in profile.records:
        if inclusive and r.op_type in CONTROL_FLOW_OPS:
            left_out[f"{r.name} ({r.op_type})"] += r.ms / max(1, profile.iterations)
            continue
        key = (r.name, r.op_type)
        node = nodes.get(key)
        if node is None:
            node = nodes[key] = {"name": r.name, "op_type": r.op_type, "per_iteration": defaultdict(float),
                                 "precisions": Counter(), "exec_type": r.exec_type, "fused": tuple(r.fused)}
        node["per_iteration"][r.iteration] += r.ms  # a node run twice in one inference counts twice
        node["precisions"][r.precision or "?"] += 1
    n = max(1, profile.iterations)
    for node in nodes.values():
        times = list(node.pop("per_iteration").values())
        times += [0.0] * max(0, n - len(times))  # not run in some inferences: 0 there
        node["time_ms"] = float(percentile(times, 50))  # the median (bench/stats.py's percentile definition)
        node["precision"] = node.pop("precisions").most_common(1)[0][0]
    return nodes, dict(left_out)


def summarize_layers(profile: LayerProfile, top: int = DEFAULT_TOP, measured_ms: float | None = None) -> dict:
    """The report's ``per_layer`` section for a runtime's raw profile (see the module docstring); ``measured_ms``:
    the timed loop's p50 latency (profiling off), when comparable (latency mode)."""
    nodes, left_out = node_times(profile)
    total = sum(nd["time_ms"] for nd in nodes.values())

    by_type: dict[str, dict] = {}
    by_prec: dict[str, float] = defaultdict(float)
    for nd in nodes.values():
        t = by_type.setdefault(nd["op_type"], {"op_type": nd["op_type"], "time_ms": 0.0, "count": 0,
                                               "precisions": Counter()})
        t["time_ms"] += nd["time_ms"]
        t["count"] += 1
        t["precisions"][nd["precision"]] += 1
        by_prec[nd["precision"]] += nd["time_ms"]
    op_rows = sorted(by_type.values(), key=lambda t: -t["time_ms"])
    for t in op_rows:
        t["share"] = _share(t["time_ms"], total)
        t["precisions"] = dict(t["precisions"].most_common())
        t["family"] = family_of(t["op_type"])
    ranked = sorted(nodes.values(), key=lambda nd: -nd["time_ms"])
    top_nodes = []
    for nd in ranked[:max(0, top)]:
        row = {"name": nd["name"], "op_type": nd["op_type"], "time_ms": nd["time_ms"],
               "share": _share(nd["time_ms"], total), "precision": nd["precision"]}
        if nd["exec_type"]:
            row["exec_type"] = nd["exec_type"]
        if nd["fused"]:
            row["fused"] = list(nd["fused"])
        top_nodes.append(row)
    notes = list(profile.notes)
    if left_out:
        notes.append("control-flow node(s) " + ", ".join(f"{k} {v:.3f} ms" for k, v in left_out.items())
                     + " left out of the totals: their time is that of their subgraphs' nodes, counted one by one")
    wall = float(percentile(profile.wall_ms, 50)) if profile.wall_ms else None
    if measured_ms and total > OVERHEAD_NOTE_RATIO * measured_ms:
        slower = (f"; the profiled inferences themselves took {wall:.3f} ms ({wall / measured_ms:.1f}x)"
                  if wall else "")
        notes.append(f"the profiled layer times add up to {total / measured_ms:.1f}x the measured latency "
                     f"({total:.3f} vs {measured_ms:.3f} ms{slower}): the profiler's own cost per node (about "
                     f"{(total - measured_ms) / max(1, len(nodes)) * 1000:.1f} us over {len(nodes)} nodes if that is "
                     "all of it; ONNX Runtime's is 1-3 us) or other load on the machine during the profile. Shares of "
                     "small nodes are then overstated, those of large kernels understated; share_of_measured (time / "
                     "measured latency) is closer for large kernels")
    return {
        "runtime": profile.runtime,
        "profiler": profile.profiler,
        "iterations": profile.iterations,
        "total_ms": total,
        "measured_ms": measured_ms,
        "profiled_wall_ms": wall,
        "nodes": len(nodes),
        "top": top,
        "by_op_type": op_rows,
        "by_precision": [{"precision": p, "time_ms": ms, "share": _share(ms, total)}
                         for p, ms in sorted(by_prec.items(), key=lambda kv: -kv[1])],
        "top_nodes": top_nodes,
        "families": _families(nodes.values(), total, measured_ms),
        "notes": notes,
    }


def _families(nodes, total: float, measured_ms: float | None) -> dict:
    fams: dict[str, dict] = {}
    for fam, _ in FAMILIES:
        fams[fam] = {"time_ms": 0.0, "share": 0.0, "nodes": 0, "op_types": Counter(), "precisions": Counter(),
                     "fused_softmax_nodes": 0, "fused_softmax_ms": 0.0}
    for nd in nodes:
        fam = family_of(nd["op_type"])
        if fam is not None:
            f = fams[fam]
            f["time_ms"] += nd["time_ms"]
            f["nodes"] += 1
            f["op_types"][nd["op_type"]] += 1
            f["precisions"][nd["precision"]] += 1
        if fam != "softmax" and any(family_of(t) == "softmax" for t in nd["fused"]):
            s = fams["softmax"]
            s["fused_softmax_nodes"] += 1
            s["fused_softmax_ms"] += nd["time_ms"]
    out = {}
    for fam, f in fams.items():
        f["share"] = _share(f["time_ms"], total)
        f["share_of_measured"] = _share(f["time_ms"], measured_ms) if measured_ms else None
        f["op_types"] = dict(f["op_types"].most_common())
        f["precisions"] = dict(f["precisions"].most_common())
        if fam == "softmax":
            f["fused_softmax_share"] = _share(f["fused_softmax_ms"], total)
        else:
            del f["fused_softmax_nodes"], f["fused_softmax_ms"]
        out[fam] = f
    return out


def softmax_text(section: dict) -> str:
    """One line on the softmax: its share of the profiled time and the precision it ran in, or where it went."""
    s = section["families"]["softmax"]
    parts = []
    if s["nodes"]:
        precs = ", ".join(f"{p} x{c}" for p, c in s["precisions"].items())
        kinds = ", ".join(s["op_types"])
        of_measured = f", {s['share_of_measured']:.1%} of the measured latency" if _inflated(section) else ""
        parts.append(f"softmax {s['share']:.1%} of layer time{of_measured} ({s['time_ms']:.3f} ms; {kinds}; {precs})")
    if s.get("fused_softmax_nodes"):
        parts.append(f"softmax fused into {s['fused_softmax_nodes']} bigger kernel(s) (attention subgraphs) taking "
                     f"{s['fused_softmax_share']:.1%} together, with no time of its own")
    if not parts:
        return "no softmax in the profiled graph"
    m = section["families"]["matmul"]
    if m["nodes"]:
        of_measured = f", {m['share_of_measured']:.1%} of the measured latency" if _inflated(section) else ""
        parts.append(f"matmul {m['share']:.1%}{of_measured} (" +
                     ", ".join(f"{p} x{c}" for p, c in m["precisions"].items()) + ")")
    return "; ".join(parts)


def _inflated(section: dict) -> bool:
    """Whether the profiled total runs so far above the measured latency that shares of it mislead."""
    measured = section.get("measured_ms")
    return bool(measured) and section["total_ms"] > OVERHEAD_NOTE_RATIO * measured
