"""The plain version of MMDEND's chunked kernel: the same block operators and layout, ordinary autograd.

Blocks as in :func:`~dendrix.ops.mmdend.fused.chunked_mmdend`, but the branch nonlinearity is the library
function (``torch.tanh``, not ``2σ(2d) − 1``), the soma runs step by step and SSF's straight-through gradient
comes from ``clamp``: equal to the fused kernel up to rounding, and the yardstick for its hand-written backward.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from .fused import ChunkLayout

__all__ = ["reference_chunked_mmdend"]

_ACTIVATIONS = {"tanh": torch.tanh, "sigmoid": torch.sigmoid, "relu": F.relu, "gelu": F.gelu,
                "identity": lambda d: d}


def reference_chunked_mmdend(x: Tensor, M: Tensor, M_tail: Tensor | None, beta: Tensor, w: Tensor, g_in: Tensor,
                             gain: Tensor, offset: Tensor, vd0: Tensor, vs0: Tensor, lay: ChunkLayout
                             ) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Same arguments and outputs as :func:`~dendrix.ops.mmdend.fused.chunked_mmdend`; every output is
    differentiable."""
    T, N = x.shape
    B, D, Dp, J, K, L = lay.batch, lay.channels, lay.window, lay.branches, lay.compartments, lay.block
    activation = _ACTIVATIONS[lay.activation]
    state, vs = vd0, vs0
    spikes, potentials, branch_out = [], [], []
    for s in range(0, T, L):
        x_b = x[s:s + L]
        Lb = x_b.shape[0]
        Mb = M if Lb == L else M_tail
        g = x_b.view(Lb, B, D).index_select(-1, lay.index).view(Lb, B, J, Dp)             # [Lb, B, J, D']
        W = Mb @ torch.cat([g.permute(2, 0, 1, 3).reshape(J, Lb, B * Dp), state], 1)      # [J, Lb + K, B·D']
        d, state = W[:, :Lb], W[:, Lb:]
        f = activation(d)
        branch_out.append(d if lay.activation == "gelu" else f)
        weighted = (f * w.view(J, 1, 1)).view(J, Lb, B, Dp).permute(1, 2, 0, 3).reshape(Lb, B, J * Dp)
        u = x_b * g_in + torch.zeros(Lb, B, D, dtype=x.dtype, device=x.device).index_add(
            -1, lay.index, weighted).view(Lb, N)
        for i in range(Lb):
            vs = beta * vs + u[i]
            potentials.append(vs)
    v = torch.stack(potentials)
    clipped = (v * gain + offset).clamp(*lay.clip)
    levels = torch.floor(clipped.detach())
    if lay.levels:
        levels = levels.clamp(-lay.levels, lay.levels)
    spikes = levels + (clipped - clipped.detach())
    return spikes, v, torch.cat(branch_out, 1), state, vs
