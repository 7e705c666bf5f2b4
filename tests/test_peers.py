"""dendrix beside the peers' own formulations (benchmarks/bench_peers.py ports): PMSN, D-RF, sliding PSN.

Pins the explanation of the PMSN difference from the authors' code: in float64 both formulations give the same
spikes; in float32 the authors' soma sums in float32, and every spike that differs sits where that sum's
rounding error reaches the distance of the exact sum to a multiple of V_th.
"""

import importlib.util
from pathlib import Path

import pytest
import torch

from dendrix.neurons.drf import DRF
from dendrix.neurons.pmsn import PMSN
from dendrix.neurons.psn import SlidingPSN
from dendrix.ops.linear import blocked_modal_response, sequential_recurrence

_spec = importlib.util.spec_from_file_location("bench_peers", Path(__file__).parents[1] / "benchmarks" / "bench_peers.py")
peers = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(peers)


def _pmsn_pair(dtype, T=512, B=4, H=16, seed=0):
    torch.manual_seed(seed)
    ours = PMSN(H).to(dtype)
    x = (2.0 * torch.randn(T, B, H)).to(dtype)
    return ours, peers.AuthorsPMSN(ours), x


@pytest.mark.parametrize("method", ["blocked", "fft"])
def test_pmsn_equals_authors_formulation_in_float64(method):
    ours, authors, x = _pmsn_pair(torch.float64)
    ours.method = method
    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    s_ours, s_auth = ours(xa), authors(xb)
    assert torch.equal(s_ours, s_auth) and s_ours.sum() > 0
    w = torch.randn_like(x)
    (s_ours * w).sum().backward()
    (s_auth * w).sum().backward()
    assert torch.allclose(xa.grad, xb.grad, atol=1e-9)


def test_pmsn_float32_differences_are_the_authors_float32_sums():
    ours, authors, x = _pmsn_pair(torch.float32, T=1024, B=8, H=32)
    with torch.no_grad():
        s_ours, s_auth = ours(x), authors(x)
        # the authors' drive, summed exactly (float64) and as they do (float32)
        T = x.shape[0]
        u = x.permute(1, 2, 0)
        k_f = torch.fft.rfft(authors.kernel(T), n=2 * T)
        y = torch.fft.irfft(torch.fft.rfft(u, n=2 * T) * k_f, n=2 * T)[..., :T] + u * authors.D.unsqueeze(-1)
        authors_drive = y.relu()
        exact = peers.authors_pmsn_soma(authors_drive.double()).float().permute(2, 0, 1)
        err = (authors_drive.cumsum(-1).double() - authors_drive.double().cumsum(-1)).abs().permute(2, 0, 1)
        total = authors_drive.double().cumsum(-1).permute(2, 0, 1)
    # the authors' drive with exact sums gives the authors' spikes except where the float32 sum rounds across
    # an integer (V_th = 1) at this step or the one before
    near = (total - total.round()).abs() <= 2 * err
    before = torch.zeros_like(near)
    before[1:] = near[:-1]
    near = near | before
    flips = exact != s_auth
    assert bool(near[flips].all())
    # ours (float64 sums of its own drive) differs from the exact-sum authors' spikes only by the drive's own
    # rounding: a small fraction, like the authors' own float32 flips
    assert (s_ours != exact).float().mean() < 1e-3 and flips.float().mean() < 1e-3


def test_drf_equals_released_birf_model():
    torch.manual_seed(1)
    ours = DRF(8, adaptive_threshold=False, complex_weights=True, surrogate="triangle", gamma_init=1.0).double()
    peer = peers.ReleasedBiRF(ours)
    x = 3.0 * torch.randn(200, 3, 8, dtype=torch.float64)
    xa = x.clone().requires_grad_()
    xb = x.permute(1, 2, 0).contiguous().requires_grad_()
    a, b = ours(xa), peer(xb).permute(2, 0, 1)
    assert torch.equal(a, b) and a.sum() > 0
    w = torch.randn_like(a)
    (a * w).sum().backward()
    (b * w).sum().backward()
    assert torch.allclose(xa.grad, xb.grad.permute(2, 0, 1), atol=1e-9)


