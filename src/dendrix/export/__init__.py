"""Deployment: per-step ONNX export with explicit state, and NIR export/import for what NIR can express.

* :func:`to_onnx`: one time step ``(x_t, *state) -> (y_t, *new_state)`` of any kind (``docs/export.md``).
* :func:`to_nir` / :func:`from_nir`: Linear/Conv/pooling/Flatten networks with LIF/PLIF/IF neurons.

Both need optional packages (``dendrix[onnx]``, ``dendrix[nir]``), imported when called.
"""

from .errors import ExportError, NIRUnsupported, ONNXUnsupported
from .nir import from_nir, to_nir
from .onnx import ONNXStep, to_onnx

__all__ = ["to_onnx", "ONNXStep", "to_nir", "from_nir", "ExportError", "ONNXUnsupported", "NIRUnsupported"]
