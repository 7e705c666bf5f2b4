"""The numba engine of the recurrent DGN membrane (``ops/dgn/numba_recurrent.py``, ``backend="numba"``).

Checked against the fused engine (``DGNMembraneFunction``): spikes equal and potentials and every gradient close
(float64 to 1e-10: the per-step product sums in another order than MKL's addmm, so not bit for bit); with
``torch.autograd.gradcheck`` in float64 through outputs whose true derivative the backward computes exactly (a
zero surrogate, or the potentials only with a detached reset); and through the dispatcher and the layer.
"""

from __future__ import annotations

import itertools

import pytest
import torch

pytest.importorskip("numba")

import dendrix.ops.dgn as dgn_ops  # noqa: E402
from dendrix.layers.dgn import DGNLinear  # noqa: E402
from dendrix.ops.dgn import dgn_membrane, resolve_backend  # noqa: E402
from dendrix.ops.dgn.fused import DGNMembraneFunction  # noqa: E402
from dendrix.ops.dgn.numba_recurrent import DGNMembraneNumbaFunction  # noqa: E402
from dendrix.surrogate import Surrogate, get_surrogate  # noqa: E402
from surrogate_support import ZeroNumbaSurrogate  # noqa: E402

NAMES = ("conductance", "current", "v0", "s0", "W_rec", "C_rec", "rec_trace0")


def _inputs(dtype, T=23, B=6, n=9, seed=0):
    """A case with spikes and recurrent traces (B and n not multiples of 4: the kernel's remainder loops)."""
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(T, B, n, generator=g, dtype=dtype) * 0.7,              # G: gate args around [0.3, 1]
            torch.randn(T, B, n, generator=g, dtype=dtype) + 0.3,             # I
            torch.randn(B, n, generator=g, dtype=dtype) * 0.4,                 # v0
            (torch.rand(B, n, generator=g) < 0.3).to(dtype),                   # s0
            torch.randn(n, n, generator=g, dtype=dtype) * 0.5,                 # W_rec
            torch.rand(n, n, generator=g, dtype=dtype) * 0.15,                 # C_rec
            torch.rand(B, n, generator=g, dtype=dtype))                        # Dr[0]


def _run(function, inputs, gate, surrogate, detach, present, seed=1):
    """Outputs and the gradients of a random linear function of the outputs named in ``present``."""
    leaves = [t.clone().requires_grad_() for t in inputs]
    s, v, last = function(*leaves, 0.9, 1.0, gate, get_surrogate(surrogate), detach, 0.75)
    g = torch.Generator().manual_seed(seed)
    loss = 0.0
    for name, out in (("s", s), ("v", v), ("last", last)):
        if name in present:
            loss = loss + (out * torch.randn(out.shape, generator=g, dtype=out.dtype)).sum()
    grads = torch.autograd.grad(loss, leaves, allow_unused=True)
    return (s, v, last), grads


CASES = list(itertools.product(("clamp", "sigmoid"), ("atan", "double_gaussian", "triangle", "sigmoid"),
                               (False, True)))


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("gate,surrogate,detach", CASES)
def test_numba_equals_fused_on_outputs_and_every_gradient(dtype, gate, surrogate, detach):
    tol = 1e-10 if dtype == torch.float64 else 2e-5
    inputs = _inputs(dtype)
    for present in (("s", "v", "last"), ("s",), ("v", "last"), ("last",)):
        (s1, v1, l1), g1 = _run(DGNMembraneFunction.apply, inputs, gate, surrogate, detach, present)
        (s2, v2, l2), g2 = _run(DGNMembraneNumbaFunction.apply, inputs, gate, surrogate, detach, present)
        assert 0 < s1.mean() < 1
        assert torch.equal(s1, s2), f"{int((s1 != s2).sum())} spikes differ"
        torch.testing.assert_close(v2, v1, rtol=tol, atol=tol)
        torch.testing.assert_close(l2, l1, rtol=0, atol=0)        # Dr is 0/1 spikes and fmas: exact
        for name, a, b in zip(NAMES, g1, g2):
            assert (a is None) == (b is None), name
            if a is not None:
                scale = max(1.0, float(a.abs().max()))
                torch.testing.assert_close(b, a, rtol=tol, atol=tol * scale, msg=f"{name} {present}")


