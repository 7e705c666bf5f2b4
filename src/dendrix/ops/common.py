"""Helpers shared by the fused (hand-written backward) engines of every op: time chunks and gradient reductions.

The fused engines work in **time chunks** of a few steps (about 32k elements), so every bulk operator works on
data that is still in cache and no temporary ``[T, B, N]`` tensor is allocated (``dendrix.ops.lif.fused``
explains the measurements behind it).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["CHUNK_ELEMENTS", "chunk_steps", "reduce_to", "as_python_scalar", "axpy_", "result_dtype",
           "mark_dead_spikes_"]

# Elements per chunk: below ATen's parallel grain size (32768), so chunk operators stay single-threaded and
# cache-resident (2 x 128 KB for float32).
CHUNK_ELEMENTS = 32767


def chunk_steps(step_numel: int, n_steps: int) -> int:
    """Time steps per chunk for one step of ``step_numel`` elements."""
    return max(1, min(n_steps, CHUNK_ELEMENTS // max(1, step_numel)))


def reduce_to(grad: Tensor, shape: torch.Size) -> Tensor:
    """Sum a one-step ``[*]`` gradient down to the shape of a broadcast parameter."""
    return grad.sum_to_size(shape) if len(shape) > 0 else grad.sum()


def as_python_scalar(value: float | Tensor) -> float | Tensor:
    """A one-element tensor as a Python float (operators then take it as a fused ``alpha``).

    While ``torch.compile`` traces, the tensor is returned as is: ``.item()`` would be a data-dependent value
    the graph cannot branch on (the engines accept a one-element tensor wherever they accept a float).
    """
    if isinstance(value, Tensor) and value.numel() == 1 and not torch.compiler.is_compiling():
        return float(value.item())
    return value


def axpy_(out: Tensor, coef: float | Tensor, y: Tensor) -> None:
    """``out += coef * y`` in place, for a float or tensor ``coef``."""
    if isinstance(coef, float):
        out.add_(y, alpha=coef)
    else:
        out.addcmul_(coef, y)


def result_dtype(a: Tensor | float, b: Tensor | float) -> torch.dtype:
    """``torch.result_type(a, b)``, also while ``torch.compile`` traces (Dynamo cannot put a dtype-valued call in
    a graph): there the same promotion is read from an addition of one-element stand-ins (0-dim for 0-dim
    tensors, as promotion depends on it), which the compiler drops."""
    if not torch.compiler.is_compiling():
        return torch.result_type(a, b)

    def stand_in(t):
        return t if not isinstance(t, Tensor) else t.new_zeros(() if t.dim() == 0 else (1,))
    return (stand_in(a) + stand_in(b)).dtype


def mark_dead_spikes_(spikes: Tensor, potential: Tensor, last: Tensor) -> Tensor:
    """NaN spikes where the potential compared with the threshold is NaN or -Inf, in place (the NaN/Inf policy
    of docs/reliability.md: a bad value gives a visible NaN spike, never silence; +Inf is above every threshold
    and fires). The numba and Triton engines apply the same rule per element (``s if potential > -inf else
    nan``), so the spikes agree bit for bit.

    ``last`` is the recurrence's final state (``[*]``): in every engine that calls this, a NaN or -Inf potential
    keeps the state non-finite to the end of the sequence (NaN and -Inf survive the leak, the reset and the
    input), so a finite ``last`` proves there is nothing to mark. On CPU that one small sum is the whole cost
    of the normal path (the loops stay as they were); elsewhere the mask is applied without the test, which
    would wait for the device.
    """
    if last.device.type == "cpu" and math.isfinite(float(last.sum())):  # an overflowing sum only costs a pass
        return spikes
    return spikes.masked_fill_(~(potential > -math.inf), math.nan)
