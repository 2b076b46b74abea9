"""What a sweep runs: the cells (model x target x precision x batch x resolution x every other axis x scenario x
QPS), each a run spec (spec/run.py) plus the axis values that made it, from flags or from a study file, and the
measurement settings every cell shares.

A study file is TOML with the same keys as the flags::

    [bench]                      # optional: how each cell measures (flags given on the command line win)
    min_time = 1.0
    max_time = 10.0
    cell_timeout = 900
    out = "reports/sweeps/example"

    [[matrix]]                   # one or more blocks, each its own cross product
    models = ["resnet18", "deit_tiny"]
    targets = ["ort", "openvino"]
    precision = ["fp32", "int8"]
    resolution = [64, 96]

    [[matrix]]                   # LoadGen cells: one per scenario, and per QPS for server
    models = ["resnet18"]
    scenario = ["server"]
    qps = [10, 20, 40]

    [loadgen]                    # optional: how every LoadGen cell runs (flags given on the command line win)
    latency_bound = 100          # ms, at the percentile (server cells)
    duration = 10                # s, LoadGen's minimum duration

    [slurm]                      # optional: how cells run on a Slurm cluster (--executor slurm; sweep/sbatch.py)
    partition = "bench"

Without a ``[[matrix]]`` block the top-level keys are the one matrix. A value is a list or a single value; a
string may hold a comma-separated list. Any other key is an option a target or a model family declares, by name
(``threads``, ``graph_opt``, ``streams``, a model option ...): one cell per value; a model option applies to the
models that have it, other models ignore it. ``scenario``: ``latency`` (the default) is a ``deploykit bench``
cell, ``server``, ``offline``, ``multistream`` and ``singlestream`` are ``deploykit loadgen`` cells; ``qps``
makes one server cell per value (the other scenarios ignore it).
"""

from __future__ import annotations

import hashlib
import math
import re
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable

from deploykit.core.config import (MAX_ITERATIONS, MAX_QUERIES, MAX_SECONDS, SOFTMAX_MODES, BenchConfig,
                                   QuantizeConfig, require_int, require_positive)
from deploykit.core.errors import InputError, UsageError

if TYPE_CHECKING:
    from deploykit.sweep.sbatch import SlurmSettings

LATENCY = "latency"  # a deploykit bench cell
LOADGEN_SCENARIOS = ("server", "offline", "multistream", "singlestream")  # deploykit loadgen cells
SCENARIOS = (LATENCY, *LOADGEN_SCENARIOS)
AUTO = "auto"

# a matrix's own keys (aliases -> the one name); any other key is a run spec value: a runtime option a target
# declares (threads, graph_opt, streams, mode, a new target's option ...) or a model option a family declares
# (parc_impl ...), by name or with '-' for '_' (spec/run.py: value_kind)
MATRIX_KEYS = {"models": "models", "model": "models", "targets": "targets", "target": "targets",
               "precision": "precision", "precisions": "precision", "batch": "batch", "batches": "batch",
               "resolution": "resolution", "resolutions": "resolution", "scenario": "scenario", "scenarios": "scenario",
               "qps": "qps"}


def axis_name(key: str) -> str | None:
    """The one name of a matrix key (its own, or a declared runtime / model option), or None."""
    from deploykit.spec.run import value_kind

    if key in MATRIX_KEYS:
        return MATRIX_KEYS[key]
    if key.endswith("s") and key[:-1].replace("-", "_") == "thread":
        return "threads"
    kind = value_kind(key)
    return key.replace("-", "_") if kind is not None and kind[0] in ("runtime", "model") else None


