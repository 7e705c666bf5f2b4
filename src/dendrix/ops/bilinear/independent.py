"""Independent per-neuron masks: storage and the sparse bilinear form on it (torch and numba engines).

**Mask law ("independent").** Every entry (o, p) — output neuron o, pair p = (i < j) — is kept with probability
``d = 1 - sparsity``, independently of all others: each neuron's mask is an i.i.d. Bernoulli(d) mask, and two
neurons share a d² fraction of the pairs in expectation, whatever their order (the paper's "random mask, different
per output neuron"). The cyclic windows of ``layout.py`` have the same per-neuron law but couple neighbouring
neurons; they stay available (``mask="cyclic"``) for their faster, contiguous kernels.

Storage (CSR by pair): pair p keeps the outputs ``outputs[ptr[p]:ptr[p + 1]]`` (ascending) and its values are
``values[ptr[p]:ptr[p + 1]]`` in the same order. The Triton engine works on window layouts only; ``"auto"`` uses
the torch engine on CUDA for independent masks.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ..dispatch import compute_dtype
from .layout import num_pairs, start_dtype, triu_pairs
from .sparse import _active_pair_ids, _np, _workers, check_binary

__all__ = ["IndependentLayout", "build_independent_layout", "independent_forward",
           "independent_backward", "HAVE_NUMBA"]

try:  # optional compiled CPU engine
    from . import kernels as _kernels
    from . import kernels_grad_input as _gkernels
    from . import kernels_independent as _ikernels
    HAVE_NUMBA = True
except ImportError:  # pragma: no cover - depends on the environment
    _kernels = _gkernels = _ikernels = None
    HAVE_NUMBA = False

_TORCH_CHUNK = 1 << 22  # entries expanded at once by the torch engine
_BUILD_CHUNK = 1 << 22  # mask entries drawn at once when building a layout


@dataclass
class IndependentLayout:
    """Index tensors of a CSR-by-pair masked K (see module docstring), on the values' device."""

    in_features: int
    out_features: int
    ptr: Tensor      # [pairs + 1] int64, offsets of each pair's kept outputs
    outputs: Tensor  # [nnz] kept output of each value (int16 or int32)

    @property
    def pairs(self) -> int:
        return num_pairs(self.in_features)

    @property
    def nnz(self) -> int:
        return int(self.outputs.numel())

    @property
    def density(self) -> float:
        total = self.pairs * self.out_features
        return self.nnz / total if total else 0.0

    def pair_of_value(self) -> Tensor:
        """The pair index of every stored value ``[nnz]`` (int64)."""
        counts = self.ptr[1:] - self.ptr[:-1]
        return torch.repeat_interleave(torch.arange(self.pairs, device=self.ptr.device), counts)

    def entries(self) -> tuple[Tensor, Tensor, Tensor]:
        """``(output, i, j)`` of every stored value, in storage order (int64)."""
        pi, pj = triu_pairs(self.in_features, device=self.ptr.device)
        pid = self.pair_of_value()
        return self.outputs.long(), pi[pid], pj[pid]


