"""The one dispatcher of dendrix.ops: backend vocabulary, "auto" order, forced backends that never fall back, the
dtype policy, and surrogates that own every form of their derivative (a new one is one class)."""

import math

import pytest
import torch

import dendrix.ops.common as ops_common
from dendrix.ops import alif, bilinear, dgn, lif, linear, rf
from dendrix.ops.dispatch import ENGINES, LazyEngine, compute_dtype, cuda_first, resolve, to_compute
from dendrix.ops.lif import leaky_sequence, lif_sequence
from dendrix.surrogate import SURROGATES, ATan, Surrogate, get_surrogate

T, B, N = 17, 3, 4


def test_every_op_speaks_the_one_vocabulary():
    for ops in (lif, alif, rf, dgn, bilinear):
        assert ops.BACKENDS[0] == "auto" and "reference" in ops.BACKENDS, ops.__name__
        assert set(ops.BACKENDS) <= set(ENGINES), ops.__name__
        assert isinstance(ops.TRITON_ENGINE, LazyEngine)
    assert linear.RECURRENCE_BACKENDS == ("auto", "reference", "fused")
    assert "reference" not in linear.RECURRENCE_METHODS and "loop" not in linear.RECURRENCE_METHODS


def test_auto_takes_the_first_engine_that_can_run_and_checks_lazily():
    calls = []

    def refuse():
        calls.append("gpu")
        return "no GPU here"

    assert resolve("auto", ("auto", "gpu", "cpu"), auto=("gpu", "cpu"), checks={"gpu": refuse}) == "cpu"
    assert calls == ["gpu"]
    assert resolve("auto", ("auto", "gpu", "cpu"), auto=("cpu",), checks={"gpu": refuse}) == "cpu"
    assert calls == ["gpu"], "an engine that auto does not consider must not be checked"
    assert resolve("auto", ("auto", "gpu", "cpu"), auto=("gpu", "cpu"), checks={"gpu": lambda: None}) == "gpu"


def test_a_forced_backend_runs_or_raises_with_the_reason():
    backends = ("auto", "gpu", "cpu")
    assert resolve("cpu", backends, auto=("cpu",)) == "cpu"
    with pytest.raises(RuntimeError, match="backend='gpu' cannot run this call: no GPU here"):
        resolve("gpu", backends, auto=("cpu",), checks={"gpu": lambda: "no GPU here"})
    with pytest.raises(ValueError, match="backend must be one of"):
        resolve("fast", backends, auto=("cpu",))


def test_cuda_first_never_picks_a_gpu_engine_for_cpu_tensors():
    assert cuda_first(torch.device("cpu"), ("triton", "fused"), ("fused",)) == ("fused",)
    assert cuda_first(torch.device("cuda"), ("triton", "fused"), ("fused",)) == ("triton", "fused")


def test_a_missing_optional_package_is_a_reason_not_an_import():
    engine = LazyEngine("dendrix.ops.lif.triton", package="dendrix_no_such_package", install="never")
    assert engine.load() is None and not engine.loaded
    assert "'dendrix_no_such_package' package is not installed" in engine.why_not()
    with pytest.raises(RuntimeError, match="not installed"):
        resolve("triton", ("auto", "fused", "triton"), auto=("fused",), checks={"triton": engine.check()})


def test_dtype_policy():
    for half in (torch.float16, torch.bfloat16):
        assert compute_dtype(torch.zeros(1, dtype=half)) == torch.float32
        assert compute_dtype(half) == torch.float32
        assert to_compute(torch.zeros(2, dtype=half)).dtype == torch.float32
    for full in (torch.float32, torch.float64):
        x = torch.zeros(2, dtype=full)
        assert compute_dtype(x) == full and to_compute(x) is x
    assert to_compute(None) is None


def test_half_precision_rf_is_computed_in_float32_on_every_path():
    g = torch.Generator().manual_seed(0)
    x = 30 * torch.rand(T, B, N, generator=g)
    omega, b0 = torch.full((N,), 5.0), torch.full((N,), -0.5)
    u0 = v0 = torch.zeros(B, N)
    for backend in ("fused", "reference"):
        out_h = rf.rf_sequence(x.half(), omega, b0, u0, v0, backend=backend, dt=0.05)
        out_32 = rf.rf_sequence(x.half().float(), omega, b0, u0, v0, backend=backend, dt=0.05)
        assert all(o.dtype == torch.float16 for o in out_h)
        assert out_32[0].sum() > 0
        for a, b in zip(out_h, out_32):
            assert torch.equal(a, b.half())


