"""Triton GPU kernels for RF / BRF: one launch for the forward, one for the backward.

Same explicit-Euler dynamics and adjoint as ``fused.py`` (``reference.py`` has the plain per-step version)::

    b_t = b0 - q_{t-1}   (BRF; RF: b_t = b0, no q)
    u_t = u_{t-1} + dt(b_t u_{t-1} - ω v_{t-1} + x_t),   v_t = v_{t-1} + dt(ω u_{t-1} + b_t v_{t-1})
    m_t = u_t - θ - q_{t-1} (RF: u_t - θ),   s_t = Θ(m_t),   q_t = 0.9 q_{t-1} + s_t

Why a kernel: the fused engine issues a dozen torch operators per step in forward and about twice that in
backward, so on a GPU it is bound by kernel launches. Here each program owns a block of neurons and walks the
whole sequence with (u, v, q) in registers, so each direction is a single launch.

Backward, in reverse time, with adjoints (gu, gv, gq) of the state after step t::

    gu += gU[t];  gs = gS[t] + gq (BRF);  gm = gs σ'(m_t);  gu += gm
    gb = dt (gu u_{t-1} + gv v_{t-1});  gx_t = dt gu;  gω += dt (gv u_{t-1} - gu v_{t-1});  gb0 += gb
    gu_{t-1} = gu (1 + dt b_t) + gv dt ω;   gv_{t-1} = gv (1 + dt b_t) - gu dt ω;   gq_{t-1} = 0.9 gq - gm - gb

Saved for backward, as in ``fused.py``: u, v (and q for BRF) per step; x is not needed. The constants dt, θ and
0.9 travel in the scalar table so that float64 runs see them unrounded.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch import Tensor
from torch.autograd.function import once_differentiable

from ...surrogate import Surrogate
from ..common import reduce_to
from ..triton_common import device_guard, surrogate_derivative, surrogate_kind
from ..triton_recurrence import (BLOCK, NUM_WARPS, exact_exp_flag, grid, load_coefficient, per_neuron,
                                 pointer_or, scalar_table)
from ..triton_recurrence import unsupported_reason as _unsupported_reason

__all__ = ["RFTritonFunction", "unsupported_reason"]

# Slots of the scalar table, then the surrogate constants (tl.constexpr: a Triton kernel may read a module
# global only if it is one).
_DT, _THETA, _Q_DECAY, _OMEGA, _B0, _SURROGATE = (tl.constexpr(i) for i in range(6))
Q_DECAY = 0.9  # BRF's refractory decay q' = 0.9 q + S (fused.py, reference.py)


def unsupported_reason(x: Tensor, omega: Tensor, b0: Tensor, u0: Tensor, v0: Tensor, q0: Tensor,
                       surrogate: Surrogate) -> str | None:
    """Why the kernels cannot run this case (None when they can). ``x`` is already in the compute dtype."""
    return _unsupported_reason(x, {"omega": omega, "b0": b0, "u0": u0, "v0": v0, "q0": q0}, surrogate)


@triton.jit(do_not_specialize=["T"])
def _rf_forward_kernel(x_ptr, u0_ptr, v0_ptr, q0_ptr, omega_ptr, b0_ptr, params_ptr,
                       spikes_ptr, u_ptr, v_ptr, q_ptr, v_last_ptr, q_last_ptr, T, M,
                       OMEGA_PER_NEURON: tl.constexpr, B0_PER_NEURON: tl.constexpr, BALANCED: tl.constexpr,
                       BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < M
    omega = load_coefficient(omega_ptr, params_ptr + _OMEGA, offs, mask, OMEGA_PER_NEURON)
    b0 = load_coefficient(b0_ptr, params_ptr + _B0, offs, mask, B0_PER_NEURON)
    dt = tl.load(params_ptr + _DT)
    theta = tl.load(params_ptr + _THETA)
    q_decay = tl.load(params_ptr + _Q_DECAY)
    u = tl.load(u0_ptr + offs, mask=mask, other=0.0)
    v = tl.load(v0_ptr + offs, mask=mask, other=0.0)
    q = tl.load(q0_ptr + offs, mask=mask, other=0.0)
    row = tl.zeros([], dtype=tl.int64)  # element offset of step t (64-bit: T*M may exceed 2**31)
    t = tl.full([], 0, tl.int32)
    while t < T:  # a while loop: Triton's CPU interpreter cannot take range() of a runtime bound
        x_t = tl.load(x_ptr + row + offs, mask=mask, other=0.0)
        if BALANCED:
            b = b0 - q
        else:
            b = b0
        u_next = u + dt * (b * u - omega * v + x_t)
        v = v + dt * (omega * u + b * v)
        u = u_next
        if BALANCED:
            s = (u - theta - q >= 0).to(u.dtype)
            q = q_decay * q + s
            tl.store(q_ptr + row + offs, q, mask=mask)
        else:
            s = (u - theta >= 0).to(u.dtype)
        tl.store(u_ptr + row + offs, u, mask=mask)
        tl.store(v_ptr + row + offs, v, mask=mask)
        tl.store(spikes_ptr + row + offs, tl.where(u > -float("inf"), s, float("nan")), mask=mask)  # U NaN/-Inf
        row += M
        t += 1
    tl.store(v_last_ptr + offs, v, mask=mask)
    if BALANCED:
        tl.store(q_last_ptr + offs, q, mask=mask)


@triton.jit(do_not_specialize=["T"])
def _rf_backward_kernel(u_ptr, v_ptr, q_ptr, u0_ptr, v0_ptr, q0_ptr, g_spikes_ptr, g_u_ptr, g_v_last_ptr,
                        g_q_last_ptr, omega_ptr, b0_ptr, params_ptr,
                        g_x_ptr, g_u0_ptr, g_v0_ptr, g_q0_ptr, g_omega_ptr, g_b0_ptr, T, M,
                        OMEGA_PER_NEURON: tl.constexpr, B0_PER_NEURON: tl.constexpr, BALANCED: tl.constexpr,
                        SURROGATE: tl.constexpr, EXACT_EXP: tl.constexpr, HAS_G_SPIKES: tl.constexpr,
                        HAS_G_U: tl.constexpr, HAS_G_V_LAST: tl.constexpr, HAS_G_Q_LAST: tl.constexpr,
                        NEED_X: tl.constexpr, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < M
    omega = load_coefficient(omega_ptr, params_ptr + _OMEGA, offs, mask, OMEGA_PER_NEURON)
    b0 = load_coefficient(b0_ptr, params_ptr + _B0, offs, mask, B0_PER_NEURON)
    dt = tl.load(params_ptr + _DT)
    theta = tl.load(params_ptr + _THETA)
    q_decay = tl.load(params_ptr + _Q_DECAY)
    zero = tl.zeros([BLOCK], dtype=u_ptr.dtype.element_ty)
    u0 = tl.load(u0_ptr + offs, mask=mask, other=0.0)
    v0 = tl.load(v0_ptr + offs, mask=mask, other=0.0)
    gu = zero
    if HAS_G_V_LAST:
        gv = tl.load(g_v_last_ptr + offs, mask=mask, other=0.0)
    else:
        gv = zero
    gq = zero
    q0 = zero
    if BALANCED:
        q0 = tl.load(q0_ptr + offs, mask=mask, other=0.0)
        if HAS_G_Q_LAST:
            gq = tl.load(g_q_last_ptr + offs, mask=mask, other=0.0)
    acc_omega = zero
    acc_b0 = zero
    row = (T - 1).to(tl.int64) * M
    u = tl.load(u_ptr + row + offs, mask=mask, other=0.0)
    t = T - 1
    while t >= 0:
        # State after step t-1 (the initial state at t = 0); its u is the next iteration's u.
        first = t == 0
        previous = mask & (t > 0)
        u_prev = tl.where(first, u0, tl.load(u_ptr + (row - M) + offs, mask=previous, other=0.0))
        v_prev = tl.where(first, v0, tl.load(v_ptr + (row - M) + offs, mask=previous, other=0.0))
        if HAS_G_U:
            gu += tl.load(g_u_ptr + row + offs, mask=mask, other=0.0)
        if HAS_G_SPIKES:
            gs = tl.load(g_spikes_ptr + row + offs, mask=mask, other=0.0)
        else:
            gs = zero
        if BALANCED:
            q_prev = tl.where(first, q0, tl.load(q_ptr + (row - M) + offs, mask=previous, other=0.0))
            gs += gq
            m = u - theta - q_prev
            b = b0 - q_prev
        else:
            m = u - theta
            b = b0
        gm = gs * surrogate_derivative(m, params_ptr + _SURROGATE, SURROGATE, EXACT_EXP)
        gu += gm
        gb = dt * (gu * u_prev + gv * v_prev)
        if NEED_X:
            tl.store(g_x_ptr + row + offs, dt * gu, mask=mask)
        acc_omega += dt * (gv * u_prev - gu * v_prev)
        acc_b0 += gb
        keep = 1.0 + dt * b
        rotate = dt * omega
        gu, gv = gu * keep + gv * rotate, gv * keep - gu * rotate
        if BALANCED:
            gq = q_decay * gq - gm - gb
        u = u_prev
        row -= M
        t -= 1
    tl.store(g_u0_ptr + offs, gu, mask=mask)
    tl.store(g_v0_ptr + offs, gv, mask=mask)
    if BALANCED:
        tl.store(g_q0_ptr + offs, gq, mask=mask)
    tl.store(g_omega_ptr + offs, acc_omega, mask=mask)
    tl.store(g_b0_ptr + offs, acc_b0, mask=mask)


def _sum_to(grad: Tensor, shape: torch.Size) -> Tensor:
    return reduce_to(grad, shape).reshape(shape)


class RFTritonFunction(torch.autograd.Function):
    """``(x [T,*], omega, b0, u0, v0, q0) -> (spikes [T,*], u [T,*], v_last [*], q_last [*])``, as
    :class:`dendrix.ops.rf.fused.RFFunction`, computed by one Triton kernel each way.

    ``x`` float32/float64 on a CUDA device (any device with ``TRITON_INTERPRET=1``); ``omega``, ``b0``, ``u0``,
    ``v0``, ``q0`` tensors of its dtype broadcastable to one step ``[*]``; ``dt``, ``theta`` floats.
    """

    @staticmethod
    def forward(ctx, x: Tensor, omega: Tensor, b0: Tensor, u0: Tensor, v0: Tensor, q0: Tensor, dt: float,
                theta: float, balanced: bool, surrogate: Surrogate):  # type: ignore[override]
        reason = unsupported_reason(x, omega, b0, u0, v0, q0, surrogate)
        if reason is not None:
            raise ValueError(f"Triton RF backend: {reason}")
        step_shape = x.shape[1:]
        m = step_shape.numel()
        x_c = x.contiguous()
        u0_c, v0_c, q0_c = (s.expand(step_shape).contiguous() for s in (u0, v0, q0))
        omega_pn, b0_pn = per_neuron(omega, step_shape), per_neuron(b0, step_shape)
        table = scalar_table([dt, theta, Q_DECAY, omega, b0], surrogate, x_c)
        kw = dict(dtype=x.dtype, device=x.device)
        spikes, u_seq, v_seq = (torch.empty(x.shape, **kw) for _ in range(3))
        q_seq = torch.empty(x.shape, **kw) if balanced else None
        v_last = torch.empty(step_shape, **kw)
        q_last = torch.empty(step_shape, **kw) if balanced else q0.clone()
        if m > 0 and x.shape[0] > 0:
            with device_guard(x_c):
                _rf_forward_kernel[grid(m)](
                    x_c, u0_c, v0_c, q0_c, pointer_or(omega_pn, table), pointer_or(b0_pn, table), table,
                    spikes, u_seq, v_seq, pointer_or(q_seq, table), v_last, q_last, x.shape[0], m,
                    OMEGA_PER_NEURON=omega_pn is not None, B0_PER_NEURON=b0_pn is not None, BALANCED=balanced,
                    BLOCK=BLOCK, num_warps=NUM_WARPS)
        ctx.balanced, ctx.surrogate, ctx.table = balanced, surrogate, table
        ctx.shapes = (omega.shape, b0.shape, u0.shape, v0.shape, q0.shape)
        ctx.save_for_backward(omega, b0, u0_c, v0_c, q0_c, u_seq, v_seq, *([q_seq] if balanced else []))
        ctx.set_materialize_grads(False)
        return spikes, u_seq, v_last, q_last

    @staticmethod
    @once_differentiable
    def backward(ctx, g_spikes, g_u, g_v_last, g_q_last):  # type: ignore[override]
        omega, b0, u0, v0, q0, u_seq, v_seq, *rest = ctx.saved_tensors
        balanced, table = ctx.balanced, ctx.table
        q_seq = rest[0] if balanced else None
        step_shape = u_seq.shape[1:]
        m = step_shape.numel()
        omega_pn, b0_pn = per_neuron(omega, step_shape), per_neuron(b0, step_shape)
        # Autograd hands expanded (stride-0) gradients for sums; the kernel reads dense rows. (RF's q_last is
        # q0 passed through in q0's own shape: its gradient goes straight back, below.)
        g_spikes, g_u, g_v_last, g_q_last_c = (None if g is None else g.to(u_seq.dtype).expand(s).contiguous()
                                               for g, s in ((g_spikes, u_seq.shape), (g_u, u_seq.shape),
                                                            (g_v_last, step_shape),
                                                            (g_q_last if balanced else None, step_shape)))
        kw = dict(dtype=u_seq.dtype, device=u_seq.device)
        g_x = torch.empty(u_seq.shape, **kw) if ctx.needs_input_grad[0] else None
        # Initial-state and parameter gradients are one step each: always computed, returned when asked for.
        g_u0, g_v0, g_q0, g_omega, g_b0 = (torch.zeros(step_shape, **kw) for _ in range(5))
        if m > 0 and u_seq.shape[0] > 0:
            with device_guard(u_seq):
                _rf_backward_kernel[grid(m)](
                    u_seq, v_seq, pointer_or(q_seq, table), u0, v0, q0, pointer_or(g_spikes, table),
                    pointer_or(g_u, table), pointer_or(g_v_last, table), pointer_or(g_q_last_c, table),
                    pointer_or(omega_pn, table), pointer_or(b0_pn, table), table,
                    pointer_or(g_x, table), g_u0, g_v0, g_q0, g_omega, g_b0, u_seq.shape[0], m,
                    OMEGA_PER_NEURON=omega_pn is not None, B0_PER_NEURON=b0_pn is not None, BALANCED=balanced,
                    SURROGATE=surrogate_kind(ctx.surrogate), EXACT_EXP=exact_exp_flag(u_seq),
                    HAS_G_SPIKES=g_spikes is not None, HAS_G_U=g_u is not None,
                    HAS_G_V_LAST=g_v_last is not None, HAS_G_Q_LAST=g_q_last_c is not None,
                    NEED_X=g_x is not None, BLOCK=BLOCK, num_warps=NUM_WARPS)
        elif g_x is not None:
            g_x.zero_()
        if not balanced:  # RF passes q through unchanged
            g_q0 = g_q_last if g_q_last is not None else torch.zeros(ctx.shapes[4], **kw)
        s_omega, s_b0, s_u0, s_v0, s_q0 = ctx.shapes
        needs = ctx.needs_input_grad
        return (g_x,
                _sum_to(g_omega, s_omega) if needs[1] else None,
                _sum_to(g_b0, s_b0) if needs[2] else None,
                _sum_to(g_u0, s_u0) if needs[3] else None,
                _sum_to(g_v0, s_v0) if needs[4] else None,
                _sum_to(g_q0, s_q0) if needs[5] else None,
                None, None, None, None)
