"""DGN numerics: presynaptic traces and the gated membrane of the dynamic-conductance gated neuron.

Equations (SPEC.md "DGN and S-DGN"; G and I are computed by the caller from the traces):

    D[t]  = λ·D[t-1] + z[t],  λ = exp(-dt/τ_s)                   (:func:`synaptic_trace`)
    Dr[t] = λ·Dr[t-1] + S[t-1]                                      (recurrent variant only)
    G[t]  = G_ff[t] + C_rec·Dr[t],   I[t] = I_ff[t] + W_rec·Dr[t]
    ρ[t]  = φ(1 − dt·G[t])                                          (φ = clamp to [0,1] or sigmoid)
    V[t]  = ρ[t]·V[t-1] + dt·I[t] − θ·S[t-1]                        (soft reset by the previous spike)
    S[t]  = Θ(V[t] − θ)                                             (surrogate gradient in backward)

Backends: ``"fused"`` (one autograd.Function per op over the whole sequence, hand-written backward),
``"triton"`` (Triton GPU kernels that run the whole time loop in one launch forward and one backward,
``triton.py``; optional, needs the ``triton`` package and CUDA tensors), ``"numba"`` (the CPU engine: the
recurrent membrane's time loop compiled, one call forward and one backward, ``numba_recurrent.py``; optional,
needs the ``numba`` package; the synaptic trace and the feed-forward membrane have no numba kernel, their loops
being whole-sequence operators already, and run the fused engine), ``"reference"`` (a plain per-step loop
differentiated by autograd) and ``"auto"``: ``"triton"`` for CUDA tensors when Triton imports and the case is
supported (float32/float64, built-in surrogate, recurrent layers up to ``AUTO_MAX_RECURRENT_FEATURES``
neurons), ``"numba"`` for the recurrent membrane on CPU when numba imports and the case is supported
(float32/float64 tensors of one dtype, a surrogate with a numba form, not while ``torch.compile`` traces), else
``"fused"``. A forced backend is always used as asked, or fails with an error saying why
(``dendrix.ops.dispatch.resolve``): a forced ``"numba"`` needs CPU tensors and numba for every DGN op, and for
the membrane also the dtype and surrogate conditions above.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from ...surrogate import Surrogate, SurrogateLike, get_surrogate
from ...validation import check_choice, check_nonnegative, check_positive
from ..custom_ops import compiling
from ..dispatch import LazyEngine, cuda_first, resolve
from ..threads import serial_on_cpu
from . import compiled
from .fused import DGNMembraneFunction, SynapticTraceFunction, exponential_filter
from .reference import GATES, apply_gate, dgn_membrane_reference, gate_derivative, synaptic_trace_reference

__all__ = ["MembraneOptions", "membrane_options", "check_finite", "synaptic_trace", "trace_linear", "SPARSE_MAX_DENSITY", "dgn_membrane", "apply_gate", "gate_derivative", "GATES", "BACKENDS",
           "resolve_backend", "AUTO_MAX_RECURRENT_FEATURES", "NUMBA_RECURRENT_ENGINE"]

BACKENDS = ("auto", "fused", "triton", "numba", "reference")
# "auto" keeps recurrent layers wider than this on the fused engine: the Triton kernel re-reads the 2·out²
# recurrent weights every step from one program per batch row (see triton.py).
AUTO_MAX_RECURRENT_FEATURES = 1024

TRITON_ENGINE = LazyEngine("dendrix.ops.dgn.triton")  # imported on first use (optional, slow to import)
NUMBA_ENGINE = LazyEngine("dendrix.ops.dgn.numba_engine", package="numba", install="pip install numba, or dendrix[fast]")
# the recurrent membrane's compiled time loop (backend "numba"; "auto" on CPU)
NUMBA_RECURRENT_ENGINE = LazyEngine("dendrix.ops.dgn.numba_recurrent", package="numba",
                                    install="pip install numba, or dendrix[fast]")
# trace_linear's sparse path runs while at most this fraction of the input is non-zero: its multiply-adds
# then stay below a fifth of the dense product's (SHD-like inputs have about 5 % spikes).
SPARSE_MAX_DENSITY = 0.2


class MembraneOptions(NamedTuple):
    """The checked options of the gated membrane, shared by :class:`~dendrix.neurons.dgn.DGN` and
    :class:`~dendrix.layers.dgn.DGNLinear` (which set each as an attribute of the same name)."""
    tau_s: float
    g_leak: float
    dt: float
    threshold: float
    gate: str
    surrogate: Surrogate
    detach_reset: bool
    backend: str
    decay: float  # exp(−dt/τ_s), the trace decay per step


def membrane_options(tau_s: float, g_leak: float, dt: float, threshold: float, gate: str, surrogate: SurrogateLike,
                     detach_reset: bool, backend: str) -> MembraneOptions:
    """Check the gated membrane's constructor options (one clear error per bad value)."""
    tau_s, dt = check_positive("tau_s", tau_s), check_positive("dt", dt)
    return MembraneOptions(tau_s, check_nonnegative("g_leak", g_leak), dt, check_positive("threshold", threshold),
                           check_choice("gate", gate, GATES), get_surrogate(surrogate), bool(detach_reset),
                           check_choice("backend", backend, BACKENDS), math.exp(-dt / tau_s))


