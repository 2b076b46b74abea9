"""deploykit sweep / compare on the command line, in-process and without running a cell: --dry-run listings,
the one-line errors (unknown model / target, empty spec, bad study file, existing sweep folder), and compare's
table, JSON and files on hand-built reports. The sweeps that run cells are in tests/integration/test_sweep_cli.py."""

from __future__ import annotations

import json

from deploykit.cli import cli
from tests.conftest import assert_clean_error, files_under
from tests.sample_reports import make_report, samples, write_report


def test_dry_run_lists_the_cells_and_writes_nothing(cli_runner, tmp_path):
    out = tmp_path / "s"
    r = cli_runner.invoke(cli, ["sweep", "resnet18", "swin_tiny", "-t", "ort,openvino", "--resolution", "48,64",
                                "-o", str(out), "--dry-run", "--json"])
    assert r.exit_code == 0, r.output
    listing = json.loads(r.stdout)
    assert listing["out"] == str(out) and len(listing["cells"]) == 8
    assert listing["counts"] == {"run": 6, "skip": 2, "done": 0, "kept": 0}
    skipped = [c for c in listing["cells"] if c["action"] == "skip"]
    assert {c["cell"] for c in skipped} == {"swin_tiny|ort|fp32|b1|r48|tauto", "swin_tiny|openvino|fp32|b1|r48|tauto"}
    assert all("at least 64" in c["reason"] for c in skipped)
    assert not out.exists()
    r = cli_runner.invoke(cli, ["sweep", "resnet18", "--resolution", "64", "-o", str(out), "--dry-run"])
    assert r.exit_code == 0 and "resnet18" in r.stdout and "1 to run" in r.stdout


def test_a_study_file_dry_run(cli_runner, tmp_path):
    study = tmp_path / "study.toml"
    study.write_text('[bench]\nout = "%s"\n[[matrix]]\nmodels = ["resnet18"]\nresolution = [64, 96]\n'
                     '[[matrix]]\nmodels = ["parc_net_s"]\nparc_impl = ["conv", "fft"]\nresolution = 64\n'
                     % (tmp_path / "from-study"))
    r = cli_runner.invoke(cli, ["sweep", "--study", str(study), "--dry-run", "--json", "--min-time", "0.1"])
    assert r.exit_code == 0, r.output
    listing = json.loads(r.stdout)
    assert listing["out"] == str(tmp_path / "from-study")
    assert [c["cell"] for c in listing["cells"]] == [
        "resnet18|ort|fp32|b1|r64|tauto", "resnet18|ort|fp32|b1|r96|tauto",
        "parc_net_s|ort|fp32|b1|r64|tauto|parc_impl=conv", "parc_net_s|ort|fp32|b1|r64|tauto|parc_impl=fft"]


def test_one_line_errors(cli_runner, tmp_path):
    assert_clean_error(cli_runner.invoke(cli, ["sweep", "resnt18", "--dry-run"]), 2,
                       "unknown model 'resnt18'", "did you mean 'resnet18'")
    assert_clean_error(cli_runner.invoke(cli, ["sweep", "resnet18", "-t", "onnxruntime", "--dry-run"]), 2,
                       "unknown target 'onnxruntime'")
    assert_clean_error(cli_runner.invoke(cli, ["sweep", "--dry-run"]), 2, "no models to sweep")
    assert_clean_error(cli_runner.invoke(cli, ["sweep", "resnet18", "--precision", "fp64", "--dry-run"]), 2,
                       "unknown precision 'fp64'")
    assert_clean_error(cli_runner.invoke(cli, ["sweep", "resnet18", "--resume", "--dry-run"]), 2,
                       "--resume needs the sweep's folder")
    bad = tmp_path / "bad.toml"
    bad.write_text("[[matrix]]\nmodels = ['resnet18']\nresolutions = [64]\ntarget = ['ort']\nbatchs = [1]\n")
    assert_clean_error(cli_runner.invoke(cli, ["sweep", "--study", str(bad), "--dry-run"]), 2,
                       str(bad), "unknown key 'batchs'")
    assert_clean_error(cli_runner.invoke(cli, ["sweep", "--study", str(tmp_path / "none.toml")]), 2,
                       "study file not found")
    existing = tmp_path / "existing"
    existing.mkdir()
    (existing / "results.csv").write_text("cell,model,target,status\nx,resnet18,ort,ok\n")
    assert_clean_error(cli_runner.invoke(cli, ["sweep", "resnet18", "-o", str(existing), "--dry-run"]), 2,
                       "already holds a sweep's results", "--resume")
    assert_clean_error(cli_runner.invoke(cli, ["compare", str(tmp_path / "nothing.parquet")]), 2, "not found")
    assert_clean_error(cli_runner.invoke(cli, ["compare", str(bad)]), 2, "expected a results table")


