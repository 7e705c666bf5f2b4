"""DA-LIF: equations, LIF special case, fused vs reference gradients, streaming equivalence, checks."""

import pytest
import torch

import dendrix
from dendrix.neurons import DALIF, LIF
from dendrix.neurons.dalif import DALIFState

T, B, N = 32, 3, 6


def _input(seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    return (2.0 * torch.randn(T, B, N, generator=g) + 1.0).to(dtype)


@pytest.mark.parametrize("reset", ["hard", "soft"])
@pytest.mark.parametrize("parameterization", ["tanh", "sigmoid"])
def test_follows_the_paper_equations(reset, parameterization):
    neuron = DALIF(alpha_init=0.3, beta_init=0.8, v_threshold=1.0, reset=reset,
                   parameterization=parameterization).double()
    x = _input(1, torch.float64)
    alpha, beta = neuron.alpha.item(), neuron.beta.item()
    assert abs(alpha - 0.3) < 1e-6 and abs(beta - 0.8) < 1e-6  # float32 initialisation
    h, spikes = torch.zeros(B, N, dtype=torch.float64), []
    for t in range(T):
        v = beta * h + alpha * x[t]
        s = (v >= 1.0).double()
        h = v * (1 - s) if reset == "hard" else v - 1.0 * s
        spikes.append(s)
    y, state = neuron.run(x)
    assert 0 < y.mean() < 1
    assert torch.equal(y, torch.stack(spikes))
    torch.testing.assert_close(state.h, h, rtol=0, atol=1e-12)


def test_default_initialisation_is_lif_with_tau_two():
    x = _input(2)
    dalif, lif = DALIF(), LIF(tau=2.0, decay_input=True, v_reset=0.0)
    assert torch.equal(dalif(x), lif(x))


@pytest.mark.parametrize("channels", [None, N])
@pytest.mark.parametrize("reset", ["hard", "soft"])
def test_step_loop_and_chunks_equal_forward(channels, reset):
    neuron = DALIF(alpha_init=0.4, beta_init=0.7, reset=reset, channels=channels)
    x = _input(3)
    y = neuron(x)
    assert 0 < y.mean() < 1
    state, steps = neuron.init_state(x[0]), []
    for t in range(T):
        y_t, state = neuron.step(x[t], state)
        steps.append(y_t)
    assert torch.equal(torch.stack(steps), y)
    chunk_state, chunks = None, []
    for lo, hi in [(0, 11), (11, 12), (12, T)]:
        y_c, chunk_state = neuron.run(x[lo:hi], chunk_state)
        chunks.append(y_c)
    assert torch.equal(torch.cat(chunks), y)
    assert torch.equal(state.h, chunk_state.h)


@pytest.mark.parametrize("channels", [None, N])
@pytest.mark.parametrize("reset,parameterization", [("hard", "tanh"), ("soft", "sigmoid")])
def test_gradients_fused_equal_reference(channels, reset, parameterization):
    x = _input(4, torch.float64).requires_grad_()
    grads = []
    for backend in ("fused", "reference"):
        neuron = DALIF(alpha_init=0.6, beta_init=0.4, reset=reset, parameterization=parameterization,
                       channels=channels, backend=backend).double()
        y = neuron(x)
        loss = (y * torch.linspace(-1, 1, N, dtype=torch.float64)).sum()
        grads.append((y, *torch.autograd.grad(loss, [x, neuron.alpha_logit, neuron.beta_logit])))
    assert torch.equal(grads[0][0], grads[1][0])
    for a, b in zip(grads[0][1:], grads[1][1:]):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-10)
    assert grads[0][2].abs().sum() > 0 and grads[0][3].abs().sum() > 0


@pytest.mark.parametrize("kwargs,name", [
    ({"alpha_init": 0.0}, "alpha_init"), ({"alpha_init": 1.0}, "alpha_init"), ({"beta_init": 1.2}, "beta_init"),
    ({"reset": "medium"}, "reset"), ({"parameterization": "relu"}, "parameterization"),
    ({"v_threshold": 0.0}, "v_threshold"), ({"channels": -3}, "channels"), ({"backend": "x"}, "backend"),
])
def test_invalid_arguments(kwargs, name):
    with pytest.raises(ValueError, match=name):
        DALIF(**kwargs)


