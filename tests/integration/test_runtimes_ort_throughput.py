"""The ort target's throughput mode on a real ONNX Runtime session: N concurrent runs on worker threads."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from deploykit.bench.pipeline import run_benchmark
from deploykit.core.config import BenchConfig
from deploykit.core.errors import UsageError
from deploykit.report.schema import build_report
from deploykit.runtimes.base import ModelInput, get_runtime
from deploykit.runtimes.options import RuntimeOptions

FAST = BenchConfig(resolution=64, warmup=2, min_iters=20, min_time=0.2, max_time=20, bootstrap=200, energy="off",
                   idle_time=0)


SHAPE = (1, 3, 64, 64)


def _loaded(resnet18_64, **settings):
    rt = get_runtime("ort")(RuntimeOptions.from_settings(**settings))
    rt.load(ModelInput(resnet18_64.path, "input", SHAPE))
    return rt


def test_submit_runs_requests_concurrently_on_worker_threads(resnet18_64):
    rt = _loaded(resnet18_64, mode="throughput", requests=3, threads=1)
    try:
        rt.set_input(np.zeros(SHAPE, np.float32))
        assert rt.parallel_requests() == 3
        seen, lock = [], threading.Lock()

        def done(slot):
            with lock:
                seen.append((slot, threading.current_thread().name))

        for round_ in range(4):
            for slot in range(3):
                rt.submit(slot, done)
            rt.wait_all()
            assert len(seen) == 3 * (round_ + 1)
        assert sorted(s for s, _ in seen) == sorted(list(range(3)) * 4)
        assert {n for _, n in seen} <= {f"dk-ort-run-{i}" for i in range(3)} and len({n for _, n in seen}) >= 2
        info = rt.info()
        assert info["mode"] == "throughput" and info["requests"] == 3 and "concurrent" in info["concurrency"]
    finally:
        rt.close()


def test_a_failed_run_still_completes_and_wait_all_raises(resnet18_64):
    rt = _loaded(resnet18_64, mode="throughput", requests=2, threads=1)
    try:
        rt.set_input(np.zeros((1, 3, 32, 32), np.float32))  # the wrong shape: ONNX Runtime refuses the run
        done = []
        rt.submit(0, done.append)
        rt.submit(1, done.append)
        with pytest.raises(Exception, match="(?i)dimension|shape|invalid"):
            rt.wait_all()
        assert sorted(done) == [0, 1]  # nobody waits forever
        rt.set_input(np.zeros(SHAPE, np.float32))
        rt.submit(0, done.append)
        rt.wait_all()  # the pool survives and the error was reported once
        assert sorted(done) == [0, 0, 1]
    finally:
        rt.close()


def test_latency_mode_info_is_unchanged_and_streams_are_refused(resnet18_64):
    rt = _loaded(resnet18_64, threads=1)
    try:
        assert rt.parallel_requests() == 1 and "mode" not in rt.info()
    finally:
        rt.close()
    with pytest.raises(UsageError, match="--streams is an OpenVINO setting"):
        get_runtime("ort")(RuntimeOptions.from_settings(mode="throughput", streams=2)).preflight()


def test_bench_throughput_mode_on_ort(resnet18_64):
    rep = build_report(run_benchmark(str(resnet18_64.path), "ort", FAST,
                                     RuntimeOptions.from_settings(mode="throughput", requests=2, threads=1)))
    tp = rep["throughput"]
    assert tp["mode"] == "throughput" and tp["requests_in_flight"] == 2 and tp["items_per_s"] > 0
    assert rep["timing"]["iterations"] >= 20 and rep["fidelity"]["passed"] is True
    assert rep["target"]["info"]["requests"] == 2