def test_compare_prints_a_table_json_and_writes_markdown_or_csv(cli_runner, tmp_path):
    a = write_report(tmp_path / "ort.json", make_report(samples(10.0, seed=1), target="ort"))
    b = write_report(tmp_path / "ov.json", make_report(samples(7.0, seed=2), target="openvino"))
    r = cli_runner.invoke(cli, ["compare", str(a), str(b), "--by", "target"])
    assert r.exit_code == 0, r.output
    # one run per side: outside the runs' own noise (~), but the between-run variation is unknown, so no star
    assert "openvino / ort" in r.stdout and "x0.700~" in r.stdout and "x0.700*" not in r.stdout
    assert "bootstrap CI of the ratio" in r.stdout and "between-run variation unknown" in r.stdout
    r = cli_runner.invoke(cli, ["compare", str(a), str(b), "--by", "target", "--baseline", "openvino", "--json",
                                "-o", str(tmp_path / "cmp.md")])
    assert r.exit_code == 0, r.output
    result = json.loads(r.stdout)
    assert result["baseline"] == "openvino" and result["rows"][0]["values"]["ort"]["significant"] is True
    assert "| cell | openvino p50_ms | ort p50_ms | ort / openvino |" in (tmp_path / "cmp.md").read_text()
    r = cli_runner.invoke(cli, ["compare", str(a), str(b), "--by", "target", "-o", str(tmp_path / "cmp.csv")])
    assert r.exit_code == 0 and (tmp_path / "cmp.csv").read_text().startswith("model,")
    assert_clean_error(cli_runner.invoke(cli, ["compare", str(a), "-o", str(tmp_path / "cmp.html")]), 2,
                       "write .md or .csv")
    assert files_under(tmp_path) == sorted([a, b, tmp_path / "cmp.md", tmp_path / "cmp.csv"])


def test_peak_runs_first_where_this_deploykit_has_it(tmp_path):
    """deploykit peak runs first where the sweep has bench cells: once per thread count the cells ask for, in the
    sweep's artifact store; a LoadGen-only sweep needs no peak."""
    from deploykit.sweep.run import plan, prelude_commands
    from deploykit.sweep.spec import spec_from

    p = plan(spec_from(("resnet18",), threads=("1,2",), resolution=("64",)), tmp_path / "s")
    assert prelude_commands(p, tmp_path / "m") == [
        ["peak", "--threads", "1", "--models-dir", str(tmp_path / "m")],
        ["peak", "--threads", "2", "--models-dir", str(tmp_path / "m")]]
    assert prelude_commands(plan(spec_from(("resnet18",)), tmp_path / "t"), None) == [["peak"]]
    assert prelude_commands(plan(spec_from(("resnet18",), scenario=("server",)), tmp_path / "u"), None) == []


def test_a_slurm_dry_run_lists_each_jobs_sbatch_options(cli_runner, tmp_path):
    from deploykit.runtimes.base import get_runtime

    study = tmp_path / "fleet.toml"
    study.write_text('[[matrix]]\nmodels = ["resnet18", "deit_tiny"]\ntargets = ["ort", "trt"]\nresolution = 64\n'
                     '[slurm]\npartition = "bench"\nsbatch = ["--account=perf"]\n'
                     '[slurm.targets.trt]\ngres = "gpu:1"\nconstraint = "nvidia"\n')
    out = tmp_path / "s"
    args = ["sweep", "--study", str(study), "-o", str(out), "--dry-run", "--json", "--no-peak", "--cell-timeout", "600"]
    r = cli_runner.invoke(cli, [*args, "--executor", "slurm", "--slurm-sbatch=--qos=high"])
    assert r.exit_code == 0, r.output
    listing = json.loads(r.stdout)
    assert listing["counts"]["run"] == 4  # the nodes decide whether they can run trt, not this machine
    ort, trt = listing["slurm_jobs"]
    assert ort["targets"] == ["ort"] and len(ort["cells"]) == 2 and ort["array"] is True
    assert ort["sbatch"] == ["--partition=bench", "--time=13", "--nodes=1", "--exclusive", "--mem=0",
                             "--account=perf", "--qos=high", "--signal=B:USR2@90"]
    assert "--gres=gpu:1" in trt["sbatch"] and "--constraint=nvidia" in trt["sbatch"]
    if not get_runtime("trt").availability().available:  # locally, trt's cells are skipped here
        local = json.loads(cli_runner.invoke(cli, args).stdout)
        assert local["counts"] == {"run": 2, "skip": 2, "done": 0, "kept": 0} and "slurm_jobs" not in local
    r = cli_runner.invoke(cli, [*args[:5], "--dry-run", "--executor", "slurm", "--slurm-job-per-cell",
                                "--slurm-time-limit", "9"])
    assert r.exit_code == 0, r.output
    assert "slurm job: 1 cell (trt): sbatch --partition=bench --constraint=nvidia --gres=gpu:1 --time=9" in r.stdout
    assert not out.exists()


