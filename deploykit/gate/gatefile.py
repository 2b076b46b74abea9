"""Gate files: the checks a CI latency gate runs, committed in the user's repository (TOML; YAML if PyYAML is there).

    version = 1                          # gate file format version (required)

    [settings]                           # optional, gate-wide; command-line options override them
    alpha = 0.05                         # family-wise error rate over all checks
    correction = "bonferroni"            # bonferroni | holm | none
    min_blocks = 10                      # blocks per side before the first decision
    max_blocks = 60                      # cap on blocks per side
    block_time = 0.25                    # seconds per block (and at least block_iters iterations)
    time_budget = 300                    # seconds of measuring for the whole gate
    baseline_drift = "10%"               # baseline checks: allowed drift of the relative cost between sessions
    strict = false                       # INCONCLUSIVE fails (exit 5)

    [defaults]                           # optional: any check key, used where a check does not set it
    target = "ort"
    threads = 2

    [[check]]
    name = "resnet18"                    # optional (default: derived from the models and settings)
    model = "resnet18"                   # the candidate: registry name or ONNX file
    against = "base/resnet18.onnx"       # exactly one of: against (ONNX file or model name), against_rev
                                         # (a git revision), baseline (a stored report, see deploykit baseline)
    target = "ort"                       # a value or a list; lists of target/batch/resolution make a matrix
    precision = "fp32"
    batch = 1
    resolution = 224
    metrics = ["p50", "p90"]             # or metric = "p50"; p50 | p90 | throughput
    tolerance = {p50 = "5%", p90 = "10%"}  # or one value for every metric; defaults p50 5%, p90 10%, throughput 5%
    threads = 2
    graph_opt = "all"                    # and any option a target declares ('deploykit bench --help' lists them:
                                         # streams, requests, mode, device ...) or a model family declares (parc_impl)

Relative paths (models, against, baseline) are relative to the gate file's folder; a baseline (a file
``deploykit baseline update -c`` writes) must stay inside the repository that holds the gate file (inside the gate
file's folder when it is in none). Numbers must be finite, counts whole numbers within bounds. Every problem -- missing
file, malformed TOML/YAML, wrong version, unknown key (with a suggestion), unknown model, bad value -- is an
InputError (exit 2) naming the file and the check, raised before anything is measured.
"""

from __future__ import annotations

import difflib
import itertools
import math
from pathlib import Path

from deploykit.core.config import ExportConfig
from deploykit.gate.config import GATE_METRICS, GateCheck, GateConfig, GateMetric
from deploykit.core.errors import DeployKitError, InputError, UsageError
from deploykit.spec.run import unknown_keys
from deploykit.gate.decision import DEFAULT_TOLERANCES, parse_drift, parse_tolerance

GATE_FILE_VERSION = 1
CHECK_KEYS = ("name", "model", "against", "against_rev", "baseline", "target", "precision", "batch", "resolution",
              "metric", "metrics", "tolerance", "threads")


def check_keys() -> list[str]:
    """A check's keys: the gate's own, and every runtime option a target declares and model option a family
    declares (by name: graph_opt, streams, parc_impl ...), with no list here."""
    from deploykit.spec.run import generic_keys

    return list(dict.fromkeys([*CHECK_KEYS, *(k for k in generic_keys() if k not in ("model", "weights", "pretrained",
                                                                                    "opset"))]))
SETTINGS_KEYS = ("alpha", "correction", "strict", "min_blocks", "max_blocks", "block_time", "block_iters",
                 "baseline_drift",
                 "block_warmup", "time_budget", "seed")
INT_SETTINGS = ("min_blocks", "max_blocks", "block_iters", "block_warmup", "seed")
TOP_KEYS = ("version", "settings", "defaults", "check")
MATRIX_KEYS = ("target", "batch", "resolution")


def read_gate_file(path: str | Path) -> dict:
    """The raw mapping in a TOML or YAML gate file."""
    from deploykit.core.guarded import read_text

    p = Path(path)
    text = read_text(p, what="gate file", follow=True)  # guarded: a regular file (no FIFO, no device), <= 4 MiB
    suffix = p.suffix.lower()
    if suffix in (".yaml", ".yml"):
        try:
            import yaml
        except ImportError:
            raise InputError(f"gate file {p} is YAML, which needs PyYAML (pip install pyyaml); "
                             "or write the gate file in TOML (gate.toml)") from None
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" (line {mark.line + 1})" if mark is not None else ""
            why = getattr(exc, "problem", None) or exc
            raise InputError(f"gate file {p} is not valid YAML{where}: {why}") from None
    elif suffix == ".toml":
        import tomllib

        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise InputError(f"gate file {p} is not valid TOML: {exc}") from None
    else:
        raise InputError(f"gate file {p}: unknown format {suffix or '(no extension)'!r}; use .toml (or .yaml/.yml)")
    if not isinstance(data, dict):
        raise InputError(f"gate file {p} must hold a table/mapping at the top level")
    return data


