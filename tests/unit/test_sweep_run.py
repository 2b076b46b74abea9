"""deploykit/sweep/run.py: the plan against an existing table (resume, retry), the table rewritten after every
finished cell, and SIGINT / SIGTERM stopping the running child while keeping every finished cell. Cells run as
real child processes (small Python programs standing in for ``deploykit bench``)."""

from __future__ import annotations

import json
import os
import signal
import sys
import threading

import pytest

from deploykit.core.errors import UsageError
from deploykit.report.results import read_results
from deploykit.sweep.executor import LocalExecutor
from deploykit.sweep.run import SweepInterrupted, plan, run_sweep
from deploykit.sweep.spec import BenchSettings, Matrix, SweepSpec
from tests.sample_reports import make_report, samples

SPEC = SweepSpec(matrices=(Matrix(models=("resnet18",), resolution=(64, 96, 128)),
                           Matrix(models=("swin_tiny",), resolution=(48,))))  # 48 px: swin_tiny needs >= 64


def fake_bench(tmp_path, fail=(), hang=(), noisy=()):
    """A ``command`` hook: the child copies a report into the cell's folder, or fails / hangs for the cells whose
    resolution is in ``fail`` / ``hang`` (a hanging child writes its pid to <folder>/pid); the reports of the
    cells in ``noisy`` ran 40% slower in their second half (a load came)."""
    staged = {}
    for res in (64, 96, 128):
        f = tmp_path / f"report{res}.json"
        s = samples(res / 10.0)
        if res in noisy:
            s = s[:100] + [v * 1.4 for v in s[100:]]
        f.write_text(json.dumps(make_report(s, resolution=res)))
        staged[res] = f

    def command(cell, report_dir):
        if cell.resolution in fail:
            code = "import sys; print('error: broken on purpose', file=sys.stderr); sys.exit(2)"
        elif cell.resolution in hang:
            code = "import os, sys, time; open(sys.argv[1] + '/pid', 'w').write(str(os.getpid())); time.sleep(120)"
        else:
            code = f"import shutil, sys; shutil.copy({str(staged[cell.resolution])!r}, sys.argv[1] + '/r.json')"
        return [sys.executable, "-c", code, str(report_dir)]

    return command


def test_the_table_is_rewritten_after_every_cell_and_skipped_cells_are_listed(tmp_path):
    out = tmp_path / "sweep"
    p = plan(SPEC, out)
    assert [p.actions[c.key] for c in p.cells] == ["run", "run", "run", "skip"]
    seen = []

    def on_row(row, counts):  # the table on disk already holds this cell
        df = read_results(out)
        seen.append((row["cell"], len(df), counts.ok, counts.failed, counts.left))
        assert row["cell"] in set(df["cell"])

    rows = run_sweep(p, LocalExecutor(BenchSettings(), out, command=fake_bench(tmp_path, fail=(96,))), out,
                     on_row=on_row)
    assert [s[1:] for s in seen] == [(2, 1, 0, 2), (3, 1, 1, 1), (4, 2, 1, 0)]  # the skipped row is there first
    assert [r["status"] for r in rows] == ["ok", "failed", "ok", "skipped"]
    assert rows[1]["reason"] == "broken on purpose"
    assert "at least 64" in rows[3]["reason"]
    df = read_results(out / "results.csv")
    assert list(df["status"]) == ["ok", "failed", "ok", "skipped"]


def test_resume_keeps_finished_cells_and_retry_failed_runs_the_failed_again(tmp_path):
    out = tmp_path / "sweep"
    p = plan(SPEC, out)
    run_sweep(p, LocalExecutor(BenchSettings(), out, command=fake_bench(tmp_path, fail=(96,))), out)
    with pytest.raises(UsageError, match="already holds a sweep's results .4 cells.: pass --resume"):
        plan(SPEC, out)
    with pytest.raises(UsageError, match="--retry-failed .* with --resume"):
        plan(SPEC, out, retry_failed=True)
    before = read_results(out)
    p = plan(SPEC, out, resume=True)
    assert [p.actions[c.key] for c in p.cells] == ["done", "kept", "done", "skip"] and not p.todo
    assert p.listing()[1]["reason"] == "failed in the existing table: broken on purpose"
    p = plan(SPEC, out, resume=True, retry_failed=True)
    assert [c.resolution for c in p.todo] == [96]
    rows = run_sweep(p, LocalExecutor(BenchSettings(), out, command=fake_bench(tmp_path)), out)
    assert [r["status"] for r in rows] == ["ok", "ok", "ok", "skipped"]
    after = read_results(out)
    assert after.loc[0, "created"] == before.loc[0, "created"] and after.loc[0, "report"] == before.loc[0, "report"]
    # a resumed sweep with a larger spec adds cells; rows of cells no longer in the spec stay in the table
    smaller = SweepSpec(matrices=(Matrix(models=("resnet18",), resolution=(64,)),))
    run_sweep(plan(smaller, out, resume=True), LocalExecutor(BenchSettings(), out, command=fake_bench(tmp_path)), out)
    assert len(read_results(out)) == 4


