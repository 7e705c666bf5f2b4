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

All three products are one ``bmm`` each over the channels, and autograd differentiates them as such (no per-step
graph). It is exact up to rounding, which is elementwise-relative like a direct sum (the FFT's is relative to the
largest output). The plain reference is :func:`dendrix.ops.linear.sequential_recurrence`.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .fft import mode_powers
from .scan import loop_recurrence

__all__ = ["blocked_modal_response", "DEFAULT_BLOCK"]

# 32 steps per block: the L×L in-block product (L multiply-adds per sample) and the 6N of the state products
# balance for N = 4 modes (docs/benchmarks.md, "PMSN, D-RF and sliding PSN against their authors' code").
DEFAULT_BLOCK = 32


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
    # [J·L, M·H] -> [H, M·J, L]: a 2-D transpose (a tiled copy) and a copy of whole rows (a general permute costs
    # several times more). Time last, so each (sample, block) row of a channel is contiguous, and every product
    # is one bmm over the H channels with the channel's own small matrix on the right
    xb = x.t().contiguous().reshape(M, H, J * L).transpose(0, 1).reshape(H, M * J, L)
    ends = torch.bmm(xb, to_end.transpose(1, 2)).reshape(H, M, J, 2 * N)
    ends = torch.complex(ends[..., :N], ends[..., N:]).permute(2, 0, 1, 3)   # [J, H, M, N]
    start = None if z0 is None else z0.reshape(M, H, N).transpose(0, 1).to(ends.dtype)
    # state after each block; the state entering block j is the one after block j-1 (z0 for the first)
    after = loop_recurrence(powers[..., L].unsqueeze(1), ends, start)      # [J, H, M, N]
    first = after.new_zeros(1, H, M, N) if start is None else start.unsqueeze(0)
    entering = torch.cat([first, after[:-1]])
    entering = torch.cat([entering.real, entering.imag], 3).permute(1, 2, 0, 3).reshape(H, M * J, 2 * N)
    # in place: baddbmm out of place would first copy the in-block product (bmm's backward needs no output)
    y = torch.bmm(xb, toeplitz.to(rdt).transpose(1, 2)).baddbmm_(entering, carry.transpose(1, 2))
    y = y.reshape(H, M, J * L).transpose(0, 1).reshape(M * H, J * L).t()[:T].contiguous().reshape(T, *lead, H)
    if not want_state:
        return y, None
    # z[T-1] from the state entering the last block and its r = T - (J-1)L real steps
    r = T - (J - 1) * L
    tail = x[(J - 1) * L:T].reshape(r, M, H).to(decay.dtype)           # [r, M, H]
    weights = bbar.unsqueeze(-1) * powers[..., :r].flip(-1)          # b̄ a^{r-1-s}  [H, N, r]
    last_entering = (first[0] if J == 1 else after[J - 2]).transpose(0, 1)    # [M, H, N]
    z_last = torch.einsum("smh,hns->mhn", tail, weights) + powers[..., r] * last_entering
    return y, z_last.reshape(*lead, H, N)
