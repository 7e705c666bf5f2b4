"""NIR export and import (dendrix.export.to_nir / from_nir): the field mapping, round trips through a NIR file
and through SpikingJelly 2.0's NIR importer with identical spikes, and typed refusals for the rest."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import dendrix
from dendrix.export import NIRUnsupported, from_nir, to_nir
from dendrix.layers.per_step import PerStep
from dendrix.models import SpikingMLP
from dendrix.neurons import LIF, PLIF

nir = pytest.importorskip("nir", reason="nir comes with the test set-up (dendrix[nir])")
pytest.importorskip("h5py", reason="nir.write needs h5py (dendrix[data])")

T, B, DT = 16, 3, 1e-4


def _spikes(*shape: int, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(T, B, *shape, generator=g) < 0.5).float()


def _mlp(decay_input: bool = True, per_channel: bool = True) -> nn.Sequential:
    torch.manual_seed(0)
    net = nn.Sequential(dendrix.spiking_layer("lif", 6, 8, tau=2.0, decay_input=decay_input),
                        dendrix.spiking_layer("plif", 8, 5, init_tau=3.0, decay_input=decay_input,
                                              per_channel=per_channel),
                        nn.Linear(5, 4, bias=False))
    with torch.no_grad():
        plif = net[1].neuron
        plif.w.copy_(torch.linspace(-1.0, 1.0, plif.w.numel()).reshape(plif.w.shape))  # a learnt-looking τ
        for name, p in net.named_parameters():
            if name.endswith("weight"):
                p.mul_(6.0 if decay_input else 3.0)
    return net.eval()


def _run(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(x)


def test_lif_field_mapping_is_the_documented_one():
    lif = LIF(tau=4.0, v_threshold=0.8, v_reset=-0.1)
    graph = to_nir(nn.Sequential(nn.Linear(3, 2), lif), _spikes(3), dt=1e-3)
    node = graph.nodes["1"]
    assert isinstance(node, nir.LIF)
    np.testing.assert_allclose(node.tau, [4e-3, 4e-3])
    np.testing.assert_array_equal(node.r, [1.0, 1.0])
    np.testing.assert_array_equal(node.v_leak, [-0.1, -0.1])
    np.testing.assert_array_equal(node.v_reset, [-0.1, -0.1])
    np.testing.assert_allclose(node.v_threshold, [0.8, 0.8])
    no_decay = to_nir(nn.Sequential(nn.Linear(3, 2), LIF(tau=4.0, decay_input=False)), _spikes(3), dt=1e-3)
    np.testing.assert_allclose(no_decay.nodes["1"].r, [4.0, 4.0])  # r = τ: the input is not scaled by 1/τ
    plif = PLIF(channels=2)
    with torch.no_grad():
        plif.w.copy_(torch.tensor([0.0, 1.0]))
    tau = to_nir(nn.Sequential(nn.Linear(3, 2), plif), _spikes(3), dt=1.0).nodes["1"].tau
    np.testing.assert_allclose(1.0 / tau, torch.sigmoid(torch.tensor([0.0, 1.0])).numpy(), rtol=1e-6)
    assert graph.edges == [("input", "0"), ("0", "1"), ("1", "output")]


@pytest.mark.parametrize("decay_input", [True, False])
def test_round_trip_through_a_nir_file_gives_identical_spikes(decay_input, tmp_path):
    net, x = _mlp(decay_input), _spikes(6)
    want = _run(net, x)
    assert net[0](x).sum() > 0 and net[:2](x).sum() > 0, "the check would be vacuous"
    nir.write(tmp_path / "net.nir", to_nir(net, x, dt=DT))
    back = from_nir(tmp_path / "net.nir", dt=DT)
    assert isinstance(back[1], LIF) and isinstance(back[3], PLIF) and back[3].decay_input is decay_input
    assert torch.equal(_run(back, x), want)


def test_affine_import_takes_weight_and_bias_from_the_graph():
    """nirtorch's Affine import keeps a random bias; ours sets both (two imports of one graph are equal)."""
    weight, bias = np.arange(6, dtype=np.float32).reshape(2, 3), np.array([0.5, -1.5], dtype=np.float32)
    graph = nir.NIRGraph(nodes={"input": nir.Input(input_type={"input": np.array([3])}),
                                "fc": nir.Affine(weight=weight, bias=bias),
                                "output": nir.Output(output_type={"output": np.array([2])})},
                         edges=[("input", "fc"), ("fc", "output")])
    for seed in (0, 1):
        torch.manual_seed(seed)
        (fc,) = from_nir(graph)
        assert torch.equal(fc.weight, torch.from_numpy(weight)) and torch.equal(fc.bias, torch.from_numpy(bias))


