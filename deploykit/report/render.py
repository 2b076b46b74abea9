"""Human renderings of reports: summary rows, Markdown, CSV (rich tables live in the CLI)."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from deploykit.core.atomic import ensure_dir, write_json, write_text
from deploykit.report import numbers as N
from deploykit.report.schema import report_stem

SUMMARY_COLUMNS = [
    ("model", "model"), ("variant", "variant"), ("family", "family"), ("target", "target"),
    ("precision", "precision"), ("batch", "batch"), ("input", "input"), ("p50_ms", "p50 ms"),
    ("ci95_ms", "p50 95% CI"), ("p90_ms", "p90 ms"), ("p99_ms", "p99 ms"), ("mean_ms", "mean ms"), ("cv", "CV"),
    ("items_per_s", "items/s"), ("load_ms", "load ms"), ("first_ms", "1st inf ms"), ("iterations", "iters"),
    ("top1", "top-1 agree"), ("cosine", "cosine"), ("max_abs", "max abs err"), ("rel_err", "rel err"),
    ("fidelity", "fidelity"), ("mode", "mode"), ("j_per_inf", "J/inference"), ("energy", "energy"),
    ("rss_peak_mb", "RSS peak MB"), ("rss_increase_mb", "RSS +MB"), ("gpu_peak_mb", "GPU MB"),
    ("artifact_mb", "file MB"), ("gmacs", "GMACs"), ("gflops", "GFLOP/s"), ("peak_share", "of measured peak"),
]

# CSV: one row per report, numbers as numbers. Which run it was comes first (concatenated CSVs stay
# readable); the CI is two numeric columns and CV is in percent, as the other renderings show it.
CSV_CONTEXT = ["created", "host", "deploykit_git", "threads"]
CSV_REPLACE = {"ci95_ms": ["ci95_lo_ms", "ci95_hi_ms"], "cv": ["cv_pct"]}


def csv_columns() -> list[str]:
    cols = list(CSV_CONTEXT)
    for k, _ in SUMMARY_COLUMNS:
        cols += CSV_REPLACE.get(k, [k])
    return cols


def variant_text(r: dict, short: bool = False) -> str:
    """The model options the artifact was built with (e.g. ``parc_impl=fft``; ``impl=fft`` when ``short``):
    registry defaults included, so a ParC run always says which implementation ran."""
    m = r["model"]
    opts = (m.get("export_settings") or {}).get("options") or {}
    return " ".join(f"{k.split('_')[-1] if short else k}={v}" for k, v in sorted(opts.items()))


def git_text(env: dict) -> str:
    d = env.get("deploykit") or {}
    sha = d.get("sha")
    return f"{sha[:12]}{'+dirty' if d.get('dirty') else ''}" if sha else ""


def summary_row(r: dict) -> dict:
    """The numbers of one report, by summary key. A tail percentile the run does not support (fewer than 10
    samples beyond it: ``stats.tails_supported``) is None; the report itself keeps it."""
    s, t, f = r["stats"], r["timing"], r["fidelity"]
    lo, hi = s["median_ci95"]
    supported = s.get("tails_supported") or {}
    env = r.get("environment") or {}
    return {
        "created": r.get("created", ""),
        "host": env.get("host") or "",
        "deploykit_git": git_text(env),
        "threads": r["target"]["info"].get("threads", env.get("threads")),
        "model": r["model"]["label"],
        "variant": variant_text(r),
        "family": r["model"].get("family") or "",
        "target": r["target"]["name"],
        "precision": r["target"]["precision"],
        "batch": r["throughput"]["batch"],
        "input": "x".join(str(d) for d in r["model"]["input"]["shape"]),
        "p50_ms": s["p50"],
        "ci95_ms": f"{fmt('p50_ms', lo)}-{fmt('p50_ms', hi)}",  # with the p50's own precision
        "ci95_lo_ms": lo,
        "ci95_hi_ms": hi,
        "p90_ms": s["p90"] if supported.get("p90", True) else None,
        "p99_ms": s["p99"] if supported.get("p99", True) else None,
        "mean_ms": s["mean"],
        "cv": s["cv"],
        "cv_pct": s["cv"] * 100,
        "items_per_s": r["throughput"]["items_per_s"],
        "load_ms": t["load_ms"],
        "first_ms": t["first_inference_ms"],
        "iterations": t["iterations"],
        "top1": f["top1"],
        "cosine": f["cosine"],
        "max_abs": f["max_abs"],
        "rel_err": f.get("rel_err"),
        "fidelity": {True: "pass", False: "FAIL", None: "n/a"}[f["passed"]],
        "mode": _mode_text(r["throughput"]),
        "j_per_inf": _headline_energy(r.get("energy")),
        "energy": _energy_status(r.get("energy")),
        **_cost_row(r),
    }


def _cost_row(r: dict) -> dict:
    """Memory, complexity and efficiency columns (None where the report lacks them)."""
    mem, cx, eff = r.get("memory") or {}, r["model"].get("complexity") or {}, r.get("efficiency") or {}
    return {"rss_peak_mb": mem.get("rss_peak_mb"), "rss_increase_mb": mem.get("rss_increase_mb"),
            "gpu_peak_mb": mem.get("gpu_peak_mb"), "artifact_mb": mem.get("artifact_mb"),
            "gmacs": cx["macs"] / 1e9 if cx.get("macs") is not None else None,
            "gflops": eff.get("gflops"), "peak_share": eff.get("share_of_measured")}


def _mode_text(tp: dict) -> str:
    mode = tp.get("mode", "latency")
    return f"throughput x{tp.get('requests_in_flight', 1)}" if mode == "throughput" else mode


def _headline_domain(e: dict | None) -> dict | None:
    """The energy domain shown in tables: the first measured one, else an explicit estimate."""
    if not e:
        return None
    doms = [d for d in e.get("domains", []) if d.get("joules")]
    return next((d for d in doms if not d.get("estimated")), None) or next(iter(doms), None)


def _headline_energy(e: dict | None):
    d = _headline_domain(e)
    return d["j_per_inference"] if d else None


def _energy_status(e: dict | None) -> str:
    if not e:
        return "-"
    d = _headline_domain(e)
    if d is None:
        return e.get("status", "-")
    label = "estimated" if d.get("estimated") else ("sampled" if d.get("sampled") else "measured")
    return f"{label}: {d['scope']}"


def fmt(key: str, value) -> str:
    """A summary cell: each column's precision, written by report/numbers.py ("-" when there is none)."""
    if value is None or isinstance(value, str):
        return N.MISSING if value is None else value
    how = _CELL.get(key)
    if how is None:
        if key.endswith("_mb"):
            how = (N.number, 1)
        elif key.endswith("_ms"):
            how = (N.ms,)
        else:
            return str(value)
    return how[0](value, *how[1:])


