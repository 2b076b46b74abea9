"""Run float and int8 models over a batch of inputs (ONNX Runtime or OpenVINO) and compare them.

Fidelity of an int8 model = ``onnxio.verify.compare`` of its outputs against the fp32 model's on the same
inputs (max-abs, relative error, min cosine over the samples, SQNR, top-1 agreement), plus the mean cosine and
top-5 agreement. Accuracy = top-1 / top-5 against the labels of an evaluation folder.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from deploykit.core.errors import InputError, squash
from deploykit.core.lazy import require
from deploykit.onnxio.verify import Tolerance, compare, passes


class OrtModel:
    """An ONNX file (or serialized bytes) in ONNX Runtime's CPU provider, fed in the batch size it accepts."""

    def __init__(self, source, *, graph_opt: str = "all", threads: int | None = None):
        from deploykit.onnxio.session import cpu_session

        self.sess = cpu_session(source, graph_opt=graph_opt, threads=threads)
        inp = self.sess.get_inputs()[0]
        self.input_name = inp.name
        b = inp.shape[0]
        self.batch = b if isinstance(b, int) and b > 0 else None

    def __call__(self, x: np.ndarray, chunk: int = 16) -> np.ndarray:
        return _batched(lambda xb: self.sess.run(None, {self.input_name: xb})[0], x, self.batch, chunk)


class OpenVinoModel:
    """An ONNX or IR file compiled by OpenVINO on the CPU with INFERENCE_PRECISION_HINT=f32 (so an "fp32"
    reference never silently runs bf16 on CPUs with bf16 units). Used for quantized files, so it first compiles
    in a child process (``check_compiles``)."""

    def __init__(self, path, *, threads: int | None = None):
        ov = require("openvino", "running models in OpenVINO")
        core = ov.Core()
        cfg: dict[str, str | int] = {"INFERENCE_PRECISION_HINT": "f32"}
        if threads:
            cfg["INFERENCE_NUM_THREADS"] = threads
        from deploykit.runtimes.openvino import check_compiles

        check_compiles(Path(path), "CPU", cfg)  # the int8 files it runs can crash OpenVINO's plugin
        try:
            model = core.read_model(str(path))
            self.compiled = core.compile_model(model, "CPU", cfg)
        except Exception as exc:
            raise InputError(f"OpenVINO cannot compile {path}: {squash(exc)}") from None
        self.request = self.compiled.create_infer_request()
        shape = self.compiled.input(0).get_partial_shape()
        self.batch = shape[0].get_length() if shape[0].is_static else None

    def __call__(self, x: np.ndarray, chunk: int = 16) -> np.ndarray:
        def run(xb):
            self.request.infer({0: xb})
            return self.request.get_output_tensor(0).data.copy()

        return _batched(run, x, self.batch, chunk)


def _batched(fn, x: np.ndarray, fixed: int | None, chunk: int) -> np.ndarray:
    step = fixed or chunk
    outs = []
    for i in range(0, len(x), step):
        xb = x[i:i + step]
        if fixed and len(xb) < fixed:  # pad the last batch of a fixed-batch model, drop the padding after
            pad = np.concatenate([xb, np.repeat(xb[-1:], fixed - len(xb), axis=0)])
            outs.append(np.asarray(fn(np.ascontiguousarray(pad)))[:len(xb)])
        else:
            outs.append(np.asarray(fn(np.ascontiguousarray(xb))))
    return np.concatenate(outs)


def topk_agreement(ref: np.ndarray, out: np.ndarray, k: int = 5) -> float | None:
    """Fraction of samples whose fp32 top-1 class is among the int8 model's top-k."""
    if ref.ndim != 2 or ref.shape[1] <= k:
        return None
    top = np.argsort(-out, axis=1)[:, :k]
    return float(np.mean([r in t for r, t in zip(np.argmax(ref, axis=1), top)]))


def fidelity_metrics(ref: np.ndarray, out: np.ndarray, tol: Tolerance | None) -> dict:
    metrics = compare(ref, out)
    r2, o2 = ref.reshape(len(ref), -1).astype(np.float64), out.reshape(len(out), -1).astype(np.float64)
    denom = np.linalg.norm(r2, axis=1) * np.linalg.norm(o2, axis=1)
    cos = np.sum(r2 * o2, axis=1) / np.where(denom > 0, denom, 1.0)
    metrics["cosine_mean"] = float(np.mean(cos)) if metrics["finite"] else None
    metrics["top5_agreement"] = topk_agreement(ref, out) if metrics["finite"] else None
    if tol is not None:
        ok, why = passes(metrics, tol)
        metrics.update({"passed": ok, "reason": why,
                        "tolerance": {"rtol": tol.rtol, "min_cosine": tol.min_cosine, "min_top1": tol.min_top1}})
    return metrics


def accuracy(logits: np.ndarray, labels: np.ndarray) -> dict:
    pred = np.argsort(-logits, axis=1)[:, :5]
    top1 = float(np.mean(pred[:, 0] == labels))
    top5 = float(np.mean([lab in p for lab, p in zip(labels, pred)])) if logits.shape[1] > 5 else None
    return {"top1": top1, "top5": top5, "n": int(len(labels))}
