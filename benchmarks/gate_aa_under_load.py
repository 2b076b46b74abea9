"""Real A/A (and optionally A/B) gates under a bursty background load, decided before and after issue 24.

Each run is a real subprocess ``python -m deploykit gate CAND --against BASE`` (ONNX Runtime, 1 thread, short
blocks) measuring a fixed ``--rounds`` ABBA rounds while benchmarks/background_load.py keeps every core busy in
0.2-1.5 s spells (seeded per run). The recorded rounds (the gate report's blocks) are then replayed through the
gate's look schedule -- a look after 10 rounds and every 2 after, stopping at the first decided look -- with the
decision before issue 24 (benchmarks/gate_decision_v1.py) and after (deploykit.gate.decision): the same real
data, both decisions. A/A: the same ResNet-18 (64 px) file on both sides; any REGRESSION or IMPROVEMENT is false.

    python benchmarks/gate_aa_under_load.py --runs 20                  # ~5 min on 2 cores
    python benchmarks/gate_aa_under_load.py --runs 10 --slow 0.10      # A/B: a candidate ~10% slower
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.background_load import BurstLoad  # noqa: E402
from benchmarks.gate_noise_lab import _after, before_decider, run_schedule  # noqa: E402


def export_resnet18(folder: Path) -> Path:
    out = folder / "resnet18_64.onnx"
    subprocess.run([sys.executable, "-m", "deploykit", "export", "resnet18", "--resolution", "64", "-o", str(out),
                    "--models-dir", str(folder / "models")], check=True, cwd=REPO, capture_output=True)
    return out


def one_gate(cand: Path, base: Path, rounds: int, report_dir: Path) -> tuple[str, list[float]]:
    import numpy as np

    from deploykit.bench.interleave import Round, log_ratios

    cmd = [sys.executable, "-m", "deploykit", "gate", str(cand), "--against", str(base), "--threads", "1",
           "--block-time", "0.03", "--block-iters", "3", "--block-warmup", "1", "--min-blocks", str(rounds),
           "--max-blocks", str(rounds), "--report-dir", str(report_dir), "--json"]
    p = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    doc = json.loads(p.stdout)
    live = doc["checks"][0]["results"][0]["outcome"]
    report = max(report_dir.rglob("*.json"), key=lambda f: f.stat().st_mtime)
    chk = json.loads(report.read_text())["checks"][0]
    lr = log_ratios([Round.from_json(b) for b in chk["blocks"]], "p50")
    return live, list(np.asarray(lr, dtype=float))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=40)
    ap.add_argument("--slow", type=float, default=None, help="A/B: candidate slower by this fraction of MACs")
    ap.add_argument("--workers", type=int, default=2, help="background load processes")
    ap.add_argument("--out", type=Path, default=None, help="JSON with every run")
    args = ap.parse_args()
    before = before_decider(2000)
    tmp = Path(tempfile.mkdtemp(prefix="gate-aa-"))
    base = export_resnet18(tmp)
    cand = base
    if args.slow:
        from benchmarks.gate_study import make_slow

        cand = tmp / "slow.onnx"
        make_slow(base, cand, fraction=args.slow)
    rows = []
    print("| run | live (after, 1 look) | before: outcome @ blocks | after: outcome @ blocks | median log-ratio |")
    print("|---|---|---|---|---|")
    for i in range(args.runs):
        with BurstLoad(args.workers, seed=i):
            live, lr = one_gate(cand, base, args.rounds, tmp / f"r{i}")
        b = run_schedule(__import__("numpy").asarray(lr), before, max_blocks=args.rounds)
        a = run_schedule(__import__("numpy").asarray(lr), _after, max_blocks=args.rounds)
        rows.append({"run": i, "live": live, "before": [b.outcome, b.n], "after": [a.outcome, a.n], "log_ratios": lr})
        print(f"| {i} | {live} | {b.outcome} @ {b.n} | {a.outcome} @ {a.n} | {statistics.median(lr):+.3f} |",
              flush=True)
    for which in ("before", "after"):
        c = Counter(r[which][0] for r in rows)
        decided = [r[which][1] for r in rows if r[which][0] != "INCONCLUSIVE"]
        print(f"\n{which}: " + ", ".join(f"{k} {v}" for k, v in sorted(c.items()))
              + (f"; median blocks to decision {statistics.median(decided)}" if decided else ""))
    if args.out:
        args.out.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
