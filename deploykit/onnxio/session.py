"""The one place deploykit builds ONNX Runtime CPU sessions: the ``ort`` target, export verification, the fuse
check, calibration/evaluation and the optimized-graph read-back all go through ``cpu_session``."""

from __future__ import annotations

from deploykit.core.config import GRAPH_OPTS
from deploykit.core.errors import InputError, squash
from deploykit.core.lazy import require

# deploykit's --graph-opt names -> onnxruntime.GraphOptimizationLevel members
GRAPH_OPT_LEVELS = dict(zip(GRAPH_OPTS, ("ORT_DISABLE_ALL", "ORT_ENABLE_BASIC", "ORT_ENABLE_EXTENDED",
                                         "ORT_ENABLE_ALL")))


def session_options(ort, threads: int | None, graph_opt: str, optimized_model_path: str | None = None):
    """SessionOptions deploykit uses for ONNX Runtime on the CPU: ``threads`` intra-op threads (None: ORT's
    default), one inter-op thread, sequential execution (one inference at a time, as in a latency measurement)."""
    so = ort.SessionOptions()
    if threads:
        so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = getattr(ort.GraphOptimizationLevel, GRAPH_OPT_LEVELS[graph_opt])
    so.log_severity_level = 3  # the NCHWc warning about hardware-specific optimized files is expected
    if optimized_model_path:
        so.optimized_model_filepath = optimized_model_path
    return so


def load_session(ort, source, so, providers, what: str, error: type[Exception] = InputError):
    """An InferenceSession on ``source`` (a path or serialized bytes); a model ORT refuses is one-line ``error``."""
    src = str(source) if not isinstance(source, (bytes, bytearray)) else source
    try:
        return ort.InferenceSession(src, so, providers=providers)
    except Exception as exc:  # ORT raises its own exception types for unreadable/invalid models
        raise error(f"ONNX Runtime cannot load {what}: {squash(exc)}") from None


def cpu_session(source, *, graph_opt: str = "all", threads: int | None = None, what: str = "the model",
                optimized_model_path: str | None = None, error: type[Exception] = InputError):
    """An ONNX Runtime session on the CPU execution provider."""
    ort = require("onnxruntime", "running ONNX graphs on the CPU")
    so = session_options(ort, threads, graph_opt, optimized_model_path)
    return load_session(ort, source, so, ["CPUExecutionProvider"], what, error)
