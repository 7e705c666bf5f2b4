"""Pieces shared by dendrix's Triton kernels (imported only when a Triton path is used).

* ``surrogate_kind`` / ``surrogate_constants`` / ``surrogate_derivative``: σ'(u) inside a kernel. Each
  :class:`dendrix.surrogate.Surrogate` class names its branch of ``surrogate_derivative`` (``triton_kind``) and
  computes the constants that branch reads (``triton_constants()``, double precision on the host); they are
  stored in the kernel's scalar table and the kernel passes a pointer to the first one (``params_ptr + OFFSET``).
* ``exact_exp``: full-precision float64 ``exp`` (libdevice) where the kernel runs in float64.
* ``interpreting`` (Triton's CPU interpreter, ``TRITON_INTERPRET=1``) and ``device_guard``.
"""

from __future__ import annotations

import os

import torch
import triton
import triton.language as tl
from torch import Tensor

from ..surrogate import SURROGATES, Surrogate

try:  # full-precision float64 exp on NVIDIA GPUs (unused by the CPU interpreter)
    from triton.language.extra import libdevice
except ImportError:  # pragma: no cover - older Triton layouts
    libdevice = None

__all__ = ["surrogate_kind", "surrogate_constants", "surrogate_unsupported_reason", "surrogate_derivative",
           "exact_exp", "interpreting", "device_guard", "MAX_SURROGATE_CONSTANTS"]

MAX_SURROGATE_CONSTANTS = 5  # constants the largest built-in branch of ``surrogate_derivative`` reads


def interpreting() -> bool:
    """Whether Triton runs in its CPU interpreter (``TRITON_INTERPRET=1``), which accepts CPU tensors."""
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


def surrogate_kind(surrogate: Surrogate) -> int:
    """The ``KIND`` constexpr of ``surrogate_derivative`` for this surrogate (its class's ``triton_kind``)."""
    kind = surrogate.triton_kind
    if kind is None:
        raise ValueError(f"no Triton kernel for surrogate {surrogate!r}")
    return kind


def surrogate_constants(surrogate: Surrogate) -> list[float]:
    """Constants of σ' precomputed in double precision (read by the ``surrogate_derivative`` branch)."""
    surrogate_kind(surrogate)
    return [float(c) for c in surrogate.triton_constants()]


def surrogate_unsupported_reason(surrogate: Surrogate) -> str | None:
    """Why the kernels cannot compute this surrogate's σ' (None when they can)."""
    if surrogate.triton_kind is None:
        names = ", ".join(sorted(cls.__name__ for cls in SURROGATES.values() if cls.triton_kind is not None))
        return f"surrogate {surrogate!r} has no Triton kernel (built-in ones do: {names})"
    return None


@triton.jit
def exact_exp(z, EXACT_EXP: tl.constexpr):
    """``exp(z)``: libdevice's exact exp when ``EXACT_EXP`` (float64), else Triton's fast ``tl.exp``."""
    if EXACT_EXP:
        return libdevice.exp(z)
    else:
        return tl.exp(z)


@triton.jit
def surrogate_derivative(u, params_ptr, KIND: tl.constexpr, EXACT_EXP: tl.constexpr):
    """σ'(u) of the surrogate whose ``triton_kind`` is ``KIND``; constants from ``surrogate_constants`` at
    ``params_ptr[0..]``. A new branch here, and ``triton_kind`` / ``triton_constants`` on the class, give a
    surrogate its Triton form."""
    c0 = tl.load(params_ptr)
    if KIND == 0:  # ATan
        c1 = tl.load(params_ptr + 1)
        z = c0 * u
        return c1 / (1.0 + z * z)
    elif KIND == 1:  # Sigmoid
        s = 1.0 / (1.0 + exact_exp(-(c0 * u), EXACT_EXP))
        return c0 * s * (1.0 - s)
    elif KIND == 2:  # Triangle
        return tl.maximum(1.0 - tl.abs(u) * c0, 0.0) * c0
    elif KIND == 3:  # FastSigmoid
        d = 1.0 + c0 * tl.abs(u)
        return 1.0 / (d * d)
    elif KIND == 4:  # Rectangular
        c1 = tl.load(params_ptr + 1)
        return tl.where(tl.abs(u) < c0, c1, 0.0 * u)
    else:  # DoubleGaussian
        c1 = tl.load(params_ptr + 1)
        c2 = tl.load(params_ptr + 2)
        c3 = tl.load(params_ptr + 3)
        c4 = tl.load(params_ptr + 4)
        z0 = c1 * u
        zp = c2 * (u - c0)
        zm = c2 * (u + c0)
        centre = c3 * exact_exp(-0.5 * (z0 * z0), EXACT_EXP)
        sides = exact_exp(-0.5 * (zp * zp), EXACT_EXP) + exact_exp(-0.5 * (zm * zm), EXACT_EXP)
        return centre - c4 * sides


def device_guard(t: Tensor):
    """A context that makes ``t``'s CUDA device current for a kernel launch (a no-op context for other devices)."""
    return torch.cuda.device(t.device) if t.device.type == "cuda" else _NoDevice()


class _NoDevice:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


