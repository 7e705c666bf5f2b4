"""DGN / S-DGN layers and their fused kernels (dendrix.layers.dgn, dendrix.ops.dgn)."""

import math

import pytest
import torch

from dendrix.layers.dgn import DGNLinear, DGNRecurrentState, DGNState
from dendrix.neurons.dgn import DGN
from dendrix.ops.dgn import apply_gate, dgn_membrane, gate_derivative, synaptic_trace
from dendrix.surrogate import Rectangular

CONFIGS = {
    "dgn": dict(),
    "sdgn": dict(shared_reversal=True),
    "dgn_rec": dict(recurrent=True),
    "sdgn_rec": dict(recurrent=True, shared_reversal=True),
}


def _layer(name, in_features=10, out_features=6, dtype=torch.float64, seed=0, **kw):
    torch.manual_seed(seed)
    layer = DGNLinear(in_features, out_features, **CONFIGS[name], **kw).to(dtype)
    with torch.no_grad():  # strong enough synapses that the layer spikes often
        (layer.reversal if layer.shared_reversal else layer.weight).mul_(3.0)
    return layer


def _spikes(T=15, B=4, n=10, p=0.4, dtype=torch.float64, seed=1):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(T, B, n, generator=g) < p).to(dtype)


# -- contract -----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_step_and_chunked_run_equal_forward(name):
    layer, x = _layer(name), _spikes()
    y = layer(x)
    assert 0.05 < y.mean() < 0.95, "the equivalence check needs a layer that spikes"
    state, ys = layer.init_state(x[0]), []
    assert isinstance(state, DGNRecurrentState if layer.recurrent else DGNState)
    for t in range(x.shape[0]):
        y_t, state = layer.step(x[t], state)
        ys.append(y_t)
    assert torch.equal(torch.stack(ys), y)
    state, chunks = None, []
    for lo, hi in [(0, 4), (4, 5), (5, 15)]:
        y_c, state = layer.run(x[lo:hi], state)
        chunks.append(y_c)
    assert torch.equal(torch.cat(chunks), y)
    _, final = layer.run(x)
    for a, b in zip(state, final):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_fused_equals_reference_forward_and_gradients(name):
    torch.manual_seed(3)
    x = _spikes().requires_grad_()
    results = {}
    for backend in ("fused", "reference"):
        layer = _layer(name, backend=backend, bias=True)
        x.grad = None
        y, state = layer.run(x)
        weights = torch.linspace(-1, 1, y.shape[-1], dtype=y.dtype)
        loss = (y * weights).sum() + state.v.square().sum() + state.trace.sum()
        loss.backward()
        grads = {n: p.grad.clone() for n, p in layer.named_parameters()}
        results[backend] = (y.detach(), grads, x.grad.clone())
    (yf, gf, xf), (yr, gr, xr) = results["fused"], results["reference"]
    assert torch.equal(yf, yr)
    assert yf.sum() > 0
    for n in gr:
        torch.testing.assert_close(gf[n], gr[n], rtol=1e-9, atol=1e-10, msg=f"gradient of {n}")
        assert gr[n].abs().sum() > 0, f"{n} got no gradient"
    torch.testing.assert_close(xf, xr, rtol=1e-9, atol=1e-10)
    assert xr.abs().sum() > 0


