"""Plain per-step reference of the leaky integrate-and-fire recurrence (autograd through every step).

Obviously-correct and slow: one small autograd graph per time step. The fused engine (``fused.py``) is tested
against it, forward and gradients, with the same surrogate.

The general recurrence (LIF, PLIF and DA-LIF are special cases; see ``docs/neurons.md``)::

    H[t] = leak * V[t-1] + gain * X[t] + bias          (pre-reset membrane)
    S[t] = Θ(H[t] - v_threshold)                       (surrogate gradient in backward)
    V[t] = H[t] (1 - S[t]) + v_reset S[t]              (hard reset)
    V[t] = H[t] - v_threshold S[t]                     (soft reset, v_reset=None)

``detach_reset`` removes the spike's gradient path through the reset (SpikingJelly's option).
"""

from __future__ import annotations

import torch
from torch import Tensor

from ...surrogate import Surrogate

__all__ = ["leaky_sequence_reference", "lif_sequence_reference"]


def _fire_and_reset(h: Tensor, v_threshold: float, v_reset: float | None, detach_reset: bool,
                    surrogate: Surrogate) -> tuple[Tensor, Tensor]:
    """S[t] and the post-reset V[t] from the pre-reset membrane H[t] (hard or soft reset)."""
    s = surrogate(h - v_threshold)
    s_reset = s.detach() if detach_reset else s
    if v_reset is None:
        return s, h - v_threshold * s_reset
    return s, h * (1 - s_reset) + v_reset * s_reset


def leaky_sequence_reference(x: Tensor, v0: Tensor, leak, gain, bias, v_threshold: float, v_reset: float | None,
                             detach_reset: bool, surrogate: Surrogate) -> tuple[Tensor, Tensor, Tensor]:
    """``H = leak·V + gain·X + bias`` with hard or soft reset, written literally as a per-step loop differentiated
    by autograd: the yardstick of the fused and Triton engines. Returns ``(spikes, H, V after the last step)``."""
    spikes, potentials = [], []
    v = v0
    for x_t in x.unbind(0):  # unbind: one backward node for all steps (x[t] would cost a full-size gradient each)
        h = leak * v + gain * x_t + bias
        s, v = _fire_and_reset(h, v_threshold, v_reset, detach_reset, surrogate)
        spikes.append(s)
        potentials.append(h)
    return torch.stack(spikes), torch.stack(potentials), v


def lif_sequence_reference(x: Tensor, v0: Tensor, decay, v_threshold: float, v_reset: float | None,
                           decay_input: bool, detach_reset: bool, surrogate: Surrogate) -> tuple[Tensor, Tensor, Tensor]:
    """SpikingJelly's LIFNode step written literally: H = V + (X - (V - v_reset)) * decay (decay = 1/tau)."""
    spikes, potentials = [], []
    v = v0
    reset_value = 0.0 if v_reset is None else v_reset
    for x_t in x.unbind(0):
        if decay_input:
            h = v + (x_t - (v - reset_value)) * decay
        else:
            h = v - (v - reset_value) * decay + x_t
        s, v = _fire_and_reset(h, v_threshold, v_reset, detach_reset, surrogate)
        spikes.append(s)
        potentials.append(h)
    return torch.stack(spikes), torch.stack(potentials), v
