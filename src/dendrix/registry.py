"""Registry of neuron kinds: each kind is a class with declared traits, so model builders swap neurons by name.

Two verbs build a kind:

* ``dendrix.spiking_layer(kind, in_features, out_features, **kw)``: a ``[T, B, in] -> [T, B, out]`` layer; a
  :class:`~dendrix.layers.spiking.SpikingLinear` (Linear, then the neuron) for activation-style kinds, the
  kind's own synaptic layer for kinds that have one (DLIF, DGN, S-DGN).
* ``dendrix.spiking_neuron(kind, n, **kw)``: the neuron alone, ``[T, B, *, n] -> [T, B, *, n]``. For kinds that
  own their synapses it is the kind's neuron without them (see :attr:`Registration.neuron`).

The pipeline (models/, train/, the docs' support matrix) reads the traits of :class:`Registration`; nothing is
recovered from constructor signatures. Every module of ``dendrix.neurons`` and ``dendrix.layers`` is imported
the first time the registry is asked (each registers its kinds at import), so ``import dendrix`` stays cheap and
a new neuron file needs no entry in any list.
"""

from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass, field
from typing import Callable, Union

import torch
from torch import nn

__all__ = ["register", "unregister", "available", "spiking_layer", "spiking_neuron", "describe", "Registration",
           "builtin_modules"]

#: The packages whose modules hold the built-in kinds (every module in them is imported by the registry).
BUILTIN_PACKAGES = ("dendrix.neurons", "dendrix.layers")

WeightGain = Union[float, Callable[[nn.Module], float]]


@dataclass(frozen=True)
class Registration:
    """A registered kind: its class and the traits the pipeline reads.

    Attributes:
        kind: the registry name (lower case).
        cls: the Module class (a :class:`~dendrix.contract.Neuron`): the neuron of activation-style kinds, the
            synaptic layer of kinds with ``layer`` set.
        family: ``"lif"``, ``"dendritic"``, ``"resonator"``, ``"gated"`` or ``"parallel"``.
        description: one line for ``dendrix describe`` and the docs.
        width: the constructor argument that takes the number of neurons (e.g. ``"channels"``), or None for
            shape-agnostic neurons (one parameter set for any width).
        per_channel: True where ``width`` is optional: the builders fill it only when called with
            ``per_channel=True`` (PLIF, DA-LIF: one parameter per neuron instead of one per layer).
        own_recurrence: the layer takes ``recurrent=True`` and implements its own recurrent form (DGN); model
            builders use it instead of wrapping the kind in :class:`~dendrix.models.mlp.RecurrentSpikingLayer`.
        needs_time_steps: the constructor takes the sequence length as ``time_steps_arg`` (PSN's T×T weights);
            the builders require ``time_steps=``.
        time_steps_arg: the name of that constructor argument (default ``"T"``).
        streams: ``step``/``run`` continue a sequence chunk by chunk. False where the output at t can depend on
            later inputs (PSN; a masked PSN with λ < 1 also reports ``streaming = False`` on the instance).
        layer: None for activation-style kinds (``spiking_layer`` wraps the neuron in a Linear); True where
            ``cls(in_features, out_features, **kw)`` is the kind's own synaptic layer; or a callable
            ``layer(in_features, out_features, **kw)`` where the kind fixes some of the class's arguments.
        neuron: for kinds with ``layer`` set, ``neuron(n, **kw)`` builds the neuron alone (the soma without the
            synapses); None otherwise (``cls`` is the neuron).
        weight_gain: the default gain on the initial weight and bias of the Linear that ``spiking_layer`` puts in
            front of an activation-style neuron: a number, or a function of the built neuron (RF/BRF: 1/(10·dt),
            because their Euler step scales the current by dt). ``spiking_layer(..., weight_gain=g)`` overrides.
        neuron_arguments: a function ``(kw) -> kw`` that adapts the keyword arguments before the class is
            called (e.g. clamp a masked PSN's band to the window); None for none.
        defaults: sensible training defaults (merged under a config's ``model.neuron`` by ``build_model``).
        cpu_engine: what runs the sequence on CPU by default (one short phrase, for the support matrix).
        gpu_engine: what runs it on CUDA by default (``backend="auto"``).
        onnx: how :func:`dendrix.export.to_onnx` exports the kind: ``"step"`` (one time step with its state) or
            ``"window"`` (the whole window of a kind that does not stream).
        nir: whether :func:`dendrix.export.to_nir` can express the kind (as an exact NIR node).

    Every kind compiles with ``torch.compile(fullgraph=True)`` (``tests/test_compile.py`` checks each registered
    kind), so there is no trait for it. ``tests/test_support_matrix.py`` checks the ``onnx`` and ``nir`` traits
    against the exporters and that ``docs/support-matrix.md`` is the table generated from these traits.
    """

    kind: str
    cls: type
    family: str
    description: str
    width: str | None = None
    per_channel: bool = False
    own_recurrence: bool = False
    needs_time_steps: bool = False
    time_steps_arg: str = "T"
    streams: bool = True
    layer: Union[bool, Callable[..., nn.Module], None] = None
    neuron: Callable[..., nn.Module] | None = None
    weight_gain: WeightGain = 1.0
    neuron_arguments: Callable[[dict], dict] | None = None
    defaults: dict = field(default_factory=dict)
    cpu_engine: str = ""
    gpu_engine: str = ""
    onnx: str = "step"
    nir: bool = False

    @property
    def owns_layer(self) -> bool:
        """Whether the kind builds its own synaptic layer (``spiking_layer`` returns ``cls``, not a Linear + neuron)."""
        return self.layer is not None and self.layer is not False