@pytest.mark.parametrize("gate", ["clamp", "sigmoid"])
def test_gradcheck_with_a_zero_surrogate(gate):
    """Zero σ': the spikes are constants of the inputs, the backward is the exact derivative of V and Dr[T]."""
    inputs = [t.clone().requires_grad_() for t in _inputs(torch.float64, T=5, B=2, n=3, seed=3)]
    sg = ZeroNumbaSurrogate()

    def f(*xs):
        return DGNMembraneNumbaFunction.apply(*xs, 0.9, 1.0, gate, sg, False, 0.75)

    assert torch.autograd.gradcheck(f, inputs, eps=1e-6, atol=1e-7)


@pytest.mark.parametrize("surrogate", ["atan", "triangle"])
def test_gradients_match_the_reference_in_float64(surrogate):
    """Against the per-step reference differentiated by autograd (soft reset not detached, surrogate on)."""
    inputs = _inputs(torch.float64, T=9, B=3, n=5, seed=4)
    leaves_a = [t.clone().requires_grad_() for t in inputs]
    leaves_b = [t.clone().requires_grad_() for t in inputs]
    kw = dict(dt=0.9, threshold=1.0, gate="sigmoid", surrogate=surrogate, recurrent_decay=0.75)
    out_a = dgn_membrane(*leaves_a[:4], recurrent_weight=leaves_a[4], recurrent_conductance=leaves_a[5],
                         rec_trace0=leaves_a[6], backend="reference", **kw)
    out_b = dgn_membrane(*leaves_b[:4], recurrent_weight=leaves_b[4], recurrent_conductance=leaves_b[5],
                         rec_trace0=leaves_b[6], backend="numba", **kw)
    assert torch.equal(out_a[0], out_b[0])
    ga = torch.autograd.grad(sum(o.sum() for o in out_a), leaves_a)
    gb = torch.autograd.grad(sum(o.sum() for o in out_b), leaves_b)
    for name, a, b in zip(NAMES, ga, gb):
        torch.testing.assert_close(b, a, rtol=1e-10, atol=1e-10, msg=name)


def test_broadcast_initial_states_and_a_zero_trace_decay():
    """[out] initial states (gradients summed back by autograd) and λ = 0 (addmm's beta = 0 ignores g_Dr)."""
    G, I, _, _, W, C, _ = _inputs(torch.float64, T=7, B=4, n=5, seed=5)
    v0 = torch.full((5,), 0.2, dtype=torch.float64, requires_grad=True)
    s0 = torch.zeros(5, dtype=torch.float64, requires_grad=True)
    results = []
    for backend in ("fused", "numba"):
        leaves = [t.clone().requires_grad_() for t in (G, I, W, C)]
        s, v, last = dgn_membrane(leaves[0], leaves[1], v0, s0, dt=1.0, threshold=1.0, recurrent_weight=leaves[2],
                                  recurrent_conductance=leaves[3], recurrent_decay=0.0, backend=backend)
        grads = torch.autograd.grad(s.sum() + v.sum() + last.sum(), [*leaves, v0, s0])
        results.append((s, v, last, grads))
    (s1, v1, l1, g1), (s2, v2, l2, g2) = results
    assert torch.equal(s1, s2) and torch.equal(l1, l2)
    torch.testing.assert_close(v2, v1, rtol=1e-12, atol=1e-12)
    for a, b in zip(g1, g2):
        assert a.shape == b.shape
        torch.testing.assert_close(b, a, rtol=1e-10, atol=1e-10)


def test_non_finite_potentials_give_nan_spikes_as_the_fused_engine():
    G, I, v0, s0, W, C, d0 = _inputs(torch.float32, T=8, B=4, n=5, seed=6)
    I = I.clone()
    I[3, 1, 2] = float("nan")
    I[5, 2, 0] = -float("inf")
    args = (G, I, v0, s0, W, C, d0, 1.0, 1.0, "clamp", get_surrogate("atan"), False, 0.75)
    s1, v1, _ = DGNMembraneFunction.apply(*args)
    s2, v2, _ = DGNMembraneNumbaFunction.apply(*args)
    assert torch.equal(s1.isnan(), s2.isnan()) and s2.isnan().any()
    assert torch.equal(s1.nan_to_num(7.0), s2.nan_to_num(7.0))


# ---- dispatch ----

def _tensors(x):
    return {"conductance": x, "current": x, "v0": x[0], "s0": x[0]}


