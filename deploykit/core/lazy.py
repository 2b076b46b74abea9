"""Lazy imports of heavy or optional dependencies, with a clear message naming the extra to install."""

from __future__ import annotations

import importlib
import importlib.util
from types import ModuleType

from deploykit.core.errors import UnavailableError

# module -> (pip extra that provides it, pip package name)
_EXTRAS = {
    "openvino": ("openvino", "openvino"),
    "nncf": ("openvino", "nncf"),
    "tensorrt": ("trt", "tensorrt"),
    "cuda": ("trt", "cuda-python"),
    "pynvml": ("nvidia", "nvidia-ml-py"),
    "mlperf_loadgen": ("loadgen", "mlcommons-loadgen"),
}


def install_hint(module: str) -> str:
    extra, package = _EXTRAS.get(module, (None, module))
    if extra:
        return f"pip install 'deploykit[{extra}]'"
    return f"pip install {package}"


def is_installed(module: str) -> bool:
    """True if ``module`` can be found, without importing it."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def require(module: str, purpose: str | None = None) -> ModuleType:
    """Import ``module`` or raise UnavailableError saying how to get it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        what = f" (needed for {purpose})" if purpose else ""
        raise UnavailableError(
            f"{module} is not installed{what}: {install_hint(module)}",
            hint=None if isinstance(exc, ModuleNotFoundError) else f"import failed: {exc}",
        ) from exc


def version_of(module: str) -> str | None:
    """Installed distribution version of ``module`` without importing it (None if absent)."""
    from importlib import metadata

    names = {"onnxruntime": ["onnxruntime", "onnxruntime-gpu", "onnxruntime-openvino"],
             "pynvml": ["nvidia-ml-py"], "cuda": ["cuda-python"]}.get(module, [module])
    for name in names:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return None