@dataclass(frozen=True)
class BenchSettings:
    """How every cell measures (``deploykit bench`` options; for LoadGen cells, the ``deploykit loadgen``
    settings of the study's [loadgen] table: None = loadgen's default) and the sweep's own limits."""

    # the latency stop rule: bench's defaults (core.config.BenchConfig), one definition
    min_time: float = BenchConfig.min_time
    max_time: float = BenchConfig.max_time
    min_iters: int = BenchConfig.min_iters
    warmup: int = BenchConfig.warmup
    cell_timeout: float = 1800.0  # seconds per cell, export and quantization included; 0 = none
    calib_data: str = "synthetic"  # int8 cells' calibration data (a folder, or synthetic noise)
    calib_size: int | None = None  # images used for calibration [bench's default]
    softmax: str | None = None  # int8 cells' attention softmax: float | int8 | auto [the quantizer's default]
    out: str | None = None  # the sweep's folder (results table, cell reports)
    latency_bound: float | None = None  # LoadGen server cells: the latency bound (ms) at the percentile
    percentile: float | None = None  # LoadGen cells with a latency target (not offline): its percentile (%)
    duration: float | None = None  # LoadGen cells: LoadGen's minimum duration (s)
    min_queries: int | None = None  # LoadGen cells: LoadGen's minimum query count

    def __post_init__(self):
        for name in ("min_time", "cell_timeout"):
            if getattr(self, name) < 0:
                raise UsageError(f"{name.replace('_', '-')} must be non-negative, got {getattr(self, name)}")
        if self.max_time <= 0:
            raise UsageError(f"max-time must be positive, got {self.max_time}")
        if self.max_time < self.min_time:
            raise UsageError(f"max-time ({self.max_time}s) must not be below min-time ({self.min_time}s)")
        if self.min_iters < 1:
            raise UsageError(f"min-iters must be at least 1, got {self.min_iters}")
        if self.warmup < 0:
            raise UsageError(f"warmup must be non-negative, got {self.warmup}")
        if self.calib_size is not None and self.calib_size < 1:
            raise UsageError(f"calib-size must be at least 1, got {self.calib_size}")
        if self.softmax is not None and self.softmax not in SOFTMAX_MODES:
            raise UsageError(f"softmax must be one of {', '.join(SOFTMAX_MODES)}, got {self.softmax!r}")
        for name in ("latency_bound", "duration"):
            v = getattr(self, name)
            if v is not None and not (math.isfinite(v) and v > 0):
                raise UsageError(f"{name.replace('_', '-')} must be a positive number, got {v}")
        if self.percentile is not None and not (0 < self.percentile < 100):
            raise UsageError(f"percentile must be between 0 and 100 (exclusive), got {self.percentile}")
        if self.min_queries is not None and self.min_queries < 1:
            raise UsageError(f"min-queries must be at least 1, got {self.min_queries}")
        # finite and within core.config's bounds (NaN passes every comparison above: a NaN cell timeout was no
        # limit at all, a NaN min-time in a study's [bench] failed every cell late)
        for name in ("min_time", "cell_timeout", "max_time", "latency_bound", "duration"):
            require_positive(name.replace("_", "-"), getattr(self, name),
                             allow_zero=name in ("min_time", "cell_timeout"),
                             maximum=MAX_SECONDS if name != "latency_bound" else MAX_SECONDS * 1000)
        require_positive("percentile", self.percentile)
        for name, top in (("min_iters", MAX_ITERATIONS), ("warmup", MAX_ITERATIONS), ("calib_size", 10_000_000),
                          ("min_queries", MAX_QUERIES)):
            require_int(name.replace("_", "-"), getattr(self, name), None, top)

    def measure(self, scenario: str = LATENCY, qps: float | None = None, *, batch: int = 1,
                resolution: int | None = None):
        """A cell's measurement: bench's latency stop rule, or a LoadGen scenario with the sweep's LoadGen settings
        where the scenario takes them (a latency bound: server; a percentile: all but offline)."""
        if scenario == LATENCY:
            return BenchConfig(batch=batch, resolution=resolution, min_time=self.min_time, max_time=self.max_time,
                               min_iters=self.min_iters, warmup=self.warmup)
        from deploykit.spec.loadgen import LoadgenConfig

        return LoadgenConfig(scenario=scenario, batch=batch, resolution=resolution,
                             qps=qps if scenario == "server" else None,
                             latency_bound_ms=self.latency_bound if scenario == "server" else None,
                             percentile=self.percentile if scenario != "offline" else None,
                             duration_s=self.duration, min_queries=self.min_queries)

    def quantize(self) -> QuantizeConfig:
        """The int8 cells' recipe: the sweep's calibration data and size (bench's defaults otherwise); its Q/DQ
        profile follows each cell's target (the run spec chooses it: trt on TensorRT-backed targets)."""
        return QuantizeConfig(calib_data=self.calib_data, profile=None, softmax=self.softmax,
                              **({"calib_size": self.calib_size} if self.calib_size is not None else {}))


