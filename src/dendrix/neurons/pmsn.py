"""PMSN (Chen et al. 2024): the parallel multi-compartment spiking neuron, MMDEND's single-branch predecessor.

Parameterised in the eigenbasis, discretised by zero-order hold (:func:`dendrix.ops.linear.zoh`), trained by an
FFT causal convolution, with the cumulative-sum "reset" of the authors' code. Equations: ``docs/mmdend.md``.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..contract import Neuron
from ..dtypes import to_compute
from ..ops.linear.soma import cumulative_soma
from ..ops.linear import (blocked_modal_response, causal_conv, complex_dtype, final_modes, free_response,
                          modal_kernel, zoh)
from ..registry import register
from ..validation import check_choice, check_int, check_positive

__all__ = ["PMSN", "PMSNState"]

METHODS = ("auto", "blocked", "fft")


class _SomaSurrogate(torch.autograd.Function):
    """Spike counts forward; ``∂S/∂drive = max(0, γ − gap)/γ²`` backward, from the saved pre-spike potentials."""

    @staticmethod
    def forward(ctx, drive: Tensor, count: Tensor, delta: Tensor, th: float, width: float, burst: bool):  # type: ignore[override]
        ctx.save_for_backward(delta)
        ctx.th, ctx.width, ctx.burst = th, width, burst
        return count

    @staticmethod
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        (delta,) = ctx.saved_tensors
        gap = (delta - ctx.th).abs()
        if ctx.burst:
            gap = torch.remainder(gap, ctx.th)
        return grad * ((ctx.width - gap).clamp_min(0) / (ctx.width * ctx.width)), None, None, None, None, None


class PMSNState(NamedTuple):
    modes: Tensor     # [B, *, H, N, 2] modal compartment state (real and imaginary parts)
    residual: Tensor  # [B, *, H] soma potential left after the last spike count, in [0, V_th)


class PMSN(Neuron):
    """Parallel multi-compartment spiking neuron (Chen, Wu, Ma, Yan, Wu, Tan 2024, arXiv:2408.14917, IEEE TNNLS).

    What is implemented, following the authors' released code (SHD model) rather than the paper's prose:

    * N hidden compartments per channel h (``compartments``), initialised from the tridiagonal matrix
      ``S[i,i] = −0.5``, ``S[i,i+1] = 5(i+1)``, ``S[i+1,i] = −5(i+1)`` (leak 0.5, antisymmetric couplings ±5k),
      so ``λ_n = −0.5 + iμ_n`` with μ the eigenvalues of the Hermitian ``−i·(S + 0.5 I)``, eigenvectors V.
    * Parameters in the eigenbasis, per channel: ``Re λ = −exp(log_A_real)``, ``Im λ``, ``B = V^H 1``,
      ``C = 1^T V`` (complex), ``log dt`` (uniform in log over [dt_min, dt_max]) and a skip gain ``D`` (randn).
    * ZOH: ``z[t] = e^{λdt} z[t−1] + B (e^{λdt} − 1)/λ · u[t]``, ``y[t] = Re(C·z[t]) + D u[t]``; in parallel
      ``y = K * u + D u`` with ``K[l] = Re Σ_n C_n B_n (e^{λ_n dt} − 1)/λ_n e^{λ_n dt l}`` (FFT).
    * Soma, the cumulative-sum reset (a non-leaky integrate-and-fire with subtractive reset, in closed form):
      ``Z[t] = Σ_{τ≤t} ReLU(y[τ])``, ``δ[t] = Z[t] − V_th·floor(Z[t−1]/V_th)``,
      ``S[t] = clamp(floor(δ[t]/V_th), 0, 1)`` (``burst=True``: no upper clamp, integer bursts).
      Streaming keeps the residual ``δ − V_th·floor(δ/V_th)`` instead of the growing Z.
    * Gradient (as the authors' code): ``∂S[t]/∂ReLU(y[t]) = max(0, γ − |δ[t] − V_th|)/γ²`` (γ = 1; burst:
      ``|δ − V_th| mod V_th``), local in t — the cumulative sum is not differentiated through.

    The authors' per-parameter learning-rate multipliers (×10 for Im λ, B, C) are optimiser settings and are
    not reproduced. Parameter count: ``H(6N + 2)``.

    Args:
        channels: H. compartments: N >= 1 (default 4). dt_min, dt_max: 1e-3, 1e-1.
        v_threshold: V_th (default 1). burst: default False (binary spikes). surrogate_width: γ (default 1).
        method: how the compartments' output ``y`` is formed over a sequence: ``"auto"`` (``"blocked"`` on a
            CPU, ``"fft"`` on GPUs), ``"blocked"`` (blocks of 32 steps as batched matrix products,
            :func:`dendrix.ops.linear.blocked_modal_response`) or ``"fft"`` (the kernel ``K`` and an FFT
            convolution, as the authors' code). Both equal the step-by-step recurrence up to rounding.

    The cumulative sum of the soma is kept in float64 whatever the input dtype: the authors' code sums in
    float32, whose rounding (about 1e-7 of a sum that grows to hundreds over 1,000 steps) moves some sums across
    a multiple of V_th; that alone makes their spikes differ from the exact ones in about 1 in 10^5 places
    (``docs/mmdend.md``, "PMSN against the authors' code"; ``tests/test_peers.py``).
    """

    #: Embedded as constants by the exporters (dendrix.export.step): the complex modes, a function of the parameters alone.
    export_constants = ("_modes",)

    def __init__(self, channels: int, compartments: int = 4, *, dt_min: float = 1e-3, dt_max: float = 1e-1,
                 v_threshold: float = 1.0, burst: bool = False, surrogate_width: float = 1.0, method: str = "auto"):
        super().__init__()
        self.method = check_choice("method", method, METHODS)
        H = self.channels = check_int("channels", channels, minimum=1)
        N = self.compartments = check_int("compartments", compartments, minimum=1)
        dt_min, dt_max = check_positive("dt_min", dt_min), check_positive("dt_max", dt_max)
        if dt_min > dt_max:
            raise ValueError(f"dt_min must be <= dt_max, got {dt_min:g} > {dt_max:g}")
        self.v_threshold = check_positive("v_threshold", v_threshold)
        self.surrogate_width = check_positive("surrogate_width", surrogate_width)
        self.burst = bool(burst)
        self.emits = "integer" if self.burst else "binary"

        k = torch.arange(1, N, dtype=torch.float64)
        coupling = torch.diag_embed(5.0 * k, offset=1) - torch.diag_embed(5.0 * k, offset=-1) if N > 1 \
            else torch.zeros(1, 1, dtype=torch.float64)
        mu, V = torch.linalg.eigh(-1j * coupling.to(torch.complex128))
        B = V.conj().T @ torch.ones(N, dtype=torch.complex128)
        C = torch.ones(N, dtype=torch.complex128) @ V
        self.log_dt = nn.Parameter(torch.rand(H) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min))
        self.log_A_real = nn.Parameter(torch.full((H, N), math.log(0.5)))
        self.A_imag = nn.Parameter(mu.float().unsqueeze(0).repeat(H, 1))
        self.B_real = nn.Parameter(B.real.float().unsqueeze(0).repeat(H, 1))
        self.B_imag = nn.Parameter(B.imag.float().unsqueeze(0).repeat(H, 1))
        self.C_real = nn.Parameter(C.real.float().unsqueeze(0).repeat(H, 1))
        self.C_imag = nn.Parameter(C.imag.float().unsqueeze(0).repeat(H, 1))
        self.D = nn.Parameter(torch.randn(H))

    def _modes(self, cdt: torch.dtype):
        lam = torch.complex(-self.log_A_real.exp(), self.A_imag).to(cdt)
        dt = self.log_dt.exp().to(lam.real.dtype)
        B = torch.complex(self.B_real, self.B_imag).to(cdt)
        C = torch.complex(self.C_real, self.C_imag).to(cdt)
        modes = zoh(lam, dt.unsqueeze(-1), B)  # e^{λdt} and B(e^{λdt} − 1)/λ
        return lam, dt, modes.decay, B, C, modes.bbar

    def kernel(self, T: int) -> Tensor:
        """``K`` ``[H, T]`` (float32)."""
        lam, dt, a, B, C, bbar = self._modes(torch.complex64)
        return modal_kernel(lam, dt.unsqueeze(-1), T, b=B, c=C, real=True)

    @property
    def input_width(self) -> int:  # type: ignore[override]
        return self.channels  # checked at every entry (forward, run, step) before the kernels

    def init_state(self, x_t: Tensor) -> PMSNState:
        lead = x_t.shape[:-1]
        dtype = to_compute(x_t).dtype
        return PMSNState(x_t.new_zeros(*lead, self.channels, self.compartments, 2, dtype=dtype),
                         x_t.new_zeros(*lead, self.channels, dtype=dtype))

    def _fire(self, drive: Tensor, residual0: Tensor | None) -> tuple[Tensor, Tensor, Tensor]:
        """Cumulative-sum soma on ``drive = ReLU(y)`` ``[T, ...]``: spikes, pre-spike potentials δ, last residual.

        ``δ[t] = Z[t] − V_th·floor(Z[t−1]/V_th)`` with ``Z`` summed in float64 (from the residual of a previous
        chunk, ``Z[−1] = residual0``); each step's ``floor(Z/V_th)`` is formed once and shifted by one step."""
        th = self.v_threshold
        count, delta, last = cumulative_soma(drive, residual0, th, self.burst)
        spikes = _SomaSurrogate.apply(drive, count, delta, th, self.surrogate_width, self.burst)
        return spikes, delta, last

    def forward(self, x: Tensor) -> Tensor:
        return self._parallel(x, None, need_state=False)[0]

    def run(self, x: Tensor, state: PMSNState | None = None) -> tuple[Tensor, PMSNState]:
        return self._parallel(x, state, need_state=True)

    def _parallel(self, x: Tensor, state: PMSNState | None, need_state: bool) -> tuple[Tensor, PMSNState | None]:
        self.check_input(x, self.channels)
        if state is not None:
            state = self.resolve_state(x, state)
        xc = to_compute(x)
        T, lead = xc.shape[0], xc.shape[1:-1]
        u = xc.reshape(T, -1, self.channels)
        cdt = complex_dtype(xc.dtype)
        lam, dt, a, B, C, bbar = self._modes(cdt)
        z0 = None if state is None else torch.view_as_complex(
            state.modes.reshape(-1, self.channels, self.compartments, 2).to(xc.dtype).contiguous())
        if self._method(xc) == "blocked":
            y, zT = blocked_modal_response(u, a, bbar, C, z0, want_state=need_state)
        else:
            K = modal_kernel(lam, dt.unsqueeze(-1), T, b=B, c=C, real=True).to(xc.dtype)
            y = causal_conv(u, K)
            if z0 is not None:
                y = y + free_response(z0, a, C, T).to(xc.dtype)
            zT = final_modes(u, a, bbar, z0) if need_state else None
        y = torch.addcmul(y, u, self.D.to(xc.dtype))
        r0 = None if state is None else state.residual.reshape(-1, self.channels).to(xc.dtype)
        spikes, delta, last = self._fire(F.relu(y), r0)
        self.record_state("v", delta.reshape(xc.shape))
        if not need_state:
            return spikes.reshape(x.shape).to(x.dtype), None
        new_state = PMSNState(torch.view_as_real(zT).reshape(*lead, self.channels, self.compartments, 2),
                              last.reshape(*lead, self.channels))
        return spikes.reshape(x.shape).to(x.dtype), new_state

    def _method(self, x: Tensor) -> str:
        if self.method != "auto":
            return self.method
        # GPU FFTs are fast and flat in T; up to 8 steps the kernel path convolves directly (lag by lag), which
        # keeps a non-finite input out of earlier steps (the blocked products reach the whole block)
        return "fft" if x.device.type == "cuda" or x.shape[0] <= 8 else "blocked"

    def step(self, x_t: Tensor, state: PMSNState | None = None) -> tuple[Tensor, PMSNState]:
        """One step of the recurrence ``z = a z + b̄ u``, ``y = Re(C z) + D u`` and the residual soma."""
        if not isinstance(x_t, Tensor) or x_t.dim() < 2 or x_t.shape[-1] != self.channels:
            shape = tuple(x_t.shape) if isinstance(x_t, Tensor) else type(x_t).__name__
            raise ValueError(f"PMSN.step: x_t must be [B, ..., {self.channels}], got {shape}")
        state = self.resolve_state(x_t.unsqueeze(0), state)
        xc = to_compute(x_t)
        lam, dt, a, B, C, bbar = self._modes(complex_dtype(xc.dtype))
        z = a * torch.view_as_complex(state.modes.to(xc.dtype).contiguous()) + bbar * xc.unsqueeze(-1)
        y = (C * z).sum(-1).real + self.D.to(xc.dtype) * xc
        spikes, delta, last = self._fire(F.relu(y).unsqueeze(0), state.residual.to(xc.dtype))
        return spikes[0].to(x_t.dtype), PMSNState(torch.view_as_real(z), last)

    def operation_counts(self, inputs: Tensor, output: Tensor) -> dict[str, float]:
        """Energy counting (:mod:`dendrix.analysis.energy`): MMDEND's Table 4 count with one branch per channel:
        (3K+1) + 2 + 3 MACs per neuron and step."""
        return {"dynamics_mac": ((3.0 * float(self.compartments) + 1.0) + 2.0 + 3.0) * float(output.numel())}

    def extra_repr(self) -> str:
        return (f"channels={self.channels}, compartments={self.compartments}, v_threshold={self.v_threshold:g}, "
                f"burst={self.burst}, method={self.method!r}")



register("pmsn", PMSN, family="dendritic", width="channels",
         description="PMSN (Chen et al. 2024): multi-compartment eigenbasis SSM (FFT) with cumulative-sum reset",
         cpu_engine="blocked modal response (numba loop for inference), numba soma (ops.linear)", gpu_engine="FFT (ops.linear)")
