"""The ``slurm`` executor: every cell a Slurm job submitted with submitit, on a node of its own (``--exclusive``),
with the partition / constraint / GRES its target maps to (sweep/sbatch.py), the results gathered as jobs end.

A cell's job runs the local executor's cell on its node (``run_cell_job``: the same ``deploykit bench`` child --
``deploykit loadgen`` for a LoadGen cell --, timeout, exit-code classification and row building as
``--executor local``), writing the cell's report into the
sweep's folder, which every node must see at the same path (the usual shared file system). The job returns the
row; the submitting side adds the job id and hands it on, so the table is the same as a local sweep's, with
``node`` (where the cell ran), ``job_id`` and ``executor = "slurm"``. The cells of one target (the same sbatch
options) go out as one job array unless ``array = false``.

State of a job without a result comes from ``squeue`` (and ``sacct`` where the cluster keeps accounting): a job
that ended without one is recorded with Slurm's state and reason (TIMEOUT -> timeout, CANCELLED / PREEMPTED /
NODE_FAIL / OUT_OF_MEMORY -> killed, else failed). Before the time limit Slurm sends the job USR2; submitit
stops the cell then and the row says timeout. An interrupt on the submitting side (Ctrl-C, SIGTERM) scancels the
jobs this executor submitted that have not finished, by job id, and nothing else. Every job is recorded in
``<out>/slurm/jobs.json`` (cell -> job id): a submitting process that died without cancelling (killed, a lost
login session) leaves its jobs running, and ``--resume`` picks them up instead of submitting the cells again.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from deploykit.core.errors import UnavailableError, UsageError, squash
from deploykit.sweep.executor import EXECUTORS, Executor, LocalExecutor, clear_dir
from deploykit.sweep.sbatch import (PRELUDE_CAP_S, QUIET_PENDING, SlurmSettings, is_active, job_error_outcome,
                                    job_parameters, python_command, sbatch_flags, state_outcome)
from deploykit.sweep.spec import BenchSettings, Cell

JOBS_DIR = "slurm"  # submitit's folder inside the sweep's folder: <out>/slurm/<job id>/
JOBS_FILE = "jobs.json"  # <out>/slurm/jobs.json: {cell key: {job_id, limit_min, state: submitted|collected|cancelled}}
POLL_S = 0.5  # how often the result files are looked for
SQUEUE_S = 5.0  # how often squeue is asked about the jobs without a result
RESULT_GRACE_S = 15.0  # a job Slurm says has ended gets this long for its result file to appear (shared FS lag)
KILLED_GRACE_S = 3.0  # the same for a job Slurm killed (cancelled, timed out, preempted): it wrote none
GONE_GRACE_S = 30.0  # a job the controller no longer knows, without a result, after this long: failed
COMMANDS = ("sbatch", "squeue", "scancel")


# ------------------------------------------------------------------------------------------ on the node

def job_id_from_env(env=None) -> str:
    env = os.environ if env is None else env
    if env.get("SLURM_ARRAY_JOB_ID") and env.get("SLURM_ARRAY_TASK_ID"):
        return f"{env['SLURM_ARRAY_JOB_ID']}_{env['SLURM_ARRAY_TASK_ID']}"
    return env.get("SLURM_JOB_ID", "")


class NodeRunner(LocalExecutor):
    """The local executor's cell on a Slurm node: its rows name the node and the job (not registered: it is
    what a ``slurm`` job runs)."""

    name = "slurm"

    def __init__(self, bench: BenchSettings, out: Path, *, models_dir: Path | None = None, host: str = ""):
        super().__init__(bench, out, models_dir=models_dir)
        self.node = socket.gethostname()
        self.host = host or self.node

    def run_columns(self, wall_s: float | None) -> dict:
        return {"wall_s": wall_s, "host": self.host, "node": self.node, "job_id": job_id_from_env(),
                "executor": self.name}

    def prelude_log_name(self, args: list[str]) -> str:
        return f"{args[0]}-{re.sub(r'[^A-Za-z0-9_.-]+', '_', self.node)}.log"


def run_cell_job(cell: Cell, bench: BenchSettings, out: str, models_dir: str | None,
                 prelude: list[tuple[list[str], float]], host: str, limit_min: int) -> dict:
    """A cell's Slurm job (submitit runs it on the node): the prelude commands (``deploykit peak``, cached per
    node), then the cell as the local executor runs it; its row. Stopped at the time limit (submitit's USR2
    handler raises UncompletedJobError here), the cell's child is killed and the row says timeout.

    Slurm ends a job it cancels, preempts or kills at its limit with SIGTERM to every process of the job, the
    cell's child included: a cell that did not finish then leaves no result (the job exits at once), so the
    submitting side records Slurm's own state and reason -- or, for a job Slurm requeues, waits for its rerun."""
    runner = NodeRunner(bench, Path(out), models_dir=Path(models_dir) if models_dir else None, host=host)
    t0 = time.monotonic()
    terminated: list[int] = []
    old = signal.signal(signal.SIGTERM, lambda signum, frame: terminated.append(signum))
    try:
        for args, timeout in prelude:
            runner.prelude(list(args), timeout)
        row = runner.run_cell(cell)
    except Exception as exc:
        if type(exc).__name__ != "UncompletedJobError":
            raise
        status, reason = job_error_outcome(str(exc), limit_min=limit_min)
        row = runner.finish(cell, status, reason, None, time.monotonic() - t0)
    finally:
        signal.signal(signal.SIGTERM, old)
    if terminated and row.get("status") != "ok":
        os._exit(128 + signal.SIGTERM)  # no result: Slurm's state says what happened (see above)
    return row


