"""The runtime interface's optional capabilities: declared by each target (``Runtime.capabilities``), asked with
``has``, and checked against the methods a target implements when it registers (a mismatch fails at import)."""

from __future__ import annotations

import pytest

from deploykit.runtimes import base as B
from deploykit.runtimes.base import TARGETS, Runtime, get_runtime, register_runtime
from deploykit.runtimes.ort import OrtCpuRuntime


def test_the_real_targets_declare_what_they_implement():
    expect = {
        "ort": {B.CONCURRENT, B.PER_LAYER, B.GRAPH_READBACK, B.PEAK},
        "openvino": {B.CONCURRENT, B.PER_LAYER, B.GRAPH_READBACK, B.PEAK},
        "trt": {B.DEVICE_TIMING, B.PER_LAYER, B.GRAPH_READBACK},
        "torch": {B.DEVICE_TIMING},
        "ort-cuda": set(),
        "ort-trt": set(),
    }
    for name, caps in expect.items():
        cls = get_runtime(name)
        assert set(cls.capabilities) == caps, name
        cls.check_capabilities()  # what registration ran
    for _name, cls in TARGETS.items():
        cls.check_capabilities()


def test_throughput_mode_follows_from_concurrent_requests():
    assert get_runtime("ort").modes == get_runtime("openvino").modes == ("latency", "throughput")
    assert get_runtime("trt").modes == get_runtime("torch").modes == ("latency",)
    for name, cls in TARGETS.items():
        assert ("throughput" in cls.modes) == cls.has(B.CONCURRENT), name


def test_has_and_the_helpers_that_wrap_it():
    ort, torch = get_runtime("ort"), get_runtime("torch")
    assert ort.has(B.PER_LAYER) and ort.profiles_layers() and ort.reads_back_graph()
    assert not torch.has(B.PER_LAYER) and not torch.profiles_layers() and not torch.reads_back_graph()
    ort.ensure_profiles_layers()
    from deploykit.core.errors import UsageError

    with pytest.raises(UsageError, match="target torch has no per-layer profiler"):
        torch.ensure_profiles_layers()
    with pytest.raises(ValueError, match="unknown runtime capability 'throughput'"):
        ort.has("throughput")


class _Core(Runtime):
    """The abstract core and nothing else: the smallest valid target."""

    def load(self, model): ...
    def set_input(self, x): ...
    def infer(self): ...
    def outputs(self): return []


@pytest.fixture
def register():
    """register_runtime under a test name, removed again afterwards."""
    TARGETS.names()  # load the real targets first
    added = []

    def reg(cls):
        added.append("dk-test-caps")
        return register_runtime("dk-test-caps")(cls)

    yield reg
    for name in added:
        TARGETS._items.pop(name, None)


def test_a_core_only_target_registers_with_no_capabilities(register):
    cls = register(type("CoreOnly", (_Core,), {}))
    assert cls.capabilities == frozenset() and cls.modes == ("latency",) and get_runtime("dk-test-caps") is cls


def test_implementing_submit_without_declaring_concurrent_fails_at_registration(register):
    class Undeclared(_Core):
        def parallel_requests(self): return 2
        def submit(self, slot, done): done(slot)
        def wait_all(self): ...

    with pytest.raises(TypeError, match=r"implements parallel_requests, submit, wait_all but does not declare "
                                        r"concurrent_requests"):
        register(Undeclared)
    assert "dk-test-caps" not in TARGETS.names()


def test_declaring_without_implementing_fails_at_registration(register):
    class HalfDone(_Core):
        capabilities = frozenset({B.CONCURRENT})

        def submit(self, slot, done): done(slot)

    with pytest.raises(TypeError, match="declares concurrent_requests but does not implement parallel_requests, "
                                        "wait_all"):
        register(HalfDone)

    class NoProfiler(_Core):
        capabilities = frozenset({B.PER_LAYER})

    with pytest.raises(TypeError, match="declares per_layer_profile but does not implement profile_layers"):
        register(NoProfiler)

    class Typo(_Core):
        capabilities = frozenset({"device-timing"})

    with pytest.raises(TypeError, match="unknown capabilities device-timing"):
        register(Typo)


def test_a_device_clock_without_its_sync_fails(register):
    class ClockOnly(_Core):
        capabilities = frozenset({B.DEVICE_TIMING})

        def device_times(self): return {"compute": 1}

    with pytest.raises(TypeError, match="declares device_timing but does not implement sync"):
        register(ClockOnly)


def test_a_subclass_of_a_real_target_inherits_its_capabilities_and_methods(register):
    class Echo(OrtCpuRuntime):  # as a new target built on ort would be
        description = "ort under another name"

    cls = register(Echo)
    assert cls.capabilities == OrtCpuRuntime.capabilities and cls.modes == ("latency", "throughput")

    class DropsPeak(OrtCpuRuntime):  # takes the capability away but keeps the inherited kernels: inconsistent
        capabilities = OrtCpuRuntime.capabilities - {B.PEAK}

    with pytest.raises(TypeError, match="implements peak_kernels, gemm_session but does not declare peak_kernels"):
        register(DropsPeak)


def test_modes_cannot_be_set_by_hand():
    with pytest.raises(TypeError, match="modes follow from capabilities"):
        type("Hand", (_Core,), {"modes": ("latency", "throughput")})
