"""The fuzzing of tests/unit/test_fuzz_readers.py run against another deploykit source tree (an older commit), counting
instead of failing: what each reader raised other than InputError, or how often it hung. The readers are the ones
every version has (manifests, reports, baselines down to the gate's preparation, gate files, ONNX files, the
model-stats cache, the reference cache).

    git archive e2da273 | (mkdir -p /tmp/dk-before && tar -x -C /tmp/dk-before)
    python benchmarks/fuzz_readers_compare.py /tmp/dk-before 2000 > before.json
"""
import collections, json, signal, sys, tempfile
from pathlib import Path
src, n = sys.argv[1], int(sys.argv[2])
sys.path[:0] = [src, str(Path(__file__).resolve().parents[1])]
from hypothesis import given, settings, HealthCheck, strategies as st
import tests.unit.test_fuzz_readers as F
from tests.samples import baseline_report, manifest, tiny_onnx, GATE_FILE
from deploykit.core.errors import InputError, DeployKitError
import deploykit
assert deploykit.__file__.startswith(src), deploykit.__file__
found = collections.defaultdict(collections.Counter)
runs = collections.Counter()
folder = Path(tempfile.mkdtemp())
S = settings(max_examples=n, deadline=None, derandomize=True, database=None,
             suppress_health_check=list(HealthCheck))

def record(name, fn):
    runs[name] += 1
    def alarm(*a): raise TimeoutError("hang")
    signal.signal(signal.SIGALRM, alarm); signal.alarm(20)
    try:
        fn()
    except InputError:
        pass
    except DeployKitError as e:
        found[name][f"{type(e).__name__} (one line)"] += 1
    except TimeoutError:
        found[name]["HANG (> 20 s)"] += 1
    except Exception as e:
        found[name][f"{type(e).__name__}: {str(e)[:70]}"] += 1
    finally:
        signal.alarm(0)

@S
@given(st.data())
def manifests(data):
    from deploykit.export.artifacts import read_manifest, reusable
    p = folder / "a.onnx"; p.write_bytes(b"x")
    F._write(folder, "a.manifest.json", F.json_text(data, manifest()))
    def go():
        m = read_manifest(p)
        reusable(p, {"model": "resnet18"})
        if m is not None:  # what resolve/quantize then read from it
            from deploykit.export.source import _from_manifest
            _from_manifest(m, "x"); m["settings"]["model"]
    record("manifest", go)

@S
@given(st.data())
def reports(data):
    from deploykit.report.schema import load_report
    p = F._write(folder, "r.json", F.json_text(data, baseline_report()))
    record("report", lambda: load_report(p))

@S
@given(st.data())
def baselines(data):
    from deploykit.gate.run import load_baseline, prepare
    from deploykit.gate.config import GateCheck
    from deploykit.bench.interleave import block_config_from
    p = F._write(folder, "b.json", F.json_text(data, baseline_report()))
    def go():
        rep = load_baseline(p)
        cfg = block_config_from(rep["reference_workload"]["block_settings"])
        if cfg.warmup > 10000 or cfg.min_iters > 10**6 or not (cfg.max_time < 3600):
            raise RuntimeError(f"unbounded block settings accepted (would hang): warmup {cfg.warmup}")
        prepare([GateCheck(name="c", candidate="resnet18", mode="baseline", reference=str(p), target="ort")], tmp=folder)
    record("baseline", go)

