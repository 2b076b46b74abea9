"""Fixed input tensors (one seed -> the same tensor for every target) and PyTorch reference outputs."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from deploykit.core.errors import InputError



# activations of the first layers are several times the input (a stem conv: 64 channels at half resolution is
# ~5x an RGB input), and the input exists in several copies (numpy, torch, the runtime): what a run needs, at least
ACTIVATION_FACTOR = 8


def available_memory() -> int | None:
    """Bytes of memory available to a new allocation (MemAvailable), None when unknown."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        import os

        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def check_fits(shape, dtype: str = "float32", what: str = "the model") -> None:
    """Refuse, with the estimate, an input shape whose run cannot fit in this machine's memory (instead of a
    MemoryError, or the OOM killer, minutes later)."""
    n = 1
    for d in shape:
        n *= int(d)
    need = n * np.dtype(dtype).itemsize
    avail = available_memory()
    if avail is not None and need * ACTIVATION_FACTOR > avail:
        dims = "x".join(str(int(d)) for d in shape)
        raise InputError(f"{what}: an input of {dims} {dtype} is {_gb(need)} and a run needs at least "
                         f"{ACTIVATION_FACTOR}x that ({_gb(need * ACTIVATION_FACTOR)}, an estimate: activations and "
                         f"copies); {_gb(avail)} is available here: lower --resolution or --batch")


def _gb(n: float) -> str:
    return f"{n / 1e9:.1f} GB" if n >= 1e8 else f"{n / 1e6:.1f} MB"


def make_input(shape: tuple[int, ...], seed: int = 0, dtype: str = "float32") -> np.ndarray:
    """The benchmark input: standard-normal values (roughly what a mean/std-normalised image looks like),
    from numpy's PCG64 seeded with ``seed``. Same (shape, seed) -> bit-identical tensor everywhere. A shape that
    cannot fit in memory is an InputError with the estimate (``check_fits``)."""
    check_fits(shape, dtype, "input")
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(size=shape, dtype=np.float32)
    return x.astype(dtype, copy=False)


def torch_reference(model, x: np.ndarray) -> np.ndarray:
    """Run an eval-mode torch module on ``x`` in float32 on the CPU and return the first output."""
    import torch

    try:
        with torch.inference_mode():
            y = model(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)))
    except MemoryError:
        raise InputError(f"not enough memory to run the PyTorch model on a {'x'.join(map(str, x.shape))} input "
                         "(lower --resolution or --batch)") from None
    except RuntimeError as exc:
        if "allocate" not in str(exc) and "memory" not in str(exc).lower():
            raise
        raise InputError(f"not enough memory to run the PyTorch model on a {'x'.join(map(str, x.shape))} input: "
                         f"{' '.join(str(exc).split())[:160]} (lower --resolution or --batch)") from None
    if isinstance(y, (tuple, list)):
        y = y[0]
    if isinstance(y, dict):
        y = next(iter(y.values()))
    return y.detach().float().numpy()


def reference_key(artifact_sha256: str | None, weights_sha256: str | None, seed: int, shape) -> dict:
    """What a cached reference output derives from: the artifact's content, the weights' content, the input."""
    return {"artifact_sha256": artifact_sha256, "weights_sha256": weights_sha256, "input_seed": int(seed),
            "input_shape": [int(d) for d in shape]}


def save_reference(path: Path, x: np.ndarray, y: np.ndarray, key: dict | None = None) -> None:
    """Cache reference outputs with the ``key`` (``reference_key``) they belong to."""
    import io
    import json

    from deploykit.core.atomic import write_bytes

    buf = io.BytesIO()
    np.savez(buf, input=x, output=y, key=np.array(json.dumps(key or {}, sort_keys=True)))
    write_bytes(path, buf.getvalue())


def load_reference(path: Path, key: dict | None = None) -> tuple[np.ndarray, np.ndarray] | None:
    """Cached (input, output), or None -- when there is none, it cannot be read, or it was made for something else
    than ``key`` (another artifact, other weights, another input): a cache that does not fit is rebuilt."""
    import json

    if not Path(path).is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            stored = json.loads(str(data["key"][()])) if "key" in data.files else None
            x, y = data["input"], data["output"]
    except Exception:  # truncated, not a zip, not an npz, wrong members: as if absent
        return None
    if key is not None and stored != json.loads(json.dumps(key, sort_keys=True)):
        return None
    if x.dtype.kind != "f" or y.dtype.kind != "f" or not np.all(np.isfinite(y)):
        return None
    return x, y