def build_independent_layout(in_features: int, out_features: int, density: float,
                             generator: torch.Generator | None = None) -> IndependentLayout:
    """A random mask keeping every (output, pair) entry independently with probability ``density``."""
    pairs, out = num_pairs(in_features), out_features
    kept_outputs, counts = [], []
    rows_per_chunk = max(1, _BUILD_CHUNK // max(1, out))
    for p0 in range(0, pairs, rows_per_chunk):
        keep = torch.rand(min(rows_per_chunk, pairs - p0), out, generator=generator) < density
        counts.append(keep.sum(1))
        kept_outputs.append(torch.nonzero(keep, as_tuple=True)[1])  # row-major: pair by pair, outputs ascending
    count = torch.cat(counts) if counts else torch.zeros(0, dtype=torch.long)
    ptr = torch.zeros(pairs + 1, dtype=torch.long)
    ptr[1:] = torch.cumsum(count, 0)
    outputs = torch.cat(kept_outputs) if kept_outputs else torch.zeros(0, dtype=torch.long)
    return IndependentLayout(in_features, out, ptr, outputs.to(start_dtype(out)))


# ---------------------------------------------------------------------------------------------------- torch engine
def _expand(pid: Tensor, ptr: Tensor) -> tuple[Tensor, Tensor]:
    """For active pairs ``pid``, ``(which active pair, value index)`` of each of their kept values."""
    counts = ptr[pid + 1] - ptr[pid]
    owner = torch.repeat_interleave(torch.arange(pid.numel(), device=pid.device), counts)
    first = torch.cumsum(counts, 0) - counts
    k = ptr[pid][owner] + torch.arange(owner.numel(), device=pid.device) - first[owner]
    return owner, k


def _active_value_chunks(s: Tensor, layout: IndependentLayout):
    """Chunks of ``(flat [R·out] position, value index)`` of every kept value of every active pair."""
    row, pid = _active_pair_ids(s, layout.in_features)
    ptr, outputs, out_f = layout.ptr, layout.outputs.long(), layout.out_features
    per_pair = max(1, int(round(layout.density * out_f)))
    step = max(1, _TORCH_CHUNK // per_pair)
    for c in range(0, pid.numel(), step):
        owner, k = _expand(pid[c:c + step], ptr)
        yield row[c:c + step][owner] * out_f + outputs[k], k


def _torch_forward(s: Tensor, values: Tensor, layout: IndependentLayout) -> Tensor:
    R = s.shape[0]
    y = values.new_zeros(R * layout.out_features)
    for at, k in _active_value_chunks(s, layout):
        y.index_add_(0, at, values[k])
    return y.view(R, layout.out_features).mul_(2.0)


def _torch_grad_values(s: Tensor, g: Tensor, layout: IndependentLayout) -> Tensor:
    flat = g.reshape(-1)
    grad = g.new_zeros(layout.nnz)
    for at, k in _active_value_chunks(s, layout):
        grad.index_add_(0, k, flat[at])
    return grad


def _torch_grad_input(s: Tensor, g: Tensor, values: Tensor, layout: IndependentLayout) -> Tensor:
    """``gs[r, b] = Σ_{a active} Σ_{o keeps (a, b)} g[r, o] K_o,ab``: every kept value touching an active input
    a adds to its partner b."""
    n, out_f = layout.in_features, layout.out_features
    R = s.shape[0]
    o, i, j = layout.entries()
    # incidence of every input: the values of pairs that contain it, with the partner input
    member = torch.cat([i, j])
    partner = torch.cat([j, i])
    value_id = torch.arange(layout.nnz, device=s.device).repeat(2)
    order = torch.argsort(member, stable=True)
    member, partner, value_id = member[order], partner[order], value_id[order]
    inc_ptr = torch.zeros(n + 1, dtype=torch.long, device=s.device)
    inc_ptr[1:] = torch.cumsum(torch.bincount(member, minlength=n), 0)
    rows, a = torch.nonzero(s, as_tuple=True)
    flat = g.reshape(-1)
    gs = g.new_zeros(R * n)
    per_input = max(1, 2 * layout.nnz // max(1, n))
    step = max(1, _TORCH_CHUNK // per_input)
    for c in range(0, rows.numel(), step):
        owner, e = _expand(a[c:c + step], inc_ptr)
        r = rows[c:c + step][owner]
        k = value_id[e]
        gs.index_add_(0, r * n + partner[e], flat[r * out_f + o[k]] * values[k])
    return gs.view(R, n)


# ---------------------------------------------------------------------------------------------------- engines
def independent_forward(s: Tensor, values: Tensor, layout: IndependentLayout, engine: str,
                        check: bool) -> tuple[Tensor, tuple[Tensor, ...]]:
    """``(y in s's dtype, what the backward needs)``: the numba engine's active lists, or ``s`` for torch."""
    dtype = compute_dtype(values)
    sc = s.detach().to(dtype).contiguous()
    vd = values.detach().to(dtype).contiguous()
    if engine == "numba":
        aptr, aidx, bad = _kernels.active_lists(_np(sc))
        if check and bad:
            check_binary(s)
        workers = _workers(len(aidx), s.shape[0])
        out = torch.from_numpy(_ikernels.forward(aptr, aidx, layout.in_features, _np(layout.ptr),
                                                 _np(layout.outputs), _np(vd), layout.out_features, 2.0, workers))
        saved = (torch.from_numpy(aptr), torch.from_numpy(aidx))
    else:
        if check:
            check_binary(s)
        out = _torch_forward(sc, vd, layout)
        saved = (s,)
    return out.to(s.dtype), saved


def independent_backward(grad: Tensor, values: Tensor | None, saved: tuple[Tensor, ...],
                         layout: IndependentLayout, engine: str, s_dtype: torch.dtype, v_dtype: torch.dtype,
                         need_s: bool, need_values: bool) -> tuple[Tensor | None, Tensor | None]:
    """``(dL/ds, dL/dvalues)`` (None where not needed) from :func:`independent_forward`'s ``saved``."""
    dtype = compute_dtype(grad)
    g = (grad.to(dtype) * 2.0).contiguous()
    grad_s = grad_values = None
    if engine == "numba":
        aptr, aidx = (t.numpy() for t in saved)
        n, ptr, outputs = layout.in_features, _np(layout.ptr), _np(layout.outputs)
        if need_values:
            grad_values = torch.from_numpy(_ikernels.grad_values(aptr, aidx, n, ptr, outputs, _np(g),
                                                                 layout.nnz, _workers(len(aidx), n)))
        if need_s:
            vd = values.detach().to(dtype).contiguous()
            # rows grouped by active input (kernels_grad_input.py); kernels_independent.grad_input is the
            # row-by-row version beside it, compared in the tests
            gs = _gkernels.grad_input_csr(aptr, aidx, n, ptr, outputs, _np(vd), _np(g),
                                          _workers(len(aidx), g.shape[0]))
            grad_s = torch.from_numpy(gs).to(s_dtype)
    else:
        sc = saved[0].detach().to(dtype).contiguous()
        if need_values:
            grad_values = _torch_grad_values(sc, g, layout)
        if need_s:
            grad_s = _torch_grad_input(sc, g, values.detach().to(dtype), layout).to(s_dtype)
    if grad_values is not None:
        grad_values = grad_values.to(v_dtype)
    return grad_s, grad_values