# column -> (numbers function, its digits): a key not here is a latency (*_ms), a size (*_mb) or shown as is
_CELL = {"cv": (N.share, 1), "cosine": (N.number, 6), "max_abs": (N.sci, 2), "rel_err": (N.sig, 3),
         "top1": (N.number, 2), "j_per_inf": (N.sig, 4), "gflops": (N.number, 1), "gmacs": (N.number, 3),
         "peak_share": (N.share, 0), "items_per_s": (N.ms,)}


# CSV rounding: well below the noise of any measurement, short enough to read
_CSV_DIGITS = {"cv_pct": 2, "items_per_s": 2, "top1": 4, "cosine": 6}


def csv_value(key: str, value):
    if value is None or isinstance(value, (str, bool, int)):
        return "" if value is None else value
    if key.endswith("_ms"):
        return round(value, 4)
    if key in _CSV_DIGITS:
        return round(value, _CSV_DIGITS[key])
    return float(f"{value:.4g}")  # max_abs, rel_err, j_per_inf: 4 significant digits


def md(text) -> str:
    from deploykit.core.escape import md as escape_md  # labels and paths are text, never Markdown

    return escape_md(text)


def to_csv(reports: list[dict]) -> str:
    from deploykit.core.escape import csv_cell  # a label starting with = + - @ is a formula to a spreadsheet

    buf = io.StringIO()
    cols = csv_columns()
    w = csv.DictWriter(buf, fieldnames=cols, lineterminator="\n", extrasaction="ignore")
    w.writeheader()
    for r in reports:
        row = summary_row(r)
        w.writerow({k: csv_cell(csv_value(k, row.get(k))) for k in cols})
    return buf.getvalue()


