"""Accuracy of int8 on real images, offline: registry models trained on scikit-learn's digits, then every int8
variant evaluated on the held-out split on the runtime that runs it -- the seeds' question (does the int8 softmax
cost a ViT accuracy?) measured, through deploykit's own commands only.

    python benchmarks/accuracy/digits_study.py --out runs/digits            # the study (see its README.md)
    python benchmarks/accuracy/digits_study.py --out /tmp/d --models resnet18 --epochs 2 --quick   # a smoke run

Steps: ``deploykit data digits`` (64 px; seeded 1,438 train / 359 val) and ``deploykit data photos`` ->
``deploykit train MODEL`` (seeded, CPU) -> ``deploykit bench MODEL --weights W --eval-data val`` for fp32 on ORT and
OpenVINO, and for each int8 variant (ORT QDQ with the float and the int8 softmax for attention models, NNCF on
OpenVINO; calibrated on the digits train split, on natural photos or on synthetic noise; min-max, entropy and
percentile calibration) on the target that runs it: top-1, the drop against fp32 with its paired 95% CI and
McNemar's p; ``deploykit quantize --json`` gives each int8 file's per-block softmax error. Writes results.json and
a Markdown table (README-ready) into --out.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ATTENTION = {"deit_tiny", "deit_small", "mobilevit_s", "parc_net_s", "swin_tiny"}


def dk(*args: str, env: dict, log: Path) -> dict | list | None:
    """``deploykit ARGS --json`` as a child process; its JSON, or None when it failed (the log says why)."""
    cmd = [sys.executable, "-m", "deploykit", *args]
    t0 = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True, env=env)
    with open(log, "a") as fh:
        fh.write(f"$ deploykit {' '.join(args)}  ({time.perf_counter() - t0:.1f} s, exit {p.returncode})\n"
                 f"{p.stderr[-3000:]}\n")
    if p.returncode != 0:
        return None
    return json.loads(p.stdout) if p.stdout.strip().startswith(("{", "[")) else None


def variants(model: str, quick: bool) -> list[tuple[str, list[str], str]]:
    """(name, bench flags, target) of every int8 variant of ``model``."""
    out = []
    attention = model in ATTENTION
    softmaxes = ("float", "int8") if attention else ("default",)
    for sm in softmaxes:
        extra = [] if sm == "default" else ["--softmax", sm]
        out.append((f"ort int8 softmax={sm} calib=digits minmax", ["--int8", "--calib-data", "{train}", *extra],
                    "ort"))
        out.append((f"openvino int8 (QDQ) softmax={sm} calib=digits minmax",
                    ["--int8", "--calib-data", "{train}", *extra, "--precision", "fp32"], "openvino"))
    out.append(("openvino int8 NNCF calib=digits", ["--int8", "--quantizer", "nncf", "--calib-data", "{train}",
                                                    "--precision", "fp32"], "openvino"))
    if quick:
        return out
    sm = ["--softmax", "int8"] if attention else []
    for calib in ("photos", "synthetic"):
        out.append((f"ort int8 softmax={'int8' if attention else 'default'} calib={calib} minmax",
                    ["--int8", "--calib-data", "{" + calib + "}", *sm], "ort"))
    for method in ("entropy", "percentile"):
        out.append((f"ort int8 softmax={'int8' if attention else 'default'} calib=digits {method}",
                    ["--int8", "--calib-data", "{train}", "--calib-method", method, *sm], "ort"))
    return out


def first(doc):
    return doc[0] if isinstance(doc, list) else doc


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--models", default="resnet18,deit_tiny,mobilevit_s,parc_mobilenet_v2")
    ap.add_argument("--resolution", type=int, default=64)
    ap.add_argument("--epochs", type=int, default=15)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--calib-size", type=int, default=256)
    ap.add_argument("--quick", action="store_true", help="only the main int8 variants")
    a = ap.parse_args(argv)
    out = a.out
    out.mkdir(parents=True, exist_ok=True)
    log = out / "study.log"
    env = {**os.environ, "DEPLOYKIT_MODELS": str(out / "models"), "DEPLOYKIT_REPORTS": str(out / "reports")}
    data, photos = out / "digits", out / "photos"
    if not (data / "dataset.json").is_file():
        dk("data", "digits", "-o", str(data), "--size", str(a.resolution), "--json", env=env, log=log)
    if not (photos / "dataset.json").is_file():
        dk("data", "photos", "-o", str(photos), "--size", str(a.resolution), "--count", str(a.calib_size), "--json",
           env=env, log=log)
    paths = {"train": str(data / "train"), "photos": str(photos), "synthetic": "synthetic"}
    results = {"resolution": a.resolution, "epochs": a.epochs, "models": {}}
    done: dict[tuple[str, str], dict] = {}  # a rerun keeps every row that succeeded and retries the others
    if (out / "results.json").is_file():
        results = json.loads((out / "results.json").read_text())
        done = {(m, r["variant"]): r for m, v in results["models"].items() for r in v.get("rows", [])
                if "error" not in r}
    for model in [m.strip() for m in a.models.split(",") if m.strip()]:
        weights = out / f"{model}.pt"
        info = json.loads((out / f"{model}.train.json").read_text()) if (out / f"{model}.train.json").is_file() \
            else None
        if info is None:
            info = dk("train", model, "--data", str(data), "--resolution", str(a.resolution), "--epochs",
                      str(a.epochs), "--threads", str(a.threads), "-o", str(weights), "--json", env=env, log=log)
            if info is None:
                results["models"][model] = {"error": "training failed (study.log)"}
                continue
            (out / f"{model}.train.json").write_text(json.dumps(info, indent=1))
        common = [model, "--weights", str(weights), "--resolution", str(a.resolution), "--threads", str(a.threads),
                  "--min-time", "1", "--energy", "off", "--eval-data", str(data / "val"), "--json", "--no-save",
                  "--calib-size", str(a.calib_size)]
        rows = []
        todo = [(f"{t} fp32", ["--precision", "fp32"], t) for t in ("ort", "openvino")] + variants(model, a.quick)
        for name, flags, target in todo:
            if (model, name) in done:
                rows.append(done[(model, name)])
                continue
            flags = [f.format(**paths) for f in flags]
            r = dk("bench", *common, "-t", target, *flags, env=env, log=log)
            rows.append(_row(name, target, first(r) if r else None))
            results["models"][model] = {"train": info, "rows": rows}
            (out / "results.json").write_text(json.dumps(results, indent=1))
        results["models"][model] = {"train": info, "rows": rows}
        (out / "results.json").write_text(json.dumps(results, indent=1))
    (out / "table.md").write_text(table(results))
    print(table(results))
    return 0


def _row(name: str, target: str, r: dict | None) -> dict:
    if r is None:
        return {"variant": name, "target": target, "error": "failed (study.log)"}
    acc = r.get("accuracy") or {}
    vs = acc.get("vs_fp32") or {}
    q = r.get("quantization") or {}
    return {"variant": name, "target": target, "precision_ran": r["target"]["precision"],
            "p50_ms": r["stats"]["p50"], "p50_ci": r["stats"]["median_ci95"], "top1": acc.get("top1"),
            "top1_ci95": acc.get("top1_ci95"), "drop": vs.get("drop"), "drop_ci95": vs.get("ci95"),
            "mcnemar_p": vs.get("mcnemar_p"), "n": acc.get("n"), "softmax": q.get("softmax"),
            "softmax_errors": q.get("softmax_errors")}


def table(results: dict) -> str:
    lines = ["| model | variant | ran | p50 ms | top-1 % [95% CI] | drop pts [95% CI] | McNemar p | softmax block "
             "SQNR dB (min) |", "|---|---|---|---:|---|---|---:|---:|"]
    for model, m in results["models"].items():
        if "error" in m:
            lines.append(f"| {model} | {m['error']} | | | | | | |")
            continue
        t = m["train"]
        lines.append(f"| {model} | trained {t['epochs']} epochs in {t['train_seconds']:.0f} s, PyTorch fp32 val "
                     f"top-1 {100 * t['val_top1_fp32_pytorch']:.1f}% | | | | | | |")
        for r in m["rows"]:
            if "error" in r:
                lines.append(f"| {model} | {r['variant']} | {r['error']} | | | | | |")
                continue
            ci = r["top1_ci95"] or [None, None]
            top = f"{100 * r['top1']:.1f} [{100 * ci[0]:.1f}, {100 * ci[1]:.1f}]" if r["top1"] is not None else "-"
            drop = "-" if r["drop"] is None else \
                f"{100 * r['drop']:+.2f} [{100 * r['drop_ci95'][0]:+.2f}, {100 * r['drop_ci95'][1]:+.2f}]"
            p = "-" if r["mcnemar_p"] is None else f"{r['mcnemar_p']:.3g}"
            sm = r.get("softmax_errors") or []
            sq = min((b.get("attn_sqnr_db") for b in sm if b.get("attn_sqnr_db") is not None), default=None)
            lines.append(f"| {model} | {r['variant']} | {r['precision_ran']} | {r['p50_ms']:.3f} | {top} | {drop} | "
                         f"{p} | {'-' if sq is None else f'{sq:.1f}'} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