def _int(value, key: str, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InputError(f"{where}: {key} must be a positive integer, got {value!r}")
    return value


def _str(value, key: str, where: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InputError(f"{where}: {key} must be a non-empty string, got {value!r}")
    return value.strip()


def parse_settings(raw: dict | None, where: str) -> dict:
    """Gate-wide settings as GateConfig keyword arguments (validated when the GateConfig is built)."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise InputError(f"{where}: [settings] must be a table")
    unknown_keys(raw, SETTINGS_KEYS, f"{where} [settings]")
    out = {}
    for k, v in raw.items():
        if k == "strict":
            if not isinstance(v, bool):
                raise InputError(f"{where} [settings]: strict must be true or false, got {v!r}")
        elif k == "correction":
            v = _str(v, k, f"{where} [settings]")
        elif k == "baseline_drift":
            v = parse_drift(v, f"{where} [settings]: baseline_drift")
        elif k in INT_SETTINGS:
            if isinstance(v, bool) or not isinstance(v, int):
                raise InputError(f"{where} [settings]: {k} must be a whole number, got {v!r}")
        elif isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise InputError(f"{where} [settings]: {k} must be a finite number, got {v!r}")
        out[k] = v
    return out


def _metrics(entry: dict, where: str) -> tuple[GateMetric, ...]:
    if "metric" in entry and "metrics" in entry:
        raise InputError(f"{where}: give metric or metrics, not both")
    raw = entry.get("metrics", entry.get("metric", "p50"))
    names = [raw] if isinstance(raw, str) else raw
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        raise InputError(f"{where}: metrics must be a metric name or a list of them ({', '.join(GATE_METRICS)})")
    for n in names:
        if n not in GATE_METRICS:
            close = difflib.get_close_matches(n, GATE_METRICS, n=1, cutoff=0.5)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise InputError(f"{where}: unknown metric {n!r}{hint} (choose from {', '.join(GATE_METRICS)})")
    if len(set(names)) != len(names):
        raise InputError(f"{where}: a metric is listed twice ({', '.join(names)})")
    tol = entry.get("tolerance")
    out = []
    for n in names:
        if isinstance(tol, dict):
            unknown_keys(tol, list(GATE_METRICS), f"{where} tolerance")
            t = tol.get(n, DEFAULT_TOLERANCES[n])
        else:
            t = DEFAULT_TOLERANCES[n] if tol is None else tol
        out.append(GateMetric(n, parse_tolerance(t, f"{where}: tolerance of {n}")))
    return tuple(out)


def resolve_path(value: str, base: Path | None) -> str:
    """A path relative to the gate file's folder; model names are returned unchanged."""
    from deploykit.export.source import looks_like_file
    from deploykit.models.registry import MODELS

    if base is None or value in MODELS or not looks_like_file(value):
        return value
    p = Path(value)
    return str(p if p.is_absolute() else base / p)


def baseline_path(value: str, base: Path | None, where: str) -> str:
    """A check's baseline file (which ``deploykit baseline update -c`` writes): relative to the gate file's folder and
    inside the repository that holds the gate file (its folder when it is in none), a .json file."""
    if base is None:
        return value
    p = Path(value)
    if p.is_absolute():
        raise InputError(f"{where}: baseline {value!r} must be a path relative to the gate file's folder")
    if p.suffix != ".json":
        raise InputError(f"{where}: baseline {value!r} must be a .json file")
    root = _repository_root(base)
    target = (base / p).resolve()
    try:
        target.relative_to(root)
    except ValueError:
        raise InputError(f"{where}: baseline {value!r} leads outside "
                         f"{'the repository' if root != base.resolve() else 'the gate file folder'} {root}") from None
    return str(base / p)


def _repository_root(folder: Path) -> Path:
    """The git work tree holding ``folder`` (nearest parent with a .git), else ``folder`` itself."""
    folder = folder.resolve()
    for d in (folder, *folder.parents):
        if (d / ".git").exists():
            return d
    return folder


def parse_checks(data: dict, *, where: str, base: Path | None, export: ExportConfig | None = None) -> list[GateCheck]:
    """The checks of a gate file mapping, the matrix keys (target, batch, resolution) expanded."""
    unknown_keys(data, TOP_KEYS, where)
    version = data.get("version")
    if version is None:
        raise InputError(f"{where}: missing 'version = {GATE_FILE_VERSION}' (the gate file format version)")
    if version != GATE_FILE_VERSION or isinstance(version, bool):
        raise InputError(f"{where}: gate file version {version!r} is not supported; this deploykit reads version "
                         f"{GATE_FILE_VERSION}")
    defaults = data.get("defaults") or {}
    if not isinstance(defaults, dict):
        raise InputError(f"{where}: [defaults] must be a table")
    keys = check_keys()
    unknown_keys(defaults, [k for k in keys if k != "name"], f"{where} [defaults]")
    entries = data.get("check")
    if not entries:
        raise InputError(f"{where}: no checks (add one or more [[check]] tables)")
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise InputError(f"{where}: 'check' must be a list of tables ([[check]] in TOML)")
    checks: list[GateCheck] = []
    names: set[str] = set()
    for i, raw in enumerate(entries, 1):
        cw = f"{where} check {i}" + (f" ({raw['name']})" if isinstance(raw.get("name"), str) else "")
        unknown_keys(raw, keys, cw)
        entry = {**defaults, **raw}
        if "model" not in entry:
            raise InputError(f"{cw}: missing 'model' (the candidate: a model name or an ONNX file)")
        modes = [m for m in ("against", "against_rev", "baseline") if m in entry]
        if len(modes) != 1:
            raise InputError(f"{cw}: give exactly one of against, against_rev, baseline"
                             + (f" (found {', '.join(modes)})" if modes else ""))
        mode = modes[0]
        candidate = resolve_path(_str(entry["model"], "model", cw), base)
        reference = _str(entry[mode], mode, cw)
        if mode == "against":
            reference = resolve_path(reference, base)
        elif mode == "baseline":
            reference = baseline_path(reference, base, cw)
        metrics = _metrics(entry, cw)
        axes = {}
        for k in MATRIX_KEYS:
            v = entry.get(k)
            vals = v if isinstance(v, list) else [v]
            if not vals:
                raise InputError(f"{cw}: {k} is an empty list")
            axes[k] = [None if x is None else (_str(x, k, cw) if k == "target" else _int(x, k, cw)) for x in vals]
        if axes["target"] == [None]:
            axes["target"] = ["ort"]
        threads = entry.get("threads")
        if threads is not None:
            threads = _int(threads, "threads", cw)
        precision = _str(entry["precision"], "precision", cw) if entry.get("precision") is not None else None
        values = tuple((k, v) for k, v in entry.items() if k not in CHECK_KEYS)
        combos = list(itertools.product(axes["target"], axes["batch"], axes["resolution"]))
        if mode == "baseline" and len(combos) > 1:
            raise InputError(f"{cw}: a check with a baseline cannot use lists for target/batch/resolution (one "
                             "baseline file holds one measurement); write one check per baseline")
        for target, batch, res in combos:
            name = raw.get("name")
            if name is not None:
                name = _str(name, "name", cw)
                if len(combos) > 1:
                    name += f" [{target}" + (f" b{batch}" if batch else "") + (f" r{res}" if res else "") + "]"
            else:
                name = default_name(candidate, mode, reference, target, batch, res)
            if name in names:
                raise InputError(f"{cw}: two checks are named {name!r}; give each a distinct name")
            names.add(name)
            try:
                checks.append(GateCheck(name=name, candidate=candidate, mode=mode, reference=reference, target=target,
                                        metrics=metrics, precision=precision, batch=batch, resolution=res,
                                        threads=threads, values=values, export=export))
            except DeployKitError as exc:
                raise InputError(f"{cw}: {exc.one_line()}") from None
    return checks


def default_name(candidate: str, mode: str, reference: str, target: str, batch, res) -> str:
    def short(s: str) -> str:
        return Path(s).name if ("/" in s or s.endswith(".onnx")) else s

    ref = {"against": short(reference), "against_rev": f"{short(candidate)}@{reference}",
           "baseline": f"baseline {short(reference)}"}[mode]
    return f"{short(candidate)} vs {ref} on {target}" + (f" b{batch}" if batch else "") + (f" r{res}" if res else "")


def load_gate_file(path: str | Path, *, export: ExportConfig | None = None) -> tuple[list[GateCheck], dict]:
    """(checks, settings) of a gate file; settings are GateConfig keyword arguments."""
    p = Path(path)
    data = read_gate_file(p)
    checks = parse_checks(data, where=f"gate file {p}", base=p.resolve().parent, export=export)
    settings = parse_settings(data.get("settings"), f"gate file {p}")
    try:
        GateConfig(**settings)
    except DeployKitError as exc:
        raise InputError(f"gate file {p} [settings]: {exc.one_line()}") from None
    return checks, settings


# ------------------------------------------------------------------------------------- checks of the command line

def parse_metrics(values: tuple[str, ...]) -> list[str]:
    names = [v.strip() for spec in values for v in spec.split(",") if v.strip()]
    for n in names:
        if n not in GATE_METRICS:
            raise UsageError(f"unknown metric {n!r} for --metric (choose from {', '.join(GATE_METRICS)})")
    if len(set(names)) != len(names):
        raise UsageError(f"--metric lists a metric twice: {', '.join(names)}")
    return names or ["p50"]


def parse_tolerances(values: tuple[str, ...], metrics: list[str]) -> dict[str, float]:
    """``--tolerance 5%`` (every metric) or ``--tolerance p90=10%`` (one metric); the rest keep their defaults."""
    out = {m: DEFAULT_TOLERANCES[m] for m in metrics}
    for v in values:
        key, sep, val = v.partition("=")
        if sep:
            key = key.strip()
            if key not in metrics:
                raise UsageError(f"--tolerance {v}: {key!r} is not one of the metrics checked ({', '.join(metrics)})")
            out[key] = parse_tolerance(val, f"--tolerance {v}")
        else:
            t = parse_tolerance(v, f"--tolerance {v}")
            out = {m: t for m in metrics}
    return out


def checks_from_command(candidate: str | None, *, against=None, against_rev=None, baseline=None, gate_file=None,
                        target=None, precision=None, batch=None, resolution=None, threads=None, values=None,
                        metrics=(), tolerances=(),
                        export: ExportConfig | None = None) -> tuple[list[GateCheck], dict, str]:
    """(checks, settings, source) of ``deploykit gate``'s arguments: one check from the command line (exactly one
    of ``against``, ``against_rev``, ``baseline``) or every check of ``gate_file`` (then the per-check options
    must not be given). ``values``: other runtime / model options by name (None: not given)."""
    from deploykit.runtimes.base import DEFAULT_TARGET

    modes = {"--against": against, "--against-rev": against_rev, "--baseline": baseline, "--config": gate_file}
    given = [k for k, v in modes.items() if v is not None]
    if len(given) != 1:
        raise UsageError("give exactly one of --against, --against-rev, --baseline, --config"
                         + (f" (got {', '.join(given)})" if given else ""))
    values = {k: v for k, v in (values or {}).items() if v is not None}
    if gate_file is not None:
        per_check = {"CANDIDATE": candidate, "--target": target, "--precision": precision, "--batch": batch,
                     "--resolution": resolution, "--threads": threads,
                     **{f"--{k.replace('_', '-')}": v for k, v in values.items()},
                     "--metric": metrics or None, "--tolerance": tolerances or None}
        clash = [k for k, v in per_check.items() if v is not None]
        if clash:
            raise UsageError(f"{', '.join(clash)} cannot be combined with --config: set them in the gate file")
        checks, settings = load_gate_file(gate_file, export=export)
        return checks, settings, str(gate_file)
    mode, ref = {"--against": ("against", against), "--against-rev": ("against_rev", against_rev),
                 "--baseline": ("baseline", str(baseline) if baseline else None)}[given[0]]
    if candidate is None:
        if mode != "baseline":
            raise UsageError(f"missing CANDIDATE (the model name or ONNX file to check {given[0]} {ref})")
        from deploykit.gate.run import baseline_candidate, load_baseline

        candidate = baseline_candidate(load_baseline(ref), ref)
    names = parse_metrics(metrics)
    tols = parse_tolerances(tolerances, names)
    tgt = target or DEFAULT_TARGET
    check = GateCheck(name=default_name(candidate, mode, ref, tgt, batch, resolution), candidate=candidate, mode=mode,
                      reference=ref, target=tgt, metrics=tuple(GateMetric(m, tols[m]) for m in names),
                      precision=precision, batch=batch, resolution=resolution, threads=threads,
                      values=tuple(values.items()), export=export)
    return [check], {}, "command line"
