"""Plain, obviously-correct versions of the linear-dynamics operations (the yardstick for the fast paths).

Everything here runs a Python loop over time (or lags) with ordinary autograd; it is meant for tests and for
checking the fast paths, not for training long sequences.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..common import result_dtype

__all__ = ["sequential_recurrence", "direct_causal_conv", "direct_modal_kernel"]


def sequential_recurrence(a: Tensor, b: Tensor, h0: Tensor | None = None, *, time_varying: bool = False) -> Tensor:
    """``h[t] = a[t] * h[t-1] + b[t]`` step by step (``a`` constant over time unless ``time_varying``)."""
    dtype = result_dtype(a, b)
    h = torch.zeros(b.shape[1:], dtype=dtype, device=b.device) if h0 is None else h0.to(dtype)
    out = []
    for t in range(b.shape[0]):
        h = (a[t] if time_varying else a) * h + b[t]
        out.append(h)
    return torch.stack(out)


def direct_causal_conv(u: Tensor, kernel: Tensor) -> Tensor:
    """``y[t, ..., c] = sum_{l <= t} kernel[c, l] * u[t - l, ..., c]`` as a sum over lags (O(T·Tk))."""
    T, Tk = u.shape[0], kernel.shape[-1]
    k = kernel.movedim(-1, 0)  # [Tk, *C], broadcasts against u's trailing dims
    y = u * k[0]
    pad_time = [0, 0] * (u.dim() - 1)
    for lag in range(1, min(T, Tk)):
        y = y + torch.nn.functional.pad(u[: T - lag] * k[lag], pad_time + [lag, 0])
    return y


def direct_modal_kernel(lam: Tensor, dt: Tensor | float, T: int, b: Tensor | None = None,
                        c: Tensor | None = None) -> Tensor:
    """``K[..., l] = sum_modes c * B̄ * Abar**l`` with ``Abar = exp(dt*lam)``, by repeated multiplication."""
    dt = torch.as_tensor(dt, dtype=lam.real.dtype, device=lam.device)
    abar = torch.exp(dt * lam)
    bbar = (abar - 1) / lam
    if b is not None:
        bbar = bbar * b
    weight = bbar if c is None else c * bbar
    cols, power = [], torch.ones_like(abar)
    for _ in range(T):
        cols.append((weight * power).sum(-1))
        power = power * abar
    return torch.stack(cols, dim=-1)
