"""Device telemetry: throttle-reason decoding, NVML snapshots from an injected fake module, CPU frequency from a
fake cpufreq tree (and the /proc/cpuinfo fallback used in VMs)."""

import os

from deploykit.bench.fingerprint import cpu_frequency
from deploykit.bench.telemetry import decode_throttle, gpu_snapshot, snapshot, telemetry_warnings
from tests.fakes import FakeNvml


def test_decode_throttle_reasons():
    assert decode_throttle(0) == []
    assert decode_throttle(0x1) == ["gpu_idle"]
    assert decode_throttle(0x4 | 0x40) == ["sw_power_cap", "hw_thermal_slowdown"]
    assert decode_throttle(0x1000) == ["other(0x1000)"]


def test_gpu_snapshot_from_nvml():
    snap = gpu_snapshot(0, nvml=FakeNvml(throttle_mask=0x4))
    assert snap["available"] and snap["name"] == "Fake GPU 80GB" and snap["driver"] == "555.42.06"
    assert snap["cuda_driver"] == "12.5"
    assert snap["clocks_mhz"] == {"sm": 1800, "mem": 2619, "sm_max": 1980, "mem_max": 2619}
    assert snap["temperature_c"] == 61 and snap["power_w"] == 150.0 and snap["power_limit_w"] == 400.0
    assert snap["throttle_reasons"] == ["sw_power_cap"] and snap["utilization_pct"] == {"gpu": 97, "memory": 40}
    assert gpu_snapshot(0, nvml=FakeNvml(init_error="Driver Not Loaded"))["reason"].endswith("Driver Not Loaded")
    assert gpu_snapshot(2, nvml=FakeNvml())["available"] is False


def test_cpu_frequency_from_a_cpufreq_tree(tmp_path):
    cpus = sorted(os.sched_getaffinity(0))
    for i, c in enumerate(cpus):
        d = tmp_path / f"cpu{c}" / "cpufreq"
        d.mkdir(parents=True)
        (d / "scaling_governor").write_text("performance\n")
        (d / "scaling_cur_freq").write_text(f"{3_000_000 + i * 100_000}\n")
        (d / "cpuinfo_max_freq").write_text("3700000\n")
    f = cpu_frequency(tmp_path)
    assert f["readable"] and f["governors"] == ["performance"] and f["min_mhz"] == 3000
    assert f["max_freq_mhz"] == 3700 and len(f["cur_freq_mhz"]) == len(cpus)


def test_cpu_frequency_without_cpufreq_says_why(tmp_path):
    f = cpu_frequency(tmp_path / "none", cpuinfo="processor: 0\ncpu MHz\t\t: 2445.406\nprocessor: 1\ncpu MHz : 2445.0\n")
    assert f["readable"] is False and "not readable" in f["reason"]
    assert f["cpuinfo_mhz"] == [2445, 2445] and "nominal" in f["cpuinfo_note"]


def test_snapshot_and_warnings():
    nv = FakeNvml()
    start = snapshot(0, nvml=nv)
    nv.sm_clock, nv.throttle_mask = 1200, 0x20
    end = snapshot(0, nvml=nv)
    w = telemetry_warnings(start, end)
    assert any("sw_thermal_slowdown" in x and "end" in x for x in w)
    assert any("1800 to 1200" in x for x in w)
    assert "gpu" not in snapshot(None) and "cpu" in snapshot(None)
