"""Every command's table through cli/tables at an 80-column terminal and piped into a log: no cell cut to "…", no
line past 80 columns on the terminal, left-out columns named, no trailing spaces in a log; ``deploykit --help``'s
command summaries whole; bench's warnings said once, under the table."""

from __future__ import annotations

import re

import pytest

from deploykit.cli import cli
from deploykit.cli.bench_cmd import warning_lines
from tests.unit.test_gate_outputs import make_result

ANSI = re.compile(r"\x1b\[[0-9;?]*[a-zA-Z]")
TERMINAL_80 = {"FORCE_COLOR": "1", "COLUMNS": "80"}  # rich treats the output as an 80-column terminal
PIPED = {"COLUMNS": "80"}  # not a terminal: a log


def check_80(text: str) -> list[str]:
    lines = ANSI.sub("", text).splitlines()
    assert lines and "…" not in text
    assert max(len(x) for x in lines) <= 80, "\n".join(x for x in lines if len(x) > 80)
    return lines


def check_piped(text: str) -> list[str]:
    lines = text.splitlines()
    assert lines and "…" not in text and "\x1b[" not in text
    assert not [x for x in lines if x != x.rstrip()], "trailing spaces in a log"
    return lines


@pytest.mark.parametrize("env,check", [(TERMINAL_80, check_80), (PIPED, check_piped)])
def test_targets_at_80_columns_and_piped(cli_runner, env, check):
    r = cli_runner.invoke(cli, ["targets"], env=env)
    assert r.exit_code == 0, r.stderr
    text = ANSI.sub("", r.stdout)
    check(r.stdout)
    for name in ("ort", "openvino", "trt", "ort-cuda", "ort-trt", "torch"):
        assert re.search(rf"^{re.escape(name)}\s+(available|unavailable)\b", text, re.M), name
    assert "unavai…" not in text and "ort-cu…" not in text
    if env is TERMINAL_80:
        assert "not shown at 80 columns:" in text and "--json shows them" in text


@pytest.mark.parametrize("env,check", [(TERMINAL_80, check_80), (PIPED, check_piped)])
def test_gate_table_at_80_columns_and_piped(capsys, monkeypatch, env, check):
    from deploykit.cli.gate_cmd import print_table

    for k, v in env.items():
        monkeypatch.setenv(k, v)
    result = make_result()
    print_table(result)
    out = capsys.readouterr().out
    text = "\n".join(check(out))
    for c in result.checks:
        for d in c.decisions:
            assert f"{d.estimate:+.1%}" in text and d.outcome in text  # every change whole, every outcome
    assert "ERROR" in text


def loadgen_report() -> dict:
    lat = {"p50": 12.345, "p90": 20.5, "p99": 37.0421, "p99.9": 41.25, "max": 44.5}
    return {"model": {"label": "resnet18"}, "target": {"name": "openvino", "precision": "fp32"},
            "settings": {"requests_in_flight": 2}, "throughput": {"items_per_s": 18.31},
            "loadgen": {"version": "5.1", "scenario": "Server", "mode": "PerformanceOnly", "valid": True,
                        "reasons": [], "latency_ms": lat, "qps_scheduled": 18.514, "qps_achieved": 18.39,
                        "query_count": 662, "target": {"percentile": 99.0, "latency_bound_ms": 50.0,
                                                       "latency_at_percentile_ms": 37.0421},
                        "early_stopping": {"estimate_ms": 38.5, "percentile": 99.0}}}


@pytest.mark.parametrize("env,check", [(TERMINAL_80, check_80), (PIPED, check_piped)])
def test_loadgen_summary_at_80_columns_and_piped(capsys, monkeypatch, env, check):
    from deploykit.cli.loadgen_cmd import print_summary

    for k, v in env.items():
        monkeypatch.setenv(k, v)
    print_summary(loadgen_report())
    text = "\n".join(check(capsys.readouterr().out))
    assert "37.042" in text and "12.345" in text  # p99 and p50 whole


def peak_entry() -> dict:
    shapes = ["784x1152x3136", "197x768x3072", "3136x64x576", "1024x1024x1024", "49x2048x4608"]
    kernels = [{"target": t, "kernel": k, "precision": p,
                "shapes": [{"shape": s, "gflops": 123.456 + i} for i, s in enumerate(shapes)]}
               for t, k, p in (("ort", "MatMul", "fp32"), ("ort", "MatMulInteger u8s8", "int8"),
                               ("openvino", "MatMul (hint f32)", "fp32"))]
    kernels.append({"target": "openvino", "kernel": "MatMul (hint bf16)", "precision": "bf16",
                    "skipped": "this CPU has no bf16 instructions", "shapes": []})
    theo = {"fp32": {"gflops": 1234.5, "cores": 16, "clock_mhz": 2600, "ops_per_cycle": 32, "basis": "AVX2 FMA",
                     "clock_source": "/proc/cpuinfo"}}
    return {"threads": 16, "measured_at": "2026-12-07T16:14:00", "quick": False, "theoretical": theo,
            "best": {"fp32": {"gflops": 1111.1, "target": "ort", "kernel": "MatMul", "shape": "784x1152x3136"},
                     "int8": {"gflops": 2222.2, "target": "ort", "kernel": "MatMulInteger u8s8",
                              "shape": "3136x64x576"}},
            "shapes": [{"shape": s} for s in shapes], "kernels": kernels,
            "timing": {"method": "bench timer"}, "note": "best over kernels", "warnings": []}


