"""The numba CPU engines of the LIF family, ALIF and RF/BRF (``backend="numba"``).

Checked three ways: bit for bit against the fused engine on spikes and potentials in float32 (NaN and ±Inf
inputs included: the engines must agree on the documented "no spike where the potential is NaN"); gradients
against the plain reference in float64; and ``torch.autograd.gradcheck`` in float64 on tiny shapes, through
outputs whose true derivative the backward computes exactly (detached reset, or a zero surrogate).
"""

from __future__ import annotations

import itertools

import pytest
import torch

from dendrix.ops.alif import alif_sequence
from dendrix.ops.lif import leaky_sequence, lif_sequence
from dendrix.ops.rf import divergence_boundary, rf_sequence
from dendrix.surrogate import SURROGATES, Surrogate, get_surrogate
from surrogate_support import ZeroNumbaSurrogate

pytest.importorskip("numba")


def _poison(x):
    """NaN, +Inf and -Inf at a few places (the checks are off by default, so they reach the kernels)."""
    x = x.clone()
    x.view(x.shape[0], -1)[3, 5] = float("nan")
    x.view(x.shape[0], -1)[6, 1] = float("inf")
    x.view(x.shape[0], -1)[8, 2] = -float("inf")
    return x


def _same(a, b):
    """Equal bit for bit (NaN payloads and signs included), for float32/float64 tensors."""
    ints = {torch.float32: torch.int32, torch.float64: torch.int64}
    return a.dtype == b.dtype and a.shape == b.shape and torch.equal(a.contiguous().view(ints[a.dtype]),
                                                                     b.contiguous().view(ints[b.dtype]))


def _nan_spikes_at_the_poisoned_steps(spikes):
    """docs/reliability.md: a NaN or -Inf potential gives a NaN spike (visible), never silence; +Inf fires."""
    flat = spikes.view(spikes.shape[0], -1)
    return bool(flat[3, 5].isnan() and flat[6, 1] == 1 and flat[8, 2].isnan())


def _gradients(call, base, weights, backends):
    """The gradients of ``sum(output · weight)`` with respect to every tensor of ``base``, per backend."""
    grads = {}
    for be in backends:
        leaves = [p.clone().requires_grad_() for p in base]
        out = call(*leaves, backend=be)
        sum((o * w).sum() for o, w in zip(out, weights)).backward()
        grads[be] = [p.grad for p in leaves]
    return [grads[be] for be in backends]


def _check_equals_fused(call, base, weights, tol, x_poisoned=None):
    """Outputs bit for bit equal to the fused engine's on a poisoned input (``x_poisoned``, default ``base[0]``),
    gradients within ``tol``; returns the numba outputs of the poisoned input."""
    poisoned = [_poison(base[0] if x_poisoned is None else x_poisoned)] + base[1:]
    outs = {be: call(*poisoned, backend=be) for be in ("fused", "numba")}
    for a, c in zip(outs["fused"], outs["numba"]):
        assert _same(a, c)
    assert _nan_spikes_at_the_poisoned_steps(outs["numba"][0])
    expected, got = _gradients(call, base, weights, ("fused", "numba"))
    for a, c in zip(expected, got):
        torch.testing.assert_close(c, a, rtol=tol, atol=tol)
    return outs["numba"]


@pytest.fixture
def small_blocks(monkeypatch):
    """Blocks of at most 256 neurons, so small test shapes span several blocks, the last one partial."""
    import dendrix.ops.numba_common as common
    monkeypatch.setattr(common, "BLOCK_MAX", 256)


def test_torch_cpu_kernels_round_add_alpha_and_addcmul_once():
    """The bit-exactness of the numba engines rests on this: ATen's add(alpha) and addcmul are fused
    multiply-adds on this CPU (the kernels use llvm.fma in the same places)."""
    g = torch.Generator().manual_seed(0)
    a, b, c = (torch.randn(4099, generator=g) for _ in range(3))
    fused = (c.double() + a.double() * b.double()).float()
    assert torch.equal(torch.addcmul(c, a, b), fused)
    alpha = float(torch.tensor(0.7312345))
    assert torch.equal(torch.add(c, b, alpha=alpha), (c.double() + alpha * b.double()).float())


LIF_CASES = list(itertools.product([0.0, None, -0.2], [False, True], sorted(SURROGATES)))


