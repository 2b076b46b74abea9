"""ParC: position-aware circular convolution (ParC-Net, ECCV 2022) and its FFT form (Fast-ParC).

ParC-H over a feature map x of shape B x C x H x W, with a kernel of N taps per channel along the height:

    x~ = x + pe                                   pe: 1 x C x N x 1, a learnable position embedding
    y[b, o, i, w] = bias[o] + sum_k sum_c w[o, c, k] * x~[b, c, (i + k) mod H, w]

a global circular cross-correlation: every output row sees every input row. ParC-W is the same along the
width. ``groups == channels`` (the usual case) makes it depthwise (one kernel per channel, ``c == o``);
``groups == 1`` is the dense form ParC-ResNet50 uses in its bottlenecks.

When the map's side n differs from N (another input resolution) the kernel and the embedding are resized to
n taps along the ParC axis, bilinearly with ``align_corners=True`` (the authors' "interpolation_bilinear"
instance kernel); each axis resizes on its own, so non-square maps work.

Three implementations of exactly the same function, chosen by ``impl``:

``conv``
    the reference: pad circularly by concatenating the first n-1 rows after the map, then a valid
    (depthwise or dense) convolution with the n-tap kernel.
``fft`` (Fast-ParC)
    real FFT along the axis, product with the spectrum of the *flipped* kernel w'[m] = w[(-m) mod n]
    (so no complex conjugate is needed: correlation with w == convolution with w'), inverse real FFT
    with the length n given explicitly (odd n). The spectral product is written with real tensors
    (real and imaginary parts apart), so the only complex values are the FFTs' own inputs/outputs; the
    dynamo ONNX exporter turns the FFTs into ONNX ``DFT`` ops and everything else into real arithmetic.
``matmul``
    the circulant form: M[i, j] = w[(j - i) mod n], y = M @ x~ along the axis, one batched MatMul
    (depthwise: one n x n matrix per channel; dense: one (O n) x (C n) matrix).

All three agree to float rounding (tests/unit/test_models_parc_layer.py proves it on random shapes).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

IMPLS = ("conv", "fft", "matmul")
AXES = ("H", "W")


class ParC(nn.Module):
    """One ParC operator (ParC-H or ParC-W).

    Args:
        channels: input channels C (= output channels).
        size: N, the kernel length = the feature size the layer was designed for.
        axis: ``"H"`` (global along the height) or ``"W"`` (along the width).
        impl: ``"conv"``, ``"fft"`` or ``"matmul"`` (switchable later with ``set_impl``).
        use_pe: add the learnable position embedding before the convolution.
        bias: learnable per-output-channel bias.
        groups: ``channels`` (depthwise, default) or 1 (dense).

    Parameters keep the reference layout (``weight`` as a Conv2d weight: C x 1 x N x 1 for ParC-H,
    C x 1 x 1 x N for ParC-W; ``pe`` 1 x C x N x 1 / 1 x C x 1 x N), so checkpoints map one to one.
    """

    def __init__(self, channels: int, size: int, axis: str = "H", impl: str = "conv", *, use_pe: bool = True,
                 bias: bool = True, groups: int | None = None):
        super().__init__()
        axis = axis.upper()
        if axis not in AXES:
            raise ValueError(f"axis must be H or W, not {axis!r}")
        groups = channels if groups is None else groups
        if groups not in (1, channels):
            raise ValueError("ParC supports depthwise (groups=channels) or dense (groups=1) kernels")
        if size < 1:
            raise ValueError("size must be positive")
        self.channels, self.size, self.axis, self.groups = channels, size, axis, groups
        self.impl = ""
        self.set_impl(impl)
        kshape = (size, 1) if axis == "H" else (1, size)
        self.weight = nn.Parameter(torch.empty(channels, channels // groups, *kshape))
        self.bias = nn.Parameter(torch.empty(channels)) if bias else None
        self.pe = nn.Parameter(torch.empty(1, channels, *kshape)) if use_pe else None
        self.reset_parameters()

    def set_impl(self, impl: str) -> None:
        if impl not in IMPLS:
            raise ValueError(f"impl must be one of {', '.join(IMPLS)}, not {impl!r}")
        self.impl = impl

    @torch.no_grad()
    def reset_parameters(self) -> None:
        if self.weight.is_meta:
            return
        # what nn.Conv2d does for its weight and bias (kaiming-uniform a=sqrt(5) -> U(-1/sqrt(fan_in), +))
        nn.init.kaiming_uniform_(self.weight, a=5 ** 0.5)
        fan_in = self.weight.shape[1] * self.size
        if self.bias is not None:
            bound = 1 / fan_in ** 0.5
            nn.init.uniform_(self.bias, -bound, bound)
        if self.pe is not None:
            nn.init.trunc_normal_(self.pe, std=0.02)

    def extra_repr(self) -> str:
        kind = "depthwise" if self.groups == self.channels and self.channels > 1 else "dense"
        return (f"{self.channels}, size={self.size}, axis={self.axis}, impl={self.impl}, {kind}, "
                f"pe={self.pe is not None}, bias={self.bias is not None}")

    # -- resizing -------------------------------------------------------------------------------------
    def _taps(self, t: torch.Tensor, n: int) -> torch.Tensor:
        """Resize the kernel/embedding ``t`` (ParC axis of length N) to n taps (bilinear, align_corners)."""
        if n == self.size:
            return t
        size = (n, 1) if self.axis == "H" else (1, n)
        return F.interpolate(t, size=size, mode="bilinear", align_corners=True)

    def kernel(self, n: int) -> torch.Tensor:
        """The kernel for a side of n as O x C/g x n (the ParC axis last)."""
        w = self._taps(self.weight, n)
        return w.reshape(w.shape[0], w.shape[1], n)

    # -- forward --------------------------------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dim = 2 if self.axis == "H" else 3
        n = x.shape[dim]
        if self.pe is not None:
            x = x + self._taps(self.pe, n)
        w = self.kernel(n)
        if self.impl == "conv":
            return self._conv(x, n, dim)
        if self.impl == "fft":
            y = self._fft(x, w, n, dim)
        else:
            y = self._matmul(x, w, n)
        if self.bias is not None:
            y = y + self.bias.view(1, -1, 1, 1)
        return y

    def _conv(self, x, n, dim):
        xc = torch.cat((x, x.narrow(dim, 0, n - 1)), dim=dim) if n > 1 else x
        return F.conv2d(xc, self._taps(self.weight, n), self.bias, groups=self.groups)

    def _fft(self, x, w, n, dim):
        # Correlation with w == circular convolution with the flipped kernel w'[m] = w[(-m) mod n], so the
        # spectral product needs no conjugate. Two real signals ride in one complex FFT (z = x_a + i x_b, the
        # textbook way to get real FFTs from a complex one): the graph holds only full complex DFTs, which
        # every DFT-capable runtime reads the same way (OpenVINO mis-shapes ONNX's onesided DFT forms).
        wf = torch.cat((w[..., :1], w[..., 1:].flip(-1)), dim=-1) if n > 1 else w
        kr, ki = _parts(torch.fft.fft(wf, dim=-1))  # O x C/g x n: spectrum of the flipped kernel
        c = x.shape[1]
        if c % 2:  # an odd channel count rides with one zero channel
            x = torch.cat((x, torch.zeros_like(x[:, :1])), dim=1)
        h = x.shape[1] // 2
        zr, zi = _parts(torch.fft.fft(torch.complex(x[:, :h], x[:, h:]), dim=dim))
        rr, ri = _rev(zr, n, dim), -_rev(zi, n, dim)  # conj(Z[-k])
        expand = (lambda t: t.unsqueeze(-1)) if self.axis == "H" else (lambda t: t.unsqueeze(-2))
        if self.groups == 1 and self.channels > 1:
            vr, vi = self._fft_dense(zr, zi, rr, ri, kr, ki, n, dim, h, expand)
        else:
            # X_a = (Z + R) / 2, X_b = (Z - R) / 2i; Y = X K per channel; V = Y_a + i Y_b = Z P + R Q with
            # P = (K_a + K_b) / 2 and Q = (K_a - K_b) / 2 (constants once the weights are fixed)
            kr, ki = kr[:, 0], ki[:, 0]
            if c % 2:
                kr, ki = torch.cat((kr, torch.zeros_like(kr[:1]))), torch.cat((ki, torch.zeros_like(ki[:1])))
            pr, pi = expand((kr[:h] + kr[h:]) / 2), expand((ki[:h] + ki[h:]) / 2)
            qr, qi = expand((kr[:h] - kr[h:]) / 2), expand((ki[:h] - ki[h:]) / 2)
            vr = zr * pr - zi * pi + rr * qr - ri * qi
            vi = zr * pi + zi * pr + rr * qi + ri * qr
        yr, yi = _parts(torch.fft.ifft(torch.complex(vr, vi), dim=dim))
        y = torch.cat((yr, yi), dim=1)
        return y if y.shape[1] == self.channels else y[:, : self.channels]

    def _fft_dense(self, zr, zi, rr, ri, kr, ki, n, dim, h, expand):
        """Dense ParC in the frequency domain: Y_o = sum_c X_c K_oc on the n//2 + 1 non-redundant bins."""
        f = n // 2 + 1
        xr = torch.cat(((zr + rr) / 2, (zi - ri) / 2), dim=1).narrow(dim, 0, f)  # X_a real | X_b real
        xi = torch.cat(((zi + ri) / 2, (rr - zr) / 2), dim=1).narrow(dim, 0, f)  # X_a imag | X_b imag
        cin = xr.shape[1]
        o = kr.shape[0]
        kr, ki = kr[..., :f], ki[..., :f]
        if kr.shape[1] != cin:  # odd input channels: a zero kernel for the zero channel
            kr = torch.cat((kr, torch.zeros_like(kr[:, :1])), dim=1)
            ki = torch.cat((ki, torch.zeros_like(ki[:, :1])), dim=1)
        if o % 2:  # odd output channels: one zero output channel to pair the last one with
            kr = torch.cat((kr, torch.zeros_like(kr[:1])), dim=0)
            ki = torch.cat((ki, torch.zeros_like(ki[:1])), dim=0)
        # per frequency a complex (O x C) @ (C x rest) product, as real matmuls over the channel axis
        kr_f, ki_f = kr.permute(2, 0, 1), ki.permute(2, 0, 1)  # F x O x C
        yr = _freq_mix(xr, kr_f, dim) - _freq_mix(xi, ki_f, dim)
        yi = _freq_mix(xr, ki_f, dim) + _freq_mix(xi, kr_f, dim)
        # Hermitian extension to n bins: Y[k] = conj(Y[n - k]) for k >= f
        m = n - f
        if m > 0:
            yr = torch.cat((yr, yr.narrow(dim, 1, m).flip(dim)), dim=dim)
            yi = torch.cat((yi, -yi.narrow(dim, 1, m).flip(dim)), dim=dim)
        ho = yr.shape[1] // 2
        return yr[:, :ho] - yi[:, ho:], yi[:, :ho] + yr[:, ho:]  # V = Y_a + i Y_b

    def _matmul(self, x, w, n):
        idx = (torch.arange(n, device=w.device).view(1, n) - torch.arange(n, device=w.device).view(n, 1)) % n
        m = w[..., idx]  # O x C/g x n x n, m[o, c, i, j] = w[o, c, (j - i) mod n]
        b, c, h, wd = x.shape
        if self.groups == 1 and self.channels > 1:  # dense: one (O n) x (C n) matrix
            o = m.shape[0]
            big = m.permute(0, 2, 1, 3).reshape(o * n, c * n)
            if self.axis == "H":
                return (big @ x.reshape(b, c * n, wd)).reshape(b, o, n, wd)
            xt = x.permute(0, 2, 1, 3).reshape(b, h, c * n)
            return (xt @ big.t()).reshape(b, h, o, n).permute(0, 2, 1, 3)
        m = m.squeeze(1)  # C x n x n
        if self.axis == "H":
            return m @ x  # (C, n, n) @ (B, C, n, W)
        return x @ m.transpose(-1, -2)  # (B, C, H, n) @ (C, n, n)


