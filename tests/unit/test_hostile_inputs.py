"""Hostile and careless inputs that need no real model (a tiny hand-built ONNX graph at most): each is one clean
line (or is handled), never a traceback, a hang or a write outside where it belongs. The cases with real models
are in tests/integration/test_hostile_inputs_real.py; benchmarks/hardening_cases.md has the table of all of them."""

from __future__ import annotations

import json
import os
import signal
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import pytest

from deploykit.cli import cli
from deploykit.core.errors import InputError, UsageError
from tests.conftest import assert_clean_error
from tests.samples import baseline_report, manifest, tiny_onnx

REPO = Path(__file__).resolve().parents[2]
FAST = ["--warmup", "1", "--min-iters", "3", "--min-time", "0", "--max-time", "5", "--threads", "1", "--energy", "off"]


@pytest.fixture
def tiny(tmp_path) -> Path:
    return tiny_onnx(tmp_path / "user" / "tiny.onnx")


def invoke(runner, *args):
    return runner.invoke(cli, [str(a) for a in args])


# ---------------------------------------------------------------------------------------------- numbers (case 5)

@pytest.mark.parametrize("args", [
    ["bench", "x.onnx", "--max-time", "nan"],
    ["bench", "x.onnx", "--min-time", "inf"],
    ["bench", "x.onnx", "--energy-estimate-watts", "inf"],
    ["gate", "a.onnx", "--against", "b.onnx", "--block-time", "inf"],
    ["gate", "a.onnx", "--against", "b.onnx", "--alpha", "nan"],
    ["gate", "a.onnx", "--against", "b.onnx", "--time-budget", "nan"],
    ["baseline", "update", "resnet18", "--block-time", "nan"],
    ["quantize", "resnet18", "--crop-pct", "nan"],
])
def test_numeric_options_refuse_nan_and_inf(cli_runner, args):
    assert_clean_error(invoke(cli_runner, *args), 2, "not a finite number")


@pytest.mark.parametrize("make", [
    lambda: __import__("deploykit.core.config", fromlist=["x"]).BenchConfig(max_time=float("nan")),
    lambda: __import__("deploykit.core.config", fromlist=["x"]).BenchConfig(min_iters=2.5),
    lambda: __import__("deploykit.core.config", fromlist=["x"]).ExportConfig(model="m", batch=True),
    lambda: __import__("deploykit.gate.config", fromlist=["x"]).GateConfig(block_time=float("inf")),
    lambda: __import__("deploykit.gate.config", fromlist=["x"]).GateConfig(seed=1.5),
    lambda: __import__("deploykit.gate.config", fromlist=["x"]).GateConfig(block_iters=2.5),
    lambda: __import__("deploykit.gate.config", fromlist=["x"]).GateConfig(block_warmup=10**9),
    lambda: __import__("deploykit.gate.config", fromlist=["x"]).GateConfig(baseline_drift=float("nan")),
])
def test_the_python_api_refuses_the_same_values(make):
    with pytest.raises(UsageError):
        make()


GATE = 'version = 1\n[settings]\n{settings}\n[[check]]\nmodel = "resnet18"\nagainst = "resnet18"\n{check}\n'


@pytest.mark.parametrize("settings,check,needle", [
    ("seed = 1.5", "", "seed must be a whole number"),
    ("block_iters = 2.5", "", "block_iters must be a whole number"),
    ("block_time = nan", "", "block_time must be a finite number"),
    ("time_budget = inf", "", "time_budget must be a finite number"),
    ("block_warmup = 1000000000", "", "--block-warmup must be between 0 and 10000"),
    ("alpha = nan", "", "finite"),
    ("", "threads = 1.5", "threads must be a positive integer"),
    ("", "resolution = nan", "resolution must be a positive integer"),
    ("", 'tolerance = "nan%"', "tolerance"),
])
def test_gate_file_values_are_checked_before_anything_runs(cli_runner, tmp_path, settings, check, needle):
    gf = tmp_path / "gate.toml"
    gf.write_text(GATE.format(settings=settings, check=check))
    assert_clean_error(invoke(cli_runner, "gate", "-c", gf, "--no-save"), 2, needle)


# ---------------------------------------------------------------------------------------------- baselines (case 5)

def _baseline(tmp_path, edit=None, raw: str | None = None) -> Path:
    rep = baseline_report()
    if edit:
        edit(rep)
    p = tmp_path / "b.json"
    p.write_text(raw if raw is not None else json.dumps(rep))
    return p


