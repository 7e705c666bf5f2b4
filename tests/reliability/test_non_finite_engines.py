"""The NaN/Inf policy (issue 15, item 4) in every engine of every registered kind that runs on a CPU.

docs/reliability.md, "Non-finite values": with the checks off, a NaN or -Inf potential gives a NaN spike
(visible, never silence: a -Inf potential never recovers), +Inf is above every threshold and fires; with the
checks on, the same input is one clear line before any kernel runs. Each case builds a kind as a layer or a
neuron alone with one engine (``backend=...``: the plain reference, the fused torch engine, the numba engine,
and ``compiled``: the fused engine through its custom op, the form ``torch.compile`` runs), puts a NaN, +Inf or
-Inf at one step and checks the spikes element by element against the recorded potential ``"v"``.
"""

from __future__ import annotations

import contextlib
import warnings
from unittest import mock

import pytest
import torch

import dendrix

T, B, IN, OUT = 6, 2, 4, 3
BAD_STEP = 2
NONFINITE = {"nan": float("nan"), "inf": float("inf"), "-inf": float("-inf")}
#: integer firing (MMDEND) and the cumulative-sum soma (PMSN): NaN wherever the potential is non-finite
NAN_SPIKES = {"mmdend", "pmsn"}
#: engines whose blocked products or FFT multiply whole blocks of steps: the NaN reaches earlier steps too
SPREADS_BACK = {("mmdend", "fused"), ("mmdend", "compiled"), ("drf", "fused"), ("drf", "compiled")}
#: the potential reaches only the next k steps (a causal window), or the whole window (PSN, masked PSN)
NO_STATE = {"sliding_psn", "psn", "masked_psn", "pmsn"}
#: ops packages whose fused engine has a custom-op form for compiled code
COMPILED_OPS = ("lif", "alif", "rf", "dgn", "mmdend")
ENGINES = ("reference", "fused", "numba")


def _backend_argument(kind: str) -> str:
    return "lif_backend" if kind == "dlif" else "backend"


def _build(kind: str, build: str, engine: str | None) -> torch.nn.Module:
    torch.manual_seed(0)
    kw = {} if engine in (None, "compiled") else {_backend_argument(kind): engine}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # DLIF's sparsity note at tiny widths
        if build == "layer":
            return dendrix.spiking_layer(kind, IN, OUT, time_steps=T, **kw)
        return dendrix.spiking_neuron(kind, OUT, time_steps=T, **kw)


def _engines(kind: str, build: str) -> list[str]:
    """The CPU engines a kind takes (its constructor refuses the others), and the custom-op form."""
    found = []
    for engine in ENGINES:
        try:
            _build(kind, build, engine)
        except (TypeError, ValueError):
            continue
        found.append(engine)
    return (found or ["default"]) + ["compiled"]


CASES = [(kind, build, engine) for kind in dendrix.available() for build in ("layer", "neuron")
         if not (kind == "dlif" and build == "layer")  # its sparse synapses refuse non-binary input (one line)
         for engine in _engines(kind, build)]


@contextlib.contextmanager
def _as_compiled(engine: str):
    """``compiled``: the dispatchers take their custom-op branch, as while ``torch.compile`` traces."""
    with contextlib.ExitStack() as stack:
        if engine == "compiled":
            for name in COMPILED_OPS:
                stack.enter_context(mock.patch(f"dendrix.ops.{name}.compiling", lambda: True))
        yield


def _input(width: int, value: float) -> torch.Tensor:
    g = torch.Generator().manual_seed(7)
    x = (3.0 * torch.rand(T, B, width, generator=g) > 1.5).float()
    x[BAD_STEP, 1, 0] = value
    return x


def assert_spikes_follow_the_policy(kind: str, y: torch.Tensor, v: torch.Tensor) -> None:
    """Element by element: NaN or -Inf potential -> NaN spike; +Inf -> a spike (1) in the threshold kinds;
    a finite potential -> a finite spike."""
    assert y.shape == v.shape, (y.shape, v.shape)
    dead = torch.isnan(v) | (v == -float("inf"))
    assert bool(torch.isnan(y[dead]).all()), f"{kind}: a NaN or -Inf potential gave a finite spike (silence)"
    assert bool(torch.isfinite(y[torch.isfinite(v)]).all()), f"{kind}: a finite potential gave a NaN spike"
    hot = v == float("inf")
    if kind in NAN_SPIKES:
        assert bool((~torch.isfinite(y[hot])).all() | (y[hot] > 0).all())
    else:
        assert bool((y[hot] == 1).all()), f"{kind}: a +Inf potential did not fire"


@pytest.mark.parametrize("value", list(NONFINITE))
@pytest.mark.parametrize("kind,build,engine", CASES, ids=["-".join(c) for c in CASES])
def test_non_finite_input_is_visible_in_every_engine(kind, build, engine, value):
    module = _build(kind, build, None if engine in ("default", "compiled") else engine)
    width = IN if build == "layer" else OUT
    x = _input(width, NONFINITE[value])
    with dendrix.checks(), pytest.raises(ValueError, match="non-finite") as info:   # checks on: one line
        module(x)
    assert "\n" not in str(info.value) and "(2, 1, 0)" in str(info.value)

    model = torch.nn.Sequential(module)
    with _as_compiled(engine), torch.no_grad():
        clean = model(_input(width, 0.0))
        with dendrix.record(model) as rec:
            y = model(x)
    recorded = rec.states["0"]
    v = recorded["v"]
    # the value compared with the threshold: the potential, less an adaptive threshold where one is recorded
    compared = v - recorded["threshold"] if "threshold" in recorded else v
    assert y.shape == (T, B, OUT)
    assert_spikes_follow_the_policy(kind, y, compared)
    if (kind, engine) not in SPREADS_BACK and kind not in ("psn", "masked_psn"):
        assert torch.equal(y[:BAD_STEP], clean[:BAD_STEP]), f"{kind}/{engine}: steps before the bad one changed"
    if kind == "pmsn" and build == "neuron" and value == "-inf":  # ReLU drive: a -Inf current is no drive
        assert bool(torch.isfinite(y).all())
        return
    bad = ~torch.isfinite(v[BAD_STEP, 1])
    assert bool(bad.any()), f"{kind}/{engine}: the bad value did not reach the potential"
    if value == "nan":
        assert bool(torch.isnan(y[BAD_STEP, 1, bad]).all()), f"{kind}/{engine}: no NaN spike at the bad step"
        if kind not in NO_STATE:
            # the state carries the NaN: those neurons' spikes stay NaN to the end of the sequence
            assert bool(torch.isnan(y[BAD_STEP:, 1][:, bad]).all()), f"{kind}/{engine}: the NaN did not persist"
