"""Numba CPU kernels of the sparse bilinear form on independent masks (imported only when numba is installed).

The mask of every output neuron is its own random set of pairs (``independent.py``): pair p keeps the outputs
``outputs[ptr[p]:ptr[p + 1]]`` (ascending), with one value each at the same positions. Work is proportional to
the active pairs times their kept outputs, as for the window kernels (``kernels.py``), but the kept outputs of a
pair are scattered over the output row, so each value is one indexed add (no contiguous slice).

All outputs/gradients are for the half-sum ``Σ_{i<j} K_ij s_i s_j``; the caller multiplies by 2 (the forward
takes ``scale``).
"""

from __future__ import annotations

import numba
import numpy as np
from numba import njit, prange

from .kernels import bucket_by_input

__all__ = ["forward", "grad_values", "grad_input"]

U = numba.uint64


@njit(cache=True, inline="always")
def _pair(i, j, n):
    return i * (2 * n - i - 1) // 2 + (j - i - 1)


@njit(fastmath=True, cache=True)
def _forward_rows(aptr, aidx, n, ptr, outputs, values, out, r0, r1):
    # by first input (as kernels.py): the values of the pairs (i, ·) are one contiguous region, which stays in
    # cache while every row of the block where i fires is served
    start, rows, pos = bucket_by_input(aptr, aidx, n, r0, r1)
    flat = out.reshape(-1)
    width = U(out.shape[1])
    for i in range(n):
        for q in range(start[i], start[i + 1]):
            r = rows[q]
            ro = U(r) * width
            for y in range(pos[q] + 1, aptr[r + 1]):
                p = _pair(i, aidx[y], n)
                for k in range(U(ptr[p]), U(ptr[p + 1])):  # unsigned: no negative-index wrap-around code
                    flat[ro + U(outputs[k])] += values[k]


@njit(parallel=True, cache=True)
def forward(aptr, aidx, n, ptr, outputs, values, out_features, scale, blocks):
    """``out[r, o] = scale · Σ_{i<j active in r, o keeps (i, j)} K_o,ij`` ``[R, out_features]``; row blocks in
    parallel (``blocks`` workers, each writing its own rows)."""
    R = aptr.shape[0] - 1
    out = np.zeros((R, out_features), values.dtype)
    for b in prange(blocks):
        r0, r1 = R * b // blocks, R * (b + 1) // blocks
        _forward_rows(aptr, aidx, n, ptr, outputs, values, out, r0, r1)
        for r in range(r0, r1):
            for o in range(out_features):
                out[r, o] *= scale
    return out


@njit(parallel=True, fastmath=True, cache=True)
def grad_values(aptr, aidx, n, ptr, outputs, g, nnz, chunks):
    """``grad[k] = Σ_r g[r, outputs[k]]`` over the rows where value k's pair is active. The pairs (i, ·) own
    one contiguous range of values, so workers that take distinct first inputs i never write the same entry."""
    R = aptr.shape[0] - 1
    start, rows, pos = bucket_by_input(aptr, aidx, n, 0, R)
    grad = np.zeros(nnz, g.dtype)
    flat = g.reshape(-1)
    width = U(g.shape[1])
    for c in prange(chunks):
        for i in range(c, n, chunks):  # strided: pairs (i, ·) get fewer as i grows
            for q in range(start[i], start[i + 1]):
                r = rows[q]
                ro = U(r) * width
                for y in range(pos[q] + 1, aptr[r + 1]):
                    p = _pair(i, aidx[y], n)
                    for k in range(U(ptr[p]), U(ptr[p + 1])):
                        grad[k] += flat[ro + U(outputs[k])]
    return grad


@njit(parallel=True, fastmath=True, cache=True)
def grad_input(aptr, aidx, n, ptr, outputs, values, g, blocks):
    """``gs[r, b] = Σ_{a active in r, a ≠ b} Σ_{o keeps (a, b)} g[r, o] K_o,ab`` ``[R, n]`` (row blocks in
    parallel)."""
    R = aptr.shape[0] - 1
    gs = np.zeros((R, n), values.dtype)
    for blk in prange(blocks):
        r0, r1 = R * blk // blocks, R * (blk + 1) // blocks
        start, rows, _ = bucket_by_input(aptr, aidx, n, r0, r1)
        for a in range(n):  # by active input: the pairs containing a are reused by every row where a fires
            for q in range(start[a], start[a + 1]):
                r = rows[q]
                for b in range(n):
                    if b == a:
                        continue
                    p = _pair(a, b, n) if a < b else _pair(b, a, n)
                    acc = 0.0
                    for k in range(ptr[p], ptr[p + 1]):
                        acc += g[r, outputs[k]] * values[k]
                    gs[r, b] += acc
    return gs
