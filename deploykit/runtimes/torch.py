"""Target ``torch``: eager PyTorch (optionally ``torch.compile``) on the CPU or a CUDA GPU — the baseline users
would otherwise write by hand.

It runs the PyTorch *module*, not a graph file, so it takes registry models (or an ONNX artifact deploykit
exported, whose manifest says which registry model, seed, weights and options built it); a plain .onnx file
of unknown origin is refused with that reason.

``--device cpu|cuda|cuda:N``; ``--precision fp32`` (TF32 off: real fp32), ``tf32`` (TF32 matmul/conv on
Ampere+), ``fp16`` / ``bf16`` (the module and input cast to that type). ``--compile``: ``torch.compile``
(its compilation lands in the first inference, reported apart). ``--cuda-graphs``: replay the inference as
a CUDA graph (eager: captured with torch.cuda.graph; with --compile: mode "reduce-overhead").
On CUDA, ``sync`` is ``torch.cuda.synchronize`` (the timer calls it before the clock stops), CUDA events
give the device-side compute and end-to-end durations, and by default every inference copies the input
host->device and the output device->host (``--no-transfers``: input and output stay on the GPU).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from deploykit.core.errors import UnavailableError, UsageError, squash
from deploykit.runtimes.base import DEVICE_TIMING, Availability, ModelInput, Runtime, register_runtime
from deploykit.runtimes.cuda import CudaOptions
from deploykit.runtimes.options import TargetOptions, option

if TYPE_CHECKING:
    import numpy as np

_DTYPES = {"fp32": "float32", "tf32": "float32", "fp16": "float16", "bf16": "bfloat16"}


def parse_torch_device(device: str | None) -> tuple[str, int | None]:
    """``cpu`` / ``cuda`` / ``cuda:N`` / ``gpu`` -> (kind, index)."""
    d = (device or "cpu").strip().lower()
    if d == "cpu":
        return "cpu", None
    from deploykit.runtimes.cuda import parse_cuda_device

    return "cuda", parse_cuda_device(d)


@dataclass(frozen=True)
class TorchOptions(TargetOptions):
    """Options of the torch target (besides the CUDA group's --cuda-graphs / --no-transfers)."""

    compile: bool = option(False, flag="--compile", type=bool, rank=70, help="torch target: torch.compile the module.")


@register_runtime("torch")
class TorchRuntime(Runtime):
    loads = "module"  # the registry model's PyTorch module, not the ONNX file
    description = "PyTorch eager (or torch.compile) on cpu or cuda; registry models only"
    device_kind = "cpu|gpu"
    requires = ("torch",)
    precisions = ("fp32", "tf32", "fp16", "bf16")
    capabilities = frozenset({DEVICE_TIMING})  # on cuda; on cpu sync does nothing and device_times is None
    rank = 50
    option_groups = (CudaOptions, TorchOptions)

    @property
    def _cuda_opts(self) -> CudaOptions:
        return self.options.of(CudaOptions)

    @classmethod
    def availability(cls) -> Availability:
        av = super().availability()
        if not av.available:
            return av
        from deploykit.core.lazy import version_of
        from deploykit.runtimes.cuda import cuda_status

        st = cuda_status()
        gpus = ", ".join(f"cuda:{d.index} {d.name}" for d in st.devices) if st.available else f"cpu only ({st.reason})"
        return Availability(True, detail=f"torch {version_of('torch')}; {gpus}")

    def preflight(self) -> None:
        kind, index = parse_torch_device(self.options.device)
        if kind == "cuda":
            from deploykit.runtimes.cuda import require_gpu

            require_gpu(self.name, f"cuda:{index}")
        elif self._cuda_opts.cuda_graphs:
            raise UsageError("--cuda-graphs needs --device cuda")
        if self.options.precision == "tf32" and kind != "cuda":
            raise UsageError("--precision tf32 exists on CUDA devices only")

    def uses_gpu(self) -> int | None:
        kind, index = parse_torch_device(self.options.device)
        return index if kind == "cuda" else None

    def load(self, model: ModelInput) -> None:
        import torch

        from deploykit.models.registry import MODELS, create_model

        st = (model.manifest or {}).get("settings", {})
        if st.get("model") not in MODELS:
            raise UsageError(f"target torch runs registry models (it needs the PyTorch module): {model.path.name} "
                             "is a graph file of unknown origin; give a model name from 'deploykit models'")
        self._torch = torch
        kind, index = parse_torch_device(self.options.device)
        self._cuda = kind == "cuda"
        if self._cuda:
            if not torch.cuda.is_available():
                raise UnavailableError(f"target torch: --device {self.options.device} but torch.cuda is not available "
                                       f"(torch {torch.__version__} built for CUDA {torch.version.cuda or 'none'})")
            self._dev = torch.device("cuda", index)
            torch.cuda.set_device(self._dev)
        else:
            self._dev = torch.device("cpu")
        self._prev_threads = torch.get_num_threads()
        self._threads = self.options.resolved_threads()
        torch.set_num_threads(self._threads)
        precision = self.options.precision or "fp32"
        self._precision = precision
        self._tf32_state = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32,
                            torch.backends.cudnn.benchmark)
        if self._cuda:
            torch.backends.cuda.matmul.allow_tf32 = precision == "tf32"
            torch.backends.cudnn.allow_tf32 = precision == "tf32"
            torch.backends.cudnn.benchmark = True  # fixed input shape: let cuDNN pick its fastest kernels
        weights = (model.manifest.get("source") or {}).get("weights")
        weights = None if not weights or weights.startswith("random") else weights
        m = create_model(st["model"], resolution=model.shape[-1], seed=st.get("seed", 0), weights=weights,
                         options=st.get("options"))
        dtype = getattr(torch, _DTYPES[precision])
        self._dtype = dtype
        self._module = m.to(device=self._dev, dtype=dtype).eval()
        self._fn = self._module
        self._compile_mode = None
        if self.options.of(TorchOptions).compile:
            self._compile_mode = "reduce-overhead" if self._cuda_opts.cuda_graphs else "default"
            try:
                self._fn = torch.compile(self._module, mode=self._compile_mode)
            except Exception as exc:
                raise UnavailableError(f"torch.compile is not usable here: {squash(exc, 200)}") from None
        self._graph = None
        self._events = None
        self._shape = tuple(model.shape)
        self._transfers = self._cuda_opts.transfers  # read once: infer is the timed hot path

    def set_input(self, x: np.ndarray) -> None:
        import numpy as np

        torch = self._torch
        host = torch.from_numpy(np.ascontiguousarray(x)).to(self._dtype)
        if self._cuda:
            self._host_in = host.pin_memory()
            self._dev_in = self._host_in.to(self._dev)
            self._events = [torch.cuda.Event(enable_timing=True) for _ in range(4)]
            if self._cuda_opts.cuda_graphs and not self.options.of(TorchOptions).compile:
                self._capture()
        else:
            self._dev_in = host
        self._host_out = None

    def _capture(self) -> None:
        """Capture the module's forward pass on the bound input as a CUDA graph (after warm-up on a side
        stream, as torch.cuda.graph requires)."""
        torch = self._torch
        s = torch.cuda.Stream()
        s.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(s), torch.inference_mode():
            for _ in range(3):
                self._module(self._dev_in)
        torch.cuda.current_stream().wait_stream(s)
        self._graph = torch.cuda.CUDAGraph()
        with torch.inference_mode(), torch.cuda.graph(self._graph):
            self._graph_out = self._module(self._dev_in)

    def _forward(self):
        if self._graph is not None:
            self._graph.replay()
            return self._graph_out
        return _first(self._fn(self._dev_in))

    def infer(self) -> None:
        torch = self._torch
        with torch.inference_mode():
            if not self._cuda:
                self._fn(self._dev_in)
                return
            ev = self._events
            transfers = self._transfers
            ev[0].record()
            if transfers:
                self._dev_in.copy_(self._host_in, non_blocking=True)
            ev[1].record()
            out = self._forward()
            ev[2].record()
            if transfers:
                if self._host_out is None:
                    self._host_out = torch.empty(out.shape, dtype=out.dtype, pin_memory=True)
                self._host_out.copy_(out, non_blocking=True)
            ev[3].record()

    def sync(self) -> None:
        if self._cuda:
            self._torch.cuda.synchronize(self._dev)

    def device_times(self) -> dict[str, int] | None:
        if not self._cuda:
            return None
        ev = self._events
        out = {"compute": int(ev[1].elapsed_time(ev[2]) * 1e6)}
        if self._transfers:
            out["e2e"] = int(ev[0].elapsed_time(ev[3]) * 1e6)
        return out

    def outputs(self) -> list[np.ndarray]:
        torch = self._torch
        with torch.inference_mode():
            out = self._forward() if self._cuda else _first(self._fn(self._dev_in))
            y = out.detach().float().cpu().numpy().copy()
        return [y]

    def info(self) -> dict:
        torch = self._torch
        info = {
            "runtime": "torch",
            "version": torch.__version__,
            "device": str(self._dev),
            "precision": self._precision,
            "compile": self._compile_mode,
            "cuda_graphs": bool(self._cuda_opts.cuda_graphs),
            "threads": self._threads,
        }
        if self._cuda:
            props = torch.cuda.get_device_properties(self._dev)
            info.update(gpu=props.name, compute_capability=f"{props.major}.{props.minor}",
                        cuda=torch.version.cuda, cudnn=torch.backends.cudnn.version(),
                        tf32=torch.backends.cudnn.allow_tf32, cudnn_benchmark=True,
                        transfers="host<->device copies timed" if self._transfers else "device-resident I/O")
        return info

    def close(self) -> None:
        torch = getattr(self, "_torch", None)
        if torch is None:
            return
        torch.set_num_threads(self._prev_threads)
        (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32,
         torch.backends.cudnn.benchmark) = self._tf32_state
        self._module = self._fn = self._graph = None


def _first(y):
    if isinstance(y, (tuple, list)):
        return y[0]
    if isinstance(y, dict):
        return next(iter(y.values()))
    return y
