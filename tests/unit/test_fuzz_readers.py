"""Fuzzing the file readers with Hypothesis: whatever bytes a file holds, each reader either loads it or says why in
one line (deploykit's InputError) -- never another exception, never a hang; a cache reader treats whatever it cannot
use as absent. Inputs: valid documents with one part replaced or removed, arbitrary JSON values (NaN and Infinity
included), arbitrary bytes, and for ONNX files valid graphs with flipped, truncated or inserted bytes.

Readers: artifact manifests, cached reference outputs, the model-stats cache, OpenVINO's blob index, TensorRT's engine
records (caches); reports, baselines (down to what the gate prepares from one before measuring) and gate files (user
files); ONNX files.

CI runs DEPLOYKIT_FUZZ_EXAMPLES (default 200) examples per reader. A longer campaign:
    DEPLOYKIT_FUZZ_EXAMPLES=2000 python -m pytest tests/unit/test_fuzz_readers.py -q
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from deploykit.core.errors import DeployKitError, InputError
from tests.samples import GATE_FILE, baseline_report, manifest, tiny_onnx

EXAMPLES = int(os.environ.get("DEPLOYKIT_FUZZ_EXAMPLES", "200"))
HANG_S = 20  # one example taking longer than this is a hang
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=os.environ.get("DEPLOYKIT_FUZZ_RANDOM") is None,
                database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.function_scoped_fixture])

leaf = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70), st.floats(allow_nan=True, allow_infinity=True),
                 st.text(max_size=12), st.sampled_from(["", "..", "../x", "/etc/passwd", "nan", "1e309", "AB", "ort",
                                                        "resnet18", "int8", "fp32", "\x00", "many"]))
json_values = st.recursive(leaf, lambda c: st.one_of(st.lists(c, max_size=4),
                                                     st.dictionaries(st.text(max_size=8), c, max_size=4)),
                           max_leaves=12)


@contextlib.contextmanager
def no_hang(seconds: int = HANG_S):
    """A reader that does not return within ``seconds`` fails the example (instead of hanging the suite)."""

    def alarm(signum, frame):
        raise AssertionError(f"the reader did not return within {seconds} s")

    old = signal.signal(signal.SIGALRM, alarm)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def _paths(doc, prefix=()):
    yield prefix
    if isinstance(doc, dict):
        for k, v in doc.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            yield from _paths(v, prefix + (i,))


def _mutate(doc, data):
    """``doc`` with one part (chosen by Hypothesis) replaced by an arbitrary JSON value, removed, or doubled."""
    import copy

    doc = copy.deepcopy(doc)
    paths = [p for p in _paths(doc) if p]
    path = data.draw(st.sampled_from(paths), label="path")
    parent = doc
    for k in path[:-1]:
        parent = parent[k]
    action = data.draw(st.sampled_from(["replace", "remove", "scale"]), label="action")
    if action == "remove":
        del parent[path[-1]]
    elif action == "scale" and isinstance(parent[path[-1]], (int, float)) and not isinstance(parent[path[-1]], bool):
        parent[path[-1]] = parent[path[-1]] * data.draw(st.sampled_from([-1, 0, 0.5, 1e9, 2.5]), label="factor")
    else:
        parent[path[-1]] = data.draw(json_values, label="value")
    return doc


def json_text(data, sample: dict | None) -> str:
    """A JSON document: a mutated ``sample`` (mostly), any JSON value, or text that is not JSON."""
    kind = data.draw(st.sampled_from(["mutated", "mutated", "mutated", "any", "text"] if sample else ["any", "text"]),
                     label="kind")
    if kind == "mutated":
        return json.dumps(_mutate(sample, data))
    if kind == "any":
        return json.dumps(data.draw(json_values, label="doc"))
    return data.draw(st.text(max_size=200), label="text")


def _why(exc: InputError) -> str:
    """A coarse label of an error for Hypothesis' statistics (what kind of refusal)."""
    text = exc.one_line()
    for key in ("not valid JSON", "does not match the report schema", "must be", "unknown key", "not a finite",
                "not a valid ONNX file", "fails the ONNX checker", "not text", "reference workload", "version",
                "no checks", "baseline", "not valid TOML"):
        if key in text:
            return "InputError: " + key
    return "InputError: other"


def _write(folder: Path, name: str, content: str | bytes) -> Path:
    p = folder / name
    p.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8", "surrogatepass"))
    return p


@pytest.fixture(scope="module")
def folder():
    with tempfile.TemporaryDirectory(prefix="dk-fuzz-") as d:
        yield Path(d)


