"""The Triton RF/BRF kernels (dendrix.ops.rf.triton) against the plain per-step reference: forward, gradients.

Where it runs (CUDA, or CPU under ``TRITON_INTERPRET=1``): ``tests/triton_support.py``.
"""

import pytest
import torch

import dendrix.ops.rf as rf_ops
from dendrix.ops.rf import resolve_backend, rf_sequence
from dendrix.surrogate import Rectangular, get_surrogate
from triton_support import CPU_AUTO, DEVICE, ON_CUDA, RUNS_KERNELS, needs_kernels, random_like, UnsupportedSurrogate


T, B, C = 23, 3, 5
F64 = dict(dtype=torch.float64, device=DEVICE)
SURROGATES = ["double_gaussian", "atan", "sigmoid", "triangle", "rectangular", "fast_sigmoid"]


def _args(seed=0, shape=(T, B, C), kind="channel", scale=150.0):
    """[x, omega, b0, u0, v0, q0] requiring grad; omega and b0 per layer (0-d), channel [C] or neuron [B, C]."""
    g = torch.Generator().manual_seed(seed)
    coef_shape = {"layer": (), "channel": shape[-1:], "neuron": shape[1:]}[kind]
    x = scale * torch.randn(shape, generator=g, dtype=torch.float64)
    omega = 5 + 5 * torch.rand(coef_shape, generator=g, dtype=torch.float64)
    b0 = -1 - torch.rand(coef_shape, generator=g, dtype=torch.float64)
    u0, v0 = (torch.randn(shape[1:], generator=g, dtype=torch.float64) for _ in range(2))
    q0 = torch.rand(shape[1:], generator=g, dtype=torch.float64)
    return [t.to(DEVICE).requires_grad_() for t in (x, omega, b0, u0, v0, q0)]


def _run(backend, args, balanced, surrogate="double_gaussian", outputs=(0, 1, 2, 3), theta=1.0):
    out = rf_sequence(*args, balanced=balanced, surrogate=surrogate, theta=theta, backend=backend)
    w = random_like(*out)
    loss = sum((out[i] * w[i]).sum() for i in outputs)
    leaves = [t for t in args if t.requires_grad]
    return out, torch.autograd.grad(loss, leaves, allow_unused=True)


def _assert_same(out_t, grads_t, out_r, grads_r, *, atol=1e-10, grad_rtol=1e-9, grad_atol=1e-9):
    assert 0 < out_r[0].float().mean() < 1, "no or only spikes: the comparison would be vacuous"
    assert torch.equal(out_t[0], out_r[0])
    for a, b in zip(out_t[1:], out_r[1:]):
        assert a.shape == b.shape
        torch.testing.assert_close(a, b, rtol=0, atol=atol)
    assert len(grads_t) == len(grads_r) > 0
    for a, b in zip(grads_t, grads_r):
        assert (a is None) == (b is None)
        if a is not None:
            scale = float(b.detach().abs().max().clamp_min(1))
            torch.testing.assert_close(a, b, rtol=grad_rtol, atol=grad_atol * scale)


@needs_kernels
@pytest.mark.parametrize("balanced", [False, True], ids=["rf", "brf"])
@pytest.mark.parametrize("kind", ["layer", "channel", "neuron"])
def test_triton_equals_reference_forward_and_all_gradients(balanced, kind):
    args = _args(1, kind=kind)
    _assert_same(*_run("triton", args, balanced), *_run("reference", args, balanced))


@needs_kernels
@pytest.mark.parametrize("balanced", [False, True], ids=["rf", "brf"])
@pytest.mark.parametrize("surrogate", SURROGATES[1:])
def test_every_surrogate_gives_reference_gradients(balanced, surrogate):
    args = _args(2)
    _assert_same(*_run("triton", args, balanced, surrogate), *_run("reference", args, balanced, surrogate))


@needs_kernels
def test_surrogate_parameters_dt_and_theta_reach_the_kernel():
    args = _args(3)
    for sg, dt, theta in [(get_surrogate("double_gaussian", sigma=0.3, h=0.3, s=3.0), 0.02, 0.7),
                          (get_surrogate("atan", alpha=5.0), 0.005, 1.3)]:
        for balanced in (False, True):
            out = [rf_sequence(*args, dt=dt, theta=theta, balanced=balanced, surrogate=sg, backend=b)
                   for b in ("triton", "reference")]
            grads = [torch.autograd.grad((o[1] * random_like(o[1])[0]).sum() + (o[0] * 0.3).sum(), args[:5])
                     for o in out]
            _assert_same(out[0], grads[0], out[1], grads[1])


