"""Numba CPU engine of the adaptive LIF recurrence (Yin et al. 2021): the time loop compiled.

Same equations and outputs as ``fused.py``, written with the fused engine's roundings (``fma`` where it calls
``addcmul``), so spikes and ``U`` equal the fused engine's bit for bit. Blocks of neurons run in parallel
(``dendrix.ops.numba_common``).

Saved for backward: ``U`` (an output, no extra memory) and ``X`` (the input, only when ``alpha`` needs a
gradient). The backward of a block first recomputes its adaptation trace ``a`` forward from ``U`` into a
per-worker scratch of ``T × BACKWARD_BLOCK`` values (bit-exact: the same operations as the forward; ``S`` and
``B`` follow from ``U`` and ``a``), then runs the reverse adjoint sweep documented in ``fused.py``.
"""

from __future__ import annotations

import numpy as np
import torch
from numba import njit, prange
from torch import Tensor
from torch.autograd.function import once_differentiable

from ..common import reduce_to
from ..numba_common import (BLOCK, non_finite, as_array, as_numpy_dtype, fma, step_array, surrogate_arguments,
                            surrogate_derivatives, numba_threads, workers_for, unsupported_reason as _unsupported)

__all__ = ["ALIFNumbaFunction", "unsupported_reason"]

BACKWARD_BLOCK = 64  # neurons per backward block: its T × 64 scratch stays in L2 for T up to a few thousand


def unsupported_reason(x: Tensor, u0: Tensor, surrogate) -> str | None:
    """Why this engine cannot run a call (None when it can)."""
    return _unsupported((x, u0), surrogate)