def markdown_table(reports: list[dict]) -> str:
    rows = [summary_row(r) for r in reports]
    head = "| " + " | ".join(h for _, h in SUMMARY_COLUMNS) + " |"
    sep = "|" + "|".join("---" for _ in SUMMARY_COLUMNS) + "|"
    body = ["| " + " | ".join(md(fmt(k, row[k])) for k, _ in SUMMARY_COLUMNS) + " |" for row in rows]
    return "\n".join([head, sep, *body])


def to_markdown(reports: list[dict]) -> str:
    out = ["# deploykit benchmark", "", markdown_table(reports), ""]
    for r in reports:
        env, s, t = r["environment"], r["stats"], r["timing"]
        cpu = env["cpu"]
        out += [
            md(f"## {r['model']['label']}{' (' + variant_text(r) + ')' if variant_text(r) else ''} on "
               f"{r['target']['name']} ({r['target']['precision']})"),
            "",
            f"- artifact: {md(r['model']['path'])} (sha256 {r['model']['sha256'][:12]})",
            f"- target: {r['target']['description']}; " + ", ".join(f"{k}={v}" for k, v in r["target"]["info"].items()
                                                                   if k != "fusion"),
            f"- latency ms: p50 {s['p50']:.3f} (95% CI {s['median_ci95'][0]:.3f}-{s['median_ci95'][1]:.3f}), "
            + ", ".join(_tail_text(s, q) for q in (90, 95, 99)) + f", mean {s['mean']:.3f}, "
            f"stdev {s['stdev']:.3f}, CV {s['cv']:.1%}, min {s['min']:.3f}, max {s['max']:.3f}",
            f"- run: load {t['load_ms']:.1f} ms, first inference {t['first_inference_ms']:.2f} ms, "
            f"{len(t['warmup_ms'])} warm-up + {t['iterations']} measured iterations in {t['measured_wall_s']:.2f} s "
            f"({t['stop_reason']}); throughput {r['throughput']['items_per_s']:.2f} items/s",
            f"- fidelity vs {r['fidelity']['reference']}: " + _fidelity_text(r["fidelity"]),
            f"- percentiles: {s['percentile_method']}",
            f"- machine: {cpu['model']} ({cpu.get('usable_cores')} usable cores, "
            f"ISA {' '.join(cpu.get('isa') or [])}), "
            f"threads {env.get('threads')}, {env['os']['platform']}, Python {env['python']}",
            "- packages: " + ", ".join(f"{k} {v}" for k, v in env["packages"].items() if v),
            f"- deploykit {env['deploykit']['version']} (git {str(env['deploykit'].get('sha'))[:10]}"
            f"{', dirty' if env['deploykit'].get('dirty') else ''})",
        ]
        out += _hardware_lines(r)
        out += _cost_lines(r)
        out += _fusion_lines(r)
        if r.get("reference_workload"):  # the fixed reference workload measured beside the model
            rw = r["reference_workload"]
            out.append(f"- reference workload {rw['name']} (sha256 {rw['sha256'][:12]}): "
                       f"p50 {rw['stats']['p50']:.3f} ms; "
                       f"model / reference p50 {rw['relative']['p50']:.4f} over {len(rw['blocks'])} interleaved blocks")
        out += [f"- **warning:** {w}" for w in r["warnings"]]
        out.append("")
        out += per_layer_markdown(r)
    return "\n".join(out)


