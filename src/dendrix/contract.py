"""The module contract every dendrix neuron and synaptic neuron layer keeps (DESIGN.md §2).

* ``y = m(x)``: the whole time-first sequence ``[T, B, *]`` from the resting state. Nothing is kept between
  calls: no ``reset_net``, no state tied to a batch size or a device.
* ``state = m.init_state(x_t)``: the resting state for inputs shaped like one time step ``[B, *]``.
* ``y_t, state = m.step(x_t, state)``: one time step (streaming inference).
* ``y, state = m.run(x, state)``: a chunk continuing from ``state`` (streaming in chunks).

Looping ``step`` or ``run`` over chunks gives exactly the spikes of ``m(x)``.

``run`` is a template: it validates the input (:meth:`Neuron.check_run_input`), applies the dtype policy
(:meth:`Neuron.compute_input`), resolves the state (:meth:`Neuron.resolve_state`) and calls the one method a
neuron writes, ``_run_sequence(x, state) -> (y, new_state)``: its whole-sequence kernel call (fused, parallel or
Triton, in ``ops/``), which also hands its internal traces to :meth:`Neuron.record_state`. Subclasses implement
``init_state`` and ``_run_sequence``; ``forward`` and ``step`` default to ``run``. A neuron whose chunked run
needs more than this (a window-only model, a stateless fast path) overrides ``run`` or ``forward`` itself.

Recording: :func:`dendrix.record` attaches a recorder; models call :meth:`Neuron.record_state` with their
internal traces (membrane potential, branch states); it costs nothing when no recorder is attached.

Checked entry: every ``forward``, ``run`` and ``step`` (a subclass's own too) is wrapped by :func:`_guarded`,
which checks the input and the state before any kernel runs, returns the empty result of a chunk of T = 0 steps,
and, with :func:`dendrix.set_checks`, refuses non-finite values (docs/reliability.md, "Neuron API inputs").

Run hooks: :meth:`Neuron.register_run_hooks` observes every ``run`` call of one module, including those that
bypass ``__call__`` (``step``, recurrent wrappers); it also costs one dictionary look-up when none is attached.
"""

from __future__ import annotations

import functools
from collections import OrderedDict
from typing import Any, Callable, Optional

import torch
from torch import Tensor, nn
from torch.utils.hooks import RemovableHandle

from .dtypes import compute_dtype
from .validation import check_sequence, check_state_shape, checks_enabled, first_nonfinite

__all__ = ["Neuron", "State"]

State = Any  # a NamedTuple (or tuple) of tensors


