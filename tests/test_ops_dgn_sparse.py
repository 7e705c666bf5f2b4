"""The DGN layer's sparse-input path (ops/dgn/numba_engine.py via ops.dgn.trace_linear) against its plain form:
traces first, then one dense matmul (F.linear)."""

import pytest
import torch
import torch.nn.functional as F

pytest.importorskip("numba")

from dendrix.layers.dgn import DGNLinear  # noqa: E402
from dendrix.ops.dgn import SPARSE_MAX_DENSITY, synaptic_trace, trace_linear  # noqa: E402
from dendrix.ops.dgn import _sparse_input_reason  # noqa: E402
from dendrix.ops.dgn.numba_engine import spike_linear  # noqa: E402


def _spikes(shape, p, dtype, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(shape, generator=g) < p).to(dtype)


@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-12), (torch.float32, 1e-5)])
def test_spike_linear_equals_the_dense_product_and_its_weight_gradient(dtype, tol):
    z = _spikes((37, 5, 90), 0.05, dtype) * torch.linspace(0.5, 2.0, 90, dtype=dtype)  # not only 0/1
    z[3, 2] = 0.0  # an all-zero row
    w = torch.randn(24, 90, dtype=dtype, requires_grad=True)
    g = torch.randn(37, 5, 24, dtype=dtype)
    got = spike_linear(z, w)
    (got_gw,) = torch.autograd.grad(got, w, g)
    want = F.linear(z, w)
    (want_gw,) = torch.autograd.grad(want, w, g)
    torch.testing.assert_close(got, want, rtol=tol, atol=tol)
    torch.testing.assert_close(got_gw, want_gw, rtol=tol, atol=tol)


def test_sparse_trace_linear_gradcheck_float64():
    z = _spikes((7, 2, 6), 0.15, torch.float64, seed=1)
    w = torch.randn(4, 6, dtype=torch.float64, requires_grad=True)
    b = torch.randn(4, dtype=torch.float64, requires_grad=True)
    d0 = torch.rand(2, 6, dtype=torch.float64, requires_grad=True)
    assert _sparse_input_reason("auto", z, w) is None

    def f(w, b, d0):
        out, last = trace_linear(z, w, b, 0.7, d0)
        return out, last

    assert torch.autograd.gradcheck(f, (w, b, d0))
    out, last = f(w, b, d0)
    trace = synaptic_trace(z, 0.7, d0, backend="reference")
    torch.testing.assert_close(out, F.linear(trace, w, b), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(last, trace[-1], rtol=1e-12, atol=1e-12)


def test_auto_takes_the_sparse_path_only_where_it_applies():
    w = torch.randn(4, 50)
    sparse = _spikes((10, 3, 50), 0.05, torch.float32)
    assert _sparse_input_reason("auto", sparse, w) is None
    assert "backend='fused'" in _sparse_input_reason("fused", sparse, w)
    assert "gradient" in _sparse_input_reason("auto", sparse.clone().requires_grad_(), w)
    assert "density" in _sparse_input_reason("auto", _spikes((10, 3, 50), 0.5, torch.float32), w)
    assert "dtype" in _sparse_input_reason("auto", sparse.double(), w)
    assert SPARSE_MAX_DENSITY < 0.5


@pytest.mark.parametrize("kw", [dict(), dict(recurrent=True), dict(shared_reversal=True, recurrent=True, bias=True)],
                         ids=["dgn", "dgn-recurrent", "sdgn-recurrent-bias"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_layer_with_sparse_input_equals_the_dense_path(kw, dtype):
    """A realistic SHD-like case (5 % input spikes): spikes equal, gradients and states within rounding."""
    x = _spikes((120, 8, 300), 0.05, dtype, seed=2)
    results = {}
    for backend in ("auto", "fused"):
        torch.manual_seed(0)
        layer = DGNLinear(300, 64, backend=backend, **kw).to(dtype)
        with torch.no_grad():
            (layer.reversal if layer.shared_reversal else layer.weight).mul_(4.0)
        y, state = layer.run(x)
        loss = (y * torch.linspace(-1, 1, 64, dtype=dtype)).sum() + state.v.square().sum()
        loss.backward()
        results[backend] = (y, state, {n: p.grad for n, p in layer.named_parameters()})
    (ya, sa, ga), (yf, sf, gf) = results["auto"], results["fused"]
    assert 0.01 < float(yf.detach().mean()) < 0.9
    if dtype == torch.float64:
        assert torch.equal(ya, yf)
    else:  # float32 rounding may move a potential across the threshold now and then
        assert float((ya != yf).float().mean()) < 1e-3
    tol = 1e-9 if dtype == torch.float64 else 1e-3
    for a, b in zip(sa, sf):
        torch.testing.assert_close(a, b, rtol=tol, atol=tol)
    if dtype == torch.float64:  # 120 steps of recurrence amplify rounding differences: a looser relative bound
        for n in gf:
            torch.testing.assert_close(ga[n], gf[n], rtol=1e-6, atol=1e-9, msg=lambda m, n=n: f"grad of {n}: {m}")