# ------------------------------------------------------------------------------------------------------- caches

@FUZZ
@given(st.data())
def test_manifest_reader_returns_a_valid_manifest_or_none(folder, data):
    from deploykit.core.validate import check
    from deploykit.export.artifacts import MANIFEST_JSON_SCHEMA, read_manifest, reusable

    onnx_path = folder / "a.onnx"
    onnx_path.write_bytes(b"not read by the manifest reader")
    _write(folder, "a.manifest.json", json_text(data, manifest()))
    with no_hang():
        m = read_manifest(onnx_path)
        event("absent (invalid)" if m is None else "loaded")
        assert m is None or isinstance(m, dict)
        if m is not None:
            check(m, MANIFEST_JSON_SCHEMA, "manifest")
            assert m["settings"]["model"] not in (".", "..") and "/" not in m["settings"]["model"]
        assert reusable(onnx_path, {"model": "resnet18"}) is None  # the file's hash never matches


@FUZZ
@given(st.data())
def test_model_stats_cache_reader_returns_usable_entries_or_nothing(folder, data):
    from deploykit.models.registry import _load_stats_cache

    (folder / ".cache").mkdir(exist_ok=True)
    _write(folder / ".cache", "model-stats.json", json_text(data, {"k": {"params": 10, "macs": 20}}))
    with no_hang():
        cache = _load_stats_cache(folder)
    assert isinstance(cache, dict)
    for v in cache.values():
        assert isinstance(v["params"], int) and isinstance(v["macs"], int) and v["params"] >= 0


@FUZZ
@given(st.data())
def test_openvino_blob_index_reader_returns_records_or_nothing(folder, data):
    from deploykit.runtimes.openvino import BLOB_INDEX, _blob_index

    _write(folder, BLOB_INDEX, json_text(data, {"1.blob": {"sha256": "0" * 64, "bytes": 3}}))
    with no_hang():
        index = _blob_index(folder)
    assert isinstance(index, dict)
    assert all(isinstance(v["sha256"], str) and isinstance(v["bytes"], int) for v in index.values())


@FUZZ
@given(st.data())
def test_tensorrt_engine_record_reader_decides_without_crashing(folder, data):
    from deploykit.runtimes.tensorrt import TensorrtRuntime

    wanted = {"format": 1, "onnx_sha256": "0" * 64, "plan": {}, "tensorrt": "10", "gpu": "x", "compute_capability": "9.0"}
    engine = _write(folder, "e.engine", b"engine bytes")
    import hashlib

    record = {"identity": wanted, "engine_sha256": hashlib.sha256(b"engine bytes").hexdigest(), "bytes": 12}
    sidecar = _write(folder, "e.json", json_text(data, record))
    with no_hang():
        got, why = TensorrtRuntime._cached(engine, sidecar, wanted)
    assert got in (None, b"engine bytes") and isinstance(why, str)


@FUZZ
@given(st.data())
def test_reference_cache_reader_returns_arrays_of_its_key_or_none(folder, data):
    import io

    import numpy as np

    from deploykit.onnxio.reference import load_reference, reference_key, save_reference

    key = reference_key("a" * 64, None, 0, (1, 3, 4, 4))
    p = folder / "r.npz"
    save_reference(p, np.zeros((1, 3, 4, 4), np.float32), np.ones((1, 10), np.float32), key)
    good = p.read_bytes()
    kind = data.draw(st.sampled_from(["flip", "truncate", "bytes", "members"]), label="kind")
    if kind == "flip":
        b = bytearray(good)
        for i in data.draw(st.lists(st.integers(0, len(b) - 1), min_size=1, max_size=8), label="at"):
            b[i] ^= data.draw(st.integers(1, 255), label="xor")
        p.write_bytes(bytes(b))
    elif kind == "truncate":
        p.write_bytes(good[:data.draw(st.integers(0, len(good) - 1), label="length")])
    elif kind == "bytes":
        p.write_bytes(data.draw(st.binary(max_size=600), label="bytes"))
    else:  # an npz whose members have other names, types or shapes
        members = data.draw(st.dictionaries(st.sampled_from(["input", "output", "key", "x"]),
                                            st.sampled_from([np.zeros(3), np.array("x"), np.array([[np.nan]]),
                                                             np.zeros((1, 3, 4, 4), np.float32)]), max_size=3))
        buf = io.BytesIO()
        np.savez(buf, **members)
        p.write_bytes(buf.getvalue())
    with no_hang():
        got = load_reference(p, key)
    assert got is None or (got[0].dtype.kind == "f" and np.all(np.isfinite(got[1])))


