"""Small helpers for rewriting ONNX graphs in place: constant lookup, producers/consumers, unique names,
removal of nodes and unused initializers. The passes in this package are built on these."""

from __future__ import annotations

from collections import defaultdict
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from onnx import NodeProto


class GraphView:
    """An index over ``model.graph`` (rebuild it after structural edits with ``refresh``)."""

    def __init__(self, model):
        self.model = model
        self.graph = model.graph
        self.refresh()

    def refresh(self) -> None:
        g = self.graph
        self.initializers = {t.name: t for t in g.initializer}
        self.producer: dict[str, NodeProto] = {}
        self.consumers: dict[str, list[NodeProto]] = defaultdict(list)
        for node in g.node:
            for out in node.output:
                if out:
                    self.producer[out] = node
            for inp in node.input:
                if inp:
                    self.consumers[inp].append(node)
        self.graph_outputs = {o.name for o in g.output}
        self._names = {n.name for n in g.node} | set(self.initializers) | set(self.producer) | \
            {i.name for i in g.input} | self.graph_outputs

    # ---- constants -------------------------------------------------------------------------------------
    def constant(self, name: str) -> np.ndarray | None:
        """The value of ``name`` when it is a constant: an initializer (not also a graph input, which could
        be overridden at run time), a ``Constant`` node, or an ``Identity`` of a constant."""
        from onnx import numpy_helper

        if not name:
            return None
        if name in self.initializers and name not in {i.name for i in self.graph.input}:
            return numpy_helper.to_array(self.initializers[name])
        node = self.producer.get(name)
        if node is None:
            return None
        if node.op_type == "Identity" and node.domain in ("", "ai.onnx"):
            return self.constant(node.input[0])
        if node.op_type == "Constant" and node.domain in ("", "ai.onnx"):
            for attr in node.attribute:
                if attr.name == "value":
                    return numpy_helper.to_array(attr.t)
                if attr.name == "value_float":
                    return np.array(attr.f, dtype=np.float32)
                if attr.name == "value_floats":
                    return np.array(list(attr.floats), dtype=np.float32)
                if attr.name == "value_int":
                    return np.array(attr.i, dtype=np.int64)
                if attr.name == "value_ints":
                    return np.array(list(attr.ints), dtype=np.int64)
        return None

    def unique_name(self, base: str) -> str:
        name, i = base, 1
        while name in self._names:
            i += 1
            name = f"{base}_{i}"
        self._names.add(name)
        return name

    def add_initializer(self, base: str, value: np.ndarray) -> str:
        from onnx import numpy_helper

        name = self.unique_name(base)
        self.graph.initializer.append(numpy_helper.from_array(np.ascontiguousarray(value), name))
        self.initializers[name] = self.graph.initializer[-1]
        return name

    def single_consumer(self, tensor: str):
        """The only node reading ``tensor`` (None when several nodes read it or it is a graph output)."""
        users = self.consumers.get(tensor, [])
        if len(users) != 1 or tensor in self.graph_outputs:
            return None
        return users[0]


def attr(node, name: str, default=None):
    from onnx import helper

    for a in node.attribute:
        if a.name == name:
            return helper.get_attribute_value(a)
    return default


def set_attr(node, name: str, value) -> None:
    from onnx import helper

    for i, a in enumerate(node.attribute):
        if a.name == name:
            del node.attribute[i]
            break
    node.attribute.append(helper.make_attribute(name, value))


def remove_nodes(model, nodes) -> None:
    ids = {id(n) for n in nodes}
    keep = [n for n in model.graph.node if id(n) not in ids]
    del model.graph.node[:]
    model.graph.node.extend(keep)


def rename_input(model, old: str, new: str) -> None:
    """Make every reader of ``old`` (nodes and graph outputs) read ``new`` instead."""
    for node in model.graph.node:
        for i, name in enumerate(node.input):
            if name == old:
                node.input[i] = new


def prune_unused_initializers(model) -> int:
    """Drop initializers no node reads (and their graph-input entries in old-IR files); returns how many."""
    used = {o.name for o in model.graph.output}
    stack = [model.graph]
    while stack:  # subgraphs (If/Loop bodies) may read outer initializers by name
        g = stack.pop()
        for n in g.node:
            used.update(n.input)
            stack.extend(a.g for a in n.attribute if a.HasField("g"))
            for a in n.attribute:
                stack.extend(a.graphs)
    removed = {t.name for t in model.graph.initializer if t.name not in used}
    if removed:
        keep = [t for t in model.graph.initializer if t.name not in removed]
        del model.graph.initializer[:]
        model.graph.initializer.extend(keep)
        inputs = [vi for vi in model.graph.input if vi.name not in removed]
        del model.graph.input[:]
        model.graph.input.extend(inputs)
    return len(removed)


def drop_value_info(model, names) -> None:
    names = set(names)
    keep = [vi for vi in model.graph.value_info if vi.name not in names]
    del model.graph.value_info[:]
    model.graph.value_info.extend(keep)
