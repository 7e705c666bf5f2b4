"""The output of a bank of diagonal complex modes, by blocks of time steps and batched matrix products.

``z_n[t] = a_n z_n[t-1] + b̄_n u[t]``, ``y[t] = Re Σ_n c_n z_n[t]`` per channel (D-RF's branches, PMSN's
compartments) is a causal convolution with the kernel ``K[l] = Re Σ_n c_n b̄_n a_n^l``. The FFT computes it in
O(T log T) but with a transform of 2T points per channel, which on a CPU costs far more than the few
multiply-adds the modal form needs. Here time is cut into J blocks of L steps and, per channel:

* inside a block, ``y_local = Toeplitz(K[0..L-1]) · u_block`` (an L×L lower-triangular matrix);
* each block's own end state ``e_j = Σ_s a^{L-1-s} b̄ u_block[s]`` (a 2N×L real matrix: real and imaginary parts);
* the state entering block j, ``z_in[j] = a^L z_in[j-1] + e_{j-1}`` (from ``z_in[0] = z0``), a recurrence over the
  J blocks only (:func:`dendrix.ops.linear.linear_recurrence`);
* what that state adds inside the block, ``Re Σ_n c_n a_n^{t+1} z_in[j]`` (an L×2N real matrix).

The input is put time last by one 2-D transpose (``[T, M·H] -> [M·H, T]``, a tiled copy) and the output back by
another; between them each product is one ``bmm`` with the block rows on the left and the channel's small matrix
(transposed) on the right, over the H channels (with autograd) or over the M·H (sample, channel) pairs (without,
for T >= 3L²/4). Autograd differentiates the products as such (no per-step graph). Without autograd on CPU, with
numba installed, the time loop runs compiled instead (``numba_modal.py``: one read of the input, one write of the
output). It is exact up to rounding, which is elementwise-relative like a direct sum (the FFT's is relative to the
largest output). The plain reference is :func:`dendrix.ops.linear.sequential_recurrence`.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..dispatch import LazyEngine
from .fft import mode_powers
from .scan import loop_recurrence

__all__ = ["blocked_modal_response", "DEFAULT_BLOCK"]

# 32 steps per block: the L×L in-block product (L multiply-adds per sample) and the 6N of the state products
# balance for N = 4 modes (docs/benchmarks.md, "PMSN, D-RF and sliding PSN against their authors' code").
DEFAULT_BLOCK = 32
# Without autograd on CPU, the compiled time loop (numba_modal.py) when numba imports
NUMBA_ENGINE = LazyEngine("dendrix.ops.linear.numba_modal", package="numba",
                          install="pip install numba, or dendrix[fast]")
# Without autograd, from T >= 0.75·L² the products run per (sample, channel) pair (see blocked_modal_response)
_PER_SAMPLE_FACTOR = 0.75


def blocked_modal_response(u: Tensor, decay: Tensor, bbar: Tensor, c: Tensor, z0: Tensor | None = None, *,
                           block: int = DEFAULT_BLOCK, want_state: bool = False) -> tuple[Tensor, Tensor | None]:
    """``y[t] = Re Σ_n c_n z_n[t]`` for ``z_n[t] = decay_n z_n[t-1] + bbar_n u[t]`` from ``z[-1] = z0``.

    Args:
        u: real input ``[T, *, H]`` (time first, channels last).
        decay, bbar: complex ``[H, N]`` (|decay| <= 1 for long sequences). c: ``[H, N]``, real or complex.
        z0: complex ``[*, H, N]`` initial modes, or None (zeros).
        block: steps per block L (>= 1).
        want_state: also return ``z[T-1]`` ``[*, H, N]`` (complex).

    Returns:
        ``(y [T, *, H] in u's dtype, z[T-1] or None)``.
    """
    grad = torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in (u, decay, bbar, c, z0))
    if not grad and u.device.type == "cpu" and NUMBA_ENGINE.why_not(u, decay, z0) is None:
        return NUMBA_ENGINE.load().modal_response_numba(u, decay, bbar, c, z0, want_state)
    T, H, N = u.shape[0], u.shape[-1], decay.shape[-1]
    lead = u.shape[1:-1]
    M = 1
    for d in lead:
        M *= d
    L = max(1, min(block, T))
    J = -(-T // L)
    rdt = u.dtype
    c = c.to(decay.dtype)
    powers = mode_powers(decay, L + 1)                               # a^0 .. a^L  [H, N, L+1]
    lags = torch.arange(L, device=u.device)
    kernel = (c.unsqueeze(-1) * bbar.unsqueeze(-1) * powers[..., :L]).real.sum(1)    # [H, L]
    diff = lags.unsqueeze(1) - lags.unsqueeze(0)                     # t - s
    toeplitz = torch.where(diff >= 0, kernel[:, diff.clamp_min(0)], kernel.new_zeros(()))  # [H, L, L]
    to_end = bbar.unsqueeze(-1) * powers[..., :L].flip(-1)           # b̄ a^{L-1-s}  [H, N, L]
    to_end = torch.cat([to_end.real, to_end.imag], 1).to(rdt)        # [H, 2N, L]
    carry = c.unsqueeze(-1) * powers[..., 1:]                        # c a^{t+1}  [H, N, L]
    carry = torch.cat([carry.real, -carry.imag], 1).transpose(1, 2).to(rdt)  # [H, L, 2N]

    x = u.reshape(T, M * H)
    if J * L != T:
        x = torch.cat([x, x.new_zeros(J * L - T, M * H)])
    # Time last by one 2-D transpose (a tiled copy; a general permute costs several times more): [J·L, M·H] ->
    # [M, H, J, L], each (sample, channel, block) row contiguous, and every product is a bmm with the channel's
    # own small matrix on the right. Batched over the M·H (sample, channel) pairs, those matrices are copied per
    # sample (M·H·L² values); over the H channels, the rows of a channel are gathered instead (two copies of the
    # M·H·T values): the first moves less data once T >= 3L²/4, but only without autograd (the backward of M·H
    # tiny products costs more than the copies it saves; docs/benchmarks.md)
    per_sample = not grad and T >= _PER_SAMPLE_FACTOR * L * L
    xt = x.t().contiguous()
    xb = xt.reshape(M * H, J, L) if per_sample else xt.reshape(M, H, J * L).transpose(0, 1).reshape(H, M * J, L)

    def matrices(w: Tensor) -> Tensor:  # [H, r, c] -> one per batch of the products
        return w.expand(M, *w.shape).reshape(M * H, *w.shape[1:]) if per_sample else w

    ends = torch.bmm(xb, matrices(to_end.transpose(1, 2)))
    ends = ends.reshape(M, H, J, 2 * N) if per_sample else ends.reshape(H, M, J, 2 * N).transpose(0, 1)
    ends = torch.complex(ends[..., :N], ends[..., N:]).permute(2, 0, 1, 3)   # [J, M, H, N]
    start = None if z0 is None else z0.reshape(M, H, N).to(ends.dtype)
    # state after each block; the state entering block j is the one after block j-1 (z0 for the first)
    after = loop_recurrence(powers[..., L], ends, start)                    # [J, M, H, N]
    first = after.new_zeros(1, M, H, N) if start is None else start.unsqueeze(0)
    entering = torch.cat([first, after[:-1]])
    entering = torch.cat([entering.real, entering.imag], 3).permute(1, 2, 0, 3)   # [M, H, J, 2N]
    entering = entering.reshape(M * H, J, 2 * N) if per_sample else entering.transpose(0, 1).reshape(H, M * J, 2 * N)
    # in place: baddbmm out of place would first copy the in-block product (bmm's backward needs no output)
    y = torch.bmm(xb, matrices(toeplitz.to(rdt).transpose(1, 2))).baddbmm_(entering, matrices(carry.transpose(1, 2)))
    y = y.reshape(M * H, J * L) if per_sample else y.reshape(H, M, J * L).transpose(0, 1).reshape(M * H, J * L)
    y = y.t()[:T].contiguous().reshape(T, *lead, H)
    if not want_state:
        return y, None
    # z[T-1] from the state entering the last block and its r = T - (J-1)L real steps
    r = T - (J - 1) * L
    tail = x[(J - 1) * L:T].reshape(r, M, H).to(decay.dtype)           # [r, M, H]
    weights = bbar.unsqueeze(-1) * powers[..., :r].flip(-1)          # b̄ a^{r-1-s}  [H, N, r]
    last_entering = first[0] if J == 1 else after[J - 2]                # [M, H, N]
    z_last = torch.einsum("smh,hns->mhn", tail, weights) + powers[..., r] * last_entering
    return y, z_last.reshape(*lead, H, N)
