"""Side-by-side comparison of results: rows are cells, columns are inputs (or the values of one key column,
``by``), each value shown with its ratio to a baseline column and a marker where the difference is real.

Two tests, and the marker says which passed:
  * within-run (``significant``): the bootstrap 95% confidence interval of the ratio (``bench.stats.ratio_ci``: the
    two runs' raw samples, read from their JSON reports, resampled independently) excludes 1. Where the raw
    samples cannot be read (a CSV whose reports are gone, a metric with no sample statistic), p50 falls back to
    the reports' own 95% intervals of the median: significant when the two intervals do not overlap (a stricter
    test); other metrics get no test. This knows only the noise *inside* each run: two identical runs minutes
    apart on a shared machine differ by 5-25% while each run's own interval is +-1%.
  * between-run (``real``): the difference must also exceed the variation between independent runs, estimated
    from the inputs' repeats -- the same cell measured more than once in one column (a folder holding several
    reports of one cell): the pooled standard deviation s of log(metric) within those groups, with
    sum(n - 1) degrees of freedom; a ratio r is real when |log r| > t(df, 0.975) x s x sqrt(2) and it is
    significant within-run. Without repeats the between-run variation is unknown and nothing is starred:
    ``*`` real (``*ci``: by the CI-overlap fallback), ``~`` significant within-run only (between-run unknown).
"""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from typing import Sequence

from deploykit.core.errors import UsageError
from deploykit.report import numbers as N
from deploykit.report.results import KEY_COLUMNS, read_results

BY_CHOICES = ("target", "precision", "model", "resolution", "threads", "batch", "model_options")
# metric -> (sample statistic for the bootstrap, whether the metric grows as latency shrinks); None: no test
SAMPLE_TESTS = {"p50_ms": ("median", False), "mean_ms": ("mean", False), "p90_ms": (90, False),
                "p99_ms": (99, False), "items_per_s": ("mean", True)}
MARK = "*"
WEAK = "~"  # significant within the runs, between-run variation unknown


def input_label(path: str | Path) -> str:
    p = Path(path)
    if p.is_file():
        return p.resolve().parent.name if p.name.startswith("results.") else p.stem
    return p.resolve().name


def load_inputs(paths: Sequence[str | Path]) -> list[tuple[str, object]]:
    """(label, DataFrame of rows) per input, labels made unique (``name#2``)."""
    out, seen = [], {}
    for p in paths:
        label = input_label(p)
        seen[label] = seen.get(label, 0) + 1
        if seen[label] > 1:
            label = f"{label}#{seen[label]}"
        out.append((label, read_results(p, absolute_reports=True)))
    return out


def _val(v):
    """A key value as plain Python (ints for the int columns, "" for missing)."""
    if v is None:
        return ""
    try:
        if isinstance(v, float) and math.isnan(v):
            return ""
    except TypeError:
        pass
    if hasattr(v, "item"):
        v = v.item()
    if str(v) == "<NA>":
        return ""
    return int(v) if isinstance(v, float) and v.is_integer() else v


def _num(v) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(f) else f


