"""The fused LIF engine (dendrix.ops.lif) against its plain per-step reference: forward, gradients, gradcheck."""

import itertools

import pytest
import torch

import dendrix.ops.common as ops_common
from dendrix.ops.lif import leaky_sequence, lif_sequence
from dendrix.ops.lif.fused import LeakyFunction
from dendrix.surrogate import get_surrogate
from surrogate_support import ZeroSurrogate

T, B, N = 23, 3, 5


@pytest.fixture(params=[32767, 2 * B * N + 1], ids=["one-chunk", "many-chunks"])
def chunking(request, monkeypatch):
    """Run every check with the whole sequence in one chunk and split into chunks of two steps."""
    monkeypatch.setattr(ops_common, "CHUNK_ELEMENTS", request.param)
    return request.param


@pytest.fixture
def many_chunks(monkeypatch):
    """Chunks of two steps, so every chunk boundary of the forward and backward loops is exercised."""
    monkeypatch.setattr(ops_common, "CHUNK_ELEMENTS", 2 * B * N + 1)


def _weights(*tensors, seed=5):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(t.shape, generator=g, dtype=t.dtype) for t in tensors]


def _run(backend, x, v0, decay, **kw):
    spikes, h, v_last = lif_sequence(x, v0, decay, backend=backend, **kw)
    w = _weights(spikes, h, v_last)
    loss = (spikes * w[0]).sum() + (h * w[1]).sum() + (v_last * w[2]).sum()
    leaves = [t for t in (x, v0, decay) if isinstance(t, torch.Tensor) and t.requires_grad]
    return (spikes, h, v_last), torch.autograd.grad(loss, leaves)


CASES = list(itertools.product([0.0, None, -0.3], [True, False], [False, True]))


@pytest.mark.parametrize("v_reset,decay_input,detach_reset", CASES)
@pytest.mark.parametrize("decay_kind", ["float", "scalar-tensor", "per-channel"])
def test_fused_equals_reference_forward_and_gradients(many_chunks, v_reset, decay_input, detach_reset, decay_kind):
    torch.manual_seed(0)
    x = (1.5 * torch.randn(T, B, N, dtype=torch.float64) + 0.5).requires_grad_()
    rest = 0.0 if v_reset is None else v_reset
    v0 = (rest + 0.3 * torch.randn(B, N, dtype=torch.float64)).requires_grad_()
    decay = {"float": 0.4,
             "scalar-tensor": torch.tensor(0.4, dtype=torch.float64, requires_grad=True),
             "per-channel": torch.linspace(0.2, 0.8, N, dtype=torch.float64).requires_grad_()}[decay_kind]
    kw = dict(v_threshold=1.0, v_reset=v_reset, decay_input=decay_input, detach_reset=detach_reset)
    (s_f, h_f, v_f), g_f = _run("fused", x, v0, decay, **kw)
    (s_r, h_r, v_r), g_r = _run("reference", x, v0, decay, **kw)
    assert 0 < s_f.mean() < 1
    assert torch.equal(s_f, s_r)
    torch.testing.assert_close(h_f, h_r, rtol=0, atol=1e-12)
    torch.testing.assert_close(v_f, v_r, rtol=0, atol=1e-12)
    for a, b in zip(g_f, g_r):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("name", ["atan", "sigmoid", "triangle", "double_gaussian", "rectangular", "fast_sigmoid"])
def test_every_surrogate_gives_reference_gradients(many_chunks, name):
    torch.manual_seed(1)
    x = (1.2 * torch.randn(T, B, N, dtype=torch.float64) + 0.6).requires_grad_()
    v0 = torch.zeros(B, N, dtype=torch.float64, requires_grad=True)
    (s_f, _, _), g_f = _run("fused", x, v0, 0.5, surrogate=name)
    (s_r, _, _), g_r = _run("reference", x, v0, 0.5, surrogate=name)
    assert torch.equal(s_f, s_r)
    for a, b in zip(g_f, g_r):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-10)


