"""MMDEND and PMSN: grouping, parallel ≡ sequential, streaming, ZOH, recording, arguments; the paper's energy."""

import math

import pytest
import torch

import dendrix
from dendrix.analysis.paper_energy import mmdend_paper_energy, mmdend_paper_energy_of
from dendrix.neurons import MMDEND, PMSN
from dendrix.neurons.mmdend import channel_windows


def _seq(T, *shape, seed=0, scale=2.0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(T, *shape, generator=g, dtype=dtype) * scale


# -- grouping ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("D, kw, expect", [
    (8, {"branches": 2, "overlap": 0}, (2, 4, 4)),
    (10, {"branches": 3, "overlap": 0}, (3, 4, 3)),
    (8, {"branches": 2}, (2, 5, 3)),
    (128, {"branches": 2}, (2, 80, 48)),
    (128, {"branches": 4}, (4, 41, 29)),
    (7, {"branches": 1}, (1, 7, 1)),
    (12, {"window": 6, "stride": 2}, (4, 6, 2)),
    (12, {"window": 8, "branches": 3}, (3, 8, 2)),
    (12, {"stride": 3, "branches": 3}, (3, 6, 3)),
    (5, {"window": 1, "stride": 1}, (5, 1, 1)),
])
def test_grouping_covers_every_channel(D, kw, expect):
    J, Dp, S = channel_windows(D, **kw)
    assert (J, Dp, S) == expect
    m = MMDEND(D, **kw)
    brute = torch.zeros(D, dtype=torch.int64)
    for j in range(J):
        brute[j * S:j * S + Dp] += 1
    assert torch.equal(m.channel_coverage(), brute)
    assert brute.min() >= 1 and brute.max() <= J
    props = m.branch_proportions()
    assert list(props) == list(range(1, J + 1)) and sum(props.values()) == pytest.approx(1.0)
    for n, f in props.items():
        assert f == pytest.approx(float((brute == n).float().mean()))


@pytest.mark.parametrize("kw, match", [
    ({"window": 9}, "window must be <= channels"),
    ({"window": 4, "stride": 0}, "stride must be >= 1"),
    ({"ssf_range": 0}, "ssf_range"),
    ({"compartments": 0}, "compartments"),
    ({"window": 5, "stride": 2}, "uncovered"),
    ({"window": 2, "stride": 3}, "multiple of stride|gaps"),
    ({"window": 4, "stride": 2, "branches": 2}, "give 3 branches"),
    ({"branches": 9}, "branches must be <= channels"),
    ({"branch_activation": "softsign"}, "branch_activation"),
    ({"tau_soma": -1.0}, "tau_soma"),
    ({"coupling": 0.0}, "coupling must be non-zero"),
    ({"overlap": 1.5}, "overlap"),
    ({"overlap": 0.25, "window": 4}, "overlap"),
])
def test_invalid_arguments(kw, match):
    with pytest.raises((ValueError, TypeError), match=match):
        MMDEND(8, **kw)


def test_parameter_count_independent_of_channels_and_time():
    counts = {sum(p.numel() for p in MMDEND(D, branches=2, compartments=4).parameters()) for D in (4, 32, 256)}
    assert counts == {2 * (5 * 4 + 1) + 4}
    m = MMDEND(16)
    n = sum(p.numel() for p in m.parameters())
    for T in (3, 50):
        m(torch.randn(T, 2, 16))
        assert sum(p.numel() for p in m.parameters()) == n


# -- dynamics ---------------------------------------------------------------------------------------------------
def test_zoh_matches_matrix_exponential():
    m = MMDEND(6, branches=2, compartments=3).double()
    A = m.compartment_matrix().detach()
    dt = m.log_dt.detach().exp()
    Abar, Bbar = m.discrete_system(torch.float64)
    for j in range(2):
        expA = torch.linalg.matrix_exp(A[j] * dt[j])
        assert torch.allclose(Abar[j], expA, atol=1e-12)
        zoh = torch.linalg.solve(A[j], (expA - torch.eye(3, dtype=torch.float64)) @ m.input_gain[j].detach())
        assert torch.allclose(Bbar[j], zoh, atol=1e-12)
    # the branch kernel is the output weights applied to the compartment kernels
    per = m.branch_kernels(20, per_compartment=True)
    assert torch.allclose(m.branch_kernels(20), torch.einsum("jk,jkt->jt", m.output_weight.detach(), per), atol=1e-12)