def test_remeasure_noisy_runs_the_cells_flagged_noisy_again(tmp_path):
    out = tmp_path / "sweep"
    run_sweep(plan(SPEC, out), LocalExecutor(BenchSettings(), out, command=fake_bench(tmp_path, noisy=(128,))), out)
    assert list(read_results(out)["noisy"].fillna(False)) == [False, False, True, False]
    with pytest.raises(UsageError, match="--remeasure-noisy .* with --resume"):
        plan(SPEC, out, remeasure_noisy=True)
    assert not plan(SPEC, out, resume=True).todo  # a noisy cell is still a finished one
    p = plan(SPEC, out, resume=True, remeasure_noisy=True)
    assert [c.resolution for c in p.todo] == [128]
    run_sweep(p, LocalExecutor(BenchSettings(), out, command=fake_bench(tmp_path)), out)
    assert list(read_results(out)["noisy"].fillna(False)) == [False, False, False, False]


@pytest.mark.parametrize("signum,code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_stops_the_running_cell_and_keeps_every_finished_one(tmp_path, signum, code):
    out = tmp_path / "sweep"
    p = plan(SPEC, out)
    ex = LocalExecutor(BenchSettings(), out, command=fake_bench(tmp_path, hang=(96,)))
    started = []

    def on_start(cell):
        started.append(cell.resolution)
        if cell.resolution == 96:  # signal ourselves once the hanging cell's child is up
            threading.Timer(1.0, os.kill, (os.getpid(), signum)).start()

    ex.on_start = on_start
    old = signal.getsignal(signal.SIGINT)
    with pytest.raises(SweepInterrupted) as exc:
        run_sweep(p, ex, out)
    assert signal.getsignal(signal.SIGINT) is old  # our handlers are gone again
    assert exc.value.exit_code == code
    assert f"by {signal.Signals(signum).name}: 1 of 3 cells finished" in str(exc.value)
    assert "--resume" in str(exc.value)
    assert started == [64, 96]
    df = read_results(out)
    assert list(df["status"]) == ["ok", "skipped"]  # the finished cell and the skipped one; nothing half-written
    pid = int((out / "cells" / p.cells[1].safe_key / "pid").read_text())
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # the running cell's child was stopped (and reaped)
    assert not [f for f in out.iterdir() if f.name.startswith(".dk-tmp")]


def test_a_failing_prelude_is_reported_and_the_sweep_goes_on(tmp_path):
    out = tmp_path / "sweep"
    p = plan(SweepSpec(matrices=(Matrix(models=("resnet18",), resolution=(64,)),)), out)
    said = []
    rows = run_sweep(p, LocalExecutor(BenchSettings(), out, command=fake_bench(tmp_path)), out,
                     prelude=[["no-such-command"]], say=said.append)
    assert [r["status"] for r in rows] == ["ok"]
    assert said[0] == "first: deploykit no-such-command"
    assert len(said) == 2 and said[1].startswith("'deploykit no-such-command' did not run:")


def test_each_run_is_recorded_beside_the_table(tmp_path):
    from deploykit.sweep.run import record_run

    study = tmp_path / "s.toml"
    study.write_text('name = "demo"\ndescription = "two sizes"\n[[matrix]]\nmodels = ["resnet18"]\n')
    from deploykit.sweep.spec import spec_from

    spec = spec_from(study=study)
    record_run(tmp_path, spec, ["sweep", "--study", str(study)])
    record_run(tmp_path, spec, ["sweep", "--study", str(study), "--resume"])
    data = json.loads((tmp_path / "sweep.json").read_text())
    assert data["spec"]["name"] == "demo" and data["spec"]["description"] == "two sizes"
    assert data["spec"]["matrices"][0]["models"] == ["resnet18"] and data["spec"]["bench"]["min_time"] == 5.0
    assert [r["argv"][-1] for r in data["runs"]] == [str(study), "--resume"]


def test_an_interrupt_outside_the_executor_still_stops_it(tmp_path):
    """An interrupt raised in the runner (after a row, while the table is written) rather than inside the
    executor's generator closes the generator: an executor with work out elsewhere (Slurm jobs) cancels it."""
    out = tmp_path / "sweep"
    p = plan(SPEC, out)

    class Tracking(LocalExecutor):
        closed = False

        def run(self, cells):
            try:
                yield from super().run(cells)
            except GeneratorExit:
                self.closed = True
                raise

    ex = Tracking(BenchSettings(), out, command=fake_bench(tmp_path))

    def on_row(row, counts):
        raise SweepInterrupted("stop", signal.SIGTERM)

    with pytest.raises(SweepInterrupted):
        run_sweep(p, ex, out, on_row=on_row)
    assert ex.closed
    assert list(read_results(out)["status"]) == ["ok", "skipped"]
