"""Fused whole-sequence leaky integrate-and-fire: one autograd node, a hand-written backward loop.

Recurrence (``reference.py`` has the plain per-step version)::

    H[t] = leak * V[t-1] + gain * X[t] + bias
    S[t] = Θ(H[t] - θ)
    V[t] = H[t] (1 - S[t]) + v_reset S[t]   (hard)   or   H[t] - θ S[t]   (soft, v_reset=None)

The returned spikes are NaN where ``H`` is NaN or -Inf (``dendrix.ops.common.mark_dead_spikes_``: tested on the
final ``V``, so the finite path costs one small sum per call); the loop itself uses the comparison.

Design, from profiling on CPU (details in ``docs/neurons.md``):

* Work is done in **time chunks** of a few steps (about 32k elements, ``dendrix.ops.common.chunk_steps``), so
  every bulk operator works on data that is still in cache, and no temporary ``[T, B, N]`` tensor is ever
  allocated: the only full-size allocations are the outputs (spikes and ``H`` in forward, the input gradient in
  backward). Fresh multi-megabyte buffers cost page faults that, measured, are slower than the whole recurrence.
* Forward per step: **two** in-place operators for hard reset (three for soft), nothing else. The loop keeps
  the *negated* membrane ``-H``: the hard reset "keep H if H < θ, else v_reset" is then exactly
  ``torch.threshold(-H, -θ, -v_reset)`` (one operator instead of compare + select). Negation is exact in IEEE
  arithmetic, so spikes and potentials equal the un-negated computation bit for bit.
* Saved for backward: ``H`` only (an output, so no extra memory); ``X`` only when ``gain`` needs a gradient,
  ``V[-1]`` (one step) when ``leak`` does. Spikes and post-reset potentials are recomputed from ``H``.
* Backward: with gH[t] = dL/dH[t], the adjoint is the *linear* recurrence
  ``gH[t] = gS[t] σ'(H[t]-θ) + gHext[t] + leak dV/dH[t] gH[t+1]``; its coefficients are computed per chunk with
  in-place operators, leaving **one** fused multiply-add per step. Parameter gradients are per-chunk sums.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from ...surrogate import Surrogate
from ..common import as_python_scalar, axpy_, chunk_steps, mark_dead_spikes_, reduce_to

__all__ = ["LeakyFunction"]

Scalar = float | Tensor


class LeakyFunction(torch.autograd.Function):
    """``(x [T,*], v0 [*], leak, gain, bias) -> (spikes [T,*], H [T,*], V[T-1] [*])``; see the module docstring.

    ``leak``, ``gain``, ``bias`` are floats or tensors broadcastable to ``[*]`` (of ``x``'s dtype); gradients
    flow to ``x``, ``v0`` and every tensor among them.
    """

    @staticmethod
    def forward(ctx, x: Tensor, v0: Tensor, leak: Scalar, gain: Scalar, bias: Scalar, v_threshold: float,
                v_reset: float | None, detach_reset: bool, surrogate: Surrogate):  # type: ignore[override]
        leak_v, gain_v, bias_v = (as_python_scalar(p) for p in (leak, gain, bias))
        theta = float(v_threshold)
        n_steps = x.shape[0]
        chunk = chunk_steps(v0.numel(), n_steps)
        neg_gain = -gain_v if isinstance(gain_v, float) else gain_v.neg()
        has_bias = isinstance(bias_v, Tensor) or bias_v != 0.0

        h = torch.empty(x.shape, dtype=x.dtype, device=x.device)   # holds -H until its chunk is finished
        spikes = torch.empty(x.shape, dtype=x.dtype, device=x.device)
        neg_v = torch.neg(v0).contiguous()
        fired = torch.empty(v0.shape, dtype=torch.bool, device=x.device) if v_reset is None else None
        neg_th = -theta
        neg_reset = None if v_reset is None else -float(v_reset)
        scalar_leak = isinstance(leak_v, float)

        for c0 in range(0, n_steps, chunk):
            hc = h[c0:c0 + chunk]
            torch.mul(x[c0:c0 + chunk], neg_gain, out=hc)       # -(gain X)
            if has_bias:
                hc.sub_(bias_v)
            for g in hc.unbind(0):
                if scalar_leak:
                    torch.add(g, neg_v, alpha=leak_v, out=g)     # -H = -(gain X + bias) + leak (-V)
                else:
                    torch.addcmul(g, leak_v, neg_v, out=g)
                if neg_reset is not None:
                    torch.threshold(g, neg_th, neg_reset, out=neg_v)  # -V = -H if H < θ else -v_reset
                else:
                    torch.le(g, neg_th, out=fired)
                    torch.add(g, fired, alpha=theta, out=neg_v)        # -V = -H + θ S
            torch.le(hc, neg_th, out=spikes[c0:c0 + chunk])
            hc.neg_()
        v_last = neg_v.neg_()
        mark_dead_spikes_(spikes, h, v_last)   # NaN where H is NaN or -Inf (V then stays non-finite to the end)

        ctx.theta, ctx.v_reset, ctx.detach_reset, ctx.surrogate = theta, v_reset, detach_reset, surrogate
        # Parameter shapes for the reductions; Python-float coefficients travel on ctx, tensors are saved.
        ctx.shapes = tuple(p.shape if isinstance(p, Tensor) else None for p in (leak, gain, bias))
        ctx.floats = tuple(p if isinstance(p, float) else None for p in (leak_v, gain_v))
        need_leak = isinstance(leak, Tensor) and leak.requires_grad
        need_gain = isinstance(gain, Tensor) and gain.requires_grad
        ctx.save_for_backward(h, v0 if need_leak else None, x if need_gain else None,
                              None if isinstance(leak_v, float) else leak_v,
                              None if isinstance(gain_v, float) else gain_v)
        ctx.set_materialize_grads(False)
        return spikes, h, v_last

    @staticmethod
    @once_differentiable
    def backward(ctx, g_spikes: Tensor | None, g_h: Tensor | None, g_vlast: Tensor | None):  # type: ignore[override]
        h, v0, x, leak_t, gain_t = ctx.saved_tensors
        theta, v_reset, detach = ctx.theta, ctx.v_reset, ctx.detach_reset
        leak_v = ctx.floats[0] if leak_t is None else leak_t
        gain_v = ctx.floats[1] if gain_t is None else gain_t
        need_x, need_v0, need_leak, need_gain, need_bias = ctx.needs_input_grad[:5]
        n_steps = h.shape[0]
        step_shape = h.shape[1:]
        chunk = chunk_steps(h[0].numel(), n_steps)
        unit_gain = isinstance(gain_v, float) and gain_v == 1.0

        g_x = torch.empty_like(h) if need_x else None
        work = torch.empty((chunk, *step_shape), dtype=h.dtype, device=h.device) if g_x is None else None
        sg_buf = torch.empty((chunk, *step_shape), dtype=h.dtype, device=h.device)
        coef_buf = torch.empty_like(sg_buf) if v_reset is not None else None
        mask_buf = torch.empty(sg_buf.shape, dtype=torch.bool, device=h.device) if v_reset is not None else None
        acc_leak = torch.zeros(step_shape, dtype=h.dtype, device=h.device) if need_leak else None
        acc_gain = torch.zeros(step_shape, dtype=h.dtype, device=h.device) if need_gain else None
        acc_bias = torch.zeros(step_shape, dtype=h.dtype, device=h.device) if need_bias else None
        carry = None  # dL/dH at the first step of the chunk after this one

        for c1 in range(n_steps, 0, -chunk):
            c0 = max(0, c1 - chunk)
            n = c1 - c0
            hc = h[c0:c1]
            grad = g_x[c0:c1] if g_x is not None else work[:n]

            # σ'(H - θ) for the chunk.
            sg = ctx.surrogate.derivative_(torch.sub(hc, theta, out=sg_buf[:n]))
            # Direct terms gS σ' + gH_ext.
            if g_spikes is not None:
                torch.mul(g_spikes[c0:c1], sg, out=grad)
            else:
                grad.zero_()
            if g_h is not None:
                grad.add_(g_h[c0:c1])
            # dV/dH (None: identically 1).
            if v_reset is not None:
                not_fired = torch.lt(hc, theta, out=mask_buf[:n])
                if detach:
                    dv_dh = coef_buf[:n].copy_(not_fired)                           # 1 - S
                else:
                    dv_dh = torch.mul(hc, -1.0, out=coef_buf[:n]).add_(v_reset).mul_(sg).add_(not_fired)
            else:
                dv_dh = None if detach else sg.mul_(-theta).add_(1.0)               # 1 - θ σ'
            # Incoming adjoint at the chunk's last step: dL/dV[c1-1].
            if c1 == n_steps:
                if g_vlast is not None:
                    if dv_dh is None:
                        grad[-1].add_(g_vlast)
                    else:
                        grad[-1].addcmul_(dv_dh[-1], g_vlast)
                if dv_dh is not None:
                    dv_dh.mul_(leak_v)
            else:
                if dv_dh is not None:
                    dv_dh.mul_(leak_v)
                    grad[-1].addcmul_(dv_dh[-1], carry)
                else:
                    axpy_(grad[-1], leak_v, carry)
            # Adjoint recurrence gH[t] += leak dV/dH[t] gH[t+1]: one operator per step.
            rows = grad.unbind(0)
            if dv_dh is None:
                if isinstance(leak_v, float):
                    for t in range(n - 2, -1, -1):
                        torch.add(rows[t], rows[t + 1], alpha=leak_v, out=rows[t])
                else:
                    for t in range(n - 2, -1, -1):
                        torch.addcmul(rows[t], leak_v, rows[t + 1], out=rows[t])
            else:
                coef = dv_dh.unbind(0)
                for t in range(n - 2, -1, -1):
                    torch.addcmul(rows[t], coef[t], rows[t + 1], out=rows[t])
            carry = rows[0].clone()

            # Parameter gradients: dH/dleak = V[t-1], dH/dgain = X[t], dH/dbias = 1.
            if acc_leak is not None:
                if c0 > 0:
                    hp = h[c0 - 1:c1 - 1]
                    v_prev = torch.where(hp >= theta, v_reset, hp) if v_reset is not None \
                        else torch.add(hp, hp >= theta, alpha=-theta)
                    acc_leak.add_((grad * v_prev).sum(0))
                else:
                    acc_leak.addcmul_(grad[0], v0)
                    if n > 1:
                        hp = h[0:n - 1]
                        v_prev = torch.where(hp >= theta, v_reset, hp) if v_reset is not None \
                            else torch.add(hp, hp >= theta, alpha=-theta)
                        acc_leak.add_((grad[1:] * v_prev).sum(0))
            if acc_gain is not None:
                acc_gain.add_((grad * x[c0:c1]).sum(0))
            if acc_bias is not None:
                acc_bias.add_(grad.sum(0))
            if g_x is not None and not unit_gain:
                grad.mul_(gain_v)

        g_v0 = carry * leak_v if need_v0 else None
        leak_shape, gain_shape, bias_shape = ctx.shapes
        g_leak = reduce_to(acc_leak, leak_shape) if need_leak else None
        g_gain = reduce_to(acc_gain, gain_shape) if need_gain else None
        g_bias = reduce_to(acc_bias, bias_shape) if need_bias else None
        return g_x, g_v0, g_leak, g_gain, g_bias, None, None, None, None
