"""RF and BRF: fused whole-sequence autograd against the reference step loop; streaming; dynamics."""

import pytest
import torch

import dendrix
from dendrix.neurons import BRF, RF
from dendrix.ops.rf import divergence_boundary, rf_sequence
from dendrix.ops.rf.fused import RFFunction
from dendrix.surrogate import get_surrogate


def _args(T=40, B=2, C=3, seed=0, dtype=torch.float64, scale=150.0):
    g = torch.Generator().manual_seed(seed)
    x = (scale * torch.randn(T, B, C, generator=g, dtype=torch.float64)).to(dtype)
    omega = (5 + 5 * torch.rand(C, generator=g, dtype=torch.float64)).to(dtype)
    b0 = (-1 - torch.rand(C, generator=g, dtype=torch.float64)).to(dtype)
    u0, v0 = (torch.randn(B, C, generator=g, dtype=torch.float64).to(dtype) for _ in range(2))
    q0 = torch.rand(B, C, generator=g, dtype=torch.float64).to(dtype)
    return [x, omega, b0, u0, v0, q0]


@pytest.mark.parametrize("balanced", [False, True])
@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-10), (torch.float32, 1e-4)])
def test_fused_matches_reference_forward_and_gradients(balanced, dtype, tol):
    base = _args(dtype=dtype)
    results = {}
    for backend in ("fused", "reference"):
        leaves = [t.clone().requires_grad_() for t in base]
        s, u, v, q = rf_sequence(*leaves, balanced=balanced, backend=backend)
        w = torch.linspace(-1, 1, s.numel(), dtype=dtype).reshape(s.shape)
        ((s * w).sum() + (u * w.flip(0)).sum() + 0.3 * v.sum() + 0.7 * q.sum()).backward()
        results[backend] = (s.detach(), u.detach(), [t.grad for t in leaves])
    (s_f, u_f, g_f), (s_r, u_r, g_r) = results["fused"], results["reference"]
    assert s_f.sum() > 0 and torch.equal(s_f, s_r)
    assert torch.allclose(u_f, u_r, atol=tol, rtol=tol)
    for gf, gr in zip(g_f, g_r):
        assert torch.allclose(gf, gr, atol=tol * gr.abs().max().clamp_min(1), rtol=tol)


@pytest.mark.parametrize("balanced", [False, True])
def test_gradcheck_fused(balanced):
    # theta far above the potentials: the surrogate is ~0, so finite differences see the same smooth map
    # (with spikes active, finite differences cannot see the surrogate; the reference comparison covers it).
    args = [t[:6, :1, :2].clone() if i == 0 else t[..., :2][:1].clone() if t.dim() == 2 else t[:2].clone()
            for i, t in enumerate(_args(seed=3))]
    leaves = [t.requires_grad_() for t in args]
    sur = get_surrogate("double_gaussian")
    assert torch.autograd.gradcheck(lambda *a: RFFunction.apply(*a, 0.01, 40.0, balanced, sur)[1:], leaves)


@pytest.mark.parametrize("cls", [RF, BRF])
def test_step_and_run_equal_forward(cls):
    torch.manual_seed(0)
    model = cls(4).double()
    g = torch.Generator().manual_seed(1)
    x = 200 * torch.rand(100, 3, 4, generator=g, dtype=torch.float64)
    y = model(x)
    assert y.sum() > 0
    state, ys = model.init_state(x[0]), []
    for t in range(100):
        y_t, state = model.step(x[t], state)
        ys.append(y_t)
    assert torch.equal(torch.stack(ys), y)
    state, chunks = None, []
    for lo, hi in [(0, 1), (1, 40), (40, 100)]:
        y_c, state = model.run(x[lo:hi], state)
        chunks.append(y_c)
    assert torch.equal(torch.cat(chunks), y)


def test_brf_balance_keeps_free_oscillation_bounded_while_rf_grows():
    """With zero offset the Euler-discretised RF (b = 0) gains |1 + i dt ω| > 1 per step; BRF's
    b = p(ω) makes |1 + dt(p + iω)| = 1 exactly, so the free oscillation neither grows nor decays."""
    omega, dt, T = torch.tensor([30.0, 80.0], dtype=torch.float64), 0.01, 2000
    p = divergence_boundary(omega, dt)
    assert torch.allclose((1 + dt * p) ** 2 + (dt * omega) ** 2, torch.ones(2, dtype=torch.float64))
    x = torch.zeros(T, 1, 2, dtype=torch.float64)
    u0, v0, q0 = torch.ones(1, 2, dtype=torch.float64), torch.zeros(1, 2, dtype=torch.float64), torch.zeros(1, 2, dtype=torch.float64)
    _, u_rf, v_rf, _ = rf_sequence(x, omega, torch.zeros(2, dtype=torch.float64), u0, v0, q0, theta=1e9)
    _, u_brf, v_brf, _ = rf_sequence(x, omega, p, u0, v0, q0, theta=1e9, balanced=True)
    assert (u_rf[-1] ** 2 + v_rf ** 2).sqrt().min() > 2.0
    assert torch.allclose((u_brf[-1] ** 2 + v_brf ** 2).sqrt(), torch.ones(2, dtype=torch.float64), atol=1e-9)


def test_brf_refractory_variable_and_threshold():
    torch.manual_seed(0)
    model = BRF(3).double()
    x = 300 * torch.ones(60, 1, 3, dtype=torch.float64)
    with dendrix.record(model) as rec:
        y = model(x)
    u = rec.states["BRF"]["v"]
    _, state = model.run(x)
    # recompute q and the spike condition from the recorded potential
    q = torch.zeros(1, 3, dtype=torch.float64)
    for t in range(60):
        assert torch.equal(y[t], (u[t] - 1.0 - q >= 0).double())
        q = 0.9 * q + y[t]
    assert torch.allclose(state.q, q)
    assert y.sum() > 0


def test_parameters_learn_and_constraints():
    torch.manual_seed(0)
    for cls in (RF, BRF):
        model = cls(4)
        assert torch.all((model.omega >= 5) & (model.omega <= 10))
        assert torch.all((model.b_offset >= 2) & (model.b_offset <= 3))
        y = model(200 * torch.rand(50, 2, 4))
        (y * torch.linspace(-1, 1, 4)).sum().backward()
        assert model.omega.grad.abs().sum() > 0 and model.b_offset.grad.abs().sum() > 0
    assert torch.all(RF(4).damping() < 0) and torch.all(BRF(4).damping() < 0)


def test_invalid_arguments():
    with pytest.raises(ValueError, match="channels"):
        RF(0)
    with pytest.raises(ValueError, match="dt"):
        BRF(3, dt=0.0)
    with pytest.raises(ValueError, match="omega_range"):
        BRF(3, omega_range=(5.0, 150.0))
    with pytest.raises(ValueError, match="omega_range"):
        RF(3, omega_range=(10.0, 5.0))
    with pytest.raises(TypeError, match="b_offset_range"):
        RF(3, b_offset_range=2.0)
    with pytest.raises(ValueError, match="backend"):
        RF(3, backend="cuda")
    with pytest.raises(ValueError, match="3 features"):
        RF(3)(torch.zeros(5, 2, 4))


def test_half_precision_and_registry():
    torch.manual_seed(0)
    model = BRF(4)
    x = 200 * torch.rand(30, 2, 4)
    y = model(x.to(torch.float16))
    assert y.dtype == torch.float16
    assert torch.equal(y.float(), model(x.to(torch.float16).float()))
    layer = dendrix.spiking_layer("brf", 6, 4)
    assert layer(torch.rand(20, 2, 6)).shape == (20, 2, 4)
