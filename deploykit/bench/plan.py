"""Plan and run run specs: every check a run needs, done once and before anything is measured, then the run.

``plan_runs(specs)`` is what every measuring command (bench, loadgen, run, sweep cells, gate sides, baseline)
calls after building its specs: targets first (an unknown target is exit 2, one that cannot run here exit 3,
whatever else is wrong), then each model (known name or existing file, its options and resolution), each target
against the run's options on this machine (precision, mode, device), the profiler where per-layer timing is asked.
``run_spec`` measures one latency run (``bench/pipeline.run_benchmark``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from deploykit.core.config import BenchConfig, QuantizeConfig
from deploykit.core.errors import InputError, UsageError
from deploykit.spec.run import RunSpec

Say = Callable[[str], None]


def check_qdq_profile(target: str, recipe: QuantizeConfig | None) -> None:
    """An int8 recipe whose Q/DQ profile target ``target`` cannot run (uint8 / asymmetric Q/DQ on TensorRT) is
    refused before anything is exported or quantized, with the flag that fixes it."""
    from deploykit.runtimes.base import get_runtime

    cls = get_runtime(target)
    if recipe is None or recipe.profile is None or recipe.profile == cls.qdq_profile or cls.qdq_profile == "cpu":
        return
    raise UsageError(f"target {target} runs {cls.qdq_profile}-profile int8 files only (signed int8 Q/DQ, zero points "
                     f"0); --profile {recipe.profile} quantizes activations as uint8, which it refuses: use --profile "
                     f"{cls.qdq_profile} (or leave --profile out: it follows the target)")


def check_qdq_file(spec: RunSpec) -> None:
    """A quantized ONNX file given to a target that cannot run its Q/DQ nodes is refused before it is loaded."""
    from deploykit.runtimes.base import get_runtime

    cls = get_runtime(spec.target)
    if cls.qdq_profile == "cpu" or spec.int8 or Path(spec.model).suffix.lower() != ".onnx":
        return
    import onnx

    try:
        proto = onnx.load(spec.model, load_external_data=False)
    except Exception:  # not readable as ONNX: the loader says why later, with its own message
        return
    problems = cls.qdq_problems(proto)
    if problems:
        raise UsageError(f"{spec.model}: target {spec.target} cannot run its Q/DQ nodes: {'; '.join(problems)}; "
                         f"quantize the float model again with --profile {cls.qdq_profile} (deploykit quantize "
                         f"MODEL --profile {cls.qdq_profile}, or bench MODEL -t {spec.target} --int8)")


def check_target(spec: RunSpec) -> None:
    """The target exists, can run here, and accepts the run's options (mode, precision, device, profiler); a LoadGen
    scenario with requests in flight needs a target that keeps several (``CONCURRENT``)."""
    from deploykit.runtimes.base import CONCURRENT, get_runtime
    from deploykit.runtimes.registry import ordered_targets

    cls = get_runtime(spec.target)  # unknown -> InputError with the close names
    if spec.loadgen and spec.measure.concurrent and not cls.has(CONCURRENT):
        can = [n for n, c in ordered_targets() if c.has(CONCURRENT)]
        raise UsageError(f"target {spec.target} cannot keep requests in flight, which --scenario "
                         f"{spec.measure.scenario} needs (targets that can: {', '.join(can)}); --scenario "
                         "singlestream runs on every target")
    if spec.int8:  # a recipe the target cannot run is the user's to fix, wherever this runs
        check_qdq_profile(spec.target, spec.quantize)
        if spec.quantize is not None and spec.quantize.quantizer == "nncf" and ".xml" not in cls.file_formats:
            readers = [n for n, c in ordered_targets() if ".xml" in c.file_formats]
            raise UsageError(f"--quantizer nncf writes OpenVINO IR, which target {spec.target} does not read "
                             f"(targets that do: {', '.join(readers)}); --quantizer ort writes a QDQ ONNX file "
                             "every target runs")
    cls.ensure_available()  # missing extra / hardware -> exit 3
    cls(spec.runtime_options()).preflight()
    if isinstance(spec.measure, BenchConfig) and spec.measure.per_layer:
        cls.ensure_profiles_layers()


def check_model(spec: RunSpec) -> None:
    """The model is a known name (with options it has and a resolution it takes) or a file that exists."""
    from deploykit.models.registry import MODELS, check_resolution, get_cfg, resolve_options

    if spec.is_file:
        if not Path(spec.model).exists():
            raise InputError(f"ONNX file not found: {spec.model}")
        check_qdq_file(spec)
        if spec.model_options:
            raise UsageError(f"{spec.model} is a file: model options ({', '.join(k for k, _ in spec.model_options)}) "
                             "apply to registry models")
        return
    cfg = get_cfg(spec.model)  # unknown -> InputError with the close names
    if spec.model in MODELS:  # timm: / tv: models take no deploykit options
        resolve_options(cfg, dict(spec.model_options))
    if spec.resolution is not None:
        check_resolution(cfg, spec.resolution)


def plan_runs(specs: list[RunSpec]) -> list[RunSpec]:
    """Check every spec before the first is measured (targets first, then models); returns them unchanged."""
    if not specs:
        raise UsageError("nothing to run")
    seen: set[tuple] = set()
    for s in specs:
        k = (s.target, s.runtime_options(), s.quantize)
        if k not in seen:
            seen.add(k)
            check_target(s)
    for s in specs:
        check_model(s)
    return specs


def run_spec(spec: RunSpec, *, models_dir: Path | None = None, say: Say | None = None,
             progress: Callable[[str, int, float], None] | None = None, planned: bool = False):
    """Measure one latency run: the ``BenchResult`` of ``bench/pipeline.run_benchmark``, which carries the spec
    (its report's ``run_spec``: ``deploykit run`` on that object measures the same run again). ``planned``: the
    spec went through ``plan_runs`` (its target checks are not done again)."""
    from deploykit.bench.pipeline import run_benchmark

    result = run_benchmark(spec.model, spec.target, spec.bench_config(), spec.runtime_options(),
                           export=spec.export_config(models_dir), say=say, progress=progress, int8=spec.quantize,
                           planned=planned, preprocess=dict(spec.preprocess) or None)
    result.run_spec = spec.to_dict()
    return result
