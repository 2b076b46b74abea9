"""Fidelity of a target's outputs: the reference every target is compared with, and the verdict.

The comparison itself (max-abs, relative error, cosine, SQNR, top-1 agreement) is ``onnxio.verify.compare``,
the same function export verification uses.
"""

from __future__ import annotations

import numpy as np

from deploykit.core.errors import InputError
from deploykit.export import artifacts
from deploykit.onnxio.reference import load_reference, make_input, reference_key, save_reference, torch_reference
from deploykit.export.source import ResolvedModel
from deploykit.onnxio.verify import Tolerance, compare, passes
from deploykit.models.registry import MODELS, create_model
from deploykit.quantize.floors import INT8_FLOOR

# what "matches the reference" means per precision that ran; None = reported, no verdict
TOLERANCES: dict[str, Tolerance | None] = {
    "fp32": Tolerance(rtol=1e-3, min_cosine=0.9999),
    "tf32": Tolerance(rtol=1e-2, min_cosine=0.9999),  # TF32 rounds matmul/conv inputs to a 10-bit mantissa
    "fp16": Tolerance(rtol=2e-2, min_cosine=0.999),
    "bf16": Tolerance(rtol=1e-1, min_cosine=0.99),
    "int8": INT8_FLOOR,  # cosine >= 0.98, max-abs <= 0.25 of the output range: see quantize/floors.py
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
    st = (m or {}).get("settings", {})
    if st.get("precision") == "int8":  # an int8 artifact: the reference is its fp32 source model
        st = st.get("source_settings") or {}
    weights_gone = None
    if m is not None and st.get("model") in MODELS and st.get("precision") == "fp32":
        # the cache is keyed by what the outputs derive from: a file rebuilt at the same path with other weights
        # or another seed, or a cache for another input, is rebuilt, never trusted
        cache = artifacts.reference_path(model.path, seed, model.input_shape[0])
        key = reference_key(model.sha256, st.get("weights_sha256"), seed, x.shape)
        cached = load_reference(cache, key)
        if cached is not None and cached[0].shape == x.shape and np.array_equal(cached[0], x):
            return x, cached[1], "pytorch fp32 (cpu)"
        weights, weights_gone = _weights_file(m, st)
        if weights_gone is None:
            torch_model = create_model(st["model"], resolution=model.input_shape[-1], seed=st.get("seed", 0),
                                       weights=weights, options=st.get("options"))
            y = torch_reference(torch_model, x)
            try:
                save_reference(cache, x, y, key)
            except InputError:
                pass  # read-only artifact folder: the reference is just not cached
            return x, y, "pytorch fp32 (cpu)"
    if model.kind == "native-file" and model.path.suffix == ".xml":
        from deploykit.runtimes.openvino import reference_f32  # only OpenVINO reads IR

        return x, reference_f32(model.path, x), "openvino cpu f32 (an IR file: no PyTorch or ONNX reference)"
    fp32_source = _int8_source_file(m)
    why = f" ({weights_gone})" if weights_gone else ""
    try:
        if fp32_source is not None:
            return x, _ort_unoptimized(model, x, fp32_source), \
                f"fp32 source ONNX, onnxruntime cpu, graph optimisations disabled{why}"
        return x, _ort_unoptimized(model, x), f"onnxruntime cpu, graph optimisations disabled{why}"
    except Exception as exc:  # the model fails in ONNX Runtime's reference run: one line, not a traceback
        from deploykit.core.errors import RunFailure, runtime_raised, squash

        if not runtime_raised(exc):
            raise
        raise RunFailure(f"the reference run of {model.path.name} (onnxruntime cpu) failed: {squash(exc, 200)}; "
                         "nothing was measured") from None


def _weights_file(manifest: dict, settings: dict) -> tuple[str | None, str | None]:
    """(the checkpoint the artifact was exported from, None), or (None, why the PyTorch reference cannot be rebuilt):
    the file recorded in the manifest must still be there with the content recorded (``weights_sha256``); a
    relative path is never resolved against the working directory of a later command."""
    from pathlib import Path

    from deploykit.core.hashing import file_sha256

    weights = (manifest.get("source") or {}).get("weights")
    want = settings.get("weights_sha256")
    if not weights or weights.startswith("random") or not want:
        return None, None
    p = Path(weights)
    if not p.is_absolute():
        return None, f"the PyTorch reference needs the weights {weights}, recorded as a relative path"
    if not p.is_file():
        return None, f"the PyTorch reference needs the weights {weights}, which are gone"
    if file_sha256(p) != want:
        return None, f"the PyTorch reference needs the weights {weights}, which changed since the export"
    return str(p), None


def _int8_source_file(manifest: dict | None):
    """The fp32 file an int8 artifact was quantized from, when it is still there unchanged."""
    from pathlib import Path

    from deploykit.onnxio.files import model_sha256

    if not manifest or manifest.get("settings", {}).get("precision") != "int8":
        return None
    src = manifest.get("source", {})
    path = src.get("fp32_artifact")
    if path and Path(path).is_file() and model_sha256(path) == src.get("fp32_sha256"):
        return Path(path)
    return None


def _ort_unoptimized(model: ResolvedModel, x: np.ndarray, path=None) -> np.ndarray:
    import onnxruntime as ort

    from deploykit.runtimes.ort import load_session, session_options  # bench may import runtimes

    path = str(path or model.path)
    so = session_options(ort, threads=0, graph_opt="disable")
    sess = load_session(ort, path, so, ["CPUExecutionProvider"], path)
    return sess.run(None, {model.input_name: x})[0]
