"""bench/memory.py: the /proc status reader, the high-water-mark reset (on this real process), the sampling
fallback, GPU memory through a fake NVML, and the artifact's size on disk."""

from __future__ import annotations

import os
import time

import numpy as np
import pytest

from deploykit.bench.memory import (CLEAR_REFS, MB, MemoryTracker, artifact_files, artifact_mb, parse_status,
                                    read_status, reset_peak)
from tests.fakes import FakeNvml

STATUS_TEXT = """Name:\tpython
Umask:\t0022
State:\tR (running)
VmPeak:\t 3060000 kB
VmHWM:\t  812345 kB
VmRSS:\t  501234 kB
RssAnon:\t  400000 kB
Threads:\t4
"""

needs_clear_refs = pytest.mark.skipif(not os.access(CLEAR_REFS, os.W_OK) or read_status() is None,
                                      reason="/proc/self/clear_refs is not writable here (not Linux, or restricted)")


def _touch(mb: int) -> np.ndarray:
    """``mb`` MB of new resident memory: a fresh anonymous mapping, written (a process that freed memory before,
    as a test worker has, would otherwise get pages back from its allocator that are resident already)."""
    import mmap

    a = np.frombuffer(mmap.mmap(-1, mb << 20), dtype=np.uint8)
    a[:] = 1  # written: resident, not just reserved
    return a


def test_parse_status_reads_kb_fields_as_bytes():
    st = parse_status(STATUS_TEXT)
    assert st["VmRSS"] == 501234 * 1024 and st["VmHWM"] == 812345 * 1024 and st["RssAnon"] == 400000 * 1024
    assert "Threads" not in st and "Name" not in st


def test_read_status_of_this_process():
    st = read_status()
    if st is None:
        pytest.skip("no /proc/self/status (not Linux)")
    assert st["VmRSS"] > 0 and st["VmHWM"] >= st["VmRSS"]
    assert read_status("/nonexistent/status") is None


def test_reset_peak_writes_5_or_says_why(tmp_path):
    target = tmp_path / "clear_refs"
    target.write_text("")
    assert reset_peak(target) is None and target.read_text() == "5"
    why = reset_peak(tmp_path)  # a directory cannot be written
    assert why and str(tmp_path) in why


@needs_clear_refs
def test_clear_refs_resets_the_high_water_mark_of_this_process():
    a = _touch(200)
    del a
    st = read_status()
    assert st["VmHWM"] - st["VmRSS"] > 150 * MB  # the freed array is still the peak
    assert reset_peak() is None
    st = read_status()
    assert st["VmHWM"] - st["VmRSS"] < 50 * MB


@needs_clear_refs
def test_tracker_peak_covers_the_window_and_skips_the_excluded_part():
    m = MemoryTracker()
    m.start()
    a = _touch(120)
    m.loaded()
    del a
    with m.excluded():  # e.g. deploykit's read-back session: not the runtime's memory
        b = _touch(300)
        del b
    r = m.finish()
    assert r["method"].startswith("VmHWM") and "clear_refs" in r["method"]
    assert r["rss_before_load_mb"] > 0
    assert r["rss_after_load_mb"] >= r["rss_before_load_mb"] + 100
    assert 100 <= r["rss_increase_mb"] < 250, r
    assert r["rss_peak_mb"] == pytest.approx(r["rss_before_load_mb"] + r["rss_increase_mb"], abs=0.01)
    assert r["gpu_peak_mb"] is None and r["gpu_method"] is None
    assert m.finish() is r  # idempotent


def test_tracker_falls_back_to_sampling_when_clear_refs_is_not_writable(tmp_path):
    if read_status() is None:
        pytest.skip("no /proc/self/status (not Linux)")
    m = MemoryTracker(clear_refs_path=tmp_path, rss_interval=0.005)  # a directory: not writable
    m.start()
    a = _touch(150)
    time.sleep(0.1)  # several samples while it is resident
    del a
    r = m.finish()
    assert "sampled" in r["method"] and "not writable" in r["method"]
    assert r["rss_increase_mb"] >= 120, r


def test_tracker_without_proc_status_says_unavailable(tmp_path):
    m = MemoryTracker(status_path=tmp_path / "missing")
    m.start()
    m.loaded()
    r = m.finish()
    assert r["method"].startswith("unavailable") and "not readable" in r["method"]
    assert r["rss_before_load_mb"] is None and r["rss_peak_mb"] is None and r["rss_increase_mb"] is None


def test_gpu_memory_of_this_process_through_nvml():
    nv = FakeNvml()
    nv.processes = [(os.getpid(), 300 << 20), (os.getpid() + 1, 5 << 30)]
    m = MemoryTracker(gpu=0, nvml=nv, gpu_interval=0.005)
    m.start()
    nv.processes = [(os.getpid(), 900 << 20), (os.getpid() + 1, 5 << 30)]
    time.sleep(0.05)
    nv.processes = [(os.getpid(), 400 << 20)]
    r = m.finish()
    assert r["gpu_peak_mb"] == pytest.approx(900) and "this process" in r["gpu_method"]
    assert nv.shutdowns == 1


def test_gpu_memory_falls_back_to_the_device_delta():
    nv = FakeNvml()
    nv.processes = []  # NVML does not list this process (e.g. inside a container's PID namespace)
    nv.device_used = 2 << 30
    m = MemoryTracker(gpu=0, nvml=nv, gpu_interval=0.005)
    m.start()
    nv.device_used = (2 << 30) + (700 << 20)
    time.sleep(0.05)
    r = m.finish()
    assert r["gpu_peak_mb"] == pytest.approx(700) and "minus its value before the load" in r["gpu_method"]


def test_gpu_memory_unavailable_is_said():
    r = MemoryTracker(gpu=0, nvml=FakeNvml(init_error="Driver Not Loaded"))
    r.start()
    out = r.finish()
    assert out["gpu_peak_mb"] is None and "Driver Not Loaded" in out["gpu_method"]


def test_artifact_size_counts_external_data_and_openvino_bin(tmp_path):
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.ones((256, 256), dtype=np.float32), "w")
    g = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 256])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 256])], [w])
    model = helper.make_model(g)
    path = tmp_path / "m.onnx"
    onnx.save(model, str(path), save_as_external_data=True, location="m.onnx.data", size_threshold=0)
    files = artifact_files(path)
    assert [f.name for f in files] == ["m.onnx", "m.onnx.data"]
    assert artifact_mb(path) == pytest.approx(sum(f.stat().st_size for f in files) / MB, abs=1e-3)
    assert artifact_mb(path) >= 0.25  # 256 KB of weights live in the data file
    xml, binf = tmp_path / "ir.xml", tmp_path / "ir.bin"
    xml.write_text("<net/>")
    binf.write_bytes(b"\0" * 4096)
    assert artifact_files(xml) == [xml, binf]
    assert artifact_mb(xml) == pytest.approx((6 + 4096) / MB, abs=1e-3)
