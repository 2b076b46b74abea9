"""Runtime options are declared by the targets (runtimes/options.py, ort.OrtOptions, cuda.CudaOptions, ...) and
turned into command-line options by deploykit.cli: each target's flags reach bench/gate/baseline, their values
reach the runtime and the report, and a new target is one module."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import click
import pytest

from deploykit.cli import cli
from deploykit.core.config import GRAPH_OPTS
from deploykit.core.errors import UsageError
from deploykit.runtimes.base import TARGETS, get_runtime
from deploykit.runtimes.options import RuntimeOptions
from tests.conftest import assert_clean_error

QUICK = ["--warmup", "1", "--min-iters", "5", "--min-time", "0", "--max-time", "10", "--threads", "1",
         "--energy", "off", "--no-save", "--json"]

# the runtime options a report's settings carry, in this order (the report's contract; new options may only
# be added)
REPORT_KEYS = ["threads", "graph_opt", "device", "precision", "mode", "requests", "streams", "compile", "cuda_graphs",
               "transfers", "cache", "cache_dir"]


def _params(command: click.Command) -> dict[str, click.Parameter]:
    return {opt: p for p in command.params for opt in p.opts}


def test_every_targets_options_are_declared_and_on_bench(cli_runner):
    """Each registered target declares its options (common + its groups), and every one with a flag is an option
    of `deploykit bench` with the declared type, shown in its help."""
    help_text = cli_runner.invoke(cli, ["bench", "--help"], terminal_width=200).output
    bench = _params(cli.commands["bench"])
    names = set()
    for name, cls in TARGETS.items():
        specs = cls.declared_options()
        assert {"threads", "device", "precision", "mode", "cache"} <= {s.name for s in specs}, name
        for spec in specs:
            names.add(spec.name)
            if spec.flag is None:
                continue
            assert spec.flag in help_text, (name, spec.flag)
            param = bench[spec.flag]
            if spec.type is bool:
                assert param.is_flag
            elif spec.choice_list():
                assert list(param.type.choices) == list(spec.choice_list())
            elif spec.min is not None:
                assert param.type.min == spec.min
    # the groups the real targets declare: ort's, the throughput group, the CUDA group, torch's
    assert {"graph_opt", "requests", "streams", "cuda_graphs", "transfers", "compile"} <= names
    ort = {s.name for s in get_runtime("ort").declared_options()}
    assert "graph_opt" in ort and "cuda_graphs" not in ort and "requests" in ort  # ort: concurrent runs
    assert {"cuda_graphs", "transfers", "compile"} <= {s.name for s in get_runtime("torch").declared_options()}


def test_gate_and_baseline_take_the_declared_options():
    """--threads / --graph-opt / --precision of gate and baseline update are the declared options (the same
    type and choices as bench's), with their own defaults where the command says so."""
    bench, gate = _params(cli.commands["bench"]), _params(cli.commands["gate"])
    update = _params(cli.commands["baseline"].commands["update"])
    for params in (bench, gate, update):
        assert list(params["--graph-opt"].type.choices) == list(GRAPH_OPTS)
        assert isinstance(params["--threads"].type, click.IntRange) and params["--threads"].type.min == 1
        assert params["-t"] is params["--target"]
    assert bench["--graph-opt"].default == "all" and gate["--graph-opt"].default is None
    assert update["--graph-opt"].default == "all" and update["--target"].default == "ort"
    assert bench["--target"].default == ("ort",) and gate["--target"].default is None


def test_settings_keep_the_report_keys_and_round_trip():
    opts = RuntimeOptions.from_settings(threads=2, graph_opt="basic", mode="throughput", requests=3, compile=True,
                                        transfers=False, cache=False)
    s = opts.settings()
    assert list(s) == REPORT_KEYS
    assert (s["threads"], s["graph_opt"], s["mode"], s["requests"], s["streams"]) == (2, "basic", "throughput", 3, None)
    assert (s["compile"], s["cuda_graphs"], s["transfers"], s["cache"]) == (True, False, False, False)
    assert RuntimeOptions.from_settings(**s) == opts
    assert RuntimeOptions().settings() == {"threads": None, "graph_opt": "all", "device": None, "precision": None,
                                           "mode": "latency", "requests": None, "streams": None, "compile": False,
                                           "cuda_graphs": False, "transfers": True, "cache": True, "cache_dir": None}
    assert RuntimeOptions(threads=2).settings()["threads"] == 2  # the Python API's plain form


@pytest.mark.parametrize("values,needle", [
    ({"requests": 2}, "--requests/--streams apply to --mode throughput only"),
    ({"graph_opt": "fast"}, "--graph-opt must be disable, basic, extended or all, got 'fast'"),
    ({"threads": 0}, "--threads must be positive"),
    ({"mode": "burst"}, "--mode must be latency or throughput"),
    ({"streams": -1, "mode": "throughput"}, "--streams must be positive"),
])
def test_declared_checks_are_usage_errors(values, needle):
    with pytest.raises(UsageError, match=needle.replace("(", r"\(").replace(")", r"\)")):
        RuntimeOptions.from_settings(**values)


def test_unknown_option_name_is_a_type_error():
    with pytest.raises(TypeError, match="no runtime option 'graph_optimisation'"):
        RuntimeOptions.from_settings(graph_optimisation="all")


def test_the_runtime_reads_its_own_group(resnet18_64):
    """The ort target reads --graph-opt from its group: the optimisation level it gets is the one it runs."""
    rt = get_runtime("ort")(RuntimeOptions.from_settings(threads=1, graph_opt="disable"))
    graph = rt.runtime_graph(resnet18_64.path)
    assert graph["graph_optimization"] == "disable" and graph["convs_with_fused_activation"] == 0
    assert graph["standalone_activations"]["Relu"] == 17  # nothing fused when ONNX Runtime optimises nothing


def test_cli_flags_reach_the_report(cli_runner, resnet18_64):
    """Negated flags (--no-transfers, --no-cache) and a target group's option (--graph-opt) travel from the
    command line to the runtime and into the report's settings, which keep their keys."""
    r = cli_runner.invoke(cli, ["bench", str(resnet18_64.path), *QUICK, "--graph-opt", "extended", "--no-transfers",
                                "--no-cache"])
    assert r.exit_code == 0, r.stderr
    (rep,) = json.loads(r.stdout)
    s = rep["settings"]
    assert [k for k in s if k in REPORT_KEYS] == REPORT_KEYS
    assert (s["graph_opt"], s["transfers"], s["cache"], s["cuda_graphs"], s["threads"]) == ("extended", False, False,
                                                                                           False, 1)
    assert rep["target"]["info"]["graph_optimization"] == "extended"


def test_requests_in_latency_mode_is_still_a_usage_error(cli_runner, resnet18_64):
    r = cli_runner.invoke(cli, ["bench", str(resnet18_64.path), "--requests", "2"])
    assert_clean_error(r, 2, "--requests/--streams apply to --mode throughput only")


NEW_TARGET = '''
"""A target added as one module: ONNX Runtime under another name, with an option group of its own."""

from dataclasses import dataclass

from deploykit.runtimes.base import register_runtime
from deploykit.runtimes.options import TargetOptions, option
from deploykit.runtimes.ort import OrtCpuRuntime, OrtOptions


@dataclass(frozen=True)
class EchoOptions(TargetOptions):
    echo_level: int = option(1, flag="--echo-level", type=int, min=1, show_default=True,
                             help="dk-echo target: a level it reports back.")


@register_runtime("dk-echo")
class EchoRuntime(OrtCpuRuntime):
    description = "test target with an option of its own"
    option_groups = (OrtOptions, EchoOptions)

    def info(self):
        return {**super().info(), "echo_level": self.options.of(EchoOptions).echo_level}
'''

RUN_WITH_EXTRA_TARGETS = ("import sys\nimport deploykit.runtimes as r\nr.__path__.append(sys.argv[1])\n"
                          "from deploykit.cli import cli\ncli.main(sys.argv[2:])\n")


def _with_new_target(tmp_path, *args):
    folder = tmp_path / "more_targets"
    folder.mkdir(exist_ok=True)
    (folder / "dk_echo_target.py").write_text(textwrap.dedent(NEW_TARGET))
    return subprocess.run([sys.executable, "-c", RUN_WITH_EXTRA_TARGETS, str(folder), *args],
                          check=False, capture_output=True, text=True, timeout=300)


def test_a_new_target_is_one_module(tmp_path, resnet18_64):
    """A module found in the runtimes package (here: a folder added to its search path) registers a target
    whose own option shows in bench --help, is validated, reaches the runtime and lands in the report --
    with no edit to cli/, bench/ or a list of targets."""
    help_proc = _with_new_target(tmp_path, "bench", "--help")
    assert help_proc.returncode == 0, help_proc.stderr
    assert "--echo-level" in help_proc.stdout and "dk-echo target: a level it reports back." in help_proc.stdout
    targets = _with_new_target(tmp_path, "targets", "--json")
    assert "dk-echo" in {row["target"] for row in json.loads(targets.stdout)}

    run = _with_new_target(tmp_path, "bench", str(resnet18_64.path), "-t", "dk-echo", "--echo-level", "3", *QUICK)
    assert run.returncode == 0, run.stderr
    (rep,) = json.loads(run.stdout)
    assert rep["target"]["name"] == "dk-echo" and rep["target"]["info"]["echo_level"] == 3
    assert rep["settings"]["echo_level"] == 3 and rep["settings"]["graph_opt"] == "all"

    bad = _with_new_target(tmp_path, "bench", str(resnet18_64.path), "-t", "dk-echo", "--echo-level", "0")
    assert_clean_error(bad, 2, "--echo-level")
