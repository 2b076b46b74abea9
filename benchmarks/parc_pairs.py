"""Each ParC model beside its plain counterpart (the pair differs only by ParC) on ONNX Runtime and OpenVINO,
fp32 and int8, at one resolution (224 by default): the CNN / ParC pairs table.

    PYTHONPATH=. python benchmarks/parc_pairs.py                                  # all pairs, 224, both runtimes
    PYTHONPATH=. python benchmarks/parc_pairs.py --quick                          # smoke test: 64 x 64, short runs
    PYTHONPATH=. python benchmarks/parc_pairs.py --pairs parc_mobilenet_v2 --impls conv,fft,matmul --json out.json

Models are exported by deploykit (``export_model``: dynamo exporter, opset 18, verified in ONNX Runtime against
PyTorch) into --models-dir (reused across runs). int8 is ``deploykit quantize`` (ONNX Runtime QDQ, cpu profile:
uint8 activations, per-channel int8 weights, 7-bit on CPUs without VNNI) calibrated on --calib seeded synthetic
inputs: a latency measurement, not an accuracy one (no pretrained weights or data set here). The int8 graph is
the same file for both runtimes; OpenVINO runs its QDQ ops in int8 and the rest in f32
(INFERENCE_PRECISION_HINT=f32), after a compile in a child process (``check_compiles``), so a crash inside
OpenVINO becomes a "Not run" row instead of ending the script.

Every number comes from deploykit's measurement core (``bench.runner.measure`` + ``bench.stats.summarize``),
through the runners of benchmarks/parc_layer.py (ONNX Runtime = deploykit's ``ort`` target). Each output is
compared with the fp32 PyTorch output (``onnxio.verify.compare``): cosine and top-1 agreement are in the JSON.
For the ``fft`` impl int8 means everything but the ParC layers: quantize_static has no quantized DFT and
leaves the DFTs and the spectral arithmetic in fp32.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
for p in (REPO, REPO / "benchmarks"):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))

from parc_layer import OpenVinoRunner, OrtRunner, _cpu_model  # noqa: E402

from deploykit.bench.runner import measure  # noqa: E402
from deploykit.bench.stats import summarize  # noqa: E402
from deploykit.core.config import BenchConfig, ExportConfig  # noqa: E402
from deploykit.onnxio.reference import make_input  # noqa: E402
from deploykit.onnxio.verify import compare  # noqa: E402

PAIRS = {"parc_convnext_xt": "convnext_xt", "parc_resnet50": "resnet50", "parc_mobilenet_v2": "mobilenet_v2",
         "parc_net_s": "mobilevit_s"}
TARGETS = ("ort", "openvino")


def quantize_int8(src: Path, dst: Path, shape, n_calib: int, seed: int) -> None:
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    class Calib(CalibrationDataReader):
        def __init__(self):
            self.batches = iter([{"input": make_input(shape, seed + 1000 + i)} for i in range(n_calib)])

        def get_next(self):
            return next(self.batches, None)

    quantize_static(str(src), str(dst), Calib(), quant_format=QuantFormat.QDQ, activation_type=QuantType.QInt8,
                    weight_type=QuantType.QInt8, per_channel=True)


def int8_file(src: Path, tmp: Path, shape, args) -> tuple[Path, str]:
    """deploykit's own quantizer (ORT QDQ, cpu profile: uint8 activations, 7-bit weights without VNNI; seeded
    synthetic calibration, so speed only); the plain quantize_static call only where deploykit's refuses."""
    from deploykit.core.config import QuantizeConfig
    from deploykit.quantize.pipeline import quantize_model

    try:
        r = quantize_model(str(src), QuantizeConfig(calib_data="synthetic", calib_size=args.calib, seed=args.seed,
                                                    verify=False, fidelity_samples=4), models_dir=args.models_dir)
        return Path(r.path), "deploykit quantize (ort qdq, cpu profile)"
    except Exception as exc:  # fall back, and say so in the table
        dst = tmp / f"{src.stem}.int8.onnx"
        quantize_int8(src, dst, shape, args.calib, args.seed)
        return dst, f"quantize_static s8s8 (deploykit quantize failed: {type(exc).__name__})"


