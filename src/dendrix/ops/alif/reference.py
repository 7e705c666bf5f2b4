"""Plain per-step reference of the adaptive LIF recurrence (Yin et al. 2021), autograd through every step.

    a[t] = rho a[t-1] + (1 - rho) S[t-1]                 (adaptation trace)
    B[t] = b0 + beta a[t]                                (adaptive threshold)
    U[t] = alpha U[t-1] + (1 - alpha) X[t] - B[t] S[t-1] (membrane; reset by the previous spike)
    S[t] = Θ(U[t] - B[t])
"""

from __future__ import annotations

import torch
from torch import Tensor

from ...surrogate import Surrogate

__all__ = ["alif_sequence_reference"]


def alif_sequence_reference(x: Tensor, u0: Tensor, a0: Tensor, s0: Tensor, alpha, rho, b0: float, beta: float,
                            surrogate: Surrogate) -> tuple[Tensor, Tensor, Tensor]:
    """ALIF written literally as a per-step loop differentiated by autograd: the yardstick of the fused and Triton
    engines. Returns ``(spikes [T,*], membrane [T,*], (u, a, s) after the last step)`` as ``alif_sequence``."""
    u, a, s = u0, a0, s0
    spikes, potentials = [], []
    for x_t in x.unbind(0):  # unbind: one backward node for all steps (x[t] would cost a full-size gradient each)
        a = rho * a + (1 - rho) * s
        threshold = b0 + beta * a
        u = alpha * u + (1 - alpha) * x_t - threshold * s
        s = surrogate(u - threshold)
        spikes.append(s)
        potentials.append(u)
    return torch.stack(spikes), torch.stack(potentials), a
