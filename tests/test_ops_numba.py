"""The numba CPU engines of the LIF family, ALIF and RF/BRF (``backend="numba"``).

Checked three ways: bit for bit against the fused engine on spikes and potentials in float32 (NaN and ±Inf
inputs included, bit patterns of the NaN spikes too: the documented "NaN spike where the potential is NaN or -Inf"); gradients
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

pytest.importorskip("numba")


class _ZeroNumbaSurrogate(Surrogate):
    """Zero spike derivative, with a numba form (the rectangular branch of width 0): the backward is then the
    exact derivative of the piecewise-smooth forward, which gradcheck can verify."""

    name, param_name = "zero", "scale"
    numba_kind = 4

    def __init__(self):
        super().__init__(1.0)

    def primitive(self, x):
        return torch.zeros_like(x)

    def derivative(self, x):
        return torch.zeros_like(x)

    def numba_constants(self):
        return [0.0, 0.0]


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
def test_leaky_numba_equals_fused_bit_for_bit_and_in_gradients(v_reset, detach, surrogate):
    g = torch.Generator().manual_seed(1)
    t, b, n = 40, 3, 300                      # two blocks of neurons, one partial
    x = _poison(1.5 * torch.randn(t, b, n, generator=g))
    v0 = 0.3 * torch.randn(b, n, generator=g)
    leak, gain, bias = 0.3 + 0.5 * torch.rand(n, generator=g), 0.5 + torch.rand(1, n, generator=g), 0.1 * torch.randn(n, generator=g)
    outs = {be: leaky_sequence(x, v0, leak, gain, bias, v_reset=v_reset, detach_reset=detach, surrogate=surrogate,
                               backend=be) for be in ("fused", "numba")}
    for a, c in zip(outs["fused"], outs["numba"]):
        assert _same(a, c)
    assert _nan_spikes_at_the_poisoned_steps(outs["numba"][0]) and outs["numba"][1][3].view(-1)[5].isnan()

    x = 1.5 * torch.randn(t, b, n, generator=g)
    weights = [torch.randn(t, b, n, generator=g), 0.1 * torch.randn(t, b, n, generator=g), torch.randn(b, n, generator=g)]
    grads = {}
    for be in ("fused", "numba"):
        leaves = [p.clone().requires_grad_() for p in (x, v0, leak, gain, bias)]
        out = leaky_sequence(*leaves, v_reset=v_reset, detach_reset=detach, surrogate=surrogate, backend=be)
        sum((o * w).sum() for o, w in zip(out, weights)).backward()
        grads[be] = [p.grad for p in leaves]
    for a, c in zip(grads["fused"], grads["numba"]):
        torch.testing.assert_close(c, a, rtol=1e-5, atol=1e-5)


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


@pytest.mark.parametrize("surrogate,per_channel", list(itertools.product(["double_gaussian", "atan", "triangle"], [False, True])))
def test_alif_numba_equals_fused_bit_for_bit_and_in_gradients(surrogate, per_channel):
    g = torch.Generator().manual_seed(5)
    base = _alif_inputs(g, 40, 3, 140, torch.float32, per_channel)
    poisoned = [_poison(base[0])] + base[1:]
    outs = {be: alif_sequence(*poisoned, surrogate=surrogate, backend=be) for be in ("fused", "numba")}
    assert all(_same(a, c) for a, c in zip(outs["fused"], outs["numba"]))
    assert _nan_spikes_at_the_poisoned_steps(outs["numba"][0])
    weights = [torch.randn(40, 3, 140, generator=g), 0.1 * torch.randn(40, 3, 140, generator=g), torch.randn(3, 140, generator=g)]
    grads = {}
    for be in ("fused", "numba"):
        leaves = [p.clone().requires_grad_() for p in base]
        out = alif_sequence(*leaves, surrogate=surrogate, backend=be)
        sum((o * w).sum() for o, w in zip(out, weights)).backward()
        grads[be] = [p.grad for p in leaves]
    for a, c in zip(grads["fused"], grads["numba"]):
        torch.testing.assert_close(c, a, rtol=1e-4, atol=1e-4)


def test_alif_numba_gradients_equal_reference_and_gradcheck_in_float64():
    g = torch.Generator().manual_seed(6)
    base = _alif_inputs(g, 8, 2, 3, torch.float64, True)
    weights = [torch.randn(8, 2, 3, generator=g, dtype=torch.float64), torch.randn(8, 2, 3, generator=g, dtype=torch.float64),
               torch.randn(2, 3, generator=g, dtype=torch.float64)]
    grads = {}
    for be in ("reference", "numba"):
        leaves = [p.clone().requires_grad_() for p in base]
        out = alif_sequence(*leaves, surrogate="double_gaussian", backend=be)
        sum((o * w).sum() for o, w in zip(out, weights)).backward()
        grads[be] = [p.grad for p in leaves]
    for a, c in zip(grads["reference"], grads["numba"]):
        torch.testing.assert_close(c, a, rtol=1e-9, atol=1e-11)
    leaves = [p.clone().requires_grad_() for p in base]
    zero = _ZeroNumbaSurrogate()
    assert 0 < alif_sequence(*leaves, surrogate=zero, backend="numba")[0].mean() < 1
    assert torch.autograd.gradcheck(lambda *a: alif_sequence(*a, surrogate=zero, backend="numba"), leaves,
                                    eps=1e-7, atol=1e-6)


def _rf_inputs(g, t, b, n, dtype, balanced):
    x = 30 * torch.randn(t, b, n, generator=g, dtype=dtype)
    omega = 5 + 20 * torch.rand(n, generator=g, dtype=dtype)
    b0 = divergence_boundary(omega, 0.01) - 0.5 * torch.rand(n, generator=g, dtype=dtype) if balanced else \
        -0.5 - 2 * torch.rand(n, generator=g, dtype=dtype)
    u0, v0 = (0.1 * torch.randn(b, n, generator=g, dtype=dtype) for _ in range(2))
    return [x, omega, b0, u0, v0, 0.2 * torch.rand(b, n, generator=g, dtype=dtype)]


@pytest.mark.parametrize("balanced,surrogate", list(itertools.product([False, True], ["double_gaussian", "fast_sigmoid"])))
def test_rf_numba_equals_fused_bit_for_bit_and_in_gradients(balanced, surrogate):
    g = torch.Generator().manual_seed(7)
    base = _rf_inputs(g, 50, 3, 140, torch.float32, balanced)
    poisoned = [_poison(base[0])] + base[1:]
    outs = {be: rf_sequence(*poisoned, balanced=balanced, surrogate=surrogate, backend=be) for be in ("fused", "numba")}
    assert all(_same(a, c) for a, c in zip(outs["fused"], outs["numba"]))
    assert _nan_spikes_at_the_poisoned_steps(outs["numba"][0]) and outs["numba"][0].nansum() > 0
    weights = [torch.randn(50, 3, 140, generator=g), 0.01 * torch.randn(50, 3, 140, generator=g)] + \
        [torch.randn(3, 140, generator=g) for _ in range(2)]
    grads = {}
    for be in ("fused", "numba"):
        leaves = [p.clone().requires_grad_() for p in base]
        out = rf_sequence(*leaves, balanced=balanced, surrogate=surrogate, backend=be)
        sum((o * w).sum() for o, w in zip(out, weights)).backward()
        grads[be] = [p.grad for p in leaves]
    for a, c in zip(grads["fused"], grads["numba"]):
        torch.testing.assert_close(c, a, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("balanced", [False, True])
def test_rf_numba_gradients_equal_reference_and_gradcheck_in_float64(balanced):
    g = torch.Generator().manual_seed(8)
    base = _rf_inputs(g, 12, 2, 3, torch.float64, balanced)
    base[0] = base[0] * 4
    weights = [torch.randn(12, 2, 3, generator=g, dtype=torch.float64), torch.randn(12, 2, 3, generator=g, dtype=torch.float64)] + \
        [torch.randn(2, 3, generator=g, dtype=torch.float64) for _ in range(2)]
    grads = {}
    for be in ("reference", "numba"):
        leaves = [p.clone().requires_grad_() for p in base]
        out = rf_sequence(*leaves, balanced=balanced, backend=be)
        sum((o * w).sum() for o, w in zip(out, weights)).backward()
        grads[be] = [p.grad for p in leaves]
    for a, c in zip(grads["reference"], grads["numba"]):
        torch.testing.assert_close(c, a, rtol=1e-9, atol=1e-11)
    leaves = [p.clone().requires_grad_() for p in base]
    zero = _ZeroNumbaSurrogate()
    assert rf_sequence(*leaves, balanced=balanced, surrogate=zero, backend="numba")[0].sum() > 0
    assert torch.autograd.gradcheck(lambda *a: rf_sequence(*a, balanced=balanced, surrogate=zero, backend="numba"),
                                    leaves, eps=1e-7, atol=1e-6)


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
    from dendrix.ops.numba_common import workers_for
    assert workers_for(1, 900) == 2
    g = torch.Generator().manual_seed(9)
    t, b, n = 30, 3, 300                                     # 900 neurons: four blocks, the last one partial
    if op == "leaky":
        base = [torch.randn(t, b, n, generator=g) + 0.3, 0.2 * torch.randn(b, n, generator=g),
                0.4 + 0.5 * torch.rand(n, generator=g), 0.5 + torch.rand(n, generator=g), 0.1 * torch.randn(n, generator=g)]

        def call(*a, backend):
            return leaky_sequence(*a, backend=backend)
    elif op == "alif":
        base = _alif_inputs(g, t, b, n, torch.float32, True)

        def call(*a, backend):
            return alif_sequence(*a, backend=backend)
    else:
        base = _rf_inputs(g, t, b, n, torch.float32, op == "brf")

        def call(*a, backend):
            return rf_sequence(*a, balanced=op == "brf", backend=backend)
    poisoned = [_poison(base[0])] + base[1:]
    outs = {be: call(*poisoned, backend=be) for be in ("fused", "numba")}
    assert all(_same(a, c) for a, c in zip(outs["fused"], outs["numba"]))
    grads = {}
    for be in ("fused", "numba"):
        leaves = [p.clone().requires_grad_() for p in base]
        out = call(*leaves, backend=be)
        weights = [torch.linspace(-1, 1, o.numel()).view_as(o) for o in out]
        sum((o * w).sum() for o, w in zip(out, weights)).backward()
        grads[be] = [p.grad for p in leaves]
    for a, c in zip(grads["fused"], grads["numba"]):
        torch.testing.assert_close(c, a, rtol=1e-4, atol=1e-4)


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
