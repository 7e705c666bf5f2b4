"""D-RF: the dendritic resonate-and-fire neuron, trained in parallel over time.

Each channel h has ``n`` dendritic branches, complex linear modes with zero-order-hold input:

    z_k[t] = exp(dt_h λ_k) z_k[t-1] + B̄_k I[t],   λ_k = -1/τ_k + iω_k  (Re λ_k < 0),
    B̄_k = γ_k (exp(dt_h λ_k) - 1) / λ_k,          H[t] = Σ_k c_k Re z_k[t]   (real branch weights c).

Because the soma potential H is linear in the input it is a causal convolution, ``H = K * I`` with
``K[l] = Σ_k c_k Re(B̄_k exp(dt_h λ_k l))``, computed by FFT. The spike keeps training parallel: there is no
reset, and the adaptive threshold depends only on past *pre-spikes* ``P`` (which are functions of H):

    P[t] = Θ(H[t] - V_pre),   V_th[t] = V_pre + Σ_{m=1..M} α_m P[t-m],   S[t] = Θ(H[t] - V_th[t]),

with independent α_m = sigmoid(learnable logit) ∈ (0, 1) per channel and tap (``threshold_weights="softmax"``:
a softmax over the window, so Σ_m α_m = 1) and V_pre = 1. As the paper states, the threshold "removes temporal
dependencies between the gradient": by default the pre-spikes enter V_th without gradient (detached), so
∂S[t]/∂H[t-m] = 0 for m ≥ 1; ``threshold_grad=True`` lets the surrogate flow through them as well.

Reference: the D-RF neuron ("dendritic resonate-and-fire") for long-sequence modelling; initialisation from
S4D-Lin (Gu, Gupta, Goel, Ré, "On the Parameterization and Initialization of Diagonal State Space Models",
NeurIPS 2022): Re λ = -0.5, Im λ_k = π k, dt log-uniform in [1e-3, 1e-1] per channel.
"""

from __future__ import annotations

import logging
import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..contract import Neuron
from ..dtypes import to_compute
from ..ops.linear import (RECURRENCE_BACKENDS, blocked_modal_response, causal_conv, complex_dtype, linear_recurrence,
                          modal_kernel, zoh)
from ..registry import register
from ..surrogate import SurrogateLike, get_surrogate
from ..validation import _as_float, check_choice, check_int, check_positive

__all__ = ["DRF", "DRFState"]

_METHODS = ("auto", "blocked", "fft", "scan", "sequential")
THRESHOLD_WEIGHTS = ("sigmoid", "softmax")
logger = logging.getLogger(__name__)
# Re λ = -(softplus(raw) + _MIN_DECAY): strictly negative for every value of the raw parameter.
_MIN_DECAY = 1e-4


def _inverse_softplus(y: float) -> float:
    return y + math.log(-math.expm1(-y))


class DRFState(NamedTuple):
    z: Tensor    # [B, *, C, n] complex branch states after the last step
    pre: Tensor  # [B, *, C, M] the last M pre-spikes P, most recent first (empty when M = 0)


