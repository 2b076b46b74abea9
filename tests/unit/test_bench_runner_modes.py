"""Throughput-mode loop and the device-clock / window hooks of the latency loop (bench/runner.py).

The asynchronous "runtime" here is a small thread-per-request worker that sleeps a fixed time, so the
expected counts and latencies are known; real runtimes are exercised in test_openvino.py."""

import threading
import time

import pytest

from deploykit.bench.runner import STOP_MAX_TIME, STOP_MIN_TIME, RequestTimeout, measure, measure_throughput
from deploykit.bench.timer import now_ns
from deploykit.core.config import BenchConfig

pytestmark = pytest.mark.serial  # tight timing bounds: not beside other tests (make test)


class SleepyAsync:
    """Each request takes ``ms`` milliseconds on its own worker thread and then calls ``done(slot)``."""

    def __init__(self, ms: float, requests: int):
        self.ms = ms
        self.requests = requests
        self.busy = [False] * requests
        self.submitted = 0
        self.overlap = 0  # most requests ever in flight at once
        self._lock = threading.Lock()

    def submit(self, slot, done):
        with self._lock:
            assert not self.busy[slot], "a busy request was resubmitted"
            self.busy[slot] = True
            self.submitted += 1
            self.overlap = max(self.overlap, sum(self.busy))

        def run():
            time.sleep(self.ms / 1000)
            with self._lock:
                self.busy[slot] = False
            done(slot)

        threading.Thread(target=run, daemon=True).start()


def test_throughput_loop_keeps_requests_in_flight_and_drains():
    rt = SleepyAsync(ms=20, requests=4)
    cfg = BenchConfig(warmup=2, min_iters=10, min_time=0.3, max_time=10)
    events = []
    m = measure_throughput(rt.submit, 4, cfg, batch=2, on_start=lambda: events.append(("start", now_ns())),
                           on_stop=lambda: events.append(("stop", now_ns())))
    assert m.mode == "throughput" and m.requests == 4 and m.stop_reason == STOP_MIN_TIME
    assert len(m.warmup_ns) == 4  # max(warmup, requests): every request ran once
    assert rt.overlap == 4 and not any(rt.busy)  # 4 in flight, all drained at the end
    assert m.iterations == rt.submitted - len(m.warmup_ns)  # every measured submission was counted
    assert m.wall_ns >= 0.3e9
    assert all(s >= 19e6 for s in m.samples_ns)  # per-request latency: submit -> completion
    # 4 requests of 20 ms in parallel: ~200 requests/s, x batch 2 items
    assert m.items_per_s == pytest.approx(2 * m.iterations / (m.wall_ns / 1e9))
    assert 250 < m.items_per_s < 420
    assert [e[0] for e in events] == ["start", "stop"] and events[1][1] - events[0][1] >= m.wall_ns


def test_throughput_loop_max_time_and_no_warmup():
    rt = SleepyAsync(ms=50, requests=2)
    m = measure_throughput(rt.submit, 2, BenchConfig(warmup=0, min_iters=1000, min_time=0, max_time=0.2), batch=1)
    assert m.stop_reason == STOP_MAX_TIME and m.warmup_ns == [] and 4 <= m.iterations <= 12


def test_throughput_loop_times_out_on_a_lost_request():
    def never(slot, done):
        pass

    with pytest.raises(RequestTimeout, match="did not complete"):
        measure_throughput(never, 1, BenchConfig(warmup=0, min_iters=1, min_time=0, max_time=1), batch=1,
                           timeout_s=0.2)


def test_latency_loop_collects_device_times_and_calls_window_hooks():
    calls = []
    ticks = iter(range(1, 10_000))

    def device_timer():
        n = next(ticks)
        return {"compute": n * 1000, "e2e": n * 2000}

    m = measure(lambda: time.sleep(0.001), BenchConfig(warmup=3, min_iters=7, min_time=0, max_time=10), batch=1,
                device_timer=device_timer, on_start=lambda: calls.append("start"), on_stop=lambda: calls.append("stop"))
    assert calls == ["start", "stop"]
    assert m.iterations == 7 and len(m.warmup_ns) == 3
    assert m.device_ns["compute"] == [i * 1000 for i in range(1, 8)]  # measured iterations only, not warm-up
    assert m.device_ns["e2e"] == [i * 2000 for i in range(1, 8)]
