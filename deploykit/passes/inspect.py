"""What an ONNX graph holds and costs: op histogram, parameters, MACs/FLOPs, input/output shapes, precision,
Q/DQ quantisation, BatchNormalization/activation fusion status and the attention blocks' softmax path.

MACs count the multiply-accumulates of Conv, ConvTranspose, Gemm and MatMul (and their quantized forms);
FLOPs = 2 x MACs. Elementwise ops, normalisation and softmax are not counted, the same convention as
``deploykit models`` (torch's FlopCounterMode / 2). Parameters are the elements of the weight and bias
tensors (float or quantized); quantisation scales and zero points are not parameters.

Attention MACs (``macs_attention``) are those of the MatMuls whose two operands are both activations (computed
from the input, not constants): Q.K^T and softmax.V. A node computed from constants only (say, the DFT of a weight)
is not counted: runtimes fold it when they load the graph. The ``DFT`` op (Fast-ParC's FFTs) is counted as an
*estimate*: 5 n log2 n real operations per complex transform of length n (the radix-2 Cooley-Tukey count),
i.e. 2.5 n log2 n MACs, half that for a real input; torch's FlopCounterMode does not count FFTs, so a model's
ONNX MACs exceed the registry's GMACs by this amount.
"""

from __future__ import annotations

import copy

import numpy as np

from deploykit.onnxio.files import graph_precision, input_specs, op_histogram, opset_of
from deploykit.passes.attention import find_attention, qdq_placement
from deploykit.passes.graph import GraphView

_CONV = {"Conv", "ConvInteger", "QLinearConv", "FusedConv"}
_MATMUL = {"MatMul", "MatMulInteger", "QLinearMatMul", "FusedMatMul"}
_GEMM = {"Gemm", "QGemm", "FusedGemm"}
ACTIVATIONS = ("Relu", "Clip", "LeakyRelu", "HardSwish", "HardSigmoid", "Sigmoid", "Gelu", "Elu", "Selu")
_FLOAT_TYPES = {1, 10, 11, 16}  # float, float16, double, bfloat16
_QTYPES = {2: "uint8", 3: "int8", 6: "int32", 21: "uint4", 22: "int4"}


def inspect_model(model, *, batch: int | None = None, resolution: int | None = None) -> dict:
    hist = op_histogram(model)
    shapes = _shapes(model, batch, resolution)
    macs, macs_by_op, unknown, attention = _count_macs(model, shapes)
    return {
        "opset": opset_of(model),
        "ir_version": int(model.ir_version),
        "producer": f"{model.producer_name} {model.producer_version}".strip(),
        "inputs": [{"name": s.name, "shape": [d if d is not None else "?" for d in s.dims], "dtype": s.dtype}
                   for s in input_specs(model)],
        "outputs": [_io(vi) for vi in model.graph.output],
        "nodes": sum(hist.values()),
        "op_histogram": hist,
        "params": _count_params(model),
        "macs": macs,
        "flops": 2 * macs if macs is not None else None,
        "macs_by_op": macs_by_op,
        "macs_attention": attention,
        "macs_note": (f"{unknown} compute node(s) without a known shape were not counted (give --resolution)"
                      if unknown else None),
        "precision": graph_precision(model),
        "quantization": quantization_summary(model),
        "fusion": fusion_summary(model),
        "attention": attention_summary(model),
    }


def _io(vi) -> dict:
    tt = vi.type.tensor_type
    return {"name": vi.name, "shape": [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?")
                                       for d in tt.shape.dim]}


def complexity(model, input_shape: tuple[int, ...] | list[int]) -> dict:
    """Parameters and MACs *per batch item* of ``model`` run at ``input_shape`` (its first graph input; a symbolic
    batch or spatial dim takes the value given there): total, attention (activation x activation MatMuls) and per
    op type. The report's ``model.complexity``."""
    shapes = _shapes(model, int(input_shape[0]), None, input_shape=tuple(int(d) for d in input_shape))
    macs, by_op, unknown, attention = _count_macs(model, shapes)
    batch = int(input_shape[0]) or 1
    note = "ONNX graph after shape inference at the run's input shape; MACs of Conv/ConvTranspose/Gemm/MatMul " \
           "and their int8 forms, DFT estimated as 2.5 n log2 n per transform"
    if unknown:
        note += f"; {unknown} compute node(s) without a static shape not counted"
    return {"params": _count_params(model)["count"], "macs": round(macs / batch), "macs_attention":
            round(attention / batch), "macs_by_op": {k: round(v / batch) for k, v in by_op.items()},
            "uncounted_nodes": unknown, "source": note}


