"""Spike encoders for analog input. Each returns a time-first tensor ``[T, B, ...]`` (float, same dtype and
device as the input) and draws random numbers only from the ``generator`` it is given (a ``torch.Generator``
on the input's device; ``None`` uses torch's global generator).

* :func:`rate_encode` — ``"bernoulli"``: a spike with probability ``gain·x`` (clipped to 1) at every step;
  ``"poisson"``: a Poisson count of mean ``gain·x`` at every step (can exceed 1). Mean over time → ``gain·x``.
* :func:`latency_encode` — time to first spike, one spike per input at most: ``"linear"``: step
  ``round((1 − x)(T − 1))`` (x = 1 fires at step 0, x near 0 at the last step); ``"log"``: the firing time of an
  RC integrator driven by ``x`` to threshold ``theta``, ``tau·ln(x / (x − theta))`` steps, rounded (x ≤ theta or
  a time past the last step: no spike). Inputs ``x <= threshold`` never fire. Larger input → earlier spike.
* :func:`delta_encode` — changes of a sequence ``x [T, B, ...]``: a reference starts at 0 and follows the input
  in steps of ``threshold``; step ``t`` emits ``n = trunc((x_t − ref)/threshold)`` spikes on the ON channel
  (n > 0) or ``−n`` on the OFF channel (n < 0) and moves ``ref`` by ``n·threshold``. Output
  ``[T, B, 2, ...]`` (channel 0 ON, 1 OFF); ``threshold·cumsum(ON − OFF)`` reconstructs ``x`` within
  ``threshold``. ``max_spikes=1`` caps the spikes per step (binary output; the reconstruction then lags fast
  changes).
* :func:`direct_encode` — the analog input repeated at every step (the "direct"/"repeated" encoding of static
  images, the first layer acting as the encoder).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["rate_encode", "latency_encode", "delta_encode", "direct_encode", "ENCODERS"]


def _check_tensor(name: str, x) -> Tensor:
    if not isinstance(x, Tensor) or not x.is_floating_point():
        raise TypeError(f"{name} must be a floating-point torch.Tensor, got "
                        f"{type(x).__name__ if not isinstance(x, Tensor) else x.dtype}")
    if x.dim() < 1:
        raise ValueError(f"{name} must have a batch dimension, got a 0-d tensor")
    return x


def _check_steps(time_steps) -> int:
    if isinstance(time_steps, bool) or not isinstance(time_steps, int) or time_steps < 1:
        raise ValueError(f"time_steps must be an integer >= 1, got {time_steps!r}")
    return time_steps


def _check_positive(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return float(value)


def _check_unit_range(name: str, x: Tensor) -> None:
    if x.numel() and (not bool(torch.isfinite(x).all()) or float(x.min()) < 0.0 or float(x.max()) > 1.0):
        raise ValueError(f"{name} must lie in [0, 1] (scale the input first), got values in "
                         f"[{float(x.min()):.4g}, {float(x.max()):.4g}]")


def _check_generator(generator, x: Tensor):
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator or None, got {type(generator).__name__}")
    return generator


def rate_encode(x: Tensor, time_steps: int, mode: str = "bernoulli", gain: float = 1.0,
                generator: torch.Generator | None = None) -> Tensor:
    """Rate code ``x [B, ...]`` in [0, 1] → spikes ``[T, B, ...]`` (see the module docstring)."""
    x = _check_tensor("x", x)
    time_steps = _check_steps(time_steps)
    gain = _check_positive("gain", gain)
    _check_unit_range("x", x)
    generator = _check_generator(generator, x)
    rate = (x * gain).unsqueeze(0).expand(time_steps, *x.shape)
    if mode == "bernoulli":
        return torch.bernoulli(rate.clamp(max=1.0), generator=generator)
    if mode == "poisson":
        return torch.poisson(rate.contiguous(), generator=generator)
    raise ValueError(f"mode must be 'bernoulli' or 'poisson', got {mode!r}")


def latency_encode(x: Tensor, time_steps: int, mode: str = "linear", threshold: float = 0.0, tau: float = 5.0,
                   theta: float = 0.2) -> Tensor:
    """Time-to-first-spike code ``x [B, ...]`` in [0, 1] → ``[T, B, ...]`` with at most one spike per input."""
    x = _check_tensor("x", x)
    time_steps = _check_steps(time_steps)
    _check_unit_range("x", x)
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0.0 <= threshold < 1.0:
        raise ValueError(f"threshold must be a number in [0, 1), got {threshold!r}")
    if mode == "linear":
        steps = torch.round((1.0 - x) * (time_steps - 1))
        fires = x > threshold
    elif mode == "log":
        tau, theta = _check_positive("tau", tau), _check_positive("theta", theta)
        if theta >= 1.0:
            raise ValueError(f"theta must be < 1 so that x = 1 fires, got {theta!r}")
        above = x > max(theta, threshold)
        safe = torch.where(above, x, torch.ones_like(x))
        steps = torch.round(tau * torch.log(safe / (safe - theta)))
        fires = above & (steps <= time_steps - 1)
    else:
        raise ValueError(f"mode must be 'linear' or 'log', got {mode!r}")
    grid = torch.arange(time_steps, device=x.device, dtype=x.dtype).view(-1, *([1] * x.dim()))
    return ((grid == steps.unsqueeze(0)) & fires.unsqueeze(0)).to(x.dtype)


def delta_encode(x: Tensor, threshold: float = 0.1, max_spikes: int | None = None) -> Tensor:
    """Delta (change) code of a sequence ``x [T, B, ...]`` → ``[T, B, 2, ...]`` (ON, OFF) spike counts."""
    x = _check_tensor("x", x)
    if x.dim() < 2:
        raise ValueError(f"x must be a sequence [T, B, ...], got shape {tuple(x.shape)}")
    threshold = _check_positive("threshold", threshold)
    if max_spikes is not None and (isinstance(max_spikes, bool) or not isinstance(max_spikes, int)
                                   or max_spikes < 1):
        raise ValueError(f"max_spikes must be None or an integer >= 1, got {max_spikes!r}")
    ref = torch.zeros_like(x[0])
    out = []
    for step in x:
        n = torch.trunc((step - ref) / threshold)
        if max_spikes is not None:
            n = n.clamp(-max_spikes, max_spikes)
        ref = ref + n * threshold
        out.append(torch.stack([n.clamp(min=0), (-n).clamp(min=0)], dim=1))
    return torch.stack(out)


def direct_encode(x: Tensor, time_steps: int) -> Tensor:
    """``x [B, ...]`` repeated ``time_steps`` times → ``[T, B, ...]`` (a copy, safe to modify)."""
    x = _check_tensor("x", x)
    time_steps = _check_steps(time_steps)
    return x.unsqueeze(0).repeat(time_steps, *([1] * x.dim()))


ENCODERS = {"rate": rate_encode, "latency": latency_encode, "delta": delta_encode, "direct": direct_encode}