class Neuron(nn.Module):
    """Base class of neurons (``neurons/``) and synaptic neuron layers (``layers/``).

    Class attributes a subclass may set:

    * ``in_rank``: the minimum rank of an input sequence (3 = ``[T, B, N]``).
    * ``emits``: ``"binary"`` for spikes in {0, 1}; ``"integer"`` for integer spike counts (SSF).
    * ``streaming``: False where the output at t depends on later inputs (may be a property).
    * ``input_width``: the last input dimension that :meth:`check_run_input` requires (None: any; may be a
      property, e.g. the layer's ``in_features``).
    """

    in_rank: int = 3
    emits: str = "binary"
    #: Whether ``step``/``run`` can continue a sequence chunk by chunk. False for models whose output at t
    #: depends on later inputs (PSN's dense T×T weights); their ``run`` takes only a whole window.
    streaming: bool = True
    input_width: Optional[int] = None

    def __init__(self) -> None:
        super().__init__()
        self._recorder: Optional[Callable[[str, Tensor], None]] = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "run" in cls.__dict__:  # every class's own run reports to the run hooks (see register_run_hooks)
            cls.run = _guarded("run", _hooked_run(cls.__dict__["run"]))
        for method in ("forward", "step"):  # a kind that writes its own entry points is checked at them too
            if method in cls.__dict__:
                setattr(cls, method, _guarded(method, cls.__dict__[method]))

    def register_run_hooks(self, pre: Callable[["Neuron", Tensor], None],
                           post: Callable[["Neuron", Tensor, Any], None]) -> RemovableHandle:
        """Call ``pre(module, x)`` before and ``post(module, x, (y, state))`` after every ``run`` of this module.

        A ``run`` that calls ``super().run`` reports at each level; observers that want one report per call keep
        a depth count (``pre`` increments, ``post`` decrements). ``handle.remove()`` detaches the pair.
        """
        hooks = self.__dict__.setdefault("_run_hooks", OrderedDict())
        handle = RemovableHandle(hooks)
        hooks[handle.id] = (pre, post)
        return handle

    # -- contract -------------------------------------------------------------------------------------------
    def init_state(self, x_t: Tensor) -> State:  # pragma: no cover - abstract
        raise NotImplementedError

    def run(self, x: Tensor, state: State | None = None) -> tuple[Tensor, State]:
        """The chunk ``x`` ``[T, B, *]`` from ``state`` (None: the resting state) -> ``(y, new_state)``."""
        self.check_run_input(x)
        in_dtype = x.dtype
        x = self.compute_input(x)
        y, state = self._run_sequence(x, self.resolve_state(x, state))
        if x.dtype != in_dtype:  # the dtype policy computed in another dtype: outputs come back in the input's
            y = y.to(in_dtype)
        return y, state

    def _run_sequence(self, x: Tensor, state: State) -> tuple[Tensor, State]:
        """The neuron's whole-sequence kernel call: ``x`` validated and in its compute dtype, ``state`` resolved."""
        raise NotImplementedError(f"{type(self).__name__} must implement _run_sequence(x, state) (or override run)")

    def forward(self, x: Tensor) -> Tensor:
        y, _ = self.run(x, None)
        return y

    def step(self, x_t: Tensor, state: State | None = None) -> tuple[Tensor, State]:
        y, state = self.run(x_t.unsqueeze(0), state)  # x_t and state were checked at the entry (see _guarded)
        return y[0], state

    # -- hooks of the run template and helpers for subclasses -------------------------------------------------
    def check_run_input(self, x: Tensor) -> None:
        """Validate a chunk before ``run`` (default: a tensor of rank >= ``in_rank`` whose last dimension is
        ``input_width`` when set). Override for model-specific rules, keeping one clear error per bad input."""
        self.check_input(x, self.input_width)

    def compute_input(self, x: Tensor) -> Tensor:
        """The dtype policy: the input in the dtype the kernel computes in (default: unchanged). A neuron that
        computes half-precision inputs in float32 returns ``x.float()`` here; ``run`` casts the output back."""
        return x

    @staticmethod
    def state_dtype(x_t: Tensor) -> torch.dtype:
        """The dtype of a resting state for inputs like ``x_t``: float32 for half-precision inputs (the state
        accumulates over time), the input's dtype otherwise."""
        return compute_dtype(x_t)

    def check_input(self, x: Tensor, features: int | None = None) -> Tensor:
        return check_sequence(x, f"{type(self).__name__} input x", min_rank=self.in_rank, features=features)

    def resolve_state(self, x: Tensor, state: State | None) -> State:
        """``state`` or, if None, the resting state for ``x[0]``; checks it against ``init_state`` (see
        :meth:`check_state`) unless the entry point already did."""
        if state is not None and state is self.__dict__.get("_checked_state"):
            return state
        fresh = self.init_state(x[0])
        if state is None:
            return fresh
        self.check_state(state, fresh, type(self).__name__)
        return state

    def check_state(self, state: Any, fresh: State, where: str) -> None:
        """Refuse a ``state`` unlike ``fresh`` (the resting state for this input): another type (a plain tuple,
        another kind's state), another number of fields, a field of another shape, dtype or device."""
        want_type = type(fresh)
        if type(state) is not want_type and not (want_type is tuple and isinstance(state, tuple)):
            raise TypeError(f"{where}: state must be a {want_type.__name__} (from init_state(x_t) or a previous "
                            f"run of this module), got {type(state).__name__}")
        if len(state) != len(fresh):
            raise ValueError(f"{where}: state has {len(state)} fields, expected {len(fresh)}")
        names = getattr(fresh, "_fields", [str(i) for i in range(len(fresh))])
        for name, got, want in zip(names, state, fresh):
            if not isinstance(want, Tensor):
                continue
            if not isinstance(got, Tensor):
                raise TypeError(f"{where}: state field {name!r} must be a tensor, got {type(got).__name__}")
            check_state_shape(f"{where} {name}", got, want.shape)
            if got.dtype != want.dtype:
                raise TypeError(f"{where}: state field {name!r} has dtype {got.dtype} but this input needs "
                                f"{want.dtype}; build it with init_state(x_t) for an input of this dtype")
            if got.device != want.device:
                raise ValueError(f"{where}: state field {name!r} is on {got.device} but the input is on "
                                 f"{want.device}; move the state with the input")

    def output_step_shape(self, step_shape: torch.Size) -> tuple[int, ...]:
        """The shape of one output step for an input step of ``step_shape`` (the empty result of T = 0): the
        input's, with the last dimension ``out_features`` where the module has it."""
        width = getattr(self, "out_features", None)
        return (*step_shape[:-1], width) if isinstance(width, int) else tuple(step_shape)

    @property
    def recording(self) -> bool:
        return self._recorder is not None

    def record_state(self, name: str, value: Tensor) -> None:
        """Hand an internal trace (``[T, B, *]``) to an attached recorder; a no-op otherwise."""
        if self._recorder is not None:
            self._recorder(name, value)


