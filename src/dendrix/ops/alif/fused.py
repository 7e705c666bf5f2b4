"""Fused whole-sequence adaptive LIF (Yin et al. 2021): one autograd node, a hand-written backward loop.

Forward (``reference.py`` has the plain per-step version)::

    a[t] = rho a[t-1] + (1 - rho) S[t-1]
    B[t] = b0 + beta a[t]
    U[t] = alpha U[t-1] + (1 - alpha) X[t] - B[t] S[t-1]
    S[t] = Θ(U[t] - B[t])

Backward (adjoints dU[t] = dL/dU[t], dA[t] = dL/da[t], with σ'[t] = surrogate'(U[t] - B[t]))::

    dS[t] = gS[t] - B[t+1] dU[t+1] + (1 - rho) dA[t+1]
    dU[t] = gU[t] + σ'[t] dS[t] + alpha dU[t+1]
    dA[t] = rho dA[t+1] - beta (S[t-1] dU[t] + σ'[t] dS[t])      (+ g_a_last at t = T-1)
    dX[t] = (1 - alpha) dU[t];   dalpha = Σ dU[t] (U[t-1] - X[t]);   drho = Σ dA[t] (a[t-1] - S[t-1])

Saved for backward: U (an output), a, and X; S and B are recomputed bit-exactly from them. The loops run in
time chunks with cache-resident scratch buffers, like the LIF engine (``dendrix.ops.lif.fused``; chunk helpers
in ``dendrix.ops.common``).
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from ...surrogate import Surrogate
from ..common import chunk_steps, mark_dead_spikes_, reduce_to

__all__ = ["ALIFFunction"]


def _threshold(a: Tensor, beta: float, b0: float, out: Tensor) -> Tensor:
    """B = b0 + beta a, with the same two roundings in forward and backward."""
    return torch.mul(a, beta, out=out).add_(b0)


class ALIFFunction(torch.autograd.Function):
    """``(x [T,*], u0, a0, s0 [*], alpha, rho) -> (spikes [T,*], U [T,*], a[T-1] [*])``.

    ``alpha`` and ``rho`` are tensors broadcastable to one step ``[*]`` (per layer or per channel);
    ``b0``, ``beta`` are floats.
    """

    @staticmethod
    def forward(ctx, x: Tensor, u0: Tensor, a0: Tensor, s0: Tensor, alpha: Tensor, rho: Tensor, b0: float,
                beta: float, surrogate: Surrogate):  # type: ignore[override]
        n_steps = x.shape[0]
        step_shape = u0.shape
        chunk = chunk_steps(u0.numel(), n_steps)
        one_minus_alpha, one_minus_rho = 1.0 - alpha, 1.0 - rho

        u_seq = torch.empty(x.shape, dtype=x.dtype, device=x.device)
        a_seq = torch.empty(x.shape, dtype=x.dtype, device=x.device)
        spikes = torch.empty(x.shape, dtype=x.dtype, device=x.device)
        threshold = torch.empty(step_shape, dtype=x.dtype, device=x.device)
        u_prev, a_prev, s_prev = u0, a0, s0
        for c0 in range(0, n_steps, chunk):
            c1 = min(n_steps, c0 + chunk)
            torch.mul(x[c0:c1], one_minus_alpha, out=u_seq[c0:c1])     # (1 - alpha) X, then integrated in place
            for u_t, a_t, s_t in zip(u_seq[c0:c1].unbind(0), a_seq[c0:c1].unbind(0), spikes[c0:c1].unbind(0)):
                torch.mul(a_prev, rho, out=a_t).addcmul_(one_minus_rho, s_prev)
                _threshold(a_t, beta, b0, threshold)
                u_t.addcmul_(alpha, u_prev).addcmul_(threshold, s_prev, value=-1.0)
                torch.ge(u_t, threshold, out=s_t)
                u_prev, a_prev, s_prev = u_t, a_t, s_t
        # NaN spikes where U is NaN or -Inf (a non-finite threshold makes U non-finite too), after the recurrence,
        # which keeps using the comparison (the backward recomputes S from U the same way).
        if n_steps:
            mark_dead_spikes_(spikes, u_seq, u_seq[-1])
        a_last = a_seq[-1].clone()

        ctx.b0, ctx.beta, ctx.surrogate = float(b0), float(beta), surrogate
        ctx.save_for_backward(x, u_seq, a_seq, u0, a0, s0, alpha, rho)
        ctx.set_materialize_grads(False)
        return spikes, u_seq, a_last

    @staticmethod
    @once_differentiable
    def backward(ctx, g_spikes: Tensor | None, g_u: Tensor | None, g_alast: Tensor | None):  # type: ignore[override]
        x, u_seq, a_seq, u0, a0, s0, alpha, rho = ctx.saved_tensors
        b0, beta = ctx.b0, ctx.beta
        need_x, need_u0, need_a0, need_s0, need_alpha, need_rho = ctx.needs_input_grad[:6]
        n_steps = x.shape[0]
        step_shape = u0.shape
        chunk = chunk_steps(u0.numel(), n_steps)
        one_minus_alpha, one_minus_rho = 1.0 - alpha, 1.0 - rho
        kw = dict(dtype=x.dtype, device=x.device)

        g_x = torch.empty(x.shape, **kw) if need_x else None
        du_buf = torch.empty((chunk, *step_shape), **kw)
        da_buf = torch.empty((chunk, *step_shape), **kw)
        thr_buf = torch.empty((chunk + 1, *step_shape), **kw)   # B for steps c0-1 .. c1-1
        sp_buf = torch.empty((chunk + 1, *step_shape), **kw)    # S for steps c0-1 .. c1-1
        sg_buf = torch.empty((chunk, *step_shape), **kw)
        ds = torch.empty(step_shape, **kw)
        q = torch.empty(step_shape, **kw)
        acc_alpha = torch.zeros(step_shape, **kw) if need_alpha else None
        acc_rho = torch.zeros(step_shape, **kw) if need_rho else None
        zero = torch.zeros(step_shape, **kw)
        du_next, da_next, neg_thr_next = zero, zero, zero

        for c1 in range(n_steps, 0, -chunk):
            c0 = max(0, c1 - chunk)
            n = c1 - c0
            # Recompute B and S for steps c0-1 .. c1-1 (row 0 is the step before the chunk).
            thr, sp = thr_buf[:n + 1], sp_buf[:n + 1]
            _threshold(a_seq[c0:c1], beta, b0, thr[1:])
            torch.ge(u_seq[c0:c1], thr[1:], out=sp[1:])
            if c0 > 0:
                _threshold(a_seq[c0 - 1], beta, b0, thr[0])
                torch.ge(u_seq[c0 - 1], thr[0], out=sp[0])
            else:
                sp[0].copy_(s0)
            sg = ctx.surrogate.derivative_(torch.sub(u_seq[c0:c1], thr[1:], out=sg_buf[:n]))
            du, da = du_buf[:n], da_buf[:n]

            for i in range(n - 1, -1, -1):
                t = c0 + i
                # dS[t] = gS[t] - B[t+1] dU[t+1] + (1 - rho) dA[t+1]
                if g_spikes is not None:
                    torch.addcmul(g_spikes[t], neg_thr_next, du_next, out=ds)
                else:
                    torch.mul(neg_thr_next, du_next, out=ds)
                ds.addcmul_(one_minus_rho, da_next)
                torch.mul(sg[i], ds, out=q)
                # dU[t] = gU[t] + σ' dS + alpha dU[t+1]
                du_t = torch.addcmul(q, alpha, du_next, out=du[i])
                if g_u is not None:
                    du_t.add_(g_u[t])
                # dA[t] = rho dA[t+1] - beta (S[t-1] dU[t] + σ' dS)
                da_t = torch.addcmul(q, sp[i], du_t, out=da[i]).mul_(-beta).addcmul_(rho, da_next)
                if t == n_steps - 1 and g_alast is not None:
                    da_t.add_(g_alast)
                du_next, da_next = du_t, da_t
                neg_thr_next = thr[i + 1].neg()

            if acc_alpha is not None:   # dU[t]/dalpha = U[t-1] - X[t]
                u_prev = u_seq[c0 - 1:c1 - 1] if c0 > 0 else torch.cat([u0.unsqueeze(0), u_seq[:n - 1]])
                acc_alpha.add_((du * (u_prev - x[c0:c1])).sum(0))
            if acc_rho is not None:     # da[t]/drho = a[t-1] - S[t-1]
                a_prev = a_seq[c0 - 1:c1 - 1] if c0 > 0 else torch.cat([a0.unsqueeze(0), a_seq[:n - 1]])
                acc_rho.add_((da * (a_prev - sp[:n])).sum(0))
            if g_x is not None:
                torch.mul(du, one_minus_alpha, out=g_x[c0:c1])
            du_next, da_next = du_next.clone(), da_next.clone()   # the buffers are reused by the next chunk

        # Initial state: U[0] = alpha u0 + ... - B[0] s0;  a[0] = rho a0 + (1 - rho) s0.
        g_u0 = alpha * du_next if need_u0 else None
        g_a0 = rho * da_next if need_a0 else None
        g_s0 = (neg_thr_next * du_next + one_minus_rho * da_next) if need_s0 else None
        if g_u0 is not None:
            g_u0 = g_u0.expand(step_shape).clone()
        if g_a0 is not None:
            g_a0 = g_a0.expand(step_shape).clone()
        if g_s0 is not None:
            g_s0 = g_s0.expand(step_shape).clone()
        g_alpha = reduce_to(acc_alpha, alpha.shape) if need_alpha else None
        g_rho = reduce_to(acc_rho, rho.shape) if need_rho else None
        return g_x, g_u0, g_a0, g_s0, g_alpha, g_rho, None, None, None
