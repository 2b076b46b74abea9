"""This machine's GEMM peak per precision, measured with the runtimes deploykit benchmarks on, and the
efficiency of a benchmark against it.

``measure_peak`` times one MatMul per GEMM shape (M x K x N: A[M, K] . B[K, N], B a constant weight) on every
target that declares the PEAK capability, through the same timer (bench/timer.py), stop rule (bench/runner.py)
and statistics (bench/stats.py) as ``deploykit bench``. The kernels are the targets' own
(``Runtime.peak_kernels``, graphs in runtimes/gemm.py): ONNX Runtime fp32 ``MatMul`` and int8 ``MatMulInteger`` /
``QLinearMatMul``, OpenVINO fp32, bf16 / fp16 (measured where this CPU's ISA flags have them) and int8 (Q/DQ).
Per kernel and shape: p50 of the per-call times; GFLOP/s = 2 M K N / p50 (int8: GOP/s, the same count). The
precision's measured peak is the best over kernels, runtimes and shapes. A whole model can run faster than the
best single-shape GEMM here (a share above 100%): the shapes are a sample, not an upper bound.

``theoretical_peak``: cores used x clock x operations per cycle and core of the widest units the ISA flags
show (``PER_CYCLE_NOTES``, sources in docs/measurement.md). It is an upper bound nothing reaches, stated beside
the measured one.

Results are cached per machine (``fingerprint.machine_id``: CPU model and flags, cores, ONNX Runtime and
OpenVINO versions) and thread count in ``<models dir>/.cache/peak-<id>.json`` (functions here take that ``.cache``
folder); ``efficiency`` reads that cache.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from deploykit.bench.fingerprint import cpu_frequency, cpu_info, fingerprint, machine_id
from deploykit.core.config import available_cores

Say = Callable[[str], None]

SCHEMA = "deploykit.peak"
VERSION = 1

# (M, K, N, what layer it stands for)
SHAPES = (
    (3136, 576, 64, "ResNet stage-1 3x3 conv as im2col GEMM (56x56 px, 64 -> 64 channels)"),
    (784, 1152, 128, "ResNet stage-2 3x3 conv (28x28, 128 -> 128)"),
    (196, 2304, 256, "ResNet stage-3 3x3 conv (14x14, 256 -> 256)"),
    (197, 384, 1536, "ViT-S MLP fc1 (197 tokens, 384 -> 1536)"),
    (1024, 1024, 1024, "large square"),
)
QUICK_SHAPES = (
    (128, 128, 128, "quick: small square"),
    (197, 192, 384, "quick: ViT-Ti-like MLP"),
)


@dataclass(frozen=True)
class Timing:
    warmup: int = 5
    min_iters: int = 10
    min_time: float = 0.5
    max_time: float = 10.0


FULL_TIMING = Timing()
QUICK_TIMING = Timing(warmup=1, min_iters=3, min_time=0.02, max_time=1.0)


# ---- theoretical peak ----------------------------------------------------------------------------------------
def _vector_lanes(cpu: dict) -> tuple[int, str]:
    """fp32 lanes of the widest vector FMA the CPU executes at full rate, and why."""
    isa = set(cpu.get("isa") or [])
    if "avx512f" in isa:
        if (cpu.get("vendor") == "AuthenticAMD") and cpu.get("family") == 25:
            return 8, "AVX-512 on 256-bit datapaths (AMD family 25h, Zen 3/4: each 512-bit op issues as two halves)"
        return 16, "AVX-512"
    if "avx2" in isa or "avx" in isa:
        return 8, "AVX2" if "avx2" in isa else "AVX"
    return 4, "128-bit SIMD"


def per_cycle(cpu: dict, precision: str) -> tuple[float, str] | None:
    """Operations per cycle and core (1 multiply-accumulate = 2) for ``precision`` (fp32|int8|bf16|fp16) from a
    fingerprint's ``cpu`` dict (isa flags, vendor, family, arch), with the reasoning; None when the ISA has no
    native path for that precision (the runtime converts to fp32 then)."""
    isa = set(cpu.get("isa") or [])
    arm = (cpu.get("arch") or "").lower() in ("aarch64", "arm64")
    lanes, what = _vector_lanes(cpu)
    if precision == "fp32":
        if arm:
            return 16.0, "NEON: 2 FMA pipes x 4 fp32 lanes x 2 (Neoverse N1-class; V1/V2 have 4 pipes)"
        if "fma" in isa or "avx512f" in isa:
            return 2.0 * lanes * 2, f"{what} FMA: 2 FMA units x {lanes} fp32 lanes x 2 ops"
        return 2.0 * lanes, f"{what} without FMA: 1 multiply + 1 add unit x {lanes} fp32 lanes"
    if precision == "int8":
        if "amx_int8" in isa:
            return 2048.0, "AMX-INT8: 1024 int8 MACs per cycle per core (Intel AMX TMUL)"
        if arm:
            if "i8mm" in isa:
                return 128.0, "Arm I8MM: SMMLA 32 MACs per 128-bit instruction x 2 pipes x 2 ops"
            if "asimddp" in isa:
                return 64.0, "Arm dot product: SDOT 16 MACs per 128-bit instruction x 2 pipes x 2 ops"
            return None
        if "avx512_vnni" in isa and "avx512f" in isa:
            return 2.0 * lanes * 4 * 2, (f"{what} VNNI: vpdpbusd {lanes * 4} u8 x s8 MACs per instruction "
                                         "x 2 units x 2 ops")
        if "avx_vnni" in isa:
            return 128.0, "AVX-VNNI: vpdpbusd 32 u8 x s8 MACs per 256-bit instruction x 2 units x 2 ops"
        if "avx512bw" in isa or "avx2" in isa:
            width = lanes if "avx512bw" in isa else 8
            return 2.0 * width * 4 * 2 / 3, (f"{'AVX-512BW' if width == 16 else 'AVX2'} without VNNI: vpmaddubsw + "
                                             f"vpmaddwd + vpaddd, 3 instructions per {width * 4} u8 x s8 MACs on 2 "
                                             "units (1.33x fp32)")
        return None
    if precision == "bf16":
        if "amx_bf16" in isa:
            return 1024.0, "AMX-BF16: 512 bf16 MACs per cycle per core (Intel AMX TMUL)"
        if "avx512_bf16" in isa and not arm:
            return 2.0 * lanes * 2 * 2, f"{what} BF16: vdpbf16ps {lanes * 2} MACs per instruction x 2 units x 2 ops"
        return None
    if precision == "fp16":
        if "amx_fp16" in isa:
            return 1024.0, "AMX-FP16: 512 fp16 MACs per cycle per core (Intel AMX TMUL)"
        if "avx512_fp16" in isa:
            return 2.0 * lanes * 2 * 2, f"{what} FP16: 2 FMA units x {lanes * 2} fp16 lanes x 2 ops"
        if arm and "asimdhp" in isa:
            return 32.0, "NEON fp16: 2 FMA pipes x 8 fp16 lanes x 2 (Neoverse N1-class)"
        return None
    return None


def clock(freq: dict | None = None) -> tuple[float | None, str]:
    """(MHz, where it was read): cpufreq's cpuinfo_max_freq (boost included) where a cpufreq driver exists,
    else the highest 'cpu MHz' of /proc/cpuinfo (under a hypervisor often the nominal clock, not the boost)."""
    freq = freq if freq is not None else cpu_frequency()
    if freq.get("max_freq_mhz"):
        return float(freq["max_freq_mhz"]), "cpufreq cpuinfo_max_freq (the highest clock the driver reports)"
    if freq.get("cpuinfo_mhz"):
        return float(max(freq["cpuinfo_mhz"])), ("/proc/cpuinfo 'cpu MHz' (no cpufreq driver; under a hypervisor "
                                                 "often the nominal clock, not the boost clock)")
    return None, "no clock readable (neither cpufreq nor /proc/cpuinfo 'cpu MHz')"


def cores_used(cpu: dict, threads: int | None) -> int:
    """Cores a run on ``threads`` threads can keep busy: min(threads, usable logical CPUs, physical cores)."""
    usable = cpu.get("usable_cores") or available_cores()
    n = min(threads or usable, usable)
    if cpu.get("physical_cores"):
        n = min(n, cpu["physical_cores"])
    return max(1, n)


def theoretical_peak(cpu: dict, threads: int | None, precision: str, clock_mhz: float | None,
                     clock_source: str = "") -> dict | None:
    """cores used x clock x operations per cycle for ``precision`` (GFLOP/s; GOP/s for int8), with its basis."""
    pc = per_cycle(cpu, precision)
    if pc is None or not clock_mhz:
        return None
    ops, why = pc
    cores = cores_used(cpu, threads)
    return {"gflops": round(cores * clock_mhz * 1e6 * ops / 1e9, 1), "cores": cores, "clock_mhz": clock_mhz,
            "clock_source": clock_source, "ops_per_cycle": round(ops, 2), "basis": why}


def theoretical_all(threads: int | None, cpu: dict | None = None, freq: dict | None = None) -> dict:
    cpu = cpu or cpu_info()
    mhz, src = clock(freq)
    return {p: theoretical_peak(cpu, threads, p, mhz, src) for p in ("fp32", "int8", "bf16", "fp16")}


def peak_targets() -> tuple[str, ...]:
    """The targets with GEMM kernels to measure (the PEAK capability), in the order `deploykit targets` lists them."""
    from deploykit.runtimes.base import PEAK, ordered_targets

    return tuple(name for name, cls in ordered_targets() if cls.has(PEAK))


def _has_native(cpu: dict, precision: str) -> bool:
    return per_cycle(cpu, precision) is not None


# ---- measuring -------------------------------------------------------------------------------------------------
def _measure_shape(runtime_cls, kernel, m: int, k: int, n: int, threads: int, folder: Path, timing: Timing) -> dict:
    from deploykit.bench.runner import measure
    from deploykit.bench.stats import summarize
    from deploykit.bench.timer import Timer
    from deploykit.core.config import BenchConfig
    from deploykit.runtimes.base import DEVICE_TIMING

    runtime, ran = runtime_cls.gemm_session(kernel, m, k, n, threads, folder)
    try:
        timer = Timer(runtime.sync if runtime.has(DEVICE_TIMING) else None)
        timer.time_ns(runtime.infer)  # first call: lazy initialisation, not measured
        cfg = BenchConfig(warmup=timing.warmup, min_iters=timing.min_iters, min_time=timing.min_time,
                          max_time=timing.max_time, energy="off", bootstrap=200)
        meas = measure(runtime.infer, cfg, batch=1, timer=timer)
    finally:
        runtime.close()
    st = summarize([s / 1e6 for s in meas.samples_ns], n_boot=200, seed=0)
    flop = 2.0 * m * k * n
    return {"shape": f"{m}x{k}x{n}", "m": m, "k": k, "n": n, "p50_ms": round(st["p50"], 6),
            "median_ci95_ms": [round(v, 6) for v in st["median_ci95"]], "cv": round(st["cv"], 4),
            "iterations": st["n"], "gflops": round(flop / (st["p50"] / 1e3) / 1e9, 2), "ran": ran}


def _skip_reason(kernel, cpu: dict, unavailable: str | None) -> str | None:
    if unavailable:
        return unavailable
    if kernel.precision in ("bf16", "fp16") and not _has_native(cpu, kernel.precision):
        flags = "avx512_bf16 / amx_bf16" if kernel.precision == "bf16" else "avx512_fp16 / amx_fp16 / asimdhp"
        return f"this CPU has no {kernel.precision} instructions ({flags} not in its flags)"
    return None


ROUNDS = 3  # interleaved rounds over every kernel and shape: a load that comes and goes hits one round, not all
DISAGREE = 0.10  # rounds of a kernel's best shape further apart than this (range / median): re-measured once


def _combine(rows: list[dict]) -> dict:
    """One shape's rounds as one row: the round with the median p50 (its GFLOP/s), and every round's GFLOP/s."""
    mid = sorted(rows, key=lambda r: r["p50_ms"])[(len(rows) - 1) // 2]
    g = [r["gflops"] for r in rows]
    return {**mid, "rounds_gflops": g, "spread": round((max(g) - min(g)) / mid["gflops"], 4) if mid["gflops"] else 0.0}


def measure_peak(threads: int | None = None, targets: tuple[str, ...] | None = None, *, quick: bool = False,
                 say: Say | None = None, rounds: int = ROUNDS) -> dict:
    """Measure every kernel of ``targets`` (default: every target with the PEAK capability) on every shape at
    ``threads`` threads, in ``rounds`` interleaved rounds (each kernel and shape once per round, a round's stop
    rule 1/rounds of the time); a shape's figure is its median round, a kernel's best shape carries the range of
    its rounds, and a kernel whose best shape's rounds disagree by more than DISAGREE is measured for another
    ``rounds`` rounds, with a warning. Returns the cache entry."""
    from dataclasses import replace

    from deploykit.runtimes.base import get_runtime

    say = say or (lambda msg: None)
    cpu = cpu_info()
    threads = threads or available_cores()
    shapes, timing = (QUICK_SHAPES, QUICK_TIMING) if quick else (SHAPES, FULL_TIMING)
    rounds = max(1, rounds)
    per_round = replace(timing, min_time=timing.min_time / rounds)
    targets = tuple(t for t in peak_targets() if targets is None or t in targets)
    kernels: list[dict] = []
    work = []  # (entry index, runtime class, kernel)
    for target in targets:
        runtime_cls = get_runtime(target)
        av = runtime_cls.availability()
        unavailable = None if av.available else f"target {target} is unavailable here: {av.reason}"
        for kernel in runtime_cls.peak_kernels():
            rec = {"target": target, "kernel": kernel.name, "requested": kernel.precision}
            why = _skip_reason(kernel, cpu, unavailable)
            if why:
                say(f"{target} {kernel.name}: skipped ({why})")
                kernels.append({**rec, "precision": kernel.precision, "skipped": why})
                continue
            work.append((len(kernels), runtime_cls, kernel))
            kernels.append(rec)
    measured: dict[int, list[list[dict]]] = {i: [[] for _ in shapes] for i, _, _ in work}
    warnings: list[str] = []
    from deploykit.core.atomic import run_dir

    with run_dir(None, "peak") as tmp:  # the one scheme of temporary folders: a killed run's is swept next time

        def one_round(items, r: int) -> None:
            for i, runtime_cls, kernel in items:
                for j, (m, k, n, _what) in enumerate(shapes):
                    row = _measure_shape(runtime_cls, kernel, m, k, n, threads, Path(tmp), per_round)
                    say(f"round {r + 1}: {kernels[i]['target']} {kernel.name} {row['shape']}: {row['gflops']:.1f} "
                        f"{'GOP/s' if kernel.precision == 'int8' else 'GFLOP/s'} (p50 {row['p50_ms']:.3f} ms)")
                    measured[i][j].append(row)

        for r in range(rounds):
            one_round(work, r)
        again = [w for w in work if max(_combine(rs)["spread"] for rs in measured[w[0]]) > DISAGREE]
        if again:
            for w in again:
                warnings.append(f"{kernels[w[0]]['target']} {w[2].name}: its rounds disagreed by more than "
                                f"{DISAGREE:.0%} (the machine was busy in some of them); measured {rounds} more")
                say("warning: " + warnings[-1])
            for r in range(rounds):
                one_round(again, rounds + r)
    for i, _runtime_cls, kernel in work:
        rows = [_combine(rs) for rs in measured[i]]
        ran = {r["ran"] for r in rows}
        precision = rows[0]["ran"] if len(ran) == 1 else kernel.precision
        best = max(rows, key=lambda r: r["gflops"])
        entry = {**kernels[i], "precision": precision, "shapes": rows, "best_gflops": best["gflops"],
                 "best_shape": best["shape"], "best_range": [min(best["rounds_gflops"]), max(best["rounds_gflops"])],
                 "rounds": len(best["rounds_gflops"])}
        if best["spread"] > DISAGREE:
            warnings.append(f"{entry['target']} {kernel.name}: rounds still {best['spread']:.0%} apart at "
                            f"{best['shape']} ({', '.join(f'{g:g}' for g in best['rounds_gflops'])}); measure the "
                            "peak again on a quiet machine (deploykit peak --force)")
        if precision != kernel.precision:
            entry["note"] = (f"{kernel.precision} was asked for but {', '.join(sorted(map(str, ran)))} ran "
                             "(read back from the runtime): counted as what ran")
        kernels[i] = entry
    out = _entry(threads, targets, quick, timing, shapes, kernels, cpu)
    out["rounds"] = rounds
    out["warnings"] = warnings + out["warnings"]
    return out


def _entry(threads, targets, quick, timing, shapes, kernels, cpu) -> dict:
    best, theo = best_per_precision(kernels), theoretical_all(threads, cpu)
    return {
        "threads": threads,
        "targets": list(targets),
        "quick": quick,
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "shapes": [{"shape": f"{m}x{k}x{n}", "what": what} for m, k, n, what in shapes],
        "timing": {"warmup": timing.warmup, "min_iters": timing.min_iters, "min_time_s": timing.min_time,
                   "max_time_s": timing.max_time,
                   "method": "deploykit's bench timer (time.perf_counter_ns around each synchronous inference) and "
                             "stop rule, one MatMul graph per shape loaded in the target's Runtime; GFLOP/s = "
                             "2 M K N / p50 of the per-call times (int8: GOP/s, the same count)"},
        "kernels": kernels,
        "best": best,
        "theoretical": theo,
        "warnings": clock_warnings(best, theo),
        "note": "best over kernels, runtimes and GEMM shapes; a whole model can exceed it (a share above 100%): the "
                "shapes are a sample of layer shapes, not an upper bound",
    }


def clock_warnings(best: dict, theoretical: dict) -> list[str]:
    """A measured peak above the theoretical one means the clock read is below the clock the cores really run at
    (usual under a hypervisor, whose /proc/cpuinfo shows the nominal clock): say so, with the clock implied."""
    out = []
    for p, b in best.items():
        th = theoretical.get(p)
        if th and b["gflops"] > th["gflops"]:
            implied = b["gflops"] * 1e3 / (th["cores"] * th["ops_per_cycle"])
            out.append(f"measured {p} ({b['gflops']:g}) exceeds the theoretical peak ({th['gflops']:g}) computed at "
                       f"{th['clock_mhz']:g} MHz: the cores run at >= {implied:.0f} MHz (boost), so the theoretical "
                       f"figures here are low and shares of them high")
    return out


def best_per_precision(kernels: list[dict]) -> dict:
    best: dict = {}
    for kern in kernels:
        if kern.get("skipped") or not kern.get("shapes"):
            continue
        p = kern["precision"]
        if p not in best or kern["best_gflops"] > best[p]["gflops"]:
            best[p] = {"gflops": kern["best_gflops"], "target": kern["target"], "kernel": kern["kernel"],
                       "shape": kern["best_shape"], "range": kern.get("best_range"), "rounds": kern.get("rounds")}
    return best


# ---- the cache -------------------------------------------------------------------------------------------------
# what a cache file must look like to be used (else it is absent and measured again): a CPU's GEMM peak is far
# below 10^6 GFLOP/s and far above 0.01, and every number finite (core.validate.read_cache_json)
_GFLOPS = {"type": "number", "minimum": 0.01, "maximum": 1e6}
CACHE_SCHEMA = {
    "type": "object", "required": ["schema", "version", "entries"],
    "properties": {"entries": {"type": "object", "additionalProperties": {
        "type": "object", "required": ["threads", "best"],
        "properties": {"threads": {"type": "integer", "minimum": 1, "maximum": 65536},
                       "best": {"type": "object", "additionalProperties": {
                           "type": "object", "required": ["gflops", "target", "kernel", "shape"],
                           "properties": {"gflops": _GFLOPS, "target": {"type": "string"},
                                          "kernel": {"type": "string"}, "shape": {"type": "string"}}}}}}}},
}
def cache_path(cache_dir: Path, mid: str | None = None) -> Path:
    """``<cache_dir>/peak-<machine id>.json``; ``cache_dir`` is the artifact store's ``.cache`` folder."""
    return Path(cache_dir) / f"peak-{mid or machine_id()}.json"


