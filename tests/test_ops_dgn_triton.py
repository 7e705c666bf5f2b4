"""The Triton DGN kernels (dendrix.ops.dgn.triton) against the plain per-step reference: forward, gradients.

Where it runs (CUDA, or CPU under ``TRITON_INTERPRET=1``): ``tests/triton_support.py``.
"""

import pytest
import torch

import dendrix.ops.dgn as dgn_ops
from dendrix.layers.dgn import DGNLinear
from dendrix.ops.dgn import dgn_membrane, resolve_backend, synaptic_trace
from dendrix.surrogate import Rectangular, get_surrogate
from triton_support import DEVICE, ON_CUDA, RUNS_KERNELS, needs_kernels, UnsupportedSurrogate


T, B, O = 9, 3, 5
SURROGATES = ["atan", "sigmoid", "triangle", "double_gaussian", "rectangular", "fast_sigmoid"]
F64 = dict(dtype=torch.float64, device=DEVICE)


def _inputs(seed=0, t=T, b=B, o=O):
    g = torch.Generator().manual_seed(seed)

    def rnd(*shape, scale=1.0, shift=0.0, normal=False):
        x = torch.randn(*shape, generator=g, dtype=torch.float64) if normal else \
            torch.rand(*shape, generator=g, dtype=torch.float64)
        return (x * scale + shift).to(DEVICE).requires_grad_()

    # G spans both sides of [0, 1/dt] so the clamp gate saturates at some steps; s0 mixes 0/1 spikes.
    G, I = rnd(t, b, o, scale=1.4, shift=-0.2), rnd(t, b, o, normal=True, scale=1.2, shift=0.3)
    v0 = rnd(b, o, normal=True)
    s0 = (torch.rand(b, o, generator=g) < 0.5).double().to(DEVICE).requires_grad_()
    rec = dict(recurrent_weight=rnd(o, o, normal=True), recurrent_conductance=rnd(o, o, normal=True, scale=0.2),
               recurrent_decay=0.6, rec_trace0=rnd(b, o))
    return G, I, v0, s0, rec


def _membrane(backend, G, I, v0, s0, rec, recurrent, **kw):
    rec = rec if recurrent else {}
    # With detach_reset the previous spike reaches nothing differentiable in the feed-forward case.
    uses_s0 = recurrent or not kw.get("detach_reset", False)
    rec_leaves = [rec["recurrent_weight"], rec["recurrent_conductance"], rec["rec_trace0"]] if recurrent else []
    leaves = [G, I, v0] + ([s0] if uses_s0 else []) + rec_leaves
    s, v, dr = dgn_membrane(G, I, v0, s0, dt=0.8, threshold=1.0, backend=backend, **rec, **kw)
    w = torch.linspace(-1, 2, s.shape[-1], dtype=s.dtype, device=s.device)
    loss = (s * w).sum() + 0.3 * v.square().sum() + (dr.square().sum() if dr is not None else 0.0)
    return (s, v, dr), torch.autograd.grad(loss, leaves)


def _assert_same(got, want, *, atol=1e-12, grad_rtol=1e-9, grad_atol=1e-10):
    (out_t, grads_t), (out_r, grads_r) = got, want
    assert 0 < out_r[0].mean() < 1, "no or only spikes: the comparison would be vacuous"
    assert torch.equal(out_t[0], out_r[0])
    for a, b in zip(out_t[1:], out_r[1:]):
        if b is not None:
            torch.testing.assert_close(a, b, rtol=0, atol=atol)
    assert len(grads_t) == len(grads_r)
    for a, b in zip(grads_t, grads_r):
        assert b.abs().max() > 0
        torch.testing.assert_close(a, b, rtol=grad_rtol, atol=grad_atol)


@needs_kernels
@pytest.mark.parametrize("recurrent", [False, True])
@pytest.mark.parametrize("gate", ["clamp", "sigmoid"])
@pytest.mark.parametrize("detach_reset", [False, True])
def test_membrane_equals_reference_forward_and_all_gradients(recurrent, gate, detach_reset):
    G, I, v0, s0, rec = _inputs()
    kw = dict(gate=gate, detach_reset=detach_reset)
    _assert_same(_membrane("triton", G, I, v0, s0, rec, recurrent, **kw),
                 _membrane("reference", G, I, v0, s0, rec, recurrent, **kw))


@needs_kernels
@pytest.mark.parametrize("name", SURROGATES)
def test_every_surrogate_gives_reference_gradients(name):
    G, I, v0, s0, rec = _inputs(seed=1)
    sg = get_surrogate(name)
    for recurrent, gate in ((False, "sigmoid"), (True, "clamp")):
        _assert_same(_membrane("triton", G, I, v0, s0, rec, recurrent, gate=gate, surrogate=sg),
                     _membrane("reference", G, I, v0, s0, rec, recurrent, gate=gate, surrogate=sg))


