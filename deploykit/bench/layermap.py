"""Map the nodes a runtime executed (a per-layer profile) back to the nodes of the float source graph (the fp32 ONNX
file): the per-node times of ``bench/layers.node_times``, each node a layer, Q/DQ, reformat or unmapped.

What the runtimes give (``LayerProfile.graph``, ``runtimes/base.LayerNode``):

* ONNX Runtime keeps the file's node names where it can: a QDQ group DQ -> Softmax -> Q fused into
  ``QLinearSoftmax`` keeps the Softmax's name, a fusion appends ``/<Pass>Fusion/`` (stripped by the profiler's
  ``ort_node_name``), a node it rewrites gets ``_token_<n>`` (``node_conv2d_token_85``), a layout change
  ``_nchwc`` on the output tensor's name; its output tensors keep the file's tensor names, with the quantizer's
  ``_QuantizeLinear_Output`` / ``_DequantizeLinear_Output`` suffixes on a quantized graph. A node is mapped by its
  name, then by those names with the suffixes removed, then by the producer of its output tensors.
* OpenVINO records the file's nodes merged into each executed node (``originalLayersNames``): of those that are
  nodes of the source graph, the one of the executed node's op family (a FullyConnected's MatMul), else a matmul or
  convolution (a fused attention or conv + activation subgraph), else its namesake is the node it stands for; the
  others were fused into it.

Nodes that only exist because of quantization (QuantizeLinear / DequantizeLinear / FakeQuantize) are ``qdq``; layout
changes the runtime inserted (ONNX Runtime's NCHWc ``ReorderInput`` / ``ReorderOutput``, its NHWC ``Transpose``,
OpenVINO's ``Reorder``) are ``reformat``; what maps to no source node is ``unmapped``, said as such.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from deploykit.bench.layers import family_of, node_times
from deploykit.runtimes.base import LayerNode, LayerProfile

QDQ_OPS = frozenset({"QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear", "FakeQuantize"})
# layout / precision conversions a runtime inserts (always reformat), and op types that are reformat when they map
# to no node of the source graph (an NHWC Transpose ONNX Runtime put around a QLinearConv)
REFORMAT_OPS = frozenset({"ReorderInput", "ReorderOutput", "Reorder"})
REFORMAT_IF_UNMAPPED = frozenset({"Transpose", "Convert", "Reshape", "Cast"})
_TENSOR_SUFFIXES = ("_QuantizeLinear_Output", "_DequantizeLinear_Output", "_QuantizeLinear", "_DequantizeLinear",
                    "_quantized", "_pre_q", "_q_to_dq", "_nchwc")
_TOKEN = re.compile(r"(_token_\d+|/duplicated_token_\d+)+$")


@dataclass
class SourceGraph:
    """The float graph's node names, op types and tensor producers (from an ONNX file)."""

    path: Path | None
    op_types: dict[str, str] = field(default_factory=dict)  # node name -> op type
    producer: dict[str, str] = field(default_factory=dict)  # tensor -> node name

    @classmethod
    def load(cls, path: Path | None) -> SourceGraph:
        if path is None or Path(path).suffix.lower() != ".onnx":
            return cls(None)
        import onnx

        m = onnx.load(str(path), load_external_data=False)
        g = cls(Path(path))
        for n in m.graph.node:
            if not n.name or n.op_type in QDQ_OPS:
                continue
            g.op_types[n.name] = n.op_type
            for o in n.output:
                g.producer[o] = n.name
        return g

    @property
    def known(self) -> bool:
        return self.path is not None

    def has(self, name: str) -> bool:
        return name in self.op_types if self.known else bool(name)


def strip_tensor(name: str) -> str:
    """A tensor name with the quantizer's and the runtime's suffixes removed (``val_62_QuantizeLinear_Output`` ->
    ``val_62``)."""
    prev = None
    while prev != name:
        prev = name
        name = _TOKEN.sub("", name)
        for suf in _TENSOR_SUFFIXES:
            name = name.removesuffix(suf)
    return name


def name_candidates(name: str) -> list[str]:
    """The source names a runtime node name may stand for, most literal first."""
    out = [name]
    base = _TOKEN.sub("", name)
    out.append(base)
    out.append(base.split("/")[0])
    for suf in ("_quant", "_nchwc"):
        out.append(base.removesuffix(suf))
    return list(dict.fromkeys(c for c in out if c))


@dataclass
class Mapped:
    """One executed node: its kind (layer | qdq | reformat | unmapped), the source node it stands for (``source``)
    and the source nodes fused into it (``absorbed``)."""

    name: str
    op_type: str
    kind: str
    source: str | None = None
    absorbed: tuple[str, ...] = ()
    how: str = ""  # name | tensor | origins (what the mapping rests on)


