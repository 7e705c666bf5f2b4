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
from .validation import check_sequence, check_state_shape

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
            cls.run = _hooked_run(cls.__dict__["run"])

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
        if not isinstance(x_t, Tensor) or x_t.dim() < self.in_rank - 1:
            shape = tuple(x_t.shape) if isinstance(x_t, Tensor) else type(x_t).__name__
            raise ValueError(f"{type(self).__name__}.step: x_t must be one time step with at least "
                             f"{self.in_rank - 1} dims [B, ...], got {shape}")
        y, state = self.run(x_t.unsqueeze(0), state)
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
        return check_sequence(x, f"{type(self).__name__} input", min_rank=self.in_rank, features=features)

    def resolve_state(self, x: Tensor, state: State | None) -> State:
        """``state`` or, if None, the resting state for ``x[0]``; checks shapes against ``init_state``."""
        fresh = self.init_state(x[0])
        if state is None:
            return fresh
        if type(state) is not type(fresh) and not isinstance(state, tuple):
            raise TypeError(f"{type(self).__name__}: state must be a {type(fresh).__name__}, got {type(state).__name__}")
        if len(state) != len(fresh):
            raise ValueError(f"{type(self).__name__}: state has {len(state)} fields, expected {len(fresh)}")
        names = getattr(fresh, "_fields", [str(i) for i in range(len(fresh))])
        for name, got, want in zip(names, state, fresh):
            if isinstance(want, Tensor):
                if not isinstance(got, Tensor):
                    raise TypeError(f"{type(self).__name__}: state field {name!r} must be a tensor")
                check_state_shape(f"{type(self).__name__}.{name}", got, want.shape)
        return state

    @property
    def recording(self) -> bool:
        return self._recorder is not None

    def record_state(self, name: str, value: Tensor) -> None:
        """Hand an internal trace (``[T, B, *]``) to an attached recorder; a no-op otherwise."""
        if self._recorder is not None:
            self._recorder(name, value)


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


# The template ``run`` itself reports to the run hooks, for neurons that only write ``_run_sequence``.
Neuron.run = _hooked_run(Neuron.run)
