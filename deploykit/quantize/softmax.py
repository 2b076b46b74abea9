"""The error the int8 softmax adds, per attention block.

For each attention block the float model is run with the softmax output P (the attention probabilities) and
the value tensor V exposed. P is quantized with the scale / zero point the int8 graph actually carries on the
Softmax output (read from its QuantizeLinear) and the block is scored on:
  probs_max_abs    max |Pq - P| (at most half a quantization step, 1/510 for scale 1/255)
  probs_sqnr_db    SQNR of Pq against P
  zeroed_fraction  share of non-zero probabilities (> 1e-6) that round to 0 (attention that disappears)
  attn_sqnr_db     SQNR of Pq @ V against P @ V: the error at the attention output, isolated from the rest
                   of the quantization (V and everything else stay float here)
"""

from __future__ import annotations

import numpy as np

from deploykit.passes.attention import AttentionSite


def fake_quantize(x: np.ndarray, scale: float, zero_point: int, qtype: str) -> np.ndarray:
    info = np.iinfo(np.uint8 if qtype == "uint8" else np.int8)
    q = np.clip(np.rint(x / scale) + zero_point, info.min, info.max)
    return ((q - zero_point) * scale).astype(np.float32)


def softmax_errors(float_model, sites: list[AttentionSite], placement: list[dict], x: np.ndarray) -> list[dict]:
    """Per-block error of the quantized softmax output (see the module doc). ``float_model`` is the float graph
    the int8 file was made from (tensor names match); ``placement`` comes from ``passes.attention.qdq_placement``
    on the int8 graph."""
    import copy

    from onnx import helper

    from deploykit.passes.fuse import run_reference

    by_softmax = {p["softmax"]: p for p in placement}
    wanted = [s for s in sites if s.v_input and by_softmax.get(s.softmax, {}).get("softmax_output_quantized")]
    if not wanted:
        return []
    m = copy.deepcopy(float_model)
    names: list[str] = []
    for s in wanted:
        for t in (s.softmax_output, s.v_input):
            if t and t not in names:
                names.append(t)
    existing = {o.name for o in m.graph.output}
    for t in names:
        if t not in existing:
            m.graph.output.append(helper.make_empty_tensor_value_info(t))
    out_names = [o.name for o in m.graph.output]
    acc = {s.softmax: {"max_abs": 0.0, "err_p": 0.0, "sig_p": 0.0, "nz": 0, "zeroed": 0, "err_a": 0.0, "sig_a": 0.0}
           for s in wanted}
    input_name = [i.name for i in m.graph.input if i.name not in {t.name for t in m.graph.initializer}][0]
    for i in range(len(x)):
        outs = dict(zip(out_names, run_reference(m, {input_name: x[i:i + 1]})))
        for s in wanted:
            p = outs[s.softmax_output]
            v = outs[s.v_input]
            pl = by_softmax[s.softmax]
            pq = fake_quantize(p, pl["softmax_output_scale"], pl["softmax_output_zero_point"] or 0,
                               pl["softmax_output_type"] or "uint8")
            a = acc[s.softmax]
            d = np.abs(pq - p)
            a["max_abs"] = max(a["max_abs"], float(d.max()))
            a["err_p"] += float(np.sum(d.astype(np.float64) ** 2))
            a["sig_p"] += float(np.sum(p.astype(np.float64) ** 2))
            nz = p > 1e-6
            a["nz"] += int(nz.sum())
            a["zeroed"] += int((nz & (pq == 0)).sum())
            att, attq = np.matmul(p, v).astype(np.float64), np.matmul(pq, v).astype(np.float64)
            a["err_a"] += float(np.sum((att - attq) ** 2))
            a["sig_a"] += float(np.sum(att ** 2))
    rows = []
    for s in wanted:
        a, pl = acc[s.softmax], by_softmax[s.softmax]
        rows.append({
            "index": s.index, "softmax": s.softmax,
            "scale": pl["softmax_output_scale"], "zero_point": pl["softmax_output_zero_point"],
            "type": pl["softmax_output_type"],
            "probs_max_abs": a["max_abs"],
            "probs_sqnr_db": float(10 * np.log10(a["sig_p"] / a["err_p"])) if a["err_p"] > 0 else None,
            "zeroed_fraction": a["zeroed"] / a["nz"] if a["nz"] else 0.0,
            "attn_sqnr_db": float(10 * np.log10(a["sig_a"] / a["err_a"])) if a["err_a"] > 0 else None,
            "samples": int(len(x)),
        })
    return rows
