"""Bad inputs to the neuron API (issue 15, item 4), for every registered kind, as a layer and as a neuron alone.

Each case asserts either one clear error (a ``TypeError``/``ValueError`` whose one-line message names the module and
the argument: ``x``, ``x_t`` or ``state``, raised by the checks before any kernel runs) or the result documented
in ``docs/reliability.md`` ("Neuron API inputs"): T = 0 gives an empty output and the state unchanged, an empty
batch an empty output, non-finite values raise with ``dendrix.set_checks(True)`` and stay visible in the
potential with the checks off.
"""

from __future__ import annotations

import os
import re
import traceback
from typing import NamedTuple

import numpy as np
import pytest
import torch

import dendrix
from test_non_finite_engines import assert_spikes_follow_the_policy

T, B, IN, OUT = 5, 2, 4, 3
KINDS = dendrix.available()
MODULES = [(kind, build) for kind in KINDS for build in ("layer", "neuron")]
IDS = [f"{kind}-{build}" for kind, build in MODULES]
METHODS = ("forward", "run", "step")
ARGUMENT = re.compile(r"input x\b|\bx_t\b|\bstate\b")
NONFINITE = {"nan": float("nan"), "inf": float("inf"), "-inf": float("-inf")}
#: kinds whose spikes carry a non-finite potential as NaN (integer firing, cumulative-sum soma)
NAN_SPIKES = {"mmdend", "pmsn"}

_CACHE: dict[tuple[str, str], "Case"] = {}


class Case(NamedTuple):
    kind: str
    build: str
    module: torch.nn.Module
    width: int          # the last input dimension
    out: int            # the last output dimension

    @property
    def names(self) -> tuple[str, ...]:
        """Class names a message may use: the module's, or its neuron's (a SpikingLinear hands on its rules)."""
        inner = getattr(self.module, "neuron", None)
        return (type(self.module).__name__,) + ((type(inner).__name__,) if inner is not None else ())

    @property
    def streams(self) -> bool:
        return self.module.streaming

    def x(self, steps: int = T, batch: int = B, **kw) -> torch.Tensor:
        g = torch.Generator().manual_seed(steps * 31 + batch)
        return 3.0 * torch.rand(steps, batch, self.width, generator=g, **kw)

    def spikes(self, steps: int = T, batch: int = B) -> torch.Tensor:
        """DLIF's sparse path takes binary spikes only; every kind takes them."""
        return (self.x(steps, batch) > 1.5).float()


def _case(kind: str, build: str) -> Case:
    key = (kind, build)
    if key not in _CACHE:
        torch.manual_seed(0)
        if build == "layer":
            module, width = dendrix.spiking_layer(kind, IN, OUT, time_steps=T), IN
        else:
            module, width = dendrix.spiking_neuron(kind, OUT, time_steps=T), OUT
        _CACHE[key] = Case(kind, build, module, width, OUT)
    return _CACHE[key]


@pytest.fixture(params=MODULES, ids=IDS)
def case(request) -> Case:
    return _case(*request.param)


def _call(case: Case, method: str, x, state=None):
    m = case.module
    if method == "forward":
        return m(x)
    if method == "run":
        return m.run(x, state)
    return m.step(x, state)


def _step_input(method: str, x: torch.Tensor):
    return x[0] if method == "step" and isinstance(x, torch.Tensor) and x.dim() > 0 else x


def assert_clear_error(case: Case, fn, errors=(TypeError, ValueError), match: str | None = None) -> str:
    """``fn()`` raises one of ``errors`` with a one-line message naming the module and the argument, from the
    checks (not from inside a kernel or torch)."""
    with pytest.raises(errors) as info:
        fn()
    message = str(info.value)
    assert "\n" not in message, f"not one line: {message!r}"
    assert any(name in message for name in case.names), f"message does not name the module: {message!r}"
    assert ARGUMENT.search(message), f"message does not name the argument: {message!r}"
    if match is not None:
        assert re.search(match, message), f"{match!r} not in {message!r}"
    origin = traceback.extract_tb(info.tb)[-1].filename
    assert os.sep + os.path.join("dendrix", "ops") + os.sep not in origin, f"raised inside a kernel: {origin}"
    assert os.sep + "torch" + os.sep not in origin, f"raised inside torch: {origin}: {message}"
    return message


