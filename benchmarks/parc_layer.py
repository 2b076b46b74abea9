"""One ParC-H layer, N in {7, 14, 28, 56, 112} x impl (conv | fft | matmul) x target (PyTorch eager, ONNX
Runtime, OpenVINO), next to depthwise 3x3 and 7x7 convs of the same channels on the same N x N map.

Every number comes from deploykit's measurement core: ``bench.runner.measure`` (warm-up, then iterations
until --min-iters AND --min-time, at most --max-time; one synchronous inference per sample on one prepared
input) and ``bench.stats.summarize`` (median with a bootstrap 95% CI). Each output is compared with the
PyTorch ``conv`` output on the same input (``onnxio.verify.compare``); a mismatch is flagged in the table.

    PYTHONPATH=. python benchmarks/parc_layer.py                        # the full table (a few minutes)
    PYTHONPATH=. python benchmarks/parc_layer.py --quick                # smoke test: tiny sizes, short runs
    PYTHONPATH=. python benchmarks/parc_layer.py --json out.json --channels 64 --threads 2

ONNX Runtime runs through deploykit's ``ort`` target (CPU EP, all graph optimisations); OpenVINO through its
Python API on the CPU with ``INFERENCE_PRECISION_HINT=f32`` (an fp32 measurement on every CPU) and the
latency hint. Models are exported with torch's dynamo exporter at opset 18, like ``deploykit export``.
"""

from __future__ import annotations

import argparse
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from deploykit.bench.runner import measure  # noqa: E402
from deploykit.bench.stats import summarize  # noqa: E402
from deploykit.core.config import BenchConfig, ExportConfig  # noqa: E402
from deploykit.runtimes.options import RuntimeOptions  # noqa: E402
from deploykit.onnxio.reference import make_input  # noqa: E402
from deploykit.onnxio.verify import compare  # noqa: E402

OPS = ("conv", "fft", "matmul", "dw3x3", "dw7x7")
PARC_IMPLS = ("conv", "fft", "matmul")
TARGETS = ("pytorch", "ort", "openvino")


