"""Activation-style neurons: input current ``[T, B, *]`` -> spikes ``[T, B, *]``.

Imported lazily (``dendrix.neurons.LIF`` loads ``neurons/lif.py`` on first use).
"""

from __future__ import annotations

from .._lazy import lazy_exports
from .base import Neuron

_LAZY = {
    "LIF": "lif", "PLIF": "lif",
    "ALIF": "alif",
    "DALIF": "dalif",
    "RF": "rf", "BRF": "rf",
    "DRF": "drf",
    "MMDEND": "mmdend", "SSF": "ssf", "PMSN": "pmsn",
    "PSN": "psn", "MaskedPSN": "psn", "SlidingPSN": "psn",
}

__getattr__, __dir__, __all__ = lazy_exports(__name__, _LAZY, ["Neuron"])