@S
@given(st.data())
def gatefiles(data):
    from deploykit.gate.gatefile import load_gate_file
    lines = GATE_FILE.splitlines()
    kind = data.draw(st.sampled_from(["value", "value", "add", "drop", "text"]))
    if kind == "value":
        i = data.draw(st.sampled_from([i for i, ln in enumerate(lines) if "=" in ln]))
        lines[i] = lines[i].split("=")[0] + "= " + F._toml_value(data)
    elif kind == "add":
        key = data.draw(st.sampled_from(["baseline", "against_rev", "threads", "batch", "target", "tolerance", "metric", "time_budget", "strict", "correction", "baseline_drift", "x"]))
        lines.insert(data.draw(st.integers(0, len(lines))), f"{key} = {F._toml_value(data)}")
    elif kind == "drop":
        del lines[data.draw(st.integers(0, len(lines) - 1))]
    text = "\n".join(lines) if kind != "text" else data.draw(st.text(max_size=300))
    p = F._write(folder, "gate.toml", text)
    def go():
        checks, s = load_gate_file(p)
        import math
        for k, v in s.items():
            if isinstance(v, float) and not math.isfinite(v):
                raise RuntimeError(f"non-finite setting accepted: {k}")
            if k in ("seed", "block_iters", "block_warmup", "min_blocks", "max_blocks") and not isinstance(v, int):
                raise RuntimeError(f"non-integer {k} accepted")
        if s.get("block_warmup", 0) > 10000:
            raise RuntimeError("block_warmup above 10^4 accepted (would hang)")
    record("gate file", go)

ONNX = tiny_onnx(folder / "valid.onnx").read_bytes()

@S
@given(st.data())
def onnxfiles(data):
    from deploykit.onnxio.files import load_onnx, image_input_shape
    kind = data.draw(st.sampled_from(["flip", "flip", "truncate", "insert", "bytes"]))
    b = bytearray(ONNX)
    if kind == "flip":
        for i in data.draw(st.lists(st.integers(0, len(b) - 1), min_size=1, max_size=6)):
            b[i] = data.draw(st.integers(0, 255))
    elif kind == "truncate":
        b = b[:data.draw(st.integers(0, len(b) - 1))]
    elif kind == "insert":
        at = data.draw(st.integers(0, len(b)))
        b[at:at] = data.draw(st.binary(min_size=1, max_size=16))
    else:
        b = bytearray(data.draw(st.binary(max_size=800)))
    p = F._write(folder, "f.onnx", bytes(b))
    def go():
        for ext in (True, False):
            try:
                m = load_onnx(p, load_external_data=ext)
            except InputError:
                continue
            try:
                image_input_shape(m, 1, 8, where="f")
            except DeployKitError:
                pass
    record("onnx", go)

@S
@given(st.data())
def statscache(data):
    from deploykit.models.registry import _load_stats_cache
    (folder / ".cache").mkdir(exist_ok=True)
    F._write(folder / ".cache", "model-stats.json", F.json_text(data, {"k": {"params": 10, "macs": 20}}))
    def go():
        c = _load_stats_cache(folder)
        for v in c.values():
            v["params"] / 1e6; v["macs"] / 1e9
    record("model-stats cache", go)

@S
@given(st.data())
def refcache(data):
    import numpy as np
    from deploykit.onnxio.reference import load_reference, save_reference
    p = folder / "r.npz"
    save_reference(p, np.zeros((1, 3, 4, 4), np.float32), np.ones((1, 10), np.float32))
    good = p.read_bytes()
    kind = data.draw(st.sampled_from(["flip", "truncate", "bytes"]))
    if kind == "flip":
        b = bytearray(good)
        for i in data.draw(st.lists(st.integers(0, len(b) - 1), min_size=1, max_size=8)):
            b[i] ^= data.draw(st.integers(1, 255))
        p.write_bytes(bytes(b))
    elif kind == "truncate":
        p.write_bytes(good[:data.draw(st.integers(0, len(good) - 1))])
    else:
        p.write_bytes(data.draw(st.binary(max_size=600)))
    def go():
        load_reference(p)  # a cache: anything but None/arrays (or an error telling to --force) is a finding
    record("reference cache", go)

for f in (manifests, reports, baselines, gatefiles, onnxfiles, statscache, refcache):
    f()
print(json.dumps({"runs": dict(runs), "total": sum(runs.values()),
                  "found": {k: dict(v) for k, v in found.items()}}, indent=1))
