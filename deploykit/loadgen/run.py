"""One ``deploykit loadgen`` run: MLPerf LoadGen drives a deploykit runtime (the system under test).

The model is resolved, loaded and checked exactly as ``bench`` does it (bench.pipeline.prepare_model, the same
input tensor and fidelity check against the same reference); then a short calibration sizes LoadGen's query
generation; then LoadGen runs its scenario (or a peak search) and its own log files are parsed into the
result. LoadGen's verdict (VALID / INVALID) is a result, not an error: an INVALID run returns normally.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

from deploykit.bench import memory as memory_mod
from deploykit.bench.fidelity import fidelity, reference_outputs
from deploykit.bench.fingerprint import fingerprint
from deploykit.bench.pipeline import load_measured, prepare_model
from deploykit.bench.runner import first_inference, measure, measure_throughput
from deploykit.bench.stats import PERCENTILE_METHOD, loadgen_percentile, summarize
from deploykit.bench.timer import Timer, now_ns
from deploykit.core.atomic import make_temp_dir, tmp_prefix
from deploykit.core.config import BenchConfig, ExportConfig
from deploykit.core.errors import InputError, UsageError, squash
from deploykit.core.lazy import require
from deploykit.export.source import ResolvedModel
from deploykit.loadgen import logs
from deploykit.loadgen.peak import search_peak
from deploykit.loadgen.settings import (QSL_SIZE, Calibration, LoadgenConfig, build_test_settings,
                                        loadgen_settings_record)
from deploykit.loadgen.sut import RuntimeSUT
from deploykit.runtimes.base import get_runtime
from deploykit.runtimes.options import RuntimeOptions

Say = Callable[[str], None]
LATENCY_SOURCE_TRACE = ("loadgen trace (mlperf_log_trace.json Sample events): from the query's scheduled start to "
                        "its completion, LoadGen's clock")
LATENCY_SOURCE_SUT = ("deploykit's SUT records: from LoadGen's issue callback to the completion, deploykit's clock "
                      "(LoadGen's scheduling delay before the issue is not included)")


@dataclass
class LoadgenRun:
    """One LoadGen test (one StartTest call) and what its logs say."""

    folder: Path  # LoadGen's log folder
    section: dict  # logs.result_section: verdict, QPS, latency percentiles, early stopping, reasons
    latencies: dict  # {"source", "samples_ms", "per_query_ms"?, "stats", "note"?}
    settings: dict  # the TestSettings deploykit passed (loadgen_settings_record)
    wall_s: float


@dataclass
class LoadgenResult:
    model: ResolvedModel
    target: str
    target_description: str
    config: LoadgenConfig
    options: RuntimeOptions
    runtime_info: dict
    precision: str
    fidelity: dict
    environment: dict
    calibration: Calibration
    requests_in_flight: int
    load_ms: float
    first_inference_ms: float
    run: LoadgenRun  # the run the report's verdict comes from (find-peak: the run at the peak)
    log_dir: Path  # every LoadGen log folder of this result lives under it
    peak: dict | None = None
    warnings: list[str] = field(default_factory=list)
    owns_log_dir: bool = False  # log_dir is a temporary folder run_loadgen made (``cleanup`` removes it)
    memory: dict | None = None  # bench/memory.py over load, calibration and the LoadGen runs, + artifact_mb
    run_spec: dict | None = None  # the run spec measured (RunSpec.to_dict), when the run came from one

    def cleanup(self) -> None:
        """Remove LoadGen's logs when they live in a temporary folder (after ``save`` has kept a copy)."""
        if self.owns_log_dir:
            shutil.rmtree(self.log_dir, ignore_errors=True)

    def settings(self) -> dict:
        return {**self.config.record(), **self.options.settings(), "requests_in_flight": self.requests_in_flight}


