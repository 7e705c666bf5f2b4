"""Membrane noise of the DGN versus LIF: closed-form steady-state variances and an Euler–Maruyama check.

Subthreshold continuous-time models (membrane capacitance 1), inputs x_i(t) = μ_i + σ_i ξ(t) with ONE white noise
ξ shared by all inputs (SPEC.md, "DGN and S-DGN"):

    LIF:  dV = (−g_l V + Σ_i W_i x_i) dt
    DGN:  dV = (−(g_l + Σ_i C_i x_i) V + Σ_i W_i x_i) dt

Write a = Σ W_i μ_i, G0 = g_l + Σ C_i μ_i, β = Σ W_i σ_i, γ = Σ C_i σ_i, V_ss = a / G0. Read as an Itô SDE
(the noise multiplies the membrane value at the start of each step, exactly as in the discrete DGN update
V[t] = (1 − dt·G[t]) V[t-1] + dt·I[t]):

    dV = (a − G0 V) dt + (β − γ V) dB

* LIF (γ = 0): an Ornstein–Uhlenbeck process, Var = β² / (2 g_l).
* DGN, linear-noise approximation (SPEC.md): noise amplitude frozen at V_ss, Var ≈ (β − γ V_ss)² / (2 G0).
* DGN, exact stationary moments of the Itô SDE: E[V] = V_ss and Var = (β − γ V_ss)² / (2 G0 − γ²), finite for
  2 G0 > γ². The linear-noise value is its first order in γ²/(2 G0).

The derivation is in ``docs/dgn.md``. :func:`simulate_variance` integrates the SDE by Euler–Maruyama,
vectorised over parameter sets and paths.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from ..validation import check_int, check_nonnegative, check_positive

__all__ = ["NoiseInputs", "lif_variance", "dgn_variance_lna", "dgn_variance_exact", "dgn_steady_state",
           "simulate_variance", "reduce_inputs"]


@dataclass
class NoiseInputs:
    """Per-input parameters, each ``[K, n]`` (K parameter sets, n inputs) or ``[n]``."""
    weight: Tensor       # W_i
    conductance: Tensor  # C_i (zeros: LIF)
    mu: Tensor           # μ_i
    sigma: Tensor        # σ_i
    g_leak: float | Tensor = 1.0


def reduce_inputs(p: NoiseInputs) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """(a, G0, β, γ) per parameter set: a = ΣWμ, G0 = g_l + ΣCμ, β = ΣWσ, γ = ΣCσ (on the device of ``weight``)."""
    w = torch.as_tensor(p.weight, dtype=torch.float64)
    c, mu, sigma = (torch.as_tensor(t, dtype=torch.float64, device=w.device) for t in (p.conductance, p.mu, p.sigma))
    g_leak = torch.as_tensor(p.g_leak, dtype=torch.float64, device=w.device)
    if (g_leak < 0).any():
        raise ValueError(f"g_leak must be >= 0, got {p.g_leak!r}")
    if (sigma < 0).any():
        raise ValueError("sigma must be >= 0")
    a = (w * mu).sum(-1)
    g0 = g_leak + (c * mu).sum(-1)
    beta = (w * sigma).sum(-1)
    gamma = (c * sigma).sum(-1)
    return a, g0, beta, gamma


def dgn_steady_state(p: NoiseInputs) -> tuple[Tensor, Tensor]:
    """(G0, V_ss) of the noiseless DGN."""
    a, g0, _, _ = reduce_inputs(p)
    return g0, a / g0


def lif_variance(p: NoiseInputs) -> Tensor:
    """(Σ W_i σ_i)² / (2 g_l): the LIF (C ignored) steady-state variance."""
    _, _, beta, _ = reduce_inputs(p)
    g_leak = torch.as_tensor(p.g_leak, dtype=torch.float64)
    return beta ** 2 / (2 * g_leak)


def dgn_variance_lna(p: NoiseInputs) -> Tensor:
    """(Σ σ_i (W_i − C_i V_ss))² / (2 G0): linear-noise approximation (SPEC.md)."""
    a, g0, beta, gamma = reduce_inputs(p)
    return (beta - gamma * a / g0) ** 2 / (2 * g0)


def dgn_variance_exact(p: NoiseInputs) -> Tensor:
    """(β − γ V_ss)² / (2 G0 − γ²): exact stationary variance of the Itô SDE (inf where 2 G0 <= γ²)."""
    a, g0, beta, gamma = reduce_inputs(p)
    denom = 2 * g0 - gamma ** 2
    var = (beta - gamma * a / g0) ** 2 / denom
    return torch.where(denom > 0, var, torch.full_like(var, math.inf))


def simulate_variance(p: NoiseInputs, *, dt: float = 1e-3, burn_in: float = 6.0, duration: float = 20.0,
                      paths: int = 2000, seed: int = 0, chunk: int = 500) -> tuple[Tensor, Tensor]:
    """Euler–Maruyama estimate of the stationary mean and variance of V for each parameter set.

    V_{k+1} = V_k + (a − G0 V_k) dt + (β − γ V_k) ΔB_k, ΔB_k ~ N(0, dt), started at V_ss. Because the inputs share
    one noise, Σ_i W_i x_i dt = a dt + β ΔB and Σ_i C_i x_i dt = (G0 − g_l) dt + γ ΔB exactly, so simulating the
    reduced coefficients is simulating the per-input model. ``burn_in`` and ``duration`` are in units of the
    slowest relaxation time 1/(G0 − γ²/2) (the decay rate of E[V²]) of each set; statistics pool all paths and all
    steps after the burn-in. Returns (mean [K], variance [K]) in float64, on the device of ``p.weight``; the noise is
    drawn on the CPU (seeded) and moved there, so the paths do not depend on the device.
    """
    check_positive("dt", dt)
    check_nonnegative("burn_in", burn_in)
    check_positive("duration", duration)
    check_int("paths", paths, minimum=2)
    a, g0, beta, gamma = (t.reshape(-1) for t in reduce_inputs(p))
    rate = g0 - gamma ** 2 / 2
    if (rate <= 0).any() or (g0 <= 0).any():
        raise ValueError("every parameter set needs G0 > γ²/2 for a stationary variance")
    slowest = float((1.0 / rate).max())
    n_burn = int(math.ceil(burn_in * slowest / dt))
    n_sample = int(math.ceil(duration * slowest / dt))
    gen = torch.Generator().manual_seed(seed)
    K = a.numel()
    v = (a / g0).unsqueeze(1).repeat(1, paths)
    decay = (1 - g0 * dt).unsqueeze(1)           # 1 − G0 dt
    drift = (a * dt).unsqueeze(1)                # a dt
    beta_, gamma_ = beta.unsqueeze(1), gamma.unsqueeze(1)
    scratch = torch.empty_like(v)
    total = torch.zeros(K, dtype=torch.float64, device=v.device)
    total_sq = torch.zeros(K, dtype=torch.float64, device=v.device)
    sqrt_dt = math.sqrt(dt)
    step = 0
    while step < n_burn + n_sample:
        n = min(chunk, n_burn + n_sample - step)
        noise = torch.randn(n, K, paths, generator=gen, dtype=torch.float64).to(v.device).mul_(sqrt_dt)
        for k in range(n):
            # V ← V + (a − G0 V) dt + (β − γ V) ΔB, in place on [K, paths]
            torch.mul(v, gamma_, out=scratch).neg_().add_(beta_).mul_(noise[k])  # (β − γ V) ΔB
            v.mul_(decay).add_(drift).add_(scratch)
            if step + k >= n_burn:
                total += v.sum(1)
                total_sq += torch.mul(v, v, out=scratch).sum(1)
        step += n
    count = n_sample * paths
    mean = total / count
    var = total_sq / count - mean ** 2
    return mean, var