def _compiling() -> bool:
    return torch.compiler.is_compiling()


def _check_entry(module: Neuron, method: str, x: Any, state: Any) -> tuple[Tensor, Any] | None:
    """The checks of every entry point, before any kernel runs: ``x`` (type, rank, dtype, width and the module's
    own rules), ``state`` (against ``init_state``) and, with ``dendrix.set_checks(True)``, their values.

    Returns None to run the call, or the result of a chunk of T = 0 steps (no time passes: an empty output and
    the state unchanged, or the resting state for ``state=None``)."""
    where = f"{type(module).__name__}.{method}"
    is_step = method == "step"
    name = f"{type(module).__name__} input {'x_t' if is_step else 'x'} of {method}()"
    if is_step:
        check_sequence(x, name, min_rank=module.in_rank - 1, features=module.input_width,
                       layout="one time step", dims="[B, ...]")
        x = x.unsqueeze(0)
    else:
        check_sequence(x, name, min_rank=module.in_rank, features=module.input_width)
    module.check_run_input(x)
    step_like = x[0] if x.shape[0] > 0 else x.new_zeros(x.shape[1:])
    if state is not None:
        module.check_state(state, module.init_state(step_like), where)
    if checks_enabled():
        _check_values(where, name, x[0] if is_step else x, state)
    if x.shape[0] > 0:
        return None
    y = x.new_zeros(0, *module.output_step_shape(step_like.shape))
    if torch.is_grad_enabled():  # keep the empty output in the graph (zero gradients), as torch's layers do
        anchors = [t for t in (x, *module.parameters()) if t.requires_grad]
        for t in anchors:
            y = y + t.sum().to(y.dtype) * 0
    return y, (module.init_state(step_like) if state is None else state)


def _check_values(where: str, name: str, x: Tensor, state: Any) -> None:
    found = first_nonfinite(x)
    if found is not None:
        raise ValueError(f"{name} has a non-finite value {found[1]} at index {found[0]} "
                         f"(value checks are on: dendrix.set_checks(True))")
    if state is None:
        return
    names = getattr(state, "_fields", [str(i) for i in range(len(state))])
    for field, value in zip(names, state):
        found = first_nonfinite(value) if isinstance(value, Tensor) else None
        if found is not None:
            raise ValueError(f"{where}: state field {field!r} has a non-finite value {found[1]} at index "
                             f"{found[0]} (value checks are on: dendrix.set_checks(True))")


def _guarded(method: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn`` (a ``run``, ``forward`` or ``step``) behind :func:`_check_entry`, at the outermost call of each
    module only: a ``forward`` that calls its own ``run`` is checked once. Out of traced code when compiling."""

    @functools.wraps(fn)
    def guarded(self: Neuron, x: Any, *args: Any, **kwargs: Any) -> Any:
        if self.__dict__.get("_in_entry") or _compiling():
            return fn(self, x, *args, **kwargs)
        state = None if method == "forward" else (args[0] if args else kwargs.get("state"))
        empty = _check_entry(self, method, x, state)
        if empty is not None:
            y, new_state = empty
            return y if method == "forward" else ((y[0] if method == "step" else y), new_state)
        self.__dict__["_in_entry"], self.__dict__["_checked_state"] = True, state
        try:
            return fn(self, x, *args, **kwargs)
        finally:
            self.__dict__["_in_entry"], self.__dict__["_checked_state"] = False, None

    return guarded


def _hooked_run(run: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(run)
    def hooked(self: Neuron, x: Tensor, state: State | None = None, *args: Any, **kwargs: Any) -> Any:
        hooks = self.__dict__.get("_run_hooks")
        if not hooks:
            return run(self, x, state, *args, **kwargs)
        for pre, _ in list(hooks.values()):
            pre(self, x)
        try:
            result = run(self, x, state, *args, **kwargs)
        except BaseException:
            for _, post in list(hooks.values()):
                post(self, x, None)
            raise
        for _, post in list(hooks.values()):
            post(self, x, result)
        return result

    return hooked


# The template ``run`` itself reports to the run hooks, for neurons that only write ``_run_sequence``; the base's
# entry points are checked like a subclass's own.
Neuron.run = _guarded("run", _hooked_run(Neuron.run))
Neuron.forward = _guarded("forward", Neuron.forward)
Neuron.step = _guarded("step", Neuron.step)
