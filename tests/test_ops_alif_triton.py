"""The Triton ALIF kernels (dendrix.ops.alif.triton) against the plain per-step reference: forward, gradients.

Where it runs (CUDA, or CPU under ``TRITON_INTERPRET=1``): ``tests/triton_support.py``.
"""

import pytest
import torch

import dendrix.ops.alif as alif_ops
from dendrix.ops.alif import alif_sequence, resolve_backend
from dendrix.surrogate import Rectangular, get_surrogate
from triton_support import CPU_AUTO, DEVICE, ON_CUDA, RUNS_KERNELS, needs_kernels, random_like, UnsupportedSurrogate


T, B, N = 23, 3, 5
F64 = dict(dtype=torch.float64, device=DEVICE)
SURROGATES = ["double_gaussian", "atan", "sigmoid", "triangle", "rectangular", "fast_sigmoid"]


def _inputs(seed=0, shape=(T, B, N)):
    g = torch.Generator().manual_seed(seed)
    x = 0.6 * torch.randn(shape, generator=g, dtype=torch.float64) + 0.15
    u0 = 0.02 * torch.randn(shape[1:], generator=g, dtype=torch.float64)
    a0 = 0.1 * torch.rand(shape[1:], generator=g, dtype=torch.float64)
    s0 = (torch.rand(shape[1:], generator=g, dtype=torch.float64) < 0.3).double()
    return [t.to(DEVICE).requires_grad_() for t in (x, u0, a0, s0)]


def _coefficients(kind):
    """alpha, rho requiring grad: one per layer (0-d), per channel [N], or per neuron [B, N]."""
    if kind == "layer":
        return (torch.tensor(0.9, **F64, requires_grad=True), torch.tensor(0.97, **F64, requires_grad=True))
    if kind == "channel":
        return (torch.linspace(0.8, 0.95, N, **F64).requires_grad_(),
                torch.linspace(0.9, 0.99, N, **F64).requires_grad_())
    return (torch.linspace(0.8, 0.95, B * N, **F64).reshape(B, N).requires_grad_(),
            torch.full((B, N), 0.95, **F64, requires_grad=True))


def _run(backend, x, u0, a0, s0, alpha, rho, surrogate="double_gaussian", b0=0.01, beta=1.8, outputs=(0, 1, 2)):
    out = alif_sequence(x, u0, a0, s0, alpha, rho, b0, beta, surrogate, backend)
    w = random_like(*out)
    loss = sum((out[i] * w[i]).sum() for i in outputs)
    leaves = [t for t in (x, u0, a0, s0, alpha, rho) if t.requires_grad]
    return out, torch.autograd.grad(loss, leaves)


def _assert_same(out_t, grads_t, out_r, grads_r, *, atol=1e-12, grad_rtol=1e-9, grad_atol=1e-10):
    (s_t, u_t, a_t), (s_r, u_r, a_r) = out_t, out_r
    assert 0 < s_r.float().mean() < 1, "no or only spikes: the comparison would be vacuous"
    assert torch.equal(s_t, s_r)
    torch.testing.assert_close(u_t, u_r, rtol=0, atol=atol)
    torch.testing.assert_close(a_t, a_r, rtol=0, atol=atol)
    assert len(grads_t) == len(grads_r) > 0
    for a, b in zip(grads_t, grads_r):
        assert a.abs().max() > 0
        torch.testing.assert_close(a, b, rtol=grad_rtol, atol=grad_atol)


@needs_kernels
@pytest.mark.parametrize("surrogate", SURROGATES)
@pytest.mark.parametrize("kind", ["layer", "channel", "neuron"])
def test_triton_equals_reference_forward_and_all_gradients(surrogate, kind):
    args = [*_inputs(1), *_coefficients(kind)]
    _assert_same(*_run("triton", *args, surrogate=surrogate), *_run("reference", *args, surrogate=surrogate))


@needs_kernels
def test_surrogate_parameters_b0_and_beta_reach_the_kernel():
    args = [*_inputs(2), *_coefficients("channel")]
    for sg, b0, beta in [(get_surrogate("double_gaussian", sigma=0.3, h=0.3, s=3.0), 0.05, 1.0),
                         (get_surrogate("atan", alpha=5.0), 0.02, 0.0), (Rectangular(0.4), 0.01, 2.5)]:
        _assert_same(*_run("triton", *args, surrogate=sg, b0=b0, beta=beta),
                     *_run("reference", *args, surrogate=sg, b0=b0, beta=beta))