LOADGEN_KEYS = ("latency_bound", "percentile", "duration", "min_queries")  # the study file's [loadgen] table
BENCH_KEYS = tuple(f.name for f in fields(BenchSettings) if f.name not in LOADGEN_KEYS)


@dataclass(frozen=True)
class Cell:
    """One measurement: a run spec (``spec``) and the matrix values that made it: a model on a target at one
    precision, batch, resolution and thread count, with model options (``options``, e.g. (("parc_impl", "fft"),))
    and any other runtime option a target declares (``runtime``, e.g. (("streams", 2),)).

    ``resolution`` / ``threads`` None: the model's (the file's) resolution / the target's default thread count.
    ``scenario``: ``latency`` (a bench cell) or a LoadGen scenario; ``qps``: a server cell's arrival rate (None:
    LoadGen's, sized by a calibration). ``skip``: why the cell cannot run (None: it can). ``settings``: the
    sweep's measurement settings, which the spec's measurement and int8 recipe come from."""

    model: str
    target: str
    precision: str = "fp32"
    batch: int = 1
    resolution: int | None = None
    threads: int | None = None
    options: tuple[tuple[str, str], ...] = ()
    label: str = ""  # the model as tables show it (a file's stem; else the model name)
    family: str = ""
    skip: str | None = field(default=None, compare=False)
    scenario: str = LATENCY
    qps: float | None = None
    runtime: tuple[tuple[str, Any], ...] = ()
    settings: BenchSettings | None = field(default=None, compare=False, repr=False)

    @property
    def spec(self):
        """The cell's run spec (spec/run.py): the one description its child runs (``deploykit run``)."""
        from deploykit.spec.run import RunSpec, from_values

        st = self.settings or BenchSettings()
        base = RunSpec(model=self.model, target=self.target, batch=self.batch, resolution=self.resolution,
                       measure=st.measure(self.scenario, self.qps, batch=self.batch, resolution=self.resolution))
        values = {"precision": self.precision, "threads": self.threads, **dict(self.options), **dict(self.runtime)}
        return from_values({k: v for k, v in values.items() if v is not None}, base=base,
                           quantize=st.quantize() if self.precision == "int8" else None)

    @property
    def key(self) -> str:
        return self.spec.key

    @property
    def loadgen(self) -> bool:
        """Whether the cell is a ``deploykit loadgen`` run (else a ``deploykit bench`` one)."""
        return self.scenario != LATENCY

    @property
    def model_options(self) -> str:
        return options_text(self.options)

    @property
    def target_options(self) -> str:
        """The runtime options the cell sets besides threads and precision (``streams=2,mode=throughput``)."""
        return options_text(self.runtime)

    @property
    def safe_key(self) -> str:
        """A folder name for the cell: readable, and unique (a short hash of the key)."""
        label = self.label or Path(self.model).stem
        readable = "-".join(str(p) for p in (label, self.target, self.precision, f"b{self.batch}",
                                             f"r{self.resolution or AUTO}", f"t{self.threads or AUTO}",
                                             *(v for _, v in self.options), *(v for _, v in self.runtime),
                                             *((self.scenario,) if self.loadgen else ()),
                                             *((f"q{self.qps:g}",) if self.qps is not None else ())))
        readable = re.sub(r"[^A-Za-z0-9_.=-]+", "_", readable)[:100]
        return f"{readable}-{hashlib.sha256(self.key.encode()).hexdigest()[:8]}"

    def describe(self) -> dict:
        """The cell as a plain dict (the key columns of the results table, plus key and skip)."""
        return {"cell": self.key, "model": self.label or self.model, "model_options": self.model_options,
                "target_options": self.target_options, "family": self.family, "target": self.target,
                "precision": self.precision, "batch": self.batch, "resolution": self.resolution,
                "threads": self.threads, "scenario": self.scenario, "qps_scheduled": self.qps,
                "model_ref": self.model, "skip": self.skip}


