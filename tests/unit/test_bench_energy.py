"""Energy meters against a fake RAPL sysfs tree built here and a minimal fake NVML module injected at the
meter's boundary; the real meters on this machine must report "unavailable" with reasons, never 0."""

import os
import time

import pytest

from deploykit.bench.energy import (CounterAccumulator, EnergySession, MeterUnavailable, NvmlMeter, RaplMeter,
                                    open_session)
from tests.fakes import FakeNvml, make_rapl_tree, set_energy

MAX = 262_143_328_850  # a typical Intel package max_energy_range_uj


def test_counter_accumulator_handles_wrap_around():
    acc = CounterAccumulator(first=MAX - 1_000, max_range=MAX)
    assert acc.update(MAX - 400) == 600
    assert acc.update(500) == 600 + 400 + 500  # wrapped once: 400 up to the range, then 500 more
    assert acc.wraps == 1
    assert acc.update(1_500) == 2_500
    with pytest.raises(MeterUnavailable, match="backwards"):
        CounterAccumulator(first=10, max_range=None).update(5)


def test_rapl_reads_packages_and_dram_and_skips_subzones(tmp_path):
    root = make_rapl_tree(tmp_path / "powercap", {
        "intel-rapl:0": ("package-0", 1_000_000, MAX),
        "intel-rapl:0:0": ("core", 500_000, MAX),
        "intel-rapl:0:1": ("dram", 2_000_000, MAX),
        "intel-rapl-mmio:0": ("package-0", 9_000_000, MAX),  # MMIO duplicate of the package: ignored
    })
    m = RaplMeter(root)
    m.open()
    assert [d.name for d in m.domains] == ["package-0", "dram (intel-rapl:0:1)"]
    assert [d.scope for d in m.domains] == ["CPU package", "DRAM"]
    set_energy(root, "intel-rapl:0", 4_000_000)
    set_energy(root, "intel-rapl:0:1", 2_500_000)
    assert m.read() == {"package-0": 3.0, "dram (intel-rapl:0:1)": 0.5}


def test_rapl_session_across_a_wrap(tmp_path):
    root = make_rapl_tree(tmp_path / "pc", {"intel-rapl:0": ("package-0", MAX - 2_000_000, MAX)})
    s = open_session(None, rapl_root=root)
    assert [m.kind for m in s.meters] == ["rapl"] and s.reasons == []
    s.start()
    time.sleep(0.05)
    set_energy(root, "intel-rapl:0", 3_000_000)  # the counter wrapped during the window
    s.stop()
    r = s.result(inferences=10)
    dom = r["domains"][0]
    assert r["status"] == "measured"
    assert dom["joules"] == pytest.approx(5.0)
    assert dom["j_per_inference"] == pytest.approx(0.5) and dom["inferences_per_j"] == pytest.approx(2.0)
    assert dom["avg_power_w"] == pytest.approx(5.0 / dom["window_s"])
    assert "wrap-around" in dom["method"]


def test_rapl_permission_denied_is_unavailable_with_that_reason(tmp_path):
    root = make_rapl_tree(tmp_path / "pc", {"intel-rapl:0": ("package-0", 1, MAX)})

    def root_only(path):  # what sysfs does for energy_uj to non-root users since Linux 5.10
        if path.name == "energy_uj":
            raise PermissionError(13, "Permission denied", str(path))
        return path.read_text()

    s = open_session(None, rapl_root=root, rapl_read_text=root_only)
    assert s.meters == []
    assert "permission denied" in s.reasons[0] and "energy_uj" in s.reasons[0]
    s.start()
    s.stop()
    r = s.result(inferences=5)
    assert r["status"] == "unavailable" and r["domains"] == [] and "permission denied" in r["reasons"][0]


@pytest.mark.skipif(os.geteuid() == 0, reason="running as root: file permissions do not stop root from reading")
def test_rapl_permission_denied_by_file_mode(tmp_path):
    root = make_rapl_tree(tmp_path / "pc", {"intel-rapl:0": ("package-0", 1, MAX)})
    (root / "intel-rapl:0" / "energy_uj").chmod(0o000)
    with pytest.raises(MeterUnavailable, match="permission denied"):
        RaplMeter(root).open()


