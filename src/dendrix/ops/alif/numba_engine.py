"""Numba CPU engine of the adaptive LIF recurrence (Yin et al. 2021): the time loop compiled.

Same equations and outputs as ``fused.py``, written with the fused engine's roundings (``fma`` where it calls
``addcmul``), so spikes and ``U`` equal the fused engine's bit for bit. Blocks of neurons run in parallel
(``dendrix.ops.numba_common``).

Saved for backward: ``U`` (an output, no extra memory), ``X`` (the input, only when ``alpha`` needs a
gradient) and the adaptation trace ``a`` at every ``SEGMENT``-th step (``[T / SEGMENT, M]``, written by the
forward). The backward of a block walks the segments from the last: it recomputes the segment's ``a`` from its
checkpoint into a ``[SEGMENT, block]`` scratch (bit-exact: the same operations as the forward; ``S`` and ``B``
follow from ``U`` and ``a``), then runs the reverse adjoint sweep documented in ``fused.py`` over it while the
segment's rows of ``U`` are still in cache. (Recomputing the whole trace first, into a ``[T, 64]`` scratch,
needed blocks of 64 neurons and read ``U`` twice from memory.)
"""

from __future__ import annotations

import numpy as np
import torch
from numba import prange
from torch import Tensor
from torch.autograd.function import once_differentiable

from ..common import reduce_to
from ..numba_common import (kernel, SEGMENT, KernelArguments, block_size, fma, non_finite, per_surrogate_blocks, segments,
                            surrogate_arguments, surrogate_constants, workers_for, unsupported_reason as _unsupported)

__all__ = ["ALIFNumbaFunction", "unsupported_reason"]


def unsupported_reason(x: Tensor, u0: Tensor, surrogate) -> str | None:
    """Why this engine cannot run a call (None when it can)."""
    return _unsupported((x, u0), surrogate)


