"""Timer and stop rule of the measurement loop, with real (busy-waiting) work."""

import time

import pytest

from deploykit.bench.runner import STOP_MAX_TIME, STOP_MIN_ITERS, STOP_MIN_TIME, measure
from deploykit.bench.timer import Timer, now_ns
from deploykit.core.config import BenchConfig
from deploykit.core.errors import UsageError

pytestmark = pytest.mark.serial  # tight timing bounds: not beside other tests (make test)


def busy(ms: float):
    def work():
        end = now_ns() + int(ms * 1e6)
        while now_ns() < end:
            pass
    return work


def test_timer_includes_the_device_sync():
    synced = []
    t = Timer(sync=lambda: (time.sleep(0.02), synced.append(1)))
    ns = t.time_ns(lambda: None)
    assert synced == [1]
    assert ns >= 20e6


def test_stop_rule_needs_both_min_iters_and_min_time():
    # fast work: min_time dominates
    m = measure(busy(1), BenchConfig(warmup=2, min_iters=5, min_time=0.3, max_time=10), batch=1)
    assert m.stop_reason == STOP_MIN_TIME
    assert m.wall_ns >= 0.3e9 and m.iterations >= 5
    assert len(m.warmup_ns) == 2
    # min_iters dominates
    m = measure(busy(1), BenchConfig(warmup=0, min_iters=40, min_time=0.0, max_time=10), batch=1)
    assert m.stop_reason == STOP_MIN_ITERS and m.iterations == 40


def test_the_min_iters_floor_is_announced_once_and_named_as_the_stop_reason():
    """Slow iterations: min-time is reached first, the loop says so once (phase "min-iters") and goes on to the
    floor; the stop reason says the floor ended it."""
    seen = []
    m = measure(busy(30), BenchConfig(warmup=0, min_iters=8, min_time=0.05, max_time=10), batch=1,
                progress=lambda phase, n, t: seen.append((phase, n, t)), progress_every_s=10)
    floor = [(n, t) for phase, n, t in seen if phase == "min-iters"]
    assert len(floor) == 1 and floor[0][0] < 8 and floor[0][1] >= 0.05
    assert m.stop_reason == STOP_MIN_ITERS and m.iterations == 8
    # fast iterations: the floor is met long before min-time; nothing to announce
    seen.clear()
    m = measure(busy(1), BenchConfig(warmup=0, min_iters=8, min_time=0.1, max_time=10), batch=1,
                progress=lambda phase, n, t: seen.append(phase), progress_every_s=10)
    assert "min-iters" not in seen and m.stop_reason == STOP_MIN_TIME


def test_max_time_bounds_the_min_iters_floor():
    m = measure(busy(20), BenchConfig(warmup=0, min_iters=1000, min_time=0.05, max_time=0.2), batch=1)
    assert m.stop_reason == STOP_MAX_TIME and m.iterations < 1000 and m.wall_ns < 0.2e9 + 60e6


def test_default_floor_supports_the_median_and_tables_show_supported_tails_only():
    from deploykit.bench.stats import samples_needed, tail_supported

    assert BenchConfig().min_iters == samples_needed(50) == 20
    assert [samples_needed(q) for q in (90, 95, 99)] == [100, 200, 1000]
    assert tail_supported(20, 50) and not tail_supported(19, 50)
    assert tail_supported(1000, 99) and not tail_supported(999, 99)


def test_max_time_caps_the_run():
    m = measure(busy(5), BenchConfig(warmup=0, min_iters=10_000, min_time=0, max_time=0.2), batch=1)
    assert m.stop_reason == STOP_MAX_TIME
    assert m.iterations < 10_000
    assert 0.2e9 <= m.wall_ns < 0.2e9 + 50e6  # stops within one iteration of the cap


def test_samples_measure_the_work_and_throughput_counts_items():
    m = measure(busy(2), BenchConfig(warmup=1, min_iters=20, min_time=0, max_time=10), batch=4)
    assert all(s >= 2e6 for s in m.samples_ns)
    assert m.items_per_s == pytest.approx(4 * m.iterations / (m.wall_ns / 1e9))
    assert m.items_per_s < 4 / 0.002


def test_progress_is_reported():
    seen = []
    measure(busy(1), BenchConfig(warmup=1, min_iters=1, min_time=0.3, max_time=5), batch=1,
            progress=lambda phase, n, t: seen.append(phase), progress_every_s=0.05)
    assert seen[0] == "warmup" and "measure" in seen and seen[-1] == "done"


@pytest.mark.parametrize("kwargs", [dict(batch=0), dict(min_iters=0), dict(max_time=1, min_time=2),
                                    dict(warmup=-1), dict(resolution=-3)])
def test_bad_bench_config_is_a_usage_error(kwargs):
    with pytest.raises(UsageError):
        BenchConfig(**kwargs)