# ------------------------------------------------------------------------------------------------------- user files

@FUZZ
@given(st.data())
def test_report_reader_loads_or_says_why(folder, data):
    from deploykit.report.schema import load_report

    p = _write(folder, "r.json", json_text(data, baseline_report()))
    with no_hang():
        try:
            rep = load_report(p)
        except InputError as exc:
            event(_why(exc))
            return
    event("loaded")
    assert rep["schema"] == "deploykit.report"


def _finite_tree(obj) -> bool:
    if isinstance(obj, float):
        return math.isfinite(obj)
    if isinstance(obj, dict):
        return all(_finite_tree(v) for v in obj.values())
    if isinstance(obj, list):
        return all(_finite_tree(v) for v in obj)
    return True


@FUZZ
@given(st.data())
def test_baseline_reader_and_gate_preparation_load_or_say_why(folder, data):
    """A baseline goes through everything the gate does with it before measuring: load, reference-workload blocks,
    block settings (bounded: a baseline cannot make a block run for hours), target, shape and runtime options."""
    from deploykit.bench.interleave import block_config_from
    from deploykit.gate.config import MAX_BLOCK_ITERS, MAX_BLOCK_WARMUP, GateCheck
    from deploykit.gate.run import load_baseline, prepare

    p = _write(folder, "b.json", json_text(data, baseline_report()))
    with no_hang():
        try:
            rep = load_baseline(p)
        except InputError as exc:
            event(_why(exc))
            return
        assert _finite_tree(rep)
        cfg = block_config_from(rep["reference_workload"]["block_settings"])
        assert cfg.warmup <= MAX_BLOCK_WARMUP and cfg.min_iters <= MAX_BLOCK_ITERS and cfg.max_time <= 3600
        check = GateCheck(name="c", candidate="resnet18", mode="baseline", reference=str(p), target="ort")
        try:
            (prep,) = prepare([check], tmp=folder)
        except DeployKitError as exc:  # e.g. a baseline measured on another target: one line
            assert isinstance(exc, (InputError,)) or exc.exit_code in (2, 3)
            event("loaded, refused by the gate: " + _why(exc))
            return
    event("loaded and prepared")
    assert prep.options.threads is None or isinstance(prep.options.threads, int)


def _toml_value(data) -> str:
    return data.draw(st.one_of(
        st.sampled_from(["nan", "inf", "-inf", "-1", "0", "1.5", "2.5", "1e9", "1000000000", "true", "[]", "{}",
                         '"../../x.json"', '"/etc/x.json"', '""', '"x"', "[1, 2]", '["ort", "openvino"]', "1979-05-27",
                         '"5%"', '"nan%"', '"-5%"', '"1e400%"', "{p50 = \"5%\"}", "{p50 = nan}"]),
        st.integers(-10**12, 10**12).map(str),
        st.floats(allow_nan=True, allow_infinity=True).map(lambda f: repr(f).replace("nan", "nan").replace("inf", "inf")),
        st.text(max_size=10).map(json.dumps)), label="toml value")


@FUZZ
@given(st.data())
def test_gate_file_reader_loads_or_says_why(folder, data):
    """Gate files: a value of the sample replaced by a tricky TOML value, a key added, a line dropped, or any text."""
    from deploykit.gate.config import MAX_BLOCK_WARMUP
    from deploykit.gate.gatefile import load_gate_file

    lines = GATE_FILE.splitlines()
    kind = data.draw(st.sampled_from(["value", "value", "add", "drop", "text"]), label="kind")
    if kind == "value":
        i = data.draw(st.sampled_from([i for i, ln in enumerate(lines) if "=" in ln]), label="line")
        lines[i] = lines[i].split("=")[0] + "= " + _toml_value(data)
    elif kind == "add":
        key = data.draw(st.sampled_from(["baseline", "against_rev", "threads", "batch", "target", "tolerance",
                                         "metric", "time_budget", "strict", "correction", "baseline_drift", "x"]))
        at = data.draw(st.integers(0, len(lines)), label="at")
        lines.insert(at, f"{key} = {_toml_value(data)}")
    elif kind == "drop":
        del lines[data.draw(st.integers(0, len(lines) - 1), label="drop")]
    text = "\n".join(lines) if kind != "text" else data.draw(st.text(max_size=300), label="text")
    p = _write(folder, "gate.toml", text)
    with no_hang():
        try:
            checks, gate_settings = load_gate_file(p)
        except InputError as exc:
            event(_why(exc))
            return
    event("loaded")
    assert checks and all(c.batch is None or isinstance(c.batch, int) for c in checks)
    assert _finite_tree(gate_settings)
    assert gate_settings.get("block_warmup", 0) <= MAX_BLOCK_WARMUP