@pytest.mark.parametrize("v_reset,detach,surrogate", LIF_CASES)
def test_leaky_numba_equals_fused_bit_for_bit_and_in_gradients(small_blocks, v_reset, detach, surrogate):
    g = torch.Generator().manual_seed(1)
    t, b, n = 40, 3, 300                      # four blocks of neurons, the last one partial
    x_poisoned = 1.5 * torch.randn(t, b, n, generator=g)
    v0 = 0.3 * torch.randn(b, n, generator=g)
    leak, gain, bias = 0.3 + 0.5 * torch.rand(n, generator=g), 0.5 + torch.rand(1, n, generator=g), 0.1 * torch.randn(n, generator=g)
    x = 1.5 * torch.randn(t, b, n, generator=g)
    weights = [torch.randn(t, b, n, generator=g), 0.1 * torch.randn(t, b, n, generator=g), torch.randn(b, n, generator=g)]

    def call(*a, backend):
        return leaky_sequence(*a, v_reset=v_reset, detach_reset=detach, surrogate=surrogate, backend=backend)
    out = _check_equals_fused(call, [x, v0, leak, gain, bias], weights, 1e-5, x_poisoned)
    assert out[0][3].view(-1)[5].isnan() and out[1][3].view(-1)[5].isnan()   # NaN: a NaN spike


@pytest.mark.parametrize("decay", [0.5, "per-channel", "scalar-tensor"])
def test_lif_numba_equals_fused_for_float_and_tensor_decay(decay):
    g = torch.Generator().manual_seed(2)
    x = _poison(torch.randn(30, 2, 70, generator=g) + 0.6)
    decay = {"per-channel": 0.2 + 0.6 * torch.rand(70, generator=g), "scalar-tensor": torch.tensor(0.4)}.get(decay, decay)
    for decay_input in (True, False):
        a = lif_sequence(x, torch.zeros(2, 70), decay, decay_input=decay_input, backend="fused")
        c = lif_sequence(x, torch.zeros(2, 70), decay, decay_input=decay_input, backend="numba")
        assert all(_same(p, q) for p, q in zip(a, c))