@pytest.mark.parametrize("edit,needle", [
    (lambda r: r["reference_workload"]["block_settings"].update(block_time=float("nan")), "not valid json"),
    (lambda r: r["settings"].update(threads="many"), "settings/threads"),
    (lambda r: r["target"]["info"].update(threads="many"), "target/info/threads"),
    (lambda r: r["settings"].update(threads=2.0), "settings/threads"),
    (lambda r: r["reference_workload"]["block_settings"].update(block_warmup=10**9), "block_warmup"),
    (lambda r: r["reference_workload"]["block_settings"].update(block_iters=2.5), "block_iters"),
    (lambda r: r["reference_workload"]["blocks"][0].update(index="x"), "index"),
    (lambda r: r.update(reference_workload=[]), "reference_workload"),
])
def test_a_bad_baseline_is_one_line_before_anything_is_measured(cli_runner, tmp_path, edit, needle):
    t0 = time.monotonic()
    r = invoke(cli_runner, "gate", "--baseline", _baseline(tmp_path, edit), "--no-save")
    assert_clean_error(r, 2, "baseline", needle)
    assert time.monotonic() - t0 < 60  # block_warmup 10^9 used to hang here


@pytest.mark.parametrize("raw", ["[]", "null", "", "{", '{"schema": "deploykit.report"}', "\udcff"])
def test_baselines_that_are_not_reports(cli_runner, tmp_path, raw):
    p = tmp_path / "b.json"
    p.write_bytes(raw.encode("utf-8", "surrogateescape"))
    assert_clean_error(invoke(cli_runner, "gate", "--baseline", p, "--no-save"), 2)


# ---------------------------------------------------------------------------------------------- manifests (5, 7)

@pytest.mark.parametrize("text", ["[]", "null", "{", "NaN", "not json"])
def test_a_manifest_of_the_wrong_shape_is_ignored(cli_runner, tiny, text):
    tiny.with_name("tiny.manifest.json").write_text(text)
    r = invoke(cli_runner, "bench", tiny, *FAST, "--no-save")
    assert r.exit_code == 0, r.stderr
    assert "Traceback" not in r.stderr


def _manifest_for(path: Path, **settings) -> None:
    from deploykit.export.artifacts import artifact_sha256

    m = manifest(path.name, artifact_sha256(path), model="resnet18")
    m["settings"].update(settings, resolution=8)
    path.with_name(path.stem + ".manifest.json").write_text(json.dumps(m))


def test_a_manifest_without_a_section_is_ignored_not_a_traceback(cli_runner, tiny):
    from deploykit.export.artifacts import artifact_sha256, read_manifest

    m = manifest(tiny.name, artifact_sha256(tiny))
    del m["settings"]
    tiny.with_name("tiny.manifest.json").write_text(json.dumps(m))
    assert read_manifest(tiny) is None
    r = invoke(cli_runner, "bench", tiny, *FAST, "--no-save")
    assert r.exit_code == 0 and "Traceback" not in r.stderr, r.stderr
    r = invoke(cli_runner, "quantize", tiny, "--calib-data", "synthetic", "--calib-size", "2", "--fidelity-samples",
               "1", "--no-verify")
    assert r.exit_code == 0 and "tiny.manifest.json" in r.stderr and "ignored" in r.stderr, r.stderr


def test_a_manifest_naming_the_parent_folder_cannot_steer_quantize_outside_the_store(cli_runner, tiny, tmp_path,
                                                                                     monkeypatch):
    _manifest_for(tiny, model="..")
    store = tmp_path / "store" / "models"
    monkeypatch.chdir(tmp_path)
    r = invoke(cli_runner, "quantize", tiny, "--calib-data", "synthetic", "--calib-size", "2", "--fidelity-samples",
               "1", "--no-verify", "--models-dir", "store/models")  # relative, as users type it
    assert r.exit_code == 0, r.stderr
    written = [p for p in tmp_path.rglob("int8_*")]
    assert written and all(store in p.parents for p in written), written


@pytest.mark.parametrize("label,folder", [("..", "_."), (".", "_"), (".hidden", "_hidden"), ("a/../../b", "a_.._.._b"),
                                          ("timm:levit_128s", "timm.levit_128s"), ("", "_")])
def test_model_labels_never_name_a_folder_outside_the_store(label, folder):
    from deploykit.export.artifacts import artifact_path, folder_name

    assert folder_name(label) == folder
    p = artifact_path(Path("/store"), label, "v")
    assert p.parent.parent == Path("/store")


def test_a_gate_file_baseline_outside_its_repository_is_refused(cli_runner, tmp_path):
    from deploykit.gate.gatefile import load_gate_file

    d = tmp_path / "repo" / "ci"
    d.mkdir(parents=True)
    (tmp_path / "repo" / ".git").mkdir()
    for value, ok in (("../../x.json", False), ("/tmp/x.json", False), ("../reports/x.json", True),
                      ("b.json", True), ("b.txt", False)):
        gf = d / "gate.toml"
        gf.write_text(f'version = 1\n[[check]]\nmodel = "resnet18"\nbaseline = "{value}"\n')
        if ok:
            (c,) = load_gate_file(gf)[0]
            assert Path(c.reference).resolve().is_relative_to(tmp_path / "repo")
        else:
            with pytest.raises(InputError, match="baseline"):
                load_gate_file(gf)
    gf.write_text('version = 1\n[[check]]\nmodel = "resnet18"\nbaseline = "../../x.json"\n')
    assert_clean_error(invoke(cli_runner, "baseline", "update", "-c", gf), 2, "outside")
    assert not (tmp_path / "x.json").exists()


