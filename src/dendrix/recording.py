"""``with dendrix.record(model) as rec:`` — capture spikes and internal traces per layer without changing models."""

from __future__ import annotations

from collections import defaultdict
from contextlib import contextmanager
from typing import Iterator

from torch import Tensor, nn

from .contract import Neuron

__all__ = ["record", "Recording"]


class Recording:
    """Per-layer traces, keyed by the module's qualified name in the model.

    ``rec.spikes[name]`` is the layer's output ``[T, B, *]``; ``rec.states[name][trace]`` holds the traces the
    model reports (``"v"`` for the membrane potential, model-specific names for branches/compartments).
    Traces from several calls are kept in call order as lists; the properties return the latest call.
    """

    def __init__(self, to_cpu: bool = True):
        self.to_cpu = to_cpu
        self.calls: dict[str, list[dict[str, Tensor]]] = defaultdict(list)

    def _store(self, layer: str, trace: str, value: Tensor) -> None:
        value = value.detach()
        if self.to_cpu:
            value = value.cpu()
        calls = self.calls[layer]
        if not calls or trace in calls[-1]:
            calls.append({})
        calls[-1][trace] = value

    @property
    def spikes(self) -> dict[str, Tensor]:
        return {k: v[-1]["spikes"] for k, v in self.calls.items() if v and "spikes" in v[-1]}

    @property
    def states(self) -> dict[str, dict[str, Tensor]]:
        return {k: {n: t for n, t in v[-1].items() if n != "spikes"} for k, v in self.calls.items() if v}

    def layers(self) -> list[str]:
        return list(self.calls)

    def clear(self) -> None:
        self.calls.clear()


def _outermost_neurons(model: nn.Module) -> Iterator[tuple[str, Neuron]]:
    """Neuron modules that are not inside another Neuron (a SpikingLinear records once, not twice)."""
    taken: list[str] = []
    for name, mod in model.named_modules():
        if isinstance(mod, Neuron) and not any(t == "" or name.startswith(t + ".") for t in taken):
            taken.append(name)
            yield name or type(mod).__name__, mod


@contextmanager
def record(model: nn.Module, *, to_cpu: bool = True, states: bool = True) -> Iterator[Recording]:
    """Context manager that records, per neuron layer of ``model``, the output spikes (and with ``states`` the
    internal traces) of every call inside the ``with`` block, without changing the model; yields the
    :class:`Recording`. ``to_cpu`` moves the recorded tensors to the CPU."""
    rec = Recording(to_cpu=to_cpu)
    handles, hooked = [], []
    for name, layer in _outermost_neurons(model):
        def on_output(mod, inputs, output, _name=name):
            out = output[0] if isinstance(output, tuple) else output
            if isinstance(out, Tensor):
                rec._store(_name, "spikes", out)
        handles.append(layer.register_forward_hook(on_output))
        if states:
            # Inner neurons (e.g. SpikingLinear.neuron) report their traces under the outer layer's name.
            for sub in layer.modules():
                if isinstance(sub, Neuron):
                    sub._recorder = (lambda trace, value, _name=name: rec._store(_name, trace, value))
                    hooked.append(sub)
    try:
        yield rec
    finally:
        for h in handles:
            h.remove()
        for sub in hooked:
            sub._recorder = None
