"""Executors run sweep cells and yield one results-table row per finished cell.

An executor gets the cells to run and yields rows as cells finish (in any order); the runner (sweep/run.py)
writes the table after every row. ``local`` runs each cell as its own ``deploykit bench`` child process (a LoadGen
cell: ``deploykit loadgen``; ``cell_args``), one at a time (cells measured side by side on one machine would
disturb each other). Another executor registers beside it
with ``@EXECUTORS.register(name)`` in a module of this package (found by a package scan, as targets are):
``slurm`` (sweep/slurm.py) submits each cell as a Slurm job whose node runs this same local cell logic.

Each child imports deploykit's own code only and dies with its parent (core/child.py); it runs in its own process
group, so a timeout or an interrupted sweep kills it and everything it started.
"""

from __future__ import annotations

import importlib
import os
import pkgutil
import signal
import socket
import subprocess
import sys
import time
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Callable, ClassVar, Iterable, Iterator

from deploykit.core.errors import squash
from deploykit.core.registry import Registry
from deploykit.spec.run import SPEC_FILE
from deploykit.sweep.spec import BenchSettings, Cell



def _discover() -> None:
    """Import every module of deploykit.sweep: executor modules register themselves when imported."""
    package = sys.modules[__package__]
    for mod in pkgutil.iter_modules(package.__path__):
        if not mod.name.startswith("_"):
            importlib.import_module(f"{__package__}.{mod.name}")


EXECUTORS: Registry[type["Executor"]] = Registry("executor", loader=_discover)

CELLS_DIR = "cells"
LOG_NAME = "bench.log"  # a cell's child's stderr (a LoadGen cell's: loadgen.log; ``log_name``)
CLI_CODE = "from deploykit.cli import main; main()"


def deploykit_argv(*args: str) -> list[str]:
    """argv of a child ``deploykit ARGS`` (deploykit's own code only: core/child.py)."""
    from deploykit.core.child import python_argv

    return python_argv(CLI_CODE, *args)


def log_name(cell: Cell) -> str:
    return "loadgen.log" if cell.loadgen else LOG_NAME


def cell_args(cell: Cell, bench: BenchSettings | None, report_dir: Path, models_dir: Path | None = None) -> list[str]:
    """The deploykit arguments of one cell's child: ``deploykit run <cell folder>/spec.json`` -- the cell's run
    spec, which ``write_cell_spec`` writes there (a latency run writes its JSON report, a LoadGen run its JSON
    and Markdown)."""
    args = ["run", str(Path(report_dir) / SPEC_FILE), "--report-dir", str(report_dir), "--json"]
    if not cell.loadgen:
        args[4:4] = ["--format", "json"]
    if models_dir is not None:
        args += ["--models-dir", str(models_dir)]
    return args


def write_cell_spec(cell: Cell, bench: BenchSettings | None, cdir: Path) -> Path:
    """The cell's run spec file in its folder (with the sweep's settings ``bench``)."""
    from dataclasses import replace

    from deploykit.spec.run import write_spec

    spec = (replace(cell, settings=bench) if bench is not None else cell).spec
    return write_spec(spec, Path(cdir) / SPEC_FILE)


def child_env() -> dict[str, str]:
    """The environment of a child: ours, with the folder of the deploykit package we run from first on its import
    path (the child runs the same deploykit code as the sweep, a checkout's included)."""
    root = str(Path(__file__).resolve().parents[2])
    paths = [root] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p and p != root]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}


def signal_name(num: int) -> str:
    try:
        return signal.Signals(num).name
    except ValueError:
        return f"signal {num}"


def last_line(path: Path) -> str:
    """The last non-empty line of a log (``error: `` taken off), or ""."""
    from deploykit.core.errors import InputError
    from deploykit.core.guarded import open_regular

    try:
        fd = open_regular(path, what="log")
    except InputError:  # missing, a link, a FIFO, a device: no line from it
        return ""
    try:
        with os.fdopen(fd, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - 16384))
            text = fh.read().decode("utf-8", "replace")
    except OSError:
        return ""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    if not lines:
        return ""
    line = lines[-1]
    return squash(line[len("error:"):].strip() if line.startswith("error:") else line)


