"""The parallel spiking neuron family of Fang et al. (2023): PSN, masked PSN and sliding PSN.

W. Fang, Z. Yu, Z. Zhou, D. Chen, Y. Chen, Z. Ma, T. Masquelier, Y. Tian. "Parallel Spiking Neurons with High
Efficiency and Ability to Learn Long-term Dependencies". NeurIPS 2023 (arXiv:2304.12760).

All three drop the reset, so the hidden state is a linear function of the inputs and a whole sequence is one
matrix product (or one convolution) followed by the Heaviside step:

* :class:`PSN`: ``H = W X + B`` with ``W`` ∈ R^{T×T}, ``B`` ∈ R^T (init −1); ``S = Θ(H)``. ``W`` is dense, so
  ``H[t]`` depends on *future* inputs: the PSN only runs on a whole window of exactly T steps.
* :class:`MaskedPSN`: ``W`` is multiplied by ``λ·M_k + (1 − λ)·1`` where ``M_k[i, j] = 1`` for
  ``j ≤ i ≤ j + k − 1`` (a causal band of width k). λ is a buffer the user anneals from 0 to 1 during training
  (``model.lambda_ = ...``). With λ ≥ 1 it is causal and streams; with λ < 1 it is a window-only model like PSN.
* :class:`SlidingPSN`: a shared causal kernel of length k, ``H[t] = Σ_{i=0}^{k−1} W_i X[t − k + 1 + i] + B``
  (scalar B), exponential init ``W = (…, 1/4, 1/2, 1)``. It has no T-sized parameter and streams with a buffer
  of the last k − 1 inputs.

Conventions and defaults follow SpikingJelly's ``neuron.PSN / MaskedPSN / SlidingPSN`` (surrogate ATan with
alpha = 2, Kaiming-uniform ``W`` with a = √5, bias −1); with the same weights the outputs are identical (tested).

Streaming (``step``/``run``): a model whose ``H[t]`` needs future inputs cannot stream. :class:`PSN` and a
:class:`MaskedPSN` with λ < 1 accept ``run`` only for a whole window from the resting state and raise a
``ValueError`` for shorter chunks and for ``step`` (unless T = 1); their ``streaming`` attribute is False.
A :class:`MaskedPSN` with λ ≥ 1 keeps the last k − 1 inputs and the time index (its weights depend on the
absolute step t < T); :class:`SlidingPSN` keeps the last k − 1 inputs and streams for any length.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..contract import Neuron
from ..dtypes import to_compute
from ..registry import register
from ..surrogate import SurrogateLike, get_surrogate
from ..validation import check_int, check_range

__all__ = ["PSN", "MaskedPSN", "SlidingPSN", "PSNState", "WindowState"]

# SlidingPSN kernels up to this many taps run as k multiply-adds over time slices, longer ones as conv1d: on a
# CPU conv1d with one input channel is slower than even SpikingJelly's T×T GEMM at k = 4 (docs/benchmarks.md).
_DIRECT_MAX_TAPS = 32


class WindowState(NamedTuple):
    """State of a window-only model (PSN, MaskedPSN with λ < 1): the number of steps consumed (0 or T)."""

    t: Tensor  # 0-d int64


class PSNState(NamedTuple):
    """Streaming state of MaskedPSN (λ ≥ 1) and SlidingPSN."""

    history: Tensor  # [k - 1, B, *] the last k - 1 inputs (zeros before the sequence started)
    t: Tensor        # 0-d int64: steps consumed so far (MaskedPSN's weights depend on it)


class _ParallelNeuron(Neuron):
    """Shared pieces: surrogate, input checks, window-only ``run``."""

    streaming: bool = True

    def __init__(self, surrogate: SurrogateLike = "atan"):
        super().__init__()
        self.surrogate = get_surrogate(surrogate)

    def _fire(self, h: Tensor, like: Tensor) -> Tensor:
        self.record_state("v", h)
        return self.surrogate(h).to(like.dtype)

    def _window_only_run(self, x: Tensor, state: WindowState | None) -> tuple[Tensor, WindowState]:
        T = self.T
        fresh = state is None or int(state.t) == 0
        if not fresh or x.shape[0] != T:
            raise ValueError(
                f"{type(self).__name__}: H[t] depends on future inputs (dense T×T weight{self._why_dense()}), so it "
                f"cannot stream; run() takes only the whole window of T={T} steps from the resting state "
                f"(got a chunk of {x.shape[0]} steps{'' if fresh else ' after ' + str(int(state.t)) + ' steps'}). "
                "Use MaskedPSN with lambda_=1 or SlidingPSN for streaming.")
        y = self.forward(x)
        return y, WindowState(torch.tensor(T, dtype=torch.int64, device=x.device))

    def _why_dense(self) -> str:
        return ""


class PSN(_ParallelNeuron):
    """Parallel spiking neuron (Fang et al. 2023): ``H = W X + B``, ``S = Θ(H)``.

    Args:
        T: the number of time steps (``W`` is T×T, ``B`` has T entries). Inputs must have exactly T steps.
        surrogate: surrogate gradient of Θ (default ``"atan"``, alpha 2, as SpikingJelly).

    Parameters: ``weight`` [T, T] (Kaiming uniform, a = √5), ``bias`` [T] (init −1).
    ``X`` is the input ``[T, B, *]`` flattened to ``[T, N]``; every feature shares ``W`` and ``B``.
    Not causal: see the module docstring for ``run``/``step`` (window only, ``streaming = False``).
    """

    streaming = False

    def __init__(self, T: int, surrogate: SurrogateLike = "atan"):
        super().__init__(surrogate)
        self.T = check_int("T", T, minimum=1)
        self.weight = nn.Parameter(torch.empty(self.T, self.T))
        self.bias = nn.Parameter(torch.full((self.T,), -1.0))
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))

    def _check_length(self, x: Tensor) -> None:
        if x.shape[0] != self.T:
            raise ValueError(f"{type(self).__name__}(T={self.T}) needs inputs with exactly T={self.T} time steps, "
                             f"got shape {tuple(x.shape)}")

    def effective_weight(self) -> Tensor:
        return self.weight

    def hidden(self, x: Tensor) -> Tensor:
        """``H = W X + B`` for a whole window ``x`` ``[T, B, *]``."""
        xc = to_compute(x)  # half in float32: CPU matmul/conv1d support for half is partial
        w = self.effective_weight().to(xc.dtype)
        h = torch.addmm(self.bias.to(xc.dtype).unsqueeze(1), w, xc.reshape(self.T, -1))
        return h.view(xc.shape)

    def forward(self, x: Tensor) -> Tensor:
        self.check_input(x)
        self._check_length(x)
        return self._fire(self.hidden(x), x)

    def init_state(self, x_t: Tensor) -> WindowState:
        return WindowState(torch.zeros((), dtype=torch.int64, device=x_t.device))

    def check_run_input(self, x: Tensor) -> None:
        """A window-only model takes exactly T steps (T = 0 too is refused: it has no empty window)."""
        self.check_input(x)
        if not self.streaming and x.shape[0] != self.T:
            raise ValueError(f"{type(self).__name__} input x: H[t] depends on future inputs (dense T×T weight"
                             f"{self._why_dense()}), so it cannot stream; it needs the whole window of exactly "
                             f"T={self.T} time steps, got {x.shape[0]} (shape {tuple(x.shape)})")

    def run(self, x: Tensor, state: WindowState | None = None) -> tuple[Tensor, WindowState]:
        self.check_input(x)
        return self._window_only_run(x, state)

    def operation_counts(self, inputs: Tensor, output: Tensor) -> dict[str, float]:
        """Energy counting (:mod:`dendrix.analysis.energy`): H = W X + B costs one kernel row of T taps per
        neuron and step."""
        return {"dynamics_mac": float(self.T) * float(output.numel())}

    def extra_repr(self) -> str:
        return f"T={self.T}, surrogate={self.surrogate!r}"


class MaskedPSN(PSN):
    """Masked parallel spiking neuron (Fang et al. 2023).

    ``H = (W ⊙ M_k(λ)) X + B``, ``M_k(λ) = λ·M_k + (1 − λ)·1``, ``M_k[i, j] = 1`` for ``j ≤ i ≤ j + k − 1``;
    ``S = Θ(H)``. λ ≥ 1 uses ``W ⊙ M_k`` exactly (a causal band: ``H[t]`` sees inputs t − k + 1 … t).

    Args:
        T: number of time steps (``W`` is T×T).
        k: band width, 1 ≤ k ≤ T (the order of the masked PSN).
        lambda_init: initial λ in [0, 1] (default 0.0 as SpikingJelly: the mask is annealed in by setting
            ``model.lambda_`` during training; the registry's default is 1.0 so an unscheduled run is causal).
        surrogate: surrogate gradient (default ``"atan"``).

    Streams (``step``/``run`` in chunks, up to T steps in total) when λ ≥ 1; window-only otherwise.
    """

    #: Embedded as constants by the exporters (dendrix.export.step): λ, a hyper-parameter read as a Python number.
    export_constants = ("_lambda",)

    def __init__(self, T: int, k: int, lambda_init: float = 0.0, surrogate: SurrogateLike = "atan"):
        super().__init__(T, surrogate)
        self.k = check_int("k", k, minimum=1, maximum=self.T)
        lam = check_range("lambda_init", lambda_init, 0.0, 1.0)
        self.register_buffer("_lambda", torch.tensor(lam))
        # A Python copy of λ: ``streaming`` picks the code path from it, so neither eager nor compiled code
        # reads the buffer's value to branch (kept in step by the setter and by load_state_dict).
        self._lambda_value = float(lam)
        ones = torch.ones(self.T, self.T)
        self.register_buffer("mask", torch.tril(ones) * torch.triu(ones, -(self.k - 1)))

    @property
    def lambda_(self) -> float:
        return self._lambda_value

    @lambda_.setter
    def lambda_(self, value: float) -> None:
        self._lambda_value = check_range("lambda_", value, 0.0, 1.0)
        self._lambda.fill_(self._lambda_value)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
        self._lambda_value = float(self._lambda)

    @property
    def streaming(self) -> bool:  # type: ignore[override]
        return self.lambda_ >= 1.0

    def _why_dense(self) -> str:
        return f" while lambda_={self.lambda_:g} < 1"

    def effective_weight(self) -> Tensor:
        """``W ⊙ (λ M_k + (1 − λ))`` (``W ⊙ M_k`` for λ ≥ 1)."""
        if self.streaming:
            return self.weight * self.mask
        lam = self._lambda.to(self.weight.dtype)
        return self.weight * (lam * self.mask + (1.0 - lam))

    def init_state(self, x_t: Tensor) -> PSNState | WindowState:
        if not self.streaming:
            return super().init_state(x_t)
        hist = x_t.new_zeros(self.k - 1, *x_t.shape)
        return PSNState(hist, torch.zeros((), dtype=torch.int64, device=x_t.device))

    def run(self, x: Tensor, state: PSNState | WindowState | None = None) -> tuple[Tensor, PSNState | WindowState]:
        self.check_input(x)
        if not self.streaming:
            return self._window_only_run(x, state)
        state = self.resolve_state(x, state)
        t0, L = int(state.t), x.shape[0]
        if t0 + L > self.T:
            raise ValueError(f"MaskedPSN(T={self.T}): its weights cover T={self.T} steps; {t0} steps were already "
                             f"consumed and this chunk has {L} more")
        xc = to_compute(x)
        ext = torch.cat([state.history.to(xc.dtype), xc], 0)           # inputs t0-k+1 .. t0+L-1
        w = self.effective_weight().to(xc.dtype)
        # Rows t0..t0+L-1 and columns t0-k+1..t0+L-1 of W (columns before 0 are zero padding).
        w_pad = F.pad(w, (self.k - 1, 0))
        w_rows = w_pad[t0:t0 + L, t0:t0 + L + self.k - 1]
        h = torch.addmm(self.bias[t0:t0 + L].to(xc.dtype).unsqueeze(1), w_rows, ext.reshape(ext.shape[0], -1))
        y = self._fire(h.view(xc.shape), x)
        new_hist = ext[ext.shape[0] - (self.k - 1):].to(state.history.dtype)
        return y, PSNState(new_hist, state.t + L)

    def operation_counts(self, inputs: Tensor, output: Tensor) -> dict[str, float]:
        """Energy counting (:mod:`dendrix.analysis.energy`): k taps per neuron and step (the kept band of W)."""
        return {"dynamics_mac": float(self.k) * float(output.numel())}

    def extra_repr(self) -> str:
        return f"T={self.T}, k={self.k}, lambda_={self.lambda_:g}, surrogate={self.surrogate!r}"


class SlidingPSN(_ParallelNeuron):
    """Sliding parallel spiking neuron (Fang et al. 2023).

    ``H[t] = Σ_{i=0}^{k−1} W_i X[t − k + 1 + i] + B`` (inputs before the sequence are 0), ``S = Θ(H)``.

    Args:
        k: kernel length (the order), k ≥ 1.
        exp_init: True (default) initialises ``W = (2^{-(k-1)}, …, 1/4, 1/2, 1)``; False uses Kaiming uniform.
        surrogate: surrogate gradient (default ``"atan"``).

    Parameters: ``weight`` [k], ``bias`` (scalar, init −1). Works for any sequence length and streams with
    a buffer of the last k − 1 inputs. The parallel form is k multiply-adds over shifted time slices (one
    ``conv1d`` over time for k > 32).
    """

    def __init__(self, k: int, exp_init: bool = True, surrogate: SurrogateLike = "atan"):
        super().__init__(surrogate)
        self.k = check_int("k", k, minimum=1)
        if exp_init:
            weight = 0.5 ** torch.arange(self.k - 1, -1, -1, dtype=torch.float32)
        else:
            weight = torch.empty(1, self.k)
            nn.init.kaiming_uniform_(weight, a=math.sqrt(5))
            weight = weight[0]
        self.weight = nn.Parameter(weight)
        self.bias = nn.Parameter(torch.tensor(-1.0))

    def init_state(self, x_t: Tensor) -> PSNState:
        return PSNState(x_t.new_zeros(self.k - 1, *x_t.shape), torch.zeros((), dtype=torch.int64, device=x_t.device))

    def _hidden_from_extended(self, ext: Tensor) -> Tensor:
        """Valid correlation of ``ext`` ``[L + k - 1, *]`` with ``W``: ``[L, *]``."""
        L = ext.shape[0] - self.k + 1
        w = self.weight.to(ext.dtype)
        if self.k <= _DIRECT_MAX_TAPS:  # k passes of multiply-add over time slices
            h = torch.addcmul(self.bias.to(ext.dtype), ext[:L], w[0])
            for i in range(1, self.k):
                h = h.addcmul_(ext[i:i + L], w[i])
            return h
        cols = ext.reshape(ext.shape[0], -1).t().unsqueeze(1)          # [N, 1, L + k - 1]
        h = F.conv1d(cols, w.view(1, 1, self.k)).squeeze(1)
        return (h.t() + self.bias.to(ext.dtype)).reshape(L, *ext.shape[1:])

    def _hidden(self, x: Tensor) -> Tensor:
        """``H`` of a sequence from the resting state (zeros before it), without padding the input."""
        T = x.shape[0]
        if self.k > _DIRECT_MAX_TAPS:
            return self._hidden_from_extended(F.pad(x.movedim(0, -1), (self.k - 1, 0)).movedim(-1, 0))
        w = self.weight.to(x.dtype)
        h = torch.addcmul(self.bias.to(x.dtype), x, w[self.k - 1])  # lag 0
        for lag in range(1, min(self.k, T)):                          # H[t] += W_{k-1-lag} X[t - lag]
            h[lag:].addcmul_(x[:T - lag], w[self.k - 1 - lag])
        return h

    def forward(self, x: Tensor) -> Tensor:
        self.check_input(x)
        return self._fire(self._hidden(to_compute(x)), x)

    def _run_sequence(self, x: Tensor, state: PSNState) -> tuple[Tensor, PSNState]:
        xc = to_compute(x)
        ext = torch.cat([state.history.to(xc.dtype), xc], 0)
        y = self._fire(self._hidden_from_extended(ext), x)
        new_hist = ext[ext.shape[0] - (self.k - 1):].to(state.history.dtype)
        return y, PSNState(new_hist, state.t + x.shape[0])

    def gemm_weight(self, T: int) -> Tensor:
        """The equivalent lower-triangular T×T matrix (row t holds ``W`` ending at column t)."""
        T = check_int("T", T, minimum=1)
        idx = torch.arange(T, device=self.weight.device)
        lag = idx.unsqueeze(1) - idx.unsqueeze(0)                        # t - j
        valid = (lag >= 0) & (lag < self.k)
        w = self.weight.flip(0)[lag.clamp(0, self.k - 1)]               # W_{k-1-lag}
        return torch.where(valid, w, torch.zeros_like(w))

    def operation_counts(self, inputs: Tensor, output: Tensor) -> dict[str, float]:
        """Energy counting (:mod:`dendrix.analysis.energy`): k taps per neuron and step."""
        return {"dynamics_mac": float(self.k) * float(output.numel())}

    def extra_repr(self) -> str:
        return f"k={self.k}, surrogate={self.surrogate!r}"


# -- registry -------------------------------------------------------------------------------------------------
def _masked_psn_arguments(kw: dict) -> dict:
    """Registry builders: the band k (default 4) is clamped to the window T."""
    return {**kw, "k": min(kw.get("k", 4), kw["T"])}


def _sliding_psn_arguments(kw: dict) -> dict:
    """Registry builders: the kernel length k defaults to 4."""
    return {"k": 4, **kw}


register("psn", PSN, family="parallel", needs_time_steps=True, streams=False,
         description="Parallel spiking neuron (Fang et al. 2023): H = W X + B with a dense T×T W; not causal",
         cpu_engine="one T×T matmul", gpu_engine="one T×T matmul")
register("masked_psn", MaskedPSN, family="parallel", needs_time_steps=True, streams=False,
         neuron_arguments=_masked_psn_arguments,
         description="Masked PSN (Fang et al. 2023): T×T W masked to a causal band of width k, blended by λ",
         defaults={"k": 4, "lambda_init": 1.0},
         cpu_engine="one masked T×T matmul", gpu_engine="one masked T×T matmul")
register("sliding_psn", SlidingPSN, family="parallel", neuron_arguments=_sliding_psn_arguments,
         description="Sliding PSN (Fang et al. 2023): shared causal kernel of length k, exponential init",
         defaults={"k": 4},
         cpu_engine="causal conv1d", gpu_engine="causal conv1d")
