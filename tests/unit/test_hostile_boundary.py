"""The hostile cases of issue 25, one class of the issue per section: each is a real ``deploykit`` command in a
fresh process (or the sweep executor / cache reader it runs), with real files, links, FIFOs and device files; each
failed on the code before the guarded boundary (``core/guarded.py``) and passes now. Every command runs under a
time bound (a FIFO or a device file must not hang it) and, where the old code read without end, a memory limit.
The table of the cases before and after is in benchmarks/hardening_cases.md ("Issue 25")."""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import resource
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.sample_reports import make_report, samples, write_report

HANG_S = 90  # a command that has not exited by then hangs


def dk(*args, env: dict | None = None, cwd: Path | None = None, timeout: float = HANG_S, mem_gb: float | None = None):
    """``python -m deploykit ARGS`` in a fresh process, killed (and the test failed) past ``timeout`` seconds;
    ``mem_gb``: its address-space limit (a command that reads /dev/zero must not take the machine's memory)."""
    def limit():
        if mem_gb:
            cap = int(mem_gb * 2**30)
            resource.setrlimit(resource.RLIMIT_AS, (cap, cap))

    try:
        return subprocess.run([sys.executable, "-m", "deploykit", *map(str, args)], capture_output=True, text=True,
                              env={**os.environ, **(env or {})}, cwd=cwd, timeout=timeout, preexec_fn=limit)
    except subprocess.TimeoutExpired:
        pytest.fail(f"deploykit {' '.join(map(str, args))} hung: no exit within {timeout} s")


def clean_error(proc, *needles: str, code: int = 2) -> None:
    """Exit ``code``, no traceback, the last stderr line one ``error: ...`` holding ``needles``."""
    lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
    assert proc.returncode == code, f"exit {proc.returncode}: {proc.stderr[-2000:]}"
    assert "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert lines and lines[-1].startswith("error: "), proc.stderr[-2000:]
    for n in needles:
        assert n.lower() in lines[-1].lower(), f"{n!r} not in {lines[-1]!r}"


def snapshot(folder: Path) -> dict:
    """Every file under ``folder`` (links not followed): its SHA-256 and mtime."""
    out = {}
    for p in sorted(folder.rglob("*")):
        st = p.lstat()
        out[str(p)] = (hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() and not p.is_symlink() else "",
                       st.st_mtime_ns, st.st_mode)
    return out


@pytest.fixture
def victim(tmp_path) -> Path:
    """A folder outside every output folder, with files a hostile link points at."""
    v = tmp_path / "victim"
    (v / "sub").mkdir(parents=True)
    (v / "precious.txt").write_text("do not touch\n")
    (v / "sub" / "data.json").write_text(json.dumps({"keep": True}))
    return v


def sweep_table(folder: Path, reports: list[dict]) -> Path:
    """A sweep-like folder: reports under cells/ and a results table whose ``report`` column points at them."""
    from deploykit.report.results import row_from_report, write_results

    rows = []
    for i, r in enumerate(reports):
        path = write_report(folder / "cells" / f"c{i}" / "r.json", r)
        rows.append(row_from_report(r, report_path=path.relative_to(folder)))
    write_results(rows, folder)
    return folder


# ------------------------------------------------------------------------ 1. code execution from a checkpoint