def options_text(options) -> str:
    """Options as the results table writes them: ``""`` or ``parc_impl=fft`` (several: comma-joined, sorted)."""
    from deploykit.spec.run import options_text as text

    return text(options)


def cell_key(model: str, target: str, precision: str, batch: int, resolution: int | None, threads: int | None,
             options=(), scenario: str = LATENCY, qps: float | None = None) -> str:
    """The stable key of a cell (its run spec's key, spec/run.py): ``model|target|precision|b<batch>|
    r<resolution>|t<threads>[|k=v,...][|scenario]``."""
    return Cell(model=model, target=target, precision=precision, batch=batch, resolution=resolution,
                threads=threads, options=tuple(options.items() if isinstance(options, dict) else options),
                scenario=scenario, qps=qps).key


class Matrix:
    """One cross product. Empty tuples take the defaults: target ort, fp32, batch 1, the model's resolution, the
    scenario latency. ``axes``: every other key, a run spec value by name (threads, parc_impl, streams, ...);
    a model option applies to the models that have it (one cell per value), other models ignore it."""

    OWN = ("models", "targets", "precision", "batch", "resolution", "scenario", "qps")

    def __init__(self, models=(), targets=(), precision=(), batch=(), resolution=(), scenario=(), qps=(), **axes):
        self.models, self.targets, self.precision = tuple(models), tuple(targets), tuple(precision)
        self.batch, self.resolution = tuple(batch), tuple(resolution)
        self.scenario, self.qps = tuple(scenario), tuple(qps)
        self.axes = tuple((k, tuple(v)) for k, v in axes.items() if v)

    def axis(self, name: str) -> tuple:
        return dict(self.axes).get(name, ())

    @property
    def threads(self) -> tuple:
        return self.axis("threads")

    def to_dict(self) -> dict:
        return {**{k: list(getattr(self, k)) for k in self.OWN}, **{k: list(v) for k, v in self.axes}}

    def __eq__(self, other) -> bool:
        return isinstance(other, Matrix) and self.to_dict() == other.to_dict()

    def __repr__(self) -> str:
        return f"Matrix({', '.join(f'{k}={v!r}' for k, v in self.to_dict().items() if v)})"


@dataclass(frozen=True)
class SweepSpec:
    matrices: tuple[Matrix, ...]
    bench: BenchSettings = BenchSettings()
    source: str = "flags"  # "flags" or the study file's path
    name: str = ""  # a study file's name and description (free text)
    description: str = ""
    slurm: "SlurmSettings | None" = None  # a study file's [slurm] table (used by --executor slurm)

    def cells(self, targets_here: bool = True) -> list[Cell]:
        return build_cells(self.matrices, targets_here=targets_here, settings=self.bench)


# --------------------------------------------------------------------------------------------- building cells

def build_cells(matrices: Iterable[Matrix], targets_here: bool = True,
                settings: BenchSettings | None = None) -> list[Cell]:
    """The cells of ``matrices`` in order (model, resolution, batch, precision, target, then the other axes in
    the matrix's order, scenario, QPS), each once (a cell in two matrices runs once). Unknown models or targets
    raise InputError; cells a model's architecture cannot run carry a ``skip`` reason, and so do cells whose
    target (or, for a LoadGen cell, MLPerf LoadGen) this machine lacks when ``targets_here`` (cells run here; on
    a cluster's nodes, the node decides). ``settings``: the sweep's measurement settings (in each cell's spec)."""
    cells: list[Cell] = []
    seen: set[str] = set()
    for m in matrices:
        for cell in _matrix_cells(m, targets_here, settings):
            if cell.key not in seen:
                seen.add(cell.key)
                cells.append(cell)
    if not cells:
        raise UsageError("the sweep has no cells (give at least one model)")
    return cells


