"""Parity with SpikingJelly 2.0: same arguments and inputs give exactly its spikes and its potentials to 1e-6.

SpikingJelly is a test dependency (installed with --no-deps by `make test`), so this runs in CI.
"""

import itertools

import pytest
import torch

from spikingjelly.activation_based import functional as sj_functional  # noqa: E402
from spikingjelly.activation_based import neuron as sj_neuron  # noqa: E402
from spikingjelly.activation_based import surrogate as sj_surrogate  # noqa: E402

from dendrix.neurons import LIF, PLIF

T, B, N = 64, 8, 16


def _input(seed):
    g = torch.Generator().manual_seed(seed)
    return 1.5 * torch.randn(T, B, N, generator=g) + 0.6


def _post_reset(h, spikes, v_threshold, v_reset):
    return h - v_threshold * spikes if v_reset is None else torch.where(spikes.bool(), torch.full_like(h, v_reset), h)


CASES = list(itertools.product([0.0, None, -0.25], [True, False], [2.0, 3.7]))


@pytest.mark.parametrize("v_reset,decay_input,tau", CASES)
def test_lif_matches_spikingjelly_lifnode(v_reset, decay_input, tau):
    x = _input(0)
    sj = sj_neuron.LIFNode(tau=tau, decay_input=decay_input, v_threshold=1.0, v_reset=v_reset,
                           surrogate_function=sj_surrogate.ATan(), step_mode="m", store_v_seq=True)
    sj_spikes = sj(x)
    ours = LIF(tau=tau, decay_input=decay_input, v_threshold=1.0, v_reset=v_reset, surrogate="atan")
    rec = {}
    ours._recorder = lambda name, value: rec.__setitem__(name, value)
    spikes, state = ours.run(x)
    assert 0 < spikes.mean() < 1
    assert torch.equal(spikes, sj_spikes)
    v_seq = _post_reset(rec["v"], spikes, 1.0, v_reset)
    torch.testing.assert_close(v_seq, sj.v_seq, rtol=0, atol=1e-6)
    torch.testing.assert_close(state.v, sj.v, rtol=0, atol=1e-6)


@pytest.mark.parametrize("v_reset,detach_reset", list(itertools.product([0.0, None], [False, True])))
@pytest.mark.parametrize("surrogate", ["atan", "sigmoid"])
def test_lif_input_gradients_match_spikingjelly(v_reset, detach_reset, surrogate):
    x = _input(1)
    sj_sg = {"atan": sj_surrogate.ATan(), "sigmoid": sj_surrogate.Sigmoid()}[surrogate]
    weights = torch.randn(T, B, N, generator=torch.Generator().manual_seed(2))
    x_sj = x.clone().requires_grad_()
    sj = sj_neuron.LIFNode(tau=2.0, v_reset=v_reset, detach_reset=detach_reset, surrogate_function=sj_sg,
                           step_mode="m")
    (sj(x_sj) * weights).sum().backward()
    x_ours = x.clone().requires_grad_()
    (LIF(tau=2.0, v_reset=v_reset, detach_reset=detach_reset, surrogate=surrogate)(x_ours) * weights).sum().backward()
    torch.testing.assert_close(x_ours.grad, x_sj.grad, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("v_reset", [0.0, None])
def test_plif_matches_spikingjelly_parametric_lif(v_reset):
    x = _input(3)
    weights = torch.randn(T, B, N, generator=torch.Generator().manual_seed(4))
    sj = sj_neuron.ParametricLIFNode(init_tau=2.5, v_reset=v_reset, surrogate_function=sj_surrogate.ATan(),
                                     step_mode="m")
    ours = PLIF(init_tau=2.5, v_reset=v_reset, surrogate="atan")
    sj_spikes, our_spikes = sj(x), ours(x)
    assert torch.equal(our_spikes, sj_spikes)
    (sj_spikes * weights).sum().backward()
    (our_spikes * weights).sum().backward()
    torch.testing.assert_close(ours.w.grad, sj.w.grad, rtol=1e-4, atol=1e-5)
    sj_functional.reset_net(sj)