def test_linear_reference_backend_is_the_autograd_loop_only():
    b = torch.randn(10, 3, dtype=torch.float64)
    ref = linear.linear_recurrence(0.5, b, backend="reference")
    torch.testing.assert_close(ref, linear.sequential_recurrence(torch.tensor(0.5, dtype=torch.float64), b))
    torch.testing.assert_close(linear.linear_recurrence(0.5, b, method="sequential"), ref, rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match="backend='reference' runs method='sequential' only"):
        linear.linear_recurrence(0.5, b, method="scan", backend="reference")
    with pytest.raises(ValueError, match="backend"):
        linear.linear_recurrence(0.5, b, backend="triton")


# ---- surrogates own every form of their derivative ------------------------------------------------------------

class Softsign(Surrogate):
    """A surrogate defined only here, as one class: σ'(x) = k / (2 (1 + k|x|)²), with an in-place form."""

    name, param_name = "test_softsign", "k"

    def __init__(self, k: float = 3.0):
        super().__init__(k)

    def primitive(self, x):
        return 0.5 + 0.5 * x * self.value / (1 + self.value * x.abs())

    def derivative(self, x):
        return 0.5 * self.value / (1 + self.value * x.abs()) ** 2

    def derivative_(self, buf):
        return buf.abs_().mul_(self.value).add_(1.0).square_().reciprocal_().mul_(0.5 * self.value)


@pytest.fixture(params=[32767, 2 * B * N + 1], ids=["one-chunk", "many-chunks"])
def chunking(request, monkeypatch):
    monkeypatch.setattr(ops_common, "CHUNK_ELEMENTS", request.param)


def test_a_new_surrogate_class_runs_through_the_fused_lif_engine(chunking):
    sg = Softsign()
    x = torch.linspace(-2, 2, 100, dtype=torch.float64)  # even count: no point at the kink x = 0
    torch.testing.assert_close(sg.derivative_(x.clone()), sg.derivative(x), rtol=1e-12, atol=1e-12)
    h = 1e-6
    torch.testing.assert_close(sg.derivative(x), (sg.primitive(x + h) - sg.primitive(x - h)) / (2 * h),
                               rtol=1e-6, atol=1e-7)
    assert sg.triton_kind is None

    results = {}
    for backend in ("fused", "reference"):
        xs = (1.3 * torch.randn(T, B, N, dtype=torch.float64, generator=torch.Generator().manual_seed(1)) + 0.6)
        xs.requires_grad_()
        leak = torch.linspace(0.4, 0.9, N, dtype=torch.float64).requires_grad_()
        v0 = torch.zeros(B, N, dtype=torch.float64, requires_grad=True)
        spikes, hs, v_last = leaky_sequence(xs, v0, leak, 0.8, 0.05, surrogate=sg, backend=backend)
        w = torch.linspace(-1, 1, spikes.numel(), dtype=torch.float64).reshape(spikes.shape)
        loss = (spikes * w).sum() + (hs * w.flip(0)).sum() + v_last.sum()
        results[backend] = (spikes, hs, torch.autograd.grad(loss, [xs, v0, leak]))
    (s_f, h_f, g_f), (s_r, h_r, g_r) = results["fused"], results["reference"]
    assert 0 < s_f.mean() < 1
    assert torch.equal(s_f, s_r)
    torch.testing.assert_close(h_f, h_r, rtol=0, atol=1e-12)
    for a, b in zip(g_f, g_r):
        assert a.abs().max() > 0
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-10)


def test_a_new_surrogate_without_triton_form_falls_back_under_auto_and_is_refused_when_forced():
    x, v0 = torch.zeros(3, 2, 4), torch.zeros(2, 4)
    assert lif.resolve_backend("auto", x, v0, Softsign()) == "fused"
    with pytest.raises(RuntimeError, match="triton"):
        lif_sequence(x, v0, 0.5, surrogate=Softsign(), backend="triton")


def test_a_subclass_that_redefines_the_derivative_does_not_inherit_the_fast_forms():
    class Steeper(ATan):
        def derivative(self, x):
            return 2 * super().derivative(x)

    class Renamed(ATan):
        name = "renamed_atan"

    x = torch.linspace(-1, 1, 11, dtype=torch.float64)
    steep = Steeper()
    assert steep.triton_kind is None
    torch.testing.assert_close(steep.derivative_(x.clone()), 2 * ATan().derivative(x))
    assert Renamed().triton_kind == ATan.triton_kind
    torch.testing.assert_close(Renamed().derivative_(x.clone()), ATan().derivative(x), rtol=1e-12, atol=1e-12)


def test_built_in_surrogates_own_distinct_triton_forms():
    kinds = [cls.triton_kind for cls in SURROGATES.values()]
    assert None not in kinds and len(set(kinds)) == len(kinds)
    for name in SURROGATES:
        constants = get_surrogate(name).triton_constants()
        assert constants and all(isinstance(c, float) and math.isfinite(c) for c in constants), name
    with pytest.raises(NotImplementedError, match="no Triton kernel"):
        Softsign().triton_constants()
