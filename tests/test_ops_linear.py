"""The linear-dynamics engine: every fast path against the reference, forward and backward."""

import math

import pytest
import torch

from dendrix.ops.linear import (causal_conv, complex_expm1, direct_causal_conv, direct_modal_kernel,
                                linear_recurrence, modal_kernel)
from dendrix.ops.linear.scan import loop_recurrence, scan_recurrence


def _decay(shape, complex_, gen, dtype=torch.float64):
    mag = 0.3 + 0.69 * torch.rand(shape, generator=gen, dtype=dtype)
    if not complex_:
        sign = torch.where(torch.rand(shape, generator=gen) < 0.2, -1.0, 1.0).to(dtype)
        return mag * sign
    return torch.polar(mag, 3 * torch.rand(shape, generator=gen, dtype=dtype))


def _case(T, complex_, time_varying, dtype, seed=0, batch=3, channels=5):
    gen = torch.Generator().manual_seed(seed)
    cdtype = torch.complex128 if dtype == torch.float64 else torch.complex64
    b = torch.randn(T, batch, channels, generator=gen, dtype=torch.float64)
    if complex_:
        b = torch.complex(b, torch.randn(T, batch, channels, generator=gen, dtype=torch.float64))
    a = _decay((T, batch, channels) if time_varying else (channels,), complex_, gen)
    h0 = torch.randn(batch, channels, generator=gen, dtype=torch.float64)
    cast = (lambda t: t.to(cdtype)) if complex_ else (lambda t: t.to(dtype))
    return cast(a), cast(b), h0.to(dtype)


@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-10), (torch.float32, 2e-4)])
@pytest.mark.parametrize("complex_", [False, True])
@pytest.mark.parametrize("time_varying", [False, True])
def test_recurrence_paths_agree_forward_and_backward(dtype, tol, complex_, time_varying):
    a, b, h0 = _case(200, complex_, time_varying, dtype)
    paths = {"reference": dict(backend="reference"), "scan": dict(method="scan"),
             "loop": dict(method="sequential", backend="fused"), "fft": dict(method="fft")}
    methods = ["scan", "loop"] if time_varying else ["scan", "loop", "fft"]
    results = {}
    for method in ["reference", *methods]:
        leaves = [t.clone().requires_grad_() for t in (a, b, h0)]
        h = linear_recurrence(*leaves, **paths[method])
        weight = torch.linspace(-1, 1, h.numel(), dtype=dtype).reshape(h.shape)
        (h.real * weight).sum().add((h.imag * weight.flip(0)).sum() if h.is_complex() else 0).backward()
        results[method] = (h.detach(), [t.grad for t in leaves])
    ref_h, ref_grads = results["reference"]
    scale = ref_h.abs().max()
    for method in methods:
        h, grads = results[method]
        assert h.dtype == ref_h.dtype
        assert (h - ref_h).abs().max() <= tol * scale, method
        for g, rg in zip(grads, ref_grads):
            assert (g - rg).abs().max() <= tol * rg.abs().max().clamp_min(1), method


@pytest.mark.parametrize("time_varying", [False, True])
@pytest.mark.parametrize("complex_", [False, True])
def test_scan_gradcheck(time_varying, complex_):
    a, b, h0 = _case(6, complex_, time_varying, torch.float64, seed=3, batch=2, channels=2)
    leaves = [t.requires_grad_() for t in (a, b, h0)]
    for fn in (scan_recurrence, loop_recurrence):
        assert torch.autograd.gradcheck(lambda a, b, h0: fn(a, b, h0, time_varying=time_varying), leaves)


def test_fft_recurrence_gradcheck():
    a, b, h0 = _case(5, True, False, torch.float64, seed=4, batch=1, channels=2)
    leaves = [t.requires_grad_() for t in (a, b, h0)]
    assert torch.autograd.gradcheck(lambda a, b, h0: linear_recurrence(a, b, h0, method="fft"), leaves)


