"""The DGN layer's synaptic matmul for sparse presynaptic spikes, in numba (imported only when numba is installed).

``y = z Wᵀ`` and ``dL/dW = gᵀ z`` visit only the non-zero entries of ``z`` ``[R, in]``: at 5 % input spikes a
dense BLAS product does twenty times the multiply-adds it needs (700 → 256 at R = 8000 rows: about 40 ms
forward and 40 ms for the weight gradient on one thread of the shared 2-core CPU, against a few ms here;
``docs/benchmarks.md``). Each row's non-zeros are found by one scan of ``z`` (a
row pointer and column list of the non-zeros is built once, ``nnz``-sized, and kept for the weight
gradient). Summation runs over the inputs in ascending order, so results equal a plain
``z @ W.T`` up to rounding (the comparison is in ``tests/test_ops_dgn_sparse.py``; the plain form is
``F.linear``).
"""

from __future__ import annotations

import numpy as np
import torch
from numba import njit
from torch import Tensor

from ..numba_common import as_array

__all__ = ["SpikeLinearFunction", "spike_linear", "unsupported_reason", "compress_rows"]

# One thread: numba's parallel loops run on an OpenMP team of their own, whose workers keep spinning after each
# call and then compete with torch's intra-op threads for the cores (measured on the shared 2-core CPU with 2
# torch threads: the recurrent DGN layer 6-40x slower than with these serial kernels).


@njit(cache=True)
def _compress_rows(z):
    """The non-zeros of ``z`` [R, in] row by row: (row pointer [R+1], column [nnz], value [nnz]), in one scan.
    The column and value buffers are allocated for every entry but only their first nnz are written (untouched
    pages of an ``np.empty`` cost nothing) and copied out."""
    R, n_in = z.shape
    indptr = np.empty(R + 1, np.int64)
    cols = np.empty(R * n_in, np.int32)
    vals = np.empty(R * n_in, z.dtype)
    p = 0
    for r in range(R):
        indptr[r] = p
        row = z[r]
        for i in range(n_in):
            v = row[i]
            if v != 0.0:
                cols[p] = i
                vals[p] = v
                p += 1
    indptr[R] = p
    return indptr, cols[:p].copy(), vals[:p].copy()


@njit(cache=True)
def _rows_times_weight(indptr, cols, vals, wt, out, r0, r1):
    """out[r] = Σ_p vals[p] wt[cols[p]] for rows r0..r1−1 (row views: LLVM vectorises the inner loop)."""
    n_out = wt.shape[1]
    for r in range(r0, r1):
        o = out[r]
        o[:] = 0.0
        for p in range(indptr[r], indptr[r + 1]):
            w, v = wt[cols[p]], vals[p]
            for k in range(n_out):
                o[k] += v * w[k]


@njit(cache=True)
def _forward_serial(indptr, cols, vals, wt, out):
    _rows_times_weight(indptr, cols, vals, wt, out, 0, out.shape[0])


@njit(cache=True)
def _weight_grad_columns(indptr, cols, vals, g, gwt, k0, k1):
    """gwt[:, k0:k1] = Σ_r Σ_p vals[p] g[r, k0:k1] into rows cols[p] (rows of z in order)."""
    gwt[:, k0:k1] = 0.0
    for r in range(g.shape[0]):
        gr = g[r, k0:k1]
        for p in range(indptr[r], indptr[r + 1]):
            acc, v = gwt[cols[p], k0:k1], vals[p]
            for k in range(k1 - k0):
                acc[k] += v * gr[k]


@njit(cache=True)
def _weight_grad_serial(indptr, cols, vals, g, gwt):
    _weight_grad_columns(indptr, cols, vals, g, gwt, 0, g.shape[1])


def compress_rows(z2: Tensor) -> tuple:
    """The non-zeros of ``z2`` [R, in] (a contiguous CPU tensor) as numpy row pointer, columns and values."""
    return _compress_rows(as_array(z2))


def spike_linear_forward(rows: tuple, weight: Tensor) -> Tensor:
    """``z @ weight.T`` from ``rows = compress_rows(z)``."""
    indptr, cols, vals = rows
    R = indptr.shape[0] - 1
    out = torch.empty(R, weight.shape[0], dtype=weight.dtype)
    wt = as_array(weight.detach().t().contiguous())
    _forward_serial(indptr, cols, vals, wt, out.numpy())
    return out


def spike_linear_weight_grad(rows: tuple, g2: Tensor, n_in: int) -> Tensor:
    """``g2ᵀ z`` ``[out, in]`` from ``rows = compress_rows(z)``."""
    indptr, cols, vals = rows
    gwt = torch.empty(n_in, g2.shape[1], dtype=g2.dtype)
    gn = as_array(g2)
    _weight_grad_serial(indptr, cols, vals, gn, gwt.numpy())
    return gwt.t()


class SpikeLinearFunction(torch.autograd.Function):
    """``z Wᵀ`` for an input ``z`` that needs no gradient (presynaptic spikes of a first layer): forward and the
    weight gradient visit only the non-zeros of ``z``; keeps only those (row pointer, columns, values)."""

    @staticmethod
    def forward(ctx, z2: Tensor, weight: Tensor) -> Tensor:  # type: ignore[override]
        rows = compress_rows(z2)
        ctx.n_in = z2.shape[1]
        ctx.save_for_backward(*(torch.from_numpy(a) for a in rows))  # nnz-sized, for the weight gradient
        return spike_linear_forward(rows, weight)

    @staticmethod
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        rows = tuple(t.numpy() for t in ctx.saved_tensors)
        g_weight = spike_linear_weight_grad(rows, grad, ctx.n_in) if ctx.needs_input_grad[1] else None
        return None, g_weight


def spike_linear(z: Tensor, weight: Tensor) -> Tensor:
    """``z [..., in] @ weight.T`` → ``[..., out]`` by :class:`SpikeLinearFunction` (``z`` must not need grad)."""
    z2 = z.reshape(-1, z.shape[-1]).contiguous()
    return SpikeLinearFunction.apply(z2, weight).view(*z.shape[:-1], weight.shape[0])


def unsupported_reason(z: Tensor, weight: Tensor) -> str | None:
    """Why the sparse-input kernel cannot run (None when it can): CPU tensors of one dtype, float32 or float64."""
    if z.device.type != "cpu" or weight.device.type != "cpu":
        return "the numba engine runs on CPU tensors only"
    if z.dtype != weight.dtype or z.dtype not in (torch.float32, torch.float64):
        return f"the numba engine needs float32 or float64 tensors of one dtype, got {z.dtype} and {weight.dtype}"
    return None

