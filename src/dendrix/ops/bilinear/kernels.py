"""Numba CPU kernels of the sparse bilinear form (imported only when numba is installed).

Work is proportional to the active pairs: for a row with active inputs a, only the pairs (i, j), i < j, both in
a, are visited, and for each such pair its window of kept outputs (``layout.py``): ``m`` values added to, or
gathered from, a contiguous slice ``[start_p, start_p + m)`` of an extended output row of width ``out + m``,
plus the pair's padded extra value at ``start_p + m`` (zero for pairs without one). Contiguous slices compile
to vector instructions.

Loops run "by first input": within a block of rows, all (row, i) with s[row, i] = 1 are bucketed by i (a
counting sort), and then for each i the pairs (i, j) of every such row are visited. The values of the pairs
(i, ·) form one contiguous region of a few tens of kB, so they stay in cache while all rows where i fires are
served; visiting pairs row by row instead jumps over the whole value array and is several times slower. Row
blocks of a few thousand rows are fastest: smaller blocks reuse the value regions less.

Each (row, first input) visit touches a whole output (or gradient) row, and with thousands of rows per block
these rows live in L3, not L2: the kernels prefetch the row of the visit two ahead (``_prefetch_row``; the
measured gain is in ``docs/benchmarks.md``, "Measurements behind the kernels"). Indices are cast to unsigned
integers in the hot loops, which lets LLVM drop negative-index wrap-around code.
All outputs/gradients are for the half-sum ``Σ_{i<j} K_ij s_i s_j``; the caller multiplies by 2.
"""

from __future__ import annotations

import numba
import numpy as np
from llvmlite import ir
from numba import njit, prange, types
from numba.core import cgutils
from numba.extending import intrinsic

U = numba.uint64
PREFETCH_AHEAD = 2  # visits ahead: one visit (~17 pairs) takes about as long as an L3 fetch

__all__ = ["active_lists", "bucket_by_input", "forward", "forward_serial", "grad_values", "grad_values_serial",
           "grad_input", "grad_input_serial", "num_threads"]


def num_threads() -> int:
    """The number of threads numba's parallel loops use."""
    return numba.get_num_threads()


@intrinsic
def _prefetch(typingctx, arr, idx):
    """LLVM's ``prefetch`` of ``arr[idx]`` (hint for the data cache, kept in all levels; no effect on results)."""
    def codegen(context, builder, signature, args):
        aryty = signature.args[0]
        ary = context.make_array(aryty)(context, builder, args[0])
        ptr = cgutils.get_item_pointer(context, builder, aryty, ary, [args[1]], wraparound=False)
        if getattr(ptr.type, "is_opaque", False):
            name = "llvm.prefetch.p0"
        else:  # typed pointers (older LLVM)
            ptr, name = builder.bitcast(ptr, ir.IntType(8).as_pointer()), "llvm.prefetch.p0i8"
        i32 = ir.IntType(32)
        fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ir.VoidType(), [ptr.type, i32, i32, i32]),
                                            name)
        builder.call(fn, [ptr, i32(1), i32(3), i32(1)])  # write intent, keep in all caches, data
        return context.get_dummy_value()
    return types.void(arr, idx), codegen


@njit(cache=True, inline="always")
def _prefetch_row(flat, at, width):
    for c in range(U(0), U(width), U(16)):  # one prefetch per 64-byte line of float32
        _prefetch(flat, at + c)


@njit(cache=True)
def active_lists(s):
    """Per row, the sorted indices of the non-zero inputs (CSR), and the number of entries not in {0, 1}.

    Serial on purpose: a memory-bound scan, and a parallel launch costs more than it saves on small inputs.
    """
    R, n = s.shape
    ptr = np.zeros(R + 1, np.int64)
    total = 0
    bad = 0
    for r in range(R):
        for i in range(n):
            v = s[r, i]
            if v != 0:
                total += 1
                if v != 1:
                    bad += 1
        ptr[r + 1] = total
    idx = np.empty(total, np.int32)
    p = 0
    for r in range(R):
        for i in range(n):
            if s[r, i] != 0:
                idx[p] = i
                p += 1
    return ptr, idx, bad