_REGISTRY: dict[str, Registration] = {}
_loaded = False


def register(kind: str, cls: type, *, family: str, description: str, width: str | None = None,
             per_channel: bool = False, own_recurrence: bool = False, needs_time_steps: bool = False,
             time_steps_arg: str = "T", streams: bool = True,
             layer: Union[bool, Callable[..., nn.Module], None] = None, neuron: Callable[..., nn.Module] | None = None,
             weight_gain: WeightGain = 1.0, neuron_arguments: Callable[[dict], dict] | None = None,
             defaults: dict | None = None, cpu_engine: str = "", gpu_engine: str = "", onnx: str | None = None,
             nir: bool = False) -> Registration:
    """Register ``cls`` as neuron kind ``kind`` with its traits (see :class:`Registration`); returns the entry."""
    if not isinstance(kind, str) or not kind:
        raise TypeError(f"kind must be a non-empty str, got {kind!r}")
    if not isinstance(cls, type) or not issubclass(cls, nn.Module):
        raise TypeError(f"register({kind!r}, cls): cls must be an nn.Module class, got {cls!r}")
    if layer not in (None, False, True) and not callable(layer):
        raise TypeError(f"register({kind!r}): layer must be None, True or a callable, got {layer!r}")
    if (layer is None or layer is False) and neuron is not None:
        raise ValueError(f"register({kind!r}): neuron= is only for kinds that build their own layer (layer=...)")
    if per_channel and width is None:
        raise ValueError(f"register({kind!r}): per_channel=True needs width= (the argument it fills)")
    if not (callable(weight_gain) or (isinstance(weight_gain, (int, float)) and weight_gain > 0)):
        raise ValueError(f"register({kind!r}): weight_gain must be a positive number or a callable, "
                         f"got {weight_gain!r}")
    onnx = onnx if onnx is not None else ("step" if streams else "window")
    if onnx not in ("step", "window"):
        raise ValueError(f"register({kind!r}): onnx must be 'step' or 'window', got {onnx!r}")
    kind = kind.lower()
    entry = Registration(kind, cls, family, description, width, per_channel, own_recurrence, needs_time_steps,
                         time_steps_arg, streams, layer, neuron, weight_gain, neuron_arguments, dict(defaults or {}),
                         cpu_engine, gpu_engine, onnx, bool(nir))
    if kind in _REGISTRY and _REGISTRY[kind].cls is not cls:
        raise ValueError(f"neuron kind {kind!r} is already registered (to {_REGISTRY[kind].cls.__name__})")
    _REGISTRY[kind] = entry
    return entry


