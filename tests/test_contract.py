"""The module contract (DESIGN.md §2), checked for every registered neuron kind through the registry.

Runs on the device named by ``DENDRIX_TEST_DEVICE`` (default cpu; see conftest.py): layers and inputs are built
on the CPU, then moved.
"""

import pytest
import torch

import dendrix
from dendrix.contract import Neuron

BUILTIN_KINDS = {"lif", "plif", "alif", "dalif", "rf", "brf", "drf", "mmdend", "pmsn",
                 "psn", "masked_psn", "sliding_psn", "dlif", "dgn", "sdgn"}
T, B, IN, OUT = 12, 3, 8, 6


def test_every_builtin_kind_is_registered():
    assert BUILTIN_KINDS <= set(dendrix.available())


def _layer(kind: str, device: torch.device | str = "cpu") -> Neuron:
    torch.manual_seed(0)
    layer = dendrix.spiking_layer(kind, IN, OUT, time_steps=T).double()
    with torch.no_grad():  # strong synapses so every kind spikes and the checks are not vacuous
        for name, p in layer.named_parameters():
            if name.split(".")[-1] == "weight":
                p.mul_(4.0)
    return layer.to(device)


def _spikes(seed: int = 1, device: torch.device | str = "cpu") -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(T, B, IN, generator=g) < 0.4).double().to(device)


@pytest.fixture(params=sorted(BUILTIN_KINDS))
def kind(request):
    if request.param not in dendrix.available():
        pytest.fail(f"kind {request.param!r} is not registered")
    return request.param


def test_step_loop_and_chunked_run_equal_forward(kind, device):
    layer, x = _layer(kind, device), _spikes(device=device)
    y = layer(x)
    assert y.shape == (T, B, OUT)
    assert y.abs().sum() > 0, f"{kind} produced no spikes: the equivalence check would be vacuous"
    if not layer.streaming:  # output at t depends on later inputs: only whole windows can run
        y_w, _ = layer.run(x, None)
        assert torch.equal(y_w, y)
        with pytest.raises(ValueError, match="stream"):
            layer.step(x[0], layer.init_state(x[0]))
        return

    state, ys = layer.init_state(x[0]), []
    for t in range(T):
        y_t, state = layer.step(x[t], state)
        ys.append(y_t)
    assert torch.equal(torch.stack(ys), y), f"{kind}: step loop differs from forward"

    state, chunks = None, []
    for lo, hi in [(0, 5), (5, 6), (6, T)]:
        y_c, state = layer.run(x[lo:hi], state)
        chunks.append(y_c)
    assert torch.equal(torch.cat(chunks), y), f"{kind}: chunked run differs from forward"


def test_forward_is_stateless_between_calls(kind, device):
    layer, x = _layer(kind, device), _spikes(device=device)
    first = layer(x)
    layer(_spikes(seed=7, device=device)[:, :2])  # another batch size in between
    assert torch.equal(layer(x), first)


def test_gradients_reach_every_parameter(kind, device):
    layer, x = _layer(kind, device), _spikes(device=device)
    out = layer(x)
    (out * torch.linspace(-1, 1, OUT, dtype=out.dtype, device=out.device)).sum().backward()
    missing = [n for n, p in layer.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing, f"{kind}: no gradient for {missing}"
    assert any(p.grad.abs().sum() > 0 for p in layer.parameters() if p.grad is not None)


def test_record_captures_spikes_and_a_trace(kind, device):
    layer, x = _layer(kind, device), _spikes(device=device)
    model = torch.nn.Sequential(layer)
    with dendrix.record(model) as rec:
        y = model(x)
    (name,) = rec.layers()
    assert torch.equal(rec.spikes[name], y.cpu())  # the recorder keeps CPU copies by default
    assert rec.states[name], f"{kind}: no internal trace recorded (call record_state in run/forward)"
    for trace, value in rec.states[name].items():
        assert value.shape[0] == T, f"{kind}: trace {trace!r} is not time-first"
    layer(x)  # recorder detached after the block
    assert all(m._recorder is None for m in layer.modules() if isinstance(m, Neuron))


@pytest.mark.parametrize("bad", [torch.zeros(B, IN), torch.zeros(T, B, IN + 1)])
def test_bad_input_shape_is_a_clear_error(kind, bad, device):
    layer = _layer(kind, device)
    with pytest.raises((ValueError, TypeError)):
        layer(bad.double().to(device))


def test_unknown_kind_lists_available():
    with pytest.raises(ValueError, match="available"):
        dendrix.spiking_layer("no_such_neuron", 3, 4)