def _parts(z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    r = torch.view_as_real(z)
    return r[..., 0], r[..., 1]


def _rev(t: torch.Tensor, n: int, dim: int) -> torch.Tensor:
    """t[(-k) mod n] along ``dim``."""
    return torch.cat((t.narrow(dim, 0, 1), t.narrow(dim, 1, n - 1).flip(dim)), dim=dim) if n > 1 else t


def _freq_mix(xs: torch.Tensor, kf: torch.Tensor, dim: int) -> torch.Tensor:
    """sum_c xs[b, c, k, ...] * kf[k, o, c] for every bin k along ``dim`` -> b x o x (same layout)."""
    if dim == 2:  # B x C x F x W -> F x C x (B W)
        b, c, f, w = xs.shape
        t = xs.permute(2, 1, 0, 3).reshape(f, c, b * w)
        return (kf @ t).reshape(f, -1, b, w).permute(2, 1, 0, 3)
    b, c, hh, f = xs.shape  # B x C x H x F -> F x C x (B H)
    t = xs.permute(3, 1, 0, 2).reshape(f, c, b * hh)
    return (kf @ t).reshape(f, -1, b, hh).permute(2, 1, 3, 0)


class ParCHW(nn.Module):
    """Half the channels through ParC-H, the other half through ParC-W, concatenated: the drop-in
    replacement ParC-ConvNeXt, ParC-MobileNetV2 and ParC-ResNet50 use for a spatial convolution."""

    def __init__(self, channels: int, size: int, impl: str = "conv", *, use_pe: bool = True, bias: bool = True,
                 dense: bool = False):
        super().__init__()
        if channels % 2:
            raise ValueError("ParCHW needs an even number of channels")
        half = channels // 2
        g = 1 if dense else None
        self.parc_h = ParC(half, size, "H", impl, use_pe=use_pe, bias=bias, groups=g)
        self.parc_w = ParC(half, size, "W", impl, use_pe=use_pe, bias=bias, groups=g)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xh, xw = torch.chunk(x, 2, dim=1)
        return torch.cat((self.parc_h(xh), self.parc_w(xw)), dim=1)


def set_parc_impl(model: nn.Module, impl: str) -> nn.Module:
    """Switch every ParC operator in ``model`` to ``impl`` (weights unchanged); returns ``model``."""
    for mod in model.modules():
        if isinstance(mod, ParC):
            mod.set_impl(impl)
    return model


def reference_parc(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, pe: torch.Tensor | None,
                   axis: str) -> torch.Tensor:
    """The definition, written as a loop over shifts with torch.roll (for tests): y = b + sum_k w_k * roll(x~, -k)."""
    dim = 2 if axis.upper() == "H" else 3
    n = x.shape[dim]
    if pe is not None:
        x = x + pe
    w = weight.reshape(weight.shape[0], weight.shape[1], n)
    dense = w.shape[1] > 1  # a 1-channel dense kernel is the same as a depthwise one
    y = torch.zeros(x.shape[0], w.shape[0], *x.shape[2:], dtype=x.dtype)
    for k in range(n):
        shifted = torch.roll(x, shifts=-k, dims=dim)  # shifted[i] = x[(i + k) mod n]
        if dense:
            y = y + torch.einsum("oc,bchw->bohw", w[:, :, k], shifted)
        else:
            y = y + w[:, 0, k].view(1, -1, 1, 1) * shifted
    if bias is not None:
        y = y + bias.view(1, -1, 1, 1)
    return y
