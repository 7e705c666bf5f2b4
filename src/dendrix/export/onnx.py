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
from .errors import ExportError, ONNXUnsupported
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
        initial_state: the resting state for the example's batch size, numpy arrays in ``state_names`` order
            (:meth:`state_for` gives it for another batch size).
        window: True for a whole-window export (no state).
        substeps: the number of binary sub-steps per step in the output (``binary_substeps=True``), else None.
        batch_axes: the batch axis of each state tensor (``None`` for one without, e.g. a step counter); the
            graph's batch dimension is dynamic (axis 0 of a step input, axis 1 of a window).
    """

    path: Path
    input_name: str
    state_names: list[str]
    output_name: str
    initial_state: list[Any] = field(repr=False)
    window: bool = False
    substeps: int | None = None
    batch_axes: list[int | None] = field(default_factory=list)

    def state_for(self, batch: int) -> list[Any]:
        """The resting state for ``batch`` samples (the resting state is the same for every sample: the first
        sample's, repeated along each state's batch axis)."""
        import numpy as np
        if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
            raise ValueError(f"ONNXStep.state_for: batch must be an int >= 1, got {batch!r}")
        states = []
        for value, axis in zip(self.initial_state, self.batch_axes):
            if axis is not None:
                value = np.repeat(np.take(value, [0], axis=axis), batch, axis=axis)
            states.append(value)
        return states


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


def _batch_axes(model: nn.Module, x_t: Tensor, flat: list[Tensor]) -> list[int | None]:
    """The batch axis of each state tensor: the one axis whose size follows the input's batch size (found by
    building the resting state for one more sample), or None for a state without one."""
    bigger = torch.cat([x_t, x_t[:1]])
    with torch.no_grad():
        other, _ = flatten_state(initial_state(model, bigger))
    batch, axes = x_t.shape[0], []
    for a, b in zip(flat, other):
        moved = [d for d in range(a.dim()) if a.shape[d] != b.shape[d]]
        if not moved:
            axes.append(None)
        elif len(moved) == 1 and a.shape[moved[0]] == batch and b.shape[moved[0]] == batch + 1:
            axes.append(moved[0])
        else:
            raise ExportError(f"to_onnx: a state of shape {tuple(a.shape)} does not carry the batch of "
                              f"{batch} on one axis of its own, so the graph cannot have a dynamic batch size")
    return axes


def to_onnx(model: nn.Module, example_step_input: Tensor, path: str | Path, *, window: bool = False,
            binary_substeps: bool = False, opset_version: int | None = None) -> ONNXStep:
    """Export one time step of ``model`` with explicit state in and out to the ONNX file ``path``.

    Args:
        model: a dendrix neuron or layer (any registered kind), a :class:`~dendrix.models.SpikingMLP` (its step
            output is the per-step logits; apply the readout over time) or an ``nn.Sequential`` of neurons and
            time-first layers. The model itself is not changed (a copy is traced).
        example_step_input: one time step ``x_t`` ``[B, *]`` (the graph is exported for this shape, with a
            dynamic batch size ``B``); with ``window=True`` a whole window ``[T, B, *]`` (``T`` stays fixed).
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
    batch_axis = 1 if window else 0
    if example_step_input.dim() <= batch_axis:
        raise ValueError(f"to_onnx: example_step_input must be shaped {'[T, B, *]' if window else '[B, *]'}, got "
                         f"shape {tuple(example_step_input.shape)}")
    path = Path(path)
    traced = reference_copy(model)
    batch = torch.export.Dim("batch")
    example = example_step_input
    if example.shape[batch_axis] == 1:  # torch.export specialises a size-1 dimension: trace with two samples
        example = torch.cat([example, example], dim=batch_axis)
    kwargs = {} if opset_version is None else {"opset_version": opset_version}
    if window:
        if binary_substeps:
            raise ONNXUnsupported("to_onnx: binary_substeps applies to a per-step export (window=False)")
        graph, args, inputs, outputs = _WindowGraph(traced), (example,), ["x"], ["y"]
        flat: list[Tensor] = []
        axes: list[int | None] = []
        dynamic_shapes: tuple = ({1: batch},)
    else:
        ok, which = streams(traced)
        if not ok:
            raise ONNXUnsupported(f"to_onnx: {which} does not stream (its output at t depends on later inputs), "
                                  f"so it has no per-step form; export its whole window with window=True")
        with torch.no_grad():
            flat, structure = flatten_state(initial_state(traced, example))
        axes = _batch_axes(traced, example, flat)
        substeps = _integer_levels(traced) if binary_substeps else None
        graph = _StepGraph(traced, structure, substeps)
        args = (example, *flat)
        dynamic_shapes = ({0: batch}, tuple({} if a is None else {a: batch} for a in axes))
        inputs = ["x"] + [f"state_{i}" for i in range(len(flat))]
        outputs = ["y"] + [f"new_state_{i}" for i in range(len(flat))]
    path.parent.mkdir(parents=True, exist_ok=True)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter's deprecation chatter; errors still raise
        atomic_write(path, lambda tmp: torch.onnx.export(
            graph, args, tmp, input_names=inputs, output_names=outputs, dynamo=True, external_data=False,
            verbose=False, dynamic_shapes=dynamic_shapes, **kwargs))
    logger.info("exported %s to %s (%d state tensors, dynamic batch)", type(model).__name__, path, len(flat))
    info = ONNXStep(path, "x", inputs[1:], "y", [t.detach().cpu().numpy() for t in flat], window,
                    None if window or not binary_substeps else graph.substeps, axes)
    if example is not example_step_input:  # the resting state for the caller's batch size
        info.initial_state = info.state_for(example_step_input.shape[batch_axis])
    return info
