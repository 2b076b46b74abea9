"""How a latency gate measures and decides: its checks, metrics and tolerances (plain frozen dataclasses)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from deploykit.core.config import MAX_SEED, ExportConfig, require_int, require_positive
from deploykit.core.errors import UsageError
from deploykit.spec.run import RunSpec, from_values, value_kind

GATE_METRICS = ("p50", "p90", "throughput")
GATE_MODES = ("against", "against_rev", "baseline")
GATE_CORRECTIONS = ("bonferroni", "holm", "none")
# bounds on block settings: a gate file or a baseline cannot make a gate run for days
MAX_BLOCK_TIME = 600.0
MAX_BLOCK_ITERS = 1_000_000
MAX_BLOCK_WARMUP = 10_000
MAX_BLOCKS = 10_000


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
    """One measurement of a latency gate: the candidate run against a reference, evaluated on one or more metrics.

    ``mode``: ``against`` (``reference`` is an ONNX file or a model name, measured interleaved with the candidate),
    ``against_rev`` (``reference`` is a git revision: the candidate ONNX file as committed there, or a registry
    model as deploykit's code at that revision exports it), or ``baseline`` (``reference`` is a stored report
    with the reference workload). ``batch``/``resolution``/``threads`` None: the baseline's, else 1 / the
    model's / all usable cores. ``values``: any other runtime option a target declares or model option a family
    declares, by name (a gate file's check keys: ``graph_opt``, ``streams``, ``parc_impl`` ...). The candidate's
    run spec is ``spec()``; the reference side of ``against`` is the same spec on the reference model."""

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
    values: tuple[tuple[str, Any], ...] = ()
    export: ExportConfig | None = None  # the store and export settings of registry models (models_dir, opset ...)

    def __post_init__(self):
        if self.mode not in GATE_MODES:
            raise UsageError(f"unknown gate mode {self.mode!r}")
        if not self.metrics:
            raise UsageError(f"check {self.name!r} has no metrics")
        seen = [m.metric for m in self.metrics]
        if len(set(seen)) != len(seen):
            raise UsageError(f"check {self.name!r} lists a metric twice: {', '.join(seen)}")
        require_int("batch", self.batch, 1)
        require_int("resolution", self.resolution, 1)
        require_int("threads", self.threads, 1, 65_536)
        self.spec()  # every value checked now, by the run spec

    def spec(self, *, batch: int | None = None, resolution: int | None = None, model: str | None = None,
             defaults: dict[str, Any] | None = None) -> RunSpec:
        """The run spec of the candidate (``model``: of another model, the reference of ``against``), at ``batch`` /
        ``resolution`` where the check leaves them open; ``defaults``: runtime options where the check gives none
        (a baseline's settings)."""
        ex = self.export
        model = model or self.candidate
        base = RunSpec(model=model, target=self.target, batch=batch or self.batch or 1,
                       resolution=self.resolution or resolution, opset=ex.opset if ex else 18,
                       model_options=ex.options if ex is not None and _registry(model) else ())
        given = {"threads": self.threads, **dict(self.values)}
        vals = {**(defaults or {}), **{k: v for k, v in given.items() if v is not None}}
        if self.precision is not None and self.precision != "int8":  # an int8 gate side is a quantized file
            vals["precision"] = self.precision
        if not _registry(model):  # a file's options are in the file
            vals = {k: v for k, v in vals.items() if value_kind(k) is None or value_kind(k)[0] != "model"}
        return from_values(vals, base=base)

    def export_for(self, ref: str) -> ExportConfig | None:
        """How registry model ``ref`` (a side of the check) is exported: with the check's model options."""
        if not _registry(ref):
            return None
        spec = self.spec(model=ref)
        return spec.export_config(self.export.models_dir if self.export else None)


def _registry(ref: str) -> bool:
    from deploykit.models.select import is_model_name

    return is_model_name(ref)


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
        for name, value in (("--baseline-drift", self.baseline_drift), ("--alpha", self.alpha)):
            require_positive(name, value, allow_zero=True)
        require_int("--min-blocks", self.min_blocks, maximum=MAX_BLOCKS)
        require_int("--max-blocks", self.max_blocks, maximum=MAX_BLOCKS)
        if not isinstance(self.strict, bool):
            raise UsageError(f"strict must be true or false, got {self.strict!r}")
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
        require_positive("--block-time", self.block_time, allow_zero=True, maximum=MAX_BLOCK_TIME)
        require_int("--block-iters", self.block_iters, 1, MAX_BLOCK_ITERS)
        require_int("--block-warmup", self.block_warmup, 0, MAX_BLOCK_WARMUP)
        require_positive("--time-budget", self.time_budget)
        require_int("--seed", self.seed, 0, MAX_SEED)
        require_int("bootstrap resamples", self.n_boot, maximum=10_000_000)
        if self.n_boot < 200:
            raise UsageError(f"bootstrap resamples must be at least 200, got {self.n_boot}")
