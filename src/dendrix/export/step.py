"""One time step of a model with its state made explicit: the form both exporters trace.

:func:`initial_state` and :func:`step_model` walk a model the way its ``forward`` does, one time step at a time:

* a :class:`~dendrix.contract.Neuron` steps with its own ``step(x_t, state)``; a
  :class:`~dendrix.layers.spiking.SpikingLinear` applies its Linear, then steps its neuron's own ``step`` (each
  neuron's single-step function, not the one-step call of its whole-sequence kernel);
* :class:`~dendrix.models.mlp.SpikingMLP` steps its hidden layers and applies its output Linear: the exported
  step returns the per-step logits, and the caller applies the readout over time (``model(x, per_step=True)``);
* ``nn.Sequential`` steps its children in order;
* a module without neurons inside (Linear, Flatten, Dropout, ...) is time-first and memoryless: it is applied to
  the step as a sequence of length one.

:func:`reference_copy` gives a copy of a model whose neurons run their ``"reference"`` engines (the plain
per-step definitions in ``ops/``, exact and traceable) instead of the fused, numba or Triton ones.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils import _pytree as pytree

from ..contract import Neuron
from ..layers.spiking import SpikingLinear
from ..models.mlp import SpikingMLP
from .errors import ExportError

__all__ = ["initial_state", "step_model", "reference_copy", "streams", "flatten_state", "unflatten_state"]

#: Attribute -> the value that selects a neuron's plain per-step engine (read at every call, not at init).
_REFERENCE_ENGINE = {"backend": "reference", "lif_backend": "reference"}
#: Neurons whose ``method`` chooses the parallel algorithm: the sequential recurrence is their step definition.
_SEQUENTIAL_METHOD = {"MMDEND": "sequential", "DRF": "sequential"}


def _has_neuron(module: nn.Module) -> bool:
    return any(isinstance(m, Neuron) for m in module.modules())


def streams(model: nn.Module) -> tuple[bool, str]:
    """Whether every neuron of ``model`` streams, and the name of the first one that does not."""
    for name, m in model.named_modules():
        if isinstance(m, Neuron) and not m.streaming:
            return False, f"{name or 'the model'} ({type(m).__name__})"
    return True, ""


def reference_copy(model: nn.Module) -> nn.Module:
    """A deep copy of ``model`` in eval mode whose neurons use their reference engines (same spikes)."""
    model = copy.deepcopy(model).eval()
    for m in model.modules():
        for attr, value in _REFERENCE_ENGINE.items():
            if isinstance(getattr(m, attr, None), str):
                setattr(m, attr, value)
        method = _SEQUENTIAL_METHOD.get(type(m).__name__)
        if method is not None and isinstance(getattr(m, "method", None), str):
            m.method = method
        for name in getattr(type(m), "export_constants", ()):
            _freeze(m, name)
    return model


def _freeze(module: nn.Module, name: str) -> None:
    """Embed ``module.<name>`` as a constant of the traced graph.

    A neuron lists in its class attribute ``export_constants`` the buffers that are hyper-parameters read as
    Python numbers (masked PSN's λ: a lifted buffer would make its branch data-dependent) and the methods that
    depend on its parameters alone (D-RF's, PMSN's and MMDEND's complex modes: ONNX has no complex ``exp``).
    A buffer becomes a plain tensor attribute; a method is evaluated once per argument tuple and replayed."""
    if name in module._buffers:
        value = module._buffers.pop(name)
        object.__setattr__(module, name, value)
        return
    method = getattr(module, name, None)
    if not callable(method):
        raise ExportError(f"{type(module).__name__}.export_constants names {name!r}, which is neither a buffer "
                          f"nor a method")
    cache: dict = {}

    def constant(*args: Any) -> Any:
        if args not in cache:
            with torch.no_grad():
                cache[args] = method(*args)
        return cache[args]

    object.__setattr__(module, name, constant)


def initial_state(model: nn.Module, x_t: Tensor) -> Any:
    """The resting state of ``model`` for one input step ``x_t`` (a nested tuple; ``()`` for memoryless parts)."""
    return _walk(model, x_t, None, want_state_only=True)[1]


def step_model(model: nn.Module, x_t: Tensor, state: Any) -> tuple[Tensor, Any]:
    """``(y_t, new_state)`` of ``model`` for one input step ``x_t`` from ``state`` (see the module docstring)."""
    return _walk(model, x_t, state, want_state_only=False)


def _walk(model: nn.Module, x_t: Tensor, state: Any, want_state_only: bool) -> tuple[Tensor, Any]:
    if isinstance(model, SpikingLinear):
        current = model.linear(x_t)
        return _walk(model.neuron, current, state, want_state_only)
    if isinstance(model, Neuron):
        if want_state_only:
            fresh = model.init_state(x_t)
            y_t, _ = model.step(x_t, fresh)  # the output shape feeds the next module's state
            return y_t, fresh
        return model.step(x_t, state)
    if isinstance(model, SpikingMLP):
        states, h = [], x_t
        for i, layer in enumerate(model.layers):
            h, s = _walk(layer, h, None if want_state_only else state[i], want_state_only)
            states.append(s)
        return model.output(h), tuple(states)
    if isinstance(model, nn.Sequential):
        states, h = [], x_t
        for i, child in enumerate(model):
            h, s = _walk(child, h, None if want_state_only else state[i], want_state_only)
            states.append(s)
        return h, tuple(states)
    if not _has_neuron(model):
        return model(x_t.unsqueeze(0))[0], ()  # time-first and memoryless: a sequence of length one
    raise ExportError(f"{type(model).__name__} holds spiking neurons but has no step form: export a Neuron, a "
                      f"SpikingMLP or an nn.Sequential of neurons and time-first layers")


def flatten_state(state: Any) -> tuple[list[Tensor], Any]:
    """The state's tensors in order (complex ones as real ``[..., 2]`` views, ONNX has no complex inputs) and
    the structure that :func:`unflatten_state` rebuilds it from."""
    leaves, spec = pytree.tree_flatten(state)
    complex_at = tuple(i for i, leaf in enumerate(leaves) if leaf.is_complex())
    flat = [torch.view_as_real(leaf) if leaf.is_complex() else leaf for leaf in leaves]
    return flat, (spec, complex_at)


def unflatten_state(flat: list[Tensor], structure: Any) -> Any:
    """The nested state that :func:`flatten_state` gave ``flat`` and ``structure`` for (complex views undone)."""
    spec, complex_at = structure
    leaves = [torch.view_as_complex(t.contiguous()) if i in complex_at else t for i, t in enumerate(flat)]
    return pytree.tree_unflatten(leaves, spec)
