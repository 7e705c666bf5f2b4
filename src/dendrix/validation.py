"""Argument checks shared by every model: each error names the argument, the value and what is allowed."""

from __future__ import annotations

import math
from typing import Any

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


def check_sequence(x: Any, name: str = "x", *, min_rank: int = 3, features: int | None = None) -> Tensor:
    """A time-first sequence ``[T, B, *features]`` of a floating dtype.

    ``features`` checks the size of the last dimension. Half precision is accepted (models compute in it or
    upcast, as they document); integer/bool inputs are refused with a clear message.
    """
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor shaped [T, B, ...], got {type(x).__name__}")
    if x.dim() < min_rank:
        raise ValueError(f"{name} must be time-first with at least {min_rank} dims [T, B, ...], got shape {tuple(x.shape)}")
    if x.dtype not in _FLOATS:
        raise TypeError(f"{name} must be a floating tensor (float16/bfloat16/float32/float64), got {x.dtype}")
    if features is not None and x.shape[-1] != features:
        raise ValueError(f"{name} must have {features} features in its last dim, got shape {tuple(x.shape)}")
    return x


def check_state_shape(name: str, tensor: Tensor, expected: torch.Size | tuple) -> None:
    """Refuse a state tensor ``name`` whose shape is not ``expected`` (the shape the input needs), with a
    message that says to build the state with ``init_state``."""
    if tuple(tensor.shape) != tuple(expected):
        raise ValueError(f"state {name} has shape {tuple(tensor.shape)} but the input needs {tuple(expected)}; "
                         f"build it with init_state(x_t) for this batch")
