from typing import NamedTuple

import pytest
import torch

import dendrix
from dendrix.layers.spiking import SpikingLinear
from dendrix.contract import Neuron


class _Integrator(Neuron):
    """Test neuron: v[t] = v[t-1] + x[t], spike when v >= 1, subtract 1."""

    class State(NamedTuple):
        v: torch.Tensor

    def init_state(self, x_t):
        return self.State(torch.zeros_like(x_t))

    def run(self, x, state=None):
        self.check_input(x)
        (v,) = self.resolve_state(x, state)
        out, vs = [], []
        for t in range(x.shape[0]):
            v = v + x[t]
            s = (v >= 1).to(x.dtype)
            vs.append(v)
            v = v - s
            out.append(s)
        self.record_state("v", torch.stack(vs))
        return torch.stack(out), self.State(v)


def test_record_names_outer_layers_and_captures_inner_traces():
    torch.manual_seed(0)
    model = torch.nn.Sequential(SpikingLinear(4, 3, _Integrator()), SpikingLinear(3, 2, _Integrator()))
    x = torch.rand(5, 2, 4)
    with dendrix.record(model) as rec:
        y = model(x)
    assert rec.layers() == ["0", "1"]
    assert torch.equal(rec.spikes["1"], y)
    assert rec.states["0"]["v"].shape == (5, 2, 3)
    # Nothing is recorded once the block has ended.
    model(x)
    assert len(rec.calls["0"]) == 1


def test_record_keeps_each_call():
    layer = _Integrator()
    with dendrix.record(torch.nn.Sequential(layer)) as rec:
        layer_seq = torch.nn.Sequential(layer)
        layer_seq(torch.ones(3, 1, 2))
        layer_seq(torch.zeros(3, 1, 2))
    assert len(rec.calls["0"]) == 2
    assert rec.spikes["0"].sum() == 0


def test_state_shape_mismatch_is_a_clear_error():
    layer = _Integrator()
    with pytest.raises(ValueError, match="init_state"):
        layer.run(torch.zeros(3, 2, 4), _Integrator.State(torch.zeros(5, 4)))


def test_step_refuses_a_sequence_rank_below_one_step():
    with pytest.raises(ValueError, match="one time step"):
        _Integrator().step(torch.zeros(4))
