"""SSF: shifted-scaled integer firing (the MMDEND paper's spike function), usable alone or as MMDEND's soma.

``S = floor(clip((V − φ_p)/φ_s, −U, U)/V_th)`` with a straight-through gradient inside the clip range, and its
exact expansion into Ū binary sub-steps (:func:`expand_integer_spikes`). Equations: ``docs/mmdend.md``.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor, nn

from ..contract import Neuron
from ..dtypes import to_compute
from ..validation import check_choice, check_int, check_positive

__all__ = ["SSF", "SSFState", "expand_integer_spikes"]


def expand_integer_spikes(s: Tensor, levels: int) -> Tensor:
    """Integer spikes ``s`` ``[T, B, *]`` in [−levels, levels] → ``[T, levels, B, *]`` sub-steps in {−1, 0, 1}.

    Sub-step u (1-based) fires +1 where ``s >= u`` and −1 where ``s <= −u``; the sum over sub-steps is ``s``
    exactly, and every sub-step has one sign per neuron (spikes {0, 1} or {−1, 0}).
    """
    levels = check_int("levels", levels, minimum=1)
    u = torch.arange(1, levels + 1, device=s.device, dtype=s.dtype).view(1, levels, *([1] * (s.dim() - 1)))
    s1 = s.unsqueeze(1)
    return (s1 >= u).to(s.dtype) - (s1 <= -u).to(s.dtype)


class SSFState(NamedTuple):
    """SSF is memoryless: its state is empty."""


class SSF(Neuron):
    """Shifted-scaled firing (MMDEND paper): integer spikes from a membrane potential.

    ``S[t] = clamp(floor(clip((V[t] − φ_p)/φ_s, −U, U) / V_th), −Ū, Ū)``, ``Ū = floor(U / V_th)``.

    The shift φ_p (init 0) and scale φ_s (init 1, used as ``max(φ_s, 1e-4)``) are learnable scalars. The
    gradient is straight-through inside the clip range: ``∂S/∂V = 1/(φ_s·V_th)`` for ``−U < (V−φ_p)/φ_s < U``
    and 0 outside; φ_p and φ_s get the gradients of that expression. (The final clamp to ±Ū only matters
    when U is not a multiple of V_th, where ``floor(−U/V_th)`` would reach −Ū − 1.)

    Training and inference emit the same integers (``emits = "integer"``). :meth:`binary_spikes` returns the
    inference form, Ū binary sub-steps per time step whose sum is the integer spike, so a synapse computes
    ``W·S[t] = Σ_u W·S[t, u]`` with accumulates only.

    Args:
        ssf_range: U, an integer >= 1 (default 4; the paper's ablation found [−3, 3] best; U = 1 is ternary
            firing in {−1, 0, 1}).
        v_threshold: V_th > 0 (default 1). ``U / V_th`` must be >= 1.
        scale_shift: learn φ_p and φ_s (default True). False is the "no scaling/shifting" ablation
            (φ_p = 0, φ_s = 1 fixed).
        firing: ``"integer"`` (default) or ``"binary"``, the ablation with ordinary spikes: the same formula
            with the clip range [0, V_th], i.e. ``S = Θ((V − φ_p)/φ_s − V_th)`` in {0, 1} with a
            straight-through (rectangular) gradient on [0, V_th].
    """

    emits = "integer"

    def __init__(self, ssf_range: int = 4, v_threshold: float = 1.0, scale_shift: bool = True,
                 firing: str = "integer"):
        super().__init__()
        self.ssf_range = check_int("ssf_range", ssf_range, minimum=1)
        self.v_threshold = check_positive("v_threshold", v_threshold)
        self.firing = check_choice("firing", firing, ("integer", "binary"))
        self.levels = int(math.floor(self.ssf_range / self.v_threshold + 1e-9))
        if self.levels < 1:
            raise ValueError(f"ssf_range / v_threshold must be >= 1 (at least one spike level), got "
                             f"{self.ssf_range} / {self.v_threshold:g}")
        if self.firing == "binary":
            self.emits = "binary"
            self.levels = 1
        self.scale_shift = bool(scale_shift)
        if self.scale_shift:
            self.shift = nn.Parameter(torch.tensor(0.0))
            self.scale = nn.Parameter(torch.tensor(1.0))
        else:
            self.register_buffer("shift", torch.tensor(0.0))
            self.register_buffer("scale", torch.tensor(1.0))

    def normalised(self, v: Tensor) -> Tensor:
        """``(V − φ_p)/φ_s`` (φ_s floored at 1e-4)."""
        return (v - self.shift.to(v.dtype)) / self.scale.to(v.dtype).clamp_min(1e-4)

    def affine(self, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
        """``(gain, offset)`` with ``(V − φ_p)/(φ_s V_th) = gain·V + offset`` (differentiable 0-dim tensors)."""
        gain = 1.0 / (self.scale.to(dtype).clamp_min(1e-4) * self.v_threshold)
        return gain, -self.shift.to(dtype) * gain

    def clip_bounds(self) -> tuple[float, float]:
        """The clip range of ``gain·V + offset``: ``[−U/V_th, U/V_th]`` (integer) or ``[0, 1]`` (binary)."""
        if self.firing == "integer":
            bound = self.ssf_range / self.v_threshold
            return -bound, bound
        return 0.0, 1.0

    def fire(self, v: Tensor) -> Tensor:
        """Integer (or binary) spikes of potential ``v`` (any shape) with the straight-through gradient.

        The value is exactly the integer level (``levels + (clipped − clipped)``), the gradient that of the clip.
        """
        gain, offset = self.affine(v.dtype)
        x = v * gain + offset  # the same two roundings as MMDEND's chunked kernel (bit-identical spikes)
        clipped = x.clamp(*self.clip_bounds())
        levels = torch.floor(clipped.detach()).clamp_(-self.levels, self.levels)
        return levels + (clipped - clipped.detach())

    def binary_spikes(self, v: Tensor) -> Tensor:
        """Sub-step spikes ``[T, Ū, B, *]`` in {−1, 0, 1} of potentials ``v`` ``[T, B, *]``; sums to :meth:`fire`."""
        return expand_integer_spikes(self.fire(v).detach(), self.levels)

    # Neuron contract (memoryless)
    def init_state(self, x_t: Tensor) -> SSFState:
        return SSFState()

    def run(self, x: Tensor, state: SSFState | None = None) -> tuple[Tensor, SSFState]:
        self.check_input(x)
        # half inputs are computed in float32; the integer spikes cast back exactly (float16 holds integers up to
        # 2048, bfloat16 up to 256)
        xc = to_compute(x)
        self.record_state("v", xc)
        return self.fire(xc).to(x.dtype), SSFState()

    def operation_counts(self, inputs: Tensor, output: Tensor) -> dict[str, float]:
        """Energy counting (:mod:`dendrix.analysis.energy`): firing alone (V - φ_p)/φ_s is 1 MAC per neuron and
        step; clip and floor are selects. Inside MMDEND it is part of MMDEND's count."""
        return {"dynamics_mac": 1.0 * float(output.numel())}

    def extra_repr(self) -> str:
        return (f"ssf_range={self.ssf_range}, v_threshold={self.v_threshold:g}, levels={self.levels}, "
                f"firing={self.firing!r}, scale_shift={self.scale_shift}")

