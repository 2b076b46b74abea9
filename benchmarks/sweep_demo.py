"""Evidence that a sweep survives what sweeps meet: an interrupt (SIGINT after a few cells, then --resume runs only
the cells left), a cell that fails (a corrupt model file: recorded as failed, the sweep finishes), and a cell whose
process is SIGKILLed mid-measurement the way the kernel's out-of-memory killer would (recorded as killed).

    PYTHONPATH=. python benchmarks/sweep_demo.py                       # -> reports/sweeps/demo/, Markdown on stdout
    PYTHONPATH=. python benchmarks/sweep_demo.py --out /tmp/demo --min-time 0.2 --quick

Everything runs through the real CLI (``python -m deploykit sweep ...``) as a subprocess; the script only sends the
signals and reads the results table before and after. Takes 2-3 minutes on a quiet 2-core machine (less with
--quick). The Markdown it prints lists the commands it ran, so each step can be repeated by hand.
"""

from __future__ import annotations

import argparse
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path


def table(out: Path):
    import pandas as pd

    from deploykit.report.results import read_results

    try:
        return read_results(out)
    except Exception:
        return pd.DataFrame(columns=["cell", "status"])


def finished(out: Path) -> int:
    df = table(out)
    return int((df["status"].isin(["ok", "failed", "timeout", "killed"])).sum()) if len(df) else 0


def children(pid: int) -> list[int]:
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if int((d / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    out.append(int(d.name))
            except (OSError, ValueError, IndexError):
                pass
    return out


def sweep_cmd(args: list[str]) -> list[str]:
    return [sys.executable, "-m", "deploykit", "sweep", *args]


def _esc(v) -> str:
    if isinstance(v, float):
        return "-" if v != v else f"{v:.3f}"
    return str(v).replace("|", "\\|")


def md_rows(df, cols) -> list[str]:
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for r in df.to_dict("records"):
        lines.append("| " + " | ".join(_esc(r[c]) for c in cols) + " |")
    return lines


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=Path("reports/sweeps/demo"))
    ap.add_argument("--min-time", type=float, default=1.0)
    ap.add_argument("--interrupt-after", type=int, default=3, help="finished cells before SIGINT")
    ap.add_argument("--quick", action="store_true", help="one resolution (64) instead of 64 and 96")
    a = ap.parse_args()
    if a.out.exists():
        sys.exit(f"{a.out} exists: remove it or pass another --out")
    a.out.parent.mkdir(parents=True, exist_ok=True)
    inputs = a.out.parent / f"{a.out.name}-inputs"
    inputs.mkdir(exist_ok=True)
    broken = inputs / "broken.onnx"
    broken.write_bytes(b"\x08\x07this is not an ONNX protobuf" * 50)
    res = "64" if a.quick else "64,96"
    spec = ["resnet18", "deit_tiny", str(broken), "-t", "ort,openvino", "--resolution", res,
            "--min-time", str(a.min_time), "--max-time", str(max(10.0, a.min_time)), "-o", str(a.out)]
    md = ["# deploykit sweep: interrupt, resume, a failing cell, a killed cell", ""]

    # 1. run, SIGINT after a few finished cells
    cmd = sweep_cmd(spec)
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    while finished(a.out) < a.interrupt_after and proc.poll() is None:
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    _, err1 = proc.communicate()
    t_first = time.monotonic() - t0
    before = table(a.out)
    done_before = before[before["status"] != "skipped"]
    mtimes = {r["cell"]: (a.out / r["report"]).stat().st_mtime_ns for r in done_before.to_dict("records")}
    md += ["## 1. A sweep interrupted with SIGINT", "", "```", f"$ deploykit {shlex.join(cmd[3:])}   # SIGINT after "
           f"{a.interrupt_after} finished cells", *[ln for ln in err1.strip().splitlines()[-(a.interrupt_after + 2):]],
           f"exit code {proc.returncode}  ({t_first:.0f} s)", "```", "", "The table then:", ""]
    md += md_rows(before, ["cell", "status", "created", "report"]) + [""]

    # 2. resume: only the cells left run; the finished ones keep their report, time stamp and file
    cmd = sweep_cmd([*spec, "--resume"])
    t0 = time.monotonic()
    p2 = subprocess.run(cmd, capture_output=True, text=True)
    t_resume = time.monotonic() - t0
    after = table(a.out)
    ran = [ln for ln in p2.stderr.splitlines() if ln.startswith("[")]
    kept = []
    for r in after.to_dict("records"):
        if r["cell"] in mtimes:
            same = ((a.out / r["report"]).stat().st_mtime_ns == mtimes[r["cell"]]
                    and r["created"] == before.set_index("cell").loc[r["cell"], "created"])
            kept.append(f"| {_esc(r['cell'])} | {r['status']} | {'yes' if same else 'NO'} |")
    md += ["## 2. The same command with --resume", "", "```", f"$ deploykit {shlex.join(cmd[3:])}",
           *p2.stderr.splitlines(),
           f"exit code {p2.returncode}  ({t_resume:.0f} s)", "```", "",
           f"Cells run by the resume: {len(ran)} (the table had {len(after)} cells, {len(mtimes)} finished before "
           "the interrupt). Finished cells untouched by the resume (same report file, modification time and "
           "`created`):", "", "| cell | status | untouched |", "|---|---|---|", *kept, "",
           "The final table (the corrupt model's cells failed, the sweep finished):", ""]
    md += md_rows(after, ["cell", "status", "reason", "p50_ms", "wall_s"]) + [""]

    # 3. a cell killed by SIGKILL mid-measurement (what the out-of-memory killer does)
    kill_out = a.out.parent / f"{a.out.name}-killed"
    cmd = sweep_cmd(["resnet18", "--resolution", "64", "--min-time", "60", "--max-time", "60", "-o", str(kill_out)])
    p3 = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    victim = None
    deadline = time.monotonic() + 120
    while victim is None and time.monotonic() < deadline and p3.poll() is None:
        time.sleep(0.5)
        for c in children(p3.pid):
            try:
                if b"bench" in Path(f"/proc/{c}/cmdline").read_bytes():
                    victim = c
            except OSError:
                pass
    if victim is not None:
        time.sleep(8)  # well into the measurement
        os.kill(victim, signal.SIGKILL)
    out3, err3 = p3.communicate()
    killed = table(kill_out)
    md += ["## 3. A cell SIGKILLed mid-measurement (as by the out-of-memory killer)", "", "```",
           f"$ deploykit {shlex.join(cmd[3:])}   # kill -KILL <the cell's bench process> after 8 s",
           *err3.strip().splitlines(), f"exit code {p3.returncode}", "```", ""]
    md += md_rows(killed, ["cell", "status", "reason", "exit_code"]) + [""]
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    sys.exit(main())