_COUNT = {"type": "integer", "minimum": 0, "maximum": 10**16}
# a cached entry must look like this to be used (else it is counted again): whole non-negative counts, bounded
COMPLEXITY_SCHEMA = {
    "type": "object", "required": ["params", "macs", "macs_attention", "macs_by_op", "uncounted_nodes", "source"],
    "properties": {"params": _COUNT, "macs": _COUNT, "macs_attention": _COUNT, "uncounted_nodes": _COUNT,
                   "macs_by_op": {"type": "object", "additionalProperties": _COUNT}, "source": {"type": "string"}},
}
COMPLEXITY_CACHE_VERSION = 1  # bump when the counting rules change: cached entries of older rules are ignored


def cached_complexity(path, sha256: str, input_shape, cache_dir=None, proto=None) -> dict:
    """``complexity`` of the ONNX file ``path`` (content hash ``sha256``) at ``input_shape``, cached as
    ``<cache_dir>/complexity/<sha256>-<shape>.json`` (shape inference of a large graph takes a while; the file's
    hash and the shape decide the answer). ``proto``: the graph if the caller has it loaded."""
    from pathlib import Path

    shape = tuple(int(d) for d in input_shape)
    file = None
    if cache_dir is not None:
        name = f"v{COMPLEXITY_CACHE_VERSION}-{sha256[:32]}-{'x'.join(map(str, shape))}.json"
        file = Path(cache_dir) / "complexity" / name
        from deploykit.core.validate import read_cache_json

        cached = read_cache_json(file, max_bytes=1024 * 1024, schema=COMPLEXITY_SCHEMA)
        if cached is not None:  # an invalid cache (a link, a FIFO, absurd or non-finite numbers) is rebuilt
            return cached
    if proto is None:
        from deploykit.onnxio.files import load_onnx

        proto = load_onnx(path, load_external_data=False)
    result = complexity(proto, shape)
    if file is not None:
        from deploykit.core.atomic import write_json
        from deploykit.core.errors import InputError

        try:
            write_json(file, result)
        except (InputError, OSError):
            pass  # a read-only store: not cached
    return result


def _shapes(model, batch, resolution, input_shape: tuple[int, ...] | None = None) -> dict[str, tuple]:
    """Static shapes of every tensor after shape inference with the symbolic input dims filled in
    (``input_shape``: the first graph input's full shape; else batch for axis 0, resolution for the others)."""
    import onnx

    m = copy.deepcopy(model)
    first = True
    for vi in m.graph.input:
        if vi.name in {t.name for t in m.graph.initializer}:
            continue
        dims = vi.type.tensor_type.shape.dim
        given = input_shape if first and input_shape and len(input_shape) == len(dims) else None
        first = False
        for axis, d in enumerate(dims):
            if given is not None or not d.HasField("dim_value") or d.dim_value <= 0:
                value = given[axis] if given is not None else (batch or 1) if axis == 0 else resolution
                if value:
                    d.Clear()
                    d.dim_value = int(value)
    try:
        m = onnx.shape_inference.infer_shapes(m, data_prop=True)
    except Exception:
        pass  # shapes stay partial; MACs of unknown nodes are reported as not counted
    shapes: dict[str, tuple] = {}
    for vi in list(m.graph.value_info) + list(m.graph.input) + list(m.graph.output):
        dims = vi.type.tensor_type.shape.dim
        if vi.type.tensor_type.HasField("shape") and all(d.HasField("dim_value") and d.dim_value > 0 for d in dims):
            shapes[vi.name] = tuple(int(d.dim_value) for d in dims)
    for t in m.graph.initializer:
        shapes[t.name] = tuple(int(d) for d in t.dims)
    for n in m.graph.node:  # constants, and DequantizeLinear of a weight keeps its shape
        if n.op_type == "Constant":
            for a in n.attribute:
                if a.name == "value":
                    shapes[n.output[0]] = tuple(int(d) for d in a.t.dims)
    for n in m.graph.node:
        if n.op_type == "DequantizeLinear" and n.input[0] in shapes and n.output[0] not in shapes:
            shapes[n.output[0]] = shapes[n.input[0]]
    return shapes


# the two operands of each matmul-like op (input indices)
_MATMUL_OPERANDS = {"QLinearMatMul": (0, 3)}


def _constant_tensors(model) -> set[str]:
    """Tensors whose value does not depend on the graph inputs: initializers, Constant outputs and the outputs of
    nodes all of whose inputs are constant (e.g. DequantizeLinear of a quantized weight, a Transpose of a weight).
    ONNX graphs are topologically sorted, so one pass suffices. Initializers also listed as graph inputs (files
    exported with weights as inputs) count as constants: they are the weights."""
    const = {t.name for t in model.graph.initializer}
    for n in model.graph.node:
        if any(a.HasField("g") or a.graphs for a in n.attribute) or n.op_type.startswith("Random"):
            continue
        if all(i in const for i in n.input if i):
            const.update(o for o in n.output if o)
    return const


