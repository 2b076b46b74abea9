"""Energy meters, read in the same steady-state window as the latency samples.

Meters (each reports one or more *domains*: a counter with a physical scope):
  NVML   NVIDIA GPUs. ``nvmlDeviceGetTotalEnergyConsumption`` (mJ since the driver loaded, Volta and newer)
         read at the window's start and end; the counter updates about every 100 ms, so windows under 10 s
         are flagged. Where the counter is not supported: ``nvmlDeviceGetPowerUsage`` polled every 100 ms
         by a background thread and integrated (trapezoids), marked ``sampled``.
  RAPL   CPU package / DRAM through the Linux powercap sysfs tree (``/sys/class/powercap/intel-rapl:*``;
         AMD Zen uses the same driver). ``energy_uj`` wraps at ``max_energy_range_uj``; a light poller reads
         every few seconds so at most one wrap happens between two reads. ``energy_uj`` is root-only since
         Linux 5.10: permission denied makes the meter unavailable with that reason.

Nothing readable -> status ``unavailable`` with every reason tried; a number is never 0 for "unknown" and never
estimated silently. ``estimate_watts`` (explicit request only) adds a domain labelled ``estimated``.

Boundary injection for tests: ``RaplMeter(root=..., read_text=...)`` and ``NvmlMeter(nvml=<module>)``.
"""

from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from deploykit.core.errors import squash
from deploykit.bench.timer import now_ns

RAPL_ROOT = Path("/sys/class/powercap")
NVML_MIN_WINDOW_S = 10.0  # NVML's energy counter / power reading update every ~100 ms (1 s average on Ampere+)
_RAPL_ZONE = re.compile(r"(intel|amd)-rapl:\d+(:\d+)?")
_RAPL_SCOPES = {"package": "CPU package", "dram": "DRAM", "core": "CPU cores (part of the package)",
                "uncore": "uncore / integrated GPU (part of the package)", "psys": "platform (psys)"}


class MeterUnavailable(Exception):
    """A meter cannot be read here; the message is the reason shown in the report."""


@dataclass
class Domain:
    name: str  # e.g. "gpu0", "package-0", "dram"
    scope: str  # what the number covers: "GPU board", "CPU package", "DRAM", ...
    method: str  # how it is measured
    sampled: bool = False  # integrated from polled power rather than read from an energy counter
    min_window_s: float = 0.0  # windows shorter than this are flagged


class CounterAccumulator:
    """Turns readings of a wrapping counter into a monotonic total. Each ``update`` may see at most one wrap
    since the previous one (poll often enough); ``max_range`` is the counter's wrap-around value."""

    def __init__(self, first: int, max_range: int | None):
        self.last = first
        self.max_range = max_range
        self.total = 0
        self.wraps = 0

    def update(self, raw: int) -> int:
        delta = raw - self.last
        if delta < 0:
            if not self.max_range:
                raise MeterUnavailable(f"counter went backwards ({self.last} -> {raw}) and its range is unknown")
            delta += self.max_range
            self.wraps += 1
        self.total += delta
        self.last = raw
        return self.total


class Meter:
    """One source of energy readings. ``open`` raises MeterUnavailable; ``read`` returns cumulative joules
    per domain name since ``open``; ``close`` releases threads/handles."""

    kind = "meter"
    poll_s: float | None = None  # a background poll is needed every poll_s seconds (wrap-around / sampling)
    domains: list[Domain]

    def open(self) -> None:
        raise NotImplementedError

    def read(self) -> dict[str, float]:
        raise NotImplementedError

    def poll(self) -> None:
        self.read()

    def close(self) -> None:
        pass


def _default_read_text(path: Path) -> str:
    return Path(path).read_text()


