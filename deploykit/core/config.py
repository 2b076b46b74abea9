"""Plain frozen dataclasses that drive both the CLI and the Python API. (The runtime options live with the
runtimes: deploykit.runtimes.options.)"""

from __future__ import annotations

import math
import numbers
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deploykit.core.errors import UsageError


# ONNX Runtime graph optimisation levels, as deploykit's --graph-opt names them (the one list: the ort targets'
# option, onnxio.session's mapping to onnxruntime, gate files)
GRAPH_OPTS = ("disable", "basic", "extended", "all")


# sanity bound on iteration counts (a file must not be able to make a run last for years); what a batch or a
# resolution costs is checked against the memory there is (onnxio.reference.check_fits)
MAX_ITERATIONS = 100_000_000
# the other bounds on the numbers a command, a study file, a run spec or a user.conf gives: one definition each,
# checked by require_int / require_positive where the setting is made (run spec, BenchConfig, LoadgenConfig,
# BenchSettings, runtime options, user.conf)
MAX_SEED = 2**32 - 1  # numpy's SeedSequence takes non-negative seeds; a negative --seed is refused everywhere
MAX_THREADS = max(256, 4 * (os.cpu_count() or 1))  # more threads than this only oversubscribes (and 1000 hangs)
MAX_SECONDS = 7 * 24 * 3600.0  # a time setting (cell timeout, min/max time, LoadGen duration): at most a week
MAX_QPS = 1e7  # a LoadGen rate (queries/s)
# queries of one LoadGen test (its min query count; qps x duration): LoadGen schedules them all in memory first
MAX_QUERIES = 100_000_000
MAX_BOOTSTRAP = 10_000_000  # bootstrap resamples


def default_models_dir() -> Path:
    """Artifact store: $DEPLOYKIT_MODELS or ./models."""
    return Path(os.environ.get("DEPLOYKIT_MODELS", "models"))