LAYER_OP_COLUMNS = [("op_type", "op type"), ("time_ms", "ms"), ("share", "share"), ("count", "nodes"),
                    ("precisions", "precision (nodes)")]
LAYER_NODE_COLUMNS = [("rank", "#"), ("name", "node"), ("op_type", "op type"), ("precision", "precision"),
                      ("time_ms", "ms"), ("share", "share")]


def per_layer_title(r: dict) -> str:
    pl = r["per_layer"]
    wall = f", {pl['profiled_wall_ms']:.3f} ms per profiled inference" if pl.get("profiled_wall_ms") else ""
    return (f"per-layer profile of {r['model']['label']} on {r['target']['name']} ({r['target']['precision']}): "
            f"{pl['total_ms']:.3f} ms of layer time per inference, median of {pl['iterations']} profiled inferences"
            f"{wall} (measured p50 {r['stats']['p50']:.3f} ms, profiling off)")


def per_layer_rows(pl: dict, top: int | None = None) -> tuple[list[dict], list[dict]]:
    """Formatted rows of a report's ``per_layer`` section: op types (the ``top`` slowest) and the slowest nodes."""
    top = pl.get("top", 15) if top is None else top
    ops = [{"op_type": t["op_type"], "time_ms": N.number(t["time_ms"], 3), "share": N.share(t["share"]),
            "count": str(t["count"]), "precisions": ", ".join(f"{p} x{c}" for p, c in t["precisions"].items())}
           for t in pl["by_op_type"][:top]]
    nodes = []
    for i, nd in enumerate(pl["top_nodes"][:top], 1):
        name = nd["name"] + (f" [{'+'.join(nd['fused'])}]" if nd.get("fused") else "")
        nodes.append({"rank": str(i), "name": name, "op_type": nd["op_type"], "precision": nd["precision"],
                      "time_ms": N.number(nd["time_ms"], 3), "share": N.share(nd["share"])})
    return ops, nodes


def per_layer_markdown(r: dict) -> list[str]:
    """The Markdown section of a report's per-layer profile (none when the report has none)."""
    pl = r.get("per_layer")
    if not pl:
        return []
    from deploykit.bench.layers import softmax_text

    ops, nodes = per_layer_rows(pl)

    def table(cols, rows):
        return ["| " + " | ".join(h for _, h in cols) + " |", "|" + "|".join("---" for _ in cols) + "|",
                *["| " + " | ".join(row[k].replace("|", "\\|") for k, _ in cols) + " |" for row in rows]]

    prec = ", ".join(f"{p['precision']} {p['share']:.1%}" for p in pl.get("by_precision", []))
    out = [f"### {per_layer_title(r)}", "", f"- profiler: {pl['profiler']}; {pl.get('nodes')} nodes timed",
           f"- time by precision: {prec}", f"- {softmax_text(pl)}"]
    out += [f"- note: {n}" for n in pl.get("notes", [])]
    out += ["", *table(LAYER_OP_COLUMNS, ops), "", *table(LAYER_NODE_COLUMNS, nodes), ""]
    return out


