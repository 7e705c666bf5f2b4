"""Resonate-and-fire sequences (Izhikevich RF and balanced RF, Higuchi et al. 2024).

``rf_sequence`` runs the explicit-Euler dynamics of ``SPEC.md`` over a whole sequence. ``backend``:
``"auto"``, ``"fused"`` (one autograd function with a hand-written backward, ``fused.py``), ``"triton"`` (one
Triton GPU kernel for the forward and one for the backward, ``triton.py``; optional, needs the ``triton`` package
and CUDA tensors), ``"numba"`` (the time loop compiled for CPU, parallel over neurons, ``numba_engine.py``;
optional, needs the ``numba`` package) or ``"reference"`` (plain autograd step loop, ``reference.py``).
``"auto"`` picks ``"triton"`` for CUDA tensors when Triton imports and the surrogate has a Triton form,
``"numba"`` for CPU tensors of one dtype when numba imports, else ``"fused"``. A forced backend is
always used as asked, or fails with an error saying why (``dendrix.ops.dispatch.resolve``). Triton is imported
on first use only.

Half-precision inputs are computed in float32 on every path (``dendrix.ops.dispatch.compute_dtype``) and the
outputs returned in the input dtype (the RF/BRF neurons pass float32 already).
"""

from __future__ import annotations

import torch
from torch import Tensor

from ...surrogate import SurrogateLike, get_surrogate
from ...validation import check_choice, check_positive, _as_float
from ..custom_ops import compiling
from ..dispatch import LazyEngine, compute_dtype, cuda_first, resolve
from . import compiled
from .fused import RFFunction
from .reference import rf_sequence_reference

__all__ = ["rf_sequence", "divergence_boundary", "BACKENDS", "resolve_backend"]

BACKENDS = ("auto", "fused", "triton", "numba", "reference")
TRITON_ENGINE = LazyEngine("dendrix.ops.rf.triton")
NUMBA_ENGINE = LazyEngine("dendrix.ops.rf.numba_engine", package="numba", install="pip install numba, or dendrix[fast]")


def resolve_backend(backend: str, x: Tensor, omega: Tensor, b0: Tensor, u0: Tensor, v0: Tensor, q0: Tensor,
                    surrogate, given: tuple | None = None) -> str:
    """The engine that runs (``"auto"`` -> ``"triton"`` on CUDA, ``"numba"`` on CPU, else ``"fused"``); a forced
    ``"triton"`` or ``"numba"`` that cannot run raises ``RuntimeError`` saying why. ``x`` in the compute dtype;
    ``surrogate`` a ``Surrogate``; ``given``: the tensors as the engines other than Triton receive them (numba
    needs one dtype: the fused engine would promote mixed float32/float64 arguments)."""
    numba_args = (x, omega, b0, u0, v0, q0) if given is None else given
    return resolve(backend, BACKENDS, auto=cuda_first(x.device, ("triton", "fused"), ("numba", "fused")),
                   checks={"triton": TRITON_ENGINE.check(x, omega, b0, u0, v0, q0, surrogate),
                           "numba": NUMBA_ENGINE.check(*numba_args, surrogate)})


def divergence_boundary(omega: Tensor, dt: float) -> Tensor:
    """BRF's p(ω) = (-1 + sqrt(1 - (dt ω)²)) / dt: the largest b for which the Euler-discretised oscillator
    does not grow. Defined for |dt ω| <= 1; beyond it the square root is clamped at 0 (p = -1/dt)."""
    return (-1 + torch.sqrt((1 - (dt * omega) ** 2).clamp_min(0))) / dt


def rf_sequence(x: Tensor, omega: Tensor, b0: Tensor, u0: Tensor, v0: Tensor, q0: Tensor | None = None, *,
                dt: float = 0.01, theta: float = 1.0, balanced: bool = False,
                surrogate: SurrogateLike = "double_gaussian", backend: str = "auto"):
    """RF (``balanced=False``) or BRF dynamics over ``x [T, *]``.

    Args:
        x: input current ``[T, *]``.
        omega: angular frequency ω (>= 0), broadcastable to one step ``[*]``.
        b0: damping without refractoriness, broadcastable to ``[*]``: RF ``b = b0`` (< 0), BRF
            ``b = b0 - q`` with ``b0 = p(ω) - b_offset``.
        u0, v0: initial real and imaginary parts of the state ``[*]``; q0: initial refractory variable
            (BRF; None = zeros).
        dt, theta: Euler step (0.01) and threshold (1.0).
    Returns:
        (spikes [T, *], u [T, *] (real part of the state, the "membrane potential"), v_last [*], q_last [*]).
    """
    check_choice("backend", backend, BACKENDS)
    dt, theta = check_positive("dt", dt), _as_float("theta", theta)
    if not isinstance(x, Tensor) or not x.is_floating_point() or x.dim() < 1:
        raise TypeError(f"rf_sequence: x must be a floating tensor [T, ...], got "
                        f"{tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__}")
    if q0 is None:
        q0 = torch.zeros_like(u0)
    sur = get_surrogate(surrogate)
    dtype = compute_dtype(x)
    args = (x, omega, b0, u0, v0, q0)
    # The Triton kernels read every tensor in the compute dtype; the other engines take mixed float32/float64
    # arguments as given, and half precision in float32.
    compute_args = [t.to(dtype) if isinstance(t, Tensor) else t for t in args]
    if dtype != x.dtype:
        args = compute_args
    engine = resolve_backend(backend, *compute_args, sur, given=tuple(args))
    if engine == "triton":
        outputs = TRITON_ENGINE.load().RFTritonFunction.apply(*compute_args, dt, theta, bool(balanced), sur)
        return tuple(t.to(x.dtype) for t in outputs)
    if engine == "numba":
        outputs = NUMBA_ENGINE.load().RFNumbaFunction.apply(*args, dt, theta, bool(balanced), sur)
    elif engine == "reference":
        outputs = rf_sequence_reference(*args, dt=dt, theta=theta, balanced=balanced, surrogate=sur)
    elif compiling() and compiled.supports(*args, sur):  # one custom op (traced, its loop would be unrolled)
        outputs = compiled.rf_sequence_op(*args, dt, theta, bool(balanced), sur)
    else:
        outputs = RFFunction.apply(*args, dt, theta, balanced, sur)
    return outputs if dtype == x.dtype else tuple(t.to(x.dtype) for t in outputs)
