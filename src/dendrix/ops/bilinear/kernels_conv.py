"""Numba CPU kernels of the per-pixel channel bilinear form of ``DLIFConv2d`` (imported only with numba).

The layer's K is materialised as one dense, symmetric, zero-diagonal block ``Kc`` ``[C, C, out]`` (``Kc[c, d]`` is
the vector of ``K_o,cd`` over the outputs o, zero where the mask drops the entry): with few input channels (C ≤ a
few hundred) this block is small (64 → 128: 2 MB), and every pair's values are one contiguous vector, so the inner
loops are plain vector adds and dot products instead of the indexed gathers of the generic sparse kernels.
Rows are pixels (``R = T·B·H·W``); ``aptr, aidx`` are their active channels (``kernels.active_lists``).

* forward:     ``y[r] = 2 Σ_{c<d active in r} Kc[c, d]``                  rows × active pairs × out adds
* grad_pairs:  ``U[c, d] = Σ_r g[r] over rows where c < d are both active``  the same count (upper triangle only)
* gather_rows / scatter_add_rows: the operand and result of the input gradient's products (``conv.py``: the rows
  where each channel fires, bucketed by ``kernels.bucket_by_input``, then one matrix product per channel,
  ``gs[rows of d] += g[rows of d] · 2 Kc[d]ᵀ``, rows × active channels × C × out MACs)
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

__all__ = ["forward", "grad_pairs", "gather_rows", "scatter_add_rows"]


@njit(parallel=True, fastmath=True, cache=True)
def forward(aptr, aidx, Kc, blocks):
    """``y[r] = 2 Σ_{c<d active} Kc[c, d]`` ``[R, out]``, row blocks in parallel."""
    R = aptr.shape[0] - 1
    O = Kc.shape[2]
    out = np.zeros((R, O), Kc.dtype)
    for b in prange(blocks):
        acc = np.zeros(O, Kc.dtype)
        for r in range(R * b // blocks, R * (b + 1) // blocks):
            acc[:] = 0.0
            end = aptr[r + 1]
            for x in range(aptr[r], end):
                c = aidx[x]
                for y in range(x + 1, end):
                    d = aidx[y]
                    for o in range(O):
                        acc[o] += Kc[c, d, o]
            for o in range(O):
                out[r, o] = 2.0 * acc[o]
    return out


@njit(parallel=True, fastmath=True, cache=True)
def grad_pairs(aptr, aidx, g, C, blocks):
    """``U[c, d] = Σ_r g[r]`` over the rows where both c < d are active, ``[C, C, out]`` (zero on and below the
    diagonal). Each worker sums its row block into its own buffer; the buffers are added at the end."""
    R = aptr.shape[0] - 1
    O = g.shape[1]
    parts = np.zeros((blocks, C, C, O), g.dtype)
    for b in prange(blocks):
        U = parts[b]
        for r in range(R * b // blocks, R * (b + 1) // blocks):
            end = aptr[r + 1]
            for x in range(aptr[r], end):
                c = aidx[x]
                for y in range(x + 1, end):
                    d = aidx[y]
                    for o in range(O):
                        U[c, d, o] += g[r, o]
    out = parts[0]
    for b in range(1, blocks):
        out += parts[b]
    return out


@njit(fastmath=True, cache=True)
def gather_rows(g, rows, lo, hi, buf):
    """``buf[q - lo] = g[rows[q]]`` for q in [lo, hi) (the operand of one channel's product)."""
    O = g.shape[1]
    for q in range(lo, hi):
        r = rows[q]
        for o in range(O):
            buf[q - lo, o] = g[r, o]


@njit(fastmath=True, cache=True)
def scatter_add_rows(gs, rows, lo, hi, prod):
    """``gs[rows[q]] += prod[q - lo]`` for q in [lo, hi) (rows are distinct within one channel)."""
    C = gs.shape[1]
    for q in range(lo, hi):
        r = rows[q]
        for c in range(C):
            gs[r, c] += prod[q - lo, c]
