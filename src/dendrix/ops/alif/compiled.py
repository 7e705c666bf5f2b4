"""The fused ALIF engine as the custom ops ``dendrix::alif_sequence`` and ``dendrix::alif_sequence_grad``.

While ``torch.compile`` traces, :func:`~dendrix.ops.alif.alif_sequence` calls :func:`alif_sequence_op` instead of
:class:`~dendrix.ops.alif.fused.ALIFFunction` (traced, its time loops would be unrolled into the graph). The op
returns the adaptation sequence ``a [T, *]`` beside the three public outputs (under the numba engine: its
checkpoints in the first rows): the engine's backward reads it, and a custom op carries saved tensors only as
inputs or outputs.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ...surrogate import Surrogate
from ..custom_ops import EngineContext, define_op, optional_grad, surrogate_args, surrogate_from_args, unaliased
from .fused import ALIFFunction

__all__ = ["alif_sequence_op", "supports", "resolve_engine"]


def resolve_engine(engine: str, x: Tensor, u0: Tensor, surrogate: Surrogate) -> str:
    """``"numba"`` or ``"fused"``: what the op runs for a requested ``engine`` (``"auto"``, ``"numba"``,
    ``"fused"``), resolved while the op runs as eager mode resolves it (see ``ops/lif/compiled.py``)."""
    if engine == "fused" or x.device.type != "cpu":
        return "fused"
    from . import resolve_backend  # the dispatcher's numba check (lazy: the package imports this module)
    return resolve_backend(engine, x, u0, surrogate)


def _numba_function():
    from . import NUMBA_ENGINE
    return NUMBA_ENGINE.load().ALIFNumbaFunction


def _forward(x: Tensor, u0: Tensor, a0: Tensor, s0: Tensor, alpha: Tensor, rho: Tensor, b0: float, beta: float,
             surrogate: str, surrogate_params: list[float], engine: str) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    sg = surrogate_from_args(surrogate, surrogate_params)
    if resolve_engine(engine, x, u0, sg) == "numba":
        # the numba backward recomputes the adaptation from checkpoints kept every SEGMENT steps
        # ([ceil(T / SEGMENT), M], M = u0.numel()): the fourth output carries them in its first rows
        ctx = EngineContext((True,) * 6)
        spikes, u_seq, a_last = _numba_function().forward(ctx, x, u0, a0, s0, alpha, rho, b0, beta, sg)
        a_kept = ctx.saved_tensors[-1]
        a_seq = torch.zeros_like(x)
        a_seq.view(x.shape[0], -1)[:a_kept.shape[0]].copy_(a_kept)
    else:
        ctx = EngineContext()
        spikes, u_seq, a_last = ALIFFunction.forward(ctx, x, u0, a0, s0, alpha, rho, b0, beta, sg)
        a_seq = ctx.saved_tensors[2]
    return unaliased((spikes, u_seq, a_last, a_seq), (x, u0, a0, s0, alpha, rho))


def _forward_fake(x, u0, a0, s0, alpha, rho, b0, beta, surrogate, surrogate_params, engine):
    return torch.empty_like(x), torch.empty_like(x), torch.empty_like(u0), torch.empty_like(x)


def _grad(g_spikes: Tensor | None, g_u: Tensor | None, g_alast: Tensor | None, x: Tensor, u_seq: Tensor,
          a_seq: Tensor, u0: Tensor, a0: Tensor, s0: Tensor, alpha: Tensor, rho: Tensor, b0: float, beta: float, surrogate: str,
          surrogate_params: list[float], needs: list[bool], engine: str
          ) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    """``(dL/dx, dL/du0, dL/da0, dL/ds0, dL/dalpha, dL/drho)``; an empty tensor for each ``needs`` leaves out.

    Rebuilds the ``ctx`` that the forward of the engine :func:`resolve_engine` picks fills (same attributes, same
    saved tensors)."""
    sg = surrogate_from_args(surrogate, surrogate_params)
    if resolve_engine(engine, x, u0, sg) == "numba":
        function = _numba_function()
        from ..numba_common import SEGMENT, segments  # numba is optional: only where its engine runs
        a_kept = a_seq.reshape(x.shape[0], -1)[:segments(x.shape[0], SEGMENT)]
        ctx = EngineContext(needs, (x if needs[4] else None, u_seq, u0, a0, s0, alpha, rho, a_kept))
        ctx.segment = SEGMENT
    else:
        function = ALIFFunction
        ctx = EngineContext(needs, (x, u_seq, a_seq, u0, a0, s0, alpha, rho))
    ctx.b0, ctx.beta, ctx.surrogate = b0, beta, sg
    grads = function.backward(ctx, g_spikes, g_u, g_alast)[:6]
    likes = (x, u0, a0, s0, alpha, rho)
    return unaliased([optional_grad(g, like) for g, like in zip(grads, likes)],
                     (g_spikes, g_u, g_alast, x, u_seq, a_seq, u0, a0, s0, alpha, rho))


def _grad_fake(g_spikes, g_u, g_alast, x, u_seq, a_seq, u0, a0, s0, alpha, rho, b0, beta, surrogate,
               surrogate_params, needs, engine):
    return tuple(torch.empty_like(like) if need else like.new_empty(0)
                 for need, like in zip(needs, (x, u0, a0, s0, alpha, rho)))


_alif_grad = define_op("alif_sequence_grad", _grad, fake=_grad_fake)


def _setup_context(ctx, inputs, output) -> None:
    x, u0, a0, s0, alpha, rho, b0, beta, surrogate, surrogate_params, engine = inputs
    ctx.save_for_backward(x, output[1], output[3], u0, a0, s0, alpha, rho)
    ctx.set_materialize_grads(False)   # an output the loss does not use gets None, not a zero tensor to read
    ctx.args, ctx.engine = (b0, beta, surrogate, surrogate_params), engine


def _backward(ctx, g_spikes: Tensor, g_u: Tensor, g_alast: Tensor, g_aseq: Tensor):
    # g_aseq: the adaptation sequence is returned only for the backward (alif_sequence_op drops it), so its
    # gradient is zero.
    needs = [bool(n) for n in ctx.needs_input_grad[:6]]
    grads = _alif_grad(g_spikes, g_u, g_alast, *ctx.saved_tensors, *ctx.args, needs, ctx.engine)
    return (*(g if need else None for g, need in zip(grads, needs)),) + (None,) * 5


_alif_sequence = define_op("alif_sequence", _forward, fake=_forward_fake, backward=_backward,
                           setup_context=_setup_context)


def supports(surrogate: Surrogate) -> bool:
    """Whether the custom op can carry ``surrogate`` (a built-in class; a user's own keeps the traced engine)."""
    return surrogate_args(surrogate) is not None


def alif_sequence_op(x: Tensor, u0: Tensor, a0: Tensor, s0: Tensor, alpha: Tensor, rho: Tensor, b0: float,
                     beta: float, surrogate: Surrogate, engine: str = "fused") -> tuple[Tensor, Tensor, Tensor]:
    """``ALIFFunction.apply`` (``engine="fused"``) or the engine :func:`resolve_engine` picks, with the same
    arguments, through the custom op (what compiled code runs)."""
    name, params = surrogate_args(surrogate)
    spikes, u_seq, a_last, _ = _alif_sequence(x, u0, a0, s0, alpha, rho, float(b0), float(beta), name, params,
                                              engine)
    return spikes, u_seq, a_last