def check_target(target: str, cfg: LoadgenConfig):
    """The target's class, refusing a concurrent scenario on a target that cannot keep requests in flight."""
    cls = get_runtime(target)
    if cfg.concurrent and "throughput" not in cls.modes:
        from deploykit.runtimes.base import ordered_targets

        can = [n for n, c in ordered_targets() if "throughput" in c.modes]
        raise UsageError(f"target {target} cannot keep requests in flight, which --scenario {cfg.scenario} needs "
                         f"(targets that can: {', '.join(can)}); --scenario singlestream runs on every target")
    return cls


def loadgen_options(options: RuntimeOptions, cfg: LoadgenConfig) -> RuntimeOptions:
    """The runtime options of a LoadGen run: throughput mode (requests in flight) for the concurrent scenarios,
    latency mode (one request, as bench measures it) for SingleStream."""
    return replace(options, mode="throughput" if cfg.concurrent else "latency")


def run_spec(spec, *, models_dir: Path | None = None, say: Say | None = None, planned: bool = False) -> LoadgenResult:
    """Run a LoadGen run spec (its ``measure`` is a ``LoadgenConfig``); ``planned``: it went through
    ``bench/plan.plan_runs`` (the target checks, LoadGen's included, are not done again)."""
    result = run_loadgen(spec.model, spec.target, spec.measure, spec.runtime_options(),
                         export=spec.export_config(models_dir), say=say, int8=spec.quantize, planned=planned)
    result.run_spec = spec.to_dict()
    return result


def run_loadgen(model_ref: str, target: str, cfg: LoadgenConfig, options: RuntimeOptions, *,
                export: ExportConfig | None = None, say: Say | None = None, int8=None,
                log_dir: Path | None = None, planned: bool = False) -> LoadgenResult:
    """Run LoadGen's scenario ``cfg`` on ``model_ref`` / ``target``. LoadGen's logs go to ``log_dir`` (None: a
    temporary folder; ``save`` keeps a copy beside the report, ``result.cleanup()`` removes it)."""
    say = say or (lambda msg: None)
    lg = require("mlperf_loadgen", "deploykit loadgen")
    if not planned:
        check_target(target, cfg)
    options = loadgen_options(options, cfg)
    runtime_cls, runtime, model = prepare_model(model_ref, target, options, batch=cfg.batch,
                                                resolution=cfg.resolution, export=export, say=say, int8=int8,
                                                planned=planned)
    x, ref, ref_label = reference_outputs(model, cfg.seed)
    owns = log_dir is None
    log_dir = make_temp_dir("loadgen") if owns else Path(log_dir)  # swept by the next run when this one is killed
    try:
        return _serve(lg, runtime_cls, runtime, model, target, cfg, options, x, ref, ref_label, log_dir, owns, say)
    except BaseException:
        if owns:
            shutil.rmtree(log_dir, ignore_errors=True)
        raise