def _hardware_lines(r: dict) -> list[str]:
    """Markdown lines for throughput mode, device timings, energy and telemetry (when the report has them)."""
    lines = []
    tp = r["throughput"]
    if tp.get("mode") == "throughput":
        lines.append(f"- throughput mode: {tp.get('requests_in_flight')} requests in flight; {tp['basis']}")
    for kind, dt in (r.get("device_timing") or {}).items():
        st = dt["stats"]
        lines.append(f"- device time ({kind}, CUDA events) ms: p50 {st['p50']:.3f}, p99 {st['p99']:.3f}, "
                     f"mean {st['mean']:.3f} over {st['n']} iterations")
    e = r.get("energy")
    if e:
        if e["status"] in ("unavailable", "off"):
            lines.append(f"- energy: {e['status']} ({'; '.join(e['reasons'])})")
        for d in e.get("domains", []):
            if d.get("joules"):
                idle = f", idle {d['idle_power_w']:.1f} W" if d.get("idle_power_w") is not None else ""
                lines.append(f"- energy{' (ESTIMATED)' if d.get('estimated') else ''} {d['name']} [{d['scope']}]: "
                             f"{d['j_per_inference']:.4g} J/inference, {d['inferences_per_j']:.4g} inferences/J, "
                             f"{d['avg_power_w']:.1f} W average{idle} over {d['window_s']:.2f} s ({d['method']})")
            else:
                lines.append(f"- energy {d['name']} [{d['scope']}]: no reading ({d.get('reason')})")
    t = r.get("telemetry")
    if t:
        for when in ("start", "end"):
            snap = t[when]
            cpu = snap["cpu"]
            freq = (f"{min(cpu['cur_freq_mhz'])}-{max(cpu['cur_freq_mhz'])} MHz, governor "
                    f"{','.join(cpu['governors']) or '?'}" if cpu.get("readable")
                    else cpu.get("reason", "not readable"))
            text = f"- telemetry at {when}: CPU {freq}"
            g = snap.get("gpu")
            if g:
                if g.get("available"):
                    clk = g.get("clocks_mhz") or {}
                    text += (f"; GPU {g['name']} (driver {g.get('driver')}): "
                             f"SM {clk.get('sm')} MHz, mem {clk.get('mem')} MHz, "
                             f"{g.get('temperature_c')} C, {g.get('power_w')} W, throttle "
                             f"{','.join(g.get('throttle_reasons') or []) or 'none'}")
                else:
                    text += f"; GPU telemetry unavailable ({g.get('reason')})"
            lines.append(text)
    return lines


def _cost_lines(r: dict) -> list[str]:
    """Markdown lines for memory, model complexity and efficiency (when the report has them)."""
    lines = []
    m = r.get("memory")
    if m:
        if m.get("rss_peak_mb") is not None:
            text = (f"- memory: RSS {m['rss_before_load_mb']:.1f} MB before load, "
                    f"{m['rss_after_load_mb']:.1f} MB after, "
                    f"peak {m['rss_peak_mb']:.1f} MB over load and measurement (+{m['rss_increase_mb']:.1f} MB; "
                    f"{m['method']})")
        else:
            text = f"- memory: RSS {m['method']}"
        if m.get("gpu_method"):
            gpu = f"{m['gpu_peak_mb']:.1f} MB" if m.get("gpu_peak_mb") is not None else "-"
            text += f"; GPU peak {gpu} ({m['gpu_method']})"
        lines.append(text + f"; artifact on disk {m['artifact_mb']:.1f} MB")
    cx = r["model"].get("complexity")
    if cx:
        lines.append(f"- complexity per item: {cx['params'] / 1e6:.2f} M parameters, {cx['macs'] / 1e9:.3f} GMACs "
                     f"(attention {cx['macs_attention'] / 1e9:.3f}); {cx['source']}")
    e = r.get("efficiency")
    if e:
        parts = [f"- efficiency: {e['gflops']:.1f} GFLOP/s achieved ({e.get('basis', '2 x MACs x batch / p50')}, "
                 f"{e['precision']})"]
        if e.get("share_of_measured") is not None:
            parts.append(f"{e['share_of_measured']:.0%} of the measured {e['precision']} GEMM peak "
                         f"{e['peak_measured_gflops']:.1f}")
        if e.get("share_of_theoretical") is not None:
            parts.append(f"{e['share_of_theoretical']:.0%} of the theoretical peak {e['peak_theoretical_gflops']:.1f}")
        lines.append("; ".join(parts) + f" (peak: {e['peak_source']})")
    return lines


