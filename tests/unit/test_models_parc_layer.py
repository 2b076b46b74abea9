"""The ParC operator: its three implementations compute the definition (float64 <= 1e-10, float32 <= 1e-4
relative) for odd/even N, both axes, batch > 1, depthwise and dense kernels, and resized, non-square maps
(their export: tests/integration/test_models_parc_layer_export.py)."""

import numpy as np
import pytest
import torch

from deploykit.models.layers.parc import IMPLS, ParC, ParCHW, reference_parc, set_parc_impl


def _definition(m: ParC, x: torch.Tensor) -> torch.Tensor:
    """y[i] = b + sum_k w[k] x~[(i + k) mod n], with kernel and embedding resized to n taps per axis."""
    n = x.shape[2] if m.axis == "H" else x.shape[3]
    pe = m._taps(m.pe, n) if m.pe is not None else None
    return reference_parc(x, m._taps(m.weight, n), m.bias, pe, m.axis)


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-30))


def _random_cases(count: int, seed: int = 20240605):
    """Random shapes (seeded, so a failure names a reproducible case): channels, kernel N, map h x w drawn
    independently (so most maps are resized and non-square), batch, axis, dense or depthwise, pe, bias."""
    rng = np.random.default_rng(seed)
    cases = []
    for i in range(count):
        cases.append(dict(channels=int(rng.integers(1, 7)), size=int(rng.integers(1, 17)), h=int(rng.integers(1, 14)),
                          w=int(rng.integers(1, 14)), batch=int(rng.integers(1, 4)), axis=str(rng.choice(["H", "W"])),
                          dense=bool(rng.integers(0, 2)), use_pe=bool(rng.integers(0, 2)), bias=bool(rng.integers(0, 2)),
                          seed=i))
    # the corners the random draw may miss: n == N (odd, even), n == 1, N == 1
    cases += [dict(channels=3, size=7, h=7, w=7, batch=2, axis="H", dense=False, use_pe=True, bias=True, seed=1),
              dict(channels=4, size=8, h=5, w=8, batch=2, axis="W", dense=True, use_pe=True, bias=True, seed=2),
              dict(channels=2, size=5, h=1, w=3, batch=1, axis="H", dense=False, use_pe=True, bias=False, seed=3),
              dict(channels=5, size=1, h=4, w=6, batch=3, axis="W", dense=False, use_pe=False, bias=True, seed=4)]
    return cases


@pytest.mark.parametrize("case", _random_cases(80), ids=lambda c: "{axis}-c{channels}-N{size}-{h}x{w}-b{batch}".format(**c)
                         + ("-dense" if c["dense"] else "-dw"))
def test_impls_compute_the_definition(case):
    torch.manual_seed(case["seed"])
    m = ParC(case["channels"], case["size"], case["axis"], use_pe=case["use_pe"], bias=case["bias"],
             groups=1 if case["dense"] else None).double().eval()
    with torch.no_grad():
        m.weight.normal_()
        if case["use_pe"]:
            m.pe.normal_()
        x = torch.randn(case["batch"], case["channels"], case["h"], case["w"], dtype=torch.float64)
        ref = _definition(m, x)
        for impl in IMPLS:
            m.set_impl(impl)
            y = m(x)
            assert y.shape == x.shape
            assert _rel(y, ref) <= 1e-10, (impl, _rel(y, ref))
        # float32: every impl within 1e-4 (relative) of the float64 definition
        m32 = m.float()
        for impl in IMPLS:
            m32.set_impl(impl)
            assert _rel(m32(x.float()).double(), ref) <= 1e-4, impl


@pytest.mark.parametrize("axis", "HW")
@pytest.mark.parametrize("n", [7, 8])
def test_odd_and_even_n_at_the_design_size_is_a_true_circular_correlation(axis, n):
    """At n == N no resizing happens: a unit impulse comes back as the (reversed, wrapped) kernel."""
    m = ParC(3, n, axis, use_pe=False, bias=False).double()
    x = torch.zeros(2, 3, n, n, dtype=torch.float64)
    x[:, :, 0, 0] = 1.0
    with torch.no_grad():
        for impl in IMPLS:
            m.set_impl(impl)
            y = m(x)
            k = m.weight.reshape(3, n)
            # y[i] = sum_k w[k] x[(i + k) mod n] = w[(-i) mod n] for an impulse at 0
            expect = torch.stack([k[:, (-i) % n] for i in range(n)], dim=1)
            got = y[0, :, :, 0] if axis == "H" else y[0, :, 0, :]
            assert torch.allclose(got, expect, atol=1e-12), impl


def test_resizing_is_bilinear_with_aligned_corners_per_axis():
    """A 9 x 5 map through ParC-H (N = 14) and ParC-W (N = 14): each kernel/embedding resizes along its own
    axis to the map's side, sampling the 14 taps at i (N - 1) / (n - 1) with linear interpolation."""
    torch.manual_seed(0)
    for axis, n in (("H", 9), ("W", 5)):
        m = ParC(4, 14, axis).double()
        taps = m.weight.detach().reshape(4, 14).numpy()
        pos = np.arange(n) * (14 - 1) / (n - 1)
        lo = np.floor(pos).astype(int)
        hi = np.minimum(lo + 1, 13)
        expect = taps[:, lo] * (1 - (pos - lo)) + taps[:, hi] * (pos - lo)
        got = m.kernel(n).detach().reshape(4, n).numpy()
        np.testing.assert_allclose(got, expect, rtol=0, atol=1e-12)
        x = torch.randn(2, 4, 9, 5, dtype=torch.float64)
        with torch.no_grad():
            outs = {impl: (m.set_impl(impl), m(x))[1] for impl in IMPLS}
            ref = _definition(m, x)
        for impl, y in outs.items():
            assert _rel(y, ref) <= 1e-10, impl


def test_a_map_of_another_resolution_matches_across_impls_in_float32():
    """ParC-H + ParC-W on half the channels each (the ConvNeXt/MobileNet block), designed for 14 x 14, fed a
    non-square 10 x 17 map: the three impls agree within 1e-4 relative in float32."""
    torch.manual_seed(1)
    m = ParCHW(24, 14).eval()
    x = torch.randn(3, 24, 10, 17)
    with torch.no_grad():
        outs = {impl: set_parc_impl(m, impl)(x) for impl in IMPLS}
    for impl in ("fft", "matmul"):
        assert _rel(outs[impl], outs["conv"]) <= 1e-4, impl


def test_parameters_keep_the_reference_layout_and_impl_never_changes_them():
    m = ParC(8, 14, "W", groups=1)
    assert tuple(m.weight.shape) == (8, 8, 1, 14) and tuple(m.pe.shape) == (1, 8, 1, 14)
    assert tuple(ParC(8, 14, "H").weight.shape) == (8, 1, 14, 1)
    before = {k: v.clone() for k, v in m.state_dict().items()}
    set_parc_impl(m, "fft")
    assert all(torch.equal(before[k], v) for k, v in m.state_dict().items())
    with pytest.raises(ValueError, match="impl"):
        m.set_impl("winograd")
    with pytest.raises(ValueError, match="depthwise"):
        ParC(8, 14, groups=2)
    with pytest.raises(ValueError, match="axis"):
        ParC(8, 14, "D")


@pytest.mark.parametrize("impl", IMPLS)
def test_works_on_the_meta_device(impl):
    """`deploykit models` counts parameters and MACs on the meta device."""
    with torch.device("meta"):
        m = ParCHW(16, 14, impl)
        y = m(torch.empty(2, 16, 9, 11))
    assert y.shape == (2, 16, 9, 11) and y.is_meta
