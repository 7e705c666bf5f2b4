"""DLIF theory, runnable: XOR with one neuron, and Theorem 1 (trained K aligns with C1 - C2).

    python examples/dlif_theory.py [--out runs/examples] [--seed 0]

Writes ``dlif_xor.png`` (training accuracy of one DLIF and one LIF neuron on per-step XOR, with the 75 % LIF
bound) and ``dlif_theorem1.png`` (the trained K of one DLIF neuron next to the difference of the two classes'
correlation matrices), and prints the numbers.
"""

from __future__ import annotations

import argparse
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from dendrix.analysis.dlif_theory import lif_xor_grid_search, train_correlation, train_xor  # noqa: E402


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="runs/examples", help="folder for the PNGs")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)

    dlif = train_xor("dlif", steps=300, seed=args.seed)
    lif = train_xor("lif", steps=300, seed=args.seed)
    best_lif = lif_xor_grid_search(points=11, seed=args.seed)
    print(f"XOR, held-out per-step accuracy: DLIF {dlif.accuracy:.4f}, trained LIF {lif.accuracy:.4f}, "
          f"best LIF on an 11^3 grid of (w1, w2, b) {best_lif:.4f}")
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(dlif.history, label=f"DLIF (held-out {100 * dlif.accuracy:.2f} %)")
    ax.plot(lif.history, label=f"LIF (held-out {100 * lif.accuracy:.2f} %)")
    ax.axhline(0.75, color="k", ls="--", lw=1, label=f"LIF bound 75 % (grid best {100 * best_lif:.2f} %)")
    ax.set_xlabel("training iteration")
    ax.set_ylabel("per-step accuracy")
    ax.set_title("one neuron, two spike trains, target s1 XOR s2")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(os.path.join(args.out, "dlif_xor.png"), dpi=120)
    plt.close(fig)

    corr = train_correlation("dlif", steps=200, seed=args.seed)
    corr_lif = train_correlation("lif", steps=200, seed=args.seed)
    print(f"Theorem 1: DLIF accuracy {corr.accuracy:.3f}, cosine(K, C1 - C2) = {corr.cosine:.3f}; "
          f"LIF accuracy {corr_lif.accuracy:.3f} (chance 0.5)")
    fig, axes = plt.subplots(1, 2, figsize=(8, 3.6))
    for ax, mat, title in ((axes[0], corr.K, "trained K (one DLIF neuron)"),
                           (axes[1], corr.C_diff, "C1 - C2 (zero-lag correlations)")):
        m = mat.clone().float()
        m.fill_diagonal_(0)
        lim = float(m.abs().max())
        im = ax.imshow(m, cmap="RdBu_r", vmin=-lim, vmax=lim)
        ax.set_title(title, fontsize=9)
        fig.colorbar(im, ax=ax, fraction=0.046)
    fig.suptitle(f"Theorem 1: cosine = {corr.cosine:.3f}; DLIF acc {corr.accuracy:.2f}, LIF acc {corr_lif.accuracy:.2f}",
                 fontsize=10)
    fig.tight_layout()
    fig.savefig(os.path.join(args.out, "dlif_theorem1.png"), dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()
