"""Resonate-and-fire neurons: Izhikevich's RF and the balanced RF (BRF) of Higuchi et al. (2024).

Both integrate a damped oscillator with explicit Euler (dt = 0.01), state z = u + iv:

    u' = u + dt (b u - ω v + x),   v' = v + dt (ω u + b v).

* RF (Izhikevich, "Resonate-and-fire neurons", Neural Networks 14, 2001): b = -|b_offset|, S = Θ(u' - θ),
  no reset (as in the BRF authors' RF baseline).
* BRF (Higuchi, Kairat, Bohté, Otte, "Balanced Resonate-and-Fire Neurons", ICML 2024): the damping sits
  below the divergence boundary of the Euler scheme, p(ω) = (-1 + sqrt(1 - (dt ω)²))/dt, minus a learnable
  offset and a refractory term: b = p(ω) - |b_offset| - q, S = Θ(u' - θ - q), q' = 0.9 q + S.

ω and b_offset are learnable per channel (used through |·|). The whole sequence runs in one autograd node
with a hand-written backward (:mod:`dendrix.ops.rf`; on CUDA with Triton installed, one GPU kernel for the
forward and one for the backward); the surrogate gradient is the double Gaussian.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor, nn

from ..contract import Neuron
from ..dtypes import to_compute
from ..ops.rf import BACKENDS, divergence_boundary, rf_sequence
from ..registry import register
from ..surrogate import SurrogateLike, get_surrogate
from ..validation import _as_float, check_choice, check_int, check_nonnegative, check_positive

__all__ = ["RF", "BRF", "RFState"]



class RFState(NamedTuple):
    u: Tensor  # real part of the state (membrane potential) [B, *, C]
    v: Tensor  # imaginary part [B, *, C]
    q: Tensor  # refractory variable (BRF; stays 0 for RF) [B, *, C]


def _check_range(name: str, value, minimum: float = 0.0) -> tuple[float, float]:
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        raise TypeError(f"{name} must be a (low, high) pair, got {value!r}")
    lo, hi = check_nonnegative(f"{name}[0]", value[0]), check_nonnegative(f"{name}[1]", value[1])
    if lo > hi or lo < minimum:
        raise ValueError(f"{name} must satisfy {minimum:g} <= low <= high, got {value!r}")
    return lo, hi


class RF(Neuron):
    """Izhikevich resonate-and-fire neuron (explicit Euler, no reset). Input current ``[T, B, *, channels]``.

    ``u' = u + dt(b u - ω v + x)``, ``v' = v + dt(ω u + b v)``, ``b = -|b_offset|``, ``S = Θ(u' - θ)``.

    Args:
        channels: number of neurons (last input dim).
        omega_range: uniform initial range of ω per channel (default (5, 10), the BRF paper's SHD setting).
        b_offset_range: uniform initial range of b_offset (default (2, 3)).
        dt: Euler step (0.01). theta: threshold (1.0).
        surrogate: surrogate gradient (default ``"double_gaussian"``).
        backend: ``"auto"`` | ``"fused"`` (hand-written backward) | ``"triton"`` (one GPU kernel each way;
            optional ``triton`` package, CUDA tensors) | ``"reference"`` (autograd step loop). ``"auto"`` uses
            the Triton kernels for CUDA tensors when Triton is installed (built-in surrogates), else the fused
            engine (:mod:`dendrix.ops.rf`).
    """

    balanced = False

    def __init__(self, channels: int, omega_range: tuple[float, float] = (5.0, 10.0),
                 b_offset_range: tuple[float, float] = (2.0, 3.0), dt: float = 0.01, theta: float = 1.0,
                 surrogate: SurrogateLike = "double_gaussian", backend: str = "auto"):
        super().__init__()
        self.channels = check_int("channels", channels, minimum=1)
        self.dt = check_positive("dt", dt)
        self.theta = _as_float("theta", theta)
        omega_range = _check_range("omega_range", omega_range)
        b_offset_range = _check_range("b_offset_range", b_offset_range)
        if self.balanced and omega_range[1] * self.dt > 1:
            raise ValueError(f"omega_range upper bound must be <= 1/dt = {1 / self.dt:g} (BRF's divergence "
                             f"boundary needs |dt·ω| <= 1), got {omega_range!r}")
        self.backend = check_choice("backend", backend, BACKENDS)
        self.surrogate = get_surrogate(surrogate)
        self.omega = nn.Parameter(torch.empty(self.channels).uniform_(*omega_range))
        self.b_offset = nn.Parameter(torch.empty(self.channels).uniform_(*b_offset_range))

    def damping(self) -> Tensor:
        """b without the refractory term ``[C]``: RF ``-|b_offset|``; BRF ``p(|ω|) - |b_offset|``."""
        if self.balanced:
            return divergence_boundary(self.omega.abs(), self.dt) - self.b_offset.abs()
        return -self.b_offset.abs()

    def init_state(self, x_t: Tensor) -> RFState:
        dtype = self.state_dtype(x_t)
        zero = torch.zeros(x_t.shape, dtype=dtype, device=x_t.device)
        return RFState(zero, zero.clone(), zero.clone())

    @property
    def input_width(self) -> int:  # type: ignore[override]
        return self.channels

    def compute_input(self, x: Tensor) -> Tensor:
        return to_compute(x)  # half inputs are integrated in float32

    def _run_sequence(self, x: Tensor, state: RFState) -> tuple[Tensor, RFState]:
        spikes, u_seq, v_last, q_last = rf_sequence(
            x, self.omega.abs().to(x.dtype), self.damping().to(x.dtype), state.u, state.v, state.q,
            dt=self.dt, theta=self.theta, balanced=self.balanced, surrogate=self.surrogate, backend=self.backend)
        self.record_state("v", u_seq)
        return spikes, RFState(u_seq[-1], v_last, q_last)

    def operation_counts(self, inputs: Tensor, output: Tensor) -> dict[str, float]:
        """Energy counting (:mod:`dendrix.analysis.energy`): u' = u + dt(b u - ω v + x) (3 MACs) and
        v' = v + dt(ω u + b v) (2) per neuron and step."""
        return {"dynamics_mac": 5.0 * float(output.numel())}

    def extra_repr(self) -> str:
        return f"channels={self.channels}, dt={self.dt:g}, theta={self.theta:g}, backend={self.backend!r}"


class BRF(RF):
    """Balanced resonate-and-fire neuron (Higuchi et al., ICML 2024). Input current ``[T, B, *, channels]``.

    ``b = p(ω) - |b_offset| - q`` with the divergence boundary ``p(ω) = (-1 + sqrt(1 - (dt ω)²))/dt``;
    ``u' = u + dt(b u - ω v + x)``, ``v' = v + dt(ω u + b v)``, ``S = Θ(u' - θ - q)``, ``q' = 0.9 q + S``.
    Arguments as :class:`RF` (``omega_range`` must stay below 1/dt).
    """

    balanced = True

    def operation_counts(self, inputs: Tensor, output: Tensor) -> dict[str, float]:
        """Energy counting (:mod:`dendrix.analysis.energy`): RF's 5 MACs + refractory q = 0.9 q + z (1) +
        b = p(ω) - b_offset - q (1) per neuron and step."""
        return {"dynamics_mac": 7.0 * float(output.numel())}


def euler_input_gain(neuron: RF) -> float:
    """The registry's default gain on the initial weights (and bias) of the Linear in front of an RF/BRF:
    1/(10·dt) = 10. The Euler step multiplies the current by dt, so a unit-scale input then moves u by about a
    tenth of the threshold per step instead of a hundredth, and fresh layers spike."""
    return 1.0 / (10 * neuron.dt)


register("rf", RF, family="resonator", width="channels", weight_gain=euler_input_gain,
         description="Izhikevich resonate-and-fire (damped oscillator, explicit Euler dt=0.01, no reset), fused BPTT",
         cpu_engine="numba time loop (ops.rf; fused kernel without numba)", gpu_engine="Triton kernel (ops.rf)")
register("brf", BRF, family="resonator", width="channels", weight_gain=euler_input_gain,
         description="Balanced RF (Higuchi et al. 2024): divergence boundary p(ω), refractory q, fused BPTT",
         cpu_engine="numba time loop (ops.rf; fused kernel without numba)", gpu_engine="Triton kernel (ops.rf)")
