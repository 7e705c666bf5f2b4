"""MMDEND: the multi-branch multi-compartment parallel spiking dendritic neuron, with SSF firing.

Channel windows → per-branch tridiagonal compartment chains (cable model, diagonalised and discretised by
zero-order hold in :mod:`dendrix.ops.linear.modal`) → branch nonlinearity → leaky soma (parallel) →
:class:`~dendrix.neurons.ssf.SSF`. Three paths over time: the chunked kernel (:mod:`dendrix.ops.mmdend`), FFT
causal convolutions, and a ``step`` loop (the reference). The equations, derivations and design choices are in
``docs/mmdend.md``; PMSN, the single-branch predecessor, is in ``neurons/pmsn.py``.
"""

from __future__ import annotations

import math
from typing import Callable, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..contract import Neuron
from ..dtypes import to_compute
from ..ops.linear import (causal_conv, complex_dtype, diagonalise, final_modes, free_response, linear_recurrence,
                          modal_kernel, mode_powers, real_system, zoh)
from ..ops.mmdend import BLOCK, ChunkLayout, chunked_mmdend, serial_graph
from ..registry import register
from ..validation import check_choice, check_int, check_positive, check_range
from .ssf import SSF, expand_integer_spikes

__all__ = ["MMDEND", "MMDENDState", "channel_windows", "METHODS", "BACKENDS"]

METHODS = ("auto", "chunked", "fft")
BACKENDS = ("auto", "fused", "reference")


# ---------------------------------------------------------------------------------------------------------------
# channel grouping
# ---------------------------------------------------------------------------------------------------------------
DEFAULT_OVERLAP = 0.25  # the paper's best sharing (Fig. 7): about a quarter of the channels feed two branches