def _window_refuses_step(case: Case, method: str) -> bool:
    return method == "step" and not case.streams


# -- the input: type, dtype, rank, width -------------------------------------------------------------------------
BAD_OBJECTS = {"None": None, "list": [[0.0] * IN] * B, "float": 1.5, "numpy": np.zeros((T, B, IN), np.float32),
               "str": "spikes"}


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("bad", list(BAD_OBJECTS), ids=list(BAD_OBJECTS))
def test_input_that_is_not_a_tensor_is_a_type_error(case, method, bad):
    msg = assert_clear_error(case, lambda: _call(case, method, BAD_OBJECTS[bad]), TypeError)
    assert "torch.Tensor" in msg


DTYPES = {"int64": torch.int64, "int32": torch.int32, "uint8": torch.uint8, "bool": torch.bool,
          "complex64": torch.complex64}


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("dtype", list(DTYPES), ids=list(DTYPES))
def test_integer_bool_and_complex_inputs_are_a_type_error(case, method, dtype):
    x = _step_input(method, torch.ones(T, B, case.width).to(DTYPES[dtype]))
    msg = assert_clear_error(case, lambda: _call(case, method, x), TypeError)
    assert "floating" in msg and str(DTYPES[dtype]) in msg


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("rank", ["one_below", "scalar"])
def test_too_few_dimensions_is_a_value_error(case, method, rank):
    x = torch.zeros(()) if rank == "scalar" else (torch.zeros(case.width) if method == "step"
                                                 else torch.zeros(T, case.width))
    msg = assert_clear_error(case, lambda: _call(case, method, x), ValueError)
    assert ("one time step" if method == "step" else "time-first") in msg


@pytest.mark.parametrize("method", METHODS)
def test_wrong_feature_size(case, method):
    """A kind with a width refuses another last dimension; a shape-agnostic neuron takes any (documented)."""
    x = _step_input(method, case.x()[..., :1].expand(T, B, case.width + 1).contiguous())
    width = case.module.input_width
    if width is None:
        if _window_refuses_step(case, method):
            assert_clear_error(case, lambda: _call(case, method, x), ValueError, match="cannot stream")
            return
        out = _call(case, method, x)
        y = out if method == "forward" else out[0]
        assert y.shape == x.shape
        return
    msg = assert_clear_error(case, lambda: _call(case, method, x), ValueError)
    assert str(width) in msg and "features" in msg


# -- empty inputs ------------------------------------------------------------------------------------------------
def _assert_same_state(got, want) -> None:
    assert type(got) is type(want) and len(got) == len(want)
    for a, b in zip(got, want):
        assert a.shape == b.shape and a.dtype == b.dtype and torch.equal(a, b)


@pytest.mark.parametrize("how", ["forward", "run_from_rest", "run_from_state"])
def test_no_time_steps_gives_an_empty_result_and_the_state_unchanged(case, how):
    x = case.spikes(0)
    if not case.streams:  # a window-only model has no empty window
        assert_clear_error(case, lambda: case.module.run(x) if how != "forward" else case.module(x), ValueError,
                           match=f"exactly T={T}")
        return
    if how == "forward":
        y = case.module(x)
        assert y.shape == (0, B, case.out) and y.dtype == x.dtype
        return
    rest = case.module.init_state(case.spikes(1)[0])
    if how == "run_from_rest":
        y, state = case.module.run(x)
        _assert_same_state(state, rest)
    else:
        _, before = case.module.run(case.spikes(2))
        y, state = case.module.run(x, before)
        assert state is before
    assert y.shape == (0, B, case.out)


def test_no_time_steps_keeps_the_output_in_the_graph(case):
    x = case.spikes(0).requires_grad_(True)
    if not case.streams:  # window-only kinds refuse T = 0
        assert_clear_error(case, lambda: case.module.run(x), ValueError, match="cannot stream")
        return
    y, _ = case.module.run(x)
    y.sum().backward()
    assert x.grad is not None and x.grad.shape == x.shape


