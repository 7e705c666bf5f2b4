"""Numba CPU engine of the RF / BRF recurrence (explicit Euler, ``fused.py`` has the equations): the time loop
compiled, blocks of neurons in parallel (``dendrix.ops.numba_common``).

The forward performs the fused engine's tensor operations one by one in the same order and precision (each
product, sum and scaling rounded on its own), so spikes and ``u`` equal the fused engine's bit for bit.

Saved for backward: ``u`` (an output, no extra memory) and the initial state. The backward of a block first
recomputes ``v`` (and BRF's ``q``) forward from ``u`` into a per-worker scratch of ``T × BACKWARD_BLOCK`` values
(bit-exact: the same operations as the forward; ``x`` is not needed, since ``v`` and ``q`` depend on it only
through ``u``), then runs the reverse adjoint sweep of ``fused.py``.
"""

from __future__ import annotations

import numpy as np
import torch
from numba import njit, prange
from torch import Tensor

from ..numba_common import (BLOCK, non_finite, as_array, as_numpy_dtype, step_array, surrogate_arguments, surrogate_derivatives,
                            numba_threads, workers_for, unsupported_reason as _unsupported)
from .fused import _sum_to

__all__ = ["RFNumbaFunction", "unsupported_reason"]

BACKWARD_BLOCK = 64  # neurons per backward block: its two T × 64 scratch arrays stay in L2 for moderate T


def unsupported_reason(x: Tensor, omega, b0, u0, v0, q0, surrogate) -> str | None:
    """Why this engine cannot run a call (None when it can)."""
    return _unsupported((x, omega, b0, u0, v0, q0), surrogate)