class Evil:
    """Unpickled by a loader that runs code: creates the marker file."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.fixture
def evil_torch_home(tmp_path) -> tuple[Path, Path]:
    home, marker = tmp_path / "torch", tmp_path / "PWNED"
    ck = home / "hub" / "checkpoints"
    ck.mkdir(parents=True)
    with open(ck / "resnet18-f37072fd.pth", "wb") as fh:  # the published name of tv:resnet18's weights
        pickle.dump({"fc.weight": Evil(marker)}, fh)
    return home, marker


@pytest.mark.parametrize("command", ["export", "bench"])
def test_1_a_malicious_cached_checkpoint_never_runs(tmp_path, evil_torch_home, command):
    home, marker = evil_torch_home
    extra = ["--min-iters", "1", "--min-time", "0", "--no-save"] if command == "bench" else []
    p = dk(command, "tv:resnet18", "--pretrained", "--resolution", "32", "--models-dir", tmp_path / "m", *extra,
           env={"TORCH_HOME": str(home)})
    assert not marker.exists(), "the pickle's code ran"
    clean_error(p, "resnet18-f37072fd.pth", "not the published weights")


# ------------------------------------------------------------------------ 2. links and special files

def test_2_a_sweep_cell_folder_that_is_a_link_is_replaced_not_emptied(tmp_path, victim):
    from deploykit.sweep.executor import LocalExecutor
    from deploykit.sweep.spec import BenchSettings, Cell

    cell = Cell(model="resnet18", target="ort", precision="fp32", batch=1, resolution=64, label="resnet18",
                family="cnn")
    out = tmp_path / "sweep"
    (out / "cells").mkdir(parents=True)
    os.symlink(victim, out / "cells" / cell.safe_key)
    before = snapshot(victim)
    ex = LocalExecutor(BenchSettings(cell_timeout=60), out, command=lambda c, rdir: [
        sys.executable, "-c", "import sys; open(sys.argv[1] + '/r.txt', 'w').write('x')", str(rdir)])
    list(ex.run([cell]))
    assert snapshot(victim) == before
    assert not (out / "cells" / cell.safe_key).is_symlink() and (out / "cells" / cell.safe_key / "r.txt").is_file()


def test_2_b_a_log_that_is_a_link_is_not_written_through(tmp_path, victim):
    from deploykit.sweep.executor import LocalExecutor
    from deploykit.sweep.spec import BenchSettings

    out = tmp_path / "sweep"
    (out / "cells").mkdir(parents=True)
    os.symlink(victim / "precious.txt", out / "cells" / "peak.log")
    before = snapshot(victim)
    ok, _ = LocalExecutor(BenchSettings(), out).prelude(["peak", "--threads", "nan"], timeout=120)
    assert not ok
    assert snapshot(victim) == before
    assert not (out / "cells" / "peak.log").is_symlink()


def test_2_c_a_fifo_as_the_results_table_does_not_hang_report(tmp_path):
    (tmp_path / "s").mkdir()
    os.mkfifo(tmp_path / "s" / "results.csv")
    clean_error(dk("report", tmp_path / "s" / "results.csv", "-o", tmp_path / "r.md"), "is a FIFO")


def test_2_d_a_fifo_as_the_study_file_does_not_hang_sweep(tmp_path):
    os.mkfifo(tmp_path / "study.toml")
    clean_error(dk("sweep", "--study", tmp_path / "study.toml", "--dry-run"), "is a FIFO")


def test_2_e_a_device_file_as_a_report_does_not_exhaust_memory(tmp_path):
    os.symlink("/dev/zero", tmp_path / "r.json")
    clean_error(dk("compare", tmp_path / "r.json", mem_gb=4), "is a device file")


def test_2_f_a_fifo_as_an_explicit_report_input_does_not_hang_compare(tmp_path):
    os.mkfifo(tmp_path / "r.json")
    clean_error(dk("compare", tmp_path / "r.json"), "is a FIFO")


def test_2_g_a_results_table_whose_report_path_leads_outside_is_refused(tmp_path, victim):
    out = sweep_table(tmp_path / "a", [make_report(samples(10.0, seed=1), target="ort")])
    b = sweep_table(tmp_path / "b", [make_report(samples(7.0, seed=2), target="openvino")])
    write_report(victim / "r.json", make_report(samples(1.0, seed=3), target="openvino"))
    table = b / "results.csv"
    table.write_text(table.read_text().replace("cells/c0/r.json", "../victim/r.json"))
    (b / "results.parquet").unlink()
    clean_error(dk("compare", out, b, "--by", "target"), "leads outside")


def test_2_h_a_fifo_as_the_peak_cache_is_an_absent_cache(tmp_path):
    import signal

    from deploykit.bench import peak as P
    from deploykit.bench.fingerprint import machine_id

    os.mkfifo(tmp_path / f"peak-{machine_id()}.json")

    def alarm(signum, frame):
        raise AssertionError("reading the peak cache hung on a FIFO")

    old = signal.signal(signal.SIGALRM, alarm)
    signal.alarm(20)
    try:
        assert P.cached_entry(tmp_path, 2) is None
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def test_2_i_no_command_changes_a_file_outside_its_output_folder_given_hostile_links(tmp_path, victim):
    """The victim folder's every file (hash, mtime, mode) is the same after commands that meet links to it where
    they write: a sweep cell folder, a sweep's cells/ log, a results table in an output folder, a report -o."""
    from deploykit.sweep.executor import LocalExecutor
    from deploykit.sweep.spec import BenchSettings, Cell

    before = snapshot(victim)
    out = sweep_table(tmp_path / "s", [make_report(samples(10.0, seed=1), target="ort")])
    cell = Cell(model="resnet18", target="ort", precision="fp32", batch=1, resolution=64, label="resnet18",
                family="cnn")
    os.symlink(victim / "sub", out / "cells" / cell.safe_key)
    os.symlink(victim / "precious.txt", out / "cells" / "bench.log")
    ex = LocalExecutor(BenchSettings(cell_timeout=60), out, command=lambda c, rdir: [
        sys.executable, "-c", "import sys; print('x', file=sys.stderr)"])
    list(ex.run([cell]))
    os.symlink(victim / "precious.txt", tmp_path / "r.md")
    dk("report", out, "-o", tmp_path / "r.md")
    assert snapshot(victim) == before


