"""Triton GPU kernels for the DGN time recurrences: a whole sequence per launch, forward and backward.

Same equations, adjoints and saved tensors as ``fused.py`` (``reference.py`` has the plain per-step version)::

    D[t]  = λ·D[t-1] + z[t]                                     (synaptic trace)
    Dr[t] = λ·Dr[t-1] + S[t-1]                                  (recurrent variant)
    a[t]  = 1 − dt·(G[t] + C_rec·Dr[t]),   ρ[t] = φ(a[t])       (φ = clamp to [0, 1] or sigmoid)
    V[t]  = ρ[t]·V[t-1] + dt·(I[t] + W_rec·Dr[t]) − θ·S[t-1],   S[t] = Θ(V[t] − θ)

Why kernels: the fused engine issues several torch operators per time step, so on a GPU it is bound by kernel
launches (a 250-step recurrent layer costs thousands of them). Here the time loop runs inside the kernel:

* Synaptic trace: one launch forward, one backward (the same exponential filter run backwards in time); each
  program owns a block of elements and keeps the trace in registers.
* Feed-forward membrane: one launch forward, one backward; each program owns a block of neurons. The forward
  writes the gate argument a = 1 − dt·G (saved for backward, as in ``fused.py``), V and S; the backward runs the
  adjoint recurrence and writes dL/dG and dL/dI.
* Recurrent membrane: also one launch each way. The recurrent term couples all neurons of a batch row, so one
  program owns one batch row (all ``out`` neurons) and does the per-step mat-vec C_rec·Dr, W_rec·Dr itself, in
  column chunks read back from the Dr row it has just written (a block barrier orders the write and the
  reads). The backward does the transposed mat-vec C_recᵀ·dL/dG + W_recᵀ·dL/dI the same way, from the gradient
  rows it writes; dL/dW_rec and dL/dC_rec are then one torch matmul each over all steps. The weights are re-read
  from L2 every step (2·out² values per step and batch row), a cost that grows with out², so ``"auto"`` keeps
  the fused engine above ``dendrix.ops.dgn.AUTO_MAX_RECURRENT_FEATURES`` neurons (a limit set by this
  reasoning, not by a measurement).
* Inputs G and I may be row-strided views (the layer's ``unbind`` of its stacked [C; W] matmul): the kernels
  read them in place instead of copying them.
* Scalars (dt, θ, λ, the reset coefficient, surrogate constants) travel in a small tensor of the compute dtype:
  Triton passes Python floats as float32, which would round float64 runs. float64 ``exp`` (sigmoid gate,
  Sigmoid / DoubleGaussian surrogates) uses libdevice on the GPU.

Importing this module imports Triton; ``dendrix.ops.dgn`` imports it lazily, only when the Triton backend is
asked for or chosen by ``"auto"`` for a CUDA tensor.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch import Tensor
from torch.autograd.function import once_differentiable

from ...surrogate import Surrogate
from ..triton_common import (device_guard, exact_exp, interpreting, libdevice, surrogate_constants,
                             surrogate_derivative, surrogate_kind, surrogate_unsupported_reason)
from ..triton_recurrence import cached_table

__all__ = ["SynapticTraceTritonFunction", "DGNMembraneTritonFunction", "triton_exponential_filter",
           "unsupported_reason"]

_DTYPES = (torch.float32, torch.float64)
# Slots of the scalar table, then the surrogate constants (tl.constexpr: a Triton kernel may read a module
# global only if it is one).
_DT, _THETA, _DECAY, _RESET, _C0 = (tl.constexpr(i) for i in range(5))
_BLOCK = 128          # elements per program of the element-wise kernels (one per thread with 4 warps)
_NUM_WARPS = 4
_TILE = 4096          # elements of one weight tile [BLOCK_N, BLOCK_K] in the recurrent mat-vec


def unsupported_reason(tensors: dict[str, Tensor], surrogate: Surrogate | None = None) -> str | None:
    """Why the kernels cannot run with these tensors (None when they can). The first tensor sets the dtype and
    device; ``surrogate`` is checked when given (the trace kernels need none)."""
    if surrogate is not None and (reason := surrogate_unsupported_reason(surrogate)) is not None:
        return reason
    (first_name, first), *rest = [(n, t) for n, t in tensors.items() if t is not None]
    if first.dtype not in _DTYPES:
        return f"dtype {first.dtype} is not supported (float32 or float64)"
    if first.device.type != "cuda" and not interpreting():
        return f"tensors must be on a CUDA device, got {first.device} (TRITON_INTERPRET=1 runs CPU tensors)"
    for name, t in rest:
        if t.device != first.device:
            return f"{name} is on {t.device} but {first_name} is on {first.device}"
        if t.dtype != first.dtype:
            return f"{name} has dtype {t.dtype} but {first_name} has {first.dtype}"
    return None


# ---- helpers (host) ---------------------------------------------------------------------------------------------

def _rows(x: Tensor) -> tuple[Tensor, int, int]:
    """``x [T, *step]`` as ``(tensor, step stride, row stride)``, one step being rows of the last dimension:
    element (t, r, n) sits at t·step_stride + r·row_stride + n. A view that flattens that way without a copy
    (such as ``unbind`` of a stacked last dimension) is used in place; anything else is copied to a
    contiguous tensor."""
    n = x.shape[-1] if x.dim() >= 2 else 1
    if n > 0 and x.numel() > 0:
        try:
            view = x.view(x.shape[0], x[0].numel() // n, n)
        except RuntimeError:  # not expressible as strided rows: copy below
            view = None
        if view is not None and (view.stride(2) == 1 or n == 1):
            return x, view.stride(0), view.stride(1)
    x = x.contiguous()
    return x, x[0].numel(), n


def _exact_exp(t: Tensor) -> bool:
    return t.dtype == torch.float64 and t.device.type == "cuda" and libdevice is not None


def _dense(g: Tensor | None, like: Tensor) -> Tensor | None:
    """An incoming gradient as a dense tensor of the compute dtype (autograd may hand expanded ones)."""
    return None if g is None else g.to(like.dtype).contiguous()


# ---- kernels ----------------------------------------------------------------------------------------------------

@triton.jit
def _gate(a, SIGMOID: tl.constexpr, EXACT_EXP: tl.constexpr):
    """ρ = φ(a) and φ'(a) (clamp: 1 on the closed interval [0, 1], 0 outside, as torch.clamp)."""
    if SIGMOID:
        rho = 1.0 / (1.0 + exact_exp(-a, EXACT_EXP))
        slope = rho * (1.0 - rho)
    else:
        rho = tl.minimum(tl.maximum(a, 0.0), 1.0)
        slope = tl.where((a >= 0.0) & (a <= 1.0), 1.0, 0.0)
    return rho, slope


