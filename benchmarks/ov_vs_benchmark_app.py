#!/usr/bin/env python3
"""deploykit's openvino target next to OpenVINO's own benchmark_app on the same model file, device, precision and
performance hint, interleaved over enough rounds to tell a 3% gap from noise.

Every side runs as a fresh process each round (never in this process: OpenVINO compiled models created earlier in
a process change the latency of later ones by 1-2%), in an order that alternates round by round, so slow drifts
of the machine hit every side alike. Per round: each side's median latency and the ratio deploykit /
benchmark_app; at the end the median ratio over the rounds with a bootstrap 95% CI of that median
(deploykit.bench.stats, the one statistics module) and a verdict: a gap (the CI excludes 1), no gap beyond the
tolerance (the CI lies inside 1 +- tolerance), or inconclusive (add rounds).

    python benchmarks/ov_vs_benchmark_app.py                        # resnet50, fp32, latency, 10 rounds x 10 s
    python benchmarks/ov_vs_benchmark_app.py --sides deploykit,benchmark_app,bare   # + a bare OpenVINO loop
    python benchmarks/ov_vs_benchmark_app.py --model path/to.onnx --rounds 12 --seconds 8 --json out.json
    python benchmarks/ov_vs_benchmark_app.py --dk-args="--no-cache"  # A/B a deploykit option

Sides:
  deploykit      `python -m deploykit bench MODEL --target openvino --json --no-save` (the CLI users run): p50 of the
                 host clock around each synchronous inference (linear-interpolation percentile).
  benchmark_app  OpenVINO's tool, -hint latency (synchronous infer, one request): median of OpenVINO's own request
                 timer (``InferRequest.latency``; nearest-rank percentile). Its input is random, ours seeded normal;
                 neither changes a CNN's work.
  bare           a minimal Python loop in the same way as benchmark_app's latency loop (the request's own input
                 tensor, ``infer()``), timed both ways on the same inferences: ``bare`` = host clock (deploykit's
                 definition), ``bare_ov`` = OpenVINO's request timer (benchmark_app's). The two bare numbers split the
                 gap into "what the clock covers" (the Python call, the output dict, the wake-up after the request)
                 and the rest.

Wall time: about rounds x sides x (seconds + 4 s of process start and compile); the defaults (10 rounds, two
sides, 10 s) take ~5 min on ResNet-50, three sides ~7 min.
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
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from deploykit.bench.stats import bootstrap_ci  # noqa: E402
from deploykit.core.config import ExportConfig, default_models_dir  # noqa: E402

OV_PRECISION = {"fp32": "f32", "bf16": "bf16", "fp16": "f16"}

BARE = textwrap.dedent("""
    import json, sys, time
    import numpy as np, openvino as ov
    path, device, precision, seconds, warmup = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4]), int(sys.argv[5])
    core = ov.Core()
    cfg = {"PERFORMANCE_HINT": "LATENCY"}
    if precision != "default":
        cfg["INFERENCE_PRECISION_HINT"] = precision
    cm = core.compile_model(core.read_model(path), device, cfg)
    req = cm.create_infer_request()
    t = req.get_input_tensor()
    t.data[:] = np.random.default_rng(0).standard_normal(size=tuple(t.shape), dtype=np.float32)
    for _ in range(warmup + 1):
        req.infer()
    host, own = [], []
    end = time.perf_counter() + seconds
    while time.perf_counter() < end or len(host) < 50:
        t0 = time.perf_counter_ns(); req.infer(); host.append(time.perf_counter_ns() - t0); own.append(req.latency)
    print(json.dumps({"bare": float(np.percentile(host, 50)) / 1e6, "bare_ov": float(np.percentile(own, 50)),
                      "iterations": len(host)}))