@kernel
def _forward(x, u0, a0, s0, alpha, oma, rho, omr, beta, b0, one, spikes, u_seq, a_last, keep, a_kept, segment,
             block):
    """Writes spikes, U [T, M], a[T-1] [M] and, when ``keep``, a before every ``segment``-th step [T/segment, M]."""
    n_steps, m = x.shape
    zero = one - one
    inf, nan = non_finite(one)
    for blk in prange((m + block - 1) // block):
        lo = blk * block
        hi = min(m, lo + block)
        n = hi - lo
        u = u0[lo:hi].copy()
        a = a0[lo:hi].copy()
        s = s0[lo:hi].copy()
        al, oa, rh, orh = alpha[lo:hi], oma[lo:hi], rho[lo:hi], omr[lo:hi]
        for t in range(n_steps):
            if keep and t % segment == 0:
                a_kept[t // segment, lo:hi] = a
            xt, ut, st = x[t, lo:hi], u_seq[t, lo:hi], spikes[t, lo:hi]
            for j in range(n):
                aj = fma(orh[j], s[j], a[j] * rh[j])           # a = rho a + (1 - rho) S
                thr = aj * beta + b0                            # B = b0 + beta a
                uj = fma(al[j], u[j], xt[j] * oa[j])            # U = alpha U + (1 - alpha) X
                uj = fma(-thr, s[j], uj)                        #     - B S[t-1]
                sj = one if uj >= thr else zero
                a[j], u[j], s[j] = aj, uj, sj
                ut[j] = uj
                st[j] = sj if uj > -inf else nan                # NaN where U is NaN or -Inf, as fused.py
        for j in range(n):
            a_last[lo + j] = a[j]


def _sweep_block(u_seq, x, u0, a0, s0, alpha, oma, rho, omr, beta, b0, sc, a_kept, segment,
                 g_spikes, has_gs, g_u, has_gu, g_alast, has_ga, g_x, need_x, acc_alpha, need_alpha, acc_rho,
                 need_rho, g_u0, g_a0, g_s0, lo, hi):
    """The reverse sweep of neurons ``lo:hi`` with the surrogate derivative ``dsg`` (one compiled copy per
    surrogate, ``numba_common.per_surrogate``): σ' is computed in the loop that forms the step's threshold,
    with no pass through a scratch row for it. The loops stay short: one loop over all the rows at once writes
    too many arrays for LLVM's runtime alias checks and ran unvectorised, 3× slower (measured)."""
    n_steps = u_seq.shape[0]
    one = sc[5]
    zero = one - one
    cst = surrogate_constants(sc)
    n = hi - lo
    dtype = u_seq.dtype
    al, oa, rh, orh = alpha[lo:hi], oma[lo:hi], rho[lo:hi], omr[lo:hi]
    a_hist = np.empty((segment, n), dtype=dtype)          # a[t] over the segment being swept
    a_run = np.empty(n, dtype=dtype)
    s_run = np.empty(n, dtype=dtype)
    du_next = np.zeros(n, dtype=dtype)
    da_next = np.zeros(n, dtype=dtype)
    neg_thr_next = np.zeros(n, dtype=dtype)
    acc_a = np.zeros(n, dtype=dtype)
    acc_r = np.zeros(n, dtype=dtype)
    sgs = np.empty(n, dtype=dtype)
    thr_t = np.empty(n, dtype=dtype)
    s_prev = np.empty(n, dtype=dtype)
    ds_ext = np.zeros(n, dtype=dtype)     # gS[t] (zero when absent)
    du_ext = np.zeros(n, dtype=dtype)     # gU[t]
    da_ext = np.zeros(n, dtype=dtype)     # g_a_last, at the last step only
    if has_ga:
        da_ext[:] = g_alast[lo:hi]
    s_first = s0[lo:hi]
    for seg in range((n_steps + segment - 1) // segment - 1, -1, -1):
        t0 = seg * segment
        t1 = min(n_steps, t0 + segment)
        a_start = a_kept[seg, lo:hi]                      # a[t0 - 1] (a0 at t0 = 0)
        # Forward recomputation of the segment's a (S[t-1] from U[t-1] and B[t-1]), exactly as in _forward.
        a_run[:] = a_start
        if t0 == 0:
            s_run[:] = s_first
        else:
            u_before = u_seq[t0 - 1, lo:hi]
            for j in range(n):
                s_run[j] = one if u_before[j] >= a_run[j] * beta + b0 else zero
        for t in range(t0, t1):
            ut = u_seq[t, lo:hi]
            at = a_hist[t - t0]
            for j in range(n):
                aj = fma(orh[j], s_run[j], a_run[j] * rh[j])
                a_run[j] = aj
                at[j] = aj
                s_run[j] = one if ut[j] >= aj * beta + b0 else zero
        for t in range(t1 - 1, t0 - 1, -1):
            ut = u_seq[t, lo:hi]
            at = a_hist[t - t0]
            # The previous step's a and U as rows (the recomputed trace, the segment's checkpoint, or the
            # initial state at t = 0); S[t-1] from them, or s0.
            first = t == 0
            if first:
                a_prev = a0[lo:hi]
                u_prev = u0[lo:hi]
            else:
                a_prev = a_hist[t - t0 - 1] if t > t0 else a_start
                u_prev = u_seq[t - 1, lo:hi]
            for j in range(n):                        # threshold and σ'(U - B) of this step
                thr = at[j] * beta + b0
                sgs[j] = dsg(cst, ut[j] - thr)
                thr_t[j] = thr
            if first:
                s_prev[:] = s_first
            else:
                for j in range(n):
                    s_prev[j] = one if u_prev[j] >= a_prev[j] * beta + b0 else zero
            if has_gs:
                gst = g_spikes[t, lo:hi]
                for j in range(n):
                    ds_ext[j] = gst[j]
            if has_gu:
                gut = g_u[t, lo:hi]
                for j in range(n):
                    du_ext[j] = gut[j]
            for j in range(n):
                ds = neg_thr_next[j] * du_next[j] + orh[j] * da_next[j] + ds_ext[j]
                q = sgs[j] * ds
                du = q + al[j] * du_next[j] + du_ext[j]
                da = (q + s_prev[j] * du) * (-beta) + rh[j] * da_next[j] + da_ext[j]
                du_next[j], da_next[j] = du, da
                neg_thr_next[j] = -thr_t[j]
                da_ext[j] = zero
            if need_x:
                gxt = g_x[t, lo:hi]
                for j in range(n):
                    gxt[j] = oa[j] * du_next[j]
            if need_alpha:                            # dU[t]/dalpha = U[t-1] - X[t]
                xt = x[t, lo:hi]
                for j in range(n):
                    acc_a[j] += du_next[j] * (u_prev[j] - xt[j])
            if need_rho:                              # da[t]/drho = a[t-1] - S[t-1]
                for j in range(n):
                    acc_r[j] += da_next[j] * (a_prev[j] - s_prev[j])
    for j in range(n):
        g_u0[lo + j] = al[j] * du_next[j]
        g_a0[lo + j] = rh[j] * da_next[j]
        g_s0[lo + j] = neg_thr_next[j] * du_next[j] + orh[j] * da_next[j]
        if need_alpha:
            acc_alpha[lo + j] = acc_a[j]
        if need_rho:
            acc_rho[lo + j] = acc_r[j]


# Reverse sweep by blocks of neurons: _backward(workers, kind, m, block, args)
_backward = per_surrogate_blocks(_sweep_block)


class ALIFNumbaFunction(torch.autograd.Function):
    """``(x [T,*], u0, a0, s0 [*], alpha, rho) -> (spikes [T,*], U [T,*], a[T-1] [*])``, as ``ALIFFunction``."""

    @staticmethod
    def forward(ctx, x: Tensor, u0: Tensor, a0: Tensor, s0: Tensor, alpha: Tensor, rho: Tensor, b0: float,
                beta: float, surrogate):  # type: ignore[override]
        dtype = x.dtype
        k = KernelArguments(dtype, x.shape[0])
        spikes = torch.empty(x.shape, dtype=dtype)
        u_seq = torch.empty(x.shape, dtype=dtype)
        a_last = torch.empty(u0.shape, dtype=dtype)
        keep = any(ctx.needs_input_grad[:6])
        a_kept = torch.empty((segments(x.shape[0], SEGMENT), u0.numel()) if keep else (1, 1), dtype=dtype)
        coefs = [k.step(c, u0) for c in (alpha, 1.0 - alpha, rho, 1.0 - rho)]
        workers = workers_for(x.numel(), u0.numel())
        _forward(workers, k.rows(x), k.flat(u0), k.flat(a0), k.flat(s0), *coefs, k.scalar(beta), k.scalar(b0),
                 k.scalar(1.0), k.rows(spikes), k.rows(u_seq), k.flat(a_last), keep, a_kept.numpy(), SEGMENT,
                 block_size(u0.numel(), workers))
        ctx.b0, ctx.beta, ctx.surrogate = float(b0), float(beta), surrogate
        ctx.segment = SEGMENT                                   # the checkpoints' spacing
        need_alpha = ctx.needs_input_grad[4]
        ctx.save_for_backward(x if need_alpha else None, u_seq, u0, a0, s0, alpha, rho, a_kept)
        ctx.set_materialize_grads(False)
        return spikes, u_seq, a_last

    @staticmethod
    @once_differentiable
    def backward(ctx, g_spikes, g_u, g_alast):  # type: ignore[override]
        x, u_seq, u0, a0, s0, alpha, rho, a_kept = ctx.saved_tensors
        need_x, need_u0, need_a0, need_s0, need_alpha, need_rho = ctx.needs_input_grad[:6]
        dtype = u_seq.dtype
        m = u0.numel()
        k = KernelArguments(dtype, u_seq.shape[0])
        kind, sc = surrogate_arguments(ctx.surrogate, dtype)
        g_x = torch.empty(u_seq.shape, dtype=dtype) if need_x else None
        acc_alpha = torch.empty(u0.shape, dtype=dtype) if need_alpha else None   # written for every neuron
        acc_rho = torch.empty(u0.shape, dtype=dtype) if need_rho else None
        g_u0, g_a0, g_s0 = (torch.empty(u0.shape, dtype=dtype) for _ in range(3))
        coefs = [k.step(c, u0) for c in (alpha, 1.0 - alpha, rho, 1.0 - rho)]
        workers = workers_for(u_seq.numel(), m)
        _backward(workers, kind, m, block_size(m, workers),
                  (k.rows(u_seq), k.rows(x), k.flat(u0), k.flat(a0), k.flat(s0), *coefs, k.scalar(ctx.beta),
                   k.scalar(ctx.b0), sc, a_kept.numpy(), ctx.segment,
                   k.rows(g_spikes), g_spikes is not None, k.rows(g_u), g_u is not None,
                   k.flat(None if g_alast is None else g_alast.expand(u0.shape)), g_alast is not None,
                   k.rows(g_x), need_x, k.flat(acc_alpha), need_alpha, k.flat(acc_rho), need_rho,
                   k.flat(g_u0), k.flat(g_a0), k.flat(g_s0)))
        return (g_x, g_u0 if need_u0 else None, g_a0 if need_a0 else None, g_s0 if need_s0 else None,
                reduce_to(acc_alpha, alpha.shape) if need_alpha else None,
                reduce_to(acc_rho, rho.shape) if need_rho else None, None, None, None)