# ------------------------------------------------------------------------ 3. output folders and resume

def _existing_sweep(tmp_path, min_time: float = 0.0) -> Path:
    """A sweep folder as `deploykit sweep resnet18 -t ort --resolution 64 --min-time MIN_TIME` leaves it."""
    from deploykit.sweep.run import record_run
    from deploykit.sweep.spec import spec_from

    out = tmp_path / "sweep"
    spec = spec_from(("resnet18",), targets="ort", resolution="64", bench={"min_time": min_time})
    out.mkdir()
    record_run(out, spec, ["sweep", "resnet18"])
    return out


def test_3_a_a_second_sweep_into_a_folder_in_use_is_refused_naming_the_holder(tmp_path):
    import fcntl

    out = tmp_path / "sweep"
    out.mkdir()
    with open(out / ".lock", "w") as fh:  # what a running sweep holds (flock), and who it is
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        fh.write(json.dumps({"pid": 4242, "host": "node7", "command": "deploykit sweep resnet18"}))
        fh.flush()
        p = dk("sweep", "resnet18", "-t", "ort", "--resolution", "32", "-o", out, "--no-peak", "--cell-timeout", "1")
    clean_error(p, "in use by pid 4242 on node7", "deploykit sweep resnet18")
    assert not (out / "results.csv").exists()


def test_3_b_an_existing_sweep_json_is_not_replaced_without_resume(tmp_path):
    out = _existing_sweep(tmp_path)
    before = (out / "sweep.json").read_text()
    clean_error(dk("sweep", "resnet18", "-t", "ort", "--resolution", "64", "-o", out, "--dry-run"),
                "already holds a sweep")
    assert (out / "sweep.json").read_text() == before


def test_3_c_resume_with_other_settings_is_refused_unless_forced(tmp_path):
    out = _existing_sweep(tmp_path, min_time=0.0)
    clean_error(dk("sweep", "resnet18", "-t", "ort", "--resolution", "64", "-o", out, "--resume", "--min-time", "7",
                   "--dry-run"), "min_time 0.0 -> 7.0", "--force-resume")
    p = dk("sweep", "resnet18", "-t", "ort", "--resolution", "64", "-o", out, "--resume", "--force-resume",
           "--min-time", "7", "--dry-run")
    assert p.returncode == 0, p.stderr


# ------------------------------------------------------------------------ 4. caches and tables

def _peak_cache(folder: Path, best: dict) -> None:
    from deploykit.bench.fingerprint import machine_id

    folder.mkdir(parents=True, exist_ok=True)
    entry = {"threads": 2, "best": best, "kernels": [], "theoretical": {}, "warnings": []}
    (folder / f"peak-{machine_id()}.json").write_text(json.dumps(
        {"schema": "deploykit.peak", "version": 1, "machine_id": machine_id(), "entries": {"2": entry}}))


