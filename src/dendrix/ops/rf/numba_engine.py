"""Numba CPU engine of the RF / BRF recurrence (explicit Euler, ``fused.py`` has the equations): the time loop
compiled, blocks of neurons in parallel (``dendrix.ops.numba_common``).

The forward performs the fused engine's tensor operations one by one in the same order and precision (each
product, sum and scaling rounded on its own), so spikes and ``u`` equal the fused engine's bit for bit.

Saved for backward: ``u`` (an output, no extra memory), the initial state, and ``v`` (BRF: and ``q``) at
every ``SEGMENT``-th step (``[T / SEGMENT, M]``, written by the forward). The backward of a block walks the
segments from the last: it recomputes the segment's ``v`` and ``q`` from its checkpoint into ``[SEGMENT, block]``
scratch (bit-exact: the same operations as the forward; ``x`` is not needed, since ``v`` and ``q`` depend on it
only through ``u``), then runs the reverse adjoint sweep of ``fused.py`` over it while the segment's rows of
``u`` are still in cache.
"""

from __future__ import annotations

import numpy as np
import torch
from numba import prange
from torch import Tensor
from torch.autograd.function import once_differentiable

from ..numba_common import (kernel, SEGMENT, KernelArguments, block_size, segments, non_finite, per_surrogate_blocks,
                            surrogate_arguments, surrogate_constants, workers_for, unsupported_reason as _unsupported)
from .fused import _sum_to

__all__ = ["RFNumbaFunction", "unsupported_reason"]


def unsupported_reason(x: Tensor, omega, b0, u0, v0, q0, surrogate) -> str | None:
    """Why this engine cannot run a call (None when it can)."""
    return _unsupported((x, omega, b0, u0, v0, q0), surrogate)