# ------------------------------------------------------------------------------------------------------- ONNX files

@pytest.fixture(scope="module")
def onnx_bytes(folder) -> bytes:
    return tiny_onnx(folder / "valid.onnx").read_bytes()


@FUZZ
@given(st.data())
def test_onnx_reader_loads_or_says_why(folder, onnx_bytes, data):
    """Damaged ONNX files (protobuf headers and fields with flipped, dropped or inserted bytes, truncations, random
    bytes): loaded and checked, or one InputError -- and a file that loads has an image input that resolves or is
    refused in one line too."""
    from deploykit.onnxio.files import image_input_shape, load_onnx

    kind = data.draw(st.sampled_from(["flip", "flip", "truncate", "insert", "bytes"]), label="kind")
    b = bytearray(onnx_bytes)
    if kind == "flip":
        for i in data.draw(st.lists(st.integers(0, len(b) - 1), min_size=1, max_size=6), label="at"):
            b[i] = data.draw(st.integers(0, 255), label="byte")
    elif kind == "truncate":
        b = b[:data.draw(st.integers(0, len(b) - 1), label="length")]
    elif kind == "insert":
        at = data.draw(st.integers(0, len(b)), label="at")
        b[at:at] = data.draw(st.binary(min_size=1, max_size=16), label="inserted")
    else:
        b = bytearray(data.draw(st.binary(max_size=800), label="bytes"))
    p = _write(folder, "f.onnx", bytes(b))
    for external in (True, False):
        with no_hang():
            try:
                model = load_onnx(p, load_external_data=external)
            except InputError as exc:
                event(_why(exc))
                continue
            event("loaded")
            try:
                image_input_shape(model, 1, 8, where="f.onnx")
            except DeployKitError:
                pass


# ------------------------------------------------------------------------ issue 25: the readers behind core/guarded
# Each reads through core/guarded (a regular file, a size cap, NaN refused): whatever the file holds, a cache reader
# returns something usable or nothing, a table or input reader loads or says why in one line.

def _peak_sample() -> dict:
    best = {"fp32": {"gflops": 150.0, "target": "ort", "kernel": "gemm", "shape": "512x512x512"}}
    return {"schema": "deploykit.peak", "version": 1, "machine_id": "m",
            "entries": {"2": {"threads": 2, "best": best, "kernels": [], "theoretical": {}, "warnings": []}}}


@FUZZ
@given(st.data())
def test_peak_cache_reader_returns_a_usable_entry_or_none(folder, data):
    from deploykit.bench import peak as P
    from deploykit.bench.fingerprint import machine_id

    _write(folder, f"peak-{machine_id()}.json", json_text(data, _peak_sample()))
    with no_hang():
        entry = P.cached_entry(folder, 2)
        event("absent (invalid)" if entry is None else "loaded")
        e = P.efficiency(macs=10**9, batch=1, p50_ms=10.0, precision="fp32", threads=2, cache_dir=folder, cpu={},
                         freq={})
        share = e["share_of_measured"]
        assert share is None or (math.isfinite(share) and 0 < share < 1e8)


@FUZZ
@given(st.data())
def test_complexity_cache_reader_returns_counts_or_counts_again(folder, data):
    from deploykit.core.validate import read_cache_json
    from deploykit.passes.inspect import COMPLEXITY_SCHEMA

    sample = {"params": 10, "macs": 100, "macs_attention": 0, "macs_by_op": {"Conv": 100}, "uncounted_nodes": 0,
              "source": "x"}
    p = _write(folder, "complexity.json", json_text(data, sample))
    with no_hang():
        c = read_cache_json(p, schema=COMPLEXITY_SCHEMA)
        event("absent (invalid)" if c is None else "loaded")
        assert c is None or (isinstance(c["macs"], int) and 0 <= c["macs"] <= 10**16)