@pytest.mark.parametrize("v_reset,detach", list(itertools.product([0.0, None, 0.3], [False, True])))
def test_leaky_numba_gradients_equal_reference_in_float64(v_reset, detach):
    g = torch.Generator().manual_seed(3)
    t, b, n = 9, 2, 5
    base = [torch.randn(t, b, n, generator=g, dtype=torch.float64) + 0.4, 0.2 * torch.randn(b, n, generator=g, dtype=torch.float64),
            0.5 + 0.3 * torch.rand(n, generator=g, dtype=torch.float64), 0.8 + 0.4 * torch.rand(b, 1, generator=g, dtype=torch.float64),
            torch.tensor(0.05, dtype=torch.float64)]
    weights = [torch.randn(t, b, n, generator=g, dtype=torch.float64) for _ in range(2)] + [torch.randn(b, n, generator=g, dtype=torch.float64)]
    grads = {}
    for be in ("reference", "numba"):
        leaves = [p.clone().requires_grad_() for p in base]
        out = leaky_sequence(*leaves, v_reset=v_reset, detach_reset=detach, surrogate="sigmoid", backend=be)
        sum((o * w).sum() for o, w in zip(out, weights)).backward()
        grads[be] = [p.grad for p in leaves]
    for a, c in zip(grads["reference"], grads["numba"]):
        torch.testing.assert_close(c, a, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("v_reset", [0.0, None])
def test_gradcheck_leaky_numba(v_reset):
    g = torch.Generator().manual_seed(4)
    t, b, n = 7, 2, 3
    args = [(0.6 * torch.randn(t, b, n, generator=g, dtype=torch.float64) + 0.5), 0.1 * torch.randn(b, n, generator=g, dtype=torch.float64),
            torch.tensor([0.6, 0.7, 0.8], dtype=torch.float64), torch.tensor(0.9, dtype=torch.float64),
            0.05 * torch.ones(b, 1, dtype=torch.float64)]
    args = [a.requires_grad_() for a in args]

    def fn(*a):  # H and V[T-1] with a detached reset: the backward is their exact derivative
        _, h, v = leaky_sequence(*a, v_reset=v_reset, detach_reset=True, backend="numba")
        return h, v

    assert leaky_sequence(*args, v_reset=v_reset, backend="numba")[0].mean() > 0
    assert torch.autograd.gradcheck(fn, args, eps=1e-7, atol=1e-6)


def _alif_inputs(g, t, b, n, dtype, per_channel):
    x = 2 * torch.randn(t, b, n, generator=g, dtype=dtype)
    u0, a0 = 0.1 * torch.randn(b, n, generator=g, dtype=dtype), 0.1 * torch.rand(b, n, generator=g, dtype=dtype)
    s0 = (torch.rand(b, n, generator=g, dtype=dtype) > 0.7).to(dtype)
    alpha = 0.6 + 0.3 * torch.rand(n, generator=g, dtype=dtype) if per_channel else torch.tensor(0.9, dtype=dtype)
    rho = 0.85 + 0.1 * torch.rand(n, generator=g, dtype=dtype) if per_channel else torch.tensor(0.95, dtype=dtype)
    return [x, u0, a0, s0, alpha, rho]


def _rf_inputs(g, t, b, n, dtype, balanced):
    x = 30 * torch.randn(t, b, n, generator=g, dtype=dtype)
    omega = 5 + 20 * torch.rand(n, generator=g, dtype=dtype)
    b0 = divergence_boundary(omega, 0.01) - 0.5 * torch.rand(n, generator=g, dtype=dtype) if balanced else \
        -0.5 - 2 * torch.rand(n, generator=g, dtype=dtype)
    u0, v0 = (0.1 * torch.randn(b, n, generator=g, dtype=dtype) for _ in range(2))
    return [x, omega, b0, u0, v0, 0.2 * torch.rand(b, n, generator=g, dtype=dtype)]


def _call(op, surrogate=None):
    """``call(*tensors, backend)`` of an op of ALIF, RF or BRF (its default surrogate when None)."""
    extra = {} if surrogate is None else {"surrogate": surrogate}
    if op == "alif":
        return lambda *a, backend: alif_sequence(*a, backend=backend, **extra)
    return lambda *a, backend: rf_sequence(*a, balanced=op == "brf", backend=backend, **extra)


def _inputs(op, g, t, b, n, dtype, per_channel=True):
    return _alif_inputs(g, t, b, n, dtype, per_channel) if op == "alif" else _rf_inputs(g, t, b, n, dtype, op == "brf")


def _weights(op, g, t, b, n, membrane, dtype=torch.float32):
    """Weights of each output: spikes, the membrane (times ``membrane``), the final states."""
    finals = 1 if op == "alif" else 2
    return [torch.randn(t, b, n, generator=g, dtype=dtype), membrane * torch.randn(t, b, n, generator=g, dtype=dtype)] + \
        [torch.randn(b, n, generator=g, dtype=dtype) for _ in range(finals)]


FUSED_CASES = ([("alif", s, p) for s, p in itertools.product(["double_gaussian", "atan", "triangle"], [False, True])] +
               [(op, s, True) for op, s in itertools.product(["rf", "brf"], ["double_gaussian", "fast_sigmoid"])])


@pytest.mark.parametrize("op,surrogate,per_channel", FUSED_CASES)
def test_alif_rf_numba_equals_fused_bit_for_bit_and_in_gradients(op, surrogate, per_channel):
    """T = 40 and 50: two segments of the backward's checkpoints, the last one partial."""
    g = torch.Generator().manual_seed(5 if op == "alif" else 7)
    t, b, n = (40, 3, 140) if op == "alif" else (50, 3, 140)
    base = _inputs(op, g, t, b, n, torch.float32, per_channel)
    weights = _weights(op, g, t, b, n, 0.1 if op == "alif" else 0.01)     # RF's u is large
    out = _check_equals_fused(_call(op, surrogate), base, weights, 1e-4)
    if op != "alif":
        assert out[0].nansum() > 0


@pytest.mark.parametrize("op,segment", list(itertools.product(["alif", "rf", "brf"], [None, 3])))
def test_alif_rf_numba_gradients_equal_reference_and_gradcheck_in_float64(monkeypatch, op, segment):
    """``segment=3``: the backward's checkpoints every 3 steps (several segments, the last one partial)."""
    if segment is not None:
        import importlib
        monkeypatch.setattr(importlib.import_module(f"dendrix.ops.{'alif' if op == 'alif' else 'rf'}.numba_engine"),
                            "SEGMENT", segment)
    g = torch.Generator().manual_seed(6 if op == "alif" else 8)
    t = 8 if op == "alif" else 12
    base = _inputs(op, g, t, 2, 3, torch.float64)
    if op != "alif":
        base[0] = base[0] * 4
    weights = _weights(op, g, t, 2, 3, 1.0, torch.float64)
    surrogate = "double_gaussian" if op == "alif" else None
    expected, got = _gradients(_call(op, surrogate), base, weights, ("reference", "numba"))
    for a, c in zip(expected, got):
        torch.testing.assert_close(c, a, rtol=1e-9, atol=1e-11)
    leaves = [p.clone().requires_grad_() for p in base]
    zero = _call(op, ZeroNumbaSurrogate())
    assert 0 < zero(*leaves, backend="numba")[0].mean() < 1
    assert torch.autograd.gradcheck(lambda *a: zero(*a, backend="numba"), leaves, eps=1e-7, atol=1e-6)


def test_auto_runs_numba_on_cpu_and_a_forced_numba_refuses_what_it_cannot_run():
    x, v0 = torch.randn(4, 2, 3), torch.zeros(2, 3)
    from dendrix.ops.lif import resolve_backend
    assert resolve_backend("auto", x, v0, get_surrogate("atan")) == "numba"

    class Softsign(Surrogate):  # no numba form: auto runs the fused engine, a forced numba says why
        name, param_name = "softsign", "scale"

        def derivative(self, x):
            return 1 / (1 + x.abs()) ** 2

    assert resolve_backend("auto", x, v0, Softsign(1.0)) == "fused"
    with pytest.raises(RuntimeError, match="numba form"):
        lif_sequence(x, v0, 0.5, surrogate=Softsign(1.0), backend="numba")
    with pytest.raises(RuntimeError, match="one dtype"):
        rf_sequence(x, torch.ones(3, dtype=torch.float64), -torch.ones(3), v0, v0, backend="numba")
    half = lif_sequence(x.half(), v0, 0.5, backend="numba")      # integrated in float32, as on every engine
    assert torch.equal(half[0].float(), lif_sequence(x.half().float(), v0, 0.5, backend="fused")[0])


@pytest.fixture
def parallel_builds(monkeypatch):
    """Every call on the parallel build (prange over blocks of neurons on two threads), even at test sizes."""
    import numba

    import dendrix.ops.numba_common as common
    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("numba has one thread here: no parallel build to test")
    monkeypatch.setattr(common, "PARALLEL_MIN_ELEMENTS", 0)
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("op", ["leaky", "alif", "rf", "brf"])
def test_parallel_build_equals_fused_bit_for_bit_and_in_gradients(parallel_builds, op):
    from dendrix.ops.numba_common import block_size, workers_for
    assert workers_for(1, 900) == 2 and block_size(900, 2) == 464
    g = torch.Generator().manual_seed(9)
    t, b, n = 30, 3, 300                                     # 900 neurons: two blocks, the last one partial
    if op == "leaky":
        base = [torch.randn(t, b, n, generator=g) + 0.3, 0.2 * torch.randn(b, n, generator=g),
                0.4 + 0.5 * torch.rand(n, generator=g), 0.5 + torch.rand(n, generator=g), 0.1 * torch.randn(n, generator=g)]

        def call(*a, backend):
            return leaky_sequence(*a, backend=backend)
    else:
        base = _inputs(op, g, t, b, n, torch.float32)
        call = _call(op)
    with torch.no_grad():
        shapes = [o.shape for o in call(*base, backend="fused")]
    weights = [torch.linspace(-1, 1, shape.numel()).view(shape) for shape in shapes]
    _check_equals_fused(call, base, weights, 1e-4)


@pytest.mark.parametrize("neurons,workers", [(16, 1), (900, 1), (900, 2), (4096, 2), (5000, 1), (10_000, 2),
                                             (100_000, 2)])
def test_blocks_split_the_neurons_evenly_in_whole_lines(neurons, workers):
    from dendrix.ops.numba_common import BLOCK_MAX, block_size
    size = block_size(neurons, workers)
    blocks = -(-neurons // size)
    assert size % 16 == 0 and size <= BLOCK_MAX and blocks % workers == 0
    assert size - (-(-neurons // blocks)) < 16                  # as even as whole lines allow


def test_float32_exponential_of_the_kernels_is_within_two_ulp():
    from numba import njit

    from dendrix.ops.numba_common import exp_like

    @njit
    def run(values, out):
        for i in range(values.shape[0]):
            out[i] = exp_like(values[i])

    import numpy as np
    values = np.linspace(-87.0, 88.0, 400_001).astype(np.float32)
    out = np.empty_like(values)
    run(values, out)
    exact = np.exp(values.astype(np.float64))
    assert np.max(np.abs(out - exact) / exact) < 2 * 2.0 ** -24


def test_per_surrogate_dispatchers_have_their_own_cache_names():
    """The by-kind dispatcher's and the block sweep's code live in numba_common.py, where numba names its cache
    files: each module's copy needs its own name, or two modules' compiled copies would share one cache index."""
    from dendrix.ops.alif import numba_engine as alif_engine
    from dendrix.ops.dgn import numba_recurrent
    from dendrix.ops.lif import numba_engine as lif_engine
    from dendrix.ops.rf import numba_engine as rf_engine
    blocks = (lif_engine._backward, alif_engine._backward, rf_engine._backward)
    dispatchers = [numba_recurrent._BACKWARD.py_func.__qualname__] + [
        k.parallel.py_func.__globals__["by_kind"].py_func.__qualname__ for k in blocks]
    assert len(set(dispatchers)) == 4, dispatchers
    assert all("_by_kind_dendrix_ops_" in name for name in dispatchers)
    sweeps = [f.__qualname__ for k in blocks for f in (k.parallel.py_func, k.serial.py_func)]
    assert len(set(sweeps)) == 6, sweeps
    assert all("_blocks_dendrix_ops_" in name for name in sweeps)
