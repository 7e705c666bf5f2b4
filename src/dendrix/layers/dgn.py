"""DGN and S-DGN: the dynamic-conductance gated neuron as a synaptic layer (feed-forward or recurrent).

Registered kinds: ``"dgn"`` (independent W and C) and ``"sdgn"`` (shared reversal potential, W = E·C).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor, nn

from ..contract import Neuron
from ..neurons.dgn import DGN
from ..ops.dgn import apply_gate, check_finite, dgn_membrane, membrane_options, trace_linear
from ..registry import register
from ..surrogate import SurrogateLike
from ..validation import check_int

__all__ = ["DGNLinear", "DGNState", "DGNRecurrentState", "dgn_linear", "sdgn_linear"]


class DGNState(NamedTuple):
    trace: Tensor  # presynaptic traces D [B, in]
    v: Tensor      # membrane V [B, out]
    spike: Tensor  # last output spike S [B, out] (drives the soft reset of the next step)


class DGNRecurrentState(NamedTuple):
    trace: Tensor      # presynaptic traces D [B, in]
    rec_trace: Tensor  # traces of the layer's own spikes D_rec [B, out]
    v: Tensor
    spike: Tensor


class DGNLinear(Neuron):
    r"""Dynamic-conductance gated neuron layer (DGN; S-DGN with ``shared_reversal=True``), ICLR 2026.

    Presynaptic spikes z ``[T, B, in]`` -> spikes ``[T, B, out]``. Per input i a synaptic trace, per neuron o
    a membrane whose leak is gated by the input-dependent conductance:

    .. math::
        D_i[t] &= e^{-dt/\tau_s} D_i[t-1] + z_i[t] \\
        G_o[t] &= g_l + \textstyle\sum_i C_{oi} D_i[t] \\
        \rho_o[t] &= \varphi(1 - dt\,G_o[t]) \in [0, 1] \\
        V_o[t] &= \rho_o[t] V_o[t-1] + dt \textstyle\sum_i W_{oi} D_i[t] - \theta S_o[t-1] \\
        S_o[t] &= \Theta(V_o[t] - \theta)

    This is the Euler step of the conductance-based membrane dV/dt = −G(t)·V + I(t): a synapse both injects
    current (W) and opens conductance (C), which shortens the membrane time constant while it is active.

    * Recurrent (``recurrent=True``): a second trace of the layer's own spikes,
      D_rec[t] = e^{-dt/τ_s} D_rec[t-1] + S[t-1], enters G and I through ``recurrent_conductance`` and
      ``recurrent_weight`` ([out, out]) like the feed-forward trace.
    * S-DGN (``shared_reversal=True``): one reversal (equilibrium) potential E_o per neuron and W_oi = E_o·C_oi
      (also for the recurrent weights). Parameters ``conductance`` and ``reversal``: LIF's count plus ``out``.
      DGN has parameters ``weight`` and ``conductance``: twice LIF's count.

    Args:
        in_features, out_features: sizes.
        recurrent: add the recurrent trace (default False).
        shared_reversal: S-DGN parameterisation W = E·C (default False).
        tau_s: synaptic trace time constant, in units of the time step (default 5.0; > 0).
        g_leak: leak conductance g_l (default 0.2; ≥ 0). With C = 0 the gate is the constant 1 − dt·g_l.
        dt: Euler step (default 1.0; > 0).
        threshold: θ of the spike and the soft reset (default 1.0; > 0).
        gate: φ, ``"sigmoid"`` (default, the paper's truncation: the logistic function of 1 − dt·G, never
            saturated) or ``"clamp"`` (clamp to [0, 1], gradient 1 on [0, 1] and 0 outside, so a saturated gate
            passes no gradient to G; SPEC.md's default, kept as an option, see docs/spec-notes.md).
        surrogate: surrogate gradient of Θ (name or :class:`dendrix.surrogate.Surrogate`; default ``"atan"``).
        detach_reset: cut the gradient through the reset term (default False).
        bias: add a learnable constant current b_o to I (default False: the paper's counts have no biases).
        reversal_init: initial E_o for S-DGN (default 1.0).
        backend: ``"auto"`` | ``"fused"`` | ``"triton"`` (CUDA) | ``"numba"`` (CPU; the recurrent membrane
            compiled) | ``"reference"`` (see :mod:`dendrix.ops.dgn`).

    Initialisation: W (and W_rec) uniform in ±1/√fan_in like ``nn.Linear``; DGN's C (and C_rec) uniform in
    [0, 1/fan_in] (non-negative conductances that keep ρ near 1 − dt·g_l at typical input rates); S-DGN's C
    uniform in ±1/√fan_in (its sign sets the sign of the synapse through W = E·C), E = ``reversal_init``.

    Half-precision inputs are accepted: the layer computes in its parameters' dtype and returns spikes in the
    input's dtype.
    """

    def __init__(self, in_features: int, out_features: int, recurrent: bool = False, shared_reversal: bool = False,
                 tau_s: float = 5.0, g_leak: float = 0.2, dt: float = 1.0, threshold: float = 1.0,
                 gate: str = "sigmoid", surrogate: SurrogateLike = "atan", detach_reset: bool = False,
                 bias: bool = False, reversal_init: float = 1.0, backend: str = "auto"):
        super().__init__()
        self.in_features = check_int("in_features", in_features, minimum=1)
        self.out_features = check_int("out_features", out_features, minimum=1)
        self.recurrent, self.shared_reversal = bool(recurrent), bool(shared_reversal)
        options = membrane_options(tau_s, g_leak, dt, threshold, gate, surrogate, detach_reset, backend)
        for name, value in options._asdict().items():
            setattr(self, name, value)
        reversal_init = check_finite("reversal_init", reversal_init)

        n_in, n_out = self.in_features, self.out_features
        if self.shared_reversal:
            self.conductance = nn.Parameter(_uniform(n_out, n_in, -1 / math.sqrt(n_in), 1 / math.sqrt(n_in)))
            self.reversal = nn.Parameter(torch.full((n_out,), reversal_init))
        else:
            self.weight = nn.Parameter(_uniform(n_out, n_in, -1 / math.sqrt(n_in), 1 / math.sqrt(n_in)))
            self.conductance = nn.Parameter(_uniform(n_out, n_in, 0.0, 1 / n_in))
        if self.recurrent:
            if self.shared_reversal:
                self.recurrent_conductance = nn.Parameter(
                    _uniform(n_out, n_out, -1 / math.sqrt(n_out), 1 / math.sqrt(n_out)))
            else:
                self.recurrent_weight = nn.Parameter(
                    _uniform(n_out, n_out, -1 / math.sqrt(n_out), 1 / math.sqrt(n_out)))
                self.recurrent_conductance = nn.Parameter(_uniform(n_out, n_out, 0.0, 1 / n_out))
        self.bias = nn.Parameter(torch.zeros(n_out)) if bias else None

    # -- effective synapses ------------------------------------------------------------------------------------
    def effective_weight(self) -> Tensor:
        """W [out, in] (for S-DGN: E·C)."""
        return self.reversal.unsqueeze(1) * self.conductance if self.shared_reversal else self.weight

    def effective_recurrent_weight(self) -> Tensor | None:
        if not self.recurrent:
            return None
        if self.shared_reversal:
            return self.reversal.unsqueeze(1) * self.recurrent_conductance
        return self.recurrent_weight

    def gate_values(self, conductance: Tensor) -> Tensor:
        """ρ = φ(1 − dt·G) for a conductance tensor G."""
        return apply_gate(1.0 - self.dt * conductance, self.gate)

    # -- contract ----------------------------------------------------------------------------------------------
    def init_state(self, x_t: Tensor) -> DGNState | DGNRecurrentState:
        dtype = self.conductance.dtype
        batch = x_t.shape[:-1]
        trace = torch.zeros(*batch, self.in_features, dtype=dtype, device=x_t.device)
        v = torch.zeros(*batch, self.out_features, dtype=dtype, device=x_t.device)
        if self.recurrent:
            return DGNRecurrentState(trace, torch.zeros_like(v), v, torch.zeros_like(v))
        return DGNState(trace, v, torch.zeros_like(v))

    @property
    def input_width(self) -> int:  # type: ignore[override]
        return self.in_features

    def check_run_input(self, x: Tensor) -> None:
        self.check_input(x, self.in_features)
        if self.recurrent and x.dim() != 3:
            raise ValueError(f"DGNLinear(recurrent=True) input must be [T, B, {self.in_features}], "
                             f"got shape {tuple(x.shape)}")

    def _run_sequence(self, x: Tensor, state: DGNState | DGNRecurrentState):
        out_dtype = x.dtype
        dtype = self.conductance.dtype
        z = x.to(dtype)

        d0 = state.trace.to(dtype)
        # Matmuls over all T·B rows at once (trace_linear: on CPU with sparse input spikes the traces are taken
        # after the matmul, which visits only the non-zero inputs). S-DGN needs only C·D: W·D = E ⊙ (C·D), so it
        # costs one matmul like LIF's Linear; DGN needs C·D and W·D, done as ONE matmul with the stacked
        # [C; W] ([2·out, in]): one pass over the input instead of two, forward and for the weight gradients.
        if self.shared_reversal:
            cd, last_trace = trace_linear(z, self.conductance, None, self.decay, d0, backend=self.backend)
            conductance = cd + self.g_leak
            current = cd * self.reversal if self.bias is None else torch.addcmul(self.bias, cd, self.reversal)
        else:
            n_out = self.out_features
            stacked_bias = torch.empty(2 * n_out, dtype=dtype, device=z.device)
            stacked_bias[:n_out] = self.g_leak
            if self.bias is None:
                stacked_bias[n_out:] = 0.0
            else:
                stacked_bias = torch.cat([stacked_bias[:n_out], self.bias])
            both, last_trace = trace_linear(z, torch.cat([self.conductance, self.weight], 0), stacked_bias,
                                            self.decay, d0, backend=self.backend)
            # unbind (not two slices): its backward is one stack instead of two zero-filled full-size buffers.
            conductance, current = both.unflatten(-1, (2, n_out)).unbind(-2)

        rec = {}
        if self.recurrent:
            rec = dict(recurrent_weight=self.effective_recurrent_weight(),
                       recurrent_conductance=self.recurrent_conductance, recurrent_decay=self.decay,
                       rec_trace0=state.rec_trace)
        spikes, v, rec_last = dgn_membrane(conductance, current, state.v, state.spike, dt=self.dt,
                                           threshold=self.threshold, gate=self.gate, surrogate=self.surrogate,
                                           detach_reset=self.detach_reset, backend=self.backend, **rec)
        self.record_state("v", v)
        if self.recording and not self.recurrent:
            self.record_state("gate", self.gate_values(conductance.detach()))
        if self.recurrent:
            new_state = DGNRecurrentState(last_trace, rec_last, v[-1], spikes[-1])
        else:
            new_state = DGNState(last_trace, v[-1], spikes[-1])
        return spikes.to(out_dtype), new_state

    owns_synapses = True  # its input is presynaptic spikes (energy counting, noise injection)

    def operation_counts(self, inputs: Tensor, output: Tensor) -> dict[str, float]:
        """Energy counting (:mod:`dendrix.analysis.energy`). With one trace time constant for all synapses,
        Σ_i W_oi D_i[t] and Σ_i C_oi D_i[t] are leaky filters of the input spikes at the postsynaptic side: 2 ACs
        per input spike and output (1 for S-DGN: current = E_o × conductance sum), driven also by the layer's own
        previous spikes when recurrent, plus 5 MACs per neuron and step (two filters, gate, membrane)."""
        from ..ops.counting import abs_sum, is_integer_valued

        in_f, out_f = inputs.shape[-1], output.shape[-1]
        steps_rows = float(inputs.numel()) / in_f  # T·B
        spikes_in = abs_sum(inputs)
        spikes_rec = abs_sum(output[:-1]) if self.recurrent and output.dim() >= 3 else 0.0
        fan_in_rec = out_f if self.recurrent else 0
        sums = 1.0 if self.shared_reversal else 2.0
        spikes = is_integer_valued(inputs)
        if spikes:
            counts = {"synaptic_ac": sums * (spikes_in + spikes_rec) * out_f,
                      "dense_spike_ops": sums * steps_rows * (in_f + fan_in_rec) * out_f}
        else:  # analogue input (a first layer): MACs for the input, ACs for the layer's own spikes
            counts = {"synaptic_mac": sums * steps_rows * in_f * out_f}
            if spikes_rec:
                counts["synaptic_ac"] = sums * spikes_rec * out_f
                counts["dense_spike_ops"] = sums * steps_rows * fan_in_rec * out_f
        counts["dynamics_mac"] = 5.0 * float(output.numel())
        if self.bias is not None:
            counts["bias_ac"] = float(output.numel())
        counts["ann_synaptic_mac"] = steps_rows * (in_f + fan_in_rec) * out_f
        if self.bias is not None:
            counts["ann_bias_ac"] = float(output.numel())
        if spikes:
            counts.update(input_spikes=spikes_in, input_elements=float(inputs.numel()))
        return counts

    def extra_repr(self) -> str:
        kind = "S-DGN" if self.shared_reversal else "DGN"
        return (f"{kind}, in_features={self.in_features}, out_features={self.out_features}, "
                f"recurrent={self.recurrent}, tau_s={self.tau_s:g}, g_leak={self.g_leak:g}, dt={self.dt:g}, "
                f"threshold={self.threshold:g}, gate={self.gate!r}, bias={self.bias is not None}")


def _uniform(rows: int, cols: int, low: float, high: float) -> Tensor:
    return torch.empty(rows, cols).uniform_(low, high)


def dgn_linear(in_features: int, out_features: int, recurrent: bool = False, **kw) -> DGNLinear:
    """A :class:`DGNLinear` ``[T, B, in] -> [T, B, out]`` (kind ``"dgn"``)."""
    return DGNLinear(in_features, out_features, recurrent=recurrent, **kw)


def sdgn_linear(in_features: int, out_features: int, recurrent: bool = False, **kw) -> DGNLinear:
    """The layer of kind ``"sdgn"``: :class:`DGNLinear` with ``shared_reversal=True``."""
    if kw.pop("shared_reversal", True) is not True:
        raise ValueError("kind 'sdgn' is DGNLinear with shared_reversal=True; use kind 'dgn' otherwise")
    return DGNLinear(in_features, out_features, recurrent=recurrent, shared_reversal=True, **kw)


def _gated_neuron(n: int, **kw) -> DGN:
    """``spiking_neuron("dgn", n)``: the gated membrane with one synapse per neuron
    (:class:`~dendrix.neurons.dgn.DGN`)."""
    if "recurrent" in kw:
        raise TypeError("recurrent= is an option of the DGN layer (dendrix.spiking_layer('dgn', ...)), not of "
                        "its neuron alone")
    return DGN(n, **kw)


def _shared_reversal_neuron(n: int, **kw) -> DGN:
    """``spiking_neuron("sdgn", n)``: :class:`~dendrix.neurons.dgn.DGN` with ``shared_reversal=True``."""
    if kw.pop("shared_reversal", True) is not True:
        raise ValueError("kind 'sdgn' is DGN with shared_reversal=True; use kind 'dgn' otherwise")
    return _gated_neuron(n, shared_reversal=True, **kw)


register("dgn", DGNLinear, family="gated", layer=True, neuron=_gated_neuron, own_recurrence=True,
         description="dynamic-conductance gated neuron layer (W and C per synapse; recurrent=True optional)",
         cpu_engine="fused sequence kernel, numba recurrent membrane (ops.dgn)", gpu_engine="Triton kernels (ops.dgn)")
register("sdgn", DGNLinear, family="gated", layer=sdgn_linear, neuron=_shared_reversal_neuron, own_recurrence=True,
         description="DGN with one shared reversal potential per neuron (W = E·C; ≈ LIF's parameter count)",
         cpu_engine="fused sequence kernel, numba recurrent membrane (ops.dgn)", gpu_engine="Triton kernels (ops.dgn)")
