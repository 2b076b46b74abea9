#!/usr/bin/env python3
"""LoadGen's SingleStream 90th percentile next to `deploykit bench`'s p90: same model file, target, threads and
input, each side a fresh `python -m deploykit` subprocess, interleaved A B B A ... so machine drift hits both
alike. Prints every round, the ratio LoadGen / bench per adjacent pair, and the round-to-round spread of each
side (the noise the ratio is to be judged against).

    python benchmarks/loadgen_vs_bench.py                                 # resnet50, ort, 2 threads, 6 rounds x 10 s
    python benchmarks/loadgen_vs_bench.py --target openvino --model deit_small --rounds 4 --seconds 15

Both p90s are given two ways: each tool's own (bench: linear interpolation; LoadGen: nearest rank,
sorted[floor(0.9 n)]) and LoadGen's rule applied to bench's raw samples, so a difference is never the
percentile definition. LoadGen's latency is its own clock from a query's scheduled start to its completion:
bench's inference plus LoadGen's issue / completion path through the Python SUT (the harness overhead being
measured here).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from deploykit.bench.stats import loadgen_percentile


def run_json(args: list[str]):
    cmd = [sys.executable, "-m", "deploykit", *args, "--json", "--no-save"]
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        sys.exit(f"command failed ({p.returncode}): {' '.join(cmd)}\n{p.stderr[-3000:]}")
    return json.loads(p.stdout)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="resnet50", help="registry model or an .onnx file")
    ap.add_argument("--target", default="ort")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--resolution", type=int, default=None)
    ap.add_argument("--rounds", type=int, default=6, help="pairs of (LoadGen, bench) runs, ABBA order")
    ap.add_argument("--seconds", type=float, default=10.0, help="measured seconds per run")
    ap.add_argument("--json", type=Path, default=None, help="also write every number to this file")
    args = ap.parse_args()

    common = [args.model, "-t", args.target, "--threads", str(args.threads)]
    if args.resolution:
        common += ["--resolution", str(args.resolution)]
    bench_args = ["bench", *common, "--warmup", "10", "--min-iters", "100", "--min-time", str(args.seconds),
                  "--max-time", str(max(3 * args.seconds, args.seconds + 30)), "--energy", "off"]
    lg_args = ["loadgen", *common, "--scenario", "singlestream", "--duration", str(args.seconds),
               "--calibration-time", "1"]
    rows = {"loadgen": [], "bench": []}

    def loadgen_side():
        r = run_json(lg_args)
        lg = r["loadgen"]
        rows["loadgen"].append({"p90": lg["latency_ms"]["p90"], "p50": lg["latency_ms"]["p50"],
                                "n": lg["query_count"], "valid": lg["valid"],
                                "early_stopping_p90": lg["early_stopping"]["estimate_ms"]})
        return rows["loadgen"][-1]

    def bench_side():
        (r,) = run_json(bench_args)  # bench --json: a list, one report per run
        s = r["timing"]["samples_ms"]
        rows["bench"].append({"p90": r["stats"]["p90"], "p90_loadgen_rule": loadgen_percentile(s, 90),
                              "p50": r["stats"]["p50"], "n": len(s)})
        return rows["bench"][-1]

    print(f"{args.model} on {args.target}, {args.threads} threads: LoadGen SingleStream vs bench latency mode, "
          f"{args.rounds} rounds x {args.seconds:g} s per side, ABBA")
    ratios, ratios_same_rule = [], []
    for i in range(args.rounds):
        order = (loadgen_side, bench_side) if i % 2 == 0 else (bench_side, loadgen_side)
        for side in order:
            side()
        lgr, br = rows["loadgen"][-1], rows["bench"][-1]
        ratios.append(lgr["p90"] / br["p90"])
        ratios_same_rule.append(lgr["p90"] / br["p90_loadgen_rule"])
        print(f"round {i + 1}: LoadGen p90 {lgr['p90']:.3f} ms ({lgr['n']} queries, "
              f"{'VALID' if lgr['valid'] else 'INVALID'}), bench p90 {br['p90']:.3f} ms "
              f"(LoadGen's rule {br['p90_loadgen_rule']:.3f}; {br['n']} iterations); "
              f"ratio {ratios[-1]:.4f} ({ratios_same_rule[-1]:.4f} same rule)")

    def spread(vals):
        return (max(vals) - min(vals)) / statistics.median(vals)

    lg90 = [r["p90"] for r in rows["loadgen"]]
    b90 = [r["p90"] for r in rows["bench"]]
    print()
    print(f"median ratio LoadGen / bench p90: {statistics.median(ratios):.4f} "
          f"(same percentile rule: {statistics.median(ratios_same_rule):.4f}; rounds {min(ratios):.4f}-{max(ratios):.4f})")
    print(f"noise: round-to-round spread (max-min)/median of LoadGen p90 {spread(lg90):.1%}, of bench p90 {spread(b90):.1%}")
    print(f"median p90: LoadGen {statistics.median(lg90):.3f} ms, bench {statistics.median(b90):.3f} ms, "
          f"difference {statistics.median(lg90) - statistics.median(b90):+.3f} ms")
    if args.json:
        args.json.write_text(json.dumps({"args": vars(args) | {"json": str(args.json)}, "rows": rows,
                                         "ratios": ratios, "ratios_same_rule": ratios_same_rule}, indent=2))


if __name__ == "__main__":
    main()
