"""Numba CPU kernels of the input gradient of the sparse bilinear form, vectorised over rows (needs numba).

``gs[r, b] = Σ_{a active in r, a ≠ b} Σ_{o keeps (a, b)} K_o,ab · g[r, o]`` for every input b, active or not:
the work is (active inputs) × n × (kept outputs per pair), since each active input a reaches all its partners b.
Only active inputs' pairs are visited, but the count is still about 2.5·10⁹ multiply-adds on the DLIF benchmark
shape (8000 rows, 35 active of 700 inputs, 12.8 kept outputs per pair), so what matters is how fast each is.

The row-by-row kernels (``kernels.py``, ``kernels_independent.py``) do one scalar gather ``g[r, o]`` per
multiply-add. These kernels instead take the rows where one input a fires in **groups of 16** (the rows are
bucketed by active input, ``kernels.bucket_by_input``), gather the group's gradient rows transposed into
``gt[o, 0:16]`` (16 contiguous floats per output, a few kB that stay in L1), and then for every partner b
accumulate ``Σ_o K_o,ab · gt[o, :]`` into 16 register accumulators: one 16-lane multiply-add per kept value
(one AVX-512 instruction, or two AVX2 ones) instead of 16 scalar gathers. The 16 sums are then added to their
rows' gradient entries. The pair's kept values are read once per group instead of once per row.

The accumulators are 16 named scalars (LLVM keeps them in vector registers; an array accumulator would be stored
and reloaded on every value, a memory dependency chain). Groups with fewer than 16 rows pad with zero columns.
Both mask layouts: cyclic windows (``layout.py``: ``m`` contiguous outputs from ``start_p`` in an extended row of
width ``out + m``, plus one padded extra value) and independent masks (``independent.py``: CSR by pair).
``g`` is the upstream gradient with the form's factor 2 already applied.
"""

from __future__ import annotations

import numba
import numpy as np
from numba import njit, prange

from .kernels import bucket_by_input

__all__ = ["grad_input_window", "grad_input_csr", "GROUP"]

GROUP = 64  # rows per group: 64 accumulators, four independent 16-lane multiply-adds per kept value
U = numba.uint64  # unsigned indices: no negative-index wrap-around code in the hot loops


@njit(cache=True, inline="always")
def _pair(i, j, n):
    return i * (2 * n - i - 1) // 2 + (j - i - 1)


@njit(cache=True)
def _gather_group(g, rows, q0, cnt, gt):
    """``gt[o·16 + w] = g[rows[q0 + w], o]`` for w < cnt, zero for the padding columns."""
    width = g.shape[1]
    for o in range(width):
        for w in range(GROUP):
            gt[o * GROUP + w] = 0.0
    for w in range(cnt):
        r = rows[q0 + w]
        for o in range(width):
            gt[o * GROUP + w] = g[r, o]


@njit(cache=True, inline="always")
def _scatter(acc, gs, rows, q0, cnt, b):
    for w in range(cnt):
        gs[rows[q0 + w], b] += acc[w]


@njit(fastmath=True, cache=True, inline="always")
def _window_partner(gt, main_val, extra_val, start_, m, p, acc):
    """``acc[w] = Σ_t K_(p, t) · gt[start_p + t, w]`` over the window of pair p (m main values, the extra one)."""
    for w in range(U(GROUP)):
        acc[w] = 0
    c0 = U(start_[p]) * U(GROUP)
    kb = U(p) * U(m)
    for t in range(U(m) + U(1)):
        v = main_val[kb + t] if t < U(m) else extra_val[p]
        c = c0 + t * U(GROUP)
        for w in range(U(GROUP)):
            acc[w] += v * gt[c + w]


@njit(fastmath=True, cache=True, inline="always")
def _csr_partner(gt, values, ptr, outputs, p, acc):
    """``acc[w] = Σ_k K_k · gt[outputs[k], w]`` over the kept outputs k of pair p (CSR)."""
    for w in range(U(GROUP)):
        acc[w] = 0
    for k in range(U(ptr[p]), U(ptr[p + 1])):
        v = values[k]
        c = U(outputs[k]) * U(GROUP)
        for w in range(U(GROUP)):
            acc[w] += v * gt[c + w]


@njit(fastmath=True, cache=True)
def _window_rows(aptr, aidx, n, m, start_, main_val, extra_val, g, gs, r0, r1):
    start, rows, _ = bucket_by_input(aptr, aidx, n, r0, r1)
    gt = np.empty(g.shape[1] * GROUP, g.dtype)
    acc = np.empty(GROUP, g.dtype)
    for a in range(n):
        for q0 in range(start[a], start[a + 1], GROUP):
            cnt = min(GROUP, start[a + 1] - q0)
            _gather_group(g, rows, q0, cnt, gt)
            for b in range(a):
                _window_partner(gt, main_val, extra_val, start_, m, _pair(b, a, n), acc)
                _scatter(acc, gs, rows, q0, cnt, b)
            for b in range(a + 1, n):
                _window_partner(gt, main_val, extra_val, start_, m, _pair(a, b, n), acc)
                _scatter(acc, gs, rows, q0, cnt, b)


@njit(fastmath=True, cache=True)
def _csr_rows(aptr, aidx, n, ptr, outputs, values, g, gs, r0, r1):
    start, rows, _ = bucket_by_input(aptr, aidx, n, r0, r1)
    gt = np.empty(g.shape[1] * GROUP, g.dtype)
    acc = np.empty(GROUP, g.dtype)
    for a in range(n):
        for q0 in range(start[a], start[a + 1], GROUP):
            cnt = min(GROUP, start[a + 1] - q0)
            _gather_group(g, rows, q0, cnt, gt)
            for b in range(a):
                _csr_partner(gt, values, ptr, outputs, _pair(b, a, n), acc)
                _scatter(acc, gs, rows, q0, cnt, b)
            for b in range(a + 1, n):
                _csr_partner(gt, values, ptr, outputs, _pair(a, b, n), acc)
                _scatter(acc, gs, rows, q0, cnt, b)


@njit(parallel=True, cache=True)
def grad_input_window(aptr, aidx, n, m, start_, main_val, extra_val, g, blocks):
    """``gs [R, n]`` for a cyclic-window layout; ``g`` is the extended ``2·grad`` ``[R, out + m]``; ``extra_val``
    one padded value per pair. Row blocks run in parallel (``blocks`` workers, each writing its own rows)."""
    R = aptr.shape[0] - 1
    gs = np.zeros((R, n), g.dtype)
    for blk in prange(blocks):
        _window_rows(aptr, aidx, n, m, start_, main_val, extra_val, g, gs, R * blk // blocks,
                     R * (blk + 1) // blocks)
    return gs


@njit(parallel=True, cache=True)
def grad_input_csr(aptr, aidx, n, ptr, outputs, values, g, blocks):
    """``gs [R, n]`` for an independent (CSR by pair) layout; ``g`` is ``2·grad`` ``[R, out]``."""
    R = aptr.shape[0] - 1
    gs = np.zeros((R, n), g.dtype)
    for blk in prange(blocks):
        _csr_rows(aptr, aidx, n, ptr, outputs, values, g, gs, R * blk // blocks, R * (blk + 1) // blocks)
    return gs
