"""The fused ALIF engine as the custom ops ``dendrix::alif_sequence`` and ``dendrix::alif_sequence_grad``.

While ``torch.compile`` traces, :func:`~dendrix.ops.alif.alif_sequence` calls :func:`alif_sequence_op` instead of
:class:`~dendrix.ops.alif.fused.ALIFFunction` (traced, its time loops would be unrolled into the graph). The op
returns the adaptation sequence ``a [T, *]`` beside the three public outputs: the engine's backward reads it, and
a custom op carries saved tensors only as inputs or outputs.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ...surrogate import Surrogate
from ..custom_ops import EngineContext, define_op, optional_grad, surrogate_args, surrogate_from_args, unaliased
from .fused import ALIFFunction

__all__ = ["alif_sequence_op", "supports"]


def _forward(x: Tensor, u0: Tensor, a0: Tensor, s0: Tensor, alpha: Tensor, rho: Tensor, b0: float, beta: float,
             surrogate: str, surrogate_params: list[float]) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    ctx = EngineContext()
    spikes, u_seq, a_last = ALIFFunction.forward(ctx, x, u0, a0, s0, alpha, rho, b0, beta,
                                                 surrogate_from_args(surrogate, surrogate_params))
    a_seq = ctx.saved_tensors[2]
    return unaliased((spikes, u_seq, a_last, a_seq), (x, u0, a0, s0, alpha, rho))


def _forward_fake(x, u0, a0, s0, alpha, rho, b0, beta, surrogate, surrogate_params):
    return torch.empty_like(x), torch.empty_like(x), torch.empty_like(u0), torch.empty_like(x)


def _grad(g_spikes: Tensor, g_u: Tensor, g_alast: Tensor, x: Tensor, u_seq: Tensor, a_seq: Tensor, u0: Tensor,
          a0: Tensor, s0: Tensor, alpha: Tensor, rho: Tensor, b0: float, beta: float, surrogate: str,
          surrogate_params: list[float], needs: list[bool]) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    """``(dL/dx, dL/du0, dL/da0, dL/ds0, dL/dalpha, dL/drho)``; an empty tensor for each ``needs`` leaves out.

    Rebuilds the ``ctx`` that ``ALIFFunction.forward`` fills (same attributes, same saved tensors)."""
    ctx = EngineContext(needs, (x, u_seq, a_seq, u0, a0, s0, alpha, rho))
    ctx.b0, ctx.beta, ctx.surrogate = b0, beta, surrogate_from_args(surrogate, surrogate_params)
    grads = ALIFFunction.backward(ctx, g_spikes, g_u, g_alast)[:6]
    likes = (x, u0, a0, s0, alpha, rho)
    return unaliased([optional_grad(g, like) for g, like in zip(grads, likes)],
                     (g_spikes, g_u, g_alast, x, u_seq, a_seq, u0, a0, s0, alpha, rho))


def _grad_fake(g_spikes, g_u, g_alast, x, u_seq, a_seq, u0, a0, s0, alpha, rho, b0, beta, surrogate,
               surrogate_params, needs):
    return tuple(torch.empty_like(like) if need else like.new_empty(0)
                 for need, like in zip(needs, (x, u0, a0, s0, alpha, rho)))


_alif_grad = define_op("alif_sequence_grad", _grad, fake=_grad_fake)


def _setup_context(ctx, inputs, output) -> None:
    x, u0, a0, s0, alpha, rho, b0, beta, surrogate, surrogate_params = inputs
    ctx.save_for_backward(x, output[1], output[3], u0, a0, s0, alpha, rho)
    ctx.args = (b0, beta, surrogate, surrogate_params)


def _backward(ctx, g_spikes: Tensor, g_u: Tensor, g_alast: Tensor, g_aseq: Tensor):
    # g_aseq: the adaptation sequence is returned only for the backward (alif_sequence_op drops it), so its
    # gradient is zero.
    needs = [bool(n) for n in ctx.needs_input_grad[:6]]
    grads = _alif_grad(g_spikes, g_u, g_alast, *ctx.saved_tensors, *ctx.args, needs)
    return (*(g if need else None for g, need in zip(grads, needs)),) + (None,) * 4


_alif_sequence = define_op("alif_sequence", _forward, fake=_forward_fake, backward=_backward,
                           setup_context=_setup_context)


def supports(surrogate: Surrogate) -> bool:
    """Whether the custom op can carry ``surrogate`` (a built-in class; a user's own keeps the traced engine)."""
    return surrogate_args(surrogate) is not None


def alif_sequence_op(x: Tensor, u0: Tensor, a0: Tensor, s0: Tensor, alpha: Tensor, rho: Tensor, b0: float,
                     beta: float, surrogate: Surrogate) -> tuple[Tensor, Tensor, Tensor]:
    """``ALIFFunction.apply`` with the same arguments, through the custom op (what compiled code runs)."""
    name, params = surrogate_args(surrogate)
    spikes, u_seq, a_last, _ = _alif_sequence(x, u0, a0, s0, alpha, rho, float(b0), float(beta), name, params)
    return spikes, u_seq, a_last