def _dft_macs(n, shapes, view) -> int | None:
    """Estimated MACs of one ONNX DFT node: per transform of length L, 5 L log2 L real operations (radix-2 FFT)
    = 2.5 L log2 L MACs for a complex signal, half for a real one. Signal shape [..., L, 1|2]."""
    import math

    from deploykit.passes.graph import attr

    x = shapes.get(n.input[0])
    if not x or len(x) < 2:
        return None
    axis = attr(n, "axis", None)
    if len(n.input) > 2 and n.input[2]:  # opset 20: axis is an input
        a = view.constant(n.input[2])
        axis = int(a.reshape(-1)[0]) if a is not None else None
    if axis is None:
        axis = 1 if len(n.input) <= 2 else -2
    axis = axis % len(x)
    length = x[axis]
    if len(n.input) > 1 and n.input[1]:
        dl = view.constant(n.input[1])
        if dl is None:
            return None
        length = int(dl.reshape(-1)[0])
    transforms = int(np.prod(x[:-1])) // x[axis]
    if length <= 1:
        return 0
    per = 2.5 * length * math.log2(length) * (0.5 if x[-1] == 1 else 1.0)
    return int(round(transforms * per))


def _count_macs(model, shapes) -> tuple[int, dict[str, int], int, int]:
    """(total MACs, MACs per op type, nodes not counted for want of a static shape, attention MACs)."""
    from deploykit.passes.graph import attr

    by_op: dict[str, int] = {}
    total, unknown, attention = 0, 0, 0
    const = _constant_tensors(model)
    view = None
    for n in model.graph.node:
        op = n.op_type
        macs = None
        if n.output and n.output[0] in const:
            continue  # computed from constants only (e.g. the DFT of a weight): runtimes fold it at load
        try:
            if op in _CONV or op == "ConvTranspose":
                w_idx = 3 if op == "QLinearConv" else 1
                out = shapes.get(n.output[0])
                w = shapes.get(n.input[w_idx])
                if op == "ConvTranspose":
                    x = shapes.get(n.input[0])
                    if x and w:
                        group = int(attr(n, "group", 1) or 1)
                        macs = int(np.prod(x)) * (w[1]) * int(np.prod(w[2:])) if group else None
                elif out and w:
                    macs = int(np.prod(out)) * w[1] * int(np.prod(w[2:]))
            elif op in _MATMUL:
                a_idx = 0
                out = shapes.get(n.output[0])
                a = shapes.get(n.input[a_idx])
                if out and a:
                    macs = int(np.prod(out)) * a[-1]
                    operands = [n.input[i] for i in _MATMUL_OPERANDS.get(op, (0, 1))]
                    if not any(t in const for t in operands):
                        attention += macs
            elif op in _GEMM:
                out = shapes.get(n.output[0])
                a = shapes.get(n.input[0])
                if out and a:
                    k = a[0] if int(attr(n, "transA", 0) or 0) else a[-1]
                    macs = int(np.prod(out)) * k
            elif op == "DFT":
                view = view or GraphView(model)
                macs = _dft_macs(n, shapes, view)
            else:
                continue
        except (IndexError, TypeError, ValueError):
            macs = None
        if macs is None:
            unknown += 1
            continue
        total += macs
        by_op[op] = by_op.get(op, 0) + macs
    return total, by_op, unknown, attention


def _count_params(model) -> dict:
    view = GraphView(model)
    qparams = set()
    for n in model.graph.node:
        if n.op_type in ("QuantizeLinear", "DequantizeLinear"):
            qparams.update(n.input[1:3])
        elif n.op_type.startswith("QLinear") or n.op_type == "QGemm":
            qparams.update(t for i, t in enumerate(n.input) if i % 3 in (1, 2))
    total = quantized = 0
    nbytes = 0
    for t in model.graph.initializer:
        if t.name in qparams:
            continue
        numel = int(np.prod(t.dims)) if t.dims else 1
        if t.data_type in _FLOAT_TYPES:
            if numel <= 1:
                continue  # scalars: epsilons, scale factors
            total += numel
        elif t.data_type in (2, 3, 21, 22) or (t.data_type == 6 and _feeds_dequantize(view, t.name)):
            total += numel
            quantized += numel
        else:
            continue
        nbytes += _bytes(t, numel)
    return {"count": total, "quantized": quantized, "bytes": nbytes}


def _feeds_dequantize(view, name) -> bool:
    return any(u.op_type == "DequantizeLinear" for u in view.consumers.get(name, []))


