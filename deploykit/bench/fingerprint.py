"""Environment fingerprint stored in every report: what machine and software produced the numbers.

``comparable_key`` is the subset that must match for two reports' latencies to be compared directly
(CPU model and ISA flags, cores/threads, OS kernel, runtime version, GPU/driver when present).
"""

from __future__ import annotations

import hashlib
import os
import platform
import socket
import subprocess
from functools import lru_cache
from pathlib import Path

from deploykit import __version__
from deploykit.core.config import available_cores
from deploykit.core.lazy import version_of

# ISA flags that change inference speed (x86 and Arm names)
_FLAGS_OF_INTEREST = (
    "sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx512_bf16",
    "avx512_fp16", "avx_vnni", "amx_tile", "amx_bf16", "amx_int8", "amx_fp16", "asimd", "asimddp", "asimdhp", "sve",
    "i8mm", "bf16",
)

RUNTIME_PACKAGES = ("onnxruntime", "openvino", "tensorrt", "torch", "onnx", "nncf", "pynvml")


def _read(path: str) -> str | None:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return None


@lru_cache(maxsize=1)
def cpu_info() -> dict:
    text = _read("/proc/cpuinfo") or ""
    model = vendor = family = None
    flags: list[str] = []
    physical = set()
    phys_id = None
    for line in text.splitlines():
        key, _, val = line.partition(":")
        key, val = key.strip(), val.strip()
        if key in ("model name", "Model", "Hardware") and model is None:
            model = val
        elif key in ("vendor_id", "CPU implementer") and vendor is None:
            vendor = val
        elif key in ("cpu family", "CPU architecture") and family is None:
            family = _int_or_none(val)
        elif key in ("flags", "Features") and not flags:
            flags = val.split()
        elif key == "physical id":
            phys_id = val
        elif key == "core id":
            physical.add((phys_id, val))
    model = model or platform.processor() or platform.machine()
    return {
        "model": model,
        "vendor": vendor,
        "family": family,  # x86 "cpu family" (AMD 25 = Zen 3/4, 26 = Zen 5), Arm "CPU architecture"
        "arch": platform.machine(),
        "logical_cores": os.cpu_count(),
        "physical_cores": len(physical) or None,
        "usable_cores": available_cores(),
        "isa": [f for f in _FLAGS_OF_INTEREST if f in flags],
        "flags_sha256": hashlib.sha256(" ".join(sorted(flags)).encode()).hexdigest()[:16] if flags else None,
        "governor": _read("/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor"),
        "cur_freq_mhz": _int_or_none(_read("/sys/devices/system/cpu/cpu0/cpufreq/scaling_cur_freq"), 1000),
    }


CPUFREQ = Path("/sys/devices/system/cpu")


def cpu_frequency(root: Path = CPUFREQ, cpuinfo: str | None = None) -> dict:
    """Governor and current frequency of every usable CPU, read now (not cached: telemetry reads it at the
    start and the end of a run). Without a cpufreq driver (usual in VMs) says so and falls back to the
    "cpu MHz" lines of /proc/cpuinfo, which a hypervisor may report as a fixed nominal value."""
    try:
        cpus = sorted(os.sched_getaffinity(0))
    except AttributeError:
        cpus = list(range(os.cpu_count() or 1))
    governors, freqs = set(), []
    for c in cpus:
        base = Path(root) / f"cpu{c}" / "cpufreq"
        gov = _read(str(base / "scaling_governor"))
        if gov:
            governors.add(gov)
        f = _int_or_none(_read(str(base / "scaling_cur_freq")), 1000)
        if f is not None:
            freqs.append(f)
    out: dict = {"governors": sorted(governors), "cur_freq_mhz": freqs, "readable": bool(freqs or governors)}
    if freqs:
        out.update(min_mhz=min(freqs), max_mhz=max(freqs))
        out["max_freq_mhz"] = _int_or_none(_read(str(Path(root) / f"cpu{cpus[0]}" / "cpufreq" / "cpuinfo_max_freq")),
                                           1000)
    else:
        out["reason"] = f"{Path(root)}/cpu*/cpufreq is not readable (no cpufreq driver; usual in VMs and containers)"
        text = cpuinfo if cpuinfo is not None else (_read("/proc/cpuinfo") or "")
        mhz = [float(v) for k, _, v in (ln.partition(":") for ln in text.splitlines()) if k.strip() == "cpu MHz"]
        if mhz:
            out["cpuinfo_mhz"] = [round(m) for m in mhz]
            out["cpuinfo_note"] = "/proc/cpuinfo 'cpu MHz' (may be a fixed nominal value under a hypervisor)"
    return out


