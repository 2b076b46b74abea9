"""Running a latency gate: resolve and check everything first, then measure each check interleaved, then decide.

Order of work:
  1. ``prepare``: every target known and available (exit 2 / 3), every model known or file present, every
     baseline readable, of the right schema and carrying the reference workload, every git revision
     resolvable -- all before the first measurement, so a typo fails in a second, not after minutes.
  2. per check: both sides loaded on the target (``--against``: the reference artifact and the candidate;
     ``--baseline``: the reference workload refnet-v1 and the candidate), then ABBA rounds
     (bench/interleave.py) until every metric of the check is decided at the strictest level the final
     correction can give it, or ``max_blocks`` / the time budget is reached.
  3. ``gate.decision.decide_all`` over all (check, metric) pairs with the multiple-comparison correction.
"""

from __future__ import annotations

import math
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from deploykit.bench.interleave import (Interleaved, Round, block_config, block_config_from, block_settings, load_side,
                                        log_ratios, run_interleaved, summarize_side)
from deploykit.core.config import default_models_dir
from deploykit.gate.config import GateCheck, GateConfig
from deploykit.runtimes.options import RuntimeOptions
from deploykit.spec.run import RunSpec
from deploykit.core.errors import DeployKitError, InputError, UsageError, squash
from deploykit.gate.decision import (INCONCLUSIVE, MIN_ROUNDS, Decision, Evidence, adaptive_level, decide_all,
                                   decide_one, exit_code)

Say = Callable[[str], None]


@dataclass
class Prepared:
    """A check with everything resolved that can be resolved without measuring."""

    check: GateCheck
    baseline: dict | None = None  # the loaded baseline report (baseline mode)
    rev_file: Path | None = None  # against_rev: the reference artifact materialised from git
    batch: int | None = None
    resolution: int | None = None
    options: RuntimeOptions = field(default_factory=RuntimeOptions)
    spec: RunSpec | None = None  # the candidate's run spec, with what the baseline fixes


@dataclass
class CheckResult:
    check: GateCheck
    candidate: dict | None = None
    reference: dict | None = None
    target_info: dict = field(default_factory=dict)
    options: dict = field(default_factory=dict)
    run: Interleaved | None = None
    baseline_rounds: list[Round] | None = None
    fingerprint_mismatches: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    evidence: list[Evidence] = field(default_factory=list)
    decisions: list[Decision] = field(default_factory=list)
    error: str | None = None
    error_code: int | None = None
    wall_s: float = 0.0
    load: dict = field(default_factory=dict)
    spec: dict | None = None  # the candidate's run spec (RunSpec.to_dict)


@dataclass
class GateResult:
    config: GateConfig
    checks: list[CheckResult]
    environment: dict
    wall_s: float
    source: str | None = None

    @property
    def decisions(self) -> list[Decision]:
        return [d for c in self.checks for d in c.decisions]

    @property
    def exit_code(self) -> int:
        errors = [c.error_code for c in self.checks if c.error_code]
        if errors:
            return errors[0]
        return exit_code(self.decisions, self.config.strict)


# ---------------------------------------------------------------------------------------------------- prepare

def _deploykit_repo() -> Path | None:
    root = Path(__file__).resolve().parents[2]
    return root if (root / ".git").exists() else None


def _git(args: list[str], cwd: Path, *, binary: bool = False) -> subprocess.CompletedProcess:
    if shutil.which("git") is None:
        raise UsageError("--against-rev needs git, which is not installed here")
    try:
        from deploykit.core.child import die_with_parent

        return subprocess.run(["git", "--no-optional-locks", *args], cwd=cwd, capture_output=True, text=not binary,
                              timeout=120, preexec_fn=die_with_parent)
    except (OSError, subprocess.SubprocessError) as exc:
        raise InputError(f"git {' '.join(args[:2])} failed: {exc}") from None


def _rev_commit(rev: str, cwd: Path) -> str:
    p = _git(["rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}"], cwd)
    if p.returncode != 0:
        raise InputError(f"git revision {rev!r} not found in the repository at {cwd} (fetch it first, e.g. "
                         "actions/checkout with fetch-depth: 0)")
    return p.stdout.strip()


def _is_registry(ref: str) -> bool:
    from deploykit.export.source import looks_like_file
    from deploykit.models.registry import MODELS

    return ref in MODELS or not looks_like_file(ref)


