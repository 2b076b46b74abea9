"""--parc-impl on export/bench, and a target's declared unsupported ops: bench refuses such a graph before
loading it (exit 3, with the runtime's reason) and `deploykit targets --model` tells ahead of time."""

from __future__ import annotations

import json

import pytest

from tests.conftest import assert_clean_error, files_under
from deploykit.cli import cli
from deploykit.cli.common import model_options
from deploykit.runtimes.base import Runtime, get_runtime


@pytest.fixture(scope="module")
def layer_files(tmp_path_factory):
    """One small ParC-H layer exported with the fft impl (DFT ops) and with the conv impl (none)."""
    import torch

    from deploykit.core.config import ExportConfig
    from deploykit.export.exporter import _torch_export
    from deploykit.models.layers.parc import ParC

    out = {}
    d = tmp_path_factory.mktemp("parc_layer")
    for impl in ("fft", "conv"):
        torch.manual_seed(0)
        m = ParC(4, 8, "H", impl).eval()
        proto = _torch_export(m, torch.randn(1, 4, 8, 8).numpy(), ExportConfig(model="parc_layer", opset=18))
        out[impl] = d / f"parc_{impl}.onnx"
        out[impl].write_bytes(proto.SerializeToString())
    return out


class _NoDft(Runtime):
    name = "no-dft"
    unsupported_ops = {"DFT": "no DFT kernel before 11.2", "com.example.Foo": "custom op"}

    def load(self, model):  # pragma: no cover - never instantiated
        raise NotImplementedError

    def set_input(self, x):  # pragma: no cover
        raise NotImplementedError

    def infer(self):  # pragma: no cover
        raise NotImplementedError

    def outputs(self):  # pragma: no cover
        raise NotImplementedError


def test_unsupported_ops_declaration():
    from deploykit.core.errors import UnavailableError

    assert Runtime.unsupported_ops == {} and get_runtime("ort").graph_unsupported({"DFT", "Conv"}) == {}
    assert _NoDft.graph_unsupported({"Conv", "DFT"}) == {"DFT": "no DFT kernel before 11.2"}
    _NoDft.ensure_supports({"Conv", "MatMul"}, "m")  # nothing to refuse
    with pytest.raises(UnavailableError, match=r"no-dft cannot run m: it has DFT ops \(DFT: no DFT kernel"):
        _NoDft.ensure_supports({"Conv", "DFT"}, "m")


def test_op_types_names_other_domains(layer_files):
    from deploykit.onnxio.files import op_types, load_onnx

    assert "DFT" in op_types(load_onnx(layer_files["fft"]))
    conv_ops = op_types(load_onnx(layer_files["conv"]))
    assert "Conv" in conv_ops and "DFT" not in conv_ops


def test_bench_refuses_a_graph_with_an_op_the_target_declares_unsupported(layer_files, cli_runner, monkeypatch, tmp_path):
    """The real ort target, told (as a GPU target would declare) that it has no DFT: exit 3 before loading,
    the op and the reason in the one error line, no report; the conv graph still runs."""
    monkeypatch.setattr(get_runtime("ort"), "unsupported_ops", {"DFT": "declared unsupported by this test"})
    reports = tmp_path / "reports"
    r = cli_runner.invoke(cli, ["bench", str(layer_files["fft"]), "-t", "ort", "--report-dir", str(reports),
                                "--min-iters", "3", "--min-time", "0", "--warmup", "1"])
    assert_clean_error(r, 3, "cannot run", "DFT", "declared unsupported by this test", alone=False)
    assert files_under(reports) == []
    r = cli_runner.invoke(cli, ["bench", str(layer_files["conv"]), "-t", "ort", "--no-save", "--json",
                                "--min-iters", "3", "--min-time", "0", "--warmup", "1"])
    assert r.exit_code == 0, r.stderr
    (report,) = json.loads(r.stdout)
    assert report["fidelity"]["passed"] and report["timing"]["iterations"] >= 3


def test_targets_tells_ahead_of_time(layer_files, cli_runner, monkeypatch):
    monkeypatch.setattr(get_runtime("ort"), "unsupported_ops", {"DFT": "declared unsupported by this test"})
    r = cli_runner.invoke(cli, ["targets", "--json", "--model", str(layer_files["fft"])])
    assert r.exit_code == 0, r.stderr
    rows = {row["target"]: row for row in json.loads(r.stdout)}
    assert rows["ort"]["unsupported_ops"] == {"DFT": "declared unsupported by this test"}
    assert rows["ort"]["model"] == {"label": "parc_fft.onnx", "runs": False,
                                    "unsupported_ops": {"DFT": "declared unsupported by this test"}}
    r = cli_runner.invoke(cli, ["targets", "--json", "--model", str(layer_files["conv"])])
    assert {row["target"]: row for row in json.loads(r.stdout)}["ort"]["model"]["runs"] is True
    r = cli_runner.invoke(cli, ["targets", "--model", str(layer_files["fft"])])
    assert r.exit_code == 0 and "DFT" in r.stdout


def test_parc_impl_option_maps_to_the_model_option(cli_runner):
    assert model_options(("parc_impl=conv", "x=1"), parc_impl="fft") == (("x", "1"), ("parc_impl", "fft"))
    assert model_options((), parc_impl="matmul", model="parc_net_s") == (("parc_impl", "matmul"),)
    assert model_options((), parc_impl="matmul", model="resnet18") == ()  # bench: only the ParC models get it
    r = cli_runner.invoke(cli, ["bench", "resnet18", "--parc-impl", "fft", "--no-save"])
    assert_clean_error(r, 2, "--parc-impl", "deploykit models --family parc")
    r = cli_runner.invoke(cli, ["export", "resnet18", "--parc-impl", "fft"])
    assert_clean_error(r, 2, "parc_impl")
    r = cli_runner.invoke(cli, ["export", "parc_net_s", "--parc-impl", "winograd"])
    assert r.exit_code == 2 and "winograd" in r.stderr


@pytest.mark.parametrize("args", [
    ["quantize", "resnet18", "--calib-data", "synthetic", "--parc-impl", "fft"],
    ["gate", "resnet18", "--against", "resnet50", "--parc-impl", "fft", "--no-save"],
    ["baseline", "update", "resnet18", "--parc-impl", "matmul", "-o", "x.json"],
])
def test_parc_impl_on_quantize_gate_and_baseline_refuses_a_model_without_parc(cli_runner, args):
    r = cli_runner.invoke(cli, args)
    assert_clean_error(r, 2, "--parc-impl", "deploykit models --family parc")


@pytest.mark.parametrize("cmd", ["quantize", "gate", "baseline update"])
def test_parc_impl_is_offered_with_its_choices(cli_runner, cmd):
    r = cli_runner.invoke(cli, [*cmd.split(), "--help"])
    assert r.exit_code == 0 and "--parc-impl [conv|fft|matmul]" in r.stdout