def load_cache(cache_dir: Path, mid: str | None = None) -> dict | None:
    from deploykit.core.validate import read_cache_json

    # guarded: a link, a FIFO, a device, an oversized file, NaN / Infinity or a shape other than ours is absent
    data = read_cache_json(cache_path(cache_dir, mid), max_bytes=4 * 1024 * 1024, schema=CACHE_SCHEMA)
    if not isinstance(data, dict) or data.get("schema") != SCHEMA or data.get("version") != VERSION:
        return None
    return data


def cached_entry(cache_dir: Path, threads: int) -> dict | None:
    data = load_cache(cache_dir)
    return (data or {}).get("entries", {}).get(str(threads))


def save_entry(cache_dir: Path, entry: dict) -> Path:
    """Store ``entry`` (one thread count) in this machine's cache file (atomic write), keeping the others."""
    from deploykit.core.atomic import write_json

    fp = fingerprint()
    mid = machine_id(fp)
    data = load_cache(cache_dir, mid) or {"schema": SCHEMA, "version": VERSION, "machine_id": mid, "entries": {}}
    data["machine"] = {"cpu": fp["cpu"].get("model"), "isa": fp["cpu"].get("isa"),
                       "usable_cores": fp["cpu"].get("usable_cores"),
                       "onnxruntime": fp["packages"].get("onnxruntime"), "openvino": fp["packages"].get("openvino")}
    data["entries"][str(entry["threads"])] = entry
    path = cache_path(cache_dir, mid)
    write_json(path, data)
    return path


