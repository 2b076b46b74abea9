"""The Runtime interface every target implements, and the target registry.

A target is one module in deploykit/runtimes/ with a class decorated by ``@register_runtime("name")`` (the
registry imports every module of the package: no list to edit) and, when it needs one, a pip extra in
pyproject.toml (``extra``). The module must not import its runtime -- nor numpy -- at module level
(``deploykit --help`` builds the targets' command-line options and ``deploykit targets`` lists every target
with only the base install); it imports lazily in ``load`` and reports what is missing from ``availability``.

Options: the common ones (``options.RuntimeOptions``) and the option groups the target lists in
``option_groups`` (frozen dataclasses declared next to it, e.g. ``ort.OrtOptions``); ``self.options.of(Group)``
reads a group. deploykit.cli makes the command-line options from these declarations.

The core every target implements (one timer, one statistics module for all targets, in bench/):
    rt = cls(options); rt.load(model)             -> timed as session load
    rt.set_input(x); rt.infer()                   -> first inference, timed apart
    rt.outputs()                                  -> outputs for the fidelity check (untimed)
    rt.infer() ...                                -> warm-up and the measured loop
    rt.info()                                     -> what actually ran (precision, providers, threads)
    rt.close()

Optional capabilities: a target lists the ones it has in ``capabilities`` and implements their methods; callers
ask ``cls.has(CAPABILITY)``, never which methods a class overrides. ``register_runtime`` checks the two agree (a
target that declares a capability without its methods, or implements them without declaring it, fails at import):

    DEVICE_TIMING   sync, device_times         GPU targets: ``sync`` waits for the device inside each timed
                                               interval; ``device_times`` gives CUDA-event durations of the last
                                               inference (read after ``sync``), e.g. {"compute": ns, "e2e": ns},
                                               or None when this instance has no device clock
    CONCURRENT      parallel_requests, submit, throughput mode (``modes`` then includes "throughput"): after
                    wait_all                   ``load`` the runtime holds ``parallel_requests()`` requests; bench
                                               calls ``submit(slot, done)`` to start request ``slot`` and the
                                               runtime calls ``done(slot)`` (from any thread) when it has finished;
                                               the clock reads stay in bench/ (``done`` is bench's)
    PER_LAYER       profile_layers             ``profile_layers(model, x, iterations)`` runs ``iterations``
                                               inferences in a SEPARATE session / compiled model / execution
                                               context with the runtime's own profiler on and returns every layer's
                                               time in every profiled inference (``LayerProfile``); bench calls it
                                               after the timed loop and aggregates it (bench/layers.py)
    GRAPH_READBACK  runtime_graph              ``runtime_graph(path)``: what the runtime really runs for a model
                                               file, after its own fusions and kernel choices, with the instance's
                                               options (``deploykit inspect --runtime``, the quantizer's report)
    PEAK            peak_kernels, gemm_session the GEMM kernels ``deploykit peak`` measures on this target
                                               (``GemmKernel``; the graphs are in gemm.py) and a loaded runtime
                                               running one of them at one shape; bench/peak.py times it

Without a capability the base methods stand: ``runtime_graph`` and ``profile_layers`` raise a one-line
UsageError naming the targets that have it.

A target that cannot run some ONNX op declares it in ``unsupported_ops`` (op type -> reason); bench checks
the graph before loading so the user gets a clear error instead of a silent fallback or a late failure.
``graph_unsupported`` may narrow that list (by the installed version), never add to it: a target with no
``unsupported_ops`` has its graphs run unchecked.
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

# The optional capabilities a target declares in ``Runtime.capabilities``, each with the methods it takes
DEVICE_TIMING = "device_timing"
CONCURRENT = "concurrent_requests"
PER_LAYER = "per_layer_profile"
GRAPH_READBACK = "runtime_graph"
PEAK = "peak_kernels"
CAPABILITIES: dict[str, tuple[str, ...]] = {
    DEVICE_TIMING: ("sync", "device_times"),
    CONCURRENT: ("parallel_requests", "submit", "wait_all"),
    PER_LAYER: ("profile_layers",),
    GRAPH_READBACK: ("runtime_graph",),
    PEAK: ("peak_kernels", "gemm_session"),
}


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


# control-flow ops: their time holds their subgraphs' nodes, and their "precision" is their condition's (a boolean,
# stored as u8: not int8 compute)
CONTROL_FLOW_OPS = ("If", "Loop", "Scan", "TensorIterator")


@dataclass(frozen=True)
class LayerNode:
    """One node of the graph a runtime executed, as its profiler names it (``LayerTime.name``): which nodes feed it
    and what of the loaded file it stands for -- the facts ``deploykit explain`` maps back to the source graph."""

    name: str
    op_type: str
    inputs: tuple[str, ...] = ()  # the runtime nodes whose outputs it reads
    outputs: tuple[str, ...] = ()  # the tensor names it writes, where the runtime keeps the file's (ONNX Runtime)
    origins: tuple[str, ...] = ()  # the file's nodes merged into it, where the runtime records them (OpenVINO's
    # originalLayersNames)


@dataclass(frozen=True)
class LayerProfile:
    """What ``Runtime.profile_layers`` returns: the raw per-layer times of ``iterations`` profiled inferences."""

    runtime: str
    profiler: str  # which profiler, in words
    iterations: int
    records: list[LayerTime]
    notes: tuple[str, ...] = ()
    wall_ms: tuple[float, ...] = ()  # each profiled inference's own duration (profiler on), when the runtime has it
    graph: tuple[LayerNode, ...] = ()  # the executed graph, when the runtime can read it back (empty otherwise)


@dataclass(frozen=True)
class GemmKernel:
    """One GEMM kernel a target measures for `deploykit peak` (the PEAK capability): ``graph``, one of
    ``gemm.GRAPHS``, asking for ``precision``."""

    name: str  # e.g. "MatMul", "MatMulInteger u8s8"
    precision: str  # the precision asked for
    graph: str  # fp32 | matmul_integer | qlinear | qdq
    input_dtype: str = "float32"


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
    # the Q/DQ profile an int8 file for this target is quantized with when --profile is not given (QuantizeConfig:
    # cpu = uint8 asymmetric activations, trt = signed int8 symmetric, which TensorRT-backed targets need)
    qdq_profile: ClassVar[str] = "cpu"
    # optional capabilities (CAPABILITIES): declared here, checked against the methods at registration
    capabilities: ClassVar[frozenset[str]] = frozenset()
    modes: ClassVar[tuple[str, ...]] = ("latency",)  # follows from capabilities: "throughput" with CONCURRENT
    file_formats: ClassVar[tuple[str, ...]] = (".onnx",)  # model files the target reads
    # what the target loads: the model file, or (torch) the PyTorch module the file was exported from
    loads: ClassVar[str] = "file"
    # ONNX op types this target cannot run, each with the reason, e.g. {"DFT": "TensorRT's ONNX parser has no
    # DFT before 10.x"}. bench refuses such a graph before loading it (exit 3) and `deploykit targets` lists them;
    # override ``graph_unsupported`` when the answer depends on the installed version (it narrows this list).
    unsupported_ops: ClassVar[dict[str, str]] = {}  # ONNX op type -> why this target cannot run it

    def __init_subclass__(cls, **kwargs):
        # throughput mode is the CONCURRENT methods at work: derived, so the two can never disagree
        super().__init_subclass__(**kwargs)
        if "modes" in cls.__dict__:
            raise TypeError(f"{cls.__qualname__}: modes follow from capabilities (declare CONCURRENT for throughput "
                            "mode), not set by hand")
        cls.modes = ("latency", "throughput") if CONCURRENT in cls.capabilities else ("latency",)

    @classmethod
    def has(cls, capability: str) -> bool:
        """Whether this target declares ``capability`` (one of CAPABILITIES)."""
        if capability not in CAPABILITIES:
            raise ValueError(f"unknown runtime capability {capability!r} (known: {', '.join(CAPABILITIES)})")
        return capability in cls.capabilities

    @classmethod
    def check_capabilities(cls) -> None:
        """Raise TypeError unless ``capabilities`` and the capability methods this class implements agree (run by
        ``register_runtime``: a mismatch is a bug in the target module, so it fails at import)."""
        where = f"target {cls.name or cls.__qualname__} ({cls.__module__}.{cls.__qualname__})"
        unknown = sorted(set(cls.capabilities) - set(CAPABILITIES))
        if unknown:
            raise TypeError(f"{where} declares unknown capabilities {', '.join(unknown)} "
                            f"(known: {', '.join(CAPABILITIES)})")
        for cap, methods in CAPABILITIES.items():
            done = [m for m in methods if _implements(cls, m)]
            if cap in cls.capabilities and len(done) < len(methods):
                missing = [m for m in methods if m not in done]
                raise TypeError(f"{where} declares {cap} but does not implement {', '.join(missing)}")
            if cap not in cls.capabilities and done:
                raise TypeError(f"{where} implements {', '.join(done)} but does not declare {cap} in capabilities")

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
    def qdq_problems(cls, model) -> list[str]:
        """Why this target cannot run the quantized ONNX graph ``model`` (an onnx ModelProto); [] when it can."""
        return []

    @classmethod
    def inspect_file(cls, path: Path) -> tuple[list, str]:
        """For a model file in one of ``file_formats`` other than .onnx: its inputs (a list of
        ``export.onnx_io.InputSpec``) and the precision the graph asks for."""
        raise NotImplementedError(f"target {cls.name} reads no {Path(path).suffix} files")

    def preflight(self) -> None:  # noqa: B027 - optional hook
        """Cheap checks of the options against this machine (e.g. the --device exists), run before any export
        or load so a wrong option fails in a second. Raise UsageError / UnavailableError."""

    shared: bool = False  # set by share_process(): another model is loaded in this process too

    def share_process(self) -> None:
        """Called before ``load`` when this model will share its process with another loaded model (each side of
        an interleaved A/B): a runtime whose defaults assume it has the process to itself (OpenVINO pins a
        compiled model's threads to cores and marks them used) reads ``shared`` and drops them."""
        self.shared = True

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

    def info(self) -> dict:
        """What actually ran: precision, devices/providers, threads, runtime version, applied options."""
        return {}

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release the session / engine (the runtime's memory)."""

    def uses_gpu(self) -> int | None:
        """Index of the NVIDIA GPU this run uses (for energy and telemetry), or None for a CPU-only run."""
        return None

    # ---- optional capabilities (see CAPABILITIES): a target overrides these only with the capability declared
    def sync(self) -> None:  # noqa: B027 - optional hook
        """DEVICE_TIMING: wait for outstanding device work; CPU targets are synchronous."""

    def device_times(self) -> dict[str, int] | None:
        """DEVICE_TIMING: device-side durations of the last inference in ns (CUDA events), read after ``sync``;
        None when this instance has no device clock."""
        return None

    def parallel_requests(self) -> int:
        """CONCURRENT: requests this runtime keeps in flight in throughput mode (known after ``load``)."""
        return 1

    def submit(self, slot: int, done: Callable[[int], None]) -> None:
        """CONCURRENT: start inference request ``slot`` (0 .. parallel_requests()-1) on the bound input without
        waiting; call ``done(slot)`` as soon as it has finished (from whatever thread the runtime completes on)."""
        raise NotImplementedError(f"target {self.name} has no asynchronous submit")

    def wait_all(self) -> None:  # noqa: B027 - optional hook
        """CONCURRENT: block until every submitted request has finished (throughput mode clean-up)."""

    def runtime_graph(self, path: Path) -> dict:
        """GRAPH_READBACK: what this runtime really runs for the model file ``path``, read back from the runtime
        itself (fused layers, the precision each one runs in), with this instance's options. Raises UsageError on
        targets that cannot read back their runtime graph (this base implementation)."""
        raise _cannot_read_back(self.name)

    def profile_layers(self, model: ModelInput, x: np.ndarray, iterations: int) -> LayerProfile:
        """PER_LAYER: per-layer times of ``iterations`` inferences of ``model`` on ``x`` from the runtime's own
        profiler, in a session of its own (never the timed one), with this instance's options. Raises UsageError on
        targets without a per-layer profiler (this base implementation)."""
        raise _no_profiler(self.name)

    @classmethod
    def peak_kernels(cls) -> tuple[GemmKernel, ...]:
        """PEAK: the GEMM kernels `deploykit peak` measures on this target (none on this base class)."""
        return ()

    @classmethod
    def gemm_session(cls, kernel: GemmKernel, m: int, k: int, n: int, threads: int,
                     folder: Path) -> tuple[Runtime, str]:
        """PEAK: a runtime of this target loaded with ``kernel``'s GEMM A[m, k] . B[k, n] on ``threads`` threads
        (graph files go to ``folder``), its input bound and its first inference still to run, with the precision it
        runs in (read back where the runtime tells). The caller times ``infer`` and closes it."""
        raise UsageError(f"target {cls.name} has no GEMM kernels for deploykit peak")

    # thin wrappers kept for their callers
    @classmethod
    def profiles_layers(cls) -> bool:
        return cls.has(PER_LAYER)

    @classmethod
    def ensure_profiles_layers(cls) -> None:
        """Raise the one-line UsageError of ``profile_layers`` unless this target has a per-layer profiler."""
        if not cls.has(PER_LAYER):
            raise _no_profiler(cls.name)

    @classmethod
    def reads_back_graph(cls) -> bool:
        return cls.has(GRAPH_READBACK)


def _implements(cls: type[Runtime], method: str) -> bool:
    """Whether ``cls`` or a class between it and Runtime defines ``method`` (its own, not the base's default)."""
    mro = cls.__mro__
    return any(method in c.__dict__ for c in mro[:mro.index(Runtime)])


def list_targets() -> list[tuple[str, type[Runtime], Availability]]:
    return [(n, cls, cls.availability()) for n, cls in ordered_targets()]


def _cannot_read_back(name: str) -> UsageError:
    can = [n for n, cls in ordered_targets() if cls.has(GRAPH_READBACK)]
    return UsageError(f"target {name} cannot read back its runtime graph (targets that can: {', '.join(can)})")


def _no_profiler(name: str) -> UsageError:
    can = [n for n, cls in ordered_targets() if cls.has(PER_LAYER)]
    return UsageError(f"target {name} has no per-layer profiler (--per-layer works on: {', '.join(can)})")


def read_back_target(target: str) -> type[Runtime]:
    """The class of target ``target`` if it can read back its runtime graph here: an unknown name is the
    registry's did-you-mean error (exit 2), a target without read-back a UsageError (exit 2), an unavailable one
    an UnavailableError naming what is missing (exit 3)."""
    cls = get_runtime(target)
    if not cls.has(GRAPH_READBACK):
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
