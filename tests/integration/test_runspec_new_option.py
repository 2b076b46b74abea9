"""A target option nobody in sweep/ or gate/ has heard of is sweepable and gateable: a target from another installed
package (an entry point in the group 'deploykit.targets', one module) declares ``--ort-spin on|off`` (ONNX Runtime's
intra-op thread spinning); a real sweep makes one cell per value, each cell's child runs its spec file and the
report reads the setting back from the ONNX Runtime session; a real gate file check sets it by name and the gate
measures with it. Nothing in deploykit is edited for it."""

import json
import os
import textwrap

import pandas as pd
import pytest

from tests.conftest import run_cli
from tests.samples import tiny_onnx

PLUGIN = textwrap.dedent('''
    """A plugin target: ONNX Runtime on the CPU with a switch for its intra-op thread spinning."""
    from dataclasses import dataclass

    from deploykit.runtimes.options import TargetOptions, option
    from deploykit.runtimes.ort import OrtCpuRuntime
    from deploykit.runtimes.registry import register_runtime

    KEY = "session.intra_op.allow_spinning"


    @dataclass(frozen=True)
    class SpinOptions(TargetOptions):
        ort_spin: str = option("on", flag="--ort-spin", choices=("on", "off"),
                               help="ort-spin target: ONNX Runtime intra-op threads spin while waiting (on) or not.")


    @register_runtime("ort-spin")
    class OrtSpinRuntime(OrtCpuRuntime):
        description = "ONNX Runtime CPU with a spinning switch (a plugin target)"
        option_groups = OrtCpuRuntime.option_groups + (SpinOptions,)
        rank = 90

        def load(self, model):
            super().load(model)
            from deploykit.onnxio.session import load_session, session_options

            so = session_options(self._ort, self._threads, self.graph_opt)
            so.add_session_config_entry(KEY, "1" if self.options.of(SpinOptions).ort_spin == "on" else "0")
            self._sess = load_session(self._ort, str(model.path), so, ["CPUExecutionProvider"], str(model.path))

        def info(self):
            return {**super().info(), "spinning": self._sess.get_session_options().get_session_config_entry(KEY)}
''')


@pytest.fixture(scope="module")
def plugin_env(tmp_path_factory):
    """A folder on PYTHONPATH holding the plugin module and its distribution's entry point (as pip installs it)."""
    root = tmp_path_factory.mktemp("plugin")
    (root / "dk_spin_target.py").write_text(PLUGIN)
    dist = root / "dk_spin_target-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: dk-spin-target\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[deploykit.targets]\nort-spin = dk_spin_target\n")
    path = os.pathsep.join(p for p in (str(root), os.environ.get("PYTHONPATH", "")) if p)
    return {"PYTHONPATH": path}


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return tiny_onnx(tmp_path_factory.mktemp("m") / "tiny.onnx", shape=(1, 3, 16, 16))


def test_the_plugin_target_and_its_option_appear_on_bench(plugin_env):
    p = run_cli("bench", "--help", env=plugin_env)
    assert p.returncode == 0, p.stderr
    assert "--ort-spin" in p.stdout
    p = run_cli("targets", env=plugin_env)
    assert "ort-spin" in p.stdout


@pytest.mark.slow
def test_a_new_target_option_is_swept(plugin_env, model, tmp_path):
    study = tmp_path / "spin.toml"
    study.write_text(f'[bench]\nmin_time = 0.1\nmax_time = 5\nmin_iters = 5\nwarmup = 1\n\n'
                     f'[[matrix]]\nmodels = ["{model}"]\ntargets = ["ort-spin"]\nort_spin = ["on", "off"]\n'
                     f'threads = [1]\n')
    out = tmp_path / "sweep"
    p = run_cli("sweep", "--study", str(study), "-o", str(out), "--no-peak", env=plugin_env, cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    table = pd.read_csv(out / "results.csv", keep_default_na=False)
    assert list(table["status"]) == ["ok", "ok"], table[["cell", "status", "reason"]]
    assert sorted(table["target_options"]) == ["ort_spin=off", "ort_spin=on"]
    assert len(set(table["cell"])) == 2
    seen = {}
    for cell in sorted((out / "cells").iterdir()):
        spec = json.loads((cell / "spec.json").read_text())  # what the child ran: its run spec file
        assert spec["target"]["name"] == "ort-spin"
        report = json.loads(next(f for f in cell.glob("*.json") if f.name != "spec.json").read_text())
        asked = spec["target"]["options"].get("ort_spin", "on")  # a spec keeps what differs from the defaults
        assert report["settings"]["ort_spin"] == asked
        seen[asked] = report["target"]["info"]["spinning"]  # read back from the ONNX Runtime session
    assert seen == {"on": "1", "off": "0"}


@pytest.mark.slow
def test_a_new_target_option_is_gated(plugin_env, model, tmp_path):
    gate = tmp_path / "gate.toml"
    gate.write_text(f'version = 1\n[settings]\nmin_blocks = 6\nmax_blocks = 8\nblock_time = 0.02\nblock_iters = 3\n\n'
                    f'[[check]]\nname = "spin off"\nmodel = "{model}"\nagainst = "{model}"\ntarget = "ort-spin"\n'
                    f'threads = 1\nort_spin = "off"\n')
    p = run_cli("gate", "-c", str(gate), "--json", "--no-save", env=plugin_env, cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    (check,) = json.loads(p.stdout)["checks"]
    assert check["error"] is None
    assert check["options"]["ort_spin"] == "off"
    assert check["spec"]["target"] == {"name": "ort-spin", "options": {"threads": 1, "ort_spin": "off"}}
    assert check["target_info"]["spinning"] == "0"
    bad = tmp_path / "bad.toml"
    bad.write_text(gate.read_text().replace('ort_spin = "off"', 'ort_spin = "sideways"'))
    p = run_cli("gate", "-c", str(bad), "--no-save", env=plugin_env, cwd=tmp_path)
    assert p.returncode == 2 and "--ort-spin must be on or off" in p.stderr, p.stderr
