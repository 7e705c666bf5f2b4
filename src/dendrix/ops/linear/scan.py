"""Parallel associative scan for ``h[t] = a[t] * h[t-1] + b[t]`` (real or complex, time-varying or not).

The pairs (a, b) compose associatively, (a1, b1) then (a2, b2) = (a2·a1, a2·b1 + b2), so the prefix
"sums" follow in ceil(log2 T) Hillis–Steele sweeps: after the sweep with offset d every h[t] holds the
contribution of the inputs b[t-2d+1 .. t], and a[t] the product of the matching decays. Each sweep is one
vectorised multiply-add over the whole sequence; no per-step Python work, no per-step autograd graph.

The gradient is itself a linear recurrence, run backwards in time with the conjugate decays
(PyTorch's convention for complex gradients), so backward uses the same scan. Only ``a``, ``h`` and ``h0``
are saved: memory is linear in T (autograd through the sweeps would keep log2 T copies).
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..common import result_dtype

__all__ = ["scan_recurrence", "loop_recurrence", "hillis_steele", "sequential_sweep"]


def hillis_steele(a: Tensor, b: Tensor, time_varying: bool) -> Tensor:
    """Inclusive scan of ``h[t] = a[t] h[t-1] + b[t]`` from h[-1] = 0, without autograd.

    ``a`` is ``[T, ...]`` if ``time_varying`` else broadcastable to ``b.shape[1:]``.
    """
    T = b.shape[0]
    h = b.to(result_dtype(a, b)).clone()
    decay = a.clone() if time_varying else a
    d = 1
    while d < T:
        if time_varying:
            h[d:] += decay[d:] * h[:-d]
            if 2 * d < T:
                decay[d:] = decay[d:] * decay[:-d]
        else:
            h[d:] += decay * h[:-d]
            decay = decay * decay
        d *= 2
    return h


def sequential_sweep(a: Tensor, b: Tensor, time_varying: bool) -> Tensor:
    """The same result as :func:`hillis_steele` by a plain loop over t (no autograd): O(T) work, T small steps.
    On a busy CPU a first-order recurrence is memory-bound and this loop can beat the O(T log T) sweeps."""
    h = b.to(result_dtype(a, b)).clone()
    for t in range(1, h.shape[0]):
        h[t] += (a[t] if time_varying else a) * h[t - 1]
    return h


def _sum_to(grad: Tensor, like: Tensor) -> Tensor:
    """Reduce a broadcast gradient to the shape (and real/complex kind) of ``like``."""
    if not like.is_complex() and grad.is_complex():
        grad = grad.real
    lead = grad.dim() - like.dim()
    if lead > 0:
        grad = grad.sum(dim=tuple(range(lead)))
    dims = tuple(i for i, n in enumerate(like.shape) if n == 1 and grad.shape[i] != 1)
    if dims:
        grad = grad.sum(dim=dims, keepdim=True)
    return grad.to(like.dtype)


class _ScanRecurrence(torch.autograd.Function):
    @staticmethod
    def forward(ctx, a: Tensor, b: Tensor, h0: Tensor | None, time_varying: bool, solver) -> Tensor:  # type: ignore[override]
        ctx.time_varying, ctx.solver = time_varying, solver
        ctx.b_dtype = b.dtype
        if h0 is not None:  # fold the initial state into the first input
            first = (a[0] if time_varying else a) * h0 + b[0]
            dtype = result_dtype(first, b)
            b = torch.cat([first.expand(b.shape[1:]).unsqueeze(0).to(dtype), b[1:].to(dtype)])
        h = solver(a, b, time_varying)
        ctx.h0_given = h0 is not None
        ctx.save_for_backward(a, h, h0 if h0 is not None else h.new_zeros(()))
        return h

    @staticmethod
    def backward(ctx, grad_h: Tensor):  # type: ignore[override]
        a, h, h0 = ctx.saved_tensors
        tv = ctx.time_varying
        a_conj = a.conj() if a.is_complex() else a
        # lam[t] = grad_h[t] + conj(a[t+1]) * lam[t+1], i.e. a forward scan over reversed time.
        if tv:
            a_rev = torch.flip(a_conj, [0])
            a_rev = torch.cat([torch.zeros_like(a_rev[:1]), a_rev[:-1]])
        else:
            a_rev = a_conj
        lam = torch.flip(ctx.solver(a_rev, torch.flip(grad_h, [0]), tv), [0])

        grad_a = grad_b = grad_h0 = None
        if ctx.needs_input_grad[0]:
            h_prev = torch.cat([(h0.expand_as(h[0]) if ctx.h0_given else torch.zeros_like(h[0])).unsqueeze(0).to(h.dtype),
                                h[:-1]])
            prod = lam * (h_prev.conj() if h_prev.is_complex() else h_prev)
            grad_a = _sum_to(prod if tv else prod.sum(0), a)
        if ctx.needs_input_grad[1]:
            grad_b = lam.real if lam.is_complex() and not ctx.b_dtype.is_complex else lam
            grad_b = grad_b.to(ctx.b_dtype)
        if ctx.needs_input_grad[2]:
            grad_h0 = _sum_to((a_conj[0] if tv else a_conj) * lam[0], h0)
        return grad_a, grad_b, grad_h0, None, None


def scan_recurrence(a: Tensor, b: Tensor, h0: Tensor | None = None, *, time_varying: bool = False) -> Tensor:
    """``h[t] = a[t] h[t-1] + b[t]`` by a parallel scan, differentiable in ``a``, ``b`` and ``h0``."""
    return _ScanRecurrence.apply(a, b, h0, time_varying, hillis_steele)


def loop_recurrence(a: Tensor, b: Tensor, h0: Tensor | None = None, *, time_varying: bool = False) -> Tensor:
    """The same recurrence as one autograd node around a plain loop (forward and the adjoint backward):
    no per-step graph, O(T) work, T sequential steps."""
    return _ScanRecurrence.apply(a, b, h0, time_varying, sequential_sweep)
