"""deploykit/sweep/slurm.py without a cluster: the executor registered beside the local one, cells grouped into one
job array per target (or one job per cell), squeue's answers read, the job id a cell's job finds in its
environment, and a clear error where Slurm's commands are missing. Jobs on a real Slurm:
tests/integration/test_sweep_slurm_cluster.py."""

from __future__ import annotations

import pytest

from deploykit.core.errors import UnavailableError
from deploykit.sweep.executor import EXECUTORS, executor_names, make_executor
from deploykit.sweep.sbatch import SlurmSettings, TargetSlurm
from deploykit.sweep.slurm import (NodeRunner, SlurmExecutor, job_id_from_env, parse_squeue, slurm_seconds)
from deploykit.sweep.spec import BenchSettings, Cell


def cells(*targets: str) -> list[Cell]:
    return [Cell(model=m, target=t, resolution=64, label=m) for t in targets for m in ("resnet18", "deit_tiny")]


def test_slurm_is_an_executor_whose_cells_run_elsewhere():
    assert executor_names() == ["local", "slurm"]
    assert EXECUTORS.get("slurm") is SlurmExecutor and SlurmExecutor.runs_here is False
    assert EXECUTORS.get("local").runs_here is True
    ex = make_executor("slurm", BenchSettings(), "out", settings=SlurmSettings(partition="p"))
    assert ex.settings.partition == "p" and ex.prelude(["peak"], 1800) == (True, "")
    assert ex.preludes == [(["peak"], 900.0)]  # a job spends at most 15 min on the prelude


def test_cells_go_out_as_one_job_array_per_target_or_one_job_per_cell(tmp_path):
    settings = SlurmSettings(partition="bench", targets=(("openvino", TargetSlurm(constraint="intel")),
                                                         ("trt", TargetSlurm(gres="gpu:1", time_limit=60))))
    ex = SlurmExecutor(BenchSettings(cell_timeout=600), tmp_path / "my sweep", settings=settings)
    groups = ex.job_groups(cells("ort", "openvino", "trt"))
    assert [[c.target for c in g] for _, g in groups] == [["ort", "ort"], ["openvino", "openvino"], ["trt", "trt"]]
    params = [p for p, _ in groups]
    assert [p["time"] for p in params] == [13, 13, 60] and params[1]["constraint"] == "intel"
    assert all(p["job_name"] == "deploykit-my_sweep" and p["exclusive"] for p in params)
    assert params[0]["setup"][0].startswith("export PYTHONPATH=")  # the nodes run this Python and this deploykit
    jobs = ex.describe_jobs(cells("ort"))
    assert jobs[0]["array"] is True and jobs[0]["cells"] == ["resnet18|ort|fp32|b1|r64|tauto",
                                                             "deit_tiny|ort|fp32|b1|r64|tauto"]
    assert "--exclusive" in jobs[0]["sbatch"] and "--time=13" in jobs[0]["sbatch"]

    ex.prelude(["peak"])  # each job measures the node's peak first (cached per node): a longer limit
    assert ex.job_groups(cells("ort"))[0][0]["time"] == 28

    one_each = SlurmExecutor(BenchSettings(cell_timeout=600), tmp_path, settings=SlurmSettings(
        array=False, python="apptainer exec dk.sif python"))
    groups = one_each.job_groups(cells("ort", "openvino"))
    assert [len(g) for _, g in groups] == [1, 1, 1, 1]
    assert "setup" not in groups[0][0]  # another Python (a container's) brings its own deploykit
    assert one_each.python_command("ort") == groups[0][0]["python"] == "apptainer exec dk.sif python"

    per_target = SlurmExecutor(BenchSettings(cell_timeout=600), tmp_path, settings=SlurmSettings(
        targets=(("trt", TargetSlurm(python="apptainer exec --nv gpu.sif python")),)))
    (ort, ort_cells), (trt, trt_cells) = per_target.job_groups(cells("ort", "trt"))
    assert ort["python"].endswith("python") and "setup" in ort  # this Python, this deploykit
    assert trt["python"] == "apptainer exec --nv gpu.sif python" and "setup" not in trt


def test_squeue_output_and_slurm_times_are_read():
    text = "12_0|RUNNING|None|node7|1:02\n12_1|PENDING|Resources||0:00\n13|CANCELLED|None|node2|1-02:03:04\n\n"
    assert parse_squeue(text) == {"12_0": ("RUNNING", "None", "node7", 62.0),
                                  "12_1": ("PENDING", "Resources", "", 0.0),
                                  "13": ("CANCELLED", "None", "node2", 93784.0)}
    assert [slurm_seconds(t) for t in ("7", "3:04", "1:02:03", "INVALID", "")] == [7.0, 184.0, 3723.0, None, None]


def test_a_cells_job_finds_its_id_and_names_its_node_in_its_row(tmp_path):
    assert job_id_from_env({"SLURM_JOB_ID": "41", "SLURM_ARRAY_JOB_ID": "40", "SLURM_ARRAY_TASK_ID": "3"}) == "40_3"
    assert job_id_from_env({"SLURM_JOB_ID": "41"}) == "41" and job_id_from_env({}) == ""
    runner = NodeRunner(BenchSettings(), tmp_path, host="login1")
    run = runner.run_columns(1.5)
    assert run["host"] == "login1" and run["node"] == runner.node and run["executor"] == "slurm"
    assert runner.prelude_log_name(["peak", "--threads", "2"]) == f"peak-{runner.node}.log"


def test_without_slurms_commands_the_executor_says_what_is_missing(tmp_path, monkeypatch):
    pytest.importorskip("submitit")
    monkeypatch.setenv("PATH", str(tmp_path))  # no sbatch, squeue, scancel here
    ex = SlurmExecutor(BenchSettings(), tmp_path / "out")
    with pytest.raises(UnavailableError, match="needs Slurm's sbatch, squeue, scancel on PATH"):
        list(ex.run(cells("ort")))
    assert list(ex.run([])) == []  # nothing to run: nothing asked of Slurm


def test_the_telling_line_of_a_jobs_log_is_slurms_own(tmp_path):
    from deploykit.sweep.slurm import job_log_line

    log = tmp_path / "1_0_log.err"
    log.write_text("slurmstepd-vm: error: *** JOB 8 ON vm CANCELLED AT 2026-11-30T09:28:54 ***\n"
                   "submitit WARNING (2026-11-30 09:28:54,441) - Bypassing signal SIGCONT\n")
    assert job_log_line(log) == "slurmstepd-vm: error: *** JOB 8 ON vm CANCELLED AT 2026-11-30T09:28:54 ***"
    log.write_text("Traceback (most recent call last):\nModuleNotFoundError: No module named 'deploykit'\n"
                   "submitit ERROR (2026-11-30 09:28:54,441) - Submitted job triggered an exception\n")
    assert job_log_line(log) == "ModuleNotFoundError: No module named 'deploykit'"
    assert job_log_line(tmp_path / "none.err") == ""
