"""Hostile and careless inputs, re-run: every case of the hardening table with its exit code and message.

Each case runs the real CLI (``python -P -m deploykit``: the working directory is not on the parent's import path)
of the deploykit source tree given by --src, in a scratch folder, and records the exit code, the last line of
stderr (tracebacks flagged) and what was observed (leftover files, a warning, a hang). Run it once on the code
before a change and once after, then render both as the Markdown table of benchmarks/hardening_cases.md:

    git archive <old-commit> | tar -x -C /tmp/dk-before
    python benchmarks/hardening_cases.py --src /tmp/dk-before --out /tmp/before.json
    python benchmarks/hardening_cases.py --src . --out /tmp/after.json
    python benchmarks/hardening_cases.py --table /tmp/before.json /tmp/after.json > benchmarks/hardening_cases.md

--cases 1a,5e runs a subset. Some cases need root (a small tmpfs for a full disk, a read-only mount): they are
reported as skipped elsewhere. The timm models are exported by this script with torch.onnx.export(dynamo=True),
which stores weights in <name>.onnx.data. Takes ~10 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

PY = sys.executable
CASES: dict[str, tuple[str, callable]] = {}


def case(cid: str, title: str):
    def deco(fn):
        CASES[cid] = (title, fn)
        return fn
    return deco


class Ctx:
    def __init__(self, src: Path, work: Path):
        self.src, self.work = src.resolve(), work.resolve()
        self.shared = self.models = self.work / "models"
        self.reports = self.work / "reports"
        self.tmp = self.work / "tmp"  # TMPDIR of every run: what deploykit leaves in "/tmp"
        for d in (self.models, self.reports, self.tmp):
            d.mkdir(parents=True, exist_ok=True)

    def env(self, **extra) -> dict:
        return {**os.environ, "PYTHONPATH": str(self.src), "DEPLOYKIT_MODELS": str(self.models),
                "DEPLOYKIT_REPORTS": str(self.reports), "TMPDIR": str(self.tmp), "COLUMNS": "200", **extra}

    def dk(self, *args, cwd: Path | None = None, timeout: float = 600, prelude: str = "", **env):
        """Run deploykit; (exit code, last stderr line, stderr)."""
        cmd = [PY, "-P", "-m", "deploykit", *args] if not prelude else \
            [PY, "-P", "-c", prelude + "\nfrom deploykit.cli import main; sys.argv[0] = 'deploykit'; main()", *args]
        try:
            p = subprocess.run(cmd, cwd=cwd or self.work, env=self.env(**env), capture_output=True, text=True,
                               timeout=timeout)
        except subprocess.TimeoutExpired:
            return 124, f"(no exit after {timeout:g} s: killed)", ""
        return p.returncode, last_line(p.stderr), p.stderr

    def python(self, code: str, cwd: Path | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
        return subprocess.run([PY, "-P", "-c", code], cwd=cwd or self.work, env=self.env(), capture_output=True,
                              text=True, timeout=timeout)

    def registry_artifact(self) -> Path:
        """resnet18 at 64 px in the shared store (exported once; cases that damage it use ``private_store``)."""
        rc, msg, _ = self.dk("export", "resnet18", "--resolution", "64", DEPLOYKIT_MODELS=str(self.shared))
        assert rc == 0, msg
        return next((self.shared / "resnet18").glob("fp32_*.onnx"))

    def private_store(self, name: str) -> Path:
        """A copy of the shared store that this case may damage; every later command of the case uses it."""
        self.registry_artifact()
        self.models = self.work / "stores" / name
        shutil.rmtree(self.models, ignore_errors=True)
        shutil.copytree(self.shared, self.models)
        return next((self.models / "resnet18").glob("fp32_*.onnx"))

    def timm_external(self, name: str = "repvgg_a0", res: int = 64) -> Path:
        """A timm model exported the way torch 2.14 does by default: weights in model.onnx.data."""
        out = self.work / "ext" / name / "model.onnx"
        if not out.is_file():
            out.parent.mkdir(parents=True, exist_ok=True)
            code = (f"import timm, torch; torch.manual_seed(0); m = timm.create_model({name!r}, num_classes=10).eval();"
                    f"torch.onnx.export(m, (torch.randn(1, 3, {res}, {res}),), {str(out)!r}, dynamo=True, "
                    "opset_version=18)")
            p = self.python(code)
            assert out.is_file() and (out.parent / "model.onnx.data").is_file(), p.stderr[-2000:]
        return out


def last_line(stderr: str) -> str:
    """The last line of stderr that says something (not the energy meters' absence on this machine)."""
    lines = [ln.strip() for ln in stderr.strip().splitlines() if ln.strip() and not ln.startswith("energy: unavailable")]
    if not lines:
        return ""
    tb = "TRACEBACK " if "Traceback (most recent call last)" in stderr else ""
    return tb + lines[-1][:300]


def leftovers(*roots: Path) -> str:
    """deploykit's temporary files under ``roots`` (torch's own caches in TMPDIR are not counted)."""
    files = [p for r in roots if r.exists() for p in r.rglob("*") if p.is_file()
             and (".dk-tmp" in str(p) or r.name == "tmp") and "torchinductor" not in str(p) and p.name != ".ses"]
    size = sum(p.stat().st_size for p in files)
    return f"{len(files)} leftover file(s), {size / 1e6:.1f} MB" if files else "no leftovers"


def free_dir(ctx: Ctx, name: str) -> Path:
    d = ctx.work / name
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir(parents=True)
    return d


# ---------------------------------------------------------------------------------------------------- 1 external data

@case("1a", "bench a timm ONNX with external data (repvgg_a0, dynamo export) from another folder")
def c1a(ctx):
    m = ctx.timm_external("repvgg_a0")
    return ctx.dk("bench", str(m), "--min-time", "0.1", "--min-iters", "5", "--no-save", cwd=free_dir(ctx, "elsewhere"))


@case("1b", "quantize a timm ONNX with external data (regnety_004) in its own folder (--no-verify: synthetic data)")
def c1b(ctx):
    m = ctx.timm_external("regnety_004")
    return ctx.dk("quantize", "model.onnx", "--calib-data", "synthetic", "--calib-size", "4", "--fidelity-samples",
                  "2", "--no-verify", cwd=m.parent)


@case("1c", "fuse a timm ONNX with external data (poolformer_s12) from another folder: where do the weights go")
def c1c(ctx):
    m = ctx.timm_external("poolformer_s12")
    out = free_dir(ctx, "fused") / "f.onnx"
    rc, msg, err = ctx.dk("fuse", str(m), "-o", str(out), "--resolution", "64", cwd=free_dir(ctx, "elsewhere"))
    side = sorted(p.name for p in out.parent.iterdir())
    return rc, msg, err, f"wrote {side}"


@case("1d", "inspect a timm ONNX with external data (repvgg_a0) from another folder")
def c1d(ctx):
    return ctx.dk("inspect", str(ctx.timm_external("repvgg_a0")), cwd=free_dir(ctx, "elsewhere"))


@case("1e", "gate --against-rev on a committed ONNX file with external data")
def c1e(ctx):
    m = ctx.timm_external("repvgg_a0")
    repo = free_dir(ctx, "repo")
    shutil.copy(m, repo / "model.onnx")
    shutil.copy(m.with_name("model.onnx.data"), repo / "model.onnx.data")
    for args in (["init", "-q"], ["add", "."], ["-c", "user.email=a@b", "-c", "user.name=a", "commit", "-qm", "m"]):
        subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True)
    return ctx.dk("gate", "model.onnx", "--against-rev", "HEAD", "--min-blocks", "6", "--max-blocks", "6",
                  "--block-time", "0.02", "--no-save", cwd=repo)


