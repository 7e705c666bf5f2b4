"""ONNX export of one time step (dendrix.export.to_onnx): onnxruntime, looped over time, reproduces model(x)
spike for spike for every registered kind, alone and in a small MLP."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import dendrix
from dendrix.export import ONNXUnsupported, to_onnx
from dendrix.models import SpikingMLP

ort = pytest.importorskip("onnxruntime", reason="onnxruntime comes with the test set-up (dendrix[onnx])")

T, B, IN, OUT = 16, 2, 6, 5
KINDS = dendrix.available()


def _strong(module: nn.Module, gain: float = 4.0) -> nn.Module:
    """Strong synapses so that every kind spikes and the comparison is not vacuous."""
    with torch.no_grad():
        for name, p in module.named_parameters():
            if name.split(".")[-1] == "weight":
                p.mul_(gain)
    return module.eval()


def _spikes(seed: int = 1, width: int = IN, batch: int = B) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(T, batch, width, generator=g) < 0.5).float()


def _session(info) -> "ort.InferenceSession":
    return ort.InferenceSession(str(info.path), providers=["CPUExecutionProvider"])


def stream(info, x: torch.Tensor) -> torch.Tensor:
    """The streaming inference loop of docs/export.md: feed x_t and the state, keep the new state."""
    session, state, ys = _session(info), info.state_for(x.shape[1]), []
    for x_t in x.numpy():
        y_t, *state = session.run(None, {info.input_name: x_t, **dict(zip(info.state_names, state))})
        ys.append(y_t)
    return torch.from_numpy(np.stack(ys))


def _layer(kind: str) -> nn.Module:
    torch.manual_seed(0)
    gain = 40.0 if dendrix.describe(kind).family == "resonator" else 4.0  # RF/BRF/D-RF integrate with dt
    return _strong(dendrix.spiking_layer(kind, IN, OUT, time_steps=T), gain)


@pytest.mark.parametrize("kind", KINDS)
def test_step_export_reproduces_every_kind_spike_for_spike(kind, tmp_path):
    layer, x = _layer(kind), _spikes()
    with torch.no_grad():
        want = layer(x)
    assert want.abs().sum() > 0, f"{kind} produced no spikes: the check would be vacuous"
    if not layer.streaming:  # PSN-type kinds: whole windows only (refusal tested below)
        info = to_onnx(layer, x, tmp_path / f"{kind}.onnx", window=True)
        got = torch.from_numpy(_session(info).run(None, {"x": x.numpy()})[0])
    else:
        info = to_onnx(layer, x[0], tmp_path / f"{kind}.onnx")
        assert info.state_names and len(info.initial_state) == len(info.state_names)
        got = stream(info, x)
    assert torch.equal(got, want), f"{kind}: {int((got != want).sum())} spikes differ"
    # the batch dimension is dynamic: the same file runs another batch size (and one sample)
    for batch in (B + 3, 1):
        x_other = _spikes(seed=5, batch=batch)
        with torch.no_grad():
            want_other = layer(x_other)
        if layer.streaming:
            got_other = stream(info, x_other)
        else:
            got_other = torch.from_numpy(_session(info).run(None, {"x": x_other.numpy()})[0])
        assert torch.equal(got_other, want_other), f"{kind}, batch {batch}: {int((got_other != want_other).sum())} " \
                                                   f"spikes differ"


def test_export_from_a_single_sample_still_has_a_dynamic_batch(tmp_path):
    layer, x = _layer("alif"), _spikes(batch=1)
    info = to_onnx(layer, x[0], tmp_path / "one.onnx")
    assert [a.shape for a in info.initial_state] == [(1, OUT)] * 3 and info.batch_axes == [0, 0, 0]
    x4 = _spikes(seed=6, batch=4)
    with torch.no_grad():
        assert torch.equal(stream(info, x4), layer(x4)) and torch.equal(stream(info, x), layer(x))
    inputs = _session(info).get_inputs()
    assert all(i.shape[0] == "batch" for i in inputs), [i.shape for i in inputs]


@pytest.mark.parametrize("kind", ["lif", "dlif", "dgn", "mmdend", "drf", "pmsn"])
def test_two_layer_network_streams_spike_for_spike(kind, tmp_path):
    torch.manual_seed(0)
    net = _strong(nn.Sequential(dendrix.spiking_layer(kind, IN, 8, time_steps=T),
                                dendrix.spiking_layer(kind, 8, OUT, time_steps=T)), 8.0)
    x = _spikes(seed=2)
    with torch.no_grad():
        want = net(x)
    assert want.abs().sum() > 0
    got = stream(to_onnx(net, x[0], tmp_path / "net.onnx"), x)
    assert torch.equal(got, want)


@pytest.mark.parametrize("kind", ["plif", "alif", "sdgn"])
def test_spiking_mlp_step_gives_the_per_step_logits(kind, tmp_path):
    torch.manual_seed(0)
    model = _strong(SpikingMLP(IN, 3, hidden=(8,), kind=kind), 3.0)
    x = _spikes(seed=3)
    with torch.no_grad():
        want = model(x, per_step=True)
        hidden = model.layers[0](x)
    assert hidden.sum() > 0
    got = stream(to_onnx(model, x[0], tmp_path / "mlp.onnx"), x)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    assert torch.equal(got.mean(0).argmax(-1), model(x).argmax(-1))  # the mean readout over the streamed steps


def test_mmdend_integer_and_binary_substep_forms(tmp_path):
    torch.manual_seed(0)
    layer, x = _strong(dendrix.spiking_layer("mmdend", IN, OUT)), _spikes(seed=4)
    with torch.no_grad():
        want = layer(x)
    assert want.abs().max() > 1, "the integer form should emit counts above 1 here"
    info = to_onnx(layer, x[0], tmp_path / "sub.onnx", binary_substeps=True)
    levels = layer.neuron.ssf.levels
    assert info.substeps == levels
    sub = stream(info, x)
    assert sub.shape == (T, levels, B, OUT)
    assert set(sub.unique().tolist()) <= {-1.0, 0.0, 1.0}
    assert torch.equal(sub.sum(1), want)
    torch.manual_seed(0)
    binary = _strong(dendrix.spiking_layer("mmdend", IN, OUT, firing="binary"))
    with torch.no_grad():
        want = binary(x)
    assert set(want.unique().tolist()) <= {0.0, 1.0} and want.sum() > 0
    assert torch.equal(stream(to_onnx(binary, x[0], tmp_path / "bin.onnx"), x), want)
    with pytest.raises(ONNXUnsupported, match="integer"):
        to_onnx(_layer("lif"), x[0], tmp_path / "no.onnx", binary_substeps=True)


@pytest.mark.parametrize("kind", ["psn", "masked_psn"])
def test_per_step_export_of_a_window_kind_is_a_typed_refusal(kind, tmp_path):
    layer = _layer(kind)
    with pytest.raises(ONNXUnsupported, match=r"does not stream.*window=True"):
        to_onnx(layer, _spikes()[0], tmp_path / "psn.onnx")


def test_export_leaves_the_model_unchanged_and_refuses_unknown_containers(tmp_path):
    layer = dendrix.spiking_layer("dlif", IN, OUT)
    before = {k: v.clone() for k, v in layer.state_dict().items()}
    to_onnx(layer, _spikes()[0], tmp_path / "dlif.onnx")
    assert layer.backend == "auto" and all(torch.equal(before[k], v) for k, v in layer.state_dict().items())

    class Opaque(nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = dendrix.spiking_layer("lif", IN, OUT)

        def forward(self, x):
            return self.inner(x)

    with pytest.raises(dendrix.export.ExportError, match="Opaque.*no step form"):
        to_onnx(Opaque(), _spikes()[0], tmp_path / "opaque.onnx")
    with pytest.raises(TypeError, match="example_step_input"):
        to_onnx(layer, [1.0], tmp_path / "bad.onnx")