def channel_windows(channels: int, branches: int | None = None, window: int | None = None,
                    stride: int | None = None, overlap: float | None = None) -> tuple[int, int, int]:
    """Resolve ``(J, D', S)``: J windows of length D' and stride S that cover channels 0..D−1 exactly.

    Window j covers channels ``[j·S, j·S + D')``. Full coverage needs ``S <= D'`` (no gap between windows)
    and ``(J − 1)·S + D' = D`` (the last window ends at the last channel).

    * neither window nor stride: the stride S whose windows (``D' = D − (J − 1)·S``, neighbours overlapping by
      ``D' − S`` channels) make the fraction of channels that feed more than one branch closest to
      ``overlap`` (default 0.25, the paper's best setting, Fig. 7; ties go to the larger stride). ``overlap=0`` gives the most nearly disjoint windows, ``S = floor(D/J)``: disjoint
      when J divides D. J = branches, default 2. E.g. D = 128: J = 2 gives S = 48, D' = 80 (25 % shared);
      J = 4 gives S = 29, D' = 41 (28.1 %).
    * window only: ``S = (D − D')/(J − 1)``, which must be an integer (any S for J = 1, which needs D' = D).
    * stride only: ``D' = D − (J − 1)·S``, which must be >= S.
    * both: ``J = (D − D')/S + 1`` (``branches``, if given, must agree).

    ``overlap`` applies only when neither window nor stride is given.
    """
    D = check_int("channels", channels, minimum=1)
    if overlap is not None:
        if window is not None or stride is not None:
            raise ValueError(f"overlap={overlap!r} chooses window and stride itself; give overlap or "
                             f"window/stride, not both")
        overlap = check_range("overlap", overlap, 0.0, 1.0)
    if window is not None:
        window = check_int("window", window, minimum=1)
        if window > D:
            raise ValueError(f"window must be <= channels ({D}), got {window}")
    if stride is not None:
        stride = check_int("stride", stride, minimum=1)
    if window is not None and stride is not None:
        if (D - window) % stride:
            raise ValueError(f"window={window} and stride={stride} leave channels uncovered: (channels - window) = "
                             f"{D - window} must be a multiple of stride so the last window ends at channel {D - 1}")
        if stride > window:
            raise ValueError(f"stride ({stride}) > window ({window}) leaves gaps between windows; need stride <= window")
        J = (D - window) // stride + 1
        if branches is not None and check_int("branches", branches, minimum=1) != J:
            raise ValueError(f"window={window}, stride={stride} over {D} channels give {J} branches, but branches="
                             f"{branches}; pass branches={J} or branches=None")
        return J, window, stride
    J = check_int("branches", 2 if branches is None else branches, minimum=1)
    if J > D:
        raise ValueError(f"branches must be <= channels ({D}), got {J}")
    if window is not None:
        if J == 1:
            if window != D:
                raise ValueError(f"with 1 branch the window must span all {D} channels, got window={window}")
            return 1, D, 1
        if (D - window) % (J - 1):
            raise ValueError(f"window={window} with {J} branches over {D} channels needs stride (channels - window)/"
                             f"(branches - 1) = {(D - window) / (J - 1):g}, not an integer; give stride= too")
        S = (D - window) // (J - 1)
        if S < 1 or S > window:
            raise ValueError(f"window={window} with {J} branches over {D} channels gives stride {S}, outside "
                             f"[1, window]; choose another window")
        return J, window, S
    if stride is not None:
        Dp = D - (J - 1) * stride
        if Dp < stride:
            raise ValueError(f"stride={stride} with {J} branches over {D} channels needs window {Dp} >= stride; "
                             f"use a smaller stride")
        return J, Dp, stride
    if J == 1:
        return 1, D, 1
    target = DEFAULT_OVERLAP if overlap is None else overlap

    def shared(S: int) -> float:  # channels in two or more windows: the union of neighbours' overlaps o = D − J·S
        o = D - J * S
        return ((J - 2) * min(o, S) + o) / D

    best = D // J
    for S in range(D // J - 1, 0, -1):  # the overlap grows as the stride shrinks
        if abs(shared(S) - target) < abs(shared(best) - target):
            best = S
    return J, D - (J - 1) * best, best


def _tanh(v: Tensor) -> Tensor:
    """tanh as ``2σ(2v) − 1``: equal to tanh up to rounding (absolute error of order eps), and faster than
    ``torch.tanh`` on CPU (``docs/benchmarks.md``, "Measurements behind the kernels"). Every MMDEND path (step,
    chunked, FFT) uses this same sequence of operations, so their spikes stay bit-identical."""
    return torch.sigmoid(v * 2.0) * 2.0 - 1.0


_ACTIVATIONS: dict[str, Callable[[Tensor], Tensor]] = {
    "tanh": _tanh, "relu": F.relu, "sigmoid": torch.sigmoid, "gelu": F.gelu, "identity": lambda v: v,
}


# ---------------------------------------------------------------------------------------------------------------
# MMDEND
# ---------------------------------------------------------------------------------------------------------------
class _OperatorView(nn.Module):
    """``forward = model.kernel_operators``, so :func:`torch.func.functional_call` can evaluate it with
    detached parameter leaves (see :func:`dendrix.ops.mmdend.serial_graph`)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, L: int, tail: int, dtype: torch.dtype) -> tuple[Tensor, ...]:
        return self.model.kernel_operators(L, tail, dtype)


class MMDENDState(NamedTuple):
    compartments: Tensor  # [B, *, D', J, K] compartment voltages of every branch at every window position
    soma: Tensor          # [B, *, D] soma potential V^s


class MMDEND(Neuron):
    """Multi-branch multi-compartment parallel spiking dendritic neuron with SSF firing (MMDEND).

    Input: a current ``I`` ``[T, B, *, D]`` (D = ``channels``, the last dim). Per time step t:

    * Grouping: J windows of length D' and stride S over the channel axis; branch j receives channels
      ``[j·S, j·S + D')`` (:func:`channel_windows`). A channel feeds between 1 and J branches
      (:meth:`branch_proportions`).
    * Branch j, for every channel c of its window, a chain of K compartments (cable model), with the SAME
      parameters for every channel:
      ``dv_k/dt = v_{k−1}/τ^f_k − v_k/τ_k + v_{k+1}/τ^p_k + γ_k I_c``  (tridiagonal ``A_j`` [K×K]),
      ``V^dend_{j,c} = Σ_k c_k v_k + γ^o_j I_c`` (``c`` init ``[0 … 0 1]``, the terminal compartment).
      ``A_j = P Λ P⁻¹`` is diagonalised (``torch.linalg.eig``, complex, differentiable) every call, discretised
      by zero-order hold with step dt_j, and the branch is a causal convolution with the kernel
      ``K_j[l] = Re Σ_m (cP)_m (P⁻¹Γ)_m (e^{λ_m dt_j} − 1)/λ_m · e^{λ_m dt_j l}`` (FFT, :mod:`dendrix.ops.linear`).
      Modes with Re λ > −1e-4 are held at −1e-4 (a stability guard; inactive at the initialisation).
    * Branch nonlinearity: ``f(V^dend)`` (``branch_activation``, default tanh).
    * Soma (per channel): ``V^s[t] = β V^s[t−1] + α (Σ_{j∋c} f(V^dend_{j,c}[t]) / τ^s_j + γ^s I_c[t])``,
      ``β = exp(−dt_s/τ^s)``, ``α = τ^s (1 − β)`` (ZOH); linear, so computed by block matrix products.
    * Firing: :class:`SSF`, integer spikes in [−Ū, Ū] (``emits = "integer"``).

    Parameters (independent of D and T): per branch, leak rates 1/τ_k (log), couplings 1/τ^f_k and 1/τ^p_k
    (signed), log dt_j, Γ_j, c_j, γ^o_j, 1/τ^s_j (log); soma log τ^s and γ^s; SSF φ_p, φ_s. That is
    ``J(5K + 1) + 2`` plus 2 for SSF (K = 4, J = 2: 46).

    Args:
        channels: D, the number of input channels (= neurons) per time step.
        branches: J (default 2); derived from ``window`` and ``stride`` when both are given.
        compartments: K >= 1 (default 4).
        window, stride: D' and S (None: derived, see :func:`channel_windows`).
        overlap: with window and stride None, the target fraction of channels that feed two branches (default
            None = 0.25, the paper's best sharing, Fig. 7; ``overlap=0`` gives disjoint windows when J divides D,
            the grouping of dendrix before issue 14). See :meth:`branch_proportions`.
        ssf_range, v_threshold, scale_shift, firing: the :class:`SSF` options (U = 4, V_th = 1).
        branch_activation: ``"tanh"`` (default), ``"relu"``, ``"sigmoid"``, ``"gelu"``, ``"identity"``.
        tau_soma: τ^s initial value (default 2.0; dt_s = ``dt_soma`` = 1).
        leak, coupling: initial 1/τ_k and couplings (0.5 and 0.25: eigenvalues in (−1, 0), a stable chain).
        dt_min, dt_max: the initial dt_j are log-spaced over [dt_min, dt_max] across branches (0.1, 1.0).
        soma_input_gain: initial γ^s (default 1.0).
        method: the algorithm, ``"auto"`` (the default: ``"chunked"`` on CPU, ``"fft"`` on GPUs),
            ``"chunked"`` (dendrites, nonlinearity, soma and SSF in one autograd node over blocks of 32 steps,
            block matrix products, hand-written backward; see ``docs/mmdend.md``) or ``"fft"`` (FFT causal
            convolutions for dendrites and soma, plain autograd).
        backend: the engine (``docs/backends.md``), ``"auto"`` (default) or ``"fused"`` (the ``method``'s
            whole-sequence path), or ``"reference"`` (a ``step`` loop differentiated by autograd; it has no
            algorithm to choose, so it takes ``method="auto"`` only).
    """

    emits = "integer"

    #: Embedded as constants by the exporters (dendrix.export.step): the complex modes and the discretised system, functions of the parameters alone.
    export_constants = ("_modes", "discrete_system")

    def __init__(self, channels: int, branches: int | None = None, compartments: int = 4, window: int | None = None,
                 stride: int | None = None, ssf_range: int = 4, branch_activation: str = "tanh", *,
                 overlap: float | None = None,
                 v_threshold: float = 1.0, scale_shift: bool = True, firing: str = "integer", tau_soma: float = 2.0,
                 dt_soma: float = 1.0, leak: float = 0.5, coupling: float = 0.25, dt_min: float = 0.1,
                 dt_max: float = 1.0, soma_input_gain: float = 1.0, method: str = "auto", backend: str = "auto"):
        super().__init__()
        self.channels = check_int("channels", channels, minimum=1)
        self.compartments = K = check_int("compartments", compartments, minimum=1)
        self.branches, self.window, self.stride = channel_windows(self.channels, branches, window, stride, overlap)
        J = self.branches
        self.branch_activation = check_choice("branch_activation", branch_activation, tuple(_ACTIVATIONS))
        if method == "sequential":  # 0.2's name of the step loop
            raise ValueError("MMDEND: method='sequential' is now backend='reference' (the step loop; "
                             "methods: 'auto', 'chunked', 'fft')")
        self.method = check_choice("method", method, METHODS)
        self.backend = check_choice("backend", backend, BACKENDS)
        if self.backend == "reference" and self.method != "auto":
            raise ValueError(f"MMDEND: backend='reference' is the step loop and takes method='auto' only, got "
                             f"method={self.method!r}, backend={self.backend!r}")
        tau_soma = check_positive("tau_soma", tau_soma)
        self.dt_soma = check_positive("dt_soma", dt_soma)
        leak, dt_min, dt_max = check_positive("leak", leak), check_positive("dt_min", dt_min), check_positive("dt_max", dt_max)
        if dt_min > dt_max:
            raise ValueError(f"dt_min must be <= dt_max, got {dt_min:g} > {dt_max:g}")
        coupling = check_range("coupling", coupling, -1e6, 1e6)
        if coupling == 0 and K > 1:
            # equal leaks and no coupling give K equal eigenvalues, where the gradient of eig is undefined (NaN)
            raise ValueError("coupling must be non-zero when compartments > 1 (uncoupled compartments with equal "
                             "leaks have repeated eigenvalues, where torch.linalg.eig has no gradient), got 0")

        idx = torch.arange(self.window).unsqueeze(1) + self.stride * torch.arange(J).unsqueeze(0)  # [D', J]
        self.register_buffer("channel_index", idx, persistent=False)
        self._disjoint = self.window == self.stride or J == 1

        self.log_leak = nn.Parameter(torch.full((J, K), math.log(leak)))
        self.coupling_forward = nn.Parameter(torch.full((J, max(K - 1, 0)), float(coupling)))   # A[k, k-1]
        self.coupling_backward = nn.Parameter(torch.full((J, max(K - 1, 0)), float(coupling)))  # A[k, k+1]
        log_dt = torch.linspace(math.log(dt_min), math.log(dt_max), J) if J > 1 else torch.tensor([math.log(dt_min * dt_max) / 2])
        self.log_dt = nn.Parameter(log_dt)
        self.input_gain = nn.Parameter(torch.ones(J, K))                 # Γ
        out = torch.zeros(J, K)
        out[:, -1] = 1.0
        self.output_weight = nn.Parameter(out)                            # c
        self.direct_gain = nn.Parameter(torch.zeros(J))                   # γ^o
        self.log_tau_branch = nn.Parameter(torch.zeros(J))                # τ^s_j = 1
        self.log_tau_soma = nn.Parameter(torch.tensor(math.log(tau_soma)))
        self.soma_input_gain = nn.Parameter(torch.tensor(float(soma_input_gain)))  # γ^s
        self.ssf = SSF(ssf_range, v_threshold, scale_shift=scale_shift, firing=firing)
        self.emits = self.ssf.emits
        self.min_decay = 1e-4

    # -- structure ------------------------------------------------------------------------------------------
    def channel_coverage(self) -> Tensor:
        """Number of branches that see each channel, ``[D]`` (int64)."""
        counts = torch.zeros(self.channels, dtype=torch.int64, device=self.channel_index.device)
        return counts.index_add_(0, self.channel_index.flatten(), torch.ones_like(self.channel_index.flatten()))

    def branch_proportions(self) -> dict[int, float]:
        """Fraction of channels that feed exactly n branches, for n = 1..J (sums to 1): the f_i of the paper's
        energy formula (:func:`dendrix.analysis.paper_energy.mmdend_paper_energy`) and its Fig. 7 axis.

        With the default grouping about a quarter of the channels feed two branches:
        ``MMDEND(128, branches=2).branch_proportions() == {1: 0.75, 2: 0.25}`` and
        ``MMDEND(128, branches=4)`` gives ``{1: 0.71875, 2: 0.28125, 3: 0.0, 4: 0.0}``; ``overlap=0`` gives
        ``{1: 1.0, 2: 0.0, ...}`` when J divides D."""
        cov = self.channel_coverage()
        return {n: float((cov == n).float().mean()) for n in range(1, self.branches + 1)}

    def compartment_matrix(self) -> Tensor:
        """The tridiagonal ``A_j`` ``[J, K, K]``: diag −1/τ_k, sub-diagonal 1/τ^f, super-diagonal 1/τ^p."""
        A = torch.diag_embed(-self.log_leak.exp())
        if self.compartments > 1:
            A = A + torch.diag_embed(self.coupling_forward, offset=-1) + torch.diag_embed(self.coupling_backward, offset=1)
        return A

    def _modes(self):
        """Eigen-decomposition and ZOH terms in float64/complex128: λ [J,K], P, P⁻¹, dt [J], a = e^{λdt},
        b̃ = P⁻¹Γ, c̃ = cP, b̄ = b̃ (a − 1)/λ."""
        lam, P, Pinv = diagonalise(self.compartment_matrix().double(), max_real=-self.min_decay)
        dt = self.log_dt.double().exp()
        b_modal = torch.einsum("jmk,jk->jm", Pinv, self.input_gain.double().to(P.dtype))
        c_modal = torch.einsum("jk,jkm->jm", self.output_weight.double().to(P.dtype), P)
        modes = zoh(lam, dt.unsqueeze(-1), b_modal)
        return lam, P, Pinv, dt, modes.decay, b_modal, c_modal, modes.bbar

    def discrete_system(self, dtype: torch.dtype = torch.float32) -> tuple[Tensor, Tensor]:
        """Real ZOH matrices of every branch: ``Ā = P e^{Λdt} P⁻¹`` ``[J,K,K]`` and ``B̄ = P Λ⁻¹(e^{Λdt} − 1) P⁻¹Γ``
        ``[J,K]``, so that ``v[t] = Ā v[t−1] + B̄ I[t]``."""
        lam, P, Pinv, dt, a, b_modal, c_modal, bbar = self._modes()
        Abar, Bbar = real_system(P, Pinv, a, bbar)
        return Abar.to(dtype), Bbar.to(dtype)

    def branch_kernels(self, T: int, per_compartment: bool = False) -> Tensor:
        """Impulse responses of the branches ``[J, T]`` (``per_compartment``: of every compartment, ``[J, K, T]``)."""
        lam, P, Pinv, dt, a, b_modal, c_modal, bbar = self._modes()
        if per_compartment:
            return modal_kernel(lam.unsqueeze(1), dt[:, None, None], T, b=b_modal.unsqueeze(1), c=P, real=True)
        return modal_kernel(lam, dt.unsqueeze(-1), T, b=b_modal, c=c_modal, real=True)

    def block_operator(self, L: int, modes=None, dtype: torch.dtype = torch.float32) -> Tensor:
        """The chunked kernel's per-block map ``[J, L+K, L+K]``: ``[y; v_end] = M [I; v_start]`` for L steps of
        one branch, where y are the dendrite outputs (with the direct path), v the compartment voltages:
        ``M = [[T, O], [S, Ā^L]]``, ``T[i,k] = K[i−k]`` (lower-triangular Toeplitz of the branch kernel),
        ``O[i] = c Ā^{i+1}``, ``S[:, k] = Ā^{L−1−k} B̄``. Built from the modes in float64 (differentiable)."""
        lam, P, Pinv, dt, a, b_modal, c_modal, bbar = self._modes() if modes is None else modes
        pw = mode_powers(a, L + 1)                                                        # a^0 … a^L, [J, K, L+1]
        kern = torch.einsum("jm,jml->jl", c_modal * bbar, pw[..., :L]).real
        kern = torch.cat([kern[:, :1] + self.direct_gain.double().unsqueeze(-1), kern[:, 1:]], -1)
        i = torch.arange(L, device=kern.device)
        lag = i.unsqueeze(1) - i.unsqueeze(0)
        toeplitz = kern[:, lag.clamp_min(0)] * (lag >= 0)
        out_rows = torch.einsum("jm,jmi,jmk->jik", c_modal, pw[..., 1:], Pinv).real        # c Ā^{i+1}
        in_cols = torch.einsum("jkm,jmc,jm->jkc", P, pw[..., :L].flip(-1), bbar).real     # Ā^{L−1−c} B̄
        carry = torch.einsum("jkm,jm,jml->jkl", P, pw[..., L], Pinv).real                 # Ā^L
        return torch.cat([torch.cat([toeplitz, out_rows], -1), torch.cat([in_cols, carry], -1)], -2).to(dtype)

    def kernel_operators(self, L: int, tail: int, dtype: torch.dtype) -> tuple[Tensor, ...]:
        """Everything the chunked kernel needs from the parameters: ``M`` (block L), β, ``α/τ^s_j``, ``α γ^s``,
        the SSF gain and offset, and ``M`` for the last, shorter block when ``tail > 0``."""
        modes = self._modes()
        beta, alpha = self.soma_decay()
        gain, offset = self.ssf.affine(dtype)
        out = (self.block_operator(L, modes, dtype), beta.to(dtype), (alpha * self.branch_weights()).to(dtype),
               (alpha * self.soma_input_gain).to(dtype), gain, offset)
        return out + ((self.block_operator(tail, modes, dtype),) if tail else ())

    def soma_decay(self) -> tuple[Tensor, Tensor]:
        """``β = exp(−dt_s/τ^s)`` and ``α = τ^s (1 − β)``."""
        tau = self.log_tau_soma.exp()
        beta = torch.exp(-self.dt_soma / tau)
        return beta, tau * (1 - beta)

    def branch_weights(self) -> Tensor:
        """``1/τ^s_j`` ``[J]``."""
        return torch.exp(-self.log_tau_branch)

    # -- contract -------------------------------------------------------------------------------------------
    @property
    def input_width(self) -> int:  # type: ignore[override]
        return self.channels  # checked at every entry (forward, run, step) before the kernels

    def init_state(self, x_t: Tensor) -> MMDENDState:
        lead = x_t.shape[:-1]
        dtype = to_compute(x_t).dtype
        return MMDENDState(x_t.new_zeros(*lead, self.window, self.branches, self.compartments, dtype=dtype),
                           x_t.new_zeros(*lead, self.channels, dtype=dtype))

    def _gather(self, x: Tensor) -> Tensor:
        """``[..., D]`` → ``[..., D', J]`` (channel ``j·S + i`` at ``[..., i, j]``)."""
        if self._disjoint:  # windows tile the channels: a view, no copy
            return x.reshape(*x.shape[:-1], self.branches, self.window).transpose(-1, -2)
        g = x.index_select(-1, self.channel_index.flatten())
        return g.view(*x.shape[:-1], self.window, self.branches)

    def _soma_input(self, branch_out: Tensor, x: Tensor, alpha: Tensor) -> Tensor:
        """``α (Σ_{j∋c} f(V^dend_{j,c})/τ^s_j + γ^s I_c)`` ``[..., D]`` (α folded into the weights)."""
        w = branch_out * (alpha * self.branch_weights()).to(branch_out.dtype)
        if self._disjoint:
            acc = w.transpose(-1, -2).reshape(x.shape)
        else:
            acc = torch.zeros_like(x).index_add(-1, self.channel_index.flatten(), w.flatten(-2))
        return acc + (alpha * self.soma_input_gain).to(x.dtype) * x

    def _activation(self, v: Tensor) -> Tensor:
        return _ACTIVATIONS[self.branch_activation](v)

    def forward(self, x: Tensor) -> Tensor:
        if self.backend == "reference":
            return self.run(x, None)[0]
        y, _ = self._parallel(x, None, need_state=False)
        return y

    def run(self, x: Tensor, state: MMDENDState | None = None) -> tuple[Tensor, MMDENDState]:
        self.check_input(x, self.channels)
        if self.backend == "reference":
            state = self.resolve_state(x, state)
            ys, vs = [], []
            for t in range(x.shape[0]):
                y_t, state = self.step(x[t], state)
                ys.append(y_t)
                vs.append(state.soma)
            self.record_state("v", torch.stack(vs))
            return torch.stack(ys), state
        return self._parallel(x, state, need_state=True)

    def _parallel(self, x: Tensor, state: MMDENDState | None, need_state: bool) -> tuple[Tensor, MMDENDState | None]:
        # "auto": the chunked kernel on CPU; FFT convolutions on GPUs, where they are faster and flat in T
        # (docs/benchmarks.md, GPU section) while the chunked kernel's per-block launches grow with T.
        if self.method == "fft" or (self.method == "auto" and x.device.type != "cpu"):
            return self._parallel_fft(x, state, need_state)
        return self._chunked(x, state, need_state)

    def _chunked(self, x: Tensor, state: MMDENDState | None, need_state: bool) -> tuple[Tensor, MMDENDState | None]:
        """The chunked kernel (:func:`dendrix.ops.mmdend.chunked_mmdend`): exact, blocks of ``BLOCK`` steps, no
        complex tensors and no FFT over the data."""
        self.check_input(x, self.channels)
        if state is not None:
            state = self.resolve_state(x, state)
        xc = to_compute(x)
        dtype = xc.dtype
        T, lead = xc.shape[0], xc.shape[1:-1]
        J, K, D, Dp = self.branches, self.compartments, self.channels, self.window
        x2 = xc.reshape(T, -1).contiguous()                               # [T, B'·D]
        Bp = x2.shape[1] // D
        L = min(BLOCK, T)
        tail = T % L
        if torch.compiler.is_compiling():  # AOTAutograd differentiates the traced operators; no thread switch
            ops = tuple(self.kernel_operators(L, tail, dtype))
        else:
            names = [n for n, _ in self.named_parameters()]
            view = _OperatorView(self)

            def operators(*params: Tensor) -> tuple[Tensor, ...]:
                return torch.func.functional_call(view, {"model." + n: p for n, p in zip(names, params)},
                                                  (L, tail, dtype))

            ops = serial_graph(operators, x2.shape[1], *self.parameters())
        M, beta, w, g_in, gain, offset = ops[:6]
        M_tail = ops[6] if tail else None
        if state is None:
            vd0 = x2.new_zeros(J, K, Bp * Dp)
            vs0 = x2.new_zeros(Bp * D)
        else:
            vd0 = state.compartments.to(dtype).reshape(Bp, Dp, J, K).permute(2, 3, 0, 1).reshape(J, K, Bp * Dp)
            vs0 = state.soma.to(dtype).reshape(Bp * D)
        lo, hi = self.ssf.clip_bounds()
        levels = self.ssf.levels if self.ssf.firing == "integer" and hi != self.ssf.levels else 0
        traces = self.recording or (torch.is_grad_enabled() and any(t.requires_grad for t in (x2, vd0, vs0, *ops)))
        lay = ChunkLayout(Bp, D, Dp, J, K, L, self._disjoint, self.channel_index.T.flatten(),
                          self.branch_activation, (lo, hi), levels, traces)
        spikes, v, f_all, vdT, vsT = chunked_mmdend(x2, M, M_tail, beta, w, g_in, gain, offset, vd0, vs0, lay)
        if self.recording:
            self.record_state("v", v.reshape(xc.shape))
            f = F.gelu(f_all) if self.branch_activation == "gelu" else f_all
            self.record_state("branches", f.view(J, T, Bp, Dp).permute(1, 2, 3, 0).reshape(T, *lead, Dp, J))
            lam, P, Pinv, dt, a, b_modal, c_modal, bbar = self._modes()
            z0 = None
            if state is not None:
                cdt = complex_dtype(dtype)
                v0 = state.compartments.reshape(-1, Dp, J, K).to(cdt)
                z0 = torch.einsum("jmk,bdjk->bdjm", Pinv.to(cdt), v0)
            g = self._gather(xc.reshape(T, -1, D))
            self.record_state("compartments", self._compartment_trace(g, z0, lam, P, dt, b_modal, a).reshape(
                T, *lead, Dp, J, K))
        out = spikes.reshape(x.shape).to(x.dtype)
        if not need_state:
            return out, None
        compartments = vdT.view(J, K, Bp, Dp).permute(2, 3, 0, 1).reshape(*lead, Dp, J, K)
        return out, MMDENDState(compartments, vsT.reshape(*lead, D))

    def _parallel_fft(self, x: Tensor, state: MMDENDState | None, need_state: bool) -> tuple[Tensor, MMDENDState | None]:
        """``method="fft"``: FFT causal convolutions for the dendrites and the soma."""
        self.check_input(x, self.channels)
        if state is not None:
            state = self.resolve_state(x, state)
        xc = to_compute(x)
        T, lead = xc.shape[0], xc.shape[1:-1]
        xf = xc.reshape(T, -1, self.channels)                             # [T, B', D]
        g = self._gather(xf)                                              # [T, B', D', J]
        lam, P, Pinv, dt, a, b_modal, c_modal, bbar = self._modes()
        cdt = complex_dtype(xc.dtype)
        kernel = modal_kernel(lam, dt.unsqueeze(-1), T, b=b_modal, c=c_modal, real=True).to(xc.dtype)   # [J, T]
        # the direct path γ^o I[t] is lag 0 of the same convolution
        kernel = torch.cat([kernel[:, :1] + self.direct_gain.to(xc.dtype).unsqueeze(-1), kernel[:, 1:]], -1)
        dend = causal_conv(g, kernel, method="fft")
        z0 = None
        if state is not None:
            v0 = state.compartments.reshape(-1, self.window, self.branches, self.compartments).to(cdt)
            z0 = torch.einsum("jmk,bdjk->bdjm", Pinv.to(cdt), v0)
            dend = dend + free_response(z0, a.to(cdt), c_modal.to(cdt), T).to(xc.dtype)
        branch_out = self._activation(dend)
        beta, alpha = self.soma_decay()
        soma_in = self._soma_input(branch_out, xf, alpha)
        h0 = None if state is None else state.soma.reshape(-1, self.channels).to(xc.dtype)
        v = linear_recurrence(beta.to(xc.dtype), soma_in, h0, method="fft")
        spikes = self.ssf.fire(v)
        if self.recording:
            self.record_state("v", v.reshape(xc.shape))
            self.record_state("branches", branch_out.reshape(T, *lead, self.window, self.branches))
            self.record_state("compartments", self._compartment_trace(g, z0, lam, P, dt, b_modal, a).reshape(
                T, *lead, self.window, self.branches, self.compartments))
        out = spikes.reshape(x.shape).to(x.dtype)
        if not need_state:
            return out, None
        zT = final_modes(g, a.to(cdt), bbar.to(cdt), z0)                # [B', D', J, K]
        vT = torch.einsum("jkm,bdjm->bdjk", P.to(cdt), zT).real.to(xc.dtype)
        new_state = MMDENDState(vT.reshape(*lead, self.window, self.branches, self.compartments),
                                v[-1].reshape(*lead, self.channels))
        return out, new_state

    def _compartment_trace(self, g, z0, lam, P, dt, b_modal, a) -> Tensor:
        """Every compartment's voltage ``[T, B', D', J, K]`` (computed only while recording)."""
        T = g.shape[0]
        kern = modal_kernel(lam.unsqueeze(1), dt[:, None, None], T, b=b_modal.unsqueeze(1), c=P, real=True)
        u = g.unsqueeze(-1).expand(*g.shape, self.compartments)
        v = causal_conv(u, kern.to(g.dtype))
        if z0 is not None:
            cdt = z0.dtype
            pw = mode_powers(a.to(cdt), T, offset=1)                         # [J, M, T]
            v = v + torch.einsum("jkm,jmt,bdjm->tbdjk", P.to(cdt), pw, z0).real.to(g.dtype)
        return v

    def step(self, x_t: Tensor, state: MMDENDState | None = None) -> tuple[Tensor, MMDENDState]:
        """One time step by the sequential recurrence ``v = Ā v + B̄ I``, ``V^s = β V^s + α(…)``, SSF."""
        if not isinstance(x_t, Tensor) or x_t.dim() < 2 or x_t.shape[-1] != self.channels:
            shape = tuple(x_t.shape) if isinstance(x_t, Tensor) else type(x_t).__name__
            raise ValueError(f"MMDEND.step: x_t must be [B, ..., {self.channels}], got {shape}")
        state = self.resolve_state(x_t.unsqueeze(0), state)
        xc = to_compute(x_t)
        Abar, Bbar = self.discrete_system(xc.dtype)
        g = self._gather(xc)                                              # [B, *, D', J]
        v = torch.einsum("jkl,...jl->...jk", Abar, state.compartments.to(xc.dtype)) + Bbar * g.unsqueeze(-1)
        dend = (v * self.output_weight.to(xc.dtype)).sum(-1) + self.direct_gain.to(xc.dtype) * g
        beta, alpha = self.soma_decay()
        soma = beta.to(xc.dtype) * state.soma.to(xc.dtype) + self._soma_input(self._activation(dend), xc, alpha)
        return self.ssf.fire(soma).to(x_t.dtype), MMDENDState(v, soma)

    def binary_spikes(self, x: Tensor) -> Tensor:
        """Inference form: ``[T, Ū, B, *, D]`` sub-step spikes in {−1, 0, 1} summing to ``forward(x)``."""
        return expand_integer_spikes(self.forward(x).detach(), self.ssf.levels)

    def operation_counts(self, inputs: Tensor, output: Tensor) -> dict[str, float]:
        """Energy counting (:mod:`dendrix.analysis.energy`), paper Table 4 per channel and step: dendrites
        (3K+1)c and soma 2c + 3 MACs, with c = Σ_i f_i·i the mean number of branches covering a channel."""
        coverage = float(sum(i * f for i, f in self.branch_proportions().items()))
        per_step = (3.0 * float(self.compartments) + 1.0) * coverage + 2.0 * coverage + 3.0
        return {"dynamics_mac": per_step * float(output.numel())}

    def extra_repr(self) -> str:
        return (f"channels={self.channels}, branches={self.branches}, compartments={self.compartments}, "
                f"window={self.window}, stride={self.stride}, branch_activation={self.branch_activation!r}, "
                f"method={self.method!r}, backend={self.backend!r}")



register("mmdend", MMDEND, family="dendritic", width="channels",
         description="MMDEND: channel windows → tridiagonal compartment chains (FFT) → tanh branches → "
                     "leaky soma → SSF integer spikes",
         cpu_engine="chunked block kernel (ops.mmdend)", gpu_engine="FFT (ops.linear)")
