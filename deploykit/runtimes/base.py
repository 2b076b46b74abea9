"""The Runtime interface every target implements, and the target registry.

A target is one module in deploykit/runtimes/ with a class decorated by ``@register_runtime("name")`` (the
registry imports every module of the package: no list to edit) and, when it needs one, a pip extra in
pyproject.toml (``extra``). The module must not import its runtime -- nor numpy -- at module level
(``deploykit --help`` builds the targets' command-line options and ``deploykit targets`` lists every target
with only the base install); it imports lazily in ``load`` and reports what is missing from ``availability``.

Options: the common ones (``options.RuntimeOptions``) and the option groups the target lists in
``option_groups`` (frozen dataclasses declared next to it, e.g. ``ort.OrtOptions``); ``self.options.of(Group)``
reads a group. deploykit.cli makes the command-line options from these declarations.

Life cycle used by bench (one timer, one statistics module for all targets):
    rt = cls(options); rt.load(path, input_spec)  -> timed as session load
    rt.set_input(x); rt.infer()                   -> first inference, timed apart
    rt.outputs()                                  -> outputs for the fidelity check (untimed)
    rt.infer() ...                                -> warm-up and the measured loop (rt.sync before each stop)
    rt.info()                                     -> what actually ran (precision, providers, threads)

Throughput mode (``modes`` includes "throughput"): after ``load`` the runtime holds ``parallel_requests()``
requests; bench calls ``submit(slot, done)`` to start request ``slot`` asynchronously and the runtime calls
``done(slot)`` (from any thread) when it has finished. The clock reads stay in bench/ (``done`` is bench's).

Read-back: ``runtime_graph(path)`` says what the runtime really runs for a model file -- the graph it executes
after its own fusions and kernel choices (ONNX Runtime's optimized graph, OpenVINO's runtime model, TensorRT's
engine layers), using the instance's own options. ``deploykit inspect --runtime NAME`` and the quantizer's report
call it; a target that cannot read back keeps the base class's method, which raises a one-line UsageError.

GPU targets may expose ``device_times()``: CUDA-event durations of the last inference (read after ``sync``),
e.g. {"compute": ns, "e2e": ns}; bench collects them next to the host-clock samples.

Per-layer profile: ``profile_layers(model, x, iterations)`` runs ``iterations`` inferences of ``model`` on ``x`` in a
SEPARATE session / compiled model / execution context with the runtime's own profiler on (ONNX Runtime's profiling
JSON, OpenVINO's performance counters, TensorRT's IProfiler) and returns every layer's time in every profiled
inference (``LayerProfile``); bench calls it after the timed loop, so the profiler never touches the latency
samples, and aggregates it (bench/layers.py). A target without a profiler keeps the base method, which raises a
one-line UsageError.

A target that cannot run some ONNX op declares it in ``unsupported_ops`` (op type -> reason); bench checks
the graph before loading so the user gets a clear error instead of a silent fallback or a late failure.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, ClassVar, Iterable

from deploykit.core.errors import UnavailableError, UsageError
from deploykit.core.lazy import extra_hint, install_hint, is_installed
from deploykit.runtimes.options import OptionSpec, RuntimeOptions, TargetOptions, specs_of
from deploykit.runtimes.registry import TARGETS, get_runtime, ordered_targets, register_runtime  # noqa: F401

if TYPE_CHECKING:
    import numpy as np

DEFAULT_TARGET = "ort"


# ONNX activation op types a runtime may fuse into the convolution / matmul before them (read-back summaries count
# the fused ones and the ones left standing)
ACTIVATIONS = ("Relu", "Clip", "LeakyRelu", "HardSigmoid", "HardSwish", "Sigmoid", "Tanh", "Gelu", "FastGelu",
               "QuickGelu", "Elu", "Selu")


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
    manifest: dict | None = None  # deploykit's artifact manifest when there is one (the torch target needs it)
    precision: str | None = None  # arithmetic precision the graph asks for (fp32 / fp16 / int8)


@dataclass(frozen=True)
class LayerTime:
    """One layer (node) of the graph a runtime executed, in one profiled inference."""

    iteration: int  # 0 .. iterations-1
    name: str  # the runtime's node / layer name
    op_type: str  # the runtime's op / layer type (ORT kernel op, OpenVINO node type, TensorRT layer type)
    ms: float
    precision: str | None = None  # fp32 / fp16 / bf16 / int8 / int32 ... ("fp32->int8" for a conversion)
    exec_type: str | None = None  # the implementation the runtime chose (OpenVINO exec_type, TensorRT tactic)
    fused: tuple[str, ...] = ()  # what the runtime merged into this node (original nodes, fusion passes)


@dataclass(frozen=True)
class LayerProfile:
    """What ``Runtime.profile_layers`` returns: the raw per-layer times of ``iterations`` profiled inferences."""

    runtime: str
    profiler: str  # which profiler, in words
    iterations: int
    records: list[LayerTime]
    notes: tuple[str, ...] = ()
    wall_ms: tuple[float, ...] = ()  # each profiled inference's own duration (profiler on), when the runtime has it


class Runtime(ABC):
    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    device_kind: ClassVar[str] = "cpu"  # cpu | gpu | accelerator
    requires: ClassVar[tuple[str, ...]] = ()  # python modules the target imports
    extra: ClassVar[str | None] = None  # the pip extra that installs them: pip install 'deploykit[<extra>]'
    rank: ClassVar[int] = 100  # where `deploykit targets` lists it (lower first)
    option_groups: ClassVar[tuple[type[TargetOptions], ...]] = ()  # the option groups it reads, besides the common
    precisions: ClassVar[tuple[str, ...]] = ("fp32",)
    # the precision to ask for when running an int8 (QDQ) file, so that the ops it leaves in float run as in the
    # fp32 runs beside it (OpenVINO: fp32, else it runs them in bf16 on CPUs with bf16 units); None: the file's own
    int8_float_precision: ClassVar[str | None] = None
    modes: ClassVar[tuple[str, ...]] = ("latency",)
    file_formats: ClassVar[tuple[str, ...]] = (".onnx",)  # model files the target reads
    # ONNX op types this target cannot run, each with the reason, e.g. {"DFT": "TensorRT's ONNX parser has no
    # DFT before 10.x"}. bench refuses such a graph before loading it (exit 3) and `deploykit targets` lists them;
    # override ``graph_unsupported`` when the answer depends on the installed version.
    unsupported_ops: ClassVar[dict[str, str]] = {}  # ONNX op type -> why this target cannot run it

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
            hint = extra_hint(cls.extra) if cls.extra else install_hint(missing[0])
            return Availability(False, f"{missing[0]} not installed ({hint})")
        return Availability(True)

    @classmethod
    def declared_options(cls) -> list[OptionSpec]:
        """The options this target receives: the common ones and those of its ``option_groups``."""
        return specs_of(RuntimeOptions) + [s for g in cls.option_groups for s in specs_of(g)]

    @classmethod
    def ensure_available(cls) -> None:
        av = cls.availability()
        if not av.available:
            raise UnavailableError(f"target {cls.name} is unavailable here: {av.reason}")

    @classmethod
    def graph_unsupported(cls, op_types: set[str]) -> dict[str, str]:
        """The ops of a graph (its set of op types) this target cannot run, with the reason for each."""
        return {op: why for op, why in cls.unsupported_ops.items() if op in op_types}

    @classmethod
    def ensure_supports(cls, op_types: Iterable[str], what: str) -> None:
        """Raise UnavailableError (exit 3) naming each op of ``what`` this target cannot run, and why."""
        bad = cls.graph_unsupported(set(op_types))
        if bad:
            reasons = "; ".join(f"{op}: {why}" for op, why in bad.items())
            raise UnavailableError(f"target {cls.name} cannot run {what}: it has {', '.join(bad)} ops ({reasons})")

    @classmethod
    def inspect_file(cls, path: Path) -> tuple[list, str]:
        """For a model file in one of ``file_formats`` other than .onnx: its inputs (a list of
        ``export.onnx_io.InputSpec``) and the precision the graph asks for."""
        raise NotImplementedError(f"target {cls.name} reads no {Path(path).suffix} files")

    def preflight(self) -> None:  # noqa: B027 - optional hook
        """Cheap checks of the options against this machine (e.g. the --device exists), run before any export
        or load so a wrong option fails in a second. Raise UsageError / UnavailableError."""

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

    def uses_gpu(self) -> int | None:
        """Index of the NVIDIA GPU this run uses (for energy and telemetry), or None for a CPU-only run."""
        return None

    def device_times(self) -> dict[str, int] | None:
        """Device-side durations of the last inference in ns (CUDA events), read after ``sync``; None if the
        target has no device clock."""
        return None

    # throughput mode primitives (targets whose ``modes`` include "throughput")
    def parallel_requests(self) -> int:
        """Requests this runtime keeps in flight in throughput mode (known after ``load``)."""
        return 1

    def submit(self, slot: int, done: Callable[[int], None]) -> None:
        """Start inference request ``slot`` (0 .. parallel_requests()-1) on the bound input without waiting;
        call ``done(slot)`` as soon as it has finished (from whatever thread the runtime completes on)."""
        raise NotImplementedError(f"target {self.name} has no asynchronous submit")

    def wait_all(self) -> None:  # noqa: B027 - optional hook
        """Block until every submitted request has finished (throughput mode clean-up)."""

    def info(self) -> dict:
        """What actually ran: precision, devices/providers, threads, runtime version, applied options."""
        return {}

    def runtime_graph(self, path: Path) -> dict:
        """What this runtime really runs for the model file ``path``, read back from the runtime itself (fused
        layers, the precision each one runs in), with this instance's options. Raises UsageError on targets
        that cannot read back their runtime graph (this base implementation)."""
        raise _cannot_read_back(self.name)

    def profile_layers(self, model: ModelInput, x: np.ndarray, iterations: int) -> LayerProfile:
        """Per-layer times of ``iterations`` inferences of ``model`` on ``x`` from the runtime's own profiler, in a
        session of its own (never the timed one), with this instance's options. Raises UsageError on targets
        without a per-layer profiler (this base implementation)."""
        raise _no_profiler(self.name)

    @classmethod
    def profiles_layers(cls) -> bool:
        """Whether this target implements ``profile_layers``."""
        return cls.profile_layers is not Runtime.profile_layers

    @classmethod
    def ensure_profiles_layers(cls) -> None:
        """Raise the one-line UsageError of ``profile_layers`` unless this target has a per-layer profiler."""
        if not cls.profiles_layers():
            raise _no_profiler(cls.name)

    @classmethod
    def reads_back_graph(cls) -> bool:
        """Whether this target implements ``runtime_graph``."""
        return cls.runtime_graph is not Runtime.runtime_graph

    def close(self) -> None:  # noqa: B027 - optional hook
        pass


def list_targets() -> list[tuple[str, type[Runtime], Availability]]:
    return [(n, cls, cls.availability()) for n, cls in ordered_targets()]


def _cannot_read_back(name: str) -> UsageError:
    can = [n for n, cls in ordered_targets() if cls.reads_back_graph()]
    return UsageError(f"target {name} cannot read back its runtime graph (targets that can: {', '.join(can)})")


def _no_profiler(name: str) -> UsageError:
    can = [n for n, cls in ordered_targets() if cls.profiles_layers()]
    return UsageError(f"target {name} has no per-layer profiler (--per-layer works on: {', '.join(can)})")


def read_back_target(target: str) -> type[Runtime]:
    """The class of target ``target`` if it can read back its runtime graph here: an unknown name is the
    registry's did-you-mean error (exit 2), a target without read-back a UsageError (exit 2), an unavailable one
    an UnavailableError naming what is missing (exit 3)."""
    cls = get_runtime(target)
    if not cls.reads_back_graph():
        raise _cannot_read_back(target)
    cls.ensure_available()
    return cls


def read_runtime_graph(target: str, path: Path, options: RuntimeOptions | None = None) -> dict:
    """``runtime_graph`` of target ``target`` for the model file ``path`` (errors as ``read_back_target``).
    Default options: one thread, no compiled-artifact cache."""
    cls = read_back_target(target)
    rt = cls(options or RuntimeOptions(threads=1, cache=False))
    rt.preflight()
    return rt.runtime_graph(Path(path))
