"""The numba engine of a bank of diagonal complex modes (ops/linear/numba_modal.py) against the sequential
reference, and the blocked products it replaces without autograd."""

import pytest
import torch

from dendrix.ops.linear import blocked, blocked_modal_response
from dendrix.ops.linear.reference import sequential_recurrence

pytest.importorskip("numba")


def _bank(H, N, dtype, complex_c=True, seed=0):
    g = torch.Generator().manual_seed(seed)
    cdtype = torch.complex128 if dtype == torch.float64 else torch.complex64
    lam = torch.complex(-torch.rand(H, N, generator=g, dtype=torch.float64) - 0.05,
                        3 * torch.randn(H, N, generator=g, dtype=torch.float64))
    decay = torch.exp(0.1 * lam).to(cdtype)
    bbar = torch.randn(H, N, generator=g, dtype=torch.complex128).to(cdtype)
    c = torch.randn(H, N, generator=g, dtype=torch.complex128).to(cdtype)
    return decay, bbar, (c if complex_c else c.real.contiguous())


@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-11), (torch.float32, 2e-4)])
@pytest.mark.parametrize("T,lead,H", [(1, (2,), 3), (70, (3,), 5), (300, (4, 3), 70), (257, (), 1030)])
@pytest.mark.parametrize("with_state", [False, True])
@pytest.mark.parametrize("complex_c", [True, False])
def test_numba_modal_response_matches_the_sequential_reference(dtype, tol, T, lead, H, with_state, complex_c):
    from dendrix.ops.linear.numba_modal import modal_response_numba

    N = 4
    decay, bbar, c = _bank(H, N, dtype, complex_c, seed=T)
    g = torch.Generator().manual_seed(T + 1)
    u = torch.randn(T, *lead, H, generator=g, dtype=dtype)
    z0 = torch.randn(*lead, H, N, generator=g, dtype=decay.dtype) if with_state else None
    y, z_last = modal_response_numba(u, decay, bbar, c, z0, want_state=True)
    z = sequential_recurrence(decay.to(torch.complex128), u.double().unsqueeze(-1) * bbar.to(torch.complex128),
                              None if z0 is None else z0.to(torch.complex128))
    y_ref = (c.to(z.dtype) * z).real.sum(-1)
    assert y.dtype == dtype and y.shape == u.shape and z_last.shape == (*lead, H, N) and z_last.dtype == decay.dtype
    scale = 1 + y_ref.abs().max()
    assert (y.double() - y_ref).abs().max() / scale < tol
    assert (z_last.to(torch.complex128) - z[-1]).abs().max() / (1 + z[-1].abs().max()) < tol


def test_blocked_response_uses_numba_only_without_autograd(monkeypatch):
    decay, bbar, c = _bank(6, 4, torch.float64)
    u = torch.randn(200, 5, 6, dtype=torch.float64)
    calls = []
    real = blocked.NUMBA_ENGINE.load().modal_response_numba
    monkeypatch.setattr(blocked.NUMBA_ENGINE.load(), "modal_response_numba",
                        lambda *a: calls.append(1) or real(*a))
    with torch.no_grad():
        y_numba, _ = blocked_modal_response(u, decay, bbar, c)
    assert calls == [1]
    y_grad, _ = blocked_modal_response(u.requires_grad_(), decay, bbar, c)   # autograd: the blocked products
    assert calls == [1] and y_grad.requires_grad
    # the blocked no-grad products (per sample for long T) stay the fallback when numba cannot run
    monkeypatch.setattr(blocked.NUMBA_ENGINE, "why_not", lambda *a: "forced off")
    with torch.no_grad():
        y_blocked, _ = blocked_modal_response(u, decay, bbar, c, block=8)
    assert calls == [1]
    assert torch.allclose(y_numba, y_grad.detach(), atol=1e-11) and torch.allclose(y_numba, y_blocked, atol=1e-11)


def test_drf_and_pmsn_inference_agree_with_their_training_forward():
    from dendrix.neurons.drf import DRF
    from dendrix.neurons.pmsn import PMSN

    torch.manual_seed(0)
    for module in (DRF(16).double(), PMSN(16).double()):
        x = 2 * torch.randn(120, 3, 16, dtype=torch.float64)
        train = module(x.clone().requires_grad_())
        with torch.no_grad():
            infer = module(x)
        assert (train.detach() != infer).double().mean() < 1e-3
