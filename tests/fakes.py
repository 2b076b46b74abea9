"""Minimal stand-ins injected at deploykit's documented boundaries (never patched into real libraries):
a fake NVML module for bench/energy.py, bench/telemetry.py and bench/memory.py, and a fake RAPL powercap tree on disk."""

from __future__ import annotations

import time
from pathlib import Path


class FakeNvml:
    """The subset of pynvml (nvidia-ml-py) deploykit calls. Power is constant ``watts``; the energy counter
    integrates it over real time, in mJ like NVML's, unless ``energy_supported`` is False."""

    NVML_CLOCK_SM = 1
    NVML_CLOCK_MEM = 2
    NVML_TEMPERATURE_GPU = 0

    class NVMLError(Exception):
        pass

    class _Util:
        def __init__(self, gpu, memory):
            self.gpu, self.memory = gpu, memory

    def __init__(self, *, watts: float = 150.0, energy_supported: bool = True, devices: int = 1,
                 throttle_mask: int = 0, init_error: str | None = None, start_mj: int = 7_000_000):
        self.watts = watts
        self.energy_supported = energy_supported
        self.devices = devices
        self.throttle_mask = throttle_mask
        self.init_error = init_error
        self.start_mj = start_mj
        self.t0 = time.perf_counter()
        self.inits = 0
        self.shutdowns = 0
        self.sm_clock = 1800

    def nvmlInit(self):
        if self.init_error:
            raise self.NVMLError(self.init_error)
        self.inits += 1

    def nvmlShutdown(self):
        self.shutdowns += 1

    def nvmlDeviceGetHandleByIndex(self, i):
        if i >= self.devices:
            raise self.NVMLError("Invalid Argument")
        return ("handle", i)

    def nvmlDeviceGetName(self, h):
        return b"Fake GPU 80GB"

    def nvmlSystemGetDriverVersion(self):
        return "555.42.06"

    def nvmlSystemGetCudaDriverVersion(self):
        return 12050

    def nvmlDeviceGetTotalEnergyConsumption(self, h):
        if not self.energy_supported:
            raise self.NVMLError("Not Supported")
        return int(self.start_mj + self.watts * (time.perf_counter() - self.t0) * 1000)

    def nvmlDeviceGetPowerUsage(self, h):
        return int(self.watts * 1000)

    def nvmlDeviceGetClockInfo(self, h, kind):
        return self.sm_clock if kind == self.NVML_CLOCK_SM else 2619

    def nvmlDeviceGetMaxClockInfo(self, h, kind):
        return 1980 if kind == self.NVML_CLOCK_SM else 2619

    def nvmlDeviceGetTemperature(self, h, sensor):
        return 61

    def nvmlDeviceGetEnforcedPowerLimit(self, h):
        return 400_000

    def nvmlDeviceGetPerformanceState(self, h):
        return 0

    def nvmlDeviceGetUtilizationRates(self, h):
        return self._Util(97, 40)

    def nvmlDeviceGetCurrentClocksThrottleReasons(self, h):
        return self.throttle_mask

    # memory (bench/memory.py): the device's used bytes, and the compute processes NVML lists with theirs
    device_used = 1 << 30
    processes: list = []  # [(pid, used bytes or None)]

    class _Mem:
        def __init__(self, used):
            self.used, self.total, self.free = used, 80 << 30, (80 << 30) - used

    class _Proc:
        def __init__(self, pid, used):
            self.pid, self.usedGpuMemory = pid, used

    def nvmlDeviceGetMemoryInfo(self, h):
        return self._Mem(self.device_used)

    def nvmlDeviceGetComputeRunningProcesses(self, h):
        return [self._Proc(pid, used) for pid, used in self.processes]


def make_rapl_tree(root: Path, zones: dict[str, tuple[str, int, int | None]]) -> Path:
    """``zones``: directory name -> (zone name, energy_uj, max_energy_range_uj or None)."""
    root.mkdir(parents=True, exist_ok=True)
    for d, (name, energy, max_range) in zones.items():
        z = root / d
        z.mkdir()
        (z / "name").write_text(name + "\n")
        (z / "energy_uj").write_text(f"{energy}\n")
        if max_range is not None:
            (z / "max_energy_range_uj").write_text(f"{max_range}\n")
    return root


def set_energy(root: Path, zone: str, value: int) -> None:
    (root / zone / "energy_uj").write_text(f"{value}\n")