def compare(inputs: Sequence[tuple[str, object]], *, by: str | None = None, metric: str = "p50_ms",
            baseline: str | None = None, level: float = 0.95, n_boot: int = 2000) -> dict:
    """The comparison of ``inputs`` ((label, DataFrame) pairs, e.g. from ``load_inputs``) as a plain dict:
    columns, baseline, rows (each a cell and per column its value, CI, ratio to the baseline and test), notes."""
    if by is not None and by not in BY_CHOICES:
        raise UsageError(f"--by must be one of {', '.join(BY_CHOICES)}, got {by!r}")
    notes: list[str] = []
    frames = [(label, df) for label, df in inputs]
    if not frames:
        raise UsageError("nothing to compare: give report files, folders or results tables")
    for _label, df in frames:
        if metric not in df.columns:
            numeric = [c for c in df.columns if str(df[c].dtype).startswith(("float", "Int", "int"))]
            raise UsageError(f"unknown metric {metric!r} (choose a numeric column: {', '.join(numeric)})")
    dims = [d for d in (*KEY_COLUMNS, "qps_scheduled") if d != by]  # a server cell's QPS is part of its identity
    cells: dict[tuple, dict] = {}  # identity -> {column: row}
    columns: list = []
    dupes = 0
    repeats: dict[tuple, list[float]] = {}  # (identity, column) -> the metric of every run of it
    for label, df in frames:
        for row in df.to_dict("records"):
            if row.get("status") != "ok":
                continue
            col = label if by is None else _val(row[by])
            ident = tuple(_val(row[d]) for d in dims)
            if col not in columns:
                columns.append(col)
            slot = cells.setdefault(ident, {})
            v = _num(row.get(metric))
            if v is not None and v > 0:
                repeats.setdefault((ident, col), []).append(v)
            if col in slot:
                dupes += 1
                if str(row.get("created") or "") < str(slot[col].get("created") or ""):
                    continue
            slot[col] = row
    if not cells:
        raise UsageError("no finished (status ok) cell in the inputs to compare")
    if by is not None and all(isinstance(c, (int, float)) for c in columns):
        columns.sort()
    labels = [str(c) for c in columns]
    if baseline is None:
        base = columns[0]
    else:
        matches = [c for c in columns if str(c) == str(baseline)]
        if not matches:
            raise UsageError(f"--baseline {baseline!r} is not a column (columns: {', '.join(labels)})")
        base = matches[0]
    columns = [base] + [c for c in columns if c != base]  # the baseline first, the others in order
    labels = [str(c) for c in columns]
    if dupes:
        notes.append(f"{dupes} cell(s) appear more than once in a column: the latest run (by 'created') is shown")

    shown = [d for i, d in enumerate(dims) if len({ident[i] for ident in cells}) > 1 or d == "model"]
    constant = {d: next(iter(cells))[i] for i, d in enumerate(dims) if d not in shown}
    samples = _SampleCache()
    between = between_run_variation(repeats.values())
    noisy_cells = 0
    tested = {"bootstrap": 0, "ci-overlap": 0}
    rows = []
    for ident, slot in cells.items():
        cell = {d: ident[i] for i, d in enumerate(dims)}
        values = {}
        b = slot.get(base)
        for col in columns:
            r = slot.get(col)
            if r is None:
                continue
            v = _num(r.get(metric))
            entry = {"value": v, "ci": _ci(r) if metric == "p50_ms" else None, "ratio": None, "ratio_ci": None,
                     "significant": None, "real": None, "test": "baseline" if col == base else "none",
                     "noisy": _flag(r.get("noisy"))}
            noisy_cells += bool(entry["noisy"])
            if col != base and b is not None and v is not None and _num(b.get(metric)):
                entry["ratio"] = v / _num(b.get(metric))
                _test(entry, metric, r, b, samples, level, n_boot, notes, str(col), str(base))
                entry["real"] = _real(entry, between, level)
                if entry["test"] in tested:
                    tested[entry["test"]] += 1
            values[str(col)] = entry
        rows.append({"cell": cell, "label": _cell_label(cell, shown), "values": values})
    if not any(len(r["values"]) > 1 for r in rows):
        varying = _varying_dims(frames) if by is None else []
        notes.append("no cell appears in more than one column" +
                     (f"; the inputs differ in {', '.join(varying)}: compare across one with --by {varying[0]}"
                      if varying else ""))
    if tested["ci-overlap"]:
        notes.append(f"{tested['ci-overlap']} ratio(s) tested by non-overlapping 95% CIs of the median (raw samples "
                     f"unavailable); {tested['bootstrap']} by the bootstrap of the ratio")
    notes += samples.machine_notes()
    if noisy_cells:
        notes.append(f"{noisy_cells} value(s) come from runs flagged noisy (CV above 10% or a burst within the run; "
                     "'noisy' in their values): their ratios say as much about the machine as about the model")
    if between is None:
        notes.append("between-run variation unknown: no cell has repeated runs in one column, so no "
                     f"difference is starred; {WEAK} marks a ratio outside the runs' own noise only (runs minutes "
                     "apart on a shared machine often differ by more); give an input several runs of the same cells "
                     "(a folder holding each cell's reports) to estimate it")
        test = (f"{WEAK}: the {level:.0%} bootstrap CI of the ratio to {base} (raw samples, within-run noise only) "
                f"excludes 1 ('{WEAK}ci': non-overlapping CIs of the median); between-run variation unknown, so "
                f"no {MARK}")
    else:
        test = (f"{MARK}: the ratio to {base} exceeds the between-run variation (sd {between['sd']:.1%} of "
                f"log({metric}) from {between['groups']} repeated cell(s), {between['df']} df; {level:.0%} "
                f"interval of a difference +-{between['half_width']:.1%}) and its {level:.0%} within-run "
                f"bootstrap CI excludes 1 ('ci': non-overlapping CIs of the median); {WEAK}: within-run only")
    return {"metric": metric, "by": by or "input", "columns": labels, "baseline": str(base), "dims": shown,
            "constant": constant, "level": level, "rows": rows, "notes": notes, "between_run": between,
            "test": test}