# ---------------------------------------------------------------------------------------------------- 2 working dir code

@case("2", "a deploykit/ folder in the working directory, int8 model on openvino (compile check child)")
def c2(ctx):
    rc, msg, _ = ctx.dk("quantize", "resnet18", "--resolution", "64", "--calib-data", "synthetic", "--calib-size", "4",
                        "--fidelity-samples", "2")
    assert rc == 0, msg
    int8 = next((ctx.models / "resnet18").glob("int8_*.onnx"))
    hostile = free_dir(ctx, "hostile")
    (hostile / "deploykit").mkdir()
    (hostile / "deploykit" / "__init__.py").write_text("import os, signal\nopen('PWNED', 'w').write('x')\n"
                                                       "os.kill(os.getpid(), signal.SIGSEGV)\n")
    rc, msg, err = ctx.dk("bench", str(int8), "-t", "openvino", "--min-time", "0.1", "--min-iters", "5", "--no-save",
                          cwd=hostile)
    return rc, msg, err, "the working directory's code ran" if (hostile / "PWNED").exists() else "not imported"


# ---------------------------------------------------------------------------------------------------- 3 stale caches

@case("3a", "export -o x.onnx; bench; export --seed 5 -o x.onnx; bench: the cached reference is the old model's")
def c3a(ctx):
    d = free_dir(ctx, "seeded")
    for seed in ("0", "5"):
        rc, msg, _ = ctx.dk("export", "resnet18", "--resolution", "64", "--seed", seed, "-o", "x.onnx", cwd=d)
        assert rc == 0, msg
        rc, msg, err = ctx.dk("bench", "x.onnx", "--min-time", "0.1", "--min-iters", "5", "--no-save", cwd=d)
    warn = [ln for ln in err.splitlines() if "do not match" in ln]
    return rc, msg, err, warn[0].strip()[:200] if warn else "fidelity passes"