def test_auto_picks_numba_for_the_recurrent_membrane_on_cpu_only():
    x = torch.zeros(4, 2, 3)
    atan = get_surrogate("atan")
    assert "numba" in dgn_ops.BACKENDS
    assert resolve_backend("auto", _tensors(x), atan, recurrent_features=3) == "numba"
    assert resolve_backend("auto", _tensors(x), atan) == "fused"                 # feed-forward membrane
    assert resolve_backend("auto", {"z": x}) == "fused"                           # the synaptic trace
    assert resolve_backend("auto", _tensors(x), ZeroNumbaSurrogate(), recurrent_features=3) == "numba"

    class Softsign(Surrogate):  # no numba form: auto keeps the fused engine, a forced numba says why
        name, param_name = "softsign", "scale"

        def derivative(self, x):
            return 1 / (1 + x.abs()) ** 2

    assert resolve_backend("auto", _tensors(x), Softsign(1.0), recurrent_features=3) == "fused"
    assert resolve_backend("auto", _tensors(x.half()), atan, recurrent_features=3) == "fused"
    with pytest.raises(RuntimeError, match="numba form"):
        resolve_backend("numba", _tensors(x), Softsign(1.0), recurrent_features=3)
    with pytest.raises(RuntimeError, match="one dtype"):
        resolve_backend("numba", {**_tensors(x), "v0": x[0].double()}, atan, recurrent_features=3)


def test_forced_numba_refuses_non_cpu_tensors_with_a_clear_message(monkeypatch):
    import dendrix.ops.dgn.numba_recurrent as engine

    x = torch.zeros(4, 2, 3)
    monkeypatch.setattr(engine, "unsupported_reason", lambda *a, **k: "the numba engine runs on CPU tensors only")
    for recurrent in (None, 3):
        with pytest.raises(RuntimeError, match="backend='numba' cannot run this call: the numba engine runs on CPU"):
            resolve_backend("numba", _tensors(x), get_surrogate("atan"), recurrent_features=recurrent)
    assert resolve_backend("auto", _tensors(x), get_surrogate("atan"), recurrent_features=3) == "fused"
    monkeypatch.undo()
    meta = torch.zeros(4, 2, 3, device="meta")
    assert "CPU" in engine.unsupported_reason(_tensors(meta), get_surrogate("atan"))
    assert "CPU" in engine.unsupported_reason({"z": meta})


def test_forced_numba_runs_the_fused_engine_where_there_is_no_numba_kernel():
    """The feed-forward membrane and the synaptic trace: backend='numba' is the CPU engine, the fused loops."""
    G, I, v0, s0, _, _, _ = _inputs(torch.float32, T=6, B=2, n=4, seed=7)
    kw = dict(dt=1.0, threshold=1.0)
    for a, b in zip(dgn_membrane(G, I, v0, s0, backend="numba", **kw), dgn_membrane(G, I, v0, s0, backend="fused",
                                                                                    **kw)):
        assert (a is None and b is None) or torch.equal(a, b)
    assert torch.equal(dgn_ops.synaptic_trace(I, 0.5, backend="numba"), dgn_ops.synaptic_trace(I, 0.5, backend="fused"))


@pytest.mark.parametrize("shared_reversal", [False, True])
def test_recurrent_layer_with_numba_equals_fused(shared_reversal):
    spikes = (torch.rand(40, 4, 30, generator=torch.Generator().manual_seed(8)) < 0.1).double()
    outs = []
    for backend in ("fused", "numba", "auto"):
        torch.manual_seed(0)
        layer = DGNLinear(30, 12, recurrent=True, shared_reversal=shared_reversal, backend=backend).double()
        y = layer(spikes)
        y.sum().backward()
        outs.append((y, [p.grad for p in layer.parameters()]))
    (y1, g1) = outs[0]
    assert 0 < y1.mean() < 1
    for y, grads in outs[1:]:
        assert torch.equal(y, y1)
        for a, b in zip(g1, grads):
            torch.testing.assert_close(b, a, rtol=1e-10, atol=1e-10)


def test_the_layer_runs_numba_under_auto(monkeypatch):
    import dendrix.ops.dgn.numba_recurrent as engine

    calls = []
    original = engine.DGNMembraneNumbaFunction.apply
    monkeypatch.setattr(engine.DGNMembraneNumbaFunction, "apply", lambda *a: calls.append(1) or original(*a))
    DGNLinear(8, 5, recurrent=True)(torch.zeros(3, 2, 8))
    assert calls == [1]
