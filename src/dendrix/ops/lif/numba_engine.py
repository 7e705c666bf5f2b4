"""Numba CPU engine of the leaky integrate-and-fire recurrence (LIF, PLIF, DA-LIF): the time loop compiled.

Same recurrence and outputs as ``fused.py`` (``H = leak·V + gain·X + bias``, hard or soft reset); the forward
is written in the fused engine's negated form (``-H = fma(leak, -V, -(gain X) - bias)``, see its docstring)
with the same roundings, so spikes and ``H`` equal the fused engine's bit for bit. Blocks of neurons run in
parallel (``dendrix.ops.numba_common``).

Saved for backward: ``H`` (an output, no extra memory), ``X`` only when ``gain`` needs a gradient, ``v0`` only
when ``leak`` does;
spikes and post-reset potentials are recomputed from ``H``. The backward is one reverse sweep per block: the
adjoint ``gH[t] = gS σ'(H-θ) + gH_ext + dV/dH · leak · gH[t+1]`` and the per-neuron parameter sums in the same
pass, reduced to the parameters' shapes afterwards.
"""

from __future__ import annotations

import numpy as np
import torch
from numba import prange
from torch import Tensor
from torch.autograd.function import once_differentiable

from ..common import as_python_scalar, reduce_to
from ..numba_common import (kernel, KernelArguments, block_size, fma, non_finite, per_surrogate_blocks,
                            surrogate_arguments, surrogate_constants, workers_for, unsupported_reason as _unsupported)

__all__ = ["LeakyNumbaFunction", "unsupported_reason"]


def unsupported_reason(x: Tensor, v0: Tensor, surrogate) -> str | None:
    """Why this engine cannot run a call (None when it can)."""
    return _unsupported((x, v0), surrogate)