@case("3b", "export --weights w.pt (relative) in one folder, bench the artifact from another")
def c3b(ctx):
    d = free_dir(ctx, "weights")
    p = ctx.python("import torch, torchvision; torch.save(torchvision.models.resnet18(num_classes=1000).state_dict(), "
                   "'w.pt')", cwd=d)
    assert p.returncode == 0, p.stderr
    rc, msg, out = ctx.dk("export", "resnet18", "--resolution", "64", "--weights", "w.pt", "--models-dir", "m", cwd=d)
    assert rc == 0, msg
    art = next((d / "m" / "resnet18").glob("fp32_*.onnx"))
    for ref in art.parent.glob("*.npz"):
        ref.unlink()  # as after a cache clean: the reference must be rebuilt from the weights
    rc, msg, err = ctx.dk("bench", str(art), "--min-time", "0.1", "--min-iters", "5", "--no-save",
                          cwd=free_dir(ctx, "elsewhere"))
    ref = [ln for ln in err.splitlines() if "reference" in ln.lower()]
    return rc, msg, err, ref[0].strip()[:200] if ref else ""


@case("3c", "a corrupt cached reference (.ref-b1-s0.npz) next to an artifact")
def c3c(ctx):
    art = ctx.private_store("3c")
    for ref in art.parent.glob(art.stem + ".ref-*.npz"):
        ref.write_bytes(b"garbage")
    return ctx.dk("bench", "resnet18", "--resolution", "64", "--min-time", "0.1", "--min-iters", "5", "--no-save")


# ---------------------------------------------------------------------------------------------------- 4 blobs, gate

def _ov_blobs(ctx) -> list[Path]:
    return sorted(p for p in (ctx.models / ".cache").rglob("*.blob"))


@case("4a", "a compiled OpenVINO blob corrupted in place (same size) is reused")
def c4a(ctx):
    ctx.private_store("4a")
    args = ("bench", "resnet18", "--resolution", "64", "-t", "openvino", "--min-time", "0.1", "--min-iters", "5",
            "--no-save")
    rc, msg, _ = ctx.dk(*args)
    assert rc == 0, msg
    for b in _ov_blobs(ctx):
        data = bytearray(b.read_bytes())
        mid = len(data) // 2
        data[mid:mid + 4096] = bytes(4096)  # zero 4 KB of weights: same size
        b.write_bytes(bytes(data))
    rc, msg, err = ctx.dk(*args)
    warn = [ln.strip() for ln in err.splitlines() if "do not match" in ln or "blob" in ln]
    return rc, msg, err, (warn[0][:200] if warn else "no word about it")


@case("4b", "gate on an artifact whose outputs are wrong (weights damaged, manifest vouching for it)")
def c4b(ctx):
    art = ctx.private_store("4b")
    code = textwrap.dedent(f"""
        import hashlib, json, onnx, numpy as np
        from onnx import numpy_helper
        m = onnx.load({str(art)!r})
        t = m.graph.initializer[0]
        t.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(t) * np.float32(-3), t.name))
        onnx.save(m, 'broken.onnx')
        mf = json.load(open({str(art.with_name(art.stem + '.manifest.json'))!r}))
        mf['sha256'] = hashlib.sha256(open('broken.onnx', 'rb').read()).hexdigest()
        json.dump(mf, open('broken.manifest.json', 'w'))
    """)
    d = free_dir(ctx, "broken")
    p = ctx.python(code, cwd=d)
    assert p.returncode == 0, p.stderr
    rc, msg, err = ctx.dk("gate", str(d / "broken.onnx"), "--against", str(art), "--min-blocks", "6",
                          "--max-blocks", "6", "--block-time", "0.02", "--no-save")
    warn = [ln.strip() for ln in err.splitlines() if "match" in ln]
    return rc, msg, err, (warn[0][:200] if warn else "no word about it")


# ---------------------------------------------------------------------------------------------------- 5 wrong shapes

def _manifest_case(ctx, text: str):
    art = ctx.private_store("manifest")
    mf = art.with_name(art.stem + ".manifest.json")
    mf.write_text(text)
    return ctx.dk("bench", str(art), "--min-time", "0.1", "--min-iters", "5", "--no-save")


@case("5a", "a manifest that is []")
def c5a(ctx):
    return _manifest_case(ctx, "[]")


@case("5b", "a manifest that is null")
def c5b(ctx):
    return _manifest_case(ctx, "null")


@case("5c", "a manifest without its settings section (right schema, right sha256)")
def c5c(ctx):
    art = ctx.private_store("5c")
    mf = art.with_name(art.stem + ".manifest.json")
    data = json.loads(mf.read_text())
    data.pop("settings")
    return _manifest_case(ctx, json.dumps(data))


