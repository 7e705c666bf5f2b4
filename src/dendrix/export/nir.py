"""NIR export and import (``dendrix[nir]``) for the networks NIR can express exactly.

NIR describes neurons in continuous time; importers (SpikingJelly, snnTorch, Norse, ...) discretise them with
forward Euler at the step ``dt``. dendrix's LIF is that Euler step, so the mapping is exact (docs/export.md):

===================  =================================================================================
dendrix              NIR
===================  =================================================================================
``nn.Linear``        ``nir.Affine(weight, bias)``; ``nir.Linear(weight)`` without bias
``PerStep(Conv1d)``  ``nir.Conv1d`` (``PerStep(Conv2d)``: ``nir.Conv2d``), bias zeros when absent
``PerStep(pool)``    ``nn.AvgPool2d`` ↔ ``nir.AvgPool2d``; ``nn.LPPool2d(norm_type=1)`` (a sum) ↔ ``nir.SumPool2d``
``nn.Flatten``       ``nir.Flatten`` with the time and batch dims dropped (``start_dim - 2``)
``LIF`` (hard reset) ``nir.LIF(tau = τ·dt, r = 1, v_leak = v_reset, v_threshold, v_reset)``;
                     ``decay_input=False``: ``r = τ``
``PLIF``             as LIF with ``τ = 1/sigmoid(w)`` (per channel with ``channels=``)
===================  =================================================================================

Euler on ``τ_nir dv/dt = (v_leak − v) + r I`` gives ``v + (dt/τ_nir)(r I − (v − v_leak))``, which is dendrix's
``H = V + (X − (V − v_reset))/τ`` for ``τ = τ_nir/dt``, ``r = 1``, ``v_leak = v_reset`` (and ``H = V − (V −
v_reset)/τ + X`` for ``r = τ``). Every other module has no NIR form and raises
:class:`~dendrix.export.errors.NIRUnsupported` naming it and why (export those with ONNX).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from .._optional import require
from ..contract import Neuron
from ..layers.per_step import PerStep
from ..layers.spiking import SpikingLinear
from ..models.mlp import SpikingMLP
from ..neurons.lif import LIF, PLIF
from ..validation import check_positive
from .errors import NIRUnsupported

__all__ = ["to_nir", "from_nir", "NIR_REASONS"]

logger = logging.getLogger(__name__)

_ONNX = "; export it per step with dendrix.export.to_onnx instead"
#: Why each neuron class has no NIR form (NIR's neurons: LI, LIF, CubaLIF, IF, I; threshold; delay).
NIR_REASONS = {
    "DLIFLinear": "its dendritic bilinear term (products of input pairs) is no NIR node",
    "DLIFConv2d": "its dendritic bilinear term (products of input pairs) is no NIR node",
    "DGNLinear": "its gated conductances (input-dependent leak) are no NIR neuron",
    "DGN": "its gated conductance (input-dependent leak) is no NIR neuron",
    "DRF": "its complex resonating branches and adaptive threshold are no NIR neuron",
    "MMDEND": "its multi-compartment branches and integer SSF spikes are no NIR neuron",
    "SSF": "integer (shifted-scaled) spikes are no NIR threshold",
    "PMSN": "its multi-compartment modes and cumulative-sum soma are no NIR neuron",
    "ALIF": "its adaptive threshold is no NIR neuron",
    "DALIF": "its dendritic input and adaptive decay are no NIR neuron",
    "RF": "NIR has no resonate-and-fire neuron",
    "BRF": "NIR has no (balanced) resonate-and-fire neuron",
    "PSN": "its T×T weights mix time steps (not a neuron with state)",
    "MaskedPSN": "its T×T weights mix time steps (not a neuron with state)",
    "SlidingPSN": "its weights over a window of past inputs are no NIR neuron",
}


def _nir():
    return require("nir", needed_by="dendrix.export.nir")


# -- export ----------------------------------------------------------------------------------------------------
def _leaves(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The chain of modules that ``model`` applies in order."""
    if isinstance(model, SpikingLinear):
        return [("linear", model.linear), ("neuron", model.neuron)]
    if isinstance(model, SpikingMLP):
        out = []
        for i, layer in enumerate(model.layers):
            out += [(f"layers.{i}.{n}" if n else f"layers.{i}", m) for n, m in _leaves(layer)]
        return out + [("output", model.output)]
    if isinstance(model, nn.Sequential):
        out = []
        for name, child in model.named_children():
            out += [(f"{name}.{n}" if n else name, m) for n, m in _leaves(child)]
        return out
    return [("", model)]