@pytest.mark.parametrize("env,check", [(TERMINAL_80, check_80), (PIPED, check_piped)])
def test_peak_tables_at_80_columns_and_piped(capsys, monkeypatch, env, check):
    from deploykit.cli.peak_cmd import _print

    for k, v in env.items():
        monkeypatch.setenv(k, v)
    _print(peak_entry())
    text = "\n".join(check(capsys.readouterr().out))
    for s in ("784x1152x3136", "1024x1024x1024", "49x2048x4608"):
        assert s in text  # every shape whole (one row per kernel and shape)
    assert "1111.1 GFLOP/s" in text and "127.5" in text


def test_help_summaries_are_whole_sentences_at_80_columns(cli_runner):
    r = cli_runner.invoke(cli, ["--help"], env={"COLUMNS": "80"}, terminal_width=80)
    assert r.exit_code == 0
    cmds = r.stdout.split("Commands:", 1)[1].strip().splitlines()
    assert len(cmds) == len(cli.commands)
    for line in cmds:
        assert len(line) <= 80 and not line.rstrip().endswith("..."), line
        assert line.rstrip().endswith("."), line


def test_bench_warnings_are_said_once():
    energy = "energy: unavailable (rapl: /sys/class/powercap does not exist)"
    cv = ("high variation: CV {} > 5% (noisy machine? other load, frequency scaling, too few threads pinned); "
          "compare medians with their confidence intervals")
    runs = [(f"{m} on {t}", [cv.format(f"{10 + i}.0%"), energy] + (["only 3 iterations"] if i == 0 else []))
            for i, (m, t) in enumerate((m, t) for m in ("resnet18", "mobilenet_v2", "deit_tiny")
                                        for t in ("ort", "openvino"))]
    lines = warning_lines(runs)
    print("\n".join(lines))
    assert len(lines) == 3
    assert lines[0].startswith("high variation (CV > 5%) in 6 of 6 runs: resnet18 on ort 10.0%,")
    assert "deit_tiny on openvino 15.0%" in lines[0]
    assert lines[1] == f"{energy} [all 6 runs]"
    assert lines[2] == "only 3 iterations [resnet18 on ort]"
    assert warning_lines([("resnet18 on ort", [energy, energy])]) == [energy]  # one run: said as is, once


def test_the_fingerprint_mismatch_names_the_cpu_flags_not_hashes():
    from deploykit.bench.fingerprint import mismatches

    base = {"cpu": {"model": "Xeon", "flags_sha256": "ecfefe0f" * 8, "isa": ["avx2", "avx512f", "avx512_vnni"]},
            "threads": 4, "packages": {}}
    here = {"cpu": {"model": "Xeon", "flags_sha256": "fb86c92f" * 8, "isa": ["avx2"]}, "threads": 4, "packages": {}}
    (line,) = mismatches(base, here)
    assert line == "isa: only the first has avx512_vnni, avx512f; only the second has nothing extra"
    assert "ecfefe0f" not in line
    same_tracked = {**here, "cpu": {**here["cpu"], "flags_sha256": "0" * 64}}
    assert "not in the extensions deploykit tracks (avx2 on both)" in mismatches(here, same_tracked)[0]


def test_the_bench_caption_says_what_a_dash_needs_and_why_items_per_s_differs():
    from deploykit.cli.bench_cmd import table_caption
    from tests.unit.test_cli_tables import make_report

    rep = make_report("resnet18", "cnn", {}, "ort", 20.0, n=300)  # p90 supported, p99 not
    cap = table_caption([rep])
    assert "p99 '-': fewer than 10 samples beyond it (p99 needs 1000 iterations: --min-iters 1000 shows it" in cap
    assert "items/s" not in cap  # 1000 / mean within 10% of 1000 / p50 here
    rep["throughput"]["items_per_s"] = 1e3 / 20.0 * 0.7  # slow outliers pull the mean up
    assert "items/s = batch x iterations / wall time" in table_caption([rep])


def test_sweep_dry_run_says_how_long_it_may_take(cli_runner, tmp_path):
    import json

    args = ["sweep", "resnet18", "deit_tiny", "-t", "ort,openvino", "--resolution", "64", "--min-time", "1",
            "--max-time", "10", "--dry-run", "--no-peak", "-o", str(tmp_path / "s")]
    r = cli_runner.invoke(cli, [*args, "--json"])
    assert r.exit_code == 0, r.stderr
    est = json.loads(r.stdout)["estimate"]
    assert (est["cells"], est["exports"], est["int8_builds"]) == (4, 2, 0)
    assert est["low_s"] == 4 * (1 + 5) and est["high_s"] == 4 * (10 + 5) + 2 * 20
    r = cli_runner.invoke(cli, args, env=PIPED)
    assert "estimated time: 24 s to 2 min -- an estimate: 4 cells x" in r.stdout
    check_piped(r.stdout)


def test_an_unknown_pass_lists_the_passes(cli_runner, tmp_path):
    from tests.conftest import assert_clean_error
    from tests.unit.test_runtimes_tensorrt_plan import qdq_model

    import onnx

    f = tmp_path / "m.onnx"
    onnx.save(qdq_model(), f)
    r = cli_runner.invoke(cli, ["fuse", str(f), "--pass", "relu", "-o", str(tmp_path / "o.onnx")])
    assert_clean_error(r, 2, "unknown pass 'relu' (known passes: identity, fold-bn)")