# ------------------------------------------------------------------------------------ the submitting side

@dataclass
class SubmittedJob:
    cell: Cell
    job: Any  # submitit's SlurmJob
    limit_min: int
    submitted: float
    running_since: float | None = None
    node: str = ""
    state: str = "PENDING"
    reason: str = ""
    elapsed_s: float | None = None  # the job's run time as Slurm counts it
    ended_at: float | None = None  # when Slurm was first seen to say the job ended (without a result yet)
    unknown_since: float | None = None

    @property
    def job_id(self) -> str:
        return str(self.job.job_id)


@EXECUTORS.register("slurm")
class SlurmExecutor(Executor):
    """Each cell a Slurm job on a node of its own; rows gathered as jobs end (see the module's docstring)."""

    name = "slurm"
    runs_here = False
    prelude_where = "in each job, before its cell (cached per node)"

    def __init__(self, bench: BenchSettings, out: Path, *, models_dir: Path | None = None,
                 on_start: Callable[[Cell], None] | None = None, say: Callable[[str], None] | None = None,
                 settings: SlurmSettings | None = None, poll_s: float = POLL_S, squeue_s: float = SQUEUE_S):
        super().__init__(bench, out, models_dir=models_dir, on_start=on_start, say=say)
        self.settings = settings or SlurmSettings()
        self.poll_s, self.squeue_s = poll_s, squeue_s
        self.preludes: list[tuple[list[str], float]] = []
        self.submitted: list[str] = []  # every job id this executor submitted, in order
        self._records: dict[str, dict] = {}  # jobs.json

    def prelude(self, args: list[str], timeout: float | None = None) -> tuple[bool, str]:
        self.preludes.append((list(args), float(min(timeout or PRELUDE_CAP_S, PRELUDE_CAP_S))))
        return True, ""

    # ----------------------------------------------------------------------------------- what is submitted

    @property
    def job_name(self) -> str:
        return ("deploykit-" + re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(self.out).resolve().name))[:64]

    def python_command(self, target: str) -> str:
        return python_command(self.settings, target) or shlex.quote(sys.executable)

    def job_groups(self, cells: Iterable[Cell]) -> list[tuple[dict, list[Cell]]]:
        """The jobs the cells go out as: (submitit parameters, cells); one job array per distinct parameter set
        and Python command (that is, per target), or one job per cell without ``array``. Each parameter set
        carries its ``python`` (not a submitit parameter: ``_submit`` takes it out)."""
        pythonpath = str(Path(__file__).resolve().parents[2])
        prelude_s = sum(t for _, t in self.preludes)
        groups: dict[str, tuple[dict, list[Cell]]] = {}
        for cell in cells:
            params = job_parameters(self.settings, cell.target, cell_timeout=self.bench.cell_timeout,
                                    prelude_s=prelude_s, job_name=self.job_name, pythonpath=pythonpath)
            params["python"] = self.python_command(cell.target)
            groups.setdefault(repr(sorted(params.items())), (params, []))[1].append(cell)
        if self.settings.array:
            return list(groups.values())
        return [(params, [cell]) for params, group in groups.values() for cell in group]

    def describe_jobs(self, cells: Iterable[Cell]) -> list[dict]:
        """The jobs as plain dicts (for --dry-run): targets, cells, sbatch options."""
        return [{"targets": sorted({c.target for c in group}), "cells": [c.key for c in group],
                 "array": len(group) > 1, "sbatch": sbatch_flags(params), "time_limit_min": params["time"],
                 "setup": params.get("setup", []), "python": params["python"]}
                for params, group in self.job_groups(cells)]

    # ------------------------------------------------------------------------------------------- running

    def run(self, cells: Iterable[Cell]) -> Iterator[dict]:
        cells = list(cells)
        if not cells:
            return
        submitit = _submitit()
        missing = [c for c in COMMANDS if shutil.which(c) is None]
        if missing:
            raise UnavailableError(f"--executor slurm needs Slurm's {', '.join(COMMANDS)} on PATH "
                                   f"({', '.join(missing)} not found): "
                                   "run the sweep where jobs can be submitted (a login node)")
        self.out = Path(self.out).resolve()
        self._records = self._read_records()
        pending: dict[str, SubmittedJob] = {}
        with _quiet_submitit():
            try:
                with _signals_held():
                    pending.update((sj.job_id, sj) for sj in self._pick_up(submitit, cells))
                taken = {sj.cell.key for sj in pending.values()}
                for params, group in self.job_groups(c for c in cells if c.key not in taken):
                    with _signals_held():  # an interrupt waits until the jobs are known (and then cancels them)
                        for sj in self._submit(submitit, params, group):
                            pending[sj.job_id] = sj
                            self.submitted.append(sj.job_id)
                        self._record(pending.values(), "submitted")
                yield from self._gather(pending)
            finally:
                if pending:
                    self._cancel(pending)

    # ------------------------------------------------------------------------ jobs.json: picking jobs up

    def _read_records(self) -> dict[str, dict]:

        from deploykit.core.validate import read_cache_json

        data = read_cache_json(self.out / JOBS_DIR / JOBS_FILE)  # guarded: anything unusable is no record
        return {k: v for k, v in data.items() if isinstance(v, dict) and v.get("job_id")} if isinstance(data, dict) \
            else {}

    def _record(self, jobs: Iterable[SubmittedJob], state: str) -> None:
        from deploykit.core.atomic import write_json

        changed = False
        for sj in jobs:
            rec = {"job_id": sj.job_id, "limit_min": sj.limit_min, "state": state}
            if self._records.get(sj.cell.key, {}).get("state") != state or \
                    self._records[sj.cell.key].get("job_id") != sj.job_id:
                self._records[sj.cell.key] = rec
                changed = True
        if changed:
            write_json(self.out / JOBS_DIR / JOBS_FILE, self._records)

    def _pick_up(self, submitit, cells: list[Cell]) -> list[SubmittedJob]:
        """Jobs an earlier run submitted for these cells and never collected (its submitting process died):
        those that left a result or are still pending or running are waited for instead of submitted again."""
        recorded = {c.key: self._records[c.key] for c in cells
                    if self._records.get(c.key, {}).get("state") == "submitted"}
        if not recorded:
            return []
        folder = self.out / JOBS_DIR / "%j"
        by_cell = {c.key: c for c in cells}
        states = query_states([r["job_id"] for r in recorded.values()]) or {}
        out = []
        for key, rec in recorded.items():
            job = submitit.SlurmJob(folder=folder, job_id=str(rec["job_id"]))
            st = states.get(str(rec["job_id"]))
            if job.paths.result_pickle.exists() or (st is not None and is_active(st[0])):
                out.append(SubmittedJob(cell=by_cell[key], job=job, limit_min=int(rec.get("limit_min") or 0),
                                        submitted=time.monotonic()))
        if out:
            self.say(f"slurm: {len(out)} cell{'s' if len(out) > 1 else ''} picked up from jobs an earlier run "
                     f"submitted: {' '.join(sj.job_id for sj in out)}")
        return out

    def _submit(self, submitit, params: dict, group: list[Cell]) -> list[SubmittedJob]:
        from submitit.core.utils import FailedJobError

        params = dict(params)
        python = params.pop("python")
        if not params.get("use_srun"):
            python = "exec " + python  # the job's Python is the batch shell itself: Slurm's B:USR2 reaches it
        try:
            ex = submitit.SlurmExecutor(folder=self.out / JOBS_DIR / "%j", python=python)
        except RuntimeError as exc:  # no srun here
            raise UnavailableError(f"--executor slurm: {squash(exc)}") from None
        ex.update_parameters(**params)
        for cell in group:
            clear_dir(self.cell_dir(cell))  # no report or log of an earlier run is taken for this one's
        models = str(Path(self.models_dir).resolve()) if self.models_dir is not None else None
        host = socket.gethostname()
        try:
            with contextlib.redirect_stderr(io.StringIO()):  # submitit echoes sbatch's stderr: it goes in our error
                with ex.batch():
                    jobs = [ex.submit(run_cell_job, cell, self.bench, str(self.out), models, self.preludes, host,
                                      params["time"]) for cell in group]
        except FailedJobError as exc:
            lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip().startswith("sbatch:")]
            why = re.sub(r"^sbatch: (error|fatal): ", "", lines[-1]) if lines else squash(exc, 200)
            targets = ", ".join(sorted({c.target for c in group}))
            error = UnavailableError if re.search(r"contact|configuration source|connection", why, re.I) else UsageError
            raise error(f"sbatch refused the job of the {targets} cells: {why} (sbatch "
                        f"{' '.join(sbatch_flags(params))})") from None
        now = time.monotonic()
        out = [SubmittedJob(cell=c, job=j, limit_min=params["time"], submitted=now) for c, j in zip(group, jobs)]
        ids = [sj.job_id for sj in out]
        what = f"job array {ids[0].split('_')[0]}" if len(ids) > 1 else f"job {ids[0]}"
        self.say(f"slurm: {what}: {len(ids)} cell{'s' if len(ids) > 1 else ''} "
                 f"({', '.join(sorted({c.target for c in group}))}); sbatch {' '.join(sbatch_flags(params))}")
        return out

    def _gather(self, pending: dict[str, SubmittedJob]) -> Iterator[dict]:
        last_query = float("-inf")
        while pending:
            for jid in list(pending):
                sj = pending[jid]
                if sj.job.paths.result_pickle.exists():
                    del pending[jid]
                    row = self._collect(sj)
                    self._record([sj], "collected")
                    yield row
            if not pending:
                return
            if time.monotonic() - last_query >= self.squeue_s:
                last_query = time.monotonic()
                yield from self._check_states(pending)
            time.sleep(max(self.poll_s, len(pending) / 100))  # a big sweep: fewer looks at the shared folder

    def _check_states(self, pending: dict[str, SubmittedJob]) -> Iterator[dict]:
        states = query_states(list(pending))
        if states is None:  # the controller did not answer: ask again later
            return
        unknown = [jid for jid in pending if jid not in states]
        if unknown:
            states.update(sacct_states(unknown))
        now = time.monotonic()
        for jid in list(pending):
            sj = pending[jid]
            if sj.job.paths.result_pickle.exists():
                continue  # collected by the next look
            st = states.get(jid)
            if st is None:
                sj.unknown_since = sj.unknown_since or now
                if now - sj.unknown_since >= GONE_GRACE_S:
                    del pending[jid]
                    row = self._failure(sj, "failed", f"job {jid} is no longer known to the Slurm controller and "
                                                      "left no result (no accounting storage to ask about it)")
                    self._record([sj], "collected")
                    yield row
                continue
            sj.unknown_since = None
            state, reason, node, elapsed = st
            sj.node = node or sj.node
            sj.elapsed_s = elapsed if elapsed is not None else sj.elapsed_s
            word = state.split()[0].upper() if state.strip() else ""
            if word == "RUNNING" and sj.running_since is None:
                sj.running_since = now
                self.on_start(sj.cell)
            if is_active(state):
                if word == "PENDING" and reason != sj.reason and reason.upper() not in QUIET_PENDING:
                    self.say(f"slurm: job {jid} ({sj.cell.key}) is pending: {reason}")
                sj.state, sj.reason, sj.ended_at = state, reason, None
                continue
            sj.state, sj.reason = state, reason
            sj.ended_at = sj.ended_at or now
            grace = RESULT_GRACE_S if word in ("COMPLETED", "FAILED") else KILLED_GRACE_S
            if now - sj.ended_at >= grace:
                del pending[jid]
                status, why = state_outcome(state, reason, limit_min=sj.limit_min)
                row = self._failure(sj, status, why)
                self._record([sj], "collected")
                yield row

    def _collect(self, sj: SubmittedJob) -> dict:
        """The row of a job that left its result file: the node's row, or a failure row for an error."""
        from submitit.core.utils import UncompletedJobError

        try:
            row = sj.job.result()
        except UncompletedJobError as exc:  # FailedJobError included: the job's Python raised
            status, reason = job_error_outcome(str(exc), limit_min=sj.limit_min)
            return self._failure(sj, status, reason)
        except Exception as exc:  # an unreadable result file
            return self._failure(sj, "failed", f"could not read the job's result: {squash(exc, 200)}")
        if not isinstance(row, dict) or "cell" not in row:
            return self._failure(sj, "failed", f"the job returned {type(row).__name__}, not a results row")
        row["job_id"], row["executor"] = sj.job_id, self.name
        row["node"] = row.get("node") or sj.node
        return row

    def _failure(self, sj: SubmittedJob, status: str, reason: str) -> dict:
        log = Path(sj.job.paths.stderr)
        tail = job_log_line(log)
        if tail and status != "timeout" and tail not in reason:
            reason = f"{reason}: {tail}"
        wall = sj.elapsed_s if sj.elapsed_s else (time.monotonic() - sj.running_since
                                                   if sj.running_since is not None else None)
        row = self.finish(sj.cell, status, reason, None, wall, log=log)
        row.update({"node": sj.node, "job_id": sj.job_id, "executor": self.name})
        return row

    def _cancel(self, pending: dict[str, SubmittedJob]) -> None:
        """scancel the jobs this sweep submitted that have not finished (by job id; nothing else)."""
        ids = sorted(pending, key=_job_sort_key)
        with _signals_held():
            try:
                subprocess.run(["scancel", *ids], stdin=subprocess.DEVNULL, capture_output=True, timeout=120)
            except (OSError, subprocess.TimeoutExpired) as exc:
                self.say(f"slurm: scancel {' '.join(ids)} failed: {squash(exc, 200)}")
                return
            self._record(pending.values(), "cancelled")
        self.say(f"slurm: cancelled the {len(ids)} job{'s' if len(ids) > 1 else ''} of this sweep that had not "
                 f"finished: {' '.join(ids)}")