@pytest.mark.parametrize("method", METHODS)
def test_empty_batch_gives_an_empty_output(case, method):
    x = _step_input(method, case.spikes(T, 0))
    if _window_refuses_step(case, method):
        assert_clear_error(case, lambda: _call(case, method, x), ValueError, match="cannot stream")
        return
    out = _call(case, method, x)
    y = out if method == "forward" else out[0]
    assert y.shape == (*x.shape[:-1], case.out)
    if method != "forward":
        want = case.module.init_state(x if method == "step" else x[0])
        assert type(out[1]) is type(want)
        for got, rest in zip(out[1], want):
            assert got.shape == rest.shape


# -- the state -----------------------------------------------------------------------------------------------------
class ForeignState(NamedTuple):
    v: torch.Tensor


def _foreign_state(case: Case, fresh):
    """A real state of another kind, shaped for this output width (only its type is wrong)."""
    for other in ("lif", "alif", "rf"):
        state = dendrix.spiking_neuron(other, OUT).init_state(torch.zeros(B, case.out))
        if type(state) is not type(fresh):
            return state
    raise AssertionError("no foreign state found")  # pragma: no cover


def _bad_state(case: Case, how: str, fresh):
    tensors = [f for f in fresh if isinstance(f, torch.Tensor)]
    if how == "plain_tuple":
        return tuple(fresh)
    if how == "other_kind":
        return _foreign_state(case, fresh)
    if how == "list":
        return list(fresh)
    if how == "dict":
        return dict(zip(fresh._fields, fresh))
    if how == "tensor":
        return tensors[0] if tensors else torch.zeros(B, case.out)
    if how == "field_none":
        return type(fresh)(*([None] + list(fresh[1:])))
    if how == "batch":
        grown = case.module.init_state(case.spikes(1, B + 1)[0])
        return grown if any(a.shape != b.shape for a, b in zip(grown, fresh)) else None
    if how == "dtype":
        return type(fresh)(*[f.double() if f.is_floating_point() else f.to(torch.complex128) if f.is_complex()
                             else f.to(torch.int32) for f in fresh])
    if how == "device":
        return type(fresh)(*[f.to("meta") for f in fresh])
    raise AssertionError(how)  # pragma: no cover


STATE_CASES = ["plain_tuple", "other_kind", "list", "dict", "tensor", "field_none", "batch", "dtype", "device"]


@pytest.mark.parametrize("method", ["run", "step"])
@pytest.mark.parametrize("how", STATE_CASES)
def test_bad_state_is_a_clear_error(case, method, how):
    x = _step_input(method, case.spikes())
    fresh = case.module.init_state(case.spikes(1)[0])
    state = _bad_state(case, how, fresh)
    if how == "batch" and state is None:  # this kind's state does not depend on the batch (a step counter)
        out = _call(case, method, x, fresh) if not _window_refuses_step(case, method) else None
        assert out is None or out[0].shape[:-1] == x.shape[:-1]
        return
    if _window_refuses_step(case, method):
        assert_clear_error(case, lambda: _call(case, method, x, state), ValueError, match="cannot stream")
        return
    msg = assert_clear_error(case, lambda: _call(case, method, x, state))
    assert "state" in msg


def test_a_valid_state_from_init_state_is_accepted(case):
    fresh = case.module.init_state(case.spikes(1)[0])
    y, state = case.module.run(case.spikes(), fresh)
    assert type(state) is type(fresh) and y.shape == (T, B, case.out)


# -- non-finite values -----------------------------------------------------------------------------------------------
def _with_bad_value(case: Case, value: float) -> torch.Tensor:
    x = case.spikes()
    x[2, 1, 0] = value
    return x


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("value", list(NONFINITE))
def test_checks_on_refuse_a_non_finite_input_naming_the_first_position(case, method, value):
    x = _with_bad_value(case, NONFINITE[value])
    x = x[2] if method == "step" else x
    with dendrix.checks():
        if _window_refuses_step(case, method):
            assert_clear_error(case, lambda: _call(case, method, x), ValueError, match="cannot stream")
            return
        msg = assert_clear_error(case, lambda: _call(case, method, x), ValueError, match="non-finite")
    assert ("(1, 0)" if method == "step" else "(2, 1, 0)") in msg
    assert dendrix.checks_enabled() is False  # the block restored the default