@kernel
def _forward(x, omega, b0, u0, v0, q0, dt, theta, decay_q, balanced, one, spikes, u_seq, v_last, q_last,
             keep, v_kept, q_kept, segment, block):
    """Writes spikes, u [T, M], v and q after the last step [M] and, when ``keep``, v (and BRF's q) before every
    ``segment``-th step [T/segment, M]."""
    n_steps, m = x.shape
    zero = one - one
    inf, nan = non_finite(one)
    for blk in prange((m + block - 1) // block):
        lo = blk * block
        hi = min(m, lo + block)
        n = hi - lo
        u = u0[lo:hi].copy()
        v = v0[lo:hi].copy()
        q = q0[lo:hi].copy()
        om, bb = omega[lo:hi], b0[lo:hi]
        for t in range(n_steps):
            if keep and t % segment == 0:
                v_kept[t // segment, lo:hi] = v
                if balanced:
                    q_kept[t // segment, lo:hi] = q
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


def _sweep_block(u_seq, omega, b0, u0, v0, q0, dt, theta, decay_q, balanced, sc, v_kept, q_kept, segment,
                 g_spikes, has_gs, g_u, has_gu, g_vlast, has_gv, g_qlast, has_gq,
                 g_x, g_omega, g_b0, g_u0, g_v0, g_q0, lo, hi):
    """The reverse sweep of neurons ``lo:hi`` with the surrogate derivative ``dsg`` (one compiled copy per
    surrogate, ``numba_common.per_surrogate``): σ' is computed in the loop that forms its argument."""
    n_steps = u_seq.shape[0]
    one = sc[5]
    zero = one - one
    cst = surrogate_constants(sc)
    n = hi - lo
    dtype = u_seq.dtype
    om, bb = omega[lo:hi], b0[lo:hi]
    v_hist = np.empty((segment, n), dtype=dtype)          # v[t], q[t] over the segment being swept
    q_hist = np.empty((segment if balanced else 1, n), dtype=dtype)
    v = np.empty(n, dtype=dtype)
    q = np.empty(n, dtype=dtype)
    gu = np.zeros(n, dtype=dtype)
    gv = np.zeros(n, dtype=dtype)
    gq = np.zeros(n, dtype=dtype)
    if has_gv:
        gv[:] = g_vlast[lo:hi]
    if has_gq and balanced:
        gq[:] = g_qlast[lo:hi]
    acc_om = np.zeros(n, dtype=dtype)
    acc_b = np.zeros(n, dtype=dtype)
    gs_ext = np.zeros(n, dtype=dtype)     # gS[t] (zero when absent)
    gu_ext = np.zeros(n, dtype=dtype)     # gU[t]
    sgs = np.empty(n, dtype=dtype)
    for seg in range((n_steps + segment - 1) // segment - 1, -1, -1):
        t0 = seg * segment
        t1 = min(n_steps, t0 + segment)
        v_start = v_kept[seg, lo:hi]                      # v[t0 - 1], q[t0 - 1] (v0, q0 at t0 = 0)
        q_start = q_kept[seg, lo:hi] if balanced else q0[lo:hi]
        u_start = u_seq[t0 - 1, lo:hi] if t0 > 0 else u0[lo:hi]
        # Forward recomputation of the segment's v and q from u, exactly as in _forward.
        v[:] = v_start
        q[:] = q_start
        for t in range(t0, t1):
            u_before = u_seq[t - 1, lo:hi] if t > t0 else u_start
            ut = u_seq[t, lo:hi]
            vt = v_hist[t - t0]
            for j in range(n):
                b = bb[j] - q[j] if balanced else bb[j]
                v[j] = v[j] + dt * (om[j] * u_before[j] + b * v[j])
                vt[j] = v[j]
            if balanced:
                qt = q_hist[t - t0]
                for j in range(n):
                    sj = one if (ut[j] - theta) - q[j] >= zero else zero
                    q[j] = decay_q * q[j] + sj
                    qt[j] = q[j]
        for t in range(t1 - 1, t0 - 1, -1):
            ut = u_seq[t, lo:hi]
            # The previous step's state as rows, so the inner loops carry no branch on t (q is unused by RF):
            # the recomputed segment, its checkpoint, or the initial state at t = 0.
            if t > t0:
                u_prev = u_seq[t - 1, lo:hi]
                v_prev = v_hist[t - t0 - 1]
                q_prev = q_hist[t - t0 - 1] if balanced else q0[lo:hi]
            else:
                u_prev, v_prev, q_prev = u_start, v_start, q_start
            if balanced:
                for j in range(n):
                    sgs[j] = dsg(cst, (ut[j] - theta) - q_prev[j])  # noqa: F821 - bound by per_surrogate
            else:
                for j in range(n):
                    sgs[j] = dsg(cst, ut[j] - theta)  # noqa: F821 - bound by per_surrogate
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


# Reverse sweep by blocks of neurons: _backward(workers, kind, m, block, args)
_backward = per_surrogate_blocks(_sweep_block)


class RFNumbaFunction(torch.autograd.Function):
    """RF / BRF over the whole sequence, as ``RFFunction``: ``(x, omega, b0, u0, v0, q0) -> (spikes [T,*],
    u [T,*], v_last [*], q_last [*])``."""

    @staticmethod
    def forward(ctx, x, omega, b0, u0, v0, q0, dt, theta, balanced, surrogate):  # type: ignore[override]
        dtype = x.dtype
        k = KernelArguments(dtype, x.shape[0])
        step = x[0]
        m = step.numel()
        spikes, u_seq = torch.empty_like(x), torch.empty_like(x)
        v_last, q_last = torch.empty_like(step), torch.empty_like(step)
        keep = any(ctx.needs_input_grad[:6])
        v_kept = torch.empty((segments(x.shape[0], SEGMENT), m) if keep else (1, 1), dtype=dtype)
        q_kept = torch.empty((segments(x.shape[0], SEGMENT), m) if keep and balanced else (1, 1), dtype=dtype)
        workers = workers_for(x.numel(), m)
        _forward(workers, k.rows(x), *(k.step(t, step) for t in (omega, b0, u0, v0, q0)),
                 k.scalar(dt), k.scalar(theta), k.scalar(0.9), bool(balanced), k.scalar(1.0),
                 k.rows(spikes), k.rows(u_seq), k.flat(v_last), k.flat(q_last),
                 keep, v_kept.numpy(), q_kept.numpy(), SEGMENT, block_size(m, workers))
        ctx.dt, ctx.theta, ctx.balanced, ctx.surrogate = dt, theta, balanced, surrogate
        ctx.segment = SEGMENT                                   # the checkpoints' spacing
        ctx.shapes = (omega.shape, b0.shape, u0.shape, v0.shape, q0.shape)
        ctx.save_for_backward(omega, b0, u0, v0, q0, u_seq, v_kept, q_kept)
        # Absent output gradients stay None (the kernel skips them) instead of zero [T, M] tensors to read.
        ctx.set_materialize_grads(False)
        return spikes, u_seq, v_last, (q_last if balanced else q0.clone())

    @staticmethod
    @once_differentiable
    def backward(ctx, g_spikes, g_us, g_v_last, g_q_last):  # type: ignore[override]
        omega, b0, u0, v0, q0, u_seq, v_kept, q_kept = ctx.saved_tensors
        dtype = u_seq.dtype
        k = KernelArguments(dtype, u_seq.shape[0])
        step = u_seq[0]
        m = step.numel()
        kind, sc = surrogate_arguments(ctx.surrogate, dtype)
        g_x = torch.empty_like(u_seq)
        outs = [torch.empty_like(step) for _ in range(5)]          # omega, b0, u0, v0, q0
        workers = workers_for(u_seq.numel(), m)
        _backward(workers, kind, m, block_size(m, workers),
                  (k.rows(u_seq), *(k.step(t, step) for t in (omega, b0, u0, v0, q0)),
                   k.scalar(ctx.dt), k.scalar(ctx.theta), k.scalar(0.9), bool(ctx.balanced), sc,
                   v_kept.numpy(), q_kept.numpy(), ctx.segment,
                   k.rows(g_spikes), g_spikes is not None, k.rows(g_us), g_us is not None,
                   k.step(g_v_last, step), g_v_last is not None, k.step(g_q_last, step), g_q_last is not None,
                   k.rows(g_x), *(k.flat(o) for o in outs)))
        grads = [g_x] + [_sum_to(o, shape) if need else None
                         for o, shape, need in zip(outs, ctx.shapes, ctx.needs_input_grad[1:6])]
        return (*grads, None, None, None, None)