def _lif_node(nir, neuron: LIF | PLIF, name: str, shape: tuple[int, ...], dt: float):
    if neuron.v_reset is None:
        raise NIRUnsupported(f"{name or 'the model'} ({type(neuron).__name__}) uses a soft reset "
                             f"(v_reset=None): NIR's LIF resets to v_reset{_ONNX}")
    if isinstance(neuron, PLIF):  # τ = 1 + e^{-w} in float64, so that import recovers w exactly
        tau = 1.0 + np.exp(-neuron.w.detach().double().cpu().numpy())
    else:
        tau = np.float64(neuron.tau)
    tau = np.broadcast_to(tau, shape).astype(np.float64)
    full = lambda value: np.full(shape, float(value), dtype=np.float64)  # noqa: E731
    r = np.ones(shape) if neuron.decay_input else tau.copy()
    return nir.LIF(tau=tau * dt, r=r, v_leak=full(neuron.v_reset), v_threshold=full(neuron.v_threshold),
                   v_reset=full(neuron.v_reset))


def _pair(value: Any) -> np.ndarray:
    return np.array(value if isinstance(value, (tuple, list)) else (value, value))


def _node(nir, name: str, module: nn.Module, shape: tuple[int, ...], dt: float):
    """The NIR node of ``module`` for per-step inputs of ``shape`` (no time or batch dim)."""
    where = f"{name or 'the model'} ({type(module).__name__})"
    if isinstance(module, nn.Linear):
        w = module.weight.detach().double().cpu().numpy()
        if module.bias is None:
            return nir.Linear(weight=w)
        return nir.Affine(weight=w, bias=module.bias.detach().double().cpu().numpy())
    if isinstance(module, nn.Flatten):
        if module.start_dim < 2 and module.start_dim >= 0:
            raise NIRUnsupported(f"{where}: a time-first Flatten must keep dims 0, 1 (time, batch); got "
                                 f"start_dim={module.start_dim}")
        end = module.end_dim if module.end_dim < 0 else module.end_dim - 2
        return nir.Flatten(input_type={"input": np.array(shape)}, start_dim=module.start_dim - 2, end_dim=end)
    if isinstance(module, PerStep):
        inner = module.module
        if isinstance(inner, (nn.Conv1d, nn.Conv2d)):
            w = inner.weight.detach().double().cpu().numpy()
            bias = (np.zeros(w.shape[0]) if inner.bias is None else inner.bias.detach().double().cpu().numpy())
            if inner.padding_mode != "zeros":
                raise NIRUnsupported(f"{where}: padding_mode={inner.padding_mode!r}; NIR pads with zeros")
            if isinstance(inner, nn.Conv1d):
                return nir.Conv1d(input_shape=shape[-1], weight=w, stride=inner.stride[0],
                                  padding=inner.padding if isinstance(inner.padding, str) else inner.padding[0],
                                  dilation=inner.dilation[0], groups=inner.groups, bias=bias)
            return nir.Conv2d(input_shape=tuple(shape[-2:]), weight=w, stride=inner.stride, padding=inner.padding,
                              dilation=inner.dilation, groups=inner.groups, bias=bias)
        if isinstance(inner, nn.AvgPool2d):
            if inner.ceil_mode or not inner.count_include_pad or inner.divisor_override is not None:
                raise NIRUnsupported(f"{where}: NIR's AvgPool2d has no ceil_mode, count_include_pad=False or "
                                     f"divisor_override")
            return nir.AvgPool2d(kernel_size=_pair(inner.kernel_size), stride=_pair(inner.stride or inner.kernel_size),
                                 padding=_pair(inner.padding))
        if isinstance(inner, nn.LPPool2d) and float(inner.norm_type) == 1.0 and not inner.ceil_mode:
            return nir.SumPool2d(kernel_size=_pair(inner.kernel_size), stride=_pair(inner.stride or inner.kernel_size),
                                 padding=np.array((0, 0)))
        if isinstance(inner, nn.Flatten):
            end = inner.end_dim if inner.end_dim < 0 else inner.end_dim - 1
            return nir.Flatten(input_type={"input": np.array(shape)}, start_dim=inner.start_dim - 1, end_dim=end)
        raise NIRUnsupported(f"{where}: PerStep({type(inner).__name__}) has no NIR node")
    if type(module) in (LIF, PLIF):
        return _lif_node(nir, module, name, shape, dt)
    if isinstance(module, (nn.Dropout, nn.Identity)):
        return None  # inference: the identity
    if isinstance(module, Neuron):
        reason = NIR_REASONS.get(type(module).__name__, "it is not one of NIR's neuron models (LIF with hard reset)")
        raise NIRUnsupported(f"{where} has no NIR form: {reason}{_ONNX}")
    raise NIRUnsupported(f"{where} has no NIR node{_ONNX}")


