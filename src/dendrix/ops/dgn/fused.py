"""Fused whole-sequence DGN kernels: one ``torch.autograd.Function`` each, with hand-written backward loops.

* :class:`SynapticTraceFunction` — the presynaptic traces D[t] = λ·D[t-1] + z[t]. Linear, so the backward is
  the same exponential filter run backwards in time (dL/dz[t] = Σ_{k≥t} λ^{k-t} dL/dD[k]). Saves nothing.
* :class:`DGNMembraneFunction` — the gated membrane with soft reset, optionally with the recurrent trace
  (W_rec, C_rec matmuls per step inside forward and backward). Saves the gate argument a = 1 − dt·G and the
  membrane V (plus the recurrent trace for the recurrent variant); spikes, ρ, φ'(a) and the surrogate slope are
  recomputed in parallel in the backward pass.

Adjoint equations (g_X = dL/dX, t = T..1, quantities at T+1 are zero):
    g_S[t]  = dL/dS[t] − θ·g_V[t+1] (unless detach_reset) + g_Dr[t+1]
    g_V[t]  = dL/dV[t] + ρ[t+1]·g_V[t+1] + g_S[t]·σ'(V[t] − θ)
    g_I[t]  = dt·g_V[t];   g_G[t] = −dt·φ'(a[t])·V[t-1]·g_V[t]
    g_Dr[t] = λ·g_Dr[t+1] + C_recᵀ g_G[t] + W_recᵀ g_I[t];   g_W_rec = Σ_t g_I[t] Dr[t]ᵀ,  g_C_rec = Σ_t g_G[t] Dr[t]ᵀ
"""

from __future__ import annotations

import contextlib

import torch
from torch import Tensor

from ...surrogate import Surrogate
from ..common import mark_dead_spikes_
from ..threads import serial_on_cpu
from .reference import apply_gate

__all__ = ["SynapticTraceFunction", "DGNMembraneFunction", "exponential_filter"]


# Threads (CPU): the feed-forward kernel keeps all intra-op threads for its whole-sequence work (gate,
# surrogate slope) and runs its loop on one thread (ops/threads.py). The recurrent kernel runs entirely on one
# thread: its per-step [B, out]x[out, 2*out] addmm gained a little from a second thread on a quiet machine, but
# on the loaded 2-core CPU of issue 18 every step's hand-off waited for a descheduled worker, and OpenMP workers
# spinning after the whole-sequence operators were charged to the process (docs/benchmarks.md, "Margins").


def exponential_filter(z: Tensor, d0: Tensor, decay: float) -> Tensor:
    """D[t] = decay·D[t-1] + z[t] (D[0] = d0), in place into one output buffer; not differentiated."""
    out = torch.empty_like(z)
    d = d0
    for t in range(z.shape[0]):
        d = torch.add(z[t], d, alpha=decay, out=out[t])
    return out


class SynapticTraceFunction(torch.autograd.Function):
    """Exponential synaptic traces ``D[t] = decay·D[t-1] + z[t]`` over the whole sequence; backward is the adjoint
    filter run backwards in time (no per-step graph)."""
    @staticmethod
    def forward(ctx, z: Tensor, d0: Tensor, decay: float) -> Tensor:  # type: ignore[override]
        ctx.decay = decay
        return exponential_filter(z, d0, decay)

    @staticmethod
    def backward(ctx, grad_out: Tensor):  # type: ignore[override]
        decay = ctx.decay
        grad_z = torch.empty_like(grad_out)
        acc = torch.zeros_like(grad_out[0])
        for t in range(grad_out.shape[0] - 1, -1, -1):
            acc = torch.add(grad_out[t], acc, alpha=decay, out=grad_z[t])
        return grad_z, decay * acc, None


def _serial_if_recurrent(recurrent: bool, like: Tensor):
    """The whole recurrent kernel on one intra-op thread on CPU (the feed-forward one keeps its threads)."""
    return serial_on_cpu(like.device, 0) if recurrent else contextlib.nullcontext()


class DGNMembraneFunction(torch.autograd.Function):
    """The gated DGN membrane over the whole sequence (feed-forward or recurrent) in one autograd node, with a
    hand-written backward loop that applies the surrogate (equations in the package docstring)."""
    @staticmethod
    def forward(ctx, conductance: Tensor, current: Tensor, v0: Tensor, s0: Tensor,
                rec_weight: Tensor | None, rec_conductance: Tensor | None, rec_trace0: Tensor | None,
                dt: float, threshold: float, gate: str, surrogate: Surrogate, detach_reset: bool,
                rec_decay: float):  # type: ignore[override]
        ctx.set_materialize_grads(False)
        with _serial_if_recurrent(rec_weight is not None, v0):
            return _membrane_forward(ctx, conductance, current, v0, s0, rec_weight, rec_conductance, rec_trace0,
                                     dt, threshold, gate, surrogate, detach_reset, rec_decay)

    @staticmethod
    def backward(ctx, grad_s: Tensor | None, grad_v: Tensor | None, grad_rec_last: Tensor | None = None):  # type: ignore[override]
        with _serial_if_recurrent(ctx.recurrent, ctx.saved_tensors[0]):
            return _membrane_backward(ctx, grad_s, grad_v, grad_rec_last)


