"""The gate's decision in a noise laboratory: simulated interleaved runs, decided with the real look schedule.

Every stream is a run of ABBA rounds (A B | B A | ...) of two blocks; a block is ``SAMPLES`` timed inferences and
its cost is their median (as bench/interleave.Block.cost("p50")). One inference costs

    base x (1 + step if B) x noise x (burst factor while the machine is busy) x drift(t)

with time t counted in inferences, so a burst can start or end inside a round and hit A and B unequally.
Noise kinds:
  iid      log-normal noise, sigma 3% (a quiet machine)
  noisy    log-normal noise, sigma 25%: rounds whose log-ratios spread by ~20%, as the A/A gates of the issue
           (MDE 17-65%) -- where re-testing at every look shows most
  heavy    Student-t (2 degrees of freedom) on the log scale, scale 2%: rare blocks several times slower
  bursty   an on/off load: busy and idle spells of 40-300 inferences each (0.2-1.5 s of a 5 ms model, as the
           background load of tests/integration/test_gate_under_load.py); while busy, inferences are slowed by
           the spell's factor (1.5-2.0) times time-slicing jitter (log-normal, sigma 0.35); plus 2% noise
  drift    the machine slows by 30% over a 60-round run (thermal / another job ramping up), plus 2% noise

The look schedule is gate/run.py's: looks after ``min_blocks`` rounds and every 2 rounds after it, stopping at
the first look that is not INCONCLUSIVE, up to ``max_blocks``. "False verdict" of an A/A stream (step 0): the
stop's outcome is REGRESSION or IMPROVEMENT. For steps above the tolerance, a PASS is the false verdict.

    python benchmarks/gate_noise_lab.py                 # 200 streams per noise kind and step, before and after
    python benchmarks/gate_noise_lab.py --streams 50 --kinds bursty --steps 0,0.1

"before" is the decision as it was before issue 24 (benchmarks/gate_decision_v1.py: a fixed-n bootstrap
interval re-tested at every look), "after" is deploykit.gate.decision.
"""

from __future__ import annotations

import argparse
import importlib.util
import math
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

KINDS = ("iid", "noisy", "heavy", "bursty", "drift")
SAMPLES = 5  # inferences per block (the gate's --block-iters default)


def simulate(kind: str, step: float, n_rounds: int, seed: int, samples: int = SAMPLES) -> np.ndarray:
    """Per-round log-ratios log(cost B / cost A) of one simulated interleaved run."""
    rng = np.random.default_rng(seed)
    t_total = n_rounds * 2 * samples
    if kind == "iid":
        log_noise = rng.normal(0.0, 0.03, t_total)
    elif kind == "noisy":
        log_noise = rng.normal(0.0, 0.25, t_total)
    elif kind == "heavy":
        log_noise = 0.02 * rng.standard_t(2, t_total)
    elif kind == "bursty":
        # busy and idle spells alternate, each 40-300 inferences long (0.2-1.5 s of a 5 ms model); while busy
        # an inference is slowed by the spell's factor (1.5-2x) and by time-slicing jitter (log-sd 0.35)
        factor = np.ones(t_total)
        t, busy = -int(rng.integers(0, 300)), bool(rng.random() < 0.5)
        while t < t_total:
            length = int(rng.integers(40, 301))
            if busy:
                lo, hi = max(t, 0), min(t + length, t_total)
                if hi > lo:
                    factor[lo:hi] = rng.uniform(1.5, 2.0) * np.exp(rng.normal(0.0, 0.35, hi - lo))
            t += length
            busy = not busy
        log_noise = rng.normal(0.0, 0.02, t_total) + np.log(factor)
    elif kind == "drift":
        log_noise = rng.normal(0.0, 0.02, t_total) + np.linspace(0.0, math.log(1.3), t_total)
    else:
        raise ValueError(f"unknown noise kind {kind!r}")
    cost = np.exp(log_noise).reshape(n_rounds, 2, samples)  # [round, first/second block, inference]
    first, second = np.median(cost[:, 0], axis=1), np.median(cost[:, 1], axis=1)
    ab = (np.arange(n_rounds) % 2) == 0  # even rounds run A first
    a = np.where(ab, first, second)
    b = np.where(ab, second, first) * (1.0 + step)
    return np.log(b / a)