def test_checks_on_refuse_a_non_finite_state(case):
    fresh = case.module.init_state(case.spikes(1)[0])
    floats = [i for i, f in enumerate(fresh) if f.is_floating_point() or f.is_complex()]
    with dendrix.checks():
        if not floats:  # a step counter only (window-only PSN): nothing can be non-finite
            case.module.run(case.spikes(), fresh)
            return
        fields = list(fresh)
        fields[floats[0]] = torch.full_like(fields[floats[0]], float("nan"))
        msg = assert_clear_error(case, lambda: case.module.run(case.spikes(), type(fresh)(*fields)), ValueError,
                                 match="non-finite")
    assert "state field" in msg


@pytest.mark.parametrize("value", list(NONFINITE))
def test_checks_off_pass_non_finite_values_through_visibly(case, value):
    """Checks off (the default): nothing is looked at; the bad value reaches the potential (recorded "v") at its
    step, and the spikes are NaN where that potential is NaN or -Inf (docs/reliability.md lists what each kind
    does)."""
    x = _with_bad_value(case, NONFINITE[value])
    model = torch.nn.Sequential(case.module)
    if case.kind == "dlif" and case.build == "layer":  # the sparse synapses refuse non-binary input themselves
        with pytest.raises(ValueError, match="DLIF input must be binary spikes") as info:  # one scan, no kernel
            model(x)
        assert "\n" not in str(info.value)
        return
    with dendrix.record(model) as rec:
        y = model(x)
    v = rec.states["0"]["v"]
    assert y.shape == (T, B, case.out)
    assert bool((torch.isnan(y) | torch.isfinite(y)).all()), "spikes are finite or NaN"
    if case.kind == "pmsn" and case.build == "neuron" and value == "-inf":  # ReLU: a -Inf drive is no drive
        assert bool(torch.isfinite(v).all()) and bool(torch.isfinite(y).all())
        return
    assert not bool(torch.isfinite(v[2, 1]).all()), f"{case.kind}: the bad value did not reach the potential"
    if case.kind in NAN_SPIKES:
        assert bool(torch.isnan(y[2, 1]).any()), f"{case.kind}: no NaN spike at the bad step"
    # every kind: NaN spikes where the compared potential is NaN or -Inf, +Inf fires (test_non_finite_engines.py
    # checks the same in every engine)
    recorded = rec.states["0"]
    assert_spikes_follow_the_policy(case.kind, y, v - recorded["threshold"] if "threshold" in recorded else v)
    if value == "nan":
        assert bool(torch.isnan(y[2, 1][~torch.isfinite(v[2, 1])]).all()), f"{case.kind}: no NaN spike at the bad step"


def test_checks_off_cost_no_tensor_reduction(case, monkeypatch):
    x = _with_bad_value(case, float("nan")) if not (case.kind == "dlif" and case.build == "layer") else case.spikes()

    def refuse(*args, **kwargs):
        raise AssertionError("a value check ran with the checks off")

    monkeypatch.setattr("dendrix.validation.first_nonfinite", refuse)
    monkeypatch.setattr("dendrix.contract.first_nonfinite", refuse)
    monkeypatch.setattr(torch, "isfinite", refuse)
    assert case.module(x).shape == (T, B, case.out)


def test_checks_stay_out_of_traced_code(case, monkeypatch):
    """While torch.compile traces (torch.compiler.is_compiling()), the entry adds no check to the graph."""
    monkeypatch.setattr(dendrix.contract, "_compiling", lambda: True)  # patching torch.compiler would leak into
    # Dynamo: its trace rules remember the patched function and later refuse the real one (a later compile test)
    x = _with_bad_value(case, float("nan")) if not (case.kind == "dlif" and case.build == "layer") else case.spikes()
    with dendrix.checks():
        assert case.module(x).shape == (T, B, case.out)


# -- the switch itself -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("bad", [1, "yes", None])
def test_set_checks_takes_a_bool(bad):
    with pytest.raises(TypeError, match="enabled must be a bool"):
        dendrix.set_checks(bad)


def test_checks_context_restores_the_setting_after_an_error():
    assert dendrix.set_checks(True) is False
    try:
        with pytest.raises(RuntimeError):
            with dendrix.checks(False):
                assert not dendrix.checks_enabled()
                raise RuntimeError("inside")
        assert dendrix.checks_enabled()
    finally:
        dendrix.set_checks(False)
