"""DGN versus LIF membrane noise: closed-form steady-state variance against Euler–Maruyama simulation.

Left: membrane variance against the synaptic conductance scale c (C_i = c), for two input means μ. Curves:
the exact stationary variance of the DGN SDE, SPEC's linear-noise formula, and LIF's (c-independent) value;
markers: simulation. Right: simulated / closed-form variance over the whole grid.

    .venv/bin/python examples/dgn_noise_theory.py [--out runs/examples] [--quick]
"""

from __future__ import annotations

import argparse
import itertools
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from dendrix.analysis.dgn_theory import (NoiseInputs, dgn_variance_exact, dgn_variance_lna,  # noqa: E402
                                         lif_variance, reduce_inputs, simulate_variance)

WEIGHTS = [1.0, -0.5, 0.8]
MU_PROFILE = [1.0, 0.5, 1.5]


def inputs(mus, sigmas, cs, g_leak) -> NoiseInputs:
    rows = list(itertools.product(mus, sigmas, cs))
    w = torch.tensor([WEIGHTS] * len(rows), dtype=torch.float64)
    c = torch.tensor([[c] * 3 for _, _, c in rows], dtype=torch.float64)
    mu = torch.tensor([[m * k for k in MU_PROFILE] for m, _, _ in rows], dtype=torch.float64)
    sigma = torch.tensor([[s] * 3 for _, s, _ in rows], dtype=torch.float64)
    return NoiseInputs(w, c, mu, sigma, g_leak)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/examples", help="folder for the PNG (default runs/examples)")
    parser.add_argument("--quick", action="store_true", help="fewer paths and grid points")
    parser.add_argument("--g-leak", type=float, default=2.0)
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    mus, sigmas = [0.5, 2.0], [0.2, 0.5]
    cs = [0.0, 0.25, 0.5] if args.quick else [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6]
    paths, duration = (800, 6.0) if args.quick else (3000, 12.0)
    p = inputs(mus, sigmas, cs, args.g_leak)
    _, sim = simulate_variance(p, dt=2e-3, burn_in=4.0, duration=duration, paths=paths, seed=0)
    exact, lna, lif = dgn_variance_exact(p), dgn_variance_lna(p), lif_variance(p)

    fine_cs = torch.linspace(0, max(cs), 61).tolist()
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for k, (mu, sigma) in enumerate(itertools.product(mus, sigmas)):
        curve = inputs([mu], [sigma], fine_cs, args.g_leak)
        col = colors[k % len(colors)]
        label = f"μ={mu:g}, σ={sigma:g}"
        ax.plot(fine_cs, dgn_variance_exact(curve), color=col, label=f"DGN exact, {label}")
        ax.plot(fine_cs, dgn_variance_lna(curve), color=col, ls="--", lw=1)
        ax.axhline(lif_variance(curve)[0].item(), color=col, ls=":", lw=1)
        idx = [i for i, (m, s, _) in enumerate(itertools.product(mus, sigmas, cs)) if m == mu and s == sigma]
        ax.plot([cs[i % len(cs)] for i in idx], sim[idx], "o", color=col, ms=5)
    ax.set_yscale("log")
    ax.set_xlabel("conductance scale c (C_i = c)")
    ax.set_ylabel("stationary Var[V]")
    ax.set_title("DGN (solid: exact, dashed: linear-noise, o: simulation)\nLIF (dotted)", fontsize=9)
    ax.legend(fontsize=7)

    ratio_exact, ratio_lna = (sim / exact).numpy(), (sim / lna).numpy()
    _, g0, _, gamma = reduce_inputs(p)
    corr = (gamma ** 2 / (2 * g0)).numpy()
    ax2.scatter(corr, ratio_exact, label="simulated / exact", s=18)
    ax2.scatter(corr, ratio_lna, label="simulated / linear-noise (SPEC)", s=18, marker="x")
    ax2.axhspan(0.95, 1.05, color="0.9", zorder=-1, label="±5 %")
    ax2.set_xlabel("γ² / (2 G0)  (term the linear-noise formula drops)")
    ax2.set_ylabel("variance ratio")
    ax2.legend(fontsize=8)
    fig.tight_layout()
    path = out / "dgn_noise_theory.png"
    fig.savefig(path, dpi=130)
    print(f"max |sim/exact - 1| = {abs(ratio_exact - 1).max():.4f} over {len(ratio_exact)} settings; "
          f"max |sim/LNA - 1| = {abs(ratio_lna - 1).max():.4f}; "
          f"DGN below LIF in {(exact < lif).sum().item()} of {(p.conductance != 0).any(-1).sum().item()} settings with C != 0")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