def test_convolution_pooling_flatten_network_round_trips(tmp_path):
    torch.manual_seed(0)
    net = nn.Sequential(PerStep(nn.Conv2d(2, 4, 3, padding=1)), LIF(), PerStep(nn.AvgPool2d(2)),
                        PerStep(nn.LPPool2d(1, 2)), nn.Flatten(2), nn.Linear(16, 6), LIF(tau=3.0),
                        PerStep(nn.Unflatten(1, (1, 6))), PerStep(nn.Conv1d(1, 2, 3)), LIF()).eval()
    with torch.no_grad():
        net[0].module.weight.mul_(4.0)
        net[5].weight.mul_(6.0)
        net[8].module.weight.mul_(4.0)
    x = _spikes(2, 8, 8)
    want = _run(net, x)
    assert want.sum() > 0 and _run(net[:2], x).sum() > 0
    with pytest.raises(NIRUnsupported, match="Unflatten"):
        to_nir(net, x)
    net = nn.Sequential(*net[:7]).eval()
    graph = to_nir(net, x, dt=DT)
    kinds = [type(graph.nodes[k]).__name__ for k in ("0", "2", "3", "4", "5")]
    assert kinds == ["Conv2d", "AvgPool2d", "SumPool2d", "Flatten", "Affine"]
    nir.write(tmp_path / "conv.nir", graph)
    assert torch.equal(_run(from_nir(nir.read(tmp_path / "conv.nir"), dt=DT), x), _run(net, x))
    conv1 = nn.Sequential(PerStep(nn.Conv1d(3, 4, 3, stride=2)), LIF()).eval()
    with torch.no_grad():
        conv1[0].module.weight.mul_(4.0)
    x1 = _spikes(3, 11)
    assert _run(conv1, x1).sum() > 0
    assert torch.equal(_run(from_nir(to_nir(conv1, x1)), x1), _run(conv1, x1))


def test_spiking_mlp_exports_its_layers_and_output():
    torch.manual_seed(0)
    model = SpikingMLP(6, 3, hidden=(8,), kind="lif").eval()
    x = _spikes(6)
    back = from_nir(to_nir(model, x))
    assert isinstance(back[-1], nn.Linear) and back[-1].out_features == 3
    with torch.no_grad():  # the graph ends at the per-step logits; the readout over time is the caller's
        assert torch.equal(back(x), model(x, per_step=True))


@pytest.mark.parametrize("decay_input", [True, False])
def test_spikingjelly_nir_importer_reproduces_the_spikes(decay_input):
    pytest.importorskip("nirtorch", reason="SpikingJelly's NIR importer needs nirtorch (dev extra)")
    sj_nir = pytest.importorskip("spikingjelly.activation_based.nir_exchange")
    net, x = _mlp(decay_input, per_channel=False), _spikes(6)  # SpikingJelly's LIF takes one τ per layer
    want = _run(net, x)
    assert net[:2](x).sum() > 0
    imported = sj_nir.import_from_nir(to_nir(net, x, dt=DT), dt=DT)
    state, steps = None, []
    with torch.no_grad():
        for x_t in x:
            y_t, state = imported(x_t, state)
            steps.append(y_t)
    assert torch.equal(torch.stack(steps), want)


@pytest.mark.parametrize("kind", sorted(set(dendrix.available()) - {"lif", "plif"}))
def test_every_other_kind_is_a_typed_refusal_pointing_to_onnx(kind):
    layer = dendrix.spiking_layer(kind, 6, 4, time_steps=T)
    with pytest.raises(NIRUnsupported, match=r"has no NIR form: .*to_onnx"):
        to_nir(layer, _spikes(6))


def test_soft_reset_and_unknown_modules_are_refused():
    with pytest.raises(NIRUnsupported, match=r"soft reset.*to_onnx"):
        to_nir(nn.Sequential(nn.Linear(6, 4), LIF(v_reset=None)), _spikes(6))
    with pytest.raises(NIRUnsupported, match="GRU"):
        to_nir(nn.Sequential(nn.GRU(6, 4)), _spikes(6))
    graph = nir.NIRGraph(nodes={"input": nir.Input(input_type={"input": np.array([2])}),
                                "li": nir.LI(tau=np.ones(2), r=np.ones(2), v_leak=np.zeros(2)),
                                "output": nir.Output(output_type={"output": np.array([2])})},
                         edges=[("input", "li"), ("li", "output")])
    with pytest.raises(NIRUnsupported, match="LI"):
        from_nir(graph)
    with pytest.raises(ValueError, match="dt"):
        to_nir(nn.Linear(6, 4), _spikes(6), dt=0.0)
