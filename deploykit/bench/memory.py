"""Memory of one benchmark: resident set size of the benchmark process, GPU memory, the artifact's size on disk.

RSS (Linux): ``VmRSS`` of ``/proc/self/status`` right before the session load and right after it; the peak over
load + measurement is the kernel's high-water mark ``VmHWM``, reset to the current RSS right before the load by
writing ``5`` to ``/proc/self/clear_refs`` (Linux >= 4.0) and read right after the measured loop. The reset
matters: the same process may have exported the model with PyTorch a moment before, and a lifetime peak
(``ru_maxrss``, or VmHWM without the reset) would report that export instead of the runtime. Where
``clear_refs`` is not writable, a thread samples VmRSS every 10 ms over the same window instead (it can miss a
spike shorter than that); without ``/proc/self/status`` (not Linux) RSS is unavailable, with the reason.
``method`` says which was used. Sizes are MB of 2^20 bytes.

GPU (a run on an NVIDIA GPU): the ``torch`` target reports ``torch.cuda.max_memory_allocated`` (the caching
allocator's peak of tensor memory: no CUDA context, no memory outside the allocator), reset before the load;
other GPU targets sample NVML every 20 ms over load + measurement: this process's used GPU memory where NVML
lists the process (it includes the CUDA context), else the device's used memory minus its value before load
(then other processes on that GPU count too). No GPU: null.

Artifact size: the model file plus what it needs on disk: an ONNX file's external data files, an OpenVINO IR's
``.bin``.
"""

from __future__ import annotations

import contextlib
import os
import threading
from pathlib import Path

from deploykit.core.errors import squash

MB = float(1 << 20)
STATUS = Path("/proc/self/status")
CLEAR_REFS = Path("/proc/self/clear_refs")
RSS_SAMPLE_S = 0.01
GPU_SAMPLE_S = 0.02


def parse_status(text: str) -> dict[str, int]:
    """The ``kB`` fields of a ``/proc/<pid>/status`` text (VmRSS, VmHWM, RssAnon, ...), in bytes."""
    out = {}
    for line in text.splitlines():
        key, sep, rest = line.partition(":")
        parts = rest.split()
        if sep and len(parts) == 2 and parts[1] == "kB" and parts[0].isdigit():
            out[key.strip()] = int(parts[0]) * 1024
    return out


def read_status(path: Path = STATUS) -> dict[str, int] | None:
    try:
        return parse_status(Path(path).read_text())
    except OSError:
        return None


def release_free_memory() -> bool:
    """Give the memory this process freed back to the OS before the load (``gc.collect`` and glibc's
    ``malloc_trim(0)``): memory an export freed a moment before stays resident in the allocator's arenas, the
    runtime's load then lands in it, and the load's increase would count only what did not fit -- so the same
    model showed +106 MB right after its export and +302 MB on reuse (ResNet-50, ONNX Runtime). True when
    malloc_trim ran (glibc), False elsewhere."""
    import gc

    gc.collect()
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        libc.malloc_trim(0)
        return True
    except (OSError, AttributeError):
        return False


def reset_peak(path: Path = CLEAR_REFS) -> str | None:
    """Reset the process's RSS high-water mark (VmHWM) to its current RSS: write ``5`` to ``clear_refs``.
    None on success, else why it could not be done."""
    try:
        with open(path, "w") as fh:
            fh.write("5")
    except OSError as exc:
        return f"{path} is not writable ({exc.strerror or squash(exc)})"
    return None


class _Sampler:
    """Calls ``read()`` every ``interval`` seconds on a daemon thread and keeps the largest value it returned."""

    def __init__(self, read, interval: float):
        self.read, self.interval = read, interval
        self.peak: float | None = None
        self.error: str | None = None
        self.paused = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="deploykit-memory-sampler", daemon=True)

    def start(self) -> _Sampler:
        self.sample()
        self._thread.start()
        return self

    def sample(self) -> None:
        if self.paused:
            return
        try:
            v = self.read()
        except Exception as exc:  # a reader that fails stops contributing; the reason is reported
            self.error = squash(exc, 200)
            return
        if v is not None and (self.peak is None or v > self.peak):
            self.peak = v

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def stop(self) -> float | None:
        if not self._stop.is_set():
            self._stop.set()
            if self._thread.is_alive():
                self._thread.join(timeout=1.0)
            self.sample()
        return self.peak