def _lead_rank(origin: str, node: LayerNode, src: SourceGraph) -> int:
    """Which of the source nodes merged into an executed node it stands for: one of its own op family (a
    FullyConnected stands for its MatMul), else a matmul or convolution (the work of a fused attention or
    conv + activation subgraph), else the one it is named after, else the first."""
    op = src.op_types.get(origin, "")
    fam = family_of(op)
    if fam is not None and fam == family_of(node.op_type):
        return 0
    if fam in ("matmul", "conv"):
        return 1
    return 2 if origin == node.name else 3


def map_node(node: LayerNode, src: SourceGraph) -> Mapped:
    """Map one executed node to the source graph (see the module docstring)."""
    op = node.op_type
    if op in QDQ_OPS:
        return Mapped(node.name, op, "qdq")
    if op in REFORMAT_OPS:
        return Mapped(node.name, op, "reformat")
    if node.origins:
        names = [o for o in node.origins if src.has(o)]
        if names:
            lead = min(names, key=lambda o: _lead_rank(o, node, src))
            return Mapped(node.name, op, "layer", lead, tuple(n for n in names if n != lead), "origins")
    if _TOKEN.sub("", node.name).endswith(("_QuantizeLinear", "_DequantizeLinear")) and not (
            src.known and src.has(node.name)):  # OpenVINO's quantize subgraphs keep the Q node's name
        return Mapped(node.name, op, "qdq")
    if src.known:
        for c in name_candidates(node.name):
            if src.has(c):
                return Mapped(node.name, op, "layer", c, how="name")
        # the names of tensors: its outputs, then its own name read as one (``conv2d_nchwc`` writes ``conv2d``)
        for t in (*node.outputs, *name_candidates(node.name)):
            p = src.producer.get(t) or src.producer.get(strip_tensor(t))
            if p:
                if op in REFORMAT_IF_UNMAPPED and src.op_types.get(p) != op:
                    # a layout change the runtime put after the node that writes the tensor (an NHWC Transpose
                    # after a QLinearConv): not that node's own work
                    return Mapped(node.name, op, "reformat", how="tensor")
                return Mapped(node.name, op, "layer", p, how="tensor")
    elif not node.origins:  # no source graph to check against (an OpenVINO IR pair): the runtime's own names
        return Mapped(node.name, op, "layer", _TOKEN.sub("", node.name), how="name")
    if op in REFORMAT_IF_UNMAPPED:
        return Mapped(node.name, op, "reformat")
    return Mapped(node.name, op, "unmapped")


def map_graph(graph: tuple[LayerNode, ...], src: SourceGraph) -> dict[str, Mapped]:
    """Every executed node by name, mapped."""
    return {n.name: map_node(n, src) for n in graph}


def is_int8(precision: str | None) -> bool:
    return bool(precision) and precision.split("->")[-1] == "int8"


def map_profile(profile: LayerProfile, src: SourceGraph) -> list[dict]:
    """Every executed node of ``profile`` with its median time and precision (``bench/layers.node_times``), mapped
    to ``src``, and each Q/DQ node's int8 neighbours (``qdq_to``)."""
    times, _ = node_times(profile)
    mapped = map_graph(profile.graph, src)
    graph = {n.name: n for n in profile.graph}
    rows = []
    for (name, op), t in times.items():
        m = mapped.get(name)
        if m is None or m.op_type != op:  # a profiled node the graph read-back does not name: by name alone
            m = map_node(graph.get(name) or LayerNode(name=name, op_type=op), src)
            if m.op_type != op:
                m = Mapped(name, op, m.kind, m.source, m.absorbed, m.how)
        rows.append({"name": name, "op_type": op, "time_ms": t["time_ms"], "precision": t["precision"],
                     "kind": m.kind, "source": m.source, "absorbed": list(m.absorbed), "how": m.how, "qdq_to": []})
    int8 = {r["name"] for r in rows if r["kind"] == "layer" and is_int8(r["precision"])}
    consumers: dict[str, list[str]] = defaultdict(list)
    for n in profile.graph:
        for i in n.inputs:
            consumers[i].append(n.name)
    for r in rows:
        if r["kind"] != "qdq":
            continue
        node = graph.get(r["name"])
        if node is None:
            continue
        after = [c for c in consumers.get(r["name"], []) if c in int8]
        before = [p for p in node.inputs if p in int8]
        r["qdq_to"] = before if r["op_type"] == "DequantizeLinear" else (after or before)
    return rows