def run(args) -> dict:
    from deploykit.export import artifacts
    from deploykit.export.exporter import export_model
    from deploykit.passes.fuse import export_transform
    from deploykit.onnxio.reference import load_reference

    cfg = BenchConfig(warmup=args.warmup, min_iters=args.min_iters, min_time=args.min_time, max_time=args.max_time,
                      seed=args.seed, bootstrap=1000)
    variants = []  # (pair, model, impl)
    for parc in args.pairs:
        variants.append((parc, PAIRS[parc], None))
        variants += [(parc, parc, impl) for impl in args.impls]
    rows, infos, quantizer = [], {}, {}
    with tempfile.TemporaryDirectory(prefix="dk-pairs-") as tmp:
        for pair, name, impl in variants:
            opts = (("parc_impl", impl),) if impl else ()
            res = export_model(ExportConfig(model=name, resolution=args.resolution, options=opts, seed=args.seed,
                                            models_dir=args.models_dir), fuse=export_transform)
            x, ref = load_reference(artifacts.reference_path(res.path, args.seed, 1))
            paths = {"fp32": res.path}
            if "int8" in args.precisions:
                paths["int8"], quantizer[name, impl] = int8_file(res.path, Path(tmp), x.shape, args)
            for prec in args.precisions:
                for target in args.targets:
                    row = {"pair": pair, "model": name, "impl": impl or "", "precision": prec, "target": target,
                           "resolution": args.resolution, "quantizer": quantizer.get((name, impl)) if prec == "int8" else None}
                    try:
                        if target == "openvino" and prec == "int8":
                            from deploykit.runtimes.openvino import check_compiles

                            check_compiles(paths[prec], "CPU", OpenVinoRunner.config(args.threads))
                        runner = (OrtRunner if target == "ort" else OpenVinoRunner)(paths[prec], x, args.threads)
                        infos[target] = runner.info().replace(", f32", "")
                        c = compare(ref, runner.output())
                        meas = measure(runner.infer, cfg, batch=1)
                    except Exception as exc:  # a runtime that cannot run this graph: say why, keep going
                        row["error"] = " ".join(f"{type(exc).__name__}: {exc}".split())[:300]
                        rows.append(row)
                        print(f"{name:18s} {impl or '':6s} {prec} {target:8s} failed: {row['error']}", file=sys.stderr)
                        continue
                    s = summarize([t / 1e6 for t in meas.samples_ns], n_boot=cfg.bootstrap, seed=cfg.seed)
                    row.update(p50_ms=s["p50"], ci95_ms=s["median_ci95"], cv=s["cv"], iterations=s["n"],
                               stop=meas.stop_reason, cosine=c["cosine"], top1=c["top1"], rel_err=c["rel_err"])
                    rows.append(row)
                    print(f"{name:18s} {impl or '':6s} {prec} {target:8s} p50 {s['p50']:9.3f} ms  cv {s['cv']:.1%}  "
                          f"n={s['n']}  cosine {c['cosine']:.4f}", file=sys.stderr)
    return {"rows": rows, "runtimes": infos, "settings": {k: str(v) if isinstance(v, Path) else v
                                                          for k, v in vars(args).items() if k != "json"},
            "machine": {"cpu": _cpu_model()}, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}


def markdown(result: dict) -> str:
    st = result["settings"]
    cols = [(p, t) for p in st["precisions"] for t in st["targets"]]
    lines = [f"Plain vs ParC at {st['resolution']} x {st['resolution']}, batch 1, {st['threads']} threads; median "
             f"latency in ms (deploykit bench.runner / bench.stats); int8 = deploykit quantize (ORT QDQ). "
             f"CPU: {result['machine']['cpu']}.",
             "Runtimes: " + "; ".join(f"{k}: {v}" for k, v in result["runtimes"].items()) + ".", "",
             "| pair | model | impl | " + " | ".join(f"{t} {p}" for p, t in cols) + " |",
             "|---|---|---|" + "---:|" * len(cols)]
    by = {(r["model"], r["impl"], r["precision"], r["target"]): r for r in result["rows"]}
    seen = []
    for r in result["rows"]:
        key = (r["pair"], r["model"], r["impl"])
        if key in seen:
            continue
        seen.append(key)
        cells = []
        for p, t in cols:
            row = by.get((r["model"], r["impl"], p, t))
            cells.append("" if row is None else "n/a" if "error" in row else f"{row['p50_ms']:.2f}")
        lines.append(f"| {r['pair']} | {r['model']} | {r['impl'] or '-'} | " + " | ".join(cells) + " |")
    fallback = sorted({f"{r['model']} {r['impl']}".strip() + f": {r['quantizer']}" for r in result["rows"]
                       if (r.get("quantizer") or "").startswith("quantize_static")})
    if fallback:
        lines += ["", "int8 by the fallback quantizer:"] + [f"- {f}" for f in fallback]
    errors = [r for r in result["rows"] if "error" in r]
    if errors:
        lines += ["", "Not run:"] + [f"- {r['model']} {r['impl']} {r['precision']} on {r['target']}: {r['error']}"
                                     for r in errors]
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pairs", type=lambda s: s.split(","), default=list(PAIRS), help=f"subset of {','.join(PAIRS)}")
    p.add_argument("--impls", type=lambda s: s.split(","), default=["conv", "fft", "matmul"])
    p.add_argument("--targets", type=lambda s: s.split(","), default=list(TARGETS))
    p.add_argument("--precisions", type=lambda s: s.split(","), default=["fp32", "int8"])
    p.add_argument("--resolution", type=int, default=224)
    p.add_argument("--threads", type=int, default=None, help="intra-op threads (default: all usable cores)")
    p.add_argument("--calib", type=int, default=16, help="calibration batches for int8")
    p.add_argument("--models-dir", type=Path, default=Path(tempfile.gettempdir()) / "dk-parc-pairs-models")
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--min-iters", type=int, default=30)
    p.add_argument("--min-time", type=float, default=2.0)
    p.add_argument("--max-time", type=float, default=20.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true", help="smoke test: 64 x 64, ~0.1 s per cell, 2 calibration batches")
    p.add_argument("--json", type=Path, default=None, help="also write the raw rows here")
    args = p.parse_args(argv)
    bad = [x for x in args.pairs if x not in PAIRS] + [x for x in args.targets if x not in TARGETS] + \
          [x for x in args.impls if x not in ("conv", "fft", "matmul")] + \
          [x for x in args.precisions if x not in ("fp32", "int8")]
    if bad:
        p.error(f"unknown: {', '.join(bad)}")
    if args.quick:
        args.resolution, args.warmup, args.min_iters, args.min_time, args.max_time, args.calib = 64, 2, 5, 0.05, 1.0, 2
    from deploykit.core.config import available_cores

    args.threads = args.threads or available_cores()
    result = run(args)
    if args.json:
        from deploykit.core.atomic import write_json

        write_json(args.json, result)
    print(markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