@case("5d", "a model-stats cache with wrong types (deploykit models)")
def c5d(ctx):
    ctx.private_store("5d")
    cache = ctx.models / ".cache" / "model-stats.json"
    cache.parent.mkdir(parents=True, exist_ok=True)
    rc, msg, _ = ctx.dk("models", "--family", "cnn")
    cache.write_text(json.dumps({k: {"params": "many", "macs": None} for k in json.loads(cache.read_text())}
                                if cache.is_file() else []))
    return ctx.dk("models", "--family", "cnn")


def _baseline(ctx) -> Path:
    out = ctx.work / "baseline.json"
    if not out.is_file():
        ctx.registry_artifact()
        rc, msg, _ = ctx.dk("baseline", "update", "resnet18", "--resolution", "64", "-o", str(out), "--blocks", "6",
                            "--block-time", "0.02", "--min-time", "0.2")
        assert rc == 0, msg
    return out


def _bad_baseline(ctx, edit) -> Path:
    data = json.loads(_baseline(ctx).read_text())
    edit(data)
    bad = ctx.work / "bad-baseline.json"
    bad.write_text(json.dumps(data))
    return bad


def _gate_baseline(ctx, path, timeout=600):
    return ctx.dk("gate", "resnet18", "--baseline", str(path), "--min-blocks", "6", "--max-blocks", "6",
                  "--block-time", "0.02", "--no-save", timeout=timeout)


@case("5e", "a baseline with block_time NaN")
def c5e(ctx):
    return _gate_baseline(ctx, _bad_baseline(ctx, lambda d: d["reference_workload"]["block_settings"].update(
        block_time=float("nan"))))


@case("5f", "a baseline with threads \"many\"")
def c5f(ctx):
    return _gate_baseline(ctx, _bad_baseline(ctx, lambda d: (d["settings"].update(threads="many"),
                                                             d["target"]["info"].update(threads="many"))))


@case("5g", "a baseline with block_warmup 10^9 (killed after 120 s)")
def c5g(ctx):
    return _gate_baseline(ctx, _bad_baseline(ctx, lambda d: d["reference_workload"]["block_settings"].update(
        block_warmup=10**9)), timeout=120)


@case("5h", "bench --max-time nan")
def c5h(ctx):
    return ctx.dk("bench", "resnet18", "--resolution", "64", "--max-time", "nan", "--min-time", "0.1", "--no-save")


@case("5i", "gate --block-time inf")
def c5i(ctx):
    ctx.registry_artifact()
    return ctx.dk("gate", "resnet18", "--against", "resnet18", "--resolution", "64", "--block-time", "inf",
                  "--no-save", timeout=120)


def _gate_file(ctx, settings: str) -> Path:
    p = ctx.work / "gate.toml"
    p.write_text(f"version = 1\n[settings]\n{settings}\n[[check]]\nmodel = \"resnet18\"\nagainst = \"resnet18\"\n"
                 "resolution = 64\n")
    return p


@case("5j", "gate file with seed = 1.5")
def c5j(ctx):
    ctx.registry_artifact()
    return ctx.dk("gate", "-c", str(_gate_file(ctx, "seed = 1.5\nmin_blocks = 6\nmax_blocks = 6\nblock_time = 0.02")),
                  "--no-save", timeout=300)


@case("5k", "gate file with block_iters = 2.5")
def c5k(ctx):
    ctx.registry_artifact()
    return ctx.dk("gate", "-c", str(_gate_file(ctx, "block_iters = 2.5\nmin_blocks = 6\nmax_blocks = 6\n"
                                               "block_time = 0.02")), "--no-save", timeout=300)


@case("5l", "gate file with block_time = nan (valid TOML)")
def c5l(ctx):
    ctx.registry_artifact()
    return ctx.dk("gate", "-c", str(_gate_file(ctx, "block_time = nan\nmin_blocks = 6\nmax_blocks = 6")),
                  "--no-save", timeout=120)


# ---------------------------------------------------------------------------------------------------- 6 kills

_KILL_AT = """
import os, signal, sys
def _kill(*a, **k):
    os.kill(os.getpid(), signal.SIGKILL)
"""


@case("6a", "export SIGKILLed while writing the artifact, then the same export again")
def c6a(ctx):
    d = free_dir(ctx, "killed-export")
    args = ("export", "resnet18", "--resolution", "64", "--seed", "3", "--models-dir", str(d))
    rc1, _, _ = ctx.dk(*args, prelude=_KILL_AT + "import deploykit.core.atomic as a; a.os.replace = _kill")
    rc, msg, err = ctx.dk(*args)
    return rc, msg, err, f"killed run exit {rc1}; after the next run: {leftovers(d)}"