def to_nir(model: nn.Module, sample: Tensor, dt: float = 1e-4):
    """The NIR graph (``nir.NIRGraph``) of ``model``: a chain Input → modules → Output.

    Args:
        model: an ``nn.Sequential`` (nested ones too) of the modules in the table of :mod:`dendrix.export.nir`,
            a :class:`~dendrix.layers.spiking.SpikingLinear` of LIF/PLIF, or a
            :class:`~dendrix.models.SpikingMLP` of LIF/PLIF (its output layer becomes the last Affine; the
            readout over time is not part of the graph).
        sample: an input sequence ``[T, B, *]``; its first step gives the shapes.
        dt: the step in seconds that NIR's time constants are expressed in (τ_nir = τ·dt); an importer must
            use the same ``dt``. Default 1e-4, SpikingJelly's and most importers' default.

    Raises :class:`~dendrix.export.errors.NIRUnsupported` for a module without an exact NIR form.
    """
    nir = _nir()
    dt = check_positive("dt", dt)
    if not isinstance(sample, Tensor) or sample.dim() < 3:
        raise ValueError(f"to_nir: sample must be an input sequence [T, B, *], got "
                         f"{tuple(sample.shape) if isinstance(sample, Tensor) else type(sample).__name__}")
    nodes: dict[str, Any] = {"input": nir.Input(input_type={"input": np.array(sample.shape[2:])})}
    edges, previous, h = [], "input", sample[:1].detach()
    with torch.no_grad():
        for name, module in _leaves(model):
            node = _node(nir, name, module, tuple(h.shape[2:]), dt)
            h = module(h)
            if node is None:
                continue
            key = name or type(module).__name__.lower()
            if key in ("input", "output"):  # the graph's own Input and Output nodes
                key = f"{key}_layer"
            nodes[key] = node
            edges.append((previous, key))
            previous = key
    nodes["output"] = nir.Output(output_type={"output": np.array(h.shape[2:])})
    edges.append((previous, "output"))
    logger.info("NIR graph of %s: %d nodes", type(model).__name__, len(nodes))
    return nir.NIRGraph(nodes=nodes, edges=edges, type_check=False)


# -- import ----------------------------------------------------------------------------------------------------
def _chain(graph) -> list[str]:
    """The node names of ``graph`` from its Input to its Output; NIRUnsupported unless it is one chain."""
    nir = _nir()
    successors: dict[str, list[str]] = {}
    for source, target in graph.edges:
        successors.setdefault(source, []).append(target)
    inputs = [k for k, n in graph.nodes.items() if isinstance(n, nir.Input)]
    if len(inputs) != 1 or any(len(v) > 1 for v in successors.values()):
        raise NIRUnsupported("from_nir: only chains (one Input, no branches or recurrent edges) map to dendrix "
                             "modules")
    order, node = [], inputs[0]
    while node in successors:
        node = successors[node][0]
        if node in order:
            raise NIRUnsupported(f"from_nir: the graph has a cycle through {node!r}; recurrent graphs are not "
                                 f"supported")
        order.append(node)
    return [k for k in order if not isinstance(graph.nodes[k], nir.Output)]


def _uniform(value: np.ndarray, what: str) -> float:
    value = np.asarray(value, dtype=np.float64)
    if value.size and not np.all(value == value.flat[0]):
        raise NIRUnsupported(f"from_nir: {what} differs between neurons; dendrix's LIF/PLIF take one value")
    return float(value.flat[0])


def _lif_module(node, name: str, dt: float) -> nn.Module:
    tau = np.asarray(node.tau, dtype=np.float64) / dt
    if np.any(tau <= 1.0) or not np.all(np.isfinite(tau)):
        raise NIRUnsupported(f"from_nir: node {name!r}: tau/dt must be finite and > 1 (dendrix's decay 1/τ < 1), "
                             f"got {tau.min():g}..{tau.max():g}")
    r = np.asarray(node.r, dtype=np.float64)
    if np.allclose(r, 1.0, rtol=1e-9, atol=0):
        decay_input = True
    elif np.allclose(r, tau, rtol=1e-9, atol=0):
        decay_input = False
    else:
        raise NIRUnsupported(f"from_nir: node {name!r}: r must be 1 (input decayed by 1/τ) or τ/dt (not decayed)")
    v_reset = _uniform(node.v_reset, f"node {name!r} v_reset")
    if _uniform(node.v_leak, f"node {name!r} v_leak") != v_reset:
        raise NIRUnsupported(f"from_nir: node {name!r}: v_leak must equal v_reset (dendrix's LIF leaks to its reset)")
    v_threshold = _uniform(node.v_threshold, f"node {name!r} v_threshold")
    if np.all(tau == tau.flat[0]):
        return LIF(tau=float(tau.flat[0]), v_threshold=v_threshold, v_reset=v_reset, decay_input=decay_input)
    if tau.ndim != 1:
        raise NIRUnsupported(f"from_nir: node {name!r}: per-neuron tau over shape {tau.shape}; dendrix's PLIF "
                             f"has one tau per channel of the last dim")
    plif = PLIF(v_threshold=v_threshold, v_reset=v_reset, decay_input=decay_input, channels=tau.size)
    with torch.no_grad():  # 1/τ = sigmoid(w)  ⇔  w = −log(τ − 1)
        plif.w.copy_(torch.from_numpy(-np.log(tau - 1.0)))
    return plif


