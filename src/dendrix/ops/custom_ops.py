"""The one way dendrix registers a kernel as a ``torch.library`` custom op, so ``torch.compile`` sees it whole.

Dynamo traces Python: it cannot enter a numba function, and a kernel whose shapes depend on the data (the
active-pair lists of the bilinear form) would break the graph. Registered as a custom op, such a kernel is one
opaque node in the graph: its *fake* implementation gives Dynamo and AOTAutograd the output shapes and dtypes
without running it, and its registered backward is itself a custom op, so the compiled backward graph holds one
node too. The fused whole-sequence engines (LIF, ALIF, RF/BRF, DGN, MMDEND; ``ops/*/compiled.py``) are registered
as well, though made of plain torch operators: traced, Dynamo would unroll their time loops and inductor's code
generation would grow with ``T``. ``docs/compile.md`` says which engine is compiled how, and why.

A custom op's schema takes tensors, numbers, strings and lists of them, not Python objects: a surrogate travels
as its name and parameters (:func:`surrogate_args`, :func:`surrogate_from_args`), and the fused engines'
``forward``/``backward`` run inside the op with an :class:`EngineContext` standing in for autograd's ``ctx``.

Usage (every dendrix op registers the same way, under the ``dendrix::`` namespace)::

    op = define_op("name", impl, fake=fake_impl, backward=backward, setup_context=setup_context)

``impl`` must carry type annotations (``torch.library.custom_op`` reads the schema from them).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Callable, Sequence

import torch
from torch import Tensor

from ..surrogate import SURROGATES, DoubleGaussian, Surrogate

__all__ = ["NAMESPACE", "define_op", "compiling", "surrogate_args", "surrogate_from_args", "EngineContext",
           "unaliased", "optional_grad"]

NAMESPACE = "dendrix"


def compiling() -> bool:
    """True while Dynamo traces the calling code (the op wrappers then call their custom op)."""
    return torch.compiler.is_compiling()


def define_op(name: str, impl: Callable, *, fake: Callable, backward: Callable | None = None,
              setup_context: Callable | None = None) -> torch.library.CustomOpDef:
    """Register ``impl`` as the custom op ``dendrix::name`` with its fake (shape-only) implementation and, when
    ``backward`` is given, its autograd formula (``setup_context(ctx, inputs, output)`` saves what it needs).

    ``impl`` must not mutate or return its inputs (the op is declared functional); returns the op, callable
    like the function.
    """
    op = torch.library.custom_op(f"{NAMESPACE}::{name}", impl, mutates_args=())
    op.register_fake(fake)
    if backward is not None:
        op.register_autograd(backward, setup_context=setup_context)
    return op


def surrogate_args(surrogate: Surrogate) -> tuple[str, list[float]] | None:
    """``(name, parameters)`` that rebuild ``surrogate`` through :func:`surrogate_from_args`, or None for a
    surrogate class of the user's own (the callers then keep the traced engine, which calls it directly)."""
    cls = SURROGATES.get(surrogate.name)
    if type(surrogate) is not cls:
        return None
    if isinstance(surrogate, DoubleGaussian):
        return surrogate.name, [surrogate.value, surrogate.h, surrogate.s]
    return surrogate.name, [surrogate.value]


@lru_cache(maxsize=64)
def _surrogate(name: str, params: tuple[float, ...]) -> Surrogate:
    return SURROGATES[name](*params)


def surrogate_from_args(name: str, params: Sequence[float]) -> Surrogate:
    """The surrogate :func:`surrogate_args` described (one object per distinct description)."""
    return _surrogate(name, tuple(float(p) for p in params))


class EngineContext:
    """Stands in for autograd's ``ctx`` when a fused engine's ``forward`` or ``backward`` runs inside a custom
    op: it keeps what ``forward`` saves and answers ``needs_input_grad`` for ``backward``."""

    def __init__(self, needs_input_grad: Sequence[bool] = (), saved_tensors: Sequence[Tensor | None] = ()):
        self.needs_input_grad = tuple(needs_input_grad)
        self.saved_tensors = tuple(saved_tensors)

    def save_for_backward(self, *tensors: Tensor | None) -> None:
        self.saved_tensors = tensors

    def set_materialize_grads(self, value: bool) -> None:
        pass

    def mark_non_differentiable(self, *tensors: Tensor) -> None:
        pass


def unaliased(outputs: Sequence[Tensor], inputs: Sequence[object]) -> tuple[Tensor, ...]:
    """``outputs`` with a copy of every one that shares memory with an input or an earlier output: a custom
    op's outputs must be fresh tensors (an engine may return an input's view, or two views of one buffer)."""
    seen = {t.untyped_storage().data_ptr() for t in inputs if isinstance(t, Tensor) and t.numel() > 0}
    result = []
    for out in outputs:
        if out.numel() == 0:        # an empty placeholder: a new one each time (one object may stand twice)
            out = out.new_empty(out.shape)
        else:
            ptr = out.untyped_storage().data_ptr()
            if ptr in seen:
                out = out.clone()
                ptr = out.untyped_storage().data_ptr()
            seen.add(ptr)
        result.append(out)
    return tuple(result)


def optional_grad(grad: Tensor | None, like: Tensor) -> Tensor:
    """A gradient, or an empty tensor standing for one that is not needed (custom ops return no None)."""
    return grad if grad is not None else like.new_empty(0)
