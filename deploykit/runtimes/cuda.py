"""Is there an NVIDIA GPU here? Asked of the CUDA driver library itself (libcuda, through ctypes), so the
answer needs no Python package and imports nothing heavy: ``deploykit targets`` stays fast and says exactly
what is missing (no driver library / driver too old / no device).

Also the option group the targets on an NVIDIA GPU share (``CudaOptions``: trt, ort-cuda, ort-trt, torch).
"""

from __future__ import annotations

import ctypes
import ctypes.util
from dataclasses import dataclass, field
from functools import lru_cache

from deploykit.runtimes.base import Availability, Runtime
from deploykit.runtimes.options import TargetOptions, option

_CU_ATTR_CC_MAJOR = 75  # CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR
_CU_ATTR_CC_MINOR = 76  # CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR


@dataclass(frozen=True)
class CudaOptions(TargetOptions):
    """Options of the targets on an NVIDIA GPU (trt, ort-cuda, ort-trt, torch on cuda)."""

    cuda_graphs: bool = option(False, flag="--cuda-graphs", type=bool, rank=80,
                               help="trt / torch on cuda: replay the inference as a CUDA graph.")
    transfers: bool = option(True, flag="--no-transfers", type=bool, rank=81,  # time host<->device copies too
                             help="GPU targets: keep input and output on the device (time compute only).")


@dataclass(frozen=True)
class CudaDevice:
    index: int
    name: str
    compute_capability: str  # "8.9"


@dataclass(frozen=True)
class CudaStatus:
    available: bool
    reason: str = ""
    driver_version: str | None = None  # CUDA version the driver supports, e.g. "12.4"
    devices: tuple[CudaDevice, ...] = field(default_factory=tuple)

    def device(self, index: int) -> CudaDevice | None:
        return next((d for d in self.devices if d.index == index), None)


def _load_libcuda():
    for name in ("libcuda.so.1", "libcuda.so", ctypes.util.find_library("cuda"), "nvcuda.dll"):
        if not name:
            continue
        try:
            return ctypes.CDLL(name)
        except OSError:
            continue
    return None


@lru_cache(maxsize=1)
def cuda_status() -> CudaStatus:
    lib = _load_libcuda()
    if lib is None:
        return CudaStatus(False, "no NVIDIA driver (libcuda.so.1 not found)")
    rc = lib.cuInit(0)
    if rc != 0:
        reason = {100: "no CUDA-capable device", 35: "the NVIDIA driver is older than the CUDA runtime",
                  999: "unknown CUDA error (driver not loaded?)"}.get(rc, f"cuInit failed with CUDA error {rc}")
        return CudaStatus(False, f"no usable NVIDIA GPU: {reason}")
    ver = ctypes.c_int()
    drv = None
    if lib.cuDriverGetVersion(ctypes.byref(ver)) == 0:
        drv = f"{ver.value // 1000}.{ver.value % 1000 // 10}"
    count = ctypes.c_int()
    if lib.cuDeviceGetCount(ctypes.byref(count)) != 0 or count.value == 0:
        return CudaStatus(False, "no NVIDIA GPU (the driver reports 0 devices)", driver_version=drv)
    devs = []
    for i in range(count.value):
        dev = ctypes.c_int()
        if lib.cuDeviceGet(ctypes.byref(dev), i) != 0:
            continue
        buf = ctypes.create_string_buffer(256)
        lib.cuDeviceGetName(buf, 256, dev)
        major, minor = ctypes.c_int(), ctypes.c_int()
        lib.cuDeviceGetAttribute(ctypes.byref(major), _CU_ATTR_CC_MAJOR, dev)
        lib.cuDeviceGetAttribute(ctypes.byref(minor), _CU_ATTR_CC_MINOR, dev)
        devs.append(CudaDevice(i, buf.value.decode(errors="replace"), f"{major.value}.{minor.value}"))
    return CudaStatus(True, driver_version=drv, devices=tuple(devs))


def parse_cuda_device(device: str | None) -> int:
    """``None`` / ``cuda`` / ``cuda:N`` / ``N`` / ``gpu`` / ``gpu:N`` -> device index."""
    from deploykit.core.errors import UsageError

    if device is None:
        return 0
    d = device.strip().lower()
    for prefix in ("cuda:", "gpu:"):
        if d.startswith(prefix):
            d = d[len(prefix):]
    if d in ("cuda", "gpu", ""):
        return 0
    if d.isdigit():
        return int(d)
    raise UsageError(f"--device {device!r} is not a CUDA device (use cuda, cuda:N or N)")


def require_gpu(target: str, device: str | None) -> CudaDevice:
    """The CUDA device a GPU target will use, or UnavailableError (exit 3) naming what is missing."""
    from deploykit.core.errors import UnavailableError

    index = parse_cuda_device(device)
    st = cuda_status()
    if not st.available:
        raise UnavailableError(f"target {target} needs an NVIDIA GPU: {st.reason}")
    dev = st.device(index)
    if dev is None:
        have = ", ".join(f"cuda:{d.index} ({d.name})" for d in st.devices)
        raise UnavailableError(f"target {target}: there is no cuda:{index} here (devices: {have})")
    return dev


class CudaRuntime(Runtime):
    """A target on an NVIDIA GPU: ``--device cuda[:N]`` must exist here (checked in ``preflight``, exit 3)."""

    @staticmethod
    def gpu_availability(missing: list[str], detail) -> Availability:
        """Available when nothing is ``missing`` (packages, providers) and an NVIDIA GPU answers here; every reason
        otherwise. ``detail(devices)`` describes an available target."""
        st = cuda_status()
        if not st.available:
            missing = [*missing, st.reason]
        if missing:
            return Availability(False, "; ".join(missing))
        return Availability(True, detail=detail(st.devices))

    def preflight(self) -> None:
        self._gpu = require_gpu(self.name, self.options.device)

    def uses_gpu(self) -> int | None:
        return parse_cuda_device(self.options.device)