@njit(parallel=True, cache=True)
def _forward(x, u0, a0, s0, alpha, oma, rho, omr, beta, b0, one, spikes, u_seq, a_last):
    n_steps, m = x.shape
    zero = one - one
    inf, nan = non_finite(one)
    for blk in prange((m + BLOCK - 1) // BLOCK):
        lo = blk * BLOCK
        hi = min(m, lo + BLOCK)
        n = hi - lo
        u = u0[lo:hi].copy()
        a = a0[lo:hi].copy()
        s = s0[lo:hi].copy()
        al, oa, rh, orh = alpha[lo:hi], oma[lo:hi], rho[lo:hi], omr[lo:hi]
        for t in range(n_steps):
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


@njit(parallel=True, cache=True)
def _backward(u_seq, x, u0, a0, s0, alpha, oma, rho, omr, beta, b0, kind, sc, workers, scratch,
              g_spikes, has_gs, g_u, has_gu, g_alast, has_ga, g_x, need_x, acc_alpha, need_alpha, acc_rho, need_rho,
              g_u0, g_a0, g_s0):
    n_steps, m = u_seq.shape
    one = sc[5]
    zero = one - one
    n_blocks = (m + BACKWARD_BLOCK - 1) // BACKWARD_BLOCK
    for w in prange(workers):
        a_hist = scratch[w]                                      # a[t] of the block, [T, BACKWARD_BLOCK]
        for blk in range(w, n_blocks, workers):
            lo = blk * BACKWARD_BLOCK
            hi = min(m, lo + BACKWARD_BLOCK)
            n = hi - lo
            al, oa, rh, orh = alpha[lo:hi], oma[lo:hi], rho[lo:hi], omr[lo:hi]
            # Forward recomputation of a (S[t-1] from U[t-1] and B[t-1]), exactly as in _forward.
            a = a0[lo:hi].copy()
            s = s0[lo:hi].copy()
            for t in range(n_steps):
                ut = u_seq[t, lo:hi]
                for j in range(n):
                    aj = fma(orh[j], s[j], a[j] * rh[j])
                    thr = aj * beta + b0
                    a[j] = aj
                    a_hist[t, j] = aj
                    s[j] = one if ut[j] >= thr else zero
            du_next = np.zeros(n, dtype=u_seq.dtype)
            da_next = np.zeros(n, dtype=u_seq.dtype)
            neg_thr_next = np.zeros(n, dtype=u_seq.dtype)
            sgs = np.empty(n, dtype=u_seq.dtype)
            thr_t = np.empty(n, dtype=u_seq.dtype)
            diff = np.empty(n, dtype=u_seq.dtype)
            acc_a = np.zeros(n, dtype=u_seq.dtype)
            acc_r = np.zeros(n, dtype=u_seq.dtype)
            s_prev = np.empty(n, dtype=u_seq.dtype)
            ds_ext = np.zeros(n, dtype=u_seq.dtype)     # gS[t] (zero when absent)
            du_ext = np.zeros(n, dtype=u_seq.dtype)     # gU[t]
            da_ext = np.zeros(n, dtype=u_seq.dtype)     # g_a_last, at the last step only
            if has_ga:
                da_ext[:] = g_alast[lo:hi]
            for t in range(n_steps - 1, -1, -1):
                ut = u_seq[t, lo:hi]
                at = a_hist[t]
                for j in range(n):
                    thr_t[j] = at[j] * beta + b0
                    diff[j] = ut[j] - thr_t[j]
                surrogate_derivatives(kind, sc, diff, zero, sgs)
                # The previous step's a, U and S as rows, so the inner loops carry no branch: the recomputed
                # trace, or the initial state at t = 0.
                if t > 0:
                    a_prev = a_hist[t - 1]
                    u_prev = u_seq[t - 1, lo:hi]
                    for j in range(n):
                        s_prev[j] = one if u_prev[j] >= a_prev[j] * beta + b0 else zero
                else:
                    a_prev = a0[lo:hi]
                    u_prev = u0[lo:hi]
                    s_prev[:] = s0[lo:hi]
                if has_gs:
                    ds_ext[:] = g_spikes[t, lo:hi]
                if has_gu:
                    du_ext[:] = g_u[t, lo:hi]
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
                if need_alpha:                        # dU[t]/dalpha = U[t-1] - X[t]
                    xt = x[t, lo:hi]
                    for j in range(n):
                        acc_a[j] += du_next[j] * (u_prev[j] - xt[j])
                if need_rho:                          # da[t]/drho = a[t-1] - S[t-1]
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


def _scalar(value, dtype):
    return as_numpy_dtype(dtype)(value)


class ALIFNumbaFunction(torch.autograd.Function):
    """``(x [T,*], u0, a0, s0 [*], alpha, rho) -> (spikes [T,*], U [T,*], a[T-1] [*])``, as ``ALIFFunction``."""

    @staticmethod
    def forward(ctx, x: Tensor, u0: Tensor, a0: Tensor, s0: Tensor, alpha: Tensor, rho: Tensor, b0: float,
                beta: float, surrogate):  # type: ignore[override]
        dtype = x.dtype
        n_steps = x.shape[0]
        spikes = torch.empty(x.shape, dtype=dtype)
        u_seq = torch.empty(x.shape, dtype=dtype)
        a_last = torch.empty(u0.shape, dtype=dtype)
        coefs = [step_array(c, u0) for c in (alpha, 1.0 - alpha, rho, 1.0 - rho)]
        with numba_threads(workers_for(x.numel(), x[0].numel())):
            _forward(as_array(x).reshape(n_steps, -1), *(as_array(s).reshape(-1) for s in (u0, a0, s0)), *coefs,
                     _scalar(beta, dtype), _scalar(b0, dtype), _scalar(1.0, dtype),
                     spikes.numpy().reshape(n_steps, -1), u_seq.numpy().reshape(n_steps, -1), a_last.numpy().reshape(-1))
        ctx.b0, ctx.beta, ctx.surrogate = float(b0), float(beta), surrogate
        need_alpha = ctx.needs_input_grad[4]
        ctx.save_for_backward(x if need_alpha else None, u_seq, u0, a0, s0, alpha, rho)
        ctx.set_materialize_grads(False)
        return spikes, u_seq, a_last

    @staticmethod
    @once_differentiable
    def backward(ctx, g_spikes, g_u, g_alast):  # type: ignore[override]
        x, u_seq, u0, a0, s0, alpha, rho = ctx.saved_tensors
        need_x, need_u0, need_a0, need_s0, need_alpha, need_rho = ctx.needs_input_grad[:6]
        dtype = u_seq.dtype
        n_steps = u_seq.shape[0]
        m = u0.numel()
        kind, sc = surrogate_arguments(ctx.surrogate, dtype)
        np_dtype = as_numpy_dtype(dtype)
        empty = np.zeros((1, 1), dtype=np_dtype)
        g_x = torch.empty(u_seq.shape, dtype=dtype) if need_x else None
        acc_alpha = torch.zeros(u0.shape, dtype=dtype) if need_alpha else None
        acc_rho = torch.zeros(u0.shape, dtype=dtype) if need_rho else None
        g_u0, g_a0, g_s0 = (torch.empty(u0.shape, dtype=dtype) for _ in range(3))
        coefs = [step_array(c, u0) for c in (alpha, 1.0 - alpha, rho, 1.0 - rho)]

        def arr2(t):
            return empty if t is None else as_array(t).reshape(n_steps, -1)

        def arr1(t):
            return empty[0] if t is None else as_array(t).reshape(-1)

        workers = workers_for(n_steps * m, m)
        with numba_threads(workers):
            scratch = np.empty((workers, n_steps, BACKWARD_BLOCK), dtype=np_dtype)
            _backward(as_array(u_seq).reshape(n_steps, -1), arr2(x), *(as_array(s).reshape(-1) for s in (u0, a0, s0)),
                      *coefs, _scalar(ctx.beta, dtype), _scalar(ctx.b0, dtype), kind, sc, workers, scratch,
                      arr2(g_spikes), g_spikes is not None, arr2(g_u), g_u is not None,
                      arr1(None if g_alast is None else g_alast.expand(u0.shape)), g_alast is not None,
                      arr2(g_x), need_x, arr1(acc_alpha), need_alpha, arr1(acc_rho), need_rho,
                      *(g.numpy().reshape(-1) for g in (g_u0, g_a0, g_s0)))
        return (g_x, g_u0 if need_u0 else None, g_a0 if need_a0 else None, g_s0 if need_s0 else None,
                reduce_to(acc_alpha, alpha.shape) if need_alpha else None,
                reduce_to(acc_rho, rho.shape) if need_rho else None, None, None, None)