def check_finite(name: str, value: float) -> float:
    """``value`` as a float, or a ValueError naming ``name`` if it is not finite."""
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value!r}")
    return value


def resolve_backend(backend: str, tensors: dict[str, Tensor | None], surrogate=None,
                    recurrent_features: int | None = None) -> str:
    """The engine that runs: ``"auto"`` becomes ``"triton"`` (first tensor on CUDA, Triton importable, case
    supported, and for a recurrent layer at most ``AUTO_MAX_RECURRENT_FEATURES`` neurons), ``"numba"`` (a
    recurrent membrane on CPU, numba importable, case supported) or ``"fused"``; a forced ``"triton"`` or
    ``"numba"`` that cannot run raises ``RuntimeError`` saying why.

    ``tensors``: name -> tensor (None entries ignored), all of which the kernels would read; ``surrogate`` a
    :class:`dendrix.surrogate.Surrogate` (None for the trace); ``recurrent_features``: ``out`` of a recurrent
    membrane, else None.
    """
    first = next(t for t in tensors.values() if t is not None)
    narrow = recurrent_features is None or recurrent_features <= AUTO_MAX_RECURRENT_FEATURES
    cpu = ("numba", "fused") if recurrent_features is not None else ("fused",)
    return resolve(backend, BACKENDS, auto=cuda_first(first.device, ("triton", "fused") if narrow else ("fused",),
                                                        cpu),
                   checks={"triton": TRITON_ENGINE.check(tensors, surrogate),
                           "numba": NUMBA_RECURRENT_ENGINE.check(tensors, surrogate)})


def synaptic_trace(z: Tensor, decay: float, d0: Tensor | None = None, *, backend: str = "auto") -> Tensor:
    """Exponential synaptic traces D[t] = decay·D[t-1] + z[t] along dim 0 (D[0] = d0, zeros if None).

    ``z`` [T, *]; ``decay`` a float in [0, 1]; returns D [T, *]. Gradients flow to ``z`` and ``d0``.
    """
    if not 0.0 <= float(decay) <= 1.0:
        raise ValueError(f"decay must be in [0, 1], got {decay!r}")
    if z.dim() < 1 or z.shape[0] < 1:
        raise ValueError(f"z must have a non-empty time dimension, got shape {tuple(z.shape)}")
    engine = resolve_backend(backend, {"z": z, "d0": d0})
    if engine == "triton":
        if torch.is_grad_enabled() and (z.requires_grad or (d0 is not None and d0.requires_grad)):
            d0 = torch.zeros_like(z[0]) if d0 is None else d0
            return TRITON_ENGINE.load().SynapticTraceTritonFunction.apply(z, d0, float(decay))
        with torch.no_grad():
            return TRITON_ENGINE.load().triton_exponential_filter(z, d0, float(decay))
    d0 = torch.zeros_like(z[0]) if d0 is None else d0
    if engine == "reference":
        return synaptic_trace_reference(z, float(decay), d0)
    if compiling():  # the same engine as one custom op (traced, its time loop would be unrolled)
        return compiled.synaptic_trace_op(z, d0, float(decay))
    if not (z.requires_grad or d0.requires_grad) or not torch.is_grad_enabled():
        with torch.no_grad():
            return exponential_filter(z, d0, float(decay))
    return SynapticTraceFunction.apply(z, d0, float(decay))