@needs_kernels
def test_surrogate_parameters_reach_the_kernel():
    G, I, v0, s0, rec = _inputs(seed=2)
    for sg in [get_surrogate("atan", alpha=5.0), get_surrogate("double_gaussian", sigma=0.3, h=0.3, s=3.0),
               Rectangular(0.4)]:
        _assert_same(_membrane("triton", G, I, v0, s0, rec, False, surrogate=sg),
                     _membrane("reference", G, I, v0, s0, rec, False, surrogate=sg))


@needs_kernels
@pytest.mark.parametrize("shared_reversal", [False, True])
@pytest.mark.parametrize("recurrent", [False, True])
def test_layer_equals_reference_all_parameters_input_and_state(shared_reversal, recurrent):
    """DGN / S-DGN, feed-forward / recurrent, with bias, a learnable initial state and both gates: spikes, every
    parameter gradient, the input gradient and the state gradients. The layer hands the kernels row-strided
    views of its stacked [C; W] matmul, so this also covers in-place strided reads."""
    g = torch.Generator().manual_seed(3)
    x = (torch.rand(10, 3, 10, generator=g) < 0.4).double().to(DEVICE).requires_grad_()
    for gate in ("clamp", "sigmoid"):
        results = {}
        for backend in ("triton", "reference"):
            torch.manual_seed(0)
            layer = DGNLinear(10, 6, recurrent=recurrent, shared_reversal=shared_reversal, gate=gate, bias=True,
                              backend=backend).to(**F64)
            with torch.no_grad():  # strong enough synapses that the layer spikes often
                (layer.reversal if shared_reversal else layer.weight).mul_(3.0)
            state = layer.init_state(x[0])
            state = type(state)(*(0.3 * torch.ones_like(s) for s in state))
            leaves = [p for p in state]
            for p in leaves:
                p.requires_grad_()
            y, final = layer.run(x, state)
            w = torch.linspace(-1, 1, y.shape[-1], **F64)
            loss = (y * w).sum() + final.v.square().sum() + final.trace.sum()
            if recurrent:
                loss = loss + final.rec_trace.square().sum()
            params = list(layer.parameters())
            results[backend] = (y, torch.autograd.grad(loss, params + [x] + leaves, allow_unused=True,
                                                       materialize_grads=True))
        (y_t, g_t), (y_r, g_r) = results["triton"], results["reference"]
        assert 0 < y_r.mean() < 1 and torch.equal(y_t, y_r)
        for a, b in zip(g_t, g_r):
            torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-10)
        assert all(b.abs().max() > 0 for b in g_r[:len(params) + 1])


@needs_kernels
def test_synaptic_trace_forward_and_gradients():
    g = torch.Generator().manual_seed(4)
    z = torch.rand(T, B, 7, generator=g, dtype=torch.float64).to(DEVICE).requires_grad_()
    d0 = torch.rand(B, 7, generator=g, dtype=torch.float64).to(DEVICE).requires_grad_()
    w = torch.randn(T, B, 7, generator=g, dtype=torch.float64).to(DEVICE)
    got = [synaptic_trace(z, 0.7, d0, backend=b) for b in ("triton", "reference")]
    torch.testing.assert_close(got[0], got[1], rtol=0, atol=1e-14)
    grads = [torch.autograd.grad((d * w).sum(), [z, d0]) for d in got]
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-14)
    with torch.no_grad():  # the no-grad path, without d0, and a strided (transposed) input
        zt = z.detach().transpose(1, 2)
        torch.testing.assert_close(synaptic_trace(zt, 0.5, backend="triton"),
                                   synaptic_trace(zt, 0.5, backend="reference"), rtol=0, atol=1e-14)