def _serve(lg, runtime_cls, runtime, model, target, cfg, options, x, ref, ref_label, log_dir, owns, say):
    say(f"loading {model.path.name} on {target}")
    mem, load_ns = load_measured(runtime_cls, runtime, model)  # as bench: the peak over load + the LoadGen runs
    sut = None
    try:
        runtime.set_input(x)
        first_ns = first_inference(runtime.infer, Timer(runtime.sync), "LoadGen's first inference")
        outs = runtime.outputs()
        with mem.excluded():  # info() may read the runtime's optimized graph back: deploykit's memory
            info = runtime.info()
        precision = info.get("precision") or model.precision
        fid = fidelity(ref, outs[0], ref_label, precision)
        sut = RuntimeSUT(lg, runtime, concurrent=cfg.concurrent)
        say(f"calibrating for {cfg.calibration_s:g} s ({sut.requests} request{'s' if sut.requests > 1 else ''} "
            "in flight) to size LoadGen's query generation")
        cal = calibrate(runtime, cfg.concurrent, cfg.calibration_s)
        name = model.label
        peak = None
        if cfg.find_peak and cfg.peak_method == "bisect":
            run, peak = _bisect(lg, sut, cfg, cal, name, log_dir, say)
        elif cfg.find_peak:
            run, peak = _loadgen_peak(lg, sut, cfg, cal, name, log_dir, say)
        else:
            settings = build_test_settings(lg, cfg, cal, model=name)
            say(_describe(cfg, settings))
            run = _run_test(lg, sut, settings, log_dir, cfg, step=sut.step)
        memory = mem.finish()
        _raise_sut_errors(sut, target)
        info = runtime.info()
    finally:
        if sut is not None:
            sut.close()
        mem.close()
        runtime.close()
    memory["artifact_mb"] = memory_mod.artifact_mb(model.path)
    warnings = _warnings(cfg, run, fid, options, precision, info)
    env = fingerprint(threads=info.get("threads"))
    return LoadgenResult(model=model, target=target, target_description=runtime_cls.description, config=cfg,
                         options=options, runtime_info=info, precision=precision, fidelity=fid, environment=env,
                         calibration=cal, requests_in_flight=sut.requests, load_ms=load_ns / 1e6,
                         first_inference_ms=first_ns / 1e6, run=run, log_dir=log_dir, peak=peak, warnings=warnings,
                         owns_log_dir=owns, memory=memory)


