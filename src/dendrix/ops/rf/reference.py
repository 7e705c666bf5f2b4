"""The RF / BRF step loop with plain autograd: the definition the fused path is checked against."""

from __future__ import annotations

import torch
from torch import Tensor

from ...surrogate import Surrogate

__all__ = ["rf_sequence_reference"]


def rf_sequence_reference(x: Tensor, omega: Tensor, b0: Tensor, u0: Tensor, v0: Tensor, q0: Tensor, *,
                          dt: float, theta: float, balanced: bool, surrogate: Surrogate):
    """Explicit-Euler resonate-and-fire over ``x [T, *]``; returns (spikes, u [T, *], v_last, q_last).

    RF:  u' = u + dt(b u - ω v + x), v' = v + dt(ω u + b v), b = b0, S = Θ(u' - θ).
    BRF: b = b0 - q, S = Θ(u' - θ - q), q' = 0.9 q + S (b0 = p(ω) - b_offset is computed by the caller).
    """
    u, v, q = u0, v0, q0
    spikes, us = [], []
    for t in range(x.shape[0]):
        b = b0 - q if balanced else b0
        u_next = u + dt * (b * u - omega * v + x[t])
        v = v + dt * (omega * u + b * v)
        u = u_next
        s = surrogate(u - theta - q) if balanced else surrogate(u - theta)
        if balanced:
            q = 0.9 * q + s
        spikes.append(s)
        us.append(u)
    return torch.stack(spikes), torch.stack(us), v, q