@triton.jit
def _membrane_adjoint_step(v, v_prev, g_spike, g_next, rho_next, at, mask, a_ptr, g_s_ptr, g_v_ptr, g_g_ptr,
                           g_i_ptr, dt, theta, params_ptr, SIGMOID: tl.constexpr, SURROGATE: tl.constexpr,
                           EXACT_EXP: tl.constexpr, HAS_G_S: tl.constexpr, HAS_G_V: tl.constexpr):
    """One reverse step of the gated membrane at element offsets ``at`` (shared by the feed-forward and the
    recurrent backward): g_V[t] = (g_spike + dL/dS[t])·σ'(V[t]−θ) + ρ[t+1]·g_V[t+1] + dL/dV[t]; stores
    dL/dG[t] = −dt·φ'(a)·V[t-1]·g_V[t] and dL/dI[t] = dt·g_V[t]; returns (g_V[t], ρ[t])."""
    slope = surrogate_derivative(v - theta, params_ptr + _C0, SURROGATE, EXACT_EXP)
    if HAS_G_S:
        g_spike += tl.load(g_s_ptr + at, mask=mask, other=0.0)
    g = g_spike * slope + rho_next * g_next
    if HAS_G_V:
        g += tl.load(g_v_ptr + at, mask=mask, other=0.0)
    rho, dphi = _gate(tl.load(a_ptr + at, mask=mask, other=0.0), SIGMOID, EXACT_EXP)
    tl.store(g_g_ptr + at, -dt * dphi * v_prev * g, mask=mask)
    tl.store(g_i_ptr + at, dt * g, mask=mask)
    return g, rho