@needs_kernels
def test_odd_shapes_several_blocks_and_chunked_recurrent_matvec():
    """Feed-forward: a 4-D step (several programs, partial last block) and T = 1. Recurrent: 70 neurons, so the
    mat-vec runs over several column chunks with masked tails; non-contiguous inputs are copied."""
    G, I, v0, s0, rec = _inputs(seed=5, t=5, b=2, o=70)
    with torch.no_grad():
        rec["recurrent_conductance"].mul_(0.1)
        rec["recurrent_weight"].mul_(0.3)
    _assert_same(_membrane("triton", G, I, v0, s0, rec, True), _membrane("reference", G, I, v0, s0, rec, True))
    g = torch.Generator().manual_seed(6)
    for shape in [(6, 2, 7, 13), (1, 2, 200)]:
        Gs = (torch.rand(shape, generator=g, dtype=torch.float64) * 1.2).to(DEVICE).requires_grad_()
        Is = (torch.randn(shape, generator=g, dtype=torch.float64) + 0.8).to(DEVICE).requires_grad_()
        v0s = torch.rand(shape[1:], generator=g, dtype=torch.float64).to(DEVICE).requires_grad_()
        s0s = torch.zeros(shape[1:], **F64).requires_grad_()
        _assert_same(_membrane("triton", Gs, Is, v0s, s0s, {}, False),
                     _membrane("reference", Gs, Is, v0s, s0s, {}, False))
    Gt = G.detach().transpose(0, 1).contiguous().transpose(0, 1).requires_grad_()  # [T, B, O] with strides of [B, T, O]
    _assert_same(_membrane("triton", Gt, I, v0, s0, rec, True), _membrane("reference", Gt, I, v0, s0, rec, True))


@needs_kernels
def test_broadcast_initial_states():
    """v0 [out], s0 scalar and rec_trace0 [out] broadcast over the batch; their gradients are summed back."""
    G, I, v0, s0, rec = _inputs(seed=11, t=6)
    v0_b = v0.detach()[0].clone().requires_grad_()
    s0_b = torch.tensor(1.0, **F64, requires_grad=True)
    rec["rec_trace0"] = rec["rec_trace0"].detach()[0].clone().requires_grad_()
    for recurrent in (False, True):
        _assert_same(_membrane("triton", G, I, v0_b, s0_b, rec, recurrent),
                     _membrane("reference", G, I, v0_b, s0_b, rec, recurrent))


@needs_kernels
def test_missing_output_gradients():
    """Only spikes, only V, or only the last recurrent trace carry a gradient (autograd passes None for the rest)."""
    G, I, v0, s0, rec = _inputs(seed=7, t=6)
    for pick in range(3):
        got = []
        for backend in ("triton", "reference"):
            out = dgn_membrane(G, I, v0, s0, dt=0.8, threshold=1.0, backend=backend, **rec)
            got.append(torch.autograd.grad(out[pick].square().sum(), [G, I, rec["recurrent_weight"]]))
        for a, b in zip(*got):
            torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-10)


@needs_kernels
def test_gradcheck_triton_functions():
    """Subthreshold (θ high, a narrow rectangular surrogate): the Heaviside has zero derivative analytically and
    numerically, so gradcheck verifies the exact gradients of both Functions (clamp gate feed-forward, sigmoid
    gate recurrent; the tests above compare both gates in both kernels, and the spike paths, with the reference)."""
    from dendrix.ops.dgn.triton import DGNMembraneTritonFunction, SynapticTraceTritonFunction

    g = torch.Generator().manual_seed(8)
    t, b, o = 4, 2, 3

    def rnd(*shape, scale=1.0, shift=0.0):
        return (torch.rand(*shape, generator=g, dtype=torch.float64) * scale + shift).to(DEVICE).requires_grad_()

    G, I = rnd(t, b, o, scale=0.8, shift=0.1), rnd(t, b, o, scale=2, shift=-1)
    v0, s0 = rnd(b, o, scale=2, shift=-1), rnd(b, o)
    Wr, Cr, dr0 = rnd(o, o, scale=2, shift=-1), rnd(o, o, scale=0.2, shift=-0.1), rnd(b, o)
    sg = Rectangular(0.5)
    fast = not ON_CUDA  # the CPU interpreter is slow: random projections there

    def ff(G, I, v0, s0):
        return DGNMembraneTritonFunction.apply(G, I, v0, s0, None, None, None, 0.9, 20.0, "clamp", sg, False, 0.0)

    def rec(G, I, v0, s0, Wr, Cr, dr0):
        return DGNMembraneTritonFunction.apply(G, I, v0, s0, Wr, Cr, dr0, 0.9, 20.0, "sigmoid", sg, False, 0.7)

    assert torch.autograd.gradcheck(ff, (G, I, v0, s0), fast_mode=fast)
    assert torch.autograd.gradcheck(rec, (G, I, v0, s0, Wr, Cr, dr0), fast_mode=fast)
    z, d0 = rnd(t, b, 4), rnd(b, 4)
    assert torch.autograd.gradcheck(lambda z, d0: SynapticTraceTritonFunction.apply(z, d0, 0.8), (z, d0),
                                    fast_mode=fast)


