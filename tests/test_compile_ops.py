"""The fused engines' custom ops (``ops/*/compiled.py``): ``torch.library.opcheck`` on tiny float64 cases, equal
to the eager autograd functions (values and gradients), and compiled code calling them instead of tracing loops."""

from __future__ import annotations

import pytest
import torch

import dendrix
from dendrix.ops.alif import NUMBA_ENGINE as ALIF_NUMBA
from dendrix.ops.alif.compiled import alif_sequence_op
from dendrix.ops.alif.fused import ALIFFunction
from dendrix.ops.custom_ops import surrogate_args, surrogate_from_args
from dendrix.ops.dgn.compiled import dgn_membrane_op, synaptic_trace_op
from dendrix.ops.dgn.fused import DGNMembraneFunction, SynapticTraceFunction
from dendrix.ops.lif import NUMBA_ENGINE
from dendrix.ops.lif.compiled import leaky_sequence_op
from dendrix.ops.lif.fused import LeakyFunction
from dendrix.ops.rf.compiled import rf_sequence_op
from dendrix.ops.rf.fused import RFFunction
from dendrix.surrogate import Surrogate, get_surrogate

from compile_support import layer_for, spike_input

T, B, N = 5, 2, 3
F64 = torch.float64


def _rand(*shape, scale=1.0, offset=0.0):
    return (torch.randn(*shape, dtype=F64) * scale + offset).requires_grad_(True)


def _check_same(op_outputs, ref_outputs, inputs):
    """Equal outputs, and equal gradients under one random weighting of every output."""
    for got, want in zip(op_outputs, ref_outputs):
        assert torch.equal(got, want)
    weights = [torch.randn_like(o) for o in ref_outputs]
    got = torch.autograd.grad(op_outputs, inputs, weights)
    want = torch.autograd.grad(ref_outputs, inputs, weights)
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, rtol=0, atol=1e-14)


def test_surrogate_travels_by_name_and_parameters():
    for sg in (get_surrogate("atan", alpha=3.0), get_surrogate("double_gaussian", sigma=0.4, h=0.2, s=5.0)):
        rebuilt = surrogate_from_args(*surrogate_args(sg))
        assert type(rebuilt) is type(sg) and rebuilt == sg and getattr(rebuilt, "h", None) == getattr(sg, "h", None)

    class Mine(Surrogate):           # a user's own class cannot be rebuilt from a name: the traced engine runs
        name = "atan"

        def derivative(self, x):
            return torch.ones_like(x)
    assert surrogate_args(Mine(1.0)) is None


@pytest.mark.parametrize("engine", ["fused", "numba"])
@pytest.mark.parametrize("v_reset", [0.0, None])
@pytest.mark.parametrize("coefficients", ["per_channel", "floats", "scalar_tensors"])
def test_leaky_sequence_op(v_reset, coefficients, engine):
    if engine == "numba" and NUMBA_ENGINE.load() is None:
        pytest.skip("numba is not installed")
    torch.manual_seed(0)
    x, v0 = _rand(T, B, N, offset=0.5), _rand(B, N)
    leak, gain, bias = {"per_channel": (torch.rand(N, dtype=F64).requires_grad_(), _rand(1), 0.1),
                        "floats": (0.5, 1.0, 0.0),
                        "scalar_tensors": (0.4, _rand(()), _rand((), scale=0.1))}[coefficients]
    coeffs = (leak, gain, bias)
    schema_args = (x, v0, *[c if isinstance(c, torch.Tensor) else None for c in coeffs],
                   *[0.0 if isinstance(c, torch.Tensor) else float(c) for c in coeffs], 0.5, v_reset, False,
                   "atan", [2.0], engine)
    torch.library.opcheck(torch.ops.dendrix.leaky_sequence.default, schema_args)
    args = (x, v0, *coeffs, 0.5, v_reset, False, get_surrogate("atan"))
    inputs = [t for t in (x, v0, *coeffs) if isinstance(t, torch.Tensor)]
    function = NUMBA_ENGINE.load().LeakyNumbaFunction if engine == "numba" else LeakyFunction
    _check_same(leaky_sequence_op(*args, engine=engine), function.apply(*args), inputs)


@pytest.mark.parametrize("engine", ["fused", "numba"])
@pytest.mark.parametrize("per_channel", [True, False])
def test_alif_sequence_op(per_channel, engine):
    if engine == "numba" and ALIF_NUMBA.load() is None:
        pytest.skip("numba is not installed")
    torch.manual_seed(0)
    x, u0, a0 = _rand(T, B, N, scale=2.0), _rand(B, N), _rand(B, N)
    s0 = (torch.rand(B, N, dtype=F64) < 0.5).to(F64).requires_grad_(True)
    alpha, rho = (torch.rand(N, dtype=F64).requires_grad_(), torch.rand(N, dtype=F64).requires_grad_()) \
        if per_channel else (torch.tensor(0.9, dtype=F64), torch.tensor(0.8, dtype=F64, requires_grad=True))
    torch.library.opcheck(torch.ops.dendrix.alif_sequence.default,
                          (x, u0, a0, s0, alpha, rho, 0.01, 1.8, "double_gaussian", [0.5, 0.15, 6.0], engine))
    args = (x, u0, a0, s0, alpha, rho, 0.01, 1.8, get_surrogate("double_gaussian"))
    function = ALIF_NUMBA.load().ALIFNumbaFunction if engine == "numba" else ALIFFunction
    _check_same(alif_sequence_op(*args, engine=engine), function.apply(*args),
                [t for t in args if isinstance(t, torch.Tensor) and t.requires_grad])


