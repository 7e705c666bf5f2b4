"""Leaky integrate-and-fire sequences: the fused engine shared by LIF, PLIF and DA-LIF.

``lif_sequence`` follows SpikingJelly's LIFNode conventions (1/tau decay, ``decay_input``, hard/soft reset);
``leaky_sequence`` is the general form it reduces to, ``H = leak·V + gain·X + bias`` (DA-LIF uses it with
independent learnable ``leak`` and ``gain``). ``backend``: ``"auto"``, ``"fused"`` (one autograd
function with a hand-written backward, ``fused.py``), ``"triton"`` (one Triton GPU kernel for the forward and
one for the backward, ``triton.py``; optional, needs the ``triton`` package and CUDA tensors), ``"numba"`` (the
time loop compiled for CPU, parallel over neurons, ``numba_engine.py``; optional, needs the ``numba`` package) or
``"reference"`` (plain autograd step loop, ``reference.py``). ``"auto"`` picks ``"triton"`` for CUDA tensors
when Triton imports and the case is supported (a surrogate with a Triton form); on CPU ``"numba"`` when numba
imports and the case is supported (float32/float64, a surrogate with a numba form); else ``"fused"``. A forced
backend is always used as asked, or fails with an error saying why (``dendrix.ops.dispatch.resolve``).

Half-precision inputs (float16/bfloat16) are integrated in float32 (``dendrix.ops.dispatch.compute_dtype``), as
SpikingJelly does: spikes come back in the input dtype, potentials in float32.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ...surrogate import SurrogateLike, get_surrogate
from ...validation import check_choice
from ..custom_ops import compiling
from ..dispatch import LazyEngine, compute_dtype, cuda_first, resolve
from . import compiled
from .fused import LeakyFunction
from .reference import leaky_sequence_reference, lif_sequence_reference

__all__ = ["lif_sequence", "leaky_sequence", "BACKENDS", "resolve_backend"]

BACKENDS = ("auto", "fused", "triton", "numba", "reference")


def _check_sequence_and_state(x, v0, fn: str) -> None:
    if not isinstance(x, Tensor) or not x.is_floating_point():
        raise TypeError(f"{fn}: x must be a floating torch.Tensor shaped [T, ...], got "
                        f"{x.dtype if isinstance(x, Tensor) else type(x).__name__}")
    if x.dim() < 1 or x.shape[0] == 0:
        raise ValueError(f"{fn}: x must be time-first [T, ...] with T >= 1, got shape {tuple(x.shape)}")
    if not isinstance(v0, Tensor):
        raise TypeError(f"{fn}: v0 must be a tensor shaped like one time step {tuple(x.shape[1:])}, got {type(v0).__name__}")
    if tuple(v0.shape) != tuple(x.shape[1:]):
        raise ValueError(f"{fn}: v0 has shape {tuple(v0.shape)} but one step of x has shape {tuple(x.shape[1:])}")


def _coefficient(name: str, value, like: Tensor, dtype: torch.dtype):
    """A float, or a tensor cast to the compute dtype that broadcasts against one time step."""
    if isinstance(value, Tensor):
        try:
            torch.broadcast_shapes(value.shape, like.shape)
        except RuntimeError:
            raise ValueError(f"{name} of shape {tuple(value.shape)} does not broadcast to a time step of shape "
                             f"{tuple(like.shape)}") from None
        if value.dim() > like.dim() or torch.broadcast_shapes(value.shape, like.shape) != like.shape:
            raise ValueError(f"{name} of shape {tuple(value.shape)} must broadcast to {tuple(like.shape)} without "
                             f"growing it")
        return value.to(dtype=dtype, device=like.device)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a float or a tensor, got {type(value).__name__}")
    return float(value)


TRITON_ENGINE = LazyEngine("dendrix.ops.lif.triton")  # imported on first use (optional, slow to import)
NUMBA_ENGINE = LazyEngine("dendrix.ops.lif.numba_engine", package="numba", install="pip install numba, or dendrix[fast]")


def resolve_backend(backend: str, x: Tensor, v0: Tensor, surrogate) -> str:
    """The engine that runs: ``"auto"`` becomes ``"triton"`` (CUDA tensor, Triton importable, case supported),
    ``"numba"`` (CPU tensor, numba importable, case supported) or ``"fused"``; a forced ``"triton"`` or
    ``"numba"`` that cannot run raises ``RuntimeError`` saying why.

    ``x``, ``v0`` in the compute dtype; ``surrogate`` a :class:`dendrix.surrogate.Surrogate`.
    """
    return resolve(backend, BACKENDS, auto=cuda_first(x.device, ("triton", "fused"), ("numba", "fused")),
                   checks={"triton": TRITON_ENGINE.check(x, v0, surrogate),
                           "numba": NUMBA_ENGINE.check(x, v0, surrogate)})


def leaky_sequence(x: Tensor, v0: Tensor, leak, gain=1.0, bias=0.0, *, v_threshold: float = 1.0,
                   v_reset: float | None = 0.0, detach_reset: bool = False, surrogate: SurrogateLike = "atan",
                   backend: str = "auto") -> tuple[Tensor, Tensor, Tensor]:
    """``H[t] = leak·V[t-1] + gain·X[t] + bias``, ``S = Θ(H - v_threshold)``, hard or soft (``v_reset=None``) reset.

    Returns ``(spikes [T,*], H [T,*] pre-reset potentials, V [*] post-reset potential after the last step)``.
    ``leak``, ``gain``, ``bias``: floats or tensors broadcastable to one step ``[*]`` (may require grad).
    """
    _check_sequence_and_state(x, v0, "leaky_sequence")
    check_choice("backend", backend, BACKENDS)
    sg = get_surrogate(surrogate)
    dtype = compute_dtype(x)
    xs, v0s = x.to(dtype), v0.to(dtype)
    leak = _coefficient("leak", leak, v0s, dtype)
    gain = _coefficient("gain", gain, v0s, dtype)
    bias = _coefficient("bias", bias, v0s, dtype)
    v_threshold = float(v_threshold)
    v_reset = None if v_reset is None else float(v_reset)
    if compiling() and compiled.supports(sg) and (backend in ("numba", "fused") or
                                                  (backend == "auto" and xs.device.type == "cpu")):
        # While compiling: the engine eager mode runs (numba on CPU, else fused), as one custom op that resolves
        # it when it runs (traced, the fused engine's time loops would be unrolled; numba cannot be traced).
        spikes, h, v_last = compiled.leaky_sequence_op(xs, v0s, leak, gain, bias, v_threshold, v_reset,
                                                       bool(detach_reset), sg, backend)
        return spikes.to(x.dtype), h, v_last
    backend = resolve_backend(backend, xs, v0s, sg)
    if backend == "reference":
        spikes, h, v_last = leaky_sequence_reference(xs, v0s, leak, gain, bias, v_threshold, v_reset,
                                                     detach_reset, sg)
    elif backend == "triton":
        spikes, h, v_last = TRITON_ENGINE.load().LeakyTritonFunction.apply(xs, v0s, leak, gain, bias, v_threshold,
                                                                     v_reset, bool(detach_reset), sg)
    elif backend == "numba":
        spikes, h, v_last = NUMBA_ENGINE.load().LeakyNumbaFunction.apply(xs, v0s, leak, gain, bias, v_threshold,
                                                                        v_reset, bool(detach_reset), sg)
    else:
        # compiling here: a CUDA call without Triton (one custom op), or a surrogate of the user's own (traced)
        function = compiled.leaky_sequence_op if compiling() and compiled.supports(sg) else LeakyFunction.apply
        spikes, h, v_last = function(xs, v0s, leak, gain, bias, v_threshold, v_reset, bool(detach_reset), sg)
    return spikes.to(x.dtype), h, v_last


def lif_sequence(x: Tensor, v0: Tensor, decay, v_threshold: float = 1.0, v_reset: float | None = 0.0,
                 decay_input: bool = True, detach_reset: bool = False, surrogate: SurrogateLike = "atan",
                 backend: str = "auto") -> tuple[Tensor, Tensor, Tensor]:
    """LIF over a whole sequence with SpikingJelly LIFNode conventions.

    ``decay_input=True``:  H[t] = V[t-1] + (X[t] - (V[t-1] - v_reset)) · decay
    ``decay_input=False``: H[t] = V[t-1] - (V[t-1] - v_reset) · decay + X[t]
    S[t] = Θ(H[t] - v_threshold); hard reset V = H (1 - S) + v_reset S, soft reset (``v_reset=None``, where
    v_reset counts as 0 in the charge equation) V = H - v_threshold S.

    Args:
        x: input current ``[T, *]``.  v0: membrane before the first step ``[*]``.
        decay: 1/tau, a float in (0, 1] or a tensor broadcastable to ``[*]`` (may require grad, as in PLIF).
        backend: ``"auto"`` | ``"fused"`` | ``"triton"`` | ``"numba"`` | ``"reference"``.

    Returns ``(spikes [T,*], h [T,*] = pre-reset H[t], v_last [*] = V after the last step)``.
    """
    _check_sequence_and_state(x, v0, "lif_sequence")
    check_choice("backend", backend, BACKENDS)
    if isinstance(decay, Tensor):
        dtype = compute_dtype(x)
        decay = _coefficient("decay", decay, v0, dtype)
    elif isinstance(decay, bool) or not isinstance(decay, (int, float)) or not 0.0 < float(decay) <= 1.0:
        raise ValueError(f"lif_sequence: decay (= 1/tau) must be a float in (0, 1] or a tensor, got {decay!r}")
    else:
        decay = float(decay)
    if backend == "reference":
        dtype = compute_dtype(x)
        spikes, h, v_last = lif_sequence_reference(x.to(dtype), v0.to(dtype), decay, float(v_threshold),
                                                   None if v_reset is None else float(v_reset), decay_input,
                                                   detach_reset, get_surrogate(surrogate))
        return spikes.to(x.dtype), h, v_last
    leak = 1.0 - decay
    gain = decay if decay_input else 1.0
    bias = decay * float(v_reset) if v_reset is not None and float(v_reset) != 0.0 else 0.0
    return leaky_sequence(x, v0, leak, gain, bias, v_threshold=v_threshold, v_reset=v_reset,
                          detach_reset=detach_reset, surrogate=surrogate, backend=backend)
