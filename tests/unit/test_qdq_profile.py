"""The int8 Q/DQ profile follows the target (TensorRT-backed targets take signed, symmetric int8 only), in bench's
run specs, sweep cells and specs re-targeted by generic values; a recipe or a file the target cannot run is refused
before anything is exported or quantized, with the flag that fixes it. No TensorRT needed: the rule is a class
attribute of the target and the Q/DQ check is tensorrt_plan's pure logic on a real ONNX graph."""

import numpy as np
import onnx
import pytest

from tests.conftest import assert_clean_error
from tests.unit.test_runtimes_tensorrt_plan import qdq_model
from deploykit.bench.plan import check_qdq_file, check_qdq_profile, check_target
from deploykit.cli import cli
from deploykit.core.config import QuantizeConfig
from deploykit.core.errors import UsageError
from deploykit.runtimes.base import get_runtime
from deploykit.spec.run import RunSpec, read_spec, write_spec
from deploykit.sweep.spec import BenchSettings, Cell

AUTO = QuantizeConfig(calib_data="synthetic", profile=None)


@pytest.mark.parametrize("target,profile", [("ort", "cpu"), ("openvino", "cpu"), ("torch", "cpu"), ("trt", "trt"),
                                            ("ort-trt", "trt")])
def test_the_profile_follows_the_target_when_not_given(target, profile):
    assert get_runtime(target).qdq_profile == profile
    spec = RunSpec(model="resnet18", target=target, precision="int8", quantize=AUTO)
    assert spec.quantize.profile == profile
    assert spec.to_dict()["quantize"]["profile"] == profile  # the spec file says what was built


def test_a_profile_given_is_kept_and_a_followed_one_follows_a_new_target():
    given = RunSpec(model="resnet18", target="ort", precision="int8",
                    quantize=QuantizeConfig(calib_data="synthetic", profile="trt"))
    assert given.quantize.profile == "trt"
    followed = RunSpec(model="resnet18", target="ort", precision="int8", quantize=AUTO)
    assert followed.with_values(target="trt").quantize.profile == "trt"
    assert followed.with_values(target="trt").with_values(target="openvino").quantize.profile == "cpu"


def test_a_sweep_cell_for_trt_int8_quantizes_with_the_trt_profile(tmp_path):
    st = BenchSettings(calib_data="synthetic")
    trt = Cell(model="resnet18", target="trt", precision="int8", resolution=64, settings=st).spec
    ov = Cell(model="resnet18", target="openvino", precision="int8", resolution=64, settings=st).spec
    assert (trt.quantize.profile, ov.quantize.profile) == ("trt", "cpu")
    assert read_spec(write_spec(trt, tmp_path / "spec.json")) == trt  # what the cell's child runs


def test_a_profile_the_target_cannot_run_is_refused_with_the_fix():
    cpu = QuantizeConfig(calib_data="synthetic", profile="cpu")
    with pytest.raises(UsageError) as e:
        check_target(RunSpec(model="resnet18", target="trt", precision="int8", quantize=cpu))
    msg = e.value.one_line()
    print(msg)
    assert "--profile cpu" in msg and "use --profile trt" in msg and "uint8" in msg
    check_qdq_profile("openvino", cpu)  # CPU targets run both profiles
    check_qdq_profile("ort", QuantizeConfig(calib_data="synthetic", profile="trt"))


def test_bench_trt_int8_with_the_cpu_profile_is_refused_before_any_work(cli_runner, tmp_path):
    r = cli_runner.invoke(cli, ["bench", "resnet18", "-t", "trt", "--int8", "--calib-data", "synthetic",
                                "--profile", "cpu", "--models-dir", str(tmp_path / "m")])
    assert_clean_error(r, 2, "use --profile trt", "leave --profile out")
    assert not (tmp_path / "m").exists()  # nothing exported, nothing quantized


def test_a_uint8_qdq_file_is_refused_on_trt_and_taken_elsewhere(tmp_path):
    u8 = tmp_path / "u8.onnx"
    onnx.save(qdq_model(np.uint8, 128), u8)
    with pytest.raises(UsageError) as e:
        check_qdq_file(RunSpec(model=str(u8), target="trt"))
    msg = e.value.one_line()
    print(msg)
    assert "uint8" in msg and "--profile trt" in msg
    check_qdq_file(RunSpec(model=str(u8), target="ort"))
    s8 = tmp_path / "s8.onnx"
    onnx.save(qdq_model(np.int8, 0), s8)
    check_qdq_file(RunSpec(model=str(s8), target="trt"))