@needs_kernels
@pytest.mark.parametrize("outputs", [(0,), (1,), (2,), (0, 2)])
def test_only_some_outputs_used(outputs):
    """Missing output gradients (None) in backward, incl. only the adaptation state (streaming)."""
    args = [*_inputs(3), *_coefficients("channel")]
    out_t, g_t = _run("triton", *args, outputs=outputs)
    out_r, g_r = _run("reference", *args, outputs=outputs)
    assert torch.equal(out_t[0], out_r[0])
    for a, b in zip(g_t, g_r):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-10)
    assert max(g.abs().max() for g in g_t) > 0


@needs_kernels
def test_only_parameter_gradients_and_x_not_saved_without_alpha_gradient():
    x, u0, a0, s0 = (t.detach() for t in _inputs(4))
    alpha, rho = _coefficients("channel")
    grads = [_run(backend, x, u0, a0, s0, alpha, rho)[1] for backend in ("triton", "reference")]
    for a, b in zip(*grads):
        assert a.abs().max() > 0
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-10)

    saved = {}

    def pack(tensor):
        saved[tensor.untyped_storage().data_ptr()] = tensor.untyped_storage().nbytes()
        return tensor

    xg = x.clone().requires_grad_()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        spikes, u, _ = alif_sequence(xg, u0, a0, s0, alpha.detach(), rho, backend="triton")
    # U and a (two [T, B, N] tensors) plus one-step state and coefficients; no X.
    assert 2 * u.numel() * u.element_size() <= sum(saved.values()) < 3 * u.numel() * u.element_size()
    (spikes * random_like(spikes)[0]).sum().backward()
    assert xg.grad.abs().sum() > 0


def _threshold_margin(spikes, u, a0, s0, rho, b0=0.01, beta=1.8):
    """min |U[t] - B[t]| of a run, with the trace a[t] rebuilt from the spikes."""
    a, s, margin = a0, s0, float("inf")
    for s_t, u_t in zip(spikes.unbind(0), u.unbind(0)):
        a = rho * a + (1 - rho) * s
        margin = min(margin, float((u_t - (b0 + beta * a)).abs().min()))
        s = s_t
    return margin


@needs_kernels
def test_float32_and_half_inputs():
    """float32 agrees with a float64 reference to float32 rounding; half inputs integrate in float32."""
    x, u0, a0, s0 = (t.detach() for t in _inputs(5, shape=(40, 4, 9)))
    alpha, rho = torch.tensor(0.9, **F64), torch.tensor(0.97, **F64)
    (s_r, u_r, _), (g_r,) = _run("reference", x.clone().requires_grad_(), u0, a0, s0, alpha, rho)
    margin = _threshold_margin(s_r.detach(), u_r.detach(), a0, s0, 0.97)
    assert margin > 1e-4, "inputs too close to the threshold for a float32 comparison"
    x32 = x.float().requires_grad_()
    state32 = [t.float() for t in (u0, a0, s0)]
    (s_t, u_t, _), (g_t,) = _run("triton", x32, *state32, alpha.float(), rho.float())
    assert s_t.dtype == torch.float32 and torch.equal(s_t.double(), s_r)
    torch.testing.assert_close(u_t.double(), u_r, rtol=0, atol=1e-5)
    torch.testing.assert_close(g_t.double(), g_r, rtol=1e-4, atol=1e-5)
    for dtype in (torch.float16, torch.bfloat16):
        xh = x32.detach().to(dtype).requires_grad_()
        spikes, u, a_last = alif_sequence(xh, *state32, alpha.float(), rho.float(), backend="triton")
        s32, u32, _ = alif_sequence(xh.detach().float(), *state32, alpha.float(), rho.float(), backend="triton")
        assert spikes.dtype == dtype and u.dtype == torch.float32 and a_last.dtype == torch.float32
        assert torch.equal(spikes.float(), s32) and torch.equal(u, u32)
        spikes.sum().backward()
        assert xh.grad.dtype == dtype and torch.isfinite(xh.grad.float()).all() and xh.grad.abs().max() > 0


@needs_kernels
def test_more_neurons_than_one_block_odd_shapes_and_non_contiguous():
    """Several programs, a partial last block, a 4-D step shape, T = 1, and a transposed input."""
    for shape in [(9, 3, 7, 13), (1, 2, 200)]:
        x, u0, a0, s0 = _inputs(6, shape)
        x = (x.detach() + 0.6).requires_grad_()
        alpha = torch.linspace(0.8, 0.95, shape[-1], **F64).requires_grad_()
        rho = torch.tensor(0.9, **F64, requires_grad=True)
        args = (x, u0, a0, s0, alpha, rho)
        _assert_same(*_run("triton", *args), *_run("reference", *args))
    x, u0, a0, s0 = _inputs(7)
    x_bt = x.detach().transpose(0, 1).contiguous()          # [B, T, N] in memory
    args = (x_bt.transpose(0, 1).requires_grad_(), u0, a0, s0, *_coefficients("channel"))
    assert not args[0].is_contiguous()
    _assert_same(*_run("triton", *args), *_run("reference", *args))


