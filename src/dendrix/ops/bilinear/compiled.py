"""The sparse bilinear form as the custom ops ``dendrix::sparse_bilinear`` / ``dendrix::sparse_bilinear_grad``
(cyclic-window masks) and ``dendrix::independent_bilinear`` / ``dendrix::independent_bilinear_grad``
(independent masks, the default).

Under ``torch.compile`` :func:`~dendrix.ops.bilinear.bilinear_form` calls these instead of
:class:`~dendrix.ops.bilinear.sparse.SparseBilinear`: Dynamo cannot trace the numba kernels, and every engine's
active-pair lists have data-dependent sizes. The ops run the same engines (``sparse.py``), so compiled and eager
results are equal. One difference: a custom op's output cannot carry the forward scan's active lists to the
backward, so the backward rescans the input spikes (one pass over ``s``; the eager path saves the lists).
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..custom_ops import define_op
from .independent import IndependentLayout, independent_backward, independent_forward
from .layout import PairLayout
from .sparse import check_binary, saved_lists, sparse_backward, sparse_forward

__all__ = ["sparse_bilinear"]


def _layout(start: Tensor, extra_pair: Tensor, in_features: int, m: int, out_features: int) -> PairLayout:
    return PairLayout(in_features, out_features, m, start, extra_pair)


def _forward(s: Tensor, values: Tensor, start: Tensor, extra_pair: Tensor, in_features: int, m: int,
             out_features: int, engine: str, check: bool) -> Tensor:
    layout = _layout(start, extra_pair, in_features, m, out_features)
    if layout.nnz == 0 or s.shape[0] == 0:
        if check:
            check_binary(s)
        return s.new_zeros(s.shape[0], out_features)
    return sparse_forward(s, values, layout, engine, check)[0].contiguous()  # the numba engine returns a view


def _forward_fake(s, values, start, extra_pair, in_features, m, out_features, engine, check):
    return s.new_empty(s.shape[0], out_features)


def _grad(grad: Tensor, s: Tensor, values: Tensor, start: Tensor, extra_pair: Tensor, in_features: int, m: int,
          out_features: int, engine: str, need_s: bool, need_values: bool) -> tuple[Tensor, Tensor]:
    """``(dL/ds, dL/dvalues)``; an empty tensor stands for a gradient that is not needed."""
    layout = _layout(start, extra_pair, in_features, m, out_features)
    if layout.nnz == 0 or s.shape[0] == 0:
        grad_s, grad_values = torch.zeros_like(s), torch.zeros_like(values)
    else:
        grad_s, grad_values = sparse_backward(grad.contiguous(), values, saved_lists(s, values, engine), layout,
                                              engine, s.dtype, values.dtype, need_s, need_values)
    return (grad_s if need_s else s.new_empty(0)), (grad_values if need_values else values.new_empty(0))


def _grad_fake(grad, s, values, start, extra_pair, in_features, m, out_features, engine, need_s, need_values):
    return (torch.empty_like(s) if need_s else s.new_empty(0)), \
        (torch.empty_like(values) if need_values else values.new_empty(0))


_sparse_bilinear_grad = define_op("sparse_bilinear_grad", _grad, fake=_grad_fake)


def _setup_context(ctx, inputs, output) -> None:
    s, values, start, extra_pair, in_features, m, out_features, engine, _ = inputs
    ctx.save_for_backward(s, values, start, extra_pair)
    ctx.sizes, ctx.engine = (in_features, m, out_features), engine


def _backward(ctx, grad: Tensor):
    s, values, start, extra_pair = ctx.saved_tensors
    need_s, need_values = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
    grad_s, grad_values = _sparse_bilinear_grad(grad, s, values, start, extra_pair, *ctx.sizes, ctx.engine,
                                                need_s, need_values)
    return (grad_s if need_s else None), (grad_values if need_values else None), None, None, None, None, None, \
        None, None


_sparse_bilinear = define_op("sparse_bilinear", _forward, fake=_forward_fake, backward=_backward,
                             setup_context=_setup_context)


# -- independent masks (CSR by pair: ptr, outputs) ----------------------------------------------------------
def _ilayout(ptr: Tensor, outputs: Tensor, in_features: int, out_features: int) -> IndependentLayout:
    return IndependentLayout(in_features, out_features, ptr, outputs)


def _iforward(s: Tensor, values: Tensor, ptr: Tensor, outputs: Tensor, in_features: int, out_features: int,
              engine: str, check: bool) -> Tensor:
    layout = _ilayout(ptr, outputs, in_features, out_features)
    if layout.nnz == 0 or s.shape[0] == 0:
        if check:
            check_binary(s)
        return s.new_zeros(s.shape[0], out_features)
    return independent_forward(s, values, layout, engine, check)[0].contiguous()


def _iforward_fake(s, values, ptr, outputs, in_features, out_features, engine, check):
    return s.new_empty(s.shape[0], out_features)


def _igrad(grad: Tensor, s: Tensor, values: Tensor, ptr: Tensor, outputs: Tensor, in_features: int,
           out_features: int, engine: str, need_s: bool, need_values: bool) -> tuple[Tensor, Tensor]:
    """``(dL/ds, dL/dvalues)``; an empty tensor stands for a gradient that is not needed."""
    layout = _ilayout(ptr, outputs, in_features, out_features)
    if layout.nnz == 0 or s.shape[0] == 0:
        grad_s, grad_values = torch.zeros_like(s), torch.zeros_like(values)
    else:
        saved = independent_forward(s, values, layout, engine, False)[1]  # the backward rescans s (see above)
        grad_s, grad_values = independent_backward(grad.contiguous(), values, saved, layout, engine, s.dtype,
                                                   values.dtype, need_s, need_values)
    return (grad_s if need_s else s.new_empty(0)), (grad_values if need_values else values.new_empty(0))


def _igrad_fake(grad, s, values, ptr, outputs, in_features, out_features, engine, need_s, need_values):
    return (torch.empty_like(s) if need_s else s.new_empty(0)), \
        (torch.empty_like(values) if need_values else values.new_empty(0))


_independent_bilinear_grad = define_op("independent_bilinear_grad", _igrad, fake=_igrad_fake)


def _isetup_context(ctx, inputs, output) -> None:
    s, values, ptr, outputs, in_features, out_features, engine, _ = inputs
    ctx.save_for_backward(s, values, ptr, outputs)
    ctx.sizes, ctx.engine = (in_features, out_features), engine


def _ibackward(ctx, grad: Tensor):
    s, values, ptr, outputs = ctx.saved_tensors
    need_s, need_values = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
    grad_s, grad_values = _independent_bilinear_grad(grad, s, values, ptr, outputs, *ctx.sizes, ctx.engine,
                                                     need_s, need_values)
    return (grad_s if need_s else None), (grad_values if need_values else None), None, None, None, None, None, None


_independent_bilinear = define_op("independent_bilinear", _iforward, fake=_iforward_fake, backward=_ibackward,
                                  setup_context=_isetup_context)


def sparse_bilinear(s: Tensor, values: Tensor, layout: PairLayout | IndependentLayout, engine: str,
                    check: bool) -> Tensor:
    """``y[r, o] = s_rᵀ K_o s_r`` through the custom op (what ``bilinear_form`` runs while compiling)."""
    if isinstance(layout, IndependentLayout):
        return _independent_bilinear(s, values, layout.ptr.to(values.device), layout.outputs.to(values.device),
                                     layout.in_features, layout.out_features, engine, bool(check))
    return _sparse_bilinear(s, values, layout.start.to(values.device), layout.extra_pair.to(values.device),
                            layout.in_features, layout.m, layout.out_features, engine, bool(check))