def _bytes(t, numel) -> int:
    size = {1: 4, 10: 2, 11: 8, 16: 2, 2: 1, 3: 1, 6: 4, 21: 0.5, 22: 0.5}.get(t.data_type, 4)
    return int(numel * size)


def quantization_summary(model) -> dict:
    """Q/DQ counts, what is quantized (activations vs weights), the 8-bit types and zero points used, and
    whether TensorRT's explicit quantization accepts the file (signed int8 with zero points of 0 only)."""
    view = GraphView(model)
    q = [n for n in model.graph.node if n.op_type == "QuantizeLinear"]
    dq = [n for n in model.graph.node if n.op_type == "DequantizeLinear"]
    types: dict[str, int] = {}
    nonzero_zp, per_channel = 0, 0
    weights = activations = 0
    for n in dq:
        zp = view.constant(n.input[2]) if len(n.input) > 2 and n.input[2] else None
        src = n.input[0]
        init = view.initializers.get(src)
        if init is not None:
            weights += 1
            tname = _QTYPES.get(init.data_type, str(init.data_type))
        else:
            activations += 1
            tname = str(zp.dtype) if zp is not None else "uint8"
        types[tname] = types.get(tname, 0) + 1
        if zp is not None and np.any(zp != 0):
            nonzero_zp += 1
        sc = view.constant(n.input[1])
        if sc is not None and sc.size > 1:
            per_channel += 1
    signed_only = all(t in ("int8", "int32", "int4") for t in types)
    qlinear = {k: v for k, v in op_histogram(model).items() if k.split(".")[-1].startswith("QLinear")}
    return {
        "quantize_linear": len(q),
        "dequantize_linear": len(dq),
        "quantized_activation_tensors": activations,
        "quantized_weight_tensors": weights,
        "per_channel_weights": per_channel,
        "types": types,
        "nonzero_zero_points": nonzero_zp,
        "qoperator_nodes": qlinear,
        "tensorrt_compatible": bool(dq) and signed_only and nonzero_zp == 0,
        "tensorrt_note": None if not dq else ("signed int8, zero points 0: valid for TensorRT explicit quantization"
                                              if signed_only and nonzero_zp == 0 else
                                              "uint8 or non-zero zero points: TensorRT rejects these (symmetric int8 "
                                              "only); ONNX Runtime and OpenVINO run it"),
    }


def fusion_summary(model) -> dict:
    """BatchNormalization left in the graph (and how many deploykit's fold-bn pass would fold), activations
    that follow a Conv/Gemm/MatMul (runtimes fuse these at load; ``deploykit inspect --runtime`` shows whether
    they did), and in Q/DQ graphs the convolutions whose quantized output range starts at zero (a ReLU
    absorbed into the quantization range)."""
    from deploykit.passes.bn_fold import fold_batchnorm

    hist = op_histogram(model)
    view = GraphView(model)
    bn = hist.get("BatchNormalization", 0)
    foldable = fold_batchnorm(copy.deepcopy(model))["changed"] if bn else 0
    after_compute = 0
    for n in model.graph.node:
        if n.op_type in ACTIVATIONS:
            p = view.producer.get(n.input[0])
            if p is not None and p.op_type in _CONV | _MATMUL | _GEMM | {"ConvTranspose", "Add", "BatchNormalization"}:
                after_compute += 1
    clamped = 0
    for n in model.graph.node:
        if n.op_type != "Conv":
            continue
        users = view.consumers.get(n.output[0], [])
        if len(users) == 1 and users[0].op_type == "QuantizeLinear":
            qn = users[0]
            zp = view.constant(qn.input[2]) if len(qn.input) > 2 and qn.input[2] else None
            if zp is not None and zp.size == 1 and int(zp.reshape(-1)[0]) == int(np.iinfo(zp.dtype).min):
                clamped += 1
    return {
        "batchnorm": bn,
        "batchnorm_foldable": foldable,
        "activations": {op: hist[op] for op in ACTIVATIONS if op in hist},
        "activations_after_compute": after_compute,
        "quantized_convs_with_zero_floor": clamped,
    }


def attention_summary(model) -> dict:
    sites = find_attention(model)
    if not sites:
        return {"blocks": 0}
    placement = qdq_placement(model, sites)
    return {
        "blocks": len(sites),
        "softmax_int8_output": sum(p["softmax_output_quantized"] for p in placement),
        "qlinear_softmax_pattern": sum(p["qlinear_softmax_pattern"] for p in placement),
        "tensorrt_mha_pattern": sum(p["tensorrt_mha_pattern"] for p in placement),
        "per_block": placement,
    }
