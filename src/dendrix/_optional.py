"""Optional dependencies: one import helper, so a missing extra is one line that names what to install.

``pip install dendrix`` brings torch and numpy only, enough for every neuron and layer on CPU. Everything else
belongs to an extra (``pyproject.toml``) and is imported through :func:`require` at the point of use::

    h5py = require("h5py", extra="data", needed_by="dendrix.data.shd")

A missing package raises ``ImportError: dendrix.data.shd needs h5py: pip install 'dendrix[data]'``.
"""

from __future__ import annotations

import importlib
import sys
from types import ModuleType

__all__ = ["require", "MissingExtra", "EXTRAS"]

# The distribution that provides an import name, where the two differ (for the message).
_DISTRIBUTIONS = {"sklearn": "scikit-learn", "yaml": "pyyaml"}

# Which extra ships each optional package (kept in step with pyproject.toml by tests/test_packaging.py).
EXTRAS = {
    "yaml": "train", "safetensors": "train", "tqdm": "train", "tensorboard": "tensorboard",
    "h5py": "data", "scipy": "data", "sklearn": "data",
    "matplotlib": "plot", "numba": "fast", "triton": "gpu",
    "nir": "nir", "onnx": "onnx", "onnxruntime": "onnx", "onnxscript": "onnx", "tonic": "tonic",
}


class MissingExtra(ImportError):
    """An optional package is not installed; the message names the dendrix extra that provides it."""


def require(module: str, extra: str | None = None, needed_by: str | None = None) -> ModuleType:
    """Import and return ``module`` (e.g. ``"scipy.signal"``), or raise :class:`MissingExtra` in one line.

    Args:
        module: the dotted module to import.
        extra: the dendrix extra that installs it (default: looked up in :data:`EXTRAS` by the top-level name).
        needed_by: what needs it, for the message (default: the calling module's name).
    """
    try:
        return importlib.import_module(module)
    except ImportError as err:
        top = module.split(".")[0]
        # Only a missing optional package becomes MissingExtra; a broken installation keeps its own error.
        missing = getattr(err, "name", None)
        if missing is not None and missing != top and not missing.startswith(top + "."):
            raise
        extra = extra or EXTRAS.get(top)
        if extra is None:
            raise ValueError(f"require: no dendrix extra is known for {top!r}; pass extra=") from None
        who = needed_by or sys._getframe(1).f_globals.get("__name__", "dendrix")
        dist = _DISTRIBUTIONS.get(top, top)
        raise MissingExtra(f"{who} needs {dist}: pip install 'dendrix[{extra}]'") from None
