"""Pieces shared by the numba CPU engines of the neuron recurrences (imported only when numba is installed).

The engines (``dendrix.ops.lif.numba_engine``, ``dendrix.ops.alif.numba_engine``, ``dendrix.ops.rf.numba_engine``)
run the whole time loop inside one compiled function: the neurons of one step (``M = B·N`` of them) are split
into as few blocks as there are threads, of at most ``BLOCK_MAX`` contiguous neurons (:func:`block_size`);
``prange`` hands the blocks to threads, and each block walks the time axis with its state in L1/L2. The inner
loop over a block's neurons is contiguous (LLVM vectorises it), and each step reads and writes long contiguous
row pieces, which the hardware prefetchers stream: blocks of 256 or 64 neurons (1 kB or 256 B pieces, a whole
row apart, so each step starts a new 4 kB page) made the LIF forward 1.5x or 2.5x slower on one thread (AMD EPYC,
T = 1024, M = 4096, CPU time). Nothing of size ``[T, M]`` is allocated besides the outputs
and the input gradient.

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
from llvmlite import ir
from numba import njit, prange
from numba.core import types as nb_types
from numba.extending import intrinsic, overload

__all__ = ["kernel", "Kernel", "BLOCK_MAX", "SEGMENT", "PARALLEL_MIN_ELEMENTS", "MIN_PARALLEL_NEURONS", "block_size",
           "segments", "workers_for", "numba_threads", "fma", "non_finite", "exp_like", "surrogate_arguments",
           "SURROGATE_FUNCTIONS", "per_surrogate", "per_surrogate_blocks", "surrogate_constants",
           "as_numpy_dtype", "as_array", "step_array", "KernelArguments", "sequence_reason", "unsupported_reason"]

# Neurons per block at most: a block's state and per-neuron coefficients (a few [BLOCK_MAX] arrays, 16 kB each in
# float32) and the backward's segment scratch (SEGMENT rows) stay in L2.
BLOCK_MAX = 4096
# Steps per segment of the ALIF/RF backward: the forward keeps the state at every SEGMENT-th step (1/SEGMENT of
# a [T, M] tensor), the backward recomputes one segment's hidden state into a [SEGMENT, block] scratch and
# sweeps it in reverse while the segment's rows of U are still in cache.
SEGMENT = 32
MIN_PARALLEL_NEURONS = 512  # fewer neurons per step run on one thread (half a block each is not worth a join)
# Below this many [T, M] elements a call runs on one thread: the whole call then takes well under a
# millisecond, and waking and joining workers costs more than it saves. On a loaded machine the join can wait a
# whole scheduler time slice for a descheduled worker (measured: 6-20 ms per call at (T, B, N) = (64, 4, 64)
# interleaved with torch operators, against 0.07 ms on one thread).
PARALLEL_MIN_ELEMENTS = 1 << 18


def workers_for(elements: int, neurons: int) -> int:
    """Threads for one call: as many as torch's intra-op pool (``torch.set_num_threads`` governs both), capped
    by numba's limit and the number of 64-neuron pieces; one for small calls or fewer than
    ``MIN_PARALLEL_NEURONS`` neurons per step."""
    workers = min(torch.get_num_threads(), numba.config.NUMBA_NUM_THREADS, -(-neurons // 64))
    if workers > 1 and elements >= PARALLEL_MIN_ELEMENTS and neurons >= MIN_PARALLEL_NEURONS:
        return workers
    return 1


def block_size(neurons: int, workers: int) -> int:
    """Neurons per block: the fewest blocks of at most ``BLOCK_MAX`` neurons, a multiple of ``workers`` of them
    (an even split between threads), each a multiple of 16 neurons (whole 64-byte lines of float32)."""
    blocks = workers * max(1, -(-neurons // (workers * BLOCK_MAX)))
    per_block = -(-neurons // blocks)
    return max(16, -(-per_block // 16) * 16)


def segments(n_steps: int, segment: int) -> int:
    """How many ``segment``-step segments cover ``n_steps`` (rows of the saved state checkpoints)."""
    return -(-n_steps // segment)


class Kernel:
    """A kernel compiled twice: ``parallel`` (``prange`` over blocks on numba's thread pool) and ``serial``
    (``prange`` as ``range``, on the calling thread only). ``kernel(workers, *args)`` runs the serial build for
    one worker: numba's OpenMP pool, once woken, spins its idle threads after every parallel loop, and on one
    thread that spinning cost as much CPU time as the kernel itself (LIF forward, (250, 32, 256): 7.5-15 ms of
    process CPU time against 3.5-8 ms of the calling thread's, loaded AMD EPYC machine)."""

    def __init__(self, py_func: Callable):
        self.parallel = njit(parallel=True, cache=True, error_model="numpy")(py_func)
        serial = types.FunctionType(py_func.__code__, py_func.__globals__, py_func.__name__ + "_serial",
                                    py_func.__defaults__, py_func.__closure__)
        serial.__qualname__ = py_func.__qualname__ + "_serial"     # its own cache files
        serial.__module__ = py_func.__module__
        self.serial = njit(cache=True, error_model="numpy")(serial)
        self.__doc__ = py_func.__doc__

    def __call__(self, workers: int, *args):
        if workers > 1:
            with numba_threads(workers):
                return self.parallel(*args)
        return self.serial(*args)


def kernel(py_func: Callable) -> Kernel:
    """Decorator: the engines' kernels, as a :class:`Kernel`."""
    return Kernel(py_func)


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


@njit(cache=True, inline="always", error_model="numpy")
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


@overload(exp_like, jit_options={"cache": True, "error_model": "numpy"})
def _exp_like(x):
    if x == nb_types.float32:
        return lambda x: _exp_float32(x)
    return lambda x: np.exp(x)


# One scalar σ'(u) per surrogate kind, for kernels compiled once per surrogate (:func:`per_surrogate`): the
# whole backward step stays one vectorised loop instead of a pass per operation through scratch rows. ``c`` is
# the tuple of :func:`surrogate_constants`: constants read from an array inside the loop are reloaded every
# iteration (the output might alias them), which kept the double Gaussian unvectorised, 9x slower (measured).
@njit(cache=True, inline="always")
def surrogate_constants(sc):
    """The 7 constants of :func:`surrogate_arguments` as a tuple (registers, not memory, inside a loop)."""
    return (sc[0], sc[1], sc[2], sc[3], sc[4], sc[5], sc[6])


@njit(cache=True, inline="always", error_model="numpy")
def _d_atan(c, u):
    z = c[0] * u
    return c[1] / (c[5] + z * z)


@njit(cache=True, inline="always", error_model="numpy")
def _d_sigmoid(c, u):
    s = c[5] / (c[5] + exp_like(-(c[0] * u)))
    return c[0] * s * (c[5] - s)


@njit(cache=True, inline="always", error_model="numpy")
def _d_triangle(c, u):
    return max(c[5] - abs(u) * c[0], c[5] - c[5]) * c[0]


@njit(cache=True, inline="always", error_model="numpy")
def _d_fast_sigmoid(c, u):
    d = c[5] + c[0] * abs(u)
    return c[5] / (d * d)


@njit(cache=True, inline="always", error_model="numpy")
def _d_rectangular(c, u):
    return c[1] if abs(u) < c[0] else c[5] - c[5]


@njit(cache=True, inline="always", error_model="numpy")
def _d_double_gaussian(c, u):
    z0 = c[1] * u
    zp = c[2] * (u - c[0])
    zm = c[2] * (u + c[0])
    return c[3] * exp_like(-c[6] * (z0 * z0)) - c[4] * (exp_like(-c[6] * (zp * zp)) + exp_like(-c[6] * (zm * zm)))


# by numba_kind: a new surrogate adds one, mirroring ``dendrix.ops.triton_common.surrogate_derivative``
SURROGATE_FUNCTIONS = (_d_atan, _d_sigmoid, _d_triangle, _d_fast_sigmoid, _d_rectangular, _d_double_gaussian)


def _copy(py_func: Callable, suffix: str, scope: dict, like: Callable) -> Callable:
    """A compiled, disk-cached copy of ``py_func`` with globals ``scope``, named after ``like`` plus ``suffix``
    (its own cache files)."""
    copy = types.FunctionType(py_func.__code__, scope, like.__name__ + suffix, py_func.__defaults__,
                              py_func.__closure__)
    copy.__qualname__ = like.__qualname__ + suffix
    copy.__module__ = like.__module__
    return njit(cache=True, error_model="numpy")(copy)


def _call_by_kind(kind, args):
    """``sweep_<kind>(*args)``; the names are bound by :func:`per_surrogate` (a copy per surrogate-specialised
    function)."""
    if kind == 0:
        sweep_0(*args)  # noqa: F821
    elif kind == 1:
        sweep_1(*args)  # noqa: F821
    elif kind == 2:
        sweep_2(*args)  # noqa: F821
    elif kind == 3:
        sweep_3(*args)  # noqa: F821
    elif kind == 4:
        sweep_4(*args)  # noqa: F821
    else:
        sweep_5(*args)  # noqa: F821


def _sweep_blocks(kind, m, block, args):
    """``by_kind(kind, args + (lo, hi))`` for every block ``lo:hi`` of ``block`` of the ``m`` neurons, blocks in
    parallel (``by_kind`` is bound by :func:`per_surrogate_blocks`)."""
    for blk in prange((m + block - 1) // block):
        lo = blk * block
        by_kind(kind, args + (lo, min(m, lo + block)))  # noqa: F821


def per_surrogate_blocks(py_func: Callable) -> Kernel:
    """A :class:`Kernel` ``(workers, kind, m, block, args)`` that runs ``py_func(*args, lo, hi)`` for every block of
    neurons ``lo:hi``, specialised for surrogate ``kind`` as :func:`per_surrogate` does (the engines' reverse
    sweeps: one prange over blocks of neurons, each block walking all T steps)."""
    scope = dict(_sweep_blocks.__globals__, by_kind=per_surrogate(py_func))
    name = py_func.__name__ + "_blocks_" + py_func.__module__.replace(".", "_")   # cache files named here
    blocks = types.FunctionType(_sweep_blocks.__code__, scope, name, None, None)
    blocks.__qualname__, blocks.__module__ = name, py_func.__module__
    return Kernel(blocks)


def per_surrogate(py_func: Callable) -> Callable:
    """``call(kind, args)``, a compiled function that runs ``py_func(*args)`` specialised for the surrogate whose
    ``numba_kind`` is ``kind``: one compiled copy of ``py_func`` per surrogate, in each of which the global name
    ``dsg`` is that kind's scalar σ'(c, u) (``SURROGATE_FUNCTIONS``; ``c`` from :func:`surrogate_constants`),
    inlined into the caller's loops.

    Numba would take the derivative as a first-class function argument only with an experimental feature that
    also stops its on-disk cache; a copy of the function with ``dsg`` bound in its globals is an ordinary global
    call, so each copy compiles once and is cached under its own name."""
    copies = {f"sweep_{kind}": _copy(py_func, dsg.__name__[2:], dict(py_func.__globals__, dsg=dsg), py_func)
              for kind, dsg in enumerate(SURROGATE_FUNCTIONS)}
    # the dispatcher's code lives in this file, so its cache files are named here: the caller's module in the
    # name keeps the copies of different modules apart
    suffix = "_by_kind_" + py_func.__module__.replace(".", "_")
    return _copy(_call_by_kind, suffix, dict(_call_by_kind.__globals__, **copies), py_func)


def surrogate_arguments(surrogate, dtype: torch.dtype) -> tuple[int, np.ndarray]:
    """``(kind, constants)`` for the kernels' σ' (``SURROGATE_FUNCTIONS[kind]`` with :func:`surrogate_constants`
    of the constants): the constants padded to 5, then 1 and ½, so the
    kernels compute in the array dtype without float64 literals."""
    consts = list(surrogate.numba_constants())
    consts = consts + [0.0] * (5 - len(consts)) + [1.0, 0.5]
    return int(surrogate.numba_kind), np.asarray(consts, dtype=as_numpy_dtype(dtype))


def as_numpy_dtype(dtype: torch.dtype):
    """The numpy scalar type of a float32 or float64 torch dtype."""
    return np.float32 if dtype == torch.float32 else np.float64


class KernelArguments:
    """Tensors and numbers as the kernels take them, for one call in ``dtype`` over ``n_steps`` steps: scalars
    in the array dtype, ``[T, M]`` and ``[M]`` numpy views, and a placeholder (never read) for an absent
    gradient."""

    _ABSENT: dict = {}

    def __init__(self, dtype: torch.dtype, n_steps: int):
        self.dtype, self.np_dtype, self.n_steps = dtype, as_numpy_dtype(dtype), n_steps
        if dtype not in self._ABSENT:
            self._ABSENT[dtype] = np.zeros((1, 1), dtype=self.np_dtype)
        self.absent = self._ABSENT[dtype]

    def scalar(self, value) -> np.generic:
        return self.np_dtype(value)

    def rows(self, t: torch.Tensor | None) -> np.ndarray:
        """``[T, *]`` as ``[T, M]`` (the placeholder for None)."""
        return self.absent if t is None else as_array(t).reshape(self.n_steps, -1)

    def flat(self, t: torch.Tensor | None) -> np.ndarray:
        """One step ``[*]`` as ``[M]`` (the placeholder for None)."""
        return self.absent[0] if t is None else as_array(t).reshape(-1)

    def step(self, value, like: torch.Tensor | None) -> np.ndarray:
        """A float or tensor broadcast to one step ``like`` (:func:`step_array`); the placeholder for None."""
        return self.absent[0] if value is None else step_array(value, like)


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


def sequence_reason(sequence: torch.Tensor, others, name: str, min_dim: int = 1) -> str | None:
    """Why a numba engine cannot take ``sequence`` ``[T, ...]`` (None when it can): it and ``others`` (None
    entries skipped) on CPU, ``sequence`` float32 or float64, at least one step and ``min_dim`` dimensions."""
    if any(t is not None and t.device.type != "cpu" for t in [sequence, *others]):
        return "the numba engine runs on CPU tensors only"
    if sequence.dtype not in (torch.float32, torch.float64):
        return f"the numba engine needs a float32 or float64 {name}, got {sequence.dtype}"
    if sequence.dim() < min_dim or sequence.shape[0] < 1:
        return (f"the numba engine needs a {name} of at least {min_dim} dimension(s) and one time step, "
                f"got shape {tuple(sequence.shape)}")
    return None


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
