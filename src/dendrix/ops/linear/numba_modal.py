"""Numba CPU engine of a bank of diagonal complex modes read out as ``y[t] = Re Σ_n c_n z_n[t]`` (no autograd).

``z_n[t] = a_n z_n[t-1] + b̄_n u[t]`` per channel, as :func:`dendrix.ops.linear.blocked_modal_response`
(``blocked.py``), which calls this engine for inference: when no gradient is needed, on CPU tensors in float32
or float64 with numba installed. The time loop runs compiled: blocks of ``(sample, channel)`` columns of the
time-first input ``[T, M·H]`` walk the time axis in parallel, each with its modes' real and imaginary parts in
``[N, block]`` scratch rows, so the input is read once and the output written once, in place of the blocked
form's two transposes and its per-sample matrix copies. Per element and step: N complex multiply-adds and the
readout, vectorised over the block's columns.

It is the sequential definition itself (the plain reference is :func:`dendrix.ops.linear.sequential_recurrence`,
compared in ``tests/test_ops_linear_numba.py``), in the input's precision; its rounding differs from the blocked
products' like any two summation orders (both are elementwise-relative, see ``blocked.py``).
"""

from __future__ import annotations

import numpy as np
import torch
from numba import prange
from torch import Tensor

from ..numba_common import as_array, kernel, sequence_reason, workers_for

__all__ = ["modal_response_numba", "unsupported_reason"]

# Columns per block: the modes' state (2N rows) and coefficients (6N rows) of a block stay in L2; the loop is
# compute-bound (6N multiply-adds per element and step), so short row pieces cost no prefetching.
MODAL_BLOCK = 512


def unsupported_reason(u: Tensor, decay: Tensor, z0: Tensor | None) -> str | None:
    """Why this engine cannot run a call (None when it can): CPU tensors, a float32 or float64 input."""
    return sequence_reason(u, [decay, z0], "input", min_dim=2)


@kernel
def _modal(u, ar, ai, br, bi, cr, ci, zr0, zi0, y, zr_last, zi_last, block):
    """u, y: [T, K] (K = M·H columns); ar..ci: [N, K] per-column coefficients; zr0, zi0, zr_last, zi_last: [N, K]."""
    n_steps, k = u.shape
    n_modes = ar.shape[0]
    for blk in prange((k + block - 1) // block):
        lo = blk * block
        hi = min(k, lo + block)
        n = hi - lo
        zr = zr0[:, lo:hi].copy()
        zi = zi0[:, lo:hi].copy()
        acc = np.empty(n, dtype=u.dtype)
        for t in range(n_steps):
            ut = u[t, lo:hi]
            acc[:] = 0
            for q in range(n_modes):
                a_r, a_i, b_r, b_i = ar[q, lo:hi], ai[q, lo:hi], br[q, lo:hi], bi[q, lo:hi]
                c_r, c_i, s_r, s_i = cr[q, lo:hi], ci[q, lo:hi], zr[q], zi[q]
                for j in range(n):
                    x = ut[j]
                    r = a_r[j] * s_r[j] - a_i[j] * s_i[j] + b_r[j] * x
                    i = a_i[j] * s_r[j] + a_r[j] * s_i[j] + b_i[j] * x
                    s_r[j] = r
                    s_i[j] = i
                    acc[j] += c_r[j] * r - c_i[j] * i
            yt = y[t, lo:hi]
            for j in range(n):
                yt[j] = acc[j]
        zr_last[:, lo:hi] = zr
        zi_last[:, lo:hi] = zi


def _columns(w: Tensor, m: int, dtype: torch.dtype) -> tuple[np.ndarray, np.ndarray]:
    """``[H, N]`` (complex or real) -> real and imaginary ``[N, M·H]`` arrays, column ``m·H + h`` = channel h."""
    w = w.detach()
    real = w.real if w.is_complex() else w
    imag = w.imag if w.is_complex() else torch.zeros_like(w)
    expand = lambda p: p.to(dtype).t().repeat(1, m).contiguous().numpy()  # noqa: E731 - [N, M·H]
    return expand(real), expand(imag)


def modal_response_numba(u: Tensor, decay: Tensor, bbar: Tensor, c: Tensor, z0: Tensor | None,
                         want_state: bool) -> tuple[Tensor, Tensor | None]:
    """``(y [T, *, H], z[T-1] [*, H, N] or None)`` as :func:`blocked_modal_response`, without autograd."""
    T, H, N = u.shape[0], u.shape[-1], decay.shape[-1]
    lead = u.shape[1:-1]
    m = 1
    for d in lead:
        m *= d
    k = m * H
    dtype = u.dtype
    x = as_array(u.reshape(T, k))
    coefs = [a for w in (decay, bbar, c) for a in _columns(w, m, dtype)]
    if z0 is None:
        zr0 = zi0 = np.zeros((N, k), dtype=x.dtype)
    else:
        z = z0.detach().reshape(m, H, N).to(torch.complex128 if dtype == torch.float64 else torch.complex64)
        zr0 = z.real.to(dtype).reshape(k, N).t().contiguous().numpy()
        zi0 = z.imag.to(dtype).reshape(k, N).t().contiguous().numpy()
    y = torch.empty(T, k, dtype=dtype)
    zr_last, zi_last = np.empty((N, k), dtype=x.dtype), np.empty((N, k), dtype=x.dtype)
    if k > 0:
        workers = workers_for(T * k, k)
        block = max(16, min(MODAL_BLOCK, -(-k // workers)))
        _modal(workers, x, *coefs, zr0, zi0, y.numpy(), zr_last, zi_last, block)
    y = y.reshape(T, *lead, H)
    if not want_state:
        return y, None
    z_last = torch.complex(torch.from_numpy(zr_last), torch.from_numpy(zi_last)).t().reshape(*lead, H, N)
    return y, z_last.to(decay.dtype)
