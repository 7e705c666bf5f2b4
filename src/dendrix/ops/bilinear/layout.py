"""Storage of a masked, symmetric, zero-diagonal bilinear matrix K_o for every output neuron o.

Only kept entries are stored. Pairs (i < j) of the ``n`` inputs are numbered in row-major triangular order,
``pair(i, j) = i (2n - i - 1) / 2 + (j - i - 1)``.

**Mask law ("cyclic windows").** Pair p is kept by the ``L_p`` consecutive output neurons
``start_p, start_p + 1, …, start_p + L_p - 1`` (indices mod ``out``), with ``start_p`` uniform in
``[0, out)`` and ``L_p = m + 1`` with probability ``d·out - m``, else ``m`` (``d = 1 - sparsity``,
``m = floor(d·out)``), all drawn independently per pair. Consequences:

* For every single output o, pair p is kept iff ``(o - start_p) mod out < L_p``, an event of probability exactly
  ``d``, independent across pairs: the mask of one neuron has the law of an i.i.d. Bernoulli(d) mask, and masks
  differ between neurons (each neuron's kept set is its own random ``d``-fraction of the pairs).
* Neurons are not independent of each other: neurons closer than ``L`` on the output ring share part of their
  kept pairs (with independent values), neurons further apart share none; under i.i.d. masks any two neurons
  would share a ``d²`` fraction. The output order carries no meaning in a layer, so this changes no neuron's law.
* The kept outputs of a pair are **contiguous**, so the kernels add a pair's values to a contiguous slice of an
  output row (vector instructions), and store one start index per pair instead of one output index per value.
  Measured on the DLIF benchmark shape, against kernels with one output index per value on the same mask:
  forward, value gradient and input gradient each about 2x faster (``docs/dlif.md``).

Values are stored pair-major: ``values[p·m + t]`` (t < m) is the value of output ``start_p + t`` ("main"
block), followed by one "extra" value (output ``start_p + m``) per pair in ``extra_pair`` (ascending).
Kernels work on rows of width ``out + m`` ("extended" rows, no wrap-around), then fold columns ``out..out+m``
back onto ``0..m``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["PairLayout", "build_layout", "pair_index", "num_pairs", "triu_pairs", "start_dtype"]


def num_pairs(n: int) -> int:
    """The number of unordered pairs ``i < j`` of ``n`` inputs, ``n(n-1)/2``."""
    return n * (n - 1) // 2


def pair_index(i: Tensor, j: Tensor, n: int) -> Tensor:
    """Triangular index of pairs ``i < j``."""
    return i * (2 * n - i - 1) // 2 + (j - i - 1)


def triu_pairs(n: int, device=None) -> tuple[Tensor, Tensor]:
    """``(i, j)`` of every pair ``i < j`` in triangular order."""
    iu = torch.triu_indices(n, n, 1, device=device)
    return iu[0], iu[1]


def start_dtype(out_features: int) -> torch.dtype:
    """int16 when every start index fits (half the memory of int32 in the kernels' hottest index array)."""
    return torch.int16 if out_features <= torch.iinfo(torch.int16).max else torch.int32


@dataclass
class PairLayout:
    """Index tensors of a pair-major masked K (see module docstring), on the values' device."""

    in_features: int
    out_features: int
    m: int                 # outputs every pair keeps (main block); some keep one more
    start: Tensor          # [pairs]   first kept output of each pair (int16 or int32)
    extra_pair: Tensor     # [extras]  pairs that keep m + 1 outputs (ascending), int64

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

    @property
    def width(self) -> int:
        """Width of an extended output row: a window starting at ``out - 1`` ends at ``out + m - 1``."""
        return self.out_features + self.m

    def entries(self) -> tuple[Tensor, Tensor, Tensor]:
        """``(output, i, j)`` of every stored value, in storage order (int64)."""
        n, m, out = self.in_features, self.m, self.out_features
        dev = self.start.device
        pi, pj = triu_pairs(n, device=dev)
        start = self.start.long()
        main_o = (start[:, None] + torch.arange(m, device=dev)).reshape(-1) % out
        extra_o = (start[self.extra_pair] + m) % out
        pid = torch.cat([torch.arange(self.pairs, device=dev).repeat_interleave(m), self.extra_pair])
        return torch.cat([main_o, extra_o]), pi[pid], pj[pid]


def build_layout(in_features: int, out_features: int, density: float,
                 generator: torch.Generator | None = None) -> PairLayout:
    """A random cyclic-window mask (see module docstring) keeping a fraction ``density`` of each neuron's pairs."""
    n, out = in_features, out_features
    pairs = num_pairs(n)
    expected = density * out
    m = min(out, int(expected))
    frac = expected - m if m < out else 0.0
    start = torch.randint(0, out, (pairs,), generator=generator).to(start_dtype(out))
    if frac > 0:
        extra_pair = torch.nonzero(torch.rand(pairs, generator=generator) < frac).flatten()
    else:
        extra_pair = torch.empty(0, dtype=torch.long)
    return PairLayout(n, out, m, start, extra_pair)
