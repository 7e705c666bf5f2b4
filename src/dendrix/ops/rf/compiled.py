"""The fused RF/BRF engine as the custom ops ``dendrix::rf_sequence`` and ``dendrix::rf_sequence_grad``.

While ``torch.compile`` traces, :func:`~dendrix.ops.rf.rf_sequence` calls :func:`rf_sequence_op` instead of
:class:`~dendrix.ops.rf.fused.RFFunction` (traced, its time loops would be unrolled into the graph) for the calls
the neurons make (:func:`supports`): every tensor in ``x``'s dtype, the states shaped like one step. The op
returns BRF's refractory sequence ``q [T, *]`` beside the public outputs (empty for RF): the engine's backward
reads it, and a custom op carries saved tensors only as inputs or outputs.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ...surrogate import Surrogate
from ..custom_ops import EngineContext, define_op, optional_grad, surrogate_args, surrogate_from_args, unaliased
from .fused import RFFunction

__all__ = ["rf_sequence_op", "supports"]


def _forward(x: Tensor, omega: Tensor, b0: Tensor, u0: Tensor, v0: Tensor, q0: Tensor, dt: float, theta: float,
             balanced: bool, surrogate: str, surrogate_params: list[float]
             ) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    ctx = EngineContext()
    spikes, us, v_last, q_last = RFFunction.forward(ctx, x, omega, b0, u0, v0, q0, dt, theta, balanced,
                                                    surrogate_from_args(surrogate, surrogate_params))
    _, _, _, _, _, _, vs, *rest = ctx.saved_tensors
    qs = rest[0] if balanced else x.new_empty(0)
    return unaliased((spikes, us, v_last, q_last, vs, qs), (x, omega, b0, u0, v0, q0))


def _forward_fake(x, omega, b0, u0, v0, q0, dt, theta, balanced, surrogate, surrogate_params):
    return (torch.empty_like(x), torch.empty_like(x), torch.empty_like(v0), torch.empty_like(q0),
            torch.empty_like(x), torch.empty_like(x) if balanced else x.new_empty(0))


def _grad(g_spikes: Tensor, g_us: Tensor, g_v_last: Tensor, g_q_last: Tensor, omega: Tensor, b0: Tensor,
          u0: Tensor, v0: Tensor, q0: Tensor, us: Tensor, vs: Tensor, qs: Tensor, dt: float, theta: float,
          balanced: bool, surrogate: str, surrogate_params: list[float], needs: list[bool]
          ) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    """``(dL/dx, dL/domega, dL/db0, dL/du0, dL/dv0, dL/dq0)``; an empty tensor for each ``needs`` leaves out.

    Rebuilds the ``ctx`` that ``RFFunction.forward`` fills (same attributes, same saved tensors)."""
    ctx = EngineContext(needs, (omega, b0, u0, v0, q0, us, vs) + ((qs,) if balanced else ()))
    ctx.dt, ctx.theta, ctx.balanced = dt, theta, balanced
    ctx.surrogate = surrogate_from_args(surrogate, surrogate_params)
    ctx.shapes = (omega.shape, b0.shape, u0.shape, v0.shape, q0.shape)
    grads = RFFunction.backward(ctx, g_spikes, g_us, g_v_last, g_q_last)[:6]
    likes = (us, omega, b0, u0, v0, q0)
    grads = [optional_grad(g if need else None, like) for g, like, need in zip(grads, likes, needs)]
    return unaliased(grads, (g_spikes, g_us, g_v_last, g_q_last, omega, b0, u0, v0, q0, us, vs, qs))


def _grad_fake(g_spikes, g_us, g_v_last, g_q_last, omega, b0, u0, v0, q0, us, vs, qs, dt, theta, balanced,
               surrogate, surrogate_params, needs):
    return tuple(torch.empty_like(like) if need else like.new_empty(0)
                 for need, like in zip(needs, (us, omega, b0, u0, v0, q0)))


_rf_grad = define_op("rf_sequence_grad", _grad, fake=_grad_fake)


def _setup_context(ctx, inputs, output) -> None:
    x, omega, b0, u0, v0, q0, dt, theta, balanced, surrogate, surrogate_params = inputs
    _, us, _, _, vs, qs = output
    ctx.save_for_backward(omega, b0, u0, v0, q0, us, vs, qs)
    ctx.args = (dt, theta, balanced, surrogate, surrogate_params)


def _backward(ctx, g_spikes, g_us, g_v_last, g_q_last, g_vs, g_qs):
    # g_vs, g_qs: those sequences are returned only for the backward (rf_sequence_op drops them): zero.
    needs = [bool(n) for n in ctx.needs_input_grad[:6]]
    grads = _rf_grad(g_spikes, g_us, g_v_last, g_q_last, *ctx.saved_tensors, *ctx.args, needs)
    return (*(g if need else None for g, need in zip(grads, needs)),) + (None,) * 5


_rf_sequence = define_op("rf_sequence", _forward, fake=_forward_fake, backward=_backward,
                         setup_context=_setup_context)


def supports(x: Tensor, omega, b0, u0, v0, q0, surrogate: Surrogate) -> bool:
    """Whether the custom op runs this call: a built-in surrogate, every tensor in ``x``'s dtype, the states
    shaped like one step and ``omega``/``b0`` broadcasting to it (what the RF/BRF neurons pass). Other calls
    keep the traced engine, whose outputs follow torch's type promotion and broadcasting."""
    tensors = (omega, b0, u0, v0, q0)
    if surrogate_args(surrogate) is None or x.shape[0] == 0 or not all(isinstance(t, Tensor) for t in tensors):
        return False
    step = x.shape[1:]
    try:
        torch.broadcast_shapes(omega.shape, b0.shape, step)
    except RuntimeError:
        return False
    return (all(t.dtype == x.dtype for t in tensors) and all(t.shape == step for t in (u0, v0, q0))
            and all(t.dim() <= len(step) and torch.broadcast_shapes(t.shape, step) == step for t in (omega, b0)))


def rf_sequence_op(x: Tensor, omega: Tensor, b0: Tensor, u0: Tensor, v0: Tensor, q0: Tensor, dt: float,
                   theta: float, balanced: bool, surrogate: Surrogate) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """``RFFunction.apply`` with the same arguments, through the custom op (what compiled code runs)."""
    name, params = surrogate_args(surrogate)
    spikes, us, v_last, q_last, _, _ = _rf_sequence(x, omega, b0, u0, v0, q0, float(dt), float(theta),
                                                    bool(balanced), name, params)
    return spikes, us, v_last, q_last