def _results_csv(data) -> str:
    from deploykit.report.results import COLUMN_NAMES

    required = ["cell", "model", "target", "status"] if data.draw(st.booleans(), label="required") else []
    cols = required + data.draw(st.lists(st.sampled_from(COLUMN_NAMES + ["x", ""]), min_size=1, max_size=12),
                                label="cols")
    cell = st.one_of(st.sampled_from(["", "nan", "inf", "-inf", "-1", "1e309", "ok", "failed", "=1+1", "../x.json",
                                      "/etc/passwd", "1.5", "2"]), st.text(max_size=8))
    rows = data.draw(st.lists(st.lists(cell, min_size=len(cols), max_size=len(cols)), max_size=6), label="rows")
    import csv
    import io

    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(cols)
    w.writerows(rows)
    text = buf.getvalue()
    return text[: data.draw(st.integers(0, len(text)), label="cut")] if data.draw(st.booleans()) else text


@FUZZ
@given(st.data())
def test_results_table_readers_load_or_say_why(folder, data):
    from deploykit.report.results import read_results
    from deploykit.studyreport.analysis import load_results

    t = folder / "table"
    t.mkdir(exist_ok=True)
    _write(t, "results.csv", _results_csv(data))
    with no_hang():
        for read in (lambda: read_results(t / "results.csv", absolute_reports=True),
                     lambda: load_results(t / "results.csv")):
            try:
                read()
                event("loaded")
            except InputError as exc:
                event(_why(exc))


@FUZZ
@given(st.data())
def test_cell_report_reader_loads_or_says_why(folder, data):
    from deploykit.report.results import load_report, row_from_report
    from tests.sample_reports import make_report, samples

    p = _write(folder, "cell.json", json_text(data, make_report(samples(5.0, n=20))))
    with no_hang():
        try:
            row_from_report(load_report(p), report_path="cell.json")
            event("loaded")
        except InputError as exc:
            event(_why(exc))


def _toml_value(data):
    return data.draw(st.one_of(st.sampled_from(["nan", "inf", "-1", "1e300", "0", "2.5", '"x"', "[]", "true",
                                                "9223372036854775807", '"../x"', "[1, nan]"]),
                               st.integers(-2**40, 2**40).map(str)), label="value")


@FUZZ
@given(st.data())
def test_study_file_reader_loads_or_says_why(folder, data):
    from deploykit.sweep.spec import load_study, spec_from

    keys = ["min_time", "max_time", "min_iters", "warmup", "cell_timeout", "duration", "latency_bound",
            "percentile", "min_queries", "calib_size", "nonsense"]
    bench = "\n".join(f"{k} = {_toml_value(data)}" for k in data.draw(st.lists(st.sampled_from(keys), max_size=4,
                                                                               unique=True), label="keys"))
    text = f'models = ["resnet18"]\ntarget = ["ort"]\nbatch = {_toml_value(data)}\n[bench]\n{bench}\n'
    if data.draw(st.booleans(), label="raw"):
        text = data.draw(st.text(max_size=120), label="text")
    p = _write(folder, "study.toml", text)
    with no_hang():
        try:
            load_study(p)
            spec_from((), study=str(p))
            event("loaded")
        except DeployKitError as exc:
            event(_why(exc) if isinstance(exc, InputError) else "UsageError")


@FUZZ
@given(st.data())
def test_user_conf_reader_accepts_or_says_why(folder, data):
    from deploykit.spec.loadgen import USER_CONF_KEYS, check_user_conf

    key = st.one_of(st.sampled_from(sorted(USER_CONF_KEYS)), st.text(alphabet="abcdefgh_", min_size=1, max_size=8))
    value = st.one_of(st.sampled_from(["1e300", "nan", "inf", "-1", "0x10", "1e11", "5", "0.5", "fast", ""]),
                      st.integers(-2**70, 2**70).map(str))
    lines = data.draw(st.lists(st.tuples(st.sampled_from(["*.Server.", "m.Offline.", "", "*.*."]), key, value),
                               max_size=5), label="lines")
    text = "\n".join(f"{a}{k} = {v}" for a, k, v in lines)
    if data.draw(st.booleans(), label="raw"):
        text = data.draw(st.text(max_size=120), label="text")
    p = _write(folder, "user.conf", text)
    with no_hang():
        try:
            check_user_conf(str(p))
            event("accepted")
        except InputError as exc:
            event(_why(exc))


@FUZZ
@given(st.data())
def test_run_spec_reader_loads_or_says_why(folder, data):
    from deploykit.spec.run import RunSpec, read_spec

    p = _write(folder, "spec.json", json_text(data, RunSpec(model="resnet18", resolution=64).to_dict()))
    with no_hang():
        try:
            read_spec(p)
            event("loaded")
        except DeployKitError as exc:
            event(_why(exc) if isinstance(exc, InputError) else type(exc).__name__)
