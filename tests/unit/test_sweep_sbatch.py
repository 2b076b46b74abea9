"""deploykit/sweep/sbatch.py: the study file's [slurm] table and the --slurm-* flags -> the sbatch parameters of
each cell's job (exclusive node, the target's partition / constraint / GRES, time limit from the cell timeout,
extra sbatch options), rendered by submitit's own sbatch writer; and what a job's Slurm state means for its cell."""

from __future__ import annotations

import json

import pytest

from deploykit.core.errors import InputError, UsageError
from deploykit.sweep.sbatch import (SlurmSettings, TargetSlurm, job_error_outcome, job_parameters, parse_sbatch,
                                    python_command, sbatch_flags, settings_from_values, state_outcome,
                                    time_limit_minutes, usr2_before_s, with_flags)
from deploykit.sweep.spec import load_study, spec_dict, spec_from

STUDY = {
    "partition": "bench",
    "sbatch": ["--account=perf", "--qos high", "--requeue"],
    "targets": {
        "trt": {"gres": "gpu:1", "constraint": "nvidia", "time_limit": 60, "sbatch": {"qos": "gpu"}},
        "openvino": {"constraint": "intel"},
        "ort": {"partition": "cpu-bench", "sbatch": ["--mem=64G"]},
    },
}


def test_a_study_table_maps_each_target_to_its_sbatch_options():
    s = settings_from_values(STUDY)
    assert s.sbatch == (("account", "perf"), ("qos", "high"), ("requeue", True))
    assert s.target("trt") == TargetSlurm(gres="gpu:1", constraint="nvidia", time_limit=60, sbatch=(("qos", "gpu"),))
    assert s.target("torch") == TargetSlurm()  # a target without a table: the defaults

    trt = job_parameters(s, "trt", cell_timeout=600)
    assert trt["exclusive"] is True and trt["nodes"] == 1
    assert (trt["partition"], trt["constraint"], trt["gres"], trt["time"]) == ("bench", "nvidia", "gpu:1", 60)
    assert trt["additional_parameters"] == {"account": "perf", "qos": "gpu", "requeue": True,
                                            "signal": "B:USR2@90"}  # the target's qos over the default's
    assert trt["mem"] == "0" and trt["use_srun"] is False

    ov = job_parameters(s, "openvino", cell_timeout=600, prelude_s=900)
    assert (ov["partition"], ov["constraint"], "gres" in ov) == ("bench", "intel", False)
    assert ov["time"] == 28  # (600 s cell + 900 s peak + 180 s margin) / 60, rounded up

    ort = job_parameters(s, "ort", cell_timeout=100)
    assert (ort["partition"], ort["mem"], "constraint" in ort, ort["time"]) == ("cpu-bench", "64G", False, 5)

    assert sbatch_flags(trt) == ["--partition=bench", "--constraint=nvidia", "--gres=gpu:1", "--time=60",
                                 "--nodes=1", "--exclusive", "--mem=0", "--account=perf", "--qos=gpu", "--requeue",
                                 "--signal=B:USR2@90"]


def test_submitit_writes_the_sbatch_file_deploykit_asks_for():
    """The parameters go through submitit's own sbatch writer (its validation included): the lines a cell's job
    is submitted with."""
    pytest.importorskip("submitit")
    from submitit.slurm.slurm import _make_sbatch_string  # the writer SlurmExecutor uses

    s = settings_from_values(STUDY)
    params = job_parameters(s, "trt", cell_timeout=600, pythonpath="/opt/dk src")
    text = _make_sbatch_string(command="exec python -u -m submitit.core._submit /x", folder="/shared/out/slurm/%j",
                               **params)
    lines = text.splitlines()
    for line in ("#SBATCH --exclusive", "#SBATCH --partition=bench", "#SBATCH --constraint=nvidia",
                 "#SBATCH --gres=gpu:1", "#SBATCH --time=60", "#SBATCH --nodes=1", "#SBATCH --mem=0",
                 "#SBATCH --account=perf", "#SBATCH --qos=gpu", "#SBATCH --requeue", "#SBATCH --signal=B:USR2@90",
                 "#SBATCH --job-name=deploykit", "export PYTHONPATH='/opt/dk src'${PYTHONPATH:+:$PYTHONPATH}"):
        assert line in lines, (line, text)
    assert not any(ln.startswith("srun") for ln in lines)  # the batch step, which holds the whole node

    via_srun = job_parameters(SlurmSettings(srun_args=("--container-image=deploykit:cpu",), time_limit=10), "ort",
                              cell_timeout=0)
    text = _make_sbatch_string(command="python -u -m submitit.core._submit /x", folder="/o/%j", **via_srun)
    assert "#SBATCH --signal=USR2@90" in text and "--container-image=deploykit:cpu" in text
    assert any(ln.startswith("srun ") for ln in text.splitlines())