class RaplMeter(Meter):
    kind = "rapl"
    poll_s = 5.0

    def __init__(self, root: Path | str = RAPL_ROOT, read_text: Callable[[Path], str] = _default_read_text):
        self.root = Path(root)
        self._read_text = read_text
        self._zones: list[tuple[Domain, Path, CounterAccumulator]] = []
        self._lock = threading.Lock()

    def _read_int(self, path: Path) -> int:
        try:
            return int(self._read_text(path).strip())
        except PermissionError:
            raise MeterUnavailable(f"rapl: permission denied reading {path} (energy_uj is root-only since Linux "
                                   "5.10; run as root or make it readable)") from None
        except FileNotFoundError:
            raise MeterUnavailable(f"rapl: {path} does not exist") from None
        except (OSError, ValueError) as exc:
            raise MeterUnavailable(f"rapl: cannot read {path}: {exc}") from None

    def open(self) -> None:
        if not self.root.is_dir():
            raise MeterUnavailable(f"rapl: {self.root} does not exist (no powercap/RAPL driver, usual in VMs "
                                   "and containers)")
        zones = sorted(p for p in self.root.iterdir() if _RAPL_ZONE.fullmatch(p.name))
        if not zones:
            raise MeterUnavailable(f"rapl: no intel-rapl:* zones under {self.root}")
        found = []
        for z in zones:
            try:
                name = self._read_text(z / "name").strip()
            except OSError:
                name = z.name
            base = re.sub(r"-\d+$", "", name)
            if base in ("core", "uncore"):
                continue  # parts of the package; reporting them too would invite double counting
            raw = self._read_int(z / "energy_uj")
            try:
                max_range = self._read_int(z / "max_energy_range_uj")
            except MeterUnavailable:
                max_range = None
            label = name if name.startswith("package") or z.name.count(":") == 1 else f"{name} ({z.name})"
            dom = Domain(label, _RAPL_SCOPES.get(base, base), "RAPL energy counter via powercap sysfs "
                         "(energy_uj, wrap-around at max_energy_range_uj handled)")
            found.append((dom, z / "energy_uj", CounterAccumulator(raw, max_range)))
        if not found:
            raise MeterUnavailable(f"rapl: no package or DRAM zone under {self.root}")
        self._zones = found
        self.domains = [d for d, _, _ in found]

    def read(self) -> dict[str, float]:
        with self._lock:
            return {d.name: acc.update(self._read_int(path)) / 1e6 for d, path, acc in self._zones}


class NvmlMeter(Meter):
    kind = "nvml"

    def __init__(self, index: int = 0, nvml=None, sample_every_s: float = 0.1):
        self.index = index
        self._nvml = nvml
        self.sample_every_s = sample_every_s
        self._handle = None
        self._counter = True
        self._inited = False
        self._last: tuple[int, float] | None = None  # (t_ns, watts) of the previous power sample
        self._joules = 0.0
        self._lock = threading.Lock()
        self._start_mj = 0

    def open(self) -> None:
        nv = self._nvml
        if nv is None:
            try:
                import pynvml as nv  # package nvidia-ml-py
            except ImportError:
                from deploykit.core.lazy import extra_hint

                raise MeterUnavailable(f"nvml: nvidia-ml-py is not installed ({extra_hint('nvidia')})") from None
            self._nvml = nv
        try:
            nv.nvmlInit()
            self._inited = True
            self._handle = nv.nvmlDeviceGetHandleByIndex(self.index)
            name = _text(nv.nvmlDeviceGetName(self._handle))
        except Exception as exc:  # NVMLError and friends: no driver, no device
            raise MeterUnavailable(f"nvml: cannot open GPU {self.index}: {_nvml_msg(exc)}") from None
        try:
            self._start_mj = int(nv.nvmlDeviceGetTotalEnergyConsumption(self._handle))
            self._counter = True
            method, sampled, self.poll_s = ("NVML total-energy counter (nvmlDeviceGetTotalEnergyConsumption)", False,
                                            None)
        except Exception as exc:
            try:
                self._power_w()
            except Exception as exc2:
                raise MeterUnavailable(f"nvml: GPU {self.index} reports neither energy ({_nvml_msg(exc)}) nor power "
                                       f"({_nvml_msg(exc2)})") from None
            self._counter = False
            method = (f"NVML power polled every {self.sample_every_s * 1000:g} ms and integrated (sampled; the "
                      f"energy counter is not supported here: {_nvml_msg(exc)})")
            sampled, self.poll_s = True, self.sample_every_s
            self._last = (now_ns(), self._power_w())
        self.domains = [Domain(f"gpu{self.index}", f"GPU board ({name})", method, sampled=sampled,
                               min_window_s=NVML_MIN_WINDOW_S)]

    def _power_w(self) -> float:
        return float(self._nvml.nvmlDeviceGetPowerUsage(self._handle)) / 1000.0  # mW -> W

    def read(self) -> dict[str, float]:
        name = self.domains[0].name
        if self._counter:
            return {name: (int(self._nvml.nvmlDeviceGetTotalEnergyConsumption(self._handle)) - self._start_mj) / 1000.0}
        with self._lock:
            t, w = now_ns(), self._power_w()
            t0, w0 = self._last
            self._joules += (w + w0) / 2.0 * (t - t0) / 1e9
            self._last = (t, w)
            return {name: self._joules}

    def close(self) -> None:
        if self._inited:
            try:
                self._nvml.nvmlShutdown()
            except Exception:
                pass
            self._inited = False


