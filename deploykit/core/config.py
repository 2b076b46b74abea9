"""Plain frozen dataclasses that drive both the CLI and the Python API."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from deploykit.core.errors import UsageError


def default_models_dir() -> Path:
    """Artifact store: $DEPLOYKIT_MODELS or ./models."""
    return Path(os.environ.get("DEPLOYKIT_MODELS", "models"))


def default_reports_dir() -> Path:
    """Report folder: $DEPLOYKIT_REPORTS or ./reports."""
    return Path(os.environ.get("DEPLOYKIT_REPORTS", "reports"))


def _positive(name: str, value: int | float | None, allow_zero: bool = False) -> None:
    if value is None:
        return
    if value < 0 or (value == 0 and not allow_zero):
        raise UsageError(f"{name} must be {'non-negative' if allow_zero else 'positive'}, got {value}")


@dataclass(frozen=True)
class ExportConfig:
    model: str
    batch: int = 1
    resolution: int | None = None
    opset: int = 18
    dynamic_batch: bool = False
    seed: int = 0
    weights: str | None = None
    options: tuple[tuple[str, str], ...] = ()  # model options, e.g. (("parc_impl", "fft"),)
    output: str | None = None
    models_dir: Path = field(default_factory=default_models_dir)
    force: bool = False
    verify: bool = True
    rtol: float = 1e-3  # max-abs error relative to the reference's largest magnitude
    min_cosine: float = 0.9999
    fuse: bool = True  # run the graph passes (identity removal, BN folding) on the exported graph
    fold_bn: bool = True  # False: keep BatchNormalization (TorchScript exporter, training=PRESERVE), no folding

    def __post_init__(self):
        _positive("--batch", self.batch)
        _positive("--resolution", self.resolution)
        if not 7 <= self.opset <= 23:
            raise UsageError(f"--opset must be between 7 and 23, got {self.opset}")


@dataclass(frozen=True)
class RuntimeOptions:
    """Options every target receives; a target ignores what does not apply to it and says so in its info."""

    threads: int | None = None  # intra-op threads; None = all cores this process may use
    graph_opt: str = "all"  # ONNX Runtime graph optimisation level: disable|basic|extended|all
    device: str | None = None
    precision: str | None = None
    mode: str = "latency"  # latency | throughput
    extra: tuple[tuple[str, str], ...] = ()

    def __post_init__(self):
        _positive("--threads", self.threads)
        if self.graph_opt not in ("disable", "basic", "extended", "all"):
            raise UsageError(f"--graph-opt must be disable, basic, extended or all, got {self.graph_opt!r}")

    def resolved_threads(self) -> int:
        return self.threads or available_cores()


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


@dataclass(frozen=True)
class BenchConfig:
    """How to measure. Stop rule: at least ``min_iters`` iterations AND ``min_time`` seconds, at most
    ``max_time`` seconds (``max_time`` wins if the two minima cannot both be met in time)."""

    batch: int = 1
    resolution: int | None = None
    warmup: int = 10
    min_iters: int = 50
    min_time: float = 5.0
    max_time: float = 60.0
    seed: int = 0
    cv_warn: float = 0.05
    bootstrap: int = 2000

    def __post_init__(self):
        _positive("--batch", self.batch)
        _positive("--resolution", self.resolution)
        _positive("--warmup", self.warmup, allow_zero=True)
        _positive("--min-iters", self.min_iters)
        _positive("--min-time", self.min_time, allow_zero=True)
        _positive("--max-time", self.max_time)
        if self.max_time < self.min_time:
            raise UsageError(f"--max-time ({self.max_time}s) must not be below --min-time ({self.min_time}s)")
