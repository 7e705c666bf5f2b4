"""The Triton LIF kernels (dendrix.ops.lif.triton) against the plain per-step reference: forward, gradients.

Where it runs (CUDA, or CPU under ``TRITON_INTERPRET=1``): ``tests/triton_support.py``.
"""

import itertools

import pytest
import torch

import dendrix.ops.lif as lif_ops
from dendrix.ops.lif import leaky_sequence, lif_sequence, resolve_backend
from dendrix.surrogate import Rectangular, get_surrogate
from triton_support import CPU_AUTO, DEVICE, ON_CUDA, RUNS_KERNELS, needs_kernels, random_like, UnsupportedSurrogate


T, B, N = 23, 3, 5
SURROGATES = ["atan", "sigmoid", "triangle", "double_gaussian", "rectangular", "fast_sigmoid"]


def _loss(spikes, h, v_last):
    w = random_like(spikes, h, v_last)
    return (spikes * w[0]).sum() + (h * w[1]).sum() + (v_last * w[2]).sum()


def _lif(backend, x, v0, decay, **kw):
    spikes, h, v_last = lif_sequence(x, v0, decay, backend=backend, **kw)
    leaves = [t for t in (x, v0, decay) if isinstance(t, torch.Tensor) and t.requires_grad]
    return (spikes, h, v_last), torch.autograd.grad(_loss(spikes, h, v_last), leaves)


def _assert_same(out_t, grads_t, out_r, grads_r, *, atol=1e-12, grad_rtol=1e-9, grad_atol=1e-10):
    (s_t, h_t, v_t), (s_r, h_r, v_r) = out_t, out_r
    assert 0 < s_r.float().mean() < 1, "no or only spikes: the comparison would be vacuous"
    assert torch.equal(s_t, s_r)
    torch.testing.assert_close(h_t, h_r, rtol=0, atol=atol)
    torch.testing.assert_close(v_t, v_r, rtol=0, atol=atol)
    assert len(grads_t) == len(grads_r)
    for a, b in zip(grads_t, grads_r):
        assert a.abs().max() > 0
        torch.testing.assert_close(a, b, rtol=grad_rtol, atol=grad_atol)


CASES = list(itertools.product([0.0, None, -0.3], [True, False], [False, True]))


@needs_kernels
@pytest.mark.parametrize("v_reset,decay_input,detach_reset", CASES)
@pytest.mark.parametrize("decay_kind", ["float", "scalar-tensor", "per-channel"])
def test_triton_equals_reference_forward_and_gradients(v_reset, decay_input, detach_reset, decay_kind):
    torch.manual_seed(0)
    f64 = dict(dtype=torch.float64, device=DEVICE)
    x = (1.5 * torch.randn(T, B, N, **f64) + 0.5).requires_grad_()
    rest = 0.0 if v_reset is None else v_reset
    v0 = (rest + 0.3 * torch.randn(B, N, **f64)).requires_grad_()
    decay = {"float": 0.4,
             "scalar-tensor": torch.tensor(0.4, **f64, requires_grad=True),
             "per-channel": torch.linspace(0.2, 0.8, N, **f64).requires_grad_()}[decay_kind]
    kw = dict(v_threshold=1.0, v_reset=v_reset, decay_input=decay_input, detach_reset=detach_reset)
    _assert_same(*_lif("triton", x, v0, decay, **kw), *_lif("reference", x, v0, decay, **kw))


@needs_kernels
@pytest.mark.parametrize("name", SURROGATES)
@pytest.mark.parametrize("v_reset", [0.0, None])
def test_every_surrogate_gives_reference_gradients(name, v_reset):
    torch.manual_seed(1)
    x = (1.2 * torch.randn(T, B, N, dtype=torch.float64, device=DEVICE) + 0.6).requires_grad_()
    v0 = torch.zeros(B, N, dtype=torch.float64, device=DEVICE, requires_grad=True)
    kw = dict(surrogate=name, v_reset=v_reset)
    _assert_same(*_lif("triton", x, v0, 0.5, **kw), *_lif("reference", x, v0, 0.5, **kw))


@needs_kernels
def test_surrogate_parameters_reach_the_kernel():
    torch.manual_seed(6)
    x = (1.2 * torch.randn(T, B, N, dtype=torch.float64, device=DEVICE) + 0.6).requires_grad_()
    v0 = torch.zeros(B, N, dtype=torch.float64, device=DEVICE)
    for sg in [get_surrogate("atan", alpha=5.0), get_surrogate("sigmoid", alpha=1.5),
               get_surrogate("double_gaussian", sigma=0.3, h=0.3, s=3.0), Rectangular(0.4)]:
        _assert_same(*_lif("triton", x, v0, 0.5, surrogate=sg), *_lif("reference", x, v0, 0.5, surrogate=sg))