def job_log_line(path: Path) -> str:
    """The telling line of a job's stderr: Slurm's own (``*** JOB 41 ON node7 CANCELLED AT ... ***``), else the
    last one that is not submitit's logging (``submitit WARNING ... Bypassing signal SIGCONT``); "" if none."""
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - 16384))
            lines = [ln.strip() for ln in fh.read().decode("utf-8", "replace").splitlines() if ln.strip()]
    except OSError:
        return ""
    slurm = [ln for ln in lines if "*** JOB" in ln or "*** STEP" in ln]
    other = [ln for ln in lines if not re.match(r"^submitit (DEBUG|INFO|WARNING|ERROR)\b", ln)]
    return squash((slurm or other or [""])[-1], 200)


def _job_sort_key(job_id: str):
    main, _, task = job_id.partition("_")
    return (int(main) if main.isdigit() else 0, int(task) if task.isdigit() else -1, job_id)


def _submitit():
    try:
        import submitit
    except ImportError:
        raise UnavailableError("--executor slurm needs submitit: pip install 'deploykit[slurm]'") from None
    return submitit


@contextlib.contextmanager
def _signals_held() -> Iterator[None]:
    """SIGINT / SIGTERM held back (delivered on leaving): for submitting jobs and cancelling them, so that an
    interrupt never loses the id of a job just submitted, nor stops a scancel half-way."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


@contextlib.contextmanager
def _quiet_submitit() -> Iterator[None]:
    """submitit's own log lines (a missing sacct, its polling) off while the executor runs: it reports itself."""
    import logging
    import warnings

    log = logging.getLogger("submitit")
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", module="submitit")
            yield
    finally:
        log.setLevel(level)