@case("6b", "quantize SIGKILLed during calibration, then the same quantize again")
def c6b(ctx):
    ctx.registry_artifact()
    shutil.rmtree(ctx.tmp, ignore_errors=True)
    ctx.tmp.mkdir()
    args = ("quantize", "resnet18", "--resolution", "64", "--calib-data", "synthetic", "--calib-size", "4",
            "--fidelity-samples", "2", "--force")
    rc1, _, _ = ctx.dk(*args, prelude=_KILL_AT + "import onnxruntime.quantization as q; q.quantize_static = _kill")
    left1 = leftovers(ctx.tmp, ctx.models)
    rc, msg, err = ctx.dk(*args)
    return rc, msg, err, f"killed run exit {rc1}, left {left1}; after the next run: {leftovers(ctx.tmp, ctx.models)}"


@case("6c", "gate --against-rev SIGKILLed while its export child runs")
def c6c(ctx):
    shutil.rmtree(ctx.tmp, ignore_errors=True)
    ctx.tmp.mkdir()
    repo = ctx.src
    if not (repo / ".git").exists():  # --against-rev with a model name needs deploykit's own git checkout
        repo = ctx.work / "dk-git"
        if not repo.exists():
            shutil.copytree(ctx.src, repo, ignore=shutil.ignore_patterns("models", "reports", "__pycache__"))
            for a in (["init", "-q"], ["add", "."], ["-c", "user.email=a@b", "-c", "user.name=a", "commit", "-qm", "x"]):
                subprocess.run(["git", *a], cwd=repo, check=True, capture_output=True)
    env = ctx.env(PYTHONPATH=str(repo))
    p = subprocess.Popen([PY, "-P", "-m", "deploykit", "gate", "resnet18", "--against-rev", "HEAD", "--resolution",
                          "64", "--no-save"], cwd=ctx.work, env=env, stderr=subprocess.PIPE, text=True)
    child = None
    deadline = time.monotonic() + 120
    while child is None and time.monotonic() < deadline and p.poll() is None:
        child = _child_of(p.pid, "export")
        time.sleep(0.2)
    p.send_signal(signal.SIGKILL)
    p.wait()
    time.sleep(1.0)
    alive = child is not None and Path(f"/proc/{child}").exists() and "Z" not in _state(child)
    if alive:
        os.kill(child, signal.SIGKILL)
    left1 = leftovers(ctx.tmp, ctx.models)
    rc, msg, err = ctx.dk("gate", "resnet18", "--against", "resnet18", "--resolution", "64", "--min-blocks", "6",
                          "--max-blocks", "6", "--block-time", "0.02", "--no-save")
    return rc, msg, err, (f"export child {'still running' if alive else 'gone'} after the kill, left {left1}; after "
                          f"the next gate: {leftovers(ctx.tmp, ctx.models)}")


def _child_of(pid: int, needle: str) -> int | None:
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                stat = (d / "stat").read_text()
                cmd = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid and needle in cmd:
                return int(d.name)
    return None


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "Z"


@case("6d", "bench sent SIGTERM (what CI runners and timeout send) while measuring")
def c6d(ctx):
    ctx.registry_artifact()
    p = subprocess.Popen([PY, "-P", "-m", "deploykit", "bench", "resnet18", "--resolution", "64", "--min-time", "60",
                          "--max-time", "60"], cwd=ctx.work, env=ctx.env(), stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    err = ""
    while time.monotonic() < deadline:
        time.sleep(1)
        if p.poll() is not None:
            break
        if any(ctx.reports.glob("*")) or time.monotonic() > deadline - 100:
            break
    time.sleep(8)  # measuring by now
    p.send_signal(signal.SIGTERM)
    try:
        _, err = p.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        p.kill()
        _, err = p.communicate()
    return p.returncode, last_line(err), err


# ---------------------------------------------------------------------------------------------------- 7 paths

@case("7a", "a manifest beside a user's ONNX with settings.model = \"..\": where does quantize write")
def c7a(ctx):
    art = ctx.registry_artifact()
    d = free_dir(ctx, "escape")
    (d / "store").mkdir()
    shutil.copy(art, d / "user.onnx")
    mf = json.loads(art.with_name(art.stem + ".manifest.json").read_text())
    mf["settings"]["model"] = ".."
    (d / "user.manifest.json").write_text(json.dumps(mf))
    rc, msg, err = ctx.dk("quantize", "user.onnx", "--calib-data", "synthetic", "--calib-size", "4",
                          "--fidelity-samples", "2", "--models-dir", "store/models", cwd=d)
    outside = sorted(str(p.relative_to(d)) for p in d.rglob("int8_*") if "models" not in p.relative_to(d).parts)
    return rc, msg, err, f"int8 files outside the store: {outside}" if outside else "nothing outside the store"


@case("7b", "gate file baseline = \"../../x.json\": where does baseline update -c write")
def c7b(ctx):
    ctx.registry_artifact()
    d = free_dir(ctx, "gfile") / "a" / "b"
    d.mkdir(parents=True)
    (d / "gate.toml").write_text('version = 1\n[[check]]\nmodel = "resnet18"\nbaseline = "../../x.json"\n'
                                 "resolution = 64\n")
    rc, msg, err = ctx.dk("baseline", "update", "-c", str(d / "gate.toml"), "--blocks", "6", "--block-time", "0.02",
                          "--min-time", "0.2")
    out = ctx.work / "gfile" / "x.json"
    return rc, msg, err, f"wrote {out.relative_to(ctx.work)} outside the gate file's folder" if out.exists() \
        else "nothing written outside"


# ---------------------------------------------------------------------------------------------------- 8 tracebacks

@case("8a", "bench resnet18 --resolution 100000")
def c8a(ctx):
    return ctx.dk("bench", "resnet18", "--resolution", "100000", "--no-save", timeout=300)


@case("8b", "quantize with a calibration PNG whose header claims 20000x20000")
def c8b(ctx):
    import struct
    import zlib

    d = free_dir(ctx, "bomb")

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 20000, 20000, 8, 2, 0, 0, 0)) + \
        chunk(b"IDAT", zlib.compress(b"\0" * 1000)) + chunk(b"IEND", b"")
    (d / "bomb.png").write_bytes(png)
    ctx.registry_artifact()
    return ctx.dk("quantize", "resnet18", "--resolution", "64", "--calib-data", str(d), "--fidelity-samples", "1")