@needs_kernels
@pytest.mark.parametrize("v_reset", [0.0, None])
@pytest.mark.parametrize("detach_reset", [False, True])
def test_learnable_leak_gain_bias_like_dalif(v_reset, detach_reset):
    """Per-neuron leak (reduced over the batch), scalar gain, per-channel bias, all requiring grad."""
    torch.manual_seed(2)
    f64 = dict(dtype=torch.float64, device=DEVICE)
    x = (torch.randn(T, B, N, **f64) + 0.5).requires_grad_()
    v0 = (0.2 * torch.randn(B, N, **f64)).requires_grad_()
    leak = torch.linspace(0.3, 0.9, N, **f64).requires_grad_()
    gain = torch.tensor(0.7, **f64, requires_grad=True)
    bias = torch.full((N,), 0.05, **f64, requires_grad=True)
    results = []
    for backend in ("triton", "reference"):
        out = leaky_sequence(x, v0, leak, gain, bias, v_reset=v_reset, detach_reset=detach_reset, backend=backend)
        results.append((out, torch.autograd.grad(_loss(*out), [x, v0, leak, gain, bias])))
    _assert_same(*results[0], *results[1])


@needs_kernels
def test_only_some_outputs_used_and_no_input_gradient():
    """Backward with missing output gradients (None) and only parameter gradients requested."""
    torch.manual_seed(3)
    f64 = dict(dtype=torch.float64, device=DEVICE)
    x = torch.randn(T, B, N, **f64) + 0.5
    v0 = torch.zeros(B, N, **f64)
    leak = torch.full((B, N), 0.6, **f64, requires_grad=True)
    gain = torch.linspace(0.5, 1.5, N, **f64).requires_grad_()
    grads = []
    for backend in ("triton", "reference"):
        spikes, _, _ = leaky_sequence(x, v0, leak, gain, 0.0, backend=backend)
        grads.append(torch.autograd.grad((spikes * random_like(spikes)[0]).sum(), [leak, gain]))
    for a, b in zip(*grads):
        assert a.abs().max() > 0
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-10)


@needs_kernels
def test_float32_and_half_inputs():
    """float32 agrees with a float64 reference to float32 rounding; half inputs integrate in float32."""
    torch.manual_seed(4)
    t, b, n = 40, 4, 33
    x64 = 1.5 * torch.randn(t, b, n, dtype=torch.float64) + 0.5
    _, h_ref, _ = lif_sequence(x64, torch.zeros(b, n, dtype=torch.float64), 0.5, backend="reference")
    assert (h_ref - 1.0).abs().min() > 1e-4, "inputs too close to the threshold for a float32 comparison"
    x = x64.float().to(DEVICE).requires_grad_()
    v0 = torch.zeros(b, n, device=DEVICE)
    (s_t, h_t, v_t), (g_t,) = _lif("triton", x, v0, 0.5)
    (s_r, h_r, v_r), (g_r,) = _lif("reference", x.detach().double().requires_grad_(), v0.double(), 0.5)
    assert s_t.dtype == torch.float32 and torch.equal(s_t.double(), s_r)
    torch.testing.assert_close(h_t.double(), h_r, rtol=0, atol=1e-5)
    torch.testing.assert_close(g_t.double(), g_r, rtol=1e-4, atol=1e-5)
    for dtype in (torch.float16, torch.bfloat16):
        xh = x.detach().to(dtype).requires_grad_()
        spikes, h, v_last = lif_sequence(xh, v0, 0.5, backend="triton")
        s32, h32, _ = lif_sequence(xh.detach().float(), v0, 0.5, backend="triton")
        assert spikes.dtype == dtype and h.dtype == torch.float32 and v_last.dtype == torch.float32
        assert torch.equal(spikes.float(), s32) and torch.equal(h, h32)
        spikes.sum().backward()
        assert xh.grad.dtype == dtype and torch.isfinite(xh.grad.float()).all() and xh.grad.abs().max() > 0


@needs_kernels
def test_more_neurons_than_one_block_and_odd_shapes():
    """Several programs (blocks of neurons), a partial last block, a 4-D step shape and T = 1."""
    torch.manual_seed(7)
    for shape in [(9, 3, 7, 13), (1, 2, 200)]:
        x = (torch.randn(shape, dtype=torch.float64, device=DEVICE) + 0.6).requires_grad_()
        v0 = (0.2 * torch.randn(shape[1:], dtype=torch.float64, device=DEVICE) + 0.5).requires_grad_()
        _assert_same(*_lif("triton", x, v0, 0.5), *_lif("reference", x, v0, 0.5))


@needs_kernels
def test_non_contiguous_input():
    torch.manual_seed(8)
    x = (torch.randn(B, T, N, dtype=torch.float64, device=DEVICE) + 0.6).transpose(0, 1).requires_grad_()
    v0 = torch.zeros(B, N, dtype=torch.float64, device=DEVICE, requires_grad=True)
    _assert_same(*_lif("triton", x, v0, 0.5), *_lif("reference", x, v0, 0.5))


