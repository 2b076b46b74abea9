"""The run spec: one frozen, serialisable description of one run.

A run is a model (a registry name, ``timm:``/``tv:`` name or an ONNX file, with its model options, weights and
opset), a target with its runtime options (the common ones and the option groups the target declares), a precision
(what the target is asked for; ``int8`` = the quantized artifact, with its recipe and calibration), a batch and a
resolution, and the measurement: the latency stop rule (``BenchConfig``) or a LoadGen scenario (``LoadgenConfig``).

``bench``, ``loadgen``, ``run SPEC.json`` (sweep and Slurm children), ``gate`` checks and ``baseline`` all build
run specs, and every check of their values happens here (``RunSpec.__post_init__``), once.

    spec = RunSpec(model="resnet18", target="openvino", precision="int8", resolution=64,
                   options=RuntimeOptions.from_settings(threads=2), quantize=QuantizeConfig(calib_data="synthetic"))
    spec.key        # resnet18|openvino|int8|b1|r64|t2   (stable: the identity of a sweep cell / history series)
    spec.to_dict()  # JSON-able; RunSpec.from_dict(d) == spec
    spec.digest     # sha256 of the whole description, measurement included

Values are generic: a runtime option a target declares (``runtimes/options.py``) and a model option a family
declares (``models/registry.py``) are taken by name from a sweep's matrix, a gate file's check or the command line
(``from_values``), with no list of names here.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from deploykit.core.config import MAX_ITERATIONS, BenchConfig, ExportConfig, QuantizeConfig, require_int
from deploykit.core.errors import InputError, UsageError
from deploykit.runtimes.options import RuntimeOptions, declared_options
from deploykit.spec.loadgen import LoadgenConfig

SPEC_VERSION = 1
LATENCY = "latency"  # the measurement of ``deploykit bench``; LoadGen scenarios are ``deploykit loadgen`` runs
AUTO = "auto"
INT8 = "int8"
DEFAULT_TARGET = "ort"
# runtime options that say where things live on this machine, not what runs: not part of a run's identity
LOCAL_OPTIONS = ("cache_dir",)
# the measurement fields a run spec holds elsewhere (batch, resolution are the run's own; seed is shared)
_BENCH_OWN = ("batch", "resolution")
_LOADGEN_OWN = ("batch", "resolution", "seed")
# recipe fields of an int8 build (QuantizeConfig's other fields say what to do with the file, not what it is)
QUANTIZE_FIELDS = ("calib_data", "calib_size", "calib_method", "quantizer", "softmax", "profile", "reduce_range",
                   "per_channel", "exclude", "seed")


def target_qdq_profile(target: str) -> str:
    """The Q/DQ profile target ``target`` runs (``Runtime.qdq_profile``: trt on TensorRT-backed targets, cpu
    elsewhere); cpu for a name no target has (the plan refuses the name itself)."""
    from deploykit.runtimes.base import get_runtime

    try:
        return get_runtime(target).qdq_profile
    except InputError:
        return "cpu"


def quantize_for(recipe: QuantizeConfig, target: str) -> QuantizeConfig:
    """``recipe`` with its profile chosen for ``target`` where it names none (``profile`` None); NNCF builds its
    own int8 files (the profile is an ONNX Runtime quantizer setting)."""
    if recipe.profile is not None:
        return recipe
    return replace(recipe, profile=target_qdq_profile(target) if recipe.quantizer == "ort" else "cpu")


def _is_file_ref(ref: str) -> bool:
    from deploykit.models.select import is_model_name

    return not is_model_name(ref)


@dataclass(frozen=True)
class RunSpec:
    """One run. ``precision`` None: the target's own choice (recorded in the report as what ran); ``int8``: the
    model's int8 artifact, built with ``quantize`` (the target is then asked for its ``int8_float_precision``
    for the ops left in float, unless ``options.precision`` says otherwise). ``measure``: a ``BenchConfig`` (latency
    stop rule) or a ``LoadgenConfig`` (scenario); their batch and resolution are the spec's."""

    model: str
    target: str = DEFAULT_TARGET
    precision: str | None = None
    batch: int = 1
    resolution: int | None = None
    model_options: tuple[tuple[str, str], ...] = ()
    weights: str | None = None
    pretrained: bool = False
    opset: int = 18
    options: RuntimeOptions = field(default_factory=RuntimeOptions)
    quantize: QuantizeConfig | None = None
    measure: BenchConfig | LoadgenConfig = field(default_factory=BenchConfig)
    # the user's preprocessing of the inputs (mean, std, crop_pct, interpolation, channel_order, value_range),
    # winning over the manifest's / the file's metadata; () = the model's own
    preprocess: tuple[tuple[str, Any], ...] = ()

    def __post_init__(self):
        if not isinstance(self.model, str) or not self.model.strip():
            raise UsageError(f"a run needs a model (a model name or an ONNX file), got {self.model!r}")
        if not isinstance(self.target, str) or not self.target:
            raise UsageError(f"a run needs a target, got {self.target!r}")
        require_int("--batch", self.batch, 1, MAX_ITERATIONS)
        require_int("--resolution", self.resolution, 1)  # what it costs is checked against the memory there is
        require_int("--opset", self.opset, 7, 23)
        if self.pretrained and self.weights is not None:
            raise UsageError("--pretrained and --weights exclude each other (published weights or your checkpoint)")
        opts = tuple(sorted((str(k), str(v)) for k, v in dict(self.model_options).items()))
        object.__setattr__(self, "model_options", opts)
        if not isinstance(self.options, RuntimeOptions):
            raise TypeError(f"options must be RuntimeOptions, not {type(self.options).__name__}")
        if self.precision == INT8:
            if self.quantize is None:
                raise UsageError("an int8 run needs its quantization recipe and calibration data (--calib-data DIR "
                                 "or 'synthetic')")
            if not self.quantize.calib_data:
                raise UsageError("--int8 needs --calib-data DIR (images preprocessed like the model's inputs) or "
                                 "'--calib-data synthetic' for a smoke test")
            if self.quantize.profile is None:  # the Q/DQ profile follows the target (trt: signed int8)
                object.__setattr__(self, "quantize", quantize_for(self.quantize, self.target))
        elif self.quantize is not None:
            raise UsageError(f"a quantization recipe was given for a {self.precision or 'float'} run (use precision "
                             "int8)")
        # a float run's precision is what the target is asked for (one value, kept in both places)
        if self.precision is None and self.options.precision is not None:
            object.__setattr__(self, "precision", self.options.precision)
        elif self.precision not in (None, INT8) and self.options.precision != self.precision:
            object.__setattr__(self, "options", replace(self.options, precision=self.precision))
        pre = tuple(sorted((str(k), tuple(v) if isinstance(v, list) else v) for k, v in dict(self.preprocess).items()
                           if v is not None))
        object.__setattr__(self, "preprocess", pre)
        if pre and self.quantize is not None and self.quantize.preprocess != pre:  # calibration reads it too
            object.__setattr__(self, "quantize", replace(self.quantize, preprocess=pre))
        if not isinstance(self.measure, (BenchConfig, LoadgenConfig)):
            raise TypeError(f"measure must be a BenchConfig or a LoadgenConfig, not {type(self.measure).__name__}")
        # the measurement's batch / resolution are the run's (one value, not two)
        own = _BENCH_OWN if isinstance(self.measure, BenchConfig) else _LOADGEN_OWN[:2]
        if any(getattr(self.measure, k) != getattr(self, k) for k in own):
            object.__setattr__(self, "measure", replace(self.measure, batch=self.batch, resolution=self.resolution))

    # ------------------------------------------------------------------------------------------- what it is
    @property
    def scenario(self) -> str:
        """``latency`` (a bench run) or the LoadGen scenario."""
        return self.measure.scenario if isinstance(self.measure, LoadgenConfig) else LATENCY

    @property
    def loadgen(self) -> bool:
        return isinstance(self.measure, LoadgenConfig)

    @property
    def int8(self) -> bool:
        return self.precision == INT8

    @property
    def is_file(self) -> bool:
        """The model is an ONNX (or a target's own) file rather than a registry / timm / torchvision name."""
        return _is_file_ref(self.model)

    @property
    def precision_label(self) -> str:
        """The precision as tables name the run: int8, or the float precision asked for (else fp32)."""
        return self.precision or self.options.precision or "fp32"

    def runtime_options(self) -> RuntimeOptions:
        """The options the target receives: an int8 run asks for the target's float precision for the ops left in
        float (``Runtime.int8_float_precision``), a float run for its precision."""
        prec = self.options.precision
        if prec is None and self.precision not in (None, INT8):
            prec = self.precision
        if prec is None and self.int8:
            from deploykit.runtimes.base import get_runtime

            prec = get_runtime(self.target).int8_float_precision
        opts = self.options if prec == self.options.precision else replace(self.options, precision=prec)
        if isinstance(self.measure, LoadgenConfig):  # the scenario decides whether requests are in flight
            mode = "throughput" if self.measure.concurrent else "latency"
            opts = opts if opts.mode == mode else replace(opts, mode=mode)
        return opts

    def target_settings(self) -> dict[str, Any]:
        """The runtime options set to other than their defaults (threads and precision included), by name."""
        defaults = RuntimeOptions().settings()
        skip = LOCAL_OPTIONS + (("mode",) if self.loadgen else ())  # a LoadGen scenario decides the mode
        return {k: v for k, v in self.options.settings().items() if k not in skip and v != defaults.get(k)}

    def export_config(self, models_dir: Path | None = None) -> ExportConfig | None:
        """How a registry model is exported (None for a file)."""
        if self.is_file:
            return None
        cfg = ExportConfig(model=self.model, batch=self.batch, resolution=self.resolution, opset=self.opset,
                           weights=self.weights, pretrained=self.pretrained, options=self.model_options)
        return cfg if models_dir is None else replace(cfg, models_dir=Path(models_dir))

    def bench_config(self) -> BenchConfig:
        if not isinstance(self.measure, BenchConfig):
            raise UsageError(f"the run measures LoadGen's {self.scenario} scenario, not latency")
        return self.measure

    # ------------------------------------------------------------------------------------------ identity
    @property
    def key(self) -> str:
        """The stable key of what runs (not how long it is measured): ``model|target|precision|b<batch>|
        r<resolution>|t<threads>[|model and target options][|scenario]`` (``auto`` where the model / target
        decides) -- the same key a sweep's results table has always used for its cells."""
        threads = self.options.threads
        parts = [self.model, self.target, self.precision_label, f"b{self.batch}", f"r{self.resolution or AUTO}",
                 f"t{threads or AUTO}"]
        extra = dict(self.model_options)
        extra.update({k: v for k, v in self.target_settings().items() if k not in ("threads", "precision")})
        if extra:
            parts.append(options_text(extra))
        m = self.measure
        if isinstance(m, LoadgenConfig):
            parts.append(f"{m.scenario}@qps={m.qps:g}" if m.scenario == "server" and m.qps is not None else m.scenario)
        return "|".join(str(p) for p in parts)

    @property
    def digest(self) -> str:
        """sha256 of the whole description (measurement included): equal digests, equal runs."""
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()

    # --------------------------------------------------------------------------------------- serialising
    def to_dict(self) -> dict:
        m = asdict(self.measure)
        for k in (_BENCH_OWN if not self.loadgen else _LOADGEN_OWN[:2]):
            m.pop(k, None)
        d: dict[str, Any] = {
            "version": SPEC_VERSION,
            "model": {"ref": self.model, "options": dict(self.model_options), "weights": self.weights,
                      "pretrained": self.pretrained, "opset": self.opset,
                      "preprocess": {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.preprocess}},
            "target": {"name": self.target, "options": self.target_settings()},
            "precision": self.precision,
            "quantize": None if self.quantize is None else
            {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self.quantize).items()
             if k in QUANTIZE_FIELDS},
            "batch": self.batch,
            "resolution": self.resolution,
            "measure": {"kind": "loadgen" if self.loadgen else LATENCY, **m},
        }
        if self.options.cache_dir:
            d["target"]["cache_dir"] = self.options.cache_dir
        return d

    @classmethod
    def from_dict(cls, d: Any, where: str = "run spec") -> RunSpec:
        """The inverse of ``to_dict``; every problem is one InputError naming ``where`` and the field."""
        if not isinstance(d, dict):
            raise InputError(f"{where}: expected a JSON object, got {type(d).__name__}")
        unknown_keys(d, ("version", "model", "target", "precision", "quantize", "batch", "resolution", "measure"),
                     where)
        if d.get("version") != SPEC_VERSION:
            raise InputError(f"{where}: run spec version {d.get('version')!r} is not supported (this deploykit reads "
                             f"version {SPEC_VERSION})")
        model = _table(d.get("model"), f"{where}: model")
        unknown_keys(model, ("ref", "options", "weights", "pretrained", "opset", "preprocess"), f"{where}: model")
        target = _table(d.get("target"), f"{where}: target")
        unknown_keys(target, ("name", "options", "cache_dir"), f"{where}: target")
        measure = _table(d.get("measure"), f"{where}: measure")
        kind = measure.get("kind", LATENCY)
        mvals = {k: v for k, v in measure.items() if k != "kind"}
        try:
            if kind == LATENCY:
                unknown_keys(mvals, [f.name for f in fields(BenchConfig) if f.name not in _BENCH_OWN],
                             f"{where}: measure")
                meas: BenchConfig | LoadgenConfig = BenchConfig(**mvals)
            elif kind == "loadgen":
                unknown_keys(mvals, [f.name for f in fields(LoadgenConfig) if f.name not in _LOADGEN_OWN[:2]],
                      f"{where}: measure")
                meas = LoadgenConfig(**mvals)
            else:
                raise InputError(f"{where}: measure kind must be latency or loadgen, got {kind!r}")
            q = d.get("quantize")
            quant = None
            if q is not None:
                q = _table(q, f"{where}: quantize")
                unknown_keys(q, QUANTIZE_FIELDS, f"{where}: quantize")
                qvals: dict[str, Any] = {k: (tuple(v) if isinstance(v, list) else v) for k, v in q.items()}
                quant = QuantizeConfig(**qvals)
            topts = dict(_table(target.get("options") or {}, f"{where}: target options"))
            if target.get("cache_dir") is not None:
                topts["cache_dir"] = target["cache_dir"]
            return cls(model=_text(model.get("ref"), f"{where}: model ref"),
                       target=_text(target.get("name"), f"{where}: target name"), precision=d.get("precision"),
                       batch=d.get("batch", 1), resolution=d.get("resolution"),
                       model_options=tuple(_table(model.get("options") or {}, f"{where}: model options").items()),
                       weights=model.get("weights"), pretrained=bool(model.get("pretrained", False)),
                       opset=model.get("opset", 18), options=runtime_options_from(topts, where), quantize=quant,
                       measure=meas,
                       preprocess=tuple(_table(model.get("preprocess") or {}, f"{where}: model preprocess").items()))
        except (UsageError, TypeError) as exc:
            msg = exc.one_line() if isinstance(exc, UsageError) else str(exc)
            raise InputError(f"{where}: {msg}") from None

    def with_values(self, **values) -> RunSpec:
        """A copy with generic values changed (``from_values``' keys)."""
        return from_values(values, base=self)


