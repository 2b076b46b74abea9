"""Environment fingerprint stored in every report: what machine and software produced the numbers.

``comparable_key`` is the subset that must match for two reports' latencies to be compared directly
(CPU model and ISA flags, cores/threads, OS kernel, runtime version, GPU/driver when present).
"""

from __future__ import annotations

import hashlib
import os
import platform
import subprocess
from functools import lru_cache
from pathlib import Path

from deploykit import __version__
from deploykit.core.config import available_cores
from deploykit.core.lazy import version_of

# ISA flags that change inference speed (x86 and Arm names)
_FLAGS_OF_INTEREST = (
    "sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx512_bf16",
    "avx512_fp16", "avx_vnni", "amx_tile", "amx_bf16", "amx_int8", "asimd", "asimddp", "sve", "i8mm", "bf16",
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
    model = None
    flags: list[str] = []
    physical = set()
    phys_id = None
    for line in text.splitlines():
        key, _, val = line.partition(":")
        key, val = key.strip(), val.strip()
        if key in ("model name", "Model", "Hardware") and model is None:
            model = val
        elif key in ("flags", "Features") and not flags:
            flags = val.split()
        elif key == "physical id":
            phys_id = val
        elif key == "core id":
            physical.add((phys_id, val))
    model = model or platform.processor() or platform.machine()
    return {
        "model": model,
        "arch": platform.machine(),
        "logical_cores": os.cpu_count(),
        "physical_cores": len(physical) or None,
        "usable_cores": available_cores(),
        "isa": [f for f in _FLAGS_OF_INTEREST if f in flags],
        "flags_sha256": hashlib.sha256(" ".join(sorted(flags)).encode()).hexdigest()[:16] if flags else None,
        "governor": _read("/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor"),
        "cur_freq_mhz": _int_or_none(_read("/sys/devices/system/cpu/cpu0/cpufreq/scaling_cur_freq"), 1000),
    }


def _int_or_none(text: str | None, div: int = 1):
    try:
        return int(text) // div if text is not None else None
    except ValueError:
        return None


@lru_cache(maxsize=1)
def git_sha() -> dict:
    """The git commit deploykit itself runs from (when installed from a checkout)."""
    root = Path(__file__).resolve().parents[2]
    if not (root / ".git").exists():
        return {"sha": None, "dirty": None}
    try:
        proc = subprocess.run(["git", "-C", str(root), "rev-parse", "--verify", "-q", "HEAD"], capture_output=True,
                              text=True, timeout=5)
        sha = proc.stdout.strip() if proc.returncode == 0 else None
        dirty = bool(subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                                    capture_output=True, text=True, timeout=5).stdout.strip())
    except (OSError, subprocess.SubprocessError):
        return {"sha": None, "dirty": None}
    return {"sha": sha, "dirty": dirty}


def fingerprint(threads: int | None = None, extra: dict | None = None) -> dict:
    fp = {
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
    """Human-readable differences between two fingerprints' comparable keys."""
    ka, kb = comparable_key(a), comparable_key(b)
    return [f"{k}: {ka.get(k)} vs {kb.get(k)}" for k in sorted(set(ka) | set(kb)) if ka.get(k) != kb.get(k)]
