"""fp32 vs int8 latency and fidelity of ResNet-50 and DeiT-S at 224 on ONNX Runtime and OpenVINO (the
int8 study). Run it on a quiet machine:

    python -m benchmarks.int8_latency --out runs/int8 --threads 2 --min-time 20
    python -m benchmarks.int8_latency --models resnet18 --resolution 64 --min-time 1 --out /tmp/int8   # smoke

Per model: export fp32 (cached), quantize with ONNX Runtime QDQ (cpu profile; ViTs once with the int8 softmax
and once with the float softmax) and with NNCF for OpenVINO, calibrating on generated images (shapes10 at the
model's resolution; latency does not depend on what the images show) -> time every file with deploykit's one
measurement loop (bench.runner.measure: warm-up, >= --min-iters and >= --min-time) and statistics (bench.stats):
ONNX Runtime through ``run_benchmark`` (target ``ort``, the same path as ``deploykit bench``), OpenVINO through
the ``openvino`` target when it is registered, else a direct OpenVINO CPU session (LATENCY hint, f32 inference
precision so fp32 never silently runs bf16, --threads streams/threads). Writes results.json / results.md.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np


def _ov_direct(path: Path, x: np.ndarray, threads: int, cfg) -> dict:
    import openvino as ov

    from deploykit.bench.runner import measure
    from deploykit.bench.stats import summarize

    core = ov.Core()
    t0 = time.perf_counter()
    compiled = core.compile_model(str(path), "CPU", {"INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": "LATENCY",
                                                     "INFERENCE_NUM_THREADS": threads, "NUM_STREAMS": 1})
    req = compiled.create_infer_request()
    load_ms = (time.perf_counter() - t0) * 1e3
    req.infer({0: x})
    meas = measure(lambda: req.infer({0: x}), cfg, batch=x.shape[0])
    out = req.get_output_tensor(0).data.copy()
    return {"stats": summarize(np.asarray(meas.samples_ns) / 1e6), "load_ms": load_ms, "output": out}


def _time_openvino(path: Path, x: np.ndarray, threads: int, cfg, opts) -> dict:
    from deploykit.runtimes.base import TARGETS

    if "openvino" in TARGETS:  # deploykit's openvino target; otherwise a direct OpenVINO session
        from deploykit.bench.pipeline import run_benchmark
        from deploykit.report.schema import build_report

        rep = build_report(run_benchmark(str(path), "openvino", cfg, opts))
        return {"stats": rep["stats"], "via": "deploykit openvino target", "fidelity": rep["fidelity"]}
    r = _ov_direct(path, x, threads, cfg)
    return {"stats": r["stats"], "via": "openvino CPU direct (LATENCY, f32 hint, 1 stream)", "output": r["output"]}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="resnet50,deit_small")
    ap.add_argument("--resolution", type=int, default=224)
    ap.add_argument("--threads", type=int, default=None, help="[default: all usable cores]")
    ap.add_argument("--min-time", type=float, default=10.0)
    ap.add_argument("--min-iters", type=int, default=50)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--calib-images", type=int, default=64)
    ap.add_argument("--no-nncf", action="store_true")
    ap.add_argument("--exclude", action="append", default=[], help="op types / node names kept float (ORT QDQ)")
    ap.add_argument("--reduce-range", choices=["auto", "on", "off"], default="auto", help="7-bit weights (ORT QDQ)")
    ap.add_argument("--no-openvino", action="store_true")
    ap.add_argument("--no-verify", action="store_true",
                    help="keep int8 files below the fidelity floor (their cosine is still reported)")
    ap.add_argument("--out", type=Path, default=Path("runs/int8"))
    a = ap.parse_args(argv)

    from benchmarks.accuracy import data as shapes
    from deploykit.bench.pipeline import run_benchmark
    from deploykit.core.config import BenchConfig, ExportConfig, QuantizeConfig
    from deploykit.runtimes.options import RuntimeOptions
    from deploykit.export.exporter import export_model
    from deploykit.passes.fuse import export_transform
    from deploykit.onnxio.reference import make_input
    from deploykit.onnxio.verify import compare
    from deploykit.models.registry import get_cfg
    from deploykit.quantize.evaluate import OrtModel
    from deploykit.quantize.pipeline import quantize_model
    from deploykit.report.schema import build_report

    a.out.mkdir(parents=True, exist_ok=True)
    models_dir = a.out / "models"
    calib = shapes.generate(a.out / f"calib{a.resolution}", {"train": 0, "calib": a.calib_images, "test": 0},
                            size=a.resolution) / "calib"
    cfg = BenchConfig(batch=1, resolution=a.resolution, warmup=a.warmup, min_iters=a.min_iters,
                      min_time=a.min_time, max_time=max(60.0, 3 * a.min_time), seed=0)
    opts = RuntimeOptions(threads=a.threads)
    threads = opts.resolved_threads()
    rows = []
    for name in [m for m in a.models.split(",") if m]:
        family = get_cfg(name).family
        fp32 = export_model(ExportConfig(model=name, resolution=a.resolution, models_dir=models_dir), fuse=export_transform).path
        variants = [("fp32", fp32, None)]
        sms = ["int8", "float"] if family == "vit" else [None]
        for sm in sms:
            q = QuantizeConfig(calib_data=str(calib), calib_size=a.calib_images, softmax=sm, fidelity_samples=8,
                               exclude=tuple(a.exclude), verify=not a.no_verify,
                               reduce_range={"auto": None, "on": True, "off": False}[a.reduce_range])
            r = quantize_model(name, q, export=ExportConfig(model=name, resolution=a.resolution, models_dir=models_dir),
                               resolution=a.resolution, models_dir=models_dir)
            variants.append(("int8 ort-qdq" + (f" softmax {sm}" if sm else ""), r.path, r.report))
        if not a.no_nncf and not a.no_openvino:
            q = QuantizeConfig(calib_data=str(calib), calib_size=a.calib_images, quantizer="nncf", fidelity_samples=8,
                               verify=not a.no_verify)
            r = quantize_model(name, q, export=ExportConfig(model=name, resolution=a.resolution, models_dir=models_dir),
                               resolution=a.resolution, models_dir=models_dir)
            variants.append(("int8 nncf", r.path, r.report))
        x = make_input((1, 3, a.resolution, a.resolution), 0)
        ref = OrtModel(fp32)(x)
        base = {}
        for label, path, qrep in variants:
            runtimes = ["ort", "openvino"] if path.suffix == ".onnx" else ["openvino"]
            if a.no_openvino:
                runtimes = [r for r in runtimes if r != "openvino"]
            for rt in runtimes:
                print(f"timing {name} {label} on {rt}", flush=True)
                if rt == "ort":
                    rep = build_report(run_benchmark(str(path), "ort", cfg, opts))
                    st, fid = rep["stats"], rep["fidelity"]
                    ran = (rep.get("quantization") or {}).get("softmax_kernels_ran")
                    via = "deploykit ort target"
                else:
                    res = _time_openvino(path, x, threads, cfg, opts)
                    st, via, ran = res["stats"], res["via"], None
                    fid = res.get("fidelity") or compare(ref, res["output"])
                if label == "fp32":
                    base[rt] = st["p50"]
                rows.append({
                    "model": name, "resolution": a.resolution, "runtime": rt, "variant": label, "file": str(path),
                    "p50_ms": st["p50"], "ci95_ms": st["median_ci95"], "cv": st["cv"], "n": st["n"],
                    "speedup_vs_fp32": (base[rt] / st["p50"]) if rt in base else None,
                    "cosine_vs_fp32_ref": fid.get("cosine"), "top1_vs_ref": fid.get("top1"),
                    "build_fidelity": {k: (qrep or {}).get("fidelity", {}).get(k) for k in
                                       ("cosine", "cosine_mean", "top1", "sqnr_db", "rel_err")} if qrep else None,
                    "softmax_ran": ran, "via": via, "threads": threads,
                })
                print(f"  p50 {st['p50']:.2f} ms (CI {st['median_ci95'][0]:.2f}-{st['median_ci95'][1]:.2f}), "
                      f"speedup {rows[-1]['speedup_vs_fp32'] or 1:.2f}x, cosine {fid.get('cosine'):.4f}", flush=True)
    from deploykit.bench.fingerprint import fingerprint

    try:
        env = fingerprint(threads)
    except Exception as exc:  # the fingerprint is context, never a reason to lose the numbers
        env = {"error": str(exc)}
    (a.out / "results.json").write_text(json.dumps({"environment": env, "results": rows}, indent=2, default=str) + "\n")
    md = ["| model | runtime | variant | p50 ms | 95% CI | CV | speedup vs fp32 | cosine vs fp32 | build cosine min / SQNR dB | softmax ran |",
          "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        bf = r["build_fidelity"] or {}
        md.append(f"| {r['model']}@{r['resolution']} | {r['runtime']} | {r['variant']} | {r['p50_ms']:.2f} | "
                  f"{r['ci95_ms'][0]:.2f}-{r['ci95_ms'][1]:.2f} | {r['cv']:.1%} | "
                  f"{'' if r['speedup_vs_fp32'] is None else format(r['speedup_vs_fp32'], '.2f') + 'x'} | "
                  f"{r['cosine_vs_fp32_ref']:.4f} | "
                  f"{'' if not bf.get('cosine') else format(bf['cosine'], '.4f') + ' / ' + format(bf['sqnr_db'], '.1f')} | "
                  f"{r['softmax_ran'] or ''} |")
    (a.out / "results.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))
    return {"results": rows}


if __name__ == "__main__":
    main()
