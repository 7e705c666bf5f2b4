"""Train a small MMDEND network briefly, then plot what its neurons do.

    .venv/bin/python examples/mmdend_analysis.py --out runs/examples/mmdend

Data: the embedded spiking FSDD (``dendrix.data.get_dataset("fsdd")``); if it cannot be loaded, the 8×8
digits (``"digits"``, or scikit-learn's copy, rows as time steps). Network: Linear → MMDEND → mean over time →
Linear readout. Figures written to ``--out``:

* ``mmdend_soma_distribution.png``: histogram of the soma potential V^s over a test batch against the SSF
  firing levels (V^s = φ_p + φ_s·V_th·n for n = −Ū..Ū), and the spike-count histogram;
* ``mmdend_branches.png``: for one sample and one channel, the input current, every branch output f(V^dend),
  the soma potential and the integer spikes;
* ``mmdend_compartments.png``: the impulse response of every compartment of every branch (the trained chains)
  and the recorded compartment voltages of one branch for the sample.
"""

from __future__ import annotations

import argparse
import os
import time

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

import dendrix  # noqa: E402
from dendrix.neurons import MMDEND  # noqa: E402


def load_data(name: str, seed: int):
    """(train x [N, T, C], train y, test x, test y, description)."""
    try:
        from dendrix.data import get_dataset
        train, test = get_dataset(name, split="train", seed=seed), get_dataset(name, split="test", seed=seed)
        xs = torch.stack([torch.as_tensor(train[i][0]) for i in range(len(train))])
        ys = torch.tensor([int(train[i][1]) for i in range(len(train))])
        xt = torch.stack([torch.as_tensor(test[i][0]) for i in range(len(test))])
        yt = torch.tensor([int(test[i][1]) for i in range(len(test))])
        return xs, ys, xt, yt, f"dendrix.data {name!r}"
    except Exception as err:  # the data module or its files may be missing in a partial install
        if name != "digits":
            print(f"could not load {name!r} ({type(err).__name__}: {err}); using the 8x8 digits")
            return load_data("digits", seed)
        from sklearn.datasets import load_digits
        d = load_digits()
        x = torch.tensor(d.images, dtype=torch.float32) / 16.0          # [N, 8 rows = T, 8 columns = C]
        y = torch.tensor(d.target)
        perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
        x, y = x[perm], y[perm]
        n = int(0.8 * len(x))
        return x[:n], y[:n], x[n:], y[n:], "scikit-learn 8x8 digits (rows as time steps)"