def options_text(options) -> str:
    """Options as tables write them: ``""`` or ``parc_impl=fft`` (several: comma-joined, sorted by name)."""
    items = options.items() if isinstance(options, dict) else options
    return ",".join(f"{k}={v}" for k, v in sorted(items))


def _text(v, where: str) -> str:
    if not isinstance(v, str):
        raise InputError(f"{where}: expected a string, got {v!r}")
    return v


def _table(v, where: str) -> dict:
    if not isinstance(v, dict):
        raise InputError(f"{where}: expected a table/object, got {v!r}")
    return v


def unknown_keys(d, allowed, where: str) -> None:
    """Refuse the first key of ``d`` not in ``allowed``: one InputError naming ``where``, with the closest known
    key (or the known keys). The one check of keys a file gives (run specs, gate files)."""
    import difflib

    for k in d:
        if k not in allowed:
            close = difflib.get_close_matches(str(k), list(allowed), n=1, cutoff=0.6)
            hint = f"; did you mean {close[0]!r}?" if close else f" (known: {', '.join(allowed)})"
            raise InputError(f"{where}: unknown key {k!r}{hint}")


def runtime_options_from(values: dict[str, Any], where: str = "") -> RuntimeOptions:
    """RuntimeOptions from option names (any declared option: common or a target group's), typed and checked by
    their declarations; unknown names are one error with the close names."""
    specs = {s.name: s for s in declared_options()}
    out: dict[str, Any] = {}
    for k, v in values.items():
        name = k.replace("-", "_")
        s = specs.get(name)
        if s is None:
            unknown_keys({name: v}, list(specs), where or "runtime options")  # raises, naming the close names
            continue
        out[name] = coerce(v, s.type, f"{where + ': ' if where else ''}{s.flag or name}")
    try:
        return RuntimeOptions.from_settings(**out)
    except TypeError as exc:
        raise UsageError(str(exc)) from None


