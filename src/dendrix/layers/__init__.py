"""Synaptic neuron layers that own their weights: presynaptic spikes ``[T, B, in]`` -> spikes ``[T, B, out]``."""

from __future__ import annotations

import importlib

from .sequential import SpikingLinear

_LAZY = {
    "DLIFLinear": "dlif", "DLIFConv2d": "dlif",
    "DGNLinear": "dgn",
}

__all__ = ["SpikingLinear", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        module = importlib.import_module(f"{__name__}.{_LAZY[name]}")
        return getattr(module, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(__all__)