def classify(returncode: int | None, timed_out: bool, log: Path, timeout: float) -> tuple[str, str]:
    """(status, reason) of a finished child: timeout, killed (by a signal), failed (non-zero exit) or ok."""
    if timed_out:
        return "timeout", f"no result within the cell timeout of {timeout:g} s (killed)"
    if returncode is not None and returncode < 0:
        name = signal_name(-returncode)
        if -returncode == signal.SIGKILL:
            return "killed", "killed by SIGKILL (possibly out of memory)"
        tail = last_line(log)
        return "killed", f"killed by {name}" + (f": {tail}" if tail else "")
    if returncode:
        return "failed", last_line(log) or f"exit code {returncode} with no message"
    return "ok", ""


class Executor(ABC):
    """Runs cells; ``run`` yields one row (a results-table dict) per finished cell."""

    name: ClassVar[str] = ""
    # whether cells run on this machine: then a target unavailable here skips its cells; elsewhere (a cluster's
    # nodes) the node decides, and a node without the target fails the cell with the reason
    runs_here: ClassVar[bool] = True
    prelude_where: ClassVar[str] = "first"  # when a prelude command runs (said before it)

    def __init__(self, bench: BenchSettings, out: Path, *, models_dir: Path | None = None,
                 on_start: Callable[[Cell], None] | None = None, say: Callable[[str], None] | None = None):
        self.bench = bench
        self.out = Path(out)
        self.models_dir = models_dir
        self.on_start = on_start or (lambda cell: None)
        self.say = say or (lambda msg: None)

    @abstractmethod
    def run(self, cells: Iterable[Cell]) -> Iterator[dict]:
        """Run ``cells``; yield each one's row as it finishes. On an exception (an interrupt) stop all work."""

    def prelude(self, args: list[str], timeout: float | None = None) -> tuple[bool, str]:
        """Run one ``deploykit ARGS`` before the cells (e.g. ``peak``); (ok, last line of its output)."""
        return False, "not supported by this executor"

    def cell_dir(self, cell: Cell) -> Path:
        return self.out / CELLS_DIR / cell.safe_key

    def run_columns(self, wall_s: float) -> dict:
        host = socket.gethostname()
        return {"wall_s": wall_s, "host": host, "node": host, "job_id": "", "executor": self.name}

    def finish(self, cell: Cell, status: str, reason: str, returncode: int | None, wall_s: float | None,
               log: Path | None = None) -> dict:
        """The row of a cell whose child has ended: from its report when it wrote one, else a failure row (whose
        ``report`` is the cell's bench.log / loadgen.log, else ``log`` where that exists)."""
        from deploykit.core.errors import DeployKitError
        from deploykit.report.results import failed_row, load_report, row_from_report

        run = self.run_columns(wall_s)
        cdir = self.cell_dir(cell)
        if status == "ok":
            reports = sorted((p for p in cdir.glob("*.json") if p.name != SPEC_FILE), key=lambda p: p.stat().st_mtime)
            if not reports:
                status, reason = "failed", f"deploykit {'loadgen' if cell.loadgen else 'bench'} exited 0 but wrote " \
                                           f"no report in {cdir}"
            else:
                try:
                    return row_from_report(load_report(reports[-1]), cell.describe(),
                                           report_path=reports[-1].relative_to(self.out), run=run)
                except DeployKitError as exc:  # a report that is not one (its file named), not a crash of the sweep
                    status, reason = "failed", f"{reports[-1].name}: {exc.one_line()}"
        logs = [p for p in (cdir / log_name(cell), log) if p is not None and p.is_file()]
        run["git_rev"] = _own_git_rev()
        return failed_row(cell.describe(), status, reason, exit_code=returncode, run=run,
                          report_path=_relative(logs[0], self.out) if logs else None)


