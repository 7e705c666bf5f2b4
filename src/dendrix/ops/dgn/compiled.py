"""The fused DGN engines as custom ops: ``dendrix::synaptic_trace`` and ``dendrix::dgn_membrane`` (with their
``_grad`` ops).

While ``torch.compile`` traces, :func:`~dendrix.ops.dgn.synaptic_trace` and :func:`~dendrix.ops.dgn.dgn_membrane`
call these instead of :class:`~dendrix.ops.dgn.fused.SynapticTraceFunction` and
:class:`~dendrix.ops.dgn.fused.DGNMembraneFunction` (traced, their time loops would be unrolled into the graph).
The membrane op serves both variants: it returns the public outputs, then the tensors the engine's backward
reads that are neither inputs nor outputs (gate argument or ``pre``, recurrent traces, scaled recurrent
weights), with empty tensors where the feed-forward variant has none.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ...surrogate import Surrogate
from ..common import reduce_to
from ..custom_ops import EngineContext, define_op, optional_grad, surrogate_args, surrogate_from_args, unaliased
from .fused import DGNMembraneFunction, SynapticTraceFunction, exponential_filter

__all__ = ["synaptic_trace_op", "dgn_membrane_op", "supports"]


# --- synaptic trace -------------------------------------------------------------------------------------------

def _trace(z: Tensor, d0: Tensor, decay: float) -> Tensor:
    return exponential_filter(z, d0, decay)


def _trace_fake(z, d0, decay):
    return torch.empty_like(z)


def _trace_grad(grad: Tensor, decay: float) -> tuple[Tensor, Tensor]:
    ctx = EngineContext()
    ctx.decay = decay
    grad_z, grad_d0, _ = SynapticTraceFunction.backward(ctx, grad)
    return unaliased((grad_z, grad_d0), (grad,))


def _trace_grad_fake(grad, decay):
    return torch.empty_like(grad), torch.empty_like(grad[0])


_synaptic_trace_grad = define_op("synaptic_trace_grad", _trace_grad, fake=_trace_grad_fake)


def _trace_setup(ctx, inputs, output) -> None:
    ctx.decay, ctx.d0_shape = inputs[2], inputs[1].shape


def _trace_backward(ctx, grad: Tensor):
    grad_z, grad_d0 = _synaptic_trace_grad(grad, ctx.decay)
    return grad_z, reduce_to(grad_d0, ctx.d0_shape), None


_synaptic_trace = define_op("synaptic_trace", _trace, fake=_trace_fake, backward=_trace_backward,
                            setup_context=_trace_setup)


def synaptic_trace_op(z: Tensor, d0: Tensor, decay: float) -> Tensor:
    """``SynapticTraceFunction.apply`` (or the undifferentiated filter) through the custom op."""
    return _synaptic_trace(z, d0, float(decay))


# --- gated membrane -------------------------------------------------------------------------------------------

def _membrane(conductance: Tensor, current: Tensor, v0: Tensor, s0: Tensor, rec_weight: Tensor | None,
              rec_conductance: Tensor | None, rec_trace0: Tensor | None, dt: float, threshold: float, gate: str,
              surrogate: str, surrogate_params: list[float], detach_reset: bool, rec_decay: float
              ) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    ctx = EngineContext()
    out = DGNMembraneFunction.forward(ctx, conductance, current, v0, s0, rec_weight, rec_conductance, rec_trace0,
                                      dt, threshold, gate, surrogate_from_args(surrogate, surrogate_params),
                                      detach_reset, rec_decay)
    empty = conductance.new_empty(0)
    if rec_weight is None:
        spikes, v = out
        outputs = (spikes, v, empty, ctx.saved_tensors[0], empty, empty)          # a = 1 - dt G
    else:
        pre, _, _, dr_seq, scaled = ctx.saved_tensors
        outputs = (*out, pre, dr_seq, scaled)
    return unaliased(outputs, (conductance, current, v0, s0, rec_weight, rec_conductance, rec_trace0))


def _membrane_fake(conductance, current, v0, s0, rec_weight, rec_conductance, rec_trace0, dt, threshold, gate,
                   surrogate, surrogate_params, detach_reset, rec_decay):
    like = torch.empty_like(conductance)
    if rec_weight is None:
        return (like, torch.empty_like(conductance), conductance.new_empty(0), torch.empty_like(conductance),
                conductance.new_empty(0), conductance.new_empty(0))
    n_out = conductance.shape[-1]
    pre = conductance.new_empty(*conductance.shape[:-1], 2 * n_out)
    return (like, torch.empty_like(conductance), torch.empty_like(conductance[0]), pre,
            torch.empty_like(conductance), rec_weight.new_empty(2 * n_out, n_out))


def _membrane_grad(grad_s: Tensor, grad_v: Tensor, grad_rec_last: Tensor, gate_input: Tensor, v_seq: Tensor,
                   v0: Tensor, dr_seq: Tensor, scaled: Tensor, recurrent: bool, dt: float, threshold: float,
                   gate: str, surrogate: str, surrogate_params: list[float], detach_reset: bool, rec_decay: float
                   ) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    """``(dL/dG, dL/dI, dL/dv0, dL/ds0, dL/dW_rec, dL/dC_rec, dL/dDr0)`` over one step's shape for the states
    (the caller reduces them to broadcast initial states); empty for the recurrent ones without recurrence.

    Rebuilds the ``ctx`` that ``DGNMembraneFunction.forward`` fills (same attributes, same saved tensors)."""
    v0 = v0.expand(v_seq.shape[1:])
    saved = (gate_input, v_seq, v0, dr_seq, scaled) if recurrent else (gate_input, v_seq, v0)
    ctx = EngineContext((), saved)
    ctx.recurrent, ctx.dt, ctx.threshold, ctx.gate = recurrent, dt, threshold, gate
    ctx.surrogate = surrogate_from_args(surrogate, surrogate_params)
    ctx.detach_reset, ctx.rec_decay = detach_reset, rec_decay
    grads = DGNMembraneFunction.backward(ctx, grad_s, grad_v, grad_rec_last if recurrent else None)[:7]
    grads = [optional_grad(g, v_seq).contiguous() for g in grads]      # recurrent: views of two buffers
    return unaliased(grads, (grad_s, grad_v, grad_rec_last, gate_input, v_seq, v0, dr_seq, scaled))


def _membrane_grad_fake(grad_s, grad_v, grad_rec_last, gate_input, v_seq, v0, dr_seq, scaled, recurrent, dt,
                        threshold, gate, surrogate, surrogate_params, detach_reset, rec_decay):
    step = v_seq.new_empty(v_seq.shape[1:])
    state_grads = (torch.empty_like(v_seq), torch.empty_like(v_seq), step, torch.empty_like(step))
    if not recurrent:
        return (*state_grads, v_seq.new_empty(0), v_seq.new_empty(0), v_seq.new_empty(0))
    n_out = v_seq.shape[-1]
    return (*state_grads, scaled.new_empty(n_out, n_out), scaled.new_empty(n_out, n_out), torch.empty_like(step))


_dgn_membrane_grad = define_op("dgn_membrane_grad", _membrane_grad, fake=_membrane_grad_fake)


def _membrane_setup(ctx, inputs, output) -> None:
    (conductance, current, v0, s0, rec_weight, rec_conductance, rec_trace0, dt, threshold, gate, surrogate,
     surrogate_params, detach_reset, rec_decay) = inputs
    _, v_seq, _, gate_input, dr_seq, scaled = output
    ctx.save_for_backward(gate_input, v_seq, v0, dr_seq, scaled)
    ctx.recurrent = rec_weight is not None
    ctx.shapes = (v0.shape, s0.shape, None if rec_trace0 is None else rec_trace0.shape)
    ctx.args = (dt, threshold, gate, surrogate, surrogate_params, detach_reset, rec_decay)


def _membrane_backward(ctx, grad_s, grad_v, grad_rec_last, *grad_saved):
    # grad_saved: the extra outputs exist only for the backward (dgn_membrane_op drops them): zero gradients.
    g_g, g_i, g_v0, g_s0, g_w, g_c, g_dr0 = _dgn_membrane_grad(grad_s, grad_v, grad_rec_last, *ctx.saved_tensors,
                                                               ctx.recurrent, *ctx.args)
    v0_shape, s0_shape, dr0_shape = ctx.shapes
    needs = ctx.needs_input_grad
    grads = [g_g if needs[0] else None, g_i if needs[1] else None,
             reduce_to(g_v0, v0_shape) if needs[2] else None, reduce_to(g_s0, s0_shape) if needs[3] else None]
    if ctx.recurrent:
        grads += [g_w if needs[4] else None, g_c if needs[5] else None,
                  reduce_to(g_dr0, dr0_shape) if needs[6] else None]
    else:
        grads += [None, None, None]
    return (*grads,) + (None,) * 7


_dgn_membrane = define_op("dgn_membrane", _membrane, fake=_membrane_fake, backward=_membrane_backward,
                          setup_context=_membrane_setup)


def supports(surrogate: Surrogate) -> bool:
    """Whether the custom op can carry ``surrogate`` (a built-in class; a user's own keeps the traced engine)."""
    return surrogate_args(surrogate) is not None


def dgn_membrane_op(conductance: Tensor, current: Tensor, v0: Tensor, s0: Tensor, rec_weight: Tensor | None,
                    rec_conductance: Tensor | None, rec_trace0: Tensor | None, dt: float, threshold: float,
                    gate: str, surrogate: Surrogate, detach_reset: bool, rec_decay: float):
    """``DGNMembraneFunction.apply`` with the same arguments, through the custom op: ``(spikes, v)``, or
    ``(spikes, v, rec_trace_last)`` for the recurrent variant, as the function returns."""
    name, params = surrogate_args(surrogate)
    spikes, v, rec_last, *_ = _dgn_membrane(conductance, current, v0, s0, rec_weight, rec_conductance, rec_trace0,
                                            float(dt), float(threshold), gate, name, params, bool(detach_reset),
                                            float(rec_decay))
    return (spikes, v) if rec_weight is None else (spikes, v, rec_last)
