"""Small valid inputs that the hostile-input tests damage: a tiny ONNX graph (weights inline or as external data),
a deploykit manifest, a baseline report with the reference workload, a gate file. Built by hand (no model export),
each checked valid by the reader it feeds (tests/unit/test_fuzz_readers.py: the unmutated samples load)."""

from __future__ import annotations

import copy
import hashlib
from pathlib import Path

import numpy as np


def tiny_onnx(path: Path, *, external: bool = False, shape=(1, 3, 8, 8), seed: int = 0, channels: int = 8) -> Path:
    """Conv 3x3 (weights of ``seed``) -> Relu -> GlobalAveragePool -> Flatten: an image classifier with
    ``channels`` outputs. ``external``: weights in ``<name>.data`` beside it, as torch's dynamo exporter writes."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    w = rng.standard_normal((channels, shape[1], 3, 3)).astype(np.float32)
    b = rng.standard_normal((channels,)).astype(np.float32)
    nodes = [helper.make_node("Conv", ["input", "w", "b"], ["c"], pads=[1, 1, 1, 1], name="conv"),
             helper.make_node("Relu", ["c"], ["r"], name="relu"),
             helper.make_node("GlobalAveragePool", ["r"], ["p"], name="pool"),
             helper.make_node("Flatten", ["p"], ["logits"], name="flatten")]
    graph = helper.make_graph(nodes, "tiny", [helper.make_tensor_value_info("input", TensorProto.FLOAT, list(shape))],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [shape[0], channels])],
                              [numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], producer_name="tests")
    model.ir_version = 9
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if external:
        onnx.save_model(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                        location=path.name + ".data", size_threshold=0)
    else:
        onnx.save_model(model, str(path))
    return path


def sha(text: str = "x") -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def manifest(artifact: str = "a.onnx", sha256: str | None = None, model: str = "resnet18") -> dict:
    """A manifest as the exporter writes one (the fields readers use)."""
    return {
        "schema": "deploykit.manifest", "schema_version": 1, "created": "2026-01-01T00:00:00+0000",
        "artifact": artifact, "sha256": sha256 or sha(), "bytes": 1234,
        "settings": {"model": model, "precision": "fp32", "batch": 1, "resolution": 64, "opset": 18,
                     "dynamic_batch": False, "seed": 0, "weights_sha256": None, "options": {}},
        "source": {"model": model, "family": "cnn", "arch": model, "from": "torchvision", "weights": "random (seeded)",
                   "weights_sha256": None, "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225],
                   "crop_pct": 0.875, "interpolation": "bilinear", "traits": {"attention": False, "recipe": "cnn"}},
        "onnx": {"opset": 18, "op_histogram": {"Conv": 20, "Relu": 17}},
        "verification": {"passed": True},
    }


def _block(ms: float, n: int = 5) -> dict:
    return {"samples_ms": [ms] * n, "warmup_ms": [ms, ms], "wall_s": ms * n / 1e3, "batch": 1, "median_ms": ms,
            "p90_ms": ms, "items_per_s": 1e3 / ms}


def baseline_report(rounds: int = 6) -> dict:
    """A baseline report (schema v1) with ``rounds`` reference-workload blocks: what ``deploykit baseline update``
    writes, trimmed to what its readers use."""
    blocks = [{"index": i, "order": "AB" if i % 2 == 0 else "BA", "a": _block(1.0 + 0.01 * i), "b": _block(2.0)}
              for i in range(rounds)]
    stats = {"n": 50, "p50": 2.0, "p90": 2.1, "p95": 2.2, "p99": 2.3, "mean": 2.0, "stdev": 0.05, "cv": 0.025,
             "min": 1.9, "max": 2.4, "median_ci95": [1.98, 2.02], "percentile_method": "linear"}
    return {
        "schema": "deploykit.report", "schema_version": 1, "created": "2026-01-01T00:00:00+0000",
        "model": {"label": "resnet18", "kind": "registry", "path": "/nowhere/resnet18.onnx", "sha256": sha("m"),
                  "family": "cnn", "precision": "fp32",
                  "input": {"name": "input", "shape": [1, 3, 64, 64], "dtype": "float32"}},
        "target": {"name": "ort", "description": "ONNX Runtime (CPU)", "precision": "fp32",
                   "info": {"runtime": "onnxruntime", "threads": 2}},
        "settings": {"batch": 1, "warmup": 10, "min_iters": 50, "min_time": 1.0, "max_time": 60.0, "seed": 0,
                     "mode": "latency", "threads": 2, "graph_opt": "all", "precision": None},
        "timing": {"unit": "ms", "load_ms": 10.0, "first_inference_ms": 3.0, "warmup_ms": [2.0], "samples_ms": [2.0] * 50,
                   "measured_wall_s": 0.1, "iterations": 50, "stop_reason": "min_iters and min_time reached"},
        "stats": stats,
        "throughput": {"items_per_s": 500.0, "batch": 1, "basis": "batch x iterations / wall time", "mode": "latency",
                       "requests_in_flight": 1},
        "fidelity": {"reference": "pytorch fp32 (cpu)", "max_abs": 1e-6, "cosine": 1.0, "top1": 1.0, "passed": True},
        "warnings": [],
        "environment": {"cpu": {"model": "test cpu"}, "os": {}, "python": "3.11", "packages": {},
                        "deploykit": {"version": "0"}},
        "reference_workload": {
            "name": "refnet-v1", "sha256": sha("refnet"),
            "block_settings": {"block_warmup": 2, "block_iters": 5, "block_time": 0.25, "max_block_time": 10.0},
            "stats": {"n": 30, "p50": 1.0}, "relative": {"p50": 2.0}, "blocks": blocks},
    }


GATE_FILE = """version = 1

[settings]
alpha = 0.05
min_blocks = 6
max_blocks = 8
block_time = 0.1
block_iters = 5
block_warmup = 2
seed = 0

[[check]]
name = "one"
model = "resnet18"
against = "resnet18"
resolution = 64
"""


def mutated(doc: dict, path: tuple, value) -> dict:
    """A deep copy of ``doc`` with the value at ``path`` (keys / indices) replaced."""
    out = copy.deepcopy(doc)
    node = out
    for k in path[:-1]:
        node = node[k]
    node[path[-1]] = value
    return out
