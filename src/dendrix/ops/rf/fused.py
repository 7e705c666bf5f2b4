"""RF / BRF over a whole sequence in one autograd node, with a hand-written backward (BPTT).

Forward (per step, explicit Euler, state (u, v, q)):
    b_t = b0 - q_{t-1}   (BRF; RF: b_t = b0, no q)
    u_t = u_{t-1} + dt(b_t u_{t-1} - ω v_{t-1} + x_t),   v_t = v_{t-1} + dt(ω u_{t-1} + b_t v_{t-1})
    m_t = u_t - θ - q_{t-1},   s_t = Θ(m_t),   q_t = 0.9 q_{t-1} + s_t

Backward, with adjoints (gu, gv, gq) of the state after step t and gs of the output spike:
    gs  += gq                      (q_t = 0.9 q + s_t)
    gm   = gs σ'(m_t)              (surrogate derivative)
    gu  += gm                      (m_t depends on u_t)
    gb   = dt (gu u_{t-1} + gv v_{t-1});  gx_t = dt gu;  gω += dt (gv u_{t-1} - gu v_{t-1});  gb0 += gb
    gu_{t-1} = gu (1 + dt b_t) + gv dt ω;   gv_{t-1} = gv (1 + dt b_t) - gu dt ω
    gq_{t-1} = 0.9 gq - gm - gb
Saved for backward: x is not needed; u, v (and q) per step are.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..common import mark_dead_spikes_

__all__ = ["RFFunction"]


def _sum_to(grad: Tensor, shape: torch.Size) -> Tensor:
    lead = grad.dim() - len(shape)
    if lead > 0:
        grad = grad.sum(dim=tuple(range(lead)))
    dims = tuple(i for i, n in enumerate(shape) if n == 1 and grad.shape[i] != 1)
    return grad.sum(dim=dims, keepdim=True) if dims else grad


class RFFunction(torch.autograd.Function):
    """RF / BRF over the whole sequence in one autograd node: explicit-Euler forward, hand-written adjoint backward
    loop with the surrogate (``rf_sequence`` documents the equations)."""
    @staticmethod
    def forward(ctx, x, omega, b0, u0, v0, q0, dt, theta, balanced, surrogate):  # type: ignore[override]
        T = x.shape[0]
        us, vs, spikes = torch.empty_like(x), torch.empty_like(x), torch.empty_like(x)
        qs = torch.empty_like(x) if balanced else None
        u, v, q = u0, v0, q0
        for t in range(T):
            b = b0 - q if balanced else b0
            u_next = u + dt * (b * u - omega * v + x[t])
            v = v + dt * (omega * u + b * v)
            u = u_next
            s = ((u - theta - q) >= 0 if balanced else (u - theta) >= 0).to(x.dtype)
            if balanced:
                q = 0.9 * q + s
                qs[t] = q
            us[t], vs[t], spikes[t] = u, v, s
        # NaN spikes where U is NaN or -Inf (a non-finite q makes U non-finite at the same step); the recurrence
        # above keeps the comparison.
        if T:
            mark_dead_spikes_(spikes, us, us[-1])
        ctx.dt, ctx.theta, ctx.balanced, ctx.surrogate = dt, theta, balanced, surrogate
        ctx.shapes = (omega.shape, b0.shape, u0.shape, v0.shape, q0.shape)
        saved = [omega, b0, u0, v0, q0, us, vs] + ([qs] if balanced else [])
        ctx.save_for_backward(*saved)
        return spikes, us, v, (q if balanced else q0.clone())

    @staticmethod
    def backward(ctx, g_spikes, g_us, g_v_last, g_q_last):  # type: ignore[override]
        omega, b0, u0, v0, q0, us, vs, *rest = ctx.saved_tensors
        qs = rest[0] if ctx.balanced else None
        dt, theta, balanced, surrogate = ctx.dt, ctx.theta, ctx.balanced, ctx.surrogate
        T = us.shape[0]
        step_shape = us.shape[1:]
        zeros = us.new_zeros(step_shape)
        g_spikes = g_spikes if g_spikes is not None else torch.zeros_like(us)
        gu = zeros.clone()
        gv = g_v_last.expand(step_shape).clone() if g_v_last is not None else zeros.clone()
        gq = g_q_last.expand(step_shape).clone() if (g_q_last is not None and balanced) else zeros.clone()
        gx = torch.empty_like(us)
        g_omega, g_b0 = zeros.clone(), zeros.clone()
        u0e, v0e, q0e = u0.expand(step_shape), v0.expand(step_shape), q0.expand(step_shape)
        for t in range(T - 1, -1, -1):
            u_prev = us[t - 1] if t > 0 else u0e
            v_prev = vs[t - 1] if t > 0 else v0e
            q_prev = (qs[t - 1] if t > 0 else q0e) if balanced else None
            if g_us is not None:
                gu = gu + g_us[t]
            gs = g_spikes[t] + gq if balanced else g_spikes[t]
            m = us[t] - theta - q_prev if balanced else us[t] - theta
            gm = gs * surrogate.derivative(m)
            gu = gu + gm
            b = b0 - q_prev if balanced else b0
            gb = dt * (gu * u_prev + gv * v_prev)
            gx[t] = dt * gu
            g_omega += dt * (gv * u_prev - gu * v_prev)
            g_b0 += gb
            gu, gv = gu * (1 + dt * b) + gv * (dt * omega), gv * (1 + dt * b) - gu * (dt * omega)
            if balanced:
                gq = 0.9 * gq - gm - gb
        s_omega, s_b0, s_u0, s_v0, s_q0 = ctx.shapes
        grads = [gx,
                 _sum_to(g_omega, s_omega) if ctx.needs_input_grad[1] else None,
                 _sum_to(g_b0, s_b0) if ctx.needs_input_grad[2] else None,
                 _sum_to(gu, s_u0) if ctx.needs_input_grad[3] else None,
                 _sum_to(gv, s_v0) if ctx.needs_input_grad[4] else None,
                 None]
        if ctx.needs_input_grad[5]:  # RF passes q through unchanged
            grads[5] = _sum_to(gq if balanced else (g_q_last if g_q_last is not None else zeros), s_q0)
        return (*grads, None, None, None, None)
