"""Usage answers that come before any work: a bench with no model, --int8 without calibration data on a target
that is not here, --precision as a fixed choice in gate and baseline update."""

import pytest

from tests.conftest import assert_clean_error
from deploykit.cli import cli
from deploykit.cli.bench_cmd import example_command
from deploykit.runtimes.base import get_runtime


def test_bench_without_a_model_answers_with_a_complete_command(cli_runner):
    r = cli_runner.invoke(cli, ["bench"])
    assert_clean_error(r, 2, "name the model", "'deploykit bench resnet50'", "deploykit models")
    r = cli_runner.invoke(cli, ["bench", "--int8"])
    assert_clean_error(r, 2, "'deploykit bench resnet50 --int8 --calib-data synthetic'")
    assert example_command(["trt"], True, None) == "deploykit bench resnet50 -t trt --int8 --calib-data synthetic"
    assert example_command(["ort", "openvino"], True, "imgs/") == \
        "deploykit bench resnet50 -t ort,openvino --int8 --calib-data imgs/"


@pytest.mark.skipif(get_runtime("trt").availability().available, reason="TensorRT and a GPU are present here")
@pytest.mark.parametrize("args", [["-t", "trt", "--int8"], ["resnet18", "-t", "trt", "--int8"]])
def test_bench_int8_on_a_missing_target_says_the_target_first(cli_runner, args):
    """The example the project is known by: where TensorRT is not, that is the answer (with the install hint),
    not a request for --calib-data or a model."""
    r = cli_runner.invoke(cli, ["bench", *args])
    assert_clean_error(r, 3, "target trt is unavailable", "[trt]'")


def test_bench_int8_without_calibration_data_shows_the_command_with_it(cli_runner):
    r = cli_runner.invoke(cli, ["bench", "resnet18", "--int8"])
    assert_clean_error(r, 2, "--int8 needs --calib-data", "'deploykit bench resnet18 --int8 --calib-data synthetic'")


@pytest.mark.parametrize("args", [["gate", "a.onnx", "--against", "b.onnx"], ["baseline", "update", "resnet18"]])
def test_precision_is_a_fixed_choice_in_gate_and_baseline_update(cli_runner, args):
    r = cli_runner.invoke(cli, [*args, "--precision", "int9"])
    assert_clean_error(r, 2, "--precision", "int9")
    assert "fp32" in r.stderr and "int8" in r.stderr  # the choices are listed


def test_torchs_no_cuda_runtime_note_is_filtered_and_nothing_else(cli_runner):
    """torch.utils.cpp_extension warns "No CUDA runtime is found" on every CPU-only machine with a CUDA toolkit
    folder; the CLI drops that one message and lets the logger's others through."""
    import logging

    logger = logging.getLogger("torch.utils.cpp_extension")
    seen = []

    class Keep(logging.Handler):
        def emit(self, record):
            seen.append(record.getMessage())

    handler = Keep()
    logger.addHandler(handler)
    try:
        assert cli_runner.invoke(cli, ["--version"]).exit_code == 0
        logger.warning("No CUDA runtime is found, using CUDA_HOME='%s'", "/usr/local/cuda")
        logger.warning("something else")
    finally:
        logger.removeHandler(handler)
    assert seen == ["something else"]
    cli_runner.invoke(cli, ["--version"])  # installed once, however often the CLI runs
    assert sum(f.__name__ == "_no_cuda_runtime_note" for f in logger.filters if hasattr(f, "__name__")) == 1
