"""Numba CPU engine of the *recurrent* gated DGN membrane: the whole time loop in one compiled call forward and
one backward (imported only when numba is installed).

The fused engine (``fused.py``) spends most of a recurrent step on Python and dispatcher overhead: one small
``[B, out] x [out, 2·out]`` matmul and five to seven elementwise operators per step. Here each step is one pass
of compiled loops over the ``B·out`` neurons, with the per-step product written as blocked AXPY loops
(:func:`_accumulate`): serial, no BLAS call (scipy's OpenBLAS, which numba's ``np.dot`` calls, starts its own
threads at this size and fights torch's for the cores; measured 4 ms a step instead of 0.03 ms on the shared
2-core CPU).

Forward (quantities of one step ``[B, out]``; ``pre[t] = [a[t], dt·I[t]]`` side by side, ``[B, 2·out]``, with
``a = 1 − dt·G_ff`` on entry, and ``scaled = [−dt·C_rec; dt·W_rec]`` ``[2·out, out]``, as in ``fused.py``):

    Dr[t]   = S[t-1] + λ·Dr[t-1]                        (one rounding: fma)
    pre[t] += Dr[t] · scaledᵀ                           (recurrent conductance and current, in place)
    ρ[t]    = φ(a[t])                                    (clamp to [0, 1], or the logistic sigmoid)
    V[t]    = ρ[t]·V[t-1] + dt·I[t]  − θ·S[t-1]           (two fmas, in the fused engine's order)
    S[t]    = [V[t] ≥ θ]

Saved for the backward: ``pre`` (gate argument and drive after the recurrent part), ``V``, ``v0``, ``Dr`` and
``scaled``, the same tensors as the fused engine; ρ, φ'(a) and the surrogate slope are recomputed per step.

Backward (the adjoint of the above, run from t = T down to 1; g_X = dL/dX, everything at T+1 is zero):

* the spike's gradient collects the loss, what the next step's soft reset took from it (−θ·g_V[t+1], dropped
  with ``detach_reset``) and what the next recurrent trace took from it (g_Dr[t+1]);
* the membrane's gradient is the loss's dL/dV[t], plus the leak's share ρ[t+1]·g_V[t+1], plus the spike's
  gradient through the surrogate slope σ'(V[t] − θ);
* the drive receives g_V[t] itself (so dL/dI = dt·g_V), the gate argument g_V[t]·V[t-1]·φ'(a[t]) (so
  dL/dG = −dt·φ'(a)·V[t-1]·g_V);
* the recurrent trace's gradient is λ times the next one's plus the product of ``g_pre[t]`` with ``scaled``
  (C_recᵀ of the conductance part and W_recᵀ of the current part); the weight gradients are
  −dt and dt times Σ_t g_pre[t]ᵀ Dr[t] (its two halves), one product over all steps done by torch after the
  kernel.

Rounding: the elementwise operations follow ``fused.py`` operation for operation (``numba_common.fma`` where
ATen's ``add(alpha=)`` and ``addcmul`` round once), but the per-step product sums ``pre + Σ_k Dr_k·scaled_k``
in ascending k, where MKL's ``addmm`` has its own order and fused multiply-adds; the sigmoid and the
surrogate slopes use ``numba_common``'s functions rather than ATen's. Results therefore agree with the fused
engine to rounding (float64: ~1e-15 relative in the tests), not bit for bit, and in float32 a spike can flip
where V lands within an ulp or so of θ (none did in the tests or at the benchmark shape). Blocks of the product
whose factors are all zero are skipped (silent neurons' traces, zero gradients), so a non-finite recurrent
weight times a zero trace gives 0 here where BLAS gives NaN.
"""

from __future__ import annotations

import numpy as np
import torch
from numba import njit
from torch import Tensor
from torch.autograd.function import once_differentiable

from ..common import mark_dead_spikes_
from ..numba_common import (as_array, exp_like, fma, per_surrogate, surrogate_arguments, surrogate_constants,
                            unsupported_reason as _unsupported)
from ..threads import serial_on_cpu

__all__ = ["DGNMembraneNumbaFunction", "unsupported_reason"]


def unsupported_reason(tensors, surrogate=None) -> str | None:
    """Why this engine cannot run a call (None when it can): CPU tensors of one dtype (float32 or float64) and,
    for the membrane, a surrogate with a numba form (``surrogate`` None: the synaptic trace, which
    ``backend="numba"`` runs with the fused filter). ``tensors``: an iterable or a name -> tensor mapping (None
    entries skipped)."""
    if isinstance(tensors, dict):
        tensors = tensors.values()
    tensors = [t for t in tensors if isinstance(t, Tensor)]
    if surrogate is not None:
        return _unsupported(tensors, surrogate)
    if any(t.device.type != "cpu" for t in tensors):
        return "the numba engine runs on CPU tensors only"
    dtypes = {t.dtype for t in tensors}
    if len(dtypes) != 1 or next(iter(dtypes)) not in (torch.float32, torch.float64):
        return f"the numba engine needs float32 or float64 tensors of one dtype, got {sorted(map(str, dtypes))}"
    return None