def _matrix_cells(m: Matrix, targets_here: bool = True, settings: BenchSettings | None = None) -> list[Cell]:
    import itertools

    from deploykit.models.select import expand_model_refs
    from deploykit.runtimes.options import precision_choices
    from deploykit.spec.run import INT8, model_option_applies, value_kind

    if not m.models:
        raise UsageError("a matrix has no models (give model names, globs or .onnx files)")
    models = expand_model_refs(m.models)
    targets = _targets(m.targets or ("ort",), check=targets_here)
    precisions = m.precision or ("fp32",)
    allowed = tuple(dict.fromkeys((*precision_choices(), INT8)))
    for p in precisions:
        if p not in allowed:
            raise UsageError(f"unknown precision {p!r} (a sweep runs {', '.join(allowed)})")
    for name, values in (("batch", m.batch), ("resolution", m.resolution), ("threads", m.threads)):
        for v in values:
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise UsageError(f"{name} must be a positive integer, got {v!r}")
    model_axes = [(k, v) for k, v in m.axes if value_kind(k)[0] == "model"]
    runtime_axes = [(k, v) for k, v in m.axes if value_kind(k)[0] == "runtime" and k != "threads"]
    from deploykit.models.registry import MODEL_OPTIONS

    for k, vals in model_axes:  # a declared option's values are checked here, once, with the allowed ones named
        choices = MODEL_OPTIONS.get(k).choices
        for v in vals:
            if v not in choices:
                raise UsageError(f"unknown {k} {v!r} (choose from {', '.join(choices)})")
    runtime_combos = [tuple(zip([k for k, _ in runtime_axes], combo))
                      for combo in itertools.product(*[v for _, v in runtime_axes])] or [()]
    runs = _scenario_runs(m)
    loadgen_skip = _loadgen_skip() if targets_here and any(sc != LATENCY for sc, _ in runs) else None
    cells = []
    for model in models:
        info = _model_info(model)
        mine = [(k, v) for k, v in model_axes if model_option_applies(info["ref"], k)]  # others ignore them
        option_combos = [tuple(zip([k for k, _ in mine], combo))
                         for combo in itertools.product(*[v for _, v in mine])] or [()]
        for res in m.resolution or (None,):
            skip_res = _resolution_skip(info, res)
            for batch in m.batch or (1,):
                for precision in precisions:
                    for target, target_skip in targets:
                        for threads in m.threads or (None,):
                            for opts in option_combos:
                                for rt in runtime_combos:
                                    for scenario, qps in runs:
                                        cells.append(Cell(
                                            model=info["ref"], target=target, precision=precision, batch=batch,
                                            resolution=res if res is not None else info["resolution"],
                                            threads=threads, options=opts, runtime=rt, label=info["label"],
                                            family=info["family"],
                                            skip=skip_res or target_skip
                                            or (loadgen_skip if scenario != LATENCY else None),
                                            scenario=scenario, qps=qps, settings=settings))
    out = []
    for c in cells:  # every value checked by the run spec now, before any cell runs (one line, the matrix named)
        if c.skip is None:
            spec = c.spec
            if targets_here:  # the target's own rules on its options (e.g. streams on ort): the cell is skipped
                from deploykit.runtimes.base import get_runtime

                try:
                    get_runtime(c.target)(spec.runtime_options())
                except UsageError as exc:
                    c = replace(c, skip=f"target {c.target} does not take these options: {exc.one_line()}")
        out.append(c)
    return out


def _loadgen_skip() -> str | None:
    """Why LoadGen cells cannot run here (MLPerf LoadGen is not installed), or None."""
    from deploykit.core.lazy import install_hint, is_installed

    if is_installed("mlperf_loadgen"):
        return None
    return f"MLPerf LoadGen (mlperf_loadgen) is not installed here: {install_hint('mlperf_loadgen')}"


