"""Counting rules: what one call of a module costs, in the terms of the ``operation_counts`` protocol.

Every dendrix neuron and layer declares its own cost (``operation_counts(inputs, output)``, see the package
docstring); torch's ``nn.Linear``/``nn.Conv1d/2d/3d`` are counted by :func:`dendrix.ops.counting.synapse_counts`.
Two fallbacks cover Neuron classes that declare nothing: a neuron is counted as the LIF update (2 MACs per neuron
and step) and a neuron owning a 2-D ``weight`` as a dense synaptic layer with that update; both are flagged
``assumed`` in the report.
"""

from __future__ import annotations

from torch import Tensor, nn

from ...contract import Neuron
from ...ops.counting import abs_sum, is_integer_valued, synapse_counts

__all__ = ["E_AC_PJ", "E_MAC_PJ", "DEFAULT_DYNAMICS_MACS", "SYNAPSES", "declares_counts", "is_known_neuron",
           "is_synaptic_layer", "has_synapse_child", "is_unknown_weight_layer", "declared_counts", "synapse_counts",
           "generic_layer_counts", "unknown_neuron_counts", "split_counts"]

E_AC_PJ = 0.9    # pJ per 32-bit float accumulate (add), 45 nm
E_MAC_PJ = 4.6   # pJ per 32-bit float multiply-accumulate, 45 nm
DEFAULT_DYNAMICS_MACS = 2.0  # a neuron that declares nothing is counted as the LIF update

SYNAPSES = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
_LEGACY_KEYS = frozenset({"ac", "mac", "ann_mac"})
_RATE_KEYS = ("input_spikes", "input_elements")


def declares_counts(m: nn.Module) -> bool:
    """Whether ``m`` declares its own cost with ``operation_counts(inputs, output)``."""
    return callable(getattr(m, "operation_counts", None))


def is_known_neuron(m: nn.Module) -> bool:
    """Whether ``m`` is an activation-style neuron (its input is a current) that declares its own cost."""
    return isinstance(m, Neuron) and declares_counts(m) and not getattr(m, "owns_synapses", False)


def has_synapse_child(m: nn.Module) -> bool:
    """Whether a module below ``m`` (not ``m`` itself) is a synapse layer or a neuron, i.e. counted on its own."""
    return any(isinstance(c, (SYNAPSES, Neuron)) for c in m.modules() if c is not m)


def is_unknown_weight_layer(m: nn.Module) -> bool:
    """A Neuron that declares nothing, owns a 2-D ``weight`` (a synaptic layer without a rule) and no synaptic
    children."""
    w = getattr(m, "weight", None)
    return (isinstance(m, Neuron) and not declares_counts(m) and isinstance(w, nn.Parameter) and w.dim() == 2
            and not has_synapse_child(m))


def is_synaptic_layer(m: nn.Module) -> bool:
    """Whether ``m`` is a layer-type neuron (its input is presynaptic spikes, e.g. DLIF, DGN): a Neuron whose
    class sets ``owns_synapses = True``, or one that declares nothing and owns a 2-D ``weight``."""
    if not isinstance(m, Neuron):
        return False
    if declares_counts(m):
        return bool(getattr(m, "owns_synapses", False))
    return is_unknown_weight_layer(m)


def declared_counts(m: nn.Module, x: Tensor, y: Tensor) -> dict[str, float]:
    """``m.operation_counts(x, y)`` as a dict of floats; the older ``{"ac", "mac", "ann_mac"}`` form is read as
    synaptic ACs / MACs (the baseline's MACs default to ``mac``)."""
    counts = m.operation_counts(x, y)
    if not isinstance(counts, dict):
        raise TypeError(f"{type(m).__name__}.operation_counts must return a dict of counts, got "
                        f"{type(counts).__name__}")
    if counts and set(counts) <= _LEGACY_KEYS:
        return {"synaptic_ac": float(counts.get("ac", 0.0)), "synaptic_mac": float(counts.get("mac", 0.0)),
                "ann_synaptic_mac": float(counts.get("ann_mac", counts.get("mac", 0.0)))}
    return {k: float(v) for k, v in counts.items()}


def split_counts(counts: dict[str, float]) -> tuple[dict[str, float], dict[str, float], tuple[float, float] | None]:
    """(spiking-network terms, baseline terms, (input |s|, input elements) or None) of one call's counts."""
    snn = {k: v for k, v in counts.items() if not k.startswith("ann_") and k not in _RATE_KEYS}
    ann = {k[len("ann_"):]: v for k, v in counts.items() if k.startswith("ann_")}
    rate = (counts["input_spikes"], counts["input_elements"]) if "input_spikes" in counts else None
    return snn, ann, rate


def generic_layer_counts(m: nn.Module, x: Tensor, y: Tensor) -> dict[str, float]:
    """A declared-nothing Neuron with a 2-D ``weight``: dense synapses (ACs on spikes) plus the LIF update."""
    out_f, in_f = m.weight.shape
    rows = float(x.numel()) / in_f
    spikes = is_integer_valued(x)
    if spikes:
        counts = {"synaptic_ac": abs_sum(x) * out_f, "dense_spike_ops": rows * in_f * out_f}
    else:
        counts = {"synaptic_mac": rows * in_f * out_f}
    counts["dynamics_mac"] = DEFAULT_DYNAMICS_MACS * float(y.numel())
    counts["ann_synaptic_mac"] = rows * in_f * out_f
    if spikes:
        counts.update(input_spikes=abs_sum(x), input_elements=float(x.numel()))
    return counts


def unknown_neuron_counts(y: Tensor) -> dict[str, float]:
    """Counts of a neuron that declares no ``operation_counts``: ``DEFAULT_DYNAMICS_MACS`` MACs per output."""
    return {"dynamics_mac": DEFAULT_DYNAMICS_MACS * float(y.numel())}
