"""Synaptic neuron layers that own their weights: presynaptic spikes ``[T, B, in]`` -> spikes ``[T, B, out]``."""

from __future__ import annotations

from .._lazy import lazy_exports
from .sequential import SpikingLinear

_LAZY = {
    "DLIFLinear": "dlif", "DLIFConv2d": "dlif",
    "DGNLinear": "dgn",
}

__getattr__, __dir__, __all__ = lazy_exports(__name__, _LAZY, ["SpikingLinear"])
