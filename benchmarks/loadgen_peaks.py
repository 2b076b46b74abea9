#!/usr/bin/env python3
"""Serving numbers per model and target at a fixed thread count, every one from the real CLI:

1. `deploykit bench` in latency mode: items/s of one request after another;
2. `deploykit loadgen --scenario offline`: LoadGen's Offline samples/s (every sample issued at once);
3. `deploykit loadgen --scenario server --find-peak`: the highest Server QPS whose p99 latency is within the
   bound (LoadGen's FindPeakPerformance), every step kept;
4. a Server run at the peak QPS for the full duration: LoadGen's whole verdict there (early stopping included);
5. a Server run at 2x the peak QPS: INVALID, with LoadGen's reasons (and the process exits 0).

    python benchmarks/loadgen_peaks.py                          # resnet50, deit_small x ort, openvino; 2 threads
    python benchmarks/loadgen_peaks.py --models resnet50 --targets ort --duration 20 --step-duration 10

Prints a Markdown table (and --json FILE keeps every report). The reports and LoadGen's logs are written to
--report-dir (default reports/loadgen-peaks). Run on a quiet machine: each step's p99 rests on a few hundred
queries, and other load on the cores moves the peak.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path


def run_json(args: list[str], report_dir: Path | None) -> tuple[dict, float]:
    cmd = [sys.executable, "-m", "deploykit", *args, "--json"]
    cmd += ["--report-dir", str(report_dir)] if report_dir else ["--no-save"]
    t0 = time.monotonic()
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        sys.exit(f"command failed ({p.returncode}): {' '.join(cmd)}\n{p.stderr[-3000:]}")
    return json.loads(p.stdout), time.monotonic() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="resnet50,deit_small")
    ap.add_argument("--targets", default="ort,openvino")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--bound", type=float, default=100.0, help="latency bound in ms")
    ap.add_argument("--percentile", type=float, default=99.0)
    ap.add_argument("--duration", type=float, default=60.0, help="seconds: Offline, the run at the peak, the run at 2x")
    ap.add_argument("--step-duration", type=float, default=20.0, help="seconds per find-peak step")
    ap.add_argument("--bench-seconds", type=float, default=10.0)
    ap.add_argument("--peak-method", default="loadgen", choices=["loadgen", "bisect"])
    ap.add_argument("--report-dir", type=Path, default=Path("reports/loadgen-peaks"))
    ap.add_argument("--json", type=Path, default=None, help="also write every report to this file")
    args = ap.parse_args()

    bound = ["--latency-bound", f"{args.bound:g}", "--percentile", f"{args.percentile:g}"]
    rows, everything = [], []
    for model in [m.strip() for m in args.models.split(",") if m.strip()]:
        for target in [t.strip() for t in args.targets.split(",") if t.strip()]:
            common = [model, "-t", target, "--threads", str(args.threads)]
            print(f"== {model} on {target}, {args.threads} threads", file=sys.stderr, flush=True)
            bench, t_b = run_json(["bench", *common, "--min-time", f"{args.bench_seconds:g}", "--energy", "off"], None)
            offline, t_o = run_json(["loadgen", *common, "--scenario", "offline", "--duration", f"{args.duration:g}"],
                                    args.report_dir)
            peak, t_p = run_json(["loadgen", *common, "--scenario", "server", "--find-peak", *bound, "--duration",
                                  f"{args.step_duration:g}", "--peak-method", args.peak_method], args.report_dir)
            pq = peak["peak"]["qps"]
            row = {"model": model, "target": target, "bench_items_per_s": bench["throughput"]["items_per_s"],
                   "bench_p50_ms": bench["stats"]["p50"], "offline_samples_per_s": offline["loadgen"]["qps_achieved"],
                   "offline_valid": offline["loadgen"]["valid"], "peak_qps": pq,
                   "peak_steps": len(peak["peak"]["steps"]), "peak_failure": peak["peak"]["failure"],
                   "requests_in_flight": peak["settings"]["requests_in_flight"],
                   "seconds": {"bench": t_b, "offline": t_o, "find_peak": t_p}}
            runs = [bench, offline, peak]
            if pq:
                at, t_a = run_json(["loadgen", *common, "--scenario", "server", "--qps", f"{pq:g}", *bound,
                                    "--duration", f"{args.duration:g}"], args.report_dir)
                over, t_x = run_json(["loadgen", *common, "--scenario", "server", "--qps", f"{2 * pq:g}", *bound,
                                      "--duration", f"{args.duration:g}"], args.report_dir)
                runs += [at, over]
                row.update(at_peak_valid=at["loadgen"]["valid"], at_peak_reasons=at["loadgen"]["reasons"],
                           at_peak_p99_ms=at["loadgen"]["target"]["latency_at_percentile_ms"],
                           at_peak_achieved=at["loadgen"]["qps_achieved"],
                           at_2x_valid=over["loadgen"]["valid"], at_2x_reasons=over["loadgen"]["reasons"],
                           at_2x_achieved=over["loadgen"]["qps_achieved"],
                           at_2x_p99_ms=over["loadgen"]["target"]["latency_at_percentile_ms"])
                row["seconds"].update(at_peak=t_a, at_2x=t_x)
            rows.append(row)
            everything.append({"row": row, "reports": runs})
            print(json.dumps(row), file=sys.stderr, flush=True)

    print(f"\n| model | target | bench latency-mode items/s | Offline samples/s | peak Server QPS (p{args.percentile:g} <= "
          f"{args.bound:g} ms) | at the peak | at 2x the peak |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        at = ("VALID" if r.get("at_peak_valid") else "INVALID") + f", p{args.percentile:g} {r.get('at_peak_p99_ms') or 0:.1f} ms" \
            if r["peak_qps"] else "-"
        x2 = ("VALID" if r.get("at_2x_valid") else "INVALID: " + "; ".join(r.get("at_2x_reasons", [])[:2])) \
            if r["peak_qps"] else "-"
        peak = f"{r['peak_qps']:.0f} ({r['peak_steps']} steps, {r['requests_in_flight']} in flight)" if r["peak_qps"] \
            else f"none: {r['peak_failure']}"
        print(f"| {r['model']} | {r['target']} | {r['bench_items_per_s']:.1f} | {r['offline_samples_per_s']:.1f} | "
              f"{peak} | {at} | {x2} |")
    if args.json:
        args.json.write_text(json.dumps(everything, indent=2))


if __name__ == "__main__":
    main()