@triton.jit(do_not_specialize=["T"])
def _trace_kernel(z_ptr, d0_ptr, params_ptr, out_ptr, g_d0_ptr, T, M, N, z_step, z_row,
                  REVERSE: tl.constexpr, HAS_D0: tl.constexpr, BLOCK: tl.constexpr):
    """Forward: out[t] = λ·out[t-1] + z[t] from d0. REVERSE (backward): out[t] = λ·out[t+1] + z[t] from 0, and
    the gradient of d0, λ·out[0]. ``out`` is dense [T, M]; ``z`` row-strided (see ``_rows``)."""
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < M
    r = offs // N
    z_offs = r.to(tl.int64) * z_row + (offs - r * N)
    decay = tl.load(params_ptr + _DECAY)
    if REVERSE:
        d = tl.zeros([BLOCK], dtype=out_ptr.dtype.element_ty)
        t = T - 1
        z_ptrs = z_ptr + (T - 1).to(tl.int64) * z_step + z_offs
        o_ptrs = out_ptr + (T - 1).to(tl.int64) * M + offs
        while t >= 0:
            d = decay * d + tl.load(z_ptrs, mask=mask, other=0.0)
            tl.store(o_ptrs, d, mask=mask)
            z_ptrs -= z_step
            o_ptrs -= M
            t -= 1
        tl.store(g_d0_ptr + offs, decay * d, mask=mask)
    else:
        if HAS_D0:
            d = tl.load(d0_ptr + offs, mask=mask, other=0.0)
        else:
            d = tl.zeros([BLOCK], dtype=out_ptr.dtype.element_ty)
        t = tl.full([], 0, tl.int32)
        z_ptrs = z_ptr + z_offs
        o_ptrs = out_ptr + offs
        while t < T:  # a while loop: Triton's CPU interpreter cannot take range() of a runtime bound
            d = decay * d + tl.load(z_ptrs, mask=mask, other=0.0)
            tl.store(o_ptrs, d, mask=mask)
            z_ptrs += z_step
            o_ptrs += M
            t += 1


