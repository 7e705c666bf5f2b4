"""The Triton bilinear engine (dendrix.ops.bilinear.triton) against the dense reference: forward and gradients.

Where it runs (CUDA, or CPU under ``TRITON_INTERPRET=1``): ``tests/triton_support.py``.
"""

import pytest
import torch

import dendrix.ops.bilinear as bilinear_ops
from dendrix.layers import DLIFLinear
from dendrix.ops.bilinear import (PairLayout, bilinear_form, bilinear_reference, build_layout, dense_matrix,
                                  resolve_backend)
from dendrix.ops.bilinear.autograd import BilinearForm
from triton_support import DEVICE, HAS_TRITON, INTERPRET, ON_CUDA, needs_kernels


def spikes(*shape, rate, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(*shape, generator=g) < rate).to(dtype).to(DEVICE)


def layout_on_device(lay: PairLayout) -> PairLayout:
    return PairLayout(lay.in_features, lay.out_features, lay.m, lay.start.to(DEVICE), lay.extra_pair.to(DEVICE))


def compare(lay, s, vals, *, rtol=1e-12, atol=1e-12, need_input_grad=True):
    """Forward, value gradient and input gradient of the Triton engine against the dense reference."""
    s = s.clone().requires_grad_(need_input_grad)
    vals = vals.clone().requires_grad_(True)
    ref = bilinear_reference(s, vals, lay)
    got = bilinear_form(s, vals, lay, backend="triton")
    torch.testing.assert_close(got, ref, rtol=rtol, atol=atol)
    g = torch.randn(ref.shape, generator=torch.Generator().manual_seed(7), dtype=torch.float64).to(ref)
    inputs = (s, vals) if need_input_grad else (vals,)
    grads_ref = torch.autograd.grad(ref, inputs, g)
    grads = torch.autograd.grad(got, inputs, g)
    for a, b in zip(grads, grads_ref):
        torch.testing.assert_close(a, b, rtol=rtol, atol=atol)
    return ref, grads_ref


# (in, out, density): m = floor(density·out) window values per pair, plus extras when density·out is fractional.
LAYOUTS = [
    (12, 5, 0.3),    # m = 1, extras
    (10, 20, 0.1),   # m = 2, no extras
    (2, 1, 1.0),     # one pair, one output
    (9, 4, 1.0),     # density 1: every pair keeps every output (m = out)
    (8, 5, 0.1),     # m = 0: extras only
    (20, 7, 0.5),    # m = 3, extras
    (6, 80, 0.6),    # m = 48 > 32: windows processed in chunks
    (5, 300, 0.3),   # out > 128: several column blocks in the forward; m = 90
    (90, 24, 0.2),   # n > 64: several input blocks in the input gradient
]


@needs_kernels
@pytest.mark.parametrize("n,out,density", LAYOUTS)
def test_forward_and_gradients_equal_reference_float64(n, out, density):
    gen = torch.Generator().manual_seed(n * 1000 + out)
    lay = layout_on_device(build_layout(n, out, density, generator=gen))
    vals = torch.randn(lay.nnz, generator=gen, dtype=torch.float64).to(DEVICE)
    rate = 0.1 if n > 50 else 0.45
    s = spikes(5 if n > 50 else 11, n, rate=rate, seed=n)
    assert s.sum(1).max() >= 2, "no active pair: the comparison would be vacuous"
    ref, grads = compare(lay, s, vals)
    assert ref.abs().max() > 0 and all(gr.abs().max() > 0 for gr in grads)


@needs_kernels
@pytest.mark.parametrize("extras", [False, True])
def test_wrapped_windows(extras):
    """Windows that run past the last output wrap onto the first ones (every pair starts near the end)."""
    n, out, m = 7, 6, 3
    pairs = n * (n - 1) // 2
    start = torch.tensor([out - 1 - (p % 2) for p in range(pairs)], dtype=torch.int16)
    extra_pair = torch.arange(0, pairs, 3) if extras else torch.empty(0, dtype=torch.long)
    lay = layout_on_device(PairLayout(n, out, m, start, extra_pair))
    vals = torch.randn(lay.nnz, generator=torch.Generator().manual_seed(3), dtype=torch.float64).to(DEVICE)
    s = spikes(9, n, rate=0.5, seed=2)
    ref, _ = compare(lay, s, vals)
    assert ref[:, :m].abs().max() > 0  # wrapped outputs received values