@pytest.mark.parametrize("balanced", [False, True])
def test_rf_sequence_op(balanced):
    torch.manual_seed(0)
    x, omega, b0 = _rand(T, B, N, scale=50.0), (torch.rand(N, dtype=F64) * 10).requires_grad_(), \
        (-torch.rand(N, dtype=F64)).requires_grad_()
    u0, v0, q0 = _rand(B, N), _rand(B, N), torch.rand(B, N, dtype=F64).requires_grad_()
    torch.library.opcheck(torch.ops.dendrix.rf_sequence.default,
                          (x, omega, b0, u0, v0, q0, 0.01, 0.1, balanced, "double_gaussian", [0.5, 0.15, 6.0]))
    args = (x, omega, b0, u0, v0, q0, 0.01, 0.1, balanced, get_surrogate("double_gaussian"))
    outputs = rf_sequence_op(*args)
    assert outputs[0].sum() > 0, "silent: the surrogate path would not be exercised"
    _check_same(outputs, RFFunction.apply(*args), [x, omega, b0, u0, v0, q0])


def test_synaptic_trace_op():
    torch.manual_seed(0)
    z, d0 = _rand(T, B, N), _rand(N)                       # d0 broadcasts: its gradient is reduced to [N]
    torch.library.opcheck(torch.ops.dendrix.synaptic_trace.default, (z, d0, 0.7))
    _check_same([synaptic_trace_op(z, d0, 0.7)], [SynapticTraceFunction.apply(z, d0, 0.7)], [z, d0])


@pytest.mark.parametrize("recurrent", [False, True])
@pytest.mark.parametrize("gate,detach_reset", [("clamp", False), ("sigmoid", True)])
def test_dgn_membrane_op(recurrent, gate, detach_reset):
    torch.manual_seed(0)
    g = (torch.rand(T, B, N, dtype=F64) * 0.8).requires_grad_()
    i, v0 = _rand(T, B, N, scale=3.0), _rand(B, N)
    s0 = (torch.rand(N, dtype=F64) < 0.5).to(F64).requires_grad_()   # broadcast initial spike
    rec = (_rand(N, N), (torch.rand(N, N, dtype=F64) * 0.1).requires_grad_(), torch.rand(B, N, dtype=F64)
           .requires_grad_()) if recurrent else (None, None, None)
    torch.library.opcheck(torch.ops.dendrix.dgn_membrane.default,
                          (g, i, v0, s0, *rec, 0.5, 1.0, gate, "atan", [2.0], detach_reset, 0.6))
    args = (g, i, v0, s0, *rec, 0.5, 1.0, gate, get_surrogate("atan"), detach_reset, 0.6)
    _check_same(dgn_membrane_op(*args), DGNMembraneFunction.apply(*args),
                [t for t in args if isinstance(t, torch.Tensor)])


# One kind per op (the other kinds of each engine call the same op and compile in test_compile.py).
ENGINE_OPS = {"lif": ["leaky_sequence"], "alif": ["alif_sequence"], "brf": ["rf_sequence"],
              "dgn": ["synaptic_trace", "dgn_membrane"], "mmdend": ["chunked_mmdend"]}


@pytest.mark.parametrize("kind", sorted(ENGINE_OPS))
def test_compiled_layer_calls_the_custom_op_not_a_loop(kind):
    """The captured forward holds each engine as one node, and its size does not grow with the sequence length
    (a traced engine's loop would be unrolled: a few nodes per time step)."""
    sizes = []
    for steps in (6, 12):
        graphs = []

        def capture(gm, example_inputs):
            graphs.append(gm)
            return gm.forward
        torch._dynamo.reset()
        torch.compile(layer_for(kind), fullgraph=True, backend=capture)(spike_input("cpu", shape=(steps, 2, 16)))
        targets = [str(n.target) for gm in graphs for n in gm.graph.nodes if n.op == "call_function"]
        for op in ENGINE_OPS[kind]:
            assert targets.count(f"dendrix.{op}.default") == 1, (kind, targets)
        sizes.append(len(targets))
    assert sizes[0] == sizes[1], f"{kind}: {sizes[0]} operators for 6 steps, {sizes[1]} for 12"


@pytest.mark.parametrize("activation,shape", [("tanh", dict(channels=8)),
                                              ("gelu", dict(channels=15, branches=3, window=7, stride=4))])
def test_chunked_mmdend_op(activation, shape):
    from dendrix.neurons import MMDEND
    from dendrix.ops.mmdend import fused_chunked_mmdend
    from dendrix.ops.mmdend.compiled import chunked_mmdend_op
    from test_ops_mmdend import _inputs
    torch.manual_seed(0)
    m = MMDEND(branch_activation=activation, ssf_range=3, **shape).double()
    leaves, lay = _inputs(m, 11, 2, 4, seed=1)                         # two blocks of 4 and a tail of 3
    sizes = [lay.batch, lay.channels, lay.window, lay.branches, lay.compartments, lay.block, lay.levels]
    torch.library.opcheck(torch.ops.dendrix.chunked_mmdend.default,
                          (*leaves, lay.index, sizes, lay.disjoint, lay.activation, list(lay.clip), True))
    got, want = chunked_mmdend_op(*leaves, lay), fused_chunked_mmdend(*leaves, lay)
    for g, w in zip(got, want):
        assert torch.equal(g, w)
    assert not got[1].requires_grad and not got[2].requires_grad      # v and f: not differentiable, as in eager
    inputs = [t for t in leaves if t is not None]
    weights = [torch.randn_like(want[i]) for i in (0, 3, 4)]
    grads = [torch.autograd.grad([outs[i] for i in (0, 3, 4)], inputs, weights) for outs in (got, want)]
    for g, w in zip(*grads):
        torch.testing.assert_close(g, w, rtol=0, atol=1e-14)
