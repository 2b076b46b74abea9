#!/usr/bin/env python3
"""deploykit's openvino target next to OpenVINO's own benchmark_app, on the same model file, device, precision
and performance hint, in both latency and throughput mode, interleaved (ABBA order per round) so slow drifts of
the machine hit both tools alike. Prints each round and the ratios deploykit / benchmark_app (goal: within 3%).

    python benchmarks/ov_vs_benchmark_app.py                       # resnet50, fp32, 3 rounds x 15 s per tool and mode
    python benchmarks/ov_vs_benchmark_app.py --precision default   # OpenVINO's default precision (bf16 where the CPU has it)
    python benchmarks/ov_vs_benchmark_app.py --model path/to.onnx --seconds 5 --rounds 2 --modes latency

Latency: deploykit's p50 (linear interpolation) vs benchmark_app's median (nearest rank; OpenVINO's own request
timer). Throughput: items/s over the measured loop vs benchmark_app's FPS. benchmark_app feeds random input,
deploykit its seeded normal tensor; neither changes the work of a CNN.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from deploykit.bench.pipeline import run_benchmark  # noqa: E402
from deploykit.core.config import BenchConfig, ExportConfig, default_models_dir  # noqa: E402
from deploykit.runtimes.options import RuntimeOptions  # noqa: E402

OV_PRECISION = {"fp32": "f32", "bf16": "bf16", "fp16": "f16"}


def benchmark_app_cmd() -> list[str]:
    exe = shutil.which("benchmark_app") or str(Path(sys.executable).with_name("benchmark_app"))
    if Path(exe).exists():
        return [exe]
    return [sys.executable, "-m", "openvino.tools.benchmark.main"]


def run_benchmark_app(model: Path, mode: str, precision: str | None, seconds: float, device: str) -> dict:
    with tempfile.TemporaryDirectory() as folder:
        cmd = [*benchmark_app_cmd(), "-m", str(model), "-d", device, "-hint", mode, "-t", str(int(math.ceil(seconds))),
               "-json_stats", "-report_type", "no_counters", "-report_folder", folder]
        if precision:
            cmd += ["-infer_precision", OV_PRECISION[precision]]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise SystemExit(f"benchmark_app failed ({proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
        res = json.loads((Path(folder) / "benchmark_report.json").read_text())["execution_results"]
    return {"latency_ms": float(res["latency (ms)"]), "items_per_s": float(res["throughput"]),
            "iterations": int(res["total number of iterations"])}


def run_deploykit(model: Path, mode: str, precision: str | None, seconds: float, device: str) -> dict:
    cfg = BenchConfig(warmup=10, min_iters=50, min_time=seconds, max_time=max(3 * seconds, seconds + 30), energy="off")
    res = run_benchmark(str(model), "openvino", cfg, RuntimeOptions(mode=mode, precision=precision, device=device))
    info = res.runtime_info
    return {"latency_ms": res.stats_ms["p50"], "items_per_s": res.measurement.items_per_s,
            "iterations": res.measurement.iterations, "precision_ran": info.get("inference_precision_hint"),
            "requests": info.get("requests"), "streams": info.get("streams")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="resnet50", help="registry model (exported by deploykit) or an .onnx/.xml file")
    ap.add_argument("--resolution", type=int, default=None)
    ap.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "fp16", "default"])
    ap.add_argument("--device", default="CPU")
    ap.add_argument("--modes", default="latency,throughput")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=15.0, help="measured time per tool, mode and round")
    ap.add_argument("--json", type=Path, default=None, help="also write all numbers to this file")
    args = ap.parse_args()
    precision = None if args.precision == "default" else args.precision

    if Path(args.model).suffix in (".onnx", ".xml"):
        model = Path(args.model)
    else:
        from deploykit.export.exporter import export_model
        from deploykit.passes.fuse import export_transform

        model = export_model(ExportConfig(model=args.model, resolution=args.resolution,
                                          models_dir=default_models_dir()), fuse=export_transform).path
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    print(f"model {model} | device {args.device} | precision {args.precision} | {args.rounds} rounds x "
          f"{args.seconds:g} s per tool and mode | {os.cpu_count()} CPUs", flush=True)

    rows = []
    for r in range(args.rounds):
        for mode in modes:
            order = ("deploykit", "benchmark_app") if r % 2 == 0 else ("benchmark_app", "deploykit")
            got = {}
            for tool in order:
                fn = run_deploykit if tool == "deploykit" else run_benchmark_app
                got[tool] = fn(model, mode, precision, args.seconds, args.device)
            dk, ba = got["deploykit"], got["benchmark_app"]
            row = {"round": r + 1, "mode": mode, "deploykit": dk, "benchmark_app": ba,
                   "latency_ratio": dk["latency_ms"] / ba["latency_ms"],
                   "throughput_ratio": dk["items_per_s"] / ba["items_per_s"]}
            rows.append(row)
            print(f"round {r + 1} {mode:10s} deploykit p50 {dk['latency_ms']:8.3f} ms {dk['items_per_s']:8.2f}/s "
                  f"(ran {dk['precision_ran']}, {dk['requests']} req, {dk['streams']} streams) | benchmark_app median "
                  f"{ba['latency_ms']:8.3f} ms {ba['items_per_s']:8.2f} FPS | ratio latency "
                  f"{row['latency_ratio']:.3f} throughput {row['throughput_ratio']:.3f}", flush=True)

    print("\nsummary (deploykit / benchmark_app; median over rounds, geometric mean in brackets; 1.000 = equal)")
    summary = {}
    for mode in modes:
        mine = [x for x in rows if x["mode"] == mode]
        for key in ("latency_ratio", "throughput_ratio"):
            vals = [x[key] for x in mine]
            med = statistics.median(vals)
            geo = math.exp(sum(math.log(v) for v in vals) / len(vals))
            summary[f"{mode}.{key}"] = {"median": med, "geomean": geo, "values": vals}
            verdict = "within 3%" if abs(med - 1) <= 0.03 else "OUTSIDE 3%"
            print(f"  {mode:10s} {key:17s} {med:.3f} [{geo:.3f}]  {verdict}")
    if args.json:
        args.json.write_text(json.dumps({"model": str(model), "precision": args.precision, "rows": rows,
                                         "summary": summary}, indent=2))


if __name__ == "__main__":
    main()
