"""Pieces shared by the numba CPU engines of the neuron recurrences (imported only when numba is installed).

The engines (``dendrix.ops.lif.numba_engine``, ``dendrix.ops.alif.numba_engine``, ``dendrix.ops.rf.numba_engine``)
run the whole time loop inside one compiled function: the neurons of one step (``M = B·N`` of them) are split
into blocks of ``BLOCK`` contiguous neurons, ``prange`` hands the blocks to threads, and each block walks the
time axis with its state in registers/L1 (the inner loop over the block's neurons is contiguous, so LLVM
vectorises it). Nothing of size ``[T, M]`` is allocated besides the outputs and the input gradient.

Bit-exactness with the fused engines: those run ATen operators whose vectorised CPU kernels compute
``add(a, b, alpha=c)`` and ``addcmul(a, b, c)`` as one fused multiply-add (checked in
``tests/test_ops_numba.py``); :func:`fma` gives the kernels the same single rounding, and every other operation
is written in the same order and precision as the fused engine, so spikes and potentials agree bit for bit.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import numba
import numpy as np
import torch
from llvmlite import ir
from numba import njit
from numba.core import types as nb_types
from numba.extending import intrinsic, overload

__all__ = ["BLOCK", "PARALLEL_MIN_ELEMENTS", "workers_for", "numba_threads", "fma", "non_finite", "exp_like",
           "surrogate_derivatives",
           "surrogate_arguments", "as_numpy_dtype", "as_array", "step_array", "unsupported_reason"]

BLOCK = 256  # neurons per block: 1 kB of float32 per row of a [T, M] tensor, several blocks per thread
# Below this many [T, M] elements a call runs on one thread: the whole call then takes well under a
# millisecond, and waking and joining workers costs more than it saves. On a loaded machine the join can wait a
# whole scheduler time slice for a descheduled worker (measured: 6-20 ms per call at (T, B, N) = (64, 4, 64)
# interleaved with torch operators, against 0.07 ms on one thread).
PARALLEL_MIN_ELEMENTS = 1 << 18


def workers_for(elements: int, neurons: int) -> int:
    """Threads for one call: as many as torch's intra-op pool (``torch.set_num_threads`` governs both), capped
    by numba's limit and the number of 64-neuron blocks; one for small calls or fewer than two blocks of
    ``BLOCK`` neurons."""
    workers = min(torch.get_num_threads(), numba.config.NUMBA_NUM_THREADS, -(-neurons // 64))
    if workers > 1 and elements >= PARALLEL_MIN_ELEMENTS and neurons >= 2 * BLOCK:
        return workers
    return 1


@intrinsic
def fma(typingctx, a, b, c):
    """``a * b + c`` with one rounding (LLVM's ``llvm.fma``), for float32 or float64 operands of one type."""
    if not (a == b == c) or not isinstance(a, numba.types.Float):
        return None

    def codegen(context, builder, signature, args):
        return builder.fma(*args)
    return a(a, b, c), codegen


@intrinsic
def non_finite(typingctx, one):
    """``(+inf, nan)`` in the float type of ``one``: the quiet NaN's bits are those of ``torch.nan`` (0x7fc00000
    in float32), so a NaN spike written by a kernel equals the fused engines' bit for bit."""
    if not isinstance(one, numba.types.Float):
        return None

    def codegen(context, builder, signature, args):
        llty = args[0].type
        return ir.Constant(ir.ArrayType(llty, 2), [ir.Constant(llty, float("inf")), ir.Constant(llty, float("nan"))])
    return nb_types.UniTuple(one, 2)(one), codegen


@intrinsic
def _float32_from_bits(typingctx, bits):
    """The float32 whose IEEE bit pattern is the low 32 bits of the integer ``bits`` (a register move,
    vectorisable)."""
    if not isinstance(bits, nb_types.Integer):
        return None

    def codegen(context, builder, signature, args):
        value = args[0]
        if bits.bitwidth > 32:
            value = builder.trunc(value, ir.IntType(32))
        return builder.bitcast(value, ir.FloatType())
    return nb_types.float32(bits), codegen


@njit(cache=True, inline="always")
def _exp_float32(x):
    """exp(x) in float32 from a degree-6 polynomial on [-ln2/2, ln2/2] and an exponent built from bits
    (Cephes' expf scheme; within 2 ulp of libm's expf, tested). Unlike a call to libm's expf, LLVM vectorises it:
    the double-Gaussian surrogate of ALIF and RF evaluates three exponentials per element in the backward."""
    x = min(max(x, np.float32(-87.0)), np.float32(88.0))
    k = np.floor(x * np.float32(1.44269504088896341) + np.float32(0.5))
    r = x - k * np.float32(0.693359375) - k * np.float32(-2.12194440e-4)
    p = np.float32(1.9875691500e-4)
    p = p * r + np.float32(1.3981999507e-3)
    p = p * r + np.float32(8.3334519073e-3)
    p = p * r + np.float32(4.1665795894e-2)
    p = p * r + np.float32(1.6666665459e-1)
    p = p * r + np.float32(5.0000001201e-1)
    p = p * (r * r) + r + np.float32(1.0)
    return p * _float32_from_bits((np.int64(k) + 127) << 23)


def exp_like(x):
    """exp in the precision of ``x`` inside the kernels: the vectorisable float32 form, libm for float64."""
    return np.exp(x)


@overload(exp_like, jit_options={"cache": True})
def _exp_like(x):
    if x == nb_types.float32:
        return lambda x: _exp_float32(x)
    return lambda x: np.exp(x)


@njit(cache=True, inline="always")
def surrogate_derivatives(kind, c, values, shift, out):
    """``out[j] = σ'(values[j] - shift)`` for a block, for the surrogate whose ``numba_kind`` is ``kind`` with its
    ``numba_constants`` in ``c`` (:func:`surrogate_arguments`). The branches mirror
    ``dendrix.ops.triton_common.surrogate_derivative`` (a new surrogate adds one); the branch on ``kind`` sits
    outside the loops, so each loop is a straight vectorisable one."""
    n = out.shape[0]
    one = c[5]
    zero = one - one
    half = c[6]
    if kind == 0:
        for j in range(n):
            z = c[0] * (values[j] - shift)
            out[j] = c[1] / (one + z * z)
    elif kind == 1:
        for j in range(n):
            s = one / (one + exp_like(-(c[0] * (values[j] - shift))))
            out[j] = c[0] * s * (one - s)
    elif kind == 2:
        for j in range(n):
            out[j] = max(one - abs(values[j] - shift) * c[0], zero) * c[0]
    elif kind == 3:
        for j in range(n):
            d = one + c[0] * abs(values[j] - shift)
            out[j] = one / (d * d)
    elif kind == 4:
        for j in range(n):
            out[j] = c[1] if abs(values[j] - shift) < c[0] else zero
    else:
        for j in range(n):
            u = values[j] - shift
            z0 = c[1] * u
            zp = c[2] * (u - c[0])
            zm = c[2] * (u + c[0])
            out[j] = c[3] * exp_like(-half * (z0 * z0)) - c[4] * (exp_like(-half * (zp * zp)) + exp_like(-half * (zm * zm)))


def surrogate_arguments(surrogate, dtype: torch.dtype) -> tuple[int, np.ndarray]:
    """``(kind, constants)`` for :func:`surrogate_derivatives`: the constants padded to 5, then 1 and ½, so the
    kernels compute in the array dtype without float64 literals."""
    consts = list(surrogate.numba_constants())
    consts = consts + [0.0] * (5 - len(consts)) + [1.0, 0.5]
    return int(surrogate.numba_kind), np.asarray(consts, dtype=as_numpy_dtype(dtype))


def as_numpy_dtype(dtype: torch.dtype):
    """The numpy scalar type of a float32 or float64 torch dtype."""
    return np.float32 if dtype == torch.float32 else np.float64


def as_array(t: torch.Tensor) -> np.ndarray:
    """A contiguous numpy view (a copy only where ``t`` is not contiguous)."""
    return t.detach().contiguous().numpy()


def step_array(value, like: torch.Tensor) -> np.ndarray:
    """A float or a tensor broadcast to one step ``like`` ([M] flat, contiguous, ``like``'s dtype)."""
    if isinstance(value, torch.Tensor):
        return value.detach().to(like.dtype).expand(like.shape).contiguous().reshape(-1).numpy()
    return np.full(like.numel(), value, dtype=as_numpy_dtype(like.dtype))


@contextmanager
def numba_threads(workers: int) -> Iterator[None]:
    """numba's parallel loops on ``workers`` threads inside the block (:func:`workers_for`)."""
    previous = numba.get_num_threads()
    numba.set_num_threads(workers)
    try:
        yield
    finally:
        numba.set_num_threads(previous)


def unsupported_reason(tensors, surrogate) -> str | None:
    """Why a numba engine cannot run a call (None when it can): CPU tensors of one dtype, float32 or float64,
    and a surrogate with a numba form."""
    tensors = [t for t in tensors if isinstance(t, torch.Tensor)]
    if any(t.device.type != "cpu" for t in tensors):
        return "the numba engine runs on CPU tensors only"
    dtypes = {t.dtype for t in tensors}
    if len(dtypes) != 1 or next(iter(dtypes)) not in (torch.float32, torch.float64):
        return f"the numba engine needs float32 or float64 tensors of one dtype, got {sorted(map(str, dtypes))}"
    if getattr(surrogate, "numba_kind", None) is None:
        return f"surrogate {surrogate!r} has no numba form (numba_kind is None)"
    return None