# ---------------------------------------------------------------------------------------------- caches (3, 5)

def test_an_unreadable_or_foreign_reference_cache_is_rebuilt_not_an_error(tmp_path):
    import numpy as np

    from deploykit.onnxio.reference import load_reference, reference_key, save_reference

    p = tmp_path / "m.ref-b1-s0.npz"
    key = reference_key("a" * 64, None, 0, (1, 3, 8, 8))
    save_reference(p, np.zeros((1, 3, 8, 8), np.float32), np.ones((1, 4), np.float32), key)
    assert load_reference(p, key) is not None
    assert load_reference(p, reference_key("b" * 64, None, 0, (1, 3, 8, 8))) is None  # another artifact's
    assert load_reference(p, reference_key("a" * 64, "c" * 64, 0, (1, 3, 8, 8))) is None  # other weights
    p.write_bytes(b"garbage")
    assert load_reference(p, key) is None  # rebuilt by the caller, no "--force" to give


def test_a_model_stats_cache_with_wrong_types_is_rebuilt(tmp_path):
    from deploykit.models.registry import model_stats

    good = model_stats("resnet18", 64, cache_dir=tmp_path)
    cache = tmp_path / ".cache" / "model-stats.json"
    cache.write_text(json.dumps({k: {"params": "many", "macs": None} for k in json.loads(cache.read_text())}))
    assert model_stats("resnet18", 64, cache_dir=tmp_path) == good
    cache.write_text("[]")
    assert model_stats("resnet18", 64, cache_dir=tmp_path) == good


# ---------------------------------------------------------------------------------------------- case 8

def test_a_resolution_that_cannot_fit_is_refused_with_the_estimate(cli_runner):
    r = invoke(cli_runner, "bench", "resnet18", "--resolution", "100000", "--no-save")
    line = assert_clean_error(r, 2, "100000x100000", "GB", "available")
    assert "lower --resolution" in line


def _png(path: Path, w: int, h: int) -> Path:
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(b"\0" * 100)) + chunk(b"IEND", b""))
    return path


@pytest.mark.parametrize("side", [20000, 12000])  # beyond Pillow's error limit; beyond its warning limit
def test_a_decompression_bomb_png_is_one_line(cli_runner, tiny, tmp_path, side):
    from deploykit.quantize.calib import Preprocess, load_image

    (tmp_path / "imgs").mkdir()
    bomb = _png(tmp_path / "imgs" / "bomb.png", side, side)
    with pytest.raises(InputError, match="Pillow's limit"):
        load_image(bomb, Preprocess(resolution=8))
    r = invoke(cli_runner, "quantize", tiny, "--calib-data", tmp_path / "imgs", "--fidelity-samples", "1")
    assert_clean_error(r, 2, "bomb.png", "Pillow's limit", alone=False)


def test_an_onnx_input_with_a_zero_dimension_is_one_line(cli_runner, tmp_path):
    z = tiny_onnx(tmp_path / "zero.onnx", shape=(1, 3, 0, 8))
    assert_clean_error(invoke(cli_runner, "bench", z, *FAST, "--no-save"), 2, "zero dimension")


@pytest.mark.parametrize("args", [
    ["gate", "{tiny}", "--against", "{tiny}", "--junit", "{dir}"],
    ["baseline", "update", "resnet18", "-o", "{dir}"],
    ["quantize", "{tiny}", "--calib-data", "synthetic", "-o", "{dir}"],
    ["export", "resnet18", "-o", "{dir}"],
    ["fuse", "{tiny}", "-o", "{dir}"],
])
def test_an_output_that_is_a_folder_is_refused_before_any_work(cli_runner, tiny, tmp_path, args):
    d = tmp_path / "out.onnx"
    d.mkdir()
    t0 = time.monotonic()
    r = invoke(cli_runner, *[a.format(tiny=tiny, dir=d) for a in args])
    assert_clean_error(r, 2, "is a folder")
    assert time.monotonic() - t0 < 30 and "measuring" not in r.stderr


@pytest.mark.parametrize("flag,needle", [("-t", "names no target"), ("--format", "names no report format")])
def test_empty_comma_lists_are_refused_not_ignored(cli_runner, tiny, tmp_path, flag, needle):
    r = invoke(cli_runner, "bench", tiny, *FAST, flag, ",", "--report-dir", tmp_path / "reports")
    assert_clean_error(r, 2, needle)


