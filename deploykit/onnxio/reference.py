"""Fixed input tensors (one seed -> the same tensor for every target) and PyTorch reference outputs."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from deploykit.core.errors import InputError


def make_input(shape: tuple[int, ...], seed: int = 0, dtype: str = "float32") -> np.ndarray:
    """The benchmark input: standard-normal values (roughly what a mean/std-normalised image looks like),
    from numpy's PCG64 seeded with ``seed``. Same (shape, seed) -> bit-identical tensor everywhere."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(size=shape, dtype=np.float32)
    return x.astype(dtype, copy=False)


def torch_reference(model, x: np.ndarray) -> np.ndarray:
    """Run an eval-mode torch module on ``x`` in float32 on the CPU and return the first output."""
    import torch

    with torch.inference_mode():
        y = model(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)))
    if isinstance(y, (tuple, list)):
        y = y[0]
    if isinstance(y, dict):
        y = next(iter(y.values()))
    return y.detach().float().numpy()


def save_reference(path: Path, x: np.ndarray, y: np.ndarray) -> None:
    import io

    from deploykit.core.atomic import write_bytes

    buf = io.BytesIO()
    np.savez(buf, input=x, output=y)
    write_bytes(path, buf.getvalue())


def load_reference(path: Path) -> tuple[np.ndarray, np.ndarray] | None:
    if not Path(path).is_file():
        return None
    try:
        with np.load(path) as data:
            return data["input"], data["output"]
    except Exception:
        raise InputError(f"reference file {path} is corrupt; delete it or re-run with --force") from None
