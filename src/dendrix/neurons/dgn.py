"""DGN as an activation-style neuron: the gated membrane of the dynamic-conductance gated neuron, one synapse each.

:class:`~dendrix.layers.dgn.DGNLinear` is the kind ``"dgn"`` (and ``"sdgn"``) with its all-to-all synapses.
:class:`DGN` is the same neuron where channel h receives only its own input channel x_h (a diagonal W and C),
so it maps ``[T, B, *, channels] -> [T, B, *, channels]`` like LIF: ``dendrix.spiking_neuron("dgn", n)`` returns
it. Per channel h (SPEC.md "DGN and S-DGN", with one input per neuron)::

    D_h[t] = e^{-dt/τ_s} D_h[t-1] + x_h[t]
    G_h[t] = g_l + c_h D_h[t],   ρ_h[t] = φ(1 - dt G_h[t])
    V_h[t] = ρ_h[t] V_h[t-1] + dt (w_h D_h[t] + b_h) - θ S_h[t-1],   S_h[t] = Θ(V_h[t] - θ)

With ``shared_reversal=True`` (S-DGN) ``w_h = E_h c_h``. The numerics are :mod:`dendrix.ops.dgn`'s.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor, nn

from ..contract import Neuron
from ..ops.dgn import check_finite, dgn_membrane, membrane_options, synaptic_trace
from ..surrogate import SurrogateLike
from ..validation import check_int

__all__ = ["DGN", "DGNNeuronState"]


class DGNNeuronState(NamedTuple):
    trace: Tensor  # input trace D [B, *, channels]
    v: Tensor      # membrane V
    spike: Tensor  # last output spike S (drives the soft reset of the next step)


class DGN(Neuron):
    """Dynamic-conductance gated neuron with one synapse per neuron. Input ``[T, B, *, channels]``.

    Args:
        channels: number of neurons (the last input dimension).
        shared_reversal: S-DGN parameterisation ``w = E·c`` (default False).
        tau_s, g_leak, dt, threshold, gate, surrogate, detach_reset, reversal_init, backend: as
            :class:`~dendrix.layers.dgn.DGNLinear`.
        bias: a learnable constant current per neuron (default False).

    Initialisation: :class:`~dendrix.layers.dgn.DGNLinear`'s with fan-in 1: w uniform in ±1; c uniform in
    [0, 1] (DGN) or ±1 (S-DGN, whose sign sets the synapse's sign through w = E·c); E = ``reversal_init``.
    """

    def __init__(self, channels: int, shared_reversal: bool = False, tau_s: float = 5.0, g_leak: float = 0.2,
                 dt: float = 1.0, threshold: float = 1.0, gate: str = "sigmoid", surrogate: SurrogateLike = "atan",
                 detach_reset: bool = False, bias: bool = False, reversal_init: float = 1.0,
                 backend: str = "auto"):
        super().__init__()
        self.channels = check_int("channels", channels, minimum=1)
        self.shared_reversal = bool(shared_reversal)
        options = membrane_options(tau_s, g_leak, dt, threshold, gate, surrogate, detach_reset, backend)
        for name, value in options._asdict().items():
            setattr(self, name, value)
        reversal_init = check_finite("reversal_init", reversal_init)
        n = self.channels
        if self.shared_reversal:
            self.conductance = nn.Parameter(torch.empty(n).uniform_(-1.0, 1.0))
            self.reversal = nn.Parameter(torch.full((n,), reversal_init))
        else:
            self.weight = nn.Parameter(torch.empty(n).uniform_(-1.0, 1.0))
            self.conductance = nn.Parameter(torch.empty(n).uniform_(0.0, 1.0))
        self.bias = nn.Parameter(torch.zeros(n)) if bias else None

    def effective_weight(self) -> Tensor:
        """w [channels] (for S-DGN: E·c)."""
        return self.reversal * self.conductance if self.shared_reversal else self.weight

    def init_state(self, x_t: Tensor) -> DGNNeuronState:
        zeros = torch.zeros(x_t.shape, dtype=self.conductance.dtype, device=x_t.device)
        return DGNNeuronState(zeros, zeros.clone(), zeros.clone())

    @property
    def input_width(self) -> int:  # type: ignore[override]
        return self.channels

    def _run_sequence(self, x: Tensor, state: DGNNeuronState) -> tuple[Tensor, DGNNeuronState]:
        dtype = self.conductance.dtype
        trace = synaptic_trace(x.to(dtype), self.decay, state.trace.to(dtype), backend=self.backend)
        conductance = trace * self.conductance + self.g_leak
        current = trace * self.effective_weight()
        if self.bias is not None:
            current = current + self.bias
        spikes, v, _ = dgn_membrane(conductance, current, state.v, state.spike, dt=self.dt,
                                    threshold=self.threshold, gate=self.gate, surrogate=self.surrogate,
                                    detach_reset=self.detach_reset, backend=self.backend)
        self.record_state("v", v)
        return spikes.to(x.dtype), DGNNeuronState(trace[-1], v[-1], spikes[-1])

    def extra_repr(self) -> str:
        kind = "S-DGN" if self.shared_reversal else "DGN"
        return (f"{kind}, channels={self.channels}, tau_s={self.tau_s:g}, g_leak={self.g_leak:g}, dt={self.dt:g}, "
                f"threshold={self.threshold:g}, gate={self.gate!r}, bias={self.bias is not None}")
