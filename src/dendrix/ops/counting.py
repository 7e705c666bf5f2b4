"""Operation-counting numerics shared by the energy analysis and the layers that declare their own counts.

A neuron or layer declares what one call costs with ``operation_counts(inputs, output) -> dict[str, float]``
(the protocol is described in :mod:`dendrix.analysis.energy`); these helpers compute the terms that several
of them share: the fan-out of a Linear or convolution and the active kept pairs of a bilinear term.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["is_integer_valued", "abs_sum", "conv_fanout_sum", "synapse_counts", "active_pairs",
           "pair_multiplicity"]

_CONV_FN = {nn.Conv1d: F.conv1d, nn.Conv2d: F.conv2d, nn.Conv3d: F.conv3d}


def is_integer_valued(x: Tensor) -> bool:
    """Whether ``x`` holds integers (binary spikes or SSF's integer spikes): such inputs drive ACs, not MACs."""
    if not x.is_floating_point():
        return True
    return bool(torch.equal(x, torch.round(x)))


def abs_sum(x: Tensor) -> float:
    """Σ |x| in float64 (the number of binary sub-spikes an integer spike tensor carries)."""
    return float(x.abs().sum(dtype=torch.float64))


def conv_fanout_sum(conv: nn.Module, x: Tensor) -> float:
    """Σ over input elements of |x| × (number of output elements it reaches), exact for stride/padding/groups:
    the convolution of |x| with a kernel of ones."""
    fn = next((f for cls, f in _CONV_FN.items() if isinstance(conv, cls)), None)
    if fn is None:
        raise TypeError(f"conv must be an nn.Conv1d/2d/3d, got {type(conv).__name__}")
    if conv.padding_mode != "zeros":
        raise NotImplementedError(f"energy counting of {type(conv).__name__} with padding_mode={conv.padding_mode!r}")
    ones = torch.ones_like(conv.weight)
    y = fn(x.abs().to(ones.dtype), ones, None, conv.stride, conv.padding, conv.dilation, conv.groups)
    return float(y.sum(dtype=torch.float64))


def synapse_counts(synapse: nn.Module, x: Tensor, y: Tensor) -> dict[str, float]:
    """``operation_counts`` of one call of an ``nn.Linear`` or ``nn.Conv1d/2d/3d`` on input ``x``, output ``y``.

    Integer-valued input: ``|x| × fan-out`` ACs (and the rate-1 capacity ``dense_spike_ops``); real-valued input:
    dense MACs. A bias costs one AC per output element. The ReLU baseline applies the weight as dense MACs.
    """
    if isinstance(synapse, nn.Linear):
        dense = float(x.numel()) * synapse.out_features
        active = abs_sum(x) * synapse.out_features
    else:
        dense = conv_fanout_sum(synapse, torch.ones_like(x))
        active = conv_fanout_sum(synapse, x)
    spikes = is_integer_valued(x)
    counts = {"synaptic_ac": active, "dense_spike_ops": dense} if spikes else {"synaptic_mac": dense}
    if synapse.bias is not None:
        counts["bias_ac"] = float(y.numel())
    counts["ann_synaptic_mac"] = dense
    if synapse.bias is not None:
        counts["ann_bias_ac"] = float(y.numel())
    if spikes:
        counts["input_spikes"] = abs_sum(x)
        counts["input_elements"] = float(x.numel())
    return counts


def pair_multiplicity(output: Tensor, i: Tensor, j: Tensor, n: int) -> Tensor:
    """[n, n] symmetric: for each pair (i, j), the number of outputs whose kept set holds it, from the kept
    entries ``(output, i, j)`` of a sparse pair layout (no dense ``[out, n, n]`` tensor)."""
    del output  # one entry per (output, pair): the count does not need which output
    counts = torch.zeros(n * n, dtype=torch.float64, device=i.device)
    ones = torch.ones(i.numel(), dtype=torch.float64, device=i.device)
    counts.index_add_(0, i * n + j, ones)
    counts.index_add_(0, j * n + i, ones)
    return counts.view(n, n)


def active_pairs(s: Tensor, multiplicity: Tensor) -> Tensor:
    """Σ over rows r of s [R, n] and outputs o of Σ_{i<j, (i,j) kept in o} |s_ri| |s_rj|.

    Computed without an [R, out, n] intermediate: with the co-activation A = |s|ᵀ|s| (summed over rows) and the
    pair multiplicity m_ij = #{o : (i,j) kept in K_o} (symmetric, zero diagonal), the count is ½ Σ_ij A_ij m_ij.
    """
    a = s.abs().to(torch.float64)
    coactive = a.T @ a
    return (coactive * multiplicity.to(coactive.device)).sum() / 2