@njit(cache=True)
def bucket_by_input(aptr, aidx, n, r0, r1):
    """(row, position) of every active entry of rows [r0, r1), bucketed by input index (rows ascending)."""
    start = np.zeros(n + 1, np.int64)
    for x in range(aptr[r0], aptr[r1]):
        start[aidx[x] + 1] += 1
    for i in range(n):
        start[i + 1] += start[i]
    total = aptr[r1] - aptr[r0]
    rows = np.empty(total, np.int64)
    pos = np.empty(total, np.int64)
    fill = start[:n].copy()
    for r in range(r0, r1):
        for x in range(aptr[r], aptr[r + 1]):
            i = aidx[x]
            q = fill[i]
            rows[q] = r
            pos[q] = x
            fill[i] += 1
    return start, rows, pos


@njit(cache=True, inline="always")
def _pair_base(i, n):
    # pair(i, j) = base + j
    iu = U(i)
    return iu * (U(2) * U(n) - iu - U(1)) // U(2) - iu - U(1)


@njit(cache=True)
def _fold_rows(out, out_features, m, scale, r0, r1):
    """Columns ``out_features + t`` onto ``t`` (wrapped windows), then ``× scale``, for rows [r0, r1)."""
    for r in range(r0, r1):
        for t in range(m):
            out[r, t] += out[r, out_features + t]
        for o in range(out_features):
            out[r, o] *= scale


@njit(fastmath=True, cache=True)
def _forward_rows(aptr, aidx, n, m, start_, main_val, extra_val, flat, width, r0, r1):
    start, rows, pos = bucket_by_input(aptr, aidx, n, r0, r1)
    mu = U(m)
    wu = U(width)
    visits = start[n]
    for i in range(n):
        base = _pair_base(i, n)
        for q in range(start[i], start[i + 1]):
            if q + PREFETCH_AHEAD < visits:
                _prefetch_row(flat, U(rows[q + PREFETCH_AHEAD]) * wu, width)
            r = U(rows[q])
            ro = r * wu
            for y in range(U(pos[q]) + U(1), U(aptr[r + U(1)])):
                pid = base + U(aidx[y])
                kb = pid * mu
                o = ro + U(start_[pid])
                for t in range(mu):
                    flat[o + t] += main_val[kb + t]
                flat[o + mu] += extra_val[pid]


@njit(parallel=True, cache=True)
def forward(aptr, aidx, n, m, start_, main_val, extra_val, out_features, scale, blocks):
    """``out[r, o] = scale · Σ_{i<j active in r} K_o,ij`` as ``[R, out_features + m]`` (use columns
    ``[:out_features]``; the rest is the folded-over window tail). Row blocks run in parallel (``blocks``
    workers, each writing its own rows)."""
    R = aptr.shape[0] - 1
    width = out_features + m
    out = np.zeros((R, width), main_val.dtype)
    flat = out.reshape(-1)
    for b in prange(blocks):
        r0, r1 = R * b // blocks, R * (b + 1) // blocks
        _forward_rows(aptr, aidx, n, m, start_, main_val, extra_val, flat, width, r0, r1)
        _fold_rows(out, out_features, m, scale, r0, r1)
    return out


@njit(cache=True)
def forward_serial(aptr, aidx, n, m, start_, main_val, extra_val, out_features, scale):
    """:func:`forward` in the caller's thread (small inputs: a parallel launch costs more than it saves)."""
    R = aptr.shape[0] - 1
    width = out_features + m
    out = np.zeros((R, width), main_val.dtype)
    _forward_rows(aptr, aidx, n, m, start_, main_val, extra_val, out.reshape(-1), width, 0, R)
    _fold_rows(out, out_features, m, scale, 0, R)
    return out


@njit(fastmath=True, cache=True)
def _grad_values_inputs(aptr, aidx, n, m, start_, flat, width, start, rows, pos, gm, gx, c, chunks):
    mu = U(m)
    wu = U(width)
    # i = c, c + chunks, ...: every thread gets first inputs spread over the whole range (pairs (i, ·) get
    # fewer as i grows, so contiguous ranges, or a front/back split, would leave one thread most of the work)
    for i in range(c, n, chunks):
        base = _pair_base(i, n)
        for q in range(start[i], start[i + 1]):
            if q + PREFETCH_AHEAD < start[i + 1]:
                _prefetch_row(flat, U(rows[q + PREFETCH_AHEAD]) * wu, width)
            r = U(rows[q])
            ro = r * wu
            for y in range(U(pos[q]) + U(1), U(aptr[r + U(1)])):
                pid = base + U(aidx[y])
                kb = pid * mu
                o = ro + U(start_[pid])
                for t in range(mu):
                    gm[kb + t] += flat[o + t]
                gx[pid] += flat[o + mu]


