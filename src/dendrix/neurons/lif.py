"""Leaky integrate-and-fire neurons: LIF and PLIF, with SpikingJelly's LIFNode conventions.

Both run the whole sequence through the fused engine :func:`dendrix.ops.lif.lif_sequence` (one autograd node,
hand-written backward applying the surrogate gradient).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor, nn

from ..contract import Neuron
from ..ops.lif import BACKENDS, lif_sequence
from ..registry import register
from ..surrogate import SurrogateLike, get_surrogate
from ..validation import check_choice, check_greater, check_int, check_positive, _as_float

__all__ = ["LIF", "PLIF", "LIFState", "check_lif_arguments"]


class LIFState(NamedTuple):
    v: Tensor  # membrane potential after the last step (post-reset), shaped like one input step


def check_lif_arguments(v_threshold, v_reset, backend) -> tuple[float, float | None, str]:
    """Shared checks of LIF-family arguments; returns them normalised."""
    v_threshold = check_positive("v_threshold", v_threshold)
    if v_reset is not None:
        v_reset = _as_float("v_reset", v_reset)
        if v_reset >= v_threshold:
            raise ValueError(f"v_reset must be below v_threshold={v_threshold!r} (or None for soft reset), "
                             f"got {v_reset!r}")
    check_choice("backend", backend, BACKENDS)
    return v_threshold, v_reset, backend


class _LIFBase(Neuron):
    """Shared state handling of LIF and PLIF."""

    def __init__(self, v_threshold: float, v_reset: float | None, decay_input: bool, detach_reset: bool,
                 surrogate: SurrogateLike, backend: str):
        super().__init__()
        self.v_threshold, self.v_reset, self.backend = check_lif_arguments(v_threshold, v_reset, backend)
        if not isinstance(decay_input, bool):
            raise TypeError(f"decay_input must be a bool, got {type(decay_input).__name__}")
        if not isinstance(detach_reset, bool):
            raise TypeError(f"detach_reset must be a bool, got {type(detach_reset).__name__}")
        self.decay_input, self.detach_reset = decay_input, detach_reset
        self.surrogate = get_surrogate(surrogate)

    def decay(self):  # pragma: no cover - abstract
        raise NotImplementedError

    def init_state(self, x_t: Tensor) -> LIFState:
        """Resting state: V = v_reset (hard reset) or 0 (soft reset), as SpikingJelly. Half-precision inputs
        keep their state in float32."""
        dtype = self.state_dtype(x_t)
        rest = 0.0 if self.v_reset is None else self.v_reset
        return LIFState(torch.full(x_t.shape, rest, dtype=dtype, device=x_t.device))

    def _run_sequence(self, x: Tensor, state: LIFState) -> tuple[Tensor, LIFState]:
        spikes, h, v_last = lif_sequence(x, state.v, self.decay(), self.v_threshold, self.v_reset,
                                         self.decay_input, self.detach_reset, self.surrogate, self.backend)
        self.record_state("v", h)
        return spikes, LIFState(v_last)

    def operation_counts(self, inputs: Tensor, output: Tensor) -> dict[str, float]:
        """Energy counting (:mod:`dendrix.analysis.energy`): H = V(1 - 1/τ) + X/τ is 2 MACs per neuron and step
        (1 without input decay); threshold compare and reset are selects."""
        return {"dynamics_mac": (2.0 if self.decay_input else 1.0) * float(output.numel())}

    def _extra(self) -> str:
        reset = "soft" if self.v_reset is None else f"v_reset={self.v_reset:g}"
        return (f"v_threshold={self.v_threshold:g}, {reset}, decay_input={self.decay_input}, "
                f"detach_reset={self.detach_reset}, surrogate={self.surrogate!r}")


class LIF(_LIFBase):
    r"""Leaky integrate-and-fire neuron (SpikingJelly ``LIFNode`` conventions; Gerstner et al., *Neuronal
    Dynamics*, 2014; discrete form of Fang et al., ICCV 2021).

    For input current X[t] (``[T, B, *]``), with decay 1/tau::

        decay_input=True:   H[t] = V[t-1] + (X[t] - (V[t-1] - v_reset)) / tau
        decay_input=False:  H[t] = V[t-1] - (V[t-1] - v_reset) / tau + X[t]
        S[t] = Θ(H[t] - v_threshold)                  (surrogate gradient in backward)
        hard reset:  V[t] = H[t] (1 - S[t]) + v_reset S[t]
        soft reset:  V[t] = H[t] - v_threshold S[t]   (v_reset=None; v_reset counts as 0 in the charge)

    Output: spikes ``[T, B, *]`` in {0, 1}. Recorded trace ``"v"``: the pre-reset potential H[t].

    Args:
        tau: membrane time constant, > 1 (the decay 1/tau must lie in (0, 1)). Default 2.0.
        v_threshold: firing threshold, > 0. Default 1.0.
        v_reset: reset potential (< v_threshold), or None for soft reset (subtract the threshold). Default 0.0.
        decay_input: whether the input is scaled by 1/tau too. Default True.
        detach_reset: drop the spike's gradient path through the reset. Default False.
        surrogate: surrogate gradient, a name (``"atan"``, ``"sigmoid"``, ...) or a
            :class:`dendrix.surrogate.Surrogate`. Default ``"atan"`` (SpikingJelly's ``LIFNode`` itself defaults
            to Sigmoid; pass ``"sigmoid"`` to match that).
        backend: ``"auto"`` | ``"fused"`` | ``"triton"`` (CUDA) | ``"reference"`` (see :mod:`dendrix.ops.lif`).
    """

    def __init__(self, tau: float = 2.0, v_threshold: float = 1.0, v_reset: float | None = 0.0,
                 decay_input: bool = True, detach_reset: bool = False, surrogate: SurrogateLike = "atan",
                 backend: str = "auto"):
        super().__init__(v_threshold, v_reset, decay_input, detach_reset, surrogate, backend)
        self.tau = check_greater("tau", tau, 1.0, "the decay 1/tau must be below 1")

    def decay(self) -> float:
        return 1.0 / self.tau

    def extra_repr(self) -> str:
        return f"tau={self.tau:g}, " + self._extra()


class PLIF(_LIFBase):
    r"""Parametric LIF (Fang et al., "Incorporating Learnable Membrane Time Constant to Enhance Learning of
    Spiking Neural Networks", ICCV 2021): LIF whose decay 1/tau = sigmoid(w) is learned.

    Equations as :class:`LIF` with 1/tau = sigmoid(w); ``w`` is initialised to -log(init_tau - 1) so that
    tau = init_tau. The gradient reaches ``w`` through the fused backward.

    Args:
        init_tau: initial time constant, > 1. Default 2.0.
        channels: None (default) for one ``w`` per layer, as in the paper; an int for one ``w`` per channel
            (the last input dimension must then equal ``channels``).
        v_threshold, v_reset, decay_input, detach_reset, surrogate, backend: as :class:`LIF`.
    """

    def __init__(self, init_tau: float = 2.0, v_threshold: float = 1.0, v_reset: float | None = 0.0,
                 decay_input: bool = True, detach_reset: bool = False, surrogate: SurrogateLike = "atan",
                 backend: str = "auto", channels: int | None = None):
        super().__init__(v_threshold, v_reset, decay_input, detach_reset, surrogate, backend)
        init_tau = check_greater("init_tau", init_tau, 1.0, "the decay 1/tau = sigmoid(w) must be below 1")
        self.channels = None if channels is None else check_int("channels", channels, minimum=1)
        shape = () if self.channels is None else (self.channels,)
        self.w = nn.Parameter(torch.full(shape, -math.log(init_tau - 1.0)))

    def decay(self) -> Tensor:
        return torch.sigmoid(self.w)

    @property
    def tau(self) -> Tensor:
        """Current time constant(s), 1 / sigmoid(w)."""
        return 1.0 / torch.sigmoid(self.w.detach())

    def check_run_input(self, x: Tensor) -> None:
        self.check_input(x)
        if self.channels is not None and x.shape[-1] != self.channels:
            raise ValueError(f"PLIF input x must have {self.channels} channels in its last dim (channels="
                             f"{self.channels}), got shape {tuple(x.shape)}")

    def extra_repr(self) -> str:
        tau = self.tau
        tau_text = f"tau={tau.item():.4g}" if tau.dim() == 0 else f"channels={self.channels}"
        return tau_text + ", " + self._extra()


register("lif", LIF, family="lif",
         description="leaky integrate-and-fire, SpikingJelly LIFNode conventions, fused sequence engine",
         defaults={"tau": 2.0},
         cpu_engine="numba time loop (ops.lif; fused kernel without numba)", gpu_engine="Triton kernel (ops.lif)", nir=True)
register("plif", PLIF, family="lif", width="channels", per_channel=True,
         description="parametric LIF with learnable 1/tau = sigmoid(w) (Fang et al. 2021)",
         defaults={"init_tau": 2.0},
         cpu_engine="numba time loop (ops.lif; fused kernel without numba)", gpu_engine="Triton kernel (ops.lif)", nir=True)