""")


def benchmark_app_cmd() -> list[str]:
    exe = shutil.which("benchmark_app") or str(Path(sys.executable).with_name("benchmark_app"))
    if Path(exe).exists():
        return [exe]
    return [sys.executable, "-m", "openvino.tools.benchmark.main"]


def _run(cmd: list[str], what: str) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    if proc.returncode != 0:
        raise SystemExit(f"{what} failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    return proc


def side_benchmark_app(args, model: Path, mode: str) -> dict:
    with tempfile.TemporaryDirectory() as folder:
        cmd = [*benchmark_app_cmd(), "-m", str(model), "-d", args.device, "-hint", mode,
               "-t", str(int(math.ceil(args.seconds))), "-json_stats", "-report_type", "no_counters",
               "-report_folder", folder]
        if args.precision != "default":
            cmd += ["-infer_precision", OV_PRECISION[args.precision]]
        _run(cmd, "benchmark_app")
        res = json.loads((Path(folder) / "benchmark_report.json").read_text())["execution_results"]
    return {"benchmark_app": float(res["latency (ms)"]), "benchmark_app_items_per_s": float(res["throughput"]),
            "benchmark_app_iterations": int(res["total number of iterations"])}


def side_deploykit(args, model: Path, mode: str) -> dict:
    cmd = [sys.executable, "-m", "deploykit", "bench", str(model), "--target", "openvino", "--device", args.device,
           "--mode", mode, "--min-time", str(args.seconds), "--min-iters", "50", "--max-time",
           str(max(3 * args.seconds, args.seconds + 30)), "--warmup", "10", "--energy", "off", "--json", "--no-save",
           *args.dk_args.split()]
    if args.precision != "default":
        cmd += ["--precision", args.precision]
    (rep,) = json.loads(_run(cmd, "deploykit bench").stdout)  # bench --json: a list, one report per run
    info = rep["target"]["info"]
    return {"deploykit": rep["stats"]["p50"], "deploykit_items_per_s": rep["throughput"]["items_per_s"],
            "deploykit_iterations": rep["timing"]["iterations"], "deploykit_ran": info.get("inference_precision_hint"),
            "deploykit_cache": info.get("loaded_from_cache")}


def side_bare(args, model: Path, mode: str) -> dict:
    if mode != "latency":
        return {}
    prec = OV_PRECISION.get(args.precision, "default")
    out = _run([sys.executable, "-c", BARE, str(model), args.device, prec, str(args.seconds), "10"], "bare loop")
    return json.loads(out.stdout.strip().splitlines()[-1])


SIDES = {"deploykit": side_deploykit, "benchmark_app": side_benchmark_app, "bare": side_bare}
SHORT = {"deploykit": "dk", "benchmark_app": "app", "bare": "bare"}


def order_of(sides: list[str], r: int) -> list[str]:
    """Round r's order: rotate by r // 2 and reverse every other round (AB, BA for two sides)."""
    k = (r // 2) % len(sides)
    rot = sides[k:] + sides[:k]
    return rot if r % 2 == 0 else rot[::-1]


def verdict(ci: tuple[float, float], tol: float) -> str:
    lo, hi = ci
    if lo > 1:
        return f"deploykit SLOWER: the CI excludes 1 (gap {lo - 1:+.1%} to {hi - 1:+.1%})"
    if hi < 1:
        return f"deploykit FASTER: the CI excludes 1 (gap {lo - 1:+.1%} to {hi - 1:+.1%})"
    if lo >= 1 - tol and hi <= 1 + tol:
        return f"no gap beyond {tol:.0%} (the CI lies inside 1 +- {tol:.0%})"
    return f"inconclusive: the CI contains 1 but is wider than +-{tol:.0%}; add rounds or quiet the machine"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="resnet50", help="registry model (exported by deploykit) or an .onnx/.xml file")
    ap.add_argument("--resolution", type=int, default=None)
    ap.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "fp16", "default"])
    ap.add_argument("--device", default="CPU")
    ap.add_argument("--modes", default="latency", help="latency and/or throughput, comma-separated")
    ap.add_argument("--sides", default="deploykit,benchmark_app", help=f"which of {', '.join(SIDES)} to run")
    ap.add_argument("--rounds", type=int, default=10, help="interleaved rounds (at least 8)")
    ap.add_argument("--seconds", type=float, default=10.0, help="measured seconds per side, mode and round")
    ap.add_argument("--tolerance", type=float, default=0.03, help="gap that counts as none [default: 3%%]")
    ap.add_argument("--dk-args", default="", help="extra arguments for deploykit bench (e.g. --no-cache)")
    ap.add_argument("--json", type=Path, default=None, help="also write every number to this file")
    args = ap.parse_args()
    if args.rounds < 8:
        ap.error("--rounds must be at least 8 (fewer cannot tell a 3%% gap from round-to-round noise)")
    sides = [s.strip() for s in args.sides.split(",") if s.strip()]
    if "deploykit" not in sides or "benchmark_app" not in sides or any(s not in SIDES for s in sides):
        ap.error(f"--sides needs deploykit and benchmark_app, from {', '.join(SIDES)}")

    if Path(args.model).suffix in (".onnx", ".xml"):
        model = Path(args.model).resolve()
    else:
        from deploykit.export.exporter import export_model
        from deploykit.passes.fuse import export_transform

        model = export_model(ExportConfig(model=args.model, resolution=args.resolution,
                                          models_dir=default_models_dir()), fuse=export_transform).path.resolve()
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    est = args.rounds * len(modes) * len(sides) * (args.seconds + 4)
    print(f"model {model} | device {args.device} | precision {args.precision} | sides {', '.join(sides)} | "
          f"{args.rounds} rounds x {args.seconds:g} s | {os.cpu_count()} CPUs | about {est / 60:.0f} min", flush=True)

    rows = []
    for r in range(args.rounds):
        for mode in modes:
            got: dict = {"round": r + 1, "mode": mode, "order": order_of(sides, r)}
            for side in got["order"]:
                got.update(SIDES[side](args, model, mode))
            if mode == "latency":
                got["ratio"] = got["deploykit"] / got["benchmark_app"]
            else:  # throughput: items/s, inverted so that above 1 still means deploykit is slower
                got["ratio"] = got["benchmark_app_items_per_s"] / got["deploykit_items_per_s"]
            if "bare" in got:
                got["bare_ratio"], got["bare_ov_ratio"] = (got["bare"] / got["benchmark_app"],
                                                           got["bare_ov"] / got["benchmark_app"])
            rows.append(got)
            extra = (f" | bare {got['bare']:.3f} (OV timer {got['bare_ov']:.3f})" if "bare" in got else "")
            order = "/".join(SHORT[o] for o in got["order"])
            print(f"round {r + 1:2d} {mode:10s} {order:12s} deploykit p50 "
                  f"{got['deploykit']:.3f} ms | benchmark_app median {got['benchmark_app']:.3f} ms{extra} | "
                  f"ratio {got['ratio']:.4f}", flush=True)

    print("\nsummary: ratio = latency / benchmark_app's (throughput mode: benchmark_app's items/s / deploykit's), "
          "median over rounds [bootstrap 95% CI of the median]; 1.000 = equal, above 1 = deploykit slower")
    summary = {}
    for mode in modes:
        mine = [x for x in rows if x["mode"] == mode]
        for key, label in (("ratio", "deploykit"), ("bare_ratio", "bare loop, host clock"),
                           ("bare_ov_ratio", "bare loop, OpenVINO's timer")):
            vals = [x[key] for x in mine if key in x]
            if not vals:
                continue
            med = statistics.median(vals)
            ci = bootstrap_ci(vals, "median", n_boot=10000, seed=0)
            summary[f"{mode}.{key}"] = {"median": med, "ci95": list(ci), "values": vals,
                                        "geomean": statistics.geometric_mean(vals)}
            line = f"  {mode:10s} {label:28s} {med:.4f} [{ci[0]:.4f}, {ci[1]:.4f}]"
            if key == "ratio":
                line += "  " + verdict(ci, args.tolerance)
            print(line)
    if args.json:
        args.json.write_text(json.dumps({"model": str(model), "precision": args.precision, "sides": sides,
                                         "seconds": args.seconds, "rows": rows, "summary": summary}, indent=2))


if __name__ == "__main__":
    main()