@njit(cache=True, error_model="numpy")
def _accumulate(x, w, out):
    """``out[b, :] += Σ_k x[b, k]·w[k, :]`` (``x`` [R, K], ``w`` [K, M], ``out`` [R, M], C-contiguous), summed
    in ascending k from the value already in ``out``. A block of four rows and four k is one pass over the
    columns (each ``out`` element loaded and stored once per four k, each ``w`` row loaded once per four rows;
    the column loop vectorises): as fast as MKL's addmm at [32, 128] x [128, 256] on one thread, where one k per
    pass was 1.5-2.5x slower. A block whose sixteen factors are all zero is skipped (a silent neuron's trace)."""
    n_rows, n_k = x.shape
    m = out.shape[1]
    k4 = n_k - n_k % 4
    b = 0
    while b + 4 <= n_rows:
        r0, r1, r2, r3 = out[b], out[b + 1], out[b + 2], out[b + 3]
        x0, x1, x2, x3 = x[b], x[b + 1], x[b + 2], x[b + 3]
        for k in range(0, k4, 4):
            a0, a1, a2, a3 = x0[k], x0[k + 1], x0[k + 2], x0[k + 3]
            b0, b1, b2, b3 = x1[k], x1[k + 1], x1[k + 2], x1[k + 3]
            c0, c1, c2, c3 = x2[k], x2[k + 1], x2[k + 2], x2[k + 3]
            e0, e1, e2, e3 = x3[k], x3[k + 1], x3[k + 2], x3[k + 3]
            # a sum of magnitudes is 0 only if every term is (NaN and Inf are never skipped)
            if (abs(a0) + abs(a1) + abs(a2) + abs(a3) + abs(b0) + abs(b1) + abs(b2) + abs(b3) + abs(c0) + abs(c1)
                    + abs(c2) + abs(c3) + abs(e0) + abs(e1) + abs(e2) + abs(e3)) == 0:
                continue
            w0, w1, w2, w3 = w[k], w[k + 1], w[k + 2], w[k + 3]
            for j in range(m):
                p0, p1, p2, p3 = w0[j], w1[j], w2[j], w3[j]
                r0[j] = r0[j] + a0 * p0 + a1 * p1 + a2 * p2 + a3 * p3
                r1[j] = r1[j] + b0 * p0 + b1 * p1 + b2 * p2 + b3 * p3
                r2[j] = r2[j] + c0 * p0 + c1 * p1 + c2 * p2 + c3 * p3
                r3[j] = r3[j] + e0 * p0 + e1 * p1 + e2 * p2 + e3 * p3
        for k in range(k4, n_k):
            a0, b0, c0, e0 = x0[k], x1[k], x2[k], x3[k]
            wk = w[k]
            for j in range(m):
                p0 = wk[j]
                r0[j] = r0[j] + a0 * p0
                r1[j] = r1[j] + b0 * p0
                r2[j] = r2[j] + c0 * p0
                r3[j] = r3[j] + e0 * p0
        b += 4
    while b < n_rows:
        r0, x0 = out[b], x[b]
        for k in range(n_k):
            a0 = x0[k]
            if a0 == 0:
                continue
            wk = w[k]
            for j in range(m):
                r0[j] = r0[j] + a0 * wk[j]
        b += 1


@njit(cache=True, inline="always", error_model="numpy")
def _gate(a, sigmoid, one):
    """ρ = φ(a): the logistic sigmoid, or clamp to [0, 1] (a NaN stays NaN, as torch.clamp)."""
    if sigmoid:
        return one / (one + exp_like(-a))
    zero = one - one
    return zero if a < zero else (one if a > one else a)