def test_in_place_surrogate_derivative_matches_definition():
    x = torch.linspace(-2, 2, 401, dtype=torch.float64)
    for name in ["atan", "sigmoid", "triangle", "double_gaussian", "rectangular", "fast_sigmoid"]:
        sg = get_surrogate(name)
        got = sg.derivative_(x.clone())
        torch.testing.assert_close(got, sg.derivative(x), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("v_reset", [0.0, None])
def test_leaky_sequence_with_learnable_leak_gain_bias(chunking, v_reset):
    torch.manual_seed(2)
    x = (torch.randn(T, B, N, dtype=torch.float64) + 0.5).requires_grad_()
    v0 = torch.zeros(B, N, dtype=torch.float64, requires_grad=True)
    leak = torch.linspace(0.3, 0.9, N, dtype=torch.float64).requires_grad_()
    gain = torch.tensor(0.7, dtype=torch.float64, requires_grad=True)
    bias = torch.full((N,), 0.05, dtype=torch.float64, requires_grad=True)
    results = []
    for backend in ("fused", "reference"):
        s, h, v = leaky_sequence(x, v0, leak, gain, bias, v_reset=v_reset, backend=backend)
        w = _weights(s, h, v)
        loss = (s * w[0]).sum() + (h * w[1]).sum() + (v * w[2]).sum()
        results.append((s, h, torch.autograd.grad(loss, [x, v0, leak, gain, bias])))
    (s_f, h_f, g_f), (s_r, h_r, g_r) = results
    assert torch.equal(s_f, s_r)
    torch.testing.assert_close(h_f, h_r, rtol=0, atol=1e-12)
    for a, b in zip(g_f, g_r):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("v_reset", [0.0, -0.2, None])
@pytest.mark.parametrize("detach_reset", [False, True])
def test_gradcheck_fused_function(chunking, v_reset, detach_reset):
    torch.manual_seed(3)
    t, b, n = 6, 2, 3
    x = (torch.randn(t, b, n, dtype=torch.float64) + 0.8).requires_grad_()
    v0 = (0.2 * torch.randn(b, n, dtype=torch.float64)).requires_grad_()
    leak = torch.tensor([0.5, 0.7, 0.9], dtype=torch.float64, requires_grad=True)
    gain = torch.tensor(0.6, dtype=torch.float64, requires_grad=True)
    bias = torch.tensor([0.1, 0.0, -0.1], dtype=torch.float64, requires_grad=True)
    surrogate = ZeroSurrogate()
    _, h, _ = LeakyFunction.apply(x, v0, leak, gain, bias, 1.0, v_reset, detach_reset, surrogate)
    assert (h - 1.0).abs().min() > 1e-3, "test inputs too close to the threshold for finite differences"
    assert 0 < (h >= 1.0).double().mean() < 1

    def fn(*args):
        return LeakyFunction.apply(*args, 1.0, v_reset, detach_reset, surrogate)

    assert torch.autograd.gradcheck(fn, (x, v0, leak, gain, bias), eps=1e-6, atol=1e-7)


def test_saves_only_the_potential_for_backward():
    x = torch.randn(50, 4, 8, requires_grad=True)
    saved = {}

    def pack(tensor):
        saved[tensor.untyped_storage().data_ptr()] = tensor.untyped_storage().nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        spikes, h, _ = lif_sequence(x, torch.zeros(4, 8), 0.5)
    assert sum(saved.values()) == h.numel() * h.element_size()
    spikes.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_inputs_integrate_in_float32(dtype):
    torch.manual_seed(4)
    x = (torch.randn(T, B, N) + 0.5).to(dtype)
    spikes, h, v_last = lif_sequence(x, torch.zeros(B, N), 0.5)
    ref_spikes, ref_h, _ = lif_sequence(x.float(), torch.zeros(B, N), 0.5)
    assert spikes.dtype == dtype and h.dtype == torch.float32 and v_last.dtype == torch.float32
    assert torch.equal(spikes.float(), ref_spikes)
    torch.testing.assert_close(h, ref_h)
    xg = x.clone().requires_grad_()
    lif_sequence(xg, torch.zeros(B, N), 0.5)[0].sum().backward()
    assert xg.grad.dtype == dtype and torch.isfinite(xg.grad.float()).all()


def test_invalid_arguments_are_named():
    x = torch.randn(4, 2, 3)
    with pytest.raises(ValueError, match="v0"):
        lif_sequence(x, torch.zeros(2, 4), 0.5)
    with pytest.raises(ValueError, match="decay"):
        lif_sequence(x, torch.zeros(2, 3), 1.5)
    with pytest.raises(ValueError, match="decay"):
        lif_sequence(x, torch.zeros(2, 3), 0.0)
    with pytest.raises(ValueError, match="backend"):
        lif_sequence(x, torch.zeros(2, 3), 0.5, backend="cuda-magic")
    with pytest.raises(ValueError, match="leak"):
        leaky_sequence(x, torch.zeros(2, 3), torch.ones(4))
    with pytest.raises(TypeError, match="floating"):
        lif_sequence(x.long(), torch.zeros(2, 3), 0.5)
    with pytest.raises(ValueError, match="T >= 1"):
        lif_sequence(x[:0], torch.zeros(2, 3), 0.5)