def user_cache_dir() -> Path:
    """This user's deploykit cache, outside any working directory: $XDG_CACHE_HOME/deploykit or ~/.cache/deploykit
    (compiled blobs and complexity counts of runs on plain ONNX files, which need no artifact store)."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "deploykit"


def default_reports_dir() -> Path:
    """Report folder: $DEPLOYKIT_REPORTS or ./reports."""
    return Path(os.environ.get("DEPLOYKIT_REPORTS", "reports"))


def one_of(choices) -> str:
    """``a, b, c or d``: the allowed values of a setting, for error messages."""
    choices = [str(c) for c in choices]
    return " or ".join([", ".join(choices[:-1]), choices[-1]]) if len(choices) > 1 else "".join(choices)


def require_positive(name: str, value: int | float | None, allow_zero: bool = False,
                     maximum: int | float | None = None) -> None:
    """A finite number above 0 (or at least 0), at most ``maximum``: NaN, infinities and booleans are refused."""
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise UsageError(f"{name} must be a finite number, got {value!r}")
    if value < 0 or (value == 0 and not allow_zero):
        raise UsageError(f"{name} must be {'non-negative' if allow_zero else 'positive'}, got {value}")
    if maximum is not None and value > maximum:
        raise UsageError(f"{name} must be at most {maximum:g}, got {value:g}")


def require_int(name: str, value, minimum: int | None = None, maximum: int | None = None) -> None:
    """A whole number (not 2.5, not True) within [minimum, maximum]."""
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise UsageError(f"{name} must be a whole number, got {value!r}")
    value = int(value)
    if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        bounds = f"between {minimum} and {maximum}" if minimum is not None and maximum is not None else \
            (f"at least {minimum}" if minimum is not None else f"at most {maximum}")
        raise UsageError(f"{name} must be {bounds}, got {value}")


@dataclass(frozen=True)
class ExportConfig:
    model: str
    batch: int = 1
    resolution: int | None = None
    opset: int = 18
    dynamic_batch: bool = False
    seed: int = 0
    weights: str | None = None
    pretrained: bool = False  # the model's published weights from the local cache (timm: / tv: models)
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
        require_int("--batch", self.batch, 1)
        require_int("--resolution", self.resolution, 1)
        require_int("--seed", self.seed, 0, MAX_SEED)
        require_int("--opset", self.opset)
        if not 7 <= self.opset <= 23:
            raise UsageError(f"--opset must be between 7 and 23, got {self.opset}")
        if self.pretrained and self.weights is not None:
            raise UsageError("--pretrained and --weights exclude each other (published weights or your checkpoint)")


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


@dataclass(frozen=True)
class BenchConfig:
    """How to measure. Stop rule: ``min_time`` seconds; past that only as long as fewer than ``min_iters``
    iterations were measured; never beyond ``max_time`` seconds, which bounds everything.

    ``min_iters`` defaults to 20, the fewest samples that put 10 on each side of the median: the rule
    ``bench.stats.tail_supported`` applies to every percentile (p90 needs 100 samples, p99 1000). Tail
    percentiles a run does not support are kept in the report and left out of the tables."""

    batch: int = 1
    resolution: int | None = None
    warmup: int = 10
    min_iters: int = 20
    min_time: float = 5.0
    max_time: float = 60.0
    seed: int = 0
    cv_warn: float = 0.05
    bootstrap: int = 2000
    # energy: measured in the same window as the latency samples, or reported unavailable
    energy: str = "auto"  # auto = every meter readable here | off
    idle_time: float = 2.0  # seconds of idle power measured just before warm-up (0 = skip)
    energy_estimate_watts: float | None = None  # only on explicit request: an estimate labelled as such
    # the fixed reference workload (bench/reference_workload.py), measured interleaved with the model so that a
    # stored report can be compared on another machine/day relative to it; on for baselines and gates
    reference_workload: bool = False
    reference_blocks: int = 12  # ABBA rounds (blocks of each side)
    reference_block_time: float = 0.25  # seconds per block (at least 5 iterations)
    # per-layer profile (bench/layers.py): after the timed loop, in a session of its own with the runtime's profiler
    per_layer: bool = False
    per_layer_top: int = 15  # slowest nodes kept in the report
    per_layer_iters: int = 20  # profiled inferences (after a few unrecorded warm-up runs)
    # accuracy (bench/accuracy.py): after the timed loop, the session runs a labelled folder (one sub-folder per
    # class); eval_size: at most that many images (a seeded sample)
    eval_data: str | None = None
    eval_size: int | None = None

    def __post_init__(self):
        require_int("--batch", self.batch, 1)
        require_positive("--idle-time", self.idle_time, allow_zero=True)
        require_positive("--energy-estimate-watts", self.energy_estimate_watts)
        if self.energy not in ("auto", "off"):
            raise UsageError(f"--energy must be auto or off, got {self.energy!r}")
        require_int("--resolution", self.resolution, 1)
        require_int("--warmup", self.warmup, 0, MAX_ITERATIONS)
        require_int("--min-iters", self.min_iters, 1, MAX_ITERATIONS)
        require_int("--seed", self.seed, 0, MAX_SEED)
        require_positive("--min-time", self.min_time, allow_zero=True, maximum=MAX_SECONDS)
        require_positive("--max-time", self.max_time, maximum=MAX_SECONDS)
        require_positive("--cv-warn", self.cv_warn, allow_zero=True)
        require_int("bootstrap resamples", self.bootstrap, 0, MAX_BOOTSTRAP)
        require_int("--reference-blocks", self.reference_blocks)
        if self.max_time < self.min_time:
            raise UsageError(f"--max-time ({self.max_time}s) must not be below --min-time ({self.min_time}s)")
        if self.reference_blocks < 2:
            raise UsageError(f"--reference-blocks must be at least 2, got {self.reference_blocks}")
        require_positive("--reference-block-time", self.reference_block_time)
        require_positive("--top", self.per_layer_top)
        require_positive("--per-layer-iters", self.per_layer_iters)
        require_int("--eval-size", self.eval_size, 1, 10_000_000)


QUANTIZERS = ("ort", "nncf")
CALIB_METHODS = ("minmax", "entropy", "percentile")
SOFTMAX_MODES = ("float", "int8", "auto")
QDQ_PROFILES = ("cpu", "trt")


@dataclass(frozen=True)
class QuantizeConfig:
    """How to build an int8 artifact (``deploykit quantize``, ``bench --int8``).

    calib_data: a folder of images (searched recursively), or "synthetic" for a smoke test (seeded noise).
    softmax: float | int8 | auto; None = int8 for ViTs with the ORT quantizer, float otherwise (NNCF keeps it float);
             auto = whichever of the two ran faster on the run's target on this machine (bench/softmax_auto.py).
    profile: cpu = uint8 asymmetric activations, int8 per-channel weights (ONNX Runtime / OpenVINO CPU);
             trt = int8 symmetric activations and weights, zero points 0 (what TensorRT accepts; OpenVINO and
             ONNX Runtime run it too, slower on ORT's CPU kernels); None = the target's (``Runtime.qdq_profile``,
             set by the run spec: trt on TensorRT-backed targets, cpu elsewhere).
    reduce_range: 7-bit weights; None = auto (on x86 CPUs without VNNI, as ONNX Runtime recommends).
    """

    calib_data: str | None = None
    calib_size: int = 128
    calib_method: str = "minmax"
    quantizer: str = "ort"
    softmax: str | None = None
    profile: str | None = "cpu"
    reduce_range: bool | None = None
    per_channel: bool = True
    exclude: tuple[str, ...] = ()
    sensitivity: bool = False
    eval_data: str | None = None
    eval_size: int | None = None
    fidelity_samples: int = 16
    crop_pct: float | None = None  # resize shorter side to resolution / crop_pct, then center-crop
    check_openvino: bool = False  # also run the int8 file in OpenVINO and check its fidelity
    # the user's preprocessing of the model's inputs ((key, value) pairs: mean, std, crop_pct, interpolation,
    # channel_order, value_range; export/source.apply_preprocess checks them), winning over the file's
    preprocess: tuple[tuple[str, Any], ...] = ()
    seed: int = 0
    output: str | None = None
    force: bool = False
    verify: bool = True

    def __post_init__(self):
        require_positive("--calib-size", self.calib_size)
        require_positive("--eval-size", self.eval_size)
        require_positive("--fidelity-samples", self.fidelity_samples)
        for name, value, allowed in (("--calib-method", self.calib_method, CALIB_METHODS),
                                     ("--quantizer", self.quantizer, QUANTIZERS),
                                     ("--profile", self.profile, (*QDQ_PROFILES, None))):
            if value not in allowed:
                raise UsageError(f"{name} must be one of {', '.join(a for a in allowed if a)}, got {value!r}")
        if self.softmax is not None and self.softmax not in SOFTMAX_MODES:
            raise UsageError(f"--softmax must be float, int8 or auto, got {self.softmax!r}")
        if self.crop_pct is not None and not 0 < self.crop_pct <= 1:
            raise UsageError(f"--crop-pct must be in (0, 1], got {self.crop_pct}")
        if self.quantizer == "nncf" and self.calib_method == "entropy":
            raise UsageError("--calib-method entropy is an ONNX Runtime calibrator; with --quantizer nncf use "
                             "minmax or percentile")
        if self.quantizer == "nncf" and self.profile not in (None, "cpu"):
            raise UsageError("--profile applies to the ONNX Runtime QDQ quantizer (--quantizer ort)")
