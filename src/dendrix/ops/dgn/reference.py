"""Plain per-step reference of the DGN dynamics (autograd through every step; obviously correct, slow).

Used by tests to check the fused whole-sequence kernels in ``fused.py``, and by ``backend="reference"``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ...surrogate import SurrogateLike, get_surrogate

__all__ = ["GATES", "apply_gate", "gate_derivative", "synaptic_trace_reference", "dgn_membrane_reference"]

GATES = ("clamp", "sigmoid")


def apply_gate(a: Tensor, gate: str) -> Tensor:
    """ρ = φ(a): ``clamp`` to [0, 1] (default) or the logistic ``sigmoid``; both lie in [0, 1]."""
    if gate == "clamp":
        return a.clamp(0.0, 1.0)
    if gate == "sigmoid":
        return torch.sigmoid(a)
    raise ValueError(f"gate must be one of {list(GATES)}, got {gate!r}")


def gate_derivative(a: Tensor, gate: str) -> Tensor:
    """φ'(a). For ``clamp`` it is 1 on the closed interval 0 ≤ a ≤ 1 and 0 outside (torch.clamp's convention)."""
    if gate == "clamp":
        return ((a >= 0) & (a <= 1)).to(a.dtype)
    if gate == "sigmoid":
        s = torch.sigmoid(a)
        return s * (1 - s)
    raise ValueError(f"gate must be one of {list(GATES)}, got {gate!r}")


def synaptic_trace_reference(z: Tensor, decay: float, d0: Tensor | None = None) -> Tensor:
    """D[t] = decay·D[t-1] + z[t] along dim 0, from D[0] = d0 (zeros if None). Returns D [T, *]."""
    d = torch.zeros_like(z[0]) if d0 is None else d0
    out = []
    for t in range(z.shape[0]):
        d = decay * d + z[t]
        out.append(d)
    return torch.stack(out)


def dgn_membrane_reference(conductance: Tensor, current: Tensor, v0: Tensor, s0: Tensor, *, dt: float,
                           threshold: float, gate: str = "clamp", surrogate: SurrogateLike = "atan",
                           detach_reset: bool = False, recurrent_weight: Tensor | None = None,
                           recurrent_conductance: Tensor | None = None, recurrent_decay: float = 0.0,
                           rec_trace0: Tensor | None = None):
    """The gated membrane, one step at a time (see :func:`dendrix.ops.dgn.dgn_membrane` for the equations).

    Returns ``(spikes [T,*], v [T,*], rec_trace_last)``; ``rec_trace_last`` is None without recurrence.
    """
    sg = get_surrogate(surrogate)
    recurrent = recurrent_weight is not None
    v, s, dr = v0, s0, rec_trace0
    spikes, vs = [], []
    for t in range(conductance.shape[0]):
        g, i = conductance[t], current[t]
        if recurrent:
            dr = recurrent_decay * dr + s
            g = g + dr @ recurrent_conductance.t()
            i = i + dr @ recurrent_weight.t()
        rho = apply_gate(1.0 - dt * g, gate)
        reset = s.detach() if detach_reset else s
        v = rho * v + dt * i - threshold * reset
        s = sg(v - threshold)
        spikes.append(s)
        vs.append(v)
    return torch.stack(spikes), torch.stack(vs), dr
