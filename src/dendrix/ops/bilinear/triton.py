"""Triton GPU kernels of the sparse bilinear form ``y[r, o] = 2 Σ_{i<j} K_o,ij s_ri s_rj`` (``layout.py`` storage).

Why: the ``"torch"`` engine materialises index lists (active pairs × kept outputs for the forward and the value
gradient, and (row, active a, every b) triples for the input gradient) and scatters them with ``index_add_``,
which is many times slower than Linear+LIF on a GPU (``docs/benchmarks.md``, GPU section). These kernels visit
the same pairs but keep every intermediate in registers.

**Active lists.** Per row, the sorted indices of its input spikes (CSR: ``aptr`` int64 ``[R+1]``, ``aidx``
int32), built on the GPU by ``torch.nonzero`` + ``bincount``/``cumsum``. Saved for backward instead of ``s`` (as
the numba engine does: 4 bytes per spike), so the backward does not rescan the input.

Kernels (all work is ∝ active pairs, none is ∝ n² per row):

* **Forward**: one program per (row, block of ≤ 128 output columns). It walks the row's active pairs (i, j),
  i < j, in blocks of 16 second inputs j, and for each column c of its block computes the pair's window offset
  ``t = (c - start_p) mod out``; the pair contributes ``values[p·m + t]`` when ``t < m`` and its padded extra
  value when ``t = m``. The output block lives in registers and is written once: no atomics, no extended row, no
  fold, and the result is deterministic (fixed summation order). Cost: the masked gather spans all columns of
  the block while only ``m + 1`` of them load, i.e. about ``1/d`` lanes per useful value (10 at sparsity 0.9);
  lane arithmetic is cheap next to the loads, and the alternative (adding windows into a global extended row)
  needs atomics, because in one program consecutive windows overlap on different threads.
* **Value gradient**: ``dK_p,t = Σ_r 2 g[r, start_p + t]`` over the rows where pair p fires. One program per
  row gathers the window of the extended ``2g`` (``sparse._extended_grad``, width ``out + m``, so windows are
  contiguous) for a block of 32 pairs and adds it with relaxed float atomics into the gradient. A pair occurs
  once per row, so atomics only collide between rows (different programs); summation order therefore varies
  between runs (float32 differences at rounding level). An atomic-free variant (one program per first input
  over the rows where it fires) would have to scan a dense ``[pairs of i]`` block per row, ∝ n² instead of ∝
  active pairs.
* **Input gradient**: ``ds_b = Σ_{a active, a ≠ b} Σ_t K_(a,b),t · 2g[r, start_(a,b) + t]``. One program per
  (row, block of 64 inputs b) loops over the row's active a and, for the [64 b × 16 t] tile of pairs (a, b),
  gathers the values and the g windows and reduces over t into a register accumulator: nothing of size
  (row, a, b) is ever stored, and each gradient entry is written once (no atomics, deterministic).
  For b > a the pairs (a, b) are consecutive in storage, so the value tile is one contiguous chunk.

Windows longer than 16 use [32 b × 32 t] tiles, and windows longer than 32 (e.g. density 1.0 with many outputs)
are processed in chunks of 32 offsets. Tile sizes keep about 1024 elements per 4-warp program: compiled for
sm_90 (ptxas -v, no GPU needed), the float32 kernels use 72 (forward), 48 / 94 (value gradient, m <= 16 / above)
and 96 (input gradient) registers with no spills; a [64 × 32] input-gradient tile needed 247.
Offsets are computed in int64 (``p·m`` and ``row·width`` overflow int32 for large layers). Loops with a runtime
bound are ``while`` loops: Triton's CPU interpreter (``TRITON_INTERPRET=1``, used by the tests without a GPU)
cannot take ``range()`` of one.

Importing this module imports Triton; ``dendrix.ops.bilinear`` imports it lazily (the ``"triton"`` engine).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch import Tensor

from ..triton_common import device_guard, interpreting
from .layout import PairLayout

__all__ = ["active_lists", "forward", "grad_values", "grad_input", "unsupported_reason"]

_DTYPES = (torch.float32, torch.float64)
_BLOCK_O = 128   # output columns per forward program (its register accumulator)
_BLOCK_J = 16    # second inputs j per forward step: a [16, 128] tile
_BLOCK_JV = 32   # pairs per value-gradient step
_TILE_B = 1024   # input-gradient tile [inputs b × window offsets]: 64 × 16 for m <= 16, 32 × 32 above
_MAX_M = 32      # window offsets per tile in the backward kernels
_NUM_WARPS = 4


def unsupported_reason(device: torch.device) -> str | None:
    """Why the kernels cannot run on ``device`` (None when they can)."""
    if device.type != "cuda" and not interpreting():
        return f"tensors must be on a CUDA device, got {device} (TRITON_INTERPRET=1 runs CPU tensors)"
    return None


def _block(size: int, cap: int) -> int:
    """A power of two >= ``size`` (at least 16, at most ``cap``)."""
    return max(16, min(cap, triton.next_power_of_2(max(1, size))))


@triton.jit
def _pair_base(i, n):
    """``pair(i, j) = base + j`` for j > i (triangular order of ``layout.py``); ``i`` int64."""
    return i * (2 * n - i - 1) // 2 - i - 1


@triton.jit
def _forward_kernel(aptr, aidx, start, main_val, extra_val, out_ptr, n, m, out_f,
                    HAS_MAIN: tl.constexpr, HAS_EXTRA: tl.constexpr, BLOCK_J: tl.constexpr,
                    BLOCK_O: tl.constexpr):
    r = tl.program_id(0).to(tl.int64)
    cols = tl.program_id(1) * BLOCK_O + tl.arange(0, BLOCK_O)
    col_ok = cols < out_f
    lo = tl.load(aptr + r)
    hi = tl.load(aptr + r + 1)
    acc = tl.zeros([BLOCK_O], dtype=out_ptr.dtype.element_ty)
    x = lo
    while x < hi - 1:
        i = tl.load(aidx + x).to(tl.int64)
        base = _pair_base(i, n)
        y = x + 1
        while y < hi:
            yj = y + tl.arange(0, BLOCK_J)
            j_ok = yj < hi
            p = base + tl.load(aidx + yj, mask=j_ok, other=0).to(tl.int64)
            st = tl.load(start + p, mask=j_ok, other=0).to(tl.int64)
            t = cols[None, :] - st[:, None]
            t = tl.where(t < 0, t + out_f, t)           # offset of column c in pair p's (cyclic) window
            live = j_ok[:, None] & col_ok[None, :]
            tile = tl.zeros([BLOCK_J, BLOCK_O], dtype=out_ptr.dtype.element_ty)
            if HAS_MAIN:
                tile += tl.load(main_val + p[:, None] * m + t, mask=live & (t < m), other=0.0)
            if HAS_EXTRA:
                extra = tl.load(extra_val + p, mask=j_ok, other=0.0)
                tile += tl.where(live & (t == m), extra[:, None], 0.0)
            acc += tl.sum(tile, axis=0)
            y += BLOCK_J
        x += 1
    tl.store(out_ptr + r * out_f + cols, acc * 2.0, mask=col_ok)


@triton.jit
def _grad_values_kernel(aptr, aidx, start, g, grad_main, grad_extra, n, m, width,
                        HAS_MAIN: tl.constexpr, HAS_EXTRA: tl.constexpr, BLOCK_J: tl.constexpr,
                        BLOCK_M: tl.constexpr):
    r = tl.program_id(0).to(tl.int64)
    g_row = g + r * width
    lo = tl.load(aptr + r)
    hi = tl.load(aptr + r + 1)
    offs = tl.arange(0, BLOCK_M)
    x = lo
    while x < hi - 1:
        i = tl.load(aidx + x).to(tl.int64)
        base = _pair_base(i, n)
        y = x + 1
        while y < hi:
            yj = y + tl.arange(0, BLOCK_J)
            j_ok = yj < hi
            p = base + tl.load(aidx + yj, mask=j_ok, other=0).to(tl.int64)
            st = tl.load(start + p, mask=j_ok, other=0).to(tl.int64)
            if HAS_MAIN:
                t0 = tl.full([], 0, tl.int32)
                while t0 < m:
                    t = t0 + offs
                    live = j_ok[:, None] & (t < m)[None, :]
                    window = tl.load(g_row + st[:, None] + t[None, :], mask=live, other=0.0)
                    tl.atomic_add(grad_main + p[:, None] * m + t[None, :], window, mask=live, sem="relaxed")
                    t0 += BLOCK_M
            if HAS_EXTRA:
                tail = tl.load(g_row + st + m, mask=j_ok, other=0.0)
                tl.atomic_add(grad_extra + p, tail, mask=j_ok, sem="relaxed")
            y += BLOCK_J
        x += 1


@triton.jit
def _grad_input_kernel(aptr, aidx, start, main_val, extra_val, g, grad_s, n, m, width,
                       HAS_MAIN: tl.constexpr, HAS_EXTRA: tl.constexpr, BLOCK_B: tl.constexpr,
                       BLOCK_M: tl.constexpr):
    r = tl.program_id(0).to(tl.int64)
    b = (tl.program_id(1) * BLOCK_B + tl.arange(0, BLOCK_B)).to(tl.int64)
    b_ok = b < n
    g_row = g + r * width
    lo = tl.load(aptr + r)
    hi = tl.load(aptr + r + 1)
    offs = tl.arange(0, BLOCK_M)
    acc = tl.zeros([BLOCK_B], dtype=grad_s.dtype.element_ty)
    x = lo
    while x < hi:
        a = tl.load(aidx + x).to(tl.int64)
        first = tl.minimum(a, b)
        p = _pair_base(first, n) + tl.maximum(a, b)
        ok = b_ok & (b != a)
        st = tl.load(start + p, mask=ok, other=0).to(tl.int64)
        if HAS_MAIN:
            t0 = tl.full([], 0, tl.int32)
            while t0 < m:
                t = t0 + offs
                live = ok[:, None] & (t < m)[None, :]
                vals = tl.load(main_val + p[:, None] * m + t[None, :], mask=live, other=0.0)
                window = tl.load(g_row + st[:, None] + t[None, :], mask=live, other=0.0)
                acc += tl.sum(vals * window, axis=1)
                t0 += BLOCK_M
        if HAS_EXTRA:
            extra = tl.load(extra_val + p, mask=ok, other=0.0)
            acc += extra * tl.load(g_row + st + m, mask=ok, other=0.0)
        x += 1
    tl.store(grad_s + r * n + b, acc, mask=b_ok)


# ---------------------------------------------------------------------------------------------------- host side
def active_lists(s: Tensor) -> tuple[Tensor, Tensor]:
    """Row pointers ``[R + 1]`` (int64) and input indices (int32, ascending per row) of the non-zeros of ``s``."""
    rows, cols = torch.nonzero(s, as_tuple=True)
    aptr = torch.zeros(s.shape[0] + 1, dtype=torch.int64, device=s.device)
    torch.cumsum(torch.bincount(rows, minlength=s.shape[0]), 0, out=aptr[1:])
    return aptr, cols.to(torch.int32)


def _check(device: torch.device, *tensors: Tensor) -> None:
    reason = unsupported_reason(device)
    if reason is not None:
        raise RuntimeError(f"bilinear Triton engine: {reason}")
    for t in tensors:
        if t.dtype.is_floating_point and t.dtype not in _DTYPES:
            raise TypeError(f"bilinear Triton engine: dtype {t.dtype} is not supported (float32/float64)")


def forward(s: Tensor, main_val: Tensor, extra_val: Tensor, start: Tensor,
            layout: PairLayout) -> tuple[Tensor, Tensor, Tensor]:
    """``(y [R, out], aptr, aidx)``: the form (factor 2 included) and the active lists, saved for backward."""
    _check(s.device, main_val, extra_val)
    aptr, aidx = active_lists(s)
    R, out_f = s.shape[0], layout.out_features
    y = torch.empty(R, out_f, dtype=main_val.dtype, device=s.device)
    block_o = _block(out_f, _BLOCK_O)
    if R:
        with device_guard(s):
            _forward_kernel[(R, triton.cdiv(out_f, block_o))](
                aptr, aidx, start, main_val, extra_val, y, layout.in_features, layout.m, out_f,
                HAS_MAIN=layout.m > 0, HAS_EXTRA=layout.extra_pair.numel() > 0, BLOCK_J=_BLOCK_J,
                BLOCK_O=block_o, num_warps=_NUM_WARPS)
    return y, aptr, aidx


def grad_values(lists: tuple[Tensor, Tensor], g: Tensor, start: Tensor, layout: PairLayout) -> Tensor:
    """The value gradient ``[nnz]`` from the extended ``2g`` ``[R, out + m]`` (``sparse._extended_grad``)."""
    aptr, aidx = lists
    _check(g.device, g)
    main = layout.pairs * layout.m
    grad = torch.zeros(layout.nnz, dtype=g.dtype, device=g.device)
    has_extra = layout.extra_pair.numel() > 0
    grad_extra = torch.zeros(layout.pairs if has_extra else 1, dtype=g.dtype, device=g.device)
    R = g.shape[0]
    if R:
        with device_guard(g):
            _grad_values_kernel[(R,)](
                aptr, aidx, start, g, grad, grad_extra, layout.in_features, layout.m, layout.width,
                HAS_MAIN=layout.m > 0, HAS_EXTRA=has_extra, BLOCK_J=_BLOCK_JV, BLOCK_M=_block(layout.m, _MAX_M),
                num_warps=_NUM_WARPS)
    if has_extra:
        grad[main:] = grad_extra[layout.extra_pair.to(g.device)]
    return grad


def grad_input(lists: tuple[Tensor, Tensor], g: Tensor, main_val: Tensor, extra_val: Tensor, start: Tensor,
               layout: PairLayout) -> Tensor:
    """``∂L/∂s`` ``[R, n]`` for every input (active or not) from the extended ``2g``."""
    aptr, aidx = lists
    _check(g.device, g, main_val, extra_val)
    R, n = g.shape[0], layout.in_features
    grad_s = torch.empty(R, n, dtype=g.dtype, device=g.device)
    block_m = _block(layout.m, _MAX_M)
    block_b = _TILE_B // block_m
    if R:
        with device_guard(g):
            _grad_input_kernel[(R, triton.cdiv(n, block_b))](
                aptr, aidx, start, main_val, extra_val, g, grad_s, n, layout.m, layout.width,
                HAS_MAIN=layout.m > 0, HAS_EXTRA=layout.extra_pair.numel() > 0, BLOCK_B=block_b,
                BLOCK_M=block_m, num_warps=_NUM_WARPS)
    return grad_s
