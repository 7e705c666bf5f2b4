"""Argument checks shared by every model: each error names the argument, the value and what is allowed."""

from __future__ import annotations

import contextlib
import math
import re
from typing import Any, Iterator

import torch
from torch import Tensor

_FLOATS = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def _as_float(name: str, value: Any) -> float:
    if isinstance(value, Tensor):
        if value.numel() != 1:
            raise TypeError(f"{name} must be a number, got a tensor of shape {tuple(value.shape)}")
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number, got {type(value).__name__} {value!r}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value!r}")
    return value


def check_positive(name: str, value: Any) -> float:
    """``value > 0``."""
    v = _as_float(name, value)
    if v <= 0:
        raise ValueError(f"{name} must be > 0, got {v!r}")
    return v


def check_nonnegative(name: str, value: Any) -> float:
    """``value`` as a float if it is >= 0, else a ValueError naming ``name``."""
    v = _as_float(name, value)
    if v < 0:
        raise ValueError(f"{name} must be >= 0, got {v!r}")
    return v


def check_greater(name: str, value: Any, bound: float, why: str = "") -> float:
    """``value > bound`` (e.g. tau > 1 where the decay 1/tau must stay below 1)."""
    v = _as_float(name, value)
    if v <= bound:
        raise ValueError(f"{name} must be > {bound:g}{' (' + why + ')' if why else ''}, got {v!r}")
    return v


def check_range(name: str, value: Any, low: float, high: float, *, low_open=False, high_open=False) -> float:
    """``value`` as a float if it lies in [low, high] (ends open with ``low_open`` / ``high_open``), else a
    ValueError naming ``name`` and the interval."""
    v = _as_float(name, value)
    bad_low = v <= low if low_open else v < low
    bad_high = v >= high if high_open else v > high
    if bad_low or bad_high:
        lb, hb = ("(" if low_open else "["), (")" if high_open else "]")
        raise ValueError(f"{name} must be in {lb}{low:g}, {high:g}{hb}, got {v!r}")
    return v


def check_int(name: str, value: Any, minimum: int | None = None, maximum: int | None = None) -> int:
    """``value`` as an int (integral floats accepted, bools refused) within ``[minimum, maximum]``, else a
    TypeError/ValueError naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, (int,)) and not (isinstance(value, float) and value.is_integer()):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__} {value!r}")
    v = int(value)
    if minimum is not None and v < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {v}")
    if maximum is not None and v > maximum:
        raise ValueError(f"{name} must be <= {maximum}, got {v}")
    return v


def check_choice(name: str, value: Any, choices) -> Any:
    """``value`` if it is one of ``choices``, else a ValueError naming ``name`` and the choices."""
    if value not in choices:
        raise ValueError(f"{name} must be one of {sorted(map(str, choices))}, got {value!r}")
    return value


_REGISTRY_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]*$")


def check_registration(function: str, name: Any, what: str, *, builtin, registered, overwrite: bool,
                       error: type[Exception] = ValueError) -> str:
    """``name`` if a user may register it: a word that starts with a letter, not a built-in, not taken (unless
    ``overwrite``). ``function`` names the caller and ``what`` the thing registered, for the one-line error."""
    if not isinstance(name, str) or not _REGISTRY_NAME.match(name):
        raise error(f"{function}: name must start with a letter and hold letters, digits, '_', '.' or '-', "
                    f"got {name!r}")
    if name in builtin:
        raise error(f"{function}: {name!r} is a built-in {what}; choose another name")
    if name in registered and not overwrite:
        raise error(f"{function}: {name!r} is already registered (pass overwrite=True to replace it)")
    return name


def check_sequence(x: Any, name: str = "x", *, min_rank: int = 3, features: int | None = None,
                   layout: str = "time-first", dims: str = "[T, B, ...]") -> Tensor:
    """A time-first sequence ``[T, B, *features]`` of a floating dtype.

    ``features`` checks the size of the last dimension. Half precision is accepted (models compute in it or
    upcast, as they document); integer/bool/complex inputs are refused with a clear message. ``layout`` and
    ``dims`` word the rank error (``step`` checks one time step: ``"one time step", "[B, ...]"``).
    """
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor shaped {dims}, got {type(x).__name__}")
    if x.dim() < min_rank:
        raise ValueError(f"{name} must be {layout} with at least {min_rank} dims {dims}, got shape {tuple(x.shape)}")
    if x.dtype not in _FLOATS:
        raise TypeError(f"{name} must be a floating tensor (float16/bfloat16/float32/float64), got {x.dtype}")
    if features is not None and x.shape[-1] != features:
        raise ValueError(f"{name} must have {features} features in its last dim, got shape {tuple(x.shape)}")
    return x


def first_nonfinite(x: Tensor) -> tuple[tuple[int, ...], float] | None:
    """The index and value of the first non-finite element of ``x`` (row-major), or None if all are finite.

    One reduction over ``x`` (two more only when something is found): called only while checks are on."""
    if x.is_complex():
        x = torch.view_as_real(x)
    if not x.is_floating_point() or bool(torch.isfinite(x).all()):
        return None
    index = tuple(int(i) for i in (~torch.isfinite(x)).nonzero()[0])
    return index, float(x[index])


# -- value checks (NaN / Inf) of the neuron API: off by default ------------------------------------------------
_CHECKS = {"on": False}


def set_checks(enabled: bool) -> bool:
    """Turn the value checks of every neuron's ``forward``/``run``/``step`` on or off (process-wide).

    On: a non-finite value (NaN, ±Inf) in the input or the given state raises a ValueError naming the module, the
    argument and the first non-finite position, before any kernel runs (one reduction over the input per call).
    Off (the default): no value is looked at (a Python bool test per call). Returns the previous setting."""
    if not isinstance(enabled, bool):
        raise TypeError(f"set_checks: enabled must be a bool, got {type(enabled).__name__} {enabled!r}")
    previous, _CHECKS["on"] = _CHECKS["on"], enabled
    return previous


def checks_enabled() -> bool:
    """Whether the value checks of :func:`set_checks` are on."""
    return _CHECKS["on"]


@contextlib.contextmanager
def checks(enabled: bool = True) -> Iterator[None]:
    """``with dendrix.checks():`` turns the value checks on inside the block (``checks(False)``: off) and restores
    the previous setting after it, also when the block raises."""
    previous = set_checks(enabled)
    try:
        yield
    finally:
        set_checks(previous)


def check_state_shape(name: str, tensor: Tensor, expected: torch.Size | tuple) -> None:
    """Refuse a state tensor ``name`` whose shape is not ``expected`` (the shape the input needs), with a
    message that says to build the state with ``init_state``."""
    if tuple(tensor.shape) != tuple(expected):
        raise ValueError(f"state {name} has shape {tuple(tensor.shape)} but the input needs {tuple(expected)}; "
                         f"build it with init_state(x_t) for this batch")