def test_auto_matches_reference_and_broadcasts():
    gen = torch.Generator().manual_seed(1)
    b = torch.randn(100, 2, 4, dtype=torch.float64, generator=gen)
    for a in (0.9, torch.tensor(0.9, dtype=torch.float64), torch.full((4,), 0.9, dtype=torch.float64),
              torch.full((1, 1, 4), 0.9, dtype=torch.float64)):
        h = linear_recurrence(a, b, torch.ones(4, dtype=torch.float64))
        ref = linear_recurrence(a, b, torch.ones(4, dtype=torch.float64), backend="reference")
        assert torch.allclose(h, ref, atol=1e-12)
    # the exact closed form of a constant input: h[t] = (1 - a^(t+1)) / (1 - a)
    h = linear_recurrence(0.5, torch.ones(30, 1, dtype=torch.float64))
    t = torch.arange(30, dtype=torch.float64)
    assert torch.allclose(h[:, 0], (1 - 0.5 ** (t + 1)) / 0.5, atol=1e-12)


def test_long_stable_complex_recurrence_float32():
    T = 16384
    gen = torch.Generator().manual_seed(2)
    a = torch.polar(torch.full((6,), 0.999), torch.linspace(0.01, 3.0, 6))
    b = torch.randn(T, 6, generator=gen, dtype=torch.float32).to(torch.complex64)
    ref = linear_recurrence(a.to(torch.complex128), b.to(torch.complex128), method="scan")
    for method in ("fft", "scan", "sequential"):
        h = linear_recurrence(a, b, method=method)
        assert torch.isfinite(h).all()
        assert (h - ref).abs().max() <= 1e-3 * ref.abs().max(), method


def test_forced_methods_never_fall_back():
    b = torch.randn(10, 3)
    with pytest.raises(ValueError, match="time-invariant"):
        linear_recurrence(torch.rand(10, 3), b, method="fft")
    with pytest.raises(ValueError, match="method"):
        linear_recurrence(0.5, b, method="parallel")
    with pytest.raises(ValueError, match="method"):
        causal_conv(torch.randn(10, 2, 3), torch.randn(3, 4), method="scan")


def test_recurrence_argument_errors():
    b = torch.randn(10, 2, 3)
    with pytest.raises(ValueError, match="T=10"):
        linear_recurrence(torch.rand(7, 2, 3), b)
    with pytest.raises(ValueError, match="does not broadcast"):
        linear_recurrence(torch.rand(4), b)
    with pytest.raises(ValueError, match="h0"):
        linear_recurrence(0.5, b, h0=torch.zeros(5))
    with pytest.raises(TypeError, match="floating"):
        linear_recurrence(0.5, torch.ones(10, 3, dtype=torch.long))
    with pytest.raises(TypeError, match="a must be"):
        linear_recurrence("0.5", b)


@pytest.mark.parametrize("method", ["fft", "direct"])
def test_causal_conv_matches_direct_sum(method):
    gen = torch.Generator().manual_seed(5)
    u = torch.randn(50, 2, 4, 3, dtype=torch.float64, generator=gen)
    k = torch.randn(4, 3, 50, dtype=torch.float64, generator=gen)
    y = causal_conv(u, k, method=method)
    manual = torch.zeros_like(u)
    for t in range(50):
        for lag in range(t + 1):
            manual[t] += k[..., lag] * u[t - lag]
    assert torch.allclose(y, manual, atol=1e-10)
    # short kernel, channel-broadcast kernel, and a kernel longer than the sequence
    k_short = torch.randn(3, 5, dtype=torch.float64, generator=gen)
    assert torch.allclose(causal_conv(u, k_short, method=method), direct_causal_conv(u, k_short), atol=1e-10)
    k_long = torch.randn(3, 80, dtype=torch.float64, generator=gen)
    assert torch.allclose(causal_conv(u, k_long, method=method), direct_causal_conv(u, k_long[..., :50]), atol=1e-10)


def test_causal_conv_complex_kernel_and_gradients():
    gen = torch.Generator().manual_seed(6)
    u = torch.randn(6, 2, 2, dtype=torch.float64, generator=gen, requires_grad=True)
    k = torch.randn(2, 6, dtype=torch.complex128, generator=gen, requires_grad=True)
    assert torch.allclose(causal_conv(u, k, "fft"), direct_causal_conv(u, k), atol=1e-10)
    assert torch.autograd.gradcheck(lambda u, k: causal_conv(u, k, "fft").real, (u, k))
    with pytest.raises(ValueError, match=r"\[T, B, \*C\]"):
        causal_conv(torch.randn(12, 2, 3), torch.randn(4, 12))


