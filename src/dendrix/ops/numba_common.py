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

import types
from contextlib import contextmanager
from typing import Callable, Iterator

import numba
import numpy as np
import torch
from numba import njit
from numba.extending import intrinsic

__all__ = ["BLOCK", "PARALLEL_MIN_ELEMENTS", "parallel_and_serial", "pick", "fma", "surrogate_derivative", "surrogate_derivatives", "surrogate_arguments", "as_array", "step_array", "threads_like_torch",
           "unsupported_reason"]

BLOCK = 256  # neurons per block: 1 kB of float32 per row of a [T, M] tensor, several blocks per thread
# Below this many [T, M] elements a call runs the serial build: the whole call then takes well under a
# millisecond, and a parallel region's start and barrier cost more than they save. On a loaded machine a
# barrier can wait a whole scheduler time slice for a descheduled worker (measured: 6-20 ms per call at
# (T, B, N) = (64, 4, 64) interleaved with torch operators, against 0.07 ms serial).
PARALLEL_MIN_ELEMENTS = 1 << 18


def parallel_and_serial(fn: Callable) -> tuple[Callable, Callable]:
    """Two compiled builds of one kernel: parallel (``prange`` over blocks of neurons) and serial (``prange``
    runs as ``range``). The serial copy gets its own name, so numba's on-disk caches of the two never mix."""
    serial = types.FunctionType(fn.__code__, fn.__globals__, fn.__name__ + "_serial", fn.__defaults__, fn.__closure__)
    serial.__qualname__ = fn.__qualname__ + "_serial"
    serial.__doc__ = fn.__doc__
    return njit(parallel=True, cache=True)(fn), njit(cache=True)(serial)


def pick(builds: tuple[Callable, Callable], elements: int, neurons: int) -> tuple[Callable, int]:
    """``(kernel, workers)``: the parallel build with as many workers as torch threads (``threads_like_torch``)
    for large calls with at least two blocks of neurons, else the serial build with one."""
    workers = min(torch.get_num_threads(), numba.config.NUMBA_NUM_THREADS, -(-neurons // 64))
    if workers > 1 and elements >= PARALLEL_MIN_ELEMENTS and neurons >= 2 * BLOCK:
        return builds[0], workers
    return builds[1], 1


@intrinsic
def fma(typingctx, a, b, c):
    """``a * b + c`` with one rounding (LLVM's ``llvm.fma``), for float32 or float64 operands of one type."""
    if not (a == b == c) or not isinstance(a, numba.types.Float):
        return None

    def codegen(context, builder, signature, args):
        return builder.fma(*args)
    return a(a, b, c), codegen


@njit(cache=True, inline="always")
def surrogate_derivative(kind, c, u):
    """σ'(u) of the surrogate whose ``numba_kind`` is ``kind``, with its ``numba_constants`` in ``c`` (of u's
    dtype). The branches mirror ``dendrix.ops.triton_common.surrogate_derivative``; a new surrogate adds one."""
    one = c[5]
    if kind == 0:    # ATan: c1 / (1 + (c0 u)²)
        z = c[0] * u
        return c[1] / (one + z * z)
    elif kind == 1:  # Sigmoid: c0 s (1 - s)
        s = one / (one + np.exp(-(c[0] * u)))
        return c[0] * s * (one - s)
    elif kind == 2:  # Triangle: max(0, 1 - c0 |u|) c0
        return max(one - abs(u) * c[0], one - one) * c[0]
    elif kind == 3:  # FastSigmoid: 1 / (1 + c0 |u|)²
        d = one + c[0] * abs(u)
        return one / (d * d)
    elif kind == 4:  # Rectangular: c1 where |u| < c0
        return c[1] if abs(u) < c[0] else one - one
    else:            # DoubleGaussian: c3 exp(-½ (c1 u)²) - c4 [exp(-½ (c2 (u - c0))²) + exp(-½ (c2 (u + c0))²)]
        half = c[6]
        z0 = c[1] * u
        zp = c[2] * (u - c[0])
        zm = c[2] * (u + c[0])
        return c[3] * np.exp(-half * (z0 * z0)) - c[4] * (np.exp(-half * (zp * zp)) + np.exp(-half * (zm * zm)))


@njit(cache=True, inline="always")
def surrogate_derivatives(kind, c, values, shift, out):
    """``out[j] = σ'(values[j] - shift)`` for a block; the branch on ``kind`` sits outside the loops, so each
    loop is a straight vectorisable one."""
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
            s = one / (one + np.exp(-(c[0] * (values[j] - shift))))
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
            out[j] = c[3] * np.exp(-half * (z0 * z0)) - c[4] * (np.exp(-half * (zp * zp)) + np.exp(-half * (zm * zm)))


def surrogate_arguments(surrogate, dtype: torch.dtype) -> tuple[int, np.ndarray]:
    """``(kind, constants)`` for :func:`surrogate_derivative`: the constants padded to 5, then 1 and ½, so the
    kernels compute in the array dtype without float64 literals."""
    consts = list(surrogate.numba_constants())
    consts = consts + [0.0] * (5 - len(consts)) + [1.0, 0.5]
    return int(surrogate.numba_kind), np.asarray(consts, dtype=as_numpy_dtype(dtype))


def as_numpy_dtype(dtype: torch.dtype):
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
def threads_like_torch() -> Iterator[None]:
    """numba's parallel loops on as many threads as torch's intra-op pool (``torch.set_num_threads`` governs
    both), capped by numba's own limit."""
    previous = numba.get_num_threads()
    numba.set_num_threads(max(1, min(torch.get_num_threads(), numba.config.NUMBA_NUM_THREADS)))
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
