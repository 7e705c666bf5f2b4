"""MMDEND's chunked kernel (ops/mmdend/fused.py, hand-written backward) against its plain autograd version
(ops/mmdend/reference.py): same block operators, same layout, float64, forward and every gradient."""

import pytest
import torch

from dendrix.neurons import MMDEND
from dendrix.ops.mmdend import ChunkLayout, chunked_mmdend, reference_chunked_mmdend


def _inputs(m: MMDEND, T: int, batch: int, block: int, seed: int):
    gen = torch.Generator().manual_seed(seed)
    dtype = torch.float64
    L = min(block, T)
    tail = T % L
    ops = [t.detach() for t in m.kernel_operators(L, tail, dtype)]
    M, beta, w, g_in, gain, offset = ops[:6]
    M_tail = ops[6] if tail else None
    J, K, D, Dp = m.branches, m.compartments, m.channels, m.window
    x = 2 * torch.randn(T, batch * D, generator=gen, dtype=dtype)
    vd0 = torch.randn(J, K, batch * Dp, generator=gen, dtype=dtype)
    vs0 = torch.randn(batch * D, generator=gen, dtype=dtype)
    lo, hi = m.ssf.clip_bounds()
    levels = m.ssf.levels if m.ssf.firing == "integer" and hi != m.ssf.levels else 0
    lay = ChunkLayout(batch, D, Dp, J, K, L, m.window == m.stride or J == 1, m.channel_index.T.flatten(),
                      m.branch_activation, (lo, hi), levels, True)
    leaves = [t.clone().requires_grad_(True) if t is not None else None
              for t in (x, M, M_tail, beta, w, g_in, gain, offset, vd0, vs0)]
    return leaves, lay


@pytest.mark.parametrize("activation", ["tanh", "sigmoid", "relu", "gelu", "identity"])
@pytest.mark.parametrize("shape", [dict(channels=8), dict(channels=15, branches=3, window=7, stride=4)],
                         ids=["disjoint", "overlapping"])
def test_chunked_kernel_matches_its_reference(activation, shape):
    torch.manual_seed(0)
    m = MMDEND(branch_activation=activation, ssf_range=3, **shape).double()
    with torch.no_grad():
        m.ssf.scale.fill_(0.7)
        m.ssf.shift.fill_(0.1)
    T, batch, block = 23, 2, 8  # two full blocks and a tail of 7
    fused_in, lay = _inputs(m, T, batch, block, seed=1)
    ref_in, _ = _inputs(m, T, batch, block, seed=1)
    fused = chunked_mmdend(*fused_in, lay)
    ref = reference_chunked_mmdend(*ref_in, lay)
    assert torch.equal(fused[0], ref[0].detach())                          # integer spikes
    assert bool(fused[0].abs().sum() > 0)
    for got, want in zip(fused[1:], ref[1:]):                              # v, f, final compartments, final soma
        torch.testing.assert_close(got.detach(), want.detach(), rtol=1e-10, atol=1e-10)
    gen = torch.Generator().manual_seed(2)
    weights = [torch.randn(t.shape, generator=gen, dtype=t.dtype) for t in (fused[0], fused[3], fused[4])]

    def loss(outs):
        return sum((o * r).sum() for o, r in zip((outs[0], outs[3], outs[4]), weights))

    got = torch.autograd.grad(loss(fused), [t for t in fused_in if t is not None])
    want = torch.autograd.grad(loss(ref), [t for t in ref_in if t is not None])
    names = [n for n, t in zip(("x", "M", "M_tail", "beta", "w", "g_in", "gain", "offset", "vd0", "vs0"), fused_in)
             if t is not None]
    for name, g, r in zip(names, got, want):
        torch.testing.assert_close(g, r, rtol=1e-9, atol=1e-9, msg=lambda text, n=name: f"grad of {n}: {text}")


def test_chunked_kernel_binary_firing_matches_its_reference():
    torch.manual_seed(0)
    m = MMDEND(8, firing="binary").double()
    fused_in, lay = _inputs(m, 16, 3, 8, seed=3)
    ref_in, _ = _inputs(m, 16, 3, 8, seed=3)
    fused, ref = chunked_mmdend(*fused_in, lay), reference_chunked_mmdend(*ref_in, lay)
    assert torch.equal(fused[0], ref[0].detach())
    g = torch.autograd.grad(fused[0].sum(), fused_in[0])[0]
    r = torch.autograd.grad(ref[0].sum(), ref_in[0])[0]
    torch.testing.assert_close(g, r, rtol=1e-9, atol=1e-9)
