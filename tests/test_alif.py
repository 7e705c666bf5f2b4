"""ALIF (Yin et al. 2021): fused engine vs reference, gradcheck, streaming equivalence, adaptation, checks."""

import pytest
import torch

import dendrix
import dendrix.ops.common as ops_common
from dendrix.neurons import ALIF
from dendrix.neurons.alif import ALIFState
from dendrix.ops.alif import alif_sequence
from dendrix.ops.alif.fused import ALIFFunction
from surrogate_support import ZeroSurrogate

T, B, N = 40, 3, 5


@pytest.fixture(params=[32767, 2 * B * N + 1], ids=["one-chunk", "many-chunks"])
def chunking(request, monkeypatch):
    monkeypatch.setattr(ops_common, "CHUNK_ELEMENTS", request.param)
    return request.param


def _input(seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    return (0.6 * torch.randn(T, B, N, generator=g) + 0.15).to(dtype)


def _state(seed, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    u0 = 0.02 * torch.randn(B, N, generator=g, dtype=dtype)
    a0 = 0.1 * torch.rand(B, N, generator=g, dtype=dtype)
    s0 = (torch.rand(B, N, generator=g, dtype=dtype) < 0.3).to(dtype)
    return [t.requires_grad_() for t in (u0, a0, s0)]


@pytest.mark.parametrize("surrogate", ["double_gaussian", "atan", "triangle"])
@pytest.mark.parametrize("per_channel", [True, False])
def test_fused_equals_reference_with_state_and_parameter_gradients(chunking, surrogate, per_channel):
    x = _input(1, torch.float64).requires_grad_()
    u0, a0, s0 = _state(2)
    shape = (N,) if per_channel else ()
    alpha = torch.full(shape, 0.9, dtype=torch.float64, requires_grad=True)
    rho = torch.full(shape, 0.97, dtype=torch.float64, requires_grad=True)
    results = []
    for backend in ("fused", "reference"):
        spikes, u, a_last = alif_sequence(x, u0, a0, s0, alpha, rho, 0.01, 1.8, surrogate, backend)
        g = torch.Generator().manual_seed(3)
        w = [torch.randn(t.shape, generator=g, dtype=t.dtype) for t in (spikes, u, a_last)]
        loss = (spikes * w[0]).sum() + (u * w[1]).sum() + (a_last * w[2]).sum()
        results.append((spikes, u, a_last, torch.autograd.grad(loss, [x, u0, a0, s0, alpha, rho])))
    (s_f, u_f, a_f, g_f), (s_r, u_r, a_r, g_r) = results
    assert 0 < s_f.mean() < 1
    assert torch.equal(s_f, s_r)
    torch.testing.assert_close(u_f, u_r, rtol=0, atol=1e-12)
    torch.testing.assert_close(a_f, a_r, rtol=0, atol=1e-12)
    for a, b in zip(g_f, g_r):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-10)


def test_gradcheck_fused_function(chunking):
    torch.manual_seed(5)
    t, b, n = 7, 2, 3
    x = (0.5 * torch.randn(t, b, n, dtype=torch.float64) + 0.1).requires_grad_()
    u0 = (0.02 * torch.randn(b, n, dtype=torch.float64)).requires_grad_()
    a0 = (0.1 * torch.rand(b, n, dtype=torch.float64)).requires_grad_()
    s0 = torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]], dtype=torch.float64, requires_grad=True)
    alpha = torch.tensor([0.8, 0.9, 0.95], dtype=torch.float64, requires_grad=True)
    rho = torch.tensor(0.9, dtype=torch.float64, requires_grad=True)
    surrogate = ZeroSurrogate()
    spikes, u, _ = ALIFFunction.apply(x, u0, a0, s0, alpha, rho, 0.01, 1.8, surrogate)
    assert 0 < spikes.mean() < 1

    def fn(*args):
        return ALIFFunction.apply(*args, 0.01, 1.8, surrogate)

    assert torch.autograd.gradcheck(fn, (x, u0, a0, s0, alpha, rho), eps=1e-7, atol=1e-6)


