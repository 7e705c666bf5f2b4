"""Activation-style neurons: input current ``[T, B, *]`` -> spikes ``[T, B, *]``.

Imported lazily (``dendrix.neurons.LIF`` loads ``neurons/lif.py`` on first use).
"""

from __future__ import annotations

import importlib

from .base import Neuron

_LAZY = {
    "LIF": "lif", "PLIF": "lif",
    "ALIF": "alif",
    "DALIF": "dalif",
    "RF": "rf", "BRF": "rf",
    "DRF": "drf",
    "MMDEND": "mmdend", "SSF": "mmdend", "PMSN": "mmdend",
    "PSN": "psn", "MaskedPSN": "psn", "SlidingPSN": "psn",
}

__all__ = ["Neuron", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        module = importlib.import_module(f"{__name__}.{_LAZY[name]}")
        return getattr(module, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(__all__)