@pytest.mark.parametrize("gflops", [1e-300, "many", -5.0])
def test_4_a_a_corrupt_peak_cache_is_absent_not_an_absurd_share(tmp_path, gflops):
    from deploykit.bench import peak as P

    _peak_cache(tmp_path, {"fp32": {"gflops": gflops, "target": "ort", "kernel": "k", "shape": "1x1x1"}})
    e = P.efficiency(macs=10**9, batch=1, p50_ms=10.0, precision="fp32", threads=2, cache_dir=tmp_path, cpu={},
                     freq={})
    assert e["share_of_measured"] is None and e["peak_measured_gflops"] is None


def test_4_b_a_corrupt_complexity_cache_is_counted_again(tmp_path):
    from deploykit.core.hashing import file_sha256
    from deploykit.passes.inspect import COMPLEXITY_CACHE_VERSION, cached_complexity
    from tests.samples import tiny_onnx

    model = tiny_onnx(tmp_path / "t.onnx")
    sha = file_sha256(model)
    fresh = cached_complexity(model, sha, (1, 3, 8, 8))
    name = f"v{COMPLEXITY_CACHE_VERSION}-{sha[:32]}-1x3x8x8.json"
    (tmp_path / "c" / "complexity").mkdir(parents=True)
    (tmp_path / "c" / "complexity" / name).write_text(json.dumps({**fresh, "macs": -10**20, "params": "many"}))
    assert cached_complexity(model, sha, (1, 3, 8, 8), cache_dir=tmp_path / "c") == fresh


