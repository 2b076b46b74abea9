"""One benchmark of one model on one target, the same way for every target."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from deploykit.bench import energy as energy_mod
from deploykit.bench import memory as memory_mod
from deploykit.bench import telemetry
from deploykit.bench.fidelity import fidelity, reference_outputs
from deploykit.bench.fingerprint import fingerprint
from deploykit.bench.runner import STOP_MAX_TIME, Measurement, first_inference, measure, measure_throughput
from deploykit.bench.stats import PERCENTILE_METHOD, summarize, tail_supported
from deploykit.bench.timer import Timer, now_ns
from deploykit.core.config import BenchConfig, ExportConfig
from deploykit.onnxio.reference import make_input  # noqa: F401  (re-exported for API users)
from deploykit.export.source import ResolvedModel, resolve_model
from deploykit.passes.fuse import export_transform
from deploykit.runtimes.base import DEVICE_TIMING, ModelInput, Runtime, get_runtime
from deploykit.runtimes.options import RuntimeOptions

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
    energy: dict | None = None  # bench/energy.py result: measured, estimated, unavailable (with reasons) or off
    telemetry: dict | None = None  # {"start": snapshot, "end": snapshot}
    device_timing: dict | None = None  # CUDA-event timings per kind: {"compute": {"samples_ms", "stats"}, ...}
    reference_workload: dict | None = None  # bench/reference_workload.py, when cfg.reference_workload
    memory: dict | None = None  # bench/memory.py: RSS before/after load and peak, GPU memory, artifact size
    complexity: dict | None = None  # passes/inspect.py complexity at the run's input shape (ONNX files)
    efficiency: dict | None = None  # bench/peak.py efficiency: achieved GFLOP/s and share of this machine's peak
    per_layer: dict | None = None  # bench/layers.py summary of the runtime's per-layer profile, when cfg.per_layer
    run_spec: dict | None = None  # the run spec measured (RunSpec.to_dict), when the run came from one
    accuracy: dict | None = None  # bench/accuracy.py: top-1/top-5 on --eval-data, on this runtime; int8 vs fp32

    def settings(self) -> dict:
        """The report's settings: the measurement's, then every runtime option (common and per target group)."""
        return {**asdict(self.config), **self.options.settings()}


def check_graph_ops(runtime_cls: type[Runtime], model: ResolvedModel) -> None:
    """Refuse, before loading, a graph with ops the target declares it cannot run (exit 3, with the reason)."""
    if model.path.suffix != ".onnx":
        return
    if not runtime_cls.unsupported_ops:  # graph_unsupported only narrows it: nothing to refuse
        return
    runtime_cls.ensure_supports(model_op_types(model), model.label)


def prepare_model(model_ref: str, target: str, options: RuntimeOptions, *, batch: int, resolution: int | None,
                  export: ExportConfig | None = None, say: Say | None = None, int8=None,
                  planned: bool = False,
                  preprocess: dict | None = None) -> tuple[type[Runtime], Runtime, ResolvedModel]:
    """The target's runtime (checked against this machine, not loaded yet) and the resolved model file it will
    run -- exported / quantized on demand, its graph checked against the target's unsupported ops. Every
    failure here is a one-line error before any measurement (the same for bench and loadgen). ``planned``: the
    run went through ``bench/plan.plan_runs``, whose target checks are not repeated."""
    runtime_cls = get_runtime(target)  # unknown target -> did-you-mean
    if not planned:
        runtime_cls.ensure_available()  # missing extra / hardware -> exit 3, before any export work
    runtime = runtime_cls(options)  # validates mode/precision for this target
    if not planned:
        runtime.preflight()  # e.g. the --device exists here

    readers = {s: runtime_cls.inspect_file for s in runtime_cls.file_formats if s != ".onnx"}
    builder = None
    if int8 is not None and int8.softmax == "auto":  # measured on this target and machine (cached)
        int8, _ = resolve_softmax(model_ref, target, options, int8, batch=batch, resolution=resolution, export=export,
                                  say=say, preprocess=preprocess)
    if int8 is not None:
        from deploykit.quantize.pipeline import int8_builder

        builder = int8_builder(int8)
    model = resolve_model(model_ref, batch=batch, resolution=resolution, export=export, progress=say,
                          readers=readers, quantize=builder, fuse=export_transform, preprocess=preprocess)
    check_graph_ops(runtime_cls, model)
    return runtime_cls, runtime, model


def resolve_softmax(model_ref: str, target: str, options: RuntimeOptions, qcfg, *, batch: int,
                    resolution: int | None, export: ExportConfig | None = None, say: Say | None = None,
                    preprocess: dict | None = None) -> tuple:
    """``--softmax auto`` (``bench/softmax_auto.py``): ``qcfg`` with its softmax decided on ``target`` -- int8 or
    float, whichever build ran its attention core faster here; None (the default) without attention blocks or with
    the NNCF quantizer -- and the record of the decision. Other values pass through with an empty record."""
    from dataclasses import replace

    from deploykit.bench import softmax_auto
    from deploykit.core.config import default_models_dir

    if qcfg.softmax != softmax_auto.AUTO:
        return qcfg, {}
    say = say or (lambda msg: None)
    if qcfg.quantizer != "ort":
        return replace(qcfg, softmax=None), {"decision": None, "reason": "NNCF keeps the softmax float"}
    builds = {}
    for mode in ("int8", "float"):
        _, runtime, model = prepare_model(model_ref, target, options, batch=batch, resolution=resolution,
                                          export=export, say=say, int8=replace(qcfg, softmax=mode), planned=True,
                                          preprocess=preprocess)
        if (model.manifest or {}).get("settings", {}).get("softmax") in (None, "none"):  # no attention blocks
            return replace(qcfg, softmax=None), {"decision": None, "reason": "no attention blocks in the graph"}
        builds[mode] = (runtime, model_input(model), model.manifest)
    models_dir = Path(export.models_dir) if export and export.models_dir else default_models_dir()
    record = softmax_auto.decide(builds, target, options, models_dir, say=say)
    return replace(qcfg, softmax=record["decision"]), record


def model_input(model: ResolvedModel) -> ModelInput:
    """What ``Runtime.load`` takes for a resolved model."""
    return ModelInput(model.path, model.input_name, model.input_shape, model.input_dtype,
                      manifest=model.manifest, precision=model.precision)


def run_benchmark(model_ref: str, target: str, cfg: BenchConfig, options: RuntimeOptions, *,
                  export: ExportConfig | None = None, say: Say | None = None,
                  progress: Callable[[str, int, float], None] | None = None, int8=None,
                  planned: bool = False, preprocess: dict | None = None) -> BenchResult:
    """``int8``: a ``QuantizeConfig`` -> benchmark the int8 variant of ``model_ref`` (built on demand, cached)."""
    say = say or (lambda msg: None)
    if cfg.per_layer and not planned:
        get_runtime(target).ensure_profiles_layers()  # before any export work
    runtime_cls, runtime, model = prepare_model(model_ref, target, options, batch=cfg.batch,
                                                resolution=cfg.resolution, export=export, say=say, int8=int8,
                                                planned=planned, preprocess=preprocess)
    x, ref, ref_label = reference_outputs(model, cfg.seed)

    what = (f"the PyTorch module of {(model.manifest or {}).get('settings', {}).get('model') or model.path.stem}"
            if runtime_cls.loads == "module" else model.path.name)
    say(f"loading {what} on {target}")
    mem, load_ns = load_measured(runtime_cls, runtime, model)
    meter = None
    try:
        runtime.set_input(x)
        # the device sync runs inside the timed interval: only for targets that have one (no no-op call on CPUs)
        timer = Timer(runtime.sync if runtime.has(DEVICE_TIMING) else None)
        first_ns = first_inference(runtime.infer, timer)
        outs = runtime.outputs()
        first_out = np.array(outs[0], copy=True)  # what the fidelity check judges; the timed loop must give it too
        # info() may read the runtime's optimized graph back: deploykit's memory, not the runtime's
        with mem.excluded():
            info = runtime.info()
        precision = info.get("precision") or model.precision
        fid = fidelity(ref, outs[0], ref_label, precision)
        gpu = runtime.uses_gpu()
        if cfg.energy != "off":
            meter = energy_mod.open_session(gpu, estimate_watts=cfg.energy_estimate_watts)
            if meter.meters and cfg.idle_time > 0:
                say(f"measuring idle power for {cfg.idle_time:g} s")
                meter.measure_idle(cfg.idle_time)
        on_start, on_stop = (meter.start, meter.stop) if meter is not None else (None, None)
        tele_start = telemetry.snapshot(gpu)
        batch = model.input_shape[0]
        if options.mode == "throughput":
            n = runtime.parallel_requests()
            say(f"measuring {model.label} on {target}, throughput mode with {n} requests in flight (warm-up "
                f"{max(cfg.warmup, n) if cfg.warmup else 0}, then {stop_rule_text(cfg, 'requests')})")
            try:
                meas = measure_throughput(runtime.submit, n, cfg, batch=batch, progress=progress,
                                          on_start=on_start, on_stop=on_stop)
            finally:
                runtime.wait_all()
        else:
            say(f"measuring {model.label} on {target} (warm-up {cfg.warmup}, then {stop_rule_text(cfg)})")
            meas = measure(runtime.infer, cfg, batch=batch, timer=timer, progress=progress,
                           device_timer=runtime.device_times if runtime.has(DEVICE_TIMING) else None,
                           on_start=on_start, on_stop=on_stop)
        memory = mem.finish()  # the peak over load and measurement, before anything else runs
        timed = None
        if meas.mode == "latency":  # the timed input's output after the loop, against the evaluated one (TEST01)
            from deploykit.bench.accuracy import timed_outputs_check

            timed = timed_outputs_check(first_out, runtime.outputs()[0])
        acc = _accuracy_step(runtime, model, cfg, target, say) if cfg.eval_data else None
        ref_wl = _reference_step(runtime_cls, options, runtime, timer, model, cfg, export, say) \
            if cfg.reference_workload else None
        tele_end = telemetry.snapshot(gpu)
        info = runtime.info()  # again: some runtimes only know some facts after running (e.g. cache hits)
        layer_profile, layer_error = _per_layer_step(runtime, model, x, cfg, say) if cfg.per_layer else (None, None)
    finally:
        mem.close()
        if meter is not None:
            meter.close()
        runtime.close()
    meas.load_ns, meas.first_ns = load_ns, first_ns

    samples_ms = [s / 1e6 for s in meas.samples_ns]
    stats = summarize(samples_ms, n_boot=cfg.bootstrap, seed=cfg.seed)
    stats["percentile_method"] = PERCENTILE_METHOD
    stats["tails_supported"] = {f"p{q}": tail_supported(stats["n"], q) for q in (90, 95, 99)}
    per_layer = None
    if layer_profile is not None:
        from deploykit.bench.layers import summarize_layers

        per_layer = summarize_layers(layer_profile, top=cfg.per_layer_top,
                                     measured_ms=stats["p50"] if meas.mode == "latency" else None)
    device_timing = None
    if meas.device_ns:
        device_timing = {}
        for kind, ns in meas.device_ns.items():
            ms = [v / 1e6 for v in ns]
            st = summarize(ms, n_boot=cfg.bootstrap, seed=cfg.seed)
            st["percentile_method"] = PERCENTILE_METHOD
            device_timing[kind] = {"samples_ms": [round(v, 6) for v in ms], "stats": st}
    energy = energy_mod.disabled_result() if cfg.energy == "off" else \
        meter.result(inferences=meas.batch * meas.iterations)
    tele = {"start": tele_start, "end": tele_end}
    warnings = _warnings(cfg, meas, stats, fid)
    if timed is not None:
        fid["timed_outputs"] = timed
        if not timed["passed"]:
            fid["passed"] = False
            warnings.append(f"{timed['reason']} (max-abs {timed['max_abs']}): the latency was measured on something "
                            "other than what was checked")
    # an int8 file that ran int8 is no mismatch: a float --precision then governs its float parts (e.g. OpenVINO
    # bf16 on CPUs with bf16 units unless --precision fp32)
    int8_as_built = precision == "int8" and model.precision == "int8"
    if options.precision and precision != options.precision and not int8_as_built:
        warnings.append(info.get("precision_note")
                        or f"--precision {options.precision} was requested but {precision} ran")
    if info.get("cache_note"):  # e.g. a compiled blob that failed its hash check
        warnings.append(f"{target}: {info['cache_note']}")
    warnings += [f"energy: {w}" for w in energy.get("warnings", [])]
    warnings += telemetry.telemetry_warnings(tele_start, tele_end)
    if layer_error:
        warnings.append(f"per-layer profile failed, the measurement stands: {layer_error}")
    extra = {}
    if gpu is not None:
        g = tele_start.get("gpu") or {}
        extra["gpu"] = {"index": gpu, "name": g.get("name") or info.get("gpu"), "driver": g.get("driver"),
                        "compute_capability": info.get("compute_capability")}
    if model.manifest and model.manifest.get("settings", {}).get("precision") == "int8":  # e.g. synthetic calibration
        warnings += [w for w in model.manifest.get("quantization", {}).get("warnings", []) if w not in warnings]
    env = fingerprint(threads=info.get("threads"), extra=extra or None)
    complexity, efficiency = _cost(model, memory, export, options, stats, meas, precision,
                                   info.get("threads") or options.resolved_threads(), gpu is not None)
    return BenchResult(model=model, target=target, target_description=runtime_cls.description, config=cfg,
                       options=options, runtime_info=info, precision=precision, measurement=meas,
                       stats_ms=stats, fidelity=fid, environment=env, warnings=warnings, energy=energy,
                       telemetry=tele, device_timing=device_timing,
                        reference_workload=ref_wl, memory=memory, complexity=complexity, efficiency=efficiency,
                        per_layer=per_layer, accuracy=acc)


def _reference_step(runtime_cls, options, runtime, timer, model, cfg, export, say) -> dict:
    """The fixed reference workload, interleaved with the loaded model on the same target and options."""
    from deploykit.bench.interleave import Side
    from deploykit.bench.reference_workload import NAME, reference_step
    from deploykit.core.config import default_models_dir

    say(f"measuring the reference workload {NAME} interleaved with {model.label} ({cfg.reference_blocks} ABBA blocks)")
    side = Side(model.label, runtime.infer, model.input_shape[0], timer)
    return reference_step(runtime_cls, options, side, cfg,
                          models_dir=export.models_dir if export else default_models_dir(), seed=cfg.seed)


def _accuracy_step(runtime, model, cfg, target, say) -> dict:
    """Top-1 / top-5 of the loaded session on the labelled folder (bench/accuracy.py), after the timed loop."""
    from deploykit.bench.accuracy import evaluate

    return evaluate(runtime, model, cfg.eval_data, cfg.eval_size, seed=cfg.seed, target=target, say=say)


def _per_layer_step(runtime, model, x, cfg, say):
    """The per-layer profile, after the timed loop: the runtime profiles in a session of its own (bench/layers.py).
    Returns (profile, None), or (None, why) when the profiler failed: the measurement is kept either way."""
    from deploykit.core.errors import squash

    say(f"profiling layers of {model.label}: {cfg.per_layer_iters} inferences in a separate profiled session")
    try:
        return runtime.profile_layers(model_input(model), x, cfg.per_layer_iters), None
    except Exception as exc:  # a profiler failure must not throw away the measured latency
        return None, f"{type(exc).__name__}: {squash(exc, 200)}"


def _cost(model: ResolvedModel, memory: dict, export, options: RuntimeOptions, stats: dict, meas: Measurement,
          precision: str, threads: int, gpu: bool) -> tuple[dict | None, dict | None]:
    """Adds ``artifact_mb`` to ``memory``; returns (complexity, efficiency): MACs from the ONNX graph at the run's
    input shape (None for other formats) and the achieved GFLOP/s against this machine's peak (the store's
    ``.cache`` holds both caches)."""
    from deploykit.bench.peak import efficiency
    from deploykit.core.config import default_models_dir

    cache = Path(options.cache_dir) if options.cache_dir else \
        (export.models_dir if export else default_models_dir()) / ".cache"
    proto = None
    try:  # the analysis after the run must never cost the measurement
        if model.path.suffix == ".onnx":
            from deploykit.onnxio.files import load_onnx

            proto = load_onnx(model.path, load_external_data=False)
        memory["artifact_mb"] = memory_mod.artifact_mb(model.path, proto)
    except Exception:
        memory["artifact_mb"] = round(model.path.stat().st_size / memory_mod.MB, 3)
    if proto is None:
        return None, None
    from deploykit.passes.inspect import cached_complexity

    try:
        cx = cached_complexity(model.path, model.sha256, model.input_shape, cache, proto=proto)
    except Exception:
        return None, None
    if not cx.get("macs"):
        return cx, None
    eff = efficiency(macs=cx["macs"], batch=meas.batch, p50_ms=stats["p50"], items_per_s=meas.items_per_s,
                     mode=meas.mode, precision=precision, threads=threads, gpu=gpu, cache_dir=cache)
    return cx, eff


def load_measured(runtime_cls: type[Runtime], runtime: Runtime, model: ResolvedModel):
    """Load ``model`` on ``runtime`` inside the memory tracker: (the tracker, the load time in ns). The tracker
    holds the RSS before the load and resets the peak there; it is closed again when the load fails."""
    import importlib

    for name in runtime_cls.requires:  # the runtime's own libraries are the process's, not the model's: in first
        try:  # (on first use an export may have imported them already; on reuse the load would count them)
            importlib.import_module(name)
        except ImportError:
            pass
    mem = memory_mod.MemoryTracker(runtime.uses_gpu(), torch_cuda="torch" in runtime_cls.requires)
    mem.start()
    t0 = now_ns()
    try:
        runtime.load(model_input(model))
    except BaseException:
        mem.close()
        raise
    load_ns = now_ns() - t0
    mem.loaded()
    return mem, load_ns


def stop_rule_text(cfg: BenchConfig, unit: str = "iterations") -> str:
    """The stop rule in words, for the progress line: what the measured loop waits for."""
    return (f"{cfg.min_time:g} s, past that only until {cfg.min_iters} {unit} (--min-iters), at most "
            f"{cfg.max_time:g} s")


def model_op_types(model: ResolvedModel) -> set[str]:
    """The op types of a resolved model's graph (from its manifest when it has one)."""
    hist = (model.manifest or {}).get("onnx", {}).get("op_histogram")
    if hist:
        return set(hist)
    from deploykit.onnxio.files import load_onnx, op_types

    return op_types(load_onnx(model.path, load_external_data=False))


def _warnings(cfg: BenchConfig, meas: Measurement, stats: dict, fid: dict) -> list[str]:
    w = []
    if stats["cv"] > cfg.cv_warn:
        w.append(f"high variation: CV {stats['cv']:.1%} > {cfg.cv_warn:.0%} (noisy machine? other load, "
                 "frequency scaling, too few threads pinned); compare medians with their confidence intervals")
    if meas.stop_reason == STOP_MAX_TIME and meas.iterations < cfg.min_iters:
        w.append(f"only {meas.iterations} iterations fit in --max-time {cfg.max_time:g}s (wanted at least "
                 f"{cfg.min_iters}, --min-iters); the median and its interval rest on fewer samples than asked")
    if fid.get("passed") is False:
        w.append(f"outputs do not match the reference ({fid['reference']}): {fid['reason']}")
    return w
