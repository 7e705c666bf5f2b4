"""Where the Triton kernel tests can run, shared by the ``test_*triton*.py`` files.

Kernels run on CUDA when a GPU and the ``triton`` package are present; without a GPU, in Triton's CPU
interpreter on CPU tensors when ``TRITON_INTERPRET=1`` is set (and ``triton`` is installed), e.g.::

    TRITON_INTERPRET=1 .venv/bin/python -m pytest -q tests/test_ops_lif_triton.py

Otherwise only the dispatch checks run (they need neither Triton nor a GPU).
"""

import importlib.util
import os

import pytest
import torch

from dendrix.surrogate import Surrogate

HAS_TRITON = importlib.util.find_spec("triton") is not None
INTERPRET = os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")
ON_CUDA = HAS_TRITON and torch.cuda.is_available()
DEVICE = "cuda" if ON_CUDA else "cpu"
RUNS_KERNELS = ON_CUDA or (HAS_TRITON and INTERPRET)
# What backend="auto" runs for CPU tensors of the LIF, ALIF and RF ops: the numba engine where numba imports.
CPU_AUTO = "numba" if importlib.util.find_spec("numba") is not None else "fused"
needs_kernels = pytest.mark.skipif(not RUNS_KERNELS, reason="needs CUDA + triton, or triton with TRITON_INTERPRET=1")


def random_like(*tensors, seed=5):
    """Seeded float64 normal tensors shaped, typed and placed like ``tensors`` (upstream gradients)."""
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(t.shape, generator=g, dtype=torch.float64).to(t.device, t.dtype) for t in tensors]


class UnsupportedSurrogate(Surrogate):
    """A user-defined surrogate: no Triton kernel knows it, so "auto" must fall back and "triton" must refuse."""

    name, param_name = "odd", "scale"

    def __init__(self):
        super().__init__(1.0)

    def derivative(self, x):
        return torch.ones_like(x)
