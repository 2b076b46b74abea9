"""`deploykit cache list|prune` on a real folder laid out as the artifact store, and runs on plain ONNX files that
leave nothing in the working directory (the runtimes' cache goes to the user's cache)."""

from __future__ import annotations

import json
import os
import time

from deploykit.cli import cli
from deploykit.cli.specs import cache_dir
from deploykit.export.store import list_store, parse_age, select_prune
from tests.conftest import assert_clean_error

DAY = 86400.0


def make_store(root, now):
    """resnet18 at three resolutions (written 30, 2 and 0 days ago), an orphan file, and the .cache."""
    for i, (res, age) in enumerate(((224, 30), (160, 2), (64, 0))):
        stem = f"fp32_b1_r{res}_op18"
        for name, size in ((f"{stem}.onnx", 1000 * (i + 1)), (f"{stem}.manifest.json", 10),
                           (f"{stem}.ref-b1-s0.npz", 100), (f"{stem}.onnx.data", 5000)):
            f = root / "resnet18" / name
            f.parent.mkdir(parents=True, exist_ok=True)
            f.write_bytes(b"x" * size)
            os.utime(f, (now - age * DAY, now - age * DAY))
    (root / "resnet18" / "stray.onnx").write_bytes(b"y" * 7)
    blob = root / ".cache" / "openvino" / "abc" / "1.blob"
    blob.parent.mkdir(parents=True)
    blob.write_bytes(b"z" * 300)
    os.utime(blob, (now - 40 * DAY, now - 40 * DAY))


def test_list_groups_each_variant_with_its_files(tmp_path):
    now = time.time()
    make_store(tmp_path, now)
    entries = list_store(tmp_path)
    named = {(e.model, e.variant): e for e in entries}
    v = named[("resnet18", "fp32_b1_r224_op18")]
    assert len(v.files) == 4 and v.bytes == 1000 + 10 + 100 + 5000 and v.managed
    assert not named[("resnet18", "stray")].managed
    assert named[(".cache", "openvino")].bytes == 300
    assert [e.variant for e in entries if e.model == "resnet18" and e.managed] == \
        ["fp32_b1_r64_op18", "fp32_b1_r160_op18", "fp32_b1_r224_op18"]  # newest first


def test_prune_selects_by_age_and_by_count(tmp_path):
    now = time.time()
    make_store(tmp_path, now)
    entries = list_store(tmp_path)
    old = {(e.model, e.variant) for e in select_prune(entries, older_than_s=7 * DAY, now=now)}
    assert old == {("resnet18", "fp32_b1_r224_op18"), (".cache", "openvino")}
    keep1 = {(e.model, e.variant) for e in select_prune(entries, keep=1, now=now)}
    assert keep1 == {("resnet18", "fp32_b1_r224_op18"), ("resnet18", "fp32_b1_r160_op18")}  # the stray: by age
    assert parse_age("12h") == 12 * 3600 and parse_age("3") == 3 * DAY


def test_cache_prune_dry_run_then_prune(cli_runner, tmp_path):
    now = time.time()
    make_store(tmp_path, now)
    before = sum(e.bytes for e in list_store(tmp_path))
    r = cli_runner.invoke(cli, ["cache", "prune", "--models-dir", str(tmp_path), "--older-than", "7d", "--dry-run",
                                "--json"])
    assert r.exit_code == 0, r.stderr
    assert json.loads(r.stdout)["bytes"] == 6110 + 300
    assert sum(e.bytes for e in list_store(tmp_path)) == before  # nothing removed
    r = cli_runner.invoke(cli, ["cache", "prune", "--models-dir", str(tmp_path), "--older-than", "7d"])
    assert r.exit_code == 0, r.stderr
    assert "freed 6.3 kB (2 of 5 entries)" in r.stderr
    assert not (tmp_path / ".cache").exists()  # emptied folders go too
    assert {e.variant for e in list_store(tmp_path)} == {"fp32_b1_r160_op18", "fp32_b1_r64_op18", "stray"}
    r = cli_runner.invoke(cli, ["cache", "list", "--models-dir", str(tmp_path)], env={"COLUMNS": "80"})
    assert r.exit_code == 0 and "fp32_b1_r160_op18" in r.stdout and "3 entries" in r.stdout
    assert_clean_error(cli_runner.invoke(cli, ["cache", "prune", "--models-dir", str(tmp_path)]), 2,
                       "--older-than AGE, --keep N or --all")


def test_a_run_on_plain_onnx_files_keeps_its_cache_out_of_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DEPLOYKIT_MODELS", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir(["x.onnx"], None, False) == tmp_path / "xdg" / "deploykit"
    assert str(cache_dir(["resnet18"], None, False)) == os.path.join("models", ".cache")  # a registry model: store
    assert str(cache_dir(["x.onnx"], None, True)) == os.path.join("models", ".cache")  # an int8 build: store
    (tmp_path / "models").mkdir()
    assert str(cache_dir(["x.onnx"], None, False)) == os.path.join("models", ".cache")  # a store here: used
