"""The sparse bilinear form as the custom ops ``dendrix::bilinear_form`` / ``dendrix::bilinear_form_grad``.

Under ``torch.compile`` :func:`~dendrix.ops.bilinear.bilinear_form` calls these instead of
:class:`~dendrix.ops.bilinear.autograd.BilinearForm`: Dynamo cannot trace the numba kernels, and every engine's
active-pair lists have data-dependent sizes. One op serves both mask layouts: a layout travels as two index
tensors, its sizes and its kind (:func:`pack_layout`), and the ops run the same engines
(``autograd.engine_functions``), so compiled and eager results are equal. One difference: a custom op's output
cannot carry the forward scan's active lists to the backward, so the backward rescans the input spikes (one pass
over ``s``; the eager path saves the lists).
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..custom_ops import define_op
from .autograd import engine_functions
from .independent import IndependentLayout
from .layout import PairLayout
from .sparse import check_binary, saved_lists

__all__ = ["sparse_bilinear", "pack_layout", "unpack_layout"]


def pack_layout(layout: PairLayout | IndependentLayout, device) -> tuple[Tensor, Tensor, list[int], str]:
    """``(index_a, index_b, sizes, kind)``: window layouts ``(start, extra_pair, [in, m, out], "cyclic")``,
    independent ones ``(ptr, outputs, [in, out], "independent")``."""
    if isinstance(layout, IndependentLayout):
        return (layout.ptr.to(device), layout.outputs.to(device), [layout.in_features, layout.out_features],
                "independent")
    return (layout.start.to(device), layout.extra_pair.to(device),
            [layout.in_features, layout.m, layout.out_features], "cyclic")


def unpack_layout(index_a: Tensor, index_b: Tensor, sizes: list[int], kind: str) -> PairLayout | IndependentLayout:
    """The layout that :func:`pack_layout` packed."""
    if kind == "independent":
        return IndependentLayout(sizes[0], sizes[1], index_a, index_b)
    return PairLayout(sizes[0], sizes[2], sizes[1], index_a, index_b)


def _forward(s: Tensor, values: Tensor, index_a: Tensor, index_b: Tensor, sizes: list[int], kind: str,
             engine: str, check: bool) -> Tensor:
    layout = unpack_layout(index_a, index_b, sizes, kind)
    if layout.nnz == 0 or s.shape[0] == 0:
        if check:
            check_binary(s)
        return s.new_zeros(s.shape[0], layout.out_features)
    forward, _ = engine_functions(layout)
    return forward(s, values, layout, engine, check)[0].contiguous()  # the numba window engine returns a view


def _forward_fake(s, values, index_a, index_b, sizes, kind, engine, check):
    return s.new_empty(s.shape[0], sizes[-1])


def _grad(grad: Tensor, s: Tensor, values: Tensor, index_a: Tensor, index_b: Tensor, sizes: list[int], kind: str,
          engine: str, need_s: bool, need_values: bool) -> tuple[Tensor, Tensor]:
    """``(dL/ds, dL/dvalues)``; an empty tensor stands for a gradient that is not needed."""
    layout = unpack_layout(index_a, index_b, sizes, kind)
    if layout.nnz == 0 or s.shape[0] == 0:
        grad_s, grad_values = torch.zeros_like(s), torch.zeros_like(values)
    else:
        _, backward = engine_functions(layout)
        grad_s, grad_values = backward(grad.contiguous(), values, saved_lists(s, values, engine), layout, engine,
                                       s.dtype, values.dtype, need_s, need_values)
    return (grad_s if need_s else s.new_empty(0)), (grad_values if need_values else values.new_empty(0))


def _grad_fake(grad, s, values, index_a, index_b, sizes, kind, engine, need_s, need_values):
    return (torch.empty_like(s) if need_s else s.new_empty(0)), \
        (torch.empty_like(values) if need_values else values.new_empty(0))


_bilinear_form_grad = define_op("bilinear_form_grad", _grad, fake=_grad_fake)


def _setup_context(ctx, inputs, output) -> None:
    s, values, index_a, index_b, sizes, kind, engine, _ = inputs
    ctx.save_for_backward(s, values, index_a, index_b)
    ctx.sizes, ctx.kind, ctx.engine = list(sizes), kind, engine


def _backward(ctx, grad: Tensor):
    s, values, index_a, index_b = ctx.saved_tensors
    need_s, need_values = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
    grad_s, grad_values = _bilinear_form_grad(grad, s, values, index_a, index_b, ctx.sizes, ctx.kind, ctx.engine,
                                              need_s, need_values)
    return (grad_s if need_s else None), (grad_values if need_values else None), None, None, None, None, None, None


_bilinear_form = define_op("bilinear_form", _forward, fake=_forward_fake, backward=_backward,
                           setup_context=_setup_context)


def sparse_bilinear(s: Tensor, values: Tensor, layout: PairLayout | IndependentLayout, engine: str,
                    check: bool) -> Tensor:
    """``y[r, o] = s_rᵀ K_o s_r`` through the custom op (what ``bilinear_form`` runs while compiling)."""
    index_a, index_b, sizes, kind = pack_layout(layout, values.device)
    return _bilinear_form(s, values, index_a, index_b, sizes, kind, engine, bool(check))