@triton.jit(do_not_specialize=["T"])
def _ff_forward_kernel(g_ptr, i_ptr, v0_ptr, s0_ptr, params_ptr, a_ptr, v_ptr, s_ptr, T, M, N,
                       g_step, g_row, i_step, i_row, SIGMOID: tl.constexpr, EXACT_EXP: tl.constexpr,
                       BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < M
    r = offs // N
    n = offs - r * N
    dt = tl.load(params_ptr + _DT)
    theta = tl.load(params_ptr + _THETA)
    v = tl.load(v0_ptr + offs, mask=mask, other=0.0)
    s = tl.load(s0_ptr + offs, mask=mask, other=0.0)
    g_ptrs = g_ptr + r.to(tl.int64) * g_row + n
    i_ptrs = i_ptr + r.to(tl.int64) * i_row + n
    a_ptrs = a_ptr + offs
    v_ptrs = v_ptr + offs
    s_ptrs = s_ptr + offs
    t = tl.full([], 0, tl.int32)
    while t < T:
        a = 1.0 - dt * tl.load(g_ptrs, mask=mask, other=0.0)
        rho, _ = _gate(a, SIGMOID, EXACT_EXP)
        v = rho * v + dt * tl.load(i_ptrs, mask=mask, other=0.0) - theta * s
        s = (v >= theta).to(v_ptr.dtype.element_ty)
        tl.store(a_ptrs, a, mask=mask)
        tl.store(v_ptrs, v, mask=mask)
        tl.store(s_ptrs, tl.where(v > -float("inf"), s, float("nan")), mask=mask)  # NaN where V is NaN or -Inf
        g_ptrs += g_step
        i_ptrs += i_step
        a_ptrs += M
        v_ptrs += M
        s_ptrs += M
        t += 1


@triton.jit(do_not_specialize=["T"])
def _ff_backward_kernel(a_ptr, v_ptr, v0_ptr, g_s_ptr, g_v_ptr, params_ptr, g_g_ptr, g_i_ptr, g_v0_ptr, g_s0_ptr,
                        T, M, SIGMOID: tl.constexpr, SURROGATE: tl.constexpr, EXACT_EXP: tl.constexpr,
                        HAS_G_S: tl.constexpr, HAS_G_V: tl.constexpr, BLOCK: tl.constexpr):
    """Reverse time: g_V[t] = (dL/dS[t] + c·g_V[t+1])·σ'(V[t]−θ) + dL/dV[t] + ρ[t+1]·g_V[t+1]
    (c = −θ, or 0 with detach_reset); dL/dI = dt·g_V, dL/dG = −dt·φ'(a)·V[t-1]·g_V;
    dL/dV0 = ρ[0]·g_V[0], dL/dS0 = c·g_V[0]."""
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < M
    dt = tl.load(params_ptr + _DT)
    theta = tl.load(params_ptr + _THETA)
    reset = tl.load(params_ptr + _RESET)
    v0 = tl.load(v0_ptr + offs, mask=mask, other=0.0)
    g_next = tl.zeros([BLOCK], dtype=v_ptr.dtype.element_ty)
    rho_next = g_next
    row = (T - 1).to(tl.int64) * M
    t = T - 1
    v = tl.load(v_ptr + row + offs, mask=mask, other=0.0)
    while t >= 0:
        v_prev = tl.load(v_ptr + (row - M) + offs, mask=mask & (t > 0), other=0.0)
        v_prev = tl.where(t > 0, v_prev, v0)
        g, rho = _membrane_adjoint_step(v, v_prev, reset * g_next, g_next, rho_next, row + offs, mask, a_ptr,
                                        g_s_ptr, g_v_ptr, g_g_ptr, g_i_ptr, dt, theta, params_ptr, SIGMOID,
                                        SURROGATE, EXACT_EXP, HAS_G_S, HAS_G_V)
        g_next = g
        rho_next = rho
        v = v_prev
        row -= M
        t -= 1
    tl.store(g_v0_ptr + offs, rho_next * g_next, mask=mask)
    tl.store(g_s0_ptr + offs, reset * g_next, mask=mask)


@triton.jit
def _matvec_pair(m1_ptr, v1_ptr, m2_ptr, v2_ptr, offs_n, mask_n, N: tl.constexpr, BLOCK_N: tl.constexpr,
                 BLOCK_K: tl.constexpr, TRANSPOSED: tl.constexpr):
    """(M1·v1, M2·v2) for the neurons ``offs_n`` (M1ᵀ·v1, M2ᵀ·v2 when TRANSPOSED), both in one pass over column
    chunks of BLOCK_K so the two tile loads of a chunk are in flight together. The vectors are read from memory
    (this program has just written them; the caller puts a barrier in between)."""
    acc1 = tl.zeros([BLOCK_N], dtype=m1_ptr.dtype.element_ty)
    acc2 = tl.zeros([BLOCK_N], dtype=m1_ptr.dtype.element_ty)
    for k0 in range(0, N, BLOCK_K):
        offs_k = k0 + tl.arange(0, BLOCK_K)
        mask_k = offs_k < N
        vec1 = tl.load(v1_ptr + offs_k, mask=mask_k, other=0.0)
        vec2 = tl.load(v2_ptr + offs_k, mask=mask_k, other=0.0)
        if TRANSPOSED:
            offs = offs_k[:, None] * N + offs_n[None, :]
            mask = mask_k[:, None] & mask_n[None, :]
            acc1 += tl.sum(tl.load(m1_ptr + offs, mask=mask, other=0.0) * vec1[:, None], axis=0)
            acc2 += tl.sum(tl.load(m2_ptr + offs, mask=mask, other=0.0) * vec2[:, None], axis=0)
        else:
            offs = offs_n[:, None] * N + offs_k[None, :]
            mask = mask_n[:, None] & mask_k[None, :]
            acc1 += tl.sum(tl.load(m1_ptr + offs, mask=mask, other=0.0) * vec1[None, :], axis=1)
            acc2 += tl.sum(tl.load(m2_ptr + offs, mask=mask, other=0.0) * vec2[None, :], axis=1)
    return acc1, acc2


@triton.jit(do_not_specialize=["T"])
def _rec_forward_kernel(g_ptr, i_ptr, v0_ptr, s0_ptr, dr0_ptr, w_ptr, c_ptr, params_ptr, a_ptr, v_ptr, s_ptr,
                        dr_ptr, T, B, g_step, g_row, i_step, i_row, N: tl.constexpr, BLOCK_N: tl.constexpr,
                        BLOCK_K: tl.constexpr, SIGMOID: tl.constexpr, EXACT_EXP: tl.constexpr):
    """One program per batch row b, all N neurons; outputs dense [T, B, N]."""
    b = tl.program_id(0)
    offs_n = tl.arange(0, BLOCK_N)
    mask_n = offs_n < N
    dt = tl.load(params_ptr + _DT)
    theta = tl.load(params_ptr + _THETA)
    decay = tl.load(params_ptr + _DECAY)
    state = b * N + offs_n
    v = tl.load(v0_ptr + state, mask=mask_n, other=0.0)
    s = tl.load(s0_ptr + state, mask=mask_n, other=0.0)
    dr = tl.load(dr0_ptr + state, mask=mask_n, other=0.0)
    g_ptrs = g_ptr + b.to(tl.int64) * g_row + offs_n
    i_ptrs = i_ptr + b.to(tl.int64) * i_row + offs_n
    row = b.to(tl.int64) * N  # offset of (t, b, 0) in the dense outputs
    t = tl.full([], 0, tl.int32)
    while t < T:
        dr = decay * dr + s
        tl.store(dr_ptr + row + offs_n, dr, mask=mask_n)
        tl.debug_barrier()  # the mat-vec below reads the Dr row back in another thread layout
        rec_g, rec_i = _matvec_pair(c_ptr, dr_ptr + row, w_ptr, dr_ptr + row, offs_n, mask_n, N, BLOCK_N, BLOCK_K,
                                    False)
        a = 1.0 - dt * (tl.load(g_ptrs, mask=mask_n, other=0.0) + rec_g)
        rho, _ = _gate(a, SIGMOID, EXACT_EXP)
        v = rho * v + dt * (tl.load(i_ptrs, mask=mask_n, other=0.0) + rec_i) - theta * s
        s = (v >= theta).to(v_ptr.dtype.element_ty)
        tl.store(a_ptr + row + offs_n, a, mask=mask_n)
        tl.store(v_ptr + row + offs_n, v, mask=mask_n)
        tl.store(s_ptr + row + offs_n, tl.where(v > -float("inf"), s, float("nan")), mask=mask_n)  # V NaN/-Inf
        g_ptrs += g_step
        i_ptrs += i_step
        row += B * N
        t += 1


@triton.jit(do_not_specialize=["T"])
def _rec_backward_kernel(a_ptr, v_ptr, v0_ptr, g_s_ptr, g_v_ptr, g_dr_last_ptr, w_ptr, c_ptr, params_ptr,
                         g_g_ptr, g_i_ptr, g_v0_ptr, g_s0_ptr, g_dr0_ptr, T, B, N: tl.constexpr,
                         BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, SIGMOID: tl.constexpr,
                         SURROGATE: tl.constexpr, EXACT_EXP: tl.constexpr, HAS_G_S: tl.constexpr,
                         HAS_G_V: tl.constexpr, HAS_G_DR_LAST: tl.constexpr):
    """Reverse time, one program per batch row. With carry = dL/dS[t] received from step t+1:
    g_V[t] = (dL/dS[t] + carry)·σ' + dL/dV[t] + ρ[t+1]·g_V[t+1];  g_Dr[t] = λ·g_Dr[t+1] + C_recᵀ dL/dG[t] +
    W_recᵀ dL/dI[t] (+ dL/dDr[T-1] at the last step);  carry for step t-1 = g_Dr[t] + c·g_V[t]."""
    b = tl.program_id(0)
    offs_n = tl.arange(0, BLOCK_N)
    mask_n = offs_n < N
    dt = tl.load(params_ptr + _DT)
    theta = tl.load(params_ptr + _THETA)
    decay = tl.load(params_ptr + _DECAY)
    reset = tl.load(params_ptr + _RESET)
    state = b * N + offs_n
    v0 = tl.load(v0_ptr + state, mask=mask_n, other=0.0)
    zero = tl.zeros([BLOCK_N], dtype=v_ptr.dtype.element_ty)
    g_next = zero
    rho_next = zero
    carry = zero
    g_dr = zero
    if HAS_G_DR_LAST:
        extra = tl.load(g_dr_last_ptr + state, mask=mask_n, other=0.0)
    else:
        extra = zero
    step = B * N
    row = (T - 1).to(tl.int64) * step + b * N
    t = T - 1
    v = tl.load(v_ptr + row + offs_n, mask=mask_n, other=0.0)
    while t >= 0:
        v_prev = tl.load(v_ptr + (row - step) + offs_n, mask=mask_n & (t > 0), other=0.0)
        v_prev = tl.where(t > 0, v_prev, v0)
        g, rho = _membrane_adjoint_step(v, v_prev, carry, g_next, rho_next, row + offs_n, mask_n, a_ptr, g_s_ptr,
                                        g_v_ptr, g_g_ptr, g_i_ptr, dt, theta, params_ptr, SIGMOID, SURROGATE,
                                        EXACT_EXP, HAS_G_S, HAS_G_V)
        tl.debug_barrier()  # the transposed mat-vecs read those two rows back in another thread layout
        from_g, from_i = _matvec_pair(c_ptr, g_g_ptr + row, w_ptr, g_i_ptr + row, offs_n, mask_n, N, BLOCK_N,
                                      BLOCK_K, True)
        g_dr = decay * g_dr + extra + from_g + from_i
        extra = zero
        carry = g_dr + reset * g
        g_next = g
        rho_next = rho
        v = v_prev
        row -= step
        t -= 1
    tl.store(g_v0_ptr + state, rho_next * g_next, mask=mask_n)
    tl.store(g_s0_ptr + state, carry, mask=mask_n)
    tl.store(g_dr0_ptr + state, decay * g_dr, mask=mask_n)


# ---- autograd functions -----------------------------------------------------------------------------------------

def _elementwise_grid(m: int) -> tuple[int]:
    return (max(1, triton.cdiv(m, _BLOCK)),)


def _run_trace(z: Tensor, d0: Tensor | None, table: Tensor, reverse: bool):
    """Forward (d0 given or zeros) or reverse filter of ``z [T, *]``; returns (out, gradient of d0 or None)."""
    z_k, z_step, z_row = _rows(z)
    n_steps, m = z.shape[0], z[0].numel()
    n = z.shape[-1] if z.dim() >= 2 else 1
    out = torch.empty(z.shape, dtype=z.dtype, device=z.device)
    g_d0 = torch.empty(z.shape[1:], dtype=z.dtype, device=z.device) if reverse else None
    # A broadcast d0 is expanded to one full step; its gradient comes back full-size and autograd sums it.
    d0_k = d0.expand(z.shape[1:]).contiguous() if d0 is not None else None
    if m > 0:
        with device_guard(z):
            _trace_kernel[_elementwise_grid(m)](z_k, d0_k if d0_k is not None else table, table, out,
                                                g_d0 if g_d0 is not None else table, n_steps, m, n, z_step, z_row,
                                                REVERSE=reverse, HAS_D0=d0_k is not None, BLOCK=_BLOCK,
                                                num_warps=_NUM_WARPS)
    elif g_d0 is not None:
        g_d0.zero_()
    return out, g_d0


def triton_exponential_filter(z: Tensor, d0: Tensor | None, decay: float) -> Tensor:
    """D[t] = decay·D[t-1] + z[t] (from d0, zeros if None), not differentiated."""
    return _run_trace(z, d0, cached_table([1.0, 1.0, decay, 0.0], z), reverse=False)[0]


class SynapticTraceTritonFunction(torch.autograd.Function):
    """``(z [T,*], d0 [*], decay) -> D [T,*]``, as :class:`dendrix.ops.dgn.fused.SynapticTraceFunction`, with
    one Triton launch each way. Saves nothing."""

    @staticmethod
    def forward(ctx, z: Tensor, d0: Tensor, decay: float) -> Tensor:  # type: ignore[override]
        ctx.table = cached_table([1.0, 1.0, decay, 0.0], z)
        return _run_trace(z, d0, ctx.table, reverse=False)[0]

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out: Tensor):  # type: ignore[override]
        grad_z, grad_d0 = _run_trace(grad_out.to(ctx.table.dtype), None, ctx.table, reverse=True)
        return grad_z, grad_d0, None