@case("8c", "bench an ONNX file whose input has a zero dimension")
def c8c(ctx):
    d = free_dir(ctx, "zero")
    p = ctx.python(textwrap.dedent("""
        import onnx
        from onnx import helper, TensorProto
        x = helper.make_tensor_value_info('x', TensorProto.FLOAT, [1, 3, 0, 8])
        y = helper.make_tensor_value_info('y', TensorProto.FLOAT, [1, 3, 0, 8])
        g = helper.make_graph([helper.make_node('Relu', ['x'], ['y'])], 'g', [x], [y])
        onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid('', 18)]), 'zero.onnx')
    """), cwd=d)
    assert p.returncode == 0, p.stderr
    return ctx.dk("bench", str(d / "zero.onnx"), "--min-time", "0.1", "--no-save")


@case("8d", "export into a full disk (a 2 MB tmpfs; root only)")
def c8d(ctx):
    d = free_dir(ctx, "full")
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(d)]).returncode:
        return None, "skipped: needs root to mount a small tmpfs", ""
    try:
        rc, msg, err = ctx.dk("export", "resnet18", "--resolution", "64", "--models-dir", str(d), "--force")
        return rc, msg, err, leftovers(d)
    finally:
        subprocess.run(["umount", str(d)])


@case("8e", "gate --junit pointing at a folder")
def c8e(ctx):
    ctx.registry_artifact()
    d = free_dir(ctx, "junit-dir")
    t0 = time.monotonic()
    rc, msg, err = ctx.dk("gate", "resnet18", "--against", "resnet18", "--resolution", "64", "--min-blocks", "6",
                          "--max-blocks", "6", "--block-time", "0.05", "--no-save", "--junit", str(d))
    return rc, msg, err, f"after {time.monotonic() - t0:.0f} s"


@case("8f", "baseline update -o pointing at a folder")
def c8f(ctx):
    ctx.registry_artifact()
    d = free_dir(ctx, "out-dir")
    t0 = time.monotonic()
    rc, msg, err = ctx.dk("baseline", "update", "resnet18", "--resolution", "64", "-o", str(d), "--blocks", "6",
                          "--block-time", "0.02", "--min-time", "0.2")
    return rc, msg, err, f"after {time.monotonic() - t0:.0f} s"


@case("8g", "quantize -o pointing at a folder")
def c8g(ctx):
    ctx.registry_artifact()
    d = free_dir(ctx, "q-out-dir.onnx")
    return ctx.dk("quantize", "resnet18", "--resolution", "64", "--calib-data", "synthetic", "--calib-size", "4",
                  "--fidelity-samples", "2", "-o", str(d), "--force")


@case("8h", "bench -t ','")
def c8h(ctx):
    ctx.registry_artifact()
    rc, msg, err = ctx.dk("bench", "resnet18", "--resolution", "64", "-t", ",", "--min-time", "0.1", "--no-save")
    return rc, msg, err, "measured nothing" if "p50" not in err and rc == 0 else ""


@case("8i", "bench --format ','")
def c8i(ctx):
    ctx.registry_artifact()
    d = free_dir(ctx, "fmt")
    rc, msg, err = ctx.dk("bench", "resnet18", "--resolution", "64", "--format", ",", "--min-time", "0.1",
                          "--min-iters", "5", "--report-dir", str(d))
    return rc, msg, err, f"{len(list(d.iterdir()))} report file(s) written"