@needs_kernels
def test_gradcheck_triton_function():
    """A rectangular surrogate narrower than every |U - B| has σ' = 0 at all steps, so the backward is the exact
    derivative of the piecewise-smooth forward and gradcheck can verify it."""
    from dendrix.ops.alif.triton import ALIFTritonFunction

    torch.manual_seed(5)
    t, b, n = 7, 2, 3
    x = (0.5 * torch.randn(t, b, n, **F64) + 0.1).requires_grad_()
    u0 = (0.02 * torch.randn(b, n, **F64)).requires_grad_()
    a0 = (0.1 * torch.rand(b, n, **F64)).requires_grad_()
    s0 = torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]], **F64, requires_grad=True)
    alpha = torch.tensor([0.8, 0.9, 0.95], **F64, requires_grad=True)
    rho = torch.tensor(0.9, **F64, requires_grad=True)
    surrogate = Rectangular(1e-4)
    spikes, u, a = ALIFTritonFunction.apply(x, u0, a0, s0, alpha, rho, 0.01, 1.8, surrogate)
    assert 0 < spikes.mean() < 1
    assert (u - (0.01 + 1.8 * a)).abs().min() > 1e-4, "inputs too close to the threshold for finite differences"

    def fn(*args):
        return ALIFTritonFunction.apply(*args, 0.01, 1.8, surrogate)

    # Full check on the GPU; the CPU interpreter is slow, so it checks random projections there.
    assert torch.autograd.gradcheck(fn, (x, u0, a0, s0, alpha, rho), eps=1e-7, atol=1e-6, fast_mode=not ON_CUDA)


@needs_kernels
@pytest.mark.parametrize("channels", [None, N])
def test_alif_neuron_on_triton_equals_reference(channels):
    from dendrix.neurons import ALIF

    x = (0.6 * torch.randn(T, B, N, generator=torch.Generator().manual_seed(11), dtype=torch.float64) + 0.15).to(DEVICE)
    results = []
    for backend in ("triton", "reference"):
        torch.manual_seed(0)
        neuron = ALIF(channels, tau_m=5.0, tau_adp=50.0, backend=backend).to(**F64)
        xg = x.clone().requires_grad_()
        y = neuron(xg)
        grads = torch.autograd.grad((y * random_like(y)[0]).sum(), [xg, neuron.tau_m, neuron.tau_adp])
        results.append((y, grads))
    (y_t, g_t), (y_r, g_r) = results
    assert 0 < y_r.mean() < 1 and torch.equal(y_t, y_r)
    for a, b in zip(g_t, g_r):
        assert a.abs().max() > 0
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-10)


# ---- dispatch: run everywhere (no GPU, with or without triton) ----

def test_auto_never_picks_triton_on_cpu_and_forced_triton_never_falls_back_silently():
    x, u0 = torch.randn(4, 2, 3), torch.zeros(2, 3)
    sg = get_surrogate("double_gaussian")
    assert resolve_backend("auto", x, u0, sg) == CPU_AUTO  # numba where it imports, else fused
    assert resolve_backend("fused", x, u0, sg) == "fused"
    if RUNS_KERNELS:
        assert resolve_backend("triton", x.to(DEVICE), u0.to(DEVICE), sg) == "triton"
    else:  # no triton, or CPU tensors without the interpreter: a clear error, not the fused engine
        with pytest.raises(RuntimeError, match="triton"):
            alif_sequence(x, u0, u0, u0, 0.9, 0.97, backend="triton")


@needs_kernels
def test_unsupported_surrogate_falls_back_in_auto_and_fails_when_forced():
    x, u0 = torch.randn(4, 2, 3, device=DEVICE), torch.zeros(2, 3, device=DEVICE)
    assert resolve_backend("auto", x, u0, UnsupportedSurrogate()) == "fused"
    with pytest.raises(RuntimeError, match="surrogate"):
        alif_sequence(x, u0, u0, u0, 0.9, 0.97, surrogate=UnsupportedSurrogate(), backend="triton")


@pytest.mark.skipif(not ON_CUDA, reason="needs CUDA + triton")
def test_auto_picks_triton_on_cuda():
    x, u0 = torch.randn(4, 2, 3, device="cuda"), torch.zeros(2, 3, device="cuda")
    assert resolve_backend("auto", x, u0, get_surrogate("double_gaussian")) == "triton"
    out_auto = alif_sequence(x, u0, u0, u0, 0.9, 0.97)
    out_triton = alif_sequence(x, u0, u0, u0, 0.9, 0.97, backend="triton")
    for a, b in zip(out_auto, out_triton):
        assert torch.equal(a, b)