@pytest.mark.parametrize("gate", ["clamp", "sigmoid"])
@pytest.mark.parametrize("detach_reset", [False, True])
def test_membrane_op_fused_equals_reference_with_state_gradients(gate, detach_reset):
    torch.manual_seed(0)
    T, B, O = 9, 3, 5
    g = torch.Generator().manual_seed(0)
    G = (torch.rand(T, B, O, generator=g, dtype=torch.float64) * 1.4 - 0.2).requires_grad_()
    I = torch.randn(T, B, O, generator=g, dtype=torch.float64).requires_grad_()
    v0 = torch.randn(B, O, generator=g, dtype=torch.float64).requires_grad_()
    s0 = (torch.rand(B, O, generator=g) < 0.5).double().requires_grad_()
    Wr = torch.randn(O, O, generator=g, dtype=torch.float64).requires_grad_()
    Cr = (0.2 * torch.randn(O, O, generator=g, dtype=torch.float64)).requires_grad_()
    dr0 = torch.rand(B, O, generator=g, dtype=torch.float64).requires_grad_()
    for recurrent in (False, True):
        rec = dict(recurrent_weight=Wr, recurrent_conductance=Cr, recurrent_decay=0.6, rec_trace0=dr0) if recurrent else {}
        inputs = [G, I, v0, s0] + ([Wr, Cr, dr0] if recurrent else [])
        got = {}
        for backend in ("fused", "reference"):
            s, v, dr = dgn_membrane(G, I, v0, s0, dt=0.8, threshold=1.0, gate=gate, detach_reset=detach_reset,
                                    backend=backend, **rec)
            loss = (s * torch.arange(O, dtype=s.dtype)).sum() + 0.3 * v.square().sum()
            if dr is not None:
                loss = loss + dr.square().sum()
            got[backend] = (s, v, torch.autograd.grad(loss, inputs, allow_unused=True, materialize_grads=True))
        assert torch.equal(got["fused"][0], got["reference"][0])
        torch.testing.assert_close(got["fused"][1], got["reference"][1])
        for a, b in zip(got["fused"][2], got["reference"][2]):
            torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-10)


def test_gradcheck_membrane_and_trace_float64():
    """Exact gradients of the fused Functions. Subthreshold (θ high, rectangular surrogate of small support), so
    the Heaviside has zero derivative both analytically and numerically; the spike paths are checked against
    the autograd reference above."""
    g = torch.Generator().manual_seed(5)
    T, B, O = 5, 2, 3
    sg = Rectangular(0.5)

    def rnd(*shape, scale=1.0, shift=0.0):
        return (torch.rand(*shape, generator=g, dtype=torch.float64) * scale + shift).requires_grad_()

    G, I = rnd(T, B, O, scale=0.8, shift=0.1), rnd(T, B, O, scale=2, shift=-1)
    v0, s0 = rnd(B, O, scale=2, shift=-1), rnd(B, O)
    for gate in ("clamp", "sigmoid"):
        def ff(G, I, v0, s0):
            s, v, _ = dgn_membrane(G, I, v0, s0, dt=0.9, threshold=20.0, gate=gate, surrogate=sg, backend="fused")
            return s, v
        assert torch.autograd.gradcheck(ff, (G, I, v0, s0))
        Wr, Cr, dr0 = rnd(O, O, scale=2, shift=-1), rnd(O, O, scale=0.2, shift=-0.1), rnd(B, O)

        def rec(G, I, v0, s0, Wr, Cr, dr0):
            s, v, dr = dgn_membrane(G, I, v0, s0, dt=0.9, threshold=20.0, gate=gate, surrogate=sg,
                                    recurrent_weight=Wr, recurrent_conductance=Cr, recurrent_decay=0.7,
                                    rec_trace0=dr0, backend="fused")
            return s, v, dr
        assert torch.autograd.gradcheck(rec, (G, I, v0, s0, Wr, Cr, dr0))
    z, d0 = rnd(T, B, 4), rnd(B, 4)
    assert torch.autograd.gradcheck(lambda z, d0: synaptic_trace(z, 0.8, d0, backend="fused"), (z, d0))


def test_gradients_flow_through_traces_to_presynaptic_spikes():
    """Layer-level gradcheck w.r.t. the input z (e.g. a previous layer's spikes) in the subthreshold regime."""
    torch.manual_seed(2)
    layer = DGNLinear(4, 3, recurrent=True, threshold=50.0, surrogate=Rectangular(0.5)).double()
    x = torch.rand(6, 2, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x: layer.run(x)[1].v, (x,))
    assert torch.autograd.gradcheck(lambda x: layer.run(x)[1].trace, (x,))