class DRF(Neuron):
    """Dendritic resonate-and-fire neuron: ``n`` resonating dendritic branches per channel, a linear soma, an
    adaptive threshold driven by past pre-spikes, no reset. Input current ``[T, B, *, channels]`` (channels
    last) -> spikes of the same shape.

    Equations (see the module docstring): ``z_k[t] = e^{dtλ_k} z_k[t-1] + B̄_k I[t]``,
    ``H = Σ_k c_k Re z_k``, ``P = Θ(H - 1)``, ``V_th[t] = 1 + Σ_m α_m P[t-m]``, ``S = Θ(H - V_th)``.

    Args:
        channels: number of neurons (the size of the last input dim).
        branches: dendritic branches n per neuron (default 4; the paper uses 8 for LRA).
        adaptive_threshold: use the threshold of past pre-spikes (default True, the paper's method; the
            authors' released training code ran without it). False gives ``S = P``.
        threshold_window: M, how many past pre-spikes raise the threshold (default 4; 0 disables it).
        dt_min, dt_max: range of the log-uniform initial step size per channel (default 1e-3, 1e-1).
        real_decay: initial -Re λ = 1/τ of every branch (default 0.5, S4D-Lin).
        gamma_init: initial input gain γ of every branch; None (default) = 1/sqrt(dt_h) per channel, which
            gives each branch kernel about unit energy so fresh layers spike on unit-scale input; 1.0 is
            S4D's B = 1.
        complex_weights: complex branch weights c (H = Σ Re(c_k z_k)) as in the authors' code; default real.
        v_pre: the base threshold V_pre (default 1.0).
        threshold_weights: how α is parameterised: ``"sigmoid"`` (default; α_m = sigmoid(``alpha_logits``),
            each in (0, 1) independently as the paper asks, initialised to 1/M, so a fresh neuron has the same
            threshold as with the softmax; 1/2 when M = 1) or ``"softmax"`` (α = softmax of
            ``threshold_logits`` over the window, initialised 0: α_m = 1/M and Σ α = 1, so V_th ≤ V_pre + 1).
        threshold_grad: let the surrogate gradient flow through the pre-spikes of the threshold (default False:
            the paper's adaptive threshold passes no gradient to earlier steps, ∂S[t]/∂H[t-m] = 0 for m ≥ 1;
            α still learns). True keeps dendrix ≤ 0.x's behaviour.
        surrogate: surrogate gradient of Θ (default ``"double_gaussian"``, the paper's; ``"triangle"`` is
            the authors' code).
        method: ``"auto"`` (``"blocked"`` on a CPU, ``"fft"`` on GPUs), ``"blocked"`` (blocks of 32 steps as
            batched matrix products, :func:`dendrix.ops.linear.blocked_modal_response`), ``"fft"`` (kernel + FFT
            convolution, as the authors' code), ``"scan"`` (parallel scan over the branch states) or
            ``"sequential"`` (a loop over t of the branch states). All give the same spikes (exactly in float64).
        backend: engine of the branch recurrence (``dendrix.ops.linear.linear_recurrence``): ``"auto"`` /
            ``"fused"`` (one autograd node) or ``"reference"`` (autograd through every step; with
            ``method="auto"`` or ``"sequential"``).

    Parameters: ``log_dt`` [C], ``decay_raw`` [C, n] (Re λ = -(softplus(decay_raw) + 1e-4), negative after
    any optimiser step), ``omega`` [C, n] (Im λ), ``gamma`` [C, n] (input gain, init 1/sqrt(dt)), ``weight`` [C, n]
    (c, init N(0, 1); ``weight_imag`` too with complex weights, both N(0, 1/2)), ``alpha_logits`` [C, M]
    (sigmoid α, init logit(1/M)) or ``threshold_logits`` [C, M] (softmax α, init 0). A state dict saved with the
    softmax weights (``threshold_logits``) loads into a sigmoid neuron converted exactly (α unchanged, logged).

    Streaming: ``step`` runs the recurrence of the branch states and keeps the last M pre-spikes; ``run``
    continues a chunk from a state in parallel. Both give the spikes of ``forward``.
    float16/bfloat16 inputs are computed in float32 and the spikes returned in the input dtype.
    """

    #: Embedded as constants by the exporters (dendrix.export.step): the complex modes and threshold weights, functions of the parameters alone.
    export_constants = ("_modes", "threshold_weights")

    def __init__(self, channels: int, branches: int = 4, adaptive_threshold: bool = True, threshold_window: int = 4,
                 dt_min: float = 1e-3, dt_max: float = 1e-1, real_decay: float = 0.5, complex_weights: bool = False,
                 v_pre: float = 1.0, surrogate: SurrogateLike = "double_gaussian", method: str = "auto",
                 gamma_init: float | None = None, backend: str = "auto", threshold_weights: str = "sigmoid",
                 threshold_grad: bool = False):
        super().__init__()
        self.channels = check_int("channels", channels, minimum=1)
        self.branches = check_int("branches", branches, minimum=1)
        self.threshold_window = check_int("threshold_window", threshold_window, minimum=0)
        if not isinstance(adaptive_threshold, bool):
            raise TypeError(f"adaptive_threshold must be a bool, got {type(adaptive_threshold).__name__}")
        if not isinstance(complex_weights, bool):
            raise TypeError(f"complex_weights must be a bool, got {type(complex_weights).__name__}")
        dt_min, dt_max = check_positive("dt_min", dt_min), check_positive("dt_max", dt_max)
        if dt_min > dt_max:
            raise ValueError(f"dt_min must be <= dt_max, got dt_min={dt_min!r}, dt_max={dt_max!r}")
        real_decay = check_positive("real_decay", real_decay)
        if gamma_init is not None:
            gamma_init = check_positive("gamma_init", gamma_init)
        self.v_pre = _as_float("v_pre", v_pre)
        self.method = check_choice("method", method, _METHODS)
        self.backend = check_choice("backend", backend, RECURRENCE_BACKENDS)
        if self.backend == "reference" and self.method not in ("auto", "sequential"):
            raise ValueError(f"backend='reference' runs method='sequential' only, got method={method!r}")
        self.surrogate = get_surrogate(surrogate)
        self.threshold_mode = check_choice("threshold_weights", threshold_weights, THRESHOLD_WEIGHTS)
        if not isinstance(threshold_grad, bool):
            raise TypeError(f"threshold_grad must be a bool, got {type(threshold_grad).__name__}")
        self.threshold_grad = threshold_grad
        self.adaptive_threshold = adaptive_threshold and self.threshold_window > 0
        self.complex_weights = complex_weights
        self.dt_range = (dt_min, dt_max)

        C, n = self.channels, self.branches
        u = torch.rand(C)
        self.log_dt = nn.Parameter(math.log(dt_min) + u * (math.log(dt_max) - math.log(dt_min)))
        self.decay_raw = nn.Parameter(torch.full((C, n), _inverse_softplus(real_decay - _MIN_DECAY)
                                                 if real_decay > _MIN_DECAY else -20.0))
        self.omega = nn.Parameter(math.pi * torch.arange(n, dtype=torch.float32).expand(C, n).clone())
        # γ = 1/sqrt(dt): a branch's kernel then has about unit energy (Σ_l |B̄ e^{dtλl}|² ≈ γ² dt / (2|Re λ|)),
        # so unit-variance input gives potentials of order 1 whatever dt; with γ = 1 (S4D's B) a channel with
        # dt = 1e-3 would barely move in the first thousand steps.
        gamma = self.log_dt.detach().mul(-0.5).exp() if gamma_init is None else torch.full((C,), gamma_init)
        self.gamma = nn.Parameter(gamma.unsqueeze(-1).expand(C, n).clone())
        scale = math.sqrt(0.5) if complex_weights else 1.0
        self.weight = nn.Parameter(torch.randn(C, n) * scale)
        self.weight_imag = nn.Parameter(torch.randn(C, n) * scale) if complex_weights else None
        M = self.threshold_window if self.adaptive_threshold else 0
        self.threshold_logits = self.alpha_logits = None
        if M > 0 and self.threshold_mode == "softmax":
            self.threshold_logits = nn.Parameter(torch.zeros(C, M))
        elif M > 0:  # α_m = 1/M (the softmax's initial value); 1/2 for a window of one
            alpha0 = 1.0 / M if M > 1 else 0.5
            self.alpha_logits = nn.Parameter(torch.full((C, M), math.log(alpha0 / (1.0 - alpha0))))

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # Checkpoints from before the sigmoid default hold softmax logits: convert them to the same α.
        old, new = prefix + "threshold_logits", prefix + "alpha_logits"
        if self.alpha_logits is not None and old in state_dict and new not in state_dict:
            alpha = torch.softmax(state_dict.pop(old).double(), -1).clamp(1e-12, 1 - 1e-12)
            state_dict[new] = torch.log(alpha / (1 - alpha)).to(self.alpha_logits.dtype)
            logger.warning("DRF: converted softmax threshold weights %r into sigmoid logits %r (same α); build "
                           "DRF(threshold_weights='softmax') to keep the softmax", old, new)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    # -- parameters -------------------------------------------------------------------------------------------
    def eigenvalues(self) -> Tensor:
        """λ ``[C, n]`` (complex): Re λ = -(softplus(decay_raw) + 1e-4) < 0, Im λ = ω."""
        return torch.complex(-(F.softplus(self.decay_raw) + _MIN_DECAY), self.omega)

    def step_size(self) -> Tensor:
        """dt ``[C]``."""
        return self.log_dt.exp()

    def branch_weights(self) -> Tensor:
        """c ``[C, n]`` (real, or complex with ``complex_weights``)."""
        return torch.complex(self.weight, self.weight_imag) if self.complex_weights else self.weight

    def threshold_weights(self) -> Tensor:
        """α ``[C, M]``: sigmoid of ``alpha_logits`` or softmax of ``threshold_logits`` per channel
        (``[C, 0]`` without adaptive threshold)."""
        if self.alpha_logits is not None:
            return torch.sigmoid(self.alpha_logits)
        if self.threshold_logits is None:
            return self.weight.new_zeros(self.channels, 0)
        # written out: torch.softmax is slow on tiny CPU tensors (thread start-up per call; docs/benchmarks.md)
        e = torch.exp(self.threshold_logits - self.threshold_logits.amax(-1, keepdim=True))
        return e / e.sum(-1, keepdim=True)

    def _modes(self, dtype: torch.dtype):
        """(dt·λ, decay e^{dtλ}, input gain B̄, weights c), each ``[C, n]``, in the complex dtype matching ``dtype``."""
        cdtype = complex_dtype(dtype)
        lam = self.eigenvalues().to(cdtype)
        modes = zoh(lam, self.step_size().to(lam.real.dtype).unsqueeze(-1), self.gamma.to(lam.real.dtype),
                    expm1=True)
        c = self.branch_weights()
        c = c.to(cdtype) if c.is_complex() else c.to(lam.real.dtype)
        return modes.dtlam, modes.decay, modes.bbar, c

    def kernel(self, T: int, dtype: torch.dtype = torch.float32) -> Tensor:
        """The impulse response ``K [C, T]`` from input current to soma potential:
        ``K[h, l] = Σ_k Re(c_k B̄_k exp(dt_h λ_k l))``."""
        cdtype = complex_dtype(dtype)
        lam = self.eigenvalues().to(cdtype)
        c = self.branch_weights()
        return modal_kernel(lam, self.step_size().to(lam.real.dtype).unsqueeze(-1), T,
                            b=self.gamma.to(lam.real.dtype), c=c.to(cdtype) if c.is_complex() else c.to(lam.real.dtype),
                            real=True)

    # -- contract ---------------------------------------------------------------------------------------------
    @property
    def input_width(self) -> int:  # type: ignore[override]
        return self.channels  # checked at every entry (forward, run, step) before the kernels

    def init_state(self, x_t: Tensor) -> DRFState:
        """Resting state for one input step ``[B, *, C]``: zero branch states, no past pre-spikes."""
        dtype = torch.float64 if x_t.dtype == torch.float64 else torch.float32
        cdtype = complex_dtype(dtype)
        shape = tuple(x_t.shape)
        M = self.threshold_window if self.adaptive_threshold else 0
        return DRFState(torch.zeros(*shape, self.branches, dtype=cdtype, device=x_t.device),
                        torch.zeros(*shape, M, dtype=dtype, device=x_t.device))

    def _check(self, x: Tensor) -> tuple[Tensor, torch.dtype]:
        self.check_input(x, self.channels)
        in_dtype = x.dtype
        return to_compute(x), in_dtype

    def _fire(self, h: Tensor, history: Tensor | None) -> tuple[Tensor, Tensor, Tensor]:
        """Spikes from potentials ``h [T, B, *, C]`` and the past pre-spikes ``history [B, *, C, M]``
        (most recent first; None = none yet). Returns (spikes, threshold, new history)."""
        pre = self.surrogate(h - self.v_pre)
        if not self.adaptive_threshold:
            # the constant threshold as a broadcast view: no T·B·C pass to fill it
            return pre, h.new_tensor(self.v_pre).expand_as(h), pre.new_zeros(*h.shape[1:], 0)
        if not self.threshold_grad:  # the paper's threshold: no gradient to earlier steps
            pre = pre.detach()
        alpha = self.threshold_weights().to(h.dtype)  # [C, M]
        M, T = alpha.shape[-1], h.shape[0]
        if history is None:
            history = h.new_zeros(*h.shape[1:], M)
        past = history.flip(-1).movedim(-1, 0)  # [M, B, *, C], oldest first
        seq = torch.cat([past.to(pre.dtype), pre])  # P[t - M] ... P[T - 1]
        threshold = torch.full_like(h, self.v_pre)
        for m in range(1, M + 1):
            threshold = threshold + alpha[:, m - 1] * seq[M - m: M - m + T]
        spikes = self.surrogate(h - threshold)
        new_history = seq[-M:].flip(0).movedim(0, -1)
        return spikes, threshold, new_history

    def _potential(self, x: Tensor, z0: Tensor | None, want_state: bool) -> tuple[Tensor, Tensor | None]:
        """Soma potential ``H [T, B, *, C]`` (and the final branch states if ``want_state``)."""
        T = x.shape[0]
        dtlam, decay, bbar, c = self._modes(x.dtype)
        if self.method in ("scan", "sequential") or self.backend == "reference":
            method = "sequential" if self.backend == "reference" else self.method
            z = linear_recurrence(decay, x.unsqueeze(-1) * bbar, z0, method=method, backend=self.backend)
            self.record_state("branches", z)
            h = ((c * z).real if c.is_complex() else z.real * c).sum(-1)
            return h, (z[-1] if want_state else None)
        method = self.method if self.method != "auto" else ("fft" if x.device.type == "cuda" else "blocked")
        if method == "blocked":
            h, z_last = blocked_modal_response(x, decay, bbar, c, z0, want_state=want_state)
            if self.recording:
                with torch.no_grad():
                    self.record_state("branches", linear_recurrence(decay, x.unsqueeze(-1) * bbar, z0, method="scan"))
            return h, z_last
        h = causal_conv(x, self.kernel(T, x.dtype), method="fft" if self.method == "fft" else "auto")
        if self.recording:  # branch states are not formed on the kernel path; compute them for the recorder
            with torch.no_grad():
                self.record_state("branches", linear_recurrence(decay, x.unsqueeze(-1) * bbar, z0, method="scan"))
        # decay^l = exp(l·dtλ) for l = 0..T, as exp of a product (|decay| < 1; accurate for long T). The free
        # response and final state are formed here rather than by ops.linear's free_response / final_modes
        # (polar powers of the decay): those round differently, and trained D-RF models keep their spikes.
        lags = torch.arange(T + 1, dtype=x.dtype, device=x.device)
        powers = torch.exp(dtlam.unsqueeze(-1) * lags)  # [C, n, T + 1]
        if z0 is not None:  # free response of the initial branch states: Re Σ_k c_k decay^(t+1) z0_k
            h = h + torch.einsum("...ck,ckt->t...c", c * z0, powers[..., 1:]).real
        z_last = None
        if want_state:  # z[T-1] = Σ_t decay^(T-1-t) B̄ I[t] + decay^T z0
            rev = powers[..., :T].flip(-1)
            z_last = torch.einsum("t...c,ckt->...ck", x.to(rev.dtype), rev) * bbar
            if z0 is not None:
                z_last = z_last + powers[..., T] * z0
        return h, z_last

    def forward(self, x: Tensor) -> Tensor:
        x, in_dtype = self._check(x)
        h, _ = self._potential(x, None, want_state=False)
        spikes, threshold, _ = self._fire(h, None)
        self.record_state("v", h)
        self.record_state("threshold", threshold)
        return spikes.to(in_dtype)

    def run(self, x: Tensor, state: DRFState | None = None) -> tuple[Tensor, DRFState]:
        x, in_dtype = self._check(x)
        fresh = state is None
        state = self.resolve_state(x, state)
        h, z_last = self._potential(x, None if fresh else state.z, want_state=True)
        spikes, threshold, history = self._fire(h, None if fresh else state.pre)
        self.record_state("v", h)
        self.record_state("threshold", threshold)
        return spikes.to(in_dtype), DRFState(z_last, history)

    def step(self, x_t: Tensor, state: DRFState | None = None) -> tuple[Tensor, DRFState]:
        """One step of the recurrence (the sequential definition): no FFT, no kernel."""
        if not isinstance(x_t, Tensor) or x_t.dim() < 2:
            shape = tuple(x_t.shape) if isinstance(x_t, Tensor) else type(x_t).__name__
            raise ValueError(f"DRF.step: x_t must be one time step [B, ..., {self.channels}], got {shape}")
        x, in_dtype = self._check(x_t.unsqueeze(0))
        state = self.resolve_state(x, state)
        _, decay, bbar, c = self._modes(x.dtype)
        z = decay * state.z + bbar * x[0].unsqueeze(-1)
        h = ((c * z).real if c.is_complex() else z.real * c).sum(-1)
        pre = self.surrogate(h - self.v_pre)
        if not self.adaptive_threshold:
            return pre.to(in_dtype), DRFState(z, state.pre)
        if not self.threshold_grad:
            pre = pre.detach()
        threshold = self.v_pre + (self.threshold_weights().to(h.dtype) * state.pre).sum(-1)
        spikes = self.surrogate(h - threshold)
        history = torch.cat([pre.unsqueeze(-1).to(state.pre.dtype), state.pre[..., :-1]], dim=-1)
        return spikes.to(in_dtype), DRFState(z, history)

    def operation_counts(self, inputs: Tensor, output: Tensor) -> dict[str, float]:
        """Energy counting (:mod:`dendrix.analysis.energy`): per branch and step complex z = e^{dtλ} z (4 MACs),
        + B̄ I (2), + c Re z (1; Re(c z) with complex weights: 2), plus the M threshold taps."""
        per_step = ((7.0 + (1.0 if self.complex_weights else 0.0)) * float(self.branches)
                    + (float(self.threshold_window) if self.adaptive_threshold else 0.0))
        return {"dynamics_mac": per_step * float(output.numel())}

    def extra_repr(self) -> str:
        return (f"channels={self.channels}, branches={self.branches}, adaptive_threshold={self.adaptive_threshold}, "
                f"threshold_window={self.threshold_window}, dt_range={self.dt_range}, "
                f"threshold_weights={self.threshold_mode!r}, threshold_grad={self.threshold_grad}, "
                f"complex_weights={self.complex_weights}, surrogate={self.surrogate!r}, method={self.method!r}, "
                f"backend={self.backend!r}")


register("drf", DRF, family="resonator", width="channels",
         description="Dendritic resonate-and-fire: complex resonating branches (S4D-Lin init), FFT-parallel "
                     "training, adaptive threshold of past pre-spikes, no reset",
         defaults={"branches": 4, "threshold_window": 4},
         cpu_engine="blocked modal response (ops.linear; numba loop for inference)", gpu_engine="FFT (ops.linear)")
