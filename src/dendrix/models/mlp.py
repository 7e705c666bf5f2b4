"""Spiking multi-layer perceptrons for any registered neuron kind, feed-forward or recurrent.

Feed-forward (``recurrent=False``): every hidden layer is ``dendrix.spiking_layer(kind, n_in, n_out)``, i.e. a
Linear applied to all time steps at once followed by the neuron's whole-sequence (fused or parallel) kernel, or
the neuron's own synaptic layer (DLIF, DGN). No per-step autograd graph is built.

Recurrent (``recurrent=True``): hidden layer l receives its own spikes of the previous step,

    I[t] = W_in x[t] + W_rec s[t-1] + b,    s[t], state = neuron.step(I[t], state),    s[-1] = 0.

Kinds that have their own recurrent form (registered with ``own_recurrence=True``, e.g. DGN's
``DGNLinear(recurrent=True)``) use it. Other kinds are wrapped by :class:`RecurrentSpikingLayer`, which steps the
neuron with its ``step`` (the recurrence runs through the spikes, so this path is a step loop by nature).

The output layer is by default a non-spiking Linear read out over time (:mod:`dendrix.models.readout`);
``output="spiking"`` makes it a spiking layer of the same kind, read out from its spikes (the DGN paper's networks,
whose readout layer is a DGN layer too). Every model maps ``x [T, B, num_inputs] -> logits [B, num_classes]``.
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

import torch
from torch import Tensor, nn

from ..contract import Neuron, State
from ..layers.spiking import SpikingLinear
from ..registry import describe, spiking_layer
from ..validation import check_choice, check_int, check_positive, check_range, check_sequence
from .readout import READOUTS, apply_readout

__all__ = ["SpikingMLP", "RecurrentSpikingLayer", "has_native_recurrence", "scale_synaptic_weights", "OUTPUTS"]

OUTPUTS = ("linear", "spiking")


def has_native_recurrence(kind: str) -> bool:
    """Whether ``kind`` has its own recurrent form (its registered ``own_recurrence`` trait, e.g. DGN's)."""
    return describe(kind).own_recurrence


@torch.no_grad()
def scale_synaptic_weights(module: nn.Module, gain: float) -> None:
    """Multiply every weight matrix (``ndim >= 2`` parameter named ``weight``) under ``module`` by ``gain``,
    except recurrent weights, which keep their init."""
    for name, p in module.named_parameters():
        if name.rsplit(".", 1)[-1] == "weight" and p.dim() >= 2 and ".recurrent." not in f".{name}":
            p.mul_(gain)


class _RecurrentState(NamedTuple):
    spikes: Tensor       # s[t-1], [B, out]
    neuron: State        # the wrapped neuron's (or layer's) state


class RecurrentSpikingLayer(Neuron):
    """``[T, B, in] -> [T, B, out]`` with recurrent weights on the previous step's spikes, for any kind.

    For activation-style kinds (``spiking_layer`` returns a :class:`SpikingLinear`) the input projection
    ``W_in x + b`` is computed for all steps in one matmul and ``W_rec s[t-1]`` is added step by step before the
    neuron's ``step``. For synaptic layer kinds (DLIF, ...) without their own recurrent form, the layer is built
    with ``in + out`` inputs and stepped on ``concat(x[t], s[t-1])``.

    Args:
        kind: registry neuron kind.
        in_features, out_features: layer sizes.
        time_steps: sequence length (only kinds with T-dependent parameters need it).
        **neuron_kw: passed to the neuron/layer constructor.
    """

    def __init__(self, kind: str, in_features: int, out_features: int, time_steps: int | None = None,
                 **neuron_kw):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        layer = spiking_layer(kind, in_features, out_features, time_steps=time_steps, **neuron_kw)
        if isinstance(layer, SpikingLinear):
            self.inner = layer
            self.recurrent = nn.Linear(out_features, out_features, bias=False)
            self.concat = False
        else:
            self.inner = spiking_layer(kind, in_features + out_features, out_features, time_steps=time_steps,
                                       **neuron_kw)
            self.recurrent = None
            self.concat = True
        try:  # kinds whose output depends on future inputs (PSN's dense T x T weights) cannot be stepped
            with torch.no_grad():
                self.run(torch.zeros(1, 1, in_features))
        except ValueError as err:
            raise ValueError(f"neuron kind {kind!r} cannot run one time step at a time, so it cannot be used in a "
                             f"recurrent layer ({err})") from None

    def init_state(self, x_t: Tensor) -> _RecurrentState:
        spikes = x_t.new_zeros(*x_t.shape[:-1], self.out_features)
        if self.concat:
            inner = self.inner.init_state(torch.cat([x_t, spikes], dim=-1))
        else:
            inner = self.inner.neuron.init_state(spikes)
        return _RecurrentState(spikes, inner)

    def run(self, x: Tensor, state: _RecurrentState | None = None) -> tuple[Tensor, _RecurrentState]:
        self.check_input(x, self.in_features)
        if state is None:
            state = self.init_state(x[0])
        prev, inner = state
        outputs = []
        if self.concat:
            for x_t in x.unbind(0):
                prev, inner = self.inner.step(torch.cat([x_t, prev], dim=-1), inner)
                outputs.append(prev)
        else:
            drive = self.inner.linear(x)  # W_in x + b for all steps at once
            for d_t in drive.unbind(0):
                prev, inner = self.inner.neuron.step(d_t + self.recurrent(prev), inner)
                outputs.append(prev)
        return torch.stack(outputs), _RecurrentState(prev, inner)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}"