# ------------------------------------------------------------------------------------------- job states

def parse_squeue(text: str) -> dict[str, tuple[str, str, str, float | None]]:
    """``squeue -h -r -o '%i|%T|%r|%N|%M'`` -> {job id: (state, reason, node, seconds run)}."""
    out = {}
    for line in text.splitlines():
        parts = line.strip().split("|")
        if len(parts) >= 4 and parts[0]:
            out[parts[0]] = (parts[1], parts[2], parts[3], slurm_seconds(parts[4]) if len(parts) > 4 else None)
    return out


def slurm_seconds(text: str) -> float | None:
    """Slurm's elapsed time (``SS``, ``M:SS``, ``H:MM:SS``, ``D-HH:MM:SS``) in seconds; None for anything else."""
    m = re.fullmatch(r"(?:(\d+)-)?(?:(\d+):)?(?:(\d+):)?(\d+)", text.strip())
    if not m:
        return None
    days, a, b, secs = m.groups()
    if b is None:  # M:SS or SS
        hours, minutes = 0, int(a or 0)
    else:
        hours, minutes = int(a), int(b)
    return float(int(days or 0) * 86400 + hours * 3600 + minutes * 60 + int(secs))


def query_states(job_ids: list[str]) -> dict[str, tuple[str, str, str, float | None]] | None:
    """The controller's (state, reason, node, seconds run) of the jobs it still knows; None when it could not be
    asked."""
    if not job_ids:
        return {}
    base = sorted({j.split("_")[0] for j in job_ids}, key=_job_sort_key)
    cmd = ["squeue", "-h", "--states=all", "-r", "-j", ",".join(base), "-o", "%i|%T|%r|%N|%M"]
    try:
        p = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if p.returncode != 0:
        return {} if "invalid job id" in p.stderr.lower() else None
    return parse_squeue(p.stdout)


def sacct_states(job_ids: list[str]) -> dict[str, tuple[str, str, str, float | None]]:
    """States of finished jobs from Slurm's accounting, where the cluster keeps it ({} where it does not)."""
    if not job_ids or shutil.which("sacct") is None:
        return {}
    base = sorted({j.split("_")[0] for j in job_ids}, key=_job_sort_key)
    cmd = ["sacct", "-n", "-P", "-X", "-j", ",".join(base), "-o", "JobID,State,NodeList,Elapsed"]
    try:
        p = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return {}
    if p.returncode != 0:
        return {}
    out = {}
    for line in p.stdout.splitlines():
        parts = line.strip().split("|")
        if len(parts) >= 4 and parts[0] in job_ids:
            out[parts[0]] = (parts[1], "", parts[2], slurm_seconds(parts[3]))
    return out

