"""Lazy imports of heavy or optional dependencies, with a clear message naming the extra to install."""

from __future__ import annotations

import importlib
import importlib.util
from pathlib import Path
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
    "ruptures": ("history", "ruptures"),
}


def source_checkout(package_dir: Path | None = None) -> Path | None:
    """The source checkout deploykit runs from (the folder with its pyproject.toml; an editable install or
    PYTHONPATH), or None for an installed package."""
    root = Path(package_dir or Path(__file__).resolve().parents[1]).parent
    try:
        text = (root / "pyproject.toml").read_text()
    except OSError:
        return None
    return root if 'name = "deploykit"' in text else None


def extra_hint(extra: str, package_dir: Path | None = None) -> str:
    """How to install one of deploykit's extras the way this deploykit was installed: from PyPI, or into the
    source checkout it runs from (``pip install -e '.[trt]'``)."""
    root = source_checkout(package_dir)
    if root is None:
        return f"pip install 'deploykit[{extra}]'"
    try:
        where = "." if root.samefile(Path.cwd()) else str(root)
    except OSError:
        where = str(root)
    return f"pip install -e '{where}[{extra}]'"


def install_hint(module: str) -> str:
    extra, package = _EXTRAS.get(module, (None, module))
    if extra:
        return extra_hint(extra)
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
