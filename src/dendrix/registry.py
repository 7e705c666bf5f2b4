"""Registry of neuron kinds, so model builders swap neurons by name.

``dendrix.available()`` lists the kinds; ``dendrix.spiking_layer(kind, in_features, out_features, **kw)`` builds a
``[T, B, in] -> [T, B, out]`` layer for any of them: a Linear followed by the neuron for activation-style neurons,
the neuron's own synaptic layer for DLIF and DGN.

Each model module registers itself with :func:`register`. The registry imports the built-in modules lazily,
the first time it is asked, so ``import dendrix`` stays cheap.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Callable

from torch import nn

__all__ = ["register", "available", "spiking_layer", "describe", "Registration"]


@dataclass(frozen=True)
class Registration:
    kind: str
    factory: Callable[..., nn.Module]  # factory(in_features, out_features, **kw) -> layer
    family: str                        # "lif", "dendritic", "resonator", "gated", "parallel"
    description: str
    needs_time_steps: bool = False     # factory requires time_steps= (e.g. PSN's T×T weights)
    defaults: dict = field(default_factory=dict)  # sensible training defaults (demo/compare)


_REGISTRY: dict[str, Registration] = {}

# Modules that hold built-in kinds; each calls register() at import time.
_BUILTIN_MODULES = (
    "dendrix.neurons.lif",
    "dendrix.neurons.alif",
    "dendrix.neurons.dalif",
    "dendrix.neurons.rf",
    "dendrix.neurons.drf",
    "dendrix.neurons.mmdend",
    "dendrix.neurons.pmsn",
    "dendrix.neurons.psn",
    "dendrix.layers.dlif",
    "dendrix.layers.dgn",
)
_loaded = False


def register(kind: str, factory: Callable[..., nn.Module], *, family: str, description: str,
             needs_time_steps: bool = False, defaults: dict | None = None) -> None:
    kind = kind.lower()
    if kind in _REGISTRY and _REGISTRY[kind].factory is not factory:
        raise ValueError(f"neuron kind {kind!r} is already registered")
    _REGISTRY[kind] = Registration(kind, factory, family, description, needs_time_steps, dict(defaults or {}))


def _load_builtins() -> None:
    global _loaded
    if _loaded:
        return
    for name in _BUILTIN_MODULES:
        importlib.import_module(name)  # every built-in module ships with the package: a failure is a real error
    _loaded = True


def available() -> list[str]:
    """Names of all registered neuron kinds."""
    _load_builtins()
    return sorted(_REGISTRY)


def describe(kind: str) -> Registration:
    _load_builtins()
    key = kind.lower()
    if key not in _REGISTRY:
        raise ValueError(f"unknown neuron kind {kind!r}; available: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[key]


def spiking_layer(kind: str, in_features: int, out_features: int, *, time_steps: int | None = None,
                  **kw) -> nn.Module:
    """Build a ``[T, B, in_features] -> [T, B, out_features]`` spiking layer of neuron ``kind``.

    ``time_steps`` is needed only by kinds whose parameters depend on T (PSN); other kinds ignore it.
    Remaining keywords go to the neuron (or layer) constructor.
    """
    reg = describe(kind)
    if reg.needs_time_steps:
        if time_steps is None:
            raise ValueError(f"neuron kind {kind!r} needs time_steps= (its weights are T×T)")
        kw["time_steps"] = time_steps
    return reg.factory(in_features, out_features, **kw)

