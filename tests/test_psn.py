"""PSN family: parity with SpikingJelly 2.0 for the same weights, streaming contract, argument checks."""

import pytest
import torch

import dendrix
from dendrix.neurons import PSN, MaskedPSN, SlidingPSN

sj_neuron = pytest.importorskip("spikingjelly.activation_based.neuron")

T = 8


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)  # weight init draws from the global generator


def _x(seed=0, shape=(T, 3, 5)):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(*shape, generator=g, dtype=torch.float64) * 3 + 1).requires_grad_()


def _compare(ours, theirs, x):
    """Same spikes and same input/weight gradients (both use ATan, alpha = 2)."""
    x2 = x.detach().clone().requires_grad_()
    y1, y2 = ours(x), theirs(x2)
    assert torch.equal(y1, y2)
    assert 0 < y1.mean() < 1  # the comparison is not vacuous
    g = torch.randn_like(y1)
    (y1 * g).sum().backward()
    (y2 * g).sum().backward()
    assert torch.allclose(x.grad, x2.grad, atol=1e-12)
    assert torch.allclose(ours.weight.grad, theirs.weight.grad, atol=1e-10)


def test_psn_matches_spikingjelly():
    ours = PSN(T).double()
    theirs = sj_neuron.PSN(T).double()
    with torch.no_grad():
        theirs.weight.copy_(ours.weight)
        theirs.bias.copy_(ours.bias.unsqueeze(1))
    _compare(ours, theirs, _x())
    assert torch.all(ours.bias == -1)


@pytest.mark.parametrize("lam", [0.0, 0.4, 1.0])
def test_masked_psn_matches_spikingjelly(lam):
    ours = MaskedPSN(T, 3, lambda_init=lam).double()
    theirs = sj_neuron.MaskedPSN(3, T, lambda_init=lam, step_mode="m").double()
    with torch.no_grad():
        theirs.weight.copy_(ours.weight)
        theirs.bias.copy_(ours.bias.unsqueeze(1))
    assert torch.allclose(ours.effective_weight(), theirs.masked_weight())
    _compare(ours, theirs, _x(1))


@pytest.mark.parametrize("exp_init", [True, False])
def test_sliding_psn_matches_spikingjelly(exp_init):
    ours = SlidingPSN(3, exp_init=exp_init).double()
    theirs = sj_neuron.SlidingPSN(3, exp_init=exp_init, step_mode="m").double()
    with torch.no_grad():
        theirs.weight.copy_(ours.weight)
        theirs.bias.copy_(ours.bias)
    if exp_init:
        assert torch.equal(ours.weight, torch.tensor([0.25, 0.5, 1.0], dtype=torch.float64))
    assert torch.allclose(ours.gemm_weight(T), theirs.gen_gemm_weight(T))
    x = _x(2)
    x2 = x.detach().clone().requires_grad_()
    y1, y2 = ours(x), theirs(x2)
    assert torch.equal(y1, y2) and 0 < y1.mean() < 1
    y1.sum().backward()
    y2.sum().backward()
    assert torch.allclose(x.grad, x2.grad, atol=1e-12)
    assert torch.allclose(ours.weight.grad, theirs.weight.grad, atol=1e-10)


def _stream(model, x, chunks):
    outs, state, t = [], None, 0
    for c in chunks:
        y, state = model.run(x[t:t + c], state)
        outs.append(y)
        t += c
    steps, st = [], None
    for i in range(x.shape[0]):
        y_t, st = model.step(x[i], st)
        steps.append(y_t)
    return torch.cat(outs), torch.stack(steps)


def test_masked_psn_streams_when_causal():
    m = MaskedPSN(T, 3, lambda_init=1.0).double()
    assert m.streaming
    x = _x(3).detach()
    full = m(x)
    by_run, by_step = _stream(m, x, [3, 1, 4])
    assert torch.equal(by_run, full) and torch.equal(by_step, full)
    _, state = m.run(x)
    with pytest.raises(ValueError, match="already"):
        m.run(x[:1], state)


def test_sliding_psn_streams_any_length():
    m = SlidingPSN(4).double()
    x = _x(4, shape=(23, 2, 3)).detach()
    full = m(x)
    by_run, by_step = _stream(m, x, [5, 1, 10, 7])
    assert torch.equal(by_run, full) and torch.equal(by_step, full)


def test_window_only_models_refuse_chunks():
    x = _x(5).detach()
    for m in (PSN(T).double(), MaskedPSN(T, 2, lambda_init=0.5).double()):
        assert not m.streaming
        y, state = m.run(x)
        assert torch.equal(y, m(x)) and int(state.t) == T
        with pytest.raises(ValueError, match="cannot stream"):
            m.run(x[:3])
        with pytest.raises(ValueError, match="cannot stream"):
            m.step(x[0])
        with pytest.raises(ValueError, match="cannot stream"):
            m.run(x, state)


def test_records_hidden_state():
    layer = torch.nn.Sequential(dendrix.spiking_layer("sliding_psn", 4, 6))
    with dendrix.record(layer) as rec:
        y = layer(torch.rand(10, 2, 4))
    (name,) = rec.layers()
    assert rec.states[name]["v"].shape == y.shape == (10, 2, 6)


@pytest.mark.parametrize("kind", ["psn", "masked_psn", "sliding_psn"])
def test_registered_layers(kind):
    assert kind in dendrix.available()
    layer = dendrix.spiking_layer(kind, 4, 6, time_steps=T)
    y = layer(torch.rand(T, 2, 4))
    assert y.shape == (T, 2, 6) and set(y.unique().tolist()) <= {0.0, 1.0}
    if dendrix.describe(kind).needs_time_steps:
        with pytest.raises(ValueError, match="time_steps"):
            dendrix.spiking_layer(kind, 4, 6)


@pytest.mark.parametrize("make, match", [
    (lambda: PSN(0), "T"), (lambda: MaskedPSN(4, 5), "k"), (lambda: MaskedPSN(4, 0), "k"),
    (lambda: MaskedPSN(4, 2, lambda_init=1.5), "lambda_init"), (lambda: SlidingPSN(0), "k"),
])
def test_invalid_arguments(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_wrong_length_and_rank():
    with pytest.raises(ValueError, match="exactly T=8"):
        PSN(T)(torch.rand(5, 2, 3))
    with pytest.raises(ValueError, match="time-first"):
        SlidingPSN(2)(torch.rand(5))
    m = MaskedPSN(T, 2)
    with pytest.raises(ValueError, match="lambda_"):
        m.lambda_ = 2.0


def test_half_precision():
    x = torch.randn(T, 2, 3)
    for m in (PSN(T), MaskedPSN(T, 2, lambda_init=1.0), SlidingPSN(3)):
        for dtype in (torch.float16, torch.bfloat16):
            y = m(x.to(dtype))
            assert y.dtype == dtype and torch.equal(y.float(), m(x.to(dtype).float()))