@case("8j", "bench from a read-only store that holds a valid artifact (read-only mount; root only)")
def c8j(ctx):
    ctx.registry_artifact()
    d = free_dir(ctx, "ro")
    if os.geteuid() != 0:
        shutil.copytree(ctx.models, d / "models")
        for p in d.rglob("*"):
            p.chmod(0o555 if p.is_dir() else 0o444)
        (d).chmod(0o555)
        store = d / "models"
    else:
        src = d / "src"
        shutil.copytree(ctx.models, src)
        store = d / "mnt"
        store.mkdir()
        if subprocess.run(["mount", "--bind", "-o", "ro", str(src), str(store)]).returncode:
            return None, "skipped: cannot bind-mount read-only", ""
    try:
        return ctx.dk("bench", "resnet18", "--resolution", "64", "--min-time", "0.1", "--min-iters", "5", "--no-save",
                      "--models-dir", str(store))
    finally:
        if os.geteuid() == 0:
            subprocess.run(["umount", str(store)])


# ---------------------------------------------------------------------------------------------------- 9, 10

@case("9", "bench in deploykit's own git checkout: does it take .git/index.lock (index rewritten)")
def c9(ctx):
    repo = ctx.work / "dk-git9"
    if not repo.exists():
        shutil.copytree(ctx.src, repo, ignore=shutil.ignore_patterns("models", "reports", "__pycache__", ".git"))
        for a in (["init", "-q"], ["add", "."], ["-c", "user.email=a@b", "-c", "user.name=a", "commit", "-qm", "x"]):
            subprocess.run(["git", *a], cwd=repo, check=True, capture_output=True)
    ctx.registry_artifact()
    time.sleep(1.1)
    os.utime(repo / "README.md")  # stat-dirty: a git status refreshes (rewrites) the index under index.lock
    before = (repo / ".git" / "index").stat().st_mtime_ns
    rc, msg, err = ctx.dk("bench", "resnet18", "--resolution", "64", "--min-time", "0.1", "--min-iters", "5",
                          "--no-save", PYTHONPATH=str(repo))
    after = (repo / ".git" / "index").stat().st_mtime_ns
    return rc, msg, err, "the index was rewritten (index.lock taken)" if after != before else "index untouched"