# -- model properties ---------------------------------------------------------------------------------------------
def test_zero_conductance_reduces_to_current_based_lif_with_synaptic_traces():
    """C = 0 fixes ρ = 1 − dt·g_l: the layer is snnTorch's Synaptic neuron (subtractive reset by the previous
    step's spike) driven by dt·W·z, with α = exp(-dt/τ_s) and β = 1 − dt·g_l (the clamp gate: ρ = β exactly)."""
    snntorch = pytest.importorskip("snntorch")
    torch.manual_seed(0)
    tau_s, g_leak, dt = 4.0, 0.25, 0.8
    layer = DGNLinear(10, 6, tau_s=tau_s, g_leak=g_leak, dt=dt, gate="clamp")
    with torch.no_grad():
        layer.conductance.zero_()
        layer.weight.mul_(3)
    x = _spikes(T=30, dtype=torch.float32)
    with torch.no_grad():
        y = layer(x)
        syn = snntorch.Synaptic(alpha=math.exp(-dt / tau_s), beta=1 - dt * g_leak, threshold=1.0,
                                reset_mechanism="subtract")
        mem_syn, mem = syn.reset_mem()
        ref = []
        drive = dt * x @ layer.weight.t()
        for t in range(x.shape[0]):
            spk, mem_syn, mem = syn(drive[t], mem_syn, mem)
            ref.append(spk)
    ref = torch.stack(ref)
    assert ref.sum() > 20
    assert torch.equal(y, ref)


@pytest.mark.parametrize("gate", ["clamp", "sigmoid"])
def test_gate_stays_in_unit_interval(gate):
    layer = DGNLinear(8, 5, gate=gate)
    with torch.no_grad():
        layer.conductance.uniform_(-30, 30)  # drives 1 − dt·G far outside [0, 1] both ways
    import dendrix
    x = _spikes(n=8, dtype=torch.float32)
    with dendrix.record(torch.nn.Sequential(layer)) as rec:
        layer_out = torch.nn.Sequential(layer)(x)
    rho = rec.states["0"]["gate"]
    assert rho.shape == layer_out.shape
    assert rho.min() >= 0 and rho.max() <= 1
    assert (rho == 0).any() or gate == "sigmoid"
    a = torch.linspace(-1e4, 1e4, 10001)
    r = apply_gate(a, gate)
    assert r.min() >= 0 and r.max() <= 1 and gate_derivative(a, gate).min() >= 0


def test_clamp_gate_gradient_is_zero_outside_unit_interval():
    a = torch.tensor([-0.5, 0.0, 0.3, 1.0, 1.5], requires_grad=True)
    apply_gate(a, "clamp").sum().backward()
    assert a.grad.tolist() == [0.0, 1.0, 1.0, 1.0, 0.0]
    assert gate_derivative(a.detach(), "clamp").tolist() == a.grad.tolist()


def _count(modules):
    return sum(p.numel() for m in modules for p in m.parameters())


def test_parameter_counts_match_the_paper_shd_networks():
    """700-128-20 feed-forward without biases: LIF 92.16K, S-DGN 92.31K, DGN 184.32K (paper, SHD)."""
    lif = [torch.nn.Linear(700, 128, bias=False), torch.nn.Linear(128, 20, bias=False)]  # Linear + LIF: no neuron params
    sdgn = [DGNLinear(700, 128, shared_reversal=True), DGNLinear(128, 20, shared_reversal=True)]
    dgn = [DGNLinear(700, 128), DGNLinear(128, 20)]
    assert _count(lif) == 92_160
    assert _count(sdgn) == 92_308 and round(_count(sdgn) / 1e3, 2) == 92.31
    assert _count(dgn) == 184_320
    rec = DGNLinear(700, 128, recurrent=True)
    assert _count([rec]) == 2 * (700 * 128 + 128 * 128)
    srec = DGNLinear(700, 128, recurrent=True, shared_reversal=True)
    assert _count([srec]) == 700 * 128 + 128 * 128 + 128


def test_sdgn_weight_is_reversal_times_conductance():
    layer = DGNLinear(5, 3, recurrent=True, shared_reversal=True)
    with torch.no_grad():
        layer.reversal.copy_(torch.tensor([2.0, -1.0, 0.5]))
    torch.testing.assert_close(layer.effective_weight(), layer.reversal[:, None] * layer.conductance)
    torch.testing.assert_close(layer.effective_recurrent_weight(),
                               layer.reversal[:, None] * layer.recurrent_conductance)
    assert not hasattr(layer, "weight")


