"""DA-LIF: dual adaptive LIF with independently learned spatial (input) and temporal (leak) decays."""

from __future__ import annotations

import logging
import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..contract import Neuron
from ..ops.lif import leaky_sequence
from ..registry import register
from ..surrogate import SurrogateLike, get_surrogate
from ..validation import check_choice, check_int, check_range
from .lif import check_lif_arguments

__all__ = ["DALIF", "DALIFState"]

PARAMETERIZATIONS = ("tanh", "sigmoid")
logger = logging.getLogger(__name__)


class DALIFState(NamedTuple):
    h: Tensor  # post-reset membrane H[t] (the paper's naming; V is the pre-reset potential)


# f maps onto [_EPS, 1 − _EPS]: tanh and sigmoid round to exactly 1.0 (or 0.0) in float32 far out, which
# would give a non-leaky (or dead) neuron; the margin keeps the rounded decay strictly inside (0, 1).
_EPS = 1e-6


def _inverse(parameterization: str, value: float) -> float:
    """The unconstrained parameter a with f(a) = value: tanh(softplus(a)) or sigmoid(a) (before the margin)."""
    value = (value - _EPS) / (1.0 - 2.0 * _EPS)
    if parameterization == "tanh":
        y = math.atanh(value)  # softplus(a) = y > 0
        return y + math.log(-math.expm1(-y))
    return math.log(value / (1.0 - value))


def _squash(parameterization: str, raw: Tensor) -> Tensor:
    # tanh(softplus(a)): the paper's tanh form restricted to (0, 1) for every real a (plain tanh(a) reaches
    # negative decays, e.g. β = −0.46, which the paper's decays in (0, 1) exclude).
    g = torch.tanh(F.softplus(raw)) if parameterization == "tanh" else torch.sigmoid(raw)
    return _EPS + (1.0 - 2.0 * _EPS) * g


