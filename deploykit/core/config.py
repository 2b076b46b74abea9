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
    # the fixed reference workload (bench/reference_workload.py), measured interleaved with the model so that a
    # stored report can be compared on another machine/day relative to it; on for baselines and gates
    reference_workload: bool = False
    reference_blocks: int = 12  # ABBA rounds (blocks of each side)
    reference_block_time: float = 0.25  # seconds per block (at least 5 iterations)

    def __post_init__(self):
        _positive("--batch", self.batch)
        _positive("--resolution", self.resolution)
        _positive("--warmup", self.warmup, allow_zero=True)
        _positive("--min-iters", self.min_iters)
        _positive("--min-time", self.min_time, allow_zero=True)
        _positive("--max-time", self.max_time)
        if self.max_time < self.min_time:
            raise UsageError(f"--max-time ({self.max_time}s) must not be below --min-time ({self.min_time}s)")
        if self.reference_blocks < 2:
            raise UsageError(f"--reference-blocks must be at least 2, got {self.reference_blocks}")
        _positive("--reference-block-time", self.reference_block_time)


GATE_METRICS = ("p50", "p90", "throughput")
GATE_MODES = ("against", "against_rev", "baseline")
GATE_CORRECTIONS = ("bonferroni", "holm", "none")


@dataclass(frozen=True)
class GateMetric:
    """One metric of a gate check and its tolerance (a fraction: 0.05 = 5% slower allowed)."""

    metric: str
    tolerance: float

    def __post_init__(self):
        if self.metric not in GATE_METRICS:
            raise UsageError(f"unknown metric {self.metric!r} (choose from {', '.join(GATE_METRICS)})")
        if not 0 < self.tolerance <= 1:
            raise UsageError(f"tolerance of {self.metric} must be above 0 and at most 1 (100%), got {self.tolerance}")


@dataclass(frozen=True)
class GateCheck:
    """One measurement of a latency gate: the candidate against a reference, evaluated on one or more metrics.

    ``mode``: ``against`` (``reference`` is an ONNX file or a model name, measured interleaved with the candidate),
    ``against_rev`` (``reference`` is a git revision: the candidate ONNX file as committed there, or a registry
    model as deploykit's code at that revision exports it), or ``baseline`` (``reference`` is a stored report
    with the reference workload). ``batch``/``resolution``/``threads`` None: the baseline's, else 1 / the
    model's / all usable cores."""

    name: str
    candidate: str
    mode: str
    reference: str
    target: str = "ort"
    metrics: tuple[GateMetric, ...] = (GateMetric("p50", 0.05),)
    precision: str | None = None
    batch: int | None = None
    resolution: int | None = None
    threads: int | None = None
    graph_opt: str | None = None
    export: ExportConfig | None = None  # how a registry candidate/reference is exported (models_dir, opset ...)

    def __post_init__(self):
        if self.mode not in GATE_MODES:
            raise UsageError(f"unknown gate mode {self.mode!r}")
        if not self.metrics:
            raise UsageError(f"check {self.name!r} has no metrics")
        seen = [m.metric for m in self.metrics]
        if len(set(seen)) != len(seen):
            raise UsageError(f"check {self.name!r} lists a metric twice: {', '.join(seen)}")
        _positive("batch", self.batch)
        _positive("resolution", self.resolution)
        _positive("threads", self.threads)
        if self.graph_opt is not None and self.graph_opt not in ("disable", "basic", "extended", "all"):
            raise UsageError(f"graph_opt must be disable, basic, extended or all, got {self.graph_opt!r}")


@dataclass(frozen=True)
class GateConfig:
    """How a gate measures and decides. A "block" is one short run of one side; each round runs one block of
    each side, in ABBA order. Blocks are added (two rounds at a time) from ``min_blocks`` until every metric of
    the check is decided, up to ``max_blocks`` or the ``time_budget`` (seconds of measuring for the whole gate)."""

    alpha: float = 0.05  # family-wise error rate over all checks
    correction: str = "bonferroni"  # bonferroni | holm | none
    strict: bool = False  # INCONCLUSIVE fails (exit 5)
    min_blocks: int = 10
    max_blocks: int = 60
    block_time: float = 0.25
    block_iters: int = 5
    block_warmup: int = 2
    time_budget: float | None = None
    seed: int = 0
    n_boot: int = 10_000
    baseline_drift: float = 0.10  # --baseline checks: allowed drift of the relative cost between sessions

    def __post_init__(self):
        if not 0 <= self.baseline_drift < 1:
            raise UsageError(f"--baseline-drift must be at least 0% and below 100%, got {self.baseline_drift}")
        if not 0 < self.alpha < 0.5:
            raise UsageError(f"--alpha must be between 0 and 0.5, got {self.alpha}")
        if self.correction not in GATE_CORRECTIONS:
            raise UsageError(f"--correction must be one of {', '.join(GATE_CORRECTIONS)}, got {self.correction!r}")
        if self.min_blocks < 6:
            raise UsageError(f"--min-blocks must be at least 6, got {self.min_blocks}")
        if self.max_blocks < self.min_blocks:
            raise UsageError(f"--max-blocks ({self.max_blocks}) must not be below --min-blocks ({self.min_blocks})")
        _positive("--block-time", self.block_time, allow_zero=True)
        _positive("--block-iters", self.block_iters)
        _positive("--block-warmup", self.block_warmup, allow_zero=True)
        _positive("--time-budget", self.time_budget)
        if self.n_boot < 200:
            raise UsageError(f"bootstrap resamples must be at least 200, got {self.n_boot}")