def _check_model_ref(ref: str, what: str) -> None:
    from deploykit.models.registry import get_cfg

    if _is_registry(ref):
        try:
            get_cfg(ref)
        except InputError as exc:
            raise InputError(f"{what}: {exc.one_line()}") from None
    elif not Path(ref).is_file():
        raise InputError(f"{what}: ONNX file not found: {ref}")


def load_baseline(path: str | Path) -> dict:
    """A baseline report: a deploykit report (schema v1) with the reference workload measured in blocks."""
    from deploykit.report.schema import load_report

    p = Path(path)
    if not p.exists():
        raise InputError(f"baseline not found: {p} (create it with 'deploykit baseline update')")
    try:
        rep = load_report(p)
    except InputError as exc:
        raise InputError(f"bad baseline: {exc.one_line()}") from None
    rw = rep.get("reference_workload")
    if not rw:
        raise InputError(f"baseline {p} has no reference workload, so it cannot be compared across machines; "
                         "rewrite it with 'deploykit baseline update'")
    try:
        rounds = [Round.from_json(b) for b in rw["blocks"]]
        for r in rounds:
            for blk in (r.a, r.b):
                if not blk.samples_ns or min(blk.samples_ns) <= 0 or blk.wall_ns <= 0:
                    raise ValueError("empty or non-positive block")
        block_config_from(rw["block_settings"])
    except (KeyError, TypeError, ValueError, DeployKitError) as exc:
        raise InputError(f"baseline {p}: reference workload blocks are malformed ({exc})") from None
    if len(rounds) < MIN_ROUNDS:
        raise InputError(f"baseline {p} has only {len(rounds)} reference-workload blocks (need at least {MIN_ROUNDS})")
    return rep


def certification_warnings(checks: list[GateCheck], cfg: GateConfig) -> list[str]:
    """Before anything is measured: the metrics of ``--baseline`` checks whose tolerance a stored baseline cannot
    certify. A tolerance at or below ``--baseline-drift`` can never PASS (a UsageError with ``--strict``, where the
    gate could then only fail); one at or below the drift plus the stored blocks' own noise
    (``decision.baseline_floor``) will not PASS however many blocks are measured today. Bad baselines are left
    to ``prepare`` to report."""
    from deploykit.gate.decision import baseline_floor

    m = sum(len(c.metrics) for c in checks)
    level = adaptive_level(cfg.alpha, m, cfg.correction)
    out = []
    for c in checks:
        if c.mode != "baseline":
            continue
        try:
            rounds = [Round.from_json(b) for b in load_baseline(c.reference)["reference_workload"]["blocks"]]
        except (DeployKitError, KeyError, TypeError, ValueError):
            continue
        for gm in c.metrics:
            floor = baseline_floor(log_ratios(rounds, gm.metric), drift=cfg.baseline_drift, level=level,
                                   n_boot=cfg.n_boot, seed=cfg.seed)
            suggest = f"{math.ceil(floor * 20 + 1e-9) * 5}%" if math.isfinite(floor) else "a larger one"
            what = f"check {c.name!r}: {gm.metric} tolerance {gm.tolerance:.1%}"
            if gm.tolerance <= cfg.baseline_drift:
                msg = (f"{what} is not above the baseline-drift allowance {cfg.baseline_drift:.1%}, so a stored "
                       "baseline cannot certify it: the check can find a regression but never PASS. Use "
                       f"--tolerance {suggest} or more (this baseline's noise plus the drift), a smaller "
                       "--baseline-drift (3% is realistic on a dedicated runner, baseline recorded on the same "
                       "runner type), or --against/--against-rev (no drift)")
                if cfg.strict:
                    raise UsageError(f"{msg}; with --strict the gate could only fail")
                out.append(msg)
            elif gm.tolerance <= floor:
                out.append(f"{what} is below what this stored baseline can certify: about {floor:.1%} (the "
                           f"drift allowance {cfg.baseline_drift:.1%} plus the noise of its "
                           f"{len(rounds)} blocks), so it will most likely be INCONCLUSIVE; use --tolerance "
                           f"{suggest} or more, or rewrite the baseline with more --blocks")
    return out


