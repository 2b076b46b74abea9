"""The Runtime interface every target implements, and the target registry.

A target is one file with one class decorated by ``@register_runtime("name")``. The class must not import
its runtime at module level (``deploykit targets`` lists every target with only the base install); it
imports lazily in ``load`` and reports what is missing from ``availability``.

Life cycle used by bench (one timer, one statistics module for all targets):
    rt = cls(options); rt.load(path, input_spec)  -> timed as session load
    rt.set_input(x); rt.infer()                   -> first inference, timed apart
    rt.outputs()                                  -> outputs for the fidelity check (untimed)
    rt.infer() ...                                -> warm-up and the measured loop (rt.sync before each stop)
    rt.info()                                     -> what actually ran (precision, providers, threads)
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Iterable

import numpy as np

from deploykit.core.config import RuntimeOptions
from deploykit.core.errors import UnavailableError
from deploykit.core.lazy import install_hint, is_installed
from deploykit.core.registry import Registry


@dataclass(frozen=True)
class Availability:
    available: bool
    reason: str = ""
    detail: str = ""  # versions/devices when available


@dataclass(frozen=True)
class ModelInput:
    path: Path
    input_name: str
    shape: tuple[int, ...]
    dtype: str = "float32"


class Runtime(ABC):
    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    device_kind: ClassVar[str] = "cpu"  # cpu | gpu | accelerator
    requires: ClassVar[tuple[str, ...]] = ()  # python modules the target imports
    precisions: ClassVar[tuple[str, ...]] = ("fp32",)
    modes: ClassVar[tuple[str, ...]] = ("latency",)
    # ONNX op types this target cannot run, each with the reason, e.g. {"DFT": "TensorRT's ONNX parser has no
    # DFT before 10.x"}. bench refuses such a graph before loading it (exit 3) and `deploykit targets` lists them;
    # override ``unsupported`` when the answer depends on the installed version.
    unsupported_ops: ClassVar[dict[str, str]] = {}

    def __init__(self, options: RuntimeOptions):
        self.options = options
        if options.mode not in self.modes:
            from deploykit.core.errors import UsageError

            raise UsageError(f"target {self.name} has no --mode {options.mode} (it has: {', '.join(self.modes)})")
        if options.precision and options.precision not in self.precisions:
            from deploykit.core.errors import UsageError

            raise UsageError(f"target {self.name} has no --precision {options.precision} "
                             f"(it has: {', '.join(self.precisions)})")

    @classmethod
    def availability(cls) -> Availability:
        """Whether this target can run here, without importing heavy modules where avoidable."""
        missing = [m for m in cls.requires if not is_installed(m)]
        if missing:
            return Availability(False, f"{missing[0]} not installed ({install_hint(missing[0])})")
        return Availability(True)

    @classmethod
    def ensure_available(cls) -> None:
        av = cls.availability()
        if not av.available:
            raise UnavailableError(f"target {cls.name} is unavailable here: {av.reason}")

    @classmethod
    def unsupported(cls, op_types: Iterable[str]) -> dict[str, str]:
        """The op types among ``op_types`` this target cannot run, mapped to the reason."""
        return {op: cls.unsupported_ops[op] for op in sorted(set(op_types)) if op in cls.unsupported_ops}

    @classmethod
    def ensure_supports(cls, op_types: Iterable[str], what: str) -> None:
        """Raise UnavailableError (exit 3) naming each op of ``what`` this target cannot run, and why."""
        bad = cls.unsupported(op_types)
        if bad:
            reasons = "; ".join(f"{op}: {why}" for op, why in bad.items())
            raise UnavailableError(f"target {cls.name} cannot run {what}: it has {', '.join(bad)} ops ({reasons})")

    @abstractmethod
    def load(self, model: ModelInput) -> None:
        """Create the session/engine for the ONNX (or runtime-native) file."""

    @abstractmethod
    def set_input(self, x: np.ndarray) -> None:
        """Bind the input tensor used by every following ``infer``."""

    @abstractmethod
    def infer(self) -> None:
        """One synchronous inference on the bound input (the timed hot path; keep it minimal)."""

    @abstractmethod
    def outputs(self) -> list[np.ndarray]:
        """Run once and return the outputs as numpy arrays (not timed)."""

    def sync(self) -> None:  # noqa: B027 - optional hook
        """Wait for outstanding device work (GPU targets); CPU targets are synchronous."""

    def info(self) -> dict:
        """What actually ran: precision, devices/providers, threads, runtime version, applied options."""
        return {}

    def close(self) -> None:  # noqa: B027 - optional hook
        pass


def _load_targets() -> None:
    from deploykit.runtimes import onnxruntime_cpu  # noqa: F401

    for mod in ("openvino_rt", "tensorrt_rt", "onnxruntime_gpu", "torch_rt"):  # later targets, when present
        try:
            __import__(f"deploykit.runtimes.{mod}")
        except ModuleNotFoundError as exc:
            if exc.name != f"deploykit.runtimes.{mod}":
                raise


TARGETS: Registry[type[Runtime]] = Registry("target", loader=_load_targets)


def register_runtime(name: str):
    def deco(cls: type[Runtime]) -> type[Runtime]:
        cls.name = name
        return TARGETS.add(name, cls)

    return deco


def get_runtime(name: str) -> type[Runtime]:
    return TARGETS.get(name)


def list_targets() -> list[tuple[str, type[Runtime], Availability]]:
    return [(n, cls, cls.availability()) for n, cls in TARGETS.items()]