@case("10", "the OpenVINO compile-check child killed by SIGKILL from outside (an OOM killer)")
def c10(ctx):
    ctx.python("")  # warm
    rc, msg, _ = ctx.dk("quantize", "resnet18", "--resolution", "64", "--calib-data", "synthetic", "--calib-size", "4",
                        "--fidelity-samples", "2")
    assert rc == 0, msg
    int8 = next((ctx.models / "resnet18").glob("int8_*.onnx"))
    p = subprocess.Popen([PY, "-P", "-m", "deploykit", "bench", str(int8), "-t", "openvino", "--min-time", "0.1",
                          "--no-save", "--no-cache"], cwd=ctx.work, env=ctx.env(), stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and p.poll() is None:
        child = _child_of(p.pid, "_compile_child")
        if child:
            os.kill(child, signal.SIGKILL)
            break
        time.sleep(0.05)
    _, err = p.communicate(timeout=300)
    return p.returncode, last_line(err), err


# ---------------------------------------------------------------------------------------------------- main

def run(src: Path, work: Path, only: list[str] | None, out_path: Path | None = None) -> dict:
    ctx = Ctx(src, work)
    results = {}
    for cid, (title, fn) in CASES.items():
        if only and cid not in only:
            continue
        t0 = time.monotonic()
        ctx.models = ctx.shared
        try:
            out = fn(ctx)
        except Exception as exc:  # the case's own set-up failed
            out = (None, f"case set-up failed: {type(exc).__name__}: {str(exc)[-300:]}", "")
        rc, msg = out[0], out[1]
        note = out[3] if len(out) > 3 else ""
        results[cid] = {"title": title, "rc": rc, "message": msg, "observed": note,
                        "seconds": round(time.monotonic() - t0, 1)}
        print(f"{cid:4} rc={rc} | {msg[:160]} | {note}", file=sys.stderr, flush=True)
        if out_path is not None:
            prev = json.loads(out_path.read_text()) if out_path.is_file() else {}
            out_path.write_text(json.dumps({**prev, cid: results[cid]}, indent=2))
    return results


# the deploykit command(s) of each case, as a user would type them (the set-up around them is in the case's function)
COMMANDS = {
    "1a": "cd elsewhere && deploykit bench /abs/ext/repvgg_a0/model.onnx",
    "1b": "cd ext/regnety_004 && deploykit quantize model.onnx --calib-data synthetic --no-verify",
    "1c": "deploykit fuse /abs/ext/poolformer_s12/model.onnx -o fused/f.onnx",
    "1d": "deploykit inspect /abs/ext/repvgg_a0/model.onnx",
    "1e": "cd repo && deploykit gate model.onnx --against-rev HEAD",
    "2": "cd hostile && deploykit bench int8.onnx -t openvino   (hostile/deploykit/__init__.py present)",
    "3a": "deploykit export resnet18 -o x.onnx; bench x.onnx; export --seed 5 -o x.onnx; bench x.onnx",
    "3b": "cd a && deploykit export resnet18 --weights w.pt; cd b && deploykit bench a/m/.../fp32_*.onnx",
    "3c": "echo garbage > models/resnet18/*.ref-b1-s0.npz; deploykit bench resnet18",
    "4a": "deploykit bench resnet18 -t openvino; (zero 4 KB of the blob); deploykit bench resnet18 -t openvino",
    "4b": "deploykit gate broken.onnx --against fp32.onnx",
    "5a": "echo '[]' > x.manifest.json; deploykit bench x.onnx",
    "5b": "echo null > x.manifest.json; deploykit bench x.onnx",
    "5c": "(manifest without settings) deploykit bench x.onnx",
    "5d": "(model-stats.json with params \"many\") deploykit models --family cnn",
    "5e": "deploykit gate resnet18 --baseline bad.json   (block_time NaN)",
    "5f": "deploykit gate resnet18 --baseline bad.json   (threads \"many\")",
    "5g": "deploykit gate resnet18 --baseline bad.json   (block_warmup 10^9)",
    "5h": "deploykit bench resnet18 --max-time nan",
    "5i": "deploykit gate resnet18 --against resnet18 --block-time inf",
    "5j": "deploykit gate -c gate.toml   (seed = 1.5)",
    "5k": "deploykit gate -c gate.toml   (block_iters = 2.5)",
    "5l": "deploykit gate -c gate.toml   (block_time = nan)",
    "6a": "deploykit export resnet18 (SIGKILL at the rename); deploykit export resnet18",
    "6b": "deploykit quantize resnet18 (SIGKILL in calibration); deploykit quantize resnet18",
    "6c": "deploykit gate resnet18 --against-rev HEAD (SIGKILL during the export); deploykit gate ...",
    "6d": "deploykit bench resnet18 --min-time 60 & kill -TERM $!",
    "7a": "deploykit quantize user.onnx --models-dir store/models   (user.manifest.json: model \"..\")",
    "7b": "deploykit baseline update -c a/b/gate.toml   (baseline = \"../../x.json\")",
    "8a": "deploykit bench resnet18 --resolution 100000",
    "8b": "deploykit quantize resnet18 --calib-data bomb/   (PNG header 20000x20000)",
    "8c": "deploykit bench zero.onnx   (input [1, 3, 0, 8])",
    "8d": "deploykit export resnet18 --models-dir /mnt/2MB-tmpfs",
    "8e": "deploykit gate resnet18 --against resnet18 --junit some-folder/",
    "8f": "deploykit baseline update resnet18 -o some-folder/",
    "8g": "deploykit quantize resnet18 -o some-folder.onnx/",
    "8h": "deploykit bench resnet18 -t ','",
    "8i": "deploykit bench resnet18 --format ','",
    "8j": "deploykit bench resnet18 --models-dir /read-only-mount",
    "9": "touch README.md; deploykit bench resnet18   (deploykit run from a git checkout)",
    "10": "deploykit bench int8.onnx -t openvino; kill -KILL <the compile-check child>",
}


def table(before: dict, after: dict) -> str:
    rows = ["| case | what | command | before: exit, message | after: exit, message |", "|---|---|---|---|---|"]

    def cell(r):
        if not r:
            return "(not run)"
        msg = r["message"]
        if not msg or msg.startswith("energy: unavailable") or (r["rc"] == 0 and not msg.startswith("error")):
            msg = "(ran; no error)" if r["rc"] == 0 else msg
        obs = f"; {r['observed']}" if r.get("observed") else ""
        src = f" [on {r['note']}]" if r.get("note") else ""
        return f"**{r['rc']}** `{msg.replace('|', '/')}`{obs.replace('|', '/')}{src}"

    for cid in sorted(set(before) | set(after), key=lambda c: (int("".join(ch for ch in c if ch.isdigit())), c)):
        b, a = before.get(cid), after.get(cid)
        cmd = COMMANDS.get(cid, "").replace("|", "/")
        rows.append(f"| {cid} | {(a or b)['title']} | `{cmd}` | {cell(b)} | {cell(a)} |")
    return "\n".join(rows) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--src", type=Path, default=Path(__file__).resolve().parents[1])
    ap.add_argument("--work", type=Path, default=None, help="scratch folder [default: a new temporary one]")
    ap.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    ap.add_argument("--cases", default=None, help="comma-separated case ids")
    ap.add_argument("--table", nargs=2, type=Path, metavar=("BEFORE", "AFTER"), help="render two result files")
    args = ap.parse_args()
    if args.table:
        sys.stdout.write(table(json.loads(args.table[0].read_text()), json.loads(args.table[1].read_text())))
        return
    import tempfile

    work = args.work or Path(tempfile.mkdtemp(prefix="dk-hardening-"))
    res = run(args.src, work, args.cases.split(",") if args.cases else None, args.out)
    if not args.out:
        print(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