# ---------------------------------------------------------------------------------------------- external data (1)

def test_an_onnx_file_with_external_data_loads_from_any_working_directory(tmp_path, monkeypatch):
    from deploykit.onnxio.files import external_data_files, load_onnx, model_sha256

    m = tiny_onnx(tmp_path / "m" / "model.onnx", external=True)
    monkeypatch.chdir(tmp_path)  # not the model's folder
    proto = load_onnx(m, load_external_data=False)
    assert external_data_files(proto) == ["model.onnx.data"]
    load_onnx(m)
    sha = model_sha256(m)
    data = m.with_name("model.onnx.data")
    raw = bytearray(data.read_bytes())
    raw[0] ^= 1
    data.write_bytes(bytes(raw))
    assert model_sha256(m) != sha  # weights changed in the data file: another identity
    data.unlink()
    with pytest.raises(InputError, match="model.onnx.data"):
        load_onnx(m)


def test_commands_on_an_externally_stored_model_from_another_folder(cli_runner, tmp_path, monkeypatch):
    m = tiny_onnx(tmp_path / "m" / "model.onnx", external=True)
    work = tmp_path / "elsewhere"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.setenv("TMPDIR", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    r = invoke(cli_runner, "bench", m, *FAST, "--no-save")
    assert r.exit_code == 0, r.stderr
    r = invoke(cli_runner, "inspect", m, "--json")
    assert r.exit_code == 0 and json.loads(r.stdout)["params"], r.stderr
    r = invoke(cli_runner, "fuse", m, "-o", work / "f.onnx")
    assert r.exit_code == 0, r.stderr
    assert sorted(p.name for p in work.iterdir()) == ["f.onnx", "f.onnx.data"]  # the weights stay external
    r = invoke(cli_runner, "quantize", m, "--calib-data", "synthetic", "--calib-size", "4", "--fidelity-samples", "2",
               "--no-verify", "--json")
    assert r.exit_code == 0, r.stderr
    assert json.loads(r.stdout)["path"].endswith(".onnx")
    left = [p.name for p in (tmp_path / "tmp").iterdir() if p.name != ".ses"]  # .ses: ONNX Runtime's session file
    assert left == []  # ORT's pre.quant.* folders went into the run folder


# ---------------------------------------------------------------------------------------------- git lock (9)

def _git(cwd, *args):
    subprocess.run(["git", "-c", "user.email=a@b", "-c", "user.name=a", *args], cwd=cwd, check=True,
                   capture_output=True)


def test_the_revision_is_read_without_rewriting_the_git_index(tmp_path):
    from deploykit.bench.fingerprint import git_sha

    (tmp_path / "f.py").write_text("x = 1\n")
    _git(tmp_path, "init", "-q")
    _git(tmp_path, "add", ".")
    _git(tmp_path, "commit", "-qm", "x")
    time.sleep(1.1)
    os.utime(tmp_path / "f.py")  # stat-dirty: a plain `git status` refreshes the index under .git/index.lock
    index = tmp_path / ".git" / "index"
    before = (index.stat().st_mtime_ns, index.stat().st_ino)
    got = git_sha(tmp_path)
    assert len(got["sha"]) == 40 and got["dirty"] is False
    assert (index.stat().st_mtime_ns, index.stat().st_ino) == before
    subprocess.run(["git", "status"], cwd=tmp_path, capture_output=True)  # what the test guards against: it writes
    assert (index.stat().st_mtime_ns, index.stat().st_ino) != before


# ---------------------------------------------------------------------------------------------- SIGTERM (6)

def test_sigterm_is_handled_like_ctrl_c(tmp_path):
    m = tiny_onnx(tmp_path / "tiny.onnx")
    env = {**os.environ, "PYTHONPATH": str(REPO), "DEPLOYKIT_REPORTS": str(tmp_path / "reports")}
    proc = subprocess.Popen([sys.executable, "-m", "deploykit", "bench", str(m), "--min-time", "60", "--max-time",
                             "60", "--threads", "1", "--energy", "off"], cwd=tmp_path, env=env,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    lines = []
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        lines.append(line)
        if "measuring" in line or not line:
            break
    time.sleep(1)
    proc.send_signal(signal.SIGTERM)
    rest = proc.communicate(timeout=60)[1]
    err = "".join(lines) + rest
    assert proc.returncode == 143, err
    assert "Traceback" not in err and err.strip().splitlines()[-1].startswith("error: terminated (SIGTERM)")
    left = [p for p in tmp_path.rglob("*") if p.is_file() and p.name not in ("tiny.onnx",)]
    assert left == [] or all(".ref-" in p.name for p in left), left