def coerce(value, kind: type, label: str):
    """``value`` as ``kind`` (int, float, str, bool) -- from a study file, a gate file or a spec file, where a
    string "4" and a whole float 4.0 are an int 4 -- or a one-line UsageError. None stays None."""
    import math

    if value is None:
        return None
    if kind is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no", "on", "off"):
            return value.lower() in ("true", "yes", "on")
        raise UsageError(f"{label}: expected true or false, got {value!r}")
    if kind is int:
        if isinstance(value, bool):
            raise UsageError(f"{label}: expected a whole number, got {value!r}")
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, str):
            try:
                value = int(value.strip())
            except ValueError:
                raise UsageError(f"{label}: expected a whole number, got {value!r}") from None
        if not isinstance(value, int):
            raise UsageError(f"{label}: expected a whole number, got {value!r}")
        return value
    if kind is float:
        try:
            number = None if isinstance(value, bool) else float(value)
        except (TypeError, ValueError):
            number = None
        if number is None or not math.isfinite(number):
            raise UsageError(f"{label}: expected a finite number, got {value!r}")
        return number
    if not isinstance(value, (str, int, float)) or isinstance(value, bool):
        raise UsageError(f"{label}: expected a string, got {value!r}")
    return str(value)


# ---------------------------------------------------------------------------------------- generic values
# the keys a run takes by name besides the declared runtime and model options (aliases -> the one name)
RUN_KEYS = {"model": "model", "target": "target", "precision": "precision", "batch": "batch",
            "resolution": "resolution", "weights": "weights", "pretrained": "pretrained", "opset": "opset"}