def test_rapl_missing_tree_and_empty_tree(tmp_path):
    with pytest.raises(MeterUnavailable, match="does not exist"):
        RaplMeter(tmp_path / "nope").open()
    (tmp_path / "empty").mkdir()
    with pytest.raises(MeterUnavailable, match="no intel-rapl"):
        RaplMeter(tmp_path / "empty").open()


def test_counter_that_does_not_advance_is_null_not_zero(tmp_path):
    root = make_rapl_tree(tmp_path / "pc", {"intel-rapl:0": ("package-0", 100, MAX)})
    s = open_session(None, rapl_root=root)
    s.start()
    s.stop()
    r = s.result(inferences=3)
    d = r["domains"][0]
    assert d["joules"] is None and d["j_per_inference"] is None and "did not advance" in d["reason"]
    assert r["status"] == "unavailable" and any("did not advance" in x for x in r["reasons"])


def test_nvml_energy_counter_path():
    nv = FakeNvml(watts=200.0)
    s = open_session(0, nvml=nv, rapl_root="/nonexistent-powercap")
    assert [m.kind for m in s.meters] == ["nvml"]
    assert any("rapl" in r for r in s.reasons)  # the CPU meter was tried too, and why it failed is kept
    s.measure_idle(0.1)
    s.start()
    time.sleep(0.3)
    s.stop()
    s.close()
    r = s.result(inferences=30)
    d = r["domains"][0]
    assert r["status"] == "measured" and d["scope"].startswith("GPU board (Fake GPU")
    assert "TotalEnergyConsumption" in d["method"] and d["sampled"] is False
    assert d["avg_power_w"] == pytest.approx(200.0, rel=0.1)
    assert d["idle_power_w"] == pytest.approx(200.0, rel=0.2)
    assert d["j_per_inference"] == pytest.approx(d["joules"] / 30)
    assert "shorter than 10 s" in d["warning"] and r["warnings"]  # NVML counter windows should be >= 10 s
    assert nv.shutdowns == nv.inits == 1


def test_nvml_falls_back_to_sampled_power():
    nv = FakeNvml(watts=80.0, energy_supported=False)
    m = NvmlMeter(0, nvml=nv, sample_every_s=0.02)
    s = EnergySession(meters=[m])
    m.open()
    assert m.domains[0].sampled and "polled" in m.domains[0].method and "Not Supported" in m.domains[0].method
    s.start()
    time.sleep(0.25)
    s.stop()
    d = s.result(inferences=10)["domains"][0]
    assert d["sampled"] is True and d["avg_power_w"] == pytest.approx(80.0, rel=0.05)


def test_nvml_unavailable_reasons():
    s = open_session(0, nvml=FakeNvml(init_error="Driver Not Loaded"), rapl_root="/nonexistent-powercap")
    assert s.meters == [] and "Driver Not Loaded" in s.reasons[0]
    s = open_session(3, nvml=FakeNvml(devices=1), rapl_root="/nonexistent-powercap")
    assert "cannot open GPU 3" in s.reasons[0]


def test_estimate_only_on_request_and_labelled(tmp_path):
    s = open_session(None, rapl_root=tmp_path / "none", estimate_watts=65.0)
    s.start()
    time.sleep(0.05)
    s.stop()
    r = s.result(inferences=5)
    assert r["status"] == "estimated"
    d = r["domains"][0]
    assert d["estimated"] is True and "ESTIMATED" in d["method"] and d["avg_power_w"] == 65.0
    s = open_session(None, rapl_root=tmp_path / "none")
    s.start()
    s.stop()
    assert s.result(inferences=5)["status"] == "unavailable"


def test_this_machine_reports_unavailable_with_reasons_never_zero():
    if os.path.exists("/sys/class/powercap"):
        pytest.skip("this machine exposes a powercap tree; the unavailable path is covered by the fake trees")
    s = open_session(None)
    s.start()
    s.stop()
    r = s.result(inferences=100)
    assert r["status"] == "unavailable" and r["reasons"] and r["domains"] == []