@needs_kernels
@pytest.mark.parametrize("rate", [0.0, 1.0])
def test_no_spikes_and_all_spikes(rate):
    lay = layout_on_device(build_layout(10, 6, 0.4, generator=torch.Generator().manual_seed(4)))
    vals = torch.randn(lay.nnz, generator=torch.Generator().manual_seed(5), dtype=torch.float64).to(DEVICE)
    s = spikes(5, 10, rate=rate)
    ref, grads = compare(lay, s, vals)
    if rate == 0.0:  # no active pair: zero output; d/ds_b = 2 Σ_a K_ab s_a g and d/dK vanish at s = 0
        assert ref.abs().max() == 0 and all(gr.abs().max() == 0 for gr in grads)
    else:
        assert ref.abs().max() > 0 and all(gr.abs().max() > 0 for gr in grads)


@needs_kernels
def test_float32_matches_float64_reference_within_atomic_rounding():
    """float32 sums (value gradient by atomics, in varying order) agree with the float64 reference."""
    gen = torch.Generator().manual_seed(11)
    lay = layout_on_device(build_layout(30, 30, 0.1, generator=gen))
    vals = torch.randn(lay.nnz, generator=gen, dtype=torch.float64).to(DEVICE)
    s = spikes(10, 30, rate=0.3, seed=1)
    s32, v32 = s.float().requires_grad_(True), vals.float().requires_grad_(True)
    got = bilinear_form(s32, v32, lay, backend="triton")
    assert got.dtype == torch.float32
    g = torch.randn(got.shape, generator=gen, dtype=torch.float64).to(DEVICE)
    gs, gv = torch.autograd.grad(got, (s32, v32), g.float())
    s64, v64 = s.clone().requires_grad_(True), vals.clone().requires_grad_(True)
    ref = bilinear_reference(s64, v64, lay)
    gs_ref, gv_ref = torch.autograd.grad(ref, (s64, v64), g)
    for a, b in [(got, ref), (gs, gs_ref), (gv, gv_ref)]:
        torch.testing.assert_close(a.double(), b, rtol=1e-5, atol=1e-4)


@needs_kernels
def test_gradcheck_values():
    lay = layout_on_device(build_layout(5, 3, 0.5, generator=torch.Generator().manual_seed(1)))
    vals = torch.randn(lay.nnz, dtype=torch.float64, device=DEVICE, requires_grad=True)
    s = spikes(4, 5, rate=0.6, seed=3)
    assert torch.autograd.gradcheck(lambda v: BilinearForm.apply(s, v, lay, "triton", True), (vals,),
                                    fast_mode=True)


@needs_kernels
def test_input_gradient_equals_quadratic_form_derivative():
    # gradcheck would perturb s off {0, 1}; the analytic derivative of sᵀKs is 2Ks (K symmetric).
    lay = layout_on_device(build_layout(8, 3, 0.6, generator=torch.Generator().manual_seed(2)))
    vals = torch.randn(lay.nnz, dtype=torch.float64, device=DEVICE)
    s = spikes(11, 8, rate=0.5, seed=4).requires_grad_(True)
    g = torch.randn(11, 3, dtype=torch.float64, device=DEVICE)
    (gs,) = torch.autograd.grad(BilinearForm.apply(s, vals, lay, "triton", True), s, g)
    K = dense_matrix(vals, lay)
    torch.testing.assert_close(gs, 2 * torch.einsum("ro,oij,rj->ri", g, K, s.detach()))


@needs_kernels
def test_saves_active_lists_not_the_input():
    lay = layout_on_device(build_layout(10, 6, 0.4, generator=torch.Generator().manual_seed(6)))
    vals = torch.randn(lay.nnz, dtype=torch.float64, device=DEVICE, requires_grad=True)
    s = spikes(7, 10, rate=0.4, seed=6)
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        BilinearForm.apply(s, vals, lay, "triton", True)
    assert [t.dtype for t in saved] == [torch.int64, torch.int32]  # row pointers, input indices
    assert saved[0].shape == (8,) and saved[1].numel() == int(s.sum())


@needs_kernels
def test_half_input_and_non_binary_input():
    lay = layout_on_device(build_layout(10, 6, 0.4, generator=torch.Generator().manual_seed(8)))
    vals = torch.randn(lay.nnz, device=DEVICE)
    s = spikes(5, 10, rate=0.4, dtype=torch.float32)
    got = bilinear_form(s.half(), vals, lay, backend="triton")
    assert got.dtype == torch.float16
    torch.testing.assert_close(got.float(), bilinear_reference(s, vals, lay), rtol=2e-3, atol=2e-3)
    with pytest.raises(ValueError, match="binary"):
        bilinear_form(s * 0.5, vals, lay, backend="triton")


