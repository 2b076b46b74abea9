"""`deploykit report` on the command line: the default output beside the table, --plots, and one-line errors
(exit 2) for a missing, empty or invalid table and an unknown output format."""

from __future__ import annotations

import pytest

from deploykit.cli import cli
from tests.conftest import assert_clean_error
from tests.results_tables import contract_table, write_table


def test_report_writes_beside_the_sweep_and_the_plots(cli_runner, tmp_path):
    folder = tmp_path / "sweep"
    write_table(contract_table(folder, families=("cnn",), targets=("ort",)), folder)
    r = cli_runner.invoke(cli, ["report", str(folder), "--plots", str(tmp_path / "p"), "--n-boot", "100",
                                "--title", "My <sweep>"])
    assert r.exit_code == 0, r.stderr
    page = (folder / "report.html").read_text(encoding="utf-8")
    assert "<title>My &lt;sweep&gt;</title>" in page
    assert "not drawn: parc_impls" in r.stderr and f"wrote {folder / 'report.html'}" in r.stderr
    assert (tmp_path / "p" / "latency_vs_resolution.svg").is_file()
    assert (tmp_path / "p" / "latency_vs_resolution.png").is_file()


@pytest.mark.parametrize("setup,needle", [
    (lambda d: d / "missing.parquet", "does not exist"),
    (lambda d: d, "holds no results table"),
    (lambda d: _write(d / "empty.csv", "model,target,precision,status\n"), "has no rows"),
    (lambda d: _write(d / "other.csv", "a,b\n1,2\n"), "is not a deploykit results table"),
    (lambda d: _write(d / "results.parquet", "not parquet"), "cannot read results table"),
    (lambda d: _write(d / "notes.txt", "x"), "expected a .parquet or .csv file"),
])
def test_bad_tables_are_one_line_errors(cli_runner, tmp_path, setup, needle):
    r = cli_runner.invoke(cli, ["report", str(setup(tmp_path)), "-o", str(tmp_path / "r.html")])
    assert_clean_error(r, 2, needle)
    assert not (tmp_path / "r.html").exists()


def test_an_unknown_output_format_is_a_one_line_error(cli_runner, tmp_path):
    write_table(contract_table(None, families=("cnn",), targets=("ort",)), tmp_path)
    r = cli_runner.invoke(cli, ["report", str(tmp_path), "-o", str(tmp_path / "r.pdf")])
    assert_clean_error(r, 2, "use a .html or .md file name")


def _write(path, text):
    path.write_text(text)
    return path


def test_report_builds_the_table_from_a_folder_of_bench_reports(cli_runner, tmp_path):
    """A user who ran `deploykit bench` gets a page from its reports folder (as `compare` reads it), beside them."""
    import json

    from tests.unit.test_cli_tables import make_report

    folder = tmp_path / "reports"
    folder.mkdir()
    for i, (model, target, p50) in enumerate([("resnet18", "ort", 3.2), ("resnet18", "openvino", 2.1),
                                              ("deit_tiny", "ort", 4.4)]):
        rep = make_report(model, "cnn", {}, target, p50, seed=i)
        (folder / f"2026-{model}-{target}.json").write_text(json.dumps(rep))
    (folder / "notes.json").write_text('{"not": "a report"}')  # other JSON files are left out
    r = cli_runner.invoke(cli, ["report", str(folder), "--n-boot", "100"])
    assert r.exit_code == 0, r.stderr
    assert "3 cells (3 ok)" in r.stderr
    page = (folder / "report.html").read_text(encoding="utf-8")
    assert "deit_tiny" in page and "openvino" in page
