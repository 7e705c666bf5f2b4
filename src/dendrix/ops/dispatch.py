"""One backend vocabulary, one dispatcher and one dtype policy for every op in ``dendrix.ops``.

Vocabulary. ``backend`` names the *engine* that runs an op, ``method`` (where an op has several) the
*algorithm*:

==============  ==============================================================================================
backend         engine
==============  ==============================================================================================
``"auto"``      the first engine of the op's preference list that can run the call (never an error)
``"reference"`` the plain per-step loop differentiated by autograd: obviously correct, slow (every op has it)
``"fused"``     one ``torch.autograd.Function`` over the whole sequence with a hand-written backward
``"triton"``    Triton GPU kernels (optional ``triton`` package; CUDA tensors, CPU ones under TRITON_INTERPRET=1)
``"numba"``     compiled CPU loops (optional ``numba`` package; the bilinear form)
``"torch"``     vectorised tensor arithmetic on any device (the bilinear form)
==============  ==============================================================================================

:func:`resolve` turns a requested backend into the engine that runs: ``"auto"`` walks the op's preference
list, a forced backend runs as asked or raises ``RuntimeError`` saying why it cannot (never a silent
fallback). Optional engines are :class:`LazyEngine` objects: their module is imported on first use only, so
``import dendrix`` never imports Triton.

Dtype policy (:func:`compute_dtype`, :func:`to_compute`): float16/bfloat16 inputs are integrated in float32
(SpikingJelly's convention); float32/float64 run in their own dtype. Each op applies it once, at its entry;
spikes come back in the input dtype.
"""

from __future__ import annotations

import importlib
import importlib.util
from types import ModuleType
from typing import Callable, Mapping, Sequence

import torch
from torch import Tensor

from ..dtypes import HALF_DTYPES, compute_dtype, to_compute
from ..validation import check_choice

__all__ = ["ENGINES", "HALF_DTYPES", "LazyEngine", "resolve", "cuda_first", "compute_dtype", "to_compute"]

ENGINES = ("auto", "reference", "fused", "triton", "numba", "torch")
Check = Callable[[], "str | None"]


class LazyEngine:
    """An optional engine module (e.g. ``"dendrix.ops.lif.triton"``), imported once on first use.

    ``package`` is the optional dependency it needs (checked with ``find_spec`` before importing, so a missing
    package costs no import attempt); the module provides ``unsupported_reason(...) -> str | None``.
    """

    def __init__(self, module: str, package: str = "triton", install: str = "pip install triton, or dendrix[gpu]"):
        self.module, self.package, self.install = module, package, install
        self._engine: ModuleType | None = None
        self.import_error: str | None = None  # why it could not be imported (kept so we try once)

    def load(self) -> ModuleType | None:
        if self._engine is None and self.import_error is None:
            if importlib.util.find_spec(self.package) is None:
                self.import_error = f"the {self.package!r} package is not installed ({self.install})"
            else:
                try:
                    self._engine = importlib.import_module(self.module)
                except Exception as err:  # noqa: BLE001 - any import failure means "this engine is absent here"
                    self.import_error = f"importing {self.package} failed: {type(err).__name__}: {err}"
        return self._engine

    @property
    def loaded(self) -> bool:
        return self._engine is not None

    def why_not(self, *args) -> str | None:
        """Why the engine cannot run a call (None when it can): not importable, or its ``unsupported_reason``."""
        if self.package == "numba" and torch.compiler.is_compiling():
            # Dynamo cannot trace into numba; "auto" then takes the next engine (the fused one). LIF and ALIF do
            # not ask: their custom ops resolve the engine when they run (ops/lif/compiled.py)
            return ("torch.compile cannot trace numba kernels (backend='auto' uses the fused engine while "
                    "compiling; LIF and ALIF run numba inside their custom ops)")
        engine = self.load()
        return self.import_error if engine is None else engine.unsupported_reason(*args)

    def check(self, *args) -> Check:
        """A deferred :meth:`why_not` for :func:`resolve` (nothing is imported unless the engine is considered)."""
        return lambda: self.why_not(*args)


def cuda_first(device: torch.device, cuda: Sequence[str], other: Sequence[str]) -> tuple[str, ...]:
    """The ``auto`` preference of an op: ``cuda`` for CUDA tensors, else ``other`` (a GPU engine is never picked
    automatically for CPU tensors, even where TRITON_INTERPRET=1 would let it run)."""
    return tuple(cuda if device.type == "cuda" else other)


def resolve(backend: str, backends: Sequence[str], *, auto: Sequence[str],
            checks: Mapping[str, Check] | None = None) -> str:
    """The engine that runs a call.

    Args:
        backend: the requested name, one of ``backends`` (ValueError naming the allowed ones otherwise).
        backends: the op's vocabulary, ``"auto"`` included.
        auto: the engines ``"auto"`` tries, in order of preference, for this call (the caller leaves out the
            ones it never picks automatically, e.g. Triton for CPU tensors); the first that passes its check
            runs, and the last one is taken without a check.
        checks: engine -> a callable returning why that engine cannot run this call (None when it can).
            Engines without a check always run. Checks are only called for the engines considered.

    Returns the engine name. A forced backend whose check fails raises ``RuntimeError`` with the reason: a
    forced backend never falls back silently.
    """
    check_choice("backend", backend, tuple(backends))
    checks = checks or {}
    if backend == "auto":
        for name in auto[:-1]:
            check = checks.get(name)
            if check is None or check() is None:
                return name
        return auto[-1]
    check = checks.get(backend)
    reason = None if check is None else check()
    if reason is not None:
        others = [b for b in backends if b not in (backend, "auto")]
        raise RuntimeError(f"backend={backend!r} cannot run this call: {reason}; use backend='auto' or one of "
                           f"{others}")
    return backend