def _membrane_forward(ctx, conductance: Tensor, current: Tensor, v0: Tensor, s0: Tensor,
                      rec_weight: Tensor | None, rec_conductance: Tensor | None, rec_trace0: Tensor | None,
                      dt: float, threshold: float, gate: str, surrogate: Surrogate, detach_reset: bool,
                      rec_decay: float):
    T = conductance.shape[0]
    recurrent = rec_weight is not None
    v_seq = torch.empty_like(conductance)
    s_seq = torch.empty_like(conductance)
    # Broadcast initial states (e.g. [out]) are expanded here; autograd sums their gradients back.
    v0, s0 = v0.expand(conductance.shape[1:]), s0.expand(conductance.shape[1:])
    v, s = v0, s0
    if not recurrent:
        # Without recurrence the gate does not depend on the state: compute it for all steps at once.
        a_seq = torch.mul(conductance, -dt).add_(1.0)
        rho = apply_gate(a_seq, gate)
        drive = current * dt if dt != 1.0 else current
        # Spikes are written straight into the float output (no bool temporaries or casts per step).
        with serial_on_cpu(v0.device, v0.numel()):
            for t in range(T):
                v = torch.addcmul(drive[t], rho[t], v, out=v_seq[t])
                v.sub_(s, alpha=threshold)
                s = torch.ge(v, threshold, out=s_seq[t])
        ctx.save_for_backward(a_seq, v_seq, v0)
        rec_last = None
    else:
        n_out = conductance.shape[-1]
        # pre[t] = [a[t], dt·I[t]] (gate argument and drive side by side, [B, 2·out]); the recurrent part
        # is added in place by one addmm per step with the pre-scaled [−dt·C_rec; dt·W_rec].
        pre = torch.empty(*conductance.shape[:-1], 2 * n_out, dtype=conductance.dtype, device=conductance.device)
        torch.mul(conductance, -dt, out=pre[..., :n_out]).add_(1.0)
        torch.mul(current, dt, out=pre[..., n_out:])
        scaled = torch.cat([rec_conductance * -dt, rec_weight * dt], 0)  # [2·out, out]
        scaled_t = scaled.t().contiguous()
        dr_seq = torch.empty_like(conductance)
        rho_buf = torch.empty_like(v0)
        clamp_gate = gate == "clamp"
        # Views made once (unbind) instead of indexing in the loop: the per-step tensors are small, so Python
        # and dispatcher overhead is a large part of each step.
        pre_t, a_t, drive_t = pre.unbind(0), pre[..., :n_out].unbind(0), pre[..., n_out:].unbind(0)
        # Spikes go straight into the float output: no bool temporaries, no dtype casts in the loop.
        dr_t, v_t, s_t = dr_seq.unbind(0), v_seq.unbind(0), s_seq.unbind(0)
        dr = rec_trace0
        with serial_on_cpu(v0.device, v0.numel()):
            for t in range(T):
                dr = torch.add(s, dr, alpha=rec_decay, out=dr_t[t])
                pre_t[t].addmm_(dr, scaled_t)
                a = a_t[t]
                rho = torch.clamp(a, 0.0, 1.0, out=rho_buf) if clamp_gate else torch.sigmoid(a, out=rho_buf)
                v = torch.addcmul(drive_t[t], rho, v, out=v_t[t])
                v.add_(s, alpha=-threshold)
                s = torch.ge(v, threshold, out=s_t[t])
        ctx.save_for_backward(pre, v_seq, v0, dr_seq, scaled)
        rec_last = dr_seq[-1].clone()
    ctx.recurrent, ctx.dt, ctx.threshold, ctx.gate = recurrent, dt, threshold, gate
    ctx.surrogate, ctx.detach_reset, ctx.rec_decay = surrogate, detach_reset, rec_decay
    # NaN spikes where V is NaN or -Inf (visible, not silent); the loops above keep the comparison, and the
    # backward recomputes S from V.
    if T:
        mark_dead_spikes_(s_seq, v_seq, v_seq[-1])
    if recurrent:
        return s_seq, v_seq, rec_last
    return s_seq, v_seq