def unregister(kind: str) -> Registration:
    """Remove ``kind`` from the registry (e.g. a kind registered by a test or a notebook); returns its entry."""
    key = kind.lower() if isinstance(kind, str) else kind
    if key not in _REGISTRY:
        raise ValueError(f"unknown neuron kind {kind!r}; available: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY.pop(key)


def builtin_modules() -> list[str]:
    """Every module of :data:`BUILTIN_PACKAGES` (the one place the built-in neuron files are listed: the folders)."""
    names = []
    for package_name in BUILTIN_PACKAGES:
        package = importlib.import_module(package_name)
        names += [f"{package_name}.{info.name}" for info in pkgutil.iter_modules(package.__path__)
                  if not info.name.startswith("_")]
    return sorted(names)


def _load_builtins() -> None:
    global _loaded
    if _loaded:
        return
    for name in builtin_modules():
        importlib.import_module(name)  # every built-in module ships with the package: a failure is a real error
    _loaded = True


def available() -> list[str]:
    """Names of all registered neuron kinds."""
    _load_builtins()
    return sorted(_REGISTRY)


def describe(kind: str) -> Registration:
    """The :class:`Registration` (class and traits) of ``kind``."""
    _load_builtins()
    key = kind.lower() if isinstance(kind, str) else kind
    if key not in _REGISTRY:
        raise ValueError(f"unknown neuron kind {kind!r}; available: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[key]


def _time_steps(reg: Registration, kind: str, time_steps: int | None, kw: dict) -> dict:
    if reg.needs_time_steps:
        if time_steps is None:
            raise ValueError(f"neuron kind {kind!r} needs time_steps= (its weights are T×T)")
        kw[reg.time_steps_arg] = time_steps
    return kw


def _neuron(reg: Registration, kind: str, n: int, per_channel: bool, kw: dict) -> nn.Module:
    """The activation-style neuron of ``reg`` for ``n`` neurons (kw already holds time_steps)."""
    if per_channel and not reg.per_channel:
        raise TypeError(f"neuron kind {kind!r} has no per_channel option "
                        f"({'its width is always set' if reg.width else 'it is shape-agnostic'})")
    if reg.width is not None and (per_channel or not reg.per_channel):
        kw[reg.width] = n
    if reg.neuron_arguments is not None:
        kw = reg.neuron_arguments(kw)
    return reg.cls(**kw)


def spiking_layer(kind: str, in_features: int, out_features: int, *, time_steps: int | None = None,
                  bias: bool | None = None, weight_gain: float | None = None, per_channel: bool = False,
                  **kw) -> nn.Module:
    """Build a ``[T, B, in_features] -> [T, B, out_features]`` spiking layer of neuron ``kind``.

    Activation-style kinds: ``SpikingLinear(in_features, out_features, neuron)`` with the neuron built first
    (``width`` = ``out_features``), then the Linear, whose initial weight and bias are multiplied by
    ``weight_gain`` (default: the kind's registered gain); ``bias`` defaults to True. Kinds with their own
    synaptic layer: that layer, ``cls(in_features, out_features, **kw)`` (``bias``, if given, is passed on and
    otherwise the layer's own default applies; ``weight_gain`` and ``per_channel`` are refused).

    ``time_steps`` is needed only by kinds whose parameters depend on T (PSN); other kinds ignore it.
    ``per_channel=True`` gives kinds that support it one parameter per output neuron. Remaining keywords go to
    the neuron (or layer) constructor.
    """
    reg = describe(kind)
    kw = _time_steps(reg, kind, time_steps, kw)
    if reg.owns_layer:
        if weight_gain is not None or per_channel:
            raise TypeError(f"neuron kind {kind!r} builds its own synaptic layer: weight_gain= and per_channel= "
                            f"apply only to Linear + neuron kinds")
        if bias is not None:
            kw["bias"] = bias
        build = reg.cls if reg.layer is True else reg.layer
        return build(in_features, out_features, **kw)
    from .layers.spiking import SpikingLinear  # registry.py sits below layers/: import on use
    from .validation import check_positive
    neuron = _neuron(reg, kind, out_features, per_channel, kw)
    if weight_gain is not None:
        gain = check_positive("weight_gain", weight_gain)
    else:
        gain = reg.weight_gain(neuron) if callable(reg.weight_gain) else float(reg.weight_gain)
    layer = SpikingLinear(in_features, out_features, neuron, bias=True if bias is None else bias)
    if gain != 1.0:
        with torch.no_grad():
            layer.linear.weight.mul_(gain)
            if layer.linear.bias is not None:
                layer.linear.bias.mul_(gain)
    return layer


def spiking_neuron(kind: str, n: int, *, time_steps: int | None = None, per_channel: bool = False,
                   **kw) -> nn.Module:
    """The neuron of ``kind`` alone, for ``n`` neurons: ``[T, B, *, n] -> [T, B, *, n]``, no synaptic weights.

    * Activation-style kinds: ``cls(**kw)`` with the width argument set to ``n`` (shape-agnostic kinds such as
      LIF ignore ``n``; PLIF and DA-LIF use it with ``per_channel=True``). This is the module that
      ``spiking_layer`` puts after its Linear, built the same way.
    * Kinds that own their synapses build the neuron they use without them (their ``neuron`` trait): DLIF
      gives its soma, a :class:`~dendrix.neurons.lif.LIF` with soft reset (DLIF's ``tau``, ``v_threshold``,
      ``decay_input``, ``detach_reset``, ``surrogate`` and ``lif_backend`` as its ``backend``); DGN and S-DGN
      give :class:`~dendrix.neurons.dgn.DGN`, the gated membrane with one synapse per neuron (its own input
      channel's trace opens the conductance and injects the current). Keywords of the synapses alone (DLIF's
      ``sparsity``, ``rank``; ``recurrent``) are refused with a TypeError that names them.

    ``time_steps`` is needed only by kinds whose parameters depend on T (PSN).
    """
    from .validation import check_int
    n = check_int("n", n, minimum=1)
    reg = describe(kind)
    kw = _time_steps(reg, kind, time_steps, kw)
    if reg.owns_layer:
        if reg.neuron is None:
            raise TypeError(f"neuron kind {kind!r} is a synaptic layer without a neuron of its own; "
                            f"use dendrix.spiking_layer({kind!r}, in_features, out_features)")
        if per_channel:
            raise TypeError(f"neuron kind {kind!r} has no per_channel option")
        return reg.neuron(n, **kw)
    return _neuron(reg, kind, n, per_channel, kw)
