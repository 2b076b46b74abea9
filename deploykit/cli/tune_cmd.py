"""deploykit tune: the fastest variant of a model that keeps its accuracy, across targets, precisions, softmax paths
and settings -- checked, timed by successive halving within a budget, proven A/B, locked in by a gate file."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import click

from deploykit.cli.common import (POSITIVE, FiniteFloatRange, models_dir_option, print_json, resolution_option,
                                  stderr_console, stdout_console, weights_options)
from deploykit.core.errors import UsageError

OBJECTIVES = ("latency", "p99", "throughput", "server")
CALIB_METHODS = ("minmax", "entropy", "percentile")


def parse_budget(text: str) -> float:
    """``20m``, ``90s``, ``1h``, ``1h30m`` or plain seconds -> seconds."""
    s = str(text).strip().lower()
    if re.fullmatch(r"\d+(\.\d+)?", s):
        v = float(s)
    else:
        parts = re.findall(r"(\d+(?:\.\d+)?)\s*([hms])", s)
        if not parts or "".join(f"{n}{u}" for n, u in parts) != re.sub(r"\s+", "", s):
            raise UsageError(f"--budget: expected a duration such as 20m, 90s, 1h30m or seconds, got {text!r}")
        v = sum(float(n) * {"h": 3600, "m": 60, "s": 1}[u] for n, u in parts)
    if v <= 0:
        raise UsageError(f"--budget must be positive, got {text!r}")
    return v


@click.command("tune")
@click.argument("model")
@click.option("--objective", type=click.Choice(OBJECTIVES), default="latency", show_default=True,
              help="latency: p50 of one request at a time; p99; throughput: items/s (requests in flight, batch); "
                   "server: LoadGen's peak QPS within --latency-bound.")
@click.option("-t", "--target", "targets", multiple=True,
              help="Target to search (repeat, or comma-separated) [default: every target available here].")
@click.option("--budget", default="20m", show_default=True,
              help="Wall time for the whole search, builds and A/B included (20m, 90s, 1h30m).")
@click.option("--max-drop", type=FiniteFloatRange(min=0), default=None, metavar="POINTS",
              help="Largest top-1 drop on --eval-data, in accuracy points, a candidate may have [default: without "
                   "labelled data, the fidelity floors judge].")
@click.option("--eval-data", type=click.Path(path_type=Path), default=None, metavar="DIR",
              help="Labelled images (one sub-folder per class) every candidate is checked on before any timing.")
@click.option("--eval-size", type=POSITIVE, default=None, help="--eval-data: at most this many images.")
@click.option("--max-memory", type=FiniteFloatRange(min=0, min_open=True), default=None, metavar="MB",
              help="Largest peak memory (RSS, MB) a candidate may use.")
@click.option("--latency-bound", type=FiniteFloatRange(min=0, min_open=True), default=None, metavar="MS",
              help="--objective server: the latency bound (ms, at p90) the peak QPS must meet.")
@click.option("--threads", type=POSITIVE, default=None, help="Intra-op threads of every candidate [default: all "
                                                             "usable cores].")
@resolution_option()
@weights_options()
@click.option("--calib-data", default="synthetic", show_default=True, metavar="DIR|synthetic",
              help="Calibration images of the int8 candidates.")
@click.option("--calib-size", type=POSITIVE, default=None, help="Calibration images used [default: quantize's].")
@click.option("--calib-method", "calib_methods", multiple=True, type=click.Choice(CALIB_METHODS),
              help="Calibration methods the int8 candidates try (repeat) [default: minmax, percentile].")
@click.option("--graph-opt", "graph_opts", multiple=True, type=click.Choice(["disable", "basic", "extended"]),
              help="ONNX Runtime graph optimisation levels to try besides its default 'all' (repeat).")
@click.option("--max-candidates", type=POSITIVE, default=None,
              help="Search at most this many candidates: every target's default fp32 and int8, and a seeded sample "
                   "of the others [default: all].")
@click.option("--no-fallback", is_flag=True,
              help="Do not try int8 candidates with float fallback sets (from the per-layer profiles).")
@click.option("--executor", type=click.Choice(["local", "slurm"]), default="local", show_default=True,
              help="Where candidates run: local child processes one at a time, or Slurm jobs (as deploykit sweep; -o "
                   "must be a folder the nodes see).")
@click.option("--slurm-partition", metavar="NAME", default=None, help="--executor slurm: the jobs' partition.")
@click.option("-o", "--out", type=click.Path(path_type=Path), default=None,
              help="The tune's folder: tune.json, spec.json, gate.toml, report.html, cells/ [default: "
                   "reports/tune/<model>-<time>].")
@click.option("--resume", is_flag=True, help="Continue the tune in --out: nothing finished there runs again.")
@models_dir_option
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True, help="Seed of inputs and samples.")
@click.option("--json", "as_json", is_flag=True, help="Print the result (tune.json's answer) as JSON.")
def command(model, objective, targets, budget, max_drop, eval_data, eval_size, max_memory, latency_bound, threads,
            resolution, weights, pretrained, calib_data, calib_size, calib_methods, graph_opts, max_candidates,
            no_fallback, executor, slurm_partition, out, resume, models_dir, seed, as_json):
    """Find the fastest variant of MODEL that keeps its accuracy: every available target (or -t), every precision
    this machine runs (bf16 only where the CPU has it), int8 with each softmax path, calibration method and
    quantizer, and the targets' settings. Each candidate is built and checked once (fidelity floors, or the
    accuracy drop on --eval-data, memory) before any timing; the survivors are timed by successive halving within
    --budget; the winner is proven A/B (interleaved, anytime-valid: faster / tie / slower) against the runner-up and
    the default fp32. Writes tune.json (every candidate and decision with its numbers), spec.json (the winner's run
    spec: 'deploykit run spec.json'), gate.toml ('deploykit gate -c gate.toml' keeps it from regressing) and
    report.html. Exit 0: a winner; 1: no candidate meets the constraints."""
    import time

    from deploykit.core.config import QuantizeConfig, default_reports_dir
    from deploykit.runtimes.registry import ordered_targets
    from deploykit.spec.run import RunSpec
    from deploykit.tune.space import DEFAULT_CALIB_METHODS, SpaceSettings
    from deploykit.tune.search import TuneSettings

    seconds = parse_budget(budget)
    names = tuple(t.strip() for v in targets for t in v.split(",") if t.strip())
    if not names:
        names = tuple(n for n, cls in ordered_targets() if cls.availability().available and cls.device_kind == "cpu"
                      and cls.loads == "file")
    if resume and out is None:
        raise UsageError("--resume needs the tune's folder: -o OUT")
    if slurm_partition and executor != "slurm":
        raise UsageError("--slurm-partition is a setting of the Slurm executor: add --executor slurm")
    base = RunSpec(model=model, resolution=resolution, weights=str(weights) if weights else None,
                   pretrained=pretrained)
    q = QuantizeConfig(calib_data=calib_data, profile=None, seed=seed,
                       **({"calib_size": calib_size} if calib_size else {}))
    space = SpaceSettings(targets=names, objective=objective, threads=threads, calib=q,
                          calib_methods=tuple(dict.fromkeys(calib_methods)) or DEFAULT_CALIB_METHODS,
                          graph_opts=tuple(dict.fromkeys(graph_opts)))
    ex_opts: tuple = ()
    if executor == "slurm":
        from deploykit.sweep.sbatch import SlurmSettings, with_flags

        ex_opts = (("settings", with_flags(SlurmSettings(), partition=slurm_partition, time_limit=None, sbatch=(),
                                           array=None)),)
    settings = TuneSettings(objective=objective, budget_s=seconds, max_drop=max_drop,
                            eval_data=str(eval_data) if eval_data else None, eval_size=eval_size,
                            max_memory=max_memory, latency_bound=latency_bound, executor=executor,
                            executor_options=ex_opts, models_dir=str(models_dir) if models_dir else None, seed=seed,
                            fallback=not no_fallback)
    if out is None:
        stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(model).stem if model.endswith(".onnx") else model)
        out = default_reports_dir() / "tune" / f"{stem}-{time.strftime('%Y%m%d-%H%M%S')}"
    execute(base, space, settings, out, resume=resume, fallback=not no_fallback, as_json=as_json,
            max_candidates=max_candidates)


def execute(base, space, settings, out: Path, *, resume: bool, fallback: bool, as_json: bool,
            max_candidates: int | None = None) -> None:
    from rich.markup import escape

    from deploykit.bench.plan import plan_runs
    from deploykit.core.guarded import folder_lock
    from deploykit.core.atomic import ensure_dir
    from deploykit.tune import output
    from deploykit.tune.search import run_tune
    from deploykit.tune.space import generate, sample

    err = stderr_console()

    def say(msg: str) -> None:
        err.print(f"[dim]{escape(msg)}[/]", soft_wrap=True)

    cands = generate(base, space)
    if not cands:
        raise UsageError("no candidate to tune: none of the targets runs a precision this machine has")
    cands, left_out = sample(cands, max_candidates, settings.seed)
    # every check that needs no measurement, before the first cell (unknown model or target: exit 2 / 3)
    if settings.executor == "local":  # on Slurm the nodes decide what runs there (as a sweep's cells)
        plan_runs([c.spec for c in cands if c.role == "fp32-default"] or [cands[0].spec])
    extra = None
    if fallback:
        from deploykit.tune.fallback import fallback_stage

        extra = fallback_stage(settings, say)
    ensure_dir(out)
    with folder_lock(out, "tune folder"):
        result = run_tune(base, space, settings, out, resume=resume, say=say, candidates=cands, extra_stage=extra,
                          left_out=left_out)
        spec_path = output.write_spec(result.state, result)
        gate_path, gate_why = output.write_gate(result.state, result, settings)
        result.state.result["files"] = {"spec": str(spec_path) if spec_path else None,
                                        "gate": str(gate_path) if gate_path else None, "gate_missing": gate_why}
        from deploykit.tune.search import save

        save(result.state, settings, base, space)
        report = output.write_report(result.state, result, settings, base.model)
    if as_json:
        print_json({k: v for k, v in result.state.result.items()})
    else:
        _summary(result, settings, out, report, spec_path, gate_path, gate_why)
    if result.winner is None:
        raise _NoWinner(result.reason)


class _NoWinner(UsageError):
    exit_code = 1


def _summary(result, settings, out: Path, report: Path, spec_path, gate_path, gate_why: str) -> None:
    from deploykit.cli.tables import Col, print_fitted
    from deploykit.report.numbers import sig

    con = stdout_console()
    st = result.state
    rows = []
    for p in st.result.get("points") or []:
        rows.append({"candidate": p["label"], "stage": p["stage"], "p50": sig(p["p50_ms"]),
                     "ci": f"{sig(p['ci_low_ms'])}-{sig(p['ci_high_ms'])}", "obj": sig(p["objective"]),
                     "drop": sig(p["drop_points"]) if settings.eval_data else (p.get("fidelity") or ""),
                     "front": "*" if p.get("on_front") else ""})
    if rows:
        print_fitted(con, [Col("candidate", "candidate", wrap=30), Col("stage", "stage"),
                           Col("p50", "p50 ms", right=True), Col("ci", "95% CI", right=True, priority=60),
                           Col("obj", settings.objective, right=True, priority=50),
                           Col("drop", "drop pts" if settings.eval_data else "fidelity", right=True),
                           Col("front", "front", priority=40)], rows)
    for a in st.ab:
        con.print(f"A/B {a.get('what')}: {a.get('verdict')} -- {a.get('reason')}", markup=False, highlight=False)
    from deploykit.tune.output import answer_line

    con.print(answer_line(result), markup=False, highlight=False)
    con.print(f"wall time {result.wall_s:.0f} s of a {result.budget_s:.0f} s budget"
              + ("" if result.wall_s <= result.budget_s else " (OVER)"), markup=False, highlight=False)
    files = [f"{out}/tune.json", str(report)] + ([str(spec_path)] if spec_path else []) + \
        ([str(gate_path)] if gate_path else [])
    con.print("wrote " + ", ".join(files) + ("" if gate_path else f" (no gate file: {gate_why})"), markup=False,
              highlight=False)
    sys.stdout.flush()
