"""Modal form of a linear state-space system and its zero-order-hold (exact) discretisation.

One continuous system ``dv/dt = A v + Γ u``, ``y = c v`` per channel or branch is handled in its eigenbasis:

* :func:`diagonalise`: ``A = P Λ P⁻¹`` (complex eigen-decomposition, differentiable), optionally holding every
  mode's real part at or below a bound (a stability guard).
* :func:`zoh`: the exact discretisation of a mode with input held constant over a step dt,
  ``z[t] = e^{λdt} z[t−1] + B̄ u[t]``, ``B̄ = b (e^{λdt} − 1)/λ``.
* :func:`real_system`: the ZOH matrices back in the original (real) basis, ``Ā = P e^{Λdt} P⁻¹``,
  ``B̄ = P b̄``.
* :func:`free_response` and :func:`final_modes`: what a modal state contributes to a chunk's outputs, and the
  modal state after a chunk, so a sequence can be continued from a saved state in parallel.

MMDEND (tridiagonal compartment chains, diagonalised every call), PMSN (parameterised in the eigenbasis) and
D-RF (complex resonating branches) all discretise through :func:`zoh`; the impulse response of such a bank of
modes is :func:`~dendrix.ops.linear.modal_kernel`. Shapes: modes last (``[..., M]``), batch dims of states
first (``[B, *C, M]``), time first for sequences (``[T, B, *C]``).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from .fft import mode_powers

__all__ = ["ZOH", "complex_dtype", "complex_expm1", "diagonalise", "zoh", "real_system", "free_response",
           "final_modes"]


class ZOH(NamedTuple):
    """A bank of modes discretised by zero-order hold (every field ``[..., M]``, complex)."""
    dtlam: Tensor  # dt·λ
    decay: Tensor  # e^{dt·λ}, the per-step factor of each mode
    bbar: Tensor   # B̄ = b (e^{dt·λ} − 1)/λ, the input gain of each mode


def complex_dtype(dtype: torch.dtype) -> torch.dtype:
    """The complex dtype that matches a real one: complex128 for float64, complex64 otherwise."""
    return torch.complex128 if dtype == torch.float64 else torch.complex64


def complex_expm1(z: Tensor) -> Tensor:
    """``exp(z) - 1`` for complex ``z`` without cancellation when |z| is small.

    Re: ``e^x cos y - 1 = expm1(x) cos y - 2 sin(y/2)^2``; Im: ``e^x sin y``.
    """
    x, y = z.real, z.imag
    return torch.complex(torch.expm1(x) * torch.cos(y) - 2 * torch.sin(y / 2) ** 2, torch.exp(x) * torch.sin(y))


def diagonalise(A: Tensor, max_real: float | None = None) -> tuple[Tensor, Tensor, Tensor]:
    """Eigen-decomposition ``A = P diag(λ) P⁻¹`` of real or complex square matrices ``A [..., K, K]``.

    Returns ``(λ [..., K], P [..., K, K], P⁻¹ [..., K, K])``, complex, differentiable (``torch.linalg.eig``; its
    gradient is undefined at repeated eigenvalues). ``max_real`` holds ``Re λ <= max_real`` (P is unchanged),
    e.g. ``-1e-4`` keeps every mode strictly decaying.
    """
    if not isinstance(A, Tensor):
        raise TypeError(f"A must be a torch.Tensor, got {type(A).__name__}")
    if A.dim() < 2 or A.shape[-1] != A.shape[-2]:
        raise ValueError(f"A must be square matrices [..., K, K], got shape {tuple(A.shape)}")
    if not (A.is_floating_point() or A.is_complex()):
        raise TypeError(f"A must be a floating or complex tensor, got {A.dtype}")
    lam, P = torch.linalg.eig(A)
    Pinv = torch.linalg.inv(P)
    if max_real is not None:
        lam = torch.complex(lam.real.clamp(max=max_real), lam.imag)
    return lam, P, Pinv


def zoh(lam: Tensor, dt: Tensor | float, b: Tensor | None = None, *, expm1: bool = False) -> ZOH:
    """Zero-order-hold discretisation of modes ``λ [..., M]`` (complex) with step ``dt`` (broadcastable to λ,
    per channel ``dt[..., None]``) and input weights ``b`` (broadcastable to λ, real or complex; None = 1).

    ``decay = e^{dtλ}`` and ``B̄ = b·(e^{dtλ} − 1)/λ``, evaluated as ``(b·growth)/λ``. ``expm1=True`` takes
    ``growth`` from :func:`complex_expm1` (no cancellation when |dtλ| is small: use it for new models);
    ``expm1=False`` takes ``decay − 1``, the form MMDEND and PMSN were trained with (bit-compatible with them).
    """
    if not isinstance(lam, Tensor) or not lam.is_complex():
        got = lam.dtype if isinstance(lam, Tensor) else type(lam).__name__
        raise TypeError(f"lam must be a complex tensor of eigenvalues, got {got}")
    dtlam = lam * dt
    decay = torch.exp(dtlam)
    growth = complex_expm1(dtlam) if expm1 else decay - 1
    bbar = growth / lam if b is None else b * growth / lam
    return ZOH(dtlam, decay, bbar)


def real_system(P: Tensor, Pinv: Tensor, decay: Tensor, bbar: Tensor) -> tuple[Tensor, Tensor]:
    """The discrete system in the original basis: ``Ā = Re(P diag(decay) P⁻¹)`` ``[..., K, K]`` and
    ``B̄ = Re(P b̄)`` ``[..., K]``, so that ``v[t] = Ā v[t−1] + B̄ u[t]`` (exact for a real A)."""
    Abar = torch.einsum("...km,...m,...ml->...kl", P, decay, Pinv).real
    Bbar = torch.einsum("...km,...m->...k", P, bbar).real
    return Abar, Bbar


def free_response(z0: Tensor, decay: Tensor, c: Tensor, T: int) -> Tensor:
    """Output of a free modal state, ``Re Σ_m c_m decay_m^{t+1} z0_m`` for t = 0..T−1.

    ``z0 [B, *C, M]``, ``decay, c [*C, M]``; returns ``[T, B, *C]``. Powers by :func:`mode_powers` (polar form).
    """
    pw = mode_powers(decay, T, offset=1)                                # [*C, M, T]
    return torch.einsum("...mt,b...m->tb...", pw * c.unsqueeze(-1), z0).real


def final_modes(u: Tensor, decay: Tensor, bbar: Tensor, z0: Tensor | None) -> Tensor:
    """Modal state after a chunk: ``z[T−1] = decay^T z0 + Σ_t decay^{T−1−t} B̄ u[t]``.

    ``u [T, B, *C]`` (real), ``decay, bbar [*C, M]``, ``z0 [B, *C, M]`` or None; returns ``[B, *C, M]`` complex.
    """
    T = u.shape[0]
    pw_rev = mode_powers(decay, T).flip(-1) * bbar.unsqueeze(-1)       # [*C, M, T]
    z = torch.einsum("...mt,tb...->b...m", pw_rev, u.to(decay.dtype))
    if z0 is not None:
        z = z + decay.pow(T) * z0
    return z