@njit(cache=True, error_model="numpy")
def _forward(pre, scaled_t, v0, s0, dr0, lam, theta, sigmoid, one, v_seq, s_seq, dr_seq):
    """pre [T, B, 2n] (in: [a, dt·I]; out: with the recurrent part added), scaled_t [n, 2n], v0, s0, dr0 [B, n];
    writes V, S (0/1) and Dr [T, B, n]."""
    n_steps, n_b, n = v_seq.shape
    zero = one - one
    neg_theta = -theta
    for t in range(n_steps):
        s_prev = s0 if t == 0 else s_seq[t - 1]
        v_prev = v0 if t == 0 else v_seq[t - 1]
        dr_prev = dr0 if t == 0 else dr_seq[t - 1]
        drt = dr_seq[t]
        for b in range(n_b):
            for j in range(n):
                drt[b, j] = fma(lam, dr_prev[b, j], s_prev[b, j])
        pt = pre[t]
        _accumulate(drt, scaled_t, pt)
        vt, st = v_seq[t], s_seq[t]
        for b in range(n_b):
            prow, vp, sp, vr, sr = pt[b], v_prev[b], s_prev[b], vt[b], st[b]
            for j in range(n):
                rho = _gate(prow[j], sigmoid, one)
                v = fma(rho, vp[j], prow[n + j])
                v = fma(neg_theta, sp[j], v)
                vr[j] = v
                sr[j] = one if v >= theta else zero


def _backward(pre, v_seq, v0, scaled, g_s, has_gs, g_v, has_gv, g_rl, has_grl, lam, theta, reset_coef, sigmoid,
              sc, one, g_pre, g_dr, carry, g_next, rho_next):
    """The reverse sweep with the surrogate derivative ``dsg`` (one compiled copy per surrogate,
    ``per_surrogate``). Writes g_pre [T, B, 2n] (= [g_V·V[t-1]·φ'(a), g_V]) and leaves, of the first step, the
    trace's gradient in g_dr, the initial spike's (dL/ds0) in carry, g_V in g_next and ρ in rho_next (all
    [B, n], zero-filled on entry).
    Absent g_s / g_v / g_rl are placeholders of the right rank that are never read."""
    n_steps, n_b, n = v_seq.shape
    zero = one - one
    cst = surrogate_constants(sc)      # registers, not loads from memory the outputs might alias
    rc = np.empty(n, v_seq.dtype)      # ρ[t] of one row
    sl = np.empty(n, v_seq.dtype)      # σ'(V[t] − θ) of one row
    for t in range(n_steps - 1, -1, -1):
        v_prev = v0 if t == 0 else v_seq[t - 1]
        has_next = t + 1 < n_steps
        gp = g_pre[t]
        for b in range(n_b):
            prow, vrow, vp, gprow = pre[t, b], v_seq[t, b], v_prev[b], gp[b]
            cr, gn, rn = carry[b], g_next[b], rho_next[b]
            gsr = g_s[t, b] if has_gs else cr
            gvr = g_v[t, b] if has_gv else cr
            # the transcendental parts in loops of their own (two arrays each: LLVM vectorises them; in the
            # main loop, with ten arrays, its alias checks give up and each exp and division ran scalar)
            for j in range(n):
                rc[j] = _gate(prow[j], sigmoid, one)
            for j in range(n):
                sl[j] = dsg(cst, vrow[j] - theta)
            for j in range(n):
                rho = rc[j]
                if has_gs:
                    g = (gsr[j] + cr[j]) * sl[j]
                else:
                    g = cr[j] * sl[j]
                if has_gv:
                    g = g + gvr[j]
                if has_next:
                    g = fma(rn[j], gn[j], g)
                if sigmoid:                            # φ' = ρ(1 − ρ): V[t-1]·ρ − (V[t-1]·ρ)·ρ
                    c = vp[j] * rho
                    coef = fma(-c, rho, c)
                else:                                  # φ' = 1 where clamp(a) == a
                    coef = vp[j] * (one if rho == prow[j] else zero)
                gprow[j] = g * coef
                gprow[n + j] = g
                gn[j] = g
                rn[j] = rho
        # g_Dr[t] = λ·g_Dr[t+1] + g_pre[t]·scaled (+ dL/dDr[T] at the last step)
        for b in range(n_b):
            row = g_dr[b]
            for j in range(n):
                row[j] = row[j] * lam if lam != zero else zero
        _accumulate(gp, scaled, g_dr)
        if t == n_steps - 1 and has_grl:
            for b in range(n_b):
                for j in range(n):
                    g_dr[b, j] += g_rl[b, j]
        for b in range(n_b):
            for j in range(n):
                carry[b, j] = fma(reset_coef, g_next[b, j], g_dr[b, j]) if reset_coef != zero else g_dr[b, j]


_BACKWARD = per_surrogate(_backward)    # _BACKWARD(numba_kind, arguments)


def _step(t: Tensor, shape) -> Tensor:
    """A state (possibly broadcast, e.g. [out]) as a contiguous [B, n] tensor, detached."""
    return t.detach().expand(shape).contiguous()