def test_a_target_may_run_another_python_with_its_own_setup():
    s = settings_from_values({"setup": ["module load python"], "targets": {"trt": {
        "python": "apptainer exec --nv /shared/deploykit-gpu.sif python", "setup": ["module load cuda"],
        "srun_args": ["--gpus-per-task=1"]}}})
    assert python_command(s, "trt") == "apptainer exec --nv /shared/deploykit-gpu.sif python"
    assert python_command(s, "ort") is None  # the submitting machine's Python
    trt = job_parameters(s, "trt", cell_timeout=60, pythonpath="/src")
    assert trt["setup"] == ["module load python", "module load cuda"]  # no PYTHONPATH into the container
    assert trt["use_srun"] is True and trt["srun_args"] == ["--gpus-per-task=1"]
    ort = job_parameters(s, "ort", cell_timeout=60, pythonpath="/src")
    assert ort["setup"][0].startswith("export PYTHONPATH=/src") and ort["use_srun"] is False


def test_the_time_limit_comes_from_the_cell_timeout_unless_given():
    s = SlurmSettings(time_limit=20, targets=(("trt", TargetSlurm(time_limit=90)),))
    assert time_limit_minutes(s, "ort", 1800) == 20 and time_limit_minutes(s, "trt", 1800) == 90
    assert time_limit_minutes(SlurmSettings(), "ort", 1800) == 33  # 1800 + 180 s
    assert time_limit_minutes(SlurmSettings(), "ort", 1) == 4
    with pytest.raises(UsageError, match="needs a time limit per cell"):
        time_limit_minutes(SlurmSettings(), "ort", 0)  # no cell timeout and no limit: Slurm's default would cut it
    assert usr2_before_s(1) == 20 and usr2_before_s(4) == 80 and usr2_before_s(30) == 90


def test_flags_override_the_study_file():
    s = with_flags(settings_from_values(STUDY), partition="other", time_limit=7,
                   sbatch=("--qos=urgent", "--exclude=node3"), array=False)
    assert (s.partition, s.time_limit, s.array) == ("other", 7, False)
    assert dict(s.sbatch) == {"account": "perf", "qos": "urgent", "requeue": True, "exclude": "node3"}
    assert with_flags(None) == SlurmSettings()
    with pytest.raises(UsageError, match="--slurm-sbatch: --exclusive is not allowed"):
        with_flags(None, sbatch=("--exclusive",))


@pytest.mark.parametrize("value, message", [
    ({"partion": "x"}, "unknown key 'partion'"),
    ({"time_limit": 1.5}, "time_limit must be a whole number of minutes"),
    ({"time_limit": 0}, "time_limit must be a whole number of minutes"),
    ({"array": "yes"}, "array must be true or false"),
    ({"sbatch": ["-A perf"]}, "not a long sbatch option"),
    ({"sbatch": ["--time=10"]}, "--time is not allowed here (use time_limit (minutes))"),
    ({"sbatch": {"constraint": "intel"}}, "--constraint is not allowed here (use constraint)"),
    ({"sbatch": {"mem": ["1G"]}}, "mem must be a string"),
    ({"setup": "module load x"}, None),  # a single line is fine
    ({"targets": {"ort": {"gpus": 1}}}, "targets.ort: unknown key 'gpus'"),
    ({"targets": {"ort": "intel"}}, "one table per target"),
    ({"partition": ""}, "partition must be a non-empty string"),
])
def test_bad_settings_are_one_line_errors_naming_the_key(value, message):
    if message is None:
        assert settings_from_values(value).setup == ("module load x",)
        return
    with pytest.raises(UsageError) as exc:
        settings_from_values(value, where="s.toml: [slurm]: ")
    assert message in str(exc.value) and str(exc.value).startswith("s.toml: [slurm]: ")


