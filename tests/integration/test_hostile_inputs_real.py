"""Hostile and careless inputs with real models and real runtimes: users' own ONNX files as torch writes them today
(weights in external data; third-party timm architectures), code in the working directory, stale and damaged caches,
kills at every stage, a full disk, a read-only store. Each case fails on the code before the hardening
(benchmarks/hardening_cases.md has the table with the exit codes and messages before and after)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from deploykit.cli import cli
from deploykit.core.errors import UnavailableError
from tests.conftest import assert_clean_error
from tests.samples import tiny_onnx

REPO = Path(__file__).resolve().parents[2]
FAST = ["--warmup", "1", "--min-iters", "3", "--min-time", "0", "--max-time", "10", "--threads", "1", "--energy", "off"]
GATE_FAST = ["--min-blocks", "6", "--max-blocks", "6", "--block-time", "0.01", "--threads", "1", "--no-save"]
QUANT_FAST = ["--calib-data", "synthetic", "--calib-size", "4", "--fidelity-samples", "2", "--no-verify"]


def invoke(runner, *args):
    return runner.invoke(cli, [str(a) for a in args])


def _git(cwd, *args):
    subprocess.run(["git", "-c", "user.email=a@b", "-c", "user.name=a", *args], cwd=cwd, check=True,
                   capture_output=True)


def _env(**extra) -> dict:
    return {**os.environ, "PYTHONPATH": str(REPO), **extra}


def scratch(tmpdir: Path) -> list[Path]:
    """What a run left in TMPDIR, less the libraries' own session and cache files (ONNX Runtime's .ses, torch's
    torchinductor_<user>/), which are not scratch files of a run."""
    return [p for p in Path(tmpdir).iterdir() if p.name != ".ses" and not p.name.startswith("torchinductor_")]


# ------------------------------------------------------------------------------------- 1. users' own ONNX files

# third-party architectures the registry lacks, small enough to export at 64 px in seconds: reparameterised blocks
# (RepVGG), a pooling token mixer (PoolFormer), squeeze-excite RegNet
TIMM_MODELS = ("repvgg_a0", "poolformer_s12", "regnety_004")


@pytest.fixture(scope="module")
def timm_external(tmp_path_factory) -> dict[str, Path]:
    """timm models exported the way torch 2.14 does by default (``dynamo=True``): weights in ``model.onnx.data``."""
    import timm
    import torch

    out = {}
    root = tmp_path_factory.mktemp("timm-external")
    for name in TIMM_MODELS:
        torch.manual_seed(0)
        m = timm.create_model(name, pretrained=False, num_classes=10).eval()
        path = root / name / "model.onnx"
        path.parent.mkdir()
        torch.onnx.export(m, (torch.randn(1, 3, 64, 64),), str(path), dynamo=True, opset_version=18)
        assert path.with_name("model.onnx.data").is_file()
        out[name] = path
    return out


@pytest.mark.slow
@pytest.mark.parametrize("name", TIMM_MODELS)
def test_a_timm_model_with_external_data_works_from_another_folder(cli_runner, timm_external, tmp_path, monkeypatch,
                                                                   name):
    model = timm_external[name]
    work = tmp_path / "elsewhere"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.setenv("TMPDIR", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    r = invoke(cli_runner, "bench", model, *FAST, "--json", "--no-save")
    assert r.exit_code == 0, r.stderr
    assert json.loads(r.stdout)[0]["fidelity"]["passed"] is True
    r = invoke(cli_runner, "inspect", model, "--json")
    assert r.exit_code == 0, r.stderr
    r = invoke(cli_runner, "fuse", model, "-o", work / "fused.onnx", "--json")
    assert r.exit_code == 0, r.stderr
    assert json.loads(r.stdout)["external_data"] == ["fused.onnx.data"] and (work / "fused.onnx.data").is_file()
    r = invoke(cli_runner, "quantize", model, *QUANT_FAST, "--json")
    assert r.exit_code == 0, r.stderr
    int8 = Path(json.loads(r.stdout)["path"])
    r = invoke(cli_runner, "bench", int8, *FAST, "--json", "--no-save")
    assert r.exit_code == 0 and json.loads(r.stdout)[0]["target"]["precision"] == "int8", r.stderr
    assert scratch(tmp_path / "tmp") == []  # nothing of ORT's quantization left in TMPDIR


@pytest.mark.slow
def test_gate_and_openvino_on_a_model_with_external_data(cli_runner, timm_external, tmp_path, monkeypatch):
    model = timm_external["repvgg_a0"]
    monkeypatch.chdir(tmp_path)
    r = invoke(cli_runner, "bench", model, *FAST, "-t", "openvino", "--json", "--no-save")
    assert r.exit_code == 0 and json.loads(r.stdout)[0]["fidelity"]["passed"] is True, r.stderr
    r = invoke(cli_runner, "gate", model, "--against", model, *GATE_FAST, "--json")
    assert r.exit_code in (0, 5) and "do not match" not in r.stderr, r.stderr
    # a committed file with external data, at a git revision: the data file comes from that revision too
    repo = tmp_path / "repo"
    repo.mkdir()
    shutil.copy(model, repo / "model.onnx")
    shutil.copy(model.with_name("model.onnx.data"), repo / "model.onnx.data")
    _git(repo, "init", "-q")
    _git(repo, "add", ".")
    _git(repo, "commit", "-qm", "m")
    r = invoke(cli_runner, "gate", repo / "model.onnx", "--against-rev", "HEAD", *GATE_FAST, "--json")
    assert r.exit_code in (0, 5), r.stderr
    assert json.loads(r.stdout)["checks"][0]["reference"]["revision"] == "HEAD"


# ------------------------------------------------------------------------------------- 2. code from the cwd

def test_a_deploykit_folder_in_the_working_directory_is_not_imported_by_the_compile_check(tmp_path, monkeypatch):
    from deploykit.runtimes.openvino import check_compiles

    model = tiny_onnx(tmp_path / "tiny.onnx")
    user = tmp_path / "user"
    (user / "deploykit").mkdir(parents=True)
    (user / "deploykit" / "__init__.py").write_text(
        "import os, signal\nopen('PWNED', 'w').write('x')\nos.kill(os.getpid(), signal.SIGSEGV)\n")
    monkeypatch.chdir(user)
    check_compiles(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})  # no "OpenVINO crashed (SIGSEGV)"
    assert not (user / "PWNED").exists()


# ------------------------------------------------------------------------------------- 3. stale caches

@pytest.mark.slow
def test_a_rebuilt_artifact_at_the_same_path_gets_a_new_reference(cli_runner, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for seed in ("0", "5"):
        r = invoke(cli_runner, "export", "resnet18", "--resolution", "64", "--seed", seed, "-o", "x.onnx")
        assert r.exit_code == 0, r.stderr
        r = invoke(cli_runner, "bench", "x.onnx", *FAST, "--json", "--no-save")
        assert r.exit_code == 0, r.stderr
        fid = json.loads(r.stdout)[0]["fidelity"]
        assert fid["passed"] is True and fid["reference"] == "pytorch fp32 (cpu)", fid  # not seed 0's cached outputs


@pytest.mark.slow
def test_weights_given_by_a_relative_path_are_found_from_any_folder(cli_runner, tmp_path, monkeypatch):
    import torch
    import torchvision

    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    torch.manual_seed(3)
    torch.save(torchvision.models.resnet18().state_dict(), a / "w.pt")
    monkeypatch.chdir(a)
    r = invoke(cli_runner, "export", "resnet18", "--resolution", "64", "--weights", "w.pt", "--models-dir", "m",
               "--json")
    assert r.exit_code == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["manifest"]["source"]["weights"] == str(a / "w.pt")  # absolute
    art = a / out["path"]
    for ref in art.parent.glob("*.npz"):
        ref.unlink()
    monkeypatch.chdir(b)
    r = invoke(cli_runner, "bench", art, *FAST, "--json", "--no-save")
    assert r.exit_code == 0, r.stderr
    fid = json.loads(r.stdout)[0]["fidelity"]
    assert fid["reference"] == "pytorch fp32 (cpu)" and fid["passed"] is True
    for ref in art.parent.glob("*.npz"):
        ref.unlink()
    (a / "w.pt").rename(a / "moved.pt")  # the weights are gone: said, and the ONNX Runtime reference is used
    r = invoke(cli_runner, "bench", art, *FAST, "--json", "--no-save")
    assert r.exit_code == 0, r.stderr
    assert "which are gone" in json.loads(r.stdout)[0]["fidelity"]["reference"]


def _private_store(resnet18_64, tmp_path) -> Path:
    store = tmp_path / "store"
    shutil.copytree(resnet18_64.path.parent, store / "resnet18")
    return store


def test_a_corrupt_reference_cache_is_rebuilt(cli_runner, resnet18_64, tmp_path):
    store = _private_store(resnet18_64, tmp_path)
    (ref,) = (store / "resnet18").glob("*.ref-b1-s0.npz")
    ref.write_bytes(b"garbage")
    r = invoke(cli_runner, "bench", "resnet18", "--resolution", "64", *FAST, "--models-dir", store, "--json",
               "--no-save")
    assert r.exit_code == 0, r.stderr
    assert json.loads(r.stdout)[0]["fidelity"]["passed"] is True and ref.read_bytes() != b"garbage"


# ------------------------------------------------------------------------------------- 4. blobs, gate's check

def _blobs(store: Path) -> list[Path]:
    return sorted((store / ".cache" / "openvino").rglob("*.blob"))


def test_a_corrupted_openvino_blob_of_the_same_size_is_compiled_again(cli_runner, resnet18_64, tmp_path):
    store = _private_store(resnet18_64, tmp_path)
    args = ["bench", "resnet18", "--resolution", "64", "-t", "openvino", *FAST, "--models-dir", store, "--json",
            "--no-save"]
    r = invoke(cli_runner, *args)
    assert r.exit_code == 0, r.stderr
    (blob,) = _blobs(store)
    data = bytearray(blob.read_bytes())
    mid = len(data) // 2
    data[mid:mid + 65536] = bytes(b ^ 0xFF for b in data[mid:mid + 65536])
    blob.chmod(0o644)
    blob.write_bytes(bytes(data))
    r = invoke(cli_runner, *args)
    assert r.exit_code == 0, r.stderr
    (rep,) = json.loads(r.stdout)
    assert rep["target"]["info"]["loaded_from_cache"] is False and "SHA-256" in rep["target"]["info"]["cache_note"]
    assert rep["fidelity"]["passed"] is True
    r = invoke(cli_runner, *args)  # the blob compiled again is recorded and reused
    assert json.loads(r.stdout)[0]["target"]["info"]["loaded_from_cache"] is True


def test_the_gate_checks_both_sides_outputs_before_timing(cli_runner, resnet18_64, tmp_path):
    import numpy as np
    import onnx
    from onnx import numpy_helper

    from deploykit.export.artifacts import artifact_sha256

    broken = tmp_path / "broken" / resnet18_64.path.name
    broken.parent.mkdir()
    m = onnx.load(str(resnet18_64.path))
    init = m.graph.initializer[0]
    init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init) * np.float32(-3.0), init.name))
    onnx.save(m, str(broken))
    manifest = dict(resnet18_64.manifest, sha256=artifact_sha256(broken))  # a manifest that vouches for it
    broken.with_name(broken.stem + ".manifest.json").write_text(json.dumps(manifest))
    r = invoke(cli_runner, "gate", broken, "--against", resnet18_64.path, *GATE_FAST, "--json")
    assert r.exit_code in (0, 4, 5), r.stderr
    chk = json.loads(r.stdout)["checks"][0]
    assert chk["candidate"]["fidelity"]["passed"] is False and chk["reference"]["fidelity"]["passed"] is True
    assert "outputs on ort do not match its reference" in r.stderr


# ------------------------------------------------------------------------------------- 6. kills

KILL_AT = """
import os, signal, sys
def _kill(*a, **k):
    os.kill(os.getpid(), signal.SIGKILL)
{patch}
from deploykit.cli import main
sys.argv[0] = "deploykit"
main()
"""


def _killed(patch: str, *args: str, cwd: Path, **env) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", KILL_AT.format(patch=patch), *args], cwd=cwd, env=_env(**env),
                          capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_an_export_killed_while_writing_leaves_nothing_the_next_run_keeps(cli_runner, tmp_path):
    store = tmp_path / "store"
    args = ["export", "resnet18", "--resolution", "64", "--models-dir", str(store)]
    p = _killed("import deploykit.core.atomic as a; a.os.replace = _kill", *args, cwd=tmp_path)
    assert p.returncode == -signal.SIGKILL, p.stderr
    assert [x for x in store.rglob(".dk-tmp-*")]  # killed with the artifact half-written
    r = invoke(cli_runner, *args)
    assert r.exit_code == 0, r.stderr
    assert not [x for x in store.rglob(".dk-tmp-*")]


def test_a_quantize_killed_while_calibrating_leaves_nothing_in_tmp_and_is_swept(cli_runner, tmp_path, monkeypatch):
    model = tiny_onnx(tmp_path / "tiny.onnx")
    store, tmpdir = tmp_path / "store", tmp_path / "tmp"
    tmpdir.mkdir()
    args = ["quantize", str(model), *QUANT_FAST, "--models-dir", str(store)]
    p = _killed("import onnxruntime.quantization as q; q.quantize_static = _kill", *args, cwd=tmp_path,
                TMPDIR=str(tmpdir))
    assert p.returncode == -signal.SIGKILL, p.stderr
    assert scratch(tmpdir) == []  # ORT's pre.quant.* and deploykit's scratch files are in the store's run folder
    left = [x for x in store.iterdir() if x.name.startswith(".dk-tmp-")]
    assert left and any(left[0].rglob("pre.onnx"))
    monkeypatch.setenv("TMPDIR", str(tmpdir))
    r = invoke(cli_runner, *args)
    assert r.exit_code == 0, r.stderr
    assert not [x for x in store.iterdir() if x.name.startswith(".dk-tmp-")] and scratch(tmpdir) == []


def test_a_gate_killed_while_measuring_leaves_its_revision_to_the_next_gate(cli_runner, tmp_path, monkeypatch):
    repo = tmp_path / "repo"
    tiny_onnx(repo / "model.onnx", shape=(1, 3, 32, 32))
    _git(repo, "init", "-q")
    _git(repo, "add", ".")
    _git(repo, "commit", "-qm", "m")
    store, tmpdir = tmp_path / "store", tmp_path / "tmp"
    tmpdir.mkdir()
    env = _env(DEPLOYKIT_MODELS=str(store), TMPDIR=str(tmpdir))
    proc = subprocess.Popen([sys.executable, "-m", "deploykit", "gate", "model.onnx", "--against-rev", "HEAD",
                             "--min-blocks", "60", "--max-blocks", "60", "--block-time", "1", "--no-save",
                             "--threads", "1"], cwd=repo, env=env, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            line = proc.stderr.readline()
            if "loading" in line or not line:
                break
        time.sleep(1)
    finally:
        proc.kill()
        proc.wait()
    left = [x for x in store.iterdir() if x.name.startswith(".dk-tmp-")]
    assert left and any(left[0].rglob("model.onnx")) and scratch(tmpdir) == []
    monkeypatch.chdir(repo)
    monkeypatch.setenv("DEPLOYKIT_MODELS", str(store))
    r = invoke(cli_runner, "gate", "model.onnx", "--against-rev", "HEAD", *GATE_FAST)
    assert r.exit_code in (0, 5), r.stderr
    assert not [x for x in store.iterdir() if x.name.startswith(".dk-tmp-")]


# ------------------------------------------------------------------------------------- 8. disk, read-only store

@pytest.fixture
def mounter(tmp_path):
    """mount(*options) -> a fresh mount point (skips the test where mounting is not possible: not root)."""
    mounted = []

    def mount(*opts: str) -> Path:
        mnt = tmp_path / f"mnt{len(mounted)}"
        mnt.mkdir()
        if os.geteuid() != 0 or subprocess.run(["mount", *opts, str(mnt)], capture_output=True).returncode:
            pytest.skip(f"cannot mount {' '.join(opts)} here (needs root)")
        mounted.append(mnt)
        return mnt

    yield mount
    for mnt in reversed(mounted):
        subprocess.run(["umount", str(mnt)], capture_output=True)


@pytest.mark.slow
def test_an_export_into_a_full_disk_is_one_line_and_leaves_nothing(cli_runner, mounter):
    store = mounter("-t", "tmpfs", "-o", "size=2m", "tmpfs")
    r = invoke(cli_runner, "export", "resnet18", "--resolution", "64", "--models-dir", store)
    assert_clean_error(r, 2, "no space left", alone=False)
    assert not [p for p in store.rglob("*") if p.is_file() and p.suffix == ".onnx"]
    assert not [p for p in store.rglob(".dk-tmp-*")]


def _read_only_store(resnet18_64, tmp_path, mounter) -> Path:
    """A copy of the store, read-only: a read-only bind mount as root (root writes through permissions), else
    permissions."""
    src = _private_store(resnet18_64, tmp_path)
    if os.geteuid() == 0:
        return mounter("--bind", "-o", "ro", str(src))
    for p in sorted(src.rglob("*"), reverse=True):
        p.chmod(0o555 if p.is_dir() else 0o444)
    src.chmod(0o555)
    return src


@pytest.mark.parametrize("target", ["ort", "openvino"])
def test_a_read_only_store_still_serves_its_valid_artifacts(cli_runner, resnet18_64, tmp_path, mounter, target):
    store = _read_only_store(resnet18_64, tmp_path, mounter)
    assert not os.access(store / "resnet18", os.W_OK)
    r = invoke(cli_runner, "bench", "resnet18", "--resolution", "64", "-t", target, *FAST, "--models-dir", store,
               "--json", "--no-save")
    assert r.exit_code == 0, r.stderr
    assert json.loads(r.stdout)[0]["fidelity"]["passed"] is True


# ------------------------------------------------------------------------------------- 10. compile child killed

def _child_of(pid: int, needle: str) -> int | None:
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            cmd = (d / "cmdline").read_bytes()
        except (OSError, ValueError, IndexError):
            continue
        if ppid == pid and needle.encode() in cmd:
            return int(d.name)
    return None


def test_a_compile_check_child_killed_by_sigkill_says_so(tmp_path):
    from deploykit.runtimes.openvino import check_compiles

    model = tiny_onnx(tmp_path / "tiny.onnx")
    killed = []

    def killer():
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not killed:
            child = _child_of(os.getpid(), "_compile_child")
            if child:
                os.kill(child, signal.SIGKILL)  # what the kernel's OOM killer does
                killed.append(child)
            time.sleep(0.01)

    t = threading.Thread(target=killer)
    t.start()
    try:
        with pytest.raises(UnavailableError) as err:
            check_compiles(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    finally:
        killed.append(0)
        t.join()
    msg = err.value.one_line()
    assert "killed by SIGKILL (possibly out of memory)" in msg and "crashed" not in msg
