"""Adaptive LIF (ALIF) of Yin, Corradi & Bohté (2021), with learnable membrane and adaptation time constants."""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor, nn

from ..contract import Neuron
from ..ops.alif import BACKENDS, alif_sequence
from ..registry import register
from ..surrogate import SurrogateLike, get_surrogate
from ..validation import check_choice, check_int, check_nonnegative, check_positive

__all__ = ["ALIF", "ALIFState"]


class ALIFState(NamedTuple):
    u: Tensor  # membrane potential U[t]
    a: Tensor  # adaptation trace a[t]
    s: Tensor  # last spike S[t] (it resets the membrane and feeds the adaptation at the next step)


class ALIF(Neuron):
    r"""Adaptive leaky integrate-and-fire neuron (Yin, Corradi & Bohté, "Accurate and efficient time-domain
    classification with adaptive spiking recurrent neural networks", Nature Machine Intelligence 3, 2021).

    Per step, with alpha = exp(-1/tau_m) and rho = exp(-1/tau_adp) (dt = 1, R_m = 1)::

        a[t] = rho a[t-1] + (1 - rho) S[t-1]                  adaptation trace
        B[t] = b0 + beta a[t]                                 adaptive threshold
        U[t] = alpha U[t-1] + (1 - alpha) X[t] - B[t] S[t-1]  membrane, reset by subtracting the threshold
        S[t] = Θ(U[t] - B[t])                                 (surrogate gradient in backward)

    This is the authors' released update (``mem_update_adp``): the reset by the previous spike subtracts the
    current threshold B[t]. The resting state is U = a = S = 0 (the authors start a at b0; the effect fades
    with tau_adp). ``tau_m`` and ``tau_adp`` are learned directly, as in the paper; ``b0`` and ``beta`` are fixed.
    Recorded trace ``"v"``: the membrane U[t].

    Args:
        channels: number of channels (last input dimension) for per-channel time constants, as in the paper;
            None for one pair of time constants per layer. Default None (the registry's layer passes
            ``channels=out_features``).
        tau_m: initial membrane time constant (steps), > 0. Default 20.0 (the paper's mean initialisation).
        tau_adp: initial adaptation time constant (steps), > 0. Default 200.0.
        b0: baseline threshold, > 0. Default 0.01 (paper code ``b_j0``).
        beta: adaptation strength, >= 0. Default 1.8 (paper).
        surrogate: default ``"double_gaussian"`` (the paper's multi-Gaussian).
        backend: ``"auto"`` | ``"fused"`` | ``"triton"`` | ``"reference"`` (see :mod:`dendrix.ops.alif`):
            ``"auto"`` runs the Triton GPU kernels for CUDA tensors when Triton is installed (built-in
            surrogates), else the fused engine; ``"triton"`` forces the kernels (optional ``triton`` package).
    """

    def __init__(self, channels: int | None = None, tau_m: float = 20.0, tau_adp: float = 200.0, b0: float = 0.01,
                 beta: float = 1.8, surrogate: SurrogateLike = "double_gaussian", backend: str = "auto"):
        super().__init__()
        self.channels = None if channels is None else check_int("channels", channels, minimum=1)
        tau_m = check_positive("tau_m", tau_m)
        tau_adp = check_positive("tau_adp", tau_adp)
        self.b0 = check_positive("b0", b0)
        self.beta = check_nonnegative("beta", beta)
        self.surrogate = get_surrogate(surrogate)
        self.backend = check_choice("backend", backend, BACKENDS)
        shape = () if self.channels is None else (self.channels,)
        self.tau_m = nn.Parameter(torch.full(shape, tau_m))
        self.tau_adp = nn.Parameter(torch.full(shape, tau_adp))

    def init_state(self, x_t: Tensor) -> ALIFState:
        dtype = self.state_dtype(x_t)
        zeros = torch.zeros(x_t.shape, dtype=dtype, device=x_t.device)
        return ALIFState(zeros, zeros.clone(), zeros.clone())

    @property
    def input_width(self) -> int | None:  # type: ignore[override]
        return self.channels

    def _run_sequence(self, x: Tensor, state: ALIFState) -> tuple[Tensor, ALIFState]:
        alpha = torch.exp(-1.0 / self.tau_m)
        rho = torch.exp(-1.0 / self.tau_adp)
        spikes, u, a_last = alif_sequence(x, state.u, state.a, state.s, alpha, rho, self.b0, self.beta,
                                          self.surrogate, self.backend)
        self.record_state("v", u)
        # Clones: the state must not keep the whole chunk's [T, ...] buffers alive while streaming.
        return spikes, ALIFState(u[-1].clone(), a_last, spikes[-1].to(u.dtype, copy=True))

    def operation_counts(self, inputs: Tensor, output: Tensor) -> dict[str, float]:
        """Energy counting (:mod:`dendrix.analysis.energy`): MACs per neuron and step: membrane αU + (1-α)X (2),
        reset -B·S (1), adaptation a = ρa + (1-ρ)S (1), threshold b0 + βa (1)."""
        return {"dynamics_mac": 5.0 * float(output.numel())}

    def extra_repr(self) -> str:
        scope = "per layer" if self.channels is None else f"channels={self.channels}"
        return f"{scope}, b0={self.b0:g}, beta={self.beta:g}, surrogate={self.surrogate!r}"


register("alif", ALIF, family="lif", width="channels",
         description="adaptive-threshold LIF with learnable per-channel tau_m, tau_adp (Yin et al. 2021)",
         cpu_engine="numba time loop (ops.alif; fused kernel without numba)", gpu_engine="Triton kernel (ops.alif)")
