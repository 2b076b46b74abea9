"""Find the attention blocks of a graph: Q·Kᵀ MatMul -> (scale / mask) -> Softmax -> probabilities·V MatMul,
and say how each is quantized.

TensorRT fuses int8 multi-head attention only when Q/DQ sit before both inputs of the first batched MatMul
(Q and K), after the Softmax (the probabilities), before V, and after the second MatMul (TensorRT developer
guide, "MHA fusion"); ONNX Runtime runs a DequantizeLinear -> Softmax -> QuantizeLinear group as the int8
kernel com.microsoft.QLinearSoftmax. ``qdq_placement`` reports both conditions per attention block.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from deploykit.passes.graph import GraphView

# ops that may sit between the first MatMul and the Softmax (scale, mask, casts, fake-quantisation)
_BACK_THROUGH = {"Mul", "Div", "Add", "Sub", "Where", "Cast", "Identity", "DequantizeLinear", "QuantizeLinear",
                 "Reshape"}
# ops that may sit between the Softmax and the second MatMul
_FWD_THROUGH = {"QuantizeLinear", "DequantizeLinear", "Identity", "Dropout", "Cast", "Reshape"}
# data movement between the second MatMul and the output projection
_MOVE = {"Transpose", "Reshape", "Flatten", "Squeeze", "Unsqueeze"}


@dataclass
class AttentionSite:
    index: int
    softmax: str  # node name
    softmax_input: str
    softmax_output: str
    qk_matmul: str | None
    pv_matmul: str | None
    v_input: str | None  # the tensor the second MatMul multiplies the probabilities with
    pv_output: str | None

    def as_dict(self) -> dict:
        return asdict(self)


def _node_name(node) -> str:
    return node.name or f"{node.op_type}:{node.output[0]}"


def find_attention(model) -> list[AttentionSite]:
    view = GraphView(model)
    sites: list[AttentionSite] = []
    for node in model.graph.node:
        if node.op_type != "Softmax":
            continue
        qk = _walk_back(view, node.input[0])
        pv, probs_tensor = _walk_forward(view, node.output[0])
        v_input = None
        if pv is not None:
            others = [t for t in pv.input if t != probs_tensor]
            v_input = others[0] if others else None
        sites.append(AttentionSite(index=len(sites), softmax=_node_name(node), softmax_input=node.input[0],
                                   softmax_output=node.output[0], qk_matmul=_node_name(qk) if qk is not None else None,
                                   pv_matmul=_node_name(pv) if pv is not None else None, v_input=v_input,
                                   pv_output=pv.output[0] if pv is not None else None))
    return sites


def _walk_back(view: GraphView, tensor: str, depth: int = 6):
    for _ in range(depth):
        prod = view.producer.get(tensor)
        if prod is None:
            return None
        if prod.op_type in ("MatMul", "QLinearMatMul", "MatMulInteger"):
            return prod
        if prod.op_type not in _BACK_THROUGH:
            return None
        # follow the data input (for Mul/Add the non-constant one)
        nxt = [t for t in prod.input[:2] if t and view.constant(t) is None]
        if not nxt:
            return None
        tensor = nxt[0]
    return None


def _walk_forward(view: GraphView, tensor: str, depth: int = 4):
    for _ in range(depth):
        users = view.consumers.get(tensor, [])
        if len(users) != 1:
            return None, None
        user = users[0]
        if user.op_type in ("MatMul", "QLinearMatMul", "MatMulInteger"):
            return user, tensor
        if user.op_type not in _FWD_THROUGH:
            return None, None
        tensor = user.output[0]
    return None, None


def qdq_placement(model, sites: list[AttentionSite] | None = None) -> list[dict]:
    """Per attention block: where the Q/DQ pairs are, whether ONNX Runtime can run the Softmax as
    QLinearSoftmax (DequantizeLinear in, QuantizeLinear out) and whether the placement is the one TensorRT
    needs to fuse int8 MHA."""
    view = GraphView(model)
    sites = find_attention(model) if sites is None else sites
    by_name = {_node_name(n): n for n in model.graph.node}
    out = []
    for s in sites:
        sm = by_name[s.softmax]
        qk = by_name.get(s.qk_matmul) if s.qk_matmul else None
        pv = by_name.get(s.pv_matmul) if s.pv_matmul else None

        def from_dq(t):
            p = view.producer.get(t)
            return p is not None and p.op_type == "DequantizeLinear"

        softmax_in_q = from_dq(sm.input[0])
        users = view.consumers.get(sm.output[0], [])
        softmax_out_q = len(users) == 1 and users[0].op_type == "QuantizeLinear"
        out_scale = out_zp = out_type = None
        if softmax_out_q:
            q = users[0]
            sc = view.constant(q.input[1])
            zp = view.constant(q.input[2]) if len(q.input) > 2 and q.input[2] else None
            out_scale = float(sc.reshape(-1)[0]) if sc is not None else None
            out_zp = int(zp.reshape(-1)[0]) if zp is not None else 0
            out_type = str(zp.dtype) if zp is not None else "uint8"
        qk_in_q = qk is not None and all(from_dq(t) for t in qk.input[:2])
        pv_in_q = pv is not None and all(from_dq(t) for t in pv.input[:2])
        pv_out_q = pv is not None and _reaches_quantize(view, pv.output[0])
        out.append({
            "index": s.index, "softmax": s.softmax,
            "qk_inputs_quantized": qk_in_q,
            "softmax_input_quantized": softmax_in_q,
            "softmax_output_quantized": softmax_out_q,
            "softmax_output_scale": out_scale, "softmax_output_zero_point": out_zp, "softmax_output_type": out_type,
            "pv_inputs_quantized": pv_in_q,
            "pv_output_quantized": pv_out_q,
            "qlinear_softmax_pattern": softmax_in_q and softmax_out_q,
            "tensorrt_mha_pattern": qk_in_q and softmax_out_q and pv_in_q and pv_out_q,
        })
    return out


def _reaches_quantize(view: GraphView, tensor: str, depth: int = 4) -> bool:
    for _ in range(depth):
        users = view.consumers.get(tensor, [])
        if len(users) != 1:
            return False
        if users[0].op_type == "QuantizeLinear":
            return True
        if users[0].op_type not in _MOVE:
            return False
        tensor = users[0].output[0]
    return False