def between_run_variation(groups, level: float = 0.95) -> dict | None:
    """The pooled standard deviation of log(value) between runs of the same cell (``groups``: the values of each
    cell's repeated runs), its degrees of freedom, and the half-width of the ``level`` interval of the log-ratio of
    two independent runs; None without any repeat."""
    ss, df, k = 0.0, 0, 0
    for g in groups:
        if len(g) < 2:
            continue
        logs = [math.log(v) for v in g]
        mean = sum(logs) / len(logs)
        ss += sum((x - mean) ** 2 for x in logs)
        df += len(logs) - 1
        k += 1
    if df == 0:
        return None
    from scipy.stats import t

    sd = math.sqrt(ss / df)
    half = float(t.ppf(1 - (1 - level) / 2, df)) * sd * math.sqrt(2)
    return {"sd": math.expm1(sd), "log_sd": sd, "df": df, "groups": k, "half_width": math.expm1(half),
            "log_half_width": half}


def _flag(v) -> bool | None:
    if v is None or str(v) == "<NA>":
        return None
    try:
        return bool(v)
    except (TypeError, ValueError):
        return None


def _real(entry: dict, between: dict | None, level: float) -> bool | None:
    """Significant within the runs and beyond the between-run variation; None when that is unknown."""
    if between is None or entry.get("significant") is None or not entry.get("ratio"):
        return None
    return bool(entry["significant"] and abs(math.log(entry["ratio"])) > between["log_half_width"])


def _ci(r: dict) -> list[float] | None:
    lo, hi = _num(r.get("ci_low_ms")), _num(r.get("ci_high_ms"))
    return [lo, hi] if lo is not None and hi is not None else None


def _test(entry: dict, metric: str, r: dict, b: dict, samples: "_SampleCache", level: float, n_boot: int,
          notes: list[str], col: str, base: str) -> None:
    from deploykit.bench.stats import percentile_stat, ratio_ci

    how = SAMPLE_TESTS.get(metric)
    if how is not None:
        sa, sb = samples.get(r.get("report")), samples.get(b.get("report"))
        bad = samples.bad.get(r.get("report")) or samples.bad.get(b.get("report"))
        if bad:  # a report whose samples are not numbers (NaN, inf, text): no verdict, not "no difference"
            entry.update(significant=None, test="not comparable")
            notes.append(f"{col} vs {base}: not comparable: {bad}")
            return
        if sa is not None and sb is not None:
            stat, inverse = how
            fn = percentile_stat(stat) if isinstance(stat, (int, float)) else stat
            if inverse:  # throughput: items/s ratio = inverse ratio of mean latency (per item at equal batch)
                _, lo, hi = ratio_ci(sb, sa, fn, level=level, n_boot=n_boot)
            else:
                _, lo, hi = ratio_ci(sa, sb, fn, level=level, n_boot=n_boot)
            if not (math.isfinite(lo) and math.isfinite(hi)):  # NaN / inf samples: no verdict, not "no difference"
                entry.update(significant=None, test="not comparable")
                notes.append(f"{col} vs {base}: the samples hold non-finite values; not comparable")
                return
            entry.update(ratio_ci=[lo, hi], significant=bool(lo > 1 or hi < 1), test="bootstrap")
            samples.check_machines(r.get("report"), b.get("report"), col, base)
            return
    if metric == "p50_ms":
        ca, cb = _ci(r), _ci(b)
        if ca and cb:
            entry.update(significant=bool(ca[0] > cb[1] or ca[1] < cb[0]), test="ci-overlap")


class _SampleCache:
    """Raw latency samples of reports (by path), read once; and which compared pairs ran on different machines."""

    def __init__(self):
        self._samples: dict[str, list | None] = {}
        self.bad: dict[str, str] = {}  # reports whose samples are unusable (NaN, inf, text): why
        self._env: dict[str, dict | None] = {}
        self._machine: dict[tuple[str, str], str] = {}

    def get(self, path) -> list | None:
        if not path or not isinstance(path, str) or not path.endswith(".json"):
            return None
        if path not in self._samples:
            from deploykit.core.errors import InputError
            from deploykit.core.guarded import read_json

            try:
                data = read_json(path, what="report")  # guarded: a regular file, size-capped, no NaN
                s = data["timing"]["samples_ms"]
                self._samples[path] = s if isinstance(s, list) and s else None
                self._env[path] = data.get("environment")
                if s and not all(isinstance(x, (int, float)) and math.isfinite(x) and x > 0 for x in s):
                    self._samples[path] = None
                    self.bad[path] = f"{path}: timing/samples_ms holds values that are not positive finite numbers"
            except InputError as exc:
                self._samples[path] = None
                self._env[path] = None
                if "not valid JSON" in str(exc) or "finite" in str(exc):
                    self.bad[path] = exc.one_line()
            except (KeyError, TypeError):
                self._samples[path] = None
                self._env[path] = None
        return self._samples[path]

    def check_machines(self, a: str, b: str, col: str, base: str) -> None:
        from deploykit.bench.fingerprint import comparable_key

        ea, eb = self._env.get(a), self._env.get(b)
        if not ea or not eb or (col, base) in self._machine:
            return
        ka, kb = comparable_key(ea), comparable_key(eb)
        diff = [f"{k}: {ka.get(k)} vs {kb.get(k)}" for k in ("cpu", "isa", "usable_cores", "onnxruntime", "openvino",
                                                             "tensorrt", "gpu", "driver") if ka.get(k) != kb.get(k)]
        if diff:
            self._machine[(col, base)] = "; ".join(diff)

    def machine_notes(self) -> list[str]:
        return [f"warning: {col} and {base} were measured on different machines or runtime versions ({d}): the "
                "ratio mixes the two" for (col, base), d in self._machine.items()]