@needs_kernels
@pytest.mark.parametrize("v_reset", [0.0, -0.2, None])
@pytest.mark.parametrize("detach_reset", [False, True])
def test_gradcheck_triton_function(v_reset, detach_reset):
    """A rectangular surrogate narrower than the distance of every H to the threshold has σ' = 0 at all H, so
    the backward is the exact derivative of the piecewise-smooth forward and gradcheck can verify it."""
    from dendrix.ops.lif.triton import LeakyTritonFunction

    torch.manual_seed(3)
    f64 = dict(dtype=torch.float64, device=DEVICE)
    t, b, n = 6, 2, 3
    x = (torch.randn(t, b, n, **f64) + 0.8).requires_grad_()
    v0 = (0.2 * torch.randn(b, n, **f64)).requires_grad_()
    leak = torch.tensor([0.5, 0.7, 0.9], **f64, requires_grad=True)
    gain = torch.tensor(0.6, **f64, requires_grad=True)
    bias = torch.tensor([0.1, 0.0, -0.1], **f64, requires_grad=True)
    surrogate = Rectangular(1e-3)
    _, h, _ = LeakyTritonFunction.apply(x, v0, leak, gain, bias, 1.0, v_reset, detach_reset, surrogate)
    assert (h - 1.0).abs().min() > 1e-3, "test inputs too close to the threshold for finite differences"
    assert 0 < (h >= 1.0).double().mean() < 1

    def fn(*args):
        return LeakyTritonFunction.apply(*args, 1.0, v_reset, detach_reset, surrogate)

    # Full check on the GPU; the CPU interpreter is slow, so it checks random projections there.
    assert torch.autograd.gradcheck(fn, (x, v0, leak, gain, bias), eps=1e-6, atol=1e-7, fast_mode=not ON_CUDA)


@needs_kernels
def test_saves_only_the_potential_for_backward():
    x = torch.randn(50, 4, 8, device=DEVICE, requires_grad=True)
    saved = {}

    def pack(tensor):
        saved[tensor.untyped_storage().data_ptr()] = tensor.untyped_storage().nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        spikes, h, _ = lif_sequence(x, torch.zeros(4, 8, device=DEVICE), 0.5, backend="triton")
    assert sum(saved.values()) == h.numel() * h.element_size()
    spikes.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


@needs_kernels
def test_neuron_modules_run_on_triton():
    """LIF, PLIF (learnable decay) and DA-LIF (learnable leak and gain) through the Triton backend."""
    from dendrix.neurons import DALIF, LIF, PLIF

    torch.manual_seed(9)
    x = 1.5 * torch.randn(T, B, N, dtype=torch.float64, device=DEVICE) + 0.6
    for make in (lambda b: LIF(backend=b), lambda b: PLIF(backend=b), lambda b: DALIF(backend=b)):
        results = []
        for backend in ("triton", "reference"):
            neuron = make(backend).to(device=DEVICE, dtype=torch.float64)
            xg = x.clone().requires_grad_()
            y = neuron(xg)
            params = [p for p in neuron.parameters() if p.requires_grad]
            grads = torch.autograd.grad((y * random_like(y)[0]).sum(), [xg, *params])
            results.append((y, grads))
        (y_t, g_t), (y_r, g_r) = results
        assert 0 < y_r.mean() < 1 and torch.equal(y_t, y_r)
        for a, b in zip(g_t, g_r):
            torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-10)


# ---- dispatch: run everywhere (no GPU, with or without triton) ----

def test_auto_never_picks_triton_on_cpu_and_forced_triton_never_falls_back_silently():
    x, v0 = torch.randn(4, 2, 3), torch.zeros(2, 3)
    assert resolve_backend("auto", x, v0, get_surrogate("atan")) == CPU_AUTO  # numba where it imports, else fused
    assert resolve_backend("fused", x, v0, get_surrogate("atan")) == "fused"
    if RUNS_KERNELS:
        assert resolve_backend("triton", x.to(DEVICE), v0.to(DEVICE), get_surrogate("atan")) == "triton"
    else:  # no triton, or CPU tensors without the interpreter: a clear error, not the fused engine
        with pytest.raises(RuntimeError, match="triton"):
            lif_sequence(x, v0, 0.5, backend="triton")


@needs_kernels
def test_unsupported_surrogate_falls_back_in_auto_and_fails_when_forced():
    x, v0 = torch.randn(4, 2, 3, device=DEVICE), torch.zeros(2, 3, device=DEVICE)
    odd = UnsupportedSurrogate()
    assert resolve_backend("auto", x, v0, odd) == "fused"
    with pytest.raises(RuntimeError, match="surrogate"):
        lif_sequence(x, v0, 0.5, surrogate=odd, backend="triton")


@pytest.mark.skipif(not ON_CUDA, reason="needs CUDA + triton")
def test_auto_picks_triton_on_cuda():
    x, v0 = torch.randn(4, 2, 3, device="cuda"), torch.zeros(2, 3, device="cuda")
    assert resolve_backend("auto", x, v0, get_surrogate("atan")) == "triton"
    assert resolve_backend("auto", x.double(), v0.double(), get_surrogate("sigmoid")) == "triton"
    out_auto = lif_sequence(x, v0, 0.5)
    out_triton = lif_sequence(x, v0, 0.5, backend="triton")
    for a, b in zip(out_auto, out_triton):
        assert torch.equal(a, b)
