"""Per-layer sensitivity: the SQNR of every quantized tensor of a Q/DQ graph against its fp32 value.

Activations (a QuantizeLinear -> DequantizeLinear pair on a tensor T):
  sqnr_db        int8 graph's dequantized T vs the float graph's T on the same inputs: the error that has
                 accumulated up to T (everything upstream is quantized too)
  local_sqnr_db  the float graph's T vs T rounded with this pair's own scale / zero point: the error this one
                 quantizer adds (range too wide -> coarse steps; too narrow -> clipping)
Weights (DequantizeLinear of an int8 initializer): the dequantized weights vs the float weights.

Rows are sorted worst first; ``consumers`` are the node names reading the tensor -- pass them to
``--exclude`` to keep those layers in float. Both graphs run in ONNX Runtime with optimisations disabled (the
literal Q/DQ semantics).
"""

from __future__ import annotations

import copy

import numpy as np

from deploykit.passes.graph import GraphView


def _db(sig: float, err: float) -> float | None:
    return float(10 * np.log10(sig / err)) if err > 0 and sig > 0 else None


def _qparams(view: GraphView, node):
    scale = view.constant(node.input[1])
    zp = view.constant(node.input[2]) if len(node.input) > 2 and node.input[2] else None
    return scale, zp


def _fq(x: np.ndarray, scale: np.ndarray, zp: np.ndarray | None, axis: int | None = None) -> np.ndarray:
    dtype = zp.dtype if zp is not None else np.dtype(np.uint8)
    info = np.iinfo(dtype)
    zp = np.zeros_like(scale, dtype=np.int64) if zp is None else zp.astype(np.int64)
    if scale.size > 1 and axis is not None:
        shape = [1] * x.ndim
        shape[axis] = -1
        scale, zp = scale.reshape(shape), zp.reshape(shape)
    q = np.clip(np.rint(x / scale) + zp, info.min, info.max)
    return (q - zp) * scale


def sensitivity(float_model, qdq_model, x: np.ndarray) -> list[dict]:
    from onnx import helper, numpy_helper

    from deploykit.passes.fuse import run_reference
    from deploykit.passes.graph import attr

    qv = GraphView(qdq_model)
    fv = GraphView(float_model)
    float_tensors = set(fv.producer) | {i.name for i in float_model.graph.input}
    act, weights = [], []
    for dq in qdq_model.graph.node:
        if dq.op_type != "DequantizeLinear":
            continue
        src = qv.producer.get(dq.input[0])
        consumers = sorted(n.name or n.op_type for n in qv.consumers.get(dq.output[0], []))
        if src is not None and src.op_type == "QuantizeLinear":
            tensor = src.input[0]
            if tensor in float_tensors:
                scale, zp = _qparams(qv, src)
                act.append({"tensor": tensor, "dq_output": dq.output[0], "scale": scale, "zp": zp,
                            "consumers": consumers})
        elif dq.input[0] in qv.initializers:
            qw = numpy_helper.to_array(qv.initializers[dq.input[0]])
            scale, zp = _qparams(qv, dq)
            axis = attr(dq, "axis", 1)
            fw = fv.constant(dq.output[0])
            if fw is None:
                fw = fv.constant(dq.input[0].removesuffix("_quantized"))
            if fw is None or fw.shape != qw.shape or not np.issubdtype(fw.dtype, np.floating):
                continue
            zpv = np.zeros_like(scale) if zp is None else zp.astype(np.float64)
            if scale.size > 1:
                shape = [1] * qw.ndim
                shape[axis] = -1
                deq = (qw.astype(np.float64) - zpv.reshape(shape)) * scale.reshape(shape)
            else:
                deq = (qw.astype(np.float64) - zpv) * scale
            err = float(np.sum((fw.astype(np.float64) - deq) ** 2))
            weights.append({"kind": "weight", "tensor": dq.output[0], "consumers": consumers,
                            "sqnr_db": _db(float(np.sum(fw.astype(np.float64) ** 2)), err),
                            "per_channel": bool(scale.size > 1), "bits": 8})
    # expose every quantized activation in both graphs and accumulate the energies over the inputs
    fm, qm = copy.deepcopy(float_model), copy.deepcopy(qdq_model)
    have_f, have_q = {o.name for o in fm.graph.output}, {o.name for o in qm.graph.output}
    for a in act:
        if a["tensor"] not in have_f:
            fm.graph.output.append(helper.make_empty_tensor_value_info(a["tensor"]))
            have_f.add(a["tensor"])
        if a["dq_output"] not in have_q:
            qm.graph.output.append(helper.make_empty_tensor_value_info(a["dq_output"]))
            have_q.add(a["dq_output"])
    fnames, qnames = [o.name for o in fm.graph.output], [o.name for o in qm.graph.output]
    init = {t.name for t in fm.graph.initializer}
    input_name = [i.name for i in fm.graph.input if i.name not in init][0]
    sums = {a["tensor"]: [0.0, 0.0, 0.0] for a in act}  # signal, accumulated error, local error
    for i in range(len(x)):
        feed = {input_name: x[i:i + 1]}
        fo = dict(zip(fnames, run_reference(fm, feed)))
        qo = dict(zip(qnames, run_reference(qm, feed)))
        for a in act:
            ref = fo[a["tensor"]].astype(np.float64)
            got = qo[a["dq_output"]].astype(np.float64)
            if ref.shape != got.shape:
                continue
            s = sums[a["tensor"]]
            s[0] += float(np.sum(ref ** 2))
            s[1] += float(np.sum((ref - got) ** 2))
            s[2] += float(np.sum((ref - _fq(ref, a["scale"], a["zp"])) ** 2))
    rows = []
    for a in act:
        sig, err, local = sums[a["tensor"]]
        zp = a["zp"]
        rows.append({"kind": "activation", "tensor": a["tensor"], "consumers": a["consumers"],
                     "sqnr_db": _db(sig, err), "local_sqnr_db": _db(sig, local),
                     "scale": float(np.asarray(a["scale"]).reshape(-1)[0]),
                     "zero_point": int(np.asarray(zp).reshape(-1)[0]) if zp is not None else 0,
                     "type": str(zp.dtype) if zp is not None else "uint8"})
    rows += weights
    return sorted(rows, key=lambda r: (r["sqnr_db"] is None, r["sqnr_db"] if r["sqnr_db"] is not None else 0.0))
