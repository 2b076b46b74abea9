"""One benchmark of one model on one target, the same way for every target."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Callable

from deploykit.bench.fidelity import fidelity, reference_outputs
from deploykit.bench.fingerprint import fingerprint
from deploykit.bench.runner import STOP_MAX_TIME, Measurement, measure
from deploykit.bench.stats import PERCENTILE_METHOD, summarize, tail_supported
from deploykit.bench.timer import Timer, now_ns
from deploykit.core.config import BenchConfig, ExportConfig, RuntimeOptions
from deploykit.export.reference import make_input  # noqa: F401  (re-exported for API users)
from deploykit.export.source import ResolvedModel, resolve_model
from deploykit.runtimes.base import ModelInput, get_runtime

Say = Callable[[str], None]


@dataclass
class BenchResult:
    model: ResolvedModel
    target: str
    target_description: str
    config: BenchConfig
    options: RuntimeOptions
    runtime_info: dict
    precision: str
    measurement: Measurement
    stats_ms: dict
    fidelity: dict
    environment: dict
    warnings: list[str] = field(default_factory=list)

    def settings(self) -> dict:
        return {**asdict(self.config), **{k: v for k, v in asdict(self.options).items() if k != "extra"},
                "extra": dict(self.options.extra)}


def run_benchmark(model_ref: str, target: str, cfg: BenchConfig, options: RuntimeOptions, *,
                  export: ExportConfig | None = None, say: Say | None = None,
                  progress: Callable[[str, int, float], None] | None = None) -> BenchResult:
    say = say or (lambda msg: None)
    runtime_cls = get_runtime(target)  # unknown target -> did-you-mean
    runtime_cls.ensure_available()  # missing extra / hardware -> exit 3, before any export work
    runtime = runtime_cls(options)  # validates mode/precision for this target

    model = resolve_model(model_ref, batch=cfg.batch, resolution=cfg.resolution, export=export, progress=say)
    runtime_cls.ensure_supports(model_op_types(model), model.label)  # before loading: exit 3 with the reason
    x, ref, ref_label = reference_outputs(model, cfg.seed)

    say(f"loading {model.path.name} on {target}")
    t0 = now_ns()
    runtime.load(ModelInput(model.path, model.input_name, model.input_shape, model.input_dtype))
    load_ns = now_ns() - t0
    try:
        runtime.set_input(x)
        timer = Timer(runtime.sync)
        first_ns = timer.time_ns(runtime.infer)
        outs = runtime.outputs()
        info = runtime.info()
        precision = info.get("precision") or model.precision
        fid = fidelity(ref, outs[0], ref_label, precision)
        say(f"measuring {model.label} on {target} (warm-up {cfg.warmup}, then >= {cfg.min_iters} iterations "
            f"and >= {cfg.min_time:g} s, at most {cfg.max_time:g} s)")
        meas = measure(runtime.infer, cfg, batch=model.input_shape[0], timer=timer, progress=progress)
    finally:
        runtime.close()
    meas.load_ns, meas.first_ns = load_ns, first_ns

    samples_ms = [s / 1e6 for s in meas.samples_ns]
    stats = summarize(samples_ms, n_boot=cfg.bootstrap, seed=cfg.seed)
    stats["percentile_method"] = PERCENTILE_METHOD
    stats["tails_supported"] = {f"p{q}": tail_supported(stats["n"], q) for q in (90, 95, 99)}
    warnings = _warnings(cfg, meas, stats, fid)
    env = fingerprint(threads=info.get("threads"))
    return BenchResult(model=model, target=target, target_description=runtime_cls.description, config=cfg,
                       options=options, runtime_info=info, precision=precision, measurement=meas,
                       stats_ms=stats, fidelity=fid, environment=env, warnings=warnings)


def model_op_types(model: ResolvedModel) -> set[str]:
    """The op types of a resolved model's graph (from its manifest when it has one)."""
    hist = (model.manifest or {}).get("onnx", {}).get("op_histogram")
    if hist:
        return set(hist)
    from deploykit.export.onnx_io import graph_op_types, load_onnx

    return graph_op_types(load_onnx(model.path, load_external_data=False))


def _warnings(cfg: BenchConfig, meas: Measurement, stats: dict, fid: dict) -> list[str]:
    w = []
    if stats["cv"] > cfg.cv_warn:
        w.append(f"high variation: CV {stats['cv']:.1%} > {cfg.cv_warn:.0%} (noisy machine? other load, "
                 "frequency scaling, too few threads pinned); compare medians with their confidence intervals")
    if meas.stop_reason == STOP_MAX_TIME and meas.iterations < cfg.min_iters:
        w.append(f"only {meas.iterations} iterations fit in --max-time {cfg.max_time:g}s (wanted {cfg.min_iters})")
    short = [p for p, ok in stats["tails_supported"].items() if not ok]
    if short:
        w.append(f"{', '.join(short)} rest on fewer than 10 samples beyond them ({stats['n']} iterations); "
                 "raise --min-iters/--min-time to trust them")
    if fid.get("passed") is False:
        w.append(f"outputs do not match the reference ({fid['reference']}): {fid['reason']}")
    return w
