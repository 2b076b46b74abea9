"""Per-layer profiles: where one inference's time goes, by node and by op type, from a runtime's own profiler.

The runtime (``Runtime.profile_layers``, in a session of its own after the timed loop) returns every layer's time in
each of N profiled inferences; ``summarize_layers`` turns that into the report's ``per_layer`` section:

* per node: its mean time per inference (sum over the N inferences / N), its op type and the precision it ran in;
* ``total_ms``: the sum of the nodes' mean times (the profiled inference; it leaves out what the profiler does not
  see -- the call into the runtime, thread wake-ups -- and adds the profiler's own overhead, so compare shares,
  not this total, with the measured latency);
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

from deploykit.runtimes.base import LayerProfile

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


def summarize_layers(profile: LayerProfile, top: int = DEFAULT_TOP) -> dict:
    """The report's ``per_layer`` section for a runtime's raw profile (see the module docstring)."""
    n = max(1, profile.iterations)
    nodes: dict[tuple[str, str], dict] = {}
    for r in profile.records:
        key = (r.name, r.op_type)
        node = nodes.get(key)
        if node is None:
            node = nodes[key] = {"name": r.name, "op_type": r.op_type, "sum_ms": 0.0, "precisions": Counter(),
                                 "exec_type": r.exec_type, "fused": tuple(r.fused)}
        node["sum_ms"] += r.ms
        node["precisions"][r.precision or "?"] += 1
    for node in nodes.values():
        node["time_ms"] = node.pop("sum_ms") / n
        node["precision"] = node.pop("precisions").most_common(1)[0][0]
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
    return {
        "runtime": profile.runtime,
        "profiler": profile.profiler,
        "iterations": profile.iterations,
        "total_ms": total,
        "nodes": len(nodes),
        "top": top,
        "by_op_type": op_rows,
        "by_precision": [{"precision": p, "time_ms": ms, "share": _share(ms, total)}
                         for p, ms in sorted(by_prec.items(), key=lambda kv: -kv[1])],
        "top_nodes": top_nodes,
        "families": _families(nodes.values(), total),
        "notes": list(profile.notes),
    }


def _families(nodes, total: float) -> dict:
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
        parts.append(f"softmax {s['share']:.1%} of layer time ({s['time_ms']:.3f} ms; {kinds}; {precs})")
    if s.get("fused_softmax_nodes"):
        parts.append(f"softmax fused into {s['fused_softmax_nodes']} bigger kernel(s) (attention subgraphs) taking "
                     f"{s['fused_softmax_share']:.1%} together, with no time of its own")
    if not parts:
        return "no softmax in the profiled graph"
    m = section["families"]["matmul"]
    if m["nodes"]:
        parts.append("matmul " + f"{m['share']:.1%} (" + ", ".join(f"{p} x{c}" for p, c in m["precisions"].items())
                     + ")")
    return "; ".join(parts)
