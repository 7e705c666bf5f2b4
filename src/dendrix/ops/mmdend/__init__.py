"""MMDEND's time-blocked kernel (``fused.py``) and its plain autograd version (``reference.py``).

:func:`chunked_mmdend` is the entry point :class:`dendrix.neurons.MMDEND` (``method="chunked"``, ``backend="fused"``) calls with the
block operators it builds from its parameters; :func:`reference_chunked_mmdend` takes the same arguments.
"""

from __future__ import annotations

from torch import Tensor

from ..custom_ops import compiling
from .fused import BLOCK, ChunkLayout, serial_graph
from .fused import chunked_mmdend as fused_chunked_mmdend
from .reference import reference_chunked_mmdend

__all__ = ["BLOCK", "ChunkLayout", "chunked_mmdend", "fused_chunked_mmdend", "serial_graph",
           "reference_chunked_mmdend"]


def chunked_mmdend(x: Tensor, M: Tensor, M_tail: Tensor | None, beta: Tensor, w: Tensor, g_in: Tensor, gain: Tensor,
                   offset: Tensor, vd0: Tensor, vs0: Tensor, lay: ChunkLayout
                   ) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """The fused kernel (:func:`~dendrix.ops.mmdend.fused.chunked_mmdend`), or, while ``torch.compile`` traces,
    its plain autograd form :func:`reference_chunked_mmdend` (same blocks; equal up to rounding): the fused
    kernel writes into strided views with ``out=``, which Dynamo does not trace, and the plain form is what
    the compiler can fuse."""
    if compiling():
        return reference_chunked_mmdend(x, M, M_tail, beta, w, g_in, gain, offset, vd0, vs0, lay)
    return fused_chunked_mmdend(x, M, M_tail, beta, w, g_in, gain, offset, vd0, vs0, lay)
