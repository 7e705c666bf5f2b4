"""DLIFConv2d's channel-block engine (``ops/bilinear/conv.py``) against the plain dense formulation.

The dense formulation is the authors' ``Conv2d_bilinear``: at every pixel the outer product of the channel vector
with itself, times the masked K. The engine must give the same current, spikes and gradients (K values and the
input, including the silent channels that a hidden layer's surrogate needs).
"""

from __future__ import annotations

import pytest
import torch

from dendrix.layers import DLIFConv2d
from dendrix.ops.bilinear import HAVE_NUMBA, build_independent_layout, build_layout
from dendrix.ops.bilinear.conv import (ChannelBilinear, channel_bilinear, channel_bilinear_reference, channel_block,
                                       uses_channel_engine)

pytestmark = pytest.mark.skipif(not HAVE_NUMBA, reason="the channel-block engine needs numba")


def spikes(shape, rate, seed, dtype=torch.float64):
    return (torch.rand(shape, generator=torch.Generator().manual_seed(seed)) < rate).to(dtype)


@pytest.mark.parametrize("mask", ["independent", "cyclic"])
def test_channel_block_is_the_layers_dense_K(mask):
    layer = DLIFConv2d(7, 5, 3, sparsity=0.4, seed=3, mask=mask).double()
    Kc = channel_block(layer.bilinear_values, layer.layout)
    assert torch.equal(Kc.permute(2, 0, 1), layer.bilinear_matrix())


def test_float64_gradcheck_in_the_kept_values_and_input_gradient_equals_the_reference():
    layout = build_independent_layout(6, 4, 0.6, torch.Generator().manual_seed(0))
    values = torch.randn(layout.nnz, dtype=torch.float64, requires_grad=True)
    s = spikes((9, 6), 0.5, 1)
    # K enters linearly, so gradcheck at binary input is exact
    assert torch.autograd.gradcheck(lambda v: ChannelBilinear.apply(s, channel_block(v, layout), True), (values,))
    # s enters quadratically; at a binary point the analytic gradient is the reference's autograd gradient
    sa, sr = s.clone().requires_grad_(True), s.clone().requires_grad_(True)
    g = torch.randn(9, 4, dtype=torch.float64)
    (ChannelBilinear.apply(sa, channel_block(values, layout), True) * g).sum().backward()
    (channel_bilinear_reference(sr, channel_block(values, layout)) * g).sum().backward()
    torch.testing.assert_close(sa.grad, sr.grad, rtol=1e-12, atol=1e-12)
    # and the reference itself passes gradcheck in s (real-valued)
    real = torch.rand(9, 6, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x: channel_bilinear_reference(x, channel_block(values, layout)), (real,))


@pytest.mark.parametrize("sparsity,mask,rate", [(0.0, "independent", 0.1), (0.9, "independent", 0.2),
                                                (0.5, "cyclic", 0.15)])
def test_layer_on_a_realistic_shape_equals_the_reference_backend(sparsity, mask, rate):
    """64 → 32 channels, 16×16 maps, T = 3, B = 4 (12 288 pixel rows: the parallel kernels run)."""
    fast = DLIFConv2d(64, 32, 3, sparsity=sparsity, seed=0, mask=mask, k_init=0.2)
    ref = DLIFConv2d(64, 32, 3, sparsity=sparsity, seed=0, mask=mask, k_init=0.2, backend="reference")
    ref.load_state_dict(fast.state_dict())
    x = spikes((3, 4, 64, 16, 16), rate, 2, torch.float32)
    rows = x.permute(0, 1, 3, 4, 2).reshape(-1, 64)
    assert uses_channel_engine(rows, fast.layout, "numba")
    xf, xr = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    yf, yr = fast(xf), ref(xr)
    assert yf.sum() > 0
    g = torch.randn_like(yf)
    (yf * g).sum().backward()
    (yr * g).sum().backward()
    assert torch.equal(yf, yr)
    for (name, pf), pr in zip(fast.named_parameters(), ref.parameters()):
        torch.testing.assert_close(pf.grad, pr.grad, rtol=1e-4, atol=1e-4, msg=lambda m: f"{name}: {m}")
    torch.testing.assert_close(xf.grad, xr.grad, rtol=1e-4, atol=1e-5)


def test_float32_current_close_to_float64():
    layout = build_layout(32, 16, 0.5, torch.Generator().manual_seed(1))
    values = torch.randn(layout.nnz, dtype=torch.float64) * 0.1
    s = spikes((5000, 32), 0.2, 3)
    y64 = channel_bilinear(s, values, layout)
    y32 = channel_bilinear(s.float(), values.float(), layout)
    torch.testing.assert_close(y32.double(), y64, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(y64, channel_bilinear_reference(s, channel_block(values, layout)), rtol=1e-12,
                               atol=1e-12)


def test_non_binary_input_is_refused_by_name():
    layer = DLIFConv2d(4, 3, 3, sparsity=0.0, seed=0)
    with pytest.raises(ValueError, match="binary spikes"):
        layer(torch.full((2, 1, 4, 5, 5), 0.5))


def test_large_blocks_and_other_engines_use_the_generic_path():
    layout = build_layout(8, 4, 0.5, torch.Generator().manual_seed(0))
    s = spikes((3, 8), 0.5, 0, torch.float32)
    assert uses_channel_engine(s, layout, "numba")
    assert not uses_channel_engine(s, layout, "torch")
    assert not uses_channel_engine(s[:0], layout, "numba")