class Net(nn.Module):
    def __init__(self, inputs: int, hidden: int, classes: int, **mmdend_kw):
        super().__init__()
        self.inp = nn.Linear(inputs, hidden)
        self.neuron = MMDEND(hidden, **mmdend_kw)
        self.out = nn.Linear(hidden, classes)

    def forward(self, x):                       # x [T, B, C]
        return self.out(self.neuron(self.inp(x)).mean(0))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="runs/examples/")
    ap.add_argument("--dataset", default="fsdd")
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--hidden", type=int, default=64)
    ap.add_argument("--branches", type=int, default=2)
    ap.add_argument("--compartments", type=int, default=4)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    torch.manual_seed(args.seed)

    xs, ys, xt, yt, desc = load_data(args.dataset, args.seed)
    classes = int(max(ys.max(), yt.max())) + 1
    net = Net(xs.shape[-1], args.hidden, classes, branches=args.branches, compartments=args.compartments)
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    print(f"data: {desc}: train {tuple(xs.shape)}, test {tuple(xt.shape)}, {classes} classes")
    for epoch in range(args.epochs):
        net.train()
        t0, total = time.time(), 0.0
        perm = torch.randperm(len(xs))
        for i in range(0, len(xs), 64):
            idx = perm[i:i + 64]
            loss = nn.functional.cross_entropy(net(xs[idx].transpose(0, 1)), ys[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
        net.eval()
        with torch.no_grad():
            acc = (net(xt.transpose(0, 1)).argmax(1) == yt).float().mean().item()
        print(f"epoch {epoch + 1}: train loss {total / len(xs):.3f}, test accuracy {acc:.3f} ({time.time() - t0:.1f} s)")

    m = net.neuron
    batch = xt[:128].transpose(0, 1)
    with torch.no_grad(), dendrix.record(net) as rec:
        net(batch)
    traces = rec.states["neuron"]
    spikes = rec.spikes["neuron"]
    v = traces["v"]
    plot_soma(m, v, spikes, os.path.join(args.out, "mmdend_soma_distribution.png"))
    plot_branches(m, net.inp(batch).detach(), traces, spikes, os.path.join(args.out, "mmdend_branches.png"))
    plot_compartments(m, traces, batch.shape[0], os.path.join(args.out, "mmdend_compartments.png"))
    print(f"branch proportions {m.branch_proportions()}; SSF shift {m.ssf.shift.item():.3f}, "
          f"scale {m.ssf.scale.item():.3f}; mean |spike| {spikes.abs().mean().item():.3f}")
    print(f"figures in {args.out}")


def plot_soma(m: MMDEND, v, spikes, path):
    ssf = m.ssf
    levels = torch.arange(-ssf.levels, ssf.levels + 1, dtype=torch.float32)
    boundaries = ssf.shift.item() + ssf.scale.clamp_min(1e-4).item() * ssf.v_threshold * levels
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    axes[0].hist(v.flatten().numpy(), bins=200, log=True, color="tab:blue")
    for b in boundaries.tolist():
        axes[0].axvline(b, color="tab:red", lw=0.8, ls="--")
    axes[0].set_xlabel("soma potential $V^s$")
    axes[0].set_ylabel("count (log)")
    axes[0].set_title("soma potential vs SSF levels (dashed: $\\varphi_p+\\varphi_s V_{th} n$)")
    vals, counts = torch.unique(spikes.flatten(), return_counts=True)
    axes[1].bar(vals.numpy(), counts.numpy(), color="tab:green")
    axes[1].set_yscale("log")
    axes[1].set_xlabel("integer spike S[t]")
    axes[1].set_title(f"SSF output, range [-{ssf.levels}, {ssf.levels}]")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_branches(m: MMDEND, current, traces, spikes, path, sample=0):
    branches = traces["branches"]                      # [T, B, D', J]
    # the channel that is covered by the most branches (every branch is shown)
    cov = m.channel_coverage()
    channel = int(torch.argmax(cov))
    T = current.shape[0]
    fig, axes = plt.subplots(4, 1, figsize=(10, 8), sharex=True)
    axes[0].plot(current[:, sample, channel].numpy())
    axes[0].set_ylabel("input $I$")
    for j in range(m.branches):
        i = channel - j * m.stride
        if 0 <= i < m.window:
            axes[1].plot(branches[:, sample, i, j].numpy(), label=f"branch {j}")
    axes[1].set_ylabel("$f(V^{dend}_j)$")
    axes[1].legend(loc="upper right", fontsize=8)
    axes[2].plot(traces["v"][:, sample, channel].numpy(), color="tab:purple")
    axes[2].set_ylabel("soma $V^s$")
    axes[3].stem(range(T), spikes[:, sample, channel].numpy())
    axes[3].set_ylabel("spikes")
    axes[3].set_xlabel("time step")
    fig.suptitle(f"channel {channel} (covered by {int(cov[channel])} branches), sample {sample}")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_compartments(m: MMDEND, traces, T, path, sample=0):
    with torch.no_grad():
        kernels = m.branch_kernels(T, per_compartment=True)          # [J, K, T]
    comp = traces["compartments"]                                    # [T, B, D', J, K]
    fig, axes = plt.subplots(2, m.branches, figsize=(5 * m.branches, 6), squeeze=False)
    for j in range(m.branches):
        for k in range(m.compartments):
            axes[0, j].plot(kernels[j, k].numpy(), label=f"compartment {k + 1}")
            axes[1, j].plot(comp[:, sample, 0, j, k].numpy(), label=f"compartment {k + 1}")
        dt = m.log_dt[j].exp().item()
        axes[0, j].set_title(f"branch {j}: impulse responses (dt={dt:.3g})")
        axes[1, j].set_title(f"branch {j}: compartment voltages, sample {sample}")
        axes[1, j].set_xlabel("time step")
        axes[0, j].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()