def test_complex_eigenvalues_when_couplings_have_opposite_signs():
    m = MMDEND(4, compartments=4).double()
    with torch.no_grad():
        m.coupling_backward.mul_(-1)
    lam = torch.linalg.eigvals(m.compartment_matrix())
    assert lam.imag.abs().max() > 0.1
    x = _seq(30, 2, 4)
    ref = MMDEND(4, compartments=4, backend="reference").double()
    ref.load_state_dict(m.state_dict())
    assert torch.equal(m(x), ref(x))


def _step_loop(m, x):
    state, ys = None, []
    for t in range(x.shape[0]):
        y, state = m.step(x[t], state)
        ys.append(y)
    return torch.stack(ys), state


def _perturb(m, seed=0):
    """Move every readout/gain parameter off its initial value (so no term is tested only at zero or one)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in (m.input_gain, m.output_weight, m.direct_gain, m.log_tau_branch, m.log_leak, m.ssf.shift):
            p.add_(0.3 * torch.randn(p.shape, generator=g, dtype=p.dtype))
    return m


@pytest.mark.parametrize("kw", [{}, {"branches": 3, "compartments": 2}, {"window": 4, "stride": 1},
                                {"branch_activation": "identity", "ssf_range": 1}])
def test_parallel_equals_sequential_and_streaming(kw):
    m = _perturb(MMDEND(6, **kw).double())
    x = _seq(40, 3, 6, seed=1)
    full = m(x)
    assert 0 < (full != 0).float().mean() < 1 and full.abs().max() >= 2 or kw.get("ssf_range") == 1
    stepped, last = _step_loop(m, x)
    assert torch.equal(stepped, full)
    ref = MMDEND(6, backend="reference", **kw).double()
    ref.load_state_dict(m.state_dict())
    assert torch.equal(ref(x), full)
    outs, state, t = [], None, 0
    for c in (17, 1, 15, 7):
        y, state = m.run(x[t:t + c], state)
        outs.append(y)
        t += c
    assert torch.equal(torch.cat(outs), full)
    assert torch.allclose(state.soma, last.soma, atol=1e-10)
    assert torch.allclose(state.compartments, last.compartments, atol=1e-10)


@pytest.mark.parametrize("T, kw", [(40, {}), (37, {"window": 4, "stride": 1}), (70, {}),
                                    (64, {"window": 4, "stride": 1, "compartments": 3}), (21, {"branches": 3, "compartments": 2}),
                                    (19, {"branch_activation": "gelu"}), (18, {"branch_activation": "relu"}),
                                    (16, {"branch_activation": "sigmoid", "firing": "binary"}),
                                    (5, {"branch_activation": "identity", "ssf_range": 3, "v_threshold": 2.0})])
def test_chunked_kernel_matches_fft_path_with_gradients(T, kw):
    """The chunked kernel (hand-written backward) against the FFT path (plain autograd): spikes and the gradients
    of the input and of every parameter, float64; T not a multiple of the block checks the short last block."""
    m = _perturb(MMDEND(6, **kw).double(), seed=1)
    ref = MMDEND(6, method="fft", **kw).double()
    ref.load_state_dict(m.state_dict())
    x = _seq(T, 3, 6, seed=4).requires_grad_()
    y, y_ref = m(x), ref(x)
    assert torch.equal(y, y_ref)
    w = torch.randn(y.shape, generator=torch.Generator().manual_seed(5), dtype=y.dtype)
    got = torch.autograd.grad((y * w).sum(), [x, *m.parameters()])
    want = torch.autograd.grad((y_ref * w).sum(), [x, *ref.parameters()])
    for (name, _), g, h in zip([("x", None), *m.named_parameters()], got, want):
        assert torch.allclose(g, h, rtol=1e-9, atol=1e-10), name


@pytest.mark.parametrize("kw", [{}, {"window": 4, "stride": 1, "branch_activation": "gelu"}])
def test_chunked_kernel_without_grad_matches_with_grad(kw):
    """Under no_grad the kernel keeps only block-sized scratch for v and f: spikes and final states must equal
    those of a run that keeps the traces for backward (several full blocks and a short last one)."""
    m = _perturb(MMDEND(6, **kw), seed=3)
    x = _seq(75, 3, 6, seed=11, dtype=torch.float32)
    with torch.no_grad():
        y0, st0 = m.run(x)
    y1, st1 = m.run(x.clone().requires_grad_())
    assert torch.equal(y0, y1.detach())
    assert torch.equal(st0.soma, st1.soma.detach())
    assert torch.equal(st0.compartments, st1.compartments.detach())


def test_chunked_kernel_gradcheck_and_streaming_gradients():
    """gradcheck of the chunked kernel through its (smooth) final states, and gradients through `run` chunks
    (the state carries the gradient) equal those of one `forward`."""
    m = _perturb(MMDEND(4, compartments=2).double(), seed=2)
    x = _seq(7, 2, 4, seed=6, scale=0.5).requires_grad_()
    state0 = m.init_state(x[0])
    v0 = (_seq(1, *state0.compartments.shape, seed=7)[0] * 0.3).requires_grad_()
    s0 = (_seq(1, *state0.soma.shape, seed=8)[0] * 0.3).requires_grad_()

    def final_states(x, v0, s0):
        _, st = m.run(x, type(state0)(v0, s0))
        return st.compartments, st.soma

    assert torch.autograd.gradcheck(final_states, (x, v0, s0))
    x = _seq(50, 2, 4, seed=9).requires_grad_()
    w = torch.randn(50, 2, 4, generator=torch.Generator().manual_seed(3), dtype=x.dtype)
    full = torch.autograd.grad((m(x) * w).sum(), [x, *m.parameters()])
    y1, st = m.run(x[:20])
    y2, _ = m.run(x[20:], st)
    chunked = torch.autograd.grad((torch.cat([y1, y2]) * w).sum(), [x, *m.parameters()])
    for g, h in zip(chunked, full):
        assert torch.allclose(g, h, rtol=1e-9, atol=1e-10)


def test_chunked_kernel_restores_thread_count():
    threads = torch.get_num_threads()
    m = MMDEND(8)
    x = _seq(40, 2, 8, dtype=torch.float32).requires_grad_()
    m(x).sum().backward()
    assert torch.get_num_threads() == threads and x.grad is not None


def test_float32_potentials_agree():
    m = MMDEND(8)
    x = _seq(200, 4, 8, seed=2, dtype=torch.float32)
    with dendrix.record(torch.nn.Sequential(m)) as rec:
        full = m(x)
    v_par = rec.states["0"]["v"]
    state, vs = None, []
    for t in range(x.shape[0]):
        _, state = m.step(x[t], state)
        vs.append(state.soma)
    assert torch.allclose(torch.stack(vs), v_par, atol=1e-4, rtol=1e-4)
    assert (torch.stack([m.ssf.fire(v) for v in vs]) != full).float().mean() < 1e-3


def test_recording_traces_match_step_states():
    m = _perturb(MMDEND(6, branches=2, compartments=3).double())
    x = _seq(25, 2, 6, seed=3)
    with dendrix.record(torch.nn.Sequential(m)) as rec:
        y, state = m.run(x[:10])
        m.run(x[10:], state)
    calls = rec.calls["0"]
    comp = torch.cat([calls[0]["compartments"], calls[1]["compartments"]])
    assert comp.shape == (25, 2, m.window, 2, 3)
    assert rec.states["0"]["branches"].shape == (15, 2, m.window, 2)
    _, last = _step_loop(m, x)
    assert torch.allclose(comp[-1], last.compartments, atol=1e-10)


def test_gradients_reach_every_parameter():
    m = MMDEND(12, branches=3)
    x = _seq(64, 4, 12, dtype=torch.float32).requires_grad_()
    m(x).sum().backward()
    for name, p in m.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_integer_output_and_binary_expansion():
    m = MMDEND(5, ssf_range=3)
    x = _seq(40, 2, 5, dtype=torch.float32)
    y = m(x)
    assert m.emits == "integer" and torch.equal(y, y.round()) and y.abs().max() <= 3
    sub = m.binary_spikes(x)
    assert sub.shape == (40, 3, 2, 5) and torch.equal(sub.sum(1), y)


def test_extra_dims_half_precision_and_bad_shapes():
    m = MMDEND(4)
    x = _seq(12, 2, 3, 4, dtype=torch.float32)
    y = m(x)
    assert y.shape == x.shape
    assert torch.equal(y[:, :, 1], m(x[:, :, 1]))
    for dtype in (torch.float16, torch.bfloat16):
        yh = m(x.to(dtype))
        assert yh.dtype == dtype and torch.equal(yh.float(), m(x.to(dtype).float()))
    with pytest.raises(ValueError, match="4 features"):
        m(torch.randn(5, 2, 3))
    with pytest.raises(ValueError, match="time-first"):
        m(torch.randn(5, 4))


def test_registered_kinds():
    for kind in ("mmdend", "pmsn"):
        assert kind in dendrix.available()
        layer = dendrix.spiking_layer(kind, 3, 8)
        assert layer(torch.rand(10, 2, 3)).shape == (10, 2, 8)


# -- PMSN -------------------------------------------------------------------------------------------------------
def test_pmsn_initial_eigenvalues_are_those_of_the_tridiagonal_chain():
    N = 4
    m = PMSN(3, compartments=N)
    S = torch.diag(torch.full((N,), -0.5, dtype=torch.float64))
    for i in range(N - 1):
        S[i, i + 1], S[i + 1, i] = 5.0 * (i + 1), -5.0 * (i + 1)
    expected = torch.linalg.eigvals(S)
    lam = torch.complex(-m.log_A_real.exp(), m.A_imag)[0].to(torch.complex128)
    key = lambda z: z.imag  # noqa: E731
    assert torch.allclose(torch.sort(key(lam)).values, torch.sort(key(expected)).values, atol=1e-4)
    assert torch.allclose(lam.real, torch.full((N,), -0.5, dtype=torch.float64))


def _pmsn_reference(m, x):
    """A plain loop over the modal recurrence and the cumulative-sum soma, written from the equations."""
    lam = torch.complex(-m.log_A_real.exp(), m.A_imag).detach().to(torch.complex128)
    dt = m.log_dt.detach().exp().double().unsqueeze(-1)
    a = torch.exp(lam * dt)
    B = torch.complex(m.B_real, m.B_imag).detach().to(torch.complex128)
    C = torch.complex(m.C_real, m.C_imag).detach().to(torch.complex128)
    z = torch.zeros(*x.shape[1:], m.compartments, dtype=torch.complex128)
    cum = torch.zeros(x.shape[1:], dtype=torch.float64)
    out = []
    for t in range(x.shape[0]):
        z = a * z + B * (a - 1) / lam * x[t].unsqueeze(-1)
        y = (C * z).sum(-1).real + m.D.detach().double() * x[t]
        prev = cum.clone()
        cum = cum + y.clamp_min(0)
        n = torch.floor((cum - torch.floor(prev / m.v_threshold) * m.v_threshold) / m.v_threshold).clamp_min(0)
        out.append(n if m.burst else n.clamp_max(1))
    return torch.stack(out)


@pytest.mark.parametrize("burst", [False, True])
def test_pmsn_parallel_sequential_streaming(burst):
    torch.manual_seed(0)
    m = PMSN(5, compartments=3, burst=burst).double()
    x = _seq(60, 2, 5, seed=4, scale=3.0)
    full = m(x)
    assert torch.equal(full, _pmsn_reference(m, x))
    assert 0 < full.mean() and (full.max() > 1) == burst and m.emits == ("integer" if burst else "binary")
    stepped, last = _step_loop(m, x)
    assert torch.equal(stepped, full)
    y1, s1 = m.run(x[:23])
    y2, s2 = m.run(x[23:], s1)
    assert torch.equal(torch.cat([y1, y2]), full)
    assert torch.allclose(s2.modes, last.modes, atol=1e-10) and torch.allclose(s2.residual, last.residual, atol=1e-10)


def test_pmsn_surrogate_gradient_is_local_triangle():
    m = PMSN(2, compartments=2)
    drive = torch.tensor([[0.3], [0.9], [0.5], [2.4]]).requires_grad_()
    spikes, delta, _ = m._fire(drive, None)
    spikes.sum().backward()
    expected = (1.0 - (delta.detach() - 1.0).abs()).clamp_min(0)
    assert torch.allclose(drive.grad, expected)
    assert torch.equal(spikes.detach().flatten(), torch.tensor([0.0, 1.0, 0.0, 1.0]))


def test_pmsn_gradients_and_arguments():
    m = PMSN(6)
    x = _seq(50, 3, 6, dtype=torch.float32).requires_grad_()
    m(x).sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in m.parameters())
    assert sum(p.numel() for p in m.parameters()) == 6 * (6 * 4 + 2)
    for dtype in (torch.float16, torch.bfloat16):
        xh = x.detach().to(dtype)
        assert m(xh).dtype == dtype and torch.equal(m(xh).float(), m(xh.float()))
    with pytest.raises(ValueError, match="compartments"):
        PMSN(4, compartments=0)
    with pytest.raises(ValueError, match="channels"):
        PMSN(0)


# -- paper energy -----------------------------------------------------------------------------------------------
def test_paper_energy_hand_computed():
    # D = 10, K = 4, T = 100, 60 % of channels in 1 branch and 40 % in 2: Σ f_i i = 1.4
    # dend = 1.4 · 10 · 13 · 100 = 18200; soma = 2 · 1.4 · 10 · 100 + 3 · 10 · 100 = 5800
    # layer: T R FLOPs = 100 · 0.25 · 200 = 5000 ACs
    e = mmdend_paper_energy(10, 4, 100, {1: 0.6, 2: 0.4}, layer_flops=200, firing_rate=0.25)
    assert e.flops_dendrite == pytest.approx(18200)
    assert e.flops_soma == pytest.approx(5800)
    assert e.energy_neuron_pj == pytest.approx(4.6 * 24000)
    assert e.energy_layer_pj == pytest.approx(0.9 * 5000)
    assert e.energy_pj == pytest.approx(110400 + 4500)
    with pytest.raises(ValueError, match="sum to 1"):
        mmdend_paper_energy(10, 4, 100, {1: 0.5}, 1, 0.1)


def test_paper_energy_of_a_model():
    m = MMDEND(10, branches=3)   # windows of 4 with stride 3: 8 channels in 1 branch, 2 in 2
    e = mmdend_paper_energy_of(m, time_steps=50, layer_flops=0, firing_rate=0)
    assert e.flops_dendrite == pytest.approx(1.2 * 10 * 13 * 50)
    assert math.isclose(e.energy_layer_pj, 0.0)


def test_backend_and_method_vocabulary():
    """One vocabulary (docs/backends.md): ``backend`` is the engine, ``method`` the algorithm; 0.2's
    ``method="sequential"`` is refused with a pointer to ``backend="reference"``."""
    x = torch.randn(12, 2, 4, dtype=torch.float64)
    ref = MMDEND(4, backend="reference").double()
    for method in ("chunked", "fft"):
        fast = MMDEND(4, method=method, backend="fused").double()
        fast.load_state_dict(ref.state_dict())
        assert torch.equal(fast(x), ref(x))
    with pytest.raises(ValueError, match="method='sequential' is now backend='reference'"):
        MMDEND(4, method="sequential")
    with pytest.raises(ValueError, match="takes method='auto' only"):
        MMDEND(4, method="fft", backend="reference")
    with pytest.raises(ValueError, match="backend must be one of"):
        MMDEND(4, backend="triton")


# -- issue 14: the paper's channel sharing by default ------------------------------------------------------------
def test_default_grouping_shares_about_a_quarter_of_the_channels():
    """Fig. 7's best setting: about 25 % of the channels feed more than one branch (overlap=0: disjoint)."""
    assert MMDEND(128, branches=2).branch_proportions() == {1: 0.75, 2: 0.25}
    assert MMDEND(128, branches=4).branch_proportions() == {1: 0.71875, 2: 0.28125, 3: 0.0, 4: 0.0}
    assert MMDEND(128, branches=2, overlap=0).branch_proportions() == {1: 1.0, 2: 0.0}
    assert MMDEND(128).branches == 2 and MMDEND(128).window == 80
    for D in (16, 50, 64, 100, 128, 256, 700):
        for J in (2, 3, 4):
            props = MMDEND(D, branches=J).branch_proportions()
            shared = sum(f for n, f in props.items() if n > 1)
            assert abs(shared - 0.25) <= (J - 1) * J / (2 * D) + 1e-6, (D, J, props)  # nearest integer stride
            assert max(n for n, f in props.items() if f > 0) <= 2
    assert MMDEND(128, branches=2, overlap=0.5).branch_proportions() == {1: 0.5, 2: 0.5}
    assert MMDEND(12, branches=3, overlap=1.0).branch_proportions() == pytest.approx({1: 1 / 6, 2: 1 / 6, 3: 2 / 3})


def test_overlapping_default_paths_agree():
    """The default (overlapping) grouping: the whole-sequence call equals the step loop (the definition)."""
    torch.manual_seed(0)
    m = MMDEND(24, branches=3).double()
    assert m.window > m.stride
    x = torch.randn(40, 2, 24, dtype=torch.float64)
    state, steps = None, []
    with torch.no_grad():
        for x_t in x:
            s_t, state = m.step(x_t, state)
            steps.append(s_t)
        torch.testing.assert_close(m(x), torch.stack(steps), rtol=0, atol=0)
