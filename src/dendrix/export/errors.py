"""The typed errors of :mod:`dendrix.export`: one per format, each naming the module and why it cannot go."""

from __future__ import annotations

__all__ = ["ExportError", "ONNXUnsupported", "NIRUnsupported"]


class ExportError(ValueError):
    """A model (or one of its modules) cannot be exported in the requested format; the message says why."""


class ONNXUnsupported(ExportError):
    """:func:`dendrix.export.to_onnx` cannot export this model as asked (e.g. a per-step export of a kind that
    does not stream); the message names the module and the way that works."""


class NIRUnsupported(ExportError):
    """A module has no exact form in NIR's primitives; the message names it, says why, and points to ONNX."""
