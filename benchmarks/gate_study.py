"""How right is `deploykit gate` on this machine? False alarms on identical artifacts, detection of real slowdowns.

(a) A/A: the same ResNet-18 ONNX file as both sides, N gate runs -> how many falsely fail (exit 4).
    Goal: 0; at most 1 in 20.
(b) A/B: a candidate made ~10% and ~20% slower by a real extra layer -- a residual branch
    Conv3x3(C->k) -> ReLU -> Conv1x1(k->C) -> Add spliced in after the first pooling layer, k chosen from the
    graph's multiply-accumulate count and then *calibrated by measurement* (a long interleaved run of the
    candidate against the original, repeated with k rescaled until the measured slowdown is within 1.5
    points of the target) -> how often each is caught (exit 4). Goals: >= 19/20 at 20%, >= 18/20 at 10%.
(c) Wall time of one gate run (a fresh `deploykit gate` process: start-up, loading both sessions, blocks,
    decision, outputs). Goal: under 2 minutes for one check on 2 cores. Also one cold run that exports the
    registry model first.

Every gate run is a real subprocess `python -m deploykit gate CAND --against BASE --target ort ...` with the
default gate settings (p50, tolerance 5%, alpha 0.05); its exit code and JSON are what is counted.

    python benchmarks/gate_study.py                          # the full study: 20 runs per arm (~15-25 min)
    python benchmarks/gate_study.py --runs 2 --arms aa,ab10  # a quick validation
    python benchmarks/gate_study.py make-slow IN.onnx OUT.onnx --fraction 0.2   # the slowdown, by MACs only

Results go to stdout (Markdown) and --out (JSON with every run's outcome, estimate, interval, blocks, wall).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------------------------------ the real slowdown

def _shapes(model) -> dict[str, list[int]]:
    import onnx

    inferred = onnx.shape_inference.infer_shapes(model)
    out = {}
    for vi in list(inferred.graph.value_info) + list(inferred.graph.input) + list(inferred.graph.output):
        dims = [d.dim_value for d in vi.type.tensor_type.shape.dim]
        if dims and all(d > 0 for d in dims):
            out[vi.name] = dims
    return out


def graph_macs(model) -> int:
    """Multiply-accumulates of the Conv / Gemm / MatMul nodes (static shapes)."""
    shapes = _shapes(model)
    inits = {i.name: list(i.dims) for i in model.graph.initializer}
    shapes.update(inits)
    macs = 0
    for n in model.graph.node:
        if n.op_type == "Conv" and n.output[0] in shapes and n.input[1] in shapes:
            w = shapes[n.input[1]]  # out, in/groups, kh, kw
            o = shapes[n.output[0]]
            macs += int(np.prod(o)) * int(np.prod(w[1:]))
        elif n.op_type in ("Gemm", "MatMul") and n.output[0] in shapes and n.input[1] in shapes:
            k = shapes[n.input[1]][0] if n.op_type == "Gemm" else shapes[n.input[1]][-2]
            macs += int(np.prod(shapes[n.output[0]])) * k
    return macs


def splice_point(model) -> tuple[str, list[int]]:
    """The output of the first MaxPool (else the first Relu) with a static 4-D shape."""
    shapes = _shapes(model)
    for op in ("MaxPool", "Relu"):
        for n in model.graph.node:
            if n.op_type == op and len(shapes.get(n.output[0], [])) == 4:
                return n.output[0], shapes[n.output[0]]
    raise SystemExit("no 4-D MaxPool/Relu output to splice the extra layer after")


def make_slow(src: Path, dst: Path, *, width: int | None = None, fraction: float | None = None, seed: int = 0) -> dict:
    """Write ``src`` with a residual branch Conv3x3(C->width) -> ReLU -> Conv1x1(width->C) -> Add spliced in;
    ``width`` from ``fraction`` of the graph's MACs when not given."""
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load(str(src))
    name, (n, c, h, w) = splice_point(model)
    total = graph_macs(model)
    per_width = 10 * c * h * w * n  # 9*C*k*H*W + k*C*H*W
    if width is None:
        width = max(1, round(fraction * total / per_width))
    rng = np.random.default_rng(seed)
    w1 = (rng.standard_normal((width, c, 3, 3)) * math.sqrt(2 / (9 * c))).astype(np.float32)
    w2 = (rng.standard_normal((c, width, 1, 1)) * 1e-3).astype(np.float32)  # small: outputs barely change
    pre = "dk_slow_"
    for node in model.graph.node:  # every consumer of the splice tensor reads the new sum instead
        for i, x in enumerate(node.input):
            if x == name:
                node.input[i] = pre + "sum"
    new = [
        helper.make_node("Conv", [name, pre + "w1"], [pre + "c1"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", [pre + "c1"], [pre + "r1"]),
        helper.make_node("Conv", [pre + "r1", pre + "w2"], [pre + "c2"], kernel_shape=[1, 1]),
        helper.make_node("Add", [name, pre + "c2"], [pre + "sum"]),
    ]
    idx = next(i for i, nd in enumerate(model.graph.node) if name in nd.output) + 1
    for k, nd in enumerate(new):
        model.graph.node.insert(idx + k, nd)
    model.graph.initializer.extend([numpy_helper.from_array(w1, pre + "w1"), numpy_helper.from_array(w2, pre + "w2")])
    onnx.checker.check_model(model)
    dst.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(dst))
    extra = per_width * width
    return {"path": str(dst), "width": width, "splice": name, "splice_shape": [n, c, h, w], "extra_macs": extra,
            "graph_macs": total, "mac_fraction": extra / total}


def measured_slowdown(base: Path, cand: Path, threads: int, rounds: int) -> tuple[float, float, float]:
    """p50 ratio cand/base over ``rounds`` interleaved ABBA blocks -- exp of the median per-round log-ratio, the gate's
    own estimator -- with its 95% bootstrap CI."""
    sys.path.insert(0, str(REPO))
    from deploykit.bench.interleave import block_config, load_side, run_interleaved
    from deploykit.bench.stats import bootstrap_ci
    from deploykit.runtimes.options import RuntimeOptions
    from deploykit.export.source import resolve_model
    from deploykit.runtimes.base import get_runtime

    cls = get_runtime("ort")
    opts = RuntimeOptions(threads=threads)
    a = load_side("base", resolve_model(str(base), batch=1, resolution=None), cls, opts)
    b = load_side("cand", resolve_model(str(cand), batch=1, resolution=None), cls, opts)
    try:
        run = run_interleaved(a.side, b.side, block_config(), min_rounds=rounds, max_rounds=rounds)
    finally:
        a.close()
        b.close()
    lr = run.log_ratios("p50")
    lo, hi = bootstrap_ci(lr, "median")
    return math.expm1(float(np.median(lr))), math.expm1(lo), math.expm1(hi)


def calibrate(base: Path, dst: Path, target: float, threads: int, rounds: int, log) -> dict:
    info = make_slow(base, dst, fraction=target)
    for attempt in range(4):
        got, lo, hi = measured_slowdown(base, dst, threads, rounds)
        log(f"  width {info['width']} ({info['mac_fraction']:.1%} of MACs): measured {got:+.1%} "
            f"[{lo:+.1%}, {hi:+.1%}] (target {target:+.0%})")
        info.update(measured=got, measured_ci=[lo, hi])
        if abs(got - target) <= 0.015 or attempt == 3:
            break
        width = max(1, round(info["width"] * target / max(got, 0.005)))
        if width == info["width"]:
            break
        info = make_slow(base, dst, width=width)
    return info


# ---------------------------------------------------------------------------------------------- gate runs

def gate_run(cand: str, base: str, threads: int, extra: list[str], env: dict) -> dict:
    cmd = [sys.executable, "-m", "deploykit", "gate", cand, "--against", base, "--target", "ort", "--threads",
           str(threads), "--no-save", "--json", "--no-github", *extra]
    t0 = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO)
    wall = time.perf_counter() - t0
    if p.returncode not in (0, 4, 5):
        raise SystemExit(f"gate failed ({p.returncode}): {' '.join(cmd)}\n{p.stderr[-2000:]}")
    doc = json.loads(p.stdout)
    r = doc["checks"][0]["results"][0]
    return {"exit": p.returncode, "outcome": r["outcome"], "estimate": r["estimate"], "ci": r["ci"], "mde": r["mde"],
            "blocks": r["n"], "stop": doc["checks"][0]["stop_reason"], "wall_s": wall}


