"""A reproducible bursty background load: worker processes that alternate busy spells (a pure-Python spin) and
idle spells (sleep), each 0.2-1.5 s long, drawn from a seeded generator -- the shared CI runner in miniature.

    with BurstLoad(workers=2, seed=0):
        ...  # measure under load

The workers are started in ``__enter__`` and terminated (then killed if need be) in ``__exit__``, whatever happens
inside; each also exits on its own after ``max_s`` seconds, so an interrupted test leaves nothing behind.

    python benchmarks/background_load.py --workers 2 --seconds 600   # run the load by hand beside anything
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import random
import time


def _spin(seed: int, max_s: float, lo: float, hi: float) -> None:
    rng = random.Random(seed)
    end = time.monotonic() + max_s
    busy = rng.random() < 0.5
    while time.monotonic() < end:
        spell = rng.uniform(lo, hi)
        stop = min(end, time.monotonic() + spell)
        if busy:
            x = 0
            while time.monotonic() < stop:
                for i in range(2000):
                    x += i * i
        else:
            time.sleep(max(0.0, stop - time.monotonic()))
        busy = not busy


class BurstLoad:
    def __init__(self, workers: int = 2, seed: int = 0, *, spell: tuple[float, float] = (0.2, 1.5),
                 max_s: float = 900.0):
        self.workers, self.seed, self.spell, self.max_s = workers, seed, spell, max_s
        self.procs: list = []

    def __enter__(self) -> "BurstLoad":
        ctx = mp.get_context("fork")
        for k in range(self.workers):
            p = ctx.Process(target=_spin, args=(self.seed * 1000 + k, self.max_s, *self.spell), daemon=True)
            p.start()
            self.procs.append(p)
        return self

    def __exit__(self, *exc) -> None:
        for p in self.procs:
            p.terminate()
        for p in self.procs:
            p.join(timeout=5)
            if p.is_alive():
                p.kill()
                p.join(timeout=5)
        self.procs = []


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--seconds", type=float, default=600.0)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    with BurstLoad(args.workers, args.seed, max_s=args.seconds):
        time.sleep(args.seconds)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
