"""Bisect a latency regression to its commit: ``git bisect run`` on a throwaway ``git worktree``, each step an
interleaved A/B gate (``deploykit gate``, a fresh child process) of the commit's artifact against GOOD's.

Per step: REGRESSION -> bad (exit 1 to git bisect); PASS / IMPROVEMENT -> good (0); INCONCLUSIVE -> measured once
more with twice the blocks, then ``git bisect skip`` (125); a gate that fails (bad options, target unavailable)
aborts the bisect (exit 128). The artifact: a tracked ONNX file (``--model path/in/repo.onnx``: the file as
committed at each commit, GOOD's copied out once), or a registry model (exported by the deploykit code of each
commit, the gate's ``--against-rev GOOD``; the repository must then be deploykit's own).

The user's checkout is never touched: bisect state lives in the worktree (per-worktree refs), which is removed
afterwards with ``git worktree prune``; the function checks that HEAD, the branch and the worktree list are as
they were.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

from deploykit.core.errors import InputError, UsageError

GOOD, BAD, SKIP, ABORT = 0, 1, 125, 128
STEP_CODE = "from deploykit.history.bisect import step_main; raise SystemExit(step_main())"
DEFAULT_STEP_TIMEOUT_S = 1800


@dataclass
class StepResult:
    commit: str
    attempt: int
    exit_code: int  # the gate's
    verdict: str
    change: float | None = None
    ci: list | None = None
    wall_s: float = 0.0
    error: str | None = None


@dataclass
class BisectResult:
    good: str
    bad: str
    first_bad: str | None
    subject: str | None
    candidates: list[str]  # when skips leave several
    steps: list[StepResult] = field(default_factory=list)
    wall_s: float = 0.0
    log: str = ""

    @property
    def gate_runs(self) -> int:
        return len(self.steps)

    def to_json(self) -> dict:
        return {"good": self.good, "bad": self.bad, "first_bad": self.first_bad, "subject": self.subject,
                "candidates": self.candidates, "gate_runs": self.gate_runs, "wall_s": self.wall_s,
                "steps": [s.__dict__ for s in self.steps]}


def _git(args: list[str], cwd: Path, check: bool = True, timeout: float | None = 120) -> str:
    try:
        p = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.SubprocessError) as exc:
        raise InputError(f"git {args[0]} failed: {exc}") from None
    if check and p.returncode != 0:
        raise InputError(f"git {' '.join(args[:3])} failed: {(p.stderr or p.stdout).strip().splitlines()[-1:]}")
    return p.stdout


def _state(repo: Path) -> tuple:
    """What must be the same after the bisect: HEAD, the branch, the worktree list, the index/work-tree status."""
    return (_git(["rev-parse", "HEAD"], repo, check=False), _git(["symbolic-ref", "-q", "HEAD"], repo, check=False),
            _git(["worktree", "list", "--porcelain"], repo), _git(["status", "--porcelain"], repo, check=False))


def _child_env(pythonpath_first: Path | None = None) -> dict:
    root = Path(__file__).resolve().parents[2]  # the deploykit we run (a checkout's included)
    first = [str(pythonpath_first)] if pythonpath_first else []
    paths = first + [str(root)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}


def bisect(good: str, bad: str, *, model: str, repo: Path | None = None, gate_args: Sequence[str] = (),
           retry_blocks: int | None = None, step_timeout: float = DEFAULT_STEP_TIMEOUT_S,
           say: Callable[[str], None] = lambda s: None) -> BisectResult:
    """Find the first commit between ``good`` and ``bad`` whose artifact the gate calls a REGRESSION against
    ``good``'s. ``gate_args``: more ``deploykit gate`` options (target, tolerance, blocks ...)."""
    t0 = time.perf_counter()
    if shutil.which("git") is None:
        raise UsageError("deploykit bisect needs git, which is not installed here")
    repo = Path(_git(["rev-parse", "--show-toplevel"], Path(repo or ".")).strip())
    good_sha = _rev(good, repo)
    bad_sha = _rev(bad, repo)
    if subprocess.run(["git", "merge-base", "--is-ancestor", good_sha, bad_sha], cwd=repo).returncode != 0:
        raise UsageError(f"GOOD {good} is not an ancestor of BAD {bad}")
    is_file = model.endswith(".onnx") or "/" in model
    before = _state(repo)
    tmp = Path(tempfile.mkdtemp(prefix="deploykit-bisect-"))
    wt = tmp / "worktree"
    log_path = tmp / "steps.jsonl"
    cfg: dict = {"model": model, "file": is_file, "good": good_sha, "gate_args": list(gate_args),
                 "retry_blocks": retry_blocks, "log": str(log_path), "timeout": step_timeout}
    try:
        if is_file:
            blob = subprocess.run(["git", "show", f"{good_sha}:{model}"], cwd=repo, capture_output=True)
            if blob.returncode != 0:
                raise InputError(f"{model} is not tracked at GOOD {good} ({blob.stderr.decode().strip()})")
            (tmp / "good.onnx").write_bytes(blob.stdout)
            cfg["good_file"] = str(tmp / "good.onnx")
            if subprocess.run(["git", "cat-file", "-e", f"{bad_sha}:{model}"], cwd=repo).returncode != 0:
                raise InputError(f"{model} is not tracked at BAD {bad}")
        (tmp / "config.json").write_text(json.dumps(cfg))
        _git(["worktree", "add", "--detach", str(wt), bad_sha], repo)
        _git(["bisect", "start", bad_sha, good_sha], wt)
        from deploykit.core.child import python_argv

        say(f"bisecting {good_sha[:10]}..{bad_sha[:10]} in a throwaway worktree ({wt})")
        proc = subprocess.run(["git", "bisect", "run", *python_argv(STEP_CODE, str(tmp / "config.json"))], cwd=wt,
                              capture_output=True, text=True, env=_child_env())
        out = proc.stdout + proc.stderr
        m = re.search(r"^([0-9a-f]{40}) is the first bad commit", out, re.M)
        candidates = re.findall(r"^([0-9a-f]{40})$", out.split("There are only 'skip'ped commits left")[-1], re.M) \
            if "only 'skip'ped commits left" in out else []
        steps = [StepResult(**json.loads(line)) for line in log_path.read_text().splitlines()] \
            if log_path.exists() else []
        aborted = [s for s in steps if s.error]
        if m is None and not candidates:
            why = aborted[-1].error if aborted else out.strip().splitlines()[-1:] or "no output"
            raise InputError(f"git bisect run did not finish: {why}")
        first = m.group(1) if m else None
        subject = _git(["log", "-1", "--format=%s", first], repo).strip() if first else None
        return BisectResult(good=good_sha, bad=bad_sha, first_bad=first, subject=subject, candidates=candidates,
                            steps=steps, wall_s=time.perf_counter() - t0, log=out)
    finally:
        if wt.exists():
            _git(["bisect", "reset"], wt, check=False)
            _git(["worktree", "remove", "--force", str(wt)], repo, check=False)
        _git(["worktree", "prune"], repo, check=False)
        shutil.rmtree(tmp, ignore_errors=True)
        after = _state(repo)
        if after != before:  # never expected: say so loudly rather than leave it unnoticed
            say(f"warning: the repository's state changed during the bisect: {before!r} -> {after!r}")


