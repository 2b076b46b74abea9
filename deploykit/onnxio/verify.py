"""Output fidelity: the one comparison used by export verification and by every bench target.

Metrics against a reference (PyTorch fp32 unless stated):
  max_abs    max |ref - out| over all elements
  rel_err    max_abs / max |ref|   (scale-free; random-weight models have large logits)
  cosine     cosine similarity of ref and out per sample, the minimum over the batch
  sqnr_db    10 log10(sum ref^2 / sum (ref - out)^2); null when the outputs are identical
  top1       fraction of samples whose argmax agrees (classification outputs [N, classes])
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from deploykit.core.errors import VerificationError


@dataclass(frozen=True)
class Tolerance:
    rtol: float = 1e-3
    min_cosine: float = 0.9999
    min_top1: float | None = None


def compare(ref: np.ndarray, out: np.ndarray) -> dict:
    ref = np.asarray(ref, dtype=np.float64)
    out = np.asarray(out, dtype=np.float64)
    if ref.shape != out.shape:
        raise VerificationError(f"output shape {list(out.shape)} differs from the reference's {list(ref.shape)}")
    finite = bool(np.all(np.isfinite(out)))
    diff = np.abs(ref - out)
    max_abs = float(np.nanmax(diff)) if finite else float("nan")
    scale = float(np.max(np.abs(ref))) or 1.0
    n = ref.shape[0] if ref.ndim > 1 else 1
    r2 = ref.reshape(n, -1)
    o2 = out.reshape(n, -1)
    denom = np.linalg.norm(r2, axis=1) * np.linalg.norm(o2, axis=1)
    cos = np.where(denom > 0, np.sum(r2 * o2, axis=1) / np.where(denom > 0, denom, 1.0), 0.0)
    err_energy = float(np.sum((ref - out) ** 2))
    result = {
        "max_abs": max_abs if finite else None,
        "rel_err": max_abs / scale if finite else None,
        "mean_abs": float(np.mean(diff)) if finite else None,
        "cosine": float(np.min(cos)) if finite else None,
        "sqnr_db": (float(10 * np.log10(np.sum(ref**2) / err_energy)) if err_energy > 0 else None) if finite else None,
        "top1": None,
        "finite": finite,
        "samples": int(n),
    }
    if ref.ndim == 2 and ref.shape[1] > 1:
        result["top1"] = float(np.mean(np.argmax(ref, axis=1) == np.argmax(out, axis=1))) if finite else 0.0
    return result


def check_reference(ref: np.ndarray, what: str) -> None:
    """Refuse a degenerate reference (constant output) that would make any comparison pass vacuously."""
    ref = np.asarray(ref)
    if ref.size > 1 and float(np.std(ref)) == 0.0:
        raise VerificationError(
            f"{what}: the reference output is constant ({float(ref.flat[0]):g} everywhere), so a fidelity check "
            "would pass vacuously; check the weights (a zero-initialised head?)"
        )
    if not np.all(np.isfinite(ref)):
        raise VerificationError(f"{what}: the reference output contains NaN or inf")


def passes(result: dict, tol: Tolerance) -> tuple[bool, str]:
    """(ok, reason) for ``result`` from ``compare`` under ``tol``."""
    if not result["finite"]:
        return False, "output contains NaN or inf"
    if result["rel_err"] > tol.rtol:
        return False, (f"max-abs error {result['max_abs']:.3g} is {result['rel_err']:.2e} of the output range "
                       f"(tolerance {tol.rtol:g})")
    if result["cosine"] < tol.min_cosine:
        return False, f"cosine similarity {result['cosine']:.6f} is below {tol.min_cosine}"
    if tol.min_top1 is not None and result["top1"] is not None and result["top1"] < tol.min_top1:
        return False, f"top-1 agreement {result['top1']:.3f} is below {tol.min_top1}"
    return True, "ok"
