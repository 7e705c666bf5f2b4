"""Operation counting and an energy proxy for spiking networks, from the spikes a network actually emits.

``energy_report(model, loader)`` runs the model on a data split with hooks on every synaptic module and neuron,
counts accumulate (AC) and multiply-accumulate (MAC) operations per layer, and converts them to energy with
per-operation constants (default 0.9 pJ per AC and 4.6 pJ per MAC: 32-bit floating-point add and
multiply+add at 45 nm, Horowitz 2014 — the constants most SNN papers use). Counted energy is a *proxy*: memory
traffic, control and data movement, which dominate real hardware, are not counted.

Modules: :mod:`.counter` (the hooks and per-row accumulation), :mod:`.rules` (which rule counts which module,
and the fallbacks), :mod:`.report` (the report, the ReLU baseline and the break-even rate).

**The ``operation_counts`` protocol.** Each neuron and synaptic layer declares what one call costs::

    def operation_counts(self, inputs: Tensor, output: Tensor) -> dict[str, float]

``inputs`` and ``output`` are the call's input and output sequences (``[T, B, *]``, all samples); the values are
totals of that call, keyed by term:

* ``"<term>_ac"`` / ``"<term>_mac"``: operations of the spiking network (``synaptic_ac``, ``bias_ac``,
  ``dynamics_mac``, ``pair_ac``, ...); each key is one entry of the report's breakdown.
* ``"ann_<term>_ac"`` / ``"ann_<term>_mac"``: the same layer in the ReLU baseline (dense MACs for every weight).
* ``"dense_spike_ops"`` / ``"dense_pair_linear_ops"`` (scale with the input spike rate r) and
  ``"dense_pair_ops"`` (scale with r²): the spike-driven ACs at rate 1, for the break-even rate.
* ``"input_spikes"`` and ``"input_elements"``: Σ|s| and the element count of a spike input (the row's in rate).

The declaring module's children are not counted separately (MMDEND's SSF is part of MMDEND's count).
Activation-style neurons return ``{"dynamics_mac": m * output.numel()}``; layers that take presynaptic spikes
also set the class attribute ``owns_synapses = True``. ``nn.Linear`` and ``nn.Conv1d/2d/3d`` are counted by
:func:`dendrix.ops.counting.synapse_counts`. The older form ``{"ac", "mac", "ann_mac"}`` is still read
(synaptic ACs / MACs). Formulas of every built-in neuron: ``docs/evaluation.md``.
"""

from __future__ import annotations

from typing import Iterable

import torch
from torch import Tensor, nn

from ...ops.counting import active_pairs as _active_pairs
from ...validation import check_nonnegative
from .counter import Counter
from .report import EnergyReport, LayerEnergy
from .rules import E_AC_PJ, E_MAC_PJ, is_known_neuron, is_synaptic_layer

__all__ = [
    "E_AC_PJ", "E_MAC_PJ", "LayerEnergy", "EnergyReport", "count_operations", "energy_report",
    "is_known_neuron", "is_synaptic_layer",
]
_ = _active_pairs  # re-exported for the tests that compare it with a brute-force count


def _check_constants(e_ac: float, e_mac: float) -> tuple[float, float]:
    return check_nonnegative("e_ac", e_ac), check_nonnegative("e_mac", e_mac)


def _model_device(model: nn.Module) -> torch.device:
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


def count_operations(model: nn.Module, inputs: Tensor | Iterable[Tensor], *, e_ac: float = E_AC_PJ,
                     e_mac: float = E_MAC_PJ) -> EnergyReport:
    """Run ``model`` on one input ``[T, B, ...]`` (or several) without gradients and count its operations.

    The model is put in eval mode for the count and restored afterwards.
    """
    e_ac, e_mac = _check_constants(e_ac, e_mac)
    batches = [inputs] if isinstance(inputs, Tensor) else list(inputs)
    was_training = model.training
    model.eval()
    try:
        with Counter(model) as counter, torch.no_grad():
            for x in batches:
                model(x)
    finally:
        model.train(was_training)
    return counter.report(e_ac, e_mac)


def energy_report(model: nn.Module, loader: Iterable, *, e_ac: float = E_AC_PJ, e_mac: float = E_MAC_PJ,
                  max_batches: int | None = None, device: str | torch.device | None = None) -> EnergyReport:
    """Operation counts and energy per layer and per sample of ``model`` over a time-first ``loader``.

    Args:
        model: maps ``x [T, B, C]`` to logits (any module built from dendrix layers and ``torch.nn``).
        loader: yields ``(x [T, B, C], y)`` batches (``dendrix.data.make_loader``) or bare ``x``.
        e_ac, e_mac: energy per accumulate / multiply-accumulate in pJ (defaults 0.9 and 4.6, 45 nm FP32).
        max_batches: stop after this many batches (None: the whole loader).
        device: where to run (default: the model's device).
    """
    e_ac, e_mac = _check_constants(e_ac, e_mac)
    device = torch.device(device) if device is not None else _model_device(model)

    def batches():
        for i, batch in enumerate(loader):
            if max_batches is not None and i >= max_batches:
                break
            x = batch[0] if isinstance(batch, (tuple, list)) else batch
            yield x.to(device)

    return count_operations(model, batches(), e_ac=e_ac, e_mac=e_mac)