@needs_kernels
def test_float32_and_half_precision_layer():
    """float32 kernels agree with a float64 reference to float32 rounding; half inputs compute in float32."""
    torch.manual_seed(9)
    layer = DGNLinear(10, 6, recurrent=True, backend="triton").to(DEVICE)
    with torch.no_grad():
        layer.weight.mul_(3.0)
    g = torch.Generator().manual_seed(9)
    x = (torch.rand(12, 3, 10, generator=g) < 0.4).float().to(DEVICE)
    y = layer(x)
    ref = DGNLinear(10, 6, recurrent=True, backend="reference").to(**F64)
    ref.load_state_dict({k: v.double() for k, v in layer.state_dict().items()})
    _, st = ref.run(x.double())
    _, st32 = layer.run(x)
    torch.testing.assert_close(st32.v.double(), st.v, rtol=0, atol=1e-4)
    assert 0 < y.mean() < 1 and y.dtype == torch.float32
    for dtype in (torch.float16, torch.bfloat16):
        y_h = layer(x.to(dtype))
        assert y_h.dtype == dtype and torch.equal(y_h.float(), y)


@needs_kernels
def test_saves_what_the_fused_engine_saves():
    """Feed-forward: the gate argument and V ([T, B, out] each) plus v0; nothing for the trace."""
    from dendrix.ops.dgn.triton import DGNMembraneTritonFunction

    G, I, v0, s0, _ = _inputs(seed=10)
    saved = {}

    def pack(tensor):
        saved[tensor.untyped_storage().data_ptr()] = tensor.untyped_storage().nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        s, v = DGNMembraneTritonFunction.apply(G, I, v0, s0, None, None, None, 0.8, 1.0, "clamp",
                                               get_surrogate("atan"), False, 0.0)
        synaptic_trace(G, 0.5, backend="triton")
    assert sum(saved.values()) == (2 * G.numel() + v0.numel()) * 8


# ---- dispatch: run everywhere (no GPU, with or without triton) ----

def test_auto_uses_fused_on_cpu_and_forced_triton_never_falls_back_silently():
    x = torch.zeros(4, 2, 3)
    assert resolve_backend("auto", {"conductance": x}, get_surrogate("atan")) == "fused"
    assert resolve_backend("fused", {"conductance": x}, get_surrogate("atan")) == "fused"
    assert dgn_ops.BACKENDS == ("auto", "fused", "triton", "numba", "reference")
    if RUNS_KERNELS:
        assert resolve_backend("triton", {"conductance": x.to(DEVICE)}, get_surrogate("atan")) == "triton"
    else:  # no triton, or CPU tensors without the interpreter: a clear error, not the fused engine
        with pytest.raises(RuntimeError, match="triton"):
            dgn_membrane(x, x, x[0], x[0], dt=1.0, threshold=1.0, backend="triton")
        with pytest.raises(RuntimeError, match="triton"):
            synaptic_trace(x, 0.5, backend="triton")


@needs_kernels
def test_unsupported_cases_fall_back_in_auto_and_fail_when_forced():
    x = torch.zeros(4, 2, 3, device=DEVICE)
    odd = UnsupportedSurrogate()
    with pytest.raises(RuntimeError, match="surrogate"):
        dgn_membrane(x, x, x[0], x[0], dt=1.0, threshold=1.0, surrogate=odd, backend="triton")
    with pytest.raises(RuntimeError, match="dtype"):
        dgn_membrane(x, x.double(), x[0], x[0], dt=1.0, threshold=1.0, backend="triton")
    if ON_CUDA:
        atan = get_surrogate("atan")
        assert resolve_backend("auto", {"conductance": x}, odd) == "fused"
        assert resolve_backend("auto", {"conductance": x.half()}, atan) == "fused"
        wide = dgn_ops.AUTO_MAX_RECURRENT_FEATURES + 1
        assert resolve_backend("auto", {"conductance": x}, atan, recurrent_features=wide) == "fused"
        assert resolve_backend("auto", {"conductance": x}, atan, recurrent_features=wide - 1) == "triton"


@pytest.mark.skipif(not ON_CUDA, reason="needs CUDA + triton")
def test_auto_picks_triton_on_cuda():
    x = torch.rand(4, 2, 3, device="cuda")
    assert resolve_backend("auto", {"conductance": x}, get_surrogate("atan")) == "triton"
    assert resolve_backend("auto", {"z": x.double()}) == "triton"
    layer = DGNLinear(3, 4, recurrent=True).cuda()
    forced = DGNLinear(3, 4, recurrent=True, backend="triton").cuda()
    forced.load_state_dict(layer.state_dict())
    assert torch.equal(layer(x), forced(x))
