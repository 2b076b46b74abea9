"""Runtime options: the common ones every target receives (``RuntimeOptions``) and the option groups each target
declares next to itself.

An option is a field of a frozen dataclass made with ``option(...)``; its metadata (an ``OptionSpec``) says how
the command line spells it -- flag, help, type, choices, minimum -- and where it stands in ``--help`` and in the
report's settings (``rank``). deploykit.cli turns these declarations into click options (cli is the only package
that imports click), so a target's flags appear on ``bench`` without an edit to cli/:

    @dataclass(frozen=True)
    class OrtOptions(TargetOptions):
        graph_opt: str = option("all", flag="--graph-opt", choices=GRAPH_OPTS, help="...")

    @register_runtime("ort")
    class OrtCpuRuntime(Runtime):
        option_groups = (OrtOptions,)
        ...  self.options.of(OrtOptions).graph_opt

A group shared by several targets (``cuda.CudaOptions``: trt, ort-cuda, ort-trt, torch) is listed by each. The
groups on the command line are those the registered targets list.

``RuntimeOptions`` holds the common options and, in ``target_options``, the groups given explicitly (any other
group takes its defaults). ``settings()`` flattens it -- common fields and every registered group's fields, in
rank order -- into the report's settings; ``RuntimeOptions.from_settings(**values)`` is the inverse (each
keyword goes to the group that declares it).

No numpy, no click, no runtime here: ``deploykit --help`` imports this module.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Callable

from deploykit.core.config import (MAX_THREADS, available_cores, default_models_dir, one_of, require_int,
                                   require_positive)
from deploykit.core.errors import UsageError
from deploykit.runtimes.registry import ordered_targets

# known precisions in the order --precision lists them (a target's other precisions are appended)
PRECISIONS = ("fp32", "tf32", "fp16", "bf16", "int8")
MODES = ("latency", "throughput")

# where an option stands in `--help` and in the report's settings (lower first); an option that gives no rank
# (a new target's) comes after the targets' options and before --no-cache
RANK_DEFAULT = 90


@dataclass(frozen=True)
class OptionSpec:
    """How one runtime option is spelt on the command line (a field's ``option`` metadata)."""

    name: str  # the dataclass field: the keyword and the key in the report's settings
    default: Any
    flag: str | None  # None: set by deploykit itself (e.g. cache_dir), not a command-line option
    help: str
    type: type  # int | float | str | bool; a bool with default True is turned off by its flag (--no-cache)
    choices: tuple[str, ...] | Callable[[], tuple[str, ...]] | None  # a callable is asked when the CLI is built
    min: int | float | None
    show_default: bool
    rank: int
    group: type = object  # the dataclass that declares it

    @property
    def negated(self) -> bool:
        """The flag turns the option off (``--no-transfers`` -> transfers=False)."""
        return self.type is bool and self.default is True

    def choice_list(self) -> tuple[str, ...] | None:
        return self.choices() if callable(self.choices) else self.choices


def option(default, *, flag: str | None = None, help: str = "", type: type = str, choices=None,
           min: int | float | None = None, show_default: bool = False, rank: int = RANK_DEFAULT):
    """A dataclass field that is a runtime option (see the module docstring)."""
    spec = OptionSpec(name="", default=default, flag=flag, help=help, type=type, choices=choices, min=min,
                      show_default=show_default, rank=rank)
    return field(default=default, metadata={"deploykit_option": spec})


def specs_of(cls: type) -> list[OptionSpec]:
    """The options a dataclass declares, in field order, each with its name and group filled in."""
    out = []
    for f in fields(cls):
        spec = f.metadata.get("deploykit_option")
        if spec is not None:
            out.append(replace(spec, name=f.name, group=cls))
    return out


def _validate(obj) -> None:
    """Range and choice checks every option gets from its declaration (one-line UsageErrors)."""
    for spec in specs_of(type(obj)):
        value = getattr(obj, spec.name)
        label = spec.flag or spec.name
        if value is None:
            continue
        if spec.min is not None:
            require_positive(label, value, allow_zero=spec.min == 0)
        if spec.name == "threads":
            require_int(label, value, 1, MAX_THREADS)  # 1000 threads hang a session past SIGTERM
        choices = spec.choices if not callable(spec.choices) else None
        if choices and value not in choices:
            raise UsageError(f"{label} must be {one_of(choices)}, got {value!r}")


@dataclass(frozen=True)
class TargetOptions:
    """Base of the option groups targets declare (frozen dataclasses whose fields are ``option(...)``)."""

    def __post_init__(self):
        _validate(self)

    def check(self, common: RuntimeOptions) -> None:
        """Checks against the common options (e.g. a throughput-only option in latency mode): raise UsageError."""


def precision_choices() -> tuple[str, ...]:
    """Every precision some registered target runs: the known ones in their order, then any other."""
    have = [p for _, cls in ordered_targets() for p in cls.precisions]
    return tuple(p for p in PRECISIONS if p in have) + tuple(dict.fromkeys(p for p in have if p not in PRECISIONS))


@dataclass(frozen=True)
class RuntimeOptions:
    """Options every target receives, plus (``target_options``) the option groups of particular targets set
    explicitly; a target ignores what does not apply to it and says so in its info."""

    threads: int | None = option(None, flag="--threads", type=int, min=1, rank=10,
                                 help="Intra-op threads [default: all usable cores].")  # None = all usable cores
    device: str | None = option(None, flag="--device", rank=30,
                                help="Device: openvino CPU|GPU|NPU|AUTO...; torch cpu|cuda[:N]; GPU targets cuda[:N] "
                                     "[default: CPU / cuda:0].")
    precision: str | None = option(None, flag="--precision", choices=precision_choices, rank=40,
                                   help="Precision to ask the target for; the report records what really ran.")
    mode: str = option("latency", flag="--mode", choices=MODES, show_default=True, rank=50,
                       help="throughput: keep several requests in flight (openvino: async requests; ort: "
                            "concurrent runs).")
    cache: bool = option(True, flag="--no-cache", type=bool, rank=100,
                         help="Do not reuse compiled blobs / engines (OpenVINO cache, TensorRT engines).")
    # where compiled blobs / engines live (None = <models dir>/.cache); bench sets it from --models-dir
    cache_dir: str | None = option(None, rank=101)
    target_options: tuple[TargetOptions, ...] = ()  # groups given explicitly; any other group has its defaults

    def __post_init__(self):
        _validate(self)
        seen = set()
        for g in self.target_options:
            if not isinstance(g, TargetOptions):
                raise TypeError(f"target_options holds option groups (TargetOptions), not {g!r}")
            if type(g) in seen:
                raise TypeError(f"target_options has two {type(g).__name__}")
            seen.add(type(g))
        for g in self.target_options:
            g.check(self)

    def of(self, group: type[TargetOptions]) -> TargetOptions:
        """The options of ``group`` in this run: the ones given, else the group's defaults."""
        return next((g for g in self.target_options if type(g) is group), None) or group()

    def settings(self) -> dict:
        """Every runtime option by name -- the common ones and every registered group's -- in rank order: what
        the report records (a group not given explicitly reports its defaults)."""
        return {s.name: getattr(self if s.group is RuntimeOptions else self.of(s.group), s.name)
                for s in declared_options()}

    @classmethod
    def from_settings(cls, **values) -> RuntimeOptions:
        """Options from one keyword per option, common or of any registered group (the inverse of ``settings``):
        ``RuntimeOptions.from_settings(threads=2, graph_opt="basic", requests=4, mode="throughput")``."""
        by_name = {s.name: s for s in declared_options()}
        unknown = [k for k in values if k not in by_name]
        if unknown:
            raise TypeError(f"no runtime option {unknown[0]!r} (options: {', '.join(by_name)})")
        common = {k: v for k, v in values.items() if by_name[k].group is cls}
        groups: dict[type, dict] = {}
        for k, v in values.items():
            if by_name[k].group is not cls:
                groups.setdefault(by_name[k].group, {})[k] = v
        return cls(**common, target_options=tuple(g(**kw) for g, kw in groups.items()))

    def resolved_cache_dir(self, what: str) -> Path:
        """The compiled-artifact cache folder of one runtime (``what``: openvino, tensorrt, ...)."""
        base = Path(self.cache_dir) if self.cache_dir else default_models_dir() / ".cache"
        return base / what

    def resolved_threads(self) -> int:
        return self.threads or available_cores()


@dataclass(frozen=True)
class ThroughputOptions(TargetOptions):
    """Throughput mode (targets whose ``modes`` include "throughput"): requests in flight and streams."""

    requests: int | None = option(None, flag="--requests", type=int, min=1, rank=60,
                                  help="Throughput mode: requests in flight [default: the device's optimum].")
    streams: int | None = option(None, flag="--streams", type=int, min=1, rank=61,
                                 help="Throughput mode: execution streams [default: the device's choice].")

    def check(self, common: RuntimeOptions) -> None:
        if common.mode == "latency" and (self.requests or self.streams):
            raise UsageError("--requests/--streams apply to --mode throughput only")


def option_groups() -> list[type[TargetOptions]]:
    """The option groups the registered targets read, each once."""
    return list(dict.fromkeys(g for _, cls in ordered_targets() for g in cls.option_groups))


def declared_options() -> list[OptionSpec]:
    """Every runtime option (the common ones and every registered group's), in rank order. Two groups declaring
    the same name or flag is a bug in a target module and fails here, loudly."""
    specs = specs_of(RuntimeOptions) + [s for g in option_groups() for s in specs_of(g)]
    for attr in ("name", "flag"):
        seen: dict = {}
        for s in specs:
            key = getattr(s, attr)
            if key is None:
                continue
            if key in seen:
                raise RuntimeError(f"runtime option {key} is declared twice ({seen[key].__name__}, {s.group.__name__})")
            seen[key] = s.group
    return sorted(specs, key=lambda s: s.rank)