def _recurrent_blocks(n: int) -> tuple[int, int, int]:
    """(BLOCK_N, BLOCK_K, warps) of the per-batch-row kernels: all neurons in one block, weight tiles of at most
    ``_TILE`` elements."""
    block_n = max(16, triton.next_power_of_2(n))
    block_k = max(1, min(block_n, _TILE // block_n))
    return block_n, block_k, (4 if block_n <= 256 else 8)


class DGNMembraneTritonFunction(torch.autograd.Function):
    """Same signature and outputs as :class:`dendrix.ops.dgn.fused.DGNMembraneFunction`, computed by one Triton
    kernel forward and one backward (plus one matmul per recurrent weight gradient)."""

    @staticmethod
    def forward(ctx, conductance: Tensor, current: Tensor, v0: Tensor, s0: Tensor,
                rec_weight: Tensor | None, rec_conductance: Tensor | None, rec_trace0: Tensor | None,
                dt: float, threshold: float, gate: str, surrogate: Surrogate, detach_reset: bool,
                rec_decay: float):  # type: ignore[override]
        ctx.set_materialize_grads(False)
        recurrent = rec_weight is not None
        reason = unsupported_reason({"conductance": conductance, "current": current, "v0": v0, "s0": s0,
                                     "recurrent_weight": rec_weight, "recurrent_conductance": rec_conductance,
                                     "rec_trace0": rec_trace0}, surrogate)
        if reason is not None:
            raise ValueError(f"Triton DGN backend: {reason}")
        table = cached_table([dt, threshold, rec_decay, 0.0 if detach_reset else -threshold,
                               *surrogate_constants(surrogate)], conductance)
        shape, dtype, device = conductance.shape, conductance.dtype, conductance.device
        n_steps, m = shape[0], conductance[0].numel()
        n = shape[-1] if conductance.dim() >= 2 else 1
        g_k, g_step, g_row = _rows(conductance)
        i_k, i_step, i_row = _rows(current)
        # Broadcast states are expanded to one full step; their gradients come back full-size (autograd sums them).
        step_shape = shape[1:]
        v0_k, s0_k = v0.expand(step_shape).contiguous(), s0.expand(step_shape).contiguous()
        a_seq = torch.empty(shape, dtype=dtype, device=device)
        v_seq = torch.empty(shape, dtype=dtype, device=device)
        s_seq = torch.empty(shape, dtype=dtype, device=device)
        sigmoid, exact = gate == "sigmoid", _exact_exp(conductance)
        if not recurrent:
            if m > 0:
                with device_guard(conductance):
                    _ff_forward_kernel[_elementwise_grid(m)](
                        g_k, i_k, v0_k, s0_k, table, a_seq, v_seq, s_seq, n_steps, m, n, g_step, g_row, i_step,
                        i_row, SIGMOID=sigmoid, EXACT_EXP=exact, BLOCK=_BLOCK, num_warps=_NUM_WARPS)
            ctx.save_for_backward(a_seq, v_seq, v0_k)
            out = (s_seq, v_seq)
        else:
            batch = shape[1]
            w_k, c_k = rec_weight.contiguous(), rec_conductance.contiguous()
            dr0_k = rec_trace0.expand(step_shape).contiguous()
            dr_seq = torch.empty(shape, dtype=dtype, device=device)
            block_n, block_k, warps = _recurrent_blocks(n)
            if m > 0:
                with device_guard(conductance):
                    _rec_forward_kernel[(batch,)](
                        g_k, i_k, v0_k, s0_k, dr0_k, w_k, c_k, table, a_seq, v_seq, s_seq, dr_seq, n_steps, batch,
                        g_step, g_row, i_step, i_row, N=n, BLOCK_N=block_n, BLOCK_K=block_k, SIGMOID=sigmoid,
                        EXACT_EXP=exact, num_warps=warps)
            ctx.save_for_backward(a_seq, v_seq, v0_k, dr_seq, w_k, c_k)
            out = (s_seq, v_seq, dr_seq[-1].clone())
        ctx.table, ctx.recurrent, ctx.sigmoid = table, recurrent, sigmoid
        ctx.surrogate_kind = surrogate_kind(surrogate)
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_s: Tensor | None, grad_v: Tensor | None,
                 grad_rec_last: Tensor | None = None):  # type: ignore[override]
        table = ctx.table
        if ctx.recurrent:
            a_seq, v_seq, v0, dr_seq, w, c = ctx.saved_tensors
        else:
            a_seq, v_seq, v0 = ctx.saved_tensors
        grad_s, grad_v, grad_rec_last = (_dense(g, v_seq) for g in (grad_s, grad_v, grad_rec_last))
        shape, n_steps, m = v_seq.shape, v_seq.shape[0], v0.numel()
        grad_g = torch.empty_like(v_seq)
        grad_i = torch.empty_like(v_seq)
        grad_v0 = torch.empty_like(v0)
        grad_s0 = torch.empty_like(v0)
        exact = _exact_exp(v_seq)
        flags = dict(SIGMOID=ctx.sigmoid, SURROGATE=ctx.surrogate_kind, EXACT_EXP=exact,
                     HAS_G_S=grad_s is not None, HAS_G_V=grad_v is not None)

        def ptr(t):
            return table if t is None else t  # any valid pointer; the kernel never reads it

        if not ctx.recurrent:
            if m > 0:
                with device_guard(v_seq):
                    _ff_backward_kernel[_elementwise_grid(m)](
                        a_seq, v_seq, v0, ptr(grad_s), ptr(grad_v), table, grad_g, grad_i, grad_v0, grad_s0,
                        n_steps, m, **flags, BLOCK=_BLOCK, num_warps=_NUM_WARPS)
            else:
                for t in (grad_g, grad_i, grad_v0, grad_s0):
                    t.zero_()
            return grad_g, grad_i, grad_v0, grad_s0, None, None, None, None, None, None, None, None, None

        batch, n = shape[1], shape[-1]
        grad_dr0 = torch.empty_like(v0)
        block_n, block_k, warps = _recurrent_blocks(n)
        if m > 0:
            with device_guard(v_seq):
                _rec_backward_kernel[(batch,)](
                    a_seq, v_seq, v0, ptr(grad_s), ptr(grad_v), ptr(grad_rec_last), w, c, table, grad_g, grad_i,
                    grad_v0, grad_s0, grad_dr0, n_steps, batch, N=n, BLOCK_N=block_n, BLOCK_K=block_k,
                    HAS_G_DR_LAST=grad_rec_last is not None, **flags, num_warps=warps)
        else:
            for t in (grad_g, grad_i, grad_v0, grad_s0, grad_dr0):
                t.zero_()
        need_w, need_c = ctx.needs_input_grad[4], ctx.needs_input_grad[5]
        dr_rows = dr_seq.reshape(-1, n)
        grad_w = grad_i.reshape(-1, n).t() @ dr_rows if need_w else None
        grad_c = grad_g.reshape(-1, n).t() @ dr_rows if need_c else None
        return (grad_g, grad_i, grad_v0, grad_s0, grad_w, grad_c, grad_dr0,
                None, None, None, None, None, None)