def test_slurm_settings_errors(cli_runner, tmp_path):
    assert_clean_error(cli_runner.invoke(cli, ["sweep", "resnet18", "--slurm-partition", "x", "--dry-run"]), 2,
                       "--slurm-partition is a setting of the Slurm executor: add --executor slurm")
    assert_clean_error(cli_runner.invoke(cli, ["sweep", "resnet18", "--executor", "slurm", "--cell-timeout", "0",
                                               "--dry-run"]), 2, "needs a time limit per cell")
    assert_clean_error(cli_runner.invoke(cli, ["sweep", "resnet18", "--executor", "slurm", "--slurm-sbatch=--time=5",
                                               "--dry-run"]), 2, "--time is not allowed here")


def test_the_committed_fleet_study_maps_its_targets(cli_runner):
    from tests.conftest import REPO

    r = cli_runner.invoke(cli, ["sweep", "--study", str(REPO / "studies" / "fleet.toml"), "--executor", "slurm",
                                "--dry-run", "--json"])
    assert r.exit_code == 0, r.output
    listing = json.loads(r.stdout)
    assert listing["counts"]["run"] == 18
    jobs = {tuple(j["targets"]): j["sbatch"] for j in listing["slurm_jobs"]}
    assert "--constraint='intel|amd'" in jobs[("ort",)] and "--constraint=intel" in jobs[("openvino",)]
    assert {"--partition=gpu", "--gres=gpu:1", "--constraint=nvidia", "--exclusive", "--time=38"} <= set(jobs[("trt",)])


def test_loadgen_cells_on_the_command_line_and_in_the_committed_serving_study(cli_runner, tmp_path):
    from tests.conftest import REPO

    r = cli_runner.invoke(cli, ["sweep", "resnet18", "--resolution", "64", "--scenario", "latency,server",
                                "--qps", "5", "--qps", "10", "--latency-bound", "50", "--duration", "2",
                                "-o", str(tmp_path / "s"), "--dry-run", "--json"])
    assert r.exit_code == 0, r.output
    cells = json.loads(r.stdout)["cells"]
    assert [(c["cell"], c["scenario"], c["qps"]) for c in cells] == [
        ("resnet18|ort|fp32|b1|r64|tauto", "latency", None),
        ("resnet18|ort|fp32|b1|r64|tauto|server@qps=5", "server", 5.0),
        ("resnet18|ort|fp32|b1|r64|tauto|server@qps=10", "server", 10.0)]
    r = cli_runner.invoke(cli, ["sweep", "resnet18", "--scenario", "server", "--qps", "5,10", "--dry-run"])
    assert r.exit_code == 0 and "server @ 10 QPS" in r.stdout
    assert_clean_error(cli_runner.invoke(cli, ["sweep", "resnet18", "--qps", "5", "--dry-run"]), 2,
                       "qps applies to server cells", "add scenario server")
    assert_clean_error(cli_runner.invoke(cli, ["sweep", "resnet18", "--scenario", "burst", "--dry-run"]), 2,
                       "unknown scenario 'burst'")

    r = cli_runner.invoke(cli, ["sweep", "--study", str(REPO / "studies" / "serving.toml"), "--dry-run", "--json",
                                "-o", str(tmp_path / "serving")])
    assert r.exit_code == 0, r.output
    cells = json.loads(r.stdout)["cells"]
    assert len(cells) == 2 * 2 * (1 + 6)
    assert {c["scenario"] for c in cells} == {"latency", "server"}
    assert sorted({c["qps"] for c in cells if c["qps"]}) == [25.0, 50.0, 100.0, 200.0, 400.0, 800.0]