def _streaming_check(neuron, x):
    y = neuron(x)
    assert 0 < y.float().mean() < 1
    state, steps = neuron.init_state(x[0]), []
    for t in range(x.shape[0]):
        y_t, state = neuron.step(x[t], state)
        steps.append(y_t)
    assert torch.equal(torch.stack(steps), y)
    chunk_state, chunks = None, []
    for lo, hi in [(0, 9), (9, 10), (10, x.shape[0])]:
        y_c, chunk_state = neuron.run(x[lo:hi], chunk_state)
        chunks.append(y_c)
    assert torch.equal(torch.cat(chunks), y)
    for a, b in zip(state, chunk_state):
        assert torch.equal(a, b)


@pytest.mark.parametrize("channels", [None, N])
def test_step_loop_and_chunks_equal_forward(channels):
    _streaming_check(ALIF(channels=channels, tau_m=8.0), _input(4))


def test_module_gradients_fused_equal_reference():
    x = _input(6, torch.float64).requires_grad_()
    grads = []
    for backend in ("fused", "reference"):
        torch.manual_seed(0)
        neuron = ALIF(channels=N, tau_m=10.0, tau_adp=100.0, backend=backend).double()
        y = neuron(x)
        loss = (y * torch.linspace(-1, 1, N, dtype=torch.float64)).sum()
        grads.append(torch.autograd.grad(loss, [x, neuron.tau_m, neuron.tau_adp]))
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)
    assert grads[0][1].abs().sum() > 0 and grads[0][2].abs().sum() > 0


def test_threshold_adaptation_lengthens_interspike_intervals():
    neuron = ALIF(tau_m=5.0, tau_adp=50.0, b0=0.5, beta=2.0)
    y = neuron(torch.full((200, 1, 1), 1.5))[:, 0, 0]
    times = torch.nonzero(y).flatten()
    intervals = times[1:] - times[:-1]
    assert len(intervals) >= 3
    assert intervals[-1] > intervals[0]
    no_adaptation = ALIF(tau_m=5.0, tau_adp=50.0, b0=0.5, beta=0.0)(torch.full((200, 1, 1), 1.5))
    assert no_adaptation.sum() > y.sum()


@pytest.mark.parametrize("kwargs,name", [({"tau_m": 0.0}, "tau_m"), ({"tau_adp": -1.0}, "tau_adp"),
                                         ({"b0": 0.0}, "b0"), ({"beta": -0.1}, "beta"),
                                         ({"channels": 0}, "channels"), ({"backend": "x"}, "backend")])
def test_invalid_arguments(kwargs, name):
    with pytest.raises(ValueError, match=name):
        ALIF(**kwargs)


def test_wrong_rank_channels_and_state_shape():
    neuron = ALIF(channels=N)
    with pytest.raises(ValueError, match=r"\[T, B"):
        neuron(torch.zeros(T, N))
    with pytest.raises(ValueError, match=f"{N} features"):
        neuron(torch.zeros(T, B, N + 1))
    bad = ALIFState(torch.zeros(B, N), torch.zeros(B + 1, N), torch.zeros(B, N))
    with pytest.raises(ValueError, match="state"):
        neuron.run(torch.zeros(T, B, N), bad)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_works(dtype):
    neuron = ALIF(channels=N)
    x = _input(7).to(dtype)
    y = neuron(x)
    assert y.dtype == dtype
    assert torch.equal(y.float(), neuron(x.float()))


def test_record_and_registry():
    layer = dendrix.spiking_layer("alif", 4, N)
    assert layer.neuron.tau_m.shape == (N,)
    model = torch.nn.Sequential(layer)
    with dendrix.record(model) as rec:
        model(torch.rand(T, B, 4) * 2)
    (name,) = rec.layers()
    assert rec.states[name]["v"].shape == (T, B, N)
