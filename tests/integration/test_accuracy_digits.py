"""The whole accuracy path on real images, offline: scikit-learn's handwritten digits written as a folder, a real
ResNet-18 trained on the train split, exported, quantized int8 (calibrated on the train split only), and
benchmarked with --eval-data on the held-out val split: top-1 on the runtime that runs each artifact, and the int8
drop against fp32 paired image by image. Then a runtime that computes something else in the timed loop than what
was checked (a plugin target) is caught."""

import json
import os
import textwrap

import pytest

from tests.conftest import run_cli, train_on_digits

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Digits at 32 px and a ResNet-18 trained on them for one epoch (~75% val top-1; ~25 s on 2 quiet cores)."""
    root = tmp_path_factory.mktemp("acc")
    data, desc = train_on_digits(root, epochs=1)
    return root, data, desc


def test_training_learns_and_the_checkpoint_records_it(trained):
    _, data, desc = trained
    assert desc["classes"] == [str(c) for c in range(10)]
    assert desc["val_top1_fp32_pytorch"] > 0.6, desc  # chance is 0.1
    split = json.loads((data / "dataset.json").read_text())["split"]
    assert desc["train_images"] == len(split["train"]) and desc["val_images"] == len(split["val"])


def test_bench_measures_accuracy_on_the_runtime_and_the_int8_drop(trained):
    root, data, desc = trained
    env = {"DEPLOYKIT_MODELS": str(root / "models"), "DEPLOYKIT_REPORTS": str(root / "reports")}
    common = ["resnet18", "--weights", str(root / "r18.pt"), "--resolution", "32", "--min-time", "0.2",
              "--warmup", "2", "--threads", "2", "--energy", "off", "--eval-data", str(data / "val"), "--json",
              "--no-save"]
    p = run_cli("bench", *common, "-t", "ort,openvino", "--precision", "fp32", env=env)
    assert p.returncode == 0, p.stderr
    fp32 = json.loads(p.stdout)
    fp32 = fp32 if isinstance(fp32, list) else [fp32]
    for r in fp32:
        acc = r["accuracy"]
        assert acc["n"] == desc["val_images"] and acc["runtime"] == r["target"]["name"]
        # the exported file on ORT / OpenVINO agrees with PyTorch's evaluation of the same weights
        assert acc["top1"] == pytest.approx(desc["val_top1_fp32_pytorch"], abs=0.02)
        assert acc["top1_ci95"][0] <= acc["top1"] <= acc["top1_ci95"][1]
        assert r["fidelity"]["timed_outputs"]["passed"] is True
    p = run_cli("bench", *common, "-t", "ort", "--int8", "--calib-data", str(data / "train"), "--calib-size", "64",
                env=env)
    assert p.returncode == 0, p.stderr
    (int8,) = (lambda v: v if isinstance(v, list) else [v])(json.loads(p.stdout))
    acc = int8["accuracy"]
    assert acc["fp32"]["top1"] == pytest.approx(fp32[0]["accuracy"]["top1"], abs=1e-9)  # the same fp32 file
    paired = acc["vs_fp32"]
    assert paired["drop"] == pytest.approx(acc["fp32"]["top1"] - acc["top1"])
    assert paired["ci95"][0] <= paired["drop"] <= paired["ci95"][1] and 0 <= paired["mcnemar_p"] <= 1
    assert abs(paired["drop"]) < 0.1  # int8 of a CNN keeps its accuracy here
    calib = int8["quantization"] if "quantization" in int8 else {}
    assert str(data / "val") not in json.dumps(calib)  # the held-out split never calibrated it


def test_a_held_out_set_holding_calibration_images_is_refused_by_content(trained):
    """Copies of calibration images (renamed, in another folder) given as --eval-data: one line, exit 2."""
    root, data, _ = trained
    env = {"DEPLOYKIT_MODELS": str(root / "models"), "DEPLOYKIT_REPORTS": str(root / "reports")}
    leaky = root / "leaky"
    for cls in ("3", "7"):
        (leaky / cls).mkdir(parents=True)
        for f in sorted((data / "train" / cls).iterdir())[:20]:
            (leaky / cls / f"copy_{f.name}").write_bytes(f.read_bytes())
    p = run_cli("bench", "resnet18", "--weights", str(root / "r18.pt"), "--resolution", "32", "--min-time", "0.2",
                "--warmup", "2", "--threads", "2", "--energy", "off", "--eval-data", str(leaky), "--json",
                "--no-save", "-t", "ort", "--int8", "--calib-data", str(data / "train"), "--calib-size", "64",
                env=env)
    assert p.returncode == 2 and "calibrated this int8 model" in p.stderr, p.stderr
    errors = [ln for ln in p.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and "calibrated this int8 model" in errors[0] and "Traceback" not in p.stderr


PLUGIN = textwrap.dedent('''
    """A target that computes the checked first inference, then skips the work in the timed loop."""
    from deploykit.runtimes.ort import OrtCpuRuntime
    from deploykit.runtimes.registry import register_runtime


    @register_runtime("ort-lazy")
    class LazyOrt(OrtCpuRuntime):
        description = "ONNX Runtime CPU that stops computing after the first inference (a test plugin)"
        rank = 95

        def load(self, model):
            super().load(model)
            self._calls = 0

        def infer(self):
            self._calls += 1
            if self._calls == 1:
                super().infer()

        def outputs(self):
            outs = super().outputs()
            return outs if self._calls == 1 else [o * 0 for o in outs]
''')


def test_a_runtime_fast_because_it_computes_something_else_is_caught(tmp_path):
    from tests.samples import tiny_onnx

    (tmp_path / "dk_lazy_target.py").write_text(PLUGIN)
    dist = tmp_path / "dk_lazy_target-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: dk-lazy-target\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[deploykit.targets]\nort-lazy = dk_lazy_target\n")
    env = {"PYTHONPATH": os.pathsep.join(p for p in (str(tmp_path), os.environ.get("PYTHONPATH", "")) if p)}
    model = tiny_onnx(tmp_path / "tiny.onnx", shape=(1, 3, 16, 16))
    args = [str(model), "--min-time", "0.1", "--warmup", "1", "--energy", "off", "--json", "--no-save"]
    p = run_cli("bench", *args, "-t", "ort-lazy", env=env)
    assert p.returncode == 0, p.stderr
    (r,) = (lambda v: v if isinstance(v, list) else [v])(json.loads(p.stdout))
    assert r["fidelity"]["timed_outputs"]["passed"] is False and r["fidelity"]["passed"] is False
    assert any("differs from the evaluated output" in w for w in r["warnings"])
    honest = run_cli("bench", *args, "-t", "ort", env=env)
    (h,) = (lambda v: v if isinstance(v, list) else [v])(json.loads(honest.stdout))
    assert h["fidelity"]["timed_outputs"]["passed"] is True


def test_nncf_int8_is_evaluated_on_openvino_against_its_fp32_source(trained):
    """bench --quantizer nncf: the IR NNCF writes runs (and is evaluated) on OpenVINO, paired with the fp32 file it
    was quantized from; a target that cannot read IR is refused before anything is built."""
    root, data, desc = trained
    env = {"DEPLOYKIT_MODELS": str(root / "models"), "DEPLOYKIT_REPORTS": str(root / "reports")}
    common = ["resnet18", "--weights", str(root / "r18.pt"), "--resolution", "32", "--min-time", "0.2",
              "--warmup", "2", "--threads", "2", "--energy", "off", "--eval-data", str(data / "val"), "--json",
              "--no-save", "--int8", "--quantizer", "nncf", "--calib-data", str(data / "train"), "--calib-size", "64"]
    p = run_cli("bench", *common, "-t", "ort", env=env)
    assert p.returncode == 2 and "--quantizer nncf writes OpenVINO IR, which target ort does not read" in p.stderr
    assert "statistics" not in p.stderr.lower()  # refused at plan time: no calibration ran
    p = run_cli("bench", *common, "-t", "openvino", env=env)
    assert p.returncode == 0, p.stderr
    (r,) = (lambda v: v if isinstance(v, list) else [v])(json.loads(p.stdout))
    assert r["model"]["path"].endswith(".xml") and r["quantization"]["quantizer"] == "nncf"
    assert r["run_spec"]["quantize"]["quantizer"] == "nncf"
    acc = r["accuracy"]
    assert acc["runtime"] == "openvino" and acc["n"] == desc["val_images"]
    assert acc["fp32"]["path"].endswith(".onnx") and abs(acc["vs_fp32"]["drop"]) < 0.1
