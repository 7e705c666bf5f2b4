"""MMDEND's time-blocked kernel (``fused.py``) and its plain autograd version (``reference.py``).

:func:`chunked_mmdend` is the entry point :class:`dendrix.neurons.MMDEND` (``method="chunked"``, ``backend="fused"``) calls with the
block operators it builds from its parameters; :func:`reference_chunked_mmdend` takes the same arguments.
"""

from __future__ import annotations

from .fused import BLOCK, ChunkLayout, chunked_mmdend, serial_graph
from .reference import reference_chunked_mmdend

__all__ = ["BLOCK", "ChunkLayout", "chunked_mmdend", "serial_graph", "reference_chunked_mmdend"]
