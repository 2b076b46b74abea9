"""`deploykit loadgen` refuses what cannot run with one line and an exit code, before any model work (an export
here would fail the test: tests/conftest.py)."""

from __future__ import annotations

import sys

import pytest

from deploykit.cli import cli
from tests.conftest import assert_clean_error

BASE = ["loadgen", "resnet18", "--resolution", "64"]


@pytest.mark.parametrize("args,code,needle", [
    (["--scenario", "bogus"], 2, "'bogus' is not one of"),
    ([], 2, "missing option '--scenario'"),
    (["--scenario", "server", "--qps", "0"], 2, "--qps"),
    (["--scenario", "server", "--qps", "-5"], 2, "--qps"),
    (["--scenario", "server", "--latency-bound", "0"], 2, "--latency-bound"),
    (["--scenario", "singlestream", "--qps", "10"], 2, "--qps applies to --scenario server"),
    (["--scenario", "offline", "--latency-bound", "50"], 2, "--latency-bound applies to --scenario server only"),
    (["--scenario", "server", "--percentile", "100"], 2, "--percentile"),
    (["--scenario", "offline", "--find-peak"], 2, "does not apply to --scenario offline"),
    (["--scenario", "singlestream", "--requests", "2"], 2, "singlestream runs one request at a time"),
    (["--scenario", "server", "-t", "torch"], 2, "target torch cannot keep requests in flight"),
    (["--scenario", "server", "-t", "tensorrrt"], 2, "did you mean"),
    (["--scenario", "server", "-t", "ort", "--streams", "2"], 2, "--streams is an OpenVINO setting"),
    (["--scenario", "server", "--user-conf", "/no/such/user.conf"], 2, "user.conf not found"),
])
def test_errors_are_one_line(cli_runner, tmp_path, args, code, needle):
    res = cli_runner.invoke(cli, [*BASE, *args, "--report-dir", str(tmp_path / "r")])
    assert_clean_error(res, code, needle)
    assert not (tmp_path / "r").exists()


def test_a_user_conf_loadgen_would_reject(cli_runner, tmp_path):
    conf = tmp_path / "user.conf"
    conf.write_text("*.Server.target_qps = 10\n*.Server.min_duration = soon\n")
    assert_clean_error(cli_runner.invoke(cli, [*BASE, "--scenario", "server", "--user-conf", str(conf)]), 2,
                       "line 2: LoadGen needs a number after '='")


def test_without_loadgen_installed_it_names_the_extra(cli_runner, monkeypatch):
    monkeypatch.setitem(sys.modules, "mlperf_loadgen", None)  # what an install without the extra looks like
    line = assert_clean_error(cli_runner.invoke(cli, [*BASE, "--scenario", "server"]), 3, "mlperf_loadgen")
    assert "[loadgen]'" in line and "pip install" in line  # 'deploykit[loadgen]' or, in a checkout, -e '.[loadgen]'