def arm(label: str, cand: str, base: str, runs: int, threads: int, extra: list[str], env: dict, log) -> list[dict]:
    out = []
    for i in range(runs):
        r = gate_run(cand, base, threads, extra, env)
        out.append(r)
        log(f"  {label} run {i + 1}/{runs}: exit {r['exit']} {r['outcome']:<12} {r['estimate']:+.2%} "
            f"[{r['ci'][0]:+.2%}, {r['ci'][1]:+.2%}] MDE {r['mde']:.2%} {r['blocks']} blocks {r['wall_s']:.1f} s")
    return out


def summarize(label: str, runs: list[dict]) -> dict:
    outcomes = [r["outcome"] for r in runs]
    walls = [r["wall_s"] for r in runs]
    return {"arm": label, "runs": len(runs), "failed": sum(r["exit"] == 4 for r in runs),
            "PASS": outcomes.count("PASS"), "INCONCLUSIVE": outcomes.count("INCONCLUSIVE"),
            "REGRESSION": outcomes.count("REGRESSION"), "IMPROVEMENT": outcomes.count("IMPROVEMENT"),
            "median_estimate": statistics.median(r["estimate"] for r in runs),
            "median_blocks": statistics.median(r["blocks"] for r in runs),
            "wall_median_s": statistics.median(walls), "wall_max_s": max(walls)}


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "make-slow":
        ap = argparse.ArgumentParser(prog="gate_study.py make-slow")
        ap.add_argument("src", type=Path)
        ap.add_argument("dst", type=Path)
        ap.add_argument("--fraction", type=float, default=0.2, help="extra MACs as a fraction of the graph's")
        ap.add_argument("--width", type=int, default=None)
        a = ap.parse_args(sys.argv[2:])
        print(json.dumps(make_slow(a.src, a.dst, width=a.width, fraction=a.fraction)))
        return
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="resnet18")
    ap.add_argument("--resolution", type=int, default=224)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=20, help="gate runs per arm")
    ap.add_argument("--arms", default="aa,ab10,ab20,cold", help="which parts: aa, ab10, ab20, cold")
    ap.add_argument("--calib-blocks", type=int, default=40, help="ABBA blocks per calibration measurement")
    ap.add_argument("--gate-args", default="", help="extra arguments for every gate run, e.g. '--max-blocks 40'")
    ap.add_argument("--workdir", type=Path, default=None, help="artifact folder [default: a temporary folder]")
    ap.add_argument("--out", type=Path, default=Path("gate_study.json"))
    args = ap.parse_args()
    arms = [a.strip() for a in args.arms.split(",") if a.strip()]
    work = args.workdir or Path(tempfile.mkdtemp(prefix="gate-study-"))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p),
           "DEPLOYKIT_MODELS": str(work / "models"), "DEPLOYKIT_REPORTS": str(work / "reports")}
    extra = args.gate_args.split()

    def log(msg):
        print(msg, file=sys.stderr, flush=True)

    t_start = time.perf_counter()
    exp = subprocess.run([sys.executable, "-m", "deploykit", "export", args.model, "--resolution", str(args.resolution)],
                         capture_output=True, text=True, env=env, cwd=REPO)
    if exp.returncode != 0:
        raise SystemExit(exp.stderr)
    base = Path(exp.stdout.strip().splitlines()[-1])
    log(f"baseline artifact: {base}")
    result = {"model": args.model, "resolution": args.resolution, "threads": args.threads, "runs_per_arm": args.runs,
              "gate_args": extra, "cpu": _cpu(), "arms": {}, "slowdowns": {}, "runs": {}}
    rows = []
    if "aa" in arms:
        log("(a) A/A: the same artifact on both sides")
        runs = arm("A/A", str(base), str(base), args.runs, args.threads, extra, env, log)
        result["runs"]["aa"] = runs
        rows.append(summarize("A/A (same artifact)", runs))
    for key, frac in (("ab10", 0.10), ("ab20", 0.20)):
        if key not in arms:
            continue
        log(f"(b) A/B: calibrating a ~{frac:.0%} slower candidate (extra residual conv branch)")
        slow = work / f"{args.model}_slow{int(frac * 100)}.onnx"
        info = calibrate(base, slow, frac, args.threads, args.calib_blocks, log)
        result["slowdowns"][key] = info
        runs = arm(f"A/B {frac:.0%}", str(slow), str(base), args.runs, args.threads, extra, env, log)
        result["runs"][key] = runs
        rows.append(summarize(f"A/B +{info['measured']:.1%} measured (target {frac:.0%})", runs))
    if "cold" in arms:
        log("(c) one cold gate run: registry model exported in the run (fresh artifact store)")
        cold_env = {**env, "DEPLOYKIT_MODELS": str(work / "cold-models")}
        r = gate_run(args.model, str(base), args.threads, ["--resolution", str(args.resolution), *extra], cold_env)
        result["cold_run"] = r
        log(f"  cold: {r['outcome']} in {r['wall_s']:.1f} s")
    result["rows"] = rows
    result["study_wall_s"] = time.perf_counter() - t_start
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\n## gate study: {args.model} r{args.resolution}, {args.threads} threads, {args.runs} runs per arm\n")
    print(f"machine: {result['cpu']}; gate args: {' '.join(extra) or '(defaults)'}\n")
    print("| arm | runs | failed (exit 4) | PASS | INCONCLUSIVE | REGRESSION | median estimate | median blocks | "
          "wall median s | wall max s |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['arm']} | {r['runs']} | {r['failed']} | {r['PASS']} | {r['INCONCLUSIVE']} | {r['REGRESSION']} | "
              f"{r['median_estimate']:+.2%} | {r['median_blocks']:g} | {r['wall_median_s']:.1f} | {r['wall_max_s']:.1f} |")
    for key, info in result["slowdowns"].items():
        print(f"\n{key}: extra branch width {info['width']} after {info['splice']} {info['splice_shape']}: "
              f"{info['mac_fraction']:.1%} more MACs, measured slowdown {info['measured']:+.1%} "
              f"(95% CI {info['measured_ci'][0]:+.1%} to {info['measured_ci'][1]:+.1%})")
    if "cold_run" in result:
        print(f"\ncold run (export + gate): {result['cold_run']['wall_s']:.1f} s, {result['cold_run']['outcome']}")
    print(f"\nstudy wall time {result['study_wall_s']:.0f} s; details in {args.out}")


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return f"{line.split(':', 1)[1].strip()} x{os.cpu_count()}"
    except OSError:
        pass
    return "unknown"


if __name__ == "__main__":
    main()