def test_half_precision_is_computed_in_float32():
    u = torch.randn(64, 2, 3).to(torch.bfloat16)
    k = torch.rand(3, 64).to(torch.bfloat16)
    y = causal_conv(u, k)
    assert y.dtype == torch.bfloat16
    assert torch.allclose(y.float(), direct_causal_conv(u.float(), k.float()), atol=0.1, rtol=0.02)
    h = linear_recurrence(torch.tensor(0.5, dtype=torch.float16), torch.ones(100, 3, dtype=torch.float16))
    assert h.dtype == torch.float16 and torch.allclose(h[-1].float(), torch.full((3,), 2.0), atol=1e-2)


def test_modal_kernel_matches_direct_evaluation():
    gen = torch.Generator().manual_seed(7)
    lam = torch.complex(-0.05 - torch.rand(4, 3, dtype=torch.float64, generator=gen),
                        3 * torch.randn(4, 3, dtype=torch.float64, generator=gen))
    dt = 0.2 * torch.rand(4, 1, dtype=torch.float64, generator=gen)
    b = torch.randn(4, 3, dtype=torch.float64, generator=gen)
    c = torch.randn(4, 3, dtype=torch.complex128, generator=gen)
    k = modal_kernel(lam, dt, 64, b, c)
    assert k.shape == (4, 64) and k.dtype == torch.complex128
    assert torch.allclose(k, direct_modal_kernel(lam, dt, 64, b, c), atol=1e-12)
    assert torch.allclose(modal_kernel(lam, dt, 64, b, c, real=True), k.real)
    # explicit sum, lag by lag
    l = 17
    bbar = b * (torch.exp(dt * lam) - 1) / lam
    assert torch.allclose(k[:, l], (c * bbar * torch.exp(dt * lam * l)).sum(-1), atol=1e-12)


def test_modal_kernel_long_float32_is_safe():
    T = 16384
    lam = torch.complex(torch.full((2, 4), -0.5), math.pi * torch.arange(4.0).expand(2, 4))
    dt = torch.tensor([[1e-3], [1e-1]])
    k32 = modal_kernel(lam, dt, T, real=True)
    k64 = modal_kernel(lam.to(torch.complex128), dt.double(), T, real=True)
    assert torch.isfinite(k32).all()
    assert (k32.double() - k64).abs().max() <= 1e-5 * k64.abs().max()
    assert torch.allclose(modal_kernel(lam, dt, T, real=True, double=True).double(), k64, atol=1e-7)


def test_modal_kernel_gradcheck_and_errors():
    gen = torch.Generator().manual_seed(8)
    lam = torch.complex(-0.1 - torch.rand(2, 3, dtype=torch.float64, generator=gen),
                        torch.randn(2, 3, dtype=torch.float64, generator=gen)).requires_grad_()
    dt = (0.1 + torch.rand(2, 1, dtype=torch.float64, generator=gen)).requires_grad_()
    c = torch.randn(2, 3, dtype=torch.float64, generator=gen).requires_grad_()
    assert torch.autograd.gradcheck(lambda lam, dt, c: modal_kernel(lam, dt, 6, c=c, real=True), (lam, dt, c))
    with pytest.raises(ValueError, match="Re"):
        modal_kernel(torch.tensor([0.1 + 1j]), 0.1, 8)
    with pytest.raises(TypeError, match="complex"):
        modal_kernel(torch.tensor([-0.1]), 0.1, 8)
    with pytest.raises(ValueError, match="dt"):
        modal_kernel(torch.tensor([-0.1 + 1j]), 0.0, 8)


def test_complex_expm1_small_arguments():
    z = torch.tensor([1e-6 + 2e-6j, -3e-7 + 0j, 0.5 - 2j], dtype=torch.complex64)
    ref = torch.exp(z.to(torch.complex128)) - 1
    assert torch.allclose(complex_expm1(z).to(torch.complex128), ref, rtol=1e-6, atol=0)
