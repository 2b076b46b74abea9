"""The results table: one row per sweep cell (or per report), written as Parquet and CSV.

Rows are built from reports by ``row_from_report`` (which dispatches on the report's ``schema``, so other report
kinds add a builder with ``register_row_builder``: benchmark reports and LoadGen reports have theirs here), or for
cells that produced no report by ``failed_row``.
``write_results`` writes ``results.parquet`` and ``results.csv`` atomically; ``read_results`` reads a table (a
file, or a folder holding one) or bare report JSON files / folders of them into the same columns.

Missing numbers are NaN, never 0. Each row's ``report`` is the path of its full JSON report (which keeps the raw
samples), relative to the table's folder when the report lies under it.
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path
from typing import Callable, Iterable

from deploykit.core.atomic import atomic_path, ensure_dir
from deploykit.core.errors import InputError
from deploykit.report import loadgen as _loadgen
from deploykit.report.schema import SCHEMA, validate

RESULTS_PARQUET = "results.parquet"
RESULTS_CSV = "results.csv"

# (column, kind): str, int (nullable), float, bool (nullable). The order is the table's.
COLUMNS: list[tuple[str, str]] = [
    # key
    ("cell", "str"), ("model", "str"), ("model_options", "str"), ("family", "str"), ("target", "str"),
    ("precision", "str"), ("batch", "int"), ("resolution", "int"), ("threads", "int"), ("scenario", "str"),
    ("target_options", "str"),  # runtime options set besides threads and precision (streams=2,mode=throughput)
    # status
    ("status", "str"), ("reason", "str"), ("exit_code", "int"),
    # latency
    ("p50_ms", "float"), ("ci_low_ms", "float"), ("ci_high_ms", "float"), ("p90_ms", "float"), ("p99_ms", "float"),
    ("mean_ms", "float"), ("cv_pct", "float"), ("items_per_s", "float"), ("iterations", "int"),
    ("noisy", "bool"),  # bench.stats.noise_flags: CV above 10% or the run's two halves at different levels
    # model
    ("params_m", "float"), ("gmacs", "float"), ("gmacs_attention", "float"), ("gflops", "float"),
    ("peak_share", "float"), ("peak_kind", "str"),
    # memory
    ("rss_peak_mb", "float"), ("rss_increase_mb", "float"), ("gpu_peak_mb", "float"), ("artifact_mb", "float"),
    # energy
    ("j_per_item", "float"),
    # fidelity
    ("fidelity", "str"),
    # accuracy on labelled images (--eval-data), on the runtime; acc_drop: fp32 top-1 - this top-1 (points, paired)
    ("top1", "float"), ("top5", "float"), ("acc_drop", "float"), ("acc_drop_ci_low", "float"),
    ("acc_drop_ci_high", "float"), ("acc_mcnemar_p", "float"),
    # loadgen
    ("qps_scheduled", "float"), ("qps_achieved", "float"), ("loadgen_valid", "bool"),
    # run
    ("wall_s", "float"), ("created", "str"), ("host", "str"), ("node", "str"), ("job_id", "str"),
    ("executor", "str"), ("git_rev", "str"), ("report", "str"),
]
COLUMN_NAMES = [c for c, _ in COLUMNS]
KEY_COLUMNS = ("model", "model_options", "target", "precision", "batch", "resolution", "threads", "scenario",
               "target_options")
STATUSES = ("ok", "failed", "timeout", "killed", "skipped")
NAN = float("nan")

RowBuilder = Callable[[dict], dict]
_ROW_BUILDERS: dict[str, RowBuilder] = {}
_VALIDATORS: dict[str, Callable[[dict, str], None]] = {}


def register_row_builder(schema: str, builder: RowBuilder,
                         validator: Callable[[dict, str], None] | None = None) -> None:
    """``builder(report) -> {column: value}`` for reports whose ``schema`` is ``schema`` (e.g. LoadGen's);
    ``validator(report, where)``: raises InputError for a report that does not match that schema."""
    _ROW_BUILDERS[schema] = builder
    if validator is not None:
        _VALIDATORS[schema] = validator


def empty_row() -> dict:
    return {c: (NAN if kind == "float" else None if kind in ("int", "bool") else "") for c, kind in COLUMNS}


def _num(value) -> float:
    """A number, or NaN for a missing / non-numeric one (never 0 for unknown)."""
    if value is None or isinstance(value, bool):
        return NAN
    try:
        return float(value)
    except (TypeError, ValueError):
        return NAN


def _scaled(value, div: float) -> float:
    v = _num(value)
    return v / div if not math.isnan(v) else NAN


def options_text(options) -> str:
    from deploykit.spec.run import options_text as text

    if options and not isinstance(options, dict):  # a report's model options are a mapping (found by fuzzing)
        raise InputError(f"model options must be a mapping of name to value, got {str(options)[:80]!r}")
    return text(options or ())


def scenario_key(scenario: str, qps=None) -> str:
    """The end of a LoadGen cell's key: ``server@qps=20`` (a server cell at 20 QPS), ``server`` (at LoadGen's
    calibrated QPS), ``offline``, ...; "" for a latency (bench) cell, whose key has no such part."""
    if not scenario or scenario == "latency":
        return ""
    q = _num(qps)
    return f"{scenario}@qps={q:g}" if scenario == "server" and not math.isnan(q) else scenario


def cell_key(row: dict) -> str:
    """The key of a row from its key columns (``model|target|precision|b1|r224|t2[|opts][|server@qps=20]``; the
    same form as sweep cell keys)."""
    def part(v):
        return "auto" if v is None or (isinstance(v, float) and math.isnan(v)) else int(v)

    parts = [row["model"], row["target"], row["precision"], f"b{part(row['batch'])}", f"r{part(row['resolution'])}",
             f"t{part(row['threads'])}"]
    extra = ",".join(o for o in (row.get("model_options"), row.get("target_options")) if o)
    if extra:  # model and target options in one sorted list, as a run spec's key has them
        parts.append(",".join(sorted(extra.split(","))))
    suffix = scenario_key(row.get("scenario") or "", row.get("qps_scheduled"))
    if suffix:
        parts.append(suffix)
    return "|".join(str(p) for p in parts)


def target_options_text(settings: dict, loadgen: bool = False) -> str:
    """The runtime options a report's settings set to other than their declared defaults, besides threads and
    precision (the table's own columns), where caches live and, for a LoadGen report, the mode its scenario
    decides: ``streams=2,mode=throughput``."""
    from deploykit.runtimes.options import declared_options

    skip = ("threads", "precision", "cache_dir") + (("mode",) if loadgen else ())
    return options_text({s.name: settings[s.name] for s in declared_options()
                         if s.name in settings and s.name not in skip and s.flag is not None
                         and settings[s.name] is not None and settings[s.name] != s.default})


def _common_row(report: dict) -> dict:
    """The columns every report kind fills the same way from the sections they share (model, target, settings,
    throughput, memory, environment): key, status and run columns and the memory columns."""
    row = empty_row()
    m, t, st = report["model"], report["target"], report["settings"]
    info = t.get("info") or {}
    threads = st.get("threads") or info.get("threads")
    row.update({
        "model": m["label"], "model_options": options_text((m.get("export_settings") or {}).get("options")),
        "family": m.get("family") or "", "target": t["name"], "precision": t["precision"],
        "batch": int(report["throughput"]["batch"]), "resolution": int(m["input"]["shape"][-1]),
        "threads": int(threads) if threads else None,
        "target_options": target_options_text(st, report.get("schema") == _loadgen.SCHEMA),
        "status": "ok", "reason": "", "exit_code": 0,
        "created": report.get("created", ""),
        "git_rev": str(((report.get("environment") or {}).get("deploykit") or {}).get("sha") or ""),
    })
    mem = report.get("memory") or {}
    for col in ("rss_peak_mb", "rss_increase_mb", "gpu_peak_mb", "artifact_mb"):
        row[col] = _num(mem.get(col))
    host = (report.get("environment") or {}).get("host") or ""
    row["host"] = row["node"] = str(host)
    return row


def _bench_row(report: dict) -> dict:
    row = _common_row(report)
    m, s = report["model"], report["stats"]
    lo, hi = s["median_ci95"]
    row.update({
        "scenario": "latency",
        "p50_ms": _num(s["p50"]), "ci_low_ms": _num(lo), "ci_high_ms": _num(hi), "p90_ms": _num(s["p90"]),
        "p99_ms": _num(s["p99"]), "mean_ms": _num(s["mean"]), "cv_pct": _scaled(s["cv"], 0.01),
        "items_per_s": _num(report["throughput"]["items_per_s"]), "iterations": int(report["timing"]["iterations"]),
        "fidelity": {True: "pass", False: "FAIL", None: "n/a"}[report["fidelity"].get("passed")],
        "noisy": _noisy(report),
    })
    cx = (m.get("complexity") or {})
    row["params_m"] = _scaled(cx.get("params"), 1e6)
    row["gmacs"] = _scaled(cx.get("macs"), 1e9)
    row["gmacs_attention"] = _scaled(cx.get("macs_attention"), 1e9)
    eff = report.get("efficiency") or {}
    row["gflops"] = _num(eff.get("gflops"))
    if not math.isnan(_num(eff.get("share_of_measured"))):
        row["peak_share"], row["peak_kind"] = _num(eff["share_of_measured"]), "measured"
    elif not math.isnan(_num(eff.get("share_of_theoretical"))):
        row["peak_share"], row["peak_kind"] = _num(eff["share_of_theoretical"]), "theoretical"
    row["j_per_item"] = _measured_j_per_item(report.get("energy"))
    acc = report.get("accuracy") or {}
    row["top1"], row["top5"] = _num(acc.get("top1")), _num(acc.get("top5"))
    paired = acc.get("vs_fp32") or {}
    ci = paired.get("ci95") or [None, None]
    row["acc_drop"], row["acc_drop_ci_low"], row["acc_drop_ci_high"] = (_num(paired.get("drop")), _num(ci[0]),
                                                                         _num(ci[1]))
    row["acc_mcnemar_p"] = _num(paired.get("mcnemar_p"))
    return row


def _noisy(report: dict) -> bool | None:
    """Whether the report's raw samples (in measured order) are flagged by ``bench.stats.noise_flags``."""
    from deploykit.bench.stats import noise_flags

    samples = (report.get("timing") or {}).get("samples_ms")
    if not isinstance(samples, list) or not samples:
        return None
    try:
        return bool(noise_flags(samples))
    except (TypeError, ValueError):
        return None


def _loadgen_row(report: dict) -> dict:
    """A LoadGen report's row: the contract fields ``report.loadgen.results_fields`` gives (LoadGen's latency
    percentiles, items/s, queries, verdict, rates, memory); the model columns (params, MACs, GFLOP/s, share of
    peak) and energy stay NaN. ``qps_scheduled`` of a server row is the rate LoadGen was asked to schedule (its
    target QPS, the cell's), so that rows of one QPS group together; the rate its Poisson draw realised is the
    report's ``loadgen.qps_scheduled``."""
    row = _common_row(report)
    row.update({k: v for k, v in _loadgen.results_fields(report).items() if k in row})
    if row["scenario"] == "server":
        target = _num((report["loadgen"].get("effective_settings") or {}).get("target_qps"))
        row["qps_scheduled"] = target if not math.isnan(target) else _num(report["settings"].get("qps"))
    return row


def _measured_j_per_item(energy: dict | None) -> float:
    """J per item of the first measured (not estimated) energy domain; NaN when none was measured."""
    for d in (energy or {}).get("domains", []):
        if d.get("joules") and not d.get("estimated"):
            return _num(d.get("j_per_inference"))
    return NAN


register_row_builder(SCHEMA, _bench_row, validate)
register_row_builder(_loadgen.SCHEMA, _loadgen_row, _loadgen.validate)


def _schema_of(data) -> str | None:
    """A document's ``schema`` when it is a string (a list or a mapping there is no schema; found by fuzzing)."""
    schema = data.get("schema") if isinstance(data, dict) else None
    return schema if isinstance(schema, str) else None


def load_report(path: str | Path) -> dict:
    """A report file of any kind with a row builder, validated against its own schema (a benchmark or a LoadGen
    report); anything else is a one-line InputError."""
    from deploykit.core.validate import read_json

    data = read_json(path, "report")  # NaN / Infinity are not JSON: refused here
    schema = _schema_of(data)
    check = _VALIDATORS.get(schema)
    if check is None:
        raise InputError(f"{path} is not a deploykit report of a kind with results rows (schema {schema!r}; "
                         f"known: {', '.join(sorted(_ROW_BUILDERS))})")
    check(data, str(path))
    return data


def row_from_report(report: dict, cell: dict | None = None, *, report_path: str | Path | None = None,
                    run: dict | None = None) -> dict:
    """The results-table row of one report. ``cell``: the sweep cell's key columns (``Cell.describe()``), which
    name the row (``cell`` key, model as the sweep named it, requested threads/options) where given; ``run``:
    run columns (wall_s, host, node, job_id, executor) the executor knows; ``report_path``: the ``report``
    column."""
    schema = _schema_of(report)
    builder = _ROW_BUILDERS.get(schema)
    if builder is None:
        raise InputError(f"cannot make a results row from a report with schema {schema!r} "
                         f"(known: {', '.join(sorted(_ROW_BUILDERS))})")
    try:
        row = builder(report)
    except (AttributeError, TypeError, KeyError, ValueError, IndexError) as exc:
        # the schema leaves some sections open; a report whose values there have other shapes is refused in one
        # line rather than crashing report / compare / a sweep (found by fuzzing)
        raise InputError(f"a section of the report has values of unexpected types ({type(exc).__name__}: "
                         f"{str(exc)[:120]})") from None
    if cell:
        for col in ("model", "model_options", "target_options", "family", "target", "precision", "batch", "threads",
                    "scenario", "qps_scheduled"):
            if cell.get(col) not in (None, ""):  # what the sweep asked for names the row (the key's values)
                row[col] = cell[col]
    for k, v in (run or {}).items():
        if v is not None and k in row:
            row[k] = v
    if report_path is not None:
        row["report"] = str(report_path)
    row["cell"] = (cell or {}).get("cell") or cell_key(row)
    return row


def failed_row(cell: dict, status: str, reason: str, *, exit_code: int | None = None, run: dict | None = None,
               report_path: str | Path | None = None) -> dict:
    """A row for a cell that produced no report: failed / timeout / killed / skipped, with its one-line reason."""
    if status not in STATUSES or status == "ok":
        raise ValueError(f"not a failure status: {status!r}")
    row = empty_row()
    for col in KEY_COLUMNS + ("family", "qps_scheduled"):
        if col in cell and cell[col] is not None:
            row[col] = cell[col]
    row.update({"status": status, "reason": " ".join(str(reason).split())[:300], "exit_code": exit_code,
                "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
    for k, v in (run or {}).items():
        if v is not None and k in row:
            row[k] = v
    if report_path is not None:
        row["report"] = str(report_path)
    row["cell"] = cell.get("cell") or cell_key(row)
    return row


# -------------------------------------------------------------------------------------------------- tables

def to_frame(rows: Iterable[dict]):
    """A pandas DataFrame with the table's columns, in order, with their types (nullable ints / bools)."""
    import pandas as pd

    rows = list(rows)
    df = pd.DataFrame([{c: r.get(c) for c in COLUMN_NAMES} for r in rows], columns=COLUMN_NAMES)
    return _typed(df)


def _typed(df):
    import pandas as pd

    for col, kind in COLUMNS:
        if col not in df.columns:
            df[col] = pd.NA if kind in ("int", "bool") else (float("nan") if kind == "float" else "")
        s = df[col]
        if kind == "str":
            df[col] = s.map(lambda v: "" if v is None or (isinstance(v, float) and math.isnan(v)) or v is pd.NA
                            else str(v)).astype(object)
        elif kind == "float":
            df[col] = pd.to_numeric(s, errors="coerce").astype("float64")
        elif kind == "int":
            num = pd.to_numeric(s, errors="coerce")
            # inf / -inf in a whole-number column is missing (found by fuzzing: it crashed the conversion)
            df[col] = num.where(num.abs() != math.inf).round().astype("Int64")
        elif kind == "bool":
            df[col] = s.map(_to_bool).astype("boolean")
    extra = [c for c in df.columns if c not in COLUMN_NAMES]  # a later version's columns are kept, after ours
    return df[COLUMN_NAMES + extra]


def _to_bool(v):
    if isinstance(v, bool):
        return v
    if isinstance(v, str) and v.strip().lower() in ("true", "false"):
        return v.strip().lower() == "true"
    return None


def _round_for_csv(df):
    """Floats with a sensible number of digits for people (the Parquet file keeps full precision)."""
    out = df.copy()
    for col, kind in COLUMNS:
        if kind == "float":
            out[col] = out[col].map(lambda v: v if math.isnan(v) else float(f"{v:.6g}"))
    return out


def write_results(rows, out: str | Path) -> tuple[Path, Path]:
    """Write ``rows`` (dicts or a DataFrame) to ``out/results.parquet`` and ``out/results.csv``, each atomically
    (a kill between the two leaves the Parquet file complete and the CSV one row behind at worst)."""
    import pandas as pd

    out = ensure_dir(Path(out))
    df = _typed(rows.copy()) if isinstance(rows, pd.DataFrame) else to_frame(rows)
    pq, csv = out / RESULTS_PARQUET, out / RESULTS_CSV
    with atomic_path(pq) as tmp:
        df.to_parquet(tmp, index=False)
    with atomic_path(csv) as tmp:
        _round_for_csv(df).to_csv(tmp, index=False)
    return pq, csv


def read_results(*paths: str | Path, absolute_reports: bool = False):
    """One DataFrame of rows from results tables (.parquet / .csv, or a folder holding results.parquet /
    results.csv) and reports (a report .json, or a folder of them, searched recursively). With
    ``absolute_reports`` the ``report`` column holds absolute paths (for reading the reports' samples)."""
    import pandas as pd

    frames = [_read_one(Path(p), absolute_reports) for p in paths]
    if not frames:
        return to_frame([])
    return _typed(pd.concat(frames, ignore_index=True)) if len(frames) > 1 else frames[0]


def _read_one(p: Path, absolute_reports: bool):
    if p.is_dir():
        for name in (RESULTS_PARQUET, RESULTS_CSV):
            if (p / name).is_file():
                return _read_table(p / name, absolute_reports)
        files = sorted(f for f in p.rglob("*.json") if f.is_file())
        rows = rows_from_report_files([f for f in files if _looks_like_report(f)], root=p, absolute=absolute_reports,
                                      skip_other=True)
        if not rows:
            raise InputError(f"{p} holds no results table ({RESULTS_PARQUET}, {RESULTS_CSV}) and no report JSON")
        return to_frame(rows)
    if not p.exists():
        raise InputError(f"not found: {p}")
    if p.suffix in (".parquet", ".csv"):
        return _read_table(p, absolute_reports)
    if p.suffix == ".json":
        return to_frame(rows_from_report_files([p], root=p.parent, absolute=absolute_reports))
    raise InputError(f"{p}: expected a results table (.parquet, .csv), a report (.json) or a folder of them")


# a results table is at most this big on disk, in rows, and (Parquet) once decompressed: a sweep of 10^5 cells is
# ~50 MB of CSV
MAX_TABLE_BYTES = 256 * 1024 * 1024
MAX_TABLE_ROWS = 1_000_000
MAX_TABLE_DECOMPRESSED = 2 * 1024 * 1024 * 1024


def read_table_file(p: Path, *, csv_dtype: dict, csv_na: dict, what: str = "results table"):
    """The DataFrame in the .parquet / .csv file ``p``, read through the guarded boundary (a regular file, no link
    through which, at most MAX_TABLE_BYTES), with at most MAX_TABLE_ROWS rows and a Parquet file's declared
    decompressed size at most MAX_TABLE_DECOMPRESSED, checked from its footer before anything is decompressed."""
    import io

    import pandas as pd

    from deploykit.core.errors import squash
    from deploykit.core.guarded import read_bytes

    data = read_bytes(p, max_bytes=MAX_TABLE_BYTES, what=what, follow=True)
    try:
        if p.suffix.lower() == ".parquet":
            import pyarrow.parquet as pq

            meta = pq.ParquetFile(io.BytesIO(data)).metadata
            rows = meta.num_rows
            size = sum(meta.row_group(i).total_byte_size for i in range(meta.num_row_groups))
            if rows > MAX_TABLE_ROWS:
                raise InputError(f"{what} {p} has {rows:,} rows (at most {MAX_TABLE_ROWS:,})")
            if size > MAX_TABLE_DECOMPRESSED:
                raise InputError(f"{what} {p} decompresses to {size / 1e9:.1f} GB (at most "
                                 f"{MAX_TABLE_DECOMPRESSED / 1e9:.1f} GB): not a results table")
            return pd.read_parquet(io.BytesIO(data))
        if data.count(b"\n") > MAX_TABLE_ROWS + 1:
            raise InputError(f"{what} {p} has more than {MAX_TABLE_ROWS:,} rows")
        return pd.read_csv(io.BytesIO(data), dtype=csv_dtype, keep_default_na=False, na_values=csv_na)
    except InputError:
        raise
    except Exception as exc:  # pyarrow / pandas raise many kinds for a corrupt or foreign file
        raise InputError(f"cannot read {what} {p}: it is not a readable results table: {squash(exc, 200)}") from None


def _read_table(p: Path, absolute_reports: bool):
    df = read_table_file(p, csv_dtype={c: str for c, k in COLUMNS if k == "str"},
                         csv_na={c: [""] for c, k in COLUMNS if k != "str"})
    missing = [c for c in ("cell", "model", "target", "status") if c not in df.columns]
    if missing:
        raise InputError(f"{p} is not a deploykit results table (no {missing[0]!r} column)")
    df = _typed(df)
    if absolute_reports:
        from deploykit.core.guarded import inside

        root = p.parent.resolve()
        df["report"] = df["report"].map(lambda r: str(inside(root, r, what=f"{p}: report path")) if r else "")
    return df


def _looks_like_report(f: Path) -> bool:
    from deploykit.core.guarded import open_regular

    try:
        fd = open_regular(f, what="report")
    except InputError:
        return False
    try:
        head = os.read(fd, 200)
    except OSError:
        return False
    finally:
        os.close(fd)
    return b'"schema"' in head and b"deploykit." in head


def rows_from_report_files(files: Iterable[Path], root: Path | None = None, absolute: bool = False,
                           skip_other: bool = False) -> list[dict]:
    """Rows of report JSON files; ``skip_other``: leave out JSON files of other kinds (a folder's sweep.json)
    instead of refusing them."""
    rows = []
    for f in files:
        from deploykit.core.validate import read_json

        data = read_json(f, "report")  # guarded: a regular file, size-capped, NaN / Infinity refused
        if skip_other and _schema_of(data) not in _ROW_BUILDERS:
            continue
        check = _VALIDATORS.get(_schema_of(data))
        if check is not None:
            check(data, str(f))
        path = Path(f).resolve() if absolute or root is None else _relative(Path(f), root)
        try:
            rows.append(row_from_report(data, report_path=path))
        except InputError as exc:
            raise InputError(f"{f}: {exc}") from None
    return rows


def _relative(f: Path, root: Path) -> Path:
    try:
        return f.resolve().relative_to(root.resolve())
    except ValueError:
        return f.resolve()