@njit(parallel=True, cache=True)
def _forward(x, omega, b0, u0, v0, q0, dt, theta, decay_q, balanced, one, spikes, u_seq, v_last, q_last):
    n_steps, m = x.shape
    zero = one - one
    inf, nan = non_finite(one)
    for blk in prange((m + BLOCK - 1) // BLOCK):
        lo = blk * BLOCK
        hi = min(m, lo + BLOCK)
        n = hi - lo
        u = u0[lo:hi].copy()
        v = v0[lo:hi].copy()
        q = q0[lo:hi].copy()
        om, bb = omega[lo:hi], b0[lo:hi]
        for t in range(n_steps):
            xt, ut, st = x[t, lo:hi], u_seq[t, lo:hi], spikes[t, lo:hi]
            for j in range(n):
                b = bb[j] - q[j] if balanced else bb[j]
                u_next = u[j] + dt * ((b * u[j] - om[j] * v[j]) + xt[j])
                v[j] = v[j] + dt * (om[j] * u[j] + b * v[j])
                u[j] = u_next
                if balanced:
                    sj = one if (u_next - theta) - q[j] >= zero else zero
                    q[j] = decay_q * q[j] + sj
                else:
                    sj = one if u_next - theta >= zero else zero
                ut[j] = u_next
                st[j] = sj if u_next > -inf else nan      # NaN where U is NaN or -Inf, as fused.py
        for j in range(n):
            v_last[lo + j] = v[j]
            q_last[lo + j] = q[j]


@njit(parallel=True, cache=True)
def _backward(u_seq, omega, b0, u0, v0, q0, dt, theta, decay_q, balanced, kind, sc, workers, v_hist_all, q_hist_all,
              g_spikes, has_gs, g_u, has_gu, g_vlast, has_gv, g_qlast, has_gq,
              g_x, g_omega, g_b0, g_u0, g_v0, g_q0):
    n_steps, m = u_seq.shape
    one = sc[5]
    zero = one - one
    n_blocks = (m + BACKWARD_BLOCK - 1) // BACKWARD_BLOCK
    for w in prange(workers):
        v_hist, q_hist = v_hist_all[w], q_hist_all[w]            # v[t], q[t] of the block
        for blk in range(w, n_blocks, workers):
            lo = blk * BACKWARD_BLOCK
            hi = min(m, lo + BACKWARD_BLOCK)
            n = hi - lo
            om, bb = omega[lo:hi], b0[lo:hi]
            # Forward recomputation of v and q from u, exactly as in _forward.
            u = u0[lo:hi].copy()
            v = v0[lo:hi].copy()
            q = q0[lo:hi].copy()
            for t in range(n_steps):
                ut = u_seq[t, lo:hi]
                for j in range(n):
                    b = bb[j] - q[j] if balanced else bb[j]
                    v[j] = v[j] + dt * (om[j] * u[j] + b * v[j])
                    v_hist[t, j] = v[j]
                    if balanced:
                        sj = one if (ut[j] - theta) - q[j] >= zero else zero
                        q[j] = decay_q * q[j] + sj
                        q_hist[t, j] = q[j]
                    u[j] = ut[j]
            gu = np.zeros(n, dtype=u_seq.dtype)
            gv = np.zeros(n, dtype=u_seq.dtype)
            gq = np.zeros(n, dtype=u_seq.dtype)
            if has_gv:
                gv[:] = g_vlast[lo:hi]
            if has_gq and balanced:
                gq[:] = g_qlast[lo:hi]
            acc_om = np.zeros(n, dtype=u_seq.dtype)
            acc_b = np.zeros(n, dtype=u_seq.dtype)
            gs_ext = np.zeros(n, dtype=u_seq.dtype)     # gS[t] (zero when absent)
            gu_ext = np.zeros(n, dtype=u_seq.dtype)     # gU[t]
            mm = np.empty(n, dtype=u_seq.dtype)
            sgs = np.empty(n, dtype=u_seq.dtype)
            for t in range(n_steps - 1, -1, -1):
                ut = u_seq[t, lo:hi]
                # The previous step's state as rows, so the inner loops carry no branch on t (q is unused by RF).
                if t > 0:
                    u_prev = u_seq[t - 1, lo:hi]
                    v_prev = v_hist[t - 1]
                    q_prev = q_hist[t - 1] if balanced else q0[lo:hi]
                else:
                    u_prev, v_prev, q_prev = u0[lo:hi], v0[lo:hi], q0[lo:hi]
                if balanced:
                    for j in range(n):
                        mm[j] = (ut[j] - theta) - q_prev[j]
                else:
                    for j in range(n):
                        mm[j] = ut[j] - theta
                surrogate_derivatives(kind, sc, mm, zero, sgs)
                if has_gs:
                    gs_ext[:] = g_spikes[t, lo:hi]
                if has_gu:
                    gu_ext[:] = g_u[t, lo:hi]
                gxt = g_x[t, lo:hi]
                for j in range(n):
                    g_s = gs_ext[j] + gq[j] if balanced else gs_ext[j]
                    gm = g_s * sgs[j]
                    gu_j = gu[j] + gu_ext[j] + gm
                    gv_j = gv[j]
                    b = bb[j] - q_prev[j] if balanced else bb[j]
                    gb = dt * (gu_j * u_prev[j] + gv_j * v_prev[j])
                    gxt[j] = dt * gu_j
                    acc_om[j] += dt * (gv_j * u_prev[j] - gu_j * v_prev[j])
                    acc_b[j] += gb
                    damp = one + dt * b
                    rot = dt * om[j]
                    gu[j] = gu_j * damp + gv_j * rot
                    gv[j] = gv_j * damp - gu_j * rot
                    if balanced:
                        gq[j] = decay_q * gq[j] - gm - gb
            for j in range(n):
                g_omega[lo + j] = acc_om[j]
                g_b0[lo + j] = acc_b[j]
                g_u0[lo + j] = gu[j]
                g_v0[lo + j] = gv[j]
                if balanced:
                    g_q0[lo + j] = gq[j]
                else:
                    g_q0[lo + j] = g_qlast[lo + j] if has_gq else zero


class RFNumbaFunction(torch.autograd.Function):
    """RF / BRF over the whole sequence, as ``RFFunction``: ``(x, omega, b0, u0, v0, q0) -> (spikes [T,*],
    u [T,*], v_last [*], q_last [*])``."""

    @staticmethod
    def forward(ctx, x, omega, b0, u0, v0, q0, dt, theta, balanced, surrogate):  # type: ignore[override]
        dtype = x.dtype
        scalar = as_numpy_dtype(dtype)
        n_steps = x.shape[0]
        step = x[0]
        spikes, u_seq = torch.empty_like(x), torch.empty_like(x)
        v_last, q_last = torch.empty_like(step), torch.empty_like(step)
        with numba_threads(workers_for(x.numel(), x[0].numel())):
            _forward(as_array(x).reshape(n_steps, -1), *(step_array(t, step) for t in (omega, b0, u0, v0, q0)),
                     scalar(dt), scalar(theta), scalar(0.9), bool(balanced), scalar(1.0),
                     spikes.numpy().reshape(n_steps, -1), u_seq.numpy().reshape(n_steps, -1),
                     v_last.numpy().reshape(-1), q_last.numpy().reshape(-1))
        ctx.dt, ctx.theta, ctx.balanced, ctx.surrogate = dt, theta, balanced, surrogate
        ctx.shapes = (omega.shape, b0.shape, u0.shape, v0.shape, q0.shape)
        ctx.save_for_backward(omega, b0, u0, v0, q0, u_seq)
        return spikes, u_seq, v_last, (q_last if balanced else q0.clone())

    @staticmethod
    def backward(ctx, g_spikes, g_us, g_v_last, g_q_last):  # type: ignore[override]
        omega, b0, u0, v0, q0, u_seq = ctx.saved_tensors
        dtype = u_seq.dtype
        np_dtype = as_numpy_dtype(dtype)
        n_steps = u_seq.shape[0]
        step = u_seq[0]
        m = step.numel()
        kind, sc = surrogate_arguments(ctx.surrogate, dtype)
        empty = np.zeros((1, 1), dtype=np_dtype)

        def arr2(t):
            return empty if t is None else as_array(t).reshape(n_steps, -1)

        def arr1(t):
            return empty[0] if t is None else step_array(t, step)

        g_x = torch.empty_like(u_seq)
        outs = [torch.empty_like(step) for _ in range(5)]          # omega, b0, u0, v0, q0
        workers = workers_for(n_steps * m, m)
        with numba_threads(workers):
            v_hist = np.empty((workers, n_steps, BACKWARD_BLOCK), dtype=np_dtype)
            q_hist = np.empty((workers, n_steps if ctx.balanced else 1, BACKWARD_BLOCK), dtype=np_dtype)
            _backward(as_array(u_seq).reshape(n_steps, -1), *(step_array(t, step) for t in (omega, b0, u0, v0, q0)),
                      np_dtype(ctx.dt), np_dtype(ctx.theta), np_dtype(0.9), bool(ctx.balanced), kind, sc, workers,
                      v_hist, q_hist, arr2(g_spikes), g_spikes is not None, arr2(g_us), g_us is not None,
                      arr1(g_v_last), g_v_last is not None, arr1(g_q_last), g_q_last is not None,
                      arr2(g_x), *(o.numpy().reshape(-1) for o in outs))
        grads = [g_x] + [_sum_to(o, shape) if need else None
                         for o, shape, need in zip(outs, ctx.shapes, ctx.needs_input_grad[1:6])]
        return (*grads, None, None, None, None)