def test_4_c_a_parquet_table_of_millions_of_rows_is_refused_before_it_is_expanded(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    import numpy as np

    n = 3_000_000  # dictionary- and run-length encoded: a small file, gigabytes once read into Python objects
    zeros = pa.array(np.zeros(n, dtype=np.int32))

    def col(value):
        return pa.DictionaryArray.from_arrays(zeros, pa.array([value]))

    table = pa.table({"cell": col("c"), "model": col("m"), "target": col("ort"), "status": col("ok"),
                      "reason": col("x" * 200)})
    pq.write_table(table, tmp_path / "results.parquet", compression="zstd")
    assert (tmp_path / "results.parquet").stat().st_size < 2_000_000
    clean_error(dk("compare", tmp_path / "results.parquet", mem_gb=3), "rows (at most")


def test_4_d_a_table_with_inf_and_negative_latencies_renders(tmp_path):
    reports = [make_report(samples(10.0 * (i + 1), seed=i), resolution=r) for i, r in enumerate((32, 64, 96))]
    out = sweep_table(tmp_path / "s", reports)
    (out / "results.parquet").unlink()
    lines = (out / "results.csv").read_text().splitlines()
    head = lines[0].split(",")
    col = head.index("p50_ms")
    for i, bad in ((1, "inf"), (2, "-5")):
        cells = lines[i].split(",")
        cells[col] = bad
        lines[i] = ",".join(cells)
    (out / "results.csv").write_text("\n".join(lines) + "\n")
    p = dk("report", out, "-o", tmp_path / "r.html")
    assert p.returncode == 0 and "Traceback" not in p.stderr, p.stderr[-3000:]


# ------------------------------------------------------------------------ 5. numbers without bounds

@pytest.mark.parametrize("args,needle", [
    (["sweep", "resnet18", "-t", "ort", "--cell-timeout", "nan", "--dry-run"], "not a finite number"),
    (["bench", "resnet18", "--seed", "-1"], "--seed"),
    (["bench", "resnet18", "--threads", "1000", "--min-iters", "1", "--min-time", "0"], "--threads"),
    (["loadgen", "resnet18", "--scenario", "server", "--qps", "1e12", "--resolution", "32"], "--qps"),
    (["loadgen", "resnet18", "--scenario", "offline", "--duration", "1e9", "--resolution", "32"], "--duration"),
    (["loadgen", "resnet18", "--scenario", "offline", "--min-queries", "100000000000", "--resolution", "32"],
     "--min-queries"),
    (["report", "RESULTS", "--n-boot", "10000000000"], "--n-boot"),
])
def test_5_numbers_out_of_bounds_are_one_line_errors(tmp_path, args, needle):
    if args[0] == "loadgen":
        pytest.importorskip("mlperf_loadgen")
    if "RESULTS" in args:
        args = [str(sweep_table(tmp_path / "s", [make_report(samples(10.0))])) if a == "RESULTS" else a for a in args]
    if args[0] == "sweep":
        args += ["-o", str(tmp_path / "o")]
    clean_error(dk(*args, "--models-dir", tmp_path / "m") if args[0] in ("bench", "loadgen") else dk(*args), needle)


@pytest.mark.parametrize("key", ["min_iters", "cell_timeout"])
def test_5_nan_in_a_study_bench_table_is_refused_before_any_cell(tmp_path, key):
    (tmp_path / "s.toml").write_text(f'models = ["resnet18"]\ntarget = ["ort"]\n[bench]\n{key} = nan\n')
    clean_error(dk("sweep", "--study", tmp_path / "s.toml", "--dry-run", "-o", tmp_path / "o"), key, "finite")


@pytest.mark.parametrize("line,needle", [
    ("*.Offline.target_qps = 1e300", "out of range"),
    ("*.Offline.target_qsp = 5", "not a key LoadGen reads"),
    ("*.Offline.min_query_count = 100000000000", "out of range"),
])
def test_5_user_conf_values_are_checked_against_loadgen_keys_and_bounds(tmp_path, line, needle):
    pytest.importorskip("mlperf_loadgen")
    (tmp_path / "user.conf").write_text(line + "\n")
    clean_error(dk("loadgen", "resnet18", "--scenario", "offline", "--user-conf", tmp_path / "user.conf",
                   "--resolution", "32", "--models-dir", tmp_path / "m"), needle)


def test_5_compare_on_nan_samples_is_an_error_or_not_comparable_never_not_significant(tmp_path):
    a = sweep_table(tmp_path / "a", [make_report(samples(10.0, seed=1), target="ort")])
    b = sweep_table(tmp_path / "b", [make_report(samples(10.0, seed=2), target="openvino")])
    rep = json.loads((b / "cells" / "c0" / "r.json").read_text())
    rep["timing"]["samples_ms"][0] = "NaN"
    (b / "cells" / "c0" / "r.json").write_text(json.dumps(rep).replace('"NaN"', "NaN"))
    # given as an input: the file and what is wrong with it, one line
    clean_error(dk("compare", a / "cells" / "c0" / "r.json", b / "cells" / "c0" / "r.json", "--by", "target"),
                "r.json", "NaN")
    # reached through a table's report column: that pair is not comparable (not "not significant")
    p = dk("compare", a, b, "--by", "target", "--json")
    assert p.returncode == 0, p.stderr
    entry = json.loads(p.stdout)["rows"][0]["values"]["openvino"]
    assert entry["significant"] is None and entry["test"] == "not comparable"


# ------------------------------------------------------------------------ 7. text that becomes markup

HOSTILE_LABEL = "<img src=http://x.invalid/p.png>[a](javascript:alert(1))|$x"


def live_markup(text: str) -> list[str]:
    """HTML tags, links / images and table-breaking pipes of HOSTILE_LABEL that Markdown would render as such."""
    import re

    return re.findall(r"<img|(?<!\\)\]\(javascript:|(?<!\\)\|\$x", text)


def test_7_a_compare_csv_labels_are_not_spreadsheet_formulas(tmp_path):
    a = write_report(tmp_path / "a.json", make_report(samples(10.0, seed=1), model="=HYPERLINK(\"http://x\")"))
    b = write_report(tmp_path / "b.json", make_report(samples(7.0, seed=2), model="=HYPERLINK(\"http://x\")",
                                                      target="openvino"))
    p = dk("compare", a, b, "--by", "target", "-o", tmp_path / "c.csv")
    assert p.returncode == 0, p.stderr
    import csv

    cells = [c for row in csv.reader((tmp_path / "c.csv").open()) for c in row]
    assert not [c for c in cells if c.startswith(("=", "+", "@"))], cells


def test_7_b_compare_markdown_labels_are_text(tmp_path):
    a = write_report(tmp_path / "a.json", make_report(samples(10.0, seed=1), model=HOSTILE_LABEL))
    b = write_report(tmp_path / "b.json", make_report(samples(7.0, seed=2), model=HOSTILE_LABEL, target="openvino"))
    p = dk("compare", a, b, "--by", "target", "-o", tmp_path / "c.md")
    assert p.returncode == 0, p.stderr
    assert not live_markup((tmp_path / "c.md").read_text())


def test_7_c_report_markdown_and_plots_with_markup_and_dollars_in_names(tmp_path):
    reports = [make_report(samples(10.0 * (i + 1), seed=i), model=HOSTILE_LABEL + "$", resolution=r)
               for i, r in enumerate((32, 64, 96))]
    out = sweep_table(tmp_path / "s", reports)
    p = dk("report", out, "-o", tmp_path / "r.md")
    assert p.returncode == 0 and "Traceback" not in p.stderr, p.stderr[-3000:]
    assert not live_markup((tmp_path / "r.md").read_text())


def test_7_d_bench_markdown_and_csv_reports_escape_labels():
    from deploykit.report.render import markdown_table, to_csv

    r = make_report(samples(10.0), model="=cmd|' /C calc'!A0")
    assert "\n=cmd" not in to_csv([r]) and ",=cmd" not in to_csv([r])
    assert not live_markup(markdown_table([make_report(samples(10.0), model=HOSTILE_LABEL)]))


# ------------------------------------------------------------------------ 8. leftovers

def test_8_temporary_folders_follow_the_swept_scheme(tmp_path):
    """dk-peak-*, dk-loadgen-*, dk-ortprof-* were named outside the scheme (never swept after a kill): the
    sources name none of them now, and a folder a killed run left in the scheme is removed by the next run."""
    root = Path(__file__).resolve().parents[2] / "deploykit"
    stray = [str(p) for p in root.rglob("*.py") for pre in ("dk-peak-", "dk-loadgen-", "dk-ortprof-")
             if f'"{pre}"' in p.read_text()]
    assert not stray
    from deploykit.core import atomic

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    left = tmp_path / f"{atomic.TMP_MARK}{dead.pid}@{atomic._host()}-loadgen.abc"
    left.mkdir()
    (left / "trace.json").write_text("x" * 1000)
    time.sleep(0.01)
    with atomic.run_dir(tmp_path, "peak"):
        pass
    assert not left.exists()


# ------------------------------------------------------------------------ 9. per-layer numbers

def _if_model(path: Path) -> Path:
    import numpy as np
    import onnx
    from onnx import TensorProto as T
    from onnx import helper as h

    w = h.make_tensor("W", T.FLOAT, [192, 192], np.random.default_rng(0).random(192 * 192).astype(np.float32))

    def branch(name):
        return h.make_graph([h.make_node("MatMul", ["x", "W"], [name + "_m"], name=name + "_mm"),
                             h.make_node("Relu", [name + "_m"], [name + "_y"], name=name + "_relu")], name, [],
                            [h.make_tensor_value_info(name + "_y", T.FLOAT, [192, 192])])

    g = h.make_graph([h.make_node("ReduceSum", ["x"], ["s"], keepdims=0, name="sum"),
                      h.make_node("Greater", ["s", "zero"], ["c"], name="gt"),
                      h.make_node("If", ["c"], ["y"], then_branch=branch("then"), else_branch=branch("else"),
                                  name="the_if")], "g",
                     [h.make_tensor_value_info("x", T.FLOAT, [192, 192])],
                     [h.make_tensor_value_info("y", T.FLOAT, [192, 192])],
                     initializer=[w, h.make_tensor("zero", T.FLOAT, [], [0.0])])
    onnx.save(h.make_model(g, opset_imports=[h.make_opsetid("", 18)]), path)
    return path


def test_9_a_per_layer_time_does_not_count_an_if_subgraph_twice(tmp_path):
    """A real ONNX Runtime profile of a graph whose If runs a MatMul: the If's kernel time holds the MatMul's,
    which is also timed on its own; the layer total must stay within the profiled inferences' own time."""
    import numpy as np
    import onnxruntime as ort

    from deploykit.bench.layers import summarize_layers
    from deploykit.runtimes.base import LayerProfile
    from deploykit.runtimes.ort import ort_run_ms, parse_ort_profile

    so = ort.SessionOptions()
    so.enable_profiling = True
    so.profile_file_prefix = str(tmp_path / "prof")
    so.intra_op_num_threads = 1
    sess = ort.InferenceSession(str(_if_model(tmp_path / "if.onnx")), so, providers=["CPUExecutionProvider"])
    x = np.random.default_rng(1).random((192, 192)).astype(np.float32)
    for _ in range(13):
        sess.run(None, {"x": x})
    events = json.loads(Path(sess.end_profiling()).read_text())
    wall = ort_run_ms(events)[3:]
    s = summarize_layers(LayerProfile(runtime="onnxruntime", profiler="ort", iterations=10,
                                      records=parse_ort_profile(events, skip_runs=3), wall_ms=tuple(wall)))
    assert "If" not in {t["op_type"] for t in s["by_op_type"]}
    assert s["total_ms"] <= max(wall) * 1.05, (s["total_ms"], wall)


def test_9_b_openvino_does_not_label_an_fp32_if_as_int8(tmp_path):
    """A real OpenVINO compile of the same fp32 graph: its If (whose condition is a boolean, stored as u8) is not
    an int8 layer in the read-back summary."""
    ov = pytest.importorskip("openvino")
    from deploykit.runtimes.openvino import summarize_openvino_runtime

    cm = ov.Core().compile_model(str(_if_model(tmp_path / "if.onnx")), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    s = summarize_openvino_runtime(cm.get_runtime_model())
    assert s["int8_layers"] == {}, s["runtime_precisions"]


# ------------------------------------------------------------------------ 6. runtime failures mid-run

def test_6_a_model_that_fails_on_some_inferences_is_one_line_with_what_was_measured(tmp_path):
    """A real graph that fails in ONNX Runtime now and then (a random index one past the end on ~1% of runs):
    wherever the failure falls (reference run, first inference, warm-up or the timed loop) it is one line and
    exit 2; in the timed loop the line says how many inferences were timed before it."""
    import onnx
    from onnx import TensorProto as T
    from onnx import helper as h

    nodes = [h.make_node("RandomUniform", [], ["r"], shape=[1], low=0.0, high=1.01, dtype=T.FLOAT),
             h.make_node("Cast", ["r"], ["i"], to=T.INT64), h.make_node("Gather", ["one", "i"], ["g"]),
             h.make_node("ReduceSum", ["g"], ["gs"], keepdims=0), h.make_node("Mul", ["x", "gs"], ["y"])]
    g = h.make_graph(nodes, "flaky", [h.make_tensor_value_info("x", T.FLOAT, [1, 3, 8, 8])],
                     [h.make_tensor_value_info("y", T.FLOAT, [1, 3, 8, 8])],
                     initializer=[h.make_tensor("one", T.FLOAT, [1], [1.0])])
    onnx.save(h.make_model(g, opset_imports=[h.make_opsetid("", 18)]), tmp_path / "flaky.onnx")
    p = dk("bench", tmp_path / "flaky.onnx", "--min-iters", "100000", "--min-time", "0", "--max-time", "60",
           "--warmup", "1", "--no-save", "--threads", "1", "--energy", "off")
    if "timed loop" in p.stderr:
        clean_error(p, "timed inference(s) before it", "out of data bounds")
    else:
        clean_error(p, "failed", "out of data bounds")


def test_6_b_a_model_the_runtime_fails_on_while_quantizing_is_one_line(tmp_path):
    """A real graph ONNX Runtime fails on at every run (an index one past the end): quantizing it ends in one line,
    exit 2, wherever the failure falls (its reference run, calibration), never ONNX Runtime's stack."""
    import onnx
    from onnx import TensorProto as T
    from onnx import helper as h

    from tests.samples import tiny_onnx

    base = onnx.load(str(tiny_onnx(tmp_path / "t.onnx", shape=(1, 3, 8, 8))))
    g = base.graph
    g.initializer.extend([h.make_tensor("one", T.FLOAT, [1], [1.0]), h.make_tensor("idx", T.INT64, [1], [1])])
    g.node.insert(0, h.make_node("Gather", ["one", "idx"], ["gone"], name="bad_gather"))
    g.node.insert(1, h.make_node("Mul", ["input", "gone"], ["scaled"], name="scale"))
    g.node[2].input[0] = "scaled"  # the conv now reads the broken branch
    onnx.save(base, tmp_path / "broken.onnx")
    p = dk("quantize", tmp_path / "broken.onnx", "--calib-data", "synthetic", "--calib-size", "4",
           "--fidelity-samples", "2", "--models-dir", tmp_path / "m", "-o", tmp_path / "q.onnx")
    clean_error(p)
    assert not (tmp_path / "q.onnx").exists()