def _sparse_input_reason(backend: str, z: Tensor, weight: Tensor) -> str | None:
    """Why :func:`trace_linear` takes the dense path (None: the sparse numba kernel runs)."""
    if backend not in ("auto", "numba"):
        return f"backend={backend!r} (the sparse kernel is chosen by 'auto' and 'numba' only)"
    if compiling():
        return "torch.compile traces the dense path"
    if torch.is_grad_enabled() and z.requires_grad:
        return "the input needs a gradient"
    reason = NUMBA_ENGINE.why_not(z, weight)
    if reason is not None:
        return reason
    # the density of a strided sample of about 2^16 entries (counting all of a [250, 32, 700] input takes ms)
    flat = z.reshape(-1)
    sample = flat[::max(1, flat.numel() >> 16)]
    density = float(torch.count_nonzero(sample)) / max(sample.numel(), 1)
    if density > SPARSE_MAX_DENSITY:
        return f"input density {density:.2f} > {SPARSE_MAX_DENSITY}"
    return None


def trace_linear(z: Tensor, weight: Tensor, bias: Tensor | None, decay: float, d0: Tensor, *,
                 backend: str = "auto") -> tuple[Tensor, Tensor]:
    """``F.linear(D, weight, bias)`` of the synaptic traces ``D = synaptic_trace(z, decay, d0)``, and ``D[-1]``.

    ``z`` [T, B, in], ``weight`` [out, in], ``d0`` [B, in]. The plain form computes the traces and one matmul.
    With ``backend="auto"`` or ``"numba"`` on CPU, numba installed, an input that needs no gradient and at most
    ``SPARSE_MAX_DENSITY`` of it non-zero (presynaptic spikes), the trace filter moves behind the matmul
    (linear: ``W·D = filter(W·z)``, started from ``W·d0``) and the matmul and its weight gradient visit only the
    non-zeros of ``z`` (``numba_engine.py``); equal to the plain form up to rounding.
    """
    if _sparse_input_reason(backend, z, weight) is not None:
        trace = synaptic_trace(z, decay, d0, backend=backend)
        return F.linear(trace, weight, bias), trace[-1]
    # One intra-op thread for the sparse path's forward (serial kernels, a per-step filter of [B, out] rows and
    # a few whole-sequence operators): with two torch threads on the loaded 2-core CPU each of its operators
    # waited for a descheduled worker, and the recurrent DGN layer's forward+backward took 160 ms of CPU time
    # instead of 128 ms (benchmarks/bench_margins.py --threads 2; docs/benchmarks.md, "Margins").
    with serial_on_cpu(z.device, 0):
        engine = NUMBA_ENGINE.load()
        y = engine.spike_linear(z, weight)
        out = synaptic_trace(y, decay, F.linear(d0, weight), backend="fused")
        if bias is not None:
            out = out + bias
        T = z.shape[0]
        powers = torch.pow(torch.full((T,), float(decay), dtype=z.dtype, device=z.device),
                           torch.arange(T - 1, -1, -1, dtype=z.dtype, device=z.device))
        with torch.no_grad():  # z needs no gradient; d0's part of the last trace stays differentiable below
            last = torch.tensordot(powers, z, dims=([0], [0]))
        return out, last + d0 * float(decay) ** T


