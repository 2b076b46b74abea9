"""Piped output, as in a CI log: every command with --json prints only JSON on stdout (progress bars, library
loggers and runtime chatter go to stderr), and export / quantize / bench print a line per stage on stderr.
Real subprocesses (stdout and stderr are pipes, not terminals), tiny models: ResNet-18 at 64 px."""

from __future__ import annotations

import json
from pathlib import Path

import click
import pytest

from deploykit.cli import cli
from tests.conftest import run_cli

pytestmark = pytest.mark.slow


def json_commands(group: click.Group = cli, prefix: str = "") -> set[str]:
    """Every command (``baseline update`` for a subcommand) that has a --json option."""
    out = set()
    for name, cmd in group.commands.items():
        if isinstance(cmd, click.Group):
            out |= json_commands(cmd, f"{prefix}{name} ")
        elif any("--json" in getattr(p, "opts", ()) for p in cmd.params):
            out.add(prefix + name)
    return out


def test_every_json_command_prints_only_json_on_stdout(tmp_path):
    pytest.importorskip("nncf", reason="nncf is not installed (pip install -e '.[openvino]')")
    env = {"DEPLOYKIT_MODELS": str(tmp_path / "models"), "DEPLOYKIT_REPORTS": str(tmp_path / "reports")}
    ran: dict[str, object] = {}

    def run(name: str, *args: str):
        p = run_cli(*name.split(), *args, "--json", env=env)
        assert p.returncode == 0, f"{name}: exit {p.returncode}\n{p.stderr}"
        try:
            ran[name] = json.loads(p.stdout)
        except json.JSONDecodeError as exc:
            pytest.fail(f"{name} --json: stdout is not JSON ({exc}); stdout starts {p.stdout[:300]!r}")
        assert "Traceback" not in p.stderr and "No CUDA runtime is found" not in p.stderr, p.stderr
        return p

    p = run("export", "resnet18", "--resolution", "64")
    onnx = ran["export"]["path"]
    for stage in ("building resnet18", "exporting to ONNX", "verifying in ONNX Runtime"):  # a line per stage
        assert stage in p.stderr, p.stderr
    p = run("quantize", "resnet18", "--resolution", "64", "--quantizer", "nncf", "--calib-data", "synthetic",
            "--calib-size", "8", "--fidelity-samples", "4")
    q = ran["quantize"]
    assert q["path"].endswith(".xml") and "calibrating on 8 inputs" in p.stderr, p.stderr
    xml = tmp_path / "models" / "resnet18" / q["path"].rsplit("/", 1)[-1]
    assert q["manifest"]["bytes"] == xml.stat().st_size + xml.with_suffix(".bin").stat().st_size  # .xml + .bin
    run("fuse", onnx, "-o", str(tmp_path / "fused.onnx"))
    run("inspect", onnx)
    p = run("bench", onnx, "--no-save", "--warmup", "1", "--min-iters", "3", "--min-time", "0", "--threads", "1",
            "--energy", "off")
    assert [r["model"]["label"] for r in ran["bench"]] == ["resnet18"] and "measuring resnet18 on ort" in p.stderr
    run("targets")
    run("models", "--family", "parc")
    run("gate", onnx, "--against", onnx, "--no-save", "--threads", "1", "--tolerance", "50%", "--min-blocks", "6",
        "--max-blocks", "6", "--block-time", "0.02", "--block-iters", "2")
    run("peak", "--quick", "--threads", "1", "-t", "ort")
    sweep_dir = tmp_path / "sweep"
    run("sweep", onnx, "-t", "ort", "--threads", "1", "--min-time", "0", "--min-iters", "3", "--warmup", "1",
        "--no-peak", "-o", str(sweep_dir))
    assert [r["status"] for r in ran["sweep"]["rows"]] == ["ok"], ran["sweep"]
    run("compare", str(sweep_dir), str(sweep_dir))
    (spec_file,) = sweep_dir.glob("cells/*/spec.json")  # the cell's run spec, run again by hand
    run("run", str(spec_file), "--no-save")
    assert ran["run"][0]["run_spec"] == json.loads(spec_file.read_text())  # a latency spec: bench's list
    run("tune", onnx, "-t", "ort", "--threads", "1", "--budget", "40s", "--calib-method", "minmax", "--calib-size",
        "8", "-o", str(tmp_path / "tune"))
    assert ran["tune"]["winner"] is not None and ran["tune"]["budget_s"] == 40
    run("explain", onnx, "--b", "precision=int8", "-t", "ort", "--threads", "1", "--calib-data", "synthetic",
        "--calib-size", "8", "--iterations", "3")
    e = ran["explain"]
    assert sum(e["buckets"].values()) == pytest.approx(e["delta_ms"], abs=1e-6), e["buckets"]
    run("loadgen", onnx, "-t", "ort", "--scenario", "singlestream", "--duration", "0.3", "--threads", "1",
        "--calibration-time", "0.2", "--no-save")
    run("cache list")
    assert any(e["model"] == "resnet18" and e["manifest"] for e in ran["cache list"]["entries"]), ran["cache list"]
    run("cache prune", "--keep", "0", "--dry-run")
    assert ran["cache prune"]["bytes"] > 0 and Path(onnx).is_file()  # a dry run removes nothing
    store = tmp_path / "history.sqlite"
    p = run_cli("history", "import", str(sweep_dir), "--history", str(store), env=env)
    assert p.returncode == 0, p.stderr
    run("history show", "--history", str(store))
    digits = tmp_path / "digits"
    run("data digits", "-o", str(digits), "--size", "32")
    assert ran["data digits"]["counts"] == {"train": 1438, "val": 359}
    run("data photos", "-o", str(tmp_path / "photos"), "--count", "2", "--size", "16")
    run("train", "resnet18", "--data", str(digits), "--resolution", "32", "--epochs", "1", "--threads", "1",
        "-o", str(tmp_path / "r18.pt"))
    assert ran["train"]["classes"] == [str(c) for c in range(10)]
    # bisect --json needs a git history of the model: tests/integration/test_history_bisect.py reads its JSON
    assert set(ran) | {"bisect"} == json_commands(), "a command with --json is not covered here"


def test_piped_bench_says_when_the_min_iters_floor_extends_the_run(tmp_path, resnet18_64):
    """A stop rule the user can follow in a log: the progress line states it, and when --min-time is reached
    with fewer than --min-iters iterations a line says the run goes on and for how long."""
    p = run_cli("bench", str(resnet18_64.path), "--no-save", "--threads", "1", "--warmup", "0", "--min-time", "0.05",
                "--min-iters", "400", "--max-time", "30", "--energy", "off",
                env={"DEPLOYKIT_REPORTS": str(tmp_path)})
    assert p.returncode == 0, p.stderr
    assert "then 0.05 s, past that only until 400 iterations (--min-iters), at most 30 s" in p.stderr
    assert "--min-time 0.05 s reached after" in p.stderr and "continuing to 400 (--min-iters" in p.stderr
    assert "rest on fewer than 10 samples" not in p.stderr  # no always-on warning about tail percentiles
    assert "iters" in p.stdout and "resnet18" in p.stdout