def build(op: str, channels: int, n: int, seed: int):
    """The module for ``op``: a ParC-H layer (kernel N = n, position embedding, bias) or a depthwise conv."""
    import torch
    from torch import nn

    from deploykit.models.layers.parc import ParC

    torch.manual_seed(seed)
    if op in PARC_IMPLS:
        return ParC(channels, n, "H", op).eval()
    k = 3 if op == "dw3x3" else 7
    return nn.Conv2d(channels, channels, k, padding=k // 2, groups=channels).eval()


def same_parc_weights(modules: dict) -> None:
    """Give every ParC impl the weights of the conv impl, so all compute the same function."""
    ref = modules.get("conv")
    for op in PARC_IMPLS:
        if op in modules and ref is not None and modules[op] is not ref:
            modules[op].load_state_dict(ref.state_dict())


def export_onnx(module, x: np.ndarray, path: Path) -> None:
    from deploykit.export.exporter import _torch_export  # the exporter deploykit uses (quiet, dynamo, opset 18)

    proto = _torch_export(module, x, ExportConfig(model="parc_layer", opset=18))
    path.write_bytes(proto.SerializeToString())


class TorchRunner:
    def __init__(self, module, x, threads):
        import torch

        torch.set_num_threads(threads)
        self.torch, self.module, self.x = torch, module, torch.from_numpy(x)

    def infer(self):
        with self.torch.inference_mode():
            return self.module(self.x)

    def output(self):
        return self.infer().numpy()

    def info(self):
        return f"torch {self.torch.__version__}, {self.torch.get_num_threads()} threads"


class OrtRunner:
    """deploykit's ``ort`` target."""

    def __init__(self, path: Path, x, threads):
        from deploykit.runtimes.base import ModelInput, get_runtime

        self.rt = get_runtime("ort")(RuntimeOptions(threads=threads))
        self.rt.load(ModelInput(path, "input", tuple(x.shape)))
        self.rt.set_input(x)

    def infer(self):
        self.rt.infer()

    def output(self):
        return self.rt.outputs()[0]

    def info(self):
        i = self.rt.info()
        return f"onnxruntime {i['version']}, {i['threads']} threads"


class OpenVinoRunner:
    """OpenVINO's Python API, CPU plugin, fp32 forced (INFERENCE_PRECISION_HINT=f32)."""

    def __init__(self, path: Path, x, threads):
        import openvino as ov

        core = ov.Core()
        self.compiled = core.compile_model(core.read_model(str(path)), "CPU", self.config(threads))
        self.req = self.compiled.create_infer_request()
        self.req.set_input_tensor(ov.Tensor(np.ascontiguousarray(x)))
        self.version = ov.__version__.split("-")[0]
        self.threads = threads

    @staticmethod
    def config(threads) -> dict:
        return {"INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": threads}

    def infer(self):
        self.req.infer()

    def output(self):
        self.req.infer()
        return self.req.get_output_tensor(0).data.copy()

    def info(self):
        return f"openvino {self.version}, {self.threads} threads, f32"


def run(args) -> dict:
    cfg = BenchConfig(warmup=args.warmup, min_iters=args.min_iters, min_time=args.min_time, max_time=args.max_time,
                      seed=args.seed, bootstrap=1000)
    rows, infos = [], {}
    with tempfile.TemporaryDirectory(prefix="dk-parc-") as tmp:
        for n in args.sizes:
            x = make_input((args.batch, args.channels, n, n), args.seed)
            modules = {op: build(op, args.channels, n, args.seed) for op in args.ops}
            same_parc_weights(modules)
            ref = TorchRunner(modules.get("conv") or build("conv", args.channels, n, args.seed), x, args.threads).output()
            for op in args.ops:
                path = Path(tmp) / f"{op}_{n}.onnx"
                for target in args.targets:
                    row = {"n": n, "op": op, "target": target, "channels": args.channels, "batch": args.batch}
                    try:
                        if target == "pytorch":
                            runner = TorchRunner(modules[op], x, args.threads)
                        else:
                            if not path.exists():
                                export_onnx(modules[op], x, path)
                            runner = (OrtRunner if target == "ort" else OpenVinoRunner)(path, x, args.threads)
                        infos[target] = runner.info()
                        out = runner.output()
                        meas = measure(runner.infer, cfg, batch=args.batch)
                    except Exception as exc:  # a runtime that cannot run this op: say why, keep going
                        row["error"] = " ".join(f"{type(exc).__name__}: {exc}".split())[:300]
                        rows.append(row)
                        print(f"N={n:4d} {op:6s} {target:8s} failed: {row['error']}", file=sys.stderr)
                        continue
                    s = summarize([t / 1e6 for t in meas.samples_ns], n_boot=cfg.bootstrap, seed=cfg.seed)
                    row.update(p50_ms=s["p50"], ci95_ms=s["median_ci95"], cv=s["cv"], iterations=s["n"],
                               stop=meas.stop_reason)
                    if op in PARC_IMPLS:
                        c = compare(ref, out)
                        row.update(rel_err=c["rel_err"], matches=bool(c["rel_err"] is not None and c["rel_err"] <= 1e-3))
                    rows.append(row)
                    print(f"N={n:4d} {op:6s} {target:8s} p50 {s['p50']:9.4f} ms  CI [{s['median_ci95'][0]:.4f}, "
                          f"{s['median_ci95'][1]:.4f}]  cv {s['cv']:.1%}  n={s['n']}"
                          + (f"  rel_err {row['rel_err']:.1e}" if "rel_err" in row else ""), file=sys.stderr)
    return {"rows": rows, "runtimes": infos, "settings": {k: v for k, v in vars(args).items() if k != "json"},
            "machine": {"cpu": _cpu_model(), "python": platform.python_version()},
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}


def _cpu_model() -> str:
    try:
        from deploykit.bench.fingerprint import fingerprint

        return fingerprint(threads=None).get("cpu", {}).get("model") or platform.processor()
    except Exception:
        return platform.processor()


def markdown(result: dict) -> str:
    rows = result["rows"]
    st = result["settings"]
    by = {(r["n"], r["op"], r["target"]): r for r in rows}
    ops = [o for o in OPS if o in st["ops"]]
    lines = [f"ParC-H layer, C = {st['channels']}, batch {st['batch']}, input C x N x N, {st['threads']} threads; "
             f"median latency in ms (deploykit bench.runner / bench.stats). CPU: {result['machine']['cpu']}.",
             "Runtimes: " + "; ".join(f"{k}: {v}" for k, v in result["runtimes"].items()) + ".", "",
             "| N | target | " + " | ".join(ops) + " | fastest ParC | fastest ParC / dw7x7 |",
             "|---:|---|" + "---:|" * len(ops) + "---|---:|"]
    for n in st["sizes"]:
        for t in st["targets"]:
            cells, best = [], None
            for o in ops:
                r = by.get((n, o, t))
                if r is None:
                    cells.append("")
                elif "error" in r:
                    cells.append("n/a")
                else:
                    mark = "" if r.get("matches", True) else " (mismatch!)"
                    cells.append(f"{r['p50_ms']:.3f}{mark}")
                    if o in PARC_IMPLS and (best is None or r["p50_ms"] < best[1]):
                        best = (o, r["p50_ms"])
            dw = by.get((n, "dw7x7", t))
            ratio = f"{best[1] / dw['p50_ms']:.2f}x" if best and dw and "p50_ms" in dw else ""
            lines.append(f"| {n} | {t} | " + " | ".join(cells) + f" | {best[0] if best else ''} | {ratio} |")
    errors = [r for r in rows if "error" in r]
    if errors:
        lines += ["", "Not run:"] + [f"- N={r['n']} {r['op']} on {r['target']}: {r['error']}" for r in errors]
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", type=lambda s: [int(v) for v in s.split(",")], default=[7, 14, 28, 56, 112])
    p.add_argument("--channels", type=int, default=64)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--ops", type=lambda s: s.split(","), default=list(OPS), help=f"subset of {','.join(OPS)}")
    p.add_argument("--targets", type=lambda s: s.split(","), default=list(TARGETS), help=f"subset of {','.join(TARGETS)}")
    p.add_argument("--threads", type=int, default=None, help="intra-op threads (default: all usable cores)")
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--min-iters", type=int, default=50)
    p.add_argument("--min-time", type=float, default=1.0)
    p.add_argument("--max-time", type=float, default=20.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true", help="smoke test: N in {7, 14}, C = 16, ~0.05 s per cell")
    p.add_argument("--json", type=Path, default=None, help="also write the raw rows here")
    args = p.parse_args(argv)
    bad = [o for o in args.ops if o not in OPS] + [t for t in args.targets if t not in TARGETS]
    if bad:
        p.error(f"unknown op/target {bad[0]!r}")
    if args.quick:
        args.sizes, args.channels, args.warmup, args.min_iters, args.min_time = [7, 14], 16, 2, 5, 0.05
    from deploykit.core.config import available_cores

    args.threads = args.threads or available_cores()
    result = run(args)
    if args.json:
        from deploykit.core.atomic import write_json

        write_json(args.json, result)
    print(markdown(result))
    mismatches = [r for r in result["rows"] if r.get("matches") is False]
    return 1 if mismatches else 0


if __name__ == "__main__":
    raise SystemExit(main())
