"""Device telemetry recorded at the start and at the end of a measurement: what state the hardware was in.

GPU (NVML, NVIDIA only): name, driver and CUDA driver versions, SM / memory clocks (current and max),
temperature, power draw and limit, performance state, utilisation, and the active clock-throttle reasons
decoded by name. CPU: governor and current frequency per usable core where readable
(``fingerprint.cpu_frequency``). Anything unreadable is recorded with the reason, never guessed.

The NVML module is injectable (``nvml=``) so the decoding is tested without a GPU.
"""

from __future__ import annotations

import time

from deploykit.core.errors import squash
from deploykit.core.lazy import extra_hint
from deploykit.bench.fingerprint import cpu_frequency

# nvml.h: nvmlClocksEventReason* / nvmlClocksThrottleReason* bits
THROTTLE_REASONS = {
    0x1: "gpu_idle",
    0x2: "applications_clocks_setting",
    0x4: "sw_power_cap",
    0x8: "hw_slowdown",
    0x10: "sync_boost",
    0x20: "sw_thermal_slowdown",
    0x40: "hw_thermal_slowdown",
    0x80: "hw_power_brake_slowdown",
    0x100: "display_clock_setting",
}
# reasons that mean the clocks were held down by something other than idleness: worth a warning
THROTTLING = {"sw_power_cap", "hw_slowdown", "sw_thermal_slowdown", "hw_thermal_slowdown", "hw_power_brake_slowdown"}


def decode_throttle(mask: int) -> list[str]:
    names = [name for bit, name in THROTTLE_REASONS.items() if mask & bit]
    unknown = mask & ~sum(THROTTLE_REASONS)
    if unknown:
        names.append(f"other(0x{unknown:x})")
    return names


def _text(v) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


def _try(fn, *args):
    try:
        return fn(*args)
    except Exception:
        return None


def gpu_snapshot(index: int, nvml=None) -> dict:
    """NVML state of GPU ``index``; ``{"available": False, "reason": ...}`` when NVML cannot be used."""
    nv = nvml
    if nv is None:
        try:
            import pynvml as nv  # package nvidia-ml-py
        except ImportError:
            return {"available": False, "reason": f"nvidia-ml-py is not installed ({extra_hint('nvidia')})"}
    try:
        nv.nvmlInit()
    except Exception as exc:
        return {"available": False, "reason": f"NVML cannot initialise: {squash(exc)}"}
    try:
        try:
            h = nv.nvmlDeviceGetHandleByIndex(index)
        except Exception as exc:
            return {"available": False, "reason": f"no GPU {index}: {squash(exc)}"}
        snap: dict = {"available": True, "index": index, "name": _text(nv.nvmlDeviceGetName(h))}
        snap["driver"] = _try(lambda: _text(nv.nvmlSystemGetDriverVersion()))
        cuda = _try(nv.nvmlSystemGetCudaDriverVersion)
        snap["cuda_driver"] = f"{cuda // 1000}.{cuda % 1000 // 10}" if isinstance(cuda, int) else None
        sm, mem = getattr(nv, "NVML_CLOCK_SM", 1), getattr(nv, "NVML_CLOCK_MEM", 2)
        snap["clocks_mhz"] = {"sm": _try(nv.nvmlDeviceGetClockInfo, h, sm),
                              "mem": _try(nv.nvmlDeviceGetClockInfo, h, mem),
                              "sm_max": _try(nv.nvmlDeviceGetMaxClockInfo, h, sm),
                              "mem_max": _try(nv.nvmlDeviceGetMaxClockInfo, h, mem)}
        snap["temperature_c"] = _try(nv.nvmlDeviceGetTemperature, h, getattr(nv, "NVML_TEMPERATURE_GPU", 0))
        pw = _try(nv.nvmlDeviceGetPowerUsage, h)
        snap["power_w"] = pw / 1000 if pw is not None else None
        lim = _try(nv.nvmlDeviceGetEnforcedPowerLimit, h)
        snap["power_limit_w"] = lim / 1000 if lim is not None else None
        snap["pstate"] = _try(nv.nvmlDeviceGetPerformanceState, h)
        util = _try(nv.nvmlDeviceGetUtilizationRates, h)
        snap["utilization_pct"] = {"gpu": util.gpu, "memory": util.memory} if util is not None else None
        reader = getattr(nv, "nvmlDeviceGetCurrentClocksEventReasons", None) or getattr(
            nv, "nvmlDeviceGetCurrentClocksThrottleReasons", None)
        mask = _try(reader, h) if reader else None
        snap["throttle_mask"] = mask
        snap["throttle_reasons"] = decode_throttle(mask) if isinstance(mask, int) else None
        return snap
    finally:
        _try(nv.nvmlShutdown)


def snapshot(gpu_index: int | None = None, nvml=None) -> dict:
    snap = {"time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "cpu": cpu_frequency()}
    if gpu_index is not None:
        snap["gpu"] = gpu_snapshot(gpu_index, nvml=nvml)
    return snap


def telemetry_warnings(start: dict, end: dict) -> list[str]:
    """Warnings a reader should see: throttling during the run, a large clock or temperature drift."""
    w = []
    for when, snap in (("start", start), ("end", end)):
        g = snap.get("gpu") or {}
        bad = sorted(THROTTLING.intersection(g.get("throttle_reasons") or []))
        if bad:
            w.append(f"GPU clocks throttled at the {when} of the run: {', '.join(bad)}")
    g0, g1 = start.get("gpu") or {}, end.get("gpu") or {}
    s0, s1 = (g0.get("clocks_mhz") or {}).get("sm"), (g1.get("clocks_mhz") or {}).get("sm")
    if s0 and s1 and abs(s1 - s0) / max(s0, s1) > 0.1:
        w.append(f"GPU SM clock changed from {s0} to {s1} MHz during the run")
    c0, c1 = start["cpu"].get("cur_freq_mhz") or [], end["cpu"].get("cur_freq_mhz") or []
    if c0 and c1 and abs(max(c1) - max(c0)) / max(max(c0), max(c1)) > 0.1:
        w.append(f"CPU frequency changed from {max(c0)} to {max(c1)} MHz (max over cores) during the run")
    return w