def calibrate(runtime, concurrent: bool, seconds: float) -> Calibration:
    """Median request latency and request rate of the loaded runtime, measured with bench's own loops."""
    cfg = BenchConfig(warmup=2, min_iters=5, min_time=seconds, max_time=max(30.0, 10 * seconds), energy="off",
                      idle_time=0)
    t0 = now_ns()
    if concurrent:
        n = runtime.parallel_requests()
        meas = measure_throughput(runtime.submit, n, replace(cfg, warmup=n, min_iters=max(5, 2 * n)), batch=1)
        runtime.wait_all()
    else:
        n = 1
        meas = measure(runtime.infer, cfg, batch=1, timer=Timer(runtime.sync))
    ms = sorted(s / 1e6 for s in meas.samples_ns)
    return Calibration(latency_ms=ms[len(ms) // 2], requests_per_s=meas.items_per_s, requests=n,
                       seconds=(now_ns() - t0) / 1e9)


def _describe(cfg: LoadgenConfig, s) -> str:
    sc = cfg.scenario
    what = {"server": f"Server at {s.server_target_qps:g} QPS, bound {s.server_target_latency_ns / 1e6:g} ms at "
                      f"p{s.server_target_latency_percentile * 100:g}",
            "offline": f"Offline, expecting {s.offline_expected_qps:.1f} samples/s",
            "multistream": f"MultiStream, {s.multi_stream_samples_per_query} samples per query",
            "singlestream": "SingleStream"}[sc]
    return f"LoadGen {what}, at least {s.min_duration_ms / 1000:g} s and {s.min_query_count} queries"


def _run_test(lg, sut: RuntimeSUT, settings, folder: Path, cfg: LoadgenConfig, *, step: int) -> LoadgenRun:
    """One StartTest call; its logs in ``folder``; the parsed result with this run's latencies."""
    folder.mkdir(parents=True, exist_ok=True)
    out = lg.LogOutputSettings()
    out.outdir = str(folder)
    out.copy_summary_to_stdout = False
    out.copy_detail_to_stdout = False
    log_settings = lg.LogSettings()
    log_settings.log_output = out
    log_settings.enable_trace = cfg.trace
    record = loadgen_settings_record(settings)
    sut_h = lg.ConstructSUT(sut.issue, sut.flush)
    qsl_h = lg.ConstructQSL(QSL_SIZE, QSL_SIZE, _noop, _noop)
    t0 = now_ns()
    try:
        # a name that does not exist: LoadGen would otherwise apply an audit.config found in the working folder
        lg.StartTestWithLogSettings(sut_h, qsl_h, settings, log_settings, str(folder / "no-audit.config"))
    finally:
        lg.DestroyQSL(qsl_h)
        lg.DestroySUT(sut_h)
        sut.drain()
    wall = (now_ns() - t0) / 1e9
    detail, summary = logs.read_run(folder)
    section = logs.result_section(detail, summary)
    steps = list(range(step, sut.step))  # the LoadGen runs of this test (FindPeakPerformance: several)
    lat = _latencies(folder, sut, steps, cfg, section)
    _fill_from_records(section, sut, steps, cfg)
    _fill_target(section, lat)
    section["reasons"] = logs.invalid_reasons(section, summary)
    return LoadgenRun(folder=folder, section=section, latencies=lat, settings=record, wall_s=wall)


def _fill_target(section: dict, lat: dict) -> None:
    """The latency at the target percentile: LoadGen reports it for 50/90/95/97/99/99.9 only; for another
    percentile it is computed from the raw latencies with LoadGen's own rule (and labelled so)."""
    t = section["target"]
    lp = (lat.get("stats") or {}).get("loadgen_percentile")
    if t.get("percentile") is not None and t.get("latency_at_percentile_ms") is None and lp:
        t["latency_at_percentile_ms"] = lp["value"]
        t["latency_at_percentile_source"] = f"the raw latencies ({lat['source'].split(':')[0]}), {lp['method']}"


def _noop(_ids) -> None:
    pass


def _trace_samples(folder: Path, cfg: LoadgenConfig) -> list[dict] | None:
    path = folder / logs.TRACE
    if not cfg.trace or not path.is_file():
        return None
    with open(path, errors="replace") as fh:
        return logs.parse_trace_samples(fh)


def _split(samples: list[dict], counts: list[int]) -> list[list[dict]] | None:
    """Trace samples (sample order) cut into consecutive runs of ``counts`` samples, or None if they do not add up."""
    if sum(counts) != len(samples):
        return None
    out, i = [], 0
    for n in counts:
        out.append(samples[i:i + n])
        i += n
    return out


def _latencies(folder: Path, sut: RuntimeSUT, steps: list[int], cfg: LoadgenConfig, section: dict,
               use_step: int | None = None) -> dict:
    """The raw latencies of the run whose result ``section`` is (``use_step``: which of ``steps``; default the
    last), from LoadGen's trace when it holds exactly the samples the SUT completed, else from the SUT."""
    use_step = steps[-1] if use_step is None and steps else use_step
    counts = [len(sut.step_records(s)) for s in steps]
    samples = _trace_samples(folder, cfg)
    note = None
    chunk = None
    if samples is not None:
        parts = _split(samples, counts)
        if parts is not None:
            chunk = parts[steps.index(use_step)]
        else:
            note = (f"LoadGen's trace holds {len(samples)} samples but the SUT completed {sum(counts)}: latencies from "
                    "the SUT's records instead")
    elif cfg.trace:
        note = "LoadGen wrote no trace: latencies from the SUT's records"
    if chunk is not None:
        sample_ms = [s["complete_ns"] / 1e6 for s in chunk]
        out = {"source": LATENCY_SOURCE_TRACE, "samples_ms": [round(v, 6) for v in sample_ms]}
        if cfg.scenario == "multistream":
            q = [v / 1e6 for v in logs.query_latencies_ns(chunk)]
            out["per_query_ms"] = [round(v, 6) for v in q]
        basis = out.get("per_query_ms") or out["samples_ms"]
    else:
        recs = sut.step_records(use_step) if use_step is not None else []
        sample_ms = [(c - i) / 1e6 for i, c in recs]
        out = {"source": LATENCY_SOURCE_SUT + ("" if cfg.trace else " (LoadGen's trace is off: --no-trace)"),
               "samples_ms": [round(v, 6) for v in sample_ms]}
        basis = out["samples_ms"]
        if cfg.scenario == "multistream":
            out["note_multistream"] = "per-sample only: the SUT's records do not group samples into queries"
    if note:
        out["note"] = note
    out["unit"] = "ms"
    if basis:
        st = summarize(basis, n_boot=1000, seed=cfg.seed)
        st["percentile_method"] = PERCENTILE_METHOD
        pct = section["target"].get("percentile")
        if pct is not None:
            st["loadgen_percentile"] = {"percentile": pct, "value": loadgen_percentile(basis, pct),
                                        "method": "LoadGen's nearest rank: sorted[floor(n * p)]"}
        out["stats"] = st
    return out


def _fill_from_records(section: dict, sut: RuntimeSUT, steps: list[int], cfg: LoadgenConfig) -> None:
    """MultiStream: LoadGen reports no rate; the achieved samples/s from the SUT's records."""
    if cfg.scenario != "multistream" or section.get("qps_achieved") is not None or not steps:
        return
    rate = _rate(sut.step_records(steps[-1]))
    section["qps_achieved"] = rate
    section["qps_achieved_source"] = "deploykit's SUT records: samples / (last completion - first issue)"


def _rate(recs: list[tuple[int, int]]) -> float | None:
    if len(recs) < 2:
        return None
    span = max(c for _, c in recs) - min(i for i, _ in recs)
    return len(recs) / (span / 1e9) if span > 0 else None


def _step_record(phase: str, qps: float, met: bool | None, chunk_ms: list[float], recs, pct: float,
                 source: str) -> dict:
    rec = {"phase": phase, "qps": qps, "met": met, "queries": len(recs), "achieved_qps": _rate(recs),
           "latency_ms": None, "latency_source": source}
    if chunk_ms:
        rec["latency_ms"] = {"p50": loadgen_percentile(chunk_ms, 50), "p90": loadgen_percentile(chunk_ms, 90),
                             "p99": loadgen_percentile(chunk_ms, 99),
                             "at_percentile": loadgen_percentile(chunk_ms, pct),
                             "max": max(chunk_ms)}
    return rec


def _loadgen_peak(lg, sut: RuntimeSUT, cfg: LoadgenConfig, cal: Calibration, name: str, log_dir: Path,
                  say: Say) -> tuple[LoadgenRun, dict]:
    """LoadGen's own FindPeakPerformance mode: one test, its steps read back from the detail log and split
    out of the trace (or the SUT's records) by LoadGen's end-of-run flushes."""
    settings = build_test_settings(lg, cfg, cal, model=name, find_peak=True)
    start = settings.server_target_qps
    say(f"LoadGen FindPeakPerformance from {start:g} QPS (bound {settings.server_target_latency_ns / 1e6:g} ms at "
        f"p{settings.server_target_latency_percentile * 100:g}; each step at least "
        f"{settings.min_duration_ms / 1000:g} s)")
    first = sut.step
    run = _run_test(lg, sut, settings, log_dir, cfg, step=first)
    detail, _ = logs.read_run(log_dir)
    steps, peak_qps, failure = logs.peak_steps_from_detail(detail)
    if failure:
        failure = (f"the starting QPS {start:g} already misses the latency bound (LoadGen: {failure}); start lower "
                   "with --qps or loosen --latency-bound")
    run_steps = list(range(first, sut.step))
    pct = settings.server_target_latency_percentile * 100
    note = None
    if len(run_steps) != len(steps):
        note = (f"LoadGen logged {len(steps)} steps but flushed {len(run_steps)} runs: per-step latencies not split")
        recs_by_step = [[] for _ in steps]
    else:
        recs_by_step = [sut.step_records(s) for s in run_steps]
    samples = _trace_samples(log_dir, cfg)
    parts = _split(samples, [len(r) for r in recs_by_step]) if samples is not None and note is None else None
    out_steps = []
    for i, st in enumerate(steps):
        recs = recs_by_step[i]
        if parts is not None:
            chunk, source = [s["complete_ns"] / 1e6 for s in parts[i]], "loadgen trace"
        else:
            chunk, source = [(c - t) / 1e6 for t, c in recs], "sut"
        out_steps.append(_step_record(st["phase"], st["qps"], st["met"], chunk, recs, pct, source))
    # the result LoadGen summarises is the run at the peak (the search's lower bound), or the failed start
    at = _index_of_peak(steps, peak_qps)
    if at is not None and note is None:
        run.latencies = _latencies(log_dir, sut, run_steps, cfg, run.section, use_step=run_steps[at])
    peak = _peak_section("loadgen", cfg, settings, start, peak_qps, failure, out_steps, note)
    return run, peak


def _index_of_peak(steps: list[dict], peak_qps: float | None) -> int | None:
    if not steps:
        return None
    if peak_qps is None:
        return 0  # the start failed: LoadGen summarises that run
    for i in range(len(steps) - 1, -1, -1):
        if steps[i]["met"] and abs(steps[i]["qps"] - peak_qps) <= 1e-6 * max(1.0, peak_qps):
            return i
    return None


def _bisect(lg, sut: RuntimeSUT, cfg: LoadgenConfig, cal: Calibration, name: str, log_dir: Path,
            say: Say) -> tuple[LoadgenRun, dict]:
    """deploykit's search (LoadGen's algorithm, peak.search_peak): one PerformanceOnly LoadGen test per step,
    each with its own log folder and full verdict."""
    base = build_test_settings(lg, cfg, cal, model=name, find_peak=False)
    start = base.server_target_qps
    runs: list[LoadgenRun] = []
    out_steps: list[dict] = []
    pct = base.server_target_latency_percentile * 100

    def run_at(qps: float) -> bool:
        n = len(runs) + 1
        settings = build_test_settings(lg, cfg, cal, model=name, qps=qps, find_peak=False)
        say(f"peak search step {n}: LoadGen Server at {qps:g} QPS")
        folder = log_dir / f"step-{n:02d}-{qps:.6g}qps"
        r = _run_test(lg, sut, settings, folder, cfg, step=sut.step)
        runs.append(r)
        met = bool(r.section["constraints"].get("performance"))
        basis = r.latencies.get("samples_ms") or []
        src = "loadgen trace" if r.latencies["source"] == LATENCY_SOURCE_TRACE else "sut"
        rec = _step_record("", qps, met, basis, sut.step_records(sut.step - 1), pct, src)
        rec.update(valid=r.section["valid"], qps_scheduled=r.section["qps_scheduled"],
                   qps_achieved=r.section["qps_achieved"], log_dir=folder.name)
        out_steps.append(rec)
        return met

    search = search_peak(run_at, start, step_size=base.server_find_peak_qps_boundary_step_size,
                         decimals=cfg.peak_decimals)
    for rec, st in zip(out_steps, search.steps):
        rec["phase"] = st["phase"]
    at = _index_of_peak(search.steps, search.peak_qps)
    run = runs[at if at is not None else -1]
    peak = _peak_section("bisect", cfg, base, start, search.peak_qps, search.failure, out_steps, None)
    return run, peak


def _peak_section(method: str, cfg: LoadgenConfig, settings, start: float, peak_qps, failure, steps, note) -> dict:
    return {
        "method": method,
        "method_description": ("LoadGen's FindPeakPerformance mode (one test; steps read from its detail log)"
                               if method == "loadgen" else
                               "deploykit's bisection: LoadGen's algorithm, one PerformanceOnly LoadGen test per step"),
        "criterion": (f"the run's p{settings.server_target_latency_percentile * 100:g} latency is within "
                      f"{settings.server_target_latency_ns / 1e6:g} ms (LoadGen's performance constraint; early "
                      "stopping and the minimum duration are not part of it)"),
        "qps": peak_qps,
        "start_qps": start,
        "latency_bound_ms": settings.server_target_latency_ns / 1e6,
        "percentile": settings.server_target_latency_percentile * 100,
        "decimals": cfg.peak_decimals,
        "step_size": settings.server_find_peak_qps_boundary_step_size,
        "step_duration_s": settings.min_duration_ms / 1000,
        "steps": steps,
        "failure": failure,
        "note": note,
    }


def _raise_sut_errors(sut: RuntimeSUT, target: str) -> None:
    if sut.errors:
        first = sut.errors[0]
        raise InputError(f"target {target} failed {len(sut.errors)} time(s) during the LoadGen run: "
                         f"{type(first).__name__}: {squash(first, 200)}")


def _warnings(cfg: LoadgenConfig, run: LoadgenRun, fid: dict, options: RuntimeOptions, precision: str,
              info: dict) -> list[str]:
    w = []
    if fid.get("passed") is False:
        w.append(f"outputs do not match the reference ({fid['reference']}): {fid['reason']}")
    if options.precision and precision != options.precision:
        w.append(info.get("precision_note") or f"--precision {options.precision} was requested but {precision} ran")
    if run.latencies.get("note"):
        w.append(run.latencies["note"])
    for e in run.section.get("errors", []):
        w.append(f"LoadGen: {e}")
    q = run.section.get("query_count")
    if isinstance(q, int) and cfg.scenario != "offline" and q < 100:
        w.append(f"only {q} queries: LoadGen's tail percentiles rest on few samples (raise --duration / --min-queries)")
    return w


def keep_logs(src: Path, dest: Path) -> list[str]:
    """Copy LoadGen's log folder ``src`` to ``dest`` (a new folder, written whole or not at all): the summary,
    detail and accuracy logs as they are, the trace gzip-compressed (it grows ~1 kB per sample). Returns the
    files kept, relative to ``dest``."""
    import gzip

    from deploykit.core.atomic import ensure_dir

    dest = Path(dest)
    ensure_dir(dest.parent)
    if dest.exists():
        raise InputError(f"{dest} exists already")
    tmp = Path(tempfile.mkdtemp(prefix=tmp_prefix(dest.name[:150]) + ".", dir=dest.parent))
    kept = []
    try:
        for f in sorted(p for p in Path(src).rglob("*") if p.is_file()):
            rel = f.relative_to(src)
            if f.name.endswith(".config"):
                continue
            target = tmp / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            if f.name == logs.TRACE:
                target = target.with_name(target.name + ".gz")
                with open(f, "rb") as fi, gzip.open(target, "wb", compresslevel=6) as fo:
                    shutil.copyfileobj(fi, fo)
            else:
                shutil.copyfile(f, target)
            kept.append(str(target.relative_to(tmp)))
        tmp.rename(dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return kept


def save(result: LoadgenResult, out_dir: Path) -> tuple[dict, list[Path]]:
    """Write the report as ``<stem>.json`` and ``<stem>.md`` in ``out_dir``, LoadGen's logs beside them in
    ``<stem>.loadgen/`` (each written whole or not at all); returns the report and the paths written."""
    from deploykit.core.atomic import ensure_dir, write_json, write_text
    from deploykit.report.loadgen import build_report, loadgen_stem, to_markdown

    out_dir = ensure_dir(Path(out_dir))
    base = loadgen_stem(build_report(result))
    stem, n = base, 1
    while any((out_dir / f"{stem}{ext}").exists() for ext in (".json", ".md", ".loadgen")):
        n += 1
        stem = f"{base}-{n}"
    files = keep_logs(result.log_dir, out_dir / f"{stem}.loadgen")
    report = build_report(result, logs_dir=f"{stem}.loadgen", log_files=files)
    paths = [write_json(out_dir / f"{stem}.json", report), write_text(out_dir / f"{stem}.md", to_markdown(report))]
    return report, paths + [out_dir / f"{stem}.loadgen"]
