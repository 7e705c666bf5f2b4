"""The grouped input-gradient kernels (``ops/bilinear/kernels_grad_input.py``) against their references: the dense
einsum form in float64 on tiny shapes, the row-by-row numba kernels and the torch engine on realistic shapes."""

from __future__ import annotations

import pytest
import torch

import dendrix.ops.bilinear as bl
from dendrix.layers import DLIFLinear
from dendrix.ops.bilinear.autograd import BilinearForm

pytestmark = pytest.mark.skipif(not bl.HAVE_NUMBA, reason="numba is not installed")


def _spikes(shape, rate, seed, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(*shape, generator=g) < rate).to(dtype)


@pytest.mark.parametrize("mask", bl.MASKS)
@pytest.mark.parametrize("rows", [1, 5, 70, 130])  # fewer than, and not a multiple of, the 64-row groups
def test_grouped_input_gradient_equals_dense_reference_in_float64(mask, rows):
    layout = bl.build_mask(9, 5, 0.5, mask, torch.Generator().manual_seed(rows))
    values = torch.randn(layout.nnz, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    s = _spikes((rows, 9), 0.4, rows).requires_grad_(True)
    g = torch.randn(rows, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    (gs,) = torch.autograd.grad(BilinearForm.apply(s, values, layout, "numba", True), s, g)
    (ref,) = torch.autograd.grad(bl.bilinear_reference(s, values, layout), s, g)  # autograd of the einsum: 2Ks
    torch.testing.assert_close(gs, ref, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("mask", bl.MASKS)
def test_values_gradcheck_in_float64_through_the_generic_shell(mask):
    layout = bl.build_mask(7, 4, 0.5, mask, torch.Generator().manual_seed(0))
    values = torch.randn(layout.nnz, dtype=torch.float64, requires_grad=True)
    s = _spikes((6, 7), 0.5, 3)
    for engine in ("numba", "torch"):
        assert torch.autograd.gradcheck(lambda v: BilinearForm.apply(s, v, layout, engine, True), (values,))


def _numba_lists(s):
    from dendrix.ops.bilinear import kernels
    aptr, aidx, _ = kernels.active_lists(s.numpy())
    return aptr, aidx


@pytest.mark.parametrize("blocks", [1, 2])
def test_grouped_kernels_equal_the_row_by_row_kernels_on_a_benchmark_sized_layer(blocks):
    from dendrix.ops.bilinear import kernels, kernels_grad_input, kernels_independent
    from dendrix.ops.bilinear.sparse import _extended_grad, _pad_extra
    n, out, rows = 700, 128, 300
    s = _spikes((rows, n), 0.05, 0, torch.float32)
    aptr, aidx = _numba_lists(s)
    grad = torch.randn(rows, out, generator=torch.Generator().manual_seed(4))
    gen = torch.Generator().manual_seed(5)
    cyc = bl.build_mask(n, out, 0.1, "cyclic", gen)
    vals = torch.randn(cyc.nnz, generator=gen)
    ge, mv, ev = _extended_grad(grad, cyc, torch.float32).numpy(), vals[:cyc.pairs * cyc.m].numpy(), \
        _pad_extra(vals, cyc).numpy()
    new = kernels_grad_input.grad_input_window(aptr, aidx, n, cyc.m, cyc.start.numpy(), mv, ev, ge, blocks)
    old = kernels.grad_input(aptr, aidx, n, cyc.m, cyc.start.numpy(), mv, ev, ge, blocks)
    torch.testing.assert_close(torch.from_numpy(new), torch.from_numpy(old), rtol=1e-5, atol=1e-4)
    ind = bl.build_mask(n, out, 0.1, "independent", gen)
    vals = torch.randn(ind.nnz, generator=gen).numpy()
    g2 = (2 * grad).numpy()
    new = kernels_grad_input.grad_input_csr(aptr, aidx, n, ind.ptr.numpy(), ind.outputs.numpy(), vals, g2, blocks)
    old = kernels_independent.grad_input(aptr, aidx, n, ind.ptr.numpy(), ind.outputs.numpy(), vals, g2, blocks)
    torch.testing.assert_close(torch.from_numpy(new), torch.from_numpy(old), rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("mask", bl.MASKS)
def test_hidden_layer_spikes_equal_and_gradients_match_across_engines(mask):
    """A DLIFLinear hidden layer (input requires grad) in float64: the numba and torch engines give the spikes of
    the dense reference backend exactly, and its input and parameter gradients up to summation order."""
    x = _spikes((20, 8, 120), 0.05, 6)
    results = []
    for backend in ("numba", "reference", "torch"):
        torch.manual_seed(0)  # the same W and b (PyTorch's default initialisation); seed=0 fixes mask and K
        layer = DLIFLinear(120, 32, sparsity=0.9, mask=mask, backend=backend, seed=0, k_init=0.5).double()
        xg = x.clone().requires_grad_(True)
        out = layer(xg)
        (out * torch.linspace(-1, 1, 32, dtype=torch.float64)).sum().backward()
        results.append((out.detach(), xg.grad, layer.bilinear_values.grad))
    s_ref, gx_ref, gv_ref = results[1]
    assert s_ref.sum() > 0 and gx_ref.abs().sum() > 0
    for s_eng, gx, gv in (results[0], results[2]):
        assert torch.equal(s_eng, s_ref)
        torch.testing.assert_close(gx, gx_ref, rtol=1e-10, atol=1e-10)
        torch.testing.assert_close(gv, gv_ref, rtol=1e-10, atol=1e-10)
