"""Slurm settings of a sweep (the study file's ``[slurm]`` table and the ``--slurm-*`` flags), what they make of
each cell's job (the sbatch parameters submitit gets), and what a job's Slurm state means for its cell.

Pure functions: nothing here talks to Slurm or imports submitit (sweep/slurm.py does), so the mapping is tested
without a cluster. A study file's table::

    [slurm]
    partition = "bench"              # default partition
    time_limit = 40                  # minutes per cell job [default: the cell timeout + peak + 3 min margin]
    sbatch = ["--account=perf"]      # extra sbatch options (long form), or a table {account = "perf"}
    array = true                     # one job array per target (same sbatch options); false: one job per cell
    python = "..."                   # the command that runs Python on the nodes [default: this Python]
    setup = ["module load cuda"]     # shell lines the job runs first
    srun_args = []                   # run the job through srun with these arguments (e.g. a pyxis container)

    [slurm.targets.trt]              # per target: partition, constraint, gres, time_limit, sbatch, python,
    gres = "gpu:1"                   # setup, srun_args (over the defaults above)
    constraint = "nvidia"

    [slurm.targets.openvino]
    constraint = "intel"
"""

from __future__ import annotations

import math
import re
import shlex
from dataclasses import dataclass, field, replace
from typing import Any

from deploykit.core.errors import UsageError

MARGIN_S = 180  # a job's time limit beyond its cell's timeout: Python start-up, the result, the USR2 warning
PRELUDE_CAP_S = 900  # most a job spends on a prelude command (deploykit peak, cached per node) before its cell
USR2_BEFORE_S = 90  # Slurm warns a job (USR2) this long before its time limit; a third of the limit when shorter
# sbatch options deploykit sets itself (each has its own key, or is fixed: every cell has its node to itself)
OWN_OPTIONS = {"exclusive": "every cell job is --exclusive", "time": "use time_limit (minutes)",
               "partition": "use partition", "constraint": "use constraint", "gres": "use gres",
               "array": "use array = true/false", "output": "deploykit sets it (the job's folder)",
               "error": "deploykit sets it (the job's folder)", "signal": "deploykit sets it",
               "job-name": "deploykit sets it", "nodes": "a cell runs on one node", "wrap": "not a job option"}


@dataclass(frozen=True)
class TargetSlurm:
    """Where a target's cells run: overrides of the defaults for that target's jobs."""

    partition: str | None = None
    constraint: str | None = None
    gres: str | None = None
    time_limit: int | None = None
    sbatch: tuple[tuple[str, Any], ...] = ()
    python: str | None = None  # e.g. another container image for this target
    setup: tuple[str, ...] = ()  # run after the defaults' setup lines
    srun_args: tuple[str, ...] = ()  # instead of the defaults'


@dataclass(frozen=True)
class SlurmSettings:
    partition: str | None = None
    time_limit: int | None = None  # minutes per cell job; None: from the cell timeout
    constraint: str | None = None
    gres: str | None = None
    sbatch: tuple[tuple[str, Any], ...] = ()  # extra sbatch options: (name, value | True)
    array: bool = True
    python: str | None = None
    setup: tuple[str, ...] = ()
    srun_args: tuple[str, ...] = ()
    targets: tuple[tuple[str, TargetSlurm], ...] = field(default=())

    def target(self, name: str) -> TargetSlurm:
        return dict(self.targets).get(name, TargetSlurm())


SETTINGS_KEYS = ("partition", "time_limit", "constraint", "gres", "sbatch", "array", "python", "setup", "srun_args",
                 "targets")
TARGET_KEYS = ("partition", "constraint", "gres", "time_limit", "sbatch", "python", "setup", "srun_args")


# ------------------------------------------------------------------------------------------------ parsing