class _NvmlReader:
    """Used GPU memory of this process (and of the whole device) on GPU ``index`` through NVML."""

    def __init__(self, index: int, nvml=None):
        nv = nvml
        if nv is None:
            import pynvml as nv  # package nvidia-ml-py
        nv.nvmlInit()
        self.nv = nv
        self.handle = nv.nvmlDeviceGetHandleByIndex(index)
        self.pid = os.getpid()
        self.own_peak: int | None = None
        self.device_peak: int | None = None
        self.device_before = self.device_used()

    def device_used(self) -> int:
        return int(self.nv.nvmlDeviceGetMemoryInfo(self.handle).used)

    def own_used(self) -> int | None:
        try:
            procs = self.nv.nvmlDeviceGetComputeRunningProcesses(self.handle)
        except Exception:
            return None
        used = [p.usedGpuMemory for p in procs if p.pid == self.pid and p.usedGpuMemory]
        return int(sum(used)) if used else None

    def read(self) -> int:
        own, dev = self.own_used(), self.device_used()
        if own is not None and (self.own_peak is None or own > self.own_peak):
            self.own_peak = own
        if self.device_peak is None or dev > self.device_peak:
            self.device_peak = dev
        return dev

    def close(self) -> None:
        try:
            self.nv.nvmlShutdown()
        except Exception:
            pass


class MemoryTracker:
    """Memory over one benchmark: ``start()`` right before the session load, ``loaded()`` right after it,
    ``finish()`` right after the measured loop (returns the report's ``memory`` section without ``artifact_mb``),
    ``close()`` in a ``finally`` (stops sampling threads; idempotent).

    ``gpu``: index of the NVIDIA GPU the run uses (None: CPU only); ``torch_cuda``: the run is the torch target
    (report the caching allocator's peak). Paths and the NVML module are injectable for tests."""

    def __init__(self, gpu: int | None = None, *, torch_cuda: bool = False, status_path: Path = STATUS,
                 clear_refs_path: Path = CLEAR_REFS, nvml=None, rss_interval: float = RSS_SAMPLE_S,
                 gpu_interval: float = GPU_SAMPLE_S):
        self.gpu, self.torch_cuda = gpu, torch_cuda
        self.status_path, self.clear_refs_path = Path(status_path), Path(clear_refs_path)
        self.nvml, self.rss_interval, self.gpu_interval = nvml, rss_interval, gpu_interval
        self.before: int | None = None
        self.after: int | None = None
        self.method = ""
        self._rss_sampler: _Sampler | None = None
        self._gpu_sampler: _Sampler | None = None
        self._nvml: _NvmlReader | None = None
        self._gpu_error: str | None = None
        self._result: dict | None = None
        self._carried: int | None = None  # the high-water mark before an excluded window
        self.trimmed = False  # freed memory was returned to the OS before the load (release_free_memory)

    # ---- RSS -----------------------------------------------------------------------------------------------
    def _rss(self) -> int | None:
        st = read_status(self.status_path)
        return st.get("VmRSS") if st else None

    def start(self) -> None:
        self.trimmed = release_free_memory()
        st = read_status(self.status_path)
        if not st or "VmRSS" not in st:
            self.method = f"unavailable: {self.status_path} is not readable (RSS is read from Linux's procfs)"
        else:
            self.before = st["VmRSS"]
            why = reset_peak(self.clear_refs_path)
            if why is None and "VmHWM" in st:
                self.method = "VmHWM of /proc/self/status after a clear_refs reset (5) right before the load"
            else:
                why = why or f"{self.status_path} has no VmHWM"
                self.method = (f"VmRSS sampled every {self.rss_interval * 1000:g} ms over load and measurement "
                               f"(peak reset impossible: {why}; a spike shorter than that can be missed)")
                self._rss_sampler = _Sampler(self._rss, self.rss_interval).start()
        self._start_gpu()

    def loaded(self) -> None:
        if self.before is not None:
            self.after = self._rss()

    @contextlib.contextmanager
    def excluded(self):
        """A window whose memory is not the runtime's (deploykit's own read-back of the runtime's optimized graph,
        a transient second session): the RSS peak skips it (the high-water mark is read before it and reset after
        it; a sampler pauses)."""
        if self.before is None:
            yield
            return
        if self._rss_sampler is not None:
            self._rss_sampler.sample()
            self._rss_sampler.paused = True
        else:
            hwm = (read_status(self.status_path) or {}).get("VmHWM")
            if hwm is not None:
                self._carried = max(self._carried or 0, hwm)
        try:
            yield
        finally:
            if self._rss_sampler is not None:
                self._rss_sampler.paused = False
            else:
                reset_peak(self.clear_refs_path)

    def _peak_rss(self) -> int | None:
        if self.before is None:
            return None
        if self._rss_sampler is not None:
            return self._rss_sampler.stop()
        hwm = (read_status(self.status_path) or {}).get("VmHWM")
        return max(v for v in (hwm, self._carried) if v is not None) if (hwm or self._carried) else None

    # ---- GPU -----------------------------------------------------------------------------------------------
    def _start_gpu(self) -> None:
        if self.gpu is None:
            return
        if self.torch_cuda:
            try:
                import torch

                if torch.cuda.is_initialized():
                    torch.cuda.reset_peak_memory_stats(self.gpu)
            except Exception as exc:
                self._gpu_error = f"torch.cuda memory statistics unavailable: {squash(exc, 200)}"
            return
        try:
            self._nvml = _NvmlReader(self.gpu, self.nvml)
        except ImportError:
            self._gpu_error = "nvidia-ml-py is not installed (pip install 'deploykit[nvidia]')"
            return
        except Exception as exc:
            self._gpu_error = f"NVML unavailable: {squash(exc, 200)}"
            return
        self._gpu_sampler = _Sampler(self._nvml.read, self.gpu_interval).start()

    def _gpu_result(self) -> tuple[float | None, str | None]:
        if self.gpu is None:
            return None, None
        if self._gpu_error:
            return None, f"unavailable: {self._gpu_error}"
        if self.torch_cuda:
            try:
                import torch

                peak = torch.cuda.max_memory_allocated(self.gpu)
            except Exception as exc:
                return None, f"unavailable: torch.cuda.max_memory_allocated failed: {squash(exc, 200)}"
            return peak / MB, ("torch.cuda.max_memory_allocated after reset_peak_memory_stats before the load "
                               "(the caching allocator's tensor memory; the CUDA context is not included)")
        self._gpu_sampler.stop()
        nv = self._nvml
        every = f"sampled every {self.gpu_interval * 1000:g} ms over load and measurement"
        if nv.own_peak is not None:
            return nv.own_peak / MB, f"NVML used GPU memory of this process, {every} (includes the CUDA context)"
        if nv.device_peak is not None and nv.device_before is not None:
            return (max(nv.device_peak - nv.device_before, 0) / MB,
                    f"NVML used memory of GPU {self.gpu}, {every}, minus its value before the load (NVML does not "
                    "list this process here; other processes on that GPU count too)")
        return None, f"unavailable: NVML returned no memory reading ({self._gpu_sampler.error})"

    # ---- result --------------------------------------------------------------------------------------------
    def finish(self) -> dict:
        if self._result is not None:
            return self._result
        peak = self._peak_rss()
        gpu_mb, gpu_method = self._gpu_result()
        self.close()
        before, after = self.before, self.after
        if peak is not None and before is not None:
            peak = max(peak, before, after or 0)
        self._result = {
            "rss_before_load_mb": _mb(before),
            "rss_after_load_mb": _mb(after),
            "rss_peak_mb": _mb(peak),
            "rss_increase_mb": _mb(peak - before) if peak is not None and before is not None else None,
            "gpu_peak_mb": round(gpu_mb, 3) if gpu_mb is not None else None,
            "gpu_method": gpu_method,
            "method": self.method + ("; freed memory returned to the OS before the load (malloc_trim)"
                                     if self.trimmed else ""),
        }
        return self._result

    def close(self) -> None:
        for s in (self._rss_sampler, self._gpu_sampler):
            if s is not None:
                s.stop()
        if self._nvml is not None:
            self._nvml.close()
            self._nvml = None