def test_detach_reset_changes_gradients_not_spikes():
    x = _spikes()
    a, b = _layer("dgn"), _layer("dgn", detach_reset=True)
    ya, yb = a(x), b(x)
    assert torch.equal(ya, yb)
    (ya * torch.arange(6.0, dtype=ya.dtype)).sum().backward()
    (yb * torch.arange(6.0, dtype=yb.dtype)).sum().backward()
    assert not torch.allclose(a.weight.grad, b.weight.grad)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_input_is_computed_in_parameter_dtype(dtype):
    layer, x = _layer("dgn_rec", dtype=torch.float32), _spikes(dtype=torch.float32)
    y = layer(x.to(dtype))
    assert y.dtype == dtype
    assert torch.equal(y.float(), layer(x))


# -- argument checks ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kw, match", [
    (dict(tau_s=0.0), "tau_s must be > 0"),
    (dict(tau_s=-1.0), "tau_s must be > 0"),
    (dict(dt=0.0), "dt must be > 0"),
    (dict(dt=-0.1), "dt must be > 0"),
    (dict(g_leak=-0.1), "g_leak must be >= 0"),
    (dict(threshold=0.0), "threshold must be > 0"),
    (dict(gate="relu"), "gate must be one of"),
    (dict(backend="cuda"), "backend must be one of"),
    (dict(surrogate="nope"), "surrogate"),
])
def test_invalid_arguments_raise_clear_errors(kw, match):
    with pytest.raises(ValueError, match=match):
        DGNLinear(4, 3, **kw)


def test_invalid_inputs_raise_clear_errors():
    layer = DGNLinear(4, 3, recurrent=True)
    with pytest.raises(ValueError, match="4 features"):
        layer(torch.zeros(5, 2, 7))
    with pytest.raises(ValueError, match=r"\[T, B, \.\.\.\]"):
        layer(torch.zeros(5, 4))
    with pytest.raises(ValueError, match=r"\[T, B, 4\]"):
        layer(torch.zeros(5, 2, 3, 4))
    with pytest.raises(TypeError, match="floating"):
        layer(torch.zeros(5, 2, 4, dtype=torch.int64))
    state = layer.init_state(torch.zeros(2, 4))
    with pytest.raises(ValueError, match="build it with init_state"):
        layer.run(torch.zeros(5, 3, 4), state)
    with pytest.raises(TypeError, match="in_features must be an integer"):
        DGNLinear(4.5, 3)
    with pytest.raises(ValueError, match="recurrent_weight and recurrent_conductance"):
        dgn_membrane(torch.zeros(2, 1, 3), torch.zeros(2, 1, 3), torch.zeros(1, 3), torch.zeros(1, 3), dt=1.0,
                     threshold=1.0, recurrent_weight=torch.zeros(3, 3))


def test_default_gate_is_the_papers_sigmoid():
    """Issue 14: φ defaults to the paper's sigmoid truncation (the clamp stays an option)."""
    assert DGNLinear(4, 3).gate == "sigmoid" and DGN(3).gate == "sigmoid"
    assert DGNLinear(4, 3, gate="clamp").gate == "clamp"
    layer = DGNLinear(4, 3, recurrent=True)
    a = torch.linspace(-3, 3, 7)
    torch.testing.assert_close(layer.gate_values((1.0 - a) / layer.dt), torch.sigmoid(a))


def test_spiking_mlp_with_a_dgn_readout_is_the_papers_184k_network():
    """700-128-20 DGN with a DGN readout layer (output="spiking"): 184,320 parameters as in the paper; the
    readout is applied to the output layer's spikes."""
    from dendrix.models import SpikingMLP, count_parameters

    torch.manual_seed(0)
    net = SpikingMLP(700, 20, (128,), kind="dgn", output="spiking")
    assert isinstance(net.output, DGNLinear) and net.output.gate == "sigmoid"
    assert count_parameters(net) == 184_320
    assert count_parameters(SpikingMLP(700, 20, (128,), kind="sdgn", output="spiking")) == 92_308
    assert count_parameters(SpikingMLP(700, 20, (128,), kind="dgn")) == 181_780  # Linear readout with bias
    x = (torch.rand(12, 3, 700) < 0.2).float()
    per_step = net(x, per_step=True)
    assert per_step.shape == (12, 3, 20) and set(per_step.unique().tolist()) <= {0.0, 1.0}
    torch.testing.assert_close(net(x), per_step.mean(0))
    with pytest.raises(ValueError, match="output"):
        SpikingMLP(700, 20, (128,), kind="dgn", output="dgn")
