"""Sparse bilinear form ``Σ_{i<j} K_o,ij s_i s_j`` for binary ``s``: exact, cost ~ active pairs × kept outputs.

Three engines for cyclic-window layouts (``layout.py``), behind the autograd function of ``autograd.py``:

* ``"numba"`` (CPU, needs the ``numba`` package): compiled loops over the active pairs, see ``kernels.py``.
* ``"torch"`` (any device): the active pairs of every row are listed with tensor index arithmetic and their
  kept entries are scattered with ``index_add_``, in chunks that bound the temporary memory.
* ``"triton"`` (CUDA, needs the ``triton`` package; imported on first use): register-accumulating kernels over
  the active pairs of each row, see ``triton.py``.

Saved for backward: the numba and triton engines keep the active lists of their forward scan (row pointers and
the indices of the input spikes, 4 bytes per spike), so the backward does not rescan the input; the torch engine
keeps the input spikes (shared with the synaptic ``Linear``) and recomputes its pair lists. The values are saved
only when the input needs a gradient.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..dispatch import compute_dtype
from .layout import PairLayout

__all__ = ["active_pairs", "HAVE_NUMBA", "check_binary", "sparse_forward", "sparse_backward",
           "saved_lists"]

try:  # optional compiled CPU engine
    from . import kernels as _kernels
    from . import kernels_grad_input as _gkernels
    HAVE_NUMBA = True
except ImportError:  # pragma: no cover - depends on the environment
    _kernels = _gkernels = None
    HAVE_NUMBA = False

# Entries expanded at once by the torch engine (index tensors of this many int64 each).
_TORCH_CHUNK = 1 << 22


def _active_pair_ids(s: Tensor, n: int) -> tuple[Tensor, Tensor]:
    """Rows and upper-triangle pair indices (i < j, row-major over i) of every active pair of each row."""
    row, i, j = active_pairs(s)
    return row, i * (2 * n - i - 1) // 2 + (j - i - 1)


def check_binary(s: Tensor, what: str = "input") -> None:
    """Raise ``ValueError`` unless ``s`` holds only 0 and 1 (the sparse engines compute s_i·s_j as a logical AND)."""
    bad = ((s != 0) & (s != 1)).any()
    if bool(bad):
        raise ValueError(f"DLIF {what} must be binary spikes in {{0, 1}} for the sparse bilinear path (the pair "
                         f"product s_i·s_j is computed as a logical AND); got values outside {{0, 1}}. Use "
                         f"backend='reference' for real-valued input (dense sᵀKs, O(out·n²) memory).")


def active_pairs(s: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """``(row, i, j)`` of every pair i < j with s[row, i] = s[row, j] = 1, for ``s`` ``[R, n]`` (int64)."""
    rows, cols = torch.nonzero(s, as_tuple=True)
    R = s.shape[0]
    counts = torch.bincount(rows, minlength=R)
    row_start = torch.cumsum(counts, 0) - counts
    position = torch.arange(rows.numel(), device=s.device) - row_start[rows]
    partners = counts[rows] - 1 - position  # active entries after this one in its row
    first = torch.repeat_interleave(torch.arange(rows.numel(), device=s.device), partners)
    group_start = torch.cumsum(partners, 0) - partners
    offset = torch.arange(first.numel(), device=s.device) - group_start[first]
    second = first + 1 + offset
    return rows[first], cols[first], cols[second]


def _pad_extra(values: Tensor, layout: PairLayout) -> Tensor:
    """Extra values scattered to one slot per pair (zero where a pair has no extra output)."""
    main = layout.pairs * layout.m
    pad = values.new_zeros(layout.pairs)
    pad[layout.extra_pair.to(values.device)] = values[main:]
    return pad


def _extended_grad(grad: Tensor, layout: PairLayout, dtype: torch.dtype) -> Tensor:
    """``2·grad`` on extended rows ``[R, out + m]``: column ``out + t`` repeats column ``t`` (wrapped windows)."""
    out_f, m = layout.out_features, layout.m
    g = grad.new_empty(grad.shape[0], layout.width, dtype=dtype)
    torch.mul(grad, 2.0, out=g[:, :out_f])
    g[:, out_f:] = g[:, :m]
    return g


# ---------------------------------------------------------------------------------------------------- torch engine
def _pair_chunks(s: Tensor, layout: PairLayout, start: Tensor):
    """Chunks of the active pairs of every row: ``(pair ids p, value slots k, flat [R·width] positions of the
    main values, flat positions of the extra values)``; the forward scatters values there, the value gradient
    gathers from there."""
    n, m, width = layout.in_features, layout.m, layout.width
    row, pid = _active_pair_ids(s, n)
    step = max(1, _TORCH_CHUNK // max(1, m))
    t = torch.arange(m, device=s.device)
    for c in range(0, pid.numel(), step):
        p = pid[c:c + step]
        at = row[c:c + step] * width + start[p]
        k = (p[:, None] * m + t).reshape(-1)
        yield p, k, (at[:, None] + t).reshape(-1), at + m


def _torch_forward(s: Tensor, main_val: Tensor, extra_val: Tensor, start: Tensor, layout: PairLayout) -> Tensor:
    R, out_f, m = s.shape[0], layout.out_features, layout.m
    ext = main_val.new_zeros(R * layout.width)
    for p, k, main_at, extra_at in _pair_chunks(s, layout, start):
        if m:
            ext.index_add_(0, main_at, main_val[k])
        ext.index_add_(0, extra_at, extra_val[p])
    ext = ext.view(R, layout.width)
    y = ext[:, :out_f].clone()
    y[:, :m] += ext[:, out_f:]
    return y.mul_(2.0)


def _torch_grad_values(s: Tensor, g: Tensor, start: Tensor, layout: PairLayout):
    m = layout.m
    flat = g.reshape(-1)
    gm = g.new_zeros(layout.pairs * m)
    gx = g.new_zeros(layout.pairs)
    for p, k, main_at, extra_at in _pair_chunks(s, layout, start):
        if m:
            gm.index_add_(0, k, flat[main_at])
        gx.index_add_(0, p, flat[extra_at])
    return gm, gx


def _torch_grad_input(s: Tensor, g: Tensor, main_val: Tensor, extra_val: Tensor, start: Tensor,
                      layout: PairLayout) -> Tensor:
    n, m, width = layout.in_features, layout.m, layout.width
    R = s.shape[0]
    flat = g.reshape(-1)
    gs = g.new_zeros(R * n)
    rows, a = torch.nonzero(s, as_tuple=True)
    b_all = torch.arange(n, device=s.device)
    t = torch.arange(m, device=s.device)
    step = max(1, _TORCH_CHUNK // max(1, n * (m + 1)))
    for c in range(0, rows.numel(), step):
        r, aa = rows[c:c + step, None], a[c:c + step, None]
        b = b_all.expand(r.shape[0], n)
        keep = b != aa
        r, aa, b = r.expand_as(b)[keep], aa.expand_as(b)[keep], b[keep]
        lo, hi = torch.minimum(aa, b), torch.maximum(aa, b)
        p = lo * (2 * n - lo - 1) // 2 + (hi - lo - 1)
        at = r * width + start[p]
        acc = flat[at + m] * extra_val[p]
        if m:
            acc = acc + (flat[at[:, None] + t] * main_val[p[:, None] * m + t]).sum(1)
        gs.index_add_(0, r * n + b, acc)
    return gs.view(R, n)


# ---------------------------------------------------------------------------------------------------- numba engine
def _np(t: Tensor):
    return t.detach().contiguous().numpy()


# Below this many active (row, input) entries the serial kernels run: a parallel launch costs more.
_PARALLEL_MIN_ACTIVE = 50_000


def _workers(active: int, limit: int) -> int:
    return 1 if active < _PARALLEL_MIN_ACTIVE else max(1, min(_kernels.num_threads(), limit))


def _numba_forward(s, main_val, extra_val, start, layout, check):
    """Returns the output and the active lists ``(aptr, aidx)`` as tensors (saved for backward, so the
    backward does not rescan the input)."""
    aptr, aidx, bad = _kernels.active_lists(_np(s))
    if check and bad:
        check_binary(s)  # raises with the full message
    args = (aptr, aidx, layout.in_features, layout.m, _np(start), _np(main_val), _np(extra_val),
            layout.out_features, 2.0)
    workers = _workers(len(aidx), s.shape[0])
    ext = _kernels.forward_serial(*args) if workers == 1 else _kernels.forward(*args, workers)
    return torch.from_numpy(ext)[:, :layout.out_features], torch.from_numpy(aptr), torch.from_numpy(aidx)


def _numba_grad_values(lists, g, start, layout):
    """The full value gradient ``[nnz]``: main block written in place by the kernel, extras gathered after."""
    aptr, aidx = (t.numpy() for t in lists)
    grad = g.new_zeros(layout.nnz)
    main = layout.pairs * layout.m
    args = (aptr, aidx, layout.in_features, layout.m, _np(start), _np(g), grad[:main].numpy())
    workers = _workers(len(aidx), layout.in_features)
    gx = _kernels.grad_values_serial(*args) if workers == 1 else _kernels.grad_values(*args, workers)
    grad[main:] = torch.from_numpy(gx)[layout.extra_pair]
    return grad


def _numba_grad_input(lists, g, main_val, extra_val, start, layout):
    """Rows grouped by active input (``kernels_grad_input.py``); the row-by-row kernel of ``kernels.py`` is the
    plain version beside it (``grad_input_rowwise``, compared in the tests)."""
    aptr, aidx = (t.numpy() for t in lists)
    args = (aptr, aidx, layout.in_features, layout.m, _np(start), _np(main_val), _np(extra_val), _np(g))
    return torch.from_numpy(_gkernels.grad_input_window(*args, _workers(len(aidx), g.shape[0])))


def grad_input_rowwise(lists, g, main_val, extra_val, start, layout):
    """The row-by-row numba input gradient (one scalar gather per multiply-add): the reference of the grouped
    kernel, same arguments as :func:`_numba_grad_input`."""
    aptr, aidx = (t.numpy() for t in lists)
    args = (aptr, aidx, layout.in_features, layout.m, _np(start), _np(main_val), _np(extra_val), _np(g))
    workers = _workers(len(aidx), g.shape[0])
    gs = _kernels.grad_input_serial(*args) if workers == 1 else _kernels.grad_input(*args, workers)
    return torch.from_numpy(gs)


# ---------------------------------------------------------------------------------------------------- engines
def sparse_forward(s: Tensor, values: Tensor, layout: PairLayout, engine: str, check: bool):
    """``(y [R, out] in s's dtype, saved)``: the form by ``engine``; ``saved`` is what the backward needs besides
    the values (the active lists of the numba and triton scans, the input itself for the torch engine)."""
    dtype = compute_dtype(values)
    sc = s.detach().to(dtype).contiguous()
    vd = values.detach().to(dtype)
    start = layout.start.to(values.device)
    main_val = vd[:layout.pairs * layout.m]
    extra_val = _pad_extra(vd, layout)
    if engine == "numba":
        out, aptr, aidx = _numba_forward(sc, main_val, extra_val, start, layout, check)
        saved = (aptr, aidx)  # the active lists (≈ 4 bytes per input spike) replace a rescan of s
    elif engine == "triton":
        if check:
            check_binary(s)
        from . import triton as _triton  # lazy: Triton is optional and slow to import
        out, aptr, aidx = _triton.forward(sc, main_val, extra_val, start, layout)
        saved = (aptr, aidx)
    else:
        if check:
            check_binary(s)
        out = _torch_forward(sc, main_val, extra_val, start, layout)
        saved = (s,)
    return out.to(s.dtype), saved


def saved_lists(s: Tensor, values: Tensor, engine: str) -> tuple[Tensor, ...]:
    """What :func:`sparse_forward` saves for ``engine``, recomputed from ``s`` (the custom op's backward)."""
    if engine == "torch":
        return (s,)
    sc = s.detach().to(compute_dtype(values)).contiguous()
    if engine == "numba":
        aptr, aidx, _ = _kernels.active_lists(_np(sc))
        return torch.from_numpy(aptr), torch.from_numpy(aidx)
    from . import triton as _triton
    return _triton.active_lists(sc)


def sparse_backward(grad: Tensor, values: Tensor | None, saved: tuple[Tensor, ...], layout: PairLayout,
                    engine: str, s_dtype: torch.dtype, v_dtype: torch.dtype, need_s: bool, need_values: bool):
    """``(dL/ds or None, dL/dvalues or None)`` from the output gradient ``grad`` ``[R, out]`` (``values`` is
    only read for dL/ds)."""
    dtype = compute_dtype(grad)
    g = _extended_grad(grad, layout, dtype)
    sc = saved[0].detach().to(dtype).contiguous() if engine == "torch" else None
    if engine == "triton":
        from . import triton as _triton
    start = layout.start.to(grad.device)
    grad_s = grad_values = None
    if need_values:
        if engine == "numba":
            grad_values = _numba_grad_values(saved, g, start, layout)
        elif engine == "triton":
            grad_values = _triton.grad_values(saved, g, start, layout)
        else:
            gm, gx = _torch_grad_values(sc, g, start, layout)
            grad_values = torch.cat([gm, gx[layout.extra_pair.to(gx.device)]])
        grad_values = grad_values.to(v_dtype)
    if need_s:
        vd = values.detach().to(dtype)
        main_val, extra_val = vd[:layout.pairs * layout.m], _pad_extra(vd, layout)
        if engine == "numba":
            gs = _numba_grad_input(saved, g, main_val, extra_val, start, layout)
        elif engine == "triton":
            gs = _triton.grad_input(saved, g, main_val, extra_val, start, layout)
        else:
            gs = _torch_grad_input(sc, g, main_val, extra_val, start, layout)
        grad_s = gs.to(s_dtype)
    return grad_s, grad_values
