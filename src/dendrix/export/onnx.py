"""ONNX export of one time step with explicit state: ``(x_t, *state) -> (y_t, *new_state)``.

The exported graph is the step contract of DESIGN.md §2 (``y_t, state = model.step(x_t, state)``) with the state
flattened into tensors, so any ONNX runtime streams a model: feed ``x_t`` and the state, keep the new state for
the next step. Every neuron is traced through its single-step definition and reference engine
(:func:`dendrix.export.step.reference_copy`), which the fused and parallel kernels reproduce spike for spike.

Kinds that do not stream (PSN, masked PSN with λ < 1: the output at t depends on later inputs) have no step;
``to_onnx(..., window=True)`` exports their whole window ``x [T, B, *] -> y [T, B, *]`` instead, and a per-step
export of them raises :class:`~dendrix.export.errors.ONNXUnsupported` naming the module. See ``docs/export.md``.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from .._optional import require
from ..files import atomic_write
from ..neurons.ssf import SSF, expand_integer_spikes
from .errors import ONNXUnsupported
from .step import flatten_state, initial_state, reference_copy, step_model, streams, unflatten_state

__all__ = ["to_onnx", "ONNXStep"]

logger = logging.getLogger(__name__)


@dataclass
class ONNXStep:
    """What :func:`to_onnx` wrote: the file, the graph's input and output names, and the resting state.

    Attributes:
        path: the ``.onnx`` file.
        input_name: the name of the step input (``"x"``; ``"x"`` is the whole window when ``window``).
        state_names: the state inputs, in order (``"state_0"`` ...); output ``"new_state_i"`` is the new value
            of ``"state_i"``. Empty for a window export.
        output_name: ``"y"``.
        initial_state: the resting state for the example's batch size, numpy arrays in ``state_names`` order.
        window: True for a whole-window export (no state).
        substeps: the number of binary sub-steps per step in the output (``binary_substeps=True``), else None.
    """

    path: Path
    input_name: str
    state_names: list[str]
    output_name: str
    initial_state: list[Any] = field(repr=False)
    window: bool = False
    substeps: int | None = None


class _StepGraph(nn.Module):
    """``(x_t, *flat_state) -> (y_t, *flat_new_state)`` around :func:`step_model`."""

    def __init__(self, model: nn.Module, structure: Any, substeps: int | None):
        super().__init__()
        self.model, self.structure, self.substeps = model, structure, substeps

    def forward(self, x_t: Tensor, *flat: Tensor) -> tuple[Tensor, ...]:
        y_t, state = step_model(self.model, x_t, unflatten_state(list(flat), self.structure))
        if self.substeps is not None:  # [B, *] integers -> [substeps, B, *] in {-1, 0, 1}
            y_t = expand_integer_spikes(y_t.unsqueeze(0), self.substeps)[0]
        new_flat, _ = flatten_state(state)
        return (y_t, *new_flat)


class _WindowGraph(nn.Module):
    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x)


def _integer_levels(model: nn.Module) -> int:
    """Ū of the model's last integer-emitting neuron (MMDEND/SSF), for ``binary_substeps``."""
    levels = None
    for m in model.modules():
        if isinstance(m, SSF) and m.emits == "integer":
            levels = m.levels
    if levels is None:
        raise ONNXUnsupported(f"binary_substeps=True expands integer spikes, but {type(model).__name__} has no "
                              f"integer-spiking (SSF) neuron")
    return levels


def to_onnx(model: nn.Module, example_step_input: Tensor, path: str | Path, *, window: bool = False,
            binary_substeps: bool = False, opset_version: int | None = None) -> ONNXStep:
    """Export one time step of ``model`` with explicit state in and out to the ONNX file ``path``.

    Args:
        model: a dendrix neuron or layer (any registered kind), a :class:`~dendrix.models.SpikingMLP` (its step
            output is the per-step logits; apply the readout over time) or an ``nn.Sequential`` of neurons and
            time-first layers. The model itself is not changed (a copy is traced).
        example_step_input: one time step ``x_t`` ``[B, *]`` (the graph is exported for this shape); with
            ``window=True`` a whole window ``[T, B, *]``.
        path: the ``.onnx`` file to write.
        window: export the whole window ``x -> y`` instead of a step: the form for kinds that do not stream.
        binary_substeps: the step output of an integer-spiking (MMDEND/SSF) model as its Ū binary sub-steps
            ``[Ū, B, *]`` in {−1, 0, 1}, summing to the integer spikes (the accumulate-only inference form).
        opset_version: the ONNX opset (default: the exporter's).

    Returns an :class:`ONNXStep` with the names of the graph's inputs and outputs and the resting state.

    Raises:
        ONNXUnsupported: a per-step export of a model with a neuron that does not stream (use ``window=True``),
            or ``binary_substeps`` for a model without integer spikes.
        MissingExtra: onnx / onnxscript is not installed (``pip install 'dendrix[onnx]'``).
    """
    require("onnx", needed_by="dendrix.export.to_onnx")
    require("onnxscript", extra="onnx", needed_by="dendrix.export.to_onnx")
    if not isinstance(model, nn.Module):
        raise TypeError(f"to_onnx: model must be an nn.Module, got {type(model).__name__}")
    if not isinstance(example_step_input, Tensor):
        raise TypeError(f"to_onnx: example_step_input must be a tensor, got {type(example_step_input).__name__}")
    path = Path(path)
    traced = reference_copy(model)
    kwargs = {} if opset_version is None else {"opset_version": opset_version}
    if window:
        if binary_substeps:
            raise ONNXUnsupported("to_onnx: binary_substeps applies to a per-step export (window=False)")
        graph, args, inputs, outputs = _WindowGraph(traced), (example_step_input,), ["x"], ["y"]
        flat: list[Tensor] = []
    else:
        ok, which = streams(traced)
        if not ok:
            raise ONNXUnsupported(f"to_onnx: {which} does not stream (its output at t depends on later inputs), "
                                  f"so it has no per-step form; export its whole window with window=True")
        with torch.no_grad():
            flat, structure = flatten_state(initial_state(traced, example_step_input))
        substeps = _integer_levels(traced) if binary_substeps else None
        graph = _StepGraph(traced, structure, substeps)
        args = (example_step_input, *flat)
        inputs = ["x"] + [f"state_{i}" for i in range(len(flat))]
        outputs = ["y"] + [f"new_state_{i}" for i in range(len(flat))]
    path.parent.mkdir(parents=True, exist_ok=True)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter's deprecation chatter; errors still raise
        atomic_write(path, lambda tmp: torch.onnx.export(graph, args, tmp, input_names=inputs, output_names=outputs,
                                                         dynamo=True, external_data=False, verbose=False, **kwargs))
    logger.info("exported %s to %s (%d state tensors)", type(model).__name__, path, len(flat))
    return ONNXStep(path, "x", inputs[1:], "y", [t.detach().cpu().numpy() for t in flat], window,
                    None if window or not binary_substeps else graph.substeps)
