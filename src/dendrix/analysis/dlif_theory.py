"""Theory checks of DLIF (dendritic bilinear integration): XOR with one neuron, and Theorem 1.

**XOR.** Two input spike trains s1[t], s2[t] ~ Bernoulli(1/2), independent; target spike train
y[t] = s1[t] XOR s2[t]. One DLIF neuron computes it exactly: with W = (w, w), K_12 = -w and bias b the current
is I = w (s1 + s2) - 2w s1 s2 + b = w·XOR(s1, s2) + b. One LIF neuron cannot: at step t its decision is
Θ(a·V[t-1] + w1 s1 + w2 s2 + b' - θ), a linear threshold function of (s1[t], s2[t]) for every value of the
history V[t-1], which is independent of the current inputs; a linear threshold gets at most 3 of the 4
equally likely input combinations right, so its expected accuracy is at most 75 %.

**Theorem 1.** Two distributions of spike patterns with equal firing rates and correlation matrices C1 ≠ C2.
The mean input current of a DLIF neuron is E[I] = Wμ + b + ⟨K, E[ssᵀ]⟩ and E[ssᵀ] = C + μμᵀ, so the classes
differ only through ⟨K, C1 - C2⟩; under ||K||_F ≤ 1 the separating K is ±(C1 - C2)/||C1 - C2||_F (off-diagonal).
The generator below makes the per-channel spike *counts* of a trial identically distributed in both classes
(circular time shifts desynchronise a group without changing any count), so anything computed from counts,
including the mean current of a LIF neuron, is at chance; only zero-lag coincidences carry the class.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from ..layers.dlif import DLIFLinear
from ..layers.spiking import SpikingLinear
from ..neurons.lif import LIF
from ..ops.lif import lif_sequence

__all__ = ["xor_data", "train_xor", "lif_xor_grid_search", "correlation_data", "empirical_correlation",
           "train_correlation", "train_mean_current_readout", "XORResult", "CorrelationResult", "offdiag_cosine"]


# ------------------------------------------------------------------------------------------------------- XOR
def xor_data(T: int, batch: int, seed: int = 0) -> tuple[Tensor, Tensor]:
    """``(x [T, B, 2], y [T, B, 1])``: independent fair-coin spikes on 2 inputs and their per-step XOR."""
    g = torch.Generator().manual_seed(seed)
    x = (torch.rand(T, batch, 2, generator=g) < 0.5).float()
    y = (x[..., :1] != x[..., 1:]).float()
    return x, y


@dataclass
class XORResult:
    accuracy: float            # per-step accuracy of the trained neuron on held-out data
    history: list[float]       # training accuracy per iteration
    model: torch.nn.Module


def _membrane(current: Tensor) -> tuple[Tensor, Tensor]:
    """Soft-reset LIF soma (tau 2, threshold 1) of both neurons: ``(spikes, H)``."""
    spikes, h, _ = lif_sequence(current, current.new_zeros(current.shape[1:]), 0.5, 1.0, None)
    return spikes, h


def train_xor(kind: str = "dlif", steps: int = 300, lr: float = 0.05, T: int = 100, batch: int = 32,
              seed: int = 0, margin: float = 0.25) -> XORResult:
    """Train one neuron (``kind`` "dlif" or "lif", soft reset, tau 2, threshold 1) with 2 inputs on per-step
    XOR. Loss: hinge on the pre-reset potential, ``relu(margin - (2y-1)(H - 1))``, so that the trained neuron keeps
    a margin. Returns the accuracy of its spikes on 20,000 held-out steps."""
    torch.manual_seed(seed)
    if kind == "dlif":
        model = DLIFLinear(2, 1, sparsity=0.0, seed=seed)
        current = model.input_current
    elif kind == "lif":
        model = SpikingLinear(2, 1, LIF(v_reset=None))
        current = model.linear
    else:
        raise ValueError(f"kind must be 'dlif' or 'lif', got {kind!r}")
    x, y = xor_data(T, batch, seed)
    sign = 2 * y - 1
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    hist = []
    for _ in range(steps):
        opt.zero_grad()
        spikes, h = _membrane(current(x))
        torch.relu(margin - sign * (h - 1.0)).mean().backward()
        opt.step()
        hist.append(float((spikes == y).float().mean()))
    xt, yt = xor_data(200, 100, seed + 1000)
    with torch.no_grad():
        acc = float((model(xt) == yt).float().mean())
    return XORResult(acc, hist, model)


def lif_xor_grid_search(points: int = 21, limit: float = 4.0, seed: int = 0) -> float:
    """Best per-step XOR accuracy of one soft-reset LIF neuron (tau 2, threshold 1) over a grid of
    (w1, w2, b) in [-limit, limit]^3, on 20,000 held-out steps."""
    x, y = xor_data(200, 100, seed + 2000)
    grid = torch.linspace(-limit, limit, points)
    w1, w2, b = torch.meshgrid(grid, grid, grid, indexing="ij")
    W = torch.stack([w1.reshape(-1), w2.reshape(-1)], 1)  # [P, 2]
    bias = b.reshape(-1)
    lif = LIF(v_reset=None)
    best = 0.0
    with torch.no_grad():
        for chunk in range(0, W.shape[0], 2048):
            Wc, bc = W[chunk:chunk + 2048], bias[chunk:chunk + 2048]
            cur = x @ Wc.t() + bc  # [T, B, P]
            spikes = lif(cur)
            acc = (spikes == y).float().mean(dim=(0, 1))
            best = max(best, float(acc.max()))
    return best


# ------------------------------------------------------------------------------------------------ Theorem 1
def correlation_data(trials: int, T: int = 100, group: int = 4, rate: float = 0.2, keep: float = 0.5,
                     seed: int = 0) -> tuple[Tensor, Tensor]:
    """Two classes of spike patterns on ``2·group`` channels (groups A, B) with equal rates.

    Every group has a mother train (Bernoulli ``rate/keep``); each channel keeps each mother spike with
    probability ``keep`` (rate = ``rate``). In class 0 group A is synchronous and group B's channels are circularly
    shifted by distinct random lags; class 1 swaps the roles. Returns ``x [T, trials, 2·group]``, ``y [trials]``
    (balanced). Per-channel counts have the same distribution in both classes.
    """
    rng = np.random.default_rng(np.random.SeedSequence([seed, 7]))
    n = 2 * group
    y = rng.permutation(np.arange(trials) % 2)
    x = np.zeros((trials, T, n), dtype=np.float32)
    for k in range(trials):
        for g in range(2):
            mother = rng.random(T) < rate / keep
            sync = (g == 0) == (y[k] == 0)
            lags = np.zeros(group, dtype=int) if sync else rng.choice(np.arange(1, T), size=group, replace=False)
            for c in range(group):
                train = np.roll(mother, lags[c]) & (rng.random(T) < keep)
                x[k, :, g * group + c] = train
    return torch.from_numpy(x).transpose(0, 1).contiguous(), torch.from_numpy(y.astype(np.int64))


def empirical_correlation(x: Tensor) -> Tensor:
    """Zero-lag correlation matrix of ``x [T, trials, n]`` pooled over time and trials."""
    s = x.reshape(-1, x.shape[-1]).double()
    return torch.corrcoef(s.t())


def offdiag_cosine(a: Tensor, b: Tensor) -> float:
    """Cosine similarity of the strictly upper-triangular parts of two ``[n, n]`` matrices."""
    iu = torch.triu_indices(a.shape[-1], a.shape[-1], 1)
    va, vb = a[iu[0], iu[1]].double(), b[iu[0], iu[1]].double()
    return float(va @ vb / (va.norm() * vb.norm()).clamp_min(1e-30))


@dataclass
class CorrelationResult:
    accuracy: float     # held-out accuracy of the mean-current readout
    cosine: float       # cosine(K, C_class0 - C_class1) over pairs i < j (DLIF only; nan for LIF)
    K: Tensor | None
    C_diff: Tensor


def train_mean_current_readout(kind: str, x: Tensor, y: Tensor, xt: Tensor, yt: Tensor, *, steps: int = 200,
                               lr: float = 0.05, seed: int = 0, weight_decay: float = 1e-3
                               ) -> tuple[float, torch.nn.Module]:
    """Train one neuron (``kind`` "dlif": W, K, b from K = 0, all pairs; "lif": W, b) to tell class 0 from class 1
    of spike inputs ``x [T, trials, n]`` by its time-averaged input current (logit = mean_t I[t]). Returns the
    held-out accuracy on ``(xt, yt)`` and the trained layer."""
    torch.manual_seed(seed)
    n = x.shape[-1]
    if kind == "dlif":
        model = DLIFLinear(n, 1, sparsity=0.0, k_init=0.0, seed=seed)
        current = model.input_current
    elif kind == "lif":
        model = SpikingLinear(n, 1, LIF(v_reset=None))
        current = model.linear
    else:
        raise ValueError(f"kind must be 'dlif' or 'lif', got {kind!r}")
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    target = (y == 0).float()
    for _ in range(steps):
        opt.zero_grad()
        logit = current(x).mean(0)[:, 0]
        torch.nn.functional.binary_cross_entropy_with_logits(logit, target).backward()
        opt.step()
    with torch.no_grad():
        acc = float(((current(xt).mean(0)[:, 0] > 0).float() == (yt == 0).float()).float().mean())
    return acc, model


def train_correlation(kind: str = "dlif", steps: int = 200, lr: float = 0.05, trials: int = 512, T: int = 100,
                      group: int = 4, seed: int = 0, weight_decay: float = 1e-3) -> CorrelationResult:
    """Train one neuron to tell the two classes of :func:`correlation_data` apart from its time-averaged input
    current (logit = mean_t I[t]; the neuron's bias is the decision offset). DLIF learns W, K, b from K = 0; LIF
    learns W, b."""
    x, y = correlation_data(trials, T, group, seed=seed)
    xt, yt = correlation_data(trials, T, group, seed=seed + 1000)
    acc, model = train_mean_current_readout(kind, x, y, xt, yt, steps=steps, lr=lr, seed=seed,
                                            weight_decay=weight_decay)
    c0 = empirical_correlation(x[:, y == 0])
    c1 = empirical_correlation(x[:, y == 1])
    diff = c0 - c1
    if kind == "dlif":
        K = model.bilinear_matrix().detach()[0]
        cos = offdiag_cosine(K, diff)
    else:
        K, cos = None, float("nan")
    return CorrelationResult(acc, cos, K, diff)