def value_kind(name: str) -> tuple[str, type] | None:
    """What a generic key is: ("run", type) for a run field, ("runtime", type) for a declared runtime option,
    ("model", str) for a declared model option; None for an unknown key."""
    name = name.replace("-", "_")
    if name in RUN_KEYS:
        return "run", {"batch": int, "resolution": int, "opset": int, "pretrained": bool}.get(name, str)
    for s in declared_options():
        if s.name == name and s.flag is not None:
            return "runtime", s.type
    from deploykit.models.registry import MODEL_OPTIONS

    if name in MODEL_OPTIONS:
        return "model", str
    return None


def generic_keys() -> list[str]:
    """Every key ``from_values`` takes: the run's fields, every declared runtime option with a flag, every declared
    model option."""
    from deploykit.models.registry import model_options_declared

    return [*RUN_KEYS, *(s.name for s in declared_options() if s.flag is not None),
            *(o.name for o in model_options_declared())]


def from_values(values: dict[str, Any], *, base: RunSpec | None = None, where: str = "",
                quantize: QuantizeConfig | None = None) -> RunSpec:
    """A run spec from generic key/value pairs -- a sweep cell's axis values, a gate file check's keys, a
    command's flags -- on top of ``base``: run fields (model, target, precision, batch, resolution, weights,
    pretrained, opset), any declared runtime option (threads, graph_opt, streams, a new target's option ...) and any
    declared model option (parc_impl ...). ``quantize``: the recipe when the result is an int8 run."""
    base = base or RunSpec(model=str(values.get("model") or "-"))
    label = f"{where}: " if where else ""
    run: dict[str, Any] = {}
    runtime = dict(base.target_settings())
    if base.options.cache_dir:
        runtime["cache_dir"] = base.options.cache_dir
    model_opts = dict(base.model_options)
    for key, value in values.items():
        kind = value_kind(key)
        name = key.replace("-", "_")
        if kind is None:
            unknown_keys({key: value}, generic_keys(), where or "run")
            continue
        where_key = f"{label}{name}"
        if kind[0] == "run":
            run[name] = coerce(value, kind[1], where_key)
        elif kind[0] == "runtime":
            runtime[name] = coerce(value, kind[1], where_key)
        elif value is not None:
            model_opts[name] = coerce(value, str, where_key)
    precision = base.precision
    if "precision" in run:  # a new precision: the target is asked for it (int8: for its float rest, its own rule)
        precision = run.pop("precision")
        runtime.pop("precision", None)
        if precision not in (None, INT8):
            runtime["precision"] = precision
    recipe = (quantize or base.quantize) if precision == INT8 else None
    if (recipe is not None and recipe is base.quantize and run.get("target", base.target) != base.target
            and recipe.profile == target_qdq_profile(base.target)):
        recipe = replace(recipe, profile=None)  # the base's profile was its target's: it follows the new target
    try:
        return replace(base, **run, precision=precision, model_options=tuple(model_opts.items()),
                       options=runtime_options_from(runtime, where), quantize=recipe)
    except UsageError as exc:
        raise UsageError(f"{label}{exc.one_line()}") from None