def _int_or_none(text: str | None, div: int = 1):
    try:
        return int(text) // div if text is not None else None
    except ValueError:
        return None


@lru_cache(maxsize=4)
def git_sha(root: Path | None = None) -> dict:
    """The git commit deploykit itself runs from (when installed from a checkout), and whether tracked files differ
    from it. Read without taking ``.git/index.lock`` (``git --no-optional-locks``: a plain ``git status`` refreshes
    the index under that lock, and a ``git commit`` running at the same moment fails on it)."""
    from deploykit.core.child import die_with_parent

    root = Path(root) if root is not None else Path(__file__).resolve().parents[2]
    if not (root / ".git").exists():
        return {"sha": None, "dirty": None}
    git = ["git", "--no-optional-locks", "-C", str(root)]
    env = {**os.environ, "GIT_OPTIONAL_LOCKS": "0"}
    try:
        proc = subprocess.run([*git, "rev-parse", "--verify", "-q", "HEAD"], capture_output=True, text=True,
                              timeout=5, env=env, preexec_fn=die_with_parent)
        sha = proc.stdout.strip() if proc.returncode == 0 else None
        dirty = bool(subprocess.run([*git, "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                                    text=True, timeout=5, env=env, preexec_fn=die_with_parent).stdout.strip())
    except (OSError, subprocess.SubprocessError):
        return {"sha": None, "dirty": None}
    return {"sha": sha, "dirty": dirty}


def fingerprint(threads: int | None = None, extra: dict | None = None) -> dict:
    fp = {
        "host": socket.gethostname(),  # the machine (a cluster's node) that made the numbers
        "cpu": cpu_info(),
        "threads": threads,
        "os": {"system": platform.system(), "release": platform.release(), "platform": platform.platform()},
        "python": platform.python_version(),
        "packages": {p: version_of(p) for p in RUNTIME_PACKAGES},
        "deploykit": {"version": __version__, **git_sha()},
    }
    if extra:
        fp.update(extra)
    return fp


def machine_id(fp: dict | None = None) -> str:
    """A short stable id of this machine and its inference software (CPU model and flags, usable cores, ONNX
    Runtime and OpenVINO versions): what a measured GEMM peak depends on (``deploykit peak`` caches per id)."""
    import json

    fp = fp or fingerprint()
    cpu, pkg = fp.get("cpu", {}), fp.get("packages", {})
    key = {"cpu": cpu.get("model"), "flags": cpu.get("flags_sha256"), "arch": cpu.get("arch"),
           "usable_cores": cpu.get("usable_cores"), "logical_cores": cpu.get("logical_cores"),
           "onnxruntime": pkg.get("onnxruntime"), "openvino": pkg.get("openvino")}
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12]


def comparable_key(fp: dict, target: str | None = None) -> dict:
    """The fields that must match for latencies from two reports to be compared as like for like."""
    pkg = fp.get("packages", {})
    key = {
        "cpu": fp.get("cpu", {}).get("model"),
        "isa": fp.get("cpu", {}).get("flags_sha256"),
        "usable_cores": fp.get("cpu", {}).get("usable_cores"),
        "threads": fp.get("threads"),
        "onnxruntime": pkg.get("onnxruntime"),
        "openvino": pkg.get("openvino"),
        "tensorrt": pkg.get("tensorrt"),
    }
    if fp.get("gpu"):
        key["gpu"] = fp["gpu"].get("name")
        key["driver"] = fp["gpu"].get("driver")
    return key


def mismatches(a: dict, b: dict) -> list[str]:
    """Human-readable differences between two fingerprints' comparable keys: what differs, in words (the CPU
    flags by name, not the hashes of the flag sets)."""
    ka, kb = comparable_key(a), comparable_key(b)
    out = []
    for k in sorted(set(ka) | set(kb)):
        if ka.get(k) == kb.get(k):
            continue
        out.append(_isa_difference(a, b) if k == "isa" else f"{k}: {ka.get(k)} vs {kb.get(k)}")
    return out


def _isa_difference(a: dict, b: dict) -> str:
    """The CPU flag sets differ: the instruction-set extensions (of those deploykit tracks) only one side has."""
    fa, fb = (set((fp.get("cpu") or {}).get("isa") or ()) for fp in (a, b))
    only_a, only_b = sorted(fa - fb), sorted(fb - fa)
    if not only_a and not only_b:
        return ("isa: the CPU flag sets differ, but not in the extensions deploykit tracks "
                f"({', '.join(sorted(fa)) or 'none recorded'} on both)")
    return (f"isa: only the first has {', '.join(only_a) or 'nothing extra'}; only the second has "
            f"{', '.join(only_b) or 'nothing extra'}")