@needs_kernels
@pytest.mark.parametrize("balanced", [False, True], ids=["rf", "brf"])
@pytest.mark.parametrize("outputs", [(0,), (1,), (2,), (3,), (0, 3)])
def test_only_some_outputs_used(balanced, outputs):
    """Missing output gradients (None) in backward; RF passes q through (its gradient is g_q_last)."""
    args = _args(4)
    out_t, g_t = _run("triton", args, balanced, outputs=outputs)
    out_r, g_r = _run("reference", args, balanced, outputs=outputs)
    assert torch.equal(out_t[0], out_r[0])
    nonzero = False
    for a, b in zip(g_t, g_r):
        a = torch.zeros_like(b) if a is None and b is not None else a  # unused leaves: None vs zeros
        b = torch.zeros_like(a) if b is None and a is not None else b
        if a is not None:
            torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9 * float(b.abs().max().clamp_min(1)))
            nonzero |= bool(a.abs().max() > 0)
    assert nonzero


@needs_kernels
def test_broadcast_initial_state_and_no_input_gradient():
    """u0, v0, q0 broadcast from [C] (gradients summed back), x without gradient."""
    args = _args(5)
    args[0] = args[0].detach()
    args[3:] = [t.detach()[0].clone().requires_grad_() for t in args[3:]]
    for balanced in (False, True):
        _assert_same(*_run("triton", args, balanced), *_run("reference", args, balanced))


@needs_kernels
@pytest.mark.parametrize("balanced", [False, True], ids=["rf", "brf"])
def test_float32_and_half_inputs(balanced):
    args64 = [t.detach() for t in _args(6, shape=(40, 2, 3))]
    args32 = [t.float().requires_grad_() for t in args64]
    out_t, g_t = _run("triton", args32, balanced)
    out_r, g_r = _run("reference", [t.clone().requires_grad_() for t in args64], balanced)
    assert out_t[0].dtype == torch.float32 and torch.equal(out_t[0].double(), out_r[0])
    for a, b in zip((*out_t[1:], *g_t), (*out_r[1:], *g_r)):
        scale = float(b.detach().abs().max().clamp_min(1))
        torch.testing.assert_close(a.double(), b, rtol=1e-4, atol=1e-4 * scale)
    for dtype in (torch.float16, torch.bfloat16):
        xh = args32[0].detach().to(dtype).requires_grad_()
        rest = [t.detach() for t in args32[1:]]
        out_h = rf_sequence(xh, *rest, balanced=balanced, backend="triton")
        out_32 = rf_sequence(xh.detach().float(), *rest, balanced=balanced, backend="triton")
        assert all(o.dtype == dtype for o in out_h)  # the fused path's output dtypes, computed in float32
        assert torch.equal(out_h[0].float(), out_32[0]) and torch.equal(out_h[1], out_32[1].to(dtype))
        out_h[0].sum().backward()
        assert xh.grad.dtype == dtype and torch.isfinite(xh.grad.float()).all() and xh.grad.abs().max() > 0


@needs_kernels
def test_more_neurons_than_one_block_odd_shapes_and_non_contiguous():
    """Several programs, a partial last block, a 4-D step shape, T = 1, and a transposed input."""
    for shape in [(9, 3, 7, 13), (1, 2, 200)]:
        args = _args(7, shape=shape, scale=400.0 if shape[0] == 1 else 150.0)
        for balanced in (False, True):
            _assert_same(*_run("triton", args, balanced), *_run("reference", args, balanced))
    args = _args(8)
    args[0] = args[0].detach().transpose(0, 1).contiguous().transpose(0, 1).requires_grad_()
    assert not args[0].is_contiguous()
    _assert_same(*_run("triton", args, True), *_run("reference", args, True))


