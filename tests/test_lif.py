"""LIF and PLIF modules: streaming equivalence, gradients, argument checks, dtypes, recording, registry."""

import pytest
import torch

import dendrix
from dendrix.neurons import LIF, PLIF
from dendrix.neurons.lif import LIFState

T, B, N = 30, 4, 6


def _input(seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    return (1.5 * torch.randn(T, B, N, generator=g) + 0.6).to(dtype)


def assert_streaming_equivalence(neuron, x):
    """forward(x) == step loop == chunked run: identical spikes, equal states."""
    y = neuron(x)
    assert 0 < y.float().mean() < 1, "no or only spikes: the check would be vacuous"
    state, steps = neuron.init_state(x[0]), []
    for t in range(x.shape[0]):
        y_t, state = neuron.step(x[t], state)
        steps.append(y_t)
    assert torch.equal(torch.stack(steps), y)
    state_chunks, chunks = None, []
    for lo, hi in [(0, 7), (7, 8), (8, x.shape[0])]:
        y_c, state_chunks = neuron.run(x[lo:hi], state_chunks)
        chunks.append(y_c)
    assert torch.equal(torch.cat(chunks), y)
    for a, b in zip(state, state_chunks):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


@pytest.mark.parametrize("kw", [{}, {"v_reset": None}, {"decay_input": False}, {"v_reset": -0.5, "tau": 3.0},
                                {"surrogate": "sigmoid", "detach_reset": True}])
def test_lif_step_loop_and_chunks_equal_forward(kw):
    assert_streaming_equivalence(LIF(**kw), _input())


@pytest.mark.parametrize("channels", [None, N])
def test_plif_step_loop_and_chunks_equal_forward(channels):
    neuron = PLIF(init_tau=3.0, channels=channels)
    assert_streaming_equivalence(neuron, _input(1))


@pytest.mark.parametrize("channels", [None, N])
@pytest.mark.parametrize("v_reset", [0.0, None])
def test_plif_gradients_fused_equal_reference(channels, v_reset):
    x = _input(2, torch.float64).requires_grad_()
    grads = []
    for backend in ("fused", "reference"):
        neuron = PLIF(init_tau=2.5, v_reset=v_reset, channels=channels, backend=backend).double()
        y = neuron(x)
        loss = (y * torch.linspace(-1, 1, N, dtype=torch.float64)).sum()
        grads.append((y, *torch.autograd.grad(loss, [x, neuron.w])))
    assert torch.equal(grads[0][0], grads[1][0])
    for a, b in zip(grads[0][1:], grads[1][1:]):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-10)
    assert grads[0][2].abs().sum() > 0


def test_plif_initial_tau_and_shapes():
    assert torch.allclose(PLIF(init_tau=4.0).tau, torch.tensor(4.0))
    per_channel = PLIF(channels=7)
    assert per_channel.w.shape == (7,)
    with pytest.raises(ValueError, match="7 channels"):
        per_channel(torch.zeros(3, 2, 5))


def test_lif_is_shape_agnostic_and_stateless():
    neuron = LIF()
    x = torch.rand(5, 2, 3, 4, 4) * 3
    y = neuron(x)
    assert y.shape == x.shape
    neuron(torch.rand(5, 7, 3))  # another shape in between leaves nothing behind
    assert torch.equal(neuron(x), y)


@pytest.mark.parametrize("kwargs,name", [
    ({"tau": 1.0}, "tau"), ({"tau": 0.5}, "tau"), ({"tau": -2.0}, "tau"), ({"tau": float("nan")}, "tau"),
    ({"v_threshold": 0.0}, "v_threshold"), ({"v_threshold": -1.0}, "v_threshold"),
    ({"v_reset": 1.5}, "v_reset"), ({"backend": "gpu"}, "backend"), ({"surrogate": "nope"}, "surrogate"),
])
def test_lif_invalid_arguments_raise_value_error_naming_them(kwargs, name):
    with pytest.raises(ValueError, match=name):
        LIF(**kwargs)


def test_plif_invalid_arguments():
    with pytest.raises(ValueError, match="init_tau"):
        PLIF(init_tau=1.0)
    with pytest.raises(ValueError, match="channels"):
        PLIF(channels=0)
    with pytest.raises(TypeError, match="decay_input"):
        LIF(decay_input="yes")
    with pytest.raises(TypeError, match="tau"):
        LIF(tau="2")


def test_wrong_rank_and_state_shape_are_clear():
    neuron = LIF()
    with pytest.raises(ValueError, match=r"\[T, B"):
        neuron(torch.zeros(4, 5))
    with pytest.raises(ValueError, match="state"):
        neuron.run(torch.zeros(3, 2, 5), LIFState(torch.zeros(2, 4)))
    with pytest.raises(ValueError, match="x_t"):
        neuron.step(torch.zeros(5), None)
    with pytest.raises(TypeError, match="floating"):
        neuron(torch.zeros(3, 2, 5, dtype=torch.long))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_works(dtype):
    x = _input(3)
    neuron = LIF()
    y = neuron(x.to(dtype))
    assert y.dtype == dtype
    assert torch.equal(y.float(), neuron(x.to(dtype).float()))
    xs = x.to(dtype).requires_grad_()
    PLIF()(xs).sum().backward()
    assert xs.grad.dtype == dtype


def test_record_captures_membrane_potential():
    model = torch.nn.Sequential(LIF())
    x = _input(4)
    with dendrix.record(model) as rec:
        y = model(x)
    (name,) = rec.layers()
    assert torch.equal(rec.spikes[name], y)
    v = rec.states[name]["v"]
    assert v.shape == x.shape
    assert torch.equal((v >= 1.0).float(), y)  # the recorded trace is the pre-reset potential


def test_registry_layers():
    for kind in ("lif", "plif"):
        layer = dendrix.spiking_layer(kind, 5, 7)
        y = layer(torch.rand(9, 2, 5) * 4)
        assert y.shape == (9, 2, 7)
    per_channel = dendrix.spiking_layer("plif", 5, 7, per_channel=True)
    assert per_channel.neuron.w.shape == (7,)
    assert dendrix.describe("lif").family == "lif"
