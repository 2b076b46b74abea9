"""The closing-note table of issue 22 from ``deploykit tune`` folders: per model, the default fp32 and default int8
of each target and the tuned variant (target, precision, softmax, fallback set, settings), with the p50 and its
95% CI (the last rung that measured it), the accuracy drop or fidelity, the A/B verdicts and the wall time against
the budget. Each target's answer (ANSWER) is its tuned int8 where the A/B found it faster than that target's
default fp32, else the default fp32: a tuned int8 that is not faster is shown, never shipped.

    python benchmarks/tune_table.py reports/tune/*-224/tune.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def _f(x, digits: int = 3) -> str:
    return "n/a" if x is None else f"{x:.{digits}g}"


def rows_of(doc: dict) -> list[list[str]]:
    pts = {p["id"]: p for p in doc.get("points") or []}
    cands = {c["id"]: c for c in doc["candidates"]}
    winner = (doc.get("winner") or {}).get("id")
    ab = doc.get("ab") or []
    show: list[tuple[str, str]] = []
    for c in doc["candidates"]:
        if c["role"] in ("fp32-default", "int8-default"):
            show.append((c["id"], c["role"].replace("-", " ")))
    # the tuned int8 of every target (the best int8 that reached the last rung)
    for target in dict.fromkeys(c["target"] for c in doc["candidates"]):
        best = next((cid for cid in doc.get("ranked", []) if cands[cid]["target"] == target
                     and cands[cid]["precision"] == "int8"), None)
        if best is not None and best not in dict(show):
            show.append((best, "tuned int8"))
        elif best is not None:
            show = [(cid, role + " = tuned int8" if cid == best else role) for cid, role in show]
    # OpenVINO + NNCF next to the rest: its best-measured candidate, where the search had one and it is not shown yet
    nncf = sorted((p["cost"], cid) for cid, p in pts.items() if cands[cid].get("quantizer") == "nncf"
                  and isinstance(p.get("cost"), (int, float)))
    if nncf and nncf[0][1] not in dict(show):
        show.append((nncf[0][1], "best NNCF int8"))
    # each target's answer: its tuned int8 where the A/B found it faster than the default fp32, else that fp32
    answers = {t.get("answer"): tgt for tgt, t in (doc.get("per_target") or {}).items() if t.get("answer")}
    show = [(cid, role + f" = ANSWER on {answers[cid]}" if cid in answers else role) for cid, role in show]
    if winner is not None:
        show = [(cid, role + " = WINNER" if cid == winner else role) for cid, role in show]
        if winner not in dict(show):
            show.append((winner, "WINNER"))
    out = []
    for cid, role in show:
        c, p = cands[cid], pts.get(cid)
        verdicts = [f"{a['verdict']} vs {cands[a['a']]['target']} {cands[a['a']]['precision']}"
                    + ("" if cands[a['a']]['role'] != "fp32-default" else " default")
                    for a in ab if a.get("b") == cid and a.get("a") in cands]
        settings = ", ".join(f"{k}={v}" for k, v in sorted((c.get("settings") or {}).items()) if k != "threads")
        acc = (f"{_f(p['drop_points'])} pts" if p and p.get("drop_points") is not None
               else (p or {}).get("fidelity") or "not timed")
        prec = c["precision"] if c["precision"] != "int8" else f"int8 ({c.get('quantizer')}, {c.get('calib_method')})"
        out.append([doc["model"], role, c["target"], prec, c.get("softmax") or "-",
                    str(len(c.get("fallback") or [])) if c["precision"] == "int8" else "-", settings or "-",
                    f"{_f(p['p50_ms'])} [{_f(p['ci_low_ms'])}, {_f(p['ci_high_ms'])}] ({p['stage']})" if p else
                    "dropped / not timed", acc, "; ".join(verdicts) or "-"])
    return out


def main(paths: list[str]) -> None:
    head = ["model", "variant", "target", "precision", "softmax", "fallback nodes", "settings", "p50 ms [95% CI]",
            "accuracy / fidelity", "A/B (tuned vs)"]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    walls = []
    for path in paths:
        doc = json.loads(Path(path).read_text())
        for r in rows_of(doc):
            print("| " + " | ".join(r) + " |")
        walls.append((doc["model"], doc.get("wall_s"), doc.get("budget_s"), doc.get("within_budget")))
    print()
    print("| model | wall s | budget s | within |")
    print("|---|---|---|---|")
    for m, w, b, ok in walls:
        print(f"| {m} | {_f(w, 4)} | {_f(b, 4)} | {ok} |")


if __name__ == "__main__":
    main(sys.argv[1:])
