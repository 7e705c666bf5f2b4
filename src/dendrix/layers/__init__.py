"""Synaptic neuron layers that own their weights: presynaptic spikes ``[T, B, in]`` -> spikes ``[T, B, out]``.

Imported lazily; the public names are the ``__all__`` of the modules in this folder.
"""

from __future__ import annotations

from .._lazy import lazy_package
from .spiking import SpikingLinear

__getattr__, __dir__ = lazy_package(__name__, __path__[0], ["SpikingLinear"])
