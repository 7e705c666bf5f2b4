"""One autograd function for the sparse bilinear form on either mask layout (hand-written backward).

``BilinearForm.apply(s, values, layout, engine, check)``: ``y[r, o] = s_rᵀ K_o s_r = 2 Σ_{i<j} K_o,ij s_ri s_rj``
for binary ``s`` ``[R, n]``. The layout picks the engine pair: :class:`~.layout.PairLayout` (cyclic windows,
``sparse.py``: numba, torch, triton) or :class:`~.independent.IndependentLayout` (independent masks,
``independent.py``: numba, torch). Both pairs share one signature, ``forward(s, values, layout, engine, check)
-> (y, saved)`` and ``backward(grad, values, saved, layout, engine, s_dtype, v_dtype, need_s, need_values)``,
so the autograd shell here, and the custom op of ``compiled.py``, are written once.

Gradients: ``d/dvalues = 2 Σ_r g[r, o] s_ri s_rj``; ``d/ds_b = 2 Σ_a K_o,ab s_a g[r, o]`` (the derivative of
the quadratic form, exact at binary points). The values are saved only when the input needs a gradient.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from .independent import IndependentLayout, independent_backward, independent_forward
from .layout import PairLayout
from .sparse import sparse_backward, sparse_forward

__all__ = ["BilinearForm", "engine_functions"]


def engine_functions(layout: PairLayout | IndependentLayout):
    """``(forward, backward)`` of the engines for ``layout``'s storage."""
    if isinstance(layout, IndependentLayout):
        return independent_forward, independent_backward
    return sparse_forward, sparse_backward


class BilinearForm(torch.autograd.Function):
    """``sᵀ K_o s`` for binary ``s`` on a window or an independent layout (see the module docstring).

    Inputs: ``s``, ``values`` (all kept entries, layout order), the layout, the engine name, and whether to refuse
    non-binary ``s``. Under ``torch.compile`` the same engines run behind the custom op of ``compiled.py``.
    """

    @staticmethod
    def forward(ctx, s: Tensor, values: Tensor, layout, engine: str,  # type: ignore[override]
                check: bool = True) -> Tensor:
        forward, _ = engine_functions(layout)
        out, saved = forward(s, values, layout, engine, check)
        ctx.layout, ctx.engine, ctx.s_dtype, ctx.v_dtype = layout, engine, s.dtype, values.dtype
        ctx.save_for_backward(values if ctx.needs_input_grad[0] else None, *saved)
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        values, *saved = ctx.saved_tensors
        _, backward = engine_functions(ctx.layout)
        grad_s, grad_values = backward(grad, values, tuple(saved), ctx.layout, ctx.engine, ctx.s_dtype,
                                       ctx.v_dtype, ctx.needs_input_grad[0], ctx.needs_input_grad[1])
        return grad_s, grad_values, None, None, None
