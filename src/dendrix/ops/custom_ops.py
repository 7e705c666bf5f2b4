"""The one way dendrix registers a kernel as a ``torch.library`` custom op, so ``torch.compile`` sees it whole.

Dynamo traces Python: it cannot enter a numba function, and a kernel whose shapes depend on the data (the
active-pair lists of the bilinear form) would break the graph. Registered as a custom op, such a kernel is one
opaque node in the graph: its *fake* implementation gives Dynamo and AOTAutograd the output shapes and dtypes
without running it, and its registered backward is itself a custom op, so the compiled backward graph holds one
node too. Engines made of plain torch operators (the fused LIF/ALIF/RF/DGN/MMDEND loops) are not registered:
Dynamo traces them (``docs/compile.md`` says which engine is compiled how, and why).

Usage (every dendrix op registers the same way, under the ``dendrix::`` namespace)::

    op = define_op("name", impl, fake=fake_impl, backward=backward, setup_context=setup_context)

``impl`` must carry type annotations (``torch.library.custom_op`` reads the schema from them).
"""

from __future__ import annotations

from typing import Callable

import torch

__all__ = ["NAMESPACE", "define_op", "compiling"]

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
