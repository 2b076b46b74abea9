"""The fixed reference workload: a small deterministic ONNX network measured beside a model to cancel machine speed.

A latency stored in a baseline report says as much about the machine that day as about the model. So a
baseline (and ``deploykit bench --reference-workload``) also measures ``refnet-v1`` -- always the same graph
with the same weights -- on the same target, threads and options, interleaved with the model in ABBA blocks
(bench/interleave.py). What is compared later is the model's latency *relative to* refnet-v1 measured in the
same run: a runner that is 20% slower today slows both down, and the ratio stays put. It does not cancel
differences in *kind* (another CPU generation, another runtime version speeds convolutions and attention
differently), which is why fingerprint mismatches are reported next to every baseline comparison.

refnet-v1 (input 1x3x64x64 float32, ~0.2 GMAC, ~2 ms on two Zen 3 cores): a conv stack (3x3 convolutions
with ReLU, two stride-2 stages, 32/64/128 channels), then one single-head self-attention block over the
16x16 = 256 tokens (MatMul, Softmax, residual Add), a mean over tokens and two Gemm layers -- the operator
mix of both CNNs and ViTs. Weights: He-scaled normals from numpy PCG64 seed 1729 (activations stay in
range: no denormals). Built in code with onnx.helper, written to ``<models_dir>/.reference/refnet-v1.onnx``.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from deploykit.core.atomic import write_bytes
from deploykit.core.errors import InputError

NAME = "refnet-v1"
INPUT_NAME = "x"
INPUT_SHAPE = (1, 3, 64, 64)
OPSET = 17
IR_VERSION = 8
SEED = 1729

_CONVS = [  # (in, out, stride) of each 3x3 convolution, each followed by ReLU
    (3, 32, 1), (32, 64, 2), (64, 64, 1), (64, 64, 1), (64, 128, 2), (128, 128, 1), (128, 128, 1),
]
_DIM = 128
_HIDDEN = 256
_CLASSES = 100


def build_refnet_bytes() -> bytes:
    """The serialized refnet-v1 graph: the same bytes on every call (fixed producer, opset, IR and weights)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(SEED)
    inits, nodes = [], []
    macs = 0

    def weight(name, shape, fan_in):
        w = (rng.standard_normal(size=shape) * math.sqrt(2.0 / fan_in)).astype(np.float32)
        inits.append(numpy_helper.from_array(w, name))
        return name

    h = INPUT_SHAPE[2]
    cur = INPUT_NAME
    for i, (cin, cout, stride) in enumerate(_CONVS):
        w = weight(f"conv{i}.w", (cout, cin, 3, 3), cin * 9)
        b = weight(f"conv{i}.b", (cout,), 1e4)  # tiny biases
        h = (h + 2 - 3) // stride + 1
        macs += cout * cin * 9 * h * h
        nodes.append(helper.make_node("Conv", [cur, w, b], [f"conv{i}"], kernel_shape=[3, 3], pads=[1, 1, 1, 1],
                                      strides=[stride, stride]))
        nodes.append(helper.make_node("Relu", [f"conv{i}"], [f"relu{i}"]))
        cur = f"relu{i}"
    tokens = h * h
    inits.append(numpy_helper.from_array(np.array([1, _DIM, tokens], dtype=np.int64), "tok_shape"))
    nodes += [
        helper.make_node("Reshape", [cur, "tok_shape"], ["tok_cn"]),
        helper.make_node("Transpose", ["tok_cn"], ["tok"], perm=[0, 2, 1]),  # 1 x tokens x dim
    ]
    for p in ("q", "k", "v"):
        nodes.append(helper.make_node("MatMul", ["tok", weight(f"attn.{p}", (_DIM, _DIM), _DIM)], [p]))
    inits.append(numpy_helper.from_array(np.array(1.0 / math.sqrt(_DIM), dtype=np.float32), "attn.scale"))
    nodes += [
        helper.make_node("Transpose", ["k"], ["kt"], perm=[0, 2, 1]),
        helper.make_node("MatMul", ["q", "kt"], ["scores_raw"]),
        helper.make_node("Mul", ["scores_raw", "attn.scale"], ["scores"]),
        helper.make_node("Softmax", ["scores"], ["attn"], axis=-1),
        helper.make_node("MatMul", ["attn", "v"], ["ctx"]),
        helper.make_node("MatMul", ["ctx", weight("attn.o", (_DIM, _DIM), _DIM)], ["proj"]),
        helper.make_node("Add", ["tok", "proj"], ["resid"]),
        helper.make_node("ReduceMean", ["resid"], ["pooled3"], axes=[1], keepdims=0),  # opset 17: axes attribute
        helper.make_node("Gemm", ["pooled3", weight("fc1.w", (_DIM, _HIDDEN), _DIM), weight("fc1.b", (_HIDDEN,), 1e4)],
                         ["fc1"]),
        helper.make_node("Relu", ["fc1"], ["fc1r"]),
        helper.make_node("Gemm", ["fc1r", weight("fc2.w", (_HIDDEN, _CLASSES), _HIDDEN),
                                  weight("fc2.b", (_CLASSES,), 1e4)], ["logits"]),
    ]
    macs += 4 * tokens * _DIM * _DIM + 2 * tokens * tokens * _DIM + _DIM * _HIDDEN + _HIDDEN * _CLASSES
    graph = helper.make_graph(
        nodes, NAME,
        [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, list(INPUT_SHAPE))],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, _CLASSES])],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="deploykit",
                              producer_version=NAME, ir_version=IR_VERSION)
    model.doc_string = f"deploykit reference workload {NAME}: {macs} multiply-accumulates"
    onnx.checker.check_model(model)
    return model.SerializeToString()


