"""What an ONNX graph holds and costs: op histogram, parameters, MACs/FLOPs, input/output shapes, precision,
Q/DQ quantisation, BatchNormalization/activation fusion status and the attention blocks' softmax path.

MACs count the multiply-accumulates of Conv, ConvTranspose, Gemm and MatMul (and their quantized forms);
FLOPs = 2 x MACs. Elementwise ops, normalisation and softmax are not counted, the same convention as
``deploykit models`` (torch's FlopCounterMode / 2). Parameters are the elements of the weight and bias
tensors (float or quantized); quantisation scales and zero points are not parameters.
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
    macs, macs_by_op, unknown = _count_macs(model, shapes)
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


def _shapes(model, batch, resolution) -> dict[str, tuple]:
    """Static shapes of every tensor after shape inference with the symbolic input dims filled in."""
    import onnx

    m = copy.deepcopy(model)
    for vi in m.graph.input:
        if vi.name in {t.name for t in m.graph.initializer}:
            continue
        dims = vi.type.tensor_type.shape.dim
        for axis, d in enumerate(dims):
            if not d.HasField("dim_value") or d.dim_value <= 0:
                value = (batch or 1) if axis == 0 else resolution
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


def _count_macs(model, shapes) -> tuple[int | None, dict, int]:
    from deploykit.passes.graph import attr

    total, by_op, unknown = 0, {}, 0
    for n in model.graph.node:
        op = n.op_type
        macs = None
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
            elif op in _GEMM:
                out = shapes.get(n.output[0])
                a = shapes.get(n.input[0])
                if out and a:
                    k = a[0] if int(attr(n, "transA", 0) or 0) else a[-1]
                    macs = int(np.prod(out)) * k
            else:
                continue
        except (IndexError, TypeError):
            macs = None
        if macs is None:
            unknown += 1
            continue
        total += macs
        by_op[op] = by_op.get(op, 0) + macs
    return total, by_op, unknown


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
    types, nonzero_zp, per_channel = {}, 0, 0
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