@needs_kernels
def test_dlif_layer_on_triton_equals_reference_backend():
    x = spikes(6, 3, 15, rate=0.3, seed=9).requires_grad_(True)
    results = []
    for backend in ("triton", "reference"):
        torch.manual_seed(0)  # same synaptic weights for both layers
        layer = DLIFLinear(15, 6, sparsity=0.7, mask="cyclic", backend=backend, seed=3).double().to(DEVICE)
        layer.bilinear_values.data.mul_(20.0)  # a K large enough to change spikes
        cur = layer._bilinear(x.reshape(-1, 15))
        y = layer(x)
        params = [x] + [p for p in layer.parameters() if p.requires_grad]
        results.append((cur, y, torch.autograd.grad((cur.sum(1) ** 2).sum() + y.sum(), params)))
    (c_t, y_t, g_t), (c_r, y_r, g_r) = results
    assert 0 < y_r.mean() < 1 and torch.equal(y_t, y_r)
    torch.testing.assert_close(c_t, c_r, rtol=1e-12, atol=1e-12)
    for a, b in zip(g_t, g_r):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


@pytest.mark.skipif(not HAS_TRITON or INTERPRET, reason="needs triton, compiled mode (TRITON_INTERPRET unset)")
@pytest.mark.parametrize("dtype", ["fp32", "fp64"])
def test_kernels_compile_for_sm90_without_a_gpu(dtype):
    """Ahead-of-time compilation to an H100 binary (Triton's bundled ptxas): catches what the CPU interpreter
    accepts but the compiler refuses (loop-carried types, layouts)."""
    from triton import compile as triton_compile
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    from dendrix.ops.bilinear import triton as engine

    ptr = f"*{dtype}"
    lists = {"aptr": "*i64", "aidx": "*i32", "start": "*i16"}
    kernels = [
        (engine._forward_kernel, {**lists, "main_val": ptr, "extra_val": ptr, "out_ptr": ptr, "n": "i32",
                                  "m": "i32", "out_f": "i32"}, {"BLOCK_J": 16, "BLOCK_O": 128}),
        (engine._grad_values_kernel, {**lists, "g": ptr, "grad_main": ptr, "grad_extra": ptr, "n": "i32",
                                      "m": "i32", "width": "i32"}, {"BLOCK_J": 32, "BLOCK_M": 16}),
        (engine._grad_input_kernel, {**lists, "main_val": ptr, "extra_val": ptr, "g": ptr, "grad_s": ptr,
                                     "n": "i32", "m": "i32", "width": "i32"}, {"BLOCK_B": 64, "BLOCK_M": 16}),
    ]
    for fn, signature, blocks in kernels:
        consts = {"HAS_MAIN": True, "HAS_EXTRA": True, **blocks}
        signature = {**signature, **{name: "constexpr" for name in consts}}
        compiled = triton_compile(ASTSource(fn=fn, signature=signature, constexprs=consts),
                                  target=GPUTarget("cuda", 90, 32), options={"num_warps": 4})
        assert compiled.asm["cubin"], fn.__name__


# ---- dispatch: run everywhere (no GPU, with or without triton) ----

def test_auto_never_picks_triton_on_cpu_and_forced_triton_never_falls_back_silently():
    assert "triton" in bilinear_ops.BACKENDS
    assert resolve_backend("auto", torch.device("cpu")) in ("numba", "torch")
    lay = build_layout(6, 4, 0.5)
    vals = torch.randn(lay.nnz)
    s = (torch.rand(3, 6) < 0.5).float()
    if HAS_TRITON and INTERPRET:
        assert resolve_backend("triton", torch.device("cpu")) == "triton"
    else:  # no triton, or CPU tensors without the interpreter: a clear error, not another engine
        with pytest.raises(RuntimeError, match="triton"):
            bilinear_form(s, vals, lay, backend="triton")


@pytest.mark.skipif(not ON_CUDA, reason="needs CUDA + triton")
def test_auto_picks_triton_on_cuda():
    assert resolve_backend("auto", torch.device("cuda")) == "triton"
    lay = layout_on_device(build_layout(20, 8, 0.3))
    vals = torch.randn(lay.nnz, device="cuda")
    s = spikes(16, 20, rate=0.3, dtype=torch.float32)
    assert torch.equal(bilinear_form(s, vals, lay), bilinear_form(s, vals, lay, backend="triton"))