def portable_paths(report: dict, models_dir: Path, cwd: Path | None = None) -> dict:
    """``report`` with this machine's absolute paths made portable, for a baseline committed to a repository:
    paths in the artifact store become ``<models-dir>/...``, paths under the working directory relative to it;
    other strings are left as they are."""
    import json

    store = Path(models_dir).resolve()
    here = Path(cwd or Path.cwd()).resolve()

    def fix(v):
        if isinstance(v, dict):
            return {k: fix(x) for k, x in v.items()}
        if isinstance(v, list):
            return [fix(x) for x in v]
        if isinstance(v, str) and v.startswith("/"):
            p = Path(v)
            for root, prefix in ((store, "<models-dir>"), (here, None)):
                try:
                    rel = p.resolve().relative_to(root)
                except ValueError:
                    continue
                return f"{prefix}/{rel.as_posix()}" if prefix else rel.as_posix()
        return v

    return fix(json.loads(json.dumps(report)))


def baseline_candidate(rep: dict, path: str | Path) -> str:
    """The model a baseline measured, as something that can be measured again: its registry name, or its file."""
    from deploykit.models.registry import MODELS

    label, kind, mpath = rep["model"]["label"], rep["model"]["kind"], rep["model"]["path"]
    if kind == "registry" and label in MODELS:
        return label
    if kind == "onnx-file" and Path(mpath).is_file():
        return mpath
    if kind == "registry":
        raise InputError(f"baseline {path} measured model {label!r}, which this deploykit does not know "
                         "('deploykit models' lists them); name the candidate explicitly")
    raise InputError(f"baseline {path} measured the file {mpath}, which is not here; name the candidate explicitly")


def prepare(checks: list[GateCheck], *, tmp: Path) -> list[Prepared]:
    from deploykit.runtimes.base import get_runtime

    if not checks:
        raise UsageError("the gate has no checks")
    for c in checks:  # targets first: unknown -> 2, unavailable -> 3
        get_runtime(c.target).ensure_available()
    out = []
    for c in checks:
        where = f"check {c.name!r}"
        _check_model_ref(c.candidate, f"{where}: candidate")
        p = Prepared(check=c, batch=c.batch, resolution=c.resolution)
        if c.mode == "against":
            _check_model_ref(c.reference, f"{where}: --against")
        elif c.mode == "against_rev":
            p.rev_file = _materialise_rev(c, tmp)
        else:
            rep = load_baseline(c.reference)
            p.baseline = rep
            bt = rep["target"]["name"]
            if bt != c.target:
                raise InputError(f"{where}: baseline {c.reference} was measured on target {bt!r}, not {c.target!r}")
            shape = rep["model"]["input"]["shape"]
            for key, mine, theirs in (("batch", c.batch, shape[0]), ("resolution", c.resolution, shape[-1])):
                if mine is not None and mine != theirs:
                    raise InputError(f"{where}: {key} {mine} differs from the baseline's {theirs} "
                                     f"({c.reference}); rewrite the baseline with 'deploykit baseline update'")
            p.batch, p.resolution = shape[0], shape[-1]
        defaults = baseline_options(p.baseline) if c.mode == "baseline" else {}
        try:
            p.spec = c.spec(batch=p.batch, resolution=p.resolution, defaults=defaults)
            p.options = p.spec.runtime_options()
            get_runtime(c.target)(p.options)  # the target validates precision/mode now, not after minutes
        except DeployKitError as exc:
            raise type(exc)(f"{where}: {exc.one_line()}") from None
        out.append(p)
    return out


def baseline_options(rep: dict) -> dict:
    """The runtime options a baseline ran with (every option its target declares, as its report recorded them;
    threads: the count that ran): a check against it runs the same unless it says otherwise."""
    from deploykit.spec.run import value_kind

    s, info = rep["settings"], rep["target"]["info"]
    out = {k: v for k, v in s.items() if v is not None and k != "precision"
           and (value_kind(k) or ("",))[0] == "runtime"}
    if info.get("threads"):
        out["threads"] = info["threads"]
    return out


