"""Reference architectures: every registered kind builds, runs forward/backward, readouts are what they say."""

from typing import NamedTuple

import pytest
import torch
import torch.nn.functional as F

import dendrix
from dendrix.models import (RecurrentSpikingLayer, SeqImageNet, SpikingMLP, apply_readout, build_model,
                            count_parameters, per_step_loss)
from dendrix.train.trainer import neuron_parameters

T, B, C, K = 12, 3, 10, 4


class Info(NamedTuple):
    name: str = "test"
    num_inputs: int = C
    num_classes: int = K
    time_steps: int = T
    input_kind: str = "spikes"


def _spikes(seed=0, rate=0.4):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(T, B, C, generator=g) < rate).float()


def _check_forward_backward(model, x):
    logits = model(x)
    assert logits.shape == (B, K)
    assert torch.isfinite(logits).all()
    F.cross_entropy(logits, torch.arange(B) % K).backward()
    out_grad = model.output.weight.grad
    assert out_grad is not None and torch.isfinite(out_grad).all()
    first = next(p for p in model.parameters() if p.requires_grad)
    assert first.grad is not None and torch.isfinite(first.grad).all()


@pytest.mark.parametrize("kind", dendrix.available())
def test_feedforward_mlp_every_kind(kind):
    torch.manual_seed(0)
    model = build_model({"arch": "mlp", "kind": kind, "hidden": [16, 8]}, Info())
    assert isinstance(model, SpikingMLP) and len(model.layers) == 2
    assert count_parameters(model) > 0
    _check_forward_backward(model, _spikes())


@pytest.mark.parametrize("kind", dendrix.available())
def test_recurrent_mlp_every_kind(kind):
    torch.manual_seed(0)
    try:
        model = build_model({"arch": "mlp", "kind": kind, "hidden": [8], "recurrent": True}, Info())
    except ValueError as err:  # only kinds that cannot be stepped (non-causal PSN) may refuse, with a reason
        assert "cannot be used in a recurrent layer" in str(err)
        with pytest.raises(ValueError):
            dendrix.spiking_layer(kind, C, 8, time_steps=T).step(torch.zeros(B, C))
        return
    ff = build_model({"arch": "mlp", "kind": kind, "hidden": [8]}, Info())
    assert count_parameters(model) > count_parameters(ff)  # recurrent weights exist
    _check_forward_backward(model, _spikes())


def test_recurrent_layer_step_equals_forward_and_uses_recurrence():
    torch.manual_seed(0)
    layer = RecurrentSpikingLayer("lif", C, 6)
    with torch.no_grad():
        layer.inner.linear.weight.mul_(4)
    x = _spikes(1)
    y = layer(x)
    assert y.sum() > 0
    state, steps = layer.init_state(x[0]), []
    for t in range(T):
        y_t, state = layer.step(x[t], state)
        steps.append(y_t)
    assert torch.equal(torch.stack(steps), y)
    with torch.no_grad():  # strong inhibitory recurrence changes the spikes: the recurrent path is used
        layer.recurrent.weight.fill_(-5.0)
    assert not torch.equal(layer(x), y)


def test_seqimage_net_is_causal_and_trains():
    torch.manual_seed(0)
    model = build_model({"arch": "seqimage", "kind": "lif", "conv_channels": [8, 8], "hidden": [8], "weight_gain": 4,
                         "readout": "mean"}, Info())
    assert isinstance(model, SeqImageNet)
    _check_forward_backward(model, _spikes())
    with torch.no_grad():  # let BatchNorm's running statistics settle, so the eval-mode network spikes
        for _ in range(30):
            model(_spikes(3))
    model.eval()  # causal at inference: BatchNorm then uses running statistics, not the whole sequence's
    x = _spikes(2)
    x2 = x.clone()
    x2[T // 2:] = 1 - x2[T // 2:]  # change only the second half
    a, b = model(x, per_step=True), model(x2, per_step=True)
    assert torch.equal(a[: T // 2], b[: T // 2])  # outputs before the change are unaffected
    assert not torch.equal(a, b)


def test_readouts():
    out = torch.randn(T, B, K)
    assert torch.allclose(apply_readout(out, "mean"), out.mean(0))
    assert torch.equal(apply_readout(out, "max"), out.amax(0))
    y = torch.arange(B) % K
    expected = torch.stack([F.cross_entropy(out[t], y) for t in range(T)]).mean()
    assert torch.allclose(per_step_loss(out, y), expected)
    model = build_model({"kind": "lif", "hidden": [8], "readout": "ce_sum"}, Info())
    assert model.per_step_loss and model(_spikes(), per_step=True).shape == (T, B, K)


def test_neuron_parameters_rule_excludes_synapses():
    model = build_model({"kind": "lif", "hidden": [8]}, Info())
    names = [n for n, _ in neuron_parameters(model)]
    assert all("linear" not in n and "output" not in n for n in names)
    plif = build_model({"kind": "plif", "hidden": [8]}, Info())
    assert len(neuron_parameters(plif)) >= 1  # PLIF's learnable time constant


def test_build_model_errors():
    with pytest.raises(ValueError, match="arch"):
        build_model({"arch": "transformer"}, Info())
    with pytest.raises(ValueError, match="not an option"):
        build_model({"arch": "mlp", "kernel_size": 3}, Info())
    with pytest.raises(ValueError, match="unknown neuron kind"):
        build_model({"kind": "nosuch"}, Info())
    model = build_model({"kind": "lif", "hidden": [8]}, Info())
    with pytest.raises(ValueError, match="features"):
        model(torch.zeros(T, B, C + 1))


def test_sequence_arch_is_built_lazily():
    model = build_model({"arch": "sequence", "kind": "drf", "d_model": 16, "depth": 1}, Info())
    assert type(model).__name__ == "SequenceModel"
    logits = model(_spikes())
    assert logits.shape == (B, K)
    F.cross_entropy(logits, torch.arange(B) % K).backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)
