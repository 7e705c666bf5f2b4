"""The fused LIF engine as the custom ops ``dendrix::leaky_sequence`` and ``dendrix::leaky_sequence_grad``.

While ``torch.compile`` traces, :func:`~dendrix.ops.lif.leaky_sequence` calls :func:`leaky_sequence_op` instead of
:class:`~dendrix.ops.lif.fused.LeakyFunction`: traced, Dynamo unrolls the engine's time loops into a graph that
grows with ``T`` (inductor took minutes for one layer); as a custom op the engine is one node forward and one
backward, and runs exactly as in eager mode. ``engine`` (``"auto"``, ``"numba"`` or ``"fused"``) is resolved inside
the op, when it runs (:func:`resolve_engine`): on CPU ``"auto"`` takes the numba engine where eager mode does, so
compiled and eager code run the same kernel (Dynamo cannot trace numba, but it never sees it here). Each
coefficient (``leak``, ``gain``, ``bias``) travels as an optional tensor beside a float (the float is used when
the tensor is None); the surrogate as its name and parameters.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ...surrogate import Surrogate
from ..common import as_python_scalar
from ..custom_ops import EngineContext, define_op, optional_grad, surrogate_args, surrogate_from_args, unaliased
from .fused import LeakyFunction

__all__ = ["leaky_sequence_op", "supports", "resolve_engine", "OP_ENGINES"]

#: The backends the op can run (``"auto"`` resolved as eager mode resolves it on this device).
OP_ENGINES = ("auto", "numba", "fused")


def resolve_engine(engine: str, x: Tensor, v0: Tensor, surrogate: Surrogate) -> str:
    """``"numba"`` or ``"fused"``: what the op runs for a requested ``engine`` (called while the op runs, never
    while Dynamo traces; a forced ``"numba"`` that cannot run raises the dispatcher's error)."""
    if engine == "fused" or x.device.type != "cpu":
        return "fused"
    from . import resolve_backend  # the dispatcher's numba check (lazy: the package imports this module)
    return resolve_backend(engine, x, v0, surrogate)


def _numba_function():
    from . import NUMBA_ENGINE
    return NUMBA_ENGINE.load().LeakyNumbaFunction


def _coefficient(tensor: Tensor | None, value: float):
    return tensor if tensor is not None else value


def _forward(x: Tensor, v0: Tensor, leak_t: Tensor | None, gain_t: Tensor | None, bias_t: Tensor | None,
             leak_f: float, gain_f: float, bias_f: float, v_threshold: float, v_reset: float | None,
             detach_reset: bool, surrogate: str, surrogate_params: list[float], engine: str
             ) -> tuple[Tensor, Tensor, Tensor]:
    sg = surrogate_from_args(surrogate, surrogate_params)
    function = _numba_function() if resolve_engine(engine, x, v0, sg) == "numba" else LeakyFunction
    outputs = function.forward(EngineContext(), x, v0, _coefficient(leak_t, leak_f), _coefficient(gain_t, gain_f),
                               _coefficient(bias_t, bias_f), v_threshold, v_reset, detach_reset, sg)
    return unaliased(outputs, (x, v0, leak_t, gain_t, bias_t))


def _forward_fake(x, v0, leak_t, gain_t, bias_t, leak_f, gain_f, bias_f, v_threshold, v_reset, detach_reset,
                  surrogate, surrogate_params, engine):
    return torch.empty_like(x), torch.empty_like(x), torch.empty_like(v0)


def _grad(g_spikes: Tensor | None, g_h: Tensor | None, g_vlast: Tensor | None, h: Tensor, v0: Tensor, x: Tensor,
          leak_t: Tensor | None, gain_t: Tensor | None, bias_t: Tensor | None, leak_f: float, gain_f: float,
          v_threshold: float, v_reset: float | None, detach_reset: bool, surrogate: str,
          surrogate_params: list[float], needs: list[bool], engine: str) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """``(dL/dx, dL/dv0, dL/dleak, dL/dgain, dL/dbias)``; an empty tensor for each that ``needs`` leaves out.

    Rebuilds the ``ctx`` that the forward of the engine :func:`resolve_engine` picks fills (same attributes,
    same saved tensors); the forward resolved the same engine from the same arguments."""
    leak, gain = _coefficient(leak_t, leak_f), _coefficient(gain_t, gain_f)
    leak_v, gain_v = as_python_scalar(leak), as_python_scalar(gain)
    sg = surrogate_from_args(surrogate, surrogate_params)
    shapes = tuple(None if p is None else p.shape for p in (leak_t, gain_t, bias_t))
    if resolve_engine(engine, x, v0, sg) == "numba":
        function = _numba_function()
        ctx = EngineContext(needs, (h, v0 if needs[2] else None, x if needs[3] else None))
        ctx.coefs, ctx.step_shape = (leak_v, gain_v), v0.shape
    else:
        function = LeakyFunction
        ctx = EngineContext(needs, (h, v0, x, None if isinstance(leak_v, float) else leak_v,
                                    None if isinstance(gain_v, float) else gain_v))
        ctx.floats = tuple(p if isinstance(p, float) else None for p in (leak_v, gain_v))
    ctx.theta, ctx.v_reset, ctx.detach_reset, ctx.surrogate, ctx.shapes = v_threshold, v_reset, detach_reset, sg, \
        shapes
    grads = function.backward(ctx, g_spikes, g_h, g_vlast)[:5]
    likes = (x, v0, leak_t, gain_t, bias_t)
    return unaliased([optional_grad(g, h if like is None else like) for g, like in zip(grads, likes)],
                     (g_spikes, g_h, g_vlast, h, v0, x, leak_t, gain_t, bias_t))


def _grad_fake(g_spikes, g_h, g_vlast, h, v0, x, leak_t, gain_t, bias_t, leak_f, gain_f, v_threshold, v_reset,
               detach_reset, surrogate, surrogate_params, needs, engine):
    likes = (x, v0, leak_t, gain_t, bias_t)
    return tuple(torch.empty_like(like) if need and like is not None else h.new_empty(0)
                 for need, like in zip(needs, likes))


_leaky_grad = define_op("leaky_sequence_grad", _grad, fake=_grad_fake)


def _setup_context(ctx, inputs, output) -> None:
    (x, v0, leak_t, gain_t, bias_t, leak_f, gain_f, _, v_threshold, v_reset, detach_reset, sg, sg_params,
     engine) = inputs
    ctx.save_for_backward(output[1], v0, x, leak_t, gain_t, bias_t)
    ctx.set_materialize_grads(False)   # an output the loss does not use gets None, not a zero tensor to read
    ctx.args = (leak_f, gain_f, v_threshold, v_reset, detach_reset, sg, sg_params)
    ctx.engine = engine


def _backward(ctx, g_spikes: Tensor, g_h: Tensor, g_vlast: Tensor):
    h, v0, x, leak_t, gain_t, bias_t = ctx.saved_tensors
    needs = [bool(n) for n in ctx.needs_input_grad[:5]]
    grads = _leaky_grad(g_spikes, g_h, g_vlast, h, v0, x, leak_t, gain_t, bias_t, *ctx.args, needs, ctx.engine)
    return (*(g if need else None for g, need in zip(grads, needs)),) + (None,) * 9


_leaky_sequence = define_op("leaky_sequence", _forward, fake=_forward_fake, backward=_backward,
                            setup_context=_setup_context)


def supports(surrogate: Surrogate) -> bool:
    """Whether the custom op can carry ``surrogate`` (a built-in class; a user's own keeps the traced engine)."""
    return surrogate_args(surrogate) is not None


def _split(value) -> tuple[Tensor | None, float]:
    return (value, 0.0) if isinstance(value, Tensor) else (None, float(value))


def leaky_sequence_op(x: Tensor, v0: Tensor, leak, gain, bias, v_threshold: float, v_reset: float | None,
                      detach_reset: bool, surrogate: Surrogate, engine: str = "fused"
                      ) -> tuple[Tensor, Tensor, Tensor]:
    """``LeakyFunction.apply`` (``engine="fused"``) or the engine :func:`resolve_engine` picks, with the same
    arguments, through the custom op (what compiled code runs)."""
    (leak_t, leak_f), (gain_t, gain_f), (bias_t, bias_f) = _split(leak), _split(gain), _split(bias)
    name, params = surrogate_args(surrogate)
    return _leaky_sequence(x, v0, leak_t, gain_t, bias_t, leak_f, gain_f, bias_f, float(v_threshold),
                           None if v_reset is None else float(v_reset), bool(detach_reset), name, params, engine)
