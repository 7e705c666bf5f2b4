"""Linear dynamics shared by the resonator and dendritic models (D-RF, MMDEND, PMSN).

Three operations, each with a plain reference beside the fast paths (``reference.py``):

* :func:`linear_recurrence` — the diagonal recurrence ``h[t] = a[t] * h[t-1] + b[t]`` (real or complex,
  ``a`` constant or time-varying). ``method`` is the algorithm: ``"sequential"`` (a loop over t), ``"scan"``
  (a parallel scan, ``scan.py``) or, for a constant ``a``, ``"fft"`` (a causal convolution with the kernel
  ``a**l``, ``fft.py``). ``backend`` is the engine: ``"reference"`` (the sequential loop differentiated by
  autograd step by step) or ``"fused"`` (each method as one autograd node with its adjoint as backward).
* :func:`causal_conv` — ``y[t] = sum_{l<=t} K[l] u[t-l]`` per channel, by FFT (zero padding to at most
  2T) or directly over the lags.
* :func:`modal_kernel` — the impulse response of a bank of complex modes with zero-order-hold input,
  ``K[l] = sum_k c_k B̄_k exp(dt λ_k l)``, computed as exp of a product (never by repeated powers).

:func:`blocked_modal_response` (``blocked.py``) forms the output of such a bank of modes, ``Re Σ_k c_k z_k``,
by blocks of time steps and batched matrix products: on a CPU several times faster than the kernel and the FFT.

The modal form itself (``modal.py``) is shared by D-RF, MMDEND and PMSN: :func:`diagonalise` (``A = PΛP⁻¹``),
:func:`zoh` (``e^{dtλ}`` and ``B̄``), :func:`real_system` (``Ā``, ``B̄`` in the original basis), and
:func:`free_response` / :func:`final_modes` (continuing a sequence from a modal state).

``method="auto"`` picks a path by shape; a forced method or backend is used as asked or raises, it never falls
back silently (``dendrix.ops.dispatch.resolve``). All paths are differentiable; none builds a per-step autograd
graph except ``backend="reference"``. float16/bfloat16 inputs are computed in float32 and returned in their own
dtype (``dendrix.dtypes.compute_dtype``).
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..common import result_dtype

from ..dispatch import HALF_DTYPES, resolve, to_compute
from .blocked import blocked_modal_response
from .fft import fft_causal_conv, fft_recurrence, mode_powers
from .modal import (ZOH, complex_dtype, complex_expm1, diagonalise, final_modes, free_response, real_system,
                    zoh)
from .soma import cumulative_soma, cumulative_soma_reference
from .reference import direct_causal_conv, direct_modal_kernel, sequential_recurrence
from .scan import loop_recurrence, scan_recurrence

__all__ = ["linear_recurrence", "causal_conv", "modal_kernel", "blocked_modal_response", "cumulative_soma",
           "cumulative_soma_reference", "complex_expm1", "RECURRENCE_METHODS",
           "RECURRENCE_BACKENDS", "CONV_METHODS", "sequential_recurrence", "direct_causal_conv",
           "direct_modal_kernel", "mode_powers", "ZOH", "complex_dtype", "diagonalise", "zoh", "real_system",
           "free_response", "final_modes"]

RECURRENCE_METHODS = ("auto", "sequential", "scan", "fft")
RECURRENCE_BACKENDS = ("auto", "reference", "fused")
CONV_METHODS = ("auto", "fft", "direct")

# Short sequences take the scan (a few sweeps, no padding); from 64 steps the FFT. Both are O(T log T) and stay
# within a small factor of each other over T = 64 ... 2048 (docs/benchmarks.md, "Measurements behind the kernels").
_FFT_MIN_LENGTH = 64
# Kernels up to this many lags are convolved directly (a handful of multiply-adds beats the FFT).
_DIRECT_MAX_LAGS = 8


def _check_tensor(name: str, x, min_rank: int = 0) -> Tensor:
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() < min_rank:
        raise ValueError(f"{name} must have at least {min_rank} dims, got shape {tuple(x.shape)}")
    if not (x.is_floating_point() or x.is_complex()):
        raise TypeError(f"{name} must be a floating or complex tensor, got {x.dtype}")
    return x


def _check_method(method: str, allowed: tuple[str, ...]) -> str:
    if method not in allowed:
        raise ValueError(f"method must be one of {list(allowed)}, got {method!r}")
    return method


def linear_recurrence(a: Tensor | float, b: Tensor, h0: Tensor | None = None, method: str = "auto",
                      backend: str = "auto") -> Tensor:
    """``h[t] = a[t] * h[t-1] + b[t]`` along dim 0, from ``h[-1] = h0`` (zeros if None).

    Args:
        a: the decay. Time-invariant: a number or a tensor broadcastable to ``b.shape[1:]`` (rank below
            ``b.dim()``). Time-varying: a tensor of rank ``b.dim()`` whose first dim is T (or 1, which is
            treated as time-invariant) and whose other dims broadcast to ``b.shape[1:]``.
        b: the input ``[T, *]``, real or complex; it fixes the output shape.
        h0: initial state broadcastable to ``b.shape[1:]``, or None.
        method: the algorithm: ``"auto"`` (FFT for a constant decay and T >= 64, the scan otherwise;
            ``"sequential"`` with ``backend="reference"``), ``"sequential"`` (a loop over t: O(T) work, T
            steps; often fastest for real first-order recurrences on a CPU), ``"scan"`` (parallel associative
            scan, O(T log T) work, log T depth) or ``"fft"`` (constant decay only; ValueError for a
            time-varying one).
        backend: the engine: ``"auto"`` (= ``"fused"``), ``"fused"`` (one autograd node, the adjoint
            recurrence as backward: no per-step graph) or ``"reference"`` (the sequential loop differentiated
            by autograd step by step; ValueError with another method).

    Returns:
        ``h`` ``[T, *]`` in the promoted dtype of ``a``, ``b`` (and ``h0``).

    The FFT path's rounding error is relative to the largest |h|; the scan's is elementwise. Choose the
    scan (or float64) when a sequence holds values many orders of magnitude apart.
    """
    _check_method(method, RECURRENCE_METHODS)
    backend = resolve(backend, RECURRENCE_BACKENDS, auto=("fused",))
    if backend == "reference" and method not in ("auto", "sequential"):
        raise ValueError(f"backend='reference' runs method='sequential' only (the plain per-step autograd loop), "
                         f"got method={method!r}; use backend='fused' or 'auto' for it")
    _check_tensor("b", b, min_rank=1)
    if not isinstance(a, Tensor):
        if isinstance(a, bool) or not isinstance(a, (int, float, complex)):
            raise TypeError(f"a must be a number or a tensor, got {type(a).__name__}")
        a = torch.tensor(a, device=b.device, dtype=result_dtype(a, b))
    _check_tensor("a", a)
    if h0 is not None:
        _check_tensor("h0", h0)
    T, inner = b.shape[0], tuple(b.shape[1:])
    time_varying = a.dim() == b.dim()
    if time_varying and a.shape[0] == 1:
        a, time_varying = a[0], False
    if a.dim() > b.dim():
        raise ValueError(f"a has shape {tuple(a.shape)}, more dims than b {tuple(b.shape)}")
    if time_varying and a.shape[0] != T:
        raise ValueError(f"time-varying a must have T={T} steps in dim 0 (like b), got shape {tuple(a.shape)}")
    for name, t, shape in (("a", a, a.shape[1:] if time_varying else a.shape),
                           ("h0", h0, h0.shape if h0 is not None else ())):
        try:
            ok = torch.broadcast_shapes(tuple(shape), inner) == torch.Size(inner)
        except RuntimeError:
            ok = False
        if not ok:
            raise ValueError(f"{name} of shape {tuple(t.shape)} does not broadcast to b's step shape {inner}"
                             f" (b is {tuple(b.shape)})")
    if method == "fft" and time_varying:
        raise ValueError("method='fft' needs a time-invariant decay a (rank below b's); use 'scan' or "
                         "'sequential' for a time-varying a")
    if method == "auto":
        if backend == "reference":
            method = "sequential"
        else:
            method = "scan" if time_varying or T < _FFT_MIN_LENGTH else "fft"

    out_dtype = result_dtype(a, b) if h0 is None else torch.promote_types(result_dtype(a, b), h0.dtype)
    a, b, h0 = to_compute(a), to_compute(b), to_compute(h0)
    if backend == "reference":
        h = sequential_recurrence(a, b, h0, time_varying=time_varying)
    elif method == "scan":
        h = scan_recurrence(a, b, h0, time_varying=time_varying)
    elif method == "sequential":
        h = loop_recurrence(a, b, h0, time_varying=time_varying)
    else:
        h = fft_recurrence(a, b, h0)
    return h.to(out_dtype) if out_dtype in HALF_DTYPES else h


def causal_conv(u: Tensor, kernel: Tensor, method: str = "auto") -> Tensor:
    """Per-channel causal convolution along time: ``y[t, ..., c] = sum_{l<=t} kernel[c, l] * u[t-l, ..., c]``.

    Args:
        u: ``[T, B, *C]`` (real; complex is accepted too).
        kernel: ``[*C, Tk]``, lag last; its leading dims broadcast against ``u.shape[1:]`` aligned at the
            right (so ``[C, Tk]`` for ``u`` ``[T, B, C]``). Lags beyond T have no effect.
        method: ``"auto"`` (direct for Tk <= 8, FFT otherwise), ``"fft"`` (zero padding to the next power
            of two >= T + Tk - 1, at most 2T), ``"direct"`` (a multiply-add per lag).

    Returns:
        ``y`` shaped like ``u`` (promoted dtype).
    """
    _check_method(method, CONV_METHODS)
    _check_tensor("u", u, min_rank=1)
    _check_tensor("kernel", kernel, min_rank=1)
    try:
        ok = torch.broadcast_shapes(tuple(kernel.shape[:-1]), tuple(u.shape[1:])) == u.shape[1:]
    except RuntimeError:
        ok = False
    if not ok:
        raise ValueError(f"kernel of shape {tuple(kernel.shape)} ([*C, Tk]) does not match u of shape "
                         f"{tuple(u.shape)} ([T, B, *C]): its leading dims must broadcast to u.shape[1:]")
    if method == "auto":
        method = "direct" if kernel.shape[-1] <= _DIRECT_MAX_LAGS else "fft"
    out_dtype = result_dtype(u, kernel)
    u, kernel = to_compute(u), to_compute(kernel)
    y = fft_causal_conv(u, kernel) if method == "fft" else direct_causal_conv(u, kernel)
    return y.to(out_dtype) if out_dtype in HALF_DTYPES else y


def modal_kernel(lam: Tensor, dt: Tensor | float, T: int, b: Tensor | None = None, c: Tensor | None = None, *,
                 real: bool = False, double: bool = False) -> Tensor:
    """Impulse response of a bank of complex modes with zero-order-hold input (a Vandermonde product).

    ``K[..., l] = sum_k c_k * B̄_k * exp(dt λ_k l)`` for l = 0..T-1, with ``B̄_k = b_k (exp(dt λ_k) - 1) / λ_k``.
    This is the response of ``z[t] = exp(dt λ) z[t-1] + B̄ u[t]``, ``y = sum_k c_k z_k`` to a unit impulse.

    Args:
        lam: complex eigenvalues ``[..., modes]`` with Re λ <= 0 (ValueError otherwise: such modes grow
            without bound).
        dt: step size, a positive number or a tensor broadcastable to ``lam`` (per channel: ``dt[..., None]``).
        T: number of lags.
        b, c: input and output weights broadcastable to ``lam`` (None = 1); real or complex.
        real: return the real part (the response of ``y = sum_k c_k Re z_k``).
        double: compute in float64/complex128 and cast back (for very long T in float32).

    ``exp(dt λ l)`` is evaluated as ``exp(l·Re(dtλ)) · (cos(l·Im(dtλ)) + i sin(l·Im(dtλ)))``: magnitudes stay
    in [0, 1] and the phase error grows only like l·eps, so T = 16,384 is safe in float32. ``exp(dtλ) - 1``
    uses :func:`complex_expm1` (no cancellation for small dt).
    """
    _check_tensor("lam", lam, min_rank=1)
    if not lam.is_complex():
        raise TypeError(f"lam must be complex (eigenvalues λ = -1/τ + iω), got {lam.dtype}")
    if isinstance(T, bool) or not isinstance(T, int) or T < 1:
        raise ValueError(f"T must be a positive integer, got {T!r}")
    out_dtype = lam.dtype
    if double:
        lam = lam.to(torch.complex128)
    real_dtype = lam.real.dtype
    if not isinstance(dt, Tensor):
        if isinstance(dt, bool) or not isinstance(dt, (int, float)) or not dt > 0:
            raise ValueError(f"dt must be a positive number or tensor, got {dt!r}")
        dt = torch.tensor(float(dt), dtype=real_dtype, device=lam.device)
    dt = dt.to(real_dtype)
    dtlam = dt * lam
    if torch.compiler.is_compiling():  # no data-dependent branch in a graph: the check runs as a graph op
        torch._assert_async((dtlam.real <= 0).all(), "modal_kernel: every mode needs Re(dt*lam) <= 0")
    elif bool((dtlam.real > 0).any()):
        raise ValueError("modal_kernel: every mode needs Re(dt*lam) <= 0 (a decaying or marginal mode); "
                         f"got max Re(dt*lam) = {dtlam.real.max().item():g}")
    bbar = complex_expm1(dtlam) / lam
    if b is not None:
        bbar = bbar * (b.to(lam.dtype) if b.is_complex() else b.to(real_dtype))
    weight = bbar if c is None else bbar * (c.to(lam.dtype) if c.is_complex() else c.to(real_dtype))
    lags = torch.arange(T, dtype=real_dtype, device=lam.device)
    mag = torch.exp(dtlam.real.unsqueeze(-1) * lags)
    phase = dtlam.imag.unsqueeze(-1) * lags
    cos_part, sin_part = mag * torch.cos(phase), mag * torch.sin(phase)
    w = weight.unsqueeze(-2)  # [..., 1, modes] for the mode contraction below
    k_re = (w.real @ cos_part - w.imag @ sin_part).squeeze(-2)
    if real:
        return k_re.to(torch.float64 if out_dtype == torch.complex128 else torch.float32)
    k_im = (w.real @ sin_part + w.imag @ cos_part).squeeze(-2)
    return torch.complex(k_re, k_im).to(out_dtype)
