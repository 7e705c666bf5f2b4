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
# Every registered kind is checked: the parameters come from the registry, not from a list kept here.
KINDS = dendrix.available()


def test_every_builtin_kind_is_registered():
    assert BUILTIN_KINDS <= set(dendrix.available())


def test_every_registered_kind_is_in_the_contract_test():
    assert set(KINDS) == set(dendrix.available()) >= BUILTIN_KINDS


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


@pytest.fixture(params=KINDS)
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


# -- the neuron alone: dendrix.spiking_neuron(kind, n) ---------------------------------------------------------
def _neuron(kind: str, device: torch.device | str = "cpu") -> Neuron:
    torch.manual_seed(0)
    return dendrix.spiking_neuron(kind, OUT, time_steps=T).double().to(device)


def _current(device: torch.device | str = "cpu") -> torch.Tensor:
    g = torch.Generator().manual_seed(3)
    return (30.0 * torch.rand(T, B, OUT, generator=g, dtype=torch.float64)).to(device)  # RF: dt = 0.01


def test_spiking_neuron_keeps_the_contract(kind, device):
    neuron, x = _neuron(kind, device), _current(device)
    assert isinstance(neuron, Neuron)
    y = neuron(x)
    assert y.shape == (T, B, OUT)
    assert y.abs().sum() > 0, f"{kind}: the neuron alone produced no spikes"
    if not neuron.streaming:
        assert torch.equal(neuron.run(x, None)[0], y)
        return
    state, ys = neuron.init_state(x[0]), []
    for t in range(T):
        y_t, state = neuron.step(x[t], state)
        ys.append(y_t)
    assert torch.equal(torch.stack(ys), y), f"{kind}: the neuron's step loop differs from forward"
    y_a, state = neuron.run(x[:5], None)
    y_b, _ = neuron.run(x[5:], state)
    assert torch.equal(torch.cat([y_a, y_b]), y)
    x = x.clone().requires_grad_(True)
    (neuron(x) * torch.linspace(-1, 1, OUT, dtype=y.dtype, device=y.device)).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0, f"{kind}: no gradient reaches the input current"
    assert all(p.grad is not None for p in neuron.parameters() if p.requires_grad)


def test_spiking_neuron_is_the_neuron_of_spiking_layer(kind):
    """Activation-style kinds: the same module, built the same way (same parameters from the same seed)."""
    registration = dendrix.describe(kind)
    torch.manual_seed(0)
    layer = dendrix.spiking_layer(kind, IN, OUT, time_steps=T)
    torch.manual_seed(0)
    neuron = dendrix.spiking_neuron(kind, OUT, time_steps=T)
    if registration.owns_layer:
        assert type(layer) is registration.cls and type(neuron) is not registration.cls
        return
    assert type(neuron) is type(layer.neuron) is registration.cls
    want = layer.neuron.state_dict()
    got = neuron.state_dict()
    assert want.keys() == got.keys()
    assert all(torch.equal(got[k], want[k]) for k in want)


def test_registered_traits_agree_with_the_modules(kind):
    reg = dendrix.describe(kind)
    layer = dendrix.spiking_layer(kind, IN, OUT, time_steps=T)
    if not reg.streams:  # a kind declared non-streaming really refuses to step (default construction)
        assert not layer.streaming
    else:
        assert layer.streaming
    if reg.own_recurrence:
        assert dendrix.spiking_layer(kind, IN, OUT, time_steps=T, recurrent=True).recurrent
    if reg.width is not None and not reg.per_channel:
        assert getattr(layer.neuron if not reg.owns_layer else layer, reg.width, OUT) == OUT


def test_spiking_neuron_refuses_synapse_arguments_with_a_clear_error():
    with pytest.raises(TypeError, match="spiking_layer"):
        dendrix.spiking_neuron("dlif", 4, sparsity=0.5)
    with pytest.raises(TypeError, match="recurrent"):
        dendrix.spiking_neuron("dgn", 4, recurrent=True)
    with pytest.raises(TypeError, match="per_channel"):
        dendrix.spiking_neuron("lif", 4, per_channel=True)
    with pytest.raises(ValueError, match="time_steps"):
        dendrix.spiking_neuron("psn", 4)
    with pytest.raises(ValueError, match="n"):
        dendrix.spiking_neuron("lif", 0)
    with pytest.raises(ValueError, match="available"):
        dendrix.spiking_neuron("no_such_neuron", 4)


def test_dlif_neuron_is_the_soma_of_the_layer():
    """With no K (sparsity 1) a DLIF layer is Linear + its soma: spiking_neuron('dlif') is that soma."""
    torch.manual_seed(0)
    layer = dendrix.spiking_layer("dlif", IN, OUT, sparsity=1.0, tau=3.0, v_threshold=0.5).double()
    soma = dendrix.spiking_neuron("dlif", OUT, tau=3.0, v_threshold=0.5).double()
    x = _spikes()
    current = torch.nn.functional.linear(x, layer.weight, layer.bias)
    assert torch.equal(soma(current), layer(x))
    assert soma.v_reset is None  # DLIF's soma resets softly


@pytest.mark.parametrize("kind", ["dgn", "sdgn"])
def test_dgn_neuron_is_the_layer_with_one_synapse_per_neuron(kind):
    torch.manual_seed(0)
    neuron = dendrix.spiking_neuron(kind, OUT, bias=True).double()
    with torch.no_grad():
        neuron.bias.uniform_(-0.2, 0.2)
    layer = dendrix.spiking_layer(kind, OUT, OUT, bias=True).double()
    with torch.no_grad():
        layer.conductance.copy_(torch.diag(neuron.conductance))
        if kind == "sdgn":
            layer.reversal.copy_(neuron.reversal)
        else:
            layer.weight.copy_(torch.diag(neuron.weight))
        layer.bias.copy_(neuron.bias)
    x = _current()
    y = neuron(x)
    assert y.abs().sum() > 0
    torch.testing.assert_close(y, layer(x), rtol=0, atol=0)
