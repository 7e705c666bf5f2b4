"""Triton GPU kernels for the adaptive LIF recurrence: one launch for the forward, one for the backward.

Same recurrence, adjoint and roundings as ``fused.py`` (``reference.py`` has the plain per-step version)::

    a[t] = rho a[t-1] + (1 - rho) S[t-1]
    B[t] = b0 + beta a[t]
    U[t] = alpha U[t-1] + (1 - alpha) X[t] - B[t] S[t-1]
    S[t] = Θ(U[t] - B[t])

Why a kernel: the fused engine issues about 7 torch operators per forward step and 8 per backward step, so on a
GPU it is bound by kernel launches. Here each program owns a block of neurons and walks the whole sequence with
(U, a, S) in registers (backward: the adjoints dU, dA and B[t+1]), so each direction is a single launch.

Backward, in reverse time (σ'[t] = surrogate'(U[t] - B[t]); ``fused.py`` and ``docs/neurons.md`` derive it)::

    dS[t] = gS[t] - B[t+1] dU[t+1] + (1 - rho) dA[t+1]
    dU[t] = gU[t] + σ'[t] dS[t] + alpha dU[t+1]
    dA[t] = rho dA[t+1] - beta (S[t-1] dU[t] + σ'[t] dS[t])      (+ g_a_last at t = T-1)
    dX[t] = (1 - alpha) dU[t];  dalpha = Σ dU[t] (U[t-1] - X[t]);  drho = Σ dA[t] (a[t-1] - S[t-1])
    du0 = alpha dU[0];  da0 = rho dA[0];  ds0 = -B[0] dU[0] + (1 - rho) dA[0]

B and S are recomputed from the saved U and a with the forward's expression (``_threshold``), so the recomputed
spikes are the forward's. Saved for backward: U (an output) and a; X only when alpha needs a gradient.
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

__all__ = ["ALIFTritonFunction", "unsupported_reason"]

# Slots of the scalar table, then the surrogate constants (tl.constexpr: a Triton kernel may read a module
# global only if it is one).
_B0, _BETA, _ALPHA, _RHO, _SURROGATE = (tl.constexpr(i) for i in range(5))


def unsupported_reason(x: Tensor, u0: Tensor, surrogate: Surrogate) -> str | None:
    """Why the kernels cannot run this case (None when they can). ``x`` is already in the compute dtype."""
    return _unsupported_reason(x, {"u0": u0}, surrogate)


@triton.jit
def _coefficients(alpha_ptr, rho_ptr, params_ptr, offs, mask, ALPHA_PER_NEURON: tl.constexpr,
                  RHO_PER_NEURON: tl.constexpr):
    """α, ρ (per neuron or from the table), b0 and β: what both kernels read before their time loop."""
    alpha = load_coefficient(alpha_ptr, params_ptr + _ALPHA, offs, mask, ALPHA_PER_NEURON)
    rho = load_coefficient(rho_ptr, params_ptr + _RHO, offs, mask, RHO_PER_NEURON)
    return alpha, rho, tl.load(params_ptr + _B0), tl.load(params_ptr + _BETA)


@triton.jit
def _threshold(a, beta, b0):
    """B = b0 + beta a: one expression for the forward and the backward's recomputation."""
    return a * beta + b0