def _relative(path: Path, root: Path) -> Path:
    try:
        return path.resolve().relative_to(root.resolve())
    except ValueError:
        return path.resolve()


def _own_git_rev() -> str:
    from deploykit.bench.fingerprint import git_sha

    return git_sha().get("sha") or ""


@EXECUTORS.register("local")
class LocalExecutor(Executor):
    """Each cell a ``deploykit bench`` (LoadGen cells: ``deploykit loadgen``) child process on this machine, one at
    a time."""

    name = "local"

    def __init__(self, bench: BenchSettings, out: Path, *, models_dir: Path | None = None,
                 on_start: Callable[[Cell], None] | None = None, say: Callable[[str], None] | None = None,
                 command: Callable[[Cell, Path], list[str]] | None = None):
        super().__init__(bench, out, models_dir=models_dir, on_start=on_start, say=say)
        # argv of a cell's child (the cell, its report folder); deploykit bench / loadgen unless a caller runs
        # another program
        self.command = command or (lambda cell, rdir: deploykit_argv(*cell_args(cell, self.bench, rdir,
                                                                                self.models_dir)))
        self._proc: subprocess.Popen | None = None

    def run(self, cells: Iterable[Cell]) -> Iterator[dict]:
        for cell in cells:
            self.on_start(cell)
            yield self.run_cell(cell)

    def run_cell(self, cell: Cell) -> dict:
        from deploykit.core.atomic import ensure_dir

        cdir = self.cell_dir(cell)
        clear_dir(cdir)
        ensure_dir(cdir)
        write_cell_spec(cell, self.bench, cdir)
        timeout = self.bench.cell_timeout or None
        t0 = time.monotonic()
        log = cdir / log_name(cell)
        rc, timed_out = self._run_child(self.command(cell, cdir), log, timeout)
        wall = time.monotonic() - t0
        status, reason = classify(rc, timed_out, log, self.bench.cell_timeout)
        return self.finish(cell, status, reason, None if timed_out else rc, wall)

    def prelude(self, args: list[str], timeout: float | None = None) -> tuple[bool, str]:
        from deploykit.core.atomic import ensure_dir

        log = ensure_dir(self.out / CELLS_DIR) / self.prelude_log_name(args)
        rc, timed_out = self._run_child(deploykit_argv(*args), log, timeout)
        status, reason = classify(rc, timed_out, log, timeout or 0)
        return status == "ok", reason or last_line(log)

    def prelude_log_name(self, args: list[str]) -> str:
        return f"{args[0]}.log"

    def _run_child(self, argv: list[str], log: Path, timeout: float | None) -> tuple[int | None, bool]:
        from deploykit.core.child import die_with_parent

        from deploykit.core.guarded import open_for_write, real_parent

        real_parent(log)  # a cells/ folder that is a link is refused; a link at the log is replaced, not followed
        with open_for_write(log) as err:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err,
                                    env=child_env(), start_new_session=True, preexec_fn=die_with_parent)
            self._proc = proc
            try:
                rc = proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                _kill_group(proc)
                return proc.returncode, True
            except BaseException:  # interrupted (Ctrl-C, SIGTERM): the cell's child goes with us
                _kill_group(proc)
                raise
            finally:
                self._proc = None
            _kill_group(proc)  # whatever the child left running in its group
            return rc, False


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:  # pragma: no cover - a process that survives SIGKILL (D state)
        pass


def clear_dir(cdir: Path) -> None:
    """Empty a cell's folder before (re)running it: its report and log are the latest run's only. A link where the
    folder (or a file in it) should be is removed, never followed: nothing outside the sweep's folder is emptied
    (``core.guarded.clear_dir``); a ``cells`` folder that is a link is refused."""
    from deploykit.core.guarded import clear_dir as guarded_clear

    guarded_clear(cdir)


def executor_names() -> list[str]:
    return EXECUTORS.names()


def make_executor(name: str, bench: BenchSettings, out: Path, **kw) -> Executor:
    return EXECUTORS.get(name)(bench, out, **kw)
