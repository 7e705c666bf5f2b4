"""Adaptive LIF sequences (Yin et al. 2021): fused engine and plain reference behind one function.

``backend``: ``"auto"``, ``"fused"`` (one autograd function with a hand-written backward, ``fused.py``),
``"triton"`` (one Triton GPU kernel for the forward and one for the backward, ``triton.py``; optional, needs the
``triton`` package and CUDA tensors), ``"numba"`` (the time loop compiled for CPU, parallel over neurons,
``numba_engine.py``; optional, needs the ``numba`` package) or ``"reference"`` (plain autograd step loop,
``reference.py``). ``"auto"`` picks ``"triton"`` for CUDA tensors when Triton imports and the surrogate has a
Triton form, ``"numba"`` for CPU tensors when numba imports and the case is supported, else ``"fused"``; a
forced backend is always used as asked, or fails with an error saying why (``dendrix.ops.dispatch.resolve``).
Triton is imported on first use only. Half-precision inputs are integrated in float32
(``dendrix.ops.dispatch.compute_dtype``); spikes come back in the input dtype.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ...surrogate import SurrogateLike, get_surrogate
from ...validation import check_choice
from ..custom_ops import compiling
from ..dispatch import LazyEngine, compute_dtype, cuda_first, resolve
from . import compiled
from .fused import ALIFFunction
from .reference import alif_sequence_reference

__all__ = ["alif_sequence", "BACKENDS", "resolve_backend"]

BACKENDS = ("auto", "fused", "triton", "numba", "reference")
TRITON_ENGINE = LazyEngine("dendrix.ops.alif.triton")
NUMBA_ENGINE = LazyEngine("dendrix.ops.alif.numba_engine", package="numba", install="pip install numba, or dendrix[fast]")


def resolve_backend(backend: str, x: Tensor, u0: Tensor, surrogate) -> str:
    """The engine that runs (``"auto"`` -> ``"triton"`` on CUDA, ``"numba"`` on CPU, else ``"fused"``); a forced
    ``"triton"`` or ``"numba"`` that cannot run raises ``RuntimeError`` saying why. ``x``, ``u0`` in the compute dtype; ``surrogate`` a ``Surrogate``."""
    return resolve(backend, BACKENDS, auto=cuda_first(x.device, ("triton", "fused"), ("numba", "fused")),
                   checks={"triton": TRITON_ENGINE.check(x, u0, surrogate),
                           "numba": NUMBA_ENGINE.check(x, u0, surrogate)})


def alif_sequence(x: Tensor, u0: Tensor, a0: Tensor, s0: Tensor, alpha, rho, b0: float = 0.01, beta: float = 1.8,
                  surrogate: SurrogateLike = "double_gaussian", backend: str = "auto"
                  ) -> tuple[Tensor, Tensor, Tensor]:
    """Adaptive LIF over a sequence ``x [T, *]`` from state ``(u0, a0, s0)`` (each ``[*]``).

    ``alpha = exp(-1/tau_m)`` and ``rho = exp(-1/tau_adp)``: floats or tensors broadcastable to ``[*]`` (may
    require grad). Returns ``(spikes [T,*], U [T,*] membrane, a [*] adaptation after the last step)``; the
    spike of the last step is ``spikes[-1]``.
    """
    if not isinstance(x, Tensor) or not x.is_floating_point() or x.dim() < 1 or x.shape[0] == 0:
        raise ValueError(f"alif_sequence: x must be a floating tensor [T, ...] with T >= 1, got "
                         f"{tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__}")
    for name, s in (("u0", u0), ("a0", a0), ("s0", s0)):
        if not isinstance(s, Tensor) or tuple(s.shape) != tuple(x.shape[1:]):
            raise ValueError(f"alif_sequence: {name} must have the shape of one step {tuple(x.shape[1:])}, got "
                             f"{tuple(s.shape) if isinstance(s, Tensor) else type(s).__name__}")
    check_choice("backend", backend, BACKENDS)
    sg = get_surrogate(surrogate)
    dtype = compute_dtype(x)
    xs = x.to(dtype)
    u0, a0, s0 = (s.to(dtype) for s in (u0, a0, s0))
    coeffs = []
    for name, value in (("alpha", alpha), ("rho", rho)):
        value = value.to(dtype=dtype, device=x.device) if isinstance(value, Tensor) else \
            torch.tensor(float(value), dtype=dtype, device=x.device)
        try:
            if torch.broadcast_shapes(value.shape, u0.shape) != u0.shape:
                raise RuntimeError
        except RuntimeError:
            raise ValueError(f"alif_sequence: {name} of shape {tuple(value.shape)} must broadcast to one step "
                             f"{tuple(u0.shape)}") from None
        coeffs.append(value)
    alpha, rho = coeffs
    if compiling() and compiled.supports(sg) and (backend in ("numba", "fused") or
                                                  (backend == "auto" and xs.device.type == "cpu")):
        # While compiling: the engine eager mode runs (numba on CPU, else fused) as one custom op, resolved when
        # it runs (traced, the fused engine's time loops would be unrolled; numba cannot be traced).
        spikes, u, a = compiled.alif_sequence_op(xs, u0, a0, s0, alpha, rho, float(b0), float(beta), sg, backend)
        return spikes.to(x.dtype), u, a
    backend = resolve_backend(backend, xs, u0, sg)
    if backend == "reference":
        spikes, u, a = alif_sequence_reference(xs, u0, a0, s0, alpha, rho, float(b0), float(beta), sg)
    elif backend == "triton":
        engine = TRITON_ENGINE.load()
        spikes, u, a = engine.ALIFTritonFunction.apply(xs, u0, a0, s0, alpha, rho, float(b0), float(beta), sg)
    elif backend == "numba":
        engine = NUMBA_ENGINE.load()
        spikes, u, a = engine.ALIFNumbaFunction.apply(xs, u0, a0, s0, alpha, rho, float(b0), float(beta), sg)
    else:
        # compiling here: a CUDA call without Triton (one custom op), or a surrogate of the user's own (traced)
        function = compiled.alif_sequence_op if compiling() and compiled.supports(sg) else ALIFFunction.apply
        spikes, u, a = function(xs, u0, a0, s0, alpha, rho, float(b0), float(beta), sg)
    return spikes.to(x.dtype), u, a