def _membrane_backward(ctx, grad_s: Tensor | None, grad_v: Tensor | None, grad_rec_last: Tensor | None):
    dt, theta, lam = ctx.dt, ctx.threshold, ctx.rec_decay
    reset_coef = 0.0 if ctx.detach_reset else -theta
    if ctx.recurrent:
        pre, v_seq, v0, dr_seq, scaled = ctx.saved_tensors
        n_out = v_seq.shape[-1]
        a_seq = pre[..., :n_out]
    else:
        a_seq, v_seq, v0 = ctx.saved_tensors
    T = a_seq.shape[0]
    rho = apply_gate(a_seq, ctx.gate)
    slope = ctx.surrogate.derivative_(v_seq - theta)
    # dL/da[t] = g_V[t]·V[t-1]·φ'(a[t]); the factor V[t-1]·φ'(a[t]) is known before the loop.
    coef_a = torch.cat([v0.unsqueeze(0), v_seq[:-1]], 0)
    if ctx.gate == "clamp":  # φ' = 1 exactly where clamp(a) == a, i.e. 0 <= a <= 1
        coef_a.mul_(rho == a_seq)
    else:  # sigmoid: φ' = ρ(1 − ρ)
        coef_a.mul_(rho).addcmul_(coef_a, rho, value=-1.0)

    if not ctx.recurrent:
        g_v_seq = torch.empty_like(v_seq)
        g_next = torch.zeros_like(v0)
        with serial_on_cpu(v0.device, v0.numel()):
            for t in range(T - 1, -1, -1):
                if grad_s is None:
                    g = torch.mul(g_next, slope[t], out=g_v_seq[t]).mul_(reset_coef)
                else:
                    g = torch.add(grad_s[t], g_next, alpha=reset_coef) if reset_coef != 0.0 else grad_s[t]
                    g = torch.mul(g, slope[t], out=g_v_seq[t])
                if grad_v is not None:
                    g.add_(grad_v[t])
                if t + 1 < T:
                    g.addcmul_(rho[t + 1], g_next)
                g_next = g
        grad_s0 = reset_coef * g_next
        grad_v0 = rho[0] * g_next  # before g_v_seq (which g_next views) is scaled in place
        grad_g = coef_a.mul_(g_v_seq).mul_(-dt)
        grad_i = g_v_seq.mul_(dt) if dt != 1.0 else g_v_seq
        return grad_g, grad_i, grad_v0, grad_s0, None, None, None, None, None, None, None, None, None

    # g_pre[t] = [dL/da[t], dL/d(drive)[t]] = [g_V·V[t-1]·φ', g_V]; the second half is g_V itself.
    g_pre = torch.empty_like(pre)
    g_next = torch.zeros_like(v0)
    g_dr = torch.zeros_like(v0)
    carry_s = torch.zeros_like(v0)  # dL/dS[t] received from step t+1
    carry_buf = torch.empty_like(v0)
    slope_t, rho_t, coef_t = slope.unbind(0), rho.unbind(0), coef_a.unbind(0)
    g_pre_t, g_a_t, g_v_t = g_pre.unbind(0), g_pre[..., :n_out].unbind(0), g_pre[..., n_out:].unbind(0)
    grad_s_t = grad_s.unbind(0) if grad_s is not None else None
    with serial_on_cpu(v0.device, v0.numel()):
        for t in range(T - 1, -1, -1):
            # Every step writes into preallocated buffers (g_pre, g_dr, carry_s): no allocation in the loop.
            if grad_s_t is None:
                g = torch.mul(carry_s, slope_t[t], out=g_v_t[t])
            else:
                g = torch.add(grad_s_t[t], carry_s, out=g_v_t[t]).mul_(slope_t[t])
            if grad_v is not None:
                g.add_(grad_v[t])
            if t + 1 < T:
                g.addcmul_(rho_t[t + 1], g_next)
            torch.mul(g, coef_t[t], out=g_a_t[t])
            g_dr.addmm_(g_pre_t[t], scaled, beta=lam)
            if t == T - 1 and grad_rec_last is not None:
                g_dr.add_(grad_rec_last)
            carry_s = torch.add(g_dr, g, alpha=reset_coef, out=carry_buf) if reset_coef != 0.0 else g_dr
            g_next = g
    grad_s0 = carry_s
    grad_dr0 = lam * g_dr
    grad_v0 = rho[0] * g_next
    grad_scaled = g_pre.reshape(-1, 2 * n_out).t() @ dr_seq.reshape(-1, n_out)
    grad_rec_c, grad_rec_w = grad_scaled[:n_out].mul_(-dt), grad_scaled[n_out:].mul_(dt)
    grad_g = g_pre[..., :n_out].mul_(-dt)
    grad_i = g_pre[..., n_out:].mul_(dt)
    return (grad_g, grad_i, grad_v0, grad_s0, grad_rec_w, grad_rec_c, grad_dr0,
            None, None, None, None, None, None)