def _scenario_runs(m: Matrix, where: str = "") -> list[tuple[str, float | None]]:
    """(scenario, qps) of each cell a matrix's scenarios make: server once per QPS (LoadGen's own QPS without
    any), the other scenarios once. Unknown scenarios and QPS without server cells are UsageErrors."""
    for sc in m.scenario:
        if sc not in SCENARIOS:
            raise UsageError(f"{where}unknown scenario {sc!r} (choose from {', '.join(SCENARIOS)})")
    for q in m.qps:
        if not (isinstance(q, (int, float)) and not isinstance(q, bool) and math.isfinite(q) and q > 0):
            raise UsageError(f"{where}qps must be a positive number, got {q!r}")
    scenarios = m.scenario or (LATENCY,)
    if m.qps and "server" not in scenarios:
        raise UsageError(f"{where}qps applies to server cells, and this matrix has none (scenario "
                         f"{', '.join(scenarios)}): add scenario server")
    return [(sc, q) for sc in scenarios for q in ((m.qps or (None,)) if sc == "server" else (None,))]


def _targets(names: Iterable[str], check: bool = True) -> list[tuple[str, str | None]]:
    """(target, skip reason where ``check`` and it is unavailable here) for each name; an unknown name raises
    InputError (with the close names)."""
    from deploykit.runtimes.base import get_runtime

    out = []
    for name in names:
        cls = get_runtime(name)
        if not check:
            out.append((name, None))
            continue
        av = cls.availability()
        out.append((name, None if av.available else f"target {name} is unavailable here: {av.reason}"))
    return out


def _model_info(ref: str) -> dict:
    """What the spec needs about a model reference, without building it: registry cfg (family, default
    resolution, resolution rules, options) or, for a file, its path."""
    from deploykit.models.registry import get_cfg
    from deploykit.models.select import is_model_name

    if not is_model_name(ref):
        path = Path(ref)
        if not path.is_file():
            raise InputError(f"model file not found: {ref}")
        return {"ref": str(path.resolve()), "label": path.stem, "family": "", "resolution": None, "cfg": None}
    cfg = get_cfg(ref)  # unknown name -> InputError with close names
    return {"ref": ref, "label": ref, "family": cfg.family or "", "resolution": cfg.resolution, "cfg": cfg}


def _resolution_skip(info: dict, res: int | None) -> str | None:
    cfg = info["cfg"]
    if cfg is None or res is None:
        return None
    from deploykit.models.registry import check_resolution

    try:
        check_resolution(cfg, res)
    except UsageError as exc:
        return str(exc)
    return None


# ----------------------------------------------------------------------------------------------- flags / files

def split_list(values, kind=str, name: str = "value") -> tuple:
    """A comma-separated string, a list of such strings, or a list of values -> a tuple of ``kind``."""
    if values is None:
        return ()
    if isinstance(values, (str, int, float)) and not isinstance(values, bool):
        values = [values]
    if not isinstance(values, (list, tuple)):
        raise UsageError(f"{name}: expected a list or a value, got {type(values).__name__}")
    from deploykit.spec.run import coerce  # the one conversion of a value from a file or a flag

    out = []
    for v in values:
        items = [s.strip() for s in v.split(",") if s.strip()] if isinstance(v, str) else [v]
        for item in items:
            if kind is str and not isinstance(item, str):
                raise UsageError(f"{name}: expected strings, got {item!r}")
            out.append(coerce(item, kind, name))
    return tuple(dict.fromkeys(out))


FLAG_NAMES = {"models": "model arguments", "targets": "--target", "precision": "--precision", "batch": "--batch",
              "resolution": "--resolution", "scenario": "--scenario", "qps": "--qps"}


def flag_name(name: str) -> str:
    return FLAG_NAMES.get(name) or "--" + name.replace("_", "-")