class DGNMembraneNumbaFunction(torch.autograd.Function):
    """The recurrent gated membrane in one autograd node: the arguments and returns of
    ``fused.DGNMembraneFunction`` (``rec_weight`` and ``rec_conductance`` required), ``(S, V, Dr[T])``."""

    @staticmethod
    def forward(ctx, conductance: Tensor, current: Tensor, v0: Tensor, s0: Tensor, rec_weight: Tensor,
                rec_conductance: Tensor, rec_trace0: Tensor, dt: float, threshold: float, gate: str, surrogate,
                detach_reset: bool, rec_decay: float):  # type: ignore[override]
        ctx.set_materialize_grads(False)
        dtype = conductance.dtype
        cast = np.float32 if dtype == torch.float32 else np.float64
        step = conductance.shape[1:]
        n_out = conductance.shape[-1]
        with torch.no_grad(), serial_on_cpu(conductance.device, 0):
            pre = torch.empty(conductance.shape[0], step[0], 2 * n_out, dtype=dtype)
            torch.mul(conductance, -dt, out=pre[..., :n_out]).add_(1.0)
            torch.mul(current, dt, out=pre[..., n_out:])
            scaled = torch.cat([rec_conductance * -dt, rec_weight * dt], 0)  # [2·out, out]
            scaled_t = scaled.t().contiguous()
        v0e, s0e, dr0 = _step(v0, step), _step(s0, step), _step(rec_trace0, step)
        v_seq = torch.empty(conductance.shape, dtype=dtype)
        s_seq = torch.empty(conductance.shape, dtype=dtype)
        dr_seq = torch.empty(conductance.shape, dtype=dtype)
        _forward(pre.numpy(), scaled_t.numpy(), v0e.numpy(), s0e.numpy(), dr0.numpy(), cast(rec_decay),
                 cast(threshold), gate == "sigmoid", cast(1.0), v_seq.numpy(), s_seq.numpy(), dr_seq.numpy())
        ctx.save_for_backward(pre, v_seq, v0e, dr_seq, scaled)
        ctx.dt, ctx.threshold, ctx.gate = dt, threshold, gate
        ctx.surrogate, ctx.detach_reset, ctx.rec_decay = surrogate, detach_reset, rec_decay
        mark_dead_spikes_(s_seq, v_seq, v_seq[-1])   # NaN spikes where V is NaN or -Inf, as fused.py
        return s_seq, v_seq, dr_seq[-1].clone()

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_s: Tensor | None, grad_v: Tensor | None, grad_rec_last: Tensor | None):  # type: ignore[override]
        pre, v_seq, v0, dr_seq, scaled = ctx.saved_tensors
        dtype = v_seq.dtype
        cast = np.float32 if dtype == torch.float32 else np.float64
        dt, lam = ctx.dt, ctx.rec_decay
        n_out = v_seq.shape[-1]
        kind, sc = surrogate_arguments(ctx.surrogate, dtype)
        g_pre = torch.empty_like(pre)
        bufs = [torch.zeros_like(v0) for _ in range(4)]     # g_dr, carry, g_next, rho_next
        g_dr, carry, g_next, rho_next = bufs
        gs = as_array(grad_s) if grad_s is not None else v_seq.numpy()
        gv = as_array(grad_v) if grad_v is not None else v_seq.numpy()
        grl = as_array(grad_rec_last.expand(v0.shape)) if grad_rec_last is not None else v0.numpy()
        _BACKWARD(kind, (pre.numpy(), v_seq.numpy(), v0.numpy(), scaled.numpy(), gs, grad_s is not None,
                         gv, grad_v is not None, grl, grad_rec_last is not None, cast(lam), cast(ctx.threshold),
                         cast(0.0 if ctx.detach_reset else -ctx.threshold), ctx.gate == "sigmoid", sc, cast(1.0),
                         g_pre.numpy(), g_dr.numpy(), carry.numpy(), g_next.numpy(), rho_next.numpy()))
        needs = ctx.needs_input_grad
        grad_rec_w = grad_rec_c = None
        if needs[4] or needs[5]:  # one product over all steps ([2n, T·B] x [T·B, n]): on all intra-op threads
            grad_scaled = g_pre.reshape(-1, 2 * n_out).t() @ dr_seq.reshape(-1, n_out)
        with serial_on_cpu(v_seq.device, 0):
            if needs[4] or needs[5]:
                grad_rec_c, grad_rec_w = grad_scaled[:n_out].mul_(-dt), grad_scaled[n_out:].mul_(dt)
            grad_v0 = rho_next.mul_(g_next) if needs[2] else None
            grad_dr0 = g_dr.mul_(lam) if needs[6] else None
            grad_g = g_pre[..., :n_out].mul_(-dt) if needs[0] else None
            grad_i = g_pre[..., n_out:].mul_(dt) if needs[1] else None
        return (grad_g, grad_i, grad_v0, carry if needs[3] else None, grad_rec_w, grad_rec_c, grad_dr0,
                None, None, None, None, None, None)