@triton.jit(do_not_specialize=["T"])
def _alif_forward_kernel(x_ptr, u0_ptr, a0_ptr, s0_ptr, alpha_ptr, rho_ptr, params_ptr,
                         spikes_ptr, u_ptr, a_ptr, a_last_ptr, T, M,
                         ALPHA_PER_NEURON: tl.constexpr, RHO_PER_NEURON: tl.constexpr, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < M
    alpha, rho, b0, beta = _coefficients(alpha_ptr, rho_ptr, params_ptr, offs, mask, ALPHA_PER_NEURON,
                                         RHO_PER_NEURON)
    u = tl.load(u0_ptr + offs, mask=mask, other=0.0)
    a = tl.load(a0_ptr + offs, mask=mask, other=0.0)
    s = tl.load(s0_ptr + offs, mask=mask, other=0.0)
    x_ptrs = x_ptr + offs
    u_ptrs = u_ptr + offs
    a_ptrs = a_ptr + offs
    s_ptrs = spikes_ptr + offs
    t = tl.full([], 0, tl.int32)
    while t < T:  # a while loop: Triton's CPU interpreter cannot take range() of a runtime bound
        x_t = tl.load(x_ptrs, mask=mask, other=0.0)
        a = rho * a + (1.0 - rho) * s
        threshold = _threshold(a, beta, b0)
        u = (1.0 - alpha) * x_t + alpha * u - threshold * s
        s = (u >= threshold).to(u.dtype)
        tl.store(u_ptrs, u, mask=mask)
        tl.store(a_ptrs, a, mask=mask)
        tl.store(s_ptrs, tl.where(u > -float("inf"), s, float("nan")), mask=mask)  # NaN where U is NaN or -Inf
        x_ptrs += M
        u_ptrs += M
        a_ptrs += M
        s_ptrs += M
        t += 1
    tl.store(a_last_ptr + offs, a, mask=mask)


@triton.jit(do_not_specialize=["T"])
def _alif_backward_kernel(x_ptr, u_ptr, a_ptr, u0_ptr, a0_ptr, s0_ptr, g_spikes_ptr, g_u_ptr, g_a_last_ptr,
                          alpha_ptr, rho_ptr, params_ptr,
                          g_x_ptr, g_u0_ptr, g_a0_ptr, g_s0_ptr, g_alpha_ptr, g_rho_ptr, T, M,
                          ALPHA_PER_NEURON: tl.constexpr, RHO_PER_NEURON: tl.constexpr, SURROGATE: tl.constexpr,
                          EXACT_EXP: tl.constexpr, HAS_G_SPIKES: tl.constexpr, HAS_G_U: tl.constexpr,
                          HAS_G_A_LAST: tl.constexpr, NEED_X: tl.constexpr, NEED_ALPHA: tl.constexpr,
                          BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < M
    alpha, rho, b0, beta = _coefficients(alpha_ptr, rho_ptr, params_ptr, offs, mask, ALPHA_PER_NEURON,
                                         RHO_PER_NEURON)
    u0 = tl.load(u0_ptr + offs, mask=mask, other=0.0)
    a0 = tl.load(a0_ptr + offs, mask=mask, other=0.0)
    s0 = tl.load(s0_ptr + offs, mask=mask, other=0.0)
    zero = tl.zeros([BLOCK], dtype=u_ptr.dtype.element_ty)
    du_next = zero          # dU[t+1]
    da_next = zero          # dA[t+1]
    threshold_next = zero   # B[t+1] (its term vanishes at t = T-1 since dU[T] = 0)
    if HAS_G_A_LAST:
        g_a_extra = tl.load(g_a_last_ptr + offs, mask=mask, other=0.0)  # added to dA[T-1] only
    else:
        g_a_extra = zero
    acc_alpha = zero
    acc_rho = zero
    row = (T - 1).to(tl.int64) * M  # element offset of step t (64-bit: T*M may exceed 2**31)
    u = tl.load(u_ptr + row + offs, mask=mask, other=0.0)
    a = tl.load(a_ptr + row + offs, mask=mask, other=0.0)
    threshold = _threshold(a, beta, b0)
    t = T - 1
    while t >= 0:
        # Step t-1 (the next iteration's step t): U, a, B and S recomputed, the initial state at t = 0.
        first = t == 0
        u_prev = tl.where(first, u0, tl.load(u_ptr + (row - M) + offs, mask=mask & (t > 0), other=0.0))
        a_prev = tl.where(first, a0, tl.load(a_ptr + (row - M) + offs, mask=mask & (t > 0), other=0.0))
        threshold_prev = _threshold(a_prev, beta, b0)
        s_prev = tl.where(first, s0, (u_prev >= threshold_prev).to(u.dtype))

        ds = (1.0 - rho) * da_next - threshold_next * du_next
        if HAS_G_SPIKES:
            ds += tl.load(g_spikes_ptr + row + offs, mask=mask, other=0.0)
        q = surrogate_derivative(u - threshold, params_ptr + _SURROGATE, SURROGATE, EXACT_EXP) * ds
        du = q + alpha * du_next
        if HAS_G_U:
            du += tl.load(g_u_ptr + row + offs, mask=mask, other=0.0)
        da = rho * da_next - beta * (q + s_prev * du) + g_a_extra
        g_a_extra = zero
        if NEED_ALPHA:
            acc_alpha += du * (u_prev - tl.load(x_ptr + row + offs, mask=mask, other=0.0))
        acc_rho += da * (a_prev - s_prev)
        if NEED_X:
            tl.store(g_x_ptr + row + offs, (1.0 - alpha) * du, mask=mask)
        du_next = du
        da_next = da
        threshold_next = threshold
        u = u_prev
        a = a_prev
        threshold = threshold_prev
        row -= M
        t -= 1
    # Initial state: U[0] = alpha u0 + ... - B[0] s0;  a[0] = rho a0 + (1 - rho) s0.
    tl.store(g_u0_ptr + offs, alpha * du_next, mask=mask)
    tl.store(g_a0_ptr + offs, rho * da_next, mask=mask)
    tl.store(g_s0_ptr + offs, (1.0 - rho) * da_next - threshold_next * du_next, mask=mask)
    tl.store(g_alpha_ptr + offs, acc_alpha, mask=mask)
    tl.store(g_rho_ptr + offs, acc_rho, mask=mask)


class ALIFTritonFunction(torch.autograd.Function):
    """``(x [T,*], u0, a0, s0 [*], alpha, rho) -> (spikes [T,*], U [T,*], a[T-1] [*])``, as
    :class:`dendrix.ops.alif.fused.ALIFFunction`, computed by one Triton kernel each way.

    ``x`` and the state must be float32/float64 on one CUDA device (any device with ``TRITON_INTERPRET=1``);
    ``alpha``, ``rho`` are tensors broadcastable to ``[*]`` in the compute dtype; ``b0``, ``beta`` floats.
    """

    @staticmethod
    def forward(ctx, x: Tensor, u0: Tensor, a0: Tensor, s0: Tensor, alpha: Tensor, rho: Tensor, b0: float,
                beta: float, surrogate: Surrogate):  # type: ignore[override]
        reason = unsupported_reason(x, u0, surrogate)
        if reason is not None:
            raise ValueError(f"Triton ALIF backend: {reason}")
        step_shape = u0.shape
        m = u0.numel()
        x_c = x.contiguous()
        u0_c, a0_c, s0_c = (s.contiguous() for s in (u0, a0, s0))
        alpha_pn, rho_pn = per_neuron(alpha, step_shape), per_neuron(rho, step_shape)
        table = scalar_table([b0, beta, alpha, rho], surrogate, x_c)
        u_seq = torch.empty(x.shape, dtype=x.dtype, device=x.device)
        a_seq = torch.empty(x.shape, dtype=x.dtype, device=x.device)
        spikes = torch.empty(x.shape, dtype=x.dtype, device=x.device)
        a_last = torch.empty(step_shape, dtype=x.dtype, device=x.device)
        if m > 0:
            with device_guard(x_c):
                _alif_forward_kernel[grid(m)](
                    x_c, u0_c, a0_c, s0_c, pointer_or(alpha_pn, table), pointer_or(rho_pn, table), table,
                    spikes, u_seq, a_seq, a_last, x.shape[0], m, ALPHA_PER_NEURON=alpha_pn is not None,
                    RHO_PER_NEURON=rho_pn is not None, BLOCK=BLOCK, num_warps=NUM_WARPS)
        ctx.surrogate = surrogate
        ctx.table = table  # a few numbers, not an autograd input
        need_alpha = ctx.needs_input_grad[4]
        ctx.save_for_backward(x_c if need_alpha else None, u_seq, a_seq, u0_c, a0_c, s0_c, alpha, rho)
        ctx.set_materialize_grads(False)
        return spikes, u_seq, a_last

    @staticmethod
    @once_differentiable
    def backward(ctx, g_spikes: Tensor | None, g_u: Tensor | None, g_a_last: Tensor | None):  # type: ignore[override]
        x, u_seq, a_seq, u0, a0, s0, alpha, rho = ctx.saved_tensors
        table = ctx.table
        need_x, need_u0, need_a0, need_s0, need_alpha, need_rho = ctx.needs_input_grad[:6]
        step_shape = u0.shape
        m = u0.numel()
        alpha_pn, rho_pn = per_neuron(alpha, step_shape), per_neuron(rho, step_shape)
        # Autograd hands expanded (stride-0) gradients for sums; the kernel reads dense rows.
        g_spikes, g_u, g_a_last = (None if g is None else g.to(u_seq.dtype).contiguous()
                                   for g in (g_spikes, g_u, g_a_last))
        kw = dict(dtype=u_seq.dtype, device=u_seq.device)
        g_x = torch.empty(u_seq.shape, **kw) if need_x else None
        # Initial-state and parameter gradients are one step each: always computed, returned when asked for.
        g_u0, g_a0, g_s0, g_alpha, g_rho = (torch.zeros(step_shape, **kw) for _ in range(5))
        if m > 0:
            with device_guard(u_seq):
                _alif_backward_kernel[grid(m)](
                    pointer_or(x, table), u_seq, a_seq, u0, a0, s0, pointer_or(g_spikes, table),
                    pointer_or(g_u, table), pointer_or(g_a_last, table), pointer_or(alpha_pn, table),
                    pointer_or(rho_pn, table), table, pointer_or(g_x, table), g_u0, g_a0, g_s0, g_alpha, g_rho,
                    u_seq.shape[0], m, ALPHA_PER_NEURON=alpha_pn is not None, RHO_PER_NEURON=rho_pn is not None,
                    SURROGATE=surrogate_kind(ctx.surrogate), EXACT_EXP=exact_exp_flag(u_seq),
                    HAS_G_SPIKES=g_spikes is not None, HAS_G_U=g_u is not None, HAS_G_A_LAST=g_a_last is not None,
                    NEED_X=need_x, NEED_ALPHA=need_alpha, BLOCK=BLOCK, num_warps=NUM_WARPS)
        elif need_x:
            g_x.zero_()
        return (g_x, g_u0 if need_u0 else None, g_a0 if need_a0 else None, g_s0 if need_s0 else None,
                reduce_to(g_alpha, alpha.shape) if need_alpha else None,
                reduce_to(g_rho, rho.shape) if need_rho else None, None, None, None)