def peak(cache_dir: Path, threads: int | None = None, targets: tuple[str, ...] | None = None, *,
         force: bool = False, quick: bool = False, say: Say | None = None) -> tuple[dict, bool, Path]:
    """This machine's peak at ``threads`` threads: the cached entry when it covers ``targets`` (default: every
    target with the PEAK capability; a quick entry only stands in for a quick request), else measured and cached.
    Returns (entry, from cache, cache file). Kernels of targets not measured now are kept from the cached entry."""
    threads = threads or available_cores()
    targets = peak_targets() if targets is None else tuple(targets)
    old = None if force else cached_entry(cache_dir, threads)
    if old is not None and set(targets) <= set(old.get("targets", [])) and (quick or not old.get("quick")):
        return old, True, cache_path(cache_dir)
    entry = measure_peak(threads, targets, quick=quick, say=say)
    prev = cached_entry(cache_dir, threads)
    if prev is not None and bool(prev.get("quick")) == quick:
        kept = [k for k in prev.get("kernels", []) if k["target"] not in targets]
        if kept:
            entry["kernels"] = kept + entry["kernels"]
            entry["targets"] = sorted(set(entry["targets"]) | {k["target"] for k in kept})
            entry["best"] = best_per_precision(entry["kernels"])
            entry["warnings"] = clock_warnings(entry["best"], entry["theoretical"])
    return entry, False, save_entry(cache_dir, entry)


