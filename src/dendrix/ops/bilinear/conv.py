"""The per-pixel channel bilinear term of ``DLIFConv2d`` on a dense channel block (CPU, numba).

In the authors' ``Conv2d_bilinear`` the bilinear term is taken at every pixel over the input channels (outer product
of the channel vector with itself, then a linear map by the masked K ``[out, C, C]``). Rows are the pixels of all
T·B maps (``R = T·B·H·W``, channels last). With few channels the whole K fits one dense block
``Kc[c, d, o] = K_o,cd`` ``[C, C, out]`` (symmetric, zero diagonal, zeros where the mask drops an entry; 64 → 128
channels: 2 MB), built from the layer's kept values by a differentiable scatter (:func:`channel_block`), so:

* forward and the gradient of K cost rows × active pairs × out vector adds (contiguous ``Kc[c, d]``; numba,
  ``kernels_conv.py``);
* the input gradient ``dL/ds[r, c] = 2 Σ_{d active in r} Σ_o K_o,cd g[r, o]`` (needed for silent channels too: the
  layer below has a surrogate gradient there) costs rows × active channels × C × out multiply-adds, one matrix
  product per channel over the rows where it fires (``g[rows of d] @ 2 Kc[d]ᵀ``), instead of the dense
  formulation's rows × C² × out.

:func:`channel_bilinear_reference` is the plain dense formulation (the authors' outer product and einsum), kept
beside it and compared by ``tests/test_dlif_conv_engine.py``. :func:`channel_bilinear` chooses: this engine on CPU
with numba when ``backend`` resolves to numba, the block is small enough (:data:`MAX_BLOCK_ELEMENTS`) and no
graph is being traced; otherwise the generic :func:`~dendrix.ops.bilinear.bilinear_form`.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from ..custom_ops import compiling
from ..dispatch import compute_dtype
from .independent import IndependentLayout
from .layout import PairLayout
from .sparse import HAVE_NUMBA, check_binary

try:  # optional compiled CPU engine
    from . import kernels as _kernels
    from . import kernels_conv as _ckernels
except ImportError:  # pragma: no cover - depends on the environment
    _kernels = _ckernels = None

__all__ = ["block_index", "channel_block", "ChannelBilinear", "channel_bilinear", "channel_bilinear_reference",
           "uses_channel_engine", "MAX_BLOCK_ELEMENTS"]

# Largest dense block [C, C, out] the engine materialises (16 Mi elements: 64 MB in float32, e.g. 256 → 256).
MAX_BLOCK_ELEMENTS = 1 << 24
_PARALLEL_MIN_ROWS = 4096  # below this many rows one worker runs: a parallel launch costs more


def block_index(layout: PairLayout | IndependentLayout) -> tuple[Tensor, Tensor]:
    """Flat positions in ``[C, C, out]`` of every kept value, at (i, j) and at its mirror (j, i)."""
    o, i, j = layout.entries()
    n, out = layout.in_features, layout.out_features
    return (i * n + j) * out + o, (j * n + i) * out + o


def channel_block(values: Tensor, layout: PairLayout | IndependentLayout,
                  index: tuple[Tensor, Tensor] | None = None) -> Tensor:
    """The dense symmetric zero-diagonal ``Kc`` ``[C, C, out]`` of the kept ``values`` (differentiable in them).
    ``index`` is :func:`block_index` of ``layout`` when the caller keeps it."""
    upper, lower = block_index(layout) if index is None else index
    n, out = layout.in_features, layout.out_features
    flat = values.new_zeros(n * n * out).index_add(0, upper, values).index_add(0, lower, values)
    return flat.view(n, n, out)


def channel_bilinear_reference(s: Tensor, Kc: Tensor) -> Tensor:
    """``y[r, o] = Σ_{c,d} s[r, c] s[r, d] Kc[c, d, o]``: the dense outer-product formulation (any real ``s``)."""
    outer = (s.unsqueeze(2) * s.unsqueeze(1)).reshape(s.shape[0], -1)
    return outer @ Kc.reshape(-1, Kc.shape[2])


def _blocks(rows: int) -> int:
    return 1 if rows < _PARALLEL_MIN_ROWS else max(1, min(_kernels.num_threads(), rows))


class ChannelBilinear(torch.autograd.Function):
    """``y[r, o] = s_rᵀ K_o s_r = 2 Σ_{c<d} Kc[c, d, o] s_rc s_rd`` for binary ``s`` ``[R, C]`` and a symmetric
    zero-diagonal ``Kc`` ``[C, C, out]`` (see the module docstring for the costs). The gradient of ``Kc`` is
    returned on its upper triangle (the entries the forward reads); :func:`channel_block` maps it back to the
    kept values."""

    @staticmethod
    def forward(ctx, s: Tensor, Kc: Tensor, check: bool = True) -> Tensor:  # type: ignore[override]
        dtype = compute_dtype(Kc)
        sc = s.detach().to(dtype).contiguous()
        kd = Kc.detach().to(dtype).contiguous()
        aptr, aidx, bad = _kernels.active_lists(sc.numpy())
        if check and bad:
            check_binary(s)
        out = torch.from_numpy(_ckernels.forward(aptr, aidx, kd.numpy(), _blocks(s.shape[0])))
        ctx.s_dtype, ctx.k_dtype, ctx.channels = s.dtype, Kc.dtype, Kc.shape[0]
        ctx.save_for_backward(kd if ctx.needs_input_grad[0] else None, torch.from_numpy(aptr),
                              torch.from_numpy(aidx))
        return out.to(s.dtype)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        kd, aptr_t, aidx_t = ctx.saved_tensors
        aptr, aidx = aptr_t.numpy(), aidx_t.numpy()
        dtype = compute_dtype(grad)
        g = grad.to(dtype).contiguous()
        R = g.shape[0]
        grad_s = grad_k = None
        if ctx.needs_input_grad[1]:
            upper = torch.from_numpy(_ckernels.grad_pairs(aptr, aidx, g.numpy(), ctx.channels, _blocks(R)))
            grad_k = (2.0 * upper).to(ctx.k_dtype)
        if ctx.needs_input_grad[0]:
            C = ctx.channels
            start, rows, _ = _kernels.bucket_by_input(aptr, aidx, C, 0, R)  # the rows where each d fires
            weight = (2.0 * kd).transpose(1, 2).contiguous()  # [d, out, c]: row-major operand of each product
            gn = g.numpy()
            gs = torch.zeros(R, C, dtype=dtype)
            gsn = gs.numpy()
            widest = int((start[1:] - start[:-1]).max()) if C else 0
            buf = torch.empty(widest, g.shape[1], dtype=dtype)
            prod = torch.empty(widest, C, dtype=dtype)
            for d in range(C):  # one product per channel over the rows where it fires
                lo, hi = int(start[d]), int(start[d + 1])
                if hi > lo:
                    _ckernels.gather_rows(gn, rows, lo, hi, buf.numpy())
                    torch.mm(buf[:hi - lo], weight[d], out=prod[:hi - lo])
                    _ckernels.scatter_add_rows(gsn, rows, lo, hi, prod.numpy())
            grad_s = gs.to(ctx.s_dtype)
        return grad_s, grad_k, None


def uses_channel_engine(s: Tensor, layout: PairLayout | IndependentLayout, engine: str) -> bool:
    """Whether :func:`channel_bilinear` runs this engine for rows ``s`` and the resolved bilinear ``engine``."""
    n, out = layout.in_features, layout.out_features
    return (engine == "numba" and HAVE_NUMBA and s.device.type == "cpu" and not compiling()
            and n * n * out <= MAX_BLOCK_ELEMENTS and s.shape[0] > 0 and layout.nnz > 0)


def channel_bilinear(s: Tensor, values: Tensor, layout: PairLayout | IndependentLayout, check_input: bool = True,
                      index: tuple[Tensor, Tensor] | None = None) -> Tensor:
    """``sᵀ K_o s`` for pixel rows ``s`` ``[R, C]`` on the dense channel block (call only where
    :func:`uses_channel_engine` is true; ``index`` as for :func:`channel_block`)."""
    Kc = channel_block(values.to(compute_dtype(values)), layout, index)
    return ChannelBilinear.apply(s, Kc, check_input).to(s.dtype)
