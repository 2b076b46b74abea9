"""Detection rate and false alarms of deploykit's change-point detector (history/detect.py) on synthetic series.

Each series: 40 points of lognormal noise (sigma = NOISE, relative), one step of size STEP at point 20 (none for
STEP 0). A hit: a step reported within 2 points of 20 with the right sign. A false alarm: any other reported
step. R series per cell, seeded. Prints a Markdown table and the time per series.

    PYTHONPATH=. python benchmarks/history_detection.py [R]
"""

from __future__ import annotations

import sys
import time

import numpy as np

from deploykit.history.detect import detect

NOISES = (0.005, 0.01, 0.02, 0.05)
STEPS = (0.0, 0.02, 0.05, 0.10, 0.15)
N, AT = 40, 20


def main(r: int = 100) -> None:
    rng = np.random.default_rng(2026)
    print("| noise (sigma) | step | detected | false alarms / series | series with a false alarm |")
    print("|---:|---:|---:|---:|---:|")
    t0, calls = time.perf_counter(), 0
    for noise in NOISES:
        for step in STEPS:
            hits = alarms = alarmed = 0
            for _ in range(r):
                v = np.full(N, 10.0)
                v[AT:] *= 1 + step
                v *= np.exp(rng.normal(0.0, noise, N))
                found = detect(v)
                calls += 1
                ok = [s for s in found if step and abs(s.index - AT) <= 2 and s.change > 0]
                hits += bool(ok)
                false = len(found) - (1 if ok else 0)
                alarms += false
                alarmed += false > 0
            det = f"{hits / r:.0%}" if step else "-"
            print(f"| {noise:.1%} | {step:+.0%} | {det} | {alarms / r:.2f} | {alarmed / r:.0%} |")
    print(f"\n{calls} series, {1e3 * (time.perf_counter() - t0) / calls:.1f} ms per series (40 points)")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 100)