@njit(parallel=True, cache=True)
def grad_values(aptr, aidx, n, m, start_, g, gm, chunks):
    """Gradients of the main values (accumulated into ``gm``, zero-initialised) and of the padded extra values
    (returned, one per pair) for the extended upstream gradient ``g`` ``[R, out + m]``.

    Parallel over first inputs i (strided, for balance: pairs (i, ·) get fewer as i grows); each thread
    owns the values of its pairs, so no reduction is needed.
    """
    R = aptr.shape[0] - 1
    gx = np.zeros(n * (n - 1) // 2, g.dtype)
    start, rows, pos = bucket_by_input(aptr, aidx, n, 0, R)
    flat = g.reshape(-1)
    for c in prange(chunks):
        _grad_values_inputs(aptr, aidx, n, m, start_, flat, g.shape[1], start, rows, pos, gm, gx, c, chunks)
    return gx


@njit(cache=True)
def grad_values_serial(aptr, aidx, n, m, start_, g, gm):
    R = aptr.shape[0] - 1
    gx = np.zeros(n * (n - 1) // 2, g.dtype)
    start, rows, pos = bucket_by_input(aptr, aidx, n, 0, R)
    _grad_values_inputs(aptr, aidx, n, m, start_, g.reshape(-1), g.shape[1], start, rows, pos, gm, gx, 0, 1)
    return gx


@njit(fastmath=True, cache=True, inline="always")
def _window_dot(flat, o, main_val, kb, mu, extra):
    acc = flat[o + mu] * extra
    for t in range(mu):
        acc += flat[o + t] * main_val[kb + t]
    return acc


@njit(fastmath=True, cache=True)
def _grad_input_rows(aptr, aidx, n, m, start_, main_val, extra_val, flat, width, gs, r0, r1):
    start, rows, pos = bucket_by_input(aptr, aidx, n, r0, r1)
    mu = U(m)
    wu = U(width)
    visits = start[n]
    gs_flat = gs.reshape(-1)
    for a in range(n):
        base_a = _pair_base(a, n)
        for q in range(start[a], start[a + 1]):
            if q + PREFETCH_AHEAD < visits:
                ahead = U(rows[q + PREFETCH_AHEAD])
                _prefetch_row(flat, ahead * wu, width)
                _prefetch_row(gs_flat, ahead * U(n), n)
            r = rows[q]
            ro = U(r) * wu
            # partners b < a: pair (b, a) lies in region b
            for b in range(a):
                pid = _pair_base(b, n) + U(a)
                gs[r, b] += _window_dot(flat, ro + U(start_[pid]), main_val, pid * mu, mu, extra_val[pid])
            # partners b > a: pairs (a, b) are contiguous in region a
            for b in range(a + 1, n):
                pid = base_a + U(b)
                gs[r, b] += _window_dot(flat, ro + U(start_[pid]), main_val, pid * mu, mu, extra_val[pid])


@njit(parallel=True, cache=True)
def grad_input(aptr, aidx, n, m, start_, main_val, extra_val, g, blocks):
    """``gs[r, b] = Σ_{a active in r, a≠b} K(a,b)·g[r, :]`` (the derivative of the half-sum w.r.t. s_b), for the
    extended upstream gradient ``g`` ``[R, out + m]``.

    Every input b, active or not, gets a gradient: cost ~ active inputs × n × kept outputs per pair.
    """
    R = aptr.shape[0] - 1
    gs = np.zeros((R, n), g.dtype)
    flat = g.reshape(-1)
    for blk in prange(blocks):
        _grad_input_rows(aptr, aidx, n, m, start_, main_val, extra_val, flat, g.shape[1], gs,
                         R * blk // blocks, R * (blk + 1) // blocks)
    return gs


@njit(cache=True)
def grad_input_serial(aptr, aidx, n, m, start_, main_val, extra_val, g):
    R = aptr.shape[0] - 1
    gs = np.zeros((R, n), g.dtype)
    _grad_input_rows(aptr, aidx, n, m, start_, main_val, extra_val, g.reshape(-1), g.shape[1], gs, 0, R)
    return gs
