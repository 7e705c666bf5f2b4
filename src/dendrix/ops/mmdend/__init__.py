"""MMDEND's time-blocked kernel (``fused.py``) and its plain autograd version (``reference.py``).

:func:`chunked_mmdend` is the entry point :class:`dendrix.neurons.MMDEND` (``method="chunked"``, ``backend="fused"``) calls with the
block operators it builds from its parameters; :func:`reference_chunked_mmdend` takes the same arguments.
"""

from __future__ import annotations

from torch import Tensor

from ..custom_ops import compiling
from .compiled import chunked_mmdend_op
from .fused import BLOCK, ChunkLayout, serial_graph
from .fused import chunked_mmdend as fused_chunked_mmdend
from .reference import reference_chunked_mmdend

__all__ = ["BLOCK", "ChunkLayout", "chunked_mmdend", "fused_chunked_mmdend", "serial_graph",
           "reference_chunked_mmdend"]


def chunked_mmdend(x: Tensor, M: Tensor, M_tail: Tensor | None, beta: Tensor, w: Tensor, g_in: Tensor, gain: Tensor,
                   offset: Tensor, vd0: Tensor, vs0: Tensor, lay: ChunkLayout
                   ) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """The fused kernel (:func:`~dendrix.ops.mmdend.fused.chunked_mmdend`); while ``torch.compile`` traces, the
    same kernel as the custom op ``dendrix::chunked_mmdend`` (``compiled.py``): Dynamo cannot trace the kernel's
    ``out=`` writes into strided views, and would unroll the per-step soma loop of its plain form
    :func:`reference_chunked_mmdend`."""
    if compiling():
        return chunked_mmdend_op(x, M, M_tail, beta, w, g_in, gain, offset, vd0, vs0, lay)
    return fused_chunked_mmdend(x, M, M_tail, beta, w, g_in, gain, offset, vd0, vs0, lay)