def _varying_dims(frames) -> list[str]:
    out = []
    for d in ("target", "precision", "model", "resolution", "threads", "batch", "model_options"):
        values = set()
        for _, df in frames:
            values |= {_val(v) for v in df.loc[df["status"] == "ok", d]}
        if len(values) > 1:
            out.append(d)
    return out


def _cell_label(cell: dict, shown: list[str]) -> str:
    parts = []
    for d in shown:
        v = cell[d]
        if v == "":
            continue
        parts.append({"batch": f"b{v}", "resolution": f"{v}px", "threads": f"{v} threads",
                      "qps_scheduled": f"@{v} QPS"}.get(d, str(v)))
    return " ".join(parts)


# ------------------------------------------------------------------------------------------------- rendering

def value_text(entry: dict | None, metric: str) -> str:
    """A column's value with its CI where it has one: ``12.345 [12.100-12.600]``; "-" when the cell is not there."""
    if entry is None:
        return N.MISSING
    text = N.ms(entry["value"])
    if entry.get("ci"):
        text += " " + N.interval(*entry["ci"], N.ms, sep="-")
    return text


def ratio_text(entry: dict | None) -> str:
    if entry is None or entry.get("ratio") is None:
        return ""
    mark = ""
    if entry.get("real"):
        mark = MARK
    elif entry.get("significant") and entry.get("real") is None:
        mark = WEAK
    if mark and entry["test"] == "ci-overlap":
        mark += "ci"
    return f"x{N.number(entry['ratio'], 3)}{mark}"


def table_rows(result: dict) -> tuple[list[str], list[list[str]]]:
    """Header and text rows: the cell, then per column its value (with CI) and, but for the baseline, its
    ratio to the baseline."""
    head = ["cell"]
    for c in result["columns"]:
        head.append(f"{c} {result['metric']}")
        if c != result["baseline"]:
            head.append(f"{c} / {result['baseline']}")
    body = []
    for r in result["rows"]:
        line = [r["label"]]
        for c in result["columns"]:
            e = r["values"].get(c)
            line.append(value_text(e, result["metric"]))
            if c != result["baseline"]:
                line.append(ratio_text(e))
        body.append(line)
    return head, body


def header_lines(result: dict) -> list[str]:
    lines = [f"{result['metric']} by {result['by']}; ratios to {result['baseline']}"]
    if result["constant"]:
        lines.append("all cells: " + ", ".join(f"{k}={v}" for k, v in result["constant"].items() if v != ""))
    lines.append(result["test"])
    return lines


def to_markdown(result: dict) -> str:
    from deploykit.core.escape import md  # labels come from file names and tables: text, never markup

    head, body = table_rows(result)
    out = [f"# deploykit compare: {md(result['metric'])}", ""] + [f"- {md(ln)}" for ln in header_lines(result)] + [""]
    out.append("| " + " | ".join(md(h) for h in head) + " |")
    out.append("|" + "|".join("---" for _ in head) + "|")
    out += ["| " + " | ".join([md(line[0])] + [x.replace("|", "\\|") for x in line[1:]]) + " |" for line in body]
    out += [""] + [f"- {md(n)}" for n in result["notes"]]
    return "\n".join(out) + "\n"


def to_csv(result: dict) -> str:
    """One line per (cell, column): the cell's key columns, the column, value, CI, ratio, ratio CI, real, test."""
    buf = io.StringIO()
    dims = list(result["dims"]) + [d for d in result["constant"]]
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(dims + [result["by"], result["metric"], "ci_low", "ci_high", "ratio", "ratio_ci_low",
                       "ratio_ci_high", "within_run", "real", "test"])
    from deploykit.core.escape import csv_cell  # a label starting with = + - @ is a formula to a spreadsheet

    for r in result["rows"]:
        key = [csv_cell(r["cell"].get(d, result["constant"].get(d, ""))) for d in dims]
        for c, e in r["values"].items():
            ci, rci = e.get("ci") or ["", ""], e.get("ratio_ci") or ["", ""]
            real = e.get("real")
            w.writerow(key + [csv_cell(c), e["value"], *ci, "" if e["ratio"] is None else e["ratio"], *rci,
                              "" if e["significant"] is None else e["significant"], "" if real is None else real,
                              e["test"]])
    return buf.getvalue()