def matrix_from_values(values: dict[str, Any], where: str = "", flags: bool = False) -> Matrix:
    """A Matrix from flag or study-file values (aliases allowed; see MATRIX_KEYS; any declared runtime or model
    option by name); ``flags``: errors name the command-line flags."""
    from deploykit.spec.run import generic_keys, value_kind

    out: dict[str, tuple] = {}
    for key, value in values.items():
        name = axis_name(key)
        if name is None or name in ("model", "weights", "pretrained", "opset"):
            keys = ", ".join(dict.fromkeys([*MATRIX_KEYS.values(), *(k for k in generic_keys() if k not in
                                                                      ("model", "target", "precision", "batch",
                                                                       "resolution", "weights", "pretrained",
                                                                       "opset"))]))
            raise UsageError(f"{where}unknown key {key!r} (a matrix has: {keys})")
        if name in out:
            raise UsageError(f"{where}key {key!r} given twice")
        kind = int if name in ("batch", "resolution") else float if name == "qps" else \
            (value_kind(name)[1] if name not in MATRIX_KEYS.values() else str)
        label = flag_name(name) if flags else f"{where}{key}"
        if kind is bool:
            vals = value if isinstance(value, list) else [value]
            from deploykit.spec.run import coerce

            out[name] = tuple(dict.fromkeys(coerce(v, bool, label) for v in vals))
            continue
        out[name] = split_list(value, kind if kind in (int, float) else str, label)
        if kind is int and any(v < 1 for v in out[name]):
            raise UsageError(f"{label}: expected positive integers, got {min(out[name])}")
        if kind is float and any(v <= 0 for v in out[name]):
            raise UsageError(f"{label}: expected positive numbers, got {min(out[name]):g}")
    matrix = Matrix(**out)
    _scenario_runs(matrix, where)  # scenarios and QPS checked here, with the study file and block named
    return matrix


def bench_from_values(values: dict[str, Any], where: str = "", base: BenchSettings | None = None,
                      keys: tuple[str, ...] | None = None) -> BenchSettings:
    """BenchSettings from study-file / flag values (None values are left at ``base``'s); ``keys``: the names
    allowed (a study's [bench] table: BENCH_KEYS, its [loadgen] table: LOADGEN_KEYS; None: both)."""
    base = base or BenchSettings()
    kw = {}
    types = {"min_time": float, "max_time": float, "cell_timeout": float, "min_iters": int, "warmup": int,
             "calib_size": int, "calib_data": str, "softmax": str, "out": str, "latency_bound": float,
             "percentile": float, "duration": float, "min_queries": int}
    allowed = keys or tuple(types)
    for key, value in values.items():
        name = key.replace("-", "_")
        if name not in allowed:
            what = "loadgen" if keys == LOADGEN_KEYS else "bench"
            raise UsageError(f"{where}unknown key {key!r} ({what} settings: {', '.join(keys or BENCH_KEYS)})")
        if value is None:
            continue
        want = types[name]
        ok = isinstance(value, str) if want is str else (
            isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
            and (want is float or value == int(value)))
        if not ok:
            raise UsageError(f"{where}{key} must be {'a string' if want is str else 'a number'}"
                             f"{' (whole)' if want is int else ''}{'' if want is str else ', finite'}, got {value!r}")
        kw[name] = want(value)
    try:
        return replace(base, **kw)
    except UsageError as exc:
        raise UsageError(f"{where}{exc}") from None


