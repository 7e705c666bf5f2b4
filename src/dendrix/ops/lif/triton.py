"""Triton GPU kernels for the leaky integrate-and-fire recurrence: one launch for the forward, one for the backward.

Same recurrence and meaning as ``fused.py`` (``reference.py`` has the plain per-step version)::

    H[t] = leak * V[t-1] + gain * X[t] + bias
    S[t] = Θ(H[t] - θ)
    V[t] = H[t] (1 - S[t]) + v_reset S[t]   (hard)   or   H[t] - θ S[t]   (soft, v_reset=None)

Why a kernel: the fused engine issues 2-3 torch operators per time step, which on a GPU is bound by kernel
launches (T = 1024 steps cost thousands of launches). Here each Triton program owns a block of neurons and
walks the whole sequence in registers, so a forward or backward is a single launch whatever T is.

* Forward: per step one load of ``X[t]``, stores of ``H[t]`` and ``S[t]``; ``V`` lives in registers.
* Backward: the reverse-time adjoint of ``fused.py`` (``docs/neurons.md``, "Backward")::

      gV[T-1] = dL/dV_last,   gV[t] = leak gH[t+1]   (t < T-1)
      gH[t]   = gS[t] σ'(H[t] - θ) + gH_ext[t] + gV[t] dV/dH[t]
      dX[t] = gain gH[t],  dV0 = leak gH[0],  d leak = Σ gH[t] V[t-1],  d gain = Σ gH[t] X[t],  d bias = Σ gH[t]

  with dV/dH = (1 - S) + (v_reset - H) σ' (hard), 1 - θ σ' (soft); ``detach_reset`` drops the σ' term.
  ``V[t-1]`` is recomputed from ``H[t-1]`` (loaded once per step and reused as the next step's ``H``).
  Parameter gradients are accumulated per neuron in registers and summed to the parameter's shape afterwards.
* Saved for backward, as in ``fused.py``: ``H`` (an output); ``X`` only when ``gain`` needs a gradient,
  ``v0`` only when ``leak`` does.
* Scalars (θ, v_reset, float coefficients, surrogate constants) travel in a small tensor of the compute dtype,
  not as kernel arguments: Triton passes Python floats as float32, which would round float64 runs.
* float64 ``exp`` (Sigmoid and DoubleGaussian surrogates) uses libdevice on the GPU for full precision.

Importing this module imports Triton; ``dendrix.ops.lif`` imports it lazily, only when the Triton backend is
asked for or chosen by ``"auto"`` for a CUDA tensor.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch import Tensor
from torch.autograd.function import once_differentiable

from ...surrogate import Surrogate
from ..triton_common import device_guard, surrogate_derivative, surrogate_kind
from ..triton_recurrence import (BLOCK, NUM_WARPS, exact_exp_flag, grid, load_coefficient, per_neuron,
                                 scalar_table)
from ..triton_recurrence import unsupported_reason as _unsupported_reason
from ..common import reduce_to

__all__ = ["LeakyTritonFunction", "unsupported_reason"]

# Slots of the scalar table (tl.constexpr: a Triton kernel may read a module global only if it is one).
_THETA, _V_RESET, _LEAK, _GAIN, _BIAS, _C0 = (tl.constexpr(i) for i in range(6))


def unsupported_reason(x: Tensor, v0: Tensor, surrogate: Surrogate) -> str | None:
    """Why the kernels cannot run this case (None when they can). ``x`` is already in the compute dtype."""
    return _unsupported_reason(x, {"v0": v0}, surrogate)


@triton.jit(do_not_specialize=["T"])
def _leaky_forward_kernel(x_ptr, v0_ptr, leak_ptr, gain_ptr, bias_ptr, params_ptr,
                          spikes_ptr, h_ptr, v_last_ptr, T, M,
                          LEAK_PER_NEURON: tl.constexpr, GAIN_PER_NEURON: tl.constexpr,
                          BIAS_PER_NEURON: tl.constexpr, HARD_RESET: tl.constexpr, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < M
    leak = load_coefficient(leak_ptr, params_ptr + _LEAK, offs, mask, LEAK_PER_NEURON)
    gain = load_coefficient(gain_ptr, params_ptr + _GAIN, offs, mask, GAIN_PER_NEURON)
    bias = load_coefficient(bias_ptr, params_ptr + _BIAS, offs, mask, BIAS_PER_NEURON)
    theta = tl.load(params_ptr + _THETA)
    v_reset = tl.load(params_ptr + _V_RESET)
    v = tl.load(v0_ptr + offs, mask=mask, other=0.0)
    x_ptrs = x_ptr + offs
    h_ptrs = h_ptr + offs
    s_ptrs = spikes_ptr + offs
    t = tl.full([], 0, tl.int32)
    while t < T:  # a while loop: Triton's CPU interpreter cannot take range() of a runtime bound
        x_t = tl.load(x_ptrs, mask=mask, other=0.0)
        h = leak * v + gain * x_t + bias
        fired = h >= theta
        tl.store(h_ptrs, h, mask=mask)
        # A NaN spike where H is NaN or -Inf, as the fused and numba engines (the reset keeps using `fired`)
        tl.store(s_ptrs, tl.where(h > -float("inf"), fired.to(spikes_ptr.dtype.element_ty), float("nan")), mask=mask)
        if HARD_RESET:
            v = tl.where(fired, v_reset, h)
        else:
            v = tl.where(fired, h - theta, h)
        x_ptrs += M
        h_ptrs += M
        s_ptrs += M
        t += 1
    tl.store(v_last_ptr + offs, v, mask=mask)


@triton.jit(do_not_specialize=["T"])
def _leaky_backward_kernel(h_ptr, x_ptr, v0_ptr, g_spikes_ptr, g_h_ptr, g_v_last_ptr, leak_ptr, gain_ptr,
                           params_ptr, g_x_ptr, g_v0_ptr, g_leak_ptr, g_gain_ptr, g_bias_ptr, T, M,
                           LEAK_PER_NEURON: tl.constexpr, GAIN_PER_NEURON: tl.constexpr,
                           HARD_RESET: tl.constexpr, DETACH_RESET: tl.constexpr, SURROGATE: tl.constexpr,
                           EXACT_EXP: tl.constexpr, HAS_G_SPIKES: tl.constexpr, HAS_G_H: tl.constexpr,
                           HAS_G_V_LAST: tl.constexpr, NEED_X: tl.constexpr, NEED_V0: tl.constexpr,
                           NEED_LEAK: tl.constexpr, NEED_GAIN: tl.constexpr, NEED_BIAS: tl.constexpr,
                           BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < M
    leak = load_coefficient(leak_ptr, params_ptr + _LEAK, offs, mask, LEAK_PER_NEURON)
    gain = load_coefficient(gain_ptr, params_ptr + _GAIN, offs, mask, GAIN_PER_NEURON)
    theta = tl.load(params_ptr + _THETA)
    v_reset = tl.load(params_ptr + _V_RESET)
    zero = tl.zeros([BLOCK], dtype=h_ptr.dtype.element_ty)
    if HAS_G_V_LAST:
        g_v = tl.load(g_v_last_ptr + offs, mask=mask, other=0.0)  # dL/dV[t], starting at t = T-1
    else:
        g_v = zero
    if NEED_LEAK:
        v0 = tl.load(v0_ptr + offs, mask=mask, other=0.0)
    acc_leak = zero
    acc_gain = zero
    acc_bias = zero
    row = (T - 1).to(tl.int64) * M  # element offset of step t (64-bit: T*M may exceed 2**31)
    h = tl.load(h_ptr + row + offs, mask=mask, other=0.0)
    t = T - 1
    while t >= 0:
        # H[t-1] (the next iteration's H), and V[t-1] recomputed from it (v0 at t = 0).
        h_prev = tl.load(h_ptr + (row - M) + offs, mask=mask & (t > 0), other=0.0)
        sg = surrogate_derivative(h - theta, params_ptr + _C0, SURROGATE, EXACT_EXP)
        fired = h >= theta
        if HARD_RESET:
            if DETACH_RESET:
                dv_dh = tl.where(fired, 0.0, 1.0)
            else:
                dv_dh = tl.where(fired, 0.0, 1.0) + (v_reset - h) * sg
        else:
            if DETACH_RESET:
                dv_dh = zero + 1.0
            else:
                dv_dh = 1.0 - theta * sg
        g = dv_dh * g_v
        if HAS_G_SPIKES:
            g += tl.load(g_spikes_ptr + row + offs, mask=mask, other=0.0) * sg
        if HAS_G_H:
            g += tl.load(g_h_ptr + row + offs, mask=mask, other=0.0)
        if NEED_LEAK:
            if HARD_RESET:
                v_prev = tl.where(h_prev >= theta, v_reset, h_prev)
            else:
                v_prev = tl.where(h_prev >= theta, h_prev - theta, h_prev)
            v_prev = tl.where(t > 0, v_prev, v0)
            acc_leak += g * v_prev
        if NEED_GAIN:
            acc_gain += g * tl.load(x_ptr + row + offs, mask=mask, other=0.0)
        if NEED_BIAS:
            acc_bias += g
        if NEED_X:
            tl.store(g_x_ptr + row + offs, g * gain, mask=mask)
        g_v = leak * g
        h = h_prev
        row -= M
        t -= 1
    if NEED_V0:
        tl.store(g_v0_ptr + offs, g_v, mask=mask)
    if NEED_LEAK:
        tl.store(g_leak_ptr + offs, acc_leak, mask=mask)
    if NEED_GAIN:
        tl.store(g_gain_ptr + offs, acc_gain, mask=mask)
    if NEED_BIAS:
        tl.store(g_bias_ptr + offs, acc_bias, mask=mask)


def _per_neuron(value, step_shape: torch.Size) -> Tensor | None:
    return per_neuron(value, step_shape) if isinstance(value, Tensor) else None


class LeakyTritonFunction(torch.autograd.Function):
    """``(x [T,*], v0 [*], leak, gain, bias) -> (spikes [T,*], H [T,*], V[T-1] [*])``, as
    :class:`dendrix.ops.lif.fused.LeakyFunction`, computed by one Triton kernel each way.

    ``x`` and ``v0`` must be float32/float64 on the same CUDA device (any device with ``TRITON_INTERPRET=1``);
    ``leak``, ``gain``, ``bias`` are floats or tensors broadcastable to ``[*]`` in the compute dtype.
    """

    @staticmethod
    def forward(ctx, x: Tensor, v0: Tensor, leak, gain, bias, v_threshold: float, v_reset: float | None,
                detach_reset: bool, surrogate: Surrogate):  # type: ignore[override]
        reason = unsupported_reason(x, v0, surrogate)
        if reason is not None:
            raise ValueError(f"Triton LIF backend: {reason}")
        theta = float(v_threshold)
        x_c = x.contiguous()
        v0_c = v0.contiguous()
        step_shape = v0.shape
        m = v0.numel()
        n_steps = x.shape[0]
        coefs = [_per_neuron(p, step_shape) for p in (leak, gain, bias)]
        # slots _THETA, _V_RESET, _LEAK, _GAIN, _BIAS, then the surrogate constants (_C0...)
        table = scalar_table([theta, 0.0 if v_reset is None else v_reset, leak, gain, bias], surrogate, x_c)
        spikes = torch.empty(x.shape, dtype=x.dtype, device=x.device)
        h = torch.empty(x.shape, dtype=x.dtype, device=x.device)
        v_last = torch.empty(step_shape, dtype=x.dtype, device=x.device)
        if m > 0:
            with device_guard(x_c):
                _leaky_forward_kernel[grid(m)](
                    x_c, v0_c, *(c if c is not None else table for c in coefs), table, spikes, h, v_last,
                    n_steps, m, LEAK_PER_NEURON=coefs[0] is not None, GAIN_PER_NEURON=coefs[1] is not None,
                    BIAS_PER_NEURON=coefs[2] is not None, HARD_RESET=v_reset is not None, BLOCK=BLOCK,
                    num_warps=NUM_WARPS)

        ctx.v_reset, ctx.detach_reset, ctx.surrogate = v_reset, detach_reset, surrogate
        ctx.shapes = tuple(p.shape if isinstance(p, Tensor) else None for p in (leak, gain, bias))
        ctx.per_neuron = tuple(c is not None for c in coefs[:2])
        need_leak = isinstance(leak, Tensor) and leak.requires_grad
        need_gain = isinstance(gain, Tensor) and gain.requires_grad
        # The scalar table (a few numbers, not an autograd input) rides on ctx; leak/gain tensors are saved in
        # their original (broadcast) shape.
        ctx.table = table
        ctx.save_for_backward(h, v0_c if need_leak else None, x_c if need_gain else None,
                              leak if isinstance(leak, Tensor) else None,
                              gain if isinstance(gain, Tensor) else None)
        ctx.set_materialize_grads(False)
        return spikes, h, v_last

    @staticmethod
    @once_differentiable
    def backward(ctx, g_spikes: Tensor | None, g_h: Tensor | None, g_v_last: Tensor | None):  # type: ignore[override]
        h, v0, x, leak_t, gain_t = ctx.saved_tensors
        table = ctx.table
        need_x, need_v0, need_leak, need_gain, need_bias = ctx.needs_input_grad[:5]
        step_shape = h.shape[1:]
        m = h[0].numel()
        n_steps = h.shape[0]
        leak_pn = _per_neuron(leak_t, step_shape) if ctx.per_neuron[0] else None
        gain_pn = _per_neuron(gain_t, step_shape) if ctx.per_neuron[1] else None
        # Autograd hands expanded (stride-0) gradients for sums; the kernel reads dense rows.
        g_spikes = None if g_spikes is None else g_spikes.to(h.dtype).contiguous()
        g_h = None if g_h is None else g_h.to(h.dtype).contiguous()
        g_v_last = None if g_v_last is None else g_v_last.to(h.dtype).contiguous()

        def new(shape, needed):
            return torch.empty(shape, dtype=h.dtype, device=h.device) if needed else None

        g_x = new(h.shape, need_x)
        g_v0 = new(step_shape, need_v0)
        acc = [new(step_shape, n) for n in (need_leak, need_gain, need_bias)]
        if m > 0:
            def ptr(t):
                return table if t is None else t  # any valid pointer; the kernel never reads it

            with device_guard(h):
                _leaky_backward_kernel[grid(m)](
                    h, ptr(x), ptr(v0), ptr(g_spikes), ptr(g_h), ptr(g_v_last), ptr(leak_pn), ptr(gain_pn),
                    table, ptr(g_x), ptr(g_v0), *(ptr(a) for a in acc), n_steps, m,
                    LEAK_PER_NEURON=leak_pn is not None, GAIN_PER_NEURON=gain_pn is not None,
                    HARD_RESET=ctx.v_reset is not None, DETACH_RESET=bool(ctx.detach_reset),
                    SURROGATE=surrogate_kind(ctx.surrogate),
                    EXACT_EXP=exact_exp_flag(h),
                    HAS_G_SPIKES=g_spikes is not None, HAS_G_H=g_h is not None,
                    HAS_G_V_LAST=g_v_last is not None, NEED_X=need_x, NEED_V0=need_v0, NEED_LEAK=need_leak,
                    NEED_GAIN=need_gain, NEED_BIAS=need_bias, BLOCK=BLOCK, num_warps=NUM_WARPS)
        else:
            for a in (g_x, g_v0, *acc):
                if a is not None:
                    a.zero_()
        leak_shape, gain_shape, bias_shape = ctx.shapes
        g_leak = reduce_to(acc[0], leak_shape) if need_leak else None
        g_gain = reduce_to(acc[1], gain_shape) if need_gain else None
        g_bias = reduce_to(acc[2], bias_shape) if need_bias else None
        return g_x, g_v0, g_leak, g_gain, g_bias, None, None, None, None