@dataclass
class Outcome:
    outcome: str
    n: int


def run_schedule(lr: np.ndarray, decide: Callable[[tuple, float], str], *, min_blocks: int = 10,
                 max_blocks: int = 60) -> Outcome:
    """The gate's looks over one stream: after ``min_blocks`` rounds and every 2 after, first decided outcome."""
    n = min_blocks + min_blocks % 2
    out = "INCONCLUSIVE"
    while n <= max_blocks:
        out = decide(tuple(lr[:n]), 0.05)
        if out != "INCONCLUSIVE":
            return Outcome(out, n)
        n += 2
    return Outcome(out, max_blocks)


def _after(lr: tuple, tol: float) -> str:
    from deploykit.gate.decision import Evidence, decide_one

    return decide_one(Evidence(lr, tol), 0.95).outcome


def _load_before():
    path = Path(__file__).resolve().parent / "gate_decision_v1.py"
    spec = importlib.util.spec_from_file_location("gate_decision_v1", path)
    mod = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    sys.modules["gate_decision_v1"] = mod  # dataclasses look their module up
    spec.loader.exec_module(mod)  # type: ignore[union-attr]
    return mod


def before_decider(n_boot: int = 2000) -> Callable[[tuple, float], str]:
    mod = _load_before()

    def decide(lr: tuple, tol: float) -> str:
        return mod.decide(mod.Evidence(lr, tol), n_boot=n_boot).outcome

    return decide


def lab(kind: str, step: float, streams: int, decide: Callable[[tuple, float], str], *, seed: int = 0,
        min_blocks: int = 10, max_blocks: int = 60) -> list[Outcome]:
    return [run_schedule(simulate(kind, step, max_blocks, seed * 100_003 + i), decide, min_blocks=min_blocks,
                         max_blocks=max_blocks) for i in range(streams)]


def summary(outs: list[Outcome], step: float, tol: float = 0.05) -> dict:
    n = len(outs)
    share = {o: sum(x.outcome == o for x in outs) / n for o in ("PASS", "IMPROVEMENT", "INCONCLUSIVE", "REGRESSION")}
    if step == 0:
        false = share["REGRESSION"] + share["IMPROVEMENT"]
    elif step > tol:
        false = share["PASS"] + share["IMPROVEMENT"]
    else:
        false = share["IMPROVEMENT"]
    decided = [x.n for x in outs if x.outcome != "INCONCLUSIVE"]
    return {**share, "false": false, "median_blocks": statistics.median(decided) if decided else None}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--streams", type=int, default=200)
    ap.add_argument("--kinds", default=",".join(KINDS))
    ap.add_argument("--steps", default="0,0.03,0.05,0.10,0.20")
    ap.add_argument("--which", default="before,after")
    ap.add_argument("--n-boot", type=int, default=2000, help="bootstrap replicates of the 'before' decision")
    args = ap.parse_args(argv)
    deciders = {"after": _after, **({"before": before_decider(args.n_boot)} if "before" in args.which else {})}
    print("| decision | noise | step | streams | false verdict | REGRESSION | PASS | INCONCLUSIVE | IMPROVEMENT "
          "| median blocks to decision |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for which in args.which.split(","):
        for kind in args.kinds.split(","):
            for step in (float(s) for s in args.steps.split(",")):
                t0 = time.perf_counter()
                s = summary(lab(kind, step, args.streams, deciders[which]), step)
                print(f"| {which} | {kind} | {step:.0%} | {args.streams} | {s['false']:.1%} | {s['REGRESSION']:.1%} "
                      f"| {s['PASS']:.1%} | {s['INCONCLUSIVE']:.1%} | {s['IMPROVEMENT']:.1%} "
                      f"| {s['median_blocks']} |", flush=True)
                print(f"  ({time.perf_counter() - t0:.1f} s)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
