"""DLIF layers and the sparse bilinear op: exactness against dense references, gradients, contract, errors."""

import pytest
import torch

import dendrix
from dendrix.layers import DLIFConv2d, DLIFLinear, SpikingLinear
from dendrix.neurons.lif import LIF
from dendrix.ops.bilinear import (HAVE_NUMBA, bilinear_form, bilinear_reference, build_layout, dense_matrix,
                                  dlif_current_reference, low_rank_dense, low_rank_form)
from dendrix.ops.bilinear.autograd import BilinearForm

ENGINES = ["torch"] + (["numba"] if HAVE_NUMBA else [])


def spikes(*shape, rate=0.3, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(*shape, generator=g) < rate).to(dtype)


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("n,out,density", [(2, 1, 1.0), (7, 3, 0.5), (12, 5, 0.3), (9, 1, 0.4), (10, 20, 0.1),
                                           (16, 6, 0.0), (30, 40, 0.05)])
def test_sparse_matches_dense_reference_forward_and_gradients(engine, n, out, density):
    torch.manual_seed(n * 100 + out)
    lay = build_layout(n, out, density)
    vals = torch.randn(lay.nnz, dtype=torch.float64, requires_grad=True)
    s = spikes(37, n, rate=0.4, seed=n, dtype=torch.float64).requires_grad_(True)
    ref = bilinear_reference(s, vals, lay)
    got = bilinear_form(s, vals, lay, backend=engine)
    torch.testing.assert_close(got, ref, rtol=1e-12, atol=1e-12)
    if lay.nnz == 0:  # no K: the bilinear term is identically zero
        return
    g = torch.randn_like(ref)
    gs_ref, gv_ref = torch.autograd.grad(ref, (s, vals), g, allow_unused=True)
    gs, gv = torch.autograd.grad(got, (s, vals), g, allow_unused=True)
    torch.testing.assert_close(gs, gs_ref, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(gv, gv_ref, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("engine", ENGINES)
def test_gradcheck_sparse_bilinear_values(engine):
    lay = build_layout(6, 4, 0.5, generator=torch.Generator().manual_seed(1))
    vals = torch.randn(lay.nnz, dtype=torch.float64, requires_grad=True)
    s = spikes(9, 6, rate=0.5, seed=3, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda v: BilinearForm.apply(s, v, lay, engine, True), (vals,))


@pytest.mark.parametrize("engine", ENGINES)
def test_gradcheck_input_gradient_equals_quadratic_form_derivative(engine):
    # gradcheck perturbs s off {0, 1}, which the sparse path refuses; compare with the analytic d(sᵀKs)/ds = 2Ks.
    lay = build_layout(8, 3, 0.6, generator=torch.Generator().manual_seed(2))
    vals = torch.randn(lay.nnz, dtype=torch.float64)
    s = spikes(11, 8, rate=0.5, seed=4, dtype=torch.float64).requires_grad_(True)
    g = torch.randn(11, 3, dtype=torch.float64)
    (gs,) = torch.autograd.grad(BilinearForm.apply(s, vals, lay, engine, True), s, g)
    K = dense_matrix(vals, lay)
    torch.testing.assert_close(gs, 2 * torch.einsum("ro,oij,rj->ri", g, K, s.detach()))


def test_layout_mask_is_balanced_and_has_the_requested_density():
    lay = build_layout(60, 50, 0.1, generator=torch.Generator().manual_seed(0))
    assert abs(lay.density - 0.1) < 0.01
    o, i, j = lay.entries()
    assert bool((i < j).all())
    key = (o * 60 + i) * 60 + j
    assert key.unique().numel() == key.numel()  # no duplicated entry
    per_output = torch.bincount(o, minlength=50).float() / (60 * 59 / 2)
    assert float(per_output.min()) > 0.05 and float(per_output.max()) < 0.15
    masks = torch.zeros(50, 60 * 60, dtype=torch.bool)
    masks[o, i * 60 + j] = True
    assert not torch.equal(masks[0], masks[1])  # different per neuron


@pytest.mark.parametrize("engine", ENGINES)
def test_layer_current_equals_naive_dense_formula(engine):
    torch.manual_seed(0)
    m = DLIFLinear(15, 6, sparsity=0.7, backend=engine).double()
    s = spikes(5, 4, 15, rate=0.35, seed=1, dtype=torch.float64)
    ref = dlif_current_reference(s, m.weight, m.bias, m.bilinear_values, m.layout)
    torch.testing.assert_close(m.input_current(s), ref)
    W, K = m.weight, m.bilinear_matrix()
    naive = torch.einsum("oi,tbi->tbo", W, s) + m.bias + torch.einsum("tbi,oij,tbj->tbo", s, K, s)
    torch.testing.assert_close(m.input_current(s), naive)


@pytest.mark.parametrize("layer", ["linear", "conv", "lowrank"])
def test_step_forward_and_run_agree(layer):
    torch.manual_seed(0)
    if layer == "conv":
        m = DLIFConv2d(5, 4, 3, sparsity=0.5, k_init=0.5)
        x = spikes(9, 2, 5, 6, 6, rate=0.4)
    else:
        m = DLIFLinear(12, 5, sparsity=0.5, rank=2 if layer == "lowrank" else None, k_init=0.5)
        x = spikes(9, 3, 12, rate=0.4)
    with torch.no_grad():
        m.weight.mul_(4.0)
    y = m(x)
    assert y.float().mean() > 0.02  # the check is not vacuous
    st, steps = None, []
    for t in range(x.shape[0]):
        yt, st = m.step(x[t], st)
        steps.append(yt)
    assert torch.equal(torch.stack(steps), y)
    y1, st = m.run(x[:4])
    y2, _ = m.run(x[4:], st)
    assert torch.equal(torch.cat([y1, y2]), y)


def test_zero_k_reproduces_linear_plus_soft_reset_lif_exactly():
    torch.manual_seed(0)
    m = DLIFLinear(20, 7, sparsity=0.5)
    with torch.no_grad():
        m.bilinear_values.zero_()
        m.weight.mul_(5)
    ref = SpikingLinear(20, 7, LIF(tau=2.0, v_reset=None))
    ref.linear.weight.data.copy_(m.weight)
    ref.linear.bias.data.copy_(m.bias)
    x = spikes(16, 3, 20, rate=0.3)
    y = m(x)
    assert y.mean() > 0.05
    assert torch.equal(y, ref(x))


def test_sparsity_one_has_no_k_and_is_lif():
    m = DLIFLinear(10, 4, sparsity=1.0)
    assert m.bilinear_values.numel() == 0 and m.mask_density() == 0.0
    ref = SpikingLinear(10, 4, LIF(v_reset=None))
    ref.linear.load_state_dict({"weight": m.weight.data, "bias": m.bias.data})
    x = spikes(8, 2, 10)
    assert torch.equal(m(x), ref(x))


def test_sparsity_zero_gives_full_k():
    m = DLIFLinear(6, 3, sparsity=0.0)
    assert m.mask_density() == 1.0
    K = m.bilinear_matrix()
    off = ~torch.eye(6, dtype=torch.bool)
    assert bool((K[:, off] != 0).all())


def test_bilinear_matrix_and_set_bilinear_matrix():
    torch.manual_seed(0)
    m = DLIFLinear(8, 3, sparsity=0.5)
    K = m.bilinear_matrix()
    assert K.shape == (3, 8, 8)
    assert torch.equal(K, K.transpose(1, 2))
    assert bool((torch.diagonal(K, dim1=1, dim2=2) == 0).all())
    A = torch.randn(3, 8, 8)
    A = A + A.transpose(1, 2)
    A = A - torch.diag_embed(torch.diagonal(A, dim1=1, dim2=2))
    with pytest.warns(UserWarning, match="dropped"):  # masked entries of A are dropped only when asked
        m.set_bilinear_matrix(A, strict=False)
    kept = K != 0
    got = m.bilinear_matrix()
    torch.testing.assert_close(got[kept], A[kept])
    assert bool((got[~kept] == 0).all())
    with pytest.raises(ValueError, match="symmetric"):
        m.set_bilinear_matrix(torch.randn(3, 8, 8).triu(1))
    with pytest.raises(ValueError, match="diagonal"):
        m.set_bilinear_matrix(A + torch.eye(8))
    with pytest.raises(ValueError, match="shape"):
        m.set_bilinear_matrix(torch.zeros(3, 7, 7))


@pytest.mark.parametrize("kwargs,match", [({"sparsity": -0.1}, "sparsity"), ({"sparsity": 1.5}, "sparsity"),
                                          ({"tau": 1.0}, "tau"), ({"rank": 0}, "rank"),
                                          ({"backend": "cuda"}, "backend")])
def test_invalid_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        DLIFLinear(10, 4, **kwargs)


def test_invalid_shapes_and_inputs():
    with pytest.raises(ValueError, match="in_features"):
        DLIFLinear(1, 4)
    with pytest.raises(ValueError, match="in_channels"):
        DLIFConv2d(1, 4, 3)
    m = DLIFLinear(10, 4)
    with pytest.raises(ValueError, match="10 features"):
        m(spikes(5, 2, 9))
    with pytest.raises(ValueError, match="dims"):
        m(spikes(2, 10))
    for engine in ENGINES:
        m.backend = engine
        with pytest.raises(ValueError, match="binary"):
            m(torch.rand(5, 2, 10))
    m.backend = "reference"  # the documented exact path for real-valued input
    assert m(torch.rand(5, 2, 10)).shape == (5, 2, 4)
    with pytest.raises(TypeError, match="dtype"):
        m.double()(spikes(5, 2, 10))


def test_registry_builds_dlif():
    assert "dlif" in dendrix.available()
    layer = dendrix.spiking_layer("dlif", 12, 5, sparsity=0.8)
    assert isinstance(layer, DLIFLinear)
    assert layer(spikes(4, 2, 12)).shape == (4, 2, 5)


def test_low_rank_form_matches_its_dense_matrix():
    torch.manual_seed(0)
    u, v = torch.randn(3, 2, 7, dtype=torch.float64), torch.randn(3, 2, 7, dtype=torch.float64)
    s = torch.randn(5, 7, dtype=torch.float64)  # exact for real-valued input too
    K = low_rank_dense(u, v)
    assert torch.equal(K, K.transpose(1, 2)) and bool((torch.diagonal(K, dim1=1, dim2=2) == 0).all())
    torch.testing.assert_close(low_rank_form(s, u, v), torch.einsum("ri,oij,rj->ro", s, K, s))


def test_window_mask_law_each_neuron_keeps_a_fraction_d_of_pairs_in_contiguous_windows():
    n, out, d = 40, 16, 0.3
    lay = build_layout(n, out, d, generator=torch.Generator().manual_seed(3))
    o, i, j = lay.entries()
    pid = i * (2 * n - i - 1) // 2 + (j - i - 1)
    kept = torch.zeros(lay.pairs, out, dtype=torch.bool)
    kept[pid, o] = True
    sizes = kept.sum(1)
    assert set(sizes.unique().tolist()) <= {lay.m, lay.m + 1}
    # every pair's kept outputs are the cyclic window start, start + 1, ... (some wrap past out - 1)
    offsets = (torch.arange(out)[None, :] - lay.start.long()[:, None]) % out
    assert torch.equal(kept, offsets < sizes[:, None])
    assert bool(((lay.start.long() + sizes) > out).any())
    # per neuron: a Bernoulli(d) fraction of the pairs (binomial sd ~ 0.017 here)
    per_neuron = kept.float().mean(0)
    assert float((per_neuron - d).abs().max()) < 0.07
    assert abs(lay.density - d) < 0.02


def test_loading_an_independent_mask_state_dict_from_0_1_raises_a_clear_error():
    layer = DLIFLinear(6, 3, sparsity=0.5, seed=0)
    old = {k: v for k, v in layer.state_dict().items() if k != "window_start"}
    old["pair_outputs"] = torch.zeros(15, dtype=torch.int16)
    with pytest.raises(RuntimeError, match="window_start"):
        layer.load_state_dict(old)


def test_state_dict_round_trip_restores_the_mask():
    a, b = DLIFLinear(9, 4, sparsity=0.6, seed=1), DLIFLinear(9, 4, sparsity=0.6, seed=2)
    b.load_state_dict(a.state_dict())
    x = spikes(6, 2, 9, rate=0.5)
    torch.testing.assert_close(a.input_current(x), b.input_current(x))
    assert torch.equal(a(x), b(x))


def test_half_precision_runs_in_float32_internally():
    torch.manual_seed(0)
    m = DLIFLinear(10, 4, sparsity=0.5)
    x = spikes(5, 2, 10)
    y32 = m.input_current(x)
    mh = m.to(torch.bfloat16)
    yh = mh.input_current(x.to(torch.bfloat16))
    assert yh.dtype == torch.bfloat16
    torch.testing.assert_close(yh.float(), y32, rtol=0.05, atol=0.05)
    out = mh(x.to(torch.bfloat16))
    assert out.dtype == torch.bfloat16 and bool(((out == 0) | (out == 1)).all())


def test_conv_current_is_conv_plus_per_pixel_bilinear():
    torch.manual_seed(0)
    m = DLIFConv2d(4, 3, 3, stride=2, sparsity=0.3, k_init=0.5).double()
    s = spikes(2, 4, 7, 7, rate=0.5, seed=5, dtype=torch.float64)
    K = m.bilinear_matrix()
    conv = torch.nn.functional.conv2d(s, m.conv.weight, m.conv.bias, stride=2, padding=1)
    pix = s[:, :, ::2, ::2]
    bil = torch.einsum("bchw,ocd,bdhw->bohw", pix, K, pix)
    torch.testing.assert_close(m.input_current(s), conv + bil)
    y = m(spikes(3, 2, 4, 7, 7, rate=0.5).double())
    assert y.shape == (3, 2, 3, 4, 4)


def test_recording_captures_membrane_and_current():
    m = DLIFLinear(6, 2)
    with dendrix.record(m) as rec:
        m(spikes(5, 2, 6))
    states = next(iter(rec.states.values()))
    assert states["v"].shape == (5, 2, 2) and states["current"].shape == (5, 2, 2)


# -- issue 14: reset option, masked entries, small layers ---------------------------------------------------------
def _lif_trace(current, tau, reset):
    """The soma written out: H = V + (I − V)/tau, S = Θ(H − 1), soft V = H − S or hard V = H (1 − S)."""
    v = torch.zeros_like(current[0])
    out, hs = [], []
    for i_t in current:
        h = v + (i_t - v) / tau
        s = (h >= 1.0).to(h.dtype)
        v = h - s if reset == "soft" else h * (1 - s)
        out.append(s)
        hs.append(h)
    return torch.stack(out), torch.stack(hs), v


@pytest.mark.parametrize("reset", ["soft", "hard"])
def test_reset_option_trace(reset):
    torch.manual_seed(0)
    m = DLIFLinear(12, 5, sparsity=0.5, reset=reset, bias=False).double()
    with torch.no_grad():
        m.weight.mul_(6.0)
    x = spikes(40, 3, 12, rate=0.4, dtype=torch.float64)
    with dendrix.record(m) as rec:
        y, state = m.run(x)
    (name,) = rec.layers()
    s_ref, h_ref, v_ref = _lif_trace(rec.states[name]["current"], 2.0, reset)
    assert y.sum() > 20 and torch.equal(y, s_ref)
    torch.testing.assert_close(rec.states[name]["v"], h_ref, rtol=0, atol=1e-12)
    torch.testing.assert_close(state.v, v_ref, rtol=0, atol=1e-12)
    if reset == "hard":  # after every spike the membrane is exactly 0
        assert bool((state.v[y[-1] == 1] == 0).all())
    assert DLIFLinear(12, 5).reset == "soft"
    other = DLIFLinear(12, 5, sparsity=0.5, reset="hard" if reset == "soft" else "soft", bias=False).double()
    other.load_state_dict(m.state_dict())
    assert not torch.equal(other(x), y)  # the option matters on this input
    soma = dendrix.spiking_neuron("dlif", 5, reset=reset)
    assert (soma.v_reset is None) == (reset == "soft")
    with pytest.raises(ValueError, match="reset"):
        DLIFLinear(12, 5, reset="zero")


def test_set_bilinear_matrix_refuses_masked_entries_unless_told():
    torch.manual_seed(0)
    m = DLIFLinear(8, 3, sparsity=0.5)
    K = m.bilinear_matrix().detach()
    kept = K != 0
    A = torch.randn(3, 8, 8)
    A = A + A.transpose(1, 2)
    A = A - torch.diag_embed(torch.diagonal(A, dim1=1, dim2=2))
    masked = int(((A != 0) & ~kept).triu(1).sum())
    assert masked > 0
    before = m.bilinear_values.detach().clone()
    with pytest.raises(ValueError, match=f"K has {masked} non-zero entries"):
        m.set_bilinear_matrix(A)
    assert torch.equal(m.bilinear_values, before)  # nothing written
    m.set_bilinear_matrix(A * kept)  # only kept entries: accepted silently
    torch.testing.assert_close(m.bilinear_matrix()[kept], A[kept])
    with pytest.warns(UserWarning, match=f"{masked} non-zero entries.*dropped"):
        m.set_bilinear_matrix(A, strict=False)


def test_small_layer_keeps_its_pair_or_warns():
    """DLIFLinear(2, 1) has one pair; at the default sparsity it is usually dropped: then a warning names the
    layer (a neuron without pairs is silently LIF otherwise)."""
    import warnings as _w

    warned = kept = 0
    for seed in range(40):
        with _w.catch_warnings(record=True) as caught:
            _w.simplefilter("always")
            m = DLIFLinear(2, 1, seed=seed)
        has_pair = m.bilinear_values.numel() > 0
        messages = [str(w.message) for w in caught if issubclass(w.category, UserWarning)]
        assert has_pair or any("DLIFLinear(2, 1, sparsity=0.9)" in msg and "keep no pair" in msg
                               for msg in messages), seed
        warned += bool(messages)
        kept += has_pair
        assert not (has_pair and messages)
    assert warned > 0 and kept + warned == 40
    with _w.catch_warnings():
        _w.simplefilter("error")
        DLIFLinear(64, 32)  # every neuron keeps pairs: no warning
        DLIFLinear(2, 1, sparsity=1.0)  # no K asked for: no warning


# -- issue 14: independent per-neuron masks by default ------------------------------------------------------------
@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("n,out,density", [(2, 1, 1.0), (7, 3, 0.5), (12, 5, 0.3), (9, 1, 0.4), (10, 20, 0.1),
                                           (16, 6, 0.0), (30, 40, 0.05)])
def test_independent_masks_match_dense_reference_forward_and_gradients(engine, n, out, density):
    from dendrix.ops.bilinear import build_independent_layout

    lay = build_independent_layout(n, out, density, generator=torch.Generator().manual_seed(n * 7 + out))
    vals = torch.randn(lay.nnz, dtype=torch.float64, requires_grad=True)
    s = spikes(37, n, rate=0.4, seed=n, dtype=torch.float64).requires_grad_(True)
    ref = bilinear_reference(s, vals, lay)
    got = bilinear_form(s, vals, lay, backend=engine)
    torch.testing.assert_close(got, ref, rtol=1e-12, atol=1e-12)
    if lay.nnz == 0:
        return
    w = torch.randn_like(ref)
    g_ref = torch.autograd.grad((ref * w).sum(), [s, vals])
    g_got = torch.autograd.grad((got * w).sum(), [s, vals])
    for a, b in zip(g_got, g_ref):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


def _shared_fraction(layer):
    """Mean over neighbouring neurons (o, o + 1) of the fraction of all pairs kept by both."""
    K = layer.bilinear_matrix().detach() != 0
    kept = K.flatten(1).float()
    return float((kept[:-1] * kept[1:]).sum(1).mean() / (layer._n * (layer._n - 1)))


def test_neighbouring_neurons_share_pairs_as_independent_masks_do():
    """Default masks: neighbours share about d² of the pairs (within 2x); the cyclic option shares far more."""
    d = 0.1
    layer = DLIFLinear(40, 64, sparsity=1 - d, seed=0)
    assert layer.mask == "independent"
    shared = _shared_fraction(layer)
    assert 0.5 * d * d < shared < 2 * d * d
    assert abs(layer.mask_density() - d) < 0.01
    cyclic = DLIFLinear(40, 64, sparsity=1 - d, seed=0, mask="cyclic")
    assert _shared_fraction(cyclic) > 4 * d * d
    # per-neuron kept fraction stays the paper's Bernoulli(d)
    per_neuron = (layer.bilinear_matrix().detach() != 0).flatten(1).float().mean(1) * 40 / 39
    assert float((per_neuron - d).abs().max()) < 0.04


@pytest.mark.parametrize("engine", ENGINES)
def test_independent_mask_layers_equal_the_reference_backend(engine):
    x = spikes(6, 3, 15, rate=0.3, seed=9, dtype=torch.float64)
    for build in (lambda b: DLIFLinear(15, 6, sparsity=0.7, backend=b, seed=3),
                  lambda b: DLIFConv2d(15, 4, 3, sparsity=0.7, backend=b, seed=3)):
        results = []
        for backend in (engine, "reference"):
            torch.manual_seed(0)
            layer = build(backend).double()
            with torch.no_grad():
                layer.bilinear_values.mul_(20.0)
            inp = (x if isinstance(layer, DLIFLinear) else x[..., None, None].expand(6, 3, 15, 4, 4).contiguous())
            inp = inp.clone().requires_grad_(True)
            y = layer(inp)
            params = [inp] + [p for p in layer.parameters() if p.requires_grad]
            results.append((y, torch.autograd.grad((y * torch.linspace(-1, 1, y.numel()).view_as(y)).sum()
                                                   + layer.input_current(inp[0]).pow(2).sum(), params)))
        (y_e, g_e), (y_r, g_r) = results
        assert torch.equal(y_e, y_r)
        for a, b in zip(g_e, g_r):
            torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


def test_mask_option_state_dicts_and_triton():
    cyclic = DLIFLinear(9, 4, sparsity=0.6, seed=1, mask="cyclic")
    with pytest.raises(RuntimeError, match="mask='cyclic'"):
        DLIFLinear(9, 4, sparsity=0.6, seed=2).load_state_dict(cyclic.state_dict())
    with pytest.raises(RuntimeError, match="mask='independent'"):
        DLIFLinear(9, 4, sparsity=0.6, seed=2, mask="cyclic").load_state_dict(DLIFLinear(9, 4, seed=1).state_dict())
    a, b = DLIFLinear(9, 4, sparsity=0.6, seed=1), DLIFLinear(9, 4, sparsity=0.6, seed=2)
    b.load_state_dict(a.state_dict())  # the saved independent mask (its random size) is adopted
    x = spikes(6, 2, 9, rate=0.5)
    assert torch.equal(a(x), b(x)) and torch.equal(a.bilinear_matrix(), b.bilinear_matrix())
    with pytest.raises(RuntimeError, match="cyclic-window masks only"):
        DLIFLinear(9, 4, backend="triton")(x)
    with pytest.raises(ValueError, match="mask"):
        DLIFLinear(9, 4, mask="random")
