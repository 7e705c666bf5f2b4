"""D-RF: parallel (FFT) forward against the sequential definition, streaming, kernel, parameter constraints."""

import math

import pytest
import torch

import dendrix
from dendrix.neurons import DRF


def _model(channels=5, seed=0, **kw):
    torch.manual_seed(seed)
    kw.setdefault("dt_min", 1e-2)
    kw.setdefault("dt_max", 3e-1)
    return DRF(channels, **kw)


def _input(T, B=2, C=5, seed=1, scale=2.0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return (scale * torch.randn(T, B, C, generator=g) + 0.5).to(dtype)


def _traces(model, x):
    """Spikes, soma potential and threshold of one call, through the public recorder."""
    with dendrix.record(model) as rec:
        y = model(x)
    (name,) = rec.layers()
    return y, rec.states[name]["v"], rec.states[name]["threshold"]


def test_parallel_equals_sequential_float64_long():
    T = 4096
    model = _model(channels=4).double()
    x = _input(T, B=2, C=4)
    with torch.no_grad():
        y_fft, h_fft, _ = _traces(model, x)
        model.method, model.backend = "sequential", "reference"
        y_seq, h_seq, _ = _traces(model, x)
    assert y_fft.sum() > 10, "too few spikes for a meaningful check"
    assert torch.equal(y_fft, y_seq)
    assert (h_fft - h_seq).abs().max() <= 1e-5 * h_seq.abs().max()


def _dilate(mask: torch.Tensor, steps: int) -> torch.Tensor:
    out = mask.clone()
    for s in range(1, steps + 1):
        out[s:] |= mask[:-s]
    return out


def test_parallel_equals_sequential_float32_long():
    T, margin = 4096, 1e-3
    model = _model(channels=4)
    x = _input(T, B=2, C=4, dtype=torch.float32)
    with torch.no_grad():
        y_fft, h_fft, th_fft = _traces(model, x)
        model.method = "scan"
        y_scan, _, _ = _traces(model, x)
        model.method, model.backend = "sequential", "fused"
        y_loop, _, _ = _traces(model, x)
        model.method, model.backend = "sequential", "reference"
        y_seq, h_seq, th_seq = _traces(model, x)
    scale = h_seq.abs().max()
    assert (h_fft - h_seq).abs().max() <= 1e-3 * scale
    # A spike may flip only where the potential is within rounding of a threshold, and the threshold may
    # then differ for the next M steps; everywhere else the spikes must be identical.
    near = ((h_seq - 1.0).abs() < margin * scale) | ((h_seq - th_seq).abs() < margin * scale)
    far = ~_dilate(near, model.threshold_window)
    assert far.float().mean() > 0.95
    assert torch.equal(y_fft[far], y_seq[far])
    assert torch.equal(y_scan[far], y_seq[far])
    assert torch.equal(y_loop[far], y_seq[far])


@pytest.mark.parametrize("kw", [{}, {"adaptive_threshold": False}, {"complex_weights": True, "branches": 3},
                                {"threshold_window": 7}])
def test_step_and_run_equal_forward(kw):
    model = _model(**kw).double()
    x = _input(120)
    y = model(x)
    assert y.sum() > 0
    state, ys = model.init_state(x[0]), []
    for t in range(x.shape[0]):
        y_t, state = model.step(x[t], state)
        ys.append(y_t)
    assert torch.equal(torch.stack(ys), y)
    state, chunks = None, []
    for lo, hi in [(0, 2), (2, 3), (3, 70), (70, 120)]:
        y_c, state = model.run(x[lo:hi], state)
        chunks.append(y_c)
    assert torch.equal(torch.cat(chunks), y)
    # the final states of run and step agree
    assert torch.allclose(state.z, model.run(x)[1].z, atol=1e-10)


def test_kernel_matches_direct_evaluation_and_impulse_response():
    model = _model(channels=3, branches=4).double()
    T = 200
    K = model.kernel(T, torch.float64)
    assert K.shape == (3, T)
    lam = model.eigenvalues().detach().to(torch.complex128)
    dt = model.step_size().detach().double()
    c, gamma = model.weight.detach().double(), model.gamma.detach().double()
    direct = torch.zeros(3, T, dtype=torch.float64)
    for h in range(3):
        for k in range(4):
            bbar = gamma[h, k] * (torch.exp(dt[h] * lam[h, k]) - 1) / lam[h, k]
            for l in (0, 1, 7, 199):
                direct[h, l] += c[h, k] * (bbar * torch.exp(dt[h] * lam[h, k] * l)).real
    for l in (0, 1, 7, 199):
        assert torch.allclose(K[:, l], direct[:, l], atol=1e-12)
    impulse = torch.zeros(T, 1, 3, dtype=torch.float64)
    impulse[0] = 1.0
    _, h, _ = _traces(model, impulse)
    assert torch.allclose(h[:, 0, :].T, K.detach(), atol=1e-12)


def test_adaptive_threshold_formula_and_rate():
    model = _model(threshold_window=3, threshold_weights="softmax").double()
    with torch.no_grad():
        model.threshold_logits.copy_(torch.randn(5, 3))
    x = _input(400)
    y, h, th = _traces(model, x)
    alpha = model.threshold_weights().detach()
    assert alpha.shape == (5, 3) and torch.all(alpha > 0)
    assert torch.allclose(alpha.sum(-1), torch.ones(5, dtype=alpha.dtype))
    pre = (h >= 1.0).double()
    expected = torch.ones_like(h)
    for m in range(1, 4):
        expected[m:] += alpha[:, m - 1] * pre[:-m]
    assert torch.allclose(th, expected, atol=1e-12)
    assert torch.equal(y, (h >= th).double())
    # the threshold only rises (V_th >= 1) and there is no reset, so spikes are a subset of the pre-spikes
    assert torch.all(y <= pre) and y.sum() < pre.sum()
    plain = _model(adaptive_threshold=False).double()
    plain.load_state_dict({k: v for k, v in model.state_dict().items() if k != "threshold_logits"})
    assert torch.equal(plain(x), pre)
    assert DRF(3, threshold_window=0).threshold_weights().shape == (3, 0)


def test_s4d_lin_initialisation():
    model = DRF(64, branches=4)
    lam = model.eigenvalues().detach()
    assert torch.allclose(lam.real, torch.full_like(lam.real, -0.5), atol=1e-6)
    assert torch.allclose(lam.imag, math.pi * torch.arange(4.0).expand(64, 4))
    dt = model.step_size().detach()
    assert dt.min() >= 1e-3 * (1 - 1e-6) and dt.max() <= 1e-1 * (1 + 1e-6) and dt.std() > 0


def test_real_part_of_lambda_stays_negative_after_any_optimiser_step():
    model = _model()
    params = [model.decay_raw, model.omega]
    for opt in (torch.optim.SGD(params, lr=1e6), torch.optim.Adam(params, lr=100.0)):
        for _ in range(3):
            opt.zero_grad()
            # push towards slower decay as hard as possible, through the spiking forward too
            (-model.eigenvalues().real.sum() * 1e6 + model(_input(20, dtype=torch.float32)).sum()).backward()
            opt.step()
            assert torch.isfinite(model.decay_raw).all()
            assert torch.all(model.eigenvalues().real < 0)
    with torch.no_grad():
        model.decay_raw.fill_(-1e30)
    assert torch.all(model.eigenvalues().real < 0)


def test_gradients_reach_every_parameter_and_are_finite():
    model = _model(complex_weights=True)
    x = _input(64, dtype=torch.float32).requires_grad_()
    y = model(x)
    (y * torch.linspace(-1, 1, 5)).sum().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert model.surrogate.name == "double_gaussian"


def test_invalid_arguments_raise_clear_errors():
    with pytest.raises(ValueError, match="branches"):
        DRF(4, branches=0)
    with pytest.raises(ValueError, match="dt_min"):
        DRF(4, dt_min=0.0)
    with pytest.raises(ValueError, match="dt_max"):
        DRF(4, dt_max=-1.0)
    with pytest.raises(ValueError, match="dt_min must be <= dt_max"):
        DRF(4, dt_min=0.2, dt_max=0.1)
    with pytest.raises(ValueError, match="threshold_window"):
        DRF(4, threshold_window=-1)
    with pytest.raises(ValueError, match="channels"):
        DRF(0)
    with pytest.raises(ValueError, match="method"):
        DRF(4, method="gpu")
    with pytest.raises(ValueError, match="4 features"):
        DRF(4)(torch.zeros(10, 2, 5))
    with pytest.raises(ValueError):
        DRF(4)(torch.zeros(2, 4))


def test_half_precision_input_is_computed_in_float32():
    model = _model()
    x = _input(50, dtype=torch.float32)
    y = model(x.to(torch.bfloat16))
    assert y.dtype == torch.bfloat16
    assert torch.equal(y.float(), model(x.to(torch.bfloat16).float()))


def test_registry_layer():
    layer = dendrix.spiking_layer("drf", 7, 5)
    assert layer(torch.rand(30, 2, 7)).shape == (30, 2, 5)
    assert dendrix.describe("drf").family == "resonator"


def test_extra_feature_dims_stream_like_forward():
    model = _model().double()
    x = _input(50, B=6).reshape(50, 2, 3, 5)
    y = model(x)
    state, ys = model.init_state(x[0]), []
    for t in range(50):
        y_t, state = model.step(x[t], state)
        ys.append(y_t)
    assert y.sum() > 0 and torch.equal(torch.stack(ys), y)
    y_a, state = model.run(x[:7])
    y_b, _ = model.run(x[7:], state)
    assert torch.equal(torch.cat([y_a, y_b]), y)


# -- issue 14: the paper's threshold (detached pre-spikes, independent α in (0, 1)) -------------------------------
def _spike_jacobian(model, h):
    """∂S[t]/∂H[s] [T, T] of channel 0, batch row 0, through the threshold (H given directly)."""
    h = h.clone().requires_grad_()
    spikes, _, _ = model._fire(h, None)
    rows = []
    for t in range(h.shape[0]):
        (g,) = torch.autograd.grad(spikes[t, 0, 0], h, retain_graph=True)
        rows.append(g[:, 0, 0])
    return torch.stack(rows)


def test_threshold_passes_no_gradient_to_earlier_steps_by_default():
    """∂S[t]/∂H[t−m] = 0 for m ≥ 1 by default (the paper); threshold_grad=True keeps the old, non-zero path."""
    # H near the pre-spike threshold every step, so the surrogate of every pre-spike is far from zero
    h = (1.0 + 0.3 * torch.sin(torch.arange(10.0))).double().view(10, 1, 1).expand(10, 1, 2).contiguous()
    paper = _spike_jacobian(_model(2, threshold_window=4).double(), h)
    assert torch.all(paper.diagonal() != 0)
    assert torch.equal(paper, torch.diag(paper.diagonal()))  # all off-diagonal entries exactly 0
    old = _spike_jacobian(_model(2, threshold_window=4, threshold_grad=True).double(), h)
    torch.testing.assert_close(old.diagonal(), paper.diagonal())
    for t in range(4, 10):
        for m in range(1, 5):
            assert old[t, t - m] != 0
    # the pre-spikes still pass gradient to α, and streaming steps match the whole-sequence call
    model = _model(threshold_window=4).double()
    x = _input(40, C=5)
    model(x).sum().backward()
    assert model.alpha_logits.grad is not None and model.alpha_logits.grad.abs().sum() > 0
    state, steps = None, []
    with torch.no_grad():
        for x_t in x:
            s_t, state = model.step(x_t, state)
            steps.append(s_t)
        assert torch.equal(torch.stack(steps), model(x))


def test_threshold_weights_are_independent_in_the_unit_interval():
    model = _model(threshold_window=4).double()
    assert model.threshold_mode == "sigmoid" and model.threshold_logits is None
    torch.testing.assert_close(model.threshold_weights(), torch.full((5, 4), 0.25, dtype=torch.float64))
    softmax = _model(threshold_window=4, threshold_weights="softmax").double()
    x = _input(300, C=5)
    assert torch.equal(model(x), softmax(x))  # same initial threshold as the softmax init
    assert torch.sigmoid(_model(threshold_window=1).alpha_logits).flatten().tolist() == [0.5] * 5
    with torch.no_grad():
        model.alpha_logits.copy_(torch.linspace(-30, 30, 20).view(5, 4))
    alpha = model.threshold_weights()
    assert torch.all(alpha > 0) and torch.all(alpha < 1)
    assert alpha.sum(-1).max() > 1.5  # not tied to a sum of 1: the threshold can exceed V_pre + 1
    _, _, th = _traces(model, 5 * x)
    assert th.max() > 2.0 and th.min() >= 1.0
    with pytest.raises(ValueError, match="threshold_weights"):
        DRF(3, threshold_weights="relu")
    with pytest.raises(TypeError, match="threshold_grad"):
        DRF(3, threshold_grad=1)


def test_softmax_checkpoint_loads_into_the_sigmoid_default_with_the_same_alpha(caplog):
    old = _model(threshold_window=3, threshold_weights="softmax").double()
    with torch.no_grad():
        old.threshold_logits.copy_(torch.randn(5, 3))
    new = _model(threshold_window=3, seed=5).double()
    with caplog.at_level("WARNING", logger="dendrix.neurons.drf"):
        new.load_state_dict(old.state_dict())
    assert "alpha_logits" in caplog.text
    torch.testing.assert_close(new.threshold_weights(), old.threshold_weights())
    x = _input(200, C=5)
    assert torch.equal(new(x), old(x))
    back = _model(threshold_window=3, threshold_weights="softmax").double()
    with pytest.raises(RuntimeError, match="threshold_logits"):  # the reverse needs an explicit choice
        back.load_state_dict(new.state_dict())