def _fusion_lines(r: dict) -> list[str]:
    """What the runtime fused / ran in int8 (target info "fusion") and, for int8 artifacts, how they were made."""
    lines = []
    fu = r["target"]["info"].get("fusion")
    if isinstance(fu, dict) and "error" not in fu:
        parts = []
        if fu.get("convs_with_fused_activation") is not None:
            parts.append(f"{fu['convs_with_fused_activation']} convolutions with a fused activation")
        if fu.get("standalone_activations"):
            parts.append("activations left: " + ", ".join(f"{k} {v}" for k, v in fu["standalone_activations"].items()))
        if fu.get("int8_kernels"):
            parts.append("int8 kernels: " + ", ".join(f"{k} {v}" for k, v in fu["int8_kernels"].items()))
        sm = fu.get("softmax") or {}
        if sm.get("int8") or sm.get("float"):
            parts.append(f"softmax ran as int8 in {sm.get('int8', 0)} of {sm.get('int8', 0) + sm.get('float', 0)}")
        if parts:
            lines.append("- what ran (read back from the runtime): " + "; ".join(parts))
    q = r.get("quantization")
    if q:
        c = q.get("calibration") or {}
        bf = q.get("build_fidelity") or {}
        text = (f"- int8: {q.get('quantizer')}" + (f" ({q['profile']} profile)" if q.get("profile") else "") +
                f", softmax {q.get('softmax')}, calibration {c.get('size')} {c.get('data')} inputs ({c.get('method')})"
                f", 7-bit weights {'on' if q.get('reduce_range') else 'off'}")
        if bf.get("cosine") is not None:
            text += (f"; vs fp32 on {bf.get('samples')} inputs: cosine min {bf['cosine']:.4f}, top-1 agreement "
                     f"{bf.get('top1')}, SQNR {bf.get('sqnr_db') or 0:.1f} dB")
        acc = q.get("accuracy")
        if acc:
            text += (f"; top-1 fp32 {acc['fp32']['top1']:.4f} vs int8 {acc['int8']['top1']:.4f} on {acc['images']} "
                     "labelled images")
        lines.append(text)
    return lines


def _tail_text(s: dict, q: int) -> str:
    text = f"p{q} {s[f'p{q}']:.3f}"
    if (s.get("tails_supported") or {}).get(f"p{q}", True):
        return text
    return text + f" (fewer than 10 samples beyond it: {s['n']} iterations)"


def _fidelity_text(f: dict) -> str:
    """The metrics next to the floors they are compared with (the max-abs floor is relative to the output
    range, so its relative value is shown beside it)."""
    tol = f.get("tolerance") or {}
    rel = f"{f['rel_err']:.3g} of the output range" if f.get("rel_err") is not None else None
    if rel and tol.get("rtol") is not None:
        rel += f" (floor {tol['rtol']:g})"
    cos = f"cosine {fmt('cosine', f['cosine'])}"
    if tol.get("min_cosine") is not None:
        cos += f" (floor {tol['min_cosine']:g})"
    parts = [f"max-abs {fmt('max_abs', f['max_abs'])}" + (f" = {rel}" if rel else ""), cos]
    if f.get("top1") is not None:
        parts.append(f"top-1 agreement {f['top1']:.2f}")
    if f.get("sqnr_db") is not None:
        parts.append(f"SQNR {f['sqnr_db']:.1f} dB")
    verdict = {True: "pass", False: "FAIL", None: "no verdict"}[f["passed"]]
    return ", ".join(parts) + f" -> {verdict}" + (f" ({f['reason']})" if f["passed"] is False else "")


FORMATS = ("json", "md", "csv")


def write_report_files(report: dict, out_dir: Path, formats=FORMATS) -> list[Path]:
    """Write ``<stamp>-<model>-<target>.{json,md,csv}`` atomically; returns the paths written."""
    out_dir = ensure_dir(Path(out_dir))
    stem = report_stem(report)
    n = 1
    while any((out_dir / f"{stem}.{ext}").exists() for ext in formats):
        n += 1
        stem = f"{report_stem(report)}-{n}"
    written = []
    for ext in formats:
        path = out_dir / f"{stem}.{ext}"
        if ext == "json":
            write_json(path, report)
        elif ext == "md":
            write_text(path, to_markdown([report]))
        elif ext == "csv":
            write_text(path, to_csv([report]))
        written.append(path)
    return written
