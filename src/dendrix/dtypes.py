"""The one dtype policy of every model and op: float16/bfloat16 are computed in float32, others in their own dtype.

Half-precision inputs are integrated in float32 (SpikingJelly's convention; FFTs and complex eigen-decompositions
need it too); spikes come back in the input dtype. It sits at the bottom of the package (beside ``validation``)
so that the contract, the neurons and ``dendrix.ops`` all read it from one place.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["HALF_DTYPES", "compute_dtype", "to_compute"]

HALF_DTYPES = (torch.float16, torch.bfloat16)


def compute_dtype(x: Tensor | torch.dtype) -> torch.dtype:
    """The dtype a tensor (or dtype) is computed in: float32 for float16/bfloat16, else its own."""
    dtype = x if isinstance(x, torch.dtype) else x.dtype
    return torch.float32 if dtype in HALF_DTYPES else dtype


def to_compute(x: Tensor | None) -> Tensor | None:
    """``x`` in its compute dtype (a copy only for half precision); None passes through."""
    if x is None or x.dtype not in HALF_DTYPES:
        return x
    return x.float()
