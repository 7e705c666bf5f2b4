"""Pieces shared by dendrix's Triton kernels (imported only when a Triton path is used).

* ``SURROGATE_KINDS`` / ``surrogate_constants`` / ``surrogate_derivative``: σ'(u) of the built-in surrogates
  inside a kernel. The host computes the constants in double precision and stores them in the kernel's scalar
  table; the kernel passes a pointer to the first one (``params_ptr + OFFSET``).
* ``exact_exp``: full-precision float64 ``exp`` (libdevice) where the kernel runs in float64.
* ``interpreting`` (Triton's CPU interpreter, ``TRITON_INTERPRET=1``) and ``device_guard``.
"""

from __future__ import annotations

import math
import os

import torch
import triton
import triton.language as tl
from torch import Tensor

from ..surrogate import ATan, DoubleGaussian, FastSigmoid, Rectangular, Sigmoid, Surrogate, Triangle

try:  # full-precision float64 exp on NVIDIA GPUs (unused by the CPU interpreter)
    from triton.language.extra import libdevice
except ImportError:  # pragma: no cover - older Triton layouts
    libdevice = None

__all__ = ["SURROGATE_KINDS", "surrogate_constants", "surrogate_derivative", "exact_exp", "interpreting",
           "device_guard", "MAX_SURROGATE_CONSTANTS"]

# Surrogate classes the kernels implement -> kernel code. Subclasses are not matched (they may redefine it).
SURROGATE_KINDS: dict[type, int] = {ATan: 0, Sigmoid: 1, Triangle: 2, FastSigmoid: 3, Rectangular: 4,
                                    DoubleGaussian: 5}
MAX_SURROGATE_CONSTANTS = 5


def interpreting() -> bool:
    """Whether Triton runs in its CPU interpreter (``TRITON_INTERPRET=1``), which accepts CPU tensors."""
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


def surrogate_constants(surrogate: Surrogate) -> list[float]:
    """Constants of σ' precomputed in double precision (the kernel code in ``surrogate_derivative``)."""
    kind, p = type(surrogate), surrogate.value
    if kind is ATan:
        return [math.pi / 2 * p, p / 2]                      # c1 / (1 + (c0 u)²)
    if kind is Sigmoid:
        return [p]                                           # c0 s (1 - s), s = 1 / (1 + exp(-c0 u))
    if kind is Triangle:
        return [1.0 / p]                                     # max(0, 1 - c0 |u|) c0
    if kind is FastSigmoid:
        return [p]                                           # 1 / (1 + c0 |u|)²
    if kind is Rectangular:
        return [p / 2, 1.0 / p]                              # c1 if |u| < c0
    if kind is DoubleGaussian:
        h, s = surrogate.h, surrogate.s
        norm = math.sqrt(2.0 * math.pi)
        # c3 exp(-½ (c1 u)²) - c4 [exp(-½ (c2 (u - c0))²) + exp(-½ (c2 (u + c0))²)]
        return [p, 1.0 / p, 1.0 / (s * p), (1.0 + h) / (p * norm), h / (s * p * norm)]
    raise ValueError(f"no Triton kernel for surrogate {surrogate!r}")


@triton.jit
def exact_exp(z, EXACT_EXP: tl.constexpr):
    if EXACT_EXP:
        return libdevice.exp(z)
    else:
        return tl.exp(z)


@triton.jit
def surrogate_derivative(u, params_ptr, KIND: tl.constexpr, EXACT_EXP: tl.constexpr):
    """σ'(u) for the built-in surrogates; constants from ``surrogate_constants`` at ``params_ptr[0..]``."""
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
    return torch.cuda.device(t.device) if t.device.type == "cuda" else _NoDevice()


class _NoDevice:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