@kernel
def _forward(x, nv0, leak, ngain, bias, has_bias, neg_theta, theta, neg_reset, hard, one, spikes, h, v_last, block):
    """x, spikes, h: [T, M]; nv0 = -v0, leak, ngain = -gain, bias, v_last: [M]. Writes spikes, H and V[T-1]."""
    n_steps, m = x.shape
    zero = one - one
    inf, nan = non_finite(one)
    for blk in prange((m + block - 1) // block):
        lo = blk * block
        hi = min(m, lo + block)
        nv = nv0[lo:hi].copy()                        # -V of the block
        lk, ng, bs = leak[lo:hi], ngain[lo:hi], bias[lo:hi]
        for t in range(n_steps):
            xt, st, ht = x[t, lo:hi], spikes[t, lo:hi], h[t, lo:hi]
            for j in range(hi - lo):
                g = xt[j] * ng[j]                     # -(gain X)
                if has_bias:
                    g = g - bs[j]
                g = fma(lk[j], nv[j], g)              # -H
                fired = g <= neg_theta                # H >= θ (false for NaN: the reset keeps the NaN)
                if hard:
                    nv[j] = neg_reset if fired else g
                else:
                    nv[j] = fma(theta, one if fired else zero, g)
                st[j] = (one if fired else zero) if g < inf else nan   # NaN where H is NaN or -Inf, as fused.py
                ht[j] = -g
        for j in range(hi - lo):
            v_last[lo + j] = -nv[j]


def _sweep_block(h, x, v0, leak, gain, theta, v_reset, hard, detach, sc, g_spikes, has_gs, g_h, has_gh,
                 g_vlast, has_gv, g_x, need_x, acc_leak, need_leak, acc_gain, need_gain, acc_bias, need_bias,
                 g_v0, lo, hi):
    """The reverse sweep of neurons ``lo:hi`` with the surrogate derivative ``dsg`` (one compiled copy per
    surrogate, :func:`per_surrogate`): one loop per
    step computes σ', dV/dH, the adjoint and the input gradient; the flags are loop-invariant, so LLVM unswitches
    them and each version is a straight vectorised loop. The parameter sums run after it, only when asked."""
    n_steps = h.shape[0]
    one = sc[5]
    zero = one - one
    cst = surrogate_constants(sc)
    n = hi - lo
    carry = np.empty(n, dtype=h.dtype)               # dL/dV[t] of the step being processed
    for j in range(n):
        carry[j] = g_vlast[lo + j] if has_gv else zero
    need_sums = need_leak or need_gain or need_bias
    a_leak = np.zeros(n, dtype=h.dtype)
    a_gain = np.zeros(n, dtype=h.dtype)
    a_bias = np.zeros(n, dtype=h.dtype)
    gHs = np.zeros(n, dtype=h.dtype)
    lk, gn = leak[lo:hi], gain[lo:hi]
    for t in range(n_steps - 1, -1, -1):
        ht, gst, ght, gxt = h[t, lo:hi], g_spikes[t, lo:hi], g_h[t, lo:hi], g_x[t, lo:hi]
        for j in range(n):
            hv = ht[j]
            sg = dsg(cst, hv - theta)
            below = one if hv < theta else zero
            gH = gst[j] * sg if has_gs else zero       # direct terms gS σ' + gH_ext
            if has_gh:
                gH = gH + ght[j]
            if hard:                                   # dV/dH (1 for a soft, detached reset)
                dvdh = below if detach else (v_reset - hv) * sg + below
            else:
                dvdh = one if detach else one - theta * sg
            gH = gH + dvdh * carry[j]                  # the adjoint recurrence
            carry[j] = lk[j] * gH
            if need_x:
                gxt[j] = gH * gn[j]
            if need_sums:
                gHs[j] = gH
        if need_leak:                                  # dH/dleak = V[t-1], recomputed from H[t-1]
            if t > 0:
                hp = h[t - 1, lo:hi]
                if hard:
                    for j in range(n):
                        a_leak[j] += gHs[j] * (v_reset if hp[j] >= theta else hp[j])
                else:
                    for j in range(n):
                        a_leak[j] += gHs[j] * (hp[j] - theta if hp[j] >= theta else hp[j])
            else:
                for j in range(n):
                    a_leak[j] += gHs[j] * v0[lo + j]
        if need_gain:                                  # dH/dgain = X[t]
            xt = x[t, lo:hi]
            for j in range(n):
                a_gain[j] += gHs[j] * xt[j]
        if need_bias:
            for j in range(n):
                a_bias[j] += gHs[j]
    for j in range(n):
        g_v0[lo + j] = carry[j]
        if need_leak:
            acc_leak[lo + j] = a_leak[j]
        if need_gain:
            acc_gain[lo + j] = a_gain[j]
        if need_bias:
            acc_bias[lo + j] = a_bias[j]


# Reverse sweep by blocks of neurons: _backward(workers, kind, m, block, args); an absent g_spikes / g_h / g_x
# is any [T, M] array (H), sliced but never read or written.
_backward = per_surrogate_blocks(_sweep_block)


class LeakyNumbaFunction(torch.autograd.Function):
    """``(x [T,*], v0 [*], leak, gain, bias) -> (spikes [T,*], H [T,*], V[T-1] [*])``, as ``LeakyFunction``."""

    @staticmethod
    def forward(ctx, x: Tensor, v0: Tensor, leak, gain, bias, v_threshold: float, v_reset: float | None,
                detach_reset: bool, surrogate):  # type: ignore[override]
        dtype = x.dtype
        leak_v, gain_v, bias_v = (as_python_scalar(p) for p in (leak, gain, bias))
        has_bias = isinstance(bias_v, Tensor) or bias_v != 0.0
        theta = float(v_threshold)
        neg_gain = -gain_v if isinstance(gain_v, float) else gain_v.neg()
        k = KernelArguments(dtype, x.shape[0])
        spikes = torch.empty(x.shape, dtype=dtype)
        h = torch.empty(x.shape, dtype=dtype)
        v_last = torch.empty(v0.shape, dtype=dtype)
        workers = workers_for(x.numel(), v0.numel())
        _forward(workers, k.rows(x), k.flat(torch.neg(v0)), k.step(leak_v, v0), k.step(neg_gain, v0),
                 k.step(bias_v if has_bias else 0.0, v0), has_bias, k.scalar(-theta), k.scalar(theta),
                 k.scalar(0.0 if v_reset is None else -float(v_reset)), v_reset is not None, k.scalar(1.0),
                 k.rows(spikes), k.rows(h), k.flat(v_last), block_size(v0.numel(), workers))
        ctx.theta, ctx.v_reset, ctx.detach_reset, ctx.surrogate = theta, v_reset, detach_reset, surrogate
        ctx.shapes = tuple(p.shape if isinstance(p, Tensor) else None for p in (leak, gain, bias))
        ctx.coefs = (leak_v, gain_v)
        need_leak = isinstance(leak, Tensor) and leak.requires_grad
        need_gain = isinstance(gain, Tensor) and gain.requires_grad
        ctx.save_for_backward(h, v0 if need_leak else None, x if need_gain else None)
        ctx.step_shape = v0.shape
        ctx.set_materialize_grads(False)
        return spikes, h, v_last

    @staticmethod
    @once_differentiable
    def backward(ctx, g_spikes, g_h, g_vlast):  # type: ignore[override]
        h, v0_saved, x = ctx.saved_tensors
        dtype = h.dtype
        v0 = torch.zeros(ctx.step_shape, dtype=dtype) if v0_saved is None else v0_saved   # read only for dleak
        need_x, need_v0, need_leak, need_gain, need_bias = ctx.needs_input_grad[:5]
        leak_v, gain_v = ctx.coefs
        m = v0.numel()
        k = KernelArguments(dtype, h.shape[0])
        kind, sc = surrogate_arguments(ctx.surrogate, dtype)
        g_x = torch.empty(h.shape, dtype=dtype) if need_x else None
        # Every neuron's sum is written by the kernel: empty, not zero-filled.
        accs = [torch.empty(v0.shape, dtype=dtype) if need else None for need in (need_leak, need_gain, need_bias)]
        g_v0 = torch.empty(v0.shape, dtype=dtype)
        workers = workers_for(h.numel(), m)
        rows_h = k.rows(h)
        present = lambda t: rows_h if t is None else k.rows(t)  # noqa: E731 - an absent gradient: H (never read)
        _backward(workers, kind, m, block_size(m, workers),
                  (rows_h, k.rows(x), k.flat(v0), k.step(leak_v, v0), k.step(gain_v, v0),
                   k.scalar(ctx.theta), k.scalar(0.0 if ctx.v_reset is None else ctx.v_reset),
                   ctx.v_reset is not None, bool(ctx.detach_reset), sc,
                   present(g_spikes), g_spikes is not None, present(g_h), g_h is not None,
                   k.flat(None if g_vlast is None else g_vlast.expand(v0.shape)), g_vlast is not None,
                   present(g_x), need_x, k.flat(accs[0]), need_leak, k.flat(accs[1]), need_gain,
                   k.flat(accs[2]), need_bias, k.flat(g_v0)))
        leak_shape, gain_shape, bias_shape = ctx.shapes
        g_leak = reduce_to(accs[0], leak_shape) if need_leak else None
        g_gain = reduce_to(accs[1], gain_shape) if need_gain else None
        g_bias = reduce_to(accs[2], bias_shape) if need_bias else None
        return g_x, g_v0 if need_v0 else None, g_leak, g_gain, g_bias, None, None, None, None