class DALIF(Neuron):
    r"""Dual Adaptive LIF (Zhang, Yu, Zhang & Wang, "DA-LIF: Dual Adaptive Leaky Integrate-and-Fire Model for
    Deep Spiking Neural Networks", ICASSP 2025).

    Two decays are learned independently: alpha (spatial, scales the input) and beta (temporal, the leak)::

        V[t] = beta H[t-1] + alpha X[t]            pre-reset potential
        S[t] = Θ(V[t] - v_threshold)               (surrogate gradient in backward)
        H[t] = V[t] (1 - S[t])                     hard reset (default)
        H[t] = V[t] - v_threshold S[t]             soft reset (``reset="soft"``)

    alpha = f(a), beta = f(b) with a and b learned and f one of two maps onto (0, 1), as the paper's decays:
    f(a) = tanh(softplus(a)) (``"tanh"``, default, the paper's preferred tanh form kept positive) or
    f(a) = sigmoid(a) (``"sigmoid"``), both scaled onto [1e-6, 1 − 1e-6] so that the rounded float32 decay is
    never exactly 0 or 1. No optimiser step can take a decay out of (0, 1).
    With alpha = beta = 0.5 (the default initialisation) DA-LIF is LIF with tau = 2 and ``decay_input=True``.
    Runs on the fused LIF engine (:func:`dendrix.ops.lif.leaky_sequence` with leak = beta, gain = alpha); the
    gradients of alpha and beta come from its hand-written backward. Recorded trace ``"v"``: V[t] (pre-reset).

    Args:
        alpha_init: initial alpha, in (0, 1). Default 0.5.
        beta_init: initial beta, in (0, 1). Default 0.5.
        v_threshold: firing threshold, > 0. Default 1.0.
        reset: ``"hard"`` (to 0, default) or ``"soft"`` (subtract the threshold).
        parameterization: ``"tanh"`` (default: tanh(softplus(a))) or ``"sigmoid"``.
        channels: None (default) for one (alpha, beta) per layer, as in the paper; an int for one pair per
            channel (last input dimension).
        detach_reset: drop the spike's gradient path through the reset. Default False.
        surrogate: surrogate gradient name or object. Default ``"atan"``.
        backend: ``"auto"`` | ``"fused"`` | ``"triton"`` (CUDA) | ``"reference"`` (see :mod:`dendrix.ops.lif`).

    Parameters ``alpha_logit`` and ``beta_logit`` (a and b). State dicts of the earlier form (``alpha_raw``,
    ``beta_raw`` with f = tanh(a) or sigmoid(a)) are converted on loading to the same decays, or refused with
    an error when a decay is outside (0, 1).
    """

    def __init__(self, alpha_init: float = 0.5, beta_init: float = 0.5, v_threshold: float = 1.0,
                 reset: str = "hard", parameterization: str = "tanh", channels: int | None = None,
                 detach_reset: bool = False, surrogate: SurrogateLike = "atan", backend: str = "auto"):
        super().__init__()
        alpha_init = check_range("alpha_init", alpha_init, 0.0, 1.0, low_open=True, high_open=True)
        beta_init = check_range("beta_init", beta_init, 0.0, 1.0, low_open=True, high_open=True)
        self.reset = check_choice("reset", reset, ("hard", "soft"))
        self.v_threshold, _, self.backend = check_lif_arguments(v_threshold, 0.0, backend)
        self.parameterization = check_choice("parameterization", parameterization, PARAMETERIZATIONS)
        self.channels = None if channels is None else check_int("channels", channels, minimum=1)
        if not isinstance(detach_reset, bool):
            raise TypeError(f"detach_reset must be a bool, got {type(detach_reset).__name__}")
        self.detach_reset = detach_reset
        self.surrogate = get_surrogate(surrogate)
        shape = () if self.channels is None else (self.channels,)
        self.alpha_logit = nn.Parameter(torch.full(shape, _inverse(self.parameterization, alpha_init)))
        self.beta_logit = nn.Parameter(torch.full(shape, _inverse(self.parameterization, beta_init)))

    @property
    def alpha(self) -> Tensor:
        """Spatial (input) decay, in (0, 1)."""
        return _squash(self.parameterization, self.alpha_logit)

    @property
    def beta(self) -> Tensor:
        """Temporal decay (leak), in (0, 1)."""
        return _squash(self.parameterization, self.beta_logit)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        for name in ("alpha", "beta"):
            old, new = f"{prefix}{name}_raw", f"{prefix}{name}_logit"
            if old not in state_dict or new in state_dict:
                continue
            raw = state_dict.pop(old)
            if self.parameterization == "tanh":  # old decay tanh(raw), new tanh(softplus(a))
                decay = torch.tanh(raw.double())
                if decay.numel() and not bool(((decay > 0) & (decay < 1)).all()):
                    raise ValueError(f"DALIF: {old} gives the decay {name} = tanh({old}) with values in "
                                     f"[{decay.min().item():.4g}, {decay.max().item():.4g}]; the bounded "
                                     f"parameterisation allows (0, 1) only, so this checkpoint cannot be converted")
                y = torch.atanh((decay - _EPS) / (1.0 - 2.0 * _EPS))
                raw = (y + torch.log(-torch.expm1(-y))).to(raw.dtype)
            else:  # old decay sigmoid(raw): the same decay up to the margin
                decay = torch.sigmoid(raw.double()).clamp(2 * _EPS, 1 - 2 * _EPS)
                g = (decay - _EPS) / (1.0 - 2.0 * _EPS)
                raw = torch.log(g / (1 - g)).to(raw.dtype)
            state_dict[new] = raw
            logger.warning("DALIF: converted %r of an earlier checkpoint into %r (same decay)", old, new)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def init_state(self, x_t: Tensor) -> DALIFState:
        dtype = self.state_dtype(x_t)
        return DALIFState(torch.zeros(x_t.shape, dtype=dtype, device=x_t.device))

    @property
    def input_width(self) -> int | None:  # type: ignore[override]
        return self.channels

    def _run_sequence(self, x: Tensor, state: DALIFState) -> tuple[Tensor, DALIFState]:
        spikes, v, h_last = leaky_sequence(
            x, state.h, self.beta, self.alpha, 0.0, v_threshold=self.v_threshold,
            v_reset=0.0 if self.reset == "hard" else None, detach_reset=self.detach_reset,
            surrogate=self.surrogate, backend=self.backend)
        self.record_state("v", v)
        return spikes, DALIFState(h_last)

    def operation_counts(self, inputs: Tensor, output: Tensor) -> dict[str, float]:
        """Energy counting (:mod:`dendrix.analysis.energy`): V = βH + αX, 2 MACs per neuron and step."""
        return {"dynamics_mac": 2.0 * float(output.numel())}

    def extra_repr(self) -> str:
        scope = "per layer" if self.channels is None else f"channels={self.channels}"
        return (f"{scope}, parameterization={self.parameterization}, reset={self.reset}, "
                f"v_threshold={self.v_threshold:g}, surrogate={self.surrogate!r}")


register("dalif", DALIF, family="lif", width="channels", per_channel=True,
         description="dual adaptive LIF: learned input (alpha) and leak (beta) decays (Zhang et al. 2025)",
         cpu_engine="numba time loop (ops.lif; fused kernel without numba)", gpu_engine="Triton kernel (ops.lif)")
