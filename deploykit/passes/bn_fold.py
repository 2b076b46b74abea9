"""Fold BatchNormalization (inference mode) into the Conv / ConvTranspose / Gemm that feeds it.

With s = gamma / sqrt(var + eps) and t = beta - mean * s (one value per output channel):
    Conv           W'[o, ...]   = W[o, ...] * s[o]                    b' = b * s + t
    ConvTranspose  W'[i, j, ...] = W[i, j, ...] * s[g(i) * Cout/group + j]   (W is Cin x Cout/group x k...)
    Gemm           B' = B * s along the output axis (columns of op(B))   C' = beta * C * s + t, beta' = 1
Arithmetic is done in float64 and cast back to the weight's type. The folded weights are new initializers
(the originals may be shared with other nodes; unused ones are pruned afterwards).

torch 2.14's dynamo exporter already folds BN into Conv in eval mode, so on its graphs this pass finds
nothing to do; graphs from other exporters (or ``deploykit export --no-fold``) still carry BN.
"""

from __future__ import annotations

import numpy as np

from deploykit.passes.graph import GraphView, attr, drop_value_info, remove_nodes, set_attr

FOLDABLE = ("Conv", "ConvTranspose", "Gemm")


def fold_batchnorm(model) -> dict:
    """Fold every foldable BatchNormalization in ``model`` (edited in place). Returns
    ``{"changed": n, "folded": [...], "kept": [{"node", "reason"}]}``."""
    view = GraphView(model)
    folded, kept, dead = [], [], []
    for bn in list(model.graph.node):
        if bn.op_type != "BatchNormalization" or bn.domain not in ("", "ai.onnx"):
            continue
        reason = _fold_one(view, bn)
        if reason is None:
            prod = view.producer[bn.input[0]]
            folded.append({"node": bn.name, "into": prod.name, "op": prod.op_type})
            dead.append(bn)
        else:
            kept.append({"node": bn.name, "reason": reason})
    if dead:
        remove_nodes(model, dead)
    return {"changed": len(folded), "folded": folded, "kept": kept}


def _fold_one(view: GraphView, bn) -> str | None:
    """Fold ``bn`` into its producer; None on success, else why it stays."""
    if int(attr(bn, "training_mode", 0) or 0) != 0:
        return "training mode"
    if len([o for o in bn.output if o]) > 1:
        extra = [o for o in bn.output[1:] if o and view.consumers.get(o)]
        if extra:
            return "running statistics outputs are used"
    x = bn.input[0]
    prod = view.producer.get(x)
    if prod is None or prod.op_type not in FOLDABLE or prod.domain not in ("", "ai.onnx"):
        return (f"input does not come from {'/'.join(FOLDABLE)}"
                + (f" (from {prod.op_type})" if prod is not None else ""))
    if view.single_consumer(x) is not bn:
        return f"the {prod.op_type} output is also used elsewhere"
    params = [view.constant(n) for n in bn.input[1:5]]
    if any(p is None for p in params):
        return "BatchNormalization parameters are not constants"
    gamma, beta, mean, var = (np.asarray(p, dtype=np.float64).reshape(-1) for p in params)
    eps = float(attr(bn, "epsilon", 1e-5))
    s = gamma / np.sqrt(var + eps)
    t = beta - mean * s
    w = view.constant(prod.input[1]) if len(prod.input) > 1 else None
    if w is None:
        return f"{prod.op_type} weight is not a constant"
    b = view.constant(prod.input[2]) if len(prod.input) > 2 and prod.input[2] else None
    if len(prod.input) > 2 and prod.input[2] and b is None:
        return f"{prod.op_type} bias is not a constant"
    if not np.issubdtype(w.dtype, np.floating):
        return f"{prod.op_type} weight is {w.dtype}, not float"

    if prod.op_type == "Conv":
        cout = w.shape[0]
        if s.size != cout:
            return f"channel mismatch ({s.size} BN channels, {cout} conv outputs)"
        w_new = w.astype(np.float64) * s.reshape((-1,) + (1,) * (w.ndim - 1))
        b_new = (np.zeros(cout) if b is None else b.astype(np.float64).reshape(-1)) * s + t
    elif prod.op_type == "ConvTranspose":
        group = int(attr(prod, "group", 1) or 1)
        cin, cout_g = w.shape[0], w.shape[1]
        cout = cout_g * group
        if s.size != cout or cin % group:
            return f"channel mismatch ({s.size} BN channels, {cout} transposed-conv outputs)"
        k = w.shape[2:]
        w5 = w.astype(np.float64).reshape((group, cin // group, cout_g) + k)
        w_new = (w5 * s.reshape((group, 1, cout_g) + (1,) * len(k))).reshape(w.shape)
        b_new = (np.zeros(cout) if b is None else b.astype(np.float64).reshape(-1)) * s + t
    else:  # Gemm: Y = alpha * op(A) @ op(B) + beta * C, BN over the columns of Y
        trans_b = int(attr(prod, "transB", 0) or 0)
        if w.ndim != 2:
            return "Gemm weight is not 2-D"
        m = w.shape[0] if trans_b else w.shape[1]
        if s.size != m:
            return f"channel mismatch ({s.size} BN channels, {m} Gemm outputs)"
        w_new = w.astype(np.float64) * (s[:, None] if trans_b else s[None, :])
        beta_attr = float(attr(prod, "beta", 1.0))
        if b is None:
            c = np.zeros(m)
        else:
            c = np.asarray(b, dtype=np.float64)
            if c.size == 1:
                c = np.full(m, float(c.reshape(-1)[0]))
            elif c.size == m and c.shape[-1] == m:
                c = c.reshape(-1)
            else:
                return f"Gemm C of shape {list(b.shape)} is not per-column"
        b_new = beta_attr * c * s + t

    wname = view.add_initializer(f"{prod.input[1]}_bnfold", w_new.astype(w.dtype))
    bname = view.add_initializer(f"{(prod.input[2] if b is not None else prod.name + '.bias')}_bnfold",
                                 b_new.astype(w.dtype))
    prod.input[1] = wname
    if len(prod.input) > 2:
        prod.input[2] = bname
    else:
        prod.input.append(bname)
    if prod.op_type == "Gemm":
        set_attr(prod, "beta", 1.0)
    old = prod.output[0]
    prod.output[0] = bn.output[0]
    drop_value_info(view.model, [old])
    view.producer[bn.output[0]] = prod
    view.consumers.pop(old, None)
    return None


def count_batchnorm(model) -> int:
    return sum(1 for n in model.graph.node if n.op_type == "BatchNormalization")