def _materialise_rev(c: GateCheck, tmp: Path) -> Path:
    """The reference artifact of an ``against_rev`` check, as a file in ``tmp``.

    A candidate ONNX file tracked in git: the file's content at the revision (``git show REV:./path``).
    A registry model: deploykit's own source at the revision (``git archive``), whose ``deploykit export`` then
    builds the model with the same settings -- "the model as exported at another revision" of deploykit."""
    rev = c.reference
    safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in rev)[:40]
    if not _is_registry(c.candidate):
        f = Path(c.candidate).resolve()
        _rev_commit(rev, f.parent)
        p = _git(["show", f"{rev}:./{f.name}"], f.parent, binary=True)
        if p.returncode != 0:
            msg = squash(p.stderr.decode(errors="replace"), 200)
            raise InputError(f"check {c.name!r}: {f.name} is not in git revision {rev!r} ({msg})")
        if p.stdout.startswith(b"version https://git-lfs"):
            raise InputError(f"check {c.name!r}: {f.name} at {rev!r} is a Git LFS pointer; fetch the LFS object "
                             "and pass it with --against")
        out = tmp / f"rev-{safe}" / f.name  # its own folder: external data files keep their names beside it
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(p.stdout)
        _materialise_external_data(c, rev, f, out)
        return out
    root = _deploykit_repo()
    if root is None:
        raise UsageError(f"check {c.name!r}: --against-rev with a model name builds the model with deploykit's code "
                         "at that revision, which needs deploykit run from its git checkout; otherwise export the "
                         "baseline yourself and pass it with --against FILE")
    _rev_commit(rev, root)
    src = tmp / f"deploykit@{safe}"
    src.mkdir(parents=True, exist_ok=True)
    p = _git(["archive", "--format=tar", rev, "deploykit"], root, binary=True)
    if p.returncode != 0:
        raise InputError(f"check {c.name!r}: git revision {rev!r} has no deploykit package to export with")
    import io
    import tarfile

    with tarfile.open(fileobj=io.BytesIO(p.stdout)) as tar:
        tar.extractall(src, filter="data")
    return src  # exported lazily in run_check (it needs the batch/resolution), see _export_at_rev


def _materialise_external_data(c: GateCheck, rev: str, f: Path, out: Path) -> None:
    """The external data files (``model.onnx.data``) the graph ``out`` names, from the same revision, beside it."""
    from deploykit.onnxio.files import external_data_files

    try:
        import onnx

        locations = external_data_files(onnx.load(str(out), load_external_data=False))
    except Exception:
        return  # not a readable graph: loading it reports that
    for loc in locations:
        rel = Path(loc)
        if rel.is_absolute() or ".." in rel.parts:
            raise InputError(f"check {c.name!r}: {f.name} at {rev!r} names external data outside its folder ({loc})")
        p = _git(["show", f"{rev}:./{rel.as_posix()}"], f.parent, binary=True)
        if p.returncode != 0:
            raise InputError(f"check {c.name!r}: {f.name} at {rev!r} keeps its weights in {loc}, which is not in "
                             "that revision")
        (out.parent / rel).parent.mkdir(parents=True, exist_ok=True)
        (out.parent / rel).write_bytes(p.stdout)