@pytest.mark.parametrize("T,lead,block", [(70, (3,), 8), (5, (2, 3), 32), (64, (2,), 16), (33, (), 32)])
@pytest.mark.parametrize("with_state", [False, True])
def test_blocked_modal_response_matches_sequential_reference(T, lead, block, with_state):
    torch.manual_seed(T)
    H, N = 4, 3
    lam = torch.complex(-torch.rand(H, N, dtype=torch.float64) - 0.1, 3 * torch.randn(H, N, dtype=torch.float64))
    decay, bbar = torch.exp(0.1 * lam), torch.randn(H, N, dtype=torch.complex128)
    c = torch.randn(H, N, dtype=torch.complex128)
    u = torch.randn(T, *lead, H, dtype=torch.float64, requires_grad=True)
    z0 = torch.randn(*lead, H, N, dtype=torch.complex128) if with_state else None
    y, z_last = blocked_modal_response(u, decay, bbar, c, z0, block=block, want_state=True)
    z = sequential_recurrence(decay, u.unsqueeze(-1) * bbar, z0)
    y_ref = (c * z).real.sum(-1)
    assert torch.allclose(y, y_ref, atol=1e-12) and torch.allclose(z_last, z[-1], atol=1e-12)
    with torch.no_grad():  # without autograd, long blocks (T >= 3L²/4) batch the products per (sample, channel)
        y_ng, z_ng = blocked_modal_response(u, decay, bbar, c, z0, block=block, want_state=True)
    assert torch.allclose(y_ng, y_ref, atol=1e-12) and torch.allclose(z_ng, z[-1], atol=1e-12)
    g = torch.randn_like(y)
    (grad,) = torch.autograd.grad((y * g).sum(), u)
    (grad_ref,) = torch.autograd.grad((y_ref * g).sum(), u)
    assert torch.allclose(grad, grad_ref, atol=1e-12)


@pytest.mark.parametrize("k", [1, 3, 40])
def test_sliding_psn_paths_match_the_gemm_reference(k):
    torch.manual_seed(k)
    m = SlidingPSN(k, exp_init=False).double()
    x = torch.randn(50, 2, 3, dtype=torch.float64)
    h_ref = (m.gemm_weight(50) @ x.reshape(50, -1)).reshape(x.shape) + m.bias
    assert torch.allclose(m._hidden(x), h_ref, atol=1e-12)
    ext = torch.cat([x.new_zeros(k - 1, 2, 3), x])
    assert torch.allclose(m._hidden_from_extended(ext), h_ref, atol=1e-12)
    y1, s1 = m.run(x[:17])
    y2, _ = m.run(x[17:], s1)
    assert torch.equal(torch.cat([y1, y2]), m(x))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("th,burst", [(1.0, False), (0.7, False), (1.0, True), (0.7, True)])
@pytest.mark.parametrize("with_residual", [False, True])
def test_cumulative_numba_soma_equals_the_torch_form_bit_for_bit(dtype, th, burst, with_residual):
    pytest.importorskip("numba")
    from dendrix.ops.linear import cumulative_soma

    torch.manual_seed(3)
    drive = (2 * torch.randn(300, 3, 700, dtype=dtype)).relu()  # 2100 columns: several blocks and a partial one
    drive[5, 0, 3], drive[7, 1, 2] = float("inf"), float("nan")
    r0 = torch.rand(3, 700, dtype=dtype) * th if with_residual else None
    ref = cumulative_soma(drive, r0, th, burst, backend="torch")
    fast = cumulative_soma(drive, r0, th, burst, backend="numba")
    for a, b in zip(ref, fast):
        assert a.dtype == b.dtype == dtype and a.shape == b.shape
        assert torch.equal(a.isnan(), b.isnan()) and torch.equal(a.nan_to_num(), b.nan_to_num())
    assert ref[0].nansum() > 0 and ref[0][8:, 1, 2].isnan().all()


def test_cumulative_soma_forced_numba_on_an_unsupported_call_says_why():
    pytest.importorskip("numba")
    from dendrix.ops.linear import cumulative_soma

    with pytest.raises(RuntimeError, match="float32 or float64"):
        cumulative_soma(torch.ones(4, 2, dtype=torch.bfloat16), None, 1.0, False, backend="numba")