class SpikingMLP(nn.Module):
    """Spiking MLP ``x [T, B, num_inputs] -> logits [B, num_classes]`` for any registered neuron kind.

    Args:
        num_inputs: input channels C.
        num_classes: output classes.
        hidden: sizes of the spiking hidden layers (default ``(128,)``).
        kind: registry neuron kind (``dendrix.available()``), default ``"lif"``.
        neuron_kw: constructor keywords of the neuron/layer (merged over the kind's registry defaults by
            :func:`dendrix.models.build_model`, not here).
        recurrent: recurrent hidden layers (see the module docstring).
        readout: ``"mean"`` | ``"ce_sum"`` | ``"max"`` (see :mod:`dendrix.models.readout`).
        dropout: dropout probability on hidden spikes (0 disables).
        time_steps: sequence length T, needed by kinds with T-dependent weights (PSN).
        weight_gain: factor applied to the initial synaptic weight matrices of the hidden layers (default 1,
            PyTorch's Linear init). Sparse spike inputs give small currents under the default init; a gain > 1
            brings the membranes near threshold from the start so that the first epochs are not spent silent.
        output: ``"linear"`` (default: a non-spiking ``nn.Linear`` whose per-step currents are read out) or
            ``"spiking"`` (a feed-forward ``dendrix.spiking_layer(kind, hidden[-1], num_classes)`` with the hidden
            layers' neuron keywords and ``weight_gain``; the readout is applied to its output spikes, so the
            logits are firing rates (``"mean"``) or peaks (``"max"``)). The DGN paper's SHD network
            ``SpikingMLP(700, 20, (128,), kind="dgn", output="spiking")`` has its 184,320 parameters.
    """

    def __init__(self, num_inputs: int, num_classes: int, hidden: Sequence[int] = (128,), kind: str = "lif",
                 neuron_kw: dict | None = None, recurrent: bool = False, readout: str = "mean",
                 dropout: float = 0.0, time_steps: int | None = None, weight_gain: float = 1.0,
                 output: str = "linear"):
        super().__init__()
        check_int("num_inputs", num_inputs, 1)
        check_positive("weight_gain", weight_gain)
        check_int("num_classes", num_classes, 2)
        if isinstance(hidden, int):
            hidden = (hidden,)
        if len(hidden) == 0:
            raise ValueError("hidden must list at least one layer size, got []")
        for size in hidden:
            check_int("hidden layer size", size, 1)
        check_choice("readout", readout, READOUTS)
        self.output_kind = check_choice("output", output, OUTPUTS)
        check_range("dropout", dropout, 0.0, 1.0, high_open=True)
        neuron_kw = dict(neuron_kw or {})
        self.kind, self.readout, self.num_inputs, self.num_classes = kind, readout, num_inputs, num_classes
        self.per_step_loss = readout == "ce_sum"
        native = recurrent and has_native_recurrence(kind)
        layers: list[nn.Module] = []
        sizes = [num_inputs, *hidden]
        for n_in, n_out in zip(sizes[:-1], sizes[1:]):
            if native:
                layers.append(spiking_layer(kind, n_in, n_out, time_steps=time_steps, recurrent=True, **neuron_kw))
            elif recurrent:
                layers.append(RecurrentSpikingLayer(kind, n_in, n_out, time_steps=time_steps, **neuron_kw))
            else:
                layers.append(spiking_layer(kind, n_in, n_out, time_steps=time_steps, **neuron_kw))
        self.layers = nn.ModuleList(layers)
        if weight_gain != 1.0:
            scale_synaptic_weights(self.layers, weight_gain)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        if output == "spiking":
            self.output = spiking_layer(kind, sizes[-1], num_classes, time_steps=time_steps, **neuron_kw)
            if weight_gain != 1.0:
                scale_synaptic_weights(self.output, weight_gain)
        else:
            self.output = nn.Linear(sizes[-1], num_classes)

    def forward(self, x: Tensor, per_step: bool = False) -> Tensor:
        """Logits ``[B, classes]``; with ``per_step=True`` the output layer's ``[T, B, classes]`` before readout."""
        check_sequence(x, "SpikingMLP input", min_rank=3, features=self.num_inputs)
        h = x
        for layer in self.layers:
            h = self.dropout(layer(h))
        out = self.output(h)
        return out if per_step else apply_readout(out, self.readout)