def _export_at_rev(src: Path, c: GateCheck, batch: int, resolution: int | None, say: Say) -> Path:
    import os

    from deploykit.core.child import die_with_parent

    out = src / f"{c.candidate}-b{batch}-r{resolution or 'default'}.onnx"
    if out.is_file():
        return out
    cmd = [sys.executable, "-m", "deploykit", "export", c.candidate, "--batch", str(batch), "-o", str(out),
           "--models-dir", str(src / "models")]
    if resolution:
        cmd += ["--resolution", str(resolution)]
    spec = c.spec(batch=batch, resolution=resolution)
    cmd += ["--opset", str(spec.opset), "--seed", str(c.export.seed if c.export else 0)]
    for k, v in spec.model_options:
        cmd += ["--model-opt", f"{k}={v}"]
    say(f"exporting {c.candidate} with deploykit at {c.reference}")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(src), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}
    # the child runs deploykit as committed at that revision (cwd and PYTHONPATH: its checkout) and dies with us
    p = subprocess.run(cmd, cwd=src, env=env, capture_output=True, text=True, preexec_fn=die_with_parent)
    if p.returncode != 0 or not out.is_file():
        last = (p.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise InputError(f"check {c.name!r}: exporting {c.candidate} at revision {c.reference!r} failed: {last}")
    return out


# -------------------------------------------------------------------------------------------------- measuring

def _resolve(ref: str, p: Prepared, batch: int, resolution: int | None, say: Say):
    from deploykit.export.source import resolve_model
    from deploykit.passes.fuse import export_transform

    return resolve_model(ref, batch=batch, resolution=resolution, export=p.check.export_for(ref), progress=say,
                         fuse=export_transform)


def _check_precision(model, c: GateCheck) -> None:
    if c.precision == "int8" and model.precision != "int8":
        raise InputError(f"check {c.name!r} asks for int8 but {model.label} is a {model.precision} graph; pass the "
                         "quantized ONNX file")


def run_check(p: Prepared, cfg: GateConfig, level: float, budget: float | None, say: Say) -> CheckResult:
    """Measure one check (its rounds) and collect each metric's evidence; decisions come later."""
    from deploykit.bench.fingerprint import fingerprint, mismatches
    from deploykit.bench.reference_workload import NAME, refnet_model
    from deploykit.bench.timer import now_ns
    from deploykit.runtimes.base import get_runtime

    c = p.check
    res = CheckResult(check=c)
    t0 = now_ns()
    runtime_cls = get_runtime(c.target)
    batch = p.batch or 1
    cand = _resolve(c.candidate, p, batch, p.resolution, say)
    _check_precision(cand, c)
    res.candidate = cand.describe()
    if c.mode == "baseline":
        models_dir = (c.export.models_dir if c.export else None) or default_models_dir()
        ref_model = refnet_model(models_dir)
        rw = p.baseline["reference_workload"]
        if rw["sha256"] != ref_model.sha256:
            res.fingerprint_mismatches.append(f"reference workload: {rw['name']} sha256 {rw['sha256'][:12]} in the "
                                              f"baseline vs {NAME} {ref_model.sha256[:12]} here")
        block = block_config_from(rw["block_settings"])
        res.baseline_rounds = [Round.from_json(b) for b in rw["blocks"]]
        res.reference = {"kind": "baseline", "path": c.reference, "model": p.baseline["model"],
                         "created": p.baseline.get("created"), "reference_workload": {
                             k: rw.get(k) for k in ("name", "sha256", "rounds", "relative", "block_settings")}}
        if p.baseline["model"]["sha256"] == cand.sha256:
            res.warnings.append("the candidate artifact is byte-identical to the one the baseline measured")
    else:
        if c.mode == "against_rev":
            path = p.rev_file if p.rev_file.suffix == ".onnx" else \
                _export_at_rev(p.rev_file, c, batch, p.resolution, say)
            ref_model = _resolve(str(path), p, batch, p.resolution, say)
            ref_model.label = f"{cand.label}@{c.reference}"
        else:
            ref_model = _resolve(c.reference, p, batch, p.resolution, say)
        _check_precision(ref_model, c)
        if tuple(ref_model.input_shape) != tuple(cand.input_shape):
            raise InputError(f"check {c.name!r}: the candidate's input {'x'.join(map(str, cand.input_shape))} differs "
                             f"from the baseline artifact's {'x'.join(map(str, ref_model.input_shape))}")
        block = block_config(block_time=cfg.block_time, block_iters=cfg.block_iters, block_warmup=cfg.block_warmup)
        res.reference = {"kind": c.mode, **ref_model.describe()}
        if c.mode == "against_rev":
            res.reference["revision"] = c.reference
    say(f"{c.name}: loading {ref_model.label} and {cand.label} on {c.target}")
    # both sides' outputs are checked against their references once, before timing (as bench does): a broken
    # artifact or a damaged compiled blob is reported, not silently measured
    a = load_side(ref_model.label, ref_model, runtime_cls, p.options, seed=cfg.seed, check_outputs=True)
    try:
        b = load_side(cand.label, cand, runtime_cls, p.options, seed=cfg.seed, check_outputs=True)
        _record_fidelity(res, a, b, c)
        try:
            res.load = {"a_load_ms": a.load_ms, "a_first_ms": a.first_ms, "b_load_ms": b.load_ms,
                        "b_first_ms": b.first_ms}
            res.target_info = b.info
            base_lr = {m.metric: log_ratios(res.baseline_rounds, m.metric) for m in c.metrics} \
                if res.baseline_rounds else {}

            def evidence(rounds) -> list[Evidence]:
                return [Evidence(tuple(log_ratios(rounds, m.metric)), m.tolerance,
                                 tuple(base_lr[m.metric]) if base_lr else None,
                                 drift=cfg.baseline_drift if base_lr else 0.0) for m in c.metrics]

            def enough(rounds) -> bool:
                # a look: the decision's interval is a confidence sequence, valid at every look at once, so the
                # gate may stop at the first look that decides (and the final decide_all is one more look)
                evs = evidence(rounds)
                decs = [decide_one(ev, level) for ev in evs]
                say(f"{c.name}: {len(rounds)} blocks: " + "; ".join(
                    f"{m.metric} {d.estimate:+.1%} "
                    + (f"[{d.ci[0]:+.1%}, {d.ci[1]:+.1%}] MDE {d.mde:.1%}" if math.isfinite(d.mde)
                       else "[unbounded yet]") + f" -> {d.outcome}"
                    for m, d in zip(c.metrics, decs)))
                # settled: decided, or held INCONCLUSIVE by a drift allowance that no number of blocks can get
                # under the tolerance (PASS is out of reach)
                return all(d.outcome != INCONCLUSIVE or (d.drift_bound and ev.drift >= ev.tolerance)
                           for d, ev in zip(decs, evs))

            res.run = run_interleaved(a.side, b.side, block, min_rounds=cfg.min_blocks, max_rounds=cfg.max_blocks,
                                      time_budget_s=budget, enough=enough)
        finally:
            b.close()
    finally:
        a.close()
    res.evidence = [Evidence(tuple(log_ratios(res.run.rounds, m.metric)), m.tolerance,
                             tuple(log_ratios(res.baseline_rounds, m.metric)) if res.baseline_rounds else None,
                             drift=cfg.baseline_drift if res.baseline_rounds else 0.0)
                    for m in c.metrics]
    res.options = {**{k: v for k, v in p.options.settings().items() if k != "cache_dir"},
                   "threads": res.target_info.get("threads", p.options.threads), "batch": batch,
                   **block_settings(block)}
    if p.spec is not None:
        res.spec = p.spec.to_dict()
    if c.mode == "baseline":
        here = fingerprint(threads=res.target_info.get("threads"))
        res.fingerprint_mismatches += mismatches(p.baseline["environment"], here)
    res.wall_s = (now_ns() - t0) / 1e9
    return res


def _record_fidelity(res: CheckResult, a, b, c: GateCheck) -> None:
    """Both sides' output checks in the check's record, and a warning for each that fails."""
    res.candidate["fidelity"] = b.fidelity
    res.reference["fidelity" if c.mode != "baseline" else "reference_workload_fidelity"] = a.fidelity
    for who, side in (("candidate", b), ("baseline" if c.mode != "baseline" else "reference workload", a)):
        f = side.fidelity or {}
        if f.get("passed") is False:
            res.warnings.append(f"the {who} {side.model.label}'s outputs on {c.target} do not match its reference "
                                f"({f.get('reference')}): {f.get('reason')}; its latency may not be the model's")


def run_gate(checks: list[GateCheck], cfg: GateConfig, *, say: Say | None = None, source: str | None = None,
             warn: Say | None = None) -> GateResult:
    """Prepare every check (all errors before any measuring), say what the gate cannot certify
    (``certification_warnings``, to ``warn``), then measure each check and decide."""
    from deploykit.bench.fingerprint import fingerprint
    from deploykit.bench.timer import now_ns
    from deploykit.core.atomic import run_dir

    say = say or (lambda s: None)
    t0 = now_ns()
    export = next((c.export for c in checks if c.export is not None), None)
    # revisions materialised from git live in a per-run folder of the store, swept by the next run if this one is
    # killed
    with run_dir(export.models_dir if export else default_models_dir(), "gate") as tmp:
        prepared = prepare(checks, tmp=tmp)
        for w in certification_warnings(checks, cfg):
            (warn or say)(w)
        m = sum(len(p.check.metrics) for p in prepared)
        level = adaptive_level(cfg.alpha, m, cfg.correction)
        results: list[CheckResult] = []
        for i, p in enumerate(prepared):
            budget = None
            if cfg.time_budget is not None:
                spent = (now_ns() - t0) / 1e9
                budget = max(0.0, cfg.time_budget - spent) / (len(prepared) - i)
            try:
                results.append(run_check(p, cfg, level, budget, say))
            except DeployKitError as exc:  # recorded (JUnit <error>), the other checks still run
                say(f"{p.check.name}: error: {exc.one_line()}")
                results.append(CheckResult(check=p.check, error=exc.one_line(), error_code=exc.exit_code))
    ok = [r for r in results if r.error is None]
    decisions = decide_all([ev for r in ok for ev in r.evidence], alpha=cfg.alpha, correction=cfg.correction,
                           n_boot=cfg.n_boot, seed=cfg.seed)
    k = 0
    for r in ok:
        r.decisions = decisions[k:k + len(r.evidence)]
        k += len(r.evidence)
    threads = next((r.target_info.get("threads") for r in ok if r.target_info), None)
    return GateResult(config=cfg, checks=results, environment=fingerprint(threads=threads),
                      wall_s=(now_ns() - t0) / 1e9, source=source)


def side_stats(res: CheckResult) -> dict:
    if res.run is None:
        return {}
    return {"a": summarize_side(res.run.rounds, "a"), "b": summarize_side(res.run.rounds, "b")}

