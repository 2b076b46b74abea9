"""Harness overhead: `deploykit bench MODEL --target ort` p50 vs a bare `session.run` loop.

Both sides run as fresh subprocesses on the same ONNX file, the same seeded input and the same thread
count, interleaved A B B A ... so that machine drift hits both equally. The bare side is the loop a user
would write by hand (perf_counter_ns around session.run); the deploykit side is the real CLI. Prints each
round's p50s and the ratio deploykit/bare (goal <= 1.02).

    python benchmarks/harness_overhead.py --model resnet50 --rounds 6 --seconds 8
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import textwrap

BARE = textwrap.dedent("""
    import sys, time, numpy as np, onnxruntime as ort
    path, threads, seconds, warmup = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
    so = ort.SessionOptions(); so.intra_op_num_threads = threads; so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    s = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    inp = s.get_inputs()[0]
    x = np.random.default_rng(0).standard_normal(size=[1, 3, 224, 224] if inp.shape[2] in (None, "H") else inp.shape, dtype=np.float32)
    feed = {inp.name: x}
    for _ in range(warmup + 1):
        s.run(None, feed)
    ts = []
    end = time.perf_counter() + seconds
    while time.perf_counter() < end or len(ts) < 50:
        t0 = time.perf_counter_ns(); s.run(None, feed); ts.append(time.perf_counter_ns() - t0)
    print(float(np.median(ts)) / 1e6, len(ts))
""")


def run(cmd: list[str]) -> str:
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        sys.exit(f"command failed ({p.returncode}): {' '.join(cmd)}\n{p.stderr}")
    return p.stdout


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="resnet50")
    ap.add_argument("--rounds", type=int, default=6, help="pairs of (deploykit, bare) runs, ABBA order")
    ap.add_argument("--seconds", type=float, default=8.0, help="measured seconds per run")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--warmup", type=int, default=10)
    args = ap.parse_args()

    dk = [sys.executable, "-m", "deploykit"]
    path = run([*dk, "export", args.model]).strip().splitlines()[-1]
    results = {"deploykit": [], "bare": []}

    def deploykit_side():
        out = run([*dk, "bench", path, "--target", "ort", "--threads", str(args.threads), "--warmup",
                   str(args.warmup), "--min-time", str(args.seconds), "--min-iters", "50", "--json", "--no-save"])
        (rep,) = json.loads(out)  # bench --json: a list, one report per run
        results["deploykit"].append(rep["stats"]["p50"])
        return rep["stats"]["p50"], rep["timing"]["iterations"]

    def bare_side():
        p50, n = run([sys.executable, "-c", BARE, path, str(args.threads), str(args.seconds), str(args.warmup)]).split()
        results["bare"].append(float(p50))
        return float(p50), int(n)

    print("| round | order | deploykit p50 ms | bare p50 ms | ratio |\n|---|---|---|---|---|")
    ratios = []
    for i in range(args.rounds):
        order = (deploykit_side, bare_side) if i % 2 == 0 else (bare_side, deploykit_side)
        got = {f.__name__: f() for f in order}
        d, b = got["deploykit_side"][0], got["bare_side"][0]
        ratios.append(d / b)
        print(f"| {i + 1} | {'AB' if i % 2 == 0 else 'BA'} | {d:.3f} ({got['deploykit_side'][1]} it) | "
              f"{b:.3f} ({got['bare_side'][1]} it) | {d / b:.4f} |", flush=True)
    gm = statistics.geometric_mean(ratios)
    print(f"\nmodel {args.model}, threads {args.threads}, {args.rounds} rounds x {args.seconds:g} s")
    print(f"ratio deploykit/bare: geometric mean {gm:.4f}, median {statistics.median(ratios):.4f}, "
          f"min {min(ratios):.4f}, max {max(ratios):.4f} (goal <= 1.02)")
    print(f"median p50: deploykit {statistics.median(results['deploykit']):.3f} ms, "
          f"bare {statistics.median(results['bare']):.3f} ms")


if __name__ == "__main__":
    main()