@needs_kernels
@pytest.mark.parametrize("balanced", [False, True], ids=["rf", "brf"])
def test_gradcheck_triton_function(balanced):
    """A rectangular surrogate narrower than every |m| has σ' = 0 at all steps, so the backward is the exact
    derivative of the piecewise-smooth forward (spikes and refractory jumps included) and gradcheck verifies it."""
    from dendrix.ops.rf.triton import RFTritonFunction

    args = [t.detach()[:8, :2, :3].contiguous() if i == 0 else t.detach()[..., :3].contiguous()
            if t.dim() == 1 else t.detach()[:2, :3].contiguous() for i, t in enumerate(_args(9))]
    leaves = [t.requires_grad_() for t in args]
    surrogate = Rectangular(1e-4)
    spikes, u, _, _ = RFTritonFunction.apply(*leaves, 0.01, 1.0, balanced, surrogate)
    q, margin = args[5].detach(), float("inf")
    for s_t, u_t in zip(spikes.detach().unbind(0), u.detach().unbind(0)):
        margin = min(margin, float((u_t - 1.0 - (q if balanced else 0)).abs().min()))
        q = 0.9 * q + s_t
    assert 0 < spikes.mean() < 1 and margin > 1e-4, "no spikes, or too close to the threshold"

    def fn(*a):
        return RFTritonFunction.apply(*a, 0.01, 1.0, balanced, surrogate)

    # Full check on the GPU; the CPU interpreter is slow, so it checks random projections there.
    assert torch.autograd.gradcheck(fn, leaves, eps=1e-6, atol=1e-6, fast_mode=not ON_CUDA)


@needs_kernels
@pytest.mark.parametrize("cls_name", ["RF", "BRF"])
def test_neurons_on_triton_equal_reference(cls_name):
    import dendrix.neurons as neurons

    x = 200 * torch.rand(T, B, C, generator=torch.Generator().manual_seed(10), dtype=torch.float64).to(DEVICE)
    results = []
    for backend in ("triton", "reference"):
        torch.manual_seed(0)
        neuron = getattr(neurons, cls_name)(C, backend=backend).to(**F64)
        xg = x.clone().requires_grad_()
        y = neuron(xg)
        grads = torch.autograd.grad((y * random_like(y)[0]).sum(), [xg, neuron.omega, neuron.b_offset])
        results.append((y, grads))
    (y_t, g_t), (y_r, g_r) = results
    assert 0 < y_r.mean() < 1 and torch.equal(y_t, y_r)
    for a, b in zip(g_t, g_r):
        assert a.abs().max() > 0
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9 * float(b.abs().max()))


# ---- dispatch: run everywhere (no GPU, with or without triton) ----

def _small(device="cpu"):
    x = torch.randn(4, 2, 3, device=device)
    return [x, torch.full((3,), 7.0, device=device), torch.full((3,), -1.0, device=device),
            *(torch.zeros(2, 3, device=device) for _ in range(3))]


def test_auto_never_picks_triton_on_cpu_and_forced_triton_never_falls_back_silently():
    sg = get_surrogate("double_gaussian")
    assert resolve_backend("auto", *_small(), sg) == CPU_AUTO  # numba where it imports, else fused
    assert resolve_backend("fused", *_small(), sg) == "fused"
    if RUNS_KERNELS:
        assert resolve_backend("triton", *_small(DEVICE), sg) == "triton"
    else:  # no triton, or CPU tensors without the interpreter: a clear error, not the fused engine
        with pytest.raises(RuntimeError, match="triton"):
            rf_sequence(*_small(), backend="triton")


@needs_kernels
def test_unsupported_surrogate_falls_back_in_auto_and_fails_when_forced():
    assert resolve_backend("auto", *_small(DEVICE), UnsupportedSurrogate()) == "fused"
    with pytest.raises(RuntimeError, match="surrogate"):
        rf_sequence(*_small(DEVICE), surrogate=UnsupportedSurrogate(), backend="triton")


@pytest.mark.skipif(not ON_CUDA, reason="needs CUDA + triton")
def test_auto_picks_triton_on_cuda():
    assert resolve_backend("auto", *_small("cuda"), get_surrogate("double_gaussian")) == "triton"
    for balanced in (False, True):
        inputs = _small("cuda")  # the same inputs for both calls
        out_auto = rf_sequence(*inputs, balanced=balanced)
        out_triton = rf_sequence(*inputs, balanced=balanced, backend="triton")
        for a, b in zip(out_auto, out_triton):
            assert torch.equal(a, b)