def _text(v) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


def _nvml_msg(exc: BaseException) -> str:
    return squash(exc) or type(exc).__name__


class _Poller:
    """Calls ``meter.poll()`` every ``meter.poll_s`` seconds on a daemon thread (wrap-around / sampling)."""

    def __init__(self, meters: list[Meter]):
        self.meters = [m for m in meters if m.poll_s]
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.errors: list[str] = []

    def start(self) -> None:
        if not self.meters:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="deploykit-energy-poll", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        period = min(m.poll_s for m in self.meters)
        next_due = {id(m): time.monotonic() + m.poll_s for m in self.meters}
        while not self._stop.wait(period):
            now = time.monotonic()
            for m in self.meters:
                if now >= next_due[id(m)]:
                    next_due[id(m)] = now + m.poll_s
                    try:
                        m.poll()
                    except Exception as exc:  # reported, never raised on the measuring thread
                        self.errors.append(f"{m.kind}: {exc}")

    def stop(self) -> None:
        if self._thread is not None:
            self._stop.set()
            self._thread.join(timeout=5)
            self._thread = None


@dataclass
class EnergySession:
    """Open meters, measure idle power, then bracket the measured window with ``start`` / ``stop``."""

    meters: list[Meter]
    reasons: list[str] = field(default_factory=list)  # why meters that were tried are unavailable
    estimate_watts: float | None = None
    idle_w: dict[str, float] = field(default_factory=dict)
    idle_s: float | None = None
    _start: dict[str, float] = field(default_factory=dict)
    _end: dict[str, float] = field(default_factory=dict)
    _t0: int = 0
    _t1: int = 0

    @property
    def domains(self) -> list[Domain]:
        return [d for m in self.meters for d in m.domains]

    def _read_all(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for m in self.meters:
            out.update(m.read())
        return out

    def measure_idle(self, seconds: float) -> None:
        """Power with nothing running, over ``seconds`` just before the benchmark's warm-up."""
        if not self.meters or seconds <= 0:
            return
        poller = _Poller(self.meters)
        a, t0 = self._read_all(), now_ns()
        poller.start()
        time.sleep(seconds)
        poller.stop()
        b, t1 = self._read_all(), now_ns()
        dt = (t1 - t0) / 1e9
        self.idle_s = dt
        self.idle_w = {k: (b[k] - a[k]) / dt for k in b if k in a}

    def start(self) -> None:
        self._poller = _Poller(self.meters)
        self._start = self._read_all()
        self._t0 = now_ns()
        self._poller.start()

    def stop(self) -> None:
        self._poller.stop()
        self._end = self._read_all()
        self._t1 = now_ns()

    def close(self) -> None:
        for m in self.meters:
            m.close()

    def result(self, inferences: int) -> dict:
        """The report's ``energy`` object for ``inferences`` images processed in the window."""
        window = (self._t1 - self._t0) / 1e9 if self._t1 else None
        doms = []
        warnings = list(getattr(getattr(self, "_poller", None), "errors", []) or [])
        for d in self.domains:
            j = self._end.get(d.name, 0.0) - self._start.get(d.name, 0.0) if self._end else None
            entry = {"name": d.name, "scope": d.scope, "method": d.method, "sampled": d.sampled,
                     "estimated": False, "window_s": window}
            idle = self.idle_w.get(d.name)
            if j is None or not window or j <= 0:
                entry.update({"joules": None, "j_per_inference": None, "inferences_per_j": None,
                              "avg_power_w": None, "idle_power_w": idle,
                              "reason": "the counter did not advance in the window (window too short for its "
                                        "update interval?)" if j is not None else "window not measured"})
            else:
                entry.update({"joules": j, "j_per_inference": j / inferences if inferences else None,
                              "inferences_per_j": inferences / j, "avg_power_w": j / window,
                              "idle_power_w": idle})
                if idle is not None and inferences:
                    entry["net_j_per_inference"] = (j - idle * window) / inferences
            if window is not None and window < d.min_window_s:
                entry["warning"] = (f"window {window:.1f} s is shorter than {d.min_window_s:g} s: this counter updates "
                                    "about every 100 ms, so the reading is coarse; raise --min-time")
                warnings.append(f"{d.name}: {entry['warning']}")
            doms.append(entry)
        if self.estimate_watts is not None and window:
            j = self.estimate_watts * window
            doms.append({"name": "estimate", "scope": "whatever the given power covers",
                         "method": f"ESTIMATED: constant {self.estimate_watts:g} W (--energy-estimate-watts) x window; "
                                   "not measured", "sampled": False, "estimated": True, "window_s": window,
                         "joules": j, "j_per_inference": j / inferences if inferences else None,
                         "inferences_per_j": inferences / j, "avg_power_w": self.estimate_watts,
                         "idle_power_w": None})
        measured = [d for d in doms if not d["estimated"] and d.get("joules")]
        status = "measured" if measured else ("estimated" if self.estimate_watts is not None and window
                                              else "unavailable")
        reasons = list(self.reasons)
        if not measured and self.meters:
            reasons += [f"{d['name']}: {d['reason']}" for d in doms if d.get("reason")]
        return {"status": status, "reasons": reasons, "window_s": window, "inferences": inferences,
                "idle_s": self.idle_s, "domains": doms, "warnings": warnings}


def open_session(gpu_index: int | None, *, nvml=None, rapl_root: Path | str = RAPL_ROOT,
                 rapl_read_text: Callable[[Path], str] = _default_read_text,
                 estimate_watts: float | None = None) -> EnergySession:
    """Every meter that applies to a run (NVML for the GPU it uses, RAPL for the CPU) and can be read here."""
    candidates: list[Meter] = []
    if gpu_index is not None:
        candidates.append(NvmlMeter(gpu_index, nvml=nvml))
    candidates.append(RaplMeter(rapl_root, read_text=rapl_read_text))
    meters, reasons = [], []
    for m in candidates:
        try:
            m.open()
            meters.append(m)
        except MeterUnavailable as exc:
            reasons.append(str(exc))
            m.close()
    return EnergySession(meters=meters, reasons=reasons, estimate_watts=estimate_watts)


def disabled_result() -> dict:
    return {"status": "off", "reasons": ["--energy off"], "window_s": None, "inferences": None, "idle_s": None,
            "domains": [], "warnings": []}
