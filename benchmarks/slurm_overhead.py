"""The Slurm executor's overhead per cell: the same small sweep through ``--executor local`` and
``--executor slurm``, interleaved (local, slurm, slurm, local, ...), cells one after another on the same machine.

Each sweep runs through deploykit's own API (plan, make_executor, run_sweep) into a fresh folder; the time of
every row's arrival is taken on the submitting side. A cell's time is the gap since the previous row (the first:
since the sweep started, submission included); its ``wall_s`` is the cell's child on the node. Printed: every
cell of every round, then per executor the median time per cell, and the Slurm overhead per cell (slurm minus
local, paired by round and cell, median with a bootstrap 95% CI from bench/stats.py) and its part outside the
cell's child (time per cell minus wall_s: scheduling, Python and submitit starting on the node, the result coming
back).

    sudo PYTHONPATH=. .venv/bin/python benchmarks/slurm_overhead.py                 # a private one-node Slurm
    PYTHONPATH=. .venv/bin/python benchmarks/slurm_overhead.py --existing --partition bench --nodelist node7

Without --existing it starts a one-node Slurm of its own on this machine (tests/slurm_cluster.py: root, Debian's
slurm-wlm and munge) and stops it by PID at the end; with --existing it uses the cluster SLURM_CONF / the
defaults point at (--nodelist keeps the jobs on one node, so cells run one after another as in the local sweep).
Models are exported by a warm-up sweep first, so no round pays for an export. 3 round pairs of 4 cells at
--min-time 1 take about 2-3 minutes on a quiet 2-core machine.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path


def one_sweep(executor: str, out: Path, args, settings) -> list[dict]:
    from deploykit.sweep.executor import EXECUTORS, make_executor
    from deploykit.sweep.run import plan, run_sweep
    from deploykit.sweep.spec import spec_from

    spec = spec_from(args.models, targets=args.targets, resolution=[args.resolution],
                     bench={"min_time": args.min_time, "max_time": max(args.min_time, 1.0) * 2, "min_iters": 20,
                            "warmup": 5, "cell_timeout": 300})
    p = plan(spec, out, targets_here=EXECUTORS.get(executor).runs_here)
    kw = {"settings": settings} if executor == "slurm" else {}
    ex = make_executor(executor, spec.bench, out, **kw)
    arrivals = []
    t0 = time.monotonic()
    rows = run_sweep(p, ex, out, on_row=lambda row, counts: arrivals.append((time.monotonic(), row)))
    last = t0
    out_rows = []
    for t, row in arrivals:
        out_rows.append({"executor": executor, "cell": row["cell"], "status": row["status"], "gap_s": t - last,
                         "wall_s": float(row["wall_s"]), "job_id": row.get("job_id") or ""})
        last = t
    bad = [r for r in rows if r["status"] != "ok"]
    if bad:
        sys.exit(f"{executor}: {len(bad)} cells did not finish ok: {bad[0]['cell']}: {bad[0]['reason']}")
    return out_rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=["resnet18", "deit_tiny"])
    ap.add_argument("--targets", nargs="+", default=None, help="[default: ort, and openvino where installed]")
    ap.add_argument("--resolution", type=int, default=64)
    ap.add_argument("--min-time", type=float, default=1.0)
    ap.add_argument("--rounds", type=int, default=3, help="pairs of (local, slurm) sweeps, ABBA order")
    ap.add_argument("--existing", action="store_true", help="use the cluster SLURM_CONF points at")
    ap.add_argument("--partition", default=None)
    ap.add_argument("--nodelist", default=None, help="--existing: the one node all jobs run on")
    ap.add_argument("--out", type=Path, default=None, help="a folder the node sees [default: a temporary one]")
    args = ap.parse_args()

    from deploykit.bench.stats import bootstrap_ci
    from deploykit.runtimes.base import get_runtime
    from deploykit.sweep.sbatch import SlurmSettings

    if args.targets is None:
        args.targets = ["ort"] + (["openvino"] if get_runtime("openvino").availability().available else [])
    work = Path(args.out or tempfile.mkdtemp(prefix="slurm-overhead-"))
    work.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("DEPLOYKIT_MODELS", str(work / "models"))
    cluster = None
    if not args.existing:
        from tests.slurm_cluster import start_cluster, unavailable_reason

        reason = unavailable_reason()
        if reason:
            sys.exit(f"cannot start a one-node Slurm here: {reason} (or pass --existing)")
        cluster = start_cluster(work / "cluster")
        os.environ.update(cluster.env)
        print(f"one-node Slurm started under {work / 'cluster'} (PIDs {cluster.pids})", flush=True)
    sbatch = (("nodelist", args.nodelist),) if args.nodelist else ()
    settings = SlurmSettings(partition=args.partition or ("bench" if cluster else None), sbatch=sbatch)
    try:
        one_sweep("local", work / "warmup", args, settings)  # exports the models
        rows = []
        order = [e for i in range(args.rounds) for e in (("local", "slurm") if i % 2 == 0 else ("slurm", "local"))]
        for i, executor in enumerate(order):
            got = one_sweep(executor, work / f"round{i}-{executor}", args, settings)
            for r in got:
                r["round"] = i // 2
                print(f"round {r['round']} {executor:5s} {r['cell']:40s} time {r['gap_s']:6.2f} s  wall_s "
                      f"{r['wall_s']:6.2f} s  outside the cell {r['gap_s'] - r['wall_s']:5.2f} s  {r['job_id']}",
                      flush=True)
            rows += got
    finally:
        if cluster is not None:
            cluster.stop()
        if args.out is None:  # a temporary folder of ours
            import shutil

            shutil.rmtree(work, ignore_errors=True)
    import numpy as np

    def med(xs):
        return float(np.median(xs))

    for executor in ("local", "slurm"):
        mine = [r for r in rows if r["executor"] == executor]
        print(f"{executor:5s}: median per cell {med([r['gap_s'] for r in mine]):.2f} s, of which the cell's child "
              f"{med([r['wall_s'] for r in mine]):.2f} s, outside it {med([r['gap_s'] - r['wall_s'] for r in mine]):.2f} s"
              f" ({len(mine)} cells)")
    paired = {}
    for r in rows:
        paired.setdefault((r["round"], r["cell"]), {})[r["executor"]] = r["gap_s"]
    diffs = [v["slurm"] - v["local"] for v in paired.values() if len(v) == 2]
    lo, hi = bootstrap_ci(diffs, "median")
    print(f"Slurm overhead per cell (slurm - local, paired by round and cell): median {med(diffs):.2f} s, "
          f"95% CI {lo:.2f}-{hi:.2f} s ({len(diffs)} pairs)")


if __name__ == "__main__":
    main()