def load_study(path: str | Path) -> tuple[list[Matrix], dict[str, Any], dict[str, Any]]:
    """The matrices, the [bench] and [loadgen] values and the name / description / [slurm] settings (``meta``) of
    a study file (TOML). Errors name the file and the key at fault."""
    import tomllib

    from deploykit.core.guarded import read_text

    p = Path(path)
    try:  # guarded: a regular file (not a FIFO or a device), at most 4 MiB
        data = tomllib.loads(read_text(p, what="study file", follow=True))
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"{p} is not valid TOML: {exc}") from None
    bench = data.pop("bench", {})
    loadgen = data.pop("loadgen", {})
    for name, table in (("bench", bench), ("loadgen", loadgen)):
        if not isinstance(table, dict):
            raise UsageError(f"{p}: '{name}' must be a table ([{name}])")
    blocks = data.pop("matrix", None)
    top = {k: v for k, v in data.items() if axis_name(k) is not None}
    rest = {k: v for k, v in data.items() if axis_name(k) is None}
    meta = {}
    for key in ("name", "description"):  # free text for people
        if key in rest:
            value = rest.pop(key)
            if not isinstance(value, str):
                raise UsageError(f"{p}: {key} must be a string, got {value!r}")
            meta[key] = value
    if "out" in rest:  # `out` may also sit at the top level
        bench = {**bench, "out": rest.pop("out")}
    if "slurm" in rest:
        from deploykit.sweep.sbatch import settings_from_values

        meta["slurm"] = settings_from_values(rest.pop("slurm"), where=f"{p}: [slurm]: ")
    if rest:
        key = next(iter(rest))
        raise UsageError(f"{p}: unknown key {key!r} (a study has [bench], [[matrix]] blocks with models, targets, "
                         "precision, batch, resolution, scenario, qps and any target or model option (threads, "
                         "graph_opt, streams, parc_impl ...); [loadgen]; [slurm]; and name, description, out)")
    if blocks is None:
        if not top:
            raise UsageError(f"{p}: no [[matrix]] block and no models")
        blocks = [top]
    elif top:
        raise UsageError(f"{p}: key {next(iter(top))!r} is outside the [[matrix]] blocks (put it in each block)")
    if not isinstance(blocks, list) or not all(isinstance(b, dict) for b in blocks):
        raise UsageError(f"{p}: 'matrix' must be [[matrix]] blocks (tables)")
    if not blocks:
        raise UsageError(f"{p}: no [[matrix]] block")
    matrices = [matrix_from_values(b, where=f"{p}: [[matrix]] #{i + 1}: ") for i, b in enumerate(blocks)]
    for i, m in enumerate(matrices):
        if not m.models:
            raise UsageError(f"{p}: [[matrix]] #{i + 1}: key 'models' is missing")
    # validate keys and types now, with the file named; the [loadgen] settings travel with the [bench] ones
    bench_from_values(bench, where=f"{p}: [bench]: ", keys=BENCH_KEYS)
    bench_from_values(loadgen, where=f"{p}: [loadgen]: ", keys=LOADGEN_KEYS)
    return matrices, {**bench, **loadgen}, meta


def spec_from(models=(), *, targets=(), precision=(), batch=(), resolution=(), scenario=(), qps=(),
              study: str | Path | None = None, bench: dict[str, Any] | None = None, **axes) -> SweepSpec:
    """The sweep of flags or of a study file (not both for the matrix); ``bench`` values given (not None) win over
    the study file's [bench] and [loadgen] settings. ``axes``: any runtime or model option by name (threads,
    parc_impl, streams ...), each a list of values."""
    flags = {"models": models, "targets": targets, "precision": precision, "batch": batch,
             "resolution": resolution, "scenario": scenario, "qps": qps, **axes}
    given = {k: v for k, v in flags.items() if v}
    if study is not None:
        if given:
            key = next(iter(given))
            raise UsageError(f"{flag_name(key)} and --study both give the matrix: put it in the study file or in "
                             "flags, not both")
        matrices, study_bench, meta = load_study(study)
        settings = bench_from_values(study_bench, where=f"{study}: ")
        source = str(study)
    else:
        if not models:
            raise UsageError("no models to sweep: give model names, globs or .onnx files, or --study FILE.toml")
        matrices = [matrix_from_values(given, flags=True)]
        settings = BenchSettings()
        source = "flags"
        meta = {}
    settings = bench_from_values({k: v for k, v in (bench or {}).items() if v is not None}, base=settings)
    return SweepSpec(matrices=tuple(matrices), bench=settings, source=source, **meta)


def spec_dict(spec: SweepSpec) -> dict:
    d = {"source": spec.source, "name": spec.name, "description": spec.description, "bench": asdict(spec.bench),
         "matrices": [m.to_dict() for m in spec.matrices]}
    if spec.slurm is not None:
        d["slurm"] = asdict(spec.slurm)
    return d
