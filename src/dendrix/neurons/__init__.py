"""Activation-style neurons: input current ``[T, B, *]`` -> spikes ``[T, B, *]``.

Imported lazily (``dendrix.neurons.LIF`` loads ``neurons/lif.py`` on first use). The public names are the
``__all__`` of the modules in this folder: a new neuron file needs no entry here.
"""

from __future__ import annotations

from .._lazy import lazy_package
from ..contract import Neuron

__getattr__, __dir__ = lazy_package(__name__, __path__[0], ["Neuron"])
