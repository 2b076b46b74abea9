"""Fidelity of a target's outputs: the reference every target is compared with, and the verdict.

The comparison itself (max-abs, relative error, cosine, SQNR, top-1 agreement) is ``export.verify.compare``,
the same function export verification uses.
"""

from __future__ import annotations

import numpy as np

from deploykit.core.errors import InputError
from deploykit.export import artifacts
from deploykit.export.reference import load_reference, make_input, save_reference, torch_reference
from deploykit.export.source import ResolvedModel
from deploykit.export.verify import Tolerance, compare, passes
from deploykit.models.registry import MODELS, create_model

# what "matches the reference" means per precision that ran; None = reported, no verdict
TOLERANCES: dict[str, Tolerance | None] = {
    "fp32": Tolerance(rtol=1e-3, min_cosine=0.9999),
    "tf32": Tolerance(rtol=1e-2, min_cosine=0.9999),  # TF32 rounds matmul/conv inputs to a 10-bit mantissa
    "fp16": Tolerance(rtol=2e-2, min_cosine=0.999),
    "bf16": Tolerance(rtol=1e-1, min_cosine=0.99),
    "int8": None,  # the quantisation issue sets int8 floors
}


def fidelity(ref: np.ndarray, out: np.ndarray, reference: str, precision: str) -> dict:
    metrics = compare(ref, out)
    tol = TOLERANCES.get(precision)
    verdict = {"passed": None, "reason": "no tolerance defined for this precision"}
    if tol is not None:
        ok, why = passes(metrics, tol)
        verdict = {"passed": ok, "reason": why, "tolerance": {"rtol": tol.rtol, "min_cosine": tol.min_cosine}}
    return {"reference": reference, **metrics, **verdict}


def reference_outputs(model: ResolvedModel, seed: int) -> tuple[np.ndarray, np.ndarray, str]:
    """(input, reference output, what the reference is) for ``model`` at input ``seed``.

    Registry artifacts (or files with a matching manifest): PyTorch fp32 outputs, cached beside the artifact.
    Other ONNX files: ONNX Runtime CPU with graph optimisations disabled (the most literal execution).
    OpenVINO IR files: OpenVINO CPU with f32 inference precision (labelled as such).
    """
    x = make_input(model.input_shape, seed, model.input_dtype)
    m = model.manifest
    if m is not None and m.get("settings", {}).get("model") in MODELS and m["settings"].get("precision") == "fp32":
        st = m["settings"]
        cache = artifacts.reference_path(model.path, seed, model.input_shape[0])
        cached = load_reference(cache)
        if cached is not None and cached[0].shape == x.shape and np.array_equal(cached[0], x):
            return x, cached[1], "pytorch fp32 (cpu)"
        weights = m.get("source", {}).get("weights")
        weights = None if not weights or weights.startswith("random") else weights
        torch_model = create_model(st["model"], resolution=model.input_shape[-1], seed=st["seed"],
                                   weights=weights, options=st.get("options"))
        y = torch_reference(torch_model, x)
        try:
            save_reference(cache, x, y)
        except InputError:
            pass  # read-only artifact folder: the reference is just not cached
        return x, y, "pytorch fp32 (cpu)"
    if model.kind == "native-file" and model.path.suffix == ".xml":
        from deploykit.runtimes.openvino_rt import reference_f32  # only OpenVINO reads IR

        return x, reference_f32(model.path, x), "openvino cpu f32 (an IR file: no PyTorch or ONNX reference)"
    return x, _ort_unoptimized(model, x), "onnxruntime cpu, graph optimisations disabled"


def _ort_unoptimized(model: ResolvedModel, x: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    from deploykit.runtimes.onnxruntime_cpu import load_session, session_options  # bench may import runtimes

    so = session_options(ort, threads=0, graph_opt="disable")
    sess = load_session(ort, str(model.path), so, ["CPUExecutionProvider"], str(model.path))
    return sess.run(None, {model.input_name: x})[0]