def dgn_membrane(conductance: Tensor, current: Tensor, v0: Tensor, s0: Tensor, *, dt: float, threshold: float,
                 gate: str = "clamp", surrogate: SurrogateLike = "atan", detach_reset: bool = False,
                 recurrent_weight: Tensor | None = None, recurrent_conductance: Tensor | None = None,
                 recurrent_decay: float = 0.0, rec_trace0: Tensor | None = None, backend: str = "auto"):
    """Run the gated DGN membrane over a whole sequence.

    Args:
        conductance: G_ff [T, *] (leak included: g_l + C·D).  current: I_ff [T, *] (W·D, plus a bias if any).
        v0, s0: membrane and previous spike [*] before the first step.
        dt, threshold: the Euler step and θ.  gate: ``"clamp"`` | ``"sigmoid"``.  surrogate: name or object.
        backend: ``"auto"`` | ``"fused"`` | ``"triton"`` | ``"numba"`` | ``"reference"`` (module docstring).
        detach_reset: cut the gradient through the soft-reset term −θ·S[t-1].
        recurrent_weight, recurrent_conductance: W_rec, C_rec [out, out] for the recurrent variant (both or
            neither); then inputs must be [T, B, out], ``rec_trace0`` [B, out] and ``recurrent_decay`` = λ.
    Returns:
        ``(spikes [T,*], v [T,*], rec_trace_last)`` with ``rec_trace_last`` = Dr[T] (None without recurrence).
    """
    check_choice("gate", gate, GATES)
    sg = get_surrogate(surrogate)
    if conductance.shape != current.shape:
        raise ValueError(f"conductance {tuple(conductance.shape)} and current {tuple(current.shape)} must have "
                         f"the same shape")
    if conductance.shape[0] < 1:
        raise ValueError("the sequence must have at least one time step")
    recurrent = recurrent_weight is not None
    if recurrent != (recurrent_conductance is not None):
        raise ValueError("recurrent_weight and recurrent_conductance must be given together")
    if recurrent:
        n_out = conductance.shape[-1]
        if conductance.dim() != 3:
            raise ValueError(f"the recurrent variant needs [T, B, out] inputs, got {tuple(conductance.shape)}")
        for name, w in (("recurrent_weight", recurrent_weight), ("recurrent_conductance", recurrent_conductance)):
            if tuple(w.shape) != (n_out, n_out):
                raise ValueError(f"{name} must be [{n_out}, {n_out}], got {tuple(w.shape)}")
        if rec_trace0 is None:
            rec_trace0 = torch.zeros_like(v0)
    engine = resolve_backend(backend, {"conductance": conductance, "current": current, "v0": v0, "s0": s0,
                                       "recurrent_weight": recurrent_weight,
                                       "recurrent_conductance": recurrent_conductance, "rec_trace0": rec_trace0},
                             sg, conductance.shape[-1] if recurrent else None)
    if engine == "reference":
        return dgn_membrane_reference(conductance, current, v0, s0, dt=dt, threshold=threshold, gate=gate,
                                      surrogate=sg, detach_reset=detach_reset, recurrent_weight=recurrent_weight,
                                      recurrent_conductance=recurrent_conductance,
                                      recurrent_decay=recurrent_decay, rec_trace0=rec_trace0)
    if engine == "triton":
        function = TRITON_ENGINE.load().DGNMembraneTritonFunction.apply
    elif engine == "numba" and recurrent:  # (never while compiling: the engine's check refuses then)
        function = NUMBA_RECURRENT_ENGINE.load().DGNMembraneNumbaFunction.apply
    elif compiling() and compiled.supports(sg):  # one custom op (traced, its time loops would be unrolled)
        function = compiled.dgn_membrane_op
    else:
        function = DGNMembraneFunction.apply
    out = function(conductance, current, v0, s0, recurrent_weight, recurrent_conductance, rec_trace0, float(dt),
                   float(threshold), gate, sg, bool(detach_reset), float(recurrent_decay))
    if recurrent:
        return out
    spikes, v = out
    return spikes, v, None