def _mb(n: int | None) -> float | None:
    return round(n / MB, 3) if n is not None else None


# ---- the artifact on disk ------------------------------------------------------------------------------------
def artifact_files(path: Path, proto=None) -> list[Path]:
    """The files a model needs on disk: an ONNX file and its external data files (``proto``: the graph, loaded
    without its external data, if the caller has it), an OpenVINO IR ``.xml`` and its ``.bin``, else the file."""
    path = Path(path)
    files = [path]
    if path.suffix == ".xml":
        files.append(path.with_suffix(".bin"))
    elif path.suffix == ".onnx":
        if proto is None:
            import onnx

            proto = onnx.load(str(path), load_external_data=False)
        for loc in sorted(_external_locations(proto)):
            files.append(path.parent / loc)
    return [f for f in dict.fromkeys(files) if f.is_file()]


def _external_locations(proto) -> set[str]:
    from onnx import TensorProto

    tensors = []
    stack = [proto.graph]
    while stack:
        g = stack.pop()
        tensors.extend(g.initializer)
        for n in g.node:
            for a in n.attribute:
                if a.HasField("t"):
                    tensors.append(a.t)
                tensors.extend(a.tensors)
                if a.HasField("g"):
                    stack.append(a.g)
                stack.extend(a.graphs)
    out = set()
    for t in tensors:
        if t.data_location == TensorProto.EXTERNAL:
            for e in t.external_data:
                if e.key == "location":
                    out.add(e.value)
    return out


def artifact_mb(path: Path, proto=None) -> float:
    """Size on disk of ``artifact_files`` in MB (2^20 bytes)."""
    return round(sum(f.stat().st_size for f in artifact_files(path, proto)) / MB, 3)