def _tuple(value: Any, n: int) -> tuple[int, ...]:
    value = np.atleast_1d(np.asarray(value)).astype(int).tolist()
    return tuple(value * n if len(value) == 1 else value)


def _module(node, name: str, dt: float) -> nn.Module:
    nir = _nir()
    tensor = lambda a: torch.from_numpy(np.asarray(a, dtype=np.float32))  # noqa: E731
    if isinstance(node, (nir.Affine, nir.Linear)):
        w = np.asarray(node.weight)
        linear = nn.Linear(w.shape[-1], w.shape[-2], bias=isinstance(node, nir.Affine))
        with torch.no_grad():  # every parameter set from the node (nothing left at its random init)
            linear.weight.copy_(tensor(w))
            if isinstance(node, nir.Affine):
                linear.bias.copy_(tensor(node.bias))
        return linear
    if isinstance(node, (nir.Conv1d, nir.Conv2d)):
        w = np.asarray(node.weight)
        two = isinstance(node, nir.Conv2d)
        n = 2 if two else 1
        padding = node.padding if isinstance(node.padding, str) else _tuple(node.padding, n)
        conv = (nn.Conv2d if two else nn.Conv1d)(w.shape[1] * int(node.groups), w.shape[0], tuple(w.shape[2:]),
                                                stride=_tuple(node.stride, n), padding=padding,
                                                dilation=_tuple(node.dilation, n), groups=int(node.groups))
        with torch.no_grad():
            conv.weight.copy_(tensor(w))
            conv.bias.copy_(tensor(node.bias))
        return PerStep(conv)
    if isinstance(node, nir.AvgPool2d):
        return PerStep(nn.AvgPool2d(_tuple(node.kernel_size, 2), _tuple(node.stride, 2), _tuple(node.padding, 2)))
    if isinstance(node, nir.SumPool2d):
        if any(_tuple(node.padding, 2)):
            raise NIRUnsupported(f"from_nir: node {name!r}: a padded SumPool2d has no dendrix form")
        return PerStep(nn.LPPool2d(1, _tuple(node.kernel_size, 2), _tuple(node.stride, 2)))
    if isinstance(node, nir.Flatten):
        start, end = int(node.start_dim), int(node.end_dim)
        return nn.Flatten(start + 2 if start >= 0 else start, end + 2 if end >= 0 else end)
    if isinstance(node, nir.LIF):
        return _lif_module(node, name, dt)
    raise NIRUnsupported(f"from_nir: node {name!r} ({type(node).__name__}) has no dendrix module (supported: "
                         f"Affine, Linear, Conv1d, Conv2d, AvgPool2d, SumPool2d, Flatten, LIF)")


def from_nir(graph: Any, dt: float = 1e-4) -> nn.Sequential:
    """A time-first dendrix ``nn.Sequential`` (``[T, B, *]`` in and out) from a NIR graph or a NIR file.

    Args:
        graph: a ``nir.NIRGraph`` or the path of a file written by ``nir.write``.
        dt: the step in seconds the graph's time constants are divided by (τ = τ_nir/dt), as in :func:`to_nir`.

    A uniform LIF becomes :class:`~dendrix.neurons.LIF`, one with a τ per channel a per-channel
    :class:`~dendrix.neurons.PLIF`; convolutions and pooling are wrapped in :class:`~dendrix.layers.PerStep`.
    Every weight and bias is taken from the graph. Raises :class:`NIRUnsupported` for what has no dendrix form.
    """
    nir = _nir()
    dt = check_positive("dt", dt)
    if isinstance(graph, (str, Path)):
        graph = nir.read(str(graph))
    if not isinstance(graph, nir.NIRGraph):
        raise TypeError(f"from_nir: graph must be a nir.NIRGraph or a file path, got {type(graph).__name__}")
    modules = [(name, _module(graph.nodes[name], name, dt)) for name in _chain(graph)]
    model = nn.Sequential()
    for name, module in modules:
        model.add_module(name.replace(".", "_"), module)
    return model.eval()