def test_wrong_rank_channels_and_state_shape():
    neuron = DALIF(channels=N)
    with pytest.raises(ValueError, match=r"\[T, B"):
        neuron(torch.zeros(B, N))
    with pytest.raises(ValueError, match=f"{N} features"):
        neuron(torch.zeros(T, B, N - 1))
    with pytest.raises(ValueError, match="state"):
        neuron.run(torch.zeros(T, B, N), DALIFState(torch.zeros(B + 2, N)))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_works(dtype):
    neuron = DALIF()
    x = _input(5).to(dtype)
    y = neuron(x)
    assert y.dtype == dtype
    assert torch.equal(y.float(), neuron(x.float()))


def test_record_and_registry():
    layer = dendrix.spiking_layer("dalif", 4, N, per_channel=True)
    assert layer.neuron.alpha_logit.shape == (N,)
    model = torch.nn.Sequential(dendrix.spiking_layer("dalif", 4, N))
    with dendrix.record(model) as rec:
        y = model(torch.rand(T, B, 4) * 3)
    (name,) = rec.layers()
    assert torch.equal((rec.states[name]["v"] >= 1.0).float(), y)


# -- issue 14: decays stay in (0, 1) -----------------------------------------------------------------------------
@pytest.mark.parametrize("parameterization", ["tanh", "sigmoid"])
@pytest.mark.parametrize("channels", [None, N])
def test_decays_stay_in_unit_interval_under_an_adversarial_optimiser(parameterization, channels):
    """100 Adam steps at a large learning rate that push α down and β up (then the other way): the decays
    approach the bounds but never leave (0, 1)."""
    neuron = DALIF(parameterization=parameterization, channels=channels)
    opt = torch.optim.Adam(neuron.parameters(), lr=5.0)
    seen = []
    for step in range(100):
        sign = 1.0 if step < 50 else -1.0
        opt.zero_grad()
        (sign * (neuron.alpha.sum() - neuron.beta.sum())).backward()  # minimised by α → 0, β → 1 (then reverse)
        opt.step()
        with torch.no_grad():
            seen.append(torch.cat([neuron.alpha.flatten(), neuron.beta.flatten()]))
    seen = torch.stack(seen)
    assert torch.all(seen > 0) and torch.all(seen < 1)
    assert seen.min() < 1e-3 and seen.max() > 0.999  # the optimiser did push them to the bounds
    y = neuron(_input(4))
    assert torch.isfinite(y).all()


def test_tanh_default_is_bounded_and_keeps_the_initial_decays():
    neuron = DALIF(alpha_init=0.3, beta_init=0.9)
    torch.testing.assert_close(neuron.alpha, torch.tensor(0.3))
    torch.testing.assert_close(neuron.beta, torch.tensor(0.9))
    with torch.no_grad():
        neuron.beta_logit.fill_(-1e4)
    assert 0 <= neuron.beta.item() < 1e-6 and not hasattr(neuron, "beta_raw")


@pytest.mark.parametrize("parameterization", ["tanh", "sigmoid"])
def test_earlier_checkpoints_convert_or_fail_clearly(parameterization, caplog):
    import math

    old_alpha, old_beta = 0.35, 0.8  # decays of a checkpoint saved with f = tanh(raw) or sigmoid(raw)
    inv = math.atanh if parameterization == "tanh" else (lambda v: math.log(v / (1 - v)))
    old = {"alpha_raw": torch.tensor(inv(old_alpha)), "beta_raw": torch.tensor(inv(old_beta))}
    neuron = DALIF(parameterization=parameterization)
    with caplog.at_level("WARNING", logger="dendrix.neurons.dalif"):
        neuron.load_state_dict(old)
    assert "alpha_logit" in caplog.text
    torch.testing.assert_close(neuron.alpha, torch.tensor(old_alpha))
    torch.testing.assert_close(neuron.beta, torch.tensor(old_beta))
    if parameterization == "tanh":  # a negative decay of the unbounded form cannot be represented
        with pytest.raises(ValueError, match=r"beta_raw.*\(0, 1\)"):
            DALIF().load_state_dict({"alpha_raw": torch.tensor(0.5), "beta_raw": torch.tensor(-0.5)})
