"""Plain, obviously-correct bilinear current: a dense K [out, n, n] and ``sᵀ K_o s`` by einsum.

Memory O(out·n²): for tests and small layers only. It accepts real-valued ``s`` (the quadratic form is defined
for any ``s``), and autograd gives the gradients.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .layout import PairLayout

__all__ = ["dense_matrix", "bilinear_reference", "dlif_current_reference"]


def dense_matrix(values: Tensor, layout: PairLayout) -> Tensor:
    """The dense symmetric zero-diagonal K ``[out, n, n]`` (differentiable in ``values``)."""
    n, out = layout.in_features, layout.out_features
    o, i, j = layout.entries()
    o, i, j = o.to(values.device), i.to(values.device), j.to(values.device)
    flat = values.new_zeros(out * n * n)
    flat = flat.index_add(0, o * n * n + i * n + j, values)
    flat = flat.index_add(0, o * n * n + j * n + i, values)
    return flat.view(out, n, n)


def bilinear_reference(s: Tensor, values: Tensor, layout: PairLayout) -> Tensor:
    """``sᵀ K_o s`` for every row of ``s`` ``[R, n]`` and output o: ``[R, out]``."""
    K = dense_matrix(values, layout).to(s.dtype)
    return torch.einsum("ri,oij,rj->ro", s, K, s)


def dlif_current_reference(s: Tensor, weight: Tensor, bias: Tensor | None, values: Tensor, layout: PairLayout) -> Tensor:
    """``I = W s + b + sᵀ K s`` computed naïvely, ``s`` of shape ``[..., n]``."""
    lead = s.shape[:-1]
    flat = s.reshape(-1, s.shape[-1])
    cur = flat @ weight.t() + bilinear_reference(flat, values, layout)
    if bias is not None:
        cur = cur + bias
    return cur.reshape(*lead, weight.shape[0])
