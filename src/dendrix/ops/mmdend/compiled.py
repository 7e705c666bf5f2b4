"""MMDEND's chunked kernel as the custom ops ``dendrix::chunked_mmdend`` and ``dendrix::chunked_mmdend_grad``.

While ``torch.compile`` traces, :func:`~dendrix.ops.mmdend.chunked_mmdend` calls :func:`chunked_mmdend_op`: the
fused kernel writes into strided views with ``out=``, which Dynamo does not trace, and its plain autograd form
(``reference.py``) has a per-step soma loop that Dynamo unrolls. As a custom op the fused kernel runs exactly as
in eager mode. The :class:`~dendrix.ops.mmdend.fused.ChunkLayout` travels as its fields (sizes as a list of
ints, the clip range as floats); the op returns the soma potential with its initial row (``v_ext``, the wrapper
returns ``v_ext[1:]``) and the block-start compartment states, which the backward reads.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..custom_ops import EngineContext, define_op, unaliased
from .fused import ChunkLayout, _ChunkedMMDEND

__all__ = ["chunked_mmdend_op"]


def _layout(index: Tensor, sizes: list[int], disjoint: bool, activation: str, clip: list[float],
            traces: bool) -> ChunkLayout:
    batch, channels, window, branches, compartments, block, levels = sizes
    return ChunkLayout(batch, channels, window, branches, compartments, block, disjoint, index, activation,
                       (clip[0], clip[1]), levels, traces)


def _forward(x: Tensor, M: Tensor, M_tail: Tensor | None, beta: Tensor, w: Tensor, g_in: Tensor, gain: Tensor,
             offset: Tensor, vd0: Tensor, vs0: Tensor, index: Tensor, sizes: list[int], disjoint: bool,
             activation: str, clip: list[float], traces: bool
             ) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    ctx = EngineContext()
    lay = _layout(index, sizes, disjoint, activation, clip, traces)
    spikes, _, f_all, vdT, vsT = _ChunkedMMDEND.forward(ctx, x, M, M_tail, beta, w, g_in, gain, offset, vd0, vs0,
                                                        lay)
    v_ext, starts = ctx.saved_tensors[6], ctx.saved_tensors[8]
    return unaliased((spikes, v_ext, f_all, vdT, vsT, starts),
                     (x, M, M_tail, beta, w, g_in, gain, offset, vd0, vs0, index))


def _forward_fake(x, M, M_tail, beta, w, g_in, gain, offset, vd0, vs0, index, sizes, disjoint, activation, clip,
                  traces):
    T, N = x.shape
    batch, _, window, branches, compartments, block, _ = sizes
    rows, n_blocks = (T if traces else block), -(-T // block)
    f_all = x.new_empty(branches, rows, batch * window)
    starts = x.new_empty(n_blocks, branches, compartments, batch * window)
    return torch.empty_like(x), x.new_empty(rows + 1, N), f_all, torch.empty_like(vd0), torch.empty_like(vs0), starts


def _grad(g_spikes: Tensor, g_vdT: Tensor, g_vsT: Tensor, x: Tensor, M: Tensor, M_tail: Tensor | None,
          beta: Tensor, w: Tensor, g_in: Tensor, gain: Tensor, offset: Tensor, v_ext: Tensor, f_all: Tensor,
          starts: Tensor, index: Tensor, sizes: list[int], disjoint: bool, activation: str, clip: list[float]
          ) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    """``(dL/dx, dL/dM, dL/dM_tail (empty without a tail), dL/dbeta, dL/dw, dL/dg_in, dL/dgain, dL/doffset,
    dL/dvd0, dL/dvs0)``. Rebuilds the ``ctx`` that ``_ChunkedMMDEND.forward`` fills."""
    lay = _layout(index, sizes, disjoint, activation, clip, True)
    T, L = x.shape[0], lay.block
    n_full, tail = divmod(T, L)
    ctx = EngineContext((), (x, M, M_tail if M_tail is not None else M.new_empty(0), w, gain, offset, v_ext, f_all,
                             starts))
    ctx.lay, ctx.beta, ctx.g_in, ctx.traces = lay, float(beta), float(g_in), True
    ctx.blocks = [(b * L, L) for b in range(n_full)] + ([(n_full * L, tail)] if tail else [])
    ctx.has_tail = M_tail is not None
    grads = list(_ChunkedMMDEND.backward(ctx, g_spikes, None, None, g_vdT, g_vsT)[:10])
    if grads[2] is None:
        grads[2] = M.new_empty(0)
    return unaliased(grads, (g_spikes, g_vdT, g_vsT, x, M, M_tail, beta, w, g_in, gain, offset, v_ext, f_all,
                             starts, index))


def _grad_fake(g_spikes, g_vdT, g_vsT, x, M, M_tail, beta, w, g_in, gain, offset, v_ext, f_all, starts, index,
               sizes, disjoint, activation, clip):
    tail = torch.empty_like(M_tail) if M_tail is not None else M.new_empty(0)
    return (torch.empty_like(x), torch.empty_like(M), tail, x.new_empty(()), torch.empty_like(w), x.new_empty(()),
            x.new_empty(()), x.new_empty(()), torch.empty_like(starts[0]), x.new_empty(x.shape[1]))


_chunked_grad = define_op("chunked_mmdend_grad", _grad, fake=_grad_fake)


def _setup_context(ctx, inputs, output) -> None:
    x, M, M_tail, beta, w, g_in, gain, offset, vd0, vs0, index, sizes, disjoint, activation, clip, traces = inputs
    _, v_ext, f_all, _, _, starts = output
    ctx.save_for_backward(x, M, M_tail, beta, w, g_in, gain, offset, v_ext, f_all, starts, index)
    ctx.args, ctx.traces = (sizes, disjoint, activation, clip), traces
    ctx.shapes = tuple(t.shape for t in (beta, g_in, gain, offset, vs0))


def _backward(ctx, g_spikes, g_vext, g_f, g_vdT, g_vsT, g_starts):
    # v_ext and f are not differentiable (chunked_mmdend_op detaches them, as the eager kernel marks them), and
    # the block starts exist only for the backward: their gradients are ignored.
    if not ctx.traces:
        raise RuntimeError("MMDEND's chunked kernel ran without traces (grad mode was off); it has no backward")
    grads = _chunked_grad(g_spikes, g_vdT, g_vsT, *ctx.saved_tensors, *ctx.args)
    beta_s, g_in_s, gain_s, offset_s, vs0_s = ctx.shapes
    g_x, g_M, g_tail, g_beta, g_w, g_gin, g_gain, g_off, g_vd0, g_vs0 = grads
    needs = ctx.needs_input_grad
    out = [g_x, g_M, g_tail if ctx.saved_tensors[2] is not None else None, g_beta.reshape(beta_s), g_w,
           g_gin.reshape(g_in_s), g_gain.reshape(gain_s), g_off.reshape(offset_s), g_vd0, g_vs0.reshape(vs0_s)]
    return (*(g if need else None for g, need in zip(out, needs)),) + (None,) * 6


_chunked_mmdend = define_op("chunked_mmdend", _forward, fake=_forward_fake, backward=_backward,
                            setup_context=_setup_context)


def chunked_mmdend_op(x: Tensor, M: Tensor, M_tail: Tensor | None, beta: Tensor, w: Tensor, g_in: Tensor,
                      gain: Tensor, offset: Tensor, vd0: Tensor, vs0: Tensor, lay: ChunkLayout
                      ) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """The fused kernel's ``(spikes, v, f, vd_T, vs_T)`` through the custom op (what compiled code runs)."""
    sizes = [int(lay.batch), int(lay.channels), int(lay.window), int(lay.branches), int(lay.compartments),
             int(lay.block), int(lay.levels)]
    spikes, v_ext, f_all, vdT, vsT, _ = _chunked_mmdend(
        x, M, M_tail, beta, w, g_in, gain, offset, vd0, vs0, lay.index, sizes, bool(lay.disjoint), lay.activation,
        [float(lay.clip[0]), float(lay.clip[1])], bool(lay.traces))
    return spikes, v_ext[1:].detach(), f_all.detach(), vdT, vsT
