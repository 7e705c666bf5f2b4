"""Lazy loading of optional Triton engines and the ``backend="auto"|"triton"`` choice (no Triton import here).

Each op with a Triton path (``dendrix.ops.alif``, ``dendrix.ops.rf``) keeps one :class:`TritonEngine` naming its
kernel module; that module is imported on first use only, so ``import dendrix`` never imports Triton. An
engine module provides ``unsupported_reason(x, *args) -> str | None``.
"""

from __future__ import annotations

import importlib
import importlib.util
from types import ModuleType

from torch import Tensor

__all__ = ["TritonEngine"]


class TritonEngine:
    """The Triton kernel module ``module`` (e.g. ``"dendrix.ops.alif.triton"``), imported once on first use."""

    def __init__(self, module: str):
        self.module = module
        self._engine: ModuleType | None = None
        self.import_error: str | None = None  # why it could not be imported (kept so we try once)

    def load(self) -> ModuleType | None:
        if self._engine is None and self.import_error is None:
            if importlib.util.find_spec("triton") is None:
                self.import_error = "the 'triton' package is not installed (pip install triton, or dendrix[gpu])"
            else:
                try:
                    self._engine = importlib.import_module(self.module)
                except Exception as err:  # noqa: BLE001 - any import failure means "no Triton here"
                    self.import_error = f"importing Triton failed: {type(err).__name__}: {err}"
        return self._engine

    @property
    def loaded(self) -> bool:
        return self._engine is not None

    def resolve(self, backend: str, x: Tensor, *args) -> str:
        """The engine that runs: ``"auto"`` becomes ``"triton"`` (CUDA tensor, Triton importable, case supported)
        or ``"fused"``; a forced ``"triton"`` that cannot run raises ``RuntimeError`` saying why; any other
        backend is returned unchanged. ``args`` go to the engine's ``unsupported_reason(x, *args)``."""
        if backend == "auto":
            if x.device.type != "cuda":
                return "fused"
            engine = self.load()
            return "triton" if engine is not None and engine.unsupported_reason(x, *args) is None else "fused"
        if backend == "triton":
            engine = self.load()
            if engine is None:
                raise RuntimeError(f"backend='triton' is not available: {self.import_error}")
            reason = engine.unsupported_reason(x, *args)
            if reason is not None:
                raise RuntimeError(f"backend='triton' cannot run this call: {reason}; use backend='auto' or 'fused'")
        return backend