def model_option_applies(model: str, name: str) -> bool:
    """Whether model ``model`` (a registry name) takes model option ``name``."""
    from deploykit.models.registry import MODELS

    if _is_file_ref(model) or model not in MODELS:
        return False
    try:
        return name in dict(MODELS.get(model).options)
    except InputError:
        return False


# ------------------------------------------------------------------------------------------- spec files
SPEC_FILE = "spec.json"


def write_spec(spec: RunSpec, path: Path) -> Path:
    from deploykit.core.atomic import write_json

    write_json(path, spec.to_dict())
    return path


def read_spec(path: str | Path) -> RunSpec:
    """A run spec file (JSON, as ``write_spec`` or a sweep writes it), or a report that carries its run spec."""
    from deploykit.core.guarded import read_json

    p = Path(path)
    # guarded: a regular file, at most 64 MiB (a report that carries its spec), NaN / Infinity refused
    data = read_json(p, max_bytes=64 * 1024 * 1024, what="run spec file", follow=True)
    if isinstance(data, dict) and "schema" in data:  # a report: the spec it measured
        if not isinstance(data.get("run_spec"), dict):
            raise InputError(f"{p} is a {data.get('schema')} report without a run spec (written before reports "
                             "carried one)")
        data = data["run_spec"]
    return RunSpec.from_dict(data, where=str(p))