def refnet_macs() -> int:
    h, macs = INPUT_SHAPE[2], 0
    for cin, cout, stride in _CONVS:
        h = (h + 2 - 3) // stride + 1
        macs += cout * cin * 9 * h * h
    t = h * h
    return macs + 4 * t * _DIM * _DIM + 2 * t * t * _DIM + _DIM * _HIDDEN + _HIDDEN * _CLASSES


def refnet_path(models_dir: Path) -> Path:
    """refnet-v1 written (or refreshed) under ``models_dir/.reference/``; its bytes are rebuilt and compared on
    every call (milliseconds), so a damaged cached copy is never measured."""
    data = build_refnet_bytes()
    path = Path(models_dir) / ".reference" / f"{NAME}.onnx"
    try:
        if not (path.is_file() and path.read_bytes() == data):
            write_bytes(path, data)
    except InputError:  # unwritable store: one copy per user in the temporary folder (checked the same way)
        import os
        import tempfile

        path = Path(tempfile.gettempdir()) / f"deploykit-ref-{os.getuid() if hasattr(os, 'getuid') else 0}" / \
            f"{NAME}.onnx"
        if not (path.is_file() and path.read_bytes() == data):
            write_bytes(path, data)
    return path


def refnet_model(models_dir: Path):
    """refnet-v1 as an ``export.source.ResolvedModel``."""
    import hashlib

    from deploykit.export.source import ResolvedModel

    path = refnet_path(models_dir)
    return ResolvedModel(label=NAME, kind="onnx-file", path=path, sha256=hashlib.sha256(path.read_bytes()).hexdigest(),
                         input_name=INPUT_NAME, input_shape=INPUT_SHAPE, input_dtype="float32", precision="fp32")


def describe(model) -> dict:
    return {"name": NAME, "sha256": model.sha256, "input_shape": list(INPUT_SHAPE), "macs": refnet_macs(),
            "opset": OPSET}


def reference_step(runtime_cls, options, model_side, cfg, *, models_dir: Path, seed: int = 0) -> dict:
    """Measure refnet-v1 interleaved with the already loaded model (``model_side``, a bench.interleave.Side) in
    ``cfg.reference_blocks`` ABBA rounds (A = refnet-v1, B = the model). Returns the report's
    ``reference_workload`` section, every block's raw samples included."""
    from deploykit.bench.interleave import block_config, load_side, run_interleaved

    ref = refnet_model(models_dir)
    block = block_config(block_time=cfg.reference_block_time)
    loaded = load_side(NAME, ref, runtime_cls, options, seed=seed)
    try:
        run = run_interleaved(loaded.side, model_side, block, min_rounds=cfg.reference_blocks,
                              max_rounds=cfg.reference_blocks)
    finally:
        loaded.close()
    return reference_section(ref, run, loaded.info)


def reference_section(ref_model, run, info: dict) -> dict:
    from deploykit.bench.interleave import summarize_side
    from deploykit.bench.stats import percentile

    rel = {}
    for metric in ("p50", "p90", "throughput"):
        rel[metric] = math.exp(float(percentile(run.log_ratios(metric), 50)))
    return {
        **describe(ref_model),
        "method": "interleaved ABBA blocks on the same target and options: a = the reference workload, b = the model",
        "target_info": info,
        "block_settings": run.settings(),
        "rounds": len(run.rounds),
        "stop_reason": run.stop_reason,
        "wall_s": run.wall_s,
        "stats": summarize_side(run.rounds, "a"),
        "model_stats": summarize_side(run.rounds, "b"),
        "relative": rel,  # exp of the median over blocks of log(model cost / reference cost), per metric
        "blocks": [r.to_json() for r in run.rounds],
    }