def _rev(rev: str, repo: Path) -> str:
    p = subprocess.run(["git", "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}"], cwd=repo,
                       capture_output=True, text=True)
    if p.returncode != 0:
        raise InputError(f"git revision {rev!r} not found in {repo}")
    return p.stdout.strip()


# ------------------------------------------------------------------------------------------- one bisect step

def _gate_once(cfg: dict, cwd: Path, extra: list[str]) -> tuple[int, dict | None, str]:
    from deploykit.core.child import die_with_parent, python_argv

    if cfg["file"]:
        args = ["gate", str(cwd / cfg["model"]), "--against", cfg["good_file"]]
        env = _child_env()
    else:  # the commit's own deploykit exports the candidate; --against-rev exports GOOD's
        args = ["gate", cfg["model"], "--against-rev", cfg["good"]]
        env = _child_env(cwd)
    argv = python_argv("from deploykit.cli import main; main()", *args, "--strict", "--no-save", "--json",
                       "--no-github", *cfg["gate_args"], *extra)
    try:
        p = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, env=env, timeout=cfg["timeout"],
                           preexec_fn=die_with_parent)
    except subprocess.TimeoutExpired:
        return -1, None, f"gate timed out after {cfg['timeout']} s"
    try:
        doc = json.loads(p.stdout[p.stdout.index("{"):]) if "{" in p.stdout else None
    except json.JSONDecodeError:
        doc = None
    return p.returncode, doc, (p.stderr.strip().splitlines() or [""])[-1].removeprefix("error: ")


def _summary(doc: dict | None) -> tuple[str, float | None, list | None]:
    if not doc:
        return "ERROR", None, None
    try:
        r = doc["checks"][0]["results"][0]
        return doc.get("verdict", r.get("outcome")), r.get("estimate"), r.get("ci")
    except (KeyError, IndexError, TypeError):
        return doc.get("verdict", "ERROR"), None, None


def step_main(argv: list[str] | None = None) -> int:
    """git bisect run's command: gate this commit's artifact against GOOD's; the exit code git bisect reads."""
    argv = sys.argv[1:] if argv is None else argv
    cfg = json.loads(Path(argv[0]).read_text())
    cwd = Path.cwd()
    commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()

    def log(**kw) -> None:
        with open(cfg["log"], "a") as f:
            f.write(json.dumps({"commit": commit, **kw}) + "\n")

    if cfg["file"] and not (cwd / cfg["model"]).is_file():
        log(attempt=0, exit_code=-1, verdict="SKIP (no artifact)")
        return SKIP
    extra: list[str] = []
    for attempt in (1, 2):
        t0 = time.perf_counter()
        code, doc, last = _gate_once(cfg, cwd, extra)
        verdict, change, ci = _summary(doc)
        wall = time.perf_counter() - t0
        if code == 4:
            log(attempt=attempt, exit_code=code, verdict=verdict, change=change, ci=ci, wall_s=wall)
            return BAD
        if code == 0:
            log(attempt=attempt, exit_code=code, verdict=verdict, change=change, ci=ci, wall_s=wall)
            return GOOD
        if code != 5:
            log(attempt=attempt, exit_code=code, verdict="ERROR", wall_s=wall, error=last or f"gate exit {code}")
            return ABORT
        log(attempt=attempt, exit_code=code, verdict=verdict, change=change, ci=ci, wall_s=wall)
        blocks = cfg.get("retry_blocks") or 2 * _max_blocks(cfg["gate_args"], doc)
        extra = ["--max-blocks", str(blocks)]
    return SKIP


def _max_blocks(gate_args: list[str], doc: dict | None) -> int:
    try:
        return int(doc["settings"]["max_blocks"])  # type: ignore[index]
    except (KeyError, TypeError, ValueError):
        pass
    if "--max-blocks" in gate_args:
        return int(gate_args[gate_args.index("--max-blocks") + 1])
    return 60