def _str(value, where: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise UsageError(f"{where} must be a non-empty string, got {value!r}")
    return value.strip()


def _minutes(value, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise UsageError(f"{where} must be a whole number of minutes (at least 1), got {value!r}")
    return value


def _strings(value, where: str) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        raise UsageError(f"{where} must be a list of strings, got {value!r}")
    return tuple(value)


def parse_sbatch(value, where: str = "sbatch") -> tuple[tuple[str, Any], ...]:
    """Extra sbatch options: a list of long options (``--account=perf``, ``--qos high``, ``--requeue``) or a
    table (``{account = "perf", requeue = true}``) -> ((name, value or True), ...). Options deploykit sets itself
    (exclusive, time, partition, constraint, gres ...) are refused with the key to use instead."""
    items: list[tuple[str, Any]] = []
    if isinstance(value, dict):
        for k, v in value.items():
            if v is True or (isinstance(v, (str, int, float)) and not isinstance(v, bool)):
                items.append((str(k), v))
            else:
                raise UsageError(f"{where}: {k} must be a string, a number or true, got {v!r}")
    else:
        for arg in _strings(value, where):
            arg = arg.strip()
            if not arg.startswith("--") or len(arg) < 3:
                raise UsageError(f"{where}: {arg!r} is not a long sbatch option (write --name=value, e.g. "
                                 "--account=perf)")
            name, sep, val = arg[2:].partition("=")
            if not sep and " " in name:
                name, val = name.split(None, 1)
                sep = " "
            items.append((name.strip(), val.strip() if sep else True))
    out = []
    for name, val in items:
        key = name.replace("_", "-").lower()
        if not re.fullmatch(r"[a-z][a-z0-9-]*", key):
            raise UsageError(f"{where}: {name!r} is not an sbatch option name")
        if key in OWN_OPTIONS:
            raise UsageError(f"{where}: --{key} is not allowed here ({OWN_OPTIONS[key]})")
        out.append((key, val))
    return tuple(dict(out).items())


def settings_from_values(values: dict[str, Any], where: str = "") -> SlurmSettings:
    """SlurmSettings from a study file's ``[slurm]`` table; errors name the key at fault."""
    if not isinstance(values, dict):
        raise UsageError(f"{where}'slurm' must be a table ([slurm])")
    kw: dict[str, Any] = {}
    for key, value in values.items():
        at = f"{where}{key}"
        if key not in SETTINGS_KEYS:
            raise UsageError(f"{where}unknown key {key!r} (the [slurm] table has: {', '.join(SETTINGS_KEYS)})")
        if key in ("partition", "constraint", "gres", "python"):
            kw[key] = _str(value, at)
        elif key == "time_limit":
            kw[key] = _minutes(value, at)
        elif key == "array":
            if not isinstance(value, bool):
                raise UsageError(f"{at} must be true or false, got {value!r}")
            kw[key] = value
        elif key == "sbatch":
            kw[key] = parse_sbatch(value, at)
        elif key in ("setup", "srun_args"):
            kw[key] = _strings(value, at)
        else:  # targets
            kw[key] = _targets(value, at)
    return SlurmSettings(**kw)


def _targets(value, where: str) -> tuple[tuple[str, TargetSlurm], ...]:
    if not isinstance(value, dict) or not all(isinstance(v, dict) for v in value.values()):
        raise UsageError(f"{where} must hold one table per target ([slurm.targets.NAME])")
    from deploykit.runtimes.base import get_runtime

    out = []
    for name, table in value.items():
        get_runtime(name)  # an unknown target name: InputError with the close names
        kw: dict[str, Any] = {}
        for key, v in table.items():
            at = f"{where}.{name}.{key}"
            if key not in TARGET_KEYS:
                raise UsageError(f"{where}.{name}: unknown key {key!r} (a target's table has: "
                                 f"{', '.join(TARGET_KEYS)})")
            kw[key] = (_minutes(v, at) if key == "time_limit" else parse_sbatch(v, at) if key == "sbatch"
                       else _strings(v, at) if key in ("setup", "srun_args") else _str(v, at))
        out.append((name, TargetSlurm(**kw)))
    return tuple(out)


def with_flags(settings: SlurmSettings | None, *, partition: str | None = None, time_limit: int | None = None,
               sbatch: tuple[str, ...] = (), array: bool | None = None) -> SlurmSettings:
    """The study file's settings with the ``--slurm-*`` flags given on the command line over them (extra sbatch
    options are added to the file's, a flag's value winning for the same option)."""
    s = settings or SlurmSettings()
    kw: dict[str, Any] = {}
    if partition is not None:
        kw["partition"] = _str(partition, "--slurm-partition")
    if time_limit is not None:
        kw["time_limit"] = _minutes(time_limit, "--slurm-time-limit")
    if sbatch:
        kw["sbatch"] = tuple({**dict(s.sbatch), **dict(parse_sbatch(list(sbatch), "--slurm-sbatch"))}.items())
    if array is not None:
        kw["array"] = array
    return replace(s, **kw)


# --------------------------------------------------------------------------------------- job parameters

def time_limit_minutes(settings: SlurmSettings, target: str, cell_timeout: float, prelude_s: float = 0.0) -> int:
    """A cell job's time limit in minutes: the target's or the settings' ``time_limit``, else the cell timeout
    plus the prelude's budget plus a margin (Slurm counts whole minutes)."""
    explicit = settings.target(target).time_limit or settings.time_limit
    if explicit:
        return explicit
    if not cell_timeout:
        raise UsageError("--executor slurm needs a time limit per cell: give --cell-timeout SECONDS (the job gets "
                         "that plus a margin), --slurm-time-limit MINUTES or [slurm] time_limit")
    return max(1, math.ceil((cell_timeout + prelude_s + MARGIN_S) / 60))


def python_command(settings: SlurmSettings, target: str) -> str | None:
    """The command that runs Python in ``target``'s jobs (e.g. ``apptainer exec IMAGE python``); None: the
    submitting machine's own Python (a shared environment)."""
    return settings.target(target).python or settings.python


def usr2_before_s(limit_min: int) -> int:
    """How long before the time limit Slurm sends the job USR2 (submitit then stops it cleanly)."""
    return min(USR2_BEFORE_S, limit_min * 60 // 3)


def job_parameters(settings: SlurmSettings, target: str, *, cell_timeout: float, prelude_s: float = 0.0,
                   job_name: str = "deploykit", pythonpath: str | None = None) -> dict[str, Any]:
    """The submitit ``SlurmExecutor.update_parameters`` of a cell job on ``target``: one node to itself
    (``--exclusive``, all its memory unless an sbatch option says otherwise), the target's partition /
    constraint / GRES over the defaults, the time limit, extra sbatch options (the target's over the defaults').

    Without ``srun_args`` the job runs in the batch step (which holds the whole node; an srun step would get
    one CPU unless told otherwise) and Slurm's USR2 warning goes to it (``B:``); with them, through
    ``srun ARGS``. ``pythonpath``: a folder put first on the job's PYTHONPATH (the deploykit being run, where
    the nodes run this same Python; ignored where the target's jobs run another Python)."""
    t = settings.target(target)
    limit = time_limit_minutes(settings, target, cell_timeout, prelude_s)
    extra = {**dict(settings.sbatch), **dict(t.sbatch)}
    if not any(k in extra for k in ("mem", "mem-per-cpu", "mem-per-gpu")):
        extra = {"mem": "0", **extra}  # the whole node's memory, as the whole node's CPUs
    params: dict[str, Any] = {"job_name": job_name, "time": limit, "nodes": 1, "exclusive": True,
                              "signal_delay_s": usr2_before_s(limit)}
    for key in ("partition", "constraint", "gres"):
        value = getattr(t, key) or getattr(settings, key)
        if value:
            params[key] = value
    mem = extra.pop("mem", None)
    if mem is not None:
        params["mem"] = str(mem)
    setup = [*settings.setup, *t.setup]
    if pythonpath and python_command(settings, target) is None:
        setup.insert(0, f"export PYTHONPATH={shlex.quote(pythonpath)}${{PYTHONPATH:+:$PYTHONPATH}}")
    if setup:
        params["setup"] = setup
    srun_args = t.srun_args or settings.srun_args
    if srun_args:
        params["use_srun"] = True
        params["srun_args"] = list(srun_args)
    else:
        params["use_srun"] = False
        extra["signal"] = f"B:USR2@{params['signal_delay_s']}"
    if extra:
        params["additional_parameters"] = extra
    return params


def sbatch_flags(params: dict[str, Any]) -> list[str]:
    """The sbatch options ``job_parameters`` amount to, as a user would type them (for --dry-run and docs)."""
    items = [(k, params[k]) for k in ("partition", "constraint", "gres", "time", "nodes", "exclusive", "mem")
             if k in params]
    items += list((params.get("additional_parameters") or {}).items())
    return [f"--{k}" if v is True else f"--{k}={shlex.quote(str(v))}" for k, v in items]


# --------------------------------------------------------------------------------------------- job states

# states in which a job may still produce its result
ACTIVE_STATES = {"PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "REQUEUED", "REQUEUE_FED", "REQUEUE_HOLD",
                 "RESIZING", "SUSPENDED", "STOPPED", "SIGNALING", "STAGE_OUT", "RESV_DEL_HOLD", "SPECIAL_EXIT",
                 "POWER_UP_NODE", "UPDATE_DB", "LAUNCH_FAILED"}
# pending reasons worth telling the user about (the others are the queue doing its work)
QUIET_PENDING = {"", "NONE", "PRIORITY", "RESOURCES", "BEGINTIME", "DEPENDENCY", "JOBARRAYTASKLIMIT"}


def is_active(state: str) -> bool:
    return _state_word(state) in ACTIVE_STATES


def _state_word(state: str) -> str:
    return (state or "").strip().split()[0].upper() if (state or "").strip() else ""


def state_outcome(state: str, reason: str = "", *, limit_min: int | None = None) -> tuple[str, str]:
    """(status, reason) of a cell whose job ended in Slurm ``state`` without leaving a result: TIMEOUT and
    DEADLINE -> timeout; CANCELLED, PREEMPTED, NODE_FAIL, OUT_OF_MEMORY -> killed; the rest -> failed. The
    reason names the state and Slurm's own reason where it has one."""
    word = _state_word(state)
    why = f" (Slurm reason: {reason})" if reason and reason.upper() not in ("NONE", word) else ""
    if word == "TIMEOUT":
        at = f" of {limit_min} min" if limit_min else ""
        return "timeout", f"killed by Slurm at the job's time limit{at}{why}"
    if word == "DEADLINE":
        return "timeout", f"killed by Slurm at the job's deadline{why}"
    if word == "PREEMPTED":
        return "killed", f"preempted by Slurm{why}"
    if word == "CANCELLED":
        by = state.strip()[len("CANCELLED"):].strip()
        return "killed", f"cancelled in Slurm{' ' + by if by else ''} (scancel or an administrator){why}"
    if word == "NODE_FAIL":
        return "killed", f"the node failed (Slurm NODE_FAIL){why}"
    if word == "OUT_OF_MEMORY":
        return "killed", f"killed by Slurm: out of memory{why}"
    if word == "BOOT_FAIL":
        return "failed", f"the node failed to boot (Slurm BOOT_FAIL){why}"
    if word == "COMPLETED":
        return "failed", f"the job ended (COMPLETED) without a result{why}"
    if word == "FAILED":
        return "failed", f"the job FAILED in Slurm{why}"
    return "failed", f"the job ended in Slurm state {word or 'UNKNOWN'} without a result{why}"


def job_error_outcome(text: str, *, limit_min: int | None = None) -> tuple[str, str]:
    """(status, reason) of a job whose Python raised before or around the cell (submitit's error result):
    submitit's "timed-out" (USR2 at the time limit) -> timeout, anything else -> failed with the error's line."""
    lines = [ln.strip() for ln in str(text).splitlines() if ln.strip() and not set(ln.strip()) <= {"-"}]
    trace = [ln for ln in lines if not ln.startswith(("You can check", "or at paths", "- /"))]
    last = next((ln for ln in reversed(trace) if re.match(r"^[\w.]+(Error|Exception|Exit|Interrupt)\b", ln)),
                trace[-1] if trace else "no error message")
    if "timed-out" in str(text) or "timed out" in str(text):
        at = f" of {limit_min} min" if limit_min else ""
        why = last.split(": ")[-1].rstrip(".")
        return "timeout", f"stopped at the job's Slurm time limit{at} (warned by USR2; submitit: {why})"
    return "failed", f"the job failed on the node: {last}"