def test_an_unknown_target_in_the_table_names_the_close_ones():
    with pytest.raises(InputError, match="unknown target 'openvno'.*openvino"):
        settings_from_values({"targets": {"openvno": {"constraint": "intel"}}})


def test_parse_sbatch_forms():
    assert parse_sbatch(["--account=perf", "--qos high", "--requeue", "--mem_per_cpu=2G"]) == (
        ("account", "perf"), ("qos", "high"), ("requeue", True), ("mem-per-cpu", "2G"))
    assert parse_sbatch({"account": "perf", "nice": 10, "requeue": True}) == (
        ("account", "perf"), ("nice", 10), ("requeue", True))
    params = job_parameters(SlurmSettings(sbatch=parse_sbatch(["--mem-per-cpu=2G"]), time_limit=5), "ort",
                            cell_timeout=0)
    assert "mem" not in params  # the user's memory option instead of the whole node's


def test_a_study_file_carries_its_slurm_table_into_the_spec(tmp_path):
    study = tmp_path / "fleet.toml"
    study.write_text('[[matrix]]\nmodels = ["resnet18"]\ntargets = ["ort", "trt"]\n'
                     '[slurm]\npartition = "bench"\narray = false\n[slurm.targets.trt]\ngres = "gpu:1"\n')
    matrices, bench, meta = load_study(study)
    assert meta["slurm"].partition == "bench" and meta["slurm"].array is False
    spec = spec_from(study=study)
    assert spec.slurm.target("trt").gres == "gpu:1"
    recorded = json.loads(json.dumps(spec_dict(spec)))  # as sweep.json records it
    assert recorded["slurm"]["targets"] == [["trt", {"partition": None, "constraint": None, "gres": "gpu:1",
                                                     "time_limit": None, "sbatch": [], "python": None,
                                                     "setup": [], "srun_args": []}]]
    study.write_text('[[matrix]]\nmodels = ["resnet18"]\n[slurm]\nqueue = "x"\n')
    with pytest.raises(UsageError, match=r"fleet.toml: \[slurm\]: unknown key 'queue'"):
        load_study(study)


@pytest.mark.parametrize("state, reason, status, words", [
    ("TIMEOUT", "TimeLimit", "timeout", "time limit of 5 min"),
    ("DEADLINE", "None", "timeout", "deadline"),
    ("PREEMPTED", "None", "killed", "preempted by Slurm"),
    ("CANCELLED by 0", "None", "killed", "cancelled in Slurm by 0"),
    ("NODE_FAIL", "NodeDown", "killed", "the node failed (Slurm NODE_FAIL) (Slurm reason: NodeDown)"),
    ("OUT_OF_MEMORY", "OutOfMemory", "killed", "out of memory"),
    ("BOOT_FAIL", "", "failed", "BOOT_FAIL"),
    ("FAILED", "NonZeroExitCode", "failed", "FAILED in Slurm (Slurm reason: NonZeroExitCode)"),
    ("COMPLETED", "None", "failed", "without a result"),
    ("", "", "failed", "UNKNOWN"),
])
def test_a_job_that_ended_without_a_result_gets_slurms_state_and_reason(state, reason, status, words):
    got_status, got_reason = state_outcome(state, reason, limit_min=5)
    assert got_status == status and words in got_reason


def test_an_error_result_is_a_timeout_when_submitit_stopped_the_job_at_its_limit():
    trace = ("Job (task=0) failed during processing with trace:\n----------------------\nTraceback (most recent "
             "call last):\n  File \"x.py\", line 1, in f\nsubmitit.core.utils.UncompletedJobError: Job not requeued "
             "because: timed-out and not checkpointable.\n\n----------------------\nYou can check full logs with "
             "'job.stderr(0)'\nor at paths:\n  - /o/1_0_log.err\n")
    assert job_error_outcome(trace, limit_min=3) == (
        "timeout", "stopped at the job's Slurm time limit of 3 min (warned by USR2; submitit: timed-out and not "
                   "checkpointable)")
    status, reason = job_error_outcome(trace.replace("submitit.core.utils.UncompletedJobError: Job not requeued "
                                                     "because: timed-out and not checkpointable.",
                                                     "ModuleNotFoundError: No module named 'deploykit'"))
    assert (status, reason) == ("failed", "the job failed on the node: ModuleNotFoundError: No module named "
                                          "'deploykit'")
