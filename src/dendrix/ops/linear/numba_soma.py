"""Numba CPU engine of the cumulative-sum soma (``soma.py`` has the equations and the torch form).

As few blocks of contiguous columns as there are threads (``block_size``) walk the time axis in parallel (``dendrix.ops.numba_common``), each with
its float64 running sum and the previous step's ``floor(Z/V_th)`` in registers. Every operation is the torch
form's, in the same order and precision (float64 sum, subtraction, floor, clamp; the casts to the drive's
dtype at the end), and none is contracted into a fused multiply-add, so the outputs equal it bit for bit.
"""

from __future__ import annotations

import numpy as np
import torch
from numba import njit, prange
from torch import Tensor

from ..numba_common import as_array, block_size, kernel, sequence_reason, workers_for

__all__ = ["cumulative_numba_soma", "unsupported_reason"]


def unsupported_reason(drive: Tensor, residual0: Tensor | None) -> str | None:
    """Why this engine cannot run a call (None when it can): CPU tensors, float32 or float64 drive, rank >= 1."""
    return sequence_reason(drive, [residual0], "drive")


@njit(cache=True, inline="always")
def _floor_ratio(x, th, unit):
    """floor(x / V_th); for V_th = 1 without the division (x / 1 == x exactly)."""
    return np.floor(x) if unit else np.floor(x / th)


@kernel
def _soma(drive, start, th, unit, burst, count, delta, last, block):
    """drive, count, delta: [T, M] (one dtype); start, last: [M] float64. Writes count, delta and last."""
    n_steps, m = drive.shape
    upper = np.inf if burst else 1.0
    for blk in prange((m + block - 1) // block):
        lo = blk * block
        hi = min(m, lo + block)
        n = hi - lo
        total = start[lo:hi].copy()
        fired = np.empty(n, dtype=np.float64)
        dl = np.zeros(n, dtype=np.float64)
        for j in range(n):
            fired[j] = _floor_ratio(total[j], th, unit)
        for t in range(n_steps):
            dt_, ct, et = drive[t, lo:hi], count[t, lo:hi], delta[t, lo:hi]
            for j in range(n):
                d = dt_[j]
                tot = total[j] + np.float64(d)
                e = tot - fired[j] * th
                fired[j] = _floor_ratio(tot, th, unit)
                total[j] = tot
                dl[j] = e
                c = _floor_ratio(e, th, unit)
                # clamp to [0, upper] by comparisons that keep a NaN a NaN (as torch.clamp)
                c = 0.0 if c < 0.0 else (upper if c > upper else c)
                ct[j] = c + d * 0  # + 0·drive in the drive's dtype: an infinite drive gives a NaN count
                et[j] = e
        for j in range(n):
            last[lo + j] = dl[j] - th * np.floor(dl[j] / th)


def cumulative_numba_soma(drive: Tensor, residual0: Tensor | None, th: float,
                          burst: bool) -> tuple[Tensor, Tensor, Tensor]:
    """``(count, δ, last)`` as :func:`dendrix.ops.linear.soma.cumulative_soma_reference`, bit for bit."""
    T = drive.shape[0]
    flat = drive.detach().reshape(T, -1)
    m = flat.shape[1]
    start = (torch.zeros(m, dtype=torch.float64) if residual0 is None
             else residual0.detach().to(torch.float64).expand(drive.shape[1:]).reshape(m))
    count, delta = torch.empty_like(flat), torch.empty_like(flat)
    last = torch.empty(m, dtype=torch.float64)
    if m > 0:
        workers = workers_for(T * m, m)
        _soma(workers, as_array(flat), as_array(start), float(th), float(th) == 1.0, bool(burst), count.numpy(),
              delta.numpy(), last.numpy(), block_size(m, workers))
    shape = drive.shape
    return count.reshape(shape), delta.reshape(shape), last.to(drive.dtype).reshape(shape[1:])
