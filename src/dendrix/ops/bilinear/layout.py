"""Storage of a masked, symmetric, zero-diagonal bilinear matrix K_o for every output neuron o.

Only kept entries are stored. Pairs (i < j) of the ``n`` inputs are numbered in row-major triangular order,
``pair(i, j) = i (2n - i - 1) / 2 + (j - i - 1)``. Each pair is kept by a random set of output neurons of size
``m`` or ``m + 1`` (``m = floor(d·out)``, ``d = 1 - sparsity``; the extra output is drawn with probability
``d·out - m``), chosen independently per pair. Consequences:

* For every single output o, each pair is kept independently with probability exactly ``d``: the mask of one
  neuron has the law of an i.i.d. Bernoulli(d) mask, and masks differ between neurons.
* The values are stored pair-major: ``values[p·m + t]`` (t < m) is the ``t``-th kept output of pair p ("main"
  block, ``main_out`` gives the output index), followed by one "extra" value per pair that has ``m + 1`` kept
  outputs (``extra_pair`` / ``extra_out``). Every pair then has a fixed-length block, which keeps the sparse
  kernels free of per-pair length lookups.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["PairLayout", "build_layout", "pair_index", "num_pairs", "triu_pairs"]


def num_pairs(n: int) -> int:
    return n * (n - 1) // 2


def pair_index(i: Tensor, j: Tensor, n: int) -> Tensor:
    """Triangular index of pairs ``i < j``."""
    return i * (2 * n - i - 1) // 2 + (j - i - 1)


def triu_pairs(n: int, device=None) -> tuple[Tensor, Tensor]:
    """``(i, j)`` of every pair ``i < j`` in triangular order."""
    iu = torch.triu_indices(n, n, 1, device=device)
    return iu[0], iu[1]


@dataclass
class PairLayout:
    """Index tensors of a pair-major masked K (see module docstring). All index tensors are int64 or int32/int16
    on the values' device; ``index_dtype`` is int16 when ``out_features + 1`` fits."""

    in_features: int
    out_features: int
    m: int                 # outputs kept by every pair (main block)
    main_out: Tensor       # [pairs * m]  output index of each main value (sorted within a pair)
    extra_pair: Tensor     # [extras]     pairs that keep one more output (ascending), int64
    extra_out: Tensor      # [extras]     that output
    extra_pad: Tensor | None = None  # cached result of extra_out_padded() (optional)

    @property
    def pairs(self) -> int:
        return num_pairs(self.in_features)

    @property
    def nnz(self) -> int:
        return self.pairs * self.m + int(self.extra_pair.numel())

    @property
    def density(self) -> float:
        total = self.pairs * self.out_features
        return self.nnz / total if total else 0.0

    def extra_out_padded(self) -> Tensor:
        """``[pairs]`` the extra output of each pair, or ``out_features`` (a dummy column) where it has none."""
        if self.extra_pad is not None:
            return self.extra_pad
        pad = torch.full((self.pairs,), self.out_features, dtype=self.main_out.dtype, device=self.main_out.device)
        pad[self.extra_pair] = self.extra_out
        return pad

    def entries(self) -> tuple[Tensor, Tensor, Tensor]:
        """``(output, i, j)`` of every stored value, in storage order (int64)."""
        n, m = self.in_features, self.m
        pi, pj = triu_pairs(n, device=self.main_out.device)
        pid_main = torch.arange(self.pairs, device=pi.device).repeat_interleave(m)
        pid = torch.cat([pid_main, self.extra_pair])
        out = torch.cat([self.main_out.long(), self.extra_out.long()])
        return out, pi[pid], pj[pid]


def _index_dtype(out_features: int) -> torch.dtype:
    return torch.int16 if out_features + 1 <= torch.iinfo(torch.int16).max else torch.int32


def build_layout(in_features: int, out_features: int, density: float, generator: torch.Generator | None = None,
                 chunk: int = 1 << 15) -> PairLayout:
    """A random balanced mask (see module docstring) with kept fraction ``density`` per output neuron."""
    n, out = in_features, out_features
    pairs = num_pairs(n)
    expected = density * out
    m = min(out, int(expected))
    frac = expected - m if m < out else 0.0
    idt = _index_dtype(out)
    main = torch.empty(pairs * m, dtype=idt)
    extra_pairs, extra_outs = [], []
    for p0 in range(0, pairs, chunk):
        p1 = min(pairs, p0 + chunk)
        take = m + (1 if frac > 0 else 0)
        if take == out:
            picked = torch.arange(out).expand(p1 - p0, out)
        elif take > 0:
            # A uniformly random subset per pair: the smallest ``take`` of i.i.d. uniform keys.
            keys = torch.rand(p1 - p0, out, generator=generator)
            picked = keys.topk(take, dim=1, largest=False).indices
        else:
            picked = torch.empty(p1 - p0, 0, dtype=torch.long)
        if m > 0:
            main[p0 * m:p1 * m] = picked[:, :m].sort(dim=1).values.reshape(-1).to(idt)
        if frac > 0:
            has_extra = torch.rand(p1 - p0, generator=generator) < frac
            extra_pairs.append(torch.nonzero(has_extra).flatten() + p0)
            extra_outs.append(picked[has_extra, m].to(idt))
    extra_pair = torch.cat(extra_pairs) if extra_pairs else torch.empty(0, dtype=torch.long)
    extra_out = torch.cat(extra_outs) if extra_outs else torch.empty(0, dtype=idt)
    return PairLayout(n, out, m, main, extra_pair, extra_out)
