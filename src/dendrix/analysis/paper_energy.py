"""The MMDEND paper's energy estimate (its Table 4 operation counts), as a function.

For one MMDEND layer of D channels, K compartments per branch, T time steps, and ``f_i`` the fraction of
channels covered by exactly i branches (:meth:`dendrix.neurons.MMDEND.branch_proportions`):

* dendrites: ``FLOPs_dend = Σ_i f_i · i · D · (3K + 1) · T``
* soma:      ``FLOPs_soma = 2 · Σ_i f_i · i · D · T + 3 · D · T``
* energy:    ``E = E_MAC · (FLOPs_dend + FLOPs_soma) + T · R · E_AC · FLOPs_layer``

with ``FLOPs_layer`` the synaptic operations of the weight layer that the spikes drive, per time step and at
one spike per neuron (e.g. ``in × out`` for a Linear), ``R`` the firing rate (mean |spike count| per neuron
and step: an integer spike of size n is n binary sub-steps, n accumulates), ``E_MAC = 4.6 pJ``,
``E_AC = 0.9 pJ`` (45 nm). The general, measured-spike energy of any model is
:func:`dendrix.analysis.energy.energy_report`; this function reproduces the paper's own formula.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Mapping

from ..validation import check_int, check_nonnegative

__all__ = ["PaperEnergy", "mmdend_paper_energy", "mmdend_paper_energy_of"]

E_AC_PJ = 0.9
E_MAC_PJ = 4.6


@dataclass(frozen=True)
class PaperEnergy:
    flops_dendrite: float
    flops_soma: float
    flops_layer: float     # T · R · FLOPs_layer: the accumulates the spikes cause
    energy_neuron_pj: float
    energy_layer_pj: float

    @property
    def flops_neuron(self) -> float:
        return self.flops_dendrite + self.flops_soma

    @property
    def energy_pj(self) -> float:
        return self.energy_neuron_pj + self.energy_layer_pj

    def as_dict(self) -> dict:
        return {**asdict(self), "flops_neuron": self.flops_neuron, "energy_pj": self.energy_pj}


def mmdend_paper_energy(channels: int, compartments: int, time_steps: int, branch_proportions: Mapping[int, float],
                        layer_flops: float, firing_rate: float, *, e_mac_pj: float = E_MAC_PJ,
                        e_ac_pj: float = E_AC_PJ) -> PaperEnergy:
    """Energy of one MMDEND layer by the paper's Table 4 formula (see the module docstring).

    Args:
        channels: D. compartments: K. time_steps: T.
        branch_proportions: ``{i: f_i}``, fraction of channels covered by i branches (must sum to 1).
        layer_flops: synaptic operations per time step of the layer fed by the spikes, at rate 1.
        firing_rate: R, mean |spike count| per neuron per step.
    """
    D = check_int("channels", channels, minimum=1)
    K = check_int("compartments", compartments, minimum=1)
    T = check_int("time_steps", time_steps, minimum=1)
    layer_flops = check_nonnegative("layer_flops", layer_flops)
    R = check_nonnegative("firing_rate", firing_rate)
    if not branch_proportions:
        raise ValueError("branch_proportions must map branch counts i >= 1 to fractions f_i, got an empty mapping")
    total = 0.0
    mean_cover = 0.0
    for i, f in branch_proportions.items():
        i = check_int("branch count", i, minimum=1)
        f = check_nonnegative(f"branch_proportions[{i}]", f)
        total += f
        mean_cover += f * i
    if abs(total - 1.0) > 1e-6:
        raise ValueError(f"branch_proportions must sum to 1, got {total:g}")
    flops_dend = mean_cover * D * (3 * K + 1) * T
    flops_soma = 2 * mean_cover * D * T + 3 * D * T
    spike_ops = T * R * layer_flops
    return PaperEnergy(flops_dend, flops_soma, spike_ops, e_mac_pj * (flops_dend + flops_soma), e_ac_pj * spike_ops)


def mmdend_paper_energy_of(neuron, time_steps: int, layer_flops: float, firing_rate: float, **kw) -> PaperEnergy:
    """:func:`mmdend_paper_energy` for an :class:`~dendrix.neurons.MMDEND` instance (its D, K and proportions)."""
    return mmdend_paper_energy(neuron.channels, neuron.compartments, time_steps, neuron.branch_proportions(),
                               layer_flops, firing_rate, **kw)