# ---- efficiency of one benchmark -----------------------------------------------------------------------------
def efficiency(*, macs: int, batch: int, p50_ms: float, items_per_s: float | None = None, mode: str = "latency",
               precision: str, threads: int | None, gpu: bool = False, cache_dir: Path,
               cpu: dict | None = None, freq: dict | None = None) -> dict:
    """The report's ``efficiency``: achieved GFLOP/s (2 x MACs x batch / p50; throughput mode: 2 x MACs x
    items/s) and its share of this machine's measured peak (the cache of ``deploykit peak`` for the run's
    precision and thread count) and of the theoretical peak."""
    if mode == "throughput" and items_per_s:
        gflops = 2.0 * macs * items_per_s / 1e9
        basis = "2 x MACs per item x items/s (throughput mode: requests overlap, p50 is per request)"
    else:
        gflops = 2.0 * macs * batch / (p50_ms / 1e3) / 1e9
        basis = "2 x MACs per item x batch / p50"
    out = {"gflops": round(gflops, 3), "precision": precision, "basis": basis, "peak_measured_gflops": None,
           "peak_theoretical_gflops": None, "share_of_measured": None, "share_of_theoretical": None}
    if gpu:
        out["peak_source"] = "a GPU run: deploykit peak measures CPU GEMMs only; no peak to compare with"
        return out
    threads = threads or available_cores()
    th = theoretical_all(threads, cpu, freq).get(precision)
    if th:
        out["peak_theoretical_gflops"] = th["gflops"]
        out["share_of_theoretical"] = round(gflops / th["gflops"], 4)
        out["theoretical_basis"] = (f"{th['cores']} cores x {th['clock_mhz']:g} MHz x {th['ops_per_cycle']:g} "
                                    f"ops/cycle ({th['basis']}; clock: {th['clock_source']})")
    entry = cached_entry(cache_dir, threads)
    if entry is None:
        out["peak_source"] = (f"no measured peak for this machine at {threads} threads: run "
                              f"`deploykit peak --threads {threads}`")
        return out
    best = entry.get("best", {}).get(precision)
    if best is None:
        have = ", ".join(sorted(entry.get("best", {}))) or "none"
        out["peak_source"] = f"no measured {precision} peak in this machine's cache (it has: {have})"
        return out
    out["peak_measured_gflops"] = best["gflops"]
    out["share_of_measured"] = round(gflops / best["gflops"], 4)
    if th and best["gflops"] > th["gflops"]:
        out["theoretical_basis"] += (f"; the measured peak {best['gflops']:g} exceeds it: the clock read is below "
                                     "the clock the cores run at, so this share is too high")
    rng = best.get("range")
    if rng and best.get("gflops"):
        half = (rng[1] - rng[0]) / 2 / best["gflops"]
        noise = f", rounds {rng[0]:g}-{rng[1]:g} ({best.get('rounds')} rounds, +-{half:.0%})"
    else:
        noise = ", one round (no spread known: re-measure with `deploykit peak --force`)"
    out["peak_measured_at"] = entry.get("measured_at")
    out["peak_range_gflops"] = rng
    out["peak_source"] = (f"measured by `deploykit peak` {entry.get('measured_at', '')[:10]}{noise}"
                          f"{' (--quick: small shapes, not a real peak)' if entry.get('quick') else ''}: "
                          f"{best['target']} {best['kernel']} at {best['shape']}, {threads} threads, best over "
                          f"{len(entry.get('shapes', []))} GEMM shapes ({cache_path(cache_dir)})")
    return out
